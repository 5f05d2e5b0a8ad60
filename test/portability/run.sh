#!/bin/bash
# Kernel portability matrix of the Netfence data path (issue 7).
#
# For the host kernel and Debian's 6.1 (no TCX: clsact path) and 6.12 (TCX) kernels, runs checks.sh, i.e. the
# REAL prebuilt objects (bpf/prebuilt/*.bpf.o) driven by the REAL static loader (bpf/loader/netfence-loader)
# through guest-client: load, attach to a veth whose peer is in another netns (TCX or clsact, chosen by the
# loader's probe), allow/block real pings, fail closed before the first policy, atomic REPLACE, ring-buffer
# event, COUNTERS, SIGKILL of the loader with enforcement persisting, ADOPT by a new loader, cgroup_skb on a
# cgroup, UNLOAD. In each guest, the daemon's own driver (KernelFilter under Node) then attaches end to end
# (guest-node-check.ts) and runs the kernel-level attack checks of the security suite (guest-security-check.ts:
# ICMPv6 tunnel, link-local, loopback, other tenants' DNS, shared-bridge ARP/MAC/non-IP, protected-deny, tun and
# refused link types, the DNS port guard), crafting and sniffing with the static test/security/tools/nfpkt.
#   - the Debian kernels are fetched with `apt-get download` (never installed) and booted with
#     qemu-system-x86_64 -accel tcg from a busybox initramfs, without any network device (-nic none);
#   - the host kernel run happens in two network namespaces and a cgroup of its own, with a unique pin root.
# The three runs go in parallel. Exit status 0 only if all three print PORTABILITY: PASS.
#
# Environment:
#   FORCE_METHOD=tcx|clsact   force the loader's TC attach preference everywhere (tcx makes 6.1 FAIL)
#   KERNELS="pkg pkg"         Debian kernel packages to boot (default: newest linux-image-6.1.0-N-amd64 and
#                             linux-image-6.12.N+deb12-amd64 known to apt)
#   SKIP_HOST=1               do not run the host-kernel checks
#   WITH_NODE=0               do not also run the daemon's TypeScript driver (KernelFilter, Node 20 copied into
#                             the guests, bundled with esbuild from node_modules) for one end-to-end attach
#   NETFENCE_PORTABILITY_CACHE  kernel package cache (default /var/cache/netfence-portability; kept between runs)
#   BOOT_TIMEOUT=seconds      per guest (default 240)
#   SKIP_APT=1                do not apt-get install missing host tools
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=$REPO/.cache/portability
CACHE=${NETFENCE_PORTABILITY_CACHE:-/var/cache/netfence-portability}
METHOD=${FORCE_METHOD:-auto}
WITH_NODE=${WITH_NODE:-1}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-240}
T0=$(date +%s.%N)
t() { printf '[%6.1fs] %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{print a-b}')" "$*"; }
die() { t "PORTABILITY MATRIX: FAIL $*"; exit 1; }

case $METHOD in auto | tcx | clsact) ;; *) die "FORCE_METHOD must be tcx or clsact, not '$METHOD'" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (netns, bpffs, cgroups)"
mkdir -p "$WORK" "$CACHE" || die "cannot create $WORK / $CACHE"
# one matrix at a time per checkout and cache (they share the rootfs, initramfs and console logs)
exec 9>"$WORK/lock"
flock -w 600 9 || die "another run.sh still holds $WORK/lock after 10 minutes"

# ---------------------------------------------------------------- 1. host tools (idempotent; nothing else installed)
PKGS="qemu-system-x86 busybox-static iproute2 iputils-ping xz-utils gcc libc6-dev make bpftool libbpf-dev libelf-dev zlib1g-dev libzstd-dev"
if [ -z "${SKIP_APT:-}" ]; then
	missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
	if [ -n "$missing" ]; then
		t "apt-get install $(echo $missing)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >"$WORK/apt.log" 2>&1 ||
			die "apt-get install failed (see $WORK/apt.log)"
	fi
fi

# ---------------------------------------------------------------- 2. artefacts: the real loader + objects, the client
t "build: make -C bpf loader; guest-client (static)"
make -s -C "$REPO/bpf" loader >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; die "building the loader failed"; }
LOADER=$REPO/bpf/loader/netfence-loader
readelf -lW "$LOADER" | grep -q 'Requesting program interpreter' && die "$LOADER is not statically linked"
for o in netfence_tc.bpf.o netfence_cgroup.bpf.o netfence_bindguard.bpf.o; do
	[ -s "$REPO/bpf/prebuilt/$o" ] || die "missing bpf/prebuilt/$o"
done
gcc -O2 -Wall -Wextra -Werror -static -I"$REPO/bpf/include" -o "$WORK/guest-client" "$HERE/guest-client.c" \
	2>"$WORK/build.log" || { cat "$WORK/build.log"; die "building guest-client failed"; }
gcc -O2 -Wall -Wextra -Werror -static -o "$WORK/nfpkt" "$REPO/test/security/tools/nfpkt.c" \
	2>"$WORK/build.log" || { cat "$WORK/build.log"; die "building nfpkt failed"; }

if [ "$WITH_NODE" = 1 ]; then
	NODE_BIN=$(readlink -f "$(command -v node)") || die "WITH_NODE=1 but no node on PATH"
	[ -x "$REPO/node_modules/.bin/esbuild" ] || die "WITH_NODE=1 needs node_modules (npm ci) for esbuild"
	mkdir -p "$WORK/node"
	"$REPO/node_modules/.bin/esbuild" "$HERE/guest-node-check.ts" --bundle --platform=node --format=esm --target=node20 --conditions=netfence-source \
		--log-level=warning --outfile="$WORK/node/node-check.mjs" \
		--banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
		2>"$WORK/build.log" || { cat "$WORK/build.log"; die "bundling guest-node-check.ts failed"; }
	"$REPO/node_modules/.bin/esbuild" "$HERE/guest-security-check.ts" --bundle --platform=node --format=esm --target=node20 --conditions=netfence-source \
		--log-level=warning --outfile="$WORK/node/security-check.mjs" \
		--banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
		2>"$WORK/build.log" || { cat "$WORK/build.log"; die "bundling guest-security-check.ts failed"; }
	# KernelFilter locates the project root by its package.json name
	echo '{ "name": "netfence", "private": true, "type": "module" }' >"$WORK/node/package.json"
fi

# ---------------------------------------------------------------- 3. kernel matrix: resolve, download (cached), extract
newest() { apt-cache pkgnames "$1" | grep -E "$2" | sort -V | tail -1; }
if [ -n "${KERNELS:-}" ]; then
	KPKGS=$KERNELS
else
	K61=$(newest linux-image-6.1.0- '^linux-image-6\.1\.0-[0-9]+-amd64$')
	K612=$(newest linux-image-6.12. '^linux-image-6\.12\.[0-9]+\+deb12-amd64$')
	[ -n "$K61" ] && [ -n "$K612" ] || die "apt-cache knows no linux-image-6.1.0-*-amd64 / linux-image-6.12.*+deb12-amd64 (apt-get update?)"
	KPKGS="$K61 $K612"
fi
t "kernel packages: $KPKGS (cache $CACHE)"
KVERS=""
for P in $KPKGS; do
	if ! ls "$CACHE/${P}_"*.deb >/dev/null 2>&1; then
		t "apt-get download $P"
		if ! (cd "$CACHE" && apt-get download "$P" >"$WORK/download.log" 2>&1); then
			t "apt-get download failed; apt-get update and one retry"
			apt-get update >>"$WORK/download.log" 2>&1
			(cd "$CACHE" && apt-get download "$P" >>"$WORK/download.log" 2>&1) || { cat "$WORK/download.log"; die "apt-get download $P"; }
		fi
	fi
	K=$CACHE/kpkg-$P
	if [ ! -e "$K/.modules-v2" ]; then # v2: + tun, bridge (stp, llc) for the security checks
		DEB=$(ls "$CACHE/${P}_"*.deb | head -1)
		rm -rf "$K.tmp" "$K" && mkdir -p "$K.tmp" || die "mkdir $K.tmp"
		# only vmlinuz, config and a few modules (veth; sch_ingress = clsact; cls_bpf; tun; bridge + stp + llc):
		# a few MB of 400
		dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$K.tmp" --wildcards './boot/vmlinuz-*' './boot/config-*' \
			'./lib/modules/*/kernel/drivers/net/veth.ko*' './lib/modules/*/kernel/net/sched/sch_ingress.ko*' \
			'./lib/modules/*/kernel/net/sched/cls_bpf.ko*' './lib/modules/*/kernel/drivers/net/tun.ko*' \
			'./lib/modules/*/kernel/net/bridge/bridge.ko*' './lib/modules/*/kernel/net/802/stp.ko*' \
			'./lib/modules/*/kernel/net/llc/llc.ko*' || die "extracting $DEB"
		find "$K.tmp" -name '*.ko.xz' -exec xz -d {} + # 6.12 ships xz modules; busybox insmod wants plain .ko
		touch "$K.tmp/.modules-v2"
		mv "$K.tmp" "$K"
	fi
	KVERS="$KVERS $(ls "$K/lib/modules")"
done
# keep the cache to the current matrix: drop packages of superseded kernels
for f in "$CACHE"/linux-image-*.deb "$CACHE"/kpkg-*; do
	[ -e "$f" ] || continue
	keep=0
	for P in $KPKGS; do case $(basename "$f") in "${P}_"*.deb | "kpkg-$P") keep=1 ;; esac; done
	[ $keep = 1 ] || { t "cache: removing superseded $(basename "$f")"; rm -rf "$f"; }
done

# ---------------------------------------------------------------- 4. one initramfs for all guests
t "initramfs: busybox, iproute2, loader, objects, client, modules of$KVERS"
R=$WORK/rootfs
rm -rf "$R" && mkdir -p "$R"/{bin,sbin,dev,proc,sys,run,tmp,lib64,test/bpf} || die "rootfs"
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
rm -f "$R/bin/ip" # busybox's ip cannot create veth pairs in other namespaces: use iproute2's
cp "$(command -v ip)" "$R/sbin/ip"
LIBS_OF="$R/sbin/ip"
if [ "$WITH_NODE" = 1 ]; then
	cp "$NODE_BIN" "$R/bin/node" && cp -r "$WORK/node" "$R/test/node" || die "copying node"
	LIBS_OF="$LIBS_OF $R/bin/node"
fi
for l in $(ldd $LIBS_OF | grep -v ':$' | grep -o '/[^ ]*' | sort -u); do
	mkdir -p "$R$(dirname "$l")" && cp -L "$l" "$R$l"
done
for P in $KPKGS; do
	K=$CACHE/kpkg-$P
	V=$(ls "$K/lib/modules")
	mkdir -p "$R/lib/modules/$V"
	find "$K/lib/modules/$V" -name '*.ko' -exec cp {} "$R/lib/modules/$V/" \;
done
cp "$LOADER" "$R/test/netfence-loader"
cp "$REPO"/bpf/prebuilt/netfence_tc.bpf.o "$REPO"/bpf/prebuilt/netfence_cgroup.bpf.o "$REPO"/bpf/prebuilt/netfence_bindguard.bpf.o \
	"$R/test/bpf/"
cp "$WORK/guest-client" "$WORK/nfpkt" "$HERE/checks.sh" "$R/test/"
cp "$HERE/guest-init.sh" "$R/init" && chmod +x "$R/init"
(cd "$R" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$WORK/initramfs.cpio.gz") || die "cpio"

# ---------------------------------------------------------------- 5. run: guests in the background, host in the foreground
pids=()
# if we are interrupted, stop what we started (timeout forwards the signal to qemu / checks.sh, which cleans up)
stop_runs() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done; }
trap 'stop_runs; t "interrupted"; exit 130' INT TERM
for P in $KPKGS; do
	K=$CACHE/kpkg-$P
	V=$(ls "$K/lib/modules")
	t "boot $V (qemu TCG, method=$METHOD); config:"
	grep -hE '^CONFIG_(BPF_SYSCALL|BPF_JIT|DEBUG_INFO_BTF|CGROUP_BPF|NET_CLS_BPF|NET_SCH_INGRESS|NET_XGRESS)=' "$K"/boot/config-* |
		tr '\n' ' ' | sed 's/^/    /;s/$/\n/'
	timeout "$BOOT_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 \
		-kernel "$(ls "$K"/boot/vmlinuz-*)" -initrd "$WORK/initramfs.cpio.gz" \
		-append "console=ttyS0 panic=-1 quiet netfence.method=$METHOD" \
		-nic none -nographic -no-reboot -monitor none >"$WORK/console-$V.log" 2>&1 &
	pids+=($!)
done
HOSTV=$(uname -r)
if [ -z "${SKIP_HOST:-}" ]; then
	CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	[ -n "$CGROOT" ] || die "no cgroup2 mount in /proc/mounts"
	[ -r /proc/config.gz ] && zcat /proc/config.gz |
		grep -E '^CONFIG_(BPF_SYSCALL|BPF_JIT|DEBUG_INFO_BTF|CGROUP_BPF|NET_CLS_BPF|NET_SCH_INGRESS|NET_XGRESS)=' | tr '\n' ' ' |
		sed 's/^/    host config: /;s/$/\n/'
	t "host kernel $HOSTV: own netns pair, cgroup $CGROOT/nfport-h$$, pins /sys/fs/bpf/netfence-port-h$$"
	timeout 240 sh "$HERE/checks.sh" "h$$" "/sys/fs/bpf/netfence-port-h$$" "$CGROOT" "$REPO/bpf/prebuilt" "$LOADER" \
		"$WORK/guest-client" "$METHOD" >"$WORK/console-host.log" 2>&1 &
	pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done
pids=()
t "all runs finished"

# ---------------------------------------------------------------- 6. report
fails=0
report() { # name log guest(0|1) kernel-config-text
	local name=$1 log=$2 guest=$3 config=$4 res node_res sec_res want got
	echo "--- $name"
	# the guest console starts with terminal escape sequences: strip them and the CRs
	sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b[a-zA-Z]//g; s/\r$//' "$log" >"$log.txt"
	grep -aE '^(ok  |FAIL|info|PORTABILITY:|NODE-E2E:|SECURITY:)' "$log.txt" | sed 's/^/    /'
	res=$(grep -a '^PORTABILITY:' "$log.txt" | tail -1)
	if [ "$guest" = 1 ] && [ "$WITH_NODE" = 1 ] && [[ $res == "PORTABILITY: PASS"* ]]; then
		node_res=$(grep -a '^NODE-E2E:' "$log.txt" | tail -1)
		case $node_res in
		"NODE-E2E: PASS method="*) res="$res node=${node_res#NODE-E2E: PASS method=}" ;;
		*) res="PORTABILITY: FAIL Node/KernelFilter end-to-end: ${node_res:-no NODE-E2E line}" ;;
		esac
		sec_res=$(grep -a '^SECURITY:' "$log.txt" | tail -1)
		if [[ $res == "PORTABILITY: PASS"* ]]; then
			case $sec_res in
			"SECURITY: PASS") res="$res security=pass" ;;
			*) res="PORTABILITY: FAIL security checks: ${sec_res:-no SECURITY line}" ;;
			esac
		fi
	fi
	# cross-check of the loader's BTF probe against how the kernel was built: TCX exists iff CONFIG_NET_XGRESS=y
	if [ "$METHOD" = auto ] && [ -n "$config" ] && [[ $res == "PORTABILITY: PASS"* ]]; then
		if grep -q '^CONFIG_NET_XGRESS=y' <<<"$config"; then want=tcx; else want=clsact; fi
		got=$(sed -n 's/.*PORTABILITY: PASS method=\([a-z_]*\).*/\1/p' <<<"$res")
		if [ "$got" = "$want" ]; then
			echo "    ok   kernel config $(grep -q '^CONFIG_NET_XGRESS=y' <<<"$config" && echo has || echo lacks) CONFIG_NET_XGRESS: the loader's probe chose $got"
		else
			res="PORTABILITY: FAIL the loader chose $got but the kernel config says $want"
		fi
	fi
	if [[ $res == "PORTABILITY: PASS"* ]]; then
		RESULTS+=("MATRIX $name: PASS ${res#PORTABILITY: PASS }")
	else
		fails=$((fails + 1))
		[ -n "$res" ] || res="no PORTABILITY line (timeout after ${BOOT_TIMEOUT}s or crash; see $log)"
		RESULTS+=("MATRIX $name: FAIL ${res#PORTABILITY: FAIL }")
		grep -aiE 'panic|BUG:|Oops|Call Trace|libbpf' "$log.txt" | head -20 | sed 's/^/    ! /'
	fi
}
RESULTS=()
[ -z "${SKIP_HOST:-}" ] && report "host $HOSTV" "$WORK/console-host.log" 0 "$(zcat /proc/config.gz 2>/dev/null)"
for P in $KPKGS; do
	V=$(ls "$CACHE/kpkg-$P/lib/modules")
	report "debian $V" "$WORK/console-$V.log" 1 "$(cat "$CACHE/kpkg-$P"/boot/config-*)"
done
echo
printf '%s\n' "${RESULTS[@]}"
if [ $fails = 0 ]; then t "PORTABILITY MATRIX: PASS (${#RESULTS[@]} kernels)"; exit 0; fi
t "PORTABILITY MATRIX: FAIL ($fails of ${#RESULTS[@]} kernels failed; logs in $WORK)"
exit 1
