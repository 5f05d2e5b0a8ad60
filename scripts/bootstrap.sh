#!/usr/bin/env bash
# Idempotent set-up shared by both README commands (demo and tests) and by .ci/run:
# Debian packages, bpffs, npm dependencies, the loader helper, the TypeScript build.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "netfence needs root (CAP_BPF, CAP_NET_ADMIN): run this as root" >&2
  exit 1
fi

# 1. Debian packages: build tools for the loader (objects under bpf/prebuilt are committed),
#    the network tools the tests and the demo use, and the peers the benchmarks compare with.
#    postgresql: the fleet control plane's tests and bench/fleet start their own throwaway server
#    (initdb in a temp dir as the postgres user, own port; test/helpers/postgres.ts), never the
#    cluster the Debian package may create.
PACKAGES=(bpftool clang llvm gcc make libbpf-dev libelf-dev zlib1g-dev libzstd-dev
  iproute2 iputils-ping nftables iptables dnsutils dnsmasq-base iperf3 dnsperf netcat-openbsd
  curl python3 python3-grpcio python3-grpc-tools procps postgresql)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. bpffs (pins live under /sys/fs/bpf/netfence).
if ! awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { found = 1 } END { exit !found }' /proc/mounts; then
  log "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi
awk '$3 == "cgroup2" { found = 1 } END { exit !found }' /proc/mounts || { echo "no cgroup2 mount found in /proc/mounts" >&2; exit 1; }

# 3. npm dependencies, at the lock file's versions. npm 11 writes lock files without the other
#    platforms' optional packages when the registry does not serve them, and its own `npm ci`
#    then refuses that lock (npm/cli#9846); `npm install` installs the same locked versions.
#    A node_modules that is a symlink (a git worktree sharing another checkout's) is left alone.
if [ ! -L node_modules ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  log "npm ci"
  if ! npm ci --no-audit --no-fund >/tmp/netfence-npm-ci.log 2>&1; then
    if grep -q "EUSAGE" /tmp/netfence-npm-ci.log; then
      log "npm ci refused this npm's own lock file (optional packages of other platforms); npm install at the locked versions"
      npm install --no-audit --no-fund --no-save >/dev/null
    else
      cat /tmp/netfence-npm-ci.log >&2
      exit 1
    fi
  fi
fi

# 4. The loader helper (static, against Debian's libbpf). NETFENCE_REBUILD_BPF=1 also rebuilds
#    the committed BPF objects (needs clang and the running kernel's BTF for vmlinux.h).
if [ "${NETFENCE_REBUILD_BPF:-0}" = "1" ]; then make -s -C bpf objects; fi
make -s -C bpf loader

# 5. TypeScript: the packages, each into its own dist/ (`tsc -b` rebuilds only what changed),
#    then the benchmarks and scripts into dist/.
npx tsc -b tsconfig.build.json
# The CLI's one-file bundle (start-up time, issue 13); cli/dist/index.js ignores it when older than the build.
node scripts/bundle-cli.mjs
if [ ! -f dist/.stamp ] || [ -n "$(find bench scripts test/helpers test/fixtures proto daemon cli sdk control-plane-example -name '*.ts' -not -path '*/dist/*' -not -path '*/node_modules/*' -newer dist/.stamp 2>/dev/null | head -1)" ] || [ -n "$(find . -maxdepth 2 -name 'tsconfig*.json' -newer dist/.stamp | head -1)" ]; then
  log "building the benchmarks and scripts"
  npx tsc -p tsconfig.tools.json
  touch dist/.stamp
fi
