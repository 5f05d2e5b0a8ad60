/**
 * Fuzzing with fast-check (issue 10: "a fuzz run of the DNS wire parser and the command validator,
 * ≥ 1M generated inputs each, 0 crashes"). Usage (after `npm run build`):
 *
 *   node dist/bench/fuzz/run.js [--runs 1000000] [--seed N] [--out bench/results/fuzz.json]
 *
 * Targets (properties in dns-properties.ts and command-properties.ts):
 *   dns-wire        every raw-wire function the DNS server applies to untrusted bytes
 *   dns-answer      the server's whole per-query pipeline (answer()) with a scripted upstream
 *   command         parseCommand on structured ControlCommands
 *   command-bytes   parseCommand (and parseSubscribedAck) on damaged and random wire bytes
 *
 * A failure is any thrown error other than the documented rejection, or a broken invariant; the
 * first one stops its target and is written out with its (shrunk) counterexample and the seed.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { machineInfo } from "../lib/machine.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { dnsBytes, handlerHarness, handlerInput, wireProperty } from "./dns-properties.js";
import { commandBytes, commandBytesProperty, commandProperty, controlCommand } from "./command-properties.js";

interface TargetResult {
  readonly name: string;
  readonly runs: number;
  readonly failures: number;
  readonly counterexample: string | null;
  readonly error: string | null;
  readonly seed: number;
  readonly seconds: number;
  readonly inputsPerSecond: number;
  readonly outcomes: Record<string, number>;
}

function args(argv: string[]): { runs: number; seed: number; out: string } {
  const out = { runs: 1_000_000, seed: 20_261_124, out: path.join(projectRoot(), "bench", "results", "fuzz.json") };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === "--runs" && v !== undefined) out.runs = Math.max(1, Number(v));
    else if (argv[i] === "--seed" && v !== undefined) out.seed = Number(v);
    else if (argv[i] === "--out" && v !== undefined) out.out = path.resolve(v);
    else continue;
    i++;
  }
  return out;
}

function describeValue(v: unknown): string {
  const text = fc.stringify(v);
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

async function target(name: string, runs: number, seed: number, prop: fc.IPropertyWithHooks<[never]> | fc.IAsyncPropertyWithHooks<[never]>, outcomes: Record<string, number>): Promise<TargetResult> {
  const started = performance.now();
  const details = await fc.check(prop as fc.IAsyncPropertyWithHooks<[never]>, { numRuns: runs, seed, endOnFailure: false });
  const seconds = (performance.now() - started) / 1000;
  const result: TargetResult = {
    name,
    runs: details.numRuns,
    failures: details.failed ? 1 : 0,
    counterexample: details.counterexample === null ? null : describeValue(details.counterexample[0]),
    error: details.failed ? String(details.errorInstance ?? details.error) : null,
    seed,
    seconds: Math.round(seconds * 10) / 10,
    inputsPerSecond: Math.round(details.numRuns / seconds),
    outcomes,
  };
  process.stdout.write(`${name}: ${result.runs} inputs, ${result.failures} failures, ${result.seconds} s (${result.inputsPerSecond}/s) ${JSON.stringify(outcomes)}\n`);
  if (result.failures > 0) process.stdout.write(`  counterexample: ${result.counterexample}\n  error: ${result.error}\n`);
  return result;
}

async function main(): Promise<void> {
  const a = args(process.argv.slice(2));
  const machine = machineInfo();
  const results: TargetResult[] = [];

  const wireOutcomes: Record<string, number> = { question: 0, answers: 0, neither: 0 };
  results.push(await target("dns-wire", a.runs, a.seed, fc.property(dnsBytes, (b) => {
    wireOutcomes[wireProperty(b)]!++;
  }) as unknown as fc.IPropertyWithHooks<[never]>, wireOutcomes));

  const harness = handlerHarness();
  const answerOutcomes: Record<string, number> = {};
  results.push(await target("dns-answer", a.runs, a.seed + 1, fc.asyncProperty(handlerInput, async (i) => {
    await harness.run(i.query, i.reply, i.mode, i.refuseSpecial);
  }) as unknown as fc.IAsyncPropertyWithHooks<[never]>, answerOutcomes));
  Object.assign(answerOutcomes, harness.outcomes());
  process.stdout.write(`  dns-answer outcomes: ${JSON.stringify(answerOutcomes)}\n`);
  harness.stop();

  const cmdOutcomes: Record<string, number> = { accepted: 0, rejected: 0 };
  results.push(await target("command", a.runs, a.seed + 2, fc.property(controlCommand, (c) => {
    cmdOutcomes[commandProperty(c)]!++;
  }) as unknown as fc.IPropertyWithHooks<[never]>, cmdOutcomes));

  const bytesOutcomes: Record<string, number> = { accepted: 0, rejected: 0, undecodable: 0 };
  results.push(await target("command-bytes", a.runs, a.seed + 3, fc.property(commandBytes, (b) => {
    bytesOutcomes[commandBytesProperty(b)]!++;
  }) as unknown as fc.IPropertyWithHooks<[never]>, bytesOutcomes));

  const doc = { benchmark: "fuzz", machine, runsPerTarget: a.runs, targets: results, crashes: results.reduce((n, r) => n + r.failures, 0) };
  writeFileSync(a.out, `${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(`wrote ${a.out}\n`);
  if (doc.crashes > 0) process.exitCode = 1;
}

await main();
