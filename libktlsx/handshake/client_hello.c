/* ClientHello (RFC 8446 §4.1.2): written by the client, handled by the server. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* ---- client: write ---- */

static kx_result write_ext(ktlsx_conn *c, kx_ext ext, size_t *mark)
{
    c->sent_exts |= 1u << ext;
    KX_GUARD(kx_write_u16(&c->hs_out, kx_ext_type(ext)));
    return kx_vec_open(&c->hs_out, 2, mark);
}

static bool suite_offered(const ktlsx_conn *c, const kx_suite *s)
{
    return s->version >= c->cfg->min_version && s->version <= c->cfg->max_version &&
           /* TLS 1.2 suites are offered only when a TLS 1.2 engine exists for them. */
           s->version == KTLSX_TLS13;
}

kx_result kx_client_hello_write(ktlsx_conn *c)
{
    ktlsx_config *cfg = c->cfg;
    KX_ENSURE(cfg->max_version == KTLSX_TLS13, KX_ALERT_PROTOCOL_VERSION, "TLS 1.2 is not available in this build");
    kx_buf *o = &c->hs_out;
    if (!c->hrr) {
        KX_GUARD(kx_random(c->client_random, sizeof c->client_random));
        /* A non-empty legacy_session_id puts TLS 1.3 in middlebox compatibility mode (RFC 8446 D.4). */
        c->session_id_len = 32;
        KX_GUARD(kx_random(c->session_id, c->session_id_len));
        c->kex_group = cfg->groups[0];
    }
    /* A fresh key share: for the first group we prefer, or the one a HelloRetryRequest named. */
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    kx_buf_reset(&c->kex_pub);
    KX_GUARD(kx_kex_keygen(c->kex_group, &c->kex_key, &c->kex_pub));

    size_t msg, v, e, x, y;
    c->sent_exts = 0;
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
    KX_GUARD(kx_vec_close(o, 2, v));
    KX_GUARD(kx_write_vec(o, 1, "\0", 1)); /* compression: null only */

    KX_GUARD(kx_vec_open(o, 2, &e));
    if (c->sni[0]) {
        KX_GUARD(write_ext(c, KX_EXT_SERVER_NAME, &x));
        KX_GUARD(kx_vec_open(o, 2, &y));
        KX_GUARD(kx_write_u8(o, 0)); /* host_name */
        KX_GUARD(kx_write_vec(o, 2, c->sni, strlen(c->sni)));
        KX_GUARD(kx_vec_close(o, 2, y));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    KX_GUARD(write_ext(c, KX_EXT_SUPPORTED_VERSIONS, &x));
    KX_GUARD(kx_vec_open(o, 1, &y));
    KX_GUARD(kx_write_u16(o, KTLSX_TLS13));
    KX_GUARD(kx_vec_close(o, 1, y));
    KX_GUARD(kx_vec_close(o, 2, x));

    KX_GUARD(write_ext(c, KX_EXT_SUPPORTED_GROUPS, &x));
    KX_GUARD(kx_vec_open(o, 2, &y));
    for (size_t i = 0; i < cfg->group_count; i++) KX_GUARD(kx_write_u16(o, cfg->groups[i]));
    KX_GUARD(kx_vec_close(o, 2, y));
    KX_GUARD(kx_vec_close(o, 2, x));

    KX_GUARD(write_ext(c, KX_EXT_SIGNATURE_ALGORITHMS, &x));
    KX_GUARD(kx_vec_open(o, 2, &y));
    for (size_t i = 0; i < cfg->sigalg_count; i++) KX_GUARD(kx_write_u16(o, cfg->sigalgs[i]));
    KX_GUARD(kx_vec_close(o, 2, y));
    KX_GUARD(kx_vec_close(o, 2, x));

    KX_GUARD(write_ext(c, KX_EXT_KEY_SHARE, &x));
    KX_GUARD(kx_vec_open(o, 2, &y));
    KX_GUARD(kx_write_u16(o, c->kex_group));
    KX_GUARD(kx_write_vec(o, 2, c->kex_pub.data, c->kex_pub.len));
    KX_GUARD(kx_vec_close(o, 2, y));
    KX_GUARD(kx_vec_close(o, 2, x));

    /* psk_dhe_ke: lets servers send session tickets (they only do when a client can use them). */
    KX_GUARD(write_ext(c, KX_EXT_PSK_KEY_EXCHANGE_MODES, &x));
    KX_GUARD(kx_write_vec(o, 1, "\1", 1));
    KX_GUARD(kx_vec_close(o, 2, x));

    if (cfg->alpn_len) {
        KX_GUARD(write_ext(c, KX_EXT_ALPN, &x));
        KX_GUARD(kx_write_vec(o, 2, cfg->alpn, cfg->alpn_len));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    if (c->cookie_len) {
        KX_GUARD(write_ext(c, KX_EXT_COOKIE, &x));
        KX_GUARD(kx_write_vec(o, 2, c->cookie, c->cookie_len));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    KX_GUARD(kx_vec_close(o, 2, e));
    KX_GUARD(kx_hs_end(c, msg));

    if (kx_tracing(c)) {
        char groups[128] = "", alpn[128] = "-";
        size_t n = 0;
        for (size_t i = 0; i < cfg->group_count && n < sizeof groups - 16; i++)
            n += (size_t)snprintf(groups + n, sizeof groups - n, "%s%s", i ? "," : "", kx_group_name(cfg->groups[i]));
        if (cfg->alpn_len) {
            n = 0;
            for (size_t i = 0; i < cfg->alpn_len && n < sizeof alpn - 2; i += 1 + cfg->alpn[i]) {
                n += (size_t)snprintf(alpn + n, sizeof alpn - n, "%s%.*s", i ? "," : "", cfg->alpn[i],
                                      (const char *)cfg->alpn + i + 1);
            }
        }
        kx_trace(c, true, "ClientHello sni=%s suites=%zu groups=%s key_share=%s alpn=%s", c->sni[0] ? c->sni : "-",
                 suites, groups, kx_group_name(c->kex_group), alpn);
    }
    return KX_OK;
}

/* ---- server: handle ---- */

static kx_result parse_sni(ktlsx_conn *c, kx_reader *data)
{
    kx_reader list, name;
    KX_GUARD(kx_read_vec(data, 2, 1, 65535, &list));
    KX_GUARD(kx_reader_done(data));
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

static kx_result choose_alpn(ktlsx_conn *c, kx_reader *data)
{
    kx_reader list;
    KX_GUARD(kx_read_vec(data, 2, 2, 65535, &list));
    KX_GUARD(kx_reader_done(data));
    /* Validate the whole list first: every name non-empty. */
    kx_reader scan = list;
    while (kx_reader_left(&scan)) {
        kx_reader name;
        KX_GUARD(kx_read_vec(&scan, 1, 1, 255, &name));
    }
    const ktlsx_config *cfg = c->cfg;
    if (!cfg->alpn_len) return KX_OK; /* we do not speak ALPN: ignore it, as OpenSSL does */
    /* Server preference (RFC 7301 §3.2). */
    for (size_t i = 0; i < cfg->alpn_len; i += 1 + cfg->alpn[i]) {
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

static kx_result read_u16_list(kx_reader *data, int prefix, uint16_t *out, size_t cap, size_t *count)
{
    kx_reader list;
    KX_GUARD(kx_read_vec(data, prefix, 2, 65534, &list));
    KX_GUARD(kx_reader_done(data));
    KX_ENSURE(list.len % 2 == 0, KX_ALERT_DECODE_ERROR, "odd-length list");
    *count = 0;
    while (kx_reader_left(&list)) {
        uint16_t v;
        KX_GUARD(kx_read_u16(&list, &v));
        if (*count < cap) out[(*count)++] = v;
    }
    return KX_OK;
}

/* Pick the certificate and signature algorithm: the client's preference among
 * what our certificates can do. */
static kx_result choose_certificate(ktlsx_conn *c)
{
    const ktlsx_config *cfg = c->cfg;
    KX_ENSURE(cfg->cert_count > 0, KX_ALERT_INTERNAL_ERROR, "server has no certificate");
    for (size_t i = 0; i < c->peer_sigalg_count; i++) {
        uint16_t s = c->peer_sigalgs[i];
        if (!kx_list_has(cfg->sigalgs, cfg->sigalg_count, s)) continue;
        for (size_t k = 0; k < cfg->cert_count; k++) {
            if (kx_sigalg_fits_key(s, cfg->certs[k].key, 1)) {
                c->our_cert = &cfg->certs[k];
                c->our_sigalg = s;
                return KX_OK;
            }
        }
    }
    return KX_FAIL(KX_ALERT_HANDSHAKE_FAILURE, "no certificate matches the client's signature algorithms");
}

/* Choose the key exchange group: a share the client already sent if we
 * support its group (no extra round trip), else our most preferred group the
 * client supports, via HelloRetryRequest. */
static kx_result choose_group(ktlsx_conn *c, const kx_exts *e, bool second_hello, bool *need_hrr)
{
    const ktlsx_config *cfg = c->cfg;
    *need_hrr = false;
    KX_ENSURE(kx_has_ext(e, KX_EXT_KEY_SHARE), KX_ALERT_MISSING_EXTENSION, "ClientHello has no key_share");
    KX_ENSURE(kx_has_ext(e, KX_EXT_SUPPORTED_GROUPS), KX_ALERT_MISSING_EXTENSION, "ClientHello has no supported_groups");
    uint16_t client_groups[32];
    size_t ngroups;
    kx_reader d = e->data[KX_EXT_SUPPORTED_GROUPS];
    KX_GUARD(read_u16_list(&d, 2, client_groups, 32, &ngroups));

    kx_reader shares_ext = e->data[KX_EXT_KEY_SHARE], shares;
    KX_GUARD(kx_read_vec(&shares_ext, 2, 0, 65535, &shares));
    KX_GUARD(kx_reader_done(&shares_ext));
    uint16_t seen[32];
    size_t nseen = 0;
    const uint8_t *chosen_share = NULL;
    size_t chosen_len = 0;
    uint16_t chosen = 0;
    while (kx_reader_left(&shares)) {
        uint16_t g;
        kx_reader key;
        KX_GUARD(kx_read_u16(&shares, &g));
        KX_GUARD(kx_read_vec(&shares, 2, 1, 65535, &key));
        /* RFC 8446 §4.2.8: no duplicate groups, each share's group must be in supported_groups. */
        KX_ENSURE(!kx_list_has(seen, nseen, g), KX_ALERT_ILLEGAL_PARAMETER, "duplicate key share");
        KX_ENSURE(kx_list_has(client_groups, ngroups, g), KX_ALERT_ILLEGAL_PARAMETER, "key share for an unoffered group");
        if (nseen < 32) seen[nseen++] = g;
        if (!chosen && kx_list_has(cfg->groups, cfg->group_count, g)) {
            chosen = g;
            chosen_share = key.data;
            chosen_len = key.len;
        }
    }
    if (second_hello) {
        /* After our HelloRetryRequest: exactly one share, for the group we asked for. */
        KX_ENSURE(nseen == 1 && chosen == c->kex_group, KX_ALERT_ILLEGAL_PARAMETER,
                  "second ClientHello lacks the requested key share");
    }
    if (!chosen) {
        for (size_t i = 0; i < cfg->group_count; i++) {
            if (kx_list_has(client_groups, ngroups, cfg->groups[i])) {
                c->kex_group = cfg->groups[i];
                *need_hrr = true;
                return KX_OK;
            }
        }
        return KX_FAIL(KX_ALERT_HANDSHAKE_FAILURE, "no key exchange group in common");
    }
    c->kex_group = chosen;
    c->group = chosen;
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    kx_buf_reset(&c->kex_pub);
    KX_GUARD(kx_kex_keygen(chosen, &c->kex_key, &c->kex_pub));
    c->ecdhe_len = sizeof c->ecdhe;
    return kx_kex_derive(chosen, c->kex_key, chosen_share, chosen_len, c->ecdhe, &c->ecdhe_len);
}

kx_result kx_client_hello_handle(ktlsx_conn *c, kx_reader *body)
{
    const ktlsx_config *cfg = c->cfg;
    bool second_hello = c->hrr;
    uint16_t legacy_version;
    uint8_t random[32];
    kx_reader sid, suites, comp, ext_block;
    KX_GUARD(kx_read_u16(body, &legacy_version));
    KX_GUARD(kx_read_copy(body, random, 32));
    KX_GUARD(kx_read_vec(body, 1, 0, 32, &sid));
    KX_GUARD(kx_read_vec(body, 2, 2, 65534, &suites));
    KX_GUARD(kx_read_vec(body, 1, 1, 255, &comp));
    KX_ENSURE(suites.len % 2 == 0, KX_ALERT_DECODE_ERROR, "odd cipher suite list");
    KX_ENSURE(kx_reader_left(body) > 0, KX_ALERT_PROTOCOL_VERSION, "ClientHello without extensions (pre-TLS 1.2 client)");
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &ext_block));
    kx_exts e;
    KX_GUARD(kx_exts_parse(&ext_block, KX_IN_CH, 0, &e));
    /* pre_shared_key must be the last extension (RFC 8446 §4.2.11). */
    KX_ENSURE(!kx_has_ext(&e, KX_EXT_PRE_SHARED_KEY) || e.psk_last, KX_ALERT_ILLEGAL_PARAMETER,
              "pre_shared_key is not the last extension");

    if (second_hello) {
        KX_ENSURE(memcmp(random, c->client_random, 32) == 0 && sid.len == c->session_id_len &&
                      memcmp(sid.data, c->session_id, sid.len) == 0,
                  KX_ALERT_ILLEGAL_PARAMETER, "second ClientHello differs from the first");
    } else {
        memcpy(c->client_random, random, 32);
        c->session_id_len = sid.len;
        memcpy(c->session_id, sid.data, sid.len);
    }

    /* Version: TLS 1.3 only through supported_versions. */
    bool offers13 = false;
    if (kx_has_ext(&e, KX_EXT_SUPPORTED_VERSIONS)) {
        kx_reader d = e.data[KX_EXT_SUPPORTED_VERSIONS], list;
        KX_GUARD(kx_read_vec(&d, 1, 2, 254, &list));
        KX_GUARD(kx_reader_done(&d));
        while (kx_reader_left(&list)) {
            uint16_t v;
            KX_GUARD(kx_read_u16(&list, &v));
            if (v == KTLSX_TLS13) offers13 = true;
        }
    }
    KX_ENSURE(offers13 && cfg->max_version == KTLSX_TLS13, KX_ALERT_PROTOCOL_VERSION,
              "client does not offer a protocol version we support");
    c->version = KTLSX_TLS13;
    /* TLS 1.3: legacy_compression_methods must be exactly {null}. */
    KX_ENSURE(comp.len == 1 && comp.data[0] == 0, KX_ALERT_ILLEGAL_PARAMETER, "compression offered");

    /* Cipher suite: our preference order. */
    const kx_suite *suite = NULL;
    for (size_t i = 0; i < cfg->suite_count && !suite; i++) {
        const kx_suite *s = kx_suite_by_id(cfg->suites[i]);
        if (!s || s->version != KTLSX_TLS13) continue;
        kx_reader scan = suites;
        while (kx_reader_left(&scan)) {
            uint16_t id;
            KX_GUARD(kx_read_u16(&scan, &id));
            if (id == s->id) {
                suite = s;
                break;
            }
        }
    }
    KX_ENSURE(suite != NULL, KX_ALERT_HANDSHAKE_FAILURE, "no cipher suite in common");
    if (second_hello) {
        KX_ENSURE(suite == c->suite, KX_ALERT_ILLEGAL_PARAMETER, "second ClientHello changed the cipher suite");
        KX_ENSURE(kx_has_ext(&e, KX_EXT_COOKIE), KX_ALERT_MISSING_EXTENSION, "second ClientHello lacks the cookie");
        kx_reader d = e.data[KX_EXT_COOKIE], cookie;
        KX_GUARD(kx_read_vec(&d, 2, 1, 65535, &cookie));
        KX_ENSURE(cookie.len == c->cookie_len && kx_ct_equal(cookie.data, c->cookie, c->cookie_len),
                  KX_ALERT_ILLEGAL_PARAMETER, "cookie does not match");
    } else {
        c->suite = suite;
        KX_GUARD(kx_transcript_set_hash(&c->transcript, suite->hash));
    }

    KX_ENSURE(kx_has_ext(&e, KX_EXT_SIGNATURE_ALGORITHMS), KX_ALERT_MISSING_EXTENSION,
              "ClientHello has no signature_algorithms");
    kx_reader d = e.data[KX_EXT_SIGNATURE_ALGORITHMS];
    KX_GUARD(read_u16_list(&d, 2, c->peer_sigalgs, KX_MAX_SIGALGS, &c->peer_sigalg_count));
    if (!second_hello && kx_has_ext(&e, KX_EXT_SERVER_NAME)) KX_GUARD(parse_sni(c, &e.data[KX_EXT_SERVER_NAME]));
    c->alpn[0] = 0;
    if (kx_has_ext(&e, KX_EXT_ALPN)) KX_GUARD(choose_alpn(c, &e.data[KX_EXT_ALPN]));
    if (kx_has_ext(&e, KX_EXT_PSK_KEY_EXCHANGE_MODES)) {
        kx_reader m = e.data[KX_EXT_PSK_KEY_EXCHANGE_MODES], list;
        KX_GUARD(kx_read_vec(&m, 1, 1, 255, &list));
        c->psk_modes = 0;
        for (size_t i = 0; i < list.len; i++)
            if (list.data[i] < 2) c->psk_modes |= (uint8_t)(1u << list.data[i]);
    }
    KX_GUARD(choose_certificate(c));

    bool need_hrr;
    KX_GUARD(choose_group(c, &e, second_hello, &need_hrr));
    if (kx_tracing(c))
        kx_trace(c, true, "ClientHello%s sni=%s suites=%zu sigalgs=%zu alpn=%s", second_hello ? " (retry)" : "",
                 c->server_name[0] ? c->server_name : "-", suites.len / 2, c->peer_sigalg_count,
                 c->alpn[0] ? c->alpn : "-");
    if (need_hrr) {
        KX_ENSURE(!second_hello, KX_ALERT_ILLEGAL_PARAMETER, "second ClientHello still needs a retry");
        c->hrr = true;
    }
    c->cert_requested = cfg->verify_client != KTLSX_VERIFY_NONE;
    kx_flow_rebuild(c);
    return KX_OK;
}
