/* Sessions for resumption: what a client keeps (ticket or session ID plus the
 * secret) and what a server keeps (the session-ID cache) or seals into a
 * ticket (RFC 5077 / RFC 8446 §4.6.1).  Tickets are AEAD-protected under a
 * named key; keys rotate and may come from a file shared by several servers. */
#ifndef KX_SESSION_SESSION_H
#define KX_SESSION_SESSION_H

#include "core/buf.h"
#include "crypto/crypto.h"
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#define KX_SESSION_MAX_TICKET 2048
#define KX_TICKET_KEY_NAME 16
#define KX_TICKET_KEYS 3  /* current + previous ones still accepted */

typedef struct {
    uint16_t version;
    uint16_t suite;
    uint8_t secret[48];        /* TLS 1.2 master secret, or TLS 1.3 resumption PSK */
    uint8_t secret_len;
    bool ems;                  /* TLS 1.2: the session used the extended master secret */
    uint8_t session_id[32];
    uint8_t session_id_len;
    uint64_t issued_ms;        /* when the ticket/session was issued (server) or received (client) */
    uint32_t lifetime;         /* seconds */
    uint32_t age_add;          /* TLS 1.3 obfuscation */
    uint16_t ticket_len;
    uint8_t ticket[KX_SESSION_MAX_TICKET];
    char alpn[64];
    char peer_subject[160];
} kx_session;

typedef struct {
    uint8_t name[KX_TICKET_KEY_NAME];
    uint8_t key[32];           /* AES-256-GCM */
    uint64_t created_ms;
    bool in_use;
} kx_ticket_key;

/* A bounded LRU cache of TLS 1.2 sessions by session ID.  Its entries are
 * allocated by the first put (a new cache costs a few dozen bytes). */
typedef struct kx_session_cache kx_session_cache;

kx_session_cache *kx_session_cache_new(size_t entries, uint32_t lifetime_s);
/* Whether the entries exist yet (tests: the allocation is deferred to first use). */
bool kx_session_cache_allocated(kx_session_cache *sc);
/* Entries held now (expired ones not yet evicted count) and the capacity. */
void kx_session_cache_count(kx_session_cache *sc, size_t *entries, size_t *capacity);
/* Put src's live entries into dst (most recently used kept when dst is smaller). */
void kx_session_cache_copy(kx_session_cache *dst, kx_session_cache *src);
void kx_session_cache_free(kx_session_cache *sc);
void kx_session_cache_put(kx_session_cache *sc, const kx_session *s);
/* Copies the session out if found and fresh; returns true then. */
bool kx_session_cache_get(kx_session_cache *sc, const uint8_t *id, size_t idlen, kx_session *out);

uint64_t kx_now_ms(void);
void kx_session_wipe(kx_session *s);

/* Client-side serialisation (for --sess-out / --sess-in). */
KX_RESULT kx_session_encode(const kx_session *s, kx_buf *out);
KX_RESULT kx_session_decode(const uint8_t *data, size_t len, kx_session *s);

/* The ticket keys of one configuration: [0] seals, all open. */
typedef struct {
    kx_ticket_key keys[KX_TICKET_KEYS];
    uint32_t rotate_s;         /* 0 = never (keys from a file are rotated by the operator) */
    bool from_files;           /* keys came from ticket key files: no random schedule */
    pthread_mutex_t lock;
} kx_ticket_keys;

void kx_ticket_keys_init(kx_ticket_keys *tk, uint32_t rotate_s);
void kx_ticket_keys_free(kx_ticket_keys *tk);
/* A key from a shared file (stops the random schedule). */
void kx_ticket_keys_add(kx_ticket_keys *tk, const kx_ticket_key *k);
/* dst takes src's keys (not when dst's keys come from files: those are the files'). */
void kx_ticket_keys_copy(kx_ticket_keys *dst, kx_ticket_keys *src);
/* Keys that open tickets now, and the age of the sealing one (ms; 0 when none). */
void kx_ticket_keys_info(kx_ticket_keys *tk, unsigned *keys, uint64_t *sealing_age_ms);
/* Names, ages (ms) and which one seals ([0]) of the keys in use; returns how many (up to max). */
size_t kx_ticket_keys_list(kx_ticket_keys *tk, uint8_t (*names)[KX_TICKET_KEY_NAME], uint64_t *age_ms, size_t max);
/* The random keys' schedule (0 = never: the sealing key is kept until rotated by hand). */
bool kx_ticket_keys_set_rotation(kx_ticket_keys *tk, uint32_t rotate_s); /* false: keys are from files */
/* Start sealing with a fresh random key; the previous ones still open. */
KX_RESULT kx_ticket_keys_rotate(kx_ticket_keys *tk);
/* Seal a session into a ticket under the current key (rotating first when due). */
KX_RESULT kx_ticket_seal(kx_ticket_keys *tk, const kx_session *s, kx_buf *ticket);
/* Open a ticket; false if the key is unknown (rotated out), the tag fails,
 * or the session expired: the caller falls back to a full handshake. */
bool kx_ticket_open(kx_ticket_keys *tk, const uint8_t *ticket, size_t len, kx_session *out);

#endif
