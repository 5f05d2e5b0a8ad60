#!/bin/sh
# /init of the portability initramfs: PID 1 inside a qemu guest booted from Debian's kernel.
# Mounts the pseudo file systems, loads this kernel's veth/clsact/cls_bpf/tun/bridge modules, runs checks.sh against
# the real loader and objects, then (with Node) the KernelFilter end-to-end and security checks, prints
# PORTABILITY: PASS|FAIL (NODE-E2E:, SECURITY:) on the console and powers off.
export PATH=/sbin:/bin
# busybox ash runs its own applets before PATH lookups: iproute2 is always called as /sbin/ip
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
KVER=$(uname -r)
echo "info guest up: kernel $KVER, uptime $(cut -d' ' -f1 /proc/uptime)s"
for m in veth sch_ingress cls_bpf tun llc stp bridge; do
	f=/lib/modules/$KVER/$m.ko
	[ -f "$f" ] && { insmod "$f" || echo "info insmod $m failed (built in?)"; }
done
echo "info bpf_jit_enable=$(cat /proc/sys/net/core/bpf_jit_enable 2>/dev/null) btf_bytes=$(wc -c < /sys/kernel/btf/vmlinux 2>/dev/null)"
METHOD=auto
for w in $(cat /proc/cmdline); do
	case $w in netfence.method=*) METHOD=${w#netfence.method=} ;; esac
done
IP=/sbin/ip sh /test/checks.sh g /sys/fs/bpf/netfence-port /sys/fs/cgroup /test/bpf /test/netfence-loader \
	/test/guest-client "$METHOD" || echo "info checks.sh exit status $?"
if [ -x /bin/node ]; then
	# the daemon's own driver (KernelFilter in Node) for one end-to-end attach; the guest's root netns is
	# the host side here (KernelFilter reads /sys/class/net, which shows the namespace sysfs was mounted in)
	/sbin/ip netns add nfpn && /sbin/ip link add vethn0 type veth peer name vethn1 netns nfpn &&
		/sbin/ip addr add 10.1.0.1/24 dev vethn0 && /sbin/ip addr add 10.1.0.254/24 dev vethn0 && /sbin/ip link set vethn0 up &&
		/sbin/ip -n nfpn addr add 10.1.0.2/24 dev vethn1 && /sbin/ip -n nfpn link set vethn1 up || echo "FAIL node: topology"
	echo "info node $(node --version) starting, uptime $(cut -d' ' -f1 /proc/uptime)s"
	node /test/node/node-check.mjs /test/netfence-loader /test/bpf /sys/fs/bpf/netfence-node vethn0 /run/netns/nfpn \
		"$METHOD" || echo "info node check exit status $?"
	# the kernel-level attack checks of the security suite (test/security/), through KernelFilter and nfpkt
	node /test/node/security-check.mjs /test/netfence-loader /test/bpf /sys/fs/bpf/netfence-sec /test/nfpkt "$METHOD" ||
		echo "info security check exit status $?"
fi
echo "info guest done: uptime $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
