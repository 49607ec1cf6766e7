/* ChangeCipherSpec (TLS 1.2 only; RFC 5246 §7.1): a record of its own type,
 * due at a fixed point of the flow; it switches a direction to the key
 * block's keys. */
#include "handshake/conn.h"

static kx_result install(ktlsx_conn *c, kx_record_dir *dir, bool client_keys)
{
    return kx_record_set_keys(dir, KTLSX_TLS12, c->suite, client_keys ? c->keys12.client_key : c->keys12.server_key,
                              client_keys ? c->keys12.client_iv : c->keys12.server_iv);
}

kx_result kx_change_cipher_spec_write(ktlsx_conn *c)
{
    KX_GUARD(kx_hs_flush(c));
    KX_GUARD(kx_record_write(&c->tx, KX_CT_CHANGE_CIPHER_SPEC, (const uint8_t *)"\1", 1, &c->out));
    kx_trace(c, c->role == KTLSX_CLIENT, "ChangeCipherSpec");
    return install(c, &c->tx, c->role == KTLSX_CLIENT);
}

kx_result kx_change_cipher_spec_handle(ktlsx_conn *c, kx_reader *body)
{
    (void)body;
    kx_trace(c, c->role == KTLSX_SERVER, "ChangeCipherSpec");
    return install(c, &c->rx, c->role == KTLSX_SERVER);
}
