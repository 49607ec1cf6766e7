/* memscan: search a process's readable memory for byte strings (the VM's version of
 * tests/preload/memscan.py, which needs python3; used by suite/50-apps.sh to show that a
 * server whose key ktlsxd holds does not have the private key in its memory).
 *
 *   memscan PID HEX...
 *
 * Reads /proc/PID/maps and every readable mapping through /proc/PID/mem in 16 MiB pieces
 * (overlapping by the longest needle; mappings over 1 GiB are skipped and counted, [vvar] and
 * [vsyscall] too).  Prints "found HEX at ADDR (NAME)" or "absent HEX" per needle and
 * "scanned N bytes, skipped M mappings over 1 GiB".
 * Exit status: 0 every needle absent, 1 one was found, 2 error (bad argument, nothing scanned). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_NEEDLES 16
#define PIECE (16UL << 20)

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc - 2 > MAX_NEEDLES) {
        fprintf(stderr, "usage: memscan PID HEX... (1 to %d needles)\n", MAX_NEEDLES);
        return 2;
    }
    unsigned char *needle[MAX_NEEDLES];
    size_t nlen[MAX_NEEDLES], longest = 0;
    char where[MAX_NEEDLES][160];
    int n = argc - 2;
    for (int i = 0; i < n; i++) {
        const char *h = argv[i + 2];
        size_t l = strlen(h);
        if (l == 0 || l % 2) {
            fprintf(stderr, "memscan: '%s': want an even number of hex digits\n", h);
            return 2;
        }
        needle[i] = malloc(l / 2);
        if (!needle[i]) return 2;
        for (size_t j = 0; j < l / 2; j++) {
            int a = hexval(h[2 * j]), b = hexval(h[2 * j + 1]);
            if (a < 0 || b < 0) {
                fprintf(stderr, "memscan: '%s': not hex\n", h);
                return 2;
            }
            needle[i][j] = (unsigned char)(a << 4 | b);
        }
        nlen[i] = l / 2;
        if (nlen[i] > longest) longest = nlen[i];
        where[i][0] = '\0';
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/maps", argv[1]);
    FILE *maps = fopen(path, "r");
    snprintf(path, sizeof path, "/proc/%s/mem", argv[1]);
    int mem = open(path, O_RDONLY | O_CLOEXEC);
    if (!maps || mem < 0) {
        fprintf(stderr, "memscan: pid %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    unsigned char *buf = malloc(PIECE + longest);
    if (!buf) return 2;
    unsigned long long scanned = 0;
    unsigned skipped = 0;
    char line[512];
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[8], name[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255[^\n]", &lo, &hi, perms, name) < 3) continue;
        if (perms[0] != 'r' || !strcmp(name, "[vvar]") || !strcmp(name, "[vsyscall]") ||
            !strcmp(name, "[vvar_vclock]"))
            continue;
        if (hi - lo > (1UL << 30)) {
            skipped++;
            continue;
        }
        for (unsigned long pos = lo; pos < hi;) {
            unsigned long end = hi - pos > PIECE ? pos + PIECE : hi;
            size_t want = end - pos + (end < hi ? longest - 1 : 0);
            if (end + (want - (end - pos)) > hi) want = hi - pos;
            ssize_t got = pread(mem, buf, want, (off_t)pos);
            if (got <= 0) break;
            scanned += (unsigned long long)(end - pos);
            for (int i = 0; i < n; i++) {
                if (where[i][0] || (size_t)got < nlen[i]) continue;
                void *at = memmem(buf, (size_t)got, needle[i], nlen[i]);
                if (at)
                    snprintf(where[i], sizeof where[i], "%#lx (%s)", pos + (unsigned long)((unsigned char *)at - buf),
                             name[0] ? name : "anonymous");
            }
            pos = end;
        }
    }
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (where[i][0]) printf("found %s at %s\n", argv[i + 2], where[i]), found = 1;
        else printf("absent %s\n", argv[i + 2]);
    }
    printf("scanned %llu bytes, skipped %u mappings over 1 GiB\n", scanned, skipped);
    return scanned == 0 ? 2 : found;
}
