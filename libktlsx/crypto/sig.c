/* Handshake signatures (CertificateVerify, ServerKeyExchange) with
 * EVP_DigestSign / EVP_DigestVerify, and which keys may use which
 * SignatureScheme. */
#include "crypto/crypto.h"
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <string.h>

typedef enum { SK_ECDSA, SK_PSS_RSAE, SK_PSS_PSS, SK_PKCS1, SK_ED25519, SK_ED448 } sig_kind;

typedef struct {
    sig_kind kind;
    const EVP_MD *md;   /* NULL for EdDSA (Ed25519, Ed448 hash internally) */
    size_t hlen;
    const char *curve;  /* ECDSA: the curve TLS 1.3 binds to the hash (OpenSSL group name) */
} sig_info;

static int sigalg_info(uint16_t sigalg, sig_info *si)
{
    const EVP_MD *sha256 = kx_hash_md(KX_HASH_SHA256), *sha384 = kx_hash_md(KX_HASH_SHA384);
    const EVP_MD *sha512 = kx_md_sha512();
    if (sha256 == NULL || sha384 == NULL || sha512 == NULL) return 0;
    switch (sigalg) {
    case KX_SIG_ECDSA_SECP256R1_SHA256: *si = (sig_info){ SK_ECDSA, sha256, 32, "prime256v1" }; break;
    case KX_SIG_ECDSA_SECP384R1_SHA384: *si = (sig_info){ SK_ECDSA, sha384, 48, "secp384r1" }; break;
    case KX_SIG_ECDSA_SECP521R1_SHA512: *si = (sig_info){ SK_ECDSA, sha512, 64, "secp521r1" }; break;
    case KX_SIG_RSA_PSS_RSAE_SHA256: *si = (sig_info){ SK_PSS_RSAE, sha256, 32, NULL }; break;
    case KX_SIG_RSA_PSS_RSAE_SHA384: *si = (sig_info){ SK_PSS_RSAE, sha384, 48, NULL }; break;
    case KX_SIG_RSA_PSS_RSAE_SHA512: *si = (sig_info){ SK_PSS_RSAE, sha512, 64, NULL }; break;
    case KX_SIG_RSA_PSS_PSS_SHA256: *si = (sig_info){ SK_PSS_PSS, sha256, 32, NULL }; break;
    case KX_SIG_RSA_PSS_PSS_SHA384: *si = (sig_info){ SK_PSS_PSS, sha384, 48, NULL }; break;
    case KX_SIG_RSA_PSS_PSS_SHA512: *si = (sig_info){ SK_PSS_PSS, sha512, 64, NULL }; break;
    case KX_SIG_RSA_PKCS1_SHA256: *si = (sig_info){ SK_PKCS1, sha256, 32, NULL }; break;
    case KX_SIG_RSA_PKCS1_SHA384: *si = (sig_info){ SK_PKCS1, sha384, 48, NULL }; break;
    case KX_SIG_RSA_PKCS1_SHA512: *si = (sig_info){ SK_PKCS1, sha512, 64, NULL }; break;
    case KX_SIG_ED25519: *si = (sig_info){ SK_ED25519, NULL, 0, NULL }; break;
    case KX_SIG_ED448: *si = (sig_info){ SK_ED448, NULL, 0, NULL }; break;
    default: return 0;
    }
    return 1;
}

/* An RSA-PSS key may carry parameters (RFC 4055) that restrict it to one
 * digest, one MGF1 digest and a minimum salt length.  TLS needs both digests
 * to be the scheme's hash and the salt to be the hash length. */
static int pss_key_restricted(EVP_PKEY *key)
{
    char name[64] = "";
    return EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_RSA_DIGEST, name, sizeof name, NULL) == 1 &&
           name[0] != '\0';
}

static int pss_key_allows(EVP_PKEY *key, const sig_info *si)
{
    if (!pss_key_restricted(key)) return 1;
    char md[64] = "", mgf1[64] = "";
    int saltlen = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_RSA_DIGEST, md, sizeof md, NULL) != 1 ||
        !EVP_MD_is_a(si->md, md))
        return 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, mgf1, sizeof mgf1, NULL) == 1 &&
        mgf1[0] != '\0' && !EVP_MD_is_a(si->md, mgf1))
        return 0;
    if (EVP_PKEY_get_int_param(key, OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &saltlen) == 1 &&
        saltlen > (int)si->hlen)
        return 0;
    return 1;
}

int kx_sigalg_fits_key(uint16_t sigalg, EVP_PKEY *key, int tls13)
{
    sig_info si;
    if (key == NULL || !sigalg_info(sigalg, &si)) return 0;
    int type = EVP_PKEY_get_base_id(key);
    switch (si.kind) {
    case SK_ECDSA: {
        if (type != EVP_PKEY_EC) return 0;
        if (!tls13) return 1; /* TLS 1.2 names only the hash; any curve may sign */
        char group[64];
        size_t glen = 0;
        return EVP_PKEY_get_group_name(key, group, sizeof group, &glen) == 1 && strcmp(group, si.curve) == 0;
    }
    case SK_PSS_RSAE:
    case SK_PSS_PSS:
        if (type != (si.kind == SK_PSS_RSAE ? EVP_PKEY_RSA : EVP_PKEY_RSA_PSS)) return 0;
        if (si.kind == SK_PSS_PSS && !pss_key_allows(key, &si)) return 0;
        /* PSS with salt = hash length needs emLen >= 2 * hLen + 2 (RFC 8017 §9.1.1). */
        return (size_t)EVP_PKEY_get_bits(key) >= 8 * (2 * si.hlen + 2) + 1;
    case SK_PKCS1:
        return !tls13 && type == EVP_PKEY_RSA;
    case SK_ED25519:
        return type == EVP_PKEY_ED25519;
    case SK_ED448:
        return type == EVP_PKEY_ED448;
    }
    return 0;
}

/* Padding parameters on an initialised sign/verify context. */
static int set_padding(EVP_PKEY_CTX *pctx, const sig_info *si, EVP_PKEY *key)
{
    switch (si->kind) {
    case SK_PSS_RSAE:
    case SK_PSS_PSS:
        /* A restricted key already fixes MGF1 (checked by kx_sigalg_fits_key),
         * and the provider refuses to have it set again. */
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
               ((si->kind == SK_PSS_PSS && pss_key_restricted(key)) ||
                EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, si->md) > 0) &&
               EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
    case SK_PKCS1:
        return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    default:
        return 1;
    }
}

kx_result kx_sign(uint16_t sigalg, EVP_PKEY *priv, const uint8_t *msg, size_t len, kx_buf *sig_out)
{
    sig_info si;
    KX_ENSURE(sigalg_info(sigalg, &si), KX_ALERT_INTERNAL_ERROR, "unsupported signature algorithm");
    KX_ENSURE(kx_sigalg_fits_key(sigalg, priv, 0), KX_ALERT_INTERNAL_ERROR,
              "private key cannot sign with this signature algorithm");
    int max = EVP_PKEY_get_size(priv);
    KX_ENSURE(max > 0, KX_ALERT_INTERNAL_ERROR, "private key has no signature size");

    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    KX_ENSURE(mctx != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    size_t start = sig_out->len;
    uint8_t *p;
    kx_result r = kx_write_space(sig_out, (size_t)max, &p);
    if (!kx_failed(r)) {
        EVP_PKEY_CTX *pctx = NULL;
        size_t siglen = (size_t)max;
        if (EVP_DigestSignInit(mctx, &pctx, si.md, NULL, priv) != 1 || !set_padding(pctx, &si, priv) ||
            EVP_DigestSign(mctx, p, &siglen, msg, len) != 1 || siglen > (size_t)max) {
            sig_out->len = start;
            r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "signing failed");
        } else {
            /* ECDSA signatures are DER and usually shorter than the maximum. */
            sig_out->len = start + siglen;
        }
    }
    EVP_MD_CTX_free(mctx);
    return r;
}

void kx_signer_init(kx_signer *s, EVP_PKEY *priv)
{
    static const uint16_t all[] = {
        KX_SIG_ECDSA_SECP256R1_SHA256, KX_SIG_ECDSA_SECP384R1_SHA384, KX_SIG_ECDSA_SECP521R1_SHA512,
        KX_SIG_RSA_PSS_RSAE_SHA256,    KX_SIG_RSA_PSS_RSAE_SHA384,    KX_SIG_RSA_PSS_RSAE_SHA512,
        KX_SIG_RSA_PSS_PSS_SHA256,     KX_SIG_RSA_PSS_PSS_SHA384,     KX_SIG_RSA_PSS_PSS_SHA512,
        KX_SIG_RSA_PKCS1_SHA256,       KX_SIG_RSA_PKCS1_SHA384,       KX_SIG_RSA_PKCS1_SHA512,
    };
    memset(s, 0, sizeof *s);
    if (priv == NULL) return;
    for (size_t i = 0; i < sizeof all / sizeof all[0] && s->count < KX_SIGNER_SLOTS; i++) {
        sig_info si;
        if (!sigalg_info(all[i], &si) || si.md == NULL || !kx_sigalg_fits_key(all[i], priv, 0)) continue;
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
        if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0 || EVP_PKEY_CTX_set_signature_md(ctx, si.md) <= 0 ||
            !set_padding(ctx, &si, priv)) {
            EVP_PKEY_CTX_free(ctx);
            continue;
        }
        s->ctx[s->count] = ctx;
        s->sigalg[s->count++] = all[i];
    }
    ERR_clear_error(); /* a scheme the provider refused is left to kx_sign */
}

void kx_signer_free(kx_signer *s)
{
    for (size_t i = 0; i < s->count && i < KX_SIGNER_SLOTS; i++) EVP_PKEY_CTX_free(s->ctx[i]);
    memset(s, 0, sizeof *s);
}

kx_result kx_sign_with(const kx_signer *s, uint16_t sigalg, EVP_PKEY *priv, const uint8_t *msg, size_t len,
                       kx_buf *sig_out)
{
    EVP_PKEY_CTX *prepared = NULL;
    for (size_t i = 0; s != NULL && i < s->count && i < KX_SIGNER_SLOTS; i++)
        if (s->sigalg[i] == sigalg) prepared = s->ctx[i];
    if (prepared == NULL) return kx_sign(sigalg, priv, msg, len, sig_out);

    sig_info si;
    KX_ENSURE(sigalg_info(sigalg, &si) && si.md != NULL, KX_ALERT_INTERNAL_ERROR, "unsupported signature algorithm");
    int max = EVP_PKEY_get_size(priv);
    KX_ENSURE(max > 0, KX_ALERT_INTERNAL_ERROR, "private key has no signature size");
    uint8_t dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    KX_ENSURE(EVP_Digest(msg, len, dgst, &dlen, si.md, NULL) == 1 && dlen == si.hlen, KX_ALERT_INTERNAL_ERROR,
              "digest failed");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_dup(prepared);
    KX_ENSURE(ctx != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    size_t start = sig_out->len;
    uint8_t *p;
    kx_result r = kx_write_space(sig_out, (size_t)max, &p);
    if (!kx_failed(r)) {
        size_t siglen = (size_t)max;
        if (EVP_PKEY_sign(ctx, p, &siglen, dgst, dlen) != 1 || siglen > (size_t)max) {
            sig_out->len = start;
            r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "signing failed");
        } else {
            sig_out->len = start + siglen;
        }
    }
    EVP_PKEY_CTX_free(ctx);
    return r;
}

int kx_sig_length_ok(EVP_PKEY *pub, size_t len)
{
    int size = EVP_PKEY_get_size(pub);
    if (size <= 0 || len == 0) return 0;
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS: return len == (size_t)size;
    case EVP_PKEY_ED25519: return len == 64;
    case EVP_PKEY_ED448: return len == 114;
    default: return len <= (size_t)size; /* ECDSA: DER, variable length up to EVP_PKEY_get_size */
    }
}

kx_result kx_verify(uint16_t sigalg, EVP_PKEY *pub, const uint8_t *msg, size_t len, const uint8_t *sig,
                    size_t siglen)
{
    sig_info si;
    KX_ENSURE(sigalg_info(sigalg, &si), KX_ALERT_ILLEGAL_PARAMETER, "unsupported signature algorithm");
    KX_ENSURE(kx_sigalg_fits_key(sigalg, pub, 0), KX_ALERT_ILLEGAL_PARAMETER,
              "signature algorithm does not match the certificate key");

    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    KX_ENSURE(mctx != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    EVP_PKEY_CTX *pctx = NULL;
    kx_result r = KX_OK;
    if (EVP_DigestVerifyInit(mctx, &pctx, si.md, NULL, pub) != 1 || !set_padding(pctx, &si, pub))
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "verify init failed");
    else if (EVP_DigestVerify(mctx, sig, siglen, msg, len) != 1)
        r = KX_FAIL(KX_ALERT_DECRYPT_ERROR, "signature verification failed");
    EVP_MD_CTX_free(mctx);
    /* A peer's bad signature is an expected event: leave no stale entries
     * in this thread's error queue for an unrelated later failure to report. */
    if (kx_failed(r)) ERR_clear_error();
    return r;
}
