/* libktlsx-preload.so: TLS on the sockets that the rules name, for an
 * unmodified program (docs/preload.md).
 *
 * Interposed (exported through preload/preload.map, nothing else is):
 *   listen                    marks a listener whose port has a serve rule
 *   accept, accept4           server handshake before the program sees the fd
 *   connect, getaddrinfo      client handshake; the name from the rule or from getaddrinfo
 *   read, recv, recvfrom, recvmsg, readv
 *   write, send, sendto, sendmsg, writev, sendfile, sendfile64, splice
 *   shutdown, close, dup, dup2, dup3, fcntl / fcntl64 (F_DUPFD, F_DUPFD_CLOEXEC), socket
 *   poll, ppoll, select, pselect, epoll_ctl, epoll_wait, epoll_pwait   readiness the shim holds
 *   getsockopt (SO_ERROR after a nonblocking connect), fdopen (stdio through the shim)
 * An fd with no state in the table costs one atomic load and goes to libc.
 *
 * Recursion: libktlsx is linked into this .so and calls send/recv/poll/close
 * through libc's names, which resolve to the ones interposed here.  A
 * thread-local counter (in_lib) is raised around every call into the
 * library; while it is up, every interposed call goes straight to libc.  That
 * costs one TLS-variable load per call and needs no change in the library,
 * and it also covers what libcrypto does while loading keys (read on the
 * certificate files) and the door connection of ktlsx_daemon_handshake.
 * The state's own fd (priv_fd) is never in the table, so even a call that
 * slipped past the guard would find no state for it.
 *
 * Blocking: a call on a blocking fd waits in poll(2) outside the state's
 * lock, so one thread reading and another writing the same connection do not
 * stop each other.  Nonblocking fds (O_NONBLOCK or MSG_DONTWAIT) get EAGAIN
 * from the library's step calls. */
#include "preload.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the real calls ---- */
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_sendfile)(int, int, off_t *, size_t);
static ssize_t (*real_sendfile64)(int, int, off_t *, size_t);
static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);
static int (*real_listen)(int, int);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static int (*real_socket)(int, int, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_shutdown)(int, int);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);
static FILE *(*real_fdopen)(int, const char *);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_getaddrinfo)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

#define REAL(name) (real_##name != NULL ? real_##name : resolve_##name())
#define RESOLVER(name)                                                              \
    static __typeof__(real_##name) resolve_##name(void)                            \
    {                                                                              \
        __typeof__(real_##name) f;                                                  \
        *(void **)(&f) = dlsym(RTLD_NEXT, #name);                                   \
        if (f == NULL) abort(); /* libc without it: nothing sensible to do */      \
        real_##name = f;                                                            \
        return f;                                                                   \
    }
RESOLVER(read) RESOLVER(write) RESOLVER(recv) RESOLVER(send) RESOLVER(recvfrom) RESOLVER(sendto)
RESOLVER(recvmsg) RESOLVER(sendmsg) RESOLVER(readv) RESOLVER(writev) RESOLVER(sendfile) RESOLVER(sendfile64)
RESOLVER(splice) RESOLVER(poll) RESOLVER(ppoll) RESOLVER(select) RESOLVER(pselect) RESOLVER(epoll_ctl) RESOLVER(epoll_wait) RESOLVER(epoll_pwait) RESOLVER(socket) RESOLVER(listen) RESOLVER(accept) RESOLVER(accept4) RESOLVER(connect) RESOLVER(shutdown)
RESOLVER(close) RESOLVER(dup) RESOLVER(dup2) RESOLVER(dup3) RESOLVER(fcntl) RESOLVER(fcntl64) RESOLVER(getaddrinfo) RESOLVER(fdopen) RESOLVER(getsockopt)

/* ---- state ---- */
static __thread int in_lib __attribute__((tls_model("initial-exec")));
static struct pl_rules rules;
static int active;     /* rules loaded and the table set up */
static int n_connect;  /* connect rules (connect() does nothing more without one) */
static atomic_int ktls_logged;
static atomic_int sendfile_logged;

#define LIB_ENTER() (in_lib++)
#define LIB_LEAVE() (in_lib--)

static void pl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pl_log(int level, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    if (level > rules.log_level) return;
    int n = snprintf(line, sizeof line, "ktlsx-preload[%d]: ", (int)getpid());
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = REAL(write)(2, line, (size_t)n);
    (void)w;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void atfork_parent(void) { pl_fd_mark_forked(); }
static void atfork_child(void);

/* The library's log lines go to the shim's sink; "kernel TLS unavailable" comes once from the shim
 * (note_ktls), not once per connection. */
static void lib_log(void *arg, int level, const char *line)
{
    (void)arg;
    if (level >= KTLSX_LOG_WARNING && strstr(line, "kernel TLS") != NULL) level = KTLSX_LOG_INFO;
    pl_log(level, "libktlsx: %s", line);
}

__attribute__((constructor)) static void pl_init(void)
{
    char err[1024];
    if (pl_rules_from_env(&rules, getenv, err, sizeof err) < 0 || pl_rules_build(&rules, err, sizeof err) < 0) {
        fprintf(stderr, "ktlsx-preload: %s\n", err);
        exit(1); /* never a silent plaintext run */
    }
    if (rules.n == 0) return; /* no rules: inert, every call goes to libc after one load */
    if (pl_fd_init() < 0) {
        fprintf(stderr, "ktlsx-preload: cannot map the fd table\n");
        exit(1);
    }
    for (size_t i = 0; i < rules.n; i++) {
        n_connect += rules.v[i].kind == PL_CONNECT;
        if (rules.v[i].cfg != NULL) (void)ktlsx_config_set_log(rules.v[i].cfg, lib_log, NULL);
    }
    pthread_atfork(NULL, atfork_parent, atfork_child);
    active = 1;
    pl_log(KTLSX_LOG_INFO, "%zu rule(s), mode %s, handshake deadline %d ms", rules.n, pl_mode_name(rules.mode),
           rules.hs_ms);
}

/* The fd's state, or NULL: the one check on every interposed call. */
static inline struct pl_tls *lookup(int fd)
{
    if (in_lib) return NULL;
    return pl_fd_get(fd);
}

static int fd_nonblocking(int fd)
{
    int fl = REAL(fcntl)(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

/* Wait until fd is ready for `events`; -1 with errno (EINTR goes back to the program). */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int r = REAL(poll)(&p, 1, timeout_ms);
    if (r < 0) return -1;
    if (r == 0) { errno = ETIMEDOUT; return -1; }
    return 0;
}

static int io_errno(struct pl_tls *t, int st)
{
    if (st == KTLSX_IO_TIMEOUT) return ETIMEDOUT;
    pl_log(KTLSX_LOG_INFO, "connection failed: %s", ktlsx_socket_error(t->sock));
    t->failed = 1;
    return ECONNRESET;
}

#define PL_MAX_PENDING 1024

struct pl_done {
    int fd;
    struct pl_tls *t;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct pl_done *next;
};

struct pl_listener {
    pthread_mutex_t lock;
    int refs;                       /* the table's (1) + one per handshake thread */
    int closed;                     /* the program closed the listener */
    const struct pl_rule *rule;
    int wake_fd;                    /* this process's eventfd: readable while head != NULL (-1: none) */
    int woken;                      /* wake_fd holds a count */
    int pending;                    /* handshakes running */
    struct pl_done *head, *tail;    /* finished, in order */
};

/* ---- the handshakes ---- */

static void note_ktls(ktlsx_socket *s, const char *why)
{
    int k = ktlsx_socket_ktls(s);
    if (k == (KTLSX_KTLS_TX | KTLSX_KTLS_RX)) return;
    if (why == NULL || *why == '\0') why = ktlsx_socket_ktls_why(s);
    if (why == NULL || *why == '\0') why = "not installed";
    if (atomic_exchange(&ktls_logged, 1) == 0)
        pl_log(KTLSX_LOG_WARNING, "kernel TLS %s (%s): the shim's user-space record layer carries the data",
               ktlsx_socket_ktls_name(s), why);
}

/* Run the handshake on accepted/connected `fd` by `rule`, deadline `ms`.
 * Returns the new state (not yet in the table) or NULL (logged; fd untouched). */
static struct pl_tls *handshake(int fd, const struct pl_rule *rule, int ms, const char *server_name)
{
    enum ktlsx_role role = rule->kind == PL_SERVE ? KTLSX_SERVER : KTLSX_CLIENT;
    int priv = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 0);
    ktlsx_socket *s = NULL;
    char ktls_why[KTLSX_DOOR_MESSAGE_MAX + 16] = "";
    if (priv < 0) {
        pl_log(KTLSX_LOG_ERROR, "%s: no fd for the connection: %s", rule->where, strerror(errno));
        return NULL;
    }
    LIB_ENTER();
    int use_daemon = rules.mode == PL_MODE_DAEMON || (rules.mode == PL_MODE_AUTO && rule->profile[0] != '\0');
    if (use_daemon) {
        struct ktlsx_daemon_result res;
        const char *door = rules.daemon[0] ? rules.daemon : NULL;
        ktlsx_conn *conn = ktlsx_daemon_handshake(door, priv, role, rule->profile, server_name,
                                                  rule->alpn[0] ? rule->alpn : NULL, ms, &res);
        if (conn != NULL) {
            snprintf(ktls_why, sizeof ktls_why, "ktlsxd: %s", res.ktls_why[0] ? res.ktls_why : "no kernel TLS");
            s = ktlsx_socket_wrap(conn, priv);
            if (s == NULL) ktlsx_conn_free(conn);
        } else if (res.status == KTLSX_DOOR_UNREACHABLE && rules.mode == PL_MODE_AUTO && rule->cfg != NULL) {
            pl_log(KTLSX_LOG_INFO, "%s: ktlsxd unreachable (%s): in-process handshake", rule->where, res.message);
            use_daemon = 0;
        } else if (res.status == KTLSX_DOOR_OK) {
            pl_log(KTLSX_LOG_ERROR, "%s: profile '%s' hands back no TLS state (set export_state = yes): connection "
                   "refused", rule->where, rule->profile);
        } else {
            pl_log(KTLSX_LOG_INFO, "%s: handshake through ktlsxd failed: %s: %s", rule->where,
                   ktlsx_door_status_name(res.status), res.message);
        }
    }
    if (!use_daemon) {
        s = rule->cfg != NULL ? ktlsx_socket_new(rule->cfg, priv, server_name) : NULL;
        if (s != NULL && ktlsx_socket_set_timeouts(s, ms, 0) == 0) {
            int st = ktlsx_socket_handshake(s);
            if (st != KTLSX_IO_OK) {
                pl_log(KTLSX_LOG_INFO, "%s: handshake failed: %s", rule->where, ktlsx_socket_error(s));
                ktlsx_socket_free(s);
                s = NULL;
            }
        } else if (s != NULL) {
            ktlsx_socket_free(s);
            s = NULL;
        }
    }
    LIB_LEAVE();
    if (s == NULL) {
        REAL(close)(priv);
        return NULL;
    }
    struct pl_tls *t = calloc(1, sizeof *t);
    if (t == NULL) {
        LIB_ENTER();
        ktlsx_socket_free(s);
        LIB_LEAVE();
        REAL(close)(priv);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->wake_fd = -1;
    t->priv_fd = priv;
    t->sock = s;
    t->rule = rule;
    t->ktls = ktlsx_socket_ktls(s);
    note_ktls(s, ktls_why);
    LIB_ENTER();
    pl_log(KTLSX_LOG_DEBUG, "%s: %s %s %s", rule->where, role == KTLSX_SERVER ? "accepted" : "connected",
           ktlsx_version_name(ktlsx_socket_conn(s)), ktlsx_cipher_name(ktlsx_socket_conn(s)));
    LIB_LEAVE();
    return t;
}

static uint16_t sock_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    if (sa->sa_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return 0;
}

static int is_tcp(int fd)
{
    int type = 0;
    socklen_t l = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM;
}

/* A new socket never carries an old state (its number may be one closed unseen). */
EXPORT int socket(int domain, int type, int protocol)
{
    int fd = REAL(socket)(domain, type, protocol);
    if (fd >= 0 && active && !in_lib) pl_fd_forget(fd);
    return fd;
}

EXPORT int listen(int fd, int backlog)
{
    int rc = REAL(listen)(fd, backlog);
    if (rc < 0 || !active || in_lib || pl_fd_get(fd) != NULL) return rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || !is_tcp(fd)) return rc;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return rc;
    const struct pl_rule *rule = pl_rules_serve(&rules, sock_port((struct sockaddr *)&ss));
    if (rule == NULL) return rc;
    struct pl_tls *t = calloc(1, sizeof *t);
    if (t == NULL) {
        pl_log(KTLSX_LOG_ERROR, "%s: out of memory: refusing to listen in plaintext", rule->where);
        errno = ENOMEM;
        return -1;
    }
    struct pl_listener *l = calloc(1, sizeof *l);
    if (l == NULL) {
        free(t);
        pl_log(KTLSX_LOG_ERROR, "%s: out of memory: refusing to listen in plaintext", rule->where);
        errno = ENOMEM;
        return -1;
    }
    pthread_mutex_init(&l->lock, NULL);
    l->refs = 1;
    l->rule = rule;
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        int e = errno;
        pthread_mutex_destroy(&l->lock);
        free(l);
        free(t);
        pl_log(KTLSX_LOG_ERROR, "%s: eventfd: %s: refusing to listen in plaintext", rule->where, strerror(e));
        errno = e;
        return -1;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->priv_fd = -1;
    t->wake_fd = -1;
    t->rule = rule;
    t->lst = l;
    pl_fd_attach(fd, t);
    pl_log(KTLSX_LOG_INFO, "%s: TLS on port %u (fd %d)", rule->where, (unsigned)rule->port, fd);
    return rc;
}

/* ---- TLS listeners: handshakes off the program's thread ----
 *
 * Every connection a TLS listener gets runs its handshake on a shim thread of
 * its own (bounded by the handshake deadline), so a peer that stalls never
 * holds up the program or the other peers, on blocking and nonblocking
 * listeners alike.  accept() hands out finished connections only; a failed
 * handshake is closed on its thread and never reaches the program.
 *
 * The program learns that a finished connection is ready through the
 * listener's "wake fd": an eventfd of this process, readable exactly while
 * this process holds finished connections for that listener.  Wherever the
 * program waits for the listener it also waits for the wake fd:
 *   epoll      epoll_ctl on the listener registers the wake fd in the same set
 *              with the program's own data (and EPOLLET / EPOLLONESHOT), so
 *              any epoll_wait variant reports "listener readable";
 *   poll, ppoll, select, pselect   the shim adds the wake fd to the set and
 *              reports POLLIN on the listener;
 *   a blocking accept   waits in ppoll for the listener or the wake fd.
 * The wake fd is per process: after fork the child makes its own (and drops
 * the parent's finished connections, which the parent hands out).  So
 * prefork servers (nginx workers, several processes accepting on one
 * inherited listener, with EPOLLEXCLUSIVE or an accept mutex) work: each
 * process runs the handshakes of the connections it accepted and is woken
 * for those only. */
static void listener_unref_locked(struct pl_listener *l, int *gone)
{
    *gone = --l->refs == 0;
}

static void listener_free(struct pl_listener *l)
{
    struct pl_done *d = l->head;
    while (d != NULL) {
        struct pl_done *n = d->next;
        pl_tls_free(d->t);
        REAL(close)(d->fd);
        free(d);
        d = n;
    }
    if (l->wake_fd >= 0) REAL(close)(l->wake_fd);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

void pl_listener_release(struct pl_listener *l)
{
    int gone;
    pthread_mutex_lock(&l->lock);
    l->closed = 1;
    /* closing the wake fd takes it out of every epoll set of this process (no stale events) */
    if (l->wake_fd >= 0) REAL(close)(l->wake_fd);
    l->wake_fd = -1;
    listener_unref_locked(l, &gone);
    pthread_mutex_unlock(&l->lock);
    if (gone) listener_free(l);
}

static void after_fork_one(struct pl_listener *l)
{
    /* The child has copies of the finished connections (the parent hands them out) and of the parent's
     * wake fd, and none of the threads: forget them here and make the child's own wake fd. */
    pthread_mutex_init(&l->lock, NULL);
    for (struct pl_done *d = l->head; d != NULL;) {
        struct pl_done *n = d->next;
        REAL(close)(d->fd);
        if (d->t->priv_fd >= 0) REAL(close)(d->t->priv_fd);
        d->t->priv_fd = -1;
        free(d); /* the state's memory is the parent's copy: leaked in the child, never used */
        d = n;
    }
    l->head = l->tail = NULL;
    if (l->wake_fd >= 0) REAL(close)(l->wake_fd);
    l->wake_fd = l->closed ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->woken = 0;
    l->refs -= l->pending;
    l->pending = 0;
}

void pl_listeners_after_fork(void) { pl_fd_each_listener(after_fork_one); }

/* The wake fd follows head: readable while finished connections wait (lock held). */
static void wake_sync_locked(struct pl_listener *l)
{
    uint64_t v = 1;
    if (l->wake_fd < 0) return;
    if (l->head != NULL && !l->woken) {
        if (REAL(write)(l->wake_fd, &v, sizeof v) == (ssize_t)sizeof v) l->woken = 1;
    } else if (l->head == NULL && l->woken) {
        if (REAL(read)(l->wake_fd, &v, sizeof v) == (ssize_t)sizeof v || errno == EAGAIN) l->woken = 0;
    }
}

struct hs_job {
    struct pl_listener *l;
    int fd;
    struct sockaddr_storage peer;
    socklen_t peer_len;
};

static void *hs_thread(void *arg)
{
    struct hs_job *job = arg;
    struct pl_listener *l = job->l;
    struct pl_tls *t = handshake(job->fd, l->rule, rules.hs_ms, NULL);
    struct pl_done *d = t != NULL ? calloc(1, sizeof *d) : NULL;
    int gone, keep = 0;
    pthread_mutex_lock(&l->lock);
    l->pending--;
    if (d != NULL && !l->closed) {
        d->fd = job->fd;
        d->t = t;
        d->peer = job->peer;
        d->peer_len = job->peer_len;
        if (l->tail) l->tail->next = d;
        else l->head = d;
        l->tail = d;
        keep = 1;
        wake_sync_locked(l);
    }
    listener_unref_locked(l, &gone);
    pthread_mutex_unlock(&l->lock);
    if (!keep) {
        pl_tls_free(t);
        free(d);
        REAL(close)(job->fd);
    }
    if (gone) listener_free(l);
    free(job);
    return NULL;
}

/* A shim thread with every signal blocked: process-directed signals go to the program's threads (a
 * server that sleeps in epoll_wait must see its EINTR). */
static int start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    pthread_attr_t attr;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Start the handshake of raw connection fd on its own thread (lock held). */
static void start_handshake_locked(struct pl_listener *l, int fd, const struct sockaddr_storage *peer, socklen_t plen)
{
    struct hs_job *job = NULL;
    if (l->pending >= PL_MAX_PENDING || (job = calloc(1, sizeof *job)) == NULL) {
        pl_log(KTLSX_LOG_WARNING, "%s: %d handshakes in flight: connection dropped", l->rule->where, l->pending);
        free(job);
        REAL(close)(fd);
        return;
    }
    job->l = l;
    job->fd = fd;
    job->peer = *peer;
    job->peer_len = plen;
    l->pending++;
    l->refs++;
    int rc = start_thread(hs_thread, job);
    if (rc != 0) {
        pl_log(KTLSX_LOG_WARNING, "%s: no thread for a handshake (%s): connection dropped", l->rule->where, strerror(rc));
        l->pending--;
        l->refs--;
        free(job);
        REAL(close)(fd);
    }
}

/* Hand the program a finished connection (lock held). */
static int give_locked(struct pl_listener *l, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    struct pl_done *d = l->head;
    l->head = d->next;
    if (l->head == NULL) l->tail = NULL;
    wake_sync_locked(l);
    int fd = d->fd;
    if (addr != NULL && addrlen != NULL) {
        memcpy(addr, &d->peer, d->peer_len < *addrlen ? d->peer_len : *addrlen);
        *addrlen = d->peer_len;
    }
    /* the flags the program asked of accept4 */
    int fl = REAL(fcntl)(fd, F_GETFL);
    if (fl >= 0) REAL(fcntl)(fd, F_SETFL, (flags & SOCK_NONBLOCK) ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
    REAL(fcntl)(fd, F_SETFD, (flags & SOCK_CLOEXEC) ? FD_CLOEXEC : 0);
    if (pl_fd_attach(fd, d->t) < 0) {
        pl_tls_free(d->t);
        REAL(close)(fd);
        fd = -1;
    }
    free(d);
    return fd;
}

static int tls_accept(struct pl_tls *lt, int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    struct pl_listener *l = lt->lst;
    int nb = fd_nonblocking(fd);
    for (;;) {
        pthread_mutex_lock(&l->lock);
        if (!nb && l->head != NULL) {
            int c = give_locked(l, addr, addrlen, flags);
            pthread_mutex_unlock(&l->lock);
            if (c >= 0) return c;
            continue;
        }
        int wake = l->wake_fd;
        pthread_mutex_unlock(&l->lock);
        if (!nb && wake >= 0) {
            /* blocking listener: wait for a connection or for a finished handshake of this process */
            struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake, .events = POLLIN}};
            if (REAL(poll)(p, 2, -1) < 0) return -1;
            if (!(p[0].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) continue;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int c = REAL(accept4)(fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        pthread_mutex_lock(&l->lock);
        if (c < 0) {
            int e = errno;
            if ((e == EAGAIN || e == EWOULDBLOCK) && l->head != NULL) {
                int g = give_locked(l, addr, addrlen, flags);
                pthread_mutex_unlock(&l->lock);
                if (g >= 0) return g;
                continue;
            }
            pthread_mutex_unlock(&l->lock);
            errno = e;
            return -1;
        }
        start_handshake_locked(l, c, &peer, plen);
        pthread_mutex_unlock(&l->lock);
    }
}

/* epoll_ctl on a TLS listener: the same operation for its wake fd, with the program's data. */
static void listener_epoll_ctl(struct pl_listener *l, int epfd, int op, const struct epoll_event *ev)
{
    pthread_mutex_lock(&l->lock);
    int wake = l->wake_fd;
    pthread_mutex_unlock(&l->lock);
    if (wake < 0) return;
    if (op == EPOLL_CTL_DEL || ev == NULL || !(ev->events & EPOLLIN)) {
        (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, wake, NULL);
        return;
    }
    struct epoll_event w = {.events = EPOLLIN | (ev->events & (EPOLLET | EPOLLONESHOT)), .data = ev->data};
    if (REAL(epoll_ctl)(epfd, op, wake, &w) < 0) {
        int e = errno;
        if (op == EPOLL_CTL_MOD && e == ENOENT) (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, wake, &w);
        else if (op == EPOLL_CTL_ADD && e == EEXIST) (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, wake, &w);
        else pl_log(KTLSX_LOG_ERROR, "%s: epoll_ctl of the wake fd: %s", l->rule->where, strerror(e));
    }
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    struct pl_tls *l = lookup(fd);
    if (l == NULL || l->lst == NULL) {
        int c = REAL(accept)(fd, addr, addrlen);
        if (c >= 0 && active && !in_lib) pl_fd_forget(c);
        return c;
    }
    return tls_accept(l, fd, addr, addrlen, 0);
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    struct pl_tls *l = lookup(fd);
    if (l == NULL || l->lst == NULL) {
        int c = REAL(accept4)(fd, addr, addrlen, flags);
        if (c >= 0 && active && !in_lib) pl_fd_forget(c);
        return c;
    }
    return tls_accept(l, fd, addr, addrlen, flags);
}

/* ---- names from getaddrinfo, for SNI and for rules written with a host name ---- */
#define NAME_SLOTS 64
static struct {
    char addr[INET6_ADDRSTRLEN];
    char name[KTLSX_DOOR_HOST_MAX + 1];
} names[NAME_SLOTS];
static unsigned name_next;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static int numeric_host(const struct sockaddr *sa, char *buf, size_t cap)
{
    const void *a = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
                                              : (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    return inet_ntop(sa->sa_family, a, buf, (socklen_t)cap) ? 0 : -1;
}

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    int rc = REAL(getaddrinfo)(node, service, hints, res);
    if (rc != 0 || !active || n_connect == 0 || in_lib || node == NULL || strlen(node) > KTLSX_DOOR_HOST_MAX)
        return rc;
    struct in6_addr tmp;
    if (inet_pton(AF_INET, node, &tmp) == 1 || inet_pton(AF_INET6, node, &tmp) == 1) return rc;
    pthread_mutex_lock(&names_lock);
    for (const struct addrinfo *ai = *res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        char a[INET6_ADDRSTRLEN];
        if (numeric_host(ai->ai_addr, a, sizeof a) < 0) continue;
        unsigned i = name_next++ % NAME_SLOTS;
        snprintf(names[i].addr, sizeof names[i].addr, "%s", a);
        snprintf(names[i].name, sizeof names[i].name, "%s", node);
    }
    pthread_mutex_unlock(&names_lock);
    return rc;
}

static int name_of(const char *addr, char *name, size_t cap)
{
    int found = 0;
    pthread_mutex_lock(&names_lock);
    for (unsigned k = 0; k < NAME_SLOTS && !found; k++) {
        unsigned i = (name_next - 1 - k) % NAME_SLOTS; /* newest first */
        if (names[i].addr[0] && strcmp(names[i].addr, addr) == 0) {
            snprintf(name, cap, "%s", names[i].name);
            found = 1;
        }
    }
    pthread_mutex_unlock(&names_lock);
    return found;
}

/* ---- nonblocking connect ----
 *
 * connect() on a nonblocking socket with a connect rule returns EINPROGRESS as usual; a shim thread
 * waits for the TCP connection and runs the handshake (bounded by the handshake deadline) on a dup
 * of the socket.  Meanwhile the fd has a state with sock NULL and `connecting` set: reads and writes
 * give EAGAIN (a blocking caller waits for the end of the handshake), and the program's wait for
 * writability is the handshake's end: poll/ppoll/select/pselect wait on the state's wake fd instead
 * of the socket, epoll registrations of the socket leave out EPOLLIN/EPOLLOUT and register the wake
 * fd under a shim tag, which epoll_wait / epoll_pwait turn back into the program's event (EPOLLOUT,
 * or EPOLLERR|EPOLLHUP when it failed) and the program's own registration.  getsockopt(SO_ERROR)
 * then says how it ended (0, or the TCP error, ECONNREFUSED for a failed handshake, ETIMEDOUT). */
struct cn_job {
    struct pl_tls *t;
    int fd; /* the shim's dup of the socket, for the thread */
    const struct pl_rule *rule;
    char sni[KTLSX_DOOR_HOST_MAX + 1];
};

static void *cn_thread(void *arg)
{
    struct cn_job *job = arg;
    struct pl_tls *t = job->t, *r = NULL;
    int err = 0, soerr = 0;
    socklen_t sl = sizeof soerr;
    if (wait_fd(job->fd, POLLOUT, rules.hs_ms) < 0) err = errno;
    else if (getsockopt(job->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) err = errno;
    else err = soerr;
    if (err == 0) {
        r = handshake(job->fd, job->rule, rules.hs_ms, job->sni);
        if (r == NULL) err = ECONNREFUSED;
    } else {
        pl_log(KTLSX_LOG_INFO, "%s: connect: %s", job->rule->where, strerror(err));
    }
    /* a failed handshake: cut the TCP connection, nothing goes out in plaintext */
    if (err != 0) REAL(shutdown)(job->fd, SHUT_RDWR);
    uint64_t one = 1;
    pthread_mutex_lock(&t->lock);
    if (r != NULL) {
        t->priv_fd = r->priv_fd;
        t->ktls = r->ktls;
        t->sock = r->sock;
        r->sock = NULL;
        r->priv_fd = -1;
    } else {
        t->failed = 1;
    }
    t->conn_err = err;
    t->connecting = 0;
    if (REAL(write)(t->wake_fd, &one, sizeof one) < 0) pl_log(KTLSX_LOG_ERROR, "connect: wake fd: %s", strerror(errno));
    int abandoned = t->abandoned;
    pthread_mutex_unlock(&t->lock);
    pl_tls_free(r);
    REAL(close)(job->fd);
    if (abandoned) {
        LIB_ENTER();
        pl_tls_free(t);
        LIB_LEAVE();
    }
    free(job);
    return NULL;
}

/* A connection still in its nonblocking connect: 0 once it can carry data; else -1 with EAGAIN
 * (nonblocking) or the connect's error, after waiting for its end (blocking). */
static int conn_ready(struct pl_tls *t, int fd, int flags)
{
    for (;;) {
        pthread_mutex_lock(&t->lock);
        int connecting = t->connecting, ok = t->sock != NULL, err = t->conn_err;
        pthread_mutex_unlock(&t->lock);
        if (ok) return 0;
        if (!connecting) { errno = err ? err : ECONNRESET; return -1; }
        if ((flags & MSG_DONTWAIT) || fd_nonblocking(fd)) { errno = EAGAIN; return -1; }
        if (wait_fd(t->wake_fd, POLLIN, -1) < 0) return -1;
    }
}

static int is_connecting(struct pl_tls *t)
{
    pthread_mutex_lock(&t->lock);
    int c = t->connecting;
    pthread_mutex_unlock(&t->lock);
    return c;
}

static int connect_nonblocking(int fd, int rc, const struct pl_rule *rule, const char *sni)
{
    struct pl_tls *t = calloc(1, sizeof *t);
    struct cn_job *job = calloc(1, sizeof *job);
    int dupfd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 0);
    int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t == NULL || job == NULL || dupfd < 0 || wake < 0) {
        int e = errno ? errno : ENOMEM;
        free(t);
        free(job);
        if (dupfd >= 0) REAL(close)(dupfd);
        if (wake >= 0) REAL(close)(wake);
        REAL(shutdown)(fd, SHUT_RDWR);
        pl_log(KTLSX_LOG_ERROR, "%s: connect: %s: refused (no plaintext)", rule->where, strerror(e));
        errno = e;
        return -1;
    }
    (void)rc;
    pthread_mutex_init(&t->lock, NULL);
    t->priv_fd = -1;
    t->wake_fd = wake;
    t->rule = rule;
    t->connecting = 1;
    job->t = t;
    job->fd = dupfd;
    job->rule = rule;
    snprintf(job->sni, sizeof job->sni, "%s", sni);
    if (pl_fd_attach(fd, t) < 0) {
        pl_tls_free(t);
        REAL(close)(dupfd);
        free(job);
        REAL(shutdown)(fd, SHUT_RDWR);
        errno = EMFILE;
        return -1;
    }
    int e = start_thread(cn_thread, job);
    if (e != 0) {
        pthread_mutex_lock(&t->lock);
        t->connecting = 0;
        t->failed = 1;
        t->conn_err = ECONNREFUSED;
        uint64_t one = 1;
        (void)REAL(write)(wake, &one, sizeof one);
        pthread_mutex_unlock(&t->lock);
        REAL(close)(dupfd);
        free(job);
        REAL(shutdown)(fd, SHUT_RDWR);
        pl_log(KTLSX_LOG_ERROR, "%s: no thread for the handshake (%s): connect refused", rule->where, strerror(e));
        errno = ECONNREFUSED;
        return -1;
    }
    errno = EINPROGRESS;
    return -1;
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!active || n_connect == 0 || in_lib || addr == NULL ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return REAL(connect)(fd, addr, len);
    struct pl_tls *cur = pl_fd_get(fd);
    if (cur != NULL && cur->lst == NULL) { /* connect again on a TLS connection: where it stands */
        pthread_mutex_lock(&cur->lock);
        int connecting = cur->connecting, ok = cur->sock != NULL, err = cur->conn_err;
        pthread_mutex_unlock(&cur->lock);
        errno = connecting ? EALREADY : ok ? EISCONN : (err ? err : ECONNREFUSED);
        return -1;
    }
    char host[INET6_ADDRSTRLEN], name[KTLSX_DOOR_HOST_MAX + 1];
    if (numeric_host(addr, host, sizeof host) < 0) return REAL(connect)(fd, addr, len);
    int have_name = name_of(host, name, sizeof name);
    const struct pl_rule *rule = pl_rules_connect(&rules, host, have_name ? name : NULL, sock_port(addr));
    if (rule == NULL || !is_tcp(fd)) return REAL(connect)(fd, addr, len);
    const char *sni = rule->name[0] ? rule->name : have_name ? name : rule->host;

    int rc = REAL(connect)(fd, addr, len);
    if (rc < 0 && errno != EINPROGRESS) return -1;
    if (fd_nonblocking(fd)) return connect_nonblocking(fd, rc, rule, sni);
    if (rc < 0) { /* EINPROGRESS on a blocking socket: a signal interrupted connect (SA_RESTART or not) */
        int soerr = 0;
        socklen_t l = sizeof soerr;
        if (wait_fd(fd, POLLOUT, rules.hs_ms) < 0) return -1;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0) return -1;
        if (soerr != 0) { errno = soerr; return -1; }
    }
    struct pl_tls *t = handshake(fd, rule, rules.hs_ms, sni);
    if (t == NULL || pl_fd_attach(fd, t) < 0) {
        pl_tls_free(t);
        /* The TCP connection is up but carries no TLS: cut it, so nothing goes out in plaintext. */
        REAL(shutdown)(fd, SHUT_RDWR);
        errno = ECONNREFUSED;
        return -1;
    }
    return 0;
}

/* SO_ERROR of a TLS connection that went through a nonblocking connect: how it ended. */
EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    struct pl_tls *t;
    if (level != SOL_SOCKET || name != SO_ERROR || val == NULL || len == NULL || *len < (socklen_t)sizeof(int) ||
        (t = lookup(fd)) == NULL || t->lst != NULL || t->wake_fd < 0)
        return REAL(getsockopt)(fd, level, name, val, len);
    pthread_mutex_lock(&t->lock);
    int v = t->connecting ? 0 : t->conn_err;
    t->conn_err = 0; /* read once, like the socket's own */
    pthread_mutex_unlock(&t->lock);
    if (v == 0) return REAL(getsockopt)(fd, level, name, val, len);
    *(int *)val = v;
    *len = sizeof(int);
    return 0;
}

/* ---- data ---- */

/* Read up to len bytes of plaintext from the record layer.  nb: do not wait. */
static ssize_t tls_recv_raw(struct pl_tls *t, int fd, void *buf, size_t len, int flags)
{
    int nb = (flags & MSG_DONTWAIT) || fd_nonblocking(fd);
    size_t done = 0;
    if (len == 0) return 0;
    for (;;) {
        size_t got = 0;
        int st;
        if (t->eof) return (ssize_t)done;
        if (t->failed) { errno = ECONNRESET; return done ? (ssize_t)done : -1; }
        pthread_mutex_lock(&t->lock);
        LIB_ENTER();
        (void)ktlsx_socket_flush_step(t->sock); /* a queued answer (KeyUpdate, leftover record) goes first */
        st = ktlsx_socket_read_step(t->sock, (char *)buf + done, len - done, &got);
        LIB_LEAVE();
        pthread_mutex_unlock(&t->lock);
        if (st == KTLSX_IO_OK) {
            /* Keep filling the buffer while data is here (no waiting): what the library already pulled
             * off the socket does not make the fd readable, so an event loop must get it now. */
            done += got;
            if (done == len) return (ssize_t)done;
            continue;
        }
        if (st == KTLSX_IO_CLOSED) {
            t->eof = 1;
            return (ssize_t)done;
        }
        if (st == KTLSX_IO_WANT_READ || st == KTLSX_IO_WANT_WRITE) {
            if (done > 0 && !(flags & MSG_WAITALL)) return (ssize_t)done;
            if (nb) { errno = EAGAIN; return done ? (ssize_t)done : -1; }
            if (wait_fd(t->priv_fd, st == KTLSX_IO_WANT_READ ? POLLIN : POLLOUT, -1) < 0)
                return done ? (ssize_t)done : -1;
            continue;
        }
        errno = io_errno(t, st);
        return done ? (ssize_t)done : -1;
    }
}

/* MSG_PEEK: what a peek read stays in t->peek and is handed out first by every later read (a peek
 * never reads more than one read would have). */
static ssize_t tls_recv(struct pl_tls *t, int fd, void *buf, size_t len, int flags)
{
    if (len == 0) return 0;
    pthread_mutex_lock(&t->lock);
    size_t avail = t->peek_len - t->peek_off;
    if (avail > 0) {
        size_t n = len < avail ? len : avail;
        memcpy(buf, t->peek + t->peek_off, n);
        if (!(flags & MSG_PEEK)) {
            t->peek_off += n;
            if (t->peek_off == t->peek_len) t->peek_off = t->peek_len = 0;
        }
        pthread_mutex_unlock(&t->lock);
        return (ssize_t)n;
    }
    pthread_mutex_unlock(&t->lock);
    if (!(flags & MSG_PEEK)) return tls_recv_raw(t, fd, buf, len, flags);
    char *tmp = malloc(len);
    if (tmp == NULL) { errno = ENOMEM; return -1; }
    ssize_t n = tls_recv_raw(t, fd, tmp, len, flags & ~MSG_PEEK);
    if (n > 0) {
        pthread_mutex_lock(&t->lock);
        char *np = realloc(t->peek, t->peek_len + (size_t)n);
        if (np == NULL) {
            pthread_mutex_unlock(&t->lock);
            free(tmp);
            errno = ENOMEM; /* the bytes are lost: the connection cannot go on */
            t->failed = 1;
            return -1;
        }
        memcpy(np + t->peek_len, tmp, (size_t)n);
        t->peek = np;
        t->peek_len += (size_t)n;
        pthread_mutex_unlock(&t->lock);
        memcpy(buf, tmp, (size_t)n);
    }
    free(tmp);
    return n;
}

/* Room in the kernel's send buffer, so that a nonblocking write takes only what can go out now. */
static size_t send_room(int fd)
{
    int sndbuf = 0, outq = 0;
    socklen_t l = sizeof sndbuf;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l) < 0 || ioctl(fd, SIOCOUTQ, &outq) < 0) return 16384;
    long room = (long)sndbuf / 2 - outq;
    return room > 1024 ? (size_t)room - 512 : 0;
}

/* A write on a connection that is gone: the errno the kernel would give (probed with an empty send
 * on the socket: ECONNRESET once after a reset, EPIPE after that or after shutdown) and, with EPIPE,
 * SIGPIPE to the calling thread unless MSG_NOSIGNAL, as a plain socket does. */
static int write_gone(struct pl_tls *t, int flags)
{
    int e = EPIPE;
    if (!t->shut_wr && t->priv_fd >= 0) {
        e = REAL(send)(t->priv_fd, "", 0, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? errno : ECONNRESET;
        if (e != EPIPE) e = ECONNRESET; /* TCP still up: the TLS layer failed (an alert, a bad record) */
    }
    if (e == EPIPE && !(flags & MSG_NOSIGNAL)) raise(SIGPIPE);
    return e;
}

static ssize_t tls_send(struct pl_tls *t, int fd, const void *buf, size_t len, int flags)
{
    int nb = (flags & MSG_DONTWAIT) || fd_nonblocking(fd);
    size_t done = 0;
    if (t->shut_wr || t->failed) { errno = write_gone(t, flags); return -1; }
    if (t->ktls & KTLSX_KTLS_TX) return REAL(send)(t->priv_fd, buf, len, flags); /* SIGPIPE from the kernel */
    if (len == 0) return 0;
    for (;;) {
        size_t sent = 0, take = len - done;
        int st, fl;
        pthread_mutex_lock(&t->lock);
        LIB_ENTER();
        fl = ktlsx_socket_flush_step(t->sock);
        if (fl == KTLSX_IO_OK) {
            if (nb) {
                /* Take about what the send buffer has room for, so little stays sealed in user space; but
                 * at least one record's worth: EAGAIN must come from the kernel (a full socket), or an
                 * edge-triggered program would wait for an EPOLLOUT edge that never comes. */
                size_t room = send_room(t->priv_fd);
                if (room < 16384) room = 16384;
                if (take > room) take = room;
            }
            st = ktlsx_socket_write_step(t->sock, (const char *)buf + done, take, &sent);
            if (st == KTLSX_IO_OK) (void)ktlsx_socket_flush_step(t->sock);
        } else {
            st = fl;
        }
        size_t pending = ktlsx_socket_pending_output(t->sock);
        LIB_LEAVE();
        pthread_mutex_unlock(&t->lock);
        done += sent;
        if (st == KTLSX_IO_FAILED || st == KTLSX_IO_TIMEOUT || st == KTLSX_IO_CLOSED) {
            errno = io_errno(t, st);
            if (done) return (ssize_t)done;
            if (st != KTLSX_IO_TIMEOUT) errno = write_gone(t, flags);
            return -1;
        }
        if (nb) {
            if (done > 0) return (ssize_t)done;
            errno = EAGAIN;
            return -1;
        }
        if (done == len && pending == 0) return (ssize_t)done;
        if (wait_fd(t->priv_fd, POLLOUT, -1) < 0) return done ? (ssize_t)done : -1;
    }
}

#define DATA_CALL_F(call_tls, call_real, flags)                      \
    struct pl_tls *t = lookup(fd);                                 \
    if (t == NULL || t->lst != NULL) return call_real;             \
    if (t->sock == NULL && conn_ready(t, fd, flags) < 0) return -1; \
    return call_tls
#define DATA_CALL(call_tls, call_real) DATA_CALL_F(call_tls, call_real, 0)

EXPORT ssize_t read(int fd, void *buf, size_t n) { DATA_CALL(tls_recv(t, fd, buf, n, 0), REAL(read)(fd, buf, n)); }
EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    DATA_CALL_F(tls_recv(t, fd, buf, n, flags), REAL(recv)(fd, buf, n, flags), flags);
}
EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    DATA_CALL_F(tls_recv(t, fd, buf, n, flags), REAL(recvfrom)(fd, buf, n, flags, addr, alen), flags);
}
EXPORT ssize_t write(int fd, const void *buf, size_t n) { DATA_CALL(tls_send(t, fd, buf, n, 0), REAL(write)(fd, buf, n)); }
EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    DATA_CALL_F(tls_send(t, fd, buf, n, flags), REAL(send)(fd, buf, n, flags), flags);
}
EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t alen)
{
    DATA_CALL_F(tls_send(t, fd, buf, n, flags), REAL(sendto)(fd, buf, n, flags, addr, alen), flags);
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++) n += iov[i].iov_len;
    return n;
}

/* Scatter: fill the buffers in order; a later one only while data is already here. */
static ssize_t tls_readv(struct pl_tls *t, int fd, const struct iovec *iov, int cnt, int flags)
{
    ssize_t total = 0;
    if (cnt < 0) { errno = EINVAL; return -1; }
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len == 0) continue;
        ssize_t n = tls_recv(t, fd, iov[i].iov_base, iov[i].iov_len, total > 0 ? (flags | MSG_DONTWAIT) : flags);
        if (n < 0) return total > 0 && (errno == EAGAIN) ? total : (total > 0 ? total : -1);
        total += n;
        if (n == 0 || (size_t)n < iov[i].iov_len) break;
    }
    return total;
}

static ssize_t tls_writev(struct pl_tls *t, int fd, const struct iovec *iov, int cnt, int flags)
{
    ssize_t total = 0;
    if (cnt < 0) { errno = EINVAL; return -1; }
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len == 0) continue;
        ssize_t n = tls_send(t, fd, iov[i].iov_base, iov[i].iov_len, flags);
        if (n < 0) return total > 0 ? total : -1;
        total += n;
        if ((size_t)n < iov[i].iov_len) break;
    }
    (void)iov_total;
    return total;
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    DATA_CALL(tls_readv(t, fd, iov, cnt, 0), REAL(readv)(fd, iov, cnt));
}
EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    DATA_CALL(tls_writev(t, fd, iov, cnt, 0), REAL(writev)(fd, iov, cnt));
}
EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct pl_tls *t = lookup(fd);
    if (t == NULL || t->lst != NULL) return REAL(recvmsg)(fd, msg, flags);
    if (t->sock == NULL && conn_ready(t, fd, flags) < 0) return -1;
    ssize_t n = tls_readv(t, fd, msg->msg_iov, (int)msg->msg_iovlen, flags);
    if (n >= 0) {
        msg->msg_controllen = 0; /* no ancillary data on a TLS stream */
        msg->msg_flags = 0;
    }
    return n;
}
EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct pl_tls *t = lookup(fd);
    if (t == NULL || t->lst != NULL) return REAL(sendmsg)(fd, msg, flags);
    if (t->sock == NULL && conn_ready(t, fd, flags) < 0) return -1;
    if (msg->msg_controllen != 0 && !(t->ktls & KTLSX_KTLS_TX)) {
        errno = EOPNOTSUPP; /* ancillary data on a TLS stream in user-space records: not carried */
        return -1;
    }
    if (t->ktls & KTLSX_KTLS_TX) return REAL(sendmsg)(t->priv_fd, msg, flags);
    return tls_writev(t, fd, msg->msg_iov, (int)msg->msg_iovlen, flags);
}

static ssize_t tls_sendfile(struct pl_tls *t, int fd, int in_fd, off_t *offset, size_t count)
{
    int nb = fd_nonblocking(fd);
    int64_t off;
    size_t done = 0;
    if (t->shut_wr || t->failed) { errno = write_gone(t, 0); return -1; }
    if (t->ktls & KTLSX_KTLS_TX) {
        /* page cache -> kernel TLS: said once per process, so a test (and an operator) can see it */
        if (!atomic_exchange(&sendfile_logged, 1))
            pl_log(KTLSX_LOG_INFO, "sendfile: through kernel TLS (zero copy)");
        return REAL(sendfile)(t->priv_fd, in_fd, offset, count);
    }
    if (offset != NULL) {
        off = *offset;
    } else {
        off_t cur = lseek(in_fd, 0, SEEK_CUR);
        if (cur < 0) return -1;
        off = cur;
    }
    while (done < count) {
        size_t sent = 0;
        int st;
        pthread_mutex_lock(&t->lock);
        LIB_ENTER();
        st = ktlsx_socket_flush_step(t->sock);
        if (st == KTLSX_IO_OK) {
            size_t take = count - done;
            if (nb) { /* as in tls_send */
                size_t room = send_room(t->priv_fd);
                if (room < 16384) room = 16384;
                if (take > room) take = room;
            }
            st = ktlsx_socket_sendfile_step(t->sock, in_fd, &off, take, &sent);
            if (st == KTLSX_IO_OK) (void)ktlsx_socket_flush_step(t->sock);
        }
        LIB_LEAVE();
        pthread_mutex_unlock(&t->lock);
        if (st == KTLSX_IO_OK && sent == 0) break; /* the file ended */
        done += sent;
        if (st == KTLSX_IO_FAILED || st == KTLSX_IO_TIMEOUT || st == KTLSX_IO_CLOSED) {
            errno = io_errno(t, st);
            if (done == 0) {
                if (st != KTLSX_IO_TIMEOUT) errno = write_gone(t, 0);
                return -1;
            }
            break;
        }
        if (st != KTLSX_IO_OK) {
            if (nb) {
                if (done == 0) { errno = EAGAIN; return -1; }
                break;
            }
            if (wait_fd(t->priv_fd, POLLOUT, -1) < 0) {
                if (done == 0) return -1;
                break;
            }
        } else if (nb && done > 0) {
            break;
        }
    }
    if (offset != NULL) *offset = (off_t)off;
    else lseek(in_fd, (off_t)off, SEEK_SET);
    /* blocking: what was taken is on its way; flush the tail before returning, as send() would */
    if (!nb) {
        for (;;) {
            pthread_mutex_lock(&t->lock);
            LIB_ENTER();
            int st = ktlsx_socket_flush_step(t->sock);
            LIB_LEAVE();
            pthread_mutex_unlock(&t->lock);
            if (st != KTLSX_IO_WANT_WRITE) break;
            if (wait_fd(t->priv_fd, POLLOUT, -1) < 0) break;
        }
    }
    return (ssize_t)done;
}

EXPORT ssize_t sendfile(int fd, int in_fd, off_t *offset, size_t count)
{
    DATA_CALL(tls_sendfile(t, fd, in_fd, offset, count), REAL(sendfile)(fd, in_fd, offset, count));
}
EXPORT ssize_t sendfile64(int fd, int in_fd, off_t *offset, size_t count)
{
    DATA_CALL(tls_sendfile(t, fd, in_fd, offset, count), REAL(sendfile64)(fd, in_fd, offset, count));
}

/* splice with a TLS socket at one end: through a user-space buffer (no zero copy without kernel TLS). */
EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags)
{
    struct pl_tls *tin = lookup(fd_in), *tout = lookup(fd_out);
    char buf[65536];
    if (tin != NULL && tin->lst != NULL) tin = NULL;
    if (tout != NULL && tout->lst != NULL) tout = NULL;
    if (tin != NULL && tin->sock == NULL && conn_ready(tin, fd_in, (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0) < 0) return -1;
    if (tout != NULL && tout->sock == NULL && conn_ready(tout, fd_out, (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0) < 0) return -1;
    if (tout != NULL && (tout->ktls & KTLSX_KTLS_TX)) tout = NULL;
    if (tin == NULL && tout == NULL) return REAL(splice)(fd_in, off_in, fd_out, off_out, len, flags);
    if (tin != NULL && tout != NULL) { errno = EINVAL; return -1; }
    if (len > sizeof buf) len = sizeof buf;
    int nbflag = (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0;
    if (tout != NULL) {
        ssize_t n = off_in ? pread(fd_in, buf, len, *off_in) : REAL(read)(fd_in, buf, len);
        if (n <= 0) return n;
        if (off_in) *off_in += n;
        ssize_t w = 0;
        while (w < n) {
            ssize_t k = tls_send(tout, fd_out, buf + w, (size_t)(n - w), 0);
            if (k < 0) return w > 0 ? w : -1;
            w += k;
        }
        return n;
    }
    ssize_t n = tls_recv(tin, fd_in, buf, len, nbflag);
    if (n <= 0) return n;
    ssize_t w = 0;
    while (w < n) {
        ssize_t k = off_out ? pwrite(fd_out, buf + w, (size_t)(n - w), *off_out + w) : REAL(write)(fd_out, buf + w, (size_t)(n - w));
        if (k < 0) return w > 0 ? w : -1; /* bytes read from TLS but not written are lost: docs/preload.md */
        w += k;
    }
    if (off_out) *off_out += n;
    return n;
}

/* ---- readiness of data the shim already holds ----
 *
 * With user-space records the library may have pulled more off the socket
 * than the program's buffer took (a record is opened whole): that plaintext
 * waits in user space and the fd is not readable, so a program that waits
 * for readiness before reading would wait forever.  poll, epoll_wait and
 * epoll_pwait report such fds readable (EPOLLIN / POLLIN) at once.  epoll
 * registrations of TLS fds are remembered from epoll_ctl for that. */
struct ep_reg {
    int epfd, fd;
    uint32_t events;
    epoll_data_t data;
};
static struct ep_reg *ep_regs;
static size_t ep_n, ep_cap;
static pthread_mutex_t ep_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int ep_any;

static int pending_in(struct pl_tls *t)
{
    if (t == NULL || t->lst != NULL) return 0;
    if (t->sock == NULL) return !t->connecting; /* a failed nonblocking connect: a read answers at once */
    if (t->eof || t->failed) return 1; /* a read answers at once (0 or an error), as at a socket's EOF */
    pthread_mutex_lock(&t->lock);
    LIB_ENTER();
    /* peeked plaintext, plaintext or whole records held, or the peer's close_notify already taken in */
    int held = t->peek_len > t->peek_off || ktlsx_socket_pending_plaintext(t->sock) > 0 ||
               ktlsx_socket_clean_close(t->sock);
    LIB_LEAVE();
    pthread_mutex_unlock(&t->lock);
    return held;
}

static void ep_forget_fd(int fd)
{
    if (!atomic_load(&ep_any)) return;
    pthread_mutex_lock(&ep_lock);
    for (size_t i = 0; i < ep_n;)
        if (ep_regs[i].fd == fd || ep_regs[i].epfd == fd) ep_regs[i] = ep_regs[--ep_n];
        else i++;
    pthread_mutex_unlock(&ep_lock);
}

/* epoll data of a connecting socket's wake fd: never a user-space pointer (not canonical) */
#define EP_TAG 0x6b746c7300000000ULL
#define EP_TAG_MASK 0xffffffff00000000ULL

/* epoll_ctl on a connecting socket: its wake fd goes into (or out of) the set under the shim's tag. */
static void conn_epoll_ctl(struct pl_tls *t, int epfd, int op, int fd, int connecting)
{
    if (op == EPOLL_CTL_DEL || !connecting) {
        (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, t->wake_fd, NULL);
        return;
    }
    struct epoll_event w = {.events = EPOLLIN, .data.u64 = EP_TAG | (uint64_t)(unsigned)fd};
    if (REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, t->wake_fd, &w) < 0 && errno == EEXIST)
        (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, t->wake_fd, &w);
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    struct pl_tls *t = lookup(fd);
    struct epoll_event masked;
    int connecting = t != NULL && t->lst == NULL && t->wake_fd >= 0 && op != EPOLL_CTL_DEL && ev != NULL &&
                     is_connecting(t);
    if (connecting) { /* the socket's own readiness means nothing until the handshake ended */
        masked = *ev;
        masked.events &= ~(uint32_t)(EPOLLIN | EPOLLOUT);
    }
    int rc = REAL(epoll_ctl)(epfd, op, fd, connecting ? &masked : ev);
    if (rc == 0 && t != NULL && t->lst != NULL) listener_epoll_ctl(t->lst, epfd, op, ev);
    if (rc == 0 && t != NULL && t->lst == NULL && t->wake_fd >= 0) conn_epoll_ctl(t, epfd, op, fd, connecting);
    if (rc < 0 || ((t == NULL || t->lst != NULL) && !atomic_load(&ep_any))) return rc;
    pthread_mutex_lock(&ep_lock);
    size_t i;
    for (i = 0; i < ep_n; i++)
        if (ep_regs[i].epfd == epfd && ep_regs[i].fd == fd) break;
    if (op == EPOLL_CTL_DEL || t == NULL || t->lst != NULL) {
        if (i < ep_n) ep_regs[i] = ep_regs[--ep_n];
    } else if (ev != NULL) {
        if (i == ep_n) {
            if (ep_n == ep_cap) {
                size_t nc = ep_cap ? ep_cap * 2 : 64;
                struct ep_reg *nr = realloc(ep_regs, nc * sizeof *nr);
                if (nr == NULL) {
                    pthread_mutex_unlock(&ep_lock);
                    pl_log(KTLSX_LOG_ERROR, "epoll_ctl: out of memory tracking fd %d", fd);
                    return rc;
                }
                ep_regs = nr;
                ep_cap = nc;
            }
            ep_n++;
            atomic_store(&ep_any, 1);
        }
        ep_regs[i] = (struct ep_reg){.epfd = epfd, .fd = fd, .events = ev->events, .data = ev->data};
    }
    pthread_mutex_unlock(&ep_lock);
    return rc;
}

/* Data the shim holds for TLS fds registered in epfd: up to max of them into extra[]. */
static int ep_held(int epfd, epoll_data_t *extra, int max)
{
    int n = 0;
    int fds[64];
    epoll_data_t data[64];
    if (!atomic_load(&ep_any) || in_lib) return 0;
    pthread_mutex_lock(&ep_lock);
    for (size_t i = 0; i < ep_n && n < 64; i++)
        if (ep_regs[i].epfd == epfd && (ep_regs[i].events & EPOLLIN)) {
            fds[n] = ep_regs[i].fd;
            data[n++] = ep_regs[i].data;
        }
    pthread_mutex_unlock(&ep_lock);
    int k = 0;
    for (int i = 0; i < n && k < max; i++)
        if (pending_in(pl_fd_get(fds[i]))) extra[k++] = data[i];
    return k;
}

static int ep_merge(struct epoll_event *events, int got, int max, const epoll_data_t *extra, int k)
{
    for (int j = 0; j < k; j++) {
        int i;
        for (i = 0; i < got; i++)
            if (events[i].data.u64 == extra[j].u64) break;
        if (i < got) events[i].events |= EPOLLIN;
        else if (got < max) events[got++] = (struct epoll_event){.events = EPOLLIN, .data = extra[j]};
    }
    return got;
}

/* Sealed records a nonblocking write left queued (the kernel took part of them) go out here: the
 * program may never write again on that fd, and it waits for other events.  Flushes what it can;
 * returns the shim's fds of the TLS fds in epfd that still hold output (up to max). */
static int ep_stuck(int epfd, int *privs, int max)
{
    int fds[64], n = 0, k = 0;
    if (!atomic_load(&ep_any) || in_lib) return 0;
    pthread_mutex_lock(&ep_lock);
    for (size_t i = 0; i < ep_n && n < 64; i++)
        if (ep_regs[i].epfd == epfd) fds[n++] = ep_regs[i].fd;
    pthread_mutex_unlock(&ep_lock);
    for (int i = 0; i < n && k < max; i++) {
        struct pl_tls *t = pl_fd_get(fds[i]);
        if (t == NULL || t->sock == NULL || t->failed) continue;
        pthread_mutex_lock(&t->lock);
        LIB_ENTER();
        size_t left = 0;
        if (ktlsx_socket_pending_output(t->sock) > 0) {
            (void)ktlsx_socket_flush_step(t->sock);
            left = ktlsx_socket_pending_output(t->sock);
        }
        LIB_LEAVE();
        pthread_mutex_unlock(&t->lock);
        if (left > 0) privs[k++] = t->priv_fd;
    }
    return k;
}

/* Wait for epfd's events while flushing stuck output as its sockets drain.  Returns 1 when epfd has
 * events (or nothing is stuck any more: *timeout is what is left of the program's timeout), 0 when the
 * timeout passed, -1 on a poll error (EINTR included). */
static int ep_wait_stuck(int epfd, int *timeout, const sigset_t *sigmask)
{
    long end = *timeout >= 0 ? now_ms() + *timeout : -1;
    for (;;) {
        int privs[64];
        int k = ep_stuck(epfd, privs, 64);
        long left = end < 0 ? -1 : end - now_ms();
        if (end >= 0 && left < 0) left = 0;
        *timeout = (int)left;
        if (k == 0) return 1;
        struct pollfd p[65];
        p[0] = (struct pollfd){.fd = epfd, .events = POLLIN};
        for (int i = 0; i < k; i++) p[i + 1] = (struct pollfd){.fd = privs[i], .events = POLLOUT};
        struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
        int r = REAL(ppoll)(p, (nfds_t)k + 1, left < 0 ? NULL : &ts, sigmask);
        if (r < 0) return -1;
        if (p[0].revents) { *timeout = 0; return 1; }
        if (r == 0) return 0;
    }
}

/* Events of connecting sockets' wake fds (the shim's tag) become the program's: its registration is
 * put back on the socket, the wake fd leaves the set, and the event is EPOLLOUT (if asked for) or
 * EPOLLERR|EPOLLHUP when the connect failed.  Returns the new count. */
static int ep_translate(int epfd, struct epoll_event *events, int got)
{
    int k = 0;
    for (int i = 0; i < got; i++) {
        if ((events[i].data.u64 & EP_TAG_MASK) != EP_TAG) {
            events[k++] = events[i];
            continue;
        }
        int fd = (int)(events[i].data.u64 & 0xffffffffu);
        struct pl_tls *t = pl_fd_get(fd);
        struct ep_reg reg = {.fd = -1};
        pthread_mutex_lock(&ep_lock);
        for (size_t r = 0; r < ep_n; r++)
            if (ep_regs[r].epfd == epfd && ep_regs[r].fd == fd) reg = ep_regs[r];
        pthread_mutex_unlock(&ep_lock);
        if (t == NULL || t->lst != NULL || t->wake_fd < 0 || reg.fd < 0) continue; /* gone: the kernel drops it */
        if (is_connecting(t)) continue;
        struct epoll_event back = {.events = reg.events, .data = reg.data};
        (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd, &back);
        (void)REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, t->wake_fd, NULL);
        uint32_t ev = t->sock != NULL ? (reg.events & EPOLLOUT) : (EPOLLERR | EPOLLHUP);
        if (ev != 0) events[k++] = (struct epoll_event){.events = ev, .data = reg.data};
    }
    return k;
}

static int shim_epoll_wait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *sigmask,
                           int pwait)
{
    for (;;) {
        epoll_data_t extra[64];
        int k = max > 0 ? ep_held(epfd, extra, max < 64 ? max : 64) : 0;
        if (k == 0 && atomic_load(&ep_any) && !in_lib) {
            int w = ep_wait_stuck(epfd, &timeout, sigmask);
            if (w <= 0) return w;
        }
        int got = pwait ? REAL(epoll_pwait)(epfd, events, max, k > 0 ? 0 : timeout, sigmask)
                        : REAL(epoll_wait)(epfd, events, max, k > 0 ? 0 : timeout);
        if (got > 0 && atomic_load(&ep_any) && !in_lib) {
            int before = got;
            got = ep_translate(epfd, events, got);
            /* only shim events that the program did not ask for: wait on (a blocking wait only) */
            if (got == 0 && k == 0 && before > 0 && timeout < 0) continue;
        }
        if (k == 0 || got < 0) return got;
        return ep_merge(events, got, max, extra, k);
    }
}

EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    return shim_epoll_wait(epfd, events, max, timeout, NULL, 0);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *sigmask)
{
    return shim_epoll_wait(epfd, events, max, timeout, sigmask, 1);
}

/* ---- poll, ppoll, select, pselect ----
 *
 * A set that holds no fd with a state goes to libc as it is (one table load per entry).  Otherwise
 * the shim waits in ppoll on a copy of the set extended with the wake fds of TLS listeners (POLLIN on
 * the listener when its wake fd is readable), and TLS fds for which the shim already holds plaintext
 * (or a close_notify) are reported readable at once.  select and pselect go through the same code on
 * a pollfd array built from their fd_sets. */
#define POLL_STACK 64

static int shim_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
    struct pollfd stack[POLL_STACK], *p = stack;
    nfds_t owner_stack[POLL_STACK], *owner = owner_stack; /* extra entry k (k >= n): which program entry */
    nfds_t extra = 0, i;
    int held = 0, any = 0;
    if (active && !in_lib)
        for (i = 0; i < n; i++) {
            struct pl_tls *t = pl_fd_get(fds[i].fd);
            if (t == NULL) continue;
            any = 1;
            if ((t->lst != NULL && (fds[i].events & POLLIN)) || (t->lst == NULL && t->wake_fd >= 0)) extra++;
        }
    if (!any) return REAL(ppoll)(fds, n, tmo, mask);
    if (n + extra > POLL_STACK) {
        p = malloc((n + extra) * sizeof *p);
        owner = malloc((n + extra) * sizeof *owner);
        if (p == NULL || owner == NULL) {
            free(p);
            free(owner);
            errno = ENOMEM;
            return -1;
        }
    }
    memcpy(p, fds, n * sizeof *p);
    extra = 0;
    for (i = 0; i < n; i++) {
        struct pl_tls *t = pl_fd_get(fds[i].fd);
        if (t == NULL) continue;
        if (t->lst != NULL && (fds[i].events & POLLIN)) {
            pthread_mutex_lock(&t->lst->lock);
            int wake = t->lst->wake_fd;
            held |= t->lst->head != NULL;
            pthread_mutex_unlock(&t->lst->lock);
            p[n + extra] = (struct pollfd){.fd = wake, .events = POLLIN}; /* -1 is ignored by poll */
            owner[n + extra++] = i;
        } else if (t->lst == NULL && t->wake_fd >= 0 && is_connecting(t)) {
            /* the program waits for the end of a nonblocking connect: its wake fd stands for the socket */
            p[i].fd = -1;
            p[n + extra] = (struct pollfd){.fd = t->wake_fd, .events = POLLIN};
            owner[n + extra++] = i;
        } else if ((fds[i].events & POLLIN) && pending_in(t)) {
            held = 1;
        }
    }
    struct timespec zero = {0, 0};
    int got = REAL(ppoll)(p, n + extra, held ? &zero : tmo, mask);
    if (got >= 0) {
        for (i = 0; i < n; i++) fds[i].revents = p[i].revents;
        for (i = n; i < n + extra; i++) {
            if (!(p[i].revents & POLLIN)) continue;
            struct pl_tls *t = pl_fd_get(fds[owner[i]].fd);
            if (t != NULL && t->lst == NULL) /* the connect ended: writable, or failed */
                fds[owner[i]].revents |= t->sock != NULL ? (fds[owner[i]].events & POLLOUT) : (POLLERR | POLLHUP);
            else
                fds[owner[i]].revents |= POLLIN;
        }
        for (i = 0; i < n; i++) {
            struct pl_tls *t = pl_fd_get(fds[i].fd);
            if (t != NULL && t->lst == NULL && (fds[i].events & POLLIN) && pending_in(t)) fds[i].revents |= POLLIN;
            if (t != NULL && t->lst != NULL && (fds[i].events & POLLIN)) {
                pthread_mutex_lock(&t->lst->lock);
                if (t->lst->head != NULL) fds[i].revents |= POLLIN;
                pthread_mutex_unlock(&t->lst->lock);
            }
        }
        got = 0;
        for (i = 0; i < n; i++) got += fds[i].revents != 0;
    }
    if (p != stack) {
        free(p);
        free(owner);
    }
    return got;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (!active || in_lib) return REAL(poll)(fds, n, timeout);
    struct timespec ts = {timeout / 1000, (timeout % 1000) * 1000000L};
    return shim_ppoll(fds, n, timeout < 0 ? NULL : &ts, NULL);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
    return shim_ppoll(fds, n, tmo, mask);
}

/* Is there any fd with a state in the sets? (select's fast path) */
static int sets_touch_tls(int nfds, const fd_set *r, const fd_set *w, const fd_set *x)
{
    if (!active || in_lib) return 0;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
        if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))) && pl_fd_get(fd) != NULL)
            return 1;
    return 0;
}

/* select through shim_ppoll: Linux's mapping (readable: IN|HUP|ERR, writable: OUT|ERR, except: PRI). */
static int shim_select(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *tmo, const sigset_t *mask)
{
    struct pollfd p[FD_SETSIZE];
    nfds_t n = 0;
    if (nfds < 0 || nfds > FD_SETSIZE) { errno = EINVAL; return -1; }
    for (int fd = 0; fd < nfds; fd++) {
        short ev = 0;
        if (r && FD_ISSET(fd, r)) ev |= POLLIN;
        if (w && FD_ISSET(fd, w)) ev |= POLLOUT;
        if (x && FD_ISSET(fd, x)) ev |= POLLPRI;
        if (ev) p[n++] = (struct pollfd){.fd = fd, .events = ev};
    }
    int got = shim_ppoll(p, n, tmo, mask);
    if (got < 0) return -1;
    for (nfds_t i = 0; i < n; i++)
        if (p[i].revents & POLLNVAL) { errno = EBADF; return -1; }
    if (r) FD_ZERO(r);
    if (w) FD_ZERO(w);
    if (x) FD_ZERO(x);
    got = 0;
    for (nfds_t i = 0; i < n; i++) {
        short re = p[i].revents, ev = p[i].events;
        if ((ev & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) { FD_SET(p[i].fd, r); got++; }
        if ((ev & POLLOUT) && (re & (POLLOUT | POLLERR))) { FD_SET(p[i].fd, w); got++; }
        if ((ev & POLLPRI) && (re & POLLPRI)) { FD_SET(p[i].fd, x); got++; }
    }
    return got;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv)
{
    if (!sets_touch_tls(nfds, r, w, x)) return REAL(select)(nfds, r, w, x, tv);
    if (tv != NULL && (tv->tv_sec < 0 || tv->tv_usec < 0)) { errno = EINVAL; return -1; }
    struct timespec ts, *tp = NULL;
    long end = 0;
    if (tv != NULL) {
        ts = (struct timespec){tv->tv_sec + tv->tv_usec / 1000000, (tv->tv_usec % 1000000) * 1000L};
        tp = &ts;
        end = now_ms() + (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    int rc = shim_select(nfds, r, w, x, tp, NULL);
    if (tv != NULL) { /* Linux writes back what is left of the timeout */
        long left = end - now_ms();
        if (left < 0) left = 0;
        tv->tv_sec = left / 1000;
        tv->tv_usec = (left % 1000) * 1000;
    }
    return rc;
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *tmo, const sigset_t *mask)
{
    if (!sets_touch_tls(nfds, r, w, x)) return REAL(pselect)(nfds, r, w, x, tmo, mask);
    return shim_select(nfds, r, w, x, tmo, mask);
}

/* fork, in the child: locks another thread held at the fork are re-made; the listeners forget the
 * parent's handshake threads. */
static void atfork_child(void)
{
    pthread_mutex_init(&ep_lock, NULL);
    pthread_mutex_init(&names_lock, NULL);
    pl_fd_after_fork_child();
    pl_listeners_after_fork();
}

/* ---- close, shutdown, dup ---- */

/* close_notify on the wire, waiting at most `ms` for room in the send buffer. */
static void send_close_notify(struct pl_tls *t, int ms)
{
    long end = now_ms() + ms;
    if (t->shut_wr || t->failed || t->sock == NULL) return;
    t->shut_wr = 1;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        LIB_ENTER();
        int st = ktlsx_socket_flush_step(t->sock);
        if (st == KTLSX_IO_OK) st = ktlsx_socket_shutdown_step(t->sock);
        LIB_LEAVE();
        pthread_mutex_unlock(&t->lock);
        long left = end - now_ms();
        if (st != KTLSX_IO_WANT_WRITE || left <= 0) return;
        if (wait_fd(t->priv_fd, POLLOUT, (int)left) < 0) return;
    }
}

EXPORT int shutdown(int fd, int how)
{
    struct pl_tls *t = lookup(fd);
    if (t != NULL && t->sock != NULL && (how == SHUT_WR || how == SHUT_RDWR)) send_close_notify(t, rules.hs_ms);
    return REAL(shutdown)(fd, how);
}

EXPORT int close(int fd)
{
    if (!in_lib) {
        struct pl_tls *t = pl_fd_detach(fd);
        ep_forget_fd(fd); /* a TLS fd, or an epoll set: its registrations go (nothing to do without any) */
        int connecting = 0;
        if (t != NULL && t->lst == NULL) { /* a handshake thread still running frees the state itself */
            pthread_mutex_lock(&t->lock);
            connecting = t->connecting;
            t->abandoned = connecting;
            pthread_mutex_unlock(&t->lock);
        }
        if (t != NULL && !connecting) {
            /* The last program fd of this connection: close_notify (unless a forked child carries on), then free. */
            if (t->sock != NULL && !t->forked) send_close_notify(t, 1000);
            LIB_ENTER();
            pl_tls_free(t);
            LIB_LEAVE();
        }
    }
    return REAL(close)(fd);
}

EXPORT int dup(int fd)
{
    int n = REAL(dup)(fd);
    if (n >= 0 && !in_lib && pl_fd_get(fd) != NULL) pl_fd_dup(fd, n);
    return n;
}

static int after_dup2(int old, int n)
{
    if (n >= 0 && !in_lib && old != n && (pl_fd_get(old) != NULL || pl_fd_get(n) != NULL)) {
        LIB_ENTER();
        pl_fd_dup(old, n);
        LIB_LEAVE();
    }
    return n;
}

EXPORT int dup2(int old, int newfd) { return after_dup2(old, REAL(dup2)(old, newfd)); }
EXPORT int dup3(int old, int newfd, int flags) { return after_dup2(old, REAL(dup3)(old, newfd, flags)); }

EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* every fcntl argument fits a pointer-sized register */
    va_end(ap);
    int rc = REAL(fcntl)(fd, cmd, arg);
    if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && !in_lib && pl_fd_get(fd) != NULL) pl_fd_dup(fd, rc);
    return rc;
}

/* Programs built with _FILE_OFFSET_BITS=64 (python3, most distribution packages) call fcntl64. */
EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int rc = REAL(fcntl64)(fd, cmd, arg);
    if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && !in_lib && pl_fd_get(fd) != NULL) pl_fd_dup(fd, rc);
    return rc;
}

/* ---- stdio on a TLS fd ----
 *
 * glibc's stdio reads and writes a FILE through its internal read/write, which no LD_PRELOAD
 * reaches: a program that fdopen()s a TLS socket (busybox wget does) would read records and write
 * plaintext.  fdopen of a TLS fd returns a FILE whose reads, writes and close go through the shim
 * (fopencookie); fileno() on it still gives the fd, so poll/select on it keep working. */
static ssize_t cookie_read(void *c, char *buf, size_t n) { return read((int)(intptr_t)c, buf, n); }
static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    ssize_t w = write((int)(intptr_t)c, buf, n);
    return w < 0 ? 0 : w; /* stdio: 0 is the error */
}
static int cookie_close(void *c) { return close((int)(intptr_t)c); }

EXPORT FILE *fdopen(int fd, const char *mode)
{
    struct pl_tls *t = lookup(fd);
    if (t == NULL || t->lst != NULL) return REAL(fdopen)(fd, mode);
    if (REAL(fcntl)(fd, F_GETFL) < 0) return NULL; /* EBADF, as fdopen */
    cookie_io_functions_t io = {.read = cookie_read, .write = cookie_write, .seek = NULL, .close = cookie_close};
    FILE *f = fopencookie((void *)(intptr_t)fd, mode, io);
    if (f != NULL) f->_fileno = fd; /* fileno(); stdio itself uses the cookie functions only */
    return f;
}
