#include "handshake/extensions.h"

/* RFC 8446 §4.2 table: where each extension may appear.  TLS 1.2-only
 * extensions (ec_point_formats, EMS, session_ticket, renegotiation_info,
 * encrypt_then_mac) may appear in a ClientHello and a TLS 1.2 ServerHello. */
static const struct {
    uint16_t type;
    const char *name;
    uint8_t allowed; /* kx_ext_msg bits */
} ext_table[KX_EXT_COUNT] = {
    [KX_EXT_SERVER_NAME] = { KX_EXT_TYPE_SERVER_NAME, "server_name", KX_IN_CH | KX_IN_EE | KX_IN_SH12 },
    [KX_EXT_STATUS_REQUEST] = { KX_EXT_TYPE_STATUS_REQUEST, "status_request", KX_IN_CH | KX_IN_CR | KX_IN_CT | KX_IN_SH12 },
    [KX_EXT_SUPPORTED_GROUPS] = { KX_EXT_TYPE_SUPPORTED_GROUPS, "supported_groups", KX_IN_CH | KX_IN_EE },
    [KX_EXT_EC_POINT_FORMATS] = { KX_EXT_TYPE_EC_POINT_FORMATS, "ec_point_formats", KX_IN_CH | KX_IN_SH12 },
    [KX_EXT_SIGNATURE_ALGORITHMS] = { KX_EXT_TYPE_SIGNATURE_ALGORITHMS, "signature_algorithms", KX_IN_CH | KX_IN_CR },
    [KX_EXT_ALPN] = { KX_EXT_TYPE_ALPN, "application_layer_protocol_negotiation", KX_IN_CH | KX_IN_EE | KX_IN_SH12 },
    [KX_EXT_SCT] = { KX_EXT_TYPE_SCT, "signed_certificate_timestamp", KX_IN_CH | KX_IN_CR | KX_IN_CT },
    [KX_EXT_PADDING] = { KX_EXT_TYPE_PADDING, "padding", KX_IN_CH },
    [KX_EXT_ENCRYPT_THEN_MAC] = { KX_EXT_TYPE_ENCRYPT_THEN_MAC, "encrypt_then_mac", KX_IN_CH | KX_IN_SH12 },
    [KX_EXT_EXTENDED_MASTER_SECRET] = { KX_EXT_TYPE_EXTENDED_MASTER_SECRET, "extended_master_secret", KX_IN_CH | KX_IN_SH12 },
    [KX_EXT_SESSION_TICKET] = { KX_EXT_TYPE_SESSION_TICKET, "session_ticket", KX_IN_CH | KX_IN_SH12 },
    [KX_EXT_PRE_SHARED_KEY] = { KX_EXT_TYPE_PRE_SHARED_KEY, "pre_shared_key", KX_IN_CH | KX_IN_SH },
    [KX_EXT_EARLY_DATA] = { KX_EXT_TYPE_EARLY_DATA, "early_data", KX_IN_CH | KX_IN_EE | KX_IN_NST },
    [KX_EXT_SUPPORTED_VERSIONS] = { KX_EXT_TYPE_SUPPORTED_VERSIONS, "supported_versions", KX_IN_CH | KX_IN_SH | KX_IN_HRR },
    [KX_EXT_COOKIE] = { KX_EXT_TYPE_COOKIE, "cookie", KX_IN_CH | KX_IN_HRR },
    [KX_EXT_PSK_KEY_EXCHANGE_MODES] = { KX_EXT_TYPE_PSK_KEY_EXCHANGE_MODES, "psk_key_exchange_modes", KX_IN_CH },
    [KX_EXT_CERTIFICATE_AUTHORITIES] = { KX_EXT_TYPE_CERTIFICATE_AUTHORITIES, "certificate_authorities", KX_IN_CH | KX_IN_CR },
    [KX_EXT_SIGNATURE_ALGORITHMS_CERT] = { KX_EXT_TYPE_SIGNATURE_ALGORITHMS_CERT, "signature_algorithms_cert", KX_IN_CH | KX_IN_CR },
    [KX_EXT_KEY_SHARE] = { KX_EXT_TYPE_KEY_SHARE, "key_share", KX_IN_CH | KX_IN_SH | KX_IN_HRR },
    [KX_EXT_RENEGOTIATION_INFO] = { KX_EXT_TYPE_RENEGOTIATION_INFO, "renegotiation_info", KX_IN_CH | KX_IN_SH12 },
    /* RFC 8449 §4: ClientHello, EncryptedExtensions (TLS 1.3), ServerHello (TLS 1.2). */
    [KX_EXT_RECORD_SIZE_LIMIT] = { KX_EXT_TYPE_RECORD_SIZE_LIMIT, "record_size_limit", KX_IN_CH | KX_IN_EE | KX_IN_SH12 },
};

uint16_t kx_ext_type(kx_ext i) { return ext_table[i].type; }
const char *kx_ext_name(kx_ext i) { return ext_table[i].name; }

static int ext_index(uint16_t type)
{
    for (int i = 0; i < KX_EXT_COUNT; i++)
        if (ext_table[i].type == type) return i;
    return -1;
}

kx_result kx_exts_parse(kx_reader *block, kx_ext_msg msg, uint32_t offered, kx_exts *out)
{
    *out = (kx_exts){ 0 };
    /* Requests may carry anything; responses only what was requested. */
    bool is_request = msg == KX_IN_CH || msg == KX_IN_CR || msg == KX_IN_NST;
    while (kx_reader_left(block) > 0) {
        uint16_t type;
        kx_reader data;
        size_t start = block->off;
        KX_GUARD(kx_read_u16(block, &type));
        KX_GUARD(kx_read_vec(block, 2, 0, 65535, &data));
        int i = ext_index(type);
        out->psk_last = false; /* only true while pre_shared_key is the last one seen */
        if (i < 0) {
            KX_ENSURE(is_request, KX_ALERT_UNSUPPORTED_EXTENSION, "peer sent an extension we did not offer");
            continue;
        }
        uint32_t bit = 1u << i;
        KX_ENSURE(!(out->present & bit), KX_ALERT_ILLEGAL_PARAMETER, "duplicate extension");
        /* RFC 8446 §4.2: a recognised extension in a message that may not
         * carry it is illegal_parameter, in requests (CertificateRequest,
         * NewSessionTicket) as much as in responses; only unknown ones are
         * ignored. */
        KX_ENSURE(ext_table[i].allowed & msg, KX_ALERT_ILLEGAL_PARAMETER, "extension not allowed in this message");
        if (!is_request)
            KX_ENSURE((offered & bit) || i == KX_EXT_RENEGOTIATION_INFO, KX_ALERT_UNSUPPORTED_EXTENSION,
                      "peer sent an extension we did not offer");
        out->present |= bit;
        out->data[i] = data;
        if (i == KX_EXT_PRE_SHARED_KEY) out->psk_offset = start;
        out->psk_last = (i == KX_EXT_PRE_SHARED_KEY);
    }
    return KX_OK;
}

kx_result kx_read_u16_list_kept(kx_reader list, kx_u16_keep_fn keep, const void *arg, uint16_t *out, size_t cap,
                                size_t *count)
{
    KX_ENSURE(list.len >= 2 && list.len % 2 == 0, KX_ALERT_DECODE_ERROR, "malformed list of code points");
    *count = 0;
    while (kx_reader_left(&list)) {
        uint16_t v;
        KX_GUARD(kx_read_u16(&list, &v));
        if (!keep(v, arg)) continue;
        bool dup = false;
        for (size_t i = 0; i < *count && !dup; i++) dup = out[i] == v;
        if (dup) continue;
        KX_ENSURE(*count < cap, KX_ALERT_INTERNAL_ERROR, "more supported code points than room for them");
        out[(*count)++] = v;
    }
    return KX_OK;
}

/* ---- record_size_limit (RFC 8449; issue 9, helper rsl) ---- */
kx_result kx_rsl_parse(kx_reader d, uint16_t *value)
{
    KX_ENSURE(d.len == 2, KX_ALERT_DECODE_ERROR, "record_size_limit is not exactly one uint16");
    KX_GUARD(kx_read_u16(&d, value));
    KX_ENSURE(*value >= KX_RSL_MIN, KX_ALERT_ILLEGAL_PARAMETER, "record_size_limit below 64 (RFC 8449 §4)");
    return KX_OK;
}

uint16_t kx_rsl_wire(uint16_t value, uint16_t version)
{
    uint16_t max = version == 0x0304 ? KX_RSL_MAX13 : KX_RSL_MAX12;
    return value > max ? max : value;
}

uint16_t kx_rsl_plain(uint16_t value, uint16_t version)
{
    if (version == 0x0304) return (uint16_t)(kx_rsl_wire(value, version) - 1);
    return kx_rsl_wire(value, version);
}
