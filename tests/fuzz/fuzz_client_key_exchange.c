/* TLS 1.2 ClientKeyExchange (RFC 8422 §5.7, RFC 5246 §7.4.7), as handled by
 * a server that has sent its ServerKeyExchange (ECDHE) or, for the legacy
 * RSA key exchange, its RSA certificate.
 *
 * Input: byte 0 selects the mode, the rest is the data.
 *   mode & 3 == 0: ECDHE x25519: the rest is the ClientKeyExchange body
 *   mode & 3 == 1: ECDHE secp256r1
 *   mode & 3 == 2: ECDHE secp384r1
 *   mode & 3 == 3: RSA key exchange (TLS_RSA_WITH_AES_128_GCM_SHA256, RSA-2048
 *                  key generated at start-up): the rest is the body, which the
 *                  fuzzer cannot encrypt to our key, so this is the implicit
 *                  rejection path of kx_rsa_decrypt_premaster; with bit 3 set
 *                  the rest is instead a plaintext pre-master secret (up to 245
 *                  bytes) that the harness RSA-encrypts to the server key, so
 *                  that padding, length and version checks see real inputs.
 *   bit 2: extended master secret (session hash over the transcript)
 * The server keys (ECDHE) are generated once at start-up.  After a successful
 * ClientKeyExchange the client's ChangeCipherSpec is handled (key install). */
#include "fuzz_tls12.h"

static EVP_PKEY *kex_keys[3];
static const uint16_t groups[3] = { KX_GROUP_X25519, KX_GROUP_SECP256R1, KX_GROUP_SECP384R1 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz12_init();
    for (int i = 0; i < 3; i++) {
        kx_buf pub = { 0 };
        kx_result r = kx_kex_keygen(groups[i], &kex_keys[i], &pub);
        if (kx_failed(r)) fz_die("kex keygen", NULL);
        kx_buf_free(&pub);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KX_MAX_HANDSHAKE_MESSAGE) return 0;
    uint8_t mode = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    bool rsa = (mode & 3) == 3, ems = (mode >> 2) & 1;
    uint8_t *body = NULL;

    if (rsa && (mode & 8)) {
        /* vec2(RSAES-PKCS1-v1_5(server key, input)) */
        if (n > 245) return 0;
        kx_buf b = { 0 };
        size_t v;
        kx_result r = kx_vec_open(&b, 2, &v);
        if (!kx_failed(r)) r = kx_rsa_encrypt(fz12_rsa, in, n, &b);
        if (!kx_failed(r)) r = kx_vec_close(&b, 2, v);
        if (kx_failed(r)) {
            kx_buf_free(&b);
            return 0;
        }
        body = malloc(b.len);
        if (!body) abort();
        memcpy(body, b.data, b.len);
        n = b.len;
        in = body;
        kx_buf_free(&b);
    }

    ktlsx_conn *c;
    if (rsa) {
        c = fz12_conn(fz12_srv12, FZ12_RSA_AES128, ems);
        c->our_cert = &fz12_rsa_ck;
    } else {
        c = fz12_conn(fz_server_cfg, FZ12_ECDHE_ECDSA_AES128, ems);
        c->group = c->kex_group = groups[mode & 3];
        if (!EVP_PKEY_up_ref(kex_keys[mode & 3])) abort();
        c->kex_key = kex_keys[mode & 3];
        c->our_cert = &fz_server_cfg->certs[0];
    }
    fz12_flow_at(c, KX_MSG_CLIENT_KEY_EXCHANGE);
    if (c->flow[c->flow_pos] != KX_MSG_CLIENT_KEY_EXCHANGE) abort();

    fz_run_handler(c, kx_client_key_exchange_handle, KX_HS_CLIENT_KEY_EXCHANGE, in, n, 1);
    if (!c->failed) {
        if (c->kex_key) abort(); /* the ephemeral key is gone once used */
        c->flow_pos++;
        kx_result r = kx_change_cipher_spec_handle(c, NULL);
        if (kx_failed(r)) kx_conn_fail(c, r);
        fz_drain(c);
    }
    ktlsx_conn_free(c);
    free(body);
    return 0;
}
