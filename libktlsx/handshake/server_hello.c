/* ServerHello and HelloRetryRequest (RFC 8446 §4.1.3, §4.1.4): written by
 * the server, handled by the client.  They share a wire format; a
 * HelloRetryRequest is a ServerHello whose random is a fixed value. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* SHA-256("HelloRetryRequest"), RFC 8446 §4.1.3. */
static const uint8_t hrr_random[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

/* ---- shared: derive the handshake secrets once ServerHello is in the transcript ---- */

static kx_result enter_handshake_keys(ktlsx_conn *c)
{
    uint8_t th[KX_MAX_HASH];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    kx_result r = kx_tls13_ks_early(&c->ks, c->suite->hash, NULL, 0);
    if (!kx_failed(r)) r = kx_tls13_ks_handshake(&c->ks, c->ecdhe, c->ecdhe_len, th);
    kx_wipe(c->ecdhe, sizeof c->ecdhe);
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

/* ---- server: write ---- */

static kx_result write_hello_start(ktlsx_conn *c, const uint8_t random[32], size_t *msg, size_t *exts)
{
    kx_buf *o = &c->hs_out;
    KX_GUARD(kx_hs_begin(c, KX_HS_SERVER_HELLO, msg));
    KX_GUARD(kx_write_u16(o, 0x0303));
    KX_GUARD(kx_write_bytes(o, random, 32));
    KX_GUARD(kx_write_vec(o, 1, c->session_id, c->session_id_len));
    KX_GUARD(kx_write_u16(o, c->suite->id));
    KX_GUARD(kx_write_u8(o, 0));
    KX_GUARD(kx_vec_open(o, 2, exts));
    size_t x;
    KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_SUPPORTED_VERSIONS));
    KX_GUARD(kx_vec_open(o, 2, &x));
    KX_GUARD(kx_write_u16(o, KTLSX_TLS13));
    return kx_vec_close(o, 2, x);
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
    KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_KEY_SHARE));
    KX_GUARD(kx_vec_open(o, 2, &x));
    KX_GUARD(kx_write_u16(o, c->kex_group));
    KX_GUARD(kx_vec_close(o, 2, x));
    KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_COOKIE));
    KX_GUARD(kx_vec_open(o, 2, &x));
    KX_GUARD(kx_write_vec(o, 2, c->cookie, c->cookie_len));
    KX_GUARD(kx_vec_close(o, 2, x));
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "HelloRetryRequest cipher=%s group=%s", c->suite->name, kx_group_name(c->kex_group));
    return KX_OK;
}

kx_result kx_server_hello_write(ktlsx_conn *c)
{
    kx_buf *o = &c->hs_out;
    KX_GUARD(kx_random(c->server_random, 32));
    size_t msg, exts, x, y;
    KX_GUARD(write_hello_start(c, c->server_random, &msg, &exts));
    KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_KEY_SHARE));
    KX_GUARD(kx_vec_open(o, 2, &x));
    KX_GUARD(kx_write_u16(o, c->group));
    KX_GUARD(kx_vec_open(o, 2, &y));
    KX_GUARD(kx_write_bytes(o, c->kex_pub.data, c->kex_pub.len));
    KX_GUARD(kx_vec_close(o, 2, y));
    KX_GUARD(kx_vec_close(o, 2, x));
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "ServerHello version=TLSv1.3 cipher=%s group=%s", c->suite->name, kx_group_name(c->group));
    /* ServerHello goes out in the clear; everything after it under handshake keys. */
    KX_GUARD(kx_hs_flush(c));
    return enter_handshake_keys(c);
}

/* ---- client: handle ---- */

static bool suite_was_offered(const ktlsx_conn *c, uint16_t id)
{
    const kx_suite *s = kx_suite_by_id(id);
    return s && s->version == KTLSX_TLS13 && kx_list_has(c->cfg->suites, c->cfg->suite_count, id);
}

static kx_result check_selected_version(const kx_exts *e)
{
    KX_ENSURE(kx_has_ext(e, KX_EXT_SUPPORTED_VERSIONS), KX_ALERT_PROTOCOL_VERSION,
              "server chose TLS 1.2 or older, which this client does not offer");
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
    KX_GUARD(kx_exts_parse(ext_block, KX_IN_HRR, c->sent_exts, &e));
    KX_GUARD(check_selected_version(&e));
    KX_ENSURE(suite_was_offered(c, suite_id), KX_ALERT_ILLEGAL_PARAMETER, "server chose a cipher suite we did not offer");
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

kx_result kx_server_hello_handle(ktlsx_conn *c, kx_reader *body)
{
    uint16_t legacy_version, suite_id;
    uint8_t random[32], comp;
    kx_reader sid, ext_block;
    KX_GUARD(kx_read_u16(body, &legacy_version));
    KX_GUARD(kx_read_copy(body, random, 32));
    KX_GUARD(kx_read_vec(body, 1, 0, 32, &sid));
    KX_GUARD(kx_read_u16(body, &suite_id));
    KX_GUARD(kx_read_u8(body, &comp));
    KX_ENSURE(kx_reader_left(body) > 0, KX_ALERT_PROTOCOL_VERSION, "server chose TLS 1.2 or older, which this client does not offer");
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &ext_block));
    KX_ENSURE(legacy_version == 0x0303, KX_ALERT_PROTOCOL_VERSION, "ServerHello legacy_version is not TLS 1.2");
    KX_ENSURE(sid.len == c->session_id_len && memcmp(sid.data, c->session_id, sid.len) == 0,
              KX_ALERT_ILLEGAL_PARAMETER, "server did not echo our session id");
    KX_ENSURE(comp == 0, KX_ALERT_ILLEGAL_PARAMETER, "server chose compression");
    if (memcmp(random, hrr_random, 32) == 0) return handle_retry(c, suite_id, &ext_block);

    kx_exts e;
    KX_GUARD(kx_exts_parse(&ext_block, KX_IN_SH, c->sent_exts, &e));
    KX_GUARD(check_selected_version(&e));
    KX_ENSURE(suite_was_offered(c, suite_id), KX_ALERT_ILLEGAL_PARAMETER, "server chose a cipher suite we did not offer");
    if (c->hrr)
        KX_ENSURE(c->suite->id == suite_id, KX_ALERT_ILLEGAL_PARAMETER, "ServerHello cipher differs from HelloRetryRequest");
    c->suite = kx_suite_by_id(suite_id);
    memcpy(c->server_random, random, 32);
    c->version = KTLSX_TLS13;

    KX_ENSURE(kx_has_ext(&e, KX_EXT_KEY_SHARE), KX_ALERT_MISSING_EXTENSION, "ServerHello has no key_share");
    kx_reader d = e.data[KX_EXT_KEY_SHARE], share;
    uint16_t group;
    KX_GUARD(kx_read_u16(&d, &group));
    KX_GUARD(kx_read_vec(&d, 2, 1, 65535, &share));
    KX_GUARD(kx_reader_done(&d));
    KX_ENSURE(group == c->kex_group, KX_ALERT_ILLEGAL_PARAMETER, "server key share is not for the group we sent");
    c->group = group;
    c->ecdhe_len = sizeof c->ecdhe;
    KX_GUARD(kx_kex_derive(group, c->kex_key, share.data, share.len, c->ecdhe, &c->ecdhe_len));

    if (!c->hrr) KX_GUARD(kx_transcript_set_hash(&c->transcript, c->suite->hash));
    KX_GUARD(kx_transcript_add(&c->transcript, c->msg_raw, c->msg_raw_len));
    kx_trace(c, false, "ServerHello version=TLSv1.3 cipher=%s group=%s", c->suite->name, kx_group_name(group));
    return enter_handshake_keys(c);
}
