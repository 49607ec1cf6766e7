/* ktlsx-fileserver's request parser (fileserver/http.c, compiled in) on
 * untrusted bytes, as a client's pipelined stream.
 *
 * Input: the bytes, parsed request after request with a header limit taken
 * from the first byte.  Every result must be 0, HTTP_NEED_MORE, 400, 413 or
 * 505; a parsed request consumes 1..len bytes within the limit and its path
 * starts with '/', holds no NUL, no "..", "." or empty segment and no
 * control byte; the fields point inside the input; Range, If-None-Match
 * and the date parser take whatever the fields hold. */
#include <stdlib.h>
#include <string.h>

#include "../../fileserver/http.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(struct http_slice s, const char *buf, size_t len)
{
    if (s.p && (s.p < buf || s.p + s.n > buf + len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t max_header = 64 + (size_t)data[0] * 32;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1, off = 0;
    while (off < len) {
        struct http_request req;
        size_t used = 0;
        int r = http_parse(buf + off, len - off, max_header, &req, &used);
        if (r == HTTP_NEED_MORE || r == 400 || r == 413 || r == 505) break;
        if (r != 0) abort();
        if (used == 0 || used > len - off || used > max_header) abort();
        size_t pl = strnlen(req.path, sizeof req.path);
        if (pl == sizeof req.path || req.path[0] != '/') abort();
        for (size_t i = 0; i < pl; i++)
            if ((unsigned char)req.path[i] < 0x20 || req.path[i] == 0x7f) abort();
        if (strstr(req.path, "//") || strstr(req.path, "/./") || strstr(req.path, "/../")) abort();
        if (pl >= 2 && strcmp(req.path + pl - 2, "/.") == 0) abort();
        if (pl >= 3 && strcmp(req.path + pl - 3, "/..") == 0) abort();
        if (req.method != HTTP_GET && req.method != HTTP_HEAD && req.method != HTTP_OTHER) abort();
        inside(req.host, buf + off, used), inside(req.range, buf + off, used), inside(req.target, buf + off, used);
        inside(req.if_none_match, buf + off, used), inside(req.if_modified_since, buf + off, used);
        uint64_t a, b;
        int rr = http_range(req.range, 1000, &a, &b);
        if (rr == 1 && (a > b || b >= 1000)) abort();
        (void)http_etag_match(req.if_none_match, "\"1-2\"");
        time_t t;
        (void)http_parse_date(req.if_modified_since, &t);
        off += used;
    }
    return 0;
}
