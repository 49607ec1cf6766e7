/* Messages that exist only in TLS 1.2 (RFC 5246 §7.4, RFC 8422 §5.4):
 * ServerKeyExchange, ServerHelloDone, ClientKeyExchange, ChangeCipherSpec,
 * NewSessionTicket (RFC 5077), and the key derivation they feed. */
#include "handshake/conn.h"
#include "handshake/session.h"
#include "core/wipe.h"
#include <string.h>

const uint8_t kx_downgrade_tls12[8] = { 0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x01 }; /* "DOWNGRD\1" */

kx_result kx_tls12_derive_keys(ktlsx_conn *c, const uint8_t *pms, size_t pmslen)
{
    uint8_t session_hash[KX_MAX_HASH];
    /* RFC 7627 §3: the session hash covers the handshake up to and including ClientKeyExchange. */
    if (c->ems) KX_GUARD(kx_transcript_hash(&c->transcript, session_hash));
    KX_GUARD(kx_tls12_master_secret(c->suite, pms, pmslen, c->ems ? session_hash : NULL, c->client_random,
                                    c->server_random, c->master));
    kx_keylog(c, "CLIENT_RANDOM", c->master, KX_TLS12_MASTER);
    return kx_tls12_key_block(c->suite, c->master, c->client_random, c->server_random, &c->keys12);
}

/* ---- ServerKeyExchange: the server's ephemeral ECDH share, signed ---- */

static kx_result ske_signed_content(const ktlsx_conn *c, const uint8_t *params, size_t len, kx_buf *out)
{
    KX_GUARD(kx_write_bytes(out, c->client_random, 32));
    KX_GUARD(kx_write_bytes(out, c->server_random, 32));
    return kx_write_bytes(out, params, len);
}

kx_result kx_server_key_exchange_write(ktlsx_conn *c)
{
    kx_buf *o = &c->hs_out;
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    kx_buf_reset(&c->kex_pub);
    KX_GUARD(kx_kex_keygen(c->group, &c->kex_key, &c->kex_pub));
    size_t msg, sig;
    KX_GUARD(kx_hs_begin(c, KX_HS_SERVER_KEY_EXCHANGE, &msg));
    size_t params = o->len;
    KX_GUARD(kx_write_u8(o, 3)); /* named_curve */
    KX_GUARD(kx_write_u16(o, c->group));
    KX_GUARD(kx_write_vec(o, 1, c->kex_pub.data, c->kex_pub.len));
    kx_buf content = { 0 };
    kx_result r = ske_signed_content(c, o->data + params, o->len - params, &content);
    if (!kx_failed(r)) r = kx_write_u16(o, c->our_sigalg);
    if (!kx_failed(r)) r = kx_vec_open(o, 2, &sig);
    if (!kx_failed(r)) r = kx_sign(c->our_sigalg, c->our_cert->key, content.data, content.len, o);
    kx_buf_free(&content);
    KX_GUARD(r);
    KX_GUARD(kx_vec_close(o, 2, sig));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "ServerKeyExchange group=%s sigalg=%s", kx_group_name(c->group), kx_sigalg_name(c->our_sigalg));
    return KX_OK;
}

kx_result kx_server_key_exchange_handle(ktlsx_conn *c, kx_reader *body)
{
    const uint8_t *params = kx_reader_ptr(body);
    uint8_t curve_type;
    uint16_t group, sigalg;
    kx_reader point, sig;
    KX_GUARD(kx_read_u8(body, &curve_type));
    KX_GUARD(kx_read_u16(body, &group));
    KX_GUARD(kx_read_vec(body, 1, 1, 255, &point));
    size_t params_len = (size_t)(kx_reader_ptr(body) - params);
    KX_GUARD(kx_read_u16(body, &sigalg));
    KX_GUARD(kx_read_vec(body, 2, 1, 65535, &sig));
    KX_ENSURE(curve_type == 3, KX_ALERT_HANDSHAKE_FAILURE, "server key exchange is not a named curve");
    KX_ENSURE(kx_list_has(c->cfg->groups, c->cfg->group_count, group), KX_ALERT_ILLEGAL_PARAMETER,
              "server chose a group we did not offer");
    KX_ENSURE(kx_list_has(c->cfg->sigalgs, c->cfg->sigalg_count, sigalg) && kx_sigalg_fits_key(sigalg, c->peer_key, 0),
              KX_ALERT_ILLEGAL_PARAMETER, "server signed with an algorithm we did not offer or its key cannot make");
    kx_trace(c, false, "ServerKeyExchange group=%s sigalg=%s", kx_group_name(group), kx_sigalg_name(sigalg));
    kx_buf content = { 0 };
    kx_result r = ske_signed_content(c, params, params_len, &content);
    if (!kx_failed(r)) r = kx_verify(sigalg, c->peer_key, content.data, content.len, sig.data, sig.len);
    kx_buf_free(&content);
    KX_GUARD(r);
    c->peer_sigalg = sigalg;
    c->group = group;
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    kx_buf_reset(&c->kex_pub);
    KX_GUARD(kx_kex_keygen(group, &c->kex_key, &c->kex_pub));
    c->ecdhe_len = sizeof c->ecdhe;
    return kx_kex_derive(group, c->kex_key, point.data, point.len, c->ecdhe, &c->ecdhe_len);
}

/* ---- ServerHelloDone ---- */

kx_result kx_server_hello_done_write(ktlsx_conn *c)
{
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_SERVER_HELLO_DONE, &msg));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "ServerHelloDone");
    return KX_OK;
}

kx_result kx_server_hello_done_handle(ktlsx_conn *c, kx_reader *body)
{
    kx_trace(c, false, "ServerHelloDone");
    return kx_reader_done(body);
}

/* ---- ClientKeyExchange ---- */

static kx_result rsa_premaster_write(ktlsx_conn *c)
{
    /* RFC 5246 §7.4.7.1: client_version || 46 random bytes, RSA-encrypted to the server. */
    uint8_t pms[48];
    pms[0] = 0x03;
    pms[1] = 0x03;
    KX_GUARD(kx_random(pms + 2, 46));
    size_t v;
    kx_result r = kx_vec_open(&c->hs_out, 2, &v);
    if (!kx_failed(r)) r = kx_rsa_encrypt(c->peer_key, pms, sizeof pms, &c->hs_out);
    if (!kx_failed(r)) r = kx_vec_close(&c->hs_out, 2, v);
    memcpy(c->ecdhe, pms, sizeof pms);
    c->ecdhe_len = sizeof pms;
    kx_wipe(pms, sizeof pms);
    return r;
}

kx_result kx_client_key_exchange_write(ktlsx_conn *c)
{
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_CLIENT_KEY_EXCHANGE, &msg));
    if (c->suite->kex == KX_KX_RSA) KX_GUARD(rsa_premaster_write(c));
    else KX_GUARD(kx_write_vec(&c->hs_out, 1, c->kex_pub.data, c->kex_pub.len));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, true, "ClientKeyExchange%s", c->suite->kex == KX_KX_RSA ? " rsa" : "");
    kx_result r = kx_tls12_derive_keys(c, c->ecdhe, c->ecdhe_len);
    kx_wipe(c->ecdhe, sizeof c->ecdhe);
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    return r;
}

kx_result kx_client_key_exchange_handle(ktlsx_conn *c, kx_reader *body)
{
    uint8_t pms[80];
    size_t pmslen = sizeof pms;
    if (c->suite->kex == KX_KX_RSA) {
        kx_reader enc;
        KX_GUARD(kx_read_vec(body, 2, 1, 65535, &enc));
        /* Never fails on a bad pre-master: a random one is substituted in constant
         * time, so the Finished check fails later, identically (no Bleichenbacher oracle). */
        KX_GUARD(kx_rsa_decrypt_premaster(c->our_cert->key, enc.data, enc.len, 0x0303, pms));
        pmslen = 48;
    } else {
        kx_reader point;
        KX_GUARD(kx_read_vec(body, 1, 1, 255, &point));
        KX_GUARD(kx_kex_derive(c->group, c->kex_key, point.data, point.len, pms, &pmslen));
    }
    kx_trace(c, true, "ClientKeyExchange%s", c->suite->kex == KX_KX_RSA ? " rsa" : "");
    kx_result r = kx_tls12_derive_keys(c, pms, pmslen);
    kx_wipe(pms, sizeof pms);
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    return r;
}

/* ---- ChangeCipherSpec: the switch to the key block's keys ---- */

static kx_result install(ktlsx_conn *c, kx_record_dir *dir, bool client_keys)
{
    return kx_record_set_keys(dir, KTLSX_TLS12, c->suite, client_keys ? c->keys12.client_key : c->keys12.server_key,
                              client_keys ? c->keys12.client_iv : c->keys12.server_iv);
}

kx_result kx_change_cipher_spec_write(ktlsx_conn *c)
{
    KX_GUARD(kx_hs_flush(c));
    KX_GUARD(kx_record_write(&c->tx, KX_CT_CHANGE_CIPHER_SPEC, (const uint8_t *)"\1", 1, &c->out));
    kx_trace(c, c->role == KTLSX_CLIENT, "ChangeCipherSpec");
    return install(c, &c->tx, c->role == KTLSX_CLIENT);
}

kx_result kx_change_cipher_spec_handle(ktlsx_conn *c, kx_reader *body)
{
    (void)body;
    kx_trace(c, c->role == KTLSX_SERVER, "ChangeCipherSpec");
    return install(c, &c->rx, c->role == KTLSX_SERVER);
}

/* ---- NewSessionTicket (RFC 5077 §3.3) ---- */

kx_result kx_new_session_ticket12_write(ktlsx_conn *c)
{
    kx_buf ticket = { 0 };
    kx_result r = kx_session_ticket_seal(c, &ticket);
    size_t msg;
    if (!kx_failed(r)) r = kx_hs_begin(c, KX_HS_NEW_SESSION_TICKET, &msg);
    if (!kx_failed(r)) r = kx_write_u32(&c->hs_out, c->cfg->ticket_lifetime);
    if (!kx_failed(r)) r = kx_write_vec(&c->hs_out, 2, ticket.data, ticket.len);
    if (!kx_failed(r)) r = kx_hs_end(c, msg);
    kx_buf_free(&ticket);
    KX_GUARD(r);
    kx_trace(c, false, "NewSessionTicket lifetime=%u", c->cfg->ticket_lifetime);
    return KX_OK;
}

kx_result kx_new_session_ticket12_handle(ktlsx_conn *c, kx_reader *body)
{
    uint32_t lifetime;
    kx_reader ticket;
    KX_GUARD(kx_read_u32(body, &lifetime));
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &ticket));
    kx_trace(c, false, "NewSessionTicket lifetime=%u", lifetime);
    /* An empty ticket means "keep using the one you have" (RFC 5077 §3.3); we then resume by ID. */
    return kx_session_store_ticket12(c, lifetime, ticket.data, ticket.len);
}
