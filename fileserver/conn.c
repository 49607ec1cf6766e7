/* ktlsx-fileserver: one connection, driven by the library's step calls.
 *
 * fs_conn_drive runs the connection as far as it goes without waiting and
 * ends by asking the ring for the readiness it needs (fs_conn_wait) or by
 * closing it: handshake -> read a request -> send the head -> send the body
 * (ktlsx_socket_sendfile_step: sendfile(2) when TX is in the kernel, the
 * library's records otherwise) -> flush -> the next request (keep-alive,
 * pipelining: the bytes after a request stay in c->in) or close_notify and a
 * short linger.  A round budget makes a big download yield to the others. */
#include "fileserver.h"
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <unistd.h>

#define ROUNDS 16                /* steps per turn before yielding to the other connections */
#define BODY_CHUNK (256 * 1024)  /* bytes per sendfile step */
#define LINGER_MS 2000           /* after our close_notify: discard what the peer still sends */
#define HEAD_MAX 1024
#define DOOR_SLACK_MS 1000       /* ktlsxd answers at its handshake deadline; the answer's way back */

static int64_t ms_from_now(int ms) { return ms > 0 ? fs_now_ms() + ms : 0; }

struct fs_conn *fs_conn_new(struct fs_worker *w, int fd, const struct sockaddr_in *peer)
{
    struct fs_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (fs.opt.daemon) {
        /* ktlsxd runs the handshake on its copy of fd (ALPN: the profile's
         * alpn line, e.g. http/1.1); we wait on the door
         * connection.  Our deadline is the door call's (the handshake timeout
         * plus its 1 s for the answer): a silent daemon never wakes the poll. */
        c->door = ktlsx_daemon_handshake_start(fs.opt.daemon, fd, KTLSX_SERVER, fs.opt.profile, NULL, NULL,
                                               fs.opt.handshake_ms);
        if (!c->door) {
            free(c);
            return NULL;
        }
        c->st = ST_DOOR;
        c->deadline = ms_from_now(fs.opt.handshake_ms + DOOR_SLACK_MS);
    } else {
        c->sock = ktlsx_socket_new(fs.cfg, fd, NULL);
        if (!c->sock || ktlsx_socket_set_timeouts(c->sock, fs.opt.handshake_ms, 0) < 0) {
            ktlsx_socket_free(c->sock);
            free(c);
            return NULL;
        }
        c->st = ST_HANDSHAKE;
        c->deadline = ms_from_now(fs.opt.handshake_ms);
    }
    c->w = w, c->fd = fd, c->peer = *peer, c->file_fd = -1;
    c->pipe_fd[0] = c->pipe_fd[1] = -1;
    c->next = w->list.next, c->prev = &w->list;
    w->list.next->prev = c, w->list.next = c;
    w->nconns++;
    __atomic_add_fetch(&fs_conn_count, 1, __ATOMIC_RELAXED);
    return c;
}

static void reset_response(struct fs_conn *c)
{
    if (c->file_fd >= 0) close(c->file_fd);
    c->file_fd = -1;
    free(c->head), c->head = NULL;
    free(c->log_line), c->log_line = NULL;
    c->head_len = c->head_off = 0;
    c->body_off = c->body_end = 0;
    c->bytes_sent = 0;
    c->status = 0;
}

void fs_conn_free(struct fs_conn *c)
{
    reset_response(c);
    if (c->pipe_fd[0] >= 0) close(c->pipe_fd[0]), close(c->pipe_fd[1]);
    if (c->fd_closing) close(c->fd);
    free(c->in);
    free(c);
}

static void close_conn(struct fs_conn *c, const char *why)
{
    if (why && why[0] && getenv("KTLSX_FILESERVER_DEBUG"))
        fs_log("%s:%d: %s", inet_ntoa(c->peer.sin_addr), ntohs(c->peer.sin_port), why);
    ktlsx_socket_free(c->sock);
    c->sock = NULL;
    /* Given up while ktlsxd holds a copy of the socket (a stalled daemon, or
     * our request still unread in the door's queue): closing ours would not
     * end the TCP connection; shutting it down does. */
    if (c->st == ST_DOOR) shutdown(c->fd, SHUT_RDWR);
    ktlsx_daemon_handshake_free(c->door); /* closes the door connection: ktlsxd drops the handshake */
    c->door = NULL;
    if (c->splicing) { /* a linked splice may not have its file yet: keep the number ours until it is back */
        shutdown(c->fd, SHUT_RDWR);
        c->fd_closing = true;
    } else {
        close(c->fd);
    }
    c->prev->next = c->next, c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->w->nconns--;
    __atomic_sub_fetch(&fs_conn_count, 1, __ATOMIC_RELAXED);
    c->dead = true;
    fs_conn_release(c);
}

/* ---- the access log (common log format) ---- */

static void log_prefix(struct fs_conn *c, const struct http_request *req)
{
    if (!fs.access_log) return;
    char when[64], target[512];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    size_t o = 0;
    if (req) {
        for (size_t i = 0; i < req->target.n && o + 4 < sizeof target; i++) {
            unsigned char ch = (unsigned char)req->target.p[i];
            if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) o += (size_t)snprintf(target + o, 4, "%%%02X", ch);
            else target[o++] = (char)ch;
        }
    }
    target[o] = '\0';
    char *line = NULL;
    int n = req ? asprintf(&line, "%s - - [%s] \"%s %s HTTP/1.%d\"", inet_ntoa(c->peer.sin_addr), when,
                           req->method_name, target, req->minor)
                : asprintf(&line, "%s - - [%s] \"-\"", inet_ntoa(c->peer.sin_addr), when);
    if (n < 0) line = NULL;
    free(c->log_line);
    c->log_line = line;
}

static void log_done(struct fs_conn *c)
{
    if (!fs.access_log || !c->log_line) return;
    if (c->bytes_sent) fprintf(fs.access_log, "%s %d %" PRIu64 "\n", c->log_line, c->status, c->bytes_sent);
    else fprintf(fs.access_log, "%s %d -\n", c->log_line, c->status);
    fflush(fs.access_log);
}

/* ---- responses ---- */

static void put_head(struct fs_conn *c, char *head, int n)
{
    if (n < 0 || n >= HEAD_MAX) { /* cannot happen with the bounded fields below; fail safe */
        free(head);
        head = strdup("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        n = head ? (int)strlen(head) : 0;
        c->close_after = true, c->status = 500;
    }
    c->head = head, c->head_len = (size_t)n, c->head_off = 0;
    c->st = ST_SEND_HEAD;
}

/* A small error (or redirect) response; `extra` holds whole header lines. */
static void error_response(struct fs_conn *c, int status, bool head_only, const char *extra)
{
    char date[30], *h = malloc(HEAD_MAX);
    if (!h) { c->close_after = true, c->st = ST_CLOSING; return; }
    http_format_date(time(NULL), date);
    char body[64];
    int bl = snprintf(body, sizeof body, "%d %s\n", status, http_reason(status));
    int n = snprintf(h, HEAD_MAX,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: ktlsx-fileserver\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %d\r\n%sConnection: %s\r\n\r\n%s",
                     status, http_reason(status), date, bl, extra ? extra : "",
                     c->close_after ? "close" : "keep-alive", head_only ? "" : body);
    c->status = status;
    if (!head_only && n > 0 && n < HEAD_MAX) c->bytes_sent = (uint64_t)bl;
    put_head(c, h, n);
}

static long sys_openat2(int dirfd, const char *path, int flags)
{
    struct open_how how = { .flags = (uint64_t)flags, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
    return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Without openat2 (kernels before 5.6): walk the components with O_NOFOLLOW,
 * so no symlink is followed at all (one in the path: 404/403, never out of
 * the root); ".." never gets here (http.c removed it). */
static int walk_open(int dirfd, const char *rel, int flags)
{
    char buf[HTTP_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", rel);
    int cur = dirfd;
    char *save = NULL, *comp = strtok_r(buf, "/", &save);
    if (!comp) return openat(dirfd, ".", flags | O_NOFOLLOW);
    for (;;) {
        char *next = strtok_r(NULL, "/", &save);
        int fd = next ? openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                      : openat(cur, comp, flags | O_NOFOLLOW);
        int e = errno;
        if (cur != dirfd) close(cur);
        if (fd < 0) return errno = e, -1;
        if (!next) return fd;
        cur = fd, comp = next;
    }
}

static int open_beneath(int dirfd, const char *rel)
{
    int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    if (fs.have_openat2) return (int)sys_openat2(dirfd, rel, flags);
    return walk_open(dirfd, rel, flags);
}

static int errno_status(int e)
{
    switch (e) {
    case ENOENT: case ENOTDIR: case ENAMETOOLONG: return 404;
    case EXDEV: case ELOOP: case EACCES: case EPERM: case ENXIO: case ENODEV: case EAGAIN: return 403;
    case EMFILE: case ENFILE: case ENOMEM: return 503;
    default: return 500;
    }
}

/* ---- directory listing (--list-dirs; off by default) ---- */

#define LIST_MAX_ENTRIES 10000
#define LIT(s) s, sizeof(s) - 1

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends to *buf (grown); returns -1 when out of memory. */
static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 4096);
        while (nc < *len + n + 1) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb, *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int append_html(char **buf, size_t *len, size_t *cap, const char *s)
{
    for (; *s; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '"' ? "&quot;"
                      : *s == '\'' ? "&#39;" : NULL;
        if (append(buf, len, cap, e ? e : s, e ? strlen(e) : 1) < 0) return -1;
    }
    return 0;
}

static int append_href(char **buf, size_t *len, size_t *cap, const char *s)
{
    char enc[4];
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                     ch == '-' || ch == '.' || ch == '_' || ch == '~';
        if (plain) {
            if (append(buf, len, cap, s, 1) < 0) return -1;
        } else {
            snprintf(enc, sizeof enc, "%%%02X", ch);
            if (append(buf, len, cap, enc, 3) < 0) return -1;
        }
    }
    return 0;
}

/* A listing of dirfd (consumed) as the response: names sorted, HTML-escaped, hrefs
 * percent-encoded, directories with a trailing '/'; at most LIST_MAX_ENTRIES. */
static void list_dir(struct fs_conn *c, int dfd, const struct http_request *req, bool head_only)
{
    DIR *d = fdopendir(dfd);
    if (!d) { close(dfd); return error_response(c, 403, head_only, NULL); }
    char **names = NULL, *body = NULL;
    size_t n = 0, len = 0, cap = 0;
    bool oom = false, more = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == LIST_MAX_ENTRIES) { more = true; break; }
        struct stat st;
        bool dir = e->d_type == DT_DIR ||
                   (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISDIR(st.st_mode));
        char **nn = (n % 256 == 0) ? realloc(names, (n + 256) * sizeof *names) : names;
        char *name = NULL;
        if (!nn || asprintf(&name, "%s%s", e->d_name, dir ? "/" : "") < 0) { oom = true; names = nn ? nn : names; break; }
        names = nn;
        names[n++] = name;
    }
    closedir(d);
    if (!oom && n > 1) qsort(names, n, sizeof *names, cmp_names);
    if (!oom) {
        oom = append(&body, &len, &cap, LIT("<!doctype html>\n<meta charset=\"utf-8\">\n<title>Index of ")) < 0 ||
              append_html(&body, &len, &cap, req->path) < 0 || append(&body, &len, &cap, LIT("</title>\n<h1>Index of ")) < 0 ||
              append_html(&body, &len, &cap, req->path) < 0 ||
              append(&body, &len, &cap, LIT("</h1>\n<ul>\n<li><a href=\"../\">../</a>\n")) < 0;
        for (size_t i = 0; i < n && !oom; i++) {
            size_t nl = strlen(names[i]);
            bool dir = names[i][nl - 1] == '/';
            if (dir) names[i][nl - 1] = '\0';
            oom = append(&body, &len, &cap, LIT("<li><a href=\"")) < 0 || append_href(&body, &len, &cap, names[i]) < 0 ||
                  (dir && append(&body, &len, &cap, LIT("/")) < 0) || append(&body, &len, &cap, LIT("\">")) < 0 ||
                  append_html(&body, &len, &cap, names[i]) < 0 || (dir && append(&body, &len, &cap, LIT("/")) < 0) ||
                  append(&body, &len, &cap, LIT("</a>\n")) < 0;
        }
        if (!oom && more) oom = append(&body, &len, &cap, LIT("<li>(more entries not listed)\n")) < 0;
        if (!oom) oom = append(&body, &len, &cap, LIT("</ul>\n")) < 0;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    char date[30], *h = NULL;
    http_format_date(time(NULL), date);
    int hl = oom ? -1
                 : asprintf(&h,
                            "HTTP/1.1 200 OK\r\nDate: %s\r\nServer: ktlsx-fileserver\r\nContent-Type: text/html; "
                            "charset=utf-8\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                            date, len, c->close_after ? "close" : "keep-alive", head_only ? "" : body);
    free(body);
    if (hl < 0) { c->close_after = true; return error_response(c, 503, head_only, NULL); }
    c->status = 200;
    c->bytes_sent = head_only ? 0 : len;
    c->head = h, c->head_len = (size_t)hl, c->head_off = 0;
    c->st = ST_SEND_HEAD;
}

static void respond(struct fs_conn *c, const struct http_request *req)
{
    bool head_only = req->method == HTTP_HEAD;
    log_prefix(c, req);
    if (req->method == HTTP_OTHER) return error_response(c, 405, false, "Allow: GET, HEAD\r\n");
    const char *rel = req->path[1] ? req->path + 1 : ".";
    int fd = open_beneath(fs.root_fd, rel);
    if (fd < 0) return error_response(c, errno_status(errno), head_only, NULL);
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); return error_response(c, 500, head_only, NULL); }
    const char *type_path = req->path;
    if (S_ISDIR(st.st_mode)) {
        if (!req->trailing_slash) {
            close(fd);
            char loc[HTTP_PATH_MAX + 32];
            /* the decoded path is safe to echo: no control bytes, no CR/LF */
            snprintf(loc, sizeof loc, "Location: %s/\r\n", req->path);
            if (strlen(loc) > 600) return error_response(c, 404, head_only, NULL);
            return error_response(c, 301, head_only, loc);
        }
        int ifd = open_beneath(fd, "index.html");
        int e = errno;
        /* no index.html: a listing with --list-dirs, else 403 (off by default, as nginx's autoindex) */
        if (ifd < 0 && e == ENOENT && fs.opt.list_dirs) return list_dir(c, fd, req, head_only);
        close(fd);
        if (ifd < 0) return error_response(c, e == ENOENT ? 403 : errno_status(e), head_only, NULL);
        fd = ifd;
        type_path = "index.html";
        if (fstat(fd, &st) < 0) { close(fd); return error_response(c, 500, head_only, NULL); }
    }
    if (!S_ISREG(st.st_mode)) { close(fd); return error_response(c, 403, head_only, NULL); }

    char etag[48], lastmod[30], date[30];
    snprintf(etag, sizeof etag, "\"%lx-%lx\"", (unsigned long)st.st_mtime, (unsigned long)st.st_size);
    http_format_date(st.st_mtime, lastmod);
    http_format_date(time(NULL), date);
    uint64_t size = (uint64_t)st.st_size;

    bool not_modified = false;
    if (req->if_none_match.p) not_modified = http_etag_match(req->if_none_match, etag);
    else if (req->if_modified_since.p) {
        time_t ims;
        if (http_parse_date(req->if_modified_since, &ims) == 0 && st.st_mtime <= ims) not_modified = true;
    }
    int status = 200;
    uint64_t first = 0, last = size ? size - 1 : 0;
    char crange[96] = "";
    if (!not_modified && req->range.p) {
        bool range_ok = true;
        if (req->if_range.p) /* If-Range: a strong ETag or the exact Last-Modified */
            range_ok = (req->if_range.n == strlen(etag) && memcmp(req->if_range.p, etag, req->if_range.n) == 0) ||
                       (req->if_range.n == 29 && memcmp(req->if_range.p, lastmod, 29) == 0);
        int r = range_ok ? http_range(req->range, size, &first, &last) : 0;
        if (r < 0) {
            close(fd);
            snprintf(crange, sizeof crange, "Content-Range: bytes */%" PRIu64 "\r\n", size);
            return error_response(c, 416, head_only, crange);
        }
        if (r > 0) {
            status = 206;
            snprintf(crange, sizeof crange, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", first,
                     last, size);
        }
    }
    char *h = malloc(HEAD_MAX);
    if (!h) { close(fd); c->close_after = true; return error_response(c, 503, head_only, NULL); }
    uint64_t length = not_modified ? 0 : (size ? last - first + 1 : 0);
    int n;
    if (not_modified)
        n = snprintf(h, HEAD_MAX,
                     "HTTP/1.1 304 Not Modified\r\nDate: %s\r\nServer: ktlsx-fileserver\r\nLast-Modified: %s\r\n"
                     "ETag: %s\r\nConnection: %s\r\n\r\n",
                     date, lastmod, etag, c->close_after ? "close" : "keep-alive");
    else
        n = snprintf(h, HEAD_MAX,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: ktlsx-fileserver\r\nContent-Type: %s\r\n"
                     "Content-Length: %" PRIu64 "\r\nLast-Modified: %s\r\nETag: %s\r\nAccept-Ranges: bytes\r\n"
                     "%sConnection: %s\r\n\r\n",
                     status, http_reason(status), date, http_content_type(type_path), length, lastmod, etag, crange,
                     c->close_after ? "close" : "keep-alive");
    c->status = not_modified ? 304 : status;
    if (head_only || not_modified || length == 0) close(fd);
    else c->file_fd = fd, c->body_off = (int64_t)first, c->body_end = (int64_t)(first + length);
    put_head(c, h, n);
}

/* One request in c->in is complete, or broken: set up its response. */
static void handle_input(struct fs_conn *c, bool *progress)
{
    struct http_request req;
    size_t used = 0;
    int r = http_parse(c->in, c->in_len, fs.opt.max_header, &req, &used);
    *progress = r != HTTP_NEED_MORE;
    if (r == HTTP_NEED_MORE) return;
    reset_response(c);
    if (r != 0) { /* a broken request: answer and close (we cannot know where the next one starts) */
        c->close_after = true;
        log_prefix(c, NULL);
        c->in_len = 0;
        return error_response(c, r, false, NULL);
    }
    c->close_after = !req.keep_alive || req.has_body || fs_stop;
    respond(c, &req); /* req points into c->in: consume after */
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
}

static void response_done(struct fs_conn *c)
{
    log_done(c);
    reset_response(c);
    if (c->close_after) {
        c->st = ST_CLOSING;
        c->deadline = ms_from_now(LINGER_MS);
        return;
    }
    c->st = ST_READ;
    c->header_started = c->in_len > 0;
    c->deadline = ms_from_now(c->in_len ? fs.opt.header_ms : fs.opt.keepalive_ms);
    if (c->in_len == 0) free(c->in), c->in = NULL; /* an idle connection holds no request buffer */
}

/* A failed exchange with ktlsxd: the daemon's own trouble (down, busy, no
 * such profile, no state handed back) is always logged, at most once a
 * second per worker with a count of the ones left out; a TLS client that
 * failed its handshake only with KTLSX_FILESERVER_DEBUG, as for the others. */
static void door_failed(struct fs_conn *c, int io, const struct ktlsx_daemon_result *res)
{
    static __thread int64_t last;
    static __thread unsigned quiet;
    char peer[64];
    snprintf(peer, sizeof peer, "%s:%d", inet_ntoa(c->peer.sin_addr), ntohs(c->peer.sin_port));
    const char *why = io == KTLSX_IO_OK ? "no TLS state handed back (the profile needs export_state = yes)"
                    : res->message[0] ? res->message : "-";
    bool client = io != KTLSX_IO_OK && io != KTLSX_IO_TIMEOUT &&
                  (res->status == KTLSX_DOOR_HANDSHAKE_FAILED || res->status == KTLSX_DOOR_TIMEOUT ||
                   res->status == KTLSX_DOOR_PEER_CLOSED || res->status == KTLSX_DOOR_BAD_SOCKET);
    if (client) {
        if (getenv("KTLSX_FILESERVER_DEBUG"))
            fs_log("%s: handshake by ktlsxd: %s: %s", peer, ktlsx_door_status_name(res->status), why);
        return;
    }
    int64_t now = fs_now_ms();
    if (now - last < 1000) {
        quiet++;
        return;
    }
    if (quiet) fs_log("%s: ktlsxd: %s: %s: connection closed (%u more like it)", peer,
                      ktlsx_door_status_name(res->status), why, quiet);
    else fs_log("%s: ktlsxd: %s: %s: connection closed", peer, ktlsx_door_status_name(res->status), why);
    last = now, quiet = 0;
}

/* ST_DOOR: one step of the exchange with ktlsxd; on its answer, the socket
 * around the connection it handed back. */
static bool door_step(struct fs_conn *c)
{
    ktlsx_conn *conn = NULL;
    struct ktlsx_daemon_result res;
    int io = ktlsx_daemon_handshake_step(c->door, &conn, &res);
    if (io == KTLSX_IO_WANT_READ || io == KTLSX_IO_WANT_WRITE) {
        fs_conn_wait(c, io == KTLSX_IO_WANT_READ ? POLLIN : POLLOUT);
        return false;
    }
    ktlsx_daemon_handshake_free(c->door);
    c->door = NULL;
    /* Without the state (the kernel owns both directions and the profile
     * keeps it) there is no ktlsx_socket to carry the data: refused. */
    if (io != KTLSX_IO_OK || !conn) {
        door_failed(c, io, &res);
        close_conn(c, NULL);
        return false;
    }
    c->sock = ktlsx_socket_wrap(conn, c->fd); /* handshake done: the data path is the one ktlsxd chose */
    if (!c->sock) {
        ktlsx_conn_free(conn);
        close_conn(c, "out of memory");
        return false;
    }
    c->st = ST_HANDSHAKE;
    return true;
}

/* The head may go straight to the kernel-TLS socket with MSG_MORE: a body
 * follows (never leave a record open behind a head alone), TX is in the
 * kernel and the library holds no bytes of its own to send first. */
static bool head_with_body(const struct fs_conn *c)
{
    return c->file_fd >= 0 && c->body_off < c->body_end && (ktlsx_socket_ktls(c->sock) & KTLSX_KTLS_TX) &&
           ktlsx_socket_pending_output(c->sock) == 0;
}

/* ---- --body splice: io_uring, file -> pipe -> socket ----
 * Each chunk is two linked SQEs (ring.c fs_splice_submit): splice the file
 * into the connection's pipe (at most its size, F_SETPIPE_SZ), then the pipe
 * into the kernel-TLS socket.  The socket is non-blocking: the second splice
 * may move less, or nothing (EAGAIN); what stays in the pipe goes first next
 * time, after POLLOUT.  A short first splice (the file got shorter) breaks the
 * link: its bytes go out alone, then the response ends as truncated. */
#define SPLICE_PIPE (1024 * 1024) /* asked of F_SETPIPE_SZ; the kernel may give less (pipe-max-size) */

void fs_conn_splice_done(struct fs_conn *c, unsigned tag, int res)
{
    if (tag == FS_TAG_SPLICE_IN) {
        if (res > 0) c->pipe_bytes += (size_t)res, c->body_off += res;
        else if (res < 0) c->splice_failed = true, c->splice_err = -res;
        else c->splice_failed = true, c->splice_err = 0; /* end of file before the body's end: truncated */
        return;
    }
    if (res > 0) {
        c->pipe_bytes -= (size_t)res;
        c->bytes_sent += (uint64_t)res;
        c->deadline = ms_from_now(fs.opt.send_ms);
    } else if (res == -EAGAIN) {
        c->splice_again = true;
    } else if (res < 0 && res != -ECANCELED) {
        c->splice_failed = true, c->splice_err = -res;
    }
}

/* The guard (ring.c fs_splice_submit) fired: the peer is gone (a reset: POLLERR | POLLHUP).
 * Cancel the splices in flight; the last one's completion drives c, which closes it.
 * Removed (-ECANCELED) or fired with nothing in flight: drive c if nothing else will. */
void fs_conn_guard_done(struct fs_conn *c, int res)
{
    if (res > 0 && (res & (POLLERR | POLLHUP))) {
        c->peer_gone = true;
        if (c->splicing) return fs_splice_cancel(c);
    }
    if (!c->splicing && !c->inflight && c->peer_gone) fs_conn_drive(c);
}

/* 0: splices submitted; 1: wait for POLLOUT; -1: failed (splice_err) or truncated (splice_err 0): close */
static int splice_body(struct fs_conn *c)
{
    if (c->splice_failed) return -1;
    if (c->pipe_fd[0] < 0) {
        if (pipe2(c->pipe_fd, O_CLOEXEC) < 0) {
            c->pipe_fd[0] = c->pipe_fd[1] = -1;
            c->splice_failed = true, c->splice_err = errno;
            return -1;
        }
        int got = fcntl(c->pipe_fd[1], F_SETPIPE_SZ, SPLICE_PIPE);
        if (got < 0) got = fcntl(c->pipe_fd[1], F_GETPIPE_SZ);
        c->pipe_size = got > 0 ? (size_t)got : 65536;
    }
    if (c->splice_again) { /* the socket was full: wait, then send what the pipe holds */
        c->splice_again = false;
        return 1;
    }
    size_t in = 0;
    if (c->pipe_bytes == 0) {
        int64_t left = c->body_end - c->body_off;
        if (left <= 0) return -1; /* not reached: ST_SEND_BODY ends the body first */
        in = (size_t)left < c->pipe_size ? (size_t)left : c->pipe_size;
    }
    if (fs_splice_submit(c, in, in ? in : c->pipe_bytes) < 0) { /* no room in the submission queue */
        c->splice_failed = true, c->splice_err = EBUSY;
        return -1;
    }
    return 0;
}

void fs_conn_drive(struct fs_conn *c)
{
    if (c->splicing) return; /* a splice in flight: its completion drives c */
    uint32_t revents = c->revents | (c->peer_gone ? POLLHUP : 0);
    c->revents = 0;
    /* POLLHUP while a response goes out: the connection is closed both ways (a reset peer).
     * A kernel-TLS socket may keep answering EAGAIN to sendfile / splice after the reset's
     * error was taken, while poll reports it at once: without this the connection spins
     * until --send-timeout (seen in make vm-bench after 64 clients left mid-download). */
    if ((revents & (POLLHUP | POLLERR)) && (c->st == ST_SEND_HEAD || c->st == ST_SEND_BODY || c->st == ST_FLUSH)) {
        log_done(c);
        return close_conn(c, c->cancelled ? "peer gone while splicing: splices cancelled"
                                          : "peer gone (POLLHUP) while sending");
    }
    static __thread char scratch[4096];
    int rc = KTLSX_IO_OK;
    size_t n = 0;
    for (int round = 0; round < ROUNDS; round++) {
        switch (c->st) {
        case ST_DOOR:
            if (!door_step(c)) return;
            continue;
        case ST_HANDSHAKE:
            rc = ktlsx_socket_handshake_step(c->sock);
            if (rc != KTLSX_IO_OK) break;
            c->st = ST_READ;
            c->deadline = ms_from_now(fs.opt.keepalive_ms);
            continue;
        case ST_READ:
            if (c->in_len) {
                bool progress;
                handle_input(c, &progress);
                if (progress) continue;
            }
            if (!c->in && !(c->in = malloc(fs.opt.max_header))) return close_conn(c, "out of memory");
            rc = ktlsx_socket_read_step(c->sock, c->in + c->in_len, fs.opt.max_header - c->in_len, &n);
            if (rc != KTLSX_IO_OK) {
                if (rc == KTLSX_IO_WANT_READ && c->in_len == 0) free(c->in), c->in = NULL;
                if (rc == KTLSX_IO_CLOSED && !c->header_started) return close_conn(c, NULL);
                break;
            }
            if (!c->header_started) { /* the header deadline runs from the first byte: no extension per byte */
                c->header_started = true;
                c->deadline = ms_from_now(fs.opt.header_ms);
            }
            c->in_len += n;
            continue;
        case ST_SEND_HEAD:
            if (c->head_off < c->head_len && head_with_body(c)) {
                /* kernel TLS: the head goes with MSG_MORE, so the kernel keeps its record open
                 * and the body's first bytes (sendfile / splice) fill it: one record, not two,
                 * for a small file (the last body chunk goes without MORE and closes it) */
                ssize_t k = send(c->fd, c->head + c->head_off, c->head_len - c->head_off,
                                 MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fs_conn_wait(c, POLLOUT);
                if (k <= 0) {
                    log_done(c);
                    return close_conn(c, k < 0 ? strerror(errno) : "send: 0 bytes");
                }
                c->head_off += (size_t)k;
                c->deadline = ms_from_now(fs.opt.send_ms);
                continue;
            }
            if (c->head_off < c->head_len) {
                rc = ktlsx_socket_write_step(c->sock, c->head + c->head_off, c->head_len - c->head_off, &n);
                if (rc != KTLSX_IO_OK) break;
                c->head_off += n;
                c->deadline = ms_from_now(fs.opt.send_ms);
                continue;
            }
            c->st = c->file_fd >= 0 ? ST_SEND_BODY : ST_FLUSH;
            continue;
        case ST_SEND_BODY: {
            if (c->body_off >= c->body_end && c->pipe_bytes == 0) {
                fs_splice_unguard(c); /* the body is out: the guard's job is done */
                close(c->file_fd), c->file_fd = -1;
                c->st = ST_FLUSH;
                continue;
            }
            int64_t left = c->body_end - c->body_off;
            if (fs.opt.body == FS_BODY_SPLICE && (ktlsx_socket_ktls(c->sock) & KTLSX_KTLS_TX) &&
                ktlsx_socket_pending_output(c->sock) == 0) {
                int s = splice_body(c);
                if (s == 0) return; /* splices in flight: driven again when they are back */
                if (s == 1) return fs_conn_wait(c, POLLOUT);
                log_done(c);
                return close_conn(c, c->splice_err ? strerror(c->splice_err) : "file truncated while being sent");
            }
            rc = ktlsx_socket_sendfile_step(c->sock, c->file_fd, &c->body_off,
                                            left > BODY_CHUNK ? BODY_CHUNK : (size_t)left, &n);
            if (rc != KTLSX_IO_OK) break;
            if (n == 0) { /* the file got shorter under us: the response cannot be completed */
                log_done(c);
                return close_conn(c, "file truncated while being sent");
            }
            c->bytes_sent += n;
            c->deadline = ms_from_now(fs.opt.send_ms);
            continue;
        }
        case ST_FLUSH:
            rc = ktlsx_socket_flush_step(c->sock);
            if (rc != KTLSX_IO_OK) break;
            response_done(c);
            continue;
        case ST_CLOSING:
            rc = ktlsx_socket_shutdown_step(c->sock);
            if (rc == KTLSX_IO_WANT_WRITE) break;
            /* close_notify is out (or cannot be): end our side, read what is left, then close */
            shutdown(c->fd, SHUT_WR);
            c->st = ST_LINGER;
            continue;
        case ST_LINGER: {
            ssize_t got = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
            if (got > 0) continue;
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fs_conn_wait(c, POLLIN);
            return close_conn(c, NULL);
        }
        }
        /* a step said wait, or failed */
        if (rc == KTLSX_IO_WANT_READ) return fs_conn_wait(c, POLLIN);
        if (rc == KTLSX_IO_WANT_WRITE) return fs_conn_wait(c, POLLOUT);
        if (c->st == ST_SEND_BODY || c->st == ST_SEND_HEAD || c->st == ST_FLUSH) log_done(c);
        return close_conn(c, ktlsx_socket_error(c->sock));
    }
    /* out of rounds with work left: come back after the others (writable is the usual case) */
    fs_conn_wait(c, c->st == ST_READ ? (POLLIN | POLLOUT) : POLLOUT);
}

void fs_conn_expire(struct fs_conn *c)
{
    if (c->st == ST_READ && c->header_started) { /* slowloris: 408, then close */
        reset_response(c);
        c->in_len = 0;
        c->close_after = true;
        log_prefix(c, NULL);
        error_response(c, 408, false, NULL);
        c->deadline = ms_from_now(LINGER_MS);
        return fs_conn_drive(c);
    }
    if (c->st == ST_SEND_HEAD || c->st == ST_SEND_BODY || c->st == ST_FLUSH) log_done(c);
    if (c->st == ST_DOOR) { /* ktlsxd did not answer in time (a stalled daemon): this connection only */
        struct ktlsx_daemon_result res = { .status = KTLSX_DOOR_UNREACHABLE };
        snprintf(res.message, sizeof res.message, "no answer in %d ms", fs.opt.handshake_ms + DOOR_SLACK_MS);
        door_failed(c, KTLSX_IO_TIMEOUT, &res);
        return close_conn(c, NULL);
    }
    close_conn(c, c->st == ST_HANDSHAKE ? "handshake timeout" : "timeout");
}
