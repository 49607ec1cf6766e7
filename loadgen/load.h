/* ktlsx-load: the project's load generator (issue 11).
 *
 * main.c  options, threads, CPU pinning, the report (text or JSON)
 * loop.c  one epoll loop per thread: N connections, each a small state
 *         machine (connect, handshake through ktlsx_socket_handshake_step,
 *         ticket, request, response) with its own deadline
 * hist.c  a log-linear latency histogram (HDR-like: 64 sub-buckets per
 *         power of two, ~1.6 % resolution, fixed memory, mergeable)
 *
 * Public API only (include/ktlsx/ktlsx.h), like cli/ and daemon/. */
#ifndef KTLSX_LOADGEN_LOAD_H
#define KTLSX_LOADGEN_LOAD_H

#include <ktlsx/ktlsx.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- histogram ---- */
#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * (64 - HIST_SUB_BITS + 1))
struct hist {
    uint64_t count, sum_ns, min_ns, max_ns;
    uint64_t b[HIST_BUCKETS];
};
void hist_record(struct hist *h, uint64_t ns);
void hist_merge(struct hist *into, const struct hist *from);
/* Value at quantile q (0..1): the middle of the bucket holding it (exact below 64 ns); 0 if empty. */
uint64_t hist_quantile(const struct hist *h, double q);

/* ---- options ---- */
enum mode { MODE_FULL, MODE_RESUMED, MODE_REQUESTS, MODE_DOWNLOAD };
enum err_kind { ERR_CONNECT, ERR_HANDSHAKE, ERR_TIMEOUT, ERR_RESPONSE, ERR_IO, ERR_KINDS };
extern const char *const err_kind_name[ERR_KINDS];

struct opts {
    enum mode mode;
    const char *target;           /* HOST:PORT as given */
    struct sockaddr_storage addr; /* resolved once */
    socklen_t addrlen;
    char host[256];               /* HOST part: verification name unless --sni */
    int connections, threads;
    double duration_s, warmup_s;
    int timeout_ms;               /* per attempt (connect + handshake) and per request */
    const char *path;             /* request path; NULL in full/resumed = no request */
    long long expect_size;        /* --expect-size: body length every response must have; -1 = any */
    const char *resume;           /* "ticket" or "id" (what the server is expected to use) */
    uint16_t tls;                 /* 0 = 1.2-1.3, else the one version */
    const char *groups, *ciphers, *ca, *sni, *cpus;
    bool insecure, json, ktls_off;
    ktlsx_config *cfg;
};

/* ---- results (one per thread, summed at the end) ---- */
struct stats {
    uint64_t ok;               /* completed attempts (full/resumed) or responses (requests/download) */
    uint64_t handshakes, resumed, offered; /* handshakes done; of them resumed; of them that offered a session */
    uint64_t requests;         /* responses received complete */
    uint64_t bytes_rx, bytes_tx, body_bytes;
    uint64_t errors[ERR_KINDS];
    uint64_t unfinished;       /* attempts still in flight at the end (not counted either way) */
    char first_error[ERR_KINDS][200];
    struct hist lat;           /* handshake latency (full/resumed) or request latency */
    struct hist hs_lat;        /* handshake latency in every mode */
};

struct worker {
    const struct opts *o;
    int index, connections;
    int64_t t_warm_end, t_end; /* CLOCK_MONOTONIC ns: measurement window */
    struct stats st;
    int rc;
};

int64_t now_ns(void);
void *worker_run(void *arg); /* struct worker * */
extern volatile int g_stop;  /* SIGINT/SIGTERM: end now, report what was measured */

#endif
