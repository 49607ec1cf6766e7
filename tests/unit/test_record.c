/* Record layer tests: round trips for every suite, wire format, fragmentation,
 * the checks a peer's malformed records must trip, and RFC 8448 §3 known
 * answers (which pin the nonce/AAD construction against an independent
 * implementation rather than against ourselves). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "record/record.h"

#define assert_ok(expr)                                                          \
    do {                                                                         \
        kx_result r__ = (expr);                                                  \
        if (kx_failed(r__)) fail_msg("%s failed: %s", #expr, r__.reason);        \
    } while (0)

#define assert_alert(expr, alert_)                                               \
    do {                                                                         \
        kx_result r__ = (expr);                                                  \
        if (!kx_failed(r__)) fail_msg("%s unexpectedly succeeded", #expr);       \
        assert_int_equal(r__.alert, (alert_));                                   \
    } while (0)

/* Decode whitespace-separated hex into a fresh buffer. */
static uint8_t *unhex(const char *s, size_t *len)
{
    uint8_t *out = malloc(strlen(s) / 2 + 1);
    assert_non_null(out);
    size_t n = 0;
    int half = -1;
    for (; *s; s++) {
        int v;
        if (*s >= '0' && *s <= '9') v = *s - '0';
        else if (*s >= 'a' && *s <= 'f') v = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F') v = *s - 'A' + 10;
        else continue;
        if (half < 0) {
            half = v;
        } else {
            out[n++] = (uint8_t)(half << 4 | v);
            half = -1;
        }
    }
    assert_int_equal(half, -1);
    *len = n;
    return out;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 7);
}

static size_t be16(const uint8_t *p) { return ((size_t)p[0] << 8) | p[1]; }

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* A sender and a receiver holding the same keys. */
typedef struct {
    kx_record_dir tx, rx;
    const kx_suite *suite;
    uint8_t key[KX_MAX_KEY];
    uint8_t iv[KX_AEAD_NONCE];
} pair;

static void pair_init(pair *p, uint16_t suite_id)
{
    memset(p, 0, sizeof *p);
    p->suite = kx_suite_by_id(suite_id);
    assert_non_null(p->suite);
    fill(p->key, sizeof p->key, (uint8_t)suite_id);
    fill(p->iv, sizeof p->iv, (uint8_t)(suite_id >> 3));
    assert_ok(kx_record_set_keys(&p->tx, p->suite->version, p->suite, p->key, p->iv));
    assert_ok(kx_record_set_keys(&p->rx, p->suite->version, p->suite, p->key, p->iv));
}

static void pair_free(pair *p)
{
    kx_record_clear(&p->tx);
    kx_record_clear(&p->rx);
}

/* Read one record from the front of `b` (which starts at *off); checks the
 * header parses and returns the record's total length. */
static size_t next_record(const kx_buf *b, size_t off)
{
    uint8_t type;
    size_t body;
    assert_true(b->len - off >= KX_RECORD_HEADER);
    assert_ok(kx_record_header(b->data + off, &type, &body));
    assert_true(b->len - off >= KX_RECORD_HEADER + body);
    return KX_RECORD_HEADER + body;
}

/* Write `len` bytes, check the wire format of the single resulting record,
 * read it back and compare. */
static void roundtrip_one(pair *p, uint8_t type, size_t len)
{
    uint8_t *data = malloc(len ? len : 1);
    assert_non_null(data);
    fill(data, len, (uint8_t)(len + type));
    kx_buf out = { 0 };
    uint64_t seq = p->tx.seq;

    assert_ok(kx_record_write(&p->tx, type, data, len, &out));
    assert_int_equal(p->tx.seq, seq + 1);
    assert_int_equal(next_record(&out, 0), out.len);
    assert_int_equal(be16(out.data + 1), 0x0303);

    size_t body = be16(out.data + 3);
    if (p->suite->version == 0x0304) {
        assert_int_equal(out.data[0], KX_CT_APPLICATION_DATA);
        assert_int_equal(body, len + 1 + KX_AEAD_TAG);
    } else if (p->suite->fixed_iv_len == 4) {
        assert_int_equal(out.data[0], type);
        assert_int_equal(body, 8 + len + KX_AEAD_TAG);
        /* nonce_explicit is the sequence number. */
        assert_int_equal(be64(out.data + KX_RECORD_HEADER), seq);
    } else {
        assert_int_equal(out.data[0], type);
        assert_int_equal(body, len + KX_AEAD_TAG);
    }
    if (len > 0) /* Encrypted: the plaintext must not appear verbatim. */
        assert_true(memmem(out.data, out.len, data, len) == NULL || len < 4);

    uint8_t rtype;
    uint8_t *plain;
    size_t plain_len;
    assert_ok(kx_record_read(&p->rx, out.data, out.len, &rtype, &plain, &plain_len));
    assert_int_equal(rtype, type);
    assert_int_equal(plain_len, len);
    assert_true(plain >= out.data && plain + plain_len <= out.data + out.len);
    if (len) assert_memory_equal(plain, data, len);
    assert_int_equal(p->rx.seq, p->tx.seq);

    kx_buf_free(&out);
    free(data);
}

static void test_roundtrip_every_suite(void **state)
{
    size_t count;
    const kx_suite *all = kx_suites_all(&count);
    int tls13 = 0, tls12_gcm = 0, tls12_chacha = 0;
    for (size_t i = 0; i < count; i++) {
        pair p;
        pair_init(&p, all[i].id);
        if (all[i].version == 0x0304) tls13++;
        else if (all[i].aead == KX_AEAD_CHACHA20_POLY1305) tls12_chacha++;
        else tls12_gcm++;

        roundtrip_one(&p, KX_CT_HANDSHAKE, 100);
        roundtrip_one(&p, KX_CT_APPLICATION_DATA, 0);
        roundtrip_one(&p, KX_CT_ALERT, 2);
        roundtrip_one(&p, KX_CT_APPLICATION_DATA, KX_MAX_PLAINTEXT);
        roundtrip_one(&p, KX_CT_APPLICATION_DATA, 1);
        pair_free(&p);
    }
    assert_true(tls13 >= 3);
    assert_true(tls12_gcm >= 1);
    assert_true(tls12_chacha >= 1);
}

/* Same plaintext twice must not give the same ciphertext: the nonce moves. */
static void test_nonce_advances(void **state)
{
    static const uint16_t ids[] = { 0x1301, 0xC02F, 0xCCA8 };
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        pair p;
        if (!kx_suite_by_id(ids[i])) continue;
        pair_init(&p, ids[i]);
        const uint8_t msg[32] = { 1, 2, 3 };
        kx_buf a = { 0 }, b = { 0 };
        assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &a));
        assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &b));
        assert_int_equal(a.len, b.len);
        assert_memory_not_equal(a.data + a.len - 48, b.data + b.len - 48, 48);
        kx_buf_free(&a);
        kx_buf_free(&b);
        pair_free(&p);
    }
}

static void fragment_and_reassemble(kx_record_dir *tx, kx_record_dir *rx)
{
    enum { N = 40000 };
    uint8_t *data = malloc(N);
    assert_non_null(data);
    fill(data, N, 5);
    kx_buf out = { 0 };
    assert_ok(kx_record_write(tx, KX_CT_HANDSHAKE, data, N, &out));
    assert_int_equal(tx->seq, rx->seq + (tx->active ? 3 : 0));

    static const size_t sizes[] = { 16384, 16384, N - 2 * 16384 };
    size_t off = 0, got = 0;
    for (int i = 0; i < 3; i++) {
        size_t rl = next_record(&out, off);
        uint8_t type;
        uint8_t *plain;
        size_t plain_len;
        assert_ok(kx_record_read(rx, out.data + off, rl, &type, &plain, &plain_len));
        assert_int_equal(type, KX_CT_HANDSHAKE);
        assert_int_equal(plain_len, sizes[i]);
        assert_memory_equal(plain, data + got, plain_len);
        got += plain_len;
        off += rl;
    }
    assert_int_equal(off, out.len);
    assert_int_equal(got, N);
    kx_buf_free(&out);
    free(data);
}

static void test_fragmentation(void **state)
{
    kx_record_dir tx = { 0 }, rx = { 0 };
    fragment_and_reassemble(&tx, &rx); /* plaintext records */

    pair p;
    pair_init(&p, 0x1301);
    fragment_and_reassemble(&p.tx, &p.rx);
    pair_free(&p);

    pair_init(&p, 0xC02F);
    fragment_and_reassemble(&p.tx, &p.rx);
    pair_free(&p);
}

/* Exactly 2^14 bytes is one record, 2^14 + 1 is two. */
static void test_fragment_boundary(void **state)
{
    uint8_t *data = calloc(1, KX_MAX_PLAINTEXT + 1);
    assert_non_null(data);
    kx_record_dir d = { 0 };
    kx_buf out = { 0 };
    assert_ok(kx_record_write(&d, KX_CT_APPLICATION_DATA, data, KX_MAX_PLAINTEXT, &out));
    assert_int_equal(out.len, KX_RECORD_HEADER + KX_MAX_PLAINTEXT);
    kx_buf_reset(&out);
    assert_ok(kx_record_write(&d, KX_CT_APPLICATION_DATA, data, KX_MAX_PLAINTEXT + 1, &out));
    assert_int_equal(out.len, 2 * KX_RECORD_HEADER + KX_MAX_PLAINTEXT + 1);
    assert_int_equal(next_record(&out, 0), KX_RECORD_HEADER + KX_MAX_PLAINTEXT);
    kx_buf_free(&out);
    free(data);
}

static void test_plaintext_write_format(void **state)
{
    kx_record_dir d = { 0 };
    kx_buf out = { 0 };
    const uint8_t hs[3] = { 0xaa, 0xbb, 0xcc };
    assert_ok(kx_record_write(&d, KX_CT_HANDSHAKE, hs, sizeof hs, &out));
    const uint8_t want[] = { 0x16, 0x03, 0x03, 0x00, 0x03, 0xaa, 0xbb, 0xcc };
    assert_int_equal(out.len, sizeof want);
    assert_memory_equal(out.data, want, sizeof want);
    assert_int_equal(d.seq, 0);

    /* Empty data: one empty record for application data, refused otherwise. */
    kx_buf_reset(&out);
    assert_ok(kx_record_write(&d, KX_CT_APPLICATION_DATA, NULL, 0, &out));
    assert_int_equal(out.len, KX_RECORD_HEADER);
    assert_alert(kx_record_write(&d, KX_CT_HANDSHAKE, NULL, 0, &out), KX_ALERT_INTERNAL_ERROR);
    assert_alert(kx_record_write(&d, 24, hs, 1, &out), KX_ALERT_INTERNAL_ERROR);
    assert_int_equal(out.len, KX_RECORD_HEADER);
    kx_buf_free(&out);
}

/* Flip one bit at `pos` (counted from the end when from_end) and expect bad_record_mac. */
static void tamper_case(uint16_t suite_id, size_t pos, int from_end)
{
    pair p;
    if (!kx_suite_by_id(suite_id)) return;
    pair_init(&p, suite_id);
    const uint8_t msg[40] = "attack at dawn";
    kx_buf out = { 0 };
    assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &out));
    assert_true(pos < out.len);
    out.data[from_end ? out.len - 1 - pos : pos] ^= 0x01;
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    assert_alert(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len),
                 KX_ALERT_BAD_RECORD_MAC);
    kx_buf_free(&out);
    pair_free(&p);
}

static void test_tamper(void **state)
{
    size_t count;
    const kx_suite *all = kx_suites_all(&count);
    for (size_t i = 0; i < count; i++) {
        tamper_case(all[i].id, 5, 0);      /* first body byte (1.2 GCM: nonce_explicit) */
        tamper_case(all[i].id, 5 + 20, 0); /* ciphertext */
        tamper_case(all[i].id, 0, 1);      /* last tag byte */
        tamper_case(all[i].id, 16, 1);     /* 1.3: the inner content type byte */
    }
    /* TLS 1.3: the header is the AAD; TLS 1.2: the type is in the AAD. */
    tamper_case(0x1301, 2, 0);
    if (kx_suite_by_id(0xC02F)) {
        pair p;
        pair_init(&p, 0xC02F);
        kx_buf out = { 0 };
        const uint8_t msg[8] = { 0 };
        assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &out));
        out.data[0] = KX_CT_HANDSHAKE;
        uint8_t type;
        uint8_t *plain;
        size_t plain_len;
        assert_alert(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len),
                     KX_ALERT_BAD_RECORD_MAC);
        kx_buf_free(&out);
        pair_free(&p);
    }
}

static void test_wrong_seq(void **state)
{
    size_t count;
    const kx_suite *all = kx_suites_all(&count);
    for (size_t i = 0; i < count; i++) {
        pair p;
        pair_init(&p, all[i].id);
        const uint8_t msg[16] = "hello";
        kx_buf r0 = { 0 }, r1 = { 0 };
        assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &r0));
        assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &r1));
        uint8_t type;
        uint8_t *plain;
        size_t plain_len;
        uint8_t *copy = malloc(r0.len);
        assert_non_null(copy);
        memcpy(copy, r0.data, r0.len);
        /* Record 1 presented first (a dropped or reordered record). */
        assert_alert(kx_record_read(&p.rx, r1.data, r1.len, &type, &plain, &plain_len),
                     KX_ALERT_BAD_RECORD_MAC);
        /* A failed open does not advance seq: record 0 still opens. */
        assert_int_equal(p.rx.seq, 0);
        assert_ok(kx_record_read(&p.rx, r0.data, r0.len, &type, &plain, &plain_len));
        /* Replay of record 0 at seq 1. */
        assert_alert(kx_record_read(&p.rx, copy, r0.len, &type, &plain, &plain_len),
                     KX_ALERT_BAD_RECORD_MAC);
        free(copy);
        kx_buf_free(&r0);
        kx_buf_free(&r1);
        pair_free(&p);
    }
}

static void test_header(void **state)
{
    uint8_t type;
    size_t len;
    uint8_t h[5] = { 0x16, 0x03, 0x03, 0x01, 0x00 };
    assert_ok(kx_record_header(h, &type, &len));
    assert_int_equal(type, KX_CT_HANDSHAKE);
    assert_int_equal(len, 256);

    h[2] = 0x01; /* first ClientHello's 0x0301 */
    assert_ok(kx_record_header(h, &type, &len));

    h[0] = 19;
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_UNEXPECTED_MESSAGE);
    h[0] = 24;
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_UNEXPECTED_MESSAGE);
    h[0] = 0x80; /* SSLv2-style */
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_UNEXPECTED_MESSAGE);
    h[0] = 0x17;

    h[1] = 0x02;
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_PROTOCOL_VERSION);
    h[1] = 0x04;
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_PROTOCOL_VERSION);
    h[1] = 0x03;

    h[3] = (uint8_t)(KX_MAX_CIPHERTEXT >> 8);
    h[4] = (uint8_t)KX_MAX_CIPHERTEXT;
    assert_ok(kx_record_header(h, &type, &len));
    assert_int_equal(len, KX_MAX_CIPHERTEXT);
    h[4] = (uint8_t)(KX_MAX_CIPHERTEXT + 1);
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_RECORD_OVERFLOW);
    h[3] = h[4] = 0xff;
    assert_alert(kx_record_header(h, &type, &len), KX_ALERT_RECORD_OVERFLOW);

    /* Empty records: application data only; an empty CCS, alert or
     * handshake fragment is an unexpected message, not a decoding error
     * (RFC 8446 §5, §5.1). */
    h[3] = h[4] = 0;
    assert_ok(kx_record_header(h, &type, &len));
    assert_int_equal(len, 0);
    for (uint8_t t = 20; t <= 22; t++) {
        h[0] = t;
        assert_alert(kx_record_header(h, &type, &len), KX_ALERT_UNEXPECTED_MESSAGE);
    }
}

static void test_plaintext_read(void **state)
{
    kx_record_dir d = { 0 };
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    uint8_t rec[5 + 4] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };
    assert_ok(kx_record_read(&d, rec, 7, &type, &plain, &plain_len));
    assert_int_equal(type, KX_CT_ALERT);
    assert_int_equal(plain_len, 2);
    assert_ptr_equal(plain, rec + 5);
    assert_int_equal(d.seq, 0);

    /* rec_len must match the header exactly. */
    assert_alert(kx_record_read(&d, rec, 8, &type, &plain, &plain_len), KX_ALERT_INTERNAL_ERROR);
    rec[0] = 0x99;
    assert_alert(kx_record_read(&d, rec, 7, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* A plaintext record longer than 2^14 is record_overflow even though the
     * header allows 2^14 + 2048 for TLS 1.2 ciphertext. */
    size_t n = KX_MAX_PLAINTEXT + 1;
    uint8_t *big = calloc(1, 5 + n);
    assert_non_null(big);
    big[0] = 0x16;
    big[1] = big[2] = 0x03;
    big[3] = (uint8_t)(n >> 8);
    big[4] = (uint8_t)n;
    assert_alert(kx_record_read(&d, big, 5 + n, &type, &plain, &plain_len), KX_ALERT_RECORD_OVERFLOW);
    n = KX_MAX_PLAINTEXT;
    big[3] = (uint8_t)(n >> 8);
    big[4] = (uint8_t)n;
    assert_ok(kx_record_read(&d, big, 5 + n, &type, &plain, &plain_len));
    assert_int_equal(plain_len, KX_MAX_PLAINTEXT);
    free(big);
}

/* Seal a hand-built TLS 1.3 record (inner plaintext given verbatim) with the
 * AEAD directly, so the reader sees padding and types our writer never makes. */
static size_t seal13(const pair *p, uint64_t seq, const uint8_t *inner, size_t inner_len, uint8_t *rec)
{
    kx_aead *a;
    assert_ok(kx_aead_new(&a, p->suite->aead, p->key, p->suite->key_len));
    uint8_t nonce[KX_AEAD_NONCE];
    memcpy(nonce, p->iv, sizeof nonce);
    for (int i = 0; i < 8; i++) nonce[4 + i] ^= (uint8_t)(seq >> (56 - 8 * i));
    size_t body = inner_len + KX_AEAD_TAG;
    rec[0] = KX_CT_APPLICATION_DATA;
    rec[1] = rec[2] = 0x03;
    rec[3] = (uint8_t)(body >> 8);
    rec[4] = (uint8_t)body;
    assert_ok(kx_aead_seal(a, nonce, rec, 5, inner, inner_len, rec + 5));
    kx_aead_free(a);
    return 5 + body;
}

static void test_tls13_padding(void **state)
{
    pair p;
    pair_init(&p, 0x1303);
    uint8_t *inner = calloc(1, KX_MAX_PLAINTEXT + 2);
    uint8_t *rec = malloc(5 + KX_MAX_PLAINTEXT + 2 + KX_AEAD_TAG);
    assert_non_null(inner);
    assert_non_null(rec);
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;

    /* "hello" || handshake || 100 zeros. Zeros inside the content stay. */
    memcpy(inner, "he\0lo", 5);
    inner[5] = KX_CT_HANDSHAKE;
    size_t rl = seal13(&p, 0, inner, 5 + 1 + 100, rec);
    assert_ok(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len));
    assert_int_equal(type, KX_CT_HANDSHAKE);
    assert_int_equal(plain_len, 5);
    assert_memory_equal(plain, "he\0lo", 5);
    assert_int_equal(p.rx.seq, 1);

    /* Pure padding after an empty application_data content is legal. */
    memset(inner, 0, 64);
    inner[0] = KX_CT_APPLICATION_DATA;
    rl = seal13(&p, 1, inner, 64, rec);
    assert_ok(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len));
    assert_int_equal(type, KX_CT_APPLICATION_DATA);
    assert_int_equal(plain_len, 0);

    /* Inner plaintext of exactly 2^14 + 1 (mostly padding) is the maximum ... */
    memset(inner, 0, KX_MAX_PLAINTEXT + 2);
    inner[0] = 'x';
    inner[1] = KX_CT_APPLICATION_DATA;
    rl = seal13(&p, 2, inner, KX_MAX_PLAINTEXT + 1, rec);
    assert_ok(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len));
    assert_int_equal(plain_len, 1);

    /* ... one more byte is record_overflow, padding or not. */
    rl = seal13(&p, 3, inner, KX_MAX_PLAINTEXT + 2, rec);
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_RECORD_OVERFLOW);

    free(inner);
    free(rec);
    pair_free(&p);
}

static void test_tls13_bad_inner(void **state)
{
    pair p;
    pair_init(&p, 0x1301);
    uint8_t inner[32] = { 0 };
    uint8_t rec[5 + 32 + KX_AEAD_TAG];
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    size_t rl;

    /* All zeros: no content type at all. */
    rl = seal13(&p, 0, inner, 32, rec);
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* Empty inner plaintext (the record is only a tag). */
    p.rx.seq = 0;
    rl = seal13(&p, 0, inner, 0, rec);
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* A protected change_cipher_spec is forbidden. */
    p.rx.seq = 0;
    inner[0] = 0x01;
    inner[1] = KX_CT_CHANGE_CIPHER_SPEC;
    rl = seal13(&p, 0, inner, 2, rec);
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* Unknown inner type. */
    p.rx.seq = 0;
    inner[1] = 0x42;
    rl = seal13(&p, 0, inner, 2, rec);
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* Empty handshake content (type byte only). */
    p.rx.seq = 0;
    inner[0] = KX_CT_HANDSHAKE;
    rl = seal13(&p, 0, inner, 1, rec);
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* Shorter than a tag. */
    p.rx.seq = 0;
    uint8_t tiny[5 + 15] = { 0x17, 0x03, 0x03, 0x00, 15 };
    assert_alert(kx_record_read(&p.rx, tiny, sizeof tiny, &type, &plain, &plain_len), KX_ALERT_BAD_RECORD_MAC);
    uint8_t empty[5] = { 0x17, 0x03, 0x03, 0x00, 0x00 };
    assert_alert(kx_record_read(&p.rx, empty, sizeof empty, &type, &plain, &plain_len), KX_ALERT_BAD_RECORD_MAC);
    pair_free(&p);
}

static void test_tls13_outer_types(void **state)
{
    pair p;
    pair_init(&p, 0x1301);
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;

    /* Middlebox-compat CCS: plaintext, passes through, seq untouched. */
    uint8_t ccs[6] = { 0x14, 0x03, 0x03, 0x00, 0x01, 0x01 };
    assert_ok(kx_record_read(&p.rx, ccs, sizeof ccs, &type, &plain, &plain_len));
    assert_int_equal(type, KX_CT_CHANGE_CIPHER_SPEC);
    assert_int_equal(plain_len, 1);
    assert_int_equal(plain[0], 0x01);
    assert_int_equal(p.rx.seq, 0);

    ccs[5] = 0x02;
    assert_alert(kx_record_read(&p.rx, ccs, sizeof ccs, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);
    /* A length no CCS has: decode_error, decided before the contents (RFC 8446 §6.2). */
    uint8_t ccs2[7] = { 0x14, 0x03, 0x03, 0x00, 0x02, 0x01, 0x01 };
    assert_alert(kx_record_read(&p.rx, ccs2, sizeof ccs2, &type, &plain, &plain_len), KX_ALERT_DECODE_ERROR);

    /* Plaintext handshake or alert after keys are in use. */
    uint8_t hs[9] = { 0x16, 0x03, 0x03, 0x00, 0x04, 0x14, 0x00, 0x00, 0x00 };
    assert_alert(kx_record_read(&p.rx, hs, sizeof hs, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);
    uint8_t al[7] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };
    assert_alert(kx_record_read(&p.rx, al, sizeof al, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);

    /* Writing a CCS in TLS 1.3 produces the plaintext record, never a protected one. */
    kx_buf out = { 0 };
    const uint8_t one = 0x01;
    assert_ok(kx_record_write(&p.tx, KX_CT_CHANGE_CIPHER_SPEC, &one, 1, &out));
    const uint8_t want[] = { 0x14, 0x03, 0x03, 0x00, 0x01, 0x01 };
    assert_int_equal(out.len, sizeof want);
    assert_memory_equal(out.data, want, sizeof want);
    assert_int_equal(p.tx.seq, 0);
    kx_buf_free(&out);

    /* Ciphertext longer than 2^14 + 256 (allowed by the shared header check
     * for TLS 1.2) is record_overflow in TLS 1.3. */
    size_t n = KX_MAX_PLAINTEXT + 257;
    uint8_t *big = calloc(1, 5 + n);
    assert_non_null(big);
    big[0] = 0x17;
    big[1] = big[2] = 0x03;
    big[3] = (uint8_t)(n >> 8);
    big[4] = (uint8_t)n;
    assert_alert(kx_record_read(&p.rx, big, 5 + n, &type, &plain, &plain_len), KX_ALERT_RECORD_OVERFLOW);
    free(big);
    pair_free(&p);
}

static void test_tls12_lengths(void **state)
{
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    uint8_t rec[5 + 40] = { 0 };
    rec[0] = 0x17;
    rec[1] = rec[2] = 0x03;

    pair p;
    if (kx_suite_by_id(0xC02F)) {
        pair_init(&p, 0xC02F);
        rec[4] = 8 + 16 - 1;
        assert_alert(kx_record_read(&p.rx, rec, 5 + rec[4], &type, &plain, &plain_len), KX_ALERT_BAD_RECORD_MAC);
        rec[4] = 8 + 16; /* long enough; the (zero) tag is wrong */
        assert_alert(kx_record_read(&p.rx, rec, 5 + rec[4], &type, &plain, &plain_len), KX_ALERT_BAD_RECORD_MAC);
        pair_free(&p);
    }
    if (kx_suite_by_id(0xCCA8)) {
        pair_init(&p, 0xCCA8);
        rec[4] = 16 - 1;
        assert_alert(kx_record_read(&p.rx, rec, 5 + rec[4], &type, &plain, &plain_len), KX_ALERT_BAD_RECORD_MAC);
        pair_free(&p);
    }

    /* TLS 1.2 GCM: up to 2^14 plaintext in a record; 2^14 + 1 is record_overflow
     * before any decryption. */
    if (kx_suite_by_id(0xC02F)) {
        pair_init(&p, 0xC02F);
        size_t n = 8 + KX_MAX_PLAINTEXT + 1 + 16;
        uint8_t *big = calloc(1, 5 + n);
        assert_non_null(big);
        big[0] = 0x17;
        big[1] = big[2] = 0x03;
        big[3] = (uint8_t)(n >> 8);
        big[4] = (uint8_t)n;
        assert_alert(kx_record_read(&p.rx, big, 5 + n, &type, &plain, &plain_len), KX_ALERT_RECORD_OVERFLOW);
        free(big);
        pair_free(&p);
    }

    /* An empty TLS 1.2 handshake fragment, properly sealed, is still refused:
     * build it with the AEAD since our writer will not. */
    if (kx_suite_by_id(0xCCA8)) {
        pair_init(&p, 0xCCA8);
        kx_aead *a;
        assert_ok(kx_aead_new(&a, p.suite->aead, p.key, p.suite->key_len));
        uint8_t aad[13] = { 0, 0, 0, 0, 0, 0, 0, 0, KX_CT_HANDSHAKE, 0x03, 0x03, 0, 0 };
        uint8_t r[5 + 16] = { 0x16, 0x03, 0x03, 0x00, 16 };
        assert_ok(kx_aead_seal(a, p.iv, aad, sizeof aad, r + 5, 0, r + 5)); /* seq 0: nonce = iv */
        kx_aead_free(a);
        assert_alert(kx_record_read(&p.rx, r, sizeof r, &type, &plain, &plain_len), KX_ALERT_UNEXPECTED_MESSAGE);
        pair_free(&p);
    }
}

static void test_seq_exhaustion(void **state)
{
    pair p;
    pair_init(&p, 0x1301);
    kx_buf out = { 0 };
    const uint8_t msg[4] = "ping";

    p.tx.seq = UINT64_MAX - 1;
    assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &out));
    assert_int_equal(p.tx.seq, UINT64_MAX);
    size_t len = out.len;
    assert_alert(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, msg, sizeof msg, &out), KX_ALERT_INTERNAL_ERROR);
    assert_int_equal(out.len, len);

    /* A multi-record write that runs out part-way appends nothing and leaves seq. */
    uint8_t *big = calloc(1, 20000);
    assert_non_null(big);
    p.tx.seq = UINT64_MAX - 1;
    assert_alert(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, big, 20000, &out), KX_ALERT_INTERNAL_ERROR);
    assert_int_equal(out.len, len);
    assert_int_equal(p.tx.seq, UINT64_MAX - 1);
    free(big);

    /* The reader refuses to use the last sequence number too. */
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    p.rx.seq = UINT64_MAX;
    assert_alert(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len), KX_ALERT_INTERNAL_ERROR);
    p.rx.seq = UINT64_MAX - 1;
    assert_ok(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len));
    assert_memory_equal(plain, msg, sizeof msg);
    kx_buf_free(&out);
    pair_free(&p);
}

static void test_set_keys_and_clear(void **state)
{
    const kx_suite *s13 = kx_suite_by_id(0x1302);
    assert_non_null(s13);
    uint8_t key[32], iv[12];
    fill(key, sizeof key, 1);
    fill(iv, sizeof iv, 2);
    kx_record_dir d = { 0 };
    assert_ok(kx_record_set_keys(&d, 0x0304, s13, key, iv));
    assert_true(d.active);
    assert_non_null(d.aead);
    assert_memory_equal(d.key, key, 32);
    assert_memory_equal(d.iv, iv, 12);
    assert_int_equal(d.seq, 0);

    /* Re-keying resets seq. */
    d.seq = 42;
    assert_ok(kx_record_set_keys(&d, 0x0304, s13, key, iv));
    assert_int_equal(d.seq, 0);

    /* TLS 1.2 GCM keeps only the 4-byte salt. */
    const kx_suite *gcm12 = kx_suite_by_id(0xC02F);
    if (gcm12) {
        assert_ok(kx_record_set_keys(&d, 0x0303, gcm12, key, iv));
        assert_memory_equal(d.iv, iv, 4);
        static const uint8_t zero[8];
        assert_memory_equal(d.iv + 4, zero, 8);
        assert_memory_equal(d.key, key, 16);
        assert_memory_equal(d.key + 16, zero, 8);
    }

    kx_record_clear(&d);
    assert_false(d.active);
    assert_null(d.aead);
    static const uint8_t zeros[KX_MAX_KEY];
    assert_memory_equal(d.key, zeros, sizeof d.key);
    assert_memory_equal(d.iv, zeros, sizeof d.iv);

    /* Version and suite must agree; a failure leaves the direction inactive. */
    assert_ok(kx_record_set_keys(&d, 0x0304, s13, key, iv));
    assert_alert(kx_record_set_keys(&d, 0x0303, s13, key, iv), KX_ALERT_INTERNAL_ERROR);
    assert_false(d.active);
    assert_null(d.aead);
    assert_alert(kx_record_set_keys(&d, 0x0302, s13, key, iv), KX_ALERT_INTERNAL_ERROR);
    kx_record_clear(&d); /* idempotent */
}

/* TLS 1.2 has no published record vectors, so rebuild the record here
 * straight from the RFC text (RFC 5246 §6.2.3.3, RFC 5288 §3, RFC 7905 §2)
 * at a sequence number whose bytes are all distinct, and compare with the
 * writer byte for byte: catches byte-order and field-order slips that a
 * write/read round trip through the same code cannot. */
static void tls12_construction(uint16_t suite_id)
{
    pair p;
    if (!kx_suite_by_id(suite_id)) return;
    pair_init(&p, suite_id);
    const uint64_t seq = 0x0102030405060708u;
    p.tx.seq = seq;
    const uint8_t msg[21] = "RFC 5288 construction";
    kx_buf out = { 0 };
    assert_ok(kx_record_write(&p.tx, KX_CT_HANDSHAKE, msg, sizeof msg, &out));

    const uint8_t seqb[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    uint8_t nonce[12];
    int gcm = p.suite->aead != KX_AEAD_CHACHA20_POLY1305;
    if (gcm) { /* salt || nonce_explicit, nonce_explicit = seq */
        memcpy(nonce, p.iv, 4);
        memcpy(nonce + 4, seqb, 8);
    } else { /* iv XOR (0^32 || seq) */
        memcpy(nonce, p.iv, 12);
        for (int i = 0; i < 8; i++) nonce[4 + i] ^= seqb[i];
    }
    uint8_t aad[13];
    memcpy(aad, seqb, 8);
    aad[8] = KX_CT_HANDSHAKE;
    aad[9] = 0x03;
    aad[10] = 0x03;
    aad[11] = 0;
    aad[12] = sizeof msg;

    uint8_t want[5 + 8 + sizeof msg + 16];
    size_t body = (gcm ? 8 : 0) + sizeof msg + 16;
    want[0] = KX_CT_HANDSHAKE;
    want[1] = 0x03;
    want[2] = 0x03;
    want[3] = 0;
    want[4] = (uint8_t)body;
    if (gcm) memcpy(want + 5, seqb, 8);
    kx_aead *a;
    assert_ok(kx_aead_new(&a, p.suite->aead, p.key, p.suite->key_len));
    assert_ok(kx_aead_seal(a, nonce, aad, sizeof aad, msg, sizeof msg, want + 5 + (gcm ? 8 : 0)));
    kx_aead_free(a);
    assert_int_equal(out.len, 5 + body);
    assert_memory_equal(out.data, want, 5 + body);

    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    p.rx.seq = seq;
    assert_ok(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len));
    assert_int_equal(type, KX_CT_HANDSHAKE);
    assert_memory_equal(plain, msg, sizeof msg);
    kx_buf_free(&out);
    pair_free(&p);
}

static void test_tls12_construction(void **state)
{
    size_t count;
    const kx_suite *all = kx_suites_all(&count);
    int n = 0;
    for (size_t i = 0; i < count; i++) {
        if (all[i].version != 0x0303) continue;
        tls12_construction(all[i].id);
        n++;
    }
    assert_true(n >= 2);
}

/* ---- RFC 8448 §3 (Simple 1-RTT Handshake), TLS_AES_128_GCM_SHA256 ---- */

static const char rfc8448_server_hs_record[] =
    "17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07"
    "cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e"
    "df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca"
    "07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78"
    "b1 11 b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61"
    "34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b"
    "d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79"
    "02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9"
    "d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c"
    "7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e"
    "d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3"
    "60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92"
    "8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82"
    "04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94"
    "5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8"
    "94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68"
    "45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5 63"
    "aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f"
    "44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26"
    "4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26"
    "f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3"
    "6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31"
    "7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64"
    "7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e"
    "1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24"
    "3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da"
    "8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c"
    "f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4"
    "61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c"
    "74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be"
    "5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18"
    "a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb"
    "99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb"
    "56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59"
    "77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14"
    "63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38"
    "eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97"
    "8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84"
    "5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78"
    "40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5"
    "d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6 31"
    "ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e"
    "75 0e dc 53 37 0d 2b";

/* EncryptedExtensions || Certificate || CertificateVerify || Finished. */
static const char rfc8448_server_hs_plain[] =
    /* EncryptedExtensions */
    "08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00"
    "01 01 01 02 01 03 01 04 00 1c 00 02 40 01 00 00 00 00"
    /* Certificate */
    "0b 00 01 b9 00 00 01 b5 00 01 b0 30 82 01 ac 30 82 01 15 a0 03 02"
    "01 02 02 01 02 30 0d 06 09 2a 86 48 86 f7 0d 01 01 0b 05 00 30 0e"
    "31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 1e 17 0d 31 36 30 37"
    "33 30 30 31 32 33 35 39 5a 17 0d 32 36 30 37 33 30 30 31 32 33 35"
    "39 5a 30 0e 31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 81 9f 30"
    "0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00 30 81 89 02"
    "81 81 00 b4 bb 49 8f 82 79 30 3d 98 08 36 39 9b 36 c6 98 8c 0c 68"
    "de 55 e1 bd b8 26 d3 90 1a 24 61 ea fd 2d e4 9a 91 d0 15 ab bc 9a"
    "95 13 7a ce 6c 1a f1 9e aa 6a f9 8c 7c ed 43 12 09 98 e1 87 a8 0e"
    "e0 cc b0 52 4b 1b 01 8c 3e 0b 63 26 4d 44 9a 6d 38 e2 2a 5f da 43"
    "08 46 74 80 30 53 0e f0 46 1c 8c a9 d9 ef bf ae 8e a6 d1 d0 3e 2b"
    "d1 93 ef f0 ab 9a 80 02 c4 74 28 a6 d3 5a 8d 88 d7 9f 7f 1e 3f 02"
    "03 01 00 01 a3 1a 30 18 30 09 06 03 55 1d 13 04 02 30 00 30 0b 06"
    "03 55 1d 0f 04 04 03 02 05 a0 30 0d 06 09 2a 86 48 86 f7 0d 01 01"
    "0b 05 00 03 81 81 00 85 aa d2 a0 e5 b9 27 6b 90 8c 65 f7 3a 72 67"
    "17 06 18 a5 4c 5f 8a 7b 33 7d 2d f7 a5 94 36 54 17 f2 ea e8 f8 a5"
    "8c 8f 81 72 f9 31 9c f3 6b 7f d6 c5 5b 80 f2 1a 03 01 51 56 72 60"
    "96 fd 33 5e 5e 67 f2 db f1 02 70 2e 60 8c ca e6 be c1 fc 63 a4 2a"
    "99 be 5c 3e b7 10 7c 3c 54 e9 b9 eb 2b d5 20 3b 1c 3b 84 e0 a8 b2"
    "f7 59 40 9b a3 ea c9 d9 1d 40 2d cc 0c c8 f8 96 12 29 ac 91 87 b4"
    "2b 4d e1 00 00"
    /* CertificateVerify */
    "0f 00 00 84 08 04 00 80 5a 74 7c 5d 88 fa 9b d2 e5 5a b0 85 a6 10"
    "15 b7 21 1f 82 4c d4 84 14 5a b3 ff 52 f1 fd a8 47 7b 0b 7a bc 90"
    "db 78 e2 d3 3a 5c 14 1a 07 86 53 fa 6b ef 78 0c 5e a2 48 ee aa a7"
    "85 c4 f3 94 ca b6 d3 0b be 8d 48 59 ee 51 1f 60 29 57 b1 54 11 ac"
    "02 76 71 45 9e 46 44 5c 9e a5 8c 18 1e 81 8e 95 b8 c3 fb 0b f3 27"
    "84 09 d3 be 15 2a 3d a5 04 3e 06 3d da 65 cd f5 ae a2 0d 53 df ac"
    "d4 2f 74 f3"
    /* Finished */
    "14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4"
    "2c 30 95 72 cb 7f ff ee 54 54 b7 8f 07 18";

static void rfc8448_pair(pair *p, const char *key_hex, const char *iv_hex)
{
    memset(p, 0, sizeof *p);
    p->suite = kx_suite_by_id(0x1301);
    assert_non_null(p->suite);
    size_t kl, il;
    uint8_t *k = unhex(key_hex, &kl), *iv = unhex(iv_hex, &il);
    assert_int_equal(kl, 16);
    assert_int_equal(il, 12);
    memcpy(p->key, k, kl);
    memcpy(p->iv, iv, il);
    free(k);
    free(iv);
    assert_ok(kx_record_set_keys(&p->tx, 0x0304, p->suite, p->key, p->iv));
    assert_ok(kx_record_set_keys(&p->rx, 0x0304, p->suite, p->key, p->iv));
}

/* Opening the RFC's record must give its plaintext, and sealing that
 * plaintext at the same seq must give the RFC's record byte for byte. */
static void kat(pair *p, uint64_t seq, const char *record_hex, uint8_t want_type, const uint8_t *want, size_t want_len)
{
    size_t rl;
    uint8_t *rec = unhex(record_hex, &rl);
    uint8_t *wire = malloc(rl);
    assert_non_null(wire);
    memcpy(wire, rec, rl);

    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    p->rx.seq = seq;
    assert_ok(kx_record_read(&p->rx, rec, rl, &type, &plain, &plain_len));
    assert_int_equal(type, want_type);
    assert_int_equal(plain_len, want_len);
    assert_memory_equal(plain, want, want_len);
    assert_int_equal(p->rx.seq, seq + 1);

    kx_buf out = { 0 };
    p->tx.seq = seq;
    assert_ok(kx_record_write(&p->tx, want_type, want, want_len, &out));
    assert_int_equal(out.len, rl);
    assert_memory_equal(out.data, wire, rl);

    kx_buf_free(&out);
    free(wire);
    free(rec);
}

static void test_rfc8448_server_handshake(void **state)
{
    pair p;
    rfc8448_pair(&p, "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc", "5d 31 3e b2 67 12 76 ee 13 00 0b 30");
    size_t n;
    uint8_t *want = unhex(rfc8448_server_hs_plain, &n);
    assert_int_equal(n, 0x2a2 - 16 - 1); /* record body minus tag and inner type */
    kat(&p, 0, rfc8448_server_hs_record, KX_CT_HANDSHAKE, want, n);
    free(want);
    pair_free(&p);
}

/* Server application data: the server's second record under its application
 * key (seq 1, after NewSessionTicket), so a broken iv XOR seq shows here. */
static void test_rfc8448_server_appdata_seq1(void **state)
{
    pair p;
    rfc8448_pair(&p, "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84");
    uint8_t want[50];
    for (int i = 0; i < 50; i++) want[i] = (uint8_t)i;
    kat(&p, 1,
        "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4"
        "a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df"
        "fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2"
        "ab f3 32 54 0d d0 32 e1 67 c2 95 5d",
        KX_CT_APPLICATION_DATA, want, sizeof want);

    /* The same record is not accepted at seq 0. */
    size_t rl;
    uint8_t *rec = unhex("17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4"
                         "a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df"
                         "fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2"
                         "ab f3 32 54 0d d0 32 e1 67 c2 95 5d", &rl);
    uint8_t type;
    uint8_t *plain;
    size_t plain_len;
    p.rx.seq = 0;
    assert_alert(kx_record_read(&p.rx, rec, rl, &type, &plain, &plain_len), KX_ALERT_BAD_RECORD_MAC);
    free(rec);
    pair_free(&p);
}

static void test_rfc8448_client_finished(void **state)
{
    pair p;
    rfc8448_pair(&p, "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f");
    size_t n;
    uint8_t *fin = unhex("14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03"
                         "9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed d5 ce 61", &n);
    kat(&p, 0,
        "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c"
        "56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac"
        "98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46",
        KX_CT_HANDSHAKE, fin, n);
    free(fin);
    pair_free(&p);
}

/* ---- record_size_limit (RFC 8449; issue 9) ---- */

/* TX: records are cut at max_plain (content bytes), whatever the version;
 * every record reads back and the stream reassembles. */
static void rsl_tx_one(uint16_t suite_id, uint16_t max_plain)
{
    pair p;
    pair_init(&p, suite_id);
    p.tx.max_plain = max_plain;
    size_t len = 3 * max_plain + 17;
    uint8_t *data = malloc(len), *got = malloc(len);
    assert_non_null(data);
    assert_non_null(got);
    fill(data, len, 9);
    kx_buf out = { 0 };
    assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, data, len, &out));
    size_t off = 0, n = 0, records = 0;
    while (off < out.len) {
        size_t rl = next_record(&out, off);
        uint8_t type, *plain;
        size_t plain_len;
        assert_ok(kx_record_read(&p.rx, out.data + off, rl, &type, &plain, &plain_len));
        assert_true(plain_len <= max_plain);
        memcpy(got + n, plain, plain_len);
        n += plain_len;
        off += rl;
        records++;
    }
    assert_int_equal(records, 4);
    assert_int_equal(n, len);
    assert_memory_equal(got, data, len);
    kx_buf_free(&out);
    free(data);
    free(got);
    pair_free(&p);
}

static void test_rsl_tx_cut(void **state)
{
    rsl_tx_one(0x1301, 63);   /* TLS 1.3, record_size_limit 64: 63 content bytes */
    rsl_tx_one(0x1303, 1000);
    rsl_tx_one(0xC02F, 64);   /* TLS 1.2 GCM */
    rsl_tx_one(0xCCA8, 4096); /* TLS 1.2 ChaCha20 */
    /* Plaintext records obey it too (a server's ServerHello after the client's limit). */
    kx_record_dir d = { 0 };
    d.max_plain = 100;
    uint8_t data[250] = { 0 };
    kx_buf out = { 0 };
    assert_ok(kx_record_write(&d, KX_CT_HANDSHAKE, data, sizeof data, &out));
    assert_int_equal(out.len, 3 * KX_RECORD_HEADER + sizeof data);
    assert_int_equal(next_record(&out, 0), KX_RECORD_HEADER + 100);
    kx_buf_free(&out);
}

/* The limit outlives new keys (TLS 1.3 handshake -> application keys, KeyUpdate). */
static void test_rsl_survives_set_keys(void **state)
{
    pair p;
    pair_init(&p, 0x1301);
    p.tx.max_plain = 200;
    p.rx.max_plain = 300;
    assert_ok(kx_record_set_keys(&p.tx, p.suite->version, p.suite, p.key, p.iv));
    assert_ok(kx_record_set_keys(&p.rx, p.suite->version, p.suite, p.key, p.iv));
    assert_int_equal(p.tx.max_plain, 200);
    assert_int_equal(p.rx.max_plain, 300);
    kx_record_clear(&p.tx);
    assert_int_equal(p.tx.max_plain, 0);
    pair_free(&p);
}

/* RX: a protected record over our own limit is record_overflow; exactly at it
 * is fine.  TLS 1.3 counts the inner plaintext (content + type + padding). */
static void rsl_rx_one(uint16_t suite_id, uint16_t limit_plain)
{
    pair p;
    pair_init(&p, suite_id);
    uint8_t data[600];
    fill(data, sizeof data, 3);
    kx_buf out = { 0 };
    uint8_t type, *plain;
    size_t plain_len;
    /* At the limit: accepted. */
    assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, data, limit_plain, &out));
    p.rx.max_plain = limit_plain;
    assert_ok(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len));
    assert_int_equal(plain_len, limit_plain);
    /* One byte over: refused. */
    kx_buf_reset(&out);
    assert_ok(kx_record_write(&p.tx, KX_CT_APPLICATION_DATA, data, (size_t)limit_plain + 1, &out));
    assert_alert(kx_record_read(&p.rx, out.data, out.len, &type, &plain, &plain_len), KX_ALERT_RECORD_OVERFLOW);
    kx_buf_free(&out);
    pair_free(&p);
}

static void test_rsl_rx_enforced(void **state)
{
    rsl_rx_one(0x1301, 63);
    rsl_rx_one(0x1302, 511);
    rsl_rx_one(0xC02F, 64);
    rsl_rx_one(0xCCA8, 512);
}

/* TLS 1.3 padding counts: content under the limit but padded over it is refused. */
static void test_rsl_rx_padding_counts(void **state)
{
    pair p;
    pair_init(&p, 0x1301);
    /* Build by hand: 50 content bytes + type + 20 zero bytes of padding = 71 inner bytes. */
    uint8_t rec[KX_RECORD_HEADER + 71 + KX_AEAD_TAG];
    rec[0] = KX_CT_APPLICATION_DATA;
    rec[1] = 3;
    rec[2] = 3;
    rec[3] = 0;
    rec[4] = (uint8_t)(71 + KX_AEAD_TAG);
    uint8_t *body = rec + KX_RECORD_HEADER;
    fill(body, 50, 1);
    body[50] = KX_CT_APPLICATION_DATA;
    memset(body + 51, 0, 20);
    uint8_t nonce[KX_AEAD_NONCE];
    memcpy(nonce, p.iv, sizeof nonce); /* seq 0: the static IV */
    assert_ok(kx_aead_seal(p.tx.aead, nonce, rec, KX_RECORD_HEADER, body, 71, body));
    uint8_t copy[sizeof rec];
    memcpy(copy, rec, sizeof rec);
    uint8_t type, *plain;
    size_t plain_len;
    p.rx.max_plain = 63; /* record_size_limit 64 < 71 */
    assert_alert(kx_record_read(&p.rx, rec, sizeof rec, &type, &plain, &plain_len), KX_ALERT_RECORD_OVERFLOW);
    /* Same record under a limit of 71 (max_plain 70): accepted, 50 content bytes. */
    pair_free(&p);
    pair_init(&p, 0x1301);
    p.rx.max_plain = 70;
    assert_ok(kx_record_read(&p.rx, copy, sizeof copy, &type, &plain, &plain_len));
    assert_int_equal(plain_len, 50);
    pair_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_suite),
        cmocka_unit_test(test_nonce_advances),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_fragment_boundary),
        cmocka_unit_test(test_plaintext_write_format),
        cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_wrong_seq),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_plaintext_read),
        cmocka_unit_test(test_tls13_padding),
        cmocka_unit_test(test_tls13_bad_inner),
        cmocka_unit_test(test_tls13_outer_types),
        cmocka_unit_test(test_tls12_lengths),
        cmocka_unit_test(test_tls12_construction),
        cmocka_unit_test(test_seq_exhaustion),
        cmocka_unit_test(test_set_keys_and_clear),
        cmocka_unit_test(test_rfc8448_server_handshake),
        cmocka_unit_test(test_rfc8448_server_appdata_seq1),
        cmocka_unit_test(test_rfc8448_client_finished),
        cmocka_unit_test(test_rsl_tx_cut),
        cmocka_unit_test(test_rsl_survives_set_keys),
        cmocka_unit_test(test_rsl_rx_enforced),
        cmocka_unit_test(test_rsl_rx_padding_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
