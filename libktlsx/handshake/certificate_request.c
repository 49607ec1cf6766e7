/* CertificateRequest (RFC 8446 §4.3.2): the server asks for a client certificate. */
#include "handshake/conn.h"
#include <string.h>

static bool configured_sigalg(uint16_t v, const void *arg)
{
    const ktlsx_config *cfg = arg;
    return kx_list_has(cfg->sigalgs, cfg->sigalg_count, v);
}

kx_result kx_read_peer_sigalgs(ktlsx_conn *c, kx_reader list)
{
    return kx_read_u16_list_kept(list, configured_sigalg, c->cfg, c->peer_sigalgs, KX_MAX_SIGALGS,
                                 &c->peer_sigalg_count);
}

/* TLS 1.2 (RFC 5246 §7.4.4): certificate types, signature algorithms, CA names. */
static kx_result write_tls12(ktlsx_conn *c)
{
    kx_buf *o = &c->hs_out;
    const ktlsx_config *cfg = c->cfg;
    size_t msg, v;
    KX_GUARD(kx_hs_begin(c, KX_HS_CERTIFICATE_REQUEST, &msg));
    KX_GUARD(kx_write_vec(o, 1, "\x01\x40", 2)); /* rsa_sign, ecdsa_sign */
    KX_GUARD(kx_vec_open(o, 2, &v));
    for (size_t i = 0; i < cfg->sigalg_count; i++) KX_GUARD(kx_write_u16(o, cfg->sigalgs[i]));
    KX_GUARD(kx_vec_close(o, 2, v));
    KX_GUARD(kx_write_u16(o, 0)); /* no CA names: any certificate our store accepts */
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "CertificateRequest sigalgs=%zu", cfg->sigalg_count);
    return KX_OK;
}

static kx_result handle_tls12(ktlsx_conn *c, kx_reader *body)
{
    kx_reader types, list, cas;
    KX_GUARD(kx_read_vec(body, 1, 1, 255, &types));
    KX_GUARD(kx_read_vec(body, 2, 2, 65534, &list));
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &cas));
    KX_GUARD(kx_read_peer_sigalgs(c, list));
    kx_trace(c, false, "CertificateRequest sigalgs=%zu", c->peer_sigalg_count);
    return KX_OK;
}

kx_result kx_certificate_request_write(ktlsx_conn *c)
{
    if (c->version == KTLSX_TLS12) return write_tls12(c);
    kx_buf *o = &c->hs_out;
    const ktlsx_config *cfg = c->cfg;
    size_t msg, exts, x, y;
    KX_GUARD(kx_hs_begin(c, KX_HS_CERTIFICATE_REQUEST, &msg));
    c->cr_context_len = 0; /* empty during the handshake (RFC 8446 §4.3.2) */
    KX_GUARD(kx_write_vec(o, 1, NULL, 0));
    KX_GUARD(kx_vec_open(o, 2, &exts));
    KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_SIGNATURE_ALGORITHMS));
    KX_GUARD(kx_vec_open(o, 2, &x));
    KX_GUARD(kx_vec_open(o, 2, &y));
    for (size_t i = 0; i < cfg->sigalg_count; i++) KX_GUARD(kx_write_u16(o, cfg->sigalgs[i]));
    KX_GUARD(kx_vec_close(o, 2, y));
    KX_GUARD(kx_vec_close(o, 2, x));
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "CertificateRequest sigalgs=%zu", cfg->sigalg_count);
    return KX_OK;
}

kx_result kx_certificate_request_handle(ktlsx_conn *c, kx_reader *body)
{
    if (c->version == KTLSX_TLS12) return handle_tls12(c, body);
    kx_reader context, block;
    KX_GUARD(kx_read_vec(body, 1, 0, 255, &context));
    /* RFC 8446 §4.3.2: the context SHALL be empty in the main handshake
     * (it only tells post-handshake requests apart). */
    KX_ENSURE(c->handshake_done || context.len == 0, KX_ALERT_ILLEGAL_PARAMETER,
              "CertificateRequest context is not empty during the handshake");
    KX_GUARD(kx_read_vec(body, 2, 2, 65535, &block));
    kx_exts e;
    KX_GUARD(kx_exts_parse(&block, KX_IN_CR, 0, &e));
    KX_ENSURE(kx_has_ext(&e, KX_EXT_SIGNATURE_ALGORITHMS), KX_ALERT_MISSING_EXTENSION,
              "CertificateRequest has no signature_algorithms");
    kx_reader d = e.data[KX_EXT_SIGNATURE_ALGORITHMS], list;
    KX_GUARD(kx_read_vec(&d, 2, 2, 65534, &list));
    KX_GUARD(kx_reader_done(&d));
    KX_GUARD(kx_read_peer_sigalgs(c, list));
    memcpy(c->cr_context, context.data, context.len);
    c->cr_context_len = context.len;
    kx_trace(c, false, "CertificateRequest sigalgs=%zu", c->peer_sigalg_count);
    return KX_OK;
}
