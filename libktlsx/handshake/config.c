/* ktlsx_config: everything a connection inherits.  Setters validate at once
 * and say which file or value is wrong, so a bad command line or config file
 * fails before the first connection. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int config_error(ktlsx_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int config_error(ktlsx_config *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->error, sizeof cfg->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* Signature algorithms we accept and advertise, strongest-and-fastest first.
 * PKCS#1 v1.5 is listed for certificate chains (and TLS 1.2) only; the
 * TLS 1.3 CertificateVerify check refuses it (kx_sigalg_fits_key). */
static const uint16_t default_sigalgs[] = {
    KX_SIG_ECDSA_SECP256R1_SHA256, KX_SIG_ECDSA_SECP384R1_SHA384, KX_SIG_ECDSA_SECP521R1_SHA512,
    KX_SIG_ED25519, KX_SIG_ED448,
    KX_SIG_RSA_PSS_RSAE_SHA256, KX_SIG_RSA_PSS_RSAE_SHA384, KX_SIG_RSA_PSS_RSAE_SHA512,
    KX_SIG_RSA_PSS_PSS_SHA256, KX_SIG_RSA_PSS_PSS_SHA384, KX_SIG_RSA_PSS_PSS_SHA512,
    KX_SIG_RSA_PKCS1_SHA256, KX_SIG_RSA_PKCS1_SHA384, KX_SIG_RSA_PKCS1_SHA512,
};

static void set_default_suites(ktlsx_config *cfg)
{
    size_t n;
    const kx_suite *all = kx_suites_all(&n);
    cfg->suite_count = 0;
    for (size_t i = 0; i < n && cfg->suite_count < KX_MAX_SUITES; i++) {
        /* Legacy RSA key exchange has no forward secrecy: never on by default. */
        if (all[i].kex == KX_KX_RSA) continue;
        /* AES-128-CCM: for peers that need it (constrained devices, kernel
         * consumers); off by default as in OpenSSL, selectable by name. */
        if (all[i].aead == KX_AEAD_AES_128_CCM) continue;
        cfg->suites[cfg->suite_count++] = all[i].id;
    }
}

ktlsx_config *ktlsx_config_new(enum ktlsx_role role)
{
    if (kx_crypto_init() != 0) return NULL;
    ktlsx_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    cfg->role = role;
    pthread_mutex_init(&cfg->trust_lock, NULL);
    pthread_mutex_init(&cfg->keylog_lock, NULL);
    set_default_suites(cfg);
    cfg->groups[0] = KX_GROUP_X25519;
    cfg->groups[1] = KX_GROUP_SECP256R1;
    cfg->groups[2] = KX_GROUP_SECP384R1;
    /* conf-b: as OpenSSL offers them; last, so no key share is spent on them unasked. */
    cfg->groups[3] = KX_GROUP_SECP521R1;
    cfg->groups[4] = KX_GROUP_X448;
    cfg->group_count = 5;
    memcpy(cfg->sigalgs, default_sigalgs, sizeof default_sigalgs);
    cfg->sigalg_count = sizeof default_sigalgs / sizeof default_sigalgs[0];
    cfg->min_version = KTLSX_TLS12;
    cfg->max_version = KTLSX_TLS13;
    cfg->tickets_enabled = true;
    cfg->tickets13 = 2;          /* as OpenSSL: one per parallel connection a browser might open */
    cfg->ticket_lifetime = 7200;
    kx_ticket_keys_init(&cfg->tickets, 3600); /* with KX_TICKET_KEYS kept, a ticket opens for up to 3 hours */
    cfg->psk_hash = KX_HASH_SHA256;
    cfg->max_handshake_message = KX_HANDSHAKE_MESSAGE_DEFAULT; /* conf-b */
    if (role == KTLSX_SERVER) cfg->session_cache = kx_session_cache_new(1024, 300);
    /* 1.0: configuration lifetime (handshake/hooks.c): the caller's reference. */
    atomic_init(&cfg->refs, 1);
    atomic_init(&cfg->conns, 0);
    pthread_rwlock_init(&cfg->change_lock, NULL);
    /* issue 14: verified-chain cache */
    cfg->verify_cache_entries = KTLSX_VERIFY_CACHE_DEFAULT;
    return cfg;
}

void ktlsx_config_free(ktlsx_config *cfg)
{
    if (!cfg) return;
    /* Drops one reference (1.0: configuration lifetime); the last one frees. */
    if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1) return;
    pthread_rwlock_destroy(&cfg->change_lock);
    for (size_t i = 0; i < cfg->cert_count; i++) kx_certkey_free(&cfg->certs[i]);
    kx_trust_free(cfg->trust);
    free(cfg->ca_file);
    free(cfg->crl_file);
    OPENSSL_free(cfg->ca_data);
    OPENSSL_free(cfg->crl_data);
    if (cfg->keylog) fclose(cfg->keylog);
    kx_session_cache_free(cfg->session_cache);
    kx_ticket_keys_free(&cfg->tickets);
    kx_memcached_free(cfg->memcached); /* issue 12 */
    kx_wipe(cfg->psk, sizeof cfg->psk);
    pthread_mutex_destroy(&cfg->trust_lock);
    pthread_mutex_destroy(&cfg->keylog_lock);
    free(cfg);
}

const char *ktlsx_config_error(const ktlsx_config *cfg) { return cfg->error; }

/* Names the memory inputs carry in messages. */
#define CHAIN_BUFFER "certificate chain buffer"
#define KEY_BUFFER "private key buffer"
#define CA_BUFFER "CA buffer"
#define CRL_BUFFER "CRL buffer"

static int cert_slot_free(ktlsx_config *cfg, const char *name)
{
    if (cfg->cert_count < KX_MAX_CERTS) return 0;
    return config_error(cfg, "%s: too many certificates (at most %d)", name, KX_MAX_CERTS);
}

int ktlsx_config_add_cert(ktlsx_config *cfg, const char *cert_file, const char *key_file)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (!cert_file || !key_file) return config_error(cfg, "add_cert: %s file is NULL", cert_file ? "key" : "certificate");
    if (cert_slot_free(cfg, cert_file) != 0) return -1;
    if (kx_certkey_load(&cfg->certs[cfg->cert_count], cert_file, key_file, cfg->error, sizeof cfg->error) != 0)
        return -1;
    cfg->cert_count++;
    return 0;
}

int ktlsx_config_add_cert_mem(ktlsx_config *cfg, const uint8_t *chain, size_t chain_len, const uint8_t *key,
                              size_t key_len)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (!chain || chain_len == 0) return config_error(cfg, CHAIN_BUFFER ": empty (%zu bytes)", chain ? chain_len : 0);
    if (!key || key_len == 0) return config_error(cfg, KEY_BUFFER ": empty (%zu bytes)", key ? key_len : 0);
    if (cert_slot_free(cfg, CHAIN_BUFFER) != 0) return -1;
    kx_input c = { chain, chain_len, CHAIN_BUFFER }, k = { key, key_len, KEY_BUFFER };
    if (kx_certkey_load_mem(&cfg->certs[cfg->cert_count], &c, &k, cfg->error, sizeof cfg->error) != 0) return -1;
    cfg->cert_count++;
    return 0;
}

int ktlsx_config_add_cert_pkey(ktlsx_config *cfg, const uint8_t *chain, size_t chain_len, struct evp_pkey_st *key)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (!chain || chain_len == 0) return config_error(cfg, CHAIN_BUFFER ": empty (%zu bytes)", chain ? chain_len : 0);
    if (!key) return config_error(cfg, "EVP_PKEY: NULL");
    if (cert_slot_free(cfg, CHAIN_BUFFER) != 0) return -1;
    kx_input c = { chain, chain_len, CHAIN_BUFFER };
    if (kx_certkey_load_pkey(&cfg->certs[cfg->cert_count], &c, key, "EVP_PKEY", cfg->error, sizeof cfg->error) != 0)
        return -1;
    cfg->cert_count++;
    return 0;
}

/* Set the CA (is_ca) or the CRL input to `data` (copied; NULL = the system
 * store / no CRL) and rebuild the trust store from it and the other input
 * now, so that bad input is reported by the setter rather than by the first
 * handshake.  On failure the previous inputs and store stay. */
static int set_trust_input(ktlsx_config *cfg, bool is_ca, const uint8_t *data, size_t len, const char *name)
{
    uint8_t *copy = NULL;
    char *name_copy = NULL;
    if (data) {
        copy = OPENSSL_memdup(data, len);
        name_copy = strdup(name);
        if (!copy || !name_copy) {
            OPENSSL_free(copy);
            free(name_copy);
            return config_error(cfg, "%s: out of memory", name);
        }
    }
    kx_input ca = { cfg->ca_data, cfg->ca_len, cfg->ca_file }, crl = { cfg->crl_data, cfg->crl_len, cfg->crl_file };
    kx_input *in = is_ca ? &ca : &crl;
    *in = (kx_input){ copy, len, name_copy };
    kx_trust *t = kx_trust_new_mem(ca.data ? &ca : NULL, crl.data ? &crl : NULL, cfg->error, sizeof cfg->error);
    if (!t) {
        OPENSSL_free(copy);
        free(name_copy);
        return -1;
    }
    uint8_t **slot = is_ca ? &cfg->ca_data : &cfg->crl_data;
    char **name_slot = is_ca ? &cfg->ca_file : &cfg->crl_file;
    OPENSSL_free(*slot);
    free(*name_slot);
    *slot = copy;
    *name_slot = name_copy;
    *(is_ca ? &cfg->ca_len : &cfg->crl_len) = len;
    kx_trust_free(cfg->trust);
    cfg->trust = t;
    return 0;
}

/* The file variants read the file and take the memory path. */
static int set_trust_file(ktlsx_config *cfg, bool is_ca, const char *path)
{
    if (!path) return set_trust_input(cfg, is_ca, NULL, 0, NULL);
    uint8_t *data;
    size_t len;
    if (kx_read_file(path, false, &data, &len, cfg->error, sizeof cfg->error) != 0) return -1;
    int rc = len ? set_trust_input(cfg, is_ca, data, len, path)
                 : config_error(cfg, "%s: %s (empty file)", path, is_ca ? "no usable CA certificate found" : "no CRL found");
    OPENSSL_free(data);
    return rc;
}

int ktlsx_config_set_ca_file(ktlsx_config *cfg, const char *ca_file)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    return set_trust_file(cfg, true, ca_file);
}

int ktlsx_config_set_crl_file(ktlsx_config *cfg, const char *crl_file)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    return set_trust_file(cfg, false, crl_file);
}

int ktlsx_config_set_ca_mem(ktlsx_config *cfg, const uint8_t *ca, size_t len)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (!ca || len == 0)
        return config_error(cfg, CA_BUFFER ": empty (%zu bytes; ktlsx_config_set_ca_file(cfg, NULL) selects the "
                                 "system store)", ca ? len : 0);
    return set_trust_input(cfg, true, ca, len, CA_BUFFER);
}

int ktlsx_config_set_crl_mem(ktlsx_config *cfg, const uint8_t *crl, size_t len)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (!crl || len == 0)
        return config_error(cfg, CRL_BUFFER ": empty (%zu bytes; ktlsx_config_set_crl_file(cfg, NULL) removes "
                                 "the CRLs)", crl ? len : 0);
    return set_trust_input(cfg, false, crl, len, CRL_BUFFER);
}

int ktlsx_config_set_insecure(ktlsx_config *cfg, int insecure)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->insecure = insecure != 0;
    return 0;
}

int ktlsx_config_set_verify_client(ktlsx_config *cfg, enum ktlsx_verify_client mode)
{
    KX_CONFIG_CHANGE(cfg);
    if (mode != KTLSX_VERIFY_NONE && mode != KTLSX_VERIFY_OPTIONAL && mode != KTLSX_VERIFY_REQUIRE)
        return config_error(cfg, "verify-client: unknown mode %d", (int)mode);
    cfg->verify_client = mode;
    return 0;
}

/* Split "a,b:c" into trimmed items; calls fn for each. */
static int for_each_item(ktlsx_config *cfg, const char *list, const char *what,
                         int (*fn)(ktlsx_config *, const char *item))
{
    char item[128];
    const char *p = list;
    int count = 0;
    while (*p) {
        size_t n = strcspn(p, ",:");
        while (n > 0 && isspace((unsigned char)*p)) { p++; n--; }
        size_t m = n;
        while (m > 0 && isspace((unsigned char)p[m - 1])) m--;
        if (m == 0 || m >= sizeof item) return config_error(cfg, "%s: bad list \"%s\"", what, list);
        memcpy(item, p, m);
        item[m] = 0;
        if (fn(cfg, item) != 0) return -1;
        count++;
        p += n;
        if (*p) p++;
    }
    if (count == 0) return config_error(cfg, "%s: empty list", what);
    return 0;
}

static int add_suite(ktlsx_config *cfg, const char *name)
{
    const kx_suite *s = kx_suite_by_name(name);
    if (!s) return config_error(cfg, "ciphers: unknown cipher suite \"%s\"", name);
    if (cfg->suite_count == KX_MAX_SUITES) return config_error(cfg, "ciphers: too many");
    if (!kx_list_has(cfg->suites, cfg->suite_count, s->id)) cfg->suites[cfg->suite_count++] = s->id;
    return 0;
}

int ktlsx_config_set_ciphers(ktlsx_config *cfg, const char *list)
{
    KX_CONFIG_CHANGE(cfg);
    uint16_t saved[KX_MAX_SUITES];
    size_t saved_n = cfg->suite_count;
    memcpy(saved, cfg->suites, sizeof saved);
    cfg->suite_count = 0;
    if (for_each_item(cfg, list, "ciphers", add_suite) != 0) {
        memcpy(cfg->suites, saved, sizeof saved);
        cfg->suite_count = saved_n;
        return -1;
    }
    return 0;
}

static int add_group(ktlsx_config *cfg, const char *name)
{
    uint16_t g = kx_group_by_name(name);
    if (!g) return config_error(cfg, "groups: unknown group \"%s\" (x25519, P-256, P-384)", name);
    if (cfg->group_count == KX_MAX_GROUPS) return config_error(cfg, "groups: too many");
    if (!kx_list_has(cfg->groups, cfg->group_count, g)) cfg->groups[cfg->group_count++] = g;
    return 0;
}

int ktlsx_config_set_groups(ktlsx_config *cfg, const char *list)
{
    KX_CONFIG_CHANGE(cfg);
    uint16_t saved[KX_MAX_GROUPS];
    size_t saved_n = cfg->group_count;
    memcpy(saved, cfg->groups, sizeof saved);
    cfg->group_count = 0;
    if (for_each_item(cfg, list, "groups", add_group) != 0) {
        memcpy(cfg->groups, saved, sizeof saved);
        cfg->group_count = saved_n;
        return -1;
    }
    return 0;
}

static int add_alpn(ktlsx_config *cfg, const char *name)
{
    size_t n = strlen(name);
    if (n > 255 || cfg->alpn_len + 1 + n > sizeof cfg->alpn) return config_error(cfg, "alpn: list too long");
    cfg->alpn[cfg->alpn_len++] = (uint8_t)n;
    memcpy(cfg->alpn + cfg->alpn_len, name, n);
    cfg->alpn_len += n;
    return 0;
}

int ktlsx_config_set_alpn(ktlsx_config *cfg, const char *list)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->alpn_len = 0;
    if (!list || !*list) return 0;
    /* ALPN names may contain ':' in theory, but no registered one does; ',' and ':' both separate. */
    if (for_each_item(cfg, list, "alpn", add_alpn) != 0) {
        cfg->alpn_len = 0;
        return -1;
    }
    return 0;
}

int ktlsx_config_set_versions(ktlsx_config *cfg, uint16_t min, uint16_t max)
{
    KX_CONFIG_CHANGE(cfg);
    if ((min != KTLSX_TLS12 && min != KTLSX_TLS13) || (max != KTLSX_TLS12 && max != KTLSX_TLS13) || min > max)
        return config_error(cfg, "tls-version: unsupported range 0x%04x..0x%04x (TLS 1.2 and 1.3 only)", min, max);
    cfg->min_version = min;
    cfg->max_version = max;
    return 0;
}

int ktlsx_config_set_keylog_file(ktlsx_config *cfg, const char *path)
{
    KX_CONFIG_CHANGE(cfg);
    FILE *f = fopen(path, "a");
    if (!f) return config_error(cfg, "%s: cannot open key log file: %s", path, strerror(errno));
    /* Key log lines are secrets: one line per write, flushed at once. */
    setvbuf(f, NULL, _IOLBF, 0);
    if (cfg->keylog) fclose(cfg->keylog);
    cfg->keylog = f;
    return 0;
}

int ktlsx_config_set_trace(ktlsx_config *cfg, FILE *out)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->trace = out;
    return 0;
}

/* The trust store for peer verification: the system default unless a CA file
 * was configured.  Loaded on first need, once, under a lock (connections may
 * be created from several threads). */
kx_trust *kx_config_trust(ktlsx_config *cfg, const char **err)
{
    pthread_mutex_lock(&cfg->trust_lock);
    if (!cfg->trust) {
        char buf[256];
        kx_input crl = { cfg->crl_data, cfg->crl_len, cfg->crl_file };
        cfg->trust = kx_trust_new_mem(NULL, cfg->crl_data ? &crl : NULL, buf, sizeof buf);
        if (!cfg->trust) *err = "cannot load the system trust store";
    }
    /* issue 14: a new store (CA or CRL set) or a new size starts an empty
     * cache.  Sizes only change while no connection uses cfg, so no other
     * thread is verifying with this store now.  Out of memory leaves the
     * cache off, which costs speed only. */
    if (cfg->trust) (void)kx_trust_set_verify_cache(cfg->trust, cfg->verify_cache_entries);
    pthread_mutex_unlock(&cfg->trust_lock);
    return cfg->trust;
}

/* ---- issue 14: verified-chain cache ---- */

int ktlsx_config_set_verify_cache(ktlsx_config *cfg, size_t entries)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (entries > KTLSX_VERIFY_CACHE_MAX)
        return config_error(cfg, "verify cache entries: %zu (at most %u)", entries, KTLSX_VERIFY_CACHE_MAX);
    cfg->verify_cache_entries = entries;
    return 0;
}

/* ---- resumption and PSKs ---- */

int ktlsx_config_set_session_cache(ktlsx_config *cfg, size_t entries, unsigned lifetime_s)
{
    KX_CONFIG_CHANGE(cfg);
    kx_session_cache *sc = NULL;
    if (entries) {
        sc = kx_session_cache_new(entries, lifetime_s);
        if (!sc) return config_error(cfg, "session cache: out of memory");
    }
    kx_session_cache_free(cfg->session_cache);
    cfg->session_cache = sc;
    return 0;
}

int ktlsx_config_set_tickets(ktlsx_config *cfg, unsigned count, unsigned lifetime_s)
{
    KX_CONFIG_CHANGE(cfg);
    /* RFC 8446 §4.6.1: lifetimes over seven days are not allowed. */
    if (lifetime_s > 604800) return config_error(cfg, "tickets: lifetime %u s exceeds 7 days", lifetime_s);
    cfg->tickets_enabled = count > 0;
    cfg->tickets13 = count;
    if (lifetime_s) cfg->ticket_lifetime = lifetime_s;
    return 0;
}

int ktlsx_config_add_ticket_key_file(ktlsx_config *cfg, const char *path)
{
    KX_CONFIG_CHANGE(cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return config_error(cfg, "%s: cannot open ticket key file: %s", path, strerror(errno));
    uint8_t raw[81];
    size_t n = fread(raw, 1, sizeof raw, f);
    /* The key's age counts from the file's last change (a key written days ago
     * is days old, whenever this server loaded it): ktlsxctl ticket-keys. */
    struct stat st;
    uint64_t mtime_ms = fstat(fileno(f), &st) == 0 && st.st_mtim.tv_sec > 0
                            ? (uint64_t)st.st_mtim.tv_sec * 1000u + (uint64_t)st.st_mtim.tv_nsec / 1000000u : 0;
    fclose(f);
    if (n != 48 && n != 80) {
        kx_wipe(raw, sizeof raw);
        return config_error(cfg, "%s: ticket key file must be 48 or 80 bytes (nginx layout), not %zu", path, n);
    }
    /* Layout: 16-byte key name, then HMAC and AES keys (nginx).  Our tickets use
     * AES-256-GCM, keyed from all of that material through HKDF. */
    kx_ticket_key k = { 0 };
    memcpy(k.name, raw, 16);
    uint8_t prk[KX_MAX_HASH];
    int rc = 0;
    if (kx_failed(kx_hkdf_extract(KX_HASH_SHA256, raw, 16, raw + 16, n - 16, prk)) ||
        kx_failed(kx_hkdf_expand_label(KX_HASH_SHA256, prk, "ktlsx ticket", NULL, 0, k.key, sizeof k.key)))
        rc = config_error(cfg, "%s: cannot derive the ticket key", path);
    kx_wipe(raw, sizeof raw);
    kx_wipe(prk, sizeof prk);
    if (rc) {
        kx_wipe_obj(k); /* the expansion may have written part of the key */
        return rc;
    }
    uint64_t now = kx_now_ms();
    k.created_ms = mtime_ms && mtime_ms <= now ? mtime_ms : now;
    kx_ticket_keys_add(&cfg->tickets, &k);
    kx_wipe_obj(k);
    return 0;
}

int ktlsx_config_rotate_ticket_keys(ktlsx_config *cfg)
{
    if (kx_failed(kx_ticket_keys_rotate(&cfg->tickets))) return config_error(cfg, "ticket keys: no randomness");
    return 0;
}

int ktlsx_config_set_ticket_rotation(ktlsx_config *cfg, unsigned seconds)
{
    if (seconds != 0 && seconds < 60) return config_error(cfg, "ticket rotation: 0 (never) or at least 60 s");
    if (!kx_ticket_keys_set_rotation(&cfg->tickets, seconds))
        return config_error(cfg, "ticket rotation: keys from ticket key files are rotated by their owner");
    return 0;
}

int ktlsx_config_take_sessions(ktlsx_config *cfg, const ktlsx_config *from)
{
    KX_CONFIG_CHANGE(cfg);
    ktlsx_config *src = (ktlsx_config *)from; /* its locks are taken; its sessions stay */
    kx_session_cache_copy(cfg->session_cache, src->session_cache);
    kx_ticket_keys_copy(&cfg->tickets, &src->tickets);
    return 0;
}

size_t ktlsx_config_ticket_keys(const ktlsx_config *cfg, struct ktlsx_ticket_key_info *out, size_t max)
{
    uint8_t names[KX_TICKET_KEYS][KX_TICKET_KEY_NAME];
    uint64_t age_ms[KX_TICKET_KEYS];
    ktlsx_config *c = (ktlsx_config *)cfg; /* the keys' lock changes; the configuration does not */
    size_t n = kx_ticket_keys_list(&c->tickets, names, age_ms, KX_TICKET_KEYS);
    for (size_t i = 0; out && i < n && i < max; i++) {
        memcpy(out[i].name, names[i], sizeof out[i].name);
        out[i].age_s = age_ms[i] / 1000;
        out[i].seals = i == 0;
    }
    return n;
}

int ktlsx_config_session_stats(const ktlsx_config *cfg, struct ktlsx_session_stats *out)
{
    memset(out, 0, sizeof *out);
    ktlsx_config *c = (ktlsx_config *)cfg; /* the locks inside change; the configuration does not */
    kx_session_cache_count(c->session_cache, &out->cache_entries, &out->cache_capacity);
    uint64_t age_ms;
    kx_ticket_keys_info(&c->tickets, &out->ticket_keys, &age_ms);
    out->ticket_key_age_s = age_ms / 1000;
    out->ticket_rotation_s = c->tickets.rotate_s;
    out->tickets_per_connection = c->tickets_enabled ? c->tickets13 : 0;
    kx_memcached_stats(c->memcached, out); /* issue 12 */
    return 0;
}

/* ---- a PSK from a file of hex digits (the ktlsx tool's --psk-file, ktlsxd's psk_file) ---- */
#define PSK_FILE_MAX 4096 /* far more than a key in hex; bounds the read */

static int hex_value(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ktlsx_config_set_psk_file(ktlsx_config *cfg, const char *identity, const char *path, int sha384)
{
    char text[PSK_FILE_MAX + 1];
    uint8_t key[PSK_FILE_MAX / 2];
    size_t text_len = 0, key_len = 0;
    int high = -1, rc = -1;
    FILE *f = fopen(path, "re");
    if (!f) return config_error(cfg, "%s: %s", path, strerror(errno));
    text_len = fread(text, 1, sizeof text, f);
    bool read_error = ferror(f) != 0;
    fclose(f);
    if (read_error) {
        config_error(cfg, "%s: cannot read", path);
        goto out;
    }
    if (text_len == sizeof text) {
        config_error(cfg, "%s: too large for a key in hex", path);
        goto out;
    }
    for (size_t i = 0; i < text_len; i++) {
        int c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') continue;
        int v = hex_value(c);
        if (v < 0) {
            config_error(cfg, "%s: not a hex key (byte %zu)", path, i + 1);
            goto out;
        }
        if (high < 0) {
            high = v;
            continue;
        }
        key[key_len++] = (uint8_t)(high << 4 | v);
        high = -1;
    }
    if (high >= 0) config_error(cfg, "%s: odd number of hex digits", path);
    else if (key_len == 0) config_error(cfg, "%s: no key in the file", path);
    else if (ktlsx_config_set_psk(cfg, identity, key, key_len, sha384) < 0) {
        char why[200];
        snprintf(why, sizeof why, "%s", ktlsx_config_error(cfg));
        config_error(cfg, "%s: %s", path, why);
    } else rc = 0;
out:
    kx_wipe(text, sizeof text);
    kx_wipe(key, sizeof key);
    return rc;
}

int ktlsx_config_set_psk(ktlsx_config *cfg, const char *identity, const uint8_t *key, size_t len, int sha384)
{
    KX_CONFIG_CHANGE(cfg);
    size_t need = sha384 ? 48 : 32;
    if (!identity || !*identity || strlen(identity) >= sizeof cfg->psk_identity)
        return config_error(cfg, "psk: identity must be 1..%zu bytes", sizeof cfg->psk_identity - 1);
    /* The key is the TLS 1.3 PSK itself, which the handshake keeps in buffers the
     * size of the largest hash (SHA-384: KX_MAX_HASH); at least 128 bits. */
    _Static_assert(KX_MAX_HASH <= sizeof cfg->psk, "cfg->psk must hold a KX_MAX_HASH key");
    if (len < 16 || len > KX_MAX_HASH)
        return config_error(cfg, "psk: the key is %zu bytes; it must be 16..%d bytes (%zu bytes match %s)", len,
                            KX_MAX_HASH, need, sha384 ? "SHA-384" : "SHA-256");
    memcpy(cfg->psk_identity, identity, strlen(identity) + 1);
    kx_wipe(cfg->psk, sizeof cfg->psk); /* no tail of a longer key set before */
    memcpy(cfg->psk, key, len);
    cfg->psk_len = len;
    cfg->psk_hash = sha384 ? KX_HASH_SHA384 : KX_HASH_SHA256;
    return 0;
}

int ktlsx_config_set_psk_ke(ktlsx_config *cfg, int allow)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->psk_ke = allow != 0;
    return 0;
}
int ktlsx_config_set_require_ems(ktlsx_config *cfg, int require)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->require_ems = require != 0;
    return 0;
}
int ktlsx_config_set_fallback_scsv(ktlsx_config *cfg, int send)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->fallback_scsv = send != 0;
    return 0;
}

int ktlsx_config_set_legacy_rsa_kx(ktlsx_config *cfg, int allow)
{
    KX_CONFIG_CHANGE(cfg);
    cfg->legacy_rsa_kx = allow != 0;
    if (!allow) return 0;
    /* Enabling it adds the RSA suites at the end of the list (least preferred). */
    size_t n;
    const kx_suite *all = kx_suites_all(&n);
    for (size_t i = 0; i < n; i++)
        if (all[i].kex == KX_KX_RSA && !kx_list_has(cfg->suites, cfg->suite_count, all[i].id) &&
            cfg->suite_count < KX_MAX_SUITES)
            cfg->suites[cfg->suite_count++] = all[i].id;
    return 0;
}

/* ---- conf-b: largest handshake message ---- */
int ktlsx_config_set_max_handshake_message(ktlsx_config *cfg, size_t bytes)
{
    KX_CONFIG_CHANGE(cfg);
    if (bytes < KX_HANDSHAKE_MESSAGE_MIN || bytes > KX_HANDSHAKE_MESSAGE_MAX) {
        snprintf(cfg->error, sizeof cfg->error,
                 "largest handshake message must be %d..%d bytes (16 KiB..16 MiB), not %zu", KX_HANDSHAKE_MESSAGE_MIN,
                 KX_HANDSHAKE_MESSAGE_MAX, bytes);
        return -1;
    }
    cfg->max_handshake_message = bytes;
    return 0;
}
