/* TLS 1.3 key schedule (RFC 8446 §7.1).
 *
 *   Early Secret     = HKDF-Extract(0, PSK)
 *   Handshake Secret = HKDF-Extract(Derive-Secret(Early, "derived", ""), (EC)DHE)
 *   Master Secret    = HKDF-Extract(Derive-Secret(Handshake, "derived", ""), 0)
 *
 * Each extracted secret is wiped once the next stage has been derived from
 * it: nothing later in a handshake needs it, and a memory disclosure then
 * yields only the traffic secrets still in use. */
#include "keysched/tls13.h"
#include "core/wipe.h"
#include <pthread.h>
#include <string.h>

/* Without a PSK (every full handshake) the Early Secret is HKDF-Extract(0, 0)
 * and its Derive-Secret(., "derived", "") is fixed too: both are public
 * constants of the hash (RFC 8448 §3 prints them for SHA-256), computed once
 * here instead of two HMACs per handshake. */
static struct {
    int status;
    uint8_t early[2][KX_MAX_HASH], derived[2][KX_MAX_HASH];
} zero_psk;
static pthread_once_t zero_psk_once = PTHREAD_ONCE_INIT;

static kx_result derive_secret_empty(kx_hash_id h, const uint8_t *secret, const char *label, uint8_t *out);

static void zero_psk_init(void)
{
    static const uint8_t zeros[KX_MAX_HASH];
    zero_psk.status = -1;
    for (int h = KX_HASH_SHA256; h <= KX_HASH_SHA384; h++) {
        size_t hlen = kx_hash_len((kx_hash_id)h);
        if (kx_failed(kx_hkdf_extract((kx_hash_id)h, NULL, 0, zeros, hlen, zero_psk.early[h])) ||
            kx_failed(derive_secret_empty((kx_hash_id)h, zero_psk.early[h], "derived", zero_psk.derived[h])))
            return;
    }
    zero_psk.status = 0;
}

static int zero_psk_ready(void)
{
    return pthread_once(&zero_psk_once, zero_psk_init) == 0 && zero_psk.status == 0;
}

/* Derive-Secret(secret, label, messages) with th = Transcript-Hash(messages). */
static kx_result derive_secret(kx_hash_id h, const uint8_t *secret, const char *label, const uint8_t *th,
                               uint8_t *out)
{
    size_t hlen = kx_hash_len(h);
    return kx_hkdf_expand_label(h, secret, label, th, hlen, out, hlen);
}

/* Derive-Secret(secret, label, "") uses the hash of the empty transcript (computed once). */
static kx_result derive_secret_empty(kx_hash_id h, const uint8_t *secret, const char *label, uint8_t *out)
{
    const uint8_t *empty = kx_hash_empty(h);
    KX_ENSURE(empty != NULL, KX_ALERT_INTERNAL_ERROR, "crypto library init failed");
    return derive_secret(h, secret, label, empty, out);
}

/* Derive-Secret with each label of `labels` from one secret prepared once
 * (kx_hkdf_key): the second and later labels skip rehashing the key.  Worth
 * it from three labels on: preparing costs two more digest contexts (five
 * allocations against three per one-shot label, two per prepared one), and
 * with two labels it saves ~5 k instructions under callgrind but nothing
 * measurable natively (SHA-NI makes the skipped compressions cheap), while
 * adding three allocations. */
static kx_result derive_secrets(kx_hash_id h, const uint8_t *secret, const uint8_t *th, size_t n,
                                const char *const *labels, uint8_t *const *outs)
{
    size_t hlen = kx_hash_len(h);
    kx_hkdf_key k;
    KX_GUARD(kx_hkdf_key_init(&k, h, secret));
    kx_result r = KX_OK;
    for (size_t i = 0; i < n && !kx_failed(r); i++) r = kx_hkdf_key_expand_label(&k, labels[i], th, hlen, outs[i], hlen);
    kx_hkdf_key_free(&k);
    return r;
}

/* HKDF-Extract(Derive-Secret(prev, "derived", ""), ikm or hlen zeros). */
static kx_result next_stage(const kx_tls13_ks *ks, const uint8_t *prev, const uint8_t *ikm, size_t ikmlen,
                            uint8_t *out)
{
    static const uint8_t zeros[KX_MAX_HASH];
    if (ikm == NULL || ikmlen == 0) {
        ikm = zeros;
        ikmlen = ks->hlen;
    }
    uint8_t salt[KX_MAX_HASH];
    kx_result r = KX_OK;
    if (prev == ks->early && ks->no_psk && zero_psk_ready())
        memcpy(salt, zero_psk.derived[ks->hash], ks->hlen);
    else
        r = derive_secret_empty(ks->hash, prev, "derived", salt);
    if (!kx_failed(r)) r = kx_hkdf_extract(ks->hash, salt, ks->hlen, ikm, ikmlen, out);
    kx_wipe(salt, sizeof salt);
    return r;
}

kx_result kx_tls13_ks_early(kx_tls13_ks *ks, kx_hash_id hash, const uint8_t *psk, size_t psklen)
{
    static const uint8_t zeros[KX_MAX_HASH];
    kx_tls13_ks_wipe(ks);
    KX_ENSURE(hash == KX_HASH_SHA256 || hash == KX_HASH_SHA384, KX_ALERT_INTERNAL_ERROR, "unknown hash");
    ks->hash = hash;
    ks->hlen = kx_hash_len(hash);
    if (psk == NULL && zero_psk_ready()) {
        memcpy(ks->early, zero_psk.early[hash], ks->hlen);
        ks->no_psk = 1;
        return KX_OK;
    }
    if (psk == NULL) {
        psk = zeros;
        psklen = ks->hlen;
    }
    return kx_hkdf_extract(hash, NULL, 0, psk, psklen, ks->early);
}

kx_result kx_tls13_ks_binder_key(const kx_tls13_ks *ks, int external, uint8_t *out)
{
    return derive_secret_empty(ks->hash, ks->early, external ? "ext binder" : "res binder", out);
}

kx_result kx_tls13_ks_handshake(kx_tls13_ks *ks, const uint8_t *ecdhe, size_t ecdhelen, const uint8_t *th)
{
    KX_GUARD(next_stage(ks, ks->early, ecdhe, ecdhelen, ks->handshake));
    kx_wipe(ks->early, sizeof ks->early);
    KX_GUARD(derive_secret(ks->hash, ks->handshake, "c hs traffic", th, ks->c_hs));
    KX_GUARD(derive_secret(ks->hash, ks->handshake, "s hs traffic", th, ks->s_hs));
    return KX_OK;
}

kx_result kx_tls13_ks_master(kx_tls13_ks *ks, const uint8_t *th)
{
    KX_GUARD(next_stage(ks, ks->handshake, NULL, 0, ks->master));
    kx_wipe(ks->handshake, sizeof ks->handshake);
    static const char *const labels[] = { "c ap traffic", "s ap traffic", "exp master" };
    uint8_t *const outs[] = { ks->c_ap, ks->s_ap, ks->exporter };
    return derive_secrets(ks->hash, ks->master, th, 3, labels, outs);
}

kx_result kx_tls13_ks_resumption(kx_tls13_ks *ks, const uint8_t *th)
{
    KX_GUARD(derive_secret(ks->hash, ks->master, "res master", th, ks->resumption));
    kx_wipe(ks->master, sizeof ks->master);
    return KX_OK;
}

void kx_tls13_ks_wipe(kx_tls13_ks *ks)
{
    kx_wipe(ks, sizeof *ks);
}

kx_result kx_tls13_traffic_keys(kx_hash_id hash, const uint8_t *secret, size_t key_len, uint8_t *key,
                                uint8_t iv[12])
{
    KX_ENSURE(key_len <= KX_MAX_KEY, KX_ALERT_INTERNAL_ERROR, "key too long");
    /* Two labels: one-shot (see derive_secrets). */
    KX_GUARD(kx_hkdf_expand_label(hash, secret, "key", NULL, 0, key, key_len));
    return kx_hkdf_expand_label(hash, secret, "iv", NULL, 0, iv, 12);
}

kx_result kx_tls13_finished(kx_hash_id hash, const uint8_t *base_key, const uint8_t *th, uint8_t *out)
{
    size_t hlen = kx_hash_len(hash);
    uint8_t finished_key[KX_MAX_HASH];
    kx_result r = kx_hkdf_expand_label(hash, base_key, "finished", NULL, 0, finished_key, hlen);
    if (!kx_failed(r)) r = kx_hmac(hash, finished_key, hlen, th, hlen, out);
    kx_wipe(finished_key, sizeof finished_key);
    return r;
}

kx_result kx_tls13_next_traffic_secret(kx_hash_id hash, uint8_t *secret)
{
    size_t hlen = kx_hash_len(hash);
    uint8_t next[KX_MAX_HASH];
    kx_result r = kx_hkdf_expand_label(hash, secret, "traffic upd", NULL, 0, next, hlen);
    if (!kx_failed(r)) {
        kx_wipe(secret, hlen);
        memcpy(secret, next, hlen);
    }
    kx_wipe(next, sizeof next);
    return r;
}

kx_result kx_tls13_ticket_psk(kx_hash_id hash, const uint8_t *resumption, const uint8_t *nonce, size_t noncelen,
                              uint8_t *out)
{
    size_t hlen = kx_hash_len(hash);
    return kx_hkdf_expand_label(hash, resumption, "resumption", nonce, noncelen, out, hlen);
}
