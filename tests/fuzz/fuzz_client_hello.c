/* ClientHello, as handled by a server.
 *
 * Input: byte 0 selects the mode, the rest is the data.
 *   mode % 4 == 0: the rest is a ClientHello body for kx_client_hello_handle
 *                  on a fresh server connection (server config with ALPN)
 *   mode % 4 == 1: the same on a server that already sent a
 *                  HelloRetryRequest (second ClientHello: fixed zero random,
 *                  fixed session id, cookie, x25519 requested)
 *   mode % 4 == 2: the same with a verify-client (require) server config
 *   mode % 4 == 3: the whole public API: the rest is raw records fed with
 *                  ktlsx_input (in one go, or record-sized chunks when bit 2
 *                  of the mode is set) and driven with ktlsx_handshake. */
#include "fuzz_common.h"

static const uint8_t hrr_cookie[32] = "ktlsx-fuzz-cookie-0123456789abcd";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

static void public_api(const uint8_t *in, size_t n, int chunked)
{
    ktlsx_conn *c = ktlsx_conn_new(fz_server_cfg, NULL);
    if (!c) abort();
    /* A heap copy of exactly the input: ktlsx_input must not read past it. */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) abort();
    if (n) memcpy(copy, in, n);
    size_t off = 0;
    for (int round = 0; round < 64; round++) {
        int st = ktlsx_handshake(c);
        fz_drain(c);
        if (st != KTLSX_WANT_READ) break;
        if (off == n) {
            (void)ktlsx_input(c, NULL, 0); /* EOF */
            (void)ktlsx_handshake(c);
            fz_drain(c);
            break;
        }
        size_t want = chunked ? ktlsx_input_wanted(c) : n - off;
        if (want == 0 || want > n - off) want = n - off;
        if (ktlsx_input(c, copy + off, want) != 0) break;
        off += want;
    }
    (void)ktlsx_version(c);
    (void)ktlsx_cipher_name(c);
    (void)ktlsx_group_name(c);
    (void)ktlsx_sni(c);
    (void)ktlsx_alpn(c);
    free(copy);
    ktlsx_conn_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    if (n > KX_MAX_HANDSHAKE_MESSAGE + 64) return 0;

    if ((mode & 3) == 3) {
        public_api(in, n, (mode >> 2) & 1);
        return 0;
    }
    ktlsx_config *cfg = (mode & 3) == 2 ? fz_server_cfg_req : fz_server_cfg;
    ktlsx_conn *c = ktlsx_conn_new(cfg, NULL);
    if (!c) abort();
    if ((mode & 3) == 1) {
        /* State as left by kx_hello_retry_request_write after a first ClientHello. */
        c->hrr = true;
        kx_flow_rebuild(c);
        c->flow_pos = 2;
        c->suite = kx_suite_by_id(0x1301);
        kx_result r = kx_transcript_set_hash(&c->transcript, c->suite->hash);
        if (kx_failed(r)) abort();
        c->version = KTLSX_TLS13;
        memset(c->client_random, 0, sizeof c->client_random);
        memcpy(c->session_id, fz_session_id, sizeof fz_session_id);
        c->session_id_len = sizeof fz_session_id;
        c->kex_group = KX_GROUP_X25519;
        memcpy(c->cookie, hrr_cookie, sizeof hrr_cookie);
        c->cookie_len = sizeof hrr_cookie;
    }
    fz_run_handler(c, kx_client_hello_handle, KX_HS_CLIENT_HELLO, in, n, 0); /* the handler adds the ClientHello itself */
    ktlsx_conn_free(c);
    return 0;
}
