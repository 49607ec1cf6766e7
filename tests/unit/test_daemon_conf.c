/* ktlsxd's configuration file (daemon/conf.c), compiled into this test.
 *
 * - a file with every key: the daemon's settings, the profiles with their
 *   roles, access lists (numbers, names, "*"), export_state; the lookup by
 *   name and role; each profile's ktlsx_config is usable (a connection
 *   starts on it);
 * - kd_profile_allows: a profile listing nobody is root's, a uid list, a
 *   primary gid list, "*";
 * - refusals, each "FILE:LINE: problem" at the right line (or "FILE:
 *   problem" for what concerns the whole file), the configuration freed
 *   (ASan: no leak), including setter refusals (a cipher, a missing file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../daemon/conf.c"
#include "helpers/kd_quiet_log.h"
#include "helpers/pki.h"

static char conf_path[256];

static struct kd_conf *load(const char *text, char *err, size_t errlen)
{
    snprintf(conf_path, sizeof conf_path, "%s", kxt_pki_path("test.conf"));
    FILE *f = fopen(conf_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    err[0] = '\0';
    return kd_conf_load(conf_path, err, errlen);
}

static void test_good_file(void **state)
{
    (void)state;
    char text[4096], err[1024];
    snprintf(text, sizeof text,
             "; comment\n"
             "[daemon]\n"
             "socket = /tmp/x.sock\n"
             "log_level = debug\n"
             "event_loop = epoll\n"
             "max_clients = 10\n"
             "max_handshakes_per_uid = 3\n"
             "request_timeout_ms = 500\n"
             "handshake_timeout_ms = 700\n"
             "max_handshake_timeout_ms = 900\n"
             "[server web]\n"
             "cert = %s\nkey = %s\n"
             "cert = %s\nkey = %s\n"
             "alpn = h2,http/1.1\nversions = 1.3\nciphers = TLS_AES_256_GCM_SHA384\ngroups = x25519\n"
             "tickets = 0\nsession_cache = 0\nverify_client = optional\nca = %s\n"
             "allow_uids = 1000, root 2000\nallow_gids = 50\nexport_state = yes\n"
             "[client web]\n"
             "ca = %s\nversions = 1.2-1.3\nallow_uids = *\n",
             kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key"), kxt_pki_path("server-rsa.pem"),
             kxt_pki_path("server-rsa.key"), kxt_pki_path("ca.pem"), kxt_pki_path("ca.pem"));
    struct kd_conf *c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_string_equal(c->socket_path, "/tmp/x.sock");
    assert_int_equal(c->log_level, KTLSX_LOG_DEBUG);
    assert_true(c->epoll_only);
    assert_int_equal(c->max_clients, 10);
    assert_int_equal(c->max_per_uid, 3);
    assert_int_equal(c->request_timeout_ms, 500);
    assert_int_equal(c->handshake_timeout_ms, 700);
    assert_int_equal(c->max_handshake_timeout_ms, 900);
    assert_int_equal(c->nprofiles, 2);
    const struct kd_profile *s = kd_conf_profile(c, "web", KTLSX_SERVER), *cl = kd_conf_profile(c, "web", KTLSX_CLIENT);
    assert_non_null(s);
    assert_non_null(cl);
    assert_null(kd_conf_profile(c, "nope", KTLSX_SERVER));
    assert_int_equal(s->role, KTLSX_SERVER);
    assert_int_equal(s->certs, 2);
    assert_true(s->export_state);
    assert_false(cl->export_state);
    assert_int_equal(s->nuids, 3);
    assert_int_equal(s->uids[1], 0); /* root */
    assert_true(kd_profile_allows(s, 1000, 1, NULL, 0));
    assert_true(kd_profile_allows(s, 0, 1, NULL, 0));
    assert_true(kd_profile_allows(s, 77, 50, NULL, 0));
    assert_false(kd_profile_allows(s, 77, 51, NULL, 0));
    /* A supplementary group (SO_PEERGROUPS) counts like the primary one. */
    const gid_t groups[] = { 4, 50 };
    assert_true(kd_profile_allows(s, 77, 51, groups, 2));
    assert_false(kd_profile_allows(s, 77, 51, groups, 1));
    assert_true(kd_profile_allows(cl, 12345, 12345, NULL, 0));
    /* Each profile's configuration is a working one. */
    ktlsx_conn *conn = ktlsx_conn_new(s->cfg, NULL);
    assert_non_null(conn);
    ktlsx_conn_free(conn);
    kd_conf_free(c);
}

static void test_nobody_listed(void **state)
{
    (void)state;
    char text[1024], err[1024];
    snprintf(text, sizeof text, "[server a]\ncert = %s\nkey = %s\n", kxt_pki_path("server-ecdsa.pem"),
             kxt_pki_path("server-ecdsa.key"));
    struct kd_conf *c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    const struct kd_profile *p = kd_conf_profile(c, "a", KTLSX_SERVER);
    assert_true(kd_profile_allows(p, 0, 0, NULL, 0));
    assert_false(kd_profile_allows(p, 1000, 0, NULL, 0)); /* gid 0 is no key: a list must name it */
    assert_string_equal(c->socket_path, KTLSX_DOOR_DEFAULT_PATH);
    assert_false(c->epoll_only);
    assert_int_equal(c->workers, 0); /* one per CPU */
    assert_string_equal(c->control_path, KD_DEFAULT_CONTROL);
    assert_int_equal(c->ticket_rotation_s, 3600);
    assert_string_equal(c->user, "");
    kd_conf_free(c);
}

/* `body` ("%1$s" = a cert line pair) must be refused with ":LINE: want" (want a prefix). */
static void refused(const char *body, int line, const char *want)
{
    char text[2048], err[1024], expect[1200];
    char pair[600];
    snprintf(pair, sizeof pair, "cert = %s\nkey = %s", kxt_pki_path("server-ecdsa.pem"),
             kxt_pki_path("server-ecdsa.key"));
    snprintf(text, sizeof text, body, pair);
    assert_null(load(text, err, sizeof err));
    if (line > 0) snprintf(expect, sizeof expect, "%s:%d: %s", conf_path, line, want);
    else snprintf(expect, sizeof expect, "%s: %s", conf_path, want);
    if (strncmp(err, expect, strlen(expect)) != 0) fail_msg("got '%s'\nwant '%s...'", err, expect);
}

static void test_refusals(void **state)
{
    (void)state;
    refused("[server a]\n%1$s\nkey = /x\n", 4, "key without a cert line before it");
    refused("[server a]\n%1$s\ncert = /x\n", 4, "cert without a key line after it");
    refused("[server a]\n%1$s\ncert = /x\ncert = /y\n", 4, "cert without a key line after it");
    refused("[server a]\ncert = /nonexistent.pem\nkey = /nonexistent.key\n", 3, "");
    refused("[server a]\n%1$s\nciphers = NOPE\n", 4, "");
    refused("[server a]\n%1$s\ntickets = 17\n", 4, "tickets: want 0 (off) to 16, not '17'");
    refused("[server a]\n%1$s\nsession_cache = -1\n", 4, "session_cache: want 0 (off) to 1000000 entries");
    refused("[server a]\n%1$s\nverify_client = maybe\n", 4, "verify_client: want none, optional or require");
    refused("[client a]\nverify_client = require\n", 2, "unknown key 'verify_client' in a client profile");
    refused("[client a]\ntickets = 1\n", 2, "unknown key 'tickets' in a client profile");
    refused("[server a]\n%1$s\nexport_state = perhaps\n", 4, "export_state: want yes or no, not 'perhaps'");
    refused("[server a]\n%1$s\nversions = 1.3-1.2\n", 4, "versions: want 1.2, 1.3 or 1.2-1.3, not '1.3-1.2'");
    refused("[server a]\n%1$s\nallow_gids = *\n", 4, "allow_gids: no group '*'");
    refused("[server a]\n%1$s\nallow_uids = 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 "
            "30 31 32 33\n", 4, "allow_uids: more than 32 entries");
    refused("[server a b]\n%1$s\n", 1, "profile name 'a b': letters, digits");
    refused("[server ]\n%1$s\n", 1, "profile name empty or over 64 bytes");
    refused("[daemon]\nsocket = relative.sock\n", 2, "socket: want an absolute path");
    refused("[daemon]\nmax_clients = 0\n", 2, "max_clients: want 1 to 1000000, not '0'");
    refused("[daemon]\nrequest_timeout_ms = 5\n", 2, "request_timeout_ms: want 10 to 3600000, not '5'");
    refused("[daemon]\nworkers = 0\n", 2, "workers: want auto or 1 to 256, not '0'");
    refused("[daemon]\nworker = 4\n", 2, "unknown key 'worker' in [daemon]");
    refused("[daemon]\ncontrol_socket = ctl\n", 2, "control_socket: want none or an absolute path");
    refused("[daemon]\nticket_rotation_s = 5\n", 2, "ticket_rotation_s: want 0 (never) or 60 to 604800, not '5'");
    refused("[daemon]\ncontrol_allow_uids = nosuchuser\n", 2, "allow_uids: no user 'nosuchuser'");
    refused("[daemon]\nhandshake_timeout_ms = 9000\nmax_handshake_timeout_ms = 8000\n[server a]\n%1$s\n", 0,
            "handshake_timeout_ms is over max_handshake_timeout_ms");
    refused("[daemon]\nticket_key_file = /nonexistent.key\n[server a]\n%1$s\n", 0, "ticket_key_file: ");
    refused("[daemon]\nlog_level = info\n", 0, "no [server NAME] or [client NAME] profile");
    refused("[server a]\n%1$s\n[client a]\nallow_uids = 0\n[server a]\nalpn = h2\n", 6, "[server a] appears twice");
    char err[256];
    assert_null(kd_conf_load("/nonexistent/ktlsxd.conf", err, sizeof err));
    assert_string_equal(err, "/nonexistent/ktlsxd.conf: No such file or directory");
}

/* A PSK-only server profile (NVMe/TCP style, identity with spaces) and its refusals. */
static void test_psk_profile(void **state)
{
    (void)state;
    char keyfile[600], text[2048], err[1024];
    snprintf(keyfile, sizeof keyfile, "%s", kxt_pki_path("daemon-psk.hex"));
    FILE *f = fopen(keyfile, "w");
    assert_non_null(f);
    fputs("000102030405060708090a0b0c0d0e0f\n101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f\n", f);
    fclose(f);
    snprintf(text, sizeof text, "[server nvme]\npsk_identity = NVMe0R01 nqn.host nqn.sub\npsk_hash = sha384\npsk_file = %s\n",
             keyfile);
    struct kd_conf *c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    const struct kd_profile *p = kd_conf_profile(c, "nvme", KTLSX_SERVER);
    assert_non_null(p);
    assert_true(p->psk_set);
    assert_int_equal(p->certs, 0);
    assert_string_equal(p->psk_pending, ""); /* wiped */
    kd_conf_free(c);
    refused("[server a]\npsk_file = /x\n", 2, "psk_file without a psk_identity line before it");
    refused("[server a]\npsk_identity = id\n", 2, "psk_identity without a psk_file line after it");
    refused("[server a]\npsk_hash = md5\n", 2, "psk_hash: want sha256 or sha384, not 'md5'");
    refused("[server a]\npsk_identity = id\npsk_file = /nonexistent.hex\n", 3, "/nonexistent.hex: No such file");
    /* a 10-byte key: the library's length check, reported at the line with the file named */
    f = fopen(keyfile, "w");
    assert_non_null(f);
    fputs("00010203040506070809\n", f);
    fclose(f);
    snprintf(text, sizeof text, "[server a]\npsk_identity = id\npsk_file = %s\n", keyfile);
    assert_null(load(text, err, sizeof err));
    assert_non_null(strstr(err, ":3: "));
    assert_non_null(strstr(err, "daemon-psk.hex: "));
}

/* [kernel]: defaults (off, TLS 1.3 only), every key, a file with no profile
 * but the kernel door, and the refusals at their lines. */
static void test_kernel_section(void **state)
{
    (void)state;
    char text[2048], err[1024];
    char pair[600];
    snprintf(pair, sizeof pair, "cert = %s\nkey = %s", kxt_pki_path("server-ecdsa.pem"),
             kxt_pki_path("server-ecdsa.key"));
    snprintf(text, sizeof text, "[server a]\n%s\n", pair);
    struct kd_conf *c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_false(c->kernel_enabled);
    assert_int_equal(c->kernel_min_version, KTLSX_TLS13);
    assert_int_equal(c->kernel_max_version, KTLSX_TLS13);
    assert_string_equal(c->kernel_server_profile, "");
    kd_conf_free(c);
    snprintf(text, sizeof text,
             "[kernel]\nenabled = yes\nserver_profile = nvme-x509\nclient_profile = nfs\nversions = 1.2-1.3\n"
             "[server nvme-x509]\n%s\n[client nfs]\nversions = 1.3\n", pair);
    c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_true(c->kernel_enabled);
    assert_string_equal(c->kernel_server_profile, "nvme-x509");
    assert_string_equal(c->kernel_client_profile, "nfs");
    assert_int_equal(c->kernel_min_version, KTLSX_TLS12);
    assert_int_equal(c->kernel_max_version, KTLSX_TLS13);
    assert_string_equal(c->kernel_ca_file, "");
    kd_conf_free(c);
    /* ca_file: trust anchors for x509 requests that bring their own certificate serials */
    snprintf(text, sizeof text, "[kernel]\nenabled = yes\nca_file = %s\n", kxt_pki_path("ca.pem"));
    c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_string_equal(c->kernel_ca_file, kxt_pki_path("ca.pem"));
    kd_conf_free(c);
    refused("[kernel]\nenabled = yes\nca_file = /nonexistent/ca.pem\n", 3,
            "ca_file: cannot read '/nonexistent/ca.pem': No such file or directory");
    /* PSK requests need no profile: the kernel door alone is a configuration */
    c = load("[daemon]\nworkers = 1\n[kernel]\nenabled = on\n", err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_true(c->kernel_enabled);
    assert_int_equal(c->nprofiles, 0);
    kd_conf_free(c);
    refused("[kernel]\nenabled = maybe\n", 2, "enabled: want yes or no, not 'maybe'");
    refused("[kernel]\nenabled = no\nkeyrings = .nvme\n", 3, "unknown key 'keyrings' in [kernel]");
    refused("[kernel]\nenabled = yes\nversions = 1.1\n", 3, "versions: want 1.3, 1.2 or 1.2-1.3, not '1.1'");
    refused("[kernel]\nenabled = yes\nversions = 1.3-1.2\n", 3, "versions: want 1.3, 1.2 or 1.2-1.3, not '1.3-1.2'");
    refused("[kernel]\nenabled = yes\nserver_profile = a b\n", 3, "server_profile: not a profile name: 'a b'");
    refused("[kernel]\nenabled = yes\n\nserver_profile = missing\n[server a]\n%1$s\n", 4,
            "server_profile: no [server missing]");
    /* a client profile of that name does not serve server requests, nor the reverse */
    refused("[server a]\n%1$s\n[kernel]\nenabled = yes\nclient_profile = a\n", 6, "client_profile: no [client a]");
    refused("[kernel]\nenabled = no\n", 0, "no [server NAME] or [client NAME] profile");
    refused("[kernels]\nenabled = yes\n", 1, "unknown section [kernels]: want [daemon], [kernel],");
}

/* issue 12: a server profile on the memcached session store, and its refusals at their lines. */
static void test_memcached_store_profile(void **state)
{
    (void)state;
    char keyfile[600], text[4096], err[1024];
    snprintf(keyfile, sizeof keyfile, "%s", kxt_pki_path("daemon-store.key"));
    FILE *f = fopen(keyfile, "w");
    assert_non_null(f);
    for (int i = 0; i < 48; i++) fputc(i * 5 + 3, f);
    fclose(f);
    snprintf(text, sizeof text,
             "[daemon]\nseccomp = no\n[server fleet]\ncert = %s\nkey = %s\nsession_cache = 64\n"
             "session_cache = memcached:127.0.0.1:11211,[::1]:11212\nsession_store_timeout_ms = 150\n"
             "session_store_key = %s\n",
             kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key"), keyfile);
    struct kd_conf *c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    const struct kd_profile *p = kd_conf_profile(c, "fleet", KTLSX_SERVER);
    assert_non_null(p);
    struct ktlsx_session_stats st;
    assert_int_equal(ktlsx_config_session_stats(p->cfg, &st), 0);
    assert_int_equal(st.store_servers, 2);
    assert_int_equal(st.cache_capacity, 64); /* the in-process cache stays in front */
    assert_int_equal(p->store_timeout_ms, 150);
    kd_conf_free(c);
    /* Under seccomp (the default) a store is fine at start: the filter is set up with TCP
     * sockets for it (tcp_store).  A reload bringing the first store to a daemon whose
     * filter is in force without them is refused at the line, not a store that never works. */
    snprintf(text, sizeof text, "[server a]\ncert = %s\nkey = %s\nsession_cache = memcached:127.0.0.1:1\nsession_store_key = %s\n",
             kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key"), keyfile);
    c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_true(c->seccomp && c->tcp_store);
    kd_conf_free(c);
    kd_sandbox_on = true;
    kd_sandbox_tcp = false;
    assert_null(load(text, err, sizeof err));
    assert_non_null(strstr(err, ":4: session_cache = memcached:... needs a restart of ktlsxd: the seccomp filter"));
    kd_sandbox_tcp = true;
    c = load(text, err, sizeof err);
    if (!c) fail_msg("%s", err);
    kd_conf_free(c);
    kd_sandbox_on = kd_sandbox_tcp = false;
    refused("[server a]\n%1$s\nsession_cache = memcached:\n", 4, "session_cache: want memcached:host:port");
    refused("[server a]\n%1$s\nsession_cache = memcached:h:1\n", 4,
            "session_cache = memcached:... without a session_store_key line after it");
    refused("[server a]\n%1$s\nsession_store_key = /x\n", 4,
            "session_store_key without a session_cache = memcached:... line before it");
    refused("[server a]\n%1$s\nsession_cache = memcached:h:1\nsession_store_key = /nonexistent.key\n", 5,
            "/nonexistent.key: cannot open the session store key file");
    refused("[server a]\n%1$s\nsession_cache = memcached:h\nsession_store_key = /nonexistent.key\n", 5, "");
    refused("[server a]\n%1$s\nsession_store_timeout_ms = 0\n", 4, "session_store_timeout_ms: want 1 to 10000");
    refused("[daemon]\nticket_key_file = /a\nticket_key_file = /b\nticket_key_file = /c\nticket_key_file = /d\n[server a]\n%1$s\n", 5,
            "ticket_key_file: at most 3");
    refused("[client a]\nsession_cache = memcached:h:1\n", 2, "unknown key 'session_cache' in a client profile");
    snprintf(text, sizeof text, "[daemon]\nseccomp = no\n[server a]\ncert = %s\nkey = %s\nsession_cache = memcached:h:99999\nsession_store_key = %s\n",
             kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key"), keyfile);
    assert_null(load(text, err, sizeof err));
    assert_non_null(strstr(err, ":7: memcached store: \"h\": bad port \"99999\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_nobody_listed),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_psk_profile),
        cmocka_unit_test(test_kernel_section),
        cmocka_unit_test(test_memcached_store_profile),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
