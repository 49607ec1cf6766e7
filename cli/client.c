/* `ktlsx client HOST:PORT`: connect, handshake, then relay stdin to the
 * peer and the peer to stdout. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

/* After stdin ends, the peer gets this long without sending anything
 * before we close. Closing at once would be wrong: servers such as
 * `openssl s_server` and `gnutls-serv --echo` may drop the connection on
 * close_notify before they have answered everything we sent. */
#define CLIENT_IDLE_AFTER_STDIN_EOF_MS 2000

static const char client_usage[] =
    "usage: ktlsx client HOST:PORT [options]\n"
    "\n"
    "Connect to HOST:PORT (HOST: name, IPv4 or [IPv6]), run the TLS handshake,\n"
    "then send stdin to the peer and write what it sends to stdout.\n"
    "\n"
    "  --sni NAME             send NAME as server name (default: HOST)\n"
    "  --ca FILE              trust anchors in PEM (default: system store)\n"
    "  --crl FILE             certificate revocation list in PEM\n"
    "  --insecure             do not verify the server certificate\n"
    "  --cert FILE --key FILE client certificate chain and its private key\n"
    "  --alpn a,b             offer these ALPN protocols\n"
    "  --tls-version 1.2|1.3  use only this version (default: both)\n"
    "  --ciphers LIST         cipher suites, comma-separated\n"
    "  --groups LIST          key exchange groups, e.g. x25519,P-256\n"
    "  --keylog FILE          write NSS key log (default: $SSLKEYLOGFILE)\n"
    "  --trace                trace handshake messages on stderr\n"
    "  --help                 show this help\n";

enum client_option {
    OPT_SNI = 256,
    OPT_CA,
    OPT_CRL,
    OPT_INSECURE,
    OPT_CERT,
    OPT_KEY,
    OPT_ALPN,
    OPT_TLS_VERSION,
    OPT_CIPHERS,
    OPT_GROUPS,
    OPT_KEYLOG,
    OPT_TRACE,
    OPT_HELP,
};

static const struct option client_long_options[] = {
    { "sni", required_argument, NULL, OPT_SNI },
    { "ca", required_argument, NULL, OPT_CA },
    { "crl", required_argument, NULL, OPT_CRL },
    { "insecure", no_argument, NULL, OPT_INSECURE },
    { "cert", required_argument, NULL, OPT_CERT },
    { "key", required_argument, NULL, OPT_KEY },
    { "alpn", required_argument, NULL, OPT_ALPN },
    { "tls-version", required_argument, NULL, OPT_TLS_VERSION },
    { "ciphers", required_argument, NULL, OPT_CIPHERS },
    { "groups", required_argument, NULL, OPT_GROUPS },
    { "keylog", required_argument, NULL, OPT_KEYLOG },
    { "trace", no_argument, NULL, OPT_TRACE },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

struct client_options {
    struct cli_tls_options tls;
    struct cli_endpoint server;
    const char *sni; /* NULL: the HOST part of HOST:PORT */
};

/* Returns -1 to go on, or the exit status (help shown, usage error). */
static int parse_client_options(int argc, char **argv, struct client_options *opts)
{
    const char *target;
    const char *why;
    int opt;

    cli_tls_options_init(&opts->tls);
    opts->sni = NULL;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", client_long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_SNI:
            opts->sni = optarg;
            break;
        case OPT_CA:
            opts->tls.ca_file = optarg;
            break;
        case OPT_CRL:
            opts->tls.crl_file = optarg;
            break;
        case OPT_INSECURE:
            opts->tls.insecure = 1;
            break;
        case OPT_CERT:
            if (opts->tls.cert_count > 0)
                return cli_usage_error("client", "--cert given more than once");
            (void)cli_add_cert_file(&opts->tls, optarg);
            break;
        case OPT_KEY:
            if (opts->tls.key_count > 0)
                return cli_usage_error("client", "--key given more than once");
            (void)cli_add_key_file(&opts->tls, optarg);
            break;
        case OPT_ALPN:
            opts->tls.alpn = optarg;
            break;
        case OPT_TLS_VERSION:
            if (cli_parse_tls_version(optarg, &opts->tls) < 0)
                return cli_usage_error("client", "--tls-version must be 1.2 or 1.3, not '%s'",
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
        case OPT_HELP:
        case 'h':
            fputs(client_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_getopt_error("client", opt, argv);
        }
    }
    if (opts->tls.cert_count != opts->tls.key_count)
        return cli_usage_error("client", "--cert and --key go together");
    if (optind >= argc)
        return cli_usage_error("client", "missing HOST:PORT");
    if (optind + 1 < argc)
        return cli_usage_error("client", "unexpected argument '%s'", argv[optind + 1]);
    target = argv[optind];
    if (cli_parse_endpoint(target, 0, &opts->server, &why) < 0)
        return cli_usage_error("client", "'%s': %s", target, why);
    return -1;
}

int ktlsx_cmd_client(int argc, char **argv)
{
    struct client_options opts;
    struct cli_session session = { .fd = -1 };
    ktlsx_config *cfg;
    int stdin_open;
    int status = parse_client_options(argc, argv, &opts);

    if (status >= 0)
        return status;
    cfg = cli_build_config(KTLSX_CLIENT, &opts.tls);
    if (cfg == NULL)
        return CLI_EXIT_USAGE;

    /* HOST names the server for certificate verification and, unless
     * --sni says otherwise, for SNI. */
    session.conn = ktlsx_conn_new(cfg, opts.server.host);
    if (session.conn == NULL) {
        fprintf(stderr, "ktlsx: cannot create the connection\n");
        ktlsx_config_free(cfg);
        return CLI_EXIT_FAILURE;
    }
    if (opts.sni != NULL && ktlsx_conn_set_sni(session.conn, opts.sni) < 0) {
        fprintf(stderr, "ktlsx: invalid --sni name '%s'\n", opts.sni);
        status = CLI_EXIT_USAGE;
        goto out;
    }

    session.fd = cli_connect_tcp(&opts.server, CLI_HANDSHAKE_TIMEOUT_MS);
    if (session.fd < 0) {
        status = CLI_EXIT_FAILURE;
        goto out;
    }
    if (cli_session_handshake(&session) < 0) {
        status = CLI_EXIT_FAILURE;
        goto out;
    }
    stdin_open = 1;
    status = cli_relay_stdio(&session, &stdin_open, CLIENT_IDLE_AFTER_STDIN_EOF_MS);

out:
    if (session.fd >= 0)
        close(session.fd);
    ktlsx_conn_free(session.conn);
    ktlsx_config_free(cfg);
    return status;
}
