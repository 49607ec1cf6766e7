/* ktlsxctl: ask a running ktlsxd over its control socket.
 *
 *   ktlsxctl [-s SOCKET] ping | stats [--prometheus] | sessions | ticket-keys | reload
 *
 * One request, one answer (daemon/control.c): the first line of the answer
 * is "ok..." or "error: why".  Exit 0 on ok, 1 on an error answer, 2 when
 * the daemon cannot be reached or does not answer within the timeout. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_CONTROL "/run/ktlsx/ktlsxd.ctl"
#define ANSWER_MAX (64 * 1024)

static const char usage[] =
    "usage: ktlsxctl [-s SOCKET] [-t SECONDS] COMMAND\n"
    "  ping                 is the daemon there (pid, workers, handshakes in flight)\n"
    "  stats [--prometheus] handshakes ok/failed by status and alert, resumed, in flight,\n"
    "                       per door and per profile, latency histogram\n"
    "  sessions             session cache and ticket keys of each server profile\n"
    "  ticket-keys          each server profile's ticket keys: name (hex) and age, the\n"
    "                       sealing key first; never the key bytes\n"
    "  reload               re-read the configuration (as SIGHUP; says why when refused)\n"
    "  -s, --socket SOCKET  control socket (default " DEFAULT_CONTROL ")\n"
    "  -t, --timeout S      give up after S seconds (default 10)\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },   { "timeout", required_argument, NULL, 't' },
        { "prometheus", no_argument, NULL, 'p' },     { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = DEFAULT_CONTROL;
    int timeout_s = 10, o;
    int prometheus = 0;
    while ((o = getopt_long(argc, argv, "s:t:h", opts, NULL)) != -1) {
        if (o == 's') path = optarg;
        else if (o == 't') timeout_s = atoi(optarg);
        else if (o == 'p') prometheus = 1;
        else if (o == 'h') return fputs(usage, stdout), 0;
        else return fputs(usage, stderr), 2;
    }
    if (optind != argc - 1) return fputs(usage, stderr), 2;
    const char *cmd = argv[optind];
    if (strcmp(cmd, "ping") != 0 && strcmp(cmd, "stats") != 0 && strcmp(cmd, "sessions") != 0 &&
        strcmp(cmd, "ticket-keys") != 0 && strcmp(cmd, "reload") != 0)
        return fprintf(stderr, "ktlsxctl: unknown command '%s'\n%s", cmd, usage), 2;
    if (prometheus && strcmp(cmd, "stats") != 0) return fputs("ktlsxctl: --prometheus goes with stats\n", stderr), 2;
    if (timeout_s <= 0) timeout_s = 10;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) return fprintf(stderr, "ktlsxctl: %s: path too long\n", path), 2;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return fprintf(stderr, "ktlsxctl: %s: %s (is ktlsxd running?)\n", path, strerror(errno)), 2;
    char req[64];
    int n = snprintf(req, sizeof req, "%s%s", cmd, prometheus ? " prometheus" : "");
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) < 0) return fprintf(stderr, "ktlsxctl: send: %s\n", strerror(errno)), 2;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int pr = poll(&pfd, 1, timeout_s * 1000);
    if (pr <= 0) return fprintf(stderr, "ktlsxctl: %s: no answer within %d s\n", path, timeout_s), 2;
    char *answer = malloc(ANSWER_MAX + 1);
    if (!answer) return 2;
    ssize_t got = recv(fd, answer, ANSWER_MAX, 0);
    close(fd);
    if (got <= 0) return fprintf(stderr, "ktlsxctl: %s: the daemon closed without answering\n", path), free(answer), 2;
    answer[got] = '\0';
    int rc = strncmp(answer, "ok", 2) == 0 ? 0 : 1;
    const char *body = answer;
    if (rc == 0) { /* "ok\n" alone is framing; "ok text" keeps its text */
        body = answer[2] == '\n' ? answer + 3 : answer[2] == ' ' ? answer + 3 : answer + 2;
    }
    fputs(body, rc == 0 ? stdout : stderr);
    free(answer);
    return rc;
}
