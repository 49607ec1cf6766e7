/* The door's messages (include/ktlsx/daemon.h), read as untrusted input: the
 * request is what any local process may send ktlsxd, the answer what a
 * caller reads back.
 *
 * Input: the bytes, decoded as a request and as an answer.  Whatever decodes
 * must encode again to the very same bytes (the format has one spelling per
 * message: nothing invented or dropped between reader and writer), its text
 * fields must be terminated and free of control characters, and an answer's
 * blob must lie inside the input. */
#include <ktlsx/daemon.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t again[KTLSX_DOOR_ANSWER_MAX];
    struct ktlsx_door_request req;
    if (ktlsx_door_request_decode(data, size, &req, NULL) == 0) {
        check_text(req.profile, sizeof req.profile);
        check_text(req.server_name, sizeof req.server_name);
        check_text(req.alpn, sizeof req.alpn);
        long n = ktlsx_door_request_encode(&req, again, sizeof again, NULL);
        if (n != (long)size || memcmp(again, data, size) != 0) abort();
    }
    struct ktlsx_daemon_result res;
    const uint8_t *blob;
    size_t blob_len;
    if (ktlsx_door_answer_decode(data, size, &res, &blob, &blob_len, NULL) == 0) {
        if (blob_len > 0 && (blob < data || blob + blob_len > data + size)) abort();
        check_text(res.message, sizeof res.message);
        check_text(res.peer_subject, sizeof res.peer_subject);
        check_text(res.peer_sans, sizeof res.peer_sans);
        long n = ktlsx_door_answer_encode(&res, blob, blob_len, again, sizeof again, NULL);
        if (n != (long)size || memcmp(again, data, size) != 0) abort();
    }
    return 0;
}
