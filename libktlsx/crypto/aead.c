/* Record AEADs (AES-GCM, ChaCha20-Poly1305, AES-128-CCM), randomness and constant-time compare.
 *
 * The cipher context is keyed once in kx_aead_new; each record only sets the
 * nonce and direction, so the AES key schedule and the provider lookup are
 * paid once per traffic key, not once per record. */
#include "crypto/crypto.h"
#include "core/wipe.h"
#include <openssl/rand.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct kx_aead {
    EVP_CIPHER_CTX *ctx;
    int ccm; /* CCM: the message length goes in before the AAD, and the tag is checked by the update */
    /* CCM only: OpenSSL's CCM context does not follow a change of direction
     * without its key, so the key is kept (wiped on free) and given again
     * when a context that sealed now opens or the other way round. */
    int last_enc;
    uint8_t key[16];
};

/* Start one record: the nonce and the direction (and for CCM, the key when the direction changed). */
static int start_record(kx_aead *a, const uint8_t nonce[KX_AEAD_NONCE], int enc)
{
    const uint8_t *key = a->ccm && a->last_enc != enc ? a->key : NULL;
    a->last_enc = enc;
    return EVP_CipherInit_ex2(a->ctx, NULL, key, nonce, enc, NULL) == 1;
}

kx_result kx_aead_new(kx_aead **out, kx_aead_id id, const uint8_t *key, size_t keylen)
{
    *out = NULL;
    const EVP_CIPHER *cipher = kx_aead_cipher(id);
    KX_ENSURE(cipher != NULL, KX_ALERT_INTERNAL_ERROR, "AEAD unavailable");
    KX_ENSURE(keylen == (size_t)EVP_CIPHER_get_key_length(cipher), KX_ALERT_INTERNAL_ERROR,
              "wrong AEAD key length");
    int ccm = id == KX_AEAD_AES_128_CCM;
    /* CCM's default nonce is 7 bytes: it is set to TLS's 12 below. */
    KX_ENSURE(ccm || EVP_CIPHER_get_iv_length(cipher) == KX_AEAD_NONCE, KX_ALERT_INTERNAL_ERROR,
              "unexpected AEAD nonce length");

    kx_aead *a = calloc(1, sizeof *a);
    KX_ENSURE(a != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    a->ccm = ccm;
    a->last_enc = 1;
    if (ccm) memcpy(a->key, key, sizeof a->key); /* keylen checked above: AES-128, 16 bytes */
    a->ctx = EVP_CIPHER_CTX_new();
    int ok = a->ctx != NULL && EVP_CipherInit_ex2(a->ctx, cipher, NULL, NULL, 1, NULL) == 1;
    if (ok && ccm)
        ok = EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, KX_AEAD_NONCE, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, KX_AEAD_TAG, NULL) == 1;
    if (!ok || EVP_CipherInit_ex2(a->ctx, NULL, key, NULL, 1, NULL) != 1) {
        kx_aead_free(a);
        return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "AEAD init failed");
    }
    *out = a;
    return KX_OK;
}

void kx_aead_free(kx_aead *a)
{
    if (a == NULL) return;
    /* Freeing the context makes the provider cleanse the expanded key. */
    EVP_CIPHER_CTX_free(a->ctx);
    kx_wipe(a, sizeof *a);
    free(a);
}

kx_result kx_aead_seal(kx_aead *a, const uint8_t nonce[KX_AEAD_NONCE], const uint8_t *aad, size_t aadlen,
                       const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    KX_ENSURE(ptlen <= INT_MAX && aadlen <= INT_MAX, KX_ALERT_INTERNAL_ERROR, "record too large");
    int n = 0, fin = 0;
    int ok = start_record(a, nonce, 1) &&
             (!a->ccm || EVP_CipherUpdate(a->ctx, NULL, &n, NULL, (int)ptlen) == 1) &&
             (aadlen == 0 || EVP_CipherUpdate(a->ctx, NULL, &n, aad, (int)aadlen) == 1) &&
             (ptlen == 0 || EVP_CipherUpdate(a->ctx, out, &n, pt, (int)ptlen) == 1) &&
             EVP_CipherFinal_ex(a->ctx, out + ptlen, &fin) == 1 &&
             EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, KX_AEAD_TAG, out + ptlen) == 1;
    KX_ENSURE(ok, KX_ALERT_INTERNAL_ERROR, "AEAD seal failed");
    return KX_OK;
}

kx_result kx_aead_open(kx_aead *a, const uint8_t nonce[KX_AEAD_NONCE], const uint8_t *aad, size_t aadlen,
                       const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    KX_ENSURE(ctlen >= KX_AEAD_TAG, KX_ALERT_BAD_RECORD_MAC, "bad record MAC");
    KX_ENSURE(ctlen <= INT_MAX && aadlen <= INT_MAX, KX_ALERT_RECORD_OVERFLOW, "record too large");
    size_t ptlen = ctlen - KX_AEAD_TAG;
    /* Copied first: with out == ct, nothing may overwrite the tag before it is set. */
    uint8_t tag[KX_AEAD_TAG];
    memcpy(tag, ct + ptlen, KX_AEAD_TAG);

    KX_ENSURE(start_record(a, nonce, 0) &&
                  EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, KX_AEAD_TAG, tag) == 1,
              KX_ALERT_INTERNAL_ERROR, "AEAD init failed");
    int n = 0, fin = 0;
    /* CCM verifies the tag in the update that carries the ciphertext (and
     * has no final step); the others in the final step. */
    int ok = (!a->ccm || EVP_CipherUpdate(a->ctx, NULL, &n, NULL, (int)ptlen) == 1) &&
             (aadlen == 0 || EVP_CipherUpdate(a->ctx, NULL, &n, aad, (int)aadlen) == 1) &&
             ((ptlen == 0 && !a->ccm) || EVP_CipherUpdate(a->ctx, out, &n, ct, (int)ptlen) == 1) &&
             (a->ccm || EVP_CipherFinal_ex(a->ctx, out + ptlen, &fin) == 1);
    if (!ok) {
        /* Never hand out plaintext that failed authentication. */
        kx_wipe(out, ptlen);
        return KX_FAIL(KX_ALERT_BAD_RECORD_MAC, "bad record MAC");
    }
    return KX_OK;
}

kx_result kx_random(void *out, size_t n)
{
    uint8_t *p = out;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        KX_ENSURE(RAND_bytes(p, chunk) == 1, KX_ALERT_INTERNAL_ERROR, "random generator failed");
        p += chunk;
        n -= (size_t)chunk;
    }
    return KX_OK;
}

int kx_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
