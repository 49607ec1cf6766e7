/* The message flows of a handshake, written the way RFC 8446 §2 draws them:
 *
 *   ClientHello
 *   [HelloRetryRequest, ClientHello]
 *   ServerHello, EncryptedExtensions, [CertificateRequest],
 *   Certificate, CertificateVerify, Finished
 *   [Certificate, [CertificateVerify]], Finished
 */
#include "handshake/conn.h"

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
    f[n++] = KX_MSG_ENCRYPTED_EXTENSIONS;
    if (c->cert_requested) f[n++] = KX_MSG_CERTIFICATE_REQUEST;
    f[n++] = KX_MSG_SERVER_CERTIFICATE;
    f[n++] = KX_MSG_SERVER_CERTIFICATE_VERIFY;
    f[n++] = KX_MSG_SERVER_FINISHED;
    if (c->cert_requested) {
        f[n++] = KX_MSG_CLIENT_CERTIFICATE;
        if (!c->client_cert_empty) f[n++] = KX_MSG_CLIENT_CERTIFICATE_VERIFY;
    }
    f[n++] = KX_MSG_CLIENT_FINISHED;
    f[n++] = KX_MSG_END;
}

bool kx_flow_accept_optional(ktlsx_conn *c, uint8_t hs_type)
{
    if (c->role == KTLSX_CLIENT && !c->cert_requested && hs_type == KX_HS_CERTIFICATE_REQUEST &&
        c->flow[c->flow_pos] == KX_MSG_SERVER_CERTIFICATE) {
        c->cert_requested = true;
        kx_flow_rebuild(c);
        return true;
    }
    return false;
}
