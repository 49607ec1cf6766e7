/* User-space record layer throughput, in memory, one core: the client
 * encrypts 16 KiB records (ktlsx_write / SSL_write), the server decrypts
 * them (ktlsx_read / SSL_read), over an established connection.  MB/s of
 * plaintext (10^6 bytes), encryption and decryption both on this core.
 *
 * Usage: bench_record [SCENARIO...]; BENCH_SECONDS, BENCH_CERTS, BENCH_ONLY=ktlsx|openssl. */
#include "bench.h"

#define REC 16384

static const scenario scenarios[] = {
    { "record-tls13-aes128gcm", TLS1_3_VERSION, "ecdsa", "TLS_AES_128_GCM_SHA256", "x25519", 0 },
    { "record-tls13-chacha20", TLS1_3_VERSION, "ecdsa", "TLS_CHACHA20_POLY1305_SHA256", "x25519", 0 },
    { "record-tls12-aes128gcm", TLS1_2_VERSION, "ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256", "x25519:P-256", 0 },
};

static uint8_t src[REC], dst[REC];

static void fill(void)
{
    uint32_t x = 0x9e3779b9u;
    for (size_t i = 0; i < REC; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        src[i] = (uint8_t)x;
    }
}

/* ------------------------------------------------------------------ ktlsx */

static void kx_record(ktlsx_conn *c, ktlsx_conn *s, wire *c2s)
{
    if (ktlsx_write(c, src, REC) != 0) die("ktlsx_write: %s", ktlsx_error(c));
    kx_move(c, c2s);
    kx_feed(s, c2s);
    size_t got = 0;
    while (got < REC) {
        long r = ktlsx_read(s, dst + got, REC - got);
        if (r <= 0) die("ktlsx_read: %ld (%s)", r, ktlsx_error(s));
        got += (size_t)r;
    }
}

static double kx_run(const scenario *sc)
{
    ktlsx_config *cc = kx_client_cfg(sc), *scfg = kx_server_cfg(sc);
    wire c2s = { 0 }, s2c = { 0 };
    ktlsx_conn *c = ktlsx_conn_new(cc, "localhost"), *s = ktlsx_conn_new(scfg, NULL);
    if (!c || !s) die("ktlsx_conn_new");
    kx_handshake_pair(c, s, &c2s, &s2c);
    kx_settle_client(c, &s2c);
    if (strcmp(ktlsx_cipher_name(c), sc->version == TLS1_3_VERSION ? sc->suite : "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"))
        die("ktlsx negotiated %s", ktlsx_cipher_name(c));
    memset(dst, 0, sizeof dst);
    kx_record(c, s, &c2s);
    if (memcmp(src, dst, REC) != 0) die("ktlsx: record corrupted");
    double end = now_s() + bench_warmup();
    while (now_s() < end) kx_record(c, s, &c2s);
    unsigned long n = 0;
    double t0 = now_s(), t;
    end = t0 + bench_seconds();
    do {
        kx_record(c, s, &c2s);
        n++;
    } while ((t = now_s()) < end);
    ktlsx_conn_free(c);
    ktlsx_conn_free(s);
    ktlsx_config_free(cc);
    ktlsx_config_free(scfg);
    wire_free(&c2s);
    wire_free(&s2c);
    return (double)n * REC / (t - t0) / 1e6;
}

/* ---------------------------------------------------------------- OpenSSL */

static void os_record(SSL *c, SSL *s)
{
    if (SSL_write(c, src, REC) != REC) die("SSL_write");
    size_t got = 0;
    while (got < REC) {
        int r = SSL_read(s, dst + got, (int)(REC - got));
        if (r <= 0) die("SSL_read: %d", SSL_get_error(s, r));
        got += (size_t)r;
    }
}

static double os_run(const scenario *sc)
{
    SSL_CTX *cctx = os_client_ctx(sc), *sctx = os_server_ctx(sc);
    os_net net;
    os_net_init(&net);
    SSL *c, *s;
    os_pair_new(cctx, sctx, &net, &c, &s);
    os_handshake_pair(c, s);
    if (SSL_version(c) == TLS1_3_VERSION) os_settle_client(c);
    const char *want = sc->version == TLS1_3_VERSION ? sc->suite : "ECDHE-ECDSA-AES128-GCM-SHA256";
    if (strcmp(SSL_get_cipher_name(c), want)) die("OpenSSL negotiated %s", SSL_get_cipher_name(c));
    memset(dst, 0, sizeof dst);
    os_record(c, s);
    if (memcmp(src, dst, REC) != 0) die("OpenSSL: record corrupted");
    double end = now_s() + bench_warmup();
    while (now_s() < end) os_record(c, s);
    unsigned long n = 0;
    double t0 = now_s(), t;
    end = t0 + bench_seconds();
    do {
        os_record(c, s);
        n++;
    } while ((t = now_s()) < end);
    os_pair_free(c, s);
    os_net_free(&net);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    return (double)n * REC / (t - t0) / 1e6;
}

int main(int argc, char **argv)
{
    pin_to_one_cpu();
    fill();
    const char *only = getenv("BENCH_ONLY");
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        const scenario *sc = &scenarios[i];
        if (!bench_selected(argc, argv, sc->name)) continue;
        double kx = 0, os = 0;
        if (!only || strcmp(only, "ktlsx") == 0) kx = kx_run(sc);
        if (!only || strcmp(only, "openssl") == 0) os = os_run(sc);
        report(sc->name, kx, os, "MB/s");
    }
    return 0;
}
