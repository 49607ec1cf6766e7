/* Hex test vectors as the RFCs print them (any whitespace between bytes).
 * Include after <cmocka.h>. */
#ifndef KXT_HELPERS_HEX_H
#define KXT_HELPERS_HEX_H

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>

/* Decode into out (at most cap bytes); a stray digit or a bad character fails the test. */
__attribute__((unused)) static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        if (isspace((unsigned char)*p)) continue;
        int v = isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
        assert_true(v >= 0 && v < 16);
        if (hi < 0) {
            hi = v;
        } else {
            assert_true(n < cap);
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    assert_int_equal(hi, -1);
    return n;
}

__attribute__((unused)) static void assert_hex(const uint8_t *got, size_t len, const char *want_hex)
{
    uint8_t want[512];
    size_t n = unhex(want_hex, want, sizeof want);
    assert_int_equal(n, len);
    assert_memory_equal(got, want, len);
}

#endif
