#!/usr/bin/env python3
"""Per-packet cost of the layout-6 lookup (issue 15) against an older object, with BPF_PROG_TEST_RUN
(bpftool prog run): each object is loaded on its own (bpftool prog loadall, maps pinned in a private
directory under /sys/fs/bpf, removed at the end), its nf_state set to allowlist by hand, one /32 entry
(exact hash) and one /16 prefix (LPM) written, and the same crafted Ethernet+IPv4+TCP SYN frames run
through it: host hit, prefix hit, miss (dropped: the event path), and — layout 6 only — a scoped hit
(the /32 entry with scope 1 and an ANY scope entry for tcp/443: one nf_scope lookup more) and a
scoped miss (tcp/80 to that entry: the scope lookup, then the walk goes on to the /16).
Rounds are interleaved object by object; figures are medians of the kernel-reported ns/packet.
usage: scope-cost.py OLD_TC_OBJ NEW_TC_OBJ [rounds] [repeat]     (root; one private pin directory)"""
import json, os, shutil, struct, subprocess, sys, tempfile

old_obj, new_obj = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 200000
HOST, PREFIX_ADDR, MISS = bytes([93, 184, 216, 34]), bytes([151, 101, 7, 9]), bytes([203, 0, 113, 77])
SCOPED = bytes([93, 184, 216, 35])  # layout 6 only: a scoped /32 inside 93.184/16


def bpftool(*args):
    p = subprocess.run(["bpftool", *args], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"bpftool {args[0]} {args[1]}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def hexs(b):
    return [f"{x:02x}" for x in b]


def frame(daddr, dport):
    eth = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]) + struct.pack("!H", 0x0800)
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes([10, 9, 0, 2]), daddr)
    return eth + ip + tcp


def entry(rule, flags, plen, scope=0):  # struct nf_entry: expires_ns, rule_id, flags, prefixlen, scope/_pad
    return struct.pack("<QIBBH", 0, rule, flags, plen, scope)


def setup(obj, d, layout6):
    os.makedirs(d + "/maps")
    bpftool("prog", "loadall", obj, d + "/progs", "type", "tc", "pinmaps", d + "/maps")
    st = bytearray(320)
    struct.pack_into("<IIII", st, 0, 0x4E464E31, 6 if layout6 else 5, 0, 1)
    struct.pack_into("<II", st, 16, 1, 0)  # gen[0]: allowlist, no flags
    bpftool("map", "update", "pinned", d + "/maps/nf_state", "key", "hex", *hexs(bytes(4)), "value", "hex", *hexs(st))
    bpftool("map", "update", "pinned", d + "/maps/nf_v4_exact", "key", "hex", *hexs(struct.pack("<I", 0) + HOST),
            "value", "hex", *hexs(entry(16, 1, 32)))
    bpftool("map", "update", "pinned", d + "/maps/nf_v4_lpm", "key", "hex", *hexs(struct.pack("<IB", 8 + 16, 0) + PREFIX_ADDR[:2] + bytes(2 + 3)),
            "value", "hex", *hexs(entry(17, 1, 16)))
    if layout6:  # scope 1, kind ANY, principal 0, tcp, port 443 (prefix 64 + 8 + 16)
        key = struct.pack("<IBBHIB", 88, 0, 0, 1, 0, 6) + struct.pack("!H", 443) + bytes(1)
        bpftool("map", "update", "pinned", d + "/maps/nf_scope", "key", "hex", *hexs(key), "value", "hex", *hexs(entry(18, 1, 32)))
        bpftool("map", "update", "pinned", d + "/maps/nf_v4_exact", "key", "hex", *hexs(struct.pack("<I", 0) + SCOPED),
                "value", "hex", *hexs(entry(0, 1 << 2, 32, 1)))  # scope 1, kind ANY, no unscoped rule
        # the scoped miss continues to 93.184/16
        bpftool("map", "update", "pinned", d + "/maps/nf_v4_lpm", "key", "hex", *hexs(struct.pack("<IB", 8 + 16, 0) + HOST[:2] + bytes(2 + 3)),
                "value", "hex", *hexs(entry(19, 1, 16)))
    return d + "/progs/netfence_tc"


def run(prog, data_file):
    out = bpftool("-j", "prog", "run", "pinned", prog, "data_in", data_file, "repeat", str(repeat))
    j = json.loads(out)
    return j["retval"], j["duration"]


root = tempfile.mkdtemp(prefix="nfscope-", dir="/sys/fs/bpf")
tmp = tempfile.mkdtemp(prefix="nfscope-")
try:
    progs = {"layout5 (main)": setup(old_obj, root + "/old", False), "layout6": setup(new_obj, root + "/new", True)}
    cases = {"host hit": frame(HOST, 80), "prefix hit": frame(PREFIX_ADDR, 80), "miss (drop)": frame(MISS, 80)}
    files = {}
    scoped = [("scoped hit tcp/443", frame(SCOPED, 443)), ("scoped miss tcp/80 -> /16", frame(SCOPED, 80))]
    for name, f in list(cases.items()) + scoped:
        files[name] = os.path.join(tmp, name.replace(" ", "_").replace("/", "_"))
        open(files[name], "wb").write(f)
    res = {}
    for r in range(rounds):
        for pname, prog in progs.items():
            for cname, fname in files.items():
                if cname.startswith("scoped") and pname != "layout6":
                    continue
                ret, ns = run(prog, fname)
                res.setdefault((pname, cname), []).append((ns, ret))
    print(f"rounds={rounds} repeat={repeat} loadavg={open('/proc/loadavg').read().split()[:3]}")
    for (pname, cname), v in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ns = sorted(x[0] for x in v)
        print(f"{cname:22s} {pname:16s} median {ns[len(ns) // 2]:4d} ns  (min {ns[0]}, max {ns[-1]}; verdict {v[0][1]})")
finally:
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
