/* EncryptedExtensions, as handled by a client that has written its
 * ClientHello (so sent_exts says what may come back; ALPN h2,http/1.1;
 * record_size_limit 1000).
 * Input: byte 0 selects the client config (bit 0: insecure / trust store),
 * the rest is the body. */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    ktlsx_config *cfg = data[0] & 1 ? fz_client_cfg_trust : fz_client_cfg_insecure;
    ktlsx_conn *c = ktlsx_conn_new(cfg, "localhost");
    if (!c) abort();
    /* What kx_client_hello_write records, without paying for a key share per input. */
    c->sent_exts = (1u << KX_EXT_SERVER_NAME) | (1u << KX_EXT_SUPPORTED_VERSIONS) | (1u << KX_EXT_SUPPORTED_GROUPS) |
                   (1u << KX_EXT_SIGNATURE_ALGORITHMS) | (1u << KX_EXT_KEY_SHARE) |
                   (1u << KX_EXT_PSK_KEY_EXCHANGE_MODES) | (1u << KX_EXT_ALPN);
    /* issue 9: a record_size_limit offered (value 1000), so its answer is parsed. */
    c->sent_exts |= 1u << KX_EXT_RECORD_SIZE_LIMIT;
    c->rsl_ours = 1000;
    c->version = KTLSX_TLS13;
    c->flow_pos = 3;
    fz_run_handler(c, kx_encrypted_extensions_handle, KX_HS_ENCRYPTED_EXTENSIONS, data + 1, size - 1, 1);
    if (!c->failed && c->alpn[0] && strlen(c->alpn) >= sizeof c->alpn) abort();
    /* An accepted record_size_limit is one RFC 8449 allows: never below 64, never over 2^14 per record. */
    if (!c->failed && c->rsl_negotiated && (c->rsl_peer < KX_RSL_MIN || c->tx.max_plain > KX_MAX_PLAINTEXT)) abort();
    ktlsx_conn_free(c);
    return 0;
}
