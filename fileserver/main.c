/* ktlsx-fileserver --root DIR --listen ADDR:PORT (--cert FILE --key FILE | --daemon SOCKET --profile NAME) [options]
 * HTTPS/1.1 static files; see docs/fileserver.md. */
#include "fileserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct fs_server fs = { .root_fd = -1 };
volatile int fs_stop;
int fs_conn_count;

int64_t fs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fs_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ktlsx-fileserver: %s\n", line);
}

static void lib_log(void *arg, int level, const char *line)
{
    (void)arg;
    static int ktls_lines; /* without kernel TLS every connection says so: once is enough */
    if (level > KTLSX_LOG_WARNING) return;
    if (strstr(line, "kernel TLS") && __atomic_fetch_add(&ktls_lines, 1, __ATOMIC_RELAXED) > 0) return;
    fs_log("%s", line);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ktlsx-fileserver --root DIR --listen ADDR:PORT --cert FILE --key FILE [options]\n"
            "       ktlsx-fileserver --root DIR --listen ADDR:PORT --daemon SOCKET --profile NAME [options]\n"
            "  --daemon SOCKET         hand every TLS handshake to ktlsxd at SOCKET (the key stays there)\n"
            "  --profile NAME          ktlsxd's server profile (needs export_state = yes where kernel TLS is missing)\n"
            "  --ca FILE               CA file for client certificates\n"
            "  --verify-client         require a client certificate (needs --ca)\n"
            "  --workers N             worker threads, each with its own ring and listener (1..64, default 1)\n"
            "  --max-conns N           connection limit, all workers (default 16384, capped by RLIMIT_NOFILE - 64)\n"
            "  --max-header BYTES      largest request header section (1024..65536, default 8192; more: 413)\n"
            "  --handshake-timeout MS  TLS handshake deadline (default 10000)\n"
            "  --header-timeout MS     from a request's first byte to its end (default 10000; then 408)\n"
            "  --keepalive-timeout MS  idle time between requests (default 60000)\n"
            "  --send-timeout MS       a response that makes no progress for this long is cut (default 30000)\n"
            "  --access-log FILE       common log format, \"-\" for stderr (default: none)\n"
            "  --body sendfile|splice  with kernel TLS TX: bodies by sendfile(2) (default) or io_uring splice\n"
            "                          file -> pipe -> socket (linked SQEs); see docs/fileserver.md\n"
            "  --list-dirs             list a directory that has no index.html (default: 403)\n"
            "  --no-openat2            resolve paths without openat2 (the fallback for kernels before 5.6)\n"
            "  --session-cache SPEC    TLS 1.2 session IDs: N entries in this process (0 = off, default 1024), or\n"
            "                          memcached:HOST:PORT[,HOST:PORT...] shared by a fleet (needs --session-store-key;\n"
            "                          the in-process cache stays in front; see docs/fleet.md)\n"
            "  --session-store-key FILE  the fleet's key sealing and naming memcached entries (32..4096 bytes)\n"
            "  --session-store-timeout MS  bound on every memcached operation (1..10000, default 200)\n"
            "  --no-tickets            no session tickets (TLS 1.2 resumes by session ID only; TLS 1.3 not at all)\n"
            "  --ticket-key-file FILE  ticket key shared by the fleet (nginx layout, 48 or 80 bytes); up to 3:\n"
            "                          the first seals, all open (rotation: docs/fleet.md)\n");
}

static int parse_int(const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "ktlsx-fileserver: %s: '%s' is not a number in %ld..%ld\n", name, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    long port;
    if (!colon || (size_t)(colon - s) >= sizeof host) goto bad;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (parse_int("--listen port", colon + 1, 0, 65535, &port) < 0) return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!host[0] || strcmp(host, "*") == 0) sa->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0) sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) goto bad;
    return 0;
bad:
    fprintf(stderr, "ktlsx-fileserver: --listen: '%s' is not IPV4:PORT (e.g. 127.0.0.1:8443)\n", s);
    return -1;
}

static int make_listener(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* A start that fails half way: the first n workers have a listener and a ring,
 * worker n a listener too when n_listening. */
static void workers_free(struct fs_worker *w, int n, bool n_listening)
{
    for (int i = 0; i < n; i++) {
        io_uring_queue_exit(&w[i].ring);
        close(w[i].lfd);
    }
    if (n_listening) close(w[n].lfd);
    free(w);
}

int main(int argc, char **argv)
{
    struct fs_options *o = &fs.opt;
    *o = (struct fs_options){ .workers = 1, .max_conns = 16384, .max_header = 8192, .handshake_ms = 10000,
                              .header_ms = 10000, .keepalive_ms = 60000, .send_ms = 30000 };
    enum { O_ROOT = 256, O_LISTEN, O_CERT, O_KEY, O_CA, O_VERIFY, O_WORKERS, O_MAXC, O_MAXH, O_HS, O_HDR, O_KA,
           O_SEND, O_LOG, O_NOOA2, O_LIST, O_DAEMON, O_PROFILE, O_BODY, O_HELP, O_SCACHE, O_SKEY, O_STMO, O_TKF, O_NOTK };
    static const struct option opts[] = {
        { "root", required_argument, 0, O_ROOT }, { "listen", required_argument, 0, O_LISTEN },
        { "cert", required_argument, 0, O_CERT }, { "key", required_argument, 0, O_KEY },
        { "ca", required_argument, 0, O_CA }, { "verify-client", no_argument, 0, O_VERIFY },
        { "workers", required_argument, 0, O_WORKERS }, { "max-conns", required_argument, 0, O_MAXC },
        { "max-header", required_argument, 0, O_MAXH }, { "handshake-timeout", required_argument, 0, O_HS },
        { "header-timeout", required_argument, 0, O_HDR }, { "keepalive-timeout", required_argument, 0, O_KA },
        { "send-timeout", required_argument, 0, O_SEND }, { "access-log", required_argument, 0, O_LOG },
        { "no-openat2", no_argument, 0, O_NOOA2 }, { "list-dirs", no_argument, 0, O_LIST },
        { "daemon", required_argument, 0, O_DAEMON }, { "profile", required_argument, 0, O_PROFILE },
        { "body", required_argument, 0, O_BODY },
        { "help", no_argument, 0, O_HELP },
        { "session-cache", required_argument, 0, O_SCACHE }, { "session-store-key", required_argument, 0, O_SKEY },
        { "session-store-timeout", required_argument, 0, O_STMO }, { "ticket-key-file", required_argument, 0, O_TKF },
        { "no-tickets", no_argument, 0, O_NOTK },
        { 0, 0, 0, 0 }
    };
    int c;
    long v;
    /* issue 12: resumption shared by a fleet (the library does the work; options only here) */
    const char *session_cache = NULL, *store_key = NULL, *ticket_files[3];
    long store_tmo = 0, cache_entries = -1;
    size_t nticket_files = 0;
    bool no_tickets = false;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_ROOT: o->root = optarg; break;
        case O_LISTEN: o->listen = optarg; break;
        case O_CERT: o->cert = optarg; break;
        case O_KEY: o->key = optarg; break;
        case O_CA: o->ca = optarg; break;
        case O_VERIFY: o->verify_client = true; break;
        case O_LOG: o->access_log = optarg; break;
        case O_NOOA2: o->no_openat2 = true; break;
        case O_LIST: o->list_dirs = true; break;
        case O_DAEMON: o->daemon = optarg; break;
        case O_PROFILE: o->profile = optarg; break;
        case O_WORKERS: if (parse_int("--workers", optarg, 1, 64, &v)) return 2; o->workers = (int)v; break;
        case O_MAXC: if (parse_int("--max-conns", optarg, 1, 1000000, &v)) return 2; o->max_conns = (int)v; break;
        case O_MAXH: if (parse_int("--max-header", optarg, 1024, 65536, &v)) return 2; o->max_header = (size_t)v; break;
        case O_HS: if (parse_int("--handshake-timeout", optarg, 1, 3600000, &v)) return 2; o->handshake_ms = (int)v; break;
        case O_HDR: if (parse_int("--header-timeout", optarg, 1, 3600000, &v)) return 2; o->header_ms = (int)v; break;
        case O_KA: if (parse_int("--keepalive-timeout", optarg, 1, 86400000, &v)) return 2; o->keepalive_ms = (int)v; break;
        case O_SEND: if (parse_int("--send-timeout", optarg, 1, 3600000, &v)) return 2; o->send_ms = (int)v; break;
        case O_BODY:
            if (!strcmp(optarg, "sendfile")) o->body = FS_BODY_SENDFILE;
            else if (!strcmp(optarg, "splice")) o->body = FS_BODY_SPLICE;
            else {
                fprintf(stderr, "ktlsx-fileserver: --body %s: want sendfile or splice\n", optarg);
                return 2;
            }
            break;
        case O_SCACHE: session_cache = optarg; break;
        case O_NOTK: no_tickets = true; break;
        case O_SKEY: store_key = optarg; break;
        case O_STMO: if (parse_int("--session-store-timeout", optarg, 1, 10000, &v)) return 2; store_tmo = v; break;
        case O_TKF:
            if (nticket_files == 3) {
                fprintf(stderr, "ktlsx-fileserver: --ticket-key-file: at most 3 (the first seals, all open)\n");
                return 2;
            }
            ticket_files[nticket_files++] = optarg;
            break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ktlsx-fileserver: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->daemon && (o->cert || o->key || o->ca || o->verify_client)) {
        fprintf(stderr, "ktlsx-fileserver: --daemon: the certificate, key and client verification are the daemon "
                        "profile's (no --cert, --key, --ca, --verify-client)\n");
        return 2;
    }
    if (o->daemon && (session_cache || store_key || store_tmo || nticket_files || no_tickets)) {
        fprintf(stderr, "ktlsx-fileserver: --daemon: sessions and ticket keys are the daemon profile's (session_cache, "
                        "ticket_key_file in ktlsxd.conf; no --session-cache, --session-store-*, --ticket-key-file)\n");
        return 2;
    }
    bool memcached = session_cache && strncmp(session_cache, "memcached:", 10) == 0;
    if (session_cache && !memcached && parse_int("--session-cache", session_cache, 0, 1000000, &cache_entries)) return 2;
    if (memcached && !session_cache[10]) {
        fprintf(stderr, "ktlsx-fileserver: --session-cache: want memcached:HOST:PORT[,HOST:PORT...]\n");
        return 2;
    }
    if (memcached != (store_key != NULL) || (store_tmo && !memcached)) {
        fprintf(stderr, "ktlsx-fileserver: %s\n", memcached ? "--session-cache memcached:... needs --session-store-key FILE"
                                                            : "--session-store-key and --session-store-timeout go with "
                                                              "--session-cache memcached:...");
        return 2;
    }
    if (o->profile && !o->daemon) {
        fprintf(stderr, "ktlsx-fileserver: --profile needs --daemon SOCKET\n");
        return 2;
    }
    const char *missing = !o->root ? "--root" : !o->listen ? "--listen"
                        : o->daemon ? (!o->profile ? "--profile" : NULL)
                        : !o->cert ? "--cert" : !o->key ? "--key" : NULL;
    if (missing) {
        fprintf(stderr, "ktlsx-fileserver: %s is required\n", missing);
        usage(stderr);
        return 2;
    }
    if (o->verify_client && !o->ca) {
        fprintf(stderr, "ktlsx-fileserver: --verify-client needs --ca FILE\n");
        return 2;
    }
    if (parse_listen(o->listen, &fs.addr) < 0) return 2;

    fs.root_fd = open(o->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fs.root_fd < 0) {
        fprintf(stderr, "ktlsx-fileserver: --root %s: %s\n", o->root, strerror(errno));
        return 2;
    }
    fs.have_openat2 = !o->no_openat2;
    if (fs.have_openat2) {
        struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH };
        long fd = syscall(SYS_openat2, fs.root_fd, ".", &how, sizeof how);
        if (fd >= 0) close((int)fd);
        else if (errno == ENOSYS) {
            fs.have_openat2 = false;
            fs_log("openat2 is not in this kernel: paths resolved component by component, no symlink followed");
        }
    }

    if (o->daemon && (strlen(o->profile) == 0 || strlen(o->profile) > KTLSX_DOOR_NAME_MAX)) {
        fprintf(stderr, "ktlsx-fileserver: --profile '%s': 1 to %d bytes\n", o->profile, KTLSX_DOOR_NAME_MAX);
        return 2;
    }
    if (o->daemon) {
        /* The handshakes are ktlsxd's: no configuration, no key in this process. */
    } else if (!(fs.cfg = ktlsx_config_new(KTLSX_SERVER))) {
        fs_log("out of memory");
        return 1;
    } else if (ktlsx_config_add_cert(fs.cfg, o->cert, o->key) < 0 || ktlsx_config_set_alpn(fs.cfg, "http/1.1") < 0 ||
        (o->ca && ktlsx_config_set_ca_file(fs.cfg, o->ca) < 0) ||
        (o->ca && ktlsx_config_set_verify_client(fs.cfg, o->verify_client ? KTLSX_VERIFY_REQUIRE
                                                                          : KTLSX_VERIFY_OPTIONAL) < 0) ||
        ktlsx_config_set_log(fs.cfg, lib_log, NULL) < 0 ||
        (no_tickets && ktlsx_config_set_tickets(fs.cfg, 0, 0) < 0) ||
        (cache_entries >= 0 && ktlsx_config_set_session_cache(fs.cfg, (size_t)cache_entries, 300) < 0) ||
        (memcached && ktlsx_config_set_memcached_store(fs.cfg, session_cache + 10, store_key, (unsigned)store_tmo) < 0) ||
        (nticket_files > 0 && ktlsx_config_add_ticket_key_file(fs.cfg, ticket_files[0]) < 0) ||
        (nticket_files > 1 && ktlsx_config_add_ticket_key_file(fs.cfg, ticket_files[1]) < 0) ||
        (nticket_files > 2 && ktlsx_config_add_ticket_key_file(fs.cfg, ticket_files[2]) < 0)) {
        fprintf(stderr, "ktlsx-fileserver: %s\n", ktlsx_config_error(fs.cfg));
        ktlsx_config_free(fs.cfg);
        return 2;
    }
    if (o->access_log) {
        fs.access_log = strcmp(o->access_log, "-") == 0 ? stderr : fopen(o->access_log, "ae");
        if (!fs.access_log) {
            fprintf(stderr, "ktlsx-fileserver: --access-log %s: %s\n", o->access_log, strerror(errno));
            return 2;
        }
    }

    /* Every connection is an fd: the limit must fit under RLIMIT_NOFILE (plus files being sent). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
            (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
        long room = (long)rl.rlim_cur - 64; /* a download holds its file's fd too: EMFILE there is a 503 */
        if (room < 1) room = 1;
        if (o->max_conns > room) {
            fs_log("--max-conns %d lowered to %ld: the fd limit is %ld", o->max_conns,
                   room, (long)rl.rlim_cur);
            o->max_conns = (int)room;
        }
    }

    struct fs_worker *workers = calloc((size_t)o->workers, sizeof *workers);
    if (!workers) return 1;
    for (int i = 0; i < o->workers; i++) {
        workers[i].id = i;
        workers[i].lfd = make_listener(&fs.addr);
        if (workers[i].lfd < 0) {
            fprintf(stderr, "ktlsx-fileserver: --listen %s: %s\n", o->listen, strerror(errno));
            workers_free(workers, i, false);
            return 1;
        }
        /* The rings are physically contiguous pages on older kernels (6.1 asks for them with
         * __GFP_NORETRY): a fragmented machine refuses 4096 entries now and then.  A smaller ring
         * only means fewer operations in flight per submit, so halve rather than fail. */
        unsigned entries = 4096;
        int rc = io_uring_queue_init(entries, &workers[i].ring, 0);
        while (rc == -ENOMEM && entries > 256) {
            entries /= 2;
            rc = io_uring_queue_init(entries, &workers[i].ring, 0);
            if (rc == 0) fs_log("worker %d: io_uring with %u entries (4096 refused: out of contiguous memory)", i, entries);
        }
        if (rc < 0) {
            fprintf(stderr, "ktlsx-fileserver: io_uring cannot be set up: %s%s\n", strerror(-rc),
                    rc == -EPERM ? " (kernel.io_uring_disabled or a seccomp filter)" : "");
            workers_free(workers, i, true);
            return 1;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit it: only sigwait below takes them */
    pthread_t *tids = calloc((size_t)o->workers, sizeof *tids);
    if (!tids) return 1;
    for (int i = 0; i < o->workers; i++)
        if (pthread_create(&tids[i], NULL, fs_worker_run, &workers[i]) != 0) {
            fs_log("cannot start worker %d", i);
            return 1;
        }
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &fs.addr.sin_addr, addr, sizeof addr);
    fs_log("serving %s on https://%s:%d/ (%d worker%s, io_uring, %s path resolution, at most %d connections)",
           o->root, addr, ntohs(fs.addr.sin_port), o->workers, o->workers == 1 ? "" : "s",
           fs.have_openat2 ? "openat2 RESOLVE_BENEATH" : "O_NOFOLLOW walk", o->max_conns);
    int sig = 0;
    sigwait(&set, &sig);
    fs_log("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    fs_stop = 1;
    for (int i = 0; i < o->workers; i++) pthread_join(tids[i], NULL);
    free(tids);
    free(workers);
    ktlsx_config_free(fs.cfg);
    close(fs.root_fd);
    if (fs.access_log && fs.access_log != stderr) fclose(fs.access_log);
    return 0;
}
