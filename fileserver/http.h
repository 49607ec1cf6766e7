/* ktlsx-fileserver's HTTP/1.1 request parser and the small helpers around it.
 * No I/O: bytes in, a parsed request / "need more" / an error status out.
 *
 * Strict on purpose (RFC 9112): CRLF line ends only, no obs-fold, no space
 * before a header's colon, tokens for methods and field names, visible ASCII
 * in the request-target, HTTP/1.0 and HTTP/1.1 only.  The path is
 * percent-decoded and its dot segments removed here; a decoded NUL, '/' or
 * control byte, or a ".." above the root, is a 400 before any file is
 * looked up (the openat2 RESOLVE_BENEATH lookup in conn.c is the second
 * wall, not the first). */
#ifndef KTLSX_FILESERVER_HTTP_H
#define KTLSX_FILESERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_PATH_MAX 4096
#define HTTP_MAX_HEADERS 100

enum http_method { HTTP_GET = 1, HTTP_HEAD = 2, HTTP_OTHER = 3 };

/* One field value: points into the parsed buffer (valid while it is). */
struct http_slice {
    const char *p;
    size_t n;
};

struct http_request {
    enum http_method method;
    char method_name[16];      /* as sent, for the access log (truncated) */
    int minor;                 /* HTTP/1.<minor>: 0 or 1 */
    int keep_alive;            /* after Connection and the version's default */
    int has_body;              /* Content-Length > 0 or Transfer-Encoding: the server closes after answering */
    char path[HTTP_PATH_MAX];  /* decoded, normalised, starts with '/', no ".." left */
    int trailing_slash;        /* the target's path ended with '/' */
    struct http_slice target;  /* the request-target as sent (access log) */
    struct http_slice host, range, if_none_match, if_modified_since, if_range;
};

/* Parse one request from buf[0..len).  Returns 0 with *req filled and
 * *consumed = bytes of this request (pipelined bytes after it are the next
 * one's); HTTP_NEED_MORE when the header section is incomplete and still
 * under max_header bytes; else the status to answer with (400, 413 for a
 * header section longer than max_header, 505), after which the connection
 * is closed (*consumed is undefined). */
#define HTTP_NEED_MORE 1
int http_parse(const char *buf, size_t len, size_t max_header, struct http_request *req, size_t *consumed);

/* The Range header against a file of `size` bytes (RFC 9110 §14): 1 with
 * [*first, *last] (inclusive) for one satisfiable range; 0 to serve the
 * whole file (no header, a unit other than bytes, a malformed value, or
 * several ranges); -1 when unsatisfiable (416). */
int http_range(struct http_slice v, uint64_t size, uint64_t *first, uint64_t *last);

/* If-None-Match: 1 when `etag` (with its quotes) is in the list or the list
 * is "*" (weak comparison, as RFC 9110 §13.1.2 asks). */
int http_etag_match(struct http_slice list, const char *etag);

/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"): 0 and *t, or -1. */
int http_parse_date(struct http_slice v, time_t *t);
/* Writes the IMF-fixdate of t (29 characters + NUL) into out[30]. */
void http_format_date(time_t t, char out[30]);

/* Content-Type by the path's extension ("application/octet-stream" if unknown). */
const char *http_content_type(const char *path);
/* Reason phrase of a status ("Unknown" for others). */
const char *http_reason(int status);

#endif
