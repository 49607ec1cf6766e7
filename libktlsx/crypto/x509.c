/* Certificates and private keys: loading from files or memory (PEM or DER), chain verification with an
 * X509_STORE, and the X509_V_ERR_* -> TLS alert mapping.
 *
 * All libcrypto errors raised here are confined with ERR_set_mark /
 * ERR_pop_to_mark: the outcome is reported through our own "FILE: problem"
 * strings and kx_result, and leaving stale entries on the thread's error queue
 * would make a later, unrelated failure print a misleading OpenSSL reason. */
#include "crypto/x509.h"
#include "core/wipe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

/* Parsed intermediates, kept across handshakes.  A client reconnecting to a
 * server (or a server verifying clients of one CA) receives the same
 * intermediate DER every time, and parsing it costs about as much as an ECDSA
 * verify (OpenSSL 3.0 sets up a public-key decoder per certificate; ~12 % of
 * a full handshake pair, docs/benchmarks.md).  Entries are matched on the
 * exact DER bytes, so a cached object is only ever what parsing those bytes
 * again would give; the chain is still verified in full every time.  Leaves
 * are not cached: on a server they differ per client and would evict the
 * intermediates. */
#define KX_CHAIN_CACHE_SLOTS 8

struct chain_cache_slot {
    uint8_t *der;
    size_t len;
    X509 *cert;
    uint64_t last_use;
};

/* Verified chains (issue 14): X509_verify_cert is about half of a full
 * handshake pair, and a client reconnecting to one server (or a server
 * verifying the same client again) presents the same chain every time.  An
 * entry records that these exact DER bytes, in this role, passed
 * verification against this store; a kx_trust is never modified after it is
 * built (a CA or CRL change builds a new one), so the store's generation is
 * the kx_trust itself and a change drops every entry with it.  The name check
 * is per connection and runs on every hit.  An entry is used only inside
 * [latest notBefore, earliest notAfter] of the built chain (trust anchor
 * included) and before the earliest CRL nextUpdate of the store. */
struct verified_chain {
    uint8_t key[SHA256_DIGEST_LENGTH]; /* role byte, then length + DER of each certificate */
    X509 *leaf;                        /* for the per-connection name check */
    EVP_PKEY *pub;                     /* the leaf's key, handed out with a new reference */
    char *subject;
    time_t not_before, not_after;
    uint64_t last_use; /* 0: free */
};

struct kx_trust {
    X509_STORE *store;
    CRYPTO_RWLOCK *cache_lock; /* one trust store serves every connection of a config */
    struct chain_cache_slot cache[KX_CHAIN_CACHE_SLOTS];
    uint64_t cache_clock;
    unsigned long cache_hits;
    /* ---- verified-chain cache (issue 14), under cache_lock ---- */
    struct verified_chain *vc;
    size_t vc_cap;          /* 0: off */
    unsigned long vc_hits;
    time_t crl_next_update; /* earliest nextUpdate of the store's CRLs; 0: no bound */
    EVP_MD *sha256;         /* fetched once: no provider lookup per handshake */
    time_t fixed_now;       /* tests: the verification time; 0 = the clock */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* True when the last queued error is the PEM reader running out of input,
 * which is how a PEM_read_bio_* loop learns it has seen every block. */
static int pem_at_end(void)
{
    unsigned long e = ERR_peek_last_error();
    return e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

/* Read a whole file into memory (the file variants then take the memory
 * path, so files and buffers are parsed by the same code).  `secret`: the
 * bytes are a private key, so every buffer they pass through is wiped.
 * Reports the OS reason: "no such file" is the most common configuration
 * mistake and deserves a precise message. */
#define KX_MAX_INPUT_FILE (64u << 20) /* far above any chain, key or CA bundle */

int kx_read_file(const char *path, bool secret, uint8_t **data, size_t *len, char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        set_err(err, errlen, "%s: cannot open: %s", path, e ? strerror(e) : "unknown error");
        return -1;
    }
    if (secret) setvbuf(f, NULL, _IONBF, 0); /* no stdio buffer holding key bytes after fclose */
    size_t cap = 0, n = 0;
    uint8_t *buf = NULL;
    int rc = -1;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            if (cap >= KX_MAX_INPUT_FILE) {
                set_err(err, errlen, "%s: larger than %u bytes", path, KX_MAX_INPUT_FILE);
                goto out;
            }
            /* By hand rather than realloc, so the old block can be wiped. */
            uint8_t *nbuf = OPENSSL_malloc(ncap);
            if (nbuf == NULL) {
                set_err(err, errlen, "%s: out of memory", path);
                goto out;
            }
            if (n) memcpy(nbuf, buf, n);
            OPENSSL_clear_free(buf, cap);
            buf = nbuf;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        set_err(err, errlen, "%s: read error", path);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    if (rc < 0) {
        OPENSSL_clear_free(buf, cap);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

/* PEM if a PEM header appears anywhere (leading comments or whitespace are
 * common in PEM files); otherwise DER, which always starts with a SEQUENCE. */
static bool looks_pem(const uint8_t *data, size_t len)
{
    static const char begin[] = "-----BEGIN ";
    return memmem(data, len, begin, sizeof(begin) - 1) != NULL;
}

static bool looks_der(const uint8_t *data, size_t len) { return len >= 2 && data[0] == 0x30; }

/* A read-only BIO over the caller's bytes (no copy). */
static BIO *mem_bio(const uint8_t *data, size_t len)
{
    return len <= INT_MAX ? BIO_new_mem_buf(data, (int)len) : NULL;
}

/* ---------------------------------------------------------------- certkey */

/* Encrypted keys are not supported (there is nobody to ask for a passphrase
 * in a server); the callback records that one was wanted so the error can say
 * so instead of a generic decode failure, and never prompts on a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag;
    *(int *)u = 1;
    return -1;
}

static int add_chain_cert(kx_certkey *ck, X509 *x, const char *name, char *err, size_t errlen)
{
    if (ck->count == KX_MAX_CHAIN) {
        X509_free(x);
        set_err(err, errlen, "%s: too many certificates (at most %d)", name, KX_MAX_CHAIN);
        return -1;
    }
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    if (n <= 0) {
        set_err(err, errlen, "%s: cannot encode certificate #%zu", name, ck->count + 1);
        return -1;
    }
    ck->der[ck->count] = der;
    ck->der_len[ck->count] = (size_t)n;
    ck->count++;
    return 0;
}

/* PEM blocks (leaf first), or DER certificates one after the other. */
static int load_chain(kx_certkey *ck, const kx_input *in, char *err, size_t errlen)
{
    if (looks_pem(in->data, in->len)) {
        BIO *b = mem_bio(in->data, in->len);
        if (b == NULL) {
            set_err(err, errlen, "%s: out of memory", in->name);
            return -1;
        }
        int rc = 0;
        X509 *x;
        while (rc == 0 && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
            rc = add_chain_cert(ck, x, in->name, err, errlen);
        if (rc == 0 && !pem_at_end()) {
            set_err(err, errlen, "%s: cannot parse certificate #%zu", in->name, ck->count + 1);
            rc = -1;
        }
        BIO_free(b);
        if (rc < 0) return -1;
    } else if (looks_der(in->data, in->len)) {
        const unsigned char *p = in->data, *end = in->data + in->len;
        while (p < end) {
            const unsigned char *start = p;
            X509 *x = d2i_X509(NULL, &p, end - p);
            if (x == NULL || p <= start) {
                X509_free(x);
                set_err(err, errlen, "%s: cannot parse certificate #%zu (DER)", in->name, ck->count + 1);
                return -1;
            }
            if (add_chain_cert(ck, x, in->name, err, errlen) < 0) return -1;
        }
    }
    if (ck->count == 0) {
        set_err(err, errlen, "%s: no certificate found", in->name);
        return -1;
    }
    return 0;
}

/* After a failed PEM key load: did the input hold a PEM header labelled as a
 * private key at all ("-----BEGIN [RSA |EC |ENCRYPTED ]PRIVATE KEY-----")?
 * The decoder reports "unsupported" both for input without a key and for a
 * corrupt or truncated one, and the user needs to know which. */
static int has_key_block(const kx_input *in)
{
    static const char label[] = "PRIVATE KEY-----";
    const uint8_t *p = in->data, *end = in->data + in->len;
    const uint8_t *hit;
    while ((hit = memmem(p, (size_t)(end - p), label, sizeof(label) - 1)) != NULL) {
        /* Only a BEGIN line counts: look back to the start of the line. */
        const uint8_t *line = hit;
        while (line > in->data && line[-1] != '\n') line--;
        if ((size_t)(hit - line) >= 11 && memcmp(line, "-----BEGIN ", 11) == 0) return 1;
        p = hit + 1;
    }
    return 0;
}

/* PEM or DER; PKCS#8 or the traditional per-algorithm forms.  Both decoders
 * go through the OSSL_DECODER machinery, so every key type the providers know
 * (RSA, RSA-PSS, EC, Ed25519, ...) loads. */
static int load_key(kx_certkey *ck, const kx_input *in, char *err, size_t errlen)
{
    if (looks_pem(in->data, in->len)) {
        BIO *b = mem_bio(in->data, in->len);
        if (b == NULL) {
            set_err(err, errlen, "%s: out of memory", in->name);
            return -1;
        }
        int wanted_password = 0;
        ck->key = PEM_read_bio_PrivateKey(b, NULL, no_password, &wanted_password);
        BIO_free(b);
        if (ck->key != NULL) return 0;
        if (wanted_password)
            set_err(err, errlen, "%s: private key is encrypted (not supported)", in->name);
        else if (!has_key_block(in))
            set_err(err, errlen, "%s: no private key found", in->name);
        else
            set_err(err, errlen, "%s: cannot parse private key", in->name);
        return -1;
    }
    if (!looks_der(in->data, in->len) || in->len > LONG_MAX) {
        set_err(err, errlen, "%s: no private key found (neither PEM nor DER)", in->name);
        return -1;
    }
    const unsigned char *p = in->data;
    ck->key = d2i_AutoPrivateKey(NULL, &p, (long)in->len);
    if (ck->key != NULL && p != in->data + in->len) {
        EVP_PKEY_free(ck->key);
        ck->key = NULL;
    }
    if (ck->key != NULL) return 0;
    set_err(err, errlen, "%s: cannot parse private key (DER)", in->name);
    return -1;
}

/* The private half is there: a public key that matches the leaf would pass
 * X509_check_private_key and fail only at the first signature. */
static int key_is_private(EVP_PKEY *key)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int ok = ctx != NULL && EVP_PKEY_private_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* Every certificate/key loader ends here: the key must belong to the leaf. */
static int check_key_matches(kx_certkey *ck, const char *cert_name, const char *key_name, char *err, size_t errlen)
{
    const unsigned char *p = ck->der[0];
    X509 *leaf = d2i_X509(NULL, &p, (long)ck->der_len[0]);
    if (leaf == NULL) {
        set_err(err, errlen, "%s: cannot parse certificate #1", cert_name);
        return -1;
    }
    int match = X509_check_private_key(leaf, ck->key);
    if (match != 1) {
        X509_free(leaf);
        set_err(err, errlen, "%s: private key does not match certificate", key_name);
        return -1;
    }
    ck->leaf = leaf;
    return 0;
}

bool kx_certkey_names(const kx_certkey *ck, const char *host)
{
    if (ck->leaf == NULL || host == NULL || host[0] == '\0') return false;
    if (X509_check_host(ck->leaf, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1) return true;
    return X509_check_ip_asc(ck->leaf, host, 0) == 1;
}

int kx_certkey_load_mem(kx_certkey *ck, const kx_input *chain, const kx_input *key, char *err, size_t errlen)
{
    memset(ck, 0, sizeof(*ck));
    ERR_set_mark();
    int rc = -1;
    if (load_chain(ck, chain, err, errlen) < 0) goto out;
    if (load_key(ck, key, err, errlen) < 0) goto out;
    if (check_key_matches(ck, chain->name, key->name, err, errlen) < 0) goto out;
    kx_signer_init(&ck->signer, ck->key);
    rc = 0;
out:
    ERR_pop_to_mark();
    if (rc < 0) kx_certkey_free(ck);
    return rc;
}

int kx_certkey_load_pkey(kx_certkey *ck, const kx_input *chain, EVP_PKEY *key, const char *key_name, char *err,
                         size_t errlen)
{
    memset(ck, 0, sizeof(*ck));
    ERR_set_mark();
    int rc = -1;
    if (load_chain(ck, chain, err, errlen) < 0) goto out;
    if (!EVP_PKEY_up_ref(key)) {
        set_err(err, errlen, "%s: cannot take a reference", key_name);
        goto out;
    }
    ck->key = key;
    if (!key_is_private(key)) {
        set_err(err, errlen, "%s: not a private key (public part only)", key_name);
        goto out;
    }
    if (check_key_matches(ck, chain->name, key_name, err, errlen) < 0) goto out;
    kx_signer_init(&ck->signer, ck->key);
    rc = 0;
out:
    ERR_pop_to_mark();
    if (rc < 0) kx_certkey_free(ck);
    return rc;
}

int kx_certkey_load(kx_certkey *ck, const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    memset(ck, 0, sizeof(*ck));
    uint8_t *chain = NULL, *key = NULL;
    size_t chain_len = 0, key_len = 0;
    int rc = -1;
    if (kx_read_file(cert_file, false, &chain, &chain_len, err, errlen) == 0 &&
        kx_read_file(key_file, true, &key, &key_len, err, errlen) == 0) {
        kx_input c = { chain, chain_len, cert_file }, k = { key, key_len, key_file };
        rc = kx_certkey_load_mem(ck, &c, &k, err, errlen);
    }
    OPENSSL_free(chain);
    OPENSSL_clear_free(key, key_len);
    return rc;
}

void kx_certkey_free(kx_certkey *ck)
{
    if (ck == NULL) return;
    for (size_t i = 0; i < ck->count && i < KX_MAX_CHAIN; i++) {
        if (ck->der[i] != NULL) kx_wipe(ck->der[i], ck->der_len[i]);
        OPENSSL_free(ck->der[i]);
    }
    kx_signer_free(&ck->signer);
    /* EVP_PKEY_free clears the key material itself. */
    EVP_PKEY_free(ck->key);
    X509_free(ck->leaf);
    kx_wipe(ck, sizeof(*ck));
}

/* ------------------------------------------------------------------ trust */

/* Trust anchors: PEM (certificates, and CRLs where a bundle carries them,
 * as X509_STORE_load_file did) or DER certificates one after the other.
 * Returns the number of certificates added, -1 on a parse failure. */
static int load_cas(X509_STORE *store, const kx_input *in)
{
    int certs = 0;
    if (looks_pem(in->data, in->len)) {
        BIO *b = mem_bio(in->data, in->len);
        if (b == NULL) return -1;
        STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
        BIO_free(b);
        if (infos == NULL) return -1;
        for (int i = 0; i < sk_X509_INFO_num(infos) && certs >= 0; i++) {
            X509_INFO *info = sk_X509_INFO_value(infos, i);
            if (info->x509 != NULL) certs = X509_STORE_add_cert(store, info->x509) ? certs + 1 : -1;
            if (certs >= 0 && info->crl != NULL && !X509_STORE_add_crl(store, info->crl)) certs = -1;
        }
        sk_X509_INFO_pop_free(infos, X509_INFO_free);
        return certs;
    }
    if (!looks_der(in->data, in->len)) return 0;
    const unsigned char *p = in->data, *end = in->data + in->len;
    while (p < end) {
        const unsigned char *start = p;
        X509 *x = d2i_X509(NULL, &p, end - p);
        int ok = x != NULL && p > start && X509_STORE_add_cert(store, x);
        X509_free(x); /* the store holds its own reference */
        if (!ok) return -1;
        certs++;
    }
    return certs;
}

static int add_crl(X509_STORE *store, X509_CRL *crl, size_t n, const char *name, char *err, size_t errlen)
{
    int ok = X509_STORE_add_crl(store, crl);
    X509_CRL_free(crl); /* the store holds its own reference */
    if (!ok) set_err(err, errlen, "%s: cannot add CRL #%zu", name, n + 1);
    return ok ? 0 : -1;
}

/* CRLs: PEM blocks, or DER CRLs one after the other. */
static int load_crls(X509_STORE *store, const kx_input *in, char *err, size_t errlen)
{
    size_t n = 0;
    if (looks_pem(in->data, in->len)) {
        BIO *b = mem_bio(in->data, in->len);
        if (b == NULL) {
            set_err(err, errlen, "%s: out of memory", in->name);
            return -1;
        }
        int rc = 0;
        X509_CRL *crl;
        while (rc == 0 && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL)
            if ((rc = add_crl(store, crl, n, in->name, err, errlen)) == 0) n++;
        if (rc == 0 && !pem_at_end()) {
            set_err(err, errlen, "%s: cannot parse CRL #%zu", in->name, n + 1);
            rc = -1;
        }
        BIO_free(b);
        if (rc < 0) return -1;
    } else if (looks_der(in->data, in->len)) {
        const unsigned char *p = in->data, *end = in->data + in->len;
        while (p < end) {
            const unsigned char *start = p;
            X509_CRL *crl = d2i_X509_CRL(NULL, &p, end - p);
            if (crl == NULL || p <= start) {
                X509_CRL_free(crl);
                set_err(err, errlen, "%s: cannot parse CRL #%zu (DER)", in->name, n + 1);
                return -1;
            }
            if (add_crl(store, crl, n, in->name, err, errlen) < 0) return -1;
            n++;
        }
    }
    if (n == 0) {
        set_err(err, errlen, "%s: no CRL found", in->name);
        return -1;
    }
    /* Leaf-only checking: intermediates would need their issuers' CRLs too,
     * and a missing one fails closed (unable to get certificate CRL). */
    if (!X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK)) {
        set_err(err, errlen, "%s: cannot enable CRL checking", in->name);
        return -1;
    }
    return 0;
}

/* ASN1_TIME as seconds since the epoch; false when unreadable. */
static bool asn1_to_time(const ASN1_TIME *a, time_t *out)
{
    struct tm tm;
    if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1) return false;
    *out = timegm(&tm);
    return *out != (time_t)-1;
}

/* The earliest nextUpdate of the store's CRLs (the store is complete once
 * built, so this is fixed for its lifetime): after it, a CRL may have been
 * superseded, so no verified chain may be served from the cache past it.
 * 0 when there are no CRLs; a CRL without nextUpdate bounds nothing. */
static time_t earliest_crl_next_update(X509_STORE *store)
{
    time_t earliest = 0;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        time_t next;
        if (crl == NULL) continue;
        if (!asn1_to_time(X509_CRL_get0_nextUpdate(crl), &next)) {
            if (X509_CRL_get0_nextUpdate(crl) != NULL) return 1; /* unreadable: serve nothing from the cache */
            continue;
        }
        if (earliest == 0 || next < earliest) earliest = next;
    }
    return earliest;
}

kx_trust *kx_trust_new_mem(const kx_input *ca, const kx_input *crl, char *err, size_t errlen)
{
    ERR_set_mark();
    kx_trust *t = OPENSSL_zalloc(sizeof(*t));
    if (t == NULL || (t->store = X509_STORE_new()) == NULL ||
        (t->cache_lock = CRYPTO_THREAD_lock_new()) == NULL) {
        set_err(err, errlen, "%s: out of memory", ca != NULL ? ca->name : "trust store");
        goto fail;
    }
    if (ca != NULL) {
        if (load_cas(t->store, ca) <= 0) {
            set_err(err, errlen, "%s: no usable CA certificate found", ca->name);
            goto fail;
        }
    } else if (!X509_STORE_set_default_paths(t->store)) {
        set_err(err, errlen, "%s: cannot load the system trust store", X509_get_default_cert_file());
        goto fail;
    }
    if (crl != NULL && load_crls(t->store, crl, err, errlen) < 0) goto fail;
    if ((t->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        set_err(err, errlen, "%s: SHA-256 unavailable", ca != NULL ? ca->name : "trust store");
        goto fail;
    }
    t->crl_next_update = earliest_crl_next_update(t->store);
    ERR_pop_to_mark();
    return t;
fail:
    ERR_pop_to_mark();
    kx_trust_free(t);
    return NULL;
}

kx_trust *kx_trust_new(const char *ca_file, const char *crl_file, char *err, size_t errlen)
{
    uint8_t *ca = NULL, *crl = NULL;
    size_t ca_len = 0, crl_len = 0;
    kx_trust *t = NULL;
    if ((ca_file == NULL || kx_read_file(ca_file, false, &ca, &ca_len, err, errlen) == 0) &&
        (crl_file == NULL || kx_read_file(crl_file, false, &crl, &crl_len, err, errlen) == 0)) {
        kx_input ca_in = { ca, ca_len, ca_file }, crl_in = { crl, crl_len, crl_file };
        t = kx_trust_new_mem(ca_file ? &ca_in : NULL, crl_file ? &crl_in : NULL, err, errlen);
    }
    OPENSSL_free(ca);
    OPENSSL_free(crl);
    return t;
}

static void vc_drop(struct verified_chain *e)
{
    X509_free(e->leaf);
    EVP_PKEY_free(e->pub);
    OPENSSL_free(e->subject);
    memset(e, 0, sizeof(*e));
}

static void vc_clear(kx_trust *t)
{
    for (size_t i = 0; i < t->vc_cap; i++)
        if (t->vc[i].last_use != 0) vc_drop(&t->vc[i]);
}

int kx_trust_set_verify_cache(kx_trust *t, size_t entries)
{
    if (t == NULL) return -1;
    if (entries == t->vc_cap) return 0;
    struct verified_chain *vc = NULL;
    if (entries > 0 && (vc = OPENSSL_zalloc(entries * sizeof(*vc))) == NULL) return -1;
    if (!CRYPTO_THREAD_write_lock(t->cache_lock)) {
        OPENSSL_free(vc);
        return -1;
    }
    vc_clear(t);
    OPENSSL_free(t->vc);
    t->vc = vc;
    t->vc_cap = entries;
    CRYPTO_THREAD_unlock(t->cache_lock);
    return 0;
}

unsigned long kx_trust_verify_cache_hits(kx_trust *t)
{
    unsigned long hits = 0;
    if (t != NULL && CRYPTO_THREAD_read_lock(t->cache_lock)) {
        hits = t->vc_hits;
        CRYPTO_THREAD_unlock(t->cache_lock);
    }
    return hits;
}

void kx_trust_set_time(kx_trust *t, time_t now)
{
    if (t != NULL) t->fixed_now = now;
}

static time_t trust_now(const kx_trust *t) { return t->fixed_now != 0 ? t->fixed_now : time(NULL); }

void kx_trust_free(kx_trust *t)
{
    if (t == NULL) return;
    for (size_t i = 0; i < KX_CHAIN_CACHE_SLOTS; i++) {
        X509_free(t->cache[i].cert);
        OPENSSL_free(t->cache[i].der);
    }
    vc_clear(t);
    OPENSSL_free(t->vc);
    EVP_MD_free(t->sha256);
    CRYPTO_THREAD_lock_free(t->cache_lock);
    X509_STORE_free(t->store);
    OPENSSL_free(t);
}

/* ------------------------------------------------------------- verification */

/* One static reason per verification error, so the kx_result reason outlives
 * the call without a per-thread buffer.  Texts are X509_verify_cert_error_string
 * of OpenSSL 3.0; codes not listed (newer OpenSSL) get the generic reason. */
static const struct {
    int code;
    const char *reason;
} verify_reasons[] = {
    { X509_V_ERR_UNSPECIFIED, "certificate verify failed: unspecified certificate verification error" },
    { X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, "certificate verify failed: unable to get issuer certificate" },
    { X509_V_ERR_UNABLE_TO_GET_CRL, "certificate verify failed: unable to get certificate CRL" },
    { X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE, "certificate verify failed: unable to decrypt certificate's signature" },
    { X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE, "certificate verify failed: unable to decrypt CRL's signature" },
    { X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY, "certificate verify failed: unable to decode issuer public key" },
    { X509_V_ERR_CERT_SIGNATURE_FAILURE, "certificate verify failed: certificate signature failure" },
    { X509_V_ERR_CRL_SIGNATURE_FAILURE, "certificate verify failed: CRL signature failure" },
    { X509_V_ERR_CERT_NOT_YET_VALID, "certificate verify failed: certificate is not yet valid" },
    { X509_V_ERR_CERT_HAS_EXPIRED, "certificate verify failed: certificate has expired" },
    { X509_V_ERR_CRL_NOT_YET_VALID, "certificate verify failed: CRL is not yet valid" },
    { X509_V_ERR_CRL_HAS_EXPIRED, "certificate verify failed: CRL has expired" },
    { X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD, "certificate verify failed: format error in certificate's notBefore field" },
    { X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD, "certificate verify failed: format error in certificate's notAfter field" },
    { X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD, "certificate verify failed: format error in CRL's lastUpdate field" },
    { X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD, "certificate verify failed: format error in CRL's nextUpdate field" },
    { X509_V_ERR_OUT_OF_MEM, "certificate verify failed: out of memory" },
    { X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, "certificate verify failed: self-signed certificate" },
    { X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, "certificate verify failed: self-signed certificate in certificate chain" },
    { X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "certificate verify failed: unable to get local issuer certificate" },
    { X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, "certificate verify failed: unable to verify the first certificate" },
    { X509_V_ERR_CERT_CHAIN_TOO_LONG, "certificate verify failed: certificate chain too long" },
    { X509_V_ERR_CERT_REVOKED, "certificate verify failed: certificate revoked" },
    { X509_V_ERR_NO_ISSUER_PUBLIC_KEY, "certificate verify failed: issuer certificate doesn't have a public key" },
    { X509_V_ERR_PATH_LENGTH_EXCEEDED, "certificate verify failed: path length constraint exceeded" },
    { X509_V_ERR_INVALID_PURPOSE, "certificate verify failed: unsuitable certificate purpose" },
    { X509_V_ERR_CERT_UNTRUSTED, "certificate verify failed: certificate not trusted" },
    { X509_V_ERR_CERT_REJECTED, "certificate verify failed: certificate rejected" },
    { X509_V_ERR_SUBJECT_ISSUER_MISMATCH, "certificate verify failed: subject issuer mismatch" },
    { X509_V_ERR_AKID_SKID_MISMATCH, "certificate verify failed: authority and subject key identifier mismatch" },
    { X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH, "certificate verify failed: authority and issuer serial number mismatch" },
    { X509_V_ERR_KEYUSAGE_NO_CERTSIGN, "certificate verify failed: key usage does not include certificate signing" },
    { X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER, "certificate verify failed: unable to get CRL issuer certificate" },
    { X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, "certificate verify failed: unhandled critical extension" },
    { X509_V_ERR_KEYUSAGE_NO_CRL_SIGN, "certificate verify failed: key usage does not include CRL signing" },
    { X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION, "certificate verify failed: unhandled critical CRL extension" },
    { X509_V_ERR_INVALID_NON_CA, "certificate verify failed: invalid non-CA certificate (has CA markings)" },
    { X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED, "certificate verify failed: proxy path length constraint exceeded" },
    { X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE, "certificate verify failed: key usage does not include digital signature" },
    { X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED, "certificate verify failed: proxy certificates not allowed, please set the appropriate flag" },
    { X509_V_ERR_INVALID_EXTENSION, "certificate verify failed: invalid or inconsistent certificate extension" },
    { X509_V_ERR_INVALID_POLICY_EXTENSION, "certificate verify failed: invalid or inconsistent certificate policy extension" },
    { X509_V_ERR_NO_EXPLICIT_POLICY, "certificate verify failed: no explicit policy" },
    { X509_V_ERR_DIFFERENT_CRL_SCOPE, "certificate verify failed: different CRL scope" },
    { X509_V_ERR_UNSUPPORTED_EXTENSION_FEATURE, "certificate verify failed: unsupported extension feature" },
    { X509_V_ERR_UNNESTED_RESOURCE, "certificate verify failed: RFC 3779 resource not subset of parent's resources" },
    { X509_V_ERR_PERMITTED_VIOLATION, "certificate verify failed: permitted subtree violation" },
    { X509_V_ERR_EXCLUDED_VIOLATION, "certificate verify failed: excluded subtree violation" },
    { X509_V_ERR_SUBTREE_MINMAX, "certificate verify failed: name constraints minimum and maximum not supported" },
    { X509_V_ERR_APPLICATION_VERIFICATION, "certificate verify failed: application verification failure" },
    { X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE, "certificate verify failed: unsupported name constraint type" },
    { X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX, "certificate verify failed: unsupported or invalid name constraint syntax" },
    { X509_V_ERR_UNSUPPORTED_NAME_SYNTAX, "certificate verify failed: unsupported or invalid name syntax" },
    { X509_V_ERR_CRL_PATH_VALIDATION_ERROR, "certificate verify failed: CRL path validation error" },
    { X509_V_ERR_PATH_LOOP, "certificate verify failed: path loop" },
    { X509_V_ERR_SUITE_B_INVALID_VERSION, "certificate verify failed: Suite B: certificate version invalid" },
    { X509_V_ERR_SUITE_B_INVALID_ALGORITHM, "certificate verify failed: Suite B: invalid public key algorithm" },
    { X509_V_ERR_SUITE_B_INVALID_CURVE, "certificate verify failed: Suite B: invalid ECC curve" },
    { X509_V_ERR_SUITE_B_INVALID_SIGNATURE_ALGORITHM, "certificate verify failed: Suite B: invalid signature algorithm" },
    { X509_V_ERR_SUITE_B_LOS_NOT_ALLOWED, "certificate verify failed: Suite B: curve not allowed for this LOS" },
    { X509_V_ERR_SUITE_B_CANNOT_SIGN_P_384_WITH_P_256, "certificate verify failed: Suite B: cannot sign P-384 with P-256" },
    { X509_V_ERR_HOSTNAME_MISMATCH, "certificate verify failed: hostname mismatch" },
    { X509_V_ERR_EMAIL_MISMATCH, "certificate verify failed: email address mismatch" },
    { X509_V_ERR_IP_ADDRESS_MISMATCH, "certificate verify failed: IP address mismatch" },
    { X509_V_ERR_DANE_NO_MATCH, "certificate verify failed: no matching DANE TLSA records" },
    { X509_V_ERR_EE_KEY_TOO_SMALL, "certificate verify failed: EE certificate key too weak" },
    { X509_V_ERR_CA_KEY_TOO_SMALL, "certificate verify failed: CA certificate key too weak" },
    { X509_V_ERR_CA_MD_TOO_WEAK, "certificate verify failed: CA signature digest algorithm too weak" },
    { X509_V_ERR_INVALID_CALL, "certificate verify failed: invalid certificate verification context" },
    { X509_V_ERR_STORE_LOOKUP, "certificate verify failed: issuer certificate lookup error" },
    { X509_V_ERR_NO_VALID_SCTS, "certificate verify failed: Certificate Transparency required, but no valid SCTs found" },
    { X509_V_ERR_PROXY_SUBJECT_NAME_VIOLATION, "certificate verify failed: proxy subject name violation" },
    { X509_V_ERR_OCSP_VERIFY_NEEDED, "certificate verify failed: OCSP verification needed" },
    { X509_V_ERR_OCSP_VERIFY_FAILED, "certificate verify failed: OCSP verification failed" },
    { X509_V_ERR_OCSP_CERT_UNKNOWN, "certificate verify failed: OCSP unknown cert" },
    { X509_V_ERR_UNSUPPORTED_SIGNATURE_ALGORITHM, "certificate verify failed: Cannot find certificate signature algorithm" },
    { X509_V_ERR_SIGNATURE_ALGORITHM_MISMATCH, "certificate verify failed: subject signature algorithm and issuer public key algorithm mismatch" },
    { X509_V_ERR_SIGNATURE_ALGORITHM_INCONSISTENCY, "certificate verify failed: cert info signature and signature algorithm mismatch" },
    { X509_V_ERR_INVALID_CA, "certificate verify failed: invalid CA certificate" },
    { X509_V_ERR_PATHLEN_INVALID_FOR_NON_CA, "certificate verify failed: Path length invalid for non-CA cert" },
    { X509_V_ERR_PATHLEN_WITHOUT_KU_KEY_CERT_SIGN, "certificate verify failed: Path length given without key usage keyCertSign" },
    { X509_V_ERR_KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA, "certificate verify failed: Key usage keyCertSign invalid for non-CA cert" },
    { X509_V_ERR_ISSUER_NAME_EMPTY, "certificate verify failed: Issuer name empty" },
    { X509_V_ERR_SUBJECT_NAME_EMPTY, "certificate verify failed: Subject name empty" },
    { X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER, "certificate verify failed: Missing Authority Key Identifier" },
    { X509_V_ERR_MISSING_SUBJECT_KEY_IDENTIFIER, "certificate verify failed: Missing Subject Key Identifier" },
    { X509_V_ERR_EMPTY_SUBJECT_ALT_NAME, "certificate verify failed: Empty Subject Alternative Name extension" },
    { X509_V_ERR_EMPTY_SUBJECT_SAN_NOT_CRITICAL, "certificate verify failed: Subject empty and Subject Alt Name extension not critical" },
    { X509_V_ERR_CA_BCONS_NOT_CRITICAL, "certificate verify failed: Basic Constraints of CA cert not marked critical" },
    { X509_V_ERR_AUTHORITY_KEY_IDENTIFIER_CRITICAL, "certificate verify failed: Authority Key Identifier marked critical" },
    { X509_V_ERR_SUBJECT_KEY_IDENTIFIER_CRITICAL, "certificate verify failed: Subject Key Identifier marked critical" },
    { X509_V_ERR_CA_CERT_MISSING_KEY_USAGE, "certificate verify failed: CA cert does not include key usage extension" },
    { X509_V_ERR_EXTENSIONS_REQUIRE_VERSION_3, "certificate verify failed: Using cert extension requires at least X509v3" },
    { X509_V_ERR_EC_KEY_EXPLICIT_PARAMS, "certificate verify failed: Certificate public key has explicit ECC parameters" },
};

/* Alert per RFC 8446 §6.2, following OpenSSL's ssl_verify_alarm_type except
 * where RFC 8446 is more specific: "not yet valid" is certificate_expired
 * ("has expired or is not currently valid") and a bad signature is
 * bad_certificate (decrypt_error is for handshake signatures, not certificate
 * ones). */
static uint8_t verify_alert(int err)
{
    switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
        return KX_ALERT_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return KX_ALERT_CERTIFICATE_EXPIRED;
    case X509_V_ERR_CERT_REVOKED:
        return KX_ALERT_CERTIFICATE_REVOKED;
    case X509_V_ERR_INVALID_PURPOSE:
        return KX_ALERT_UNSUPPORTED_CERTIFICATE;
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_CERT_REJECTED:
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_DANE_NO_MATCH:
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return KX_ALERT_BAD_CERTIFICATE;
    case X509_V_ERR_UNSPECIFIED:
    case X509_V_ERR_OUT_OF_MEM:
    case X509_V_ERR_INVALID_CALL:
    case X509_V_ERR_STORE_LOOKUP:
        return KX_ALERT_INTERNAL_ERROR;
    default:
        return KX_ALERT_CERTIFICATE_UNKNOWN;
    }
}

static const char *verify_reason(int err)
{
    for (size_t i = 0; i < sizeof(verify_reasons) / sizeof(verify_reasons[0]); i++)
        if (verify_reasons[i].code == err) return verify_reasons[i].reason;
    return "certificate verify failed";
}

/* Strict DER: a certificate followed by trailing bytes is malformed, not a
 * certificate plus ignorable padding. */
static X509 *parse_der(const uint8_t *der, size_t len)
{
    if (der == NULL || len == 0 || len > LONG_MAX) return NULL;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL && p != der + len) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* An intermediate certificate: from the cache when these exact DER bytes were
 * parsed before, otherwise parsed and remembered in the least recently used
 * slot.  Returns a reference the caller frees. */
static X509 *parse_intermediate(kx_trust *t, const uint8_t *der, size_t len)
{
    X509 *x = NULL;

    if (der == NULL || len == 0) return NULL;
    if (CRYPTO_THREAD_write_lock(t->cache_lock)) {
        for (size_t i = 0; i < KX_CHAIN_CACHE_SLOTS; i++) {
            struct chain_cache_slot *slot = &t->cache[i];
            if (slot->cert != NULL && slot->len == len && memcmp(slot->der, der, len) == 0 &&
                X509_up_ref(slot->cert)) {
                slot->last_use = ++t->cache_clock;
                t->cache_hits++;
                x = slot->cert;
                break;
            }
        }
        CRYPTO_THREAD_unlock(t->cache_lock);
    }
    if (x != NULL) return x;

    /* Parse outside the lock: it is the slow part. */
    if ((x = parse_der(der, len)) == NULL) return NULL;
    uint8_t *copy = OPENSSL_memdup(der, len);
    if (copy == NULL || !X509_up_ref(x)) {
        OPENSSL_free(copy);
        return x; /* still usable, just not remembered */
    }
    if (!CRYPTO_THREAD_write_lock(t->cache_lock)) {
        OPENSSL_free(copy);
        X509_free(x); /* the reference meant for the cache */
        return x;
    }
    struct chain_cache_slot *victim = &t->cache[0];
    for (size_t i = 1; i < KX_CHAIN_CACHE_SLOTS; i++)
        if (t->cache[i].last_use < victim->last_use) victim = &t->cache[i];
    X509 *old_cert = victim->cert;
    uint8_t *old_der = victim->der;
    victim->cert = x;
    victim->der = copy;
    victim->len = len;
    victim->last_use = ++t->cache_clock;
    CRYPTO_THREAD_unlock(t->cache_lock);
    X509_free(old_cert);
    OPENSSL_free(old_der);
    return x;
}

unsigned long kx_trust_cache_hits(kx_trust *t)
{
    unsigned long hits = 0;

    if (t != NULL && CRYPTO_THREAD_read_lock(t->cache_lock)) {
        hits = t->cache_hits;
        CRYPTO_THREAD_unlock(t->cache_lock);
    }
    return hits;
}

/* RFC 2253 form ("CN=localhost,O=ktlsx test"), most specific RDN first, with
 * UTF-8 left readable (no \XX escapes for non-ASCII); control characters stay
 * escaped since this string ends up in logs. */
static void format_subject(X509 *x, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0) return;
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) return;
    unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, flags) >= 0) {
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && data != NULL) {
            size_t k = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
            memcpy(out, data, k);
            out[k] = '\0';
        }
    }
    BIO_free(b);
}

/* The IP literal `host` names, copied into ip (a bracketed IPv6 literal,
 * "[::1]" as in a URL, unwrapped), or NULL when host is a DNS name. */
static const char *ip_literal(const char *host, char *ip, size_t iplen)
{
    unsigned char addr[16];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < iplen) {
        memcpy(ip, host + 1, n - 2);
        ip[n - 2] = '\0';
        if (inet_pton(AF_INET6, ip, addr) == 1) return ip;
    }
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) return host;
    return NULL;
}

/* Same policy as browsers and curl: "*" must be the whole left label. */
#define KX_HOST_FLAGS X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS

/* Set the name the leaf must carry.  IP literals are matched against iPAddress
 * SANs (set1_host would compare them as DNS names, which RFC 6125 forbids). */
static int set_peer_name(X509_VERIFY_PARAM *vp, const char *host)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *lit = ip_literal(host, ip, sizeof(ip));
    if (lit != NULL) return X509_VERIFY_PARAM_set1_ip_asc(vp, lit);
    X509_VERIFY_PARAM_set_hostflags(vp, KX_HOST_FLAGS);
    return X509_VERIFY_PARAM_set1_host(vp, host, 0);
}

/* The name check of a chain served from the verified-chain cache: what
 * X509_verify_cert's check_id does with the parameters set_peer_name sets,
 * with the same errors. */
static kx_result check_peer_name(X509 *leaf, const char *host)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *lit = ip_literal(host, ip, sizeof(ip));
    if (lit != NULL) {
        if (X509_check_ip_asc(leaf, lit, 0) == 1) return KX_OK;
        return KX_FAIL(verify_alert(X509_V_ERR_IP_ADDRESS_MISMATCH), verify_reason(X509_V_ERR_IP_ADDRESS_MISMATCH));
    }
    if (X509_check_host(leaf, host, 0, KX_HOST_FLAGS, NULL) == 1) return KX_OK;
    return KX_FAIL(verify_alert(X509_V_ERR_HOSTNAME_MISMATCH), verify_reason(X509_V_ERR_HOSTNAME_MISMATCH));
}

/* Validity window of a built chain: [latest notBefore, earliest notAfter]. */
static bool chain_window(STACK_OF(X509) *built, time_t *not_before, time_t *not_after)
{
    *not_before = 0;
    *not_after = 0;
    for (int i = 0; i < sk_X509_num(built); i++) {
        X509 *x = sk_X509_value(built, i);
        time_t nb, na;
        if (!asn1_to_time(X509_get0_notBefore(x), &nb) || !asn1_to_time(X509_get0_notAfter(x), &na)) return false;
        if (i == 0 || nb > *not_before) *not_before = nb;
        if (i == 0 || na < *not_after) *not_after = na;
    }
    return sk_X509_num(built) > 0;
}

/* Full verification.  window (may be NULL): on success, the validity window
 * of the chain X509_verify_cert built, for the verified-chain cache; set to
 * {0, 0} when it cannot be read (then the chain is not cached). */
static kx_result verify_chain(kx_trust *t, X509 *leaf, STACK_OF(X509) *untrusted, const char *host,
                              int peer_is_server, time_t window[2])
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL) return KX_FAIL(KX_ALERT_INTERNAL_ERROR, "out of memory");
    kx_result r = KX_OK;
    if (!X509_STORE_CTX_init(ctx, t->store, leaf, untrusted)) {
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "certificate verification setup failed");
        goto out;
    }
    /* The peer's role picks the purpose: a server must carry serverAuth
     * (or no EKU), a client clientAuth.  "ssl_server"/"ssl_client" are the
     * parameter sets libssl uses, which also select the matching trust. */
    const char *role = peer_is_server ? "ssl_server" : "ssl_client";
    int purpose = peer_is_server ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT;
    if (!X509_STORE_CTX_set_default(ctx, role) || !X509_STORE_CTX_set_purpose(ctx, purpose)) {
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "certificate verification setup failed");
        goto out;
    }
    /* Tests move the clock (kx_trust_set_time); the cache judges by the same time. */
    if (t->fixed_now != 0) X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), t->fixed_now);
    if (host != NULL && !set_peer_name(X509_STORE_CTX_get0_param(ctx), host)) {
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "cannot set the name to verify");
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        /* X509_V_OK with a failed verify means an internal problem (e.g.
         * allocation), not a judgement on the peer's certificate. */
        if (e == X509_V_OK)
            r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "certificate verify failed");
        else
            r = KX_FAIL(verify_alert(e), verify_reason(e));
    } else if (window != NULL && !chain_window(X509_STORE_CTX_get0_chain(ctx), &window[0], &window[1])) {
        window[0] = window[1] = 0;
    }
out:
    X509_STORE_CTX_free(ctx);
    return r;
}

/* The cache key: SHA-256 over the role and every certificate's length and
 * DER, so that neither a changed byte nor a different split of the same
 * bytes into certificates can match an entry. */
static bool chain_key(kx_trust *t, const uint8_t *const *der, const size_t *der_len, size_t count,
                      int peer_is_server, uint8_t key[SHA256_DIGEST_LENGTH])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t role = peer_is_server ? 1 : 0;
    bool ok = md != NULL && EVP_DigestInit_ex(md, t->sha256, NULL) && EVP_DigestUpdate(md, &role, 1);
    for (size_t i = 0; ok && i < count; i++) {
        uint8_t len[4] = { (uint8_t)(der_len[i] >> 24), (uint8_t)(der_len[i] >> 16), (uint8_t)(der_len[i] >> 8),
                           (uint8_t)der_len[i] };
        ok = der[i] != NULL && der_len[i] <= 0xffffff && EVP_DigestUpdate(md, len, sizeof(len)) &&
             EVP_DigestUpdate(md, der[i], der_len[i]);
    }
    ok = ok && EVP_DigestFinal_ex(md, key, NULL);
    EVP_MD_CTX_free(md);
    return ok;
}

/* A cached verdict for `key` usable at `now`: new references to the leaf and
 * its key, and the subject.  An entry past its window is dropped. */
static bool vc_lookup(kx_trust *t, const uint8_t *key, time_t now, X509 **leaf, EVP_PKEY **pub, char *subject,
                      size_t subjectlen)
{
    bool hit = false;
    if (!CRYPTO_THREAD_write_lock(t->cache_lock)) return false;
    for (size_t i = 0; i < t->vc_cap; i++) {
        struct verified_chain *e = &t->vc[i];
        if (e->last_use == 0 || memcmp(e->key, key, SHA256_DIGEST_LENGTH) != 0) continue;
        bool fresh = now >= e->not_before && now < e->not_after &&
                     (t->crl_next_update == 0 || now < t->crl_next_update);
        if (!fresh) {
            vc_drop(e);
        } else if (X509_up_ref(e->leaf)) {
            if (!EVP_PKEY_up_ref(e->pub)) {
                X509_free(e->leaf);
                break;
            }
            *leaf = e->leaf;
            *pub = e->pub;
            if (subject != NULL && subjectlen > 0) {
                size_t n = strlen(e->subject);
                if (n >= subjectlen) n = subjectlen - 1;
                memcpy(subject, e->subject, n);
                subject[n] = '\0';
            }
            e->last_use = ++t->cache_clock;
            t->vc_hits++;
            hit = true;
        }
        break;
    }
    CRYPTO_THREAD_unlock(t->cache_lock);
    return hit;
}

/* Remember a verified chain in a free or the least recently used entry. */
static void vc_insert(kx_trust *t, const uint8_t *key, X509 *leaf, EVP_PKEY *pub, const char *subject,
                      const time_t window[2])
{
    if (window[1] <= window[0]) return;
    char *subj = OPENSSL_strdup(subject);
    if (subj == NULL) return;
    if (!X509_up_ref(leaf)) {
        OPENSSL_free(subj);
        return;
    }
    if (!EVP_PKEY_up_ref(pub)) {
        X509_free(leaf);
        OPENSSL_free(subj);
        return;
    }
    if (!CRYPTO_THREAD_write_lock(t->cache_lock)) {
        X509_free(leaf);
        EVP_PKEY_free(pub);
        OPENSSL_free(subj);
        return;
    }
    struct verified_chain *victim = NULL;
    for (size_t i = 0; i < t->vc_cap; i++) {
        struct verified_chain *e = &t->vc[i];
        /* Another connection verified the same chain meanwhile: replace it. */
        if (e->last_use != 0 && memcmp(e->key, key, SHA256_DIGEST_LENGTH) == 0) {
            victim = e;
            break;
        }
        if (victim == NULL || e->last_use < victim->last_use) victim = e;
    }
    struct verified_chain old = { 0 };
    if (victim != NULL) {
        old = *victim;
        memcpy(victim->key, key, SHA256_DIGEST_LENGTH);
        victim->leaf = leaf;
        victim->pub = pub;
        victim->subject = subj;
        victim->not_before = window[0];
        victim->not_after = window[1];
        victim->last_use = ++t->cache_clock;
        leaf = NULL, pub = NULL, subj = NULL;
    }
    CRYPTO_THREAD_unlock(t->cache_lock);
    if (old.last_use != 0) vc_drop(&old);
    X509_free(leaf);
    EVP_PKEY_free(pub);
    OPENSSL_free(subj);
}

kx_result kx_trust_verify(kx_trust *t, const uint8_t *const *der, const size_t *der_len, size_t count,
                          const char *host, int peer_is_server, EVP_PKEY **leaf_pub,
                          char *subject, size_t subjectlen)
{
    if (leaf_pub != NULL) *leaf_pub = NULL;
    if (subject != NULL && subjectlen > 0) subject[0] = '\0';
    KX_ENSURE(t != NULL, KX_ALERT_INTERNAL_ERROR, "no trust store");
    KX_ENSURE(count > 0, KX_ALERT_BAD_CERTIFICATE, "empty certificate chain");
    /* An empty name would make OpenSSL skip the check silently; refuse it
     * rather than accept any certificate for "". */
    KX_ENSURE(host == NULL || host[0] != '\0', KX_ALERT_INTERNAL_ERROR, "empty host name to verify");

    ERR_set_mark();
    kx_result r = KX_OK;
    X509 *leaf = NULL;
    EVP_PKEY *pub = NULL;
    STACK_OF(X509) *untrusted = NULL;
    uint8_t key[SHA256_DIGEST_LENGTH];
    /* Read without the lock: only a setter changes it, never during handshakes. */
    bool cache = t->vc_cap > 0 && chain_key(t, der, der_len, count, peer_is_server, key);
    time_t now = trust_now(t);

    if (cache && vc_lookup(t, key, now, &leaf, &pub, subject, subjectlen)) {
        if (host != NULL) r = check_peer_name(leaf, host);
        if (!kx_failed(r) && leaf_pub != NULL) {
            *leaf_pub = pub;
            pub = NULL;
        }
        if (kx_failed(r) && subject != NULL && subjectlen > 0) subject[0] = '\0';
        goto out;
    }

    if ((untrusted = sk_X509_new_null()) == NULL) {
        r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "out of memory");
        goto out;
    }
    leaf = parse_der(der[0], der_len[0]);
    if (leaf == NULL) {
        r = KX_FAIL(KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
        goto out;
    }
    for (size_t i = 1; i < count; i++) {
        X509 *x = parse_intermediate(t, der[i], der_len[i]);
        if (x == NULL) {
            r = KX_FAIL(KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
            goto out;
        }
        if (!sk_X509_push(untrusted, x)) {
            X509_free(x);
            r = KX_FAIL(KX_ALERT_INTERNAL_ERROR, "out of memory");
            goto out;
        }
    }
    time_t window[2] = { 0, 0 };
    r = verify_chain(t, leaf, untrusted, host, peer_is_server, window);
    if (kx_failed(r)) goto out;
    if ((pub = X509_get_pubkey(leaf)) == NULL) {
        r = KX_FAIL(KX_ALERT_UNSUPPORTED_CERTIFICATE, "unsupported certificate public key");
        goto out;
    }
    /* Cached only after passing with whatever name was asked: without the
     * name the same chain passes too, and every hit checks its own name. */
    char subj[256];
    format_subject(leaf, subj, sizeof(subj));
    if (subject != NULL && subjectlen > 0) {
        size_t n = strlen(subj);
        if (n >= subjectlen) n = subjectlen - 1;
        memcpy(subject, subj, n);
        subject[n] = '\0';
    }
    if (cache) vc_insert(t, key, leaf, pub, subj, window);
    if (leaf_pub != NULL) {
        *leaf_pub = pub;
        pub = NULL;
    }
out:
    X509_free(leaf);
    EVP_PKEY_free(pub);
    sk_X509_pop_free(untrusted, X509_free);
    ERR_pop_to_mark();
    return r;
}

kx_result kx_cert_leaf_key(const uint8_t *der, size_t der_len, EVP_PKEY **leaf_pub, char *subject, size_t subjectlen)
{
    *leaf_pub = NULL;
    if (subject != NULL && subjectlen > 0) subject[0] = '\0';
    ERR_set_mark();
    kx_result r = KX_OK;
    X509 *leaf = parse_der(der, der_len);
    if (leaf == NULL) {
        r = KX_FAIL(KX_ALERT_BAD_CERTIFICATE, "certificate parse error");
    } else if ((*leaf_pub = X509_get_pubkey(leaf)) == NULL) {
        r = KX_FAIL(KX_ALERT_UNSUPPORTED_CERTIFICATE, "unsupported certificate public key");
    } else {
        format_subject(leaf, subject, subjectlen);
    }
    X509_free(leaf);
    ERR_pop_to_mark();
    return r;
}
