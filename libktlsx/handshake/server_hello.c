/* ServerHello and HelloRetryRequest (RFC 8446 §4.1.3, §4.1.4; RFC 5246
 * §7.4.1.3): written by the server, handled by the client.  They share a
 * wire format; a HelloRetryRequest is a ServerHello whose random is a fixed
 * value, and a TLS 1.2 ServerHello is one without supported_versions. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* ServerHello.random sentinel of a TLS 1.2 ServerHello from a 1.3-capable server (RFC 8446 §4.1.3). */
const uint8_t kx_downgrade_tls12[8] = { 0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x01 }; /* "DOWNGRD\1" */

/* SHA-256("HelloRetryRequest"), RFC 8446 §4.1.3. */
static const uint8_t hrr_random[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

/* ---- TLS 1.3: derive the handshake secrets once ServerHello is in the transcript ---- */

static kx_result enter_handshake_keys(ktlsx_conn *c)
{
    uint8_t th[KX_MAX_HASH];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    kx_result r = kx_tls13_ks_early(&c->ks, c->suite->hash, c->resumed ? c->psk : NULL, c->resumed ? c->psk_len : 0);
    if (!kx_failed(r)) r = kx_tls13_ks_handshake(&c->ks, c->ecdhe_len ? c->ecdhe : NULL, c->ecdhe_len, th);
    kx_wipe(c->ecdhe, sizeof c->ecdhe);
    kx_wipe(c->psk, sizeof c->psk);
    c->ecdhe_len = 0;
    EVP_PKEY_free(c->kex_key); /* the ephemeral key has done its job */
    c->kex_key = NULL;
    KX_GUARD(r);
    kx_keylog(c, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", c->ks.c_hs, c->ks.hlen);
    kx_keylog(c, "SERVER_HANDSHAKE_TRAFFIC_SECRET", c->ks.s_hs, c->ks.hlen);
    bool client = c->role == KTLSX_CLIENT;
    KX_GUARD(kx_set_traffic_secret(c, &c->tx, client ? c->ks.c_hs : c->ks.s_hs));
    return kx_set_traffic_secret(c, &c->rx, client ? c->ks.s_hs : c->ks.c_hs);
}

/* ======================= server: write ======================= */

/* RFC 8446 Appendix D.4: a client that sends a non-empty legacy_session_id
 * runs in middlebox compatibility mode, and the server MUST then send one
 * dummy change_cipher_spec record right after its first handshake record:
 * the HelloRetryRequest if there is one (and not again after the second
 * ServerHello), else the ServerHello.  It goes out in the clear, before any
 * protected record. */
static kx_result write_compat_ccs(ktlsx_conn *c)
{
    if (c->session_id_len == 0) return KX_OK;
    KX_GUARD(kx_hs_flush(c)); /* the hello is a record of its own, ahead of the CCS */
    KX_GUARD(kx_record_write(&c->tx, KX_CT_CHANGE_CIPHER_SPEC, (const uint8_t *)"\1", 1, &c->out));
    kx_trace(c, false, "ChangeCipherSpec (middlebox compatibility)");
    return KX_OK;
}

static kx_result write_hello_start(ktlsx_conn *c, const uint8_t random[32], size_t *msg, size_t *exts)
{
    kx_buf *o = &c->hs_out;
    KX_GUARD(kx_hs_begin(c, KX_HS_SERVER_HELLO, msg));
    KX_GUARD(kx_write_u16(o, 0x0303));
    KX_GUARD(kx_write_bytes(o, random, 32));
    KX_GUARD(kx_write_vec(o, 1, c->session_id, c->session_id_len));
    KX_GUARD(kx_write_u16(o, c->suite->id));
    KX_GUARD(kx_write_u8(o, 0));
    return kx_vec_open(o, 2, exts);
}

static kx_result write_ext(kx_buf *o, uint16_t type, const void *data, size_t len)
{
    KX_GUARD(kx_write_u16(o, type));
    return kx_write_vec(o, 2, data, len);
}

static kx_result write_supported_version(kx_buf *o)
{
    return write_ext(o, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x03\x04", 2);
}

kx_result kx_hello_retry_request_write(ktlsx_conn *c)
{
    kx_buf *o = &c->hs_out;
    /* The transcript restarts from a hash of ClientHello1 (RFC 8446 §4.4.1). */
    KX_GUARD(kx_transcript_hrr_rewrite(&c->transcript));
    /* A cookie binds the retry to this connection: the client must echo it. */
    c->cookie_len = 32;
    KX_GUARD(kx_random(c->cookie, c->cookie_len));
    size_t msg, exts, x;
    KX_GUARD(write_hello_start(c, hrr_random, &msg, &exts));
    KX_GUARD(write_supported_version(o));
    uint8_t group[2] = { (uint8_t)(c->kex_group >> 8), (uint8_t)c->kex_group };
    KX_GUARD(write_ext(o, KX_EXT_TYPE_KEY_SHARE, group, 2));
    KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_COOKIE));
    KX_GUARD(kx_vec_open(o, 2, &x));
    KX_GUARD(kx_write_vec(o, 2, c->cookie, c->cookie_len));
    KX_GUARD(kx_vec_close(o, 2, x));
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "HelloRetryRequest cipher=%s group=%s", c->suite->name, kx_group_name(c->kex_group));
    return write_compat_ccs(c);
}

static kx_result write_server_hello13(ktlsx_conn *c, size_t msg, size_t exts)
{
    kx_buf *o = &c->hs_out;
    size_t x, y;
    KX_GUARD(write_supported_version(o));
    if (c->group) {
        KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_KEY_SHARE));
        KX_GUARD(kx_vec_open(o, 2, &x));
        KX_GUARD(kx_write_u16(o, c->group));
        KX_GUARD(kx_vec_open(o, 2, &y));
        KX_GUARD(kx_write_bytes(o, c->kex_pub.data, c->kex_pub.len));
        KX_GUARD(kx_vec_close(o, 2, y));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    if (c->resumed) {
        uint8_t sel[2] = { (uint8_t)(c->selected_identity >> 8), (uint8_t)c->selected_identity };
        KX_GUARD(write_ext(o, KX_EXT_TYPE_PRE_SHARED_KEY, sel, 2));
    }
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "ServerHello version=TLSv1.3 cipher=%s group=%s%s", c->suite->name,
             c->group ? kx_group_name(c->group) : "-", c->resumed ? " psk=1" : "");
    /* ServerHello goes out in the clear; everything after it under handshake keys. */
    KX_GUARD(kx_hs_flush(c));
    if (!c->hrr) KX_GUARD(write_compat_ccs(c)); /* after a retry it followed the HelloRetryRequest */
    return enter_handshake_keys(c);
}

static kx_result write_server_hello12(ktlsx_conn *c, size_t msg, size_t exts)
{
    kx_buf *o = &c->hs_out;
    size_t x, y;
    if (c->secure_renegotiation) KX_GUARD(write_ext(o, KX_EXT_TYPE_RENEGOTIATION_INFO, "\0", 1));
    if (c->ems) KX_GUARD(write_ext(o, KX_EXT_TYPE_EXTENDED_MASTER_SECRET, NULL, 0));
    /* Only in answer to the client's own (RFC 8422 §5.2, RFC 5246 §7.4.1.4): like every
     * extension here, it is sent only when the ClientHello carried it (renegotiation_info
     * may answer the SCSV instead, RFC 5746 §3.6). */
    if (c->suite->kex != KX_KX_RSA && !c->resumed && c->offered_point_formats)
        KX_GUARD(write_ext(o, KX_EXT_TYPE_EC_POINT_FORMATS, "\1\0", 2));
    if (c->send_ticket12) KX_GUARD(write_ext(o, KX_EXT_TYPE_SESSION_TICKET, NULL, 0));
    KX_GUARD(kx_rsl_write_answer(c)); /* issue 9 */
    if (c->alpn[0]) {
        KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_ALPN));
        KX_GUARD(kx_vec_open(o, 2, &x));
        KX_GUARD(kx_vec_open(o, 2, &y));
        KX_GUARD(kx_write_vec(o, 1, c->alpn, strlen(c->alpn)));
        KX_GUARD(kx_vec_close(o, 2, y));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "ServerHello version=TLSv1.2 cipher=%s%s", c->suite->name, c->resumed ? " resumed=1" : "");
    if (c->resumed) return kx_tls12_key_block(c->suite, c->master, c->client_random, c->server_random, &c->keys12);
    return KX_OK;
}

kx_result kx_server_hello_write(ktlsx_conn *c)
{
    KX_GUARD(kx_random(c->server_random, 32));
    /* RFC 8446 §4.1.3: a TLS 1.3 server negotiating TLS 1.2 marks its random so that a
     * TLS 1.3 client can detect a downgrade. */
    if (c->version == KTLSX_TLS12 && c->cfg->max_version == KTLSX_TLS13)
        memcpy(c->server_random + 24, kx_downgrade_tls12, 8);
    size_t msg, exts;
    KX_GUARD(write_hello_start(c, c->server_random, &msg, &exts));
    return c->version == KTLSX_TLS13 ? write_server_hello13(c, msg, exts) : write_server_hello12(c, msg, exts);
}

/* ======================= client: handle ======================= */

static bool suite_was_offered(const ktlsx_conn *c, uint16_t id, uint16_t version)
{
    const kx_suite *s = kx_suite_by_id(id);
    return s && s->version == version && kx_list_has(c->cfg->suites, c->cfg->suite_count, id) &&
           s->version >= c->cfg->min_version && s->version <= c->cfg->max_version &&
           (s->kex != KX_KX_RSA || c->cfg->legacy_rsa_kx);
}

static kx_result check_selected_version(const kx_exts *e)
{
    kx_reader d = e->data[KX_EXT_SUPPORTED_VERSIONS];
    uint16_t v;
    KX_GUARD(kx_read_u16(&d, &v));
    KX_GUARD(kx_reader_done(&d));
    KX_ENSURE(v == KTLSX_TLS13, KX_ALERT_ILLEGAL_PARAMETER, "server selected a version we did not offer");
    return KX_OK;
}

static kx_result handle_retry(ktlsx_conn *c, uint16_t suite_id, kx_reader *ext_block)
{
    KX_ENSURE(!c->hrr, KX_ALERT_UNEXPECTED_MESSAGE, "second HelloRetryRequest");
    kx_exts e;
    /* A cookie may come back unrequested (RFC 8446 §4.2.2). */
    KX_GUARD(kx_exts_parse(ext_block, KX_IN_HRR, c->sent_exts | (1u << KX_EXT_COOKIE), &e));
    KX_ENSURE(kx_has_ext(&e, KX_EXT_SUPPORTED_VERSIONS), KX_ALERT_MISSING_EXTENSION, "HelloRetryRequest without version");
    KX_GUARD(check_selected_version(&e));
    KX_ENSURE(suite_was_offered(c, suite_id, KTLSX_TLS13), KX_ALERT_ILLEGAL_PARAMETER,
              "server chose a cipher suite we did not offer");
    c->suite = kx_suite_by_id(suite_id);
    uint16_t group = 0;
    if (kx_has_ext(&e, KX_EXT_KEY_SHARE)) {
        kx_reader d = e.data[KX_EXT_KEY_SHARE];
        KX_GUARD(kx_read_u16(&d, &group));
        KX_GUARD(kx_reader_done(&d));
        /* RFC 8446 §4.2.8: a group we support, and not the one we already sent. */
        KX_ENSURE(kx_list_has(c->cfg->groups, c->cfg->group_count, group) && group != c->kex_group,
                  KX_ALERT_ILLEGAL_PARAMETER, "HelloRetryRequest names an unacceptable group");
        c->kex_group = group;
    }
    c->cookie_len = 0;
    if (kx_has_ext(&e, KX_EXT_COOKIE)) {
        kx_reader d = e.data[KX_EXT_COOKIE], cookie;
        KX_GUARD(kx_read_vec(&d, 2, 1, 65535, &cookie));
        KX_GUARD(kx_reader_done(&d));
        KX_ENSURE(cookie.len <= sizeof c->cookie, KX_ALERT_ILLEGAL_PARAMETER, "cookie too long");
        memcpy(c->cookie, cookie.data, cookie.len);
        c->cookie_len = cookie.len;
    }
    /* A retry that changes nothing would loop (RFC 8446 §4.1.4). */
    KX_ENSURE(group || c->cookie_len, KX_ALERT_ILLEGAL_PARAMETER, "HelloRetryRequest changes nothing");
    KX_GUARD(kx_transcript_set_hash(&c->transcript, c->suite->hash));
    KX_GUARD(kx_transcript_hrr_rewrite(&c->transcript));
    KX_GUARD(kx_transcript_add(&c->transcript, c->msg_raw, c->msg_raw_len));
    kx_trace(c, false, "HelloRetryRequest cipher=%s group=%s", c->suite->name, group ? kx_group_name(group) : "-");
    c->hrr = true;
    kx_flow_rebuild(c);
    return KX_OK;
}

static kx_result handle_server_hello13(ktlsx_conn *c, uint16_t suite_id, const kx_exts *e)
{
    KX_GUARD(check_selected_version(e));
    KX_ENSURE(suite_was_offered(c, suite_id, KTLSX_TLS13), KX_ALERT_ILLEGAL_PARAMETER,
              "server chose a cipher suite we did not offer");
    if (c->hrr)
        KX_ENSURE(c->suite->id == suite_id, KX_ALERT_ILLEGAL_PARAMETER, "ServerHello cipher differs from HelloRetryRequest");
    c->suite = kx_suite_by_id(suite_id);
    c->version = KTLSX_TLS13;

    if (kx_has_ext(e, KX_EXT_PRE_SHARED_KEY)) {
        kx_reader d = e->data[KX_EXT_PRE_SHARED_KEY];
        uint16_t selected;
        KX_GUARD(kx_read_u16(&d, &selected));
        KX_GUARD(kx_reader_done(&d));
        /* RFC 8446 §4.2.11: an index into the identities we sent; write_psk sends one. */
        size_t offered = c->offered_psk ? 1 : 0;
        KX_ENSURE(selected < offered, KX_ALERT_ILLEGAL_PARAMETER, "server selected a PSK we did not offer");
        c->selected_identity = selected;
        kx_hash_id psk_hash = c->psk_external ? c->cfg->psk_hash : kx_suite_by_id(c->session.suite)->hash;
        KX_ENSURE(psk_hash == c->suite->hash, KX_ALERT_ILLEGAL_PARAMETER, "server chose a suite the PSK cannot use");
        c->resumed = true;
        if (!c->psk_external) kx_copy_str(c->peer_subject, sizeof c->peer_subject, c->session.peer_subject);
    }
    c->group = 0;
    if (kx_has_ext(e, KX_EXT_KEY_SHARE)) {
        kx_reader d = e->data[KX_EXT_KEY_SHARE], share;
        uint16_t group;
        KX_GUARD(kx_read_u16(&d, &group));
        KX_GUARD(kx_read_vec(&d, 2, 1, 65535, &share));
        KX_GUARD(kx_reader_done(&d));
        KX_ENSURE(group == c->kex_group, KX_ALERT_ILLEGAL_PARAMETER, "server key share is not for the group we sent");
        c->group = group;
        c->ecdhe_len = sizeof c->ecdhe;
        KX_GUARD(kx_kex_derive(group, c->kex_key, share.data, share.len, c->ecdhe, &c->ecdhe_len));
    } else {
        /* Only psk_ke may omit it, and only if we offered psk_ke. */
        KX_ENSURE(c->resumed && c->cfg->psk_ke, KX_ALERT_MISSING_EXTENSION, "ServerHello has no key_share");
    }
    if (!c->hrr) KX_GUARD(kx_transcript_set_hash(&c->transcript, c->suite->hash));
    KX_GUARD(kx_transcript_add(&c->transcript, c->msg_raw, c->msg_raw_len));
    kx_trace(c, false, "ServerHello version=TLSv1.3 cipher=%s group=%s%s", c->suite->name,
             c->group ? kx_group_name(c->group) : "-", c->resumed ? " psk=1" : "");
    kx_flow_rebuild(c);
    return enter_handshake_keys(c);
}

static kx_result handle_server_hello12(ktlsx_conn *c, uint16_t suite_id, const uint8_t random[32], kx_reader sid,
                                       kx_reader *ext_block)
{
    const ktlsx_config *cfg = c->cfg;
    /* RFC 8446 §4.1.4: the ServerHello after a HelloRetryRequest selects the version the retry did. */
    KX_ENSURE(!c->hrr, KX_ALERT_ILLEGAL_PARAMETER, "TLS 1.2 ServerHello after a HelloRetryRequest");
    KX_ENSURE(cfg->min_version == KTLSX_TLS12, KX_ALERT_PROTOCOL_VERSION,
              "server chose TLS 1.2, which this client does not offer");
    /* RFC 8446 §4.1.3: a TLS 1.3-capable server would never pick 1.2 with us; the sentinel says someone made it. */
    KX_ENSURE(!(cfg->max_version == KTLSX_TLS13 && memcmp(random + 24, kx_downgrade_tls12, 8) == 0),
              KX_ALERT_ILLEGAL_PARAMETER, "downgrade detected: TLS 1.2 ServerHello carries the TLS 1.3 sentinel");
    KX_ENSURE(suite_was_offered(c, suite_id, KTLSX_TLS12), KX_ALERT_ILLEGAL_PARAMETER,
              "server chose a cipher suite we did not offer");
    kx_exts e;
    KX_GUARD(kx_exts_parse(ext_block, KX_IN_SH12, c->sent_exts, &e));
    c->version = KTLSX_TLS12;
    c->suite = kx_suite_by_id(suite_id);
    if (kx_has_ext(&e, KX_EXT_RENEGOTIATION_INFO)) {
        KX_ENSURE(e.data[KX_EXT_RENEGOTIATION_INFO].len == 1 && e.data[KX_EXT_RENEGOTIATION_INFO].data[0] == 0,
                  KX_ALERT_HANDSHAKE_FAILURE, "bad renegotiation_info from server");
        c->secure_renegotiation = true;
    }
    c->ems = kx_has_ext(&e, KX_EXT_EXTENDED_MASTER_SECRET);
    KX_ENSURE(c->ems || !cfg->require_ems, KX_ALERT_HANDSHAKE_FAILURE,
              "server does not support the extended master secret (RFC 7627), which is required");
    c->send_ticket12 = kx_has_ext(&e, KX_EXT_SESSION_TICKET);
    if (kx_has_ext(&e, KX_EXT_ALPN)) KX_GUARD(kx_accept_server_alpn(c, e.data[KX_EXT_ALPN]));
    if (kx_has_ext(&e, KX_EXT_RECORD_SIZE_LIMIT)) KX_GUARD(kx_rsl_client_accept(c, e.data[KX_EXT_RECORD_SIZE_LIMIT]));

    /* Resumed if the server echoed the session ID we offered with a session. */
    const kx_session *s = &c->session;
    c->resumed = c->have_session && s->version == KTLSX_TLS12 && sid.len == c->session_id_len && sid.len > 0 &&
                 memcmp(sid.data, c->session_id, sid.len) == 0;
    if (c->resumed) {
        KX_ENSURE(suite_id == s->suite, KX_ALERT_ILLEGAL_PARAMETER, "resumed session with a different cipher suite");
        /* RFC 7627 §5.3: an EMS session must resume with EMS, and we only resume EMS sessions. */
        KX_ENSURE(c->ems && s->ems, KX_ALERT_HANDSHAKE_FAILURE, "resumption without extended master secret");
        memcpy(c->master, s->secret, KX_TLS12_MASTER);
        kx_copy_str(c->peer_subject, sizeof c->peer_subject, s->peer_subject);
        KX_GUARD(kx_tls12_key_block(c->suite, c->master, c->client_random, c->server_random, &c->keys12));
    } else {
        /* A fresh session: remember the ID the server gave it (and forget any old ticket). */
        kx_session_wipe(&c->session);
        memcpy(c->session.session_id, sid.data, sid.len);
        c->session.session_id_len = (uint8_t)sid.len;
    }
    c->transcript.keep_raw = true; /* the server may ask for a certificate: CertificateVerify signs raw messages */
    KX_GUARD(kx_transcript_set_hash(&c->transcript, c->suite->hash));
    KX_GUARD(kx_transcript_add(&c->transcript, c->msg_raw, c->msg_raw_len));
    kx_trace(c, false, "ServerHello version=TLSv1.2 cipher=%s%s ems=%d", c->suite->name, c->resumed ? " resumed=1" : "",
             c->ems);
    kx_flow_rebuild(c);
    return KX_OK;
}

kx_result kx_server_hello_handle(ktlsx_conn *c, kx_reader *body)
{
    uint16_t legacy_version, suite_id;
    uint8_t random[32], comp;
    kx_reader sid, ext_block = { 0 };
    KX_GUARD(kx_read_u16(body, &legacy_version));
    KX_GUARD(kx_read_copy(body, random, 32));
    KX_GUARD(kx_read_vec(body, 1, 0, 32, &sid));
    KX_GUARD(kx_read_u16(body, &suite_id));
    KX_GUARD(kx_read_u8(body, &comp));
    if (kx_reader_left(body)) KX_GUARD(kx_read_vec(body, 2, 0, 65535, &ext_block));
    KX_ENSURE(comp == 0, KX_ALERT_ILLEGAL_PARAMETER, "server chose compression");
    KX_ENSURE(legacy_version == 0x0303, KX_ALERT_PROTOCOL_VERSION, "server chose a protocol version older than TLS 1.2");
    memcpy(c->server_random, random, 32);

    /* Peek for supported_versions: it alone says TLS 1.3 (RFC 8446 §4.2.1). */
    bool is13 = false;
    kx_reader scan = ext_block;
    while (kx_reader_left(&scan) >= 4) {
        uint16_t type;
        kx_reader data;
        if (kx_failed(kx_read_u16(&scan, &type)) || kx_failed(kx_read_vec(&scan, 2, 0, 65535, &data))) break;
        is13 |= type == KX_EXT_TYPE_SUPPORTED_VERSIONS;
    }
    if (!is13) return handle_server_hello12(c, suite_id, random, sid, &ext_block);

    KX_ENSURE(c->cfg->max_version == KTLSX_TLS13, KX_ALERT_ILLEGAL_PARAMETER, "server selected a version we did not offer");
    KX_ENSURE(sid.len == c->session_id_len && memcmp(sid.data, c->session_id, sid.len) == 0,
              KX_ALERT_ILLEGAL_PARAMETER, "server did not echo our session id");
    if (memcmp(random, hrr_random, 32) == 0) return handle_retry(c, suite_id, &ext_block);
    kx_exts e;
    KX_GUARD(kx_exts_parse(&ext_block, KX_IN_SH, c->sent_exts, &e));
    return handle_server_hello13(c, suite_id, &e);
}
