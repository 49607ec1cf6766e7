/* NewSessionTicket, both versions: what a server hands out so the client
 * can resume, and what a client keeps of it.
 *   TLS 1.2 (RFC 5077 §3.3): a handshake message before the server's
 *   ChangeCipherSpec; the ticket seals the master secret.
 *   TLS 1.3 (RFC 8446 §4.6.1): post-handshake; each ticket carries its own
 *   nonce, and the PSK it stands for is derived from the resumption secret.
 * Sealing and opening tickets is session/ticket.c's; this file is the wire. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* ---- TLS 1.3 ---- */

kx_result kx_new_session_tickets13_write(ktlsx_conn *c)
{
    const ktlsx_config *cfg = c->cfg;
    /* Only for clients that said they can resume (psk_key_exchange_modes), and never for external PSKs. */
    bool usable = (c->psk_modes & 2) || ((c->psk_modes & 1) && cfg->psk_ke);
    if (!cfg->tickets_enabled || cfg->tickets13 == 0 || !usable || c->psk_external) return KX_OK;
    for (unsigned i = 0; i < cfg->tickets13; i++) {
        uint8_t nonce[8];
        for (int b = 0; b < 8; b++) nonce[b] = (uint8_t)((uint64_t)i >> (56 - 8 * b));
        kx_session s = { 0 };
        s.version = KTLSX_TLS13;
        s.suite = c->suite->id;
        s.secret_len = (uint8_t)c->ks.hlen;
        s.issued_ms = kx_now_ms();
        s.lifetime = cfg->ticket_lifetime;
        kx_copy_str(s.alpn, sizeof s.alpn, c->alpn);
        kx_copy_str(s.peer_subject, sizeof s.peer_subject, c->peer_subject);
        kx_buf ticket = { 0 };
        size_t msg;
        kx_result r = kx_random(&s.age_add, sizeof s.age_add);
        if (!kx_failed(r)) r = kx_tls13_ticket_psk(c->suite->hash, c->ks.resumption, nonce, sizeof nonce, s.secret);
        if (!kx_failed(r)) r = kx_ticket_seal(&c->cfg->tickets, &s, &ticket);
        if (!kx_failed(r)) r = kx_hs_begin(c, KX_HS_NEW_SESSION_TICKET, &msg);
        if (!kx_failed(r)) r = kx_write_u32(&c->hs_out, s.lifetime);
        if (!kx_failed(r)) r = kx_write_u32(&c->hs_out, s.age_add);
        if (!kx_failed(r)) r = kx_write_vec(&c->hs_out, 1, nonce, sizeof nonce);
        if (!kx_failed(r)) r = kx_write_vec(&c->hs_out, 2, ticket.data, ticket.len);
        if (!kx_failed(r)) r = kx_write_u16(&c->hs_out, 0);
        if (!kx_failed(r)) r = kx_hs_end(c, msg);
        kx_buf_free(&ticket);
        kx_session_wipe(&s);
        KX_GUARD(r);
        kx_trace(c, false, "NewSessionTicket lifetime=%u", cfg->ticket_lifetime);
    }
    return kx_hs_flush(c);
}

kx_result kx_new_session_ticket13_handle(ktlsx_conn *c, kx_reader *body)
{
    uint32_t lifetime, age_add;
    kx_reader nonce, ticket, block;
    KX_GUARD(kx_read_u32(body, &lifetime));
    KX_GUARD(kx_read_u32(body, &age_add));
    KX_GUARD(kx_read_vec(body, 1, 0, 255, &nonce));
    KX_GUARD(kx_read_vec(body, 2, 1, 65535, &ticket));
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &block));
    /* The whole message is checked before anything it says is kept. */
    KX_GUARD(kx_reader_done(body));
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

/* ---- TLS 1.2 ---- */

static kx_result seal_tls12_session(ktlsx_conn *c, kx_buf *ticket)
{
    kx_session s = { 0 };
    s.version = c->version;
    s.suite = c->suite->id;
    memcpy(s.secret, c->master, KX_TLS12_MASTER);
    s.secret_len = KX_TLS12_MASTER;
    s.ems = c->ems;
    s.issued_ms = kx_now_ms();
    s.lifetime = c->cfg->ticket_lifetime;
    kx_copy_str(s.alpn, sizeof s.alpn, c->alpn);
    kx_copy_str(s.peer_subject, sizeof s.peer_subject, c->peer_subject);
    kx_result r = kx_ticket_seal(&c->cfg->tickets, &s, ticket);
    kx_session_wipe(&s);
    return r;
}

static kx_result store_tls12_ticket(ktlsx_conn *c, uint32_t lifetime, const uint8_t *ticket, size_t len)
{
    KX_ENSURE(len <= KX_SESSION_MAX_TICKET, KX_ALERT_DECODE_ERROR, "session ticket too large");
    if (len == 0) return KX_OK;
    memcpy(c->session.ticket, ticket, len);
    c->session.ticket_len = (uint16_t)len;
    c->session.lifetime = lifetime;
    c->new_session = true;
    return KX_OK;
}

kx_result kx_new_session_ticket12_write(ktlsx_conn *c)
{
    kx_buf ticket = { 0 };
    kx_result r = seal_tls12_session(c, &ticket);
    size_t msg;
    if (!kx_failed(r)) r = kx_hs_begin(c, KX_HS_NEW_SESSION_TICKET, &msg);
    if (!kx_failed(r)) r = kx_write_u32(&c->hs_out, c->cfg->ticket_lifetime);
    if (!kx_failed(r)) r = kx_write_vec(&c->hs_out, 2, ticket.data, ticket.len);
    if (!kx_failed(r)) r = kx_hs_end(c, msg);
    kx_buf_free(&ticket);
    KX_GUARD(r);
    kx_trace(c, false, "NewSessionTicket lifetime=%u", c->cfg->ticket_lifetime);
    return KX_OK;
}

kx_result kx_new_session_ticket12_handle(ktlsx_conn *c, kx_reader *body)
{
    uint32_t lifetime;
    kx_reader ticket;
    KX_GUARD(kx_read_u32(body, &lifetime));
    KX_GUARD(kx_read_vec(body, 2, 0, 65535, &ticket));
    kx_trace(c, false, "NewSessionTicket lifetime=%u", lifetime);
    /* An empty ticket means "keep using the one you have" (RFC 5077 §3.3); we then resume by ID. */
    return store_tls12_ticket(c, lifetime, ticket.data, ticket.len);
}
