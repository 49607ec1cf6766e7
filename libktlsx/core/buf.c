#include "core/buf.h"
#include "core/wipe.h"
#include <stdlib.h>
#include <string.h>

#define SHORT KX_FAIL(KX_ALERT_DECODE_ERROR, "message truncated")

kx_result kx_read_u8(kx_reader *r, uint8_t *v)
{
    KX_ENSURE(kx_reader_left(r) >= 1, KX_ALERT_DECODE_ERROR, "message truncated");
    *v = r->data[r->off++];
    return KX_OK;
}

static kx_result read_be(kx_reader *r, int n, uint64_t *v)
{
    if (kx_reader_left(r) < (size_t)n) return SHORT;
    uint64_t x = 0;
    for (int i = 0; i < n; i++) x = (x << 8) | r->data[r->off + i];
    r->off += (size_t)n;
    *v = x;
    return KX_OK;
}

kx_result kx_read_u16(kx_reader *r, uint16_t *v)
{
    uint64_t x;
    KX_GUARD(read_be(r, 2, &x));
    *v = (uint16_t)x;
    return KX_OK;
}

kx_result kx_read_u24(kx_reader *r, uint32_t *v)
{
    uint64_t x;
    KX_GUARD(read_be(r, 3, &x));
    *v = (uint32_t)x;
    return KX_OK;
}

kx_result kx_read_u32(kx_reader *r, uint32_t *v)
{
    uint64_t x;
    KX_GUARD(read_be(r, 4, &x));
    *v = (uint32_t)x;
    return KX_OK;
}

kx_result kx_read_u64(kx_reader *r, uint64_t *v) { return read_be(r, 8, v); }

kx_result kx_read_bytes(kx_reader *r, size_t n, const uint8_t **p)
{
    if (kx_reader_left(r) < n) return SHORT;
    *p = r->data + r->off;
    r->off += n;
    return KX_OK;
}

kx_result kx_read_copy(kx_reader *r, void *dst, size_t n)
{
    const uint8_t *p;
    KX_GUARD(kx_read_bytes(r, n, &p));
    if (n) memcpy(dst, p, n);
    return KX_OK;
}

kx_result kx_read_vec(kx_reader *r, int prefix, size_t min, size_t max, kx_reader *sub)
{
    uint64_t n;
    KX_GUARD(read_be(r, prefix, &n));
    KX_ENSURE(n >= min && n <= max, KX_ALERT_DECODE_ERROR, "vector length out of range");
    const uint8_t *p;
    KX_GUARD(kx_read_bytes(r, (size_t)n, &p));
    *sub = kx_reader_of(p, (size_t)n);
    return KX_OK;
}

kx_result kx_reader_done(const kx_reader *r)
{
    KX_ENSURE(r->off == r->len, KX_ALERT_DECODE_ERROR, "trailing bytes in message");
    return KX_OK;
}

void kx_buf_free(kx_buf *b)
{
    if (b->data) {
        kx_wipe(b->data, b->cap);
        free(b->data);
    }
    *b = (kx_buf){ 0 };
}

void kx_buf_reset(kx_buf *b) { b->len = 0; }

kx_result kx_buf_reserve(kx_buf *b, size_t extra)
{
    KX_ENSURE(extra <= SIZE_MAX / 2 - b->len, KX_ALERT_INTERNAL_ERROR, "buffer too large");
    if (b->len + extra <= b->cap) return KX_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    /* Not realloc: the old block may hold secrets and must be wiped. */
    uint8_t *p = malloc(cap);
    KX_ENSURE(p != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    if (b->len) memcpy(p, b->data, b->len);
    if (b->data) {
        kx_wipe(b->data, b->cap);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    return KX_OK;
}

void kx_buf_consume(kx_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static kx_result write_be(kx_buf *b, int n, uint64_t v)
{
    KX_GUARD(kx_buf_reserve(b, (size_t)n));
    for (int i = n - 1; i >= 0; i--) {
        b->data[b->len + (size_t)i] = (uint8_t)v;
        v >>= 8;
    }
    b->len += (size_t)n;
    return KX_OK;
}

kx_result kx_write_u8(kx_buf *b, uint8_t v) { return write_be(b, 1, v); }
kx_result kx_write_u16(kx_buf *b, uint16_t v) { return write_be(b, 2, v); }
kx_result kx_write_u24(kx_buf *b, uint32_t v) { return write_be(b, 3, v); }
kx_result kx_write_u32(kx_buf *b, uint32_t v) { return write_be(b, 4, v); }
kx_result kx_write_u64(kx_buf *b, uint64_t v) { return write_be(b, 8, v); }

kx_result kx_write_bytes(kx_buf *b, const void *p, size_t n)
{
    if (n == 0) return KX_OK;
    KX_GUARD(kx_buf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return KX_OK;
}

kx_result kx_write_space(kx_buf *b, size_t n, uint8_t **p)
{
    KX_GUARD(kx_buf_reserve(b, n));
    *p = b->data + b->len;
    b->len += n;
    return KX_OK;
}

kx_result kx_vec_open(kx_buf *b, int prefix, size_t *mark)
{
    *mark = b->len;
    return write_be(b, prefix, 0);
}

kx_result kx_vec_close(kx_buf *b, int prefix, size_t mark)
{
    size_t n = b->len - mark - (size_t)prefix;
    KX_ENSURE(prefix == 3 ? n < (1u << 24) : prefix == 2 ? n < (1u << 16) : n < (1u << 8),
              KX_ALERT_INTERNAL_ERROR, "vector too long for its length prefix");
    for (int i = prefix - 1; i >= 0; i--) {
        b->data[mark + (size_t)i] = (uint8_t)n;
        n >>= 8;
    }
    return KX_OK;
}

kx_result kx_write_vec(kx_buf *b, int prefix, const void *p, size_t n)
{
    size_t mark;
    KX_GUARD(kx_vec_open(b, prefix, &mark));
    KX_GUARD(kx_write_bytes(b, p, n));
    return kx_vec_close(b, prefix, mark);
}
