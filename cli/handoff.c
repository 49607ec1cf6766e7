/* `ktlsx client --handoff` and `ktlsx adopt`: one process runs the
 * handshake, another carries the connection on.  This is the hand-back
 * ktlsxd does for its callers: the socket travels by SCM_RIGHTS, the TLS
 * state (keys and sequence numbers of the directions still in user space,
 * traffic secrets for KeyUpdate, what resumption needs) as a
 * ktlsx_conn_export blob in the same message.  The adopting process is a
 * fresh exec: it shares no memory with the one that shook hands, and holds no
 * certificate or key of its own. */
#include "cli.h"

#include <ktlsx/daemon.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/crypto.h>

/* The adopting process's end of the hand-over socket. */
#define HANDOFF_FD 3

/* The socket and the blob travel as one SOCK_SEQPACKET message, through the
 * library's SCM_RIGHTS helpers (the same ones ktlsxd's door uses). */
static int send_connection(int channel, int fd, const uint8_t *blob, size_t len)
{
    return ktlsx_send_fd(channel, blob, len, fd, 0);
}

/* Receive the blob and the fd. Returns the fd (close-on-exec), or -1 with
 * *why set. */
static int receive_connection(int channel, uint8_t *blob, size_t cap, size_t *len, const char **why)
{
    int fd = -1;
    long n = ktlsx_recv_fd(channel, blob, cap, &fd, 0);

    if (n <= 0 || fd < 0) {
        *why = n == 0 ? "the handing process closed the channel"
               : n < 0 ? (errno == EMSGSIZE ? "message truncated" : strerror(errno))
                       : "no socket came with the state";
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *len = (size_t)n;
    return fd;
}

int cli_handoff(struct cli_session *session, const char *sess_out)
{
    uint8_t blob[KTLSX_EXPORT_MAX];
    const char *why = NULL;
    long len = ktlsx_conn_export(session->conn, blob, sizeof blob, &why);
    int channel[2];
    pid_t child;
    int status = CLI_EXIT_FAILURE;
    int wstatus;

    if (len < 0) {
        fprintf(stderr, "ktlsx: --handoff: cannot export the connection: %s\n", why);
        return CLI_EXIT_FAILURE;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0) {
        fprintf(stderr, "ktlsx: --handoff: socketpair: %s\n", strerror(errno));
        goto out;
    }
    fflush(NULL);
    child = fork();
    if (child < 0) {
        fprintf(stderr, "ktlsx: --handoff: fork: %s\n", strerror(errno));
        close(channel[0]);
        close(channel[1]);
        goto out;
    }
    if (child == 0) {
        /* Only the client has --handoff today; the blob says the role too. */
        char *argv[] = { "ktlsx", "adopt", "--role", "client", "--sess-out", (char *)sess_out, NULL };

        /* dup2 clears close-on-exec on the copy: only fd 3 crosses the exec. */
        if (dup2(channel[1], HANDOFF_FD) < 0)
            _exit(CLI_EXIT_FAILURE);
        if (sess_out == NULL)
            argv[4] = NULL;
        execv("/proc/self/exe", argv);
        fprintf(stderr, "ktlsx: --handoff: exec: %s\n", strerror(errno));
        _exit(CLI_EXIT_FAILURE);
    }
    close(channel[1]);
    if (send_connection(channel[0], session->fd, blob, (size_t)len) < 0)
        fprintf(stderr, "ktlsx: --handoff: sending the connection: %s\n", strerror(errno));
    else
        fprintf(stderr, "ktlsx: handed the connection to process %d\n", (int)child);
    close(channel[0]);
    /* Our copy of the socket goes: the adopting process owns the connection. */
    close(session->fd);
    session->fd = -1;
    while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR)
        ;
    status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : CLI_EXIT_FAILURE;
out:
    OPENSSL_cleanse(blob, sizeof blob);
    return status;
}

static const char adopt_usage[] =
    "usage: ktlsx adopt [--fd N] [--role client|server] [--sess-out FILE]\n"
    "\n"
    "Continue a TLS connection handed over on unix socket N (default 3) by\n"
    "'ktlsx client --handoff': its socket and state arrive in one message;\n"
    "then stdin goes to the peer and the peer's data to stdout, as with\n"
    "'ktlsx client'.  Exit status as for 'ktlsx client'.\n";

int ktlsx_cmd_adopt(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "fd", required_argument, NULL, 'f' },
        { "role", required_argument, NULL, 'r' },
        { "sess-out", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct cli_tls_options tls;
    struct cli_session session = { .fd = -1 };
    enum ktlsx_role role = KTLSX_CLIENT;
    unsigned long long channel = HANDOFF_FD;
    const char *sess_out = NULL;
    const char *why = NULL;
    uint8_t blob[KTLSX_EXPORT_MAX];
    size_t len = 0;
    ktlsx_config *cfg;
    int stdin_open = 1;
    int status;
    int opt;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        switch (opt) {
        case 'f':
            if (cli_parse_count(optarg, 1 << 20, &channel) < 0)
                return cli_usage_error("adopt", "--fd must be a descriptor number, not '%s'", optarg);
            break;
        case 'r':
            if (strcmp(optarg, "client") != 0 && strcmp(optarg, "server") != 0)
                return cli_usage_error("adopt", "--role must be client or server, not '%s'", optarg);
            role = optarg[0] == 'c' ? KTLSX_CLIENT : KTLSX_SERVER;
            break;
        case 's':
            sess_out = optarg;
            break;
        case 'h':
            fputs(adopt_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_getopt_error("adopt", opt, argv);
        }
    }
    /* No certificate, key or trust store: the state is all this process needs. */
    cli_tls_options_init(&tls);
    cfg = cli_build_config(role, &tls);
    if (cfg == NULL)
        return CLI_EXIT_USAGE;
    session.fd = receive_connection((int)channel, blob, sizeof blob, &len, &why);
    close((int)channel);
    if (session.fd < 0) {
        fprintf(stderr, "ktlsx: adopt: %s\n", why);
        ktlsx_config_free(cfg);
        return CLI_EXIT_FAILURE;
    }
    session.conn = ktlsx_conn_import(cfg, blob, len, &why);
    OPENSSL_cleanse(blob, sizeof blob);
    session.sock = session.conn != NULL ? ktlsx_socket_wrap(session.conn, session.fd) : NULL;
    if (session.sock == NULL) {
        fprintf(stderr, "ktlsx: adopt: cannot take the connection: %s\n",
                why != NULL ? why : "out of memory");
        ktlsx_conn_free(session.conn);
        close(session.fd);
        ktlsx_config_free(cfg);
        return CLI_EXIT_FAILURE;
    }
    fprintf(stderr, "ktlsx: adopted connection version=%s cipher=%s resumed=%d ktls=%s\n",
            ktlsx_version_name(session.conn), ktlsx_cipher_name(session.conn),
            ktlsx_resumed(session.conn), ktlsx_socket_ktls_name(session.sock));
    status = cli_relay_stdio(&session, &stdin_open,
                             role == KTLSX_CLIENT ? CLI_CLIENT_IDLE_AFTER_STDIN_EOF_MS : -1);
    if (sess_out != NULL)
        (void)cli_save_session(session.conn, sess_out);
    cli_session_free(&session);
    close(session.fd);
    ktlsx_config_free(cfg);
    return status;
}
