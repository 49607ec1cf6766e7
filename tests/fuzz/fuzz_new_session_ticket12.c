/* TLS 1.2 NewSessionTicket (RFC 5077 §3.3), as handled by a client after
 * its Finished, then the ticket is stored (new_session_ticket.c).
 *
 * Input: byte 0 selects the mode, the rest is the body.
 *   bit 0: the client already holds a session (offered a ticket / ID), so
 *          the new ticket replaces the old one
 * After a successful message the session the application would save
 * (ktlsx_get_session's encoding) is encoded and decoded again and must
 * round-trip (ticket, lifetime, secret). */
#include "fuzz_tls12.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz12_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    uint8_t mode = data[0];
    ktlsx_conn *c = fz12_conn(fz_client_cfg_insecure, FZ12_ECDHE_ECDSA_AES128, true);
    /* What the client keeps of a TLS 1.2 session by now (complete.c fills the rest). */
    c->session.version = KTLSX_TLS12;
    c->session.suite = FZ12_ECDHE_ECDSA_AES128;
    memset(c->session.secret, 0x33, 48);
    c->session.secret_len = 48;
    c->session.ems = true;
    if (mode & 1) {
        c->have_session = true;
        memcpy(c->session.ticket, "old ticket", 10);
        c->session.ticket_len = 10;
        memcpy(c->session.session_id, fz12_sid_ems, 32);
        c->session.session_id_len = 32;
    }
    c->send_ticket12 = true;
    kx_flow_rebuild(c);
    fz12_flow_at(c, KX_MSG_NEW_SESSION_TICKET);
    if (c->flow[c->flow_pos] != KX_MSG_NEW_SESSION_TICKET) abort();

    fz_run_handler(c, kx_new_session_ticket12_handle, KX_HS_NEW_SESSION_TICKET, data + 1, size - 1, 1);
    if (!c->failed) {
        const kx_session *s = &c->session;
        if (s->ticket_len > KX_SESSION_MAX_TICKET) abort();
        kx_buf b = { 0 };
        kx_session back;
        kx_result r = kx_session_encode(s, &b);
        if (kx_failed(r)) abort();
        r = kx_session_decode(b.data, b.len, &back);
        if (kx_failed(r)) {
            fprintf(stderr, "fuzz: session does not decode after a NewSessionTicket: %s\n", r.reason);
            abort();
        }
        if (back.ticket_len != s->ticket_len || memcmp(back.ticket, s->ticket, s->ticket_len) != 0 ||
            back.lifetime != s->lifetime || back.secret_len != s->secret_len ||
            memcmp(back.secret, s->secret, s->secret_len) != 0)
            abort();
        kx_buf_free(&b);
        kx_session_wipe(&back);
    }
    ktlsx_conn_free(c);
    return 0;
}
