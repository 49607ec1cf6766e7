/* Crypto glue: known-answer vectors for every primitive we build on
 * (hash, HMAC, HKDF, TLS 1.2 PRF, the three AEADs), plus behaviour the
 * handshake relies on: AEAD tamper detection, key-share validation,
 * signature checks, which keys fit which signature schemes, transcript
 * buffering and the HelloRetryRequest rewrite, and the suite/name tables. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "crypto/crypto.h"
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <ctype.h>
#include <pthread.h>
#include <string.h>

#define OK(expr) assert_null((expr).reason)
#define FAILS_WITH(expr, alert_)            \
    do {                                    \
        kx_result r__ = (expr);             \
        assert_non_null(r__.reason);        \
        assert_int_equal(r__.alert, alert_); \
    } while (0)

#include "helpers/hex.h"

/* ---- hash, HMAC, HKDF, PRF ---- */

static void test_hash_abc(void **state)
{
    (void)state;
    uint8_t out[KX_MAX_HASH];
    assert_int_equal(kx_crypto_init(), 0);
    assert_int_equal(kx_hash_len(KX_HASH_SHA256), 32);
    assert_int_equal(kx_hash_len(KX_HASH_SHA384), 48);
    assert_non_null(kx_hash_md(KX_HASH_SHA256));
    assert_int_equal(EVP_MD_get_size(kx_hash_md(KX_HASH_SHA384)), 48);
    /* FIPS 180-2 "abc" */
    OK(kx_hash(KX_HASH_SHA256, (const uint8_t *)"abc", 3, out));
    assert_hex(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    OK(kx_hash(KX_HASH_SHA384, (const uint8_t *)"abc", 3, out));
    assert_hex(out, 48,
               "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
               "8086072ba1e7cc2358baeca134c825a7");
}

static void test_hmac_rfc4231_case2(void **state)
{
    (void)state;
    static const char data[] = "what do ya want for nothing?";
    uint8_t out[KX_MAX_HASH];
    OK(kx_hmac(KX_HASH_SHA256, (const uint8_t *)"Jefe", 4, (const uint8_t *)data, sizeof data - 1, out));
    assert_hex(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    OK(kx_hmac(KX_HASH_SHA384, (const uint8_t *)"Jefe", 4, (const uint8_t *)data, sizeof data - 1, out));
    assert_hex(out, 48,
               "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
               "8e2240ca5e69e2c78b3239ecfab21649");
}

/* RFC 4231 case 6: a key longer than the hash block is hashed first (RFC 2104 §2);
 * 131 bytes is longer than both SHA-256's 64-byte and SHA-384's 128-byte block. */
static void test_hmac_rfc4231_case6_long_key(void **state)
{
    (void)state;
    static const char data[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    uint8_t key[131], out[KX_MAX_HASH];
    memset(key, 0xaa, sizeof key);
    OK(kx_hmac(KX_HASH_SHA256, key, sizeof key, (const uint8_t *)data, sizeof data - 1, out));
    assert_hex(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    OK(kx_hmac(KX_HASH_SHA384, key, sizeof key, (const uint8_t *)data, sizeof data - 1, out));
    assert_hex(out, 48,
               "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
               "0c2ef6ab4030fe8296248df163f44952");
}

static void test_hkdf_extract_rfc5869(void **state)
{
    (void)state;
    uint8_t ikm[22], salt[13], prk[32];
    memset(ikm, 0x0b, sizeof ikm);
    for (size_t i = 0; i < sizeof salt; i++) salt[i] = (uint8_t)i;

    /* Test case 1 */
    OK(kx_hkdf_extract(KX_HASH_SHA256, salt, sizeof salt, ikm, sizeof ikm, prk));
    assert_hex(prk, 32, "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");

    /* Test case 3: no salt, which TLS 1.3 uses for the Early Secret. */
    OK(kx_hkdf_extract(KX_HASH_SHA256, NULL, 0, ikm, sizeof ikm, prk));
    assert_hex(prk, 32, "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
}

static void test_hkdf_expand_label_lengths(void **state)
{
    (void)state;
    uint8_t secret[32], a[100], b[32];
    memset(secret, 7, sizeof secret);
    /* Longer than one hash block (several HMAC rounds), and the length is
     * part of HkdfLabel so a shorter output is not a prefix of a longer one. */
    OK(kx_hkdf_expand_label(KX_HASH_SHA256, secret, "key", NULL, 0, a, sizeof a));
    OK(kx_hkdf_expand_label(KX_HASH_SHA256, secret, "key", NULL, 0, b, sizeof b));
    assert_memory_not_equal(a, b, sizeof b);
    /* Labels too long for the one-byte length are refused. */
    char label[260];
    memset(label, 'x', sizeof label - 1);
    label[sizeof label - 1] = '\0';
    FAILS_WITH(kx_hkdf_expand_label(KX_HASH_SHA256, secret, label, NULL, 0, b, sizeof b), KX_ALERT_INTERNAL_ERROR);
}

/* A secret prepared once (kx_hkdf_key) gives exactly what the one-shot
 * HKDF-Expand-Label gives, for several labels in a row, with a context,
 * outputs longer than one hash, both hashes; a freed key refuses to expand. */
static void test_hkdf_key_matches_one_shot(void **state)
{
    (void)state;
    static const char *const labels[] = { "key", "iv", "finished", "c hs traffic", "key", "resumption" };
    uint8_t ctx[48];
    for (size_t i = 0; i < sizeof ctx; i++) ctx[i] = (uint8_t)(3 * i + 1);
    for (int h = KX_HASH_SHA256; h <= KX_HASH_SHA384; h++) {
        uint8_t secret[48];
        for (size_t i = 0; i < sizeof secret; i++) secret[i] = (uint8_t)(i ^ 0xa5 ^ h);
        kx_hkdf_key k;
        OK(kx_hkdf_key_init(&k, (kx_hash_id)h, secret));
        for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
            size_t outlen = (i % 3 == 0) ? 100 : (i % 3 == 1) ? 12 : kx_hash_len((kx_hash_id)h);
            size_t ctxlen = (i & 1) ? kx_hash_len((kx_hash_id)h) : 0;
            uint8_t a[100], b[100];
            OK(kx_hkdf_key_expand_label(&k, labels[i], ctxlen ? ctx : NULL, ctxlen, a, outlen));
            OK(kx_hkdf_expand_label((kx_hash_id)h, secret, labels[i], ctxlen ? ctx : NULL, ctxlen, b, outlen));
            assert_memory_equal(a, b, outlen);
        }
        kx_hkdf_key_free(&k);
        kx_hkdf_key_free(&k); /* twice: harmless */
        uint8_t out[16];
        FAILS_WITH(kx_hkdf_key_expand_label(&k, "key", NULL, 0, out, sizeof out), KX_ALERT_INTERNAL_ERROR);
        /* Hash("") computed once equals the digest of nothing. */
        uint8_t empty[KX_MAX_HASH];
        OK(kx_hash((kx_hash_id)h, NULL, 0, empty));
        assert_non_null(kx_hash_empty((kx_hash_id)h));
        assert_memory_equal(kx_hash_empty((kx_hash_id)h), empty, kx_hash_len((kx_hash_id)h));
    }
    /* RFC 8448 §3: client_handshake_traffic_secret -> key and iv (SHA-256). */
    uint8_t chs[32], key[16], iv[12], want_key[16], want_iv[12];
    assert_int_equal(unhex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21", chs, sizeof chs), sizeof chs);
    assert_int_equal(unhex("dbfaa693d1762c5b666af5d950258d01", want_key, sizeof want_key), sizeof want_key);
    assert_int_equal(unhex("5bd3c71b836e0b76bb73265f", want_iv, sizeof want_iv), sizeof want_iv);
    kx_hkdf_key k;
    OK(kx_hkdf_key_init(&k, KX_HASH_SHA256, chs));
    OK(kx_hkdf_key_expand_label(&k, "key", NULL, 0, key, sizeof key));
    OK(kx_hkdf_key_expand_label(&k, "iv", NULL, 0, iv, sizeof iv));
    kx_hkdf_key_free(&k);
    assert_memory_equal(key, want_key, sizeof key);
    assert_memory_equal(iv, want_iv, sizeof iv);
}

static void test_tls12_prf_vectors(void **state)
{
    (void)state;
    uint8_t secret[16], seed[16], out[148];

    /* P_SHA256 vector circulated on the IETF TLS list. */
    unhex("9bbe436ba940f017b17652849a71db35", secret, sizeof secret);
    unhex("a0ba9f936cda311827a6f796ffd5198c", seed, sizeof seed);
    OK(kx_tls12_prf(KX_HASH_SHA256, secret, sizeof secret, "test label", seed, sizeof seed, out, 100));
    assert_hex(out, 100,
               "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
               "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
               "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
               "87347b66");

    /* P_SHA384 companion vector. */
    unhex("b80b733d6ceefcdc71566ea48e5567df", secret, sizeof secret);
    unhex("cd665cf6a8447dd6ff8b27555edb7465", seed, sizeof seed);
    OK(kx_tls12_prf(KX_HASH_SHA384, secret, sizeof secret, "test label", seed, sizeof seed, out, 148));
    assert_hex(out, 148,
               "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cd"
               "e9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd"
               "8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d918425"
               "9b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee6"
               "91c8f3a26854308d5eaa3be85e0990703d73e56f");

    /* A 12-byte Finished is a prefix of the same PRF stream. */
    uint8_t shortout[12];
    OK(kx_tls12_prf(KX_HASH_SHA384, secret, sizeof secret, "test label", seed, sizeof seed, shortout, 12));
    assert_memory_equal(shortout, out, 12);
}

/* ---- AEAD ---- */

static const size_t aead_keylen[3] = { 16, 32, 32 };

static void test_aead_roundtrip_and_tamper(void **state)
{
    (void)state;
    for (int id = 0; id < 3; id++) {
        uint8_t key[32], nonce[12], aad[5] = { 0x17, 0x03, 0x03, 0x00, 0x40 };
        uint8_t pt[48], buf[48 + 16], back[48];
        for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(i * 3 + (size_t)id);
        for (size_t i = 0; i < sizeof nonce; i++) nonce[i] = (uint8_t)(0xa0 + i);
        for (size_t i = 0; i < sizeof pt; i++) pt[i] = (uint8_t)i;

        kx_aead *a;
        OK(kx_aead_new(&a, (kx_aead_id)id, key, aead_keylen[id]));
        OK(kx_aead_seal(a, nonce, aad, sizeof aad, pt, sizeof pt, buf));
        assert_memory_not_equal(buf, pt, sizeof pt);
        OK(kx_aead_open(a, nonce, aad, sizeof aad, buf, sizeof buf, back));
        assert_memory_equal(back, pt, sizeof pt);

        /* In place: the record layer decrypts and encrypts inside its buffer. */
        uint8_t inplace[48 + 16];
        memcpy(inplace, pt, sizeof pt);
        OK(kx_aead_seal(a, nonce, aad, sizeof aad, inplace, sizeof pt, inplace));
        assert_memory_equal(inplace, buf, sizeof buf);
        OK(kx_aead_open(a, nonce, aad, sizeof aad, inplace, sizeof inplace, inplace));
        assert_memory_equal(inplace, pt, sizeof pt);

        /* Any change to ciphertext, tag, AAD or nonce is a bad_record_mac. */
        buf[3] ^= 1;
        FAILS_WITH(kx_aead_open(a, nonce, aad, sizeof aad, buf, sizeof buf, back), KX_ALERT_BAD_RECORD_MAC);
        buf[3] ^= 1;
        buf[sizeof buf - 1] ^= 0x80;
        FAILS_WITH(kx_aead_open(a, nonce, aad, sizeof aad, buf, sizeof buf, back), KX_ALERT_BAD_RECORD_MAC);
        buf[sizeof buf - 1] ^= 0x80;
        aad[4] ^= 1;
        FAILS_WITH(kx_aead_open(a, nonce, aad, sizeof aad, buf, sizeof buf, back), KX_ALERT_BAD_RECORD_MAC);
        aad[4] ^= 1;
        nonce[11] ^= 1;
        FAILS_WITH(kx_aead_open(a, nonce, aad, sizeof aad, buf, sizeof buf, back), KX_ALERT_BAD_RECORD_MAC);
        nonce[11] ^= 1;
        FAILS_WITH(kx_aead_open(a, nonce, aad, sizeof aad, buf, 15, back), KX_ALERT_BAD_RECORD_MAC);
        /* After failures the context still works. */
        OK(kx_aead_open(a, nonce, aad, sizeof aad, buf, sizeof buf, back));
        assert_memory_equal(back, pt, sizeof pt);

        /* Empty plaintext: a tag-only record. */
        uint8_t tag_only[16], none[1];
        OK(kx_aead_seal(a, nonce, NULL, 0, NULL, 0, tag_only));
        OK(kx_aead_open(a, nonce, NULL, 0, tag_only, sizeof tag_only, none));
        kx_aead_free(a);

        kx_aead *bad;
        FAILS_WITH(kx_aead_new(&bad, (kx_aead_id)id, key, aead_keylen[id] - 1), KX_ALERT_INTERNAL_ERROR);
        assert_null(bad);
    }
}

static void test_aes128gcm_rfc8448_client_finished_record(void **state)
{
    (void)state;
    /* RFC 8448 §3: the client Finished under the client handshake key,
     * sequence number 0 (so the nonce is the IV), inner type 0x16. */
    uint8_t key[16], iv[12], pt[37], ct[64], out[64];
    unhex("db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", key, sizeof key);
    unhex("5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f", iv, sizeof iv);
    unhex("14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed"
          " d5 ce 61 16",
          pt, sizeof pt);
    static const uint8_t aad[5] = { 0x17, 0x03, 0x03, 0x00, 0x35 };
    size_t ctlen = unhex("75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8"
                         " 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46",
                         ct, sizeof ct);
    assert_int_equal(ctlen, sizeof pt + 16);

    kx_aead *a;
    OK(kx_aead_new(&a, KX_AEAD_AES_128_GCM, key, sizeof key));
    OK(kx_aead_seal(a, iv, aad, sizeof aad, pt, sizeof pt, out));
    assert_memory_equal(out, ct, ctlen);
    OK(kx_aead_open(a, iv, aad, sizeof aad, ct, ctlen, out));
    assert_memory_equal(out, pt, sizeof pt);
    kx_aead_free(a);
}

static void test_aes256gcm_nist_case14(void **state)
{
    (void)state;
    /* GCM specification test case 14: zero key, zero IV, one zero block. */
    uint8_t key[32] = { 0 }, iv[12] = { 0 }, pt[16] = { 0 }, out[32];
    kx_aead *a;
    OK(kx_aead_new(&a, KX_AEAD_AES_256_GCM, key, sizeof key));
    OK(kx_aead_seal(a, iv, NULL, 0, pt, sizeof pt, out));
    assert_hex(out, 32, "cea7403d4d606b6e074ec5d3baf39d18 d0d1c8a799996bf0265b98b5d48ab919");
    kx_aead_free(a);
}

static void test_chacha20poly1305_rfc8439(void **state)
{
    (void)state;
    /* RFC 8439 §2.8.2 */
    static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
                             "the future, sunscreen would be it.";
    uint8_t key[32], nonce[12], aad[12], out[sizeof pt - 1 + 16], back[sizeof pt];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(0x80 + i);
    unhex("07000000 4041424344454647", nonce, sizeof nonce);
    unhex("50515253c0c1c2c3c4c5c6c7", aad, sizeof aad);

    kx_aead *a;
    OK(kx_aead_new(&a, KX_AEAD_CHACHA20_POLY1305, key, sizeof key));
    OK(kx_aead_seal(a, nonce, aad, sizeof aad, (const uint8_t *)pt, sizeof pt - 1, out));
    assert_hex(out, sizeof out,
               "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
               "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
               "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
               "3ff4def08e4b7a9de576d26586cec64b6116"
               "1ae10b594f09e26a7e902ecbd0600691");
    OK(kx_aead_open(a, nonce, aad, sizeof aad, out, sizeof out, back));
    assert_memory_equal(back, pt, sizeof pt - 1);
    kx_aead_free(a);
}

/* conf-b: AES-128-CCM with TLS's 12-byte nonce and 16-byte tag (TLS_AES_128_CCM_SHA256).
 * Expected bytes from an independent implementation (python cryptography's
 * AESCCM(key, tag_length=16)); then the same context opens, seals again
 * (direction changes back and forth) and rejects a flipped tag bit. */
static void test_aead_aes128_ccm(void **state)
{
    (void)state;
    static const char pt[] = "ktlsx AES-128-CCM TLS 1.3 record";
    uint8_t key[16], nonce[12], aad[5], out[sizeof pt - 1 + 16], back[sizeof pt];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)(0x40 + i);
    for (int i = 0; i < 12; i++) nonce[i] = (uint8_t)(0x10 + i);
    for (int i = 0; i < 5; i++) aad[i] = (uint8_t)i;
    kx_aead *a;
    OK(kx_aead_new(&a, KX_AEAD_AES_128_CCM, key, sizeof key));
    for (int round = 0; round < 2; round++) {
        OK(kx_aead_seal(a, nonce, aad, sizeof aad, (const uint8_t *)pt, sizeof pt - 1, out));
        assert_hex(out, sizeof out,
                   "a8e74ff9a9b27d18e018f1f5d9978a671c67cca6c3578dbc5f02998a49a840b8"
                   "3065cd5df72c5ef44352b492b33b8726");
        OK(kx_aead_open(a, nonce, aad, sizeof aad, out, sizeof out, back));
        assert_memory_equal(back, pt, sizeof pt - 1);
    }
    out[sizeof out - 1] ^= 1;
    kx_result r = kx_aead_open(a, nonce, aad, sizeof aad, out, sizeof out, back);
    assert_true(kx_failed(r));
    assert_int_equal(r.alert, KX_ALERT_BAD_RECORD_MAC);
    kx_aead_free(a);
    assert_non_null(kx_aead_cipher(KX_AEAD_AES_128_CCM));
    assert_null(kx_aead_cipher(KX_AEAD_COUNT));
}

/* ---- key exchange ---- */

static void test_kex_agreement(void **state)
{
    (void)state;
    static const struct { uint16_t group; size_t share, secret; } g[] = {
        { KX_GROUP_X25519, 32, 32 },
        { KX_GROUP_SECP256R1, 65, 32 },
        { KX_GROUP_SECP384R1, 97, 48 },
        { KX_GROUP_SECP521R1, 133, 66 }, /* conf-b */
        { KX_GROUP_X448, 56, 56 },       /* conf-b */
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        EVP_PKEY *a = NULL, *b = NULL;
        kx_buf pa = { 0 }, pb = { 0 };
        uint8_t sa[66], sb[66];
        size_t la = 0, lb = 0;

        OK(kx_kex_keygen(g[i].group, &a, &pa));
        OK(kx_kex_keygen(g[i].group, &b, &pb));
        assert_int_equal(pa.len, g[i].share);
        assert_int_equal(pb.len, g[i].share);
        bool x = g[i].group == KX_GROUP_X25519 || g[i].group == KX_GROUP_X448;
        if (!x) assert_int_equal(pa.data[0], 0x04);
        assert_memory_not_equal(pa.data, pb.data, pa.len);

        OK(kx_kex_derive(g[i].group, a, pb.data, pb.len, sa, &la));
        OK(kx_kex_derive(g[i].group, b, pa.data, pa.len, sb, &lb));
        assert_int_equal(la, g[i].secret);
        assert_int_equal(lb, g[i].secret);
        assert_memory_equal(sa, sb, la);

        /* Wrong length. */
        FAILS_WITH(kx_kex_derive(g[i].group, a, pb.data, pb.len - 1, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
        if (g[i].group == KX_GROUP_X25519) {
            /* u = 0 and u = 1 are small-order points: the shared secret would be all zero. */
            uint8_t low[32] = { 0 };
            FAILS_WITH(kx_kex_derive(g[i].group, a, low, sizeof low, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
            low[0] = 1;
            FAILS_WITH(kx_kex_derive(g[i].group, a, low, sizeof low, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
        } else if (g[i].group == KX_GROUP_X448) {
            /* u = 0 and u = 1: small order on curve448 too (RFC 7748 §6.2). */
            uint8_t low[56] = { 0 };
            FAILS_WITH(kx_kex_derive(g[i].group, a, low, sizeof low, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
            low[0] = 1;
            FAILS_WITH(kx_kex_derive(g[i].group, a, low, sizeof low, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
        } else {
            /* A point off the curve. */
            pb.data[pb.len - 1] ^= 1;
            FAILS_WITH(kx_kex_derive(g[i].group, a, pb.data, pb.len, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
            pb.data[pb.len - 1] ^= 1;
            /* A compressed-point prefix, refused even at the uncompressed length. */
            pb.data[0] = 0x02;
            FAILS_WITH(kx_kex_derive(g[i].group, a, pb.data, pb.len, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
            /* All zeros. */
            memset(pb.data, 0, pb.len);
            FAILS_WITH(kx_kex_derive(g[i].group, a, pb.data, pb.len, sa, &la), KX_ALERT_ILLEGAL_PARAMETER);
        }
        EVP_PKEY_free(a);
        EVP_PKEY_free(b);
        kx_buf_free(&pa);
        kx_buf_free(&pb);
    }

    /* Shares of one group do not fit another. */
    EVP_PKEY *x = NULL;
    kx_buf px = { 0 };
    uint8_t s[66];
    size_t l;
    OK(kx_kex_keygen(KX_GROUP_X25519, &x, &px));
    FAILS_WITH(kx_kex_derive(KX_GROUP_SECP256R1, x, px.data, px.len, s, &l), KX_ALERT_ILLEGAL_PARAMETER);
    EVP_PKEY *none = (EVP_PKEY *)&px; /* must be reset to NULL on failure */
    FAILS_WITH(kx_kex_keygen(0x0100 /* ffdhe2048: not offered */, &none, &px), KX_ALERT_INTERNAL_ERROR);
    assert_null(none);
    EVP_PKEY_free(x);
    kx_buf_free(&px);
}

/* ---- signatures ---- */

typedef struct {
    EVP_PKEY *p256, *p384, *p521, *rsa, *rsa_pss, *ed25519, *rsa1024;
} keys;

static keys K;

static EVP_PKEY *rsa_pss_key(const char *pinned_md)
{
    /* EVP_PKEY_Q_keygen only knows the key size for "RSA". */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
    EVP_PKEY *k = NULL;
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) <= 0 ||
        (pinned_md != NULL && EVP_PKEY_CTX_set_rsa_pss_keygen_md_name(ctx, pinned_md, NULL) <= 0) ||
        EVP_PKEY_keygen(ctx, &k) != 1)
        k = NULL;
    EVP_PKEY_CTX_free(ctx);
    return k;
}

static int keys_setup(void **state)
{
    (void)state;
    K.p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    K.p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    K.p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    K.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    K.rsa_pss = rsa_pss_key(NULL);
    K.ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    K.rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    return K.p256 && K.p384 && K.p521 && K.rsa && K.rsa_pss && K.ed25519 && K.rsa1024 ? 0 : -1;
}

static int keys_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(K.p256);
    EVP_PKEY_free(K.p384);
    EVP_PKEY_free(K.p521);
    EVP_PKEY_free(K.rsa);
    EVP_PKEY_free(K.rsa_pss);
    EVP_PKEY_free(K.ed25519);
    EVP_PKEY_free(K.rsa1024);
    return 0;
}

/* Only the public half, as a peer's certificate would give it. */
static EVP_PKEY *public_only(EVP_PKEY *k)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    assert_true(n > 0);
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, n);
    OPENSSL_free(der);
    assert_non_null(pub);
    return pub;
}

static void test_sign_verify_each_sigalg(void **state)
{
    (void)state;
    const struct { uint16_t sigalg; EVP_PKEY *key; } cases[] = {
        { KX_SIG_ECDSA_SECP256R1_SHA256, K.p256 },
        { KX_SIG_ECDSA_SECP384R1_SHA384, K.p384 },
        { KX_SIG_ECDSA_SECP521R1_SHA512, K.p521 },
        { KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa },
        { KX_SIG_RSA_PSS_RSAE_SHA384, K.rsa },
        { KX_SIG_RSA_PSS_RSAE_SHA512, K.rsa },
        { KX_SIG_RSA_PSS_PSS_SHA256, K.rsa_pss },
        { KX_SIG_RSA_PSS_PSS_SHA384, K.rsa_pss },
        { KX_SIG_RSA_PSS_PSS_SHA512, K.rsa_pss },
        { KX_SIG_RSA_PKCS1_SHA256, K.rsa },
        { KX_SIG_RSA_PKCS1_SHA384, K.rsa },
        { KX_SIG_RSA_PKCS1_SHA512, K.rsa },
        { KX_SIG_ED25519, K.ed25519 },
    };
    uint8_t msg[130];
    memset(msg, 0x20, 64); /* the TLS 1.3 CertificateVerify layout: 64 spaces, context, 0, hash */
    memcpy(msg + 64, "TLS 1.3, server CertificateVerify", 33);
    msg[97] = 0;
    for (size_t i = 98; i < sizeof msg; i++) msg[i] = (uint8_t)i;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kx_buf sig = { 0 };
        OK(kx_write_u16(&sig, cases[i].sigalg)); /* signatures are appended to a message being built */
        OK(kx_sign(cases[i].sigalg, cases[i].key, msg, sizeof msg, &sig));
        assert_true(sig.len > 2);
        EVP_PKEY *pub = public_only(cases[i].key);
        OK(kx_verify(cases[i].sigalg, pub, msg, sizeof msg, sig.data + 2, sig.len - 2));

        /* The same through contexts prepared once for the key (kx_signer):
         * every scheme but EdDSA has its slot, EdDSA falls back to kx_sign. */
        kx_signer signer;
        kx_signer_init(&signer, cases[i].key);
        bool slotted = false;
        for (size_t k = 0; k < signer.count; k++) slotted |= signer.sigalg[k] == cases[i].sigalg;
        assert_int_equal(slotted, cases[i].sigalg != KX_SIG_ED25519);
        for (int round = 0; round < 2; round++) { /* the prepared context is reused, not consumed */
            kx_buf sig2 = { 0 };
            OK(kx_write_u16(&sig2, cases[i].sigalg));
            OK(kx_sign_with(&signer, cases[i].sigalg, cases[i].key, msg, sizeof msg, &sig2));
            assert_true(sig2.len > 2);
            OK(kx_verify(cases[i].sigalg, pub, msg, sizeof msg, sig2.data + 2, sig2.len - 2));
            msg[99] ^= 1;
            FAILS_WITH(kx_verify(cases[i].sigalg, pub, msg, sizeof msg, sig2.data + 2, sig2.len - 2),
                       KX_ALERT_DECRYPT_ERROR);
            msg[99] ^= 1;
            kx_buf_free(&sig2);
        }
        kx_signer_free(&signer);

        msg[100] ^= 1;
        FAILS_WITH(kx_verify(cases[i].sigalg, pub, msg, sizeof msg, sig.data + 2, sig.len - 2),
                   KX_ALERT_DECRYPT_ERROR);
        msg[100] ^= 1;
        sig.data[sig.len - 1] ^= 1;
        FAILS_WITH(kx_verify(cases[i].sigalg, pub, msg, sizeof msg, sig.data + 2, sig.len - 2),
                   KX_ALERT_DECRYPT_ERROR);
        FAILS_WITH(kx_verify(cases[i].sigalg, pub, msg, sizeof msg, sig.data + 2, 0), KX_ALERT_DECRYPT_ERROR);
        EVP_PKEY_free(pub);
        kx_buf_free(&sig);
    }

    /* PSS signatures differ run to run (random salt) yet both verify: the salt really is used. */
    kx_buf s1 = { 0 }, s2 = { 0 };
    OK(kx_sign(KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa, msg, sizeof msg, &s1));
    OK(kx_sign(KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa, msg, sizeof msg, &s2));
    assert_int_equal(s1.len, 256);
    assert_memory_not_equal(s1.data, s2.data, s1.len);
    /* An rsae signature does not pass as PKCS#1 v1.5. */
    FAILS_WITH(kx_verify(KX_SIG_RSA_PKCS1_SHA256, K.rsa, msg, sizeof msg, s1.data, s1.len), KX_ALERT_DECRYPT_ERROR);
    /* A key that does not fit the algorithm is refused up front. */
    FAILS_WITH(kx_verify(KX_SIG_ECDSA_SECP256R1_SHA256, K.rsa, msg, sizeof msg, s1.data, s1.len),
               KX_ALERT_ILLEGAL_PARAMETER);
    FAILS_WITH(kx_verify(0x0201, K.rsa, msg, sizeof msg, s1.data, s1.len), KX_ALERT_ILLEGAL_PARAMETER);
    size_t before = s2.len;
    FAILS_WITH(kx_sign(KX_SIG_ED25519, K.p256, msg, sizeof msg, &s2), KX_ALERT_INTERNAL_ERROR);
    assert_int_equal(s2.len, before);
    /* A P-256 signer has no RSA slot: the fallback refuses the mismatch the same way. */
    kx_signer ps;
    kx_signer_init(&ps, K.p256);
    FAILS_WITH(kx_sign_with(&ps, KX_SIG_RSA_PSS_RSAE_SHA256, K.p256, msg, sizeof msg, &s2), KX_ALERT_INTERNAL_ERROR);
    assert_int_equal(s2.len, before);
    kx_signer_free(&ps);
    kx_buf_free(&s1);
    kx_buf_free(&s2);
}

/* One kx_signer shared by several threads (a server's configuration is):
 * each signature duplicates the prepared context, so concurrent signers
 * must each produce a signature that verifies. */
typedef struct {
    const kx_signer *signer;
    EVP_PKEY *key, *pub;
    uint16_t sigalg;
    int bad;
} signer_thread_arg;

static void *signer_thread(void *p)
{
    signer_thread_arg *a = p;
    uint8_t msg[130];
    for (int i = 0; i < 100; i++) {
        memset(msg, i, sizeof msg);
        kx_buf sig = { 0 };
        if (kx_failed(kx_sign_with(a->signer, a->sigalg, a->key, msg, sizeof msg, &sig)) ||
            kx_failed(kx_verify(a->sigalg, a->pub, msg, sizeof msg, sig.data, sig.len)))
            a->bad++;
        kx_buf_free(&sig);
    }
    return NULL;
}

static void test_signer_shared_by_threads(void **state)
{
    (void)state;
    const struct { uint16_t sigalg; EVP_PKEY *key; } cases[] = {
        { KX_SIG_ECDSA_SECP256R1_SHA256, K.p256 },
        { KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kx_signer signer;
        kx_signer_init(&signer, cases[c].key);
        EVP_PKEY *pub = public_only(cases[c].key);
        signer_thread_arg args[4];
        pthread_t th[4];
        for (int t = 0; t < 4; t++) {
            args[t] = (signer_thread_arg){ &signer, cases[c].key, pub, cases[c].sigalg, 0 };
            assert_int_equal(pthread_create(&th[t], NULL, signer_thread, &args[t]), 0);
        }
        for (int t = 0; t < 4; t++) {
            assert_int_equal(pthread_join(th[t], NULL), 0);
            assert_int_equal(args[t].bad, 0);
        }
        EVP_PKEY_free(pub);
        kx_signer_free(&signer);
    }
}

static void test_sigalg_fits_key(void **state)
{
    (void)state;
    const struct { uint16_t sigalg; EVP_PKEY *key; int tls13, tls12; } m[] = {
        { KX_SIG_ECDSA_SECP256R1_SHA256, K.p256, 1, 1 },
        { KX_SIG_ECDSA_SECP256R1_SHA256, K.p384, 0, 1 }, /* 1.3 binds curve to hash */
        { KX_SIG_ECDSA_SECP256R1_SHA256, K.rsa, 0, 0 },
        { KX_SIG_ECDSA_SECP384R1_SHA384, K.p384, 1, 1 },
        { KX_SIG_ECDSA_SECP384R1_SHA384, K.p256, 0, 1 },
        { KX_SIG_ECDSA_SECP521R1_SHA512, K.p521, 1, 1 },
        { KX_SIG_ECDSA_SECP521R1_SHA512, K.p384, 0, 1 },
        { KX_SIG_ECDSA_SECP256R1_SHA256, K.ed25519, 0, 0 },
        { KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa, 1, 1 },
        { KX_SIG_RSA_PSS_RSAE_SHA512, K.rsa, 1, 1 },
        { KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa_pss, 0, 0 },
        { KX_SIG_RSA_PSS_RSAE_SHA256, K.p256, 0, 0 },
        { KX_SIG_RSA_PSS_RSAE_SHA256, K.rsa1024, 1, 1 },
        { KX_SIG_RSA_PSS_RSAE_SHA512, K.rsa1024, 0, 0 }, /* too small for a 64-byte salt */
        { KX_SIG_RSA_PSS_PSS_SHA256, K.rsa_pss, 1, 1 },
        { KX_SIG_RSA_PSS_PSS_SHA384, K.rsa_pss, 1, 1 },
        { KX_SIG_RSA_PSS_PSS_SHA256, K.rsa, 0, 0 },
        { KX_SIG_RSA_PKCS1_SHA256, K.rsa, 0, 1 },
        { KX_SIG_RSA_PKCS1_SHA512, K.rsa, 0, 1 },
        { KX_SIG_RSA_PKCS1_SHA256, K.rsa_pss, 0, 0 },
        { KX_SIG_RSA_PKCS1_SHA256, K.p256, 0, 0 },
        { KX_SIG_ED25519, K.ed25519, 1, 1 },
        { KX_SIG_ED25519, K.p256, 0, 0 },
        { 0x0203 /* ecdsa_sha1 */, K.p256, 0, 0 },
        { 0x0201 /* rsa_pkcs1_sha1 */, K.rsa, 0, 0 },
        { KX_SIG_ED25519, NULL, 0, 0 },
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        if (kx_sigalg_fits_key(m[i].sigalg, m[i].key, 1) != m[i].tls13 ||
            kx_sigalg_fits_key(m[i].sigalg, m[i].key, 0) != m[i].tls12)
            fail_msg("row %zu: sigalg 0x%04x", i, m[i].sigalg);
    }
    /* Public keys (from certificates) fit the same way as private ones. */
    EVP_PKEY *pub = public_only(K.p384);
    assert_true(kx_sigalg_fits_key(KX_SIG_ECDSA_SECP384R1_SHA384, pub, 1));
    assert_false(kx_sigalg_fits_key(KX_SIG_ECDSA_SECP256R1_SHA256, pub, 1));
    EVP_PKEY_free(pub);
}

static void test_pss_key_digest_restriction(void **state)
{
    (void)state;
    /* An RSA-PSS key whose parameters pin SHA-256 fits only rsa_pss_pss_sha256. */
    EVP_PKEY *k = rsa_pss_key("SHA256");
    assert_non_null(k);
    assert_true(kx_sigalg_fits_key(KX_SIG_RSA_PSS_PSS_SHA256, k, 1));
    assert_false(kx_sigalg_fits_key(KX_SIG_RSA_PSS_PSS_SHA384, k, 1));
    kx_buf sig = { 0 };
    static const uint8_t msg[] = "restricted";
    OK(kx_sign(KX_SIG_RSA_PSS_PSS_SHA256, k, msg, sizeof msg, &sig));
    OK(kx_verify(KX_SIG_RSA_PSS_PSS_SHA256, k, msg, sizeof msg, sig.data, sig.len));
    kx_buf_free(&sig);
    EVP_PKEY_free(k);
}

/* ---- transcript ---- */

static void sha256_of(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t *out)
{
    uint8_t buf[256];
    assert_true(alen + blen <= sizeof buf);
    memcpy(buf, a, alen);
    if (blen) memcpy(buf + alen, b, blen);
    OK(kx_hash(KX_HASH_SHA256, buf, alen + blen, out));
}

static void test_transcript_buffering(void **state)
{
    (void)state;
    static const uint8_t m1[] = { 1, 0, 0, 3, 'a', 'b', 'c' };
    static const uint8_t m2[] = { 2, 0, 0, 2, 'd', 'e' };
    static const uint8_t m3[] = { 8, 0, 0, 1, 'f' };
    uint8_t all[sizeof m1 + sizeof m2 + sizeof m3], got[KX_MAX_HASH], again[KX_MAX_HASH], want[KX_MAX_HASH];
    memcpy(all, m1, sizeof m1);
    memcpy(all + sizeof m1, m2, sizeof m2);
    memcpy(all + sizeof m1 + sizeof m2, m3, sizeof m3);

    kx_transcript t;
    kx_transcript_init(&t);
    OK(kx_transcript_add(&t, m1, sizeof m1));
    FAILS_WITH(kx_transcript_hash(&t, got), KX_ALERT_INTERNAL_ERROR); /* no hash yet */
    OK(kx_transcript_add(&t, m2, sizeof m2));
    OK(kx_transcript_set_hash(&t, KX_HASH_SHA256));
    assert_int_equal(t.pending.len, 0); /* hashed and dropped */
    OK(kx_transcript_set_hash(&t, KX_HASH_SHA256)); /* idempotent */
    FAILS_WITH(kx_transcript_set_hash(&t, KX_HASH_SHA384), KX_ALERT_INTERNAL_ERROR);

    OK(kx_transcript_hash(&t, got));
    OK(kx_transcript_hash(&t, again)); /* reading does not disturb the running hash */
    sha256_of(all, sizeof m1 + sizeof m2, NULL, 0, want);
    assert_memory_equal(got, want, 32);
    assert_memory_equal(again, want, 32);

    OK(kx_transcript_add(&t, m3, sizeof m3));
    OK(kx_transcript_hash(&t, got));
    sha256_of(all, sizeof all, NULL, 0, want);
    assert_memory_equal(got, want, 32);
    kx_transcript_free(&t);

    /* keep_raw: TLS 1.2 client auth needs the messages themselves. */
    kx_transcript_init(&t);
    t.keep_raw = 1;
    OK(kx_transcript_add(&t, m1, sizeof m1));
    OK(kx_transcript_set_hash(&t, KX_HASH_SHA384));
    OK(kx_transcript_add(&t, m2, sizeof m2));
    OK(kx_transcript_add(&t, m3, sizeof m3));
    assert_int_equal(t.pending.len, sizeof all);
    assert_memory_equal(t.pending.data, all, sizeof all);
    OK(kx_transcript_hash(&t, got));
    OK(kx_hash(KX_HASH_SHA384, all, sizeof all, want));
    assert_memory_equal(got, want, 48);
    kx_transcript_free(&t);
    assert_null(t.ctx);
    assert_null(t.pending.data);
}

static void test_transcript_hrr_rewrite(void **state)
{
    (void)state;
    static const uint8_t ch1[] = { 1, 0, 0, 4, 9, 8, 7, 6 };
    static const uint8_t hrr[] = { 2, 0, 0, 3, 5, 5, 5 };
    uint8_t synthetic[4 + 32] = { 0xfe, 0x00, 0x00, 0x20 }, got[KX_MAX_HASH], want[KX_MAX_HASH];

    kx_transcript t;
    kx_transcript_init(&t);
    FAILS_WITH(kx_transcript_hrr_rewrite(&t), KX_ALERT_INTERNAL_ERROR);
    OK(kx_transcript_add(&t, ch1, sizeof ch1));
    OK(kx_transcript_set_hash(&t, KX_HASH_SHA256));
    OK(kx_transcript_hrr_rewrite(&t));

    /* RFC 8446 §4.4.1: message_hash || 00 00 Hash.length || Hash(ClientHello1) */
    OK(kx_hash(KX_HASH_SHA256, ch1, sizeof ch1, synthetic + 4));
    OK(kx_transcript_hash(&t, got));
    sha256_of(synthetic, sizeof synthetic, NULL, 0, want);
    assert_memory_equal(got, want, 32);

    OK(kx_transcript_add(&t, hrr, sizeof hrr));
    OK(kx_transcript_hash(&t, got));
    sha256_of(synthetic, sizeof synthetic, hrr, sizeof hrr, want);
    assert_memory_equal(got, want, 32);
    kx_transcript_free(&t);

    /* SHA-384: the synthetic header carries 0x30. */
    uint8_t syn384[4 + 48] = { 0xfe, 0x00, 0x00, 0x30 }, got384[48], want384[48];
    kx_transcript_init(&t);
    OK(kx_transcript_add(&t, ch1, sizeof ch1));
    OK(kx_transcript_set_hash(&t, KX_HASH_SHA384));
    OK(kx_transcript_hrr_rewrite(&t));
    OK(kx_hash(KX_HASH_SHA384, ch1, sizeof ch1, syn384 + 4));
    OK(kx_hash(KX_HASH_SHA384, syn384, sizeof syn384, want384));
    OK(kx_transcript_hash(&t, got384));
    assert_memory_equal(got384, want384, 48);
    kx_transcript_free(&t);
}

/* ---- tables ---- */

static void test_suite_lookups(void **state)
{
    (void)state;
    size_t n = 0;
    const kx_suite *all = kx_suites_all(&n);
    assert_int_equal(n, 12);
    static const uint16_t order[] = { 0x1301, 0x1302, 0x1303, 0x1304 };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(all[i].id, order[i]);
        assert_int_equal(all[i].version, 0x0304);
        assert_int_equal(all[i].kex, KX_KX_TLS13);
        assert_int_equal(all[i].fixed_iv_len, 12);
        assert_string_equal(all[i].name, all[i].openssl_name);
    }
    for (size_t i = 4; i < n; i++) {
        assert_int_equal(all[i].version, 0x0303);
        /* ECDHE before static RSA key exchange */
        if (i < n - 2) assert_int_not_equal(all[i].kex, KX_KX_RSA);
        else assert_int_equal(all[i].kex, KX_KX_RSA);
        assert_int_equal(all[i].fixed_iv_len, all[i].aead == KX_AEAD_CHACHA20_POLY1305 ? 12 : 4);
    }
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(kx_suite_by_id(all[i].id), &all[i]);
        assert_ptr_equal(kx_suite_by_name(all[i].name), &all[i]);
        assert_ptr_equal(kx_suite_by_name(all[i].openssl_name), &all[i]);
        assert_int_equal(all[i].key_len, all[i].aead == KX_AEAD_AES_128_GCM || all[i].aead == KX_AEAD_AES_128_CCM ? 16 : 32);
        assert_int_equal(all[i].hash, all[i].aead == KX_AEAD_AES_256_GCM ? KX_HASH_SHA384 : KX_HASH_SHA256);
    }

    const kx_suite *s = kx_suite_by_name("tls_ecdhe_rsa_with_aes_128_gcm_sha256");
    assert_non_null(s);
    assert_int_equal(s->id, 0xc02f);
    assert_int_equal(s->kex, KX_KX_ECDHE_RSA);
    assert_ptr_equal(kx_suite_by_name("ecdhe-ecdsa-chacha20-poly1305"), kx_suite_by_id(0xcca9));
    assert_int_equal(kx_suite_by_id(0xcca9)->kex, KX_KX_ECDHE_ECDSA);
    assert_string_equal(kx_suite_by_id(0x009d)->openssl_name, "AES256-GCM-SHA384");
    assert_string_equal(kx_suite_by_id(0x009c)->name, "TLS_RSA_WITH_AES_128_GCM_SHA256");
    assert_string_equal(kx_suite_by_id(0xcca8)->name, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256");
    assert_null(kx_suite_by_id(0xc013));
    assert_null(kx_suite_by_name("ECDHE-RSA-AES128-SHA"));
    assert_null(kx_suite_by_name(NULL));
}

static void test_group_and_sigalg_names(void **state)
{
    (void)state;
    assert_string_equal(kx_group_name(KX_GROUP_X25519), "x25519");
    assert_string_equal(kx_group_name(KX_GROUP_SECP256R1), "secp256r1");
    assert_string_equal(kx_group_name(KX_GROUP_SECP384R1), "secp384r1");
    assert_string_equal(kx_group_name(KX_GROUP_SECP521R1), "secp521r1");
    assert_string_equal(kx_group_name(KX_GROUP_X448), "x448");
    assert_null(kx_group_name(0x0100));
    assert_int_equal(kx_group_by_name("x25519"), KX_GROUP_X25519);
    assert_int_equal(kx_group_by_name("X25519"), KX_GROUP_X25519);
    assert_int_equal(kx_group_by_name("secp256r1"), KX_GROUP_SECP256R1);
    assert_int_equal(kx_group_by_name("P-256"), KX_GROUP_SECP256R1);
    assert_int_equal(kx_group_by_name("prime256v1"), KX_GROUP_SECP256R1);
    assert_int_equal(kx_group_by_name("secp384r1"), KX_GROUP_SECP384R1);
    assert_int_equal(kx_group_by_name("P-384"), KX_GROUP_SECP384R1);
    assert_int_equal(kx_group_by_name("P-521"), KX_GROUP_SECP521R1);
    assert_int_equal(kx_group_by_name("X448"), KX_GROUP_X448);
    assert_int_equal(kx_group_by_name("P-224"), 0);
    assert_int_equal(kx_group_by_name(""), 0);

    assert_string_equal(kx_sigalg_name(KX_SIG_ECDSA_SECP256R1_SHA256), "ecdsa_secp256r1_sha256");
    assert_string_equal(kx_sigalg_name(KX_SIG_ECDSA_SECP521R1_SHA512), "ecdsa_secp521r1_sha512");
    assert_string_equal(kx_sigalg_name(KX_SIG_RSA_PSS_RSAE_SHA256), "rsa_pss_rsae_sha256");
    assert_string_equal(kx_sigalg_name(KX_SIG_RSA_PSS_PSS_SHA384), "rsa_pss_pss_sha384");
    assert_string_equal(kx_sigalg_name(KX_SIG_RSA_PKCS1_SHA512), "rsa_pkcs1_sha512");
    assert_string_equal(kx_sigalg_name(KX_SIG_ED25519), "ed25519");
    assert_string_equal(kx_sigalg_name(KX_SIG_ED448), "ed448");
    assert_null(kx_sigalg_name(0x0201));
}

static void test_misc(void **state)
{
    (void)state;
    uint8_t a[32] = { 0 }, b[32] = { 0 };
    OK(kx_random(a, sizeof a));
    OK(kx_random(b, sizeof b));
    assert_memory_not_equal(a, b, sizeof a);
    assert_true(kx_ct_equal(a, a, sizeof a));
    memcpy(b, a, sizeof a);
    b[31] ^= 0x40;
    assert_false(kx_ct_equal(a, b, sizeof a));
    assert_true(kx_ct_equal(a, b, 31));
    assert_non_null(kx_aead_cipher(KX_AEAD_CHACHA20_POLY1305));
    assert_int_equal(EVP_MD_get_size(kx_md_sha512()), 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_abc),
        cmocka_unit_test(test_aead_aes128_ccm), /* conf-b */
        cmocka_unit_test(test_hmac_rfc4231_case2),
        cmocka_unit_test(test_hmac_rfc4231_case6_long_key),
        cmocka_unit_test(test_hkdf_extract_rfc5869),
        cmocka_unit_test(test_hkdf_expand_label_lengths),
        cmocka_unit_test(test_hkdf_key_matches_one_shot),
        cmocka_unit_test(test_tls12_prf_vectors),
        cmocka_unit_test(test_aead_roundtrip_and_tamper),
        cmocka_unit_test(test_aes128gcm_rfc8448_client_finished_record),
        cmocka_unit_test(test_aes256gcm_nist_case14),
        cmocka_unit_test(test_chacha20poly1305_rfc8439),
        cmocka_unit_test(test_kex_agreement),
        cmocka_unit_test(test_sign_verify_each_sigalg),
        cmocka_unit_test(test_signer_shared_by_threads),
        cmocka_unit_test(test_sigalg_fits_key),
        cmocka_unit_test(test_pss_key_digest_restriction),
        cmocka_unit_test(test_transcript_buffering),
        cmocka_unit_test(test_transcript_hrr_rewrite),
        cmocka_unit_test(test_suite_lookups),
        cmocka_unit_test(test_group_and_sigalg_names),
        cmocka_unit_test(test_misc),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
