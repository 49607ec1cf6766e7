/* handshake/config: every setter returns 0, or -1 with a one-line message
 * naming the file or value at fault; bad input leaves the previous setting
 * in place; good lists (IANA and OpenSSL names, ',' and ':' separators,
 * aliases) are accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

#include <time.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The call fails and the message mentions `needle`. */
#define assert_setter_fails(cfg, expr, needle)                                            \
    do {                                                                                  \
        int rc__ = (expr);                                                                \
        if (rc__ != -1) fail_msg("%s returned %d, wanted -1", #expr, rc__);               \
        const char *m__ = ktlsx_config_error(cfg);                                        \
        assert_non_null(m__);                                                             \
        if (strstr(m__, (needle)) == NULL)                                                \
            fail_msg("%s: error \"%s\" does not mention \"%s\"", #expr, m__, (needle));   \
        if (strchr(m__, '\n')) fail_msg("%s: error is not one line: \"%s\"", #expr, m__); \
    } while (0)

#define assert_setter_ok(cfg, expr)                                                       \
    do {                                                                                  \
        int rc__ = (expr);                                                                \
        if (rc__ != 0) fail_msg("%s returned %d: %s", #expr, rc__, ktlsx_config_error(cfg)); \
    } while (0)

static int group_setup(void **state)
{
    (void)state;
    return kxt_pki_setup();
}

static int group_teardown(void **state)
{
    (void)state;
    kxt_pki_cleanup();
    return 0;
}

static int setup(void **state)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    if (!cfg) return -1;
    *state = cfg;
    return 0;
}

static int teardown(void **state)
{
    ktlsx_config_free(*state);
    return 0;
}

static void test_defaults(void **state)
{
    ktlsx_config *cfg = *state;
    assert_string_equal(ktlsx_config_error(cfg), "");
    /* Defaults: all three TLS 1.3 suites, x25519/P-256/P-384 then P-521/x448 (as OpenSSL offers them), TLS 1.2..1.3. */
    assert_true(kx_list_has(cfg->suites, cfg->suite_count, 0x1301));
    assert_true(kx_list_has(cfg->suites, cfg->suite_count, 0x1302));
    assert_true(kx_list_has(cfg->suites, cfg->suite_count, 0x1303));
    /* Static RSA key exchange is never on by default. */
    assert_false(kx_list_has(cfg->suites, cfg->suite_count, 0x009c));
    assert_int_equal(cfg->group_count, 5);
    static const uint16_t groups[5] = { KX_GROUP_X25519, KX_GROUP_SECP256R1, KX_GROUP_SECP384R1, KX_GROUP_SECP521R1,
                                        KX_GROUP_X448 };
    assert_memory_equal(cfg->groups, groups, sizeof groups);
    assert_false(kx_list_has(cfg->suites, cfg->suite_count, 0x1304)); /* AES-128-CCM: only when named */
    assert_int_equal(cfg->min_version, KTLSX_TLS12);
    assert_int_equal(cfg->max_version, KTLSX_TLS13);
    ktlsx_config *client = ktlsx_config_new(KTLSX_CLIENT);
    assert_non_null(client);
    ktlsx_config_free(client);
    ktlsx_config_free(NULL); /* harmless */
}

static void test_ciphers_bad(void **state)
{
    ktlsx_config *cfg = *state;
    assert_setter_ok(cfg, ktlsx_config_set_ciphers(cfg, "TLS_AES_256_GCM_SHA384"));
    assert_setter_fails(cfg, ktlsx_config_set_ciphers(cfg, "TLS_BOGUS_SUITE"), "TLS_BOGUS_SUITE");
    /* A bad name later in the list is named too, and nothing of the list is kept. */
    assert_setter_fails(cfg, ktlsx_config_set_ciphers(cfg, "TLS_AES_128_GCM_SHA256,RC4-MD5"), "RC4-MD5");
    assert_int_equal(cfg->suite_count, 1);
    assert_int_equal(cfg->suites[0], 0x1302);
    assert_setter_fails(cfg, ktlsx_config_set_ciphers(cfg, ""), "ciphers");
    assert_setter_fails(cfg, ktlsx_config_set_ciphers(cfg, "TLS_AES_128_GCM_SHA256,,TLS_AES_256_GCM_SHA384"), "ciphers");
    assert_int_equal(cfg->suite_count, 1);
    assert_int_equal(cfg->suites[0], 0x1302);
}

static void test_ciphers_good(void **state)
{
    ktlsx_config *cfg = *state;
    /* IANA names, in order. */
    assert_setter_ok(cfg, ktlsx_config_set_ciphers(cfg, "TLS_CHACHA20_POLY1305_SHA256,TLS_AES_128_GCM_SHA256"));
    assert_int_equal(cfg->suite_count, 2);
    assert_int_equal(cfg->suites[0], 0x1303);
    assert_int_equal(cfg->suites[1], 0x1301);
    /* OpenSSL names, ':' separated (as in an OpenSSL cipher string). */
    assert_setter_ok(cfg, ktlsx_config_set_ciphers(cfg, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305"));
    assert_int_equal(cfg->suite_count, 2);
    assert_int_equal(cfg->suites[0], 0xc02b);
    assert_int_equal(cfg->suites[1], 0xcca8);
    /* Mixed, with blanks, other case, and a duplicate (IANA + OpenSSL name of one suite). */
    assert_setter_ok(cfg, ktlsx_config_set_ciphers(
                              cfg, " tls_aes_256_gcm_sha384 , TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:ECDHE-RSA-AES256-GCM-SHA384"));
    assert_int_equal(cfg->suite_count, 2);
    assert_int_equal(cfg->suites[0], 0x1302);
    assert_int_equal(cfg->suites[1], 0xc030);
    /* Explicitly asking for static RSA is allowed. */
    assert_setter_ok(cfg, ktlsx_config_set_ciphers(cfg, "AES128-GCM-SHA256"));
    assert_int_equal(cfg->suites[0], 0x009c);
}

static void test_groups(void **state)
{
    ktlsx_config *cfg = *state;
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, "x9999"), "x9999");
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, "x25519,brainpoolP256r1"), "brainpoolP256r1");
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, ""), "groups");
    assert_int_equal(cfg->group_count, 5); /* defaults kept */
    assert_setter_ok(cfg, ktlsx_config_set_groups(cfg, "P-384,x25519"));
    assert_int_equal(cfg->group_count, 2);
    assert_int_equal(cfg->groups[0], KX_GROUP_SECP384R1);
    assert_int_equal(cfg->groups[1], KX_GROUP_X25519);
    /* Canonical names and aliases; duplicates collapse. */
    assert_setter_ok(cfg, ktlsx_config_set_groups(cfg, "secp256r1:prime256v1, P-256,secp384r1,X25519"));
    assert_int_equal(cfg->group_count, 3);
    assert_int_equal(cfg->groups[0], KX_GROUP_SECP256R1);
    assert_int_equal(cfg->groups[1], KX_GROUP_SECP384R1);
    assert_int_equal(cfg->groups[2], KX_GROUP_X25519);
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, "P-256,ffdhe2048"), "ffdhe2048");
    assert_int_equal(cfg->group_count, 3);
    /* conf-b: secp521r1 (alias P-521) and x448. */
    assert_setter_ok(cfg, ktlsx_config_set_groups(cfg, "x448,P-521,secp521r1"));
    assert_int_equal(cfg->group_count, 2);
    assert_int_equal(cfg->groups[0], KX_GROUP_X448);
    assert_int_equal(cfg->groups[1], KX_GROUP_SECP521R1);
}

static void test_versions(void **state)
{
    ktlsx_config *cfg = *state;
    assert_setter_fails(cfg, ktlsx_config_set_versions(cfg, 0x0301, KTLSX_TLS13), "0x0301");
    assert_setter_fails(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS12, 0x0305), "0x0305");
    assert_setter_fails(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS13, KTLSX_TLS12), "0x0304");
    assert_setter_fails(cfg, ktlsx_config_set_versions(cfg, 0, 0), "0x0000");
    assert_int_equal(cfg->min_version, KTLSX_TLS12);
    assert_int_equal(cfg->max_version, KTLSX_TLS13);
    assert_setter_ok(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS13, KTLSX_TLS13));
    assert_int_equal(cfg->min_version, KTLSX_TLS13);
    assert_setter_ok(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS12, KTLSX_TLS12));
    assert_int_equal(cfg->max_version, KTLSX_TLS12);
}

static void test_alpn_and_verify_mode(void **state)
{
    ktlsx_config *cfg = *state;
    assert_setter_ok(cfg, ktlsx_config_set_alpn(cfg, "h2,http/1.1"));
    assert_int_equal(cfg->alpn_len, 3 + 9);
    assert_memory_equal(cfg->alpn, "\x02h2\x08http/1.1", 12);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(ktlsx_config_set_alpn(cfg, longname), -1);
    assert_string_not_equal(ktlsx_config_error(cfg), "");
    assert_setter_ok(cfg, ktlsx_config_set_alpn(cfg, ""));
    assert_int_equal(cfg->alpn_len, 0);
    assert_setter_ok(cfg, ktlsx_config_set_alpn(cfg, NULL));

    assert_setter_ok(cfg, ktlsx_config_set_verify_client(cfg, KTLSX_VERIFY_REQUIRE));
    assert_setter_fails(cfg, ktlsx_config_set_verify_client(cfg, (enum ktlsx_verify_client)7), "7");
    assert_int_equal(cfg->verify_client, KTLSX_VERIFY_REQUIRE);
    assert_setter_ok(cfg, ktlsx_config_set_insecure(cfg, 1));
    assert_true(cfg->insecure);
}

static void test_cert_files(void **state)
{
    ktlsx_config *cfg = *state;
    const char *missing = kxt_pki_path("no-such-cert.pem");
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, missing, kxt_pki_path("server-ecdsa.key")), missing);
    const char *nokey = kxt_pki_path("no-such-key.pem");
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("server-ecdsa.pem"), nokey), nokey);
    /* Not PEM at all. */
    const char *script = kxt_pki_path("gen.sh");
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, script, kxt_pki_path("server-ecdsa.key")), script);
    /* A key that does not match the certificate. */
    assert_int_equal(ktlsx_config_add_cert(cfg, kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("client.key")), -1);
    assert_string_not_equal(ktlsx_config_error(cfg), "");
    assert_int_equal(cfg->cert_count, 0);

    assert_setter_ok(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("server-rsa.pem"), kxt_pki_path("server-rsa.key")));
    assert_setter_ok(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key")));
    assert_setter_ok(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("server-ed25519.pem"), kxt_pki_path("server-ed25519.key")));
    assert_int_equal(cfg->cert_count, 3);
    assert_int_equal(cfg->certs[0].count, 2); /* leaf + intermediate */
    assert_setter_ok(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
    /* KX_MAX_CERTS reached: the file is named. */
    const char *fifth = kxt_pki_path("other.pem");
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, fifth, kxt_pki_path("other.key")), fifth);
    assert_int_equal(cfg->cert_count, KX_MAX_CERTS);
}

static void test_ca_crl_keylog_files(void **state)
{
    ktlsx_config *cfg = *state;
    const char *missing = kxt_pki_path("no-such-ca.pem");
    assert_setter_fails(cfg, ktlsx_config_set_ca_file(cfg, missing), missing);
    const char *key = kxt_pki_path("server-ecdsa.key"); /* PEM, but no certificate in it */
    assert_setter_fails(cfg, ktlsx_config_set_ca_file(cfg, key), key);
    assert_setter_ok(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")));
    assert_non_null(cfg->trust);
    const char *nocrl = kxt_pki_path("no-such-crl.pem");
    assert_setter_fails(cfg, ktlsx_config_set_crl_file(cfg, nocrl), nocrl);

    const char *badlog = "/nonexistent-dir-kxt/keys.log";
    assert_setter_fails(cfg, ktlsx_config_set_keylog_file(cfg, badlog), badlog);
    assert_null(cfg->keylog);
    assert_setter_ok(cfg, ktlsx_config_set_keylog_file(cfg, kxt_pki_path("keys.log")));
    assert_non_null(cfg->keylog);
    /* Replacing it closes the first one (ASan/valgrind would report a leak otherwise). */
    assert_setter_ok(cfg, ktlsx_config_set_keylog_file(cfg, kxt_pki_path("keys2.log")));
}

/* ---- 1.0: certificates, keys, CAs and CRLs from memory ----
 * Each input as PEM and as DER, and refused when mismatched, garbage,
 * truncated or empty with a message naming the buffer; handshakes on
 * memory-loaded certificates, trust anchors and CRLs. */

typedef struct {
    uint8_t *data;
    size_t len;
} bytes;

static void bytes_free(bytes *b)
{
    if (b->data) OPENSSL_cleanse(b->data, b->len); /* some of them are keys */
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static bytes slurp(const char *name)
{
    bytes b = { 0 };
    FILE *f = fopen(kxt_pki_path(name), "rb");
    assert_non_null(f);
    size_t cap = 0;
    for (;;) {
        if (b.len == cap) {
            cap = cap ? cap * 2 : 4096;
            b.data = realloc(b.data, cap);
            assert_non_null(b.data);
        }
        size_t n = fread(b.data + b.len, 1, cap - b.len, f);
        if (n == 0) break;
        b.len += n;
    }
    fclose(f);
    return b;
}

static bytes from_bio(BIO *bio)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    assert_true(n > 0);
    bytes b = { malloc((size_t)n), (size_t)n };
    assert_non_null(b.data);
    memcpy(b.data, p, (size_t)n);
    BIO_free(bio);
    return b;
}

/* Every certificate of a PEM file as DER, one after the other. */
static bytes chain_der(const char *name)
{
    BIO *in = BIO_new_file(kxt_pki_path(name), "r"), *out = BIO_new(BIO_s_mem());
    assert_non_null(in);
    X509 *x;
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        assert_int_equal(i2d_X509_bio(out, x), 1);
        X509_free(x);
    }
    ERR_clear_error(); /* the end-of-PEM marker */
    BIO_free(in);
    return from_bio(out);
}

static X509 *read_cert(const char *name)
{
    BIO *in = BIO_new_file(kxt_pki_path(name), "r");
    assert_non_null(in);
    X509 *x = PEM_read_bio_X509(in, NULL, NULL, NULL);
    BIO_free(in);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *name)
{
    BIO *in = BIO_new_file(kxt_pki_path(name), "r");
    assert_non_null(in);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO_free(in);
    assert_non_null(k);
    return k;
}

/* A key file as DER: PKCS#8, or the traditional per-algorithm form. */
static bytes key_der(const char *name, bool pkcs8)
{
    EVP_PKEY *k = read_key(name);
    BIO *out = BIO_new(BIO_s_mem());
    assert_non_null(out);
    if (pkcs8)
        assert_int_equal(i2d_PKCS8PrivateKey_bio(out, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(i2d_PrivateKey_bio(out, k), 1);
    EVP_PKEY_free(k);
    return from_bio(out);
}

/* A CRL issued by the intermediate CA (which issued every leaf), revoking
 * `revoked_leaf` (a PEM file) or nothing; PEM or DER. */
static bytes make_crl(const char *revoked_leaf, bool pem)
{
    X509 *issuer = read_cert("int.pem");
    EVP_PKEY *ikey = read_key("int.key");
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)), 1);
    ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), 0, -3600);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
    ASN1_TIME_adj(t, time(NULL), 1, 0);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
    if (revoked_leaf) {
        X509 *leaf = read_cert(revoked_leaf);
        X509_REVOKED *r = X509_REVOKED_new();
        assert_int_equal(X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(leaf)), 1);
        ASN1_TIME_adj(t, time(NULL), 0, -60);
        assert_int_equal(X509_REVOKED_set_revocationDate(r, t), 1);
        assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
        X509_free(leaf);
    }
    ASN1_TIME_free(t);
    /* An authority key identifier, as real CAs include; OpenSSL matches on it. */
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, crl, 0);
    X509_EXTENSION *akid = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    assert_non_null(akid);
    assert_int_equal(X509_CRL_add_ext(crl, akid, -1), 1);
    X509_EXTENSION_free(akid);
    assert_true(X509_CRL_sign(crl, ikey, EVP_sha256()) > 0);
    BIO *out = BIO_new(BIO_s_mem());
    assert_int_equal(pem ? PEM_write_bio_X509_CRL(out, crl) : i2d_X509_CRL_bio(out, crl), 1);
    X509_CRL_free(crl);
    EVP_PKEY_free(ikey);
    X509_free(issuer);
    return from_bio(out);
}

/* The loaded chain is the file's chain, DER for DER. */
static void assert_cert_is(const ktlsx_config *cfg, size_t idx, const char *pem_file)
{
    bytes want = chain_der(pem_file);
    const kx_certkey *ck = &cfg->certs[idx];
    size_t off = 0;
    for (size_t i = 0; i < ck->count; i++) {
        assert_true(off + ck->der_len[i] <= want.len);
        assert_memory_equal(ck->der[i], want.data + off, ck->der_len[i]);
        off += ck->der_len[i];
    }
    assert_int_equal(off, want.len);
    bytes_free(&want);
}

static void test_cert_mem_pem(void **state)
{
    ktlsx_config *cfg = *state;
    bytes chain = slurp("server-ecdsa.pem"), key = slurp("server-ecdsa.key");
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, chain.data, chain.len, key.data, key.len));
    assert_int_equal(cfg->cert_count, 1);
    assert_int_equal(cfg->certs[0].count, 2); /* leaf + intermediate */
    assert_cert_is(cfg, 0, "server-ecdsa.pem");
    /* RSA and Ed25519 as well (PKCS#8 PEM keys from genpkey). */
    bytes_free(&chain);
    bytes_free(&key);
    chain = slurp("server-rsa.pem");
    key = slurp("server-rsa.key");
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, chain.data, chain.len, key.data, key.len));
    bytes_free(&chain);
    bytes_free(&key);
    chain = slurp("server-ed25519.pem");
    key = slurp("server-ed25519.key");
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, chain.data, chain.len, key.data, key.len));
    assert_int_equal(cfg->cert_count, 3);
    assert_cert_is(cfg, 2, "server-ed25519.pem");
    bytes_free(&chain);
    bytes_free(&key);
}

static void test_cert_mem_der(void **state)
{
    ktlsx_config *cfg = *state;
    /* One DER certificate; a PKCS#8 DER key. */
    bytes leaf = chain_der("server-ecdsa-leaf.pem"), key8 = key_der("server-ecdsa.key", true);
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, leaf.data, leaf.len, key8.data, key8.len));
    assert_int_equal(cfg->certs[0].count, 1);
    assert_cert_is(cfg, 0, "server-ecdsa-leaf.pem");
    /* Concatenated DER certificates (leaf, intermediate); the traditional EC key form. */
    bytes chain = chain_der("server-ecdsa.pem"), keyt = key_der("server-ecdsa.key", false);
    assert_true(keyt.len != key8.len || memcmp(keyt.data, key8.data, keyt.len) != 0); /* really another form */
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, chain.data, chain.len, keyt.data, keyt.len));
    assert_int_equal(cfg->certs[1].count, 2);
    assert_cert_is(cfg, 1, "server-ecdsa.pem");
    bytes_free(&chain);
    bytes_free(&keyt);
    /* RSA: traditional (PKCS#1) DER key. */
    chain = chain_der("server-rsa.pem");
    keyt = key_der("server-rsa.key", false);
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, chain.data, chain.len, keyt.data, keyt.len));
    bytes_free(&chain);
    bytes_free(&keyt);
    /* Ed25519: PKCS#8 is its only form. */
    chain = chain_der("server-ed25519.pem");
    bytes_free(&key8);
    key8 = key_der("server-ed25519.key", true);
    assert_setter_ok(cfg, ktlsx_config_add_cert_mem(cfg, chain.data, chain.len, key8.data, key8.len));
    assert_int_equal(cfg->cert_count, 4);
    bytes_free(&chain);
    bytes_free(&key8);
    bytes_free(&leaf);
}

static void test_cert_mem_refused(void **state)
{
    ktlsx_config *cfg = *state;
    bytes pem = slurp("server-ecdsa.pem"), key = slurp("server-ecdsa.key");
    bytes der = chain_der("server-ecdsa.pem"), kder = key_der("server-ecdsa.key", true);
    bytes other_key = slurp("client.key");
    static const uint8_t garbage[] = "this is neither PEM nor DER, just some text";

    /* Mismatched key. */
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, other_key.data, other_key.len),
                        "private key buffer: private key does not match certificate");
    /* Garbage. */
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, garbage, sizeof garbage, key.data, key.len),
                        "certificate chain buffer: no certificate found");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, garbage, sizeof garbage),
                        "private key buffer: no private key found");
    /* A key where the chain belongs and the other way round. */
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, key.data, key.len, key.data, key.len),
                        "certificate chain buffer: no certificate found");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, pem.data, pem.len),
                        "private key buffer: no private key found");
    /* Truncated: PEM and DER, chain and key. */
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len / 3, key.data, key.len),
                        "certificate chain buffer: cannot parse certificate #1");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, der.data, der.len - 10, key.data, key.len),
                        "certificate chain buffer: cannot parse certificate #2 (DER)");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, der.data, 100, key.data, key.len),
                        "certificate chain buffer: cannot parse certificate #1 (DER)");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, key.data, key.len / 2),
                        "private key buffer: cannot parse private key");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, kder.data, kder.len - 1),
                        "private key buffer: cannot parse private key (DER)");
    /* DER with trailing bytes is not a key plus padding. */
    uint8_t padded[512];
    assert_true(kder.len + 4 <= sizeof padded);
    memcpy(padded, kder.data, kder.len);
    memset(padded + kder.len, 0, 4);
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, padded, kder.len + 4),
                        "private key buffer: cannot parse private key (DER)");
    /* Empty. */
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, 0, key.data, key.len),
                        "certificate chain buffer: empty");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, NULL, 10, key.data, key.len),
                        "certificate chain buffer: empty");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, key.data, 0),
                        "private key buffer: empty");
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, NULL, 0),
                        "private key buffer: empty");
    assert_int_equal(ktlsx_config_add_cert_mem(NULL, pem.data, pem.len, key.data, key.len), -1);
    /* Encrypted keys are named as such. */
    EVP_PKEY *k = read_key("server-ecdsa.key");
    BIO *enc = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(enc, k, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)"pass"), 1);
    EVP_PKEY_free(k);
    bytes encb = from_bio(enc);
    assert_setter_fails(cfg, ktlsx_config_add_cert_mem(cfg, pem.data, pem.len, encb.data, encb.len),
                        "private key buffer: private key is encrypted");
    /* Nothing was added, and nothing is left on OpenSSL's error queue. */
    assert_int_equal(cfg->cert_count, 0);
    assert_int_equal(ERR_peek_error(), 0);
    /* The file variant still names its files (it takes the same path). */
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("client.key")),
                        "client.key: private key does not match certificate");
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, NULL, kxt_pki_path("client.key")), "certificate file is NULL");
    bytes_free(&encb);
    bytes_free(&pem);
    bytes_free(&key);
    bytes_free(&der);
    bytes_free(&kder);
    bytes_free(&other_key);
}

static void test_cert_pkey(void **state)
{
    ktlsx_config *cfg = *state;
    bytes pem = slurp("server-ecdsa.pem"), der = chain_der("server-ecdsa.pem");
    EVP_PKEY *k = read_key("server-ecdsa.key");
    assert_setter_ok(cfg, ktlsx_config_add_cert_pkey(cfg, pem.data, pem.len, k));
    assert_setter_ok(cfg, ktlsx_config_add_cert_pkey(cfg, der.data, der.len, k));
    assert_int_equal(cfg->cert_count, 2);
    assert_ptr_equal(cfg->certs[0].key, k); /* its own reference on the caller's key */
    EVP_PKEY_free(k); /* the caller's reference goes; the configuration's stay */
    assert_int_equal(EVP_PKEY_get_bits(cfg->certs[1].key), 256);

    EVP_PKEY *other = read_key("client.key");
    assert_setter_fails(cfg, ktlsx_config_add_cert_pkey(cfg, pem.data, pem.len, other),
                        "EVP_PKEY: private key does not match certificate");
    assert_setter_fails(cfg, ktlsx_config_add_cert_pkey(cfg, pem.data, pem.len, NULL), "EVP_PKEY: NULL");
    assert_setter_fails(cfg, ktlsx_config_add_cert_pkey(cfg, NULL, 0, other), "certificate chain buffer: empty");
    assert_setter_fails(cfg, ktlsx_config_add_cert_pkey(cfg, pem.data, 40, other),
                        "certificate chain buffer: cannot parse certificate #1");
    /* The public half alone matches the leaf but cannot sign. */
    X509 *leaf = read_cert("server-ecdsa.pem");
    EVP_PKEY *pub = X509_get_pubkey(leaf);
    assert_non_null(pub);
    assert_setter_fails(cfg, ktlsx_config_add_cert_pkey(cfg, pem.data, pem.len, pub), "EVP_PKEY: not a private key");
    assert_int_equal(cfg->cert_count, 2);
    assert_int_equal(ERR_peek_error(), 0);
    /* Refusals took no reference: these are the last ones. */
    EVP_PKEY_free(pub);
    EVP_PKEY_free(other);
    X509_free(leaf);
    bytes_free(&pem);
    bytes_free(&der);
}

static void test_ca_mem(void **state)
{
    ktlsx_config *cfg = *state;
    bytes pem = slurp("ca.pem"), der = chain_der("ca.pem"), key = slurp("ca.key");
    assert_setter_ok(cfg, ktlsx_config_set_ca_mem(cfg, pem.data, pem.len));
    assert_non_null(cfg->trust);
    assert_setter_ok(cfg, ktlsx_config_set_ca_mem(cfg, der.data, der.len));
    /* Two roots in one PEM bundle, and two DER certificates back to back. */
    bytes two = slurp("ca.pem"), other = slurp("other-ca.pem");
    two.data = realloc(two.data, two.len + other.len);
    memcpy(two.data + two.len, other.data, other.len);
    two.len += other.len;
    assert_setter_ok(cfg, ktlsx_config_set_ca_mem(cfg, two.data, two.len));
    bytes two_der = chain_der("other-ca.pem");
    bytes both_der = { malloc(der.len + two_der.len), der.len + two_der.len };
    memcpy(both_der.data, der.data, der.len);
    memcpy(both_der.data + der.len, two_der.data, two_der.len);
    assert_setter_ok(cfg, ktlsx_config_set_ca_mem(cfg, both_der.data, both_der.len));

    kx_trust *kept = cfg->trust;
    static const uint8_t garbage[] = "not a certificate";
    assert_setter_fails(cfg, ktlsx_config_set_ca_mem(cfg, garbage, sizeof garbage), "CA buffer: no usable CA certificate found");
    assert_setter_fails(cfg, ktlsx_config_set_ca_mem(cfg, key.data, key.len), "CA buffer: no usable CA certificate found");
    assert_setter_fails(cfg, ktlsx_config_set_ca_mem(cfg, pem.data, pem.len / 2), "CA buffer: no usable CA certificate found");
    assert_setter_fails(cfg, ktlsx_config_set_ca_mem(cfg, der.data, der.len - 1), "CA buffer: no usable CA certificate found");
    assert_setter_fails(cfg, ktlsx_config_set_ca_mem(cfg, der.data, 0), "CA buffer: empty");
    assert_setter_fails(cfg, ktlsx_config_set_ca_mem(cfg, NULL, 5), "CA buffer: empty");
    assert_int_equal(ktlsx_config_set_ca_mem(NULL, pem.data, pem.len), -1);
    /* A refusal leaves the previous trust anchors in place. */
    assert_ptr_equal(cfg->trust, kept);
    assert_int_equal(cfg->ca_len, both_der.len);
    assert_int_equal(ERR_peek_error(), 0);
    /* The file setter replaces the memory one and back to the system store with NULL. */
    assert_setter_ok(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")));
    assert_int_equal(cfg->ca_len, pem.len);
    assert_setter_ok(cfg, ktlsx_config_set_ca_file(cfg, NULL));
    assert_null(cfg->ca_data);
    bytes_free(&pem);
    bytes_free(&der);
    bytes_free(&key);
    bytes_free(&two);
    bytes_free(&other);
    bytes_free(&two_der);
    bytes_free(&both_der);
}

static void test_crl_mem(void **state)
{
    ktlsx_config *cfg = *state;
    bytes pem = make_crl("client-leaf.pem", true), der = make_crl(NULL, false), ca = slurp("ca.pem");
    assert_setter_ok(cfg, ktlsx_config_set_ca_mem(cfg, ca.data, ca.len));
    assert_setter_ok(cfg, ktlsx_config_set_crl_mem(cfg, pem.data, pem.len));
    assert_setter_ok(cfg, ktlsx_config_set_crl_mem(cfg, der.data, der.len));
    kx_trust *kept = cfg->trust;
    static const uint8_t garbage[] = "no revocation here";
    assert_setter_fails(cfg, ktlsx_config_set_crl_mem(cfg, garbage, sizeof garbage), "CRL buffer: no CRL found");
    assert_setter_fails(cfg, ktlsx_config_set_crl_mem(cfg, ca.data, ca.len), "CRL buffer: no CRL found");
    assert_setter_fails(cfg, ktlsx_config_set_crl_mem(cfg, pem.data, pem.len - 40), "CRL buffer: cannot parse CRL #1");
    assert_setter_fails(cfg, ktlsx_config_set_crl_mem(cfg, der.data, der.len - 3), "CRL buffer: cannot parse CRL #1 (DER)");
    assert_setter_fails(cfg, ktlsx_config_set_crl_mem(cfg, der.data, 0), "CRL buffer: empty");
    assert_setter_fails(cfg, ktlsx_config_set_crl_mem(cfg, NULL, 0), "CRL buffer: empty");
    assert_ptr_equal(cfg->trust, kept);
    assert_int_equal(cfg->crl_len, der.len);
    /* The CA's name is kept for messages; the CRL file setter names its file. */
    const char *bad = kxt_pki_path("server-ecdsa.key");
    assert_setter_fails(cfg, ktlsx_config_set_crl_file(cfg, bad), bad);
    assert_setter_ok(cfg, ktlsx_config_set_crl_file(cfg, NULL));
    assert_null(cfg->crl_data);
    assert_int_equal(ERR_peek_error(), 0);
    bytes_free(&pem);
    bytes_free(&der);
    bytes_free(&ca);
}

/* A TLS 1.3 and a TLS 1.2 handshake on a server certificate, key and client
 * trust anchors loaded from memory, DER and PEM. */
static void test_handshake_mem(void **state)
{
    (void)state;
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS12 : KTLSX_TLS13;
        bytes chain = chain_der("server-rsa.pem"), key = key_der("server-rsa.key", v == 0);
        bytes ca = v ? slurp("ca.pem") : chain_der("ca.pem");
        ktlsx_config *sc = ktlsx_config_new(KTLSX_SERVER), *cc = ktlsx_config_new(KTLSX_CLIENT);
        KXT_CFG_OK(sc, ktlsx_config_add_cert_mem(sc, chain.data, chain.len, key.data, key.len));
        KXT_CFG_OK(cc, ktlsx_config_set_ca_mem(cc, ca.data, ca.len));
        KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, ver, ver));
        bytes_free(&chain); /* the configurations keep their own copies */
        bytes_free(&key);
        bytes_free(&ca);
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_int_equal(ktlsx_version(p.c), ver);
        assert_string_equal(ktlsx_peer_subject(p.c), "CN=localhost,O=ktlsx test");
        kxt_send_recv(&p, true, "from memory", 11);
        kxt_pair_free(&p);
    }
    /* The same client against a server whose certificate another CA issued: refused. */
    bytes ca = slurp("ca.pem");
    ktlsx_config *cc = ktlsx_config_new(KTLSX_CLIENT);
    KXT_CFG_OK(cc, ktlsx_config_set_ca_mem(cc, ca.data, ca.len));
    ktlsx_config *sc = ktlsx_config_new(KTLSX_SERVER);
    KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("other.pem"), kxt_pki_path("other.key")));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_UNKNOWN_CA);
    kxt_pair_free(&p);
    bytes_free(&ca);
}

/* mTLS with the client's certificate as an EVP_PKEY and the server's CA and
 * CRL from memory: a CRL revoking the client's certificate refuses it. */
static void test_handshake_mem_crl(void **state)
{
    (void)state;
    for (int revoked = 0; revoked < 2; revoked++) {
        for (int pem = 0; pem < 2; pem++) {
            bytes crl = make_crl(revoked ? "client-leaf.pem" : "server-ecdsa-leaf.pem", pem);
            bytes ca = slurp("ca.pem"), cchain = slurp("client.pem");
            ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
            KXT_CFG_OK(sc, ktlsx_config_set_ca_mem(sc, ca.data, ca.len));
            KXT_CFG_OK(sc, ktlsx_config_set_crl_mem(sc, crl.data, crl.len));
            KXT_CFG_OK(sc, ktlsx_config_set_verify_client(sc, KTLSX_VERIFY_REQUIRE));
            ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
            EVP_PKEY *k = read_key("client.key");
            KXT_CFG_OK(cc, ktlsx_config_add_cert_pkey(cc, cchain.data, cchain.len, k));
            EVP_PKEY_free(k);
            kxt_pair p;
            kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
            kxt_pump(&p);
            if (revoked) {
                kxt_assert_failed(&p, false, KX_ALERT_CERTIFICATE_REVOKED);
            } else {
                kxt_assert_done(&p);
                assert_non_null(strstr(ktlsx_peer_subject(p.s), "ktlsx-client"));
            }
            kxt_pair_free(&p);
            bytes_free(&crl);
            bytes_free(&ca);
            bytes_free(&cchain);
        }
    }
}

/* ---- issue 14: verified-chain cache (ktlsx_config_set_verify_cache) ---- */

static void test_verify_cache_setter(void **state)
{
    (void)state;
    assert_int_equal(ktlsx_config_set_verify_cache(NULL, 4), -1);
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_CLIENT);
    assert_non_null(cfg);
    assert_int_equal(cfg->verify_cache_entries, KTLSX_VERIFY_CACHE_DEFAULT);
    assert_int_equal(ktlsx_config_set_verify_cache(cfg, KTLSX_VERIFY_CACHE_MAX + 1), -1);
    assert_string_equal(ktlsx_config_error(cfg), "verify cache entries: 65537 (at most 65536)");
    assert_int_equal(cfg->verify_cache_entries, KTLSX_VERIFY_CACHE_DEFAULT);
    assert_int_equal(ktlsx_config_set_verify_cache(cfg, 0), 0);
    assert_int_equal(cfg->verify_cache_entries, 0);
    assert_int_equal(ktlsx_config_set_verify_cache(cfg, KTLSX_VERIFY_CACHE_MAX), 0);
    ktlsx_config_free(cfg);
}

struct verify_calls {
    int calls, ok;
};

static int count_verify(ktlsx_conn *conn, int chain_ok, const uint8_t *const *der, const size_t *der_len,
                        size_t count, void *arg)
{
    (void)conn, (void)der, (void)der_len, (void)count;
    struct verify_calls *v = arg;
    v->calls++;
    v->ok += chain_ok != 0;
    return chain_ok ? 0 : 42;
}

/* One client handshake with the server configuration `sc` (kept) for `host`. */
static void cache_handshake(ktlsx_config *cc, ktlsx_config *sc, const char *host, int expect_alert)
{
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, host, KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    if (expect_alert == 0) kxt_assert_done(&p);
    else kxt_assert_failed(&p, true, (uint8_t)expect_alert);
    kxt_pair_free(&p);
}

/* Handshakes through the cache: the verify callback runs on every connection
 * with the verdict of a full verification, another host name is refused on a
 * cached chain, a CRL or CA change empties the cache, 0 turns it off. */
static void test_verify_cache_handshakes(void **state)
{
    (void)state;
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    struct verify_calls v = { 0, 0 };
    KXT_CFG_OK(cc, ktlsx_config_set_verify_callback(cc, count_verify, &v));
    for (int i = 0; i < 3; i++) cache_handshake(cc, sc, "localhost", 0);
    assert_int_equal(kx_trust_verify_cache_hits(cc->trust), 2);
    assert_int_equal(v.calls, 3);
    assert_int_equal(v.ok, 3);
    /* The server's cached chain for another name: chain_ok 0, the callback refuses. */
    cache_handshake(cc, sc, "other.example", KX_ALERT_BAD_CERTIFICATE);
    assert_int_equal(kx_trust_verify_cache_hits(cc->trust), 3);
    assert_int_equal(v.calls, 4);
    assert_int_equal(v.ok, 3);
    cache_handshake(cc, sc, "127.0.0.1", 0);
    assert_int_equal(v.ok, 4);

    /* A CRL revoking the server's leaf after it was cached: refused at once. */
    bytes crl = make_crl("server-ecdsa-leaf.pem", 1);
    KXT_CFG_OK(cc, ktlsx_config_set_crl_mem(cc, crl.data, crl.len));
    bytes_free(&crl);
    cache_handshake(cc, sc, "localhost", KX_ALERT_BAD_CERTIFICATE); /* the callback's alert */
    assert_int_equal(kx_trust_verify_cache_hits(cc->trust), 0);
    KXT_CFG_OK(cc, ktlsx_config_set_verify_callback(cc, NULL, NULL));
    cache_handshake(cc, sc, "localhost", KX_ALERT_CERTIFICATE_REVOKED);
    cache_handshake(cc, sc, "localhost", KX_ALERT_CERTIFICATE_REVOKED);
    assert_int_equal(kx_trust_verify_cache_hits(cc->trust), 0);
    KXT_CFG_OK(cc, ktlsx_config_set_crl_file(cc, NULL));
    cache_handshake(cc, sc, "localhost", 0);
    cache_handshake(cc, sc, "localhost", 0);
    assert_int_equal(kx_trust_verify_cache_hits(cc->trust), 1);

    /* Another CA: the cached chain does not carry over. */
    KXT_CFG_OK(cc, ktlsx_config_set_ca_file(cc, kxt_pki_path("other-ca.pem")));
    cache_handshake(cc, sc, "localhost", KX_ALERT_UNKNOWN_CA);
    KXT_CFG_OK(cc, ktlsx_config_set_ca_file(cc, kxt_pki_path("ca.pem")));

    /* Off. */
    KXT_CFG_OK(cc, ktlsx_config_set_verify_cache(cc, 0));
    for (int i = 0; i < 2; i++) cache_handshake(cc, sc, "localhost", 0);
    assert_int_equal(kx_trust_verify_cache_hits(cc->trust), 0);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* ---- conf-b: largest handshake message (issue 13 item 8) ---- */
static void test_max_handshake_message(void **state)
{
    ktlsx_config *cfg = *state;
    assert_int_equal(cfg->max_handshake_message, 128 * 1024); /* the documented default */
    assert_setter_fails(cfg, ktlsx_config_set_max_handshake_message(cfg, 16383), "16383");
    assert_setter_fails(cfg, ktlsx_config_set_max_handshake_message(cfg, 0), "not 0");
    assert_setter_fails(cfg, ktlsx_config_set_max_handshake_message(cfg, 16 * 1024 * 1024 + 1), "16777217");
    assert_setter_fails(cfg, ktlsx_config_set_max_handshake_message(cfg, SIZE_MAX), "not ");
    assert_int_equal(cfg->max_handshake_message, 128 * 1024);
    assert_setter_ok(cfg, ktlsx_config_set_max_handshake_message(cfg, 16384));
    assert_int_equal(cfg->max_handshake_message, 16384);
    assert_setter_ok(cfg, ktlsx_config_set_max_handshake_message(cfg, 16 * 1024 * 1024));
    assert_int_equal(cfg->max_handshake_message, 16 * 1024 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ciphers_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ciphers_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_and_verify_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_crl_keylog_files, setup, teardown),
        /* 1.0: memory inputs */
        cmocka_unit_test_setup_teardown(test_cert_mem_pem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_mem_der, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_mem_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_pkey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_mem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_mem, setup, teardown),
        cmocka_unit_test(test_handshake_mem),
        cmocka_unit_test(test_handshake_mem_crl),
        /* issue 14: verified-chain cache */
        cmocka_unit_test(test_verify_cache_setter),
        cmocka_unit_test(test_verify_cache_handshakes),
        cmocka_unit_test_setup_teardown(test_max_handshake_message, setup, teardown), /* conf-b */
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
