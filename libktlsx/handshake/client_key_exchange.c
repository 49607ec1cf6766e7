/* ClientKeyExchange (TLS 1.2 only; RFC 5246 §7.4.7, RFC 8422 §5.7): the
 * client's ECDH share (or an RSA-encrypted pre-master secret when legacy RSA
 * key transport is allowed), and the key derivation it completes:
 * pre-master -> master secret (EMS: over the session hash) -> key block. */
#include "handshake/conn.h"
#include "core/wipe.h"
#include <string.h>

static kx_result tls12_derive_keys(ktlsx_conn *c, const uint8_t *pms, size_t pmslen)
{
    uint8_t session_hash[KX_MAX_HASH];
    /* RFC 7627 §3: the session hash covers the handshake up to and including ClientKeyExchange. */
    if (c->ems) KX_GUARD(kx_transcript_hash(&c->transcript, session_hash));
    KX_GUARD(kx_tls12_master_secret(c->suite, pms, pmslen, c->ems ? session_hash : NULL, c->client_random,
                                    c->server_random, c->master));
    kx_keylog(c, "CLIENT_RANDOM", c->master, KX_TLS12_MASTER);
    return kx_tls12_key_block(c->suite, c->master, c->client_random, c->server_random, &c->keys12);
}

static kx_result rsa_premaster_write(ktlsx_conn *c)
{
    /* RFC 5246 §7.4.7.1: client_version || 46 random bytes, RSA-encrypted to the server. */
    uint8_t pms[48];
    pms[0] = 0x03;
    pms[1] = 0x03;
    KX_GUARD(kx_random(pms + 2, 46));
    size_t v;
    kx_result r = kx_vec_open(&c->hs_out, 2, &v);
    if (!kx_failed(r)) r = kx_rsa_encrypt(c->peer_key, pms, sizeof pms, &c->hs_out);
    if (!kx_failed(r)) r = kx_vec_close(&c->hs_out, 2, v);
    memcpy(c->ecdhe, pms, sizeof pms);
    c->ecdhe_len = sizeof pms;
    kx_wipe(pms, sizeof pms);
    return r;
}

kx_result kx_client_key_exchange_write(ktlsx_conn *c)
{
    size_t msg;
    KX_GUARD(kx_hs_begin(c, KX_HS_CLIENT_KEY_EXCHANGE, &msg));
    if (c->suite->kex == KX_KX_RSA) KX_GUARD(rsa_premaster_write(c));
    else KX_GUARD(kx_write_vec(&c->hs_out, 1, c->kex_pub.data, c->kex_pub.len));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, true, "ClientKeyExchange%s", c->suite->kex == KX_KX_RSA ? " rsa" : "");
    kx_result r = tls12_derive_keys(c, c->ecdhe, c->ecdhe_len);
    kx_wipe(c->ecdhe, sizeof c->ecdhe);
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    return r;
}

kx_result kx_client_key_exchange_handle(ktlsx_conn *c, kx_reader *body)
{
    uint8_t pms[80];
    size_t pmslen = sizeof pms;
    if (c->suite->kex == KX_KX_RSA) {
        kx_reader enc;
        KX_GUARD(kx_read_vec(body, 2, 1, 65535, &enc));
        /* Never fails on a bad pre-master: a random one is substituted in constant
         * time, so the Finished check fails later, identically (no Bleichenbacher oracle). */
        KX_GUARD(kx_rsa_decrypt_premaster(c->our_cert->key, enc.data, enc.len, 0x0303, pms));
        pmslen = 48;
    } else {
        kx_reader point;
        KX_GUARD(kx_read_vec(body, 1, 1, 255, &point));
        KX_GUARD(kx_kex_derive(c->group, c->kex_key, point.data, point.len, pms, &pmslen));
    }
    kx_trace(c, true, "ClientKeyExchange%s", c->suite->kex == KX_KX_RSA ? " rsa" : "");
    kx_result r = tls12_derive_keys(c, pms, pmslen);
    kx_wipe(pms, sizeof pms);
    EVP_PKEY_free(c->kex_key);
    c->kex_key = NULL;
    return r;
}
