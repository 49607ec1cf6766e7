/* Shared helpers for the ktlsx benchmarks (bench/bench_*.c, one program each,
 * so this header is #included): timing, an in-memory "wire" for ktlsx,
 * ktlsx and OpenSSL (libssl) configurations built from the same test PKI,
 * and the result line format.
 *
 * Both libraries get the same transport cost: ktlsx output is copied into a
 * wire buffer and fed from there (ktlsx_input copies it in); OpenSSL writes
 * into a memory BIO and reads from it.  One copy in, one copy out, per side.
 *
 * The bench binaries link libssl to measure OpenSSL as the reference;
 * libktlsx itself never does. */
#ifndef KTLSX_BENCH_H
#define KTLSX_BENCH_H

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ktlsx/ktlsx.h"

#define BENCH_UNUSED __attribute__((unused))

/* ------------------------------------------------------------ plumbing */

BENCH_UNUSED static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(1);
}

BENCH_UNUSED static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* BENCH_SECONDS (default 2): measured time per scenario and library. */
BENCH_UNUSED static double bench_seconds(void)
{
    const char *e = getenv("BENCH_SECONDS");
    double s = e ? strtod(e, NULL) : 2.0;
    return s > 0 ? s : 2.0;
}

/* Warm-up before each measurement: a tenth of the measured time, at most 0.5 s. */
BENCH_UNUSED static double bench_warmup(void)
{
    double w = bench_seconds() / 10;
    return w > 0.5 ? 0.5 : w;
}

/* Directory of the test PKI (tests/certs/gen.sh output): BENCH_CERTS, default build/bench/certs. */
BENCH_UNUSED static const char *cert_path(const char *name)
{
    static char bufs[8][1024];
    static unsigned next;
    const char *dir = getenv("BENCH_CERTS");
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir ? dir : "build/bench/certs", name);
    return b;
}

/* Stay on the CPU we started on: "one core" for client and server alike. */
BENCH_UNUSED static void pin_to_one_cpu(void)
{
    int cpu = sched_getcpu();
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

/* "name  ktlsx X unit  openssl Y unit  ratio R" on stdout (run.sh tees it into results.txt). */
/* Whether the command line asks for scenario `name` (no arguments: all). */
BENCH_UNUSED static bool bench_selected(int argc, char **argv, const char *name)
{
    if (argc <= 1) return true;
    for (int a = 1; a < argc; a++)
        if (strcmp(argv[a], name) == 0) return true;
    return false;
}

BENCH_UNUSED static void report(const char *name, double kx, double os, const char *unit)
{
    printf("%-24s ktlsx %10.1f %-5s openssl %10.1f %-5s ratio %.2f\n", name, kx, unit, os, unit, os > 0 ? kx / os : 0.0);
    fflush(stdout);
}

/* ------------------------------------------------------------ the wire */

typedef struct {
    uint8_t *d;
    size_t off, len, cap; /* unread bytes are d[off..len) */
    size_t total;         /* bytes ever put */
} wire;

BENCH_UNUSED static void wire_put(wire *w, const uint8_t *p, size_t n)
{
    if (w->off == w->len) w->off = w->len = 0;
    if (w->len + n > w->cap) {
        if (w->off) {
            memmove(w->d, w->d + w->off, w->len - w->off);
            w->len -= w->off;
            w->off = 0;
        }
        if (w->len + n > w->cap) {
            size_t cap = w->cap ? w->cap : 65536;
            while (cap < w->len + n) cap *= 2;
            uint8_t *d = realloc(w->d, cap);
            if (!d) die("out of memory");
            w->d = d;
            w->cap = cap;
        }
    }
    memcpy(w->d + w->len, p, n);
    w->len += n;
    w->total += n;
}

BENCH_UNUSED static size_t wire_avail(const wire *w) { return w->len - w->off; }
BENCH_UNUSED static void wire_clear(wire *w) { w->off = w->len = 0; }
BENCH_UNUSED static void wire_free(wire *w)
{
    free(w->d);
    memset(w, 0, sizeof *w);
}

/* ------------------------------------------------------------ ktlsx side */

/* Everything `from` wants to send onto the wire; returns the byte count. */
BENCH_UNUSED static size_t kx_move(ktlsx_conn *from, wire *w)
{
    const uint8_t *d;
    size_t n, total = 0;
    while ((n = ktlsx_pending_output(from, &d)) > 0) {
        wire_put(w, d, n);
        ktlsx_output_done(from, n);
        total += n;
    }
    return total;
}

/* All bytes on the wire into `to`. */
BENCH_UNUSED static bool kx_feed(ktlsx_conn *to, wire *w)
{
    size_t n = wire_avail(w);
    if (n == 0) return false;
    if (ktlsx_input(to, w->d + w->off, n) != 0) die("ktlsx_input: %s", ktlsx_error(to));
    w->off += n;
    return true;
}

/* Run both handshakes to completion in memory (dies on failure).  Post-handshake
 * bytes (TLS 1.3 NewSessionTickets) are left on the wire. */
BENCH_UNUSED static void kx_handshake_pair(ktlsx_conn *c, ktlsx_conn *s, wire *c2s, wire *s2c)
{
    int cst = KTLSX_WANT_READ, sst = KTLSX_WANT_READ;
    for (int i = 0; i < 64; i++) {
        if (cst == KTLSX_WANT_READ) cst = ktlsx_handshake(c);
        kx_move(c, c2s);
        if (sst == KTLSX_WANT_READ) sst = ktlsx_handshake(s);
        kx_move(s, s2c);
        if (cst == KTLSX_DONE && sst == KTLSX_DONE) return;
        if (cst == KTLSX_FAILED || sst == KTLSX_FAILED)
            die("ktlsx handshake failed: client \"%s\" (alert %u), server \"%s\" (alert %u)", ktlsx_error(c),
                ktlsx_alert(c), ktlsx_error(s), ktlsx_alert(s));
        bool moved = false;
        if (cst == KTLSX_WANT_READ) moved |= kx_feed(c, s2c);
        if (sst == KTLSX_WANT_READ) moved |= kx_feed(s, c2s);
        if (!moved) die("ktlsx handshake stalls (client %d, server %d)", cst, sst);
    }
    die("ktlsx handshake does not terminate");
}

/* Deliver post-handshake records (tickets) to the client and let it process them. */
BENCH_UNUSED static void kx_settle_client(ktlsx_conn *c, wire *s2c)
{
    uint8_t tmp[256];
    if (!kx_feed(c, s2c)) return;
    long r = ktlsx_read(c, tmp, sizeof tmp);
    if (r != 0) die("ktlsx client: unexpected ktlsx_read result %ld (%s)", r, ktlsx_error(c));
}

#define KX_OK(cfg, expr)                                                                \
    do {                                                                                \
        if ((expr) != 0) die("%s: %s", #expr, ktlsx_config_error(cfg));                 \
    } while (0)

/* A scenario's parameters, shared by both libraries. */
typedef struct {
    const char *name;
    int version;         /* TLS1_3_VERSION / TLS1_2_VERSION */
    const char *cert;    /* "ecdsa", "rsa" */
    const char *suite;   /* TLS 1.3 IANA name, or TLS 1.2 OpenSSL name */
    const char *groups;  /* OpenSSL syntax "x25519:P-256" (commas for ktlsx) */
    int resume;          /* 0 full, 1 ticket, 2 session id */
} scenario;

static const char *kx_groups(const scenario *sc)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%s", sc->groups);
    for (char *p = buf; *p; p++)
        if (*p == ':') *p = ',';
    return buf;
}

BENCH_UNUSED static ktlsx_config *kx_server_cfg(const scenario *sc)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_SERVER);
    if (!cfg) die("ktlsx_config_new");
    char crt[64], key[64];
    snprintf(crt, sizeof crt, "server-%s.pem", sc->cert);
    snprintf(key, sizeof key, "server-%s.key", sc->cert);
    KX_OK(cfg, ktlsx_config_add_cert(cfg, cert_path(crt), cert_path(key)));
    uint16_t v = sc->version == TLS1_3_VERSION ? KTLSX_TLS13 : KTLSX_TLS12;
    KX_OK(cfg, ktlsx_config_set_versions(cfg, v, v));
    KX_OK(cfg, ktlsx_config_set_ciphers(cfg, sc->suite));
    KX_OK(cfg, ktlsx_config_set_groups(cfg, kx_groups(sc)));
    /* Same as OpenSSL's server below: 1024-entry session cache, 300 s; tickets
     * on (2 per TLS 1.3 connection, 1 in TLS 1.2) except for session-ID resumption. */
    KX_OK(cfg, ktlsx_config_set_session_cache(cfg, 1024, 300));
    if (sc->resume == 2) KX_OK(cfg, ktlsx_config_set_tickets(cfg, 0, 0));
    else KX_OK(cfg, ktlsx_config_set_tickets(cfg, 2, 7200));
    return cfg;
}

BENCH_UNUSED static ktlsx_config *kx_client_cfg(const scenario *sc)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_CLIENT);
    if (!cfg) die("ktlsx_config_new");
    KX_OK(cfg, ktlsx_config_set_ca_file(cfg, cert_path("ca.pem")));
    uint16_t v = sc->version == TLS1_3_VERSION ? KTLSX_TLS13 : KTLSX_TLS12;
    KX_OK(cfg, ktlsx_config_set_versions(cfg, v, v));
    KX_OK(cfg, ktlsx_config_set_ciphers(cfg, sc->suite));
    KX_OK(cfg, ktlsx_config_set_groups(cfg, kx_groups(sc)));
    return cfg;
}

/* ------------------------------------------------------------ OpenSSL side */

/* The scenario's version, suite and groups: the same on both OpenSSL ends. */
BENCH_UNUSED static void os_set_protocol(SSL_CTX *ctx, const scenario *sc)
{
    SSL_CTX_set_min_proto_version(ctx, sc->version);
    SSL_CTX_set_max_proto_version(ctx, sc->version);
    if (sc->version == TLS1_3_VERSION) {
        if (SSL_CTX_set_ciphersuites(ctx, sc->suite) != 1) die("ciphersuites %s", sc->suite);
    } else if (SSL_CTX_set_cipher_list(ctx, sc->suite) != 1) {
        die("cipher list %s", sc->suite);
    }
    if (SSL_CTX_set1_groups_list(ctx, sc->groups) != 1) die("groups %s", sc->groups);
}

BENCH_UNUSED static SSL_CTX *os_server_ctx(const scenario *sc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) die("SSL_CTX_new");
    char crt[64], key[64];
    snprintf(crt, sizeof crt, "server-%s.pem", sc->cert);
    snprintf(key, sizeof key, "server-%s.key", sc->cert);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path(crt)) != 1) die("server certificate %s", crt);
    if (SSL_CTX_use_PrivateKey_file(ctx, cert_path(key), SSL_FILETYPE_PEM) != 1) die("server key %s", key);
    os_set_protocol(ctx, sc);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 1024);
    SSL_CTX_set_timeout(ctx, 300);
    SSL_CTX_set_num_tickets(ctx, 2);
    if (sc->resume == 2) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    static const unsigned char sid_ctx[] = "ktlsx-bench";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    return ctx;
}

BENCH_UNUSED static SSL_CTX *os_client_ctx(const scenario *sc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) die("SSL_CTX_new");
    if (SSL_CTX_load_verify_locations(ctx, cert_path("ca.pem"), NULL) != 1) die("ca.pem");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    os_set_protocol(ctx, sc);
    /* Sessions are kept by hand (SSL_get1_session), like the ktlsx blob. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

/* The in-memory network for OpenSSL: two memory BIOs shared by both SSLs
 * (client writes c2s, server reads it, and the other way round). */
typedef struct {
    BIO *c2s, *s2c;
} os_net;

BENCH_UNUSED static void os_net_init(os_net *n)
{
    n->c2s = BIO_new(BIO_s_mem());
    n->s2c = BIO_new(BIO_s_mem());
    if (!n->c2s || !n->s2c) die("BIO_new");
    BIO_set_mem_eof_return(n->c2s, -1);
    BIO_set_mem_eof_return(n->s2c, -1);
}

BENCH_UNUSED static void os_net_clear(os_net *n)
{
    (void)BIO_reset(n->c2s);
    (void)BIO_reset(n->s2c);
}

BENCH_UNUSED static void os_net_free(os_net *n)
{
    BIO_free(n->c2s);
    BIO_free(n->s2c);
}

/* A client/server SSL pair on the shared BIOs. */
BENCH_UNUSED static void os_pair_new(SSL_CTX *cctx, SSL_CTX *sctx, os_net *n, SSL **c, SSL **s)
{
    *c = SSL_new(cctx);
    *s = SSL_new(sctx);
    if (!*c || !*s) die("SSL_new");
    BIO_up_ref(n->c2s);
    BIO_up_ref(n->c2s);
    BIO_up_ref(n->s2c);
    BIO_up_ref(n->s2c);
    SSL_set_bio(*c, n->s2c, n->c2s);
    SSL_set_bio(*s, n->c2s, n->s2c);
    SSL_set_connect_state(*c);
    SSL_set_accept_state(*s);
    if (SSL_set_tlsext_host_name(*c, "localhost") != 1 || SSL_set1_host(*c, "localhost") != 1) die("SNI / host");
}

/* Free a pair as after a clean close: without the shutdown flags SSL_free
 * treats the session as bad and makes it non-resumable (ssl_clear_bad_session). */
BENCH_UNUSED static void os_pair_free(SSL *c, SSL *s)
{
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c);
    SSL_free(s);
}

static inline bool os_want(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

BENCH_UNUSED static void os_handshake_pair(SSL *c, SSL *s)
{
    int rc = 0, rs = 0;
    for (int i = 0; i < 64; i++) {
        if (rc != 1) {
            rc = SSL_do_handshake(c);
            if (rc != 1 && !os_want(c, rc)) die("OpenSSL client handshake failed");
        }
        if (rs != 1) {
            rs = SSL_do_handshake(s);
            if (rs != 1 && !os_want(s, rs)) die("OpenSSL server handshake failed");
        }
        if (rc == 1 && rs == 1) return;
    }
    die("OpenSSL handshake does not terminate");
}

/* Let the client process the post-handshake records (tickets). */
BENCH_UNUSED static void os_settle_client(SSL *c)
{
    uint8_t tmp[256];
    int r = SSL_read(c, tmp, sizeof tmp);
    if (r > 0 || !os_want(c, r)) die("OpenSSL client: unexpected SSL_read result %d", r);
}

#endif
