/* ktlsxd: declarations shared by its files.
 *   main.c        arguments, signals, the event loop
 *   conf.c        the INI configuration: profiles and their ktlsx_config
 *   door_local.c  the local door: unix SOCK_SEQPACKET, requests, handshakes
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
#define KD_MAX_TICKET_KEY_FILES 4

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
};

struct kd_conf {
    char path[4096];
    char socket_path[108];
    int log_level;
    size_t max_clients;          /* door connections at once */
    size_t max_per_uid;          /* handshakes in flight per caller uid */
    int request_timeout_ms;      /* a door connection that sends no request is cut after this */
    int handshake_timeout_ms;    /* when the request says 0 */
    int max_handshake_timeout_ms;
    bool epoll_only;             /* event_loop = epoll */
    char ticket_key_files[KD_MAX_TICKET_KEY_FILES][4096];
    size_t nticket_key_files;
    struct kd_profile profiles[KD_MAX_PROFILES];
    size_t nprofiles;
};

/* Read and apply `path`.  Returns the configuration, or NULL with
 * "path:line: problem" (or "path: problem") in err. */
struct kd_conf *kd_conf_load(const char *path, char *err, size_t errlen);
void kd_conf_free(struct kd_conf *conf);
const struct kd_profile *kd_conf_profile(const struct kd_conf *conf, const char *name, enum ktlsx_role role);
bool kd_profile_allows(const struct kd_profile *p, uid_t uid, gid_t gid);

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
/* io_uring where it can be set up (unless allow_uring is false), else epoll; one log line says which. */
int kd_loop_init(bool allow_uring);
void kd_loop_close(void);
/* op: EPOLL_CTL_ADD / _MOD (the same on both backends) / _DEL; events: EPOLLIN, EPOLLOUT, EPOLLRDHUP. */
int kd_watch_fd(int fd, int op, uint32_t events, struct kd_watch *w);
/* No poll of this watch is in flight: its memory may be freed (after a DEL). */
bool kd_watch_idle(const struct kd_watch *w);
/* Wait at most timeout_ms (-1: no limit) and call the ready watches. 0, or -1 with errno. */
int kd_loop_wait(int timeout_ms);
int64_t kd_now_ms(void);

/* ---- the local door (door_local.c) ---- */
/* Bind the door at conf->socket_path and start accepting. 0 or -1 (logged). */
int kd_door_open(const struct kd_conf *conf);
/* New requests use `conf` from now on (the caller keeps it alive). */
void kd_door_set_conf(const struct kd_conf *conf);
/* Stop accepting, drop door connections that wait for a request, let the
 * handshakes in flight finish (each has its deadline). */
void kd_door_close(void);
/* Cut what has passed its deadline; returns ms until the next deadline, -1 if none. */
int kd_door_tick(void);
/* Free the door connections closed during the last epoll batch. */
void kd_door_reap(void);
/* Door connections open (with or without a handshake in flight). */
size_t kd_door_busy(void);
/* Handshakes in flight. */
size_t kd_door_inflight(void);
#endif
