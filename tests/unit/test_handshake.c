/* The TLS 1.3 handshake engine end to end: a client ktlsx_conn and a server
 * ktlsx_conn in one process, bytes pumped between them in memory (the
 * engine does no I/O).  Certificates are generated at test start.
 *
 * Two ways of moving bytes: everything at once (a plain user-space TLS
 * loop), and exactly ktlsx_input_wanted() bytes at a time followed by
 * ktlsx_handshake() (the record-by-record contract that lets a caller hand the
 * socket to kernel TLS without stranding bytes in user space). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake/conn.h"
#include "core/wipe.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* -------------------------------------------------- suite x group x cert */

typedef struct {
    const char *suite;
    const char *group;       /* as configured */
    const char *group_canon; /* as reported */
    const char *cert;
} combo;

static void one_combo(const combo *m, enum kxt_feed_mode mode)
{
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(m->suite, m->group), kxt_server_cfg(m->cert, m->suite, m->group), "localhost", mode);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.c), KTLSX_TLS13);
    assert_int_equal(ktlsx_version(p.s), KTLSX_TLS13);
    assert_string_equal(ktlsx_version_name(p.c), "TLSv1.3");
    assert_string_equal(ktlsx_version_name(p.s), "TLSv1.3");
    assert_string_equal(ktlsx_cipher_name(p.c), m->suite);
    assert_string_equal(ktlsx_cipher_name(p.s), m->suite);
    assert_int_equal(ktlsx_cipher_id(p.c), ktlsx_cipher_id(p.s));
    assert_string_equal(ktlsx_group_name(p.c), m->group_canon);
    assert_string_equal(ktlsx_group_name(p.s), m->group_canon);
    assert_int_equal(ktlsx_resumed(p.c), 0);
    assert_null(ktlsx_alpn(p.c));
    assert_null(ktlsx_alpn(p.s));
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
    assert_string_equal(ktlsx_peer_subject(p.s), ""); /* no client certificate */
    assert_string_equal(ktlsx_sni(p.s), "localhost");
    assert_string_equal(ktlsx_sni(p.c), "localhost");
    assert_string_equal(ktlsx_error(p.c), "");
    assert_string_equal(ktlsx_error(p.s), "");
    /* ktlsx_handshake is idempotent once done. */
    assert_int_equal(ktlsx_handshake(p.c), KTLSX_DONE);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_DONE);

    /* Application data both ways. */
    kxt_send_recv(&p, true, "ping", 4);
    kxt_send_recv(&p, false, "pong!", 5);
    /* 100 KiB: several records each way. */
    size_t big_len = 100 * 1024;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++) big[i] = (uint8_t)(rnd() >> 3);
    assert_int_equal(ktlsx_write(p.c, big, big_len), 0);
    kxt_move_out(p.c, &p.c2s);
    assert_true(kxt_count_records(&p.c2s) >= 7); /* 2^14 plaintext per record */
    kxt_deliver(p.s, &p.c2s);
    uint8_t *got = malloc(big_len + 1);
    assert_non_null(got);
    long last;
    assert_int_equal(kxt_drain_read(p.s, got, big_len + 1, &last), big_len);
    assert_int_equal(last, 0);
    assert_memory_equal(got, big, big_len);
    kxt_send_recv(&p, false, big, big_len);
    free(got);
    free(big);

    /* close_notify each way. */
    assert_int_equal(ktlsx_close_notify(p.c), 0);
    kxt_move_out(p.c, &p.c2s);
    kxt_deliver(p.s, &p.c2s);
    uint8_t tmp[16];
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), -KTLSX_CLOSED);
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), -KTLSX_CLOSED); /* sticky */
    assert_int_equal(ktlsx_close_notify(p.s), 0);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), -KTLSX_CLOSED);
    kxt_pair_free(&p);
}

static void test_matrix(void **state)
{
    const combo *m = *state;
    one_combo(m, KXT_FEED_ALL);
    one_combo(m, KXT_FEED_WANTED);
}

/* ------------------------------------------------------ HelloRetryRequest */

static void test_hello_retry_request(void **state)
{
    (void)state;
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519,P-256"), kxt_server_cfg("ecdsa", NULL, "P-256"), "localhost",
                   (enum kxt_feed_mode)mode);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_true(p.c->hrr);
        assert_true(p.s->hrr);
        assert_string_equal(ktlsx_group_name(p.c), "secp256r1");
        assert_string_equal(ktlsx_group_name(p.s), "secp256r1");
        kxt_send_recv(&p, true, "after retry", 11);
        kxt_send_recv(&p, false, "ok", 2);
        kxt_pair_free(&p);
    }
    /* No HRR when the client's first share is acceptable. */
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519,P-256"), kxt_server_cfg("ecdsa", NULL, "P-256,x25519"), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_false(p.c->hrr);
    assert_string_equal(ktlsx_group_name(p.c), "x25519");
    kxt_pair_free(&p);
    /* No group in common at all: handshake_failure, and the client learns why. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519"), kxt_server_cfg("ecdsa", NULL, "P-384"), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_HANDSHAKE_FAILURE);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);
}

/* ------------------------------------------------------------- mutual TLS */

static ktlsx_config *mtls_server(enum ktlsx_verify_client mode)
{
    ktlsx_config *cfg = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")));
    KXT_CFG_OK(cfg, ktlsx_config_set_verify_client(cfg, mode));
    return cfg;
}

static void test_mtls_require_with_cert(void **state)
{
    (void)state;
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
        KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
        kxt_pair p;
        kxt_pair_start(&p, cc, mtls_server(KTLSX_VERIFY_REQUIRE), "localhost", (enum kxt_feed_mode)mode);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_non_null(strstr(ktlsx_peer_subject(p.s), "ktlsx-client"));
        assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
        kxt_send_recv(&p, true, "authenticated", 13);
        kxt_send_recv(&p, false, "welcome", 7);
        kxt_pair_free(&p);
    }
}

static void test_mtls_require_without_cert(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), mtls_server(KTLSX_VERIFY_REQUIRE), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_CERTIFICATE_REQUIRED);
    assert_string_not_equal(ktlsx_error(p.s), "");
    /* In TLS 1.3 the client finishes first; it learns of the refusal when it reads. */
    assert_int_equal(p.cst, KTLSX_DONE);
    assert_true(p.s2c.len > 0);
    kxt_deliver(p.c, &p.s2c);
    uint8_t tmp[16];
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_CERTIFICATE_REQUIRED);
    assert_string_equal(ktlsx_alert_name(KX_ALERT_CERTIFICATE_REQUIRED), "certificate_required");
    /* A received alert is not answered. */
    const uint8_t *d;
    assert_int_equal(ktlsx_pending_output(p.c, &d), 0);
    assert_int_equal(ktlsx_write(p.c, "x", 1), -1);
    kxt_pair_free(&p);
}

static void test_mtls_optional_without_cert(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), mtls_server(KTLSX_VERIFY_OPTIONAL), "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_string_equal(ktlsx_peer_subject(p.s), "");
    kxt_send_recv(&p, true, "anonymous", 9);
    kxt_pair_free(&p);
    /* Optional with a certificate: verified and visible. */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
    kxt_pair_start(&p, cc, mtls_server(KTLSX_VERIFY_OPTIONAL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_non_null(strstr(ktlsx_peer_subject(p.s), "ktlsx-client"));
    kxt_pair_free(&p);
}

/* A client certificate from a CA the server does not trust. */
static void test_mtls_untrusted_client_cert(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("other.pem"), kxt_pki_path("other.key")));
    kxt_pair p;
    kxt_pair_start(&p, cc, mtls_server(KTLSX_VERIFY_REQUIRE), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_UNKNOWN_CA);
    kxt_deliver(p.c, &p.s2c);
    uint8_t tmp[4];
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_UNKNOWN_CA);
    kxt_pair_free(&p);
}

/* -------------------------------------------------- client verification */

static void test_verify_wrong_host(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "example.invalid", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_CERTIFICATE);
    assert_non_null(strstr(ktlsx_error(p.c), "hostname"));
    /* The server receives the alert. */
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_BAD_CERTIFICATE);
    kxt_pair_free(&p);
    /* An IP literal is verified against the IP SAN (and sent as no SNI). */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("rsa", NULL, NULL), "127.0.0.1", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_string_equal(ktlsx_sni(p.s), "");
    kxt_pair_free(&p);
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("rsa", NULL, NULL), "127.0.0.2", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_CERTIFICATE);
    kxt_pair_free(&p);
}

static void test_verify_unknown_ca(void **state)
{
    (void)state;
    ktlsx_config *cc = ktlsx_config_new(KTLSX_CLIENT);
    assert_non_null(cc);
    KXT_CFG_OK(cc, ktlsx_config_set_ca_file(cc, kxt_pki_path("other-ca.pem")));
    kxt_pair p;
    kxt_pair_start(&p, cc, kxt_server_cfg("ed25519", NULL, NULL), "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_UNKNOWN_CA);
    assert_string_not_equal(ktlsx_error(p.c), "");
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_UNKNOWN_CA);
    kxt_pair_free(&p);
    /* --insecure: the chain is not checked, the handshake completes. */
    cc = ktlsx_config_new(KTLSX_CLIENT);
    KXT_CFG_OK(cc, ktlsx_config_set_ca_file(cc, kxt_pki_path("other-ca.pem")));
    KXT_CFG_OK(cc, ktlsx_config_set_insecure(cc, 1));
    kxt_pair_start(&p, cc, kxt_server_cfg("ed25519", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);
}

/* ------------------------------------------------------------------ ALPN */

static void test_alpn(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "h2,http/1.1"));
    KXT_CFG_OK(sc, ktlsx_config_set_alpn(sc, "http/1.1"));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_non_null(ktlsx_alpn(p.c));
    assert_non_null(ktlsx_alpn(p.s));
    assert_string_equal(ktlsx_alpn(p.c), "http/1.1");
    assert_string_equal(ktlsx_alpn(p.s), "http/1.1");
    kxt_pair_free(&p);

    /* Server preference wins. */
    cc = kxt_client_cfg(NULL, NULL);
    sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "http/1.1,h2"));
    KXT_CFG_OK(sc, ktlsx_config_set_alpn(sc, "h2,http/1.1"));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_string_equal(ktlsx_alpn(p.c), "h2");
    kxt_pair_free(&p);

    /* Nothing in common. */
    cc = kxt_client_cfg(NULL, NULL);
    sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "h2,http/1.1"));
    KXT_CFG_OK(sc, ktlsx_config_set_alpn(sc, "h3"));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_NO_APPLICATION_PROTOCOL);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_NO_APPLICATION_PROTOCOL);
    kxt_pair_free(&p);

    /* Client offers ALPN, server has none configured: no ALPN, no failure. */
    cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "h2"));
    kxt_pair_start(&p, cc, kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_null(ktlsx_alpn(p.c));
    assert_null(ktlsx_alpn(p.s));
    kxt_pair_free(&p);
}

/* ------------------------------------------------------------- tampering */

static void test_tamper_server_flight(void **state)
{
    (void)state;
    /* A byte in the middle of the encrypted flight (EncryptedExtensions..Finished). */
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("rsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    uint8_t type;
    size_t len;
    assert_true(kxt_record_offset(&p.s2c, 0, &type, &len) == 0);
    assert_int_equal(type, KX_CT_HANDSHAKE); /* ServerHello in the clear */
    assert_true(kxt_record_offset(&p.s2c, 1, &type, &len) > 0);
    assert_int_equal(type, KX_CT_CHANGE_CIPHER_SPEC); /* compatibility mode (RFC 8446 D.4) */
    assert_true(kxt_record_offset(&p.s2c, 2, &type, &len) > 0);
    assert_int_equal(type, KX_CT_APPLICATION_DATA); /* protected */
    kxt_flip_in_record(&p.s2c, 2, (long)len / 2);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_RECORD_MAC);
    assert_int_equal(p.sst, KTLSX_FAILED); /* got the client's alert */
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_BAD_RECORD_MAC);
    kxt_pair_free(&p);

    /* The last byte of the last record of the flight: the one carrying Finished. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_WANTED);
    kxt_server_flight_out(&p);
    size_t n = kxt_count_records(&p.s2c);
    assert_true(n >= 2);
    kxt_flip_in_record(&p.s2c, n - 1, -1);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_RECORD_MAC);
    kxt_pair_free(&p);

    /* The ServerHello random: the client derives other handshake keys and cannot decrypt. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_flip_in_record(&p.s2c, 0, 4 + 2 + 5);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_RECORD_MAC);
    kxt_pair_free(&p);
}

static void test_tamper_client_finished(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_DONE);
    kxt_move_out(p.c, &p.c2s);
    size_t n = kxt_count_records(&p.c2s);
    assert_true(n >= 1);
    kxt_flip_in_record(&p.c2s, n - 1, 3);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_BAD_RECORD_MAC);
    assert_string_not_equal(ktlsx_error(p.s), "");
    kxt_pair_free(&p);
}

/* Application data with a flipped byte. */
static void test_tamper_application_data(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_write(p.c, "secret", 6), 0);
    kxt_move_out(p.c, &p.c2s);
    kxt_flip_in_record(&p.c2s, 0, 2);
    kxt_deliver(p.s, &p.c2s);
    uint8_t tmp[16];
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_BAD_RECORD_MAC);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_RECORD_MAC);
    kxt_pair_free(&p);
}

/* ------------------------------------------------------------- KeyUpdate */

static void test_key_update(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg("TLS_AES_256_GCM_SHA384", NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    assert_int_equal(ktlsx_key_update(p.c, 1), -1); /* not before the handshake */
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    kxt_send_recv(&p, true, "before", 6);
    struct ktlsx_traffic_keys ctx0, stx0, k1, k2;
    assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &ctx0), 0);
    assert_int_equal(ktlsx_export_keys(p.s, KTLSX_TX, &stx0), 0);

    assert_int_equal(ktlsx_key_update(p.c, 1), 0);
    kxt_send_recv(&p, true, "after update", 12);
    /* The server answered with its own KeyUpdate (no request back). */
    assert_true(p.s2c.len > 0);
    assert_int_equal(kxt_count_records(&p.s2c), 1);
    kxt_send_recv(&p, false, "reply under new keys", 20);
    assert_int_equal(p.c2s.len, 0); /* the answer was not answered */
    kxt_send_recv(&p, true, "and again", 9);

    assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &k1), 0);
    assert_int_equal(ktlsx_export_keys(p.s, KTLSX_RX, &k2), 0);
    assert_memory_not_equal(k1.key, ctx0.key, k1.key_len);
    assert_memory_equal(k1.key, k2.key, k1.key_len);
    assert_memory_equal(k1.iv, k2.iv, k1.iv_len);
    assert_true(k1.seq == k2.seq);
    assert_true(k1.seq == 2); /* "after update", "and again" under the new keys */
    assert_int_equal(ktlsx_export_keys(p.s, KTLSX_TX, &k1), 0);
    assert_int_equal(ktlsx_export_keys(p.c, KTLSX_RX, &k2), 0);
    assert_memory_not_equal(k1.key, stx0.key, k1.key_len);
    assert_memory_equal(k1.key, k2.key, k1.key_len);
    assert_true(k1.seq == k2.seq);

    /* Server-initiated, not requesting: the client updates its receive keys only. */
    assert_int_equal(ktlsx_key_update(p.s, 0), 0);
    kxt_send_recv(&p, false, "server rekeyed", 14);
    assert_int_equal(p.c2s.len, 0);
    kxt_send_recv(&p, true, "client still on its keys", 24);
    /* Several updates in a row, each with data. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ktlsx_key_update(p.c, i & 1), 0);
        kxt_send_recv(&p, true, "x", 1);
        kxt_send_recv(&p, false, "y", 1);
    }
    kxt_pair_free(&p);
}

/* ------------------------------------------------------------ key export */

static void assert_keys_equal(const struct ktlsx_traffic_keys *a, const struct ktlsx_traffic_keys *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->cipher_suite, b->cipher_suite);
    assert_int_equal(a->key_len, b->key_len);
    assert_memory_equal(a->key, b->key, a->key_len);
    assert_int_equal(a->iv_len, b->iv_len);
    assert_memory_equal(a->iv, b->iv, a->iv_len);
    assert_true(a->seq == b->seq);
}

static void test_export_keys(void **state)
{
    (void)state;
    static const struct {
        const char *suite;
        uint16_t id;
        size_t key_len;
    } suites[] = {
        { "TLS_AES_128_GCM_SHA256", 0x1301, 16 },
        { "TLS_AES_256_GCM_SHA384", 0x1302, 32 },
        { "TLS_CHACHA20_POLY1305_SHA256", 0x1303, 32 },
    };
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(suites[i].suite, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_WANTED);
        struct ktlsx_traffic_keys a, b;
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &a), -1); /* not before the handshake */
        kxt_pump(&p);
        kxt_assert_done(&p);
        /* Client TX == server RX right away: nothing else was sent client to server. */
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &a), 0);
        assert_int_equal(ktlsx_export_keys(p.s, KTLSX_RX, &b), 0);
        assert_keys_equal(&a, &b);
        /* Server TX == client RX once the client has read all the server sent. */
        kxt_settle(&p);
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &a), 0);
        assert_int_equal(ktlsx_export_keys(p.s, KTLSX_RX, &b), 0);
        assert_int_equal(a.version, KTLSX_TLS13);
        assert_int_equal(a.cipher_suite, suites[i].id);
        assert_int_equal(a.key_len, suites[i].key_len);
        assert_int_equal(a.iv_len, 12);
        assert_true(a.seq == 0);
        assert_keys_equal(&a, &b);
        assert_int_equal(ktlsx_export_keys(p.s, KTLSX_TX, &a), 0);
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_RX, &b), 0);
        assert_keys_equal(&a, &b);
        /* The two directions have different keys. */
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &b), 0);
        assert_memory_not_equal(a.key, b.key, a.key_len);

        /* Three records from the client: TX moves by 3, the server's RX follows once read. */
        for (int r = 0; r < 3; r++) assert_int_equal(ktlsx_write(p.c, "abc", 3), 0);
        kxt_move_out(p.c, &p.c2s);
        assert_int_equal(kxt_count_records(&p.c2s), 3);
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &a), 0);
        assert_int_equal(ktlsx_export_keys(p.s, KTLSX_RX, &b), 0);
        assert_true(a.seq == 3);
        assert_true(a.seq - b.seq == 3);
        kxt_deliver(p.s, &p.c2s);
        uint8_t buf[32];
        long last;
        assert_int_equal(kxt_drain_read(p.s, buf, sizeof buf, &last), 9);
        assert_int_equal(ktlsx_export_keys(p.s, KTLSX_RX, &b), 0);
        assert_keys_equal(&a, &b);
        assert_true(b.seq == 3);
        kxt_pair_free(&p);
    }
}

/* --------------------------------------------------------------- key log */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

static void check_keylog(const char *text, const ktlsx_conn *c, size_t secret_hex)
{
    static const char *labels[] = { "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                    "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET" };
    char random_hex[65];
    for (int i = 0; i < 32; i++) snprintf(random_hex + 2 * i, 3, "%02x", c->client_random[i]);
    int seen[5] = { 0 };
    size_t lines = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line terminated */
        char line[512];
        size_t n = (size_t)(nl - p);
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = 0;
        char label[64], rnd_hex[128], secret[256];
        if (sscanf(line, "%63s %127s %255s", label, rnd_hex, secret) != 3) fail_msg("bad key log line: %s", line);
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(label, labels[i]) == 0) k = i;
        if (k < 0) fail_msg("unexpected key log label: %s", label);
        seen[k]++;
        assert_int_equal(strlen(rnd_hex), 64);
        assert_string_equal(rnd_hex, random_hex);
        assert_int_equal(strlen(secret), secret_hex);
        assert_int_equal(strspn(secret, "0123456789abcdef"), secret_hex);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(seen[i], 1);
}

static void test_keylog(void **state)
{
    (void)state;
    static const struct {
        const char *suite;
        size_t hex;
    } suites[] = { { "TLS_AES_128_GCM_SHA256", 64 }, { "TLS_AES_256_GCM_SHA384", 96 } };
    for (size_t i = 0; i < 2; i++) {
        char cpath[64], spath[64];
        snprintf(cpath, sizeof cpath, "keylog-client-%zu.txt", i);
        snprintf(spath, sizeof spath, "keylog-server-%zu.txt", i);
        ktlsx_config *cc = kxt_client_cfg(suites[i].suite, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
        KXT_CFG_OK(cc, ktlsx_config_set_keylog_file(cc, kxt_pki_path(cpath)));
        KXT_CFG_OK(sc, ktlsx_config_set_keylog_file(sc, kxt_pki_path(spath)));
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_done(&p);
        size_t clen, slen;
        char *ct = slurp(kxt_pki_path(cpath), &clen), *st = slurp(kxt_pki_path(spath), &slen);
        assert_non_null(ct);
        assert_non_null(st);
        check_keylog(ct, p.c, suites[i].hex);
        check_keylog(st, p.s, suites[i].hex);
        /* Both ends derived the same secrets, in the same order. */
        assert_int_equal(clen, slen);
        assert_memory_equal(ct, st, clen);
        free(ct);
        free(st);
        kxt_pair_free(&p);
    }
}

/* ------------------------------------------------------- garbage, truncation */

static void test_garbage_input(void **state)
{
    (void)state;
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    uint8_t junk[4096];
    for (int iter = 0; iter < 300; iter++) {
        ktlsx_conn *s = ktlsx_conn_new(sc, NULL);
        assert_non_null(s);
        size_t n = 1 + rnd() % sizeof junk;
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)rnd();
        if (iter % 3 == 1) {
            /* A plausible handshake record header, random body: exercises the ClientHello parser. */
            size_t body = n > 5 ? n - 5 : 0;
            junk[0] = KX_CT_HANDSHAKE;
            junk[1] = 3;
            junk[2] = 1;
            junk[3] = (uint8_t)(body >> 8);
            junk[4] = (uint8_t)body;
            if (n > 9) {
                junk[5] = KX_HS_CLIENT_HELLO;
                junk[6] = 0;
                junk[7] = (uint8_t)((body - 4) >> 8);
                junk[8] = (uint8_t)(body - 4);
            }
        }
        int st = ktlsx_input(s, junk, n) == 0 ? ktlsx_handshake(s) : KTLSX_FAILED;
        if (st == KTLSX_WANT_READ) {
            assert_true(ktlsx_input_wanted(s) > 0);
            assert_int_equal(ktlsx_input(s, NULL, 0), 0);
            st = ktlsx_handshake(s);
        }
        if (st != KTLSX_FAILED) fail_msg("iteration %d (%zu bytes): status %s", iter, n, kxt_status_name(st));
        assert_string_not_equal(ktlsx_error(s), "");
        assert_int_equal(ktlsx_input(s, junk, 1), -1); /* failed is sticky */
        assert_int_equal(ktlsx_handshake(s), KTLSX_FAILED);
        uint8_t tmp[8];
        assert_int_equal(ktlsx_read(s, tmp, sizeof tmp), -KTLSX_FAILED);
        assert_int_equal(ktlsx_write(s, "x", 1), -1);
        ktlsx_conn_free(s);
    }
    ktlsx_config_free(sc);
}

/* A real ClientHello with a few bytes changed: the server fails or carries on, never crashes. */
static void test_mutated_client_hello(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_conn *c = ktlsx_conn_new(cc, "localhost");
    assert_int_equal(ktlsx_handshake(c), KTLSX_WANT_READ);
    kx_buf hello = { 0 };
    kxt_move_out(c, &hello);
    ktlsx_conn_free(c);
    int failed = 0;
    for (int iter = 0; iter < 500; iter++) {
        uint8_t *m = malloc(hello.len);
        assert_non_null(m);
        memcpy(m, hello.data, hello.len);
        int flips = 1 + (int)(rnd() % 3);
        for (int k = 0; k < flips; k++) m[5 + rnd() % (hello.len - 5)] ^= (uint8_t)(1u << (rnd() % 8));
        ktlsx_conn *s = ktlsx_conn_new(sc, NULL);
        assert_int_equal(ktlsx_input(s, m, hello.len), 0);
        int st = ktlsx_handshake(s);
        assert_true(st == KTLSX_WANT_READ || st == KTLSX_FAILED);
        if (st == KTLSX_WANT_READ) assert_true(ktlsx_input_wanted(s) > 0);
        if (st == KTLSX_FAILED) {
            failed++;
            assert_string_not_equal(ktlsx_error(s), "");
            const uint8_t *d;
            assert_true(ktlsx_pending_output(s, &d) > 0); /* the alert */
        }
        ktlsx_conn_free(s);
        free(m);
    }
    assert_true(failed > 0);
    kx_buf_free(&hello);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_truncated_stream(void **state)
{
    (void)state;
    /* Server: half a ClientHello, then EOF. */
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    p.cst = ktlsx_handshake(p.c);
    kxt_move_out(p.c, &p.c2s);
    size_t half = p.c2s.len / 2;
    assert_int_equal(ktlsx_input(p.s, p.c2s.data, half), 0);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_WANT_READ);
    assert_int_equal(ktlsx_input_wanted(p.s), p.c2s.len - half);
    assert_int_equal(ktlsx_input(p.s, NULL, 0), 0);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_FAILED);
    assert_string_not_equal(ktlsx_error(p.s), "");
    const uint8_t *d;
    assert_true(ktlsx_pending_output(p.s, &d) > 0);
    kxt_pair_free(&p);

    /* Server: EOF before anything arrived. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    assert_int_equal(ktlsx_input_wanted(p.s), 5);
    assert_int_equal(ktlsx_input(p.s, NULL, 0), 0);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_FAILED);
    assert_string_not_equal(ktlsx_error(p.s), "");
    kxt_pair_free(&p);

    /* Client: part of the server's flight, then EOF. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("rsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    assert_true(p.s2c.len > 200);
    assert_int_equal(ktlsx_input(p.c, p.s2c.data, p.s2c.len - 100), 0);
    assert_int_equal(ktlsx_handshake(p.c), KTLSX_WANT_READ);
    assert_int_equal(ktlsx_input_wanted(p.c), 100);
    assert_int_equal(ktlsx_input(p.c, NULL, 0), 0);
    assert_int_equal(ktlsx_handshake(p.c), KTLSX_FAILED);
    assert_string_not_equal(ktlsx_error(p.c), "");
    kxt_pair_free(&p);

    /* After the handshake: EOF without close_notify reads as closed, not as data. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_input(p.s, NULL, 0), 0);
    uint8_t tmp[4];
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), -KTLSX_CLOSED);
    kxt_pair_free(&p);
}

/* ---------------------------------------------------------- input_wanted */

static void test_input_wanted_counts(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    p.cst = ktlsx_handshake(p.c);
    kxt_move_out(p.c, &p.c2s);
    size_t body = ((size_t)p.c2s.data[3] << 8) | p.c2s.data[4];
    assert_int_equal(ktlsx_input_wanted(p.s), 5);
    assert_int_equal(ktlsx_input(p.s, p.c2s.data, 3), 0);
    assert_int_equal(ktlsx_input_wanted(p.s), 2);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_WANT_READ);
    assert_int_equal(ktlsx_input(p.s, p.c2s.data + 3, 2), 0);
    assert_int_equal(ktlsx_input_wanted(p.s), body);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_WANT_READ);
    assert_int_equal(ktlsx_input(p.s, p.c2s.data + 5, body - 1), 0);
    assert_int_equal(ktlsx_input_wanted(p.s), 1);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_WANT_READ);
    assert_int_equal(ktlsx_input(p.s, p.c2s.data + 5 + body - 1, 1), 0);
    kx_buf_consume(&p.c2s, 5 + body);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_WANT_READ);
    assert_int_equal(ktlsx_input_wanted(p.s), 5); /* next: the client's second flight */
    kxt_move_out(p.s, &p.s2c);
    p.mode = KXT_FEED_WANTED;
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);
}

/* The client sends application data in the same flight as its Finished. */
static void test_input_wanted_stops_at_handshake_end(void **state)
{
    (void)state;
    static const char early[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_WANTED);
    p.client_early = early;
    kxt_pump(&p);
    kxt_assert_done(&p);
    /* The engine took nothing past the last handshake record... */
    uint8_t buf[4096];
    assert_int_equal(ktlsx_take_buffered(p.s, buf, sizeof buf), 0);
    /* ...so the application data record is still "in the socket", whole. */
    uint8_t type;
    size_t len;
    assert_int_equal(kxt_count_records(&p.c2s), 1);
    assert_int_equal(kxt_record_offset(&p.c2s, 0, &type, &len), 0);
    assert_int_equal(type, KX_CT_APPLICATION_DATA);
    assert_int_equal(len, strlen(early) + 1 + 16);
    kxt_deliver(p.s, &p.c2s);
    long last;
    size_t n = kxt_drain_read(p.s, buf, sizeof buf, &last);
    assert_int_equal(last, 0);
    assert_int_equal(n, strlen(early));
    assert_memory_equal(buf, early, n);
    kxt_send_recv(&p, false, "HTTP/1.1 200 OK\r\n\r\n", 19);
    kxt_pair_free(&p);

    /* Feeding everything at once instead: the surplus is handed back by take_buffered. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    p.client_early = early;
    /* Run until the client is done, then give the server its whole flight in one go. */
    p.cst = ktlsx_handshake(p.c);
    kxt_move_out(p.c, &p.c2s);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_DONE);
    assert_int_equal(ktlsx_write(p.c, early, strlen(early)), 0);
    kxt_move_out(p.c, &p.c2s);
    size_t nrec = kxt_count_records(&p.c2s);
    assert_true(nrec >= 2);
    size_t app_off;
    assert_true(kxt_record_offset(&p.c2s, nrec - 1, &type, &len) > 0);
    app_off = p.c2s.len - (5 + len);
    uint8_t app_rec[256];
    assert_true(5 + len <= sizeof app_rec);
    memcpy(app_rec, p.c2s.data + app_off, 5 + len);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    kxt_assert_done(&p);
    n = ktlsx_take_buffered(p.s, buf, sizeof buf);
    assert_int_equal(n, 5 + len);
    assert_memory_equal(buf, app_rec, n);
    assert_int_equal(ktlsx_take_buffered(p.s, buf, sizeof buf), 0);
    /* Handed back to the engine, it decrypts as usual. */
    assert_int_equal(ktlsx_input(p.s, app_rec, 5 + len), 0);
    n = kxt_drain_read(p.s, buf, sizeof buf, &last);
    assert_int_equal(n, strlen(early));
    assert_memory_equal(buf, early, n);
    kxt_pair_free(&p);
}

/* ------------------------------------------------ record-layer variations */

/* Insert `rec` (a whole record) at byte offset `at` of the wire. */
static void wire_insert(kx_buf *w, size_t at, const uint8_t *rec, size_t n)
{
    kx_buf tmp = { 0 };
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data, at)));
    assert_false(kx_failed(kx_write_bytes(&tmp, rec, n)));
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data + at, w->len - at)));
    kx_buf_reset(w);
    assert_false(kx_failed(kx_write_bytes(w, tmp.data, tmp.len)));
    kx_buf_free(&tmp);
}

/* A ClientHello split over many small records (RFC 8446 §5.1 allows it). */
static void test_fragmented_client_hello(void **state)
{
    (void)state;
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", (enum kxt_feed_mode)mode);
        p.cst = ktlsx_handshake(p.c);
        kxt_move_out(p.c, &p.c2s);
        assert_int_equal(kxt_count_records(&p.c2s), 1);
        kx_buf split = { 0 };
        const uint8_t *body = p.c2s.data + 5;
        size_t len = p.c2s.len - 5;
        for (size_t off = 0; off < len; off += 7) {
            size_t n = len - off < 7 ? len - off : 7;
            uint8_t hdr[5] = { KX_CT_HANDSHAKE, 3, 1, 0, (uint8_t)n };
            assert_false(kx_failed(kx_write_bytes(&split, hdr, 5)));
            assert_false(kx_failed(kx_write_bytes(&split, body + off, n)));
        }
        kx_buf_reset(&p.c2s);
        assert_false(kx_failed(kx_write_bytes(&p.c2s, split.data, split.len)));
        kx_buf_free(&split);
        kxt_pump(&p);
        kxt_assert_done(&p);
        kxt_send_recv(&p, true, "fragmented hello", 16);
        kxt_pair_free(&p);
    }
}

/* Middlebox-compatibility change_cipher_spec (RFC 8446 §5, D.4): ignored during
 * the handshake, wherever it falls; fatal afterwards. */
static void test_compat_change_cipher_spec(void **state)
{
    (void)state;
    static const uint8_t ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1 };
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_WANTED);
    kxt_server_flight_out(&p);
    /* Between the plaintext ServerHello and the protected records. */
    uint8_t type;
    size_t len;
    long off = kxt_record_offset(&p.s2c, 1, &type, &len);
    assert_true(off > 0);
    /* A server in compatibility mode sent its own there already: one per
     * flight is what is tolerated (a second is refused, see
     * test_change_cipher_spec_once_per_flight). */
    if (type != KX_CT_CHANGE_CIPHER_SPEC) wire_insert(&p.s2c, (size_t)off, ccs, sizeof ccs);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);

    /* Before the client's Finished (the server's receive keys are already in use). */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_DONE);
    kxt_move_out(p.c, &p.c2s);
    wire_insert(&p.c2s, 0, ccs, sizeof ccs);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_send_recv(&p, true, "ok", 2);

    /* After the handshake it is an unexpected message. */
    kx_buf_reset(&p.c2s);
    assert_false(kx_failed(kx_write_bytes(&p.c2s, ccs, sizeof ccs)));
    kxt_deliver(p.s, &p.c2s);
    uint8_t tmp[4];
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);
}

/* Before any hello a change_cipher_spec cannot be a compatibility one (RFC
 * 8446 §5): the server refuses it ahead of the ClientHello. */
static void test_change_cipher_spec_before_hello(void **state)
{
    (void)state;
    static const uint8_t ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1 };
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    wire_insert(&p.c2s, 0, ccs, sizeof ccs);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);
}

/* The server's side of middlebox compatibility mode (RFC 8446 Appendix D.4):
 * a ClientHello with a non-empty legacy_session_id gets exactly one dummy
 * change_cipher_spec, right after the server's first handshake record — the
 * ServerHello, or the HelloRetryRequest (then not again after the second
 * ServerHello).  An empty session ID gets none. */
static void assert_record(const kx_buf *w, size_t idx, uint8_t want_type, uint8_t hs_type)
{
    uint8_t type;
    size_t len;
    long off = kxt_record_offset(w, idx, &type, &len);
    if (off < 0) fail_msg("record %zu missing", idx);
    if (type != want_type) fail_msg("record %zu has type %u, expected %u", idx, type, want_type);
    if (want_type == KX_CT_CHANGE_CIPHER_SPEC) {
        assert_int_equal(len, 1);
        assert_int_equal(w->data[off + 5], 1);
    }
    if (hs_type) assert_int_equal(w->data[off + 5], hs_type);
}

static void test_server_compat_change_cipher_spec(void **state)
{
    (void)state;
    /* ServerHello, then the CCS, then the protected flight. */
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_WANTED);
    kxt_client_hello_out(&p);
    assert_int_equal(p.c2s.data[9 + 2 + 32], 32); /* our client runs in compatibility mode */
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_WANT_READ);
    kxt_move_out(p.s, &p.s2c);
    assert_record(&p.s2c, 0, KX_CT_HANDSHAKE, KX_HS_SERVER_HELLO);
    assert_record(&p.s2c, 1, KX_CT_CHANGE_CIPHER_SPEC, 0);
    assert_record(&p.s2c, 2, KX_CT_APPLICATION_DATA, 0);
    assert_int_equal(kxt_count_records_of_type(&p.s2c, KX_CT_CHANGE_CIPHER_SPEC), 1);
    kxt_pump(&p); /* the client reads past it, record by record */
    kxt_assert_done(&p);
    kxt_send_recv(&p, true, "compat", 6);
    kxt_pair_free(&p);

    /* HelloRetryRequest, then the CCS; the second ServerHello has none after it. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519,P-256"), kxt_server_cfg("ecdsa", NULL, "P-256"), "localhost",
                   KXT_FEED_WANTED);
    kxt_server_flight_out(&p);
    assert_true(p.s->hrr);
    assert_int_equal(kxt_count_records(&p.s2c), 2);
    assert_record(&p.s2c, 0, KX_CT_HANDSHAKE, KX_HS_SERVER_HELLO);
    assert_record(&p.s2c, 1, KX_CT_CHANGE_CIPHER_SPEC, 0);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_WANT_READ);
    kxt_move_out(p.c, &p.c2s);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_WANT_READ);
    kxt_move_out(p.s, &p.s2c);
    assert_record(&p.s2c, 0, KX_CT_HANDSHAKE, KX_HS_SERVER_HELLO);
    assert_record(&p.s2c, 1, KX_CT_APPLICATION_DATA, 0);
    assert_int_equal(kxt_count_records_of_type(&p.s2c, KX_CT_CHANGE_CIPHER_SPEC), 0);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);

    /* An empty legacy_session_id: no compatibility mode, no CCS. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    kxt_client_hello_set_session_id(&p.c2s, NULL, 0);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_WANT_READ);
    kxt_move_out(p.s, &p.s2c);
    assert_record(&p.s2c, 0, KX_CT_HANDSHAKE, KX_HS_SERVER_HELLO);
    assert_record(&p.s2c, 1, KX_CT_APPLICATION_DATA, 0);
    assert_int_equal(kxt_count_records_of_type(&p.s2c, KX_CT_CHANGE_CIPHER_SPEC), 0);
    kxt_pair_free(&p);
}

/* RFC 8446 Appendix D.5: a ClientHello whose legacy_version is SSL 3.0
 * (0x0300) or older gets protocol_version, even though supported_versions
 * offers TLS 1.3 (or, to a TLS 1.2-only server, TLS 1.2).  0x0301 is what
 * many clients send and still leads to a ServerHello. */
static void hello_with_legacy_version(uint16_t legacy, uint16_t server_max, bool want_ok)
{
    kxt_pair p;
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_versions(sc, KTLSX_TLS12, server_max));
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_hello_has_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SUPPORTED_VERSIONS));
    kxt_put16(p.c2s.data + 9, legacy);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (want_ok) {
        if (p.sst != KTLSX_WANT_READ) fail_msg("legacy_version %#x: %s (%s)", legacy, kxt_status_name(p.sst), ktlsx_error(p.s));
        assert_int_equal(ktlsx_version(p.s), server_max);
    } else {
        kxt_assert_failed(&p, false, KX_ALERT_PROTOCOL_VERSION);
        /* The alert is all that goes out: no ServerHello ahead of it. */
        kxt_move_out(p.s, &p.s2c);
        assert_int_equal(kxt_count_records(&p.s2c), 1);
        assert_int_equal(p.s2c.data[0], KX_CT_ALERT);
    }
    kxt_pair_free(&p);
}

static void test_legacy_version_ssl3(void **state)
{
    (void)state;
    static const uint16_t refused[] = { 0x0300, 0x0200, 0x0002, 0x0000 };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        hello_with_legacy_version(refused[i], KTLSX_TLS13, false);
        hello_with_legacy_version(refused[i], KTLSX_TLS12, false);
    }
    hello_with_legacy_version(0x0301, KTLSX_TLS13, true);
    hello_with_legacy_version(0x0301, KTLSX_TLS12, true);
}

/* Long lists are read to the end (RFC 8446 §4.2.3, §4.2.7): 40 unknown
 * groups before x25519 and 30 unknown schemes before ecdsa_secp256r1_sha256
 * (as GREASE-heavy or future clients send) still find the group of the key
 * share and the certificate.  The edit changes the transcript, so the test
 * stops at the server's flight: the ServerHello and the choices it made. */
static size_t long_list(uint8_t *b, size_t unknown, uint16_t first_unknown, uint16_t last)
{
    size_t n = 2;
    for (size_t i = 0; i < unknown; i++) {
        uint16_t v = (uint16_t)(first_unknown + i);
        b[n++] = (uint8_t)(v >> 8);
        b[n++] = (uint8_t)v;
    }
    b[n++] = (uint8_t)(last >> 8);
    b[n++] = (uint8_t)last;
    kxt_put16(b, n - 2);
    return n;
}

static void test_long_hello_lists(void **state)
{
    (void)state;
    uint8_t groups[2 + 2 * 41], sigalgs[2 + 2 * 31];
    /* 0x0a0a.. (GREASE-like) and 0x0700.. are no groups or schemes we know. */
    size_t glen = long_list(groups, 40, 0x0a0a, KX_GROUP_X25519);
    size_t slen = long_list(sigalgs, 30, 0x0700, KX_SIG_ECDSA_SECP256R1_SHA256);
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519"), kxt_server_cfg("ecdsa", NULL, "x25519,P-256"), "localhost",
                   KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_replace_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SUPPORTED_GROUPS, groups, glen));
    assert_true(kxt_replace_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SIGNATURE_ALGORITHMS, sigalgs, slen));
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (p.sst != KTLSX_WANT_READ) fail_msg("server: %s (%s, alert %u)", kxt_status_name(p.sst), ktlsx_error(p.s), ktlsx_alert(p.s));
    assert_false(p.s->hrr); /* the share the client sent was found usable */
    assert_int_equal(p.s->group, KX_GROUP_X25519);
    assert_int_equal(p.s->our_sigalg, KX_SIG_ECDSA_SECP256R1_SHA256);
    kxt_pair_free(&p);

    /* With no usable entry at all, the failure names the real reason. */
    slen = long_list(sigalgs, 30, 0x0700, 0x0701);
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519"), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_replace_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SIGNATURE_ALGORITHMS, sigalgs, slen));
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    kxt_assert_failed(&p, false, KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);
}

/* Empty handshake and alert records are unexpected messages (RFC 8446 §5.1). */
static void test_empty_records(void **state)
{
    (void)state;
    static const uint8_t empty[2][5] = { { KX_CT_HANDSHAKE, 3, 3, 0, 0 }, { KX_CT_ALERT, 3, 3, 0, 0 } };
    for (size_t i = 0; i < 2; i++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost",
                       KXT_FEED_ALL);
        kxt_client_hello_out(&p);
        wire_insert(&p.c2s, 0, empty[i], sizeof empty[i]);
        kxt_pump(&p);
        kxt_assert_failed(&p, false, KX_ALERT_UNEXPECTED_MESSAGE);
        kxt_pair_free(&p);
    }
}

/* Nothing may stand between the fragments of one handshake message (RFC
 * 8446 §5.1): a KeyUpdate split around an application data record. */
static void test_interleaved_handshake_fragments(void **state)
{
    (void)state;
    kxt_pair p;
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0)); /* before the connection: it is in use afterwards */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    static const uint8_t key_update[5] = { KX_HS_KEY_UPDATE, 0, 0, 1, 0 };
    kx_buf w = { 0 };
    assert_false(kx_failed(kx_record_write(&p.s->tx, KX_CT_HANDSHAKE, key_update, 2, &w)));
    assert_false(kx_failed(kx_record_write(&p.s->tx, KX_CT_APPLICATION_DATA, (const uint8_t *)"x", 1, &w)));
    assert_false(kx_failed(kx_record_write(&p.s->tx, KX_CT_HANDSHAKE, key_update + 2, 3, &w)));
    kxt_deliver(p.c, &w);
    uint8_t buf[16];
    long last;
    size_t n = kxt_drain_read(p.c, buf, sizeof buf, &last);
    assert_int_equal(n, 0);
    assert_int_equal(last, -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_UNEXPECTED_MESSAGE);
    kx_buf_free(&w);
    kxt_pair_free(&p);
}

/* The CertificateRequest context is empty in the main handshake (RFC 8446
 * §4.3.2); only post-handshake requests carry one. */
static void test_certificate_request_context(void **state)
{
    (void)state;
    /* context, then extensions: signature_algorithms = { ecdsa_secp256r1_sha256 } */
    static const uint8_t with_context[] = { 1, 0xaa, 0, 10, 0, 13, 0, 6, 0, 4, 4, 3, 8, 4 };
    static const uint8_t empty_context[] = { 0, 0, 10, 0, 13, 0, 6, 0, 4, 4, 3, 8, 4 };
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    p.c->version = KTLSX_TLS13;
    kx_reader r = kx_reader_of(with_context, sizeof with_context);
    kx_result res = kx_certificate_request_handle(p.c, &r);
    assert_true(kx_failed(res));
    assert_int_equal(res.alert, KX_ALERT_ILLEGAL_PARAMETER);
    r = kx_reader_of(empty_context, sizeof empty_context);
    assert_false(kx_failed(kx_certificate_request_handle(p.c, &r)));
    assert_int_equal(p.c->peer_sigalg_count, 2);
    kxt_pair_free(&p);
}

/* Add an empty early_data extension at the end of the ClientHello that is
 * the only record on `w` (our client sends no pre_shared_key here, which
 * would have to stay last). */
static void offer_early_data(kx_buf *w)
{
    static const uint8_t ext[4] = { 0, KX_EXT_TYPE_EARLY_DATA, 0, 0 };
    assert_int_equal(kxt_count_records(w), 1);
    size_t at = 5 + 4 + 2 + 32;               /* record, message header, version, random */
    at += 1 + w->data[at];                    /* session id */
    at += 2 + kxt_get16(w->data + at);        /* cipher suites */
    at += 1 + w->data[at];                    /* compression */
    assert_int_equal(at + 2 + kxt_get16(w->data + at), w->len); /* extensions run to the end */
    kxt_put16(w->data + at, kxt_get16(w->data + at) + sizeof ext);
    kxt_put24(w->data + 6, kxt_get24(w->data + 6) + sizeof ext);
    kxt_put16(w->data + 3, kxt_get16(w->data + 3) + sizeof ext);
    assert_false(kx_failed(kx_write_bytes(w, ext, sizeof ext)));
}

/* `count` protected-looking records of `len` bytes that no key opens: what
 * 0-RTT data looks like to a server that did not accept it. */
static void add_opaque_records(kx_buf *w, size_t count, size_t len)
{
    uint8_t body[16384 + 256];
    assert_true(len <= sizeof body);
    for (size_t i = 0; i < sizeof body; i++) body[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < count; i++) {
        uint8_t hdr[5] = { KX_CT_APPLICATION_DATA, 3, 3, 0, 0 };
        kxt_put16(hdr + 3, len);
        assert_false(kx_failed(kx_write_bytes(w, hdr, sizeof hdr)));
        assert_false(kx_failed(kx_write_bytes(w, body, len)));
    }
}

/* A server that does not accept 0-RTT skips the client's early data (RFC
 * 8446 §4.2.10) instead of failing on it, up to a bound; without an
 * early_data offer the same records are bad_record_mac.  (Editing the hello
 * desynchronises the transcripts, so only the server's side is followed: it
 * must get as far as waiting for the client's Finished.) */
static void test_rejected_early_data_skipped(void **state)
{
    (void)state;
    static const uint8_t ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1 };
    struct {
        bool offer, ccs_first;
        size_t count, len;
        int status;
        uint8_t alert;
    } cases[] = {
        { true, false, 2, 200, KTLSX_WANT_READ, 0 },
        { true, true, 2, 200, KTLSX_WANT_READ, 0 },
        { true, false, 2, 16384 + 256, KTLSX_WANT_READ, 0 },
        { true, false, 3, 16384 + 256, KTLSX_FAILED, KX_ALERT_BAD_RECORD_MAC }, /* over KX_MAX_SKIPPED_EARLY_DATA */
        { false, false, 1, 200, KTLSX_FAILED, KX_ALERT_BAD_RECORD_MAC },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost",
                       KXT_FEED_ALL);
        kxt_client_hello_out(&p);
        if (cases[i].offer) offer_early_data(&p.c2s);
        /* What OpenSSL sends in compatibility mode: hello, CCS, early data (RFC 8446 D.4). */
        if (cases[i].ccs_first) assert_false(kx_failed(kx_write_bytes(&p.c2s, ccs, sizeof ccs)));
        add_opaque_records(&p.c2s, cases[i].count, cases[i].len);
        kxt_deliver(p.s, &p.c2s);
        p.sst = ktlsx_handshake(p.s);
        assert_int_equal(p.sst, cases[i].status);
        assert_int_equal(ktlsx_alert(p.s), cases[i].alert);
        kxt_pair_free(&p);
    }

    /* After a HelloRetryRequest there is no receive key yet: every protected
     * record before the second ClientHello is skipped, and that hello may
     * not offer early data again. */
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519,P-256"), kxt_server_cfg("ecdsa", NULL, "P-256"), "localhost",
                   KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    offer_early_data(&p.c2s);
    add_opaque_records(&p.c2s, 1, 300);
    add_opaque_records(&p.c2s, 1, 16384 + 256); /* full-size: judged by its header, never opened */
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_WANT_READ);
    kxt_move_out(p.s, &p.s2c); /* the HelloRetryRequest */
    assert_true(p.s->hrr);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    kxt_move_out(p.c, &p.c2s); /* second ClientHello */
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_WANT_READ); /* ServerHello..Finished sent, waiting for the client */
    assert_int_equal(ktlsx_alert(p.s), 0);
    kxt_pair_free(&p);
}

/* A server with RSA, ECDSA and Ed25519 certificates picks by the client's
 * signature_algorithms preference (ECDSA first in ours). */
static void test_multi_cert_server(void **state)
{
    (void)state;
    ktlsx_config *sc = kxt_server_cfg("rsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("server-ed25519.pem"), kxt_pki_path("server-ed25519.key")));
    KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key")));
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(p.s->our_sigalg, KX_SIG_ECDSA_SECP256R1_SHA256);
    assert_int_equal(p.c->peer_sigalg, KX_SIG_ECDSA_SECP256R1_SHA256);
    assert_ptr_equal(p.s->our_cert, &sc->certs[2]);
    kxt_pair_free(&p);
}

/* ------------------------------------------------------------- API edges */

static void test_api_edges(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    uint8_t tmp[8];
    const uint8_t *d;
    assert_int_equal(ktlsx_pending_output(p.c, &d), 0);
    /* Application data calls before the handshake. */
    assert_int_equal(ktlsx_write(p.c, "x", 1), -1);
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), 0);
    assert_string_equal(ktlsx_cipher_name(p.c), "-");
    assert_string_equal(ktlsx_group_name(p.c), "-");
    assert_string_equal(ktlsx_version_name(p.c), "-");
    assert_null(ktlsx_alpn(p.c));
    /* SNI override: sent instead of the verification name. */
    assert_int_equal(ktlsx_conn_set_sni(p.c, "10.0.0.1"), -1);
    assert_int_equal(ktlsx_conn_set_sni(p.c, "sni.example"), 0);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_string_equal(ktlsx_sni(p.s), "sni.example");
    /* A zero-length write is a no-op. */
    assert_int_equal(ktlsx_write(p.c, "", 0), 0);
    assert_int_equal(ktlsx_pending_output(p.c, &d), 0);
    /* Partial reads of one record. */
    assert_int_equal(ktlsx_write(p.c, "0123456789", 10), 0);
    kxt_move_out(p.c, &p.c2s);
    kxt_deliver(p.s, &p.c2s);
    assert_int_equal(ktlsx_read(p.s, tmp, 4), 4);
    assert_memory_equal(tmp, "0123", 4);
    assert_int_equal(ktlsx_read(p.s, tmp, 8), 6);
    assert_memory_equal(tmp, "456789", 6);
    assert_int_equal(ktlsx_read(p.s, tmp, 8), 0);
    /* Output consumed in pieces (a short socket write). */
    assert_int_equal(ktlsx_write(p.s, "abcdef", 6), 0);
    size_t total = ktlsx_pending_output(p.s, &d);
    assert_true(total > 3);
    ktlsx_output_done(p.s, 3);
    assert_int_equal(ktlsx_pending_output(p.s, &d), total - 3);
    kxt_pair_free(&p);
}

/* ktlsx_take_buffered before any input arrived: nothing to hand back.  (Kept
 * last: under UBSan a failure here aborts the program.) */
static void test_take_buffered_before_input(void **state)
{
    (void)state;
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_conn *s = ktlsx_conn_new(sc, NULL);
    assert_non_null(s);
    uint8_t tmp[8];
    assert_int_equal(ktlsx_take_buffered(s, tmp, sizeof tmp), 0);
    ktlsx_conn_free(s);
    ktlsx_config_free(sc);
}

/* ------------------------------------------------------------------ main */

/* The bytes ktlsx_pending_output lends stay put and unchanged until
 * ktlsx_output_done, while more input is fed and more output queued (an
 * io_uring send may still be reading them); what was queued meanwhile comes
 * next, in order. */
static void test_pending_output_lifetime(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    /* The server has data out "on the wire" (lent, not yet acknowledged). */
    static uint8_t big[40000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    assert_int_equal(ktlsx_write(p.s, big, sizeof big), 0);
    const uint8_t *lent;
    size_t lent_len = ktlsx_pending_output(p.s, &lent);
    assert_true(lent_len > sizeof big);
    uint8_t *copy = malloc(lent_len);
    assert_non_null(copy);
    memcpy(copy, lent, lent_len);
    /* Meanwhile: the client asks for a KeyUpdate; feeding it makes the server
     * queue its answer, and the server writes more. */
    assert_int_equal(ktlsx_key_update(p.c, 1), 0);
    kxt_move_out(p.c, &p.c2s);
    kxt_deliver(p.s, &p.c2s);
    uint8_t tmp[16];
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), 0);
    assert_int_equal(ktlsx_write(p.s, big, sizeof big), 0);
    /* Same pointer, same bytes, same count. */
    const uint8_t *again;
    assert_int_equal(ktlsx_pending_output(p.s, &again), lent_len);
    assert_ptr_equal(again, lent);
    assert_memory_equal(lent, copy, lent_len);
    /* Now acknowledge it in two steps; then the queued records follow. */
    kx_result r = kx_write_bytes(&p.s2c, lent, 100);
    assert_false(kx_failed(r));
    ktlsx_output_done(p.s, 100);
    kxt_move_out(p.s, &p.s2c);
    assert_memory_equal(p.s2c.data, copy, lent_len);
    assert_true(p.s2c.len > lent_len);
    free(copy);
    /* The client reads both writes, in order, across the server's KeyUpdate. */
    kxt_deliver(p.c, &p.s2c);
    static uint8_t got[2 * sizeof big];
    size_t n = 0;
    long k;
    while ((k = ktlsx_read(p.c, got + n, sizeof got - n)) > 0) n += (size_t)k;
    assert_int_equal(n, 2 * sizeof big);
    assert_memory_equal(got, big, sizeof big);
    assert_memory_equal(got + sizeof big, big, sizeof big);
    kxt_pair_free(&p);
}

/* ---- conf-b: lengths before contents (RFC 8446 §6.2), one compatibility CCS per flight (§5) ---- */

/* Rewrite the protected flight at the end of `w` (records from index `first`
 * on, all handshake records under `secret` from sequence 0): the message of
 * type hs_type grows by `grow` bytes (zeros; the signature vector of a
 * CertificateVerify grows with it when sig_vec) or loses -grow, and its first
 * body byte is flipped when `flip`; then the flight is sealed again. */
static void reseal_flight(kx_buf *w, size_t first, const kx_suite *suite, const uint8_t *secret, uint8_t hs_type,
                          int grow, bool flip, bool sig_vec)
{
    uint8_t type;
    size_t len;
    long off = kxt_record_offset(w, first, &type, &len);
    assert_true(off >= 0);
    assert_int_equal(type, KX_CT_APPLICATION_DATA);
    uint8_t key[KX_MAX_KEY], iv[KX_AEAD_NONCE];
    assert_false(kx_failed(kx_tls13_traffic_keys(suite->hash, secret, suite->key_len, key, iv)));
    kx_record_dir rd = { 0 }, wd = { 0 };
    assert_false(kx_failed(kx_record_set_keys(&rd, KTLSX_TLS13, suite, key, iv)));
    assert_false(kx_failed(kx_record_set_keys(&wd, KTLSX_TLS13, suite, key, iv)));
    kx_wipe(key, sizeof key);
    kx_wipe(iv, sizeof iv);
    kx_buf hs = { 0 }, edited = { 0 };
    for (size_t pos = (size_t)off; pos < w->len;) {
        size_t rl = 5 + kxt_get16(w->data + pos + 3);
        uint8_t t, *plain;
        size_t pl;
        assert_false(kx_failed(kx_record_read(&rd, w->data + pos, rl, &t, &plain, &pl)));
        assert_int_equal(t, KX_CT_HANDSHAKE);
        assert_false(kx_failed(kx_write_bytes(&hs, plain, pl)));
        pos += rl;
    }
    size_t m = 0;
    while (m + 4 <= hs.len && hs.data[m] != hs_type) m += 4 + kxt_get24(hs.data + m + 1);
    assert_true(m + 4 <= hs.len);
    size_t body = kxt_get24(hs.data + m + 1), end = m + 4 + body;
    size_t new_body = (size_t)((long)body + grow);
    assert_false(kx_failed(kx_write_bytes(&edited, hs.data, m + 4 + (grow < 0 ? new_body : body))));
    for (int i = 0; i < grow; i++) assert_false(kx_failed(kx_write_u8(&edited, 0)));
    kxt_put24(edited.data + m + 1, new_body);
    if (sig_vec) kxt_put16(edited.data + m + 4 + 2, new_body - 4); /* sigalg(2) + length(2) + signature */
    if (flip) edited.data[m + 4] ^= 0x01;
    assert_false(kx_failed(kx_write_bytes(&edited, hs.data + end, hs.len - end)));
    w->len = (size_t)off;
    assert_false(kx_failed(kx_record_write(&wd, KX_CT_HANDSHAKE, edited.data, edited.len, w)));
    kx_record_clear(&rd);
    kx_record_clear(&wd);
    kx_buf_free(&hs);
    kx_buf_free(&edited);
}

/* Index of the first protected record on `w`. */
static size_t first_protected(const kx_buf *w)
{
    uint8_t type;
    size_t len;
    for (size_t i = 0; kxt_record_offset(w, i, &type, &len) >= 0; i++)
        if (type == KX_CT_APPLICATION_DATA) return i;
    fail_msg("no protected record");
    return 0;
}

/* The client's Finished, edited on its way to the server. */
static void client_finished_case(int grow, bool flip, uint8_t alert)
{
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_DONE);
    kxt_move_out(p.c, &p.c2s);
    reseal_flight(&p.c2s, first_protected(&p.c2s), p.s->suite, p.s->ks.c_hs, KX_HS_FINISHED, grow, flip, false);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    kxt_assert_failed(&p, false, alert);
    kxt_pair_free(&p);
}

static void test_finished_length_before_contents(void **state)
{
    (void)state;
    client_finished_case(1, true, KX_ALERT_DECODE_ERROR);   /* long and wrong: the length decides */
    client_finished_case(1, false, KX_ALERT_DECODE_ERROR);  /* right prefix, one byte too many */
    client_finished_case(-1, false, KX_ALERT_DECODE_ERROR); /* one byte short */
    client_finished_case(0, true, KX_ALERT_DECRYPT_ERROR);  /* right length, wrong value */
}

/* A CertificateVerify signature no key of the certificate's kind can make
 * (Ed25519: 64 bytes; RSA: the modulus size) is decode_error, not a failed check. */
static void test_certificate_verify_signature_length(void **state)
{
    (void)state;
    static const char *const certs[] = { "ed25519", "rsa" };
    for (size_t i = 0; i < 2; i++)
        for (int grow = -1; grow <= 1; grow += 2) {
            kxt_pair p;
            kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg(certs[i], NULL, NULL), "localhost",
                           KXT_FEED_ALL);
            kxt_server_flight_out(&p);
            reseal_flight(&p.s2c, first_protected(&p.s2c), p.s->suite, p.s->ks.s_hs, KX_HS_CERTIFICATE_VERIFY, grow,
                          false, true);
            kxt_deliver(p.c, &p.s2c);
            p.cst = ktlsx_handshake(p.c);
            kxt_assert_failed(&p, true, KX_ALERT_DECODE_ERROR);
            kxt_pair_free(&p);
        }
}

/* A compatibility change_cipher_spec is one byte, 0x01: another length is
 * decode_error, another value unexpected_message (RFC 8446 §5, §6.2). */
static void test_change_cipher_spec_length(void **state)
{
    (void)state;
    static const uint8_t long_ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 2, 1, 1 };
    static const uint8_t bad_ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 2 };
    for (int i = 0; i < 2; i++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
        kxt_server_flight_out(&p);
        uint8_t type;
        size_t len;
        long off = kxt_record_offset(&p.s2c, 1, &type, &len);
        assert_true(off > 0);
        if (i == 0)
            wire_insert(&p.s2c, (size_t)off, long_ccs, sizeof long_ccs);
        else
            wire_insert(&p.s2c, (size_t)off, bad_ccs, sizeof bad_ccs);
        kxt_pump(&p);
        kxt_assert_failed(&p, true, i == 0 ? KX_ALERT_DECODE_ERROR : KX_ALERT_UNEXPECTED_MESSAGE);
        kxt_pair_free(&p);
    }
}

/* One dummy change_cipher_spec per flight (RFC 8446 §5): a second one in the
 * same flight is unexpected_message, from either side; one in each flight
 * around a HelloRetryRequest is fine. */
static void test_change_cipher_spec_once_per_flight(void **state)
{
    (void)state;
    static const uint8_t ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1 };
    /* Server flight: two after the ServerHello (three with the server's own, D.4). */
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_WANTED);
    kxt_server_flight_out(&p);
    uint8_t type;
    size_t len;
    long off = kxt_record_offset(&p.s2c, 1, &type, &len);
    assert_true(off > 0);
    wire_insert(&p.s2c, (size_t)off, ccs, sizeof ccs);
    wire_insert(&p.s2c, (size_t)off, ccs, sizeof ccs);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);

    /* Client flight: two before its Finished. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_DONE);
    kxt_move_out(p.c, &p.c2s);
    wire_insert(&p.c2s, 0, ccs, sizeof ccs);
    wire_insert(&p.c2s, 0, ccs, sizeof ccs);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    kxt_assert_failed(&p, false, KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);

    /* A thousand in a row: refused at the second, not skipped one by one. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    off = kxt_record_offset(&p.s2c, 1, &type, &len);
    for (int i = 0; i < 1000; i++) wire_insert(&p.s2c, (size_t)off, ccs, sizeof ccs);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);

    /* HelloRetryRequest (RFC 8446 D.4): the server's CCS after it and the
     * client's before its second ClientHello are one each. */
    kxt_pair_start(&p, kxt_client_cfg(NULL, "x25519,P-256"), kxt_server_cfg("ecdsa", NULL, "P-256"), "localhost",
                   KXT_FEED_ALL);
    kxt_server_flight_out(&p); /* the HelloRetryRequest */
    assert_true(p.s->hrr);
    /* The server's own compatibility CCS follows the HelloRetryRequest (D.4); else add it. */
    size_t nrec = kxt_count_records(&p.s2c);
    assert_true(kxt_record_offset(&p.s2c, nrec - 1, &type, &len) >= 0);
    if (type != KX_CT_CHANGE_CIPHER_SPEC) assert_false(kx_failed(kx_write_bytes(&p.s2c, ccs, sizeof ccs)));
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_WANT_READ);
    kxt_move_out(p.c, &p.c2s);
    wire_insert(&p.c2s, 0, ccs, sizeof ccs); /* the client's, before its second ClientHello */
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);
}

/* ---- conf-b: handshake messages above 64 KiB, up to the configured maximum ---- */

/* The client's ClientHello (one record on c2s) made larger, as a legal one
 * can be: `extra_suites` unknown cipher suites ahead of the real ones and a
 * padding extension (RFC 7685) of `pad` bytes first among the extensions;
 * then split into records of 2^14.  The client's transcript follows, so the
 * handshake can complete. */
static void inflate_client_hello(kxt_pair *p, size_t extra_suites, size_t pad)
{
    kx_buf *w = &p->c2s;
    assert_int_equal(w->data[0], KX_CT_HANDSHAKE);
    const uint8_t *m = w->data + 5;
    size_t msg_len = 4 + kxt_get24(m + 1);
    assert_int_equal(w->len, 5 + msg_len);
    size_t at = 4 + 2 + 32;
    at += 1 + m[at];                        /* legacy_session_id */
    size_t suites_len = kxt_get16(m + at);
    size_t after_suites = at + 2 + suites_len;
    size_t ext_at = after_suites + 1 + m[after_suites]; /* compression methods */
    size_t ext_len = kxt_get16(m + ext_at);
    assert_true(suites_len + 2 * extra_suites <= 65534 && ext_len + 4 + pad <= 65535);
    kx_buf msg = { 0 };
    assert_false(kx_failed(kx_write_bytes(&msg, m, at)));
    assert_false(kx_failed(kx_write_u16(&msg, (uint16_t)(suites_len + 2 * extra_suites))));
    for (size_t i = 0; i < extra_suites; i++) assert_false(kx_failed(kx_write_u16(&msg, 0xeeee)));
    assert_false(kx_failed(kx_write_bytes(&msg, m + at + 2, ext_at - (at + 2))));
    assert_false(kx_failed(kx_write_u16(&msg, (uint16_t)(ext_len + 4 + pad))));
    assert_false(kx_failed(kx_write_u16(&msg, 21))); /* padding */
    assert_false(kx_failed(kx_write_u16(&msg, (uint16_t)pad)));
    for (size_t i = 0; i < pad; i++) assert_false(kx_failed(kx_write_u8(&msg, 0)));
    assert_false(kx_failed(kx_write_bytes(&msg, m + ext_at + 2, msg_len - (ext_at + 2))));
    kxt_put24(msg.data + 1, msg.len - 4);
    kx_buf_reset(&p->c->transcript.pending);
    assert_null(p->c->transcript.ctx);
    assert_false(kx_failed(kx_transcript_add(&p->c->transcript, msg.data, msg.len)));
    kx_buf_reset(w);
    for (size_t off = 0; off < msg.len;) {
        size_t n = msg.len - off < 16384 ? msg.len - off : 16384;
        uint8_t hdr[5] = { KX_CT_HANDSHAKE, 3, 1, 0, 0 };
        kxt_put16(hdr + 3, n);
        assert_false(kx_failed(kx_write_bytes(w, hdr, sizeof hdr)));
        assert_false(kx_failed(kx_write_bytes(w, msg.data + off, n)));
        off += n;
    }
    kx_buf_free(&msg);
}

static void test_large_client_hello(void **state)
{
    (void)state;
    /* About 78 KiB: accepted by default (128 KiB), in both feeding modes. */
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost",
                       (enum kxt_feed_mode)mode);
        kxt_client_hello_out(&p);
        inflate_client_hello(&p, 20000, 40000);
        assert_true(p.c2s.len > 76 * 1024);
        kxt_pump(&p);
        kxt_assert_done(&p);
        kxt_send_recv(&p, true, "big hello", 9);
        kxt_pair_free(&p);
    }
    /* With a 64 KiB maximum: illegal_parameter as soon as the header says
     * so (OpenSSL's "excessive message size"), before the body is buffered. */
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_max_handshake_message(sc, 64 * 1024));
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), sc, "localhost", KXT_FEED_WANTED);
    kxt_client_hello_out(&p);
    inflate_client_hello(&p, 20000, 40000);
    uint8_t first[5 + 16384];
    memcpy(first, p.c2s.data, sizeof first);
    assert_int_equal(ktlsx_input(p.s, first, sizeof first), 0); /* the first record only */
    p.sst = ktlsx_handshake(p.s);
    kxt_assert_failed(&p, false, KX_ALERT_ILLEGAL_PARAMETER);
    assert_true(p.s->hs_in.len <= 16384);
    kxt_pair_free(&p);
    /* Near the largest legal ClientHello (~128 KiB) with a 16 MiB maximum. */
    sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_max_handshake_message(sc, 16 * 1024 * 1024));
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    inflate_client_hello(&p, 32000, 65000);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);
}

/* ---- conf-b: the name verified is the one meant to be reached (RFC 6125 §6) ---- */

static void verify_name_case(const char *host, const char *sni, const char *verify, bool ok)
{
    kxt_pair p;
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("rsa", NULL, NULL), host, KXT_FEED_ALL);
    if (sni) assert_int_equal(ktlsx_conn_set_sni(p.c, sni), 0);
    if (verify) assert_int_equal(ktlsx_conn_set_verify_name(p.c, verify), 0);
    kxt_pump(&p);
    if (ok) {
        kxt_assert_done(&p);
    } else {
        kxt_assert_failed(&p, true, KX_ALERT_BAD_CERTIFICATE);
    }
    /* The SNI sent never follows the verified name. */
    assert_string_equal(ktlsx_sni(p.s), sni ? sni : (host[0] == '1' ? "" : host));
    kxt_pair_free(&p);
}

static void test_verify_name(void **state)
{
    (void)state;
    /* The certificate lists localhost and 127.0.0.1. */
    verify_name_case("127.0.0.1", "other-name", NULL, true);          /* set_sni alone keeps its meaning */
    verify_name_case("127.0.0.1", "other-name", "other-name", false); /* what `--sni other-name` now does */
    verify_name_case("127.0.0.1", "localhost", "localhost", true);
    verify_name_case("example.invalid", NULL, "localhost", true);
    verify_name_case("localhost", NULL, "example.invalid", false);
    verify_name_case("example.invalid", "example.invalid", "127.0.0.1", true); /* an IP literal verified */
    verify_name_case("localhost", NULL, "127.0.0.2", false);

    /* Refused: NULL, empty, too long, a server connection, after the start. */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("rsa", NULL, NULL);
    ktlsx_conn *c = ktlsx_conn_new(cc, "localhost"), *s = ktlsx_conn_new(sc, NULL);
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    assert_int_equal(ktlsx_conn_set_verify_name(NULL, "x"), -1);
    assert_int_equal(ktlsx_conn_set_verify_name(c, NULL), -1);
    assert_int_equal(ktlsx_conn_set_verify_name(c, ""), -1);
    assert_int_equal(ktlsx_conn_set_verify_name(c, long_name), -1);
    assert_int_equal(ktlsx_conn_set_verify_name(s, "localhost"), -1);
    assert_int_equal(ktlsx_conn_set_verify_name(c, "localhost"), 0);
    assert_int_equal(ktlsx_handshake(c), KTLSX_WANT_READ);
    assert_int_equal(ktlsx_conn_set_verify_name(c, "localhost"), -1);
    ktlsx_conn_free(c);
    ktlsx_conn_free(s);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* ---- conf-b: TLS_AES_128_CCM_SHA256, off by default, selectable ---- */
static void test_aes128_ccm(void **state)
{
    (void)state;
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg("TLS_AES_128_CCM_SHA256", NULL),
                       kxt_server_cfg("ecdsa", "TLS_AES_128_CCM_SHA256,TLS_AES_128_GCM_SHA256", NULL), "localhost",
                       (enum kxt_feed_mode)mode);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_string_equal(ktlsx_cipher_name(p.c), "TLS_AES_128_CCM_SHA256");
        assert_int_equal(ktlsx_cipher_id(p.s), 0x1304);
        kxt_exchange(&p, 40000); /* several records each way */
        struct ktlsx_traffic_keys k;
        assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &k), 0);
        assert_int_equal(k.cipher_suite, 0x1304);
        assert_int_equal(k.key_len, 16);
        assert_int_equal(k.iv_len, 12);
        kx_wipe(&k, sizeof k);
        kxt_pair_free(&p);
    }
    /* Not in the default list (as in OpenSSL's): a default client and a
     * CCM-only server have no suite in common. */
    ktlsx_config *d = kxt_client_cfg(NULL, NULL);
    assert_false(kx_list_has(d->suites, d->suite_count, 0x1304));
    kxt_pair p;
    kxt_pair_start(&p, d, kxt_server_cfg("ecdsa", "TLS_AES_128_CCM_SHA256", NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);
}

/* ---- conf-b: secp521r1 and x448 key shares, ECDSA P-521 and Ed448 certificates ---- */
static void test_p521_x448_ed448(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *groups, *group, *sigalg;
        bool tls12;
    } cases[] = {
        { "p521", "P-521", "secp521r1", "ecdsa_secp521r1_sha512", false },
        { "ed448", "x448", "x448", "ed448", false },
        { "p521", "x448", "x448", "ecdsa_secp521r1_sha512", false },
        { "ed448", "P-521", "secp521r1", "ed448", false },
        /* TLS 1.2 ECDHE_ECDSA: the certificate's curve must be among the client's groups (RFC 8422). */
        { "p521", "secp521r1", "secp521r1", NULL, true },
        { "ed448", "x448", "x448", NULL, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ktlsx_config *cc = kxt_client_cfg(NULL, cases[i].groups), *sc = kxt_server_cfg(cases[i].cert, NULL, NULL);
        if (cases[i].tls12) KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, KTLSX_TLS12, KTLSX_TLS12));
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_WANTED);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_string_equal(ktlsx_group_name(p.c), cases[i].group);
        assert_string_equal(ktlsx_group_name(p.s), cases[i].group);
        if (cases[i].sigalg) assert_string_equal(kx_sigalg_name(p.c->peer_sigalg), cases[i].sigalg);
        assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
        kxt_send_recv(&p, true, "p521/x448/ed448", 15);
        kxt_pair_free(&p);
    }
    /* A default client lists them too (last, without a key share): a server
     * that takes only one of them asks for it by HelloRetryRequest. */
    for (int g = 0; g < 2; g++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, g ? "x448" : "P-521"), "localhost",
                       KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_true(p.c->hrr); /* the first key share (x25519) was not taken */
        assert_string_equal(ktlsx_group_name(p.s), g ? "x448" : "secp521r1");
        kxt_pair_free(&p);
    }
}

static const char *const matrix_suites[] = { "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                             "TLS_CHACHA20_POLY1305_SHA256" };
static const char *const matrix_groups[][2] = { { "x25519", "x25519" }, { "P-256", "secp256r1" }, { "P-384", "secp384r1" } };
static const char *const matrix_certs[] = { "rsa", "ecdsa", "ed25519" };

int main(void)
{
    static combo combos[27];
    static char names[27][96];
    static struct CMUnitTest tests[72];
    size_t n = 0, k = 0;
    for (size_t s = 0; s < 3; s++)
        for (size_t g = 0; g < 3; g++)
            for (size_t c = 0; c < 3; c++, k++) {
                combos[k] = (combo){ matrix_suites[s], matrix_groups[g][0], matrix_groups[g][1], matrix_certs[c] };
                snprintf(names[k], sizeof names[k], "test_matrix/%s/%s/%s", matrix_suites[s], matrix_groups[g][1],
                         matrix_certs[c]);
                tests[n++] = (struct CMUnitTest){ names[k], test_matrix, NULL, NULL, &combos[k] };
            }
#define ADD(fn) tests[n++] = (struct CMUnitTest){ #fn, fn, NULL, NULL, NULL }
    ADD(test_hello_retry_request);
    ADD(test_mtls_require_with_cert);
    ADD(test_mtls_require_without_cert);
    ADD(test_mtls_optional_without_cert);
    ADD(test_mtls_untrusted_client_cert);
    ADD(test_verify_wrong_host);
    ADD(test_verify_unknown_ca);
    ADD(test_alpn);
    ADD(test_tamper_server_flight);
    ADD(test_tamper_client_finished);
    ADD(test_tamper_application_data);
    ADD(test_key_update);
    ADD(test_pending_output_lifetime);
    ADD(test_export_keys);
    ADD(test_keylog);
    ADD(test_garbage_input);
    ADD(test_mutated_client_hello);
    ADD(test_truncated_stream);
    ADD(test_input_wanted_counts);
    ADD(test_input_wanted_stops_at_handshake_end);
    ADD(test_fragmented_client_hello);
    ADD(test_compat_change_cipher_spec);
    ADD(test_change_cipher_spec_before_hello);
    ADD(test_server_compat_change_cipher_spec);
    ADD(test_legacy_version_ssl3);
    ADD(test_long_hello_lists);
    ADD(test_empty_records);
    ADD(test_interleaved_handshake_fragments);
    ADD(test_certificate_request_context);
    ADD(test_rejected_early_data_skipped);
    ADD(test_multi_cert_server);
    ADD(test_api_edges);
    ADD(test_take_buffered_before_input);
    /* conf-b */
    ADD(test_finished_length_before_contents);
    ADD(test_certificate_verify_signature_length);
    ADD(test_change_cipher_spec_length);
    ADD(test_change_cipher_spec_once_per_flight);
    ADD(test_large_client_hello);
    ADD(test_verify_name);
    ADD(test_aes128_ccm);
    ADD(test_p521_x448_ed448);
#undef ADD
    return _cmocka_run_group_tests("test_handshake", tests, n, kxt_pki_group_setup, kxt_pki_group_teardown);
}
