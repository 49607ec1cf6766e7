/* TLS 1.2 key calculation (RFC 5246 §8.1, §6.3; RFC 7627): the path the
 * seed capture walks through: pre-master -> master secret -> key block. */
#ifndef KX_TLS12_KEY_SCHEDULE_H
#define KX_TLS12_KEY_SCHEDULE_H

#include "crypto/crypto.h"

#define KX_TLS12_MASTER 48
#define KX_TLS12_VERIFY 12

typedef struct {
    uint8_t client_key[KX_MAX_KEY], server_key[KX_MAX_KEY];
    uint8_t client_iv[KX_AEAD_NONCE], server_iv[KX_AEAD_NONCE];
} kx_tls12_keys;

/* master_secret = PRF(pre_master, "master secret", client_random + server_random), or with
 * EMS: PRF(pre_master, "extended master secret", session_hash). */
KX_RESULT kx_tls12_master_secret(const kx_suite *suite, const uint8_t *pms, size_t pmslen, const uint8_t *session_hash,
                                 const uint8_t client_random[32], const uint8_t server_random[32],
                                 uint8_t master[KX_TLS12_MASTER]);
/* key_block = PRF(master, "key expansion", server_random + client_random), split into
 * client/server write keys and IVs (no MAC keys: AEAD suites only). */
KX_RESULT kx_tls12_key_block(const kx_suite *suite, const uint8_t master[KX_TLS12_MASTER],
                             const uint8_t client_random[32], const uint8_t server_random[32], kx_tls12_keys *out);
/* verify_data = PRF(master, "client finished" | "server finished", Hash(handshake_messages))[0..11]. */
KX_RESULT kx_tls12_finished(const kx_suite *suite, const uint8_t master[KX_TLS12_MASTER], int client,
                            const uint8_t *th, uint8_t out[KX_TLS12_VERIFY]);

#endif
