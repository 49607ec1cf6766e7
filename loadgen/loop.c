/* One thread's event loop: `connections` slots, each running attempts back
 * to back until the end of the run.  A slot is a small state machine:
 *
 *   CONNECT   nonblocking connect(2), wait for EPOLLOUT, SO_ERROR
 *   HANDSHAKE ktlsx_socket_handshake_step until OK (WANT_READ / WANT_WRITE
 *             are exactly the EPOLLIN / EPOLLOUT we wait for)
 *   TICKET    (resumed mode, TLS 1.3 full handshake) read until the
 *             server's NewSessionTicket gives ktlsx_get_session a session
 *   SEND      the request (write_step, then flush_step until nothing queued)
 *   RECV      the response: status line, headers, a body of Content-Length
 *             bytes (or up to the close when the server sends none)
 *
 * Each state has a deadline (--timeout from the start of the attempt, or of
 * the request); a scan every few milliseconds cuts the slots past theirs
 * (a "timeout" error) and starts them again.  At the end of the run the loop
 * simply stops: nothing waits for a stalled peer. */
#include "load.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

enum state { ST_IDLE, ST_CONNECT, ST_HANDSHAKE, ST_TICKET, ST_SEND, ST_RECV };

#define HDR_MAX 8192     /* a response head larger than this is a bad response */
#define SESSION_MAX 8192 /* room for a session blob */
#define SCAN_NS 5000000  /* deadline scan every 5 ms */
#define RETRY_NS 10000000 /* a slot whose connect failed waits 10 ms before the next */

struct slot {
    int fd;
    ktlsx_socket *sock;
    enum state st;
    uint32_t events;      /* what epoll watches for fd (0 = not registered) */
    bool again;           /* data waits inside the library: drive without an event */
    bool offered;         /* this attempt offered a saved session */
    int64_t t_attempt, t_req, deadline, retry_at;
    size_t req_off;
    unsigned served;      /* responses on this connection */
    /* response parsing */
    char hdr[HDR_MAX];
    size_t hdr_len;
    bool in_body, until_close, close_after;
    uint64_t body_left, body_got;
};

struct loop {
    struct worker *w;
    const struct opts *o;
    int ep;
    struct slot *slots;
    char req[1024];
    size_t req_len;
    uint8_t session[SESSION_MAX];
    long session_len; /* 0 = none yet */
    unsigned char scratch[65536];
};

const char *const err_kind_name[ERR_KINDS] = { "connect", "handshake", "timeout", "response", "io" };
volatile int g_stop;

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool in_window(const struct loop *L, int64_t t) { return t >= L->w->t_warm_end && t < L->w->t_end; }

static void watch(struct loop *L, struct slot *s, uint32_t ev)
{
    if (ev == s->events) return;
    struct epoll_event e = { .events = ev, .data.u32 = (uint32_t)(s - L->slots) };
    int op = s->events == 0 ? EPOLL_CTL_ADD : ev == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(L->ep, op, s->fd, &e) < 0 && !g_stop) perror("ktlsx-load: epoll_ctl");
    s->events = ev;
}

static void close_slot(struct loop *L, struct slot *s, bool polite)
{
    if (s->sock) {
        if (polite) (void)ktlsx_socket_shutdown_step(s->sock); /* close_notify: one try, never waits */
        ktlsx_socket_free(s->sock), s->sock = NULL;
    }
    if (s->fd >= 0) close(s->fd); /* also leaves epoll */
    s->fd = -1, s->events = 0, s->st = ST_IDLE, s->again = false;
}

static void fail(struct loop *L, struct slot *s, enum err_kind k, const char *why)
{
    int64_t t = now_ns();
    if (in_window(L, t)) {
        struct stats *st = &L->w->st;
        st->errors[k]++;
        if (!st->first_error[k][0]) snprintf(st->first_error[k], sizeof st->first_error[k], "%s", why);
    }
    /* a resumed attempt that failed may have been refused its session: start over with a full one */
    if (s->offered && k == ERR_HANDSHAKE) L->session_len = 0;
    close_slot(L, s, false);
    s->retry_at = k == ERR_CONNECT ? t + RETRY_NS : 0;
}

static void save_session(struct loop *L, struct slot *s)
{
    if (L->o->mode != MODE_RESUMED) return;
    long n = ktlsx_get_session(ktlsx_socket_conn(s->sock), L->session, sizeof L->session);
    if (n > 0) L->session_len = n;
}

static void drive(struct loop *L, struct slot *s);

/* A new attempt: socket, connect, a ktlsx connection offering the saved session. */
static void start(struct loop *L, struct slot *s)
{
    const struct opts *o = L->o;
    int64_t t = now_ns();
    s->t_attempt = t, s->deadline = t + (int64_t)o->timeout_ms * 1000000, s->served = 0, s->offered = false;
    s->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        char why[160];
        snprintf(why, sizeof why, "socket: %s", strerror(errno));
        return fail(L, s, ERR_CONNECT, why);
    }
    /* Small writes back to back (Finished, then the request): without this Nagle holds the second
     * until the first is acknowledged, and a delayed ACK makes that 40 ms. */
    (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
    ktlsx_conn *conn = ktlsx_conn_new(o->cfg, o->host);
    if (conn && o->sni && (ktlsx_conn_set_sni(conn, o->sni) < 0 || ktlsx_conn_set_verify_name(conn, o->sni) < 0))
        ktlsx_conn_free(conn), conn = NULL;
    if (conn && o->mode == MODE_RESUMED && L->session_len > 0) {
        if (ktlsx_set_session(conn, L->session, (size_t)L->session_len) == 0) s->offered = true;
        else L->session_len = 0;
    }
    s->sock = conn ? ktlsx_socket_wrap(conn, s->fd) : NULL;
    if (!s->sock) {
        if (conn) ktlsx_conn_free(conn);
        return fail(L, s, ERR_IO, "out of memory (ktlsx connection)");
    }
    (void)ktlsx_socket_set_timeouts(s->sock, o->timeout_ms, 0);
    if (o->ktls_off) (void)ktlsx_socket_set_ktls(s->sock, KTLSX_KTLS_MODE_OFF, KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    if (connect(s->fd, (const struct sockaddr *)&o->addr, o->addrlen) == 0) {
        s->st = ST_HANDSHAKE;
        return drive(L, s);
    }
    if (errno != EINPROGRESS) {
        char why[160];
        snprintf(why, sizeof why, "connect %s: %s", o->target, strerror(errno));
        return fail(L, s, ERR_CONNECT, why);
    }
    s->st = ST_CONNECT;
    watch(L, s, EPOLLOUT);
}

static void send_request(struct loop *L, struct slot *s)
{
    s->st = ST_SEND, s->req_off = 0, s->t_req = now_ns();
    s->hdr_len = 0, s->in_body = s->until_close = s->close_after = false, s->body_left = s->body_got = 0;
    if (s->served > 0) s->deadline = s->t_req + (int64_t)L->o->timeout_ms * 1000000;
}

/* The attempt (full/resumed) is complete: count it, close, start the next. */
static void attempt_done(struct loop *L, struct slot *s)
{
    int64_t t = now_ns();
    if (in_window(L, t)) L->w->st.ok++;
    close_slot(L, s, true);
    s->retry_at = 0;
}

static void handshake_done(struct loop *L, struct slot *s)
{
    int64_t t = now_ns();
    ktlsx_conn *conn = ktlsx_socket_conn(s->sock);
    bool resumed = ktlsx_resumed(conn);
    if (in_window(L, t)) {
        struct stats *st = &L->w->st;
        st->handshakes++, st->resumed += resumed, st->offered += s->offered;
        hist_record(&st->hs_lat, (uint64_t)(t - s->t_attempt));
        if (L->o->mode == MODE_FULL || L->o->mode == MODE_RESUMED) hist_record(&st->lat, (uint64_t)(t - s->t_attempt));
    }
    if (L->o->mode == MODE_RESUMED && ktlsx_version(conn) == KTLSX_TLS13 && !resumed) {
        s->st = ST_TICKET; /* the ticket arrives after the handshake */
        return;
    }
    save_session(L, s);
    if (L->o->path) send_request(L, s);
    else attempt_done(L, s);
}

/* Parse the head in s->hdr[0..s->hdr_len) (ending in CRLFCRLF). Returns NULL or what is wrong. */
static const char *parse_head(struct loop *L, struct slot *s)
{
    s->hdr[s->hdr_len] = '\0';
    int minor = -1, status = 0;
    if (sscanf(s->hdr, "HTTP/1.%d %3d", &minor, &status) != 2 || minor < 0 || minor > 1) return "not an HTTP/1.x status line";
    long long clen = -1;
    bool keep_alive = false, close_hdr = false;
    for (char *line = strstr(s->hdr, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (!strncasecmp(h, "content-length:", 15)) {
            char *end;
            clen = strtoll(h + 15, &end, 10);
            if (clen < 0 || (*end != '\r' && *end != ' ')) return "bad Content-Length";
        } else if (!strncasecmp(h, "connection:", 11)) {
            if (strcasestr(h, "close") && strcasestr(h, "close") < strstr(h, "\r\n")) close_hdr = true;
            if (strcasestr(h, "keep-alive") && strcasestr(h, "keep-alive") < strstr(h, "\r\n")) keep_alive = true;
        } else if (!strncasecmp(h, "transfer-encoding:", 18)) {
            return "Transfer-Encoding (chunked) is not supported";
        }
    }
    static char why[64];
    if (status != 200) return snprintf(why, sizeof why, "status %d", status), why;
    s->close_after = close_hdr || (minor == 0 && !keep_alive);
    if (clen >= 0) {
        if (L->o->expect_size >= 0 && clen != L->o->expect_size) return "Content-Length is not --expect-size";
        s->body_left = (uint64_t)clen;
    } else if (L->o->mode == MODE_DOWNLOAD && L->o->expect_size < 0) {
        return "no Content-Length (give --expect-size for a server that sends none)";
    } else {
        s->until_close = s->close_after = true;
    }
    s->in_body = true;
    return NULL;
}

/* The response is complete. */
static void response_done(struct loop *L, struct slot *s)
{
    int64_t t = now_ns();
    if (L->o->expect_size >= 0 && s->body_got != (uint64_t)L->o->expect_size) {
        char why[128];
        snprintf(why, sizeof why, "body of %llu bytes, --expect-size %lld", (unsigned long long)s->body_got, L->o->expect_size);
        return fail(L, s, ERR_RESPONSE, why);
    }
    s->served++;
    if (in_window(L, t)) {
        struct stats *st = &L->w->st;
        st->requests++, st->body_bytes += s->body_got;
        if (L->o->mode == MODE_REQUESTS || L->o->mode == MODE_DOWNLOAD) st->ok++, hist_record(&st->lat, (uint64_t)(t - s->t_req));
    }
    if (L->o->mode == MODE_FULL || L->o->mode == MODE_RESUMED) return attempt_done(L, s);
    if (s->close_after) { /* the server ends the connection: a new one (a new handshake) follows */
        close_slot(L, s, true);
        s->retry_at = 0;
        return;
    }
    send_request(L, s);
}

/* Body bytes; ends the response when the body is complete. */
static void take_body(struct loop *L, struct slot *s, size_t n)
{
    if (!s->until_close) {
        if (n > s->body_left) return fail(L, s, ERR_RESPONSE, "bytes after the body (no request was pipelined)");
        s->body_left -= n;
    }
    s->body_got += n;
    if (!s->until_close && s->body_left == 0) response_done(L, s);
}

/* n response bytes at p (head or body).  The slot may leave ST_RECV. */
static void take_bytes(struct loop *L, struct slot *s, const unsigned char *p, size_t n)
{
    if (s->in_body) return take_body(L, s, n);
    size_t room = HDR_MAX - 1 - s->hdr_len, k = n < room ? n : room;
    memcpy(s->hdr + s->hdr_len, p, k);
    s->hdr_len += k;
    s->hdr[s->hdr_len] = '\0';
    /* the head did not end before this call: its end lies in what was just added */
    const char *end = strstr(s->hdr + (s->hdr_len - k > 3 ? s->hdr_len - k - 3 : 0), "\r\n\r\n");
    if (!end) {
        if (k < n || s->hdr_len >= HDR_MAX - 1) fail(L, s, ERR_RESPONSE, "response head over 8 KiB");
        return;
    }
    size_t head = (size_t)(end + 4 - s->hdr), tail = s->hdr_len - head; /* tail: body bytes among the k */
    s->hdr_len = head;
    const char *why = parse_head(L, s);
    if (why) return fail(L, s, ERR_RESPONSE, why);
    take_body(L, s, tail + (n - k));
}

/* The peer ended the stream (close_notify or TCP EOF) while we read. */
static void recv_closed(struct loop *L, struct slot *s)
{
    if (s->in_body && s->until_close) return response_done(L, s); /* close-delimited body: complete (and closed) */
    char why[200];
    snprintf(why, sizeof why, "server closed %s (%s)",
             s->in_body ? "in the body" : s->hdr_len ? "in the response head" : "before any response byte",
             ktlsx_socket_error(s->sock)[0] ? ktlsx_socket_error(s->sock) : "close_notify");
    fail(L, s, ERR_RESPONSE, why);
}

static void io_failed(struct loop *L, struct slot *s, int rc, enum err_kind k)
{
    char why[200];
    const char *e = ktlsx_socket_error(s->sock);
    if (rc == KTLSX_IO_TIMEOUT) return fail(L, s, ERR_TIMEOUT, e[0] ? e : "deadline passed");
    snprintf(why, sizeof why, "%s", e[0] ? e : rc == KTLSX_IO_CLOSED ? "peer closed" : "failed");
    fail(L, s, k, why);
}

/* Run one slot as far as it goes without waiting; then tell epoll what it waits for. */
static void drive(struct loop *L, struct slot *s)
{
    int rc = KTLSX_IO_OK;
    s->again = false;
    for (int round = 0; round < 64 && s->st != ST_IDLE; round++) {
        switch (s->st) {
        case ST_IDLE: return;
        case ST_CONNECT: {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
            if (err == EINPROGRESS || err == EALREADY) return;
            struct sockaddr_storage peer;
            socklen_t plen = sizeof peer;
            /* an event meant for this slot's previous fd: the connect has not ended yet */
            if (!err && getpeername(s->fd, (struct sockaddr *)&peer, &plen) < 0 && errno == ENOTCONN) return watch(L, s, EPOLLOUT);
            if (err) {
                char why[160];
                snprintf(why, sizeof why, "connect %s: %s", L->o->target, strerror(err));
                return fail(L, s, ERR_CONNECT, why);
            }
            s->st = ST_HANDSHAKE;
            continue;
        }
        case ST_HANDSHAKE:
            rc = ktlsx_socket_handshake_step(s->sock);
            if (rc == KTLSX_IO_OK) {
                handshake_done(L, s);
                continue;
            }
            if (rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) break;
            return io_failed(L, s, rc, ERR_HANDSHAKE);
        case ST_TICKET: {
            size_t got = 0;
            rc = ktlsx_socket_read_step(s->sock, L->scratch, sizeof L->scratch, &got);
            long n = ktlsx_get_session(ktlsx_socket_conn(s->sock), L->session, sizeof L->session);
            if (n > 0) {
                L->session_len = n;
                if (L->o->path) send_request(L, s);
                else attempt_done(L, s);
                continue;
            }
            if (rc == KTLSX_IO_OK) continue; /* data before a ticket: read on */
            if (rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) break;
            return io_failed(L, s, rc, ERR_IO); /* no ticket: the server does not resume by ticket? */
        }
        case ST_SEND: {
            size_t sent = 0;
            if (s->req_off < L->req_len) {
                rc = ktlsx_socket_write_step(s->sock, L->req + s->req_off, L->req_len - s->req_off, &sent);
                s->req_off += sent;
                if (in_window(L, now_ns())) L->w->st.bytes_tx += sent;
            } else if (ktlsx_socket_pending_output(s->sock) > 0) {
                rc = ktlsx_socket_flush_step(s->sock);
            } else {
                s->st = ST_RECV;
                continue;
            }
            if (rc == KTLSX_IO_OK) continue;
            if (rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) break;
            return io_failed(L, s, rc, ERR_IO);
        }
        case ST_RECV: {
            size_t got = 0;
            rc = ktlsx_socket_read_step(s->sock, L->scratch, sizeof L->scratch, &got);
            if (rc == KTLSX_IO_OK) {
                if (in_window(L, now_ns())) L->w->st.bytes_rx += got;
                take_bytes(L, s, L->scratch, got);
                continue;
            }
            if (rc == KTLSX_IO_CLOSED) return recv_closed(L, s);
            if (rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) break;
            return io_failed(L, s, rc, ERR_IO);
        }
        }
        break; /* WANT_READ / WANT_WRITE */
    }
    if (s->st == ST_IDLE) return;
    if (rc == KTLSX_IO_OK) { /* stopped for fairness with work left */
        s->again = true;
        return;
    }
    if (rc == KTLSX_IO_WANT_READ && ktlsx_socket_pending_plaintext(s->sock) > 0) s->again = true;
    watch(L, s, rc == KTLSX_IO_WANT_WRITE ? EPOLLOUT : EPOLLIN);
}

static void log_line(void *arg, int level, const char *line)
{ /* without kernel TLS every connection would say so: once is enough */
    static int ktls_lines;
    (void)arg;
    if (level <= KTLSX_LOG_WARNING && (!strstr(line, "kernel TLS") || __atomic_fetch_add(&ktls_lines, 1, __ATOMIC_RELAXED) == 0))
        fprintf(stderr, "ktlsx-load: %s\n", line);
}

void *worker_run(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    struct loop *L = calloc(1, sizeof *L);
    w->rc = 1;
    if (!L || !(L->slots = calloc((size_t)w->connections, sizeof *L->slots)) || (L->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        perror("ktlsx-load: worker");
        if (L) free(L->slots);
        free(L);
        return NULL;
    }
    L->w = w, L->o = o;
    if (o->path) {
        int n = snprintf(L->req, sizeof L->req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ktlsx-load/" KTLSX_VERSION_STRING "\r\n%s\r\n",
                         o->path, o->sni ? o->sni : o->host,
                         o->mode == MODE_REQUESTS || o->mode == MODE_DOWNLOAD ? "" : "Connection: close\r\n");
        L->req_len = n > 0 && (size_t)n < sizeof L->req ? (size_t)n : 0;
    }
    for (int i = 0; i < w->connections; i++) L->slots[i].fd = -1;
    int64_t next_scan = 0;
    while (!g_stop) {
        int64_t t = now_ns();
        if (t >= w->t_end) break;
        if (t >= next_scan) { /* deadlines, idle slots, slots with work left */
            next_scan = t + SCAN_NS;
            for (int i = 0; i < w->connections && now_ns() < w->t_end; i++) {
                struct slot *s = &L->slots[i];
                if (s->st == ST_IDLE) {
                    if (s->retry_at <= t) start(L, s);
                } else if (t >= s->deadline) {
                    char why[96];
                    static const char *const what[] = { "", "connect", "handshake", "ticket", "request", "response" };
                    snprintf(why, sizeof why, "no progress in %d ms (%s)", o->timeout_ms, what[s->st]);
                    fail(L, s, ERR_TIMEOUT, why);
                    s->retry_at = 0;
                }
            }
        }
        bool busy = false;
        for (int i = 0; i < w->connections; i++) {
            struct slot *s = &L->slots[i];
            if (s->again) drive(L, s);
            if (s->again || (s->st == ST_IDLE && s->retry_at <= t)) busy = true;
        }
        int64_t until = (busy ? t : next_scan < w->t_end ? next_scan : w->t_end) - now_ns();
        int tmo = until <= 0 ? 0 : (int)((until + 999999) / 1000000);
        struct epoll_event evs[256];
        int n = epoll_wait(L->ep, evs, 256, tmo);
        for (int i = 0; i < n; i++) {
            struct slot *s = &L->slots[evs[i].data.u32];
            if (s->st != ST_IDLE) drive(L, s);
            if (s->st == ST_IDLE && s->retry_at <= now_ns()) start(L, s);
        }
        if (busy) /* idle slots ready to go again: start them now rather than at the next scan */
            for (int i = 0; i < w->connections; i++)
                if (L->slots[i].st == ST_IDLE && L->slots[i].retry_at <= now_ns() && now_ns() < w->t_end) start(L, &L->slots[i]);
    }
    for (int i = 0; i < w->connections; i++) {
        struct slot *s = &L->slots[i];
        if (s->st != ST_IDLE) w->st.unfinished++;
        if (s->sock) ktlsx_socket_free(s->sock);
        if (s->fd >= 0) close(s->fd);
    }
    OPENSSL_cleanse(L->session, sizeof L->session); /* a session blob holds secrets */
    close(L->ep);
    free(L->slots);
    free(L);
    w->rc = 0;
    return NULL;
}

void loop_set_log(ktlsx_config *cfg);
void loop_set_log(ktlsx_config *cfg) { (void)ktlsx_config_set_log(cfg, log_line, NULL); }
