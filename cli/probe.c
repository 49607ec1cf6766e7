/* `ktlsx probe`: one line per kernel TLS capability, in a fixed
 * "key: value" format that scripts (and the VM test harness) can grep:
 *
 *   kernel: Linux 6.14.0
 *   tls-ulp: yes
 *   tls12-aes-128-gcm: tx=yes rx=yes
 *   ...
 *   tls13-rekey: yes
 *   handshake-genl: no (family not registered (CONFIG_NET_HANDSHAKE))
 *   ktls: usable
 */
#include "probe.h"

#include <stdio.h>
#include <string.h>

#include "ktls/ktls.h"

static void usage(FILE *out)
{
    fputs("usage: ktlsx probe\n"
          "Check what kernel TLS offload this machine supports (tls ULP, ciphers\n"
          "per TLS version and direction, TLS 1.3 re-keying, the handshake netlink\n"
          "family). Exit status 0 if kernel TLS is usable, 1 if not.\n",
          out);
}

/* "yes" or "no (why)" for one verdict. */
static void print_verdict_line(const char *key, const kx_probe_verdict *v)
{
    if (v->accepted)
        printf("%s: yes\n", key);
    else
        printf("%s: no (%s)\n", key, v->why);
}

int ktlsx_cmd_probe(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "ktlsx probe: unexpected argument '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }

    kx_probe_report r;
    kx_ktls_probe(&r);

    printf("kernel: %s\n", r.kernel);
    if (r.ulp)
        printf("tls-ulp: yes\n");
    else
        printf("tls-ulp: no (%s)\n", r.ulp_why);

    static const char *const vnames[KX_PROBE_VERSIONS] = { "tls12", "tls13" };
    for (int v = 0; v < KX_PROBE_VERSIONS; v++) {
        for (int c = 0; c < KX_PROBE_CIPHERS; c++) {
            const kx_probe_verdict *tx = &r.tx[v][c], *rx = &r.rx[v][c];
            printf("%s-%s: tx=%s rx=%s", vnames[v], kx_probe_cipher_name(c),
                   tx->accepted ? "yes" : "no", rx->accepted ? "yes" : "no");
            /* One reason is enough when both directions failed alike. */
            if (!tx->accepted && !rx->accepted && strcmp(tx->why, rx->why) == 0)
                printf(" (%s)", tx->why);
            else {
                if (!tx->accepted)
                    printf(" (tx: %s)", tx->why);
                if (!rx->accepted)
                    printf(" (rx: %s)", rx->why);
            }
            putchar('\n');
        }
    }
    print_verdict_line("tls13-rekey", &r.rekey);
    if (r.handshake_genl == 1)
        printf("handshake-genl: yes\n");
    else
        printf("handshake-genl: no (%s)\n", r.genl_why);

    if (r.usable)
        printf("ktls: usable\n");
    else
        printf("ktls: unavailable (%s)\n", r.why);
    fflush(stdout);
    return r.usable ? 0 : 1;
}
