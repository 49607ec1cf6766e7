/* Kernel TLS key installation and the kTLS data-path helpers.
 *
 * Field mapping (checked against the kernel's net/tls: tls_xor_iv_with_seq,
 * tls_advance_record_sn and the decrypt path in tls_sw.c):
 *  - the kernel keeps ctx->iv = salt || iv;
 *  - TLS 1.3 and ChaCha20-Poly1305 (RFC 8446 §5.3, RFC 7905): nonce =
 *    (salt || iv) XOR (0^4 || rec_seq), so salt || iv must be the 12-byte
 *    static IV: AES-GCM splits it 4 + 8, ChaCha20 (salt_size 0) puts all 12
 *    bytes in iv;
 *  - TLS 1.2 AES-GCM (RFC 5288): nonce = salt || explicit_nonce, where the
 *    kernel sends crypto_info.iv as the first explicit nonce and increments
 *    it per record.  Using the sequence number as the explicit nonce (as
 *    OpenSSL and GnuTLS do) keeps nonces unique per key;
 *  - rec_seq is the big-endian sequence number of the next record (AAD). */
#include "ktls/ktls.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "core/wipe.h"

#define SUITE(id_, ver_, ctype_, name_, alg_, st_, keylen_, saltlen_, ivlen_, keysiv_)   \
    {                                                                                    \
        .suite = (id_), .version = (ver_), .cipher_type = (ctype_), .name = (name_),     \
        .kernel_alg = (alg_), .key_len = (keylen_), .salt_len = (saltlen_),              \
        .iv_len = (ivlen_), .keys_iv_len = (keysiv_), .info_size = sizeof(struct st_),   \
        .off_iv = offsetof(struct st_, iv), .off_key = offsetof(struct st_, key),        \
        .off_salt = offsetof(struct st_, salt), .off_rec_seq = offsetof(struct st_, rec_seq) \
    }

#define GCM128(id_, ver_, keysiv_)                                                       \
    SUITE(id_, ver_, TLS_CIPHER_AES_GCM_128, "aes-128-gcm", "gcm(aes)",                 \
          tls12_crypto_info_aes_gcm_128, TLS_CIPHER_AES_GCM_128_KEY_SIZE,                \
          TLS_CIPHER_AES_GCM_128_SALT_SIZE, TLS_CIPHER_AES_GCM_128_IV_SIZE, keysiv_)
#define GCM256(id_, ver_, keysiv_)                                                       \
    SUITE(id_, ver_, TLS_CIPHER_AES_GCM_256, "aes-256-gcm", "gcm(aes)",                 \
          tls12_crypto_info_aes_gcm_256, TLS_CIPHER_AES_GCM_256_KEY_SIZE,                \
          TLS_CIPHER_AES_GCM_256_SALT_SIZE, TLS_CIPHER_AES_GCM_256_IV_SIZE, keysiv_)
#define CCM128(id_, ver_, keysiv_)                                                       \
    SUITE(id_, ver_, TLS_CIPHER_AES_CCM_128, "aes-128-ccm", "ccm(aes)",                 \
          tls12_crypto_info_aes_ccm_128, TLS_CIPHER_AES_CCM_128_KEY_SIZE,                \
          TLS_CIPHER_AES_CCM_128_SALT_SIZE, TLS_CIPHER_AES_CCM_128_IV_SIZE, keysiv_)
#define CHACHA(id_, ver_)                                                                \
    SUITE(id_, ver_, TLS_CIPHER_CHACHA20_POLY1305, "chacha20-poly1305",                  \
          "rfc7539(chacha20,poly1305)", tls12_crypto_info_chacha20_poly1305,             \
          TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE, TLS_CIPHER_CHACHA20_POLY1305_SALT_SIZE, \
          TLS_CIPHER_CHACHA20_POLY1305_IV_SIZE, 12)

/* ktlsx_traffic_keys.iv_len is 12 for TLS 1.3 and ChaCha20 (full static
 * IV) and 4 for TLS 1.2 AES-GCM (implicit part only). */
static const kx_ktls_suite kx_suites[] = {
    GCM128(0x1301, KTLSX_TLS13, 12), /* TLS_AES_128_GCM_SHA256 */
    GCM256(0x1302, KTLSX_TLS13, 12), /* TLS_AES_256_GCM_SHA384 */
    CHACHA(0x1303, KTLSX_TLS13),     /* TLS_CHACHA20_POLY1305_SHA256 */
    CCM128(0x1304, KTLSX_TLS13, 12), /* TLS_AES_128_CCM_SHA256 (conf-b): salt 4 + iv 8, as GCM */
    GCM128(0xc02b, KTLSX_TLS12, 4),  /* ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
    GCM128(0xc02f, KTLSX_TLS12, 4),  /* ECDHE_RSA_WITH_AES_128_GCM_SHA256 */
    GCM128(0x009c, KTLSX_TLS12, 4),  /* RSA_WITH_AES_128_GCM_SHA256 */
    GCM256(0xc02c, KTLSX_TLS12, 4),  /* ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 */
    GCM256(0xc030, KTLSX_TLS12, 4),  /* ECDHE_RSA_WITH_AES_256_GCM_SHA384 */
    GCM256(0x009d, KTLSX_TLS12, 4),  /* RSA_WITH_AES_256_GCM_SHA384 */
    CHACHA(0xcca8, KTLSX_TLS12),     /* ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 */
    CHACHA(0xcca9, KTLSX_TLS12),     /* ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 */
};

/* The kernel checks optlen against exactly these sizes; a header whose
 * structs grew would silently break the ABI assumptions below. */
_Static_assert(sizeof(struct tls12_crypto_info_aes_gcm_128) == 40, "aes_gcm_128 layout");
_Static_assert(sizeof(struct tls12_crypto_info_aes_gcm_256) == 56, "aes_gcm_256 layout");
_Static_assert(sizeof(struct tls12_crypto_info_chacha20_poly1305) == 56, "chacha20 layout");
_Static_assert(sizeof(struct tls12_crypto_info_aes_ccm_128) == 40, "aes_ccm_128 layout");

const kx_ktls_suite *kx_ktls_suite_find(uint16_t version, uint16_t suite)
{
    for (size_t i = 0; i < sizeof(kx_suites) / sizeof(kx_suites[0]); i++)
        if (kx_suites[i].suite == suite && kx_suites[i].version == version)
            return &kx_suites[i];
    return NULL;
}

const kx_ktls_suite *kx_ktls_suite_at(size_t i)
{
    return i < sizeof(kx_suites) / sizeof(kx_suites[0]) ? &kx_suites[i] : NULL;
}

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

void kx_say(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static const char *version_name(uint16_t v)
{
    return v == KTLSX_TLS13 ? "TLS 1.3" : v == KTLSX_TLS12 ? "TLS 1.2" : "unknown version";
}

size_t kx_ktls_build_crypto_info(const struct ktlsx_traffic_keys *keys, kx_ktls_crypto_info *out,
                                 char *why, size_t whylen)
{
    const kx_ktls_suite *s = kx_ktls_suite_find(keys->version, keys->cipher_suite);
    if (!s) {
        if (kx_ktls_suite_find(keys->version == KTLSX_TLS13 ? KTLSX_TLS12 : KTLSX_TLS13,
                               keys->cipher_suite))
            kx_say(why, whylen, "cipher suite 0x%04x does not belong to %s", keys->cipher_suite,
                version_name(keys->version));
        else
            kx_say(why, whylen, "cipher suite 0x%04x (%s) has no kernel TLS mapping",
                keys->cipher_suite, version_name(keys->version));
        return 0;
    }
    if (keys->key_len != s->key_len || keys->iv_len != s->keys_iv_len) {
        kx_say(why, whylen, "%s keys have key_len %zu / iv_len %zu, expected %u / %u", s->name,
            keys->key_len, keys->iv_len, s->key_len, s->keys_iv_len);
        return 0;
    }

    memset(out, 0, sizeof(*out));
    out->info.version = keys->version == KTLSX_TLS13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
    out->info.cipher_type = s->cipher_type;

    uint8_t *base = (uint8_t *)out;
    uint8_t seq_be[8];
    put_be64(seq_be, keys->seq);

    memcpy(base + s->off_key, keys->key, s->key_len);
    memcpy(base + s->off_salt, keys->iv, s->salt_len);
    memcpy(base + s->off_rec_seq, seq_be, sizeof(seq_be));
    if (keys->version == KTLSX_TLS13 || s->cipher_type == TLS_CIPHER_CHACHA20_POLY1305)
        /* The rest of the static IV after the salt (all of it for ChaCha20). */
        memcpy(base + s->off_iv, keys->iv + s->salt_len, s->iv_len);
    else
        /* TLS 1.2 GCM: first explicit nonce to send = the sequence number. */
        memcpy(base + s->off_iv, seq_be, s->iv_len);
    return s->info_size;
}

/* ---- setsockopt indirection ---- */

static int real_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    return setsockopt(fd, level, name, val, len);
}

static kx_setsockopt_fn kx_sso = real_setsockopt;

void kx_ktls_set_setsockopt(kx_setsockopt_fn fn)
{
    kx_sso = fn ? fn : real_setsockopt;
    kx_ktls_tx_max_payload_forget(); /* a new setsockopt gives its own answers */
}

/* ---- enabling ---- */

const char *kx_ktls_ulp_strerror(int err)
{
    switch (err) {
    case ENOENT:
        return "kernel has no tls module (modprobe tls / CONFIG_TLS; "
               "unprivileged processes cannot autoload it)";
    case EEXIST:
        return "a ULP is already attached to this socket";
    case ENOTCONN:
        return "socket is not connected (the tls ULP needs an established TCP connection)";
    case EOPNOTSUPP:
    case KX_ENOTSUPP:
        return "this socket does not support ULPs (MPTCP, or not a TCP socket)";
    case ENOPROTOOPT:
        return "kernel has no TCP_ULP (Linux < 4.13) or the socket is not TCP";
    case EINVAL:
        return "kernel refused the tls ULP on this socket (listening socket, or sockmap in use)";
    case EPERM:
        return "not permitted to attach the tls ULP";
    case EBADF:
    case ENOTSOCK:
        return "not a socket";
    case ENOMEM:
        return "kernel out of memory";
    default:
        return NULL;
    }
}

int kx_ktls_enable_ulp(int fd, char *why, size_t whylen)
{
    static const char ulp[] = "tls";
    if (kx_sso(fd, IPPROTO_TCP, TCP_ULP, ulp, sizeof(ulp)) == 0)
        return 0;
    int err = errno;
    /* Attaching twice is harmless: the ULP we want is what is there (the
     * tls ULP is the only one ktlsx ever attaches). */
    if (err == EEXIST)
        return 0;
    const char *m = kx_ktls_ulp_strerror(err);
    if (m)
        kx_say(why, whylen, "TCP_ULP tls: %s", m);
    else
        kx_say(why, whylen, "TCP_ULP tls: %s", strerror(err));
    errno = err;
    return -1;
}

const char *kx_ktls_install_strerror(int err)
{
    switch (err) {
    case EINVAL:
        return "cipher or version not supported by this kernel "
               "(or differs from the other direction / the key being replaced)";
    case KX_ENOTSUPP:
        return "TLS version not supported by this kernel";
    case ENOPROTOOPT:
        return "tls ULP not attached to this socket (kx_ktls_enable_ulp first)";
    case EBUSY:
        return "keys already installed for this direction "
               "(re-keying needs TLS 1.3 and Linux >= 6.14)";
    case EEXIST:
        return "keys already installed for this direction";
    case ENOENT:
        return "kernel crypto API lacks the AEAD (CONFIG_CRYPTO_GCM / _CCM / _CHACHA20POLY1305)";
    case ENOMEM:
        return "kernel out of memory";
    case EOPNOTSUPP:
        return "operation not supported on this socket";
    case EBADF:
    case ENOTSOCK:
        return "not a socket";
    default:
        return NULL;
    }
}

int kx_ktls_install(int fd, int direction, const struct ktlsx_traffic_keys *keys,
                    char *why, size_t whylen)
{
    if (direction != KTLSX_TX && direction != KTLSX_RX) {
        kx_say(why, whylen, "bad direction %d", direction);
        errno = EINVAL;
        return -1;
    }
    const char *dname = direction == KTLSX_TX ? "TLS_TX" : "TLS_RX";
    kx_ktls_crypto_info ci;
    size_t n = kx_ktls_build_crypto_info(keys, &ci, why, whylen);
    if (n == 0) {
        kx_wipe_obj(ci);
        errno = EINVAL;
        return -1;
    }
    int rc = kx_sso(fd, SOL_TLS, direction == KTLSX_TX ? TLS_TX : TLS_RX, &ci, (socklen_t)n);
    int err = errno;
    kx_wipe_obj(ci);
    if (rc == 0)
        return 0;

    const kx_ktls_suite *s = kx_ktls_suite_find(keys->version, keys->cipher_suite);
    const char *m = kx_ktls_install_strerror(err);
    if (err == ENOENT)
        kx_say(why, whylen, "%s %s %s: kernel crypto API lacks %s", dname,
            version_name(keys->version), s->name, s->kernel_alg);
    else
        kx_say(why, whylen, "%s %s %s: %s", dname, version_name(keys->version), s->name,
            m ? m : strerror(err));
    errno = err;
    return -1;
}

int kx_ktls_set_tx_max_payload(int fd, uint16_t len, char *why, size_t whylen)
{
    uint16_t v = len;
    if (kx_sso(fd, SOL_TLS, TLS_TX_MAX_PAYLOAD_LEN, &v, sizeof v) == 0) return 0;
    int err = errno;
    if (err == ENOPROTOOPT)
        kx_say(why, whylen, "TLS_TX_MAX_PAYLOAD_LEN %u: kernel lacks the option (added for Linux 6.19)", len);
    else
        kx_say(why, whylen, "TLS_TX_MAX_PAYLOAD_LEN %u: %s", len, strerror(err));
    errno = err;
    return -1;
}

int kx_ktls_install_pair(int fd, const struct ktlsx_traffic_keys *tx,
                         const struct ktlsx_traffic_keys *rx, char *why, size_t whylen)
{
    if (kx_ktls_install(fd, KTLSX_TX, tx, why, whylen) != 0)
        return -1;
    if (kx_ktls_install(fd, KTLSX_RX, rx, why, whylen) != 0)
        return -2;
    return 0;
}

/* ---- data path ---- */

ssize_t kx_ktls_recv_record(int fd, void *buf, size_t len, uint8_t *record_type, int flags)
{
    /* Aligned storage for one cmsg carrying the one-byte record type. */
    union {
        char buf[CMSG_SPACE(sizeof(unsigned char))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg;
    ssize_t n;

    do {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        n = recvmsg(fd, &msg, flags);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0) {
        *record_type = 0;
        return 0;
    }
    /* The kernel attaches the type to every record it returns when a control
     * buffer is offered; without one it would fail non-data records with EIO.
     * No cmsg therefore means plain application data. */
    *record_type = 23;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE &&
            c->cmsg_len >= CMSG_LEN(sizeof(unsigned char))) {
            *record_type = *(const unsigned char *)CMSG_DATA(c);
            break;
        }
    }
    return n;
}

ssize_t kx_ktls_send_record(int fd, uint8_t record_type, const void *buf, size_t len, int flags)
{
    const uint8_t *p = buf;
    size_t done = 0;

    /* Each sendmsg carries its own type cmsg: the kernel closes the record
     * at the end of every non-data sendmsg, so a partial send followed by
     * another call yields a further record of the same type, which TLS
     * allows for handshake messages; a 2-byte alert is never split. */
    while (done < len || (len == 0 && done == 0)) {
        union {
            char buf[CMSG_SPACE(sizeof(unsigned char))];
            struct cmsghdr align;
        } ctl;
        memset(&ctl, 0, sizeof(ctl));
        struct iovec iov = { .iov_base = (void *)(p + done), .iov_len = len - done };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_TLS;
        c->cmsg_type = TLS_SET_RECORD_TYPE;
        c->cmsg_len = CMSG_LEN(sizeof(unsigned char));
        *(unsigned char *)CMSG_DATA(c) = record_type;
        msg.msg_controllen = c->cmsg_len;

        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return done > 0 ? (ssize_t)done : -1;
        }
        if (len == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}
