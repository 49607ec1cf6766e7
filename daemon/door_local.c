/* The local door: a unix SOCK_SEQPACKET socket on which applications hand
 * ktlsxd a connected TCP socket and ask for a handshake on it.
 *
 * Each door connection is a `struct client`, in one of three states:
 *   WAIT_REQUEST  epoll watches the door for a request (cut after
 *                 request_timeout_ms of silence);
 *   HANDSHAKE     the library's step calls run the handshake on our copy of
 *                 the caller's socket, epoll watching that socket as each step
 *                 asks; the door is watched too: a caller that hangs up or
 *                 sends again before its answer ends its handshake;
 *   SENDING       the answer waits for room in the door socket.
 * After the answer the connection waits for the next request.  Nothing here
 * blocks or sleeps.  Every worker thread runs this file on its own event loop
 * (`door` is thread-local): all of them watch the one listening socket, and a
 * door connection stays with the worker that accepted it.  What the limits
 * need across workers (door connections open, handshakes per uid) is in
 * `shared`, under atomics or a mutex.  The caller's identity is SO_PEERCRED
 * (and SO_PEERGROUPS) of the door connection, taken once at accept. */
#include "ktlsxd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>

enum client_state { WAIT_REQUEST, HANDSHAKE, SENDING };

struct client {
    struct kd_watch door_w, app_w; /* epoll tags: the door connection, the caller's TCP socket */
    struct client *prev, *next;
    enum client_state state;
    int door, app;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    gid_t groups[KD_MAX_GROUPS]; /* supplementary groups, as far as KD_MAX_GROUPS */
    size_t ngroups;
    int64_t started;  /* HANDSHAKE: when it began, for the latency histogram */
    int64_t deadline; /* WAIT_REQUEST / SENDING: when the door connection is cut; HANDSHAKE: the handshake's */
    size_t heap_at;   /* 1-based place in the worker's deadline heap, 0 = not in it */
    ktlsx_socket *sock;
    uint32_t app_events;
    bool export_state;
    enum ktlsx_role role;
    char profile[KTLSX_DOOR_NAME_MAX + 1];
    char server_name[KTLSX_DOOR_HOST_MAX + 1];
    char alpn[KTLSX_DOOR_ALPN_MAX + 1];
    bool dead;                /* freed at the end of the epoll batch, which may still name it */
    struct client *dead_next;
    uint8_t *answer; /* SENDING: the encoded answer (may hold the state blob: wiped when freed) */
    size_t answer_len;
};

/* One per worker thread. */
static _Thread_local struct {
    struct kd_watch listen_w;
    bool closing;
    struct client *clients, *dead;
    size_t nclients, inflight; /* this worker's */
    struct client **heap;      /* every live door connection, by deadline (a binary min-heap) */
    size_t heap_len, heap_cap;
} door;

/* ---- deadlines: a min-heap, so that a worker holding 10,000 door connections
 * finds the next deadline in O(1) and moves one in O(log n). ---- */
static void heap_put(size_t i, struct client *c)
{
    door.heap[i] = c;
    c->heap_at = i + 1;
}

static void heap_up(size_t i)
{
    struct client *c = door.heap[i];
    while (i > 0 && door.heap[(i - 1) / 2]->deadline > c->deadline) {
        heap_put(i, door.heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_put(i, c);
}

static void heap_down(size_t i)
{
    struct client *c = door.heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = c->deadline;
        if (l < door.heap_len && door.heap[l]->deadline < best) m = l, best = door.heap[l]->deadline;
        if (l + 1 < door.heap_len && door.heap[l + 1]->deadline < best) m = l + 1;
        if (m == i) break;
        heap_put(i, door.heap[m]);
        i = m;
    }
    heap_put(i, c);
}

/* Give c the deadline `at` (adding it to the heap). -1 when the heap cannot grow. */
static int set_deadline(struct client *c, int64_t at)
{
    if (!c->heap_at) {
        if (door.heap_len == door.heap_cap) {
            size_t cap = door.heap_cap ? door.heap_cap * 2 : 256;
            struct client **h = realloc(door.heap, cap * sizeof(struct client *));
            if (!h) return -1;
            door.heap = h, door.heap_cap = cap;
        }
        c->deadline = at;
        heap_put(door.heap_len++, c);
        heap_up(door.heap_len - 1);
        return 0;
    }
    int64_t was = c->deadline;
    c->deadline = at;
    if (at < was) heap_up(c->heap_at - 1);
    else heap_down(c->heap_at - 1);
    return 0;
}

static void clear_deadline(struct client *c)
{
    if (!c->heap_at) return;
    size_t i = c->heap_at - 1;
    c->heap_at = 0;
    struct client *last = door.heap[--door.heap_len];
    if (i == door.heap_len) return;
    heap_put(i, last);
    heap_up(i);
    heap_down(last->heap_at - 1);
}

/* What each caller uid holds, for max_clients_per_uid and max_handshakes_per_uid
 * across workers: a small table scanned under a mutex (at a door connection's
 * accept and end, at a handshake's start and end). */
#define UID_SLOTS 1024
enum uid_count { DOOR_CONN = 0, HANDSHAKE_RUNNING = 1 };
static struct {
    int listen_fd;
    char path[108];
    bool adopted; /* systemd's socket: its file is systemd's to remove */
    atomic_bool closing;
    atomic_size_t nclients, inflight; /* all workers' */
    pthread_mutex_t uid_lock;
    struct { uid_t uid; size_t n[2]; } uids[UID_SLOTS];
} shared = { .listen_fd = -1, .uid_lock = PTHREAD_MUTEX_INITIALIZER };

/* One more of `what` for `uid`, unless it holds `max` already or the table is full
 * (UID_SLOTS distinct callers at once). */
static bool uid_acquire(uid_t uid, enum uid_count what, size_t max)
{
    pthread_mutex_lock(&shared.uid_lock);
    size_t free_slot = UID_SLOTS, i;
    for (i = 0; i < UID_SLOTS; i++) {
        bool used = shared.uids[i].n[0] || shared.uids[i].n[1];
        if (used && shared.uids[i].uid == uid) break;
        if (!used && free_slot == UID_SLOTS) free_slot = i;
    }
    if (i == UID_SLOTS && free_slot < UID_SLOTS) i = free_slot, shared.uids[i].uid = uid;
    bool ok = i < UID_SLOTS && shared.uids[i].n[what] < max;
    if (ok) shared.uids[i].n[what]++;
    pthread_mutex_unlock(&shared.uid_lock);
    return ok;
}

static void uid_release(uid_t uid, enum uid_count what)
{
    pthread_mutex_lock(&shared.uid_lock);
    for (size_t i = 0; i < UID_SLOTS; i++)
        if ((shared.uids[i].n[0] || shared.uids[i].n[1]) && shared.uids[i].uid == uid) {
            if (shared.uids[i].n[what]) shared.uids[i].n[what]--;
            break;
        }
    pthread_mutex_unlock(&shared.uid_lock);
}

/* Whether the caller really sent something (or hung up) on door connection `fd`. */
static bool door_has_message(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

static int request_timeout_ms(void)
{
    int ms = kd_conf_hold()->request_timeout_ms;
    kd_conf_drop();
    return ms;
}

/* A handshake ends (either way): the counters that bound it. */
static void handshake_over(struct client *c)
{
    ktlsx_socket_free(c->sock);
    c->sock = NULL;
    door.inflight--;
    atomic_fetch_sub(&shared.inflight, 1);
    uid_release(c->uid, HANDSHAKE_RUNNING);
}

static void on_door(struct kd_watch *w, uint32_t events);
static void on_app(struct kd_watch *w, uint32_t events);

static void client_free(struct client *c)
{
    (void)kd_watch_fd(c->door, EPOLL_CTL_DEL, 0, &c->door_w);
    if (c->app >= 0) (void)kd_watch_fd(c->app, EPOLL_CTL_DEL, 0, &c->app_w);
    if (c->sock) handshake_over(c);
    if (c->app >= 0) close(c->app); /* our copy only: the caller keeps its own */
    if (c->answer) OPENSSL_clear_free(c->answer, c->answer_len);
    close(c->door);
    if (c->prev) c->prev->next = c->next;
    else door.clients = c->next;
    if (c->next) c->next->prev = c->prev;
    door.nclients--;
    atomic_fetch_sub(&shared.nclients, 1);
    uid_release(c->uid, DOOR_CONN);
    clear_deadline(c);
    c->dead = true;
    c->dead_next = door.dead;
    door.dead = c;
}

void kd_door_reap(void)
{
    /* A client whose polls are still being cancelled waits for the next round. */
    for (struct client **pc = &door.dead; *pc;) {
        struct client *c = *pc;
        if (kd_watch_idle(&c->door_w) && kd_watch_idle(&c->app_w)) {
            *pc = c->dead_next;
            free(c);
        } else {
            pc = &c->dead_next;
        }
    }
}

void kd_door_worker_end(void)
{
    /* The loop is closed: no poll can complete any more, so the door connections
     * still waiting for their cancellations can go, and the deadline heap. */
    while (door.dead) {
        struct client *c = door.dead;
        door.dead = c->dead_next;
        free(c);
    }
    free(door.heap);
    door.heap = NULL;
    door.heap_len = door.heap_cap = 0;
}

static void wait_request(struct client *c)
{
    c->state = WAIT_REQUEST;
    if (set_deadline(c, kd_now_ms() + request_timeout_ms()) < 0 ||
        kd_watch_fd(c->door, EPOLL_CTL_MOD, EPOLLIN, &c->door_w) < 0)
        client_free(c);
}

/* Encode and send an answer; on a full door socket keep it and wait for room. */
static void answer(struct client *c, const struct ktlsx_daemon_result *res, const uint8_t *blob, size_t blob_len)
{
    uint8_t buf[KTLSX_DOOR_ANSWER_MAX];
    const char *why = NULL;
    long n = ktlsx_door_answer_encode(res, blob, blob_len, buf, sizeof buf, &why);
    if (n < 0) { /* our own fields: cannot happen short of a bug, so say it and drop the caller */
        kd_log(KTLSX_LOG_ERROR, "uid %u pid %d: cannot encode the answer: %s", (unsigned)c->uid, (int)c->pid, why);
        return client_free(c);
    }
    if (ktlsx_send_fd(c->door, buf, (size_t)n, -1, MSG_DONTWAIT) == 0) {
        OPENSSL_cleanse(buf, (size_t)n);
        if (door.closing) return client_free(c);
        return wait_request(c);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
        kd_log(KTLSX_LOG_INFO, "uid %u pid %d: answer not delivered: %s", (unsigned)c->uid, (int)c->pid,
               strerror(errno));
        OPENSSL_cleanse(buf, (size_t)n);
        return client_free(c);
    }
    c->answer = malloc((size_t)n);
    if (!c->answer) {
        OPENSSL_cleanse(buf, (size_t)n);
        return client_free(c);
    }
    memcpy(c->answer, buf, (size_t)n);
    OPENSSL_cleanse(buf, (size_t)n);
    c->answer_len = (size_t)n;
    c->state = SENDING;
    if (set_deadline(c, kd_now_ms() + request_timeout_ms()) < 0 ||
        kd_watch_fd(c->door, EPOLL_CTL_MOD, EPOLLOUT, &c->door_w) < 0)
        client_free(c);
}

static void refuse(struct client *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(struct client *c, int status, const char *fmt, ...)
{
    struct ktlsx_daemon_result res = { .status = status };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof res.message, fmt, ap);
    va_end(ap);
    if (c->app >= 0) close(c->app); /* refused before any handshake: the socket was never ours to use */
    c->app = -1;
    kd_stats_refused(KD_DOOR_LOCAL, c->profile, status);
    kd_log(KTLSX_LOG_INFO, "uid %u pid %d profile '%s': %s: %s", (unsigned)c->uid, (int)c->pid, c->profile,
           ktlsx_door_status_name(status), res.message);
    answer(c, &res, NULL, 0);
}

/* Why `fd` cannot carry a handshake, or NULL when it can. */
static const char *socket_problem(int fd)
{
    struct stat st;
    int v;
    socklen_t len = sizeof v;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) return "the descriptor is not a socket";
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || (v != AF_INET && v != AF_INET6))
        return "not an IPv4 or IPv6 socket";
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) < 0 || v != IPPROTO_TCP) return "not a TCP socket";
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || v) return "a listening socket, not a connection";
    struct tcp_info ti;
    len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return "TCP state unreadable";
    if (ti.tcpi_state == TCP_CLOSE_WAIT) return "the peer has already closed the connection";
    if (ti.tcpi_state != TCP_ESTABLISHED) return "not a connected TCP socket";
    return NULL;
}

static bool in_list(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !memcmp(p, item, n)) return true;
        if (!end) break;
        p = end + 1;
    }
    return false;
}

/* The peer leaf's subject alternative names as one line, "DNS:a, IP:192.0.2.1"
 * (cut at the field's limit); "" when there is no certificate (resumed, PSK). */
static void peer_sans(ktlsx_conn *conn, char *out, size_t cap)
{
    size_t len = 0, n;
    const uint8_t *der = ktlsx_peer_cert_der(conn, 0, &n);
    out[0] = '\0';
    X509 *x = der ? d2i_X509(NULL, &der, (long)n) : NULL;
    GENERAL_NAMES *names = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[300] = "";
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
            const ASN1_IA5STRING *t = g->d.ia5;
            snprintf(one, sizeof one, "%s:%.*s", g->type == GEN_DNS ? "DNS" : g->type == GEN_EMAIL ? "email" : "URI",
                     t->length > 255 ? 255 : t->length, (const char *)t->data);
        } else if (g->type == GEN_IPADD && (g->d.ip->length == 4 || g->d.ip->length == 16)) {
            char ip[INET6_ADDRSTRLEN];
            if (inet_ntop(g->d.ip->length == 4 ? AF_INET : AF_INET6, g->d.ip->data, ip, sizeof ip))
                snprintf(one, sizeof one, "IP:%s", ip);
        }
        if (!one[0]) continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? ", " : "", one);
        if (w < 0 || (size_t)w >= cap - len) { /* full: keep whole names only */
            out[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
    GENERAL_NAMES_free(names);
    X509_free(x);
}

/* The handshake is over: say how it went, hand back the state if allowed. */
static void finish(struct client *c, int rc)
{
    struct ktlsx_daemon_result res = { .status = KTLSX_DOOR_OK };
    ktlsx_conn *conn = ktlsx_socket_conn(c->sock);
    uint8_t blob[KTLSX_EXPORT_MAX];
    long blob_len = 0;
    const char *why = NULL;
    (void)kd_watch_fd(c->app, EPOLL_CTL_DEL, 0, &c->app_w);
    res.alert = ktlsx_alert(conn);
    if (rc == KTLSX_IO_OK) {
        res.version = ktlsx_version(conn);
        res.cipher = ktlsx_cipher_id(conn);
        res.resumed = ktlsx_resumed(conn);
        res.ktls = ktlsx_socket_ktls(c->sock);
        snprintf(res.group, sizeof res.group, "%s", ktlsx_group_name(conn));
        snprintf(res.alpn, sizeof res.alpn, "%s", ktlsx_alpn(conn) ? ktlsx_alpn(conn) : "");
        snprintf(res.peer_subject, sizeof res.peer_subject, "%s", ktlsx_peer_subject(conn));
        snprintf(res.server_name, sizeof res.server_name, "%s",
                 c->role == KTLSX_SERVER ? (ktlsx_sni(conn) ? ktlsx_sni(conn) : "") : c->server_name);
        snprintf(res.ktls_why, sizeof res.ktls_why, "%s", ktlsx_socket_ktls_why(c->sock));
        peer_sans(conn, res.peer_sans, sizeof res.peer_sans);
        if (c->alpn[0] && (!ktlsx_alpn(conn) || !in_list(c->alpn, ktlsx_alpn(conn)))) {
            res.status = KTLSX_DOOR_ALPN_MISMATCH;
            snprintf(res.message, sizeof res.message, "protocol chosen '%.100s' is not one of the caller's '%.100s'",
                     ktlsx_alpn(conn) ? ktlsx_alpn(conn) : "(none)", c->alpn);
        } else if (c->export_state) {
            blob_len = ktlsx_conn_export(conn, blob, sizeof blob, &why);
            if (blob_len < 0) {
                res.status = KTLSX_DOOR_INTERNAL;
                snprintf(res.message, sizeof res.message, "cannot hand back the TLS state: %s", why);
                blob_len = 0;
            }
        } else if (res.ktls != (KTLSX_KTLS_TX | KTLSX_KTLS_RX)) {
            res.status = KTLSX_DOOR_NO_KTLS;
            snprintf(res.message, sizeof res.message,
                     "kernel TLS %s (%.120s) and profile '%s' does not hand back the TLS state (export_state = no)",
                     ktlsx_socket_ktls_name(c->sock), res.ktls_why, c->profile);
        }
    } else {
        res.status = rc == KTLSX_IO_TIMEOUT  ? KTLSX_DOOR_TIMEOUT
                     : rc == KTLSX_IO_CLOSED ? KTLSX_DOOR_PEER_CLOSED
                                             : KTLSX_DOOR_HANDSHAKE_FAILED;
        snprintf(res.message, sizeof res.message, "%s", ktlsx_socket_error(c->sock));
    }
    kd_stats_handshake(KD_DOOR_LOCAL, c->profile, res.status, res.alert, rc == KTLSX_IO_OK && res.resumed,
                       kd_now_ms() - c->started);
    kd_log(res.status == KTLSX_DOOR_OK ? KTLSX_LOG_DEBUG : KTLSX_LOG_INFO,
           "uid %u pid %d profile '%s': %s%s%s %s %s resumed=%d ktls=%s", (unsigned)c->uid, (int)c->pid, c->profile,
           ktlsx_door_status_name(res.status), res.message[0] ? ": " : "", res.message,
           rc == KTLSX_IO_OK ? ktlsx_version_name(conn) : "-", rc == KTLSX_IO_OK ? ktlsx_cipher_name(conn) : "-",
           res.resumed, ktlsx_socket_ktls_name(c->sock));
    handshake_over(c);
    close(c->app);
    c->app = -1;
    answer(c, &res, blob, (size_t)blob_len);
    OPENSSL_cleanse(blob, sizeof blob);
}

/* Run the handshake as far as it goes without waiting. */
static void drive(struct client *c)
{
    int rc = ktlsx_socket_handshake_step(c->sock);
    if (rc != KTLSX_IO_WANT_READ && rc != KTLSX_IO_WANT_WRITE) return finish(c, rc);
    uint32_t want = rc == KTLSX_IO_WANT_READ ? EPOLLIN : EPOLLOUT;
    if (want != c->app_events) {
        c->app_events = want;
        if (kd_watch_fd(c->app, EPOLL_CTL_MOD, want, &c->app_w) < 0) {
            struct ktlsx_daemon_result res = { .status = KTLSX_DOOR_INTERNAL };
            snprintf(res.message, sizeof res.message, "epoll: %s", strerror(errno));
            return answer(c, &res, NULL, 0);
        }
    }
}

/* The profile checks, under the configuration lock: the handshake's socket
 * holds a reference on the profile's ktlsx_config, so a reload may free the
 * rest once this returns.  0 = c->sock is set up; else the refusal's status
 * with its message in why. */
static int begin(struct client *c, const struct ktlsx_door_request *req, int fd, char *why, size_t cap)
{
    const struct kd_conf *conf = kd_conf_hold();
    const struct kd_profile *p = kd_conf_profile(conf, req->profile, req->role);
    const char *problem;
    int status = KTLSX_DOOR_OK;
    if (atomic_load(&shared.closing) || door.closing) {
        status = KTLSX_DOOR_SHUTTING_DOWN, snprintf(why, cap, "the daemon is stopping");
    } else if (!p) {
        status = KTLSX_DOOR_NO_PROFILE;
        snprintf(why, cap, "no %s profile '%s'", req->role == KTLSX_SERVER ? "server" : "client", req->profile);
    } else if (!kd_profile_allows(p, c->uid, c->gid, c->groups, c->ngroups)) {
        status = KTLSX_DOOR_DENIED;
        snprintf(why, cap, "uid %u (gid %u) may not use profile '%s'", (unsigned)c->uid, (unsigned)c->gid,
                 req->profile);
    } else if (fd < 0) {
        status = KTLSX_DOOR_BAD_SOCKET, snprintf(why, cap, "no socket came with the request");
    } else if ((problem = socket_problem(fd)) != NULL) {
        status = KTLSX_DOOR_BAD_SOCKET, snprintf(why, cap, "%s", problem);
    } else if (!uid_acquire(c->uid, HANDSHAKE_RUNNING, conf->max_per_uid)) {
        status = KTLSX_DOOR_BUSY;
        snprintf(why, cap, "uid %u has %zu handshakes in flight (max_handshakes_per_uid)", (unsigned)c->uid,
                 conf->max_per_uid);
    } else {
        int timeout = req->timeout_ms == 0 ? conf->handshake_timeout_ms
                      : req->timeout_ms > (uint32_t)conf->max_handshake_timeout_ms ? conf->max_handshake_timeout_ms
                                                                                   : (int)req->timeout_ms;
        c->sock = ktlsx_socket_new(p->cfg, fd,
                                   req->role == KTLSX_CLIENT && req->server_name[0] ? req->server_name : NULL);
        if (!c->sock || ktlsx_socket_set_timeouts(c->sock, timeout, 0) < 0) {
            if (c->sock) ktlsx_socket_free(c->sock);
            c->sock = NULL;
            uid_release(c->uid, HANDSHAKE_RUNNING);
            status = KTLSX_DOOR_INTERNAL, snprintf(why, cap, "out of memory");
        } else {
            c->export_state = p->export_state;
        }
    }
    kd_conf_drop();
    return status;
}

static void start(struct client *c, const struct ktlsx_door_request *req, int fd)
{
    char why[KTLSX_DOOR_MESSAGE_MAX];
    c->app = fd;
    snprintf(c->profile, sizeof c->profile, "%s", req->profile);
    int status = begin(c, req, fd, why, sizeof why);
    if (status != KTLSX_DOOR_OK) return refuse(c, status, "%s", why);
    door.inflight++;
    atomic_fetch_add(&shared.inflight, 1);
    c->started = kd_now_ms();
    c->state = HANDSHAKE;
    (void)set_deadline(c, c->started + ktlsx_socket_timeout_ms(c->sock)); /* in the heap already: cannot fail */
    c->role = req->role;
    snprintf(c->server_name, sizeof c->server_name, "%s", req->server_name);
    snprintf(c->alpn, sizeof c->alpn, "%s", req->alpn);
    c->app_events = EPOLLIN;
    if (kd_watch_fd(fd, EPOLL_CTL_ADD, EPOLLIN, &c->app_w) < 0 ||
        kd_watch_fd(c->door, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP, &c->door_w) < 0) {
        struct ktlsx_daemon_result res = { .status = KTLSX_DOOR_INTERNAL };
        snprintf(res.message, sizeof res.message, "epoll: %s", strerror(errno));
        handshake_over(c);
        return answer(c, &res, NULL, 0);
    }
    drive(c); /* the peer's first flight may be there already */
}

static void read_request(struct client *c)
{
    uint8_t buf[KTLSX_DOOR_REQUEST_MAX + 1]; /* one more: a longer message is cut and refused */
    struct ktlsx_door_request req;
    const char *why = NULL;
    int fd = -1;
    if (c->app >= 0) close(c->app); /* the previous exchange's socket, if a refusal kept it */
    c->app = -1;
    c->profile[0] = '\0';
    long n = ktlsx_recv_fd(c->door, buf, sizeof buf, &fd, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EMSGSIZE)
        return refuse(c, KTLSX_DOOR_BAD_REQUEST, "request over %d bytes", KTLSX_DOOR_REQUEST_MAX);
    if (n <= 0) return client_free(c); /* the caller left */
    if (ktlsx_door_request_decode(buf, (size_t)n, &req, &why) < 0) {
        c->app = fd;
        return refuse(c, KTLSX_DOOR_BAD_REQUEST, "%s", why);
    }
    start(c, &req, fd);
}

static void on_door(struct kd_watch *w, uint32_t events)
{
    struct client *c = (struct client *)((char *)w - offsetof(struct client, door_w));
    if (c->dead) return;
    if (c->state == WAIT_REQUEST) return read_request(c);
    if (c->state == HANDSHAKE) { /* hung up, or spoke out of turn: the exchange ends here */
        if (!(events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) && !door_has_message(c->door))
            return; /* a wakeup with nothing to read (seen from io_uring polls on 7.3, dozens of handshakes) */
        kd_log(KTLSX_LOG_INFO, "uid %u pid %d profile '%s': caller %s during the handshake: cut", (unsigned)c->uid,
               (int)c->pid, c->profile, events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR) ? "left" : "sent again");
        kd_stats_handshake(KD_DOOR_LOCAL, c->profile, KTLSX_DOOR_PEER_CLOSED, 0, false, kd_now_ms() - c->started);
        return client_free(c);
    }
    if (ktlsx_send_fd(c->door, c->answer, c->answer_len, -1, MSG_DONTWAIT) == 0) {
        OPENSSL_clear_free(c->answer, c->answer_len);
        c->answer = NULL;
        if (door.closing) return client_free(c);
        return wait_request(c);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) client_free(c);
}

static void on_app(struct kd_watch *w, uint32_t events)
{
    (void)events;
    struct client *c = (struct client *)((char *)w - offsetof(struct client, app_w));
    if (!c->dead && c->state == HANDSHAKE) drive(c);
}

/* A door connection turned away at accept: say why in one answer rather than
 * leave the caller guessing. */
static void turn_away(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void turn_away(int fd, const char *fmt, ...)
{
    struct ktlsx_daemon_result res = { .status = KTLSX_DOOR_BUSY };
    uint8_t buf[KTLSX_DOOR_ANSWER_HEADER + KTLSX_DOOR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof res.message, fmt, ap);
    va_end(ap);
    long n = ktlsx_door_answer_encode(&res, NULL, 0, buf, sizeof buf, NULL);
    if (n > 0) (void)ktlsx_send_fd(fd, buf, (size_t)n, -1, MSG_DONTWAIT);
    kd_stats_refused(KD_DOOR_LOCAL, "", KTLSX_DOOR_BUSY);
    close(fd);
}

static void on_listen(struct kd_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    for (int i = 0; i < 64; i++) { /* then let the others run */
        int fd = accept4(shared.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) { /* EAGAIN: another worker took it */
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                kd_log(KTLSX_LOG_WARNING, "door: accept: %s", strerror(errno));
            return;
        }
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            close(fd);
            continue;
        }
        const struct kd_conf *conf = kd_conf_hold();
        size_t max_clients = conf->max_clients, per_uid = conf->max_clients_per_uid;
        int request_ms = conf->request_timeout_ms;
        kd_conf_drop();
        size_t open = atomic_fetch_add(&shared.nclients, 1);
        if (open >= max_clients) {
            atomic_fetch_sub(&shared.nclients, 1);
            turn_away(fd, "%zu door connections open (max_clients)", open);
            continue;
        }
        if (!uid_acquire(cred.uid, DOOR_CONN, per_uid)) {
            atomic_fetch_sub(&shared.nclients, 1);
            turn_away(fd, "uid %u has %zu door connections open (max_clients_per_uid)", (unsigned)cred.uid, per_uid);
            continue;
        }
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            atomic_fetch_sub(&shared.nclients, 1);
            uid_release(cred.uid, DOOR_CONN);
            turn_away(fd, "out of memory");
            continue;
        }
        c->door_w.fn = on_door;
        c->app_w.fn = on_app;
        c->door = fd;
        c->app = -1;
        c->uid = cred.uid;
        c->gid = cred.gid;
        c->pid = cred.pid;
        /* Supplementary groups (Linux 4.13+); a caller in more than KD_MAX_GROUPS is judged on the
         * first ones and its primary group (ERANGE), as is any caller on an older kernel. */
        len = sizeof c->groups;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0) c->ngroups = len / sizeof(gid_t);
        else if (errno == ERANGE) c->ngroups = KD_MAX_GROUPS;
        c->next = door.clients;
        if (door.clients) door.clients->prev = c;
        door.clients = c;
        door.nclients++;
        c->state = WAIT_REQUEST;
        if (set_deadline(c, kd_now_ms() + request_ms) < 0 || kd_watch_fd(fd, EPOLL_CTL_ADD, EPOLLIN, &c->door_w) < 0)
            client_free(c);
    }
}

int kd_door_listen(const struct kd_conf *conf)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(shared.path, sizeof shared.path, "%s", conf->socket_path);
    memcpy(sa.sun_path, shared.path, strlen(shared.path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return kd_log(KTLSX_LOG_ERROR, "door: socket: %s", strerror(errno)), -1;
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    if (rc < 0 && errno == EADDRINUSE) {
        /* A socket file left by a daemon that died: take it over only if nobody answers on it. */
        int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        int alive = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0) close(probe);
        if (alive) {
            kd_log(KTLSX_LOG_ERROR, "door: %s: another daemon answers there", shared.path);
            return close(fd), -1;
        }
        unlink(shared.path);
        rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    /* Anyone may knock: who may use which profile is SO_PEERCRED's business. */
    if (rc < 0 || chmod(shared.path, 0666) < 0 || listen(fd, SOMAXCONN) < 0) {
        kd_log(KTLSX_LOG_ERROR, "door: %s: %s", shared.path, strerror(errno));
        return close(fd), -1;
    }
    shared.listen_fd = fd;
    kd_log(KTLSX_LOG_INFO, "door open at %s (max_clients %zu, max_handshakes_per_uid %zu)", shared.path,
           conf->max_clients, conf->max_per_uid);
    return 0;
}

int kd_door_adopt(int fd, const char *path)
{
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
        kd_log(KTLSX_LOG_ERROR, "door: the socket systemd passed (fd %d) is not a unix SOCK_SEQPACKET socket", fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -1;
    shared.listen_fd = fd;
    shared.adopted = true;
    snprintf(shared.path, sizeof shared.path, "%s", path);
    kd_log(KTLSX_LOG_INFO, "door: listening on the socket systemd passed (%s)", path);
    return 0;
}

int kd_door_attach(void)
{
    door.listen_w.fn = on_listen;
    if (kd_watch_fd(shared.listen_fd, EPOLL_CTL_ADD, EPOLLIN, &door.listen_w) < 0) {
        kd_log(KTLSX_LOG_ERROR, "door: watch: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void kd_door_stop(void)
{
    if (atomic_exchange(&shared.closing, true)) return;
    if (!shared.adopted) unlink(shared.path); /* new callers are refused at once; the socket closes when the workers are done */
}

void kd_door_unlisten(void)
{
    if (shared.listen_fd >= 0) close(shared.listen_fd);
    shared.listen_fd = -1;
}

void kd_door_close(void)
{
    if (door.closing) return;
    door.closing = true;
    (void)kd_watch_fd(shared.listen_fd, EPOLL_CTL_DEL, 0, &door.listen_w);
    for (struct client *c = door.clients, *next; c; c = next) {
        next = c->next;
        if (c->state == WAIT_REQUEST) read_request(c); /* a request already sent: answered "shutting down" */
    }
    for (struct client *c = door.clients, *next; c; c = next) {
        next = c->next;
        if (c->state == WAIT_REQUEST) client_free(c);
    }
    if (door.nclients)
        kd_log(KTLSX_LOG_INFO, "door closed on this worker: %zu handshakes in flight and %zu answers unsent finish "
               "(each by its deadline)", door.inflight, door.nclients - door.inflight);
}

int kd_door_tick(void)
{
    int64_t now = kd_now_ms();
    while (door.heap_len > 0 && door.heap[0]->deadline <= now) {
        struct client *c = door.heap[0];
        if (c->state == HANDSHAKE) {
            int left = ktlsx_socket_timeout_ms(c->sock);
            if (left == 0) drive(c); /* the step sees the deadline and says TIMEOUT: the answer moves the deadline */
            if (c->heap_at && c->state == HANDSHAKE && c->deadline <= now) /* not over yet (ms rounding): look again */
                (void)set_deadline(c, now + (left > 0 ? left : 1));
        } else if (c->state == WAIT_REQUEST && door_has_message(c->door)) {
            /* Not idle: its request is there, but this worker was busy past the deadline (a long
             * batch of handshake steps, e.g. dozens of handshakes under emulation) and the event
             * loop has not handed us the readiness yet.  The next dispatch reads it. */
            if (set_deadline(c, now + request_timeout_ms()) < 0) client_free(c);
        } else {
            kd_log(KTLSX_LOG_DEBUG, "uid %u pid %d: door connection idle: closed", (unsigned)c->uid, (int)c->pid);
            client_free(c);
        }
    }
    if (door.heap_len == 0) return -1;
    int64_t left = door.heap[0]->deadline - now;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

size_t kd_door_busy(void) { return door.nclients; }
size_t kd_door_inflight(void) { return atomic_load(&shared.inflight); }
size_t kd_door_open_total(void) { return atomic_load(&shared.nclients); }
