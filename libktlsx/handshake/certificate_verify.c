/* CertificateVerify (RFC 8446 §4.4.3): a signature over the transcript with
 * the certificate's key, proving possession of it. */
#include "handshake/conn.h"
#include <string.h>

/* 64 spaces, the context string, a zero byte, then the transcript hash. */
static size_t signed_content(uint8_t *out, bool by_server, const uint8_t *th, size_t hlen)
{
    static const char server_ctx[] = "TLS 1.3, server CertificateVerify";
    static const char client_ctx[] = "TLS 1.3, client CertificateVerify";
    const char *ctx = by_server ? server_ctx : client_ctx;
    size_t n = 0;
    memset(out, 0x20, 64);
    n += 64;
    memcpy(out + n, ctx, sizeof server_ctx); /* includes the terminating zero byte */
    n += sizeof server_ctx;
    memcpy(out + n, th, hlen);
    return n + hlen;
}

/* TLS 1.2 (RFC 5246 §7.4.8): the client signs the handshake messages themselves. */
static kx_result write_tls12(ktlsx_conn *c)
{
    const kx_buf *raw = &c->transcript.pending;
    size_t msg, sig;
    KX_GUARD(kx_hs_begin(c, KX_HS_CERTIFICATE_VERIFY, &msg));
    KX_GUARD(kx_write_u16(&c->hs_out, c->our_sigalg));
    KX_GUARD(kx_vec_open(&c->hs_out, 2, &sig));
    KX_GUARD(kx_sign_with(&c->our_cert->signer, c->our_sigalg, c->our_cert->key, raw->data, raw->len, &c->hs_out));
    KX_GUARD(kx_vec_close(&c->hs_out, 2, sig));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, true, "CertificateVerify sigalg=%s", kx_sigalg_name(c->our_sigalg));
    return KX_OK;
}

static kx_result handle_tls12(ktlsx_conn *c, kx_reader *body)
{
    uint16_t sigalg;
    kx_reader sig;
    KX_GUARD(kx_read_u16(body, &sigalg));
    KX_GUARD(kx_read_vec(body, 2, 1, 65535, &sig));
    KX_GUARD(kx_reader_done(body)); /* lengths before contents (RFC 8446 §6.2) */
    KX_ENSURE(c->peer_key != NULL, KX_ALERT_INTERNAL_ERROR, "no peer key");
    KX_ENSURE(kx_sig_length_ok(c->peer_key, sig.len), KX_ALERT_DECODE_ERROR,
              "CertificateVerify signature has the wrong length for the certificate key");
    KX_ENSURE(kx_list_has(c->cfg->sigalgs, c->cfg->sigalg_count, sigalg) && kx_sigalg_fits_key(sigalg, c->peer_key, 0),
              KX_ALERT_ILLEGAL_PARAMETER, "client used a signature algorithm we did not offer or its key cannot make");
    kx_trace(c, true, "CertificateVerify sigalg=%s", kx_sigalg_name(sigalg));
    /* The raw transcript already holds this message: sign what came before it. */
    const kx_buf *raw = &c->transcript.pending;
    KX_ENSURE(raw->len >= c->msg_raw_len, KX_ALERT_INTERNAL_ERROR, "raw transcript missing");
    KX_GUARD(kx_verify(sigalg, c->peer_key, raw->data, raw->len - c->msg_raw_len, sig.data, sig.len));
    c->peer_sigalg = sigalg;
    return KX_OK;
}

kx_result kx_certificate_verify_write(ktlsx_conn *c)
{
    if (c->version == KTLSX_TLS12) return write_tls12(c);
    bool server = c->role == KTLSX_SERVER;
    uint8_t th[KX_MAX_HASH], content[64 + 34 + KX_MAX_HASH];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    size_t len = signed_content(content, server, th, c->ks.hlen);
    size_t msg, sig;
    KX_GUARD(kx_hs_begin(c, KX_HS_CERTIFICATE_VERIFY, &msg));
    KX_GUARD(kx_write_u16(&c->hs_out, c->our_sigalg));
    KX_GUARD(kx_vec_open(&c->hs_out, 2, &sig));
    KX_GUARD(kx_sign_with(&c->our_cert->signer, c->our_sigalg, c->our_cert->key, content, len, &c->hs_out));
    KX_GUARD(kx_vec_close(&c->hs_out, 2, sig));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, !server, "CertificateVerify sigalg=%s", kx_sigalg_name(c->our_sigalg));
    return KX_OK;
}

kx_result kx_certificate_verify_handle(ktlsx_conn *c, kx_reader *body)
{
    if (c->version == KTLSX_TLS12) return handle_tls12(c, body);
    bool by_server = c->role == KTLSX_CLIENT;
    uint16_t sigalg;
    kx_reader sig;
    KX_GUARD(kx_read_u16(body, &sigalg));
    KX_GUARD(kx_read_vec(body, 2, 1, 65535, &sig));
    /* Lengths before contents (RFC 8446 §6.2): a message or signature of a
     * length no key of this kind makes is decode_error, not a failed check. */
    KX_GUARD(kx_reader_done(body));
    KX_ENSURE(c->peer_key != NULL, KX_ALERT_INTERNAL_ERROR, "no peer key");
    KX_ENSURE(kx_sig_length_ok(c->peer_key, sig.len), KX_ALERT_DECODE_ERROR,
              "CertificateVerify signature has the wrong length for the certificate key");
    /* Only what we offered, and only what fits the certificate (RFC 8446 §4.4.3). */
    KX_ENSURE(kx_list_has(c->cfg->sigalgs, c->cfg->sigalg_count, sigalg) && kx_sigalg_fits_key(sigalg, c->peer_key, 1),
              KX_ALERT_ILLEGAL_PARAMETER, "peer used a signature algorithm we did not offer or its key cannot make");
    uint8_t content[64 + 34 + KX_MAX_HASH];
    size_t len = signed_content(content, by_server, c->th, c->ks.hlen);
    kx_trace(c, !by_server, "CertificateVerify sigalg=%s", kx_sigalg_name(sigalg));
    KX_GUARD(kx_verify(sigalg, c->peer_key, content, len, sig.data, sig.len));
    c->peer_sigalg = sigalg;
    return KX_OK;
}
