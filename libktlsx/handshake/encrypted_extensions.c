/* EncryptedExtensions (RFC 8446 §4.3.1): the server's answers to the
 * ClientHello extensions that need no cryptographic context. */
#include "handshake/conn.h"
#include <string.h>

kx_result kx_encrypted_extensions_write(ktlsx_conn *c)
{
    kx_buf *o = &c->hs_out;
    size_t msg, exts, x, y;
    KX_GUARD(kx_hs_begin(c, KX_HS_ENCRYPTED_EXTENSIONS, &msg));
    KX_GUARD(kx_vec_open(o, 2, &exts));
    if (c->server_name[0]) {
        /* RFC 6066 §3: an empty server_name says the name was used. */
        KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_SERVER_NAME));
        KX_GUARD(kx_write_u16(o, 0));
    }
    if (c->alpn[0]) {
        KX_GUARD(kx_write_u16(o, KX_EXT_TYPE_ALPN));
        KX_GUARD(kx_vec_open(o, 2, &x));
        KX_GUARD(kx_vec_open(o, 2, &y));
        KX_GUARD(kx_write_vec(o, 1, c->alpn, strlen(c->alpn)));
        KX_GUARD(kx_vec_close(o, 2, y));
        KX_GUARD(kx_vec_close(o, 2, x));
    }
    KX_GUARD(kx_rsl_write_answer(c)); /* issue 9: record_size_limit */
    KX_GUARD(kx_vec_close(o, 2, exts));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, false, "EncryptedExtensions alpn=%s", c->alpn[0] ? c->alpn : "-");
    return KX_OK;
}

/* The server's ALPN answer (TLS 1.3 EncryptedExtensions, TLS 1.2 ServerHello):
 * exactly one protocol, and one of ours (RFC 7301 §3.1). */
kx_result kx_accept_server_alpn(ktlsx_conn *c, kx_reader d)
{
    kx_reader list, name;
    KX_GUARD(kx_read_vec(&d, 2, 2, 65535, &list));
    KX_GUARD(kx_reader_done(&d));
    KX_GUARD(kx_read_vec(&list, 1, 1, 255, &name));
    KX_ENSURE(kx_reader_left(&list) == 0, KX_ALERT_ILLEGAL_PARAMETER, "server selected more than one protocol");
    const ktlsx_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->alpn_len; i += 1 + cfg->alpn[i]) {
        if (cfg->alpn[i] == name.len && memcmp(cfg->alpn + i + 1, name.data, name.len) == 0) {
            memcpy(c->alpn, name.data, name.len);
            c->alpn[name.len] = 0;
            return KX_OK;
        }
    }
    return KX_FAIL(KX_ALERT_ILLEGAL_PARAMETER, "server selected a protocol we did not offer");
}

kx_result kx_encrypted_extensions_handle(ktlsx_conn *c, kx_reader *body)
{
    kx_reader block;
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &block));
    kx_exts e;
    /* supported_groups may come back unsolicited-looking: we did send it. */
    KX_GUARD(kx_exts_parse(&block, KX_IN_EE, c->sent_exts, &e));
    if (kx_has_ext(&e, KX_EXT_SERVER_NAME))
        KX_ENSURE(e.data[KX_EXT_SERVER_NAME].len == 0, KX_ALERT_DECODE_ERROR, "non-empty server_name in EncryptedExtensions");
    if (kx_has_ext(&e, KX_EXT_ALPN)) KX_GUARD(kx_accept_server_alpn(c, e.data[KX_EXT_ALPN]));
    if (kx_has_ext(&e, KX_EXT_RECORD_SIZE_LIMIT)) KX_GUARD(kx_rsl_client_accept(c, e.data[KX_EXT_RECORD_SIZE_LIMIT]));
    kx_trace(c, false, "EncryptedExtensions alpn=%s", c->alpn[0] ? c->alpn : "-");
    return KX_OK;
}
