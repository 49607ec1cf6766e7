/* CertificateRequest, as handled by a client (with and without a client
 * certificate configured).  Input: byte 0 bit 0 selects the client config
 * (0: no certificate, 1: cli.pem), the rest is the body.  After a successful
 * parse the client's Certificate (and CertificateVerify, when a certificate
 * fits the requested algorithms) is written, as drive() would. */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    ktlsx_config *cfg = data[0] & 1 ? fz_client_cfg_trust : fz_client_cfg_insecure;
    ktlsx_conn *c = ktlsx_conn_new(cfg, "localhost");
    if (!c) abort();
    c->version = KTLSX_TLS13;
    c->suite = kx_suite_by_id(0x1301);
    c->ks.hash = KX_HASH_SHA256;
    c->ks.hlen = 32;
    kx_result r = kx_transcript_set_hash(&c->transcript, KX_HASH_SHA256);
    if (kx_failed(r)) abort();
    c->flow_pos = 3; /* CH SH EE | Cert: where the optional CertificateRequest may come instead */
    if (!kx_flow_accept_optional(c, KX_HS_CERTIFICATE_REQUEST)) abort();
    fz_run_handler(c, kx_certificate_request_handle, KX_HS_CERTIFICATE_REQUEST, data + 1, size - 1, 1);
    if (!c->failed) {
        if (c->cr_context_len > sizeof c->cr_context || c->peer_sigalg_count > KX_MAX_SIGALGS) abort();
        /* Our answer uses what was just parsed (context, signature algorithms). */
        r = kx_certificate_write(c);
        if (!kx_failed(r) && c->our_cert) r = kx_certificate_verify_write(c);
        if (kx_failed(r)) kx_conn_fail(c, r);
        fz_drain(c);
    }
    ktlsx_conn_free(c);
    return 0;
}
