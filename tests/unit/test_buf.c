/* core/buf: the bounds-checked reader and the growable writer every message
 * parser and builder is made of.  Reader: every read type, truncation ->
 * decode_error, vectors with min/max, trailing bytes.  Writer: big-endian
 * integers, back-filled vector lengths for 1/2/3-byte prefixes, a vector too
 * long for its prefix, consume, and reserve growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

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
        assert_non_null(r__.reason);                                             \
    } while (0)

/* ------------------------------------------------------------------ reader */

static void test_read_integers(void **state)
{
    (void)state;
    static const uint8_t in[] = {
        0xab,                                           /* u8 */
        0x12, 0x34,                                     /* u16 */
        0x01, 0x02, 0x03,                               /* u24 */
        0xde, 0xad, 0xbe, 0xef,                         /* u32 */
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, /* u64 */
    };
    kx_reader r = kx_reader_of(in, sizeof in);
    uint8_t a;
    uint16_t b;
    uint32_t c, d;
    uint64_t e;
    assert_ok(kx_read_u8(&r, &a));
    assert_int_equal(a, 0xab);
    assert_int_equal(kx_reader_left(&r), sizeof in - 1);
    assert_ok(kx_read_u16(&r, &b));
    assert_int_equal(b, 0x1234);
    assert_ok(kx_read_u24(&r, &c));
    assert_int_equal(c, 0x010203);
    assert_ok(kx_read_u32(&r, &d));
    assert_int_equal(d, 0xdeadbeefu);
    assert_ok(kx_read_u64(&r, &e));
    assert_true(e == 0x0123456789abcdefull);
    assert_int_equal(kx_reader_left(&r), 0);
    assert_ok(kx_reader_done(&r));
    /* Nothing left: every read type fails with decode_error. */
    assert_alert(kx_read_u8(&r, &a), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_read_u16(&r, &b), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_read_u24(&r, &c), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_read_u32(&r, &d), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_read_u64(&r, &e), KX_ALERT_DECODE_ERROR);
}

/* Each integer read on one byte too few fails and does not move the reader. */
static void test_read_integers_truncated(void **state)
{
    (void)state;
    static const uint8_t in[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    uint16_t b;
    uint32_t c;
    uint64_t e;
    uint8_t a;
    kx_reader r = kx_reader_of(in, 0);
    assert_alert(kx_read_u8(&r, &a), KX_ALERT_DECODE_ERROR);
    r = kx_reader_of(in, 1);
    assert_alert(kx_read_u16(&r, &b), KX_ALERT_DECODE_ERROR);
    assert_int_equal(r.off, 0);
    r = kx_reader_of(in, 2);
    assert_alert(kx_read_u24(&r, &c), KX_ALERT_DECODE_ERROR);
    assert_int_equal(r.off, 0);
    r = kx_reader_of(in, 3);
    assert_alert(kx_read_u32(&r, &c), KX_ALERT_DECODE_ERROR);
    assert_int_equal(r.off, 0);
    r = kx_reader_of(in, 7);
    assert_alert(kx_read_u64(&r, &e), KX_ALERT_DECODE_ERROR);
    assert_int_equal(r.off, 0);
    /* ... and the reader is still usable after a failed read. */
    assert_ok(kx_read_u32(&r, &c));
    assert_int_equal(c, 0x01020304);
}

static void test_read_bytes_and_copy(void **state)
{
    (void)state;
    static const uint8_t in[] = { 'a', 'b', 'c', 'd', 'e', 'f' };
    kx_reader r = kx_reader_of(in, sizeof in);
    const uint8_t *p;
    assert_ok(kx_read_bytes(&r, 2, &p));
    assert_ptr_equal(p, in); /* borrowed, not copied */
    assert_ptr_equal(kx_reader_ptr(&r), in + 2);
    uint8_t out[3];
    assert_ok(kx_read_copy(&r, out, 3));
    assert_memory_equal(out, "cde", 3);
    assert_ok(kx_read_bytes(&r, 0, &p)); /* zero bytes is fine */
    assert_ok(kx_read_copy(&r, out, 0));
    assert_alert(kx_read_bytes(&r, 2, &p), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_read_copy(&r, out, 2), KX_ALERT_DECODE_ERROR);
    assert_int_equal(kx_reader_left(&r), 1);
    assert_alert(kx_reader_done(&r), KX_ALERT_DECODE_ERROR);
    assert_ok(kx_read_copy(&r, out, 1));
    assert_int_equal(out[0], 'f');
    assert_ok(kx_reader_done(&r));
    /* A huge length must not wrap around. */
    r = kx_reader_of(in, sizeof in);
    assert_alert(kx_read_bytes(&r, SIZE_MAX, &p), KX_ALERT_DECODE_ERROR);
}

static void test_read_vec_prefixes(void **state)
{
    (void)state;
    static const uint8_t in[] = {
        0x02, 'h', 'i',                    /* 1-byte prefix */
        0x00, 0x03, 'a', 'b', 'c',         /* 2-byte prefix */
        0x00, 0x00, 0x01, 'z',             /* 3-byte prefix */
        0x00,                              /* empty 1-byte vector */
    };
    kx_reader r = kx_reader_of(in, sizeof in), sub;
    assert_ok(kx_read_vec(&r, 1, 0, 255, &sub));
    assert_int_equal(sub.len, 2);
    assert_memory_equal(kx_reader_ptr(&sub), "hi", 2);
    assert_ok(kx_read_vec(&r, 2, 0, 65535, &sub));
    assert_int_equal(sub.len, 3);
    uint8_t x;
    assert_ok(kx_read_u8(&sub, &x));
    assert_int_equal(x, 'a');
    /* The sub-reader is bounded by the vector, not by the outer message. */
    assert_alert(kx_reader_done(&sub), KX_ALERT_DECODE_ERROR);
    const uint8_t *p;
    assert_ok(kx_read_bytes(&sub, 2, &p));
    assert_alert(kx_read_u8(&sub, &x), KX_ALERT_DECODE_ERROR);
    assert_ok(kx_reader_done(&sub));
    assert_ok(kx_read_vec(&r, 3, 1, 0xffffff, &sub));
    assert_int_equal(sub.len, 1);
    assert_int_equal(sub.data[0], 'z');
    assert_ok(kx_read_vec(&r, 1, 0, 10, &sub));
    assert_int_equal(sub.len, 0);
    assert_ok(kx_reader_done(&sub));
    assert_ok(kx_reader_done(&r));
}

static void test_read_vec_bounds(void **state)
{
    (void)state;
    static const uint8_t in[] = { 0x03, 1, 2, 3 };
    kx_reader r, sub;
    /* Exactly at min and at max. */
    r = kx_reader_of(in, sizeof in);
    assert_ok(kx_read_vec(&r, 1, 3, 3, &sub));
    assert_int_equal(sub.len, 3);
    /* Below min, above max. */
    r = kx_reader_of(in, sizeof in);
    assert_alert(kx_read_vec(&r, 1, 4, 255, &sub), KX_ALERT_DECODE_ERROR);
    r = kx_reader_of(in, sizeof in);
    assert_alert(kx_read_vec(&r, 1, 0, 2, &sub), KX_ALERT_DECODE_ERROR);
    /* Length within range but the body is truncated. */
    r = kx_reader_of(in, 3);
    assert_alert(kx_read_vec(&r, 1, 0, 255, &sub), KX_ALERT_DECODE_ERROR);
    /* The length prefix itself truncated. */
    static const uint8_t two[] = { 0x00 };
    r = kx_reader_of(two, sizeof two);
    assert_alert(kx_read_vec(&r, 2, 0, 65535, &sub), KX_ALERT_DECODE_ERROR);
    static const uint8_t three[] = { 0x00, 0x00 };
    r = kx_reader_of(three, sizeof three);
    assert_alert(kx_read_vec(&r, 3, 0, 0xffffff, &sub), KX_ALERT_DECODE_ERROR);
    /* A 3-byte length claiming far more than there is. */
    static const uint8_t big[] = { 0xff, 0xff, 0xff, 0 };
    r = kx_reader_of(big, sizeof big);
    assert_alert(kx_read_vec(&r, 3, 0, 0xffffff, &sub), KX_ALERT_DECODE_ERROR);
}

static void test_reader_done_trailing(void **state)
{
    (void)state;
    static const uint8_t in[] = { 0x00, 0x01, 0x00 };
    kx_reader r = kx_reader_of(in, sizeof in);
    uint16_t v;
    assert_ok(kx_read_u16(&r, &v));
    assert_alert(kx_reader_done(&r), KX_ALERT_DECODE_ERROR);
    uint8_t b;
    assert_ok(kx_read_u8(&r, &b));
    assert_ok(kx_reader_done(&r));
    kx_reader empty = kx_reader_of(NULL, 0);
    assert_ok(kx_reader_done(&empty));
}

/* ------------------------------------------------------------------ writer */

static void test_write_integers(void **state)
{
    (void)state;
    kx_buf b = { 0 };
    assert_ok(kx_write_u8(&b, 0xab));
    assert_ok(kx_write_u16(&b, 0x1234));
    assert_ok(kx_write_u24(&b, 0x010203));
    assert_ok(kx_write_u32(&b, 0xdeadbeef));
    assert_ok(kx_write_u64(&b, 0x0123456789abcdefull));
    assert_ok(kx_write_bytes(&b, "xy", 2));
    assert_ok(kx_write_bytes(&b, NULL, 0));
    static const uint8_t want[] = {
        0xab, 0x12, 0x34, 0x01, 0x02, 0x03, 0xde, 0xad, 0xbe, 0xef,
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 'x', 'y',
    };
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    /* u24 keeps only the low 24 bits. */
    kx_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ok(kx_write_u24(&b, 0xff123456));
    assert_memory_equal(b.data, "\x12\x34\x56", 3);
    /* Round trip through the reader. */
    kx_buf_reset(&b);
    assert_ok(kx_write_u64(&b, UINT64_MAX - 1));
    kx_reader r = kx_reader_of(b.data, b.len);
    uint64_t v;
    assert_ok(kx_read_u64(&r, &v));
    assert_true(v == UINT64_MAX - 1);
    kx_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_write_space(void **state)
{
    (void)state;
    kx_buf b = { 0 };
    assert_ok(kx_write_u8(&b, 7));
    uint8_t *p;
    assert_ok(kx_write_space(&b, 4, &p));
    assert_ptr_equal(p, b.data + 1);
    memcpy(p, "abcd", 4);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "\x07" "abcd", 5);
    kx_buf_free(&b);
}

/* Vectors opened with a placeholder get their length back-filled on close,
 * for each prefix size, nested. */
static void test_vec_backfill(void **state)
{
    (void)state;
    kx_buf b = { 0 };
    size_t m1, m2, m3;
    assert_ok(kx_write_u8(&b, 0xee));
    assert_ok(kx_vec_open(&b, 3, &m3));
    assert_ok(kx_vec_open(&b, 2, &m2));
    assert_ok(kx_vec_open(&b, 1, &m1));
    assert_ok(kx_write_bytes(&b, "abc", 3));
    assert_ok(kx_vec_close(&b, 1, m1));
    assert_ok(kx_write_u8(&b, 'd'));
    assert_ok(kx_vec_close(&b, 2, m2));
    assert_ok(kx_vec_close(&b, 3, m3));
    static const uint8_t want[] = { 0xee, 0x00, 0x00, 0x07, 0x00, 0x05, 0x03, 'a', 'b', 'c', 'd' };
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);

    /* Empty vectors. */
    kx_buf_reset(&b);
    assert_ok(kx_write_vec(&b, 1, NULL, 0));
    assert_ok(kx_write_vec(&b, 2, NULL, 0));
    assert_ok(kx_write_vec(&b, 3, NULL, 0));
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "\0\0\0\0\0\0", 6);

    /* Lengths that need every byte of the prefix. */
    uint8_t *big = malloc(70000);
    assert_non_null(big);
    memset(big, 0x5a, 70000);
    kx_buf_reset(&b);
    assert_ok(kx_write_vec(&b, 1, big, 255));
    assert_int_equal(b.data[0], 255);
    kx_buf_reset(&b);
    assert_ok(kx_write_vec(&b, 2, big, 0x1234));
    assert_int_equal(b.data[0], 0x12);
    assert_int_equal(b.data[1], 0x34);
    assert_int_equal(b.len, 2 + 0x1234);
    kx_buf_reset(&b);
    assert_ok(kx_write_vec(&b, 3, big, 70000)); /* 0x011170 */
    assert_int_equal(b.data[0], 0x01);
    assert_int_equal(b.data[1], 0x11);
    assert_int_equal(b.data[2], 0x70);
    assert_int_equal(b.len, 3 + 70000);
    /* And the reader agrees. */
    kx_reader r = kx_reader_of(b.data, b.len), sub;
    assert_ok(kx_read_vec(&r, 3, 0, 0xffffff, &sub));
    assert_int_equal(sub.len, 70000);
    assert_ok(kx_reader_done(&r));
    free(big);
    kx_buf_free(&b);
}

static void test_vec_overflow(void **state)
{
    (void)state;
    uint8_t big[70000];
    memset(big, 1, sizeof big);
    kx_buf b = { 0 };
    /* 256 bytes do not fit a 1-byte length. */
    assert_alert(kx_write_vec(&b, 1, big, 256), KX_ALERT_INTERNAL_ERROR);
    kx_buf_reset(&b);
    size_t m;
    assert_ok(kx_vec_open(&b, 1, &m));
    assert_ok(kx_write_bytes(&b, big, 300));
    assert_alert(kx_vec_close(&b, 1, m), KX_ALERT_INTERNAL_ERROR);
    /* 65536 bytes do not fit a 2-byte length. */
    kx_buf_reset(&b);
    assert_alert(kx_write_vec(&b, 2, big, 65536), KX_ALERT_INTERNAL_ERROR);
    kx_buf_reset(&b);
    assert_ok(kx_write_vec(&b, 2, big, 65535));
    kx_buf_free(&b);
}

static void test_consume(void **state)
{
    (void)state;
    kx_buf b = { 0 };
    assert_ok(kx_write_bytes(&b, "0123456789", 10));
    kx_buf_consume(&b, 0);
    assert_int_equal(b.len, 10);
    kx_buf_consume(&b, 3);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "3456789", 7);
    kx_buf_consume(&b, 7);
    assert_int_equal(b.len, 0);
    assert_ok(kx_write_bytes(&b, "ab", 2));
    kx_buf_consume(&b, 100); /* more than there is: empties */
    assert_int_equal(b.len, 0);
    assert_non_null(b.data); /* the allocation is kept */
    assert_ok(kx_write_bytes(&b, "cd", 2));
    assert_memory_equal(b.data, "cd", 2);
    kx_buf_free(&b);
    /* Consuming an empty, never-allocated buffer is harmless. */
    kx_buf_consume(&b, 5);
    assert_int_equal(b.len, 0);
}

static void test_reserve_growth(void **state)
{
    (void)state;
    kx_buf b = { 0 };
    assert_ok(kx_buf_reserve(&b, 0));
    assert_ok(kx_buf_reserve(&b, 1));
    assert_non_null(b.data);
    assert_true(b.cap >= 1);
    size_t cap0 = b.cap;
    /* Fill byte by byte well past the first capacity; contents survive every regrowth. */
    for (size_t i = 0; i < 5000; i++) assert_ok(kx_write_u8(&b, (uint8_t)(i * 31)));
    assert_int_equal(b.len, 5000);
    assert_true(b.cap >= 5000);
    assert_true(b.cap > cap0);
    for (size_t i = 0; i < 5000; i++) assert_int_equal(b.data[i], (uint8_t)(i * 31));
    /* reserve guarantees room for `extra` more bytes without moving them. */
    assert_ok(kx_buf_reserve(&b, 100000));
    assert_true(b.cap >= b.len + 100000);
    uint8_t *before = b.data;
    for (size_t i = 0; i < 100000; i++) assert_ok(kx_write_u8(&b, 1));
    assert_ptr_equal(b.data, before);
    /* Absurd requests fail cleanly instead of overflowing. */
    assert_alert(kx_buf_reserve(&b, SIZE_MAX), KX_ALERT_INTERNAL_ERROR);
    assert_alert(kx_buf_reserve(&b, SIZE_MAX / 2), KX_ALERT_INTERNAL_ERROR);
    assert_int_equal(b.len, 105000);
    kx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_integers),
        cmocka_unit_test(test_read_integers_truncated),
        cmocka_unit_test(test_read_bytes_and_copy),
        cmocka_unit_test(test_read_vec_prefixes),
        cmocka_unit_test(test_read_vec_bounds),
        cmocka_unit_test(test_reader_done_trailing),
        cmocka_unit_test(test_write_integers),
        cmocka_unit_test(test_write_space),
        cmocka_unit_test(test_vec_backfill),
        cmocka_unit_test(test_vec_overflow),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_reserve_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
