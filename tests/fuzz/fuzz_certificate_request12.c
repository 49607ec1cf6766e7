/* TLS 1.2 CertificateRequest (RFC 5246 §7.4.4), as handled by a client
 * (c->version == 0x0303) after the server's ServerKeyExchange, where
 * ServerHelloDone was due.
 *
 * Input: byte 0 selects the mode, the rest is the body.
 *   bit 0: client config with a certificate (cli.pem, ECDSA) or without
 *   bit 1: suite ECDHE_ECDSA_AES128 (0) or ECDHE_RSA_AES128 (1)
 * After a successful parse the client goes on as drive() would:
 * ServerHelloDone, then its Certificate and (when a certificate fits the
 * requested signature algorithms) a CertificateVerify over the raw
 * transcript. */
#include "fuzz_tls12.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz12_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    uint8_t mode = data[0];
    ktlsx_config *cfg = mode & 1 ? fz_client_cfg_trust : fz_client_cfg_insecure;
    ktlsx_conn *c = fz12_conn(cfg, mode & 2 ? FZ12_ECDHE_RSA_AES128 : FZ12_ECDHE_ECDSA_AES128, true);
    c->transcript.keep_raw = true; /* as server_hello.c leaves it for TLS 1.2 */
    fz12_flow_at(c, KX_MSG_SERVER_HELLO_DONE);
    if (c->flow[c->flow_pos] != KX_MSG_SERVER_HELLO_DONE) abort();
    if (!kx_flow_accept_optional(c, KX_HS_CERTIFICATE_REQUEST)) abort();
    if (c->flow[c->flow_pos] != KX_MSG_CERTIFICATE_REQUEST) abort();

    fz_run_handler(c, kx_certificate_request_handle, KX_HS_CERTIFICATE_REQUEST, data + 1, size - 1, 1);
    if (!c->failed) {
        if (c->peer_sigalg_count > KX_MAX_SIGALGS) abort();
        c->flow_pos++;
        fz_run_handler(c, kx_server_hello_done_handle, KX_HS_SERVER_HELLO_DONE, NULL, 0, 1);
        kx_result r = kx_certificate_write(c);
        if (!kx_failed(r) && c->our_cert) r = kx_certificate_verify_write(c);
        if (kx_failed(r)) kx_conn_fail(c, r);
        fz_drain(c);
    }
    ktlsx_conn_free(c);
    return 0;
}
