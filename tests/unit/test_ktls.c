/* Kernel TLS offload module: crypto_info layout per suite, refusal of
 * unknown suites, errno explanations, install order, the probe logic (run
 * against a fake kernel, since the build machine may lack the tls module),
 * the record-type cmsg plumbing and the generic netlink query; the public
 * probe (ktlsx_probe) and its text, byte for byte what `ktlsx probe` printed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ktls/ktls.h"
/* issue 9: ktlsx_ktls_start with a record_size_limit, on an engine pair */
#include <stdbool.h>
#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

/* ---- fake setsockopt ---- */

#define MAX_CALLS 16

struct call {
    int fd, level, name;
    socklen_t len;
    uint8_t val[64];
};

static struct {
    struct call calls[MAX_CALLS];
    int ncalls;
    int fail_errno;   /* 0: succeed */
    int fail_on_call; /* fail only the call with this index (-1: every call) */
} fake;

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    int idx = fake.ncalls;
    if (fake.ncalls < MAX_CALLS) {
        struct call *c = &fake.calls[fake.ncalls++];
        c->fd = fd;
        c->level = level;
        c->name = name;
        c->len = len;
        memset(c->val, 0, sizeof(c->val));
        memcpy(c->val, val, len < sizeof(c->val) ? len : sizeof(c->val));
    }
    if (fake.fail_errno && (fake.fail_on_call < 0 || fake.fail_on_call == idx)) {
        errno = fake.fail_errno;
        return -1;
    }
    return 0;
}

static int setup_fake(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof(fake));
    fake.fail_on_call = -1;
    kx_ktls_set_setsockopt(fake_setsockopt);
    return 0;
}

static int teardown_fake(void **state)
{
    (void)state;
    kx_ktls_set_setsockopt(NULL);
    return 0;
}

/* ---- expectations, written independently of the module's table ---- */

struct expect {
    uint16_t suite, version, cipher_type;
    size_t key_len, salt_len, iv_len, size;
};

static const struct expect expected[] = {
    { 0x1301, KTLSX_TLS13, TLS_CIPHER_AES_GCM_128, 16, 4, 8, 40 },
    { 0x1302, KTLSX_TLS13, TLS_CIPHER_AES_GCM_256, 32, 4, 8, 56 },
    { 0x1303, KTLSX_TLS13, TLS_CIPHER_CHACHA20_POLY1305, 32, 0, 12, 56 },
    { 0x1304, KTLSX_TLS13, TLS_CIPHER_AES_CCM_128, 16, 4, 8, 40 }, /* conf-b */
    { 0xc02b, KTLSX_TLS12, TLS_CIPHER_AES_GCM_128, 16, 4, 8, 40 },
    { 0xc02f, KTLSX_TLS12, TLS_CIPHER_AES_GCM_128, 16, 4, 8, 40 },
    { 0x009c, KTLSX_TLS12, TLS_CIPHER_AES_GCM_128, 16, 4, 8, 40 },
    { 0xc02c, KTLSX_TLS12, TLS_CIPHER_AES_GCM_256, 32, 4, 8, 56 },
    { 0xc030, KTLSX_TLS12, TLS_CIPHER_AES_GCM_256, 32, 4, 8, 56 },
    { 0x009d, KTLSX_TLS12, TLS_CIPHER_AES_GCM_256, 32, 4, 8, 56 },
    { 0xcca8, KTLSX_TLS12, TLS_CIPHER_CHACHA20_POLY1305, 32, 0, 12, 56 },
    { 0xcca9, KTLSX_TLS12, TLS_CIPHER_CHACHA20_POLY1305, 32, 0, 12, 56 },
};
#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

static const uint8_t SEQ_BE[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };

static void make_keys(struct ktlsx_traffic_keys *k, const struct expect *e)
{
    memset(k, 0, sizeof(*k));
    k->version = e->version;
    k->cipher_suite = e->suite;
    for (size_t i = 0; i < sizeof(k->key); i++)
        k->key[i] = (uint8_t)(0xa0 + i);
    for (size_t i = 0; i < sizeof(k->iv); i++)
        k->iv[i] = (uint8_t)(0x10 + i);
    k->key_len = e->key_len;
    /* TLS 1.2 GCM exports only the 4-byte implicit IV. */
    k->iv_len = (e->version == KTLSX_TLS12 && e->salt_len == 4) ? 4 : 12;
    k->seq = 0x0102030405060708ULL;
}

/* Pull the fields out of captured bytes through the kernel's own structs. */
static void split_fields(const uint8_t *val, uint16_t cipher_type, const uint8_t **key,
                         const uint8_t **salt, const uint8_t **iv, const uint8_t **rec_seq)
{
    switch (cipher_type) {
    case TLS_CIPHER_AES_GCM_128: {
        const struct tls12_crypto_info_aes_gcm_128 *c = (const void *)val;
        *key = c->key; *salt = c->salt; *iv = c->iv; *rec_seq = c->rec_seq;
        break;
    }
    case TLS_CIPHER_AES_GCM_256: {
        const struct tls12_crypto_info_aes_gcm_256 *c = (const void *)val;
        *key = c->key; *salt = c->salt; *iv = c->iv; *rec_seq = c->rec_seq;
        break;
    }
    case TLS_CIPHER_CHACHA20_POLY1305: {
        const struct tls12_crypto_info_chacha20_poly1305 *c = (const void *)val;
        *key = c->key; *salt = c->salt; *iv = c->iv; *rec_seq = c->rec_seq;
        break;
    }
    case TLS_CIPHER_AES_CCM_128: {
        const struct tls12_crypto_info_aes_ccm_128 *c = (const void *)val;
        *key = c->key; *salt = c->salt; *iv = c->iv; *rec_seq = c->rec_seq;
        break;
    }
    default:
        fail_msg("unexpected cipher_type %u", cipher_type);
    }
}

static void check_layout(const struct expect *e, int direction)
{
    struct ktlsx_traffic_keys k;
    char why[256] = "";
    make_keys(&k, e);
    fake.ncalls = 0;

    assert_int_equal(kx_ktls_install(7, direction, &k, why, sizeof(why)), 0);
    assert_int_equal(fake.ncalls, 1);
    const struct call *c = &fake.calls[0];
    assert_int_equal(c->fd, 7);
    assert_int_equal(c->level, SOL_TLS);
    assert_int_equal(c->level, 282);
    assert_int_equal(c->name, direction == KTLSX_TX ? TLS_TX : TLS_RX);
    assert_int_equal(c->len, e->size);

    struct tls_crypto_info info;
    memcpy(&info, c->val, sizeof(info));
    assert_int_equal(info.version, e->version == KTLSX_TLS13 ? 0x0304 : 0x0303);
    assert_int_equal(info.cipher_type, e->cipher_type);

    const uint8_t *key, *salt, *iv, *rec_seq;
    split_fields(c->val, e->cipher_type, &key, &salt, &iv, &rec_seq);
    assert_memory_equal(key, k.key, e->key_len);
    assert_memory_equal(rec_seq, SEQ_BE, 8);
    if (e->cipher_type == TLS_CIPHER_CHACHA20_POLY1305) {
        /* Full 12-byte static IV, no salt. */
        assert_memory_equal(iv, k.iv, 12);
    } else if (e->version == KTLSX_TLS13) {
        assert_memory_equal(salt, k.iv, 4);
        assert_memory_equal(iv, k.iv + 4, 8);
    } else {
        /* TLS 1.2 GCM: implicit IV as salt, explicit nonce = seq. */
        assert_memory_equal(salt, k.iv, 4);
        assert_memory_equal(iv, SEQ_BE, 8);
    }
}

static void test_layout_every_suite(void **state)
{
    (void)state;
    for (size_t i = 0; i < NEXPECTED; i++) {
        check_layout(&expected[i], KTLSX_TX);
        check_layout(&expected[i], KTLSX_RX);
    }
}

/* The module's table holds exactly the expected suites. */
static void test_table_matches(void **state)
{
    (void)state;
    size_t n = 0;
    for (const kx_ktls_suite *s; (s = kx_ktls_suite_at(n)) != NULL; n++) {
        int found = 0;
        for (size_t i = 0; i < NEXPECTED; i++)
            if (expected[i].suite == s->suite && expected[i].version == s->version &&
                expected[i].cipher_type == s->cipher_type && expected[i].size == s->info_size)
                found = 1;
        assert_true(found);
    }
    assert_int_equal(n, NEXPECTED);
}

/* One fully spelled-out crypto_info, byte for byte, as a pin on the ABI. */
static void test_tls13_aes128_bytes(void **state)
{
    (void)state;
    struct ktlsx_traffic_keys k;
    make_keys(&k, &expected[0]);
    k.seq = 5;
    fake.ncalls = 0;
    assert_int_equal(kx_ktls_install(3, KTLSX_TX, &k, NULL, 0), 0);
    uint8_t want[40];
    uint16_t hdr[2] = { 0x0304, 51 };
    memcpy(want, hdr, 4);
    const uint8_t iv[8] = { 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b };
    memcpy(want + 4, iv, 8);
    for (int i = 0; i < 16; i++)
        want[12 + i] = (uint8_t)(0xa0 + i);
    const uint8_t salt[4] = { 0x10, 0x11, 0x12, 0x13 };
    memcpy(want + 28, salt, 4);
    const uint8_t seq[8] = { 0, 0, 0, 0, 0, 0, 0, 5 };
    memcpy(want + 32, seq, 8);
    assert_int_equal(fake.calls[0].len, 40);
    assert_memory_equal(fake.calls[0].val, want, 40);
}

static void expect_refused(uint16_t version, uint16_t suite, size_t key_len, size_t iv_len,
                           const char *fragment)
{
    struct ktlsx_traffic_keys k;
    char why[256] = "";
    memset(&k, 0, sizeof(k));
    k.version = version;
    k.cipher_suite = suite;
    k.key_len = key_len;
    k.iv_len = iv_len;
    fake.ncalls = 0;
    assert_int_equal(kx_ktls_install(3, KTLSX_TX, &k, why, sizeof(why)), -1);
    assert_int_equal(fake.ncalls, 0);
    if (!strstr(why, fragment))
        fail_msg("why '%s' lacks '%s'", why, fragment);
}

static void test_unknown_suites_refused(void **state)
{
    (void)state;
    expect_refused(KTLSX_TLS13, 0x1305, 16, 12, "no kernel TLS mapping");   /* AES-128-CCM-8 */
    expect_refused(KTLSX_TLS13, 0x1304, 32, 12, "aes-128-ccm keys have key_len 32");
    expect_refused(KTLSX_TLS12, 0x002f, 16, 4, "no kernel TLS mapping");    /* AES-128-CBC-SHA */
    expect_refused(KTLSX_TLS12, 0x1301, 16, 12, "does not belong to TLS 1.2");
    expect_refused(KTLSX_TLS13, 0xc02f, 16, 4, "does not belong to TLS 1.3");
    expect_refused(0x0302, 0xc02f, 16, 4, "");
    expect_refused(KTLSX_TLS13, 0x1301, 32, 12, "key_len 32");
    expect_refused(KTLSX_TLS12, 0xc02f, 16, 12, "iv_len 12");
    expect_refused(KTLSX_TLS13, 0x1303, 32, 4, "iv_len 4");
    assert_null(kx_ktls_suite_find(KTLSX_TLS13, 0x0000));

    struct ktlsx_traffic_keys k;
    make_keys(&k, &expected[0]);
    fake.ncalls = 0;
    assert_int_equal(kx_ktls_install(3, 5, &k, NULL, 0), -1);
    assert_int_equal(fake.ncalls, 0);
}

static void expect_install_errno(int err, const char *fragment)
{
    struct ktlsx_traffic_keys k;
    char why[256] = "";
    make_keys(&k, &expected[0]);
    fake.ncalls = 0;
    fake.fail_errno = err;
    assert_int_equal(kx_ktls_install(3, KTLSX_RX, &k, why, sizeof(why)), -1);
    assert_int_equal(errno, err);
    fake.fail_errno = 0;
    if (!strstr(why, fragment))
        fail_msg("errno %d: why '%s' lacks '%s'", err, why, fragment);
    assert_non_null(strstr(why, "TLS_RX"));
}

static void test_install_errno_messages(void **state)
{
    (void)state;
    expect_install_errno(EINVAL, "cipher or version not supported by this kernel");
    expect_install_errno(ENOPROTOOPT, "tls ULP not attached");
    expect_install_errno(EBUSY, "already installed");
    expect_install_errno(EBUSY, "Linux >= 6.14");
    expect_install_errno(EEXIST, "already installed");
    expect_install_errno(ENOENT, "gcm(aes)");
    expect_install_errno(KX_ENOTSUPP, "TLS version not supported");
    expect_install_errno(EACCES, strerror(EACCES));
}

static void expect_ulp_errno(int err, int rc, const char *fragment)
{
    char why[256] = "";
    fake.ncalls = 0;
    fake.fail_errno = err;
    assert_int_equal(kx_ktls_enable_ulp(9, why, sizeof(why)), rc);
    fake.fail_errno = 0;
    assert_int_equal(fake.ncalls, 1);
    assert_int_equal(fake.calls[0].fd, 9);
    assert_int_equal(fake.calls[0].level, IPPROTO_TCP);
    assert_int_equal(fake.calls[0].name, 31);
    assert_int_equal(fake.calls[0].len, 4);
    assert_memory_equal(fake.calls[0].val, "tls", 4);
    if (!strstr(why, fragment))
        fail_msg("errno %d: why '%s' lacks '%s'", err, why, fragment);
}

static void test_ulp_errno_messages(void **state)
{
    (void)state;
    expect_ulp_errno(0, 0, "");
    expect_ulp_errno(EEXIST, 0, "");
    expect_ulp_errno(ENOENT, -1, "kernel has no tls module (modprobe tls / CONFIG_TLS");
    expect_ulp_errno(ENOTCONN, -1, "not connected");
    expect_ulp_errno(ENOPROTOOPT, -1, "TCP_ULP");
    expect_ulp_errno(EOPNOTSUPP, -1, "does not support ULPs");
    expect_ulp_errno(EACCES, -1, strerror(EACCES));
    /* NULL why is allowed. */
    fake.fail_errno = ENOENT;
    assert_int_equal(kx_ktls_enable_ulp(9, NULL, 0), -1);
    fake.fail_errno = 0;
}

/* TX goes first; a TX failure stops before RX (-1), an RX failure after
 * TX is reported as the unrecoverable case (-2). */
static void test_install_pair_order(void **state)
{
    (void)state;
    struct ktlsx_traffic_keys tx, rx;
    char why[256];
    make_keys(&tx, &expected[1]);
    make_keys(&rx, &expected[1]);

    fake.ncalls = 0;
    assert_int_equal(kx_ktls_install_pair(4, &tx, &rx, why, sizeof(why)), 0);
    assert_int_equal(fake.ncalls, 2);
    assert_int_equal(fake.calls[0].name, TLS_TX);
    assert_int_equal(fake.calls[1].name, TLS_RX);

    fake.ncalls = 0;
    fake.fail_errno = EINVAL;
    fake.fail_on_call = 0;
    assert_int_equal(kx_ktls_install_pair(4, &tx, &rx, why, sizeof(why)), -1);
    assert_int_equal(fake.ncalls, 1);

    fake.ncalls = 0;
    fake.fail_on_call = 1;
    assert_int_equal(kx_ktls_install_pair(4, &tx, &rx, why, sizeof(why)), -2);
    assert_int_equal(fake.ncalls, 2);
    assert_non_null(strstr(why, "TLS_RX"));
    fake.fail_errno = 0;
    fake.fail_on_call = -1;
}

/* On this machine's real kernel: either the tls module is missing and the
 * message says so, or kTLS exists and there is nothing to check here. */
static void test_ulp_real_socket(void **state)
{
    (void)state;
    kx_ktls_set_setsockopt(NULL);
    int c, s;
    char why[256] = "";
    if (kx_loopback_pair(&c, &s, why, sizeof(why)) != 0)
        fail_msg("%s", why);
    int rc = kx_ktls_enable_ulp(c, why, sizeof(why));
    int err = errno;
    close(c);
    close(s);
    if (rc == 0)
        skip();
    assert_int_equal(err, ENOENT);
    assert_non_null(strstr(why, "kernel has no tls module"));
}

/* ---- a fake kernel for the probe ---- */

static struct {
    int rekey;            /* accept a second TLS_TX on TLS 1.3 (Linux >= 6.14) */
    int no_chacha;        /* refuse ChaCha20 with EINVAL */
    int no_tls13;         /* refuse TLS 1.3 with ENOTSUPP (old kernel) */
    int no_ulp;           /* ENOENT on TCP_ULP */
    int tx_set[1024];     /* per fd: TLS_TX already installed */
    int max_payload;      /* issue 9: TLS_TX_MAX_PAYLOAD_LEN known (Linux >= 6.19) */
    int max_payload_fail_fd; /* this fd refuses it all the same (0: none) */
    int max_payload_set[1024]; /* per fd: the value set */
} kern;

static int fake_kernel(int fd, int level, int name, const void *val, socklen_t len)
{
    if (level == IPPROTO_TCP && name == TCP_ULP) {
        assert_int_equal(len, 4);
        if (kern.no_ulp) {
            errno = ENOENT;
            return -1;
        }
        kern.tx_set[fd] = 0;
        return 0;
    }
    assert_int_equal(level, SOL_TLS);
    if (name == TLS_TX_MAX_PAYLOAD_LEN) {
        if (!kern.max_payload) {
            errno = ENOPROTOOPT;
            return -1;
        }
        assert_true(kern.tx_set[fd]); /* never before TLS_TX: a real kernel would oops */
        uint16_t v;
        if (len != sizeof v || fd == kern.max_payload_fail_fd) {
            errno = EINVAL;
            return -1;
        }
        memcpy(&v, val, sizeof v);
        if (v < 64 || v > 16384) {
            errno = EINVAL;
            return -1;
        }
        kern.max_payload_set[fd] = v;
        return 0;
    }
    struct tls_crypto_info info;
    memcpy(&info, val, sizeof(info));
    if (kern.no_tls13 && info.version == TLS_1_3_VERSION) {
        errno = KX_ENOTSUPP;
        return -1;
    }
    if (kern.no_chacha && info.cipher_type == TLS_CIPHER_CHACHA20_POLY1305) {
        errno = EINVAL;
        return -1;
    }
    if (name == TLS_TX) {
        if (kern.tx_set[fd] && !(kern.rekey && info.version == TLS_1_3_VERSION)) {
            errno = EBUSY;
            return -1;
        }
        kern.tx_set[fd] = 1;
    }
    return 0;
}

static void run_probe(kx_probe_report *r)
{
    kx_ktls_set_setsockopt(fake_kernel);
    kx_ktls_probe(r);
    kx_ktls_set_setsockopt(NULL);
}

static void test_probe_all_supported(void **state)
{
    (void)state;
    memset(&kern, 0, sizeof(kern));
    kern.rekey = 1;
    kx_probe_report r;
    run_probe(&r);
    assert_int_equal(r.ulp, 1);
    for (int v = 0; v < KX_PROBE_VERSIONS; v++)
        for (int i = 0; i < KX_PROBE_CIPHERS; i++) {
            assert_int_equal(r.tx[v][i].accepted, 1);
            assert_int_equal(r.rx[v][i].accepted, 1);
        }
    assert_int_equal(r.rekey.accepted, 1);
    assert_int_equal(r.usable, 1);
    assert_true(r.kernel[0] != '\0');
}

static void test_probe_old_kernel(void **state)
{
    (void)state;
    memset(&kern, 0, sizeof(kern));
    kern.no_chacha = 1;
    kx_probe_report r;
    run_probe(&r);
    assert_int_equal(r.usable, 1);
    assert_int_equal(r.rekey.accepted, 0);
    assert_non_null(strstr(r.rekey.why, "Linux >= 6.14"));
    assert_string_equal(kx_probe_cipher_name(2), "chacha20-poly1305");
    assert_int_equal(r.tx[1][2].accepted, 0);
    assert_int_equal(r.rx[0][2].accepted, 0);
    assert_non_null(strstr(r.tx[1][2].why, "cipher or version not supported"));
    assert_int_equal(r.tx[0][0].accepted, 1);
}

static void test_probe_no_tls13(void **state)
{
    (void)state;
    memset(&kern, 0, sizeof(kern));
    kern.no_tls13 = 1;
    kx_probe_report r;
    run_probe(&r);
    assert_int_equal(r.ulp, 1);
    assert_int_equal(r.usable, 0);
    assert_int_equal(r.tx[0][1].accepted, 1);
    assert_non_null(strstr(r.why, "TLS 1.3 aes-128-gcm"));
    assert_non_null(strstr(r.why, "TLS version not supported"));
    assert_int_equal(r.rekey.accepted, 0);
}

static void test_probe_no_ulp(void **state)
{
    (void)state;
    memset(&kern, 0, sizeof(kern));
    kern.no_ulp = 1;
    kx_probe_report r;
    run_probe(&r);
    assert_int_equal(r.ulp, 0);
    assert_int_equal(r.usable, 0);
    assert_non_null(strstr(r.ulp_why, "no tls module"));
    assert_non_null(strstr(r.why, "no tls module"));
    assert_int_equal(r.tx[1][0].accepted, 0);
}

static void test_rekey_supported_api(void **state)
{
    (void)state;
    char why[256] = "";
    memset(&kern, 0, sizeof(kern));
    kern.rekey = 1;
    kx_ktls_set_setsockopt(fake_kernel);
    assert_int_equal(kx_ktls_rekey_supported(why, sizeof(why)), 1);
    kern.rekey = 0;
    assert_int_equal(kx_ktls_rekey_supported(why, sizeof(why)), 0);
    assert_non_null(strstr(why, "Linux >= 6.14"));
    kern.no_ulp = 1;
    assert_int_equal(kx_ktls_rekey_supported(why, sizeof(why)), -1);
    kx_ktls_set_setsockopt(NULL);
}

/* ---- the public probe and its text (ktlsx_probe, ktlsx_probe_lines) ---- */

/* The text `ktlsx probe` printed before the report moved into the library,
 * written the way the tool wrote it (kmod-tests/suite/20-ktlsx-probe.sh
 * parses it): the library must produce exactly these bytes. */
static void old_cli_text(FILE *out, const kx_probe_report *r)
{
    fprintf(out, "kernel: %s\n", r->kernel);
    if (r->ulp)
        fprintf(out, "tls-ulp: yes\n");
    else
        fprintf(out, "tls-ulp: no (%s)\n", r->ulp_why);
    static const char *const vnames[2] = { "tls12", "tls13" };
    static const char *const cnames[3] = { "aes-128-gcm", "aes-256-gcm", "chacha20-poly1305" };
    for (int v = 0; v < 2; v++)
        for (int c = 0; c < 3; c++) {
            const kx_probe_verdict *tx = &r->tx[v][c], *rx = &r->rx[v][c];
            fprintf(out, "%s-%s: tx=%s rx=%s", vnames[v], cnames[c], tx->accepted ? "yes" : "no",
                    rx->accepted ? "yes" : "no");
            if (!tx->accepted && !rx->accepted && strcmp(tx->why, rx->why) == 0)
                fprintf(out, " (%s)", tx->why);
            else {
                if (!tx->accepted) fprintf(out, " (tx: %s)", tx->why);
                if (!rx->accepted) fprintf(out, " (rx: %s)", rx->why);
            }
            fputc('\n', out);
        }
    if (r->rekey.accepted)
        fprintf(out, "tls13-rekey: yes\n");
    else
        fprintf(out, "tls13-rekey: no (%s)\n", r->rekey.why);
    if (r->handshake_genl == 1)
        fprintf(out, "handshake-genl: yes\n");
    else
        fprintf(out, "handshake-genl: no (%s)\n", r->genl_why);
    if (r->usable)
        fprintf(out, "ktls: usable\n");
    else
        fprintf(out, "ktls: unavailable (%s)\n", r->why);
}

typedef struct {
    FILE *out;
    int lines, warnings, last_level;
} line_sink;

static void collect_line(void *arg, int level, const char *line)
{
    line_sink *k = arg;
    assert_null(strchr(line, '\n'));
    fprintf(k->out, "%s\n", line);
    k->lines++;
    k->last_level = level;
    if (level == KTLSX_LOG_WARNING) k->warnings++;
    else assert_int_equal(level, KTLSX_LOG_INFO);
}

static void assert_text_as_before(const kx_probe_report *r)
{
    char *want = NULL, *got = NULL;
    size_t want_len = 0, got_len = 0;
    FILE *w = open_memstream(&want, &want_len);
    line_sink k = { open_memstream(&got, &got_len), 0, 0, 0 };
    assert_non_null(w);
    assert_non_null(k.out);
    old_cli_text(w, r);
    assert_int_equal(ktlsx_probe_lines(r, collect_line, &k), 0);
    fclose(w);
    fclose(k.out);
    assert_string_equal(got, want);
    assert_int_equal(k.lines, 11);
    assert_int_equal(k.warnings, r->usable ? 0 : 1);
    assert_int_equal(k.last_level, r->usable ? KTLSX_LOG_INFO : KTLSX_LOG_WARNING);
    free(want);
    free(got);
}

static void test_probe_text_every_kernel(void **state)
{
    (void)state;
    kx_probe_report r;
    /* All there; ChaCha and re-keying missing; no TLS 1.3; no ULP at all. */
    for (int variant = 0; variant < 4; variant++) {
        memset(&kern, 0, sizeof(kern));
        kern.rekey = variant == 0;
        kern.no_chacha = variant == 1;
        kern.no_tls13 = variant == 2;
        kern.no_ulp = variant == 3;
        run_probe(&r);
        assert_text_as_before(&r);
    }
    /* Directions failing differently, and one failing alone, both ways round. */
    r.tx[1][1].accepted = 1;
    r.rx[1][1].accepted = 0;
    snprintf(r.rx[1][1].why, sizeof(r.rx[1][1].why), "rx refused here");
    r.tx[0][2].accepted = 0;
    r.rx[0][2].accepted = 0;
    snprintf(r.tx[0][2].why, sizeof(r.tx[0][2].why), "one reason");
    snprintf(r.rx[0][2].why, sizeof(r.rx[0][2].why), "another reason");
    r.tx[0][0].accepted = 0;
    r.rx[0][0].accepted = 1;
    snprintf(r.tx[0][0].why, sizeof(r.tx[0][0].why), "tx refused here");
    r.handshake_genl = -1;
    snprintf(r.genl_why, sizeof(r.genl_why), "netlink recv: timed out");
    assert_text_as_before(&r);
    /* Reasons as long as the report holds: nothing is cut that the old text kept. */
    memset(r.tx[1][2].why, 'x', sizeof(r.tx[1][2].why) - 1);
    r.tx[1][2].why[sizeof(r.tx[1][2].why) - 1] = 0;
    memset(r.rx[1][2].why, 'y', sizeof(r.rx[1][2].why) - 1);
    r.rx[1][2].why[sizeof(r.rx[1][2].why) - 1] = 0;
    r.tx[1][2].accepted = r.rx[1][2].accepted = 0;
    memset(r.why, 'z', sizeof(r.why) - 1);
    r.why[sizeof(r.why) - 1] = 0;
    r.usable = 0;
    assert_text_as_before(&r);
}

static void test_probe_public_api(void **state)
{
    (void)state;
    memset(&kern, 0, sizeof(kern));
    kern.rekey = 1;
    struct ktlsx_probe_report r;
    kx_ktls_set_setsockopt(fake_kernel);
    assert_int_equal(ktlsx_probe(&r), 1);
    kx_ktls_set_setsockopt(NULL);
    assert_int_equal(r.usable, 1);
    assert_int_equal(r.rx[1][2].accepted, 1);
    assert_string_equal(ktlsx_probe_cipher_name(0), "aes-128-gcm");
    assert_string_equal(ktlsx_probe_cipher_name(2), "chacha20-poly1305");
    assert_string_equal(ktlsx_probe_cipher_name(KTLSX_PROBE_CIPHERS), "?");
    assert_string_equal(ktlsx_probe_cipher_name(-1), "?");
    errno = 0;
    assert_int_equal(ktlsx_probe(NULL), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(ktlsx_probe_lines(NULL, collect_line, NULL), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(ktlsx_probe_lines(&r, NULL, NULL), -1);
    assert_int_equal(errno, EINVAL);
}

/* ---- data path plumbing on a plain TCP pair ---- */

/* Without kTLS the kernel ignores the SOL_TLS cmsg and returns none, so
 * this checks the msghdr/cmsg construction is accepted and that a missing
 * type reads as application data. */
static void test_record_plumbing(void **state)
{
    (void)state;
    int c, s;
    char why[256];
    if (kx_loopback_pair(&c, &s, why, sizeof(why)) != 0)
        fail_msg("%s", why);
    const uint8_t alert[2] = { 1, 0 };
    uint8_t buf[16];
    uint8_t type = 0xff;
    /* MSG_DONTWAIT: nothing queued on a blocking socket -> EAGAIN, no wait. */
    errno = 0;
    assert_int_equal(kx_ktls_recv_record(s, buf, sizeof(buf), &type, MSG_DONTWAIT), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    assert_int_equal(kx_ktls_send_record(c, 21, alert, sizeof(alert), 0), 2);
    assert_int_equal(kx_ktls_recv_record(s, buf, sizeof(buf), &type, 0), 2);
    assert_memory_equal(buf, alert, 2);
    assert_int_equal(type, 23);
    close(c);
    assert_int_equal(kx_ktls_recv_record(s, buf, sizeof(buf), &type, 0), 0);
    assert_int_equal(type, 0);
    close(s);
    assert_int_equal(kx_ktls_recv_record(-1, buf, sizeof(buf), &type, 0), -1);
    assert_int_equal(errno, EBADF);
}

/* ---- generic netlink ---- */

static void test_genl_query(void **state)
{
    (void)state;
    char why[256] = "";
    int r = kx_genl_family_present("nlctrl", why, sizeof(why));
    if (r < 0 && strstr(why, "netlink socket"))
        skip(); /* no netlink in this sandbox */
    assert_int_equal(r, 1);
    assert_int_equal(kx_genl_family_present("kx-no-such", why, sizeof(why)), 0);
    assert_non_null(strstr(why, "not registered"));
    assert_int_equal(kx_genl_family_present("a-name-longer-than-genl-namsiz", why, sizeof(why)), -1);
    r = kx_handshake_genl_present(why, sizeof(why));
    assert_true(r == 0 || r == 1);
}

/* ---- issue 9: TLS_TX_MAX_PAYLOAD_LEN ---- */

static void test_tx_max_payload_set(void **state)
{
    (void)state;
    char why[256] = "";
    assert_int_equal(kx_ktls_set_tx_max_payload(5, 499, why, sizeof why), 0);
    assert_int_equal(fake.ncalls, 1);
    assert_int_equal(fake.calls[0].level, SOL_TLS);
    assert_int_equal(fake.calls[0].name, 5); /* TLS_TX_MAX_PAYLOAD_LEN in include/uapi/linux/tls.h */
    assert_int_equal(fake.calls[0].len, 2);  /* a u16 */
    uint16_t v;
    memcpy(&v, fake.calls[0].val, 2);
    assert_int_equal(v, 499);
    fake.fail_errno = ENOPROTOOPT;
    assert_int_equal(kx_ktls_set_tx_max_payload(5, 499, why, sizeof why), -1);
    assert_int_equal(errno, ENOPROTOOPT);
    assert_non_null(strstr(why, "6.19"));
}

static void test_tx_max_payload_probe(void **state)
{
    (void)state;
    char why[256] = "";
    memset(&kern, 0, sizeof(kern));
    kern.max_payload = 1;
    kx_ktls_set_setsockopt(fake_kernel);
    assert_int_equal(kx_ktls_tx_max_payload_supported(why, sizeof why), 1);
    kern.max_payload = 0;
    assert_int_equal(kx_ktls_tx_max_payload_supported(why, sizeof why), 1); /* kept */
    kx_ktls_tx_max_payload_forget();
    assert_int_equal(kx_ktls_tx_max_payload_supported(why, sizeof why), 0);
    assert_non_null(strstr(why, "TLS_TX_MAX_PAYLOAD_LEN"));
    kx_ktls_tx_max_payload_forget();
    kern.no_ulp = 1;
    assert_int_equal(kx_ktls_tx_max_payload_supported(why, sizeof why), -1);
    /* "Cannot tell" is kept too: no loopback sockets per connection (seccomp). */
    kern.no_ulp = 0;
    kern.max_payload = 1;
    assert_int_equal(kx_ktls_tx_max_payload_supported(why, sizeof why), -1);
    assert_non_null(strstr(why, "not usable"));
    kx_ktls_set_setsockopt(NULL);
}

/* A TLS 1.3 pair whose client asked for records of at most 499 content bytes
 * (record_size_limit 500), handshake done and quiet. */
static kxt_pair rsl_done_pair(void)
{
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("rsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_record_size_limit(cc, 500));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    return p;
}

static void test_ktls_start_record_size_limit(void **state)
{
    (void)state;
    char why[256];
    const int fd = 700;
    /* A kernel with the option: both directions in, TX told 499 after TLS_TX. */
    memset(&kern, 0, sizeof(kern));
    kern.max_payload = 1;
    kx_ktls_set_setsockopt(fake_kernel);
    kxt_pair p = rsl_done_pair();
    assert_int_equal(ktlsx_record_size_limit(p.s, KTLSX_TX), 499);
    why[0] = 0;
    assert_int_equal(ktlsx_ktls_start(p.s, fd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_int_equal(kern.max_payload_set[fd], 499);
    assert_int_equal(ktlsx_record_size_limit(p.s, KTLSX_TX), 499); /* still answered after the handoff */
    kxt_pair_free(&p);

    /* An older kernel: TX stays in user space (and obeys), RX goes in. */
    memset(&kern, 0, sizeof(kern));
    kx_ktls_set_setsockopt(fake_kernel); /* forgets the earlier answer */
    p = rsl_done_pair();
    why[0] = 0;
    assert_int_equal(ktlsx_ktls_start(p.s, fd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why), KTLSX_KTLS_RX);
    assert_non_null(strstr(why, "TX stays in user space"));
    assert_int_equal(kern.tx_set[fd], 0);
    uint8_t d[2000] = { 0 };
    assert_int_equal(ktlsx_write(p.s, d, sizeof d), 0);
    kxt_move_out(p.s, &p.s2c);
    assert_int_equal(kxt_count_records(&p.s2c), 5); /* 4 x 499 + 4 */
    for (size_t i = 0; i < 5; i++) {
        uint8_t type;
        size_t len;
        assert_true(kxt_record_offset(&p.s2c, i, &type, &len) >= 0);
        assert_true(len <= 499 + 1 + 16);
    }
    kxt_pair_free(&p);

    /* A kernel that takes TLS_TX, then refuses the limit on this socket: fail, never run unlimited. */
    memset(&kern, 0, sizeof(kern));
    kern.max_payload = 1;
    kern.max_payload_fail_fd = fd;
    kx_ktls_set_setsockopt(fake_kernel);
    p = rsl_done_pair();
    why[0] = 0;
    assert_int_equal(ktlsx_ktls_start(p.s, fd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why), -1);
    assert_non_null(strstr(why, "TLS_TX_MAX_PAYLOAD_LEN"));
    assert_non_null(strstr(ktlsx_error(p.s), "record_size_limit"));
    kxt_pair_free(&p);

    /* No limit negotiated: the option is never touched. */
    memset(&kern, 0, sizeof(kern));
    kx_ktls_set_setsockopt(fake_kernel);
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("rsa", NULL, NULL);
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_WANTED);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_settle(&p);
    assert_int_equal(ktlsx_ktls_start(p.s, fd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why),
                     KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_int_equal(kern.max_payload_set[fd], 0);
    kxt_pair_free(&p);
    kx_ktls_set_setsockopt(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout_every_suite, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_table_matches, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_tls13_aes128_bytes, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_unknown_suites_refused, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_install_errno_messages, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_ulp_errno_messages, setup_fake, teardown_fake),
        cmocka_unit_test_setup_teardown(test_install_pair_order, setup_fake, teardown_fake),
        cmocka_unit_test(test_ulp_real_socket),
        cmocka_unit_test(test_probe_all_supported),
        cmocka_unit_test(test_probe_old_kernel),
        cmocka_unit_test(test_probe_no_tls13),
        cmocka_unit_test(test_probe_no_ulp),
        cmocka_unit_test(test_rekey_supported_api),
        cmocka_unit_test(test_probe_text_every_kernel),
        cmocka_unit_test(test_probe_public_api),
        cmocka_unit_test(test_record_plumbing),
        cmocka_unit_test(test_genl_query),
        cmocka_unit_test_setup_teardown(test_tx_max_payload_set, setup_fake, teardown_fake),
        cmocka_unit_test(test_tx_max_payload_probe),
        cmocka_unit_test(test_ktls_start_record_size_limit),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
