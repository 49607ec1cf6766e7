/* https-get URL [--ca FILE]: fetch https://host[:port]/path and print the body on stdout.
 * The blocking ktlsx_socket calls are the step calls plus poll(2) with deadlines: a server that
 * stops answering costs at most the timeout, never a hang.  Exit 0 on a 2xx answer. */
#include <ktlsx/ktlsx.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { TIMEOUT_MS = 10000 }; /* for connect, the handshake, and each wait for data */

/* TCP connect with a deadline: a blocking connect(2) to a dead host can hang for minutes. */
static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
    int err = getaddrinfo(host, port, &hints, &res), fd = -1;
    if (err) return fprintf(stderr, "https-get: %s: %s\n", host, gai_strerror(err)), -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
            err = errno;
            continue;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        socklen_t len = sizeof err;
        err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && (err = errno) == EINPROGRESS) {
            err = ETIMEDOUT;
            if (poll(&pfd, 1, TIMEOUT_MS) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        }
        if (err) close(fd), fd = -1; /* try the next address */
    }
    freeaddrinfo(res);
    if (fd < 0) fprintf(stderr, "https-get: connect to %s port %s: %s\n", host, port, strerror(err));
    return fd; /* left non-blocking: the socket layer never needs it blocking */
}

int main(int argc, char **argv)
{
    static const struct option opts[] = { { "ca", 1, NULL, 'c' }, { 0 } };
    const char *ca = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == '?') return 2;
        ca = optarg;
    }
    const char *url = optind + 1 == argc ? argv[optind] : "";
    if (strncmp(url, "https://", 8) != 0 || url[8] == '\0' || url[8] == '/')
        return fprintf(stderr, "usage: https-get https://HOST[:PORT][/PATH] [--ca FILE]   (not: \"%s\")\n", url), 2;
    /* https://host[:port]/path, host possibly an IPv6 literal in brackets. */
    const char *authority = url + 8, *path = authority + strcspn(authority, "/");
    char hostport[300], *host = hostport, *port = "443", *colon;
    if ((size_t)(path - authority) >= sizeof hostport) return fprintf(stderr, "https-get: host name too long\n"), 2;
    snprintf(hostport, sizeof hostport, "%.*s", (int)(path - authority), authority);
    char *bracket = hostport[0] == '[' ? strchr(hostport, ']') : NULL;
    if (bracket) host++, *bracket = '\0', colon = bracket[1] == ':' ? bracket + 1 : NULL;
    else colon = strrchr(hostport, ':');
    if (colon) *colon = '\0', port = colon + 1;
    if (*path == '\0') path = "/";

    /* Without --ca the system's trust store; the server name is checked against the certificate. */
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_CLIENT);
    if (!cfg || (ca && ktlsx_config_set_ca_file(cfg, ca) < 0)) {
        fprintf(stderr, "https-get: %s\n", cfg ? ktlsx_config_error(cfg) : "out of memory");
        ktlsx_config_free(cfg);
        return 1;
    }
    int fd = connect_to(host, port), status = 0, rc = 1;
    ktlsx_socket *sock = fd < 0 ? NULL : ktlsx_socket_new(cfg, fd, host); /* SNI unless an IP literal */
    if (sock && ktlsx_socket_set_timeouts(sock, TIMEOUT_MS, TIMEOUT_MS) == 0 &&
        ktlsx_socket_handshake(sock) == KTLSX_IO_OK) {
        /* HTTP/1.0: the body then ends where the stream ends, never in chunked encoding. */
        char request[2048];
        int n = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %.*s\r\nUser-Agent: ktlsx-https-get\r\n"
                         "Connection: close\r\n\r\n", path, (int)(strcspn(authority, "/")), authority);
        char head[16384], body[16384], *end = NULL;
        size_t have = 0;
        long got = n > 0 && (size_t)n < sizeof request && ktlsx_socket_write(sock, request, (size_t)n) == 0 ? 1 : -1;
        /* The headers into `head` until the blank line; then the body straight to stdout. */
        while (got > 0 && !end && have < sizeof head - 1) {
            if ((got = ktlsx_socket_read(sock, head + have, sizeof head - 1 - have)) <= 0) break;
            have += (size_t)got;
            head[have] = '\0';
            end = strstr(head, "\r\n\r\n");
        }
        if (end && sscanf(head, "HTTP/%*d.%*d %d", &status) == 1) {
            fwrite(end + 4, 1, have - (size_t)(end + 4 - head), stdout);
            while ((got = ktlsx_socket_read(sock, body, sizeof body)) > 0) fwrite(body, 1, (size_t)got, stdout);
            fflush(stdout);
        }
        if (got < 0) fprintf(stderr, "https-get: %s\n", ktlsx_socket_error(sock));
        else if (!end || !status) fprintf(stderr, "https-get: not an HTTP answer (or headers over 16 KiB)\n");
        else if (status < 200 || status > 299) fprintf(stderr, "https-get: HTTP status %d\n", status);
        else rc = 0;
        if (rc == 0 && !ktlsx_socket_clean_close(sock)) fprintf(stderr, "https-get: no close_notify: cut short?\n");
    } else if (sock) {
        fprintf(stderr, "https-get: %s: %s\n", url, ktlsx_socket_error(sock));
    } else if (fd >= 0) {
        fprintf(stderr, "https-get: out of memory\n");
    }
    ktlsx_socket_free(sock);
    if (fd >= 0) close(fd);
    ktlsx_config_free(cfg);
    return rc;
}
