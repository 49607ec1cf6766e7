/* handshake/extensions: kx_exts_parse against RFC 8446 §4.2 — duplicates,
 * extensions in a message that may not carry them, unknown extensions
 * (ignored in requests, rejected in responses), unsolicited responses, and
 * the pre_shared_key-must-be-last bookkeeping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "handshake/extensions.h"
/* issue 9: record_size_limit over a real engine pair */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

#define assert_ok(expr)                                                          \
    do {                                                                         \
        kx_result r__ = (expr);                                                  \
        if (kx_failed(r__)) fail_msg("%s failed: %s", #expr, r__.reason);        \
    } while (0)

#define assert_alert(expr, alert_)                                               \
    do {                                                                         \
        kx_result r__ = (expr);                                                  \
        if (!kx_failed(r__)) fail_msg("%s unexpectedly succeeded", #expr);       \
        if (r__.alert != (alert_))                                               \
            fail_msg("%s: alert %d (%s), wanted %d", #expr, r__.alert,           \
                     r__.reason, (alert_));                                      \
    } while (0)

#define BIT(e) (1u << (e))

/* ---- kx_read_u16_list_kept (issue 13): whole lists, filtered, not capped ---- */

static bool keep_even(uint16_t v, const void *arg)
{
    (void)arg;
    return v % 2 == 0;
}

static size_t put_u16s(uint8_t *b, const uint16_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        b[2 * i] = (uint8_t)(v[i] >> 8);
        b[2 * i + 1] = (uint8_t)v[i];
    }
    return 2 * n;
}

static void test_u16_list_kept(void **state)
{
    (void)state;
    /* 200 entries we do not keep, then the ones we do, with repeats. */
    uint16_t v[210];
    size_t n = 0;
    for (int i = 0; i < 200; i++) v[n++] = (uint16_t)(2 * i + 1);
    v[n++] = 0x0a0a;
    v[n++] = 0x001d;
    v[n++] = 0x0a0a; /* a repeat: kept once */
    v[n++] = 0x0018;
    uint8_t b[2 * 210];
    size_t len = put_u16s(b, v, n);
    uint16_t out[2], got[3];
    size_t count = 99;
    assert_ok(kx_read_u16_list_kept(kx_reader_of(b, len), keep_even, NULL, out, 2, &count));
    assert_int_equal(count, 2);
    assert_int_equal(out[0], 0x0a0a);
    assert_int_equal(out[1], 0x0018);
    /* Nothing kept is not an error: the caller decides what an empty choice means. */
    assert_ok(kx_read_u16_list_kept(kx_reader_of(b, 2 * 200), keep_even, NULL, out, 2, &count));
    assert_int_equal(count, 0);
    /* Too little room for what is kept fails loudly instead of dropping an entry. */
    assert_alert(kx_read_u16_list_kept(kx_reader_of(b, len), keep_even, NULL, out, 1, &count), KX_ALERT_INTERNAL_ERROR);
    /* Odd or empty lists are malformed. */
    assert_alert(kx_read_u16_list_kept(kx_reader_of(b, len - 1), keep_even, NULL, got, 3, &count), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_read_u16_list_kept(kx_reader_of(b, 0), keep_even, NULL, got, 3, &count), KX_ALERT_DECODE_ERROR);
}
#define ALL_OFFERED 0xffffffffu

/* An extension block under construction. */
typedef struct {
    uint8_t b[1024];
    size_t len;
} block;

static void add_ext(block *bl, uint16_t type, const void *data, size_t n)
{
    assert_true(bl->len + 4 + n <= sizeof bl->b);
    bl->b[bl->len++] = (uint8_t)(type >> 8);
    bl->b[bl->len++] = (uint8_t)type;
    bl->b[bl->len++] = (uint8_t)(n >> 8);
    bl->b[bl->len++] = (uint8_t)n;
    if (n) memcpy(bl->b + bl->len, data, n);
    bl->len += n;
}

static kx_result parse(const block *bl, kx_ext_msg msg, uint32_t offered, kx_exts *out)
{
    kx_reader r = kx_reader_of(bl->b, bl->len);
    return kx_exts_parse(&r, msg, offered, out);
}

static void test_empty_and_table(void **state)
{
    (void)state;
    block bl = { .len = 0 };
    kx_exts e;
    assert_ok(parse(&bl, KX_IN_CH, 0, &e));
    assert_int_equal(e.present, 0);
    assert_false(e.psk_last);
    /* Every dense index maps to its IANA code point and a name. */
    assert_int_equal(kx_ext_type(KX_EXT_SERVER_NAME), 0);
    assert_int_equal(kx_ext_type(KX_EXT_ALPN), 16);
    assert_int_equal(kx_ext_type(KX_EXT_PRE_SHARED_KEY), 41);
    assert_int_equal(kx_ext_type(KX_EXT_SUPPORTED_VERSIONS), 43);
    assert_int_equal(kx_ext_type(KX_EXT_KEY_SHARE), 51);
    assert_int_equal(kx_ext_type(KX_EXT_RENEGOTIATION_INFO), 0xff01);
    for (int i = 0; i < KX_EXT_COUNT; i++) assert_non_null(kx_ext_name((kx_ext)i));
    assert_string_equal(kx_ext_name(KX_EXT_KEY_SHARE), "key_share");
}

static void test_client_hello_collects(void **state)
{
    (void)state;
    block bl = { .len = 0 };
    add_ext(&bl, KX_EXT_TYPE_SERVER_NAME, "\x00\x04\x00\x00\x01x", 6);
    add_ext(&bl, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x02\x03\x04", 3);
    add_ext(&bl, KX_EXT_TYPE_KEY_SHARE, "abcd", 4);
    kx_exts e;
    assert_ok(parse(&bl, KX_IN_CH, 0, &e));
    assert_int_equal(e.present, BIT(KX_EXT_SERVER_NAME) | BIT(KX_EXT_SUPPORTED_VERSIONS) | BIT(KX_EXT_KEY_SHARE));
    assert_true(kx_has_ext(&e, KX_EXT_KEY_SHARE));
    assert_false(kx_has_ext(&e, KX_EXT_ALPN));
    assert_int_equal(e.data[KX_EXT_KEY_SHARE].len, 4);
    assert_memory_equal(e.data[KX_EXT_KEY_SHARE].data, "abcd", 4);
    assert_int_equal(e.data[KX_EXT_SUPPORTED_VERSIONS].len, 3);
    assert_false(e.psk_last);
}

static void test_duplicate(void **state)
{
    (void)state;
    block bl = { .len = 0 };
    add_ext(&bl, KX_EXT_TYPE_SUPPORTED_GROUPS, "\x00\x02\x00\x1d", 4);
    add_ext(&bl, KX_EXT_TYPE_ALPN, "\x00\x03\x02h2", 5);
    add_ext(&bl, KX_EXT_TYPE_SUPPORTED_GROUPS, "\x00\x02\x00\x17", 4);
    kx_exts e;
    assert_alert(parse(&bl, KX_IN_CH, 0, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* Also in a response, even when offered. */
    block sh = { .len = 0 };
    add_ext(&sh, KX_EXT_TYPE_KEY_SHARE, "x", 1);
    add_ext(&sh, KX_EXT_TYPE_KEY_SHARE, "y", 1);
    assert_alert(parse(&sh, KX_IN_SH, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* An empty extension twice is still a duplicate. */
    block ee = { .len = 0 };
    add_ext(&ee, KX_EXT_TYPE_SERVER_NAME, NULL, 0);
    add_ext(&ee, KX_EXT_TYPE_SERVER_NAME, NULL, 0);
    assert_alert(parse(&ee, KX_IN_EE, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
}

static void test_not_allowed_in_message(void **state)
{
    (void)state;
    kx_exts e;
    /* signature_algorithms may not appear in EncryptedExtensions. */
    block ee = { .len = 0 };
    add_ext(&ee, KX_EXT_TYPE_SIGNATURE_ALGORITHMS, "\x00\x02\x04\x03", 4);
    assert_alert(parse(&ee, KX_IN_EE, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* key_share belongs in ServerHello, not EncryptedExtensions. */
    block ee2 = { .len = 0 };
    add_ext(&ee2, KX_EXT_TYPE_KEY_SHARE, "x", 1);
    assert_alert(parse(&ee2, KX_IN_EE, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* ALPN in a TLS 1.3 ServerHello. */
    block sh = { .len = 0 };
    add_ext(&sh, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x03\x04", 2);
    add_ext(&sh, KX_EXT_TYPE_ALPN, "\x00\x03\x02h2", 5);
    assert_alert(parse(&sh, KX_IN_SH, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* cookie in a ServerHello (only HelloRetryRequest may carry it). */
    block sh2 = { .len = 0 };
    add_ext(&sh2, KX_EXT_TYPE_COOKIE, "\x00\x01z", 3);
    assert_alert(parse(&sh2, KX_IN_SH, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* TLS 1.2-only extension in a TLS 1.3 ServerHello, allowed in a TLS 1.2 one. */
    block sh3 = { .len = 0 };
    add_ext(&sh3, KX_EXT_TYPE_EXTENDED_MASTER_SECRET, NULL, 0);
    assert_alert(parse(&sh3, KX_IN_SH, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    assert_ok(parse(&sh3, KX_IN_SH12, ALL_OFFERED, &e));
    assert_true(kx_has_ext(&e, KX_EXT_EXTENDED_MASTER_SECRET));
    /* server_name in a Certificate entry. */
    block ct = { .len = 0 };
    add_ext(&ct, KX_EXT_TYPE_SERVER_NAME, NULL, 0);
    assert_alert(parse(&ct, KX_IN_CT, ALL_OFFERED, &e), KX_ALERT_ILLEGAL_PARAMETER);
    /* The same extensions are fine where they belong. */
    assert_ok(parse(&ee2, KX_IN_SH, ALL_OFFERED, &e));
    assert_ok(parse(&sh2, KX_IN_HRR, ALL_OFFERED, &e));
}

static void test_unknown_extension(void **state)
{
    (void)state;
    kx_exts e;
    block bl = { .len = 0 };
    add_ext(&bl, 0x1234, "grease", 6);
    add_ext(&bl, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x02\x03\x04", 3);
    add_ext(&bl, 0xfafa, NULL, 0);
    /* Ignored in ClientHello and CertificateRequest (RFC 8446 §4.2). */
    assert_ok(parse(&bl, KX_IN_CH, 0, &e));
    assert_int_equal(e.present, BIT(KX_EXT_SUPPORTED_VERSIONS));
    block cr = { .len = 0 };
    add_ext(&cr, 0x1234, "x", 1);
    add_ext(&cr, KX_EXT_TYPE_SIGNATURE_ALGORITHMS, "\x00\x02\x04\x03", 4);
    assert_ok(parse(&cr, KX_IN_CR, 0, &e));
    assert_int_equal(e.present, BIT(KX_EXT_SIGNATURE_ALGORITHMS));
    /* A known extension where it may not stand is illegal_parameter in
     * requests too: key_share in a CertificateRequest, ALPN in a
     * NewSessionTicket (RFC 8446 §4.2). */
    block cr_bad = { .len = 0 };
    add_ext(&cr_bad, KX_EXT_TYPE_SIGNATURE_ALGORITHMS, "\x00\x02\x04\x03", 4);
    add_ext(&cr_bad, KX_EXT_TYPE_KEY_SHARE, NULL, 0);
    assert_alert(parse(&cr_bad, KX_IN_CR, 0, &e), KX_ALERT_ILLEGAL_PARAMETER);
    block nst_bad = { .len = 0 };
    add_ext(&nst_bad, KX_EXT_TYPE_ALPN, "\x00\x03\x02h2", 5);
    assert_alert(parse(&nst_bad, KX_IN_NST, 0, &e), KX_ALERT_ILLEGAL_PARAMETER);
    block nst_ok = { .len = 0 };
    add_ext(&nst_ok, 0x1234, "x", 1);
    add_ext(&nst_ok, KX_EXT_TYPE_EARLY_DATA, "\x00\x00\x40\x00", 4);
    assert_ok(parse(&nst_ok, KX_IN_NST, 0, &e));
    /* Rejected in ServerHello, HelloRetryRequest and EncryptedExtensions, even when
     * we "offered everything". */
    block resp = { .len = 0 };
    add_ext(&resp, 0x1234, "x", 1);
    assert_alert(parse(&resp, KX_IN_SH, ALL_OFFERED, &e), KX_ALERT_UNSUPPORTED_EXTENSION);
    assert_alert(parse(&resp, KX_IN_EE, ALL_OFFERED, &e), KX_ALERT_UNSUPPORTED_EXTENSION);
    assert_alert(parse(&resp, KX_IN_HRR, ALL_OFFERED, &e), KX_ALERT_UNSUPPORTED_EXTENSION);
    /* Also when it comes after valid ones. */
    block late = { .len = 0 };
    add_ext(&late, KX_EXT_TYPE_ALPN, "\x00\x03\x02h2", 5);
    add_ext(&late, 0x7777, NULL, 0);
    assert_alert(parse(&late, KX_IN_EE, ALL_OFFERED, &e), KX_ALERT_UNSUPPORTED_EXTENSION);
}

static void test_unsolicited(void **state)
{
    (void)state;
    kx_exts e;
    block ee = { .len = 0 };
    add_ext(&ee, KX_EXT_TYPE_ALPN, "\x00\x03\x02h2", 5);
    /* ALPN in EncryptedExtensions without our offering it. */
    assert_alert(parse(&ee, KX_IN_EE, BIT(KX_EXT_SERVER_NAME) | BIT(KX_EXT_KEY_SHARE), &e),
                 KX_ALERT_UNSUPPORTED_EXTENSION);
    assert_ok(parse(&ee, KX_IN_EE, BIT(KX_EXT_ALPN), &e));
    assert_true(kx_has_ext(&e, KX_EXT_ALPN));
    /* server_name acknowledgement without our having sent SNI. */
    block sn = { .len = 0 };
    add_ext(&sn, KX_EXT_TYPE_SERVER_NAME, NULL, 0);
    assert_alert(parse(&sn, KX_IN_EE, BIT(KX_EXT_ALPN), &e), KX_ALERT_UNSUPPORTED_EXTENSION);
    /* key_share in ServerHello we did not send. */
    block sh = { .len = 0 };
    add_ext(&sh, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x03\x04", 2);
    add_ext(&sh, KX_EXT_TYPE_KEY_SHARE, "x", 1);
    assert_alert(parse(&sh, KX_IN_SH, BIT(KX_EXT_SUPPORTED_VERSIONS), &e), KX_ALERT_UNSUPPORTED_EXTENSION);
    /* pre_shared_key in ServerHello when we offered no PSK. */
    block psk = { .len = 0 };
    add_ext(&psk, KX_EXT_TYPE_PRE_SHARED_KEY, "\x00\x00", 2);
    assert_alert(parse(&psk, KX_IN_SH, BIT(KX_EXT_KEY_SHARE) | BIT(KX_EXT_SUPPORTED_VERSIONS), &e),
                 KX_ALERT_UNSUPPORTED_EXTENSION);
    /* renegotiation_info may come back in a TLS 1.2 ServerHello unasked (RFC 5746 SCSV). */
    block ri = { .len = 0 };
    add_ext(&ri, KX_EXT_TYPE_RENEGOTIATION_INFO, "\x00", 1);
    assert_ok(parse(&ri, KX_IN_SH12, 0, &e));
    assert_true(kx_has_ext(&e, KX_EXT_RENEGOTIATION_INFO));
    /* Requests are never "unsolicited". */
    assert_ok(parse(&ee, KX_IN_CH, 0, &e));
}

static void test_psk_position(void **state)
{
    (void)state;
    kx_exts e;
    static const uint8_t psk_body[] = { 0x00, 0x00 };
    /* Last: flagged, offset points at its extension header. */
    block last = { .len = 0 };
    add_ext(&last, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x02\x03\x04", 3);
    size_t at = last.len;
    add_ext(&last, KX_EXT_TYPE_PRE_SHARED_KEY, psk_body, sizeof psk_body);
    assert_ok(parse(&last, KX_IN_CH, 0, &e));
    assert_true(kx_has_ext(&e, KX_EXT_PRE_SHARED_KEY));
    assert_true(e.psk_last);
    assert_int_equal(e.psk_offset, at);
    /* Not last: followed by a known extension. */
    block mid = { .len = 0 };
    add_ext(&mid, KX_EXT_TYPE_PRE_SHARED_KEY, psk_body, sizeof psk_body);
    add_ext(&mid, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x02\x03\x04", 3);
    assert_ok(parse(&mid, KX_IN_CH, 0, &e));
    assert_true(kx_has_ext(&e, KX_EXT_PRE_SHARED_KEY));
    assert_false(e.psk_last);
    /* Not last: followed by an extension we do not know (ignored, but still after it). */
    block unk = { .len = 0 };
    add_ext(&unk, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x02\x03\x04", 3);
    add_ext(&unk, KX_EXT_TYPE_PRE_SHARED_KEY, psk_body, sizeof psk_body);
    add_ext(&unk, 0x1a1a, NULL, 0);
    assert_ok(parse(&unk, KX_IN_CH, 0, &e));
    assert_true(kx_has_ext(&e, KX_EXT_PRE_SHARED_KEY));
    assert_false(e.psk_last);
}

static void test_malformed_block(void **state)
{
    (void)state;
    kx_exts e;
    /* Type without a length. */
    block a = { .b = { 0x00, 0x2b }, .len = 2 };
    assert_alert(parse(&a, KX_IN_CH, 0, &e), KX_ALERT_DECODE_ERROR);
    /* Length beyond the block. */
    block b = { .b = { 0x00, 0x2b, 0x00, 0x05, 0x02, 0x03 }, .len = 6 };
    assert_alert(parse(&b, KX_IN_CH, 0, &e), KX_ALERT_DECODE_ERROR);
    /* One stray byte after a valid extension. */
    block c = { .len = 0 };
    add_ext(&c, KX_EXT_TYPE_SUPPORTED_VERSIONS, "\x02\x03\x04", 3);
    c.b[c.len++] = 0;
    assert_alert(parse(&c, KX_IN_CH, 0, &e), KX_ALERT_DECODE_ERROR);
}

/* ---- record_size_limit (RFC 8449; issue 9) ---- */

static void test_rsl_values(void **state)
{
    (void)state;
    uint16_t v;
    assert_ok(kx_rsl_parse(kx_reader_of((const uint8_t *)"\x00\x40", 2), &v));
    assert_int_equal(v, 64);
    assert_ok(kx_rsl_parse(kx_reader_of((const uint8_t *)"\xff\xff", 2), &v)); /* above the maximum: capped, not refused */
    assert_int_equal(v, 0xffff);
    assert_alert(kx_rsl_parse(kx_reader_of((const uint8_t *)"\x00\x3f", 2), &v), KX_ALERT_ILLEGAL_PARAMETER);
    assert_alert(kx_rsl_parse(kx_reader_of((const uint8_t *)"\x00\x00", 2), &v), KX_ALERT_ILLEGAL_PARAMETER);
    assert_alert(kx_rsl_parse(kx_reader_of((const uint8_t *)"\x00", 1), &v), KX_ALERT_DECODE_ERROR);
    assert_alert(kx_rsl_parse(kx_reader_of((const uint8_t *)"\x00\x40\x00", 3), &v), KX_ALERT_DECODE_ERROR);
    /* TLS 1.3 counts the content type byte; TLS 1.2 does not; both cap. */
    assert_int_equal(kx_rsl_plain(64, 0x0304), 63);
    assert_int_equal(kx_rsl_plain(64, 0x0303), 64);
    assert_int_equal(kx_rsl_plain(16385, 0x0304), 16384);
    assert_int_equal(kx_rsl_plain(16385, 0x0303), 16384);
    assert_int_equal(kx_rsl_plain(0xffff, 0x0304), 16384);
    assert_int_equal(kx_rsl_wire(16385, 0x0303), 16384);
    assert_int_equal(kx_rsl_wire(16385, 0x0304), 16385);
    /* Table: ClientHello, EncryptedExtensions, TLS 1.2 ServerHello; never a 1.3 ServerHello. */
    assert_int_equal(kx_ext_type(KX_EXT_RECORD_SIZE_LIMIT), 28);
    assert_string_equal(kx_ext_name(KX_EXT_RECORD_SIZE_LIMIT), "record_size_limit");
    const uint8_t ext[] = { 0x00, 0x1c, 0x00, 0x02, 0x01, 0x00 };
    kx_exts e;
    kx_reader r = kx_reader_of(ext, sizeof ext);
    assert_ok(kx_exts_parse(&r, KX_IN_EE, BIT(KX_EXT_RECORD_SIZE_LIMIT), &e));
    assert_true(kx_has_ext(&e, KX_EXT_RECORD_SIZE_LIMIT));
    r = kx_reader_of(ext, sizeof ext);
    assert_alert(kx_exts_parse(&r, KX_IN_EE, 0, &e), KX_ALERT_UNSUPPORTED_EXTENSION); /* not offered */
    r = kx_reader_of(ext, sizeof ext);
    assert_alert(kx_exts_parse(&r, KX_IN_SH, BIT(KX_EXT_RECORD_SIZE_LIMIT), &e), KX_ALERT_ILLEGAL_PARAMETER);
}

static void test_rsl_setter(void **state)
{
    (void)state;
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_CLIENT);
    assert_non_null(cfg);
    assert_int_equal(ktlsx_config_set_record_size_limit(cfg, 63), -1);
    assert_non_null(strstr(ktlsx_config_error(cfg), "record_size_limit"));
    assert_int_equal(ktlsx_config_set_record_size_limit(cfg, 16386), -1);
    assert_int_equal(ktlsx_config_set_record_size_limit(cfg, 64), 0);
    assert_int_equal(ktlsx_config_set_record_size_limit(cfg, 16385), 0);
    assert_int_equal(ktlsx_config_set_record_size_limit(cfg, 0), 0);
    assert_int_equal(ktlsx_config_set_record_size_limit(NULL, 100), -1);
    ktlsx_config_free(cfg);
    assert_int_equal(ktlsx_record_size_limit(NULL, KTLSX_TX), -1);
}

/* The largest content of any protected record on `w` (after the first `skip` records). */
static size_t largest_content(const kx_buf *w, size_t skip, uint16_t version)
{
    size_t max = 0, n = kxt_count_records(w);
    for (size_t i = skip; i < n; i++) {
        uint8_t type;
        size_t len;
        assert_true(kxt_record_offset(w, i, &type, &len) >= 0);
        if (type == KX_CT_CHANGE_CIPHER_SPEC && len == 1) continue;
        size_t content = len - KX_AEAD_TAG - (version == KTLSX_TLS13 ? 1 : 0);
        if (version == KTLSX_TLS12) content -= 8; /* GCM explicit nonce (the suites used here) */
        if (content > max) max = content;
    }
    return max;
}

static kxt_pair rsl_pair(uint16_t version, unsigned client_limit, unsigned server_limit)
{
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("rsa", NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, version, version));
    if (version == KTLSX_TLS12) KXT_CFG_OK(cc, ktlsx_config_set_ciphers(cc, "ECDHE-RSA-AES128-GCM-SHA256"));
    KXT_CFG_OK(cc, ktlsx_config_set_record_size_limit(cc, client_limit));
    KXT_CFG_OK(sc, ktlsx_config_set_record_size_limit(sc, server_limit));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    return p;
}

/* Both versions, both sides: what each side may send is the other's value. */
static void rsl_negotiate(uint16_t version, unsigned client_limit, unsigned server_limit, size_t want_c_tx,
                          size_t want_s_tx)
{
    kxt_pair p = rsl_pair(version, client_limit, server_limit);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.c), version);
    assert_int_equal(ktlsx_record_size_limit(p.c, KTLSX_TX), want_c_tx);
    assert_int_equal(ktlsx_record_size_limit(p.s, KTLSX_RX), want_c_tx);
    assert_int_equal(ktlsx_record_size_limit(p.s, KTLSX_TX), want_s_tx);
    assert_int_equal(ktlsx_record_size_limit(p.c, KTLSX_RX), want_s_tx);
    kxt_settle(&p);
    /* Large writes each way: every record within the peer's limit, data intact. */
    uint8_t *d = malloc(40000);
    assert_non_null(d);
    for (size_t i = 0; i < 40000; i++) d[i] = (uint8_t)(i * 31);
    assert_int_equal(ktlsx_write(p.c, d, 40000), 0);
    kxt_move_out(p.c, &p.c2s);
    assert_true(largest_content(&p.c2s, 0, version) <= want_c_tx);
    assert_true(kxt_count_records(&p.c2s) >= (40000 + want_c_tx - 1) / want_c_tx);
    assert_int_equal(ktlsx_write(p.s, d, 40000), 0);
    kxt_move_out(p.s, &p.s2c);
    assert_true(largest_content(&p.s2c, 0, version) <= want_s_tx);
    kxt_deliver(p.s, &p.c2s);
    kxt_deliver(p.c, &p.s2c);
    uint8_t *got = malloc(40001);
    assert_non_null(got);
    long last;
    assert_int_equal(kxt_drain_read(p.s, got, 40001, &last), 40000);
    assert_memory_equal(got, d, 40000);
    assert_int_equal(kxt_drain_read(p.c, got, 40001, &last), 40000);
    assert_memory_equal(got, d, 40000);
    free(got);
    free(d);
    kxt_pair_free(&p);
}

static void test_rsl_negotiate(void **state)
{
    (void)state;
    /* TLS 1.3: the limit counts the type byte. Server unset answers 2^14 + 1. */
    rsl_negotiate(KTLSX_TLS13, 1000, 0, 16384, 999);
    rsl_negotiate(KTLSX_TLS13, 64, 200, 199, 63);
    rsl_negotiate(KTLSX_TLS13, 16385, 16385, 16384, 16384);
    /* TLS 1.2: no type byte; a client value of 16385 means 2^14. */
    rsl_negotiate(KTLSX_TLS12, 1000, 0, 16384, 1000);
    rsl_negotiate(KTLSX_TLS12, 64, 300, 300, 64);
    rsl_negotiate(KTLSX_TLS12, 16385, 0, 16384, 16384);
    /* Client offers nothing: nothing negotiated, the server's setting is never sent. */
    rsl_negotiate(KTLSX_TLS13, 0, 100, 16384, 16384);
    rsl_negotiate(KTLSX_TLS12, 0, 100, 16384, 16384);
}

/* A TLS 1.2 server facing a client that also offered TLS 1.3: one byte under
 * the client's value (it may have counted a TLS 1.3 type byte; GnuTLS does). */
static void test_rsl_tls12_offer13(void **state)
{
    (void)state;
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL), *sc = kxt_server_cfg("rsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_versions(sc, KTLSX_TLS12, KTLSX_TLS12));
    KXT_CFG_OK(cc, ktlsx_config_set_record_size_limit(cc, 1000));
    kxt_pair p;
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    kxt_pump(&p);
    kxt_assert_done(&p);
    assert_int_equal(ktlsx_version(p.s), KTLSX_TLS12);
    assert_int_equal(ktlsx_record_size_limit(p.s, KTLSX_TX), 999);
    assert_int_equal(ktlsx_record_size_limit(p.c, KTLSX_RX), 1000);
    kxt_settle(&p);
    uint8_t d[3000] = { 0 };
    assert_int_equal(ktlsx_write(p.s, d, sizeof d), 0);
    kxt_move_out(p.s, &p.s2c);
    assert_int_equal(kxt_count_records(&p.s2c), 4);
    assert_true(largest_content(&p.s2c, 0, KTLSX_TLS12) <= 999);
    kxt_pair_free(&p);
}

/* The handoff blob carries the limit: an imported connection obeys and enforces it. */
static void test_rsl_export(void **state)
{
    (void)state;
    const uint16_t versions[] = { KTLSX_TLS13, KTLSX_TLS12 };
    for (size_t v = 0; v < 2; v++) {
        kxt_pair p = rsl_pair(versions[v], 700, 900);
        kxt_pump(&p);
        kxt_assert_done(&p);
        kxt_settle(&p);
        static uint8_t blob[KTLSX_EXPORT_MAX];
        const char *why = NULL;
        long n = ktlsx_conn_export(p.s, blob, sizeof blob, &why);
        if (n <= 0) fail_msg("export: %s", why ? why : "?");
        ktlsx_config *sc2 = kxt_server_cfg(NULL, NULL, NULL);
        ktlsx_conn *s2 = ktlsx_conn_import(sc2, blob, (size_t)n, &why);
        if (!s2) fail_msg("import: %s", why ? why : "?");
        size_t tx = versions[v] == KTLSX_TLS13 ? 699 : 700, rx = versions[v] == KTLSX_TLS13 ? 899 : 900;
        assert_int_equal(ktlsx_record_size_limit(s2, KTLSX_TX), tx);
        assert_int_equal(ktlsx_record_size_limit(s2, KTLSX_RX), rx);
        uint8_t d[3000] = { 0 };
        assert_int_equal(ktlsx_write(s2, d, sizeof d), 0);
        kxt_move_out(s2, &p.s2c);
        assert_int_equal(kxt_count_records(&p.s2c), (sizeof d + tx - 1) / tx);
        assert_true(largest_content(&p.s2c, 0, versions[v]) <= tx);
        kxt_deliver(p.c, &p.s2c);
        uint8_t got[3001];
        long last;
        assert_int_equal(kxt_drain_read(p.c, got, sizeof got, &last), sizeof d);
        /* Blob tampering: a limit for one side only, or below 64, is refused. */
        blob[n - 1] = 0;
        blob[n - 2] = 0;
        assert_null(ktlsx_conn_import(sc2, blob, (size_t)n, &why));
        assert_non_null(strstr(why, "record_size_limit"));
        blob[n - 2] = 0;
        blob[n - 1] = 63;
        assert_null(ktlsx_conn_import(sc2, blob, (size_t)n, &why));
        assert_non_null(strstr(why, "below 64"));
        ktlsx_conn_free(s2);
        ktlsx_config_free(sc2);
        kxt_pair_free(&p);
    }
}

/* The TLS 1.3 encrypted handshake flights already obey the limits. */
static void test_rsl_handshake_records(void **state)
{
    (void)state;
    kxt_pair p = rsl_pair(KTLSX_TLS13, 64, 100);
    kxt_server_flight_out(&p);
    /* Record 0 is the ServerHello, 1 the compatibility CCS, then protected records. */
    assert_true(kxt_count_records(&p.s2c) > 10); /* a certificate in 63-byte pieces */
    assert_true(largest_content(&p.s2c, 2, KTLSX_TLS13) <= 63);
    kxt_pump(&p);
    kxt_assert_done(&p);
    kxt_pair_free(&p);
}

/* A peer that ignores our limit: record_overflow. */
static void test_rsl_overflow(void **state)
{
    (void)state;
    const uint16_t versions[] = { KTLSX_TLS13, KTLSX_TLS12 };
    for (size_t v = 0; v < 2; v++) {
        kxt_pair p = rsl_pair(versions[v], 500, 0);
        kxt_pump(&p);
        kxt_assert_done(&p);
        kxt_settle(&p);
        p.s->tx.max_plain = 0; /* the server forgets the client's limit */
        uint8_t d[2000] = { 0 };
        assert_int_equal(ktlsx_write(p.s, d, sizeof d), 0);
        kxt_move_out(p.s, &p.s2c);
        kxt_deliver(p.c, &p.s2c);
        uint8_t got[2000];
        long r = ktlsx_read(p.c, got, sizeof got);
        assert_true(r < 0);
        assert_int_equal(ktlsx_alert(p.c), KX_ALERT_RECORD_OVERFLOW);
        kxt_pair_free(&p);
    }
}

/* Find record_size_limit (00 1c 00 02) in a plaintext hello on `w` and set its value. */
static void rsl_patch(kx_buf *w, uint16_t value)
{
    for (size_t i = 0; i + 6 <= w->len; i++) {
        if (w->data[i] == 0x00 && w->data[i + 1] == 0x1c && w->data[i + 2] == 0x00 && w->data[i + 3] == 0x02) {
            kxt_put16(w->data + i + 4, value);
            return;
        }
    }
    fail_msg("record_size_limit not found on the wire");
}

/* Illegal values: below 64 from a client (server side) and from a TLS 1.2 server (client side). */
static void test_rsl_illegal(void **state)
{
    (void)state;
    const uint16_t versions[] = { KTLSX_TLS13, KTLSX_TLS12 };
    for (size_t v = 0; v < 2; v++) {
        kxt_pair p = rsl_pair(versions[v], 1000, 0);
        kxt_client_hello_out(&p);
        rsl_patch(&p.c2s, 63);
        kxt_pump(&p);
        kxt_assert_failed(&p, false, KX_ALERT_ILLEGAL_PARAMETER);
        kxt_pair_free(&p);
    }
    kxt_pair p = rsl_pair(KTLSX_TLS12, 1000, 500);
    kxt_server_flight_out(&p);
    rsl_patch(&p.s2c, 0);
    kxt_pump(&p);
    kxt_assert_failed(&p, true, KX_ALERT_ILLEGAL_PARAMETER);
    kxt_pair_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_table),
        cmocka_unit_test(test_client_hello_collects),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_not_allowed_in_message),
        cmocka_unit_test(test_unknown_extension),
        cmocka_unit_test(test_unsolicited),
        cmocka_unit_test(test_psk_position),
        cmocka_unit_test(test_malformed_block),
        cmocka_unit_test(test_u16_list_kept),
        cmocka_unit_test(test_rsl_values),
        cmocka_unit_test(test_rsl_setter),
        cmocka_unit_test(test_rsl_negotiate),
        cmocka_unit_test(test_rsl_handshake_records),
        cmocka_unit_test(test_rsl_tls12_offer13),
        cmocka_unit_test(test_rsl_export),
        cmocka_unit_test(test_rsl_overflow),
        cmocka_unit_test(test_rsl_illegal),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
