/* TLS 1.3 pre-shared keys (RFC 8446 §4.2.11): the binder that ties a
 * ClientHello to a PSK, for resumption tickets and external PSKs alike. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* Hash(transcript so far || extra) without disturbing the transcript. */
static kx_result transcript_hash_plus(const kx_transcript *t, kx_hash_id h, const uint8_t *extra, size_t len,
                                      uint8_t *out)
{
    /* The binder MACs kx_hash_len(h) bytes of `out`: a transcript already running
     * under another hash (a HelloRetryRequest chose it) would fill only part of it. */
    KX_ENSURE(t->ctx == NULL || t->hash == h, KX_ALERT_INTERNAL_ERROR, "PSK hash differs from the transcript hash");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    KX_ENSURE(ctx != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    bool ok;
    unsigned n = 0;
    if (t->ctx) ok = EVP_MD_CTX_copy_ex(ctx, t->ctx) == 1;
    else ok = EVP_DigestInit_ex(ctx, kx_hash_md(h), NULL) == 1 &&
              (t->pending.len == 0 || EVP_DigestUpdate(ctx, t->pending.data, t->pending.len) == 1);
    ok = ok && EVP_DigestUpdate(ctx, extra, len) == 1 && EVP_DigestFinal_ex(ctx, out, &n) == 1;
    EVP_MD_CTX_free(ctx);
    KX_ENSURE(ok, KX_ALERT_INTERNAL_ERROR, "digest failed");
    KX_ENSURE(n == kx_hash_len(h), KX_ALERT_INTERNAL_ERROR, "transcript digest has the wrong length");
    return KX_OK;
}

kx_result kx_psk_binder(ktlsx_conn *c, kx_hash_id h, const uint8_t *psk, size_t psklen, bool external,
                        const uint8_t *partial_ch, size_t partial_len, uint8_t *binder)
{
    kx_tls13_ks ks = { 0 };
    uint8_t binder_key[KX_MAX_HASH], th[KX_MAX_HASH];
    kx_result r = kx_tls13_ks_early(&ks, h, psk, psklen);
    if (!kx_failed(r)) r = kx_tls13_ks_binder_key(&ks, external, binder_key);
    if (!kx_failed(r)) r = transcript_hash_plus(&c->transcript, h, partial_ch, partial_len, th);
    if (!kx_failed(r)) r = kx_tls13_finished(h, binder_key, th, binder);
    kx_tls13_ks_wipe(&ks);
    kx_wipe(binder_key, sizeof binder_key);
    return r;
}

/* Copy the PSK to offer into c->psk.  Never more than it holds: the setter
 * bounds external PSKs and kx_session.secret is KX_MAX_HASH bytes, but a path
 * that broke either would otherwise overwrite the fields after c->psk. */
static bool load_psk(ktlsx_conn *c, const uint8_t *secret, size_t len, bool external)
{
    if (len == 0 || len > sizeof c->psk) return false;
    memcpy(c->psk, secret, len);
    c->psk_len = len;
    c->psk_external = external;
    return true;
}

/* Client: the PSK to offer, if any: an external one first (it is what the
 * operator configured), else a TLS 1.3 session ticket. */
bool kx_psk_offer(ktlsx_conn *c, const uint8_t **identity, size_t *idlen, uint32_t *age, kx_hash_id *hash)
{
    const ktlsx_config *cfg = c->cfg;
    if (cfg->psk_len) {
        if (!load_psk(c, cfg->psk, cfg->psk_len, true)) return false;
        *identity = (const uint8_t *)cfg->psk_identity;
        *idlen = strlen(cfg->psk_identity);
        *age = 0;
        *hash = cfg->psk_hash;
        return true;
    }
    const kx_session *s = &c->session;
    if (!c->have_session || s->version != KTLSX_TLS13 || s->ticket_len == 0) return false;
    uint64_t now = kx_now_ms();
    if (now - s->issued_ms > (uint64_t)s->lifetime * 1000u) return false; /* expired: full handshake */
    const kx_suite *suite = kx_suite_by_id(s->suite);
    if (!suite || !load_psk(c, s->secret, s->secret_len, false)) return false;
    *identity = s->ticket;
    *idlen = s->ticket_len;
    *age = (uint32_t)(now - s->issued_ms) + s->age_add;
    *hash = suite->hash;
    return true;
}
