/* kdkey: the few keyctl operations the kernel-door suite (60-kernel-door.sh)
 * needs in a VM that has no keyctl(1):
 *
 *   kdkey add KEYRING IDENTITY HEX   add a "psk" key (payload = HEX bytes) to KEYRING
 *                                    (".nvme" etc. by name from /proc/keys, or "@s"
 *                                    for a new keyring linked into the session keyring);
 *                                    prints its serial in decimal; the key is readable
 *                                    by its owner's uid (a daemon running as root)
 *   kdkey serial NAME                the serial of keyring NAME (decimal), from /proc/keys
 *
 * Exit 0, or 1 with a message. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/keyctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long keyring_by_name(const char *name)
{
    FILE *f = fopen("/proc/keys", "r");
    char line[512];
    long found = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned serial;
        char type[32], desc[256];
        if (sscanf(line, "%x %*s %*s %*s %*s %*s %*s %31s %255[^:]", &serial, type, desc) == 3 &&
            !strcmp(type, "keyring") && !strcmp(desc, name))
            found = (long)serial;
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "serial")) {
        long s = keyring_by_name(argv[2]);
        if (s < 0) return fprintf(stderr, "kdkey: no keyring %s\n", argv[2]), 1;
        printf("%ld\n", s);
        return 0;
    }
    if (argc != 5 || strcmp(argv[1], "add") != 0)
        return fprintf(stderr, "usage: kdkey add KEYRING IDENTITY HEX | kdkey serial NAME\n"), 1;
    long ring;
    if (!strcmp(argv[2], "@s")) {
        ring = syscall(SYS_add_key, "keyring", "kdkey-test", NULL, 0, KEY_SPEC_SESSION_KEYRING);
    } else {
        ring = keyring_by_name(argv[2]);
    }
    if (ring < 0) return fprintf(stderr, "kdkey: keyring %s: %s\n", argv[2], strerror(errno)), 1;
    const char *hex = argv[4];
    size_t n = strlen(hex) / 2;
    uint8_t key[64];
    if (n == 0 || n > sizeof key || strlen(hex) % 2) return fprintf(stderr, "kdkey: bad hex\n"), 1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return fprintf(stderr, "kdkey: bad hex\n"), 1;
        key[i] = (uint8_t)v;
    }
    long serial = syscall(SYS_add_key, "psk", argv[3], key, n, ring);
    if (serial < 0) return fprintf(stderr, "kdkey: add_key psk: %s\n", strerror(errno)), 1;
    /* A key of our own keyring (possessed: we may change it): possessor all; owner
     * uid view, read, search, for the daemon is not in our session.  In .nvme the
     * daemon possesses the key through its link to that keyring. */
    if (!strcmp(argv[2], "@s") && syscall(SYS_keyctl, KEYCTL_SETPERM, serial, 0x3f0b0000) < 0)
        return fprintf(stderr, "kdkey: setperm: %s\n", strerror(errno)), 1;
    printf("%ld\n", serial);
    return 0;
}
