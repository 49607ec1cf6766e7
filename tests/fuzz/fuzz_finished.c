/* Finished, as handled by a client (the server's) and by a server (the
 * client's), with TLS_AES_128_GCM_SHA256 (or _256_GCM_SHA384), fixed
 * handshake secrets and transcript hash.
 *
 * Input: byte 0 selects the mode, the rest is the body.
 *   bit 0: 0 = client handling the server Finished, 1 = server handling the client's
 *   bit 1: prepend the correct verify_data to the rest, so the handler gets
 *          past the MAC check into the application key derivation
 *   bit 2: TLS_AES_256_GCM_SHA384 (48-byte hash) instead of 0x1301 */
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
    ktlsx_conn *c = ktlsx_conn_new(server ? fz_server_cfg : fz_client_cfg_insecure, server ? NULL : "localhost");
    if (!c) abort();
    c->version = KTLSX_TLS13;
    c->suite = kx_suite_by_id(mode & 4 ? 0x1302 : 0x1301);
    if (!c->suite) abort();
    c->ks.hash = c->suite->hash;
    c->ks.hlen = kx_hash_len(c->suite->hash);
    for (size_t i = 0; i < sizeof c->ks.s_hs; i++) {
        c->ks.s_hs[i] = (uint8_t)(0xa5 ^ i);
        c->ks.c_hs[i] = (uint8_t)(0x5a ^ (i * 7));
        c->ks.handshake[i] = (uint8_t)(0x3c + i);
    }
    memset(c->th, 0x42, sizeof c->th);
    kx_result r = kx_transcript_set_hash(&c->transcript, c->suite->hash);
    if (kx_failed(r)) abort();
    /* Handshake traffic keys in place, as after ServerHello. */
    r = kx_set_traffic_secret(c, &c->rx, server ? c->ks.c_hs : c->ks.s_hs);
    if (kx_failed(r)) abort();
    c->flow_pos = server ? 6 : 5; /* CH SH EE Cert CV Fin | Fin */

    const uint8_t *body = data + 1;
    size_t len = size - 1;
    uint8_t *joined = NULL;
    if (mode & 2) {
        uint8_t verify[KX_MAX_HASH];
        r = kx_tls13_finished(c->suite->hash, server ? c->ks.c_hs : c->ks.s_hs, c->th, verify);
        if (kx_failed(r)) abort();
        joined = malloc(c->ks.hlen + len);
        if (!joined) abort();
        memcpy(joined, verify, c->ks.hlen);
        if (len) memcpy(joined + c->ks.hlen, body, len);
        body = joined;
        len += c->ks.hlen;
    }
    fz_run_handler(c, kx_finished_handle, KX_HS_FINISHED, body, len, 1);
    free(joined);
    ktlsx_conn_free(c);
    return 0;
}
