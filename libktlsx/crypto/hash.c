/* Algorithm fetching, hashes, HMAC, HKDF, the TLS 1.2 PRF and the running
 * transcript hash.
 *
 * HMAC (RFC 2104) is computed here on EVP_MD_CTX with the digests fetched
 * once, not with EVP_MAC "HMAC": OpenSSL 3.0 cannot duplicate a KDF context,
 * and an EVP_MAC_CTX costs a context duplication, a provider HMAC_Init_ex
 * with three digest initialisations and a free on every call — about
 * 16 k instructions per HKDF-Expand-Label, ~19 of which run per handshake
 * side.  Two digest passes over a pre-padded key cost about a third of that;
 * the RFC 4231 / RFC 5869 / RFC 8448 vectors in test_crypto and
 * test_key_schedule check the result. */
#include "crypto/crypto.h"
#include "core/wipe.h"
#include <openssl/core_names.h>
#include <pthread.h>
#include <string.h>

static struct {
    int status; /* 0 ok, -1 failed */
    EVP_MD *md[2];            /* by kx_hash_id */
    EVP_MD *sha512;
    EVP_CIPHER *cipher[KX_AEAD_COUNT]; /* by kx_aead_id */
    uint8_t empty[2][KX_MAX_HASH];     /* Hash(""), by kx_hash_id */
} algs;

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

static void fetch_all(void)
{
    static const char *const md_names[2] = { "SHA2-256", "SHA2-384" };
    static const char *const cipher_names[KX_AEAD_COUNT] = { "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305",
                                                             "AES-128-CCM" };

    algs.status = -1;
    for (int i = 0; i < 2; i++)
        if ((algs.md[i] = EVP_MD_fetch(NULL, md_names[i], NULL)) == NULL) return;
    if ((algs.sha512 = EVP_MD_fetch(NULL, "SHA2-512", NULL)) == NULL) return;
    for (int i = 0; i < KX_AEAD_COUNT; i++)
        if ((algs.cipher[i] = EVP_CIPHER_fetch(NULL, cipher_names[i], NULL)) == NULL) return;
    static const uint8_t nothing[1];
    for (int i = 0; i < 2; i++)
        if (EVP_Digest(nothing, 0, algs.empty[i], NULL, algs.md[i], NULL) != 1) return;
    algs.status = 0;
}

int kx_crypto_init(void)
{
    if (pthread_once(&algs_once, fetch_all) != 0) return -1;
    return algs.status;
}

#define INIT_OR_FAIL()                                                               \
    KX_ENSURE(kx_crypto_init() == 0, KX_ALERT_INTERNAL_ERROR, "crypto library init failed")

static int hash_ok(kx_hash_id h) { return h == KX_HASH_SHA256 || h == KX_HASH_SHA384; }

size_t kx_hash_len(kx_hash_id h) { return h == KX_HASH_SHA384 ? 48 : 32; }

const EVP_MD *kx_hash_md(kx_hash_id h)
{
    if (kx_crypto_init() != 0 || !hash_ok(h)) return NULL;
    return algs.md[h];
}

const uint8_t *kx_hash_empty(kx_hash_id h)
{
    if (kx_crypto_init() != 0 || !hash_ok(h)) return NULL;
    return algs.empty[h];
}

const EVP_MD *kx_md_sha512(void)
{
    if (kx_crypto_init() != 0) return NULL;
    return algs.sha512;
}

const EVP_CIPHER *kx_aead_cipher(kx_aead_id id)
{
    if (kx_crypto_init() != 0 || (unsigned)id >= KX_AEAD_COUNT) return NULL;
    return algs.cipher[id];
}

kx_result kx_hash(kx_hash_id h, const uint8_t *data, size_t len, uint8_t *out)
{
    INIT_OR_FAIL();
    KX_ENSURE(hash_ok(h), KX_ALERT_INTERNAL_ERROR, "unknown hash");
    static const uint8_t empty[1];
    unsigned int outlen = 0;
    KX_ENSURE(EVP_Digest(data != NULL ? data : empty, len, out, &outlen, algs.md[h], NULL) == 1,
              KX_ALERT_INTERNAL_ERROR, "digest failed");
    return KX_OK;
}

/* ---- HMAC ---- */

/* SHA-384's block; SHA-256's is 64. */
#define HMAC_MAX_BLOCK 128

/* One keyed HMAC: the digest context and the key XOR opad, kept for the
 * outer hash and for restarting with the same key (HKDF-Expand, the PRF). */
typedef struct {
    EVP_MD_CTX *ctx;
    /* Prepared (hmac_prepare): the digest states after (K ^ ipad) and after
     * (K ^ opad), copied into `ctx` instead of hashing the padded key block
     * again; the pads are wiped then.  NULL otherwise. */
    EVP_MD_CTX *inner, *outer;
    const EVP_MD *md;
    size_t block;
    uint8_t ipad[HMAC_MAX_BLOCK];
    uint8_t opad[HMAC_MAX_BLOCK];
} hmac_state;

static void hmac_free(hmac_state *s)
{
    /* the provider cleanses the digest states */
    EVP_MD_CTX_free(s->ctx);
    EVP_MD_CTX_free(s->inner);
    EVP_MD_CTX_free(s->outer);
    s->ctx = s->inner = s->outer = NULL;
    kx_wipe(s->ipad, sizeof s->ipad);
    kx_wipe(s->opad, sizeof s->opad);
}

/* Restart with the key `s` already holds: H((K ^ ipad) || ... */
static kx_result hmac_restart(hmac_state *s)
{
    if (s->inner != NULL)
        KX_ENSURE(EVP_MD_CTX_copy_ex(s->ctx, s->inner) == 1, KX_ALERT_INTERNAL_ERROR, "HMAC init failed");
    else
        KX_ENSURE(EVP_DigestInit_ex(s->ctx, s->md, NULL) == 1 && EVP_DigestUpdate(s->ctx, s->ipad, s->block) == 1,
                  KX_ALERT_INTERNAL_ERROR, "HMAC init failed");
    return KX_OK;
}

static kx_result hmac_start(kx_hash_id h, const uint8_t *key, size_t keylen, hmac_state *s)
{
    s->ctx = s->inner = s->outer = NULL;
    INIT_OR_FAIL();
    KX_ENSURE(hash_ok(h), KX_ALERT_INTERNAL_ERROR, "unknown hash");
    s->md = algs.md[h];
    s->block = (size_t)EVP_MD_get_block_size(s->md);
    KX_ENSURE(s->block > 0 && s->block <= HMAC_MAX_BLOCK, KX_ALERT_INTERNAL_ERROR, "unexpected digest block size");
    s->ctx = EVP_MD_CTX_new();
    KX_ENSURE(s->ctx != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");

    /* K0: the key, or its hash when longer than a block, zero-padded (RFC 2104 §2). */
    uint8_t k0[HMAC_MAX_BLOCK] = { 0 };
    kx_result r = KX_OK;
    if (keylen > s->block) {
        unsigned int n = 0;
        if (EVP_DigestInit_ex(s->ctx, s->md, NULL) != 1 || EVP_DigestUpdate(s->ctx, key, keylen) != 1 ||
            EVP_DigestFinal_ex(s->ctx, k0, &n) != 1)
            r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "HMAC init failed");
    } else if (keylen > 0) {
        memcpy(k0, key, keylen);
    }
    for (size_t i = 0; i < s->block; i++) {
        s->ipad[i] = k0[i] ^ 0x36;
        s->opad[i] = k0[i] ^ 0x5c;
    }
    kx_wipe(k0, sizeof k0);
    if (!kx_failed(r)) r = hmac_restart(s);
    if (kx_failed(r)) hmac_free(s);
    return r;
}

static kx_result hmac_update(hmac_state *s, const uint8_t *data, size_t len)
{
    if (len == 0) return KX_OK;
    KX_ENSURE(EVP_DigestUpdate(s->ctx, data, len) == 1, KX_ALERT_INTERNAL_ERROR, "HMAC failed");
    return KX_OK;
}

/* ... H((K ^ opad) || inner) into `out` (the digest length). */
static kx_result hmac_finish(hmac_state *s, uint8_t *out)
{
    uint8_t inner[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(s->ctx, inner, &n) == 1 &&
             (s->outer != NULL ? EVP_MD_CTX_copy_ex(s->ctx, s->outer) == 1
                               : EVP_DigestInit_ex(s->ctx, s->md, NULL) == 1 &&
                                     EVP_DigestUpdate(s->ctx, s->opad, s->block) == 1) &&
             EVP_DigestUpdate(s->ctx, inner, n) == 1 && EVP_DigestFinal_ex(s->ctx, out, &n) == 1;
    kx_wipe(inner, sizeof inner);
    KX_ENSURE(ok, KX_ALERT_INTERNAL_ERROR, "HMAC failed");
    return KX_OK;
}

kx_result kx_hmac(kx_hash_id h, const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t *out)
{
    hmac_state s;
    KX_GUARD(hmac_start(h, key, keylen, &s));
    kx_result r = hmac_update(&s, data, len);
    if (!kx_failed(r)) r = hmac_finish(&s, out);
    hmac_free(&s);
    return r;
}

/* ---- HKDF (RFC 5869) ---- */

kx_result kx_hkdf_extract(kx_hash_id h, const uint8_t *salt, size_t saltlen, const uint8_t *ikm, size_t ikmlen,
                          uint8_t *out)
{
    static const uint8_t zeros[KX_MAX_HASH];
    KX_ENSURE(hash_ok(h), KX_ALERT_INTERNAL_ERROR, "unknown hash");
    if (salt == NULL || saltlen == 0) {
        salt = zeros;
        saltlen = kx_hash_len(h);
    }
    return kx_hmac(h, salt, saltlen, ikm, ikmlen, out);
}

/* HKDF-Expand(prk, info, outlen): T(i) = HMAC(prk, T(i-1) || info || i), with
 * `s` keyed with the PRK; `started` when `s` already holds the inner start state. */
static kx_result hkdf_expand_state(hmac_state *s, size_t hlen, int started, const uint8_t *info, size_t infolen,
                                   uint8_t *out, size_t outlen)
{
    KX_ENSURE(outlen <= 255 * hlen, KX_ALERT_INTERNAL_ERROR, "HKDF output too long");
    uint8_t t[KX_MAX_HASH];
    size_t done = 0;
    kx_result r = KX_OK;
    for (uint8_t i = 1; done < outlen; i++) {
        if (i > 1 || !started) r = hmac_restart(s);
        if (!kx_failed(r) && i > 1) r = hmac_update(s, t, hlen);
        if (!kx_failed(r)) r = hmac_update(s, info, infolen);
        if (!kx_failed(r)) r = hmac_update(s, &i, 1);
        if (!kx_failed(r)) r = hmac_finish(s, t);
        if (kx_failed(r)) break;
        size_t n = outlen - done < hlen ? outlen - done : hlen;
        memcpy(out + done, t, n);
        done += n;
    }
    kx_wipe(t, sizeof t);
    if (kx_failed(r)) kx_wipe(out, outlen);
    return r;
}

/* struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } HkdfLabel; *n set. */
static kx_result hkdf_label(const char *label, const uint8_t *context, size_t ctxlen, size_t outlen,
                            uint8_t info[2 + 1 + 255 + 1 + 255], size_t *n)
{
    static const char prefix[] = "tls13 ";
    size_t labellen = strlen(label);
    KX_ENSURE(sizeof prefix - 1 + labellen <= 255 && ctxlen <= 255 && outlen <= 0xffff,
              KX_ALERT_INTERNAL_ERROR, "HKDF label too long");
    size_t k = 0;
    info[k++] = (uint8_t)(outlen >> 8);
    info[k++] = (uint8_t)outlen;
    info[k++] = (uint8_t)(sizeof prefix - 1 + labellen);
    memcpy(info + k, prefix, sizeof prefix - 1);
    k += sizeof prefix - 1;
    memcpy(info + k, label, labellen);
    k += labellen;
    info[k++] = (uint8_t)ctxlen;
    if (ctxlen) memcpy(info + k, context, ctxlen);
    k += ctxlen;
    *n = k;
    return KX_OK;
}

kx_result kx_hkdf_expand_label(kx_hash_id h, const uint8_t *secret, const char *label, const uint8_t *context,
                               size_t ctxlen, uint8_t *out, size_t outlen)
{
    KX_ENSURE(hash_ok(h), KX_ALERT_INTERNAL_ERROR, "unknown hash");
    uint8_t info[2 + 1 + 255 + 1 + 255];
    size_t n = 0;
    KX_GUARD(hkdf_label(label, context, ctxlen, outlen, info, &n));
    hmac_state s;
    KX_GUARD(hmac_start(h, secret, kx_hash_len(h), &s));
    kx_result r = hkdf_expand_state(&s, kx_hash_len(h), 1, info, n, out, outlen);
    hmac_free(&s);
    return r;
}

/* ---- a secret prepared for several HKDF-Expand-Label calls ----
 * One HKDF-Expand-Label from a fresh secret hashes the padded key twice
 * (inner and outer block) before any label; with the two states kept and
 * copied (EVP_MD_CTX_copy_ex), the second and later labels from the same
 * secret skip those two compressions and the digest re-initialisations. */

kx_result kx_hkdf_key_init(kx_hkdf_key *k, kx_hash_id h, const uint8_t *secret)
{
    memset(k, 0, sizeof *k);
    KX_ENSURE(hash_ok(h), KX_ALERT_INTERNAL_ERROR, "unknown hash");
    hmac_state s;
    KX_GUARD(hmac_start(h, secret, kx_hash_len(h), &s));
    /* s.ctx holds the inner start state: keep it as the template, work in a new context. */
    s.inner = s.ctx;
    s.ctx = EVP_MD_CTX_new();
    s.outer = EVP_MD_CTX_new();
    int ok = s.ctx != NULL && s.outer != NULL && EVP_DigestInit_ex(s.outer, s.md, NULL) == 1 &&
             EVP_DigestUpdate(s.outer, s.opad, s.block) == 1;
    kx_wipe(s.ipad, sizeof s.ipad);
    kx_wipe(s.opad, sizeof s.opad);
    if (!ok) {
        hmac_free(&s);
        return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "HMAC init failed");
    }
    k->hash = h;
    k->work = s.ctx;
    k->inner = s.inner;
    k->outer = s.outer;
    return KX_OK;
}

void kx_hkdf_key_free(kx_hkdf_key *k)
{
    /* Freeing the contexts makes the provider cleanse the key-derived states. */
    EVP_MD_CTX_free(k->work);
    EVP_MD_CTX_free(k->inner);
    EVP_MD_CTX_free(k->outer);
    k->work = k->inner = k->outer = NULL;
}

kx_result kx_hkdf_key_expand_label(kx_hkdf_key *k, const char *label, const uint8_t *context, size_t ctxlen,
                                   uint8_t *out, size_t outlen)
{
    KX_ENSURE(k->inner != NULL && k->outer != NULL && k->work != NULL, KX_ALERT_INTERNAL_ERROR,
              "HKDF key not prepared");
    uint8_t info[2 + 1 + 255 + 1 + 255];
    size_t n = 0;
    KX_GUARD(hkdf_label(label, context, ctxlen, outlen, info, &n));
    hmac_state s = { .ctx = k->work, .inner = k->inner, .outer = k->outer, .md = algs.md[k->hash] };
    s.block = (size_t)EVP_MD_get_block_size(s.md);
    return hkdf_expand_state(&s, kx_hash_len(k->hash), 0, info, n, out, outlen);
}

/* ---- TLS 1.2 PRF (RFC 5246 §5) ----
 * P_hash(secret, seed) = HMAC(secret, A(1) || seed) || HMAC(secret, A(2) || seed) || ...
 * with A(0) = seed, A(i) = HMAC(secret, A(i-1)), and seed = label || seed. */
kx_result kx_tls12_prf(kx_hash_id h, const uint8_t *secret, size_t secretlen, const char *label,
                       const uint8_t *seed, size_t seedlen, uint8_t *out, size_t outlen)
{
    size_t hlen = kx_hash_len(h);
    size_t labellen = strlen(label);
    hmac_state s;
    KX_GUARD(hmac_start(h, secret, secretlen, &s));

    uint8_t a[KX_MAX_HASH], block[KX_MAX_HASH];
    size_t done = 0;
    /* A(1) = HMAC(secret, label || seed) */
    kx_result r = hmac_update(&s, (const uint8_t *)label, labellen);
    if (!kx_failed(r)) r = hmac_update(&s, seed, seedlen);
    if (!kx_failed(r)) r = hmac_finish(&s, a);
    while (!kx_failed(r) && done < outlen) {
        r = hmac_restart(&s);
        if (!kx_failed(r)) r = hmac_update(&s, a, hlen);
        if (!kx_failed(r)) r = hmac_update(&s, (const uint8_t *)label, labellen);
        if (!kx_failed(r)) r = hmac_update(&s, seed, seedlen);
        if (!kx_failed(r)) r = hmac_finish(&s, block);
        if (kx_failed(r)) break;
        size_t n = outlen - done < hlen ? outlen - done : hlen;
        memcpy(out + done, block, n);
        done += n;
        if (done < outlen) {
            r = hmac_restart(&s);
            if (!kx_failed(r)) r = hmac_update(&s, a, hlen);
            if (!kx_failed(r)) r = hmac_finish(&s, a);
        }
    }
    kx_wipe(a, sizeof a);
    kx_wipe(block, sizeof block);
    hmac_free(&s);
    if (kx_failed(r)) kx_wipe(out, outlen);
    return r;
}

/* ---- transcript ---- */

void kx_transcript_init(kx_transcript *t)
{
    memset(t, 0, sizeof *t);
}

void kx_transcript_free(kx_transcript *t)
{
    EVP_MD_CTX_free(t->ctx);
    EVP_MD_CTX_free(t->scratch);
    t->ctx = t->scratch = NULL;
    kx_buf_free(&t->pending);
}

kx_result kx_transcript_set_hash(kx_transcript *t, kx_hash_id h)
{
    INIT_OR_FAIL();
    KX_ENSURE(hash_ok(h), KX_ALERT_INTERNAL_ERROR, "unknown hash");
    if (t->ctx != NULL) {
        KX_ENSURE(t->hash == h, KX_ALERT_INTERNAL_ERROR, "transcript hash already chosen");
        return KX_OK;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new(), *scratch = EVP_MD_CTX_new();
    if (ctx == NULL || scratch == NULL) {
        EVP_MD_CTX_free(ctx);
        EVP_MD_CTX_free(scratch);
        return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "out of memory");
    }
    if (EVP_DigestInit_ex(ctx, algs.md[h], NULL) != 1 ||
        (t->pending.len && EVP_DigestUpdate(ctx, t->pending.data, t->pending.len) != 1)) {
        EVP_MD_CTX_free(ctx);
        EVP_MD_CTX_free(scratch);
        return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "digest failed");
    }
    t->ctx = ctx;
    t->scratch = scratch;
    t->hash = h;
    if (!t->keep_raw) kx_buf_free(&t->pending);
    return KX_OK;
}

kx_result kx_transcript_add(kx_transcript *t, const uint8_t *msg, size_t len)
{
    if (t->ctx != NULL)
        KX_ENSURE(EVP_DigestUpdate(t->ctx, msg, len) == 1, KX_ALERT_INTERNAL_ERROR, "digest failed");
    if (t->ctx == NULL || t->keep_raw) KX_GUARD(kx_write_bytes(&t->pending, msg, len));
    return KX_OK;
}

kx_result kx_transcript_hash(const kx_transcript *t, uint8_t *out)
{
    KX_ENSURE(t->ctx != NULL, KX_ALERT_INTERNAL_ERROR, "transcript hash not chosen");
    /* Finalising a copy leaves the running state free to take more messages;
     * the copy goes into the transcript's own scratch context (no allocation
     * of an EVP_MD_CTX per intermediate hash). */
    KX_ENSURE(t->scratch != NULL, KX_ALERT_INTERNAL_ERROR, "transcript hash not chosen");
    KX_ENSURE(EVP_MD_CTX_copy_ex(t->scratch, t->ctx) == 1 && EVP_DigestFinal_ex(t->scratch, out, NULL) == 1,
              KX_ALERT_INTERNAL_ERROR, "digest failed");
    return KX_OK;
}

kx_result kx_transcript_hrr_rewrite(kx_transcript *t)
{
    KX_ENSURE(t->ctx != NULL, KX_ALERT_INTERNAL_ERROR, "transcript hash not chosen");
    size_t hlen = kx_hash_len(t->hash);
    /* message_hash handshake message: type 254, uint24 length, Hash(ClientHello1) */
    uint8_t synthetic[4 + KX_MAX_HASH] = { 0xfe, 0x00, 0x00, (uint8_t)hlen };
    KX_GUARD(kx_transcript_hash(t, synthetic + 4));
    KX_ENSURE(EVP_DigestInit_ex(t->ctx, algs.md[t->hash], NULL) == 1 &&
                  EVP_DigestUpdate(t->ctx, synthetic, 4 + hlen) == 1,
              KX_ALERT_INTERNAL_ERROR, "digest failed");
    if (t->keep_raw) {
        kx_buf_reset(&t->pending);
        KX_GUARD(kx_write_bytes(&t->pending, synthetic, 4 + hlen));
    }
    return KX_OK;
}
