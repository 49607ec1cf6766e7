/* The must-use result type every fallible internal function returns.
 *
 * A result is either OK or a failure carrying the TLS alert to send and a
 * one-line reason for the log.  Functions declare it with KX_RESULT so the
 * compiler rejects a caller that drops it; callers propagate with KX_GUARD
 * and assert protocol rules with KX_ENSURE, so the happy path reads like the
 * RFC and every early exit carries its alert. */
#ifndef KX_CORE_RESULT_H
#define KX_CORE_RESULT_H

#include <stdint.h>
#include <stddef.h>

typedef struct {
    const char *reason; /* NULL when OK; a static string otherwise */
    uint8_t alert;      /* TLS AlertDescription to send on failure */
} kx_result;

#define KX_RESULT __attribute__((warn_unused_result)) kx_result

#define KX_OK ((kx_result){ NULL, 0 })
#define kx_failed(r) ((r).reason != NULL)
#define KX_FAIL(alert_, reason_) ((kx_result){ (reason_), (uint8_t)(alert_) })

/* Propagate a failure to our caller. */
#define KX_GUARD(expr)                                \
    do {                                              \
        kx_result kx_r__ = (expr);                    \
        if (kx_failed(kx_r__)) return kx_r__;         \
    } while (0)

/* Enforce a protocol or programming rule; fail with `alert_` otherwise. */
#define KX_ENSURE(cond, alert_, reason_)              \
    do {                                              \
        if (!(cond)) return KX_FAIL(alert_, reason_); \
    } while (0)

/* TLS AlertDescription values (RFC 8446 §6, RFC 5246 §7.2). */
enum {
    KX_ALERT_CLOSE_NOTIFY = 0,
    KX_ALERT_UNEXPECTED_MESSAGE = 10,
    KX_ALERT_BAD_RECORD_MAC = 20,
    KX_ALERT_RECORD_OVERFLOW = 22,
    KX_ALERT_HANDSHAKE_FAILURE = 40,
    KX_ALERT_BAD_CERTIFICATE = 42,
    KX_ALERT_UNSUPPORTED_CERTIFICATE = 43,
    KX_ALERT_CERTIFICATE_REVOKED = 44,
    KX_ALERT_CERTIFICATE_EXPIRED = 45,
    KX_ALERT_CERTIFICATE_UNKNOWN = 46,
    KX_ALERT_ILLEGAL_PARAMETER = 47,
    KX_ALERT_UNKNOWN_CA = 48,
    KX_ALERT_ACCESS_DENIED = 49,
    KX_ALERT_DECODE_ERROR = 50,
    KX_ALERT_DECRYPT_ERROR = 51,
    KX_ALERT_PROTOCOL_VERSION = 70,
    KX_ALERT_INSUFFICIENT_SECURITY = 71,
    KX_ALERT_INTERNAL_ERROR = 80,
    KX_ALERT_INAPPROPRIATE_FALLBACK = 86,
    KX_ALERT_USER_CANCELED = 90,
    KX_ALERT_NO_RENEGOTIATION = 100,
    KX_ALERT_MISSING_EXTENSION = 109,
    KX_ALERT_UNSUPPORTED_EXTENSION = 110,
    KX_ALERT_UNRECOGNIZED_NAME = 112,
    KX_ALERT_BAD_CERTIFICATE_STATUS_RESPONSE = 113,
    KX_ALERT_UNKNOWN_PSK_IDENTITY = 115,
    KX_ALERT_CERTIFICATE_REQUIRED = 116,
    KX_ALERT_NO_APPLICATION_PROTOCOL = 120,
};

/* "handshake_failure" etc.; "unknown(N)" style names are not needed: every
 * value we send is in the table, and a received unknown value prints its number. */
const char *kx_alert_name(uint8_t alert);

#endif
