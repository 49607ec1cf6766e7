/* The server's TLS 1.2 session-ID cache. */
#include "session/session.h"
#include "core/wipe.h"
#include <stdlib.h>
#include <string.h>

/* ---- session-ID cache: an array with LRU eviction; small and bounded, so a
 * linear scan under one lock beats a hash table's bookkeeping.
 *
 * The entries (about 2.4 KB each, 2.4 MB at the default 1024) are allocated
 * by the first put, not by kx_session_cache_new: every server configuration
 * has a cache, and one that never completes a TLS 1.2 full handshake (a
 * TLS 1.3-only service, a configuration built for a reload and dropped) should
 * not pay for it.  Entries are only ever touched under `lock`, so the first
 * put allocating them is safe against concurrent puts and gets on the
 * connections of other threads sharing the configuration. ---- */

struct kx_session_cache {
    pthread_mutex_t lock;
    size_t cap;
    uint64_t lifetime_ms;
    uint64_t clock;        /* LRU stamp */
    struct entry {
        kx_session s;
        uint64_t used;
    } *e;                  /* NULL until the first put */
};

kx_session_cache *kx_session_cache_new(size_t entries, uint32_t lifetime_s)
{
    if (entries == 0) return NULL;
    kx_session_cache *sc = calloc(1, sizeof *sc);
    if (!sc) return NULL;
    pthread_mutex_init(&sc->lock, NULL);
    sc->cap = entries;
    sc->lifetime_ms = (uint64_t)lifetime_s * 1000u;
    return sc;
}

void kx_session_cache_free(kx_session_cache *sc)
{
    if (!sc) return;
    if (sc->e) kx_wipe(sc->e, sc->cap * sizeof *sc->e);
    free(sc->e);
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

bool kx_session_cache_allocated(kx_session_cache *sc)
{
    if (!sc) return false;
    pthread_mutex_lock(&sc->lock);
    bool allocated = sc->e != NULL;
    pthread_mutex_unlock(&sc->lock);
    return allocated;
}

void kx_session_cache_count(kx_session_cache *sc, size_t *entries, size_t *capacity)
{
    *entries = *capacity = 0;
    if (!sc) return;
    pthread_mutex_lock(&sc->lock);
    *capacity = sc->cap;
    for (size_t i = 0; sc->e && i < sc->cap; i++) *entries += sc->e[i].s.session_id_len != 0;
    pthread_mutex_unlock(&sc->lock);
}

void kx_session_cache_put(kx_session_cache *sc, const kx_session *s)
{
    if (!sc || s->session_id_len == 0) return;
    pthread_mutex_lock(&sc->lock);
    /* Out of memory here costs this session its resumption, not the handshake
     * that produced it: the cache is an optimisation. */
    if (!sc->e) sc->e = calloc(sc->cap, sizeof *sc->e);
    if (!sc->e) {
        pthread_mutex_unlock(&sc->lock);
        return;
    }
    size_t slot = 0;
    uint64_t oldest = UINT64_MAX, now = kx_now_ms();
    for (size_t i = 0; i < sc->cap; i++) {
        struct entry *e = &sc->e[i];
        bool expired = e->s.session_id_len && now - e->s.issued_ms > sc->lifetime_ms;
        if (!e->s.session_id_len || expired) { /* a free slot beats the least recently used */
            slot = i;
            break;
        }
        if (e->used < oldest) {
            oldest = e->used;
            slot = i;
        }
    }
    sc->e[slot].s = *s;
    sc->e[slot].used = ++sc->clock;
    pthread_mutex_unlock(&sc->lock);
}

static int by_use(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return x->used < y->used ? -1 : x->used > y->used;
}

void kx_session_cache_copy(kx_session_cache *dst, kx_session_cache *src)
{
    if (!dst || !src || dst == src) return;
    pthread_mutex_lock(&src->lock);
    size_t n = 0;
    struct entry *tmp = src->e ? malloc(src->cap * sizeof *tmp) : NULL;
    for (size_t i = 0; tmp && i < src->cap; i++)
        if (src->e[i].s.session_id_len) tmp[n++] = src->e[i];
    pthread_mutex_unlock(&src->lock);
    if (!tmp) return;
    /* Least recently used first, so the most recent end up the newest in dst
     * (and are the ones kept when dst is the smaller cache). */
    qsort(tmp, n, sizeof *tmp, by_use);
    for (size_t i = 0; i < n; i++) kx_session_cache_put(dst, &tmp[i].s);
    kx_wipe(tmp, src->cap * sizeof *tmp);
    free(tmp);
}

bool kx_session_cache_get(kx_session_cache *sc, const uint8_t *id, size_t idlen, kx_session *out)
{
    if (!sc || idlen == 0) return false;
    bool found = false;
    uint64_t now = kx_now_ms();
    pthread_mutex_lock(&sc->lock);
    for (size_t i = 0; sc->e && i < sc->cap; i++) {
        struct entry *e = &sc->e[i];
        if (e->s.session_id_len != idlen || memcmp(e->s.session_id, id, idlen) != 0) continue;
        if (now - e->s.issued_ms > sc->lifetime_ms) {
            kx_session_wipe(&e->s); /* expired: forget it */
            break;
        }
        *out = e->s;
        e->used = ++sc->clock;
        found = true;
        break;
    }
    pthread_mutex_unlock(&sc->lock);
    return found;
}
