/* RSA key transport for the legacy TLS_RSA_WITH_* suites.
 *
 * Decryption uses OpenSSL's RSA_PKCS1_WITH_TLS_PADDING mode, which checks the
 * PKCS#1 padding and the embedded client version in constant time and, on any
 * failure, returns a random pre-master secret instead of an error: the same
 * code path, the same timing, and the failure shows up only as a Finished
 * mismatch (decrypt_error) - the countermeasure RFC 5246 §7.4.7.1 asks for. */
#include "crypto/crypto.h"
#include "core/wipe.h"
#include <openssl/core_names.h>
#include <openssl/rsa.h>

kx_result kx_rsa_encrypt(EVP_PKEY *pub, const uint8_t *msg, size_t len, kx_buf *out)
{
    KX_ENSURE(pub && EVP_PKEY_is_a(pub, "RSA"), KX_ALERT_HANDSHAKE_FAILURE, "RSA key exchange needs an RSA certificate");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
    size_t n = 0, max = 0;
    uint8_t *p;
    kx_result r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "RSA encryption failed");
    if (ctx && EVP_PKEY_encrypt_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
        EVP_PKEY_encrypt(ctx, NULL, &n, msg, len) == 1 && (max = n) > 0 && !kx_failed(kx_write_space(out, n, &p)) &&
        EVP_PKEY_encrypt(ctx, p, &n, msg, len) == 1) {
        out->len -= max - n; /* n is now the exact length written */
        r = KX_OK;
    }
    EVP_PKEY_CTX_free(ctx);
    return r;
}

kx_result kx_rsa_decrypt_premaster(EVP_PKEY *priv, const uint8_t *enc, size_t len, uint16_t client_version,
                                   uint8_t pms[48])
{
    KX_ENSURE(EVP_PKEY_is_a(priv, "RSA"), KX_ALERT_INTERNAL_ERROR, "RSA key exchange needs an RSA key");
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
    unsigned int cv = client_version, nv = 0x0303;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &cv),
        OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, &nv),
        OSSL_PARAM_construct_end(),
    };
    size_t outlen = 48;
    kx_result r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "RSA decryption setup failed");
    if (ctx && EVP_PKEY_decrypt_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_WITH_TLS_PADDING) == 1 &&
        EVP_PKEY_CTX_set_params(ctx, params) == 1) {
        /* With TLS padding a wrong ciphertext still "succeeds" with random bytes;
         * only a wrong length (public information) returns an error. */
        if (EVP_PKEY_decrypt(ctx, pms, &outlen, enc, len) == 1 && outlen == 48) r = KX_OK;
        else r = kx_random(pms, 48); /* public length error: still no distinct alert */
    }
    EVP_PKEY_CTX_free(ctx);
    return r;
}
