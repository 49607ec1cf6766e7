/* door_load: an application that hands its sockets to ktlsxd (tests/daemon/daemon.sh).
 *
 *   door_load --door PATH --profile NAME [--timeout-ms MS]
 *       A TLS echo server whose handshakes ktlsxd runs: listens on 127.0.0.1 (a free port, printed
 *       as "door_load: listening on 127.0.0.1:PORT"), hands every accepted socket to the daemon
 *       (ktlsx_daemon_handshake, one thread per connection: the application side may block, the
 *       daemon may not), then echoes on what comes back: the imported connection (user-space
 *       records), or the bare fd when the kernel owns both directions.  SIGTERM prints
 *       "door_load: accepted A ok O imported I ktls-absent K failed F [status=count ...]" and exits 0.
 *   door_load --door PATH --profile NAME --probe KIND
 *       One exchange with a socket of KIND: tcp (connected, silent peer), closed (peer already
 *       closed), listen, udp, unix, pipe, none (no fd).  Prints "status NAME: MESSAGE".
 *   door_load --door PATH --profile NAME --abuse N
 *       Opens N door connections that send nothing and keeps them open; sends malformed requests
 *       (garbage, truncated, oversized, wrong version, unknown flags, zero length) each on its own
 *       connection and prints "PASS abuse/WHAT" or "FAIL abuse/WHAT: ..." (a bad-request answer, or
 *       the door closing the connection, is a pass; silence is not); then prints
 *       "door_load: abuse holding N" and waits for SIGTERM.
 *   door_load --door PATH --profile NAME --stall N
 *       Starts N handshakes whose TLS peer never speaks: a loopback connection each, handed to the
 *       daemon with one request, the peer kept open and silent; prints "door_load: stalling N" and
 *       waits for SIGTERM, then "door_load: stall answers: STATUS=COUNT ... none=COUNT". */
#include <ktlsx/daemon.h>
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *door_path, *profile;
static int timeout_ms = 10000;
static atomic_long n_accepted, n_ok, n_imported, n_absent, n_failed, by_status[KTLSX_DOOR_UNREACHABLE + 1];

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct ktlsx_daemon_result res;
    ktlsx_conn *conn = ktlsx_daemon_handshake(door_path, fd, KTLSX_SERVER, profile, NULL, NULL, timeout_ms, &res);
    by_status[res.status <= KTLSX_DOOR_UNREACHABLE ? res.status : KTLSX_DOOR_INTERNAL]++;
    if (res.status != KTLSX_DOOR_OK) {
        n_failed++;
        fprintf(stderr, "door_load: %s: %s\n", ktlsx_door_status_name(res.status), res.message);
        close(fd);
        return NULL;
    }
    n_ok++;
    if (res.ktls != (KTLSX_KTLS_TX | KTLSX_KTLS_RX)) n_absent++;
    char buf[16384];
    if (!conn) { /* both directions in the kernel: the fd speaks plaintext */
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            if (write(fd, buf, (size_t)n) != n) break;
        close(fd);
        return NULL;
    }
    n_imported++;
    ktlsx_socket *s = ktlsx_socket_wrap(conn, fd);
    long n;
    while (s && (n = ktlsx_socket_read(s, buf, sizeof buf)) > 0)
        if (ktlsx_socket_write(s, buf, (size_t)n) < 0) break;
    if (s) (void)ktlsx_socket_shutdown(s), ktlsx_socket_free(s);
    else ktlsx_conn_free(conn);
    close(fd);
    return NULL;
}

static int listen_loopback(int type, int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int l = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || (type == SOCK_STREAM && listen(l, 4096) < 0) ||
        getsockname(l, (struct sockaddr *)&sa, &len) < 0) {
        perror("door_load: listen");
        exit(1);
    }
    *port = ntohs(sa.sin_port);
    return l;
}

static int run_server(void)
{
    int port, l = listen_loopback(SOCK_STREAM, &port);
    sigset_t term;
    sigemptyset(&term), sigaddset(&term, SIGTERM), sigaddset(&term, SIGINT);
    pthread_sigmask(SIG_BLOCK, &term, NULL); /* every thread inherits it; main polls for it */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    printf("door_load: listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    for (;;) {
        struct pollfd p = { .fd = l, .events = POLLIN };
        struct timespec zero = { 0, 0 };
        if (sigtimedwait(&term, NULL, &zero) > 0) break;
        if (poll(&p, 1, 100) <= 0) continue;
        int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        n_accepted++;
        pthread_t t;
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0) close(fd), n_failed++;
    }
    printf("door_load: accepted %ld ok %ld imported %ld ktls-absent %ld failed %ld", (long)n_accepted, (long)n_ok,
           (long)n_imported, (long)n_absent, (long)n_failed);
    for (int i = 0; i <= KTLSX_DOOR_UNREACHABLE; i++)
        if (by_status[i]) printf(" %s=%ld", ktlsx_door_status_name(i), (long)by_status[i]);
    printf("\n");
    fflush(stdout);
    _exit(0); /* echo threads still blocked on their peers are not waited for */
}

/* A socket of `kind` to hand over (and its peer, kept open meanwhile). */
static int make_fd(const char *kind, int *peer)
{
    int port, fds[2];
    *peer = -1;
    if (!strcmp(kind, "none")) return -1;
    if (!strcmp(kind, "pipe")) return pipe(fds) == 0 ? (*peer = fds[0], fds[1]) : -1;
    if (!strcmp(kind, "unix")) return socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0 ? (*peer = fds[0], fds[1]) : -1;
    if (!strcmp(kind, "listen")) return listen_loopback(SOCK_STREAM, &port);
    if (!strcmp(kind, "udp")) return listen_loopback(SOCK_DGRAM, &port);
    int l = listen_loopback(SOCK_STREAM, &port);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) return perror("door_load: connect"), -1;
    int a = accept(l, NULL, NULL);
    close(l);
    if (!strcmp(kind, "closed")) {
        close(c);
        usleep(100000); /* the FIN arrives: our side is in CLOSE_WAIT */
    } else {
        *peer = c;
    }
    return a;
}

static int run_probe(const char *kind)
{
    int peer, fd = make_fd(kind, &peer);
    struct ktlsx_daemon_result res;
    ktlsx_conn *conn;
    if (fd < 0 && strcmp(kind, "none") != 0) return fprintf(stderr, "door_load: no socket of kind %s\n", kind), 1;
    if (fd < 0) { /* ktlsx_daemon_handshake refuses fd -1 itself: send the request by hand */
        struct ktlsx_door_request req = { .role = KTLSX_SERVER, .timeout_ms = (uint32_t)timeout_ms };
        uint8_t buf[KTLSX_DOOR_ANSWER_MAX];
        const uint8_t *blob;
        size_t blob_len;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(req.profile, sizeof req.profile, "%s", profile);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", door_path);
        int d = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        long n = ktlsx_door_request_encode(&req, buf, sizeof buf, NULL);
        if (d < 0 || connect(d, (struct sockaddr *)&sa, sizeof sa) < 0 || ktlsx_send_fd(d, buf, (size_t)n, -1, 0) < 0)
            return perror("door_load: door"), 1;
        int extra;
        n = ktlsx_recv_fd(d, buf, sizeof buf, &extra, 0);
        if (n <= 0 || ktlsx_door_answer_decode(buf, (size_t)n, &res, &blob, &blob_len, NULL) < 0)
            return fprintf(stderr, "door_load: no answer\n"), 1;
        close(d);
        conn = NULL;
    } else {
        conn = ktlsx_daemon_handshake(door_path, fd, KTLSX_SERVER, profile, NULL, NULL, timeout_ms, &res);
    }
    printf("status %s: %s\n", ktlsx_door_status_name(res.status), res.message);
    ktlsx_conn_free(conn);
    if (fd >= 0) close(fd);
    if (peer >= 0) close(peer);
    return 0;
}

static int door_connect(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", door_path);
    int d = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (d < 0 || connect(d, (struct sockaddr *)&sa, sizeof sa) < 0) return d >= 0 ? close(d), -1 : -1;
    return d;
}

/* One malformed message on a fresh door connection: a bad-request answer or a close passes. */
static int abuse_one(const char *what, const uint8_t *msg, size_t len, int expect_status)
{
    int d = door_connect(), extra = -1;
    uint8_t buf[KTLSX_DOOR_ANSWER_MAX];
    struct ktlsx_daemon_result res;
    const uint8_t *blob;
    size_t blob_len;
    if (d < 0) return printf("FAIL abuse/%s: cannot reach the door: %s\n", what, strerror(errno)), 1;
    if (send(d, msg, len, MSG_NOSIGNAL) != (ssize_t)len) return printf("FAIL abuse/%s: send\n", what), close(d), 1;
    struct pollfd p = { .fd = d, .events = POLLIN };
    if (poll(&p, 1, 3000) != 1) return printf("FAIL abuse/%s: no answer within 3 s\n", what), close(d), 1;
    long n = ktlsx_recv_fd(d, buf, sizeof buf, &extra, MSG_DONTWAIT);
    close(d);
    if (n == 0 && expect_status < 0) return printf("PASS abuse/%s (door closed)\n", what), 0;
    if (n <= 0 || ktlsx_door_answer_decode(buf, (size_t)n, &res, &blob, &blob_len, NULL) < 0)
        return printf("FAIL abuse/%s: %s\n", what, n == 0 ? "door closed without an answer" : "unreadable answer"), 1;
    if (res.status != expect_status)
        return printf("FAIL abuse/%s: status %s (%s)\n", what, ktlsx_door_status_name(res.status), res.message), 1;
    printf("PASS abuse/%s: %s: %s\n", what, ktlsx_door_status_name(res.status), res.message);
    return 0;
}

/* Hold what is open until the test says SIGTERM (or SIGINT). */
static void wait_for_term(void)
{
    sigset_t term;
    sigemptyset(&term), sigaddset(&term, SIGTERM), sigaddset(&term, SIGINT);
    sigprocmask(SIG_BLOCK, &term, NULL);
    int sig;
    sigwait(&term, &sig);
}

static int run_stall(int n)
{
    int *doors = calloc((size_t)n, sizeof *doors), *peers = calloc((size_t)n, sizeof *peers), port, sent = 0;
    int l = listen_loopback(SOCK_STREAM, &port);
    struct ktlsx_door_request req = { .role = KTLSX_SERVER, .timeout_ms = (uint32_t)timeout_ms };
    uint8_t buf[KTLSX_DOOR_ANSWER_MAX];
    snprintf(req.profile, sizeof req.profile, "%s", profile);
    long len = ktlsx_door_request_encode(&req, buf, sizeof buf, NULL);
    if (!doors || !peers || l < 0 || len < 0) {
        free(doors), free(peers);
        if (l >= 0) close(l);
        return fprintf(stderr, "door_load: stall setup\n"), 1;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < n; i++) {
        doors[i] = peers[i] = -1;
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) {
            if (c >= 0) close(c);
            break;
        }
        int a = accept(l, NULL, NULL), d = door_connect();
        if (a >= 0 && d >= 0 && ktlsx_send_fd(d, buf, (size_t)len, a, 0) == 0) sent++;
        if (a >= 0) close(a); /* the daemon has its own copy */
        doors[i] = d, peers[i] = c;
    }
    close(l);
    printf("door_load: stalling %d\n", sent);
    fflush(stdout);
    wait_for_term();
    long counts[KTLSX_DOOR_UNREACHABLE + 1] = { 0 }, none = 0;
    for (int i = 0; i < n; i++) {
        struct ktlsx_daemon_result res;
        const uint8_t *blob;
        size_t blob_len;
        int extra = -1;
        long got = doors[i] >= 0 ? ktlsx_recv_fd(doors[i], buf, sizeof buf, &extra, MSG_DONTWAIT) : -1;
        if (extra >= 0) close(extra);
        if (got > 0 && ktlsx_door_answer_decode(buf, (size_t)got, &res, &blob, &blob_len, NULL) == 0 &&
            res.status >= 0 && res.status <= KTLSX_DOOR_UNREACHABLE)
            counts[res.status]++;
        else if (doors[i] >= 0)
            none++;
        if (doors[i] >= 0) close(doors[i]);
        if (peers[i] >= 0) close(peers[i]);
    }
    printf("door_load: stall answers:");
    for (int st = 0; st <= KTLSX_DOOR_UNREACHABLE; st++)
        if (counts[st]) printf(" %s=%ld", ktlsx_door_status_name(st), counts[st]);
    printf(" none=%ld\n", none);
    free(doors);
    free(peers);
    return 0;
}

static int run_abuse(int n)
{
    int *idle = calloc((size_t)n, sizeof *idle), held = 0, bad = 0;
    for (int i = 0; i < n && idle; i++)
        if ((idle[i] = door_connect()) >= 0) held++;
    struct ktlsx_door_request req = { .role = KTLSX_SERVER, .timeout_ms = 1000 };
    uint8_t good[KTLSX_DOOR_REQUEST_MAX], m[KTLSX_DOOR_REQUEST_MAX + 64];
    snprintf(req.profile, sizeof req.profile, "%s", profile);
    long len = ktlsx_door_request_encode(&req, good, sizeof good, NULL);
    memset(m, 'A', sizeof m);
    bad += abuse_one("garbage", m, 40, KTLSX_DOOR_BAD_REQUEST);
    bad += abuse_one("truncated", good, (size_t)len - 1, KTLSX_DOOR_BAD_REQUEST);
    bad += abuse_one("header-only", good, 10, KTLSX_DOOR_BAD_REQUEST);
    bad += abuse_one("oversized", m, sizeof m, KTLSX_DOOR_BAD_REQUEST);
    memcpy(m, good, (size_t)len);
    m[5] = 9;
    bad += abuse_one("version", m, (size_t)len, KTLSX_DOOR_BAD_REQUEST);
    memcpy(m, good, (size_t)len);
    m[7] = 0x80;
    bad += abuse_one("flags", m, (size_t)len, KTLSX_DOOR_BAD_REQUEST);
    bad += abuse_one("empty", m, 0, -1);
    printf("door_load: abuse holding %d\n", held);
    fflush(stdout);
    wait_for_term();
    int still = 0; /* how many the daemon has cut meanwhile (its request timeout) */
    for (int i = 0; i < n && idle; i++) {
        char c;
        if (idle[i] >= 0 && recv(idle[i], &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN) still++;
        if (idle[i] >= 0) close(idle[i]);
    }
    printf("door_load: abuse done, %d of %d idle connections still open\n", still, held);
    free(idle);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "door", 1, NULL, 'd' }, { "profile", 1, NULL, 'p' }, { "timeout-ms", 1, NULL, 't' },
        { "probe", 1, NULL, 'P' }, { "abuse", 1, NULL, 'a' }, { "stall", 1, NULL, 's' }, { NULL, 0, NULL, 0 },
    };
    const char *probe = NULL;
    int abuse = -1, stall = -1, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'd') door_path = optarg;
        else if (o == 'p') profile = optarg;
        else if (o == 't') timeout_ms = atoi(optarg);
        else if (o == 'P') probe = optarg;
        else if (o == 'a') abuse = atoi(optarg);
        else if (o == 's') stall = atoi(optarg);
        else return 2;
    }
    if (!door_path || !profile || optind != argc)
        return fputs("usage: door_load --door PATH --profile NAME [--timeout-ms MS] [--probe KIND | --abuse N | --stall N]\n",
                     stderr), 2;
    signal(SIGPIPE, SIG_IGN);
    if (probe) return run_probe(probe);
    if (abuse >= 0) return run_abuse(abuse);
    if (stall >= 0) return run_stall(stall);
    return run_server();
}
