/* What happens once the last handshake message is through: the server hands
 * out resumption state (TLS 1.3 NewSessionTickets, the TLS 1.2 session
 * cache), the client records what it can resume later, and the handshake-only
 * state is dropped (kx_release_handshake_memory, also run by ktlsx_ktls_start
 * once the kernel holds the record keys). */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* TLS 1.2: the session this connection can be resumed from. */
static void record_tls12_session(ktlsx_conn *c)
{
    kx_session *s = &c->session;
    if (c->resumed) {
        /* issue 12: a session another server made, found in the external store
         * (memcached), joins this server's own cache once the resumption proved
         * both sides hold its secret (both Finished verified), so the next
         * reconnection here is answered without asking the store.  A resumed
         * handshake that fails never gets here (and kx_store_remove drops the
         * entry from the store). */
        if (c->role == KTLSX_SERVER && c->resumed_from_store) kx_session_cache_put(c->cfg->session_cache, s);
        return; /* same session; a refreshed ticket was stored already */
    }
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
    kx_release_handshake_memory(c);
    return KX_OK;
}

/* An empty buffer's allocation goes back to the heap; one still holding
 * bytes (a flight not yet sent, records not yet read) stays as it is. */
static void release_if_empty(kx_buf *b)
{
    if (b->len == 0) kx_buf_free(b);
}

void kx_release_handshake_memory(ktlsx_conn *c)
{
    /* The transcript (and any raw copy kept for TLS 1.2 CertificateVerify): Finished is done. */
    kx_transcript_free(&c->transcript);
    kx_transcript_init(&c->transcript);
    /* Key exchange and authentication are over: nothing signs, verifies or derives again. */
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    kx_buf_free(&c->kex_pub);
    EVP_PKEY_free(c->peer_key);
    c->peer_key = NULL;
    kx_wipe(c->ecdhe, sizeof c->ecdhe);
    c->ecdhe_len = 0;
    kx_wipe(c->psk, sizeof c->psk);
    c->psk_len = 0;
    /* TLS 1.3: the resumption secret is derived (finished.c), and no call exports keying
     * material, so only the application traffic and resumption secrets stay. */
    kx_wipe(c->ks.master, sizeof c->ks.master);
    kx_wipe(c->ks.exporter, sizeof c->ks.exporter);
    /* Byte buffers: the handshake grew them to its largest flight (the certificate
     * chain); post-handshake messages and records are small and allocate afresh. */
    if (kx_in_left(c) == 0) {
        kx_buf_free(&c->in);
        c->in_off = 0;
    }
    if (c->app_in_off == c->app_in.len) {
        kx_buf_free(&c->app_in);
        c->app_in_off = 0;
    }
    release_if_empty(&c->out);
    release_if_empty(&c->out_lent);
    release_if_empty(&c->hs_in);
    release_if_empty(&c->hs_out);
    release_if_empty(&c->ctl_out);
    kx_buf_free(&c->ticket);
}
