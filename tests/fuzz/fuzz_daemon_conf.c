/* ktlsxd's configuration parser (daemon/conf.c, compiled in) on any text:
 * what an operator's editor, a bad deployment script or a truncated copy may
 * leave in /etc/ktlsx/ktlsxd.conf.  The daemon reads it at start and at every
 * reload, so a bad file must end in one "FILE:LINE: problem" (or "FILE:
 * problem") and no configuration, never a crash, a leak or a half-built one.
 *
 * Input: the file's bytes (written to a memfd, read through its /proc path
 * as the daemon reads a path).  A refusal must leave a message naming the
 * file; an accepted configuration is freed again (LeakSanitizer checks both
 * paths).  Seeds: tests/fuzz/corpus/fuzz_daemon_conf (a full file, a kernel
 * door file, broken lines). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../daemon/conf.c"
#include "../unit/helpers/kd_quiet_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (size > 64 * 1024) return 0;
    if (fd < 0) {
        fd = memfd_create("ktlsxd.conf", MFD_CLOEXEC);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    char err[1024] = "";
    struct kd_conf *c = kd_conf_load(path, err, sizeof err);
    if (c) {
        kd_conf_free(c);
    } else {
        if (strncmp(err, path, strlen(path)) != 0) abort(); /* the message names the file */
        if (strnlen(err, sizeof err) == sizeof err) abort();
    }
    return 0;
}
