/* record_size_limit (RFC 8449; issue 9): the largest record each side
 * accepts, offered by the client in its ClientHello and answered by the
 * server in EncryptedExtensions (TLS 1.3) or its ServerHello (TLS 1.2).
 *
 * Negotiated means both sent it.  From then on each side's record layer cuts
 * what it sends at the peer's value (kx_record_dir.max_plain on TX, and
 * TLS_TX_MAX_PAYLOAD_LEN when the kernel carries TX: ktls/offload.c) and
 * refuses with record_overflow a protected record over its own (RX).
 * Values are kept as on the wire; TLS 1.3 counts the inner content type byte,
 * so its content limit is the value - 1 (extensions.c: kx_rsl_plain). */
#include "handshake/conn.h"

int ktlsx_config_set_record_size_limit(ktlsx_config *cfg, unsigned limit)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    if (limit != 0 && (limit < KX_RSL_MIN || limit > KX_RSL_MAX13)) {
        snprintf(cfg->error, sizeof cfg->error,
                 "record_size_limit must be 0 (not offered) or %d..%d (RFC 8449), not %u", KX_RSL_MIN, KX_RSL_MAX13,
                 limit);
        return -1;
    }
    cfg->record_size_limit = (uint16_t)limit;
    return 0;
}

uint16_t kx_rsl_offer(const ktlsx_conn *c, bool offer13)
{
    if (!c->cfg->record_size_limit) return 0;
    return kx_rsl_wire(c->cfg->record_size_limit, offer13 ? KTLSX_TLS13 : KTLSX_TLS12);
}

void kx_rsl_apply(ktlsx_conn *c)
{
    c->tx.max_plain = c->rsl_negotiated ? kx_rsl_plain(c->rsl_peer, c->version) : 0;
    c->rx.max_plain = c->rsl_negotiated ? kx_rsl_plain(c->rsl_ours, c->version) : 0;
}

kx_result kx_rsl_server_accept(ktlsx_conn *c, kx_reader d)
{
    uint16_t peer;
    KX_GUARD(kx_rsl_parse(d, &peer));
    uint16_t ours = c->cfg->record_size_limit ? c->cfg->record_size_limit : KX_RSL_MAX13;
    /* A client that offered TLS 1.3 may have counted the content type byte in
     * its value and still hold TLS 1.2 records to value - 1 (GnuTLS does:
     * record_overflow on a record of the full value).  One byte less is always
     * within what RFC 8449 allows us to send. */
    if (c->version == KTLSX_TLS12 && c->client_offered_13 && peer > KX_RSL_MIN) peer--;
    c->rsl_peer = peer;
    c->rsl_ours = kx_rsl_wire(ours, c->version);
    c->rsl_negotiated = true;
    kx_rsl_apply(c);
    return KX_OK;
}

kx_result kx_rsl_client_accept(ktlsx_conn *c, kx_reader d)
{
    uint16_t peer;
    KX_GUARD(kx_rsl_parse(d, &peer));
    /* The ClientHello carried ours (kx_exts_parse refused an unoffered answer). */
    KX_ENSURE(c->rsl_ours != 0, KX_ALERT_UNSUPPORTED_EXTENSION, "record_size_limit we did not offer");
    c->rsl_peer = peer;
    c->rsl_negotiated = true;
    kx_rsl_apply(c);
    kx_trace(c, false, "record_size_limit peer=%u ours=%u", peer, c->rsl_ours);
    return KX_OK;
}

kx_result kx_rsl_write_answer(ktlsx_conn *c)
{
    if (!c->rsl_negotiated) return KX_OK;
    size_t x;
    KX_GUARD(kx_write_u16(&c->hs_out, KX_EXT_TYPE_RECORD_SIZE_LIMIT));
    KX_GUARD(kx_vec_open(&c->hs_out, 2, &x));
    KX_GUARD(kx_write_u16(&c->hs_out, c->rsl_ours));
    return kx_vec_close(&c->hs_out, 2, x);
}

int ktlsx_record_size_limit(const ktlsx_conn *c, int direction)
{
    if (!c || (direction != KTLSX_TX && direction != KTLSX_RX)) return -1;
    if (!c->rsl_negotiated) return KX_MAX_PLAINTEXT;
    return kx_rsl_plain(direction == KTLSX_TX ? c->rsl_peer : c->rsl_ours, c->version);
}
