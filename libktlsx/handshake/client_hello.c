/* ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): written by the client,
 * handled by the server, which decides everything else here: version, suite,
 * group, certificate, resumption. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

#define TLS_FALLBACK_SCSV 0x5600
#define TLS_EMPTY_RENEGOTIATION_INFO_SCSV 0x00ff

/* ======================= client: write ======================= */

static kx_result ext_open(ktlsx_conn *c, kx_ext ext, size_t *mark)
{
    c->sent_exts |= 1u << ext;
    KX_GUARD(kx_write_u16(&c->hs_out, kx_ext_type(ext)));
    return kx_vec_open(&c->hs_out, 2, mark);
}

static kx_result ext_bytes(ktlsx_conn *c, kx_ext ext, const void *data, size_t len)
{
    size_t x;
    KX_GUARD(ext_open(c, ext, &x));
    KX_GUARD(kx_write_bytes(&c->hs_out, data, len));
    return kx_vec_close(&c->hs_out, 2, x);
}

static bool suite_offered(const ktlsx_conn *c, const kx_suite *s)
{
    const ktlsx_config *cfg = c->cfg;
    if (s->version < cfg->min_version || s->version > cfg->max_version) return false;
    return s->kex != KX_KX_RSA || cfg->legacy_rsa_kx;
}

static kx_result write_u16_list_ext(ktlsx_conn *c, kx_ext ext, const uint16_t *v, size_t n)
{
    size_t x, y;
    KX_GUARD(ext_open(c, ext, &x));
    KX_GUARD(kx_vec_open(&c->hs_out, 2, &y));
    for (size_t i = 0; i < n; i++) KX_GUARD(kx_write_u16(&c->hs_out, v[i]));
    KX_GUARD(kx_vec_close(&c->hs_out, 2, y));
    return kx_vec_close(&c->hs_out, 2, x);
}

/* pre_shared_key, always the last extension: identities, then binders
 * computed over the ClientHello up to the binders themselves. */
static kx_result write_psk(ktlsx_conn *c, size_t msg, size_t exts)
{
    const uint8_t *identity;
    size_t idlen;
    uint32_t age;
    kx_hash_id hash;
    /* The setter keeps external PSKs within c->psk; should one not fit, fail rather
     * than quietly leave out the PSK the operator configured. */
    KX_ENSURE(c->cfg->psk_len <= sizeof c->psk, KX_ALERT_INTERNAL_ERROR, "external PSK longer than the largest hash");
    if (!kx_psk_offer(c, &identity, &idlen, &age, &hash)) return KX_OK;
    if (c->hrr && hash != c->suite->hash) {
        /* RFC 8446 §4.1.4: after a HelloRetryRequest only PSKs bound to the hash of
         * its suite; the binder is computed over the transcript under that hash.
         * pre_shared_key is left out (it exists only with identities);
         * psk_key_exchange_modes stays, as it also asks for tickets. */
        kx_wipe(c->psk, sizeof c->psk);
        c->psk_len = 0;
        c->psk_external = false;
        return KX_OK;
    }
    kx_buf *o = &c->hs_out;
    size_t hlen = kx_hash_len(hash), x, y, z;
    KX_GUARD(ext_open(c, KX_EXT_PRE_SHARED_KEY, &x));
    KX_GUARD(kx_vec_open(o, 2, &y));
    KX_GUARD(kx_write_vec(o, 2, identity, idlen));
    KX_GUARD(kx_write_u32(o, age));
    KX_GUARD(kx_vec_close(o, 2, y));
    size_t binders = o->len;
    KX_GUARD(kx_vec_open(o, 2, &y));
    KX_GUARD(kx_vec_open(o, 1, &z));
    uint8_t *binder;
    KX_GUARD(kx_write_space(o, hlen, &binder));
    memset(binder, 0, hlen);
    KX_GUARD(kx_vec_close(o, 1, z));
    KX_GUARD(kx_vec_close(o, 2, y));
    KX_GUARD(kx_vec_close(o, 2, x));
    /* Lengths must be final before the binder hash covers them. */
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_vec_close(o, 3, msg + 1));
    uint8_t value[KX_MAX_HASH];
    KX_GUARD(kx_psk_binder(c, hash, c->psk, c->psk_len, c->psk_external, o->data + msg, binders - msg, value));
    memcpy(o->data + o->len - hlen, value, hlen);
    c->offered_psk = true;
    return KX_OK;
}

kx_result kx_client_hello_write(ktlsx_conn *c)
{
    ktlsx_config *cfg = c->cfg;
    kx_buf *o = &c->hs_out;
    bool offer13 = cfg->max_version == KTLSX_TLS13, offer12 = cfg->min_version == KTLSX_TLS12;
    const kx_session *sess = c->have_session ? &c->session : NULL;
    if (!c->hrr) {
        KX_GUARD(kx_random(c->client_random, sizeof c->client_random));
        if (sess && sess->version == KTLSX_TLS12 && sess->session_id_len) {
            /* TLS 1.2 resumption by session ID. */
            memcpy(c->session_id, sess->session_id, sess->session_id_len);
            c->session_id_len = sess->session_id_len;
        } else if (offer13 || (sess && sess->ticket_len)) {
            /* TLS 1.3 middlebox compatibility mode (RFC 8446 D.4); with a TLS 1.2 ticket the
             * random ID tells us whether the server resumed (RFC 5077 §3.4). */
            c->session_id_len = 32;
            KX_GUARD(kx_random(c->session_id, c->session_id_len));
        }
        c->kex_group = cfg->groups[0];
    }
    if (offer13) {
        /* A fresh key share: for the first group we prefer, or the one a HelloRetryRequest named. */
        EVP_PKEY_free(c->kex_key);
        c->kex_key = NULL;
        kx_buf_reset(&c->kex_pub);
        KX_GUARD(kx_kex_keygen(c->kex_group, &c->kex_key, &c->kex_pub));
    }

    size_t msg, v, exts, x, y;
    c->sent_exts = 0;
    c->offered_psk = false;
    KX_GUARD(kx_hs_begin(c, KX_HS_CLIENT_HELLO, &msg));
    KX_GUARD(kx_write_u16(o, 0x0303));
    KX_GUARD(kx_write_bytes(o, c->client_random, 32));
    KX_GUARD(kx_write_vec(o, 1, c->session_id, c->session_id_len));

    KX_GUARD(kx_vec_open(o, 2, &v));
    size_t suites = 0;
    for (size_t i = 0; i < cfg->suite_count; i++) {
        const kx_suite *s = kx_suite_by_id(cfg->suites[i]);
        if (!s || !suite_offered(c, s)) continue;
        KX_GUARD(kx_write_u16(o, s->id));
        suites++;
    }
    KX_ENSURE(suites > 0, KX_ALERT_HANDSHAKE_FAILURE, "no cipher suite enabled for the configured TLS versions");
    if (cfg->fallback_scsv) KX_GUARD(kx_write_u16(o, TLS_FALLBACK_SCSV));
    KX_GUARD(kx_vec_close(o, 2, v));
    KX_GUARD(kx_write_vec(o, 1, "\0", 1)); /* compression: null only */

    KX_GUARD(kx_vec_open(o, 2, &exts));
    if (c->sni[0]) {
        KX_GUARD(ext_open(c, KX_EXT_SERVER_NAME, &x));
        KX_GUARD(kx_vec_open(o, 2, &y));
        KX_GUARD(kx_write_u8(o, 0)); /* host_name */
        KX_GUARD(kx_write_vec(o, 2, c->sni, strlen(c->sni)));
        KX_GUARD(kx_vec_close(o, 2, y));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    if (offer13) {
        KX_GUARD(ext_open(c, KX_EXT_SUPPORTED_VERSIONS, &x));
        KX_GUARD(kx_vec_open(o, 1, &y));
        KX_GUARD(kx_write_u16(o, KTLSX_TLS13));
        if (offer12) KX_GUARD(kx_write_u16(o, KTLSX_TLS12));
        KX_GUARD(kx_vec_close(o, 1, y));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    KX_GUARD(write_u16_list_ext(c, KX_EXT_SUPPORTED_GROUPS, cfg->groups, cfg->group_count));
    KX_GUARD(write_u16_list_ext(c, KX_EXT_SIGNATURE_ALGORITHMS, cfg->sigalgs, cfg->sigalg_count));
    if (offer12) {
        KX_GUARD(ext_bytes(c, KX_EXT_EC_POINT_FORMATS, "\1\0", 2)); /* uncompressed only */
        KX_GUARD(ext_bytes(c, KX_EXT_EXTENDED_MASTER_SECRET, NULL, 0));
        KX_GUARD(ext_bytes(c, KX_EXT_RENEGOTIATION_INFO, "\0", 1)); /* initial handshake: empty */
        const uint8_t *t = sess && sess->version == KTLSX_TLS12 ? sess->ticket : NULL;
        KX_GUARD(ext_bytes(c, KX_EXT_SESSION_TICKET, t, t ? sess->ticket_len : 0));
    }
    if (offer13) {
        KX_GUARD(ext_open(c, KX_EXT_KEY_SHARE, &x));
        KX_GUARD(kx_vec_open(o, 2, &y));
        KX_GUARD(kx_write_u16(o, c->kex_group));
        KX_GUARD(kx_write_vec(o, 2, c->kex_pub.data, c->kex_pub.len));
        KX_GUARD(kx_vec_close(o, 2, y));
        KX_GUARD(kx_vec_close(o, 2, x));
        /* psk_dhe_ke (and psk_ke if allowed): servers only send tickets to clients that can use them. */
        KX_GUARD(ext_bytes(c, KX_EXT_PSK_KEY_EXCHANGE_MODES, cfg->psk_ke ? "\2\1\0" : "\1\1", cfg->psk_ke ? 3 : 2));
    }
    if (cfg->alpn_len) {
        KX_GUARD(ext_open(c, KX_EXT_ALPN, &x));
        KX_GUARD(kx_write_vec(o, 2, cfg->alpn, cfg->alpn_len));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    /* issue 9: record_size_limit (RFC 8449), only when configured. */
    c->rsl_ours = kx_rsl_offer(c, offer13);
    c->rsl_negotiated = false;
    c->rsl_peer = 0;
    if (c->rsl_ours) {
        KX_GUARD(ext_open(c, KX_EXT_RECORD_SIZE_LIMIT, &x));
        KX_GUARD(kx_write_u16(o, c->rsl_ours));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    if (c->cookie_len) {
        KX_GUARD(ext_open(c, KX_EXT_COOKIE, &x));
        KX_GUARD(kx_write_vec(o, 2, c->cookie, c->cookie_len));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    if (offer13) KX_GUARD(write_psk(c, msg, exts));
    if (!c->offered_psk) KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));

    if (kx_tracing(c)) {
        char groups[128] = "", alpn[128] = "-";
        size_t n = 0;
        for (size_t i = 0; i < cfg->group_count && n < sizeof groups - 16; i++)
            n += (size_t)snprintf(groups + n, sizeof groups - n, "%s%s", i ? "," : "", kx_group_name(cfg->groups[i]));
        n = 0;
        for (size_t i = 0; i < cfg->alpn_len && n < sizeof alpn - 2; i += 1 + cfg->alpn[i])
            n += (size_t)snprintf(alpn + n, sizeof alpn - n, "%s%.*s", i ? "," : "", cfg->alpn[i],
                                  (const char *)cfg->alpn + i + 1);
        kx_trace(c, true, "ClientHello%s sni=%s suites=%zu groups=%s%s%s alpn=%s%s", c->hrr ? " (retry)" : "",
                 c->sni[0] ? c->sni : "-", suites, groups, offer13 ? " key_share=" : "",
                 offer13 ? kx_group_name(c->kex_group) : "", alpn,
                 c->offered_psk ? " psk=1" : sess && sess->version == KTLSX_TLS12 ? " resume=1" : "");
    }
    return KX_OK;
}

/* ======================= server: handle ======================= */

/* Room for every distinct group the library implements (crypto/suites.c). */
#define KX_HELLO_GROUPS 16

/* What the parsed ClientHello offers, for the version-specific choices. */
typedef struct {
    uint16_t legacy_version;
    kx_reader suites, comp, sid;
    kx_exts e;
    /* supported_groups, read to its end: the groups this library implements,
     * each once, in the client's order (unknown ones cannot be chosen or
     * checked against a certificate, and keeping them would cap the list). */
    uint16_t groups[KX_HELLO_GROUPS];
    size_t group_count;
    bool has_groups;
} hello;

static bool implemented_group(uint16_t v, const void *arg)
{
    (void)arg;
    return kx_group_name(v) != NULL;
}

static kx_result parse_sni(ktlsx_conn *c, kx_reader data)
{
    kx_reader list, name;
    KX_GUARD(kx_read_vec(&data, 2, 1, 65535, &list));
    KX_GUARD(kx_reader_done(&data));
    while (kx_reader_left(&list)) {
        uint8_t type;
        KX_GUARD(kx_read_u8(&list, &type));
        KX_GUARD(kx_read_vec(&list, 2, 1, 65535, &name));
        if (type != 0 || c->server_name[0]) continue; /* RFC 6066: one host_name */
        KX_ENSURE(name.len < sizeof c->server_name, KX_ALERT_UNRECOGNIZED_NAME, "server name too long");
        for (size_t i = 0; i < name.len; i++)
            KX_ENSURE(name.data[i] > 0x20 && name.data[i] < 0x7f, KX_ALERT_ILLEGAL_PARAMETER, "bad server name");
        memcpy(c->server_name, name.data, name.len);
        c->server_name[name.len] = 0;
    }
    return KX_OK;
}

static kx_result choose_alpn(ktlsx_conn *c, kx_reader data)
{
    kx_reader list;
    KX_GUARD(kx_read_vec(&data, 2, 2, 65535, &list));
    KX_GUARD(kx_reader_done(&data));
    kx_reader scan = list;
    while (kx_reader_left(&scan)) { /* every name non-empty */
        kx_reader name;
        KX_GUARD(kx_read_vec(&scan, 1, 1, 255, &name));
    }
    const ktlsx_config *cfg = c->cfg;
    if (!cfg->alpn_len) return KX_OK; /* we do not speak ALPN: ignore it, as OpenSSL does */
    for (size_t i = 0; i < cfg->alpn_len; i += 1 + cfg->alpn[i]) { /* server preference (RFC 7301 §3.2) */
        scan = list;
        while (kx_reader_left(&scan)) {
            kx_reader name;
            KX_GUARD(kx_read_vec(&scan, 1, 1, 255, &name));
            if (name.len == cfg->alpn[i] && memcmp(name.data, cfg->alpn + i + 1, name.len) == 0) {
                memcpy(c->alpn, name.data, name.len);
                c->alpn[name.len] = 0;
                return KX_OK;
            }
        }
    }
    return KX_FAIL(KX_ALERT_NO_APPLICATION_PROTOCOL, "no application protocol in common");
}

/* signature_algorithms (RFC 8446 §4.2.3), read to its end. */
static kx_result read_sigalgs_ext(ktlsx_conn *c, const hello *h)
{
    kx_reader d = h->e.data[KX_EXT_SIGNATURE_ALGORITHMS], list;
    KX_GUARD(kx_read_vec(&d, 2, 2, 65534, &list));
    KX_GUARD(kx_reader_done(&d));
    return kx_read_peer_sigalgs(c, list);
}

static bool offers_suite(const hello *h, uint16_t id)
{
    kx_reader scan = h->suites;
    uint16_t v;
    while (kx_reader_left(&scan) && !kx_failed(kx_read_u16(&scan, &v)))
        if (v == id) return true;
    return false;
}

/* The certificate and signature algorithm for `suite` (TLS 1.2: the suite
 * fixes the key type; TLS 1.3: any), in the client's preference order. */
/* RFC 8422 §5.1: in TLS 1.2 the client's supported_groups also limits the
 * curve of an ECDSA certificate. */
static bool cert_curve_acceptable(EVP_PKEY *key, const hello *h)
{
    char name[64];
    if (!h->has_groups || !EVP_PKEY_is_a(key, "EC") || !EVP_PKEY_get_group_name(key, name, sizeof name, NULL))
        return true;
    uint16_t g = kx_group_by_name(name);
    return g == 0 || kx_list_has(h->groups, h->group_count, g);
}

static bool choose_certificate(ktlsx_conn *c, const kx_suite *suite, const hello *h)
{
    const ktlsx_config *cfg = c->cfg;
    bool tls13 = suite->version == KTLSX_TLS13;
    if (!tls13 && suite->kex == KX_KX_RSA) {
        /* RSA key transport signs nothing: any RSA certificate, whatever
         * signature_algorithms says (or whether it was sent at all). */
        for (size_t k = 0; k < cfg->cert_count; k++) {
            if (EVP_PKEY_is_a(cfg->certs[k].key, "RSA")) {
                c->our_cert = &cfg->certs[k];
                return true;
            }
        }
        return false;
    }
    /* Several certificates: those that name the SNI host first (one profile
     * serving several names), then any, each pass in the client's order of
     * signature algorithms. */
    bool by_name = cfg->cert_count > 1 && c->server_name[0] != '\0';
    for (int pass = by_name ? 0 : 1; pass < 2; pass++)
    for (size_t i = 0; i < c->peer_sigalg_count; i++) {
        uint16_t s = c->peer_sigalgs[i];
        if (!kx_list_has(cfg->sigalgs, cfg->sigalg_count, s)) continue;
        for (size_t k = 0; k < cfg->cert_count; k++) {
            EVP_PKEY *key = cfg->certs[k].key;
            if (pass == 0 && !kx_certkey_names(&cfg->certs[k], c->server_name)) continue;
            if (!tls13) {
                if (!cert_curve_acceptable(key, h)) continue;
                bool rsa = EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "RSA-PSS");
                if ((suite->kex == KX_KX_ECDHE_RSA) != rsa) continue;
            }
            if (kx_sigalg_fits_key(s, key, tls13)) {
                c->our_cert = &cfg->certs[k];
                c->our_sigalg = s;
                return true;
            }
        }
    }
    return false;
}

/* ---- TLS 1.3 ---- */

/* A share the client already sent for a group we support (no extra round
 * trip), else our most preferred group the client supports, via HRR. */
static kx_result choose_group13(ktlsx_conn *c, const hello *h, bool second_hello, bool *need_hrr)
{
    const ktlsx_config *cfg = c->cfg;
    *need_hrr = false;
    KX_ENSURE(kx_has_ext(&h->e, KX_EXT_KEY_SHARE), KX_ALERT_MISSING_EXTENSION, "ClientHello has no key_share");
    KX_ENSURE(h->has_groups, KX_ALERT_MISSING_EXTENSION, "ClientHello has no supported_groups");
    kx_reader shares_ext = h->e.data[KX_EXT_KEY_SHARE], shares;
    KX_GUARD(kx_read_vec(&shares_ext, 2, 0, 65535, &shares));
    KX_GUARD(kx_reader_done(&shares_ext));
    uint16_t seen[KX_HELLO_GROUPS], chosen = 0;
    size_t nseen = 0, nshares = 0, chosen_len = 0;
    const uint8_t *chosen_share = NULL;
    while (kx_reader_left(&shares)) {
        uint16_t g;
        kx_reader key;
        KX_GUARD(kx_read_u16(&shares, &g));
        KX_GUARD(kx_read_vec(&shares, 2, 1, 65535, &key));
        nshares++;
        /* A share for a group we do not implement can be neither used nor
         * checked against the (filtered) supported_groups: skipped, as the
         * checks below are a MAY of RFC 8446 §4.2.8. */
        if (!implemented_group(g, NULL)) continue;
        /* RFC 8446 §4.2.8: no duplicate groups; each share's group must be in supported_groups. */
        KX_ENSURE(!kx_list_has(seen, nseen, g), KX_ALERT_ILLEGAL_PARAMETER, "duplicate key share");
        KX_ENSURE(kx_list_has(h->groups, h->group_count, g), KX_ALERT_ILLEGAL_PARAMETER, "key share for an unoffered group");
        seen[nseen++] = g; /* distinct and in h->groups: fits */
        if (!chosen && kx_list_has(cfg->groups, cfg->group_count, g)) {
            chosen = g;
            chosen_share = key.data;
            chosen_len = key.len;
        }
    }
    if (second_hello)
        KX_ENSURE(nshares == 1 && chosen == c->kex_group, KX_ALERT_ILLEGAL_PARAMETER,
                  "second ClientHello lacks the requested key share");
    if (!chosen) {
        for (size_t i = 0; i < cfg->group_count; i++) {
            if (kx_list_has(h->groups, h->group_count, cfg->groups[i])) {
                c->kex_group = cfg->groups[i];
                *need_hrr = true;
                return KX_OK;
            }
        }
        return KX_FAIL(KX_ALERT_HANDSHAKE_FAILURE, "no key exchange group in common");
    }
    c->kex_group = c->group = chosen;
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    kx_buf_reset(&c->kex_pub);
    KX_GUARD(kx_kex_keygen(chosen, &c->kex_key, &c->kex_pub));
    c->ecdhe_len = sizeof c->ecdhe;
    return kx_kex_derive(chosen, c->kex_key, chosen_share, chosen_len, c->ecdhe, &c->ecdhe_len);
}

/* The offered PSK we will use, found before the cipher suite is chosen so
 * that the suite can follow the PSK's hash: the first identity that is our
 * external PSK or a ticket we can open (fresh, TLS 1.3, plausible age).
 * Unknown or stale tickets are skipped: a full handshake follows. */
typedef struct {
    bool found, external;
    uint16_t index;
    kx_hash_id hash;
    kx_session s;
} psk_choice;

static kx_result find_psk(ktlsx_conn *c, const hello *h, psk_choice *pc)
{
    const ktlsx_config *cfg = c->cfg;
    memset(pc, 0, sizeof *pc);
    if (!kx_has_ext(&h->e, KX_EXT_PRE_SHARED_KEY)) return KX_OK;
    /* RFC 8446 §4.2.9: a PSK offer without psk_key_exchange_modes is an error. */
    KX_ENSURE(kx_has_ext(&h->e, KX_EXT_PSK_KEY_EXCHANGE_MODES), KX_ALERT_MISSING_EXTENSION,
              "pre_shared_key without psk_key_exchange_modes");
    /* psk_ke gives up forward secrecy: only when the operator opted in
     * (ktlsx_config_set_psk_ke), for external PSKs as for tickets.  A client
     * that offers nothing else gets a full handshake, and without a
     * key_share that is missing_extension, as OpenSSL answers (its
     * final_key_share runs before certificate selection): said here, with why. */
    bool dhe = c->psk_modes & 2, ke = (c->psk_modes & 1) && cfg->psk_ke;
    KX_ENSURE(dhe || ke || !(c->psk_modes & 1) || kx_has_ext(&h->e, KX_EXT_KEY_SHARE), KX_ALERT_MISSING_EXTENSION,
              "client offers its PSK only with psk_ke (no (EC)DHE), which is not allowed (psk_ke is off)");
    if (!dhe && !ke) return KX_OK;
    kx_reader d = h->e.data[KX_EXT_PRE_SHARED_KEY], ids;
    KX_GUARD(kx_read_vec(&d, 2, 7, 65535, &ids));
    for (uint16_t index = 0; kx_reader_left(&ids); index++) {
        kx_reader id;
        uint32_t obfuscated_age;
        KX_GUARD(kx_read_vec(&ids, 2, 1, 65535, &id));
        KX_GUARD(kx_read_u32(&ids, &obfuscated_age));
        if (cfg->psk_len && id.len == strlen(cfg->psk_identity) && memcmp(id.data, cfg->psk_identity, id.len) == 0) {
            KX_ENSURE(cfg->psk_len <= sizeof pc->s.secret, KX_ALERT_INTERNAL_ERROR,
                      "external PSK longer than the largest hash");
            memcpy(pc->s.secret, cfg->psk, cfg->psk_len);
            pc->s.secret_len = (uint8_t)cfg->psk_len;
            pc->external = true;
            pc->hash = cfg->psk_hash;
        } else if (cfg->tickets_enabled && (dhe || cfg->psk_ke) && kx_ticket_open(&c->cfg->tickets, id.data, id.len, &pc->s)) {
            const kx_suite *ss = kx_suite_by_id(pc->s.suite);
            /* The ticket's age as the client sees it must match ours (RFC 8446 §4.2.11.1, 10 s window). */
            int64_t skew = (int64_t)(uint32_t)(obfuscated_age - pc->s.age_add) - (int64_t)(kx_now_ms() - pc->s.issued_ms);
            if (pc->s.version != KTLSX_TLS13 || !ss || skew >= 10000 || skew <= -10000) {
                kx_session_wipe(&pc->s);
                continue;
            }
            pc->hash = ss->hash;
        } else {
            /* External PSKs by identity from the application (1.0 hooks). */
            bool known;
            KX_GUARD(kx_hook_psk(c, id.data, id.len, &known, pc->s.secret, sizeof pc->s.secret, &pc->s.secret_len,
                                 &pc->hash));
            if (!known) continue;
            pc->external = true;
        }
        pc->found = true;
        pc->index = index;
        c->psk_dhe = dhe;
        return KX_OK;
    }
    return KX_OK;
}

/* Check the chosen identity's binder; a bad binder is fatal (RFC 8446 §4.2.11). */
static kx_result use_psk(ktlsx_conn *c, const hello *h, psk_choice *pc)
{
    kx_hash_id hash = c->suite->hash;
    if (!pc->found || pc->hash != hash) return KX_OK; /* no suite fits the PSK: full handshake */
    kx_reader d = h->e.data[KX_EXT_PRE_SHARED_KEY], ids, binders, binder;
    KX_GUARD(kx_read_vec(&d, 2, 7, 65535, &ids));
    size_t binders_off = (size_t)(kx_reader_ptr(&d) - c->msg_raw);
    KX_GUARD(kx_read_vec(&d, 2, 33, 65535, &binders));
    KX_GUARD(kx_reader_done(&d));
    for (uint16_t i = 0; i <= pc->index; i++) KX_GUARD(kx_read_vec(&binders, 1, 32, 255, &binder));
    uint8_t expected[KX_MAX_HASH];
    kx_result r = binder.len == kx_hash_len(hash)
                      ? kx_psk_binder(c, hash, pc->s.secret, pc->s.secret_len, pc->external, c->msg_raw, binders_off,
                                      expected)
                      : KX_FAIL(KX_ALERT_DECRYPT_ERROR, "PSK binder has the wrong length");
    bool ok = !kx_failed(r) && kx_ct_equal(expected, binder.data, binder.len);
    kx_wipe(expected, sizeof expected);
    KX_ENSURE(ok, KX_ALERT_DECRYPT_ERROR, "PSK binder does not verify");
    KX_ENSURE(pc->s.secret_len <= sizeof c->psk, KX_ALERT_INTERNAL_ERROR, "PSK longer than the largest hash");
    memcpy(c->psk, pc->s.secret, pc->s.secret_len);
    c->psk_len = pc->s.secret_len;
    c->psk_external = pc->external;
    c->resumed = true;
    /* A ticket's session is this connection's (resumable again, exportable); an
     * external PSK is the operator's long-term key, not a session: it stays in
     * cfg and c->psk and never reaches ktlsx_get_session or an export blob. */
    if (!pc->external) c->session = pc->s;
    c->selected_identity = pc->index;
    kx_copy_str(c->peer_subject, sizeof c->peer_subject, pc->s.peer_subject);
    return KX_OK;
}

/* pc holds the PSK (a copy of the external one, or an opened ticket): the
 * caller wipes it whichever way this returns. */
static kx_result choose_tls13(ktlsx_conn *c, hello *h, bool second_hello, psk_choice *pc)
{
    const ktlsx_config *cfg = c->cfg;
    /* TLS 1.3: legacy_compression_methods must be exactly {null}. */
    KX_ENSURE(h->comp.len == 1 && h->comp.data[0] == 0, KX_ALERT_ILLEGAL_PARAMETER, "compression offered");
    /* We never accept 0-RTT (no ticket of ours allows it), but a client with
     * a provisioned external PSK may send early data right behind its hello
     * anyway: RFC 8446 §4.2.10 has the server skip it (conn.c, read_record).
     * A retried hello may not offer it again (§4.1.2). */
    if (second_hello) {
        KX_ENSURE(!kx_has_ext(&h->e, KX_EXT_EARLY_DATA), KX_ALERT_ILLEGAL_PARAMETER,
                  "second ClientHello offers early_data");
        c->early_data_skip = 0; /* early data ends with the retry (§4.2.10) */
    } else if (kx_has_ext(&h->e, KX_EXT_EARLY_DATA))
        c->early_data_skip = KX_MAX_SKIPPED_EARLY_DATA;
    if (kx_has_ext(&h->e, KX_EXT_PSK_KEY_EXCHANGE_MODES)) {
        kx_reader m = h->e.data[KX_EXT_PSK_KEY_EXCHANGE_MODES], list;
        KX_GUARD(kx_read_vec(&m, 1, 1, 255, &list));
        c->psk_modes = 0;
        for (size_t i = 0; i < list.len; i++)
            if (list.data[i] < 2) c->psk_modes |= (uint8_t)(1u << list.data[i]);
    }
    KX_GUARD(find_psk(c, h, pc));
    /* Our preference order; a suite with the PSK's hash first, so that the PSK can be used. */
    const kx_suite *suite = NULL;
    for (int pass = pc->found ? 0 : 1; pass < 2 && !suite; pass++) {
        for (size_t i = 0; i < cfg->suite_count && !suite; i++) {
            const kx_suite *s = kx_suite_by_id(cfg->suites[i]);
            if (s && s->version == KTLSX_TLS13 && offers_suite(h, s->id) && (pass == 1 || s->hash == pc->hash))
                suite = s;
        }
    }
    KX_ENSURE(suite != NULL, KX_ALERT_HANDSHAKE_FAILURE, "no cipher suite in common");
    if (second_hello) {
        KX_ENSURE(suite == c->suite, KX_ALERT_ILLEGAL_PARAMETER, "second ClientHello changed the cipher suite");
        KX_ENSURE(kx_has_ext(&h->e, KX_EXT_COOKIE), KX_ALERT_MISSING_EXTENSION, "second ClientHello lacks the cookie");
        kx_reader d = h->e.data[KX_EXT_COOKIE], cookie;
        KX_GUARD(kx_read_vec(&d, 2, 1, 65535, &cookie));
        KX_ENSURE(cookie.len == c->cookie_len && kx_ct_equal(cookie.data, c->cookie, c->cookie_len),
                  KX_ALERT_ILLEGAL_PARAMETER, "cookie does not match");
    } else {
        c->suite = suite;
        KX_GUARD(kx_transcript_set_hash(&c->transcript, suite->hash));
    }
    c->resumed = false;
    KX_GUARD(use_psk(c, h, pc));
    if (!c->resumed) {
        KX_ENSURE(kx_has_ext(&h->e, KX_EXT_SIGNATURE_ALGORITHMS), KX_ALERT_MISSING_EXTENSION,
                  "ClientHello has no signature_algorithms");
        KX_ENSURE(cfg->cert_count > 0, KX_ALERT_HANDSHAKE_FAILURE, "no certificate configured and no usable PSK");
        KX_ENSURE(choose_certificate(c, suite, h), KX_ALERT_HANDSHAKE_FAILURE,
                  "no certificate matches the client's signature algorithms");
    }
    bool need_hrr = false;
    if (!c->resumed || c->psk_dhe) KX_GUARD(choose_group13(c, h, second_hello, &need_hrr));
    if (need_hrr) {
        KX_ENSURE(!second_hello, KX_ALERT_ILLEGAL_PARAMETER, "second ClientHello still needs a retry");
        c->hrr = true;
    }
    /* A PSK authenticates the server; no CertificateRequest with it (RFC 8446 §4.3.2). */
    c->cert_requested = cfg->verify_client != KTLSX_VERIFY_NONE && !c->resumed;
    return KX_OK;
}

static kx_result handle_tls13(ktlsx_conn *c, hello *h, bool second_hello)
{
    psk_choice pc = { 0 };
    kx_result r = choose_tls13(c, h, second_hello, &pc);
    kx_wipe_obj(pc); /* every exit: a failure after find_psk must not leave the PSK on the stack */
    return r;
}

/* ---- TLS 1.2 ---- */

static kx_result resume_tls12(ktlsx_conn *c, const hello *h)
{
    const ktlsx_config *cfg = c->cfg;
    kx_session s;
    bool found = false;
    if (kx_has_ext(&h->e, KX_EXT_SESSION_TICKET) && h->e.data[KX_EXT_SESSION_TICKET].len && cfg->tickets_enabled)
        found = kx_ticket_open(&c->cfg->tickets, h->e.data[KX_EXT_SESSION_TICKET].data, h->e.data[KX_EXT_SESSION_TICKET].len, &s);
    if (!found) found = kx_session_cache_get(cfg->session_cache, h->sid.data, h->sid.len, &s);
    bool from_store = false;
    if (!found) found = from_store = kx_store_get(c, h->sid.data, h->sid.len, &s); /* external store, behind the cache */
    if (!found) return KX_OK;
    const kx_suite *suite = kx_suite_by_id(s.suite);
    /* RFC 7627 §5.3: resume only sessions that used EMS, and only when this hello offers it. */
    bool ok = s.version == KTLSX_TLS12 && suite && offers_suite(h, suite->id) &&
              kx_list_has(cfg->suites, cfg->suite_count, suite->id) && s.ems && c->offered_ems &&
              s.secret_len == KX_TLS12_MASTER;
    if (ok) {
        c->resumed = true;
        c->resumed_from_store = from_store;
        c->suite = suite;
        c->ems = true;
        memcpy(c->master, s.secret, KX_TLS12_MASTER);
        kx_copy_str(c->peer_subject, sizeof c->peer_subject, s.peer_subject);
        c->session = s;
    }
    kx_session_wipe(&s);
    return KX_OK;
}

/* ec_point_formats (RFC 8422 §5.1.2): a list that leaves out uncompressed
 * points, from a client naming any curve, aborts with illegal_parameter; we
 * answer with the extension only if the client sent it (§5.2). */
static kx_result check_point_formats(ktlsx_conn *c, const hello *h)
{
    c->offered_point_formats = kx_has_ext(&h->e, KX_EXT_EC_POINT_FORMATS);
    if (!c->offered_point_formats) return KX_OK;
    kx_reader d = h->e.data[KX_EXT_EC_POINT_FORMATS], list;
    KX_GUARD(kx_read_vec(&d, 1, 1, 255, &list));
    KX_GUARD(kx_reader_done(&d));
    bool uncompressed = memchr(list.data, 0, list.len) != NULL;
    KX_ENSURE(uncompressed || !h->has_groups, KX_ALERT_ILLEGAL_PARAMETER,
              "ec_point_formats lacks the uncompressed format");
    return KX_OK;
}

static kx_result handle_tls12(ktlsx_conn *c, hello *h)
{
    const ktlsx_config *cfg = c->cfg;
    bool has_null = false;
    for (size_t i = 0; i < h->comp.len; i++) has_null |= h->comp.data[i] == 0;
    KX_ENSURE(has_null, KX_ALERT_ILLEGAL_PARAMETER, "client does not offer null compression");
    c->offered_ems = kx_has_ext(&h->e, KX_EXT_EXTENDED_MASTER_SECRET);
    c->client_offered_ticket = kx_has_ext(&h->e, KX_EXT_SESSION_TICKET);
    KX_GUARD(check_point_formats(c, h));
    /* RFC 5746: the extension (empty on an initial handshake) or the SCSV. */
    if (kx_has_ext(&h->e, KX_EXT_RENEGOTIATION_INFO)) {
        KX_ENSURE(h->e.data[KX_EXT_RENEGOTIATION_INFO].len == 1 && h->e.data[KX_EXT_RENEGOTIATION_INFO].data[0] == 0,
                  KX_ALERT_HANDSHAKE_FAILURE, "non-empty renegotiation_info on an initial handshake");
        c->secure_renegotiation = true;
    }
    if (offers_suite(h, TLS_EMPTY_RENEGOTIATION_INFO_SCSV)) c->secure_renegotiation = true;
    /* RFC 5246 §7.4.1.4.1: no signature_algorithms means {sha1,rsa} and
     * {sha1,ecdsa} only, and RFC 9155 §2 forbids SHA-1 signatures: the server
     * must abort with handshake_failure unless it signs nothing.  So with the
     * extension absent no scheme is usable (signing with one the client never
     * allowed is what we used to do); only RSA key transport, which has no
     * ServerKeyExchange, can still be chosen.  OpenSSL at its default security
     * level does the same: SHA-1 signatures are refused, a suite that needs
     * none may proceed. */
    bool has_sigalgs = kx_has_ext(&h->e, KX_EXT_SIGNATURE_ALGORITHMS);
    c->peer_sigalg_count = 0;
    if (has_sigalgs) KX_GUARD(read_sigalgs_ext(c, h));
    c->resumed = false;
    KX_GUARD(resume_tls12(c, h));
    if (!c->resumed) {
        /* Our preference among suites the client offers and a certificate of ours can serve. */
        c->suite = NULL;
        for (size_t i = 0; i < cfg->suite_count && !c->suite; i++) {
            const kx_suite *s = kx_suite_by_id(cfg->suites[i]);
            if (!s || s->version != KTLSX_TLS12 || !offers_suite(h, s->id)) continue;
            if (s->kex == KX_KX_RSA && !cfg->legacy_rsa_kx) continue;
            if (choose_certificate(c, s, h)) c->suite = s;
        }
        KX_ENSURE(c->suite != NULL || has_sigalgs, KX_ALERT_HANDSHAKE_FAILURE,
                  "TLS 1.2 ClientHello without signature_algorithms allows only SHA-1 signatures, which we do "
                  "not make (RFC 9155); only RSA key transport could proceed");
        KX_ENSURE(c->suite != NULL, KX_ALERT_HANDSHAKE_FAILURE, "no cipher suite in common");
        if (c->suite->kex != KX_KX_RSA) {
            c->group = 0;
            for (size_t i = 0; i < cfg->group_count && !c->group; i++)
                if (!h->has_groups || kx_list_has(h->groups, h->group_count, cfg->groups[i])) c->group = cfg->groups[i];
            KX_ENSURE(c->group != 0, KX_ALERT_HANDSHAKE_FAILURE, "no key exchange group in common");
        }
        c->ems = c->offered_ems;
        c->cert_requested = cfg->verify_client != KTLSX_VERIFY_NONE;
        /* A new session ID when we can resume by it; echoing is only for resumption. */
        c->session_id_len = cfg->session_cache || kx_store_enabled(cfg) ? 32 : 0;
        if (c->session_id_len) KX_GUARD(kx_random(c->session_id, c->session_id_len));
    } else {
        c->cert_requested = false;
    }
    c->send_ticket12 = cfg->tickets_enabled && c->client_offered_ticket;
    /* TLS 1.2 CertificateVerify signs the raw messages, not a hash. */
    c->transcript.keep_raw = c->cert_requested;
    return kx_transcript_set_hash(&c->transcript, c->suite->hash);
}

kx_result kx_client_hello_handle(ktlsx_conn *c, kx_reader *body)
{
    const ktlsx_config *cfg = c->cfg;
    bool second_hello = c->hrr;
    hello h = { 0 };
    uint8_t random[32];
    kx_reader ext_block = { 0 };
    KX_GUARD(kx_read_u16(body, &h.legacy_version));
    KX_GUARD(kx_read_copy(body, random, 32));
    KX_GUARD(kx_read_vec(body, 1, 0, 32, &h.sid));
    KX_GUARD(kx_read_vec(body, 2, 2, 65534, &h.suites));
    KX_GUARD(kx_read_vec(body, 1, 1, 255, &h.comp));
    KX_ENSURE(h.suites.len % 2 == 0, KX_ALERT_DECODE_ERROR, "odd cipher suite list");
    if (kx_reader_left(body)) KX_GUARD(kx_read_vec(body, 2, 0, 65535, &ext_block));
    KX_GUARD(kx_exts_parse(&ext_block, KX_IN_CH, 0, &h.e));
    /* pre_shared_key must be the last extension (RFC 8446 §4.2.11). */
    KX_ENSURE(!kx_has_ext(&h.e, KX_EXT_PRE_SHARED_KEY) || h.e.psk_last, KX_ALERT_ILLEGAL_PARAMETER,
              "pre_shared_key is not the last extension");
    /* RFC 8446 Appendix D.5: SSL 3.0 or older in legacy_version aborts the
     * handshake whatever supported_versions offers (RFC 7568 retired SSL 3.0);
     * checked once the message has parsed, so a malformed one is decode_error. */
    KX_ENSURE(h.legacy_version > 0x0300, KX_ALERT_PROTOCOL_VERSION, "ClientHello legacy_version is SSL 3.0 or older");

    if (second_hello) {
        KX_ENSURE(memcmp(random, c->client_random, 32) == 0 && h.sid.len == c->session_id_len &&
                      memcmp(h.sid.data, c->session_id, h.sid.len) == 0,
                  KX_ALERT_ILLEGAL_PARAMETER, "second ClientHello differs from the first");
    } else {
        memcpy(c->client_random, random, 32);
        c->session_id_len = h.sid.len;
        memcpy(c->session_id, h.sid.data, h.sid.len);
        /* Virtual hosts (1.0 hooks): the SNI callback may move the connection to
         * another configuration, so it runs before anything below reads one. */
        if (kx_has_ext(&h.e, KX_EXT_SERVER_NAME)) KX_GUARD(parse_sni(c, h.e.data[KX_EXT_SERVER_NAME]));
        KX_GUARD(kx_hook_sni(c));
        cfg = c->cfg;
    }

    /* Version (RFC 8446 §4.2.1): supported_versions if present, else legacy_version. */
    bool offers13 = false, offers12 = h.legacy_version >= KTLSX_TLS12;
    if (kx_has_ext(&h.e, KX_EXT_SUPPORTED_VERSIONS)) {
        kx_reader d = h.e.data[KX_EXT_SUPPORTED_VERSIONS], list;
        KX_GUARD(kx_read_vec(&d, 1, 2, 254, &list));
        KX_GUARD(kx_reader_done(&d));
        offers12 = false;
        while (kx_reader_left(&list)) {
            uint16_t v;
            KX_GUARD(kx_read_u16(&list, &v));
            offers13 |= v == KTLSX_TLS13;
            offers12 |= v == KTLSX_TLS12;
        }
    }
    c->client_offered_13 = offers13;
    if (offers13 && cfg->max_version == KTLSX_TLS13) c->version = KTLSX_TLS13;
    else if (offers12 && cfg->min_version == KTLSX_TLS12 && !second_hello) c->version = KTLSX_TLS12;
    else return KX_FAIL(KX_ALERT_PROTOCOL_VERSION, "client does not offer a protocol version we support");
    /* RFC 7507: a fallback retry while we support something better means an attack. */
    KX_ENSURE(!(offers_suite(&h, TLS_FALLBACK_SCSV) && c->version < cfg->max_version), KX_ALERT_INAPPROPRIATE_FALLBACK,
              "client signalled a fallback but we support a higher version");

    if (kx_has_ext(&h.e, KX_EXT_SUPPORTED_GROUPS)) {
        kx_reader d = h.e.data[KX_EXT_SUPPORTED_GROUPS], list;
        KX_GUARD(kx_read_vec(&d, 2, 2, 65534, &list));
        KX_GUARD(kx_reader_done(&d));
        KX_GUARD(kx_read_u16_list_kept(list, implemented_group, NULL, h.groups, KX_HELLO_GROUPS, &h.group_count));
        h.has_groups = true;
    }
    if (c->version == KTLSX_TLS13 && kx_has_ext(&h.e, KX_EXT_SIGNATURE_ALGORITHMS)) KX_GUARD(read_sigalgs_ext(c, &h));
    c->alpn[0] = 0;
    if (kx_has_ext(&h.e, KX_EXT_ALPN)) KX_GUARD(choose_alpn(c, h.e.data[KX_EXT_ALPN]));

    /* issue 9: record_size_limit (RFC 8449): answered whenever offered. */
    c->rsl_negotiated = false;
    c->rsl_peer = c->rsl_ours = 0;
    if (kx_has_ext(&h.e, KX_EXT_RECORD_SIZE_LIMIT)) KX_GUARD(kx_rsl_server_accept(c, h.e.data[KX_EXT_RECORD_SIZE_LIMIT]));
    kx_rsl_apply(c);
    if (c->version == KTLSX_TLS13) KX_GUARD(handle_tls13(c, &h, second_hello));
    else KX_GUARD(handle_tls12(c, &h));
    /* Our handler adds the ClientHello itself: the PSK binder needed the transcript before it. */
    KX_GUARD(kx_transcript_add(&c->transcript, c->msg_raw, c->msg_raw_len));

    kx_trace(c, true, "ClientHello%s sni=%s suites=%zu sigalgs=%zu alpn=%s%s", second_hello ? " (retry)" : "",
             c->server_name[0] ? c->server_name : "-", h.suites.len / 2, c->peer_sigalg_count,
             c->alpn[0] ? c->alpn : "-", c->resumed ? " resume=1" : "");
    kx_flow_rebuild(c);
    return KX_OK;
}
