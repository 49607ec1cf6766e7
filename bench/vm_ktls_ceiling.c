/* ktlsx-ktls-ceiling: the kernel's own kernel-TLS sendfile ceiling (issue 11, `make vm-bench`).
 *
 *   ktlsx-ktls-ceiling --file F --cert C --key K --ca CA [--seconds S] [--warmup S] [--tls 1.2|1.3]
 *
 * One TLS connection over loopback TCP inside one process: a server thread and a client
 * thread, both driven by libktlsx (public API), which installs the keys in the kernel on both
 * ends (server TX, client RX; --ktls require: no user-space records anywhere), AES-128-GCM
 * like the rows it bounds.  Then the server
 * calls sendfile(2) on the socket in a loop over F (back to offset 0 at its end) and the client
 * reads and discards.  No HTTP, no per-response work, no event loop: what a file server on the
 * same kernel could reach at best.  Prints one line:
 *   ceiling bytes=N seconds=S mbps=M (MB/s = 10^6 bytes/s, bytes received in the measured window)
 * Exit status 0 when bytes were moved, 1 on a failure (message on stderr), 2 for a bad command line. */
#include <ktlsx/ktlsx.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static const char *file_path, *cert, *key, *ca;
static double seconds = 5, warmup = 1;
static uint16_t version = 0x0304;
static volatile int stop;
static int srv_fd = -1, cli_fd = -1;
static ktlsx_config *scfg, *ccfg;
static const char *srv_err, *cli_err;
static char srv_msg[256], cli_msg[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *server(void *arg)
{
    (void)arg;
    ktlsx_socket *s = ktlsx_socket_new(scfg, srv_fd, NULL);
    int ffd = open(file_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (!s || ffd < 0 || fstat(ffd, &st) < 0 || st.st_size == 0) {
        snprintf(srv_msg, sizeof srv_msg, "server: %s: %s", file_path, ffd < 0 ? strerror(errno) : "empty or no memory");
        srv_err = srv_msg;
        goto out;
    }
    if (ktlsx_socket_set_ktls(s, KTLSX_KTLS_MODE_REQUIRE, KTLSX_KTLS_TX) != 0 || ktlsx_socket_handshake(s) != KTLSX_IO_OK ||
        ktlsx_socket_flush(s) != 0) {
        snprintf(srv_msg, sizeof srv_msg, "server: %s", ktlsx_socket_error(s));
        srv_err = srv_msg;
        goto out;
    }
    off_t off = 0;
    while (!stop) {
        size_t len = (size_t)(st.st_size - off) < CHUNK ? (size_t)(st.st_size - off) : CHUNK;
        ssize_t n = sendfile(srv_fd, ffd, &off, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (!stop) snprintf(srv_msg, sizeof srv_msg, "server: sendfile: %s", n < 0 ? strerror(errno) : "0 bytes"), srv_err = srv_msg;
            break;
        }
        if (off >= st.st_size) off = 0;
    }
out:
    shutdown(srv_fd, SHUT_WR);
    if (ffd >= 0) close(ffd);
    ktlsx_socket_free(s);
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "file", required_argument, 0, 'f' }, { "cert", required_argument, 0, 'c' }, { "key", required_argument, 0, 'k' },
        { "ca", required_argument, 0, 'a' }, { "seconds", required_argument, 0, 's' }, { "warmup", required_argument, 0, 'w' },
        { "tls", required_argument, 0, 't' }, { 0, 0, 0, 0 }
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f': file_path = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'a': ca = optarg; break;
        case 's': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 't':
            if (!strcmp(optarg, "1.2")) version = 0x0303;
            else if (!strcmp(optarg, "1.3")) version = 0x0304;
            else { fprintf(stderr, "ktlsx-ktls-ceiling: --tls: 1.2 or 1.3\n"); return 2; }
            break;
        default: return 2;
        }
    }
    if (!file_path || !cert || !key || !ca || seconds <= 0 || warmup < 0 || optind != argc) {
        fprintf(stderr, "usage: ktlsx-ktls-ceiling --file F --cert C --key K --ca CA [--seconds S] [--warmup S] [--tls 1.2|1.3]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* the server's last sendfile meets the reader's shutdown: EPIPE, not death */
    scfg = ktlsx_config_new(KTLSX_SERVER);
    ccfg = ktlsx_config_new(KTLSX_CLIENT);
    if (!scfg || !ccfg || ktlsx_config_add_cert(scfg, cert, key) != 0 || ktlsx_config_set_versions(scfg, version, version) != 0 ||
        ktlsx_config_set_tickets(scfg, 0, 0) != 0 || ktlsx_config_set_ca_file(ccfg, ca) != 0 ||
        ktlsx_config_set_ciphers(ccfg, "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256") != 0 ||
        ktlsx_config_set_versions(ccfg, version, version) != 0) {
        fprintf(stderr, "ktlsx-ktls-ceiling: configuration: %s%s\n", scfg ? ktlsx_config_error(scfg) : "no memory",
                ccfg ? ktlsx_config_error(ccfg) : "");
        return 1;
    }
    /* loopback TCP pair */
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 || (cli_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(cli_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || (srv_fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        fprintf(stderr, "ktlsx-ktls-ceiling: loopback connection: %s\n", strerror(errno));
        return 1;
    }
    close(lfd);
    pthread_t th;
    if (pthread_create(&th, NULL, server, NULL) != 0) {
        fprintf(stderr, "ktlsx-ktls-ceiling: no thread\n");
        return 1;
    }
    ktlsx_socket *s = ktlsx_socket_new(ccfg, cli_fd, "localhost");
    char *buf = malloc(CHUNK);
    unsigned long long counted = 0;
    double t_start = 0, t_end = 0;
    if (!s || !buf) {
        cli_err = "client: no memory";
    } else if (ktlsx_socket_set_ktls(s, KTLSX_KTLS_MODE_REQUIRE, KTLSX_KTLS_RX) != 0 || ktlsx_socket_handshake(s) != KTLSX_IO_OK) {
        snprintf(cli_msg, sizeof cli_msg, "client: %s", ktlsx_socket_error(s));
        cli_err = cli_msg;
    } else {
        double t0 = now_s();
        t_start = t0 + warmup, t_end = t_start + seconds;
        for (;;) {
            long n = ktlsx_socket_read(s, buf, CHUNK);
            double t = now_s();
            if (n <= 0) {
                snprintf(cli_msg, sizeof cli_msg, "client: read: %s", n == 0 ? "end of stream" : ktlsx_socket_error(s));
                cli_err = cli_msg;
                break;
            }
            if (t >= t_end) break;
            if (t >= t_start) counted += (unsigned long long)n;
        }
    }
    stop = 1;
    shutdown(cli_fd, SHUT_RDWR); /* wakes a sendfile blocked on a full window */
    pthread_join(th, NULL);
    ktlsx_socket_free(s);
    free(buf);
    ktlsx_config_free(scfg);
    ktlsx_config_free(ccfg);
    close(cli_fd);
    close(srv_fd);
    if (srv_err || (cli_err && !counted)) {
        fprintf(stderr, "ktlsx-ktls-ceiling: %s\n", srv_err ? srv_err : cli_err);
        return 1;
    }
    printf("ceiling bytes=%llu seconds=%.3f mbps=%.1f\n", counted, seconds, (double)counted / seconds / 1e6);
    return counted ? 0 : 1;
}
