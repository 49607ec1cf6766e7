#include "keysched/tls12.h"
#include "core/wipe.h"
#include <string.h>

kx_result kx_tls12_master_secret(const kx_suite *suite, const uint8_t *pms, size_t pmslen, const uint8_t *session_hash,
                                 const uint8_t client_random[32], const uint8_t server_random[32],
                                 uint8_t master[KX_TLS12_MASTER])
{
    if (session_hash)
        return kx_tls12_prf(suite->hash, pms, pmslen, "extended master secret", session_hash,
                            kx_hash_len(suite->hash), master, KX_TLS12_MASTER);
    uint8_t seed[64];
    memcpy(seed, client_random, 32);
    memcpy(seed + 32, server_random, 32);
    return kx_tls12_prf(suite->hash, pms, pmslen, "master secret", seed, sizeof seed, master, KX_TLS12_MASTER);
}

kx_result kx_tls12_key_block(const kx_suite *suite, const uint8_t master[KX_TLS12_MASTER],
                             const uint8_t client_random[32], const uint8_t server_random[32], kx_tls12_keys *out)
{
    uint8_t seed[64], block[2 * KX_MAX_KEY + 2 * KX_AEAD_NONCE];
    memcpy(seed, server_random, 32);
    memcpy(seed + 32, client_random, 32);
    size_t k = suite->key_len, iv = suite->fixed_iv_len;
    KX_GUARD(kx_tls12_prf(suite->hash, master, KX_TLS12_MASTER, "key expansion", seed, sizeof seed, block, 2 * k + 2 * iv));
    memset(out, 0, sizeof *out);
    memcpy(out->client_key, block, k);
    memcpy(out->server_key, block + k, k);
    memcpy(out->client_iv, block + 2 * k, iv);
    memcpy(out->server_iv, block + 2 * k + iv, iv);
    kx_wipe(block, sizeof block);
    return KX_OK;
}

kx_result kx_tls12_finished(const kx_suite *suite, const uint8_t master[KX_TLS12_MASTER], int client,
                            const uint8_t *th, uint8_t out[KX_TLS12_VERIFY])
{
    return kx_tls12_prf(suite->hash, master, KX_TLS12_MASTER, client ? "client finished" : "server finished", th,
                        kx_hash_len(suite->hash), out, KX_TLS12_VERIFY);
}
