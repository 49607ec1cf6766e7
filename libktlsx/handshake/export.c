/* Handing a finished connection to another process (ktlsxd runs the
 * handshake, the application carries on): the post-handshake state as a
 * versioned blob, and a connection rebuilt from one.
 *
 * The importer fills exactly the fields the handshake leaves behind
 * (finished.c, complete.c, the key schedules): negotiated parameters, the
 * TLS 1.3 application traffic and resumption secrets (KeyUpdate and
 * NewSessionTicket need them, on the user-space and the kernel path alike),
 * the user-space record keys with their sequence numbers, which directions
 * the kernel owns, and the session a client can resume from.  Nothing of the
 * handshake itself (transcript, ephemeral keys, certificates, the private
 * key) crosses over: the importer may be a process that never had the key.
 *
 * Layout (big endian; vecN = N-byte length then bytes), format 1:
 *   "KXEX" format(1) role(1) version(2) suite(2) group(2) flags(1) ktls(1)
 *   tx_seq(8) rx_seq(8)
 *   TLS 1.3: c_ap vec1, s_ap vec1, resumption vec1      (each exactly Hash.length)
 *   TLS 1.2: tx_key vec1, tx_iv vec1, rx_key vec1, rx_iv vec1  (suite lengths for a
 *            direction in user space, empty for one in the kernel),
 *            master vec1 (48), session_id vec1 (0..32)
 *   session vec2 (empty, or kx_session_encode: what ktlsx_get_session hands out)
 *   alpn vec1, server_name vec1, sni vec1, peer_subject vec1  (no NUL bytes)
 *   format 2 (issue 9): record_size_limit peer(2) ours(2): the RFC 8449 values
 *     on the wire, both 0 when not negotiated, else both >= 64
 * Nothing may follow.  A different libktlsx build with another layout has
 * another format byte and is refused, so ktlsxd and an application never
 * misread each other; kx_session_encode's own format is part of this one. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

#define EXPORT_MAGIC "KXEX"
#define EXPORT_MAGIC_LEN 4
#define EXPORT_FORMAT 2 /* 2: record_size_limit (issue 9) */

#define FLAG_RESUMED 0x01
#define FLAG_EMS 0x02
#define FLAG_NEW_SESSION 0x04
#define FLAG_KNOWN (FLAG_RESUMED | FLAG_EMS | FLAG_NEW_SESSION)

/* Every import failure is a refused blob, never a TLS alert to anyone. */
#define BAD(reason) KX_FAIL(KX_ALERT_DECODE_ERROR, reason)

/* ---- export ---- */

/* What stops a connection from being handed over; NULL if nothing does. */
static const char *not_exportable(const ktlsx_conn *c)
{
    if (c->failed) return "connection has failed";
    if (!c->handshake_done) return "handshake not complete";
    if (c->peer_closed || c->eof) return "peer already closed the connection";
    if (kx_out_pending(c) || c->hs_out.len || c->ctl_out.len || c->rekey_rx_due) return "pending output must be sent before export";
    /* Bytes or messages the engine holds would be lost: the importer only sees the socket. */
    if (kx_in_left(c) || c->hs_in.len) return "unread input is buffered in the engine";
    if (c->app_in.len - c->app_in_off) return "decrypted data not yet read (ktlsx_read it first)";
    if (!c->suite || (c->version != KTLSX_TLS12 && c->version != KTLSX_TLS13)) return "no negotiated suite";
    return NULL;
}

static kx_result write_str(kx_buf *o, const char *s) { return kx_write_vec(o, 1, s, strlen(s)); }

/* One TLS 1.2 direction: its record key and IV, or nothing when the kernel owns it. */
static kx_result write_dir12(kx_buf *o, const kx_record_dir *d, bool in_kernel)
{
    bool user = !in_kernel && d->active;
    KX_ENSURE(in_kernel || d->active, KX_ALERT_INTERNAL_ERROR, "record keys missing");
    KX_GUARD(kx_write_vec(o, 1, d->key, user ? d->suite->key_len : 0));
    return kx_write_vec(o, 1, d->iv, user ? d->suite->fixed_iv_len : 0);
}

static kx_result encode(const ktlsx_conn *c, kx_buf *o)
{
    int ktls = c->ktls_active & (KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    uint8_t flags = (uint8_t)((c->resumed ? FLAG_RESUMED : 0) | (c->ems && c->version == KTLSX_TLS12 ? FLAG_EMS : 0) |
                              (c->new_session ? FLAG_NEW_SESSION : 0));
    KX_GUARD(kx_write_bytes(o, EXPORT_MAGIC, EXPORT_MAGIC_LEN));
    KX_GUARD(kx_write_u8(o, EXPORT_FORMAT));
    KX_GUARD(kx_write_u8(o, (uint8_t)c->role));
    KX_GUARD(kx_write_u16(o, c->version));
    KX_GUARD(kx_write_u16(o, c->suite->id));
    KX_GUARD(kx_write_u16(o, c->group));
    KX_GUARD(kx_write_u8(o, flags));
    KX_GUARD(kx_write_u8(o, (uint8_t)ktls));
    /* The kernel counts the sequence of a direction it owns; ours is 0 there. */
    KX_GUARD(kx_write_u64(o, (ktls & KTLSX_KTLS_TX) ? 0 : c->tx.seq));
    KX_GUARD(kx_write_u64(o, (ktls & KTLSX_KTLS_RX) ? 0 : c->rx.seq));
    if (c->version == KTLSX_TLS13) {
        size_t hlen = kx_hash_len(c->suite->hash);
        KX_GUARD(kx_write_vec(o, 1, c->ks.c_ap, hlen));
        KX_GUARD(kx_write_vec(o, 1, c->ks.s_ap, hlen));
        KX_GUARD(kx_write_vec(o, 1, c->ks.resumption, hlen));
    } else {
        KX_GUARD(write_dir12(o, &c->tx, ktls & KTLSX_KTLS_TX));
        KX_GUARD(write_dir12(o, &c->rx, ktls & KTLSX_KTLS_RX));
        KX_GUARD(kx_write_vec(o, 1, c->master, KX_TLS12_MASTER));
        KX_GUARD(kx_write_vec(o, 1, c->session_id, c->session_id_len));
    }
    size_t mark;
    KX_GUARD(kx_vec_open(o, 2, &mark));
    if (c->session.secret_len) KX_GUARD(kx_session_encode(&c->session, o));
    KX_GUARD(kx_vec_close(o, 2, mark));
    KX_GUARD(write_str(o, c->alpn));
    KX_GUARD(write_str(o, c->server_name));
    KX_GUARD(write_str(o, c->sni));
    KX_GUARD(write_str(o, c->peer_subject));
    KX_GUARD(kx_write_u16(o, c->rsl_negotiated ? c->rsl_peer : 0));
    return kx_write_u16(o, c->rsl_negotiated ? c->rsl_ours : 0);
}

long ktlsx_conn_export(const ktlsx_conn *c, uint8_t *buf, size_t cap, const char **why)
{
    const char *unused;
    if (!why) why = &unused;
    *why = NULL;
    if (!c || !buf) {
        *why = !c ? "connection is NULL" : "output buffer is NULL";
        return -1;
    }
    *why = not_exportable(c);
    if (*why) return -1;
    kx_buf b = { 0 };
    long n = -1;
    kx_result r = encode(c, &b);
    if (kx_failed(r)) *why = r.reason;
    else if (b.len > cap) *why = "output buffer too small (KTLSX_EXPORT_MAX bytes always suffice)";
    else {
        memcpy(buf, b.data, b.len);
        n = (long)b.len;
    }
    kx_buf_free(&b); /* wipes the only other copy of the secrets */
    return n;
}

/* ---- import ---- */

/* A display string: at most cap - 1 bytes and no NUL inside, so the getters
 * answer exactly what the original did. */
static kx_result read_str(kx_reader *r, char *dst, size_t cap)
{
    kx_reader v;
    KX_GUARD(kx_read_vec(r, 1, 0, cap - 1, &v));
    KX_ENSURE(memchr(v.data, 0, v.len) == NULL, KX_ALERT_DECODE_ERROR, "export blob: NUL byte inside a name");
    memcpy(dst, v.data, v.len);
    dst[v.len] = 0;
    return KX_OK;
}

/* A secret of exactly `len` bytes, copied straight from the blob into its home. */
static kx_result read_exact(kx_reader *r, uint8_t *dst, size_t len, const char *reason)
{
    kx_reader v;
    KX_GUARD(kx_read_vec(r, 1, 0, 255, &v));
    KX_ENSURE(v.len == len, KX_ALERT_DECODE_ERROR, reason);
    memcpy(dst, v.data, len);
    return KX_OK;
}

/* One TLS 1.2 direction: keys of the suite's lengths in user space, none in the kernel. */
static kx_result read_dir12(ktlsx_conn *c, kx_reader *r, kx_record_dir *d, bool in_kernel, uint64_t seq)
{
    kx_reader key, iv;
    KX_GUARD(kx_read_vec(r, 1, 0, KX_MAX_KEY, &key));
    KX_GUARD(kx_read_vec(r, 1, 0, KX_AEAD_NONCE, &iv));
    if (in_kernel) {
        KX_ENSURE(key.len == 0 && iv.len == 0, KX_ALERT_DECODE_ERROR,
                  "export blob: record keys for a direction the kernel owns");
        return KX_OK;
    }
    KX_ENSURE(key.len == c->suite->key_len && iv.len == c->suite->fixed_iv_len, KX_ALERT_DECODE_ERROR,
              "export blob: record key or IV length does not fit the cipher suite");
    KX_GUARD(kx_record_set_keys(d, KTLSX_TLS12, c->suite, key.data, iv.data));
    d->seq = seq;
    return KX_OK;
}

/* The session a client can resume from, checked as strictly as the rest:
 * a stored session is later offered to a server as is. */
static kx_result read_session(ktlsx_conn *c, kx_reader *r)
{
    kx_reader v;
    KX_GUARD(kx_read_vec(r, 2, 0, 65535, &v));
    if (v.len == 0) return KX_OK;
    KX_GUARD(kx_session_decode(v.data, v.len, &c->session));
    const kx_session *s = &c->session;
    const kx_suite *suite = kx_suite_by_id(s->suite);
    KX_ENSURE(suite && suite->version == s->version, KX_ALERT_DECODE_ERROR,
              "export blob: session suite does not belong to its version");
    size_t want = s->version == KTLSX_TLS13 ? kx_hash_len(suite->hash) : KX_TLS12_MASTER;
    KX_ENSURE(s->secret_len == want, KX_ALERT_DECODE_ERROR, "export blob: session secret length does not fit its suite");
    return KX_OK;
}

static kx_result decode(ktlsx_conn *c, kx_reader *r)
{
    const uint8_t *magic;
    uint8_t format, role, flags, ktls;
    uint16_t suite_id;
    uint64_t tx_seq, rx_seq;
    KX_ENSURE(kx_reader_left(r) >= EXPORT_MAGIC_LEN + 1, KX_ALERT_DECODE_ERROR, "export blob: truncated");
    KX_GUARD(kx_read_bytes(r, EXPORT_MAGIC_LEN, &magic));
    KX_ENSURE(memcmp(magic, EXPORT_MAGIC, EXPORT_MAGIC_LEN) == 0, KX_ALERT_DECODE_ERROR,
              "not a ktlsx connection export (bad magic)");
    KX_GUARD(kx_read_u8(r, &format));
    KX_ENSURE(format == EXPORT_FORMAT, KX_ALERT_DECODE_ERROR,
              "export blob format version not supported by this libktlsx (different build)");
    KX_GUARD(kx_read_u8(r, &role));
    KX_ENSURE(role == KTLSX_CLIENT || role == KTLSX_SERVER, KX_ALERT_DECODE_ERROR, "export blob: bad role");
    KX_ENSURE(role == c->role, KX_ALERT_DECODE_ERROR, "export blob role does not match the configuration's role");
    KX_GUARD(kx_read_u16(r, &c->version));
    KX_ENSURE(c->version == KTLSX_TLS12 || c->version == KTLSX_TLS13, KX_ALERT_DECODE_ERROR,
              "export blob: protocol version is neither TLS 1.2 nor TLS 1.3");
    KX_GUARD(kx_read_u16(r, &suite_id));
    c->suite = kx_suite_by_id(suite_id);
    KX_ENSURE(c->suite != NULL, KX_ALERT_DECODE_ERROR, "export blob: unknown cipher suite");
    KX_ENSURE(c->suite->version == c->version, KX_ALERT_DECODE_ERROR,
              "export blob: cipher suite does not belong to the protocol version");
    KX_GUARD(kx_read_u16(r, &c->group));
    KX_ENSURE(c->group == 0 || kx_group_name(c->group) != NULL, KX_ALERT_DECODE_ERROR, "export blob: unknown group");
    KX_GUARD(kx_read_u8(r, &flags));
    KX_ENSURE((flags & ~FLAG_KNOWN) == 0, KX_ALERT_DECODE_ERROR, "export blob: unknown flags");
    KX_ENSURE(!(flags & FLAG_EMS) || c->version == KTLSX_TLS12, KX_ALERT_DECODE_ERROR,
              "export blob: extended master secret flag on a TLS 1.3 connection");
    c->resumed = flags & FLAG_RESUMED;
    c->ems = flags & FLAG_EMS;
    c->new_session = flags & FLAG_NEW_SESSION;
    KX_GUARD(kx_read_u8(r, &ktls));
    KX_ENSURE((ktls & ~(KTLSX_KTLS_TX | KTLSX_KTLS_RX)) == 0, KX_ALERT_DECODE_ERROR,
              "export blob: unknown kernel TLS direction bits");
    c->ktls_active = ktls;
    KX_GUARD(kx_read_u64(r, &tx_seq));
    KX_GUARD(kx_read_u64(r, &rx_seq));

    if (c->version == KTLSX_TLS13) {
        c->ks.hash = c->suite->hash;
        c->ks.hlen = kx_hash_len(c->suite->hash);
        KX_GUARD(read_exact(r, c->ks.c_ap, c->ks.hlen, "export blob: client traffic secret length does not fit the suite"));
        KX_GUARD(read_exact(r, c->ks.s_ap, c->ks.hlen, "export blob: server traffic secret length does not fit the suite"));
        KX_GUARD(read_exact(r, c->ks.resumption, c->ks.hlen,
                            "export blob: resumption secret length does not fit the suite"));
        /* Directions in user space get their record keys from the current secrets. */
        const uint8_t *tx_secret = c->role == KTLSX_CLIENT ? c->ks.c_ap : c->ks.s_ap;
        const uint8_t *rx_secret = c->role == KTLSX_CLIENT ? c->ks.s_ap : c->ks.c_ap;
        if (!(ktls & KTLSX_KTLS_TX)) {
            KX_GUARD(kx_set_traffic_secret(c, &c->tx, tx_secret));
            c->tx.seq = tx_seq;
        }
        if (!(ktls & KTLSX_KTLS_RX)) {
            KX_GUARD(kx_set_traffic_secret(c, &c->rx, rx_secret));
            c->rx.seq = rx_seq;
        }
    } else {
        KX_GUARD(read_dir12(c, r, &c->tx, ktls & KTLSX_KTLS_TX, tx_seq));
        KX_GUARD(read_dir12(c, r, &c->rx, ktls & KTLSX_KTLS_RX, rx_seq));
        KX_GUARD(read_exact(r, c->master, KX_TLS12_MASTER, "export blob: master secret must be 48 bytes"));
        kx_reader sid;
        KX_GUARD(kx_read_vec(r, 1, 0, sizeof c->session_id, &sid));
        memcpy(c->session_id, sid.data, sid.len);
        c->session_id_len = sid.len;
    }
    KX_GUARD(read_session(c, r));
    KX_GUARD(read_str(r, c->alpn, sizeof c->alpn));
    KX_GUARD(read_str(r, c->server_name, sizeof c->server_name));
    KX_GUARD(read_str(r, c->sni, sizeof c->sni));
    KX_GUARD(read_str(r, c->peer_subject, sizeof c->peer_subject));
    KX_GUARD(kx_read_u16(r, &c->rsl_peer));
    KX_GUARD(kx_read_u16(r, &c->rsl_ours));
    KX_ENSURE((c->rsl_peer == 0) == (c->rsl_ours == 0), KX_ALERT_DECODE_ERROR,
              "export blob: record_size_limit given for one side only");
    KX_ENSURE(c->rsl_peer == 0 || (c->rsl_peer >= KX_RSL_MIN && c->rsl_ours >= KX_RSL_MIN), KX_ALERT_DECODE_ERROR,
              "export blob: record_size_limit below 64");
    c->rsl_negotiated = c->rsl_peer != 0;
    kx_rsl_apply(c); /* the user-space directions obey it from the first record */
    KX_ENSURE(kx_reader_left(r) == 0, KX_ALERT_DECODE_ERROR, "export blob: trailing bytes");
    return KX_OK;
}

ktlsx_conn *ktlsx_conn_import(ktlsx_config *cfg, const uint8_t *blob, size_t len, const char **why)
{
    const char *unused;
    if (!why) why = &unused;
    *why = NULL;
    if (!cfg || !blob) {
        *why = !cfg ? "configuration is NULL" : "export blob is NULL";
        return NULL;
    }
    ktlsx_conn *c = ktlsx_conn_new(cfg, NULL);
    if (!c) {
        *why = "out of memory";
        return NULL;
    }
    kx_reader r = kx_reader_of(blob, len);
    kx_result res = decode(c, &r);
    if (kx_failed(res)) {
        /* Frees and wipes whatever secrets were already copied in. */
        ktlsx_conn_free(c);
        *why = res.reason;
        return NULL;
    }
    /* The handshake is over: ktlsx_handshake answers DONE, ktlsx_set_session refuses. */
    c->handshake_done = true;
    while (c->flow_pos + 1 < KX_MAX_FLOW && c->flow[c->flow_pos] != KX_MSG_END) c->flow_pos++;
    return c;
}
