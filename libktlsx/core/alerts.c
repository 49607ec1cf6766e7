#include "core/result.h"
#include <ktlsx/ktlsx.h>

const char *kx_alert_name(uint8_t alert)
{
    switch (alert) {
    case KX_ALERT_CLOSE_NOTIFY: return "close_notify";
    case KX_ALERT_UNEXPECTED_MESSAGE: return "unexpected_message";
    case KX_ALERT_BAD_RECORD_MAC: return "bad_record_mac";
    case KX_ALERT_RECORD_OVERFLOW: return "record_overflow";
    case KX_ALERT_HANDSHAKE_FAILURE: return "handshake_failure";
    case KX_ALERT_BAD_CERTIFICATE: return "bad_certificate";
    case KX_ALERT_UNSUPPORTED_CERTIFICATE: return "unsupported_certificate";
    case KX_ALERT_CERTIFICATE_REVOKED: return "certificate_revoked";
    case KX_ALERT_CERTIFICATE_EXPIRED: return "certificate_expired";
    case KX_ALERT_CERTIFICATE_UNKNOWN: return "certificate_unknown";
    case KX_ALERT_ILLEGAL_PARAMETER: return "illegal_parameter";
    case KX_ALERT_UNKNOWN_CA: return "unknown_ca";
    case KX_ALERT_ACCESS_DENIED: return "access_denied";
    case KX_ALERT_DECODE_ERROR: return "decode_error";
    case KX_ALERT_DECRYPT_ERROR: return "decrypt_error";
    case KX_ALERT_PROTOCOL_VERSION: return "protocol_version";
    case KX_ALERT_INSUFFICIENT_SECURITY: return "insufficient_security";
    case KX_ALERT_INTERNAL_ERROR: return "internal_error";
    case KX_ALERT_INAPPROPRIATE_FALLBACK: return "inappropriate_fallback";
    case KX_ALERT_USER_CANCELED: return "user_canceled";
    case KX_ALERT_NO_RENEGOTIATION: return "no_renegotiation";
    case KX_ALERT_MISSING_EXTENSION: return "missing_extension";
    case KX_ALERT_UNSUPPORTED_EXTENSION: return "unsupported_extension";
    case KX_ALERT_UNRECOGNIZED_NAME: return "unrecognized_name";
    case KX_ALERT_BAD_CERTIFICATE_STATUS_RESPONSE: return "bad_certificate_status_response";
    case KX_ALERT_UNKNOWN_PSK_IDENTITY: return "unknown_psk_identity";
    case KX_ALERT_CERTIFICATE_REQUIRED: return "certificate_required";
    case KX_ALERT_NO_APPLICATION_PROTOCOL: return "no_application_protocol";
    default: return "unknown";
    }
}

const char *ktlsx_alert_name(uint8_t alert) { return kx_alert_name(alert); }
