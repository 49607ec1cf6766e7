/* `ktlsx server --listen ADDR:PORT`: accept connections one at a time,
 * handshake, then echo, send a fixed reply, or relay stdio. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* --reply: how long to wait for the request before answering anyway. */
#define REPLY_REQUEST_WAIT_MS 5000
/* --sendfile: how long to wait for an HTTP request before sending the bare
 * file (peers such as `openssl s_client` send nothing first). */
#define SENDFILE_REQUEST_WAIT_MS 300

static const char server_usage[] =
    "usage: ktlsx server --listen ADDR:PORT --cert FILE --key FILE [options]\n"
    "       ktlsx server --listen ADDR:PORT --psk-identity ID --psk-file FILE [options]\n"
    "\n"
    "Accept TLS connections one at a time on ADDR:PORT (ADDR: name, IPv4,\n"
    "[IPv6] or empty for every address).\n"
    "\n"
    "  --listen ADDR:PORT        address to listen on\n"
    "  --cert FILE --key FILE    certificate chain and private key; repeat for\n"
    "                            more (e.g. RSA and ECDSA); optional with a PSK\n"
    "  --ca FILE                 trust anchors for client certificates\n"
    "  --crl FILE                certificate revocation list in PEM\n"
    "  --verify-client optional|require\n"
    "                            ask for a client certificate\n"
    "  --alpn LIST               accept these ALPN protocols\n"
    "  --tls-version 1.2|1.3     use only this version (default: both)\n"
    "  --ciphers LIST            cipher suites, comma-separated\n"
    "  --groups LIST             key exchange groups, e.g. x25519,P-256\n"
    "  --keylog FILE             write NSS key log (default: $SSLKEYLOGFILE)\n"
    "  --trace                   trace handshake messages on stderr\n"
    "  --ktls auto|off|require   after the handshake move the record layer into\n"
    "                            the kernel: auto (default) falls back to user\n"
    "                            space with one line saying why; require fails\n"
    "                            the connection without it\n"
    "  --tickets N               session tickets per TLS 1.3 connection (TLS 1.2\n"
    "                            sends one); 0 turns tickets off (default 2)\n"
    "  --no-tickets              same as --tickets 0\n"
    "  --ticket-key-file FILE    ticket key shared with other servers (48 or 80\n"
    "                            bytes, nginx layout); repeat: the first seals,\n"
    "                            all open (default: random keys, rotated hourly)\n"
    "  --rotate-ticket-keys-every SECONDS\n"
    "                            start sealing with a fresh random key when this\n"
    "                            long has passed (checked between connections;\n"
    "                            older keys still open tickets); not with\n"
    "                            --ticket-key-file\n"
    "  --session-cache N         TLS 1.2 session-ID cache entries; 0 = off\n"
    "                            (default 1024)\n"
    "  --session-store memcached:HOST:PORT[,HOST:PORT...]\n"
    "                            share TLS 1.2 sessions with other servers in\n"
    "                            memcached (behind the session cache); needs\n"
    "                            --session-store-key\n"
    "  --session-store-key FILE  key every server of the fleet holds (32..4096\n"
    "                            bytes, e.g. openssl rand 48): seals the entries\n"
    "                            and names them\n"
    "  --session-store-timeout MS\n"
    "                            bound on each memcached operation, 1..10000\n"
    "                            (default 200); past it: a full handshake\n"
    "  --psk-identity ID --psk-file FILE\n"
    "                            TLS 1.3 external PSK; FILE holds the key in hex\n"
    "                            (whitespace ignored)\n"
    "  --psk-sha384              bind the PSK to SHA-384 (default: SHA-256)\n"
    "  --psk-ke                  also allow PSK without (EC)DHE (psk_ke)\n"
    "  --legacy-rsa-kx           allow TLS 1.2 RSA key exchange (no forward\n"
    "                            secrecy)\n"
    "  --max-handshake-message BYTES\n"
    "                            largest handshake message accepted, 16384..\n"
    "                            16777216 (default 131072); past it the peer\n"
    "                            gets an illegal_parameter alert\n"
    "  --record-size-limit N\n"
    "                            RFC 8449: peers send us records of at most N\n"
    "                            bytes (64..16385; TLS 1.3 counts the type byte)\n"
    "  --echo                    send every byte received back\n"
    "  --reply TEXT              answer the first request with TEXT (as an\n"
    "                            HTTP response to GET/HEAD) and close\n"
    "  --sendfile FILE           send FILE's contents and close (sendfile(2)\n"
    "                            when TX is in the kernel); an HTTP GET/HEAD\n"
    "                            request gets an HTTP/1.1 200 header first\n"
    "  --once                    exit after the first connection with its status\n"
    "  --daemon SOCKET           let ktlsxd (its door at SOCKET) run each\n"
    "                            handshake with its server profile (the keys\n"
    "                            stay in the daemon), then carry the connection\n"
    "                            it hands back; no --cert/--key here\n"
    "  --profile NAME            the daemon's profile (default: default)\n"
    "  --help                    show this help\n"
    "\n"
    "Without --echo, --reply or --sendfile, data from the client goes to stdout\n"
    "and stdin goes to the client.\n";

/* The server's own options; the shared ones are enum cli_tls_option. */
enum server_option {
    OPT_LISTEN = CLI_OPT_SUBCOMMAND_FIRST,
    OPT_VERIFY_CLIENT,
    OPT_ECHO,
    OPT_REPLY,
    OPT_SENDFILE,
    OPT_ONCE,
    OPT_TICKETS,
    OPT_NO_TICKETS,
    OPT_TICKET_KEY_FILE,
    OPT_ROTATE_TICKET_KEYS,
    OPT_SESSION_CACHE,
    OPT_SESSION_STORE,
    OPT_SESSION_STORE_KEY,
    OPT_SESSION_STORE_TIMEOUT,
    OPT_DAEMON,
    OPT_PROFILE,
    OPT_HELP,
};

static const struct option server_long_options[] = {
    CLI_TLS_LONG_OPTIONS,
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "verify-client", required_argument, NULL, OPT_VERIFY_CLIENT },
    { "echo", no_argument, NULL, OPT_ECHO },
    { "reply", required_argument, NULL, OPT_REPLY },
    { "sendfile", required_argument, NULL, OPT_SENDFILE },
    { "once", no_argument, NULL, OPT_ONCE },
    { "tickets", required_argument, NULL, OPT_TICKETS },
    { "no-tickets", no_argument, NULL, OPT_NO_TICKETS },
    { "ticket-key-file", required_argument, NULL, OPT_TICKET_KEY_FILE },
    { "rotate-ticket-keys-every", required_argument, NULL, OPT_ROTATE_TICKET_KEYS },
    { "session-cache", required_argument, NULL, OPT_SESSION_CACHE },
    { "session-store", required_argument, NULL, OPT_SESSION_STORE },
    { "session-store-key", required_argument, NULL, OPT_SESSION_STORE_KEY },
    { "session-store-timeout", required_argument, NULL, OPT_SESSION_STORE_TIMEOUT },
    { "daemon", required_argument, NULL, OPT_DAEMON },
    { "profile", required_argument, NULL, OPT_PROFILE },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

/* What the server does with a connection after the handshake. */
enum server_mode {
    SERVER_RELAY_STDIO, /* like `openssl s_server`: peer → stdout, stdin → peer */
    SERVER_ECHO,
    SERVER_REPLY,
    SERVER_SENDFILE,
};

struct server_options {
    struct cli_tls_options tls;
    struct cli_endpoint listen;
    int have_listen;
    enum server_mode mode;
    const char *reply_text;
    const char *sendfile_path;
    int once;
    unsigned long long rotate_every_s; /* 0: never */
    const char *daemon;                /* --daemon: ktlsxd's door; NULL: handshakes run here */
    const char *profile;               /* --profile: the daemon's server profile */
};

/* State that outlives one connection. */
struct server_state {
    const struct server_options *opts;
    ktlsx_config *cfg;
    int stdin_open; /* stdin EOF ends input for every later connection too */
    int64_t keys_since_ms; /* when the ticket keys were last rotated */
};

/* Name of the data-phase option that set `mode`, for conflict messages. */
static const char *mode_option(enum server_mode mode)
{
    switch (mode) {
    case SERVER_ECHO:
        return "--echo";
    case SERVER_REPLY:
        return "--reply";
    case SERVER_SENDFILE:
        return "--sendfile";
    case SERVER_RELAY_STDIO:
    default:
        return "";
    }
}

/* Returns -1 to go on, or the exit status (help shown, usage error). */
static int parse_server_options(int argc, char **argv, struct server_options *opts)
{
    const char *why;
    unsigned long long count;
    int opt;
    int status;

    memset(opts, 0, sizeof *opts);
    cli_tls_options_init(&opts->tls);
    opts->mode = SERVER_RELAY_STDIO;
    opts->profile = "default";
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", server_long_options, NULL)) != -1) {
        int taken = cli_parse_tls_option(KTLSX_SERVER, opt, optarg, &opts->tls);

        if (taken < 0)
            return CLI_EXIT_USAGE;
        if (taken > 0)
            continue;
        switch (opt) {
        case OPT_LISTEN:
            if (cli_parse_endpoint(optarg, 1, &opts->listen, &why) < 0)
                return cli_usage_error("server", "--listen '%s': %s", optarg, why);
            opts->have_listen = 1;
            break;
        case OPT_VERIFY_CLIENT:
            if (strcmp(optarg, "optional") == 0)
                opts->tls.verify_client = KTLSX_VERIFY_OPTIONAL;
            else if (strcmp(optarg, "require") == 0)
                opts->tls.verify_client = KTLSX_VERIFY_REQUIRE;
            else
                return cli_usage_error(
                    "server", "--verify-client must be optional or require, not '%s'", optarg);
            break;
        case OPT_ECHO:
        case OPT_REPLY:
        case OPT_SENDFILE: {
            enum server_mode mode = opt == OPT_ECHO    ? SERVER_ECHO
                                    : opt == OPT_REPLY ? SERVER_REPLY
                                                       : SERVER_SENDFILE;
            if (opts->mode != SERVER_RELAY_STDIO && opts->mode != mode)
                return cli_usage_error("server", "%s and %s exclude each other",
                                       mode_option(opts->mode), mode_option(mode));
            opts->mode = mode;
            if (opt == OPT_REPLY)
                opts->reply_text = optarg;
            if (opt == OPT_SENDFILE)
                opts->sendfile_path = optarg;
            break;
        }
        case OPT_TICKETS:
            if (cli_parse_count(optarg, 255, &count) < 0)
                return cli_usage_error("server", "--tickets needs a count 0..255, not '%s'",
                                       optarg);
            opts->tls.tickets = (long long)count;
            break;
        case OPT_NO_TICKETS:
            opts->tls.tickets = 0;
            break;
        case OPT_TICKET_KEY_FILE:
            if (opts->tls.ticket_key_file_count == CLI_MAX_TICKET_KEY_FILES)
                return cli_usage_error("server", "at most %d --ticket-key-file options",
                                       CLI_MAX_TICKET_KEY_FILES);
            opts->tls.ticket_key_files[opts->tls.ticket_key_file_count++] = optarg;
            break;
        case OPT_ROTATE_TICKET_KEYS:
            if (cli_parse_count(optarg, 100000000ULL, &count) < 0 || count == 0)
                return cli_usage_error(
                    "server", "--rotate-ticket-keys-every needs seconds > 0, not '%s'", optarg);
            opts->rotate_every_s = count;
            break;
        case OPT_SESSION_CACHE:
            if (cli_parse_count(optarg, 100000000ULL, &count) < 0)
                return cli_usage_error("server",
                                       "--session-cache needs an entry count, not '%s'", optarg);
            opts->tls.session_cache = (long long)count;
            break;
        case OPT_SESSION_STORE:
            if (strncmp(optarg, "memcached:", 10) != 0 || optarg[10] == '\0')
                return cli_usage_error("server", "--session-store takes memcached:HOST:PORT[,HOST:PORT...], not '%s'",
                                       optarg);
            opts->tls.session_store_servers = optarg + 10;
            break;
        case OPT_SESSION_STORE_KEY:
            opts->tls.session_store_key = optarg;
            break;
        case OPT_SESSION_STORE_TIMEOUT:
            if (cli_parse_count(optarg, 10000, &count) < 0 || count == 0)
                return cli_usage_error("server", "--session-store-timeout needs milliseconds 1..10000, not '%s'",
                                       optarg);
            opts->tls.session_store_timeout_ms = (unsigned)count;
            break;
        case OPT_ONCE:
            opts->once = 1;
            break;
        case OPT_DAEMON:
            opts->daemon = optarg;
            break;
        case OPT_PROFILE:
            opts->profile = optarg;
            break;
        case OPT_HELP:
        case 'h':
            fputs(server_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_getopt_error("server", opt, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error("server", "unexpected argument '%s'", argv[optind]);
    if (!opts->have_listen)
        return cli_usage_error("server", "--listen ADDR:PORT is required");
    status = cli_check_psk_options(KTLSX_SERVER, &opts->tls);
    if (status >= 0)
        return status;
    /* With --daemon the keys and all TLS settings are the daemon profile's. */
    if (opts->daemon != NULL && (opts->tls.cert_count > 0 || opts->tls.key_count > 0 ||
                                 opts->tls.psk_identity != NULL || opts->tls.ca_file != NULL))
        return cli_usage_error("server", "--daemon: --cert, --key, --ca and --psk-* belong to the daemon's "
                                         "profile, not to this command");
    if (opts->daemon == NULL && strcmp(opts->profile, "default") != 0)
        return cli_usage_error("server", "--profile goes with --daemon");
    /* A PSK-only server (TLS 1.3 external PSK) needs no certificate. */
    if (opts->daemon == NULL && opts->tls.cert_count == 0 && opts->tls.key_count == 0 && opts->tls.psk_identity == NULL)
        return cli_usage_error("server", "--cert FILE --key FILE is required");
    if (opts->tls.cert_count != opts->tls.key_count)
        return cli_usage_error("server", "each --cert needs its --key");
    /* File keys are rotated by replacing the files (and restarting). */
    if (opts->rotate_every_s > 0 && opts->tls.ticket_key_file_count > 0)
        return cli_usage_error("server",
                               "--rotate-ticket-keys-every and --ticket-key-file exclude each other");
    if ((opts->tls.session_store_servers == NULL) != (opts->tls.session_store_key == NULL))
        return cli_usage_error("server", "--session-store and --session-store-key go together");
    if (opts->tls.session_store_timeout_ms && opts->tls.session_store_servers == NULL)
        return cli_usage_error("server", "--session-store-timeout goes with --session-store");
    if (opts->daemon != NULL && opts->tls.session_store_servers != NULL)
        return cli_usage_error("server", "--daemon: the session store belongs to the daemon's profile "
                                         "(session_cache = memcached:...)");
    if (opts->mode == SERVER_SENDFILE) {
        struct stat st;

        if (stat(opts->sendfile_path, &st) < 0)
            return cli_usage_error("server", "--sendfile %s: %s", opts->sendfile_path,
                                   strerror(errno));
        if (!S_ISREG(st.st_mode))
            return cli_usage_error("server", "--sendfile %s: not a regular file",
                                   opts->sendfile_path);
    }
    return -1;
}

/* ---- --echo ---- */

static int echo_back(struct cli_session *session, void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    return cli_session_send(session, data, len);
}

static int serve_echo(struct cli_session *session)
{
    /* Nothing else to watch: wait for the peer, then take what it sent
     * (a readable socket may hold only a control record). */
    for (;;) {
        if (cli_session_wait_readable(session, -1) < 0) {
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        switch (cli_session_recv(session, echo_back, NULL)) {
        case CLI_RECV_PROGRESS:
            break;
        case CLI_RECV_CLOSE_NOTIFY:
        case CLI_RECV_EOF:
            cli_session_finish(session, NULL, NULL);
            return CLI_EXIT_OK;
        case CLI_RECV_ERROR:
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
    }
}

/* ---- --reply ---- */

/* The start of the client's first request: enough to tell HTTP apart. */
struct request_head {
    uint8_t bytes[64];
    size_t len;
};

static int keep_request_head(struct cli_session *session, void *ctx, const uint8_t *data,
                             size_t len)
{
    struct request_head *head = ctx;
    size_t room = sizeof head->bytes - head->len;

    (void)session;
    if (len > room)
        len = room;
    memcpy(head->bytes + head->len, data, len);
    head->len += len;
    return 0;
}

static int head_starts_with(const struct request_head *head, const char *prefix)
{
    size_t prefix_len = strlen(prefix);

    return head->len >= prefix_len && memcmp(head->bytes, prefix, prefix_len) == 0;
}

/* True while what arrived so far could still become "GET " or "HEAD ":
 * a request split across records must not be mistaken for plain text. */
static int head_is_partial_http_method(const struct request_head *head)
{
    static const char *const methods[] = { "GET ", "HEAD " };

    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        size_t method_len = strlen(methods[i]);
        if (head->len < method_len && memcmp(head->bytes, methods[i], head->len) == 0)
            return 1;
    }
    return 0;
}

/* Collect the start of the client's first request into `head`, waiting at
 * most wait_ms for it to be long enough to tell HTTP apart. Returns -1 to
 * go on and answer (got it, it timed out, or the peer sent close_notify),
 * or the connection's exit status when there is nothing to answer:
 * CLI_EXIT_OK when the peer closed TCP, CLI_EXIT_FAILURE after a reported
 * failure. */
static int wait_for_request(struct cli_session *session, struct request_head *head, int wait_ms)
{
    int64_t deadline = cli_now_ms() + wait_ms;

    while (head->len == 0 || head_is_partial_http_method(head)) {
        int64_t left = deadline - cli_now_ms();
        int ready;
        enum cli_recv_result result;

        if (left <= 0)
            break;
        ready = cli_session_wait_readable(session, (int)left);
        if (ready < 0) {
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        if (ready == 0)
            break;
        result = cli_session_recv(session, keep_request_head, head);
        if (result == CLI_RECV_ERROR) {
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        if (result == CLI_RECV_EOF)
            return CLI_EXIT_OK;
        /* After close_notify the peer may still read (TLS allows half-close). */
        if (result == CLI_RECV_CLOSE_NOTIFY)
            break;
    }
    return -1;
}

static int is_http_request(const struct request_head *head)
{
    return head_starts_with(head, "GET ") || head_starts_with(head, "HEAD ");
}

/* "HTTP/1.1 200 OK" with Content-Length: body_len into header. */
static int format_http_header(char *header, size_t cap, uint64_t body_len, const char *type)
{
    return snprintf(header, cap,
                    "HTTP/1.1 200 OK\r\n"
                    "Content-Length: %llu\r\n"
                    "Content-Type: %s\r\n"
                    "Connection: close\r\n"
                    "\r\n",
                    (unsigned long long)body_len, type);
}

static int serve_reply(struct cli_session *session, const char *text)
{
    struct request_head head = { .len = 0 };
    int sent;
    int status = wait_for_request(session, &head, REPLY_REQUEST_WAIT_MS);

    if (status >= 0)
        return status;

    if (is_http_request(&head)) {
        size_t text_len = strlen(text);
        size_t body_len = text_len + 1; /* TEXT and a newline */
        int is_head = head_starts_with(&head, "HEAD ");
        char header[256];
        int header_len = format_http_header(header, sizeof header, body_len, "text/plain");
        char *response = malloc((size_t)header_len + body_len);
        size_t response_len = (size_t)header_len;

        if (response == NULL) {
            snprintf(session->error, sizeof session->error, "out of memory");
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        memcpy(response, header, (size_t)header_len);
        /* A response to HEAD carries the headers of GET but no body. */
        if (!is_head) {
            memcpy(response + header_len, text, text_len);
            response[header_len + text_len] = '\n';
            response_len += body_len;
        }
        sent = cli_session_send(session, response, response_len);
        free(response);
    } else {
        sent = cli_session_send(session, text, strlen(text));
    }
    if (sent < 0) {
        cli_session_report_failure(session);
        return CLI_EXIT_FAILURE;
    }
    cli_session_finish(session, NULL, NULL);
    return CLI_EXIT_OK;
}

/* ---- --sendfile ---- */

static int serve_sendfile(struct cli_session *session, const char *path)
{
    struct request_head head = { .len = 0 };
    struct stat st;
    int file_fd;
    /* An HTTP client asks first; other peers (openssl s_client) wait for
     * us, so do not wait long for them. */
    int status = wait_for_request(session, &head, SENDFILE_REQUEST_WAIT_MS);

    if (status >= 0)
        return status;
    status = CLI_EXIT_FAILURE;
    /* Opened per connection: the file may have been replaced meanwhile. */
    file_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (file_fd < 0 || fstat(file_fd, &st) < 0) {
        snprintf(session->error, sizeof session->error, "--sendfile %s: %s", path,
                 strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(session->error, sizeof session->error, "--sendfile %s: not a regular file",
                 path);
        goto out;
    }
    if (is_http_request(&head)) {
        char header[256];
        int header_len = format_http_header(header, sizeof header, (uint64_t)st.st_size,
                                            "application/octet-stream");

        if (cli_session_send(session, header, (size_t)header_len) < 0)
            goto out;
        /* A response to HEAD carries the headers of GET but no body. */
        if (head_starts_with(&head, "HEAD ")) {
            status = CLI_EXIT_OK;
            goto out;
        }
    }
    if (cli_session_send_file(session, file_fd, (uint64_t)st.st_size) < 0)
        goto out;
    status = CLI_EXIT_OK;
out:
    if (file_fd >= 0)
        close(file_fd);
    if (status != CLI_EXIT_OK) {
        cli_session_report_failure(session);
        return status;
    }
    cli_session_finish(session, NULL, NULL);
    return CLI_EXIT_OK;
}

/* ---- accept loop ---- */

/* After a failed handshake: how long and how much the server keeps reading
 * and discarding before it closes (conf-b, issue 13 item 8). */
#define SERVER_LINGER_MS 1000
#define SERVER_LINGER_BYTES (256 * 1024)

/* Handshake and serve one accepted connection. Returns its exit status. */
static int serve_connection(struct server_state *state, int fd)
{
    struct cli_session session = { .fd = fd };
    int status;

    if (state->opts->daemon != NULL) {
        cli_set_nodelay(fd);
        if (cli_daemon_handshake(&session, KTLSX_SERVER, state->opts->daemon, state->opts->profile, NULL,
                                 state->opts->tls.alpn) < 0) {
            cli_session_free(&session);
            return CLI_EXIT_FAILURE;
        }
        goto serve;
    }
    session.conn = ktlsx_conn_new(state->cfg, NULL);
    if (session.conn == NULL) {
        fprintf(stderr, "ktlsx: cannot create the connection\n");
        return CLI_EXIT_FAILURE;
    }
    session.ktls_mode = state->opts->tls.ktls_mode;
    cli_set_nodelay(fd);
    if (cli_session_handshake(&session) < 0) {
        /* The client may still be sending (a large ClientHello): let it read
         * our alert instead of a reset (ktlsx_socket_linger says why). */
        if (session.sock != NULL)
            (void)ktlsx_socket_linger(session.sock, SERVER_LINGER_MS, SERVER_LINGER_BYTES);
        cli_session_free(&session);
        return CLI_EXIT_FAILURE;
    }
serve:
    switch (state->opts->mode) {
    case SERVER_ECHO:
        status = serve_echo(&session);
        break;
    case SERVER_REPLY:
        status = serve_reply(&session, state->opts->reply_text);
        break;
    case SERVER_SENDFILE:
        status = serve_sendfile(&session, state->opts->sendfile_path);
        break;
    case SERVER_RELAY_STDIO:
    default:
        /* Like `openssl s_server`: the client decides when it ends. */
        status = cli_relay_stdio(&session, &state->stdin_open, -1);
        break;
    }
    cli_session_free(&session);
    return status;
}

/* accept() errors that concern one connection, not the listening socket. */
static int accept_error_is_transient(int err)
{
    switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        return 1;
    default:
        return 0;
    }
}

int ktlsx_cmd_server(int argc, char **argv)
{
    struct server_options opts;
    struct server_state state;
    int listen_fd;
    int status = parse_server_options(argc, argv, &opts);

    if (status >= 0)
        return status;
    state.opts = &opts;
    state.stdin_open = 1;
    state.keys_since_ms = cli_now_ms();
    state.cfg = cli_build_config(KTLSX_SERVER, &opts.tls);
    if (state.cfg == NULL)
        return CLI_EXIT_USAGE;
    listen_fd = cli_listen_tcp(&opts.listen);
    if (listen_fd < 0) {
        ktlsx_config_free(state.cfg);
        return CLI_EXIT_FAILURE;
    }

    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (accept_error_is_transient(errno)) {
                /* Out of descriptors or memory: do not spin at full speed. */
                if (errno != EINTR && errno != ECONNABORTED)
                    usleep(100 * 1000);
                continue;
            }
            fprintf(stderr, "ktlsx: accept: %s\n", strerror(errno));
            status = CLI_EXIT_FAILURE;
            break;
        }
        /* Between connections no handshake uses the keys: safe to rotate. */
        if (opts.rotate_every_s > 0 &&
            cli_now_ms() - state.keys_since_ms >= (int64_t)opts.rotate_every_s * 1000) {
            if (ktlsx_config_rotate_ticket_keys(state.cfg) < 0)
                fprintf(stderr, "ktlsx: %s\n", ktlsx_config_error(state.cfg));
            else
                fprintf(stderr, "ktlsx: ticket keys rotated\n");
            state.keys_since_ms = cli_now_ms();
        }
        status = serve_connection(&state, fd);
        close(fd);
        if (opts.once)
            break;
    }
    close(listen_fd);
    ktlsx_config_free(state.cfg);
    return status;
}
