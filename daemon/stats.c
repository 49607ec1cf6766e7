/* ktlsxd's counters: what `ktlsxctl stats` prints.
 *
 * Every worker counts into the same relaxed atomics (a handshake costs
 * hundreds of microseconds; an uncontended atomic add costs nanoseconds), so
 * there is nothing to merge and a reader sees a consistent-enough snapshot.
 * Counters only grow: a profile dropped by a reload keeps its line. */
#include "ktlsxd.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define STATUSES 16   /* enum ktlsx_door_status, with room */
#define MAX_PROFILES 128

/* Handshake latency buckets (ms, upper bounds; the last is +Inf). */
static const int64_t bucket_ms[] = { 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000 };
#define BUCKETS (sizeof bucket_ms / sizeof bucket_ms[0])

struct door_counters {
    atomic_uint_fast64_t status[STATUSES]; /* handshakes ended, by status (ok, failed, timeout, ...) */
    atomic_uint_fast64_t refused[STATUSES]; /* requests refused before a handshake, by status */
    atomic_uint_fast64_t alert[256];        /* failed handshakes, by the alert sent or received */
    atomic_uint_fast64_t resumed;
    atomic_uint_fast64_t hist[BUCKETS + 1];
    atomic_uint_fast64_t sum_ms;
};

struct profile_counters {
    char name[KTLSX_DOOR_NAME_MAX + 1];
    atomic_uint_fast64_t ok, failed, refused, resumed;
};

static struct door_counters doors[KD_DOORS];
static struct profile_counters profiles[MAX_PROFILES];
static atomic_size_t nprofiles;
static pthread_mutex_t profiles_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const door_names[KD_DOORS] = { "local", "kernel" };

static void add(atomic_uint_fast64_t *c, uint64_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }
static uint64_t get(atomic_uint_fast64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* The counters of `name`, added on first sight; NULL for "" or when the table is full. */
static struct profile_counters *profile(const char *name)
{
    if (!name[0]) return NULL;
    size_t n = atomic_load(&nprofiles);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(profiles[i].name, name)) return &profiles[i];
    pthread_mutex_lock(&profiles_lock);
    struct profile_counters *p = NULL;
    n = atomic_load(&nprofiles);
    for (size_t i = 0; i < n && !p; i++)
        if (!strcmp(profiles[i].name, name)) p = &profiles[i];
    if (!p && n < MAX_PROFILES) {
        p = &profiles[n];
        snprintf(p->name, sizeof p->name, "%s", name);
        atomic_store(&nprofiles, n + 1); /* published after the name is written */
    }
    pthread_mutex_unlock(&profiles_lock);
    return p;
}

void kd_stats_handshake(enum kd_door_kind door, const char *profile_name, int status, int alert, bool resumed,
                        int64_t ms)
{
    struct door_counters *d = &doors[door];
    add(&d->status[status >= 0 && status < STATUSES ? status : STATUSES - 1], 1);
    bool ok = status == KTLSX_DOOR_OK || status == KTLSX_DOOR_NO_KTLS;
    if (!ok && alert > 0 && alert < 256) add(&d->alert[alert], 1);
    if (resumed) add(&d->resumed, 1);
    if (ms < 0) ms = 0;
    size_t b = 0;
    while (b < BUCKETS && ms > bucket_ms[b]) b++;
    add(&d->hist[b], 1);
    add(&d->sum_ms, (uint64_t)ms);
    struct profile_counters *p = profile(profile_name);
    if (p) {
        add(ok ? &p->ok : &p->failed, 1);
        if (resumed) add(&p->resumed, 1);
    }
}

void kd_stats_refused(enum kd_door_kind door, const char *profile_name, int status)
{
    add(&doors[door].refused[status >= 0 && status < STATUSES ? status : STATUSES - 1], 1);
    struct profile_counters *p = profile(profile_name);
    if (p) add(&p->refused, 1);
}

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    if (o->len + 1 >= o->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

static void prometheus(struct out *o, int workers, int64_t uptime_ms)
{
    put(o, "# HELP ktlsxd_handshakes_total Handshakes ended, by door and status.\n"
           "# TYPE ktlsxd_handshakes_total counter\n");
    for (int d = 0; d < KD_DOORS; d++)
        for (int s = 0; s < STATUSES; s++)
            if (get(&doors[d].status[s]) || s == KTLSX_DOOR_OK)
                put(o, "ktlsxd_handshakes_total{door=\"%s\",status=\"%s\"} %llu\n", door_names[d],
                    ktlsx_door_status_name(s), (unsigned long long)get(&doors[d].status[s]));
    put(o, "# HELP ktlsxd_refused_total Requests refused before a handshake, by door and status.\n"
           "# TYPE ktlsxd_refused_total counter\n");
    for (int d = 0; d < KD_DOORS; d++)
        for (int s = 0; s < STATUSES; s++)
            if (get(&doors[d].refused[s]))
                put(o, "ktlsxd_refused_total{door=\"%s\",status=\"%s\"} %llu\n", door_names[d],
                    ktlsx_door_status_name(s), (unsigned long long)get(&doors[d].refused[s]));
    put(o, "# HELP ktlsxd_handshake_alerts_total Failed handshakes, by the alert sent or received.\n"
           "# TYPE ktlsxd_handshake_alerts_total counter\n");
    for (int d = 0; d < KD_DOORS; d++)
        for (int a = 1; a < 256; a++)
            if (get(&doors[d].alert[a]))
                put(o, "ktlsxd_handshake_alerts_total{door=\"%s\",alert=\"%s\"} %llu\n", door_names[d],
                    ktlsx_alert_name((uint8_t)a), (unsigned long long)get(&doors[d].alert[a]));
    put(o, "# HELP ktlsxd_resumed_total Handshakes that resumed a session.\n# TYPE ktlsxd_resumed_total counter\n");
    for (int d = 0; d < KD_DOORS; d++)
        put(o, "ktlsxd_resumed_total{door=\"%s\"} %llu\n", door_names[d], (unsigned long long)get(&doors[d].resumed));
    put(o, "# HELP ktlsxd_handshake_seconds Handshake duration, from the request to the answer.\n"
           "# TYPE ktlsxd_handshake_seconds histogram\n");
    for (int d = 0; d < KD_DOORS; d++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= BUCKETS; b++) {
            cum += get(&doors[d].hist[b]);
            if (b < BUCKETS)
                put(o, "ktlsxd_handshake_seconds_bucket{door=\"%s\",le=\"%g\"} %llu\n", door_names[d],
                    (double)bucket_ms[b] / 1000.0, (unsigned long long)cum);
            else
                put(o, "ktlsxd_handshake_seconds_bucket{door=\"%s\",le=\"+Inf\"} %llu\n", door_names[d],
                    (unsigned long long)cum);
        }
        put(o, "ktlsxd_handshake_seconds_sum{door=\"%s\"} %.3f\n", door_names[d],
            (double)get(&doors[d].sum_ms) / 1000.0);
        put(o, "ktlsxd_handshake_seconds_count{door=\"%s\"} %llu\n", door_names[d], (unsigned long long)cum);
    }
    put(o, "# HELP ktlsxd_profile_handshakes_total Handshakes and refusals, by profile and result.\n"
           "# TYPE ktlsxd_profile_handshakes_total counter\n");
    size_t n = atomic_load(&nprofiles);
    for (size_t i = 0; i < n; i++) {
        struct profile_counters *p = &profiles[i];
        put(o, "ktlsxd_profile_handshakes_total{profile=\"%s\",result=\"ok\"} %llu\n", p->name,
            (unsigned long long)get(&p->ok));
        put(o, "ktlsxd_profile_handshakes_total{profile=\"%s\",result=\"failed\"} %llu\n", p->name,
            (unsigned long long)get(&p->failed));
        put(o, "ktlsxd_profile_handshakes_total{profile=\"%s\",result=\"refused\"} %llu\n", p->name,
            (unsigned long long)get(&p->refused));
        put(o, "ktlsxd_profile_handshakes_total{profile=\"%s\",result=\"resumed\"} %llu\n", p->name,
            (unsigned long long)get(&p->resumed));
    }
    put(o, "# HELP ktlsxd_handshakes_in_flight Handshakes running now.\n# TYPE ktlsxd_handshakes_in_flight gauge\n"
           "ktlsxd_handshakes_in_flight %zu\n",
        kd_door_inflight());
    put(o, "# HELP ktlsxd_door_connections Door connections open now.\n# TYPE ktlsxd_door_connections gauge\n"
           "ktlsxd_door_connections %zu\n",
        kd_door_open_total());
    put(o, "# HELP ktlsxd_workers Worker threads.\n# TYPE ktlsxd_workers gauge\nktlsxd_workers %d\n", workers);
    put(o, "# HELP ktlsxd_uptime_seconds Seconds since start.\n# TYPE ktlsxd_uptime_seconds gauge\n"
           "ktlsxd_uptime_seconds %.3f\n",
        (double)uptime_ms / 1000.0);
}

static void human(struct out *o, int workers, int64_t uptime_ms)
{
    put(o, "ktlsxd %s pid %d, %d workers, up %.1f s\n", KTLSX_VERSION_STRING, (int)getpid(), workers,
        (double)uptime_ms / 1000.0);
    put(o, "in flight %zu, door connections %zu\n", kd_door_inflight(), kd_door_open_total());
    put(o, "kernel door: %s, in flight %zu\n", kd_kernel_on() ? "open" : "closed", kd_kernel_inflight());
    for (int d = 0; d < KD_DOORS; d++) {
        uint64_t total = 0, ok = get(&doors[d].status[KTLSX_DOOR_OK]) + get(&doors[d].status[KTLSX_DOOR_NO_KTLS]);
        for (int s = 0; s < STATUSES; s++) total += get(&doors[d].status[s]);
        put(o, "door %s: handshakes %llu, ok %llu, failed %llu, resumed %llu\n", door_names[d],
            (unsigned long long)total, (unsigned long long)ok, (unsigned long long)(total - ok),
            (unsigned long long)get(&doors[d].resumed));
        for (int s = 0; s < STATUSES; s++)
            if (get(&doors[d].status[s]))
                put(o, "  ended %-18s %llu\n", ktlsx_door_status_name(s), (unsigned long long)get(&doors[d].status[s]));
        for (int s = 0; s < STATUSES; s++)
            if (get(&doors[d].refused[s]))
                put(o, "  refused %-16s %llu\n", ktlsx_door_status_name(s),
                    (unsigned long long)get(&doors[d].refused[s]));
        for (int a = 1; a < 256; a++)
            if (get(&doors[d].alert[a]))
                put(o, "  alert %-18s %llu\n", ktlsx_alert_name((uint8_t)a), (unsigned long long)get(&doors[d].alert[a]));
        if (total) {
            put(o, "  latency ms:");
            for (size_t b = 0; b <= BUCKETS; b++)
                if (get(&doors[d].hist[b])) {
                    if (b < BUCKETS) put(o, " <=%lld:%llu", (long long)bucket_ms[b], (unsigned long long)get(&doors[d].hist[b]));
                    else put(o, " >%lld:%llu", (long long)bucket_ms[BUCKETS - 1], (unsigned long long)get(&doors[d].hist[b]));
                }
            put(o, " (mean %.1f)\n", (double)get(&doors[d].sum_ms) / (double)total);
        }
    }
    size_t n = atomic_load(&nprofiles);
    for (size_t i = 0; i < n; i++)
        put(o, "profile %s: ok %llu, failed %llu, refused %llu, resumed %llu\n", profiles[i].name,
            (unsigned long long)get(&profiles[i].ok), (unsigned long long)get(&profiles[i].failed),
            (unsigned long long)get(&profiles[i].refused), (unsigned long long)get(&profiles[i].resumed));
}

size_t kd_stats_format(char *buf, size_t cap, bool prom, int workers, int64_t started_ms)
{
    struct out o = { buf, cap, 0 };
    if (cap) buf[0] = '\0';
    int64_t up = kd_now_ms() - started_ms;
    if (prom) prometheus(&o, workers, up);
    else human(&o, workers, up);
    return o.len;
}
