/* Post-handshake messages on a TLS 1.3 connection (RFC 8446 §4.6):
 * NewSessionTicket (kept for resumption) and KeyUpdate. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

kx_result kx_new_session_ticket_handle(ktlsx_conn *c, kx_reader *body)
{
    uint32_t lifetime, age_add;
    kx_reader nonce, ticket, block;
    KX_GUARD(kx_read_u32(body, &lifetime));
    KX_GUARD(kx_read_u32(body, &age_add));
    KX_GUARD(kx_read_vec(body, 1, 0, 255, &nonce));
    KX_GUARD(kx_read_vec(body, 2, 1, 65535, &ticket));
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &block));
    kx_exts e;
    KX_GUARD(kx_exts_parse(&block, KX_IN_NST, 0, &e));
    /* RFC 8446 §4.6.1: at most seven days. */
    KX_ENSURE(lifetime <= 604800, KX_ALERT_ILLEGAL_PARAMETER, "ticket lifetime over seven days");
    kx_trace(c, false, "NewSessionTicket lifetime=%u ticket_len=%zu", lifetime, ticket.len);
    if (ticket.len > KX_SESSION_MAX_TICKET || lifetime == 0) return KX_OK; /* unusable: ignore, as RFC allows */
    /* The newest ticket wins: each carries its own PSK derived from the resumption secret. */
    kx_session *s = &c->session;
    kx_session_wipe(s);
    s->version = KTLSX_TLS13;
    s->suite = c->suite->id;
    s->secret_len = (uint8_t)c->ks.hlen;
    KX_GUARD(kx_tls13_ticket_psk(c->suite->hash, c->ks.resumption, nonce.data, nonce.len, s->secret));
    s->issued_ms = kx_now_ms();
    s->lifetime = lifetime;
    s->age_add = age_add;
    memcpy(s->ticket, ticket.data, ticket.len);
    s->ticket_len = (uint16_t)ticket.len;
    kx_copy_str(s->alpn, sizeof s->alpn, c->alpn);
    kx_copy_str(s->peer_subject, sizeof s->peer_subject, c->peer_subject);
    c->new_session = true;
    return KX_OK;
}

static kx_result update_secret(ktlsx_conn *c, kx_record_dir *dir, uint8_t *secret)
{
    KX_GUARD(kx_tls13_next_traffic_secret(c->suite->hash, secret));
    return kx_set_traffic_secret(c, dir, secret);
}

kx_result kx_key_update_write(ktlsx_conn *c, bool request_update)
{
    /* The user-space record layer no longer owns TX: only ktlsx_ktls_key_update can send. */
    KX_ENSURE(!(c->ktls_active & KTLSX_KTLS_TX), KX_ALERT_INTERNAL_ERROR,
              "KeyUpdate must be sent through the kernel (TX is in kernel TLS)");
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_KEY_UPDATE, &msg));
    KX_GUARD(kx_write_u8(&c->hs_out, request_update ? 1 : 0));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, c->role == KTLSX_CLIENT, "KeyUpdate request_update=%d", request_update);
    /* The KeyUpdate itself goes out under the old keys (set_traffic_secret flushes first). */
    return update_secret(c, &c->tx, c->role == KTLSX_CLIENT ? c->ks.c_ap : c->ks.s_ap);
}

kx_result kx_key_update_handle(ktlsx_conn *c, kx_reader *body)
{
    uint8_t request;
    KX_GUARD(kx_read_u8(body, &request));
    KX_ENSURE(request <= 1, KX_ALERT_ILLEGAL_PARAMETER, "bad KeyUpdate request value");
    kx_trace(c, c->role == KTLSX_SERVER, "KeyUpdate request_update=%u", request);
    KX_GUARD(update_secret(c, &c->rx, c->role == KTLSX_CLIENT ? c->ks.s_ap : c->ks.c_ap));
    /* Answer a request once; our answer does not request in turn (no ping-pong). */
    if (request) KX_GUARD(kx_key_update_write(c, false));
    return KX_OK;
}
