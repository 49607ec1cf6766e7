/* ktlsx command-line tool: declarations shared by the subcommands.
 *
 * Each subcommand lives in its own file (client.c, server.c, probe.c);
 * common.c holds what they share: option handling for the TLS
 * configuration, TCP helpers, the handshake loop and the data path.
 */
#ifndef KTLSX_CLI_H
#define KTLSX_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <ktlsx/ktlsx.h>

/* Process exit statuses. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1, /* TLS, network or I/O failure */
    CLI_EXIT_USAGE = 2,   /* bad command line or configuration */
};

/* A peer that stalls during the handshake (or a connect that never
 * completes) is cut after this long, so nothing hangs forever. */
#define CLI_HANDSHAKE_TIMEOUT_MS 30000
/* A client whose stdin has ended stops once the peer has been quiet this long. */
#define CLI_CLIENT_IDLE_AFTER_STDIN_EOF_MS 2000

/* ---- subcommands ---- */

int ktlsx_cmd_client(int argc, char **argv);
int ktlsx_cmd_server(int argc, char **argv);
int ktlsx_cmd_adopt(int argc, char **argv);

/* `ktlsx probe` (probe.c) */
#include "probe.h"

/* ---- command line ---- */

/* Print "ktlsx CMD: <message>" and a pointer to --help on stderr; returns
 * CLI_EXIT_USAGE so callers can `return cli_usage_error(...)`. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Report an unknown option or a missing option value after getopt_long
 * returned '?' or ':' (optstring starting with ':'). Returns CLI_EXIT_USAGE. */
int cli_getopt_error(const char *cmd, int opt, char **argv);

#define CLI_MAX_CERTS 8
#define CLI_MAX_TICKET_KEY_FILES 8

/* --ktls: what to do with kernel TLS once the handshake is done. */
enum cli_ktls_mode {
    CLI_KTLS_AUTO = 0, /* use it when the kernel takes it, else user space (one line says why) */
    CLI_KTLS_OFF,      /* user-space records only */
    CLI_KTLS_REQUIRE,  /* fail the connection without it */
};

/* A decimal count in [0, max] (no sign, no suffix). Returns 0 or -1. */
int cli_parse_count(const char *arg, unsigned long long max, unsigned long long *out);

/* getopt_long codes of the options that the client and the server take
 * the same way (CLI_TLS_LONG_OPTIONS); each subcommand numbers its own
 * options from CLI_OPT_SUBCOMMAND_FIRST so the two ranges never clash. */
enum cli_tls_option {
    CLI_OPT_CA = 256,
    CLI_OPT_CRL,
    CLI_OPT_CERT,
    CLI_OPT_KEY,
    CLI_OPT_ALPN,
    CLI_OPT_TLS_VERSION,
    CLI_OPT_CIPHERS,
    CLI_OPT_GROUPS,
    CLI_OPT_KEYLOG,
    CLI_OPT_TRACE,
    CLI_OPT_KTLS,
    CLI_OPT_PSK_IDENTITY,
    CLI_OPT_PSK_FILE,
    CLI_OPT_PSK_SHA384,
    CLI_OPT_PSK_KE,
    CLI_OPT_LEGACY_RSA_KX,
    CLI_OPT_MAX_HANDSHAKE_MESSAGE, /* conf-b */
    CLI_OPT_RECORD_SIZE_LIMIT,     /* issue 9 */
    CLI_OPT_SUBCOMMAND_FIRST,
};

/* The struct option entries for enum cli_tls_option, to splice into a
 * subcommand's long option table (which then adds its own and the
 * terminating entry). */
#define CLI_TLS_LONG_OPTIONS                                                \
    { "ca", required_argument, NULL, CLI_OPT_CA },                          \
    { "crl", required_argument, NULL, CLI_OPT_CRL },                        \
    { "cert", required_argument, NULL, CLI_OPT_CERT },                      \
    { "key", required_argument, NULL, CLI_OPT_KEY },                        \
    { "alpn", required_argument, NULL, CLI_OPT_ALPN },                      \
    { "tls-version", required_argument, NULL, CLI_OPT_TLS_VERSION },        \
    { "ciphers", required_argument, NULL, CLI_OPT_CIPHERS },                \
    { "groups", required_argument, NULL, CLI_OPT_GROUPS },                  \
    { "keylog", required_argument, NULL, CLI_OPT_KEYLOG },                  \
    { "trace", no_argument, NULL, CLI_OPT_TRACE },                          \
    { "ktls", required_argument, NULL, CLI_OPT_KTLS },                      \
    { "psk-identity", required_argument, NULL, CLI_OPT_PSK_IDENTITY },      \
    { "psk-file", required_argument, NULL, CLI_OPT_PSK_FILE },              \
    { "psk-sha384", no_argument, NULL, CLI_OPT_PSK_SHA384 },                \
    { "psk-ke", no_argument, NULL, CLI_OPT_PSK_KE },                        \
    { "legacy-rsa-kx", no_argument, NULL, CLI_OPT_LEGACY_RSA_KX },             \
    { "max-handshake-message", required_argument, NULL, CLI_OPT_MAX_HANDSHAKE_MESSAGE }, \
    { "record-size-limit", required_argument, NULL, CLI_OPT_RECORD_SIZE_LIMIT }

/* TLS settings that the client and the server take the same way. */
struct cli_tls_options {
    const char *cert_files[CLI_MAX_CERTS];
    const char *key_files[CLI_MAX_CERTS];
    size_t cert_count;
    size_t key_count;
    const char *ca_file;     /* NULL: system default store */
    const char *crl_file;
    const char *alpn;
    const char *ciphers;
    const char *groups;
    const char *keylog_file; /* NULL: $SSLKEYLOGFILE if set */
    uint16_t min_version;
    uint16_t max_version;
    int insecure;
    enum ktlsx_verify_client verify_client;
    int trace;
    /* External PSK (TLS 1.3): identity and a file holding the key in hex. */
    const char *psk_identity;
    const char *psk_file;
    int psk_sha384;
    int psk_ke;        /* also allow psk_ke (no (EC)DHE) */
    int legacy_rsa_kx; /* allow TLS 1.2 RSA key exchange */
    enum cli_ktls_mode ktls_mode; /* not part of the engine configuration */
    int require_ems;   /* client */
    int fallback_scsv; /* client */
    /* Server resumption; -1 = the engine's default. */
    long long tickets;
    long long session_cache;
    const char *ticket_key_files[CLI_MAX_TICKET_KEY_FILES];
    size_t ticket_key_file_count;
    /* issue 12: --session-store memcached:HOST:PORT[,...] (servers only, prefix removed),
     * --session-store-key FILE, --session-store-timeout MS (0 = the engine's default) */
    const char *session_store_servers;
    const char *session_store_key;
    unsigned session_store_timeout_ms;
    /* conf-b: largest handshake message in bytes; 0 = the engine's default */
    unsigned long long max_handshake_message;
    unsigned long record_size_limit; /* issue 9: RFC 8449 value; 0 = not offered */
};

void cli_tls_options_init(struct cli_tls_options *opts);
/* Take getopt_long's `opt` (with its `arg`) when it is one of enum
 * cli_tls_option, for `ktlsx client` or `ktlsx server` by `role` (a client
 * presents one certificate chain, a server up to CLI_MAX_CERTS). Returns 1
 * when taken, 0 when `opt` is the subcommand's own, or -1 after a usage
 * message for a bad value (exit status 2). */
int cli_parse_tls_option(enum ktlsx_role role, int opt, const char *arg,
                         struct cli_tls_options *opts);
/* After the options: --psk-identity, --psk-file and --psk-sha384 must come
 * as a whole. Returns -1 to go on, or CLI_EXIT_USAGE after the message. */
int cli_check_psk_options(enum ktlsx_role role, const struct cli_tls_options *opts);

/* Build the engine configuration. On a failing setter (or an unreadable
 * --psk-file) prints "ktlsx: <reason>" and returns NULL (exit status 2). */
ktlsx_config *cli_build_config(enum ktlsx_role role, const struct cli_tls_options *opts);

/* ---- TCP ---- */

/* HOST:PORT, [IPv6]:PORT. `host` has the brackets removed. */
struct cli_endpoint {
    char host[256];
    char port[64];
};

/* Returns 0, or -1 with a reason in *why. An empty host is accepted only
 * when allow_empty_host is set (":8443" = every local address). */
int cli_parse_endpoint(const char *arg, int allow_empty_host, struct cli_endpoint *ep,
                       const char **why);

/* Resolve and connect (TCP_NODELAY) within timeout_ms; prints the reason
 * and returns -1 on failure. */
int cli_connect_tcp(const struct cli_endpoint *ep, int timeout_ms);
/* Resolve, bind (SO_REUSEADDR) and listen; prints "ktlsx: listening on ..."
 * on success, the reason and returns -1 on failure. */
int cli_listen_tcp(const struct cli_endpoint *ep);
void cli_set_nodelay(int fd);

/* Milliseconds on the monotonic clock. */
int64_t cli_now_ms(void);
/* write() the whole buffer, retrying on EINTR and partial writes. */
int cli_write_all(int fd, const void *data, size_t len);

/* ---- TLS session over a connected socket ----
 *
 * The TLS work is libktlsx's socket layer (ktlsx_socket): handshake with a
 * deadline, kernel TLS or user-space records, control records.  What stays
 * here is the tool's own: its messages, --key-update-after, the stdio relay. */

struct cli_session;

/* Receives decrypted application data. Returns 0, or -1 after describing
 * the problem in the session's `error` (which stops the receive). */
typedef int (*cli_sink_fn)(struct cli_session *session, void *ctx, const uint8_t *data,
                           size_t len);

enum cli_recv_result {
    CLI_RECV_PROGRESS,     /* bytes were consumed (maybe no application data) */
    CLI_RECV_CLOSE_NOTIFY, /* peer sent close_notify */
    CLI_RECV_EOF,          /* peer closed TCP without close_notify */
    CLI_RECV_ERROR,        /* TLS or I/O failure, described in session->error */
};

struct cli_session {
    int fd;
    ktlsx_conn *conn;                    /* prepared by the caller; the socket owns it after the handshake starts */
    ktlsx_socket *sock;                  /* set by cli_session_handshake */
    enum cli_ktls_mode ktls_mode;        /* set before cli_session_handshake */
    /* --key-update-after: after this many application bytes sent (0 = never),
     * send one KeyUpdate with request_update = 1. */
    uint64_t key_update_after;
    uint64_t bytes_sent;
    int key_update_done;
    char error[512];
};

/* Free the socket and the connection (the fd stays open). */
void cli_session_free(struct cli_session *session);
/* Encrypt and send everything. Returns 0 or -1 (session->error set). */
int cli_session_send(struct cli_session *session, const void *data, size_t len);
/* Call when the socket is readable: read what has arrived, and every
 * plaintext byte goes to `sink`. */
enum cli_recv_result cli_session_recv(struct cli_session *session, cli_sink_fn sink, void *ctx);
/* Send exactly `len` bytes of `file_fd` from its current offset: sendfile(2)
 * when TX is in the kernel, else read and encrypt. Returns 0 or -1. */
int cli_session_send_file(struct cli_session *session, int file_fd, uint64_t len);

/* --sess-out: save the connection's session (mode 0600). Returns 0 or -1
 * (reported); no session is reported but not an error. */
int cli_save_session(const ktlsx_conn *conn, const char *path);

/* --handoff (handoff.c): export the established connection, start `ktlsx
 * adopt` and hand it the socket and the state over a unix socket; this
 * process then forgets the connection and waits. Returns the adopting
 * process's exit status (or 1 when the hand-off itself failed). */
int cli_handoff(struct cli_session *session, const char *sess_out);

/* A cli_sink_fn that writes the plaintext to stdout. */
int cli_sink_to_stdout(struct cli_session *session, void *ctx, const uint8_t *data, size_t len);

/* Run the handshake with CLI_HANDSHAKE_TIMEOUT_MS. On success selects the
 * data path (kernel TLS per session->ktls_mode), prints the "handshake ok"
 * summary line and returns 0; on failure prints "ktlsx: handshake failed:
 * ..." (or "ktlsx: connection failed: ..." when kernel TLS was required or
 * left the socket unusable) and returns -1. */
int cli_session_handshake(struct cli_session *session);

/* Plaintext decrypted before the switch to kernel TLS is still waiting: the
 * next recv delivers it without reading the socket, so poll loops must not
 * wait for the socket first. */
int cli_session_has_buffered(const struct cli_session *session);

/* Wait until the socket is readable or plaintext is buffered, at most
 * timeout_ms (-1: no limit). Returns 1 (go and recv), 0 (timed out) or -1
 * (poll failed: session->error set). */
int cli_session_wait_readable(struct cli_session *session, int timeout_ms);

/* --daemon (issue 8): hand session->fd to ktlsxd at `door` for a handshake
 * with its profile `profile`, then carry the connection it hands back
 * (session->conn and session->sock set, the summary line printed).
 * Returns 0, or -1 after a "ktlsx: handshake failed: ..." line. */
int cli_daemon_handshake(struct cli_session *session, enum ktlsx_role role, const char *door, const char *profile,
                         const char *server_name, const char *alpn);

/* Print "ktlsx: connection failed: <session->error>". */
void cli_session_report_failure(const struct cli_session *session);

/* Orderly end: send close_notify, shut down our sending side, and keep
 * reading briefly until the peer closes too, so that closing the socket
 * does not reset the connection under data the peer has not read yet.
 * What the peer still sends goes to `sink` (NULL: dropped). Errors are
 * ignored: the conversation is over either way. */
void cli_session_finish(struct cli_session *session, cli_sink_fn sink, void *ctx);

/* The stdio data phase: stdin goes to the peer, the peer's data to
 * stdout, until the peer closes (exit status 0) or the connection fails
 * (reported, 1). *stdin_open is cleared at stdin EOF; if
 * idle_after_stdin_eof_ms >= 0 the relay also ends, with close_notify,
 * once stdin is closed and the peer has been quiet that long. */
int cli_relay_stdio(struct cli_session *session, int *stdin_open, int idle_after_stdin_eof_ms);

#endif
