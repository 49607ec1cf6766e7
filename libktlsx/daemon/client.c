/* The caller's side of ktlsxd's local door: send the socket and the request,
 * wait for the answer, rebuild the connection from the state blob.
 *
 * One mechanism: ktlsx_daemon_handshake_start/_step never block (a
 * nonblocking door socket, MSG_DONTWAIT) and say what to wait for, like the
 * ktlsx_socket_*_step calls; the blocking ktlsx_daemon_handshake is a poll(2)
 * loop over them. */
#include "core/wipe.h"
#include <ktlsx/daemon.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The daemon cuts the handshake at the deadline and answers at once; this
 * much more covers the answer's way back on a loaded machine. */
#define DOOR_ANSWER_SLACK_MS 1000
#define DOOR_DEFAULT_WAIT_MS 60000

enum call_state {
    CALL_SEND, /* the request is not out yet (the door's queue was full) */
    CALL_RECV, /* waiting for the answer */
    CALL_DONE, /* res holds the outcome; io says what step returns */
};

struct ktlsx_door_call {
    enum call_state state;
    int door;       /* our door connection, -1 once closed */
    int fd;         /* the caller's socket (sent with the request; never closed here) */
    enum ktlsx_role role;
    int send_err;   /* the request could not be sent: look for an early answer, then report this */
    int io;         /* CALL_DONE: enum ktlsx_io to return */
    ktlsx_conn *conn; /* CALL_DONE: the connection, until handed out */
    int64_t deadline; /* monotonic ms */
    size_t req_len;
    struct ktlsx_daemon_result res;
    uint8_t msg[KTLSX_DOOR_ANSWER_MAX]; /* the request, then the answer (holds key material: wiped) */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The exchange is over: keep the outcome, close the door connection. */
static void finish(ktlsx_door_call *c, int io, int status, const char *fmt, const char *arg)
{
    if (status >= 0) {
        c->res.status = status;
        snprintf(c->res.message, sizeof c->res.message, fmt, arg);
    }
    c->io = io;
    c->state = CALL_DONE;
    if (c->door >= 0) close(c->door);
    c->door = -1;
    kx_wipe(c->msg, sizeof c->msg);
}

/* Connect to the door without waiting; -1 with the outcome in c. */
static int door_connect(ktlsx_door_call *c, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        finish(c, KTLSX_IO_FAILED, KTLSX_DOOR_UNREACHABLE, "door path too long: %s", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int err = errno;
        if (s >= 0) close(s);
        char m[KTLSX_DOOR_MESSAGE_MAX + 1];
        if (err == EAGAIN) /* a unix connect never waits: the daemon's listen backlog is full */
            snprintf(m, sizeof m, "the daemon at %s takes no more door connections now (listen backlog full)", path);
        else
            snprintf(m, sizeof m, "cannot reach the daemon at %s: %s", path, strerror(err));
        finish(c, KTLSX_IO_FAILED, err == EAGAIN ? KTLSX_DOOR_BUSY : KTLSX_DOOR_UNREACHABLE, "%s", m);
        return -1;
    }
    c->door = s;
    return 0;
}

static void try_send(ktlsx_door_call *c)
{
    if (ktlsx_send_fd(c->door, c->msg, c->req_len, c->fd, MSG_DONTWAIT) == 0) {
        c->state = CALL_RECV;
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return; /* still CALL_SEND: wait for POLLOUT */
    /* A daemon at its limits answers "busy" before reading and closes: the
     * send then fails, and that answer is what the caller wants to see. */
    c->send_err = errno;
    c->state = CALL_RECV;
}

ktlsx_door_call *ktlsx_daemon_handshake_start(const char *door_path, int fd, enum ktlsx_role role,
                                              const char *profile, const char *server_name, const char *alpn,
                                              int timeout_ms)
{
    ktlsx_door_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->door = -1;
    c->fd = fd;
    c->role = role;
    c->state = CALL_SEND;
    if (!door_path) door_path = KTLSX_DOOR_DEFAULT_PATH;
    const int bad = KTLSX_DOOR_BAD_REQUEST;
    if (fd < 0) return finish(c, KTLSX_IO_FAILED, bad, "fd %s is not a descriptor", "< 0"), c;
    if (timeout_ms < 0) return finish(c, KTLSX_IO_FAILED, bad, "timeout_ms %s: must be >= 0", "< 0"), c;
    if (!profile) return finish(c, KTLSX_IO_FAILED, bad, "profile is %s", "NULL"), c;
    struct ktlsx_door_request req = { .role = role, .timeout_ms = (uint32_t)timeout_ms };
    if (strlen(profile) >= sizeof req.profile)
        return finish(c, KTLSX_IO_FAILED, bad, "profile name '%.64s...' over 64 bytes", profile), c;
    if (server_name && strlen(server_name) >= sizeof req.server_name)
        return finish(c, KTLSX_IO_FAILED, bad, "server name '%.64s...' over 255 bytes", server_name), c;
    if (alpn && strlen(alpn) >= sizeof req.alpn)
        return finish(c, KTLSX_IO_FAILED, bad, "ALPN list '%.64s...' over 255 bytes", alpn), c;
    memcpy(req.profile, profile, strlen(profile));
    if (server_name) memcpy(req.server_name, server_name, strlen(server_name));
    if (alpn) memcpy(req.alpn, alpn, strlen(alpn));

    const char *why = NULL;
    long len = ktlsx_door_request_encode(&req, c->msg, sizeof c->msg, &why);
    if (len < 0) return finish(c, KTLSX_IO_FAILED, bad, "%s", why), c;
    c->req_len = (size_t)len;
    c->deadline = now_ms() + (timeout_ms > 0 ? (int64_t)timeout_ms + DOOR_ANSWER_SLACK_MS : DOOR_DEFAULT_WAIT_MS);
    if (door_connect(c, door_path) < 0) return c;
    try_send(c);
    return c;
}

int ktlsx_daemon_handshake_fd(const ktlsx_door_call *call) { return call ? call->door : -1; }

int ktlsx_daemon_handshake_timeout_ms(const ktlsx_door_call *call)
{
    if (!call || call->state == CALL_DONE) return -1;
    int64_t left = call->deadline - now_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* The answer is in c->msg[0..n): decode it, rebuild the connection. */
static void take_answer(ktlsx_door_call *c, size_t n)
{
    const uint8_t *blob;
    size_t blob_len;
    const char *why = NULL;
    if (ktlsx_door_answer_decode(c->msg, n, &c->res, &blob, &blob_len, &why) < 0) {
        memset(&c->res, 0, sizeof c->res);
        return finish(c, KTLSX_IO_FAILED, KTLSX_DOOR_UNREACHABLE, "unreadable answer from the daemon: %s", why);
    }
    if (c->res.status != KTLSX_DOOR_OK) return finish(c, KTLSX_IO_FAILED, -1, NULL, NULL);
    if (blob_len == 0) return finish(c, KTLSX_IO_OK, -1, NULL, NULL); /* the kernel owns both directions */
    ktlsx_config *cfg = ktlsx_config_new(c->role);
    c->conn = cfg ? ktlsx_conn_import(cfg, blob, blob_len, &why) : NULL;
    ktlsx_config_free(cfg); /* the connection holds its own reference */
    if (!c->conn)
        return finish(c, KTLSX_IO_FAILED, KTLSX_DOOR_INTERNAL, "cannot import the daemon's state: %s",
                      cfg ? why : "out of memory");
    finish(c, KTLSX_IO_OK, -1, NULL, NULL);
}

static void try_recv(ktlsx_door_call *c)
{
    int extra = -1;
    long n = ktlsx_recv_fd(c->door, c->msg, sizeof c->msg, &extra, MSG_DONTWAIT);
    /* A door that closed without reading our request makes the first receive
     * report ECONNRESET (and clear it) even with its answer queued: read again. */
    if (n < 0 && errno == ECONNRESET) n = ktlsx_recv_fd(c->door, c->msg, sizeof c->msg, &extra, MSG_DONTWAIT);
    int err = errno;
    if (extra >= 0) close(extra); /* the daemon never sends one: not ours to keep */
    if (n > 0) return take_answer(c, (size_t)n);
    if (c->send_err) /* nothing came back either */
        return finish(c, KTLSX_IO_FAILED, KTLSX_DOOR_UNREACHABLE, "sending the request: %s", strerror(c->send_err));
    if (n == 0)
        return finish(c, KTLSX_IO_FAILED, KTLSX_DOOR_UNREACHABLE, "no answer from the daemon: %s",
                      "it closed the door connection");
    if (err != EAGAIN && err != EWOULDBLOCK)
        return finish(c, KTLSX_IO_FAILED, KTLSX_DOOR_UNREACHABLE, "no answer from the daemon: %s", strerror(err));
    /* nothing yet: still CALL_RECV */
}

int ktlsx_daemon_handshake_step(ktlsx_door_call *call, ktlsx_conn **conn, struct ktlsx_daemon_result *res)
{
    if (!call || !conn || !res) return KTLSX_IO_FAILED;
    *conn = NULL;
    if (call->state == CALL_SEND) try_send(call);
    if (call->state == CALL_RECV) try_recv(call);
    if (call->state != CALL_DONE && now_ms() >= call->deadline)
        finish(call, KTLSX_IO_TIMEOUT, KTLSX_DOOR_UNREACHABLE, "no answer from the daemon: %s", strerror(ETIMEDOUT));
    if (call->state == CALL_SEND) return KTLSX_IO_WANT_WRITE;
    if (call->state == CALL_RECV) return KTLSX_IO_WANT_READ;
    *res = call->res;
    *conn = call->conn;
    call->conn = NULL; /* handed out once */
    return call->io;
}

void ktlsx_daemon_handshake_free(ktlsx_door_call *call)
{
    if (!call) return;
    if (call->door >= 0) close(call->door);
    ktlsx_conn_free(call->conn);
    kx_wipe(call, sizeof *call);
    free(call);
}

ktlsx_conn *ktlsx_daemon_handshake(const char *door_path, int fd, enum ktlsx_role role, const char *profile,
                                   const char *server_name, const char *alpn, int timeout_ms,
                                   struct ktlsx_daemon_result *res)
{
    if (!res) return NULL;
    memset(res, 0, sizeof *res);
    ktlsx_door_call *call = ktlsx_daemon_handshake_start(door_path, fd, role, profile, server_name, alpn, timeout_ms);
    if (!call) {
        res->status = KTLSX_DOOR_INTERNAL;
        snprintf(res->message, sizeof res->message, "out of memory");
        return NULL;
    }
    ktlsx_conn *conn = NULL;
    int rc;
    while ((rc = ktlsx_daemon_handshake_step(call, &conn, res)) == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) {
        struct pollfd p = { .fd = ktlsx_daemon_handshake_fd(call), .events = rc == KTLSX_IO_WANT_READ ? POLLIN : POLLOUT };
        (void)poll(&p, 1, ktlsx_daemon_handshake_timeout_ms(call)); /* EINTR, or anything: the step decides */
    }
    ktlsx_daemon_handshake_free(call);
    return conn;
}
