/* The kernel door: the `handshake` generic-netlink upcall through which the
 * kernel's TLS consumers (NVMe/TCP with TLS, NFS with xprtsec=tls) ask user
 * space for a handshake, as ktls-utils' tlshd answers it.
 *
 *   kernel --READY (multicast, group "tlshd")--> every worker's socket
 *   worker --ACCEPT (handler class tlshd)--> kernel
 *   kernel --ACCEPT reply: socket fd (in our fd table), client/server hello,
 *            timeout, auth mode, key serials, peer name--> that worker
 *   worker: the handshake on its event loop (the library's step calls, the
 *           kernel's timeout as deadline, TCP_NODELAY meanwhile), kernel TLS
 *           both ways, then --DONE (status, fd, remote-auth serials)--> kernel;
 *           close the fd.
 * A worker ACCEPTs again after each reply until the kernel answers EAGAIN.
 *
 * Why one netlink socket per worker rather than one socket and a queue to the
 * workers: READY reaches every member of the group and the kernel gives each
 * pending request to exactly one ACCEPT, so the workers share the requests
 * with no hand-over code, a request runs on the loop whose socket accepted it
 * (its fd was installed by that ACCEPT), and a busy worker simply accepts
 * less.  The sockets are opened by the main thread before the sandbox
 * (which allows AF_UNIX sockets only) and before the privilege drop.
 *
 * Keys: PSKs come from the kernel keyrings by serial (a client's
 * PEER_IDENTITY) or, on a server, by the identity the client offers, searched
 * in the request's keyring (KEYRING, Linux 6.17+) and in our session keyring,
 * into which `.nvme`, `.nfs` and `.nfsd` are linked at start, as tlshd does:
 * linking gives possession, which is what lets the daemon read the keys after
 * it has dropped to `user`.  A key of 48 bytes is a SHA-384 PSK, else SHA-256;
 * the identity is the key's description.
 *
 * Statuses answered: 0; EACCES (handshake failed or refused); EKEYREJECTED
 * (the peer said unknown_psk_identity, or decrypt_error: a bad binder);
 * ETIMEDOUT (the deadline passed); EIO (anything else, e.g. kernel TLS not
 * taken in both directions: the kernel consumer cannot use the socket then). */
#include "ktlsxd.h"
#include "hsnl.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define ALERT_DECRYPT_ERROR 51
#define ALERT_UNKNOWN_PSK_IDENTITY 115
#define KEY_SPEC_SESSION (-3)
#define KEY_SPEC_USER (-4)
#define KEY_USR_VIEW_READ 0x00030000u /* KEY_USR_VIEW | KEY_USR_READ */

static struct {
    bool on;
    uint16_t family;
    uint32_t group;
    int *fds; /* one per worker */
    int nfds;
    atomic_size_t inflight; /* all workers' requests between ACCEPT and DONE */
    uint32_t done_attrs;    /* the DONE attributes this kernel knows (the probe), bit n = attribute n */
    atomic_uint accept_seen; /* the ACCEPT reply attributes seen so far (logged as they first appear) */
} kshared;

struct kreq {
    struct kd_watch w;
    struct kreq *next, *dead_next;
    int fd, fl_saved, nodelay_saved;
    ktlsx_socket *sock;
    enum ktlsx_role role;
    uint32_t auth;
    int64_t started, deadline;
    uint32_t events;
    bool dead;
    char what[300]; /* for the log: "psk client to 127.0.0.1", ... */
    char stat_name[KTLSX_DOOR_NAME_MAX + 1]; /* for the counters: the profile, or "(kernel psk server)" */
    /* server PSK lookup: the serials offered, the keyring, the key found */
    uint32_t peer_ids[HSNL_MAX_IDS];
    size_t npeer_ids;
    uint32_t keyring, used_serial;
    bool psk_unknown; /* server: an identity the client offered was not found */
    char peername[HSNL_PEERNAME_MAX + 1]; /* x509: the description of the peer's certificate key */
};

static _Thread_local struct {
    int fd;
    struct kd_watch w;
    uint32_t seq, accept_seq;
    bool accepting, closing, said_eperm;
    struct kreq *reqs, *dead;
    size_t n;
} kd = { .fd = -1 };

/* ---- keys (raw keyctl: no library needed for five calls) ---- */
static long keyctl4(int op, unsigned long a, unsigned long b, unsigned long c, unsigned long d)
{
    return syscall(SYS_keyctl, op, a, b, c, d);
}

/* The description of key `serial` ("type;uid;gid;perm;description" -> the last
 * part) and its type; 0 or -1. */
static int key_describe(uint32_t serial, char *type, size_t tcap, char *desc, size_t dcap)
{
    char buf[512];
    long n = keyctl4(KEYCTL_DESCRIBE, serial, (unsigned long)buf, sizeof buf, 0);
    if (n < 0 || (size_t)n > sizeof buf) return -1;
    buf[sizeof buf - 1] = '\0';
    char *p = buf;
    for (int i = 0; i < 4; i++) {
        char *semi = strchr(p, ';');
        if (!semi) return -1;
        if (i == 0) snprintf(type, tcap, "%.*s", (int)(semi - p), p);
        p = semi + 1;
    }
    if (strlen(p) >= dcap) return -1;
    snprintf(desc, dcap, "%s", p);
    return 0;
}

/* The payload of key `serial` into key[0..cap): its length, or -1. */
static long key_read(uint32_t serial, uint8_t *key, size_t cap)
{
    long n = keyctl4(KEYCTL_READ, serial, (unsigned long)key, cap, 0);
    if (n < 0) return -1;
    if ((size_t)n > cap) return OPENSSL_cleanse(key, cap), errno = EMSGSIZE, -1;
    return n;
}

/* The payload of key `serial` in a buffer of its size (certificates, private
 * keys: DER, as tlshd reads them): its length with *out set, or -1. */
static long key_read_alloc(uint32_t serial, uint8_t **out)
{
    *out = NULL;
    long n = keyctl4(KEYCTL_READ, serial, 0, 0, 0);
    if (n < 0) return -1;
    if (n == 0 || n > (1L << 20)) return errno = EMSGSIZE, -1;
    uint8_t *b = malloc((size_t)n);
    if (!b) return -1;
    long m = keyctl4(KEYCTL_READ, serial, (unsigned long)b, (unsigned long)n, 0);
    if (m < 0 || m > n) {
        OPENSSL_cleanse(b, (size_t)n);
        free(b);
        if (m > n) errno = EAGAIN; /* it grew between the two reads */
        return -1;
    }
    *out = b;
    return m;
}

/* The peer's certificate (DER) as a key for the kernel, as tlshd hands it back
 * for REMOTE_AUTH: an "asymmetric" key "TLS x509 <peer>" in the user keyring,
 * readable by the user only.  Its serial, or 0 with the reason logged. */
static uint32_t peer_cert_key(const uint8_t *der, size_t len, const char *peer)
{
    char desc[300];
    snprintf(desc, sizeof desc, "TLS x509 %s", peer && peer[0] ? peer : "peer");
    long serial = syscall(SYS_add_key, "asymmetric", desc, der, len, KEY_SPEC_USER);
    if (serial < 0) {
        kd_log(KTLSX_LOG_WARNING, "kernel door: the peer's certificate as a key: %s", strerror(errno));
        return 0;
    }
    if (keyctl4(KEYCTL_SETPERM, (unsigned long)serial, KEY_USR_VIEW_READ, 0, 0) < 0)
        kd_log(KTLSX_LOG_INFO, "kernel door: key %08lx permissions: %s", serial, strerror(errno));
    return (uint32_t)serial;
}

/* Link keyrings named `name` (as /proc/keys lists them) into our session keyring. */
static void link_keyrings(void)
{
    static const char *const names[] = { ".nvme", ".nfs", ".nfsd" };
    FILE *f = fopen("/proc/keys", "re");
    if (!f) return kd_log(KTLSX_LOG_INFO, "kernel door: /proc/keys: %s", strerror(errno));
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned serial;
        char type[32], desc[256];
        /* "3a0e2ab8 I--Q---     1 perm 3f030000     0     0 keyring   .nvme: 1" */
        if (sscanf(line, "%x %*s %*s %*s %*s %*s %*s %31s %255[^:]", &serial, type, desc) != 3) continue;
        if (strcmp(type, "keyring") != 0) continue;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcmp(desc, names[i])) {
                if (keyctl4(KEYCTL_LINK, serial, (unsigned long)KEY_SPEC_SESSION, 0, 0) < 0)
                    kd_log(KTLSX_LOG_WARNING, "kernel door: link %s into the session keyring: %s", desc,
                           strerror(errno));
                else
                    kd_log(KTLSX_LOG_INFO, "kernel door: keyring %s (%08x) linked", desc, serial);
            }
    }
    fclose(f);
}

/* Which attributes this kernel's family knows, as tlshd probes it, but from the
 * family's own policy (CTRL_CMD_GETPOLICY, Linux >= 5.8) rather than by trial:
 * the DONE policy (REMOTE_AUTH, and what a newer kernel adds).  The ACCEPT
 * reply's attributes are in no policy: they are logged as they first appear. */
static uint32_t probe_done_attrs(uint16_t family)
{
    const uint32_t assumed = 1u << HSNL_A_DONE_STATUS | 1u << HSNL_A_DONE_SOCKFD | 1u << HSNL_A_DONE_REMOTE_AUTH;
    char names[160];
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    struct timeval tv = { .tv_sec = 2 };
    uint8_t buf[8192];
    long n = hsnl_encode_getpolicy(buf, sizeof buf, family, HSNL_CMD_DONE, 1);
    struct hsnl_policy pol = { 0 };
    const char *why = NULL;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 || n < 0 ||
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
        why = strerror(errno);
    } else {
        for (int i = 0; i < 64; i++) {
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got < 0) { why = strerror(errno); break; }
            int rc = hsnl_decode_policy(buf, (size_t)got, &pol);
            if (rc < 0) { why = "a malformed reply"; break; }
            if (rc > 0) break;
        }
        if (!why && pol.error) why = strerror(-pol.error);
        if (!why && !pol.done) why = "no end of the dump";
    }
    if (fd >= 0) close(fd);
    uint32_t known = why ? 0 : hsnl_policy_attrs(&pol);
    if (!known) {
        hsnl_done_attr_names(assumed, names, sizeof names);
        kd_log(KTLSX_LOG_INFO, "kernel door: attribute probe: the DONE policy %s%s: assuming %s",
               why ? "dump failed: " : "lists nothing", why ? why : "", names);
        return assumed;
    }
    hsnl_done_attr_names(known, names, sizeof names);
    kd_log(KTLSX_LOG_INFO, "kernel door: attribute probe: this kernel's DONE takes %s%s", names,
           known & 1u << HSNL_A_DONE_REMOTE_AUTH ? "" : " (no remote_auth: the peer's identity is not answered)");
    return known;
}

/* ---- the netlink sockets ---- */
int kd_kernel_open(const struct kd_conf *conf, int workers)
{
    if (!conf->kernel_enabled) return 0;
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk || genl_connect(sk) < 0) {
        if (sk) nl_socket_free(sk);
        return kd_log(KTLSX_LOG_ERROR, "kernel door: generic netlink: cannot connect"), -1;
    }
    int fam = genl_ctrl_resolve(sk, HSNL_FAMILY);
    int grp = fam >= 0 ? genl_ctrl_resolve_grp(sk, HSNL_FAMILY, HSNL_GROUP) : -1;
    nl_socket_free(sk);
    if (fam < 0 || grp < 0) {
        kd_log(KTLSX_LOG_WARNING, "kernel door: this kernel has no `handshake` netlink family%s (Linux >= 6.5 with "
               "CONFIG_NET_HANDSHAKE): running without it", fam >= 0 ? " group \"tlshd\"" : "");
        return 0;
    }
    /* A session keyring of our own, which the privilege drop keeps, with the kernel's keyrings in it. */
    if (keyctl4(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0) < 0)
        kd_log(KTLSX_LOG_WARNING, "kernel door: cannot start a session keyring: %s", strerror(errno));
    else
        link_keyrings();
    kshared.fds = calloc((size_t)workers, sizeof(int));
    if (!kshared.fds) return -1;
    for (int i = 0; i < workers; i++) kshared.fds[i] = -1;
    kshared.nfds = workers;
    for (int i = 0; i < workers; i++) {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_GENERIC);
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
        unsigned g = (unsigned)grp;
        int big = 1 << 20;
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) < 0) {
            kd_log(KTLSX_LOG_ERROR, "kernel door: netlink socket: %s", strerror(errno));
            if (fd >= 0) close(fd);
            kd_kernel_unopen();
            return -1;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        kshared.fds[i] = fd;
    }
    kshared.family = (uint16_t)fam;
    kshared.group = (uint32_t)grp;
    kshared.done_attrs = probe_done_attrs((uint16_t)fam);
    kshared.on = true;
    kd_log(KTLSX_LOG_INFO, "kernel door: open (handshake family %d, group tlshd %d, %d sockets, TLS %s%s%s)", fam, grp,
           workers, conf->kernel_min_version == KTLSX_TLS12 ? "1.2" : "1.3",
           conf->kernel_min_version != conf->kernel_max_version ? "-" : "",
           conf->kernel_min_version != conf->kernel_max_version ? "1.3" : "");
    return 0;
}

bool kd_kernel_on(void) { return kshared.on; }

void kd_kernel_unopen(void)
{
    for (int i = 0; i < kshared.nfds; i++)
        if (kshared.fds[i] >= 0) close(kshared.fds[i]);
    free(kshared.fds);
    kshared.fds = NULL;
    kshared.nfds = 0;
    kshared.on = false;
}

static void send_accept(void)
{
    if (kd.accepting || kd.closing) return;
    uint8_t buf[64];
    long n = hsnl_encode_accept(buf, sizeof buf, kshared.family, ++kd.seq);
    struct sockaddr_nl to = { .nl_family = AF_NETLINK };
    if (n < 0 || sendto(kd.fd, buf, (size_t)n, 0, (struct sockaddr *)&to, sizeof to) < 0) {
        kd_log(KTLSX_LOG_WARNING, "kernel door: ACCEPT: %s", strerror(errno));
        return;
    }
    kd.accepting = true;
    kd.accept_seq = kd.seq;
}

static void send_done(int fd, uint32_t status, const uint32_t *remote, size_t nremote)
{
    uint8_t buf[256];
    long n = hsnl_encode_done(buf, sizeof buf, kshared.family, ++kd.seq, status, fd, remote, nremote);
    struct sockaddr_nl to = { .nl_family = AF_NETLINK };
    if (n < 0 || sendto(kd.fd, buf, (size_t)n, 0, (struct sockaddr *)&to, sizeof to) < 0)
        kd_log(KTLSX_LOG_WARNING, "kernel door: DONE: %s", strerror(errno));
}

/* ---- one request ---- */
static const char *status_name(uint32_t s)
{
    return s == 0 ? "ok" : s == EACCES ? "EACCES" : s == EKEYREJECTED ? "EKEYREJECTED" : s == ETIMEDOUT ? "ETIMEDOUT"
                                                                                                      : "EIO";
}

static void req_free(struct kreq *r)
{
    (void)kd_watch_fd(r->fd, EPOLL_CTL_DEL, 0, &r->w);
    if (r->sock) ktlsx_socket_free(r->sock);
    r->sock = NULL;
    for (struct kreq **p = &kd.reqs; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    kd.n--;
    atomic_fetch_sub(&kshared.inflight, 1);
    r->dead = true;
    r->dead_next = kd.dead;
    kd.dead = r;
}

/* Answer the kernel and let the socket go. */
static void done(struct kreq *r, uint32_t status, const char *why)
{
    int door_status = status == 0           ? KTLSX_DOOR_OK
                      : status == ETIMEDOUT ? KTLSX_DOOR_TIMEOUT
                      : status == EIO       ? KTLSX_DOOR_INTERNAL
                                            : KTLSX_DOOR_HANDSHAKE_FAILED;
    ktlsx_conn *conn = r->sock ? ktlsx_socket_conn(r->sock) : NULL;
    int64_t ms = r->started ? kd_now_ms() - r->started : 0;
    uint32_t remote[2];
    size_t nremote = 0;
    if (status == 0 && r->used_serial && (kshared.done_attrs & 1u << HSNL_A_DONE_REMOTE_AUTH))
        remote[nremote++] = r->used_serial;
    if (status == 0 && r->auth == HSNL_AUTH_X509 && conn && (kshared.done_attrs & 1u << HSNL_A_DONE_REMOTE_AUTH)) {
        size_t dlen = 0;
        const uint8_t *der = ktlsx_peer_cert_der(conn, 0, &dlen);
        uint32_t serial = der ? peer_cert_key(der, dlen, r->peername) : 0;
        if (serial) remote[nremote++] = serial;
    }
    (void)kd_watch_fd(r->fd, EPOLL_CTL_DEL, 0, &r->w);
    kd_log(status == 0 ? KTLSX_LOG_INFO : KTLSX_LOG_WARNING, "kernel door: %s: %s%s%s %s %s ktls=%s %lld ms", r->what,
           status_name(status), why && why[0] ? ": " : "", why ? why : "",
           conn && status == 0 ? ktlsx_version_name(conn) : "-", conn && status == 0 ? ktlsx_cipher_name(conn) : "-",
           r->sock ? ktlsx_socket_ktls_name(r->sock) : "off", (long long)ms);
    if (r->started) /* a request refused before its handshake counts as refused */
        kd_stats_handshake(KD_DOOR_KERNEL, r->stat_name, door_status, conn ? ktlsx_alert(conn) : 0,
                           /* an external PSK is not a resumption */
                           conn && r->auth != HSNL_AUTH_PSK ? ktlsx_resumed(conn) != 0 : false, ms);
    else
        kd_stats_refused(KD_DOOR_KERNEL, r->stat_name, door_status);
    /* Our side of the connection goes first (its keys wiped); the socket goes back to
     * the kernel as it came, its flags and Nagle restored, and then the answer. */
    ktlsx_socket_free(r->sock);
    r->sock = NULL;
    if (r->fl_saved >= 0) (void)fcntl(r->fd, F_SETFL, r->fl_saved);
    if (r->nodelay_saved >= 0)
        (void)setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &r->nodelay_saved, sizeof r->nodelay_saved);
    send_done(r->fd, status, remote, nremote);
    close(r->fd);
    req_free(r);
}

static void drive(struct kreq *r)
{
    int rc = ktlsx_socket_handshake_step(r->sock);
    if (rc == KTLSX_IO_WANT_READ || rc == KTLSX_IO_WANT_WRITE) {
        uint32_t want = rc == KTLSX_IO_WANT_READ ? EPOLLIN : EPOLLOUT;
        if (want != r->events) {
            r->events = want;
            if (kd_watch_fd(r->fd, EPOLL_CTL_MOD, want, &r->w) < 0) return done(r, EIO, "epoll");
        }
        return;
    }
    ktlsx_conn *conn = ktlsx_socket_conn(r->sock);
    uint8_t alert = ktlsx_alert(conn);
    char why[200];
    snprintf(why, sizeof why, "%s", ktlsx_socket_error(r->sock));
    if (rc == KTLSX_IO_OK) {
        if (ktlsx_socket_ktls(r->sock) != (KTLSX_KTLS_TX | KTLSX_KTLS_RX)) {
            snprintf(why, sizeof why, "kernel TLS %s: %s", ktlsx_socket_ktls_name(r->sock),
                     ktlsx_socket_ktls_why(r->sock));
            return done(r, EIO, why);
        }
        return done(r, 0, NULL);
    }
    if (rc == KTLSX_IO_TIMEOUT) return done(r, ETIMEDOUT, why);
    if (rc == KTLSX_IO_CLOSED) return done(r, EIO, why[0] ? why : "the peer closed the connection");
    if (alert == ALERT_UNKNOWN_PSK_IDENTITY || (alert == ALERT_DECRYPT_ERROR && r->auth == HSNL_AUTH_PSK) ||
        (r->psk_unknown && !r->used_serial))
        return done(r, EKEYREJECTED, why);
    return done(r, EACCES, why);
}

static void on_sock(struct kd_watch *w, uint32_t events)
{
    (void)events;
    struct kreq *r = (struct kreq *)((char *)w - offsetof(struct kreq, w));
    if (!r->dead) drive(r);
}

/* Server PSK lookup (the library's ktlsx_psk_fn): the offered identity among
 * the request's serials, else searched in its keyring and our session keyring. */
static int psk_lookup(ktlsx_conn *conn, const uint8_t *identity, size_t identity_len, uint8_t *key, size_t *key_len,
                      int *sha384, void *arg)
{
    (void)conn;
    struct kreq *r = arg;
    char id[256], type[32], desc[256];
    if (identity_len == 0 || identity_len >= sizeof id || memchr(identity, 0, identity_len)) return 0;
    memcpy(id, identity, identity_len);
    id[identity_len] = '\0';
    long serial = -1;
    for (size_t i = 0; i < r->npeer_ids && serial < 0; i++)
        if (r->peer_ids[i] && key_describe(r->peer_ids[i], type, sizeof type, desc, sizeof desc) == 0 &&
            !strcmp(desc, id))
            serial = r->peer_ids[i];
    if (serial < 0 && r->keyring) serial = keyctl4(KEYCTL_SEARCH, r->keyring, (unsigned long)"psk", (unsigned long)id, 0);
    if (serial < 0) serial = keyctl4(KEYCTL_SEARCH, (unsigned long)KEY_SPEC_SESSION, (unsigned long)"psk",
                                     (unsigned long)id, 0);
    /* The `psk` key type matches a search on a prefix of the description: want it whole. */
    if (serial >= 0 && (key_describe((uint32_t)serial, type, sizeof type, desc, sizeof desc) < 0 || strcmp(desc, id) != 0))
        serial = -1, errno = ENOKEY;
    if (serial < 0) {
        kd_log(KTLSX_LOG_INFO, "kernel door: no PSK with identity '%s' (%s)", id, strerror(errno));
        r->psk_unknown = true;
        return 0;
    }
    long n = key_read((uint32_t)serial, key, *key_len);
    if (n < 16 || n > 48) {
        kd_log(KTLSX_LOG_WARNING, "kernel door: PSK %08lx: %s", serial, n < 0 ? strerror(errno) : "length not 16..48");
        if (n > 0) OPENSSL_cleanse(key, (size_t)n);
        return 0;
    }
    *key_len = (size_t)n;
    *sha384 = n == 48;
    r->used_serial = (uint32_t)serial;
    return 1;
}

/* The request's ktlsx_config, or NULL with the reason in why. */
static ktlsx_config *request_config(struct kreq *r, const struct hsnl_accept *a, char *why, size_t cap)
{
    const struct kd_conf *conf = kd_conf_hold();
    ktlsx_config *cfg = NULL;
    uint16_t vmin = conf->kernel_min_version, vmax = conf->kernel_max_version;
    if (a->auth_mode == HSNL_AUTH_PSK) {
        cfg = ktlsx_config_new(r->role);
        if (!cfg || ktlsx_config_set_versions(cfg, KTLSX_TLS13, KTLSX_TLS13) < 0 ||
            ktlsx_config_set_log(cfg, kd_log_sink, NULL) < 0) {
            snprintf(why, cap, "out of memory");
            goto fail;
        }
        if (r->role == KTLSX_SERVER) {
            if (ktlsx_config_set_psk_callback(cfg, psk_lookup, r) < 0) {
                snprintf(why, cap, "%s", ktlsx_config_error(cfg));
                goto fail;
            }
        } else {
            /* The client's PSK: the first serial the kernel names (NVMe: the one for this queue). */
            uint8_t key[64];
            char type[32], desc[256];
            uint32_t serial = a->npeer_ids ? a->peer_ids[0] : 0;
            if (!serial || key_describe(serial, type, sizeof type, desc, sizeof desc) < 0) {
                snprintf(why, cap, "PSK %08x: %s", serial, serial ? strerror(errno) : "no key serial in the request");
                goto fail;
            }
            long n = key_read(serial, key, sizeof key);
            if (n < 16 || n > 48) {
                snprintf(why, cap, "PSK %08x: %s", serial, n < 0 ? strerror(errno) : "length not 16..48");
                if (n > 0) OPENSSL_cleanse(key, (size_t)n);
                goto fail;
            }
            int rc = ktlsx_config_set_psk(cfg, desc, key, (size_t)n, n == 48);
            OPENSSL_cleanse(key, sizeof key);
            if (rc < 0) {
                snprintf(why, cap, "PSK %08x: %s", serial, ktlsx_config_error(cfg));
                goto fail;
            }
            r->used_serial = serial;
        }
    } else if (a->auth_mode == HSNL_AUTH_X509 && a->ncerts && a->certs[0].cert && a->certs[0].privkey) {
        /* The consumer names its certificate and private key by serial (NFS: cert_serial=,
         * privkey_serial=): those, DER; the peer verified against [kernel] ca_file, else
         * the system store; a server asks the client for a certificate and verifies
         * one if sent, as tlshd does. */
        uint8_t *cert = NULL, *key = NULL;
        long nc = key_read_alloc(a->certs[0].cert, &cert);
        long nk = nc > 0 ? key_read_alloc(a->certs[0].privkey, &key) : -1;
        cfg = ktlsx_config_new(r->role);
        int rc = -1;
        if (nc < 0 || nk < 0)
            snprintf(why, cap, "%s %08x: %s", nc < 0 ? "certificate" : "private key",
                     nc < 0 ? a->certs[0].cert : a->certs[0].privkey, strerror(errno));
        else if (!cfg || ktlsx_config_set_versions(cfg, vmin, vmax) < 0 || ktlsx_config_set_log(cfg, kd_log_sink, NULL) < 0)
            snprintf(why, cap, "out of memory");
        else if ((rc = ktlsx_config_add_cert_mem(cfg, cert, (size_t)nc, key, (size_t)nk)) < 0 ||
                 (rc = ktlsx_config_set_ca_file(cfg, conf->kernel_ca_file[0] ? conf->kernel_ca_file : NULL)) < 0 ||
                 (r->role == KTLSX_SERVER && (rc = ktlsx_config_set_verify_client(cfg, KTLSX_VERIFY_OPTIONAL)) < 0))
            snprintf(why, cap, "certificate %08x / key %08x: %s", a->certs[0].cert, a->certs[0].privkey,
                     ktlsx_config_error(cfg));
        if (key) OPENSSL_cleanse(key, (size_t)nk);
        free(key);
        free(cert);
        if (rc < 0) goto fail;
        snprintf(r->stat_name, sizeof r->stat_name, "(kernel x509 %s keyring)",
                 r->role == KTLSX_CLIENT ? "client" : "server");
    } else if (a->auth_mode == HSNL_AUTH_X509 || (a->auth_mode == HSNL_AUTH_UNAUTH && r->role == KTLSX_SERVER)) {
        const char *name = r->role == KTLSX_SERVER ? conf->kernel_server_profile : conf->kernel_client_profile;
        const struct kd_profile *p = name[0] ? kd_conf_profile(conf, name, r->role) : NULL;
        if (!p) {
            snprintf(why, cap, "no %s set in [kernel] for %s requests",
                     r->role == KTLSX_SERVER ? "server_profile" : "client_profile", hsnl_auth_name(a->auth_mode));
            goto fail;
        }
        if (a->ncerts && (a->certs[0].cert || a->certs[0].privkey))
            kd_log(KTLSX_LOG_INFO, "kernel door: a certificate serial without its key (or the reverse): profile '%s'",
                   name);
        cfg = ktlsx_config_ref(p->cfg); /* the profile's versions apply */
        snprintf(r->stat_name, sizeof r->stat_name, "%s", name);
        vmin = vmax = 0;
    } else if (a->auth_mode == HSNL_AUTH_UNAUTH) { /* a client that does not check the server (NFS xprtsec=tls) */
        cfg = ktlsx_config_new(KTLSX_CLIENT);
        if (!cfg || ktlsx_config_set_insecure(cfg, 1) < 0 || ktlsx_config_set_versions(cfg, vmin, vmax) < 0 ||
            ktlsx_config_set_log(cfg, kd_log_sink, NULL) < 0) {
            snprintf(why, cap, "out of memory");
            goto fail;
        }
    } else {
        snprintf(why, cap, "unknown auth mode %u", a->auth_mode);
    }
    /* A profile brings its own record_size_limit; the configurations made here take [kernel]'s
     * (a client offers it, a server answers with it; kernel TX then keeps to the peer's). */
    if (cfg && vmax && conf->kernel_record_size_limit &&
        ktlsx_config_set_record_size_limit(cfg, conf->kernel_record_size_limit) < 0) {
        snprintf(why, cap, "record_size_limit: %s", ktlsx_config_error(cfg));
        goto fail;
    }
    kd_conf_drop();
    return cfg;
fail:
    kd_conf_drop();
    ktlsx_config_free(cfg);
    return NULL;
}

static void start(const struct hsnl_accept *a)
{
    struct kreq *r = calloc(1, sizeof *r);
    if (!r) {
        send_done(a->sockfd, EIO, NULL, 0);
        close(a->sockfd);
        return;
    }
    r->w.fn = on_sock;
    r->fd = a->sockfd;
    r->fl_saved = r->nodelay_saved = -1;
    r->role = a->message_type == HSNL_MSG_CLIENTHELLO ? KTLSX_CLIENT : KTLSX_SERVER;
    r->auth = a->auth_mode;
    r->keyring = a->keyring;
    memcpy(r->peer_ids, a->peer_ids, sizeof r->peer_ids);
    r->npeer_ids = a->npeer_ids;
    snprintf(r->peername, sizeof r->peername, "%s", a->peername);
    snprintf(r->what, sizeof r->what, "%s %s%s%s", hsnl_auth_name(a->auth_mode),
             r->role == KTLSX_CLIENT ? "client" : "server", a->peername[0] ? " to " : "", a->peername);
    snprintf(r->stat_name, sizeof r->stat_name, "(kernel %s %s)", hsnl_auth_name(a->auth_mode),
             r->role == KTLSX_CLIENT ? "client" : "server");
    r->next = kd.reqs;
    kd.reqs = r;
    kd.n++;
    atomic_fetch_add(&kshared.inflight, 1);
    uint32_t before = atomic_fetch_or(&kshared.accept_seen, a->seen);
    if ((before | a->seen) != before) { /* the first request, or one that carries an attribute not seen before */
        char names[200];
        hsnl_accept_attr_names(before | a->seen, names, sizeof names);
        kd_log(KTLSX_LOG_INFO, "kernel door: this kernel's ACCEPT replies carry: %s", names);
    }
    kd_log(KTLSX_LOG_DEBUG, "kernel door: ACCEPT fd %d %s %s timeout %u ms, %zu peer ids, %zu certs, keyring %08x, "
           "attributes 0x%x", a->sockfd, hsnl_msg_type_name(a->message_type), hsnl_auth_name(a->auth_mode),
           a->timeout_ms, a->npeer_ids, a->ncerts, a->keyring, a->seen);
    if (a->message_type != HSNL_MSG_CLIENTHELLO && a->message_type != HSNL_MSG_SERVERHELLO)
        return done(r, EIO, "unknown message type");
    if (kd.closing) return done(r, EACCES, "the daemon is stopping");
    if (r->keyring && keyctl4(KEYCTL_LINK, r->keyring, (unsigned long)KEY_SPEC_SESSION, 0, 0) < 0)
        kd_log(KTLSX_LOG_DEBUG, "kernel door: link keyring %08x: %s", r->keyring, strerror(errno));
    char why[256] = "";
    ktlsx_config *cfg = request_config(r, a, why, sizeof why);
    if (!cfg) return done(r, EACCES, why);
    const struct kd_conf *conf = kd_conf_hold();
    int timeout = a->timeout_ms ? (int)(a->timeout_ms > (uint32_t)conf->max_handshake_timeout_ms
                                            ? (uint32_t)conf->max_handshake_timeout_ms
                                            : a->timeout_ms)
                                : conf->handshake_timeout_ms;
    kd_conf_drop();
    const char *sn = r->role == KTLSX_CLIENT && a->peername[0] && a->auth_mode == HSNL_AUTH_X509 ? a->peername : NULL;
    r->sock = ktlsx_socket_new(cfg, r->fd, sn);
    ktlsx_config_free(cfg); /* the socket holds its own reference */
    if (!r->sock || ktlsx_socket_set_timeouts(r->sock, timeout, 0) < 0 ||
        ktlsx_socket_set_ktls(r->sock, KTLSX_KTLS_MODE_AUTO, KTLSX_KTLS_TX | KTLSX_KTLS_RX) < 0)
        return done(r, EIO, "out of memory");
    int one = 1;
    socklen_t len = sizeof r->nodelay_saved;
    if (getsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &r->nodelay_saved, &len) < 0) r->nodelay_saved = -1;
    (void)setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    r->fl_saved = fcntl(r->fd, F_GETFL);
    if (r->fl_saved < 0 || fcntl(r->fd, F_SETFL, r->fl_saved | O_NONBLOCK) < 0) return done(r, EIO, "fcntl");
    r->started = kd_now_ms();
    r->deadline = r->started + timeout;
    r->events = EPOLLIN;
    if (kd_watch_fd(r->fd, EPOLL_CTL_ADD, EPOLLIN, &r->w) < 0) return done(r, EIO, "epoll");
    drive(r); /* a client's ClientHello goes out now */
}

static void on_netlink(struct kd_watch *w, uint32_t events)
{
    (void)w;
    (void)events;
    uint8_t buf[16384];
    for (int round = 0; round < 64; round++) {
        ssize_t n = recv(kd.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ENOBUFS) { /* notices were lost: ask anyway */
                kd_log(KTLSX_LOG_WARNING, "kernel door: netlink receive queue overran: accepting");
                kd.accepting = false;
                send_accept();
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                kd_log(KTLSX_LOG_WARNING, "kernel door: netlink: %s", strerror(errno));
            return;
        }
        size_t off = 0;
        struct hsnl_msg m;
        const char *why;
        int rc;
        while ((rc = hsnl_decode(buf, (size_t)n, &off, kshared.family, &m, &why)) != 0) {
            if (rc < 0) {
                kd_log(KTLSX_LOG_WARNING, "kernel door: a malformed message: %s", why);
                if (m.kind == HSNL_ACCEPTED && m.seq == kd.accept_seq) kd.accepting = false;
                if (m.kind == HSNL_ACCEPTED && m.accept.sockfd >= 0) { /* answer it, so the consumer is not left waiting */
                    send_done(m.accept.sockfd, EIO, NULL, 0);
                    close(m.accept.sockfd);
                }
                send_accept();
                continue;
            }
            if (m.kind == HSNL_READY) {
                if (m.handler_class == HSNL_CLASS_TLSHD || m.handler_class == HSNL_CLASS_NONE) send_accept();
            } else if (m.kind == HSNL_ACCEPTED) {
                if (m.seq == kd.accept_seq) kd.accepting = false;
                start(&m.accept);
                send_accept(); /* until the kernel has nothing */
            } else if (m.kind == HSNL_ERROR) {
                if (m.seq == kd.accept_seq && kd.accepting) {
                    kd.accepting = false;
                    if (m.error == -EPERM && !kd.said_eperm) {
                        kd.said_eperm = true;
                        kd_log(KTLSX_LOG_ERROR, "kernel door: ACCEPT refused (EPERM): CAP_NET_ADMIN is needed");
                    } else if (m.error != 0 && m.error != -EAGAIN && m.error != -ENOENT && m.error != -EPERM) {
                        kd_log(KTLSX_LOG_WARNING, "kernel door: ACCEPT: %s", strerror(-m.error));
                    }
                } else if (m.error != 0) {
                    kd_log(KTLSX_LOG_WARNING, "kernel door: DONE (seq %u): %s", m.seq, strerror(-m.error));
                }
            }
        }
    }
}

int kd_kernel_attach(int index)
{
    if (!kshared.on || index >= kshared.nfds) return 0;
    kd.fd = kshared.fds[index];
    kd.w.fn = on_netlink;
    if (kd_watch_fd(kd.fd, EPOLL_CTL_ADD, EPOLLIN, &kd.w) < 0) {
        kd_log(KTLSX_LOG_ERROR, "kernel door: watch: %s", strerror(errno));
        return -1;
    }
    if (index == 0) send_accept(); /* requests queued before we started */
    return 0;
}

void kd_kernel_close(void)
{
    if (kd.closing || kd.fd < 0) return;
    kd.closing = true;
    (void)kd_watch_fd(kd.fd, EPOLL_CTL_DEL, 0, &kd.w);
}

int kd_kernel_tick(void)
{
    int64_t now = kd_now_ms(), next = -1;
    for (struct kreq *r = kd.reqs, *nx; r; r = nx) {
        nx = r->next;
        if (!r->sock) continue;
        if (r->deadline <= now) {
            int left = ktlsx_socket_timeout_ms(r->sock);
            if (left == 0) drive(r);
            if (r->dead) continue;
            r->deadline = now + (left > 0 ? left : 1);
        }
        if (next < 0 || r->deadline < next) next = r->deadline;
    }
    return next < 0 ? -1 : (int)(next - now);
}

void kd_kernel_reap(void)
{
    for (struct kreq **p = &kd.dead; *p;) {
        struct kreq *r = *p;
        if (kd_watch_idle(&r->w)) {
            *p = r->dead_next;
            free(r);
        } else {
            p = &r->dead_next;
        }
    }
}

size_t kd_kernel_busy(void) { return kd.n; }

void kd_kernel_worker_end(void)
{
    /* The loop is closed (no watch to remove, no poll to complete).  Requests still
     * live (the loop failed) are answered EIO so that the kernel's consumer does not
     * wait for its own timeout; then the memory of all of them goes. */
    while (kd.reqs) {
        struct kreq *r = kd.reqs;
        kd.reqs = r->next;
        send_done(r->fd, EIO, NULL, 0);
        kd_log(KTLSX_LOG_WARNING, "kernel door: %s: EIO: the worker ended", r->what);
        close(r->fd);
        ktlsx_socket_free(r->sock);
        atomic_fetch_sub(&kshared.inflight, 1);
        free(r);
    }
    kd.n = 0;
    while (kd.dead) {
        struct kreq *r = kd.dead;
        kd.dead = r->dead_next;
        free(r);
    }
}
size_t kd_kernel_inflight(void) { return atomic_load(&kshared.inflight); }
