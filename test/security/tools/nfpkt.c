// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * nfpkt — the attack and sniffer tool of the security tests (test/security/, and the portability
 * guests, which have no python). Static, no dependencies. Every command prints one result line.
 *
 *   nfpkt send IFACE COUNT SPEC...     build a frame from SPEC, send it COUNT times (AF_PACKET)
 *   nfpkt tun DEV COUNT SPEC...        build an IP packet (no eth=), write it COUNT times to tun DEV
 *   nfpkt mktun DEV [ARPHRD]           create a persistent tun device, optionally with another link type
 *   nfpkt icmp6 DST TYPE HLIM COUNT MARK [TARGET]   ICMPv6 from a raw socket (cgroup tests)
 *   nfpkt udp DST PORT COUNT MARK      UDP datagrams from an ordinary socket
 *   nfpkt sniff IFACE MS MARK...       capture every frame on IFACE for MS ms (AF_PACKET, all
 *                                      protocols); prints "ready", then "MARK N" per marker
 *   nfpkt bind UID tcp|udp ADDR PORT   bind() as UID; prints "ok" or "error ENAME"
 *
 * SPEC words (any order): eth=SRC,DST (SRC "self" = the interface's MAC)  vlan=ID (repeatable,
 * outermost first)  type=0xNNNN (a raw ethertype)  arp=OP,SHA,SPA,THA,TPA  arphw=N (ARP htype)
 * ip4=SRC,DST[,TTL]  ip6=SRC,DST[,HLIM]  hbh (IPv6 hop-by-hop header with router alert)  ext=N (that,
 * followed by N-1 destination-options headers)
 * udp=SPORT,DPORT  tcp=SPORT,DPORT (SYN)  icmp=TYPE[,CODE]  icmp6=TYPE[,CODE[,TARGET]]
 * mark=TEXT (payload; the sniffer counts frames that contain it).
 * Send results: "sent N" or "error ENAME (message)". Checksums are correct (receivers accept them).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 1600
#define MAX_MARKS 16

static void die(const char *fmt, const char *arg)
{
	fprintf(stdout, "error usage: ");
	fprintf(stdout, fmt, arg);
	fprintf(stdout, "\n");
	exit(2);
}

static void report_errno(const char *what)
{
	const char *name = strerrorname_np(errno);
	printf("error %s (%s: %s)\n", name ? name : "E?", what, strerror(errno));
}

/* ---------------------------------------------------------------- frame building */

struct spec {
	int has_eth, src_self, nvlan, has_type, has_arp, has_ip4, has_ip6, hbh, l4; /* l4: 'u','t','i','6' */
	uint8_t src[6], dst[6];
	uint16_t vlan[4], ethertype;
	uint16_t arp_op, arp_hw;
	uint8_t sha[6], tha[6], spa[4], tpa[4];
	uint8_t s4[4], d4[4], s6[16], d6[16], ttl;
	uint16_t sport, dport;
	uint8_t itype, icode, target[16];
	int has_target;
	const char *mark;
};

static void parse_mac(const char *s, uint8_t *out)
{
	unsigned b[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		die("bad MAC %s", s);
	for (int i = 0; i < 6; i++)
		out[i] = (uint8_t)b[i];
}

/* Splits "a,b,c" in place; returns the number of fields (at most max). */
static int fields(char *s, char **out, int max)
{
	int n = 0;
	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
		out[n++] = tok;
	return n;
}

static void parse_spec(int argc, char **argv, struct spec *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->ttl = 64;
	sp->arp_hw = 1;
	for (int i = 0; i < argc; i++) {
		char *w = strdup(argv[i]), *v = strchr(w, '='), *f[6];
		if (v)
			*v++ = 0;
		int n = v ? fields(v, f, 6) : 0;
		if (!strcmp(w, "eth") && n == 2) {
			sp->has_eth = 1;
			if (!strcmp(f[0], "self"))
				sp->src_self = 1;
			else
				parse_mac(f[0], sp->src);
			parse_mac(f[1], sp->dst);
		} else if (!strcmp(w, "vlan") && n == 1 && sp->nvlan < 4) {
			sp->vlan[sp->nvlan++] = (uint16_t)strtoul(f[0], NULL, 0);
		} else if (!strcmp(w, "type") && n == 1) {
			sp->has_type = 1;
			sp->ethertype = (uint16_t)strtoul(f[0], NULL, 0);
		} else if (!strcmp(w, "arp") && n == 5) {
			sp->has_arp = 1;
			sp->arp_op = (uint16_t)strtoul(f[0], NULL, 0);
			parse_mac(f[1], sp->sha);
			if (inet_pton(AF_INET, f[2], sp->spa) != 1 || inet_pton(AF_INET, f[4], sp->tpa) != 1)
				die("bad ARP address in %s", argv[i]);
			parse_mac(f[3], sp->tha);
		} else if (!strcmp(w, "arphw") && n == 1) {
			sp->arp_hw = (uint16_t)strtoul(f[0], NULL, 0);
		} else if (!strcmp(w, "ip4") && n >= 2) {
			sp->has_ip4 = 1;
			if (inet_pton(AF_INET, f[0], sp->s4) != 1 || inet_pton(AF_INET, f[1], sp->d4) != 1)
				die("bad IPv4 address in %s", argv[i]);
			if (n == 3)
				sp->ttl = (uint8_t)strtoul(f[2], NULL, 0);
		} else if (!strcmp(w, "ip6") && n >= 2) {
			sp->has_ip6 = 1;
			if (inet_pton(AF_INET6, f[0], sp->s6) != 1 || inet_pton(AF_INET6, f[1], sp->d6) != 1)
				die("bad IPv6 address in %s", argv[i]);
			if (n == 3)
				sp->ttl = (uint8_t)strtoul(f[2], NULL, 0);
		} else if (!strcmp(w, "hbh") && n == 0) {
			sp->hbh = 1;
		} else if (!strcmp(w, "ext") && n == 1) {
			sp->hbh = atoi(f[0]);
			if (sp->hbh < 1 || sp->hbh > 16)
				die("ext=N takes 1..16, not %s", f[0]);
		} else if ((!strcmp(w, "udp") || !strcmp(w, "tcp")) && n == 2) {
			sp->l4 = w[0];
			sp->sport = (uint16_t)strtoul(f[0], NULL, 0);
			sp->dport = (uint16_t)strtoul(f[1], NULL, 0);
		} else if ((!strcmp(w, "icmp") || !strcmp(w, "icmp6")) && n >= 1) {
			sp->l4 = w[4] == '6' ? '6' : 'i';
			sp->itype = (uint8_t)strtoul(f[0], NULL, 0);
			if (n >= 2)
				sp->icode = (uint8_t)strtoul(f[1], NULL, 0);
			if (n >= 3) {
				if (inet_pton(AF_INET6, f[2], sp->target) != 1)
					die("bad target in %s", argv[i]);
				sp->has_target = 1;
			}
		} else if (!strcmp(w, "mark") && v) {
			sp->mark = strdup(v);
		} else {
			die("unknown spec word %s", argv[i]);
		}
		free(w);
	}
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Builds the frame (or, without eth=, the IP packet) into buf; returns its length. */
static size_t build(const struct spec *sp, const uint8_t *self_mac, uint8_t *buf)
{
	size_t off = 0;
	memset(buf, 0, MAX_FRAME);
	size_t mlen = sp->mark ? strlen(sp->mark) : 0;
	if (sp->has_eth) {
		memcpy(buf, sp->dst, 6);
		memcpy(buf + 6, sp->src_self ? self_mac : sp->src, 6);
		off = 12;
		for (int i = 0; i < sp->nvlan; i++) {
			put16(buf + off, sp->nvlan > 1 && i == 0 ? 0x88a8 : 0x8100);
			put16(buf + off + 2, sp->vlan[i]);
			off += 4;
		}
		uint16_t et = sp->has_type ? sp->ethertype : sp->has_arp ? 0x0806 : sp->has_ip6 ? 0x86dd : 0x0800;
		put16(buf + off, et);
		off += 2;
	}
	if (sp->has_type || sp->has_arp) {
		if (sp->has_arp) {
			uint8_t *a = buf + off;
			put16(a, sp->arp_hw);
			put16(a + 2, 0x0800);
			a[4] = 6;
			a[5] = 4;
			put16(a + 6, sp->arp_op);
			memcpy(a + 8, sp->sha, 6);
			memcpy(a + 14, sp->spa, 4);
			memcpy(a + 18, sp->tha, 6);
			memcpy(a + 24, sp->tpa, 4);
			off += 28;
		}
		memcpy(buf + off, sp->mark, mlen); /* after the ARP body: trailing bytes a bridge forwards */
		off += mlen;
		return off < 60 ? 60 : off;
	}
	size_t l3 = off, l4;
	uint8_t proto = sp->l4 == 'u' ? 17 : sp->l4 == 't' ? 6 : sp->l4 == '6' ? 58 : 1;
	if (sp->has_ip6) {
		l4 = l3 + 40;
		for (int i = 0; i < sp->hbh; i++) {
			uint8_t next = i == sp->hbh - 1 ? proto : 60; /* then destination options */
			/* hop-by-hop first: router alert (type 5, len 2, value 0 = MLD) + PadN; others: PadN */
			uint8_t h[8] = { next, 0, 5, 2, 0, 0, 1, 0 }, d[8] = { next, 0, 1, 4, 0, 0, 0, 0 };
			memcpy(buf + l4, i == 0 ? h : d, 8);
			l4 += 8;
		}
	} else {
		l4 = l3 + 20;
	}
	size_t l4len;
	uint8_t *p = buf + l4;
	if (sp->l4 == 'u') {
		put16(p, sp->sport);
		put16(p + 2, sp->dport);
		l4len = 8 + mlen;
		put16(p + 4, (uint16_t)l4len);
		memcpy(p + 8, sp->mark, mlen);
	} else if (sp->l4 == 't') {
		put16(p, sp->sport);
		put16(p + 2, sp->dport);
		p[4] = 0x12, p[5] = 0x34, p[6] = 0x56, p[7] = 0x78; /* seq */
		p[12] = 5 << 4;
		p[13] = 0x02; /* SYN */
		put16(p + 14, 64240);
		l4len = 20 + mlen;
		memcpy(p + 20, sp->mark, mlen);
	} else { /* ICMP / ICMPv6: type, code, checksum, 4 bytes, [target], mark */
		p[0] = sp->itype;
		p[1] = sp->icode;
		size_t body = 8;
		if (sp->has_target) {
			memcpy(p + 8, sp->target, 16);
			body += 16;
		}
		memcpy(p + body, sp->mark, mlen);
		l4len = body + mlen;
	}
	size_t total = l4 + l4len - l3;
	uint32_t ps;
	if (sp->has_ip6) {
		uint8_t *ip = buf + l3;
		ip[0] = 0x60;
		put16(ip + 4, (uint16_t)(total - 40));
		ip[6] = sp->hbh ? 0 : proto;
		ip[7] = sp->ttl;
		memcpy(ip + 8, sp->s6, 16);
		memcpy(ip + 24, sp->d6, 16);
		ps = sum16(sp->s6, 16, 0);
		ps = sum16(sp->d6, 16, ps);
		ps += (uint32_t)l4len + proto;
	} else {
		uint8_t *ip = buf + l3;
		ip[0] = 0x45;
		put16(ip + 2, (uint16_t)total);
		put16(ip + 4, 1);
		ip[8] = sp->ttl;
		ip[9] = proto;
		memcpy(ip + 12, sp->s4, 4);
		memcpy(ip + 16, sp->d4, 4);
		put16(ip + 10, fold(sum16(ip, 20, 0)));
		ps = sum16(sp->s4, 4, 0);
		ps = sum16(sp->d4, 4, ps);
		ps += (uint32_t)l4len + proto;
	}
	if (proto == 1)
		ps = 0; /* ICMPv4: no pseudo-header */
	int csum_off = sp->l4 == 'u' ? 6 : sp->l4 == 't' ? 16 : 2;
	uint16_t c = fold(sum16(p, l4len, ps));
	if (sp->l4 == 'u' && c == 0)
		c = 0xffff;
	put16(p + csum_off, c);
	size_t len = l4 + l4len;
	return sp->has_eth && len < 60 ? 60 : len;
}

/* ---------------------------------------------------------------- commands */

static int cmd_send(const char *ifname, int count, int argc, char **argv)
{
	struct spec sp;
	parse_spec(argc, argv, &sp);
	if (!sp.has_eth)
		die("send needs eth=SRC,DST%s", "");
	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0)
		return report_errno("socket(AF_PACKET)"), 1;
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr))
		return report_errno("SIOCGIFHWADDR"), 1;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(ifname), .sll_halen = 6 };
	uint8_t buf[MAX_FRAME];
	size_t len = build(&sp, (const uint8_t *)ifr.ifr_hwaddr.sa_data, buf);
	memcpy(sll.sll_addr, buf, 6);
	for (int i = 0; i < count; i++)
		if (sendto(fd, buf, len, 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
			return report_errno("sendto"), 1;
	printf("sent %d\n", count);
	return 0;
}

static int tun_open(const char *dev, int persist, int link_type)
{
	int fd = open("/dev/net/tun", O_RDWR);
	if (fd < 0)
		return -1;
	struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (ioctl(fd, TUNSETIFF, &ifr) || (link_type >= 0 && ioctl(fd, TUNSETLINK, (unsigned long)link_type)) ||
	    (persist && ioctl(fd, TUNSETPERSIST, 1UL))) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int cmd_tun(const char *dev, int count, int argc, char **argv)
{
	struct spec sp;
	parse_spec(argc, argv, &sp);
	if (sp.has_eth || !(sp.has_ip4 || sp.has_ip6))
		die("tun takes an IP packet (ip4= or ip6=, no eth=)%s", "");
	int fd = tun_open(dev, 0, -1);
	if (fd < 0)
		return report_errno("attaching to the tun device"), 1;
	uint8_t buf[MAX_FRAME];
	size_t len = build(&sp, NULL, buf);
	for (int i = 0; i < count; i++)
		if (write(fd, buf, len) < 0)
			return report_errno("write"), 1;
	printf("sent %d\n", count);
	return 0;
}

static int cmd_mktun(const char *dev, int link_type)
{
	int fd = tun_open(dev, 1, link_type);
	if (fd < 0)
		return report_errno("creating the tun device"), 1;
	close(fd);
	printf("ok\n");
	return 0;
}

static int cmd_icmp6(const char *dst, int type, int hlim, int count, const char *mark, const char *target)
{
	struct sockaddr_in6 to = { .sin6_family = AF_INET6 };
	if (inet_pton(AF_INET6, dst, &to.sin6_addr) != 1)
		die("bad destination %s", dst);
	int fd = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6); /* the kernel fills in the checksum */
	if (fd < 0)
		return report_errno("socket(ICMPv6)"), 1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hlim, sizeof(hlim));
	setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hlim, sizeof(hlim));
	uint8_t msg[256] = { (uint8_t)type, 0 };
	size_t len = 8;
	if (target) {
		if (inet_pton(AF_INET6, target, msg + 8) != 1)
			die("bad target %s", target);
		len += 16;
	}
	memcpy(msg + len, mark, strlen(mark));
	len += strlen(mark);
	for (int i = 0; i < count; i++)
		if (sendto(fd, msg, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
			return report_errno("sendto"), 1;
	printf("sent %d\n", count);
	return 0;
}

static int cmd_udp(const char *dst, int port, int count, const char *mark)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, dst, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, dst, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	} else {
		die("bad destination %s", dst);
	}
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (fd < 0)
		return report_errno("socket"), 1;
	for (int i = 0; i < count; i++)
		if (sendto(fd, mark, strlen(mark), 0, (struct sockaddr *)&ss, sl) < 0)
			return report_errno("sendto"), 1;
	printf("sent %d\n", count);
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmd_sniff(const char *ifname, int ms, int nmarks, char **marks)
{
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (fd < 0)
		return report_errno("socket(AF_PACKET)"), 1;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)if_nametoindex(ifname) };
	if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll)))
		return report_errno("bind to the interface"), 1;
	int counts[MAX_MARKS] = { 0 };
	size_t mlen[MAX_MARKS];
	for (int i = 0; i < nmarks; i++)
		mlen[i] = strlen(marks[i]);
	printf("ready\n");
	fflush(stdout);
	long long end = now_ms() + ms;
	uint8_t buf[65536];
	for (long long left; (left = end - now_ms()) > 0;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING)
			continue; /* only what arrives at this interface */
		for (int i = 0; i < nmarks; i++)
			if (memmem(buf, (size_t)n, marks[i], mlen[i]))
				counts[i]++;
	}
	for (int i = 0; i < nmarks; i++)
		printf("%s %d\n", marks[i], counts[i]);
	return 0;
}

static int cmd_bind(unsigned uid, const char *proto, const char *addr, int port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	} else {
		die("bad address %s", addr);
	}
	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
		return report_errno("dropping to the uid"), 1;
	int fd = socket(ss.ss_family, strcmp(proto, "tcp") ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (fd < 0)
		return report_errno("socket"), 1;
	if (bind(fd, (struct sockaddr *)&ss, sl))
		return report_errno("bind"), 1;
	printf("ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "send"))
		return cmd_send(argv[2], atoi(argv[3]), argc - 4, argv + 4);
	if (argc >= 4 && !strcmp(argv[1], "tun"))
		return cmd_tun(argv[2], atoi(argv[3]), argc - 4, argv + 4);
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "mktun"))
		return cmd_mktun(argv[2], argc == 4 ? atoi(argv[3]) : -1);
	if ((argc == 7 || argc == 8) && !strcmp(argv[1], "icmp6"))
		return cmd_icmp6(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argv[6], argc == 8 ? argv[7] : NULL);
	if (argc == 6 && !strcmp(argv[1], "udp"))
		return cmd_udp(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
	if (argc >= 5 && !strcmp(argv[1], "sniff") && argc - 4 <= MAX_MARKS)
		return cmd_sniff(argv[2], atoi(argv[3]), argc - 4, argv + 4);
	if (argc == 6 && !strcmp(argv[1], "bind"))
		return cmd_bind((unsigned)strtoul(argv[2], NULL, 10), argv[3], argv[4], atoi(argv[5]));
	fprintf(stderr, "usage: see the header of test/security/tools/nfpkt.c\n");
	return 2;
}
