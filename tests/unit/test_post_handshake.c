/* The one post-handshake dispatcher (handshake/post_handshake.c with
 * kx_receive_plaintext in conn.c), run through both record layers from one
 * table of plaintext records a peer might send after the handshake:
 *
 *  - kernel path: the client's directions are "in the kernel" (a fake
 *    setsockopt takes the keys on a loopback pair) and each record's
 *    plaintext goes to ktlsx_ktls_record, as an io_uring completion would;
 *  - user path: the server engine seals the same plaintext with its real
 *    record layer and the client reads it with ktlsx_read.
 *
 * Both must give the table's verdict for every record (application data /
 * taken / closed / failed), the same alert, and the same effect: a stored
 * session, the next RX key (installed in the kernel, or in use in user
 * space), the KeyUpdate answer or no_renegotiation warning queued (ctl_out
 * for a kernel TX, sealed output otherwise, which the peer then reads), our
 * fatal alert queued (and seen by the peer), and nothing changed by a
 * message that was refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handshake/conn.h"
#include "core/wipe.h"
#include "ktls/ktls.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

enum { V_APP = 1, V_TAKEN = 0, V_CLOSED = -KTLSX_CLOSED, V_FAILED = -1 };

/* What to check after the records. */
enum {
    C_SESSION = 1 << 0,       /* ktlsx_get_session has a session */
    C_NO_SESSION = 1 << 1,    /* ... and here it has none */
    C_REKEY_RX = 1 << 2,      /* RX moved to the next traffic secret */
    C_NO_REKEY = 1 << 3,      /* RX untouched */
    C_ANSWER = 1 << 4,        /* our KeyUpdate(update_not_requested) is queued (and the TX re-key) */
    C_NOTHING = 1 << 5,       /* nothing queued for the peer */
    C_NORENEG = 1 << 6,       /* a no_renegotiation warning is queued */
    C_OUR_ALERT = 1 << 7,     /* our fatal alert (the case's alert) is queued, and the peer sees it */
    C_PEER_ALERT = 1 << 8,    /* the peer's fatal alert is recorded */
    C_APP = 1 << 9,           /* the application data is the caller's, and nothing else was kept */
};

typedef struct {
    uint8_t type;
    uint8_t len;
    uint8_t data[40];
    int verdict;
} rec;

typedef struct {
    const char *name;
    bool tls12;
    size_t nrecs;
    rec recs[8];
    uint8_t alert;
    unsigned checks;
} ph_case;

#define HS KX_CT_HANDSHAKE
#define AL KX_CT_ALERT
#define AD KX_CT_APPLICATION_DATA

/* NewSessionTicket: lifetime 3600, age_add, nonce {1}, 16-byte ticket, no extensions. */
#define NST_BODY 0, 0, 0x0e, 0x10, 1, 2, 3, 4, 1, 1, 0, 16, 'T', 'I', 'C', 'K', 'E', 'T', '-', '0', '1', '2', '3', '4', \
                 '5', '6', '7', '8'
#define WARN(d) { AL, 2, { 1, d }, V_TAKEN }

static const ph_case cases[] = {
    /* ---- TLS 1.3 ---- */
    { "NewSessionTicket", false, 1, { { HS, 34, { 4, 0, 0, 30, NST_BODY, 0, 0 }, V_TAKEN } }, 0,
      C_SESSION | C_NO_REKEY | C_NOTHING },
    { "NewSessionTicket without its extensions block", false, 1, { { HS, 32, { 4, 0, 0, 28, NST_BODY }, V_FAILED } },
      KX_ALERT_DECODE_ERROR, C_NO_SESSION | C_OUR_ALERT },
    { "KeyUpdate(update_requested)", false, 1, { { HS, 5, { 24, 0, 0, 1, 1 }, V_TAKEN } }, 0, C_REKEY_RX | C_ANSWER },
    /* RFC 8446 §4.6.3: while our answer still waits for the kernel, more requests get no second
     * one (user-space TX seals each answer at once: the peer reads both, and stays in sync). */
    { "two KeyUpdate(update_requested) before our answer went out", false, 2,
      { { HS, 5, { 24, 0, 0, 1, 1 }, V_TAKEN }, { HS, 5, { 24, 0, 0, 1, 1 }, V_TAKEN } }, 0, C_ANSWER },
    { "KeyUpdate(update_not_requested)", false, 1, { { HS, 5, { 24, 0, 0, 1, 0 }, V_TAKEN } }, 0,
      C_REKEY_RX | C_NOTHING },
    { "KeyUpdate split over two records", false, 2,
      { { HS, 3, { 24, 0, 0 }, V_TAKEN }, { HS, 2, { 1, 1 }, V_TAKEN } }, 0, C_REKEY_RX | C_ANSWER },
    { "KeyUpdate with a trailing byte", false, 1, { { HS, 6, { 24, 0, 0, 2, 1, 0 }, V_FAILED } },
      KX_ALERT_DECODE_ERROR, C_NO_REKEY | C_OUR_ALERT },
    { "KeyUpdate not at the end of its record", false, 1,
      { { HS, 10, { 24, 0, 0, 1, 0, 24, 0, 0, 1, 0 }, V_FAILED } }, KX_ALERT_UNEXPECTED_MESSAGE,
      C_NO_REKEY | C_OUR_ALERT },
    { "KeyUpdate with request value 2", false, 1, { { HS, 5, { 24, 0, 0, 1, 2 }, V_FAILED } },
      KX_ALERT_ILLEGAL_PARAMETER, C_NO_REKEY | C_OUR_ALERT },
    { "application data inside a fragmented message", false, 2,
      { { HS, 3, { 24, 0, 0 }, V_TAKEN }, { AD, 1, { 'x' }, V_FAILED } }, KX_ALERT_UNEXPECTED_MESSAGE,
      C_NO_REKEY | C_OUR_ALERT },
    { "HelloRequest (TLS 1.3)", false, 1, { { HS, 4, { 0, 0, 0, 0 }, V_FAILED } }, KX_ALERT_UNEXPECTED_MESSAGE,
      C_OUR_ALERT },
    { "ChangeCipherSpec after the handshake (TLS 1.3)", false, 1, { { KX_CT_CHANGE_CIPHER_SPEC, 1, { 1 }, V_FAILED } },
      KX_ALERT_UNEXPECTED_MESSAGE, C_OUR_ALERT },
    { "close_notify (TLS 1.3)", false, 1, { { AL, 2, { 1, 0 }, V_CLOSED } }, 0, C_NOTHING },
    { "anything after close_notify is ignored", false, 3,
      { { AL, 2, { 1, 0 }, V_CLOSED }, { AD, 1, { 'x' }, V_CLOSED }, { HS, 34, { 4, 0, 0, 30, NST_BODY, 0, 0 }, V_CLOSED } },
      0, C_NOTHING | C_NO_SESSION | C_NO_REKEY },
    { "application data (TLS 1.3)", false, 1, { { AD, 5, { 'h', 'e', 'l', 'l', 'o' }, V_APP } }, 0, C_APP | C_NOTHING },
    { "fatal alert (TLS 1.3)", false, 1, { { AL, 2, { 2, 40 }, V_FAILED } }, 40, C_PEER_ALERT | C_NOTHING },
    { "warning alert (TLS 1.3 ends the connection)", false, 1, { { AL, 2, { 1, 112 }, V_FAILED } }, 112,
      C_PEER_ALERT | C_NOTHING },
    /* ---- TLS 1.2 ---- */
    { "six warnings in a row", true, 6,
      { WARN(112), WARN(112), WARN(112), WARN(112), WARN(112), { AL, 2, { 1, 112 }, V_FAILED } },
      KX_ALERT_UNEXPECTED_MESSAGE, C_OUR_ALERT },
    { "five warnings, data, a warning", true, 7,
      { WARN(112), WARN(112), WARN(112), WARN(112), WARN(112), { AD, 1, { 'd' }, V_APP }, WARN(112) }, 0,
      C_NOTHING },
    { "HelloRequest with a body", true, 1, { { HS, 5, { 0, 0, 0, 1, 0 }, V_FAILED } }, KX_ALERT_DECODE_ERROR,
      C_OUR_ALERT },
    { "empty HelloRequest", true, 1, { { HS, 4, { 0, 0, 0, 0 }, V_TAKEN } }, 0, C_NORENEG },
    { "KeyUpdate (TLS 1.2)", true, 1, { { HS, 5, { 24, 0, 0, 1, 0 }, V_FAILED } }, KX_ALERT_UNEXPECTED_MESSAGE,
      C_OUR_ALERT },
    { "NewSessionTicket after the handshake (TLS 1.2)", true, 1, { { HS, 34, { 4, 0, 0, 30, NST_BODY, 0, 0 }, V_FAILED } },
      KX_ALERT_UNEXPECTED_MESSAGE, C_OUR_ALERT },
    { "ChangeCipherSpec after the handshake (TLS 1.2)", true, 1, { { KX_CT_CHANGE_CIPHER_SPEC, 1, { 1 }, V_FAILED } },
      KX_ALERT_UNEXPECTED_MESSAGE, C_OUR_ALERT },
    { "close_notify (TLS 1.2)", true, 1, { { AL, 2, { 1, 0 }, V_CLOSED } }, 0, C_NOTHING },
    { "application data (TLS 1.2)", true, 1, { { AD, 5, { 'w', 'o', 'r', 'l', 'd' }, V_APP } }, 0, C_APP | C_NOTHING },
    { "fatal alert (TLS 1.2)", true, 1, { { AL, 2, { 2, 20 }, V_FAILED } }, 20, C_PEER_ALERT | C_NOTHING },
};

/* ---- the fake kernel ---- */

static struct {
    int ulp, tx, rx;
    struct tls12_crypto_info_aes_gcm_128 last_rx;
} fk;

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    (void)fd;
    if (level == IPPROTO_TCP && name == TCP_ULP) {
        fk.ulp++;
        return 0;
    }
    assert_int_equal(level, SOL_TLS);
    if (name == TLS_TX) {
        fk.tx++;
    } else {
        fk.rx++;
        assert_int_equal(len, sizeof fk.last_rx);
        memcpy(&fk.last_rx, val, sizeof fk.last_rx);
    }
    return 0;
}

/* ---- one case, one path ---- */

static void handshake(kxt_pair *p, bool tls12)
{
    ktlsx_config *ccfg = kxt_client_cfg(tls12 ? "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" : "TLS_AES_128_GCM_SHA256", NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    if (tls12) KXT_CFG_OK(ccfg, ktlsx_config_set_versions(ccfg, KTLSX_TLS12, KTLSX_TLS12));
    kxt_pair_start(p, ccfg, scfg, "localhost", KXT_FEED_WANTED);
    kxt_pump(p);
    kxt_assert_done(p);
}

/* The client's next RX key after a peer's KeyUpdate: from the server's next secret. */
static void next_rx_key(kxt_pair *p, uint8_t key[16], uint8_t iv[12])
{
    uint8_t secret[KX_MAX_HASH];
    memcpy(secret, p->s->ks.s_ap, sizeof secret);
    assert_false(kx_failed(kx_tls13_next_traffic_secret(KX_HASH_SHA256, secret)));
    assert_false(kx_failed(kx_tls13_traffic_keys(KX_HASH_SHA256, secret, 16, key, iv)));
    kx_wipe(secret, sizeof secret);
}

static void check_common(const ph_case *k, const char *path, kxt_pair *p)
{
    ktlsx_conn *c = p->c;
    bool failed = k->recs[k->nrecs - 1].verdict == V_FAILED;
    if (failed) {
        if (!c->failed) fail_msg("%s / %s: connection not failed", k->name, path);
        if (ktlsx_alert(c) != k->alert)
            fail_msg("%s / %s: alert %u (%s), expected %u", k->name, path, ktlsx_alert(c), ktlsx_error(c), k->alert);
    } else if (c->failed) {
        fail_msg("%s / %s: failed: %s", k->name, path, ktlsx_error(c));
    }
    if (k->checks & C_PEER_ALERT) assert_string_equal(ktlsx_error(c), "received fatal alert from peer");
    uint8_t sess[4096];
    if (k->checks & C_SESSION) assert_true(ktlsx_get_session(c, sess, sizeof sess) > 0);
    if (k->checks & C_NO_SESSION) assert_false(c->new_session);
    if (k->recs[k->nrecs - 1].verdict == V_CLOSED) assert_true(c->peer_closed);
}

static void run_kernel(const ph_case *k)
{
    kxt_pair p;
    handshake(&p, k->tls12);
    int cfd, sfd;
    char why[200];
    if (kx_loopback_pair(&cfd, &sfd, why, sizeof why) != 0) fail_msg("%s", why);
    memset(&fk, 0, sizeof fk);
    kx_ktls_set_setsockopt(fake_setsockopt);
    assert_int_equal(ktlsx_ktls_start(p.c, cfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_int_equal(fk.rx, 1);
    uint8_t key[16], iv[12];
    if (!k->tls12) next_rx_key(&p, key, iv);
    for (size_t i = 0; i < k->nrecs; i++) {
        const rec *r = &k->recs[i];
        int rc = ktlsx_ktls_record(p.c, cfd, r->type, r->data, r->len);
        int v = rc == 1 ? V_APP : rc == 0 ? V_TAKEN : rc == -KTLSX_CLOSED ? V_CLOSED : V_FAILED;
        if (rc != 1 && rc != 0 && rc != -KTLSX_CLOSED && rc != -1) fail_msg("%s / kernel: record %zu: rc %d", k->name, i, rc);
        if (v != r->verdict)
            fail_msg("%s / kernel: record %zu: verdict %d, expected %d (%s)", k->name, i, v, r->verdict, ktlsx_error(p.c));
    }
    kx_ktls_set_setsockopt(NULL);
    check_common(k, "kernel", &p);
    const kx_buf *q = &p.c->ctl_out;
    if (k->checks & C_REKEY_RX) {
        assert_int_equal(fk.rx, 2);
        assert_memory_equal(fk.last_rx.key, key, 16);
        assert_memory_equal(fk.last_rx.salt, iv, 4);
        assert_memory_equal(fk.last_rx.iv, iv + 4, 8);
        assert_false(p.c->rekey_rx_due);
    }
    if (k->checks & C_NO_REKEY) assert_int_equal(fk.rx, 1);
    assert_int_equal(fk.tx, 1); /* a TX re-key waits for the flush */
    if (k->checks & C_ANSWER) {
        const uint8_t want[] = { KX_CT_HANDSHAKE, 0, 5, 24, 0, 0, 1, 0, KX_CTL_REKEY_TX, 0, 0 };
        assert_int_equal(ktlsx_ktls_pending(p.c), sizeof want);
        assert_memory_equal(q->data, want, sizeof want);
    }
    if (k->checks & C_NOTHING) assert_int_equal(ktlsx_ktls_pending(p.c), 0);
    if (k->checks & C_NORENEG) {
        const uint8_t want[] = { KX_CT_ALERT, 0, 2, 1, KX_ALERT_NO_RENEGOTIATION };
        assert_int_equal(q->len, sizeof want);
        assert_memory_equal(q->data, want, sizeof want);
    }
    if (k->checks & C_OUR_ALERT) {
        const uint8_t want[] = { KX_CT_ALERT, 0, 2, 2, k->alert };
        assert_int_equal(q->len, sizeof want);
        assert_memory_equal(q->data, want, sizeof want);
    }
    if (k->checks & C_APP) {
        assert_int_equal(p.c->hs_in.len, 0);
        assert_int_equal(ktlsx_pending_plaintext(p.c), 0);
    }
    assert_int_equal(p.c->out.len, 0); /* the kernel owns TX: nothing sealed in user space */
    close(cfd);
    close(sfd);
    kxt_pair_free(&p);
}

static void run_user(const ph_case *k)
{
    kxt_pair p;
    handshake(&p, k->tls12);
    kxt_settle(&p); /* the server's own tickets are read first */
    p.c->new_session = false;
    uint8_t rx_key[KX_MAX_KEY];
    memcpy(rx_key, p.c->rx.key, sizeof rx_key);
    kx_buf wire = { 0 };
    for (size_t i = 0; i < k->nrecs; i++) {
        const rec *r = &k->recs[i];
        assert_false(kx_failed(kx_record_write(&p.s->tx, r->type, r->data, r->len, &wire)));
        kxt_deliver(p.c, &wire);
        uint8_t buf[64];
        long n = ktlsx_read(p.c, buf, sizeof buf);
        int v = n > 0 ? V_APP : n == 0 ? V_TAKEN : n == -KTLSX_CLOSED ? V_CLOSED : V_FAILED;
        if (n < 0 && n != -KTLSX_CLOSED && n != -KTLSX_FAILED) fail_msg("%s / user: record %zu: %ld", k->name, i, n);
        if (v != r->verdict)
            fail_msg("%s / user: record %zu: verdict %d, expected %d (%s)", k->name, i, v, r->verdict, ktlsx_error(p.c));
        if (v == V_APP) {
            assert_int_equal(n, r->len);
            assert_memory_equal(buf, r->data, r->len);
        }
        /* A KeyUpdate sender moves its TX on before its next record. */
        if (r->type == HS && r->len == 5 && r->data[0] == 24 && v == V_TAKEN && i + 1 < k->nrecs) {
            assert_false(kx_failed(kx_tls13_next_traffic_secret(p.s->suite->hash, p.s->ks.s_ap)));
            assert_false(kx_failed(kx_set_traffic_secret(p.s, &p.s->tx, p.s->ks.s_ap)));
        }
    }
    kx_buf_free(&wire);
    check_common(k, "user", &p);
    if (k->checks & C_NO_REKEY) assert_memory_equal(p.c->rx.key, rx_key, sizeof rx_key);
    if (k->checks & C_REKEY_RX) {
        /* The peer moves its TX on as a real KeyUpdate sender would: its next record opens. */
        assert_memory_not_equal(p.c->rx.key, rx_key, sizeof rx_key);
        assert_false(kx_failed(kx_tls13_next_traffic_secret(KX_HASH_SHA256, p.s->ks.s_ap)));
        assert_false(kx_failed(kx_set_traffic_secret(p.s, &p.s->tx, p.s->ks.s_ap)));
        assert_false(kx_failed(kx_record_write(&p.s->tx, AD, (const uint8_t *)"after", 5, &wire)));
        kxt_deliver(p.c, &wire);
        uint8_t buf[8];
        assert_int_equal(ktlsx_read(p.c, buf, sizeof buf), 5);
        assert_memory_equal(buf, "after", 5);
        kx_buf_free(&wire);
    }
    if (k->checks & C_NOTHING) assert_int_equal(p.c->out.len, 0);
    if (k->checks & (C_ANSWER | C_NORENEG | C_OUR_ALERT)) {
        /* What we queued is sealed for the peer: it reads it. */
        assert_true(p.c->out.len > 0);
        uint64_t peer_rx_seq = p.s->rx.seq;
        kxt_move_out(p.c, &p.c2s);
        kxt_deliver(p.s, &p.c2s);
        uint8_t buf[8];
        long n = ktlsx_read(p.s, buf, sizeof buf);
        if (k->checks & C_OUR_ALERT) {
            assert_int_equal(n, -KTLSX_FAILED);
            assert_int_equal(ktlsx_alert(p.s), k->alert);
        } else {
            assert_int_equal(n, 0);
            assert_false(p.s->failed);
        }
        if (k->checks & C_ANSWER) assert_int_equal(p.s->rx.seq, 0); /* the peer's RX moved to our next key */
        if (k->checks & C_NORENEG) {
            assert_int_equal(p.s->warning_alerts, 1);
            assert_int_equal(p.s->rx.seq, peer_rx_seq + 1);
        }
    }
    kxt_pair_free(&p);
}

static void test_table_kernel_path(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_kernel(&cases[i]);
}

static void test_table_user_path(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_user(&cases[i]);
}

/* ---- ktlsx_ktls_flush on a socket that is not kernel TLS ---- */

/* The KeyUpdate answer queued by the kernel path, flushed where no kernel TLS
 * exists: a bad fd leaves the queue for a retry; a plain TCP socket takes the
 * message (as plain bytes) and then the TX re-key fails cleanly, naming the
 * kernel requirement, with the queue dropped and no crash. */
static void test_flush_without_kernel_tls(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, false);
    int cfd, sfd;
    char why[200];
    if (kx_loopback_pair(&cfd, &sfd, why, sizeof why) != 0) fail_msg("%s", why);
    kx_ktls_set_setsockopt(fake_setsockopt);
    assert_int_equal(ktlsx_ktls_start(p.c, cfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why), 3);
    const uint8_t ku[5] = { 24, 0, 0, 1, 1 };
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, ku, sizeof ku), 0);
    kx_ktls_set_setsockopt(NULL);
    size_t queued = ktlsx_ktls_pending(p.c);
    assert_int_equal(queued, 11);

    errno = 0;
    assert_int_equal(ktlsx_ktls_flush(p.c, -1, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(ktlsx_ktls_pending(p.c), queued);
    assert_false(p.c->failed);

    assert_int_equal(ktlsx_ktls_flush(p.c, cfd, MSG_DONTWAIT), -1);
    assert_true(p.c->failed);
    assert_non_null(strstr(ktlsx_error(p.c), "cannot re-key TLS 1.3 TX"));
    assert_int_equal(ktlsx_ktls_pending(p.c), 0);
    uint8_t wire[16];
    assert_int_equal(read(sfd, wire, sizeof wire), 5);
    const uint8_t answer[5] = { 24, 0, 0, 1, 0 };
    assert_memory_equal(wire, answer, 5);
    /* Failed stays failed, without touching the socket again. */
    assert_int_equal(ktlsx_ktls_flush(p.c, cfd, MSG_DONTWAIT), 0);
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_APPLICATION_DATA, "x", 1), -1);
    uint8_t buf[8];
    assert_int_equal(ktlsx_ktls_recv(p.c, cfd, buf, sizeof buf, MSG_DONTWAIT), -1);
    close(cfd);
    close(sfd);
    kxt_pair_free(&p);
}

/* ---- Malformed messages change nothing ----
 * The rule checked everywhere (RFC 8446 §4.6.3, §6.2; RFC 5246 §7.4.1.1): a
 * malformed post-handshake message is rejected before anything it says takes
 * effect.  For a KeyUpdate with a trailing byte, an empty one and one with a
 * bad request value: no receive key changes, no KeyUpdate answer is sent, our
 * send key does not change (the peer reads our alert under the old key), and
 * in the kernel path nothing is installed and nothing but the alert waits in
 * ctl_out.  The same for a NewSessionTicket (the stored session stays as it
 * was) and for the TLS 1.2 HelloRequest / renegotiating ClientHello (no
 * no_renegotiation answer to a malformed one).  Each case has a well-formed
 * control that does take effect, so the checks can tell. */

#define SUITE13 "TLS_AES_128_GCM_SHA256"
#define SUITE12 "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"

/* ---- the stand-in kernel: counts what would be installed ---- */

static int installs;

static int count_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    (void)fd;
    (void)name;
    (void)val;
    (void)len;
    if (level == SOL_TLS) installs++;
    return 0;
}

/* ---- pairs ---- */

/* A finished pair; TLS 1.3 without tickets unless `tickets` (then settled). */
static void malformed_handshake(kxt_pair *p, bool tls12, bool tickets)
{
    ktlsx_config *cc = kxt_client_cfg(tls12 ? SUITE12 : SUITE13, NULL);
    ktlsx_config *sc = kxt_server_cfg("ecdsa", tls12 ? SUITE12 : SUITE13, NULL);
    if (tls12) KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, KTLSX_TLS12, KTLSX_TLS12));
    if (!tickets) KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 0));
    kxt_pair_start(p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(p);
    kxt_assert_done(p);
    kxt_settle(p);
}

/* The server sends `msg` as one handshake record under its current key. */
static void server_sends(kxt_pair *p, const uint8_t *msg, size_t len)
{
    assert_false(kx_failed(kx_record_write(&p->s->tx, KX_CT_HANDSHAKE, msg, len, &p->s2c)));
}

/* The client took the malformed message with `alert` and sent nothing but
 * that alert, under its unchanged send key: the server opens it and reports
 * the client's alert. */
static void assert_rejected_alone(kxt_pair *p, uint8_t alert)
{
    uint8_t tmp[64];
    assert_int_equal(ktlsx_read(p->c, tmp, sizeof tmp), -KTLSX_FAILED);
    if (ktlsx_alert(p->c) != alert)
        fail_msg("client: alert %u (%s), expected %u", ktlsx_alert(p->c), ktlsx_error(p->c), alert);
    kxt_move_out(p->c, &p->c2s);
    assert_int_equal(kxt_count_records(&p->c2s), 1);
    kxt_deliver(p->s, &p->c2s);
    assert_int_equal(ktlsx_read(p->s, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_string_equal(ktlsx_error(p->s), "received fatal alert from peer");
    assert_int_equal(ktlsx_alert(p->s), alert);
}

/* ---- KeyUpdate, user-space records ---- */

static const struct {
    uint8_t msg[8];
    size_t len;
    uint8_t alert;
} bad_key_updates[] = {
    { { KX_HS_KEY_UPDATE, 0, 0, 2, 1, 0 }, 6, KX_ALERT_DECODE_ERROR },  /* update_requested + a trailing byte */
    { { KX_HS_KEY_UPDATE, 0, 0, 2, 0, 0 }, 6, KX_ALERT_DECODE_ERROR },  /* not requested + a trailing byte */
    { { KX_HS_KEY_UPDATE, 0, 0, 0 }, 4, KX_ALERT_DECODE_ERROR },        /* empty */
    { { KX_HS_KEY_UPDATE, 0, 0, 1, 2 }, 5, KX_ALERT_ILLEGAL_PARAMETER }, /* no such request value */
};

static void test_key_update_malformed_user_space(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_key_updates / sizeof bad_key_updates[0]; i++) {
        kxt_pair p;
        malformed_handshake(&p, false, false);
        uint8_t rx_key[KX_MAX_KEY], rx_iv[KX_AEAD_NONCE];
        memcpy(rx_key, p.c->rx.key, sizeof rx_key);
        memcpy(rx_iv, p.c->rx.iv, sizeof rx_iv);
        server_sends(&p, bad_key_updates[i].msg, bad_key_updates[i].len);
        kxt_deliver(p.c, &p.s2c);
        assert_rejected_alone(&p, bad_key_updates[i].alert);
        assert_memory_equal(p.c->rx.key, rx_key, sizeof rx_key); /* receive key unchanged */
        assert_memory_equal(p.c->rx.iv, rx_iv, sizeof rx_iv);
        kxt_pair_free(&p);
    }
    /* Control: a well-formed request (the server's own) re-keys the client's RX and is answered. */
    kxt_pair p;
    malformed_handshake(&p, false, false);
    uint8_t rx_key[KX_MAX_KEY], tmp[8];
    memcpy(rx_key, p.c->rx.key, sizeof rx_key);
    assert_int_equal(ktlsx_key_update(p.s, 1), 0);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), 0);
    assert_memory_not_equal(p.c->rx.key, rx_key, sizeof rx_key);
    kxt_move_out(p.c, &p.c2s);
    assert_int_equal(kxt_count_records(&p.c2s), 1); /* the answering KeyUpdate */
    kxt_deliver(p.s, &p.c2s);
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), 0);
    kxt_send_recv(&p, true, "after", 5);
    kxt_pair_free(&p);
}

/* ---- NewSessionTicket, user-space records ---- */

/* A TLS 1.3 NewSessionTicket body: lifetime, age_add, nonce, ticket, extensions. */
static size_t nst(uint8_t *m, uint32_t lifetime, const uint8_t *exts, size_t exts_len, size_t trailing)
{
    size_t n = 4;
    for (int i = 3; i >= 0; i--) m[n++] = (uint8_t)(lifetime >> (8 * i));
    memset(m + n, 0x11, 4); /* age_add */
    n += 4;
    m[n++] = 1; /* nonce */
    m[n++] = 7;
    m[n++] = 0; /* ticket: 16 bytes */
    m[n++] = 16;
    memset(m + n, 0xaa, 16);
    n += 16;
    m[n++] = (uint8_t)(exts_len >> 8);
    m[n++] = (uint8_t)exts_len;
    if (exts_len) memcpy(m + n, exts, exts_len);
    n += exts_len;
    memset(m + n, 0, trailing);
    n += trailing;
    m[0] = KX_HS_NEW_SESSION_TICKET;
    kxt_put24(m + 1, n - 4);
    return n;
}

static void test_new_session_ticket_malformed(void **state)
{
    (void)state;
    static const uint8_t key_share_ext[] = { 0, 51, 0, 0 };   /* not allowed in NewSessionTicket */
    static const uint8_t early_data_ext[] = { 0, 42, 0, 4, 0, 0, 0x40, 0 }; /* allowed */
    static const struct {
        uint32_t lifetime;
        const uint8_t *exts;
        size_t exts_len, trailing;
        uint8_t alert; /* 0: well formed */
    } bad_cases[] = {
        { 3600, NULL, 0, 1, KX_ALERT_DECODE_ERROR },
        { 3600, key_share_ext, sizeof key_share_ext, 0, KX_ALERT_ILLEGAL_PARAMETER },
        { 604801, NULL, 0, 0, KX_ALERT_ILLEGAL_PARAMETER }, /* over seven days (RFC 8446 §4.6.1) */
        { 3600, early_data_ext, sizeof early_data_ext, 0, 0 },
    };
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        kxt_pair p;
        malformed_handshake(&p, false, false);
        assert_false(p.c->new_session);
        uint8_t m[128];
        size_t n = nst(m, bad_cases[i].lifetime, bad_cases[i].exts, bad_cases[i].exts_len, bad_cases[i].trailing);
        server_sends(&p, m, n);
        kxt_deliver(p.c, &p.s2c);
        if (bad_cases[i].alert) {
            assert_rejected_alone(&p, bad_cases[i].alert);
            assert_false(p.c->new_session); /* nothing kept */
            assert_int_equal(p.c->session.ticket_len, 0);
        } else {
            uint8_t tmp[8];
            assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), 0);
            assert_true(p.c->new_session);
            assert_int_equal(p.c->session.ticket_len, 16);
        }
        kxt_pair_free(&p);
    }
}

/* ---- TLS 1.2: HelloRequest and a renegotiating ClientHello ---- */

static void test_renegotiation_malformed(void **state)
{
    (void)state;
    /* A HelloRequest with a body: decode_error, and no no_renegotiation warning first. */
    kxt_pair p;
    malformed_handshake(&p, true, false);
    static const uint8_t hr[] = { KX_HS_HELLO_REQUEST, 0, 0, 1, 0 };
    server_sends(&p, hr, sizeof hr);
    kxt_deliver(p.c, &p.s2c);
    assert_rejected_alone(&p, KX_ALERT_DECODE_ERROR);
    kxt_pair_free(&p);

    /* A ClientHello that is no ClientHello: the same. */
    malformed_handshake(&p, true, false);
    static const uint8_t ch[] = { KX_HS_CLIENT_HELLO, 0, 0, 6, 3, 3, 0, 0, 0, 0 };
    assert_false(kx_failed(kx_record_write(&p.c->tx, KX_CT_HANDSHAKE, ch, sizeof ch, &p.c2s)));
    kxt_deliver(p.s, &p.c2s);
    uint8_t tmp[16];
    assert_int_equal(ktlsx_read(p.s, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.s), KX_ALERT_DECODE_ERROR);
    kxt_move_out(p.s, &p.s2c);
    assert_int_equal(kxt_count_records(&p.s2c), 1);
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), -KTLSX_FAILED);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_DECODE_ERROR); /* fatal, not the no_renegotiation warning */
    kxt_pair_free(&p);

    /* Control: an empty HelloRequest is refused with the warning and the connection goes on. */
    malformed_handshake(&p, true, false);
    static const uint8_t hr_ok[] = { KX_HS_HELLO_REQUEST, 0, 0, 0 };
    server_sends(&p, hr_ok, sizeof hr_ok);
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), 0);
    kxt_move_out(p.c, &p.c2s);
    assert_int_equal(kxt_count_records(&p.c2s), 1);
    kxt_pair_free(&p);
}

/* ---- the kernel path: ktlsx_ktls_record ---- */

/* A client with both directions in the (stand-in) kernel. */
static void offload_client(kxt_pair *p, bool tls12, int *cfd, int *sfd)
{
    malformed_handshake(p, tls12, false);
    char why[256] = "";
    assert_int_equal(kx_loopback_pair(cfd, sfd, why, sizeof why), 0);
    installs = 0;
    kx_ktls_set_setsockopt(count_setsockopt);
    assert_int_equal(ktlsx_ktls_start(p->c, *cfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_int_equal(installs, 2);
}

static void offload_done(kxt_pair *p, int cfd, int sfd)
{
    kx_ktls_set_setsockopt(NULL);
    close(cfd);
    close(sfd);
    kxt_pair_free(p);
}

/* ctl_out holds exactly one fatal alert `alert`: no KeyUpdate, no re-key step. */
static void assert_only_alert_queued(const ktlsx_conn *c, uint8_t alert)
{
    const uint8_t want[] = { KX_CT_ALERT, 0, 2, 2, alert };
    if (c->ctl_out.len != sizeof want || memcmp(c->ctl_out.data, want, sizeof want) != 0) {
        char hex[64] = "";
        for (size_t i = 0; i < c->ctl_out.len && i < 16; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02x ", c->ctl_out.data[i]);
        fail_msg("ctl_out (%zu bytes): %s", c->ctl_out.len, hex);
    }
}

static void test_key_update_malformed_kernel(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_key_updates / sizeof bad_key_updates[0]; i++) {
        kxt_pair p;
        int cfd, sfd;
        offload_client(&p, false, &cfd, &sfd);
        assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, bad_key_updates[i].msg, bad_key_updates[i].len),
                         -1);
        assert_int_equal(ktlsx_alert(p.c), bad_key_updates[i].alert);
        assert_int_equal(installs, 2); /* no key went into the kernel */
        assert_false(p.c->rekey_rx_due);
        assert_only_alert_queued(p.c, bad_key_updates[i].alert);
        offload_done(&p, cfd, sfd);
    }
    /* Control: a well-formed request re-keys RX at once and queues our KeyUpdate and the TX re-key. */
    kxt_pair p;
    int cfd, sfd;
    offload_client(&p, false, &cfd, &sfd);
    static const uint8_t ok[] = { KX_HS_KEY_UPDATE, 0, 0, 1, 1 };
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, ok, sizeof ok), 0);
    assert_int_equal(installs, 3);
    const uint8_t want[] = { KX_CT_HANDSHAKE, 0, 5, KX_HS_KEY_UPDATE, 0, 0, 1, 0, KX_CTL_REKEY_TX, 0, 0 };
    assert_int_equal(p.c->ctl_out.len, sizeof want);
    assert_memory_equal(p.c->ctl_out.data, want, sizeof want);
    offload_done(&p, cfd, sfd);
}

static void test_post_handshake_malformed_kernel(void **state)
{
    (void)state;
    /* NewSessionTicket with a trailing byte: nothing stored. */
    kxt_pair p;
    int cfd, sfd;
    offload_client(&p, false, &cfd, &sfd);
    uint8_t m[128];
    size_t n = nst(m, 3600, NULL, 0, 1);
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, m, n), -1);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_DECODE_ERROR);
    assert_false(p.c->new_session);
    assert_only_alert_queued(p.c, KX_ALERT_DECODE_ERROR);
    offload_done(&p, cfd, sfd);
    /* Control: without it, the ticket is kept. */
    offload_client(&p, false, &cfd, &sfd);
    n = nst(m, 3600, NULL, 0, 0);
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, m, n), 0);
    assert_true(p.c->new_session);
    assert_int_equal(p.c->ctl_out.len, 0);
    offload_done(&p, cfd, sfd);

    /* TLS 1.2 HelloRequest with a body: decode_error, no no_renegotiation warning queued. */
    offload_client(&p, true, &cfd, &sfd);
    static const uint8_t hr[] = { KX_HS_HELLO_REQUEST, 0, 0, 1, 0 };
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, hr, sizeof hr), -1);
    assert_int_equal(ktlsx_alert(p.c), KX_ALERT_DECODE_ERROR);
    assert_only_alert_queued(p.c, KX_ALERT_DECODE_ERROR);
    offload_done(&p, cfd, sfd);
    /* Control: the empty one is answered with the warning. */
    offload_client(&p, true, &cfd, &sfd);
    static const uint8_t hr_ok[] = { KX_HS_HELLO_REQUEST, 0, 0, 0 };
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, KX_CT_HANDSHAKE, hr_ok, sizeof hr_ok), 0);
    const uint8_t warn[] = { KX_CT_ALERT, 0, 2, 1, KX_ALERT_NO_RENEGOTIATION };
    assert_int_equal(p.c->ctl_out.len, sizeof warn);
    assert_memory_equal(p.c->ctl_out.data, warn, sizeof warn);
    offload_done(&p, cfd, sfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_kernel_path),
        cmocka_unit_test(test_table_user_path),
        cmocka_unit_test(test_flush_without_kernel_tls),
        cmocka_unit_test(test_key_update_malformed_user_space),
        cmocka_unit_test(test_new_session_ticket_malformed),
        cmocka_unit_test(test_renegotiation_malformed),
        cmocka_unit_test(test_key_update_malformed_kernel),
        cmocka_unit_test(test_post_handshake_malformed_kernel),
    };
    return cmocka_run_group_tests_name("test_post_handshake", tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
