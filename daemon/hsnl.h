/* The kernel's `handshake` generic-netlink family (Linux >= 6.5): its
 * constants and a codec for the three messages ktlsxd exchanges with it,
 * without any I/O (hsnl.c; tests/unit/test_daemon_hsnl.c feeds it
 * hand-built messages).  The numbers are the merged uapi's
 * (include/uapi/linux/handshake.h, generated from
 * Documentation/netlink/specs/handshake.yaml); Debian 12's headers predate
 * it, so they are defined here.  Early drafts numbered differently (an
 * ACCEPT_STATUS attribute first, X509 before PSK): those never shipped. */
#ifndef KTLSXD_HSNL_H
#define KTLSXD_HSNL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HSNL_FAMILY "handshake"
#define HSNL_GROUP "tlshd"

enum { HSNL_CMD_READY = 1, HSNL_CMD_ACCEPT = 2, HSNL_CMD_DONE = 3 };
enum { HSNL_CLASS_NONE = 0, HSNL_CLASS_TLSHD = 1 };
enum { HSNL_MSG_UNSPEC = 0, HSNL_MSG_CLIENTHELLO = 1, HSNL_MSG_SERVERHELLO = 2 };
enum { HSNL_AUTH_UNSPEC = 0, HSNL_AUTH_UNAUTH = 1, HSNL_AUTH_PSK = 2, HSNL_AUTH_X509 = 3 };
enum { HSNL_X509_CERT = 1, HSNL_X509_PRIVKEY = 2 };
enum {
    HSNL_A_ACCEPT_SOCKFD = 1,         /* s32: installed in the accepting process's fd table */
    HSNL_A_ACCEPT_HANDLER_CLASS = 2,  /* u32 */
    HSNL_A_ACCEPT_MESSAGE_TYPE = 3,   /* u32: clienthello = we are the client */
    HSNL_A_ACCEPT_TIMEOUT = 4,        /* u32 ms */
    HSNL_A_ACCEPT_AUTH_MODE = 5,      /* u32 */
    HSNL_A_ACCEPT_PEER_IDENTITY = 6,  /* u32 key serial, several */
    HSNL_A_ACCEPT_CERTIFICATE = 7,    /* nested { CERT u32, PRIVKEY u32 }, several */
    HSNL_A_ACCEPT_PEERNAME = 8,       /* string */
    HSNL_A_ACCEPT_KEYRING = 9,        /* u32 keyring serial (Linux 6.17+) */
};
enum { HSNL_A_DONE_STATUS = 1, HSNL_A_DONE_SOCKFD = 2, HSNL_A_DONE_REMOTE_AUTH = 3 };

#define HSNL_MAX_IDS 8
#define HSNL_PEERNAME_MAX 255

/* What an ACCEPT reply carries. */
struct hsnl_accept {
    int sockfd;              /* -1 when absent */
    uint32_t message_type, timeout_ms, auth_mode, keyring;
    uint32_t peer_ids[HSNL_MAX_IDS];
    size_t npeer_ids;
    struct { uint32_t cert, privkey; } certs[HSNL_MAX_IDS];
    size_t ncerts;
    char peername[HSNL_PEERNAME_MAX + 1];
    uint32_t seen;           /* bit n: attribute n was there (tells which attributes this kernel sends) */
};

/* One message found in a buffer read from the netlink socket. */
enum hsnl_kind {
    HSNL_OTHER = 0,  /* anything else (another family, a command we do not use): skipped */
    HSNL_READY,      /* the kernel has requests for some handler class */
    HSNL_ACCEPTED,   /* an ACCEPT reply: `accept` is filled in */
    HSNL_ERROR,      /* NLMSG_ERROR: `error` (0 = an ack, else -errno) for request `seq` */
};
struct hsnl_msg {
    enum hsnl_kind kind;
    uint32_t seq;
    int error;
    uint32_t handler_class; /* READY: the class it names (0 if none said) */
    struct hsnl_accept accept;
};

/* Build the ACCEPT request for the tlshd handler class, or DONE.  Return the
 * length, or -1 when cap is too small. */
long hsnl_encode_accept(uint8_t *buf, size_t cap, uint16_t family, uint32_t seq);
long hsnl_encode_done(uint8_t *buf, size_t cap, uint16_t family, uint32_t seq, uint32_t status, int sockfd,
                      const uint32_t *remote_auth, size_t nremote);

/* Decode the message at *off in buf[0..len) and move *off past it.
 * Returns 1 with *m filled, 0 at the end of the buffer, -1 on a malformed
 * message (the rest of the buffer is then skipped) with the reason in *why.
 * An ACCEPT reply that lacks a socket, repeats more identities than
 * HSNL_MAX_IDS or has an attribute of the wrong size is malformed too, but
 * a socket it carries is still in m->accept.sockfd (>= 0): the caller closes
 * it and answers DONE with an error, so the kernel's consumer is not left
 * waiting. */
int hsnl_decode(const uint8_t *buf, size_t len, size_t *off, uint16_t family, struct hsnl_msg *m, const char **why);

/* "clienthello"/"serverhello", "unauth"/"psk"/"x509", or "?". */
const char *hsnl_msg_type_name(uint32_t t);
const char *hsnl_auth_name(uint32_t a);
/* The attribute probe at start: a CTRL_CMD_GETPOLICY dump (Linux >= 5.8) of
 * the family's op `cmd` tells which attributes the kernel's policy for that
 * command knows (for DONE: STATUS, SOCKFD, REMOTE_AUTH, and whatever a newer
 * kernel adds).  The attributes of the ACCEPT reply are not in any policy (the
 * kernel writes them): ktlsxd learns those from the replies (hsnl_accept.seen). */
struct hsnl_policy {
    uint32_t do_idx;       /* the policy index of the op's do handler */
    bool have_do, done;    /* done: NLMSG_DONE seen */
    int error;             /* an NLMSG_ERROR's -errno (the dump refused) */
    uint32_t attrs[8];     /* per policy index < 8: bit n = attribute n is in that policy */
};
/* Build the dump request for `family`'s op `cmd` (to the controller, GENL_ID_CTRL). */
long hsnl_encode_getpolicy(uint8_t *buf, size_t cap, uint16_t family, uint8_t cmd, uint32_t seq);
/* Feed one buffer read from the socket: 1 when the dump is over (p->done or
 * p->error), 0 when more is to come, -1 on a malformed message. */
int hsnl_decode_policy(const uint8_t *buf, size_t len, struct hsnl_policy *p);
/* The attributes of the op's do policy (bit n = attribute n), 0 if none was seen. */
uint32_t hsnl_policy_attrs(const struct hsnl_policy *p);
/* "status sockfd remote_auth ..." for DONE attribute bits; the ACCEPT reply's likewise. */
void hsnl_done_attr_names(uint32_t bits, char *out, size_t cap);
void hsnl_accept_attr_names(uint32_t bits, char *out, size_t cap);
#endif
