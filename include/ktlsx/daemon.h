/* ktlsxd's local door: the wire format, the fd passing and the caller's side.
 *
 * An application hands ktlsxd a connected TCP socket and asks for a TLS
 * handshake on it; ktlsxd runs the handshake with the keys it holds, moves
 * the record layer into the kernel where the kernel takes it, and answers.
 *
 * The door is a unix SOCK_SEQPACKET socket (default KTLSX_DOOR_DEFAULT_PATH).
 * One exchange is one request message, carrying the socket by SCM_RIGHTS,
 * and one answer message; a door connection may carry several exchanges one
 * after the other, never two at once.  ktlsxd takes the caller's identity
 * from SO_PEERCRED of the door connection, never from the message.
 *
 * Every integer is big-endian.  Each message is a fixed-size header, whose
 * length fields say how long each of the variable fields is, followed by those
 * fields in the header's order with nothing between and nothing after.  Text
 * fields carry no NUL.  A receiver refuses a message whose magic or version it
 * does not know, whose lengths are over the limits below or do not add up to
 * the message's size exactly.
 *
 * Request (KTLSX_DOOR_REQUEST_HEADER = 20 bytes, then the fields):
 *   u32 magic "kxdq"   u16 version (1)   u8 role (0 client, 1 server)   u8 flags (0)
 *   u32 timeout_ms (0: the daemon's default)
 *   u16 profile_len (1..KTLSX_DOOR_NAME_MAX)   u16 server_name_len (0..KTLSX_DOOR_HOST_MAX)
 *   u16 alpn_len (0..KTLSX_DOOR_ALPN_MAX)       u16 reserved (0)
 *   profile, server_name, alpn (comma-separated protocol names)
 *
 * Answer (KTLSX_DOOR_ANSWER_HEADER = 32 bytes, then the fields):
 *   u32 magic "kxda"   u16 version (1)   u16 status (enum ktlsx_door_status)
 *   u16 tls_version    u16 cipher (IANA id)   u8 alert   u8 resumed (0/1)
 *   u8 ktls (KTLSX_KTLS_TX | KTLSX_KTLS_RX: the directions in the kernel)   u8 reserved (0)
 *   u16 message_len (..KTLSX_DOOR_MESSAGE_MAX)   u16 group_len (..KTLSX_DOOR_GROUP_MAX)
 *   u16 alpn_len (..KTLSX_DOOR_ALPN_MAX)          u16 peer_subject_len (..KTLSX_DOOR_SUBJECT_MAX)
 *   u16 server_name_len (..KTLSX_DOOR_HOST_MAX)   u16 ktls_why_len (..KTLSX_DOOR_MESSAGE_MAX)
 *   u16 peer_sans_len (..KTLSX_DOOR_SUBJECT_MAX)  u16 blob_len (..KTLSX_EXPORT_MAX)
 *   message (why the status, one line), group, alpn (the protocol chosen),
 *   peer_subject, server_name (server: the SNI the client sent), ktls_why
 *   (why a direction is not in the kernel), peer_sans (the peer leaf's
 *   subject alternative names, "DNS:a, IP:192.0.2.1", cut at the limit),
 *   blob (ktlsx_conn_export output, present only when the profile allows
 *   handing back the TLS state)
 * The answer to an exchange that did not succeed carries no blob.
 */
#ifndef KTLSX_DAEMON_H
#define KTLSX_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include <ktlsx/ktlsx.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

#define KTLSX_DOOR_DEFAULT_PATH "/run/ktlsx/ktlsxd.sock"
#define KTLSX_DOOR_VERSION 1
#define KTLSX_DOOR_REQUEST_MAGIC 0x6b786471u /* "kxdq" */
#define KTLSX_DOOR_ANSWER_MAGIC 0x6b786461u  /* "kxda" */
#define KTLSX_DOOR_REQUEST_HEADER 20
#define KTLSX_DOOR_ANSWER_HEADER 32

/* Field limits (bytes, without a terminating NUL). */
#define KTLSX_DOOR_NAME_MAX 64      /* profile name */
#define KTLSX_DOOR_HOST_MAX 255     /* server name (DNS name or IP literal) */
#define KTLSX_DOOR_ALPN_MAX 255     /* ALPN list or the chosen protocol */
#define KTLSX_DOOR_MESSAGE_MAX 320  /* status message, kernel TLS reason */
#define KTLSX_DOOR_GROUP_MAX 32     /* key exchange group name */
#define KTLSX_DOOR_SUBJECT_MAX 1024 /* peer certificate subject, one line */

/* Largest well-formed messages: a buffer of this size always holds one. */
#define KTLSX_DOOR_REQUEST_MAX \
    (KTLSX_DOOR_REQUEST_HEADER + KTLSX_DOOR_NAME_MAX + KTLSX_DOOR_HOST_MAX + KTLSX_DOOR_ALPN_MAX)
#define KTLSX_DOOR_ANSWER_MAX                                                                          \
    (KTLSX_DOOR_ANSWER_HEADER + 2 * KTLSX_DOOR_MESSAGE_MAX + KTLSX_DOOR_GROUP_MAX + KTLSX_DOOR_ALPN_MAX + \
     2 * KTLSX_DOOR_SUBJECT_MAX + KTLSX_DOOR_HOST_MAX + KTLSX_EXPORT_MAX)

enum ktlsx_door_status {
    KTLSX_DOOR_OK = 0,               /* handshake done; ktls / blob say how to carry the data */
    KTLSX_DOOR_BAD_REQUEST = 1,      /* garbage, truncated, unknown version, bad field */
    KTLSX_DOOR_NO_PROFILE = 2,       /* no profile of that name for that role */
    KTLSX_DOOR_DENIED = 3,           /* the caller's uid/gid may not use the profile */
    KTLSX_DOOR_BAD_SOCKET = 4,       /* no fd, not a socket, not TCP, listening, not connected */
    KTLSX_DOOR_BUSY = 5,             /* too many handshakes in flight (overall or for this uid) */
    KTLSX_DOOR_HANDSHAKE_FAILED = 6, /* TLS failure: alert, message */
    KTLSX_DOOR_TIMEOUT = 7,          /* the handshake did not finish in time */
    KTLSX_DOOR_PEER_CLOSED = 8,      /* the TLS peer closed the connection during the handshake */
    KTLSX_DOOR_NO_KTLS = 9,          /* done, but kernel TLS is absent and the profile keeps the state */
    KTLSX_DOOR_ALPN_MISMATCH = 10,   /* done, but the protocol chosen is not one the caller offered */
    KTLSX_DOOR_SHUTTING_DOWN = 11,   /* the daemon is stopping */
    KTLSX_DOOR_INTERNAL = 12,        /* out of memory, or a daemon-side failure (message) */
    KTLSX_DOOR_UNREACHABLE = 13,     /* caller side only: the door could not be reached or did not answer */
};
/* "ok", "bad-request", ... ("unknown" outside the enum). */
const char *ktlsx_door_status_name(int status);

/* A request as the caller fills it and the daemon reads it (text fields NUL-terminated). */
struct ktlsx_door_request {
    enum ktlsx_role role;
    uint32_t timeout_ms;
    char profile[KTLSX_DOOR_NAME_MAX + 1];
    char server_name[KTLSX_DOOR_HOST_MAX + 1];
    char alpn[KTLSX_DOOR_ALPN_MAX + 1];
};

/* The answer without the blob (which ktlsx_daemon_handshake turns into the connection). */
struct ktlsx_daemon_result {
    int status;           /* enum ktlsx_door_status */
    uint8_t alert;        /* TLS alert sent or received, 0 if none */
    uint16_t version;     /* KTLSX_TLS12 / KTLSX_TLS13 (0 before the handshake) */
    uint16_t cipher;      /* IANA cipher suite id */
    int resumed;          /* 1 when the session was resumed */
    int ktls;             /* KTLSX_KTLS_TX | KTLSX_KTLS_RX: directions the kernel owns */
    char message[KTLSX_DOOR_MESSAGE_MAX + 1]; /* why the status, "" on success */
    char group[KTLSX_DOOR_GROUP_MAX + 1];
    char alpn[KTLSX_DOOR_ALPN_MAX + 1];
    char peer_subject[KTLSX_DOOR_SUBJECT_MAX + 1];
    char server_name[KTLSX_DOOR_HOST_MAX + 1];
    char ktls_why[KTLSX_DOOR_MESSAGE_MAX + 1];
    char peer_sans[KTLSX_DOOR_SUBJECT_MAX + 1]; /* "DNS:a, IP:192.0.2.1"; "" if none (or resumed) */
};

/* ---- codec: pure functions over buffers, no I/O ---- */

/* Encode `req` into buf[0..cap).  Returns the length, or -1 with *why (static
 * string; why may be NULL) on a NULL argument, an empty or too long field, a
 * field holding a control character, or a bad role, or cap too small. */
long ktlsx_door_request_encode(const struct ktlsx_door_request *req, uint8_t *buf, size_t cap, const char **why);
/* Decode a request message of exactly `len` bytes into *req (overwritten).
 * Untrusted input: returns 0, or -1 with *why on anything not as described above. */
int ktlsx_door_request_decode(const uint8_t *buf, size_t len, struct ktlsx_door_request *req, const char **why);
/* Encode an answer: the fields of `res` (text fields cut at their limits) and
 * `blob_len` bytes of `blob` (NULL when 0; more than KTLSX_EXPORT_MAX is
 * refused).  Returns the length or -1 with *why. */
long ktlsx_door_answer_encode(const struct ktlsx_daemon_result *res, const uint8_t *blob, size_t blob_len,
                              uint8_t *buf, size_t cap, const char **why);
/* Decode an answer of exactly `len` bytes into *res; *blob / *blob_len point
 * into buf at the export blob (NULL / 0 when none).  Returns 0 or -1 with *why. */
int ktlsx_door_answer_decode(const uint8_t *buf, size_t len, struct ktlsx_daemon_result *res, const uint8_t **blob,
                             size_t *blob_len, const char **why);

/* ---- passing a socket with a message (SCM_RIGHTS) ---- */

/* Send `len` bytes of `msg` as one message on the SOCK_SEQPACKET socket
 * `channel`, with descriptor `fd` attached (fd < 0: none).  flags: 0 or
 * MSG_DONTWAIT.  Returns 0, or -1 with errno (EAGAIN with MSG_DONTWAIT when
 * the socket is full; EMSGSIZE when the message was not taken whole). */
int ktlsx_send_fd(int channel, const void *msg, size_t len, int fd, int flags);
/* Receive one message into buf[0..cap) and the descriptor that came with it
 * (close-on-exec) into *fd (-1 when none).  Returns the message length,
 * 0 when the other side closed, or -1 with errno (EAGAIN with MSG_DONTWAIT;
 * EMSGSIZE when the message or its control data was cut: any descriptor that
 * came with it is closed then).  A message with more than one descriptor
 * keeps the first and closes the others. */
long ktlsx_recv_fd(int channel, void *buf, size_t cap, int *fd, int flags);

/* ---- the caller's side ---- */

/* Hand connected TCP socket `fd` to the daemon at `door_path` (NULL: the
 * default) for a handshake as `role` with the daemon's profile `profile`;
 * `server_name` (client: SNI and verification; may be NULL), `alpn`
 * (comma-separated offer; NULL: the profile's; the protocol chosen must be
 * one of them), `timeout_ms` (the handshake deadline, 0: the daemon's
 * default; this call waits that long plus a second for the answer, or 60 s
 * when 0).  Blocks (the steps below do not).  `fd` stays the caller's: the daemon works on its own
 * copy and closes it before answering.
 * Returns the connection rebuilt from the daemon's blob (on a fresh
 * configuration of `role` that the connection holds; wrap it with
 * ktlsx_socket_wrap(conn, fd)), with *res filled.  Returns NULL with
 * res->status saying why: an error status with res->message (and res->alert);
 * or KTLSX_DOOR_OK when the profile does not hand back the TLS state and the
 * kernel owns both directions (res->ktls): then read/write `fd` directly.
 * res must not be NULL. */
ktlsx_conn *ktlsx_daemon_handshake(const char *door_path, int fd, enum ktlsx_role role, const char *profile,
                                   const char *server_name, const char *alpn, int timeout_ms,
                                   struct ktlsx_daemon_result *res);

/* The same exchange without blocking, for event loops (the blocking call
 * above is a poll(2) loop over these).  Conventions as the ktlsx_socket_*
 * step calls: a step never blocks; on KTLSX_IO_WANT_READ / _WANT_WRITE wait
 * until ktlsx_daemon_handshake_fd() is readable / writable (epoll, io_uring
 * POLL_ADD) and call the step again; the deadline is the caller's to watch
 * (ktlsx_daemon_handshake_timeout_ms), and the next step after it ends the
 * call with KTLSX_IO_TIMEOUT. */
typedef struct ktlsx_door_call ktlsx_door_call;

/* Start handing `fd` to the daemon: arguments as ktlsx_daemon_handshake.
 * Connects to the door and sends the request without waiting (a unix
 * connect never waits: a daemon whose listen backlog is full gives
 * KTLSX_DOOR_BUSY).  Bad arguments or an unreachable door do not return
 * NULL: the call is then already over, and the first step returns
 * KTLSX_IO_FAILED with res->status saying why (so call the step once before
 * waiting on the fd).  NULL only when out of memory.  `fd` stays the
 * caller's, and open until the call is over. */
ktlsx_door_call *ktlsx_daemon_handshake_start(const char *door_path, int fd, enum ktlsx_role role,
                                              const char *profile, const char *server_name, const char *alpn,
                                              int timeout_ms);
/* The door connection to wait on (close-on-exec, non-blocking); -1 once the
 * call is over or for NULL. */
int ktlsx_daemon_handshake_fd(const ktlsx_door_call *call);
/* Milliseconds until the call's deadline (the handshake timeout plus a
 * second, or 60 s when it is 0), 0 if it has passed, -1 once over or NULL. */
int ktlsx_daemon_handshake_timeout_ms(const ktlsx_door_call *call);
/* Advance the call.  KTLSX_IO_WANT_WRITE (the request waits for room on the
 * door) or KTLSX_IO_WANT_READ (waiting for the answer): *conn = NULL, *res
 * untouched.  Otherwise the call is over, the door connection closed, *res
 * filled, and *conn as ktlsx_daemon_handshake returns it:
 *   KTLSX_IO_OK       res->status KTLSX_DOOR_OK; *conn the connection (wrap
 *                     it with ktlsx_socket_wrap(conn, fd)), or NULL when the
 *                     kernel owns both directions and no state came back
 *   KTLSX_IO_FAILED   any other status (the daemon's answer, or
 *                     KTLSX_DOOR_UNREACHABLE / _BAD_REQUEST / _BUSY /
 *                     _INTERNAL from this side) with res->message; also for a
 *                     NULL argument (then nothing is filled)
 *   KTLSX_IO_TIMEOUT  no answer by the deadline: KTLSX_DOOR_UNREACHABLE
 * The connection is handed out once; a step after the end repeats the
 * outcome with *conn = NULL. */
int ktlsx_daemon_handshake_step(ktlsx_door_call *call, ktlsx_conn **conn, struct ktlsx_daemon_result *res);
/* Ends the call (closes the door connection; a connection not handed out is
 * freed); NULL is ignored.  `fd` stays open. */
void ktlsx_daemon_handshake_free(ktlsx_door_call *call);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
