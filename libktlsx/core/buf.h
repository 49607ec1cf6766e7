/* Bounds-checked reader and growable writer for TLS wire formats.
 *
 * Reader: every read checks the remaining length and fails with
 * decode_error; a length-prefixed vector is read into a sub-reader which the
 * caller must drain exactly (kx_reader_done), so trailing garbage inside a
 * vector is an error rather than silently ignored.
 *
 * Writer: a growable byte buffer.  Vectors are written by opening a length
 * placeholder and closing it afterwards, which back-fills the length, so
 * no message builder ever computes a length by hand. */
#ifndef KX_CORE_BUF_H
#define KX_CORE_BUF_H

#include "core/result.h"
#include <stdbool.h>

typedef struct {
    const uint8_t *data;
    size_t len;
    size_t off;
} kx_reader;

static inline kx_reader kx_reader_of(const uint8_t *data, size_t len)
{
    return (kx_reader){ data, len, 0 };
}
static inline size_t kx_reader_left(const kx_reader *r) { return r->len - r->off; }
static inline const uint8_t *kx_reader_ptr(const kx_reader *r) { return r->data + r->off; }

KX_RESULT kx_read_u8(kx_reader *r, uint8_t *v);
KX_RESULT kx_read_u16(kx_reader *r, uint16_t *v);
KX_RESULT kx_read_u24(kx_reader *r, uint32_t *v);
KX_RESULT kx_read_u32(kx_reader *r, uint32_t *v);
KX_RESULT kx_read_u64(kx_reader *r, uint64_t *v);
/* Borrow `n` bytes (no copy). */
KX_RESULT kx_read_bytes(kx_reader *r, size_t n, const uint8_t **p);
KX_RESULT kx_read_copy(kx_reader *r, void *dst, size_t n);
/* Read a vector with a `prefix`-byte (1, 2 or 3) length into `sub`;
 * the length must lie in [min, max]. */
KX_RESULT kx_read_vec(kx_reader *r, int prefix, size_t min, size_t max, kx_reader *sub);
/* Fail with decode_error unless every byte was consumed. */
KX_RESULT kx_reader_done(const kx_reader *r);

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} kx_buf;

void kx_buf_free(kx_buf *b);          /* wipes, then frees */
void kx_buf_reset(kx_buf *b);         /* len = 0, keeps the allocation */
KX_RESULT kx_buf_reserve(kx_buf *b, size_t extra);
/* Drop the first n bytes (what a socket write consumed). */
void kx_buf_consume(kx_buf *b, size_t n);

KX_RESULT kx_write_u8(kx_buf *b, uint8_t v);
KX_RESULT kx_write_u16(kx_buf *b, uint16_t v);
KX_RESULT kx_write_u24(kx_buf *b, uint32_t v);
KX_RESULT kx_write_u32(kx_buf *b, uint32_t v);
KX_RESULT kx_write_u64(kx_buf *b, uint64_t v);
KX_RESULT kx_write_bytes(kx_buf *b, const void *p, size_t n);
/* Append n bytes of space and return a pointer to them (valid until the next write). */
KX_RESULT kx_write_space(kx_buf *b, size_t n, uint8_t **p);

/* Open a vector with a `prefix`-byte length; `*mark` remembers where. */
KX_RESULT kx_vec_open(kx_buf *b, int prefix, size_t *mark);
/* Back-fill the length of the vector opened at `mark`. */
KX_RESULT kx_vec_close(kx_buf *b, int prefix, size_t mark);
/* Convenience: write a whole vector. */
KX_RESULT kx_write_vec(kx_buf *b, int prefix, const void *p, size_t n);

#endif
