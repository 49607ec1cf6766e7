/* Seed generator for the TLS 1.2 / resumption fuzz targets (not a fuzz
 * target itself: the Makefile builds only fuzz_*.c).  Runs real in-memory
 * handshakes between client and server engines, captures the plaintext
 * handshake messages (TLS 1.2: everything before ChangeCipherSpec; TLS 1.3:
 * the ClientHello), and writes them, with the mode byte of each target, to
 * tests/fuzz/corpus/<target>/.  Tickets are sealed under the fixed ticket key
 * file of fuzz_tls12.h with a ~136-year lifetime, so the resumption seeds keep
 * resuming.  Messages that are encrypted on the wire (NewSessionTicket) are
 * built by hand.
 *
 *   clang -std=c17 -g -D_GNU_SOURCE -Iinclude -Ilibktlsx -o build/gen_seeds12 \
 *       tests/fuzz/gen_seeds12.c $(find libktlsx -name "*.c" -not -path "libktlsx/preload*") -lcrypto -lpthread
 *   build/gen_seeds12 tests/fuzz/corpus
 */
#include "fuzz_tls12.h"
#include <errno.h>
#include <sys/stat.h>

static const char *out_root;
static char tmpdir[] = "/tmp/ktlsx-gen12-XXXXXX";
static char f_ca[256], f_cli[256], f_cli_key[256];

/* Captured handshake messages, per direction. */
typedef struct {
    kx_buf hs;       /* plaintext handshake bytes */
    bool ccs;        /* ChangeCipherSpec seen: the rest is encrypted */
} capture;

static void die(const char *what)
{
    fprintf(stderr, "gen_seeds12: %s\n", what);
    exit(1);
}

static void write_seed(const char *target, const char *name, uint8_t mode, const uint8_t *body, size_t len)
{
    char dir[512], path[640];
    snprintf(dir, sizeof dir, "%s/%s", out_root, target);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die(dir);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (len + 1 > 4096) die("seed too large");
    FILE *f = fopen(path, "wb");
    if (!f || fputc(mode, f) == EOF || (len && fwrite(body, 1, len, f) != len) || fclose(f) != 0) die(path);
}

static void take_records(capture *cap, const uint8_t *p, size_t n)
{
    while (n >= 5 && !cap->ccs) {
        size_t len = (size_t)p[3] << 8 | p[4];
        if (n < 5 + len) break;
        if (p[0] == 20) cap->ccs = true;
        else if (p[0] == 22 && kx_failed(kx_write_bytes(&cap->hs, p + 5, len))) die("oom");
        p += 5 + len, n -= 5 + len;
    }
}

/* Body of the k-th message of `type` (0-based), NULL if none. */
static const uint8_t *find_msg(const capture *cap, uint8_t type, int k, size_t *len)
{
    size_t off = 0;
    while (off + 4 <= cap->hs.len) {
        const uint8_t *m = cap->hs.data + off;
        size_t l = (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
        if (off + 4 + l > cap->hs.len) break;
        if (m[0] == type && k-- == 0) {
            *len = l;
            return m + 4;
        }
        off += 4 + l;
    }
    return NULL;
}

static bool move(ktlsx_conn *from, ktlsx_conn *to, capture *cap)
{
    const uint8_t *p;
    size_t n = ktlsx_pending_output(from, &p);
    if (!n) return false;
    take_records(cap, p, n);
    uint8_t *copy = malloc(n);
    memcpy(copy, p, n);
    ktlsx_output_done(from, n);
    (void)ktlsx_input(to, copy, n);
    free(copy);
    return true;
}

/* Handshake to the end (or to a failure); captures both directions.
 * Returns the client connection (still alive) for sessions; frees the server. */
static ktlsx_conn *run(ktlsx_config *ccfg, ktlsx_config *scfg, const uint8_t *sess, size_t sess_len, capture *c2s,
                       capture *s2c, bool must_succeed)
{
    ktlsx_conn *c = ktlsx_conn_new(ccfg, "localhost"), *s = ktlsx_conn_new(scfg, NULL);
    if (!c || !s) die("conn_new");
    if (sess && ktlsx_set_session(c, sess, sess_len) != 0) die("set_session");
    int cst = KTLSX_WANT_READ, sst = KTLSX_WANT_READ;
    for (int i = 0; i < 1000; i++) {
        if (cst == KTLSX_WANT_READ) cst = ktlsx_handshake(c);
        bool moved = move(c, s, c2s);
        if (sst == KTLSX_WANT_READ) sst = ktlsx_handshake(s);
        moved |= move(s, c, s2c);
        if (cst != KTLSX_WANT_READ && sst != KTLSX_WANT_READ && !moved) break;
        if (!moved && i > 2) break;
    }
    /* Post-handshake messages (TLS 1.3 tickets). */
    uint8_t buf[256];
    (void)ktlsx_read(c, buf, sizeof buf);
    if (must_succeed && (cst != KTLSX_DONE || sst != KTLSX_DONE)) {
        fprintf(stderr, "gen_seeds12: handshake failed: client %s / server %s\n", ktlsx_error(c), ktlsx_error(s));
        exit(1);
    }
    ktlsx_conn_free(s);
    return c;
}

static ktlsx_config *client_cfg(uint16_t min, uint16_t max, const char *ciphers, bool cert)
{
    ktlsx_config *cfg = fz_new_cfg(KTLSX_CLIENT);
    if (ktlsx_config_set_versions(cfg, min, max) != 0) fz_die("versions", cfg);
    if (ktlsx_config_set_ca_file(cfg, f_ca) != 0) fz_die("ca", cfg);
    ktlsx_config_set_insecure(cfg, 1); /* the RSA certificate is self-signed */
    if (ciphers && ktlsx_config_set_ciphers(cfg, ciphers) != 0) fz_die("ciphers", cfg);
    if (cert && ktlsx_config_add_cert(cfg, f_cli, f_cli_key) != 0) fz_die("client cert", cfg);
    if (ktlsx_config_set_alpn(cfg, "h2,http/1.1") != 0) fz_die("alpn", cfg);
    return cfg;
}

static void free_cap(capture *a, capture *b)
{
    kx_buf_free(&a->hs);
    kx_buf_free(&b->hs);
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
}

/* A session blob a client can resume from; ticket sealed by a server of scfg when seal. */
static size_t session_blob(ktlsx_config *scfg, uint16_t version, uint16_t suite, const uint8_t *sid, bool seal,
                           uint8_t *out, size_t cap)
{
    kx_session s = { 0 };
    s.version = version;
    s.suite = suite;
    s.secret_len = version == KTLSX_TLS12 ? 48 : (uint8_t)kx_hash_len(kx_suite_by_id(suite)->hash);
    memset(s.secret, 0x5a, s.secret_len);
    s.ems = true;
    s.issued_ms = kx_now_ms();
    s.lifetime = UINT32_MAX;
    s.age_add = 0x01020304;
    kx_copy_str(s.alpn, sizeof s.alpn, "h2");
    if (sid) {
        memcpy(s.session_id, sid, 32);
        s.session_id_len = 32;
    }
    if (seal) {
        ktlsx_conn *c = ktlsx_conn_new(scfg, NULL);
        kx_buf t = { 0 };
        if (!c || kx_failed(kx_ticket_seal(c, &s, &t))) die("seal");
        memcpy(s.ticket, t.data, t.len);
        s.ticket_len = (uint16_t)t.len;
        kx_buf_free(&t);
        ktlsx_conn_free(c);
    }
    kx_buf b = { 0 };
    if (kx_failed(kx_session_encode(&s, &b)) || b.len > cap) die("encode");
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    kx_buf_free(&b);
    return n;
}

static void vec1_pub(uint16_t group, kx_buf *out)
{
    EVP_PKEY *k = NULL;
    kx_buf pub = { 0 };
    if (kx_failed(kx_kex_keygen(group, &k, &pub)) || kx_failed(kx_write_vec(out, 1, pub.data, pub.len))) die("keygen");
    EVP_PKEY_free(k);
    kx_buf_free(&pub);
}

int main(int argc, char **argv)
{
    if (argc != 2) die("usage: gen_seeds12 CORPUS_DIR");
    out_root = argv[1];
    fz12_init();
    if (!mkdtemp(tmpdir)) die("mkdtemp");
    fz_write_file(tmpdir, "ca.pem", PEM_CA_PEM, f_ca, sizeof f_ca);
    fz_write_file(tmpdir, "cli.pem", PEM_CLI_PEM, f_cli, sizeof f_cli);
    fz_write_file(tmpdir, "cli.key", PEM_CLI_KEY, f_cli_key, sizeof f_cli_key);

    capture c2s = { 0 }, s2c = { 0 };
    const uint8_t *m;
    size_t len;
    ktlsx_conn *c;
    char name[64];

    /* 1. TLS 1.2 ECDHE-ECDSA with client authentication. */
    ktlsx_config *cli12 = client_cfg(KTLSX_TLS12, KTLSX_TLS12, "ECDHE-ECDSA-AES128-GCM-SHA256", true);
    c = run(cli12, fz12_srv12_req, NULL, 0, &c2s, &s2c, true);
    ktlsx_conn_free(c);
    if (!(m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len))) die("no CH");
    write_seed("fuzz_client_hello12", "real-ecdsa", 0, m, len);
    write_seed("fuzz_client_hello12", "real-ecdsa-req", 1, m, len);
    write_seed("fuzz_client_hello12", "real-12-to-13", 2, m, len);
    if (!(m = find_msg(&s2c, KX_HS_SERVER_KEY_EXCHANGE, 0, &len))) die("no SKE");
    for (int mode = 0; mode < 32; mode += 4) {
        snprintf(name, sizeof name, "real-ecdsa-%02x", mode);
        write_seed("fuzz_server_key_exchange", name, (uint8_t)mode, m, len);
    }
    /* Sign mode: hint, curve_type, group, point (from the real params). */
    {
        uint8_t sm[300];
        size_t plen = m[3];
        sm[0] = 0;
        memcpy(sm + 1, m, 3);
        memcpy(sm + 4, m + 4, plen);
        write_seed("fuzz_server_key_exchange", "sign-ecdsa-x25519", 2, sm, 4 + plen);
        write_seed("fuzz_server_key_exchange", "sign-ecdsa-x25519-ems", 0x12, sm, 4 + plen);
        for (uint8_t h = 0; h < 6; h++) {
            sm[0] = h;
            snprintf(name, sizeof name, "sign-rsa-x25519-%u", h);
            write_seed("fuzz_server_key_exchange", name, 3 | 4, sm, 4 + plen);
        }
        static const uint16_t groups[2] = { KX_GROUP_SECP256R1, KX_GROUP_SECP384R1 };
        for (int g = 0; g < 2; g++) {
            kx_buf p = { 0 };
            vec1_pub(groups[g], &p);
            sm[0] = 0;
            sm[1] = 3;
            sm[2] = (uint8_t)(groups[g] >> 8);
            sm[3] = (uint8_t)groups[g];
            memcpy(sm + 4, p.data + 1, p.len - 1);
            snprintf(name, sizeof name, "sign-ecdsa-%04x", groups[g]);
            write_seed("fuzz_server_key_exchange", name, 2 | 8, sm, 4 + p.len - 1);
            snprintf(name, sizeof name, "sign-rsa-%04x", groups[g]);
            write_seed("fuzz_server_key_exchange", name, 3 | 12, sm, 4 + p.len - 1);
            snprintf(name, sizeof name, "cke-%04x", groups[g]);
            write_seed("fuzz_client_key_exchange", name, (uint8_t)(1 + g), p.data, p.len);
            snprintf(name, sizeof name, "cke-%04x-ems", groups[g]);
            write_seed("fuzz_client_key_exchange", name, (uint8_t)(5 + g), p.data, p.len);
            kx_buf_free(&p);
        }
    }
    if (!(m = find_msg(&s2c, KX_HS_CERTIFICATE_REQUEST, 0, &len))) die("no CR");
    for (uint8_t mode = 0; mode < 4; mode++) {
        snprintf(name, sizeof name, "real-%u", mode);
        write_seed("fuzz_certificate_request12", name, mode, m, len);
    }
    if (!(m = find_msg(&c2s, KX_HS_CLIENT_KEY_EXCHANGE, 0, &len))) die("no CKE");
    write_seed("fuzz_client_key_exchange", "real-x25519", 0, m, len);
    write_seed("fuzz_client_key_exchange", "real-x25519-ems", 4, m, len);
    free_cap(&c2s, &s2c);

    /* 2. TLS 1.2 ECDHE-RSA. */
    ktlsx_config *cli12rsa = client_cfg(KTLSX_TLS12, KTLSX_TLS12, "ECDHE-RSA-AES256-GCM-SHA384", false);
    c = run(cli12rsa, fz12_srv12, NULL, 0, &c2s, &s2c, true);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "real-ecdhe-rsa", 0, m, len);
    if (!(m = find_msg(&s2c, KX_HS_SERVER_KEY_EXCHANGE, 0, &len))) die("no RSA SKE");
    write_seed("fuzz_server_key_exchange", "real-rsa", 1 | 12, m, len);
    write_seed("fuzz_server_key_exchange", "real-rsa-ems", 1 | 12 | 16, m, len);
    free_cap(&c2s, &s2c);

    /* 3. TLS 1.2 legacy RSA key exchange. */
    ktlsx_config *cli12kx = client_cfg(KTLSX_TLS12, KTLSX_TLS12, "AES128-GCM-SHA256", false);
    ktlsx_config_set_legacy_rsa_kx(cli12kx, 1);
    c = run(cli12kx, fz12_srv12, NULL, 0, &c2s, &s2c, true);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "real-rsa-kx", 0, m, len);
    if (!(m = find_msg(&c2s, KX_HS_CLIENT_KEY_EXCHANGE, 0, &len))) die("no RSA CKE");
    write_seed("fuzz_client_key_exchange", "real-rsa", 3, m, len);
    write_seed("fuzz_client_key_exchange", "real-rsa-ems", 7, m, len);
    {
        uint8_t pms[48] = { 3, 3 };
        for (int i = 2; i < 48; i++) pms[i] = (uint8_t)i;
        write_seed("fuzz_client_key_exchange", "rsa-pms-ok", 3 | 8, pms, 48);
        pms[1] = 1;
        write_seed("fuzz_client_key_exchange", "rsa-pms-badver", 3 | 8, pms, 48);
        write_seed("fuzz_client_key_exchange", "rsa-pms-short", 3 | 8 | 4, pms, 47);
    }
    free_cap(&c2s, &s2c);

    /* 4. TLS 1.2 resumption: ticket (fixed key, long lifetime), and session ID from the cache. */
    uint8_t blob[4096];
    size_t blen = session_blob(fz12_srv12, KTLSX_TLS12, FZ12_ECDHE_ECDSA_AES128, NULL, true, blob, sizeof blob);
    ktlsx_config *cli12any = client_cfg(KTLSX_TLS12, KTLSX_TLS12, NULL, false);
    c = run(cli12any, fz12_srv12, blob, blen, &c2s, &s2c, false);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "resume-ticket", 0, m, len);
    write_seed("fuzz_client_hello12", "resume-ticket-req", 1, m, len);
    free_cap(&c2s, &s2c);
    blen = session_blob(fz12_srv12, KTLSX_TLS12, FZ12_ECDHE_ECDSA_AES128, fz12_sid_ems, false, blob, sizeof blob);
    c = run(cli12any, fz12_srv12, blob, blen, &c2s, &s2c, false);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "resume-id", 0, m, len);
    free_cap(&c2s, &s2c);
    blen = session_blob(fz12_srv12, KTLSX_TLS12, FZ12_ECDHE_ECDSA_AES128, fz12_sid_noems, false, blob, sizeof blob);
    c = run(cli12any, fz12_srv12, blob, blen, &c2s, &s2c, false);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "resume-id-noems", 0, m, len);
    free_cap(&c2s, &s2c);

    /* 5. Fallback SCSV from a TLS 1.2-only client to a 1.3 server. */
    ktlsx_config *cli12fb = client_cfg(KTLSX_TLS12, KTLSX_TLS12, NULL, false);
    ktlsx_config_set_fallback_scsv(cli12fb, 1);
    c = run(cli12fb, fz12_srv13_psk, NULL, 0, &c2s, &s2c, false);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "fallback-scsv", 2, m, len);
    write_seed("fuzz_client_hello12", "fallback-scsv-12", 0, m, len);
    free_cap(&c2s, &s2c);

    /* 6. TLS 1.3 external PSK (SHA-256 and SHA-384). */
    ktlsx_config *clipsk = client_cfg(KTLSX_TLS12, KTLSX_TLS13, NULL, false);
    if (ktlsx_config_set_psk(clipsk, fz12_psk_identity, fz12_psk, 32, 0) != 0) die("psk");
    c = run(clipsk, fz12_srv13_psk, NULL, 0, &c2s, &s2c, true);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "psk-ext", 2, m, len);
    write_seed("fuzz_client_hello12", "psk-ext-fix", 3, m, len);
    free_cap(&c2s, &s2c);
    ktlsx_config *clipsk384 = client_cfg(KTLSX_TLS13, KTLSX_TLS13, "TLS_AES_256_GCM_SHA384", false);
    if (ktlsx_config_set_psk(clipsk384, fz12_psk_identity, fz12_psk, 48, 1) != 0) die("psk384");
    c = run(clipsk384, fz12_srv13_psk384, NULL, 0, &c2s, &s2c, true);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "psk-ext384-fix", 4, m, len);
    free_cap(&c2s, &s2c);

    /* 7. TLS 1.3 resumption ticket (sealed under the fixed key). */
    blen = session_blob(fz12_srv13_psk, KTLSX_TLS13, 0x1301, NULL, true, blob, sizeof blob);
    ktlsx_config *cli13 = client_cfg(KTLSX_TLS12, KTLSX_TLS13, NULL, false);
    c = run(cli13, fz12_srv13_psk, blob, blen, &c2s, &s2c, false);
    ktlsx_conn_free(c);
    m = find_msg(&c2s, KX_HS_CLIENT_HELLO, 0, &len);
    write_seed("fuzz_client_hello12", "psk-ticket", 2, m, len);
    write_seed("fuzz_client_hello12", "psk-ticket-fix", 3, m, len);
    free_cap(&c2s, &s2c);

    /* NewSessionTicket (encrypted on the wire: built by hand). */
    {
        kx_session s = { 0 };
        s.version = KTLSX_TLS12;
        s.suite = FZ12_ECDHE_ECDSA_AES128;
        s.secret_len = 48;
        s.ems = true;
        s.issued_ms = kx_now_ms();
        s.lifetime = 7200;
        ktlsx_conn *sc = ktlsx_conn_new(fz12_srv12, NULL);
        kx_buf t = { 0 }, nst = { 0 };
        if (!sc || kx_failed(kx_ticket_seal(sc, &s, &t))) die("seal");
        if (kx_failed(kx_write_u32(&nst, 7200)) || kx_failed(kx_write_vec(&nst, 2, t.data, t.len))) die("nst");
        write_seed("fuzz_new_session_ticket12", "ticket", 0, nst.data, nst.len);
        write_seed("fuzz_new_session_ticket12", "ticket-replace", 1, nst.data, nst.len);
        write_seed("fuzz_new_session_ticket12", "empty", 1, (const uint8_t *)"\0\0\x1c\x20\0\0", 6);
        /* fuzz_ticket: raw ticket, the part after the key name, a session blob. */
        write_seed("fuzz_ticket", "raw-ticket", 1, t.data, t.len);
        write_seed("fuzz_ticket", "after-name", 2, t.data + KX_TICKET_KEY_NAME, t.len - KX_TICKET_KEY_NAME);
        kx_buf_free(&t);
        kx_buf_free(&nst);
        ktlsx_conn_free(sc);
        blen = session_blob(fz12_srv12, KTLSX_TLS12, FZ12_ECDHE_ECDSA_AES128, fz12_sid_ems, false, blob, sizeof blob);
        write_seed("fuzz_ticket", "blob-12", 0, blob, blen);
        write_seed("fuzz_ticket", "blob-12-cache", 4, blob, blen);
        blen = session_blob(fz12_srv13_psk, KTLSX_TLS13, 0x1302, NULL, true, blob, sizeof blob);
        write_seed("fuzz_ticket", "blob-13", 0, blob, blen);
        write_seed("fuzz_ticket", "seal-13", 3, blob, blen);
        write_seed("fuzz_ticket", "seal-small", 3, (const uint8_t *)"\x03\x2f\x01\x20secret\0h2\0CN=x\0tk", 20);
    }

    ktlsx_config_free(cli12);
    ktlsx_config_free(cli12rsa);
    ktlsx_config_free(cli12kx);
    ktlsx_config_free(cli12any);
    ktlsx_config_free(cli12fb);
    ktlsx_config_free(clipsk);
    ktlsx_config_free(clipsk384);
    ktlsx_config_free(cli13);
    unlink(f_ca);
    unlink(f_cli);
    unlink(f_cli_key);
    rmdir(tmpdir);
    return 0;
}
