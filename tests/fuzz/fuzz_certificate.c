/* Certificate, as handled by a client (the server's chain) and by a server
 * (the client's chain, after its CertificateRequest).
 *
 * Input: byte 0 selects the mode, the rest is the body.
 *   mode % 4 == 0: client, insecure (leaf parsed, not verified)
 *   mode % 4 == 1: client, trust store = the fuzz CA, host "localhost"
 *   mode % 4 == 2: server, verify-client require, CA = the fuzz CA
 *   mode % 4 == 3: server, verify-client optional
 * Bit 2 of the mode: the server's CertificateRequest had a non-empty
 * context ("ctx!"), which the client's Certificate must echo. */
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
    uint8_t mode = data[0];
    static ktlsx_config *const *cfgs[4] = { &fz_client_cfg_insecure, &fz_client_cfg_trust, &fz_server_cfg_req,
                                            &fz_server_cfg_opt };
    ktlsx_config *cfg = *cfgs[mode & 3];
    ktlsx_conn *c = ktlsx_conn_new(cfg, cfg->role == KTLSX_CLIENT ? "localhost" : NULL);
    if (!c) abort();
    c->version = KTLSX_TLS13;
    if (cfg->role == KTLSX_SERVER) {
        c->cert_requested = true;
        kx_flow_rebuild(c);
        c->flow_pos = 7; /* CH, SH, EE, CR, Cert, CV, Fin: the client's Certificate is next */
        if (mode & 4) {
            memcpy(c->cr_context, "ctx!", 4);
            c->cr_context_len = 4;
        }
    } else {
        c->flow_pos = 3;
    }
    fz_run_handler(c, kx_certificate_handle, KX_HS_CERTIFICATE, data + 1, size - 1, 1);
    if (!c->failed && !c->client_cert_empty && !c->peer_key) abort(); /* accepted a chain but kept no key */
    (void)ktlsx_peer_subject(c);
    ktlsx_conn_free(c);
    return 0;
}
