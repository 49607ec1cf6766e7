/* Handshakes per second, in memory, one core, client and server in this
 * process: ktlsx engine pair vs OpenSSL libssl pair (memory BIOs), same
 * certificates, suite, group, versions, session cache and tickets.
 *
 * One handshake = new client + new server connection, the full exchange
 * until both report done (the client verifies the chain and the host name
 * on full handshakes), both freed.  Resumption scenarios offer the session
 * saved from one warm-up full handshake every time (checked to resume).
 *
 * Usage: bench_handshake [SCENARIO...]   (default: all); BENCH_SECONDS, BENCH_CERTS. */
#include "bench.h"

/* TLS 1.2: P-256 is listed after x25519 because a TLS 1.2 ECDSA certificate's curve
 * must be among the client's supported_groups (RFC 8422 §5.1.1; OpenSSL enforces it);
 * the key exchange still uses x25519. */
static const scenario scenarios[] = {
    { "tls13-ecdsa-x25519", TLS1_3_VERSION, "ecdsa", "TLS_AES_128_GCM_SHA256", "x25519", 0 },
    { "tls13-rsa2048-x25519", TLS1_3_VERSION, "rsa", "TLS_AES_128_GCM_SHA256", "x25519", 0 },
    { "tls12-ecdhe-ecdsa", TLS1_2_VERSION, "ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256", "x25519:P-256", 0 },
    { "tls13-resume-ticket", TLS1_3_VERSION, "ecdsa", "TLS_AES_128_GCM_SHA256", "x25519", 1 },
    { "tls12-resume-sessionid", TLS1_2_VERSION, "ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256", "x25519:P-256", 2 },
};

/* Wire bytes of the last handshake (for the record: both sides must do comparable work). */
static size_t last_c2s, last_s2c;

/* ------------------------------------------------------------------ ktlsx */

typedef struct {
    ktlsx_config *cc, *sc;
    wire c2s, s2c;
    uint8_t sess[8192];
    long sess_len;
    int resume;
} kx_bench;

static void kx_one(kx_bench *b, bool save)
{
    ktlsx_conn *c = ktlsx_conn_new(b->cc, "localhost");
    ktlsx_conn *s = ktlsx_conn_new(b->sc, NULL);
    if (!c || !s) die("ktlsx_conn_new");
    if (b->sess_len > 0 && ktlsx_set_session(c, b->sess, (size_t)b->sess_len) != 0) die("ktlsx_set_session");
    size_t c0 = b->c2s.total, s0 = b->s2c.total;
    kx_handshake_pair(c, s, &b->c2s, &b->s2c);
    last_c2s = b->c2s.total - c0;
    last_s2c = b->s2c.total - s0;
    if (b->sess_len > 0 && (!ktlsx_resumed(c) || !ktlsx_resumed(s))) die("ktlsx: session not resumed");
    if (save) {
        kx_settle_client(c, &b->s2c);
        b->sess_len = ktlsx_get_session(c, b->sess, sizeof b->sess);
        if (b->sess_len <= 0) die("ktlsx: no session to resume");
    }
    wire_clear(&b->c2s);
    wire_clear(&b->s2c);
    ktlsx_conn_free(c);
    ktlsx_conn_free(s);
}

static double kx_run(const scenario *sc)
{
    kx_bench b = { 0 };
    b.cc = kx_client_cfg(sc);
    b.sc = kx_server_cfg(sc);
    if (sc->resume) kx_one(&b, true);
    double end = now_s() + bench_warmup();
    while (now_s() < end) kx_one(&b, false);
    unsigned long n = 0;
    double t0 = now_s(), t;
    end = t0 + bench_seconds();
    do {
        kx_one(&b, false);
        n++;
    } while ((t = now_s()) < end);
    ktlsx_config_free(b.cc);
    ktlsx_config_free(b.sc);
    wire_free(&b.c2s);
    wire_free(&b.s2c);
    return (double)n / (t - t0);
}

/* ---------------------------------------------------------------- OpenSSL */

typedef struct {
    SSL_CTX *cctx, *sctx;
    os_net net;
    SSL_SESSION *sess;
} os_bench;

static void os_one(os_bench *b, bool save)
{
    SSL *c, *s;
    os_pair_new(b->cctx, b->sctx, &b->net, &c, &s);
    if (b->sess && SSL_set_session(c, b->sess) != 1) die("SSL_set_session");
    size_t c0 = BIO_number_written(b->net.c2s), s0 = BIO_number_written(b->net.s2c);
    os_handshake_pair(c, s);
    last_c2s = BIO_number_written(b->net.c2s) - c0;
    last_s2c = BIO_number_written(b->net.s2c) - s0;
    if (b->sess && (!SSL_session_reused(c) || !SSL_session_reused(s))) die("OpenSSL: session not resumed");
    if (save) {
        if (SSL_version(c) == TLS1_3_VERSION) os_settle_client(c);
        b->sess = SSL_get1_session(c);
        if (!b->sess || !SSL_SESSION_is_resumable(b->sess)) die("OpenSSL: no session to resume");
    }
    os_net_clear(&b->net);
    os_pair_free(c, s);
}

static double os_run(const scenario *sc)
{
    os_bench b = { 0 };
    b.cctx = os_client_ctx(sc);
    b.sctx = os_server_ctx(sc);
    os_net_init(&b.net);
    if (sc->resume) os_one(&b, true);
    double end = now_s() + bench_warmup();
    while (now_s() < end) os_one(&b, false);
    unsigned long n = 0;
    double t0 = now_s(), t;
    end = t0 + bench_seconds();
    do {
        os_one(&b, false);
        n++;
    } while ((t = now_s()) < end);
    SSL_SESSION_free(b.sess);
    os_net_free(&b.net);
    SSL_CTX_free(b.cctx);
    SSL_CTX_free(b.sctx);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    pin_to_one_cpu();
    bool verbose = getenv("BENCH_VERBOSE") != NULL;
    /* BENCH_ONLY=ktlsx|openssl runs one side (for profiling); the other reports 0. */
    const char *only = getenv("BENCH_ONLY");
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        const scenario *sc = &scenarios[i];
        if (!bench_selected(argc, argv, sc->name)) continue;
        double kx = 0, os = 0;
        size_t kc = 0, ks = 0;
        if (!only || strcmp(only, "ktlsx") == 0) {
            kx = kx_run(sc);
            kc = last_c2s, ks = last_s2c;
        }
        if (!only || strcmp(only, "openssl") == 0) os = os_run(sc);
        report(sc->name, kx, os, "hs/s");
        if (verbose)
            fprintf(stderr, "  %s wire bytes c2s/s2c: ktlsx %zu/%zu, openssl %zu/%zu\n", sc->name, kc, ks, last_c2s,
                    last_s2c);
    }
    return 0;
}
