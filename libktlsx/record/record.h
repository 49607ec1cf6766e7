/* User-space TLS record layer: protects/unprotects one direction's records.
 * Carries the handshake always, and application data when kernel TLS is
 * absent.  TLS 1.3 (RFC 8446 §5: inner content type, padding, per-record
 * nonce = iv XOR seq) and TLS 1.2 AEAD (RFC 5288 explicit nonce for GCM,
 * RFC 7905 for ChaCha20-Poly1305). */
#ifndef KX_RECORD_RECORD_H
#define KX_RECORD_RECORD_H

#include "crypto/crypto.h"

#define KX_RECORD_HEADER 5
#define KX_MAX_PLAINTEXT 16384
/* Largest TLSCiphertext.length we accept: 2^14 + 256 (RFC 8446 §5.2); TLS 1.2 allows 2^14 + 2048. */
#define KX_MAX_CIPHERTEXT (16384 + 2048)

enum {
    KX_CT_CHANGE_CIPHER_SPEC = 20,
    KX_CT_ALERT = 21,
    KX_CT_HANDSHAKE = 22,
    KX_CT_APPLICATION_DATA = 23,
};

/* One direction's protection state. Inactive = plaintext records. */
typedef struct {
    int active;
    uint16_t version;   /* 0x0304 or 0x0303: selects the record format */
    const kx_suite *suite;
    kx_aead *aead;
    uint8_t key[KX_MAX_KEY];
    uint8_t iv[KX_AEAD_NONCE]; /* 1.3 / ChaCha: 12-byte static IV; 1.2 GCM: 4-byte salt in iv[0..3] */
    uint64_t seq;
    /* record_size_limit (RFC 8449; issue 9): largest content per record, not
     * counting TLS 1.3's type byte; 0 = the protocol's 2^14.  TX: records are
     * cut at it (the peer's limit).  RX: a protected record whose plaintext
     * (TLS 1.3: content + type + padding, i.e. max_plain + 1) exceeds it is
     * record_overflow (our advertised limit).  Kept across kx_record_set_keys. */
    uint16_t max_plain;
} kx_record_dir;

/* Install keys (seq = 0). Wipes and replaces any previous keys (max_plain stays). */
KX_RESULT kx_record_set_keys(kx_record_dir *d, uint16_t version, const kx_suite *suite,
                             const uint8_t *key, const uint8_t *iv);
void kx_record_clear(kx_record_dir *d);  /* wipe and deactivate */

/* Parse a record header: checks the content type is known and the length is
 * within limits (record_overflow otherwise). legacy_record_version is
 * checked loosely (0x03xx) since the first ClientHello may say 0x0301. */
KX_RESULT kx_record_header(const uint8_t hdr[KX_RECORD_HEADER], uint8_t *type, size_t *body_len);

/* Append one or more records carrying `data` of `type` to `out`, fragmenting
 * at 2^14.  Encrypts when d->active (TLS 1.3: outer type application_data).
 * Increments seq per record.  A zero-length `data` is allowed only for
 * application data (sends one empty record). */
KX_RESULT kx_record_write(kx_record_dir *d, uint8_t type, const uint8_t *data, size_t len, kx_buf *out);

/* Unprotect one complete record (header + body, exactly 5 + body_len bytes)
 * in place.  On success *type is the real content type and *plain and *plain_len
 * point into `rec`.  When d->active: AEAD open (bad_record_mac on failure),
 * TLS 1.3 inner type and zero padding removed (unexpected_message if no
 * type), plaintext > 2^14 -> record_overflow.  Increments seq.  When inactive,
 * the body is returned as is (TLS 1.3 peers may send a plaintext CCS). */
KX_RESULT kx_record_read(kx_record_dir *d, uint8_t *rec, size_t rec_len,
                         uint8_t *type, uint8_t **plain, size_t *plain_len);

#endif
