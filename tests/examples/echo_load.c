/* echo_load: the concurrency test of examples/echo-server (issue 7, "What it must show").
 *
 * One thread, one epoll loop, every client started at the same moment:
 *   - well-behaved clients of two kinds, OpenSSL libssl (alternately TLS 1.3 and TLS 1.2) and the
 *     ktlsx socket layer, each sending 16-64 KiB of random bytes and checking the echo byte for byte;
 *   - stallers that send part of a ClientHello (or a whole one) and then nothing: the server must
 *     close them at its handshake deadline, not before and not much later;
 *   - garbage senders (random bytes that are no TLS record, a record header of an unknown type, a
 *     plain HTTP request): the server must answer with an alert record (type 21) and close, at once.
 * And nothing waits on anything else: every well-behaved client must be done before the stallers'
 * deadline, although they all started together.
 *
 * Usage: echo_load --port P --ca FILE [--host 127.0.0.1] [--server-name localhost]
 *          [--openssl N] [--ktlsx N] [--stall N] [--garbage N]
 *          [--handshake-timeout-ms MS (the server's, default 3000)] [--slack-ms MS (default 1500)]
 * Prints one "PASS name" / "FAIL name: reason" line per property, details of failing clients
 * (indented), and a summary line; exits 0 only if everything passed.  Every wait is bounded:
 * the loop gives up at handshake timeout + slack + 15 s. */
#include <ktlsx/ktlsx.h>
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum kind { K_OPENSSL, K_KTLSX, K_STALL, K_GARBAGE, K_COUNT };
static const char *const kind_name[K_COUNT] = { "openssl", "ktlsx", "stalled", "garbage" };

typedef struct {
    enum kind kind;
    int variant; /* openssl: 0 TLS 1.3, 1 TLS 1.2; stall: 0 part of a ClientHello, 1 all of it; garbage: 0..2 */
    int fd;
    bool connected, done, ok;
    int64_t started, finished; /* ms on the loop's clock */
    uint32_t events;
    uint8_t *data, *echo;      /* well-behaved: what we send, what came back */
    size_t len, sent, recvd;
    SSL *ssl;
    bool ssl_ready;
    ktlsx_socket *ks;
    uint8_t head[16];          /* garbage: the first bytes the server sent */
    size_t head_len, junk_len; /* ...and how many bytes in all */
    char why[200];
} client;

static client *clients;
static int nclients, ep;
static struct timespec t_zero;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)(ts.tv_sec - t_zero.tv_sec) * 1000 + (ts.tv_nsec - t_zero.tv_nsec) / 1000000;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL setup: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

static void finish(client *c, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(client *c, bool ok, const char *fmt, ...)
{
    if (c->done) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->done = true;
    c->ok = ok;
    c->finished = now_ms();
    if (c->ssl) {
        if (ok) (void)SSL_shutdown(c->ssl); /* close_notify, one try: the server counts a clean end */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->ks) {
        if (ok) (void)ktlsx_socket_shutdown_step(c->ks);
        ktlsx_socket_free(c->ks);
        c->ks = NULL;
    }
    close(c->fd);
    c->fd = -1;
}

static void want(client *c, uint32_t events)
{
    if (c->done || events == c->events) return;
    struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)(c - clients) };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) finish(c, false, "epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static const char *ssl_why(void)
{
    static char buf[160];
    unsigned long e = ERR_get_error();
    if (!e) return strerror(errno);
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

/* Both kinds of well-behaved client end here once the whole echo is back. */
static void check_echo(client *c)
{
    if (c->recvd < c->len) return;
    size_t i = 0;
    while (i < c->len && c->data[i] == c->echo[i]) i++;
    if (i < c->len) finish(c, false, "echo differs from what was sent at byte %zu of %zu", i, c->len);
    else finish(c, true, "%zu bytes echoed", c->len);
}

/* ---- OpenSSL client: nonblocking libssl, reading and writing whenever either can move ---- */
static void step_openssl(client *c)
{
    if (!c->ssl_ready) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) want(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE) want(c, EPOLLOUT);
            else finish(c, false, "handshake: %s", ssl_why());
            return;
        }
        c->ssl_ready = true;
    }
    bool progress = true, blocked_out = false;
    while (progress && !c->done) {
        progress = false;
        while (c->recvd < c->len) {
            int r = SSL_read(c->ssl, c->echo + c->recvd, (int)(c->len - c->recvd));
            if (r > 0) {
                c->recvd += (size_t)r;
                progress = true;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) break;
            if (e == SSL_ERROR_WANT_WRITE) {
                blocked_out = true;
                break;
            }
            return finish(c, false, "read after %zu of %zu bytes: %s", c->recvd, c->len,
                          e == SSL_ERROR_ZERO_RETURN ? "server sent close_notify" : ssl_why());
        }
        check_echo(c);
        while (!c->done && c->sent < c->len) {
            size_t chunk = c->len - c->sent < 16384 ? c->len - c->sent : 16384;
            int r = SSL_write(c->ssl, c->data + c->sent, (int)chunk);
            if (r > 0) {
                c->sent += (size_t)r;
                progress = true;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE) blocked_out = true;
            else if (e != SSL_ERROR_WANT_READ) return finish(c, false, "write after %zu bytes: %s", c->sent, ssl_why());
            break;
        }
    }
    want(c, EPOLLIN | (blocked_out ? EPOLLOUT : 0));
}

/* ---- ktlsx client: the socket layer's step calls, as the echo server drives them ---- */
static void step_ktlsx(client *c)
{
    int rc = ktlsx_socket_handshake_step(c->ks);
    if (rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) return want(c, rc == KTLSX_IO_WANT_READ ? EPOLLIN : EPOLLOUT);
    if (rc != KTLSX_IO_OK) return finish(c, false, "handshake: %s", ktlsx_socket_error(c->ks));
    bool progress = true, blocked_out = false;
    while (progress && !c->done) {
        progress = false;
        if (c->sent < c->len || ktlsx_socket_pending_output(c->ks) > 0) {
            size_t n = 0, chunk = c->len - c->sent < 16384 ? c->len - c->sent : 16384;
            rc = chunk ? ktlsx_socket_write_step(c->ks, c->data + c->sent, chunk, &n) : ktlsx_socket_flush_step(c->ks);
            c->sent += n;
            progress = n > 0;
            blocked_out = rc == KTLSX_IO_WANT_WRITE;
            if (rc != KTLSX_IO_OK && rc != KTLSX_IO_WANT_READ && rc != KTLSX_IO_WANT_WRITE)
                return finish(c, false, "write after %zu bytes: %s", c->sent, ktlsx_socket_error(c->ks));
        }
        size_t got = 0;
        rc = ktlsx_socket_read_step(c->ks, c->echo + c->recvd, c->len - c->recvd, &got);
        c->recvd += got;
        progress = progress || got > 0 || ktlsx_socket_pending_plaintext(c->ks) > 0;
        blocked_out = blocked_out || rc == KTLSX_IO_WANT_WRITE;
        if (rc != KTLSX_IO_OK && rc != KTLSX_IO_WANT_READ && rc != KTLSX_IO_WANT_WRITE)
            return finish(c, false, "read after %zu of %zu bytes: %s", c->recvd, c->len, ktlsx_socket_error(c->ks));
        check_echo(c);
    }
    want(c, EPOLLIN | (blocked_out ? EPOLLOUT : 0));
}

/* ---- stallers and garbage: read whatever comes until the server closes ---- */
static void step_silent(client *c, int hs_ms, int slack_ms)
{
    for (int i = 0; i < 64; i++) { /* bounded: the rest on the next event */
        uint8_t buf[4096];
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n > 0) {
            size_t keep = sizeof c->head - c->head_len < (size_t)n ? sizeof c->head - c->head_len : (size_t)n;
            memcpy(c->head + c->head_len, buf, keep);
            c->head_len += keep;
            c->junk_len += (size_t)n;
            continue;
        }
        /* The server closed: FIN (n == 0) or RST (it left our bytes unread: fine for garbage). */
        int64_t t = now_ms() - c->started;
        const char *how = n == 0 ? "close" : strerror(errno);
        if (c->kind == K_STALL) {
            /* The server's clock starts at its accept, after our connect: it can only be later. */
            if (t < hs_ms - 10)
                return finish(c, false, "server closed after %lld ms (%s), before the %d ms deadline", (long long)t, how,
                              hs_ms);
            if (t > hs_ms + slack_ms)
                return finish(c, false, "server closed after %lld ms (%s): later than %d + %d ms", (long long)t, how, hs_ms,
                              slack_ms);
            return finish(c, true, "cut after %lld ms", (long long)t);
        }
        if (c->head_len < 7 || c->head[0] != 21 || c->head[3] != 0 || c->head[4] != 2)
            return finish(c, false, "no alert record before the %s: %zu bytes, first %02x %02x %02x %02x %02x", how,
                          c->junk_len, c->head[0], c->head[1], c->head[2], c->head[3], c->head[4]);
        if (t >= hs_ms) return finish(c, false, "the alert came only after %lld ms, at the handshake deadline", (long long)t);
        return finish(c, true, "alert %u/%u after %lld ms", c->head[5], c->head[6], (long long)t);
    }
}

/* ---- the start of each client, once TCP is connected ---- */
static uint8_t client_hello[4096];
static size_t client_hello_len;

static void send_all(client *c, const uint8_t *p, size_t n)
{
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT); /* small: fits an empty socket buffer */
    if (w != (ssize_t)n) finish(c, false, "send of %zu bytes: %s", n, w < 0 ? strerror(errno) : "short");
}

static void start(client *c, SSL_CTX *ctx, ktlsx_config *kcfg, const char *server_name)
{
    c->connected = true;
    switch (c->kind) {
    case K_OPENSSL:
        if (!(c->ssl = SSL_new(ctx)) || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, server_name) ||
            !SSL_set1_host(c->ssl, server_name) || (c->variant == 1 && !SSL_set_max_proto_version(c->ssl, TLS1_2_VERSION)))
            return finish(c, false, "SSL_new: %s", ssl_why());
        return step_openssl(c);
    case K_KTLSX:
        if (!(c->ks = ktlsx_socket_new(kcfg, c->fd, server_name))) return finish(c, false, "ktlsx_socket_new failed");
        return step_ktlsx(c);
    case K_STALL: /* variant 0: the record header and a few bytes of the message; 1: all of it */
        send_all(c, client_hello, c->variant == 0 ? 11 : client_hello_len);
        return want(c, EPOLLIN);
    default: {
        uint8_t junk[200];
        size_t n = sizeof junk;
        if (RAND_bytes(junk, sizeof junk) != 1) return finish(c, false, "RAND_bytes failed");
        if (c->variant == 0) {
            junk[0] = (uint8_t)(0x30 + junk[0] % 0x40); /* no TLS content type, no SSLv2 header */
        } else if (c->variant == 1) {
            memcpy(junk, "\x63\x03\x03\x00\x10", 5); /* a well-formed header of content type 99 */
            n = 5 + 16;
        } else {
            n = (size_t)snprintf((char *)junk, sizeof junk, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", server_name);
        }
        send_all(c, junk, n);
        return want(c, EPOLLIN);
    }
    }
}

static void on_event(client *c, SSL_CTX *ctx, ktlsx_config *kcfg, const char *server_name, int hs_ms, int slack_ms)
{
    if (c->done) return;
    if (!c->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) return finish(c, false, "connect: %s", strerror(err));
        return start(c, ctx, kcfg, server_name);
    }
    if (c->kind == K_OPENSSL) step_openssl(c);
    else if (c->kind == K_KTLSX) step_ktlsx(c);
    else step_silent(c, hs_ms, slack_ms);
}

static void quiet(void *arg, int level, const char *line) { (void)arg, (void)level, (void)line; }

static int number(const char *name, const char *s, int min, int max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) die("--%s %s: want a number from %d to %d", name, s, min, max);
    return (int)v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "port", 1, NULL, 'p' }, { "ca", 1, NULL, 'c' }, { "host", 1, NULL, 'h' }, { "server-name", 1, NULL, 'n' },
        { "openssl", 1, NULL, 'o' }, { "ktlsx", 1, NULL, 'k' }, { "stall", 1, NULL, 's' }, { "garbage", 1, NULL, 'g' },
        { "handshake-timeout-ms", 1, NULL, 't' }, { "slack-ms", 1, NULL, 'l' }, { 0 },
    };
    const char *host = "127.0.0.1", *ca = NULL, *server_name = "localhost";
    int port = 0, count[K_COUNT] = { 200, 200, 50, 50 }, hs_ms = 3000, slack_ms = 1500, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *name = opts[0].name;
        for (const struct option *op = opts; op->name; op++)
            if (op->val == o) name = op->name;
        switch (o) {
        case 'p': port = number(name, optarg, 1, 65535); break;
        case 'c': ca = optarg; break;
        case 'h': host = optarg; break;
        case 'n': server_name = optarg; break;
        case 'o': count[K_OPENSSL] = number(name, optarg, 0, 10000); break;
        case 'k': count[K_KTLSX] = number(name, optarg, 0, 10000); break;
        case 's': count[K_STALL] = number(name, optarg, 0, 10000); break;
        case 'g': count[K_GARBAGE] = number(name, optarg, 0, 10000); break;
        case 't': hs_ms = number(name, optarg, 100, 600000); break;
        case 'l': slack_ms = number(name, optarg, 0, 600000); break;
        default: return 2;
        }
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (!port || !ca || optind != argc) die("usage: echo_load --port P --ca FILE [options] (tests/examples/echo_load.c)");
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("--host %s: not an IPv4 address", host);
    nclients = count[0] + count[1] + count[2] + count[3];

    /* Two fds per client at most at any time here is one: the socket.  Plus slack. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nclients + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)nclients + 64 ? rl.rlim_max : (rlim_t)nclients + 64;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < (rlim_t)nclients + 64)
            die("RLIMIT_NOFILE %llu is too low for %d clients (ulimit -n)", (unsigned long long)rl.rlim_cur, nclients);
    }

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) die("OpenSSL: %s: %s", ca, ssl_why());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    ktlsx_config *kcfg = ktlsx_config_new(KTLSX_CLIENT);
    if (!kcfg || ktlsx_config_set_ca_file(kcfg, ca) < 0 || ktlsx_config_set_log(kcfg, quiet, NULL) < 0)
        die("ktlsx: %s", kcfg ? ktlsx_config_error(kcfg) : "out of memory");
    /* A real ClientHello for the stallers, from the engine. */
    ktlsx_conn *hello = ktlsx_conn_new(kcfg, server_name);
    const uint8_t *out;
    if (!hello || ktlsx_handshake(hello) != KTLSX_WANT_READ || (client_hello_len = ktlsx_pending_output(hello, &out)) < 11 ||
        client_hello_len > sizeof client_hello)
        die("could not make a ClientHello");
    memcpy(client_hello, out, client_hello_len);
    ktlsx_conn_free(hello);

    if (!(clients = calloc((size_t)nclients, sizeof *clients)) || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("out of memory");
    /* Interleave the kinds so that no kind gets a head start on the others. */
    int made[K_COUNT] = { 0 };
    for (int i = 0; i < nclients;) {
        for (int k = 0; k < K_COUNT && i < nclients; k++) {
            if (made[k] == count[k]) continue;
            client *c = &clients[i++];
            c->kind = (enum kind)k;
            c->variant = made[k]++ % (k == K_GARBAGE ? 3 : 2);
            if (k == K_OPENSSL || k == K_KTLSX) {
                uint32_t r;
                if (RAND_bytes((uint8_t *)&r, sizeof r) != 1) die("RAND_bytes");
                c->len = 16384 + r % (49152 + 1);
                if (!(c->data = malloc(c->len)) || !(c->echo = malloc(c->len)) || RAND_bytes(c->data, (int)c->len) != 1)
                    die("out of memory");
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t_zero);
    for (int i = 0; i < nclients; i++) {
        client *c = &clients[i];
        c->started = now_ms();
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket: %s", strerror(errno));
        c->events = EPOLLOUT;
        struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
            finish(c, false, "connect: %s", strerror(errno));
    }
    int64_t started_all = now_ms(), limit = started_all + hs_ms + slack_ms + 15000;
    int left = nclients;
    while (left > 0 && now_ms() < limit) {
        struct epoll_event evs[128];
        int n = epoll_wait(ep, evs, 128, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) on_event(&clients[evs[i].data.u32], ctx, kcfg, server_name, hs_ms, slack_ms);
        left = 0;
        for (int i = 0; i < nclients; i++) left += !clients[i].done;
    }
    for (int i = 0; i < nclients; i++)
        if (!clients[i].done)
            finish(&clients[i], false, "still running at the time limit (%lld ms)", (long long)(limit - started_all));

    /* ---- verdicts ---- */
    int bad_total = 0;
    int64_t slowest_good = 0;
    for (int k = 0; k < K_COUNT; k++) {
        int bad = 0, shown = 0;
        int64_t tmin = INT64_MAX, tmax = 0;
        for (int i = 0; i < nclients; i++) {
            client *c = &clients[i];
            if (c->kind != (enum kind)k) continue;
            int64_t t = c->finished - c->started;
            tmin = t < tmin ? t : tmin;
            tmax = t > tmax ? t : tmax;
            if ((k == K_OPENSSL || k == K_KTLSX) && c->finished > slowest_good) slowest_good = c->finished;
            if (c->ok) continue;
            if (shown++ < 10) printf("    %s client #%d (variant %d): %s\n", kind_name[k], i, c->variant, c->why);
            bad++;
        }
        bad_total += bad;
        if (!count[k]) continue;
        static const char *const what[K_COUNT] = {
            "echoed byte-exact (16-64 KiB each; TLS 1.3 and 1.2)", "echoed byte-exact (16-64 KiB each)",
            "closed by the server at its handshake deadline", "got an alert record (type 21), then the close",
        };
        if (bad) printf("FAIL %s: %d of %d clients failed (details above)\n", kind_name[k], bad, count[k]);
        else
            printf("PASS %s: %d clients %s, in %lld..%lld ms\n", kind_name[k], count[k], what[k], (long long)tmin,
                   (long long)tmax);
    }
    if (count[K_OPENSSL] + count[K_KTLSX] > 0) {
        if (slowest_good < hs_ms)
            printf("PASS no-waiting: the last well-behaved client was done %lld ms after the start, "
                   "before the %d ms handshake deadline\n",
                   (long long)slowest_good, hs_ms);
        else
            printf("FAIL no-waiting: the last well-behaved client was done only %lld ms after the start "
                   "(handshake deadline %d ms)\n",
                   (long long)slowest_good, hs_ms), bad_total++;
    }
    printf("echo_load: %d clients (%d openssl, %d ktlsx, %d stalled, %d garbage), %d failed, %lld ms\n", nclients,
           count[0], count[1], count[2], count[3], bad_total, (long long)(now_ms() - started_all));
    for (int i = 0; i < nclients; i++) free(clients[i].data), free(clients[i].echo);
    free(clients);
    close(ep);
    SSL_CTX_free(ctx);
    ktlsx_config_free(kcfg);
    return bad_total ? 1 : 0;
}
