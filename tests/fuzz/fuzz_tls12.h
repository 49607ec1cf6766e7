/* Shared setup for the TLS 1.2 / resumption fuzz targets
 * (fuzz_server_key_exchange, fuzz_client_key_exchange,
 * fuzz_certificate_request12, fuzz_new_session_ticket12, fuzz_ticket,
 * fuzz_client_hello12) and for gen_seeds12.c, which makes their seeds.
 *
 * On top of fuzz_common.h (fixed ECDSA PKI):
 *   - an RSA-2048 key generated once per process, and a self-signed RSA
 *     certificate (CN=localhost) for it, for ECDHE_RSA and legacy RSA kx;
 *   - the ECDSA private key of srv.pem, to sign ServerKeyExchange params;
 *   - a fixed ticket key file (nginx 48-byte layout), so that tickets sealed
 *     by gen_seeds12 open in the targets on any machine, whenever;
 *   - a fixed external PSK;
 *   - the server configurations of fuzz_client_hello12 / fuzz_ticket. */
#ifndef KTLSX_FUZZ_TLS12_H
#define KTLSX_FUZZ_TLS12_H

#include "fuzz_common.h"
#include "session/session.h"
#include <openssl/rsa.h>
#include <time.h>

/* Cipher suites (IANA). */
#define FZ12_ECDHE_ECDSA_AES128 0xc02b
#define FZ12_ECDHE_ECDSA_AES256 0xc02c
#define FZ12_ECDHE_RSA_AES128 0xc02f
#define FZ12_ECDHE_RSA_AES256 0xc030
#define FZ12_RSA_AES128 0x009c

/* Deterministic 48-byte ticket key file: 16-byte name, then key material. */
static const uint8_t fz12_ticket_key_file[48] = "ktlsx-fuzz-tkey0"
                                                "0123456789abcdef0123456789abcdef";
/* External PSK (TLS 1.3). */
static const char fz12_psk_identity[] = "ktlsx-fuzz-psk";
static const uint8_t fz12_psk[48] = {
    0x50, 0x53, 0x4b, 0x21, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
    0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c,
    0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
};
/* Session IDs pre-loaded into the TLS 1.2 server's session cache: the first
 * with EMS (resumable), the second without (must not resume). */
static const uint8_t fz12_sid_ems[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
static const uint8_t fz12_sid_noems[32] = {
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
};
/* Fixed handshake randoms of the per-message targets. */
static const uint8_t fz12_client_random[32] = "ktlsx fuzz client random 0123456";
static const uint8_t fz12_server_random[32] = "ktlsx fuzz server random 0123456";

static EVP_PKEY *fz12_rsa;           /* RSA-2048 private key (generated) */
static EVP_PKEY *fz12_ec;            /* private key of srv.pem */
static kx_certkey fz12_rsa_ck;       /* only .key set: what ClientKeyExchange (RSA) uses */
static ktlsx_config *fz12_srv12;     /* TLS 1.2 only server: ECDSA + RSA certs, legacy RSA kx, cache, tickets */
static ktlsx_config *fz12_srv12_req; /* the same with verify-client require */
static ktlsx_config *fz12_srv13_psk; /* TLS 1.3 + 1.2 server: ECDSA cert, external PSK (SHA-256), tickets, psk_ke */
static ktlsx_config *fz12_srv13_psk384; /* external PSK bound to SHA-384, no certificate */
static ktlsx_config *fz12_srv_rotated;  /* server whose ticket keys were rotated once (random) */

FZ_UNUSED static EVP_PKEY *fz12_pem_privkey(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!k) fz_die("cannot parse embedded private key", NULL);
    return k;
}

/* Self-signed certificate for fz12_rsa, written with its key to dir. */
FZ_UNUSED static void fz12_write_rsa(const char *dir, char *cert, char *key, size_t cap)
{
    X509 *x = X509_new();
    if (!x) abort();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, fz12_rsa);
    if (!X509_sign(x, fz12_rsa, EVP_sha256())) fz_die("sign RSA certificate", NULL);
    snprintf(cert, cap, "%s/rsa.pem", dir);
    snprintf(key, cap, "%s/rsa.key", dir);
    FILE *f = fopen(cert, "w");
    if (!f || !PEM_write_X509(f, x) || fclose(f) != 0) fz_die(cert, NULL);
    f = fopen(key, "w");
    if (!f || !PEM_write_PrivateKey(f, fz12_rsa, NULL, NULL, 0, NULL, NULL) || fclose(f) != 0) fz_die(key, NULL);
    X509_free(x);
}

FZ_UNUSED static void fz12_cache_session(ktlsx_config *cfg, const uint8_t *sid, bool ems)
{
    kx_session s = { 0 };
    s.version = KTLSX_TLS12;
    s.suite = FZ12_ECDHE_ECDSA_AES128;
    memset(s.secret, 0x5a, 48);
    s.secret_len = 48;
    s.ems = ems;
    memcpy(s.session_id, sid, 32);
    s.session_id_len = 32;
    s.issued_ms = kx_now_ms();
    s.lifetime = 7200;
    kx_copy_str(s.peer_subject, sizeof s.peer_subject, "CN=ktlsx-fuzz-client");
    kx_session_cache_put(cfg->session_cache, &s);
}

FZ_UNUSED static void fz12_init(void)
{
    static int done;
    if (done) return;
    done = 1;
    fz_init();
    fz12_rsa = EVP_RSA_gen(2048);
    if (!fz12_rsa) fz_die("RSA key generation", NULL);
    fz12_ec = fz12_pem_privkey(PEM_SRV_KEY);
    if (!EVP_PKEY_up_ref(fz12_rsa)) abort();
    fz12_rsa_ck.key = fz12_rsa;

    char dir[] = "/tmp/ktlsx-fuzz12-XXXXXX";
    if (!mkdtemp(dir)) fz_die("mkdtemp", NULL);
    char ca[256], srv[256], srv_key[256], rsa[256], rsa_key[256], tkey[256];
    fz_write_file(dir, "ca.pem", PEM_CA_PEM, ca, sizeof ca);
    fz_write_file(dir, "srv.pem", PEM_SRV_PEM, srv, sizeof srv);
    fz_write_file(dir, "srv.key", PEM_SRV_KEY, srv_key, sizeof srv_key);
    fz12_write_rsa(dir, rsa, rsa_key, sizeof rsa);
    snprintf(tkey, sizeof tkey, "%s/ticket.key", dir);
    FILE *f = fopen(tkey, "wb");
    if (!f || fwrite(fz12_ticket_key_file, 1, sizeof fz12_ticket_key_file, f) != sizeof fz12_ticket_key_file ||
        fclose(f) != 0)
        fz_die(tkey, NULL);

    ktlsx_config *s12[2];
    for (int i = 0; i < 2; i++) {
        ktlsx_config *cfg = s12[i] = fz_new_cfg(KTLSX_SERVER);
        if (ktlsx_config_set_versions(cfg, KTLSX_TLS12, KTLSX_TLS12) != 0) fz_die("versions", cfg);
        if (ktlsx_config_add_cert(cfg, srv, srv_key) != 0) fz_die("server cert", cfg);
        if (ktlsx_config_add_cert(cfg, rsa, rsa_key) != 0) fz_die("server RSA cert", cfg);
        if (ktlsx_config_set_legacy_rsa_kx(cfg, 1) != 0) fz_die("legacy rsa", cfg);
        if (ktlsx_config_set_alpn(cfg, "http/1.1,h2") != 0) fz_die("alpn", cfg);
        if (ktlsx_config_set_session_cache(cfg, 16, 7 * 86400) != 0) fz_die("cache", cfg);
        if (ktlsx_config_set_tickets(cfg, 1, 7200) != 0) fz_die("tickets", cfg);
        if (ktlsx_config_add_ticket_key_file(cfg, tkey) != 0) fz_die("ticket key", cfg);
        fz12_cache_session(cfg, fz12_sid_ems, true);
        fz12_cache_session(cfg, fz12_sid_noems, false);
    }
    fz12_srv12 = s12[0];
    fz12_srv12_req = s12[1];
    if (ktlsx_config_set_ca_file(fz12_srv12_req, ca) != 0) fz_die("ca", fz12_srv12_req);
    if (ktlsx_config_set_verify_client(fz12_srv12_req, KTLSX_VERIFY_REQUIRE) != 0) fz_die("verify", fz12_srv12_req);

    fz12_srv13_psk = fz_new_cfg(KTLSX_SERVER);
    if (ktlsx_config_add_cert(fz12_srv13_psk, srv, srv_key) != 0) fz_die("server cert", fz12_srv13_psk);
    if (ktlsx_config_set_psk(fz12_srv13_psk, fz12_psk_identity, fz12_psk, 32, 0) != 0) fz_die("psk", fz12_srv13_psk);
    if (ktlsx_config_set_psk_ke(fz12_srv13_psk, 1) != 0) fz_die("psk_ke", fz12_srv13_psk);
    if (ktlsx_config_add_ticket_key_file(fz12_srv13_psk, tkey) != 0) fz_die("ticket key", fz12_srv13_psk);
    if (ktlsx_config_set_alpn(fz12_srv13_psk, "http/1.1,h2") != 0) fz_die("alpn", fz12_srv13_psk);

    fz12_srv13_psk384 = fz_new_cfg(KTLSX_SERVER);
    if (ktlsx_config_set_versions(fz12_srv13_psk384, KTLSX_TLS13, KTLSX_TLS13) != 0) fz_die("versions", NULL);
    if (ktlsx_config_set_psk(fz12_srv13_psk384, fz12_psk_identity, fz12_psk, 48, 1) != 0)
        fz_die("psk", fz12_srv13_psk384);

    fz12_srv_rotated = fz_new_cfg(KTLSX_SERVER);
    if (ktlsx_config_rotate_ticket_keys(fz12_srv_rotated) != 0) fz_die("rotate", fz12_srv_rotated);

    unlink(ca);
    unlink(srv);
    unlink(srv_key);
    unlink(rsa);
    unlink(rsa_key);
    unlink(tkey);
    rmdir(dir);
}

/* A TLS 1.2 connection in the middle of a handshake: version, suite,
 * transcript hash and the fixed randoms set.  Caller frees. */
FZ_UNUSED static ktlsx_conn *fz12_conn(ktlsx_config *cfg, uint16_t suite, bool ems)
{
    ktlsx_conn *c = ktlsx_conn_new(cfg, cfg->role == KTLSX_CLIENT ? "localhost" : NULL);
    if (!c) abort();
    c->version = KTLSX_TLS12;
    c->suite = kx_suite_by_id(suite);
    if (!c->suite) abort();
    c->ems = ems;
    memcpy(c->client_random, fz12_client_random, 32);
    memcpy(c->server_random, fz12_server_random, 32);
    kx_result r = kx_transcript_set_hash(&c->transcript, c->suite->hash);
    if (kx_failed(r)) abort();
    kx_flow_rebuild(c);
    return c;
}

/* Move the flow to message m (the one about to be handled). */
FZ_UNUSED static void fz12_flow_at(ktlsx_conn *c, kx_msg m)
{
    c->flow_pos = 0;
    while (c->flow[c->flow_pos] != m && c->flow[c->flow_pos] != KX_MSG_END) c->flow_pos++;
}

#endif
