/* User-space TLS record protection (RFC 8446 §5, RFC 5246 §6.2, RFC 5288 §3,
 * RFC 7905).  Records are built and opened in place: the AEAD primitives
 * accept out == in, so no scratch copy of (possibly secret) plaintext is
 * ever made. */
#include "record/record.h"
#include "core/wipe.h"
#include <string.h>

#define TLS12_RECORD_VERSION 0x0303
/* TLS 1.2 AES-GCM carries the 8-byte nonce_explicit in front of the ciphertext. */
#define TLS12_EXPLICIT_NONCE 8
/* RFC 8446 §5.2: TLSCiphertext.length MUST NOT exceed 2^14 + 256. */
#define TLS13_MAX_CIPHERTEXT (KX_MAX_PLAINTEXT + 256)
/* RFC 8446 §5.4: TLSInnerPlaintext (content || type || padding) <= 2^14 + 1. */
#define TLS13_MAX_INNER (KX_MAX_PLAINTEXT + 1)

static void put_u16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Does this direction put an explicit nonce on the wire (TLS 1.2 AES-GCM)? */
static int has_explicit_nonce(const kx_record_dir *d)
{
    return d->version == 0x0303 && d->suite->fixed_iv_len == 4;
}

/* The per-record nonce.  TLS 1.3 and TLS 1.2 ChaCha20 (RFC 8446 §5.3,
 * RFC 7905 §2): the 64-bit seq, left-padded to 12 bytes, XORed into the
 * static IV.  TLS 1.2 GCM (RFC 5288 §3): salt(4) || nonce_explicit(8). */
static void make_nonce(const kx_record_dir *d, const uint8_t *explicit_nonce, uint8_t nonce[KX_AEAD_NONCE])
{
    if (has_explicit_nonce(d)) {
        memcpy(nonce, d->iv, 4);
        memcpy(nonce + 4, explicit_nonce, TLS12_EXPLICIT_NONCE);
        return;
    }
    uint8_t seq[8];
    put_u64(seq, d->seq);
    memcpy(nonce, d->iv, KX_AEAD_NONCE);
    for (int i = 0; i < 8; i++) nonce[4 + i] ^= seq[i];
}

/* TLS 1.2 additional data (RFC 5246 §6.2.3.3):
 * seq_num(8) || type(1) || version(2) || plaintext length(2). */
static void tls12_aad(const kx_record_dir *d, uint8_t type, size_t plain_len, uint8_t aad[13])
{
    put_u64(aad, d->seq);
    aad[8] = type;
    put_u16(aad + 9, TLS12_RECORD_VERSION);
    put_u16(aad + 11, plain_len);
}

static int known_type(uint8_t t)
{
    return t >= KX_CT_CHANGE_CIPHER_SPEC && t <= KX_CT_APPLICATION_DATA;
}

kx_result kx_record_set_keys(kx_record_dir *d, uint16_t version, const kx_suite *suite,
                             const uint8_t *key, const uint8_t *iv)
{
    /* Fail closed: whatever happens below, the old keys are gone.  The
     * negotiated record size limit is not a key: it outlives a key change. */
    uint16_t max_plain = d->max_plain;
    kx_record_clear(d);
    d->max_plain = max_plain;
    KX_ENSURE(suite != NULL && key != NULL && iv != NULL, KX_ALERT_INTERNAL_ERROR, "record keys missing");
    KX_ENSURE(version == 0x0304 || version == 0x0303, KX_ALERT_INTERNAL_ERROR, "record version not TLS 1.2/1.3");
    KX_ENSURE(suite->version == version, KX_ALERT_INTERNAL_ERROR, "cipher suite does not match record version");
    KX_ENSURE(suite->key_len > 0 && suite->key_len <= KX_MAX_KEY, KX_ALERT_INTERNAL_ERROR, "bad suite key length");
    /* A 4-byte salt only makes sense for TLS 1.2 GCM; everything else uses a 12-byte IV. */
    KX_ENSURE(suite->fixed_iv_len == KX_AEAD_NONCE ||
                  (suite->fixed_iv_len == 4 && version == 0x0303 && suite->aead != KX_AEAD_CHACHA20_POLY1305),
              KX_ALERT_INTERNAL_ERROR, "bad suite IV length");

    kx_aead *aead = NULL;
    KX_GUARD(kx_aead_new(&aead, suite->aead, key, suite->key_len));
    memcpy(d->key, key, suite->key_len);
    memcpy(d->iv, iv, suite->fixed_iv_len);
    d->aead = aead;
    d->suite = suite;
    d->version = version;
    d->seq = 0;
    d->active = 1;
    return KX_OK;
}

void kx_record_clear(kx_record_dir *d)
{
    if (d->aead) kx_aead_free(d->aead);
    /* Covers key, iv and seq in one go; leaves active = 0, aead = NULL. */
    kx_wipe(d, sizeof(*d));
}

kx_result kx_record_header(const uint8_t hdr[KX_RECORD_HEADER], uint8_t *type, size_t *body_len)
{
    uint8_t t = hdr[0];
    size_t len = ((size_t)hdr[3] << 8) | hdr[4];
    KX_ENSURE(known_type(t), KX_ALERT_UNEXPECTED_MESSAGE, "unknown record content type");
    /* Only the major version: the first ClientHello may say 0x0301 (RFC 8446 §5.1). */
    KX_ENSURE(hdr[1] == 0x03, KX_ALERT_PROTOCOL_VERSION, "record version is not TLS");
    KX_ENSURE(len <= KX_MAX_CIPHERTEXT, KX_ALERT_RECORD_OVERFLOW, "record too long");
    /* Empty handshake/alert/CCS fragments are forbidden (RFC 8446 §5.1, RFC 5246 §6.2.1);
     * an empty application_data record is legal and is how some peers probe. */
    KX_ENSURE(len > 0 || t == KX_CT_APPLICATION_DATA, KX_ALERT_UNEXPECTED_MESSAGE, "empty non-application record");
    *type = t;
    *body_len = len;
    return KX_OK;
}

/* Append one record carrying `len` (<= 2^14) bytes. */
static kx_result write_one(kx_record_dir *d, uint8_t type, const uint8_t *data, size_t len, kx_buf *out)
{
    uint8_t *rec;

    /* TLS 1.3 never protects change_cipher_spec: it exists only for middlebox
     * compatibility and a peer must reject a protected one (RFC 8446 §5). */
    int protect = d->active && !(d->version == 0x0304 && type == KX_CT_CHANGE_CIPHER_SPEC);
    if (!protect) {
        KX_GUARD(kx_write_space(out, KX_RECORD_HEADER + len, &rec));
        rec[0] = type;
        put_u16(rec + 1, TLS12_RECORD_VERSION);
        put_u16(rec + 3, len);
        if (len) memcpy(rec + KX_RECORD_HEADER, data, len);
        return KX_OK;
    }

    /* Reusing a nonce would be catastrophic; the connection must rekey or close first. */
    KX_ENSURE(d->seq != UINT64_MAX, KX_ALERT_INTERNAL_ERROR, "record sequence number exhausted");
    uint8_t nonce[KX_AEAD_NONCE];

    if (d->version == 0x0304) {
        /* TLSInnerPlaintext = content || real type, no padding; outer type application_data. */
        size_t inner = len + 1;
        size_t body = inner + KX_AEAD_TAG;
        KX_GUARD(kx_write_space(out, KX_RECORD_HEADER + body, &rec));
        rec[0] = KX_CT_APPLICATION_DATA;
        put_u16(rec + 1, TLS12_RECORD_VERSION);
        put_u16(rec + 3, body);
        uint8_t *p = rec + KX_RECORD_HEADER;
        if (len) memcpy(p, data, len);
        p[len] = type;
        make_nonce(d, NULL, nonce);
        /* RFC 8446 §5.2: additional_data is the record header itself. */
        kx_result r = kx_aead_seal(d->aead, nonce, rec, KX_RECORD_HEADER, p, inner, p);
        if (kx_failed(r)) {
            kx_wipe(p, inner);
            return r;
        }
    } else {
        size_t explicit_len = has_explicit_nonce(d) ? TLS12_EXPLICIT_NONCE : 0;
        size_t body = explicit_len + len + KX_AEAD_TAG;
        KX_GUARD(kx_write_space(out, KX_RECORD_HEADER + body, &rec));
        rec[0] = type;
        put_u16(rec + 1, TLS12_RECORD_VERSION);
        put_u16(rec + 3, body);
        uint8_t *p = rec + KX_RECORD_HEADER;
        /* The sequence number is a fine nonce_explicit: unique per key, and
         * it is what OpenSSL and the kernel send too. */
        if (explicit_len) put_u64(p, d->seq);
        make_nonce(d, p, nonce);
        uint8_t aad[13];
        tls12_aad(d, type, len, aad);
        p += explicit_len;
        if (len) memcpy(p, data, len);
        kx_result r = kx_aead_seal(d->aead, nonce, aad, sizeof aad, p, len, p);
        if (kx_failed(r)) {
            kx_wipe(p, len);
            return r;
        }
    }
    d->seq++;
    return KX_OK;
}

kx_result kx_record_write(kx_record_dir *d, uint8_t type, const uint8_t *data, size_t len, kx_buf *out)
{
    KX_ENSURE(known_type(type), KX_ALERT_INTERNAL_ERROR, "writing unknown record type");
    KX_ENSURE(len > 0 || type == KX_CT_APPLICATION_DATA, KX_ALERT_INTERNAL_ERROR,
              "empty non-application record");
    KX_ENSURE(len == 0 || data != NULL, KX_ALERT_INTERNAL_ERROR, "record data missing");

    /* On failure nothing is appended and seq is unchanged, so the caller's
     * buffer never holds a partial flight. */
    size_t len0 = out->len;
    uint64_t seq0 = d->seq;
    size_t off = 0;
    size_t max = d->max_plain && d->max_plain < KX_MAX_PLAINTEXT ? d->max_plain : KX_MAX_PLAINTEXT;
    do {
        size_t n = len - off < max ? len - off : max;
        kx_result r = write_one(d, type, data + off, n, out);
        if (kx_failed(r)) {
            out->len = len0;
            d->seq = seq0;
            return r;
        }
        off += n;
    } while (off < len);
    return KX_OK;
}

/* TLS 1.3 protected record; body = rec + 5, body_len bytes. */
static kx_result read_tls13(kx_record_dir *d, uint8_t *rec, size_t body_len, uint8_t *type,
                            uint8_t **plain, size_t *plain_len)
{
    uint8_t *body = rec + KX_RECORD_HEADER;

    if (rec[0] == KX_CT_CHANGE_CIPHER_SPEC) {
        /* Middlebox-compatibility CCS (RFC 8446 §5): always plaintext, exactly
         * one byte 0x01, not part of the protected stream, so seq stays. */
        KX_ENSURE(body_len == 1, KX_ALERT_DECODE_ERROR, "change_cipher_spec of the wrong length");
        KX_ENSURE(body[0] == 0x01, KX_ALERT_UNEXPECTED_MESSAGE, "bad change_cipher_spec value");
        *type = KX_CT_CHANGE_CIPHER_SPEC;
        *plain = body;
        *plain_len = 1;
        return KX_OK;
    }
    KX_ENSURE(rec[0] == KX_CT_APPLICATION_DATA, KX_ALERT_UNEXPECTED_MESSAGE, "unprotected record after keys");
    KX_ENSURE(body_len <= TLS13_MAX_CIPHERTEXT, KX_ALERT_RECORD_OVERFLOW, "TLS 1.3 record too long");
    KX_ENSURE(body_len >= KX_AEAD_TAG, KX_ALERT_BAD_RECORD_MAC, "record shorter than its tag");
    KX_ENSURE(d->seq != UINT64_MAX, KX_ALERT_INTERNAL_ERROR, "record sequence number exhausted");

    uint8_t nonce[KX_AEAD_NONCE];
    make_nonce(d, NULL, nonce);
    KX_GUARD(kx_aead_open(d->aead, nonce, rec, KX_RECORD_HEADER, body, body_len, body));
    d->seq++;

    size_t inner = body_len - KX_AEAD_TAG;
    KX_ENSURE(inner <= TLS13_MAX_INNER, KX_ALERT_RECORD_OVERFLOW, "TLS 1.3 plaintext too long");
    /* RFC 8449 §4: in TLS 1.3 the limit counts the whole TLSInnerPlaintext. */
    KX_ENSURE(!d->max_plain || inner <= (size_t)d->max_plain + 1, KX_ALERT_RECORD_OVERFLOW,
              "record larger than our record_size_limit");
    /* The real type is the last non-zero byte; zeros after it are padding (RFC 8446 §5.4). */
    while (inner > 0 && body[inner - 1] == 0) inner--;
    KX_ENSURE(inner > 0, KX_ALERT_UNEXPECTED_MESSAGE, "record has no content type");
    uint8_t t = body[inner - 1];
    size_t n = inner - 1;
    /* A protected CCS is forbidden (RFC 8446 §5), as is anything we cannot name. */
    KX_ENSURE(t == KX_CT_ALERT || t == KX_CT_HANDSHAKE || t == KX_CT_APPLICATION_DATA,
              KX_ALERT_UNEXPECTED_MESSAGE, "bad inner content type");
    /* RFC 8446 §5.4: zero-length handshake and alert content is forbidden. */
    KX_ENSURE(n > 0 || t == KX_CT_APPLICATION_DATA, KX_ALERT_UNEXPECTED_MESSAGE, "empty protected record");
    *type = t;
    *plain = body;
    *plain_len = n;
    return KX_OK;
}

/* TLS 1.2 AEAD record (GCM with explicit nonce, or ChaCha20-Poly1305). */
static kx_result read_tls12(kx_record_dir *d, uint8_t *rec, size_t body_len, uint8_t *type,
                            uint8_t **plain, size_t *plain_len)
{
    uint8_t *body = rec + KX_RECORD_HEADER;
    size_t explicit_len = has_explicit_nonce(d) ? TLS12_EXPLICIT_NONCE : 0;

    KX_ENSURE(body_len >= explicit_len + KX_AEAD_TAG, KX_ALERT_BAD_RECORD_MAC, "record shorter than its tag");
    size_t n = body_len - explicit_len - KX_AEAD_TAG;
    KX_ENSURE(n <= KX_MAX_PLAINTEXT, KX_ALERT_RECORD_OVERFLOW, "TLS 1.2 plaintext too long");
    KX_ENSURE(d->seq != UINT64_MAX, KX_ALERT_INTERNAL_ERROR, "record sequence number exhausted");

    uint8_t nonce[KX_AEAD_NONCE];
    make_nonce(d, body, nonce);
    uint8_t aad[13];
    tls12_aad(d, rec[0], n, aad);
    uint8_t *ct = body + explicit_len;
    KX_GUARD(kx_aead_open(d->aead, nonce, aad, sizeof aad, ct, n + KX_AEAD_TAG, ct));
    d->seq++;
    KX_ENSURE(!d->max_plain || n <= d->max_plain, KX_ALERT_RECORD_OVERFLOW, "record larger than our record_size_limit");

    /* RFC 5246 §6.2.1: no zero-length handshake, alert or CCS fragments. */
    KX_ENSURE(n > 0 || rec[0] == KX_CT_APPLICATION_DATA, KX_ALERT_UNEXPECTED_MESSAGE, "empty protected record");
    *type = rec[0];
    *plain = ct;
    *plain_len = n;
    return KX_OK;
}

kx_result kx_record_read(kx_record_dir *d, uint8_t *rec, size_t rec_len,
                         uint8_t *type, uint8_t **plain, size_t *plain_len)
{
    KX_ENSURE(rec_len >= KX_RECORD_HEADER, KX_ALERT_INTERNAL_ERROR, "record shorter than its header");
    uint8_t outer;
    size_t body_len;
    KX_GUARD(kx_record_header(rec, &outer, &body_len));
    KX_ENSURE(rec_len == KX_RECORD_HEADER + body_len, KX_ALERT_INTERNAL_ERROR, "record length mismatch");

    if (!d->active) {
        KX_ENSURE(body_len <= KX_MAX_PLAINTEXT, KX_ALERT_RECORD_OVERFLOW, "plaintext record too long");
        *type = outer;
        *plain = rec + KX_RECORD_HEADER;
        *plain_len = body_len;
        return KX_OK;
    }
    if (d->version == 0x0304) return read_tls13(d, rec, body_len, type, plain, plain_len);
    return read_tls12(d, rec, body_len, type, plain, plain_len);
}
