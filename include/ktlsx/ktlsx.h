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

/* Everything declared here is the exported API of libktlsx.so; the library
 * is compiled with -fvisibility=hidden, so a declaration needs no per-symbol
 * macro to be exported as long as it sits between push and pop. */
#pragma GCC visibility push(default)

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

/* Returns a configuration holding one reference (see "configuration lifetime" below). */
ktlsx_config *ktlsx_config_new(enum ktlsx_role role);
/* Drops one reference; the last one frees the configuration.  NULL is ignored. */
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
/* IANA or OpenSSL names.  TLS_AES_128_CCM_SHA256 (AES-128-CCM, 16-byte tag;
 * kernel TLS carries it too) is supported but, as in OpenSSL, not in the
 * default list: name it to offer or accept it. */
int ktlsx_config_set_ciphers(ktlsx_config *cfg, const char *list);
/* x25519, P-256 (secp256r1), P-384 (secp384r1), P-521 (secp521r1), x448;
 * default: all five in that order (the key share goes to the first). */
int ktlsx_config_set_groups(ktlsx_config *cfg, const char *list);
/* min/max protocol versions (KTLSX_TLS12 / KTLSX_TLS13). */
int ktlsx_config_set_versions(ktlsx_config *cfg, uint16_t min, uint16_t max);
/* NSS key log file; "-" is not allowed. Also honoured: SSLKEYLOGFILE (read by the caller). */
int ktlsx_config_set_keylog_file(ktlsx_config *cfg, const char *path);
/* Trace one line per handshake message (direction + key fields) to `out`. */
int ktlsx_config_set_trace(ktlsx_config *cfg, FILE *out);

/* ---- resumption and PSKs ---- */

/* Server: TLS 1.2 session-ID cache, bounded in entries (LRU) and lifetime; 0 entries turns it off.
 * Default: 1024 entries, 300 s.  The entries (about 2.4 KB each) are allocated when the first
 * session is stored, so a configuration that never completes a TLS 1.2 full handshake costs little. */
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
/* Server: a fresh random ticket key every `seconds` (default 3600; 0 = never, at least 60).
 * Refused once keys come from ticket key files: their owner rotates those. */
int ktlsx_config_set_ticket_rotation(ktlsx_config *cfg, unsigned seconds);
/* Server: what the session cache and the ticket keys hold now (ktlsxctl sessions). */
struct ktlsx_session_stats {
    size_t cache_entries;            /* TLS 1.2 session IDs held (expired ones until evicted) */
    size_t cache_capacity;           /* 0 = the cache is off */
    unsigned ticket_keys;            /* keys that open tickets (the first one seals) */
    unsigned ticket_rotation_s;      /* 0 = no schedule (keys from files, or rotation off) */
    uint64_t ticket_key_age_s;       /* of the sealing key */
    unsigned tickets_per_connection; /* TLS 1.3 NewSessionTickets sent; 0 = tickets off */
    /* issue 12: the memcached session store (ktlsx_config_set_memcached_store); all 0 without one */
    unsigned store_servers;          /* memcached servers configured */
    uint64_t store_hits;             /* sessions found there and opened */
    uint64_t store_misses;           /* not there (never stored, expired, evicted) */
    uint64_t store_errors;           /* memcached unreachable, timed out or failing: a full handshake each */
    uint64_t store_rejected;         /* entries that failed authentication (forged, corrupted, other key) */
    uint64_t store_puts;             /* sessions written */
    uint64_t store_slowest_ms;       /* the longest single memcached operation so far (a warning is
                                      * logged each time a new longest one is over the timeout) */
};
int ktlsx_config_session_stats(const ktlsx_config *cfg, struct ktlsx_session_stats *out);
/* issue 12: the ticket keys that open tickets now, the sealing one first (ktlsxctl ticket-keys).
 * Names and ages only: the key bytes never leave the library.  `age_s` counts from the key
 * file's modification time (a key loaded from a file) or from when the random key was made.
 * Fills up to `max` entries; returns how many keys there are. */
struct ktlsx_ticket_key_info {
    uint8_t name[16];  /* the key name every ticket sealed with it starts with (not secret) */
    uint64_t age_s;
    int seals;         /* 1 for the key that seals new tickets, 0 for open-only keys */
};
size_t ktlsx_config_ticket_keys(const ktlsx_config *cfg, struct ktlsx_ticket_key_info *out, size_t max);
/* Server: start from `from`'s session cache entries and ticket keys, so that a
 * configuration built to replace `from` (a reload) resumes what it could.
 * Ticket keys are not taken when cfg's come from ticket key files. */
int ktlsx_config_take_sessions(ktlsx_config *cfg, const ktlsx_config *from);
/* TLS 1.3 external PSK (RFC 8446 §4.2.11) bound to SHA-256 or SHA-384 (sha384 = 1). */
int ktlsx_config_set_psk(ktlsx_config *cfg, const char *identity, const uint8_t *key, size_t len, int sha384);
/* The same with the key read from a file of hex digits (whitespace ignored); the
 * error names the file.  The file's bytes are wiped after use. */
int ktlsx_config_set_psk_file(ktlsx_config *cfg, const char *identity, const char *path, int sha384);
/* Also allow psk_ke (PSK without (EC)DHE) for resumption and external PSKs. Default: off. */
int ktlsx_config_set_psk_ke(ktlsx_config *cfg, int allow);
/* Client: refuse TLS 1.2 servers without the extended master secret (RFC 7627). Default: off
 * (EMS is always offered, and always required for resumption). */
int ktlsx_config_set_require_ems(ktlsx_config *cfg, int require);
/* Allow TLS_RSA_WITH_AES_*_GCM_* (no forward secrecy). Default: off. */
int ktlsx_config_set_legacy_rsa_kx(ktlsx_config *cfg, int allow);
/* Client: send TLS_FALLBACK_SCSV (RFC 7507), for a deliberate fallback retry. */
int ktlsx_config_set_fallback_scsv(ktlsx_config *cfg, int send);

/* ---- 1.0: configuration lifetime and hooks ---- */

/* Lifetime.  A configuration is reference counted: ktlsx_config_new returns it
 * with one reference (the caller's), ktlsx_config_ref adds one, ktlsx_config_free
 * drops one and frees the configuration when the last is gone.  Every
 * connection holds a reference from ktlsx_conn_new until ktlsx_conn_free, so a
 * daemon reloads by building a new configuration, starting new connections on
 * it and calling ktlsx_config_free on the old one: connections still running
 * on the old configuration keep it alive until they are freed.  Both calls are
 * thread-safe (atomic counter).
 *
 * The "in use" rule: from the moment a connection is created from a
 * configuration until the last such connection is freed, the configuration is
 * *in use* and read by those connections without locks, so every
 * ktlsx_config_set_* / ktlsx_config_add_* call refuses it: it returns -1 and
 * ktlsx_config_error() says "configuration is in use by N connections: build
 * a new one".  Once all its connections are freed the setters work again.
 * The exceptions, safe while in use (they take a lock):
 *   ktlsx_config_rotate_ticket_keys.
 * A setter and ktlsx_conn_new on the same configuration may run on different
 * threads: a connection never starts on a half-changed configuration (the
 * setter either finishes first or is refused).  ktlsx_config_error() itself
 * is one buffer per configuration: read it on the thread that called the setter. */
ktlsx_config *ktlsx_config_ref(ktlsx_config *cfg); /* returns cfg; NULL-safe */

/* Virtual hosts (server).  `fn` is called once per connection, when the
 * ClientHello has been parsed and before anything is chosen from the
 * configuration (protocol version, cipher suite, group, certificate, ALPN,
 * PSK, client verification); `server_name` is the SNI host name, or NULL when
 * the client sent none.  Inside it, ktlsx_conn_set_config may move the
 * connection to another configuration, which then governs the whole handshake.
 * Return 0 to continue, or a TLS alert number (1..255, e.g. 112
 * unrecognized_name) to abort the handshake with that alert; any other value
 * aborts with internal_error.  Not called again for the second ClientHello
 * after a HelloRetryRequest.  fn = NULL removes the callback.  The callback
 * runs on the thread driving the handshake; `arg` is passed through. */
typedef int (*ktlsx_sni_fn)(ktlsx_conn *conn, const char *server_name, void *arg);
int ktlsx_config_set_sni_callback(ktlsx_config *cfg, ktlsx_sni_fn fn, void *arg);
/* Move `conn` to `cfg` (like OpenSSL's SSL_set_SSL_CTX): takes a reference on
 * cfg and drops the connection's reference on the old one (which may free it).
 * Allowed only before the connection has sent or answered anything: on a
 * server, from the SNI callback (or before the first ktlsx_handshake); on a
 * client, before the first ktlsx_handshake.  `cfg` must have the connection's
 * role.  Returns 0, or -1 (connection unchanged) with the reason in
 * ktlsx_error(conn); cfg then counts as in use from here on. */
int ktlsx_conn_set_config(ktlsx_conn *conn, ktlsx_config *cfg);

/* External PSKs looked up by identity (server, TLS 1.3; e.g. NVMe/TCP keys
 * from a keyring).  Called for each identity the client offers that is
 * neither a ticket this server issued nor the identity set with
 * ktlsx_config_set_psk, in the client's order, until one is found.
 * `identity` is the raw identity (not NUL-terminated; 1..65535 bytes).  The
 * callback writes the key into `key` (room for *key_len = 64 bytes on entry),
 * sets *key_len to its length (16..48 bytes) and *sha384 to 1 for a SHA-384
 * PSK (0 = SHA-256, the preset), and returns 1; or returns 0 when it does not
 * know the identity.  The library verifies the binder in constant time and
 * wipes its copies of the key right after use; a key of a length outside
 * 16..48 fails the handshake with internal_error.  Unknown identities
 * continue as an unknown ktlsx_config_set_psk identity does: a full
 * handshake when a certificate is configured, else handshake_failure.
 * fn = NULL removes the callback. */
typedef int (*ktlsx_psk_fn)(ktlsx_conn *conn, const uint8_t *identity, size_t identity_len, uint8_t *key,
                            size_t *key_len, int *sha384, void *arg);
int ktlsx_config_set_psk_callback(ktlsx_config *cfg, ktlsx_psk_fn fn, void *arg);

/* An extra verification step on the peer's certificate chain (both roles,
 * TLS 1.2 and 1.3), called whenever the peer sends a non-empty Certificate,
 * after the library's own verification (trust anchors, CRL, host name on a
 * client), as OpenSSL's SSL_CTX_set_verify callback is: `chain_ok` is 1 if
 * that verification passed, 0 if it failed or was skipped
 * (ktlsx_config_set_insecure).  `der[i]`/`der_len[i]` is the chain as sent,
 * leaf first, `count` entries; valid during the call only.
 * Return 0 to accept the chain, or a TLS alert number (1..255, e.g. 42
 * bad_certificate, 49 access_denied) to abort with that alert; any other
 * value aborts with internal_error.  Returning 0 with chain_ok = 0 overrides
 * the library's verdict (e.g. to accept a pinned self-signed leaf), so a
 * callback that only adds checks must return an alert when chain_ok is 0.  Not called for a
 * resumed session (no certificate is sent) or an empty client Certificate.
 * fn = NULL removes the callback. */
typedef int (*ktlsx_verify_fn)(ktlsx_conn *conn, int chain_ok, const uint8_t *const *der, const size_t *der_len,
                               size_t count, void *arg);
int ktlsx_config_set_verify_callback(ktlsx_config *cfg, ktlsx_verify_fn fn, void *arg);

/* An external session store (server, TLS 1.2 session IDs), e.g. shared by
 * several processes.  The in-process session cache (if any) is asked first,
 * the store on a miss.  After each full handshake with the extended master
 * secret the session goes to both: put(key = session ID, 32 bytes; session =
 * an opaque blob holding the master secret -- store it like a private key;
 * lifetime_s = how long it may be resumed, the ticket lifetime).  A
 * ClientHello offering a session ID not in the cache calls get, which copies
 * the blob into buf (cap bytes) and returns its length, or -1 when it has
 * none.  A handshake that resumed a session and then failed calls remove.
 * The store's bytes are treated as untrusted (lengths checked, decoded
 * strictly, the session must carry the requested ID and be fresh): whatever
 * it returns, the worst outcome is a full handshake.  put returns 0 (its
 * result is otherwise ignored); remove may be NULL.  The functions are called
 * from the threads driving handshakes, concurrently: they must be thread-safe.
 * TLS 1.3 resumption uses stateless tickets and never touches the store.
 * The struct is copied; store = NULL removes it.  Servers only. */
struct ktlsx_session_store {
    int (*put)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *session, size_t len,
               unsigned lifetime_s);
    long (*get)(void *arg, const uint8_t *key, size_t key_len, uint8_t *buf, size_t cap); /* length, or -1 */
    void (*remove)(void *arg, const uint8_t *key, size_t key_len);
    void *arg;
};
int ktlsx_config_set_session_store(ktlsx_config *cfg, const struct ktlsx_session_store *store);
/* issue 12: a session store shared by a fleet of servers, in memcached (through
 * libmemcached), installed on the hook above (ktlsx_config_set_session_store
 * replaces it).  `servers`: "host:port[,host:port...]" (IPv6 as [addr]:port;
 * several servers share the keys by consistent hashing).  `key_file`: 32 to
 * 4096 bytes (e.g. `openssl rand 48`) every server of the fleet holds; from it
 * come an AES-256-GCM key that seals each entry (a cache dump reveals no
 * session; a forged or corrupted entry fails to open and costs a full
 * handshake) and an HMAC key naming entries (memcached key = HMAC(session ID),
 * so IDs are not exposed).  Entries expire with the session's lifetime.
 * `timeout_ms` (1..10000; 0 = 200) bounds every memcached operation: connect,
 * send and receive together, so a slow or dead memcached costs a full
 * handshake, never a longer stall.  The in-process session cache stays in
 * front (sessions made here are found there first).  Counters: the store_*
 * fields of ktlsx_config_session_stats.  Servers only. */
int ktlsx_config_set_memcached_store(ktlsx_config *cfg, const char *servers, const char *key_file,
                                     unsigned timeout_ms);

/* ---- connection ---- */

/* `server_name`: client only; used for SNI (unless an IP literal) and for
 * host name / IP verification. May be NULL.  The connection holds a
 * reference on cfg until ktlsx_conn_free (cfg is in use meanwhile). */
ktlsx_conn *ktlsx_conn_new(ktlsx_config *cfg, const char *server_name);
void ktlsx_conn_free(ktlsx_conn *conn);
/* Override the SNI sent (client) while verifying against server_name (or
 * the name given to ktlsx_conn_set_verify_name).  Returns 0, or -1 for NULL,
 * a name of 256 bytes or more, or an IP literal (RFC 6066 §3). */
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

/* Bytes waiting to be sent. Returns the count (0 = nothing) and points
 * *data at them.  Lifetime: those bytes stay where they are, unchanged, until
 * the next ktlsx_output_done (or ktlsx_conn_free) — whatever else is called
 * meanwhile: ktlsx_input, ktlsx_read, ktlsx_write, ktlsx_handshake may queue
 * more output (an alert, a KeyUpdate answer, more data), and it queues
 * behind, in another buffer.  So an asynchronous send (io_uring) may read
 * them while more input is fed.  Calling ktlsx_pending_output again before
 * ktlsx_output_done returns the same bytes. */
size_t ktlsx_pending_output(ktlsx_conn *conn, const uint8_t **data);
/* `n` of the bytes ktlsx_pending_output returned have been sent (n larger
 * than that count is taken as all of them).  Invalidates that pointer; ask
 * again for the rest and for what was queued meanwhile. */
void ktlsx_output_done(ktlsx_conn *conn, size_t n);

/* ---- application data in the user-space record layer ---- */

/* Encrypt `len` bytes into pending output. Returns 0 or -1 (failed, or TX
 * is in the kernel: then write plaintext to the socket). */
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

/* ---- 1.0: memory inputs and the peer's chain ---- */

/* OpenSSL's EVP_PKEY, declared here so this header needs no OpenSSL header. */
struct evp_pkey_st;

/* Add a certificate chain and its private key from memory (keyring blobs,
 * secrets managers) instead of files; the server picks among several as with
 * ktlsx_config_add_cert, which reads its files and takes this same path.
 *   chain: PEM (one or more CERTIFICATE blocks, leaf first) or DER (one
 *          certificate, or several DER certificates one after the other,
 *          leaf first); the format is detected.
 *   key:   PEM or DER, PKCS#8 or the traditional RSA/EC form; not encrypted.
 * The key must match the leaf (refused with a message otherwise).  Both
 * buffers are only read during the call: the configuration keeps its own
 * copies, and the caller still owns (and should wipe) `key`.
 * Returns 0, or -1 with ktlsx_config_error() naming the buffer and the problem
 * (empty, no certificate found, cannot parse, key does not match, ...). */
int ktlsx_config_add_cert_mem(ktlsx_config *cfg, const uint8_t *chain, size_t chain_len, const uint8_t *key,
                              size_t key_len);
/* The same with a private key object (an EVP_PKEY, e.g. from a provider or an
 * HSM): the configuration takes its own reference (EVP_PKEY_up_ref), so the
 * caller may free its reference at once.  The key must hold the private half
 * and match the leaf.  Returns 0 or -1 as above. */
int ktlsx_config_add_cert_pkey(ktlsx_config *cfg, const uint8_t *chain, size_t chain_len, struct evp_pkey_st *key);
/* Trust anchors from memory: PEM (CERTIFICATE blocks; CRL blocks in the same
 * bundle are taken too) or DER (certificates one after the other).  Replaces
 * what ktlsx_config_set_ca_file set, and vice versa; the bytes are copied.
 * An empty buffer is refused: ktlsx_config_set_ca_file(cfg, NULL) selects the
 * system store.  Returns 0 or -1 (the previous trust anchors stay). */
int ktlsx_config_set_ca_mem(ktlsx_config *cfg, const uint8_t *ca, size_t len);
/* Revocation lists from memory: PEM (X509 CRL blocks) or DER (CRLs one after
 * the other); the peer's leaf is checked against them.  Replaces what
 * ktlsx_config_set_crl_file set, and vice versa; the bytes are copied.
 * Returns 0 or -1 (the previous CRLs stay). */
int ktlsx_config_set_crl_mem(ktlsx_config *cfg, const uint8_t *crl, size_t len);

/* The peer's certificate chain as it sent it, DER, leaf = index 0 (server:
 * the client's chain, when it sent one).  Kept from the peer's Certificate
 * message, TLS 1.3 and TLS 1.2, before it is verified: also with
 * ktlsx_config_set_insecure, and after a failed verification (to log what
 * was refused; the handshake has failed then).
 * A resumed connection (session ID, ticket) and one on an external PSK carry
 * no Certificate message: the count is 0 then, as with OpenSSL's
 * SSL_get_peer_cert_chain on a resumed session; ktlsx_peer_subject still
 * names the subject remembered in the session.
 * Returns the number of certificates (0: none, or conn is NULL). */
size_t ktlsx_peer_cert_count(const ktlsx_conn *conn);
/* Certificate `i` (0 = leaf) of that chain and its length in *len; NULL (and
 * *len = 0) when i >= ktlsx_peer_cert_count().  The bytes belong to the
 * connection and stay valid until ktlsx_conn_free(). */
const uint8_t *ktlsx_peer_cert_der(const ktlsx_conn *conn, size_t i, size_t *len);

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
 * Control records are handed to ktlsx_ktls_record (below): NewSessionTicket
 * (stored for ktlsx_get_session), KeyUpdate (the kernel is re-keyed where it
 * can be, kernels >= 6.14; elsewhere the connection fails with a clear
 * error), close_notify (returns 0 = end of stream), fatal alerts (returns -1
 * with ktlsx_error naming the alert).  Answers (a KeyUpdate, an alert) are
 * sent with the same `flags`: with MSG_DONTWAIT neither the read nor an
 * answer ever blocks, and an answer the socket cannot take yet stays queued
 * (ktlsx_ktls_pending) for the next call or ktlsx_ktls_flush.  Returns
 * bytes read, 0 at end, -1 on error (errno EAGAIN passes through). */
long ktlsx_ktls_recv(ktlsx_conn *conn, int fd, void *buf, size_t len, int flags);
/* ktlsx_ktls_recv with flags 0 (blocking socket: blocks as read(2) does). */
long ktlsx_ktls_read(ktlsx_conn *conn, int fd, void *buf, size_t len);
/* The record-driven entry, for callers that read records themselves (an
 * io_uring recvmsg completion with its TLS_GET_RECORD_TYPE cmsg): hand one
 * record's plaintext and type.  Returns 1 for application data (the bytes
 * are the caller's, untouched), 0 for a control record the engine took,
 * -KTLSX_CLOSED at close_notify (and for anything after it), -1 on failure
 * (ktlsx_error; an alert may be queued).  An answer it needs (a KeyUpdate,
 * an alert) is queued where TX lives: with TX in the kernel for
 * ktlsx_ktls_flush, with TX in user space as a sealed record in
 * ktlsx_pending_output.  A peer's requests while our answer is still queued
 * get no second answer (RFC 8446 §4.6.3).  `fd` is used only to install the
 * next RX key after the peer's KeyUpdate (a setsockopt, never blocking).
 * The same dispatcher serves ktlsx_read on user-space records. */
int ktlsx_ktls_record(ktlsx_conn *conn, int fd, uint8_t type, const void *data, size_t len);
/* Send the queued control records (alerts, KeyUpdate, close_notify) through
 * a kernel-TLS socket, re-keying TX after our KeyUpdate.  flags: 0 blocks,
 * MSG_DONTWAIT never does.  Returns 0 when the queue is empty, 1 when the
 * socket took only part (errno EAGAIN: wait for POLLOUT and call again),
 * -1 on error. */
int ktlsx_ktls_flush(ktlsx_conn *conn, int fd, int flags);
/* Bytes of control records still queued for ktlsx_ktls_flush. */
size_t ktlsx_ktls_pending(const ktlsx_conn *conn);
/* Queue and send (blocking) close_notify / a KeyUpdate through a kernel-TLS
 * socket (TX in the kernel). */
int ktlsx_ktls_close_notify(ktlsx_conn *conn, int fd);
int ktlsx_ktls_key_update(ktlsx_conn *conn, int fd, int request_update);

/* ---- log sink ---- */

/* Levels as syslog numbers them. */
enum ktlsx_log_level { KTLSX_LOG_ERROR = 3, KTLSX_LOG_WARNING = 4, KTLSX_LOG_INFO = 6, KTLSX_LOG_DEBUG = 7 };
/* One line (no newline) from the library: kernel TLS unavailable and the
 * fallback taken, a socket cut at its deadline.  Called from whichever thread
 * drives the connection; `line` is valid during the call only. */
typedef void (*ktlsx_log_fn)(void *arg, int level, const char *line);
/* Route the library's log lines to `fn` (NULL: the default, warnings and
 * errors as one line on stderr). A setter like the others: 0, or -1 while
 * the configuration is in use. */
int ktlsx_config_set_log(ktlsx_config *cfg, ktlsx_log_fn fn, void *arg);

/* ---- the TLS socket: a connection over a connected TCP fd ----
 *
 * ktlsx_socket runs the handshake on the fd, then moves the record layer
 * into the kernel (kernel TLS: TX and RX separately, as the mode allows) or
 * keeps it in user space, and carries application data through whichever
 * path is active behind the same calls.  Two ways to drive it:
 *
 *  - step calls (ktlsx_socket_*_step) never block or sleep, whatever the
 *    fd's O_NONBLOCK flag (they use MSG_DONTWAIT; only sendfile(2), which has
 *    no such flag, needs an O_NONBLOCK fd to be non-blocking).  Each returns
 *    an enum ktlsx_io; on WANT_READ / WANT_WRITE wait until the fd is
 *    readable / writable (epoll, io_uring POLL_ADD) and call the same step
 *    again.  Nothing loops on EAGAIN inside.  Deadlines are the caller's to
 *    watch: ktlsx_socket_timeout_ms() says how long until the current one,
 *    and the next step after it fails the socket (KTLSX_IO_TIMEOUT).
 *  - blocking calls (ktlsx_socket_handshake, _read, _write, _sendfile,
 *    _shutdown) loop over the steps with poll(2) and cut a silent peer at
 *    the handshake timeout (default 30 s) or the idle timeout (default none).
 *
 * A socket belongs to one thread at a time; any number of sockets may share
 * one configuration across threads.  The fd is the caller's: never closed
 * here.  Wrong arguments never crash: a NULL socket gets FAILED / -1 (getters
 * answer NULL, -1, 0 or ""); a NULL buffer, out-parameter, file or offset is
 * refused with FAILED / -1 and ktlsx_socket_error naming it, and the
 * connection is not failed by it. */

typedef struct ktlsx_socket ktlsx_socket;

enum ktlsx_io {
    KTLSX_IO_OK = 0,         /* done; byte counts in the out-parameter */
    KTLSX_IO_WANT_READ = 1,  /* wait for the fd to be readable, call again */
    KTLSX_IO_WANT_WRITE = 2, /* wait for the fd to be writable, call again */
    KTLSX_IO_CLOSED = 3,     /* the peer ended the stream (close_notify, or TCP EOF: ktlsx_socket_error says which) */
    KTLSX_IO_FAILED = 4,     /* the connection failed: ktlsx_socket_error; close the fd */
    KTLSX_IO_TIMEOUT = 5,    /* a deadline passed: handshake or idle timeout; close the fd */
};

/* What to do with kernel TLS once the handshake is done. */
enum ktlsx_ktls_mode {
    KTLSX_KTLS_MODE_AUTO = 0,    /* use it where the kernel takes it; else user-space records and one log line saying why */
    KTLSX_KTLS_MODE_OFF = 1,     /* user-space records only */
    KTLSX_KTLS_MODE_REQUIRE = 2, /* fail the connection unless every direction asked for went in */
};

/* A socket for connected TCP `fd` with a new connection on `cfg` (the
 * connection holds a reference on cfg, as ktlsx_conn_new does: the caller may
 * drop its own).  `server_name`: as for ktlsx_conn_new.  NULL on allocation
 * failure or a bad argument. */
ktlsx_socket *ktlsx_socket_new(ktlsx_config *cfg, int fd, const char *server_name);
/* A socket around an existing connection (one prepared with ktlsx_set_session
 * or ktlsx_conn_set_sni, or an imported one); the socket owns `conn` from now
 * on, and frees it with itself. */
ktlsx_socket *ktlsx_socket_wrap(ktlsx_conn *conn, int fd);
/* Frees the socket and its connection; the fd stays open. */
void ktlsx_socket_free(ktlsx_socket *sock);
ktlsx_conn *ktlsx_socket_conn(const ktlsx_socket *sock);
int ktlsx_socket_fd(const ktlsx_socket *sock);

/* Kernel TLS mode and which directions to move (KTLSX_KTLS_TX | KTLSX_KTLS_RX,
 * the default). Before the handshake completes. Returns 0 or -1 (bad value). */
int ktlsx_socket_set_ktls(ktlsx_socket *sock, enum ktlsx_ktls_mode mode, int directions);
/* handshake_ms: from the first handshake call to its end (default 30000;
 * fixed at that first call: a later change applies to the idle timeout only);
 * idle_ms: how long a blocking read/write waits for the peer (default 0 = no
 * limit). Negative values are refused (-1). */
int ktlsx_socket_set_timeouts(ktlsx_socket *sock, int handshake_ms, int idle_ms);

/* ---- step calls: never block ---- */
int ktlsx_socket_handshake_step(ktlsx_socket *sock);
/* Up to `len` bytes of application data into `buf`; *got = bytes (> 0 with
 * KTLSX_IO_OK).  Control records (tickets, KeyUpdate, alerts) are handled
 * here; an answer they need goes out with the next step (or _flush_step). */
int ktlsx_socket_read_step(ktlsx_socket *sock, void *buf, size_t len, size_t *got);
/* Takes up to `len` bytes; *sent = how many (the rest: call again).  With
 * user-space records the bytes taken are sealed and may still wait in the
 * socket's queue: ktlsx_socket_pending_output() / _flush_step. */
int ktlsx_socket_write_step(ktlsx_socket *sock, const void *buf, size_t len, size_t *sent);
/* Send up to `len` bytes of `file_fd` from *offset (advanced): sendfile(2)
 * when TX is in the kernel (zero copy), else read + seal.  *sent = 0 with
 * KTLSX_IO_OK means the file ended. */
int ktlsx_socket_sendfile_step(ktlsx_socket *sock, int file_fd, int64_t *offset, size_t len, size_t *sent);
/* Send what is queued (records, KeyUpdate answers, alerts). OK when empty. */
int ktlsx_socket_flush_step(ktlsx_socket *sock);
/* Queue close_notify (once) and flush it. OK when it is on the wire. */
int ktlsx_socket_shutdown_step(ktlsx_socket *sock);
/* Queue a KeyUpdate (TLS 1.3; request_update = 1 asks the peer to update too)
 * and try to flush it: OK, WANT_WRITE (queued) or FAILED. */
int ktlsx_socket_key_update(ktlsx_socket *sock, int request_update);
/* Bytes queued for the peer (wait for POLLOUT and flush while non-zero). */
size_t ktlsx_socket_pending_output(const ktlsx_socket *sock);
/* Received data waiting in user space (plaintext, or whole records not yet
 * opened): non-zero means a read_step returns data without the fd being
 * readable, so an event loop must not wait for the fd first. */
size_t ktlsx_socket_pending_plaintext(const ktlsx_socket *sock);
/* Milliseconds until the current deadline (the handshake timeout, or
 * the idle timeout since the last byte moved), 0 if it has passed, -1 if none.
 * A step that finds nothing to do after its deadline returns KTLSX_IO_TIMEOUT. */
int ktlsx_socket_timeout_ms(const ktlsx_socket *sock);

/* ---- blocking calls: poll(2) with the deadlines ---- */
/* KTLSX_IO_OK, _FAILED, _TIMEOUT or _CLOSED (peer left mid-handshake). */
int ktlsx_socket_handshake(ktlsx_socket *sock);
/* Bytes read (> 0), 0 at the end of the stream, -1 on failure or idle timeout. */
long ktlsx_socket_read(ktlsx_socket *sock, void *buf, size_t len);
/* All `len` bytes, or -1. */
int ktlsx_socket_write(ktlsx_socket *sock, const void *buf, size_t len);
/* Exactly `len` bytes of `file_fd` from *offset (advanced), or -1 (also when the file ends early). */
int ktlsx_socket_sendfile(ktlsx_socket *sock, int file_fd, int64_t *offset, uint64_t len);
/* Everything queued on the wire, or -1. */
int ktlsx_socket_flush(ktlsx_socket *sock);
/* close_notify on the wire (the TCP connection stays open), or -1. */
int ktlsx_socket_shutdown(ktlsx_socket *sock);

/* ---- state ---- */
/* Why the last call failed, timed out or closed: one line, "" if none. */
const char *ktlsx_socket_error(const ktlsx_socket *sock);
/* The stream ended with the peer's close_notify (1) or a bare TCP close (0). */
int ktlsx_socket_clean_close(const ktlsx_socket *sock);
/* Directions in the kernel (KTLSX_KTLS_TX | KTLSX_KTLS_RX), and as text:
 * "tx+rx", "tx", "rx" or "off". */
int ktlsx_socket_ktls(const ktlsx_socket *sock);
const char *ktlsx_socket_ktls_name(const ktlsx_socket *sock);
/* Why a direction is not in the kernel ("" when both are, or mode is off). */
const char *ktlsx_socket_ktls_why(const ktlsx_socket *sock);

/* ---- 1.0: what the kernel offers (kernel TLS probe) ----
 *
 * A program that uses kernel TLS (a daemon, a file server) says at start
 * what this kernel can do; `ktlsx probe` prints the same report.  The probe
 * tries each thing for real on loopback TCP sockets of the calling process
 * (TCP_ULP "tls", then TLS_TX and TLS_RX with dummy keys per TLS version and
 * cipher, a second TLS_TX for TLS 1.3 re-keying) and asks generic netlink
 * for the "handshake" family, since distribution kernels backport features
 * and version numbers do not tell.  No record is ever sent.  It normally
 * takes milliseconds (a netlink socket that never answers is cut after 2 s),
 * needs no privileges, and may run on any thread. */

#define KTLSX_PROBE_VERSIONS 2 /* index 0: TLS 1.2, 1: TLS 1.3 */
#define KTLSX_PROBE_CIPHERS 3  /* index 0: aes-128-gcm, 1: aes-256-gcm, 2: chacha20-poly1305 */

struct ktlsx_probe_verdict {
    int accepted;  /* 1 the kernel took it, 0 not */
    char why[256]; /* when not: the reason, one line (e.g. "skipped: no tls ULP") */
};

struct ktlsx_probe_report {
    char kernel[160]; /* "Linux 6.12.38" (uname sysname and release) */
    int ulp;          /* 1 the tls ULP attaches to a TCP socket, 0 not (ulp_why says why) */
    char ulp_why[256];
    /* Per [version][cipher] (indices above) and direction. */
    struct ktlsx_probe_verdict tx[KTLSX_PROBE_VERSIONS][KTLSX_PROBE_CIPHERS];
    struct ktlsx_probe_verdict rx[KTLSX_PROBE_VERSIONS][KTLSX_PROBE_CIPHERS];
    struct ktlsx_probe_verdict rekey; /* TLS 1.3 KeyUpdate in the kernel (Linux >= 6.14 or a backport) */
    int handshake_genl;               /* "handshake" netlink family: 1 present, 0 absent, -1 query failed */
    char genl_why[256];
    int usable;                       /* 1: ULP and TLS 1.3 aes-128-gcm in both directions */
    char why[320];                    /* when not usable: why, one line */
};

/* Run the probe and fill *report (overwritten entirely).  Returns
 * report->usable (1 or 0), or -1 with errno EINVAL when report is NULL. */
int ktlsx_probe(struct ktlsx_probe_report *report);
/* Name of cipher index i ("aes-128-gcm", ...), "?" outside 0..KTLSX_PROBE_CIPHERS-1. */
const char *ktlsx_probe_cipher_name(int i);
/* The report as text, one line per capability (no newline), each handed to
 * `fn` as a ktlsx_log_fn sink gets its lines, so a daemon can pass the
 * function it gave ktlsx_config_set_log:
 *   kernel: Linux 6.12.38
 *   tls-ulp: yes                            or  tls-ulp: no (why)
 *   tls12-aes-128-gcm: tx=yes rx=yes        (6 lines: tls12/tls13 x the ciphers; a "no"
 *   ...                                      is followed by "(why)" or "(tx: why) (rx: why)")
 *   tls13-rekey: yes                        or  tls13-rekey: no (why)
 *   handshake-genl: yes                     or  handshake-genl: no (why)
 *   ktls: usable                            or  ktls: unavailable (why)
 * Every line is at KTLSX_LOG_INFO except "ktls: unavailable", at
 * KTLSX_LOG_WARNING.  This is the output of `ktlsx probe`, which scripts
 * parse: the format is stable.  `line` is valid during the call only.
 * Returns 0, or -1 with errno EINVAL when report or fn is NULL. */
int ktlsx_probe_lines(const struct ktlsx_probe_report *report, ktlsx_log_fn fn, void *arg);
/* ---- end of the kernel TLS probe ---- */

/* ---- issue 14: verified-chain cache ----
 * Peer chains that passed verification are remembered, per configuration and
 * trust store, so that the same chain (byte for byte, in the same role) is not
 * rebuilt and re-verified by every handshake.  The host name / IP check still
 * runs on every connection, and so does the verify callback
 * (ktlsx_config_set_verify_callback) with chain_ok as a full verification
 * would give it.  An entry is used only while every certificate of the
 * verified chain (trust anchor included) is within its validity and before
 * the earliest nextUpdate of the configured CRLs; setting a CA or CRL
 * (ktlsx_config_set_ca_file / _ca_mem / _crl_file / _crl_mem) empties it.
 * Chains that failed are never cached.
 * entries: how many chains, least recently used dropped first; 0 turns the
 * cache off.  At most 65536.  Default: 256 (each entry holds the parsed
 * leaf, its key and its subject, about 2–3 KB).
 * Returns 0, or -1 with the reason in ktlsx_config_error(cfg) (too many
 * entries, or configuration in use); -1 when cfg is NULL. */
#define KTLSX_VERIFY_CACHE_DEFAULT 256
#define KTLSX_VERIFY_CACHE_MAX 65536
int ktlsx_config_set_verify_cache(ktlsx_config *cfg, size_t entries);
/* ---- end of the verified-chain cache ---- */
/* ---- conf-b: handshake message size and linger after an alert (issue 13) ---- */

/* Largest handshake message accepted, in bytes: 16384 (16 KiB) .. 16777216
 * (16 MiB); default 131072 (128 KiB), enough for ClientHellos with large
 * extensions or padding and for long certificate chains.  A message whose
 * header announces more fails the handshake with illegal_parameter (as
 * OpenSSL's "excessive message size"), before its body is buffered.
 * Returns 0, or -1 (out of range, or the configuration is in use;
 * ktlsx_config_error names the value). */
int ktlsx_config_set_max_handshake_message(ktlsx_config *cfg, size_t bytes);

/* After a failed handshake (or any failure), before closing the fd: send
 * what is still queued (the alert), shut our sending side (the peer reads
 * the alert, then EOF), then read and discard whatever the peer still sends
 * until it closes, max_ms have passed or max_bytes were discarded.  Closing
 * with unread bytes would make the kernel send a reset, which can destroy the
 * alert before the peer reads it.  Blocks at most max_ms (1..60000) in all;
 * max_bytes 1..64 MiB (e.g. 1000 ms / 256 KiB).  The socket is finished for
 * TLS afterwards: free it and close the fd.  Returns 0 when the peer closed
 * (or reset) its side, 1 when a bound was reached first, -1 on a bad
 * argument or a socket error (ktlsx_socket_error says which). */
int ktlsx_socket_linger(ktlsx_socket *sock, int max_ms, size_t max_bytes);
/* Client: verify the server certificate against `name` (a DNS name, or an
 * IPv4/IPv6 literal matched against IP addresses) instead of the
 * server_name given to ktlsx_conn_new; the SNI sent does not change
 * (ktlsx_conn_set_sni sets that).  RFC 6125 §6: verify the identity the
 * client means to reach — e.g. connecting to an address while meaning
 * www.example.com: ktlsx_conn_new(cfg, "192.0.2.10"), then
 * ktlsx_conn_set_sni and ktlsx_conn_set_verify_name with "www.example.com"
 * (what `ktlsx client ADDR:PORT --sni NAME` does).  The library never
 * changes the verified name by itself: ktlsx_conn_set_sni keeps its meaning.
 * `name` is copied.  Before the first ktlsx_handshake only.  Returns 0, or
 * -1 (conn or name NULL, name empty or 256 bytes or more, a server
 * connection, or the handshake started; one line naming the value goes to
 * the configuration's log sink). */
int ktlsx_conn_set_verify_name(ktlsx_conn *conn, const char *name);
/* ---- end of conf-b ---- */
/* ---- issue 9: record_size_limit (RFC 8449) ----
 * Offer (client) or answer with (server) the record_size_limit extension:
 * `limit` is the value on the wire, 64..16385 — the largest record plaintext
 * the peer may send us; in TLS 1.3 it counts the content type byte, so the
 * content of a record is at most limit - 1 (16384 in TLS 1.2, where larger
 * values are sent as 16384).  0 (the default) sends nothing as a client; a
 * server always answers a client that offers the extension (with this limit,
 * or the protocol's maximum when it is 0) and from then on never sends that
 * client a record larger than its limit.  Records over our limit are refused
 * with record_overflow.  Returns 0, or -1 (out of range, configuration in use). */
int ktlsx_config_set_record_size_limit(ktlsx_config *cfg, unsigned limit);

/* The negotiated limit for one direction as the largest content (application
 * bytes) per record: KTLSX_TX = what the peer accepts from us, KTLSX_RX = what
 * we accept.  16384 when the extension was not negotiated; -1 if conn is NULL
 * or direction unknown.  Kernel TLS installs (ktlsx_ktls_start) apply the TX
 * value with TLS_TX_MAX_PAYLOAD_LEN. */
int ktlsx_record_size_limit(const ktlsx_conn *conn, int direction);
/* ---- end of record_size_limit ---- */
#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
