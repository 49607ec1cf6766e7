/* The local door's wire format (include/ktlsx/daemon.h) and the SCM_RIGHTS
 * helpers both sides of it use.  The decoders read untrusted bytes through
 * the bounds-checked reader: every length is checked against its limit and
 * the fields must fill the message exactly. */
#include "core/buf.h"
#include "core/wipe.h"
#include <ktlsx/daemon.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *ktlsx_door_status_name(int status)
{
    static const char *const names[] = {
        "ok",      "bad-request",  "no-profile",     "denied",   "bad-socket",    "busy",     "handshake-failed",
        "timeout", "peer-closed",  "no-kernel-tls",  "alpn-mismatch", "shutting-down", "internal", "unreachable",
    };
    return status >= 0 && (size_t)status < sizeof names / sizeof names[0] ? names[status] : "unknown";
}

/* ---- encoding into a fixed buffer ---- */

struct out {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct out *o, const void *src, size_t n)
{
    if (o->len + n <= o->cap && n > 0) memcpy(o->p + o->len, src, n);
    o->len += n; /* past cap: the caller sees it and refuses */
}
static void put_u8(struct out *o, uint8_t v) { put(o, &v, 1); }
static void put_u16(struct out *o, uint16_t v) { put(o, (uint8_t[]){ (uint8_t)(v >> 8), (uint8_t)v }, 2); }
static void put_u32(struct out *o, uint32_t v)
{
    put(o, (uint8_t[]){ (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v }, 4);
}

/* Text fields are names and one-line messages: no NUL, no control bytes, so
 * a daemon log line or a caller's printf can never be steered by them. */
static int text_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

static int fail(const char **why, const char *reason)
{
    if (why) *why = reason;
    return -1;
}

long ktlsx_door_request_encode(const struct ktlsx_door_request *req, uint8_t *buf, size_t cap, const char **why)
{
    if (!req || !buf) return fail(why, "request or buffer is NULL");
    size_t pl = strnlen(req->profile, sizeof req->profile), sl = strnlen(req->server_name, sizeof req->server_name),
           al = strnlen(req->alpn, sizeof req->alpn);
    if (req->role != KTLSX_CLIENT && req->role != KTLSX_SERVER) return fail(why, "role is neither client nor server");
    if (pl == 0 || pl > KTLSX_DOOR_NAME_MAX) return fail(why, "profile name empty or over 64 bytes");
    if (sl > KTLSX_DOOR_HOST_MAX) return fail(why, "server name over 255 bytes");
    if (al > KTLSX_DOOR_ALPN_MAX) return fail(why, "ALPN list over 255 bytes");
    if (!text_ok((const uint8_t *)req->profile, pl) || !text_ok((const uint8_t *)req->server_name, sl) ||
        !text_ok((const uint8_t *)req->alpn, al))
        return fail(why, "a text field holds a control character");
    struct out o = { buf, 0, cap };
    put_u32(&o, KTLSX_DOOR_REQUEST_MAGIC);
    put_u16(&o, KTLSX_DOOR_VERSION);
    put_u8(&o, (uint8_t)req->role);
    put_u8(&o, 0);
    put_u32(&o, req->timeout_ms);
    put_u16(&o, (uint16_t)pl);
    put_u16(&o, (uint16_t)sl);
    put_u16(&o, (uint16_t)al);
    put_u16(&o, 0);
    put(&o, req->profile, pl);
    put(&o, req->server_name, sl);
    put(&o, req->alpn, al);
    if (o.len > cap) return fail(why, "buffer too small for the request");
    return (long)o.len;
}

/* One length-announced text field into dst (NUL-terminated). */
static int take_text(kx_reader *r, size_t n, char *dst)
{
    const uint8_t *p;
    if (kx_failed(kx_read_bytes(r, n, &p)) || !text_ok(p, n)) return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

int ktlsx_door_request_decode(const uint8_t *buf, size_t len, struct ktlsx_door_request *req, const char **why)
{
    if (!buf || !req) return fail(why, "request or buffer is NULL");
    memset(req, 0, sizeof *req);
    kx_reader r = kx_reader_of(buf, len);
    uint32_t magic, timeout;
    uint16_t version, pl, sl, al, reserved;
    uint8_t role, flags;
    if (len < KTLSX_DOOR_REQUEST_HEADER) return fail(why, "request shorter than its header");
    if (kx_failed(kx_read_u32(&r, &magic)) || kx_failed(kx_read_u16(&r, &version)) ||
        kx_failed(kx_read_u8(&r, &role)) || kx_failed(kx_read_u8(&r, &flags)) ||
        kx_failed(kx_read_u32(&r, &timeout)) || kx_failed(kx_read_u16(&r, &pl)) ||
        kx_failed(kx_read_u16(&r, &sl)) || kx_failed(kx_read_u16(&r, &al)) ||
        kx_failed(kx_read_u16(&r, &reserved)))
        return fail(why, "request shorter than its header");
    if (magic != KTLSX_DOOR_REQUEST_MAGIC) return fail(why, "not a door request (bad magic)");
    if (version != KTLSX_DOOR_VERSION) return fail(why, "door protocol version not supported");
    if (role > KTLSX_SERVER) return fail(why, "role is neither client nor server");
    if (flags != 0 || reserved != 0) return fail(why, "unknown flags or reserved bits set");
    if (pl == 0 || pl > KTLSX_DOOR_NAME_MAX) return fail(why, "profile name empty or over 64 bytes");
    if (sl > KTLSX_DOOR_HOST_MAX) return fail(why, "server name over 255 bytes");
    if (al > KTLSX_DOOR_ALPN_MAX) return fail(why, "ALPN list over 255 bytes");
    if ((size_t)pl + sl + al != kx_reader_left(&r)) return fail(why, "field lengths do not match the request size");
    if (take_text(&r, pl, req->profile) < 0 || take_text(&r, sl, req->server_name) < 0 ||
        take_text(&r, al, req->alpn) < 0)
        return fail(why, "a text field holds a control character");
    req->role = role == KTLSX_SERVER ? KTLSX_SERVER : KTLSX_CLIENT;
    req->timeout_ms = timeout;
    return 0;
}

/* The answer's text fields, in wire order. */
#define ANSWER_TEXTS 7
static const size_t answer_text_max[ANSWER_TEXTS] = {
    KTLSX_DOOR_MESSAGE_MAX, KTLSX_DOOR_GROUP_MAX,   KTLSX_DOOR_ALPN_MAX,    KTLSX_DOOR_SUBJECT_MAX,
    KTLSX_DOOR_HOST_MAX,    KTLSX_DOOR_MESSAGE_MAX, KTLSX_DOOR_SUBJECT_MAX,
};

long ktlsx_door_answer_encode(const struct ktlsx_daemon_result *res, const uint8_t *blob, size_t blob_len,
                              uint8_t *buf, size_t cap, const char **why)
{
    if (!res || !buf || (blob_len > 0 && !blob)) return fail(why, "answer, blob or buffer is NULL");
    if (blob_len > KTLSX_EXPORT_MAX) return fail(why, "export blob over KTLSX_EXPORT_MAX");
    if (res->status < 0 || res->status > 0xffff) return fail(why, "status out of range");
    const char *texts[ANSWER_TEXTS] = { res->message,      res->group,    res->alpn,     res->peer_subject,
                                        res->server_name, res->ktls_why, res->peer_sans };
    size_t tl[ANSWER_TEXTS];
    for (int i = 0; i < ANSWER_TEXTS; i++) {
        tl[i] = strnlen(texts[i], answer_text_max[i]); /* cut at the limit */
        for (size_t j = 0; j < tl[i]; j++) /* control bytes would be refused by the decoder: cut there */
            if ((uint8_t)texts[i][j] < 0x20 || texts[i][j] == 0x7f) {
                tl[i] = j;
                break;
            }
    }
    struct out o = { buf, 0, cap };
    put_u32(&o, KTLSX_DOOR_ANSWER_MAGIC);
    put_u16(&o, KTLSX_DOOR_VERSION);
    put_u16(&o, (uint16_t)res->status);
    put_u16(&o, res->version);
    put_u16(&o, res->cipher);
    put_u8(&o, res->alert);
    put_u8(&o, res->resumed ? 1 : 0);
    put_u8(&o, (uint8_t)(res->ktls & (KTLSX_KTLS_TX | KTLSX_KTLS_RX)));
    put_u8(&o, 0);
    for (int i = 0; i < ANSWER_TEXTS; i++) put_u16(&o, (uint16_t)tl[i]);
    put_u16(&o, (uint16_t)blob_len);
    for (int i = 0; i < ANSWER_TEXTS; i++) put(&o, texts[i], tl[i]);
    put(&o, blob, blob_len);
    if (o.len > cap) return fail(why, "buffer too small for the answer");
    return (long)o.len;
}

int ktlsx_door_answer_decode(const uint8_t *buf, size_t len, struct ktlsx_daemon_result *res, const uint8_t **blob,
                             size_t *blob_len, const char **why)
{
    if (!buf || !res || !blob || !blob_len) return fail(why, "answer, buffer or blob pointer is NULL");
    memset(res, 0, sizeof *res);
    *blob = NULL;
    *blob_len = 0;
    kx_reader r = kx_reader_of(buf, len);
    uint32_t magic;
    uint16_t version, status, tls_version, cipher, tl[ANSWER_TEXTS], bl;
    uint8_t alert, resumed, ktls, reserved8;
    if (len < KTLSX_DOOR_ANSWER_HEADER) return fail(why, "answer shorter than its header");
    if (kx_failed(kx_read_u32(&r, &magic)) || kx_failed(kx_read_u16(&r, &version)) ||
        kx_failed(kx_read_u16(&r, &status)) || kx_failed(kx_read_u16(&r, &tls_version)) ||
        kx_failed(kx_read_u16(&r, &cipher)) || kx_failed(kx_read_u8(&r, &alert)) ||
        kx_failed(kx_read_u8(&r, &resumed)) || kx_failed(kx_read_u8(&r, &ktls)) ||
        kx_failed(kx_read_u8(&r, &reserved8)))
        return fail(why, "answer shorter than its header");
    for (int i = 0; i < ANSWER_TEXTS; i++)
        if (kx_failed(kx_read_u16(&r, &tl[i]))) return fail(why, "answer shorter than its header");
    if (kx_failed(kx_read_u16(&r, &bl))) return fail(why, "answer shorter than its header");
    if (magic != KTLSX_DOOR_ANSWER_MAGIC) return fail(why, "not a door answer (bad magic)");
    if (version != KTLSX_DOOR_VERSION) return fail(why, "door protocol version not supported");
    if (resumed > 1 || (ktls & ~(KTLSX_KTLS_TX | KTLSX_KTLS_RX)) || reserved8)
        return fail(why, "unknown flags or reserved bits set");
    size_t total = bl;
    for (int i = 0; i < ANSWER_TEXTS; i++) {
        if (tl[i] > answer_text_max[i]) return fail(why, "a text field is over its limit");
        total += tl[i];
    }
    if (bl > KTLSX_EXPORT_MAX) return fail(why, "export blob over KTLSX_EXPORT_MAX");
    if (total != kx_reader_left(&r)) return fail(why, "field lengths do not match the answer size");
    char *texts[ANSWER_TEXTS] = { res->message,      res->group,    res->alpn,     res->peer_subject,
                                  res->server_name, res->ktls_why, res->peer_sans };
    for (int i = 0; i < ANSWER_TEXTS; i++)
        if (take_text(&r, tl[i], texts[i]) < 0) return fail(why, "a text field holds a control character");
    if (bl > 0 && status != KTLSX_DOOR_OK) return fail(why, "a failed exchange carries a blob");
    if (bl > 0 && kx_failed(kx_read_bytes(&r, bl, blob))) return fail(why, "answer truncated");
    *blob_len = bl;
    res->status = status;
    res->version = tls_version;
    res->cipher = cipher;
    res->alert = alert;
    res->resumed = resumed;
    res->ktls = ktls;
    return 0;
}

/* ---- SCM_RIGHTS ---- */

int ktlsx_send_fd(int channel, const void *msg, size_t len, int fd, int flags)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if ((!msg && len > 0) || (flags & ~MSG_DONTWAIT)) {
        errno = EINVAL;
        return -1;
    }
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    ssize_t n;
    do
        n = sendmsg(channel, &mh, MSG_NOSIGNAL | flags);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if ((size_t)n != len) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

long ktlsx_recv_fd(int channel, void *buf, size_t cap, int *fd, int flags)
{
    /* Room for a few descriptors, so a caller that sends several cannot make
     * the kernel drop them unseen (we close all but the first). */
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = cap };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    if (!fd || (!buf && cap > 0) || (flags & ~MSG_DONTWAIT)) {
        errno = EINVAL;
        return -1;
    }
    *fd = -1;
    ssize_t n;
    do
        n = recvmsg(channel, &mh, MSG_CMSG_CLOEXEC | flags);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
            if (*fd < 0) *fd = got;
            else close(got);
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        if (*fd >= 0) close(*fd);
        *fd = -1;
        errno = EMSGSIZE;
        return -1;
    }
    return (long)n;
}
