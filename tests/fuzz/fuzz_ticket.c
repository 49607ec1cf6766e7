/* Session blobs and session tickets: kx_session_decode, kx_ticket_open,
 * kx_ticket_seal and the session-ID cache.
 *
 * Input: byte 0 selects the mode, the rest is the data.
 *   mode % 5 == 0: kx_session_decode on the rest (the --sess-in blob); a
 *                  decoded session must re-encode and decode to the same
 *                  fields
 *   mode % 5 == 1: kx_ticket_open on the rest as a ticket (server whose ticket
 *                  keys were rotated once at start-up: random key)
 *   mode % 5 == 2: the same with the current key name prepended, so that the
 *                  input reaches the AEAD (nonce || ciphertext || tag)
 *   mode % 5 == 3: a kx_session built from the rest is sealed with
 *                  kx_ticket_seal and opened again with kx_ticket_open: it must
 *                  open and round-trip field by field; a one-bit flip chosen
 *                  by the input must then make it fail to open
 *   mode % 5 == 4: a decoded session (as mode 0) goes through a small
 *                  session-ID cache: put, then get by its ID must return it */
#include "fuzz_tls12.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz12_init();
    return 0;
}

static bool same_session(const kx_session *a, const kx_session *b)
{
    return a->version == b->version && a->suite == b->suite && a->secret_len == b->secret_len &&
           memcmp(a->secret, b->secret, a->secret_len) == 0 && a->ems == b->ems &&
           a->session_id_len == b->session_id_len && memcmp(a->session_id, b->session_id, a->session_id_len) == 0 &&
           a->issued_ms == b->issued_ms && a->lifetime == b->lifetime && a->age_add == b->age_add &&
           a->ticket_len == b->ticket_len && memcmp(a->ticket, b->ticket, a->ticket_len) == 0 &&
           strcmp(a->alpn, b->alpn) == 0 && strcmp(a->peer_subject, b->peer_subject) == 0;
}

static void check_decode_roundtrip(const uint8_t *in, size_t n, bool via_cache)
{
    kx_session s, back;
    if (kx_failed(kx_session_decode(in, n, &s))) return;
    if (s.secret_len < 1 || s.secret_len > sizeof s.secret || s.session_id_len > sizeof s.session_id ||
        s.ticket_len > sizeof s.ticket || strlen(s.alpn) >= sizeof s.alpn ||
        strlen(s.peer_subject) >= sizeof s.peer_subject)
        abort();
    kx_buf b = { 0 };
    if (kx_failed(kx_session_encode(&s, &b))) abort();
    kx_result r = kx_session_decode(b.data, b.len, &back);
    if (kx_failed(r) || !same_session(&s, &back)) {
        fprintf(stderr, "fuzz: session does not round-trip: %s\n", kx_failed(r) ? r.reason : "fields differ");
        abort();
    }
    kx_buf_free(&b);
    if (via_cache) {
        kx_session_cache *sc = kx_session_cache_new(2, 3600);
        if (!sc) abort();
        s.issued_ms = kx_now_ms(); /* fresh, whatever the blob said */
        kx_session_cache_put(sc, &s);
        kx_session got;
        bool found = kx_session_cache_get(sc, s.session_id, s.session_id_len, &got);
        if (found != (s.session_id_len > 0)) abort();
        if (found && !same_session(&s, &got)) abort();
        /* A different ID must not match. */
        uint8_t other[32];
        memcpy(other, s.session_id, s.session_id_len);
        if (s.session_id_len) {
            other[0] ^= 1;
            if (kx_session_cache_get(sc, other, s.session_id_len, &got)) abort();
        }
        kx_session_cache_free(sc);
    }
    kx_session_wipe(&s);
    kx_session_wipe(&back);
}

static void open_ticket(ktlsx_conn *c, const uint8_t *t, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1); /* exactly sized: no read past the ticket */
    if (!copy) abort();
    if (n) memcpy(copy, t, n);
    kx_session s;
    if (kx_ticket_open(&c->cfg->tickets, copy, n, &s)) {
        if (kx_suite_by_id(s.suite) == NULL || s.secret_len > sizeof s.secret) abort();
        kx_session_wipe(&s);
    }
    free(copy);
}

/* Session fields from the input, shaped so that it is a valid session. */
static void session_from(const uint8_t *in, size_t n, kx_session *s)
{
    static const uint16_t suites[] = { 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02c, 0xc02f, 0xc030, 0xcca9, 0xcca8, 0x009c, 0x009d };
    kx_reader r = kx_reader_of(in, n);
    uint8_t b[8] = { 0 };
    memset(s, 0, sizeof *s);
    (void)kx_read_copy(&r, b, 8);
    const kx_suite *suite = kx_suite_by_id(suites[b[0] % (sizeof suites / sizeof suites[0])]);
    if (!suite) suite = kx_suite_by_id(0x1301);
    s->suite = suite->id;
    s->version = suite->version;
    s->secret_len = (uint8_t)(1 + b[1] % 48);
    s->ems = b[2] & 1;
    s->session_id_len = (uint8_t)(b[3] % 33);
    s->age_add = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
    s->lifetime = 3600 + b[4];
    s->issued_ms = kx_now_ms() - b[5];
    size_t left = kx_reader_left(&r);
    const uint8_t *p = kx_reader_ptr(&r);
    size_t take = left < s->secret_len ? left : s->secret_len;
    memcpy(s->secret, p, take);
    p += take, left -= take;
    take = left < s->session_id_len ? left : s->session_id_len;
    memcpy(s->session_id, p, take);
    p += take, left -= take;
    /* Strings: up to a zero byte (the encoding carries strlen bytes). */
    size_t i = 0;
    while (left && i < sizeof s->alpn - 1 && *p) s->alpn[i++] = (char)*p++, left--;
    if (left) p++, left--;
    i = 0;
    while (left && i < sizeof s->peer_subject - 1 && *p) s->peer_subject[i++] = (char)*p++, left--;
    if (left) p++, left--;
    take = left < 1024 ? left : 1024; /* the rest is the (inner) ticket */
    memcpy(s->ticket, p, take);
    s->ticket_len = (uint16_t)take;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384) return 0;
    uint8_t mode = data[0] % 5;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    if (mode == 0 || mode == 4) {
        check_decode_roundtrip(in, n, mode == 4);
        return 0;
    }
    ktlsx_conn *c = ktlsx_conn_new(fz12_srv_rotated, NULL);
    if (!c) abort();
    if (mode == 1) {
        open_ticket(c, in, n);
    } else if (mode == 2) {
        uint8_t *t = malloc(KX_TICKET_KEY_NAME + n);
        if (!t) abort();
        memcpy(t, fz12_srv_rotated->tickets.keys[0].name, KX_TICKET_KEY_NAME);
        if (n) memcpy(t + KX_TICKET_KEY_NAME, in, n);
        open_ticket(c, t, KX_TICKET_KEY_NAME + n);
        free(t);
    } else {
        kx_session s, back;
        session_from(in, n, &s);
        kx_buf t = { 0 };
        kx_result r = kx_ticket_seal(&c->cfg->tickets, &s, &t);
        if (kx_failed(r)) abort();
        if (!kx_ticket_open(&c->cfg->tickets, t.data, t.len, &back)) {
            fprintf(stderr, "fuzz: a sealed ticket does not open\n");
            abort();
        }
        if (!same_session(&s, &back)) {
            fprintf(stderr, "fuzz: ticket does not round-trip\n");
            abort();
        }
        /* Any flipped bit must make it fail (key name, nonce, ciphertext or tag). */
        size_t bit = n ? (size_t)in[n - 1] * 131 % (t.len * 8) : 0;
        t.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kx_ticket_open(&c->cfg->tickets, t.data, t.len, &back)) {
            fprintf(stderr, "fuzz: a tampered ticket opens (bit %zu)\n", bit);
            abort();
        }
        kx_buf_free(&t);
        kx_session_wipe(&s);
        kx_session_wipe(&back);
    }
    ktlsx_conn_free(c);
    return 0;
}
