/* A session: what resumption needs (RFC 5077, RFC 8446 §4.6.1), and its
 * versioned, length-checked encoding, shared by the client's saved sessions,
 * the server's tickets and the external session store. */
#include "session/session.h"
#include "core/wipe.h"
#include <string.h>
#include <time.h>

uint64_t kx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void kx_session_wipe(kx_session *s) { kx_wipe(s, sizeof *s); }

/* ---- encoding: a versioned, length-checked binary layout ---- */

#define SESSION_MAGIC 0x6b78u /* "kx" */
#define SESSION_FORMAT 1

kx_result kx_session_encode(const kx_session *s, kx_buf *o)
{
    KX_GUARD(kx_write_u16(o, SESSION_MAGIC));
    KX_GUARD(kx_write_u8(o, SESSION_FORMAT));
    KX_GUARD(kx_write_u16(o, s->version));
    KX_GUARD(kx_write_u16(o, s->suite));
    KX_GUARD(kx_write_vec(o, 1, s->secret, s->secret_len));
    KX_GUARD(kx_write_u8(o, s->ems));
    KX_GUARD(kx_write_vec(o, 1, s->session_id, s->session_id_len));
    KX_GUARD(kx_write_u64(o, s->issued_ms));
    KX_GUARD(kx_write_u32(o, s->lifetime));
    KX_GUARD(kx_write_u32(o, s->age_add));
    KX_GUARD(kx_write_vec(o, 2, s->ticket, s->ticket_len));
    KX_GUARD(kx_write_vec(o, 1, s->alpn, strlen(s->alpn)));
    return kx_write_vec(o, 1, s->peer_subject, strlen(s->peer_subject));
}

static kx_result read_string(kx_reader *r, char *dst, size_t cap)
{
    kx_reader v;
    KX_GUARD(kx_read_vec(r, 1, 0, cap - 1, &v));
    memcpy(dst, v.data, v.len);
    dst[v.len] = 0;
    return KX_OK;
}

static kx_result decode_session(const uint8_t *data, size_t len, kx_session *s)
{
    kx_reader r = kx_reader_of(data, len), v;
    uint16_t magic;
    uint8_t format, ems;
    KX_GUARD(kx_read_u16(&r, &magic));
    KX_GUARD(kx_read_u8(&r, &format));
    KX_ENSURE(magic == SESSION_MAGIC && format == SESSION_FORMAT, KX_ALERT_DECODE_ERROR, "not a ktlsx session");
    KX_GUARD(kx_read_u16(&r, &s->version));
    KX_GUARD(kx_read_u16(&r, &s->suite));
    KX_GUARD(kx_read_vec(&r, 1, 1, sizeof s->secret, &v));
    memcpy(s->secret, v.data, v.len);
    s->secret_len = (uint8_t)v.len;
    KX_GUARD(kx_read_u8(&r, &ems));
    s->ems = ems != 0;
    KX_GUARD(kx_read_vec(&r, 1, 0, sizeof s->session_id, &v));
    memcpy(s->session_id, v.data, v.len);
    s->session_id_len = (uint8_t)v.len;
    KX_GUARD(kx_read_u64(&r, &s->issued_ms));
    KX_GUARD(kx_read_u32(&r, &s->lifetime));
    KX_GUARD(kx_read_u32(&r, &s->age_add));
    KX_GUARD(kx_read_vec(&r, 2, 0, sizeof s->ticket, &v));
    memcpy(s->ticket, v.data, v.len);
    s->ticket_len = (uint16_t)v.len;
    KX_GUARD(read_string(&r, s->alpn, sizeof s->alpn));
    KX_GUARD(read_string(&r, s->peer_subject, sizeof s->peer_subject));
    KX_GUARD(kx_reader_done(&r));
    KX_ENSURE(kx_suite_by_id(s->suite) != NULL && (s->version == 0x0303 || s->version == 0x0304),
              KX_ALERT_DECODE_ERROR, "session names an unknown suite or version");
    return KX_OK;
}

kx_result kx_session_decode(const uint8_t *data, size_t len, kx_session *s)
{
    memset(s, 0, sizeof *s);
    kx_result r = decode_session(data, len, s);
    /* A blob refused after its secret was read leaves no copy behind. */
    if (kx_failed(r)) kx_session_wipe(s);
    return r;
}
