/* End to end: a real client engine against a real server engine, in memory,
 * through the public API only, with the bytes in flight corrupted.
 *
 * Input: byte 0 = options, then 4-byte mutations (record index, position
 * u16 big-endian, xor value), at most 64.  Records are numbered in the order
 * they are sent, both directions together; a mutation XORs one byte of its
 * record (position modulo the record length, header included).
 *
 * Options:
 *   bit 0     client authentication (server requires it; client has cli.pem, trusts the CA)
 *   bit 1     HelloRetryRequest: the server only accepts P-384, the client offers x25519 first
 *   bit 2     feed the receiver ktlsx_input_wanted() bytes at a time (else all at once)
 *   bit 3     after the handshake: application data both ways, KeyUpdate, close_notify
 *   bits 4-5  client cipher suites: default / AES-256-GCM only / ChaCha20 only / AES-128-GCM only
 *
 * Oracle: with no effective mutation the handshake must complete and the
 * data must arrive intact. */
#include "fuzz_common.h"

#define MAX_MUTATIONS 64
#define MAX_ROUNDS 32

static ktlsx_config *client_cfgs[2][4]; /* [auth][suites] */
static ktlsx_config *server_hrr_cfg;

static const char *const suite_lists[4] = { NULL, "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                                            "TLS_AES_128_GCM_SHA256" };

static void load(ktlsx_config *cfg, int rc)
{
    if (rc != 0) fz_die("handshake_peer config", cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    char dir[] = "/tmp/ktlsx-fuzz-peer-XXXXXX";
    if (!mkdtemp(dir)) fz_die("mkdtemp", NULL);
    char ca[256], srv[256], srv_key[256], cli[256], cli_key[256];
    fz_write_file(dir, "ca.pem", PEM_CA_PEM, ca, sizeof ca);
    fz_write_file(dir, "srv.pem", PEM_SRV_PEM, srv, sizeof srv);
    fz_write_file(dir, "srv.key", PEM_SRV_KEY, srv_key, sizeof srv_key);
    fz_write_file(dir, "cli.pem", PEM_CLI_PEM, cli, sizeof cli);
    fz_write_file(dir, "cli.key", PEM_CLI_KEY, cli_key, sizeof cli_key);
    for (int auth = 0; auth < 2; auth++) {
        for (int s = 0; s < 4; s++) {
            ktlsx_config *cfg = fz_new_cfg(KTLSX_CLIENT);
            load(cfg, ktlsx_config_set_ca_file(cfg, ca));
            if (auth) load(cfg, ktlsx_config_add_cert(cfg, cli, cli_key));
            if (suite_lists[s]) load(cfg, ktlsx_config_set_ciphers(cfg, suite_lists[s]));
            load(cfg, ktlsx_config_set_alpn(cfg, "h2,http/1.1"));
            client_cfgs[auth][s] = cfg;
        }
    }
    server_hrr_cfg = fz_new_cfg(KTLSX_SERVER);
    load(server_hrr_cfg, ktlsx_config_add_cert(server_hrr_cfg, srv, srv_key));
    load(server_hrr_cfg, ktlsx_config_set_groups(server_hrr_cfg, "P-384"));
    unlink(ca);
    unlink(srv);
    unlink(srv_key);
    unlink(cli);
    unlink(cli_key);
    rmdir(dir);
    return 0;
}

typedef struct {
    uint8_t rec;
    uint16_t pos;
    uint8_t x;
} mutation;

typedef struct {
    const mutation *m;
    size_t nm;
    unsigned record;   /* records sent so far, both directions */
    bool mutated;      /* some mutation actually changed a byte */
} wire;

/* Bytes on their way to one side. */
typedef struct {
    uint8_t *data;
    size_t len;
} queue;

static void queue_add(queue *q, const uint8_t *p, size_t n)
{
    if (!n) return;
    uint8_t *d = realloc(q->data, q->len + n);
    if (!d) abort();
    memcpy(d + q->len, p, n);
    q->data = d;
    q->len += n;
}

static void queue_take(queue *q, size_t n)
{
    memmove(q->data, q->data + n, q->len - n);
    q->len -= n;
}

/* Move what `from` wants to send into `to`, record by record, corrupting on the way. */
static void transmit(wire *w, ktlsx_conn *from, queue *to)
{
    const uint8_t *p;
    size_t n = ktlsx_pending_output(from, &p);
    if (!n) return;
    uint8_t *buf = malloc(n);
    if (!buf) abort();
    memcpy(buf, p, n);
    ktlsx_output_done(from, n);
    size_t off = 0;
    while (off < n) {
        size_t len = n - off;
        if (len >= KX_RECORD_HEADER) {
            size_t body = ((size_t)buf[off + 3] << 8) | buf[off + 4];
            if (KX_RECORD_HEADER + body < len) len = KX_RECORD_HEADER + body;
        }
        for (size_t i = 0; i < w->nm; i++) {
            if (w->m[i].rec != w->record || w->m[i].x == 0) continue;
            buf[off + w->m[i].pos % len] ^= w->m[i].x;
            w->mutated = true;
        }
        w->record++;
        off += len;
    }
    queue_add(to, buf, n);
    free(buf);
}

/* Feed `q` to c (all at once, or as much as it asks for at a time), driving
 * the handshake.  Returns the last status. */
static int step(ktlsx_conn *c, queue *q, bool chunked)
{
    int st = ktlsx_handshake(c);
    while (st == KTLSX_WANT_READ && q->len) {
        size_t n = chunked ? ktlsx_input_wanted(c) : q->len;
        if (n == 0 || n > q->len) n = q->len;
        if (ktlsx_input(c, q->data, n) != 0) break;
        queue_take(q, n);
        st = ktlsx_handshake(c);
    }
    return st;
}

/* Deliver the queue to a connection past its handshake and read what arrives. */
static size_t receive(ktlsx_conn *c, queue *q, uint8_t *out, size_t cap)
{
    if (q->len) {
        if (ktlsx_input(c, q->data, q->len) == 0) queue_take(q, q->len);
    }
    size_t got = 0;
    for (int i = 0; i < 64; i++) {
        uint8_t tmp[256];
        long n = ktlsx_read(c, tmp, sizeof tmp);
        if (n <= 0) break;
        size_t k = (size_t)n;
        if (k > cap - got) k = cap - got;
        memcpy(out + got, tmp, k);
        got += k;
    }
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t opt = data[0];
    mutation m[MAX_MUTATIONS];
    size_t nm = 0;
    for (size_t off = 1; off + 4 <= size && nm < MAX_MUTATIONS; off += 4)
        m[nm++] = (mutation){ data[off], (uint16_t)((data[off + 1] << 8) | data[off + 2]), data[off + 3] };

    bool auth = opt & 1, hrr = opt & 2, chunked = opt & 4, app = opt & 8;
    ktlsx_config *ccfg = client_cfgs[auth][(opt >> 4) & 3];
    ktlsx_config *scfg = hrr ? server_hrr_cfg : auth ? fz_server_cfg_req : fz_server_cfg;
    ktlsx_conn *c = ktlsx_conn_new(ccfg, "localhost");
    ktlsx_conn *s = ktlsx_conn_new(scfg, NULL);
    if (!c || !s) abort();
    wire w = { m, nm, 0, false };
    queue to_c = { 0 }, to_s = { 0 };

    int cs = KTLSX_WANT_READ, ss = KTLSX_WANT_READ;
    for (int round = 0; round < MAX_ROUNDS; round++) {
        cs = step(c, &to_c, chunked);
        transmit(&w, c, &to_s);
        ss = step(s, &to_s, chunked);
        transmit(&w, s, &to_c);
        if (cs != KTLSX_WANT_READ && ss != KTLSX_WANT_READ) break;
        if ((cs == KTLSX_FAILED || ss == KTLSX_FAILED) && !to_c.len && !to_s.len) break;
    }
    /* One more pass so a side that just finished sees the peer's last flight or alert. */
    cs = step(c, &to_c, chunked);
    transmit(&w, c, &to_s);

    bool ok = cs == KTLSX_DONE && ss == KTLSX_DONE;
    if (!w.mutated && !ok) {
        fprintf(stderr, "clean handshake failed: client %d \"%s\" server %d \"%s\"\n", cs, ktlsx_error(c), ss,
                ktlsx_error(s));
        abort();
    }
    if (ok) {
        (void)ktlsx_cipher_name(c);
        (void)ktlsx_alpn(c);
        (void)ktlsx_peer_subject(s);
        struct ktlsx_traffic_keys k;
        if (ktlsx_export_keys(c, KTLSX_TX, &k) == 0) OPENSSL_cleanse(&k, sizeof k);
    }
    if (ok && app) {
        static const char ping[] = "ping from the client", pong[] = "pong from the server";
        uint8_t buf[256];
        (void)ktlsx_write(c, ping, sizeof ping);
        transmit(&w, c, &to_s);
        size_t got = receive(s, &to_s, buf, sizeof buf);
        if (!w.mutated && (got != sizeof ping || memcmp(buf, ping, got) != 0)) abort();
        (void)ktlsx_key_update(s, 1);
        (void)ktlsx_write(s, pong, sizeof pong);
        transmit(&w, s, &to_c);
        got = receive(c, &to_c, buf, sizeof buf);
        if (!w.mutated && (got != sizeof pong || memcmp(buf, pong, got) != 0)) abort();
        /* The client answered the KeyUpdate request: the server must still read it. */
        (void)ktlsx_write(c, ping, 4);
        transmit(&w, c, &to_s);
        got = receive(s, &to_s, buf, sizeof buf);
        if (!w.mutated && got != 4) abort();
        (void)ktlsx_close_notify(c);
        transmit(&w, c, &to_s);
        (void)receive(s, &to_s, buf, sizeof buf);
    }
    free(to_c.data);
    free(to_s.data);
    ktlsx_conn_free(c);
    ktlsx_conn_free(s);
    return 0;
}
