/* The control socket: ktlsxctl's way in (stats, reload, ping, sessions).
 *
 * A unix SOCK_SEQPACKET socket (control_socket, default /run/ktlsx/ktlsxd.ctl),
 * mode 0660, served by the main thread's loop beside the signals.  One
 * request is one message, a command line ("stats", "stats prometheus",
 * "reload", "ping", "sessions", "ticket-keys"); the answer is one message of text whose
 * first line starts "ok" or "error: why".  Root, the daemon's own uid and
 * control_allow_uids may ask (SO_PEERCRED); anyone else gets "error: denied".
 * Nothing blocks: a connection that sends nothing is cut after 5 s, an
 * answer that does not fit the socket's buffer is dropped with the
 * connection, and at most 16 control connections are open at once. */
#include "ktlsxd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_CONNS 16
#define CTL_IDLE_MS 5000
#define CTL_ANSWER_MAX (64 * 1024)

struct ctl_conn {
    struct kd_watch w;
    int fd;
    uid_t uid;
    int64_t deadline;
    bool used;
};

static struct {
    int fd;
    char path[108];
    struct kd_watch w;
    struct ctl_conn conns[CTL_MAX_CONNS];
    int workers;
    int64_t started;
    uid_t allow[KD_MAX_IDS];
    size_t nallow;
    bool any;
} ctl = { .fd = -1 };

static bool allowed(uid_t uid)
{
    if (uid == 0 || uid == geteuid() || ctl.any) return true;
    for (size_t i = 0; i < ctl.nallow; i++)
        if (ctl.allow[i] == uid) return true;
    return false;
}

static void conn_close(struct ctl_conn *c)
{
    (void)kd_watch_fd(c->fd, EPOLL_CTL_DEL, 0, &c->w);
    close(c->fd);
    c->fd = -1;
    c->used = false; /* the slot is reused only once its poll has come back (kd_watch_idle) */
}

/* The server profiles' session caches and ticket keys. */
static size_t sessions(char *out, size_t cap)
{
    size_t len = 0;
    const struct kd_conf *conf = kd_conf_hold();
    for (size_t i = 0; i < conf->nprofiles && len + 1 < cap; i++) {
        const struct kd_profile *p = &conf->profiles[i];
        if (p->role != KTLSX_SERVER) continue;
        struct ktlsx_session_stats st;
        char rotation[64];
        (void)ktlsx_config_session_stats(p->cfg, &st);
        if (st.ticket_rotation_s) snprintf(rotation, sizeof rotation, "every %u s", st.ticket_rotation_s);
        else snprintf(rotation, sizeof rotation, "%s", conf->nticket_key_files ? "by the key files' owner" : "off");
        int n = snprintf(out + len, cap - len,
                         "profile %s: session cache %zu/%zu, ticket keys %u (sealing key %llu s old, rotation %s), "
                         "tickets per TLS 1.3 connection %u\n",
                         p->name, st.cache_entries, st.cache_capacity, st.ticket_keys,
                         (unsigned long long)st.ticket_key_age_s, rotation, st.tickets_per_connection);
        if (n > 0) len = len + (size_t)n < cap ? len + (size_t)n : cap - 1;
        if (st.store_servers && len + 1 < cap) { /* issue 12 */
            n = snprintf(out + len, cap - len,
                         "profile %s: memcached store %u servers, hits %llu, misses %llu, errors %llu, rejected %llu, "
                         "puts %llu, slowest operation %llu ms\n", p->name, st.store_servers,
                         (unsigned long long)st.store_hits, (unsigned long long)st.store_misses,
                         (unsigned long long)st.store_errors, (unsigned long long)st.store_rejected,
                         (unsigned long long)st.store_puts, (unsigned long long)st.store_slowest_ms);
            if (n > 0) len = len + (size_t)n < cap ? len + (size_t)n : cap - 1;
        }
    }
    kd_conf_drop();
    return len;
}

/* issue 12: each server profile's ticket keys by name (hex of the 16-byte
 * name every ticket sealed with the key starts with) and age, the sealing
 * one first; never key bytes.  Then the key files and when they were last
 * read. */
static size_t ticket_keys(char *out, size_t cap)
{
    size_t len = 0;
    const struct kd_conf *conf = kd_conf_hold();
#define KD_ADD(...)                                                                   \
    do {                                                                              \
        int n_ = snprintf(out + len, cap - len, __VA_ARGS__);                         \
        if (n_ > 0) len = len + (size_t)n_ < cap ? len + (size_t)n_ : cap - 1;        \
    } while (0)
    for (size_t i = 0; i < conf->nprofiles && len + 1 < cap; i++) {
        const struct kd_profile *p = &conf->profiles[i];
        if (p->role != KTLSX_SERVER) continue;
        struct ktlsx_ticket_key_info keys[8];
        size_t n = ktlsx_config_ticket_keys(p->cfg, keys, 8);
        KD_ADD("profile %s: %zu ticket keys (%s)\n", p->name, n,
               conf->nticket_key_files ? "from ticket_key_file" : "random, rotated by the daemon");
        for (size_t k = 0; k < n && k < 8 && len + 1 < cap; k++) {
            char hex[33];
            for (size_t b = 0; b < 16; b++) snprintf(hex + 2 * b, 3, "%02x", keys[k].name[b]);
            KD_ADD("  %s  age %llu s  %s\n", hex, (unsigned long long)keys[k].age_s,
                   keys[k].seals ? "seals and opens" : "opens only");
        }
    }
    for (size_t k = 0; k < conf->nticket_key_files && len + 1 < cap; k++)
        KD_ADD("file %s (%s)\n", conf->ticket_key_files[k], k == 0 ? "seals" : "opens");
#undef KD_ADD
    kd_conf_drop();
    return len;
}

/* issue 12: the memcached session store's counters of each server profile
 * that has one, appended to `stats` (text) and `stats prometheus`.  The
 * counters live in the profile's configuration, so a reload starts them
 * again (as the configuration's session cache does). */
static size_t store_stats(char *out, size_t cap, bool prom)
{
    size_t len = 0;
    const struct kd_conf *conf = kd_conf_hold();
    static const char *const names[] = { "hits", "misses", "errors", "rejected", "puts" };
    static const char *const help[] = {
        "Sessions found in the memcached store and opened.",
        "Session lookups the memcached store did not hold.",
        "Memcached operations that failed or timed out (a full handshake each).",
        "Memcached entries that failed authentication (forged, corrupted, another key).",
        "Sessions written to the memcached store.",
    };
    bool any = false;
    for (size_t i = 0; i < conf->nprofiles; i++) {
        struct ktlsx_session_stats st;
        if (conf->profiles[i].role != KTLSX_SERVER || ktlsx_config_session_stats(conf->profiles[i].cfg, &st) < 0 ||
            !st.store_servers)
            continue;
        any = true;
    }
    for (size_t k = 0; any && k < 5 && len + 1 < cap; k++) {
        int n = 0;
        if (prom)
            n = snprintf(out + len, cap - len, "# HELP ktlsxd_session_store_%s_total %s\n"
                         "# TYPE ktlsxd_session_store_%s_total counter\n", names[k], help[k], names[k]);
        if (n > 0) len = len + (size_t)n < cap ? len + (size_t)n : cap - 1;
        for (size_t i = 0; i < conf->nprofiles && len + 1 < cap; i++) {
            const struct kd_profile *p = &conf->profiles[i];
            struct ktlsx_session_stats st;
            if (p->role != KTLSX_SERVER || ktlsx_config_session_stats(p->cfg, &st) < 0 || !st.store_servers) continue;
            uint64_t v[] = { st.store_hits, st.store_misses, st.store_errors, st.store_rejected, st.store_puts };
            if (prom) n = snprintf(out + len, cap - len, "ktlsxd_session_store_%s_total{profile=\"%s\"} %llu\n",
                                   names[k], p->name, (unsigned long long)v[k]);
            else if (k == 0)
                n = snprintf(out + len, cap - len, "session store (memcached) %s: hits %llu, misses %llu, errors %llu, "
                             "rejected %llu, puts %llu, slowest operation %llu ms\n", p->name,
                             (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
                             (unsigned long long)v[3], (unsigned long long)v[4], (unsigned long long)st.store_slowest_ms);
            else n = 0;
            if (n > 0) len = len + (size_t)n < cap ? len + (size_t)n : cap - 1;
        }
    }
    kd_conf_drop();
    return len;
}

static void serve(struct ctl_conn *c)
{
    char req[128];
    ssize_t n = recv(c->fd, req, sizeof req - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) return conn_close(c);
    req[n] = '\0';
    while (n > 0 && (req[n - 1] == '\n' || req[n - 1] == ' ')) req[--n] = '\0';
    char *answer = malloc(CTL_ANSWER_MAX);
    if (!answer) return conn_close(c);
    size_t len;
    if (!allowed(c->uid)) {
        len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "error: denied: uid %u is not root, the daemon's uid or in "
                               "control_allow_uids\n", (unsigned)c->uid);
    } else if (!strcmp(req, "ping")) {
        len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "ok pong: ktlsxd %s pid %d, %d workers, %zu in flight\n",
                               KTLSX_VERSION_STRING, (int)getpid(), ctl.workers, kd_door_inflight());
    } else if (!strcmp(req, "stats") || !strcmp(req, "stats prometheus")) {
        bool prom = req[5] != '\0';
        len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "ok\n");
        len += kd_stats_format(answer + len, CTL_ANSWER_MAX - len, prom, ctl.workers, ctl.started);
        if (len < CTL_ANSWER_MAX - 1) len += store_stats(answer + len, CTL_ANSWER_MAX - len, prom);
    } else if (!strcmp(req, "sessions")) {
        len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "ok\n");
        len += sessions(answer + len, CTL_ANSWER_MAX - len);
    } else if (!strcmp(req, "ticket-keys")) {
        len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "ok\n");
        len += ticket_keys(answer + len, CTL_ANSWER_MAX - len);
    } else if (!strcmp(req, "reload")) {
        char err[1024];
        if (kd_reload(err, sizeof err) == 0) len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "ok reloaded\n");
        else len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "error: reload refused, the running configuration "
                                    "stays: %s\n", err);
    } else {
        len = (size_t)snprintf(answer, CTL_ANSWER_MAX, "error: unknown command '%.60s' (want ping, stats, stats "
                               "prometheus, sessions, ticket-keys or reload)\n", req);
    }
    if (len >= CTL_ANSWER_MAX) len = CTL_ANSWER_MAX - 1;
    if (send(c->fd, answer, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        kd_log(KTLSX_LOG_INFO, "control: uid %u: answer not delivered: %s", (unsigned)c->uid, strerror(errno));
    free(answer);
    c->deadline = kd_now_ms() + CTL_IDLE_MS;
}

static void on_conn(struct kd_watch *w, uint32_t events)
{
    (void)events;
    struct ctl_conn *c = (struct ctl_conn *)((char *)w - offsetof(struct ctl_conn, w));
    if (c->used) serve(c);
}

static void on_listen(struct kd_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    for (;;) {
        int fd = accept4(ctl.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct ctl_conn *c = NULL;
        for (int i = 0; i < CTL_MAX_CONNS && !c; i++)
            if (!ctl.conns[i].used && kd_watch_idle(&ctl.conns[i].w)) c = &ctl.conns[i];
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            static const char busy[] = "error: busy: too many control connections\n";
            (void)send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            close(fd);
            continue;
        }
        memset(c, 0, sizeof *c);
        c->w.fn = on_conn;
        c->fd = fd;
        c->uid = cred.uid;
        c->used = true;
        c->deadline = kd_now_ms() + CTL_IDLE_MS;
        if (kd_watch_fd(fd, EPOLL_CTL_ADD, EPOLLIN, &c->w) < 0) conn_close(c);
    }
}

/* ---- issue 12: reload when a ticket key file changes ----
 *
 * Once a second the main thread stats the configured ticket_key_file paths
 * and compares device, inode, size and modification time (ns) with what it
 * saw last; any difference reloads the configuration, exactly as SIGHUP does
 * (the keys live in each profile's configuration, which does not change
 * once in use).  A stat poll rather than inotify: the ways key files get
 * replaced are an atomic rename over the old name, a symlink flip (Kubernetes
 * secrets, `..data`) or a copy from a distribution tool, and an inotify watch
 * on the file misses the first two (it follows the old inode) unless the
 * directory is watched and names matched; a stat follows the name whatever
 * happened, works on network file systems where inotify sees nothing, needs
 * no extra descriptor or system call under the seccomp filter (newfstatat is
 * already there) and costs at most 3 stat calls a second.  A refused reload
 * (a half-written file: wrong size) keeps the running keys; the next change
 * (the rest of the write) tries again. */
#define KEY_POLL_MS 1000

struct key_seen {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static struct {
    size_t n;
    char paths[KD_MAX_TICKET_KEY_FILES][4096];
    struct key_seen seen[KD_MAX_TICKET_KEY_FILES];
    int64_t next;
} keys;

static struct key_seen key_stat(const char *path)
{
    struct stat st;
    struct key_seen k = { 0 };
    if (stat(path, &st) == 0) k = (struct key_seen){ true, st.st_dev, st.st_ino, st.st_size, st.st_mtim };
    return k;
}

static bool key_same(const struct key_seen *a, const struct key_seen *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The running configuration's key files; true when they are the ones watched. */
static bool keys_same_list(void)
{
    const struct kd_conf *conf = kd_conf_hold();
    bool same = conf->nticket_key_files == keys.n;
    for (size_t i = 0; same && i < keys.n; i++) same = !strcmp(conf->ticket_key_files[i], keys.paths[i]);
    if (!same) {
        keys.n = conf->nticket_key_files;
        for (size_t i = 0; i < keys.n; i++) {
            memcpy(keys.paths[i], conf->ticket_key_files[i], sizeof keys.paths[i]);
            keys.seen[i] = key_stat(keys.paths[i]);
        }
    }
    kd_conf_drop();
    return same;
}

static void keys_check(int64_t now)
{
    if (now < keys.next) return;
    keys.next = now + KEY_POLL_MS;
    if (!keys_same_list()) return; /* a reload changed the list: watched from now on */
    size_t changed = keys.n;
    for (size_t i = 0; i < keys.n; i++) {
        struct key_seen k = key_stat(keys.paths[i]);
        if (!key_same(&k, &keys.seen[i]) && changed == keys.n) changed = i;
        keys.seen[i] = k;
    }
    if (changed == keys.n) return;
    kd_log(KTLSX_LOG_INFO, "ticket key file %s changed: reloading", keys.paths[changed]);
    char err[1024];
    (void)kd_reload(err, sizeof err); /* a refusal is logged there; the running keys stay */
    (void)keys_same_list();
}

int kd_control_open(const struct kd_conf *conf, int workers)
{
    ctl.workers = workers;
    ctl.started = kd_now_ms();
    memcpy(ctl.allow, conf->control_uids, sizeof ctl.allow);
    ctl.nallow = conf->ncontrol_uids;
    ctl.any = conf->control_any_uid;
    /* The key files are first looked at by the first tick, once the daemon runs
     * as its user (a file root could stat and the user cannot would otherwise
     * look changed at once). */
    keys.next = ctl.started;
    if (!conf->control_path[0]) return 0;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(ctl.path, sizeof ctl.path, "%s", conf->control_path);
    memcpy(sa.sun_path, ctl.path, strlen(ctl.path) + 1);
    ctl.fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ctl.fd < 0) return kd_log(KTLSX_LOG_ERROR, "control: socket: %s", strerror(errno)), -1;
    /* The door's bind has already made sure no other daemon runs on this configuration. */
    unlink(ctl.path);
    if (bind(ctl.fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(ctl.path, 0660) < 0 || listen(ctl.fd, 16) < 0) {
        kd_log(KTLSX_LOG_ERROR, "control: %s: %s", ctl.path, strerror(errno));
        return close(ctl.fd), ctl.fd = -1, -1;
    }
    ctl.w.fn = on_listen;
    if (kd_watch_fd(ctl.fd, EPOLL_CTL_ADD, EPOLLIN, &ctl.w) < 0) return close(ctl.fd), ctl.fd = -1, -1;
    kd_log(KTLSX_LOG_INFO, "control socket at %s", ctl.path);
    return 0;
}

/* Cut control connections that said nothing for CTL_IDLE_MS, and reload
 * when a ticket key file changed; ms until the next such deadline, -1 if none. */
int kd_control_tick(void)
{
    int64_t now = kd_now_ms();
    int next = -1;
    keys_check(now);
    if (keys.n) next = (int)(keys.next - now > 0 ? keys.next - now : 0);
    for (int i = 0; i < CTL_MAX_CONNS; i++) {
        struct ctl_conn *c = &ctl.conns[i];
        if (!c->used) continue;
        if (now >= c->deadline) {
            conn_close(c);
            continue;
        }
        int left = (int)(c->deadline - now);
        if (next < 0 || left < next) next = left;
    }
    return next;
}

void kd_control_close(void)
{
    for (int i = 0; i < CTL_MAX_CONNS; i++)
        if (ctl.conns[i].used) conn_close(&ctl.conns[i]);
    if (ctl.fd < 0) return;
    (void)kd_watch_fd(ctl.fd, EPOLL_CTL_DEL, 0, &ctl.w);
    close(ctl.fd);
    ctl.fd = -1;
    unlink(ctl.path);
}
