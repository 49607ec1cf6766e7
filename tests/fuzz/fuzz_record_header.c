/* Record layer: kx_record_header and kx_record_read on a plaintext
 * (inactive) direction and on active TLS 1.3 / TLS 1.2 directions with fixed
 * keys.
 *
 * Input: byte 0 selects the mode, the rest is the record (or its content).
 *   mode % 4 == 0: the rest as a record, as is (header length may lie)
 *   mode % 4 == 1: the rest as a record with its length field fixed up, so it
 *                  reaches the AEAD (which then mostly fails: fine)
 *   mode % 4 == 2: the rest is a TLS 1.3 TLSInnerPlaintext (content, type,
 *                  padding) which we seal with the direction's key first, so
 *                  the inner type / padding parser sees arbitrary bytes
 *   mode % 4 == 3: the rest (from byte 1) is sealed with kx_record_write as
 *                  content type rest[0] and read back: must round-trip
 * (mode / 4) % 4 selects the direction's suite: TLS 1.3 AES-128-GCM,
 * TLS 1.3 ChaCha20-Poly1305, TLS 1.2 AES-128-GCM, TLS 1.2 ChaCha20. */
#include "fuzz_common.h"

static const uint8_t key[32] = { 0x6b, 0x74, 0x6c, 0x73, 0x78, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6b, 0x65, 0x79, 0x21, 0x21,
                                 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x00 };
static const uint8_t iv[12] = { 0x5d, 0x31, 0x3e, 0xb2, 0x67, 0x12, 0x76, 0xee, 0x13, 0x00, 0x0b, 0x30 };

static const struct {
    uint16_t suite, version;
} dirs[4] = { { 0x1301, 0x0304 }, { 0x1303, 0x0304 }, { 0xc02b, 0x0303 }, { 0xcca9, 0x0303 } };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (kx_crypto_init() != 0) abort();
    return 0;
}

static void put_header(uint8_t *rec, uint8_t type, size_t body)
{
    rec[0] = type;
    rec[1] = 0x03;
    rec[2] = 0x03;
    rec[3] = (uint8_t)(body >> 8);
    rec[4] = (uint8_t)body;
}

/* Read `rec` (heap copy of exactly rec_len bytes) through direction d. */
static void read_one(kx_record_dir *d, const uint8_t *rec, size_t rec_len)
{
    uint8_t *copy = malloc(rec_len ? rec_len : 1);
    if (!copy) abort();
    if (rec_len) memcpy(copy, rec, rec_len);
    uint8_t type = 0;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    kx_result r = kx_record_read(d, copy, rec_len, &type, &plain, &plain_len);
    if (!kx_failed(r)) {
        /* The plaintext must lie inside the record. */
        if (plain < copy || plain + plain_len > copy + rec_len) abort();
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < plain_len; i++) sink ^= plain[i];
        (void)sink;
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    /* The header parser on its own. */
    if (n >= KX_RECORD_HEADER) {
        uint8_t hdr[KX_RECORD_HEADER], type;
        size_t body_len;
        memcpy(hdr, in, sizeof hdr);
        kx_result r = kx_record_header(hdr, &type, &body_len);
        if (!kx_failed(r) && body_len > KX_MAX_CIPHERTEXT) abort();
    }

    const kx_suite *suite = kx_suite_by_id(dirs[(mode >> 2) & 3].suite);
    if (!suite) abort();
    kx_record_dir plain_dir = { 0 }, active = { 0 };
    kx_result r = kx_record_set_keys(&active, dirs[(mode >> 2) & 3].version, suite, key, iv);
    if (kx_failed(r)) abort();
    /* Some inputs also start from a later sequence number. */
    active.seq = (mode >> 4) & 3;

    switch (mode & 3) {
    case 0:
        read_one(&plain_dir, in, n);
        read_one(&active, in, n);
        break;
    case 1: {
        if (n < KX_RECORD_HEADER || n - KX_RECORD_HEADER > 0xffff) break;
        uint8_t *rec = malloc(n);
        if (!rec) abort();
        memcpy(rec, in, n);
        rec[3] = (uint8_t)((n - KX_RECORD_HEADER) >> 8);
        rec[4] = (uint8_t)(n - KX_RECORD_HEADER);
        read_one(&plain_dir, rec, n);
        read_one(&active, rec, n);
        free(rec);
        break;
    }
    case 2: {
        if (active.version != 0x0304 || n > KX_MAX_CIPHERTEXT) break;
        size_t body = n + KX_AEAD_TAG;
        uint8_t *rec = malloc(KX_RECORD_HEADER + body);
        if (!rec) abort();
        put_header(rec, KX_CT_APPLICATION_DATA, body);
        if (n) memcpy(rec + KX_RECORD_HEADER, in, n);
        uint8_t nonce[KX_AEAD_NONCE];
        memcpy(nonce, iv, sizeof nonce);
        for (int i = 0; i < 8; i++) nonce[4 + i] ^= (uint8_t)(active.seq >> (56 - 8 * i));
        r = kx_aead_seal(active.aead, nonce, rec, KX_RECORD_HEADER, rec + KX_RECORD_HEADER, n, rec + KX_RECORD_HEADER);
        if (kx_failed(r)) abort();
        read_one(&active, rec, KX_RECORD_HEADER + body);
        free(rec);
        break;
    }
    case 3: {
        if (n < 1) break;
        uint8_t type = in[0];
        kx_buf out = { 0 };
        uint64_t seq0 = active.seq;
        kx_record_dir reader = { 0 };
        r = kx_record_set_keys(&reader, active.version, suite, key, iv);
        if (kx_failed(r)) abort();
        reader.seq = seq0;
        r = kx_record_write(&active, type, in + 1, n - 1, &out);
        /* TLS 1.3 sends change_cipher_spec in the clear, and only 0x01 is legal to read. */
        bool clear_ccs = active.version == 0x0304 && type == KX_CT_CHANGE_CIPHER_SPEC;
        if (!kx_failed(r) && !clear_ccs) {
            /* Read back every record written (the data may have been fragmented). */
            size_t off = 0, got = 0;
            while (off + KX_RECORD_HEADER <= out.len) {
                size_t body = ((size_t)out.data[off + 3] << 8) | out.data[off + 4];
                if (off + KX_RECORD_HEADER + body > out.len) abort();
                uint8_t rtype;
                uint8_t *plain;
                size_t plain_len;
                kx_result rr = kx_record_read(&reader, out.data + off, KX_RECORD_HEADER + body, &rtype, &plain, &plain_len);
                /* What we wrote ourselves must open and round-trip (a TLS 1.3
                 * CCS is sent in the clear and read back as such). */
                if (kx_failed(rr)) {
                    fprintf(stderr, "round trip failed: %s\n", rr.reason);
                    abort();
                }
                if (rtype != type || got + plain_len > n - 1 || memcmp(plain, in + 1 + got, plain_len) != 0) abort();
                got += plain_len;
                off += KX_RECORD_HEADER + body;
            }
            if (off != out.len || got != n - 1) abort();
        }
        kx_buf_free(&out);
        kx_record_clear(&reader);
        break;
    }
    }
    kx_record_clear(&active);
    kx_record_clear(&plain_dir);
    return 0;
}
