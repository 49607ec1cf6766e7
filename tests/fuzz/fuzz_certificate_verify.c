/* CertificateVerify, as handled by a client (server's signature, key of
 * srv.pem) and by a server (client's signature, key of cli.pem).
 *
 * The transcript hash c->th is fixed (32 bytes of 0x42, SHA-256 length) so
 * that seeds signed over it verify.  Input: byte 0 selects the mode, the
 * rest is the body.
 *   bit 0: 0 = client verifying the server, 1 = server verifying the client
 *   bit 1: the peer key is the other certificate's (a mismatch) */
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
    bool server = mode & 1;
    ktlsx_conn *c = ktlsx_conn_new(server ? fz_server_cfg_req : fz_client_cfg_insecure, server ? NULL : "localhost");
    if (!c) abort();
    c->version = KTLSX_TLS13;
    c->suite = kx_suite_by_id(0x1301);
    c->ks.hash = KX_HASH_SHA256;
    c->ks.hlen = 32;
    memset(c->th, 0x42, sizeof c->th);
    EVP_PKEY *k = (server != ((mode & 2) != 0)) ? fz_client_pub : fz_server_pub;
    if (EVP_PKEY_up_ref(k) != 1) abort();
    c->peer_key = k; /* freed by ktlsx_conn_free */
    fz_run_handler(c, kx_certificate_verify_handle, KX_HS_CERTIFICATE_VERIFY, data + 1, size - 1, 1);
    ktlsx_conn_free(c);
    return 0;
}
