/* ktlsx-fileserver: HTTPS/1.1 static files on io_uring, TLS by libktlsx.
 *
 *   main.c   options, the TLS configuration, workers (one thread + one ring each)
 *   ring.c   the worker's loop: multishot accept, one-shot POLL_ADD per waiting
 *            connection, the deadline scan
 *   conn.c   one connection: handshake (or ktlsxd's, --daemon), request, file, response, keep-alive
 *   http.c   the request parser (no I/O)
 *
 * Public API only (include/ktlsx/ktlsx.h), like cli/ and daemon/. */
#ifndef KTLSX_FILESERVER_H
#define KTLSX_FILESERVER_H

#include <ktlsx/daemon.h>
#include <ktlsx/ktlsx.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* How a body goes out once TX is in the kernel (--body): sendfile(2), or io_uring
 * splices file -> pipe -> socket (two linked SQEs per chunk).  Without kernel TX
 * both are the library's records (ktlsx_socket_sendfile_step). */
enum fs_body { FS_BODY_SENDFILE = 0, FS_BODY_SPLICE = 1 };

struct fs_options {
    const char *root, *listen, *cert, *key, *ca, *access_log;
    enum fs_body body;
    const char *daemon, *profile; /* --daemon: ktlsxd does the handshakes */
    bool verify_client, list_dirs, no_openat2;
    int workers, max_conns;
    size_t max_header;
    int handshake_ms, header_ms, keepalive_ms, send_ms;
};

/* Shared by every worker (read-only after start-up). */
struct fs_server {
    struct fs_options opt;
    ktlsx_config *cfg;    /* NULL with --daemon */
    int root_fd;          /* O_PATH | O_DIRECTORY */
    bool have_openat2;
    FILE *access_log;     /* NULL: none */
    struct sockaddr_in addr;
};
extern struct fs_server fs;
extern volatile int fs_stop;
extern int fs_conn_count; /* all workers (atomic) */

enum fs_state { ST_DOOR, ST_HANDSHAKE, ST_READ, ST_SEND_HEAD, ST_SEND_BODY, ST_FLUSH, ST_CLOSING, ST_LINGER };

struct fs_worker;
struct fs_conn {
    struct fs_conn *prev, *next; /* the worker's list (deadline scan) */
    struct fs_worker *w;
    ktlsx_socket *sock;     /* NULL while ktlsxd does the handshake */
    ktlsx_door_call *door;  /* ST_DOOR: the exchange with ktlsxd */
    int fd;
    enum fs_state st;
    bool dead;          /* closed: freed once no poll is in flight */
    bool close_after;   /* Connection: close after this response */
    bool header_started;
    uint8_t inflight;   /* polls in flight (0 or 1) */
    uint32_t armed;     /* events of the poll in flight */
    uint32_t revents;   /* what the poll that completed last reported (read once by fs_conn_drive) */
    int64_t deadline;   /* monotonic ms; 0 = none */
    struct sockaddr_in peer;
    /* request bytes: allocated while a request is partial or pipelined */
    char *in;
    size_t in_len;
    /* the response being sent */
    char *head;
    size_t head_len, head_off;
    int file_fd;
    int64_t body_off, body_end;
    /* --body splice: the connection's pipe (made at its first spliced body),
     * bytes sitting in it, splices in flight (c is freed, and c->fd closed,
     * only when none is: a closed fd number could be reused under a linked SQE) */
    int pipe_fd[2];
    size_t pipe_bytes, pipe_size;
    uint8_t splicing;
    uint8_t guarded;    /* the guard poll (POLLERR | POLLHUP on fd) is in flight while splicing */
    uint8_t unguarding; /* its POLL_REMOVE was sent */
    bool peer_gone;     /* the guard fired: cancel, then close when the splices are back */
    uint32_t cancelled; /* splice cancels sent (for the debug log) */
    bool splice_again;  /* the socket said EAGAIN: wait for POLLOUT */
    bool splice_failed; /* a splice failed (message in splice_err) */
    bool fd_closing;    /* close_conn ran while splicing: close fd at free */
    int splice_err;
    /* for the access log line */
    char *log_line;
    int status;
    uint64_t bytes_sent;
};

struct fs_worker {
    int id;
    int lfd;
    struct io_uring ring;
    struct fs_conn list; /* sentinel */
    int nconns;
    int64_t next_scan;
};

int64_t fs_now_ms(void);
void fs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ring.c */
void *fs_worker_run(void *arg);
/* Wait for `events` (POLLIN / POLLOUT) on c->fd (in ST_DOOR: the door connection), then call fs_conn_drive. */
void fs_conn_wait(struct fs_conn *c, uint32_t events);
/* Forget c: cancel its poll; freed when the poll's completion is back. */
void fs_conn_release(struct fs_conn *c);

/* conn.c */
struct fs_conn *fs_conn_new(struct fs_worker *w, int fd, const struct sockaddr_in *peer);
void fs_conn_drive(struct fs_conn *c);
void fs_conn_expire(struct fs_conn *c); /* its deadline passed */
void fs_conn_free(struct fs_conn *c);
/* A splice of c finished (ring.c: user_data = c | FS_TAG_SPLICE_IN / _OUT). */
#define FS_TAG_SPLICE_IN 1u
#define FS_TAG_SPLICE_OUT 2u
#define FS_TAG_GUARD 4u
#define FS_TAG_MASK 7u
void fs_conn_splice_done(struct fs_conn *c, unsigned tag, int res);
/* The guard poll of c completed (res: its events, or -ECANCELED once removed). */
void fs_conn_guard_done(struct fs_conn *c, int res);
/* ring.c: cancel c's in-flight splices (IORING_OP_ASYNC_CANCEL by user_data); their
 * completions still come back (-ECANCELED, -EINTR) and are counted as usual. */
void fs_splice_cancel(struct fs_conn *c);
/* ring.c: remove c's guard poll (its completion comes back -ECANCELED). */
void fs_splice_unguard(struct fs_conn *c);
/* ring.c: queue splice(s) for c's body: file -> pipe (len) linked to pipe -> socket (len);
 * with in_len 0 only the pipe -> socket part (what an earlier chunk left in the pipe). */
int fs_splice_submit(struct fs_conn *c, size_t in_len, size_t out_len);

#endif
