/* Session resumption and PSKs at engine level (in-memory client/server pair):
 * TLS 1.2 by session ID (server cache) and by ticket, TLS 1.3 tickets, the
 * ktlsx_get_session / ktlsx_set_session blob, tampered and rotated-out
 * tickets (full handshake, not a failure), ticket key files, the cache bound,
 * external PSKs (good key, wrong key = bad binder, length limit), ticket
 * lifetime, PSKs across a HelloRetryRequest (RFC 8446 §4.1.4), selected_identity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

typedef struct {
    uint8_t data[4096];
    long len;
} blob;

/* A pair on shared configurations (the caller frees them), the client
 * carrying the session SESS (none if NULL). */
static void start_on_shared_cfgs(kxt_pair *p, ktlsx_config *cc, ktlsx_config *sc, enum kxt_feed_mode feed,
                                 const blob *sess)
{
    kxt_pair_start(p, cc, sc, "localhost", feed);
    p->keep_cfgs = true;
    if (sess) assert_int_equal(ktlsx_set_session(p->c, sess->data, (size_t)sess->len), 0);
}

/* One connection on shared configurations; data both ways; the session blob
 * out (sess_out may be NULL), the session in (sess_in may be NULL).  Returns
 * ktlsx_resumed of the client (asserting both sides agree). */
static int connect_once(ktlsx_config *cc, ktlsx_config *sc, const blob *sess_in, blob *sess_out)
{
    kxt_pair p;
    start_on_shared_cfgs(&p, cc, sc, KXT_FEED_ALL, sess_in);
    kxt_pump(&p);
    kxt_assert_done(&p);
    int resumed = ktlsx_resumed(p.c);
    assert_int_equal(ktlsx_resumed(p.s), resumed);
    /* Data both ways; this also delivers TLS 1.3 NewSessionTickets to the client. */
    kxt_send_recv(&p, false, "server first", 12);
    kxt_send_recv(&p, true, "client", 6);
    kxt_settle(&p);
    kxt_exchange(&p, 30000);
    if (sess_out) {
        sess_out->len = ktlsx_get_session(p.c, sess_out->data, sizeof sess_out->data);
        if (sess_out->len <= 0)
            fail_msg("no session after a %s handshake (version %s)", resumed ? "resumed" : "full", ktlsx_version_name(p.c));
    }
    kxt_pair_free(&p);
    return resumed;
}

static ktlsx_config *client_v(uint16_t min, uint16_t max)
{
    ktlsx_config *cfg = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cfg, ktlsx_config_set_versions(cfg, min, max));
    return cfg;
}

static ktlsx_config *server_v(const char *cert, uint16_t min, uint16_t max)
{
    ktlsx_config *cfg = kxt_server_cfg(cert, NULL, NULL);
    KXT_CFG_OK(cfg, ktlsx_config_set_versions(cfg, min, max));
    return cfg;
}

/* ---- the blob layout (kx_session_encode): find the ticket bytes ---- */

typedef struct {
    size_t ticket_off, ticket_len, sid_len;
    uint16_t version;
} blob_layout;

static blob_layout parse_blob(const blob *b)
{
    blob_layout l = { 0 };
    const uint8_t *d = b->data;
    size_t p = 0;
    assert_true(b->len > 20);
    assert_int_equal(kxt_get16(d), 0x6b78); /* magic "kx" */
    p = 3;
    l.version = kxt_get16(d + p);
    p += 2 + 2;        /* version, suite */
    p += 1 + d[p];     /* secret */
    p += 1;            /* ems */
    l.sid_len = d[p];
    p += 1 + d[p];     /* session id */
    p += 8 + 4 + 4;    /* issued, lifetime, age_add */
    l.ticket_len = kxt_get16(d + p);
    l.ticket_off = p + 2;
    assert_true(l.ticket_off + l.ticket_len <= (size_t)b->len);
    return l;
}

/* ----------------------------------------------------- TLS 1.2 resumption */

static void test_tls12_session_id(void **state)
{
    (void)state;
    ktlsx_config *cc = client_v(KTLSX_TLS12, KTLSX_TLS12), *sc = server_v("ecdsa", KTLSX_TLS12, KTLSX_TLS12);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0)); /* cache only */
    blob s1, s2, s3;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    blob_layout l = parse_blob(&s1);
    assert_int_equal(l.version, KTLSX_TLS12);
    assert_int_equal(l.sid_len, 32);
    assert_int_equal(l.ticket_len, 0);
    assert_int_equal(connect_once(cc, sc, &s1, &s2), 1);
    /* The resumed connection's session resumes again. */
    assert_int_equal(connect_once(cc, sc, &s2, &s3), 1);
    assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_tls12_ticket(void **state)
{
    (void)state;
    ktlsx_config *cc = client_v(KTLSX_TLS12, KTLSX_TLS12), *sc = server_v("rsa", KTLSX_TLS12, KTLSX_TLS12);
    KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 0, 0)); /* tickets only */
    blob s1, s2;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    blob_layout l = parse_blob(&s1);
    assert_int_equal(l.sid_len, 0);
    assert_true(l.ticket_len > 32);
    assert_int_equal(connect_once(cc, sc, &s1, &s2), 1);
    assert_int_equal(connect_once(cc, sc, &s2, NULL), 1);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_tls12_trace_abbreviated(void **state)
{
    (void)state;
    kxt_trace_buf t;
    kxt_trace_open(&t);
    ktlsx_config *cc = client_v(KTLSX_TLS12, KTLSX_TLS12), *sc = server_v("ecdsa", KTLSX_TLS12, KTLSX_TLS12);
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    ktlsx_config_set_trace(cc, t.f);
    assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
    kxt_trace_expect(&t, "resume=1");
    kxt_trace_expect(&t, "S->C ServerHello version=TLSv1.2");
    kxt_trace_expect(&t, "resumed=1");
    kxt_trace_expect(&t, "S->C Finished");
    kxt_trace_expect(&t, "C->S Finished");
    fflush(t.f);
    assert_null(strstr(t.text, "Certificate"));
    assert_null(strstr(t.text, "KeyExchange"));
    ktlsx_config_set_trace(cc, NULL);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
    kxt_trace_close(&t);
}

/* ----------------------------------------------------- TLS 1.3 resumption */

static void test_tls13_ticket(void **state)
{
    (void)state;
    static const char *const suites[] = { "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                          "TLS_CHACHA20_POLY1305_SHA256" };
    for (size_t i = 0; i < 3; i++) {
        ktlsx_config *cc = kxt_client_cfg(suites[i], NULL), *sc = kxt_server_cfg("ecdsa", suites[i], NULL);
        blob s1, s2;
        assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
        blob_layout l = parse_blob(&s1);
        assert_int_equal(l.version, KTLSX_TLS13);
        assert_true(l.ticket_len > 32);
        assert_int_equal(connect_once(cc, sc, &s1, &s2), 1);
        /* A ticket from the resumed connection resumes too. */
        assert_int_equal(connect_once(cc, sc, &s2, NULL), 1);
        ktlsx_config_free(cc);
        ktlsx_config_free(sc);
    }
}

static void test_tls13_resumed_details(void **state)
{
    (void)state;
    kxt_trace_buf t;
    kxt_trace_open(&t);
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("rsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_alpn(cc, "h2"));
    KXT_CFG_OK(sc, ktlsx_config_set_alpn(sc, "h2"));
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    ktlsx_config_set_trace(cc, t.f);
    kxt_pair p;
    start_on_shared_cfgs(&p, cc, sc, KXT_FEED_WANTED, &s1);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_resumed(p.c), 1);
    assert_int_equal(ktlsx_resumed(p.s), 1);
    /* psk_dhe_ke: still a fresh ECDHE group. */
    assert_string_equal(ktlsx_group_name(p.c), "x25519");
    assert_string_equal(ktlsx_alpn(p.c), "h2");
    assert_non_null(strstr(ktlsx_peer_subject(p.c), "localhost"));
    kxt_trace_expect(&t, "psk=1");
    fflush(t.f);
    assert_null(strstr(t.text, "CertificateVerify"));
    kxt_exchange(&p, 1000);
    kxt_pair_free(&p);
    ktlsx_config_set_trace(cc, NULL);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
    kxt_trace_close(&t);
}

static void test_tls13_no_tickets(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    kxt_exchange(&p, 100);
    uint8_t buf[4096];
    assert_int_equal(ktlsx_get_session(p.c, buf, sizeof buf), -1);
    kxt_pair_free(&p);
}

/* A TLS 1.2 session offered to a server that negotiates TLS 1.3 is ignored (full 1.3 handshake). */
static void test_cross_version(void **state)
{
    (void)state;
    ktlsx_config *c12 = client_v(KTLSX_TLS12, KTLSX_TLS12), *cboth = kxt_client_cfg(NULL, NULL);
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    blob s12, s13;
    assert_int_equal(connect_once(c12, sc, NULL, &s12), 0);
    assert_int_equal(connect_once(cboth, sc, &s12, &s13), 0);
    assert_int_equal(parse_blob(&s13).version, KTLSX_TLS13);
    /* A TLS 1.3 ticket offered by a 1.2-only client: not usable, full 1.2 handshake. */
    assert_int_equal(connect_once(c12, sc, &s13, NULL), 0);
    ktlsx_config_free(c12);
    ktlsx_config_free(cboth);
    ktlsx_config_free(sc);
}

/* ------------------------------------------------------------ the blob API */

static void test_session_blob_api(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);

    ktlsx_conn *c = ktlsx_conn_new(cc, "localhost");
    assert_non_null(c);
    uint8_t buf[4096];
    assert_int_equal(ktlsx_get_session(c, buf, sizeof buf), -1); /* no handshake yet */
    /* Garbage, truncated, trailing bytes, wrong magic: refused. */
    assert_int_equal(ktlsx_set_session(c, (const uint8_t *)"hello", 5), -1);
    assert_int_equal(ktlsx_set_session(c, s1.data, 0), -1);
    assert_int_equal(ktlsx_set_session(c, s1.data, (size_t)s1.len - 1), -1);
    memcpy(buf, s1.data, (size_t)s1.len);
    buf[s1.len] = 0;
    assert_int_equal(ktlsx_set_session(c, buf, (size_t)s1.len + 1), -1);
    buf[0] ^= 0xff;
    assert_int_equal(ktlsx_set_session(c, buf, (size_t)s1.len), -1);
    /* Unknown suite id. */
    memcpy(buf, s1.data, (size_t)s1.len);
    buf[5] = 0x12;
    buf[6] = 0x34;
    assert_int_equal(ktlsx_set_session(c, buf, (size_t)s1.len), -1);
    assert_int_equal(ktlsx_set_session(c, s1.data, (size_t)s1.len), 0);
    ktlsx_conn_free(c);

    /* A server connection does not take sessions; a started client neither. */
    ktlsx_conn *s = ktlsx_conn_new(sc, NULL);
    assert_int_equal(ktlsx_set_session(s, s1.data, (size_t)s1.len), -1);
    ktlsx_conn_free(s);
    kxt_pair p;
    start_on_shared_cfgs(&p, cc, sc, KXT_FEED_ALL, NULL);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(ktlsx_set_session(p.c, s1.data, (size_t)s1.len), -1);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    /* Too small a buffer: -1; exactly the size: the blob. */
    long n = ktlsx_get_session(p.c, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(ktlsx_get_session(p.c, buf, (size_t)n - 1), -1);
    assert_int_equal(ktlsx_get_session(p.c, buf, (size_t)n), n);
    kxt_pair_free(&p);

    /* Round trip: a blob set on a connection and used resumes. */
    assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* --------------------------------------------------- tampered / rotated */

static void tampered_ticket(uint16_t version, bool key_name)
{
    ktlsx_config *cc = client_v(version, version), *sc = server_v("ecdsa", version, version);
    KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 0, 0)); /* no fallback to the session ID */
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    blob_layout l = parse_blob(&s1);
    assert_true(l.ticket_len > 48);
    /* key_name: byte 0 (unknown key); else a ciphertext byte near the end (GCM fails). */
    size_t at = key_name ? l.ticket_off : l.ticket_off + l.ticket_len - 20;
    s1.data[at] ^= 0x40;
    blob s2;
    assert_int_equal(connect_once(cc, sc, &s1, &s2), 0); /* full handshake, no failure */
    assert_int_equal(connect_once(cc, sc, &s2, NULL), 1); /* and the fresh ticket works */
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_tampered_ticket(void **state)
{
    (void)state;
    tampered_ticket(KTLSX_TLS13, false);
    tampered_ticket(KTLSX_TLS13, true);
    tampered_ticket(KTLSX_TLS12, false);
    tampered_ticket(KTLSX_TLS12, true);
}

static void test_tampered_secret(void **state)
{
    (void)state;
    /* The client's copy of the resumption secret altered: TLS 1.3 = the binder does not
     * verify (decrypt_error); TLS 1.2 = Finished fails. Never a silent success. */
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS13 : KTLSX_TLS12;
        ktlsx_config *cc = client_v(ver, ver), *sc = server_v("ecdsa", ver, ver);
        blob s1;
        assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
        s1.data[3 + 4 + 1 + 3] ^= 0x01; /* inside the secret */
        kxt_pair p;
        start_on_shared_cfgs(&p, cc, sc, KXT_FEED_ALL, &s1);
        kxt_pump(&p);
        assert_int_equal(p.sst, KTLSX_FAILED);
        assert_int_equal(p.cst, KTLSX_FAILED);
        if (ver == KTLSX_TLS13) kxt_assert_failed(&p, false, KX_ALERT_DECRYPT_ERROR);
        kxt_pair_free(&p);
        ktlsx_config_free(cc);
        ktlsx_config_free(sc);
    }
}

static void test_rotated_out_key(void **state)
{
    (void)state;
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS13 : KTLSX_TLS12;
        ktlsx_config *cc = client_v(ver, ver), *sc = server_v("rsa", ver, ver);
        KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 0, 0));
        blob s1;
        assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
        /* Two rotations: the sealing key is still one of KX_TICKET_KEYS (3) kept. */
        KXT_CFG_OK(sc, ktlsx_config_rotate_ticket_keys(sc));
        KXT_CFG_OK(sc, ktlsx_config_rotate_ticket_keys(sc));
        assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
        /* A third: it is gone. Full handshake, no error. */
        KXT_CFG_OK(sc, ktlsx_config_rotate_ticket_keys(sc));
        blob s2;
        assert_int_equal(connect_once(cc, sc, &s1, &s2), 0);
        assert_int_equal(connect_once(cc, sc, &s2, NULL), 1);
        ktlsx_config_free(cc);
        ktlsx_config_free(sc);
    }
}

/* ----------------------------------------------------------- key files */

static const char *write_key_file(const char *name, size_t len, uint8_t seed)
{
    const char *path = kxt_pki_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < len; i++) fputc((uint8_t)(seed + i * 7), f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_ticket_key_file(void **state)
{
    (void)state;
    char k48[512], k80[512], other[512];
    snprintf(k48, sizeof k48, "%s", write_key_file("tk48.key", 48, 1));
    snprintf(k80, sizeof k80, "%s", write_key_file("tk80.key", 80, 2));
    snprintf(other, sizeof other, "%s", write_key_file("tk-other.key", 80, 99));
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS13 : KTLSX_TLS12;
        for (int f = 0; f < 2; f++) {
            const char *file = f ? k80 : k48;
            /* Two servers sharing a key file: a ticket from one resumes on the other. */
            ktlsx_config *cc = client_v(ver, ver);
            ktlsx_config *a = server_v("ecdsa", ver, ver), *b = server_v("ecdsa", ver, ver);
            ktlsx_config *c = server_v("ecdsa", ver, ver), *d = server_v("ecdsa", ver, ver);
            KXT_CFG_OK(a, ktlsx_config_add_ticket_key_file(a, file));
            KXT_CFG_OK(b, ktlsx_config_add_ticket_key_file(b, file));
            KXT_CFG_OK(c, ktlsx_config_add_ticket_key_file(c, other));
            for (ktlsx_config **x = (ktlsx_config *[]){ a, b, c, d, NULL }; *x; x++)
                KXT_CFG_OK(*x, ktlsx_config_set_session_cache(*x, 0, 0));
            blob s1;
            assert_int_equal(connect_once(cc, a, NULL, &s1), 0);
            assert_int_equal(connect_once(cc, b, &s1, NULL), 1);
            assert_int_equal(connect_once(cc, c, &s1, NULL), 0); /* another key file */
            assert_int_equal(connect_once(cc, d, &s1, NULL), 0); /* random keys */
            /* A server that seals with a new file but still opens the old one: resumes. */
            KXT_CFG_OK(c, ktlsx_config_add_ticket_key_file(c, file));
            assert_int_equal(connect_once(cc, c, &s1, NULL), 1);
            ktlsx_config_free(cc);
            ktlsx_config_free(a);
            ktlsx_config_free(b);
            ktlsx_config_free(c);
            ktlsx_config_free(d);
        }
    }
}

/* issue 12: ktlsx_config_ticket_keys lists names and ages (from the key
 * file's modification time), the sealing key first, and nothing else. */
static void test_ticket_key_list(void **state)
{
    (void)state;
    char first[512], second[512];
    snprintf(first, sizeof first, "%s", write_key_file("tk-list1.key", 80, 11));
    snprintf(second, sizeof second, "%s", write_key_file("tk-list2.key", 48, 23));
    struct timespec old[2] = { { time(NULL) - 3600, 0 }, { time(NULL) - 3600, 0 } };
    assert_int_equal(utimensat(AT_FDCWD, second, old, 0), 0);
    ktlsx_config *sc = server_v("ecdsa", KTLSX_TLS13, KTLSX_TLS13);
    struct ktlsx_ticket_key_info k[4];
    /* Random keys: made on first use (or a rotation), then listed as sealing. */
    KXT_CFG_OK(sc, ktlsx_config_rotate_ticket_keys(sc));
    assert_int_equal(ktlsx_config_ticket_keys(sc, k, 4), 1);
    assert_int_equal(k[0].seals, 1);
    assert_true(k[0].age_s < 5);
    ktlsx_config_free(sc);
    sc = server_v("ecdsa", KTLSX_TLS13, KTLSX_TLS13);
    KXT_CFG_OK(sc, ktlsx_config_add_ticket_key_file(sc, first));
    KXT_CFG_OK(sc, ktlsx_config_add_ticket_key_file(sc, second));
    assert_int_equal(ktlsx_config_ticket_keys(sc, NULL, 0), 2);
    memset(k, 0x5a, sizeof k);
    assert_int_equal(ktlsx_config_ticket_keys(sc, k, 1), 2); /* fills only what fits */
    assert_int_equal(k[1].name[0], 0x5a);
    assert_int_equal(ktlsx_config_ticket_keys(sc, k, 4), 2);
    for (size_t i = 0; i < 16; i++) {
        assert_int_equal(k[0].name[i], (uint8_t)(11 + i * 7));
        assert_int_equal(k[1].name[i], (uint8_t)(23 + i * 7));
    }
    assert_int_equal(k[0].seals, 1);
    assert_int_equal(k[1].seals, 0);
    assert_true(k[0].age_s < 60);
    assert_true(k[1].age_s >= 3590 && k[1].age_s < 3700);
    ktlsx_config_free(sc);
}

/* A configuration built to replace another (ktlsxd's reload) takes over its
 * session cache and ticket keys: sessions from before resume after; and the
 * counts ktlsx_config_session_stats reports follow. */
static void test_take_sessions(void **state)
{
    (void)state;
    for (int v = 0; v < 3; v++) {
        uint16_t ver = v == 2 ? KTLSX_TLS13 : KTLSX_TLS12;
        ktlsx_config *cc = client_v(ver, ver), *old = server_v("ecdsa", ver, ver);
        if (v == 0) KXT_CFG_OK(old, ktlsx_config_set_tickets(old, 0, 0)); /* TLS 1.2 session ID only */
        blob s1;
        assert_int_equal(connect_once(cc, old, NULL, &s1), 0);
        struct ktlsx_session_stats st;
        assert_int_equal(ktlsx_config_session_stats(old, &st), 0);
        assert_int_equal(st.cache_capacity, 1024);
        assert_int_equal(st.cache_entries, ver == KTLSX_TLS12 ? 1 : 0);
        assert_int_equal(st.ticket_keys, v == 0 ? 0 : 1);
        assert_int_equal(st.ticket_rotation_s, 3600);
        ktlsx_config *fresh = server_v("ecdsa", ver, ver), *next = server_v("ecdsa", ver, ver);
        if (v == 0) KXT_CFG_OK(next, ktlsx_config_set_tickets(next, 0, 0));
        assert_int_equal(connect_once(cc, fresh, &s1, NULL), 0); /* a new configuration alone: full */
        KXT_CFG_OK(next, ktlsx_config_take_sessions(next, old));
        assert_int_equal(connect_once(cc, next, &s1, NULL), 1);
        ktlsx_config_free(cc);
        ktlsx_config_free(old);
        ktlsx_config_free(fresh);
        ktlsx_config_free(next);
    }
    /* Keys from files are the files' owner's: no schedule, and not replaced. */
    ktlsx_config *a = server_v("ecdsa", KTLSX_TLS13, KTLSX_TLS13);
    KXT_CFG_OK(a, ktlsx_config_add_ticket_key_file(a, write_key_file("tk-take.key", 80, 7)));
    assert_int_equal(ktlsx_config_set_ticket_rotation(a, 600), -1);
    assert_non_null(strstr(ktlsx_config_error(a), "rotated by their owner"));
    assert_int_equal(ktlsx_config_set_ticket_rotation(a, 30), -1); /* under a minute */
    ktlsx_config *b = server_v("ecdsa", KTLSX_TLS13, KTLSX_TLS13);
    KXT_CFG_OK(b, ktlsx_config_set_ticket_rotation(b, 0));
    struct ktlsx_session_stats st;
    assert_int_equal(ktlsx_config_session_stats(b, &st), 0);
    assert_int_equal(st.ticket_rotation_s, 0);
    ktlsx_config_free(a);
    ktlsx_config_free(b);
}

static void test_ticket_key_file_errors(void **state)
{
    (void)state;
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    static const size_t bad[] = { 0, 16, 47, 49, 64, 79, 81, 128 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "tk-bad-%zu.key", bad[i]);
        char path[512];
        snprintf(path, sizeof path, "%s", write_key_file(name, bad[i], 5));
        assert_int_equal(ktlsx_config_add_ticket_key_file(sc, path), -1);
        if (!strstr(ktlsx_config_error(sc), path)) fail_msg("error does not name %s: %s", path, ktlsx_config_error(sc));
    }
    const char *missing = kxt_pki_path("no-such-ticket.key");
    assert_int_equal(ktlsx_config_add_ticket_key_file(sc, missing), -1);
    assert_non_null(strstr(ktlsx_config_error(sc), "no-such-ticket.key"));
    /* Tickets still work (random keys) after the failed loads. */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* --------------------------------------------------------- cache bound */

static void test_session_cache_bound(void **state)
{
    (void)state;
    ktlsx_config *cc = client_v(KTLSX_TLS12, KTLSX_TLS12), *sc = server_v("ecdsa", KTLSX_TLS12, KTLSX_TLS12);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0));
    KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 2, 300));
    blob a, b, c;
    assert_int_equal(connect_once(cc, sc, NULL, &a), 0);
    assert_int_equal(connect_once(cc, sc, NULL, &b), 0);
    assert_int_equal(connect_once(cc, sc, NULL, &c), 0);
    /* Three sessions in a two-entry cache: the least recently used (a) is gone. */
    assert_int_equal(connect_once(cc, sc, &c, NULL), 1);
    assert_int_equal(connect_once(cc, sc, &b, NULL), 1);
    assert_int_equal(connect_once(cc, sc, &a, NULL), 0);
    /* Cache off: no session ID resumption at all. */
    KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 0, 0));
    blob d;
    kxt_pair p;
    start_on_shared_cfgs(&p, cc, sc, KXT_FEED_ALL, NULL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    /* Neither an ID nor a ticket: nothing to resume from. */
    d.len = ktlsx_get_session(p.c, d.data, sizeof d.data);
    assert_int_equal(d.len, -1);
    kxt_pair_free(&p);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_session_cache_lifetime(void **state)
{
    (void)state;
    ktlsx_config *cc = client_v(KTLSX_TLS12, KTLSX_TLS12), *sc = server_v("ecdsa", KTLSX_TLS12, KTLSX_TLS12);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0));
    KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 16, 1));
    blob a;
    assert_int_equal(connect_once(cc, sc, NULL, &a), 0);
    assert_int_equal(connect_once(cc, sc, &a, NULL), 1);
    usleep(1300 * 1000);
    assert_int_equal(connect_once(cc, sc, &a, NULL), 0);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_ticket_lifetime(void **state)
{
    (void)state;
    for (int v = 0; v < 2; v++) {
        uint16_t ver = v ? KTLSX_TLS13 : KTLSX_TLS12;
        ktlsx_config *cc = client_v(ver, ver), *sc = server_v("ecdsa", ver, ver);
        KXT_CFG_OK(sc, ktlsx_config_set_session_cache(sc, 0, 0));
        KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 1, 1));
        blob a;
        assert_int_equal(connect_once(cc, sc, NULL, &a), 0);
        usleep(1300 * 1000);
        assert_int_equal(connect_once(cc, sc, &a, NULL), 0);
        ktlsx_config_free(cc);
        ktlsx_config_free(sc);
    }
    /* Over seven days: refused by the setter. */
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    assert_int_equal(ktlsx_config_set_tickets(sc, 2, 604801), -1);
    assert_int_equal(ktlsx_config_set_tickets(sc, 2, 604800), 0);
    ktlsx_config_free(sc);
}

/* ------------------------------------------------------------ external PSK */

static const uint8_t psk_a[48] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
                                   25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48 };
static const uint8_t psk_b[48] = { 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
                                   9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9 };

static void test_external_psk(void **state)
{
    (void)state;
    /* SHA-256 with AES-128, SHA-384 with AES-256; server with and without a certificate. */
    for (int sha384 = 0; sha384 < 2; sha384++) {
        for (int cert = 0; cert < 2; cert++) {
            const char *suite = sha384 ? "TLS_AES_256_GCM_SHA384" : "TLS_AES_128_GCM_SHA256";
            ktlsx_config *cc = kxt_client_cfg(suite, NULL), *sc = kxt_server_cfg(cert ? "ecdsa" : NULL, suite, NULL);
            KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, sha384 ? 48 : 32, sha384));
            KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_a, sha384 ? 48 : 32, sha384));
            kxt_pair p;
            kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_WANTED);
            kxt_pump(&p);
            kxt_assert_done(&p);
            assert_int_equal(ktlsx_version(p.c), KTLSX_TLS13);
            assert_int_equal(ktlsx_resumed(p.c), 1);
            assert_int_equal(ktlsx_resumed(p.s), 1);
            assert_string_equal(ktlsx_cipher_name(p.c), suite);
            kxt_settle(&p);
            kxt_exchange(&p, 50000);
            /* No tickets for external PSK connections. */
            uint8_t buf[4096];
            assert_int_equal(ktlsx_get_session(p.c, buf, sizeof buf), -1);
            kxt_pair_free(&p);
        }
    }
}

static void test_external_psk_wrong_key(void **state)
{
    (void)state;
    for (int cert = 0; cert < 2; cert++) {
        ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg(cert ? "rsa" : NULL, NULL, NULL);
        KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, 32, 0));
        KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_b, 32, 0));
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_failed(&p, false, KX_ALERT_DECRYPT_ERROR);
        kxt_assert_failed(&p, true, KX_ALERT_DECRYPT_ERROR);
        kxt_pair_free(&p);
    }
}

static void test_external_psk_unknown_identity(void **state)
{
    (void)state;
    /* The server knows another identity but has a certificate: full handshake. */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "alice", psk_a, 32, 0));
    KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "bob", psk_a, 32, 0));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_resumed(p.c), 0);
    kxt_send_recv(&p, true, "x", 1);
    kxt_pair_free(&p);
    /* Without a certificate the server cannot continue: handshake_failure. */
    cc = kxt_client_cfg(NULL, NULL);
    sc = kxt_server_cfg(NULL, NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "alice", psk_a, 32, 0));
    KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "bob", psk_a, 32, 0));
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_failed(&p, false, KX_ALERT_HANDSHAKE_FAILURE);
    kxt_pair_free(&p);
}

static void test_external_psk_hash_mismatch(void **state)
{
    (void)state;
    /* A SHA-384 PSK can only be used with a SHA-384 suite: with only AES-128 (SHA-256) in
     * common the server skips it; without a certificate it must fail cleanly. */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg(NULL, "TLS_AES_128_GCM_SHA256", NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, 48, 1));
    KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_a, 48, 1));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    assert_int_equal(p.sst, KTLSX_FAILED);
    assert_int_equal(p.cst, KTLSX_FAILED);
    kxt_pair_free(&p);
}

/* A key longer than the largest hash (SHA-384) is refused by the setter: the
 * handshake keeps PSKs in KX_MAX_HASH-byte buffers.  Keys of 32 (SHA-256) and
 * 48 (SHA-384) bytes, the longest accepted, work end to end. */
static void test_external_psk_too_long(void **state)
{
    (void)state;
    uint8_t key[64];
    memset(key, 0x5a, sizeof key);
    ktlsx_config *cfg = kxt_client_cfg(NULL, NULL);
    static const size_t too_long[] = { 49, 64 };
    for (size_t i = 0; i < 2; i++) {
        for (int sha384 = 0; sha384 < 2; sha384++) {
            assert_int_equal(ktlsx_config_set_psk(cfg, "id", key, too_long[i], sha384), -1);
            if (!strstr(ktlsx_config_error(cfg), "16..48 bytes"))
                fail_msg("error does not give the limit: %s", ktlsx_config_error(cfg));
        }
    }
    assert_int_equal(cfg->psk_len, 0); /* nothing half-set */
    ktlsx_config_free(cfg);

    for (int sha384 = 0; sha384 < 2; sha384++) {
        size_t len = sha384 ? 48 : 32;
        ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg(NULL, NULL, NULL);
        KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", key, len, sha384));
        KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", key, len, sha384));
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_int_equal(ktlsx_resumed(p.c), 1);
        assert_int_equal(ktlsx_resumed(p.s), 1);
        assert_string_equal(ktlsx_cipher_name(p.c), sha384 ? "TLS_AES_256_GCM_SHA384" : "TLS_AES_128_GCM_SHA256");
        kxt_settle(&p);
        kxt_exchange(&p, 1000);
        kxt_pair_free(&p);
    }
}

/* Client side up to its second ClientHello: ClientHello1 to the server, the
 * HelloRetryRequest back, ClientHello2 on c2s (not delivered).  Returns whether
 * ClientHello1 offered a PSK. */
static bool run_to_second_hello(kxt_pair *p)
{
    kxt_client_hello_out(p);
    bool psk1 = kxt_hello_has_ext(&p->c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_PRE_SHARED_KEY);
    kxt_deliver(p->s, &p->c2s);
    p->sst = ktlsx_handshake(p->s);
    assert_int_equal(p->sst, KTLSX_WANT_READ);
    assert_true(p->s->hrr);
    kxt_move_out(p->s, &p->s2c);
    kxt_deliver(p->c, &p->s2c);
    p->cst = ktlsx_handshake(p->c);
    assert_int_equal(p->cst, KTLSX_WANT_READ);
    assert_true(p->c->hrr);
    kxt_move_out(p->c, &p->c2s);
    return psk1;
}

/* RFC 8446 §4.1.4: after a HelloRetryRequest the client offers only PSKs whose
 * hash is that of the retry's suite.  A SHA-384 PSK (external or a ticket) met
 * by a retry for a SHA-256 suite is left out of ClientHello2: a full handshake,
 * and no binder computed over a transcript hash of the wrong length. */
static void test_psk_dropped_after_hrr_other_hash(void **state)
{
    (void)state;
    /* The server only speaks P-256: the client's x25519 share gets a retry. */
    ktlsx_config *cc = kxt_client_cfg(NULL, "x25519,P-256");
    ktlsx_config *sc = kxt_server_cfg("ecdsa", "TLS_AES_128_GCM_SHA256", "P-256");
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, 48, 1));
    KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_a, 48, 1));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    assert_true(run_to_second_hello(&p));
    assert_false(kxt_hello_has_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_PRE_SHARED_KEY));
    assert_true(kxt_hello_has_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_PSK_KEY_EXCHANGE_MODES));
    assert_false(p.c->offered_psk);
    assert_int_equal(p.c->psk_len, 0);
    assert_memory_equal(p.c->psk, (const uint8_t[KX_MAX_HASH]){ 0 }, KX_MAX_HASH);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_resumed(p.c), 0);
    assert_int_equal(ktlsx_resumed(p.s), 0);
    assert_string_equal(ktlsx_cipher_name(p.c), "TLS_AES_128_GCM_SHA256");
    kxt_exchange(&p, 1000);
    kxt_pair_free(&p);

    /* The same with a resumption ticket from a SHA-384 session. */
    cc = kxt_client_cfg(NULL, "x25519,P-256");
    sc = kxt_server_cfg("ecdsa", "TLS_AES_256_GCM_SHA384", NULL);
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    KXT_CFG_OK(sc, ktlsx_config_set_ciphers(sc, "TLS_AES_128_GCM_SHA256"));
    KXT_CFG_OK(sc, ktlsx_config_set_groups(sc, "P-256"));
    start_on_shared_cfgs(&p, cc, sc, KXT_FEED_ALL, &s1);
    assert_true(run_to_second_hello(&p));
    assert_false(kxt_hello_has_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_PRE_SHARED_KEY));
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_resumed(p.c), 0);
    assert_int_equal(ktlsx_resumed(p.s), 0);
    kxt_pair_free(&p);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* A PSK whose hash is the retry suite's is still offered after a
 * HelloRetryRequest, its binder over the rewritten transcript; the server
 * (no certificate: only the PSK can authenticate it) verifies every byte. */
static void test_psk_kept_after_hrr_same_hash(void **state)
{
    (void)state;
    for (int sha384 = 0; sha384 < 2; sha384++) {
        const char *suite = sha384 ? "TLS_AES_256_GCM_SHA384" : "TLS_AES_128_GCM_SHA256";
        ktlsx_config *cc = kxt_client_cfg(NULL, "x25519,P-256"), *sc = kxt_server_cfg(NULL, suite, "P-256");
        KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, sha384 ? 48 : 32, sha384));
        KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_a, sha384 ? 48 : 32, sha384));
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        assert_true(run_to_second_hello(&p));
        assert_true(kxt_hello_has_ext(&p.c2s, KX_HS_CLIENT_HELLO, KX_EXT_TYPE_PRE_SHARED_KEY));
        kxt_pump(&p);
        kxt_assert_done(&p);
        assert_int_equal(ktlsx_resumed(p.c), 1);
        assert_int_equal(ktlsx_resumed(p.s), 1);
        assert_string_equal(ktlsx_cipher_name(p.c), suite);
        assert_string_equal(ktlsx_group_name(p.c), "secp256r1");
        kxt_exchange(&p, 1000);
        kxt_pair_free(&p);
    }
}

/* RFC 8446 §4.1.4: the ServerHello after a HelloRetryRequest must select the
 * same version.  A retry from a TLS 1.3 server, then ClientHello2 answered by a
 * TLS 1.2-only server (no downgrade sentinel: it never spoke 1.3). */
static void test_tls12_server_hello_after_hrr(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, "x25519,P-256");
    ktlsx_config *s13 = kxt_server_cfg("ecdsa", NULL, "P-256"), *s12 = kxt_server_cfg("ecdsa", NULL, "P-256");
    KXT_CFG_OK(s12, ktlsx_config_set_versions(s12, KTLSX_TLS12, KTLSX_TLS12));
    kxt_pair p;
    kxt_pair_start(&p, cc, s12, "localhost", KXT_FEED_ALL);
    ktlsx_conn *retry = ktlsx_conn_new(s13, NULL);
    assert_non_null(retry);
    kxt_client_hello_out(&p);
    kxt_deliver(retry, &p.c2s);
    assert_int_equal(ktlsx_handshake(retry), KTLSX_WANT_READ);
    assert_true(retry->hrr);
    kxt_move_out(retry, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    p.cst = ktlsx_handshake(p.c);
    assert_int_equal(p.cst, KTLSX_WANT_READ);
    kxt_move_out(p.c, &p.c2s); /* ClientHello2, to the TLS 1.2 server */
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_ILLEGAL_PARAMETER);
    assert_non_null(strstr(ktlsx_error(p.c), "HelloRetryRequest"));
    ktlsx_conn_free(retry);
    ktlsx_config_free(s13);
    kxt_pair_free(&p);
}

/* RFC 8446 §4.1.4: the ServerHello after a HelloRetryRequest must also keep
 * the retry's cipher suite (a man in the middle swaps AES-128 for AES-256). */
static void test_server_hello_after_hrr_changes_suite(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, "x25519,P-256");
    ktlsx_config *sc = kxt_server_cfg("ecdsa", "TLS_AES_128_GCM_SHA256", "P-256");
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    assert_false(run_to_second_hello(&p));
    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    kxt_move_out(p.s, &p.s2c);
    size_t x;
    assert_true(kxt_hello_exts(&p.s2c, KX_HS_SERVER_HELLO, &x));
    assert_int_equal(kxt_get16(p.s2c.data + x - 3), 0x1301); /* cipher_suite, compression, extensions */
    kxt_put16(p.s2c.data + x - 3, 0x1302);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_ILLEGAL_PARAMETER);
    assert_non_null(strstr(ktlsx_error(p.c), "HelloRetryRequest"));
    kxt_pair_free(&p);
}

/* selected_identity is a 16-bit index (RFC 8446 §4.2.11).  The client's hello is
 * rewritten to offer 300 unknown identities before the real one (binder
 * recomputed); the server must answer 300, not 300 mod 256, and our client, which
 * offered one identity, must refuse that index. */
static void test_psk_selected_identity_16bit(void **state)
{
    (void)state;
    enum { DUMMIES = 300 };
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg(NULL, NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, 32, 0));
    KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_a, 32, 0));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_client_hello_out(&p);

    /* The original hello: pre_shared_key is its last extension. */
    size_t x;
    assert_true(kxt_hello_exts(&p.c2s, KX_HS_CLIENT_HELLO, &x));
    size_t end = x + 2 + kxt_get16(p.c2s.data + x), psk_at = 0;
    for (size_t at = x + 2; at + 4 <= end; at += 4 + kxt_get16(p.c2s.data + at + 2))
        if (kxt_get16(p.c2s.data + at) == KX_EXT_TYPE_PRE_SHARED_KEY) psk_at = at;
    assert_true(psk_at != 0);
    const uint8_t *ids = p.c2s.data + psk_at + 4; /* identities<7..2^16-1> */
    size_t ids_len = kxt_get16(ids);
    assert_int_equal(end, psk_at + 4 + 2 + ids_len + 2 + 1 + 32);

    /* The new handshake message: everything before pre_shared_key, then ours. */
    kx_buf m = { 0 };
    assert_false(kx_failed(kx_write_bytes(&m, p.c2s.data + 5, psk_at - 5)));
    assert_false(kx_failed(kx_write_u16(&m, KX_EXT_TYPE_PRE_SHARED_KEY)));
    size_t ext_len_at = m.len;
    assert_false(kx_failed(kx_write_u16(&m, 0)));
    assert_false(kx_failed(kx_write_u16(&m, DUMMIES * 7 + ids_len)));
    for (int i = 0; i < DUMMIES; i++) {
        static const uint8_t dummy[7] = { 0, 1, 'x', 0, 0, 0, 0 };
        assert_false(kx_failed(kx_write_bytes(&m, dummy, sizeof dummy)));
    }
    assert_false(kx_failed(kx_write_bytes(&m, ids + 2, ids_len)));
    size_t binders_at = m.len;
    assert_false(kx_failed(kx_write_u16(&m, (DUMMIES + 1) * 33)));
    for (int i = 0; i <= DUMMIES; i++) {
        uint8_t b[33] = { 32 };
        assert_false(kx_failed(kx_write_bytes(&m, b, sizeof b)));
    }
    kxt_put16(m.data + ext_len_at, m.len - ext_len_at - 2);
    kxt_put16(m.data + x - 5, m.len - (x - 5) - 2);
    kxt_put24(m.data + 1, m.len - 4);
    /* The real binder, over the hello up to the binders. */
    ktlsx_conn *fresh = ktlsx_conn_new(cc, "localhost");
    assert_non_null(fresh);
    assert_false(kx_failed(kx_psk_binder(fresh, KX_HASH_SHA256, psk_a, 32, true, m.data, binders_at,
                                         m.data + m.len - 32)));
    ktlsx_conn_free(fresh);
    assert_true(m.len <= 16384);
    uint8_t hdr[5] = { KX_CT_HANDSHAKE, p.c2s.data[1], p.c2s.data[2], 0, 0 };
    kxt_put16(hdr + 3, m.len);
    kx_buf_reset(&p.c2s);
    assert_false(kx_failed(kx_write_bytes(&p.c2s, hdr, sizeof hdr)));
    assert_false(kx_failed(kx_write_bytes(&p.c2s, m.data, m.len)));
    kx_buf_free(&m);

    kxt_deliver(p.s, &p.c2s);
    p.sst = ktlsx_handshake(p.s);
    if (p.sst != KTLSX_WANT_READ) fail_msg("server: %s (%s)", kxt_status_name(p.sst), ktlsx_error(p.s));
    assert_true(p.s->resumed);
    kxt_move_out(p.s, &p.s2c);
    /* The ServerHello's pre_shared_key: the full index. */
    assert_true(kxt_hello_exts(&p.s2c, KX_HS_SERVER_HELLO, &x));
    end = x + 2 + kxt_get16(p.s2c.data + x);
    long selected = -1;
    for (size_t at = x + 2; at + 4 <= end; at += 4 + kxt_get16(p.s2c.data + at + 2))
        if (kxt_get16(p.s2c.data + at) == KX_EXT_TYPE_PRE_SHARED_KEY && kxt_get16(p.s2c.data + at + 2) == 2)
            selected = kxt_get16(p.s2c.data + at + 4);
    assert_int_equal(selected, DUMMIES);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_ILLEGAL_PARAMETER);
    kxt_pair_free(&p);
}

static void test_psk_config_errors(void **state)
{
    (void)state;
    ktlsx_config *cfg = kxt_client_cfg(NULL, NULL);
    assert_int_equal(ktlsx_config_set_psk(cfg, "", psk_a, 32, 0), -1);
    assert_int_equal(ktlsx_config_set_psk(cfg, NULL, psk_a, 32, 0), -1);
    assert_int_equal(ktlsx_config_set_psk(cfg, "id", psk_a, 15, 0), -1);
    assert_string_not_equal(ktlsx_config_error(cfg), "");
    assert_int_equal(ktlsx_config_set_psk(cfg, "id", psk_a, 16, 0), 0);
    ktlsx_config_free(cfg);
}

static void test_psk_ke_config(void **state)
{
    (void)state;
    /* psk_ke allowed on both sides: resumption still works (psk_dhe_ke preferred). */
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_psk_ke(cc, 1));
    KXT_CFG_OK(sc, ktlsx_config_set_psk_ke(sc, 1));
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* ---- conf-b: psk_ke for external PSKs only when allowed (issue 13 item 10) ---- */

/* The client's first ClientHello (on c2s) rewritten to offer only psk_ke
 * and no key_share, as a PSK-only client would send it; the binder is
 * recomputed and the client's own transcript follows the edit, so that the
 * handshake can complete when the server allows psk_ke. */
static void offer_only_psk_ke(kxt_pair *p)
{
    kx_buf *w = &p->c2s;
    assert_true(kxt_strip_hello_ext(w, KX_HS_CLIENT_HELLO, 51 /* key_share */));
    size_t x;
    assert_true(kxt_hello_exts(w, KX_HS_CLIENT_HELLO, &x));
    size_t end = x + 2 + kxt_get16(w->data + x);
    bool edited = false;
    for (size_t e = x + 2; e + 4 <= end; e += 4 + kxt_get16(w->data + e + 2))
        if (kxt_get16(w->data + e) == 45 /* psk_key_exchange_modes */) {
            assert_int_equal(kxt_get16(w->data + e + 2), 3); /* <2> psk_ke psk_dhe_ke: psk_ke is on */
            w->data[e + 5] = 0;
            w->data[e + 6] = 0; /* psk_ke, psk_ke */
            edited = true;
        }
    assert_true(edited);
    /* One SHA-256 identity: the binders are the last 2 + 1 + 32 bytes. */
    uint8_t *msg = w->data + 5;
    size_t msg_len = 4 + kxt_get24(msg + 1);
    assert_int_equal(5 + msg_len, w->len);
    size_t binders_off = msg_len - (2 + 1 + 32);
    kx_buf_reset(&p->c->transcript.pending);
    assert_null(p->c->transcript.ctx);
    uint8_t binder[KX_MAX_HASH];
    assert_false(kx_failed(kx_psk_binder(p->c, KX_HASH_SHA256, psk_a, 32, true, msg, binders_off, binder)));
    memcpy(msg + binders_off + 3, binder, 32);
    assert_false(kx_failed(kx_transcript_add(&p->c->transcript, msg, msg_len)));
}

static void test_external_psk_ke_needs_opt_in(void **state)
{
    (void)state;
    for (int allow = 0; allow < 2; allow++) {
        ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg(NULL, NULL, NULL);
        KXT_CFG_OK(cc, ktlsx_config_set_psk(cc, "client1", psk_a, 32, 0));
        KXT_CFG_OK(sc, ktlsx_config_set_psk(sc, "client1", psk_a, 32, 0));
        KXT_CFG_OK(cc, ktlsx_config_set_psk_ke(cc, 1));
        if (allow) KXT_CFG_OK(sc, ktlsx_config_set_psk_ke(sc, 1));
        kxt_pair p;
        kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
        kxt_client_hello_out(&p);
        offer_only_psk_ke(&p);
        kxt_pump(&p);
        if (allow) {
            kxt_assert_done(&p);
            assert_int_equal(ktlsx_resumed(p.s), 1);
            assert_string_equal(ktlsx_group_name(p.s), "-"); /* no (EC)DHE: the opted-in case */
            kxt_send_recv(&p, true, "psk_ke", 6);
        } else {
            /* Not silently without forward secrecy: refused as OpenSSL refuses it. */
            kxt_assert_failed(&p, false, KX_ALERT_MISSING_EXTENSION);
        }
        kxt_pair_free(&p);
    }
}

/* ------------------------------------------- the cache costs nothing until used */

/* ASan replaces malloc, and glibc's mallinfo2 then sees none of it: the byte
 * bound is checked in the plain build, the deferral itself in both. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_MEASURABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_MEASURABLE 0
#endif
#endif
#ifndef HEAP_MEASURABLE
#define HEAP_MEASURABLE 1
#endif

/* Bytes the process has allocated: the main arena plus mmap'ed blocks (the
 * cache's 2.4 MB calloc is one of those). */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* A new server configuration may cost at most this much heap. */
#define SERVER_CONFIG_HEAP_BOUND (64 * 1024)

static void test_server_config_heap_cost(void **state)
{
    (void)state;
    /* One-time library set-up (algorithm fetches) is not the configuration's cost. */
    ktlsx_config_free(ktlsx_config_new(KTLSX_SERVER));
    size_t before = heap_in_use();
    ktlsx_config *sc = ktlsx_config_new(KTLSX_SERVER);
    assert_non_null(sc);
    size_t cost = heap_in_use() - before;
    assert_non_null(sc->session_cache); /* the cache is on by default ... */
    assert_false(kx_session_cache_allocated(sc->session_cache)); /* ... but not allocated */
    if (HEAP_MEASURABLE && cost >= SERVER_CONFIG_HEAP_BOUND)
        fail_msg("ktlsx_config_new(KTLSX_SERVER) costs %zu bytes of heap (bound %d)", cost, SERVER_CONFIG_HEAP_BOUND);
    print_message("ktlsx_config_new(KTLSX_SERVER): %zu bytes of heap%s\n", cost,
                  HEAP_MEASURABLE ? "" : " (not measurable under ASan)");

    /* Session-ID resumption still works: the first full TLS 1.2 handshake
     * allocates the cache, the second connection resumes from it. */
    KXT_CFG_OK(sc, ktlsx_config_add_cert(sc, kxt_pki_path("server-ecdsa.pem"), kxt_pki_path("server-ecdsa.key")));
    KXT_CFG_OK(sc, ktlsx_config_set_versions(sc, KTLSX_TLS12, KTLSX_TLS12));
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0)); /* session IDs only */
    assert_false(kx_session_cache_allocated(sc->session_cache));
    ktlsx_config *cc = client_v(KTLSX_TLS12, KTLSX_TLS12);
    blob s1;
    assert_int_equal(connect_once(cc, sc, NULL, &s1), 0);
    assert_true(kx_session_cache_allocated(sc->session_cache));
    /* The measurement sees the cache once it exists (so the bound above means something). */
    if (HEAP_MEASURABLE && heap_in_use() - before < 1024 * sizeof(kx_session))
        fail_msg("heap grew by %zu bytes only after the cache was filled", heap_in_use() - before);
    assert_int_equal(connect_once(cc, sc, &s1, NULL), 1);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

/* The first put allocates the entries; configurations are shared by the
 * connections of many threads, so first puts race. */
#define RACE_THREADS 8
#define RACE_PUTS 16

static void *race_put(void *arg)
{
    kx_session_cache *cache = arg;
    static unsigned next_id;
    for (int i = 0; i < RACE_PUTS; i++) {
        kx_session s = { 0 };
        unsigned id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
        s.session_id_len = 32;
        memcpy(s.session_id, &id, sizeof id);
        s.issued_ms = kx_now_ms();
        s.secret_len = 48;
        s.version = KTLSX_TLS12;
        kx_session_cache_put(cache, &s);
    }
    return NULL;
}

static void test_session_cache_first_use_race(void **state)
{
    (void)state;
    kx_session_cache *cache = kx_session_cache_new(RACE_THREADS * RACE_PUTS, 300);
    assert_non_null(cache);
    assert_false(kx_session_cache_allocated(cache));
    kx_session out;
    uint8_t id[32] = { 1 };
    assert_false(kx_session_cache_get(cache, id, sizeof id, &out)); /* a get before any put finds nothing */
    assert_false(kx_session_cache_allocated(cache));                /* and allocates nothing */
    pthread_t t[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, race_put, cache), 0);
    for (int i = 0; i < RACE_THREADS; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_true(kx_session_cache_allocated(cache));
    /* Room for all of them: every session put is there (none lost to a second allocation). */
    for (unsigned n = 1; n <= RACE_THREADS * RACE_PUTS; n++) {
        memset(id, 0, sizeof id);
        memcpy(id, &n, sizeof n);
        if (!kx_session_cache_get(cache, id, sizeof id, &out)) fail_msg("session %u was lost", n);
    }
    kx_session_cache_free(cache);
}

int main(void)
{
    static struct CMUnitTest tests[64];
    size_t n = 0;
#define ADD(fn) tests[n++] = (struct CMUnitTest){ #fn, fn, NULL, NULL, NULL }
    ADD(test_tls12_session_id);
    ADD(test_tls12_ticket);
    ADD(test_tls12_trace_abbreviated);
    ADD(test_tls13_ticket);
    ADD(test_tls13_resumed_details);
    ADD(test_tls13_no_tickets);
    ADD(test_cross_version);
    ADD(test_session_blob_api);
    ADD(test_tampered_ticket);
    ADD(test_tampered_secret);
    ADD(test_rotated_out_key);
    ADD(test_ticket_key_file);
    ADD(test_ticket_key_list);
    ADD(test_ticket_key_file_errors);
    ADD(test_take_sessions);
    ADD(test_session_cache_bound);
    ADD(test_session_cache_lifetime);
    ADD(test_server_config_heap_cost);
    ADD(test_session_cache_first_use_race);
    ADD(test_ticket_lifetime);
    ADD(test_external_psk);
    ADD(test_external_psk_wrong_key);
    ADD(test_external_psk_unknown_identity);
    ADD(test_external_psk_hash_mismatch);
    ADD(test_psk_config_errors);
    ADD(test_psk_ke_config);
    ADD(test_external_psk_ke_needs_opt_in); /* conf-b */
    ADD(test_external_psk_too_long);
    ADD(test_psk_dropped_after_hrr_other_hash);
    ADD(test_psk_kept_after_hrr_same_hash);
    ADD(test_tls12_server_hello_after_hrr);
    ADD(test_server_hello_after_hrr_changes_suite);
    ADD(test_psk_selected_identity_16bit);
#undef ADD
    return _cmocka_run_group_tests("test_session", tests, n, kxt_pki_group_setup, kxt_pki_group_teardown);
}
