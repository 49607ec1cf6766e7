/* ktlsxd's seccomp allow-list (libseccomp).
 *
 * Installed by the main thread once the daemon has bound its sockets, read its
 * keys and given up root, before the workers start (they inherit it).  What
 * remains to do from then on is: event loops (io_uring or epoll), door and TCP
 * sockets (accept, SCM_RIGHTS, socket options incl. TCP_ULP/SOL_TLS), the
 * handshake's crypto (memory, randomness, time), reloads (opening and reading
 * the configuration, certificates, keys, CA files, /etc/passwd and /etc/group
 * for user and group names), logging, and the exit (removing the sockets).
 * With a memcached session store (session_cache = memcached:...) the filter
 * also lets IPv4/IPv6 stream sockets (and DNS's UDP ones) be made: see below.
 * Anything else fails with EPERM rather than killing the process: a missed
 * corner (a libc or OpenSSL version reaching for something new) then costs
 * that operation an error line, not every connection in flight; what an
 * attacker would need (execve, ptrace, new sockets to the outside, mount,
 * module loading, ...) is not there either way.
 *
 * io_uring executes its operations without passing through seccomp, so the
 * event loop registers IORING_REGISTER_RESTRICTIONS on its rings (loop.c):
 * POLL_ADD and POLL_REMOVE only. */
#include "ktlsxd.h"

#include <errno.h>
#include <seccomp.h>
#include <string.h>
#include <sys/socket.h>

static const int allowed[] = {
    /* memory, threads, time, randomness */
    SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(mprotect), SCMP_SYS(madvise),
    SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(clone), SCMP_SYS(clone3),
    SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity),
    SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday),
    SCMP_SYS(getrandom), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid),
    SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigaction), SCMP_SYS(sigaltstack), SCMP_SYS(tgkill), SCMP_SYS(prlimit64), SCMP_SYS(uname),
    /* event loops */
    SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_pwait2), SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
    SCMP_SYS(eventfd2), SCMP_SYS(poll), SCMP_SYS(ppoll),
    /* descriptors and sockets handed in */
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64), SCMP_SYS(close),
    SCMP_SYS(fcntl), SCMP_SYS(dup), SCMP_SYS(lseek), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx),
    SCMP_SYS(accept4), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(recvfrom), SCMP_SYS(sendto),
    SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(shutdown),
    /* reloads: the files a configuration names; exit: the sockets' files */
    SCMP_SYS(openat), SCMP_SYS(getdents64), SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2),
    SCMP_SYS(readlink), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
    /* NSS (user and group names in allow_uids/allow_gids) may ask nscd over a unix
     * socket: connect here, socket() below for AF_UNIX only */
    SCMP_SYS(connect),
    /* the kernel door: PSKs, certificates and keys from the kernel keyrings; the
     * peer's certificate handed back as a key (x509 REMOTE_AUTH) */
    SCMP_SYS(keyctl), SCMP_SYS(add_key),
};

int kd_sandbox(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* LeakSanitizer's exit scan clones a tracer that ptraces the daemon's threads with
     * its own raw system calls (open, getdents, ptrace, wait4...): the sanitizer builds
     * run without the filter, the plain build with it. */
    kd_log(KTLSX_LOG_INFO, "seccomp: off in a sanitizer build");
    return 0;
#endif
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx) return kd_log(KTLSX_LOG_ERROR, "seccomp: cannot set up a filter"), -1;
    int rc = 0;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && rc == 0; i++)
        if (allowed[i] >= 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    const struct kd_conf *conf = kd_conf_hold();
    bool tcp = conf->tcp_store;
    kd_conf_drop();
    /* issue 12: a memcached session store (libmemcached): stream sockets over
     * IPv4/IPv6 (the type may carry SOCK_NONBLOCK/SOCK_CLOEXEC, hence the
     * mask), connect (above), and what the non-blocking I/O needs (poll,
     * fcntl, {get,set}sockopt, send/recv: already listed; strace of a daemon
     * under the filter showed nothing else refused, addresses or names from
     * /etc/hosts alike).  Host names resolved through DNS need a UDP socket
     * and glibc's resolver sends with sendmmsg: allowed too, though the tests
     * here have no DNS server to show it.  Only when a profile has a store:
     * without one, no socket to the network can be made. */
    int fams[] = { AF_INET, AF_INET6 };
    for (size_t i = 0; tcp && i < 2 && rc == 0; i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fams[i]),
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM));
        if (rc == 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fams[i]),
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_DGRAM));
    }
    if (tcp && rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sendmmsg), 0);
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0) return kd_log(KTLSX_LOG_ERROR, "seccomp: %s", strerror(-rc)), -1;
    kd_sandbox_on = true;
    kd_sandbox_tcp = tcp;
    kd_log(KTLSX_LOG_INFO, "seccomp: allow-list of %zu system calls in force (others fail with EPERM)%s",
           sizeof allowed / sizeof allowed[0] + (tcp ? 1 : 0),
           tcp ? "; TCP sockets allowed for the memcached session store" : "");
    return 0;
}
