/* ServerHello / HelloRetryRequest, as handled by a client that has written
 * its ClientHello (x25519 key share, fixed legacy_session_id fz_session_id).
 *
 * Input: the ServerHello body.  The handler adds the message to the
 * transcript itself (from c->msg_raw), as drive() arranges.  A
 * HelloRetryRequest (the fixed random) goes through handle_retry; when it is
 * accepted, the rest of the input after the first message, if it parses as
 * a length-prefixed (u16) body, is handled as the ServerHello that follows. */
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
    if (size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    ktlsx_conn *c = fz_client_after_hello(fz_client_cfg_insecure);
    fz_run_handler(c, kx_server_hello_handle, KX_HS_SERVER_HELLO, data, size, 0);
    ktlsx_conn_free(c);

    /* Two messages: u16 length || HRR body || ServerHello body. */
    if (size >= 2) {
        size_t first = ((size_t)data[0] << 8) | data[1];
        if (first <= size - 2) {
            c = fz_client_after_hello(fz_client_cfg_insecure);
            fz_run_handler(c, kx_server_hello_handle, KX_HS_SERVER_HELLO, data + 2, first, 0);
            if (!c->failed && c->hrr) {
                /* As drive() would: the second ClientHello goes out, then the ServerHello is handled. */
                c->flow_pos = 2;
                kx_result r = kx_client_hello_write(c);
                if (!kx_failed(r)) {
                    c->flow_pos = 3;
                    kx_buf_reset(&c->hs_out);
                    fz_run_handler(c, kx_server_hello_handle, KX_HS_SERVER_HELLO, data + 2 + first, size - 2 - first, 0);
                } else {
                    kx_conn_fail(c, r);
                }
            }
            ktlsx_conn_free(c);
        }
    }
    return 0;
}
