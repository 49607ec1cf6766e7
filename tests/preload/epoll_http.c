/* epoll_http — a plaintext HTTP/1.0 server and client in the style of a typical event-loop
 * program, for tests/preload/preload.sh: nonblocking sockets, one epoll set, small buffers.
 * Nothing here knows about TLS: the shim adds it.
 *
 *   epoll_http serve PORT DIR lt|et   accept4(SOCK_NONBLOCK) until EAGAIN; read the request 200 bytes
 *                                     at a time; answer GET /NAME with DIR/NAME, written 4 KiB at a
 *                                     time as EPOLLOUT allows; close.  Runs until killed.
 *   epoll_http get PORT NAME [lt|et]  nonblocking connect to 127.0.0.1:PORT, wait for EPOLLOUT, check
 *                                     SO_ERROR, send GET /NAME, read the response 1000 bytes at a time
 *                                     (lt: one read per wake-up; et: edge-triggered, read to EAGAIN) to
 *                                     stdout until end of file.  Exit 0 at EOF, 1 on an error, 2 after
 *                                     30 s without an event.
 * Small reads matter: with user-space records the shim opens records whole (16 KiB), so most of a
 * record waits in the shim after each read and the socket is not readable: epoll must still say so. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 64
struct conn {
    int fd, file;
    char req[2048];
    size_t reqlen;
    char out[4096];
    size_t outlen, outoff;
    int writing;
};
static struct conn conns[MAXC];

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->file >= 0) close(c->file);
    c->fd = -1;
}

static int serve(int port, const char *dir, int et)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0) { perror("listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = -1};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    for (int i = 0; i < MAXC; i++) conns[i].fd = -1;
    for (;;) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("epoll_wait"); return 1; }
        for (int k = 0; k < n; k++) {
            if (evs[k].data.fd == -1) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int i = 0;
                    while (i < MAXC && conns[i].fd >= 0) i++;
                    if (i == MAXC) { close(c); continue; }
                    conns[i] = (struct conn){.fd = c, .file = -1};
                    struct epoll_event ce = {.events = EPOLLIN | (et ? EPOLLET : 0), .data.fd = i};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            struct conn *c = &conns[evs[k].data.fd];
            if (c->fd < 0) continue;
            if (!c->writing) {
                for (;;) { /* read until EAGAIN (edge-triggered needs it; level-triggered does it too) */
                    if (c->reqlen + 200 > sizeof c->req) { drop(ep, c); break; }
                    ssize_t r = read(c->fd, c->req + c->reqlen, 200);
                    if (r < 0 && errno == EAGAIN) break;
                    if (r <= 0) { drop(ep, c); break; }
                    c->reqlen += (size_t)r;
                    c->req[c->reqlen] = '\0';
                    if (strstr(c->req, "\r\n\r\n") == NULL) continue;
                    char name[256] = "", path[600];
                    sscanf(c->req, "GET /%255s", name);
                    snprintf(path, sizeof path, "%s/%s", dir, strchr(name, '/') ? "-" : name);
                    c->file = open(path, O_RDONLY);
                    c->outlen = (size_t)snprintf(c->out, sizeof c->out, c->file >= 0 ? "HTTP/1.0 200 OK\r\n\r\n"
                                                                                      : "HTTP/1.0 404 Not Found\r\n\r\n");
                    c->writing = 1;
                    struct epoll_event ce = {.events = EPOLLOUT | (et ? EPOLLET : 0), .data.fd = evs[k].data.fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
                    break;
                }
                if (c->fd < 0 || !c->writing) continue;
            }
            for (;;) { /* write until EAGAIN or done */
                if (c->outoff == c->outlen) {
                    ssize_t r = c->file >= 0 ? read(c->file, c->out, sizeof c->out) : 0;
                    if (r <= 0) { drop(ep, c); break; }
                    c->outlen = (size_t)r;
                    c->outoff = 0;
                }
                ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
                if (w < 0 && errno == EAGAIN) break;
                if (w < 0) { drop(ep, c); break; }
                c->outoff += (size_t)w;
            }
        }
    }
}

/* et: edge-triggered; the first EPOLLOUT edge (the end of the connect) is the only one before the
 * request goes out, so it must come when the connection can carry data; reads drain to EAGAIN. */
static int get(int port, const char *name, int et)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) { perror("connect"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLOUT | (et ? EPOLLET : 0), .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    int checked = 0;
    char req[400];
    size_t rl = (size_t)snprintf(req, sizeof req, "GET /%s HTTP/1.0\r\n\r\n", name), ro = 0;
    for (;;) {
        struct epoll_event e;
        int n = epoll_wait(ep, &e, 1, 30000);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) { fprintf(stderr, "epoll_http: no event in 30 s\n"); return 2; }
        if (n < 0) { perror("epoll_wait"); return 1; }
        if (!checked) { /* the connect ended: how? */
            int err = 0;
            socklen_t el = sizeof err;
            if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
                fprintf(stderr, "epoll_http: connect: %s\n", strerror(err));
                return 1;
            }
            checked = 1;
        }
        if (ro < rl) {
            ssize_t w = write(s, req + ro, rl - ro);
            if (w < 0 && errno != EAGAIN) { perror("write"); return 1; }
            if (w > 0) ro += (size_t)w;
            if (ro == rl) {
                /* level-triggered: one small read per wake-up; edge-triggered: read to EAGAIN */
                ev.events = EPOLLIN | (et ? EPOLLET : 0);
                epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
            }
            continue;
        }
        do {
            char buf[1000];
            ssize_t r = read(s, buf, sizeof buf);
            if (r == 0) return 0;
            if (r < 0 && errno == EAGAIN) break;
            if (r < 0) { perror("read"); return 1; }
            if (fwrite(buf, 1, (size_t)r, stdout) != (size_t)r) return 1;
        } while (et);
    }
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "serve") == 0) return serve(atoi(argv[2]), argv[3], strcmp(argv[4], "et") == 0);
    if (argc == 4 && strcmp(argv[1], "get") == 0) return get(atoi(argv[2]), argv[3], 0);
    if (argc == 5 && strcmp(argv[1], "get") == 0) return get(atoi(argv[2]), argv[3], strcmp(argv[4], "et") == 0);
    fprintf(stderr, "usage: epoll_http serve PORT DIR lt|et | get PORT NAME [lt|et]\n");
    return 2;
}
