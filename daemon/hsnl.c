/* The `handshake` generic-netlink messages: encoding ACCEPT and DONE,
 * decoding READY, ACCEPT replies and errors.  No I/O (see hsnl.h). */
#include "hsnl.h"

#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>

#define ALIGN4(n) (((n) + 3u) & ~(size_t)3u)
#define GENL_HDR ALIGN4(sizeof(struct genlmsghdr))

static size_t put_attr(uint8_t *p, uint16_t type, const void *data, size_t len)
{
    struct nlattr a = { .nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type };
    memcpy(p, &a, sizeof a);
    memcpy(p + NLA_HDRLEN, data, len);
    memset(p + NLA_HDRLEN + len, 0, ALIGN4(len) - len);
    return NLA_HDRLEN + ALIGN4(len);
}

static void put_header(uint8_t *buf, size_t len, uint16_t family, uint32_t seq, uint8_t cmd)
{
    struct nlmsghdr h = { .nlmsg_len = (uint32_t)len, .nlmsg_type = family, .nlmsg_flags = NLM_F_REQUEST,
                          .nlmsg_seq = seq };
    struct genlmsghdr g = { .cmd = cmd, .version = 1 };
    memset(buf, 0, NLMSG_HDRLEN + GENL_HDR);
    memcpy(buf, &h, sizeof h);
    memcpy(buf + NLMSG_HDRLEN, &g, sizeof g);
}

long hsnl_encode_accept(uint8_t *buf, size_t cap, uint16_t family, uint32_t seq)
{
    size_t len = NLMSG_HDRLEN + GENL_HDR + NLA_HDRLEN + 4;
    if (cap < len) return -1;
    uint32_t cls = HSNL_CLASS_TLSHD;
    put_header(buf, len, family, seq, HSNL_CMD_ACCEPT);
    put_attr(buf + NLMSG_HDRLEN + GENL_HDR, HSNL_A_ACCEPT_HANDLER_CLASS, &cls, 4);
    return (long)len;
}

long hsnl_encode_done(uint8_t *buf, size_t cap, uint16_t family, uint32_t seq, uint32_t status, int sockfd,
                      const uint32_t *remote_auth, size_t nremote)
{
    size_t len = NLMSG_HDRLEN + GENL_HDR + (NLA_HDRLEN + 4) * (2 + nremote);
    if (cap < len || nremote > HSNL_MAX_IDS) return -1;
    put_header(buf, len, family, seq, HSNL_CMD_DONE);
    uint8_t *p = buf + NLMSG_HDRLEN + GENL_HDR;
    int32_t fd = sockfd;
    p += put_attr(p, HSNL_A_DONE_STATUS, &status, 4);
    p += put_attr(p, HSNL_A_DONE_SOCKFD, &fd, 4);
    for (size_t i = 0; i < nremote; i++) p += put_attr(p, HSNL_A_DONE_REMOTE_AUTH, &remote_auth[i], 4);
    return (long)len;
}

/* One attribute: its header copied out (the buffer need not be aligned) and its payload. */
struct attr {
    uint16_t type, len; /* type without the flag bits; len of the payload */
    const uint8_t *data;
};

/* The attribute at *at in p[0..len), moving *at past it: 1, 0 at the end, -1 on a bad length. */
static int next_attr(const uint8_t *p, size_t len, size_t *at, struct attr *out)
{
    if (*at + NLA_HDRLEN > len) return 0;
    struct nlattr a;
    memcpy(&a, p + *at, sizeof a);
    if (a.nla_len < NLA_HDRLEN || a.nla_len > len - *at) return -1;
    out->type = a.nla_type & NLA_TYPE_MASK;
    out->len = (uint16_t)(a.nla_len - NLA_HDRLEN);
    out->data = p + *at + NLA_HDRLEN;
    *at += ALIGN4(a.nla_len);
    return 1;
}

static uint32_t get_u32(const struct attr *a)
{
    uint32_t v;
    memcpy(&v, a->data, 4);
    return v;
}

static int attrs_ok(const uint8_t *p, size_t len)
{
    size_t at = 0;
    struct attr a;
    int rc;
    while ((rc = next_attr(p, len, &at, &a)) > 0) continue;
    return rc;
}

static int decode_accept(const uint8_t *p, size_t len, struct hsnl_accept *acc, const char **why)
{
    struct attr at_, *a = &at_;
    size_t at = 0;
    int bad = 0;
    *acc = (struct hsnl_accept){ .sockfd = -1 };
    while (next_attr(p, len, &at, a) > 0) {
        uint16_t type = a->type;
        size_t dlen = a->len;
        const uint8_t *d = a->data;
        if (type < 32) acc->seen |= 1u << type;
        switch (type) {
        case HSNL_A_ACCEPT_SOCKFD:
        case HSNL_A_ACCEPT_HANDLER_CLASS:
        case HSNL_A_ACCEPT_MESSAGE_TYPE:
        case HSNL_A_ACCEPT_TIMEOUT:
        case HSNL_A_ACCEPT_AUTH_MODE:
        case HSNL_A_ACCEPT_PEER_IDENTITY:
        case HSNL_A_ACCEPT_KEYRING:
            if (dlen != 4) {
                if (!bad) *why = "an integer attribute that is not 4 bytes";
                bad = 1;
                break;
            }
            if (type == HSNL_A_ACCEPT_SOCKFD) acc->sockfd = (int)(int32_t)get_u32(a);
            else if (type == HSNL_A_ACCEPT_MESSAGE_TYPE) acc->message_type = get_u32(a);
            else if (type == HSNL_A_ACCEPT_TIMEOUT) acc->timeout_ms = get_u32(a);
            else if (type == HSNL_A_ACCEPT_AUTH_MODE) acc->auth_mode = get_u32(a);
            else if (type == HSNL_A_ACCEPT_KEYRING) acc->keyring = get_u32(a);
            else if (type == HSNL_A_ACCEPT_PEER_IDENTITY) {
                if (acc->npeer_ids == HSNL_MAX_IDS) {
                    if (!bad) *why = "more peer identities than ktlsxd takes";
                    bad = 1;
                } else {
                    acc->peer_ids[acc->npeer_ids++] = get_u32(a);
                }
            }
            break;
        case HSNL_A_ACCEPT_CERTIFICATE: {
            if (attrs_ok(d, dlen) < 0) {
                if (!bad) *why = "a certificate attribute with a bad nested length";
                bad = 1;
                break;
            }
            if (acc->ncerts == HSNL_MAX_IDS) {
                if (!bad) *why = "more certificates than ktlsxd takes";
                bad = 1;
                break;
            }
            struct attr n;
            size_t nat = 0;
            uint32_t cert = 0, key = 0;
            while (next_attr(d, dlen, &nat, &n) > 0) {
                if ((n.type == HSNL_X509_CERT || n.type == HSNL_X509_PRIVKEY) && n.len != 4) {
                    if (!bad) *why = "a certificate serial that is not 4 bytes";
                    bad = 1;
                } else if (n.type == HSNL_X509_CERT) {
                    cert = get_u32(&n);
                } else if (n.type == HSNL_X509_PRIVKEY) {
                    key = get_u32(&n);
                }
            }
            acc->certs[acc->ncerts].cert = cert;
            acc->certs[acc->ncerts++].privkey = key;
            break;
        }
        case HSNL_A_ACCEPT_PEERNAME: {
            size_t n = strnlen((const char *)d, dlen);
            if (n > HSNL_PEERNAME_MAX) {
                if (!bad) *why = "a peer name over 255 bytes";
                bad = 1;
                break;
            }
            memcpy(acc->peername, d, n);
            acc->peername[n] = '\0';
            break;
        }
        default: /* an attribute of a newer kernel: not ours to judge */
            break;
        }
    }
    if (attrs_ok(p, len) < 0 && !bad) *why = "an attribute with a bad length", bad = 1;
    if (!bad && acc->sockfd < 0) *why = "no socket in the ACCEPT reply", bad = 1;
    return bad ? -1 : 0;
}

int hsnl_decode(const uint8_t *buf, size_t len, size_t *off, uint16_t family, struct hsnl_msg *m, const char **why)
{
    static const char *dummy;
    if (!why) why = &dummy;
    *why = "";
    *m = (struct hsnl_msg){ .kind = HSNL_OTHER, .accept.sockfd = -1 }; /* whatever happens below */
    if (*off >= len) return 0;
    if (len - *off < NLMSG_HDRLEN) {
        *off = len;
        *why = "a truncated netlink header";
        return -1;
    }
    struct nlmsghdr h;
    memcpy(&h, buf + *off, sizeof h);
    if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - *off) {
        *off = len;
        *why = "a netlink message longer than what was read";
        return -1;
    }
    const uint8_t *body = buf + *off + NLMSG_HDRLEN;
    size_t blen = h.nlmsg_len - NLMSG_HDRLEN;
    size_t next = *off + NLMSG_ALIGN(h.nlmsg_len);
    *off = next > len ? len : next;
    *m = (struct hsnl_msg){ .kind = HSNL_OTHER, .seq = h.nlmsg_seq, .accept.sockfd = -1 };
    if (h.nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr e;
        if (blen < sizeof e.error) return *why = "a truncated netlink error", -1;
        memcpy(&e.error, body, sizeof e.error);
        m->kind = HSNL_ERROR;
        m->error = e.error;
        return 1;
    }
    if (h.nlmsg_type != family || family == 0) return 1;
    if (blen < GENL_HDR) return *why = "a truncated generic netlink header", -1;
    struct genlmsghdr g;
    memcpy(&g, body, sizeof g);
    const uint8_t *attrs = body + GENL_HDR;
    size_t alen = blen - GENL_HDR;
    if (g.cmd == HSNL_CMD_READY) {
        if (attrs_ok(attrs, alen) < 0) return *why = "a READY notice with a bad attribute length", -1;
        m->kind = HSNL_READY;
        struct attr a;
        size_t at = 0;
        while (next_attr(attrs, alen, &at, &a) > 0)
            if (a.type == HSNL_A_ACCEPT_HANDLER_CLASS && a.len == 4) m->handler_class = get_u32(&a);
        return 1;
    }
    if (g.cmd == HSNL_CMD_ACCEPT) {
        m->kind = HSNL_ACCEPTED;
        return decode_accept(attrs, alen, &m->accept, why) < 0 ? -1 : 1;
    }
    return 1;
}

const char *hsnl_msg_type_name(uint32_t t)
{
    return t == HSNL_MSG_CLIENTHELLO ? "clienthello" : t == HSNL_MSG_SERVERHELLO ? "serverhello" : "?";
}

const char *hsnl_auth_name(uint32_t a)
{
    return a == HSNL_AUTH_UNAUTH ? "unauth" : a == HSNL_AUTH_PSK ? "psk" : a == HSNL_AUTH_X509 ? "x509" : "?";
}

long hsnl_encode_getpolicy(uint8_t *buf, size_t cap, uint16_t family, uint8_t cmd, uint32_t seq)
{
    size_t len = NLMSG_HDRLEN + GENL_HDR + (NLA_HDRLEN + 4) * 2;
    if (cap < len) return -1;
    put_header(buf, len, GENL_ID_CTRL, seq, CTRL_CMD_GETPOLICY);
    struct nlmsghdr h;
    memcpy(&h, buf, sizeof h);
    h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    memcpy(buf, &h, sizeof h);
    uint8_t *p = buf + NLMSG_HDRLEN + GENL_HDR;
    uint16_t fam[2] = { family, 0 }; /* u16, padded to 4 */
    uint32_t op = cmd;
    p += put_attr(p, CTRL_ATTR_FAMILY_ID, fam, 2);
    put_attr(p, CTRL_ATTR_OP, &op, 4);
    return (long)len;
}

/* CTRL_ATTR_OP_POLICY { [op] { DO idx, DUMP idx } }: there is one op in a filtered dump. */
static int policy_ops(const uint8_t *d, size_t len, struct hsnl_policy *p)
{
    struct attr op, x;
    size_t at = 0;
    while (next_attr(d, len, &at, &op) > 0) {
        if (attrs_ok(op.data, op.len) < 0) return -1;
        size_t xat = 0;
        while (next_attr(op.data, op.len, &xat, &x) > 0)
            if (x.type == CTRL_ATTR_POLICY_DO && x.len == 4) p->do_idx = get_u32(&x), p->have_do = true;
    }
    return 0;
}

/* CTRL_ATTR_POLICY { [idx] { [attr] { NL_POLICY_TYPE_ATTR_* } } }: the attribute numbers are what counts. */
static int policy_attrs(const uint8_t *d, size_t len, struct hsnl_policy *p)
{
    struct attr idx, a;
    size_t at = 0;
    while (next_attr(d, len, &at, &idx) > 0) {
        if (attrs_ok(idx.data, idx.len) < 0) return -1;
        size_t aat = 0;
        while (next_attr(idx.data, idx.len, &aat, &a) > 0)
            if (idx.type < 8 && a.type < 32) p->attrs[idx.type] |= 1u << a.type;
    }
    return 0;
}

int hsnl_decode_policy(const uint8_t *buf, size_t len, struct hsnl_policy *p)
{
    size_t off = 0;
    while (off < len) {
        if (len - off < NLMSG_HDRLEN) return -1;
        struct nlmsghdr h;
        memcpy(&h, buf + off, sizeof h);
        if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - off) return -1;
        const uint8_t *body = buf + off + NLMSG_HDRLEN;
        size_t blen = h.nlmsg_len - NLMSG_HDRLEN;
        off += NLMSG_ALIGN(h.nlmsg_len);
        if (off > len) off = len;
        if (h.nlmsg_type == NLMSG_DONE) {
            p->done = true;
            return 1;
        }
        if (h.nlmsg_type == NLMSG_ERROR) {
            int32_t e;
            if (blen < sizeof e) return -1;
            memcpy(&e, body, sizeof e);
            if (e == 0) continue; /* an ack */
            p->error = e;
            return 1;
        }
        if (h.nlmsg_type != GENL_ID_CTRL) continue;
        if (blen < GENL_HDR || attrs_ok(body + GENL_HDR, blen - GENL_HDR) < 0) return -1;
        struct attr a;
        size_t at = 0;
        while (next_attr(body + GENL_HDR, blen - GENL_HDR, &at, &a) > 0) {
            if (a.type == CTRL_ATTR_OP_POLICY && (attrs_ok(a.data, a.len) < 0 || policy_ops(a.data, a.len, p) < 0))
                return -1;
            if (a.type == CTRL_ATTR_POLICY && (attrs_ok(a.data, a.len) < 0 || policy_attrs(a.data, a.len, p) < 0))
                return -1;
        }
    }
    return 0;
}

uint32_t hsnl_policy_attrs(const struct hsnl_policy *p)
{
    return p->have_do && p->do_idx < 8 ? p->attrs[p->do_idx] : 0;
}

static void attr_names(uint32_t bits, const char *const *names, size_t n, char *out, size_t cap)
{
    size_t used = 0;
    if (cap) out[0] = '\0';
    for (uint32_t i = 1; i < 32 && cap; i++) {
        if (!(bits & (1u << i))) continue;
        char one[24];
        if (i < n && names[i]) snprintf(one, sizeof one, "%s", names[i]);
        else snprintf(one, sizeof one, "attr%u", i);
        int w = snprintf(out + used, cap - used, "%s%s", used ? " " : "", one);
        if (w < 0 || (size_t)w >= cap - used) { /* no room for this name: none of it */
            out[used] = '\0';
            break;
        }
        used += (size_t)w;
    }
}

void hsnl_done_attr_names(uint32_t bits, char *out, size_t cap)
{
    static const char *const names[] = { NULL, "status", "sockfd", "remote_auth" };
    attr_names(bits, names, sizeof names / sizeof names[0], out, cap);
}

void hsnl_accept_attr_names(uint32_t bits, char *out, size_t cap)
{
    static const char *const names[] = { NULL,        "sockfd",        "handler_class", "message_type",
                                         "timeout",   "auth_mode",     "peer_identity", "certificate",
                                         "peername",  "keyring" };
    attr_names(bits, names, sizeof names / sizeof names[0], out, cap);
}
