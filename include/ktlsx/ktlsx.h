/* ktlsx public API, version 0.1.
 *
 * The engine performs TLS 1.3 / 1.2 handshakes without doing any I/O: the
 * caller moves bytes between the socket and the engine.
 *
 *   for (;;) {
 *       int st = ktlsx_handshake(conn);
 *       flush: while (ktlsx_pending_output(conn, &p, &n)) { write(fd, p, n); ktlsx_output_done(conn, n); }
 *       if (st == KTLSX_DONE || st == KTLSX_FAILED) break;
 *       // KTLSX_WANT_READ: read *exactly* ktlsx_input_wanted(conn) bytes at most and feed them.
 *       n = read(fd, buf, ktlsx_input_wanted(conn)); ktlsx_input(conn, buf, n);
 *   }
 *
 * Reading exactly ktlsx_input_wanted() bytes means the engine never pulls in
 * bytes past the last handshake record, so the socket can be switched to
 * kernel TLS afterwards without stranding application data in user space.
 * Callers that read more (e.g. a plain user-space TLS loop) may feed any
 * amount; the engine keeps the surplus and ktlsx_take_buffered() hands it back.
 */
#ifndef KTLSX_KTLSX_H
#define KTLSX_KTLSX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KTLSX_VERSION_STRING "0.1.0"

typedef struct ktlsx_config ktlsx_config;
typedef struct ktlsx_conn ktlsx_conn;

enum ktlsx_role { KTLSX_CLIENT = 0, KTLSX_SERVER = 1 };

/* Engine status. */
enum ktlsx_status {
    KTLSX_WANT_READ = 1,  /* feed more input (after flushing output) */
    KTLSX_DONE = 2,       /* handshake complete */
    KTLSX_FAILED = 3,     /* handshake failed: flush output (it holds the alert), then close */
    KTLSX_CLOSED = 4,     /* (read side) peer sent close_notify */
};

enum ktlsx_verify_client { KTLSX_VERIFY_NONE = 0, KTLSX_VERIFY_OPTIONAL = 1, KTLSX_VERIFY_REQUIRE = 2 };

/* TLS protocol version numbers as on the wire. */
#define KTLSX_TLS12 0x0303
#define KTLSX_TLS13 0x0304

/* ---- configuration (shared by many connections, read-only once in use) ---- */

ktlsx_config *ktlsx_config_new(enum ktlsx_role role);
void ktlsx_config_free(ktlsx_config *cfg);

/* Every setter returns 0 on success or -1 with a one-line message in
 * ktlsx_config_error(cfg) naming the file or value at fault. */
const char *ktlsx_config_error(const ktlsx_config *cfg);

/* Add a certificate chain (PEM, leaf first) and its private key.  May be
 * called several times (e.g. RSA and ECDSA); the server picks one by the
 * client's signature_algorithms. On a client: the client certificate. */
int ktlsx_config_add_cert(ktlsx_config *cfg, const char *cert_file, const char *key_file);
/* Trust anchors for verifying the peer; NULL = the system default store. */
int ktlsx_config_set_ca_file(ktlsx_config *cfg, const char *ca_file);
int ktlsx_config_set_crl_file(ktlsx_config *cfg, const char *crl_file);
/* Client: skip peer certificate verification (still checks the signature). */
int ktlsx_config_set_insecure(ktlsx_config *cfg, int insecure);
int ktlsx_config_set_verify_client(ktlsx_config *cfg, enum ktlsx_verify_client mode);
/* Comma-separated lists. */
int ktlsx_config_set_alpn(ktlsx_config *cfg, const char *list);          /* "h2,http/1.1" */
int ktlsx_config_set_ciphers(ktlsx_config *cfg, const char *list);       /* IANA names or OpenSSL names */
int ktlsx_config_set_groups(ktlsx_config *cfg, const char *list);        /* "x25519,P-256,P-384" */
/* min/max protocol versions (KTLSX_TLS12 / KTLSX_TLS13). */
int ktlsx_config_set_versions(ktlsx_config *cfg, uint16_t min, uint16_t max);
/* NSS key log file; "-" is not allowed. Also honoured: SSLKEYLOGFILE (read by the caller). */
int ktlsx_config_set_keylog_file(ktlsx_config *cfg, const char *path);
/* Trace one line per handshake message (direction + key fields) to `out`. */
void ktlsx_config_set_trace(ktlsx_config *cfg, FILE *out);

/* ---- resumption and PSKs ---- */

/* Server: TLS 1.2 session-ID cache, bounded in entries (LRU) and lifetime; 0 entries turns it off.
 * Default: 1024 entries, 300 s. */
int ktlsx_config_set_session_cache(ktlsx_config *cfg, size_t entries, unsigned lifetime_s);
/* Server: session tickets. count = NewSessionTickets per TLS 1.3 connection (TLS 1.2 sends one);
 * 0 turns tickets off in both versions. Default 2, lifetime 7200 s. */
int ktlsx_config_set_tickets(ktlsx_config *cfg, unsigned count, unsigned lifetime_s);
/* Server: ticket keys from a file shared by several servers: the 48- or 80-byte layout of
 * nginx's ssl_session_ticket_key (16-byte key name, then key material). Several files may be
 * loaded: the first seals, all open. Without a file keys are random and rotate every hour. */
int ktlsx_config_add_ticket_key_file(ktlsx_config *cfg, const char *path);
/* Server: start sealing with a fresh key now; the previous ones still open tickets. */
int ktlsx_config_rotate_ticket_keys(ktlsx_config *cfg);
/* TLS 1.3 external PSK (RFC 8446 §4.2.11) bound to SHA-256 or SHA-384 (sha384 = 1). */
int ktlsx_config_set_psk(ktlsx_config *cfg, const char *identity, const uint8_t *key, size_t len, int sha384);
/* Also allow psk_ke (PSK without (EC)DHE) for resumption and external PSKs. Default: off. */
int ktlsx_config_set_psk_ke(ktlsx_config *cfg, int allow);
/* Client: refuse TLS 1.2 servers without the extended master secret (RFC 7627). Default: off
 * (EMS is always offered, and always required for resumption). */
int ktlsx_config_set_require_ems(ktlsx_config *cfg, int require);
/* Allow TLS_RSA_WITH_AES_*_GCM_* (no forward secrecy). Default: off. */
int ktlsx_config_set_legacy_rsa_kx(ktlsx_config *cfg, int allow);
/* Client: send TLS_FALLBACK_SCSV (RFC 7507), for a deliberate fallback retry. */
int ktlsx_config_set_fallback_scsv(ktlsx_config *cfg, int send);

/* ---- connection ---- */

/* `server_name`: client only; used for SNI (unless an IP literal) and for
 * host name / IP verification. May be NULL. */
ktlsx_conn *ktlsx_conn_new(ktlsx_config *cfg, const char *server_name);
void ktlsx_conn_free(ktlsx_conn *conn);
/* Override the SNI sent (client) while verifying against server_name. */
int ktlsx_conn_set_sni(ktlsx_conn *conn, const char *sni);

/* Client: offer a session saved by ktlsx_get_session (before the first ktlsx_handshake).
 * Returns -1 if the blob is not a session. */
int ktlsx_set_session(ktlsx_conn *conn, const uint8_t *data, size_t len);
/* The session this connection can be resumed from (TLS 1.3: from the newest ticket,
 * so call it after reading some data). Returns its length, or -1 if there is none
 * or it does not fit. The blob holds secrets: store it like a private key. */
long ktlsx_get_session(const ktlsx_conn *conn, uint8_t *buf, size_t cap);

/* Drive the handshake. Returns an enum ktlsx_status. */
int ktlsx_handshake(ktlsx_conn *conn);

/* How many more bytes the engine wants to complete the record it is reading
 * (5 for a header, then the body). Never 0 while WANT_READ. */
size_t ktlsx_input_wanted(const ktlsx_conn *conn);
/* Feed received bytes. Returns 0, or -1 if the engine has failed. A length
 * of 0 means the peer closed the TCP connection. */
int ktlsx_input(ktlsx_conn *conn, const uint8_t *data, size_t len);

/* Bytes waiting to be sent. Returns the count (0 = nothing). */
size_t ktlsx_pending_output(ktlsx_conn *conn, const uint8_t **data);
void ktlsx_output_done(ktlsx_conn *conn, size_t n);

/* ---- application data in the user-space record layer ---- */

/* Encrypt `len` bytes into pending output. Returns 0 or -1. */
int ktlsx_write(ktlsx_conn *conn, const void *data, size_t len);
/* Decrypt what has been fed. Returns bytes copied (>0), 0 if more input is
 * needed, or -KTLSX_CLOSED on close_notify, -KTLSX_FAILED on error (alert
 * queued in output).  Handles post-handshake messages (NewSessionTicket,
 * KeyUpdate) transparently. */
long ktlsx_read(ktlsx_conn *conn, void *buf, size_t len);
/* Queue a close_notify alert. */
int ktlsx_close_notify(ktlsx_conn *conn);
/* Queue a KeyUpdate (request_update = 1 asks the peer to update too). TLS 1.3 only. */
int ktlsx_key_update(ktlsx_conn *conn, int request_update);

/* Raw bytes received but not yet consumed as records (only when the caller
 * fed more than ktlsx_input_wanted()). Copies up to len; returns count. */
size_t ktlsx_take_buffered(ktlsx_conn *conn, void *buf, size_t len);

/* ---- results ---- */

uint16_t ktlsx_version(const ktlsx_conn *conn);          /* 0x0304 / 0x0303 */
const char *ktlsx_version_name(const ktlsx_conn *conn);  /* "TLSv1.3" */
const char *ktlsx_cipher_name(const ktlsx_conn *conn);   /* IANA: "TLS_AES_128_GCM_SHA256" */
uint16_t ktlsx_cipher_id(const ktlsx_conn *conn);
const char *ktlsx_group_name(const ktlsx_conn *conn);    /* "x25519", "secp256r1", "-" */
int ktlsx_resumed(const ktlsx_conn *conn);
const char *ktlsx_alpn(const ktlsx_conn *conn);          /* NULL if none */
const char *ktlsx_peer_subject(const ktlsx_conn *conn);  /* one-line subject, "" if none */
const char *ktlsx_sni(const ktlsx_conn *conn);           /* server: name the client asked for */
/* After FAILED: reason and the alert (sent or received). */
const char *ktlsx_error(const ktlsx_conn *conn);
uint8_t ktlsx_alert(const ktlsx_conn *conn);
const char *ktlsx_alert_name(uint8_t alert);

/* ---- export for kernel TLS ---- */

/* Traffic keys of one direction, exactly what the kernel's
 * tls12_crypto_info_* needs.  The caller must OPENSSL_cleanse() it. */
struct ktlsx_traffic_keys {
    uint16_t version;      /* KTLSX_TLS12 / KTLSX_TLS13 */
    uint16_t cipher_suite; /* IANA id */
    uint8_t key[32];
    size_t key_len;
    uint8_t iv[12];        /* TLS 1.3 / ChaCha: full static IV; TLS 1.2 GCM: 4-byte salt + 8 unused */
    size_t iv_len;         /* 12 (TLS 1.3, ChaCha20) or 4 (TLS 1.2 GCM implicit part) */
    uint64_t seq;          /* next record sequence number */
};
enum ktlsx_direction { KTLSX_TX = 0, KTLSX_RX = 1 };
int ktlsx_export_keys(const ktlsx_conn *conn, enum ktlsx_direction dir, struct ktlsx_traffic_keys *out);

/* ---- 1.0: handing a connection to another process ---- */

/* A process that ran the handshake (ktlsxd) hands the socket (SCM_RIGHTS)
 * and a blob describing the post-handshake state to another process, which
 * rebuilds the connection from it and carries on: answers KeyUpdate, stores
 * NewSessionTickets, and (where kernel TLS is missing) carries the data in
 * user-space records.  The blob holds the protocol version, cipher suite,
 * group, the TLS 1.3 application traffic secrets and resumption master
 * secret or the TLS 1.2 record keys, master secret, session ID and EMS flag,
 * both record sequence numbers, which directions are in the kernel, the
 * session ktlsx_get_session would return, ALPN, SNI / server name and the
 * peer's subject.  It is versioned: a libktlsx of another blob format
 * refuses it cleanly.  It holds secrets: whoever holds a copy wipes it
 * (OPENSSL_cleanse) once done.  Neither side's private key is in it. */

/* A buffer of this size always holds an export. */
#define KTLSX_EXPORT_MAX 4096

/* Serialize the post-handshake state of `conn` into buf[0..cap).  The
 * connection must be DONE, not failed, the peer must not have closed, and
 * the engine must hold nothing the other process would miss: no pending
 * output (flush it), no buffered input or partial record (read the
 * handshake record by record with ktlsx_input_wanted), no decrypted data not
 * yet ktlsx_read.  `conn` is not changed, so a refused export may be retried
 * once the cause is gone.  Returns the blob's length, or -1 with a one-line
 * reason in *why (why may be NULL; the string is static): NULL conn or buf,
 * not exportable (as above), or cap too small (nothing is written then). */
long ktlsx_conn_export(const ktlsx_conn *conn, uint8_t *buf, size_t cap, const char **why);

/* A connection in the state `blob` describes, on `cfg` (which must have the
 * blob's role; it needs no certificate or private key; its version and
 * cipher lists are not re-applied, the exporting side negotiated).  The
 * blob is read as untrusted input and not modified: the caller wipes it.
 * After import: ktlsx_handshake answers DONE; ktlsx_read / ktlsx_write /
 * ktlsx_key_update / ktlsx_close_notify work on the directions that were in
 * user space, continuing their sequence numbers; ktlsx_ktls_active reports
 * the directions the kernel owns and ktlsx_ktls_* work on them (the fd
 * arrives separately); ktlsx_get_session and the result getters answer as on
 * the original.  The connection holds a pointer to `cfg` (keep it alive as
 * for ktlsx_conn_new); free it with ktlsx_conn_free.  Returns NULL on a NULL
 * argument, out of memory, or a truncated, forged or inconsistent blob
 * (wrong magic or format version, role other than cfg's, unknown suite or
 * group, suite not of the version, secret/key/IV lengths not those of the
 * suite, keys for a direction the kernel owns, unknown flags, bad names,
 * trailing bytes), with a one-line reason in *why (why may be NULL). */
ktlsx_conn *ktlsx_conn_import(ktlsx_config *cfg, const uint8_t *blob, size_t len, const char **why);

/* ---- kernel TLS offload ---- */

#define KTLSX_KTLS_TX 1
#define KTLSX_KTLS_RX 2

/* Move the record layer of `fd` into the kernel once the handshake is DONE:
 * TCP_ULP "tls", then TLS_TX and TLS_RX with the negotiated keys and the
 * current record sequence numbers; the key material is wiped right after.
 * Call it after flushing all pending output, having read the handshake
 * record by record (ktlsx_input_wanted), and before any further ktlsx_read.
 * `want`: KTLSX_KTLS_TX | KTLSX_KTLS_RX.
 * Returns the directions now in the kernel: TX|RX; 0 = none (`why` says why,
 * e.g. "kernel has no tls module", and the connection continues in user space
 * unchanged); TX alone when RX could not be installed (`why` says why; the
 * socket then still delivers raw records, which ktlsx_input/ktlsx_read decrypt,
 * and KeyUpdate requests from the peer end the connection).  -1 is reserved
 * for a failed connection. */
int ktlsx_ktls_start(ktlsx_conn *conn, int fd, int want, char *why, size_t whylen);
/* Which directions are in the kernel. */
int ktlsx_ktls_active(const ktlsx_conn *conn);
/* Plaintext the engine decrypted before the switch (kept in order): read it
 * with ktlsx_read() before reading the socket. */
size_t ktlsx_pending_plaintext(const ktlsx_conn *conn);

/* Read application data from a kernel-TLS socket (RX in the kernel).
 * Control records are handled here: NewSessionTicket (stored for
 * ktlsx_get_session), KeyUpdate (the kernel is re-keyed where it can be,
 * kernels >= 6.14; elsewhere the connection fails with a clear error),
 * close_notify (returns 0 = end of stream), fatal alerts (returns -1 with
 * ktlsx_error naming the alert).  Returns bytes read, 0 at end, -1 on error
 * (errno EAGAIN passes through for non-blocking sockets). */
long ktlsx_ktls_read(ktlsx_conn *conn, int fd, void *buf, size_t len);
/* ktlsx_ktls_read with recvmsg FLAGS, e.g. MSG_DONTWAIT: a non-blocking read
 * on a blocking socket, without fcntl; anything this sends in answer (a
 * KeyUpdate, an alert) is still sent blocking. */
long ktlsx_ktls_recv(ktlsx_conn *conn, int fd, void *buf, size_t len, int flags);
/* Send close_notify / a KeyUpdate through a kernel-TLS socket (TX in the kernel). */
int ktlsx_ktls_close_notify(ktlsx_conn *conn, int fd);
int ktlsx_ktls_key_update(ktlsx_conn *conn, int fd, int request_update);

#ifdef __cplusplus
}
#endif
#endif
