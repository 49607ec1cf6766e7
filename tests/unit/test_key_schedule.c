/* TLS 1.3 key schedule against RFC 8448 (Example Handshake Traces for TLS 1.3).
 *
 * §3 "Simple 1-RTT Handshake": the transcript hashes are computed from the
 * trace's own handshake messages (so the transcript code is checked too) and
 * must equal the hashes the RFC prints; every secret, key, IV and both
 * Finished values must then match byte for byte.  §4 "Resumed 0-RTT
 * Handshake": the PSK from the first handshake's ticket, the early secret,
 * the resumption binder key and the binder itself. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "keysched/tls13.h"
#include <ctype.h>
#include <string.h>

#include "helpers/hex.h"

/* ---- RFC 8448 §3 handshake messages (type || uint24 length || body) ---- */

static const char CLIENT_HELLO[] =
    "01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83"
    "02 4d ec e7 00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01"
    "00 01 00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 23 00 00 00 33 00"
    "26 00 24 00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69"
    "1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01"
    "05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01";

static const char SERVER_HELLO[] =
    "02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e"
    "d3 e2 69 28 00 13 01 00 00 2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1"
    "56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04";

static const char ENCRYPTED_EXTENSIONS[] =
    "08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 1c 00 02"
    "40 01 00 00 00 00";

static const char CERTIFICATE[] =
    "0b 00 01 b9 00 00 01 b5 00 01 b0 30 82 01 ac 30 82 01 15 a0 03 02 01 02 02 01 02 30 0d 06 09 2a 86 48"
    "86 f7 0d 01 01 0b 05 00 30 0e 31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 1e 17 0d 31 36 30 37 33 30"
    "30 31 32 33 35 39 5a 17 0d 32 36 30 37 33 30 30 31 32 33 35 39 5a 30 0e 31 0c 30 0a 06 03 55 04 03 13"
    "03 72 73 61 30 81 9f 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00 30 81 89 02 81 81 00 b4"
    "bb 49 8f 82 79 30 3d 98 08 36 39 9b 36 c6 98 8c 0c 68 de 55 e1 bd b8 26 d3 90 1a 24 61 ea fd 2d e4 9a"
    "91 d0 15 ab bc 9a 95 13 7a ce 6c 1a f1 9e aa 6a f9 8c 7c ed 43 12 09 98 e1 87 a8 0e e0 cc b0 52 4b 1b"
    "01 8c 3e 0b 63 26 4d 44 9a 6d 38 e2 2a 5f da 43 08 46 74 80 30 53 0e f0 46 1c 8c a9 d9 ef bf ae 8e a6"
    "d1 d0 3e 2b d1 93 ef f0 ab 9a 80 02 c4 74 28 a6 d3 5a 8d 88 d7 9f 7f 1e 3f 02 03 01 00 01 a3 1a 30 18"
    "30 09 06 03 55 1d 13 04 02 30 00 30 0b 06 03 55 1d 0f 04 04 03 02 05 a0 30 0d 06 09 2a 86 48 86 f7 0d"
    "01 01 0b 05 00 03 81 81 00 85 aa d2 a0 e5 b9 27 6b 90 8c 65 f7 3a 72 67 17 06 18 a5 4c 5f 8a 7b 33 7d"
    "2d f7 a5 94 36 54 17 f2 ea e8 f8 a5 8c 8f 81 72 f9 31 9c f3 6b 7f d6 c5 5b 80 f2 1a 03 01 51 56 72 60"
    "96 fd 33 5e 5e 67 f2 db f1 02 70 2e 60 8c ca e6 be c1 fc 63 a4 2a 99 be 5c 3e b7 10 7c 3c 54 e9 b9 eb"
    "2b d5 20 3b 1c 3b 84 e0 a8 b2 f7 59 40 9b a3 ea c9 d9 1d 40 2d cc 0c c8 f8 96 12 29 ac 91 87 b4 2b 4d"
    "e1 00 00";

static const char CERTIFICATE_VERIFY[] =
    "0f 00 00 84 08 04 00 80 5a 74 7c 5d 88 fa 9b d2 e5 5a b0 85 a6 10 15 b7 21 1f 82 4c d4 84 14 5a b3 ff"
    "52 f1 fd a8 47 7b 0b 7a bc 90 db 78 e2 d3 3a 5c 14 1a 07 86 53 fa 6b ef 78 0c 5e a2 48 ee aa a7 85 c4"
    "f3 94 ca b6 d3 0b be 8d 48 59 ee 51 1f 60 29 57 b1 54 11 ac 02 76 71 45 9e 46 44 5c 9e a5 8c 18 1e 81"
    "8e 95 b8 c3 fb 0b f3 27 84 09 d3 be 15 2a 3d a5 04 3e 06 3d da 65 cd f5 ae a2 0d 53 df ac d4 2f 74 f3";

/* Finished messages: header 14 00 00 20, then verify_data. */
#define SERVER_VERIFY_DATA "9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c 30 95 72 cb 7f ff ee 54 54 b7 8f 07 18"
#define CLIENT_VERIFY_DATA "a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed d5 ce 61"

/* ---- RFC 8448 §3 values ---- */
#define CLIENT_PRIV "49 af 42 ba 7f 79 94 85 2d 71 3e f2 78 4b cb ca a7 91 1d e2 6a dc 56 42 cb 63 45 40 e7 ea 50 05"
#define CLIENT_PUB "99 38 1d e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c"
#define SERVER_PRIV "b1 58 0e ea df 6d d5 89 b8 ef 4f 2d 56 52 57 8c c8 10 e9 98 01 91 ec 8d 05 83 08 ce a2 16 a2 1e"
#define SERVER_PUB "c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f"
#define SHARED "8b d4 05 4f b5 5b 9d 63 fd fb ac f9 f0 4b 9f 0d 35 e6 d6 3f 53 75 63 ef d4 62 72 90 0f 89 49 2d"

#define EARLY "33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a"
#define HASH_CH_SH "86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8"
#define HANDSHAKE "1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac"
#define C_HS "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21"
#define S_HS "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38"
#define S_HS_KEY "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc"
#define S_HS_IV "5d 31 3e b2 67 12 76 ee 13 00 0b 30"
#define C_HS_KEY "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01"
#define C_HS_IV "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f"
#define HASH_CH_SF "96 08 10 2a 0f 1c cc 6d b6 25 0b 7b 7e 41 7b 1a 00 0e aa da 3d aa e4 77 7a 76 86 c9 ff 83 df 13"
#define MASTER "18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40 29 19"
#define C_AP "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5"
#define S_AP "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43"
#define EXPORTER "fe 22 f8 81 17 6e da 18 eb 8f 44 52 9e 67 92 c5 0c 9a 3f 89 45 2f 68 d8 ae 31 1b 43 09 d3 cf 50"
#define S_AP_KEY "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"
#define S_AP_IV "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"
#define C_AP_KEY "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"
#define C_AP_IV "5b 78 92 3d ee 08 57 90 33 e5 23 d9"
#define HASH_CH_CF "20 91 45 a9 6e e8 e2 a1 22 ff 81 00 47 cc 95 26 84 65 8d 60 49 e8 64 29 42 6d b8 7c 54 ad 14 3d"
#define RESUMPTION "7d f2 35 f2 03 1d 2a 05 12 87 d0 2b 02 41 b0 bf da f8 6c c8 56 23 1f 2d 5a ba 46 c4 34 ec 19 6c"

/* ---- RFC 8448 §4 values ---- */
#define TICKET_PSK "4e cd 0e b6 ec 3b 4d 87 f5 d6 02 8f 92 2c a4 c5 85 1a 27 7f d4 13 11 c9 e6 2d 2c 94 92 e1 c4 f3"
#define EARLY_PSK "9b 21 88 e9 b2 fc 6d 64 d7 1d c3 29 90 0e 20 bb 41 91 50 00 f6 78 aa 83 9c bb 79 7c b7 d8 33 2c"
#define RES_BINDER_KEY "69 fe 13 1a 3b ba d5 d6 3c 64 ee bc c3 0e 39 5b 9d 81 07 72 6a 13 d0 74 e3 89 db c8 a4 e4 72 56"
#define HASH_TRUNCATED_CH "63 22 4b 2e 45 73 f2 d3 45 4c a8 4b 9d 00 9a 04 f6 be 9e 05 71 1a 83 96 47 3a ef a0 1e 92 4a 14"
#define BINDER "3a dd 4f b2 d8 fd f8 22 a0 ca 3c f7 67 8e f5 e8 8d ae 99 01 41 c5 92 4d 57 bb 6f a3 1b 9e 5f 9d"

#define OK(expr) assert_null((expr).reason)

static void add_msg(kx_transcript *t, const char *hex)
{
    uint8_t msg[600];
    size_t n = unhex(hex, msg, sizeof msg);
    /* The length field must agree with the transcription. */
    assert_int_equal((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3], n - 4);
    OK(kx_transcript_add(t, msg, n));
}

static void add_finished(kx_transcript *t, const uint8_t *verify_data)
{
    uint8_t msg[4 + 32] = { 0x14, 0x00, 0x00, 0x20 };
    memcpy(msg + 4, verify_data, 32);
    OK(kx_transcript_add(t, msg, sizeof msg));
}

static EVP_PKEY *x25519_from_raw(const char *priv_hex)
{
    uint8_t raw[32];
    assert_int_equal(unhex(priv_hex, raw, sizeof raw), 32);
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, raw, sizeof raw);
    assert_non_null(k);
    return k;
}

static void test_rfc8448_x25519(void **state)
{
    (void)state;
    uint8_t peer[32], secret[66], pub[32];
    size_t secretlen = 0, publen = sizeof pub;

    /* Client side: its private key with the server's share. */
    EVP_PKEY *client = x25519_from_raw(CLIENT_PRIV);
    assert_int_equal(EVP_PKEY_get_raw_public_key(client, pub, &publen), 1);
    assert_hex(pub, publen, CLIENT_PUB);
    unhex(SERVER_PUB, peer, sizeof peer);
    OK(kx_kex_derive(KX_GROUP_X25519, client, peer, sizeof peer, secret, &secretlen));
    assert_hex(secret, secretlen, SHARED);

    /* Server side: the same secret from the other pair. */
    EVP_PKEY *server = x25519_from_raw(SERVER_PRIV);
    unhex(CLIENT_PUB, peer, sizeof peer);
    memset(secret, 0, sizeof secret);
    OK(kx_kex_derive(KX_GROUP_X25519, server, peer, sizeof peer, secret, &secretlen));
    assert_hex(secret, secretlen, SHARED);

    EVP_PKEY_free(client);
    EVP_PKEY_free(server);
}

static void test_rfc8448_1rtt(void **state)
{
    (void)state;
    kx_tls13_ks ks;
    kx_transcript t;
    uint8_t th[KX_MAX_HASH], shared[32], key[KX_MAX_KEY], iv[12], vd[KX_MAX_HASH], out[KX_MAX_HASH];
    const size_t H = 32;

    unhex(SHARED, shared, sizeof shared);

    OK(kx_tls13_ks_early(&ks, KX_HASH_SHA256, NULL, 0));
    assert_int_equal(ks.hlen, H);
    assert_hex(ks.early, H, EARLY);

    /* The ClientHello arrives before the suite (and so the hash) is known. */
    kx_transcript_init(&t);
    add_msg(&t, CLIENT_HELLO);
    OK(kx_transcript_set_hash(&t, KX_HASH_SHA256));
    add_msg(&t, SERVER_HELLO);
    OK(kx_transcript_hash(&t, th));
    assert_hex(th, H, HASH_CH_SH);

    OK(kx_tls13_ks_handshake(&ks, shared, sizeof shared, th));
    assert_hex(ks.handshake, H, HANDSHAKE);
    assert_hex(ks.c_hs, H, C_HS);
    assert_hex(ks.s_hs, H, S_HS);

    OK(kx_tls13_traffic_keys(KX_HASH_SHA256, ks.s_hs, 16, key, iv));
    assert_hex(key, 16, S_HS_KEY);
    assert_hex(iv, 12, S_HS_IV);
    OK(kx_tls13_traffic_keys(KX_HASH_SHA256, ks.c_hs, 16, key, iv));
    assert_hex(key, 16, C_HS_KEY);
    assert_hex(iv, 12, C_HS_IV);

    /* Server Finished covers ClientHello..CertificateVerify. */
    add_msg(&t, ENCRYPTED_EXTENSIONS);
    add_msg(&t, CERTIFICATE);
    add_msg(&t, CERTIFICATE_VERIFY);
    OK(kx_transcript_hash(&t, th));
    OK(kx_tls13_finished(KX_HASH_SHA256, ks.s_hs, th, vd));
    assert_hex(vd, H, SERVER_VERIFY_DATA);
    add_finished(&t, vd);

    /* Client Finished and the application secrets cover ClientHello..server Finished. */
    OK(kx_transcript_hash(&t, th));
    assert_hex(th, H, HASH_CH_SF);
    OK(kx_tls13_finished(KX_HASH_SHA256, ks.c_hs, th, vd));
    assert_hex(vd, H, CLIENT_VERIFY_DATA);

    OK(kx_tls13_ks_master(&ks, th));
    assert_hex(ks.master, H, MASTER);
    assert_hex(ks.c_ap, H, C_AP);
    assert_hex(ks.s_ap, H, S_AP);
    assert_hex(ks.exporter, H, EXPORTER);

    OK(kx_tls13_traffic_keys(KX_HASH_SHA256, ks.s_ap, 16, key, iv));
    assert_hex(key, 16, S_AP_KEY);
    assert_hex(iv, 12, S_AP_IV);
    OK(kx_tls13_traffic_keys(KX_HASH_SHA256, ks.c_ap, 16, key, iv));
    assert_hex(key, 16, C_AP_KEY);
    assert_hex(iv, 12, C_AP_IV);

    /* The resumption secret covers ClientHello..client Finished. */
    add_finished(&t, vd);
    OK(kx_transcript_hash(&t, th));
    assert_hex(th, H, HASH_CH_CF);
    OK(kx_tls13_ks_resumption(&ks, th));
    assert_hex(ks.resumption, H, RESUMPTION);

    /* The NewSessionTicket of §3 carries ticket_nonce 00 00; §4 resumes with this PSK. */
    static const uint8_t nonce[2] = { 0, 0 };
    OK(kx_tls13_ticket_psk(KX_HASH_SHA256, ks.resumption, nonce, sizeof nonce, out));
    assert_hex(out, H, TICKET_PSK);

    /* Superseded stage secrets are gone; live traffic secrets are not. */
    static const uint8_t zeros[KX_MAX_HASH];
    assert_memory_equal(ks.early, zeros, H);
    assert_memory_equal(ks.handshake, zeros, H);
    assert_memory_equal(ks.master, zeros, H);
    assert_hex(ks.c_ap, H, C_AP);

    kx_tls13_ks_wipe(&ks);
    assert_memory_equal(ks.c_ap, zeros, H);
    assert_memory_equal(ks.resumption, zeros, H);
    kx_transcript_free(&t);
}

static void test_rfc8448_resumption_binder(void **state)
{
    (void)state;
    kx_tls13_ks ks;
    uint8_t psk[32], bk[KX_MAX_HASH], ext_bk[KX_MAX_HASH], th[32], binder[KX_MAX_HASH];

    unhex(TICKET_PSK, psk, sizeof psk);
    OK(kx_tls13_ks_early(&ks, KX_HASH_SHA256, psk, sizeof psk));
    assert_hex(ks.early, 32, EARLY_PSK);

    OK(kx_tls13_ks_binder_key(&ks, 0, bk));
    assert_hex(bk, 32, RES_BINDER_KEY);

    /* binder = HMAC(finished_key(binder_key), Hash(truncated ClientHello)): the Finished computation. */
    unhex(HASH_TRUNCATED_CH, th, sizeof th);
    OK(kx_tls13_finished(KX_HASH_SHA256, bk, th, binder));
    assert_hex(binder, 32, BINDER);

    /* "ext binder" must give a different key, so one PSK kind cannot pass for the other. */
    OK(kx_tls13_ks_binder_key(&ks, 1, ext_bk));
    assert_memory_not_equal(bk, ext_bk, 32);
    kx_tls13_ks_wipe(&ks);
}

static void test_traffic_update(void **state)
{
    (void)state;
    uint8_t s[32], orig[32], want[32];
    unhex(C_AP, s, sizeof s);
    memcpy(orig, s, sizeof s);
    /* RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length). */
    OK(kx_hkdf_expand_label(KX_HASH_SHA256, orig, "traffic upd", NULL, 0, want, sizeof want));
    OK(kx_tls13_next_traffic_secret(KX_HASH_SHA256, s));
    assert_memory_equal(s, want, sizeof s);
    assert_memory_not_equal(s, orig, sizeof s);
}

static void test_sha384_schedule_shape(void **state)
{
    (void)state;
    /* TLS_AES_256_GCM_SHA384: every secret is 48 bytes, and distinct. */
    kx_tls13_ks ks;
    uint8_t th[48], key[32], iv[12];
    memset(th, 0x5a, sizeof th);
    OK(kx_tls13_ks_early(&ks, KX_HASH_SHA384, NULL, 0));
    assert_int_equal(ks.hlen, 48);
    OK(kx_tls13_ks_handshake(&ks, NULL, 0, th));
    assert_memory_not_equal(ks.c_hs, ks.s_hs, 48);
    OK(kx_tls13_ks_master(&ks, th));
    assert_memory_not_equal(ks.c_ap, ks.s_ap, 48);
    OK(kx_tls13_traffic_keys(KX_HASH_SHA384, ks.s_ap, 32, key, iv));
    kx_tls13_ks_wipe(&ks);
}

/* No PSK: the Early Secret and its "derived" salt come from constants computed
 * once; they must equal the schedule run with an explicit all-zero PSK (the
 * computed path), for both hashes, and a PSK schedule after a no-PSK one on
 * the same object must not reuse them. */
static void test_no_psk_constants(void **state)
{
    (void)state;
    static const uint8_t zeros[48];
    uint8_t th[48], shared[32];
    memset(th, 0x3c, sizeof th);
    memset(shared, 0x77, sizeof shared);
    for (int h = KX_HASH_SHA256; h <= KX_HASH_SHA384; h++) {
        size_t hlen = kx_hash_len((kx_hash_id)h);
        kx_tls13_ks a, b;
        OK(kx_tls13_ks_early(&a, (kx_hash_id)h, NULL, 0));
        OK(kx_tls13_ks_early(&b, (kx_hash_id)h, zeros, hlen));
        assert_memory_equal(a.early, b.early, hlen);
        OK(kx_tls13_ks_handshake(&a, shared, sizeof shared, th));
        OK(kx_tls13_ks_handshake(&b, shared, sizeof shared, th));
        assert_memory_equal(a.handshake, b.handshake, hlen);
        assert_memory_equal(a.c_hs, b.c_hs, hlen);
        /* Reused object, now with a real PSK: different early and handshake secrets. */
        uint8_t psk[48];
        memset(psk, 0x11, sizeof psk);
        OK(kx_tls13_ks_early(&a, (kx_hash_id)h, psk, hlen));
        assert_memory_not_equal(a.early, b.early, hlen);
        OK(kx_tls13_ks_handshake(&a, shared, sizeof shared, th));
        assert_memory_not_equal(a.handshake, b.handshake, hlen);
        kx_tls13_ks_wipe(&a);
        kx_tls13_ks_wipe(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8448_x25519),
        cmocka_unit_test(test_rfc8448_1rtt),
        cmocka_unit_test(test_rfc8448_resumption_binder),
        cmocka_unit_test(test_traffic_update),
        cmocka_unit_test(test_sha384_schedule_shape),
        cmocka_unit_test(test_no_psk_constants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
