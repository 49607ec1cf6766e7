/* Handing a finished connection to another process (handshake/export.c):
 * ktlsx_conn_export / ktlsx_conn_import.
 *
 * - In-memory pairs, TLS 1.3 (all three suites) and TLS 1.2 (GCM, ChaCha):
 *   export the server (and the client), import into a fresh connection on a
 *   configuration without certificate or key, then data both ways, the
 *   peer's KeyUpdate answered, our own KeyUpdate, close_notify; the imported
 *   client stores the server's NewSessionTicket (TLS 1.3) or has its session
 *   right away (TLS 1.2), and that session resumes on a new connection.
 * - Two processes: the parent handshakes over loopback TCP, sends the fd and
 *   the blob over AF_UNIX (SCM_RIGHTS) to a forked child that imports and
 *   echoes; the peer engine in the parent checks the echo byte for byte
 *   across a KeyUpdate, and the child's session (from the NewSessionTicket it
 *   read) resumes against the parent's server.
 * - Directions in the kernel: the bits survive, and a KeyUpdate sent through
 *   the (fake) kernel re-keys with the secret the original would have used.
 * - What may not be exported (and that a refusal changes nothing), and bad
 *   blobs: every truncation, flipped magic/format/role/version/suite/group/
 *   flags/kernel bits/lengths, trailing bytes; the blob is never written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handshake/conn.h"
#include "core/wipe.h"
#include "ktls/ktls.h"
#include "ktlsx/daemon.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

typedef struct {
    uint8_t data[KTLSX_EXPORT_MAX];
    size_t len;
} blob;

typedef struct {
    const char *suite;
    bool tls12;
} suite_case;

static const suite_case tls13_aes128 = { "TLS_AES_128_GCM_SHA256", false };
static const suite_case tls13_aes256 = { "TLS_AES_256_GCM_SHA384", false };
static const suite_case tls13_chacha = { "TLS_CHACHA20_POLY1305_SHA256", false };
static const suite_case tls12_gcm = { "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", true };
static const suite_case tls12_chacha = { "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", true };

/* ---- helpers ---- */

/* KTLSX_EXPORT_SEED_DIR=dir makes every export also a file there: the seeds
 * of tests/fuzz/corpus/fuzz_import come from real exports this way. */
static void dump_seed(const blob *b)
{
    static unsigned count;
    const char *dir = getenv("KTLSX_EXPORT_SEED_DIR");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/export-%02u-%s-%s-%04x", dir, count++, b->data[5] ? "server" : "client",
             b->data[7] == 4 ? "tls13" : "tls12", (unsigned)(b->data[8] << 8 | b->data[9]));
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0) fail_msg("cannot write %s", path);
}

static void export_ok(const ktlsx_conn *c, blob *b)
{
    const char *why = "unset";
    long n = ktlsx_conn_export(c, b->data, sizeof b->data, &why);
    if (n <= 0) fail_msg("export refused: %s", why ? why : "(no reason)");
    assert_null(why);
    assert_true((size_t)n <= KTLSX_EXPORT_MAX);
    b->len = (size_t)n;
    dump_seed(b);
}

static ktlsx_conn *import_ok(ktlsx_config *cfg, const blob *b)
{
    const char *why = "unset";
    ktlsx_conn *c = ktlsx_conn_import(cfg, b->data, b->len, &why);
    if (!c) fail_msg("import refused: %s", why ? why : "(no reason)");
    assert_null(why);
    return c;
}

/* Import must fail with a reason, leaving the blob as it was. */
static void import_fails(ktlsx_config *cfg, const uint8_t *data, size_t len, const char *what)
{
    uint8_t copy[KTLSX_EXPORT_MAX + 16];
    assert_true(len <= sizeof copy);
    if (data) memcpy(copy, data, len);
    const char *why = NULL;
    ktlsx_conn *c = ktlsx_conn_import(cfg, data, len, &why);
    if (c) {
        ktlsx_conn_free(c);
        fail_msg("import of a blob with %s (len %zu) succeeded", what, len);
    }
    if (!why || !*why) fail_msg("import of a blob with %s failed without a reason", what);
    if (data) assert_memory_equal(copy, data, len);
}

static void configure(ktlsx_config *ccfg, ktlsx_config *scfg, const suite_case *sc)
{
    KXT_CFG_OK(ccfg, ktlsx_config_set_ciphers(ccfg, sc->suite));
    KXT_CFG_OK(scfg, ktlsx_config_set_ciphers(scfg, sc->suite));
    KXT_CFG_OK(ccfg, ktlsx_config_set_alpn(ccfg, "kx-echo,http/1.1"));
    KXT_CFG_OK(scfg, ktlsx_config_set_alpn(scfg, "kx-echo"));
    if (sc->tls12) KXT_CFG_OK(ccfg, ktlsx_config_set_versions(ccfg, KTLSX_TLS12, KTLSX_TLS12));
}

/* A finished in-memory handshake on configurations the caller frees; the
 * engines read record by record, so nothing is left buffered in them. */
static void handshake(kxt_pair *p, ktlsx_config *ccfg, ktlsx_config *scfg)
{
    kxt_pair_start(p, ccfg, scfg, "localhost", KXT_FEED_WANTED);
    p->keep_cfgs = true;
    kxt_pump(p);
    kxt_assert_done(p);
}

typedef struct {
    uint16_t version, cipher;
    char group[32], alpn[64], subject[256], sni[256];
    int resumed;
} results;

static void take_results(const ktlsx_conn *c, results *r)
{
    memset(r, 0, sizeof *r);
    r->version = ktlsx_version(c);
    r->cipher = ktlsx_cipher_id(c);
    kx_copy_str(r->group, sizeof r->group, ktlsx_group_name(c));
    kx_copy_str(r->alpn, sizeof r->alpn, ktlsx_alpn(c) ? ktlsx_alpn(c) : "(none)");
    kx_copy_str(r->subject, sizeof r->subject, ktlsx_peer_subject(c));
    kx_copy_str(r->sni, sizeof r->sni, ktlsx_sni(c) ? ktlsx_sni(c) : "(none)");
    r->resumed = ktlsx_resumed(c);
}

static void assert_same_results(const ktlsx_conn *imported, const results *orig)
{
    results now;
    take_results(imported, &now);
    assert_int_equal(now.version, orig->version);
    assert_int_equal(now.cipher, orig->cipher);
    assert_string_equal(now.group, orig->group);
    assert_string_equal(now.alpn, orig->alpn);
    assert_string_equal(now.subject, orig->subject);
    assert_string_equal(now.sni, orig->sni);
    assert_int_equal(now.resumed, orig->resumed);
    assert_int_equal(ktlsx_handshake((ktlsx_conn *)imported), KTLSX_DONE);
}

/* Swap one side of the pair for its imported twin on `cfg`. */
static void hand_over(kxt_pair *p, bool server, ktlsx_config *cfg, blob *b)
{
    ktlsx_conn **side = server ? &p->s : &p->c;
    results orig;
    take_results(*side, &orig);
    export_ok(*side, b);
    ktlsx_conn_free(*side);
    *side = import_ok(cfg, b);
    assert_same_results(*side, &orig);
}

/* The peer asks for a KeyUpdate; the imported side must answer it, then data
 * flows both ways under the new keys (send_recv carries the answer back). */
static void peer_key_update(kxt_pair *p, bool imported_is_server)
{
    ktlsx_conn *peer = imported_is_server ? p->c : p->s;
    assert_int_equal(ktlsx_key_update(peer, 1), 0);
    kxt_send_recv(p, !imported_is_server, "after the peer's KeyUpdate", 26);
    kxt_send_recv(p, imported_is_server, "answered under new keys", 23);
}

/* ---- in-memory: server exported ---- */

static void run_server_export(const suite_case *sc)
{
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_config *bare = ktlsx_config_new(KTLSX_SERVER); /* no certificate, no key */
    assert_non_null(bare);
    configure(ccfg, scfg, sc);
    kxt_pair p;
    blob b;
    handshake(&p, ccfg, scfg);
    hand_over(&p, true, bare, &b);
    kx_wipe(b.data, sizeof b.data);
    assert_string_equal(ktlsx_alpn(p.s), "kx-echo");
    assert_int_equal(ktlsx_ktls_active(p.s), 0);
    kxt_exchange(&p, 40000);
    if (!sc->tls12) {
        peer_key_update(&p, true);
        /* Our own update from the imported side. */
        assert_int_equal(ktlsx_key_update(p.s, 0), 0);
        kxt_exchange(&p, 1000);
    } else {
        assert_int_equal(ktlsx_key_update(p.s, 0), -1); /* TLS 1.3 only, as on the original */
        kxt_exchange(&p, 1000);
    }
    assert_int_equal(ktlsx_close_notify(p.s), 0);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    uint8_t tmp[64];
    long last;
    kxt_drain_read(p.c, tmp, sizeof tmp, &last);
    assert_int_equal(last, -KTLSX_CLOSED);
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(bare);
}

static void test_server_tls13_aes128(void **state) { (void)state; run_server_export(&tls13_aes128); }
static void test_server_tls13_aes256(void **state) { (void)state; run_server_export(&tls13_aes256); }
static void test_server_tls13_chacha(void **state) { (void)state; run_server_export(&tls13_chacha); }
static void test_server_tls12_gcm(void **state) { (void)state; run_server_export(&tls12_gcm); }
static void test_server_tls12_chacha(void **state) { (void)state; run_server_export(&tls12_chacha); }

/* ---- in-memory: client exported, its session resumes ---- */

static void run_client_export(const suite_case *sc)
{
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_config *bare = ktlsx_config_new(KTLSX_CLIENT); /* no CA, no certificate */
    assert_non_null(bare);
    configure(ccfg, scfg, sc);
    kxt_pair p;
    blob b;
    uint8_t sess[4096];
    handshake(&p, ccfg, scfg);
    hand_over(&p, false, bare, &b);
    kx_wipe(b.data, sizeof b.data);
    assert_string_equal(ktlsx_sni(p.c), "localhost");
    if (sc->tls12) {
        /* The session was complete at the handshake: it travels in the blob. */
        assert_true(ktlsx_get_session(p.c, sess, sizeof sess) > 0);
    } else {
        /* The NewSessionTickets are still on the wire: the importer stores them. */
        assert_true(p.s2c.len > 0);
        assert_int_equal(ktlsx_get_session(p.c, sess, sizeof sess), -1);
    }
    kxt_exchange(&p, 40000);
    if (!sc->tls12) {
        peer_key_update(&p, false);
        assert_int_equal(ktlsx_key_update(p.c, 1), 0);
        kxt_send_recv(&p, true, "client asked", 12);
        kxt_send_recv(&p, false, "server answered", 15);
    }
    long n = ktlsx_get_session(p.c, sess, sizeof sess);
    assert_true(n > 0);
    kxt_pair_free(&p);

    /* The session resumes a new connection with the original server. */
    kxt_pair q;
    kxt_pair_start(&q, ccfg, scfg, "localhost", KXT_FEED_ALL);
    q.keep_cfgs = true;
    assert_int_equal(ktlsx_set_session(q.c, sess, (size_t)n), 0);
    kx_wipe(sess, sizeof sess);
    kxt_pump(&q);
    kxt_assert_done(&q);
    assert_int_equal(ktlsx_resumed(q.c), 1);
    assert_int_equal(ktlsx_resumed(q.s), 1);
    kxt_exchange(&q, 100);
    kxt_pair_free(&q);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(bare);
}

static void test_client_tls13_aes128(void **state) { (void)state; run_client_export(&tls13_aes128); }
static void test_client_tls13_aes256(void **state) { (void)state; run_client_export(&tls13_aes256); }
static void test_client_tls13_chacha(void **state) { (void)state; run_client_export(&tls13_chacha); }
static void test_client_tls12_gcm(void **state) { (void)state; run_client_export(&tls12_gcm); }
static void test_client_tls12_chacha(void **state) { (void)state; run_client_export(&tls12_chacha); }

/* A resumed connection exports as resumed, and an export of an import is the
 * same blob (nothing is lost or invented on the way). */
static void test_resumed_and_reexport(void **state)
{
    (void)state;
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_config *bare = ktlsx_config_new(KTLSX_SERVER);
    kxt_pair p;
    handshake(&p, ccfg, scfg);
    kxt_settle(&p);
    uint8_t sess[4096];
    long n = ktlsx_get_session(p.c, sess, sizeof sess);
    assert_true(n > 0);
    kxt_pair_free(&p);

    kxt_pair_start(&p, ccfg, scfg, "localhost", KXT_FEED_WANTED);
    p.keep_cfgs = true;
    assert_int_equal(ktlsx_set_session(p.c, sess, (size_t)n), 0);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_resumed(p.s), 1);
    kxt_exchange(&p, 5000); /* sequence numbers well past 0 */
    blob a, b;
    hand_over(&p, true, bare, &a);
    assert_int_equal(ktlsx_resumed(p.s), 1);
    export_ok(p.s, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    /* set_session is for before a handshake; an imported connection is past it. */
    assert_int_equal(ktlsx_set_session(p.s, sess, (size_t)n), -1);
    kxt_exchange(&p, 5000);
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(bare);
}

/* An external PSK is the operator's long-term key, not a session: a server
 * connection made on one exports (ktlsxd hands such blobs to applications)
 * and imports, but its blob holds no byte run of the PSK, and
 * ktlsx_get_session has nothing to give. */
static void test_external_psk_stays_out(void **state)
{
    (void)state;
    static const uint8_t psk[32] = { 0xa5, 0x5a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99,
                                     0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05,
                                     0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f };
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = ktlsx_config_new(KTLSX_SERVER);
    ktlsx_config *bare = ktlsx_config_new(KTLSX_SERVER);
    assert_int_equal(ktlsx_config_set_psk(ccfg, "ext", psk, sizeof psk, 0), 0);
    assert_int_equal(ktlsx_config_set_psk(scfg, "ext", psk, sizeof psk, 0), 0);
    kxt_pair p;
    handshake(&p, ccfg, scfg);
    assert_int_equal(ktlsx_resumed(p.s), 1); /* the PSK path */
    uint8_t sess[4096];
    assert_true(ktlsx_get_session(p.s, sess, sizeof sess) <= 0);
    blob b;
    export_ok(p.s, &b);
    for (size_t i = 0; i + 8 <= (size_t)b.len; i++)
        if (!memcmp(b.data + i, psk, 8)) fail_msg("the external PSK is in the export blob at %zu", i);
    blob a;
    hand_over(&p, true, bare, &a); /* and the connection carries on after an import */
    kxt_exchange(&p, 1000);
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(bare);
}

/* ---- directions in the kernel ---- */

static struct {
    int calls;
    uint8_t last_tx[sizeof(kx_ktls_crypto_info)];
    socklen_t last_tx_len;
} fake;

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    (void)fd;
    fake.calls++;
    if (level == SOL_TLS && name == TLS_TX && len <= sizeof fake.last_tx) {
        memcpy(fake.last_tx, val, len);
        fake.last_tx_len = len;
    }
    return 0;
}

static void test_kernel_directions(void **state)
{
    (void)state;
    ktlsx_config *ccfg = kxt_client_cfg("TLS_AES_256_GCM_SHA384", "x25519");
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", "TLS_AES_256_GCM_SHA384", "x25519");
    ktlsx_config *bare = ktlsx_config_new(KTLSX_SERVER);
    kxt_pair p;
    handshake(&p, ccfg, scfg);
    int cfd, sfd;
    char why[160];
    assert_int_equal(kx_loopback_pair(&cfd, &sfd, why, sizeof why), 0);
    kx_ktls_set_setsockopt(fake_setsockopt);
    assert_int_equal(ktlsx_ktls_start(p.s, sfd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    /* What the kernel must install after our KeyUpdate: from the next server secret. */
    uint8_t secret[KX_MAX_HASH], key[KX_MAX_KEY], iv[KX_AEAD_NONCE];
    memcpy(secret, p.s->ks.s_ap, sizeof secret);
    assert_false(kx_failed(kx_tls13_next_traffic_secret(KX_HASH_SHA384, secret)));
    assert_false(kx_failed(kx_tls13_traffic_keys(KX_HASH_SHA384, secret, 32, key, iv)));

    blob b;
    hand_over(&p, true, bare, &b);
    assert_int_equal(ktlsx_ktls_active(p.s), KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    struct ktlsx_traffic_keys k;
    assert_int_equal(ktlsx_export_keys(p.s, KTLSX_TX, &k), -1); /* the kernel has them, not us */
    fake.last_tx_len = 0;
    assert_int_equal(ktlsx_ktls_key_update(p.s, sfd, 0), 0);
    assert_int_equal(fake.last_tx_len, sizeof(struct tls12_crypto_info_aes_gcm_256));
    const struct tls12_crypto_info_aes_gcm_256 *ci = (const void *)fake.last_tx;
    assert_memory_equal(ci->key, key, 32);
    assert_memory_equal(ci->salt, iv, 4);
    assert_memory_equal(ci->iv, iv + 4, 8);
    /* Without kTLS on this machine the KeyUpdate went out as plain bytes: it is the message. */
    uint8_t wire[8];
    assert_int_equal(read(cfd, wire, sizeof wire), 5);
    const uint8_t ku[5] = { KX_HS_KEY_UPDATE, 0, 0, 1, 0 };
    assert_memory_equal(wire, ku, 5);
    kx_ktls_set_setsockopt(NULL);
    close(cfd);
    close(sfd);
    kx_wipe(secret, sizeof secret);
    kx_wipe(key, sizeof key);
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(bare);
}

/* TLS 1.2 with TX in the kernel: no TX keys cross over; RX ones do. */
static void test_kernel_tx_tls12(void **state)
{
    (void)state;
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_config *bare = ktlsx_config_new(KTLSX_CLIENT);
    configure(ccfg, scfg, &tls12_gcm);
    kxt_pair p;
    handshake(&p, ccfg, scfg);
    kx_ktls_set_setsockopt(fake_setsockopt);
    char why[160];
    assert_int_equal(ktlsx_ktls_start(p.c, -1, KTLSX_KTLS_TX, why, sizeof why), KTLSX_KTLS_TX);
    kx_ktls_set_setsockopt(NULL);
    blob b;
    hand_over(&p, false, bare, &b);
    assert_int_equal(ktlsx_ktls_active(p.c), KTLSX_KTLS_TX);
    struct ktlsx_traffic_keys k;
    assert_int_equal(ktlsx_export_keys(p.c, KTLSX_TX, &k), -1);
    assert_int_equal(ktlsx_export_keys(p.c, KTLSX_RX, &k), 0);
    kx_wipe_obj(k);
    kxt_send_recv(&p, false, "server to user-space RX", 23);
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(bare);
}

/* ---- what cannot be exported ---- */

static void test_not_exportable(void **state)
{
    (void)state;
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    uint8_t buf[KTLSX_EXPORT_MAX];
    const char *why = NULL;
    kxt_pair p;
    kxt_pair_start(&p, ccfg, scfg, "localhost", KXT_FEED_WANTED);
    p.keep_cfgs = true;
    assert_int_equal(ktlsx_conn_export(p.c, buf, sizeof buf, &why), -1);
    assert_string_equal(why, "handshake not complete");
    assert_int_equal(ktlsx_conn_export(NULL, buf, sizeof buf, &why), -1);
    assert_non_null(why);
    assert_int_equal(ktlsx_conn_export(p.c, NULL, sizeof buf, NULL), -1); /* why may be NULL */
    kxt_pump(&p);
    kxt_assert_done(&p);

    /* Pending output. */
    assert_int_equal(ktlsx_write(p.s, "abc", 3), 0);
    assert_int_equal(ktlsx_conn_export(p.s, buf, sizeof buf, &why), -1);
    assert_non_null(strstr(why, "pending output"));
    kxt_move_out(p.s, &p.s2c);
    blob b;
    export_ok(p.s, &b); /* the refusal changed nothing */

    /* Input fed but not read, then read into plaintext but not taken. */
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_conn_export(p.c, buf, sizeof buf, &why), -1);
    assert_non_null(strstr(why, "unread input"));
    uint8_t one;
    assert_int_equal(ktlsx_read(p.c, &one, 1), 1);
    assert_int_equal(ktlsx_conn_export(p.c, buf, sizeof buf, &why), -1);
    assert_non_null(strstr(why, "not yet read"));
    uint8_t rest[16];
    long last;
    assert_int_equal(kxt_drain_read(p.c, rest, sizeof rest, &last), 2);
    export_ok(p.c, &b);

    /* Too small a buffer: -1 and not a byte written. */
    memset(buf, 0xA5, sizeof buf);
    assert_int_equal(ktlsx_conn_export(p.c, buf, b.len - 1, &why), -1);
    assert_non_null(strstr(why, "too small"));
    for (size_t i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 0xA5);
    assert_int_equal(ktlsx_conn_export(p.c, buf, b.len, &why), (long)b.len);

    /* The peer closed. */
    assert_int_equal(ktlsx_close_notify(p.s), 0);
    kxt_move_out(p.s, &p.s2c);
    kxt_deliver(p.c, &p.s2c);
    assert_int_equal(ktlsx_read(p.c, rest, sizeof rest), -KTLSX_CLOSED);
    assert_int_equal(ktlsx_conn_export(p.c, buf, sizeof buf, &why), -1);
    assert_non_null(strstr(why, "closed"));

    /* A failed connection. */
    kx_conn_fail(p.s, KX_FAIL(KX_ALERT_INTERNAL_ERROR, "test"));
    assert_int_equal(ktlsx_conn_export(p.s, buf, sizeof buf, &why), -1);
    assert_string_equal(why, "connection has failed");
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
}

/* The largest connection state still fits KTLSX_EXPORT_MAX. */
static void test_export_max(void **state)
{
    (void)state;
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    configure(ccfg, scfg, &tls12_gcm);
    kxt_pair p;
    handshake(&p, ccfg, scfg);
    ktlsx_conn *c = p.c;
    memset(c->alpn, 'a', sizeof c->alpn - 1);
    memset(c->server_name, 'n', sizeof c->server_name - 1);
    memset(c->sni, 's', sizeof c->sni - 1);
    memset(c->peer_subject, 'p', sizeof c->peer_subject - 1);
    c->session_id_len = sizeof c->session_id;
    c->session.ticket_len = sizeof c->session.ticket;
    c->session.secret_len = KX_TLS12_MASTER;
    c->session.session_id_len = sizeof c->session.session_id;
    memset(c->session.alpn, 'a', sizeof c->session.alpn - 1);
    memset(c->session.peer_subject, 'p', sizeof c->session.peer_subject - 1);
    blob b;
    export_ok(c, &b);
    ktlsx_config *bare = ktlsx_config_new(KTLSX_CLIENT);
    ktlsx_conn *back = import_ok(bare, &b);
    assert_int_equal(strlen(ktlsx_peer_subject(back)), sizeof c->peer_subject - 1);
    ktlsx_conn_free(back);
    ktlsx_config_free(bare);
    kxt_pair_free(&p);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
}

/* ---- bad blobs ---- */

/* Offsets of the fixed header (see export.c). */
enum { OFF_FORMAT = 4, OFF_ROLE = 5, OFF_VERSION = 6, OFF_SUITE = 8, OFF_GROUP = 10, OFF_FLAGS = 12, OFF_KTLS = 13,
       OFF_TX_SEQ = 14, OFF_FIRST_VEC = 30 };

static void mutated(ktlsx_config *cfg, const blob *good, size_t off, uint8_t value, const char *what)
{
    blob b = *good;
    assert_true(off < b.len);
    b.data[off] = value;
    import_fails(cfg, b.data, b.len, what);
    kx_wipe(b.data, sizeof b.data);
}

static void put16(blob *b, size_t off, uint16_t v)
{
    b->data[off] = (uint8_t)(v >> 8);
    b->data[off + 1] = (uint8_t)v;
}

static void bad_blobs_of(const suite_case *sc, bool server)
{
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    ktlsx_config *same = ktlsx_config_new(server ? KTLSX_SERVER : KTLSX_CLIENT);
    ktlsx_config *other = ktlsx_config_new(server ? KTLSX_CLIENT : KTLSX_SERVER);
    configure(ccfg, scfg, sc);
    kxt_pair p;
    handshake(&p, ccfg, scfg);
    kxt_exchange(&p, 100);
    blob good;
    export_ok(server ? p.s : p.c, &good);
    kxt_pair_free(&p);

    for (size_t n = 0; n < good.len; n++) import_fails(same, good.data, n, "a truncation");
    uint8_t longer[KTLSX_EXPORT_MAX + 1];
    memcpy(longer, good.data, good.len);
    longer[good.len] = 0;
    import_fails(same, longer, good.len + 1, "a trailing byte");
    import_fails(other, good.data, good.len, "the other role's configuration");
    import_fails(NULL, good.data, good.len, "a NULL configuration");
    import_fails(same, NULL, 0, "a NULL blob");

    for (size_t i = 0; i < 4; i++) mutated(same, &good, i, good.data[i] ^ 0x20, "a flipped magic");
    mutated(same, &good, OFF_FORMAT, good.data[OFF_FORMAT] + 1, "a newer format");
    mutated(same, &good, OFF_FORMAT, 0, "format 0");
    mutated(same, &good, OFF_ROLE, good.data[OFF_ROLE] ^ 1, "the other role");
    mutated(same, &good, OFF_ROLE, 7, "role 7");
    mutated(same, &good, OFF_VERSION + 1, sc->tls12 ? 0x04 : 0x03, "the other version");
    mutated(same, &good, OFF_VERSION + 1, 0x02, "TLS 1.1");
    mutated(same, &good, OFF_FLAGS, 0x80, "an unknown flag");
    if (!sc->tls12) mutated(same, &good, OFF_FLAGS, good.data[OFF_FLAGS] | 0x02, "EMS on TLS 1.3");
    mutated(same, &good, OFF_KTLS, 4, "an unknown kernel direction bit");
    mutated(same, &good, OFF_GROUP, 0x7f, "an unknown group");
    /* The first vector is a secret (1.3) or the TX key (1.2): one byte short, one too long. */
    mutated(same, &good, OFF_FIRST_VEC, good.data[OFF_FIRST_VEC] - 1, "a short secret");
    mutated(same, &good, OFF_FIRST_VEC, good.data[OFF_FIRST_VEC] + 1, "a long secret");
    mutated(same, &good, OFF_FIRST_VEC, 0xff, "a huge secret");

    blob b = good;
    put16(&b, OFF_SUITE, sc->tls12 ? 0x1301 : 0xc02b); /* a suite of the other version */
    import_fails(same, b.data, b.len, "a suite of the other version");
    put16(&b, OFF_SUITE, 0x1399);
    import_fails(same, b.data, b.len, "an unknown suite");
    b = good;
    /* Another suite of the same version with other key lengths. */
    uint16_t cur = (uint16_t)((good.data[OFF_SUITE] << 8) | good.data[OFF_SUITE + 1]);
    put16(&b, OFF_SUITE, sc->tls12 ? (cur == 0xc02b ? 0xc02c : 0xc02b) : (cur == 0x1302 ? 0x1301 : 0x1302));
    if (!sc->tls12 && cur != 0x1302) import_fails(same, b.data, b.len, "a suite with another hash");
    if (sc->tls12 && cur == 0xc02b) import_fails(same, b.data, b.len, "a suite with another key length");
    if (sc->tls12) {
        /* Keys present for a direction claimed to be in the kernel. */
        b = good;
        b.data[OFF_KTLS] = KTLSX_KTLS_TX;
        import_fails(same, b.data, b.len, "keys for a kernel direction");
    }

    /* Sequence numbers are the peer's business: any value imports. */
    b = good;
    memset(b.data + OFF_TX_SEQ, 0xff, 8);
    b.data[OFF_TX_SEQ + 7] = 0xfe;
    ktlsx_conn *c = ktlsx_conn_import(same, b.data, b.len, NULL);
    assert_non_null(c);
    assert_int_equal(ktlsx_write(c, "x", 1), 0);  /* the last sequence number */
    assert_int_equal(ktlsx_write(c, "y", 1), -1); /* then exhausted, never wrapped */
    ktlsx_conn_free(c);
    kx_wipe(b.data, sizeof b.data);

    /* After all that the original still imports: the failures were the mutations. */
    c = import_ok(same, &good);
    ktlsx_conn_free(c);
    kx_wipe(good.data, sizeof good.data);
    kx_wipe(longer, sizeof longer);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
    ktlsx_config_free(same);
    ktlsx_config_free(other);
}

static void test_bad_blobs_tls13(void **state)
{
    (void)state;
    bad_blobs_of(&tls13_aes128, true);
    bad_blobs_of(&tls13_aes256, false);
}

static void test_bad_blobs_tls12(void **state)
{
    (void)state;
    bad_blobs_of(&tls12_gcm, false);
    bad_blobs_of(&tls12_chacha, true);
}

/* ---- two processes ---- */

/* The state and the socket travel as ktlsxd hands them back: one SOCK_SEQPACKET
 * message with the descriptor attached (ktlsx_send_fd / ktlsx_recv_fd). */

static int flush_fd(ktlsx_conn *c, int fd)
{
    const uint8_t *d;
    size_t n;
    while ((n = ktlsx_pending_output(c, &d)) > 0) {
        ssize_t w = write(fd, d, n);
        if (w <= 0) return -1;
        ktlsx_output_done(c, (size_t)w);
    }
    return 0;
}

/* Read from fd (within 10 s) and feed the engine: at most `max` bytes. */
static int feed_fd(ktlsx_conn *c, int fd, size_t max)
{
    uint8_t buf[32768];
    struct pollfd pfd = { fd, POLLIN, 0 };
    if (poll(&pfd, 1, 10000) != 1) return -1;
    ssize_t n = read(fd, buf, max < sizeof buf ? max : sizeof buf);
    if (n < 0) return -1;
    return ktlsx_input(c, buf, (size_t)n);
}

/* The application in the child: import, echo until the peer closes, then
 * hand its session (if a client) back to the parent.  Exit codes name the step. */
static void child_main(int ctl, enum ktlsx_role role)
{
    alarm(30);
    uint8_t b[KTLSX_EXPORT_MAX];
    int fd;
    long n = ktlsx_recv_fd(ctl, b, sizeof b, &fd, 0);
    if (n <= 0 || fd < 0) _exit(10);
    ktlsx_config *cfg = ktlsx_config_new(role); /* never had a certificate, key or CA */
    const char *why = NULL;
    ktlsx_conn *c = cfg ? ktlsx_conn_import(cfg, b, (size_t)n, &why) : NULL;
    kx_wipe(b, sizeof b);
    if (!c) {
        fprintf(stderr, "child: import failed: %s\n", why ? why : "?");
        _exit(11);
    }
    if (ktlsx_alpn(c) == NULL || strcmp(ktlsx_alpn(c), "kx-echo") != 0) _exit(12);
    uint8_t data[16384];
    for (;;) {
        long r;
        while ((r = ktlsx_read(c, data, sizeof data)) > 0)
            if (ktlsx_write(c, data, (size_t)r) != 0) _exit(13);
        if (flush_fd(c, fd) != 0) _exit(14);
        if (r == -KTLSX_CLOSED) break;
        if (r < 0) {
            fprintf(stderr, "child: read failed: %s\n", ktlsx_error(c));
            _exit(15);
        }
        if (feed_fd(c, fd, sizeof data) != 0) _exit(16);
    }
    uint8_t sess[4096];
    long sn = role == KTLSX_CLIENT ? ktlsx_get_session(c, sess, sizeof sess) : 0;
    if (sn < 0) _exit(17);
    if (ktlsx_send_fd(ctl, sess, (size_t)sn, -1, 0) != 0) _exit(18);
    kx_wipe(sess, sizeof sess);
    if (ktlsx_close_notify(c) != 0 || flush_fd(c, fd) != 0) _exit(19);
    ktlsx_conn_free(c);
    ktlsx_config_free(cfg);
    close(fd);
    _exit(0);
}

/* Drive both engines of the parent over the TCP pair until both are done;
 * each reads exactly what its engine wants, so no record past the handshake
 * is pulled into user space (the handed-over side's tickets stay on the socket). */
static void handshake_over_fds(ktlsx_conn *a, int afd, ktlsx_conn *b, int bfd)
{
    int ast = KTLSX_WANT_READ, bst = KTLSX_WANT_READ;
    for (int i = 0; i < 1000 && (ast != KTLSX_DONE || bst != KTLSX_DONE); i++) {
        if (ast == KTLSX_WANT_READ) ast = ktlsx_handshake(a);
        assert_int_equal(flush_fd(a, afd), 0);
        if (bst == KTLSX_WANT_READ) bst = ktlsx_handshake(b);
        assert_int_equal(flush_fd(b, bfd), 0);
        if (ast == KTLSX_FAILED || bst == KTLSX_FAILED) fail_msg("handshake failed: %s / %s", ktlsx_error(a), ktlsx_error(b));
        struct pollfd p[2] = { { afd, ast == KTLSX_WANT_READ ? POLLIN : 0, 0 }, { bfd, bst == KTLSX_WANT_READ ? POLLIN : 0, 0 } };
        if (ast == KTLSX_DONE && bst == KTLSX_DONE) break;
        assert_true(poll(p, 2, 10000) > 0);
        if (p[0].revents & POLLIN) assert_int_equal(feed_fd(a, afd, ktlsx_input_wanted(a)), 0);
        if (p[1].revents & POLLIN) assert_int_equal(feed_fd(b, bfd, ktlsx_input_wanted(b)), 0);
    }
    assert_int_equal(ast, KTLSX_DONE);
    assert_int_equal(bst, KTLSX_DONE);
}

/* The peer sends `len` bytes and reads them back from the child, byte-exact. */
static void peer_echo(ktlsx_conn *peer, int fd, const uint8_t *d, size_t len)
{
    assert_int_equal(ktlsx_write(peer, d, len), 0);
    assert_int_equal(flush_fd(peer, fd), 0);
    uint8_t *got = malloc(len);
    assert_non_null(got);
    size_t have = 0;
    while (have < len) {
        long r = ktlsx_read(peer, got + have, len - have);
        if (r > 0) {
            have += (size_t)r;
            continue;
        }
        if (r < 0) fail_msg("peer: read failed (%ld): %s", r, ktlsx_error(peer));
        assert_int_equal(flush_fd(peer, fd), 0); /* a KeyUpdate answer, if any */
        assert_int_equal(feed_fd(peer, fd, 32768), 0);
    }
    assert_memory_equal(got, d, len);
    free(got);
}

static void run_two_processes(const suite_case *sc, enum ktlsx_role child_role)
{
    ktlsx_config *ccfg = kxt_client_cfg(NULL, NULL);
    ktlsx_config *scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    configure(ccfg, scfg, sc);
    int ctl[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ctl[0]);
        child_main(ctl[1], child_role);
    }
    close(ctl[1]);

    int cfd, sfd;
    char why[160];
    assert_int_equal(kx_loopback_pair(&cfd, &sfd, why, sizeof why), 0);
    ktlsx_conn *c = ktlsx_conn_new(ccfg, "localhost"), *s = ktlsx_conn_new(scfg, NULL);
    assert_non_null(c);
    assert_non_null(s);
    handshake_over_fds(c, cfd, s, sfd);

    /* Hand the child's side over: blob + fd, then forget both here. */
    bool child_client = child_role == KTLSX_CLIENT;
    ktlsx_conn *handed = child_client ? c : s, *peer = child_client ? s : c;
    int handed_fd = child_client ? cfd : sfd, peer_fd = child_client ? sfd : cfd;
    blob b;
    export_ok(handed, &b);
    assert_int_equal(ktlsx_send_fd(ctl[0], b.data, b.len, handed_fd, 0), 0);
    kx_wipe(b.data, sizeof b.data);
    ktlsx_conn_free(handed);
    close(handed_fd);

    uint8_t *d = malloc(50000);
    assert_non_null(d);
    for (size_t i = 0; i < 50000; i++) d[i] = (uint8_t)(i * 131 + 7);
    peer_echo(peer, peer_fd, d, 50000);
    if (!sc->tls12) {
        assert_int_equal(ktlsx_key_update(peer, 1), 0);
        peer_echo(peer, peer_fd, d + 1, 30000);
        peer_echo(peer, peer_fd, d + 2, 17);
    }
    assert_int_equal(ktlsx_close_notify(peer), 0);
    assert_int_equal(flush_fd(peer, peer_fd), 0);

    uint8_t sess[4096];
    int no_fd = -1;
    long sn = ktlsx_recv_fd(ctl[0], sess, sizeof sess, &no_fd, 0);
    if (no_fd >= 0) close(no_fd);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child failed: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    /* The child's close_notify arrives at the peer. */
    uint8_t tail[64];
    long r;
    while ((r = ktlsx_read(peer, tail, sizeof tail)) == 0) assert_int_equal(feed_fd(peer, peer_fd, sizeof tail), 0);
    assert_int_equal(r, -KTLSX_CLOSED);
    ktlsx_conn_free(peer);
    close(peer_fd);
    close(ctl[0]);
    free(d);

    if (child_client) {
        /* The ticket the child stored resumes at the parent's server. */
        assert_true(sn > 0);
        kxt_pair q;
        kxt_pair_start(&q, ccfg, scfg, "localhost", KXT_FEED_ALL);
        q.keep_cfgs = true;
        assert_int_equal(ktlsx_set_session(q.c, sess, (size_t)sn), 0);
        kxt_pump(&q);
        kxt_assert_done(&q);
        assert_int_equal(ktlsx_resumed(q.c), 1);
        kxt_pair_free(&q);
    }
    kx_wipe(sess, sizeof sess);
    ktlsx_config_free(ccfg);
    ktlsx_config_free(scfg);
}

static void test_two_processes_client13(void **state) { (void)state; run_two_processes(&tls13_aes128, KTLSX_CLIENT); }
static void test_two_processes_server13(void **state) { (void)state; run_two_processes(&tls13_chacha, KTLSX_SERVER); }
static void test_two_processes_client12(void **state) { (void)state; run_two_processes(&tls12_gcm, KTLSX_CLIENT); }

int main(void)
{
    /* A dead peer must fail a write, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_tls13_aes128),
        cmocka_unit_test(test_server_tls13_aes256),
        cmocka_unit_test(test_server_tls13_chacha),
        cmocka_unit_test(test_server_tls12_gcm),
        cmocka_unit_test(test_server_tls12_chacha),
        cmocka_unit_test(test_client_tls13_aes128),
        cmocka_unit_test(test_client_tls13_aes256),
        cmocka_unit_test(test_client_tls13_chacha),
        cmocka_unit_test(test_client_tls12_gcm),
        cmocka_unit_test(test_client_tls12_chacha),
        cmocka_unit_test(test_resumed_and_reexport),
        cmocka_unit_test(test_external_psk_stays_out),
        cmocka_unit_test(test_kernel_directions),
        cmocka_unit_test(test_kernel_tx_tls12),
        cmocka_unit_test(test_not_exportable),
        cmocka_unit_test(test_export_max),
        cmocka_unit_test(test_bad_blobs_tls13),
        cmocka_unit_test(test_bad_blobs_tls12),
        cmocka_unit_test(test_two_processes_client13),
        cmocka_unit_test(test_two_processes_server13),
        cmocka_unit_test(test_two_processes_client12),
    };
    return cmocka_run_group_tests_name("test_export", tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
