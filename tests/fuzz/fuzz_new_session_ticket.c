/* Post-handshake messages on a finished TLS 1.3 client.
 *
 * Input: byte 0 selects the mode, the rest is the data.
 *   mode % 2 == 0: the rest is a NewSessionTicket body for
 *                  kx_new_session_ticket13_handle
 *   mode % 2 == 1: the rest is raw records fed through ktlsx_input and
 *                  ktlsx_read on a connection whose handshake is done (plaintext
 *                  receive direction, TLS_AES_128_GCM_SHA256 secrets), so
 *                  handle_post_handshake sees NewSessionTicket, KeyUpdate and
 *                  anything else; bit 1 makes it a server connection. */
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
    if (size < 1 || size > 4 * KX_MAX_HANDSHAKE_MESSAGE) return 0;
    uint8_t mode = data[0];
    bool server = (mode & 1) && (mode & 2);
    ktlsx_conn *c = ktlsx_conn_new(server ? fz_server_cfg : fz_client_cfg_insecure, server ? NULL : "localhost");
    if (!c) abort();
    c->version = KTLSX_TLS13;
    c->suite = kx_suite_by_id(0x1301);
    c->ks.hash = KX_HASH_SHA256;
    c->ks.hlen = 32;
    for (size_t i = 0; i < 32; i++) {
        c->ks.c_ap[i] = (uint8_t)(0x11 * i);
        c->ks.s_ap[i] = (uint8_t)(0xee - i);
    }
    c->flow_pos = 0;
    while (c->flow[c->flow_pos] != KX_MSG_END) c->flow_pos++;
    c->handshake_done = true;

    if (!(mode & 1)) {
        if (size - 1 <= KX_MAX_HANDSHAKE_MESSAGE)
            fz_run_handler(c, kx_new_session_ticket13_handle, KX_HS_NEW_SESSION_TICKET, data + 1, size - 1, 0);
        ktlsx_conn_free(c);
        return 0;
    }

    /* Send keys so that a KeyUpdate answer can be written. */
    kx_result r = kx_set_traffic_secret(c, &c->tx, server ? c->ks.s_ap : c->ks.c_ap);
    if (kx_failed(r)) abort();
    uint8_t *copy = malloc(size - 1 ? size - 1 : 1);
    if (!copy) abort();
    memcpy(copy, data + 1, size - 1);
    if (size > 1) (void)ktlsx_input(c, copy, size - 1);
    (void)ktlsx_input(c, NULL, 0); /* then EOF */
    uint8_t buf[512];
    for (int i = 0; i < 256; i++) {
        long n = ktlsx_read(c, buf, sizeof buf);
        fz_drain(c);
        if (n <= 0) break;
    }
    /* The application must still be able to write and close. */
    (void)ktlsx_write(c, "x", 1);
    (void)ktlsx_key_update(c, 1);
    (void)ktlsx_close_notify(c);
    fz_drain(c);
    uint8_t rest[64];
    (void)ktlsx_take_buffered(c, rest, sizeof rest);
    free(copy);
    ktlsx_conn_free(c);
    return 0;
}
