/* The connection: bytes in, records out, handshake messages to the flow,
 * application data to the caller.  No I/O happens here. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static bool is_ip_literal(const char *s)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

void kx_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

ktlsx_conn *ktlsx_conn_new(ktlsx_config *cfg, const char *server_name)
{
    if (!cfg) return NULL;
    ktlsx_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    kx_config_attach(cfg); /* a reference, and cfg is in use until ktlsx_conn_free */
    c->cfg = cfg;
    c->role = cfg->role;
    kx_transcript_init(&c->transcript);
    if (c->role == KTLSX_CLIENT && server_name) {
        kx_copy_str(c->server_name, sizeof c->server_name, server_name);
        /* RFC 6066 §3: literal IP addresses are not permitted in SNI. */
        if (!is_ip_literal(server_name)) kx_copy_str(c->sni, sizeof c->sni, server_name);
    }
    kx_flow_rebuild(c);
    return c;
}

int ktlsx_conn_set_sni(ktlsx_conn *c, const char *sni)
{
    if (!sni || strlen(sni) >= sizeof c->sni || is_ip_literal(sni)) return -1;
    kx_copy_str(c->sni, sizeof c->sni, sni);
    return 0;
}

/* conf-b: the name the certificate is verified against (RFC 6125 §6). */
int ktlsx_conn_set_verify_name(ktlsx_conn *c, const char *name)
{
    if (!c) return -1;
    const char *why = !name || !name[0]                       ? "the name is empty"
                      : strlen(name) >= sizeof c->server_name ? "the name is 256 bytes or longer"
                      : c->role != KTLSX_CLIENT               ? "a server connection verifies no server name"
                      : c->flow_pos != 0 || c->handshake_done ? "the handshake has started"
                                                              : NULL;
    if (why) {
        kx_log(c->cfg, KTLSX_LOG_WARNING, "ktlsx_conn_set_verify_name(\"%.64s\") refused: %s",
               name ? name : "(null)", why);
        return -1;
    }
    kx_copy_str(c->server_name, sizeof c->server_name, name);
    return 0;
}

void ktlsx_conn_free(ktlsx_conn *c)
{
    if (!c) return;
    kx_buf_free(&c->in);
    kx_buf_free(&c->out);
    kx_buf_free(&c->out_lent);
    kx_buf_free(&c->hs_in);
    kx_buf_free(&c->hs_out);
    kx_buf_free(&c->app_in);
    kx_buf_free(&c->ticket);
    kx_buf_free(&c->ctl_out);
    kx_buf_free(&c->kex_pub);
    kx_record_clear(&c->tx);
    kx_record_clear(&c->rx);
    EVP_PKEY_free(c->kex_key);
    EVP_PKEY_free(c->peer_key);
    kx_transcript_free(&c->transcript);
    kx_tls13_ks_wipe(&c->ks);
    kx_session_wipe(&c->session);
    kx_peer_chain_clear(c);
    kx_config_detach(c->cfg); /* may free the configuration: nothing below reads it */
    kx_wipe(c, sizeof *c);
    free(c);
}

/* ---- failure and alerts ---- */

kx_result kx_control_queue(ktlsx_conn *c, uint8_t type, const uint8_t *data, size_t len)
{
    KX_ENSURE(len <= 0xffff, KX_ALERT_INTERNAL_ERROR, "control record too large");
    KX_GUARD(kx_write_u8(&c->ctl_out, type));
    KX_GUARD(kx_write_u16(&c->ctl_out, (uint16_t)len));
    return kx_write_bytes(&c->ctl_out, data, len);
}

void kx_queue_alert(ktlsx_conn *c, uint8_t level, uint8_t desc)
{
    uint8_t alert[2] = { level, desc };
    /* With TX in the kernel a record built here would carry the wrong keys:
     * the alert waits for the kernel instead (ktlsx_ktls_flush). */
    kx_result r = (c->ktls_active & KTLSX_KTLS_TX)
                      ? kx_control_queue(c, KX_CT_ALERT, alert, sizeof alert)
                      : kx_record_write(&c->tx, KX_CT_ALERT, alert, sizeof alert, &c->out);
    (void)r; /* nothing more can be done if even the alert cannot be built */
}

void kx_conn_fail(ktlsx_conn *c, kx_result r)
{
    if (c->failed) return;
    c->failed = true;
    c->error = r.reason;
    c->alert = r.alert;
    /* A half-built flight must not go out ahead of the alert. */
    kx_buf_reset(&c->hs_out);
    kx_queue_alert(c, 2, r.alert);
}

/* The peer told us it failed: remember why, send nothing back. */
static kx_result peer_alert(ktlsx_conn *c, uint8_t desc)
{
    c->failed = true;
    c->alert = desc;
    c->error = "received fatal alert from peer";
    return KX_FAIL(desc, c->error);
}

/* ---- handshake message output ---- */

kx_result kx_hs_begin(ktlsx_conn *c, uint8_t type, size_t *mark)
{
    *mark = c->hs_out.len;
    KX_GUARD(kx_write_u8(&c->hs_out, type));
    size_t unused;
    return kx_vec_open(&c->hs_out, 3, &unused);
}

kx_result kx_hs_end(ktlsx_conn *c, size_t mark)
{
    KX_GUARD(kx_vec_close(&c->hs_out, 3, mark + 1));
    /* Post-handshake messages (tickets, key updates) are not part of the transcript. */
    if (!c->handshake_done)
        KX_GUARD(kx_transcript_add(&c->transcript, c->hs_out.data + mark, c->hs_out.len - mark));
    return KX_OK;
}

kx_result kx_hs_flush(ktlsx_conn *c)
{
    if (c->hs_out.len == 0) return KX_OK;
    KX_GUARD(kx_record_write(&c->tx, KX_CT_HANDSHAKE, c->hs_out.data, c->hs_out.len, &c->out));
    /* After the handshake only the odd KeyUpdate or ticket passes through here:
     * not worth keeping an allocation for the connection's lifetime. */
    if (c->handshake_done)
        kx_buf_free(&c->hs_out);
    else
        kx_buf_reset(&c->hs_out);
    return KX_OK;
}

kx_result kx_set_traffic_secret(ktlsx_conn *c, kx_record_dir *dir, const uint8_t *secret)
{
    if (dir == &c->rx)
        /* RFC 8446 §5.1: a key change must fall on a record boundary. */
        KX_ENSURE(c->hs_in.len == 0, KX_ALERT_UNEXPECTED_MESSAGE, "handshake message spans a key change");
    else
        KX_GUARD(kx_hs_flush(c)); /* what was written so far goes out under the old keys */
    uint8_t key[KX_MAX_KEY], iv[KX_AEAD_NONCE];
    kx_result r = kx_tls13_traffic_keys(c->suite->hash, secret, c->suite->key_len, key, iv);
    if (!kx_failed(r)) r = kx_record_set_keys(dir, KTLSX_TLS13, c->suite, key, iv);
    kx_wipe(key, sizeof key);
    kx_wipe(iv, sizeof iv);
    return r;
}

/* ---- input: records ---- */

/* Drop the first n unparsed bytes; the buffer is compacted lazily in ktlsx_input. */
static void consume_input(ktlsx_conn *c, size_t n)
{
    c->in_off += n;
    if (c->in_off >= c->in.len) {
        kx_buf_reset(&c->in);
        c->in_off = 0;
    }
}

size_t ktlsx_input_wanted(const ktlsx_conn *c)
{
    size_t off = c->in_off;
    while (c->in.len - off >= KX_RECORD_HEADER) {
        size_t body = ((size_t)c->in.data[off + 3] << 8) | c->in.data[off + 4];
        if (c->in.len - off < KX_RECORD_HEADER + body) return KX_RECORD_HEADER + body - (c->in.len - off);
        off += KX_RECORD_HEADER + body;
    }
    return KX_RECORD_HEADER - (c->in.len - off);
}

int ktlsx_input(ktlsx_conn *c, const uint8_t *data, size_t len)
{
    if (c->failed) return -1;
    if (len == 0) {
        c->eof = true;
        return 0;
    }
    if (c->in_off && c->in_off >= c->in.len / 2) {
        /* Compact once the consumed part dominates: amortised O(1) per byte. */
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    kx_result r = kx_write_bytes(&c->in, data, len);
    if (kx_failed(r)) {
        kx_conn_fail(c, r);
        return -1;
    }
    return 0;
}

size_t ktlsx_take_buffered(ktlsx_conn *c, void *buf, size_t len)
{
    size_t n = kx_in_left(c) < len ? kx_in_left(c) : len;
    if (n) memcpy(buf, c->in.data + c->in_off, n);
    consume_input(c, n);
    return n;
}

static kx_result handle_alert(ktlsx_conn *c, const uint8_t *p, size_t n)
{
    KX_ENSURE(n == 2, KX_ALERT_DECODE_ERROR, "malformed alert");
    if (p[1] == KX_ALERT_CLOSE_NOTIFY) {
        c->peer_closed = true;
        KX_ENSURE(c->handshake_done, KX_ALERT_UNEXPECTED_MESSAGE, "peer closed the connection during the handshake");
        return KX_OK;
    }
    /* user_canceled is followed by close_notify; in TLS 1.3 every other alert ends the
     * connection (RFC 8446 §6), while TLS 1.2 lets the receiver carry on after a warning
     * (RFC 5246 §7.2.2; e.g. no_renegotiation). */
    if (p[1] == KX_ALERT_USER_CANCELED) return KX_OK;
    /* Warnings outside TLS 1.3 (including before the version is known: a
     * TLS 1.2 server may warn unrecognized_name ahead of its ServerHello) are
     * carried on past, as OpenSSL and GnuTLS do, but only a few in a row so a
     * peer cannot keep us busy with them.  After a HelloRetryRequest the
     * version is TLS 1.3 even before the ServerHello says so. */
    if (p[0] == 1 && c->version != KTLSX_TLS13 && !c->hrr) {
        KX_ENSURE(++c->warning_alerts <= KX_MAX_WARNING_ALERTS, KX_ALERT_UNEXPECTED_MESSAGE,
                  "too many warning alerts in a row");
        return KX_OK;
    }
    return peer_alert(c, p[1]);
}

/* Drop one record of rejected early data, within the budget; past it the
 * record is what it looks like: `alert`. */
static kx_result skip_early_data(ktlsx_conn *c, size_t rec_len, size_t body_len, uint8_t alert, bool *got)
{
    KX_ENSURE(body_len <= c->early_data_skip, alert, "more rejected early data than we skip");
    c->early_data_skip -= body_len;
    consume_input(c, rec_len);
    *got = true;
    return KX_OK;
}

/* Whether hs_in ends inside a handshake message (complete messages not yet
 * handled do not count: the handshake can end with one queued). */
static bool hs_in_partial(const ktlsx_conn *c)
{
    size_t off = 0;
    while (off + 4 <= c->hs_in.len) {
        const uint8_t *h = c->hs_in.data + off;
        size_t body = ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
        if (c->hs_in.len - off - 4 < body) return true;
        off += 4 + body;
    }
    return off != c->hs_in.len;
}

/* Take one complete record from `in` if there is one; *got says whether. */
static kx_result read_record(ktlsx_conn *c, bool *got)
{
    *got = false;
    if (kx_in_left(c) < KX_RECORD_HEADER) return KX_OK;
    uint8_t *rec = c->in.data + c->in_off;
    uint8_t type;
    size_t body_len;
    KX_GUARD(kx_record_header(rec, &type, &body_len));
    size_t rec_len = KX_RECORD_HEADER + body_len;
    if (kx_in_left(c) < rec_len) return KX_OK;
    uint8_t *plain;
    size_t plain_len;
    bool protected_on_wire = type == KX_CT_APPLICATION_DATA;
    /* Rejected 0-RTT (RFC 8446 §4.2.10): after a HelloRetryRequest (no
     * receive key yet) every protected record before the second ClientHello
     * is early data, judged by its header alone; otherwise it is what fails
     * to open under the handshake key. */
    if (c->early_data_skip > 0 && protected_on_wire && !c->rx.active) {
        KX_ENSURE(body_len <= KX_MAX_PLAINTEXT + 256, KX_ALERT_RECORD_OVERFLOW, "TLS 1.3 record too long");
        return skip_early_data(c, rec_len, body_len, KX_ALERT_UNEXPECTED_MESSAGE, got);
    }
    kx_result rr = kx_record_read(&c->rx, rec, rec_len, &type, &plain, &plain_len);
    if (c->early_data_skip > 0 && protected_on_wire && kx_failed(rr) && rr.alert == KX_ALERT_BAD_RECORD_MAC)
        return skip_early_data(c, rec_len, body_len, KX_ALERT_BAD_RECORD_MAC, got);
    KX_GUARD(rr);
    /* The first protected record that opens under the handshake key ends the
     * early data (a plaintext compatibility CCS, sent between the hello and
     * the early data, does not). */
    if (c->rx.active && protected_on_wire) c->early_data_skip = 0;
    *got = true;
    kx_result r = kx_receive_plaintext(c, type, plain, plain_len, true);
    consume_input(c, rec_len);
    return r;
}

kx_result kx_receive_plaintext(ktlsx_conn *c, uint8_t type, const uint8_t *plain, size_t plain_len, bool keep_app_data)
{
    if (type != KX_CT_ALERT) c->warning_alerts = 0;
    /* A handshake message split over records has nothing in between (RFC
     * 8446 §5.1; TLS 1.2 checks its ChangeCipherSpec the same way).  A peer's
     * alert is still read: it says why the peer gave up. */
    if (type != KX_CT_HANDSHAKE && type != KX_CT_ALERT && hs_in_partial(c))
        return KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "record interleaved with a fragmented handshake message");
    switch (type) {
    case KX_CT_CHANGE_CIPHER_SPEC:
        if (c->handshake_done) return KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "unexpected change_cipher_spec");
        /* Length before contents (RFC 8446 §6.2): a wrong-sized record cannot be decoded. */
        KX_ENSURE(plain_len == 1, KX_ALERT_DECODE_ERROR, "change_cipher_spec of the wrong length");
        KX_ENSURE(plain[0] == 1, KX_ALERT_UNEXPECTED_MESSAGE, "bad change_cipher_spec value");
        if (c->version == KTLSX_TLS12) {
            /* TLS 1.2: only where the flow expects it, after every handshake message before it. */
            KX_ENSURE(c->expect_ccs && c->hs_in.len == 0, KX_ALERT_UNEXPECTED_MESSAGE, "unexpected change_cipher_spec");
            c->got_ccs = true;
        } else if (c->version != KTLSX_TLS13 && !c->hrr) {
            /* Before any hello has been answered the version is unknown and
             * no compatibility CCS can be due yet (RFC 8446 §5: it may come
             * only after the first ClientHello). */
            return KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "change_cipher_spec before the hello");
        }
        /* TLS 1.3: middlebox compatibility (RFC 8446 §5): ignored during the
         * handshake, but only one per flight — a stream of them would keep us
         * busy for nothing (the flag clears when we send our next message). */
        KX_ENSURE(!c->ccs13_seen, KX_ALERT_UNEXPECTED_MESSAGE, "more than one change_cipher_spec in a flight");
        c->ccs13_seen = true;
        return KX_OK;
    case KX_CT_ALERT:
        return handle_alert(c, plain, plain_len);
    case KX_CT_HANDSHAKE:
        KX_ENSURE(plain_len != 0, KX_ALERT_UNEXPECTED_MESSAGE, "empty handshake record");
        /* One message being assembled plus the rest of its last record: the
         * precise check is on the message header (next_message). */
        KX_ENSURE(c->hs_in.len + plain_len <= c->cfg->max_handshake_message + 4 + KX_MAX_PLAINTEXT,
                  KX_ALERT_ILLEGAL_PARAMETER, "handshake message larger than the configured maximum");
        return kx_write_bytes(&c->hs_in, plain, plain_len);
    case KX_CT_APPLICATION_DATA:
        /* No 0-RTT: application data before the handshake completes is a protocol error. */
        KX_ENSURE(c->handshake_done, KX_ALERT_UNEXPECTED_MESSAGE, "application data during the handshake");
        return keep_app_data ? kx_write_bytes(&c->app_in, plain, plain_len) : KX_OK;
    default:
        return KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "unknown record type");
    }
}

/* The next complete handshake message.  *got = false: more input needed.
 * The message stays in hs_in (msg points there) until kx_take_message. */
static kx_result next_message(ktlsx_conn *c, uint8_t *type, const uint8_t **msg, size_t *len, bool *got)
{
    for (;;) {
        if (c->hs_in.len >= 4) {
            size_t body = ((size_t)c->hs_in.data[1] << 16) | ((size_t)c->hs_in.data[2] << 8) | c->hs_in.data[3];
            /* As soon as the header says it (the rest may still be on its
             * way); illegal_parameter as OpenSSL (excessive message size). */
            KX_ENSURE(body <= c->cfg->max_handshake_message, KX_ALERT_ILLEGAL_PARAMETER,
                      "handshake message larger than the configured maximum");
            if (c->hs_in.len >= 4 + body) {
                *type = c->hs_in.data[0];
                *msg = c->hs_in.data;
                *len = 4 + body;
                *got = true;
                return KX_OK;
            }
        }
        if (c->peer_closed) {
            *got = false;
            return KX_OK;
        }
        KX_GUARD(read_record(c, got));
        if (!*got) return KX_OK;
        if (c->peer_closed || c->app_in.len || c->got_ccs) {
            *got = false;
            return KX_OK;
        }
    }
}

/* Drop the message just handled from hs_in.  Done before the handler runs so
 * that a key change inside the handler sees whether the record had more. */
void kx_take_message(ktlsx_conn *c, size_t len, kx_buf *scratch)
{
    kx_buf_reset(scratch);
    kx_result r = kx_write_bytes(scratch, c->hs_in.data, len);
    (void)r; /* reserve cannot fail below: scratch was sized by the caller */
    kx_buf_consume(&c->hs_in, len);
}

/* ---- the handshake ---- */

typedef struct {
    const char *name;
    uint8_t hs_type;
    enum ktlsx_role sender;
    bool hash_before;     /* handler needs the transcript hash before this message (c->th) */
    bool handler_hashes;  /* handler adds the message to the transcript itself (ServerHello/HRR) */
    kx_result (*write)(ktlsx_conn *c);
    kx_result (*handle)(ktlsx_conn *c, kx_reader *body);
} kx_msg_info;

static const kx_msg_info msgs[KX_MSG_COUNT] = {
    [KX_MSG_CLIENT_HELLO] = { "ClientHello", KX_HS_CLIENT_HELLO, KTLSX_CLIENT, false, true,
                              kx_client_hello_write, kx_client_hello_handle },
    [KX_MSG_HELLO_RETRY_REQUEST] = { "HelloRetryRequest", KX_HS_SERVER_HELLO, KTLSX_SERVER, false, true,
                                     kx_hello_retry_request_write, kx_server_hello_handle },
    [KX_MSG_SERVER_HELLO] = { "ServerHello", KX_HS_SERVER_HELLO, KTLSX_SERVER, false, true,
                              kx_server_hello_write, kx_server_hello_handle },
    [KX_MSG_ENCRYPTED_EXTENSIONS] = { "EncryptedExtensions", KX_HS_ENCRYPTED_EXTENSIONS, KTLSX_SERVER, false, false,
                                      kx_encrypted_extensions_write, kx_encrypted_extensions_handle },
    [KX_MSG_CERTIFICATE_REQUEST] = { "CertificateRequest", KX_HS_CERTIFICATE_REQUEST, KTLSX_SERVER, false, false,
                                     kx_certificate_request_write, kx_certificate_request_handle },
    [KX_MSG_SERVER_CERTIFICATE] = { "Certificate", KX_HS_CERTIFICATE, KTLSX_SERVER, false, false,
                                    kx_certificate_write, kx_certificate_handle },
    [KX_MSG_SERVER_CERTIFICATE_VERIFY] = { "CertificateVerify", KX_HS_CERTIFICATE_VERIFY, KTLSX_SERVER, true, false,
                                           kx_certificate_verify_write, kx_certificate_verify_handle },
    [KX_MSG_SERVER_FINISHED] = { "Finished", KX_HS_FINISHED, KTLSX_SERVER, true, false,
                                 kx_finished_write, kx_finished_handle },
    [KX_MSG_CLIENT_CERTIFICATE] = { "Certificate", KX_HS_CERTIFICATE, KTLSX_CLIENT, false, false,
                                    kx_certificate_write, kx_certificate_handle },
    [KX_MSG_CLIENT_CERTIFICATE_VERIFY] = { "CertificateVerify", KX_HS_CERTIFICATE_VERIFY, KTLSX_CLIENT, true, false,
                                           kx_certificate_verify_write, kx_certificate_verify_handle },
    [KX_MSG_CLIENT_FINISHED] = { "Finished", KX_HS_FINISHED, KTLSX_CLIENT, true, false,
                                 kx_finished_write, kx_finished_handle },
    [KX_MSG_SERVER_KEY_EXCHANGE] = { "ServerKeyExchange", KX_HS_SERVER_KEY_EXCHANGE, KTLSX_SERVER, false, false,
                                     kx_server_key_exchange_write, kx_server_key_exchange_handle },
    [KX_MSG_SERVER_HELLO_DONE] = { "ServerHelloDone", KX_HS_SERVER_HELLO_DONE, KTLSX_SERVER, false, false,
                                   kx_server_hello_done_write, kx_server_hello_done_handle },
    [KX_MSG_CLIENT_KEY_EXCHANGE] = { "ClientKeyExchange", KX_HS_CLIENT_KEY_EXCHANGE, KTLSX_CLIENT, false, false,
                                     kx_client_key_exchange_write, kx_client_key_exchange_handle },
    [KX_MSG_CLIENT_CHANGE_CIPHER_SPEC] = { "ChangeCipherSpec", 0, KTLSX_CLIENT, false, false,
                                           kx_change_cipher_spec_write, kx_change_cipher_spec_handle },
    [KX_MSG_SERVER_CHANGE_CIPHER_SPEC] = { "ChangeCipherSpec", 0, KTLSX_SERVER, false, false,
                                           kx_change_cipher_spec_write, kx_change_cipher_spec_handle },
    [KX_MSG_NEW_SESSION_TICKET] = { "NewSessionTicket", KX_HS_NEW_SESSION_TICKET, KTLSX_SERVER, false, false,
                                    kx_new_session_ticket12_write, kx_new_session_ticket12_handle },
};

/* TLS 1.2: the peer's ChangeCipherSpec is a record of its own type, due at a
 * fixed point of the flow.  *got says whether it has arrived. */
static kx_result receive_change_cipher_spec(ktlsx_conn *c, bool *got)
{
    KX_ENSURE(c->hs_in.len == 0, KX_ALERT_UNEXPECTED_MESSAGE, "handshake message where ChangeCipherSpec was due");
    c->expect_ccs = true;
    kx_result r = KX_OK;
    while (!c->got_ccs && !kx_failed(r)) {
        bool rec;
        r = read_record(c, &rec);
        if (!rec) break;
        /* A tolerated warning alert may come first; a handshake record may not. */
        if (!kx_failed(r) && !c->got_ccs && c->hs_in.len != 0)
            r = KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "handshake message where ChangeCipherSpec was due");
    }
    *got = c->got_ccs;
    c->expect_ccs = c->got_ccs = false;
    return r;
}

static kx_result drive(ktlsx_conn *c)
{
    kx_buf msg = { 0 };
    kx_result r = KX_OK;
    for (;;) {
        kx_msg m = c->flow[c->flow_pos];
        if (m == KX_MSG_END) {
            r = kx_handshake_complete(c);
            break;
        }
        const kx_msg_info *mi = &msgs[m];
        if (mi->sender == c->role) {
            r = mi->write(c);
            if (kx_failed(r)) break;
            c->ccs13_seen = false; /* the peer's next flight may carry its own compatibility CCS */
            c->flow_pos++;
            continue;
        }
        /* Our flight must be on its way before we wait for the peer's. */
        r = kx_hs_flush(c);
        if (kx_failed(r)) break;
        bool got;
        if (mi->hs_type == 0) {
            r = receive_change_cipher_spec(c, &got);
            if (!kx_failed(r) && got) r = mi->handle(c, NULL);
            if (kx_failed(r)) break;
            if (!got) {
                if (c->peer_closed || c->eof)
                    r = KX_FAIL(KX_ALERT_HANDSHAKE_FAILURE, "peer closed the connection during the handshake");
                break;
            }
            c->flow_pos++;
            continue;
        }
        uint8_t type;
        const uint8_t *raw;
        size_t len;
        r = next_message(c, &type, &raw, &len, &got);
        if (kx_failed(r)) break;
        if (!got) {
            if (c->peer_closed || c->eof)
                r = KX_FAIL(KX_ALERT_HANDSHAKE_FAILURE, "peer closed the connection during the handshake");
            break;
        }
        if (type != mi->hs_type) {
            /* Optional messages: a CertificateRequest where the server's Certificate was due. */
            if (!kx_flow_accept_optional(c, type)) {
                r = KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "unexpected handshake message");
                break;
            }
            m = c->flow[c->flow_pos];
            mi = &msgs[m];
            /* The rebuilt flow must now expect exactly this message. */
            if (type != mi->hs_type) {
                r = KX_FAIL(KX_ALERT_UNEXPECTED_MESSAGE, "unexpected handshake message");
                break;
            }
        }
        r = kx_buf_reserve(&msg, len);
        if (kx_failed(r)) break;
        kx_take_message(c, len, &msg);
        if (mi->hash_before) {
            r = kx_transcript_hash(&c->transcript, c->th);
            if (kx_failed(r)) break;
        }
        if (!mi->handler_hashes) {
            r = kx_transcript_add(&c->transcript, msg.data, msg.len);
            if (kx_failed(r)) break;
        }
        c->msg_raw = msg.data;
        c->msg_raw_len = msg.len;
        kx_reader body = kx_reader_of(msg.data + 4, msg.len - 4);
        r = mi->handle(c, &body);
        c->msg_raw = NULL;
        if (kx_failed(r)) break;
        r = kx_reader_done(&body);
        if (kx_failed(r)) break;
        c->flow_pos++;
    }
    kx_buf_free(&msg);
    return r;
}

int ktlsx_handshake(ktlsx_conn *c)
{
    if (c->failed) return KTLSX_FAILED;
    if (c->handshake_done) return KTLSX_DONE;
    kx_result r = drive(c);
    if (kx_failed(r)) {
        kx_conn_fail(c, r);
        kx_store_remove(c); /* a resumed session that failed is not offered again (session store) */
        return KTLSX_FAILED;
    }
    return c->handshake_done ? KTLSX_DONE : KTLSX_WANT_READ;
}

const char *kx_msg_name(kx_msg m) { return m < KX_MSG_END ? msgs[m].name : "end"; }

/* ---- output ---- */

size_t ktlsx_pending_output(ktlsx_conn *c, const uint8_t **data)
{
    if (c->out_lent.len == 0 && c->out.len > 0) {
        /* Lend the queued records as they are; whatever is queued while they
         * are out (an alert, a KeyUpdate answer, more data) goes into the
         * other buffer, so the lent bytes neither move nor change. */
        kx_buf spare = c->out_lent;
        c->out_lent = c->out;
        c->out = spare;
    }
    *data = c->out_lent.data;
    return c->out_lent.len;
}

void ktlsx_output_done(ktlsx_conn *c, size_t n)
{
    kx_buf_consume(&c->out_lent, n < c->out_lent.len ? n : c->out_lent.len);
}

/* ---- application data (user-space record layer) ---- */

int ktlsx_write(ktlsx_conn *c, const void *data, size_t len)
{
    /* With TX in the kernel a record sealed here would carry stale keys: the
     * caller writes plaintext to the socket instead. */
    if (c->failed || !c->handshake_done || (c->ktls_active & KTLSX_KTLS_TX)) return -1;
    if (len == 0) return 0;
    kx_result r = kx_record_write(&c->tx, KX_CT_APPLICATION_DATA, data, len, &c->out);
    if (kx_failed(r)) {
        kx_conn_fail(c, r);
        return -1;
    }
    return 0;
}

long ktlsx_read(ktlsx_conn *c, void *buf, size_t len)
{
    if (c->failed) return -KTLSX_FAILED;
    if (!c->handshake_done) return 0;
    for (;;) {
        size_t avail = c->app_in.len - c->app_in_off;
        if (avail > 0) {
            size_t n = avail < len ? avail : len;
            memcpy(buf, c->app_in.data + c->app_in_off, n);
            c->app_in_off += n;
            if (c->app_in_off == c->app_in.len) {
                kx_wipe(c->app_in.data, c->app_in.len);
                kx_buf_reset(&c->app_in);
                c->app_in_off = 0;
            }
            return (long)n;
        }
        if (c->peer_closed) return -KTLSX_CLOSED;
        bool got;
        kx_result r = read_record(c, &got);
        if (!kx_failed(r)) r = kx_handle_post_handshake(c);
        if (kx_failed(r)) {
            if (!c->failed) kx_conn_fail(c, r);
            return -KTLSX_FAILED;
        }
        if (!got) return c->eof ? -KTLSX_CLOSED : 0;
    }
}

kx_result kx_drain_records(ktlsx_conn *c)
{
    bool got = true;
    while (got && !c->peer_closed) {
        KX_GUARD(read_record(c, &got));
        KX_GUARD(kx_handle_post_handshake(c));
    }
    return KX_OK;
}

size_t ktlsx_pending_plaintext(const ktlsx_conn *c) { return c->app_in.len - c->app_in_off; }

int ktlsx_close_notify(ktlsx_conn *c)
{
    if (c->failed) return -1;
    kx_queue_alert(c, 1, KX_ALERT_CLOSE_NOTIFY);
    return 0;
}

int ktlsx_key_update(ktlsx_conn *c, int request_update)
{
    if (c->failed || !c->handshake_done || c->version != KTLSX_TLS13) return -1;
    kx_result r = kx_key_update_write(c, request_update != 0);
    if (kx_failed(r)) {
        kx_conn_fail(c, r);
        return -1;
    }
    return 0;
}

/* ---- results ---- */

uint16_t ktlsx_version(const ktlsx_conn *c) { return c->version; }
const char *ktlsx_version_name(const ktlsx_conn *c)
{
    return c->version == KTLSX_TLS13 ? "TLSv1.3" : c->version == KTLSX_TLS12 ? "TLSv1.2" : "-";
}
const char *ktlsx_cipher_name(const ktlsx_conn *c) { return c->suite ? c->suite->name : "-"; }
uint16_t ktlsx_cipher_id(const ktlsx_conn *c) { return c->suite ? c->suite->id : 0; }
const char *ktlsx_group_name(const ktlsx_conn *c)
{
    const char *n = c->group ? kx_group_name(c->group) : NULL;
    return n ? n : "-";
}
int ktlsx_resumed(const ktlsx_conn *c) { return c->resumed; }
const char *ktlsx_alpn(const ktlsx_conn *c) { return c->alpn[0] ? c->alpn : NULL; }
const char *ktlsx_peer_subject(const ktlsx_conn *c) { return c->peer_subject; }
const char *ktlsx_sni(const ktlsx_conn *c) { return c->role == KTLSX_SERVER ? c->server_name : c->sni; }
const char *ktlsx_error(const ktlsx_conn *c) { return c->error ? c->error : ""; }
uint8_t ktlsx_alert(const ktlsx_conn *c) { return c->alert; }

int ktlsx_export_keys(const ktlsx_conn *c, enum ktlsx_direction dir, struct ktlsx_traffic_keys *out)
{
    const kx_record_dir *d = dir == KTLSX_TX ? &c->tx : &c->rx;
    if (!c->handshake_done || c->failed || !d->active) return -1;
    memset(out, 0, sizeof *out);
    out->version = d->version;
    out->cipher_suite = d->suite->id;
    out->key_len = d->suite->key_len;
    memcpy(out->key, d->key, out->key_len);
    out->iv_len = d->suite->fixed_iv_len;
    memcpy(out->iv, d->iv, out->iv_len);
    out->seq = d->seq;
    return 0;
}

/* ---- key log and trace ---- */

void kx_keylog(ktlsx_conn *c, const char *label, const uint8_t *secret, size_t len)
{
    FILE *f = c->cfg->keylog;
    if (!f) return;
    char line[64 + 2 * 32 + 2 * KX_MAX_HASH + 4];
    size_t n = (size_t)snprintf(line, sizeof line, "%s ", label);
    for (size_t i = 0; i < 32; i++) n += (size_t)snprintf(line + n, sizeof line - n, "%02x", c->client_random[i]);
    line[n++] = ' ';
    for (size_t i = 0; i < len; i++) n += (size_t)snprintf(line + n, sizeof line - n, "%02x", secret[i]);
    line[n++] = '\n';
    pthread_mutex_lock(&c->cfg->keylog_lock);
    fwrite(line, 1, n, f);
    fflush(f);
    pthread_mutex_unlock(&c->cfg->keylog_lock);
    kx_wipe(line, sizeof line);
}

void kx_trace(ktlsx_conn *c, bool from_client, const char *fmt, ...)
{
    FILE *f = c->cfg->trace;
    if (!f) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(f, "%s %s\n", from_client ? "C->S" : "S->C", line);
}

bool kx_list_has(const uint16_t *list, size_t n, uint16_t v)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == v) return true;
    return false;
}

uint16_t kx_choose_sigalg(const ktlsx_conn *c, EVP_PKEY *key)
{
    /* The peer's preference order decides (RFC 8446 §4.2.3), among those we also accept. */
    bool tls13 = c->version == KTLSX_TLS13;
    for (size_t i = 0; i < c->peer_sigalg_count; i++) {
        uint16_t s = c->peer_sigalgs[i];
        if (kx_list_has(c->cfg->sigalgs, c->cfg->sigalg_count, s) && kx_sigalg_fits_key(s, key, tls13)) return s;
    }
    return 0;
}

/* ---- sessions ---- */

int ktlsx_set_session(ktlsx_conn *c, const uint8_t *data, size_t len)
{
    if (c->role != KTLSX_CLIENT || c->flow_pos != 0) return -1;
    if (kx_failed(kx_session_decode(data, len, &c->session))) {
        kx_session_wipe(&c->session);
        return -1;
    }
    c->have_session = true;
    return 0;
}

long ktlsx_get_session(const ktlsx_conn *c, uint8_t *buf, size_t cap)
{
    const kx_session *s = &c->session;
    if (!c->handshake_done || c->failed || s->secret_len == 0) return -1;
    if (s->version == KTLSX_TLS13 ? s->ticket_len == 0 : (s->ticket_len == 0 && s->session_id_len == 0)) return -1;
    kx_buf b = { 0 };
    long n = -1;
    if (!kx_failed(kx_session_encode(s, &b)) && b.len <= cap) {
        memcpy(buf, b.data, b.len);
        n = (long)b.len;
    }
    kx_buf_free(&b);
    return n;
}
