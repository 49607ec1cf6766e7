/* echo-server [--handshake-timeout-ms MS] [--max-conns N] IPV4:PORT CERT KEY: TLS echo, one thread, epoll,
 * kernel TLS where the kernel has it.  Each ktlsx_socket_*_step call returns at once and says what it needs
 * next, WANT_READ or WANT_WRITE: exactly the EPOLLIN / EPOLLOUT we ask epoll for.  So no connection waits
 * for another, and a slow or hostile peer costs one slot until its deadline, never the server. */
#include <ktlsx/ktlsx.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

enum { TAG_LISTEN = -1, TAG_SIGNAL = -2 }; /* epoll tags of the two fds that are no connection */
struct conn {
    ktlsx_socket *sock;
    int fd;
    uint32_t events;          /* what epoll watches now */
    bool ready, again;        /* handshake done; stopped with work left (fairness): run again soon */
    struct sockaddr_in peer;  /* for the log line */
    size_t len, off;          /* buf[off..len): read, not yet echoed */
    unsigned char buf[16384]; /* until this is echoed we read no more: the peer has to read too */
};
static struct conn **conns; /* slot i has epoll tag i */
static int nconns, max_conns = 1024, ep, lfd;
static long accepted, completed, failed[KTLSX_IO_TIMEOUT + 1]; /* failed[what the last step said] */

static void watch(int fd, int op, uint32_t events, int tag)
{
    if (epoll_ctl(ep, op, fd, &(struct epoll_event){ .events = events, .data.fd = tag }) < 0) perror("echo-server: epoll");
}
static void log_line(void *arg, int level, const char *line)
{ /* Without kernel TLS every connection says so: once is enough. */
    static int ktls_lines;
    if (level <= KTLSX_LOG_WARNING && (!strstr(line, "kernel TLS") || ktls_lines++ == 0))
        fprintf(stderr, "echo-server: %s\n", line);
}
static void close_conn(int slot, int rc)
{
    struct conn *c = conns[slot];
    const char *why = ktlsx_socket_error(c->sock); /* "" after a close_notify */
    if (rc == KTLSX_IO_CLOSED && c->ready) completed++, (void)ktlsx_socket_shutdown_step(c->sock); /* one try */
    else failed[rc]++; /* a failure's alert, if it has one, went out with the failing step */
    if (why[0]) fprintf(stderr, "echo-server: %s:%d: %s\n", inet_ntoa(c->peer.sin_addr), ntohs(c->peer.sin_port), why);
    ktlsx_socket_free(c->sock);
    close(c->fd); /* which also takes it out of epoll */
    free(c), conns[slot] = NULL;
    if (nconns-- == max_conns) watch(lfd, EPOLL_CTL_MOD, EPOLLIN, TAG_LISTEN); /* room again */
}
/* Run one connection as far as it goes without waiting, then tell epoll what it waits for. */
static void drive(int slot)
{
    struct conn *c = conns[slot];
    int rc = ktlsx_socket_handshake_step(c->sock); /* OK at once when done */
    c->ready = c->ready || rc == KTLSX_IO_OK;
    for (size_t round = 0, sent; rc == KTLSX_IO_OK && round < 16; round++) {
        if (c->off < c->len) { /* echo before reading more */
            rc = ktlsx_socket_write_step(c->sock, c->buf + c->off, c->len - c->off, &sent);
            if ((c->off += sent) == c->len) c->off = c->len = 0;
        } else if (ktlsx_socket_pending_output(c->sock) > 0) /* sealed records the fd did not take yet */
            rc = ktlsx_socket_flush_step(c->sock);
        else
            rc = ktlsx_socket_read_step(c->sock, c->buf, sizeof c->buf, &c->len);
    }
    /* Data already inside the library never makes the fd readable: come back for it unasked. */
    c->again = rc == KTLSX_IO_OK || (rc == KTLSX_IO_WANT_READ && ktlsx_socket_pending_plaintext(c->sock) > 0);
    if (rc != KTLSX_IO_OK && rc != KTLSX_IO_WANT_READ && rc != KTLSX_IO_WANT_WRITE) return close_conn(slot, rc);
    uint32_t want = rc == KTLSX_IO_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    if (want != c->events) watch(c->fd, EPOLL_CTL_MOD, c->events = want, slot);
}
static void accept_all(ktlsx_config *cfg, int hs_ms)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    int fd, slot = 0;
    while (nconns < max_conns && (fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct conn *c = calloc(1, sizeof *c);
        if (c) c->sock = ktlsx_socket_new(cfg, fd, NULL); /* kernel TLS mode: auto, the default */
        if (!c || !c->sock || ktlsx_socket_set_timeouts(c->sock, hs_ms, 0) < 0) {
            fprintf(stderr, "echo-server: out of memory: connection dropped\n"), free(c), close(fd);
            continue;
        }
        while (conns[slot]) slot++;
        conns[slot] = c, c->fd = fd, c->peer = sa, c->events = EPOLLIN, nconns++, accepted++;
        watch(fd, EPOLL_CTL_ADD, EPOLLIN, slot);
        drive(slot); /* the ClientHello is often there already */
    }
    if (nconns == max_conns) watch(lfd, EPOLL_CTL_MOD, 0, TAG_LISTEN); /* full: the rest waits in the backlog */
}
int main(int argc, char **argv)
{
    static const struct option opts[] = { { "handshake-timeout-ms", 1, NULL, 't' }, { "max-conns", 1, NULL, 'm' }, { 0 } };
    int hs_ms = 10000, o;
    char *end = NULL;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == '?') return 2; /* getopt said why */
        long v = strtol(optarg, &end, 10);
        if (v < 1 || v > 1000000 || *end)
            return fprintf(stderr, "echo-server: --%s %s: want 1 to 1000000\n", opts[o == 'm'].name, optarg), 2;
        *(o == 't' ? &hs_ms : &max_conns) = (int)v;
    }
    char *colon = optind + 3 == argc ? strrchr(argv[optind], ':') : NULL;
    if (!colon) return fputs("usage: echo-server [--handshake-timeout-ms MS] [--max-conns N] IPV4:PORT CERT KEY\n", stderr), 2;
    *colon = '\0';
    long port = strtol(colon + 1, &end, 10);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, argv[optind], &sa.sin_addr) != 1 || !colon[1] || *end || port < 1 || port > 65535)
        return fprintf(stderr, "echo-server: %s:%s: not IPV4:PORT\n", argv[optind], colon + 1), 2;
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    if (!cfg || ktlsx_config_add_cert(cfg, argv[optind + 1], argv[optind + 2]) < 0 ||
        ktlsx_config_set_log(cfg, log_line, NULL) < 0)
        return fprintf(stderr, "echo-server: %s\n", cfg ? ktlsx_config_error(cfg) : "no memory"), ktlsx_config_free(cfg), 1;
    sigset_t stop; /* SIGTERM / SIGINT arrive as data on a signalfd: no handler, no race with epoll_wait */
    sigemptyset(&stop), sigaddset(&stop, SIGTERM), sigaddset(&stop, SIGINT), sigprocmask(SIG_BLOCK, &stop, NULL);
    int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
    /* A full backlog drops SYNs and the client retries a second later: as long as the kernel allows. */
    if (sfd < 0 || (lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        (ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || !(conns = calloc((size_t)max_conns, sizeof(struct conn *))))
        return perror("echo-server"), ktlsx_config_free(cfg), 1;
    watch(lfd, EPOLL_CTL_ADD, EPOLLIN, TAG_LISTEN), watch(sfd, EPOLL_CTL_ADD, EPOLLIN, TAG_SIGNAL);
    printf("echo-server: listening on %s:%ld\n", argv[optind], port), fflush(stdout); /* tests wait for it */
    for (int running = 1, timeout = -1; running;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, timeout);
        for (int i = 0; i < n; i++) {
            int tag = evs[i].data.fd;
            if (tag == TAG_LISTEN) accept_all(cfg, hs_ms);
            else if (tag == TAG_SIGNAL) running = 0;
            else if (conns[tag]) drive(tag);
        }
        /* Run what has work left or a passed deadline (the step says TIMEOUT); sleep to the nearest one. */
        timeout = -1; /* (a scan over all slots; a min-heap would suit 100k connections better) */
        for (int i = 0; i < max_conns; i++) {
            if (conns[i] && (conns[i]->again || ktlsx_socket_timeout_ms(conns[i]->sock) == 0)) drive(i);
            int t = !conns[i] ? -1 : conns[i]->again ? 0 : ktlsx_socket_timeout_ms(conns[i]->sock);
            if (t >= 0 && (timeout < 0 || t < timeout)) timeout = t;
        }
    }
    for (int i = 0; i < max_conns; i++)
        if (conns[i]) ktlsx_socket_free(conns[i]->sock), close(conns[i]->fd), free(conns[i]);
    printf("echo-server: accepted %ld, completed %ld, failed: handshake timeout %ld, tls error %ld, closed early %ld\n",
           accepted, completed, failed[KTLSX_IO_TIMEOUT], failed[KTLSX_IO_FAILED], failed[KTLSX_IO_CLOSED]);
    free(conns), ktlsx_config_free(cfg), close(ep), close(sfd), close(lfd);
    return 0;
}
