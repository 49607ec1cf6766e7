/* The kernel door's netlink codec (daemon/hsnl.c, compiled in) on untrusted
 * bytes: what ktlsxd reads from its generic-netlink socket (READY
 * notifications, ACCEPT replies, errors, the CTRL_CMD_GETPOLICY dump of the
 * attribute probe).  The kernel writes these, but the codec must hold for any
 * bytes: a newer kernel's layout, or a bug, must end in a refusal, not in a
 * read past the buffer.
 *
 * Input: the first byte picks the family id the decoder expects (so the
 * fuzzer can hit and miss it), the rest is one read from the socket, decoded
 * message after message until the end or the first malformed one, then fed to
 * the policy dump decoder.  Every decoded message must move the offset forward
 * within the buffer; an ACCEPT reply must keep its counts within HSNL_MAX_IDS,
 * its peer name terminated and free of NUL inside, and its names for the
 * attributes seen must fit their buffer.  Seeds: tests/fuzz/corpus/fuzz_hsnl
 * (a READY, an ACCEPT reply with every attribute, an error, a policy dump). */
#include <stdlib.h>
#include <string.h>

#include "../../daemon/hsnl.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint16_t family = (uint16_t)(0x10 + (data[0] & 0x1f));
    const uint8_t *buf = data + 1;
    size_t len = size - 1, off = 0;
    for (int guard = 0; guard < 4096; guard++) {
        struct hsnl_msg m;
        const char *why = NULL;
        size_t before = off;
        int rc = hsnl_decode(buf, len, &off, family, &m, &why);
        if (rc < 0) {
            if (!why || !why[0]) abort(); /* a refusal always says why */
            break;
        }
        if (rc == 0) break;
        if (off <= before || off > len) abort(); /* progress, and within the read */
        if (m.kind == HSNL_ACCEPTED) {
            const struct hsnl_accept *a = &m.accept;
            if (a->npeer_ids > HSNL_MAX_IDS || a->ncerts > HSNL_MAX_IDS) abort();
            if (strnlen(a->peername, sizeof a->peername) == sizeof a->peername) abort();
            char names[256];
            hsnl_accept_attr_names(a->seen, names, sizeof names);
            if (strnlen(names, sizeof names) == sizeof names) abort();
            (void)hsnl_auth_name(a->auth_mode);
            (void)hsnl_msg_type_name(a->message_type);
        }
    }
    struct hsnl_policy p;
    memset(&p, 0, sizeof p);
    if (hsnl_decode_policy(buf, len, &p) >= 0) {
        char names[256];
        hsnl_done_attr_names(hsnl_policy_attrs(&p), names, sizeof names);
        if (strnlen(names, sizeof names) == sizeof names) abort();
    }
    return 0;
}
