/* Kernel TLS offload: hand the record layer of an established connection to
 * the Linux kernel (Documentation/networking/tls.rst).
 *
 * Order of operations after the handshake (engine fed exactly
 * ktlsx_input_wanted() bytes, so no application data sits in user space):
 *
 *   kx_ktls_enable_ulp(fd)            may fail: stay in user space, nothing changed
 *   kx_ktls_install_pair(fd, tx, rx)  == kx_ktls_install(TX) then kx_ktls_install(RX)
 *   wipe the exported keys            cannot fail
 *
 * RX goes last because installing it is the moment the kernel starts
 * consuming the incoming byte stream as records: once it has succeeded,
 * nothing that can fail may follow, since there is no way back to the
 * user-space record layer.  A failed TX install leaves the socket exactly
 * as before (the tls ULP without keys passes bytes through untouched), so
 * the caller can keep using the user-space record layer; a failed RX
 * install after a good TX install leaves the connection half-offloaded and
 * it must be closed (kx_ktls_install_pair says which case happened).
 *
 * TLS 1.3 KeyUpdate: call kx_ktls_install() again for the direction being
 * updated (Linux >= 6.14; kx_ktls_rekey_supported() tells).  The kernel
 * pauses decryption after it receives a KeyUpdate until TLS_RX is set
 * again; reads fail with EKEYEXPIRED meanwhile. */
#ifndef KX_KTLS_KTLS_H
#define KX_KTLS_KTLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/tls.h>

#include "ktlsx/ktlsx.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* issue 9: the largest plaintext per TX record (RFC 8449 record_size_limit),
 * a u16 of 64..16384 set after TLS_TX (include/uapi/linux/tls.h, value 5;
 * net-next October 2025, expected first in Linux 6.19).  TLS 1.3's content
 * type byte is not counted: pass the limit - 1. */
#ifndef TLS_TX_MAX_PAYLOAD_LEN
#define TLS_TX_MAX_PAYLOAD_LEN 5
#endif

/* The kernel-internal ENOTSUPP, which older kernels leak to user space
 * (e.g. for an unknown TLS version). */
#define KX_ENOTSUPP 524

/* ---- the suite table ---- */

/* One cipher suite's mapping onto a kernel tls12_crypto_info_* struct.
 * The offsets locate the fields inside that struct so one generic builder
 * serves every suite. */
typedef struct {
    uint16_t suite;        /* IANA cipher suite id */
    uint16_t version;      /* KTLSX_TLS12 / KTLSX_TLS13: the only version the suite exists in */
    uint16_t cipher_type;  /* TLS_CIPHER_* */
    const char *name;      /* "aes-128-gcm", "aes-256-gcm", "chacha20-poly1305", "aes-128-ccm" */
    const char *kernel_alg;/* crypto API name the kernel allocates, for error messages */
    uint8_t key_len;       /* key bytes */
    uint8_t salt_len;      /* salt bytes (0 for ChaCha20) */
    uint8_t iv_len;        /* crypto_info iv field bytes */
    uint8_t keys_iv_len;   /* expected ktlsx_traffic_keys.iv_len */
    uint16_t info_size;    /* sizeof the tls12_crypto_info_* struct */
    uint16_t off_iv, off_key, off_salt, off_rec_seq;
} kx_ktls_suite;

/* The suite for (version, IANA id), or NULL if it has no kernel mapping or
 * the id does not belong to that version. */
const kx_ktls_suite *kx_ktls_suite_find(uint16_t version, uint16_t suite);
/* Table iteration: entry i, or NULL past the end. */
const kx_ktls_suite *kx_ktls_suite_at(size_t i);

/* Big enough for any crypto_info this module builds. */
typedef union {
    struct tls_crypto_info info;
    struct tls12_crypto_info_aes_gcm_128 aes128;
    struct tls12_crypto_info_aes_gcm_256 aes256;
    struct tls12_crypto_info_chacha20_poly1305 chacha;
    struct tls12_crypto_info_aes_ccm_128 ccm128; /* conf-b: TLS 1.3 AES-128-CCM */
} kx_ktls_crypto_info;

/* Fill `out` for `keys`:
 *   TLS 1.3 AES-GCM, AES-128-CCM: salt = iv[0..3], iv = iv[4..11], rec_seq = seq (BE)
 *   TLS 1.2 AES-GCM: salt = iv[0..3] (implicit part), iv = the first
 *                    explicit nonce = seq (BE), rec_seq = seq (BE)
 *   ChaCha20 (1.2, 1.3): iv = iv[0..11], no salt, rec_seq = seq (BE)
 * Returns the struct size, or 0 with a reason in `why` (unknown suite,
 * version mismatch, wrong key/iv length).  `out` holds key material: the
 * caller wipes it. */
size_t kx_ktls_build_crypto_info(const struct ktlsx_traffic_keys *keys, kx_ktls_crypto_info *out,
                                 char *why, size_t whylen);

/* ---- setsockopt indirection (for tests) ---- */

typedef int (*kx_setsockopt_fn)(int fd, int level, int name, const void *val, socklen_t len);
/* Route every setsockopt of this module through `fn`; NULL restores the
 * real one.  Process-wide and unsynchronised: set it before any thread
 * uses this module (tests only). */
void kx_ktls_set_setsockopt(kx_setsockopt_fn fn);

/* ---- enabling ---- */

/* setsockopt(IPPROTO_TCP, TCP_ULP, "tls") on a connected TCP socket.
 * Returns 0 (also if the ULP was already attached) or -1 with the
 * actionable cause in `why` (may be NULL / 0). */
int kx_ktls_enable_ulp(int fd, char *why, size_t whylen);

/* Install one direction's keys (direction: KTLSX_TX or KTLSX_RX).  The
 * crypto_info lives on this function's stack and is wiped before return
 * whatever the outcome.  Returns 0 or -1 with `why`; errno is preserved
 * from setsockopt for callers that branch on it (EBUSY on a re-key the
 * kernel does not support). */
int kx_ktls_install(int fd, int direction, const struct ktlsx_traffic_keys *keys,
                    char *why, size_t whylen);

/* issue 9: setsockopt(SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, u16 len) on a socket
 * whose TX is already in the kernel (never before TLS_TX: the kernel reads
 * its TX context to answer).  Returns 0 or -1 with `why` and errno
 * (ENOPROTOOPT: a kernel before the option; EINVAL: out of 64..16384). */
int kx_ktls_set_tx_max_payload(int fd, uint16_t len, char *why, size_t whylen);

/* TX then RX (see the order rationale at the top).  Returns 0 on success;
 * -1 if TX failed (socket unchanged: fall back to user space);
 * -2 if RX failed after TX succeeded (connection unusable: close it). */
int kx_ktls_install_pair(int fd, const struct ktlsx_traffic_keys *tx,
                         const struct ktlsx_traffic_keys *rx, char *why, size_t whylen);

/* The messages used above, exposed so callers can explain an errno they got
 * from their own kTLS calls. */
const char *kx_ktls_ulp_strerror(int err);
const char *kx_ktls_install_strerror(int err);

/* ---- data path on a kTLS socket ---- */

/* One recvmsg: plaintext of a single record type into buf.  *record_type
 * gets that type (23 application data, 21 alert, 22 handshake); 0 at EOF.
 * Returns bytes received, 0 at EOF, -1 with errno (EINTR is retried;
 * EKEYEXPIRED = a KeyUpdate arrived and the new RX key must be installed;
 * EBADMSG = record failed authentication). */
ssize_t kx_ktls_recv_record(int fd, void *buf, size_t len, uint8_t *record_type, int flags);

/* sendmsg with a TLS_SET_RECORD_TYPE cmsg, so the kernel encrypts `buf` as
 * records of `record_type` (close_notify alerts, KeyUpdate handshake
 * messages).  Sends everything unless an error occurs (with MSG_DONTWAIT in
 * `flags`: EAGAIN); returns len, the partial count if an error follows some
 * progress, or -1 with errno. */
ssize_t kx_ktls_send_record(int fd, uint8_t record_type, const void *buf, size_t len, int flags);

/* ---- probing (probe.c) ---- */

/* The report is the public struct (ktlsx_probe, ktlsx_probe_lines); these
 * names keep the module's own spelling. */
enum { KX_PROBE_VERSIONS = KTLSX_PROBE_VERSIONS, KX_PROBE_CIPHERS = KTLSX_PROBE_CIPHERS };
typedef struct ktlsx_probe_verdict kx_probe_verdict;
typedef struct ktlsx_probe_report kx_probe_report;

/* Cipher name of probe column i ("aes-128-gcm", ...). */
const char *kx_probe_cipher_name(int i);

/* Run every probe on loopback sockets of this process.  Returns
 * report->usable. */
int kx_ktls_probe(kx_probe_report *report);

/* A connected loopback TCP pair (127.0.0.1, ephemeral port), close-on-exec.
 * Returns 0 or -1 with `why`. */
int kx_loopback_pair(int *client, int *server, char *why, size_t whylen);

/* Does the kernel accept a second TLS_TX on a TLS 1.3 socket (KeyUpdate
 * offload, Linux >= 6.14 or a backport)?  Tried for real on a loopback pair,
 * since distribution kernels backport it.  1 yes, 0 no, -1 cannot tell (no
 * kTLS at all); `why` explains 0 and -1. */
int kx_ktls_rekey_supported(char *why, size_t whylen);

/* issue 9: does this kernel take TLS_TX_MAX_PAYLOAD_LEN?  Tried for real on
 * a loopback pair (TLS 1.3 TX with dummy keys, then a limit of 64), once per
 * process: the answer is kept, -1 too (kx_ktls_set_setsockopt forgets it).
 * 1 yes, 0 no (`why`), -1 cannot tell (no kTLS at all; `why`). */
int kx_ktls_tx_max_payload_supported(char *why, size_t whylen);
void kx_ktls_tx_max_payload_forget(void);

/* Is the "handshake" generic netlink family (the kernel's in-kernel TLS
 * handshake upcall, net/handshake) registered?  Raw CTRL_CMD_GETFAMILY
 * query, no libnl.  1 yes, 0 no, -1 query failed (`why`). */
int kx_handshake_genl_present(char *why, size_t whylen);
/* The same query for any family name (at most GENL_NAMSIZ - 1 bytes). */
int kx_genl_family_present(const char *name, char *why, size_t whylen);

/* Format a reason into an optional caller buffer (why may be NULL). */
__attribute__((format(printf, 3, 4))) void kx_say(char *why, size_t whylen, const char *fmt, ...);

#endif
