/* TLS 1.3 key schedule (RFC 8446 §7.1), as a small state object the
 * handshake advances stage by stage.  All secrets are wiped by
 * kx_tls13_ks_wipe (and when superseded). */
#ifndef KX_TLS13_KEY_SCHEDULE_H
#define KX_TLS13_KEY_SCHEDULE_H

#include "crypto/crypto.h"

typedef struct {
    kx_hash_id hash;
    size_t hlen;
    uint8_t early[KX_MAX_HASH];      /* Early Secret */
    uint8_t handshake[KX_MAX_HASH];  /* Handshake Secret */
    uint8_t master[KX_MAX_HASH];     /* Master Secret */
    uint8_t c_hs[KX_MAX_HASH];       /* client_handshake_traffic_secret */
    uint8_t s_hs[KX_MAX_HASH];       /* server_handshake_traffic_secret */
    uint8_t c_ap[KX_MAX_HASH];       /* client_application_traffic_secret_0 (then _N) */
    uint8_t s_ap[KX_MAX_HASH];       /* server_application_traffic_secret_0 (then _N) */
    uint8_t exporter[KX_MAX_HASH];   /* exporter_master_secret */
    uint8_t resumption[KX_MAX_HASH]; /* resumption_master_secret */
    int no_psk;                      /* early is the no-PSK constant: its "derived" salt is known too */
} kx_tls13_ks;

/* Early Secret = HKDF-Extract(0, PSK); psk NULL means no PSK (hlen zeros). */
KX_RESULT kx_tls13_ks_early(kx_tls13_ks *ks, kx_hash_id hash, const uint8_t *psk, size_t psklen);
/* binder_key = Derive-Secret(Early, "ext binder" | "res binder", ""). */
KX_RESULT kx_tls13_ks_binder_key(const kx_tls13_ks *ks, int external, uint8_t *out);
/* Handshake Secret from the (EC)DHE secret (NULL/0 for psk_ke: zeros), then
 * c_hs / s_hs with th = Transcript-Hash(ClientHello..ServerHello). */
KX_RESULT kx_tls13_ks_handshake(kx_tls13_ks *ks, const uint8_t *ecdhe, size_t ecdhelen, const uint8_t *th);
/* Master Secret, then c_ap / s_ap / exporter with th = Hash(ClientHello..server Finished). */
KX_RESULT kx_tls13_ks_master(kx_tls13_ks *ks, const uint8_t *th);
/* resumption_master_secret with th = Hash(ClientHello..client Finished). */
KX_RESULT kx_tls13_ks_resumption(kx_tls13_ks *ks, const uint8_t *th);
void kx_tls13_ks_wipe(kx_tls13_ks *ks);

/* [sender]_write_key / _iv from a traffic secret (key_len per suite, iv 12). */
KX_RESULT kx_tls13_traffic_keys(kx_hash_id hash, const uint8_t *secret, size_t key_len,
                                uint8_t *key, uint8_t iv[12]);
/* verify_data = HMAC(HKDF-Expand-Label(base_key, "finished", "", Hash.length), th). */
KX_RESULT kx_tls13_finished(kx_hash_id hash, const uint8_t *base_key, const uint8_t *th, uint8_t *out);
/* secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length), in place. */
KX_RESULT kx_tls13_next_traffic_secret(kx_hash_id hash, uint8_t *secret);
/* PSK for a ticket: HKDF-Expand-Label(resumption_master_secret, "resumption", nonce, Hash.length). */
KX_RESULT kx_tls13_ticket_psk(kx_hash_id hash, const uint8_t *resumption, const uint8_t *nonce,
                              size_t noncelen, uint8_t *out);

#endif
