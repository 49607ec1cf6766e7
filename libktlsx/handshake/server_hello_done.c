/* ServerHelloDone (TLS 1.2 only; RFC 5246 §7.4.5): the end of the server's
 * first flight, with an empty body. */
#include "handshake/conn.h"

kx_result kx_server_hello_done_write(ktlsx_conn *c)
{
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_SERVER_HELLO_DONE, &msg));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "ServerHelloDone");
    return KX_OK;
}

kx_result kx_server_hello_done_handle(ktlsx_conn *c, kx_reader *body)
{
    kx_trace(c, false, "ServerHelloDone");
    return kx_reader_done(body);
}
