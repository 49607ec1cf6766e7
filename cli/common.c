/* Helpers shared by `ktlsx client` and `ktlsx server`: TLS configuration,
 * TCP sockets, the handshake loop and the application data path. */
#include "cli.h"

#include <ktlsx/daemon.h>

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

/* Largest plaintext fragment of one record. */
#define CLI_MAX_PLAINTEXT 16384


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
    case CLI_OPT_MAX_HANDSHAKE_MESSAGE: {
        /* The range is the library's to check (its message names the bounds). */
        char *end = NULL;
        errno = 0;
        opts->max_handshake_message = strtoull(arg, &end, 10);
        if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || opts->max_handshake_message == 0) {
            cli_usage_error(cmd, "--max-handshake-message takes a number of bytes, not '%s'", arg);
            return -1;
        }
        return 1;
    }
    case CLI_OPT_RECORD_SIZE_LIMIT: {
        /* issue 9: the range (64..16385) is the library's to check. */
        char *end = NULL;
        errno = 0;
        opts->record_size_limit = strtoul(arg, &end, 10);
        if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || opts->record_size_limit > 65535) {
            cli_usage_error(cmd, "--record-size-limit takes a number of bytes (64..16385), not '%s'", arg);
            return -1;
        }
        return 1;
    }
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

/* The library's log lines in the tool's voice ("ktlsx: kernel TLS
 * unavailable, using user-space records: ..."). */
static void log_to_stderr(void *arg, int level, const char *line)
{
    (void)arg;
    if (level <= KTLSX_LOG_WARNING)
        fprintf(stderr, "ktlsx: %s\n", line);
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
    if (!failed && opts->record_size_limit != 0)
        failed = ktlsx_config_set_record_size_limit(cfg, (unsigned)opts->record_size_limit) < 0;
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
    if (!failed && opts->max_handshake_message != 0)
        failed = ktlsx_config_set_max_handshake_message(
                     cfg, opts->max_handshake_message > SIZE_MAX ? SIZE_MAX : (size_t)opts->max_handshake_message) < 0;
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
    if (!failed && opts->session_store_servers != NULL)
        failed = ktlsx_config_set_memcached_store(cfg, opts->session_store_servers, opts->session_store_key,
                                                  opts->session_store_timeout_ms) < 0;
    if (!failed && opts->psk_identity != NULL &&
        ktlsx_config_set_psk_file(cfg, opts->psk_identity, opts->psk_file, opts->psk_sha384) < 0) {
        fprintf(stderr, "ktlsx: --psk-file %s\n", ktlsx_config_error(cfg)); /* "FILE: problem" */
        ktlsx_config_free(cfg);
        return NULL;
    }
    if (failed) {
        const char *msg = ktlsx_config_error(cfg);
        fprintf(stderr, "ktlsx: %s\n", msg != NULL ? msg : "invalid configuration");
        ktlsx_config_free(cfg);
        return NULL;
    }
    if (opts->trace)
        ktlsx_config_set_trace(cfg, stderr);
    (void)ktlsx_config_set_log(cfg, log_to_stderr, NULL);
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

/* The socket layer's reason for its last failure. */
static void take_socket_error(struct cli_session *session)
{
    const char *why = ktlsx_socket_error(session->sock);

    set_session_error(session, "%s", why[0] != '\0' ? why : "unknown error");
}

void cli_session_free(struct cli_session *session)
{
    if (session->sock != NULL)
        ktlsx_socket_free(session->sock); /* frees the connection too */
    else
        ktlsx_conn_free(session->conn);
    session->sock = NULL;
    session->conn = NULL;
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

static int send_key_update(struct cli_session *session)
{
    session->key_update_done = 1;
    if (ktlsx_version(session->conn) != KTLSX_TLS13) {
        fprintf(stderr, "ktlsx: --key-update-after: %s has no KeyUpdate; none sent\n",
                ktlsx_version_name(session->conn));
        return 0;
    }
    if (ktlsx_socket_key_update(session->sock, 1) == KTLSX_IO_FAILED ||
        ktlsx_socket_flush(session->sock) < 0) {
        take_socket_error(session);
        return -1;
    }
    fprintf(stderr, "ktlsx: KeyUpdate (update_requested) sent after %llu bytes\n",
            (unsigned long long)session->bytes_sent);
    return 0;
}

int cli_session_send(struct cli_session *session, const void *data, size_t len)
{
    const uint8_t *p = data;

    /* The KeyUpdate of --key-update-after goes exactly after that many bytes. */
    while (len > 0) {
        size_t now = bytes_before_key_update(session, len);

        if (now == 0) {
            if (send_key_update(session) < 0)
                return -1;
            continue;
        }
        if (ktlsx_socket_write(session->sock, p, now) < 0) {
            take_socket_error(session);
            return -1;
        }
        session->bytes_sent += now;
        p += now;
        len -= now;
    }
    if (bytes_before_key_update(session, 1) == 0)
        return send_key_update(session);
    return 0;
}

int cli_session_send_file(struct cli_session *session, int file_fd, uint64_t len)
{
    off_t start = lseek(file_fd, 0, SEEK_CUR);
    int64_t offset = start < 0 ? 0 : (int64_t)start;

    if (ktlsx_socket_sendfile(session->sock, file_fd, &offset, len) < 0) {
        take_socket_error(session);
        return -1;
    }
    session->bytes_sent += len;
    return 0;
}

/* Reads per readable wakeup: a kernel-TLS socket hands over one record per
 * read, so a burst drains what arrived instead of returning to poll for each. */
#define CLI_RECV_BURST 16

enum cli_recv_result cli_session_recv(struct cli_session *session, cli_sink_fn sink, void *ctx)
{
    uint8_t plain[CLI_MAX_PLAINTEXT];

    for (int burst = 0; burst < CLI_RECV_BURST; burst++) {
        size_t got = 0;

        switch (ktlsx_socket_read_step(session->sock, plain, sizeof plain, &got)) {
        case KTLSX_IO_OK:
            if (sink(session, ctx, plain, got) < 0)
                return CLI_RECV_ERROR;
            continue;
        case KTLSX_IO_WANT_READ:
            return CLI_RECV_PROGRESS;
        case KTLSX_IO_WANT_WRITE:
            /* An answer (KeyUpdate) waits for room: send it, then read on. */
            if (ktlsx_socket_flush(session->sock) < 0) {
                take_socket_error(session);
                return CLI_RECV_ERROR;
            }
            continue;
        case KTLSX_IO_CLOSED:
            return ktlsx_socket_clean_close(session->sock) ? CLI_RECV_CLOSE_NOTIFY : CLI_RECV_EOF;
        default:
            take_socket_error(session);
            return CLI_RECV_ERROR;
        }
    }
    return CLI_RECV_PROGRESS;
}

int cli_session_has_buffered(const struct cli_session *session)
{
    return ktlsx_socket_pending_plaintext(session->sock) > 0;
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
            "ktls=%s record_size_limit=%d/%d\n",
            version != NULL ? version : "?", cipher != NULL ? cipher : "?",
            group != NULL ? group : "-", ktlsx_resumed(conn), alpn != NULL ? alpn : "-",
            peer != NULL ? peer : "", ktlsx_socket_ktls_name(session->sock),
            ktlsx_record_size_limit(conn, KTLSX_TX), ktlsx_record_size_limit(conn, KTLSX_RX));
    fflush(stderr);
}

static const enum ktlsx_ktls_mode socket_ktls_mode[] = {
    [CLI_KTLS_AUTO] = KTLSX_KTLS_MODE_AUTO,
    [CLI_KTLS_OFF] = KTLSX_KTLS_MODE_OFF,
    [CLI_KTLS_REQUIRE] = KTLSX_KTLS_MODE_REQUIRE,
};

int cli_session_handshake(struct cli_session *session)
{
    int rc;

    session->sock = ktlsx_socket_wrap(session->conn, session->fd);
    if (session->sock == NULL) {
        fprintf(stderr, "ktlsx: handshake failed: cannot allocate the TLS socket\n");
        return -1;
    }
    if (ktlsx_socket_set_ktls(session->sock, socket_ktls_mode[session->ktls_mode],
                              KTLSX_KTLS_TX | KTLSX_KTLS_RX) < 0 ||
        ktlsx_socket_set_timeouts(session->sock, CLI_HANDSHAKE_TIMEOUT_MS, 0) < 0) {
        take_socket_error(session);
        fprintf(stderr, "ktlsx: handshake failed: %s\n", session->error);
        return -1;
    }
    rc = ktlsx_socket_handshake(session->sock);
    if (rc != KTLSX_IO_OK) {
        take_socket_error(session);
        /* The engine finished and the data path could not be set up (kernel
         * TLS required, or half installed): the connection failed, not the
         * handshake. */
        if (ktlsx_handshake(session->conn) == KTLSX_DONE && rc == KTLSX_IO_FAILED) {
            if (session->ktls_mode == CLI_KTLS_REQUIRE && ktlsx_socket_ktls(session->sock) == 0)
                set_session_error(session, "kernel TLS required (--ktls require) but unavailable: %s",
                                  ktlsx_socket_ktls_why(session->sock));
            cli_session_report_failure(session);
        } else {
            fprintf(stderr, "ktlsx: handshake failed: %s\n", session->error);
        }
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

    if (ktlsx_socket_shutdown(session->sock) < 0)
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
        if (cli_session_recv(session, sink, ctx) != CLI_RECV_PROGRESS)
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
    uint8_t chunk[CLI_MAX_PLAINTEXT];
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
            switch (cli_session_recv(session, cli_sink_to_stdout, NULL)) {
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
            if (cli_session_send(session, chunk, (size_t)n) < 0) {
                cli_session_report_failure(session);
                return CLI_EXIT_FAILURE;
            }
        }
    }
    cli_session_finish(session, cli_sink_to_stdout, NULL);
    return CLI_EXIT_OK;
}

/* ---- --daemon: the handshake through ktlsxd (issue 8) ---- */

int cli_daemon_handshake(struct cli_session *session, enum ktlsx_role role, const char *door, const char *profile,
                         const char *server_name, const char *alpn)
{
    struct ktlsx_daemon_result res;

    session->conn = ktlsx_daemon_handshake(door, session->fd, role, profile, server_name, alpn,
                                           CLI_HANDSHAKE_TIMEOUT_MS, &res);
    if (session->conn == NULL) {
        if (res.status == KTLSX_DOOR_OK)
            fprintf(stderr, "ktlsx: handshake failed: profile '%s' hands back no TLS state (export_state = no), "
                            "which this tool needs to carry the connection\n", profile);
        else
            /* The message names the alert when there was one. */
            fprintf(stderr, "ktlsx: handshake failed: ktlsxd: %s: %s\n", ktlsx_door_status_name(res.status),
                    res.message);
        return -1;
    }
    session->sock = ktlsx_socket_wrap(session->conn, session->fd);
    if (session->sock == NULL) {
        fprintf(stderr, "ktlsx: handshake failed: cannot allocate the TLS socket\n");
        ktlsx_conn_free(session->conn);
        session->conn = NULL;
        return -1;
    }
    print_handshake_summary(session);
    if (res.peer_sans[0] != '\0')
        fprintf(stderr, "ktlsx: through ktlsxd; peer names: %s\n", res.peer_sans);
    if (res.ktls_why[0] != '\0')
        fprintf(stderr, "ktlsx: through ktlsxd; kernel TLS %s: %s\n", ktlsx_socket_ktls_name(session->sock),
                res.ktls_why);
    return 0;
}
/* ---- end of --daemon ---- */
