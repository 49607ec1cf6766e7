/*
 * corrupt-proxy: a one-connection TCP relay that flips one byte inside the
 * ciphertext of one TLS application_data record (for the kmod-tests
 * "corrupted record" cases; built on the host by mkinitramfs.sh).
 *
 *   corrupt-proxy [-d s2c|c2s] [-a AFTER] [-k K] [-o OFFSET] [-t SECS]
 *                 LISTEN_PORT TARGET_ADDR TARGET_PORT
 *
 * Listens on 127.0.0.1:LISTEN_PORT (::1 when TARGET_ADDR is IPv6), accepts
 * one connection, connects to TARGET_ADDR:TARGET_PORT (numeric address) and
 * relays both directions with poll().  In direction -d (s2c = target to
 * client, the default; c2s = client to target) it follows the 5-byte TLS
 * record headers and corrupts the K-th (default 1) record of content type
 * 23 (application_data) that ends after stream byte AFTER (default 0; so
 * the first such record is the one holding byte AFTER, or the next one):
 * the body byte at OFFSET (default 10; the last body byte if the body is
 * shorter) is XORed with 0x80.  TLS 1.3 sends its encrypted handshake
 * messages and NewSessionTickets as type 23 too: pass an AFTER past them
 * to hit a record that carries data.  Everything else is relayed
 * unchanged.  The relay ends when either side closes (what was already read
 * from it is delivered first) or after SECS seconds (-t, default 60).
 *
 * stderr: one "corrupt-proxy: flipped ..." line when the byte was changed,
 * one "corrupt-proxy: done ..." line at the end with the byte counts.
 * Exit status: 0 when a byte was flipped, 3 when the connection ended
 * before that, 2 on usage or socket errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF_SIZE = 65536, REC_HDR = 5, TYPE_APPDATA = 23 };

/* one relay direction: bytes read from `from`, not yet written to `to` */
struct dir {
	const char *name;
	int from, to;
	unsigned char buf[BUF_SIZE];
	size_t len, off;       /* pending bytes: buf[off..len) */
	unsigned long long total;   /* bytes read so far in this direction */
	int eof;
	/* record tracking (only in the corrupted direction) */
	int track;
	unsigned char hdr[REC_HDR];
	size_t hdr_have;
	size_t body_left, body_len, body_pos;
	unsigned long long rec_start;
	int target;            /* the current record is the one to corrupt */
	unsigned long appdata_seen;  /* type 23 records ending past opt_after */
};

static unsigned long long opt_after;
static unsigned long opt_k = 1;
static size_t opt_offset = 10;
static int flipped;

static void die(const char *what)
{
	fprintf(stderr, "corrupt-proxy: %s: %s\n", what, strerror(errno));
	exit(2);
}

static unsigned long long num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
		fprintf(stderr, "corrupt-proxy: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

/* follow the record stream through the newly read bytes buf[from..len) */
static void scan(struct dir *d, size_t from)
{
	for (size_t i = from; i < d->len; i++) {
		unsigned long long pos = d->total - (d->len - i);
		if (d->body_left == 0) {
			if (d->hdr_have == 0)
				d->rec_start = pos;
			d->hdr[d->hdr_have++] = d->buf[i];
			if (d->hdr_have < REC_HDR)
				continue;
			d->hdr_have = 0;
			d->body_len = d->body_left = ((size_t)d->hdr[3] << 8) | d->hdr[4];
			d->body_pos = 0;
			d->target = 0;
			if (d->hdr[0] == TYPE_APPDATA && d->body_len > 0 &&
			    d->rec_start + REC_HDR + d->body_len > opt_after &&
			    !flipped && ++d->appdata_seen == opt_k)
				d->target = 1;
			continue;
		}
		if (d->target) {
			size_t at = opt_offset < d->body_len ? opt_offset : d->body_len - 1;
			if (d->body_pos == at) {
				d->buf[i] ^= 0x80;
				flipped = 1;
				d->target = 0;
				fprintf(stderr,
					"corrupt-proxy: flipped %s byte %llu (body offset %zu of a type %u "
					"record of %zu bytes at %llu: application_data record %lu ending past %llu)\n",
					d->name, pos, at, d->hdr[0], d->body_len, d->rec_start,
					d->appdata_seen, opt_after);
			}
		}
		d->body_pos++;
		d->body_left--;
	}
}

static int listen_on(int family, int port)
{
	int s = socket(family, SOCK_STREAM, 0), one = 1;
	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (family == AF_INET6) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
					  .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
			die("bind");
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
			die("bind");
	}
	if (listen(s, 1) < 0)
		die("listen");
	return s;
}

static int connect_to(const char *addr, int port)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
	int s;
	if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&a4, sizeof a4) < 0)
			die("connect");
	} else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
		s = socket(AF_INET6, SOCK_STREAM, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&a6, sizeof a6) < 0)
			die("connect");
	} else {
		fprintf(stderr, "corrupt-proxy: '%s' is not a numeric address\n", addr);
		exit(2);
	}
	return s;
}

static void nonblock(int fd)
{
	int one = 1;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die("fcntl");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* write what is pending; 0 = ok (maybe partial), -1 = peer gone */
static int flush(struct dir *d)
{
	while (d->off < d->len) {
		ssize_t n = write(d->to, d->buf + d->off, d->len - d->off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		d->off += (size_t)n;
	}
	d->off = d->len = 0;
	return 0;
}

/* read once into the empty buffer; 1 = got bytes, 0 = nothing now, -1 = EOF/error */
static int fill(struct dir *d)
{
	ssize_t n = read(d->from, d->buf, sizeof d->buf);
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
	if (n == 0)
		return -1;
	d->len = (size_t)n;
	d->off = 0;
	d->total += (unsigned long long)n;
	if (d->track)
		scan(d, 0);
	return 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: corrupt-proxy [-d s2c|c2s] [-a AFTER] [-k K] [-o OFFSET] [-t SECS] "
			"LISTEN_PORT TARGET_ADDR TARGET_PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct dir c2s = { .name = "client->server" }, s2c = { .name = "server->client" };
	const char *dir = "s2c";
	unsigned long long secs = 60;
	int c;

	while ((c = getopt(argc, argv, "d:a:k:o:t:")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'a': opt_after = num(optarg, "-a"); break;
		case 'k': opt_k = (unsigned long)num(optarg, "-k"); break;
		case 'o': opt_offset = (size_t)num(optarg, "-o"); break;
		case 't': secs = num(optarg, "-t"); break;
		default: usage();
		}
	}
	if (argc - optind != 3 || opt_k == 0)
		usage();
	if (strcmp(dir, "s2c") == 0)
		s2c.track = 1;
	else if (strcmp(dir, "c2s") == 0)
		c2s.track = 1;
	else
		usage();
	unsigned long long lport = num(argv[optind], "listen port");
	unsigned long long tport = num(argv[optind + 2], "target port");
	if (lport == 0 || lport > 65535 || tport == 0 || tport > 65535)
		usage();
	const char *taddr = argv[optind + 1];

	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)secs);   /* SIGALRM's default action ends the relay */

	int ls = listen_on(strchr(taddr, ':') ? AF_INET6 : AF_INET, (int)lport);
	int cl;
	while ((cl = accept(ls, NULL, NULL)) < 0)
		if (errno != EINTR)
			die("accept");
	close(ls);
	int sv = connect_to(taddr, (int)tport);
	nonblock(cl);
	nonblock(sv);
	c2s.from = cl; c2s.to = sv;
	s2c.from = sv; s2c.to = cl;

	struct dir *dirs[2] = { &c2s, &s2c };
	const char *why = NULL;
	while (!why) {
		struct pollfd p[2] = { { .fd = cl }, { .fd = sv } };
		/* read a side only when its direction's buffer is empty; write
		 * to a side while the other direction has bytes pending */
		for (int i = 0; i < 2; i++) {
			struct dir *d = dirs[i];
			struct pollfd *pf = d->from == cl ? &p[0] : &p[1];
			struct pollfd *pt = d->to == cl ? &p[0] : &p[1];
			if (d->len == 0)
				pf->events |= POLLIN;
			else
				pt->events |= POLLOUT;
		}
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (int i = 0; i < 2 && !why; i++) {
			struct dir *d = dirs[i];
			if (d->len > 0) {
				if (flush(d) < 0)
					why = d == &c2s ? "server gone" : "client gone";
			} else {
				int r = fill(d);
				if (r < 0) {
					d->eof = 1;
					why = d == &c2s ? "client closed" : "server closed";
				} else if (r > 0 && flush(d) < 0) {
					why = d == &c2s ? "server gone" : "client gone";
				}
			}
		}
	}
	/* deliver what the other direction still holds (bounded by the alarm) */
	for (int i = 0; i < 2; i++) {
		struct dir *d = dirs[i];
		while (d->len > d->off) {
			struct pollfd pt = { .fd = d->to, .events = POLLOUT };
			if (poll(&pt, 1, 2000) <= 0 || flush(d) < 0)
				break;
		}
	}
	fprintf(stderr, "corrupt-proxy: done (%s): client->server %llu bytes, server->client %llu bytes, %s\n",
		why, c2s.total, s2c.total, flipped ? "one byte flipped" : "nothing flipped");
	close(cl);
	close(sv);
	return flipped ? 0 : 3;
}
