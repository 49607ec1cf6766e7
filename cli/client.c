/* `ktlsx client HOST:PORT`: connect, handshake, then relay stdin to the
 * peer and the peer to stdout. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* After stdin ends, the peer gets this long without sending anything
 * before we close. Closing at once would be wrong: servers such as
 * `openssl s_server` and `gnutls-serv --echo` may drop the connection on
 * close_notify before they have answered everything we sent. */

/* Largest saved session accepted or written (tickets are far smaller). */
#define CLIENT_MAX_SESSION (64 * 1024)

static const char client_usage[] =
    "usage: ktlsx client HOST:PORT [options]\n"
    "\n"
    "Connect to HOST:PORT (HOST: name, IPv4 or [IPv6]), run the TLS handshake,\n"
    "then send stdin to the peer and write what it sends to stdout.\n"
    "\n"
    "  --sni NAME             send NAME as server name (default: HOST) and\n"
    "                         verify the certificate against NAME, the name\n"
    "                         meant to be reached (as curl --connect-to)\n"
    "  --verify-name NAME     verify the certificate against NAME instead (a\n"
    "                         DNS name or an IP address), whatever is sent\n"
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
    "  --ktls auto|off|require\n"
    "                         after the handshake move the record layer into\n"
    "                         the kernel: auto (default) falls back to user\n"
    "                         space with one line saying why; require fails\n"
    "                         the connection (exit 1) without it\n"
    "  --sess-in FILE         offer the session saved in FILE by --sess-out\n"
    "                         (resumption); a bad FILE is exit status 2\n"
    "  --sess-out FILE        when the connection ends, save its session to\n"
    "                         FILE (mode 0600; it holds secrets); without one\n"
    "                         prints 'ktlsx: no session to save'\n"
    "  --psk-identity ID --psk-file FILE\n"
    "                         TLS 1.3 external PSK; FILE holds the key in hex\n"
    "                         (whitespace ignored)\n"
    "  --psk-sha384           bind the PSK to SHA-384 (default: SHA-256)\n"
    "  --psk-ke               also allow PSK without (EC)DHE (psk_ke)\n"
    "  --require-ems          refuse TLS 1.2 servers without extended master\n"
    "                         secret\n"
    "  --fallback-scsv        send TLS_FALLBACK_SCSV (a deliberate fallback)\n"
    "  --legacy-rsa-kx        allow TLS 1.2 RSA key exchange (no forward\n"
    "                         secrecy)\n"
    "  --max-handshake-message BYTES\n"
    "                         largest handshake message accepted, 16384..\n"
    "                         16777216 (default 131072); past it the peer\n"
    "                         gets an illegal_parameter alert\n"
    "  --record-size-limit N\n"
    "                         RFC 8449: peers send us records of at most N\n"
    "                         bytes (64..16385; TLS 1.3 counts the type byte)\n"
    "  --key-update-after BYTES\n"
    "                         after sending BYTES of data, send one KeyUpdate\n"
    "                         asking the server to update too (TLS 1.3)\n"
    "  --handoff              after the handshake, hand the connection (socket\n"
    "                         and TLS state) to a new 'ktlsx adopt' process over\n"
    "                         a unix socket, as ktlsxd hands sockets back; that\n"
    "                         process carries the data (and --sess-out)\n"
    "  --daemon SOCKET        let ktlsxd (its door at SOCKET) run the handshake\n"
    "                         with its client profile, then carry the\n"
    "                         connection it hands back; certificates, trust and\n"
    "                         versions are the profile's\n"
    "  --profile NAME         the daemon's profile (default: default)\n"
    "  --help                 show this help\n"
    "\n"
    "Exit status: 0 when the connection ended normally (server closed, or\n"
    "stdin ended and the server stayed quiet for 2 s), 1 on a TLS, network\n"
    "or kernel TLS failure, 2 on a bad command line or configuration.\n";

/* The client's own options; the shared ones are enum cli_tls_option. */
enum client_option {
    OPT_SNI = CLI_OPT_SUBCOMMAND_FIRST,
    OPT_INSECURE,
    OPT_SESS_IN,
    OPT_SESS_OUT,
    OPT_REQUIRE_EMS,
    OPT_FALLBACK_SCSV,
    OPT_KEY_UPDATE_AFTER,
    OPT_HANDOFF,
    OPT_VERIFY_NAME,
    OPT_DAEMON,
    OPT_PROFILE,
    OPT_HELP,
};

static const struct option client_long_options[] = {
    CLI_TLS_LONG_OPTIONS,
    { "daemon", required_argument, NULL, OPT_DAEMON },
    { "profile", required_argument, NULL, OPT_PROFILE },
    { "sni", required_argument, NULL, OPT_SNI },
    { "verify-name", required_argument, NULL, OPT_VERIFY_NAME },
    { "insecure", no_argument, NULL, OPT_INSECURE },
    { "sess-in", required_argument, NULL, OPT_SESS_IN },
    { "sess-out", required_argument, NULL, OPT_SESS_OUT },
    { "require-ems", no_argument, NULL, OPT_REQUIRE_EMS },
    { "fallback-scsv", no_argument, NULL, OPT_FALLBACK_SCSV },
    { "key-update-after", required_argument, NULL, OPT_KEY_UPDATE_AFTER },
    { "handoff", no_argument, NULL, OPT_HANDOFF },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

struct client_options {
    struct cli_tls_options tls;
    struct cli_endpoint server;
    const char *sni; /* NULL: the HOST part of HOST:PORT */
    const char *verify_name; /* NULL: --sni if given, else HOST */
    const char *sess_in;
    const char *sess_out;
    uint64_t key_update_after; /* 0: never */
    int handoff;               /* --handoff: a `ktlsx adopt` process carries the data */
    const char *daemon;        /* --daemon: ktlsxd's door; NULL: the handshake runs here */
    const char *profile;       /* --profile: the daemon's client profile */
};

/* Returns -1 to go on, or the exit status (help shown, usage error). */
static int parse_client_options(int argc, char **argv, struct client_options *opts)
{
    const char *target;
    const char *why;
    int opt;
    int status;
    unsigned long long count;

    cli_tls_options_init(&opts->tls);
    opts->sni = NULL;
    opts->verify_name = NULL;
    opts->sess_in = NULL;
    opts->sess_out = NULL;
    opts->key_update_after = 0;
    opts->handoff = 0;
    opts->daemon = NULL;
    opts->profile = "default";
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", client_long_options, NULL)) != -1) {
        int taken = cli_parse_tls_option(KTLSX_CLIENT, opt, optarg, &opts->tls);

        if (taken < 0)
            return CLI_EXIT_USAGE;
        if (taken > 0)
            continue;
        switch (opt) {
        case OPT_SNI:
            opts->sni = optarg;
            break;
        case OPT_VERIFY_NAME:
            opts->verify_name = optarg;
            break;
        case OPT_INSECURE:
            opts->tls.insecure = 1;
            break;
        case OPT_SESS_IN:
            opts->sess_in = optarg;
            break;
        case OPT_SESS_OUT:
            opts->sess_out = optarg;
            break;
        case OPT_REQUIRE_EMS:
            opts->tls.require_ems = 1;
            break;
        case OPT_FALLBACK_SCSV:
            opts->tls.fallback_scsv = 1;
            break;
        case OPT_KEY_UPDATE_AFTER:
            if (cli_parse_count(optarg, UINT64_MAX, &count) < 0 || count == 0)
                return cli_usage_error("client",
                                       "--key-update-after needs a byte count > 0, not '%s'",
                                       optarg);
            opts->key_update_after = count;
            break;
        case OPT_HANDOFF:
            opts->handoff = 1;
            break;
        case OPT_DAEMON:
            opts->daemon = optarg;
            break;
        case OPT_PROFILE:
            opts->profile = optarg;
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
    /* The daemon's profile holds the keys and trust and runs the handshake. */
    if (opts->daemon != NULL && (opts->tls.cert_count > 0 || opts->tls.ca_file != NULL || opts->sess_in != NULL ||
                                 opts->handoff || opts->tls.psk_identity != NULL))
        return cli_usage_error("client", "--daemon: --cert, --key, --ca, --psk-*, --sess-in and --handoff "
                                         "belong to the daemon's profile, not to this command");
    if (opts->daemon == NULL && strcmp(opts->profile, "default") != 0)
        return cli_usage_error("client", "--profile goes with --daemon");
    status = cli_check_psk_options(KTLSX_CLIENT, &opts->tls);
    if (status >= 0)
        return status;
    if (optind >= argc)
        return cli_usage_error("client", "missing HOST:PORT");
    if (optind + 1 < argc)
        return cli_usage_error("client", "unexpected argument '%s'", argv[optind + 1]);
    target = argv[optind];
    if (cli_parse_endpoint(target, 0, &opts->server, &why) < 0)
        return cli_usage_error("client", "'%s': %s", target, why);
    return -1;
}

/* --sess-in: offer the saved session. Returns 0, or -1 after a message
 * naming the file. */
static int load_session(ktlsx_conn *conn, const char *path)
{
    uint8_t *blob = malloc(CLIENT_MAX_SESSION + 1);
    size_t len = 0;
    int rc = -1;
    int fd;

    if (blob == NULL) {
        fprintf(stderr, "ktlsx: --sess-in %s: out of memory\n", path);
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "ktlsx: cannot open --sess-in %s: %s\n", path, strerror(errno));
        free(blob);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, blob + len, CLIENT_MAX_SESSION + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "ktlsx: cannot read --sess-in %s: %s\n", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CLIENT_MAX_SESSION) {
            fprintf(stderr, "ktlsx: --sess-in %s: too large to be a saved session\n", path);
            goto out;
        }
    }
    if (len == 0 || ktlsx_set_session(conn, blob, len) < 0) {
        fprintf(stderr, "ktlsx: --sess-in %s: not a session saved by ktlsx client --sess-out\n",
                path);
        goto out;
    }
    rc = 0;
out:
    close(fd);
    OPENSSL_cleanse(blob, CLIENT_MAX_SESSION + 1);
    free(blob);
    return rc;
}

/* --sess-out: save the connection's session (mode 0600). Returns 0 or -1
 * (reported). No session is reported but not an error. */
int cli_save_session(const ktlsx_conn *conn, const char *path)
{
    uint8_t *blob = malloc(CLIENT_MAX_SESSION);
    long len;
    int fd;
    int rc = -1;

    if (blob == NULL) {
        fprintf(stderr, "ktlsx: --sess-out %s: out of memory\n", path);
        return -1;
    }
    len = ktlsx_get_session(conn, blob, CLIENT_MAX_SESSION);
    if (len <= 0) {
        fprintf(stderr, "ktlsx: no session to save\n");
        free(blob);
        return 0;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    /* An existing file keeps its mode on O_CREAT: make it private first. */
    if (fd < 0 || fchmod(fd, 0600) < 0 || cli_write_all(fd, blob, (size_t)len) < 0) {
        fprintf(stderr, "ktlsx: cannot write --sess-out %s: %s\n", path, strerror(errno));
    } else if (close(fd) < 0) {
        fd = -1;
        fprintf(stderr, "ktlsx: cannot write --sess-out %s: %s\n", path, strerror(errno));
    } else {
        fd = -1;
        rc = 0;
    }
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(blob, CLIENT_MAX_SESSION);
    free(blob);
    return rc;
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

    /* HOST names the server for SNI and for certificate verification,
     * unless --sni names the server meant to be reached: then both follow
     * it (RFC 6125 §6; as curl --connect-to); --verify-name overrides the
     * verified name alone. */
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
    if (opts.verify_name != NULL || opts.sni != NULL) {
        const char *name = opts.verify_name != NULL ? opts.verify_name : opts.sni;
        if (ktlsx_conn_set_verify_name(session.conn, name) < 0) {
            fprintf(stderr, "ktlsx: invalid %s name '%s'\n", opts.verify_name != NULL ? "--verify-name" : "--sni",
                    name);
            status = CLI_EXIT_USAGE;
            goto out;
        }
    }

    if (opts.sess_in != NULL && load_session(session.conn, opts.sess_in) < 0) {
        status = CLI_EXIT_USAGE;
        goto out;
    }
    session.ktls_mode = opts.tls.ktls_mode;
    session.key_update_after = opts.key_update_after;

    session.fd = cli_connect_tcp(&opts.server, CLI_HANDSHAKE_TIMEOUT_MS);
    if (session.fd < 0) {
        status = CLI_EXIT_FAILURE;
        goto out;
    }
    if (opts.daemon != NULL) {
        /* The connection the daemon hands back replaces the one prepared here. */
        ktlsx_conn_free(session.conn);
        session.conn = NULL;
        if (cli_daemon_handshake(&session, KTLSX_CLIENT, opts.daemon, opts.profile,
                                 opts.sni != NULL ? opts.sni : opts.server.host, opts.tls.alpn) < 0) {
            status = CLI_EXIT_FAILURE;
        } else {
            stdin_open = 1;
            status = cli_relay_stdio(&session, &stdin_open, CLI_CLIENT_IDLE_AFTER_STDIN_EOF_MS);
        }
    } else if (cli_session_handshake(&session) < 0) {
        status = CLI_EXIT_FAILURE;
    } else if (opts.handoff) {
        /* The adopting process saves the session; this one keeps nothing. */
        status = cli_handoff(&session, opts.sess_out);
        opts.sess_out = NULL;
    } else {
        stdin_open = 1;
        status = cli_relay_stdio(&session, &stdin_open, CLI_CLIENT_IDLE_AFTER_STDIN_EOF_MS);
    }
    /* TLS 1.3 tickets arrive after the handshake: save at the very end.
     * A failed save is reported; the exit status stays the connection's. */
    if (opts.sess_out != NULL)
        (void)cli_save_session(session.conn, opts.sess_out);

out:
    if (session.fd >= 0)
        close(session.fd);
    cli_session_free(&session);
    ktlsx_config_free(cfg);
    return status;
}
