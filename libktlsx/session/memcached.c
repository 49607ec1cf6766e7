/* A TLS 1.2 session store shared by a fleet of servers, in memcached through
 * libmemcached (issue 12), installed on the external session store hook
 * (handshake/hooks.c calls put/get/remove; the in-process cache stays in
 * front).  What memcached holds is sealed, keyed and bounded:
 *
 *   memcached key = "ktlsx1:" || hex(HMAC-SHA256(name_key, session ID))
 *   value         = "KXM1" || nonce(12) || AES-256-GCM(seal_key, session blob) || tag(16),
 *                   AAD = "KXM1" || memcached key
 *   expiration    = the session's lifetime
 *
 * seal_key and name_key come from one key file every server holds (HKDF), so
 * a dump of the cache reveals neither sessions nor session IDs, and an entry
 * forged, corrupted or moved to another key fails to open (a full handshake).
 *
 * Bounded waits: every handle is non-blocking with connect and poll timeouts
 * that add up to timeout_ms, and a failed server is skipped for a second
 * (retry timeout) so a dead memcached costs one timeout, then nothing.  The
 * hook is called from any thread driving a handshake: a handful of cloned
 * handles, each behind its own mutex taken with trylock, so a thread never
 * queues behind another's slow operation (all busy = a miss, counted). */
#include "handshake/conn.h"
#include "session/session.h"
#include "core/wipe.h"
#ifndef KTLSX_NO_MEMCACHED /* `make MEMCACHED=0`: built without libmemcached (the end of this file) */
#include <libmemcached/memcached.h>
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int mc_error(ktlsx_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mc_error(ktlsx_config *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->error, sizeof cfg->error, fmt, ap);
    va_end(ap);
    return -1;
}

#ifndef KTLSX_NO_MEMCACHED
#define MC_HANDLES 16
#define MC_MAX_SERVERS 16
#define MC_DEFAULT_TIMEOUT_MS 200
#define MC_MAX_TIMEOUT_MS 10000
#define MC_KEY_FILE_MIN 32
#define MC_KEY_FILE_MAX 4096
#define MC_MAGIC "KXM1"
#define MC_MAGIC_LEN 4
#define MC_KEY_PREFIX "ktlsx1:"
#define MC_KEY_LEN (sizeof MC_KEY_PREFIX - 1 + 64)
#define MC_VALUE_MAX 4096 /* hooks.c reads at most this much; a session is far smaller */
#define MC_DOWN_MS 1000

struct kx_memcached {
    struct {
        memcached_st *mc;
        pthread_mutex_t lock;
    } h[MC_HANDLES];
    memcached_st *hash;  /* a clone used only to map keys to servers (read-only: safe from any thread) */
    atomic_uint next;
    unsigned servers;
    /* A server that just failed is left alone for MC_DOWN_MS by every handle
     * (each libmemcached handle tracks failures on its own), so a dead or
     * stalled memcached costs one timeout per MC_DOWN_MS, and a handshake at
     * most one (its get failing marks the server before its put). */
    atomic_uint_fast64_t down_until_ms[MC_MAX_SERVERS];
    uint8_t seal_key[32];
    uint8_t name_key[32];
    atomic_uint_fast64_t hits, misses, errors, rejected, puts;
    /* The promise "never a stall longer than timeout_ms", measured: the longest
     * single operation so far, and a warning through the configuration's log
     * each time a new longest one is over the timeout. */
    const ktlsx_config *cfg; /* owns this store; for its log sink */
    unsigned timeout_ms;
    atomic_uint_fast64_t slowest_ms;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void op_took(struct kx_memcached *m, const char *op, uint64_t t0)
{
    uint64_t took = mono_ms() - t0, prev = atomic_load(&m->slowest_ms);
    while (took > prev && !atomic_compare_exchange_weak(&m->slowest_ms, &prev, took)) {
    }
    if (took > prev && took > m->timeout_ms)
        kx_log(m->cfg, KTLSX_LOG_WARNING, "memcached store: a %s took %llu ms, over its %u ms timeout", op,
               (unsigned long long)took, m->timeout_ms);
}

void kx_memcached_free(struct kx_memcached *m)
{
    if (!m) return;
    if (m->hash) memcached_free(m->hash);
    for (size_t i = 0; i < MC_HANDLES; i++) {
        if (m->h[i].mc) memcached_free(m->h[i].mc);
        pthread_mutex_destroy(&m->h[i].lock);
    }
    kx_wipe(m->seal_key, sizeof m->seal_key);
    kx_wipe(m->name_key, sizeof m->name_key);
    free(m);
}

/* ---- handles: trylock one, starting at a rotating index ---- */

/* Which server holds `key`, and whether it is to be left alone now. */
static unsigned server_of(const struct kx_memcached *m, const char *key)
{
    uint32_t s = memcached_generate_hash(m->hash, key, MC_KEY_LEN);
    return s < MC_MAX_SERVERS ? s : 0;
}

static bool server_down(struct kx_memcached *m, unsigned s)
{
    return kx_now_ms() < atomic_load(&m->down_until_ms[s]);
}

static void server_failed(struct kx_memcached *m, unsigned s)
{
    atomic_store(&m->down_until_ms[s], kx_now_ms() + MC_DOWN_MS);
}

static int handle_take(struct kx_memcached *m)
{
    unsigned start = atomic_fetch_add_explicit(&m->next, 1, memory_order_relaxed);
    for (unsigned k = 0; k < MC_HANDLES; k++) {
        unsigned i = (start + k) % MC_HANDLES;
        if (pthread_mutex_trylock(&m->h[i].lock) == 0) return (int)i;
    }
    return -1;
}

static void handle_give(struct kx_memcached *m, int i) { pthread_mutex_unlock(&m->h[i].lock); }

/* memcached key for a session ID: no ID in the clear. */
static bool entry_key(const struct kx_memcached *m, const uint8_t *id, size_t idlen, char out[MC_KEY_LEN + 1])
{
    uint8_t mac[32];
    if (kx_failed(kx_hmac(KX_HASH_SHA256, m->name_key, sizeof m->name_key, id, idlen, mac))) return false;
    static const char hex[] = "0123456789abcdef";
    size_t p = sizeof MC_KEY_PREFIX - 1;
    memcpy(out, MC_KEY_PREFIX, p);
    for (size_t i = 0; i < sizeof mac; i++) {
        out[p++] = hex[mac[i] >> 4];
        out[p++] = hex[mac[i] & 15];
    }
    out[p] = '\0';
    return true;
}

static void aad_of(const char *key, uint8_t aad[MC_MAGIC_LEN + MC_KEY_LEN])
{
    memcpy(aad, MC_MAGIC, MC_MAGIC_LEN);
    memcpy(aad + MC_MAGIC_LEN, key, MC_KEY_LEN);
}

/* Errors of the server (unreachable, timed out, failing) as opposed to "not there". */
static void count_rc(struct kx_memcached *m, unsigned server, memcached_return_t rc)
{
    if (rc == MEMCACHED_NOTFOUND) {
        atomic_fetch_add(&m->misses, 1);
    } else {
        atomic_fetch_add(&m->errors, 1);
        server_failed(m, server);
    }
}

/* ---- the store hook ---- */

static int mc_put(void *arg, const uint8_t *id, size_t idlen, const uint8_t *session, size_t len, unsigned lifetime_s)
{
    struct kx_memcached *m = arg;
    char key[MC_KEY_LEN + 1];
    uint8_t aad[MC_MAGIC_LEN + MC_KEY_LEN];
    size_t vlen = MC_MAGIC_LEN + KX_AEAD_NONCE + len + KX_AEAD_TAG;
    if (vlen > MC_VALUE_MAX || !entry_key(m, id, idlen, key)) return -1;
    uint8_t *v = malloc(vlen);
    kx_aead *aead = NULL;
    bool ok = v != NULL;
    aad_of(key, aad);
    if (ok) memcpy(v, MC_MAGIC, MC_MAGIC_LEN);
    ok = ok && !kx_failed(kx_random(v + MC_MAGIC_LEN, KX_AEAD_NONCE));
    ok = ok && !kx_failed(kx_aead_new(&aead, KX_AEAD_AES_256_GCM, m->seal_key, sizeof m->seal_key));
    ok = ok && !kx_failed(kx_aead_seal(aead, v + MC_MAGIC_LEN, aad, sizeof aad, session, len,
                                       v + MC_MAGIC_LEN + KX_AEAD_NONCE));
    kx_aead_free(aead);
    int rc = -1;
    unsigned server = ok ? server_of(m, key) : 0;
    if (ok && server_down(m, server)) {
        atomic_fetch_add(&m->errors, 1);
    } else if (ok) {
        int i = handle_take(m);
        if (i < 0) {
            atomic_fetch_add(&m->errors, 1);
        } else {
            /* Lifetimes are at most 7 days (ticket lifetime), well under memcached's 30-day relative limit. */
            uint64_t t0 = mono_ms();
            memcached_return_t r = memcached_set(m->h[i].mc, key, MC_KEY_LEN, (const char *)v, vlen,
                                                 (time_t)lifetime_s, 0);
            handle_give(m, i);
            op_took(m, "set", t0);
            if (memcached_success(r)) {
                atomic_fetch_add(&m->puts, 1);
                rc = 0;
            } else {
                count_rc(m, server, r);
            }
        }
    }
    free(v); /* sealed: nothing secret in it */
    return rc;
}

static long mc_get(void *arg, const uint8_t *id, size_t idlen, uint8_t *buf, size_t cap)
{
    struct kx_memcached *m = arg;
    char key[MC_KEY_LEN + 1];
    if (!entry_key(m, id, idlen, key)) return -1;
    unsigned server = server_of(m, key);
    int i = server_down(m, server) ? -1 : handle_take(m);
    if (i < 0) {
        atomic_fetch_add(&m->errors, 1);
        return -1;
    }
    size_t vlen = 0;
    uint32_t flags = 0;
    memcached_return_t r = MEMCACHED_FAILURE;
    uint64_t t0 = mono_ms();
    char *v = memcached_get(m->h[i].mc, key, MC_KEY_LEN, &vlen, &flags, &r);
    handle_give(m, i);
    op_took(m, "get", t0);
    if (!v && memcached_success(r)) { /* libmemcached's answer for an empty value: not one of ours */
        atomic_fetch_add(&m->rejected, 1);
        return 0;
    }
    if (!v) {
        count_rc(m, server, r);
        return -1;
    }
    long out = -1;
    uint8_t aad[MC_MAGIC_LEN + MC_KEY_LEN];
    aad_of(key, aad);
    const uint8_t *u = (const uint8_t *)v;
    if (vlen >= MC_MAGIC_LEN + KX_AEAD_NONCE + KX_AEAD_TAG + 1 && vlen <= MC_VALUE_MAX &&
        memcmp(u, MC_MAGIC, MC_MAGIC_LEN) == 0 && vlen - (MC_MAGIC_LEN + KX_AEAD_NONCE + KX_AEAD_TAG) <= cap) {
        kx_aead *aead = NULL;
        size_t ctlen = vlen - MC_MAGIC_LEN - KX_AEAD_NONCE;
        if (!kx_failed(kx_aead_new(&aead, KX_AEAD_AES_256_GCM, m->seal_key, sizeof m->seal_key)) &&
            !kx_failed(kx_aead_open(aead, u + MC_MAGIC_LEN, aad, sizeof aad, u + MC_MAGIC_LEN + KX_AEAD_NONCE, ctlen,
                                    buf)))
            out = (long)(ctlen - KX_AEAD_TAG);
        kx_aead_free(aead);
    }
    free(v);
    if (out < 0) {
        atomic_fetch_add(&m->rejected, 1);
        kx_wipe(buf, cap); /* a failed open may have written part of a plaintext */
        /* Returning a length that cannot be a session makes hooks.c call remove. */
        return 0;
    }
    atomic_fetch_add(&m->hits, 1);
    return out;
}

static void mc_remove(void *arg, const uint8_t *id, size_t idlen)
{
    struct kx_memcached *m = arg;
    char key[MC_KEY_LEN + 1];
    if (!entry_key(m, id, idlen, key)) return;
    unsigned server = server_of(m, key);
    int i = server_down(m, server) ? -1 : handle_take(m);
    if (i < 0) return;
    uint64_t t0 = mono_ms();
    memcached_return_t r = memcached_delete(m->h[i].mc, key, MC_KEY_LEN, 0);
    handle_give(m, i);
    op_took(m, "delete", t0);
    if (!memcached_success(r) && r != MEMCACHED_NOTFOUND) count_rc(m, server, r);
}

/* ---- configuration ---- */

/* "host:port[,host:port...]" into the handle, with an error naming the bad part. */
static int add_servers(ktlsx_config *cfg, memcached_st *mc, const char *servers, unsigned *count)
{
    char item[300];
    const char *p = servers;
    *count = 0;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof item)
            return mc_error(cfg, "memcached store: bad server list \"%s\" (host:port[,host:port...])", servers);
        memcpy(item, p, n);
        item[n] = '\0';
        char *host = item, *colon = strrchr(item, ':');
        if (item[0] == '[') { /* [v6]:port */
            char *close = strchr(item, ']');
            if (!close || close[1] != ':')
                return mc_error(cfg, "memcached store: \"%s\": expected [address]:port", item);
            *close = '\0';
            host = item + 1;
            colon = close + 1;
        }
        if (!colon || colon == host || colon[1] == '\0')
            return mc_error(cfg, "memcached store: \"%s\": expected host:port", item);
        *colon = '\0';
        char *end;
        errno = 0;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (*end || errno || port == 0 || port > 65535 || colon[1] == '-' || colon[1] == '+')
            return mc_error(cfg, "memcached store: \"%s\": bad port \"%s\"", host, colon + 1);
        if (*count == MC_MAX_SERVERS) return mc_error(cfg, "memcached store: at most %d servers", MC_MAX_SERVERS);
        memcached_return_t r = memcached_server_add(mc, host, (in_port_t)port);
        if (!memcached_success(r))
            return mc_error(cfg, "memcached store: server %s:%lu: %s", host, port, memcached_strerror(mc, r));
        ++*count;
        if (p[n] == '\0') break;
        p += n + 1;
    }
    return 0;
}

static int read_key_file(ktlsx_config *cfg, const char *path, struct kx_memcached *m)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mc_error(cfg, "%s: cannot open the session store key file: %s", path, strerror(errno));
    uint8_t *raw = malloc(MC_KEY_FILE_MAX + 1);
    if (!raw) {
        fclose(f);
        return mc_error(cfg, "%s: out of memory", path);
    }
    size_t n = fread(raw, 1, MC_KEY_FILE_MAX + 1, f);
    bool read_error = ferror(f) != 0;
    fclose(f);
    int rc = 0;
    uint8_t prk[KX_MAX_HASH];
    if (read_error) rc = mc_error(cfg, "%s: cannot read the session store key file", path);
    else if (n < MC_KEY_FILE_MIN || n > MC_KEY_FILE_MAX)
        rc = mc_error(cfg, "%s: session store key file must hold %d to %d bytes (e.g. openssl rand 48), not %zu%s",
                      path, MC_KEY_FILE_MIN, MC_KEY_FILE_MAX, n, n > MC_KEY_FILE_MAX ? " or more" : "");
    else if (kx_failed(kx_hkdf_extract(KX_HASH_SHA256, (const uint8_t *)"ktlsx memcached", 15, raw, n, prk)) ||
             kx_failed(kx_hkdf_expand_label(KX_HASH_SHA256, prk, "mc seal", NULL, 0, m->seal_key, sizeof m->seal_key)) ||
             kx_failed(kx_hkdf_expand_label(KX_HASH_SHA256, prk, "mc name", NULL, 0, m->name_key, sizeof m->name_key)))
        rc = mc_error(cfg, "%s: cannot derive the session store keys", path);
    kx_wipe(raw, MC_KEY_FILE_MAX + 1);
    free(raw);
    kx_wipe(prk, sizeof prk);
    return rc;
}

/* Behaviours bounding every operation: connect and poll share timeout_ms. */
static int set_behaviours(ktlsx_config *cfg, memcached_st *mc, unsigned timeout_ms)
{
    unsigned half = timeout_ms / 2 ? timeout_ms / 2 : 1;
    struct {
        memcached_behavior_t b;
        uint64_t v;
        const char *name;
    } set[] = {
        { MEMCACHED_BEHAVIOR_NO_BLOCK, 1, "no block" },
        { MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "tcp nodelay" },
        { MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, half, "connect timeout" },
        { MEMCACHED_BEHAVIOR_POLL_TIMEOUT, timeout_ms - half ? timeout_ms - half : 1, "poll timeout" },
        { MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t)timeout_ms * 1000u, "send timeout" },
        { MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t)timeout_ms * 1000u, "receive timeout" },
        { MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1, "retry timeout" },            /* s: skip a failed server */
        { MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1, "server failure limit" },
        { MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA, "distribution" },
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        memcached_return_t r = memcached_behavior_set(mc, set[i].b, set[i].v);
        if (!memcached_success(r))
            return mc_error(cfg, "memcached store: %s: %s", set[i].name, memcached_strerror(mc, r));
    }
    return 0;
}

int ktlsx_config_set_memcached_store(ktlsx_config *cfg, const char *servers, const char *key_file,
                                     unsigned timeout_ms)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (cfg->role != KTLSX_SERVER) return mc_error(cfg, "memcached store: server configurations only");
    if (!servers || !*servers) return mc_error(cfg, "memcached store: no servers (host:port[,host:port...])");
    if (!key_file || !*key_file) return mc_error(cfg, "memcached store: a key file is required (e.g. openssl rand 48)");
    if (timeout_ms == 0) timeout_ms = MC_DEFAULT_TIMEOUT_MS;
    if (timeout_ms > MC_MAX_TIMEOUT_MS)
        return mc_error(cfg, "memcached store: timeout %u ms (at most %d)", timeout_ms, MC_MAX_TIMEOUT_MS);
    struct kx_memcached *m = calloc(1, sizeof *m);
    if (!m) return mc_error(cfg, "memcached store: out of memory");
    for (size_t i = 0; i < MC_HANDLES; i++) pthread_mutex_init(&m->h[i].lock, NULL);
    int rc = read_key_file(cfg, key_file, m);
    if (!rc && !(m->h[0].mc = memcached_create(NULL))) rc = mc_error(cfg, "memcached store: out of memory");
    if (!rc) rc = set_behaviours(cfg, m->h[0].mc, timeout_ms);
    if (!rc) rc = add_servers(cfg, m->h[0].mc, servers, &m->servers);
    for (size_t i = 1; !rc && i < MC_HANDLES; i++)
        if (!(m->h[i].mc = memcached_clone(NULL, m->h[0].mc))) rc = mc_error(cfg, "memcached store: out of memory");
    if (!rc && !(m->hash = memcached_clone(NULL, m->h[0].mc))) rc = mc_error(cfg, "memcached store: out of memory");
    if (rc) {
        kx_memcached_free(m);
        return rc;
    }
    m->cfg = cfg;
    m->timeout_ms = timeout_ms;
    kx_memcached_free(cfg->memcached);
    cfg->memcached = m;
    cfg->store = (struct ktlsx_session_store){ mc_put, mc_get, mc_remove, m };
    return 0;
}

void kx_memcached_stats(const struct kx_memcached *m, struct ktlsx_session_stats *out)
{
    if (!m) return;
    out->store_servers = m->servers;
    out->store_hits = atomic_load(&m->hits);
    out->store_misses = atomic_load(&m->misses);
    out->store_errors = atomic_load(&m->errors);
    out->store_rejected = atomic_load(&m->rejected);
    out->store_puts = atomic_load(&m->puts);
    out->store_slowest_ms = atomic_load(&m->slowest_ms);
}

#else /* KTLSX_NO_MEMCACHED */

/* Built without libmemcached (`make MEMCACHED=0`): a configuration asking for
 * the store is refused with the reason, not a store that silently never works. */
int ktlsx_config_set_memcached_store(ktlsx_config *cfg, const char *servers, const char *key_file,
                                     unsigned timeout_ms)
{
    (void)servers, (void)key_file, (void)timeout_ms;
    if (!cfg) return -1;
    return mc_error(cfg, "memcached store: this libktlsx was built without memcached support (make MEMCACHED=0); "
                         "rebuild with MEMCACHED=1 and libmemcached-dev");
}

void kx_memcached_free(struct kx_memcached *m) { (void)m; }

void kx_memcached_stats(const struct kx_memcached *m, struct ktlsx_session_stats *out) { (void)m, (void)out; }

#endif
