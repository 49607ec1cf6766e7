/* Helpers shared by `ktlsx client` and `ktlsx server`: TLS configuration,
 * TCP sockets, the handshake loop and the application data path. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* After our close_notify, how long to wait for the peer to close. */
#define CLI_LINGER_MS 1000
/* --session-cache N: entry lifetime (the engine's default). */
#define CLI_SESSION_CACHE_LIFETIME_S 300

/* Largest TLS record on the wire: 5-byte header + 2^14 plaintext + the
 * TLS 1.2 ciphertext expansion allowance (2048). */
#define CLI_MAX_RECORD_WIRE (5 + 16384 + 2048)
/* Largest plaintext fragment of one record. */
#define CLI_MAX_PLAINTEXT 16384
/* --sendfile without kernel TX: read and encrypt this much at a time. */
#define CLI_FILE_CHUNK (64 * 1024)
/* Largest --psk-file accepted (the key is far smaller; this bounds the read). */
#define CLI_MAX_PSK_FILE 4096

/* The record-sized buffers below are static rather than on the stack: the
 * tool is single-threaded and serves one connection at a time. */

/* ---- command line ---- */

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "ktlsx %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ktlsx %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

int cli_getopt_error(const char *cmd, int opt, char **argv)
{
    /* getopt_long leaves the offending word just before optind. */
    const char *word = optind > 0 ? argv[optind - 1] : "?";

    if (opt == ':')
        return cli_usage_error(cmd, "option '%s' needs a value", word);
    if (optopt != 0)
        return cli_usage_error(cmd, "unknown option '-%c'", optopt);
    return cli_usage_error(cmd, "unknown option '%s'", word);
}

/* The subcommand that takes the options of `role`, for usage messages. */
static const char *role_command(enum ktlsx_role role)
{
    return role == KTLSX_CLIENT ? "client" : "server";
}

void cli_tls_options_init(struct cli_tls_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->min_version = KTLSX_TLS12;
    opts->max_version = KTLSX_TLS13;
    opts->verify_client = KTLSX_VERIFY_NONE;
    opts->ktls_mode = CLI_KTLS_AUTO;
    opts->tickets = -1;
    opts->session_cache = -1;
}

/* "auto" / "off" / "require". Returns 0 or -1. */
static int parse_ktls_mode(const char *arg, enum cli_ktls_mode *mode)
{
    if (strcmp(arg, "auto") == 0)
        *mode = CLI_KTLS_AUTO;
    else if (strcmp(arg, "off") == 0)
        *mode = CLI_KTLS_OFF;
    else if (strcmp(arg, "require") == 0)
        *mode = CLI_KTLS_REQUIRE;
    else
        return -1;
    return 0;
}

int cli_parse_count(const char *arg, unsigned long long max, unsigned long long *out)
{
    unsigned long long value;
    char *end;

    if (arg[0] < '0' || arg[0] > '9')
        return -1;
    errno = 0;
    value = strtoull(arg, &end, 10);
    if (errno != 0 || *end != '\0' || value > max)
        return -1;
    *out = value;
    return 0;
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Read a PSK written in hex (whitespace anywhere is ignored) into key.
 * Returns its length, or -1 after printing a message naming the file. */
static long read_psk_file(const char *path, uint8_t *key, size_t cap)
{
    static char text[CLI_MAX_PSK_FILE + 1];
    size_t text_len = 0;
    size_t key_len = 0;
    int high = -1;
    long result = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        fprintf(stderr, "ktlsx: cannot open --psk-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, text + text_len, sizeof text - text_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "ktlsx: cannot read --psk-file %s: %s\n", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        text_len += (size_t)n;
        if (text_len == sizeof text) {
            fprintf(stderr, "ktlsx: --psk-file %s: too large for a key in hex\n", path);
            goto out;
        }
    }
    for (size_t i = 0; i < text_len; i++) {
        int c = (unsigned char)text[i];
        int v;

        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
            continue;
        v = hex_digit(c);
        if (v < 0) {
            fprintf(stderr, "ktlsx: --psk-file %s: not a hex key (byte %zu)\n", path, i + 1);
            goto out;
        }
        if (high < 0) {
            high = v;
            continue;
        }
        if (key_len == cap) {
            fprintf(stderr, "ktlsx: --psk-file %s: key longer than %zu bytes\n", path, cap);
            goto out;
        }
        key[key_len++] = (uint8_t)(high << 4 | v);
        high = -1;
    }
    if (high >= 0) {
        fprintf(stderr, "ktlsx: --psk-file %s: odd number of hex digits\n", path);
        goto out;
    }
    if (key_len == 0) {
        fprintf(stderr, "ktlsx: --psk-file %s: no key in the file\n", path);
        goto out;
    }
    result = (long)key_len;
out:
    OPENSSL_cleanse(text, sizeof text);
    close(fd);
    if (result < 0)
        OPENSSL_cleanse(key, cap);
    return result;
}

/* "1.2" / "1.3" → a single-version range. Returns 0 or -1. */
static int parse_tls_version(const char *arg, struct cli_tls_options *opts)
{
    uint16_t version;

    if (strcmp(arg, "1.2") == 0)
        version = KTLSX_TLS12;
    else if (strcmp(arg, "1.3") == 0)
        version = KTLSX_TLS13;
    else
        return -1;
    opts->min_version = version;
    opts->max_version = version;
    return 0;
}

/* Record one --cert or --key path in `files` (CLI_MAX_CERTS slots) for
 * `ktlsx CMD`. Returns 1, or -1 after the usage message. */
static int add_cert_or_key_file(enum ktlsx_role role, const char *option, const char **files,
                                size_t *count, const char *path)
{
    const char *cmd = role_command(role);

    /* A client presents one chain; a server may have one per key type. */
    if (role == KTLSX_CLIENT && *count > 0) {
        cli_usage_error(cmd, "%s given more than once", option);
        return -1;
    }
    if (*count == CLI_MAX_CERTS) {
        cli_usage_error(cmd, "at most %d %s options", CLI_MAX_CERTS, option);
        return -1;
    }
    files[(*count)++] = path;
    return 1;
}

int cli_parse_tls_option(enum ktlsx_role role, int opt, const char *arg,
                         struct cli_tls_options *opts)
{
    const char *cmd = role_command(role);

    switch (opt) {
    case CLI_OPT_CA:
        opts->ca_file = arg;
        return 1;
    case CLI_OPT_CRL:
        opts->crl_file = arg;
        return 1;
    case CLI_OPT_CERT:
        return add_cert_or_key_file(role, "--cert", opts->cert_files, &opts->cert_count, arg);
    case CLI_OPT_KEY:
        return add_cert_or_key_file(role, "--key", opts->key_files, &opts->key_count, arg);
    case CLI_OPT_ALPN:
        opts->alpn = arg;
        return 1;
    case CLI_OPT_TLS_VERSION:
        if (parse_tls_version(arg, opts) < 0) {
            cli_usage_error(cmd, "--tls-version must be 1.2 or 1.3, not '%s'", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_CIPHERS:
        opts->ciphers = arg;
        return 1;
    case CLI_OPT_GROUPS:
        opts->groups = arg;
        return 1;
    case CLI_OPT_KEYLOG:
        opts->keylog_file = arg;
        return 1;
    case CLI_OPT_TRACE:
        opts->trace = 1;
        return 1;
    case CLI_OPT_KTLS:
        if (parse_ktls_mode(arg, &opts->ktls_mode) < 0) {
            cli_usage_error(cmd, "--ktls must be auto, off or require, not '%s'", arg);
            return -1;
        }
        return 1;
    case CLI_OPT_PSK_IDENTITY:
        opts->psk_identity = arg;
        return 1;
    case CLI_OPT_PSK_FILE:
        opts->psk_file = arg;
        return 1;
    case CLI_OPT_PSK_SHA384:
        opts->psk_sha384 = 1;
        return 1;
    case CLI_OPT_PSK_KE:
        opts->psk_ke = 1;
        return 1;
    case CLI_OPT_LEGACY_RSA_KX:
        opts->legacy_rsa_kx = 1;
        return 1;
    default:
        return 0;
    }
}

int cli_check_psk_options(enum ktlsx_role role, const struct cli_tls_options *opts)
{
    const char *cmd = role_command(role);

    if ((opts->psk_identity == NULL) != (opts->psk_file == NULL))
        return cli_usage_error(cmd, "--psk-identity and --psk-file go together");
    if (opts->psk_sha384 && opts->psk_identity == NULL)
        return cli_usage_error(cmd, "--psk-sha384 needs --psk-identity and --psk-file");
    return -1;
}

ktlsx_config *cli_build_config(enum ktlsx_role role, const struct cli_tls_options *opts)
{
    ktlsx_config *cfg = ktlsx_config_new(role);
    const char *keylog = opts->keylog_file;
    int failed = 0;

    if (cfg == NULL) {
        fprintf(stderr, "ktlsx: cannot allocate the TLS configuration\n");
        return NULL;
    }
    if (keylog == NULL) {
        const char *env = getenv("SSLKEYLOGFILE");
        if (env != NULL && env[0] != '\0')
            keylog = env;
    }

    /* Stop at the first failing setter: its message is the one to show. */
    failed = ktlsx_config_set_versions(cfg, opts->min_version, opts->max_version) < 0;
    /* Before --ciphers: an explicit list may then name the RSA suites. */
    if (!failed && opts->legacy_rsa_kx)
        failed = ktlsx_config_set_legacy_rsa_kx(cfg, 1) < 0;
    if (!failed && opts->ciphers != NULL)
        failed = ktlsx_config_set_ciphers(cfg, opts->ciphers) < 0;
    if (!failed && opts->groups != NULL)
        failed = ktlsx_config_set_groups(cfg, opts->groups) < 0;
    if (!failed && opts->alpn != NULL)
        failed = ktlsx_config_set_alpn(cfg, opts->alpn) < 0;
    if (!failed && opts->ca_file != NULL)
        failed = ktlsx_config_set_ca_file(cfg, opts->ca_file) < 0;
    if (!failed && opts->crl_file != NULL)
        failed = ktlsx_config_set_crl_file(cfg, opts->crl_file) < 0;
    for (size_t i = 0; !failed && i < opts->cert_count; i++)
        failed = ktlsx_config_add_cert(cfg, opts->cert_files[i], opts->key_files[i]) < 0;
    if (!failed && opts->insecure)
        failed = ktlsx_config_set_insecure(cfg, 1) < 0;
    if (!failed && opts->verify_client != KTLSX_VERIFY_NONE)
        failed = ktlsx_config_set_verify_client(cfg, opts->verify_client) < 0;
    if (!failed && keylog != NULL)
        failed = ktlsx_config_set_keylog_file(cfg, keylog) < 0;
    if (!failed && opts->psk_ke)
        failed = ktlsx_config_set_psk_ke(cfg, 1) < 0;
    if (!failed && opts->require_ems)
        failed = ktlsx_config_set_require_ems(cfg, 1) < 0;
    if (!failed && opts->fallback_scsv)
        failed = ktlsx_config_set_fallback_scsv(cfg, 1) < 0;
    if (!failed && opts->tickets >= 0)
        failed = ktlsx_config_set_tickets(cfg, (unsigned)opts->tickets, 0) < 0;
    if (!failed && opts->session_cache >= 0)
        failed = ktlsx_config_set_session_cache(cfg, (size_t)opts->session_cache,
                                                CLI_SESSION_CACHE_LIFETIME_S) < 0;
    for (size_t i = 0; !failed && i < opts->ticket_key_file_count; i++)
        failed = ktlsx_config_add_ticket_key_file(cfg, opts->ticket_key_files[i]) < 0;
    if (!failed && opts->psk_identity != NULL) {
        uint8_t key[512];
        long key_len = read_psk_file(opts->psk_file, key, sizeof key);

        if (key_len < 0) {
            ktlsx_config_free(cfg);
            return NULL;
        }
        if (ktlsx_config_set_psk(cfg, opts->psk_identity, key, (size_t)key_len, opts->psk_sha384) < 0) {
            /* The library's reason, with the file it came from. */
            fprintf(stderr, "ktlsx: --psk-file %s: %s\n", opts->psk_file, ktlsx_config_error(cfg));
            OPENSSL_cleanse(key, sizeof key);
            ktlsx_config_free(cfg);
            return NULL;
        }
        OPENSSL_cleanse(key, sizeof key);
    }
    if (failed) {
        const char *msg = ktlsx_config_error(cfg);
        fprintf(stderr, "ktlsx: %s\n", msg != NULL ? msg : "invalid configuration");
        ktlsx_config_free(cfg);
        return NULL;
    }
    if (opts->trace)
        ktlsx_config_set_trace(cfg, stderr);
    return cfg;
}

/* ---- time and plain I/O ---- */

int64_t cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until `deadline`, clamped to [0, INT_MAX-ish] for poll. */
static int ms_until(int64_t deadline)
{
    int64_t left = deadline - cli_now_ms();

    if (left < 0)
        return 0;
    if (left > 0x7fffffff)
        return 0x7fffffff;
    return (int)left;
}

int cli_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- TCP ---- */

int cli_parse_endpoint(const char *arg, int allow_empty_host, struct cli_endpoint *ep,
                       const char **why)
{
    const char *host = arg;
    size_t host_len;
    const char *port;

    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL) {
            *why = "missing ']' after the IPv6 address";
            return -1;
        }
        if (close[1] != ':') {
            *why = "expected ':PORT' after ']'";
            return -1;
        }
        host = arg + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(arg, ':');
        if (colon == NULL) {
            *why = "expected HOST:PORT";
            return -1;
        }
        host_len = (size_t)(colon - arg);
        if (memchr(arg, ':', host_len) != NULL) {
            *why = "an IPv6 address must be written in brackets: [ADDR]:PORT";
            return -1;
        }
        port = colon + 1;
    }
    if (host_len == 0 && !allow_empty_host) {
        *why = "missing host name";
        return -1;
    }
    if (port[0] == '\0') {
        *why = "missing port";
        return -1;
    }
    if (host_len >= sizeof ep->host || strlen(port) >= sizeof ep->port) {
        *why = "host or port too long";
        return -1;
    }
    memcpy(ep->host, host, host_len);
    ep->host[host_len] = '\0';
    memcpy(ep->port, port, strlen(port) + 1); /* length checked above */
    return 0;
}

void cli_set_nodelay(int fd)
{
    int one = 1;

    /* Handshake flights and interactive data are small: send them now. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* connect() that gives up at `deadline` instead of the kernel's minutes. */
static int connect_by(int fd, const struct sockaddr *addr, socklen_t addr_len, int64_t deadline)
{
    int flags = fcntl(fd, F_GETFL);
    int rc;

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    rc = connect(fd, addr, addr_len);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int ready;

        do
            ready = poll(&pfd, 1, ms_until(deadline));
        while (ready < 0 && errno == EINTR);
        if (ready == 0) {
            errno = ETIMEDOUT;
        } else if (ready > 0) {
            int err = 0;
            socklen_t err_len = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == 0 && err == 0)
                rc = 0;
            else
                errno = err != 0 ? err : errno;
        }
    }
    if (rc == 0 && fcntl(fd, F_SETFL, flags) < 0)
        rc = -1;
    return rc;
}

int cli_connect_tcp(const struct cli_endpoint *ep, int timeout_ms)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *addrs;
    int64_t deadline = cli_now_ms() + timeout_ms;
    int err = getaddrinfo(ep->host, ep->port, &hints, &addrs);
    int fd = -1;
    int last_errno = 0;

    if (err != 0) {
        fprintf(stderr, "ktlsx: cannot resolve %s port %s: %s\n", ep->host, ep->port,
                gai_strerror(err));
        return -1;
    }
    for (struct addrinfo *ai = addrs; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect_by(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0)
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addrs);
    if (fd < 0) {
        fprintf(stderr, "ktlsx: cannot connect to %s port %s: %s\n", ep->host, ep->port,
                strerror(last_errno));
        return -1;
    }
    cli_set_nodelay(fd);
    return fd;
}

/* "ADDR:PORT" / "[ADDR]:PORT" of a bound socket, for the log. */
static void describe_local_address(int fd, char *out, size_t out_len)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST];
    char port[NI_MAXSERV];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, out_len, "?");
        return;
    }
    snprintf(out, out_len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

int cli_listen_tcp(const struct cli_endpoint *ep)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE,
    };
    struct addrinfo *addrs;
    const char *host = ep->host[0] != '\0' ? ep->host : NULL;
    int err = getaddrinfo(host, ep->port, &hints, &addrs);
    int fd = -1;
    int last_errno = 0;
    char where[NI_MAXHOST + NI_MAXSERV + 4];

    if (err != 0) {
        fprintf(stderr, "ktlsx: cannot resolve %s port %s: %s\n", host != NULL ? host : "*",
                ep->port, gai_strerror(err));
        return -1;
    }
    for (struct addrinfo *ai = addrs; ai != NULL; ai = ai->ai_next) {
        int one = 1;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        /* Restarting the server must not wait for TIME_WAIT to expire. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addrs);
    if (fd < 0) {
        fprintf(stderr, "ktlsx: cannot listen on %s port %s: %s\n", host != NULL ? host : "*",
                ep->port, strerror(last_errno));
        return -1;
    }
    describe_local_address(fd, where, sizeof where);
    fprintf(stderr, "ktlsx: listening on %s\n", where);
    return fd;
}

/* ---- TLS session ---- */

static void set_session_error(struct cli_session *session, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_session_error(struct cli_session *session, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(session->error, sizeof session->error, fmt, ap);
    va_end(ap);
}

/* The engine's reason and the alert that went with it. */
static void set_engine_error(struct cli_session *session)
{
    const char *reason = ktlsx_error(session->conn);
    const char *alert = ktlsx_alert_name(ktlsx_alert(session->conn));

    set_session_error(session, "%s (alert %s)", reason != NULL ? reason : "unknown error",
                      alert != NULL ? alert : "?");
}

/* Send everything the engine has queued. Returns 0, or -1 with errno set
 * (EAGAIN/EWOULDBLOCK when the handshake send timeout expired). */
static int flush_output(struct cli_session *session)
{
    const uint8_t *data;
    size_t len;

    while ((len = ktlsx_pending_output(session->conn, &data)) > 0) {
        /* MSG_NOSIGNAL: a peer that went away is an error to report, not a
         * reason to die of SIGPIPE. */
        ssize_t n = send(session->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        ktlsx_output_done(session->conn, (size_t)n);
    }
    return 0;
}

/* flush_output() for the data path: a failure is described in
 * session->error. Returns 0 or -1. */
static int flush_output_or_fail(struct cli_session *session)
{
    if (flush_output(session) < 0) {
        set_session_error(session, "send: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void set_send_timeout(int fd, int timeout_ms)
{
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* The reason of a failed kernel TLS call: the engine's (with its alert)
 * when it recorded one, else errno's. */
static void set_ktls_error(struct cli_session *session, const char *what, int err)
{
    const char *reason = ktlsx_error(session->conn);

    if (reason != NULL && reason[0] != '\0')
        set_engine_error(session);
    else
        set_session_error(session, "%s: %s", what, err != 0 ? strerror(err) : "failed");
}

/* -- --key-update-after -- */

/* How many of the next `len` bytes may go before the KeyUpdate is due. */
static size_t bytes_before_key_update(const struct cli_session *session, size_t len)
{
    uint64_t left;

    if (session->key_update_after == 0 || session->key_update_done)
        return len;
    left = session->key_update_after > session->bytes_sent
               ? session->key_update_after - session->bytes_sent
               : 0;
    return left < len ? (size_t)left : len;
}

static int send_key_update(struct cli_session *session, int tx_in_kernel)
{
    session->key_update_done = 1;
    if (ktlsx_version(session->conn) != KTLSX_TLS13) {
        fprintf(stderr, "ktlsx: --key-update-after: %s has no KeyUpdate; none sent\n",
                ktlsx_version_name(session->conn));
        return 0;
    }
    if (tx_in_kernel) {
        if (ktlsx_ktls_key_update(session->conn, session->fd, 1) < 0) {
            set_ktls_error(session, "KeyUpdate", errno);
            return -1;
        }
    } else {
        if (ktlsx_key_update(session->conn, 1) < 0) {
            set_engine_error(session);
            (void)flush_output(session);
            return -1;
        }
        if (flush_output_or_fail(session) < 0)
            return -1;
    }
    fprintf(stderr, "ktlsx: KeyUpdate (update_requested) sent after %llu bytes\n",
            (unsigned long long)session->bytes_sent);
    return 0;
}

typedef int (*raw_send_fn)(struct cli_session *session, const uint8_t *data, size_t len);

/* Send through `raw`, counting the bytes and slipping in the KeyUpdate of
 * --key-update-after exactly after that many bytes. */
static int send_counted(struct cli_session *session, const void *data, size_t len, raw_send_fn raw,
                        int tx_in_kernel)
{
    const uint8_t *p = data;

    while (len > 0) {
        size_t now = bytes_before_key_update(session, len);

        if (now == 0) {
            if (send_key_update(session, tx_in_kernel) < 0)
                return -1;
            continue;
        }
        if (raw(session, p, now) < 0)
            return -1;
        session->bytes_sent += now;
        p += now;
        len -= now;
    }
    if (bytes_before_key_update(session, 1) == 0)
        return send_key_update(session, tx_in_kernel);
    return 0;
}

/* -- data path: records sealed and opened by the engine in user space -- */

static int userspace_send_raw(struct cli_session *session, const uint8_t *data, size_t len)
{
    if (ktlsx_write(session->conn, data, len) < 0) {
        set_engine_error(session);
        (void)flush_output(session);
        return -1;
    }
    return flush_output_or_fail(session);
}

static int userspace_send(struct cli_session *session, const void *data, size_t len)
{
    return send_counted(session, data, len, userspace_send_raw, 0);
}

/* Hand every plaintext byte the engine can decrypt now to `sink`. With
 * TX in user space, output the engine queued on the way (KeyUpdate answer,
 * alert) is sent; with TX in the kernel it must not be (it is not sealed
 * with the kernel's record state). */
static enum cli_recv_result userspace_deliver(struct cli_session *session, cli_sink_fn sink,
                                              void *ctx, int may_flush)
{
    static uint8_t plain[CLI_MAX_PLAINTEXT];

    for (;;) {
        long got = ktlsx_read(session->conn, plain, sizeof plain);

        if (got > 0) {
            if (sink(session, ctx, plain, (size_t)got) < 0)
                return CLI_RECV_ERROR;
            continue;
        }
        /* Post-handshake messages (KeyUpdate) and failures (the alert)
         * may have queued output. */
        if (may_flush && flush_output(session) < 0 && got == 0) {
            set_session_error(session, "send: %s", strerror(errno));
            return CLI_RECV_ERROR;
        }
        if (got == 0)
            return CLI_RECV_PROGRESS;
        if (got == -KTLSX_CLOSED)
            return CLI_RECV_CLOSE_NOTIFY;
        set_engine_error(session);
        return CLI_RECV_ERROR;
    }
}

static enum cli_recv_result userspace_recv_impl(struct cli_session *session, cli_sink_fn sink,
                                                void *ctx, int may_flush)
{
    static uint8_t wire[CLI_MAX_RECORD_WIRE];
    ssize_t n;

    /* Plaintext left from before a kernel TLS switch comes first. */
    if (ktlsx_pending_plaintext(session->conn) > 0)
        return userspace_deliver(session, sink, ctx, may_flush);
    /* No kernel TLS will take over this direction any more, so there is no
     * reason to read record by record: take whatever has arrived. */
    do
        n = read(session->fd, wire, sizeof wire);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        set_session_error(session, "read: %s", strerror(errno));
        return CLI_RECV_ERROR;
    }
    if (n == 0)
        return CLI_RECV_EOF;
    /* A failure here shows up as -KTLSX_FAILED from ktlsx_read. */
    (void)ktlsx_input(session->conn, wire, (size_t)n);
    return userspace_deliver(session, sink, ctx, may_flush);
}

static enum cli_recv_result userspace_recv(struct cli_session *session, cli_sink_fn sink,
                                           void *ctx)
{
    return userspace_recv_impl(session, sink, ctx, 1);
}

/* RX in user space while TX is in the kernel. */
static enum cli_recv_result userspace_recv_kernel_tx(struct cli_session *session,
                                                     cli_sink_fn sink, void *ctx)
{
    return userspace_recv_impl(session, sink, ctx, 0);
}

static int userspace_close_notify(struct cli_session *session)
{
    if (ktlsx_close_notify(session->conn) < 0) {
        set_engine_error(session);
        return -1;
    }
    return flush_output_or_fail(session);
}

static int userspace_send_file(struct cli_session *session, int file_fd, uint64_t len)
{
    static uint8_t chunk[CLI_FILE_CHUNK];

    while (len > 0) {
        size_t want = len < sizeof chunk ? (size_t)len : sizeof chunk;
        ssize_t n = read(file_fd, chunk, want);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_session_error(session, "reading the file: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            set_session_error(session, "the file ended %llu bytes early",
                              (unsigned long long)len);
            return -1;
        }
        /* The datapath's send: TX may still be in the kernel (RX is not). */
        if (session->datapath->send(session, chunk, (size_t)n) < 0)
            return -1;
        len -= (uint64_t)n;
    }
    return 0;
}

/* -- data path: records sealed and/or opened by kernel TLS -- */

static int kernel_send_raw(struct cli_session *session, const uint8_t *data, size_t len)
{
    while (len > 0) {
        /* Plain bytes: the kernel cuts and seals the records. */
        ssize_t n = send(session->fd, data, len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* The kernel poisons the whole socket once a received record
             * fails authentication, so the error surfaces on the send
             * side too; name the cause, not just the errno. */
            if (errno == EBADMSG)
                set_session_error(session, "send: kernel TLS stopped the connection: a received "
                                           "record failed authentication (bad_record_mac)");
            else
                set_session_error(session, "send: %s", strerror(errno));
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int kernel_send(struct cli_session *session, const void *data, size_t len)
{
    return send_counted(session, data, len, kernel_send_raw, 1);
}

/* Reads of up to CLI_MAX_PLAINTEXT per wakeup on a kernel TLS socket. */
#define CLI_RECV_BURST 16

static enum cli_recv_result kernel_recv_impl(struct cli_session *session, cli_sink_fn sink,
                                             void *ctx, int may_flush)
{
    static uint8_t plain[CLI_MAX_PLAINTEXT];
    long n;
    int err;

    /* Plaintext decrypted before the switch comes first, in order. */
    if (ktlsx_pending_plaintext(session->conn) > 0)
        return userspace_deliver(session, sink, ctx, may_flush);
    /* Drain what the kernel holds (bounded, so stdin still gets its turn)
     * rather than one read per wakeup: with small records one poll per
     * record would dominate the read path. */
    for (int burst = 0;; burst++) {
        /* Non-blocking for the read only (MSG_DONTWAIT, no fcntl per read):
         * the readable record may be a control record (NewSessionTicket,
         * KeyUpdate) that yields no data, and after the first read there may
         * be nothing left; the sink (an echo sends on this socket) and any
         * KeyUpdate answer run blocking. */
        n = ktlsx_ktls_recv(session->conn, session->fd, plain, sizeof plain, MSG_DONTWAIT);
        err = errno;
        /* TX in user space: a KeyUpdate answer may be queued. */
        if (may_flush && flush_output(session) < 0 && n >= 0) {
            set_session_error(session, "send: %s", strerror(errno));
            return CLI_RECV_ERROR;
        }
        if (n <= 0)
            break;
        if (sink(session, ctx, plain, (size_t)n) < 0)
            return CLI_RECV_ERROR;
        if (burst + 1 == CLI_RECV_BURST)
            return CLI_RECV_PROGRESS;
    }
    if (n == 0)
        return CLI_RECV_CLOSE_NOTIFY;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
        return CLI_RECV_PROGRESS;
    set_ktls_error(session, "kernel TLS read", err);
    return CLI_RECV_ERROR;
}

static enum cli_recv_result kernel_recv(struct cli_session *session, cli_sink_fn sink, void *ctx)
{
    return kernel_recv_impl(session, sink, ctx, 0);
}

/* RX in the kernel while TX is in user space. */
static enum cli_recv_result kernel_recv_user_tx(struct cli_session *session, cli_sink_fn sink,
                                                void *ctx)
{
    return kernel_recv_impl(session, sink, ctx, 1);
}

static int kernel_close_notify(struct cli_session *session)
{
    if (ktlsx_ktls_close_notify(session->conn, session->fd) < 0) {
        set_ktls_error(session, "close_notify", errno);
        return -1;
    }
    return 0;
}

/* Zero-copy: the kernel reads the file and seals the records itself. */
static int kernel_send_file(struct cli_session *session, int file_fd, uint64_t len)
{
    while (len > 0) {
        size_t now = len < 0x7ffff000 ? (size_t)len : 0x7ffff000;
        ssize_t n = sendfile(session->fd, file_fd, NULL, now);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            set_session_error(session, "sendfile: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            set_session_error(session, "sendfile: the file ended %llu bytes early",
                              (unsigned long long)len);
            return -1;
        }
        session->bytes_sent += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

static const struct cli_datapath userspace_datapath = {
    .ktls_state = "off",
    .send = userspace_send,
    .recv = userspace_recv,
    .close_notify = userspace_close_notify,
    .send_file = userspace_send_file,
};

static const struct cli_datapath ktls_tx_rx_datapath = {
    .ktls_state = "tx+rx",
    .send = kernel_send,
    .recv = kernel_recv,
    .close_notify = kernel_close_notify,
    .send_file = kernel_send_file,
};

static const struct cli_datapath ktls_tx_datapath = {
    .ktls_state = "tx",
    .send = kernel_send,
    .recv = userspace_recv_kernel_tx,
    .close_notify = kernel_close_notify,
    .send_file = kernel_send_file,
};

static const struct cli_datapath ktls_rx_datapath = {
    .ktls_state = "rx",
    .send = userspace_send,
    .recv = kernel_recv_user_tx,
    .close_notify = userspace_close_notify,
    .send_file = userspace_send_file,
};

/* The one place that decides how application data flows after the
 * handshake (all handshake output has been flushed, and the handshake was
 * read record by record, so nothing is stranded in user space).
 * Returns NULL with session->error set when the connection must fail. */
static const struct cli_datapath *cli_select_datapath(struct cli_session *session)
{
    char why[256] = "";
    int active;

    if (session->ktls_mode == CLI_KTLS_OFF)
        return &userspace_datapath;
    active = ktlsx_ktls_start(session->conn, session->fd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why,
                              sizeof why);
    if (why[0] == '\0')
        snprintf(why, sizeof why, "no reason given");
    if (active < 0) {
        /* TX went into the kernel, RX did not: the socket is unusable. */
        set_session_error(session, "%s", why);
        return NULL;
    }
    if (active == 0) {
        if (session->ktls_mode == CLI_KTLS_REQUIRE) {
            set_session_error(session, "kernel TLS required (--ktls require) but unavailable: %s",
                              why);
            return NULL;
        }
        fprintf(stderr, "ktlsx: kernel TLS unavailable, using user-space records: %s\n", why);
        return &userspace_datapath;
    }
    /* Each direction on its own: what the engine says is in the kernel. */
    switch (ktlsx_ktls_active(session->conn) & (KTLSX_KTLS_TX | KTLSX_KTLS_RX)) {
    case KTLSX_KTLS_TX | KTLSX_KTLS_RX:
        return &ktls_tx_rx_datapath;
    case KTLSX_KTLS_TX:
        return &ktls_tx_datapath;
    case KTLSX_KTLS_RX:
        return &ktls_rx_datapath;
    default:
        return &userspace_datapath;
    }
}

int cli_session_has_buffered(const struct cli_session *session)
{
    return ktlsx_pending_plaintext(session->conn) > 0;
}

int cli_session_wait_readable(struct cli_session *session, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? 0 : cli_now_ms() + timeout_ms;

    for (;;) {
        struct pollfd pfd = { .fd = session->fd, .events = POLLIN };
        int ready;

        if (cli_session_has_buffered(session))
            return 1;
        ready = poll(&pfd, 1, timeout_ms < 0 ? -1 : ms_until(deadline));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            set_session_error(session, "poll: %s", strerror(errno));
            return -1;
        }
        return ready > 0;
    }
}

static void print_handshake_summary(const struct cli_session *session)
{
    const ktlsx_conn *conn = session->conn;
    const char *version = ktlsx_version_name(conn);
    const char *cipher = ktlsx_cipher_name(conn);
    const char *group = ktlsx_group_name(conn);
    const char *alpn = ktlsx_alpn(conn);
    const char *peer = ktlsx_peer_subject(conn);

    fprintf(stderr,
            "ktlsx: handshake ok version=%s cipher=%s group=%s resumed=%d alpn=%s peer=\"%s\" "
            "ktls=%s\n",
            version != NULL ? version : "?", cipher != NULL ? cipher : "?",
            group != NULL ? group : "-", ktlsx_resumed(conn), alpn != NULL ? alpn : "-",
            peer != NULL ? peer : "", session->datapath->ktls_state);
    fflush(stderr);
}

/* One handshake read: at most ktlsx_input_wanted() bytes (so that nothing
 * past the handshake is pulled out of the socket) before `deadline`.
 * Returns bytes read, 0 on EOF, -1 with session->error set. */
static ssize_t read_handshake_input(struct cli_session *session, uint8_t *buf, size_t cap,
                                    int64_t deadline)
{
    size_t wanted = ktlsx_input_wanted(session->conn);
    struct pollfd pfd = { .fd = session->fd, .events = POLLIN };

    if (wanted == 0 || wanted > cap)
        wanted = cap;
    for (;;) {
        int ready = poll(&pfd, 1, ms_until(deadline));
        ssize_t n;

        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            set_session_error(session, "poll: %s", strerror(errno));
            return -1;
        }
        if (ready == 0) {
            set_session_error(session, "timed out after %d s waiting for the peer",
                              CLI_HANDSHAKE_TIMEOUT_MS / 1000);
            return -1;
        }
        n = read(session->fd, buf, wanted);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_session_error(session, "read: %s", strerror(errno));
            return -1;
        }
        return n;
    }
}

/* Returns 0 when the handshake is done, -1 with session->error set. */
static int drive_handshake(struct cli_session *session)
{
    static uint8_t buf[CLI_MAX_RECORD_WIRE];
    int64_t deadline = cli_now_ms() + CLI_HANDSHAKE_TIMEOUT_MS;
    int peer_closed = 0;

    for (;;) {
        int status = ktlsx_handshake(session->conn);
        int flushed = flush_output(session);
        ssize_t n;

        if (status == KTLSX_FAILED) {
            set_engine_error(session);
            return -1;
        }
        if (flushed < 0) {
            set_session_error(session, "send: %s",
                              errno == EAGAIN || errno == EWOULDBLOCK
                                  ? "timed out"
                                  : strerror(errno));
            return -1;
        }
        if (status == KTLSX_DONE)
            return 0;
        if (status != KTLSX_WANT_READ) {
            set_session_error(session, "unexpected engine status %d", status);
            return -1;
        }
        /* The engine was told about the EOF and still wants input: it
         * cannot have any, so stop rather than spin on read() == 0. */
        if (peer_closed) {
            set_session_error(session, "connection closed by peer");
            return -1;
        }
        n = read_handshake_input(session, buf, sizeof buf, deadline);
        if (n < 0)
            return -1;
        if (n == 0) {
            peer_closed = 1;
            (void)ktlsx_input(session->conn, NULL, 0);
            continue;
        }
        /* On failure the next ktlsx_handshake() says FAILED with the reason. */
        (void)ktlsx_input(session->conn, buf, (size_t)n);
    }
}

int cli_session_handshake(struct cli_session *session)
{
    int rc;

    /* Bound blocking sends too: a peer that stops reading must not stall
     * the handshake past its deadline. */
    set_send_timeout(session->fd, CLI_HANDSHAKE_TIMEOUT_MS);
    rc = drive_handshake(session);
    set_send_timeout(session->fd, 0);
    if (rc < 0) {
        fprintf(stderr, "ktlsx: handshake failed: %s\n", session->error);
        return -1;
    }
    session->datapath = cli_select_datapath(session);
    if (session->datapath == NULL) {
        cli_session_report_failure(session);
        return -1;
    }
    print_handshake_summary(session);
    return 0;
}

int cli_sink_to_stdout(struct cli_session *session, void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (cli_write_all(STDOUT_FILENO, data, len) < 0) {
        set_session_error(session, "write to stdout: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void cli_session_report_failure(const struct cli_session *session)
{
    fprintf(stderr, "ktlsx: connection failed: %s\n", session->error);
}

static int discard_plaintext(struct cli_session *session, void *ctx, const uint8_t *data,
                             size_t len)
{
    (void)session;
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

void cli_session_finish(struct cli_session *session, cli_sink_fn sink, void *ctx)
{
    int64_t deadline;

    if (session->datapath->close_notify(session) < 0)
        return;
    if (shutdown(session->fd, SHUT_WR) < 0)
        return;
    if (sink == NULL)
        sink = discard_plaintext;
    /* Closing with unread bytes in the receive queue makes the kernel send
     * a reset, which can destroy our last records before the peer reads
     * them. The peer may also still answer: TLS allows it to write after
     * our close_notify. */
    deadline = cli_now_ms() + CLI_LINGER_MS;
    for (;;) {
        if (cli_session_wait_readable(session, ms_until(deadline)) <= 0)
            return;
        if (session->datapath->recv(session, sink, ctx) != CLI_RECV_PROGRESS)
            return;
    }
}

/* Whether a send would find room in the socket buffer right now. */
static int socket_has_send_room(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    int ready;

    do
        ready = poll(&pfd, 1, 0);
    while (ready < 0 && errno == EINTR);
    return ready > 0;
}

int cli_relay_stdio(struct cli_session *session, int *stdin_open, int idle_after_stdin_eof_ms)
{
    static uint8_t chunk[CLI_MAX_PLAINTEXT];
    int64_t quiet_since = cli_now_ms(); /* last data from the peer, or stdin EOF */
    /* Set while the socket buffer is full: stop taking stdin and keep
     * reading the peer instead. A peer that echoes and blocks on sending to
     * us while we block on sending to it would otherwise deadlock. */
    int send_blocked = 0;

    for (;;) {
        struct pollfd pfds[2] = {
            { .fd = session->fd, .events = POLLIN | (send_blocked ? POLLOUT : 0) },
            { .fd = STDIN_FILENO, .events = POLLIN },
        };
        int watch_stdin = *stdin_open && !send_blocked;
        /* Plaintext from before a kernel TLS switch: deliver it without
         * waiting for the socket. */
        int buffered = cli_session_has_buffered(session);
        int timeout_ms = -1;
        int ready;

        if (!*stdin_open && idle_after_stdin_eof_ms >= 0) {
            int64_t left = quiet_since + idle_after_stdin_eof_ms - cli_now_ms();
            if (left <= 0)
                break;
            timeout_ms = (int)left;
        }
        if (buffered)
            timeout_ms = 0;
        ready = poll(pfds, watch_stdin ? 2 : 1, timeout_ms);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            set_session_error(session, "poll: %s", strerror(errno));
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        if (ready == 0 && !buffered)
            continue; /* the idle check at the top decides */

        if (pfds[0].revents & POLLOUT)
            send_blocked = 0;
        if (buffered || (pfds[0].revents & ~POLLOUT)) {
            switch (session->datapath->recv(session, cli_sink_to_stdout, NULL)) {
            case CLI_RECV_PROGRESS:
                quiet_since = cli_now_ms();
                break;
            case CLI_RECV_CLOSE_NOTIFY:
            case CLI_RECV_EOF:
                cli_session_finish(session, cli_sink_to_stdout, NULL);
                return CLI_EXIT_OK;
            case CLI_RECV_ERROR:
                cli_session_report_failure(session);
                return CLI_EXIT_FAILURE;
            }
        }

        if (watch_stdin && pfds[1].revents != 0) {
            ssize_t n;

            if (!socket_has_send_room(session->fd)) {
                send_blocked = 1;
                continue;
            }
            n = read(STDIN_FILENO, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                /* EOF, or an unreadable stdin: either way nothing more to send. */
                *stdin_open = 0;
                quiet_since = cli_now_ms();
                continue;
            }
            if (session->datapath->send(session, chunk, (size_t)n) < 0) {
                cli_session_report_failure(session);
                return CLI_EXIT_FAILURE;
            }
        }
    }
    cli_session_finish(session, cli_sink_to_stdout, NULL);
    return CLI_EXIT_OK;
}
