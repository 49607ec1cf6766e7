/* The message flows of a handshake, written the way the RFCs draw them.
 *
 * TLS 1.3 (RFC 8446 §2):
 *   ClientHello [HelloRetryRequest ClientHello]
 *   ServerHello EncryptedExtensions [CertificateRequest] {Certificate CertificateVerify} Finished
 *   [Certificate [CertificateVerify]] Finished
 * ({...} absent when resuming with a PSK)
 *
 * TLS 1.2 full (RFC 5246 §7.3, the seed captures' table):
 *   ClientHello
 *   ServerHello Certificate ServerKeyExchange [CertificateRequest] ServerHelloDone
 *   [Certificate] ClientKeyExchange [CertificateVerify] ChangeCipherSpec Finished
 *   [NewSessionTicket] ChangeCipherSpec Finished
 *
 * TLS 1.2 abbreviated (session ID or ticket):
 *   ClientHello
 *   ServerHello [NewSessionTicket] ChangeCipherSpec Finished
 *   ChangeCipherSpec Finished
 */
#include "handshake/conn.h"

static size_t flow_tls12(ktlsx_conn *c, kx_msg *f, size_t n)
{
    if (c->resumed) {
        if (c->send_ticket12) f[n++] = KX_MSG_NEW_SESSION_TICKET;
        f[n++] = KX_MSG_SERVER_CHANGE_CIPHER_SPEC;
        f[n++] = KX_MSG_SERVER_FINISHED;
        f[n++] = KX_MSG_CLIENT_CHANGE_CIPHER_SPEC;
        f[n++] = KX_MSG_CLIENT_FINISHED;
        return n;
    }
    f[n++] = KX_MSG_SERVER_CERTIFICATE;
    if (c->suite && c->suite->kex != KX_KX_RSA) f[n++] = KX_MSG_SERVER_KEY_EXCHANGE;
    if (c->cert_requested) f[n++] = KX_MSG_CERTIFICATE_REQUEST;
    f[n++] = KX_MSG_SERVER_HELLO_DONE;
    if (c->cert_requested) f[n++] = KX_MSG_CLIENT_CERTIFICATE;
    f[n++] = KX_MSG_CLIENT_KEY_EXCHANGE;
    if (c->cert_requested && !c->client_cert_empty) f[n++] = KX_MSG_CLIENT_CERTIFICATE_VERIFY;
    f[n++] = KX_MSG_CLIENT_CHANGE_CIPHER_SPEC;
    f[n++] = KX_MSG_CLIENT_FINISHED;
    if (c->send_ticket12) f[n++] = KX_MSG_NEW_SESSION_TICKET;
    f[n++] = KX_MSG_SERVER_CHANGE_CIPHER_SPEC;
    f[n++] = KX_MSG_SERVER_FINISHED;
    return n;
}

static size_t flow_tls13(ktlsx_conn *c, kx_msg *f, size_t n)
{
    f[n++] = KX_MSG_ENCRYPTED_EXTENSIONS;
    if (c->cert_requested) f[n++] = KX_MSG_CERTIFICATE_REQUEST;
    if (!c->resumed) {
        f[n++] = KX_MSG_SERVER_CERTIFICATE;
        f[n++] = KX_MSG_SERVER_CERTIFICATE_VERIFY;
    }
    f[n++] = KX_MSG_SERVER_FINISHED;
    if (c->cert_requested) {
        f[n++] = KX_MSG_CLIENT_CERTIFICATE;
        if (!c->client_cert_empty) f[n++] = KX_MSG_CLIENT_CERTIFICATE_VERIFY;
    }
    f[n++] = KX_MSG_CLIENT_FINISHED;
    return n;
}

void kx_flow_rebuild(ktlsx_conn *c)
{
    size_t n = 0;
    kx_msg *f = c->flow;
    f[n++] = KX_MSG_CLIENT_HELLO;
    if (c->hrr) {
        f[n++] = KX_MSG_HELLO_RETRY_REQUEST;
        f[n++] = KX_MSG_CLIENT_HELLO;
    }
    f[n++] = KX_MSG_SERVER_HELLO;
    n = c->version == KTLSX_TLS12 ? flow_tls12(c, f, n) : flow_tls13(c, f, n);
    f[n++] = KX_MSG_END;
}

bool kx_flow_accept_optional(ktlsx_conn *c, uint8_t hs_type)
{
    /* A CertificateRequest may stand where the server's Certificate (1.3) or
     * ServerHelloDone (1.2) was due.  In TLS 1.2 it comes after the
     * Certificate and ServerKeyExchange (RFC 5246 §7.3), never in place of
     * the Certificate. */
    kx_msg due = c->flow[c->flow_pos];
    bool in_place = c->version == KTLSX_TLS13 ? due == KX_MSG_SERVER_CERTIFICATE : due == KX_MSG_SERVER_HELLO_DONE;
    if (c->role == KTLSX_CLIENT && !c->cert_requested && hs_type == KX_HS_CERTIFICATE_REQUEST && in_place) {
        c->cert_requested = true;
        kx_flow_rebuild(c);
        return true;
    }
    return false;
}
