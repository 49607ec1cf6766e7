/* Cipher suite table and the names of groups and signature algorithms.
 *
 * The table order is our default preference: TLS 1.3 first, then TLS 1.2
 * ECDHE (AES-GCM before ChaCha20, which only wins on CPUs without AES
 * instructions and is then picked by client preference), and static-RSA key
 * exchange last because it has no forward secrecy. */
#include "crypto/crypto.h"
#include <strings.h>

static const kx_suite suites[] = {
    { 0x1301, "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", 0x0304,
      KX_KX_TLS13, KX_AEAD_AES_128_GCM, KX_HASH_SHA256, 16, 12 },
    { 0x1302, "TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", 0x0304,
      KX_KX_TLS13, KX_AEAD_AES_256_GCM, KX_HASH_SHA384, 32, 12 },
    { 0x1303, "TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", 0x0304,
      KX_KX_TLS13, KX_AEAD_CHACHA20_POLY1305, KX_HASH_SHA256, 32, 12 },
    /* conf-b: off by default (as in OpenSSL's default list), selectable by name. */
    { 0x1304, "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_SHA256", 0x0304,
      KX_KX_TLS13, KX_AEAD_AES_128_CCM, KX_HASH_SHA256, 16, 12 },

    { 0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", 0x0303,
      KX_KX_ECDHE_ECDSA, KX_AEAD_AES_128_GCM, KX_HASH_SHA256, 16, 4 },
    { 0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", 0x0303,
      KX_KX_ECDHE_RSA, KX_AEAD_AES_128_GCM, KX_HASH_SHA256, 16, 4 },
    { 0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", 0x0303,
      KX_KX_ECDHE_ECDSA, KX_AEAD_AES_256_GCM, KX_HASH_SHA384, 32, 4 },
    { 0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", 0x0303,
      KX_KX_ECDHE_RSA, KX_AEAD_AES_256_GCM, KX_HASH_SHA384, 32, 4 },
    { 0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", 0x0303,
      KX_KX_ECDHE_ECDSA, KX_AEAD_CHACHA20_POLY1305, KX_HASH_SHA256, 32, 12 },
    { 0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", 0x0303,
      KX_KX_ECDHE_RSA, KX_AEAD_CHACHA20_POLY1305, KX_HASH_SHA256, 32, 12 },

    { 0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", 0x0303,
      KX_KX_RSA, KX_AEAD_AES_128_GCM, KX_HASH_SHA256, 16, 4 },
    { 0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", 0x0303,
      KX_KX_RSA, KX_AEAD_AES_256_GCM, KX_HASH_SHA384, 32, 4 },
};

#define NSUITES (sizeof suites / sizeof suites[0])

const kx_suite *kx_suite_by_id(uint16_t id)
{
    for (size_t i = 0; i < NSUITES; i++)
        if (suites[i].id == id) return &suites[i];
    return NULL;
}

const kx_suite *kx_suite_by_name(const char *name)
{
    if (name == NULL) return NULL;
    for (size_t i = 0; i < NSUITES; i++)
        if (strcasecmp(suites[i].name, name) == 0 || strcasecmp(suites[i].openssl_name, name) == 0)
            return &suites[i];
    return NULL;
}

const kx_suite *kx_suites_all(size_t *count)
{
    *count = NSUITES;
    return suites;
}

static const struct {
    uint16_t id;
    const char *name;
} groups[] = {
    { KX_GROUP_X25519, "x25519" },
    { KX_GROUP_SECP256R1, "secp256r1" },
    { KX_GROUP_SECP384R1, "secp384r1" },
    { KX_GROUP_SECP521R1, "secp521r1" }, /* conf-b */
    { KX_GROUP_X448, "x448" },           /* conf-b */
    /* Aliases: accepted on input only; the canonical names come first. */
    { KX_GROUP_SECP256R1, "P-256" },
    { KX_GROUP_SECP256R1, "prime256v1" },
    { KX_GROUP_SECP384R1, "P-384" },
    { KX_GROUP_SECP521R1, "P-521" },
};

const char *kx_group_name(uint16_t group)
{
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i].id == group) return groups[i].name;
    return NULL;
}

uint16_t kx_group_by_name(const char *name)
{
    if (name == NULL) return 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (strcasecmp(groups[i].name, name) == 0) return groups[i].id;
    return 0;
}

const char *kx_sigalg_name(uint16_t sigalg)
{
    switch (sigalg) {
    case KX_SIG_RSA_PKCS1_SHA256: return "rsa_pkcs1_sha256";
    case KX_SIG_RSA_PKCS1_SHA384: return "rsa_pkcs1_sha384";
    case KX_SIG_RSA_PKCS1_SHA512: return "rsa_pkcs1_sha512";
    case KX_SIG_ECDSA_SECP256R1_SHA256: return "ecdsa_secp256r1_sha256";
    case KX_SIG_ECDSA_SECP384R1_SHA384: return "ecdsa_secp384r1_sha384";
    case KX_SIG_ECDSA_SECP521R1_SHA512: return "ecdsa_secp521r1_sha512";
    case KX_SIG_RSA_PSS_RSAE_SHA256: return "rsa_pss_rsae_sha256";
    case KX_SIG_RSA_PSS_RSAE_SHA384: return "rsa_pss_rsae_sha384";
    case KX_SIG_RSA_PSS_RSAE_SHA512: return "rsa_pss_rsae_sha512";
    case KX_SIG_ED25519: return "ed25519";
    case KX_SIG_ED448: return "ed448";
    case KX_SIG_RSA_PSS_PSS_SHA256: return "rsa_pss_pss_sha256";
    case KX_SIG_RSA_PSS_PSS_SHA384: return "rsa_pss_pss_sha384";
    case KX_SIG_RSA_PSS_PSS_SHA512: return "rsa_pss_pss_sha512";
    default: return NULL;
    }
}
