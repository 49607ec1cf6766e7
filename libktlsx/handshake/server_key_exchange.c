/* ServerKeyExchange (TLS 1.2 only; RFC 5246 §7.4.3, RFC 8422 §5.4): the
 * server's ephemeral ECDH share, signed over both randoms with the
 * negotiated signature algorithm. */
#include "handshake/conn.h"

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
    if (!kx_failed(r)) r = kx_sign_with(&c->our_cert->signer, c->our_sigalg, c->our_cert->key, content.data, content.len, o);
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
    /* Lengths before contents (RFC 8446 §6.2 / RFC 5246 §7.2.2). */
    KX_GUARD(kx_reader_done(body));
    KX_ENSURE(c->peer_key != NULL, KX_ALERT_INTERNAL_ERROR, "no peer key");
    KX_ENSURE(kx_sig_length_ok(c->peer_key, sig.len), KX_ALERT_DECODE_ERROR,
              "ServerKeyExchange signature has the wrong length for the certificate key");
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
