/* Heap bytes per connection at four points of its life, BENCH_CONNS (default
 * 1000) TLS 1.3 ECDSA/x25519/AES-128-GCM client+server pairs held at once;
 * the growth of glibc's in-use heap (mallinfo2().uordblks + hblkhd) is
 * divided by the count.  The configurations / SSL_CTXs, the wire buffers and
 * the shared memory BIOs exist before the baseline, so only per-connection
 * state is counted.  Freeing the clients first splits each figure into
 * client and server.
 *
 *   mem-hs-inflight-*  mid-handshake: the client has sent its ClientHello,
 *                      the server has answered with its whole flight and
 *                      waits for the client's Finished (the flight is
 *                      dropped, not delivered).  OpenSSL at the same point.
 *   mem-conn-*         established, records in user space, idle: the client
 *                      has processed the server's tickets.  OpenSSL likewise.
 *   mem-ktls-*         established, then both directions handed to kernel
 *                      TLS with ktlsx_ktls_start.  This host has no kernel
 *                      TLS, so setsockopt is replaced by one that accepts
 *                      (kx_ktls_set_setsockopt) on a real loopback TCP pair:
 *                      ktlsx_ktls_start does everything it does for real
 *                      except that the kernel never sees the keys.  ktlsx
 *                      only (the line says "n/a" for OpenSSL).
 *   mem-import-*       what a process that imports an offloaded connection
 *                      (ktlsx_conn_export of the mem-ktls state, both kernel
 *                      bits set, into ktlsx_conn_import on a configuration
 *                      without certificate or key) keeps.  ktlsx only.
 *
 * Output: "-pair" (client+server), "-client", "-server", in bytes per
 * connection; the ratio is ktlsx/OpenSSL (lower is better here). */
#include <malloc.h>
#include <unistd.h>

#include "bench.h"
#include "ktls/ktls.h" /* kx_ktls_set_setsockopt, kx_loopback_pair: the stand-in kernel */

static const scenario sc = { "mem", TLS1_3_VERSION, "ecdsa", "TLS_AES_128_GCM_SHA256", "x25519", 0 };

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

typedef struct {
    double pair, client, server;
} mem_result;

/* Where in its life each measured connection is held. */
typedef enum { STAGE_INFLIGHT, STAGE_ESTABLISHED, STAGE_KTLS, STAGE_IMPORTED } stage;

/* The stand-in kernel: takes every TCP_ULP / TLS_TX / TLS_RX and keeps nothing. */
static int accept_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    (void)fd, (void)level, (void)name, (void)val, (void)len;
    return 0;
}

typedef struct {
    ktlsx_config *cc, *scfg;      /* the handshake's configurations */
    ktlsx_config *bare_c, *bare_s; /* the importer's: no certificate, no key, no CA */
    wire c2s, s2c;
    int cfd, sfd;                 /* the loopback pair ktlsx_ktls_start is given */
} kx_env;

static void kx_to_kernel(ktlsx_conn *c, int fd)
{
    char why[256] = "";
    int got = ktlsx_ktls_start(c, fd, KTLSX_KTLS_TX | KTLSX_KTLS_RX, why, sizeof why);
    if (got != (KTLSX_KTLS_TX | KTLSX_KTLS_RX)) die("ktlsx_ktls_start: %d (%s)", got, why);
}

static ktlsx_conn *kx_reimport(ktlsx_conn *c, ktlsx_config *bare)
{
    uint8_t blob[KTLSX_EXPORT_MAX];
    const char *why = NULL;
    long n = ktlsx_conn_export(c, blob, sizeof blob, &why);
    if (n < 0) die("ktlsx_conn_export: %s", why);
    ktlsx_conn_free(c);
    ktlsx_conn *imported = ktlsx_conn_import(bare, blob, (size_t)n, &why);
    OPENSSL_cleanse(blob, sizeof blob);
    if (!imported) die("ktlsx_conn_import: %s", why);
    return imported;
}

/* A new pair brought to stage `st`. */
static void kx_pair_at(kx_env *e, stage st, ktlsx_conn **cp, ktlsx_conn **sp)
{
    ktlsx_conn *c = ktlsx_conn_new(e->cc, "localhost"), *s = ktlsx_conn_new(e->scfg, NULL);
    if (!c || !s) die("ktlsx_conn_new");
    if (st == STAGE_INFLIGHT) {
        if (ktlsx_handshake(c) != KTLSX_WANT_READ) die("ktlsx client: no ClientHello");
        kx_move(c, &e->c2s);
        kx_feed(s, &e->c2s);
        if (ktlsx_handshake(s) != KTLSX_WANT_READ) die("ktlsx server: %s", ktlsx_error(s));
        kx_move(s, &e->s2c);
    } else {
        kx_handshake_pair(c, s, &e->c2s, &e->s2c);
        kx_settle_client(c, &e->s2c);
    }
    wire_clear(&e->c2s);
    wire_clear(&e->s2c);
    if (st == STAGE_KTLS || st == STAGE_IMPORTED) {
        kx_to_kernel(c, e->cfd);
        kx_to_kernel(s, e->sfd);
    }
    if (st == STAGE_IMPORTED) {
        c = kx_reimport(c, e->bare_c);
        s = kx_reimport(s, e->bare_s);
    }
    *cp = c;
    *sp = s;
}

static mem_result kx_mem(kx_env *e, stage st, size_t n)
{
    ktlsx_conn **c = calloc(n, sizeof *c), **s = calloc(n, sizeof *s);
    if (!c || !s) die("out of memory");
    for (int i = 0; i < 50; i++) { /* warm-up: lazy initialisation, wire buffers */
        ktlsx_conn *a, *b;
        kx_pair_at(e, st, &a, &b);
        ktlsx_conn_free(a);
        ktlsx_conn_free(b);
    }
    size_t base = heap_in_use();
    for (size_t i = 0; i < n; i++) kx_pair_at(e, st, &c[i], &s[i]);
    size_t all = heap_in_use();
    for (size_t i = 0; i < n; i++) ktlsx_conn_free(c[i]);
    size_t servers = heap_in_use();
    for (size_t i = 0; i < n; i++) ktlsx_conn_free(s[i]);
    free(c);
    free(s);
    mem_result r = { (double)(all - base) / (double)n, (double)(all - servers) / (double)n,
                     (double)(servers - base) / (double)n };
    return r;
}

/* A new OpenSSL pair brought to stage `st` (in flight or established). */
static void os_pair_at(SSL_CTX *cctx, SSL_CTX *sctx, os_net *net, stage st, SSL **c, SSL **s)
{
    os_pair_new(cctx, sctx, net, c, s);
    if (st == STAGE_INFLIGHT) {
        int r = SSL_do_handshake(*c);
        if (r == 1 || !os_want(*c, r)) die("OpenSSL client: no ClientHello");
        r = SSL_do_handshake(*s);
        if (r == 1 || !os_want(*s, r)) die("OpenSSL server: handshake failed");
    } else {
        os_handshake_pair(*c, *s);
        os_settle_client(*c);
    }
    os_net_clear(net);
}

static mem_result os_mem(stage st, size_t n)
{
    SSL_CTX *cctx = os_client_ctx(&sc), *sctx = os_server_ctx(&sc);
    os_net net;
    os_net_init(&net);
    SSL **c = calloc(n, sizeof *c), **s = calloc(n, sizeof *s);
    if (!c || !s) die("out of memory");
    for (int i = 0; i < 50; i++) {
        SSL *a, *b;
        os_pair_at(cctx, sctx, &net, st, &a, &b);
        os_pair_free(a, b);
    }
    size_t base = heap_in_use();
    for (size_t i = 0; i < n; i++) os_pair_at(cctx, sctx, &net, st, &c[i], &s[i]);
    size_t all = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        SSL_set_shutdown(c[i], SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c[i]);
    }
    size_t servers = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        SSL_set_shutdown(s[i], SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(s[i]);
    }
    free(c);
    free(s);
    os_net_free(&net);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    mem_result r = { (double)(all - base) / (double)n, (double)(all - servers) / (double)n,
                     (double)(servers - base) / (double)n };
    return r;
}

static void report3(const char *prefix, mem_result k, mem_result o)
{
    char name[64];
    snprintf(name, sizeof name, "%s-pair", prefix);
    report(name, k.pair, o.pair, "B");
    snprintf(name, sizeof name, "%s-client", prefix);
    report(name, k.client, o.client, "B");
    snprintf(name, sizeof name, "%s-server", prefix);
    report(name, k.server, o.server, "B");
}

/* A ktlsx-only line in the same columns ("n/a" where OpenSSL would be), then why. */
static void report3_kx(const char *prefix, mem_result k, const char *note)
{
    const char *side[3] = { "pair", "client", "server" };
    double v[3] = { k.pair, k.client, k.server };
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%s", prefix, side[i]);
        printf("%-24s ktlsx %10.1f %-5s openssl %10s %-5s ratio n/a   (%s)\n", name, v[i], "B", "n/a", "B", note);
    }
    fflush(stdout);
}

int main(void)
{
    const char *env = getenv("BENCH_CONNS");
    size_t n = env ? strtoul(env, NULL, 10) : 1000;
    if (n == 0) n = 1000;

    kx_env e = { 0 };
    e.cc = kx_client_cfg(&sc);
    e.scfg = kx_server_cfg(&sc);
    e.bare_c = ktlsx_config_new(KTLSX_CLIENT);
    e.bare_s = ktlsx_config_new(KTLSX_SERVER);
    if (!e.bare_c || !e.bare_s) die("ktlsx_config_new");
    char why[256];
    if (kx_loopback_pair(&e.cfd, &e.sfd, why, sizeof why) != 0) die("%s", why);
    kx_ktls_set_setsockopt(accept_setsockopt);

    mem_result k = kx_mem(&e, STAGE_INFLIGHT, n), o = os_mem(STAGE_INFLIGHT, n);
    report3("mem-hs-inflight", k, o);
    k = kx_mem(&e, STAGE_ESTABLISHED, n);
    o = os_mem(STAGE_ESTABLISHED, n);
    report3("mem-conn", k, o);
    report3_kx("mem-ktls", kx_mem(&e, STAGE_KTLS, n), "kernel TLS absent here: fake setsockopt, loopback pair");
    report3_kx("mem-import", kx_mem(&e, STAGE_IMPORTED, n), "imported blob, both directions in the kernel");

    kx_ktls_set_setsockopt(NULL);
    close(e.cfd);
    close(e.sfd);
    wire_free(&e.c2s);
    wire_free(&e.s2c);
    ktlsx_config_free(e.cc);
    ktlsx_config_free(e.scfg);
    ktlsx_config_free(e.bare_c);
    ktlsx_config_free(e.bare_s);
    return 0;
}
