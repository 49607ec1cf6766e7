/* Shared setup for the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Each target is one translation unit compiled together with every libktlsx
 * source, so the targets may reach into the engine's internal state
 * (handshake/conn.h) and call message handlers directly.
 *
 * The test PKI is fixed (embedded below) so that seeds captured from a real
 * handshake keep verifying and a crash reproduces on any machine:
 *   ca.pem    ECDSA P-256 root, CN=ktlsx fuzz CA
 *   srv.pem   ECDSA P-256 leaf, CN=localhost, SAN DNS:localhost,IP:127.0.0.1
 *   cli.pem   ECDSA P-256 leaf, CN=ktlsx-fuzz-client, EKU clientAuth
 * (validity 2026-11-23 .. 2126-10-30).  The PEM files are written to a
 * temporary directory at start-up, loaded into long-lived configurations,
 * and removed again. */
#ifndef KTLSX_FUZZ_COMMON_H
#define KTLSX_FUZZ_COMMON_H

#include "handshake/conn.h"
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_UNUSED __attribute__((unused))

static const char PEM_CA_PEM[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBYjCCAQmgAwIBAgIBATAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1rdGxzeCBm\n"
    "dXp6IENBMCAXDTI2MTEyMzAwMjEyN1oYDzIxMjYxMDMwMDAyMTI3WjAYMRYwFAYD\n"
    "VQQDDA1rdGxzeCBmdXp6IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEN/u+\n"
    "+WVIT5L+BGlAkgLeJZe182vgfINkrjUUSpDAoFbLXZxRjHEF39/QhdbuQhOx0BUd\n"
    "BuRLsOIQRkvtsR3cR6NCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC\n"
    "AQYwHQYDVR0OBBYEFGcK5B1EHjSkP0nWlEFCAF2LXDFxMAoGCCqGSM49BAMCA0cA\n"
    "MEQCIA6yP6PZ84O5p7DumLHVn/P8PwexkEt1JjJvQ5V13xLwAiBAdEO7WuYWEC2u\n"
    "zX68Us/KAvTRIn9RgyXEEsNf4ZsxvQ==\n"
    "-----END CERTIFICATE-----\n"
    ;
static const char PEM_SRV_PEM[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBujCCAWCgAwIBAgIBAjAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1rdGxzeCBm\n"
    "dXp6IENBMCAXDTI2MTEyMzAwMjEyN1oYDzIxMjYxMDMwMDAyMTI3WjAUMRIwEAYD\n"
    "VQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATquez5rSk3\n"
    "moTfYR23eTeulJA80fQ9oCoBxGzps09zi+0bjmkBDYpJKKYqTu0tM1aaXNQ3AIt3\n"
    "ChZaIiiA1YbBo4GcMIGZMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMB0G\n"
    "A1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAaBgNVHREEEzARgglsb2NhbGhv\n"
    "c3SHBH8AAAEwHQYDVR0OBBYEFF1TAfhqrbNBU1/mVwqcJR3sa0QzMB8GA1UdIwQY\n"
    "MBaAFGcK5B1EHjSkP0nWlEFCAF2LXDFxMAoGCCqGSM49BAMCA0gAMEUCIGSgFvvC\n"
    "WanJcBAogCfAEajeBJ8aBR3C2QRHx+GNu5P7AiEAn8p/Liojp9IeXfTc1VHa4Cen\n"
    "ioy14Eq6FKwNjSA07kQ=\n"
    "-----END CERTIFICATE-----\n"
    ;
static const char PEM_SRV_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnITEfkOnGpPU9kk6\n"
    "1oN5htU+t7UGPNUvL2JKg7LAZWmhRANCAATquez5rSk3moTfYR23eTeulJA80fQ9\n"
    "oCoBxGzps09zi+0bjmkBDYpJKKYqTu0tM1aaXNQ3AIt3ChZaIiiA1YbB\n"
    "-----END PRIVATE KEY-----\n"
    ;
static const char PEM_CLI_PEM[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmjCCAUCgAwIBAgIBAzAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1rdGxzeCBm\n"
    "dXp6IENBMCAXDTI2MTEyMzAwMjEyN1oYDzIxMjYxMDMwMDAyMTI3WjAcMRowGAYD\n"
    "VQQDDBFrdGxzeC1mdXp6LWNsaWVudDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA\n"
    "BLTgR+QUdUIGioap3Bo6X4HAFPCQ89ugZO/7JqO16zrxFVpUVMUn8zyXrXPp38is\n"
    "wjtP6wa8cYo+1ruShTJCJIajdTBzMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQD\n"
    "AgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMCMB0GA1UdDgQWBBRdFHJyCQ8MMYusXqu3\n"
    "ZMD56ZwrzDAfBgNVHSMEGDAWgBRnCuQdRB40pD9J1pRBQgBdi1wxcTAKBggqhkjO\n"
    "PQQDAgNIADBFAiAcyLTgs8qMUOgMv4N+b+xuctGHAkUM+hM17iFxeLeCHAIhAJ6W\n"
    "M23lMzuSEfGmPfa17VeYr/6YC/bnqMBbFC5Dwz4T\n"
    "-----END CERTIFICATE-----\n"
    ;
static const char PEM_CLI_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmBKI7XcRIrIbkaki\n"
    "2leJhBFaBgdNyuIlnG6u+d0BGP+hRANCAAS04EfkFHVCBoqGqdwaOl+BwBTwkPPb\n"
    "oGTv+yajtes68RVaVFTFJ/M8l61z6d/IrMI7T+sGvHGKPta7koUyQiSG\n"
    "-----END PRIVATE KEY-----\n"
    ;

/* Long-lived configurations, built once by fz_init(). */
static ktlsx_config *fz_server_cfg;        /* server, srv.pem, no client auth */
static ktlsx_config *fz_server_cfg_req;    /* server, verify-client require (CA = ca.pem) */
static ktlsx_config *fz_server_cfg_opt;    /* server, verify-client optional (CA = ca.pem) */
static ktlsx_config *fz_client_cfg_insecure; /* client, insecure, ALPN h2,http/1.1 */
static ktlsx_config *fz_client_cfg_trust;  /* client, CA = ca.pem, client cert cli.pem, ALPN */
static EVP_PKEY *fz_server_pub;            /* public key of srv.pem */
static EVP_PKEY *fz_client_pub;            /* public key of cli.pem */

FZ_UNUSED static void fz_die(const char *what, const ktlsx_config *cfg)
{
    fprintf(stderr, "fuzz setup: %s%s%s\n", what, cfg ? ": " : "", cfg ? ktlsx_config_error(cfg) : "");
    abort();
}

FZ_UNUSED static void fz_write_file(const char *dir, const char *name, const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) fz_die(path, NULL);
}

FZ_UNUSED static EVP_PKEY *fz_pem_pubkey(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = x ? X509_get_pubkey(x) : NULL;
    X509_free(x);
    BIO_free(b);
    if (!k) fz_die("cannot parse embedded certificate", NULL);
    return k;
}

FZ_UNUSED static ktlsx_config *fz_new_cfg(enum ktlsx_role role)
{
    ktlsx_config *cfg = ktlsx_config_new(role);
    if (!cfg) fz_die("ktlsx_config_new", NULL);
    return cfg;
}

FZ_UNUSED static void fz_init(void)
{
    static int done;
    if (done) return;
    done = 1;
    char dir[] = "/tmp/ktlsx-fuzz-XXXXXX";
    if (!mkdtemp(dir)) fz_die("mkdtemp", NULL);
    char ca[256], srv[256], srv_key[256], cli[256], cli_key[256];
    fz_write_file(dir, "ca.pem", PEM_CA_PEM, ca, sizeof ca);
    fz_write_file(dir, "srv.pem", PEM_SRV_PEM, srv, sizeof srv);
    fz_write_file(dir, "srv.key", PEM_SRV_KEY, srv_key, sizeof srv_key);
    fz_write_file(dir, "cli.pem", PEM_CLI_PEM, cli, sizeof cli);
    fz_write_file(dir, "cli.key", PEM_CLI_KEY, cli_key, sizeof cli_key);

    fz_server_cfg = fz_new_cfg(KTLSX_SERVER);
    if (ktlsx_config_add_cert(fz_server_cfg, srv, srv_key) != 0) fz_die("server cert", fz_server_cfg);
    if (ktlsx_config_set_alpn(fz_server_cfg, "http/1.1,h2") != 0) fz_die("server alpn", fz_server_cfg);

    fz_server_cfg_req = fz_new_cfg(KTLSX_SERVER);
    if (ktlsx_config_add_cert(fz_server_cfg_req, srv, srv_key) != 0) fz_die("server cert", fz_server_cfg_req);
    if (ktlsx_config_set_ca_file(fz_server_cfg_req, ca) != 0) fz_die("server ca", fz_server_cfg_req);
    if (ktlsx_config_set_verify_client(fz_server_cfg_req, KTLSX_VERIFY_REQUIRE) != 0) fz_die("verify", fz_server_cfg_req);

    fz_server_cfg_opt = fz_new_cfg(KTLSX_SERVER);
    if (ktlsx_config_add_cert(fz_server_cfg_opt, srv, srv_key) != 0) fz_die("server cert", fz_server_cfg_opt);
    if (ktlsx_config_set_ca_file(fz_server_cfg_opt, ca) != 0) fz_die("server ca", fz_server_cfg_opt);
    if (ktlsx_config_set_verify_client(fz_server_cfg_opt, KTLSX_VERIFY_OPTIONAL) != 0) fz_die("verify", fz_server_cfg_opt);

    fz_client_cfg_insecure = fz_new_cfg(KTLSX_CLIENT);
    ktlsx_config_set_insecure(fz_client_cfg_insecure, 1);
    if (ktlsx_config_set_alpn(fz_client_cfg_insecure, "h2,http/1.1") != 0) fz_die("client alpn", fz_client_cfg_insecure);

    fz_client_cfg_trust = fz_new_cfg(KTLSX_CLIENT);
    if (ktlsx_config_set_ca_file(fz_client_cfg_trust, ca) != 0) fz_die("client ca", fz_client_cfg_trust);
    if (ktlsx_config_add_cert(fz_client_cfg_trust, cli, cli_key) != 0) fz_die("client cert", fz_client_cfg_trust);
    if (ktlsx_config_set_alpn(fz_client_cfg_trust, "h2,http/1.1") != 0) fz_die("client alpn", fz_client_cfg_trust);

    fz_server_pub = fz_pem_pubkey(PEM_SRV_PEM);
    fz_client_pub = fz_pem_pubkey(PEM_CLI_PEM);

    unlink(ca);
    unlink(srv);
    unlink(srv_key);
    unlink(cli);
    unlink(cli_key);
    rmdir(dir);
}

/* A handshake message: type, u24 length, body.  Heap-allocated at its exact
 * size so that ASan flags any read past it.  Caller frees. */
FZ_UNUSED static uint8_t *fz_message(uint8_t type, const uint8_t *body, size_t len, size_t *out_len)
{
    uint8_t *m = malloc(4 + len);
    if (!m) abort();
    m[0] = type;
    m[1] = (uint8_t)(len >> 16);
    m[2] = (uint8_t)(len >> 8);
    m[3] = (uint8_t)len;
    if (len) memcpy(m + 4, body, len);
    *out_len = 4 + len;
    return m;
}

/* Run a message handler the way drive() does: message in the transcript
 * (unless the handler hashes it itself), msg_raw set, body reader over a
 * heap copy of exactly the body, then the "every byte consumed" check. */
typedef kx_result (*fz_handler)(ktlsx_conn *c, kx_reader *body);

FZ_UNUSED static void fz_run_handler(ktlsx_conn *c, fz_handler h, uint8_t type, const uint8_t *body, size_t len,
                                     int add_to_transcript)
{
    size_t mlen;
    uint8_t *m = fz_message(type, body, len, &mlen);
    if (add_to_transcript) {
        kx_result tr = kx_transcript_add(&c->transcript, m, mlen);
        (void)tr;
    }
    c->msg_raw = m;
    c->msg_raw_len = mlen;
    kx_reader rd = kx_reader_of(m + 4, mlen - 4);
    kx_result r = h(c, &rd);
    c->msg_raw = NULL;
    if (!kx_failed(r)) r = kx_reader_done(&rd);
    if (kx_failed(r)) kx_conn_fail(c, r); /* also exercises alert output under the current keys */
    free(m);
}

/* Throw away whatever the connection wants to send. */
FZ_UNUSED static void fz_drain(ktlsx_conn *c)
{
    const uint8_t *p;
    size_t n = ktlsx_pending_output(c, &p);
    if (n) ktlsx_output_done(c, n);
}

/* A client connection that has written (and "sent") its ClientHello.  The
 * random legacy_session_id is replaced by a fixed one so that ServerHello
 * inputs (and the seeds) can echo it. */
static const uint8_t fz_session_id[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};

FZ_UNUSED static ktlsx_conn *fz_client_after_hello(ktlsx_config *cfg)
{
    ktlsx_conn *c = ktlsx_conn_new(cfg, "localhost");
    if (!c) abort();
    if (ktlsx_handshake(c) != KTLSX_WANT_READ) {
        fprintf(stderr, "fuzz setup: client did not write its ClientHello: %s\n", ktlsx_error(c));
        abort();
    }
    fz_drain(c);
    memcpy(c->session_id, fz_session_id, sizeof fz_session_id);
    c->session_id_len = sizeof fz_session_id;
    return c;
}

#endif
