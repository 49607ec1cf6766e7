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
#include <sys/socket.h>
#include <string.h>


int ktlsx_ktls_active(const ktlsx_conn *c) { return c->ktls_active; }

int ktlsx_ktls_start(ktlsx_conn *c, int fd, int want, char *why, size_t whylen)
{
    if (!c->handshake_done || c->failed) {
        kx_say(why, whylen, "handshake not complete");
        return 0;
    }
    if (kx_out_pending(c)) {
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
        if (kx_out_pending(c)) { /* answering a KeyUpdate produced output: it must go first */
            kx_say(why, whylen, "pending output must be sent before switching to kernel TLS");
            return 0;
        }
    }
    /* issue 9: the peer's record_size_limit.  A record over it ends the
     * connection (RFC 8449 §4: record_overflow), so the kernel may carry TX
     * only if it can be told the limit (TLS_TX_MAX_PAYLOAD_LEN, Linux 6.19+).
     * That is asked before TLS_TX (which cannot be undone): on an older
     * kernel TX stays in user space, whose record layer obeys the limit. */
    int tx_limit = ktlsx_record_size_limit(c, KTLSX_TX);
    if ((want & KTLSX_KTLS_TX) && tx_limit < KX_MAX_PLAINTEXT) {
        char pwhy[160] = "";
        int ok = kx_ktls_tx_max_payload_supported(pwhy, sizeof pwhy);
        if (ok != 1) {
            kx_say(why, whylen, "peer's record_size_limit allows %d-byte records and %s: TX stays in user space",
                   tx_limit, pwhy);
            want &= ~KTLSX_KTLS_TX;
        }
    }
    if (!want) return 0;
    if (kx_ktls_enable_ulp(fd, why, whylen) != 0) return 0;
    struct ktlsx_traffic_keys tx, rx;
    int done = 0;
    if ((want & KTLSX_KTLS_TX) && ktlsx_export_keys(c, KTLSX_TX, &tx) == 0) {
        if (kx_ktls_install(fd, KTLSX_TX, &tx, why, whylen) == 0) done |= KTLSX_KTLS_TX;
        kx_wipe_obj(tx);
        if ((done & KTLSX_KTLS_TX) && tx_limit < KX_MAX_PLAINTEXT &&
            kx_ktls_set_tx_max_payload(fd, (uint16_t)tx_limit, why, whylen) != 0) {
            /* The probe said yes and this socket says no: TX is in the kernel
             * with 16 KiB records the peer refuses.  No way back: fail. */
            kx_record_clear(&c->tx);
            c->ktls_active = KTLSX_KTLS_TX;
            kx_conn_fail(c, KX_FAIL(KX_ALERT_INTERNAL_ERROR, "kernel TX cannot obey the peer's record_size_limit"));
            return -1;
        }
    }
    if ((want & KTLSX_KTLS_RX) && (done || !(want & KTLSX_KTLS_TX)) && ktlsx_export_keys(c, KTLSX_RX, &rx) == 0) {
        if (kx_ktls_install(fd, KTLSX_RX, &rx, why, whylen) == 0) done |= KTLSX_KTLS_RX;
        kx_wipe_obj(rx);
    }
    /* The user-space copies of what the kernel now owns are no longer needed. */
    if (done & KTLSX_KTLS_TX) kx_record_clear(&c->tx);
    if (done & KTLSX_KTLS_RX) kx_record_clear(&c->rx);
    c->ktls_active = done;
    /* What the handshake left behind (buffers it grew, keys it no longer uses) is
     * not needed by a connection whose records the kernel now carries. */
    if (done) kx_release_handshake_memory(c);
    return done;
}

/* ---- control records on a kernel-TLS socket ----
 *
 * The engine's post-handshake dispatcher (handshake/post_handshake.c) decides;
 * this part only moves bytes and keys between it and the kernel: records in
 * (recvmsg + TLS_GET_RECORD_TYPE), queued control records out (sendmsg +
 * TLS_SET_RECORD_TYPE, never blocking unless the caller asks), re-keys. */

static int fail(ktlsx_conn *c, uint8_t alert, const char *reason)
{
    kx_conn_fail(c, KX_FAIL(alert, reason));
    return -1;
}

/* Re-key one kernel direction from its next TLS 1.3 traffic secret (kernels >= 6.14). */
static int rekey(ktlsx_conn *c, int fd, int direction)
{
    bool tx = direction == KTLSX_TX;
    uint8_t *secret = (c->role == KTLSX_CLIENT) == tx ? c->ks.c_ap : c->ks.s_ap;
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
                    tx ? "our KeyUpdate went out but this kernel cannot re-key TLS 1.3 TX (needs Linux 6.14 or later)"
                       : "peer updated its keys but this kernel cannot re-key TLS 1.3 (needs Linux 6.14 or later)");
    return 0;
}

size_t ktlsx_ktls_pending(const ktlsx_conn *c) { return c->ctl_out.len; }

int ktlsx_ktls_flush(ktlsx_conn *c, int fd, int flags)
{
    /* The queue holds record bodies in plaintext for the kernel to seal: on a
     * socket whose TX is not in kernel TLS they would go out as they are. */
    if (c->ctl_out.len && !(c->ktls_active & KTLSX_KTLS_TX)) {
        kx_buf_reset(&c->ctl_out);
        return fail(c, KX_ALERT_INTERNAL_ERROR, "ktlsx_ktls_flush: TX is not in kernel TLS");
    }
    while (c->ctl_out.len >= 3) {
        const uint8_t *e = c->ctl_out.data;
        uint8_t type = e[0];
        size_t len = ((size_t)e[1] << 8) | e[2];
        if (type == KX_CTL_REKEY_TX) {
            kx_buf_consume(&c->ctl_out, 3);
            if (c->key_updates_queued) c->key_updates_queued--;
            /* A failed re-key leaves nothing sensible to send after it. */
            if (rekey(c, fd, KTLSX_TX) != 0) {
                kx_buf_reset(&c->ctl_out);
                return -1;
            }
            continue;
        }
        ssize_t n = kx_ktls_send_record(fd, type, e + 3 + c->ctl_out_sent, len - c->ctl_out_sent, flags);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
            return -1;
        }
        c->ctl_out_sent += (size_t)n;
        if (c->ctl_out_sent < len) {
            errno = EAGAIN;
            return 1;
        }
        c->ctl_out_sent = 0;
        kx_buf_consume(&c->ctl_out, 3 + len);
    }
    return 0;
}

int ktlsx_ktls_key_update(ktlsx_conn *c, int fd, int request_update)
{
    if (c->failed) return -1;
    if (c->version != KTLSX_TLS13) return fail(c, KX_ALERT_INTERNAL_ERROR, "KeyUpdate exists only in TLS 1.3");
    if (!(c->ktls_active & KTLSX_KTLS_TX)) return fail(c, KX_ALERT_INTERNAL_ERROR, "TX is not in kernel TLS");
    kx_result r = kx_key_update_write(c, request_update != 0);
    if (kx_failed(r)) return fail(c, r.alert, r.reason);
    if (ktlsx_ktls_flush(c, fd, 0) != 0) return c->failed ? -1 : fail(c, KX_ALERT_INTERNAL_ERROR, "sending KeyUpdate failed");
    return 0;
}

int ktlsx_ktls_close_notify(ktlsx_conn *c, int fd)
{
    if (!(c->ktls_active & KTLSX_KTLS_TX)) return fail(c, KX_ALERT_INTERNAL_ERROR, "TX is not in kernel TLS");
    if (ktlsx_close_notify(c) != 0 || ktlsx_ktls_flush(c, fd, 0) != 0)
        return fail(c, KX_ALERT_INTERNAL_ERROR, "sending close_notify failed");
    return 0;
}

int ktlsx_ktls_record(ktlsx_conn *c, int fd, uint8_t type, const void *data, size_t len)
{
    if (c->failed) return -1;
    /* RFC 8446 §6.1: whatever follows close_notify is ignored, as ktlsx_read does. */
    if (c->peer_closed) return -KTLSX_CLOSED;
    kx_result r = kx_receive_plaintext(c, type, data, len, false);
    if (!kx_failed(r) && type == KX_CT_APPLICATION_DATA) return 1;
    if (!kx_failed(r)) r = kx_handle_post_handshake(c);
    if (kx_failed(r)) {
        /* A fatal alert from the peer has already marked the connection; anything
         * else is ours to report, and its alert waits in ctl_out. */
        kx_conn_fail(c, r);
        return -1;
    }
    if (c->rekey_rx_due) {
        c->rekey_rx_due = false;
        if (rekey(c, fd, KTLSX_RX) != 0) return -1;
    }
    return c->peer_closed ? -KTLSX_CLOSED : 0;
}

long ktlsx_ktls_read(ktlsx_conn *c, int fd, void *buf, size_t len)
{
    return ktlsx_ktls_recv(c, fd, buf, len, 0);
}

long ktlsx_ktls_recv(ktlsx_conn *c, int fd, void *buf, size_t len, int flags)
{
    if (c->failed) {
        (void)ktlsx_ktls_flush(c, fd, flags | MSG_DONTWAIT); /* the alert, if it still waits */
        return -1;
    }
    if (c->peer_closed) return 0;
    for (;;) {
        /* Answers owed from earlier records go first (a blocked one stays queued). */
        if (ktlsx_ktls_flush(c, fd, flags) < 0) return c->failed ? -1 : fail(c, KX_ALERT_INTERNAL_ERROR, "sending a control record failed");
        uint8_t type = KX_CT_APPLICATION_DATA;
        ssize_t n = kx_ktls_recv_record(fd, buf, len, &type, flags);
        if (n < 0) {
            if (errno == EBADMSG) return fail(c, KX_ALERT_BAD_RECORD_MAC, "kernel TLS: record failed authentication");
            if (errno == EMSGSIZE) return fail(c, KX_ALERT_RECORD_OVERFLOW, "kernel TLS: record too large");
            return -1; /* errno as the kernel set it (EAGAIN, ECONNRESET, ...) */
        }
        if (n == 0) return 0;
        int rc = ktlsx_ktls_record(c, fd, type, buf, (size_t)n);
        if (rc == 1) return n;
        if (rc == -KTLSX_CLOSED) return 0;
        if (rc < 0) {
            int err = errno;
            (void)ktlsx_ktls_flush(c, fd, flags | MSG_DONTWAIT);
            errno = err;
            return -1;
        }
    }
}
