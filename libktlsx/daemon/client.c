/* The caller's side of ktlsxd's local door: send the socket and the request,
 * wait for the answer, rebuild the connection from the state blob. */
#include "core/wipe.h"
#include <ktlsx/daemon.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The daemon cuts the handshake at the deadline and answers at once; this
 * much more covers the answer's way back on a loaded machine. */
#define DOOR_ANSWER_SLACK_MS 1000
#define DOOR_DEFAULT_WAIT_MS 60000

static ktlsx_conn *refuse(struct ktlsx_daemon_result *res, int status, const char *fmt, const char *arg)
{
    res->status = status;
    snprintf(res->message, sizeof res->message, fmt, arg);
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect to the door; -1 with the reason in res. */
static int door_connect(const char *path, struct ktlsx_daemon_result *res)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        refuse(res, KTLSX_DOOR_UNREACHABLE, "door path too long: %s", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int err = errno;
        if (s >= 0) close(s);
        char m[KTLSX_DOOR_MESSAGE_MAX + 1];
        snprintf(m, sizeof m, "cannot reach the daemon at %s: %s", path, strerror(err));
        refuse(res, KTLSX_DOOR_UNREACHABLE, "%s", m);
        return -1;
    }
    return s;
}

ktlsx_conn *ktlsx_daemon_handshake(const char *door_path, int fd, enum ktlsx_role role, const char *profile,
                                   const char *server_name, const char *alpn, int timeout_ms,
                                   struct ktlsx_daemon_result *res)
{
    if (!res) return NULL;
    memset(res, 0, sizeof *res);
    if (!door_path) door_path = KTLSX_DOOR_DEFAULT_PATH;
    if (fd < 0) return refuse(res, KTLSX_DOOR_BAD_REQUEST, "fd %s is not a descriptor", "< 0");
    if (timeout_ms < 0) return refuse(res, KTLSX_DOOR_BAD_REQUEST, "timeout_ms %s: must be >= 0", "< 0");
    if (!profile) return refuse(res, KTLSX_DOOR_BAD_REQUEST, "profile is %s", "NULL");
    struct ktlsx_door_request req = { .role = role, .timeout_ms = (uint32_t)timeout_ms };
    if (strlen(profile) >= sizeof req.profile)
        return refuse(res, KTLSX_DOOR_BAD_REQUEST, "profile name '%.64s...' over 64 bytes", profile);
    if (server_name && strlen(server_name) >= sizeof req.server_name)
        return refuse(res, KTLSX_DOOR_BAD_REQUEST, "server name '%.64s...' over 255 bytes", server_name);
    if (alpn && strlen(alpn) >= sizeof req.alpn)
        return refuse(res, KTLSX_DOOR_BAD_REQUEST, "ALPN list '%.64s...' over 255 bytes", alpn);
    memcpy(req.profile, profile, strlen(profile));
    if (server_name) memcpy(req.server_name, server_name, strlen(server_name));
    if (alpn) memcpy(req.alpn, alpn, strlen(alpn));

    uint8_t msg[KTLSX_DOOR_ANSWER_MAX];
    const char *why = NULL;
    long len = ktlsx_door_request_encode(&req, msg, sizeof msg, &why);
    if (len < 0) return refuse(res, KTLSX_DOOR_BAD_REQUEST, "%s", why);
    int door = door_connect(door_path, res);
    if (door < 0) return NULL;
    /* A daemon at its limits answers "busy" before reading and closes: the
     * send then fails, and that answer is what the caller wants to see. */
    int send_err = ktlsx_send_fd(door, msg, (size_t)len, fd, 0) < 0 ? errno : 0;

    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms + DOOR_ANSWER_SLACK_MS : DOOR_DEFAULT_WAIT_MS);
    int64_t left = 1;
    while (!send_err && (left = deadline - now_ms()) > 0) {
        struct pollfd p = { .fd = door, .events = POLLIN };
        int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (r < 0 && errno == EINTR) continue;
        if (r != 0) break;
    }
    int extra = -1;
    long n = left > 0 ? ktlsx_recv_fd(door, msg, sizeof msg, &extra, MSG_DONTWAIT) : -1;
    /* A door that closed without reading our request makes the first receive
     * report ECONNRESET (and clear it) even with its answer queued: read again. */
    if (n < 0 && errno == ECONNRESET) n = ktlsx_recv_fd(door, msg, sizeof msg, &extra, MSG_DONTWAIT);
    int err = left > 0 ? errno : ETIMEDOUT;
    close(door);
    if (extra >= 0) close(extra); /* the daemon never sends one: not ours to keep */
    if (n <= 0 && send_err) {
        kx_wipe(msg, sizeof msg);
        return refuse(res, KTLSX_DOOR_UNREACHABLE, "sending the request: %s", strerror(send_err));
    }
    if (n <= 0) {
        kx_wipe(msg, sizeof msg);
        return refuse(res, KTLSX_DOOR_UNREACHABLE, "no answer from the daemon: %s",
                      n == 0 ? "it closed the door connection" : strerror(err));
    }
    const uint8_t *blob;
    size_t blob_len;
    if (ktlsx_door_answer_decode(msg, (size_t)n, res, &blob, &blob_len, &why) < 0) {
        kx_wipe(msg, sizeof msg);
        memset(res, 0, sizeof *res);
        return refuse(res, KTLSX_DOOR_UNREACHABLE, "unreadable answer from the daemon: %s", why);
    }
    if (res->status != KTLSX_DOOR_OK || blob_len == 0) {
        kx_wipe(msg, sizeof msg);
        return NULL;
    }
    ktlsx_config *cfg = ktlsx_config_new(role);
    ktlsx_conn *conn = cfg ? ktlsx_conn_import(cfg, blob, blob_len, &why) : NULL;
    kx_wipe(msg, sizeof msg);
    ktlsx_config_free(cfg); /* the connection holds its own reference */
    if (!conn) return refuse(res, KTLSX_DOOR_INTERNAL, "cannot import the daemon's state: %s",
                             cfg ? why : "out of memory");
    return conn;
}
