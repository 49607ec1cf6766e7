/* The TLS socket: the engine (bytes in, bytes out) joined to a connected TCP
 * fd, with kernel TLS where the kernel takes it and the engine's user-space
 * records where it does not.
 *
 * Everything is built from non-blocking steps.  A step does as much as the
 * socket allows right now and says what it waits for (WANT_READ /
 * WANT_WRITE); the blocking calls at the end are those steps plus poll(2)
 * and a deadline, so the CLI, a thread-per-connection program and an
 * epoll or io_uring loop all run the same code.  Sends and receives use
 * MSG_DONTWAIT, so the fd's own O_NONBLOCK flag (which belongs to the
 * application) is never touched.
 *
 * Where each direction lives after the handshake:
 *   TX user:   ktlsx_write seals into the engine's output; we send it.
 *   TX kernel: send(2)/sendfile(2) of plaintext; control records (alerts,
 *              KeyUpdate) the engine queued go out via ktlsx_ktls_flush.
 *   RX user:   recv(2) whatever arrived, ktlsx_input + ktlsx_read.
 *   RX kernel: ktlsx_ktls_recv (recvmsg + record-type cmsg), control
 *              records to the engine's one post-handshake dispatcher. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SOCKET_DEFAULT_HANDSHAKE_MS 30000
/* One wire record at most: header + 2^14 + the TLS 1.2 expansion allowance. */
#define SOCKET_WIRE_MAX (5 + 16384 + 2048)
/* Kernel RX: control records arrive whole only into a buffer of a full record. */
#define SOCKET_PLAIN_MAX 16384
/* User-space TX: plaintext sealed per write step, and the output queue above
 * which a read step first insists on sending (a peer that never reads cannot
 * make us buffer without bound). */
#define SOCKET_WRITE_CHUNK (4 * 16384)
#define SOCKET_OUTPUT_HIGH (256 * 1024)

struct ktlsx_socket {
    ktlsx_conn *conn;
    int fd;
    enum ktlsx_ktls_mode ktls_mode;
    int ktls_want;
    int handshake_ms, idle_ms;
    int64_t handshake_deadline; /* 0 until the first handshake step */
    int64_t last_activity;      /* for the idle timeout */
    bool ready;                 /* handshake done and the data path chosen */
    bool failed;                /* sticky: a failure or timeout was reported */
    bool tcp_eof;               /* the peer closed TCP */
    bool close_notify_queued;
    char error[320];
    char ktls_why[256];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_error(ktlsx_socket *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(ktlsx_socket *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
}

/* The engine's reason and the alert that went with it. */
static int engine_failed(ktlsx_socket *s)
{
    const char *reason = ktlsx_error(s->conn);
    set_error(s, "%s (alert %s)", reason[0] ? reason : "unknown error", ktlsx_alert_name(ktlsx_alert(s->conn)));
    s->failed = true;
    return KTLSX_IO_FAILED;
}

static int io_failed(ktlsx_socket *s, const char *what, int err)
{
    /* The kernel poisons the whole socket once a received record fails
     * authentication, so the error may surface on a send: name the cause. */
    if (err == EBADMSG)
        set_error(s, "%s: kernel TLS stopped the connection: a received record failed authentication (bad_record_mac)", what);
    else if (ktlsx_error(s->conn)[0] && s->conn->failed)
        return engine_failed(s);
    else
        set_error(s, "%s: %s", what, strerror(err));
    s->failed = true;
    return KTLSX_IO_FAILED;
}

ktlsx_socket *ktlsx_socket_wrap(ktlsx_conn *conn, int fd)
{
    if (!conn || fd < 0) return NULL;
    ktlsx_socket *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->conn = conn;
    s->fd = fd;
    s->ktls_mode = KTLSX_KTLS_MODE_AUTO;
    s->ktls_want = KTLSX_KTLS_TX | KTLSX_KTLS_RX;
    s->handshake_ms = SOCKET_DEFAULT_HANDSHAKE_MS;
    s->last_activity = now_ms();
    /* An imported connection arrives with its handshake done and its data
     * path decided by whoever exported it. */
    s->ready = conn->handshake_done;
    return s;
}

ktlsx_socket *ktlsx_socket_new(ktlsx_config *cfg, int fd, const char *server_name)
{
    if (!cfg || fd < 0) return NULL;
    ktlsx_conn *conn = ktlsx_conn_new(cfg, server_name);
    ktlsx_socket *s = conn ? ktlsx_socket_wrap(conn, fd) : NULL;
    if (!s) ktlsx_conn_free(conn);
    return s;
}

void ktlsx_socket_free(ktlsx_socket *s)
{
    if (!s) return;
    ktlsx_conn_free(s->conn);
    free(s);
}

/* A NULL socket is a caller's mistake that must not crash: the getters
 * answer "nothing", the calls FAILED / -1. */
ktlsx_conn *ktlsx_socket_conn(const ktlsx_socket *s) { return s ? s->conn : NULL; }
int ktlsx_socket_fd(const ktlsx_socket *s) { return s ? s->fd : -1; }
const char *ktlsx_socket_error(const ktlsx_socket *s) { return s ? s->error : "no socket (NULL)"; }
const char *ktlsx_socket_ktls_why(const ktlsx_socket *s) { return s ? s->ktls_why : ""; }
int ktlsx_socket_ktls(const ktlsx_socket *s) { return s ? s->conn->ktls_active & (KTLSX_KTLS_TX | KTLSX_KTLS_RX) : 0; }
int ktlsx_socket_clean_close(const ktlsx_socket *s) { return s ? s->conn->peer_closed : 0; }

/* Wrong arguments are refused with a message naming them; the connection is
 * not failed by them (the next call with good arguments works). */
#define REFUSE(s, ...)                                                  \
    do {                                                                \
        set_error((s), __VA_ARGS__);                                    \
        return KTLSX_IO_FAILED;                                         \
    } while (0)

const char *ktlsx_socket_ktls_name(const ktlsx_socket *s)
{
    static const char *const names[] = { "off", "tx", "rx", "tx+rx" };
    return names[ktlsx_socket_ktls(s)];
}

int ktlsx_socket_set_ktls(ktlsx_socket *s, enum ktlsx_ktls_mode mode, int directions)
{
    if (!s) return -1;
    if (mode != KTLSX_KTLS_MODE_AUTO && mode != KTLSX_KTLS_MODE_OFF && mode != KTLSX_KTLS_MODE_REQUIRE) {
        set_error(s, "kernel TLS mode %d is not auto, off or require", (int)mode);
        return -1;
    }
    if (directions & ~(KTLSX_KTLS_TX | KTLSX_KTLS_RX)) {
        set_error(s, "kernel TLS directions 0x%x: only KTLSX_KTLS_TX and KTLSX_KTLS_RX exist", (unsigned)directions);
        return -1;
    }
    if (s->ready) {
        set_error(s, "kernel TLS mode must be set before the handshake completes");
        return -1;
    }
    s->ktls_mode = mode;
    s->ktls_want = directions;
    return 0;
}

int ktlsx_socket_set_timeouts(ktlsx_socket *s, int handshake_ms, int idle_ms)
{
    if (!s) return -1;
    if (handshake_ms < 0 || idle_ms < 0) {
        set_error(s, "timeouts must be >= 0 ms (0 = none), not %d / %d", handshake_ms, idle_ms);
        return -1;
    }
    s->handshake_ms = handshake_ms;
    s->idle_ms = idle_ms;
    return 0;
}

static int64_t current_deadline(const ktlsx_socket *s)
{
    if (!s->ready) return s->handshake_ms > 0 && s->handshake_deadline ? s->handshake_deadline : 0;
    return s->idle_ms > 0 ? s->last_activity + s->idle_ms : 0;
}

int ktlsx_socket_timeout_ms(const ktlsx_socket *s)
{
    int64_t deadline = s ? current_deadline(s) : 0;
    if (!deadline) return -1;
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
}

/* A step is about to wait (`want`): past the deadline it times out instead. */
static int wait_or_timeout(ktlsx_socket *s, int want)
{
    int64_t deadline = current_deadline(s);
    if (!deadline || now_ms() < deadline) return want;
    if (!s->ready)
        set_error(s, "handshake timed out after %d.%03d s", s->handshake_ms / 1000, s->handshake_ms % 1000);
    else
        set_error(s, "idle for %d.%03d s: connection cut", s->idle_ms / 1000, s->idle_ms % 1000);
    s->failed = true;
    kx_log(s->conn->cfg, KTLSX_LOG_INFO, "%s", s->error);
    return KTLSX_IO_TIMEOUT;
}

/* ---- sending what is queued ---- */

/* Sealed records in the engine's output (user-space TX, and the handshake). */
static int flush_records(ktlsx_socket *s)
{
    const uint8_t *data;
    size_t len;
    while ((len = ktlsx_pending_output(s->conn, &data)) > 0) {
        ssize_t n = send(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return KTLSX_IO_WANT_WRITE;
        if (n < 0) return io_failed(s, "send", errno);
        ktlsx_output_done(s->conn, (size_t)n);
        s->last_activity = now_ms();
    }
    return KTLSX_IO_OK;
}

/* Everything queued: sealed records, then control records for a kernel TX. */
static int flush_all(ktlsx_socket *s)
{
    int rc = flush_records(s);
    if (rc != KTLSX_IO_OK) return rc;
    if (ktlsx_ktls_pending(s->conn) == 0) return KTLSX_IO_OK;
    int f = ktlsx_ktls_flush(s->conn, s->fd, MSG_DONTWAIT);
    if (f == 1) return KTLSX_IO_WANT_WRITE;
    if (f < 0) return io_failed(s, "sending a control record", errno);
    s->last_activity = now_ms();
    return KTLSX_IO_OK;
}

/* After a failure the alert still deserves a try; nothing waits for it. */
static void flush_alert(ktlsx_socket *s) { (void)flush_all(s); }

size_t ktlsx_socket_pending_output(const ktlsx_socket *s)
{
    if (!s) return 0;
    return kx_out_pending(s->conn) + ktlsx_ktls_pending(s->conn);
}

/* Complete records already received into the engine and not yet opened: a
 * read step returns their contents without touching the fd. */
static size_t whole_records_buffered(const ktlsx_conn *c)
{
    size_t left = kx_in_left(c);
    if (left < KX_RECORD_HEADER) return 0;
    const uint8_t *h = c->in.data + c->in_off;
    size_t rec = KX_RECORD_HEADER + (((size_t)h[3] << 8) | h[4]);
    return left >= rec ? left : 0;
}

size_t ktlsx_socket_pending_plaintext(const ktlsx_socket *s)
{
    if (!s) return 0;
    return ktlsx_pending_plaintext(s->conn) + whole_records_buffered(s->conn);
}

/* ---- the handshake ---- */

/* The one place that decides where application data flows.  All handshake
 * output has been sent and the handshake was read record by record, so
 * nothing is stranded in user space. */
static int choose_data_path(ktlsx_socket *s)
{
    s->ready = true;
    s->last_activity = now_ms();
    if (s->ktls_mode == KTLSX_KTLS_MODE_OFF || s->ktls_want == 0) return KTLSX_IO_OK;
    char why[sizeof s->ktls_why] = "";
    int active = ktlsx_ktls_start(s->conn, s->fd, s->ktls_want, why, sizeof why);
    if (why[0] == '\0' && active != s->ktls_want) snprintf(why, sizeof why, "no reason given");
    kx_copy_str(s->ktls_why, sizeof s->ktls_why, why);
    if (active < 0) {
        /* TX went into the kernel and RX did not: the socket is unusable. */
        set_error(s, "%s", why);
        s->failed = true;
        return KTLSX_IO_FAILED;
    }
    if (active != s->ktls_want && s->ktls_mode == KTLSX_KTLS_MODE_REQUIRE) {
        /* Required means every direction asked for, not just one of them. */
        if (active == 0)
            set_error(s, "kernel TLS required but unavailable: %s", why);
        else
            set_error(s, "kernel TLS required but only %s went into the kernel: %s", ktlsx_socket_ktls_name(s), why);
        s->failed = true;
        return KTLSX_IO_FAILED;
    }
    if (active == 0) {
        kx_log(s->conn->cfg, KTLSX_LOG_WARNING, "kernel TLS unavailable, using user-space records: %s", why);
    } else if (active != s->ktls_want) {
        kx_log(s->conn->cfg, KTLSX_LOG_WARNING, "kernel TLS %s only, the other direction in user space: %s",
               ktlsx_socket_ktls_name(s), why);
    }
    return KTLSX_IO_OK;
}

int ktlsx_socket_handshake_step(ktlsx_socket *s)
{
    if (!s) return KTLSX_IO_FAILED;
    if (s->failed) return KTLSX_IO_FAILED;
    if (s->ready) return KTLSX_IO_OK;
    if (!s->handshake_deadline) s->handshake_deadline = now_ms() + s->handshake_ms;
    for (;;) {
        int status = ktlsx_handshake(s->conn);
        int rc = flush_records(s);
        if (status == KTLSX_FAILED) return engine_failed(s);
        if (rc == KTLSX_IO_FAILED) return rc;
        if (rc == KTLSX_IO_WANT_WRITE) return wait_or_timeout(s, rc);
        if (status == KTLSX_DONE) return choose_data_path(s);
        /* Record by record: never pull bytes past the last handshake record
         * out of the socket, so kernel TLS can take over the rest. */
        uint8_t buf[SOCKET_WIRE_MAX];
        size_t wanted = ktlsx_input_wanted(s->conn);
        if (wanted == 0 || wanted > sizeof buf) wanted = sizeof buf;
        ssize_t n = recv(s->fd, buf, wanted, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait_or_timeout(s, KTLSX_IO_WANT_READ);
        if (n < 0) return io_failed(s, "read", errno);
        if (n == 0) {
            /* The engine still wanted bytes and the peer is gone.  Feeding it
             * the EOF would turn this into FAILED (handshake_failure, an alert
             * nobody is left to hear); the caller is promised CLOSED. */
            s->tcp_eof = true;
            set_error(s, "connection closed by peer during the handshake");
            s->failed = true;
            return KTLSX_IO_CLOSED;
        }
        /* A failure shows up as FAILED from the next ktlsx_handshake. */
        (void)ktlsx_input(s->conn, buf, (size_t)n);
        kx_wipe(buf, (size_t)n);
    }
}

/* Data calls drive the handshake first, as SSL_read does. */
#define NEED_READY(s)                                               \
    do {                                                            \
        if (!(s)->ready) {                                          \
            int hs__ = ktlsx_socket_handshake_step(s);              \
            if (hs__ != KTLSX_IO_OK) return hs__;                   \
        }                                                           \
        if ((s)->failed) return KTLSX_IO_FAILED;                    \
    } while (0)

/* ---- reading ---- */

/* The stream ended: cleanly with close_notify, or a bare TCP close. */
static int stream_closed(ktlsx_socket *s)
{
    if (!s->conn->peer_closed) set_error(s, "peer closed the connection without close_notify");
    return KTLSX_IO_CLOSED;
}

static int read_user_records(ktlsx_socket *s, void *buf, size_t len, size_t *got)
{
    for (;;) {
        long n = ktlsx_read(s->conn, buf, len);
        if (n > 0) {
            *got = (size_t)n;
            s->last_activity = now_ms();
            /* A KeyUpdate answer may have been queued on the way. */
            flush_alert(s);
            return KTLSX_IO_OK;
        }
        if (n == -KTLSX_FAILED) {
            flush_alert(s);
            return engine_failed(s);
        }
        if (n == -KTLSX_CLOSED) return stream_closed(s);
        int rc = flush_all(s);
        if (rc == KTLSX_IO_FAILED) return rc;
        uint8_t wire[SOCKET_WIRE_MAX];
        ssize_t r = recv(s->fd, wire, sizeof wire, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait_or_timeout(s, KTLSX_IO_WANT_READ);
        if (r < 0) return io_failed(s, "read", errno);
        if (r == 0) s->tcp_eof = true;
        /* Idle means no byte moved, not no record completed: a large record
         * arriving slowly keeps the connection alive. */
        if (r > 0) s->last_activity = now_ms();
        (void)ktlsx_input(s->conn, wire, (size_t)r); /* failures surface from ktlsx_read */
        kx_wipe(wire, (size_t)r);
    }
}

static int read_kernel_records(ktlsx_socket *s, void *buf, size_t len, size_t *got)
{
    /* A control record must fit whole: below a full record, read into our
     * own buffer and keep what the caller had no room for. */
    uint8_t plain[SOCKET_PLAIN_MAX];
    bool own = len < sizeof plain;
    long n = ktlsx_ktls_recv(s->conn, s->fd, own ? plain : buf, own ? sizeof plain : len, MSG_DONTWAIT);
    int err = errno;
    /* RX in the kernel, TX in user space: a KeyUpdate answer was sealed. */
    int rc = flush_records(s);
    if (rc == KTLSX_IO_FAILED) return rc;
    if (n > 0) {
        size_t mine = (size_t)n;
        if (own) {
            mine = (size_t)n < len ? (size_t)n : len;
            memcpy(buf, plain, mine);
            kx_result r = kx_write_bytes(&s->conn->app_in, plain + mine, (size_t)n - mine);
            kx_wipe(plain, (size_t)n);
            if (kx_failed(r)) return io_failed(s, "read", ENOMEM);
        }
        *got = mine;
        s->last_activity = now_ms();
        return KTLSX_IO_OK;
    }
    if (n == 0) return stream_closed(s);
    if (s->conn->failed) return engine_failed(s);
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return wait_or_timeout(s, KTLSX_IO_WANT_READ);
    return io_failed(s, "kernel TLS read", err);
}

int ktlsx_socket_read_step(ktlsx_socket *s, void *buf, size_t len, size_t *got)
{
    if (!s || !got) return KTLSX_IO_FAILED;
    *got = 0;
    if (!buf && len) REFUSE(s, "read: no buffer (NULL) for %zu bytes", len);
    NEED_READY(s);
    if (len == 0) return KTLSX_IO_OK;
    /* Plaintext decrypted before the switch to kernel TLS (or kept from a
     * short read) comes first, in order. */
    if (ktlsx_pending_plaintext(s->conn) > 0) {
        long n = ktlsx_read(s->conn, buf, len);
        if (n > 0) {
            *got = (size_t)n;
            return KTLSX_IO_OK;
        }
    }
    if (kx_out_pending(s->conn) > SOCKET_OUTPUT_HIGH) {
        int rc = flush_records(s);
        if (rc != KTLSX_IO_OK) return rc == KTLSX_IO_WANT_WRITE ? wait_or_timeout(s, rc) : rc;
    }
    if (s->conn->ktls_active & KTLSX_KTLS_RX) return read_kernel_records(s, buf, len, got);
    return read_user_records(s, buf, len, got);
}

/* ---- writing ---- */

int ktlsx_socket_flush_step(ktlsx_socket *s)
{
    if (!s) return KTLSX_IO_FAILED;
    int rc = flush_all(s);
    return rc == KTLSX_IO_WANT_WRITE ? wait_or_timeout(s, rc) : rc;
}

int ktlsx_socket_write_step(ktlsx_socket *s, const void *buf, size_t len, size_t *sent)
{
    if (!s || !sent) return KTLSX_IO_FAILED;
    *sent = 0;
    if (!buf && len) REFUSE(s, "write: no buffer (NULL) for %zu bytes", len);
    NEED_READY(s);
    /* Whatever was queued first goes first. */
    int rc = ktlsx_socket_flush_step(s);
    if (rc != KTLSX_IO_OK || len == 0) return rc;
    if (s->conn->ktls_active & KTLSX_KTLS_TX) {
        for (;;) {
            ssize_t n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait_or_timeout(s, KTLSX_IO_WANT_WRITE);
            if (n < 0) return io_failed(s, "send", errno);
            *sent = (size_t)n;
            s->last_activity = now_ms();
            return KTLSX_IO_OK;
        }
    }
    size_t take = len < SOCKET_WRITE_CHUNK ? len : SOCKET_WRITE_CHUNK;
    if (ktlsx_write(s->conn, buf, take) < 0) {
        flush_alert(s);
        return engine_failed(s);
    }
    *sent = take;
    /* Sealed and ours now: what the socket cannot take yet stays queued. */
    rc = flush_records(s);
    return rc == KTLSX_IO_FAILED ? rc : KTLSX_IO_OK;
}

int ktlsx_socket_sendfile_step(ktlsx_socket *s, int file_fd, int64_t *offset, size_t len, size_t *sent)
{
    if (!s || !sent) return KTLSX_IO_FAILED;
    *sent = 0;
    if (file_fd < 0) REFUSE(s, "sendfile: file descriptor %d is not open", file_fd);
    if (!offset) REFUSE(s, "sendfile: no offset (NULL)");
    if (*offset < 0) REFUSE(s, "sendfile: offset %lld is negative", (long long)*offset);
    NEED_READY(s);
    int rc = ktlsx_socket_flush_step(s);
    if (rc != KTLSX_IO_OK || len == 0) return rc;
    if (s->conn->ktls_active & KTLSX_KTLS_TX) {
        /* Zero copy: the kernel reads the page cache and seals the records itself. */
        off_t off = (off_t)*offset;
        size_t now = len < 0x7ffff000 ? len : 0x7ffff000;
        for (;;) {
            ssize_t n = sendfile(s->fd, file_fd, &off, now);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait_or_timeout(s, KTLSX_IO_WANT_WRITE);
            if (n < 0) return io_failed(s, "sendfile", errno);
            *offset = off;
            *sent = (size_t)n;
            if (n > 0) s->last_activity = now_ms();
            return KTLSX_IO_OK;
        }
    }
    /* User-space TX: read a chunk and seal it; once sealed it is queued, so a
     * full socket never loses bytes already taken from the file. */
    uint8_t chunk[SOCKET_PLAIN_MAX];
    size_t want = len < sizeof chunk ? len : sizeof chunk;
    ssize_t n;
    do
        n = pread(file_fd, chunk, want, (off_t)*offset);
    while (n < 0 && errno == EINTR);
    if (n < 0) return io_failed(s, "reading the file", errno);
    if (n == 0) return KTLSX_IO_OK;
    int w = ktlsx_write(s->conn, chunk, (size_t)n);
    kx_wipe(chunk, (size_t)n);
    if (w < 0) {
        flush_alert(s);
        return engine_failed(s);
    }
    *offset += n;
    *sent = (size_t)n;
    rc = flush_records(s);
    return rc == KTLSX_IO_FAILED ? rc : KTLSX_IO_OK;
}

int ktlsx_socket_shutdown_step(ktlsx_socket *s)
{
    if (!s) return KTLSX_IO_FAILED;
    NEED_READY(s);
    if (!s->close_notify_queued) {
        if (ktlsx_close_notify(s->conn) < 0) return engine_failed(s);
        s->close_notify_queued = true;
    }
    return ktlsx_socket_flush_step(s);
}

int ktlsx_socket_key_update(ktlsx_socket *s, int request_update)
{
    if (!s) return KTLSX_IO_FAILED;
    NEED_READY(s);
    if (ktlsx_version(s->conn) != KTLSX_TLS13) {
        set_error(s, "%s has no KeyUpdate", ktlsx_version_name(s->conn));
        return KTLSX_IO_FAILED; /* not sticky: the connection itself is fine */
    }
    if (ktlsx_key_update(s->conn, request_update) < 0) {
        flush_alert(s);
        return engine_failed(s);
    }
    return ktlsx_socket_flush_step(s);
}

/* ---- blocking calls ---- */

/* Wait for `want` (WANT_READ / WANT_WRITE) until the current deadline.
 * Returns OK to step again, or TIMEOUT / FAILED. */
static int wait_for(ktlsx_socket *s, int want)
{
    struct pollfd pfd = { .fd = s->fd, .events = want == KTLSX_IO_WANT_READ ? POLLIN : POLLOUT };
    for (;;) {
        int timeout = ktlsx_socket_timeout_ms(s);
        int ready = poll(&pfd, 1, timeout);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return io_failed(s, "poll", errno);
        /* At the deadline the next step reports the timeout itself. */
        return KTLSX_IO_OK;
    }
}

/* One step call, whatever its arguments: the blocking calls below run it
 * until it stops asking to wait. */
typedef struct {
    enum { STEP_HANDSHAKE, STEP_READ, STEP_WRITE, STEP_SENDFILE, STEP_FLUSH, STEP_SHUTDOWN } kind;
    void *buf;
    const void *cbuf;
    size_t len, done;
    int file_fd;
    int64_t *offset;
} step_call;

static int step_once(ktlsx_socket *s, step_call *c)
{
    switch (c->kind) {
    case STEP_HANDSHAKE: return ktlsx_socket_handshake_step(s);
    case STEP_READ: return ktlsx_socket_read_step(s, c->buf, c->len, &c->done);
    case STEP_WRITE: return ktlsx_socket_write_step(s, c->cbuf, c->len, &c->done);
    case STEP_SENDFILE: return ktlsx_socket_sendfile_step(s, c->file_fd, c->offset, c->len, &c->done);
    case STEP_FLUSH: return ktlsx_socket_flush_step(s);
    default: return ktlsx_socket_shutdown_step(s);
    }
}

static int run_blocking(ktlsx_socket *s, step_call *c)
{
    for (;;) {
        int rc = step_once(s, c);
        if (rc != KTLSX_IO_WANT_READ && rc != KTLSX_IO_WANT_WRITE) return rc;
        rc = wait_for(s, rc);
        if (rc != KTLSX_IO_OK) return rc;
    }
}

int ktlsx_socket_handshake(ktlsx_socket *s)
{
    step_call c = { .kind = STEP_HANDSHAKE };
    return run_blocking(s, &c);
}

long ktlsx_socket_read(ktlsx_socket *s, void *buf, size_t len)
{
    step_call c = { .kind = STEP_READ, .buf = buf, .len = len };
    int rc = run_blocking(s, &c);
    if (rc == KTLSX_IO_OK) return (long)c.done;
    return rc == KTLSX_IO_CLOSED ? 0 : -1;
}

int ktlsx_socket_flush(ktlsx_socket *s)
{
    step_call c = { .kind = STEP_FLUSH };
    return run_blocking(s, &c) == KTLSX_IO_OK ? 0 : -1;
}

int ktlsx_socket_write(ktlsx_socket *s, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        step_call c = { .kind = STEP_WRITE, .cbuf = p, .len = len };
        if (run_blocking(s, &c) != KTLSX_IO_OK) return -1;
        p += c.done;
        len -= c.done;
    }
    return ktlsx_socket_flush(s);
}

int ktlsx_socket_sendfile(ktlsx_socket *s, int file_fd, int64_t *offset, uint64_t len)
{
    while (len > 0) {
        step_call c = { .kind = STEP_SENDFILE, .file_fd = file_fd, .offset = offset,
                        .len = len < 0x7ffff000 ? (size_t)len : 0x7ffff000 };
        if (run_blocking(s, &c) != KTLSX_IO_OK) return -1;
        if (c.done == 0) {
            set_error(s, "the file ended %llu bytes early", (unsigned long long)len);
            return -1;
        }
        len -= c.done;
    }
    return ktlsx_socket_flush(s);
}

int ktlsx_socket_shutdown(ktlsx_socket *s)
{
    step_call c = { .kind = STEP_SHUTDOWN };
    return run_blocking(s, &c) == KTLSX_IO_OK ? 0 : -1;
}

/* ---- conf-b: linger after an alert ----
 * Closing a TCP socket whose receive queue still holds bytes makes the kernel
 * send a reset instead of a FIN, and a reset can discard the alert still
 * waiting in the peer's receive queue: a client that was still sending (a
 * large ClientHello) would see ECONNRESET, not why we refused.  So: the alert
 * out, our side shut (FIN after the alert), and what the peer still sends
 * read and dropped, for a bounded time and number of bytes. */
int ktlsx_socket_linger(ktlsx_socket *s, int max_ms, size_t max_bytes)
{
    if (!s) return -1;
    if (max_ms < 1 || max_ms > 60000 || max_bytes < 1 || max_bytes > 64u * 1024 * 1024) {
        set_error(s, "linger bounds must be 1..60000 ms and 1 byte..64 MiB, not %d ms / %zu bytes", max_ms, max_bytes);
        return -1;
    }
    int64_t deadline = now_ms() + max_ms;
    size_t dropped = 0;
    bool shut = false;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0 || dropped >= max_bytes) return 1;
        if (!shut) {
            /* The queued alert first; a full send buffer is waited for like the rest. */
            int rc = flush_all(s);
            if (rc == KTLSX_IO_FAILED) return -1;
            if (rc == KTLSX_IO_OK) {
                if (shutdown(s->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
                    set_error(s, "shutdown: %s", strerror(errno));
                    return -1;
                }
                shut = true;
            }
        }
        struct pollfd pfd = { .fd = s->fd, .events = (short)(POLLIN | (shut ? 0 : POLLOUT)) };
        int ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) {
            set_error(s, "poll: %s", strerror(errno));
            return -1;
        }
        if (ready == 0 || !(pfd.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        uint8_t buf[16384];
        size_t want = max_bytes - dropped < sizeof buf ? max_bytes - dropped : sizeof buf;
        ssize_t n = recv(s->fd, buf, want, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n < 0) {
            /* The peer reset first: nothing more to protect. */
            if (errno == ECONNRESET) return 0;
            set_error(s, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0) return 0;
        dropped += (size_t)n;
    }
}

