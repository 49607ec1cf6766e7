/* handshake/hooks: configuration lifetime (references, the "in use" rule,
 * across threads), virtual hosts by SNI (ktlsx_conn_set_config from the
 * callback), external PSKs looked up by identity, the verify callback (both
 * roles, both versions, pinning), and the external TLS 1.2 session store
 * shared by two servers (and fed garbage). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

/* The call fails and the message mentions `needle`. */
#define assert_setter_fails(cfg, expr, needle)                                            \
    do {                                                                                  \
        int rc__ = (expr);                                                                \
        if (rc__ != -1) fail_msg("%s returned %d, wanted -1", #expr, rc__);               \
        const char *m__ = ktlsx_config_error(cfg);                                        \
        if (strstr(m__, (needle)) == NULL)                                                \
            fail_msg("%s: error \"%s\" does not mention \"%s\"", #expr, m__, (needle));   \
    } while (0)

typedef struct {
    uint8_t data[4096];
    long len;
} blob;

/* One connection on shared configurations (the caller frees them); data both
 * ways; the client's session out (may be NULL), a session in (may be NULL).
 * Returns ktlsx_resumed of the client, both sides agreeing. */
static int connect_once(ktlsx_config *cc, ktlsx_config *sc, const char *host, const blob *in, blob *out)
{
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, host, KXT_FEED_ALL);
    p.keep_cfgs = true;
    if (in) assert_int_equal(ktlsx_set_session(p.c, in->data, (size_t)in->len), 0);
    kxt_pump(&p);
    kxt_assert_done(&p);
    int resumed = ktlsx_resumed(p.c);
    assert_int_equal(ktlsx_resumed(p.s), resumed);
    kxt_send_recv(&p, false, "server first", 12);
    kxt_send_recv(&p, true, "client", 6);
    kxt_settle(&p);
    if (out) {
        out->len = ktlsx_get_session(p.c, out->data, sizeof out->data);
        assert_true(out->len > 0);
    }
    kxt_pair_free(&p);
    return resumed;
}

/* ================================================= configuration lifetime */

static void test_ref_lifetimes(void **state)
{
    (void)state;
    assert_null(ktlsx_config_ref(NULL));
    ktlsx_config_free(NULL);
    /* Extra references: the configuration outlives all but the last free (ASan checks). */
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    assert_ptr_equal(ktlsx_config_ref(cfg), cfg);
    assert_ptr_equal(ktlsx_config_ref(cfg), cfg);
    ktlsx_config_free(cfg);
    ktlsx_config_free(cfg);
    assert_int_equal(ktlsx_config_set_alpn(cfg, "h2"), 0); /* still alive, not in use */
    ktlsx_config_free(cfg);

    /* A daemon's reload: both configurations are dropped by their owner while
     * their connections run; the handshake still completes on them. */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    p.keep_cfgs = true;
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_exchange(&p, 1000);
    kxt_pair_free(&p); /* the connections drop the last references: freed here */
}

/* Every setter refuses a configuration in use, naming the count, and leaves
 * the setting as it was; once the connections are gone they work again. */
static void test_setters_refused_in_use(void **state)
{
    (void)state;
    ktlsx_config *cfg = kxt_server_cfg("ecdsa", NULL, NULL);
    assert_int_equal(ktlsx_config_set_alpn(cfg, "h2"), 0);
    ktlsx_conn *c1 = ktlsx_conn_new(cfg, NULL);
    assert_non_null(c1);
    const char *one = "in use by 1 connection: build a new one";
    assert_setter_fails(cfg, ktlsx_config_set_alpn(cfg, "http/1.1"), one);
    assert_memory_equal(cfg->alpn, "\2h2", 3); /* unchanged */
    ktlsx_conn *c2 = ktlsx_conn_new(cfg, NULL);
    const char *two = "in use by 2 connections";
    uint8_t key[32] = { 1 };
    struct ktlsx_session_store st = { 0 };
    assert_setter_fails(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path("server-rsa.pem"), kxt_pki_path("server-rsa.key")), two);
    assert_setter_fails(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")), two);
    assert_setter_fails(cfg, ktlsx_config_set_crl_file(cfg, NULL), two);
    assert_setter_fails(cfg, ktlsx_config_set_insecure(cfg, 1), two);
    assert_setter_fails(cfg, ktlsx_config_set_verify_client(cfg, KTLSX_VERIFY_REQUIRE), two);
    assert_setter_fails(cfg, ktlsx_config_set_ciphers(cfg, "TLS_AES_128_GCM_SHA256"), two);
    assert_setter_fails(cfg, ktlsx_config_set_groups(cfg, "P-256"), two);
    assert_setter_fails(cfg, ktlsx_config_set_versions(cfg, KTLSX_TLS13, KTLSX_TLS13), two);
    assert_setter_fails(cfg, ktlsx_config_set_keylog_file(cfg, "/dev/null"), two);
    assert_setter_fails(cfg, ktlsx_config_set_trace(cfg, stderr), two);
    assert_setter_fails(cfg, ktlsx_config_set_session_cache(cfg, 0, 0), two);
    assert_setter_fails(cfg, ktlsx_config_set_tickets(cfg, 0, 0), two);
    assert_setter_fails(cfg, ktlsx_config_add_ticket_key_file(cfg, "/dev/null"), two);
    assert_setter_fails(cfg, ktlsx_config_set_psk(cfg, "id", key, sizeof key, 0), two);
    assert_setter_fails(cfg, ktlsx_config_set_psk_ke(cfg, 1), two);
    assert_setter_fails(cfg, ktlsx_config_set_require_ems(cfg, 1), two);
    assert_setter_fails(cfg, ktlsx_config_set_legacy_rsa_kx(cfg, 1), two);
    assert_setter_fails(cfg, ktlsx_config_set_fallback_scsv(cfg, 1), two);
    assert_setter_fails(cfg, ktlsx_config_set_sni_callback(cfg, NULL, NULL), two);
    assert_setter_fails(cfg, ktlsx_config_set_psk_callback(cfg, NULL, NULL), two);
    assert_setter_fails(cfg, ktlsx_config_set_verify_callback(cfg, NULL, NULL), two);
    assert_setter_fails(cfg, ktlsx_config_set_session_store(cfg, &st), two);
    assert_int_equal(cfg->psk_len, 0);
    assert_true(cfg->tickets_enabled);
    /* Safe while in use: it takes the ticket lock. */
    assert_int_equal(ktlsx_config_rotate_ticket_keys(cfg), 0);
    ktlsx_conn_free(c1);
    assert_setter_fails(cfg, ktlsx_config_set_alpn(cfg, "http/1.1"), one);
    ktlsx_conn_free(c2);
    /* No connection left: the configuration may change again. */
    assert_int_equal(ktlsx_config_set_alpn(cfg, "http/1.1"), 0);
    assert_int_equal(ktlsx_config_set_tickets(cfg, 0, 0), 0);
    assert_false(cfg->tickets_enabled);
    /* NULL is refused, not dereferenced. */
    assert_int_equal(ktlsx_config_set_alpn(NULL, "h2"), -1);
    assert_null(ktlsx_conn_new(NULL, NULL));
    ktlsx_config_free(cfg);
}

/* Many threads creating and freeing connections and references on one
 * configuration while another keeps trying a setter: the counts come back
 * exactly, and a setter succeeds only with no connection alive. */
typedef struct {
    ktlsx_config *cfg;
    int rounds;
} churn_arg;

static void *churn(void *p)
{
    churn_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        ktlsx_conn *c = ktlsx_conn_new(a->cfg, NULL);
        if (!c) return (void *)1;
        ktlsx_config *extra = ktlsx_config_ref(a->cfg);
        ktlsx_conn_free(c);
        ktlsx_config_free(extra);
    }
    return NULL;
}

static void test_refcount_threads(void **state)
{
    (void)state;
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    enum { THREADS = 4 };
    pthread_t t[THREADS];
    churn_arg a = { cfg, 2000 };
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, churn, &a), 0);
    int ok = 0, refused = 0;
    for (int i = 0; i < 2000; i++) {
        if (ktlsx_config_set_psk_ke(cfg, i & 1) == 0) ok++;
        else refused++;
    }
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(ok + refused, 2000);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_int_equal(atomic_load(&cfg->conns), 0);
    assert_int_equal(ktlsx_config_set_psk_ke(cfg, 0), 0);
    ktlsx_config_free(cfg);
}

static void test_conn_set_config_rules(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *cc2 = kxt_client_cfg(NULL, NULL);
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_conn *c = ktlsx_conn_new(cc, "localhost");
    assert_int_equal(ktlsx_conn_set_config(NULL, cc2), -1);
    assert_int_equal(ktlsx_conn_set_config(c, NULL), -1);
    assert_non_null(strstr(ktlsx_error(c), "NULL"));
    assert_int_equal(ktlsx_conn_set_config(c, sc), -1); /* another role */
    assert_non_null(strstr(ktlsx_error(c), "server configuration for a client"));
    assert_int_equal(ktlsx_conn_set_config(c, cc), 0);  /* the same one: nothing to do */
    /* A client may switch before its first flight: the references move. */
    assert_int_equal(ktlsx_conn_set_config(c, cc2), 0);
    assert_int_equal(atomic_load(&cc->conns), 0);
    assert_int_equal(atomic_load(&cc2->conns), 1);
    assert_int_equal(ktlsx_config_set_alpn(cc, "h2"), 0);
    assert_int_equal(ktlsx_handshake(c), KTLSX_WANT_READ); /* ClientHello written */
    assert_int_equal(ktlsx_conn_set_config(c, cc), -1);
    assert_non_null(strstr(ktlsx_error(c), "too late"));
    assert_int_equal(atomic_load(&cc2->conns), 1);
    ktlsx_conn_free(c);
    assert_int_equal(atomic_load(&cc2->conns), 0);
    ktlsx_config_free(cc);
    ktlsx_config_free(cc2);
    ktlsx_config_free(sc);
}

/* ========================================================= virtual hosts */

typedef struct {
    ktlsx_config *a, *b; /* a.example, b.example */
    int calls;
    bool saw_null;
    char last[64];
} vhosts;

static int pick_vhost(ktlsx_conn *conn, const char *name, void *arg)
{
    vhosts *v = arg;
    v->calls++;
    v->saw_null = name == NULL;
    kx_copy_str(v->last, sizeof v->last, name ? name : "");
    if (!name) return 0; /* no SNI: the default configuration */
    ktlsx_config *to = strcmp(name, "a.example") == 0 ? v->a : strcmp(name, "b.example") == 0 ? v->b : NULL;
    if (!to) return KX_ALERT_UNRECOGNIZED_NAME;
    return ktlsx_conn_set_config(conn, to) == 0 ? 0 : KX_ALERT_INTERNAL_ERROR;
}

static ktlsx_config *vhost_cfg(const char *name)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    assert_non_null(cfg);
    char crt[64], key[64];
    snprintf(crt, sizeof crt, "vhost-%s.pem", name);
    snprintf(key, sizeof key, "vhost-%s.key", name);
    KXT_CFG_OK(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path(crt), kxt_pki_path(key)));
    return cfg;
}

static void test_sni_virtual_hosts(void **state)
{
    (void)state;
    vhosts v = { 0 };
    v.a = vhost_cfg("a");
    /* b.example differs beyond its certificate: TLS 1.2 only, its own ALPN,
     * and only P-384, so a TLS 1.3 client first gets a HelloRetryRequest
     * (decided from b's groups, after the switch). */
    v.b = vhost_cfg("b");
    KXT_CFG_OK(v.b, ktlsx_config_set_alpn(v.b, "h2"));
    ktlsx_config *def = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(def, ktlsx_config_set_sni_callback(def, pick_vhost, &v));
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "http/1.1,h2"));

    /* a.example: a's certificate, verified by the client against that name. */
    kxt_pair p;
    kxt_pair_start(&p, cc, def, "a.example", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_string_equal(v.last, "a.example");
    assert_string_equal(ktlsx_sni(p.s), "a.example");
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "a.example"));
    assert_null(ktlsx_alpn(p.c)); /* a has no ALPN: the default's (none) did not leak in */
    assert_int_equal(atomic_load(&def->conns), 0);
    assert_int_equal(atomic_load(&v.a->conns), 1);
    /* The reload case: the vhost is dropped by its owner and lives on in the connection. */
    kxt_exchange(&p, 100);
    kxt_pair_free(&p);
    assert_int_equal(atomic_load(&v.a->conns), 0);

    /* b.example: HRR and ALPN from b, once through the callback. */
    KXT_CFG_OK(v.b, ktlsx_config_set_groups(v.b, "P-384"));
    v.calls = 0;
    kxt_pair_start(&p, cc, def, "b.example", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(v.calls, 1);
    assert_true(p.s->hrr);
    assert_string_equal(ktlsx_group_name(p.c), "secp384r1");
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "b.example"));
    assert_string_equal(ktlsx_alpn(p.c), "h2");
    kxt_pair_free(&p);
    /* b.example as TLS 1.2 only: the version is chosen from b too. */
    KXT_CFG_OK(v.b, ktlsx_config_set_versions(v.b, KTLSX_TLS12, KTLSX_TLS12));
    kxt_pair_start(&p, cc, def, "b.example", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.c), KTLSX_TLS12);
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "b.example"));
    kxt_pair_free(&p);

    /* The client verifies: asking for a.example and getting b's certificate fails. */
    ktlsx_config *def_b = kxt_server_cfg(NULL, NULL, NULL);
    vhosts wrong = { .a = v.b, .b = v.b };
    KXT_CFG_OK(def_b, ktlsx_config_set_sni_callback(def_b, pick_vhost, &wrong));
    kxt_pair_start(&p, cc, def_b, "a.example", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_BAD_CERTIFICATE);
    kxt_pair_free(&p);

    /* An unknown name: the callback's alert reaches the client. */
    kxt_pair_start(&p, cc, def, "c.example", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_UNRECOGNIZED_NAME);
    assert_int_equal(p.cst, KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_UNRECOGNIZED_NAME);
    kxt_pair_free(&p);

    /* No SNI (an IP literal is never sent): server_name is NULL, the default serves. */
    kxt_pair_start(&p, cc, def, "127.0.0.1", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_true(v.saw_null);
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
    kxt_pair_free(&p);

    ktlsx_config_free(v.a);
    ktlsx_config_free(v.b);
    ktlsx_config_free(def);
    ktlsx_config_free(def_b);
    ktlsx_config_free(cc);
}

static int bad_alert_sni(ktlsx_conn *conn, const char *name, void *arg)
{
    (void)conn, (void)name, (void)arg;
    return 4096;
}

static void test_sni_callback_errors(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    assert_setter_fails(cc, ktlsx_config_set_sni_callback(cc, pick_vhost, NULL), "server configurations only");
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_sni_callback(sc, bad_alert_sni, NULL));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_INTERNAL_ERROR);
    kxt_pair_free(&p);
}

/* ====================================================== PSKs by identity */

enum { NPSK = 100 };
typedef struct {
    char id[NPSK][48];
    uint8_t key[NPSK][48];
    size_t len[NPSK];
    int sha384[NPSK];
    int calls;
    size_t force_len; /* nonzero: answer with this key length (a broken keyring) */
} psk_table;

static void psk_table_init(psk_table *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < NPSK; i++) {
        snprintf(t->id[i], sizeof t->id[i], "nqn.2014-08.org.example:host-%03d", i);
        t->sha384[i] = i % 3 == 0;
        t->len[i] = t->sha384[i] ? 48 : 32;
        for (size_t b = 0; b < t->len[i]; b++) t->key[i][b] = (uint8_t)(i * 7 + b);
    }
}

static int psk_lookup(ktlsx_conn *conn, const uint8_t *id, size_t idlen, uint8_t *key, size_t *key_len,
                      int *sha384, void *arg)
{
    (void)conn;
    psk_table *t = arg;
    t->calls++;
    assert_int_equal(*key_len, 64);
    for (int i = 0; i < NPSK; i++) {
        if (strlen(t->id[i]) != idlen || memcmp(t->id[i], id, idlen) != 0) continue;
        memcpy(key, t->key[i], t->len[i]);
        *key_len = t->force_len ? t->force_len : t->len[i];
        *sha384 = t->sha384[i];
        return 1;
    }
    return 0;
}

static ktlsx_config *psk_client(const psk_table *t, int i, const uint8_t *key)
{
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, t->id[i], key ? key : t->key[i], t->len[i], t->sha384[i]));
    return cc;
}

static void test_psk_callback_many(void **state)
{
    (void)state;
    psk_table *t = malloc(sizeof *t);
    assert_non_null(t);
    psk_table_init(t);
    /* NVMe style: no certificate at all, keys only by identity. */
    ktlsx_config *sc = kxt_server_cfg(NULL, NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_psk_callback(sc, psk_lookup, t));
    static const int picks[] = { 0, 1, 42, 57, 99 };
    for (size_t k = 0; k < sizeof picks / sizeof picks[0]; k++) {
        ktlsx_config *cc = psk_client(t, picks[k], NULL);
        t->calls = 0;
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_true(ktlsx_resumed(p.c) && ktlsx_resumed(p.s));
        assert_true(p.s->psk_external);
        assert_int_equal(t->calls, 1);
        assert_int_equal(ktlsx_cipher_id(p.c), t->sha384[picks[k]] ? 0x1302 : 0x1301);
        kxt_exchange(&p, 500);
        p.scfg = NULL; /* shared: freed below */
        kxt_pair_free(&p);
    }

    /* A known identity with another key: the binder fails (decrypt_error), as for a set PSK. */
    uint8_t wrong[48];
    memset(wrong, 0x5a, sizeof wrong);
    kxt_pair p;
    kxt_pair_start(&p, psk_client(t, 5, wrong), sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_DECRYPT_ERROR);
    p.scfg = NULL;
    kxt_pair_free(&p);

    /* An unknown identity: as for an unknown ktlsx_config_set_psk identity,
     * handshake_failure without a certificate ... */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "nqn.2014-08.org.example:stranger", t->key[0], 32, 0));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    p.keep_cfgs = true;
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);
    /* ... and a full handshake with one. */
    ktlsx_config *sc_cert = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc_cert, ktlsx_config_set_psk_callback(sc_cert, psk_lookup, t));
    assert_int_equal(connect_once(cc, sc_cert, "localhost", NULL, NULL), 0);

    /* A ticket this server issued never reaches the callback. */
    ktlsx_config *plain = kxt_client_cfg(NULL, NULL);
    blob s1;
    assert_int_equal(connect_once(plain, sc_cert, "localhost", NULL, &s1), 0);
    t->calls = 0;
    assert_int_equal(connect_once(plain, sc_cert, "localhost", &s1, NULL), 1);
    assert_int_equal(t->calls, 0);

    /* A keyring handing back a key of an unusable length: internal_error, not a truncated key. */
    t->force_len = 64;
    kxt_pair_start(&p, psk_client(t, 7, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_INTERNAL_ERROR);
    p.scfg = NULL;
    kxt_pair_free(&p);
    t->force_len = 8;
    kxt_pair_start(&p, psk_client(t, 7, NULL), sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_INTERNAL_ERROR);
    p.scfg = NULL;
    kxt_pair_free(&p);

    assert_setter_fails(cc, ktlsx_config_set_psk_callback(cc, psk_lookup, t), "server configurations only");
    ktlsx_config_free(cc);
    ktlsx_config_free(plain);
    ktlsx_config_free(sc);
    ktlsx_config_free(sc_cert);
    free(t);
}

/* ======================================================= verify callback */

typedef struct {
    int ret;          /* what to answer (when no pin) */
    const uint8_t *pin; /* SHA-256 of the leaf to accept, else answer 42 */
    int calls, chain_ok;
    size_t count;
} verify_state;

static void sha256(const uint8_t *d, size_t n, uint8_t out[32])
{
    unsigned len = 32;
    assert_int_equal(EVP_Digest(d, n, out, &len, EVP_sha256(), NULL), 1);
}

static int verify_hook(ktlsx_conn *conn, int chain_ok, const uint8_t *const *der, const size_t *der_len,
                       size_t count, void *arg)
{
    (void)conn;
    verify_state *v = arg;
    v->calls++;
    v->chain_ok = chain_ok;
    v->count = count;
    if (!v->pin) return v->ret;
    uint8_t h[32];
    sha256(der[0], der_len[0], h);
    return memcmp(h, v->pin, 32) == 0 ? 0 : KX_ALERT_BAD_CERTIFICATE;
}

/* A pair for the verify tests: version `v`, mutual authentication when mtls. */
static void verify_pair(kxt_pair *p, uint16_t v, bool mtls, const char *server_cert, verify_state *on_client,
                        verify_state *on_server)
{
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg(server_cert, NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, v, v));
    if (mtls) {
        KXT_CFG_OK(cc, ktlsx_config_add_cert(cc, kxt_pki_path("client.pem"), kxt_pki_path("client.key")));
        KXT_CFG_OK(sc, ktlsx_config_set_ca_file(sc, kxt_pki_path("ca.pem")));
        KXT_CFG_OK(sc, ktlsx_config_set_verify_client(sc, KTLSX_VERIFY_REQUIRE));
    }
    if (on_client) KXT_CFG_OK(cc, ktlsx_config_set_verify_callback(cc, verify_hook, on_client));
    if (on_server) KXT_CFG_OK(sc, ktlsx_config_set_verify_callback(sc, verify_hook, on_server));
    kxt_pair_start(p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(p);
}

static void test_verify_callback_accept_reject(void **state)
{
    (void)state;
    static const uint16_t versions[] = { KTLSX_TLS12, KTLSX_TLS13 };
    for (size_t i = 0; i < 2; i++) {
        kxt_pair p;
        /* Client side: accept sees the verified chain (leaf + intermediate). */
        verify_state vc = { .ret = 0 };
        verify_pair(&p, versions[i], false, "ecdsa", &vc, NULL);
        kxt_assert_done(&p);
        assert_int_equal(vc.calls, 1);
        assert_int_equal(vc.chain_ok, 1);
        assert_int_equal(vc.count, 2);
        kxt_pair_free(&p);
        /* Client side: reject with access_denied, which the server receives. */
        vc = (verify_state){ .ret = KX_ALERT_ACCESS_DENIED };
        verify_pair(&p, versions[i], false, "rsa", &vc, NULL);
        kxt_assert_failed(&p, false, KX_ALERT_ACCESS_DENIED);
        assert_int_equal(ktlsx_alert(p.c), KX_ALERT_ACCESS_DENIED);
        kxt_pair_free(&p);
        /* Server side (client certificates): accept, then reject with bad_certificate. */
        verify_state vs = { .ret = 0 };
        verify_pair(&p, versions[i], true, "ecdsa", NULL, &vs);
        kxt_assert_done(&p);
        assert_int_equal(vs.calls, 1);
        assert_int_equal(vs.chain_ok, 1);
        assert_non_null(strstr(ktlsx_peer_subject(p.s), "ktlsx-client"));
        kxt_pair_free(&p);
        vs = (verify_state){ .ret = KX_ALERT_BAD_CERTIFICATE };
        verify_pair(&p, versions[i], true, "ecdsa", NULL, &vs);
        kxt_assert_failed(&p, false, KX_ALERT_BAD_CERTIFICATE);
        if (p.cst == KTLSX_DONE) {
            /* TLS 1.3: the client finished with its last flight; the alert comes with the next read. */
            assert_int_equal(versions[i], KTLSX_TLS13);
            kxt_deliver(p.c, &p.s2c);
            uint8_t buf[16];
            assert_int_equal(ktlsx_read(p.c, buf, sizeof buf), -KTLSX_FAILED);
        }
        assert_int_equal(ktlsx_alert(p.c), KX_ALERT_BAD_CERTIFICATE);
        kxt_pair_free(&p);
        /* An out-of-range answer is a bug of the callback: internal_error. */
        vc = (verify_state){ .ret = -1 };
        verify_pair(&p, versions[i], false, "ecdsa", &vc, NULL);
        kxt_assert_failed(&p, true, KX_ALERT_INTERNAL_ERROR);
        kxt_pair_free(&p);
    }
}

/* SHA-256 of the leaf (first certificate) of a PEM file. */
static void leaf_hash(const char *pem, uint8_t out[32])
{
    FILE *f = fopen(kxt_pki_path(pem), "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    sha256(der, (size_t)n, out);
    OPENSSL_free(der);
    X509_free(x);
}

static void test_verify_callback_pinning(void **state)
{
    (void)state;
    uint8_t pin_other[32], pin_ecdsa[32];
    leaf_hash("other.pem", pin_other);
    leaf_hash("server-ecdsa.pem", pin_ecdsa);
    static const uint16_t versions[] = { KTLSX_TLS12, KTLSX_TLS13 };
    for (size_t i = 0; i < 2; i++) {
        kxt_pair p;
        /* Without a callback, a leaf from an unknown CA fails. */
        ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = ktlsx_config_new(KTLSX_SERVER);
        KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, versions[i], versions[i]));
        KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("other.pem"), kxt_pki_path("other.key")));
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        p.keep_cfgs = true;
        kxt_pump(&p);
        kxt_assert_failed(&p, true, KX_ALERT_UNKNOWN_CA);
        kxt_pair_free(&p);
        /* Pinned: the callback overrides the failed chain for exactly that leaf. */
        verify_state v = { .pin = pin_other };
        KXT_CFG_OK(cc, ktlsx_config_set_verify_callback(cc, verify_hook, &v));
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        p.keep_cfgs = true;
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_int_equal(v.chain_ok, 0);
        assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
        kxt_exchange(&p, 100);
        kxt_pair_free(&p);
        ktlsx_config_free(cc);
        ktlsx_config_free(sc);
        /* Pinned to another leaf: a valid chain is rejected all the same. */
        v = (verify_state){ .pin = pin_other };
        verify_pair(&p, versions[i], false, "ecdsa", &v, NULL);
        kxt_assert_failed(&p, true, KX_ALERT_BAD_CERTIFICATE);
        assert_int_equal(v.chain_ok, 1);
        kxt_pair_free(&p);
        v = (verify_state){ .pin = pin_ecdsa };
        verify_pair(&p, versions[i], false, "ecdsa", &v, NULL);
        kxt_assert_done(&p);
        kxt_pair_free(&p);
    }
}

/* ========================================================= session store */

enum { STORE_SLOTS = 8 };
typedef struct {
    struct {
        uint8_t key[32];
        size_t key_len;
        uint8_t data[4096];
        size_t len;
        bool used;
    } e[STORE_SLOTS];
    int puts, gets, hits, removes;
    bool lying;
    long lie; /* when lying: get returns this length whatever it holds */
    pthread_mutex_t lock;
} mem_store;

static int find_slot(mem_store *m, const uint8_t *key, size_t key_len)
{
    for (int i = 0; i < STORE_SLOTS; i++)
        if (m->e[i].used && m->e[i].key_len == key_len && memcmp(m->e[i].key, key, key_len) == 0) return i;
    return -1;
}

static int store_put(void *arg, const uint8_t *key, size_t key_len, const uint8_t *session, size_t len,
                     unsigned lifetime_s)
{
    mem_store *m = arg;
    assert_true(key_len <= 32 && len <= 4096 && lifetime_s > 0);
    pthread_mutex_lock(&m->lock);
    m->puts++;
    int i = find_slot(m, key, key_len);
    for (int k = 0; i < 0 && k < STORE_SLOTS; k++)
        if (!m->e[k].used) i = k;
    if (i < 0) i = 0;
    memcpy(m->e[i].key, key, key_len);
    m->e[i].key_len = key_len;
    memcpy(m->e[i].data, session, len);
    m->e[i].len = len;
    m->e[i].used = true;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static long store_get(void *arg, const uint8_t *key, size_t key_len, uint8_t *buf, size_t cap)
{
    mem_store *m = arg;
    pthread_mutex_lock(&m->lock);
    m->gets++;
    int i = find_slot(m, key, key_len);
    long r = -1;
    if (i >= 0 && m->e[i].len <= cap) {
        memcpy(buf, m->e[i].data, m->e[i].len);
        r = (long)m->e[i].len;
        m->hits++;
    }
    if (m->lying) r = m->lie;
    pthread_mutex_unlock(&m->lock);
    return r;
}

static void store_remove(void *arg, const uint8_t *key, size_t key_len)
{
    mem_store *m = arg;
    pthread_mutex_lock(&m->lock);
    m->removes++;
    int i = find_slot(m, key, key_len);
    if (i >= 0) memset(&m->e[i], 0, sizeof m->e[i]);
    pthread_mutex_unlock(&m->lock);
}

/* A TLS 1.2 server with the store, no tickets (so that only the session ID can resume). */
static ktlsx_config *store_server(mem_store *m)
{
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0));
    struct ktlsx_session_store st = { store_put, store_get, store_remove, m };
    KXT_CFG_OK(sc, ktlsx_config_set_session_store(sc, &st));
    return sc;
}

/* A full handshake on server 1 leaves one session in the store; returns the client's session. */
static void store_fresh_session(mem_store *m, ktlsx_config *cc, ktlsx_config *s1, blob *sess)
{
    int puts = m->puts;
    assert_int_equal(connect_once(cc, s1, "localhost", NULL, sess), 0);
    assert_int_equal(m->puts, puts + 1);
}

static void test_session_store_shared(void **state)
{
    (void)state;
    mem_store *m = calloc(1, sizeof *m);
    assert_non_null(m);
    pthread_mutex_init(&m->lock, NULL);
    ktlsx_config *s1 = store_server(m), *s2 = store_server(m);
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, KTLSX_TLS12, KTLSX_TLS12));
    blob sess;

    /* Server 1's session resumes on server 2, which never saw it (its own cache misses). */
    store_fresh_session(m, cc, s1, &sess);
    assert_int_equal(connect_once(cc, s2, "localhost", &sess, NULL), 1);
    assert_int_equal(m->hits, 1);
    /* The session found in the store joined server 2's own cache once the
     * resumption completed (issue 12): the next reconnection there resumes
     * without asking the store. */
    int gets = m->gets;
    assert_int_equal(connect_once(cc, s2, "localhost", &sess, NULL), 1);
    assert_int_equal(m->gets, gets);
    /* Server 1 answers from its in-process cache, not the store. */
    assert_int_equal(connect_once(cc, s1, "localhost", &sess, NULL), 1);
    assert_int_equal(m->gets, gets);

    /* A corrupted stored blob: magic, format, version, secret length, a secret
     * byte, the session ID, the issue time, the ticket length.  Full handshake
     * (or, with a wrong secret, a failed one), and the entry removed. */
    static const size_t flip_at[] = { 0, 2, 4, 7, 8, 60, 92, 106 };
    for (size_t k = 0; k < sizeof flip_at / sizeof flip_at[0]; k++) {
        memset(m->e, 0, sizeof m->e); /* only this session in the store */
        store_fresh_session(m, cc, s1, &sess);
        int slot = -1;
        for (int i = 0; i < STORE_SLOTS && slot < 0; i++)
            if (m->e[i].used && m->e[i].len > flip_at[k]) slot = i;
        assert_true(slot >= 0);
        bool secret_byte = flip_at[k] >= 8 && flip_at[k] < 8 + 48;
        m->e[slot].data[flip_at[k]] ^= 0x41;
        int removes = m->removes;
        if (secret_byte) {
            /* The blob still decodes, with a wrong master secret: the server
             * resumes, the Finished check fails, and the entry goes. */
            kxt_pair p;
            kxt_pair_start(&p, cc, s2, "localhost", KXT_FEED_ALL);
            p.keep_cfgs = true;
            assert_int_equal(ktlsx_set_session(p.c, sess.data, (size_t)sess.len), 0);
            kxt_pump(&p);
            assert_int_equal(p.sst, KTLSX_FAILED);
            kxt_pair_free(&p);
        } else if (connect_once(cc, s2, "localhost", &sess, NULL) != 0) {
            fail_msg("resumed from a blob with byte %zu flipped", flip_at[k]);
        }
        assert_true(m->removes > removes);
    }

    /* Garbage lengths from get: full handshakes, nothing read out of bounds. */
    static const long lies[] = { 0, -7, 4097, 1L << 40, 3 };
    for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
        memset(m->e, 0, sizeof m->e);
        store_fresh_session(m, cc, s1, &sess);
        m->lying = true;
        m->lie = lies[k];
        if (connect_once(cc, s2, "localhost", &sess, NULL) != 0) fail_msg("resumed with get returning %ld", lies[k]);
        m->lying = false;
    }

    /* A well-formed session stored under another session's ID: not resumed. */
    memset(m->e, 0, sizeof m->e);
    blob other;
    store_fresh_session(m, cc, s1, &sess);
    store_fresh_session(m, cc, s1, &other);
    /* Slots fill in order: 0 holds sess, 1 holds other; give sess's ID other's blob. */
    assert_true(m->e[0].used && m->e[1].used);
    memcpy(m->e[0].data, m->e[1].data, m->e[1].len);
    m->e[0].len = m->e[1].len;
    assert_int_equal(connect_once(cc, s2, "localhost", &sess, NULL), 0);

    ktlsx_config_free(s1);
    ktlsx_config_free(s2);
    ktlsx_config_free(cc);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void test_session_store_setter(void **state)
{
    (void)state;
    mem_store m = { 0 };
    struct ktlsx_session_store st = { store_put, store_get, NULL, &m };
    ktlsx_config *cc = ktlsx_config_new(KTLSX_CLIENT), *sc = ktlsx_config_new(KTLSX_SERVER);
    assert_setter_fails(cc, ktlsx_config_set_session_store(cc, &st), "server configurations only");
    st.get = NULL;
    assert_setter_fails(sc, ktlsx_config_set_session_store(sc, &st), "get NULL");
    st.get = store_get;
    assert_int_equal(ktlsx_config_set_session_store(sc, &st), 0); /* remove is optional */
    assert_true(kx_store_enabled(sc));
    assert_int_equal(ktlsx_config_set_session_store(sc, NULL), 0);
    assert_false(kx_store_enabled(sc));
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_lifetimes),
        cmocka_unit_test(test_setters_refused_in_use),
        cmocka_unit_test(test_refcount_threads),
        cmocka_unit_test(test_conn_set_config_rules),
        cmocka_unit_test(test_sni_virtual_hosts),
        cmocka_unit_test(test_sni_callback_errors),
        cmocka_unit_test(test_psk_callback_many),
        cmocka_unit_test(test_verify_callback_accept_reject),
        cmocka_unit_test(test_verify_callback_pinning),
        cmocka_unit_test(test_session_store_shared),
        cmocka_unit_test(test_session_store_setter),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
