/* What this kernel's TLS offload can do, found by trying it on loopback
 * sockets rather than by reading version numbers: distribution kernels
 * backport features (e.g. TLS 1.3 re-keying) and build out modules.
 *
 * The keys used here are fixed dummy bytes: no record is ever sent, the
 * probe only asks whether the kernel accepts the crypto_info. */
#include "ktls/ktls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

/* Name registered by net/handshake (HANDSHAKE_FAMILY_NAME in
 * <linux/handshake.h>, which older linux-libc-dev packages lack). */
#define KX_HANDSHAKE_FAMILY "handshake"


static const char *const cipher_names[KX_PROBE_CIPHERS] = {
    "aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"
};

/* Representative IANA suite per [version][cipher]; the kernel only sees
 * version + cipher_type, so any suite of the family gives the same answer. */
static const uint16_t probe_suites[KX_PROBE_VERSIONS][KX_PROBE_CIPHERS] = {
    { 0xc02f, 0xc030, 0xcca8 }, /* TLS 1.2 */
    { 0x1301, 0x1302, 0x1303 }, /* TLS 1.3 */
};
static const uint16_t probe_versions[KX_PROBE_VERSIONS] = { KTLSX_TLS12, KTLSX_TLS13 };

const char *kx_probe_cipher_name(int i)
{
    return i >= 0 && i < KX_PROBE_CIPHERS ? cipher_names[i] : "?";
}

int kx_loopback_pair(int *client, int *server, char *why, size_t whylen)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int l = -1, c = -1, s = -1;
    const char *step;

    *client = *server = -1;
    step = "socket";
    l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        goto fail;
    step = "bind 127.0.0.1:0";
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto fail;
    step = "listen";
    if (listen(l, 1) != 0 || getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        goto fail;
    step = "socket";
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0)
        goto fail;
    /* Loopback connect completes against the backlog without the peer
     * calling accept, so a blocking connect cannot hang here. */
    step = "connect to loopback";
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto fail;
    step = "accept";
    s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        goto fail;
    close(l);
    *client = c;
    *server = s;
    return 0;

fail:;
    int err = errno;
    kx_say(why, whylen, "loopback pair: %s: %s", step, strerror(err));
    if (l >= 0)
        close(l);
    if (c >= 0)
        close(c);
    errno = err;
    return -1;
}

static void dummy_keys(struct ktlsx_traffic_keys *k, uint16_t version, uint16_t suite, uint8_t fill)
{
    const kx_ktls_suite *s = kx_ktls_suite_find(version, suite);
    memset(k, 0, sizeof(*k));
    k->version = version;
    k->cipher_suite = suite;
    k->key_len = s ? s->key_len : 16;
    k->iv_len = s ? s->keys_iv_len : 12;
    memset(k->key, fill, sizeof(k->key));
    memset(k->iv, fill ^ 0x5a, sizeof(k->iv));
    k->seq = 0;
}

/* Fresh pair, ULP, install TX and RX for one (version, cipher). */
static void probe_combo(uint16_t version, uint16_t suite, kx_probe_verdict *tx, kx_probe_verdict *rx)
{
    int c, s;
    char why[sizeof(tx->why)];

    tx->accepted = rx->accepted = 0;
    if (kx_loopback_pair(&c, &s, why, sizeof(why)) != 0) {
        snprintf(tx->why, sizeof(tx->why), "%s", why);
        snprintf(rx->why, sizeof(rx->why), "%s", why);
        return;
    }
    if (kx_ktls_enable_ulp(c, why, sizeof(why)) != 0) {
        snprintf(tx->why, sizeof(tx->why), "%s", why);
        snprintf(rx->why, sizeof(rx->why), "%s", why);
    } else {
        struct ktlsx_traffic_keys k;
        dummy_keys(&k, version, suite, 0x11);
        tx->accepted = kx_ktls_install(c, KTLSX_TX, &k, tx->why, sizeof(tx->why)) == 0;
        dummy_keys(&k, version, suite, 0x22);
        rx->accepted = kx_ktls_install(c, KTLSX_RX, &k, rx->why, sizeof(rx->why)) == 0;
    }
    close(c);
    close(s);
}

int kx_ktls_rekey_supported(char *why, size_t whylen)
{
    int c, s, ret;
    char buf[256];
    struct ktlsx_traffic_keys k;

    if (kx_loopback_pair(&c, &s, why, whylen) != 0)
        return -1;
    ret = -1;
    if (kx_ktls_enable_ulp(c, why, whylen) != 0)
        goto out;
    dummy_keys(&k, KTLSX_TLS13, 0x1301, 0x33);
    if (kx_ktls_install(c, KTLSX_TX, &k, buf, sizeof(buf)) != 0) {
        kx_say(why, whylen, "first key not accepted: %s", buf);
        goto out;
    }
    /* A KeyUpdate replaces key and IV and restarts the sequence at 0. */
    dummy_keys(&k, KTLSX_TLS13, 0x1301, 0x44);
    if (kx_ktls_install(c, KTLSX_TX, &k, buf, sizeof(buf)) == 0) {
        ret = 1;
    } else {
        ret = 0;
        if (errno == EBUSY)
            kx_say(why, whylen, "kernel refuses a second TLS_TX (re-keying needs Linux >= 6.14)");
        else
            kx_say(why, whylen, "second TLS_TX refused: %s", buf);
    }
out:
    close(c);
    close(s);
    return ret;
}

/* Align a netlink attribute length. */
#define KX_NLA_ALIGN(n) (((n) + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1))

/* issue 9: the first answer (1, 0, -1), or -2 before the first question.
 * Every answer is kept, "cannot tell" too: asking again would open loopback
 * sockets per connection, in a process that may be under a seccomp list by
 * then (ktlsxd asks at start through ktlsx_probe, before its sandbox). */
static _Atomic int tx_max_payload_known = -2;

void kx_ktls_tx_max_payload_forget(void) { tx_max_payload_known = -2; }

int kx_ktls_tx_max_payload_supported(char *why, size_t whylen)
{
    int known = tx_max_payload_known;
    if (known != -2) {
        if (known == 0) kx_say(why, whylen, "kernel lacks TLS_TX_MAX_PAYLOAD_LEN (added for Linux 6.19)");
        if (known < 0) kx_say(why, whylen, "kernel TLS was not usable when first asked");
        return known;
    }
    int c, s, ret = -1;
    char buf[256];
    struct ktlsx_traffic_keys k;
    if (kx_loopback_pair(&c, &s, why, whylen) != 0) {
        tx_max_payload_known = -1;
        return -1;
    }
    if (kx_ktls_enable_ulp(c, why, whylen) != 0) goto out;
    dummy_keys(&k, KTLSX_TLS13, 0x1301, 0x55);
    int rc = kx_ktls_install(c, KTLSX_TX, &k, buf, sizeof buf);
    if (rc != 0) {
        kx_say(why, whylen, "TLS 1.3 TX not accepted: %s", buf);
        goto out;
    }
    if (kx_ktls_set_tx_max_payload(c, 64, buf, sizeof buf) == 0) {
        ret = 1;
    } else {
        ret = 0;
        kx_say(why, whylen, "%s", buf);
    }
out:
    tx_max_payload_known = ret;
    close(c);
    close(s);
    return ret;
}

int kx_genl_family_present(const char *name, char *why, size_t whylen)
{
    struct {
        struct nlmsghdr n;
        struct genlmsghdr g;
        char attrs[KX_NLA_ALIGN(NLA_HDRLEN + GENL_NAMSIZ)];
    } req;
    size_t namesz = strlen(name) + 1;
    union {
        char buf[8192];
        struct nlmsghdr align;
    } resp;
    int fd, ret = -1;

    if (namesz > GENL_NAMSIZ) {
        kx_say(why, whylen, "generic netlink family name too long: %s", name);
        return -1;
    }
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (fd < 0) {
        kx_say(why, whylen, "netlink socket: %s", strerror(errno));
        return -1;
    }
    /* The controller answers synchronously; the timeout only guards
     * against a broken or filtered netlink. */
    struct timeval tv = { .tv_sec = 2, .tv_usec = 0 };
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = (uint32_t)NLMSG_LENGTH(GENL_HDRLEN + KX_NLA_ALIGN(NLA_HDRLEN + namesz));
    req.n.nlmsg_type = GENL_ID_CTRL;
    req.n.nlmsg_flags = NLM_F_REQUEST;
    req.n.nlmsg_seq = 1;
    req.g.cmd = CTRL_CMD_GETFAMILY;
    req.g.version = 1;
    struct nlattr *na = (struct nlattr *)req.attrs;
    na->nla_type = CTRL_ATTR_FAMILY_NAME;
    na->nla_len = (uint16_t)(NLA_HDRLEN + namesz);
    memcpy(req.attrs + NLA_HDRLEN, name, namesz);

    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        kx_say(why, whylen, "netlink send: %s", strerror(errno));
        goto out;
    }
    ssize_t n;
    do
        n = recv(fd, resp.buf, sizeof(resp.buf), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        kx_say(why, whylen, "netlink recv: %s", strerror(errno));
        goto out;
    }
    /* Walk the messages by hand: NLMSG_OK/NLMSG_NEXT mix signed and
     * unsigned lengths, which clang's -Wsign-compare rejects. */
    for (size_t off = 0, left = (size_t)n; left >= sizeof(struct nlmsghdr);) {
        struct nlmsghdr *h = (struct nlmsghdr *)(resp.buf + off);
        if (h->nlmsg_len < sizeof(struct nlmsghdr) || h->nlmsg_len > left)
            break;
        size_t step = NLMSG_ALIGN(h->nlmsg_len);
        off += step;
        left = step < left ? left - step : 0;
        if (h->nlmsg_seq != req.n.nlmsg_seq)
            continue;
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e))) {
                kx_say(why, whylen, "truncated netlink error");
                goto out;
            }
            if (e->error == -ENOENT) {
                kx_say(why, whylen, "family %s not registered", name);
                ret = 0;
            } else {
                kx_say(why, whylen, "CTRL_CMD_GETFAMILY: %s", strerror(-e->error));
            }
            goto out;
        }
        if (h->nlmsg_type != GENL_ID_CTRL)
            continue;
        /* Look for the family id among the reply's attributes. */
        int alen = (int)h->nlmsg_len - (int)NLMSG_LENGTH(GENL_HDRLEN);
        const char *p = (const char *)NLMSG_DATA(h) + GENL_HDRLEN;
        while (alen >= NLA_HDRLEN) {
            const struct nlattr *a = (const struct nlattr *)p;
            if (a->nla_len < NLA_HDRLEN || a->nla_len > alen)
                break;
            if ((a->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_FAMILY_ID) {
                ret = 1;
                goto out;
            }
            int astep = KX_NLA_ALIGN(a->nla_len);
            p += astep;
            alen -= astep;
        }
        kx_say(why, whylen, "reply without a family id");
        goto out;
    }
    kx_say(why, whylen, "no answer to CTRL_CMD_GETFAMILY");
out:
    close(fd);
    return ret;
}

int kx_handshake_genl_present(char *why, size_t whylen)
{
    int r = kx_genl_family_present(KX_HANDSHAKE_FAMILY, why, whylen);
    if (r == 0)
        kx_say(why, whylen, "family %s not registered (CONFIG_NET_HANDSHAKE, Linux >= 6.5)",
            KX_HANDSHAKE_FAMILY);
    return r;
}

int kx_ktls_probe(kx_probe_report *r)
{
    memset(r, 0, sizeof(*r));

    struct utsname u;
    if (uname(&u) == 0)
        snprintf(r->kernel, sizeof(r->kernel), "%s %s", u.sysname, u.release);
    else
        snprintf(r->kernel, sizeof(r->kernel), "unknown (%s)", strerror(errno));

    r->handshake_genl = kx_handshake_genl_present(r->genl_why, sizeof(r->genl_why));

    int c, s;
    if (kx_loopback_pair(&c, &s, r->ulp_why, sizeof(r->ulp_why)) == 0) {
        r->ulp = kx_ktls_enable_ulp(c, r->ulp_why, sizeof(r->ulp_why)) == 0;
        close(c);
        close(s);
    }

    /* issue 9: asked now, with or without the ULP, so that a process probing
     * at start (ktlsxd, before its seccomp list) has the answer kept when a
     * connection needs it. */
    (void)kx_ktls_tx_max_payload_supported(NULL, 0);

    if (!r->ulp) {
        /* Nothing further can work; say so per line instead of trying
         * (keeps the probe instant on kernels without the module). */
        for (int v = 0; v < KX_PROBE_VERSIONS; v++)
            for (int i = 0; i < KX_PROBE_CIPHERS; i++) {
                snprintf(r->tx[v][i].why, sizeof(r->tx[v][i].why), "skipped: no tls ULP");
                snprintf(r->rx[v][i].why, sizeof(r->rx[v][i].why), "skipped: no tls ULP");
            }
        snprintf(r->rekey.why, sizeof(r->rekey.why), "skipped: no tls ULP");
        snprintf(r->why, sizeof(r->why), "%s", r->ulp_why);
        r->usable = 0;
        return 0;
    }

    for (int v = 0; v < KX_PROBE_VERSIONS; v++)
        for (int i = 0; i < KX_PROBE_CIPHERS; i++)
            probe_combo(probe_versions[v], probe_suites[v][i], &r->tx[v][i], &r->rx[v][i]);

    r->rekey.accepted = kx_ktls_rekey_supported(r->rekey.why, sizeof(r->rekey.why)) == 1;

    /* Index [1][0] = TLS 1.3 AES-128-GCM, the suite every TLS 1.3 peer has. */
    const kx_probe_verdict *tx = &r->tx[1][0], *rx = &r->rx[1][0];
    r->usable = tx->accepted && rx->accepted;
    if (!r->usable)
        snprintf(r->why, sizeof(r->why), "TLS 1.3 aes-128-gcm not accepted: %s",
                 !tx->accepted ? tx->why : rx->why);
    return r->usable;
}

/* ---- the public face: ktlsx_probe and its report as text ---- */

int ktlsx_probe(struct ktlsx_probe_report *report)
{
    if (!report) {
        errno = EINVAL;
        return -1;
    }
    return kx_ktls_probe(report);
}

const char *ktlsx_probe_cipher_name(int i) { return kx_probe_cipher_name(i); }

/* Longest line: a cipher line with two different reasons. */
#define KX_PROBE_LINE (64 + 2 * sizeof(((kx_probe_verdict *)0)->why))

static void verdict_line(char *line, size_t cap, const char *key, const kx_probe_verdict *v)
{
    if (v->accepted)
        snprintf(line, cap, "%s: yes", key);
    else
        snprintf(line, cap, "%s: no (%s)", key, v->why);
}

/* "tls13-aes-128-gcm: tx=yes rx=no (rx: why)": one reason when both failed alike. */
static void cipher_line(char *line, size_t cap, int v, int i, const kx_probe_verdict *tx,
                        const kx_probe_verdict *rx)
{
    static const char *const vnames[KX_PROBE_VERSIONS] = { "tls12", "tls13" };
    size_t n = (size_t)snprintf(line, cap, "%s-%s: tx=%s rx=%s", vnames[v], kx_probe_cipher_name(i),
                                tx->accepted ? "yes" : "no", rx->accepted ? "yes" : "no");
    if (n >= cap) return;
    if (!tx->accepted && !rx->accepted && strcmp(tx->why, rx->why) == 0) {
        snprintf(line + n, cap - n, " (%s)", tx->why);
        return;
    }
    if (!tx->accepted) n += (size_t)snprintf(line + n, cap - n, " (tx: %s)", tx->why);
    if (!rx->accepted && n < cap) snprintf(line + n, cap - n, " (rx: %s)", rx->why);
}

int ktlsx_probe_lines(const struct ktlsx_probe_report *r, ktlsx_log_fn fn, void *arg)
{
    if (!r || !fn) {
        errno = EINVAL;
        return -1;
    }
    char line[KX_PROBE_LINE];
    snprintf(line, sizeof line, "kernel: %s", r->kernel);
    fn(arg, KTLSX_LOG_INFO, line);
    if (r->ulp)
        snprintf(line, sizeof line, "tls-ulp: yes");
    else
        snprintf(line, sizeof line, "tls-ulp: no (%s)", r->ulp_why);
    fn(arg, KTLSX_LOG_INFO, line);
    for (int v = 0; v < KX_PROBE_VERSIONS; v++)
        for (int i = 0; i < KX_PROBE_CIPHERS; i++) {
            cipher_line(line, sizeof line, v, i, &r->tx[v][i], &r->rx[v][i]);
            fn(arg, KTLSX_LOG_INFO, line);
        }
    verdict_line(line, sizeof line, "tls13-rekey", &r->rekey);
    fn(arg, KTLSX_LOG_INFO, line);
    if (r->handshake_genl == 1)
        snprintf(line, sizeof line, "handshake-genl: yes");
    else
        snprintf(line, sizeof line, "handshake-genl: no (%s)", r->genl_why);
    fn(arg, KTLSX_LOG_INFO, line);
    if (r->usable) {
        snprintf(line, sizeof line, "ktls: usable");
        fn(arg, KTLSX_LOG_INFO, line);
    } else {
        snprintf(line, sizeof line, "ktls: unavailable (%s)", r->why);
        fn(arg, KTLSX_LOG_WARNING, line);
    }
    return 0;
}
