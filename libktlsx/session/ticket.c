/* Session tickets (RFC 5077 §4's recommended shape): the session sealed
 * with AES-256-GCM under a named key, so any server holding the key opens it
 * and no server keeps state.  Keys rotate on a schedule (random keys) or are
 * loaded from files shared by several servers (nginx's layout) and rotated
 * by the operator; KX_TICKET_KEYS of them open, the first seals. */
#include "session/session.h"
#include "core/wipe.h"
#include <stdlib.h>
#include <string.h>

void kx_ticket_keys_init(kx_ticket_keys *tk, uint32_t rotate_s)
{
    memset(tk, 0, sizeof *tk);
    pthread_mutex_init(&tk->lock, NULL);
    tk->rotate_s = rotate_s;
}

void kx_ticket_keys_free(kx_ticket_keys *tk)
{
    kx_wipe(tk->keys, sizeof tk->keys);
    pthread_mutex_destroy(&tk->lock);
}

void kx_ticket_keys_add(kx_ticket_keys *tk, const kx_ticket_key *k)
{
    pthread_mutex_lock(&tk->lock);
    /* File keys: the operator rotates them; the first file loaded seals. */
    size_t slot = 0;
    while (slot < KX_TICKET_KEYS && tk->keys[slot].in_use && tk->rotate_s == 0) slot++;
    if (slot == KX_TICKET_KEYS) slot = KX_TICKET_KEYS - 1;
    if (tk->rotate_s) kx_wipe(tk->keys, sizeof tk->keys); /* random keys give way */
    tk->keys[slot] = *k;
    tk->keys[slot].in_use = true;
    tk->rotate_s = 0;
    tk->from_files = true;
    pthread_mutex_unlock(&tk->lock);
}

void kx_ticket_keys_info(kx_ticket_keys *tk, unsigned *keys, uint64_t *sealing_age_ms)
{
    pthread_mutex_lock(&tk->lock);
    *keys = 0;
    for (size_t i = 0; i < KX_TICKET_KEYS; i++) *keys += tk->keys[i].in_use;
    uint64_t now = kx_now_ms();
    *sealing_age_ms = tk->keys[0].in_use && tk->keys[0].created_ms && now > tk->keys[0].created_ms
                          ? now - tk->keys[0].created_ms : 0;
    pthread_mutex_unlock(&tk->lock);
}

size_t kx_ticket_keys_list(kx_ticket_keys *tk, uint8_t (*names)[KX_TICKET_KEY_NAME], uint64_t *age_ms, size_t max)
{
    size_t n = 0;
    uint64_t now = kx_now_ms();
    pthread_mutex_lock(&tk->lock);
    for (size_t i = 0; i < KX_TICKET_KEYS; i++) {
        const kx_ticket_key *k = &tk->keys[i];
        if (!k->in_use) continue;
        if (n < max) {
            memcpy(names[n], k->name, KX_TICKET_KEY_NAME);
            age_ms[n] = k->created_ms && now > k->created_ms ? now - k->created_ms : 0;
        }
        n++;
    }
    pthread_mutex_unlock(&tk->lock);
    return n;
}

bool kx_ticket_keys_set_rotation(kx_ticket_keys *tk, uint32_t rotate_s)
{
    pthread_mutex_lock(&tk->lock);
    bool ok = !tk->from_files;
    if (ok) tk->rotate_s = rotate_s;
    pthread_mutex_unlock(&tk->lock);
    return ok;
}

void kx_ticket_keys_copy(kx_ticket_keys *dst, kx_ticket_keys *src)
{
    if (dst == src) return;
    kx_ticket_key keys[KX_TICKET_KEYS];
    pthread_mutex_lock(&src->lock);
    /* src seals lazily: without a key yet, it would make one after the copy
     * (a handshake still running on it), sealing tickets dst cannot open. */
    if (!src->keys[0].in_use && !src->from_files) {
        kx_ticket_key *k = &src->keys[0];
        if (!kx_failed(kx_random(k->name, sizeof k->name)) && !kx_failed(kx_random(k->key, sizeof k->key))) {
            k->created_ms = kx_now_ms();
            k->in_use = true;
        }
    }
    memcpy(keys, src->keys, sizeof keys);
    pthread_mutex_unlock(&src->lock);
    pthread_mutex_lock(&dst->lock);
    if (!dst->from_files) memcpy(dst->keys, keys, sizeof keys);
    pthread_mutex_unlock(&dst->lock);
    kx_wipe(keys, sizeof keys);
}

kx_result kx_ticket_keys_rotate(kx_ticket_keys *tk)
{
    pthread_mutex_lock(&tk->lock);
    memmove(&tk->keys[1], &tk->keys[0], (KX_TICKET_KEYS - 1) * sizeof tk->keys[0]);
    kx_ticket_key *k = &tk->keys[0];
    kx_result r = kx_random(k->name, sizeof k->name);
    if (!kx_failed(r)) r = kx_random(k->key, sizeof k->key);
    k->in_use = !kx_failed(r);
    k->created_ms = kx_now_ms();
    pthread_mutex_unlock(&tk->lock);
    return r;
}

/* ---- tickets: key_name(16) || nonce(12) || AES-256-GCM(session) || tag(16), AAD = key_name ---- */

/* The current sealing key, rotating it when it is older than the schedule. */
static kx_result current_key(kx_ticket_keys *tk, kx_ticket_key *out)
{
    kx_result r = KX_OK;
    pthread_mutex_lock(&tk->lock);
    uint64_t now = kx_now_ms();
    kx_ticket_key *k = &tk->keys[0];
    if (!k->in_use || (tk->rotate_s && now - k->created_ms > (uint64_t)tk->rotate_s * 1000u)) {
        memmove(&tk->keys[1], &tk->keys[0], (KX_TICKET_KEYS - 1) * sizeof *k);
        r = kx_random(k->name, sizeof k->name);
        if (!kx_failed(r)) r = kx_random(k->key, sizeof k->key);
        k->created_ms = now;
        k->in_use = !kx_failed(r);
    }
    *out = *k;
    pthread_mutex_unlock(&tk->lock);
    return r;
}

kx_result kx_ticket_seal(kx_ticket_keys *tk, const kx_session *s, kx_buf *ticket)
{
    kx_ticket_key key = { 0 };
    kx_buf plain = { 0 };
    kx_aead *aead = NULL;
    uint8_t nonce[KX_AEAD_NONCE], *out;
    /* One exit: current_key copies the key out even when it fails, and it must be wiped. */
    kx_result r = current_key(tk, &key);
    if (!kx_failed(r)) r = kx_random(nonce, sizeof nonce);
    if (!kx_failed(r)) r = kx_session_encode(s, &plain);
    if (!kx_failed(r)) r = kx_aead_new(&aead, KX_AEAD_AES_256_GCM, key.key, sizeof key.key);
    if (!kx_failed(r)) r = kx_write_bytes(ticket, key.name, sizeof key.name);
    if (!kx_failed(r)) r = kx_write_bytes(ticket, nonce, sizeof nonce);
    if (!kx_failed(r)) r = kx_write_space(ticket, plain.len + KX_AEAD_TAG, &out);
    if (!kx_failed(r)) r = kx_aead_seal(aead, nonce, key.name, sizeof key.name, plain.data, plain.len, out);
    kx_aead_free(aead);
    kx_buf_free(&plain);
    kx_wipe_obj(key);
    return r;
}

bool kx_ticket_open(kx_ticket_keys *tk, const uint8_t *t, size_t len, kx_session *out)
{
    if (len < KX_TICKET_KEY_NAME + KX_AEAD_NONCE + KX_AEAD_TAG + 8) return false;
    kx_ticket_key key = { 0 };
    bool found = false;
    pthread_mutex_lock(&tk->lock);
    for (size_t i = 0; i < KX_TICKET_KEYS && !found; i++) {
        if (tk->keys[i].in_use && memcmp(tk->keys[i].name, t, KX_TICKET_KEY_NAME) == 0) {
            key = tk->keys[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&tk->lock);
    if (!found) return false;
    size_t ct_len = len - KX_TICKET_KEY_NAME - KX_AEAD_NONCE;
    uint8_t *plain = malloc(ct_len);
    kx_aead *aead = NULL;
    bool ok = plain != NULL;
    ok = ok && !kx_failed(kx_aead_new(&aead, KX_AEAD_AES_256_GCM, key.key, sizeof key.key));
    ok = ok && !kx_failed(kx_aead_open(aead, t + KX_TICKET_KEY_NAME, t, KX_TICKET_KEY_NAME,
                                       t + KX_TICKET_KEY_NAME + KX_AEAD_NONCE, ct_len, plain));
    ok = ok && !kx_failed(kx_session_decode(plain, ct_len - KX_AEAD_TAG, out));
    ok = ok && kx_now_ms() - out->issued_ms <= (uint64_t)out->lifetime * 1000u;
    kx_aead_free(aead);
    if (plain) {
        kx_wipe(plain, ct_len);
        free(plain);
    }
    kx_wipe_obj(key);
    if (!ok) kx_session_wipe(out);
    return ok;
}
