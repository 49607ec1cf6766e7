/* Certificates and private keys: loading, chain verification with
 * X509_STORE, and the mapping from X509_V_ERR_* to TLS alerts. */
#ifndef KX_CRYPTO_X509_H
#define KX_CRYPTO_X509_H

#include "core/buf.h"
#include "crypto/crypto.h"
#include <stdbool.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define KX_MAX_CHAIN 10

/* A certificate chain (DER, leaf first) with its private key. */
typedef struct {
    uint8_t *der[KX_MAX_CHAIN];
    size_t der_len[KX_MAX_CHAIN];
    size_t count;
    EVP_PKEY *key;  /* private key; matches der[0] */
    X509 *leaf;     /* der[0] parsed once at load: the names a server's SNI is matched against */
    kx_signer signer; /* signing contexts for `key`, prepared once at load (kx_sign_with) */
} kx_certkey;

/* Whether the leaf of ck names `host` (DNS SAN, wildcards as RFC 6125; an IP
 * literal against IP SANs). */
bool kx_certkey_names(const kx_certkey *ck, const char *host);

/* Bytes to parse, and the name error messages give them (a file name, or
 * e.g. "CA buffer" for memory input). */
typedef struct {
    const uint8_t *data;
    size_t len;
    const char *name;
} kx_input;

/* Read a whole file into memory (OPENSSL_malloc'ed; the caller frees it,
 * with OPENSSL_clear_free when `secret`, and then every intermediate copy has
 * been wiped already).  On failure "FILE: reason" in err and -1. */
int kx_read_file(const char *path, bool secret, uint8_t **data, size_t *len, char *err, size_t errlen);

/* Load a chain (PEM blocks, leaf first, or DER certificates one after the
 * other) and a private key (PEM or DER, PKCS#8 or traditional); formats are
 * detected.  Checks the key matches the leaf.  On failure writes
 * "NAME: problem" into err, leaves *ck empty and returns -1. */
int kx_certkey_load_mem(kx_certkey *ck, const kx_input *chain, const kx_input *key, char *err, size_t errlen);
/* The same with a key object: takes its own reference on `key`, which must
 * hold the private half. */
int kx_certkey_load_pkey(kx_certkey *ck, const kx_input *chain, EVP_PKEY *key, const char *key_name, char *err,
                         size_t errlen);
/* The same from files: reads them (the key's bytes are wiped after) and
 * parses them as kx_certkey_load_mem does. */
int kx_certkey_load(kx_certkey *ck, const char *cert_file, const char *key_file, char *err, size_t errlen);
void kx_certkey_free(kx_certkey *ck);

/* Trust: an X509_STORE with the CA certificates (or the system default
 * paths when ca is NULL) and optional CRLs (crl NULL: none); PEM or DER. */
typedef struct kx_trust kx_trust;
kx_trust *kx_trust_new_mem(const kx_input *ca, const kx_input *crl, char *err, size_t errlen);
/* The same from files (read, then parsed as kx_trust_new_mem does). */
kx_trust *kx_trust_new(const char *ca_file, const char *crl_file, char *err, size_t errlen);
void kx_trust_free(kx_trust *t);
/* How many intermediates were served from the parsed-certificate cache
 * (tests and benchmarks). */
unsigned long kx_trust_cache_hits(kx_trust *t);

/* Verified-chain cache (issue 14): up to `entries` chains that passed
 * kx_trust_verify are not verified again while every certificate of the built
 * chain is valid and before the earliest CRL nextUpdate; the name check still
 * runs each time.  0 (the default of a new trust store) turns it off; a
 * changed size empties it.  Not to be called while another thread verifies
 * with `t`.  -1 when out of memory (the cache is then off). */
int kx_trust_set_verify_cache(kx_trust *t, size_t entries);
/* Verifications answered from that cache (tests and benchmarks). */
unsigned long kx_trust_verify_cache_hits(kx_trust *t);
/* Tests: verify (and judge cache entries) as of `now` instead of the clock;
 * 0 returns to the clock. */
void kx_trust_set_time(kx_trust *t, time_t now);

/* Verify a peer chain (DER, leaf first).
 *  - host: client side, the name (or IP literal) to match; NULL = no name check.
 *  - peer_is_server: chooses the purpose (TLS server vs TLS client).
 * On success *leaf_pub is the leaf's public key (caller frees) and `subject`
 * holds the leaf's one-line subject (e.g. "CN=localhost,O=ktlsx").
 * On failure: alert per RFC 8446 §6.2 (unknown_ca, certificate_expired,
 * certificate_revoked, bad_certificate, unsupported_certificate, ...) and a
 * reason such as "certificate verify failed: certificate has expired". */
KX_RESULT kx_trust_verify(kx_trust *t, const uint8_t *const *der, const size_t *der_len, size_t count,
                          const char *host, int peer_is_server, EVP_PKEY **leaf_pub,
                          char *subject, size_t subjectlen);

/* Without verification (--insecure): parse the leaf, return its key and subject. */
KX_RESULT kx_cert_leaf_key(const uint8_t *der, size_t der_len, EVP_PKEY **leaf_pub, char *subject, size_t subjectlen);

#endif
