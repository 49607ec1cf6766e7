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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* After our close_notify, how long to wait for the peer to close. */
#define CLI_LINGER_MS 1000

/* Largest TLS record on the wire: 5-byte header + 2^14 plaintext + the
 * TLS 1.2 ciphertext expansion allowance (2048). */
#define CLI_MAX_RECORD_WIRE (5 + 16384 + 2048)
/* Largest plaintext fragment of one record. */
#define CLI_MAX_PLAINTEXT 16384

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

void cli_tls_options_init(struct cli_tls_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->min_version = KTLSX_TLS12;
    opts->max_version = KTLSX_TLS13;
    opts->verify_client = KTLSX_VERIFY_NONE;
}

int cli_parse_tls_version(const char *arg, struct cli_tls_options *opts)
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

int cli_add_cert_file(struct cli_tls_options *opts, const char *path)
{
    if (opts->cert_count == CLI_MAX_CERTS)
        return -1;
    opts->cert_files[opts->cert_count++] = path;
    return 0;
}

int cli_add_key_file(struct cli_tls_options *opts, const char *path)
{
    if (opts->key_count == CLI_MAX_CERTS)
        return -1;
    opts->key_files[opts->key_count++] = path;
    return 0;
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
    strcpy(ep->port, port);
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
    struct sockaddr_storage ss;
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

static void set_send_timeout(int fd, int timeout_ms)
{
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* -- data path: records sealed and opened by the engine in user space -- */

static int userspace_send(struct cli_session *session, const void *data, size_t len)
{
    if (ktlsx_write(session->conn, data, len) < 0) {
        set_engine_error(session);
        (void)flush_output(session);
        return -1;
    }
    if (flush_output(session) < 0) {
        set_session_error(session, "send: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static enum cli_recv_result userspace_recv(struct cli_session *session, cli_sink_fn sink,
                                           void *ctx)
{
    static uint8_t wire[CLI_MAX_RECORD_WIRE];
    static uint8_t plain[CLI_MAX_PLAINTEXT];
    ssize_t n;

    /* No kernel TLS will take over this socket, so there is no reason to
     * read record by record: take whatever has arrived. */
    do
        n = read(session->fd, wire, sizeof wire);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        set_session_error(session, "read: %s", strerror(errno));
        return CLI_RECV_ERROR;
    }
    if (n == 0)
        return CLI_RECV_EOF;
    /* A failure here shows up as -KTLSX_FAILED from ktlsx_read below. */
    (void)ktlsx_input(session->conn, wire, (size_t)n);

    for (;;) {
        long got = ktlsx_read(session->conn, plain, sizeof plain);

        if (got > 0) {
            if (sink(session, ctx, plain, (size_t)got) < 0)
                return CLI_RECV_ERROR;
            continue;
        }
        /* Post-handshake messages (KeyUpdate) and failures (the alert)
         * may have queued output. */
        if (flush_output(session) < 0 && got == 0) {
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

static int userspace_close_notify(struct cli_session *session)
{
    if (ktlsx_close_notify(session->conn) < 0) {
        set_engine_error(session);
        return -1;
    }
    if (flush_output(session) < 0) {
        set_session_error(session, "send: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static const struct cli_datapath userspace_datapath = {
    .ktls_state = "off",
    .send = userspace_send,
    .recv = userspace_recv,
    .close_notify = userspace_close_notify,
};

/* The one place that decides how application data flows after the
 * handshake. Kernel TLS offload will be chosen here when the kernel and the
 * negotiated cipher allow it; until then every byte goes through the
 * engine's user-space record layer. */
static const struct cli_datapath *cli_select_datapath(struct cli_session *session)
{
    (void)session;
    return &userspace_datapath;
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
        struct pollfd pfd = { .fd = session->fd, .events = POLLIN };
        int ready = poll(&pfd, 1, ms_until(deadline));

        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
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
        int timeout_ms = -1;
        int ready;

        if (!*stdin_open && idle_after_stdin_eof_ms >= 0) {
            int64_t left = quiet_since + idle_after_stdin_eof_ms - cli_now_ms();
            if (left <= 0)
                break;
            timeout_ms = (int)left;
        }
        ready = poll(pfds, watch_stdin ? 2 : 1, timeout_ms);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            set_session_error(session, "poll: %s", strerror(errno));
            cli_session_report_failure(session);
            return CLI_EXIT_FAILURE;
        }
        if (ready == 0)
            continue; /* the idle check at the top decides */

        if (pfds[0].revents & POLLOUT)
            send_blocked = 0;
        if (pfds[0].revents & ~POLLOUT) {
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
