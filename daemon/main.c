/* ktlsxd: the handshake daemon.  Arguments, start-up, privileges, signals, workers.
 *
 *   ktlsxd [-c FILE]             serve (FILE default /etc/ktlsx/ktlsxd.conf)
 *   ktlsxd --check [-c FILE]     validate FILE: exit 0, or 2 with "file:line: problem"
 *
 * Start-up, as root: read the configuration (certificates, keys), bind the
 * door and the control socket (or take the door from systemd: LISTEN_FDS),
 * then drop to `user` (no capabilities left, no way back) and start the
 * workers.  Each worker is a thread with its own event loop (loop.c: io_uring,
 * else epoll) running door connections and their handshakes (door_local.c);
 * no thread or process per handshake.  The main thread keeps the signals
 * (a signalfd) and the control socket (control.c) on a loop of its own:
 * SIGHUP or `ktlsxctl reload` builds the new configuration whole and swaps it
 * in (handshakes in flight keep the one they started on, which the library's
 * reference count keeps alive; a file that does not load leaves the old one
 * serving), SIGTERM/SIGINT stop accepting, let every worker's handshakes in
 * flight end (each at its deadline at the latest) and exit 0. */
#include "ktlsxd.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

int kd_log_level = KTLSX_LOG_INFO;

void kd_log(int level, const char *fmt, ...)
{
    if (level > kd_log_level) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    static const char *const names[] = { [KTLSX_LOG_ERROR] = "error", [KTLSX_LOG_WARNING] = "warning",
                                         [KTLSX_LOG_INFO] = "info", [KTLSX_LOG_DEBUG] = "debug" };
    fprintf(stderr, "ktlsxd: %s: %s\n", level >= 0 && level <= KTLSX_LOG_DEBUG && names[level] ? names[level] : "?",
            line);
}

void kd_log_sink(void *arg, int level, const char *line)
{
    (void)arg;
    /* Without kernel TLS every handshake says so: the first time is news, the rest debug. */
    static unsigned long ktls_lines;
    if (strstr(line, "kernel TLS") && ktls_lines++ > 0 && level > KTLSX_LOG_ERROR) level = KTLSX_LOG_DEBUG;
    kd_log(level, "%s", line);
}

static const char usage[] =
    "usage: ktlsxd [-c FILE] [--check]\n"
    "  -c, --config FILE  configuration (default " KD_DEFAULT_CONF ")\n"
    "      --check        validate the configuration and exit: 0 good, 2 bad (file:line: problem)\n";

static const char *conf_path;
static int sfd = -1;
static bool stopping;

/* ---- workers ---- */
struct worker {
    pthread_t thread;
    int index;
    int wake; /* eventfd: the main thread's "look at the shared state" */
    struct kd_watch wake_w;
    bool uring;
    atomic_bool started, failed;
};
static struct worker *workers;
static int nworkers;
static atomic_bool workers_stop;

static void on_wake(struct kd_watch *w, uint32_t events)
{
    (void)events;
    struct worker *wk = (struct worker *)((char *)w - offsetof(struct worker, wake_w));
    uint64_t v;
    (void)!read(wk->wake, &v, sizeof v); /* worker_main looks at workers_stop after every batch */
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    wk->wake_w.fn = on_wake;
    if (kd_loop_init(wk->uring, wk->index == 0) < 0 || kd_watch_fd(wk->wake, EPOLL_CTL_ADD, EPOLLIN, &wk->wake_w) < 0 ||
        kd_door_attach() < 0 || kd_kernel_attach(wk->index) < 0) {
        kd_log(KTLSX_LOG_ERROR, "worker %d: setup: %s", wk->index, strerror(errno));
        atomic_store(&wk->failed, true);
        atomic_store(&wk->started, true);
        return NULL;
    }
    atomic_store(&wk->started, true);
    bool closed = false;
    for (;;) {
        if (!closed && atomic_load(&workers_stop)) kd_door_close(), kd_kernel_close(), closed = true;
        if (closed && kd_door_busy() == 0 && kd_kernel_busy() == 0) break;
        int timeout = kd_door_tick(), ktimeout = kd_kernel_tick();
        if (ktimeout >= 0 && (timeout < 0 || ktimeout < timeout)) timeout = ktimeout;
        kd_door_reap();
        kd_kernel_reap();
        if (kd_loop_wait(timeout) < 0) {
            kd_log(KTLSX_LOG_ERROR, "worker %d: event loop: %s", wk->index, strerror(errno));
            break;
        }
        kd_door_reap();
        kd_kernel_reap();
    }
    (void)kd_watch_fd(wk->wake, EPOLL_CTL_DEL, 0, &wk->wake_w);
    kd_door_reap();
    kd_kernel_reap();
    kd_loop_close();
    kd_door_worker_end();
    kd_kernel_worker_end();
    return NULL;
}

static int start_workers(int n, bool uring)
{
    workers = calloc((size_t)n, sizeof *workers);
    if (!workers) return -1;
    for (int i = 0; i < n; i++) {
        struct worker *wk = &workers[i];
        wk->index = i;
        wk->uring = uring;
        wk->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wk->wake < 0 || pthread_create(&wk->thread, NULL, worker_main, wk) != 0) {
            kd_log(KTLSX_LOG_ERROR, "worker %d: cannot start: %s", i, strerror(errno));
            if (wk->wake >= 0) close(wk->wake);
            return -1;
        }
        nworkers = i + 1;
    }
    for (int i = 0; i < n; i++) {
        while (!atomic_load(&workers[i].started)) usleep(1000);
        if (atomic_load(&workers[i].failed)) return -1;
    }
    return 0;
}

static void stop_workers(void)
{
    atomic_store(&workers_stop, true);
    for (int i = 0; i < nworkers; i++) {
        uint64_t one = 1;
        (void)!write(workers[i].wake, &one, sizeof one);
    }
}

static void join_workers(void)
{
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i].thread, NULL);
        close(workers[i].wake);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}

/* ---- reload ---- */
int kd_reload(char *err, size_t cap)
{
    const struct kd_conf *cur = kd_conf_hold();
    char socket_path[sizeof cur->socket_path];
    snprintf(socket_path, sizeof socket_path, "%s", cur->socket_path);
    kd_conf_drop();
    struct kd_conf *next = kd_conf_load(conf_path, err, cap);
    if (!next) {
        kd_log(KTLSX_LOG_ERROR, "reload refused, the running configuration stays: %s", err);
        return -1;
    }
    if (strcmp(next->socket_path, socket_path) != 0)
        kd_log(KTLSX_LOG_WARNING, "reload: socket %s -> %s takes effect at the next start", socket_path,
               next->socket_path);
    snprintf(next->socket_path, sizeof next->socket_path, "%s", socket_path);
    if (next->kernel_enabled != kd_kernel_on() && (next->kernel_enabled || kd_kernel_on()))
        kd_log(KTLSX_LOG_WARNING, "reload: [kernel] enabled = %s takes effect at the next start (the kernel door stays %s)",
               next->kernel_enabled ? "yes" : "no", kd_kernel_on() ? "open" : "closed");
    /* Sessions survive the reload: a server profile of the same name starts
     * with the old one's session cache and ticket keys. */
    cur = kd_conf_hold();
    for (size_t i = 0; i < next->nprofiles; i++) {
        const struct kd_profile *np = &next->profiles[i];
        const struct kd_profile *op = np->role == KTLSX_SERVER ? kd_conf_profile(cur, np->name, KTLSX_SERVER) : NULL;
        if (op) (void)ktlsx_config_take_sessions(np->cfg, op->cfg);
    }
    kd_conf_drop();
    kd_log_level = next->log_level;
    size_t nprofiles = next->nprofiles;
    kd_conf_free(kd_conf_swap(next)); /* each profile's configuration lives on while handshakes hold it */
    kd_log(KTLSX_LOG_INFO, "reloaded %s: %zu profiles; %zu handshakes in flight finish on the previous configuration",
           conf_path, nprofiles, kd_door_inflight());
    return 0;
}

static struct kd_watch signal_w;
static void on_signal(struct kd_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        char err[1024];
        if (si.ssi_signo == SIGHUP && !stopping) (void)kd_reload(err, sizeof err);
        else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (!stopping) kd_log(KTLSX_LOG_INFO, "signal %u: stopping", si.ssi_signo);
            stopping = true;
        }
    }
}

static void probe_kernel(void)
{
    struct ktlsx_probe_report report;
    (void)ktlsx_probe(&report);
    (void)ktlsx_probe_lines(&report, kd_log_sink, NULL);
}

/* ---- privileges ---- */
/* Never dumpable, never a core file: the process holds private keys. */
static void no_dumps(void)
{
    struct rlimit none = { 0, 0 };
    (void)setrlimit(RLIMIT_CORE, &none);
#if !defined(__SANITIZE_ADDRESS__) /* LeakSanitizer reads /proc/self/task and ptraces its own threads at exit */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
}

/* Keep CAP_NET_ADMIN alone (effective + permitted; nothing inheritable): the
 * kernel door's ACCEPT is an admin operation.  The capset system call
 * itself, as libcap is not a dependency. */
static int keep_net_admin(void)
{
    struct { uint32_t version; int pid; } hdr = { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 };
    struct { uint32_t effective, permitted, inheritable; } data[2] = { { 0 } };
    data[0].effective = data[0].permitted = 1u << 12; /* CAP_NET_ADMIN */
    return (int)syscall(SYS_capset, &hdr, data);
}

/* Become `user` for good: its uid, its gid, only its groups; no capability
 * survives (the uid change from 0 clears them, keep-caps being off) except,
 * with the kernel door open, CAP_NET_ADMIN; no_new_privs forbids regaining
 * any through exec. */
static int drop_privileges(const char *user, const char *door_path)
{
    if (!user[0]) {
        if (geteuid() == 0)
            kd_log(KTLSX_LOG_WARNING, "running as root: set user = ktlsx in [daemon] (see ktlsxd.conf(5))");
        return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    const struct passwd *pw = getpwnam(user);
    if (!pw) return kd_log(KTLSX_LOG_ERROR, "user %s: no such user", user), -1;
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid) return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        return kd_log(KTLSX_LOG_ERROR, "user %s: ktlsxd must start as root to become another user", user), -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    /* The socket's directory, so that the daemon can remove its sockets at the end. */
    char dir[108];
    snprintf(dir, sizeof dir, "%s", door_path);
    char *slash = strrchr(dir, '/');
    struct stat st;
    if (slash && slash != dir) {
        *slash = '\0';
        if (stat(dir, &st) == 0 && st.st_uid == 0 && !strncmp(dir, "/run/ktlsx", 10) && chown(dir, uid, gid) < 0)
            kd_log(KTLSX_LOG_WARNING, "%s: chown: %s", dir, strerror(errno));
    }
    bool net_admin = kd_kernel_on();
    /* The bounding set too: nothing but CAP_NET_ADMIN (with the kernel door) can come back. */
    for (int cap = 0; cap < 64; cap++)
        if ((!net_admin || cap != 12) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL) break;
    if (net_admin && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return kd_log(KTLSX_LOG_ERROR, "PR_SET_KEEPCAPS: %s", strerror(errno)), -1;
    if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return kd_log(KTLSX_LOG_ERROR, "user %s: cannot switch: %s", user, strerror(errno)), -1;
    if (net_admin && (keep_net_admin() < 0 || prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0))
        return kd_log(KTLSX_LOG_ERROR, "user %s: cannot keep CAP_NET_ADMIN: %s", user, strerror(errno)), -1;
    if (setuid(0) == 0 || seteuid(0) == 0) return kd_log(KTLSX_LOG_ERROR, "user %s: root came back", user), -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -1;
    no_dumps(); /* a uid change resets dumpable */
    kd_log(KTLSX_LOG_INFO, "running as %s (uid %u gid %u), %s", user, (unsigned)uid, (unsigned)gid,
           net_admin ? "CAP_NET_ADMIN only (the kernel door)" : "no capabilities");
    return 0;
}

/* systemd socket activation: the door is fd 3 when LISTEN_PID is us. */
static int listen_fds(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || atol(pid) != (long)getpid()) return 0;
    unsetenv("LISTEN_PID"), unsetenv("LISTEN_FDS"), unsetenv("LISTEN_FDNAMES");
    return atoi(fds);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > KD_MAX_WORKERS ? KD_MAX_WORKERS : (int)n;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "check", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    conf_path = KD_DEFAULT_CONF;
    bool check = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (o == 'c') conf_path = optarg;
        else if (o == 'k') check = true;
        else if (o == 'h') return fputs(usage, stdout), 0;
        else return fputs(usage, stderr), 2;
    }
    if (optind != argc) return fprintf(stderr, "ktlsxd: unexpected argument '%s'\n%s", argv[optind], usage), 2;
    no_dumps();
    /* Every door connection and handshake holds descriptors: take all the hard limit allows. */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &files);
    }
    char err[1024];
    struct kd_conf *conf = kd_conf_load(conf_path, err, sizeof err);
    if (!conf) return fprintf(stderr, "ktlsxd: %s\n", err), 2;
    if (check) {
        printf("ktlsxd: %s: ok, %zu profiles\n", conf_path, conf->nprofiles);
        kd_conf_free(conf);
        return 0;
    }
    kd_log_level = conf->log_level;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP), sigaddset(&sigs, SIGTERM), sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL); /* before any thread: the workers inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    signal_w.fn = on_signal;
    if (sfd < 0 || kd_loop_init(false, false) < 0 || kd_watch_fd(sfd, EPOLL_CTL_ADD, EPOLLIN, &signal_w) < 0) {
        kd_log(KTLSX_LOG_ERROR, "setup: %s", strerror(errno));
        return 1;
    }
    probe_kernel();
    int activated = listen_fds();
    int rc = activated > 0 ? kd_door_adopt(3, conf->socket_path) : kd_door_listen(conf);
    int nw = conf->workers ? conf->workers : online_cpus();
    bool uring = !conf->epoll_only;
    (void)kd_conf_swap(conf);
    if (rc < 0 || kd_control_open(conf, nw) < 0 || kd_kernel_open(conf, nw) < 0 || drop_privileges(conf->user, conf->socket_path) < 0 ||
        (conf->seccomp && kd_sandbox() < 0) || start_workers(nw, uring) < 0) {
        kd_door_stop();
        stop_workers();
        join_workers();
        kd_door_unlisten();
        kd_kernel_unopen();
        kd_control_close();
        kd_conf_free(kd_conf_swap(NULL));
        return 1;
    }
    kd_log(KTLSX_LOG_INFO, "ready: %zu profiles from %s, %d workers", conf->nprofiles, conf_path, nw);
    while (!stopping) {
        int timeout = kd_control_tick();
        if (kd_loop_wait(timeout) < 0) {
            kd_log(KTLSX_LOG_ERROR, "event loop: %s", strerror(errno));
            break;
        }
    }
    kd_door_stop();
    stop_workers();
    kd_control_close(); /* ktlsxctl has nothing to ask a stopping daemon */
    join_workers();
    kd_door_unlisten();
    kd_kernel_unopen();
    kd_log(KTLSX_LOG_INFO, "stopped");
    kd_conf_free(kd_conf_swap(NULL));
    kd_loop_close();
    close(sfd);
    return 0;
}
