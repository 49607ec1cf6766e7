/* Heap bytes per established, idle connection: BENCH_CONNS (default 1000)
 * TLS 1.3 ECDSA/x25519/AES-128-GCM client+server pairs are kept open after
 * the handshake (client has processed the server's tickets), and the growth
 * of glibc's in-use heap (mallinfo2().uordblks) is divided by the count.
 * The configurations / SSL_CTXs, the wire buffers and the shared memory
 * BIOs exist before the baseline, so only per-connection state is counted.
 * Freeing the clients first splits the figure into client and server.
 *
 * Output: "mem-conn-pair ..." (client+server), "mem-conn-client", "mem-conn-server",
 * in bytes per connection; the ratio is ktlsx/OpenSSL (lower is better here). */
#include <malloc.h>

#include "bench.h"

static const scenario sc = { "mem", TLS1_3_VERSION, "ecdsa", "TLS_AES_128_GCM_SHA256", "x25519", 0 };

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

typedef struct {
    double pair, client, server;
} mem_result;

static mem_result kx_mem(size_t n)
{
    ktlsx_config *cc = kx_client_cfg(&sc), *scfg = kx_server_cfg(&sc);
    wire c2s = { 0 }, s2c = { 0 };
    ktlsx_conn **c = calloc(n, sizeof *c), **s = calloc(n, sizeof *s);
    if (!c || !s) die("out of memory");
    for (int i = 0; i < 50; i++) { /* warm-up: lazy initialisation, wire buffers */
        ktlsx_conn *a = ktlsx_conn_new(cc, "localhost"), *b = ktlsx_conn_new(scfg, NULL);
        kx_handshake_pair(a, b, &c2s, &s2c);
        kx_settle_client(a, &s2c);
        wire_clear(&c2s);
        wire_clear(&s2c);
        ktlsx_conn_free(a);
        ktlsx_conn_free(b);
    }
    size_t base = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        c[i] = ktlsx_conn_new(cc, "localhost");
        s[i] = ktlsx_conn_new(scfg, NULL);
        if (!c[i] || !s[i]) die("ktlsx_conn_new");
        kx_handshake_pair(c[i], s[i], &c2s, &s2c);
        kx_settle_client(c[i], &s2c);
        wire_clear(&c2s);
        wire_clear(&s2c);
    }
    size_t all = heap_in_use();
    for (size_t i = 0; i < n; i++) ktlsx_conn_free(c[i]);
    size_t servers = heap_in_use();
    for (size_t i = 0; i < n; i++) ktlsx_conn_free(s[i]);
    free(c);
    free(s);
    wire_free(&c2s);
    wire_free(&s2c);
    ktlsx_config_free(cc);
    ktlsx_config_free(scfg);
    mem_result r = { (double)(all - base) / (double)n, (double)(all - servers) / (double)n,
                     (double)(servers - base) / (double)n };
    return r;
}

static mem_result os_mem(size_t n)
{
    SSL_CTX *cctx = os_client_ctx(&sc), *sctx = os_server_ctx(&sc);
    os_net net;
    os_net_init(&net);
    SSL **c = calloc(n, sizeof *c), **s = calloc(n, sizeof *s);
    if (!c || !s) die("out of memory");
    for (int i = 0; i < 50; i++) {
        SSL *a, *b;
        os_pair_new(cctx, sctx, &net, &a, &b);
        os_handshake_pair(a, b);
        os_settle_client(a);
        os_net_clear(&net);
        os_pair_free(a, b);
    }
    size_t base = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        os_pair_new(cctx, sctx, &net, &c[i], &s[i]);
        os_handshake_pair(c[i], s[i]);
        os_settle_client(c[i]);
        os_net_clear(&net);
    }
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

int main(void)
{
    const char *e = getenv("BENCH_CONNS");
    size_t n = e ? strtoul(e, NULL, 10) : 1000;
    if (n == 0) n = 1000;
    mem_result k = kx_mem(n), o = os_mem(n);
    report("mem-conn-pair", k.pair, o.pair, "B");
    report("mem-conn-client", k.client, o.client, "B");
    report("mem-conn-server", k.server, o.server, "B");
    return 0;
}
