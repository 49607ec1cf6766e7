/* handshake/post_handshake.c: the one dispatcher for messages after the
 * handshake, on both record layers — the engine's (ktlsx_read) and the
 * kernel's (ktlsx_ktls_record, with the kernel played by a fake setsockopt
 * as in test_offload.c).
 *
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
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
static void handshake(kxt_pair *p, bool tls12, bool tickets)
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
        handshake(&p, false, false);
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
    handshake(&p, false, false);
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
    } cases[] = {
        { 3600, NULL, 0, 1, KX_ALERT_DECODE_ERROR },
        { 3600, key_share_ext, sizeof key_share_ext, 0, KX_ALERT_ILLEGAL_PARAMETER },
        { 604801, NULL, 0, 0, KX_ALERT_ILLEGAL_PARAMETER }, /* over seven days (RFC 8446 §4.6.1) */
        { 3600, early_data_ext, sizeof early_data_ext, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kxt_pair p;
        handshake(&p, false, false);
        assert_false(p.c->new_session);
        uint8_t m[128];
        size_t n = nst(m, cases[i].lifetime, cases[i].exts, cases[i].exts_len, cases[i].trailing);
        server_sends(&p, m, n);
        kxt_deliver(p.c, &p.s2c);
        if (cases[i].alert) {
            assert_rejected_alone(&p, cases[i].alert);
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
    handshake(&p, true, false);
    static const uint8_t hr[] = { KX_HS_HELLO_REQUEST, 0, 0, 1, 0 };
    server_sends(&p, hr, sizeof hr);
    kxt_deliver(p.c, &p.s2c);
    assert_rejected_alone(&p, KX_ALERT_DECODE_ERROR);
    kxt_pair_free(&p);

    /* A ClientHello that is no ClientHello: the same. */
    handshake(&p, true, false);
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
    handshake(&p, true, false);
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
    handshake(p, tls12, false);
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
        cmocka_unit_test(test_key_update_malformed_user_space),
        cmocka_unit_test(test_new_session_ticket_malformed),
        cmocka_unit_test(test_renegotiation_malformed),
        cmocka_unit_test(test_key_update_malformed_kernel),
        cmocka_unit_test(test_post_handshake_malformed_kernel),
    };
    return cmocka_run_group_tests_name("test_post_handshake", tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
