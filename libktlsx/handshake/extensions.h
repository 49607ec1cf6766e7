/* TLS extensions: which message may carry which extension (RFC 8446 §4.2),
 * and a parser that splits an extension block into per-extension readers,
 * rejecting duplicates and extensions the message may not carry. */
#ifndef KX_HANDSHAKE_EXTENSIONS_H
#define KX_HANDSHAKE_EXTENSIONS_H

#include "core/buf.h"
#include <stdbool.h>

/* Extension code points (IANA). */
enum {
    KX_EXT_TYPE_SERVER_NAME = 0,
    KX_EXT_TYPE_STATUS_REQUEST = 5,
    KX_EXT_TYPE_SUPPORTED_GROUPS = 10,
    KX_EXT_TYPE_EC_POINT_FORMATS = 11,
    KX_EXT_TYPE_SIGNATURE_ALGORITHMS = 13,
    KX_EXT_TYPE_ALPN = 16,
    KX_EXT_TYPE_SCT = 18,
    KX_EXT_TYPE_PADDING = 21,
    KX_EXT_TYPE_ENCRYPT_THEN_MAC = 22,
    KX_EXT_TYPE_EXTENDED_MASTER_SECRET = 23,
    KX_EXT_TYPE_RECORD_SIZE_LIMIT = 28,
    KX_EXT_TYPE_SESSION_TICKET = 35,
    KX_EXT_TYPE_PRE_SHARED_KEY = 41,
    KX_EXT_TYPE_EARLY_DATA = 42,
    KX_EXT_TYPE_SUPPORTED_VERSIONS = 43,
    KX_EXT_TYPE_COOKIE = 44,
    KX_EXT_TYPE_PSK_KEY_EXCHANGE_MODES = 45,
    KX_EXT_TYPE_CERTIFICATE_AUTHORITIES = 47,
    KX_EXT_TYPE_SIGNATURE_ALGORITHMS_CERT = 50,
    KX_EXT_TYPE_KEY_SHARE = 51,
    KX_EXT_TYPE_RENEGOTIATION_INFO = 0xff01,
};

/* Dense index of the extensions we understand (bit positions). */
typedef enum {
    KX_EXT_SERVER_NAME,
    KX_EXT_STATUS_REQUEST,
    KX_EXT_SUPPORTED_GROUPS,
    KX_EXT_EC_POINT_FORMATS,
    KX_EXT_SIGNATURE_ALGORITHMS,
    KX_EXT_ALPN,
    KX_EXT_SCT,
    KX_EXT_PADDING,
    KX_EXT_ENCRYPT_THEN_MAC,
    KX_EXT_EXTENDED_MASTER_SECRET,
    KX_EXT_SESSION_TICKET,
    KX_EXT_PRE_SHARED_KEY,
    KX_EXT_EARLY_DATA,
    KX_EXT_SUPPORTED_VERSIONS,
    KX_EXT_COOKIE,
    KX_EXT_PSK_KEY_EXCHANGE_MODES,
    KX_EXT_CERTIFICATE_AUTHORITIES,
    KX_EXT_SIGNATURE_ALGORITHMS_CERT,
    KX_EXT_KEY_SHARE,
    KX_EXT_RENEGOTIATION_INFO,
    KX_EXT_RECORD_SIZE_LIMIT, /* RFC 8449 (issue 9, helper rsl) */
    KX_EXT_COUNT
} kx_ext;

/* The messages that carry extensions (RFC 8446 §4.2 column headings, plus TLS 1.2's ServerHello). */
typedef enum {
    KX_IN_CH = 1 << 0,   /* ClientHello */
    KX_IN_SH = 1 << 1,   /* ServerHello (TLS 1.3) */
    KX_IN_EE = 1 << 2,   /* EncryptedExtensions */
    KX_IN_CT = 1 << 3,   /* Certificate entry */
    KX_IN_CR = 1 << 4,   /* CertificateRequest */
    KX_IN_NST = 1 << 5,  /* NewSessionTicket */
    KX_IN_HRR = 1 << 6,  /* HelloRetryRequest */
    KX_IN_SH12 = 1 << 7, /* ServerHello (TLS 1.2) */
} kx_ext_msg;

typedef struct {
    uint32_t present;              /* bit i set: extension i present */
    kx_reader data[KX_EXT_COUNT];  /* its extension_data */
    bool psk_last;                 /* pre_shared_key was the last extension (RFC 8446 §4.2.11) */
    size_t psk_offset;             /* offset of pre_shared_key's data within the message body (binders) */
} kx_exts;

static inline bool kx_has_ext(const kx_exts *e, kx_ext i) { return (e->present >> i) & 1u; }

/* Parse an extensions block (the vector body) found in message `msg`.
 * Unknown extensions are ignored in ClientHello and CertificateRequest (as the
 * RFC requires), and rejected with unsupported_extension elsewhere;
 * `allowed_unsolicited` is the set a peer may send without us offering
 * (bitmask of kx_ext; used for responses: only what we offered may come back). */
KX_RESULT kx_exts_parse(kx_reader *block, kx_ext_msg msg, uint32_t offered, kx_exts *out);

/* ---- conformance (issue 13): lists read to the end ----
 * Read a list of 16-bit code points (the body of a supported_groups,
 * signature_algorithms or similar vector: even length, at least one entry)
 * to its very end, keeping in `out` only the entries `keep` accepts, each
 * once, in the peer's order.  Long lists (unknown or GREASE values first) lose
 * nothing we could use: what is kept is bounded by what we support, not by
 * position.  `cap` must hold every distinct value `keep` accepts; should it
 * not, the call fails (internal_error) rather than drop a usable entry. */
typedef bool (*kx_u16_keep_fn)(uint16_t v, const void *arg);
KX_RESULT kx_read_u16_list_kept(kx_reader list, kx_u16_keep_fn keep, const void *arg, uint16_t *out, size_t cap,
                                size_t *count);

/* ---- record_size_limit (RFC 8449; issue 9, helper rsl) ----
 * The extension's value is the largest TLSPlaintext (TLS 1.2) or
 * TLSInnerPlaintext (TLS 1.3: content + type byte + padding) a peer may send
 * us.  Protocol maxima: 2^14 in TLS 1.2, 2^14 + 1 in TLS 1.3. */
#define KX_RSL_MIN 64
#define KX_RSL_MAX12 16384
#define KX_RSL_MAX13 16385
/* Parse extension_data: exactly one uint16, at least 64 (illegal_parameter
 * otherwise, RFC 8449 §4).  Larger than the protocol maximum is allowed (a
 * future version may permit it): kx_rsl_plain caps it. */
KX_RESULT kx_rsl_parse(kx_reader d, uint16_t *value);
/* The value to put on the wire for `version` (capped at its maximum). */
uint16_t kx_rsl_wire(uint16_t value, uint16_t version);
/* Largest content (plaintext without the TLS 1.3 type byte) a record under
 * `value` may carry in `version`: 1.3 min(value, 2^14 + 1) - 1, 1.2 min(value, 2^14). */
uint16_t kx_rsl_plain(uint16_t value, uint16_t version);

/* Code point of a dense index. */
uint16_t kx_ext_type(kx_ext i);
const char *kx_ext_name(kx_ext i);

#endif
