#!/bin/sh
# One portability run of the data path on the RUNNING kernel: builds a private topology (two network
# namespaces joined by a veth pair, a cgroup of our own), runs guest-client (which drives the real
# netfence-loader) and removes everything again. POSIX sh: runs under busybox ash in the qemu guests and
# under bash/dash on the host. Nothing outside our own namespaces, cgroup and pin root is touched.
#
# usage: checks.sh SUFFIX PIN_ROOT CGROUP_PARENT BPF_DIR LOADER CLIENT [METHOD]
#   SUFFIX         makes every name unique (netns nfpa-SUFFIX / nfpw-SUFFIX, cgroup nfport-SUFFIX)
#   PIN_ROOT       bpffs directory the loader pins under (created, removed afterwards)
#   CGROUP_PARENT  a cgroup2 directory under which our cgroup is created
#   METHOD         auto (default) | tcx | clsact  (forces the loader's attach preference)
# Output: the client's check lines and "PORTABILITY: PASS|FAIL ..."; exit 0 only on PASS.
set -u
S=$1 PIN=$2 CGP=$3 BPF_DIR=$4 LOADER=$5 CLIENT=$6 METHOD=${7:-auto}
NA=nfpa-$S NW=nfpw-$S CG=$CGP/nfport-$S
IP=${IP:-ip}
client_pid=

cleanup() {
	[ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null && wait "$client_pid" 2>/dev/null
	# unpinning detaches what is still attached (TCX/cgroup links); deleting the netns removes the veth + clsact
	[ -d "$PIN" ] && rm -rf "$PIN"
	$IP netns del "$NA" 2>/dev/null
	$IP netns del "$NW" 2>/dev/null
	[ -d "$CG" ] && rmdir "$CG" 2>/dev/null
	return 0
}
trap 'cleanup; exit 143' TERM INT
trap cleanup EXIT

fail() { echo "PORTABILITY: FAIL setup: $*"; exit 1; }

[ -d "$PIN" ] && fail "pin root $PIN already exists"
$IP netns add "$NA" || fail "netns add $NA"
$IP netns add "$NW" || fail "netns add $NW"
# veth0 lives in the host-side namespace, veth1 in the workload namespace (never in the caller's)
$IP -n "$NA" link add veth0 type veth peer name veth1 netns "$NW" || fail "veth pair"
$IP -n "$NA" addr add 10.0.0.1/24 dev veth0 && $IP -n "$NA" addr add 10.0.0.254/24 dev veth0 &&
	$IP -n "$NA" addr add fd00::1/64 dev veth0 nodad && $IP -n "$NA" addr add fd00::fe/64 dev veth0 nodad &&
	$IP -n "$NA" link set veth0 up && $IP -n "$NA" link set lo up || fail "veth0 addresses"
$IP -n "$NW" addr add 10.0.0.2/24 dev veth1 && $IP -n "$NW" addr add 10.0.0.3/24 dev veth1 &&
	$IP -n "$NW" addr add fd00::2/64 dev veth1 nodad &&
	$IP -n "$NW" link set veth1 up && $IP -n "$NW" link set lo up || fail "veth1 addresses"
mkdir "$CG" || fail "cgroup $CG"

"$CLIENT" --loader "$LOADER" --bpf-dir "$BPF_DIR" --pin-root "$PIN" \
	--host-ns "/run/netns/$NA" --wl-ns "/run/netns/$NW" --ifname veth0 --cgroup "$CG" --method "$METHOD" &
client_pid=$!
wait "$client_pid"
rc=$?
client_pid=
exit $rc
