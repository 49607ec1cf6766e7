/* `ktlsx server --listen ADDR:PORT`: accept connections one at a time,
 * handshake, then echo, send a fixed reply, or relay stdio. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* --reply: how long to wait for the request before answering anyway. */
#define REPLY_REQUEST_WAIT_MS 5000

static const char server_usage[] =
    "usage: ktlsx server --listen ADDR:PORT --cert FILE --key FILE [options]\n"
    "\n"
    "Accept TLS connections one at a time on ADDR:PORT (ADDR: name, IPv4,\n"
    "[IPv6] or empty for every address).\n"
    "\n"
    "  --listen ADDR:PORT        address to listen on\n"
    "  --cert FILE --key FILE    certificate chain and private key; repeat for\n"
    "                            more (e.g. RSA and ECDSA)\n"
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
    "  --echo                    send every byte received back\n"
    "  --reply TEXT              answer the first request with TEXT (as an\n"
    "                            HTTP response to GET/HEAD) and close\n"
    "  --once                    exit after the first connection with its status\n"
    "  --help                    show this help\n"
    "\n"
    "Without --echo or --reply, data from the client goes to stdout and stdin\n"
    "goes to the client.\n";

enum server_option {
    OPT_LISTEN = 256,
    OPT_CERT,
    OPT_KEY,
    OPT_CA,
    OPT_CRL,
    OPT_VERIFY_CLIENT,
    OPT_ALPN,
    OPT_TLS_VERSION,
    OPT_CIPHERS,
    OPT_GROUPS,
    OPT_KEYLOG,
    OPT_TRACE,
    OPT_ECHO,
    OPT_REPLY,
    OPT_ONCE,
    OPT_HELP,
};

static const struct option server_long_options[] = {
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "cert", required_argument, NULL, OPT_CERT },
    { "key", required_argument, NULL, OPT_KEY },
    { "ca", required_argument, NULL, OPT_CA },
    { "crl", required_argument, NULL, OPT_CRL },
    { "verify-client", required_argument, NULL, OPT_VERIFY_CLIENT },
    { "alpn", required_argument, NULL, OPT_ALPN },
    { "tls-version", required_argument, NULL, OPT_TLS_VERSION },
    { "ciphers", required_argument, NULL, OPT_CIPHERS },
    { "groups", required_argument, NULL, OPT_GROUPS },
    { "keylog", required_argument, NULL, OPT_KEYLOG },
    { "trace", no_argument, NULL, OPT_TRACE },
    { "echo", no_argument, NULL, OPT_ECHO },
    { "reply", required_argument, NULL, OPT_REPLY },
    { "once", no_argument, NULL, OPT_ONCE },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

/* What the server does with a connection after the handshake. */
enum server_mode {
    SERVER_RELAY_STDIO, /* like `openssl s_server`: peer → stdout, stdin → peer */
    SERVER_ECHO,
    SERVER_REPLY,
};

struct server_options {
    struct cli_tls_options tls;
    struct cli_endpoint listen;
    int have_listen;
    enum server_mode mode;
    const char *reply_text;
    int once;
};

/* State that outlives one connection. */
struct server_state {
    const struct server_options *opts;
    ktlsx_config *cfg;
    int stdin_open; /* stdin EOF ends input for every later connection too */
};

/* Returns -1 to go on, or the exit status (help shown, usage error). */
static int parse_server_options(int argc, char **argv, struct server_options *opts)
{
    const char *why;
    int opt;

    memset(opts, 0, sizeof *opts);
    cli_tls_options_init(&opts->tls);
    opts->mode = SERVER_RELAY_STDIO;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", server_long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN:
            if (cli_parse_endpoint(optarg, 1, &opts->listen, &why) < 0)
                return cli_usage_error("server", "--listen '%s': %s", optarg, why);
            opts->have_listen = 1;
            break;
        case OPT_CERT:
            if (cli_add_cert_file(&opts->tls, optarg) < 0)
                return cli_usage_error("server", "at most %d --cert options", CLI_MAX_CERTS);
            break;
        case OPT_KEY:
            if (cli_add_key_file(&opts->tls, optarg) < 0)
                return cli_usage_error("server", "at most %d --key options", CLI_MAX_CERTS);
            break;
        case OPT_CA:
            opts->tls.ca_file = optarg;
            break;
        case OPT_CRL:
            opts->tls.crl_file = optarg;
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
        case OPT_ALPN:
            opts->tls.alpn = optarg;
            break;
        case OPT_TLS_VERSION:
            if (cli_parse_tls_version(optarg, &opts->tls) < 0)
                return cli_usage_error("server", "--tls-version must be 1.2 or 1.3, not '%s'",
                                       optarg);
            break;
        case OPT_CIPHERS:
            opts->tls.ciphers = optarg;
            break;
        case OPT_GROUPS:
            opts->tls.groups = optarg;
            break;
        case OPT_KEYLOG:
            opts->tls.keylog_file = optarg;
            break;
        case OPT_TRACE:
            opts->tls.trace = 1;
            break;
        case OPT_ECHO:
            if (opts->mode == SERVER_REPLY)
                return cli_usage_error("server", "--echo and --reply exclude each other");
            opts->mode = SERVER_ECHO;
            break;
        case OPT_REPLY:
            if (opts->mode == SERVER_ECHO)
                return cli_usage_error("server", "--echo and --reply exclude each other");
            opts->mode = SERVER_REPLY;
            opts->reply_text = optarg;
            break;
        case OPT_ONCE:
            opts->once = 1;
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
    if (opts->tls.cert_count == 0)
        return cli_usage_error("server", "--cert FILE --key FILE is required");
    if (opts->tls.cert_count != opts->tls.key_count)
        return cli_usage_error("server", "each --cert needs its --key");
    return -1;
}

/* ---- --echo ---- */

static int echo_back(struct cli_session *session, void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    return session->datapath->send(session, data, len);
}

static int serve_echo(struct cli_session *session)
{
    /* The socket is blocking and there is nothing else to watch: each
     * recv waits for the peer. */
    for (;;) {
        switch (session->datapath->recv(session, echo_back, NULL)) {
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

static int serve_reply(struct cli_session *session, const char *text)
{
    struct request_head head = { .len = 0 };
    int64_t deadline = cli_now_ms() + REPLY_REQUEST_WAIT_MS;
    int tcp_closed = 0;
    int sent;

    while (head.len == 0 || head_is_partial_http_method(&head)) {
        struct pollfd pfd = { .fd = session->fd, .events = POLLIN };
        int64_t left = deadline - cli_now_ms();
        int ready;

        if (left <= 0)
            break;
        ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        enum cli_recv_result result = session->datapath->recv(session, keep_request_head, &head);
        if (result == CLI_RECV_ERROR) {
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        if (result == CLI_RECV_EOF) {
            tcp_closed = 1;
            break;
        }
        /* After close_notify the peer may still read (TLS allows half-close). */
        if (result == CLI_RECV_CLOSE_NOTIFY)
            break;
    }
    if (tcp_closed)
        return CLI_EXIT_OK;

    if (head_starts_with(&head, "GET ") || head_starts_with(&head, "HEAD ")) {
        size_t text_len = strlen(text);
        size_t body_len = text_len + 1; /* TEXT and a newline */
        int is_head = head_starts_with(&head, "HEAD ");
        char header[256];
        int header_len = snprintf(header, sizeof header,
                                  "HTTP/1.1 200 OK\r\n"
                                  "Content-Length: %zu\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Connection: close\r\n"
                                  "\r\n",
                                  body_len);
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
        sent = session->datapath->send(session, response, response_len);
        free(response);
    } else {
        sent = session->datapath->send(session, text, strlen(text));
    }
    if (sent < 0) {
        cli_session_report_failure(session);
        return CLI_EXIT_FAILURE;
    }
    cli_session_finish(session, NULL, NULL);
    return CLI_EXIT_OK;
}

/* ---- accept loop ---- */

/* Handshake and serve one accepted connection. Returns its exit status. */
static int serve_connection(struct server_state *state, int fd)
{
    struct cli_session session = { .fd = fd };
    int status;

    session.conn = ktlsx_conn_new(state->cfg, NULL);
    if (session.conn == NULL) {
        fprintf(stderr, "ktlsx: cannot create the connection\n");
        return CLI_EXIT_FAILURE;
    }
    cli_set_nodelay(fd);
    if (cli_session_handshake(&session) < 0) {
        ktlsx_conn_free(session.conn);
        return CLI_EXIT_FAILURE;
    }
    switch (state->opts->mode) {
    case SERVER_ECHO:
        status = serve_echo(&session);
        break;
    case SERVER_REPLY:
        status = serve_reply(&session, state->opts->reply_text);
        break;
    case SERVER_RELAY_STDIO:
    default:
        /* Like `openssl s_server`: the client decides when it ends. */
        status = cli_relay_stdio(&session, &state->stdin_open, -1);
        break;
    }
    ktlsx_conn_free(session.conn);
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
        status = serve_connection(&state, fd);
        close(fd);
        if (opts.once)
            break;
    }
    close(listen_fd);
    ktlsx_config_free(state.cfg);
    return status;
}
