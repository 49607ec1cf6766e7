/* Crypto glue: the only place that talks to OpenSSL libcrypto (never libssl).
 *
 * Algorithms (EVP_MD, EVP_CIPHER) are fetched once at first
 * use (kx_crypto_init, thread-safe) and reused: the handshake rate depends on
 * not re-fetching per handshake. */
#ifndef KX_CRYPTO_CRYPTO_H
#define KX_CRYPTO_CRYPTO_H

#include "core/buf.h"
#include <openssl/evp.h>

#define KX_MAX_HASH 48
#define KX_MAX_KEY 32
#define KX_AEAD_TAG 16
#define KX_AEAD_NONCE 12

/* ---- identifiers (IANA) ---- */
enum {
    KX_GROUP_SECP256R1 = 0x0017,
    KX_GROUP_SECP384R1 = 0x0018,
    KX_GROUP_X25519 = 0x001d,
    /* conf-b: the other groups OpenSSL offers */
    KX_GROUP_SECP521R1 = 0x0019,
    KX_GROUP_X448 = 0x001e,
};
enum {
    KX_SIG_RSA_PKCS1_SHA256 = 0x0401,
    KX_SIG_RSA_PKCS1_SHA384 = 0x0501,
    KX_SIG_RSA_PKCS1_SHA512 = 0x0601,
    KX_SIG_ECDSA_SECP256R1_SHA256 = 0x0403,
    KX_SIG_ECDSA_SECP384R1_SHA384 = 0x0503,
    KX_SIG_ECDSA_SECP521R1_SHA512 = 0x0603,
    KX_SIG_RSA_PSS_RSAE_SHA256 = 0x0804,
    KX_SIG_RSA_PSS_RSAE_SHA384 = 0x0805,
    KX_SIG_RSA_PSS_RSAE_SHA512 = 0x0806,
    KX_SIG_ED25519 = 0x0807,
    KX_SIG_ED448 = 0x0808, /* conf-b */
    KX_SIG_RSA_PSS_PSS_SHA256 = 0x0809,
    KX_SIG_RSA_PSS_PSS_SHA384 = 0x080a,
    KX_SIG_RSA_PSS_PSS_SHA512 = 0x080b,
};

typedef enum { KX_HASH_SHA256 = 0, KX_HASH_SHA384 = 1 } kx_hash_id;
/* AES-128-CCM (conf-b): TLS 1.3 TLS_AES_128_CCM_SHA256 only, 16-byte tag. */
typedef enum {
    KX_AEAD_AES_128_GCM = 0,
    KX_AEAD_AES_256_GCM = 1,
    KX_AEAD_CHACHA20_POLY1305 = 2,
    KX_AEAD_AES_128_CCM = 3,
} kx_aead_id;
#define KX_AEAD_COUNT 4
typedef enum { KX_KX_TLS13 = 0, KX_KX_ECDHE_ECDSA, KX_KX_ECDHE_RSA, KX_KX_RSA } kx_kex_kind;

/* One row per cipher suite we implement (TLS 1.3 and TLS 1.2). */
typedef struct {
    uint16_t id;
    const char *name;         /* IANA name, e.g. "TLS_AES_128_GCM_SHA256" */
    const char *openssl_name; /* OpenSSL name, e.g. "ECDHE-RSA-AES128-GCM-SHA256" (1.3: same as IANA) */
    uint16_t version;         /* 0x0304 or 0x0303 */
    kx_kex_kind kex;
    kx_aead_id aead;
    kx_hash_id hash;          /* HKDF hash (1.3) or PRF hash (1.2) */
    uint8_t key_len;          /* 16 or 32 */
    uint8_t fixed_iv_len;     /* 12 (1.3 and ChaCha) or 4 (1.2 GCM salt) */
} kx_suite;

const kx_suite *kx_suite_by_id(uint16_t id);
/* Accepts the IANA or the OpenSSL name. */
const kx_suite *kx_suite_by_name(const char *name);
/* All suites, in our default preference order; *count set. */
const kx_suite *kx_suites_all(size_t *count);

const char *kx_group_name(uint16_t group);        /* "x25519", "secp256r1", "secp384r1" */
uint16_t kx_group_by_name(const char *name);      /* also "P-256", "P-384", "X25519"; 0 if unknown */
const char *kx_sigalg_name(uint16_t sigalg);      /* "ecdsa_secp256r1_sha256", ...; NULL if unknown */

/* Idempotent; fetches every algorithm once. Returns 0 or -1. */
int kx_crypto_init(void);

/* Handles fetched by kx_crypto_init for the other crypto/ sources (sig.c needs
 * SHA-512, aead.c the ciphers); NULL if initialisation failed. */
const EVP_MD *kx_md_sha512(void);
const EVP_CIPHER *kx_aead_cipher(kx_aead_id id);

/* ---- hashing, HMAC, HKDF ---- */
size_t kx_hash_len(kx_hash_id h);
const EVP_MD *kx_hash_md(kx_hash_id h);
KX_RESULT kx_hash(kx_hash_id h, const uint8_t *data, size_t len, uint8_t *out);
KX_RESULT kx_hmac(kx_hash_id h, const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t *out);
/* out = HKDF-Extract(salt, ikm), hash-length bytes. salt may be NULL/0 (= zeros). */
KX_RESULT kx_hkdf_extract(kx_hash_id h, const uint8_t *salt, size_t saltlen, const uint8_t *ikm, size_t ikmlen, uint8_t *out);
/* RFC 8446 §7.1 HKDF-Expand-Label; `label` without the "tls13 " prefix. */
KX_RESULT kx_hkdf_expand_label(kx_hash_id h, const uint8_t *secret, const char *label,
                               const uint8_t *context, size_t ctxlen, uint8_t *out, size_t outlen);
/* A secret (hash-length bytes) prepared once for several HKDF-Expand-Label
 * calls: the HMAC inner and outer digest states after the padded key are kept
 * and copied per label instead of rehashing the key block twice per label.
 * Holds key-derived state: kx_hkdf_key_free (safe on a zeroed or freed key) cleanses it. */
typedef struct {
    kx_hash_id hash;
    EVP_MD_CTX *work, *inner, *outer;
} kx_hkdf_key;
KX_RESULT kx_hkdf_key_init(kx_hkdf_key *k, kx_hash_id h, const uint8_t *secret);
void kx_hkdf_key_free(kx_hkdf_key *k);
KX_RESULT kx_hkdf_key_expand_label(kx_hkdf_key *k, const char *label, const uint8_t *context, size_t ctxlen,
                                   uint8_t *out, size_t outlen);
/* Hash of the empty string (Derive-Secret(.., "")), computed once; NULL if init failed. */
const uint8_t *kx_hash_empty(kx_hash_id h);
/* TLS 1.2 PRF (RFC 5246 §5): P_hash with the suite's hash. */
KX_RESULT kx_tls12_prf(kx_hash_id h, const uint8_t *secret, size_t secretlen, const char *label,
                       const uint8_t *seed, size_t seedlen, uint8_t *out, size_t outlen);

/* ---- running transcript hash ----
 * Messages can be added before the hash is known (ClientHello before the
 * server picks a suite): they are buffered and hashed once kx_transcript_set_hash
 * is called.  Copies of the running state give intermediate hashes. */
typedef struct {
    EVP_MD_CTX *ctx;   /* NULL until the hash is known */
    EVP_MD_CTX *scratch; /* kx_transcript_hash finalises a copy here (made with ctx, reused) */
    kx_hash_id hash;
    kx_buf pending;    /* raw messages before the hash is known; also kept for TLS 1.2 client auth */
    int keep_raw;      /* keep every message in `pending` even after hashing (TLS 1.2 CertificateVerify) */
} kx_transcript;

void kx_transcript_init(kx_transcript *t);
void kx_transcript_free(kx_transcript *t);
KX_RESULT kx_transcript_set_hash(kx_transcript *t, kx_hash_id h);
KX_RESULT kx_transcript_add(kx_transcript *t, const uint8_t *msg, size_t len);
/* Current hash value (hash must be set); out gets kx_hash_len bytes. */
KX_RESULT kx_transcript_hash(const kx_transcript *t, uint8_t *out);
/* HelloRetryRequest (RFC 8446 §4.4.1): replace the transcript so far (ClientHello1)
 * with message_hash(0xFE) || 00 00 Hash.len || Hash(ClientHello1). Hash must be set. */
KX_RESULT kx_transcript_hrr_rewrite(kx_transcript *t);

/* ---- ephemeral key exchange ---- */
/* Generate a key pair for `group`; append the public share as sent on the
 * wire (X25519: 32 bytes; NIST: uncompressed point) to `pub`. */
KX_RESULT kx_kex_keygen(uint16_t group, EVP_PKEY **priv, kx_buf *pub);
/* Shared secret from our private key and the peer's share; fails with
 * illegal_parameter on an invalid share. *secretlen <= 66. */
KX_RESULT kx_kex_derive(uint16_t group, EVP_PKEY *priv, const uint8_t *peer, size_t peerlen,
                        uint8_t *secret, size_t *secretlen);

/* ---- signatures ---- */
/* Can `key` (private or public) make/check signatures with `sigalg`?
 * tls13 = 1 applies TLS 1.3 rules (no PKCS#1 v1.5, ECDSA curve bound to hash). */
int kx_sigalg_fits_key(uint16_t sigalg, EVP_PKEY *key, int tls13);
/* conf-b: whether `len` can be a signature by `pub` at all (RSA: exactly the
 * modulus size; EdDSA: fixed; ECDSA: at most the largest DER encoding), so a
 * signature of an impossible length is decode_error before any verification. */
int kx_sig_length_ok(EVP_PKEY *pub, size_t len);
KX_RESULT kx_sign(uint16_t sigalg, EVP_PKEY *priv, const uint8_t *msg, size_t len, kx_buf *sig_out);
/* Signing contexts prepared once per private key (sign_init, digest and
 * padding set) for each SignatureScheme the key can make, except EdDSA
 * (one-shot over the whole message).  kx_sign_with signs a digest with a
 * duplicate of the prepared context (EVP_PKEY_CTX_dup: no key-type lookup,
 * no provider fetch per signature) and falls back to kx_sign for a scheme
 * without one.  The prepared contexts are only read (duplicated), so one
 * kx_signer may serve several threads. */
#define KX_SIGNER_SLOTS 6
typedef struct {
    EVP_PKEY_CTX *ctx[KX_SIGNER_SLOTS];
    uint16_t sigalg[KX_SIGNER_SLOTS];
    size_t count;
} kx_signer;
/* Prepares what it can; a scheme that fails to prepare is simply left to kx_sign. */
void kx_signer_init(kx_signer *s, EVP_PKEY *priv);
void kx_signer_free(kx_signer *s);
KX_RESULT kx_sign_with(const kx_signer *s, uint16_t sigalg, EVP_PKEY *priv, const uint8_t *msg, size_t len,
                       kx_buf *sig_out);
/* Fails with decrypt_error when the signature does not verify. */
KX_RESULT kx_verify(uint16_t sigalg, EVP_PKEY *pub, const uint8_t *msg, size_t len,
                    const uint8_t *sig, size_t siglen);

/* ---- AEAD ---- */
typedef struct kx_aead kx_aead;
KX_RESULT kx_aead_new(kx_aead **out, kx_aead_id id, const uint8_t *key, size_t keylen);
void kx_aead_free(kx_aead *a);
/* out receives ptlen + 16 bytes (ciphertext || tag). out may equal pt. */
KX_RESULT kx_aead_seal(kx_aead *a, const uint8_t nonce[KX_AEAD_NONCE], const uint8_t *aad, size_t aadlen,
                       const uint8_t *pt, size_t ptlen, uint8_t *out);
/* ctlen includes the tag; out receives ctlen - 16 bytes. Fails with
 * bad_record_mac. out may equal ct. */
KX_RESULT kx_aead_open(kx_aead *a, const uint8_t nonce[KX_AEAD_NONCE], const uint8_t *aad, size_t aadlen,
                       const uint8_t *ct, size_t ctlen, uint8_t *out);

/* ---- TLS 1.2 RSA key exchange (legacy, off by default) ---- */
/* Append RSAES-PKCS1-v1_5(pub, msg) to out. */
KX_RESULT kx_rsa_encrypt(EVP_PKEY *pub, const uint8_t *msg, size_t len, kx_buf *out);
/* Decrypt a 48-byte pre-master secret in constant time with implicit
 * rejection: on any padding or version error `pms` receives random bytes
 * instead and nothing else observable differs (RFC 5246 §7.4.7.1). */
KX_RESULT kx_rsa_decrypt_premaster(EVP_PKEY *priv, const uint8_t *enc, size_t len, uint16_t client_version,
                                   uint8_t pms[48]);

/* ---- misc ---- */
KX_RESULT kx_random(void *out, size_t n);
/* Constant-time equality: 1 if equal. */
int kx_ct_equal(const void *a, const void *b, size_t n);

#endif
