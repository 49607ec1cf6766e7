/* The kernel door's netlink codec (daemon/hsnl.c), compiled into this test,
 * on messages built here byte by byte (not with the codec's own encoder):
 *
 * - the uapi numbers as merged in Linux 6.5 (not the drafts' numbering);
 * - ACCEPT and DONE requests encode to the exact bytes the kernel parses;
 * - an ACCEPT reply with every attribute (serials, nested certificates, peer
 *   name) decodes, an attribute of a newer kernel is skipped, READY, an
 *   NLMSG_ERROR and several messages in one read;
 * - malformed input: a truncated header, a length past the buffer, an
 *   attribute length past its message, an integer of the wrong size, a reply
 *   without a socket, too many serials, an over-long peer name: refused with a
 *   reason, never read out of bounds (ASan), and a socket that came with a
 *   malformed reply still reported so that the daemon can answer DONE;
 * - the attribute probe: the CTRL_CMD_GETPOLICY request's bytes, a policy dump
 *   as the kernel writes it (op policy, then the policy, nested three deep,
 *   then NLMSG_DONE) split over two reads, a newer kernel's extra attribute, a
 *   refused dump, a nested length past its parent. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../daemon/hsnl.c"

#define FAM 0x1b

/* A little message builder: nlmsghdr + genlmsghdr + attributes. */
struct mb {
    uint8_t b[4096];
    size_t len, msg_start, nest_start;
    size_t stack[4]; /* nests inside nests (the policy dump) */
    int depth;
};

static void mb_put(struct mb *m, const void *p, size_t n)
{
    assert_true(m->len + n <= sizeof m->b);
    memcpy(m->b + m->len, p, n);
    m->len += n;
}

static void mb_pad(struct mb *m)
{
    while (m->len % 4) m->b[m->len++] = 0;
}

static void mb_begin(struct mb *m, uint16_t type, uint32_t seq, uint8_t cmd)
{
    m->msg_start = m->len;
    struct nlmsghdr h = { .nlmsg_type = type, .nlmsg_seq = seq };
    mb_put(m, &h, sizeof h);
    if (type != NLMSG_ERROR) {
        struct genlmsghdr g = { .cmd = cmd, .version = 1 };
        mb_put(m, &g, sizeof g);
    }
}

static void mb_end(struct mb *m)
{
    uint32_t n = (uint32_t)(m->len - m->msg_start);
    memcpy(m->b + m->msg_start, &n, 4);
    mb_pad(m);
}

static void mb_attr(struct mb *m, uint16_t type, const void *p, size_t n)
{
    struct nlattr a = { .nla_len = (uint16_t)(4 + n), .nla_type = type };
    mb_put(m, &a, 4);
    mb_put(m, p, n);
    mb_pad(m);
}

static void mb_u32(struct mb *m, uint16_t type, uint32_t v) { mb_attr(m, type, &v, 4); }

static void mb_nest_begin(struct mb *m, uint16_t type)
{
    m->nest_start = m->len;
    struct nlattr a = { .nla_len = 0, .nla_type = type | NLA_F_NESTED };
    mb_put(m, &a, 4);
}

static void mb_nest_end(struct mb *m)
{
    uint16_t n = (uint16_t)(m->len - m->nest_start);
    memcpy(m->b + m->nest_start, &n, 2);
}

static void test_uapi_numbers(void **state)
{
    (void)state;
    /* include/uapi/linux/handshake.h as merged (6.5); KEYRING from 6.17 */
    assert_int_equal(HSNL_CMD_READY, 1);
    assert_int_equal(HSNL_CMD_ACCEPT, 2);
    assert_int_equal(HSNL_CMD_DONE, 3);
    assert_int_equal(HSNL_AUTH_UNAUTH, 1);
    assert_int_equal(HSNL_AUTH_PSK, 2);
    assert_int_equal(HSNL_AUTH_X509, 3);
    assert_int_equal(HSNL_A_ACCEPT_SOCKFD, 1);
    assert_int_equal(HSNL_A_ACCEPT_HANDLER_CLASS, 2);
    assert_int_equal(HSNL_A_ACCEPT_PEERNAME, 8);
    assert_int_equal(HSNL_A_ACCEPT_KEYRING, 9);
    assert_int_equal(HSNL_A_DONE_STATUS, 1);
    assert_int_equal(HSNL_A_DONE_SOCKFD, 2);
    assert_int_equal(HSNL_A_DONE_REMOTE_AUTH, 3);
}

static void test_encode(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct mb want = { 0 };
    mb_begin(&want, FAM, 7, HSNL_CMD_ACCEPT);
    mb_u32(&want, HSNL_A_ACCEPT_HANDLER_CLASS, HSNL_CLASS_TLSHD);
    mb_end(&want);
    ((struct nlmsghdr *)(void *)want.b)->nlmsg_flags = NLM_F_REQUEST;
    long n = hsnl_encode_accept(buf, sizeof buf, FAM, 7);
    assert_int_equal(n, (long)want.len);
    assert_int_equal(n, 16 + 4 + 8);
    assert_memory_equal(buf, want.b, want.len);
    assert_int_equal(hsnl_encode_accept(buf, 27, FAM, 7), -1);

    uint32_t remote[2] = { 0x11223344, 0x55667788 };
    struct mb done = { 0 };
    mb_begin(&done, FAM, 9, HSNL_CMD_DONE);
    mb_u32(&done, HSNL_A_DONE_STATUS, 129 /* EKEYREJECTED */);
    mb_u32(&done, HSNL_A_DONE_SOCKFD, 12);
    mb_u32(&done, HSNL_A_DONE_REMOTE_AUTH, remote[0]);
    mb_u32(&done, HSNL_A_DONE_REMOTE_AUTH, remote[1]);
    mb_end(&done);
    ((struct nlmsghdr *)(void *)done.b)->nlmsg_flags = NLM_F_REQUEST;
    n = hsnl_encode_done(buf, sizeof buf, FAM, 9, 129, 12, remote, 2);
    assert_int_equal(n, (long)done.len);
    assert_memory_equal(buf, done.b, done.len);
    assert_int_equal(hsnl_encode_done(buf, (size_t)n - 1, FAM, 9, 129, 12, remote, 2), -1);
    /* a negative fd is sent as the s32 it is */
    n = hsnl_encode_done(buf, sizeof buf, FAM, 1, 5, -1, NULL, 0);
    assert_int_equal(n, 20 + 16);
    int32_t fd;
    memcpy(&fd, buf + 20 + 8 + 4, 4);
    assert_int_equal(fd, -1);
}

static void build_full_accept(struct mb *m, uint32_t seq)
{
    mb_begin(m, FAM, seq, HSNL_CMD_ACCEPT);
    mb_u32(m, HSNL_A_ACCEPT_SOCKFD, 42);
    mb_u32(m, HSNL_A_ACCEPT_MESSAGE_TYPE, HSNL_MSG_CLIENTHELLO);
    mb_u32(m, HSNL_A_ACCEPT_TIMEOUT, 10000);
    mb_u32(m, HSNL_A_ACCEPT_AUTH_MODE, HSNL_AUTH_PSK);
    mb_u32(m, HSNL_A_ACCEPT_PEER_IDENTITY, 0x2a3b4c5d);
    mb_u32(m, HSNL_A_ACCEPT_PEER_IDENTITY, 0x01020304);
    mb_nest_begin(m, HSNL_A_ACCEPT_CERTIFICATE);
    mb_u32(m, HSNL_X509_CERT, 0xc0);
    mb_u32(m, HSNL_X509_PRIVKEY, 0xc1);
    mb_nest_end(m);
    mb_attr(m, HSNL_A_ACCEPT_PEERNAME, "127.0.0.1", 10);
    mb_u32(m, HSNL_A_ACCEPT_KEYRING, 0x3a0e2ab8);
    mb_u32(m, 10 /* KEY_UPDATE_REQUEST, a newer kernel's */, 1);
    mb_end(m);
}

static void test_decode_accept(void **state)
{
    (void)state;
    struct mb m = { 0 };
    build_full_accept(&m, 5);
    size_t off = 0;
    struct hsnl_msg msg;
    const char *why = NULL;
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 1);
    assert_int_equal(msg.kind, HSNL_ACCEPTED);
    assert_int_equal(msg.seq, 5);
    const struct hsnl_accept *a = &msg.accept;
    assert_int_equal(a->sockfd, 42);
    assert_int_equal(a->message_type, HSNL_MSG_CLIENTHELLO);
    assert_int_equal(a->timeout_ms, 10000);
    assert_int_equal(a->auth_mode, HSNL_AUTH_PSK);
    assert_int_equal(a->npeer_ids, 2);
    assert_int_equal(a->peer_ids[0], 0x2a3b4c5d);
    assert_int_equal(a->peer_ids[1], 0x01020304);
    assert_int_equal(a->ncerts, 1);
    assert_int_equal(a->certs[0].cert, 0xc0);
    assert_int_equal(a->certs[0].privkey, 0xc1);
    assert_string_equal(a->peername, "127.0.0.1");
    assert_int_equal(a->keyring, 0x3a0e2ab8);
    assert_true(a->seen & (1u << HSNL_A_ACCEPT_KEYRING));
    assert_true(a->seen & (1u << 10));
    assert_false(a->seen & (1u << HSNL_A_ACCEPT_HANDLER_CLASS));
    assert_int_equal(off, m.len);
    assert_string_equal(hsnl_msg_type_name(a->message_type), "clienthello");
    assert_string_equal(hsnl_auth_name(a->auth_mode), "psk");
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 0);
    assert_int_equal(msg.kind, HSNL_OTHER); /* the end: nothing left over from the reply */
    assert_int_equal(msg.accept.sockfd, -1);
    assert_string_equal(hsnl_auth_name(HSNL_AUTH_X509), "x509");
    assert_string_equal(hsnl_auth_name(77), "?");
}

/* READY, an error for seq 3, an ACCEPT reply and a message of another family, in one read. */
static void test_decode_batch(void **state)
{
    (void)state;
    struct mb m = { 0 };
    mb_begin(&m, FAM, 0, HSNL_CMD_READY);
    mb_u32(&m, HSNL_A_ACCEPT_HANDLER_CLASS, HSNL_CLASS_TLSHD);
    mb_end(&m);
    mb_begin(&m, NLMSG_ERROR, 3, 0);
    int32_t err = -11; /* EAGAIN: nothing pending */
    mb_put(&m, &err, 4);
    struct nlmsghdr orig = { 0 };
    mb_put(&m, &orig, sizeof orig);
    mb_end(&m);
    build_full_accept(&m, 4);
    mb_begin(&m, FAM + 1, 0, HSNL_CMD_READY);
    mb_end(&m);
    size_t off = 0;
    struct hsnl_msg msg;
    const char *why;
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 1);
    assert_int_equal(msg.kind, HSNL_READY);
    assert_int_equal(msg.handler_class, HSNL_CLASS_TLSHD);
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 1);
    assert_int_equal(msg.kind, HSNL_ERROR);
    assert_int_equal(msg.seq, 3);
    assert_int_equal(msg.error, -11);
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 1);
    assert_int_equal(msg.kind, HSNL_ACCEPTED);
    assert_int_equal(msg.seq, 4);
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 1);
    assert_int_equal(msg.kind, HSNL_OTHER);
    assert_int_equal(hsnl_decode(m.b, m.len, &off, FAM, &msg, &why), 0);
}

/* Decode a single message expecting -1 with `want` in the reason. */
static void bad(const struct mb *m, size_t len, const char *want, int want_fd)
{
    uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any read past it */
    assert_non_null(copy);
    memcpy(copy, m->b, len);
    size_t off = 0;
    struct hsnl_msg msg;
    const char *why = NULL;
    assert_int_equal(hsnl_decode(copy, len, &off, FAM, &msg, &why), -1);
    assert_non_null(why);
    if (!strstr(why, want)) fail_msg("got '%s', want '%s'", why, want);
    if (want_fd != -2) assert_int_equal(msg.accept.sockfd, want_fd);
    assert_true(off <= len);
    free(copy);
}

static void test_decode_malformed(void **state)
{
    (void)state;
    struct mb m = { 0 };
    build_full_accept(&m, 1);
    bad(&m, 10, "truncated netlink header", -1); /* the message is reset first: no stale socket */
    bad(&m, m.len - 4, "longer than what was read", -2);

    /* an attribute whose length runs past its message */
    struct mb a = { 0 };
    mb_begin(&a, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&a, HSNL_A_ACCEPT_SOCKFD, 9);
    struct nlattr over = { .nla_len = 200, .nla_type = HSNL_A_ACCEPT_PEERNAME };
    mb_put(&a, &over, 4);
    mb_put(&a, "abcd", 4);
    mb_end(&a);
    bad(&a, a.len, "bad length", 9);

    /* an attribute length under the header size */
    struct mb z = { 0 };
    mb_begin(&z, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&z, HSNL_A_ACCEPT_SOCKFD, 9);
    struct nlattr tiny = { .nla_len = 2, .nla_type = HSNL_A_ACCEPT_TIMEOUT };
    mb_put(&z, &tiny, 4);
    mb_end(&z);
    bad(&z, z.len, "bad length", 9);

    /* an integer of 2 bytes */
    struct mb s = { 0 };
    mb_begin(&s, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&s, HSNL_A_ACCEPT_SOCKFD, 8);
    uint16_t two = 2;
    mb_attr(&s, HSNL_A_ACCEPT_AUTH_MODE, &two, 2);
    mb_end(&s);
    bad(&s, s.len, "not 4 bytes", 8);

    /* no socket */
    struct mb n = { 0 };
    mb_begin(&n, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&n, HSNL_A_ACCEPT_AUTH_MODE, HSNL_AUTH_PSK);
    mb_end(&n);
    bad(&n, n.len, "no socket", -1);

    /* more serials than the daemon takes: refused, the socket still reported */
    struct mb p = { 0 };
    mb_begin(&p, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&p, HSNL_A_ACCEPT_SOCKFD, 7);
    for (uint32_t i = 0; i <= HSNL_MAX_IDS; i++) mb_u32(&p, HSNL_A_ACCEPT_PEER_IDENTITY, i + 1);
    mb_end(&p);
    bad(&p, p.len, "more peer identities", 7);

    /* a peer name of 300 bytes */
    struct mb l = { 0 };
    char name[301];
    memset(name, 'x', 300);
    name[300] = '\0';
    mb_begin(&l, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&l, HSNL_A_ACCEPT_SOCKFD, 6);
    mb_attr(&l, HSNL_A_ACCEPT_PEERNAME, name, 301);
    mb_end(&l);
    bad(&l, l.len, "peer name over 255", 6);

    /* a certificate nest whose inner length runs past it */
    struct mb c = { 0 };
    mb_begin(&c, FAM, 1, HSNL_CMD_ACCEPT);
    mb_u32(&c, HSNL_A_ACCEPT_SOCKFD, 5);
    mb_nest_begin(&c, HSNL_A_ACCEPT_CERTIFICATE);
    struct nlattr inner = { .nla_len = 40, .nla_type = HSNL_X509_CERT };
    mb_put(&c, &inner, 4);
    uint32_t v = 1;
    mb_put(&c, &v, 4);
    mb_nest_end(&c);
    mb_end(&c);
    bad(&c, c.len, "certificate attribute", 5);

    /* a truncated error and a truncated generic header */
    struct mb e = { 0 };
    mb_begin(&e, NLMSG_ERROR, 1, 0);
    mb_put(&e, "\x01\x02", 2);
    mb_end(&e);
    bad(&e, 16 + 2, "truncated netlink error", -2);
    struct mb g = { 0 };
    struct nlmsghdr h = { .nlmsg_len = 18, .nlmsg_type = FAM };
    mb_put(&g, &h, sizeof h);
    mb_put(&g, "\x02\x01", 2);
    bad(&g, 18, "truncated generic netlink header", -2);
}

static void mb_open(struct mb *m, uint16_t type)
{
    assert_true(m->depth < 4);
    m->stack[m->depth++] = m->len;
    struct nlattr a = { .nla_len = 0, .nla_type = type | NLA_F_NESTED };
    mb_put(m, &a, 4);
}

static void mb_close(struct mb *m)
{
    size_t at = m->stack[--m->depth];
    uint16_t n = (uint16_t)(m->len - at);
    memcpy(m->b + at, &n, 2);
}

/* The kernel's dump for op DONE of family FAM: op policy (DO = index idx), the policy
 * index idx with attributes `attrs` (each U32 typed), NLMSG_DONE. */
static void policy_dump(struct mb *m, uint32_t idx, const uint16_t *attrs, size_t n)
{
    uint16_t fam[2] = { FAM, 0 };
    mb_begin(m, GENL_ID_CTRL, 1, CTRL_CMD_GETPOLICY);
    mb_attr(m, CTRL_ATTR_FAMILY_ID, fam, 2);
    mb_open(m, CTRL_ATTR_OP_POLICY);
    mb_open(m, HSNL_CMD_DONE);
    mb_u32(m, CTRL_ATTR_POLICY_DO, idx);
    mb_close(m);
    mb_close(m);
    mb_end(m);
    mb_begin(m, GENL_ID_CTRL, 1, CTRL_CMD_GETPOLICY);
    mb_attr(m, CTRL_ATTR_FAMILY_ID, fam, 2);
    mb_open(m, CTRL_ATTR_POLICY);
    mb_open(m, (uint16_t)idx);
    for (size_t i = 0; i < n; i++) {
        mb_open(m, attrs[i]);
        mb_u32(m, NL_POLICY_TYPE_ATTR_TYPE, NL_ATTR_TYPE_U32);
        mb_close(m);
    }
    mb_close(m);
    mb_close(m);
    mb_end(m);
    struct nlmsghdr d = { .nlmsg_len = 20, .nlmsg_type = NLMSG_DONE, .nlmsg_seq = 1 };
    int32_t zero = 0;
    mb_put(m, &d, sizeof d);
    mb_put(m, &zero, 4);
}

static void test_policy_probe(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct mb want = { 0 };
    uint16_t fam[2] = { FAM, 0 };
    mb_begin(&want, GENL_ID_CTRL, 5, CTRL_CMD_GETPOLICY);
    mb_attr(&want, CTRL_ATTR_FAMILY_ID, fam, 2);
    mb_u32(&want, CTRL_ATTR_OP, HSNL_CMD_DONE);
    mb_end(&want);
    struct nlmsghdr h;
    memcpy(&h, want.b, sizeof h);
    h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    memcpy(want.b, &h, sizeof h);
    long n = hsnl_encode_getpolicy(buf, sizeof buf, FAM, HSNL_CMD_DONE, 5);
    assert_int_equal(n, (long)want.len);
    assert_memory_equal(buf, want.b, want.len);
    assert_int_equal(hsnl_encode_getpolicy(buf, (size_t)n - 1, FAM, HSNL_CMD_DONE, 5), -1);

    /* 6.12: status, sockfd, remote_auth; read in two parts (the dump's messages come apart) */
    struct mb d = { 0 };
    const uint16_t three[] = { 1, 2, 3 };
    policy_dump(&d, 1, three, 3);
    struct hsnl_policy p = { 0 };
    size_t first = 0;
    { struct nlmsghdr x; memcpy(&x, d.b, sizeof x); first = NLMSG_ALIGN(x.nlmsg_len); }
    assert_int_equal(hsnl_decode_policy(d.b, first, &p), 0);
    assert_true(p.have_do);
    assert_int_equal(hsnl_decode_policy(d.b + first, d.len - first, &p), 1);
    assert_true(p.done);
    assert_int_equal(hsnl_policy_attrs(&p), 0xe);
    char names[100];
    hsnl_done_attr_names(hsnl_policy_attrs(&p), names, sizeof names);
    assert_string_equal(names, "status sockfd remote_auth");

    /* a newer kernel: a fourth DONE attribute is named by its number */
    struct mb d4 = { 0 };
    const uint16_t four[] = { 1, 2, 3, 4 };
    policy_dump(&d4, 0, four, 4);
    p = (struct hsnl_policy){ 0 };
    assert_int_equal(hsnl_decode_policy(d4.b, d4.len, &p), 1);
    hsnl_done_attr_names(hsnl_policy_attrs(&p), names, sizeof names);
    assert_string_equal(names, "status sockfd remote_auth attr4");
    hsnl_accept_attr_names(0x3fe, names, sizeof names);
    assert_string_equal(names, "sockfd handler_class message_type timeout auth_mode peer_identity certificate peername keyring");
    hsnl_done_attr_names(0xe, names, 8); /* cut at a name, never mid-way past the buffer */
    assert_string_equal(names, "status");

    /* the dump refused (a kernel without GETPOLICY): the error, nothing known */
    struct mb e = { 0 };
    mb_begin(&e, NLMSG_ERROR, 1, 0);
    int32_t err = -EOPNOTSUPP;
    mb_put(&e, &err, 4);
    mb_put(&e, &h, sizeof h);
    mb_end(&e);
    p = (struct hsnl_policy){ 0 };
    assert_int_equal(hsnl_decode_policy(e.b, e.len, &p), 1);
    assert_int_equal(p.error, -EOPNOTSUPP);
    assert_int_equal(hsnl_policy_attrs(&p), 0);

    /* a nested length past its parent: malformed, nothing read past the buffer */
    struct mb m = { 0 };
    policy_dump(&m, 0, three, 3);
    struct nlmsghdr x;
    memcpy(&x, m.b, sizeof x);
    size_t second = NLMSG_ALIGN(x.nlmsg_len);
    uint16_t big = 0x7ff0; /* the CTRL_ATTR_POLICY nest's length, after the family attribute */
    memcpy(m.b + second + 16 + 4 + 8, &big, 2);
    p = (struct hsnl_policy){ 0 };
    assert_int_equal(hsnl_decode_policy(m.b, m.len, &p), -1);
    assert_int_equal(hsnl_decode_policy(m.b, 10, &p), -1); /* a truncated header */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uapi_numbers),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_decode_accept),
        cmocka_unit_test(test_decode_batch),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_policy_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
