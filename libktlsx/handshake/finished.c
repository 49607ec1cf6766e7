/* Finished (RFC 8446 §4.4.4): the MAC over the whole handshake, and the
 * moment each side moves to application traffic keys. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

/* Master secret and application traffic secrets, from the transcript up to the server Finished. */
static kx_result derive_application_secrets(ktlsx_conn *c)
{
    uint8_t th[KX_MAX_HASH];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    KX_GUARD(kx_tls13_ks_master(&c->ks, th));
    kx_keylog(c, "CLIENT_TRAFFIC_SECRET_0", c->ks.c_ap, c->ks.hlen);
    kx_keylog(c, "SERVER_TRAFFIC_SECRET_0", c->ks.s_ap, c->ks.hlen);
    kx_keylog(c, "EXPORTER_SECRET", c->ks.exporter, c->ks.hlen);
    return KX_OK;
}

static kx_result derive_resumption_secret(ktlsx_conn *c)
{
    uint8_t th[KX_MAX_HASH];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    KX_GUARD(kx_tls13_ks_resumption(&c->ks, th));
    /* The handshake secrets are no longer needed by anyone. */
    kx_wipe(c->ks.c_hs, sizeof c->ks.c_hs);
    kx_wipe(c->ks.s_hs, sizeof c->ks.s_hs);
    kx_wipe(c->ks.early, sizeof c->ks.early);
    kx_wipe(c->ks.handshake, sizeof c->ks.handshake);
    return KX_OK;
}

/* ---- TLS 1.2 (RFC 5246 §7.4.9): 12 bytes of PRF over the transcript hash ---- */

static kx_result write_tls12(ktlsx_conn *c)
{
    bool client = c->role == KTLSX_CLIENT;
    uint8_t th[KX_MAX_HASH], verify[KX_TLS12_VERIFY];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    KX_GUARD(kx_tls12_finished(c->suite, c->master, client, th, verify));
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_FINISHED, &msg));
    KX_GUARD(kx_write_bytes(&c->hs_out, verify, sizeof verify));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, client, "Finished");
    return KX_OK;
}

static kx_result handle_tls12(ktlsx_conn *c, kx_reader *body)
{
    bool from_server = c->role == KTLSX_CLIENT;
    const uint8_t *got;
    /* Length before contents (RFC 8446 §6.2): exactly 12 bytes, or decode_error. */
    KX_ENSURE(kx_reader_left(body) == KX_TLS12_VERIFY, KX_ALERT_DECODE_ERROR, "Finished of the wrong length");
    KX_GUARD(kx_read_bytes(body, KX_TLS12_VERIFY, &got));
    uint8_t expected[KX_TLS12_VERIFY];
    KX_GUARD(kx_tls12_finished(c->suite, c->master, !from_server, c->th, expected));
    bool ok = kx_ct_equal(expected, got, sizeof expected);
    kx_wipe(expected, sizeof expected);
    kx_trace(c, !from_server, "Finished");
    KX_ENSURE(ok, KX_ALERT_DECRYPT_ERROR, "Finished verify_data does not match");
    return KX_OK;
}

kx_result kx_finished_write(ktlsx_conn *c)
{
    if (c->version == KTLSX_TLS12) return write_tls12(c);
    bool client = c->role == KTLSX_CLIENT;
    uint8_t th[KX_MAX_HASH], verify[KX_MAX_HASH];
    KX_GUARD(kx_transcript_hash(&c->transcript, th));
    KX_GUARD(kx_tls13_finished(c->suite->hash, client ? c->ks.c_hs : c->ks.s_hs, th, verify));
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_FINISHED, &msg));
    KX_GUARD(kx_write_bytes(&c->hs_out, verify, c->ks.hlen));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, client, "Finished");
    if (client) {
        KX_GUARD(kx_set_traffic_secret(c, &c->tx, c->ks.c_ap));
        return derive_resumption_secret(c);
    }
    KX_GUARD(derive_application_secrets(c));
    return kx_set_traffic_secret(c, &c->tx, c->ks.s_ap);
}

kx_result kx_finished_handle(ktlsx_conn *c, kx_reader *body)
{
    if (c->version == KTLSX_TLS12) return handle_tls12(c, body);
    bool from_server = c->role == KTLSX_CLIENT;
    const uint8_t *got;
    /* Length before contents (RFC 8446 §6.2): exactly Hash.length bytes, or
     * decode_error; only then the (constant-time) comparison. */
    KX_ENSURE(kx_reader_left(body) == c->ks.hlen, KX_ALERT_DECODE_ERROR, "Finished of the wrong length");
    KX_GUARD(kx_read_bytes(body, c->ks.hlen, &got));
    uint8_t expected[KX_MAX_HASH];
    KX_GUARD(kx_tls13_finished(c->suite->hash, from_server ? c->ks.s_hs : c->ks.c_hs, c->th, expected));
    bool ok = kx_ct_equal(expected, got, c->ks.hlen);
    kx_wipe(expected, sizeof expected);
    kx_trace(c, !from_server, "Finished");
    KX_ENSURE(ok, KX_ALERT_DECRYPT_ERROR, "Finished verify_data does not match");
    if (from_server) {
        KX_GUARD(derive_application_secrets(c));
        return kx_set_traffic_secret(c, &c->rx, c->ks.s_ap);
    }
    KX_GUARD(kx_set_traffic_secret(c, &c->rx, c->ks.c_ap));
    return derive_resumption_secret(c);
}
