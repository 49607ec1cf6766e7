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

#include <ktlsx/ktlsx.h>

static void usage(FILE *out)
{
    fputs("usage: ktlsx probe\n"
          "Check what kernel TLS offload this machine supports (tls ULP, ciphers\n"
          "per TLS version and direction, TLS 1.3 re-keying, the handshake netlink\n"
          "family). Exit status 0 if kernel TLS is usable, 1 if not.\n",
          out);
}

/* Every line of the library's report goes to stdout as it is: the format is
 * the library's (ktlsx_probe_lines), stable for the scripts that parse it. */
static void print_line(void *arg, int level, const char *line)
{
    (void)level;
    FILE *out = arg;
    fputs(line, out);
    fputc('\n', out);
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

    struct ktlsx_probe_report r;
    int usable = ktlsx_probe(&r);
    (void)ktlsx_probe_lines(&r, print_line, stdout);
    fflush(stdout);
    return usable == 1 ? 0 : 1;
}
