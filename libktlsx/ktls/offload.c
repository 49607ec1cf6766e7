/* Handing a finished connection to kernel TLS, and the control records
 * (tickets, key updates, alerts) that still need the engine afterwards.
 *
 * Order matters: everything fallible (draining buffered records, exporting
 * keys, loading the ULP) happens before TX is installed; TX goes in before RX
 * because a TX failure leaves the socket exactly as it was (user space can
 * carry on), whereas once RX is installed the kernel owns the incoming byte
 * stream. */
#include "handshake/conn.h"
#include "ktls/ktls.h"
#include "core/wipe.h"
#include <errno.h>
#include <string.h>


int ktlsx_ktls_active(const ktlsx_conn *c) { return c->ktls_active; }

int ktlsx_ktls_start(ktlsx_conn *c, int fd, int want, char *why, size_t whylen)
{
    if (!c->handshake_done || c->failed) {
        kx_say(why, whylen, "handshake not complete");
        return 0;
    }
    if (c->out.len) {
        kx_say(why, whylen, "pending output must be sent before switching to kernel TLS");
        return 0;
    }
    if (want & KTLSX_KTLS_RX) {
        /* Records already read are decrypted here, so the kernel starts at the next one. */
        kx_result r = kx_drain_records(c);
        if (kx_failed(r)) {
            kx_conn_fail(c, r);
            kx_say(why, whylen, "%s", r.reason);
            return 0;
        }
        if (kx_in_left(c) || c->hs_in.len) {
            /* A partial record (or message) is buffered: the kernel would see the stream
             * mid-record.  Callers that read with ktlsx_input_wanted() never hit this. */
            kx_say(why, whylen, "a partial record is buffered in user space; receive stays in user space");
            want &= ~KTLSX_KTLS_RX;
        }
        if (c->out.len) { /* answering a KeyUpdate produced output: it must go first */
            kx_say(why, whylen, "pending output must be sent before switching to kernel TLS");
            return 0;
        }
    }
    if (!want) return 0;
    if (kx_ktls_enable_ulp(fd, why, whylen) != 0) return 0;
    struct ktlsx_traffic_keys tx, rx;
    int done = 0;
    if ((want & KTLSX_KTLS_TX) && ktlsx_export_keys(c, KTLSX_TX, &tx) == 0) {
        if (kx_ktls_install(fd, KTLSX_TX, &tx, why, whylen) == 0) done |= KTLSX_KTLS_TX;
        kx_wipe_obj(tx);
    }
    if ((want & KTLSX_KTLS_RX) && (done || !(want & KTLSX_KTLS_TX)) && ktlsx_export_keys(c, KTLSX_RX, &rx) == 0) {
        if (kx_ktls_install(fd, KTLSX_RX, &rx, why, whylen) == 0) done |= KTLSX_KTLS_RX;
        kx_wipe_obj(rx);
    }
    /* The user-space copies of what the kernel now owns are no longer needed. */
    if (done & KTLSX_KTLS_TX) kx_record_clear(&c->tx);
    if (done & KTLSX_KTLS_RX) kx_record_clear(&c->rx);
    c->ktls_active = done;
    return done;
}

/* ---- control records on a kernel-TLS socket ---- */

static int fail(ktlsx_conn *c, uint8_t alert, const char *reason)
{
    if (!c->failed) {
        c->failed = true;
        c->alert = alert;
        c->error = reason;
    }
    return -1;
}

static int send_alert(ktlsx_conn *c, int fd, uint8_t level, uint8_t desc)
{
    uint8_t a[2] = { level, desc };
    return kx_ktls_send_record(fd, KX_CT_ALERT, a, sizeof a) == (ssize_t)sizeof a ? 0 : -1;
}

/* A fatal error the peer should hear about: the alert goes out through the
 * kernel when TX is there (user space may not write records then). */
static int fail_with_alert(ktlsx_conn *c, int fd, uint8_t alert, const char *reason)
{
    if (c->ktls_active & KTLSX_KTLS_TX) (void)send_alert(c, fd, 2, alert);
    return fail(c, alert, reason);
}

/* Re-key one kernel direction from its TLS 1.3 traffic secret (kernels >= 6.14). */
static int rekey(ktlsx_conn *c, int fd, int direction, uint8_t *secret)
{
    if (kx_failed(kx_tls13_next_traffic_secret(c->suite->hash, secret)))
        return fail(c, KX_ALERT_INTERNAL_ERROR, "key update derivation failed");
    struct ktlsx_traffic_keys k = { 0 };
    k.version = KTLSX_TLS13;
    k.cipher_suite = c->suite->id;
    k.key_len = c->suite->key_len;
    k.iv_len = 12;
    k.seq = 0;
    char why[160];
    int rc = -1;
    if (!kx_failed(kx_tls13_traffic_keys(c->suite->hash, secret, k.key_len, k.key, k.iv)))
        rc = kx_ktls_install(fd, direction, &k, why, sizeof why);
    kx_wipe_obj(k);
    if (rc != 0)
        return fail(c, KX_ALERT_INTERNAL_ERROR,
                    direction == KTLSX_RX
                        ? "peer updated its keys but this kernel cannot re-key TLS 1.3 (needs Linux 6.14 or later)"
                        : "our KeyUpdate went out but this kernel cannot re-key TLS 1.3 TX (needs Linux 6.14 or later)");
    return 0;
}

static int send_key_update(ktlsx_conn *c, int fd, bool request)
{
    uint8_t msg[5] = { KX_HS_KEY_UPDATE, 0, 0, 1, request ? 1 : 0 };
    if (kx_ktls_send_record(fd, KX_CT_HANDSHAKE, msg, sizeof msg) != (ssize_t)sizeof msg)
        return fail(c, KX_ALERT_INTERNAL_ERROR, "sending KeyUpdate failed");
    kx_trace(c, c->role == KTLSX_CLIENT, "KeyUpdate request_update=%d (kernel TLS)", request);
    return rekey(c, fd, KTLSX_TX, c->role == KTLSX_CLIENT ? c->ks.c_ap : c->ks.s_ap);
}

int ktlsx_ktls_key_update(ktlsx_conn *c, int fd, int request_update)
{
    if (c->failed) return -1;
    if (c->version != KTLSX_TLS13) return fail(c, KX_ALERT_INTERNAL_ERROR, "KeyUpdate exists only in TLS 1.3");
    if (!(c->ktls_active & KTLSX_KTLS_TX)) return fail(c, KX_ALERT_INTERNAL_ERROR, "TX is not in kernel TLS");
    return send_key_update(c, fd, request_update != 0);
}

int ktlsx_ktls_close_notify(ktlsx_conn *c, int fd)
{
    if (!(c->ktls_active & KTLSX_KTLS_TX)) return fail(c, KX_ALERT_INTERNAL_ERROR, "TX is not in kernel TLS");
    if (send_alert(c, fd, 1, KX_ALERT_CLOSE_NOTIFY) != 0) return fail(c, KX_ALERT_INTERNAL_ERROR, "sending close_notify failed");
    return 0;
}

/* Complete handshake messages received through the kernel. */
static int handle_messages(ktlsx_conn *c, int fd)
{
    while (c->hs_in.len >= 4) {
        size_t body = ((size_t)c->hs_in.data[1] << 16) | ((size_t)c->hs_in.data[2] << 8) | c->hs_in.data[3];
        if (body > KX_MAX_HANDSHAKE_MESSAGE) return fail(c, KX_ALERT_UNEXPECTED_MESSAGE, "handshake message too large");
        if (c->hs_in.len < 4 + body) return 0;
        uint8_t type = c->hs_in.data[0];
        kx_buf msg = { 0 };
        if (kx_failed(kx_write_bytes(&msg, c->hs_in.data, 4 + body))) return fail(c, KX_ALERT_INTERNAL_ERROR, "out of memory");
        kx_buf_consume(&c->hs_in, 4 + body);
        kx_reader rd = kx_reader_of(msg.data + 4, body);
        int rc = 0;
        if (type == KX_HS_NEW_SESSION_TICKET && c->role == KTLSX_CLIENT && c->version == KTLSX_TLS13) {
            kx_result r = kx_new_session_ticket_handle(c, &rd);
            if (kx_failed(r)) rc = fail(c, r.alert, r.reason);
        } else if (type == KX_HS_KEY_UPDATE && c->version == KTLSX_TLS13 && body != 1) {
            rc = fail_with_alert(c, fd, KX_ALERT_DECODE_ERROR, "malformed KeyUpdate");
        } else if (type == KX_HS_KEY_UPDATE && c->version == KTLSX_TLS13 && msg.data[4] > 1) {
            rc = fail_with_alert(c, fd, KX_ALERT_ILLEGAL_PARAMETER, "bad KeyUpdate request value");
        } else if (type == KX_HS_KEY_UPDATE && c->version == KTLSX_TLS13 && c->hs_in.len != 0) {
            /* More handshake bytes in the record after the KeyUpdate: they were
             * protected with the old key, so the message spans a key change
             * (RFC 8446 §5.1). */
            rc = fail_with_alert(c, fd, KX_ALERT_UNEXPECTED_MESSAGE, "KeyUpdate is not at the end of its record");
        } else if (type == KX_HS_KEY_UPDATE && c->version == KTLSX_TLS13) {
            kx_trace(c, c->role == KTLSX_SERVER, "KeyUpdate request_update=%u (kernel TLS)", msg.data[4]);
            rc = rekey(c, fd, KTLSX_RX, c->role == KTLSX_CLIENT ? c->ks.s_ap : c->ks.c_ap);
            if (rc == 0 && msg.data[4] == 1) {
                if (c->ktls_active & KTLSX_KTLS_TX) rc = send_key_update(c, fd, false);
                else rc = fail(c, KX_ALERT_INTERNAL_ERROR, "KeyUpdate requested but TX is not in the kernel");
            }
        } else if (c->version == KTLSX_TLS12 && ((type == KX_HS_CLIENT_HELLO && c->role == KTLSX_SERVER) ||
                                                 (type == KX_HS_HELLO_REQUEST && c->role == KTLSX_CLIENT))) {
            /* Renegotiation: refused with a warning (kernel TLS cannot change TLS 1.2 keys). */
            rc = send_alert(c, fd, 1, KX_ALERT_NO_RENEGOTIATION);
        } else {
            rc = fail_with_alert(c, fd, KX_ALERT_UNEXPECTED_MESSAGE, "unexpected post-handshake message");
        }
        kx_buf_free(&msg);
        if (rc) return rc;
    }
    return 0;
}

long ktlsx_ktls_read(ktlsx_conn *c, int fd, void *buf, size_t len)
{
    return ktlsx_ktls_recv(c, fd, buf, len, 0);
}

long ktlsx_ktls_recv(ktlsx_conn *c, int fd, void *buf, size_t len, int flags)
{
    if (c->failed) return -1;
    if (c->peer_closed) return 0;
    for (;;) {
        uint8_t type = KX_CT_APPLICATION_DATA;
        ssize_t n = kx_ktls_recv_record(fd, buf, len, &type, flags);
        if (n < 0) {
            if (errno == EBADMSG) return fail(c, KX_ALERT_BAD_RECORD_MAC, "kernel TLS: record failed authentication");
            if (errno == EMSGSIZE) return fail(c, KX_ALERT_RECORD_OVERFLOW, "kernel TLS: record too large");
            return -1; /* errno as the kernel set it (EAGAIN, ECONNRESET, ...) */
        }
        if (n == 0) return 0;
        switch (type) {
        case KX_CT_APPLICATION_DATA:
            return n;
        case KX_CT_ALERT: {
            const uint8_t *a = buf;
            if (n < 2) return fail(c, KX_ALERT_DECODE_ERROR, "malformed alert");
            if (a[1] == KX_ALERT_CLOSE_NOTIFY) {
                c->peer_closed = true;
                return 0;
            }
            if (a[1] == KX_ALERT_USER_CANCELED || (c->version == KTLSX_TLS12 && a[0] == 1)) continue; /* warnings */
            c->failed = true;
            c->alert = a[1];
            c->error = "received fatal alert from peer";
            return -1;
        }
        case KX_CT_HANDSHAKE:
            if (kx_failed(kx_write_bytes(&c->hs_in, buf, (size_t)n))) return fail(c, KX_ALERT_INTERNAL_ERROR, "out of memory");
            if (handle_messages(c, fd) != 0) return -1;
            continue;
        default:
            send_alert(c, fd, 2, KX_ALERT_UNEXPECTED_MESSAGE);
            return fail(c, KX_ALERT_UNEXPECTED_MESSAGE, "unexpected record type on kernel TLS socket");
        }
    }
}
