/* An in-memory client/server engine pair for the handshake tests
 * (test_handshake.c, test_tls12.c, test_session.c):
 * two ktlsx_conn, one kx_buf per direction as "the network", a pump that
 * runs both handshakes until neither can progress, plus helpers to edit
 * plaintext hello messages in flight (a man in the middle).
 *
 * Header-only like helpers/pki.h: include it after <cmocka.h>,
 * "handshake/conn.h" and "helpers/pki.h". */
#ifndef KXT_HELPERS_ENGINE_PAIR_H
#define KXT_HELPERS_ENGINE_PAIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kxt_feed_mode { KXT_FEED_ALL, KXT_FEED_WANTED };

typedef struct {
    ktlsx_config *ccfg, *scfg;
    ktlsx_conn *c, *s;
    int cst, sst;
    kx_buf c2s, s2c;
    enum kxt_feed_mode mode;
    bool keep_cfgs; /* pair_free leaves the configurations alone (reused across connections) */
    const char *client_early; /* written by the client the moment its handshake is done */
} kxt_pair;

#define KXT_CFG_OK(cfg, expr)                                                               \
    do {                                                                                    \
        if ((expr) != 0) fail_msg("%s: %s", #expr, ktlsx_config_error(cfg));                \
    } while (0)

KXT_UNUSED static const char *kxt_status_name(int st)
{
    switch (st) {
    case KTLSX_WANT_READ: return "WANT_READ";
    case KTLSX_DONE: return "DONE";
    case KTLSX_FAILED: return "FAILED";
    case KTLSX_CLOSED: return "CLOSED";
    default: return "?";
    }
}

/* A server configuration with server-CERT.pem/.key (cert may be NULL). */
KXT_UNUSED static ktlsx_config *kxt_server_cfg(const char *cert, const char *suites, const char *groups)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    assert_non_null(cfg);
    if (cert) {
        char crt[64], key[64];
        snprintf(crt, sizeof crt, "server-%s.pem", cert);
        snprintf(key, sizeof key, "server-%s.key", cert);
        KXT_CFG_OK(cfg, ktlsx_config_add_cert(cfg, kxt_pki_path(crt), kxt_pki_path(key)));
    }
    if (suites) KXT_CFG_OK(cfg, ktlsx_config_set_ciphers(cfg, suites));
    if (groups) KXT_CFG_OK(cfg, ktlsx_config_set_groups(cfg, groups));
    return cfg;
}

KXT_UNUSED static ktlsx_config *kxt_client_cfg(const char *suites, const char *groups)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_CLIENT);
    assert_non_null(cfg);
    KXT_CFG_OK(cfg, ktlsx_config_set_ca_file(cfg, kxt_pki_path("ca.pem")));
    if (suites) KXT_CFG_OK(cfg, ktlsx_config_set_ciphers(cfg, suites));
    if (groups) KXT_CFG_OK(cfg, ktlsx_config_set_groups(cfg, groups));
    return cfg;
}

/* Takes ownership of both configurations (unless keep_cfgs is set afterwards). */
KXT_UNUSED static void kxt_pair_start(kxt_pair *p, ktlsx_config *ccfg, ktlsx_config *scfg, const char *host,
                                      enum kxt_feed_mode mode)
{
    memset(p, 0, sizeof *p);
    p->ccfg = ccfg;
    p->scfg = scfg;
    p->mode = mode;
    p->c = ktlsx_conn_new(ccfg, host);
    p->s = ktlsx_conn_new(scfg, NULL);
    assert_non_null(p->c);
    assert_non_null(p->s);
    p->cst = p->sst = KTLSX_WANT_READ;
}

KXT_UNUSED static void kxt_pair_free(kxt_pair *p)
{
    ktlsx_conn_free(p->c);
    ktlsx_conn_free(p->s);
    if (!p->keep_cfgs) {
        ktlsx_config_free(p->ccfg);
        ktlsx_config_free(p->scfg);
    }
    kx_buf_free(&p->c2s);
    kx_buf_free(&p->s2c);
    memset(p, 0, sizeof *p);
}

/* Move everything `from` wants to send onto the wire. */
KXT_UNUSED static void kxt_move_out(ktlsx_conn *from, kx_buf *wire)
{
    const uint8_t *d;
    size_t n;
    while ((n = ktlsx_pending_output(from, &d)) > 0) {
        kx_result r = kx_write_bytes(wire, d, n);
        assert_false(kx_failed(r));
        ktlsx_output_done(from, n);
    }
}

/* Feed `to` from the wire: all of it, or at most ktlsx_input_wanted().  The
 * pump feeds only an engine in WANT_READ, which must take the bytes. */
KXT_UNUSED static bool kxt_feed(ktlsx_conn *to, kx_buf *wire, enum kxt_feed_mode mode)
{
    if (wire->len == 0) return false;
    size_t n = wire->len;
    if (mode == KXT_FEED_WANTED) {
        size_t want = ktlsx_input_wanted(to);
        assert_true(want > 0);
        if (want < n) n = want;
    }
    assert_int_equal(ktlsx_input(to, wire->data, n), 0);
    kx_buf_consume(wire, n);
    return true;
}

/* Everything on the wire into `to`. */
KXT_UNUSED static void kxt_deliver(ktlsx_conn *to, kx_buf *wire)
{
    if (wire->len == 0) return;
    assert_int_equal(ktlsx_input(to, wire->data, wire->len), 0);
    kx_buf_consume(wire, wire->len);
}

/* Run both handshakes until neither can make progress. */
KXT_UNUSED static void kxt_pump(kxt_pair *p)
{
    for (int i = 0; i < 100000; i++) {
        if (p->cst == KTLSX_WANT_READ) {
            p->cst = ktlsx_handshake(p->c);
            if (p->cst == KTLSX_DONE && p->client_early)
                assert_int_equal(ktlsx_write(p->c, p->client_early, strlen(p->client_early)), 0);
        }
        kxt_move_out(p->c, &p->c2s);
        if (p->sst == KTLSX_WANT_READ) p->sst = ktlsx_handshake(p->s);
        kxt_move_out(p->s, &p->s2c);
        /* The contract: never 0 while WANT_READ. */
        if (p->cst == KTLSX_WANT_READ) assert_true(ktlsx_input_wanted(p->c) > 0);
        if (p->sst == KTLSX_WANT_READ) assert_true(ktlsx_input_wanted(p->s) > 0);
        bool moved = false;
        if (p->cst == KTLSX_WANT_READ) moved |= kxt_feed(p->c, &p->s2c, p->mode);
        if (p->sst == KTLSX_WANT_READ) moved |= kxt_feed(p->s, &p->c2s, p->mode);
        if (!moved) return;
    }
    fail_msg("handshake does not terminate");
}

KXT_UNUSED static void kxt_assert_done(const kxt_pair *p)
{
    if (p->cst != KTLSX_DONE || p->sst != KTLSX_DONE)
        fail_msg("client %s (%s, alert %u), server %s (%s, alert %u)", kxt_status_name(p->cst), ktlsx_error(p->c),
                 ktlsx_alert(p->c), kxt_status_name(p->sst), ktlsx_error(p->s), ktlsx_alert(p->s));
}

/* Expect the handshake to fail on `who` (the client if client) with `alert`. */
KXT_UNUSED static void kxt_assert_failed(const kxt_pair *p, bool client, uint8_t alert)
{
    ktlsx_conn *c = client ? p->c : p->s;
    int st = client ? p->cst : p->sst;
    if (st != KTLSX_FAILED || ktlsx_alert(c) != alert)
        fail_msg("%s: expected FAILED with alert %u (%s), got %s (alert %u, \"%s\"); peer %s (alert %u, \"%s\")",
                 client ? "client" : "server", alert, ktlsx_alert_name(alert), kxt_status_name(st), ktlsx_alert(c),
                 ktlsx_error(c), kxt_status_name(client ? p->sst : p->cst), ktlsx_alert(client ? p->s : p->c),
                 ktlsx_error(client ? p->s : p->c));
}

/* Read until the engine has nothing more; returns bytes read, *last = final return value. */
KXT_UNUSED static size_t kxt_drain_read(ktlsx_conn *c, uint8_t *buf, size_t cap, long *last)
{
    size_t n = 0;
    for (;;) {
        long r = ktlsx_read(c, buf + n, cap - n);
        if (r <= 0) {
            *last = r;
            return n;
        }
        n += (size_t)r;
        if (n == cap) {
            *last = 1;
            return n;
        }
    }
}

/* Send `data` one way and check it arrives intact; whatever the receiver
 * produced meanwhile (a KeyUpdate answer) is put on the wire back. */
KXT_UNUSED static void kxt_send_recv(kxt_pair *p, bool from_client, const void *data, size_t len)
{
    ktlsx_conn *a = from_client ? p->c : p->s, *b = from_client ? p->s : p->c;
    kx_buf *fwd = from_client ? &p->c2s : &p->s2c, *back = from_client ? &p->s2c : &p->c2s;
    assert_int_equal(ktlsx_write(a, data, len), 0);
    kxt_move_out(a, fwd);
    kxt_deliver(b, fwd);
    uint8_t *got = malloc(len + 1);
    assert_non_null(got);
    long last;
    size_t n = kxt_drain_read(b, got, len + 1, &last);
    if (last != 0) fail_msg("ktlsx_read returned %ld (%s, alert %u)", last, ktlsx_error(b), ktlsx_alert(b));
    assert_int_equal(n, len);
    assert_memory_equal(got, data, len);
    free(got);
    kxt_move_out(b, back);
}

/* `len` pseudo-random bytes each way. */
KXT_UNUSED static void kxt_exchange(kxt_pair *p, size_t len)
{
    uint8_t *d = malloc(len);
    assert_non_null(d);
    uint32_t x = 0x12345678u ^ (uint32_t)len;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    kxt_send_recv(p, true, d, len);
    kxt_send_recv(p, false, d, len);
    free(d);
}

/* Deliver post-handshake traffic (NewSessionTickets) until both sides are quiet. */
KXT_UNUSED static void kxt_settle(kxt_pair *p)
{
    for (int i = 0; i < 4; i++) {
        kxt_move_out(p->c, &p->c2s);
        kxt_move_out(p->s, &p->s2c);
        if (p->c2s.len == 0 && p->s2c.len == 0) return;
        uint8_t tmp[64];
        kxt_deliver(p->s, &p->c2s);
        kxt_deliver(p->c, &p->s2c);
        long r = ktlsx_read(p->s, tmp, sizeof tmp);
        if (r != 0) fail_msg("server: unexpected ktlsx_read result %ld (%s)", r, ktlsx_error(p->s));
        r = ktlsx_read(p->c, tmp, sizeof tmp);
        if (r != 0) fail_msg("client: unexpected ktlsx_read result %ld (%s)", r, ktlsx_error(p->c));
    }
    fail_msg("post-handshake traffic does not settle");
}

/* Client writes its ClientHello onto c2s; nothing delivered yet. */
KXT_UNUSED static void kxt_client_hello_out(kxt_pair *p)
{
    p->cst = ktlsx_handshake(p->c);
    assert_int_equal(p->cst, KTLSX_WANT_READ);
    kxt_move_out(p->c, &p->c2s);
}

/* ClientHello delivered; the server's first flight sits on s2c (for a man
 * in the middle to edit before kxt_pump). */
KXT_UNUSED static void kxt_server_flight_out(kxt_pair *p)
{
    kxt_client_hello_out(p);
    kxt_deliver(p->s, &p->c2s);
    p->sst = ktlsx_handshake(p->s);
    if (p->sst != KTLSX_WANT_READ) fail_msg("server: %s (%s)", kxt_status_name(p->sst), ktlsx_error(p->s));
    kxt_move_out(p->s, &p->s2c);
}

/* ------------------------------------------------------------- records */

KXT_UNUSED static size_t kxt_count_records(const kx_buf *w)
{
    size_t off = 0, n = 0;
    while (off + 5 <= w->len) {
        off += 5 + (((size_t)w->data[off + 3] << 8) | w->data[off + 4]);
        n++;
    }
    assert_int_equal(off, w->len);
    return n;
}

KXT_UNUSED static long kxt_record_offset(const kx_buf *w, size_t idx, uint8_t *type, size_t *body_len)
{
    size_t off = 0;
    *type = 0;
    *body_len = 0;
    for (size_t i = 0; off + 5 <= w->len; i++) {
        size_t len = ((size_t)w->data[off + 3] << 8) | w->data[off + 4];
        if (i == idx) {
            *type = w->data[off];
            *body_len = len;
            return (long)off;
        }
        off += 5 + len;
    }
    return -1;
}

/* Flip a bit of record `idx` at body offset `at` (<0: from the end of the record). */
KXT_UNUSED static void kxt_flip_in_record(kx_buf *w, size_t idx, long at)
{
    uint8_t type;
    size_t len;
    long off = kxt_record_offset(w, idx, &type, &len);
    assert_true(off >= 0);
    size_t pos = at >= 0 ? (size_t)off + 5 + (size_t)at : (size_t)off + 5 + len - (size_t)(-at);
    assert_true(pos < w->len);
    w->data[pos] ^= 0x01;
}

static inline uint32_t kxt_get24(const uint8_t *p) { return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2]; }
static inline uint16_t kxt_get16(const uint8_t *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }
static inline void kxt_put16(uint8_t *p, size_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void kxt_put24(uint8_t *p, size_t v) { p[0] = (uint8_t)(v >> 16); p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v; }

/* Locate the extension block of the plaintext ClientHello/ServerHello that
 * starts the first record on `w`.  Sets *ext_len_off (offset of the 2-byte
 * extensions length in w). Returns false if the first record is not such a hello. */
KXT_UNUSED static bool kxt_hello_exts(const kx_buf *w, uint8_t hs_type, size_t *ext_len_off)
{
    if (w->len < 9 || w->data[0] != KX_CT_HANDSHAKE || w->data[5] != hs_type) return false;
    size_t rec_len = kxt_get16(w->data + 3);
    size_t msg_len = kxt_get24(w->data + 6);
    if (msg_len + 4 > rec_len || 5 + rec_len > w->len) return false;
    size_t p = 9 + 2 + 32; /* legacy_version, random */
    p += 1 + w->data[p];   /* session id */
    if (hs_type == KX_HS_CLIENT_HELLO) {
        p += 2 + kxt_get16(w->data + p); /* cipher suites */
        p += 1 + w->data[p];             /* compression methods */
    } else {
        p += 2 + 1; /* cipher suite, compression */
    }
    if (p + 2 > 9 + msg_len) return false;
    *ext_len_off = p;
    return true;
}

/* Does the hello at the start of `w` carry extension `type`? */
KXT_UNUSED static bool kxt_hello_has_ext(const kx_buf *w, uint8_t hs_type, uint16_t type)
{
    size_t x;
    if (!kxt_hello_exts(w, hs_type, &x)) return false;
    size_t end = x + 2 + kxt_get16(w->data + x);
    for (size_t p = x + 2; p + 4 <= end; p += 4 + kxt_get16(w->data + p + 2))
        if (kxt_get16(w->data + p) == type) return true;
    return false;
}

/* Remove extension `type` from the plaintext hello (ClientHello or ServerHello,
 * by hs_type) that starts the first record on `w`, fixing the record length,
 * the handshake message length and the extensions length.  Returns true if
 * the extension was there. */
KXT_UNUSED static bool kxt_strip_hello_ext(kx_buf *w, uint8_t hs_type, uint16_t type)
{
    size_t x;
    assert_true(kxt_hello_exts(w, hs_type, &x));
    size_t ext_len = kxt_get16(w->data + x), end = x + 2 + ext_len;
    for (size_t p = x + 2; p + 4 <= end;) {
        size_t len = 4 + kxt_get16(w->data + p + 2);
        if (kxt_get16(w->data + p) != type) {
            p += len;
            continue;
        }
        memmove(w->data + p, w->data + p + len, w->len - p - len);
        w->len -= len;
        kxt_put16(w->data + x, ext_len - len);
        kxt_put24(w->data + 6, kxt_get24(w->data + 6) - len);
        kxt_put16(w->data + 3, kxt_get16(w->data + 3) - len);
        return true;
    }
    return false;
}

/* ---- conformance (issue 13): rewriting hello fields in flight ----
 * The hello must be the only message of the first record on `w`; the record
 * and handshake lengths follow the edit. */

/* Replace bytes [at, at + old_len) of `w` with `n` bytes of `data`, fixing
 * the first record's length and its handshake message's length. */
KXT_UNUSED static void kxt_hello_splice(kx_buf *w, size_t at, size_t old_len, const uint8_t *data, size_t n)
{
    assert_true(at + old_len <= w->len);
    kx_buf tmp = { 0 };
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data, at)));
    assert_false(kx_failed(kx_write_bytes(&tmp, data, n)));
    assert_false(kx_failed(kx_write_bytes(&tmp, w->data + at + old_len, w->len - at - old_len)));
    kxt_put16(tmp.data + 3, kxt_get16(tmp.data + 3) + n - old_len);
    kxt_put24(tmp.data + 6, kxt_get24(tmp.data + 6) + n - old_len);
    kx_buf_reset(w);
    assert_false(kx_failed(kx_write_bytes(w, tmp.data, tmp.len)));
    kx_buf_free(&tmp);
}

/* Give extension `type` of the hello at the start of `w` the body `data`;
 * returns false if the hello does not carry it. */
KXT_UNUSED static bool kxt_replace_hello_ext(kx_buf *w, uint8_t hs_type, uint16_t type, const uint8_t *data, size_t n)
{
    size_t x;
    assert_true(kxt_hello_exts(w, hs_type, &x));
    size_t ext_len = kxt_get16(w->data + x), end = x + 2 + ext_len;
    for (size_t p = x + 2; p + 4 <= end; p += 4 + kxt_get16(w->data + p + 2)) {
        if (kxt_get16(w->data + p) != type) continue;
        size_t old = kxt_get16(w->data + p + 2);
        assert_true(n <= 0xffff && ext_len - old + n <= 0xffff);
        kxt_put16(w->data + x, ext_len - old + n);
        kxt_put16(w->data + p + 2, n);
        kxt_hello_splice(w, p + 4, old, data, n);
        return true;
    }
    return false;
}

/* Set the legacy_session_id of the ClientHello at the start of `w`. */
KXT_UNUSED static void kxt_client_hello_set_session_id(kx_buf *w, const uint8_t *sid, size_t n)
{
    assert_true(w->len > 9 + 2 + 32 && w->data[5] == KX_HS_CLIENT_HELLO && n <= 32);
    size_t at = 9 + 2 + 32;
    uint8_t v[33];
    v[0] = (uint8_t)n;
    if (n) memcpy(v + 1, sid, n);
    kxt_hello_splice(w, at, 1 + (size_t)w->data[at], v, 1 + n);
}

/* Records of content type `type` on `w`. */
KXT_UNUSED static size_t kxt_count_records_of_type(const kx_buf *w, uint8_t type)
{
    size_t n = 0, len;
    uint8_t t;
    for (size_t i = 0; kxt_record_offset(w, i, &t, &len) >= 0; i++) n += t == type;
    return n;
}
/* ---- end conformance (issue 13) ---- */

/* A FILE collecting --trace output in memory. */
typedef struct {
    char *text;
    size_t len;
    FILE *f;
} kxt_trace_buf;

KXT_UNUSED static void kxt_trace_open(kxt_trace_buf *t)
{
    memset(t, 0, sizeof *t);
    t->f = open_memstream(&t->text, &t->len);
    assert_non_null(t->f);
}

KXT_UNUSED static void kxt_trace_close(kxt_trace_buf *t)
{
    if (t->f) fclose(t->f);
    free(t->text);
    memset(t, 0, sizeof *t);
}

/* The trace has a line containing `needle`. */
KXT_UNUSED static void kxt_trace_expect(kxt_trace_buf *t, const char *needle)
{
    fflush(t->f);
    if (!t->text || !strstr(t->text, needle)) fail_msg("trace lacks \"%s\"; trace:\n%s", needle, t->text ? t->text : "");
}

#endif
