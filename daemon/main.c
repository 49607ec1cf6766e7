/* ktlsxd: the handshake daemon.  Arguments, signals and the event loop.
 *
 *   ktlsxd [-c FILE] [-f]        serve (FILE default /etc/ktlsx/ktlsxd.conf)
 *   ktlsxd --check [-c FILE]     validate FILE: exit 0, or 2 with "file:line: problem"
 *
 * One thread, one event loop (loop.c: io_uring, else epoll).  Signals arrive as data on a signalfd: SIGHUP
 * reloads (the new configuration is built whole, then swapped in: handshakes
 * in flight keep the configuration they started on, which the library's
 * reference count keeps alive; a file that does not load leaves the old one
 * serving), SIGTERM/SIGINT stop accepting, let the handshakes in flight end
 * (each at its deadline at the latest) and exit 0. */
#include "ktlsxd.h"

#include <errno.h>
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

static struct kd_conf *conf;
static int sfd = -1;
static bool stopping;

static void reload(void)
{
    char err[1024];
    struct kd_conf *next = kd_conf_load(conf->path, err, sizeof err);
    if (!next) {
        kd_log(KTLSX_LOG_ERROR, "reload refused, the running configuration stays: %s", err);
        return;
    }
    if (strcmp(next->socket_path, conf->socket_path) != 0)
        kd_log(KTLSX_LOG_WARNING, "reload: socket %s -> %s takes effect at the next start", conf->socket_path,
               next->socket_path);
    snprintf(next->socket_path, sizeof next->socket_path, "%s", conf->socket_path);
    kd_door_set_conf(next);
    kd_conf_free(conf); /* each profile's configuration lives on while handshakes hold it */
    conf = next;
    kd_log_level = conf->log_level;
    kd_log(KTLSX_LOG_INFO, "reloaded %s: %zu profiles; %zu handshakes in flight finish on the previous configuration",
           conf->path, conf->nprofiles, kd_door_inflight());
}

static struct kd_watch signal_w;
static void on_signal(struct kd_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP && !stopping) reload();
        else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (!stopping) kd_log(KTLSX_LOG_INFO, "signal %u: stopping", si.ssi_signo);
            stopping = true;
            kd_door_close();
        }
    }
}

static void probe_kernel(void)
{
    struct ktlsx_probe_report report;
    (void)ktlsx_probe(&report);
    (void)ktlsx_probe_lines(&report, kd_log_sink, NULL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "check", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    const char *path = KD_DEFAULT_CONF;
    bool check = false;
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (o == 'c') path = optarg;
        else if (o == 'k') check = true;
        else if (o == 'h') return fputs(usage, stdout), 0;
        else return fputs(usage, stderr), 2;
    }
    if (optind != argc) return fprintf(stderr, "ktlsxd: unexpected argument '%s'\n%s", argv[optind], usage), 2;
    char err[1024];
    conf = kd_conf_load(path, err, sizeof err);
    if (!conf) return fprintf(stderr, "ktlsxd: %s\n", err), 2;
    if (check) {
        printf("ktlsxd: %s: ok, %zu profiles\n", path, conf->nprofiles);
        kd_conf_free(conf);
        return 0;
    }
    kd_log_level = conf->log_level;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP), sigaddset(&sigs, SIGTERM), sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    signal_w.fn = on_signal;
    if (sfd < 0 || kd_loop_init(!conf->epoll_only) < 0 || kd_watch_fd(sfd, EPOLL_CTL_ADD, EPOLLIN, &signal_w) < 0) {
        kd_log(KTLSX_LOG_ERROR, "setup: %s", strerror(errno));
        return 1;
    }
    probe_kernel();
    if (kd_door_open(conf) < 0) return kd_conf_free(conf), 1;
    kd_log(KTLSX_LOG_INFO, "ready: %zu profiles from %s", conf->nprofiles, conf->path);
    while (!stopping || kd_door_busy() > 0) {
        int timeout = kd_door_tick();
        kd_door_reap();
        if (kd_loop_wait(timeout) < 0) {
            kd_log(KTLSX_LOG_ERROR, "event loop: %s", strerror(errno));
            break;
        }
        kd_door_reap();
    }
    kd_log(KTLSX_LOG_INFO, "stopped");
    kd_door_reap();
    kd_conf_free(conf);
    kd_loop_close();
    close(sfd);
    return 0;
}
