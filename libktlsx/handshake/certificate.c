/* Certificate (RFC 8446 §4.4.2): the server's chain, and the client's when asked. */
#include "handshake/conn.h"
#include <openssl/crypto.h>
#include <string.h>

/* Client: the first configured certificate that can sign with one of the
 * server's signature algorithms. */
static void choose_client_certificate(ktlsx_conn *c)
{
    const ktlsx_config *cfg = c->cfg;
    c->our_cert = NULL;
    for (size_t k = 0; k < cfg->cert_count; k++) {
        uint16_t s = kx_choose_sigalg(c, cfg->certs[k].key);
        if (s) {
            c->our_cert = &cfg->certs[k];
            c->our_sigalg = s;
            return;
        }
    }
}

kx_result kx_certificate_write(ktlsx_conn *c)
{
    kx_buf *o = &c->hs_out;
    bool client = c->role == KTLSX_CLIENT;
    if (client) {
        choose_client_certificate(c);
        if (!c->our_cert) {
            /* No (suitable) certificate: answer with an empty one and skip CertificateVerify. */
            c->client_cert_empty = true;
            kx_flow_rebuild(c);
        }
    }
    bool tls13 = c->version == KTLSX_TLS13;
    size_t msg, list;
    KX_GUARD(kx_hs_begin(c, KX_HS_CERTIFICATE, &msg));
    if (tls13) KX_GUARD(kx_write_vec(o, 1, c->cr_context, client ? c->cr_context_len : 0));
    KX_GUARD(kx_vec_open(o, 3, &list));
    size_t depth = c->our_cert ? c->our_cert->count : 0;
    for (size_t i = 0; i < depth; i++) {
        KX_GUARD(kx_write_vec(o, 3, c->our_cert->der[i], c->our_cert->der_len[i]));
        if (tls13) KX_GUARD(kx_write_u16(o, 0)); /* no per-certificate extensions */
    }
    KX_GUARD(kx_vec_close(o, 3, list));
    KX_GUARD(kx_hs_end(c, msg));
    kx_trace(c, client, "Certificate depth=%zu", depth);
    return KX_OK;
}

/* TLS 1.2: the suite names the server's key (RFC 5246 §7.4.2, RFC 8422
 * §5.3): ECDHE_ECDSA an EC, Ed25519 or Ed448 key, ECDHE_RSA an RSA (or RSA-PSS)
 * key, RSA key exchange an rsaEncryption key.  A certificate of another kind
 * contradicts the server's own choice of suite. */
static kx_result check_server_key_fits_suite(const ktlsx_conn *c)
{
    int type = EVP_PKEY_get_base_id(c->peer_key);
    bool fits = false;
    switch (c->suite->kex) {
    case KX_KX_ECDHE_ECDSA: fits = type == EVP_PKEY_EC || type == EVP_PKEY_ED25519 || type == EVP_PKEY_ED448; break;
    case KX_KX_ECDHE_RSA: fits = type == EVP_PKEY_RSA || type == EVP_PKEY_RSA_PSS; break;
    case KX_KX_RSA: fits = type == EVP_PKEY_RSA; break;
    case KX_KX_TLS13: break;
    }
    KX_ENSURE(fits, KX_ALERT_ILLEGAL_PARAMETER, "server certificate key does not fit the chosen cipher suite");
    return KX_OK;
}

/* ---- the peer's chain, kept for ktlsx_peer_cert_der ---- */

void kx_peer_chain_clear(ktlsx_conn *c)
{
    if (c->peer_chain) OPENSSL_clear_free(c->peer_chain, c->peer_chain_off[c->peer_cert_count]);
    c->peer_chain = NULL;
    c->peer_cert_count = 0;
    memset(c->peer_chain_off, 0, sizeof c->peer_chain_off);
}

/* One copy of the received DER: the handshake buffer holding the message is
 * reused for the next one. */
static kx_result keep_peer_chain(ktlsx_conn *c, const uint8_t *const *der, const size_t *der_len, size_t n)
{
    kx_peer_chain_clear(c);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += der_len[i]; /* bounded by KX_MAX_HANDSHAKE_MESSAGE */
    uint8_t *p = OPENSSL_malloc(total ? total : 1);
    KX_ENSURE(p != NULL, KX_ALERT_INTERNAL_ERROR, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        c->peer_chain_off[i] = off;
        memcpy(p + off, der[i], der_len[i]);
        off += der_len[i];
    }
    c->peer_chain_off[n] = off;
    c->peer_chain = p;
    c->peer_cert_count = n;
    return KX_OK;
}

size_t ktlsx_peer_cert_count(const ktlsx_conn *c) { return c ? c->peer_cert_count : 0; }

const uint8_t *ktlsx_peer_cert_der(const ktlsx_conn *c, size_t i, size_t *len)
{
    if (len) *len = 0;
    if (!c || i >= c->peer_cert_count) return NULL;
    if (len) *len = c->peer_chain_off[i + 1] - c->peer_chain_off[i];
    return c->peer_chain + c->peer_chain_off[i];
}

kx_result kx_certificate_handle(ktlsx_conn *c, kx_reader *body)
{
    bool from_server = c->role == KTLSX_CLIENT;
    bool tls13 = c->version == KTLSX_TLS13;
    kx_reader context, list;
    if (tls13) {
        KX_GUARD(kx_read_vec(body, 1, 0, 255, &context));
        if (from_server)
            KX_ENSURE(context.len == 0, KX_ALERT_ILLEGAL_PARAMETER, "server Certificate has a request context");
        else
            KX_ENSURE(context.len == c->cr_context_len && memcmp(context.data, c->cr_context, context.len) == 0,
                      KX_ALERT_ILLEGAL_PARAMETER, "client Certificate context does not match the request");
    }
    KX_GUARD(kx_read_vec(body, 3, 0, 0xffffff, &list));

    const uint8_t *der[KX_MAX_CHAIN];
    size_t der_len[KX_MAX_CHAIN];
    size_t n = 0;
    while (kx_reader_left(&list)) {
        kx_reader cert, ext_block;
        KX_GUARD(kx_read_vec(&list, 3, 1, 0xffffff, &cert));
        if (tls13) {
            KX_GUARD(kx_read_vec(&list, 2, 0, 65535, &ext_block));
            kx_exts e;
            /* We request neither OCSP stapling nor SCTs, so no entry may carry extensions. */
            KX_GUARD(kx_exts_parse(&ext_block, KX_IN_CT, 0, &e));
        }
        KX_ENSURE(n < KX_MAX_CHAIN, KX_ALERT_BAD_CERTIFICATE, "certificate chain too long");
        der[n] = cert.data;
        der_len[n] = cert.len;
        n++;
    }
    kx_trace(c, from_server ? false : true, "Certificate depth=%zu", n);

    if (n == 0) {
        KX_ENSURE(!from_server, KX_ALERT_DECODE_ERROR, "server sent no certificate");
        /* TLS 1.3 has an alert for this; TLS 1.2 uses handshake_failure (RFC 5246 §7.4.6). */
        KX_ENSURE(c->cfg->verify_client != KTLSX_VERIFY_REQUIRE,
                  tls13 ? KX_ALERT_CERTIFICATE_REQUIRED : KX_ALERT_HANDSHAKE_FAILURE,
                  "client sent no certificate but one is required");
        c->client_cert_empty = true;
        kx_flow_rebuild(c);
        return KX_OK;
    }

    /* Kept before verification, so that a caller can log the chain it refused. */
    KX_GUARD(keep_peer_chain(c, der, der_len, n));
    EVP_PKEY_free(c->peer_key);
    c->peer_key = NULL;
    kx_result chain = KX_OK;
    bool chain_ok = false; /* verified and passed */
    if (from_server && c->cfg->insecure) {
        KX_GUARD(kx_cert_leaf_key(der[0], der_len[0], &c->peer_key, c->peer_subject, sizeof c->peer_subject));
    } else {
        const char *err = NULL;
        kx_trust *trust = kx_config_trust(c->cfg, &err);
        KX_ENSURE(trust != NULL, KX_ALERT_INTERNAL_ERROR, err ? err : "no trust store");
        const char *host = from_server && c->server_name[0] ? c->server_name : NULL;
        chain = kx_trust_verify(trust, der, der_len, n, host, from_server, &c->peer_key, c->peer_subject,
                                sizeof c->peer_subject);
        chain_ok = !kx_failed(chain);
    }
    /* The application's verify callback has the last word (1.0 hooks). */
    KX_GUARD(kx_hook_verify(c, chain_ok, chain, der, der_len, n));
    if (from_server && !tls13) KX_GUARD(check_server_key_fits_suite(c));
    return KX_OK;
}
