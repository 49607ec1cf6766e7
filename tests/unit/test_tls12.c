/* The TLS 1.2 handshake engine end to end (in-memory client/server pair):
 * every TLS 1.2 suite with its certificate type, mutual TLS, legacy RSA key
 * exchange, the message flow (--trace), and the attacks that need a man in
 * the middle: a stripped supported_versions (downgrade sentinel), a stripped
 * extended_master_secret (require_ems), a tampered Finished, TLS_FALLBACK_SCSV
 * and renegotiation attempts after the handshake. */
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
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

static ktlsx_config *client12(const char *suites, const char *groups)
{
    ktlsx_config *cfg = kxt_client_cfg(suites, groups);
    KXT_CFG_OK(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS12, KTLSX_TLS12));
    return cfg;
}

static ktlsx_config *server12(const char *cert, const char *suites, const char *groups)
{
    ktlsx_config *cfg = kxt_server_cfg(cert, suites, groups);
    KXT_CFG_OK(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS12, KTLSX_TLS12));
    return cfg;
}

static void close_both(kxt_pair *p)
{
    uint8_t tmp[16];
    assert_int_equal(ktlsx_close_notify(p->c), 0);
    kxt_move_out(p->c, &p->c2s);
    kxt_deliver(p->s, &p->c2s);
    assert_int_equal(ktlsx_read(p->s, tmp, sizeof tmp), -KTLSX_CLOSED);
    assert_int_equal(ktlsx_close_notify(p->s), 0);
    kxt_move_out(p->s, &p->s2c);
    kxt_deliver(p->c, &p->s2c);
    assert_int_equal(ktlsx_read(p->c, tmp, sizeof tmp), -KTLSX_CLOSED);
}

/* ---------------------------------------------------------- suite matrix */

typedef struct {
    const char *suite;      /* IANA name */
    const char *cert;       /* server-<cert> */
    const char *group;      /* configured on both sides */
    const char *group_name; /* as reported */
    bool client_both;       /* client offers 1.2 and 1.3 (server is 1.2-only) */
} combo12;

static void one_combo(const combo12 *m, enum kxt_feed_mode mode)
{
    kxt_pair p;
    ktlsx_config *cc = m->client_both ? kxt_client_cfg(NULL, m->group) : client12(m->suite, m->group);
    kxt_pair_start(&p, cc, server12(m->cert, m->suite, m->group), "localhost", mode);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.c), KTLSX_TLS12);
    assert_int_equal(ktlsx_version(p.s), KTLSX_TLS12);
    assert_string_equal(ktlsx_version_name(p.c), "TLSv1.2");
    assert_string_equal(ktlsx_version_name(p.s), "TLSv1.2");
    assert_string_equal(ktlsx_cipher_name(p.c), m->suite);
    assert_string_equal(ktlsx_cipher_name(p.s), m->suite);
    assert_int_equal(ktlsx_cipher_id(p.c), ktlsx_cipher_id(p.s));
    assert_string_equal(ktlsx_group_name(p.c), m->group_name);
    assert_string_equal(ktlsx_group_name(p.s), m->group_name);
    assert_int_equal(ktlsx_resumed(p.c), 0);
    assert_int_equal(ktlsx_resumed(p.s), 0);
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
    assert_string_equal(ktlsx_peer_subject(p.s), "");
    assert_string_equal(ktlsx_sni(p.s), "localhost");
    assert_string_equal(ktlsx_error(p.c), "");
    assert_string_equal(ktlsx_error(p.s), "");
    assert_true(p.c->ems);
    assert_true(p.s->ems);
    assert_int_equal(ktlsx_handshake(p.c), KTLSX_DONE);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_DONE);
    kxt_send_recv(&p, true, "ping", 4);
    kxt_send_recv(&p, false, "pong!", 5);
    kxt_exchange(&p, 100 * 1024);
    /* The kernel-TLS export describes TLS 1.2 keys. */
    struct ktlsx_traffic_keys k;
    assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &k), 0);
    assert_int_equal(k.version, KTLSX_TLS12);
    assert_int_equal(k.cipher_suite, ktlsx_cipher_id(p.c));
    close_both(&p);
    kxt_pair_free(&p);
}

static void test_suite(void **state)
{
    const combo12 *m = *state;
    one_combo(m, KXT_FEED_ALL);
    one_combo(m, KXT_FEED_WANTED);
}

/* -------------------------------------------------------------- trace */

static void test_trace_flow(void **state)
{
    (void)state;
    kxt_trace_buf ct, st;
    kxt_trace_open(&ct);
    kxt_trace_open(&st);
    kxt_pair p;
    ktlsx_config *cc = client12(NULL, NULL), *sc = server12("ecdsa", NULL, NULL);
    ktlsx_config_set_trace(cc, ct.f);
    ktlsx_config_set_trace(sc, st.f);
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    kxt_assert_done(&p);
    static const char *const lines[] = {
        "C->S ClientHello", "S->C ServerHello version=TLSv1.2", "S->C Certificate", "S->C ServerKeyExchange",
        "S->C ServerHelloDone", "C->S ClientKeyExchange", "C->S ChangeCipherSpec", "C->S Finished",
        "S->C NewSessionTicket", "S->C ChangeCipherSpec", "S->C Finished",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        kxt_trace_expect(&ct, lines[i]);
        kxt_trace_expect(&st, lines[i]);
    }
    kxt_trace_expect(&ct, "ems=1");
    kxt_pair_free(&p);
    kxt_trace_close(&ct);
    kxt_trace_close(&st);
}

/* ------------------------------------------------------------- mutual TLS */

static ktlsx_config *mtls_server12(const char *cert, enum ktlsx_verify_client mode)
{
    ktlsx_config *cfg = server12(cert, NULL, NULL);
    KXT_CFG_OK(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")));
    KXT_CFG_OK(cfg, ktlsx_config_set_verify_client(cfg, mode));
    return cfg;
}

static void test_mtls_require(void **state)
{
    (void)state;
    static const char *const certs[] = { "ecdsa", "rsa" };
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        for (size_t i = 0; i < 2; i++) {
            kxt_trace_buf ct;
            kxt_trace_open(&ct);
            ktlsx_config *cc = client12(NULL, NULL);
            KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
            ktlsx_config_set_trace(cc, ct.f);
            kxt_pair p;
            kxt_pair_start(&p, cc, mtls_server12(certs[i], KTLSX_VERIFY_REQUIRE), "localhost", (enum kxt_feed_mode)mode);
            kxt_pump(&p);
            kxt_assert_done(&p);
            assert_int_equal(ktlsx_version(p.s), KTLSX_TLS12);
            assert_non_null(strstr(ktlsx_peer_subject(p.s), "ktlsx-client"));
            assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
            kxt_trace_expect(&ct, "S->C CertificateRequest");
            kxt_trace_expect(&ct, "C->S Certificate");
            kxt_trace_expect(&ct, "C->S CertificateVerify");
            kxt_send_recv(&p, true, "authenticated", 13);
            kxt_send_recv(&p, false, "welcome", 7);
            kxt_pair_free(&p);
            kxt_trace_close(&ct);
        }
    }
}

static void test_mtls_require_without_cert(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), mtls_server12("ecdsa", KTLSX_VERIFY_REQUIRE), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(p.cst, KTLSX_FAILED);
    /* TLS 1.2 has no certificate_required: handshake_failure (RFC 5246 §7.4.6). */
    assert_true(ktlsx_alert(p.s) == KX_ALERT_HANDSHAKE_FAILURE || ktlsx_alert(p.s) == KX_ALERT_CERTIFICATE_REQUIRED);
    assert_int_equal(ktlsx_alert(p.c), ktlsx_alert(p.s));
    kxt_pair_free(&p);
}

static void test_mtls_optional_without_cert(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), mtls_server12("rsa", KTLSX_VERIFY_OPTIONAL), "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_string_equal(ktlsx_peer_subject(p.s), "");
    kxt_send_recv(&p, true, "anon", 4);
    kxt_pair_free(&p);
}

static void test_mtls_untrusted_client_cert(void **state)
{
    (void)state;
    ktlsx_config *cc = client12(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("other.pem"), kxt_pki_path("other.key")));
    kxt_pair p;
    kxt_pair_start(&p, cc, mtls_server12("ecdsa", KTLSX_VERIFY_REQUIRE), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_UNKNOWN_CA);
    assert_int_equal(p.cst, KTLSX_FAILED);
    kxt_pair_free(&p);
}

/* -------------------------------------------------------- legacy RSA kx */

static void test_legacy_rsa_kx(void **state)
{
    (void)state;
    static const char *const suites[] = { "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384" };
    for (size_t i = 0; i < 2; i++) {
        for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
            kxt_trace_buf ct;
            kxt_trace_open(&ct);
            ktlsx_config *cc = client12(suites[i], NULL), *sc = server12("rsa", suites[i], NULL);
            KXT_CFG_OK(cc, ktlsx_config_set_legacy_rsa_kx(cc, 1));
            KXT_CFG_OK(sc, ktlsx_config_set_legacy_rsa_kx(sc, 1));
            ktlsx_config_set_trace(cc, ct.f);
            kxt_pair p;
            kxt_pair_start(&p, cc, sc, "localhost", (enum kxt_feed_mode)mode);
            kxt_pump(&p);
            kxt_assert_done(&p);
            assert_string_equal(ktlsx_cipher_name(p.c), suites[i]);
            assert_string_equal(ktlsx_cipher_name(p.s), suites[i]);
            /* No ServerKeyExchange with RSA key transport. */
            fflush(ct.f);
            assert_null(strstr(ct.text, "ServerKeyExchange"));
            kxt_trace_expect(&ct, "C->S ClientKeyExchange rsa");
            kxt_exchange(&p, 20000);
            kxt_pair_free(&p);
            kxt_trace_close(&ct);
        }
    }
}

static void test_legacy_rsa_kx_default_ecdhe(void **state)
{
    (void)state;
    /* Both enable legacy RSA, default suite lists: ECDHE still wins (RSA is appended, least preferred). */
    ktlsx_config *cc = client12(NULL, NULL), *sc = server12("rsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_legacy_rsa_kx(cc, 1));
    KXT_CFG_OK(sc, ktlsx_config_set_legacy_rsa_kx(sc, 1));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_non_null(strstr(ktlsx_cipher_name(p.c), "ECDHE_RSA"));
    kxt_pair_free(&p);
}

static void test_legacy_rsa_kx_refused(void **state)
{
    (void)state;
    kxt_pair p;
    /* Client offers only RSA key transport; the server does not allow it: handshake_failure. */
    ktlsx_config *cc = client12("TLS_RSA_WITH_AES_128_GCM_SHA256", NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_legacy_rsa_kx(cc, 1));
    ktlsx_config *sc = server12("rsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_ciphers(sc, "TLS_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_HANDSHAKE_FAILURE);
    kxt_assert_failed(&p, true, KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);

    /* Client without legacy RSA, configured with only an RSA suite: nothing to offer. */
    kxt_pair_start(&p, client12("TLS_RSA_WITH_AES_128_GCM_SHA256", NULL), server12("rsa", NULL, NULL), "localhost",
                   KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_non_null(strstr(ktlsx_error(p.c), "cipher suite"));
    kxt_pair_free(&p);
}

/* ------------------------------------------------------ version choices */

static void test_version_mismatch(void **state)
{
    (void)state;
    kxt_pair p;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, KTLSX_TLS13, KTLSX_TLS13));
    kxt_pair_start(&p, cc, server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_PROTOCOL_VERSION);
    assert_int_equal(p.cst, KTLSX_FAILED);
    kxt_pair_free(&p);

    /* Both 1.2+1.3: 1.3 wins; client 1.2-only against a 1.2+1.3 server: 1.2 (sentinel ignored by a 1.2 client). */
    kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.c), KTLSX_TLS13);
    kxt_pair_free(&p);
    kxt_pair_start(&p, client12(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.c), KTLSX_TLS12);
    assert_memory_equal(p.c->server_random + 24, "DOWNGRD\1", 8);
    kxt_pair_free(&p);
}

/* --------------------------------------------------- man in the middle */

static void test_downgrade_sentinel(void **state)
{
    (void)state;
    for (int mode = KXT_FEED_ALL; mode <= KXT_FEED_WANTED; mode++) {
        kxt_pair p;
        kxt_pair_start(&p, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost",
                       (enum kxt_feed_mode)mode);
        kxt_client_hello_out(&p);
        assert_true(kxt_strip_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SUPPORTED_VERSIONS));
        assert_false(kxt_hello_has_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SUPPORTED_VERSIONS));
        kxt_pump(&p);
        /* The server negotiated 1.2 and marked its random; the 1.3 client sees it. */
        assert_int_equal(p.s->version, KTLSX_TLS12);
        assert_memory_equal(p.s->server_random + 24, "DOWNGRD\1", 8);
        kxt_assert_failed(&p, true, KX_ALERT_ILLEGAL_PARAMETER);
        assert_non_null(strstr(ktlsx_error(p.c), "downgrade"));
        assert_int_equal(p.sst, KTLSX_FAILED);
        assert_int_equal(ktlsx_alert(p.s), KX_ALERT_ILLEGAL_PARAMETER);
        kxt_pair_free(&p);
    }
}

static void test_strip_ems_require(void **state)
{
    (void)state;
    kxt_pair p;
    ktlsx_config *cc = client12(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_require_ems(cc, 1));
    kxt_pair_start(&p, cc, server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    assert_true(kxt_hello_has_ext(&p.s2c, KX_HS_SERVER_HELLO, KX_EXT_TYPE_EXTENDED_MASTER_SECRET));
    assert_true(kxt_strip_hello_ext(&p.s2c, KX_HS_SERVER_HELLO, KX_EXT_TYPE_EXTENDED_MASTER_SECRET));
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_HANDSHAKE_FAILURE);
    assert_non_null(strstr(ktlsx_error(p.c), "extended master secret"));
    assert_int_equal(p.sst, KTLSX_FAILED);
    kxt_pair_free(&p);
}

static void test_strip_ems_not_required(void **state)
{
    (void)state;
    /* Without require_ems the client goes on without EMS, but the transcripts differ:
     * the handshake must still fail (Finished), never complete. */
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("rsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    assert_true(kxt_strip_hello_ext(&p.s2c, KX_HS_SERVER_HELLO, KX_EXT_TYPE_EXTENDED_MASTER_SECRET));
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_true(ktlsx_alert(p.s) == KX_ALERT_BAD_RECORD_MAC || ktlsx_alert(p.s) == KX_ALERT_DECRYPT_ERROR);
    kxt_pair_free(&p);

    /* A server that does not do EMS at all (client's EMS offer stripped): works
     * unless the client requires EMS. */
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_strip_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_EXTENDED_MASTER_SECRET));
    kxt_pump(&p);
    /* The ClientHello the server saw differs from the client's: Finished fails. */
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(p.cst, KTLSX_FAILED);
    kxt_pair_free(&p);
}

static void test_tamper_client_finished(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_WANT_READ); /* TLS 1.2: waits for the server's Finished */
    kxt_move_out(p.c, &p.c2s);
    size_t n = kxt_count_records(&p.c2s);
    assert_true(n >= 3); /* ClientKeyExchange, ChangeCipherSpec, Finished */
    uint8_t type;
    size_t len;
    assert_true(kxt_record_offset(&p.c2s, n - 2, &type, &len) >= 0);
    assert_int_equal(type, KX_CT_CHANGE_CIPHER_SPEC);
    assert_true(kxt_record_offset(&p.c2s, n - 1, &type, &len) >= 0);
    assert_int_equal(type, KX_CT_HANDSHAKE); /* encrypted, but the TLS 1.2 type stays */
    kxt_flip_in_record(&p.c2s, n - 1, (long)len / 2);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_BAD_RECORD_MAC);
    kxt_assert_failed(&p, true, KX_ALERT_BAD_RECORD_MAC);
    kxt_pair_free(&p);
}

static void test_tamper_server_finished(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("rsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    kxt_move_out(p.c, &p.c2s);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    assert_int_equal(p.sst, KTLSX_DONE);
    kxt_move_out(p.s, &p.s2c);
    size_t n = kxt_count_records(&p.s2c);
    kxt_flip_in_record(&p.s2c, n - 1, -1); /* the tag of the server's Finished */
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_BAD_RECORD_MAC);
    kxt_pair_free(&p);
}

static void test_tamper_server_key_exchange(void **state)
{
    (void)state;
    /* A bit of the server's ECDHE share: the signature check fails (decrypt_error). */
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    /* Find the ServerKeyExchange (type 12) in the plaintext flight. */
    size_t off = 5;
    bool found = false;
    while (off + 4 <= p.s2c.len) {
        if (p.s2c.data[off] == KX_HS_SERVER_KEY_EXCHANGE) {
            p.s2c.data[off + 4 + 4 + 5] ^= 0x01; /* curve_type, group, length, then into the point */
            found = true;
            break;
        }
        off += 4 + kxt_get24(p.s2c.data + off + 1);
    }
    assert_true(found);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_DECRYPT_ERROR);
    kxt_pair_free(&p);
}

static void test_fallback_scsv(void **state)
{
    (void)state;
    kxt_pair p;
    ktlsx_config *cc = client12(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_fallback_scsv(cc, 1));
    kxt_pair_start(&p, cc, kxt_server_cfg("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_INAPPROPRIATE_FALLBACK);
    kxt_assert_failed(&p, true, KX_ALERT_INAPPROPRIATE_FALLBACK);
    kxt_pair_free(&p);

    /* Against a 1.2-only server the fallback is legitimate. */
    cc = client12(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_fallback_scsv(cc, 1));
    kxt_pair_start(&p, cc, server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_send_recv(&p, true, "fallback ok", 11);
    kxt_pair_free(&p);
}

/* ------------------------------------------------------- renegotiation */

/* `from` sends a handshake message `msg` under its current write keys. */
static void send_raw_handshake(ktlsx_conn *from, const uint8_t *msg, size_t len)
{
    kx_result r = kx_record_write(&from->tx, KX_CT_HANDSHAKE, msg, len, &from->out);
    assert_false(kx_failed(r));
}

/* The refusing side answered with one warning-level alert record and keeps going. */
static void check_refusal(kxt_pair *p, bool refuser_is_client)
{
    ktlsx_conn *ref = refuser_is_client ? p->c : p->s, *init = refuser_is_client ? p->s : p->c;
    kx_buf *back = refuser_is_client ? &p->c2s : &p->s2c, *fwd = refuser_is_client ? &p->s2c : &p->c2s;
    uint8_t tmp[64];
    kxt_deliver(ref, fwd);
    assert_int_equal(ktlsx_read(ref, tmp, sizeof tmp), 0); /* no data, no failure */
    assert_string_equal(ktlsx_error(ref), "");
    kxt_move_out(ref, back);
    uint8_t type;
    size_t len;
    assert_int_equal(kxt_count_records(back), 1);
    assert_true(kxt_record_offset(back, 0, &type, &len) == 0);
    assert_int_equal(type, KX_CT_ALERT);
    assert_int_equal(len, 2 + 8 + 16); /* level, description under AES-GCM (explicit nonce + tag) */
    /* The refuser still takes application data. */
    kxt_send_recv(p, !refuser_is_client, "after renegotiation attempt", 27);
    /* The initiator gets the warning: it may continue or end the connection with that alert. */
    kxt_deliver(init, back);
    long r = ktlsx_read(init, tmp, sizeof tmp);
    if (r == -KTLSX_FAILED) assert_int_equal(ktlsx_alert(init), KX_ALERT_NO_RENEGOTIATION);
    else assert_int_equal(r, 0);
}

static void test_renegotiation_refused(void **state)
{
    (void)state;
    kxt_trace_buf st, ct;
    /* Client-initiated: a fresh ClientHello on the established connection. */
    kxt_pair p;
    kxt_trace_open(&st);
    ktlsx_config *sc = server12("ecdsa", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", NULL);
    ktlsx_config_set_trace(sc, st.f);
    kxt_pair_start(&p, client12(NULL, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    /* Well formed (a malformed one is a decode_error: test_post_handshake.c). */
    static const uint8_t ch[4 + 41] = { KX_HS_CLIENT_HELLO, 0, 0, 41, 3, 3, [38] = 0, 0, 2, 0xc0, 0x2b, 1, 0 };
    send_raw_handshake(p.c, ch, sizeof ch);
    kxt_move_out(p.c, &p.c2s);
    check_refusal(&p, false);
    kxt_trace_expect(&st, "ClientHello refused: no_renegotiation");
    kxt_pair_free(&p);
    kxt_trace_close(&st);

    /* Server-initiated: HelloRequest. */
    kxt_trace_open(&ct);
    ktlsx_config *cc = client12("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", NULL);
    ktlsx_config_set_trace(cc, ct.f);
    kxt_pair_start(&p, cc, server12("rsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    static const uint8_t hr[] = { 0, 0, 0, 0 };
    send_raw_handshake(p.s, hr, sizeof hr);
    kxt_move_out(p.s, &p.s2c);
    check_refusal(&p, true);
    kxt_trace_expect(&ct, "HelloRequest refused: no_renegotiation");
    kxt_pair_free(&p);
    kxt_trace_close(&ct);
}

static void test_tls12_unexpected_post_handshake(void **state)
{
    (void)state;
    /* A TLS 1.3 KeyUpdate on a TLS 1.2 connection: unexpected_message. */
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_key_update(p.c, 0), -1); /* not in TLS 1.2 */
    static const uint8_t ku[] = { KX_HS_KEY_UPDATE, 0, 0, 1, 0 };
    send_raw_handshake(p.s, ku, sizeof ku);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    uint8_t tmp[8];
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);
}

/* RFC 8422 §5.1: in TLS 1.2 the client's supported_groups also bounds the
 * ECDSA certificate's curve; a P-256 certificate cannot serve an x25519-only client. */
static void test_ecdsa_curve_not_offered(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, "x25519"), server12("ecdsa", NULL, "x25519"), "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(ktlsx_handshake(p.s), KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);
}

/* ---------------------------------------- ServerHello answers only what was asked */

/* The extension types of the hello at the start of `w`. */
static size_t hello_ext_types(const kx_buf *w, uint8_t hs_type, uint16_t *types, size_t cap)
{
    size_t x, n = 0;
    assert_true(kxt_hello_exts(w, hs_type, &x));
    size_t end = x + 2 + kxt_get16(w->data + x);
    for (size_t p = x + 2; p + 4 <= end; p += 4 + kxt_get16(w->data + p + 2)) {
        assert_true(n < cap);
        types[n++] = kxt_get16(w->data + p);
    }
    return n;
}

/* RFC 5246 §7.4.1.4, RFC 8422 §5.2: an extension may appear in the
 * ServerHello only if the ClientHello carried it.  The client's hello loses
 * `strip` (0: nothing) on the way; the server's ServerHello must then answer
 * only what is left.  ALPN, tickets and the session cache are on, so every
 * extension the server knows how to answer is in play. */
static void server_hello_answers_only_offers(uint16_t strip)
{
    kxt_pair p;
    ktlsx_config *cc = client12(NULL, NULL), *sc = server12("ecdsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "h2,http/1.1"));
    KXT_CFG_OK(sc, ktlsx_config_set_alpn(sc, "http/1.1"));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    if (strip) assert_true(kxt_strip_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, strip));
    uint16_t offered[32], answered[32];
    size_t n_offered = hello_ext_types(&p.c2s, KX_HS_CLIENT_HELLO, offered, 32);
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (p.sst != KTLSX_WANT_READ) fail_msg("strip %#x: server %s (%s)", strip, kxt_status_name(p.sst), ktlsx_error(p.s));
    kxt_move_out(p.s, &p.s2c);
    size_t n_answered = hello_ext_types(&p.s2c, KX_HS_SERVER_HELLO, answered, 32);
    for (size_t i = 0; i < n_answered; i++)
        if (!kx_list_has(offered, n_offered, answered[i]))
            fail_msg("ServerHello carries extension %#x, which the ClientHello (less %#x) did not", answered[i], strip);
    if (!strip) { /* the control: each of them is answered when offered */
        static const uint16_t expect[] = { KX_EXT_TYPE_RENEGOTIATION_INFO, KX_EXT_TYPE_EXTENDED_MASTER_SECRET,
                                           KX_EXT_TYPE_EC_POINT_FORMATS, KX_EXT_TYPE_SESSION_TICKET, KX_EXT_TYPE_ALPN };
        for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
            if (!kx_list_has(answered, n_answered, expect[i])) fail_msg("ServerHello lacks extension %#x", expect[i]);
        kxt_pump(&p);
        kxt_assert_done(&p);
    }
    kxt_pair_free(&p);
}

static void test_server_hello_unsolicited_extensions(void **state)
{
    (void)state;
    server_hello_answers_only_offers(0);
    server_hello_answers_only_offers(KX_EXT_TYPE_EC_POINT_FORMATS);
    server_hello_answers_only_offers(KX_EXT_TYPE_EXTENDED_MASTER_SECRET);
    server_hello_answers_only_offers(KX_EXT_TYPE_SESSION_TICKET);
    server_hello_answers_only_offers(KX_EXT_TYPE_ALPN);
    server_hello_answers_only_offers(KX_EXT_TYPE_RENEGOTIATION_INFO);
    server_hello_answers_only_offers(KX_EXT_TYPE_SERVER_NAME);
}

/* RFC 8422 §5.1.2: ec_point_formats without the uncompressed format, from a
 * client that names curves, is illegal_parameter; with it, anything else
 * listed too is fine. */
static void point_formats(const uint8_t *body, size_t len, bool want_ok)
{
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_replace_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_EC_POINT_FORMATS, body, len));
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (want_ok)
        assert_int_equal(p.sst, KTLSX_WANT_READ);
    else
        kxt_assert_failed(&p, false, KX_ALERT_ILLEGAL_PARAMETER);
    kxt_pair_free(&p);
}

static void test_point_formats_need_uncompressed(void **state)
{
    (void)state;
    point_formats((const uint8_t *)"\x01\x01", 2, false);     /* ansiX962_compressed_prime only */
    point_formats((const uint8_t *)"\x02\x01\x02", 3, false); /* both compressed forms */
    point_formats((const uint8_t *)"\x02\x01\x00", 3, true);  /* uncompressed among them */
}

/* ------------------------------------------------------------------ main */

/* Offset of the first handshake message of `hs_type` in a plaintext flight
 * (walking records and the messages inside them); -1 if absent. */
static long flight_message(const kx_buf *w, uint8_t hs_type)
{
    for (size_t off = 0; off + 5 <= w->len; off += 5 + kxt_get16(w->data + off + 3)) {
        size_t end = off + 5 + kxt_get16(w->data + off + 3);
        if (w->data[off] != KX_CT_HANDSHAKE) continue;
        for (size_t m = off + 5; m + 4 <= end; m += 4 + kxt_get24(w->data + m + 1))
            if (w->data[m] == hs_type) return (long)m;
    }
    return -1;
}

static void wire_prepend(kx_buf *w, const uint8_t *rec, size_t n)
{
    kx_buf tmp = { 0 };
    assert_false(kx_failed(kx_write_bytes(&tmp, rec, n)));
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data, w->len)));
    kx_buf_reset(w);
    assert_false(kx_failed(kx_write_bytes(w, tmp.data, tmp.len)));
    kx_buf_free(&tmp);
}

/* --------------------------------------------- long lists are read to the end */

static size_t long_list12(uint8_t *b, size_t unknown, uint16_t first_unknown, uint16_t last)
{
    size_t n = 2;
    for (size_t i = 0; i < unknown; i++) {
        kxt_put16(b + n, (uint16_t)(first_unknown + i));
        n += 2;
    }
    kxt_put16(b + n, last);
    n += 2;
    kxt_put16(b, n - 2);
    return n;
}

/* RFC 5246 §7.4.1.4.1, RFC 8422 §5.1.1: the usable group and scheme sit at
 * the end of long lists.  Server side: the ClientHello's supported_groups and
 * signature_algorithms; client side: a CertificateRequest's
 * supported_signature_algorithms.  Edits change the transcript, so each case
 * stops at the choices made. */
static void test_long_lists12(void **state)
{
    (void)state;
    uint8_t groups[2 + 2 * 41], sigalgs[2 + 2 * 31];
    size_t glen = long_list12(groups, 40, 0x0a0a, KX_GROUP_SECP256R1);
    size_t slen = long_list12(sigalgs, 30, 0x0700, KX_SIG_ECDSA_SECP256R1_SHA256);
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, "x25519,P-256"), "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_replace_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SUPPORTED_GROUPS, groups, glen));
    assert_true(kxt_replace_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SIGNATURE_ALGORITHMS, sigalgs, slen));
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (p.sst != KTLSX_WANT_READ) fail_msg("server: %s (%s)", kxt_status_name(p.sst), ktlsx_error(p.s));
    assert_int_equal(p.s->group, KX_GROUP_SECP256R1);           /* the P-256 certificate's curve was offered */
    assert_int_equal(p.s->our_sigalg, KX_SIG_ECDSA_SECP256R1_SHA256);
    kxt_pair_free(&p);

    /* The client's CertificateVerify scheme from a long CertificateRequest list. */
    ktlsx_config *cc = client12(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
    kxt_pair_start(&p, cc, mtls_server12("ecdsa", KTLSX_VERIFY_REQUIRE), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    long m = flight_message(&p.s2c, KX_HS_CERTIFICATE_REQUEST);
    assert_true(m > 0 && (size_t)m < (size_t)5 + kxt_get16(p.s2c.data + 3)); /* in the first record */
    size_t list = (size_t)m + 4 + 1 + p.s2c.data[m + 4];            /* past the certificate types */
    size_t old = 2 + kxt_get16(p.s2c.data + list);
    kx_buf w = { 0 };
    assert_false(kx_failed(kx_write_bytes(&w, p.s2c.data, list)));
    assert_false(kx_failed(kx_write_bytes(&w, sigalgs, slen)));
    assert_false(kx_failed(kx_write_bytes(&w, p.s2c.data + list + old, p.s2c.len - list - old)));
    kxt_put16(w.data + 3, kxt_get16(w.data + 3) + slen - old);
    kxt_put24(w.data + m + 1, kxt_get24(w.data + m + 1) + slen - old);
    kxt_deliver(p.c, &w);
    kx_buf_free(&w);
    p.cst = ktlsx_handshake(p.c);
    if (p.cst != KTLSX_WANT_READ) fail_msg("client: %s (%s)", kxt_status_name(p.cst), ktlsx_error(p.c));
    assert_true(p.c->cert_requested);
    assert_int_equal(p.c->our_sigalg, KX_SIG_ECDSA_SECP256R1_SHA256);
    kxt_pair_free(&p);
}

/* ------------------------------- no signature_algorithms (RFC 9155 §2) */

/* A TLS 1.2 ClientHello without signature_algorithms allows only SHA-1
 * signatures (RFC 5246 §7.4.1.4.1), which RFC 9155 forbids: a server that
 * would have to sign (ECDHE) aborts with handshake_failure and says why;
 * RSA key transport signs nothing and may proceed, as with OpenSSL. */
static void test_no_signature_algorithms(void **state)
{
    (void)state;
    static const char *const certs[] = { "ecdsa", "rsa" };
    for (size_t i = 0; i < 2; i++) {
        kxt_pair p;
        kxt_pair_start(&p, client12(NULL, NULL), server12(certs[i], NULL, NULL), "localhost", KXT_FEED_ALL);
        kxt_client_hello_out(&p);
        assert_true(kxt_strip_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SIGNATURE_ALGORITHMS));
        kxt_deliver(p.s, &p.c2s);
        p.sst = ktlsx_handshake(p.s);
        kxt_assert_failed(&p, false, KX_ALERT_HANDSHAKE_FAILURE);
        assert_non_null(strstr(ktlsx_error(p.s), "signature_algorithms"));
        assert_non_null(strstr(ktlsx_error(p.s), "RFC 9155"));
        kxt_move_out(p.s, &p.s2c);
        assert_int_equal(kxt_count_records(&p.s2c), 1); /* the alert, no ServerKeyExchange signed with anything */
        assert_int_equal(p.s2c.data[0], KX_CT_ALERT);
        kxt_pair_free(&p);
    }

    /* RSA key transport offered and allowed on both sides: it is chosen over ECDHE_RSA. */
    ktlsx_config *cc = client12(NULL, NULL), *sc = server12("rsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_legacy_rsa_kx(cc, 1));
    KXT_CFG_OK(sc, ktlsx_config_set_legacy_rsa_kx(sc, 1));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);
    assert_true(kxt_strip_hello_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_SIGNATURE_ALGORITHMS));
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (p.sst != KTLSX_WANT_READ) fail_msg("server: %s (%s)", kxt_status_name(p.sst), ktlsx_error(p.s));
    assert_non_null(strstr(ktlsx_cipher_name(p.s), "TLS_RSA_WITH_"));
    kxt_move_out(p.s, &p.s2c);
    assert_true(flight_message(&p.s2c, KX_HS_SERVER_KEY_EXCHANGE) < 0);
    kxt_pair_free(&p);

    /* Control: with the extension, the same configurations keep ECDHE. */
    cc = client12(NULL, NULL);
    sc = server12("rsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_legacy_rsa_kx(cc, 1));
    KXT_CFG_OK(sc, ktlsx_config_set_legacy_rsa_kx(sc, 1));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_non_null(strstr(ktlsx_cipher_name(p.s), "ECDHE_RSA"));
    kxt_pair_free(&p);
}

/* In TLS 1.2 a CertificateRequest follows the Certificate and the
 * ServerKeyExchange (RFC 5246 §7.3); where the Certificate is due it is an
 * unexpected message, not a Certificate by another name. */
static void test_certificate_request_in_place_of_certificate(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    long at = flight_message(&p.s2c, KX_HS_CERTIFICATE);
    assert_true(at > 0);
    p.s2c.data[at] = KX_HS_CERTIFICATE_REQUEST;
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_UNEXPECTED_MESSAGE);
    assert_false(p.c->cert_requested);
    kxt_pair_free(&p);
}

/* The suite names the server's key type (RFC 5246 §7.4.2, RFC 8422 §5.3): an
 * RSA certificate under an ECDHE_ECDSA suite is refused at the Certificate. */
static void test_certificate_key_must_fit_suite(void **state)
{
    (void)state;
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("rsa", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", NULL),
                   "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    long sh = flight_message(&p.s2c, KX_HS_SERVER_HELLO);
    assert_true(sh > 0);
    size_t suite_at = (size_t)sh + 4 + 2 + 32 + 1 + p.s2c.data[sh + 4 + 2 + 32];
    assert_int_equal(kxt_get16(p.s2c.data + suite_at), 0xc02f);
    kxt_put16(p.s2c.data + suite_at, 0xc02b); /* TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_ILLEGAL_PARAMETER);
    assert_string_equal(ktlsx_error(p.c), "server certificate key does not fit the chosen cipher suite");
    kxt_pair_free(&p);
}

/* TLS 1.2 warning alerts do not end the handshake (a server may warn
 * unrecognized_name ahead of its ServerHello), but only a few in a row are
 * tolerated. */
static void test_warning_alerts(void **state)
{
    (void)state;
    static const uint8_t warning[] = { KX_CT_ALERT, 3, 3, 0, 2, 1, 112 /* unrecognized_name */ };
    for (size_t count = KX_MAX_WARNING_ALERTS; count <= KX_MAX_WARNING_ALERTS + 1; count++) {
        kxt_pair p;
        kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
        kxt_server_flight_out(&p);
        for (size_t i = 0; i < count; i++) wire_prepend(&p.s2c, warning, sizeof warning);
        kxt_pump(&p);
        if (count <= KX_MAX_WARNING_ALERTS) {
            kxt_assert_done(&p);
            kxt_send_recv(&p, true, "after a warning", 15);
        } else {
            kxt_assert_failed(&p, true, KX_ALERT_UNEXPECTED_MESSAGE);
        }
        kxt_pair_free(&p);
    }
}

/* A ChangeCipherSpec before the ServerHello has no place in TLS 1.2. */
static void test_change_cipher_spec_before_server_hello(void **state)
{
    (void)state;
    static const uint8_t ccs[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1 };
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    wire_prepend(&p.s2c, ccs, sizeof ccs);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_UNEXPECTED_MESSAGE);
    kxt_pair_free(&p);
}

/* ---- conf-b: lengths before contents (RFC 8446 §6.2, RFC 5246 §7.2.2) ---- */

/* Grow (or shrink) the message of type hs_type in the plaintext first record
 * on `w` by `grow` zero bytes at its end, fixing the record and message
 * lengths; sig_at_end: the body ends in a 2-byte-length signature vector
 * whose length grows with it. */
static void resize_plain_msg(kx_buf *w, uint8_t hs_type, int grow, bool sig_at_end)
{
    size_t rec_len = kxt_get16(w->data + 3), m = 5;
    while (m + 4 <= 5 + rec_len && w->data[m] != hs_type) m += 4 + kxt_get24(w->data + m + 1);
    assert_true(m + 4 <= 5 + rec_len);
    size_t body = kxt_get24(w->data + m + 1), end = m + 4 + body;
    size_t sig_len_off = 0;
    if (sig_at_end) {
        /* ServerKeyExchange: curve_type(1) group(2) point<1..255> sigalg(2) signature<2> */
        sig_len_off = m + 4 + 3 + 1 + w->data[m + 4 + 3] + 2;
        assert_int_equal(sig_len_off + 2 + kxt_get16(w->data + sig_len_off), end);
    }
    kx_buf tmp = { 0 };
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data, grow < 0 ? end - (size_t)-grow : end)));
    for (int i = 0; i < grow; i++) assert_false(kx_failed(kx_write_u8(&tmp, 0)));
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data + end, w->len - end)));
    kxt_put16(tmp.data + 3, (size_t)((long)rec_len + grow));
    kxt_put24(tmp.data + m + 1, (size_t)((long)body + grow));
    if (sig_at_end) kxt_put16(tmp.data + sig_len_off, (size_t)((long)kxt_get16(tmp.data + sig_len_off) + grow));
    kx_buf_reset(w);
    assert_false(kx_failed(kx_write_bytes(w, tmp.data, tmp.len)));
    kx_buf_free(&tmp);
}

/* A ServerKeyExchange signature of a length the certificate's key cannot
 * make (RSA: the modulus size) is decode_error before any verification; so
 * is a ServerHelloDone with a body. */
static void test_fixed_lengths_server_flight(void **state)
{
    (void)state;
    for (int grow = -1; grow <= 1; grow += 2) {
        kxt_pair p;
        kxt_pair_start(&p, client12(NULL, NULL), server12("rsa", NULL, NULL), "localhost", KXT_FEED_ALL);
        kxt_server_flight_out(&p);
        resize_plain_msg(&p.s2c, KX_HS_SERVER_KEY_EXCHANGE, grow, true);
        kxt_pump(&p);
        kxt_assert_failed(&p, true, KX_ALERT_DECODE_ERROR);
        kxt_pair_free(&p);
    }
    kxt_pair p;
    kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
    kxt_server_flight_out(&p);
    resize_plain_msg(&p.s2c, KX_HS_SERVER_HELLO_DONE, 1, false);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_DECODE_ERROR);
    kxt_pair_free(&p);
}

/* The client's flight: ChangeCipherSpec of two bytes, and a Finished of 13
 * or 11 bytes (re-sealed under the client's key block), are decode_error; a
 * 12-byte Finished with a wrong value stays decrypt_error. */
static void test_fixed_lengths_client_flight(void **state)
{
    (void)state;
    static const struct { int ccs_len, grow; bool flip; uint8_t alert; } cases[] = {
        { 2, 0, false, KX_ALERT_DECODE_ERROR }, { 1, 1, true, KX_ALERT_DECODE_ERROR },
        { 1, 1, false, KX_ALERT_DECODE_ERROR }, { 1, -1, false, KX_ALERT_DECODE_ERROR },
        { 1, 0, true, KX_ALERT_DECRYPT_ERROR },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kxt_pair p;
        kxt_pair_start(&p, client12(NULL, NULL), server12("ecdsa", NULL, NULL), "localhost", KXT_FEED_ALL);
        kxt_server_flight_out(&p);
        kxt_deliver(p.c, &p.s2c);
        p.cst = ktlsx_handshake(p.c);
        assert_int_equal(p.cst, KTLSX_WANT_READ);
        kxt_move_out(p.c, &p.c2s);
        size_t n = kxt_count_records(&p.c2s);
        uint8_t type;
        size_t len;
        long ccs_off = kxt_record_offset(&p.c2s, n - 2, &type, &len);
        assert_int_equal(type, KX_CT_CHANGE_CIPHER_SPEC);
        long fin_off = kxt_record_offset(&p.c2s, n - 1, &type, &len);
        /* Open the Finished record, edit, seal it again (sequence 0 both times). */
        kx_record_dir rd = { 0 }, wd = { 0 };
        assert_false(kx_failed(kx_record_set_keys(&rd, KTLSX_TLS12, p.c->suite, p.c->keys12.client_key,
                                                  p.c->keys12.client_iv)));
        assert_false(kx_failed(kx_record_set_keys(&wd, KTLSX_TLS12, p.c->suite, p.c->keys12.client_key,
                                                  p.c->keys12.client_iv)));
        uint8_t t, *plain;
        size_t pl;
        assert_false(kx_failed(kx_record_read(&rd, p.c2s.data + fin_off, 5 + len, &t, &plain, &pl)));
        assert_int_equal(pl, 4 + KX_TLS12_VERIFY);
        uint8_t fin[4 + KX_TLS12_VERIFY + 1] = { 0 };
        memcpy(fin, plain, pl);
        size_t fin_len = (size_t)((long)pl + cases[i].grow);
        kxt_put24(fin + 1, fin_len - 4);
        if (cases[i].flip) fin[4] ^= 0x01;
        kx_buf w = { 0 };
        assert_false(kx_failed(kx_write_bytes(&w, p.c2s.data, (size_t)ccs_off)));
        static const uint8_t ccs2[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 2, 1, 1 };
        static const uint8_t ccs1[] = { KX_CT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1 };
        if (cases[i].ccs_len == 2)
            assert_false(kx_failed(kx_write_bytes(&w, ccs2, sizeof ccs2)));
        else
            assert_false(kx_failed(kx_write_bytes(&w, ccs1, sizeof ccs1)));
        assert_false(kx_failed(kx_record_write(&wd, KX_CT_HANDSHAKE, fin, fin_len, &w)));
        kx_record_clear(&rd);
        kx_record_clear(&wd);
        kx_buf_reset(&p.c2s);
        assert_false(kx_failed(kx_write_bytes(&p.c2s, w.data, w.len)));
        kx_buf_free(&w);
        kxt_deliver(p.s, &p.c2s);
        p.sst = ktlsx_handshake(p.s);
        kxt_assert_failed(&p, false, cases[i].alert);
        kxt_pair_free(&p);
    }
}

static const combo12 combos[] = {
    { "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ecdsa", "x25519,P-256", "x25519", false }, /* P-256: the certificate's curve (RFC 8422) */
    { "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ecdsa", "x25519,P-256", "x25519", false }, /* P-256: the certificate's curve (RFC 8422) */
    { "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ecdsa", "x25519,P-256", "x25519", false }, /* P-256: the certificate's curve (RFC 8422) */
    { "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "rsa", "x25519", "x25519", false },
    { "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "rsa", "x25519", "x25519", false },
    { "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "rsa", "x25519", "x25519", false },
    { "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ecdsa", "P-256", "secp256r1", false },
    { "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "rsa", "P-384", "secp384r1", false },
    { "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ecdsa", "P-256", "secp256r1", true },
    { "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "rsa", "x25519", "x25519", true },
};

int main(void)
{
    static char names[16][128];
    static struct CMUnitTest tests[64];
    size_t n = 0;
    for (size_t i = 0; i < sizeof combos / sizeof combos[0]; i++) {
        snprintf(names[i], sizeof names[i], "test_suite/%s/%s/%s%s", combos[i].suite, combos[i].cert,
                 combos[i].group_name, combos[i].client_both ? "/client-1.2+1.3" : "");
        tests[n++] = (struct CMUnitTest){ names[i], test_suite, NULL, NULL, (void *)&combos[i] };
    }
#define ADD(fn) tests[n++] = (struct CMUnitTest){ #fn, fn, NULL, NULL, NULL }
    ADD(test_trace_flow);
    ADD(test_ecdsa_curve_not_offered);
    ADD(test_mtls_require);
    ADD(test_mtls_require_without_cert);
    ADD(test_mtls_optional_without_cert);
    ADD(test_mtls_untrusted_client_cert);
    ADD(test_legacy_rsa_kx);
    ADD(test_legacy_rsa_kx_default_ecdhe);
    ADD(test_legacy_rsa_kx_refused);
    ADD(test_version_mismatch);
    ADD(test_downgrade_sentinel);
    ADD(test_strip_ems_require);
    ADD(test_strip_ems_not_required);
    ADD(test_tamper_client_finished);
    ADD(test_tamper_server_finished);
    ADD(test_tamper_server_key_exchange);
    ADD(test_fallback_scsv);
    ADD(test_renegotiation_refused);
    ADD(test_tls12_unexpected_post_handshake);
    ADD(test_certificate_request_in_place_of_certificate);
    ADD(test_certificate_key_must_fit_suite);
    ADD(test_warning_alerts);
    ADD(test_change_cipher_spec_before_server_hello);
    ADD(test_server_hello_unsolicited_extensions);
    ADD(test_point_formats_need_uncompressed);
    ADD(test_long_lists12);
    ADD(test_no_signature_algorithms);
    /* conf-b */
    ADD(test_fixed_lengths_server_flight);
    ADD(test_fixed_lengths_client_flight);
#undef ADD
    return _cmocka_run_group_tests("test_tls12", tests, n, kxt_pki_group_setup, kxt_pki_group_teardown);
}
