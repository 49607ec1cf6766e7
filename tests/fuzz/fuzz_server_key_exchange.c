/* TLS 1.2 ServerKeyExchange (RFC 8422 §5.4), as handled by a client that has
 * the server's Certificate (c->peer_key) and fixed handshake randoms.
 *
 * Input: byte 0 selects the mode, the rest is the data.
 *   mode & 3 == 0: the rest is a ServerKeyExchange body; peer key = srv.pem (ECDSA P-256)
 *   mode & 3 == 1: the same with an RSA-2048 peer key (generated at start-up)
 *   mode & 3 == 2: signed params, ECDSA: the rest is
 *                    sigalg_hint(1) curve_type(1) group(2) point(...)
 *                  params = curve_type || group || point (u8 vector, truncated
 *                  to 255 bytes); the harness signs client_random ||
 *                  server_random || params with srv.key so that the signature
 *                  verifies and the fuzzer reaches the key exchange itself
 *                  (kx_kex_derive on its point)
 *   mode & 3 == 3: the same, signed with the RSA key (PKCS#1 / PSS by hint)
 *   bits 2-3: the suite (ECDHE_ECDSA / ECDHE_RSA, AES-128 / AES-256 (SHA-384 PRF))
 *   bit 4: extended master secret
 * After a successful ServerKeyExchange the client goes on as drive() would:
 * ServerHelloDone, ClientKeyExchange (key derivation), ChangeCipherSpec. */
#include "fuzz_tls12.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz12_init();
    return 0;
}

static const uint16_t suites[4] = { FZ12_ECDHE_ECDSA_AES128, FZ12_ECDHE_RSA_AES128, FZ12_ECDHE_ECDSA_AES256,
                                    FZ12_ECDHE_RSA_AES256 };
static const uint16_t rsa_sigalgs[] = { KX_SIG_RSA_PKCS1_SHA256, KX_SIG_RSA_PKCS1_SHA384, KX_SIG_RSA_PKCS1_SHA512,
                                        KX_SIG_RSA_PSS_RSAE_SHA256, KX_SIG_RSA_PSS_RSAE_SHA384,
                                        KX_SIG_RSA_PSS_RSAE_SHA512 };

/* Body = params || sigalg || u16 signature, signed with key; NULL if the
 * input is too short.  *len set. */
static uint8_t *signed_body(const uint8_t *in, size_t n, bool rsa, size_t *len)
{
    if (n < 4) return NULL;
    uint16_t sigalg = rsa ? rsa_sigalgs[in[0] % (sizeof rsa_sigalgs / sizeof rsa_sigalgs[0])]
                          : KX_SIG_ECDSA_SECP256R1_SHA256;
    size_t point_len = n - 4 > 255 ? 255 : n - 4;
    kx_buf b = { 0 }, content = { 0 };
    kx_result r = kx_write_u8(&b, in[1]);
    if (!kx_failed(r)) r = kx_write_bytes(&b, in + 2, 2);
    if (!kx_failed(r)) r = kx_write_vec(&b, 1, in + 4, point_len);
    size_t params_len = b.len, v;
    if (!kx_failed(r)) r = kx_write_bytes(&content, fz12_client_random, 32);
    if (!kx_failed(r)) r = kx_write_bytes(&content, fz12_server_random, 32);
    if (!kx_failed(r)) r = kx_write_bytes(&content, b.data, params_len);
    if (!kx_failed(r)) r = kx_write_u16(&b, sigalg);
    if (!kx_failed(r)) r = kx_vec_open(&b, 2, &v);
    if (!kx_failed(r)) r = kx_sign(sigalg, rsa ? fz12_rsa : fz12_ec, content.data, content.len, &b);
    if (!kx_failed(r)) r = kx_vec_close(&b, 2, v);
    kx_buf_free(&content);
    if (kx_failed(r)) {
        fprintf(stderr, "fuzz: cannot sign ServerKeyExchange params: %s\n", r.reason);
        abort();
    }
    uint8_t *out = malloc(b.len);
    if (!out) abort();
    memcpy(out, b.data, b.len);
    *len = b.len;
    kx_buf_free(&b);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    uint8_t mode = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    bool rsa = mode & 1, sign = mode & 2;

    uint8_t *signed_msg = NULL;
    if (sign) {
        signed_msg = signed_body(in, n, rsa, &n);
        if (!signed_msg) return 0;
        in = signed_msg;
    }

    ktlsx_conn *c = fz12_conn(fz_client_cfg_insecure, suites[(mode >> 2) & 3], (mode >> 4) & 1);
    EVP_PKEY *peer = rsa ? fz12_rsa : fz_server_pub;
    if (!EVP_PKEY_up_ref(peer)) abort();
    c->peer_key = peer;
    fz12_flow_at(c, KX_MSG_SERVER_KEY_EXCHANGE);
    if (c->flow[c->flow_pos] != KX_MSG_SERVER_KEY_EXCHANGE) abort();

    fz_run_handler(c, kx_server_key_exchange_handle, KX_HS_SERVER_KEY_EXCHANGE, in, n, 1);
    if (sign && n >= 4 && in[0] == 3 && !c->failed) {
        /* A verified signature must leave the state that the key exchange needs. */
        if (c->ecdhe_len == 0 || c->ecdhe_len > sizeof c->ecdhe || !c->kex_key || c->kex_pub.len == 0) abort();
    }
    if (!c->failed) {
        c->flow_pos++;
        fz_run_handler(c, kx_server_hello_done_handle, KX_HS_SERVER_HELLO_DONE, NULL, 0, 1);
        kx_result r = kx_client_key_exchange_write(c);
        if (!kx_failed(r)) r = kx_change_cipher_spec_write(c);
        if (kx_failed(r)) kx_conn_fail(c, r);
        fz_drain(c);
    }
    ktlsx_conn_free(c);
    free(signed_msg);
    return 0;
}
