/* handshake/certificate: the peer's certificate chain as DER
 * (ktlsx_peer_cert_count / ktlsx_peer_cert_der).  The client sees the
 * server's chain and, with mutual TLS, the server sees the client's, in
 * TLS 1.3 and TLS 1.2, byte for byte as configured on the other side; a
 * resumed connection carries no Certificate message and reports none; the
 * chain is there with --insecure and after a refused verification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

/* The DER certificates of a PEM file. */
typedef struct {
    uint8_t *der[KX_MAX_CHAIN];
    int len[KX_MAX_CHAIN];
    size_t count;
} pem_chain;

static pem_chain read_chain(const char *name)
{
    pem_chain c = { 0 };
    BIO *in = BIO_new_file(kxt_pki_path(name), "r");
    assert_non_null(in);
    X509 *x;
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        assert_true(c.count < KX_MAX_CHAIN);
        c.der[c.count] = NULL;
        c.len[c.count] = i2d_X509(x, &c.der[c.count]);
        assert_true(c.len[c.count] > 0);
        c.count++;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(in);
    return c;
}

static void free_chain(pem_chain *c)
{
    for (size_t i = 0; i < c->count; i++) OPENSSL_free(c->der[i]);
    memset(c, 0, sizeof *c);
}

/* conn's peer chain is exactly the certificates of `pem_file`. */
static void assert_peer_chain(const ktlsx_conn *conn, const char *pem_file)
{
    pem_chain want = read_chain(pem_file);
    assert_int_equal(ktlsx_peer_cert_count(conn), want.count);
    for (size_t i = 0; i < want.count; i++) {
        size_t len = 0;
        const uint8_t *der = ktlsx_peer_cert_der(conn, i, &len);
        assert_non_null(der);
        assert_int_equal(len, (size_t)want.len[i]);
        assert_memory_equal(der, want.der[i], len);
    }
    /* Past the end: NULL, length 0. */
    size_t len = 77;
    assert_null(ktlsx_peer_cert_der(conn, want.count, &len));
    assert_int_equal(len, 0);
    assert_null(ktlsx_peer_cert_der(conn, (size_t)-1, NULL));
    free_chain(&want);
}

static void assert_no_peer_chain(const ktlsx_conn *conn)
{
    assert_int_equal(ktlsx_peer_cert_count(conn), 0);
    size_t len = 5;
    assert_null(ktlsx_peer_cert_der(conn, 0, &len));
    assert_int_equal(len, 0);
}

static ktlsx_config *client_cfg(uint16_t ver, bool with_cert)
{
    ktlsx_config *cfg = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cfg, ktlsx_config_set_versions(cfg, ver, ver));
    if (with_cert) KXT_CFG_OK(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
    return cfg;
}

static ktlsx_config *server_cfg(const char *cert, enum ktlsx_verify_client mode)
{
    ktlsx_config *cfg = kxt_server_cfg(cert, NULL, NULL);
    if (mode != KTLSX_VERIFY_NONE) {
        KXT_CFG_OK(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")));
        KXT_CFG_OK(cfg, ktlsx_config_set_verify_client(cfg, mode));
    }
    return cfg;
}

static void test_server_chain(void **state)
{
    (void)state;
    static const char *certs[] = { "ecdsa", "rsa", "ed25519" };
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS12 : KTLSX_TLS13;
        for (size_t k = 0; k < sizeof certs / sizeof certs[0]; k++) {
            kxt_pair p;
            kxt_pair_start(&p, client_cfg(ver, false), server_cfg(certs[k], KTLSX_VERIFY_NONE), "localhost", KXT_FEED_ALL);
            assert_no_peer_chain(p.c); /* nothing before the handshake */
            kxt_pump(&p);
            kxt_assert_done(&p);
            assert_int_equal(ktlsx_version(p.c), ver);
            char file[64];
            snprintf(file, sizeof file, "server-%s.pem", certs[k]);
            assert_peer_chain(p.c, file);
            assert_no_peer_chain(p.s); /* no client certificate asked for */
            /* Valid until the connection is freed: data afterwards leaves it alone. */
            size_t len;
            const uint8_t *leaf = ktlsx_peer_cert_der(p.c, 0, &len);
            kxt_exchange(&p, 20000);
            assert_ptr_equal(ktlsx_peer_cert_der(p.c, 0, &len), leaf);
            assert_peer_chain(p.c, file);
            kxt_pair_free(&p);
        }
    }
}

/* A server with several certificates picks the one naming the client's SNI
 * host (one profile serving several names), falling back to the signature
 * algorithms' choice when none names it or no SNI came. */
static void test_server_chooses_by_sni(void **state)
{
    (void)state;
    static const struct {
        const char *sni, *want;
    } cases[] = {
        { "a.example", "vhost-a.pem" }, /* only the second certificate names it */
        { "localhost", "server-ecdsa.pem" },
        { "unknown.invalid", "server-ecdsa.pem" }, /* no certificate names it: the first that fits */
        { NULL, "server-ecdsa.pem" },
    };
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS12 : KTLSX_TLS13;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
            KXT_CFG_OK(scfg, ktlsx_config_add_cert(scfg, kxt_pki_path("vhost-a.pem"), kxt_pki_path("vhost-a.key")));
            ktlsx_config *ccfg = client_cfg(ver, false);
            /* the fallback cases get a certificate not naming the host asked for: look, do not verify */
            KXT_CFG_OK(ccfg, ktlsx_config_set_insecure(ccfg, 1));
            kxt_pair p;
            kxt_pair_start(&p, ccfg, scfg, cases[i].sni, KXT_FEED_ALL);
            kxt_pump(&p);
            kxt_assert_done(&p);
            assert_peer_chain(p.c, cases[i].want);
            kxt_pair_free(&p);
        }
    }
}

static void test_client_chain_mtls(void **state)
{
    (void)state;
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS12 : KTLSX_TLS13;
        for (int mode = KTLSX_VERIFY_OPTIONAL; mode <= KTLSX_VERIFY_REQUIRE; mode++) {
            kxt_pair p;
            kxt_pair_start(&p, client_cfg(ver, true), server_cfg("ecdsa", (enum ktlsx_verify_client)mode), "localhost",
                           KXT_FEED_WANTED);
            kxt_pump(&p);
            kxt_assert_done(&p);
            assert_peer_chain(p.s, "client.pem");
            assert_peer_chain(p.c, "server-ecdsa.pem");
            kxt_pair_free(&p);
        }
        /* Asked, but the client has no certificate (optional): none. */
        kxt_pair p;
        kxt_pair_start(&p, client_cfg(ver, false), server_cfg("ecdsa", KTLSX_VERIFY_OPTIONAL), "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_no_peer_chain(p.s);
        assert_peer_chain(p.c, "server-ecdsa.pem");
        kxt_pair_free(&p);
    }
}

/* A resumed connection has no Certificate message: no chain, on either side;
 * the subject remembered in the session is still reported. */
static void test_resumed_has_no_chain(void **state)
{
    (void)state;
    for (int v = 0; v < 3; v++) {
        /* TLS 1.3 ticket, TLS 1.2 ticket, TLS 1.2 session ID. */
        uint16_t ver = v ? KTLSX_TLS12 : KTLSX_TLS13;
        ktlsx_config *cc = client_cfg(ver, true), *sc = server_cfg("ecdsa", KTLSX_VERIFY_REQUIRE);
        if (v == 2) KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0));
        uint8_t sess[4096];
        long sess_len;
        {
            kxt_pair p;
            kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
            p.keep_cfgs = true;
            kxt_pump(&p);
            kxt_assert_done(&p);
            kxt_send_recv(&p, false, "tickets", 7);
            kxt_settle(&p);
            assert_peer_chain(p.c, "server-ecdsa.pem");
            assert_peer_chain(p.s, "client.pem");
            sess_len = ktlsx_get_session(p.c, sess, sizeof sess);
            assert_true(sess_len > 0);
            kxt_pair_free(&p);
        }
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        p.keep_cfgs = true;
        assert_int_equal(ktlsx_set_session(p.c, sess, (size_t)sess_len), 0);
        kxt_pump(&p);
        kxt_assert_done(&p);
        if (!ktlsx_resumed(p.c)) fail_msg("case %d: not resumed", v);
        assert_true(ktlsx_resumed(p.s));
        assert_no_peer_chain(p.c);
        assert_no_peer_chain(p.s);
        assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
        assert_non_null(strstr(ktlsx_peer_subject(p.s), "ktlsx-client"));
        kxt_pair_free(&p);
        ktlsx_config_free(cc);
        ktlsx_config_free(sc);
    }
}

/* Without verification (insecure), and when verification refuses the chain:
 * the chain is still what the peer sent. */
static void test_chain_insecure_and_refused(void **state)
{
    (void)state;
    ktlsx_config *cc = ktlsx_config_new(KTLSX_CLIENT);
    KXT_CFG_OK(cc, ktlsx_config_set_insecure(cc, 1));
    ktlsx_config *sc = ktlsx_config_new(KTLSX_SERVER);
    KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("other.pem"), kxt_pki_path("other.key")));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_peer_chain(p.c, "other.pem");
    kxt_pair_free(&p);

    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS12 : KTLSX_TLS13;
        sc = ktlsx_config_new(KTLSX_SERVER);
        KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("other.pem"), kxt_pki_path("other.key")));
        kxt_pair_start(&p, client_cfg(ver, false), sc, "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_failed(&p, true, KX_ALERT_UNKNOWN_CA);
        assert_peer_chain(p.c, "other.pem");
        kxt_pair_free(&p);
    }
}

static void test_null_conn(void **state)
{
    (void)state;
    size_t len = 9;
    assert_int_equal(ktlsx_peer_cert_count(NULL), 0);
    assert_null(ktlsx_peer_cert_der(NULL, 0, &len));
    assert_int_equal(len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_chain),
        cmocka_unit_test(test_server_chooses_by_sni),
        cmocka_unit_test(test_client_chain_mtls),
        cmocka_unit_test(test_resumed_has_no_chain),
        cmocka_unit_test(test_chain_insecure_and_refused),
        cmocka_unit_test(test_null_conn),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
