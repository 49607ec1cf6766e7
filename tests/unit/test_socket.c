/* The TLS socket (libktlsx/io/socket.c): every ktlsx_socket_* call on real
 * loopback TCP pairs, a client and a server socket driven in one thread by
 * their step calls (or, for the blocking calls, the peer in a second thread).
 *
 * This host has no kernel TLS: auto mode falls back with one log line, require
 * mode fails, off mode never tries.  Where the kernel data path itself is the
 * point, a fake setsockopt (kx_ktls_set_setsockopt) "installs" keys on a plain
 * TCP socket, so both ends carry plaintext through the kernel-TLS code paths
 * (send/sendfile/recvmsg) and the bytes still arrive exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "handshake/conn.h"
#include "core/wipe.h"
#include "ktls/ktls.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

#define MIB (1024 * 1024)

/* ---- helpers ---- */

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Log lines of every configuration made here. */
static struct {
    int count;
    int level[32];
    char line[32][400];
} logs;

static void log_fn(void *arg, int level, const char *line)
{
    (void)arg;
    if (logs.count >= 32) return;
    logs.level[logs.count] = level;
    snprintf(logs.line[logs.count], sizeof logs.line[0], "%s", line);
    logs.count++;
}

static const char *log_find(const char *needle)
{
    for (int i = 0; i < logs.count; i++)
        if (strstr(logs.line[i], needle)) return logs.line[i];
    return NULL;
}

static void expect_error(const ktlsx_socket *s, const char *needle)
{
    const char *e = ktlsx_socket_error(s);
    if (!strstr(e, needle)) fail_msg("socket error \"%s\" lacks \"%s\"", e, needle);
}

typedef struct {
    ktlsx_config *ccfg, *scfg;
    ktlsx_socket *c, *s;
    int cfd, sfd;
} spair;

/* TCP_NODELAY: what one side sent is readable on the other at once (Nagle
 * would hold a small record back until the previous one is acknowledged). */
static void loopback(int *cfd, int *sfd)
{
    char why[200];
    if (kx_loopback_pair(cfd, sfd, why, sizeof why) != 0) fail_msg("%s", why);
    int one = 1;
    assert_int_equal(setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    assert_int_equal(setsockopt(*sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
}

/* Configurations only (sockets made by the caller). */
static void spair_cfgs(spair *p, bool tls12)
{
    memset(p, 0, sizeof *p);
    p->cfd = p->sfd = -1;
    p->ccfg = kxt_client_cfg(NULL, NULL);
    p->scfg = kxt_server_cfg("ecdsa", NULL, NULL);
    if (tls12) KXT_CFG_OK(p->ccfg, ktlsx_config_set_versions(p->ccfg, KTLSX_TLS12, KTLSX_TLS12));
    KXT_CFG_OK(p->ccfg, ktlsx_config_set_log(p->ccfg, log_fn, NULL));
    KXT_CFG_OK(p->scfg, ktlsx_config_set_log(p->scfg, log_fn, NULL));
}

static void spair_open(spair *p, bool tls12, enum ktlsx_ktls_mode mode)
{
    spair_cfgs(p, tls12);
    loopback(&p->cfd, &p->sfd);
    p->c = ktlsx_socket_new(p->ccfg, p->cfd, "localhost");
    p->s = ktlsx_socket_new(p->scfg, p->sfd, NULL);
    assert_non_null(p->c);
    assert_non_null(p->s);
    assert_int_equal(ktlsx_socket_set_ktls(p->c, mode, KTLSX_KTLS_TX | KTLSX_KTLS_RX), 0);
    assert_int_equal(ktlsx_socket_set_ktls(p->s, mode, KTLSX_KTLS_TX | KTLSX_KTLS_RX), 0);
}

static void spair_close(spair *p)
{
    ktlsx_socket_free(p->c);
    ktlsx_socket_free(p->s);
    if (p->cfd >= 0) close(p->cfd);
    if (p->sfd >= 0) close(p->sfd);
    ktlsx_config_free(p->ccfg);
    ktlsx_config_free(p->scfg);
    memset(p, 0, sizeof *p);
}

static bool wants(int rc) { return rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE; }
static short events_of(int rc) { return rc == KTLSX_IO_WANT_WRITE ? POLLOUT : POLLIN; }

/* Both handshakes by steps, waiting with poll in between; the results. */
static void handshake_steps(ktlsx_socket *c, ktlsx_socket *s, int *rc_out, int *rs_out)
{
    int rc = KTLSX_IO_WANT_READ, rs = KTLSX_IO_WANT_READ;
    int64_t end = ms_now() + 10000;
    while (ms_now() < end) {
        if (wants(rc)) rc = ktlsx_socket_handshake_step(c);
        if (wants(rs)) rs = ktlsx_socket_handshake_step(s);
        if (!wants(rc) && !wants(rs)) break;
        struct pollfd pfd[2] = { { ktlsx_socket_fd(c), wants(rc) ? events_of(rc) : 0, 0 },
                                 { ktlsx_socket_fd(s), wants(rs) ? events_of(rs) : 0, 0 } };
        assert_true(poll(pfd, 2, 1000) >= 0);
    }
    *rc_out = rc;
    *rs_out = rs;
}

static void spair_handshake(spair *p)
{
    int rc, rs;
    handshake_steps(p->c, p->s, &rc, &rs);
    if (rc != KTLSX_IO_OK || rs != KTLSX_IO_OK)
        fail_msg("handshake: client %d (%s), server %d (%s)", rc, ktlsx_socket_error(p->c), rs,
                 ktlsx_socket_error(p->s));
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
    uint8_t *d = malloc(len ? len : 1);
    assert_non_null(d);
    uint32_t x = 0x9e3779b9u ^ seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    return d;
}

/* Read exactly len bytes by steps (the writer has already queued them all). */
static void read_steps(ktlsx_socket *b, uint8_t *out, size_t len)
{
    size_t have = 0;
    int64_t end = ms_now() + 10000;
    while (have < len) {
        size_t got = 0;
        int rc = ktlsx_socket_read_step(b, out + have, len - have, &got);
        if (rc == KTLSX_IO_OK) {
            assert_true(got > 0);
            have += got;
            continue;
        }
        if (rc != KTLSX_IO_WANT_READ) fail_msg("read_step: %d (%s)", rc, ktlsx_socket_error(b));
        if (ms_now() > end) fail_msg("read_step: stuck at %zu of %zu bytes", have, len);
        struct pollfd pfd = { ktlsx_socket_fd(b), POLLIN, 0 };
        assert_true(poll(&pfd, 1, 1000) >= 0);
    }
}

/* `len` bytes from a to b by steps in one thread.  With fill_first, a writes
 * until write_step reports WANT_WRITE (the socket buffers are full) before b
 * reads anything.  Returns how often write_step said WANT_WRITE. */
static unsigned transfer_steps(ktlsx_socket *a, ktlsx_socket *b, const uint8_t *data, size_t len, bool fill_first)
{
    uint8_t *got = malloc(len);
    assert_non_null(got);
    size_t taken = 0, have = 0;
    unsigned want_write = 0;
    bool reading = !fill_first;
    int64_t end = ms_now() + 30000;
    while (have < len) {
        if (ms_now() > end) fail_msg("transfer stuck: %zu taken, %zu read of %zu", taken, have, len);
        int wr = KTLSX_IO_OK;
        while (taken < len) {
            size_t sent = 0;
            wr = ktlsx_socket_write_step(a, data + taken, len - taken, &sent);
            if (wr == KTLSX_IO_WANT_WRITE) {
                assert_int_equal(sent, 0);
                want_write++;
                if (!reading) {
                    /* The socket is full and the rest waits with us. */
                    assert_true(ktlsx_socket_pending_output(a) > 0);
                    reading = true;
                }
                break;
            }
            if (wr != KTLSX_IO_OK) fail_msg("write_step: %d (%s)", wr, ktlsx_socket_error(a));
            assert_true(sent > 0);
            taken += sent;
        }
        if (taken == len) {
            wr = ktlsx_socket_flush_step(a);
            if (wr != KTLSX_IO_OK && wr != KTLSX_IO_WANT_WRITE) fail_msg("flush_step: %d", wr);
            if (wr == KTLSX_IO_OK) {
                assert_int_equal(ktlsx_socket_pending_output(a), 0);
                reading = true;
            }
        }
        int rr = KTLSX_IO_WANT_READ;
        while (reading && have < len) {
            size_t n = 0;
            rr = ktlsx_socket_read_step(b, got + have, len - have, &n);
            if (rr != KTLSX_IO_OK) break;
            have += n;
        }
        if (rr != KTLSX_IO_OK && rr != KTLSX_IO_WANT_READ) fail_msg("read_step: %d (%s)", rr, ktlsx_socket_error(b));
        if (have == len) break;
        struct pollfd pfd[2] = { { ktlsx_socket_fd(a), wr == KTLSX_IO_WANT_WRITE ? POLLOUT : 0, 0 },
                                 { ktlsx_socket_fd(b), reading ? POLLIN : 0, 0 } };
        assert_true(poll(pfd, 2, 200) >= 0);
    }
    assert_memory_equal(got, data, len);
    free(got);
    return want_write;
}

static void small_buffers(int fd)
{
    int v = 16384;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v), 0);
}

static bool fd_readable(int fd)
{
    struct pollfd pfd = { fd, POLLIN, 0 };
    return poll(&pfd, 1, 0) == 1;
}

/* A reader thread: blocking ktlsx_socket_read of `want` bytes. */
typedef struct {
    ktlsx_socket *s;
    uint8_t *buf;
    size_t want, got;
    long last;
    pthread_t t;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    while (r->got < r->want) {
        long n = ktlsx_socket_read(r->s, r->buf + r->got, r->want - r->got);
        r->last = n;
        if (n <= 0) break;
        r->got += (size_t)n;
    }
    return NULL;
}

static void reader_start(reader *r, ktlsx_socket *s, size_t want)
{
    memset(r, 0, sizeof *r);
    r->s = s;
    r->want = want;
    r->buf = malloc(want ? want : 1);
    assert_non_null(r->buf);
    assert_int_equal(pthread_create(&r->t, NULL, reader_main, r), 0);
}

static void reader_join(reader *r, const uint8_t *expect)
{
    assert_int_equal(pthread_join(r->t, NULL), 0);
    if (r->got != r->want) fail_msg("reader got %zu of %zu (last %ld: %s)", r->got, r->want, r->last, ktlsx_socket_error(r->s));
    assert_memory_equal(r->buf, expect, r->want);
    free(r->buf);
}

static const char *tmp_file(const uint8_t *data, size_t len, int *fd)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/kxt_sendfile_XXXXXX");
    *fd = mkstemp(path);
    assert_true(*fd >= 0);
    assert_int_equal(write(*fd, data, len), (ssize_t)len);
    return path;
}

/* ---- creation and accessors ---- */

static void test_new_wrap_free_accessors(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    loopback(&p.cfd, &p.sfd);
    assert_null(ktlsx_socket_new(NULL, p.cfd, "localhost"));
    assert_null(ktlsx_socket_new(p.ccfg, -1, "localhost"));
    assert_null(ktlsx_socket_wrap(NULL, p.cfd));
    ktlsx_conn *conn = ktlsx_conn_new(p.ccfg, "localhost");
    assert_null(ktlsx_socket_wrap(conn, -1)); /* refused: conn stays the caller's */
    ktlsx_socket_free(NULL);
    p.c = ktlsx_socket_wrap(conn, p.cfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    assert_non_null(p.c);
    assert_non_null(p.s);
    assert_ptr_equal(ktlsx_socket_conn(p.c), conn);
    assert_int_equal(ktlsx_socket_fd(p.c), p.cfd);
    assert_int_equal(ktlsx_socket_fd(p.s), p.sfd);
    assert_string_equal(ktlsx_socket_error(p.c), "");
    assert_int_equal(ktlsx_socket_ktls(p.c), 0);
    assert_string_equal(ktlsx_socket_ktls_name(p.c), "off");
    assert_string_equal(ktlsx_socket_ktls_why(p.c), "");
    assert_int_equal(ktlsx_socket_timeout_ms(p.c), -1); /* no deadline before the first step */
    assert_int_equal(ktlsx_socket_pending_output(p.c), 0);
    assert_int_equal(ktlsx_socket_pending_plaintext(p.c), 0);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_OFF, 0), 0);
    assert_int_equal(ktlsx_socket_set_ktls(p.s, KTLSX_KTLS_MODE_OFF, 0), 0);
    spair_handshake(&p);
    assert_int_equal(ktlsx_version(ktlsx_socket_conn(p.c)), KTLSX_TLS13);
    spair_close(&p); /* frees the wrapped conn with its socket; the fds are ours */
}

/* Wrong arguments never crash: a NULL socket answers "nothing" / FAILED /
 * -1; a NULL buffer, out-parameter, bad file or offset is refused with a
 * message naming it, and the connection carries on. */
static void test_bad_arguments(void **state)
{
    (void)state;
    size_t n = 7;
    int64_t off = 0;
    uint8_t b[8];
    assert_null(ktlsx_socket_conn(NULL));
    assert_int_equal(ktlsx_socket_fd(NULL), -1);
    assert_non_null(ktlsx_socket_error(NULL));
    assert_string_equal(ktlsx_socket_ktls_why(NULL), "");
    assert_string_equal(ktlsx_socket_ktls_name(NULL), "off");
    assert_int_equal(ktlsx_socket_ktls(NULL), 0);
    assert_int_equal(ktlsx_socket_clean_close(NULL), 0);
    assert_int_equal(ktlsx_socket_pending_output(NULL), 0);
    assert_int_equal(ktlsx_socket_pending_plaintext(NULL), 0);
    assert_int_equal(ktlsx_socket_timeout_ms(NULL), -1);
    assert_int_equal(ktlsx_socket_set_ktls(NULL, KTLSX_KTLS_MODE_OFF, 0), -1);
    assert_int_equal(ktlsx_socket_set_timeouts(NULL, 1, 1), -1);
    assert_int_equal(ktlsx_socket_handshake_step(NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_read_step(NULL, b, sizeof b, &n), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_write_step(NULL, b, sizeof b, &n), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_sendfile_step(NULL, 0, &off, 1, &n), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_flush_step(NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_shutdown_step(NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_key_update(NULL, 1), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_handshake(NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_read(NULL, b, sizeof b), -1);
    assert_int_equal(ktlsx_socket_write(NULL, b, sizeof b), -1);
    assert_int_equal(ktlsx_socket_sendfile(NULL, 0, &off, 1), -1);
    assert_int_equal(ktlsx_socket_flush(NULL), -1);
    assert_int_equal(ktlsx_socket_shutdown(NULL), -1);

    spair p;
    spair_open(&p, false, KTLSX_KTLS_MODE_OFF);
    spair_handshake(&p);
    assert_int_equal(ktlsx_socket_read_step(p.s, b, sizeof b, NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_write_step(p.s, b, sizeof b, NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_sendfile_step(p.s, 0, &off, 1, NULL), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_read_step(p.s, NULL, 5, &n), KTLSX_IO_FAILED);
    expect_error(p.s, "no buffer (NULL) for 5 bytes");
    assert_int_equal(ktlsx_socket_read(p.s, NULL, 6), -1);
    expect_error(p.s, "for 6 bytes");
    assert_int_equal(ktlsx_socket_write_step(p.s, NULL, 9, &n), KTLSX_IO_FAILED);
    expect_error(p.s, "no buffer (NULL) for 9 bytes");
    assert_int_equal(ktlsx_socket_write(p.s, NULL, 3), -1);
    int ffd;
    unlink(tmp_file((const uint8_t *)"abc", 3, &ffd));
    assert_int_equal(ktlsx_socket_sendfile_step(p.s, -3, &off, 1, &n), KTLSX_IO_FAILED);
    expect_error(p.s, "file descriptor -3");
    assert_int_equal(ktlsx_socket_sendfile_step(p.s, ffd, NULL, 1, &n), KTLSX_IO_FAILED);
    expect_error(p.s, "no offset");
    off = -42;
    assert_int_equal(ktlsx_socket_sendfile_step(p.s, ffd, &off, 1, &n), KTLSX_IO_FAILED);
    expect_error(p.s, "offset -42 is negative");
    assert_int_equal(ktlsx_socket_sendfile(p.s, ffd, &off, 1), -1);
    assert_int_equal(off, -42);
    /* None of that failed the connection. */
    off = 0;
    assert_int_equal(ktlsx_socket_sendfile(p.s, ffd, &off, 3), 0);
    read_steps(p.c, b, 3);
    assert_memory_equal(b, "abc", 3);
    assert_int_equal(ktlsx_socket_write(p.c, "def", 3), 0);
    read_steps(p.s, b, 3);
    assert_memory_equal(b, "def", 3);
    close(ffd);
    spair_close(&p);
}

/* ---- kernel TLS modes on a host without kernel TLS ---- */

static void run_modes(bool tls12)
{
    /* auto: falls back, one warning line saying why, and works. */
    logs.count = 0;
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    assert_int_equal(ktlsx_socket_ktls(p.c), 0);
    assert_string_equal(ktlsx_socket_ktls_name(p.s), "off");
    assert_true(ktlsx_socket_ktls_why(p.c)[0] != '\0');
    assert_true(ktlsx_socket_ktls_why(p.s)[0] != '\0');
    const char *l = log_find("kernel TLS unavailable, using user-space records");
    if (!l) fail_msg("no fallback log line (%d lines)", logs.count);
    assert_non_null(strstr(l, ktlsx_socket_ktls_why(p.c)));
    assert_int_equal(logs.level[0], KTLSX_LOG_WARNING);
    uint8_t *d = pattern(5000, 1);
    transfer_steps(p.c, p.s, d, 5000, false);
    transfer_steps(p.s, p.c, d, 5000, false);
    free(d);
    assert_int_equal(ktlsx_version(ktlsx_socket_conn(p.s)), tls12 ? KTLSX_TLS12 : KTLSX_TLS13);
    spair_close(&p);

    /* require: the connection fails, naming the requirement and the cause. */
    logs.count = 0;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_REQUIRE);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_OFF, 0), 0);
    int rc, rs;
    handshake_steps(p.c, p.s, &rc, &rs);
    assert_int_equal(rs, KTLSX_IO_FAILED);
    expect_error(p.s, "kernel TLS required but unavailable");
    expect_error(p.s, ktlsx_socket_ktls_why(p.s));
    size_t got;
    uint8_t b[4];
    assert_int_equal(ktlsx_socket_read_step(p.s, b, sizeof b, &got), KTLSX_IO_FAILED); /* sticky */
    assert_int_equal(ktlsx_socket_write_step(p.s, "x", 1, &got), KTLSX_IO_FAILED);
    spair_close(&p);

    /* off: never tries, says nothing. */
    logs.count = 0;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_OFF);
    spair_handshake(&p);
    assert_int_equal(logs.count, 0);
    assert_string_equal(ktlsx_socket_ktls_why(p.c), "");
    assert_string_equal(ktlsx_socket_ktls_why(p.s), "");
    spair_close(&p);
}

static void test_ktls_modes_tls13(void **state) { (void)state; run_modes(false); }
static void test_ktls_modes_tls12(void **state) { (void)state; run_modes(true); }

/* set_ktls / set_timeouts refuse bad values, naming them, and change nothing. */
static void test_setters_refuse_bad_values(void **state)
{
    (void)state;
    spair p;
    spair_open(&p, false, KTLSX_KTLS_MODE_OFF);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, (enum ktlsx_ktls_mode)7, KTLSX_KTLS_TX), -1);
    expect_error(p.c, "mode 7");
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_AUTO, 0x4), -1);
    expect_error(p.c, "0x4");
    assert_int_equal(ktlsx_socket_set_timeouts(p.c, -5, 0), -1);
    expect_error(p.c, "-5");
    assert_int_equal(ktlsx_socket_set_timeouts(p.c, 100, -7), -1);
    expect_error(p.c, "-7");
    /* Nothing changed: still off (no log line), no idle timeout. */
    logs.count = 0;
    spair_handshake(&p);
    assert_int_equal(logs.count, 0);
    assert_int_equal(ktlsx_socket_timeout_ms(p.c), -1);
    /* Too late once the data path is chosen. */
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_AUTO, KTLSX_KTLS_TX), -1);
    expect_error(p.c, "before the handshake");
    assert_int_equal(ktlsx_socket_set_timeouts(p.c, 0, 500), 0);
    int left = ktlsx_socket_timeout_ms(p.c);
    assert_true(left > 0 && left <= 500);
    spair_close(&p);
}

/* ---- the handshake ---- */

/* Steps never wait: a peer that sends nothing gets WANT_READ at once, on a
 * blocking fd, from the client and the server side alike. */
static void test_handshake_step_never_blocks(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    loopback(&p.cfd, &p.sfd);
    p.c = ktlsx_socket_new(p.ccfg, p.cfd, "localhost");
    for (int i = 0; i < 3; i++) {
        int64_t t0 = ms_now();
        assert_int_equal(ktlsx_socket_handshake_step(p.c), KTLSX_IO_WANT_READ);
        assert_true(ms_now() - t0 < 100);
    }
    int left = ktlsx_socket_timeout_ms(p.c);
    assert_true(left > 29000 && left <= 30000); /* the default handshake timeout started */
    size_t got = 99;
    uint8_t b[16];
    int64_t t0 = ms_now();
    assert_int_equal(ktlsx_socket_read_step(p.c, b, sizeof b, &got), KTLSX_IO_WANT_READ);
    assert_int_equal(got, 0);
    assert_int_equal(ktlsx_socket_write_step(p.c, "x", 1, &got), KTLSX_IO_WANT_READ);
    assert_true(ms_now() - t0 < 100);
    ktlsx_socket_free(p.c);
    p.c = NULL;

    /* The server side: the ClientHello never comes. */
    close(p.cfd);
    close(p.sfd);
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    for (int i = 0; i < 3; i++) {
        t0 = ms_now();
        assert_int_equal(ktlsx_socket_handshake_step(p.s), KTLSX_IO_WANT_READ);
        assert_true(ms_now() - t0 < 100);
    }
    assert_int_equal(ktlsx_socket_pending_output(p.s), 0);
    spair_close(&p);
}

/* The blocking handshake is cut at the handshake timeout, with TIMEOUT, an
 * error naming it and a log line; the socket stays failed. */
static void test_handshake_timeout(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    assert_int_equal(ktlsx_socket_set_timeouts(p.s, 200, 0), 0);
    logs.count = 0;
    int64_t t0 = ms_now();
    assert_int_equal(ktlsx_socket_handshake(p.s), KTLSX_IO_TIMEOUT);
    int64_t took = ms_now() - t0;
    if (took < 190 || took > 2000) fail_msg("cut after %lld ms, not 200", (long long)took);
    expect_error(p.s, "handshake timed out after 0.200 s");
    assert_non_null(log_find("handshake timed out"));
    assert_int_equal(ktlsx_socket_timeout_ms(p.s), 0);
    assert_int_equal(ktlsx_socket_handshake_step(p.s), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_handshake(p.s), KTLSX_IO_FAILED);
    ktlsx_socket_free(p.s);

    /* The client, by steps: past the deadline the next step times out. */
    p.s = NULL;
    p.c = ktlsx_socket_new(p.ccfg, p.cfd, "localhost");
    assert_int_equal(ktlsx_socket_set_timeouts(p.c, 50, 0), 0);
    assert_int_equal(ktlsx_socket_handshake_step(p.c), KTLSX_IO_WANT_READ);
    usleep(80 * 1000);
    assert_int_equal(ktlsx_socket_handshake_step(p.c), KTLSX_IO_TIMEOUT);
    expect_error(p.c, "handshake timed out after 0.050 s");
    spair_close(&p);
}

/* A handshake timeout of 0 means none. */
static void test_handshake_no_timeout(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    assert_int_equal(ktlsx_socket_set_timeouts(p.s, 0, 0), 0);
    assert_int_equal(ktlsx_socket_handshake_step(p.s), KTLSX_IO_WANT_READ);
    assert_int_equal(ktlsx_socket_timeout_ms(p.s), -1);
    spair_close(&p);
}

/* A peer that closes TCP during the handshake ends it with CLOSED, as the
 * header promises for the blocking handshake, and the error says so. */
static void test_handshake_peer_closes(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    loopback(&p.cfd, &p.sfd);
    p.c = ktlsx_socket_new(p.ccfg, p.cfd, "localhost");
    close(p.sfd);
    p.sfd = -1;
    int rc = ktlsx_socket_handshake(p.c);
    if (rc != KTLSX_IO_CLOSED) fail_msg("handshake: %d (%s), not CLOSED", rc, ktlsx_socket_error(p.c));
    expect_error(p.c, "closed by peer during the handshake");
    assert_int_equal(ktlsx_socket_clean_close(p.c), 0);
    assert_int_equal(ktlsx_socket_handshake_step(p.c), KTLSX_IO_FAILED);
    ktlsx_socket_free(p.c);
    p.c = NULL;
    close(p.cfd);

    /* The server: the client sends half a ClientHello and leaves. */
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    const uint8_t half[] = { 0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00 };
    assert_int_equal(write(p.cfd, half, sizeof half), (ssize_t)sizeof half);
    close(p.cfd);
    p.cfd = -1;
    rc = ktlsx_socket_handshake(p.s);
    if (rc != KTLSX_IO_CLOSED) fail_msg("handshake: %d (%s), not CLOSED", rc, ktlsx_socket_error(p.s));
    spair_close(&p);
}

/* Garbage from the peer: FAILED, and the peer sees a fatal alert. */
static void test_garbage_peer(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(write(p.cfd, http, strlen(http)), (ssize_t)strlen(http));
    assert_int_equal(ktlsx_socket_handshake(p.s), KTLSX_IO_FAILED);
    uint8_t alert_desc = ktlsx_alert(ktlsx_socket_conn(p.s));
    assert_true(alert_desc != 0);
    expect_error(p.s, "alert");
    expect_error(p.s, ktlsx_alert_name(alert_desc));
    uint8_t rec[16];
    assert_int_equal(read(p.cfd, rec, sizeof rec), 7);
    assert_int_equal(rec[0], KX_CT_ALERT);
    assert_int_equal(rec[4], 2);
    assert_int_equal(rec[5], 2); /* fatal */
    assert_int_equal(rec[6], alert_desc);
    ktlsx_socket_free(p.s);
    p.s = NULL;
    close(p.cfd);
    close(p.sfd);

    /* The client: a server that answers its ClientHello with text. */
    loopback(&p.cfd, &p.sfd);
    p.c = ktlsx_socket_new(p.ccfg, p.cfd, "localhost");
    assert_int_equal(ktlsx_socket_handshake_step(p.c), KTLSX_IO_WANT_READ);
    uint8_t hello[4096];
    ssize_t n = read(p.sfd, hello, sizeof hello);
    assert_true(n > 5);
    assert_int_equal(hello[0], KX_CT_HANDSHAKE);
    const char reply[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    assert_int_equal(write(p.sfd, reply, strlen(reply)), (ssize_t)strlen(reply));
    assert_int_equal(ktlsx_socket_handshake(p.c), KTLSX_IO_FAILED);
    alert_desc = ktlsx_alert(ktlsx_socket_conn(p.c));
    assert_int_equal(read(p.sfd, rec, sizeof rec), 7);
    assert_int_equal(rec[0], KX_CT_ALERT);
    assert_int_equal(rec[5], 2);
    assert_int_equal(rec[6], alert_desc);
    spair_close(&p);
}

/* ---- reading and writing ---- */

/* 1 MiB each way by steps, byte-exact, through full socket buffers. */
static void run_bulk(bool tls12)
{
    spair p;
    spair_cfgs(&p, tls12);
    loopback(&p.cfd, &p.sfd);
    small_buffers(p.cfd);
    small_buffers(p.sfd);
    p.c = ktlsx_socket_new(p.ccfg, p.cfd, "localhost");
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    spair_handshake(&p);
    uint8_t *d = pattern(MIB, tls12);
    assert_true(transfer_steps(p.c, p.s, d, MIB, true) > 0);
    assert_true(transfer_steps(p.s, p.c, d, MIB, true) > 0);
    /* And once more without waiting for the buffers to fill. */
    transfer_steps(p.c, p.s, d + 1, MIB - 1, false);
    free(d);
    assert_int_equal(ktlsx_socket_pending_output(p.c), 0);
    assert_int_equal(ktlsx_socket_pending_plaintext(p.s), 0);
    spair_close(&p);
}

static void test_bulk_steps_tls13(void **state) { (void)state; run_bulk(false); }
static void test_bulk_steps_tls12(void **state) { (void)state; run_bulk(true); }


/* The blocking calls, each side in its own thread. */
typedef struct {
    ktlsx_socket *s;
    int rc;
    pthread_t t;
} hs_thread;

static void *hs_main(void *arg)
{
    hs_thread *h = arg;
    h->rc = ktlsx_socket_handshake(h->s);
    return NULL;
}

static void run_blocking(bool tls12)
{
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_AUTO);
    hs_thread h = { .s = p.s };
    assert_int_equal(pthread_create(&h.t, NULL, hs_main, &h), 0);
    int rc = ktlsx_socket_handshake(p.c);
    assert_int_equal(pthread_join(h.t, NULL), 0);
    if (rc != KTLSX_IO_OK || h.rc != KTLSX_IO_OK)
        fail_msg("client %d (%s), server %d (%s)", rc, ktlsx_socket_error(p.c), h.rc, ktlsx_socket_error(p.s));
    assert_int_equal(ktlsx_socket_handshake(p.c), KTLSX_IO_OK); /* done stays done */

    uint8_t *d = pattern(MIB, 7);
    reader r;
    reader_start(&r, p.s, MIB);
    assert_int_equal(ktlsx_socket_write(p.c, d, MIB), 0);
    assert_int_equal(ktlsx_socket_pending_output(p.c), 0);
    reader_join(&r, d);
    reader_start(&r, p.c, MIB);
    assert_int_equal(ktlsx_socket_write(p.s, d, MIB), 0);
    reader_join(&r, d);
    assert_int_equal(ktlsx_socket_write(p.s, d, 0), 0);
    assert_int_equal(ktlsx_socket_flush(p.s), 0);
    free(d);

    /* Blocking shutdown: the peer's blocking read ends with 0, cleanly. */
    assert_int_equal(ktlsx_socket_shutdown(p.c), 0);
    uint8_t b[8];
    assert_int_equal(ktlsx_socket_read(p.s, b, sizeof b), 0);
    assert_int_equal(ktlsx_socket_clean_close(p.s), 1);
    assert_int_equal(ktlsx_socket_read(p.s, b, sizeof b), 0); /* and stays ended */
    spair_close(&p);
}

static void test_blocking_calls_tls13(void **state) { (void)state; run_blocking(false); }
static void test_blocking_calls_tls12(void **state) { (void)state; run_blocking(true); }

/* A blocking read waits at most the idle timeout for a silent peer. */
static void test_idle_timeout_read(void **state)
{
    (void)state;
    spair p;
    spair_open(&p, false, KTLSX_KTLS_MODE_OFF);
    spair_handshake(&p);
    assert_int_equal(ktlsx_socket_set_timeouts(p.s, 30000, 200), 0);
    logs.count = 0;
    uint8_t b[64];
    int64_t t0 = ms_now();
    assert_int_equal(ktlsx_socket_read(p.s, b, sizeof b), -1);
    int64_t took = ms_now() - t0;
    if (took < 190 || took > 2000) fail_msg("cut after %lld ms, not 200", (long long)took);
    expect_error(p.s, "idle for 0.200 s");
    const char *l = log_find("idle for 0.200 s");
    assert_non_null(l);
    assert_int_equal(logs.level[0], KTLSX_LOG_INFO);
    size_t got;
    assert_int_equal(ktlsx_socket_read_step(p.s, b, sizeof b, &got), KTLSX_IO_FAILED);
    /* The other side had no idle timeout: its read step just waits. */
    assert_int_equal(ktlsx_socket_read_step(p.c, b, sizeof b, &got), KTLSX_IO_WANT_READ);
    spair_close(&p);
}

/* The idle timeout counts from the last byte that moved: a record arriving
 * slowly, in pieces, is not idleness. */
static void test_idle_timeout_counts_partial_records(void **state)
{
    (void)state;
    spair p;
    spair_open(&p, false, KTLSX_KTLS_MODE_OFF);
    spair_handshake(&p);
    assert_int_equal(ktlsx_socket_set_timeouts(p.s, 30000, 500), 0);
    uint8_t b[64];
    size_t got;
    /* Let the tickets go by; then the idle clock starts from a quiet socket. */
    assert_int_equal(ktlsx_socket_read_step(p.c, b, sizeof b, &got), KTLSX_IO_WANT_READ);
    assert_int_equal(ktlsx_socket_read_step(p.s, b, sizeof b, &got), KTLSX_IO_WANT_READ);
    /* A sealed record from the client, sent by hand in two halves. */
    ktlsx_conn *cc = ktlsx_socket_conn(p.c);
    assert_int_equal(ktlsx_write(cc, "slow", 4), 0);
    const uint8_t *rec;
    size_t len = ktlsx_pending_output(cc, &rec);
    assert_true(len > 10);
    usleep(300 * 1000);
    assert_int_equal(write(p.cfd, rec, 5), 5);
    usleep(20 * 1000);
    assert_int_equal(ktlsx_socket_read_step(p.s, b, sizeof b, &got), KTLSX_IO_WANT_READ);
    usleep(300 * 1000); /* 600 ms since the handshake, 320 ms since bytes moved */
    int rc = ktlsx_socket_read_step(p.s, b, sizeof b, &got);
    if (rc != KTLSX_IO_WANT_READ) fail_msg("read_step %d (%s): bytes had moved 320 ms ago", rc, ktlsx_socket_error(p.s));
    assert_int_equal(write(p.cfd, rec + 5, len - 5), (ssize_t)(len - 5));
    ktlsx_output_done(cc, len);
    read_steps(p.s, b, 4);
    assert_memory_equal(b, "slow", 4);
    spair_close(&p);
}

/* Data left inside after a short read comes out of the next read_step
 * without the fd being readable, and pending_plaintext says so. */
static void run_pending_plaintext(bool tls12)
{
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_OFF);
    spair_handshake(&p);
    uint8_t *d = pattern(1000, 3);
    size_t sent;
    assert_int_equal(ktlsx_socket_write_step(p.s, d, 1000, &sent), KTLSX_IO_OK);
    assert_int_equal(sent, 1000);
    assert_int_equal(ktlsx_socket_pending_output(p.s), 0);
    uint8_t got[1000];
    size_t have = 0, n;
    struct pollfd pfd = { p.cfd, POLLIN, 0 };
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    assert_int_equal(ktlsx_socket_read_step(p.c, got, 10, &n), KTLSX_IO_OK);
    assert_int_equal(n, 10);
    have = n;
    while (have < 1000) {
        assert_true(ktlsx_socket_pending_plaintext(p.c) > 0);
        assert_false(fd_readable(p.cfd));
        assert_int_equal(ktlsx_socket_read_step(p.c, got + have, 7, &n), KTLSX_IO_OK);
        assert_true(n > 0 && n <= 7);
        have += n;
    }
    assert_memory_equal(got, d, 1000);
    assert_int_equal(ktlsx_socket_pending_plaintext(p.c), 0);
    assert_int_equal(ktlsx_socket_read_step(p.c, got, 10, &n), KTLSX_IO_WANT_READ);

    /* Two records in one recv: the second stays sealed in the engine and
     * still counts (a loop must not wait for the fd before reading it). */
    assert_int_equal(ktlsx_socket_write_step(p.s, d, 10, &sent), KTLSX_IO_OK);
    assert_int_equal(ktlsx_socket_write_step(p.s, d + 10, 10, &sent), KTLSX_IO_OK);
    usleep(20 * 1000);
    assert_int_equal(ktlsx_socket_read_step(p.c, got, 4, &n), KTLSX_IO_OK);
    assert_int_equal(n, 4);
    assert_false(fd_readable(p.cfd));
    assert_true(ktlsx_socket_pending_plaintext(p.c) > 6);
    have = 4;
    while (have < 20) {
        assert_true(ktlsx_socket_pending_plaintext(p.c) > 0);
        assert_int_equal(ktlsx_socket_read_step(p.c, got + have, 4, &n), KTLSX_IO_OK);
        have += n;
    }
    assert_memory_equal(got, d, 20);
    assert_int_equal(ktlsx_socket_pending_plaintext(p.c), 0);
    free(d);
    spair_close(&p);
}

static void test_pending_plaintext_tls13(void **state) { (void)state; run_pending_plaintext(false); }
static void test_pending_plaintext_tls12(void **state) { (void)state; run_pending_plaintext(true); }

/* ---- sendfile (user-space records: read + seal) ---- */

static void run_sendfile(bool tls12)
{
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    const size_t len = 300000;
    uint8_t *d = pattern(len, 11);
    int ffd;
    const char *path = tmp_file(d, len, &ffd);
    unlink(path);

    /* Steps, single thread: sendfile_step takes pieces, the peer reads. */
    int64_t off = 0;
    uint8_t *got = malloc(len);
    assert_non_null(got);
    size_t have = 0;
    int64_t end = ms_now() + 20000;
    while (have < len) {
        assert_true(ms_now() < end);
        int wr = KTLSX_IO_OK;
        if (off < (int64_t)len) {
            size_t sent = 0;
            wr = ktlsx_socket_sendfile_step(p.s, ffd, &off, len - (size_t)off, &sent);
            if (wr != KTLSX_IO_OK && wr != KTLSX_IO_WANT_WRITE) fail_msg("sendfile_step %d (%s)", wr, ktlsx_socket_error(p.s));
        } else {
            wr = ktlsx_socket_flush_step(p.s);
        }
        size_t n = 0;
        int rr = KTLSX_IO_WANT_READ;
        while (have < len && (rr = ktlsx_socket_read_step(p.c, got + have, len - have, &n)) == KTLSX_IO_OK) have += n;
        assert_true(rr == KTLSX_IO_WANT_READ || have == len);
        if (wr == KTLSX_IO_WANT_WRITE) {
            struct pollfd pfd[2] = { { p.sfd, POLLOUT, 0 }, { p.cfd, POLLIN, 0 } };
            assert_true(poll(pfd, 2, 200) >= 0);
        } else if (off == (int64_t)len && have < len) {
            struct pollfd pfd = { p.cfd, POLLIN, 0 };
            assert_true(poll(&pfd, 1, 200) >= 0);
        }
    }
    assert_int_equal(off, (int64_t)len);
    assert_memory_equal(got, d, len);
    /* At the end of the file: OK with nothing sent. */
    size_t sent = 99;
    assert_int_equal(ktlsx_socket_sendfile_step(p.s, ffd, &off, 100, &sent), KTLSX_IO_OK);
    assert_int_equal(sent, 0);

    /* Blocking, from an offset, the peer reading in a thread. */
    reader r;
    reader_start(&r, p.c, len - 1234);
    off = 1234;
    assert_int_equal(ktlsx_socket_sendfile(p.s, ffd, &off, len - 1234), 0);
    assert_int_equal(off, (int64_t)len);
    reader_join(&r, d + 1234);

    /* A file shorter than asked: -1, the error says by how much; what the
     * file had still arrives. */
    off = (int64_t)len - 1000;
    assert_int_equal(ktlsx_socket_sendfile(p.s, ffd, &off, 1500), -1);
    expect_error(p.s, "the file ended 500 bytes early");
    assert_int_equal(off, (int64_t)len);
    read_steps(p.c, got, 1000);
    assert_memory_equal(got, d + len - 1000, 1000);
    /* Not a connection failure. */
    assert_int_equal(ktlsx_socket_write(p.s, "ok", 2), 0);
    read_steps(p.c, got, 2);
    assert_memory_equal(got, "ok", 2);
    close(ffd);
    free(got);
    free(d);
    spair_close(&p);
}

static void test_sendfile_tls13(void **state) { (void)state; run_sendfile(false); }
static void test_sendfile_tls12(void **state) { (void)state; run_sendfile(true); }

/* ---- the end of the stream ---- */

static void run_shutdown(bool tls12)
{
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    uint8_t b[32];
    size_t n;
    assert_int_equal(ktlsx_socket_write(p.c, "last words", 10), 0);
    assert_int_equal(ktlsx_socket_shutdown_step(p.c), KTLSX_IO_OK);
    assert_int_equal(ktlsx_socket_shutdown_step(p.c), KTLSX_IO_OK); /* close_notify is queued once */
    assert_int_equal(ktlsx_socket_pending_output(p.c), 0);
    read_steps(p.s, b, 10);
    assert_memory_equal(b, "last words", 10);
    int64_t end = ms_now() + 5000;
    int rc;
    while ((rc = ktlsx_socket_read_step(p.s, b, sizeof b, &n)) == KTLSX_IO_WANT_READ && ms_now() < end) {
        struct pollfd pfd = { p.sfd, POLLIN, 0 };
        assert_true(poll(&pfd, 1, 500) >= 0);
    }
    assert_int_equal(rc, KTLSX_IO_CLOSED);
    assert_int_equal(ktlsx_socket_clean_close(p.s), 1);
    assert_string_equal(ktlsx_socket_error(p.s), "");
    assert_int_equal(ktlsx_socket_read_step(p.s, b, sizeof b, &n), KTLSX_IO_CLOSED);
    /* Half-closed: the other direction still works. */
    assert_int_equal(ktlsx_socket_write(p.s, "reply", 5), 0);
    read_steps(p.c, b, 5);
    assert_memory_equal(b, "reply", 5);
    spair_close(&p);

    /* A bare TCP close: CLOSED too, but not clean, and the error says so. */
    spair_open(&p, tls12, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    assert_int_equal(ktlsx_socket_write(p.c, "cut", 3), 0);
    shutdown(p.cfd, SHUT_WR);
    read_steps(p.s, b, 3);
    end = ms_now() + 5000;
    while ((rc = ktlsx_socket_read_step(p.s, b, sizeof b, &n)) == KTLSX_IO_WANT_READ && ms_now() < end) {
        struct pollfd pfd = { p.sfd, POLLIN, 0 };
        assert_true(poll(&pfd, 1, 500) >= 0);
    }
    assert_int_equal(rc, KTLSX_IO_CLOSED);
    assert_int_equal(ktlsx_socket_clean_close(p.s), 0);
    expect_error(p.s, "without close_notify");
    assert_int_equal(ktlsx_socket_read(p.s, b, sizeof b), 0);
    spair_close(&p);
}

static void test_shutdown_tls13(void **state) { (void)state; run_shutdown(false); }
static void test_shutdown_tls12(void **state) { (void)state; run_shutdown(true); }

/* ---- KeyUpdate ---- */

static void test_key_update_tls13(void **state)
{
    (void)state;
    spair p;
    spair_open(&p, false, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    uint8_t *d = pattern(40000, 5);
    transfer_steps(p.c, p.s, d, 100, false);
    assert_true(ktlsx_socket_conn(p.c)->tx.seq > 0);
    assert_int_equal(ktlsx_socket_key_update(p.c, 1), KTLSX_IO_OK);
    assert_int_equal(ktlsx_socket_conn(p.c)->tx.seq, 0); /* the KeyUpdate went out; new keys start at 0 */
    assert_int_equal(ktlsx_socket_pending_output(p.c), 0);
    transfer_steps(p.c, p.s, d, 40000, false);
    /* The server answered the request (sent on its read); its data follows under new keys. */
    transfer_steps(p.s, p.c, d, 40000, false);
    assert_int_equal(ktlsx_socket_key_update(p.s, 0), KTLSX_IO_OK);
    transfer_steps(p.s, p.c, d + 1, 30000, false);
    transfer_steps(p.c, p.s, d + 2, 30000, false);
    free(d);
    spair_close(&p);
}

static void test_key_update_tls12_refused(void **state)
{
    (void)state;
    spair p;
    spair_open(&p, true, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    assert_int_equal(ktlsx_socket_key_update(p.c, 1), KTLSX_IO_FAILED);
    expect_error(p.c, "TLSv1.2 has no KeyUpdate");
    assert_int_equal(ktlsx_socket_pending_output(p.c), 0);
    /* The connection itself is fine. */
    uint8_t *d = pattern(20000, 6);
    transfer_steps(p.c, p.s, d, 20000, false);
    transfer_steps(p.s, p.c, d, 20000, false);
    free(d);
    spair_close(&p);
}

/* ---- wrapping a prepared or imported connection ---- */

static void run_wrap_resumed(bool tls12)
{
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_AUTO);
    spair_handshake(&p);
    /* The client reads past the tickets (TLS 1.3) to have a session. */
    assert_int_equal(ktlsx_socket_write(p.s, "hi", 2), 0);
    uint8_t b[4];
    read_steps(p.c, b, 2);
    uint8_t sess[4096];
    long n = ktlsx_get_session(ktlsx_socket_conn(p.c), sess, sizeof sess);
    assert_true(n > 0);
    ktlsx_config *ccfg = ktlsx_config_ref(p.ccfg), *scfg = ktlsx_config_ref(p.scfg);
    spair_close(&p);

    memset(&p, 0, sizeof p);
    p.ccfg = ccfg;
    p.scfg = scfg;
    loopback(&p.cfd, &p.sfd);
    ktlsx_conn *conn = ktlsx_conn_new(ccfg, "localhost");
    assert_int_equal(ktlsx_set_session(conn, sess, (size_t)n), 0);
    kx_wipe(sess, sizeof sess);
    p.c = ktlsx_socket_wrap(conn, p.cfd);
    p.s = ktlsx_socket_new(scfg, p.sfd, NULL);
    assert_non_null(p.c);
    spair_handshake(&p);
    assert_int_equal(ktlsx_resumed(conn), 1);
    assert_int_equal(ktlsx_resumed(ktlsx_socket_conn(p.s)), 1);
    uint8_t *d = pattern(50000, 8);
    transfer_steps(p.c, p.s, d, 50000, false);
    transfer_steps(p.s, p.c, d, 50000, false);
    free(d);
    spair_close(&p);
}

static void test_wrap_resumed_tls13(void **state) { (void)state; run_wrap_resumed(false); }
static void test_wrap_resumed_tls12(void **state) { (void)state; run_wrap_resumed(true); }

/* An imported connection is ready at once: no handshake, no I/O, data flows. */
static void run_wrap_imported(bool tls12)
{
    spair p;
    spair_open(&p, tls12, KTLSX_KTLS_MODE_OFF);
    spair_handshake(&p);
    /* The client takes the tickets (TLS 1.3), so the wire is quiet. */
    uint8_t b[8];
    size_t got;
    assert_int_equal(ktlsx_socket_read_step(p.c, b, sizeof b, &got), KTLSX_IO_WANT_READ);
    uint8_t blob[KTLSX_EXPORT_MAX];
    const char *why = NULL;
    long n = ktlsx_conn_export(ktlsx_socket_conn(p.s), blob, sizeof blob, &why);
    if (n <= 0) fail_msg("export: %s", why ? why : "?");
    ktlsx_socket_free(p.s); /* the fd stays open */
    ktlsx_config *bare = ktlsx_config_new(KTLSX_SERVER);
    ktlsx_conn *conn = ktlsx_conn_import(bare, blob, (size_t)n, &why);
    kx_wipe(blob, sizeof blob);
    if (!conn) fail_msg("import: %s", why ? why : "?");
    p.s = ktlsx_socket_wrap(conn, p.sfd);
    assert_non_null(p.s);
    int64_t t0 = ms_now();
    assert_int_equal(ktlsx_socket_handshake_step(p.s), KTLSX_IO_OK);
    assert_int_equal(ktlsx_socket_handshake(p.s), KTLSX_IO_OK);
    assert_true(ms_now() - t0 < 100);
    assert_false(fd_readable(p.cfd)); /* nothing was sent */
    assert_int_equal(ktlsx_socket_ktls(p.s), 0);
    uint8_t *d = pattern(70000, 9);
    transfer_steps(p.c, p.s, d, 70000, false);
    transfer_steps(p.s, p.c, d, 70000, false);
    if (!tls12) {
        assert_int_equal(ktlsx_socket_key_update(p.s, 1), KTLSX_IO_OK);
        transfer_steps(p.s, p.c, d, 1000, false);
        transfer_steps(p.c, p.s, d, 1000, false);
    }
    assert_int_equal(ktlsx_socket_shutdown(p.s), 0);
    int rc;
    while ((rc = ktlsx_socket_read_step(p.c, b, sizeof b, &got)) == KTLSX_IO_WANT_READ) {
        struct pollfd pfd = { p.cfd, POLLIN, 0 };
        assert_int_equal(poll(&pfd, 1, 2000), 1);
    }
    assert_int_equal(rc, KTLSX_IO_CLOSED);
    assert_int_equal(ktlsx_socket_clean_close(p.c), 1);
    free(d);
    spair_close(&p);
    ktlsx_config_free(bare);
}

static void test_wrap_imported_tls13(void **state) { (void)state; run_wrap_imported(false); }
static void test_wrap_imported_tls12(void **state) { (void)state; run_wrap_imported(true); }

/* ---- the kernel data path, with a fake kernel that takes any key ---- */

static struct {
    int refuse_rx;
    int ulp, tx, rx;
} fk;

static int fake_kernel(int fd, int level, int name, const void *val, socklen_t len)
{
    (void)fd;
    (void)val;
    (void)len;
    if (level == IPPROTO_TCP && name == TCP_ULP) {
        fk.ulp++;
        return 0;
    }
    assert_int_equal(level, SOL_TLS);
    if (name == TLS_RX && fk.refuse_rx) {
        errno = EINVAL;
        return -1;
    }
    if (name == TLS_TX) fk.tx++;
    else fk.rx++;
    return 0;
}

/* Both ends "in the kernel": the records are plaintext on this TCP pair, so
 * the bytes arrive exactly if send/recvmsg/sendfile are used right. */
static void test_fake_kernel_data_path(void **state)
{
    (void)state;
    memset(&fk, 0, sizeof fk);
    spair p;
    spair_cfgs(&p, false);
    KXT_CFG_OK(p.scfg, ktlsx_config_set_tickets(p.scfg, 0, 0)); /* no user-space records after the switch */
    loopback(&p.cfd, &p.sfd);
    p.c = ktlsx_socket_new(p.ccfg, p.cfd, "localhost");
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_REQUIRE, KTLSX_KTLS_TX | KTLSX_KTLS_RX), 0);
    kx_ktls_set_setsockopt(fake_kernel);
    logs.count = 0;
    spair_handshake(&p);
    assert_int_equal(fk.ulp, 2);
    assert_int_equal(fk.tx, 2);
    assert_int_equal(fk.rx, 2);
    assert_int_equal(logs.count, 0);
    assert_int_equal(ktlsx_socket_ktls(p.c), KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_string_equal(ktlsx_socket_ktls_name(p.s), "tx+rx");
    assert_string_equal(ktlsx_socket_ktls_why(p.s), "");

    /* A short read keeps the rest of the record in user space. */
    size_t n;
    assert_int_equal(ktlsx_socket_write_step(p.c, "hello kernel", 12, &n), KTLSX_IO_OK);
    assert_int_equal(n, 12);
    uint8_t b[16];
    struct pollfd pfd = { p.sfd, POLLIN, 0 };
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    assert_int_equal(ktlsx_socket_read_step(p.s, b, 5, &n), KTLSX_IO_OK);
    assert_int_equal(n, 5);
    assert_int_equal(ktlsx_socket_pending_plaintext(p.s), 7);
    assert_false(fd_readable(p.sfd));
    assert_int_equal(ktlsx_socket_read_step(p.s, b + 5, 16, &n), KTLSX_IO_OK);
    assert_int_equal(n, 7);
    assert_memory_equal(b, "hello kernel", 12);
    assert_int_equal(ktlsx_socket_read_step(p.s, b, 16, &n), KTLSX_IO_WANT_READ);

    uint8_t *d = pattern(MIB, 12);
    transfer_steps(p.c, p.s, d, MIB, true);
    transfer_steps(p.s, p.c, d, MIB, false);

    /* sendfile(2) itself; the step needs an O_NONBLOCK fd to never block. */
    int ffd;
    unlink(tmp_file(d, 200000, &ffd));
    assert_int_equal(fcntl(p.sfd, F_SETFL, fcntl(p.sfd, F_GETFL) | O_NONBLOCK), 0);
    int64_t off = 0;
    uint8_t *got = malloc(200000);
    size_t have = 0;
    int64_t end = ms_now() + 20000;
    while (have < 200000 && ms_now() < end) {
        size_t sent = 0;
        int wr = off < 200000 ? ktlsx_socket_sendfile_step(p.s, ffd, &off, 200000 - (size_t)off, &sent) : KTLSX_IO_OK;
        assert_true(wr == KTLSX_IO_OK || wr == KTLSX_IO_WANT_WRITE);
        int rr = KTLSX_IO_WANT_READ;
        while (have < 200000 && (rr = ktlsx_socket_read_step(p.c, got + have, 200000 - have, &n)) == KTLSX_IO_OK) have += n;
        assert_true(rr == KTLSX_IO_WANT_READ || have == 200000);
        struct pollfd w[2] = { { p.sfd, wr == KTLSX_IO_WANT_WRITE ? POLLOUT : 0, 0 }, { p.cfd, POLLIN, 0 } };
        assert_true(poll(w, 2, 200) >= 0);
    }
    assert_int_equal(have, 200000);
    assert_memory_equal(got, d, 200000);
    reader r;
    reader_start(&r, p.c, 150000);
    off = 50000;
    assert_int_equal(ktlsx_socket_sendfile(p.s, ffd, &off, 150000), 0);
    reader_join(&r, d + 50000);
    off = 199000;
    assert_int_equal(ktlsx_socket_sendfile(p.s, ffd, &off, 2000), -1);
    expect_error(p.s, "the file ended 1000 bytes early");
    read_steps(p.c, got, 1000);
    assert_memory_equal(got, d + 199000, 1000);
    close(ffd);
    free(got);
    free(d);

    /* A bare TCP close through the kernel path: CLOSED, not clean. */
    shutdown(p.cfd, SHUT_WR);
    int rc;
    end = ms_now() + 5000;
    while ((rc = ktlsx_socket_read_step(p.s, b, sizeof b, &n)) == KTLSX_IO_WANT_READ && ms_now() < end) {
        struct pollfd q = { p.sfd, POLLIN, 0 };
        assert_true(poll(&q, 1, 500) >= 0);
    }
    assert_int_equal(rc, KTLSX_IO_CLOSED);
    assert_int_equal(ktlsx_socket_clean_close(p.s), 0);
    expect_error(p.s, "without close_notify");
    kx_ktls_set_setsockopt(NULL);
    spair_close(&p);
}

/* Only TX goes in: auto mode says which and why; require mode fails. */
static void test_fake_kernel_tx_only(void **state)
{
    (void)state;
    memset(&fk, 0, sizeof fk);
    fk.refuse_rx = 1;
    spair p;
    spair_open(&p, false, KTLSX_KTLS_MODE_AUTO);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_OFF, 0), 0);
    kx_ktls_set_setsockopt(fake_kernel);
    logs.count = 0;
    spair_handshake(&p);
    kx_ktls_set_setsockopt(NULL);
    assert_int_equal(ktlsx_socket_ktls(p.s), KTLSX_KTLS_TX);
    assert_string_equal(ktlsx_socket_ktls_name(p.s), "tx");
    assert_true(ktlsx_socket_ktls_why(p.s)[0] != '\0');
    const char *l = log_find("kernel TLS tx only");
    if (!l) fail_msg("no 'tx only' log line (%d lines: %s)", logs.count, logs.count ? logs.line[0] : "");
    assert_non_null(strstr(l, ktlsx_socket_ktls_why(p.s)));
    spair_close(&p);

    /* require asked for both directions and got one: the connection fails. */
    memset(&fk, 0, sizeof fk);
    fk.refuse_rx = 1;
    spair_open(&p, false, KTLSX_KTLS_MODE_REQUIRE);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_OFF, 0), 0);
    kx_ktls_set_setsockopt(fake_kernel);
    int rc, rs;
    handshake_steps(p.c, p.s, &rc, &rs);
    kx_ktls_set_setsockopt(NULL);
    assert_int_equal(rs, KTLSX_IO_FAILED);
    expect_error(p.s, "kernel TLS required but only tx went into the kernel");
    expect_error(p.s, ktlsx_socket_ktls_why(p.s));
    spair_close(&p);

    /* require with TX only asked for is satisfied by TX. */
    memset(&fk, 0, sizeof fk);
    fk.refuse_rx = 1;
    spair_open(&p, false, KTLSX_KTLS_MODE_REQUIRE);
    assert_int_equal(ktlsx_socket_set_ktls(p.c, KTLSX_KTLS_MODE_OFF, 0), 0);
    assert_int_equal(ktlsx_socket_set_ktls(p.s, KTLSX_KTLS_MODE_REQUIRE, KTLSX_KTLS_TX), 0);
    kx_ktls_set_setsockopt(fake_kernel);
    handshake_steps(p.c, p.s, &rc, &rs);
    kx_ktls_set_setsockopt(NULL);
    assert_int_equal(rs, KTLSX_IO_OK);
    assert_string_equal(ktlsx_socket_ktls_name(p.s), "tx");
    spair_close(&p);
}

/* ---- conf-b: linger after an alert (issue 13 item 8) ---- */

/* A client still sending a ClientHello too large for the server: one record
 * whose handshake header announces 20 KiB, then more records, `len` bytes
 * in all; then it closes its sending side. */
typedef struct {
    int fd;
    size_t len, sent;
    pthread_t th;
} flood;

static void *flood_main(void *arg)
{
    flood *f = arg;
    static uint8_t rec[5 + 16384];
    memset(rec, 0, sizeof rec);
    rec[0] = KX_CT_HANDSHAKE;
    rec[1] = 3;
    rec[2] = 1;
    rec[3] = 0x40; /* 16384 */
    rec[5] = KX_HS_CLIENT_HELLO;
    rec[7] = 0x50; /* 20480 */
    while (f->sent < f->len) {
        ssize_t n = send(f->fd, rec, sizeof rec, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        f->sent += (size_t)n;
        rec[5] = rec[7] = 0; /* the rest: continuation bytes */
    }
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void test_linger_after_alert(void **state)
{
    (void)state;
    spair p;
    spair_cfgs(&p, false);
    KXT_CFG_OK(p.scfg, ktlsx_config_set_max_handshake_message(p.scfg, 16384));
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    assert_non_null(p.s);
    flood f = { .fd = p.cfd, .len = 512 * 1024 };
    assert_int_equal(pthread_create(&f.th, NULL, flood_main, &f), 0);
    assert_int_equal(ktlsx_socket_handshake(p.s), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_alert(ktlsx_socket_conn(p.s)), KX_ALERT_ILLEGAL_PARAMETER);
    /* Wrong bounds are refused with the values named; nothing is read. */
    assert_int_equal(ktlsx_socket_linger(NULL, 1000, 1), -1);
    assert_int_equal(ktlsx_socket_linger(p.s, 0, 1024), -1);
    expect_error(p.s, "not 0 ms");
    assert_int_equal(ktlsx_socket_linger(p.s, 1000, 0), -1);
    expect_error(p.s, "0 bytes");
    assert_int_equal(ktlsx_socket_linger(p.s, 60001, 1024), -1);
    /* The alert out, then everything the client still sends read and dropped
     * until it closes: 0. */
    int64_t t0 = ms_now();
    assert_int_equal(ktlsx_socket_linger(p.s, 10000, 1024 * 1024), 0);
    assert_true(ms_now() - t0 < 10000);
    ktlsx_socket_free(p.s);
    p.s = NULL;
    close(p.sfd);
    p.sfd = -1;
    assert_int_equal(pthread_join(f.th, NULL), 0);
    assert_true(f.sent >= f.len); /* never cut off by a reset */
    /* The client reads the alert, then a clean end of stream, not ECONNRESET. */
    uint8_t rec[16];
    assert_int_equal(read(p.cfd, rec, sizeof rec), 7);
    static const uint8_t alert[7] = { KX_CT_ALERT, 3, 3, 0, 2, 2, KX_ALERT_ILLEGAL_PARAMETER };
    assert_memory_equal(rec, alert, sizeof alert);
    errno = 0;
    assert_int_equal(read(p.cfd, rec, sizeof rec), 0);
    spair_close(&p);

    /* A client that never stops: the byte bound ends the linger (1). */
    spair_cfgs(&p, false);
    KXT_CFG_OK(p.scfg, ktlsx_config_set_max_handshake_message(p.scfg, 16384));
    loopback(&p.cfd, &p.sfd);
    p.s = ktlsx_socket_new(p.scfg, p.sfd, NULL);
    flood g = { .fd = p.cfd, .len = SIZE_MAX };
    assert_int_equal(pthread_create(&g.th, NULL, flood_main, &g), 0);
    assert_int_equal(ktlsx_socket_handshake(p.s), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_socket_linger(p.s, 10000, 256 * 1024), 1);
    ktlsx_socket_free(p.s);
    p.s = NULL;
    close(p.sfd); /* the flood thread's next send fails: it stops */
    p.sfd = -1;
    assert_int_equal(pthread_join(g.th, NULL), 0);
    spair_close(&p);
}

int main(void)
{
    /* A peer gone must fail a send, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    if (getenv("KXT_FILTER")) cmocka_set_test_filter(getenv("KXT_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_wrap_free_accessors),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_linger_after_alert), /* conf-b */
        cmocka_unit_test(test_ktls_modes_tls13),
        cmocka_unit_test(test_ktls_modes_tls12),
        cmocka_unit_test(test_setters_refuse_bad_values),
        cmocka_unit_test(test_handshake_step_never_blocks),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_handshake_no_timeout),
        cmocka_unit_test(test_handshake_peer_closes),
        cmocka_unit_test(test_garbage_peer),
        cmocka_unit_test(test_bulk_steps_tls13),
        cmocka_unit_test(test_bulk_steps_tls12),
        cmocka_unit_test(test_blocking_calls_tls13),
        cmocka_unit_test(test_blocking_calls_tls12),
        cmocka_unit_test(test_idle_timeout_read),
        cmocka_unit_test(test_idle_timeout_counts_partial_records),
        cmocka_unit_test(test_pending_plaintext_tls13),
        cmocka_unit_test(test_pending_plaintext_tls12),
        cmocka_unit_test(test_sendfile_tls13),
        cmocka_unit_test(test_sendfile_tls12),
        cmocka_unit_test(test_shutdown_tls13),
        cmocka_unit_test(test_shutdown_tls12),
        cmocka_unit_test(test_key_update_tls13),
        cmocka_unit_test(test_key_update_tls12_refused),
        cmocka_unit_test(test_wrap_resumed_tls13),
        cmocka_unit_test(test_wrap_resumed_tls12),
        cmocka_unit_test(test_wrap_imported_tls13),
        cmocka_unit_test(test_wrap_imported_tls12),
        cmocka_unit_test(test_fake_kernel_data_path),
        cmocka_unit_test(test_fake_kernel_tx_only),
    };
    return cmocka_run_group_tests_name("test_socket", tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
