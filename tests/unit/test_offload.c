/* What a connection keeps once its records are in the kernel
 * (ktls/offload.c, handshake/complete.c: kx_release_handshake_memory).
 *
 * This host has no kernel TLS, so the kernel is played by the test: a fake
 * setsockopt (kx_ktls_set_setsockopt) captures the crypto_info that
 * ktlsx_ktls_start and the re-keys install on a real loopback TCP pair, and
 * a "stand-in kernel" record layer built from exactly those bytes seals and
 * opens the records the real one would.  Checked:
 * - an offloaded TLS 1.3 client keeps no handshake buffers (in, out, hs_in,
 *   hs_out, app_in, ctl_out, kex_pub, transcript: capacity 0), no ephemeral
 *   or peer key, no user-space record keys, no master / exporter secret,
 *   and still answers every getter and ktlsx_peer_cert_der as before;
 * - on it NewSessionTickets (through ktlsx_ktls_record) give a session that
 *   resumes, a KeyUpdate both ways re-keys TX and RX with keys that carry
 *   data to and from the peer, and hs_in is given back after each message;
 * - the same for an offloaded server, and for TLS 1.2 (whose master secret
 *   and session stay for export and resumption);
 * - without kernel TLS the handshake already drops its transcript, keys and
 *   empty buffers, and data, KeyUpdate and tickets still work;
 * - a buffer still holding bytes is kept: a partial record left RX in user
 *   space, and it is read afterwards. */
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

#define SUITE13 "TLS_AES_128_GCM_SHA256"
#define SUITE12 "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"

/* ---- the stand-in kernel ---- */

static struct {
    int installs;                              /* TLS_TX + TLS_RX calls */
    struct tls12_crypto_info_aes_gcm_128 tx, rx; /* the last of each */
    bool have_tx, have_rx;
} kern;

static int capture_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    (void)fd;
    if (level != SOL_TLS) return 0; /* TCP_ULP: accepted */
    assert_int_equal(len, sizeof(struct tls12_crypto_info_aes_gcm_128));
    kern.installs++;
    if (name == TLS_TX) {
        memcpy(&kern.tx, val, len);
        kern.have_tx = true;
    } else {
        assert_int_equal(name, TLS_RX);
        memcpy(&kern.rx, val, len);
        kern.have_rx = true;
    }
    return 0;
}

/* A record direction holding exactly what was installed in the kernel. */
static void standin_dir(kx_record_dir *d, const struct tls12_crypto_info_aes_gcm_128 *ci)
{
    uint16_t version = ci->info.version == TLS_1_3_VERSION ? KTLSX_TLS13 : KTLSX_TLS12;
    const kx_suite *suite = kx_suite_by_id(version == KTLSX_TLS13 ? 0x1301 : 0xc02b);
    assert_non_null(suite);
    uint8_t iv[KX_AEAD_NONCE] = { 0 };
    memcpy(iv, ci->salt, 4);
    if (version == KTLSX_TLS13) memcpy(iv + 4, ci->iv, 8);
    assert_false(kx_failed(kx_record_set_keys(d, version, suite, ci->key, iv)));
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++) seq = seq << 8 | ci->rec_seq[i];
    d->seq = seq;
    kx_wipe(iv, sizeof iv);
}

/* Open the first record on `wire` with `d`; the plaintext goes to out (cap bytes). */
static size_t standin_open(kx_record_dir *d, kx_buf *wire, uint8_t *type, uint8_t *out, size_t cap)
{
    assert_true(wire->len >= KX_RECORD_HEADER);
    size_t rec_len = KX_RECORD_HEADER + ((size_t)wire->data[3] << 8 | wire->data[4]);
    assert_true(wire->len >= rec_len);
    uint8_t *plain;
    size_t n;
    assert_false(kx_failed(kx_record_read(d, wire->data, rec_len, type, &plain, &n)));
    assert_true(n <= cap);
    memcpy(out, plain, n);
    kx_buf_consume(wire, rec_len);
    return n;
}

static void kern_reset(void)
{
    kx_wipe_obj(kern);
    kx_ktls_set_setsockopt(capture_setsockopt);
}

static void kern_done(void)
{
    kx_ktls_set_setsockopt(NULL);
    kx_wipe_obj(kern);
}

/* ---- what "no handshake memory" means ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* The handshake-only state is gone.  A drained hs_in is given back; `out` and
 * `in` are the user-space record layer's own buffers and stay while it runs. */
static void assert_handshake_released(const ktlsx_conn *c)
{
    assert_null(c->transcript.ctx);
    assert_int_equal(c->transcript.pending.cap, 0);
    assert_null(c->kex_key);
    assert_null(c->peer_key);
    assert_int_equal(c->kex_pub.cap, 0);
    assert_int_equal(c->hs_out.cap, 0);
    assert_int_equal(c->ticket.cap, 0);
    assert_true(all_zero(c->ecdhe, sizeof c->ecdhe));
    assert_true(all_zero(c->psk, sizeof c->psk));
    assert_true(all_zero(c->ks.master, sizeof c->ks.master));
    assert_true(all_zero(c->ks.exporter, sizeof c->ks.exporter));
    if (c->hs_in.len == 0) assert_int_equal(c->hs_in.cap, 0);
}

/* Both directions in the kernel: nothing but the struct, the peer chain and ctl_out's last entry. */
static void assert_offloaded_bare(const ktlsx_conn *c)
{
    assert_handshake_released(c);
    assert_int_equal(c->in.cap, 0);
    assert_int_equal(c->out.cap, 0);
    assert_int_equal(c->hs_in.cap, 0);
    assert_int_equal(c->app_in.cap, 0);
    assert_int_equal(c->ctl_out.len, 0);
    assert_null(c->tx.aead);
    assert_null(c->rx.aead);
    assert_int_equal(c->tx.active, 0);
    assert_int_equal(c->rx.active, 0);
}

typedef struct {
    uint16_t version, cipher;
    char group[32], alpn[64], subject[256], sni[256];
    size_t certs, leaf_len;
    uint8_t leaf[4096];
} getters;

static void take_getters(const ktlsx_conn *c, getters *g)
{
    memset(g, 0, sizeof *g);
    g->version = ktlsx_version(c);
    g->cipher = ktlsx_cipher_id(c);
    kx_copy_str(g->group, sizeof g->group, ktlsx_group_name(c));
    kx_copy_str(g->alpn, sizeof g->alpn, ktlsx_alpn(c) ? ktlsx_alpn(c) : "(none)");
    kx_copy_str(g->subject, sizeof g->subject, ktlsx_peer_subject(c));
    kx_copy_str(g->sni, sizeof g->sni, ktlsx_sni(c));
    g->certs = ktlsx_peer_cert_count(c);
    const uint8_t *der = ktlsx_peer_cert_der(c, 0, &g->leaf_len);
    if (der) {
        assert_true(g->leaf_len <= sizeof g->leaf);
        memcpy(g->leaf, der, g->leaf_len);
    }
}

static void assert_same_getters(const ktlsx_conn *c, const getters *before)
{
    getters now;
    take_getters(c, &now);
    assert_int_equal(now.version, before->version);
    assert_int_equal(now.cipher, before->cipher);
    assert_string_equal(now.group, before->group);
    assert_string_equal(now.alpn, before->alpn);
    assert_string_equal(now.subject, before->subject);
    assert_string_equal(now.sni, before->sni);
    assert_int_equal(now.certs, before->certs);
    assert_int_equal(now.leaf_len, before->leaf_len);
    assert_memory_equal(now.leaf, before->leaf, now.leaf_len);
}

static void handshake(kxt_pair *p, const char *suite, bool tls12)
{
    /* TLS 1.2 ECDSA: the certificate's curve must be among the groups. */
    ktlsx_config *ccfg = kxt_client_cfg(suite, "x25519,P-256");
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", suite, "x25519,P-256");
    KXT_CFG_OK(ccfg, ktlsx_config_set_alpn(ccfg, "kx-mem,http/1.1"));
    KXT_CFG_OK(scfg, ktlsx_config_set_alpn(scfg, "kx-mem"));
    if (tls12) KXT_CFG_OK(ccfg, ktlsx_config_set_versions(ccfg, KTLSX_TLS12, KTLSX_TLS12));
    kxt_pair_start(p, ccfg, scfg, "localhost", KXT_FEED_WANTED);
    kxt_pump(p);
    kxt_assert_done(p);
}

/* A new client on the pair's configurations offers `sess` and must resume. */
static void assert_resumes(kxt_pair *p, const uint8_t *sess, long len)
{
    kxt_pair q;
    kxt_pair_start(&q, p->ccfg, p->scfg, "localhost", KXT_FEED_WANTED);
    q.keep_cfgs = true;
    assert_int_equal(ktlsx_set_session(q.c, sess, (size_t)len), 0);
    kxt_pump(&q);
    kxt_assert_done(&q);
    assert_int_equal(ktlsx_resumed(q.c), 1);
    assert_int_equal(ktlsx_resumed(q.s), 1);
    kxt_pair_free(&q);
}

/* ---- TLS 1.3 client in the kernel: tickets and KeyUpdate still work ---- */

static void test_tls13_client_offloaded(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, SUITE13, false);
    assert_true(p.s2c.len > 0); /* the server's NewSessionTickets, not yet read */
    getters before;
    take_getters(p.c, &before);
    assert_true(before.certs >= 1);

    int cfd, sfd;
    char why[256] = "";
    assert_int_equal(kx_loopback_pair(&cfd, &sfd, why, sizeof why), 0);
    kern_reset();
    assert_int_equal(ktlsx_ktls_start(p.c, cfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_true(kern.have_tx && kern.have_rx);
    assert_offloaded_bare(p.c);
    assert_false(all_zero(p.c->ks.c_ap, p.c->ks.hlen)); /* KeyUpdate needs these */
    assert_false(all_zero(p.c->ks.resumption, p.c->ks.hlen)); /* and tickets this */
    assert_same_getters(p.c, &before);

    kx_record_dir ktx = { 0 }, krx = { 0 };
    standin_dir(&ktx, &kern.tx);
    standin_dir(&krx, &kern.rx);

    /* NewSessionTickets arrive through the kernel: the engine only sees their plaintext. */
    uint8_t plain[KX_MAX_PLAINTEXT];
    uint8_t type;
    int tickets = 0;
    while (p.s2c.len) {
        size_t n = standin_open(&krx, &p.s2c, &type, plain, sizeof plain);
        assert_int_equal(type, KX_CT_HANDSHAKE);
        assert_int_equal(ktlsx_ktls_record(p.c, cfd, type, plain, n), 0);
        assert_int_equal(p.c->hs_in.cap, 0);
        tickets++;
    }
    assert_true(tickets >= 1);
    uint8_t sess[4096];
    long slen = ktlsx_get_session(p.c, sess, sizeof sess);
    assert_true(slen > 0);

    /* Our KeyUpdate asking for the peer's: it leaves under the installed key, then TX is re-keyed. */
    int installs = kern.installs;
    assert_int_equal(ktlsx_ktls_key_update(p.c, cfd, 1), 0);
    assert_int_equal(kern.installs, installs + 1);
    uint8_t ku[8];
    /* Without kTLS here the socket carries the plaintext the kernel would have sealed. */
    assert_int_equal(read(sfd, ku, sizeof ku), 5);
    const uint8_t want_ku[5] = { KX_HS_KEY_UPDATE, 0, 0, 1, 1 };
    assert_memory_equal(ku, want_ku, 5);
    assert_false(kx_failed(kx_record_write(&ktx, KX_CT_HANDSHAKE, ku, 5, &p.c2s)));
    standin_dir(&ktx, &kern.tx); /* the kernel's new TX key */
    kxt_deliver(p.s, &p.c2s);
    assert_int_equal(ktlsx_read(p.s, plain, sizeof plain), 0);
    kxt_move_out(p.s, &p.s2c); /* the server's answer, under its old key */
    size_t n = standin_open(&krx, &p.s2c, &type, plain, sizeof plain);
    const uint8_t answer[5] = { KX_HS_KEY_UPDATE, 0, 0, 1, 0 };
    assert_int_equal(n, 5);
    assert_memory_equal(plain, answer, 5);
    assert_int_equal(ktlsx_ktls_record(p.c, cfd, type, plain, n), 0);
    assert_int_equal(kern.installs, installs + 2); /* RX re-keyed for the peer's next key */
    standin_dir(&krx, &kern.rx);

    /* The new kernel keys are the ones the peer uses: data both ways. */
    static const char s2c_msg[] = "server, after both updates";
    assert_int_equal(ktlsx_write(p.s, s2c_msg, sizeof s2c_msg), 0);
    kxt_move_out(p.s, &p.s2c);
    n = standin_open(&krx, &p.s2c, &type, plain, sizeof plain);
    assert_int_equal(type, KX_CT_APPLICATION_DATA);
    assert_int_equal(n, sizeof s2c_msg);
    assert_memory_equal(plain, s2c_msg, n);
    static const char c2s_msg[] = "client, through the new TX key";
    assert_false(kx_failed(kx_record_write(&ktx, KX_CT_APPLICATION_DATA, (const uint8_t *)c2s_msg, sizeof c2s_msg, &p.c2s)));
    kxt_deliver(p.s, &p.c2s);
    assert_int_equal(ktlsx_read(p.s, plain, sizeof plain), (long)sizeof c2s_msg);
    assert_memory_equal(plain, c2s_msg, sizeof c2s_msg);

    /* After all that, still nothing of the handshake, and the ticket resumes. */
    assert_offloaded_bare(p.c);
    assert_same_getters(p.c, &before);
    assert_resumes(&p, sess, slen);

    kern_done();
    kx_record_clear(&ktx);
    kx_record_clear(&krx);
    kx_wipe(sess, sizeof sess);
    close(cfd);
    close(sfd);
    kxt_pair_free(&p);
}

/* ---- TLS 1.3 server in the kernel ---- */

static void test_tls13_server_offloaded(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, SUITE13, false);
    kxt_settle(&p); /* the client stored its tickets; the server sent them before the switch */
    getters before;
    take_getters(p.s, &before);
    int cfd, sfd;
    char why[256] = "";
    assert_int_equal(kx_loopback_pair(&cfd, &sfd, why, sizeof why), 0);
    kern_reset();
    assert_int_equal(ktlsx_ktls_start(p.s, sfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_offloaded_bare(p.s);
    assert_same_getters(p.s, &before);
    kx_record_dir ktx = { 0 };
    standin_dir(&ktx, &kern.tx);

    /* A KeyUpdate from the offloaded server reaches the user-space client, which updates its RX. */
    assert_int_equal(ktlsx_ktls_key_update(p.s, sfd, 0), 0);
    uint8_t ku[8];
    assert_int_equal(read(cfd, ku, sizeof ku), 5);
    assert_false(kx_failed(kx_record_write(&ktx, KX_CT_HANDSHAKE, ku, 5, &p.s2c)));
    standin_dir(&ktx, &kern.tx);
    static const char msg[] = "server data under the updated key";
    assert_false(kx_failed(kx_record_write(&ktx, KX_CT_APPLICATION_DATA, (const uint8_t *)msg, sizeof msg, &p.s2c)));
    kxt_deliver(p.c, &p.s2c);
    uint8_t got[64];
    assert_int_equal(ktlsx_read(p.c, got, sizeof got), (long)sizeof msg);
    assert_memory_equal(got, msg, sizeof msg);
    assert_offloaded_bare(p.s);

    kern_done();
    kx_record_clear(&ktx);
    close(cfd);
    close(sfd);
    kxt_pair_free(&p);
}

/* ---- TLS 1.2 in the kernel: the master secret and session stay ---- */

static void test_tls12_client_offloaded(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, SUITE12, true);
    assert_int_equal(ktlsx_version(p.c), KTLSX_TLS12);
    getters before;
    take_getters(p.c, &before);
    int cfd, sfd;
    char why[256] = "";
    assert_int_equal(kx_loopback_pair(&cfd, &sfd, why, sizeof why), 0);
    kern_reset();
    assert_int_equal(ktlsx_ktls_start(p.c, cfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_offloaded_bare(p.c);
    assert_same_getters(p.c, &before);
    assert_false(all_zero(p.c->master, sizeof p.c->master));
    uint8_t sess[4096];
    long slen = ktlsx_get_session(p.c, sess, sizeof sess);
    assert_true(slen > 0);
    /* The state another process needs is still all there. */
    uint8_t blob[KTLSX_EXPORT_MAX];
    const char *err = NULL;
    long blen = ktlsx_conn_export(p.c, blob, sizeof blob, &err);
    if (blen <= 0) fail_msg("export: %s", err ? err : "?");
    ktlsx_config *bare = ktlsx_config_new(KTLSX_CLIENT);
    ktlsx_conn *imp = ktlsx_conn_import(bare, blob, (size_t)blen, &err);
    if (!imp) fail_msg("import: %s", err ? err : "?");
    assert_int_equal(ktlsx_ktls_active(imp), KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_offloaded_bare(imp);
    /* The kernel's TLS 1.2 RX keys carry the server's data. */
    kx_record_dir krx = { 0 };
    standin_dir(&krx, &kern.rx);
    static const char msg[] = "tls 1.2 through the kernel";
    assert_int_equal(ktlsx_write(p.s, msg, sizeof msg), 0);
    kxt_move_out(p.s, &p.s2c);
    uint8_t plain[64], type;
    assert_int_equal(standin_open(&krx, &p.s2c, &type, plain, sizeof plain), sizeof msg);
    assert_memory_equal(plain, msg, sizeof msg);
    assert_resumes(&p, sess, slen);

    ktlsx_conn_free(imp);
    ktlsx_config_free(bare);
    kern_done();
    kx_record_clear(&krx);
    kx_wipe(blob, sizeof blob);
    kx_wipe(sess, sizeof sess);
    close(cfd);
    close(sfd);
    kxt_pair_free(&p);
}

/* ---- without kernel TLS: the handshake already lets go ---- */

static void test_user_space_released_at_completion(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, SUITE13, false);
    assert_handshake_released(p.c);
    assert_handshake_released(p.s);
    assert_int_equal(p.c->in.cap, 0); /* the server's flight was read to the end */
    assert_true(ktlsx_peer_cert_count(p.c) >= 1);
    kxt_settle(&p);
    assert_true(p.c->new_session);
    assert_int_equal(p.c->hs_in.cap, 0); /* the tickets were handled and hs_in given back */
    kxt_exchange(&p, 20000);
    assert_int_equal(ktlsx_key_update(p.c, 1), 0);
    kxt_send_recv(&p, true, "after the client's update", 25);
    kxt_send_recv(&p, false, "and the server's answer", 23);
    assert_handshake_released(p.c);
    assert_handshake_released(p.s);
    kxt_pair_free(&p);
}

/* ktlsx_ktls_flush on a connection whose TX is not in the kernel: the queued
 * control record bodies are plaintext for the kernel to seal, so nothing may
 * reach the socket; the call fails and says why. */
static void test_flush_without_kernel_tx_sends_nothing(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, SUITE13, false);
    assert_int_equal(p.c->ktls_active & KTLSX_KTLS_TX, 0);
    static const uint8_t body[] = "secret control record body";
    assert_false(kx_failed(kx_write_u8(&p.c->ctl_out, KX_CT_ALERT)));
    assert_false(kx_failed(kx_write_u16(&p.c->ctl_out, (uint16_t)sizeof body)));
    assert_false(kx_failed(kx_write_bytes(&p.c->ctl_out, body, sizeof body)));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(ktlsx_ktls_flush(p.c, sv[0], 0), -1);
    assert_non_null(strstr(ktlsx_error(p.c), "TX is not in kernel TLS"));
    char got[64];
    assert_int_equal(recv(sv[1], got, sizeof got, MSG_DONTWAIT), -1); /* nothing was sent */
    assert_int_equal(p.c->ctl_out.len, 0);
    close(sv[0]);
    close(sv[1]);
    kxt_pair_free(&p);
}

/* ---- a buffer with bytes in it is kept ---- */

static void test_partial_record_kept(void **state)
{
    (void)state;
    kxt_pair p;
    handshake(&p, SUITE13, false);
    assert_true(p.s2c.len > 3);
    /* Three bytes of the first ticket record: RX cannot move, TX can. */
    assert_int_equal(ktlsx_input(p.c, p.s2c.data, 3), 0);
    kx_buf_consume(&p.s2c, 3);
    int cfd, sfd;
    char why[256] = "";
    assert_int_equal(kx_loopback_pair(&cfd, &sfd, why, sizeof why), 0);
    kern_reset();
    assert_int_equal(ktlsx_ktls_start(p.c, cfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why), KTLSX_KTLS_TX);
    assert_non_null(strstr(why, "partial record"));
    assert_handshake_released(p.c);
    assert_int_equal(kx_in_left(p.c), 3);
    assert_true(p.c->rx.active);
    /* The rest arrives in user space and completes the record kept so far. */
    kxt_deliver(p.c, &p.s2c);
    uint8_t tmp[64];
    assert_int_equal(ktlsx_read(p.c, tmp, sizeof tmp), 0);
    assert_true(p.c->new_session);
    kern_done();
    close(cfd);
    close(sfd);
    kxt_pair_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_client_offloaded),
        cmocka_unit_test(test_tls13_server_offloaded),
        cmocka_unit_test(test_tls12_client_offloaded),
        cmocka_unit_test(test_user_space_released_at_completion),
        cmocka_unit_test(test_partial_record_kept),
        cmocka_unit_test(test_flush_without_kernel_tx_sends_nothing),
    };
    return cmocka_run_group_tests_name("test_offload", tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
