import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { parsePolicyFile, PolicyFileError } from "../../../control-plane-example/src/policy-file/parse-policy-file.js";
import { selectPolicy, labelsOf } from "../../../control-plane-example/src/policy-file/policy-file.js";
import { parseDurationSeconds } from "@netfence/proto/parse";

function problems(text: string): readonly string[] {
  try {
    parsePolicyFile(text, "p.yaml");
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyFileError);
    return (err as PolicyFileError).problems;
  }
  throw new Error("expected the file to be rejected");
}

describe("policy file parsing", () => {
  it("accepts the shipped example", () => {
    const text = readFileSync(new URL("../../../control-plane-example/policy.example.yaml", import.meta.url), "utf8");
    const file = parsePolicyFile(text, "policy.example.yaml");
    expect(file.defaults).toEqual({ mode: "block-all", allow: [], deny: [], dns: { mode: "disabled" } });
    expect(file.rules.map((r) => r.name)).toEqual(["demo", "acme-builds", "internal-proxy", "acme-default"]);
    expect([...file.rules[2]!.answers]).toEqual([["db.internal", ["10.30.0.5"]], ["cache.internal", ["10.30.0.6", "fd00:30::6"]]]);
    expect(file.rules[0]!.answers.size).toBe(0);
    const builds = file.rules[1]!;
    expect(builds.match).toEqual({ tenant: ["acme"], env: ["ci", "staging"] });
    expect(builds.policy.allow).toEqual([{ cidr: "10.20.0.0/16" }, { cidr: "203.0.113.10", ttlSeconds: 7200 }]);
    expect(builds.policy.dns).toEqual({
      mode: "allowlist",
      allow: [
        { domain: "pypi.org", includeSubdomains: true },
        { domain: "files.pythonhosted.org", includeSubdomains: false },
        { domain: "registry.npmjs.org", includeSubdomains: false },
      ],
      deny: [{ domain: "evil.example", includeSubdomains: true }],
      upstreams: [],
    });
  });

  it("reports YAML syntax errors with line and column", () => {
    expect(problems("rules:\n  - name: a\n    mode: [allowlist\n")[0]).toMatch(/^p\.yaml:\d+:\d+: /);
    const dup = problems("defaults:\n  mode: block-all\n  mode: allowlist\n");
    expect(dup[0]).toMatch(/^p\.yaml:3:3: .*[Uu]nique/);
  });

  it("reports every validation problem at once at the offending node", () => {
    const text = [
      "defaults:",            // 1
      "  mode: block-all",    // 2
      "rules:",               // 3
      "  - name: a",          // 4
      "    match: {tenant: acme}", // 5
      "    mode: allowlst",   // 6
      "    allow:",           // 7
      "      - 10.0.0.0/33",  // 8
      "      - {cidr: 10.1.0.0/16, ttl: soon}", // 9
      "    dns:",             // 10
      "      mode: allowlist", // 11
      "      allow: [\"bad domain\", \"\"]", // 12
      "      upstreams: [\"8.8.8.8:99999\"]", // 13
      "    colour: blue",     // 14
      "  - name: a",          // 15
      "    mode: disabled",   // 16
    ].join("\n");
    const p = problems(text);
    expect(p).toContain('p.yaml:6:11: rule "a": mode must be one of disabled, allowlist, denylist, block-all (got "allowlst")');
    expect(p.some((x) => x.startsWith("p.yaml:8:9: ") && /prefix length 33 exceeds 32/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith("p.yaml:9:34: ") && /ttl must be a positive duration/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith("p.yaml:12:15: ") && /bad domain/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith("p.yaml:12:29: ") && /non-empty string/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith("p.yaml:13:19: ") && /port 99999 out of range/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith("p.yaml:14:5: ") && /unknown key "colour"/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith("p.yaml:15:5: ") && /duplicate rule name "a"/.test(x))).toBe(true);
  });

  it("requires a mode and a mapping, and rejects an empty file", () => {
    expect(problems("rules:\n  - match: {a: b}\n")[0]).toMatch(/^p\.yaml:2:5: rule "rules\[0\]": "mode" is required/);
    expect(problems("")[0]).toMatch(/^p\.yaml:1:1: the policy file is empty/);
    expect(problems("- just\n- a list\n")[0]).toMatch(/^p\.yaml:1:1: the policy file must be a mapping/);
    expect(problems("rules: {}\n")[0]).toMatch(/^p\.yaml:1:8: "rules" must be a list/);
  });
});

describe("DNS proxy answers", () => {
  it("are only accepted in proxy mode and must be IP addresses", () => {
    const p = problems([
      "rules:",
      "  - name: a",
      "    mode: allowlist",
      "    dns:",
      "      mode: allowlist",
      "      answers: {x.internal: [10.0.0.1]}",
      "  - name: b",
      "    mode: allowlist",
      "    dns:",
      "      mode: proxy",
      "      answers:",
      "        \"bad name!\": [10.0.0.1]",
      "        ok.internal: [10.0.0.1, not-an-ip]",
      "        empty.internal: []",
    ].join("\n"));
    expect(p).toContain('p.yaml:6:16: rule "a": dns: answers are only used with mode: proxy (netfence-cp answers QueryDns)');
    expect(p.some((x) => x.startsWith("p.yaml:12:9: ") && /bad name!/.test(x))).toBe(true);
    expect(p).toContain('p.yaml:13:33: rule "b": dns: answers.ok.internal: "not-an-ip" is not an IP address');
    expect(p.some((x) => x.startsWith("p.yaml:14:25: ") && /non-empty list/.test(x))).toBe(true);
  });
});

describe("rule selection", () => {
  const file = parsePolicyFile([
    "defaults: {mode: block-all}",
    "rules:",
    "  - {name: prod, match: {tenant: acme, env: prod}, mode: allowlist}",
    "  - {name: acme, match: {tenant: acme}, mode: denylist}",
    "  - {name: eu, match: {region: [eu-west, eu-central]}, mode: disabled}",
  ].join("\n"), "sel.yaml");

  it("takes the first rule whose labels all match", () => {
    expect(selectPolicy(file, { tenant: "acme", env: "prod" }).rule).toBe("prod");
    expect(selectPolicy(file, { tenant: "acme", env: "dev" }).rule).toBe("acme");
    expect(selectPolicy(file, { tenant: "acme", region: "eu-west" }).rule).toBe("acme");
    expect(selectPolicy(file, { region: "eu-central" }).rule).toBe("eu");
    expect(selectPolicy(file, { region: "us" })).toEqual({ rule: null, policy: file.defaults, answers: file.defaultAnswers });
  });

  it("overlays attachment metadata on daemon metadata", () => {
    expect(labelsOf({ region: "eu-west", env: "prod" }, { tenant: "acme", env: "dev" })).toEqual({ region: "eu-west", env: "dev", tenant: "acme" });
    expect(selectPolicy(file, labelsOf({ region: "eu-west" }, {})).rule).toBe("eu");
  });
});

describe("durations", () => {
  it("parses units", () => {
    expect([parseDurationSeconds("30s"), parseDurationSeconds("10m"), parseDurationSeconds("2h"), parseDurationSeconds("1d"), parseDurationSeconds(90), parseDurationSeconds("1500ms")])
      .toEqual([30, 600, 7200, 86400, 90, 1.5]);
    expect(parseDurationSeconds("soon")).toBeNull();
    expect(parseDurationSeconds(-1)).toBeNull();
  });
});

describe("policy file: audit (audit mode per rule)", () => {
  it("audit: true is carried in the policy pushed (SubscribedAck/BulkUpdate.audit); absent = enforcing", () => {
    const file = parsePolicyFile(["defaults: {mode: block-all}", "rules:", "  - name: rollout", "    match: {env: canary}", "    mode: allowlist", "    allow: [10.0.0.0/8]", "    audit: true", "  - name: plain", "    mode: denylist"].join("\n"), "p.yaml");
    expect(file.rules[0]!.policy).toMatchObject({ mode: "allowlist", audit: true });
    expect(file.rules[1]!.policy.audit).toBeUndefined();
    expect(file.defaults.audit).toBeUndefined();
  });

  it("rejects an audit that is not a boolean", () => {
    expect(problems("defaults:\n  mode: allowlist\n  audit: yes please\n").join("\n")).toMatch(/defaults: audit must be true or false/);
  });
});

