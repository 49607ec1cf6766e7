#include "handshake/session.h"
#include "handshake/conn.h"
#include "core/wipe.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t kx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void kx_session_wipe(kx_session *s) { kx_wipe(s, sizeof *s); }

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

/* ---- encoding: a versioned, length-checked binary layout ---- */

#define SESSION_MAGIC 0x6b78u /* "kx" */
#define SESSION_FORMAT 1

kx_result kx_session_encode(const kx_session *s, kx_buf *o)
{
    KX_GUARD(kx_write_u16(o, SESSION_MAGIC));
    KX_GUARD(kx_write_u8(o, SESSION_FORMAT));
    KX_GUARD(kx_write_u16(o, s->version));
    KX_GUARD(kx_write_u16(o, s->suite));
    KX_GUARD(kx_write_vec(o, 1, s->secret, s->secret_len));
    KX_GUARD(kx_write_u8(o, s->ems));
    KX_GUARD(kx_write_vec(o, 1, s->session_id, s->session_id_len));
    KX_GUARD(kx_write_u64(o, s->issued_ms));
    KX_GUARD(kx_write_u32(o, s->lifetime));
    KX_GUARD(kx_write_u32(o, s->age_add));
    KX_GUARD(kx_write_vec(o, 2, s->ticket, s->ticket_len));
    KX_GUARD(kx_write_vec(o, 1, s->alpn, strlen(s->alpn)));
    return kx_write_vec(o, 1, s->peer_subject, strlen(s->peer_subject));
}

static kx_result read_string(kx_reader *r, char *dst, size_t cap)
{
    kx_reader v;
    KX_GUARD(kx_read_vec(r, 1, 0, cap - 1, &v));
    memcpy(dst, v.data, v.len);
    dst[v.len] = 0;
    return KX_OK;
}

static kx_result decode_session(const uint8_t *data, size_t len, kx_session *s)
{
    kx_reader r = kx_reader_of(data, len), v;
    uint16_t magic;
    uint8_t format, ems;
    KX_GUARD(kx_read_u16(&r, &magic));
    KX_GUARD(kx_read_u8(&r, &format));
    KX_ENSURE(magic == SESSION_MAGIC && format == SESSION_FORMAT, KX_ALERT_DECODE_ERROR, "not a ktlsx session");
    KX_GUARD(kx_read_u16(&r, &s->version));
    KX_GUARD(kx_read_u16(&r, &s->suite));
    KX_GUARD(kx_read_vec(&r, 1, 1, sizeof s->secret, &v));
    memcpy(s->secret, v.data, v.len);
    s->secret_len = (uint8_t)v.len;
    KX_GUARD(kx_read_u8(&r, &ems));
    s->ems = ems != 0;
    KX_GUARD(kx_read_vec(&r, 1, 0, sizeof s->session_id, &v));
    memcpy(s->session_id, v.data, v.len);
    s->session_id_len = (uint8_t)v.len;
    KX_GUARD(kx_read_u64(&r, &s->issued_ms));
    KX_GUARD(kx_read_u32(&r, &s->lifetime));
    KX_GUARD(kx_read_u32(&r, &s->age_add));
    KX_GUARD(kx_read_vec(&r, 2, 0, sizeof s->ticket, &v));
    memcpy(s->ticket, v.data, v.len);
    s->ticket_len = (uint16_t)v.len;
    KX_GUARD(read_string(&r, s->alpn, sizeof s->alpn));
    KX_GUARD(read_string(&r, s->peer_subject, sizeof s->peer_subject));
    KX_GUARD(kx_reader_done(&r));
    KX_ENSURE(kx_suite_by_id(s->suite) != NULL && (s->version == 0x0303 || s->version == 0x0304),
              KX_ALERT_DECODE_ERROR, "session names an unknown suite or version");
    return KX_OK;
}

kx_result kx_session_decode(const uint8_t *data, size_t len, kx_session *s)
{
    memset(s, 0, sizeof *s);
    kx_result r = decode_session(data, len, s);
    /* A blob refused after its secret was read leaves no copy behind. */
    if (kx_failed(r)) kx_session_wipe(s);
    return r;
}

/* ---- tickets: key_name(16) || nonce(12) || AES-256-GCM(session) || tag(16), AAD = key_name ---- */

/* The current sealing key, rotating it when it is older than the schedule. */
static kx_result current_key(ktlsx_config *cfg, kx_ticket_key *out)
{
    kx_result r = KX_OK;
    pthread_mutex_lock(&cfg->ticket_lock);
    uint64_t now = kx_now_ms();
    kx_ticket_key *k = &cfg->ticket_keys[0];
    if (!k->in_use || (cfg->ticket_rotate_s && now - k->created_ms > (uint64_t)cfg->ticket_rotate_s * 1000u)) {
        memmove(&cfg->ticket_keys[1], &cfg->ticket_keys[0], (KX_TICKET_KEYS - 1) * sizeof *k);
        r = kx_random(k->name, sizeof k->name);
        if (!kx_failed(r)) r = kx_random(k->key, sizeof k->key);
        k->created_ms = now;
        k->in_use = !kx_failed(r);
    }
    *out = *k;
    pthread_mutex_unlock(&cfg->ticket_lock);
    return r;
}

kx_result kx_ticket_seal(ktlsx_conn *c, const kx_session *s, kx_buf *ticket)
{
    kx_ticket_key key = { 0 };
    kx_buf plain = { 0 };
    kx_aead *aead = NULL;
    uint8_t nonce[KX_AEAD_NONCE], *out;
    /* One exit: current_key copies the key out even when it fails, and it must be wiped. */
    kx_result r = current_key(c->cfg, &key);
    if (!kx_failed(r)) r = kx_random(nonce, sizeof nonce);
    if (!kx_failed(r)) r = kx_session_encode(s, &plain);
    if (!kx_failed(r)) r = kx_aead_new(&aead, KX_AEAD_AES_256_GCM, key.key, sizeof key.key);
    if (!kx_failed(r)) r = kx_write_bytes(ticket, key.name, sizeof key.name);
    if (!kx_failed(r)) r = kx_write_bytes(ticket, nonce, sizeof nonce);
    if (!kx_failed(r)) r = kx_write_space(ticket, plain.len + KX_AEAD_TAG, &out);
    if (!kx_failed(r)) r = kx_aead_seal(aead, nonce, key.name, sizeof key.name, plain.data, plain.len, out);
    kx_aead_free(aead);
    kx_buf_free(&plain);
    kx_wipe_obj(key);
    return r;
}

bool kx_ticket_open(ktlsx_conn *c, const uint8_t *t, size_t len, kx_session *out)
{
    ktlsx_config *cfg = c->cfg;
    if (len < KX_TICKET_KEY_NAME + KX_AEAD_NONCE + KX_AEAD_TAG + 8) return false;
    kx_ticket_key key = { 0 };
    bool found = false;
    pthread_mutex_lock(&cfg->ticket_lock);
    for (size_t i = 0; i < KX_TICKET_KEYS && !found; i++) {
        if (cfg->ticket_keys[i].in_use && memcmp(cfg->ticket_keys[i].name, t, KX_TICKET_KEY_NAME) == 0) {
            key = cfg->ticket_keys[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&cfg->ticket_lock);
    if (!found) return false;
    size_t ct_len = len - KX_TICKET_KEY_NAME - KX_AEAD_NONCE;
    uint8_t *plain = malloc(ct_len);
    kx_aead *aead = NULL;
    bool ok = plain != NULL;
    ok = ok && !kx_failed(kx_aead_new(&aead, KX_AEAD_AES_256_GCM, key.key, sizeof key.key));
    ok = ok && !kx_failed(kx_aead_open(aead, t + KX_TICKET_KEY_NAME, t, KX_TICKET_KEY_NAME,
                                       t + KX_TICKET_KEY_NAME + KX_AEAD_NONCE, ct_len, plain));
    ok = ok && !kx_failed(kx_session_decode(plain, ct_len - KX_AEAD_TAG, out));
    ok = ok && kx_now_ms() - out->issued_ms <= (uint64_t)out->lifetime * 1000u;
    kx_aead_free(aead);
    if (plain) {
        kx_wipe(plain, ct_len);
        free(plain);
    }
    kx_wipe_obj(key);
    if (!ok) kx_session_wipe(out);
    return ok;
}

kx_result kx_session_ticket_seal(ktlsx_conn *c, kx_buf *ticket)
{
    kx_session s = { 0 };
    s.version = c->version;
    s.suite = c->suite->id;
    memcpy(s.secret, c->master, KX_TLS12_MASTER);
    s.secret_len = KX_TLS12_MASTER;
    s.ems = c->ems;
    s.issued_ms = kx_now_ms();
    s.lifetime = c->cfg->ticket_lifetime;
    kx_copy_str(s.alpn, sizeof s.alpn, c->alpn);
    kx_copy_str(s.peer_subject, sizeof s.peer_subject, c->peer_subject);
    kx_result r = kx_ticket_seal(c, &s, ticket);
    kx_session_wipe(&s);
    return r;
}

kx_result kx_session_store_ticket12(ktlsx_conn *c, uint32_t lifetime, const uint8_t *ticket, size_t len)
{
    KX_ENSURE(len <= KX_SESSION_MAX_TICKET, KX_ALERT_DECODE_ERROR, "session ticket too large");
    if (len == 0) return KX_OK;
    memcpy(c->session.ticket, ticket, len);
    c->session.ticket_len = (uint16_t)len;
    c->session.lifetime = lifetime;
    c->new_session = true;
    return KX_OK;
}
