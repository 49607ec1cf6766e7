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
    /* Defaults: all three TLS 1.3 suites, x25519/P-256/P-384, TLS 1.2..1.3. */
    assert_true(kx_list_has(cfg->suites, cfg->suite_count, 0x1301));
    assert_true(kx_list_has(cfg->suites, cfg->suite_count, 0x1302));
    assert_true(kx_list_has(cfg->suites, cfg->suite_count, 0x1303));
    /* Static RSA key exchange is never on by default. */
    assert_false(kx_list_has(cfg->suites, cfg->suite_count, 0x009c));
    assert_int_equal(cfg->group_count, 3);
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
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, "x448"), "x448");
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, "x25519,P-521"), "P-521");
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, ""), "groups");
    assert_int_equal(cfg->group_count, 3); /* defaults kept */
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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
