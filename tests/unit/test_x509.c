/* Unit tests for crypto/x509: PEM loading, trust stores, chain verification
 * and the verification-error -> alert mapping.
 *
 * The PKI is generated at test start with the openssl CLI in a mkdtemp
 * directory, so certificates are never stale (validity windows move with the
 * clock) and no key material is checked in.  `openssl ca` is used for the
 * expired / not-yet-valid / revoked leaves because it takes explicit dates
 * and maintains the database the CRL is generated from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/x509.h"

static char g_dir[] = "/tmp/kx_x509_XXXXXX";
static kx_trust *g_trust;     /* root.pem */
static kx_trust *g_trust_crl; /* root.pem + the intermediate's CRL */

static const char gen_script[] =
    "set -e\n"
    "cat > ca.cnf <<'CNF'\n"
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[v3_ca]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid:always\n"
    "[v3_server]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    "[v3_client]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[ca]\n"
    "default_ca = inter_ca\n"
    "[inter_ca]\n"
    "dir = .\n"
    "database = ./index.txt\n"
    "new_certs_dir = ./newcerts\n"
    "certificate = ./inter.pem\n"
    "private_key = ./inter.key\n"
    "serial = ./serial\n"
    "crlnumber = ./crlnumber\n"
    "default_md = sha256\n"
    "default_days = 30\n"
    "default_crl_days = 30\n"
    "policy = policy_any\n"
    "unique_subject = no\n"
    "[policy_any]\n"
    "commonName = supplied\n"
    "organizationName = optional\n"
    "CNF\n"
    "Q=\"-config ca.cnf\"\n"
    "EC=\"-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes\"\n"
    "# Root and intermediate (ECDSA P-256).\n"
    "openssl req $Q -x509 $EC -keyout root.key -out root.pem -days 30 -subj \"/CN=ktlsx test root\" -extensions v3_ca\n"
    "openssl req $Q $EC -keyout inter.key -out inter.csr -subj \"/CN=ktlsx test intermediate\"\n"
    "openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -set_serial 2 -days 30 -out inter.pem -extfile ca.cnf -extensions v3_ca\n"
    "# Server leaf (RSA, PKCS#8 key) for localhost / 127.0.0.1.\n"
    "openssl req $Q -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj \"/O=ktlsx test/CN=localhost\"\n"
    "openssl x509 -req -in server.csr -CA inter.pem -CAkey inter.key -set_serial 10 -days 30 -out server.pem -extfile ca.cnf -extensions v3_server\n"
    "cat server.pem inter.pem > server-chain.pem\n"
    "# Client leaf (ECDSA, clientAuth only).\n"
    "openssl req $Q $EC -keyout client.key -out client.csr -subj \"/CN=ktlsx client\"\n"
    "openssl x509 -req -in client.csr -CA inter.pem -CAkey inter.key -set_serial 11 -days 30 -out client.pem -extfile ca.cnf -extensions v3_client\n"
    "# Expired / not yet valid / revoked leaves through `openssl ca`, which takes explicit dates.\n"
    "mkdir newcerts; : > index.txt; echo 1000 > serial; echo 1000 > crlnumber\n"
    "openssl req $Q $EC -keyout leaf.key -out leaf.csr -subj \"/CN=localhost\"\n"
    "CA=\"openssl ca -config ca.cnf -batch -notext -in leaf.csr -extfile ca.cnf -extensions v3_server\"\n"
    "$CA -startdate 20200101000000Z -enddate 20200201000000Z -out expired.pem\n"
    "$CA -startdate 20991201000000Z -enddate 20991231000000Z -out notyet.pem\n"
    "$CA -days 30 -out revoked.pem\n"
    "$CA -days 30 -out good-crl.pem\n"
    "openssl ca -config ca.cnf -revoke revoked.pem\n"
    "openssl ca -config ca.cnf -gencrl -out crl.pem\n"
    "openssl ca -config ca.cnf -gencrl -crlhours 1 -out crl-1h.pem\n"
    "# A localhost certificate from an unrelated CA.\n"
    "openssl req $Q -x509 $EC -keyout other-root.key -out other-root.pem -days 30 -subj \"/CN=other root\" -extensions v3_ca\n"
    "openssl x509 -req -in server.csr -CA other-root.pem -CAkey other-root.key -set_serial 12 -days 30 -out other.pem -extfile ca.cnf -extensions v3_server\n"
    "# Self-signed leaves of every key type; traditional encodings of RSA and EC.\n"
    "for t in \"ed25519:-newkey ed25519\" \"rsapss:-newkey rsa-pss -pkeyopt rsa_keygen_bits:2048\" \"ec:$EC\" \"rsa:-newkey rsa:2048\"; do\n"
    "  n=${t%%:*}; a=${t#*:}\n"
    "  openssl req $Q -x509 $a -nodes -keyout $n.key -out $n.pem -days 30 -subj \"/CN=$n\"\n"
    "done\n"
    "openssl rsa -in rsa.key -traditional -out rsa-trad.key\n"
    "openssl ec -in ec.key -out ec-trad.key\n"
    "openssl pkey -in ec.key -aes128 -passout pass:x -out enc.key\n"
    ;

static const char *path(const char *name)
{
    /* A small ring so one expression can use several paths. */
    static char bufs[4][512];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s/%s", g_dir, name);
    return b;
}

static int write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path(name), "wb");
    if (f == NULL) return -1;
    size_t n = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && n == len) ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (mkdtemp(g_dir) == NULL) return -1;
    if (write_file("gen.sh", gen_script, sizeof(gen_script) - 1) < 0) return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cd '%s' && sh gen.sh > gen.log 2>&1", g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "certificate generation failed; see %s/gen.log\n", g_dir);
        return -1;
    }
    char err[256];
    g_trust = kx_trust_new(path("root.pem"), NULL, err, sizeof(err));
    if (g_trust == NULL) { fprintf(stderr, "%s\n", err); return -1; }
    g_trust_crl = kx_trust_new(path("root.pem"), path("crl.pem"), err, sizeof(err));
    if (g_trust_crl == NULL) { fprintf(stderr, "%s\n", err); return -1; }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kx_trust_free(g_trust);
    kx_trust_free(g_trust_crl);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A DER chain read from PEM files, in order. */
typedef struct {
    uint8_t *der[16];
    size_t len[16];
    size_t n;
} chain;

static void chain_add_file(chain *c, const char *name)
{
    BIO *b = BIO_new_file(path(name), "r");
    assert_non_null(b);
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        assert_true(c->n < 16);
        unsigned char *d = NULL;
        int n = i2d_X509(x, &d);
        assert_true(n > 0);
        c->der[c->n] = d;
        c->len[c->n++] = (size_t)n;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(b);
}

static void chain_add_bytes(chain *c, const void *p, size_t n)
{
    c->der[c->n] = OPENSSL_memdup(p, n);
    assert_non_null(c->der[c->n]);
    c->len[c->n++] = n;
}

static void chain_free(chain *c)
{
    for (size_t i = 0; i < c->n; i++) OPENSSL_free(c->der[i]);
    c->n = 0;
}

static kx_result verify(kx_trust *t, chain *c, const char *host, int peer_is_server)
{
    EVP_PKEY *pub = NULL;
    char subject[256];
    kx_result r = kx_trust_verify(t, (const uint8_t *const *)c->der, c->len, c->n, host, peer_is_server, &pub,
                                  subject, sizeof(subject));
    if (kx_failed(r)) {
        assert_null(pub);
        assert_string_equal(subject, "");
    } else {
        assert_non_null(pub);
    }
    EVP_PKEY_free(pub);
    /* Our failures must not leave libcrypto errors behind on the thread. */
    assert_int_equal(ERR_peek_error(), 0);
    return r;
}

/* Verify a chain built from the named files (leaf first). */
static kx_result verify_files(kx_trust *t, const char *host, int peer_is_server, const char *f1, const char *f2)
{
    chain c = { 0 };
    chain_add_file(&c, f1);
    if (f2 != NULL) chain_add_file(&c, f2);
    kx_result r = verify(t, &c, host, peer_is_server);
    chain_free(&c);
    return r;
}

static void assert_fails(kx_result r, uint8_t alert, const char *reason)
{
    assert_true(kx_failed(r));
    assert_int_equal(r.alert, alert);
    assert_string_equal(r.reason, reason);
}

static EVP_PKEY *read_key(const char *name)
{
    BIO *b = BIO_new_file(path(name), "r");
    assert_non_null(b);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

/* ------------------------------------------------------------- loading */

static void load_ok(const char *cert, const char *key, int type, size_t count)
{
    kx_certkey ck;
    char err[256] = "";
    assert_int_equal(kx_certkey_load(&ck, path(cert), path(key), err, sizeof(err)), 0);
    assert_int_equal(ck.count, count);
    assert_non_null(ck.key);
    assert_int_equal(EVP_PKEY_get_base_id(ck.key), type);
    for (size_t i = 0; i < ck.count; i++) {
        const unsigned char *p = ck.der[i];
        X509 *x = d2i_X509(NULL, &p, (long)ck.der_len[i]);
        assert_non_null(x);
        assert_ptr_equal(p, ck.der[i] + ck.der_len[i]);
        X509_free(x);
    }
    kx_certkey_free(&ck);
    assert_int_equal(ck.count, 0);
    assert_null(ck.key);
}

static void test_load_key_types(void **state)
{
    (void)state;
    load_ok("rsa.pem", "rsa.key", EVP_PKEY_RSA, 1);
    load_ok("rsa.pem", "rsa-trad.key", EVP_PKEY_RSA, 1);
    load_ok("rsapss.pem", "rsapss.key", EVP_PKEY_RSA_PSS, 1);
    load_ok("ec.pem", "ec.key", EVP_PKEY_EC, 1);
    load_ok("ec.pem", "ec-trad.key", EVP_PKEY_EC, 1);
    load_ok("ed25519.pem", "ed25519.key", EVP_PKEY_ED25519, 1);
}

static void test_load_chain_order(void **state)
{
    (void)state;
    kx_certkey ck;
    char err[256];
    assert_int_equal(kx_certkey_load(&ck, path("server-chain.pem"), path("server.key"), err, sizeof(err)), 0);
    assert_int_equal(ck.count, 2);
    chain c = { 0 };
    chain_add_file(&c, "server.pem");
    chain_add_file(&c, "inter.pem");
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(ck.der_len[i], c.len[i]);
        assert_memory_equal(ck.der[i], c.der[i], c.len[i]);
    }
    chain_free(&c);

    /* What was loaded is what a peer would verify. */
    EVP_PKEY *pub = NULL;
    char subject[128];
    kx_result r = kx_trust_verify(g_trust, (const uint8_t *const *)ck.der, ck.der_len, ck.count, "localhost", 1,
                                  &pub, subject, sizeof(subject));
    assert_false(kx_failed(r));
    assert_int_equal(EVP_PKEY_eq(pub, ck.key), 1);
    EVP_PKEY_free(pub);
    kx_certkey_free(&ck);
}

static void load_fails(const char *cert, const char *key, const char *expect_file, const char *expect_problem)
{
    kx_certkey ck;
    char err[512] = "";
    char want[512];
    assert_int_equal(kx_certkey_load(&ck, cert, key, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: %s", expect_file, expect_problem);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("got \"%s\", want prefix \"%s\"", err, want);
    /* Nothing is left half-loaded, and freeing again is harmless. */
    assert_int_equal(ck.count, 0);
    assert_null(ck.key);
    kx_certkey_free(&ck);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_load_errors(void **state)
{
    (void)state;
    char cert[512], key[512];

    snprintf(cert, sizeof(cert), "%s", path("missing.pem"));
    load_fails(cert, path("server.key"), cert, "cannot open: No such file or directory");

    snprintf(cert, sizeof(cert), "%s", path("server.key"));
    load_fails(cert, path("server.key"), cert, "no certificate found");

    snprintf(key, sizeof(key), "%s", path("missing.key"));
    load_fails(path("server.pem"), key, key, "cannot open");

    snprintf(key, sizeof(key), "%s", path("server.pem"));
    load_fails(path("server.pem"), key, key, "no private key found");

    snprintf(key, sizeof(key), "%s", path("client.key"));
    load_fails(path("server-chain.pem"), key, key, "private key does not match certificate");

    /* The key of the intermediate does not match the leaf either. */
    snprintf(key, sizeof(key), "%s", path("inter.key"));
    load_fails(path("server-chain.pem"), key, key, "private key does not match certificate");

    snprintf(key, sizeof(key), "%s", path("enc.key"));
    load_fails(path("ec.pem"), key, key, "private key is encrypted");

    static const char bad_key[] = "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
    assert_int_equal(write_file("bad.key", bad_key, sizeof(bad_key) - 1), 0);
    snprintf(key, sizeof(key), "%s", path("bad.key"));
    load_fails(path("rsa.pem"), key, key, "cannot parse private key");

    static const char bad_cert[] = "-----BEGIN CERTIFICATE-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASC\n-----END CERTIFICATE-----\n";
    assert_int_equal(write_file("bad.pem", bad_cert, sizeof(bad_cert) - 1), 0);
    snprintf(cert, sizeof(cert), "%s", path("bad.pem"));
    load_fails(cert, path("rsa.key"), cert, "cannot parse certificate #1");

    /* KX_MAX_CHAIN + 1 certificates. */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cd '%s' && for i in 0 1 2 3 4 5 6 7 8 9 10; do cat rsa.pem; done > long.pem", g_dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cert, sizeof(cert), "%s", path("long.pem"));
    load_fails(cert, path("rsa.key"), cert, "too many certificates");

    /* A tiny error buffer truncates, never overflows. */
    kx_certkey ck;
    char small[8];
    memset(small, 'x', sizeof(small));
    assert_int_equal(kx_certkey_load(&ck, path("missing.pem"), path("rsa.key"), small, sizeof(small)), -1);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_int_equal(kx_certkey_load(&ck, path("missing.pem"), path("rsa.key"), NULL, 0), -1);
}

static void trust_fails(const char *ca, const char *crl, const char *expect_file, const char *expect_problem)
{
    char err[512] = "";
    char want[512];
    assert_null(kx_trust_new(ca, crl, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: %s", expect_file, expect_problem);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("got \"%s\", want prefix \"%s\"", err, want);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_trust_errors(void **state)
{
    (void)state;
    char ca[512], crl[512];
    snprintf(ca, sizeof(ca), "%s", path("missing-ca.pem"));
    trust_fails(ca, NULL, ca, "cannot open: No such file or directory");

    snprintf(ca, sizeof(ca), "%s", path("root.key"));
    trust_fails(ca, NULL, ca, "no usable CA certificate found");

    snprintf(crl, sizeof(crl), "%s", path("missing-crl.pem"));
    trust_fails(path("root.pem"), crl, crl, "cannot open");

    snprintf(crl, sizeof(crl), "%s", path("root.pem"));
    trust_fails(path("root.pem"), crl, crl, "no CRL found");

    kx_trust_free(NULL);
}

/* ---------------------------------------------------------- verification */

static void test_verify_good_chain(void **state)
{
    (void)state;
    chain c = { 0 };
    chain_add_file(&c, "server.pem");
    chain_add_file(&c, "inter.pem");
    EVP_PKEY *pub = NULL;
    char subject[128];
    kx_result r = kx_trust_verify(g_trust, (const uint8_t *const *)c.der, c.len, c.n, "localhost", 1, &pub, subject,
                                  sizeof(subject));
    assert_false(kx_failed(r));
    assert_string_equal(subject, "CN=localhost,O=ktlsx test");
    EVP_PKEY *key = read_key("server.key");
    assert_int_equal(EVP_PKEY_eq(pub, key), 1);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);

    /* A short subject buffer truncates with a terminator. */
    char tiny[5];
    r = kx_trust_verify(g_trust, (const uint8_t *const *)c.der, c.len, c.n, "localhost", 1, NULL, tiny, sizeof(tiny));
    assert_false(kx_failed(r));
    assert_string_equal(tiny, "CN=l");
    chain_free(&c);

    /* No name to check, and the name check being case-insensitive. */
    assert_false(kx_failed(verify_files(g_trust, NULL, 1, "server.pem", "inter.pem")));
    assert_false(kx_failed(verify_files(g_trust, "LocalHost", 1, "server.pem", "inter.pem")));
}

static void test_verify_missing_intermediate(void **state)
{
    (void)state;
    assert_fails(verify_files(g_trust, "localhost", 1, "server.pem", NULL), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: unable to get local issuer certificate");
}

static void test_verify_host_mismatch(void **state)
{
    (void)state;
    assert_fails(verify_files(g_trust, "example.com", 1, "server.pem", "inter.pem"), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: hostname mismatch");
    assert_fails(verify_files(g_trust, "sub.localhost", 1, "server.pem", "inter.pem"), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: hostname mismatch");
    /* An empty name would disable the check in OpenSSL: refused outright. */
    assert_fails(verify_files(g_trust, "", 1, "server.pem", "inter.pem"), KX_ALERT_INTERNAL_ERROR,
                 "empty host name to verify");
}

static void test_verify_ip(void **state)
{
    (void)state;
    assert_false(kx_failed(verify_files(g_trust, "127.0.0.1", 1, "server.pem", "inter.pem")));
    assert_fails(verify_files(g_trust, "127.0.0.2", 1, "server.pem", "inter.pem"), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: IP address mismatch");
    assert_fails(verify_files(g_trust, "::1", 1, "server.pem", "inter.pem"), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: IP address mismatch");
    assert_fails(verify_files(g_trust, "[::1]", 1, "server.pem", "inter.pem"), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: IP address mismatch");
}

static void test_verify_validity(void **state)
{
    (void)state;
    assert_fails(verify_files(g_trust, "localhost", 1, "expired.pem", "inter.pem"), KX_ALERT_CERTIFICATE_EXPIRED,
                 "certificate verify failed: certificate has expired");
    assert_fails(verify_files(g_trust, "localhost", 1, "notyet.pem", "inter.pem"), KX_ALERT_CERTIFICATE_EXPIRED,
                 "certificate verify failed: certificate is not yet valid");
}

static void test_verify_revoked(void **state)
{
    (void)state;
    assert_fails(verify_files(g_trust_crl, "localhost", 1, "revoked.pem", "inter.pem"), KX_ALERT_CERTIFICATE_REVOKED,
                 "certificate verify failed: certificate revoked");
    /* Same issuer, not on the CRL. */
    assert_false(kx_failed(verify_files(g_trust_crl, "localhost", 1, "good-crl.pem", "inter.pem")));
    assert_false(kx_failed(verify_files(g_trust_crl, "localhost", 1, "server.pem", "inter.pem")));
    /* Without the CRL nobody knows. */
    assert_false(kx_failed(verify_files(g_trust, "localhost", 1, "revoked.pem", "inter.pem")));
}

static void test_verify_unknown_ca(void **state)
{
    (void)state;
    assert_fails(verify_files(g_trust, "localhost", 1, "other.pem", "other-root.pem"), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: self-signed certificate in certificate chain");
    assert_fails(verify_files(g_trust, "localhost", 1, "other.pem", NULL), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: unable to get local issuer certificate");
    assert_fails(verify_files(g_trust, NULL, 1, "ec.pem", NULL), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: self-signed certificate");

    /* The system store does not know our test root. */
    char err[256];
    kx_trust *sys = kx_trust_new(NULL, NULL, err, sizeof(err));
    assert_non_null(sys);
    assert_fails(verify_files(sys, "localhost", 1, "server.pem", "inter.pem"), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: unable to get local issuer certificate");
    kx_trust_free(sys);
}

/* Parsed intermediates are reused only for identical DER, and the chain is
 * still verified in full each time. */
static void test_verify_intermediate_cache(void **state)
{
    (void)state;
    char err[256];
    kx_trust *t = kx_trust_new(path("root.pem"), NULL, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(kx_trust_cache_hits(t), 0);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_cache_hits(t), 0);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_cache_hits(t), 1);
    /* The cached intermediate carries no verdict: under a leaf it did not
     * sign, the chain still fails. */
    assert_true(kx_failed(verify_files(t, "localhost", 1, "other.pem", "inter.pem")));
    assert_int_equal(kx_trust_cache_hits(t), 2);

    /* One byte changed in the intermediate's signature: a different
     * certificate, parsed afresh, and the chain no longer verifies. */
    chain c = { 0 };
    chain_add_file(&c, "server.pem");
    chain_add_file(&c, "inter.pem");
    c.der[1][c.len[1] - 1] ^= 0x01;
    kx_result r = verify(t, &c, "localhost", 1);
    assert_true(kx_failed(r));
    assert_int_equal(kx_trust_cache_hits(t), 2);
    c.der[1][c.len[1] - 1] ^= 0x01;
    assert_false(kx_failed(verify(t, &c, "localhost", 1)));
    assert_int_equal(kx_trust_cache_hits(t), 3);
    chain_free(&c);

    /* Eight other certificates in the intermediate position push the least
     * recently used entries out (the cache has eight slots). */
    static const char *const others[] = { "client.pem", "expired.pem", "good-crl.pem", "notyet.pem",
                                          "other-root.pem", "other.pem", "revoked.pem", "root.pem" };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        (void)verify_files(t, "localhost", 1, "server.pem", others[i]);
    assert_int_equal(kx_trust_cache_hits(t), 3);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_cache_hits(t), 3);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_cache_hits(t), 4);
    kx_trust_free(t);
}

/* ---- verified-chain cache (issue 14) ---- */

/* A trust store over `ca` (+ `crl`) with a verified-chain cache of `entries`. */
static kx_trust *cached_trust(const char *ca, const char *crl, size_t entries)
{
    char err[256];
    kx_trust *t = kx_trust_new(path(ca), crl != NULL ? path(crl) : NULL, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(kx_trust_set_verify_cache(t, entries), 0);
    return t;
}

/* A hit gives what a full verification gives (key, subject), and the name is
 * checked on every hit with a full verification's errors. */
static void test_verified_cache_hit_and_name(void **state)
{
    (void)state;
    kx_trust *t = cached_trust("root.pem", NULL, 8);
    chain c = { 0 };
    chain_add_file(&c, "server.pem");
    chain_add_file(&c, "inter.pem");
    for (int round = 0; round < 2; round++) {
        EVP_PKEY *pub = NULL;
        char subject[256];
        kx_result r = kx_trust_verify(t, (const uint8_t *const *)c.der, c.len, c.n, "localhost", 1, &pub, subject,
                                      sizeof(subject));
        assert_false(kx_failed(r));
        assert_non_null(pub);
        assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
        assert_string_equal(subject, "CN=localhost,O=ktlsx test");
        EVP_PKEY_free(pub);
        assert_int_equal(kx_trust_verify_cache_hits(t), (unsigned long)round);
    }
    /* The cached chain used for other names: refused, as without the cache. */
    assert_fails(verify(t, &c, "example.com", 1), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: hostname mismatch");
    assert_fails(verify(t, &c, "127.0.0.2", 1), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: IP address mismatch");
    assert_fails(verify(t, &c, "[::1]", 1), KX_ALERT_BAD_CERTIFICATE, "certificate verify failed: IP address mismatch");
    assert_fails(verify(t, &c, "*.localhost", 1), KX_ALERT_BAD_CERTIFICATE,
                 "certificate verify failed: hostname mismatch");
    assert_int_equal(kx_trust_verify_cache_hits(t), 5);
    assert_false(kx_failed(verify(t, &c, "127.0.0.1", 1)));
    assert_false(kx_failed(verify(t, &c, NULL, 1)));
    assert_int_equal(kx_trust_verify_cache_hits(t), 7);
    /* Another role is another key: the server leaf is not a client certificate. */
    assert_fails(verify(t, &c, NULL, 0), KX_ALERT_UNSUPPORTED_CERTIFICATE,
                 "certificate verify failed: unsuitable certificate purpose");
    assert_int_equal(kx_trust_verify_cache_hits(t), 7);
    /* The truncated subject buffer of a hit, as test_verify_good_chain does it on a miss. */
    char tiny[8];
    assert_false(kx_failed(kx_trust_verify(t, (const uint8_t *const *)c.der, c.len, c.n, "localhost", 1, NULL, tiny,
                                           sizeof(tiny))));
    assert_string_equal(tiny, "CN=loca");
    chain_free(&c);
    kx_trust_free(t);
}

/* One byte changed anywhere in the chain is another chain: verified in full
 * (and refused), never answered from the entry of the original. */
static void test_verified_cache_changed_chain(void **state)
{
    (void)state;
    kx_trust *t = cached_trust("root.pem", NULL, 8);
    chain c = { 0 };
    chain_add_file(&c, "server.pem");
    chain_add_file(&c, "inter.pem");
    assert_false(kx_failed(verify(t, &c, "localhost", 1)));
    for (size_t i = 0; i < c.n; i++) {
        c.der[i][c.len[i] - 1] ^= 0x01; /* last byte of the signature */
        assert_true(kx_failed(verify(t, &c, "localhost", 1)));
        c.der[i][c.len[i] - 1] ^= 0x01;
    }
    assert_int_equal(kx_trust_verify_cache_hits(t), 0);
    /* The leaf alone (no intermediate) is not the cached chain either. */
    c.n = 1;
    assert_fails(verify(t, &c, "localhost", 1), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: unable to get local issuer certificate");
    c.n = 2;
    assert_false(kx_failed(verify(t, &c, "localhost", 1)));
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    chain_free(&c);
    kx_trust_free(t);
}

/* A different trust store has its own (empty) cache: what one store accepted
 * says nothing to another. */
static void test_verified_cache_other_store(void **state)
{
    (void)state;
    kx_trust *a = cached_trust("root.pem", NULL, 8), *b = cached_trust("other-root.pem", NULL, 8);
    assert_false(kx_failed(verify_files(a, "localhost", 1, "server.pem", "inter.pem")));
    assert_false(kx_failed(verify_files(a, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(a), 1);
    assert_fails(verify_files(b, "localhost", 1, "server.pem", "inter.pem"), KX_ALERT_UNKNOWN_CA,
                 "certificate verify failed: unable to get local issuer certificate");
    assert_int_equal(kx_trust_verify_cache_hits(b), 0);
    kx_trust_free(a);
    kx_trust_free(b);
}

/* Entries expire with the earliest notAfter of the chain (and are not used
 * before the latest notBefore): past it the chain is verified again, and fails. */
static void test_verified_cache_expiry(void **state)
{
    (void)state;
    kx_trust *t = cached_trust("root.pem", NULL, 8);
    time_t now = time(NULL);
    kx_trust_set_time(t, now);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    /* Everything was issued for 30 days. */
    kx_trust_set_time(t, now + 31 * 86400);
    assert_fails(verify_files(t, "localhost", 1, "server.pem", "inter.pem"), KX_ALERT_CERTIFICATE_EXPIRED,
                 "certificate verify failed: certificate has expired");
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    /* The expired entry was dropped: back at `now`, a full verification first. */
    kx_trust_set_time(t, now);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    kx_trust_set_time(t, now - 2 * 86400);
    assert_fails(verify_files(t, "localhost", 1, "server.pem", "inter.pem"), KX_ALERT_CERTIFICATE_EXPIRED,
                 "certificate verify failed: certificate is not yet valid");
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    kx_trust_free(t);
}

/* With CRLs: a revoked leaf is never cached; a good one is served only until
 * the CRL's nextUpdate, after which the full verification reports the stale CRL. */
static void test_verified_cache_crl(void **state)
{
    (void)state;
    kx_trust *t = cached_trust("root.pem", "crl-1h.pem", 8);
    time_t now = time(NULL);
    kx_trust_set_time(t, now);
    for (int i = 0; i < 2; i++)
        assert_fails(verify_files(t, "localhost", 1, "revoked.pem", "inter.pem"), KX_ALERT_CERTIFICATE_REVOKED,
                     "certificate verify failed: certificate revoked");
    assert_false(kx_failed(verify_files(t, "localhost", 1, "good-crl.pem", "inter.pem")));
    assert_false(kx_failed(verify_files(t, "localhost", 1, "good-crl.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    kx_trust_set_time(t, now + 2 * 3600);
    assert_fails(verify_files(t, "localhost", 1, "good-crl.pem", "inter.pem"), KX_ALERT_CERTIFICATE_EXPIRED,
                 "certificate verify failed: CRL has expired");
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    kx_trust_free(t);

    /* Cached without a CRL, then a store with the CRL (what a CRL change
     * builds): the revoked leaf is refused at once. */
    kx_trust *before = cached_trust("root.pem", NULL, 8);
    assert_false(kx_failed(verify_files(before, "localhost", 1, "revoked.pem", "inter.pem")));
    assert_false(kx_failed(verify_files(before, "localhost", 1, "revoked.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(before), 1);
    kx_trust_free(before);
    kx_trust *after = cached_trust("root.pem", "crl.pem", 8);
    assert_fails(verify_files(after, "localhost", 1, "revoked.pem", "inter.pem"), KX_ALERT_CERTIFICATE_REVOKED,
                 "certificate verify failed: certificate revoked");
    kx_trust_free(after);
}

/* Bounded, least recently used out first; 0 = off; a new size starts empty. */
static void test_verified_cache_lru_and_off(void **state)
{
    (void)state;
    kx_trust *t = cached_trust("root.pem", NULL, 2);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));   /* A */
    assert_false(kx_failed(verify_files(t, "localhost", 1, "good-crl.pem", "inter.pem"))); /* B */
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));   /* A hit */
    assert_int_equal(kx_trust_verify_cache_hits(t), 1);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "revoked.pem", "inter.pem"))); /* C evicts B */
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));  /* A hit */
    assert_int_equal(kx_trust_verify_cache_hits(t), 2);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "good-crl.pem", "inter.pem"))); /* B: miss */
    assert_int_equal(kx_trust_verify_cache_hits(t), 2);

    assert_int_equal(kx_trust_set_verify_cache(t, 4), 0);
    assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(t), 2);
    assert_int_equal(kx_trust_set_verify_cache(t, 0), 0);
    for (int i = 0; i < 3; i++)
        assert_false(kx_failed(verify_files(t, "localhost", 1, "server.pem", "inter.pem")));
    assert_int_equal(kx_trust_verify_cache_hits(t), 2);
    assert_int_equal(kx_trust_set_verify_cache(NULL, 4), -1);
    assert_int_equal(kx_trust_verify_cache_hits(NULL), 0);
    kx_trust_free(t);
}

static void test_verify_garbage(void **state)
{
    (void)state;
    static const uint8_t junk[] = { 0x30, 0x03, 0x01, 0x02, 0x03 };
    chain c = { 0 };
    chain_add_bytes(&c, junk, sizeof(junk));
    assert_fails(verify(g_trust, &c, "localhost", 1), KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
    chain_free(&c);

    /* A valid certificate followed by a trailing byte. */
    chain_add_file(&c, "server.pem");
    uint8_t *longer = OPENSSL_malloc(c.len[0] + 1);
    assert_non_null(longer);
    memcpy(longer, c.der[0], c.len[0]);
    longer[c.len[0]] = 0;
    OPENSSL_free(c.der[0]);
    c.der[0] = longer;
    c.len[0]++;
    assert_fails(verify(g_trust, &c, "localhost", 1), KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
    chain_free(&c);

    /* Garbage in the intermediate position. */
    chain_add_file(&c, "server.pem");
    chain_add_bytes(&c, junk, sizeof(junk));
    assert_fails(verify(g_trust, &c, "localhost", 1), KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
    chain_free(&c);

    /* Zero-length entry and empty chain. */
    chain_add_bytes(&c, junk, 1);
    c.len[0] = 0;
    assert_fails(verify(g_trust, &c, "localhost", 1), KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
    chain_free(&c);
    assert_fails(verify(g_trust, &c, "localhost", 1), KX_ALERT_BAD_CERTIFICATE, "empty certificate chain");
}

static void test_verify_purpose(void **state)
{
    (void)state;
    /* A clientAuth-only certificate is fine for a client peer... */
    assert_false(kx_failed(verify_files(g_trust, NULL, 0, "client.pem", "inter.pem")));
    /* ...but not for a server peer, and vice versa. */
    assert_fails(verify_files(g_trust, NULL, 1, "client.pem", "inter.pem"), KX_ALERT_UNSUPPORTED_CERTIFICATE,
                 "certificate verify failed: unsuitable certificate purpose");
    assert_fails(verify_files(g_trust, NULL, 0, "server.pem", "inter.pem"), KX_ALERT_UNSUPPORTED_CERTIFICATE,
                 "certificate verify failed: unsuitable certificate purpose");
}

static void test_leaf_key(void **state)
{
    (void)state;
    chain c = { 0 };
    chain_add_file(&c, "other.pem"); /* untrusted issuer: no verification here */
    EVP_PKEY *pub = NULL;
    char subject[128];
    kx_result r = kx_cert_leaf_key(c.der[0], c.len[0], &pub, subject, sizeof(subject));
    assert_false(kx_failed(r));
    assert_string_equal(subject, "CN=localhost,O=ktlsx test");
    EVP_PKEY *key = read_key("server.key");
    assert_int_equal(EVP_PKEY_eq(pub, key), 1);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);

    r = kx_cert_leaf_key(c.der[0], c.len[0] - 1, &pub, subject, sizeof(subject));
    assert_fails(r, KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
    assert_null(pub);
    assert_string_equal(subject, "");
    assert_int_equal(ERR_peek_error(), 0);
    chain_free(&c);

    chain_add_file(&c, "ed25519.pem");
    r = kx_cert_leaf_key(c.der[0], c.len[0], &pub, subject, sizeof(subject));
    assert_false(kx_failed(r));
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_ED25519);
    assert_string_equal(subject, "CN=ed25519");
    EVP_PKEY_free(pub);
    chain_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_key_types),
        cmocka_unit_test(test_load_chain_order),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_trust_errors),
        cmocka_unit_test(test_verify_good_chain),
        cmocka_unit_test(test_verify_missing_intermediate),
        cmocka_unit_test(test_verify_host_mismatch),
        cmocka_unit_test(test_verify_ip),
        cmocka_unit_test(test_verify_validity),
        cmocka_unit_test(test_verify_revoked),
        cmocka_unit_test(test_verify_unknown_ca),
        cmocka_unit_test(test_verify_intermediate_cache),
        cmocka_unit_test(test_verified_cache_hit_and_name),
        cmocka_unit_test(test_verified_cache_changed_chain),
        cmocka_unit_test(test_verified_cache_other_store),
        cmocka_unit_test(test_verified_cache_expiry),
        cmocka_unit_test(test_verified_cache_crl),
        cmocka_unit_test(test_verified_cache_lru_and_off),
        cmocka_unit_test(test_verify_garbage),
        cmocka_unit_test(test_verify_purpose),
        cmocka_unit_test(test_leaf_key),
    };
    return cmocka_run_group_tests_name("x509", tests, group_setup, group_teardown);
}
