/* ktlsx-load HOST:PORT [options] — options, threads, pinning, the report.  See docs/loadgen.md. */
#include "load.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

void loop_set_log(ktlsx_config *cfg);

static const char usage[] =
    "usage: ktlsx-load HOST:PORT [options]\n"
    "  --mode full|resumed|requests|download   what to measure (default full)\n"
    "      full      connect, full handshake, [one GET --path], close: handshakes/s\n"
    "      resumed   the same offering the last session (ticket or session ID): handshakes/s\n"
    "      requests  keep-alive GET --path (default /) over and over on each connection: requests/s\n"
    "      download  keep-alive GET --path, body checked against Content-Length: bytes/s\n"
    "  --path P               request path (full/resumed: send one request per connection)\n"
    "  --expect-size N        every response body must be exactly N bytes\n"
    "  --resume ticket|id     resumed mode: what the server is expected to resume by (default ticket)\n"
    "  --connections N        concurrent connections (default 16)\n"
    "  --threads N            event loops, one thread each (default 1)\n"
    "  --duration S           measured seconds (default 5)\n"
    "  --warmup S             seconds run before measuring (default 1)\n"
    "  --timeout MS           deadline of each connect+handshake and of each request (default 5000)\n"
    "  --tls 1.2|1.3          protocol version (default: offer both)\n"
    "  --groups LIST --ciphers LIST   as in `ktlsx client`\n"
    "  --ca FILE | --insecure trust anchors (default: the system store) | no verification\n"
    "  --sni NAME             server name sent and verified (default: HOST unless an IP)\n"
    "  --ktls auto|off        kernel TLS on the client side (default auto)\n"
    "  --cpu LIST             pin to these CPUs (sched_setaffinity), e.g. 1 or 2,3\n"
    "  --json                 print the report as one JSON object\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "ktlsx-load: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(ktlsx-load --help for the options)\n");
    return 2;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int parse_target(struct opts *o, const char *t)
{
    char host[256], port[16];
    const char *colon = strrchr(t, ':');
    if (!colon || colon == t || !colon[1] || (size_t)(colon - t) >= sizeof host || strlen(colon + 1) >= sizeof port) return -1;
    memcpy(host, t, (size_t)(colon - t)), host[colon - t] = '\0';
    snprintf(port, sizeof port, "%s", colon + 1);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') memmove(host, host + 1, strlen(host)), host[strlen(host) - 1] = '\0';
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) return fprintf(stderr, "ktlsx-load: %s: %s\n", t, gai_strerror(rc)), -1;
    memcpy(&o->addr, ai->ai_addr, ai->ai_addrlen), o->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(o->host, sizeof o->host, "%s", host);
    o->target = t;
    return 0;
}

static int pin(const char *list)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (const char *p = list; *p;) {
        char *end;
        long c = strtol(p, &end, 10);
        if (end == p || c < 0 || c >= CPU_SETSIZE || (*end && *end != ',')) return usage_error("--cpu %s: want a CPU number list like 1 or 2,3", list);
        CPU_SET((int)c, &set);
        p = *end ? end + 1 : end;
    }
    if (sched_setaffinity(0, sizeof set, &set) < 0) return fprintf(stderr, "ktlsx-load: --cpu %s: %s\n", list, strerror(errno)), 1;
    return 0;
}

static const char *const mode_name[] = { "full", "resumed", "requests", "download" };

static void on_signal(int sig) { (void)sig, g_stop = 1; }

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", (unsigned char)*s);
        else putchar(*s);
    }
    putchar('"');
}

/* user + system CPU seconds of the whole process so far */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void report(const struct opts *o, const struct stats *st, double secs, double cpu_pct)
{
    uint64_t errs = 0;
    for (int k = 0; k < ERR_KINDS; k++) errs += st->errors[k];
    double rate = secs > 0 ? (double)st->ok / secs : 0, bps = secs > 0 ? (double)st->body_bytes / secs : 0;
    double res_pct = st->handshakes ? 100.0 * (double)st->resumed / (double)st->handshakes : 0;
    const struct hist *h = &st->lat;
    const char *lat_of = o->mode == MODE_FULL || o->mode == MODE_RESUMED ? "handshake" : "request";
    const char *unit = o->mode == MODE_FULL || o->mode == MODE_RESUMED ? "handshakes/s" : "requests/s";
    const char *tls = o->tls == KTLSX_TLS13 ? "1.3" : o->tls == KTLSX_TLS12 ? "1.2" : "1.2-1.3";
    if (o->json) {
        printf("{\"tool\":\"ktlsx-load\",\"version\":\"" KTLSX_VERSION_STRING "\",\"mode\":\"%s\",\"target\":", mode_name[o->mode]);
        json_str(o->target);
        printf(",\"tls\":\"%s\",\"connections\":%d,\"threads\":%d,\"warmup_s\":%.3f,\"duration_s\":%.3f", tls, o->connections,
               o->threads, o->warmup_s, secs);
        printf(",\"ok\":%llu,\"rate\":%.1f,\"rate_unit\":\"%s\",\"handshakes\":%llu,\"resumed\":%llu,\"resumed_pct\":%.2f,\"offered\":%llu",
               (unsigned long long)st->ok, rate, unit, (unsigned long long)st->handshakes, (unsigned long long)st->resumed,
               res_pct, (unsigned long long)st->offered);
        printf(",\"requests\":%llu,\"bytes_tx\":%llu,\"bytes_rx\":%llu,\"body_bytes\":%llu,\"body_bytes_per_s\":%.0f",
               (unsigned long long)st->requests, (unsigned long long)st->bytes_tx, (unsigned long long)st->bytes_rx,
               (unsigned long long)st->body_bytes, bps);
        printf(",\"latency_of\":\"%s\",\"latency_us\":{\"count\":%llu,\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
               lat_of, (unsigned long long)h->count, h->count ? (double)h->min_ns / 1e3 : 0,
               h->count ? (double)h->sum_ns / (double)h->count / 1e3 : 0, (double)hist_quantile(h, 0.5) / 1e3,
               (double)hist_quantile(h, 0.99) / 1e3, (double)hist_quantile(h, 0.999) / 1e3, (double)h->max_ns / 1e3);
        printf(",\"errors\":{\"total\":%llu", (unsigned long long)errs);
        for (int k = 0; k < ERR_KINDS; k++) printf(",\"%s\":%llu", err_kind_name[k], (unsigned long long)st->errors[k]);
        printf("},\"first_error\":{");
        for (int k = 0, n = 0; k < ERR_KINDS; k++)
            if (st->first_error[k][0]) printf("%s\"%s\":", n++ ? "," : "", err_kind_name[k]), json_str(st->first_error[k]);
        printf("},\"unfinished\":%llu,\"client_cpu_pct\":%.1f}\n", (unsigned long long)st->unfinished, cpu_pct);
        return;
    }
    printf("ktlsx-load: mode %s, %s, TLS %s, %d connections, %d thread(s), warmup %.1f s, measured %.3f s\n",
           mode_name[o->mode], o->target, tls, o->connections, o->threads, o->warmup_s, secs);
    printf("  rate        %.1f %s (%llu ok)\n", rate, unit, (unsigned long long)st->ok);
    printf("  handshakes  %llu, resumed %llu (%.1f %%), a session offered %llu\n", (unsigned long long)st->handshakes,
           (unsigned long long)st->resumed, res_pct, (unsigned long long)st->offered);
    printf("  requests    %llu; bytes sent %llu, received %llu, body %llu (%.2f MB/s)\n", (unsigned long long)st->requests,
           (unsigned long long)st->bytes_tx, (unsigned long long)st->bytes_rx, (unsigned long long)st->body_bytes, bps / 1e6);
    printf("  latency     (%s, %llu samples) min %.3f  p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n", lat_of,
           (unsigned long long)h->count, h->count ? (double)h->min_ns / 1e6 : 0, (double)hist_quantile(h, 0.5) / 1e6,
           (double)hist_quantile(h, 0.99) / 1e6, (double)hist_quantile(h, 0.999) / 1e6, (double)h->max_ns / 1e6);
    printf("  errors      %llu:", (unsigned long long)errs);
    for (int k = 0; k < ERR_KINDS; k++) printf(" %s %llu", err_kind_name[k], (unsigned long long)st->errors[k]);
    printf("; unfinished at the end %llu\n", (unsigned long long)st->unfinished);
    printf("  client CPU  %.1f %% of one CPU over the whole run (warmup included)\n", cpu_pct);
    for (int k = 0; k < ERR_KINDS; k++)
        if (st->first_error[k][0]) printf("  first %s error: %s\n", err_kind_name[k], st->first_error[k]);
}

int main(int argc, char **argv)
{
    enum { O_MODE = 256, O_PATH, O_EXPECT, O_RESUME, O_CONNS, O_THREADS, O_DURATION, O_WARMUP, O_TIMEOUT, O_TLS,
           O_GROUPS, O_CIPHERS, O_CA, O_INSECURE, O_SNI, O_KTLS, O_CPU, O_JSON, O_HELP };
    static const struct option lopts[] = {
        { "mode", 1, NULL, O_MODE }, { "path", 1, NULL, O_PATH }, { "expect-size", 1, NULL, O_EXPECT },
        { "resume", 1, NULL, O_RESUME }, { "connections", 1, NULL, O_CONNS }, { "threads", 1, NULL, O_THREADS },
        { "duration", 1, NULL, O_DURATION }, { "warmup", 1, NULL, O_WARMUP }, { "timeout", 1, NULL, O_TIMEOUT },
        { "tls", 1, NULL, O_TLS }, { "groups", 1, NULL, O_GROUPS }, { "ciphers", 1, NULL, O_CIPHERS },
        { "ca", 1, NULL, O_CA }, { "insecure", 0, NULL, O_INSECURE }, { "sni", 1, NULL, O_SNI },
        { "ktls", 1, NULL, O_KTLS }, { "cpu", 1, NULL, O_CPU }, { "json", 0, NULL, O_JSON }, { "help", 0, NULL, O_HELP },
        { 0 } };
    static struct opts o = { .connections = 16, .threads = 1, .duration_s = 5, .warmup_s = 1, .timeout_ms = 5000,
                             .expect_size = -1, .resume = "ticket" };
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        switch (c) {
        case O_MODE:
            for (o.mode = MODE_FULL; o.mode <= MODE_DOWNLOAD && strcmp(optarg, mode_name[o.mode]) != 0; o.mode++) {}
            if (o.mode > MODE_DOWNLOAD) return usage_error("--mode %s: want full, resumed, requests or download", optarg);
            break;
        case O_PATH:
            if (optarg[0] != '/' || strpbrk(optarg, " \r\n") || strlen(optarg) > 512) return usage_error("--path %s: want /... without spaces, at most 512 bytes", optarg);
            o.path = optarg;
            break;
        case O_EXPECT:
            if (parse_num(optarg, 0, 1e15, &v)) return usage_error("--expect-size %s: want a byte count", optarg);
            o.expect_size = (long long)v;
            break;
        case O_RESUME:
            if (strcmp(optarg, "ticket") != 0 && strcmp(optarg, "id") != 0) return usage_error("--resume %s: want ticket or id", optarg);
            o.resume = optarg;
            break;
        case O_CONNS:
            if (parse_num(optarg, 1, 100000, &v)) return usage_error("--connections %s: want 1 to 100000", optarg);
            o.connections = (int)v;
            break;
        case O_THREADS:
            if (parse_num(optarg, 1, 256, &v)) return usage_error("--threads %s: want 1 to 256", optarg);
            o.threads = (int)v;
            break;
        case O_DURATION:
            if (parse_num(optarg, 0.1, 86400, &v)) return usage_error("--duration %s: want 0.1 to 86400 seconds", optarg);
            o.duration_s = v;
            break;
        case O_WARMUP:
            if (parse_num(optarg, 0, 3600, &v)) return usage_error("--warmup %s: want 0 to 3600 seconds", optarg);
            o.warmup_s = v;
            break;
        case O_TIMEOUT:
            if (parse_num(optarg, 1, 600000, &v)) return usage_error("--timeout %s: want 1 to 600000 ms", optarg);
            o.timeout_ms = (int)v;
            break;
        case O_TLS:
            if (strcmp(optarg, "1.2") == 0) o.tls = KTLSX_TLS12;
            else if (strcmp(optarg, "1.3") == 0) o.tls = KTLSX_TLS13;
            else return usage_error("--tls %s: want 1.2 or 1.3", optarg);
            break;
        case O_GROUPS: o.groups = optarg; break;
        case O_CIPHERS: o.ciphers = optarg; break;
        case O_CA: o.ca = optarg; break;
        case O_INSECURE: o.insecure = true; break;
        case O_SNI: o.sni = optarg; break;
        case O_KTLS:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "off") != 0) return usage_error("--ktls %s: want auto or off", optarg);
            o.ktls_off = strcmp(optarg, "off") == 0;
            break;
        case O_CPU: o.cpus = optarg; break;
        case O_JSON: o.json = true; break;
        case O_HELP: fputs(usage, stdout); return 0;
        default: return usage_error("%s", "bad option");
        }
    }
    if (optind + 1 != argc) return usage_error("%s", optind >= argc ? "HOST:PORT is required" : "one HOST:PORT only");
    if (parse_target(&o, argv[optind]) < 0) return usage_error("%s: want HOST:PORT (an IPv6 address in brackets)", argv[optind]);
    if ((o.mode == MODE_REQUESTS || o.mode == MODE_DOWNLOAD) && !o.path) {
        if (o.mode == MODE_DOWNLOAD) return usage_error("%s", "--mode download needs --path");
        o.path = "/";
    }
    if (o.mode == MODE_RESUMED && strcmp(o.resume, "id") == 0 && o.tls != KTLSX_TLS12)
        return usage_error("%s", "--resume id: session IDs are TLS 1.2 (add --tls 1.2)");
    if (o.connections < o.threads) o.threads = o.connections;
    if (o.ca && o.insecure) return usage_error("%s", "--ca and --insecure exclude each other");

    /* one descriptor per connection, and a few more */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.connections + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)o.connections + 64 ? rl.rlim_max : (rlim_t)o.connections + 64;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)o.connections + 16)
            return fprintf(stderr, "ktlsx-load: --connections %d: only %llu descriptors allowed (ulimit -n)\n", o.connections,
                           (unsigned long long)rl.rlim_cur), 2;
    }
    if (o.cpus && (c = pin(o.cpus)) != 0) return c;

    o.cfg = ktlsx_config_new(KTLSX_CLIENT);
    if (!o.cfg) return fprintf(stderr, "ktlsx-load: out of memory\n"), 1;
    loop_set_log(o.cfg);
    if ((o.tls && ktlsx_config_set_versions(o.cfg, o.tls, o.tls) < 0) ||
        (o.groups && ktlsx_config_set_groups(o.cfg, o.groups) < 0) ||
        (o.ciphers && ktlsx_config_set_ciphers(o.cfg, o.ciphers) < 0) || ktlsx_config_set_ca_file(o.cfg, o.ca) < 0 ||
        (o.insecure && ktlsx_config_set_insecure(o.cfg, 1) < 0)) {
        fprintf(stderr, "ktlsx-load: %s\n", ktlsx_config_error(o.cfg));
        ktlsx_config_free(o.cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);

    struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
    pthread_t *th = calloc((size_t)o.threads, sizeof *th);
    if (!ws || !th) return fprintf(stderr, "ktlsx-load: out of memory\n"), free(ws), free(th), ktlsx_config_free(o.cfg), 1;
    double cpu0 = cpu_seconds();
    int64_t t0 = now_ns(), warm_end = t0 + (int64_t)(o.warmup_s * 1e9), end = warm_end + (int64_t)(o.duration_s * 1e9);
    int started = 0;
    for (int i = 0; i < o.threads; i++) {
        ws[i] = (struct worker){ .o = &o, .index = i, .t_warm_end = warm_end, .t_end = end,
                                 .connections = o.connections / o.threads + (i < o.connections % o.threads) };
        if (o.threads == 1) {
            worker_run(&ws[i]), started = 1;
        } else if (pthread_create(&th[i], NULL, worker_run, &ws[i]) != 0) {
            fprintf(stderr, "ktlsx-load: pthread_create: %s\n", strerror(errno));
            g_stop = 1;
            break;
        } else {
            started++;
        }
    }
    if (o.threads > 1)
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    int64_t t_stop = now_ns();
    double secs = (double)((t_stop < end ? t_stop : end) - warm_end) / 1e9;
    if (secs < 0) secs = 0;

    static struct stats total;
    int failed_workers = 0;
    for (int i = 0; i < started; i++) {
        struct stats *st = &ws[i].st;
        failed_workers += ws[i].rc != 0;
        total.ok += st->ok, total.handshakes += st->handshakes, total.resumed += st->resumed, total.offered += st->offered;
        total.requests += st->requests, total.bytes_rx += st->bytes_rx, total.bytes_tx += st->bytes_tx;
        total.body_bytes += st->body_bytes, total.unfinished += st->unfinished;
        for (int k = 0; k < ERR_KINDS; k++) {
            total.errors[k] += st->errors[k];
            if (!total.first_error[k][0]) memcpy(total.first_error[k], st->first_error[k], sizeof total.first_error[k]);
        }
        hist_merge(&total.lat, &st->lat), hist_merge(&total.hs_lat, &st->hs_lat);
    }
    double wall = (double)(t_stop - t0) / 1e9;
    report(&o, &total, secs, wall > 0 ? 100.0 * (cpu_seconds() - cpu0) / wall : 0);
    free(ws), free(th);
    ktlsx_config_free(o.cfg);
    if (failed_workers || started < o.threads) return 1;
    if (total.ok == 0) {
        fprintf(stderr, "ktlsx-load: nothing completed in the measured %.3f s (every attempt failed or timed out)\n", secs);
        return 1;
    }
    return 0;
}
