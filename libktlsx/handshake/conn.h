/* Internal state of a configuration and of one connection.
 *
 * The engine is a pure function of (state, input bytes) -> (state, output
 * bytes): nothing here does I/O.  The handshake is a flow of messages
 * (handshake/flow.c) each handled by its own file (one file per message,
 * holding both its writer and its handler). */
#ifndef KX_HANDSHAKE_CONN_H
#define KX_HANDSHAKE_CONN_H

#include <ktlsx/ktlsx.h>
#include "core/buf.h"
#include "crypto/crypto.h"
#include "crypto/x509.h"
#include "record/record.h"
#include "keysched/tls13.h"
#include "keysched/tls12.h"
#include "handshake/extensions.h"
#include "session/session.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define KX_MAX_CERTS 4
#define KX_MAX_SUITES 16
#define KX_MAX_GROUPS 8
#define KX_MAX_SIGALGS 24
#define KX_MAX_ALPN 256
#define KX_MAX_NAME 256
/* Largest handshake message the fuzz targets feed (the engine's limit is
 * the configuration's max_handshake_message, below). */
#define KX_MAX_HANDSHAKE_MESSAGE (64 * 1024)
/* conf-b: ktlsx_config_set_max_handshake_message — default and bounds. */
#define KX_HANDSHAKE_MESSAGE_DEFAULT (128 * 1024)
#define KX_HANDSHAKE_MESSAGE_MIN (16 * 1024)
#define KX_HANDSHAKE_MESSAGE_MAX (16 * 1024 * 1024)
/* Rejected 0-RTT data a server skips before giving up (RFC 8446 §4.2.10 asks
 * for "up to max_early_data_size"; we never grant any, so this bounds what an
 * unprovisioned client may send on its own: two full protected records). */
#define KX_MAX_SKIPPED_EARLY_DATA (2 * (16384 + 256))
/* TLS 1.2 warning alerts accepted in a row (OpenSSL allows 5 as well). */
#define KX_MAX_WARNING_ALERTS 5

struct ktlsx_config {
    enum ktlsx_role role;
    char error[512];

    kx_certkey certs[KX_MAX_CERTS];
    size_t cert_count;

    char *ca_file, *crl_file;
    kx_trust *trust;            /* built on first use (lazily: the system store is slow to load) */
    pthread_mutex_t trust_lock;
    bool insecure;
    enum ktlsx_verify_client verify_client;

    uint16_t suites[KX_MAX_SUITES];
    size_t suite_count;
    uint16_t groups[KX_MAX_GROUPS];
    size_t group_count;
    uint16_t sigalgs[KX_MAX_SIGALGS]; /* what we accept from the peer, in preference order */
    size_t sigalg_count;
    uint8_t alpn[KX_MAX_ALPN];        /* wire format: len-prefixed names */
    size_t alpn_len;
    uint16_t min_version, max_version;

    /* resumption (server) */
    kx_session_cache *session_cache;  /* TLS 1.2 session IDs; NULL = off */
    kx_ticket_keys tickets;           /* session/ticket.c: seal with [0], open with all */
    bool tickets_enabled;
    unsigned tickets13;               /* NewSessionTickets per TLS 1.3 connection */
    uint32_t ticket_lifetime;
    bool psk_ke;                      /* also accept psk_ke (no (EC)DHE) for resumption */
    /* external PSK (TLS 1.3, RFC 8446 §4.2.11; NVMe/TCP style) */
    char psk_identity[256];
    uint8_t psk[64];
    size_t psk_len;
    kx_hash_id psk_hash;
    /* TLS 1.2 policy */
    bool require_ems;                 /* client: refuse servers without extended master secret */
    bool legacy_rsa_kx;               /* allow TLS_RSA_WITH_* (no forward secrecy) */
    bool fallback_scsv;               /* client: send TLS_FALLBACK_SCSV */

    FILE *keylog;
    pthread_mutex_t keylog_lock;
    FILE *trace;

    /* log sink (handshake/log.c): NULL = one line on stderr */
    ktlsx_log_fn log_fn;
    void *log_arg;
    /* ---- 1.0: memory inputs (ktlsx_config_set_ca_mem / _crl_mem) ----
     * The trust store is built from the CA and the CRL input together, so
     * setting one rebuilds it from the other's bytes kept here; ca_file and
     * crl_file above then name the inputs in messages (a path or "CA buffer"). */
    uint8_t *ca_data, *crl_data;      /* NULL: system store / no CRL */
    size_t ca_len, crl_len;
    /* ---- 1.0: configuration lifetime and hooks (handshake/hooks.c) ---- */
    atomic_uint refs;                 /* ktlsx_config_ref / ktlsx_config_free; freed at 0 */
    atomic_uint conns;                /* connections on it: "in use" while > 0, setters refuse */
    pthread_rwlock_t change_lock;     /* setters hold it for writing, ktlsx_conn_new for reading */
    ktlsx_sni_fn sni_fn;              /* virtual hosts: may move the connection to another config */
    void *sni_arg;
    ktlsx_psk_fn psk_fn;              /* external PSKs by identity */
    void *psk_arg;
    ktlsx_verify_fn verify_fn;        /* extra step after the library's chain verification */
    void *verify_arg;
    struct ktlsx_session_store store; /* TLS 1.2 session IDs behind session_cache; store.get NULL = none */
    /* ---- issue 14: verified-chain cache (crypto/x509.c), applied to the
     * trust store by kx_config_trust ---- */
    size_t verify_cache_entries;      /* 0 = off */
    /* ---- conf-b: largest handshake message accepted (ktlsx_config_set_max_handshake_message) ---- */
    size_t max_handshake_message;
    /* ---- issue 12: the memcached session store behind `store` (session/memcached.c); NULL = none ---- */
    struct kx_memcached *memcached;
    /* ---- issue 9 (helper rsl): record_size_limit we advertise (RFC 8449 value); 0 = not offered ---- */
    uint16_t record_size_limit;
};

/* issue 12: session/memcached.c */
struct kx_memcached;
void kx_memcached_free(struct kx_memcached *m);
void kx_memcached_stats(const struct kx_memcached *m, struct ktlsx_session_stats *out);

/* One log line through the configuration's sink (handshake/log.c). */
void kx_log(const ktlsx_config *cfg, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Messages of every flow; the order here is not the order on the wire. */
typedef enum {
    KX_MSG_CLIENT_HELLO,
    KX_MSG_HELLO_RETRY_REQUEST,
    KX_MSG_SERVER_HELLO,
    KX_MSG_ENCRYPTED_EXTENSIONS,
    KX_MSG_CERTIFICATE_REQUEST,
    KX_MSG_SERVER_CERTIFICATE,
    KX_MSG_SERVER_CERTIFICATE_VERIFY,
    KX_MSG_SERVER_FINISHED,
    KX_MSG_CLIENT_CERTIFICATE,
    KX_MSG_CLIENT_CERTIFICATE_VERIFY,
    KX_MSG_CLIENT_FINISHED,
    /* TLS 1.2 only */
    KX_MSG_SERVER_KEY_EXCHANGE,
    KX_MSG_SERVER_HELLO_DONE,
    KX_MSG_CLIENT_KEY_EXCHANGE,
    KX_MSG_CLIENT_CHANGE_CIPHER_SPEC, /* a record, not a handshake message; in the flow all the same */
    KX_MSG_SERVER_CHANGE_CIPHER_SPEC,
    KX_MSG_NEW_SESSION_TICKET,
    KX_MSG_END,
    KX_MSG_COUNT
} kx_msg;

/* Handshake message types on the wire (RFC 8446 §4). */
enum {
    KX_HS_HELLO_REQUEST = 0, /* TLS 1.2 only; refused */
    KX_HS_CLIENT_HELLO = 1,
    KX_HS_SERVER_HELLO = 2,
    KX_HS_NEW_SESSION_TICKET = 4,
    KX_HS_END_OF_EARLY_DATA = 5,
    KX_HS_ENCRYPTED_EXTENSIONS = 8,
    KX_HS_CERTIFICATE = 11,
    KX_HS_SERVER_KEY_EXCHANGE = 12,
    KX_HS_CERTIFICATE_REQUEST = 13,
    KX_HS_SERVER_HELLO_DONE = 14,
    KX_HS_CERTIFICATE_VERIFY = 15,
    KX_HS_CLIENT_KEY_EXCHANGE = 16,
    KX_HS_FINISHED = 20,
    KX_HS_KEY_UPDATE = 24,
    KX_HS_MESSAGE_HASH = 254,
};

#define KX_MAX_FLOW 16

struct ktlsx_conn {
    ktlsx_config *cfg;
    enum ktlsx_role role;

    /* ---- progress ---- */
    kx_msg flow[KX_MAX_FLOW];   /* the messages of this handshake, in wire order */
    size_t flow_pos;
    bool hrr;                   /* a HelloRetryRequest was sent / received */
    bool cert_requested;        /* server sent CertificateRequest */
    bool client_cert_empty;     /* client answered with an empty Certificate */
    bool send_ticket12;         /* TLS 1.2 server: a NewSessionTicket is part of this flow */
    bool expect_ccs, got_ccs;   /* TLS 1.2: waiting for / received the peer's ChangeCipherSpec */
    bool handshake_done;
    bool failed;
    bool peer_closed;           /* close_notify received */
    uint8_t warning_alerts;     /* TLS 1.2 warnings ignored in a row (bounded: no alert flood) */
    size_t early_data_skip;     /* server: bytes of rejected 0-RTT records it may still skip */
    bool eof;                   /* TCP EOF fed */
    const char *error;
    uint8_t alert;

    /* ---- bytes in and out ---- */
    kx_buf in;                  /* raw received bytes; those from in_off on are not yet parsed */
    size_t in_off;              /* consumed prefix of `in` (no memmove per record: bulk input stays O(n)) */
    kx_buf out;                 /* protected records waiting to be sent */
    kx_buf out_lent;            /* records handed out by ktlsx_pending_output and not yet
                                 * acknowledged: never moved or grown while lent (an io_uring
                                 * send may be reading them); new records queue in `out` */
    kx_buf hs_in;               /* decrypted handshake bytes not yet consumed as messages */
    kx_buf hs_out;              /* handshake messages not yet put into records (same keys) */
    kx_buf app_in;              /* decrypted application data not yet read */
    size_t app_in_off;
    kx_record_dir tx, rx;
    uint64_t hs_in_msgs;        /* messages taken, to reject key changes mid-record */

    /* ---- negotiated ---- */
    uint16_t version;
    const kx_suite *suite;
    uint16_t group;             /* key exchange group (0 = none) */
    uint16_t peer_sigalg;       /* sigalg of the peer's CertificateVerify */
    uint16_t our_sigalg;        /* sigalg we sign with */
    const kx_certkey *our_cert; /* chosen certificate (server; client when requested) */
    bool resumed;
    bool resumed_from_store;          /* issue 12: TLS 1.2 server, the session came from the external store */
    char alpn[KX_MAX_NAME];
    char server_name[KX_MAX_NAME];  /* client: name to verify; server: SNI received */
    char sni[KX_MAX_NAME];          /* client: SNI to send ("" = none) */
    char peer_subject[KX_MAX_NAME];
    EVP_PKEY *peer_key;

    /* ---- handshake working state ---- */
    uint8_t client_random[32], server_random[32];
    uint8_t session_id[32];
    size_t session_id_len;
    EVP_PKEY *kex_key;          /* our ephemeral private key */
    uint16_t kex_group;         /* the group of kex_key */
    kx_buf kex_pub;             /* our key share as sent (server: written in ServerHello) */
    uint8_t ecdhe[80];          /* (EC)DHE shared secret until the key schedule takes it */
    size_t ecdhe_len;
    uint8_t psk_modes;          /* client's psk_key_exchange_modes: bit 0 psk_ke, bit 1 psk_dhe_ke */
    uint8_t cookie[64];         /* HRR cookie: server sets, client echoes */
    size_t cookie_len;
    uint8_t cr_context[255];    /* CertificateRequest context (echoed in client Certificate) */
    size_t cr_context_len;
    uint16_t peer_sigalgs[KX_MAX_SIGALGS]; /* peer's signature_algorithms (CH or CR) */
    size_t peer_sigalg_count;
    uint32_t sent_exts;         /* extensions we sent in ClientHello (bitmask of kx_ext index) */
    kx_transcript transcript;
    kx_tls13_ks ks;
    uint8_t th[KX_MAX_HASH];    /* transcript hash before the message being handled */
    const uint8_t *msg_raw;     /* the message being handled, header included */
    size_t msg_raw_len;

    /* ---- TLS 1.2 ---- */
    uint8_t master[KX_TLS12_MASTER];
    bool ems;                   /* extended master secret negotiated */
    bool offered_ems;           /* server: the client offered it */
    bool secure_renegotiation;  /* renegotiation_info seen */
    bool client_offered_ticket; /* server: the client sent a session_ticket extension */
    bool client_offered_13;     /* server: the client offered TLS 1.3 */
    kx_tls12_keys keys12;       /* key block, installed at ChangeCipherSpec */
    uint16_t ske_group;

    /* ---- resumption ---- */
    kx_session session;         /* client: offered / obtained; server: the resumed one */
    bool have_session;          /* client: session holds something to offer */
    bool offered_psk;           /* client: pre_shared_key sent */
    bool psk_external;          /* the PSK in use is the external one */
    bool psk_dhe;               /* TLS 1.3 resumption with (EC)DHE */
    uint8_t psk[KX_MAX_HASH];   /* TLS 1.3 PSK in use */
    size_t psk_len;
    uint16_t selected_identity; /* TLS 1.3: index of the PSK identity the server chose (pre_shared_key) */
    bool new_session;           /* client: session was refreshed by this connection */

    /* ---- kernel TLS ---- */
    int ktls_active;            /* KTLSX_KTLS_TX | KTLSX_KTLS_RX now in the kernel */

    /* ---- post-handshake ---- */
    kx_buf ticket;              /* last NewSessionTicket received (raw body) */
    /* With TX in the kernel the engine cannot seal records itself: what it must
     * send (alerts, KeyUpdate) waits here as plaintext control records until the
     * caller's socket flushes them through the kernel (ktlsx_ktls_flush).  Entries:
     * type (1 byte; KX_CTL_REKEY_TX = re-key TX now), length (2), bytes. */
    kx_buf ctl_out;
    size_t ctl_out_sent;        /* bytes of the first entry's payload already sent */
    bool rekey_rx_due;          /* RX is in the kernel and the peer updated its keys */
    /* Our KeyUpdates waiting in ctl_out (kernel TX): one of them answers every
     * update_requested received meanwhile (RFC 8446 §4.6.3). */
    uint8_t key_updates_queued;

    /* ---- 1.0: the peer's certificate chain (ktlsx_peer_cert_der) ---- */
    uint8_t *peer_chain;        /* the peer's DER certificates back to back (one allocation) */
    size_t peer_chain_off[KX_MAX_CHAIN + 1]; /* certificate i is [off[i], off[i + 1]) */
    size_t peer_cert_count;

    /* ---- conformance (issue 13, helper conf-a) ---- */
    bool offered_point_formats; /* server: the TLS 1.2 ClientHello carried ec_point_formats (RFC 8422 §5.2) */
    /* ---- conf-b: RFC 8446 §5 dummy change_cipher_spec, at most one per peer flight ---- */
    bool ccs13_seen;            /* TLS 1.3: the peer's current flight already had its compatibility CCS */
    /* ---- issue 9 (helper rsl): record_size_limit (RFC 8449), as values on the wire ---- */
    bool rsl_negotiated;        /* both sides sent the extension */
    uint16_t rsl_peer;          /* the peer's value: what we may send (0 = not negotiated) */
    uint16_t rsl_ours;          /* the value we sent: what the peer may send us */
};

/* ctl_out entry type: not a record but "derive the next TX secret and install it". */
#define KX_CTL_REKEY_TX 0

/* ---- helpers shared by the message files ---- */

/* Records queued for the peer, lent or not. */
static inline size_t kx_out_pending(const ktlsx_conn *c) { return c->out_lent.len + c->out.len; }

/* Received bytes not yet taken as records. */
static inline size_t kx_in_left(const ktlsx_conn *c) { return c->in.len - c->in_off; }

/* Record the failure (first one wins: the state is sticky) and queue the alert. */
void kx_conn_fail(ktlsx_conn *c, kx_result r);

/* Start / finish a handshake message in hs_out; finish adds it to the transcript. */
KX_RESULT kx_hs_begin(ktlsx_conn *c, uint8_t type, size_t *mark);
KX_RESULT kx_hs_end(ktlsx_conn *c, size_t mark);
/* Put pending handshake messages into records under the current TX keys. */
KX_RESULT kx_hs_flush(ktlsx_conn *c);
/* Switch a direction to new TLS 1.3 traffic keys derived from `secret`. */
KX_RESULT kx_set_traffic_secret(ktlsx_conn *c, kx_record_dir *dir, const uint8_t *secret);

/* Key log (NSS format) and trace. */
void kx_keylog(ktlsx_conn *c, const char *label, const uint8_t *secret, size_t len);
void kx_trace(ktlsx_conn *c, bool from_client, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline bool kx_tracing(const ktlsx_conn *c) { return c->cfg->trace != NULL; }
/* The direction of a message we send. */
static inline bool kx_we_are_client(const ktlsx_conn *c) { return c->role == KTLSX_CLIENT; }

/* Pick our signature algorithm for `key` from the peer's list; 0 if none fits. */
uint16_t kx_choose_sigalg(const ktlsx_conn *c, EVP_PKEY *key);
bool kx_list_has(const uint16_t *list, size_t n, uint16_t v);
/* Copy a string, truncating to fit (names and subjects are display data). */
void kx_copy_str(char *dst, size_t cap, const char *src);

/* Flow (handshake/flow.c): the message sequence of this handshake, rebuilt
 * whenever a decision changes it (HRR, CertificateRequest, empty client
 * Certificate).  Positions already passed never change. */
void kx_flow_rebuild(ktlsx_conn *c);
/* The peer sent `hs_type` where another message was due: if it is an optional
 * message of this flow, adjust the flow and return true. */
bool kx_flow_accept_optional(ktlsx_conn *c, uint8_t hs_type);
const char *kx_msg_name(kx_msg m);

/* Forget the peer's certificate chain (certificate.c; wiped). */
void kx_peer_chain_clear(ktlsx_conn *c);
/* ---- 1.0: configuration lifetime and hooks (handshake/hooks.c) ---- */
/* Setters: take the configuration for a change (write lock) or refuse with
 * "in use" in cfg->error; the guard releases the lock when it goes out of
 * scope, so one line at the top of a setter covers every return path. */
typedef struct { ktlsx_config *cfg; } kx_config_change;
bool kx_config_change_begin(ktlsx_config *cfg, kx_config_change *g);
void kx_config_change_end(kx_config_change *g);
#define KX_CONFIG_CHANGE(cfg)                                                                   \
    kx_config_change kx_change__ __attribute__((cleanup(kx_config_change_end))) = { NULL };    \
    if (!kx_config_change_begin((cfg), &kx_change__)) return -1
/* A connection starts / stops using cfg (reference + in-use count). */
void kx_config_attach(ktlsx_config *cfg);
void kx_config_detach(ktlsx_config *cfg);
/* Hook points in the handshake. */
KX_RESULT kx_hook_sni(ktlsx_conn *c);
/* PSK callback for one offered identity: *found, and the key in secret/len/hash. */
KX_RESULT kx_hook_psk(ktlsx_conn *c, const uint8_t *id, size_t idlen, bool *found, uint8_t *secret,
                      size_t cap, uint8_t *len, kx_hash_id *hash);
/* After the library's chain verification: `chain` is its verdict (returned as
 * is without a callback), chain_ok whether it verified and passed. */
KX_RESULT kx_hook_verify(ktlsx_conn *c, bool chain_ok, kx_result chain, const uint8_t *const *der,
                         const size_t *der_len, size_t n);
bool kx_store_enabled(const ktlsx_config *cfg);
void kx_store_put(ktlsx_conn *c, const kx_session *s);
bool kx_store_get(ktlsx_conn *c, const uint8_t *id, size_t idlen, kx_session *out);
void kx_store_remove(ktlsx_conn *c);

/* The verification store (config.c); NULL with *err set if it cannot be loaded. */
kx_trust *kx_config_trust(ktlsx_config *cfg, const char **err);

/* Message writers and handlers: one pair per file. The handler gets the
 * message body; the message (header + body) is already in the transcript and
 * c->th holds the transcript hash before it. */
#define KX_MESSAGE(name)                                   \
    KX_RESULT kx_##name##_write(ktlsx_conn *c);            \
    KX_RESULT kx_##name##_handle(ktlsx_conn *c, kx_reader *body)
KX_MESSAGE(client_hello);
KX_RESULT kx_hello_retry_request_write(ktlsx_conn *c); /* the client handles it in kx_server_hello_handle */
KX_MESSAGE(server_hello);
KX_MESSAGE(encrypted_extensions);
KX_MESSAGE(certificate_request);
KX_MESSAGE(certificate);
KX_MESSAGE(certificate_verify);
KX_MESSAGE(finished);
KX_MESSAGE(server_key_exchange);
KX_MESSAGE(server_hello_done);
KX_MESSAGE(client_key_exchange);
KX_MESSAGE(change_cipher_spec);
KX_MESSAGE(new_session_ticket12);
/* TLS 1.3 NewSessionTickets after the server's handshake (new_session_ticket.c). */
KX_RESULT kx_new_session_tickets13_write(ktlsx_conn *c);

/* PSK binders (handshake/psk.c). partial_ch: the ClientHello up to its binders. */
KX_RESULT kx_psk_binder(ktlsx_conn *c, kx_hash_id h, const uint8_t *psk, size_t psklen, bool external,
                        const uint8_t *partial_ch, size_t partial_len, uint8_t *binder);
bool kx_psk_offer(ktlsx_conn *c, const uint8_t **identity, size_t *idlen, uint32_t *age, kx_hash_id *hash);

/* Decrypt every complete record already received (application data is kept
 * for ktlsx_read, post-handshake messages are handled). */
KX_RESULT kx_drain_records(ktlsx_conn *c);

/* The one receive path for record contents, whichever record layer opened the
 * record (the engine's, or the kernel's, handing us the type from its cmsg):
 * alerts, handshake bytes (into hs_in), ChangeCipherSpec, application data
 * (appended to app_in when keep_app_data, else only checked: the kernel path
 * hands it to the caller directly). */
KX_RESULT kx_receive_plaintext(ktlsx_conn *c, uint8_t type, const uint8_t *plain, size_t len, bool keep_app_data);
/* The one post-handshake dispatcher (post_handshake.c): handle the complete
 * messages in hs_in — NewSessionTicket, KeyUpdate, refused renegotiation.
 * Whatever must be sent is queued (records in `out`, or control records in
 * ctl_out when TX is in the kernel); nothing is sent from here. */
KX_RESULT kx_handle_post_handshake(ktlsx_conn *c);
/* Queue an alert: a record under the current keys, or a control record when TX is in the kernel. */
void kx_queue_alert(ktlsx_conn *c, uint8_t level, uint8_t desc);
/* Queue a plaintext control record for a kernel TX (see ctl_out). */
KX_RESULT kx_control_queue(ktlsx_conn *c, uint8_t type, const uint8_t *data, size_t len);
/* Move the first `len` bytes of hs_in (one message) into `scratch` (reserved by the caller). */
void kx_take_message(ktlsx_conn *c, size_t len, kx_buf *scratch);

/* ---- issue 9 (helper rsl): record_size_limit (handshake/record_size_limit.c) ----
 * Client: the value to offer in the ClientHello (0 = none), capped for the
 * highest version offered. */
uint16_t kx_rsl_offer(const ktlsx_conn *c, bool offer13);
/* Server: the client's extension (called once the version is chosen): checks
 * it, takes the peer's value, picks ours to answer with and applies both. */
KX_RESULT kx_rsl_server_accept(ktlsx_conn *c, kx_reader d);
/* Client: the server's answer (EncryptedExtensions or TLS 1.2 ServerHello). */
KX_RESULT kx_rsl_client_accept(ktlsx_conn *c, kx_reader d);
/* Server: write our answer (nothing unless negotiated) into hs_out. */
KX_RESULT kx_rsl_write_answer(ktlsx_conn *c);
/* Set tx/rx max_plain from the negotiated values (also after an import). */
void kx_rsl_apply(ktlsx_conn *c);

/* The server's ALPN choice, checked against our offer (encrypted_extensions.c). */
KX_RESULT kx_accept_server_alpn(ktlsx_conn *c, kx_reader d);

/* After the last handshake message (handshake/complete.c). */
KX_RESULT kx_handshake_complete(ktlsx_conn *c);
/* ---- memory: what a finished connection keeps (handshake/complete.c) ----
 * Frees and wipes what only the handshake needed: the transcript, the
 * ephemeral key and its share, the peer's public key, the master and
 * exporter secrets of TLS 1.3, and every byte buffer that is empty (in, out,
 * hs_in, hs_out, app_in, ctl_out: they grow back if post-handshake traffic
 * needs them).  Keeps what the post-handshake paths and the getters read:
 * the traffic and resumption secrets, the TLS 1.2 master secret and session
 * ID (export), the session, suite, version, names and the peer chain.
 * Called when the handshake completes and when ktlsx_ktls_start has moved a
 * direction into the kernel; safe to call again at any point after. */
void kx_release_handshake_memory(ktlsx_conn *c);

/* ---- conformance (issue 13, helper conf-a) ----
 * The peer's signature_algorithms list (ClientHello or CertificateRequest
 * body, `list` = the vector's contents) read to its end into
 * c->peer_sigalgs, keeping the peer's order but only the schemes the
 * configuration accepts (every choice is made among those anyway), so no
 * usable scheme is lost to a long list (certificate_request.c). */
KX_RESULT kx_read_peer_sigalgs(ktlsx_conn *c, kx_reader list);

/* ServerHello.random sentinel for a TLS 1.2 ServerHello from a 1.3-capable server (RFC 8446 §4.1.3). */
extern const uint8_t kx_downgrade_tls12[8];
/* Post-handshake messages. */
KX_RESULT kx_new_session_ticket13_handle(ktlsx_conn *c, kx_reader *body);
KX_RESULT kx_key_update_write(ktlsx_conn *c, bool request_update);
KX_RESULT kx_key_update_handle(ktlsx_conn *c, kx_reader *body);

#endif
