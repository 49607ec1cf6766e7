/* Configuration lifetime and the application's hooks into the handshake.
 *
 * Lifetime: a configuration is reference counted; each connection holds a
 * reference and, while it exists, makes the configuration "in use": the
 * connections read it without locks, so setters refuse it.  A setter holds
 * change_lock for writing across its whole body and ktlsx_conn_new holds it
 * for reading while it counts itself in, so no connection can start on a
 * half-changed configuration and no setter can slip in behind a new one.
 *
 * Hooks: the SNI callback (virtual hosts, switching the whole configuration
 * before anything is chosen from it), external PSKs looked up by identity,
 * an extra verification step on the peer's chain, and an external store for
 * TLS 1.2 sessions (whose bytes we decode as untrusted input). */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int hooks_error(ktlsx_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int hooks_error(ktlsx_config *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->error, sizeof cfg->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* ======================= lifetime ======================= */

bool kx_config_change_begin(ktlsx_config *cfg, kx_config_change *g)
{
    g->cfg = NULL;
    if (!cfg) return false;
    pthread_rwlock_wrlock(&cfg->change_lock);
    unsigned n = atomic_load(&cfg->conns);
    if (n) {
        pthread_rwlock_unlock(&cfg->change_lock);
        hooks_error(cfg, "configuration is in use by %u connection%s: build a new one", n, n == 1 ? "" : "s");
        return false;
    }
    g->cfg = cfg;
    return true;
}

void kx_config_change_end(kx_config_change *g)
{
    if (g->cfg) pthread_rwlock_unlock(&g->cfg->change_lock);
    g->cfg = NULL;
}

ktlsx_config *ktlsx_config_ref(ktlsx_config *cfg)
{
    if (cfg) atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void kx_config_attach(ktlsx_config *cfg)
{
    pthread_rwlock_rdlock(&cfg->change_lock);
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    atomic_fetch_add(&cfg->conns, 1);
    pthread_rwlock_unlock(&cfg->change_lock);
}

void kx_config_detach(ktlsx_config *cfg)
{
    atomic_fetch_sub(&cfg->conns, 1);
    ktlsx_config_free(cfg);
}

int ktlsx_conn_set_config(ktlsx_conn *c, ktlsx_config *cfg)
{
    if (!c) return -1;
    if (!cfg) {
        c->error = "ktlsx_conn_set_config: the configuration is NULL";
        return -1;
    }
    if (cfg->role != c->role) {
        c->error = c->role == KTLSX_SERVER ? "ktlsx_conn_set_config: a client configuration for a server connection"
                                           : "ktlsx_conn_set_config: a server configuration for a client connection";
        return -1;
    }
    /* Nothing sent and nothing chosen yet: a server is at most handling the
     * first ClientHello (flow_pos moves on once its handler returns), a client
     * has not written its ClientHello. */
    bool fresh = c->flow_pos == 0 && !c->hrr && !c->failed && !c->handshake_done && kx_out_pending(c) == 0 &&
                 c->hs_out.len == 0;
    if (!fresh) {
        c->error = "ktlsx_conn_set_config: too late, the handshake has gone past the ClientHello";
        return -1;
    }
    if (cfg == c->cfg) return 0;
    kx_config_attach(cfg);
    ktlsx_config *old = c->cfg;
    c->cfg = cfg;
    kx_config_detach(old); /* may free it: nothing of the connection points into it yet */
    return 0;
}

/* ======================= setters ======================= */

int ktlsx_config_set_sni_callback(ktlsx_config *cfg, ktlsx_sni_fn fn, void *arg)
{
    KX_CONFIG_CHANGE(cfg);
    if (fn && cfg->role != KTLSX_SERVER) return hooks_error(cfg, "sni callback: server configurations only");
    cfg->sni_fn = fn;
    cfg->sni_arg = fn ? arg : NULL;
    return 0;
}

int ktlsx_config_set_psk_callback(ktlsx_config *cfg, ktlsx_psk_fn fn, void *arg)
{
    KX_CONFIG_CHANGE(cfg);
    if (fn && cfg->role != KTLSX_SERVER) return hooks_error(cfg, "psk callback: server configurations only");
    cfg->psk_fn = fn;
    cfg->psk_arg = fn ? arg : NULL;
    return 0;
}

int ktlsx_config_set_verify_callback(ktlsx_config *cfg, ktlsx_verify_fn fn, void *arg)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->verify_fn = fn;
    cfg->verify_arg = fn ? arg : NULL;
    return 0;
}

int ktlsx_config_set_session_store(ktlsx_config *cfg, const struct ktlsx_session_store *store)
{
    KX_CONFIG_CHANGE(cfg);
    if (!store) {
        memset(&cfg->store, 0, sizeof cfg->store);
        kx_memcached_free(cfg->memcached); /* issue 12: the memcached store was on this hook */
        cfg->memcached = NULL;
        return 0;
    }
    if (cfg->role != KTLSX_SERVER) return hooks_error(cfg, "session store: server configurations only");
    if (!store->put || !store->get)
        return hooks_error(cfg, "session store: put and get are required (put %s, get %s)",
                           store->put ? "set" : "NULL", store->get ? "set" : "NULL");
    cfg->store = *store;
    if (cfg->memcached && store->arg != cfg->memcached) { /* issue 12: replaced */
        kx_memcached_free(cfg->memcached);
        cfg->memcached = NULL;
    }
    return 0;
}

/* ======================= hook points ======================= */

/* An application's return value as an alert: 1..255, anything else is a bug
 * of the callback, reported as internal_error. */
static kx_result callback_alert(int rc, const char *reason)
{
    if (rc < 1 || rc > 255) return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "callback returned an invalid alert number");
    return KX_FAIL(rc, reason);
}

kx_result kx_hook_sni(ktlsx_conn *c)
{
    /* Copied first: the callback may move the connection and free this configuration. */
    ktlsx_sni_fn fn = c->cfg->sni_fn;
    void *arg = c->cfg->sni_arg;
    if (!fn) return KX_OK;
    int rc = fn(c, c->server_name[0] ? c->server_name : NULL, arg);
    if (rc == 0) return KX_OK;
    return callback_alert(rc, "the server name callback refused the connection");
}

kx_result kx_hook_psk(ktlsx_conn *c, const uint8_t *id, size_t idlen, bool *found, uint8_t *secret, size_t cap,
                      uint8_t *len, kx_hash_id *hash)
{
    *found = false;
    const ktlsx_config *cfg = c->cfg;
    if (!cfg->psk_fn) return KX_OK;
    uint8_t key[64];
    size_t klen = sizeof key;
    int sha384 = 0;
    int rc = cfg->psk_fn(c, id, idlen, key, &klen, &sha384, cfg->psk_arg);
    kx_result r = KX_OK;
    if (rc == 1) {
        /* The same bounds as ktlsx_config_set_psk: at least 128 bits, at most the largest hash. */
        if (klen < 16 || klen > KX_MAX_HASH || klen > cap) {
            r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "the PSK callback returned a key outside 16..48 bytes");
        } else {
            memcpy(secret, key, klen);
            *len = (uint8_t)klen;
            *hash = sha384 ? KX_HASH_SHA384 : KX_HASH_SHA256;
            *found = true;
        }
    } else if (rc != 0) {
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "the PSK callback returned neither 1 (found) nor 0 (unknown)");
    }
    kx_wipe(key, sizeof key);
    return r;
}

kx_result kx_hook_verify(ktlsx_conn *c, bool chain_ok, kx_result chain, const uint8_t *const *der,
                         const size_t *der_len, size_t n)
{
    const ktlsx_config *cfg = c->cfg;
    if (!cfg->verify_fn) return chain;
    int rc = cfg->verify_fn(c, chain_ok, der, der_len, n, cfg->verify_arg);
    if (rc != 0) {
        EVP_PKEY_free(c->peer_key);
        c->peer_key = NULL;
        return callback_alert(rc, "the verify callback rejected the peer's certificate");
    }
    /* Accepted over a failed verification: the key for CertificateVerify
     * still comes from the leaf, parsed as the insecure mode does. */
    if (!c->peer_key)
        KX_GUARD(kx_cert_leaf_key(der[0], der_len[0], &c->peer_key, c->peer_subject, sizeof c->peer_subject));
    return KX_OK;
}

/* ======================= session store ======================= */

/* Room for any session the server stores: no ticket in it, so well under this. */
#define STORE_BLOB_MAX 4096

bool kx_store_enabled(const ktlsx_config *cfg) { return cfg->store.get != NULL; }

void kx_store_put(ktlsx_conn *c, const kx_session *s)
{
    const ktlsx_config *cfg = c->cfg;
    if (!kx_store_enabled(cfg) || s->session_id_len == 0) return;
    kx_buf blob = { 0 };
    if (!kx_failed(kx_session_encode(s, &blob)))
        (void)cfg->store.put(cfg->store.arg, s->session_id, s->session_id_len, blob.data, blob.len, s->lifetime);
    kx_buf_free(&blob); /* wipes: the blob holds the master secret */
}

/* What the store hands back is only trusted once it decodes strictly to a
 * fresh TLS 1.2 session carrying the very ID asked for. */
static bool plausible(const kx_session *s, const uint8_t *id, size_t idlen)
{
    uint64_t now = kx_now_ms();
    return s->version == KTLSX_TLS12 && s->secret_len == KX_TLS12_MASTER && s->session_id_len == idlen &&
           memcmp(s->session_id, id, idlen) == 0 && s->issued_ms <= now &&
           now - s->issued_ms <= (uint64_t)s->lifetime * 1000u;
}

bool kx_store_get(ktlsx_conn *c, const uint8_t *id, size_t idlen, kx_session *out)
{
    const ktlsx_config *cfg = c->cfg;
    if (!kx_store_enabled(cfg) || idlen == 0) return false;
    uint8_t *buf = malloc(STORE_BLOB_MAX);
    if (!buf) return false;
    long n = cfg->store.get(cfg->store.arg, id, idlen, buf, STORE_BLOB_MAX);
    bool ok = false, corrupt = false;
    if (n > 0 && n <= STORE_BLOB_MAX) {
        ok = !kx_failed(kx_session_decode(buf, (size_t)n, out)) && plausible(out, id, idlen);
        corrupt = !ok;
    } else {
        corrupt = n == 0 || n > STORE_BLOB_MAX || n < -1;
    }
    kx_wipe(buf, STORE_BLOB_MAX);
    free(buf);
    if (!ok) kx_session_wipe(out);
    /* A blob that cannot be a session of ours (or has expired) will not get better. */
    if (corrupt && cfg->store.remove) cfg->store.remove(cfg->store.arg, id, idlen);
    return ok;
}

void kx_store_remove(ktlsx_conn *c)
{
    const ktlsx_config *cfg = c->cfg;
    if (c->role != KTLSX_SERVER || c->version != KTLSX_TLS12 || !c->resumed || !c->session_id_len) return;
    if (kx_store_enabled(cfg) && cfg->store.remove) cfg->store.remove(cfg->store.arg, c->session_id, c->session_id_len);
}
