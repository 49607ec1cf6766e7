/* What happens once the last handshake message is through: the server hands
 * out resumption state (TLS 1.3 NewSessionTickets, the TLS 1.2 session
 * cache), the client records what it can resume later, and the handshake-only
 * state is dropped. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* TLS 1.2: the session this connection can be resumed from. */
static void record_tls12_session(ktlsx_conn *c)
{
    kx_session *s = &c->session;
    if (c->resumed) return; /* same session; a refreshed ticket was stored already */
    s->version = KTLSX_TLS12;
    s->suite = c->suite->id;
    memcpy(s->secret, c->master, KX_TLS12_MASTER);
    s->secret_len = KX_TLS12_MASTER;
    s->ems = c->ems;
    s->issued_ms = kx_now_ms();
    kx_copy_str(s->alpn, sizeof s->alpn, c->alpn);
    kx_copy_str(s->peer_subject, sizeof s->peer_subject, c->peer_subject);
    if (c->role == KTLSX_SERVER) {
        memcpy(s->session_id, c->session_id, c->session_id_len);
        s->session_id_len = (uint8_t)c->session_id_len;
        s->lifetime = c->cfg->ticket_lifetime;
        /* RFC 7627 §5.3: sessions without EMS are not resumed, so not cached either. */
        if (c->ems) {
            kx_session_cache_put(c->cfg->session_cache, s);
            kx_store_put(c, s); /* external session store (1.0 hooks) */
        }
    } else {
        c->new_session = s->session_id_len > 0 || s->ticket_len > 0;
    }
}

kx_result kx_handshake_complete(ktlsx_conn *c)
{
    KX_GUARD(kx_hs_flush(c));
    c->handshake_done = true;
    if (c->version == KTLSX_TLS12) {
        record_tls12_session(c);
        kx_wipe_obj(c->keys12);
    } else if (c->role == KTLSX_SERVER) {
        KX_GUARD(kx_new_session_tickets13_write(c));
    }
    /* The transcript (and any raw copy kept for TLS 1.2 CertificateVerify) is no longer needed. */
    kx_transcript_free(&c->transcript);
    kx_transcript_init(&c->transcript);
    return KX_OK;
}
