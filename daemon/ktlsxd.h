/* ktlsxd: declarations shared by its files.
 *   main.c        arguments, privileges, signals, the worker threads
 *   loop.c        one event loop per thread: io_uring, else epoll
 *   conf.c        the INI configuration: profiles and their ktlsx_config
 *   door_local.c  the local door: unix SOCK_SEQPACKET, requests, handshakes
 *   door_kernel.c the kernel door: the `handshake` netlink upcall (NVMe/TCP, NFS TLS); hsnl.c its messages
 *   control.c     the control socket ktlsxctl talks to
 *   stats.c       the counters behind `ktlsxctl stats`
 *   sandbox.c     the seccomp allow-list
 * The daemon uses libktlsx's public API only, as any application does. */
#ifndef KTLSXD_H
#define KTLSXD_H

#include <ktlsx/daemon.h>
#include <ktlsx/ktlsx.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KD_DEFAULT_CONF "/etc/ktlsx/ktlsxd.conf"
#define KD_MAX_PROFILES 64
#define KD_MAX_IDS 32
#define KD_MAX_TICKET_KEY_FILES 3 /* the library keeps 3 keys (a 4th file would replace the 3rd) */
#define KD_MAX_WORKERS 256
#define KD_DEFAULT_CONTROL "/run/ktlsx/ktlsxd.ctl"
#define KD_MAX_GROUPS 64 /* supplementary groups of a caller (SO_PEERGROUPS) looked at */

/* ---- logging ---- */
extern int kd_log_level; /* enum ktlsx_log_level: lines above it are dropped */
void kd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The sink every profile's configuration logs through (a ktlsx_log_fn). */
void kd_log_sink(void *arg, int level, const char *line);

/* ---- configuration ---- */
struct kd_profile {
    char name[KTLSX_DOOR_NAME_MAX + 1];
    enum ktlsx_role role;
    ktlsx_config *cfg; /* one reference, the profile's; connections hold their own */
    bool export_state;
    bool any_uid;      /* allow_uids = * */
    uid_t uids[KD_MAX_IDS];
    size_t nuids;
    gid_t gids[KD_MAX_IDS];
    size_t ngids;
    int line;          /* of its first key, for the end-of-file checks */
    char cert_pending[4096]; /* a cert line waiting for its key line */
    int cert_line;
    size_t certs;
    char psk_pending[256]; /* a psk_identity line waiting for its psk_file line */
    int psk_line;
    bool psk_sha384, psk_set;
    /* issue 12: session_cache = memcached:... waiting for its session_store_key line */
    char store_pending[1024];
    int store_line;
    unsigned store_timeout_ms; /* session_store_timeout_ms; 0 = the library's default */
};

struct kd_conf {
    char path[4096];
    char socket_path[108];
    int log_level;
    size_t max_clients;          /* door connections at once */
    size_t max_per_uid;          /* handshakes in flight per caller uid */
    size_t max_clients_per_uid;  /* door connections open per caller uid */
    int request_timeout_ms;      /* a door connection that sends no request is cut after this */
    int handshake_timeout_ms;    /* when the request says 0 */
    int max_handshake_timeout_ms;
    bool epoll_only;             /* event_loop = epoll */
    int workers;                 /* 0 = one per online CPU */
    char control_path[108];      /* "" = no control socket; default: the door's path, .sock -> .ctl */
    bool control_set;
    uid_t control_uids[KD_MAX_IDS]; /* besides root and the daemon's own uid */
    size_t ncontrol_uids;
    bool control_any_uid;
    char user[64];               /* drop to this user after binding and reading keys ("" = stay) */
    bool seccomp;                /* the system-call allow-list (sandbox.c); default on */
    bool tcp_store;              /* issue 12: a server profile uses a memcached store (TCP sockets out) */
    unsigned ticket_rotation_s;  /* fresh ticket key this often (0 = never; ticket_key_file keys are not rotated) */
    char ticket_key_files[KD_MAX_TICKET_KEY_FILES][4096];
    size_t nticket_key_files;
    struct kd_profile profiles[KD_MAX_PROFILES];
    size_t nprofiles;
    /* [kernel]: the kernel's `handshake` netlink upcall (door_kernel.c) */
    bool kernel_enabled;
    char kernel_server_profile[KTLSX_DOOR_NAME_MAX + 1]; /* x509 requests without serials: this profile's certs */
    char kernel_client_profile[KTLSX_DOOR_NAME_MAX + 1];
    int kernel_server_line, kernel_client_line;
    uint16_t kernel_min_version, kernel_max_version;   /* default 1.3 only */
    char kernel_ca_file[4096]; /* trust anchors for x509 requests that bring their own certificate serials */
    unsigned kernel_record_size_limit; /* RFC 8449 value for requests without a profile; 0: not offered */
};

/* Read and apply `path`.  Returns the configuration, or NULL with
 * "path:line: problem" (or "path: problem") in err. */
struct kd_conf *kd_conf_load(const char *path, char *err, size_t errlen);
void kd_conf_free(struct kd_conf *conf);
const struct kd_profile *kd_conf_profile(const struct kd_conf *conf, const char *name, enum ktlsx_role role);
/* uid, primary gid and the supplementary groups of the caller. */
bool kd_profile_allows(const struct kd_profile *p, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups);

/* ---- the event loop (main.c) ---- */
/* Everything epoll watches starts with one of these; epoll's data.ptr points at it. */
struct kd_watch {
    void (*fn)(struct kd_watch *w, uint32_t events);
    /* the loop's own bookkeeping (loop.c) */
    int fd;
    uint32_t events, armed_events;
    bool active;  /* between ADD and DEL */
    int inflight; /* io_uring: polls not yet completed (the watch must outlive them) */
};
/* This thread's loop: io_uring where it can be set up (unless allow_uring is
 * false), else epoll; with `say`, one log line says which. */
int kd_loop_init(bool allow_uring, bool say);
void kd_loop_close(void);
/* op: EPOLL_CTL_ADD / _MOD (the same on both backends) / _DEL; events: EPOLLIN, EPOLLOUT, EPOLLRDHUP. */
int kd_watch_fd(int fd, int op, uint32_t events, struct kd_watch *w);
/* No poll of this watch is in flight: its memory may be freed (after a DEL). */
bool kd_watch_idle(const struct kd_watch *w);
/* Wait at most timeout_ms (-1: no limit) and call the ready watches. 0, or -1 with errno. */
int kd_loop_wait(int timeout_ms);
int64_t kd_now_ms(void);

/* ---- the configuration in force, shared by the workers (conf.c) ---- */
/* The current configuration, read-locked until kd_conf_drop: what is looked
 * up in it is good until then (take references, copy numbers). */
const struct kd_conf *kd_conf_hold(void);
void kd_conf_drop(void);
/* Put `next` in force; returns the previous one (NULL the first time), no
 * longer reachable by any worker: the caller frees it. */
struct kd_conf *kd_conf_swap(struct kd_conf *next);

/* ---- the local door (door_local.c) ---- */
/* Bind the door at conf->socket_path (main thread, before the workers). 0 or -1 (logged). */
int kd_door_listen(const struct kd_conf *conf);
/* Use a listening socket systemd passed (socket activation) instead. 0 or -1 (logged). */
int kd_door_adopt(int fd, const char *path);
/* Each worker: watch the listening socket on this thread's loop. */
int kd_door_attach(void);
/* Main thread: refuse new door connections from now on (the socket file goes). */
void kd_door_stop(void);
/* Main thread, after the workers have ended: close the listening socket. */
void kd_door_unlisten(void);
/* Each worker, once stopping: stop accepting, drop door connections that
 * wait for a request, let the handshakes in flight finish (each has its deadline). */
void kd_door_close(void);
/* This worker: cut what has passed its deadline; returns ms until the next deadline, -1 if none. */
int kd_door_tick(void);
/* This worker: free the door connections closed during the last batch. */
void kd_door_reap(void);
/* This worker, after kd_loop_close: free what is left (connections whose poll
 * cancellations never came back, the deadline heap). */
void kd_door_worker_end(void);
/* Door connections open on this worker (with or without a handshake in flight). */
size_t kd_door_busy(void);
/* All workers: handshakes in flight, door connections open. */
size_t kd_door_inflight(void);
size_t kd_door_open_total(void);

/* ---- the kernel door (door_kernel.c): the `handshake` generic-netlink upcall ---- */
/* Main thread, before the sandbox and the workers: resolve the family and open
 * one netlink socket per worker (each joins the tlshd group; READY goes to all,
 * and the kernel hands each request to exactly one ACCEPT).  0, also when the
 * door is off or the kernel has no such family (one log line); -1 on a hard error. */
int kd_kernel_open(const struct kd_conf *conf, int workers);
bool kd_kernel_on(void);
/* Worker `index`: watch its netlink socket. */
int kd_kernel_attach(int index);
/* Worker: stop accepting (requests in flight finish by their deadline). */
void kd_kernel_close(void);
/* Worker: deadlines; ms until the next, -1 if none. */
int kd_kernel_tick(void);
void kd_kernel_reap(void);
size_t kd_kernel_busy(void);
/* Worker, after kd_loop_close: answer and free what is left. */
void kd_kernel_worker_end(void);
/* All workers: kernel requests between ACCEPT and DONE. */
size_t kd_kernel_inflight(void);
/* Main thread, after the workers ended. */
void kd_kernel_unopen(void);

/* ---- counters (stats.c), for ktlsxctl ---- */
enum kd_door_kind { KD_DOOR_LOCAL = 0, KD_DOOR_KERNEL = 1, KD_DOORS };
/* A handshake ended (status KTLSX_DOOR_OK or why not; alert = the one sent or received). */
void kd_stats_handshake(enum kd_door_kind door, const char *profile, int status, int alert, bool resumed,
                        int64_t ms);
/* A request refused before any handshake. */
void kd_stats_refused(enum kd_door_kind door, const char *profile, int status);
/* The counters as text: "human" lines or the Prometheus text exposition format.
 * Returns the length written (cut at cap-1). */
size_t kd_stats_format(char *out, size_t cap, bool prometheus, int workers, int64_t started_ms);

/* ---- the seccomp allow-list (sandbox.c) ---- */
/* Installs the filter for the running configuration (kd_conf_hold): TCP
 * sockets (AF_INET/AF_INET6 stream) are allowed only when it has tcp_store. */
int kd_sandbox(void);
/* What the filter in force allows (set by kd_sandbox; defined in conf.c so
 * that a reload needing more than the filter allows is refused there). */
extern bool kd_sandbox_on, kd_sandbox_tcp;

/* ---- the control socket (control.c): ktlsxctl's side door ---- */
/* Bind conf->control_path (if set) and watch it on this (the main) thread's loop. */
int kd_control_open(const struct kd_conf *conf, int workers);
/* Cut silent control connections; ms until the next deadline, -1 if none. */
int kd_control_tick(void);
void kd_control_close(void);
/* What `reload` runs (main.c): 0, or -1 with the reason in err. */
int kd_reload(char *err, size_t cap);
#endif
