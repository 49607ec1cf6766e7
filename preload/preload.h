/* libktlsx-preload.so: the shim's internal interfaces (rules, fd table).
 * Nothing here is exported: the .so exports only the interposed libc calls
 * (preload/preload.map).  The shim is a user of the public API: it is
 * compiled without -Ilibktlsx like the tool and the daemon. */
#ifndef KTLSX_PRELOAD_H
#define KTLSX_PRELOAD_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <ktlsx/daemon.h>
#include <ktlsx/ktlsx.h>

/* ---- rules (preload/rules.c) ---- */

enum pl_kind { PL_SERVE = 0, PL_CONNECT = 1 };
enum pl_mode { PL_MODE_AUTO = 0, PL_MODE_DAEMON = 1, PL_MODE_INPROCESS = 2 };
enum pl_verify { PL_VERIFY_UNSET = -1, PL_VERIFY_NONE = 0, PL_VERIFY_OPTIONAL = 1, PL_VERIFY_REQUIRE = 2 };

#define PL_PATH_MAX 512
#define PL_DOOR_PATH_MAX 107 /* sun_path less the NUL */
#define PL_HS_MS_DEFAULT 10000
#define PL_HS_MS_MIN 100
#define PL_HS_MS_MAX 600000
#define PL_NB_HS_MS_DEFAULT 2000

struct pl_rule {
    enum pl_kind kind;
    int line;                              /* where it was written (for messages) */
    char where[PL_PATH_MAX + 16];          /* "file:line" */
    uint16_t port;                         /* serve: local port; connect: destination port */
    char host[KTLSX_DOOR_HOST_MAX + 1];    /* connect: host name or IP literal (no brackets) */
    char name[KTLSX_DOOR_HOST_MAX + 1];    /* connect: SNI / verified name ("" = host, or getaddrinfo's) */
    char profile[KTLSX_DOOR_NAME_MAX + 1]; /* daemon profile ("" = none) */
    char cert[PL_PATH_MAX], key[PL_PATH_MAX], ca[PL_PATH_MAX];
    char alpn[KTLSX_DOOR_ALPN_MAX + 1];
    int verify;                            /* serve: verify-client; connect: verify= (NONE or REQUIRE=peer) */
    ktlsx_config *cfg;                     /* in-process configuration (pl_rules_build), NULL if none */
};

struct pl_rules {
    struct pl_rule *v;
    size_t n;
    char daemon[PL_DOOR_PATH_MAX + 1]; /* door path ("" = KTLSX_DOOR_DEFAULT_PATH) */
    enum pl_mode mode;
    int log_level;                     /* enum ktlsx_log_level; default WARNING */
    int hs_ms;                         /* handshake deadline (server threads, connect) */
    int nb_hs_ms;                      /* parsed, unused: every listener runs handshakes off the program's thread */
};

/* Parse rules text (`len` bytes, need not be NUL-terminated) named `fname`
 * into *out (appends rules; globals overwrite).  Returns 0, or -1 with
 * "fname:line: problem" in err.  Pure: no I/O, no allocation but out->v. */
int pl_rules_parse(const char *text, size_t len, const char *fname, struct pl_rules *out, char *err, size_t errlen);
/* Defaults into *r (no rules). */
void pl_rules_init(struct pl_rules *r);
/* The environment: KTLSX_RULES=FILE (read and parsed), KTLSX_SERVE / KTLSX_CONNECT one-liners,
 * KTLSX_DAEMON, KTLSX_MODE, KTLSX_LOG, KTLSX_HANDSHAKE_TIMEOUT_MS.  `get` is getenv (a parameter
 * for the tests).  Returns 0 (possibly no rules: the shim is then inert) or -1 with err. */
int pl_rules_from_env(struct pl_rules *r, char *(*get)(const char *), char *err, size_t errlen);
/* Check each rule against the mode and build the in-process configurations
 * (loads certificates and keys).  Returns 0 or -1 with "file:line: problem". */
int pl_rules_build(struct pl_rules *r, char *err, size_t errlen);
void pl_rules_free(struct pl_rules *r);
/* Rule for a server socket on local port `port`, or NULL. */
const struct pl_rule *pl_rules_serve(const struct pl_rules *r, uint16_t port);
/* Rule for a connection to host text `addr` (numeric) / `name` (from getaddrinfo, may be NULL) and
 * `port`, or NULL. */
const struct pl_rule *pl_rules_connect(const struct pl_rules *r, const char *addr, const char *name, uint16_t port);
const char *pl_mode_name(enum pl_mode m);

/* ---- fd table (preload/fdtable.c) ---- */

struct pl_listener; /* preload/shim.c: a TLS listener's handshakes in flight and finished */

/* The TLS state of one connection (or one TLS listener: sock NULL, lst set), shared by every fd that
 * refers to it (dup). */
struct pl_tls {
    struct pl_listener *lst; /* listeners only */
    pthread_mutex_t lock;   /* one caller at a time in the library for this connection */
    int refs;               /* program fds pointing here (under the table lock) */
    int priv_fd;            /* the shim's own dup of the socket: what ktlsx_socket uses */
    ktlsx_socket *sock;
    const struct pl_rule *rule;
    int ktls;               /* directions in the kernel */
    int eof;                /* the read side ended (close_notify / TCP EOF) */
    int shut_wr;            /* close_notify sent */
    int failed;             /* the connection failed: reads/writes give ECONNRESET */
    int forked;             /* the parent of a fork: the child may carry on, so no close_notify at close */
    char *peek;             /* MSG_PEEK: plaintext read ahead, handed out first (under lock) */
    size_t peek_len, peek_off;
    int connecting;         /* nonblocking connect: TCP + handshake run on a shim thread (sock NULL) */
    int abandoned;          /* closed by the program while connecting: the thread frees the state */
    int conn_err;           /* the nonblocking connect failed: errno for SO_ERROR and later calls */
    int wake_fd;            /* connecting: eventfd, readable once the handshake ended (-1: none) */
};

/* Set up the table (size from RLIMIT_NOFILE, at most 1<<20 fds).  0 or -1. */
int pl_fd_init(void);
/* The state behind `fd`, NULL when none (one atomic load: the fast path for every unmatched socket). */
struct pl_tls *pl_fd_get(int fd);
/* Attach a new state to `fd` (refs = 1). */
int pl_fd_attach(int fd, struct pl_tls *t);
/* newfd now refers to the same state as oldfd (dup/dup2/dup3/F_DUPFD); a state newfd had is released first. */
void pl_fd_dup(int oldfd, int newfd);
/* Detach `fd`; returns the state when this was its last fd (the caller finishes it), else NULL. */
struct pl_tls *pl_fd_detach(int fd);
/* Drop whatever state `fd` still has (a new socket got that number: the old one was closed unseen). */
void pl_fd_forget(int fd);
/* fork, in the child: fresh locks for the table and every state (single-threaded now). */
void pl_fd_after_fork_child(void);
/* fork: mark every state "forked" in the parent (pthread_atfork). */
void pl_fd_mark_forked(void);
/* Free a state (socket and private fd) without any TLS close. */
void pl_tls_free(struct pl_tls *t);
/* Drop the table's reference on a listener's state (preload/shim.c). */
void pl_listener_release(struct pl_listener *l);
/* fork, in the child: the parent's handshake threads are not here (preload/shim.c). */
void pl_listeners_after_fork(void);
/* Call fn on every listener state in the table (fork handlers; no lock taken: the child is single-threaded). */
void pl_fd_each_listener(void (*fn)(struct pl_listener *));

#endif
