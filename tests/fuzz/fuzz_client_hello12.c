/* ClientHello, as handled by servers with TLS 1.2 and resumption features:
 * TLS 1.2 version/suite/certificate/group selection, session-ID cache and
 * ticket resumption, renegotiation_info, extended master secret, fallback
 * SCSV, and TLS 1.3 external PSKs / resumption tickets (choose_psk, binders).
 *
 * Input: byte 0 selects the mode, the rest is a ClientHello body.
 *   mode % 5 == 0: TLS 1.2-only server (ECDSA + RSA certificates, legacy RSA
 *                  kx, session cache pre-loaded with the IDs fz12_sid_ems /
 *                  fz12_sid_noems, tickets under the fixed key file, ALPN)
 *   mode % 5 == 1: the same with verify-client require
 *   mode % 5 == 2: TLS 1.3 + 1.2 server with an external PSK (SHA-256),
 *                  tickets under the fixed key file, psk_ke allowed
 *   mode % 5 == 3: the same, but before the message is handled the harness
 *                  fixes up the pre_shared_key extension: for each identity it
 *                  can use (the external PSK, or a ticket that opens) the
 *                  obfuscated ticket age is set to the true age and the binder
 *                  is recomputed, so that mutated hellos still get past the
 *                  binder check
 *   mode % 5 == 4: the same fix-up on a TLS 1.3-only, certificate-less server
 *                  whose external PSK is bound to SHA-384
 * After a successful ClientHello the server's flight is written as drive()
 * would (ktlsx_handshake until it waits for the client). */
#include "fuzz_tls12.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz12_init();
    return 0;
}

/* Offsets (in the body) of what the fix-up rewrites. */
static void fix_psk(ktlsx_conn *c, uint8_t *body, size_t n)
{
    const ktlsx_config *cfg = c->cfg;
    kx_reader r = kx_reader_of(body, n), v, exts;
    uint16_t u16;
    if (kx_failed(kx_read_u16(&r, &u16)) || kx_failed(kx_read_bytes(&r, 32, &(const uint8_t *){ 0 })) ||
        kx_failed(kx_read_vec(&r, 1, 0, 32, &v)) || kx_failed(kx_read_vec(&r, 2, 0, 65535, &v)) ||
        kx_failed(kx_read_vec(&r, 1, 0, 255, &v)) || kx_failed(kx_read_vec(&r, 2, 0, 65535, &exts)))
        return;
    kx_reader psk = { 0 };
    bool found = false;
    while (kx_reader_left(&exts)) {
        uint16_t type;
        kx_reader data;
        if (kx_failed(kx_read_u16(&exts, &type)) || kx_failed(kx_read_vec(&exts, 2, 0, 65535, &data))) return;
        if (type == 41) {
            psk = data;
            found = true;
        }
    }
    if (!found) return;
    kx_reader ids, binders;
    if (kx_failed(kx_read_vec(&psk, 2, 0, 65535, &ids))) return;
    size_t binders_off = (size_t)(kx_reader_ptr(&psk) - body);
    if (kx_failed(kx_read_vec(&psk, 2, 0, 65535, &binders))) return;

    struct {
        uint8_t secret[64];
        size_t len;
        kx_hash_id hash;
        bool external, usable;
    } keys[8] = { 0 };
    size_t count = 0;
    while (kx_reader_left(&ids) && count < 8) {
        kx_reader id;
        if (kx_failed(kx_read_vec(&ids, 2, 0, 65535, &id))) break;
        if (kx_reader_left(&ids) < 4) break;
        uint8_t *age = body + (kx_reader_ptr(&ids) - body);
        (void)kx_read_u32(&ids, &(uint32_t){ 0 });
        kx_session s;
        if (cfg->psk_len && id.len == strlen(cfg->psk_identity) && memcmp(id.data, cfg->psk_identity, id.len) == 0) {
            memcpy(keys[count].secret, cfg->psk, cfg->psk_len);
            keys[count].len = cfg->psk_len;
            keys[count].hash = cfg->psk_hash;
            keys[count].external = keys[count].usable = true;
        } else if (id.len && kx_ticket_open(&c->cfg->tickets, id.data, id.len, &s)) {
            const kx_suite *suite = kx_suite_by_id(s.suite);
            uint32_t a = (uint32_t)(kx_now_ms() - s.issued_ms) + s.age_add;
            age[0] = (uint8_t)(a >> 24), age[1] = (uint8_t)(a >> 16), age[2] = (uint8_t)(a >> 8), age[3] = (uint8_t)a;
            memcpy(keys[count].secret, s.secret, s.secret_len);
            keys[count].len = s.secret_len;
            keys[count].hash = suite ? suite->hash : KX_HASH_SHA256;
            keys[count].usable = true;
            kx_session_wipe(&s);
        }
        count++;
    }
    /* The binders hash covers the message header and the body up to them. */
    size_t mlen;
    uint8_t *m = fz_message(KX_HS_CLIENT_HELLO, body, n, &mlen);
    for (size_t i = 0; i < count && kx_reader_left(&binders); i++) {
        kx_reader b;
        if (kx_failed(kx_read_vec(&binders, 1, 0, 255, &b))) break;
        if (!keys[i].usable || b.len != kx_hash_len(keys[i].hash)) continue;
        uint8_t value[KX_MAX_HASH];
        kx_result res = kx_psk_binder(c, keys[i].hash, keys[i].secret, keys[i].len, keys[i].external, m,
                                      4 + binders_off, value);
        if (!kx_failed(res)) memcpy(body + (b.data - body), value, b.len);
    }
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    uint8_t mode = data[0] % 5;
    static ktlsx_config **const cfgs[5] = { &fz12_srv12, &fz12_srv12_req, &fz12_srv13_psk, &fz12_srv13_psk,
                                            &fz12_srv13_psk384 };
    ktlsx_conn *c = ktlsx_conn_new(*cfgs[mode], NULL);
    if (!c) abort();
    size_t n = size - 1;
    uint8_t *body = malloc(n ? n : 1);
    if (!body) abort();
    if (n) memcpy(body, data + 1, n);
    if (mode >= 3) fix_psk(c, body, n);

    /* ClientHello handler adds the message to the transcript itself. */
    fz_run_handler(c, kx_client_hello_handle, KX_HS_CLIENT_HELLO, body, n, 0);
    if (!c->failed) {
        if (c->version == KTLSX_TLS12 && (!c->suite || c->suite->version != KTLSX_TLS12)) abort();
        if (c->resumed && c->version == KTLSX_TLS12 && !c->ems) abort(); /* RFC 7627 §5.3 */
        c->flow_pos = 1;
        (void)ktlsx_handshake(c);
        fz_drain(c);
    }
    ktlsx_conn_free(c);
    free(body);
    return 0;
}
