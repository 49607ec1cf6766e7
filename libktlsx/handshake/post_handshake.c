/* Post-handshake messages (RFC 8446 §4.6; RFC 5246 §7.4.1.1 for the refused
 * TLS 1.2 renegotiation): NewSessionTicket (kept for resumption), KeyUpdate,
 * HelloRequest / ClientHello.
 *
 * This is the only place they are handled, for both record layers: the
 * engine's (ktlsx_read) and the kernel's (ktlsx_ktls_recv and callers that
 * read records themselves hand the contents to kx_receive_plaintext).  Where
 * a direction lives only changes where an answer goes: with TX in user space
 * it is sealed into `out`; with TX in the kernel it waits in ctl_out for the
 * caller's socket; with RX in the kernel a peer's KeyUpdate leaves
 * rekey_rx_due for the socket that can install the next key.  Nothing here
 * sends or blocks.  NewSessionTicket itself lives in new_session_ticket.c. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

static uint8_t *tx_secret(ktlsx_conn *c) { return c->role == KTLSX_CLIENT ? c->ks.c_ap : c->ks.s_ap; }
static uint8_t *rx_secret(ktlsx_conn *c) { return c->role == KTLSX_CLIENT ? c->ks.s_ap : c->ks.c_ap; }

static kx_result update_secret(ktlsx_conn *c, kx_record_dir *dir, uint8_t *secret)
{
    KX_GUARD(kx_tls13_next_traffic_secret(c->suite->hash, secret));
    return kx_set_traffic_secret(c, dir, secret);
}

kx_result kx_key_update_write(ktlsx_conn *c, bool request_update)
{
    uint8_t msg[5] = { KX_HS_KEY_UPDATE, 0, 0, 1, request_update ? 1 : 0 };
    kx_trace(c, c->role == KTLSX_CLIENT, "KeyUpdate request_update=%d%s", request_update,
             (c->ktls_active & KTLSX_KTLS_TX) ? " (kernel TLS)" : "");
    if (c->ktls_active & KTLSX_KTLS_TX) {
        /* The message goes out under the kernel's current key, then the kernel
         * gets the next one: both happen when the socket flushes ctl_out. */
        KX_GUARD(kx_control_queue(c, KX_CT_HANDSHAKE, msg, sizeof msg));
        KX_GUARD(kx_control_queue(c, KX_CTL_REKEY_TX, NULL, 0));
        if (c->key_updates_queued < UINT8_MAX) c->key_updates_queued++;
        return KX_OK;
    }
    KX_GUARD(kx_write_bytes(&c->hs_out, msg, sizeof msg));
    /* The KeyUpdate itself goes out under the old keys (set_traffic_secret flushes first). */
    return update_secret(c, &c->tx, tx_secret(c));
}

kx_result kx_key_update_handle(ktlsx_conn *c, kx_reader *body)
{
    uint8_t request;
    /* A malformed KeyUpdate changes nothing (RFC 8446 §4.6.3): length, then value, then act. */
    KX_GUARD(kx_read_u8(body, &request));
    KX_GUARD(kx_reader_done(body));
    KX_ENSURE(request <= 1, KX_ALERT_ILLEGAL_PARAMETER, "bad KeyUpdate request value");
    /* RFC 8446 §5.1: the key change falls on a record boundary. */
    KX_ENSURE(c->hs_in.len == 0, KX_ALERT_UNEXPECTED_MESSAGE, "KeyUpdate is not at the end of its record");
    kx_trace(c, c->role == KTLSX_SERVER, "KeyUpdate request_update=%u%s", request,
             (c->ktls_active & KTLSX_KTLS_RX) ? " (kernel TLS)" : "");
    if (c->ktls_active & KTLSX_KTLS_RX)
        c->rekey_rx_due = true; /* the kernel holds RX and waits for its next key */
    else
        KX_GUARD(update_secret(c, &c->rx, rx_secret(c)));
    /* Answer a request once; our answer does not request in turn (no ping-pong).
     * While a KeyUpdate of ours still waits in the queue for the kernel, it
     * answers every request received meanwhile (RFC 8446 §4.6.3: one update
     * from a side that is silent), so a peer flooding requests cannot grow the
     * queue.  With TX in user space the answer is sealed at once; its cost is
     * one record per record the peer sends, and the socket layer stops reading
     * while its output backs up. */
    if (request && !c->key_updates_queued) KX_GUARD(kx_key_update_write(c, false));
    return KX_OK;
}

/* A renegotiating ClientHello has the shape of RFC 5246 §7.4.1.2 (its
 * contents do not matter: it is refused either way). */
static kx_result check_client_hello_shape(kx_reader *body)
{
    uint16_t version;
    const uint8_t *random;
    kx_reader v;
    KX_GUARD(kx_read_u16(body, &version));
    KX_GUARD(kx_read_bytes(body, 32, &random));
    KX_GUARD(kx_read_vec(body, 1, 0, 32, &v));
    KX_GUARD(kx_read_vec(body, 2, 2, 65534, &v));
    KX_GUARD(kx_read_vec(body, 1, 1, 255, &v));
    if (kx_reader_left(body)) KX_GUARD(kx_read_vec(body, 2, 0, 65535, &v));
    return kx_reader_done(body);
}

/* TLS 1.2 renegotiation is refused with a warning (RFC 5246 §7.2.2): kernel TLS
 * cannot change TLS 1.2 keys mid-connection, so there is no safe way to accept it.
 * Like every post-handshake message, a malformed one is a decode_error and
 * earns no answer: HelloRequest is empty (§7.4.1.1). */
static kx_result refuse_renegotiation(ktlsx_conn *c, uint8_t type, kx_reader *body)
{
    if (type == KX_HS_HELLO_REQUEST)
        KX_ENSURE(kx_reader_left(body) == 0, KX_ALERT_DECODE_ERROR, "HelloRequest is not empty");
    else
        KX_GUARD(check_client_hello_shape(body));
    kx_trace(c, c->role == KTLSX_SERVER, "%s refused: no_renegotiation",
             type == KX_HS_HELLO_REQUEST ? "HelloRequest" : "ClientHello");
    kx_queue_alert(c, 1, KX_ALERT_NO_RENEGOTIATION);
    return KX_OK;
}

kx_result kx_handle_post_handshake(ktlsx_conn *c)
{
    kx_buf msg = { 0 };
    kx_result r = KX_OK;
    while (c->hs_in.len >= 4 && !c->rekey_rx_due) {
        size_t body = ((size_t)c->hs_in.data[1] << 16) | ((size_t)c->hs_in.data[2] << 8) | c->hs_in.data[3];
        if (body > c->cfg->max_handshake_message) {
            r = KX_FAIL(KX_ALERT_ILLEGAL_PARAMETER, "handshake message larger than the configured maximum");
            break;
        }
        if (c->hs_in.len < 4 + body) break;
        uint8_t type = c->hs_in.data[0];
        r = kx_buf_reserve(&msg, 4 + body);
        if (kx_failed(r)) break;
        kx_take_message(c, 4 + body, &msg);
        kx_reader rd = kx_reader_of(msg.data + 4, body);
        bool tls13 = c->version == KTLSX_TLS13, tls12 = c->version == KTLSX_TLS12;
        if (type == KX_HS_NEW_SESSION_TICKET && c->role == KTLSX_CLIENT && tls13)
            r = kx_new_session_ticket13_handle(c, &rd);
        else if (type == KX_HS_KEY_UPDATE && tls13)
            r = kx_key_update_handle(c, &rd);
        else if (tls12 && ((type == KX_HS_CLIENT_HELLO && c->role == KTLSX_SERVER) ||
                           (type == KX_HS_HELLO_REQUEST && c->role == KTLSX_CLIENT)))
            r = refuse_renegotiation(c, type, &rd);
        else
            r = KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "unexpected post-handshake message");
        if (kx_failed(r)) break;
        r = kx_reader_done(&rd);
        if (kx_failed(r)) break;
    }
    kx_buf_free(&msg);
    /* Post-handshake messages are rare: a drained hs_in gives its allocation back
     * rather than keeping it for the connection's lifetime. */
    if (c->handshake_done && c->hs_in.len == 0) kx_buf_free(&c->hs_in);
    return r;
}
