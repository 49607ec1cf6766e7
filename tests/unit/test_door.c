/* ktlsxd's local door (libktlsx/daemon/): the wire codec, the SCM_RIGHTS
 * helpers and the caller's side against a fake door.
 *
 * - request and answer round trips (every field, limits at their maximum);
 * - every truncation of both is refused, as are bad magic, version, role,
 *   flags, reserved bits, over-limit lengths, lengths that do not add up,
 *   control characters, a blob on a failed answer, trailing bytes;
 * - the encoders refuse bad fields and small buffers, and cut answer text;
 * - ktlsx_send_fd / ktlsx_recv_fd: fd arrives and is the same file, message
 *   without fd, two fds (the second closed), a message too big for the buffer;
 * - ktlsx_daemon_handshake: bad arguments, no daemon, a door that answers an
 *   error status, one that answers garbage, one that closes without answering,
 *   one that answers "busy" and closes without reading the request;
 * - the steps (ktlsx_daemon_handshake_start/_step/_fd/_timeout_ms/_free):
 *   no daemon and bad arguments end at the first step; a silent door, a slow
 *   one and one that answers half a message driven together in one poll loop
 *   (the silent one ends at its deadline, the others are not held up); a door
 *   that closes; success with a real server connection's export (imported,
 *   same version and suite; freed with the call when not taken; a damaged
 *   blob: internal); a call freed mid-way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <ktlsx/daemon.h>
#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

static struct ktlsx_door_request full_request(void)
{
    struct ktlsx_door_request r = { .role = KTLSX_SERVER, .timeout_ms = 1234 };
    memset(r.profile, 'p', KTLSX_DOOR_NAME_MAX);
    memset(r.server_name, 'h', KTLSX_DOOR_HOST_MAX);
    memset(r.alpn, 'a', KTLSX_DOOR_ALPN_MAX);
    return r;
}

static void test_request_round_trip(void **state)
{
    (void)state;
    uint8_t buf[KTLSX_DOOR_REQUEST_MAX];
    struct ktlsx_door_request in = full_request(), out;
    const char *why = NULL;
    long n = ktlsx_door_request_encode(&in, buf, sizeof buf, &why);
    assert_int_equal(n, KTLSX_DOOR_REQUEST_MAX);
    assert_int_equal(ktlsx_door_request_decode(buf, (size_t)n, &out, &why), 0);
    assert_memory_equal(&in, &out, sizeof in);
    /* Minimal: a profile only. */
    struct ktlsx_door_request small = { .role = KTLSX_CLIENT };
    strcpy(small.profile, "web");
    n = ktlsx_door_request_encode(&small, buf, sizeof buf, &why);
    assert_int_equal(n, KTLSX_DOOR_REQUEST_HEADER + 3);
    assert_int_equal(ktlsx_door_request_decode(buf, (size_t)n, &out, &why), 0);
    assert_string_equal(out.profile, "web");
    assert_string_equal(out.server_name, "");
    assert_int_equal(out.role, KTLSX_CLIENT);
    /* Too small a buffer. */
    assert_int_equal(ktlsx_door_request_encode(&small, buf, KTLSX_DOOR_REQUEST_HEADER + 2, &why), -1);
    assert_string_equal(why, "buffer too small for the request");
}

static void test_request_refused(void **state)
{
    (void)state;
    uint8_t buf[KTLSX_DOOR_REQUEST_MAX + 1], bad[sizeof buf];
    struct ktlsx_door_request in = full_request(), out;
    const char *why;
    long n = ktlsx_door_request_encode(&in, buf, sizeof buf, &why);
    for (long i = 0; i < n; i++) {
        why = NULL;
        assert_int_equal(ktlsx_door_request_decode(buf, (size_t)i, &out, &why), -1);
        assert_non_null(why);
    }
    buf[n] = 0; /* a trailing byte */
    assert_int_equal(ktlsx_door_request_decode(buf, (size_t)n + 1, &out, &why), -1);
    assert_string_equal(why, "field lengths do not match the request size");
    /* One bad byte at a time in the header. */
    static const struct { size_t off; uint8_t v; const char *why; } cases[] = {
        { 0, 'X', "not a door request (bad magic)" },
        { 5, 2, "door protocol version not supported" },
        { 6, 2, "role is neither client nor server" },
        { 7, 1, "unknown flags or reserved bits set" },
        { 19, 1, "unknown flags or reserved bits set" },
        { 13, KTLSX_DOOR_NAME_MAX + 1, "profile name empty or over 64 bytes" },
        { 13, 0, "profile name empty or over 64 bytes" },
        { 14, 1, "server name over 255 bytes" }, /* 0x01ff */
        { 16, 1, "ALPN list over 255 bytes" },
        { 15, 1, "field lengths do not match the request size" },
        { KTLSX_DOOR_REQUEST_HEADER + 3, '\n', "a text field holds a control character" },
        { KTLSX_DOOR_REQUEST_MAX - 1, 0x7f, "a text field holds a control character" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, buf, (size_t)n);
        bad[cases[i].off] = cases[i].v;
        assert_int_equal(ktlsx_door_request_decode(bad, (size_t)n, &out, &why), -1);
        assert_string_equal(why, cases[i].why);
    }
    /* The encoder refuses what the decoder would. */
    struct ktlsx_door_request r = { .role = KTLSX_CLIENT };
    assert_int_equal(ktlsx_door_request_encode(&r, buf, sizeof buf, &why), -1);
    assert_string_equal(why, "profile name empty or over 64 bytes");
    strcpy(r.profile, "a\tb");
    assert_int_equal(ktlsx_door_request_encode(&r, buf, sizeof buf, &why), -1);
    strcpy(r.profile, "ok");
    r.role = (enum ktlsx_role)7;
    assert_int_equal(ktlsx_door_request_encode(&r, buf, sizeof buf, &why), -1);
    assert_int_equal(ktlsx_door_request_encode(NULL, buf, sizeof buf, &why), -1);
    assert_int_equal(ktlsx_door_request_decode(NULL, 0, &out, &why), -1);
}

static void fill_result(struct ktlsx_daemon_result *r)
{
    memset(r, 0, sizeof *r);
    r->status = KTLSX_DOOR_OK;
    r->version = KTLSX_TLS13;
    r->cipher = 0x1301;
    r->alert = 0;
    r->resumed = 1;
    r->ktls = KTLSX_KTLS_TX;
    memset(r->message, 'm', KTLSX_DOOR_MESSAGE_MAX);
    memset(r->group, 'g', KTLSX_DOOR_GROUP_MAX);
    memset(r->alpn, 'a', KTLSX_DOOR_ALPN_MAX);
    memset(r->peer_subject, 's', KTLSX_DOOR_SUBJECT_MAX);
    memset(r->server_name, 'n', KTLSX_DOOR_HOST_MAX);
    memset(r->ktls_why, 'w', KTLSX_DOOR_MESSAGE_MAX);
    memset(r->peer_sans, 'd', KTLSX_DOOR_SUBJECT_MAX);
}

static void test_answer_round_trip(void **state)
{
    (void)state;
    static uint8_t buf[KTLSX_DOOR_ANSWER_MAX + 1], blob_in[KTLSX_EXPORT_MAX];
    struct ktlsx_daemon_result in, out;
    const uint8_t *blob;
    size_t blob_len;
    const char *why;
    fill_result(&in);
    for (size_t i = 0; i < sizeof blob_in; i++) blob_in[i] = (uint8_t)i;
    long n = ktlsx_door_answer_encode(&in, blob_in, sizeof blob_in, buf, sizeof buf, &why);
    assert_int_equal(n, KTLSX_DOOR_ANSWER_MAX);
    assert_int_equal(ktlsx_door_answer_decode(buf, (size_t)n, &out, &blob, &blob_len, &why), 0);
    assert_memory_equal(&in, &out, sizeof in);
    assert_int_equal(blob_len, sizeof blob_in);
    assert_memory_equal(blob, blob_in, blob_len);
    /* Every truncation, and a trailing byte. */
    for (long i = 0; i < n; i++)
        assert_int_equal(ktlsx_door_answer_decode(buf, (size_t)i, &out, &blob, &blob_len, &why), -1);
    assert_int_equal(ktlsx_door_answer_decode(buf, (size_t)n + 1, &out, &blob, &blob_len, &why), -1);
    assert_null(blob);
    /* Text is cut at control characters; over-long blobs refused. */
    in.message[3] = '\n';
    n = ktlsx_door_answer_encode(&in, NULL, 0, buf, sizeof buf, &why);
    assert_true(n > 0);
    assert_int_equal(ktlsx_door_answer_decode(buf, (size_t)n, &out, &blob, &blob_len, &why), 0);
    assert_string_equal(out.message, "mmm");
    assert_null(blob);
    assert_int_equal(ktlsx_door_answer_encode(&in, blob_in, KTLSX_EXPORT_MAX + 1, buf, sizeof buf, &why), -1);
    assert_int_equal(ktlsx_door_answer_encode(&in, NULL, 3, buf, sizeof buf, &why), -1);
    assert_int_equal(ktlsx_door_answer_encode(&in, NULL, 0, buf, 10, &why), -1);
}

static void test_answer_refused(void **state)
{
    (void)state;
    uint8_t buf[256], bad[256], blob_in[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    struct ktlsx_daemon_result in = { .status = KTLSX_DOOR_OK }, out;
    const uint8_t *blob;
    size_t blob_len;
    const char *why;
    strcpy(in.message, "hi");
    long n = ktlsx_door_answer_encode(&in, blob_in, sizeof blob_in, buf, sizeof buf, &why);
    assert_int_equal(n, KTLSX_DOOR_ANSWER_HEADER + 2 + 8);
    static const struct { size_t off; uint8_t v; const char *why; } cases[] = {
        { 3, 'X', "not a door answer (bad magic)" },
        { 5, 9, "door protocol version not supported" },
        { 7, KTLSX_DOOR_DENIED, "a failed exchange carries a blob" },
        { 13, 2, "unknown flags or reserved bits set" },
        { 14, 4, "unknown flags or reserved bits set" },
        { 15, 1, "unknown flags or reserved bits set" },
        { 18, 1, "a text field is over its limit" }, /* group: 0x0100 */
        { 28, 0x10, "a text field is over its limit" }, /* peer SANs: 0x1000 */
        { 29, 9, "field lengths do not match the answer size" },
        { 30, 0x10, "export blob over KTLSX_EXPORT_MAX" },
        { KTLSX_DOOR_ANSWER_HEADER, 0x1b, "a text field holds a control character" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, buf, (size_t)n);
        bad[cases[i].off] = cases[i].v;
        assert_int_equal(ktlsx_door_answer_decode(bad, (size_t)n, &out, &blob, &blob_len, &why), -1);
        assert_string_equal(why, cases[i].why);
    }
    assert_string_equal(ktlsx_door_status_name(KTLSX_DOOR_DENIED), "denied");
    assert_string_equal(ktlsx_door_status_name(-1), "unknown");
    assert_string_equal(ktlsx_door_status_name(99), "unknown");
}

static void test_fd_passing(void **state)
{
    (void)state;
    int sp[2], pipefd[2];
    char buf[16];
    int fd;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(ktlsx_send_fd(sp[0], "hello", 5, pipefd[1], 0), 0);
    assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, &fd, 0), 5);
    assert_true(fd >= 0 && fd != pipefd[1]);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(write(fd, "x", 1), 1); /* the same pipe */
    assert_int_equal(read(pipefd[0], buf, 1), 1);
    assert_int_equal(buf[0], 'x');
    close(fd);
    /* No descriptor. */
    assert_int_equal(ktlsx_send_fd(sp[0], "abc", 3, -1, 0), 0);
    assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, &fd, 0), 3);
    assert_int_equal(fd, -1);
    /* Two descriptors: the first kept, the second closed. */
    {
        union { char b[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr a; } ctl;
        struct iovec iov = { .iov_base = "zz", .iov_len = 2 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        int two[2] = { pipefd[0], pipefd[1] };
        cm->cmsg_level = SOL_SOCKET, cm->cmsg_type = SCM_RIGHTS, cm->cmsg_len = CMSG_LEN(sizeof two);
        memcpy(CMSG_DATA(cm), two, sizeof two);
        assert_int_equal(sendmsg(sp[0], &mh, 0), 2);
        int before = dup(0);
        close(before);
        assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, &fd, 0), 2);
        assert_true(fd >= 0);
        int probe = dup(0); /* the second one was closed: its number is free again */
        assert_true(probe < fd + 3);
        close(probe);
        close(fd);
    }
    /* Too big for the buffer: refused, the fd not leaked. */
    assert_int_equal(ktlsx_send_fd(sp[0], "0123456789abcdef!", 17, pipefd[1], 0), 0);
    assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, &fd, 0), -1);
    assert_int_equal(errno, EMSGSIZE);
    assert_int_equal(fd, -1);
    /* Nothing waiting. */
    assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, &fd, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, NULL, 0), -1);
    assert_int_equal(ktlsx_send_fd(sp[0], NULL, 3, -1, 0), -1);
    close(sp[0]);
    assert_int_equal(ktlsx_recv_fd(sp[1], buf, sizeof buf, &fd, 0), 0);
    close(sp[1]);
    close(pipefd[0]);
    close(pipefd[1]);
}

/* A fake door: accepts one connection, reads the request, then behaves as `mode` says. */
enum fake_mode { FAKE_DENY, FAKE_GARBAGE, FAKE_CLOSE, FAKE_BUSY_EARLY, FAKE_SILENT, FAKE_TRUNCATED, FAKE_SLOW_OK, FAKE_BLOB };

/* FAKE_BLOB answers "ok" with this export of a real server connection. */
static uint8_t fake_blob[KTLSX_EXPORT_MAX];
static size_t fake_blob_len;
struct fake_door {
    int lfd;
    enum fake_mode mode;
    struct ktlsx_door_request got;
    int got_fd_ok;
};

static void *fake_door_run(void *arg)
{
    struct fake_door *d = arg;
    int c = accept(d->lfd, NULL, NULL);
    uint8_t buf[KTLSX_DOOR_ANSWER_MAX];
    if (d->mode == FAKE_BUSY_EARLY) { /* as ktlsxd at max_clients: answer without reading, close */
        struct ktlsx_daemon_result r = { .status = KTLSX_DOOR_BUSY };
        strcpy(r.message, "4096 door connections open (max_clients)");
        long len = ktlsx_door_answer_encode(&r, NULL, 0, buf, sizeof buf, NULL);
        (void)ktlsx_send_fd(c, buf, (size_t)len, -1, 0);
        close(c);
        return NULL;
    }
    int fd = -1;
    long n = ktlsx_recv_fd(c, buf, sizeof buf, &fd, 0);
    d->got_fd_ok = fd >= 0;
    if (fd >= 0) close(fd);
    if (n > 0) (void)ktlsx_door_request_decode(buf, (size_t)n, &d->got, NULL);
    if (d->mode == FAKE_DENY) {
        struct ktlsx_daemon_result r = { .status = KTLSX_DOOR_DENIED };
        strcpy(r.message, "uid 1000 may not use profile 'web'");
        n = ktlsx_door_answer_encode(&r, NULL, 0, buf, sizeof buf, NULL);
        (void)ktlsx_send_fd(c, buf, (size_t)n, -1, 0);
    } else if (d->mode == FAKE_GARBAGE) {
        (void)ktlsx_send_fd(c, "garbage garbage garbage garbage garbage", 39, -1, 0);
    } else if (d->mode == FAKE_SILENT) { /* never answers: wait until the caller gives up and closes */
        while (ktlsx_recv_fd(c, buf, sizeof buf, &fd, 0) > 0)
            if (fd >= 0) close(fd);
    } else if (d->mode == FAKE_BLOB) {
        struct ktlsx_daemon_result r = { .status = KTLSX_DOOR_OK, .version = KTLSX_TLS13, .cipher = 0x1301 };
        strcpy(r.ktls_why, "no kernel TLS here");
        n = ktlsx_door_answer_encode(&r, fake_blob, fake_blob_len, buf, sizeof buf, NULL);
        (void)ktlsx_send_fd(c, buf, (size_t)n, -1, 0);
    } else if (d->mode == FAKE_TRUNCATED || d->mode == FAKE_SLOW_OK) {
        struct ktlsx_daemon_result r = { .status = KTLSX_DOOR_OK, .version = KTLSX_TLS13, .cipher = 0x1301,
                                         .ktls = KTLSX_KTLS_TX | KTLSX_KTLS_RX };
        strcpy(r.alpn, "h2");
        strcpy(r.group, "x25519");
        n = ktlsx_door_answer_encode(&r, NULL, 0, buf, sizeof buf, NULL);
        if (d->mode == FAKE_TRUNCATED) n = KTLSX_DOOR_ANSWER_HEADER + 3; /* the header and part of a field */
        else usleep(300 * 1000);                                           /* a few WANT_READ first */
        (void)ktlsx_send_fd(c, buf, (size_t)n, -1, 0);
    }
    close(c);
    return NULL;
}

struct fake {
    struct fake_door d;
    pthread_t t;
    char dir[32], sock[64];
    int sp[2]; /* sp[0]: the "TCP" socket handed over */
};

static void fake_start(struct fake *f, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/kxt_door_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/door", f->dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, f->sock);
    f->d.lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    f->d.mode = mode;
    assert_int_equal(bind(f->d.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->d.lfd, 4), 0);
    assert_int_equal(pthread_create(&f->t, NULL, fake_door_run, &f->d), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->sp), 0);
}

static void fake_end(struct fake *f)
{
    pthread_join(f->t, NULL);
    close(f->sp[0]);
    close(f->sp[1]);
    close(f->d.lfd);
    unlink(f->sock);
    rmdir(f->dir);
}

static void run_fake(enum fake_mode mode, struct ktlsx_daemon_result *res, struct fake_door *d)
{
    struct fake f;
    fake_start(&f, mode);
    assert_null(ktlsx_daemon_handshake(f.sock, f.sp[0], KTLSX_SERVER, "web", "example.org", "h2", 2000, res));
    fake_end(&f);
    *d = f.d;
}

static void test_daemon_handshake(void **state)
{
    (void)state;
    struct ktlsx_daemon_result res;
    struct fake_door d;
    memset(&d, 0, sizeof d);
    run_fake(FAKE_DENY, &res, &d);
    assert_int_equal(res.status, KTLSX_DOOR_DENIED);
    assert_string_equal(res.message, "uid 1000 may not use profile 'web'");
    assert_true(d.got_fd_ok);
    assert_string_equal(d.got.profile, "web");
    assert_string_equal(d.got.server_name, "example.org");
    assert_string_equal(d.got.alpn, "h2");
    assert_int_equal(d.got.timeout_ms, 2000);
    assert_int_equal(d.got.role, KTLSX_SERVER);

    memset(&d, 0, sizeof d);
    run_fake(FAKE_GARBAGE, &res, &d);
    assert_int_equal(res.status, KTLSX_DOOR_UNREACHABLE);
    assert_string_equal(res.message, "unreadable answer from the daemon: not a door answer (bad magic)");

    /* Whether the request went out before the door closed or not, the caller sees "busy". */
    for (int i = 0; i < 20; i++) {
        memset(&d, 0, sizeof d);
        run_fake(FAKE_BUSY_EARLY, &res, &d);
        if (res.status != KTLSX_DOOR_BUSY) fail_msg("round %d: %s: %s", i, ktlsx_door_status_name(res.status), res.message);
        assert_string_equal(res.message, "4096 door connections open (max_clients)");
    }

    memset(&d, 0, sizeof d);
    run_fake(FAKE_CLOSE, &res, &d);
    assert_int_equal(res.status, KTLSX_DOOR_UNREACHABLE);
    assert_string_equal(res.message, "no answer from the daemon: it closed the door connection");

    assert_null(ktlsx_daemon_handshake("/nonexistent/door", 0, KTLSX_CLIENT, "p", NULL, NULL, 100, &res));
    assert_int_equal(res.status, KTLSX_DOOR_UNREACHABLE);
    assert_string_equal(res.message, "cannot reach the daemon at /nonexistent/door: No such file or directory");
    assert_null(ktlsx_daemon_handshake(NULL, -1, KTLSX_CLIENT, "p", NULL, NULL, 100, &res));
    assert_int_equal(res.status, KTLSX_DOOR_BAD_REQUEST);
    assert_null(ktlsx_daemon_handshake(NULL, 0, KTLSX_CLIENT, NULL, NULL, NULL, 100, &res));
    assert_int_equal(res.status, KTLSX_DOOR_BAD_REQUEST);
    assert_null(ktlsx_daemon_handshake(NULL, 0, KTLSX_CLIENT, "p", NULL, NULL, -5, &res));
    assert_int_equal(res.status, KTLSX_DOOR_BAD_REQUEST);
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_null(ktlsx_daemon_handshake(NULL, 0, KTLSX_CLIENT, "p", long_name, NULL, 100, &res));
    assert_int_equal(res.status, KTLSX_DOOR_BAD_REQUEST);
    assert_null(ktlsx_daemon_handshake(NULL, 0, KTLSX_CLIENT, "p", NULL, NULL, 100, NULL));
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drive calls[0..n) together with one poll(2), as an event loop does; each
 * ends with rcs[i] (the step's last result), res[i], conns[i], and
 * wants[i] = how many times it said WANT_READ. */
static void drive(ktlsx_door_call **calls, int n, int *rcs, struct ktlsx_daemon_result *res, ktlsx_conn **conns,
                  int *wants, int64_t *ended)
{
    int left = n;
    for (int i = 0; i < n; i++) rcs[i] = -1, wants[i] = 0;
    while (left > 0) {
        struct pollfd p[8];
        int np = 0, map[8], timeout = -1;
        for (int i = 0; i < n; i++) {
            if (rcs[i] != -1 && rcs[i] != KTLSX_IO_WANT_READ && rcs[i] != KTLSX_IO_WANT_WRITE) continue;
            rcs[i] = ktlsx_daemon_handshake_step(calls[i], &conns[i], &res[i]);
            if (rcs[i] == KTLSX_IO_WANT_READ || rcs[i] == KTLSX_IO_WANT_WRITE) {
                if (rcs[i] == KTLSX_IO_WANT_READ) wants[i]++;
                assert_int_equal(ktlsx_daemon_handshake_fd(calls[i]) >= 0, 1);
                assert_null(conns[i]);
                int t = ktlsx_daemon_handshake_timeout_ms(calls[i]);
                assert_true(t >= 0);
                if (timeout < 0 || t < timeout) timeout = t;
                p[np].fd = ktlsx_daemon_handshake_fd(calls[i]);
                p[np].events = rcs[i] == KTLSX_IO_WANT_READ ? POLLIN : POLLOUT;
                map[np++] = i;
            } else {
                left--;
                ended[i] = mono_ms();
                assert_int_equal(ktlsx_daemon_handshake_fd(calls[i]), -1); /* over: the door connection is closed */
                assert_int_equal(ktlsx_daemon_handshake_timeout_ms(calls[i]), -1);
            }
        }
        if (np > 0) assert_true(poll(p, (nfds_t)np, timeout) >= 0);
        (void)map;
    }
}

static void test_daemon_handshake_steps(void **state)
{
    (void)state;
    struct ktlsx_daemon_result res[3];
    ktlsx_conn *conns[3];
    int rcs[3], wants[3];
    int64_t ended[3];

    /* No daemon: the call is over at once, no fd to wait on. */
    ktlsx_door_call *call = ktlsx_daemon_handshake_start("/nonexistent/door", 0, KTLSX_CLIENT, "p", NULL, NULL, 100);
    assert_non_null(call);
    assert_int_equal(ktlsx_daemon_handshake_fd(call), -1);
    conns[0] = (ktlsx_conn *)call; /* must be overwritten */
    assert_int_equal(ktlsx_daemon_handshake_step(call, &conns[0], &res[0]), KTLSX_IO_FAILED);
    assert_null(conns[0]);
    assert_int_equal(res[0].status, KTLSX_DOOR_UNREACHABLE);
    assert_string_equal(res[0].message, "cannot reach the daemon at /nonexistent/door: No such file or directory");
    ktlsx_daemon_handshake_free(call);
    /* Bad arguments: the same, with bad-request. */
    call = ktlsx_daemon_handshake_start(NULL, -1, KTLSX_SERVER, "p", NULL, NULL, 100);
    assert_int_equal(ktlsx_daemon_handshake_step(call, &conns[0], &res[0]), KTLSX_IO_FAILED);
    assert_int_equal(res[0].status, KTLSX_DOOR_BAD_REQUEST);
    assert_int_equal(ktlsx_daemon_handshake_step(call, NULL, &res[0]), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_daemon_handshake_step(call, &conns[0], NULL), KTLSX_IO_FAILED);
    ktlsx_daemon_handshake_free(call);
    assert_int_equal(ktlsx_daemon_handshake_step(NULL, &conns[0], &res[0]), KTLSX_IO_FAILED);
    assert_int_equal(ktlsx_daemon_handshake_fd(NULL), -1);
    assert_int_equal(ktlsx_daemon_handshake_timeout_ms(NULL), -1);
    ktlsx_daemon_handshake_free(NULL);

    /* A door that never answers, one that answers after 300 ms and one that
     * answers half a message, driven together: the silent one holds up
     * neither of the others and ends at its own deadline (100 ms + 1 s). */
    struct fake f[3];
    fake_start(&f[0], FAKE_SILENT);
    fake_start(&f[1], FAKE_SLOW_OK);
    fake_start(&f[2], FAKE_TRUNCATED);
    int64_t t0 = mono_ms();
    ktlsx_door_call *calls[3];
    calls[0] = ktlsx_daemon_handshake_start(f[0].sock, f[0].sp[0], KTLSX_SERVER, "web", NULL, NULL, 100);
    calls[1] = ktlsx_daemon_handshake_start(f[1].sock, f[1].sp[0], KTLSX_CLIENT, "web", "example.org", "h2", 5000);
    calls[2] = ktlsx_daemon_handshake_start(f[2].sock, f[2].sp[0], KTLSX_SERVER, "web", NULL, NULL, 5000);
    for (int i = 0; i < 3; i++) assert_non_null(calls[i]);
    drive(calls, 3, rcs, res, conns, wants, ended);

    assert_int_equal(rcs[0], KTLSX_IO_TIMEOUT);
    assert_int_equal(res[0].status, KTLSX_DOOR_UNREACHABLE);
    assert_string_equal(res[0].message, "no answer from the daemon: Connection timed out");
    assert_null(conns[0]);
    assert_true(ended[0] - t0 >= 1100);
    assert_true(wants[0] >= 1);

    assert_int_equal(rcs[1], KTLSX_IO_OK); /* no state came back: the kernel owns both directions */
    assert_null(conns[1]);
    assert_int_equal(res[1].status, KTLSX_DOOR_OK);
    assert_int_equal(res[1].ktls, KTLSX_KTLS_TX | KTLSX_KTLS_RX);
    assert_int_equal(res[1].version, KTLSX_TLS13);
    assert_string_equal(res[1].alpn, "h2");
    assert_true(wants[1] >= 1);           /* it said WANT_READ while the door was silent */
    assert_true(ended[1] < ended[0]);     /* and was not held up by the silent one */
    assert_int_equal(f[1].d.got.role, KTLSX_CLIENT);
    assert_string_equal(f[1].d.got.server_name, "example.org");
    assert_int_equal(f[1].d.got.timeout_ms, 5000);
    assert_true(f[1].d.got_fd_ok);
    /* After the end the outcome repeats, without a connection. */
    assert_int_equal(ktlsx_daemon_handshake_step(calls[1], &conns[1], &res[1]), KTLSX_IO_OK);
    assert_int_equal(res[1].status, KTLSX_DOOR_OK);

    assert_int_equal(rcs[2], KTLSX_IO_FAILED);
    assert_int_equal(res[2].status, KTLSX_DOOR_UNREACHABLE);
    assert_true(strncmp(res[2].message, "unreadable answer from the daemon: ", 35) == 0);
    assert_true(ended[2] < ended[0]);

    for (int i = 0; i < 3; i++) {
        ktlsx_daemon_handshake_free(calls[i]); /* the silent door sees its connection close and ends */
        fake_end(&f[i]);
    }

    /* A door that closes after reading the request. */
    fake_start(&f[0], FAKE_CLOSE);
    calls[0] = ktlsx_daemon_handshake_start(f[0].sock, f[0].sp[0], KTLSX_SERVER, "web", NULL, NULL, 2000);
    drive(calls, 1, rcs, res, conns, wants, ended);
    assert_int_equal(rcs[0], KTLSX_IO_FAILED);
    assert_int_equal(res[0].status, KTLSX_DOOR_UNREACHABLE);
    assert_string_equal(res[0].message, "no answer from the daemon: it closed the door connection");
    ktlsx_daemon_handshake_free(calls[0]);
    fake_end(&f[0]);

    /* Success with the state: the connection rebuilt from a real server's export. */
    kxt_pair pair;
    kxt_pair_start(&pair, kxt_client_cfg(NULL, NULL), kxt_server_cfg("ecdsa", NULL, NULL), "localhost",
                   KXT_FEED_WANTED);
    kxt_pump(&pair);
    kxt_assert_done(&pair);
    const char *why = NULL;
    long bl = ktlsx_conn_export(pair.s, fake_blob, sizeof fake_blob, &why);
    if (bl <= 0) fail_msg("export: %s", why ? why : "?");
    fake_blob_len = (size_t)bl;
    fake_start(&f[0], FAKE_BLOB);
    calls[0] = ktlsx_daemon_handshake_start(f[0].sock, f[0].sp[0], KTLSX_SERVER, "web", NULL, NULL, 2000);
    drive(calls, 1, rcs, res, conns, wants, ended);
    assert_int_equal(rcs[0], KTLSX_IO_OK);
    assert_int_equal(res[0].status, KTLSX_DOOR_OK);
    assert_string_equal(res[0].ktls_why, "no kernel TLS here");
    assert_non_null(conns[0]);
    assert_int_equal(ktlsx_handshake(conns[0]), KTLSX_DONE);
    assert_int_equal(ktlsx_version(conns[0]), ktlsx_version(pair.s));
    assert_int_equal(ktlsx_cipher_id(conns[0]), ktlsx_cipher_id(pair.s));
    ktlsx_conn_free(conns[0]);
    ktlsx_daemon_handshake_free(calls[0]);
    fake_end(&f[0]);
    /* The same answer, the call freed without taking the connection: freed with it (ASan: no leak). */
    fake_start(&f[0], FAKE_BLOB);
    calls[0] = ktlsx_daemon_handshake_start(f[0].sock, f[0].sp[0], KTLSX_SERVER, "web", NULL, NULL, 2000);
    struct pollfd pf = { .fd = ktlsx_daemon_handshake_fd(calls[0]), .events = POLLIN };
    assert_int_equal(poll(&pf, 1, 5000), 1);
    ktlsx_daemon_handshake_free(calls[0]);
    fake_end(&f[0]);
    /* A blob that does not import: internal, no connection. */
    fake_blob[0] ^= 0xff;
    fake_start(&f[0], FAKE_BLOB);
    calls[0] = ktlsx_daemon_handshake_start(f[0].sock, f[0].sp[0], KTLSX_SERVER, "web", NULL, NULL, 2000);
    drive(calls, 1, rcs, res, conns, wants, ended);
    assert_int_equal(rcs[0], KTLSX_IO_FAILED);
    assert_int_equal(res[0].status, KTLSX_DOOR_INTERNAL);
    assert_true(strncmp(res[0].message, "cannot import the daemon's state: ", 34) == 0);
    assert_null(conns[0]);
    ktlsx_daemon_handshake_free(calls[0]);
    fake_end(&f[0]);
    memset(fake_blob, 0, sizeof fake_blob);
    kxt_pair_free(&pair);

    /* A call freed while the door still works on it: the door sees the close. */
    fake_start(&f[0], FAKE_SILENT);
    calls[0] = ktlsx_daemon_handshake_start(f[0].sock, f[0].sp[0], KTLSX_SERVER, "web", NULL, NULL, 0);
    assert_int_equal(ktlsx_daemon_handshake_step(calls[0], &conns[0], &res[0]), KTLSX_IO_WANT_READ);
    int t = ktlsx_daemon_handshake_timeout_ms(calls[0]); /* timeout 0: the 60 s default wait */
    assert_true(t > 50000 && t <= 60000);
    ktlsx_daemon_handshake_free(calls[0]);
    fake_end(&f[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip), cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_answer_round_trip),  cmocka_unit_test(test_answer_refused),
        cmocka_unit_test(test_fd_passing),         cmocka_unit_test(test_daemon_handshake),
        cmocka_unit_test(test_daemon_handshake_steps),
    };
    return cmocka_run_group_tests(tests, kxt_pki_group_setup, kxt_pki_group_teardown);
}
