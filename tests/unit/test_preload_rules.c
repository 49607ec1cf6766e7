/* The preload shim's rules (preload/rules.c), compiled into this test.
 *
 * - a file with every directive and option: globals, serve and connect rules
 *   with their fields; lookups by port and by address / getaddrinfo name;
 * - the environment: KTLSX_RULES (a real file), the one-liners KTLSX_SERVE
 *   (+ KTLSX_CERT/KTLSX_KEY/KTLSX_PROFILE) and KTLSX_CONNECT (+ KTLSX_CA),
 *   globals from KTLSX_DAEMON/MODE/LOG/HANDSHAKE_TIMEOUT_MS;
 * - refusals, each "FILE:LINE: problem" at the right line;
 * - pl_rules_build: mode checks, in-process configurations built from real
 *   files (helpers/pki.h), a missing certificate refused with the rule's file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../preload/rules.c"
#include "helpers/pki.h"

static struct pl_rules parse_ok(const char *text)
{
    struct pl_rules r;
    char err[512] = "";
    pl_rules_init(&r);
    int rc = pl_rules_parse(text, strlen(text), "t.rules", &r, err, sizeof err);
    if (rc != 0) print_error("unexpected refusal: %s\n", err);
    assert_int_equal(rc, 0);
    return r;
}

static void test_good_file(void **state)
{
    (void)state;
    struct pl_rules r = parse_ok("# comment\n"
                                 "\n"
                                 "daemon /tmp/door.sock\n"
                                 "mode daemon   # trailing comment\n"
                                 "log debug\n"
                                 "handshake-timeout 2500\n"
                                 "nonblocking-timeout 300\n"
                                 "serve 8443 profile=web alpn=h2,http/1.1 verify-client=optional\n"
                                 "\tserve 9443 cert=/c.pem key=/k.pem ca=/ca.pem verify-client=require\r\n"
                                 "connect example.com:443 name=www.example.com profile=cli ca=/ca.pem verify=peer\n"
                                 "connect [::1]:8443 verify=none alpn=x\n"
                                 "connect 127.0.0.1:9443");
    assert_string_equal(r.daemon, "/tmp/door.sock");
    assert_int_equal(r.mode, PL_MODE_DAEMON);
    assert_int_equal(r.log_level, KTLSX_LOG_DEBUG);
    assert_int_equal(r.hs_ms, 2500);
    assert_int_equal(r.nb_hs_ms, 300);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.v[0].kind, PL_SERVE);
    assert_int_equal(r.v[0].port, 8443);
    assert_string_equal(r.v[0].profile, "web");
    assert_string_equal(r.v[0].alpn, "h2,http/1.1");
    assert_int_equal(r.v[0].verify, PL_VERIFY_OPTIONAL);
    assert_string_equal(r.v[0].where, "t.rules:8");
    assert_string_equal(r.v[1].cert, "/c.pem");
    assert_string_equal(r.v[1].key, "/k.pem");
    assert_string_equal(r.v[1].ca, "/ca.pem");
    assert_int_equal(r.v[1].verify, PL_VERIFY_REQUIRE);
    assert_int_equal(r.v[2].kind, PL_CONNECT);
    assert_string_equal(r.v[2].host, "example.com");
    assert_int_equal(r.v[2].port, 443);
    assert_string_equal(r.v[2].name, "www.example.com");
    assert_int_equal(r.v[2].verify, PL_VERIFY_REQUIRE);
    assert_string_equal(r.v[3].host, "::1");
    assert_int_equal(r.v[3].verify, PL_VERIFY_NONE);
    assert_int_equal(r.v[4].verify, PL_VERIFY_UNSET);

    assert_ptr_equal(pl_rules_serve(&r, 8443), &r.v[0]);
    assert_ptr_equal(pl_rules_serve(&r, 9443), &r.v[1]);
    assert_null(pl_rules_serve(&r, 443));
    assert_ptr_equal(pl_rules_connect(&r, "93.184.216.34", "EXAMPLE.com", 443), &r.v[2]); /* by name, any case */
    assert_null(pl_rules_connect(&r, "93.184.216.34", NULL, 443));                         /* no name: no match */
    assert_null(pl_rules_connect(&r, "93.184.216.34", "example.com", 444));                /* other port */
    assert_ptr_equal(pl_rules_connect(&r, "::1", NULL, 8443), &r.v[3]);
    assert_ptr_equal(pl_rules_connect(&r, "127.0.0.1", "localhost", 9443), &r.v[4]);
    pl_rules_free(&r);
}

static void test_defaults(void **state)
{
    (void)state;
    struct pl_rules r = parse_ok("");
    assert_int_equal(r.n, 0);
    assert_int_equal(r.mode, PL_MODE_AUTO);
    assert_int_equal(r.log_level, KTLSX_LOG_WARNING);
    assert_int_equal(r.hs_ms, PL_HS_MS_DEFAULT);
    assert_string_equal(r.daemon, "");
    assert_string_equal(pl_mode_name(PL_MODE_INPROCESS), "in-process");
    pl_rules_free(&r);
}

static void refused(const char *text, const char *want)
{
    struct pl_rules r;
    char err[512] = "";
    pl_rules_init(&r);
    int rc = pl_rules_parse(text, strlen(text), "bad.rules", &r, err, sizeof err);
    if (rc != -1 || strstr(err, want) == NULL) print_error("text: %s\nerr: %s\nwant: %s\n", text, err, want);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, want));
    pl_rules_free(&r);
}

static void test_refusals(void **state)
{
    (void)state;
    refused("bogus 1", "bad.rules:1: unknown directive 'bogus'");
    refused("\n\nserve", "bad.rules:3: serve needs a PORT");
    refused("serve 0 profile=a", "bad.rules:1: bad port");
    refused("serve 65536 profile=a", "bad.rules:1: bad port");
    refused("serve 8443x profile=a", "bad.rules:1: bad port");
    refused("serve 8443", "bad.rules:1: serve needs profile=NAME");
    refused("serve 8443 cert=/c", "bad.rules:1: cert= and key= go together");
    refused("serve 8443 profile=a name=x", "bad.rules:1: unknown option 'name' for serve");
    refused("serve 8443 profile=a profile=b", "option 'profile' given twice");
    refused("serve 8443 profile=", "option 'profile' has an empty value");
    refused("serve 8443 profile", "expected key=value");
    refused("serve 8443 profile=a verify-client=maybe", "bad value for 'verify-client'");
    refused("serve 8443 profile=a alpn=h2,,x", "bad value for 'alpn'");
    refused("serve 8443 profile=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bad value for 'profile'");
    refused("serve 8443 profile=a\nserve 8443 profile=b", "bad.rules:2: serve 8443 repeats the rule of bad.rules:1");
    refused("connect example.com", "bad.rules:1: expected HOST:PORT");
    refused("connect ::1:443", "IPv6 addresses go in brackets");
    refused("connect [::1:443", "expected [IPv6]:PORT");
    refused("connect exa$mple.com:443", "bad host");
    refused("connect h:443 verify=maybe", "bad value for 'verify'");
    refused("connect h:443 name=a/b", "bad value for 'name'");
    refused("connect h:443 verify-client=require", "unknown option 'verify-client' for connect");
    refused("connect h:443\nconnect H:443", "bad.rules:2: connect H:443 repeats");
    refused("mode fast", "bad.rules:1: mode: mode is daemon, in-process or auto");
    refused("mode", "bad.rules:1: mode: expected one value");
    refused("log loud", "log is error, warning, info or debug");
    refused("daemon relative.sock", "absolute socket path");
    refused("handshake-timeout 50", "timeout is milliseconds");
    refused("nonblocking-timeout 9999999", "timeout is milliseconds");
    refused("serve 1 profile=a a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9 j=10 k=11 l=12 m=13 n=14", "too many words");
    char nul[] = "serve 8443 profile=a\0x\n";
    struct pl_rules r;
    char err[256];
    pl_rules_init(&r);
    assert_int_equal(pl_rules_parse(nul, sizeof nul - 1, "n.rules", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "n.rules:1: NUL byte"));
    pl_rules_free(&r);
    char *big = malloc(PL_LINE_MAX + 10);
    assert_non_null(big);
    memset(big, 'a', PL_LINE_MAX + 9);
    big[PL_LINE_MAX + 9] = '\0';
    refused(big, "bad.rules:1: line longer than");
    free(big);
}

/* ---- environment ---- */
static const char *env_names[16], *env_vals[16];
static char *fake_getenv(const char *name)
{
    for (int i = 0; env_names[i] != NULL; i++)
        if (strcmp(env_names[i], name) == 0) return (char *)env_vals[i];
    return NULL;
}
static void set_env(int i, const char *name, const char *val)
{
    env_names[i] = name;
    env_vals[i] = val;
    env_names[i + 1] = NULL;
}

static void test_env(void **state)
{
    (void)state;
    struct pl_rules r;
    char err[512] = "";
    char path[] = "/tmp/test_preload_rules.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "log info\nconnect localhost:9000 ca=/ca.pem\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);

    set_env(0, "KTLSX_RULES", path);
    set_env(1, "KTLSX_SERVE", "8443");
    set_env(2, "KTLSX_CERT", "/c.pem");
    set_env(3, "KTLSX_KEY", "/k.pem");
    set_env(4, "KTLSX_CONNECT", "example.org:443");
    set_env(5, "KTLSX_CA", "/ca2.pem");
    set_env(6, "KTLSX_MODE", "in-process");
    set_env(7, "KTLSX_HANDSHAKE_TIMEOUT_MS", "1500");
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.log_level, KTLSX_LOG_INFO);
    assert_int_equal(r.mode, PL_MODE_INPROCESS);
    assert_int_equal(r.hs_ms, 1500);
    assert_string_equal(r.v[0].host, "localhost");
    assert_int_equal(r.v[1].kind, PL_SERVE);
    assert_string_equal(r.v[1].cert, "/c.pem");
    assert_string_equal(r.v[1].where, "KTLSX_SERVE:1");
    assert_string_equal(r.v[2].host, "example.org");
    assert_string_equal(r.v[2].ca, "/ca2.pem");
    pl_rules_free(&r);

    /* errors name the variable, or the file and line */
    set_env(0, "KTLSX_SERVE", "8443");
    set_env(1, "KTLSX_KEY", "/k.pem");
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), -1);
    assert_non_null(strstr(err, "KTLSX_SERVE:1: cert= and key= go together"));
    pl_rules_free(&r);
    set_env(0, "KTLSX_SERVE", "8443 profile=x");
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), -1);
    assert_non_null(strstr(err, "KTLSX_SERVE: whitespace"));
    pl_rules_free(&r);
    set_env(0, "KTLSX_MODE", "sideways");
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), -1);
    assert_non_null(strstr(err, "KTLSX_MODE:1: mode"));
    pl_rules_free(&r);
    set_env(0, "KTLSX_RULES", "/nonexistent/x.rules");
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/x.rules: cannot open the rules file"));
    pl_rules_free(&r);
    /* a bad line in a real file: its line number */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    text = "log info\n\nserve 8443 profile=a oops\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    set_env(0, "KTLSX_RULES", path);
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), -1);
    char want[128];
    snprintf(want, sizeof want, "%s:3: expected key=value", path);
    assert_non_null(strstr(err, want));
    pl_rules_free(&r);
    /* nothing set: no rules, no error */
    env_names[0] = NULL;
    assert_int_equal(pl_rules_from_env(&r, fake_getenv, err, sizeof err), 0);
    assert_int_equal(r.n, 0);
    pl_rules_free(&r);
    unlink(path);
}

static void test_build(void **state)
{
    (void)state;
    char err[512] = "";
    char text[1024];
    snprintf(text, sizeof text, "serve 8443 cert=%s key=%s\nconnect 127.0.0.1:9443 ca=%s verify=none alpn=http/1.1\n"
             "serve 7443 profile=web\n", kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key"),
             kxt_pki_path("ca.pem"));
    struct pl_rules r = parse_ok(text);
    assert_int_equal(pl_rules_build(&r, err, sizeof err), 0);
    assert_non_null(r.v[0].cfg);
    assert_non_null(r.v[1].cfg);
    assert_null(r.v[2].cfg); /* daemon only */
    ktlsx_conn *c = ktlsx_conn_new(r.v[0].cfg, NULL);
    assert_non_null(c);
    ktlsx_conn_free(c);
    pl_rules_free(&r);

    r = parse_ok("mode daemon\nserve 8443 cert=/c key=/k\n");
    assert_int_equal(pl_rules_build(&r, err, sizeof err), -1);
    assert_non_null(strstr(err, "t.rules:2: mode daemon: the rule needs profile=NAME"));
    pl_rules_free(&r);
    r = parse_ok("mode in-process\nserve 8443 profile=web\n");
    assert_int_equal(pl_rules_build(&r, err, sizeof err), -1);
    assert_non_null(strstr(err, "t.rules:2: mode in-process: serve needs cert=FILE key=FILE"));
    pl_rules_free(&r);
    r = parse_ok("log info\nserve 8443 cert=/nonexistent/c.pem key=/nonexistent/k.pem\n");
    assert_int_equal(pl_rules_build(&r, err, sizeof err), -1);
    assert_non_null(strstr(err, "t.rules:2: "));
    assert_non_null(strstr(err, "/nonexistent/c.pem"));
    pl_rules_free(&r);
    r = parse_ok("connect h:1 ca=/nonexistent/ca.pem\n");
    assert_int_equal(pl_rules_build(&r, err, sizeof err), -1);
    assert_non_null(strstr(err, "t.rules:1: "));
    pl_rules_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
