/* ktlsx-fileserver: the HTTP/1.1 request parser (see http.h). */
#include "http.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool slice_ieq(struct http_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

/* Decode the path part p[0..n) (starts with '/', no query) into out and
 * remove dot segments.  0 or 400. */
static int decode_path(const char *p, size_t n, char *out, size_t cap, int *trailing)
{
    char tmp[HTTP_PATH_MAX];
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= n) return 400;
            int hi = hexval((unsigned char)p[i + 1]), lo = hexval((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0) return 400;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
            /* An encoded '/' or '\' would let a segment hide a separator;
             * NUL and control bytes have no business in a file name here. */
            if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f) return 400;
        }
        if (t + 1 >= sizeof tmp) return 400;
        tmp[t++] = (char)c;
    }
    *trailing = t > 0 && tmp[t - 1] == '/';
    /* Segments: drop empty and ".", pop on "..", refuse a ".." above the root. */
    size_t o = 0;
    size_t i = 0;
    while (i < t) {
        while (i < t && tmp[i] == '/') i++;
        size_t s = i;
        while (i < t && tmp[i] != '/') i++;
        size_t len = i - s;
        if (len == 0 || (len == 1 && tmp[s] == '.')) continue;
        if (len == 2 && tmp[s] == '.' && tmp[s + 1] == '.') {
            if (o == 0) return 400;
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--; /* the '/' before the popped segment */
            continue;
        }
        if (o + 1 + len + 1 > cap) return 400;
        out[o++] = '/';
        memcpy(out + o, tmp + s, len);
        o += len;
    }
    if (o == 0) out[o++] = '/';
    else if (*trailing) {
        if (o + 2 > cap) return 400;
        out[o++] = '/';
    }
    out[o] = '\0';
    return 0;
}

/* The request-target: origin-form "/path[?query]" or absolute-form
 * "http[s]://authority[/path][?query]".  Fills req->path; *host gets the
 * authority of an absolute-form target. */
static int parse_target(const char *p, size_t n, struct http_request *req, struct http_slice *host)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') return 400;
    }
    host->p = NULL, host->n = 0;
    if (n > 0 && p[0] != '/') {
        size_t skip;
        if (n >= 7 && strncasecmp(p, "http://", 7) == 0) skip = 7;
        else if (n >= 8 && strncasecmp(p, "https://", 8) == 0) skip = 8;
        else return 400; /* "*", authority-form, or a relative path */
        size_t a = skip;
        while (a < n && p[a] != '/' && p[a] != '?') a++;
        if (a == skip) return 400; /* no authority */
        for (size_t k = skip; k < a; k++)
            if (p[k] == '@') return 400; /* userinfo */
        host->p = p + skip, host->n = a - skip;
        if (a == n || p[a] == '?') {
            req->trailing_slash = 1;
            strcpy(req->path, "/");
            return 0;
        }
        p += a, n -= a;
    }
    if (n == 0) return 400;
    size_t q = 0;
    while (q < n && p[q] != '?') q++;
    return decode_path(p, q, req->path, sizeof req->path, &req->trailing_slash);
}

/* Connection: a comma list of tokens; close wins over keep-alive. */
static void parse_connection(struct http_slice v, int *close_seen, int *keep_seen)
{
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t') i++;
        struct http_slice tok = { v.p + s, i - s };
        if (slice_ieq(tok, "close")) *close_seen = 1;
        else if (slice_ieq(tok, "keep-alive")) *keep_seen = 1;
    }
}

/* Find the end of the header section: the offset just after CRLFCRLF, or 0. */
static size_t header_end(const char *b, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r') return i + 1;
    return 0;
}

int http_parse(const char *buf, size_t len, size_t max_header, struct http_request *req, size_t *consumed)
{
    memset(req, 0, sizeof *req);
    /* RFC 9112 §2.2: empty lines before a request line are ignored. */
    size_t start = 0;
    while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n' && start < max_header) start += 2;
    if (start >= max_header) return 413;
    if (start == len || (start + 1 == len && buf[start] == '\r')) return HTTP_NEED_MORE;
    const char *b = buf + start;
    size_t avail = len - start, limit = max_header - start;
    size_t scan = avail < limit ? avail : limit;
    size_t end = header_end(b, scan);
    if (end == 0) {
        /* A bare LF or a NUL anywhere already makes it a bad request: say so at once. */
        for (size_t i = 0; i < scan; i++) {
            if (b[i] == '\0') return 400;
            if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) return 400;
        }
        return avail >= limit ? 413 : HTTP_NEED_MORE;
    }
    *consumed = start + end;

    /* Request line. */
    const char *line = b;
    const char *eol = memchr(line, '\r', end);
    if (!eol || eol[1] != '\n') return 400;
    size_t ll = (size_t)(eol - line);
    size_t m = 0;
    while (m < ll && is_tchar((unsigned char)line[m])) m++;
    if (m == 0 || m >= ll || line[m] != ' ') return 400;
    snprintf(req->method_name, sizeof req->method_name, "%.*s", (int)m, line);
    if (m == 3 && memcmp(line, "GET", 3) == 0) req->method = HTTP_GET;
    else if (m == 4 && memcmp(line, "HEAD", 4) == 0) req->method = HTTP_HEAD;
    else req->method = HTTP_OTHER;
    size_t t0 = m + 1, t1 = t0;
    while (t1 < ll && line[t1] != ' ') t1++;
    if (t1 == t0 || t1 >= ll) return 400;
    const char *ver = line + t1 + 1;
    size_t vl = ll - t1 - 1;
    if (vl != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[6] != '.' || ver[5] < '0' || ver[5] > '9' ||
        ver[7] < '0' || ver[7] > '9')
        return 400;
    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1')) return 505;
    req->minor = ver[7] - '0';
    req->target.p = line + t0, req->target.n = t1 - t0;
    struct http_slice url_host;
    int rc = parse_target(line + t0, t1 - t0, req, &url_host);
    if (rc) return rc;

    /* Header fields. */
    const char *p = eol + 2, *stop = b + end - 2; /* stop: the final CRLF */
    int nhdr = 0, close_seen = 0, keep_seen = 0, host_seen = 0;
    struct http_slice clen = { NULL, 0 };
    while (p < stop) {
        const char *e = p;
        while (e < stop && *e != '\r') e++;
        if (e >= stop + 2 || e[1] != '\n') return 400;
        if (++nhdr > HTTP_MAX_HEADERS) return 413;
        size_t n = 0, fl = (size_t)(e - p);
        while (n < fl && is_tchar((unsigned char)p[n])) n++;
        if (n == 0 || n >= fl || p[n] != ':') return 400; /* also obs-fold and "name :" */
        struct http_slice name = { p, n };
        size_t v0 = n + 1, v1 = fl;
        for (size_t k = v0; k < fl; k++) {
            unsigned char c = (unsigned char)p[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f) return 400;
        }
        while (v0 < v1 && (p[v0] == ' ' || p[v0] == '\t')) v0++;
        while (v1 > v0 && (p[v1 - 1] == ' ' || p[v1 - 1] == '\t')) v1--;
        struct http_slice val = { p + v0, v1 - v0 };
        if (slice_ieq(name, "host")) {
            if (host_seen++) return 400;
            req->host = val;
        } else if (slice_ieq(name, "connection")) {
            parse_connection(val, &close_seen, &keep_seen);
        } else if (slice_ieq(name, "range")) {
            if (req->range.p) return 400;
            req->range = val;
        } else if (slice_ieq(name, "if-none-match")) {
            req->if_none_match = val;
        } else if (slice_ieq(name, "if-modified-since")) {
            req->if_modified_since = val;
        } else if (slice_ieq(name, "if-range")) {
            req->if_range = val;
        } else if (slice_ieq(name, "content-length")) {
            if (val.n == 0 || val.n > 18) return 400;
            for (size_t k = 0; k < val.n; k++)
                if (val.p[k] < '0' || val.p[k] > '9') return 400;
            if (clen.p && (clen.n != val.n || memcmp(clen.p, val.p, val.n) != 0)) return 400;
            clen = val;
            for (size_t k = 0; k < val.n; k++)
                if (val.p[k] != '0') req->has_body = 1;
        } else if (slice_ieq(name, "transfer-encoding")) {
            req->has_body = 1;
        }
        p = e + 2;
    }
    if (req->minor == 1 && !host_seen) return 400;
    if (host_seen) {
        for (size_t k = 0; k < req->host.n; k++) {
            unsigned char c = (unsigned char)req->host.p[k];
            if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@') return 400;
        }
    }
    if (url_host.p) req->host = url_host; /* RFC 9112 §3.2.2: the target's authority wins */
    req->keep_alive = req->minor == 1 ? !close_seen : (keep_seen && !close_seen);
    return 0;
}

static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

int http_range(struct http_slice v, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!v.p || v.n < 7 || strncasecmp(v.p, "bytes=", 6) != 0) return 0;
    const char *p = v.p + 6;
    size_t n = v.n - 6;
    while (n && (*p == ' ' || *p == '\t')) p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (memchr(p, ',', n)) return 0; /* several ranges: the whole file, 200 */
    const char *dash = memchr(p, '-', n);
    if (!dash) return 0;
    size_t a = (size_t)(dash - p), b = n - a - 1;
    uint64_t x, y;
    if (a == 0) { /* suffix: the last y bytes */
        if (!parse_u64(dash + 1, b, &y)) return 0;
        if (y == 0 || size == 0) return -1;
        *first = y >= size ? 0 : size - y;
        *last = size - 1;
        return 1;
    }
    if (!parse_u64(p, a, &x)) return 0;
    if (b == 0) y = UINT64_MAX;
    else if (!parse_u64(dash + 1, b, &y)) return 0;
    if (y < x) return 0; /* invalid: ignored */
    if (x >= size) return -1;
    *first = x;
    *last = y >= size ? size - 1 : y;
    return 1;
}

int http_etag_match(struct http_slice list, const char *etag)
{
    if (!list.p) return 0;
    size_t el = strlen(etag), i = 0;
    while (i < list.n) {
        while (i < list.n && (list.p[i] == ' ' || list.p[i] == '\t' || list.p[i] == ',')) i++;
        size_t s = i;
        if (i < list.n && list.p[i] == '*') return 1;
        if (i + 1 < list.n && list.p[i] == 'W' && list.p[i + 1] == '/') s = i += 2;
        if (i < list.n && list.p[i] == '"') {
            i++;
            while (i < list.n && list.p[i] != '"') i++;
            if (i < list.n) i++;
        } else {
            while (i < list.n && list.p[i] != ',') i++;
        }
        if (i - s == el && memcmp(list.p + s, etag, el) == 0) return 1;
    }
    return 0;
}

static const char *const wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

int http_parse_date(struct http_slice v, time_t *t)
{
    /* "Sun, 06 Nov 1994 08:49:37 GMT": exactly 29 characters */
    if (!v.p || v.n != 29) return -1;
    char s[30];
    memcpy(s, v.p, 29);
    s[29] = '\0';
    int wd = -1, mon = -1;
    for (int i = 0; i < 7; i++)
        if (memcmp(s, wdays[i], 3) == 0) wd = i;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, months[i], 3) == 0) mon = i;
    if (wd < 0 || mon < 0 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    static const int digits[] = { 5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24 };
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++)
        if (s[digits[i]] < '0' || s[digits[i]] > '9') return -1;
#define D2(o) ((s[o] - '0') * 10 + (s[(o) + 1] - '0'))
    struct tm tm = { .tm_mday = D2(5), .tm_mon = mon, .tm_year = D2(12) * 100 + D2(14) - 1900,
                     .tm_hour = D2(17), .tm_min = D2(20), .tm_sec = D2(23) };
#undef D2
    if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) return -1;
    *t = timegm(&tm);
    return 0;
}

void http_format_date(time_t t, char out[30])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *http_content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        { "html", "text/html; charset=utf-8" }, { "htm", "text/html; charset=utf-8" },
        { "css", "text/css" }, { "js", "text/javascript" }, { "mjs", "text/javascript" },
        { "json", "application/json" }, { "txt", "text/plain; charset=utf-8" }, { "xml", "application/xml" },
        { "png", "image/png" }, { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" }, { "gif", "image/gif" },
        { "svg", "image/svg+xml" }, { "ico", "image/x-icon" }, { "webp", "image/webp" },
        { "pdf", "application/pdf" }, { "wasm", "application/wasm" }, { "mp4", "video/mp4" },
        { "webm", "video/webm" }, { "mp3", "audio/mpeg" }, { "woff2", "font/woff2" }, { "woff", "font/woff" },
        { "zip", "application/zip" }, { "gz", "application/gzip" }, { "tar", "application/x-tar" },
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot && dot[1])
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 416: return "Range Not Satisfiable";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
