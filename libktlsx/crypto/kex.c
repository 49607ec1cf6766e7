/* Ephemeral (EC)DHE key shares: X25519, secp256r1, secp384r1, secp521r1, X448.
 *
 * Key generation starts from one template key per group made at first use,
 * so each handshake reuses the template's key manager instead of looking the
 * algorithm up by name; the peer's key is built the same way (parameters
 * copied from our own key, then its encoded point set). */
#include "crypto/crypto.h"
#include "core/wipe.h"
#include <openssl/err.h>
#include <pthread.h>
#include <string.h>

enum { G_X25519, G_P256, G_P384, G_P521, G_X448, G_COUNT };
/* X25519 and X448 shares are raw u-coordinates; the others uncompressed points. */
#define G_IS_X(g) ((g) == G_X25519 || (g) == G_X448)

static struct {
    int status;
    EVP_PKEY *tmpl[G_COUNT];
} kex;

static pthread_once_t kex_once = PTHREAD_ONCE_INIT;

static EVP_PKEY *ec_params(const char *curve)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *params = NULL;
    if (ctx == NULL || EVP_PKEY_paramgen_init(ctx) <= 0 || EVP_PKEY_CTX_set_group_name(ctx, curve) <= 0 ||
        EVP_PKEY_paramgen(ctx, &params) <= 0)
        params = NULL;
    EVP_PKEY_CTX_free(ctx);
    return params;
}

static void make_templates(void)
{
    kex.status = -1;
    /* X25519 has no domain parameters; any key of the type serves as template. */
    if ((kex.tmpl[G_X25519] = EVP_PKEY_Q_keygen(NULL, NULL, "X25519")) == NULL) return;
    if ((kex.tmpl[G_P256] = ec_params("P-256")) == NULL) return;
    if ((kex.tmpl[G_P384] = ec_params("P-384")) == NULL) return;
    if ((kex.tmpl[G_P521] = ec_params("P-521")) == NULL) return;
    if ((kex.tmpl[G_X448] = EVP_PKEY_Q_keygen(NULL, NULL, "X448")) == NULL) return;
    kex.status = 0;
}

/* Our index for `group`, with the wire sizes of its share and secret. */
static int group_index(uint16_t group, size_t *share_len, size_t *secret_len)
{
    switch (group) {
    case KX_GROUP_X25519: *share_len = 32; *secret_len = 32; return G_X25519;
    case KX_GROUP_SECP256R1: *share_len = 65; *secret_len = 32; return G_P256;
    case KX_GROUP_SECP384R1: *share_len = 97; *secret_len = 48; return G_P384;
    case KX_GROUP_SECP521R1: *share_len = 133; *secret_len = 66; return G_P521;
    case KX_GROUP_X448: *share_len = 56; *secret_len = 56; return G_X448;
    default: return -1;
    }
}

static kx_result templates_ready(void)
{
    KX_ENSURE(kx_crypto_init() == 0 && pthread_once(&kex_once, make_templates) == 0 && kex.status == 0,
              KX_ALERT_INTERNAL_ERROR, "key exchange init failed");
    return KX_OK;
}

kx_result kx_kex_keygen(uint16_t group, EVP_PKEY **priv, kx_buf *pub)
{
    *priv = NULL;
    size_t share_len, secret_len;
    int g = group_index(group, &share_len, &secret_len);
    KX_ENSURE(g >= 0, KX_ALERT_INTERNAL_ERROR, "unsupported group");
    KX_GUARD(templates_ready());

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, kex.tmpl[g], NULL);
    EVP_PKEY *key = NULL;
    int ok = ctx != NULL && EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_keygen(ctx, &key) > 0;
    EVP_PKEY_CTX_free(ctx);
    KX_ENSURE(ok, KX_ALERT_INTERNAL_ERROR, "key generation failed");

    /* X25519: the 32-byte u-coordinate; EC: the point in the key's default
     * uncompressed form, 0x04 || X || Y. */
    uint8_t *enc = NULL;
    size_t len = EVP_PKEY_get1_encoded_public_key(key, &enc);
    kx_result r = KX_OK;
    if (len != share_len || (!G_IS_X(g) && enc[0] != 0x04))
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "unexpected public key encoding");
    else
        r = kx_write_bytes(pub, enc, len);
    OPENSSL_free(enc);
    if (kx_failed(r)) {
        EVP_PKEY_free(key);
        return r;
    }
    *priv = key;
    return KX_OK;
}

kx_result kx_kex_derive(uint16_t group, EVP_PKEY *priv, const uint8_t *peer, size_t peerlen,
                        uint8_t *secret, size_t *secretlen)
{
    *secretlen = 0;
    size_t share_len, secret_len;
    int g = group_index(group, &share_len, &secret_len);
    KX_ENSURE(g >= 0, KX_ALERT_ILLEGAL_PARAMETER, "unsupported group");
    KX_ENSURE(priv != NULL, KX_ALERT_INTERNAL_ERROR, "no private key");
    KX_ENSURE(peerlen == share_len, KX_ALERT_ILLEGAL_PARAMETER, "key share has the wrong length");
    /* TLS 1.3 (RFC 8446 §4.2.8.2) and our TLS 1.2 ec_point_formats allow only uncompressed points. */
    KX_ENSURE(G_IS_X(g) || peer[0] == 0x04, KX_ALERT_ILLEGAL_PARAMETER, "key share is not an uncompressed point");
    KX_GUARD(templates_ready());

    /* Decoding an EC point checks that it lies on the curve. */
    EVP_PKEY *peer_key = EVP_PKEY_new();
    KX_ENSURE(peer_key != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    if (EVP_PKEY_copy_parameters(peer_key, priv) != 1) {
        EVP_PKEY_free(peer_key);
        return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "key parameters copy failed");
    }
    if (EVP_PKEY_set1_encoded_public_key(peer_key, peer, peerlen) != 1) {
        EVP_PKEY_free(peer_key);
        ERR_clear_error();
        return KX_FAIL(KX_ALERT_ILLEGAL_PARAMETER, "invalid key share");
    }

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
    uint8_t out[66];
    size_t outlen = sizeof out;
    kx_result r = KX_OK;
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0)
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "key agreement init failed");
    /* Validating an X25519/X448 peer key is only a presence check in the
     * provider, at the cost of a second context; the all-zero check below is
     * the real one.  EC points are checked against the curve. */
    else if (EVP_PKEY_derive_set_peer_ex(ctx, peer_key, !G_IS_X(g)) <= 0)
        r = KX_FAIL(KX_ALERT_ILLEGAL_PARAMETER, "invalid key share");
    else if (EVP_PKEY_derive(ctx, out, &outlen) <= 0)
        /* X25519 fails here on a low-order point (all-zero result). */
        r = KX_FAIL(KX_ALERT_ILLEGAL_PARAMETER, "invalid key share");
    else if (outlen != secret_len)
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "unexpected shared secret length");
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer_key);

    if (!kx_failed(r)) {
        /* RFC 7748 §6.1-6.2 / RFC 8446 §7.4.2: an all-zero X25519/X448 output means the
         * peer sent a small-order point; check independently of the library. */
        uint8_t acc = 0;
        for (size_t i = 0; i < outlen; i++) acc |= out[i];
        if (acc == 0)
            r = KX_FAIL(KX_ALERT_ILLEGAL_PARAMETER, "invalid key share");
        else {
            memcpy(secret, out, outlen);
            *secretlen = outlen;
        }
    }
    kx_wipe(out, sizeof out);
    /* An invalid peer share is the peer's fault; keep the error queue clean. */
    if (kx_failed(r)) ERR_clear_error();
    return r;
}
