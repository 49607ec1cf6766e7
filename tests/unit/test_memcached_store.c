/* session/memcached: the fleet's TLS 1.2 session store (issue 12) against a
 * real memcached started here on a free loopback port (skipped, saying so,
 * when the memcached binary is missing): sessions stored by one
 * configuration resume on another; what memcached holds shows neither the
 * session ID nor the master secret and expires with the session; an entry
 * corrupted, truncated, moved under another ID or sealed with another key
 * file is rejected (a full handshake, the entry removed); a dead memcached and
 * one that accepts but never answers cost a full handshake within the
 * configured timeout; bad arguments get clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KTLSX_NO_MEMCACHED /* `make MEMCACHED=0`: only the refusal is tested (the end of this file) */
#include <libmemcached/memcached.h>

#include "handshake/conn.h"
#include "helpers/pki.h"
#include "helpers/engine_pair.h"

#define MEMCACHED_BIN "/usr/bin/memcached"
#define TIMEOUT_MS 400u
/* Slack for the handshake's own work on a loaded 2-core machine under ASan. */
#define SLACK_MS 600u

typedef struct {
    uint8_t data[4096];
    long len;
} blob;

typedef struct {
    pid_t pid;
    int port;
    char spec[64]; /* "127.0.0.1:PORT" */
} mcd;

static mcd main_mc;
static char key_a[256], key_b[256], key_short[256];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A memcached of our own; false when it would not come up. */
static bool mcd_start(mcd *m)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        m->port = free_port();
        if (m->port <= 0) continue;
        char port[16];
        snprintf(port, sizeof port, "%d", m->port);
        m->pid = fork();
        if (m->pid == 0) {
            int null = open("/dev/null", 0);
            if (null >= 0) dup2(null, 1), dup2(null, 2);
            execl(MEMCACHED_BIN, "memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "16", "-t", "1", "-u",
                  "root", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 100 && m->pid > 0; i++) { /* up to 5 s */
            if (port_answers(m->port)) {
                snprintf(m->spec, sizeof m->spec, "127.0.0.1:%d", m->port);
                return true;
            }
            if (waitpid(m->pid, NULL, WNOHANG) == m->pid) break;
            usleep(50000);
        }
        if (m->pid > 0) {
            kill(m->pid, SIGKILL);
            waitpid(m->pid, NULL, 0);
        }
    }
    m->pid = 0;
    return false;
}

static void mcd_stop(mcd *m)
{
    if (m->pid <= 0) return;
    kill(m->pid, SIGKILL);
    waitpid(m->pid, NULL, 0);
    m->pid = 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static int setup(void **state)
{
    if (kxt_pki_group_setup(state) != 0) return -1;
    snprintf(key_a, sizeof key_a, "%s", kxt_pki_path("store-a.key"));
    snprintf(key_b, sizeof key_b, "%s", kxt_pki_path("store-b.key"));
    snprintf(key_short, sizeof key_short, "%s", kxt_pki_path("store-short.key"));
    uint8_t k[48];
    for (size_t i = 0; i < sizeof k; i++) k[i] = (uint8_t)(i * 7 + 1);
    write_file(key_a, k, sizeof k);
    k[0] ^= 1;
    write_file(key_b, k, sizeof k);
    write_file(key_short, k, 31);
    if (access(MEMCACHED_BIN, X_OK) != 0)
        fprintf(stderr, "[  SKIP    ] %s is missing (apt-get install memcached): store cases skip\n", MEMCACHED_BIN);
    else if (!mcd_start(&main_mc))
        fprintf(stderr, "[  SKIP    ] memcached would not start on a loopback port: store cases skip\n");
    return 0;
}

static int teardown(void **state)
{
    mcd_stop(&main_mc);
    return kxt_pki_group_teardown(state);
}

#define NEED_MEMCACHED()                                                                     \
    do {                                                                                     \
        if (main_mc.pid <= 0) {                                                              \
            fprintf(stderr, "skipped: no memcached (binary %s missing or would not start)\n", \
                    MEMCACHED_BIN);                                                          \
            skip();                                                                          \
        }                                                                                    \
    } while (0)

/* A TLS 1.2 server on the memcached store, tickets off (only the session ID resumes). */
static ktlsx_config *store_server(const char *servers, const char *key, unsigned timeout_ms)
{
    ktlsx_config *sc = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(sc, ktlsx_config_set_tickets(sc, 0, 600));
    KXT_CFG_OK(sc, ktlsx_config_set_memcached_store(sc, servers, key, timeout_ms));
    return sc;
}

static ktlsx_config *tls12_client(void)
{
    ktlsx_config *cc = kxt_client_cfg(NULL, NULL);
    KXT_CFG_OK(cc, ktlsx_config_set_versions(cc, KTLSX_TLS12, KTLSX_TLS12));
    return cc;
}

/* One connection; returns whether it resumed, the client's session in out,
 * the server's session ID and master secret in sid/master, its duration in *ms. */
static int connect_once(ktlsx_config *cc, ktlsx_config *sc, const blob *in, blob *out, uint8_t sid[32],
                        uint8_t master[48], uint64_t *ms)
{
    kxt_pair p;
    uint64_t t0 = now_ms();
    kxt_pair_start(&p, cc, sc, "localhost", KXT_FEED_ALL);
    p.keep_cfgs = true;
    if (in) assert_int_equal(ktlsx_set_session(p.c, in->data, (size_t)in->len), 0);
    kxt_pump(&p);
    kxt_assert_done(&p);
    if (ms) *ms = now_ms() - t0;
    int resumed = ktlsx_resumed(p.c);
    assert_int_equal(ktlsx_resumed(p.s), resumed);
    if (sid) {
        assert_int_equal(p.s->session_id_len, 32);
        memcpy(sid, p.s->session_id, 32);
    }
    if (master) memcpy(master, p.s->master, 48);
    kxt_send_recv(&p, true, "client", 6);
    kxt_settle(&p);
    if (out) {
        out->len = ktlsx_get_session(p.c, out->data, sizeof out->data);
        assert_true(out->len > 0);
    }
    kxt_pair_free(&p);
    return resumed;
}

static struct ktlsx_session_stats stats(const ktlsx_config *sc)
{
    struct ktlsx_session_stats st;
    assert_int_equal(ktlsx_config_session_stats(sc, &st), 0);
    return st;
}

/* ---- memcached seen from outside: its keys (lru_crawler metadump) and raw values ---- */

typedef struct {
    char key[128];
    long exp; /* absolute unix time, -1 = never */
} dumped;

static memcached_st *raw_client(int port);
static bool entry_exists(const char *key);

static bool entry_exists_at(int port, const char *key);

/* Live keys only (flush_all leaves items for metadump to list until they are reclaimed);
 * SIZE_MAX when the LRU crawler was busy. */
static size_t dump_once(int port, dumped *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_true(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static const char cmd[] = "lru_crawler metadump all\r\n";
    assert_int_equal(write(fd, cmd, sizeof cmd - 1), (ssize_t)(sizeof cmd - 1));
    char buf[65536];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "END\r\n") || strstr(buf, "BUSY") || strstr(buf, "ERROR")) break;
    }
    close(fd);
    buf[len] = '\0';
    if (!strstr(buf, "END\r\n")) return SIZE_MAX; /* the crawler is busy (its own background run): ask again */
    size_t count = 0;
    for (char *line = strtok(buf, "\r\n"); line && count < cap; line = strtok(NULL, "\r\n")) {
        char *k = strstr(line, "key="), *e = strstr(line, "exp=");
        if (!k || !e) continue;
        k += 4;
        size_t n = strcspn(k, " ");
        /* metadump URL-encodes keys: decode %3A */
        size_t o = 0;
        for (size_t i = 0; i < n && o < sizeof out[count].key - 1; i++) {
            if (k[i] == '%' && i + 2 < n) {
                char hx[3] = { k[i + 1], k[i + 2], 0 };
                out[count].key[o++] = (char)strtol(hx, NULL, 16);
                i += 2;
            } else {
                out[count].key[o++] = k[i];
            }
        }
        out[count].key[o] = '\0';
        out[count].exp = strtol(e + 4, NULL, 10);
        if (entry_exists_at(port, out[count].key)) count++;
    }
    return count;
}

static size_t dump_keys(int port, dumped *out, size_t cap)
{
    for (int i = 0; i < 100; i++) { /* up to 5 s */
        size_t n = dump_once(port, out, cap);
        if (n != SIZE_MAX) return n;
        usleep(50000);
    }
    fail_msg("memcached's LRU crawler stayed busy for 5 s");
    return 0;
}

static memcached_st *raw_client(int port)
{
    memcached_st *mc = memcached_create(NULL);
    assert_non_null(mc);
    assert_true(memcached_success(memcached_server_add(mc, "127.0.0.1", (in_port_t)port)));
    return mc;
}

static bool entry_exists(const char *key);
static bool entry_exists_at(int port, const char *key)
{
    memcached_st *raw = raw_client(port);
    size_t n;
    uint32_t flags;
    memcached_return_t r;
    char *v = memcached_get(raw, key, strlen(key), &n, &flags, &r);
    free(v);
    memcached_free(raw);
    return v != NULL;
}

static bool entry_exists(const char *key) { return entry_exists_at(main_mc.port, key); }

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0) return true;
    return false;
}

/* Delete every entry (not flush_all: an item set within the second after a
 * flush_all counts as flushed too). */
static void flush_all(int port)
{
    dumped d[64];
    for (int round = 0; round < 20; round++) {
        size_t n = dump_keys(port, d, 64);
        if (n == 0) return;
        memcached_st *mc = raw_client(port);
        for (size_t i = 0; i < n; i++) (void)memcached_delete(mc, d[i].key, strlen(d[i].key), 0);
        memcached_free(mc);
    }
    fail_msg("memcached still lists entries after 20 rounds of deletes");
}

/* ================================================================ cases */

static void test_setter_errors(void **state)
{
    (void)state;
    ktlsx_config *cc = ktlsx_config_new(KTLSX_CLIENT), *sc = ktlsx_config_new(KTLSX_SERVER);
    struct {
        ktlsx_config *cfg;
        const char *servers, *key;
        unsigned timeout;
        const char *needle;
    } bad[] = {
        { cc, "127.0.0.1:11211", key_a, 0, "server configurations only" },
        { sc, "", key_a, 0, "no servers" },
        { sc, NULL, key_a, 0, "no servers" },
        { sc, "127.0.0.1:11211", NULL, 0, "key file is required" },
        { sc, "127.0.0.1", key_a, 0, "expected host:port" },
        { sc, ":11211", key_a, 0, "expected host:port" },
        { sc, "127.0.0.1:0", key_a, 0, "bad port" },
        { sc, "127.0.0.1:65536", key_a, 0, "bad port" },
        { sc, "127.0.0.1:11x", key_a, 0, "bad port" },
        { sc, "127.0.0.1:11211,", key_a, 0, "bad server list" },
        { sc, "a:1,,b:2", key_a, 0, "bad server list" },
        { sc, "[::1:11211", key_a, 0, "expected [address]:port" },
        { sc, "127.0.0.1:11211", "/nonexistent/store.key", 0, "/nonexistent/store.key: cannot open" },
        { sc, "127.0.0.1:11211", key_short, 0, "32 to 4096 bytes" },
        { sc, "127.0.0.1:11211", key_a, 10001, "at most 10000" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = ktlsx_config_set_memcached_store(bad[i].cfg, bad[i].servers, bad[i].key, bad[i].timeout);
        if (rc != -1) fail_msg("case %zu (%s) returned %d", i, bad[i].servers ? bad[i].servers : "NULL", rc);
        if (!strstr(ktlsx_config_error(bad[i].cfg), bad[i].needle))
            fail_msg("case %zu: \"%s\" does not mention \"%s\"", i, ktlsx_config_error(bad[i].cfg), bad[i].needle);
    }
    /* Nothing installed by the failures; a good call installs it on the hook, and the hook's setter removes it. */
    assert_false(kx_store_enabled(sc));
    assert_int_equal(ktlsx_config_set_memcached_store(sc, "127.0.0.1:11211,[::1]:11212,localhost:11213", key_a, 0), 0);
    assert_true(kx_store_enabled(sc));
    assert_int_equal(stats(sc).store_servers, 3);
    assert_int_equal(ktlsx_config_set_session_store(sc, NULL), 0);
    assert_false(kx_store_enabled(sc));
    assert_int_equal(stats(sc).store_servers, 0);
    ktlsx_config_free(cc);
    ktlsx_config_free(sc);
}

static void test_resume_across_configs(void **state)
{
    (void)state;
    NEED_MEMCACHED();
    flush_all(main_mc.port);
    ktlsx_config *s1 = store_server(main_mc.spec, key_a, TIMEOUT_MS);
    ktlsx_config *s2 = store_server(main_mc.spec, key_a, TIMEOUT_MS);
    ktlsx_config *cc = tls12_client();
    blob sess;
    uint8_t sid[32], master[48];

    assert_int_equal(connect_once(cc, s1, NULL, &sess, sid, master, NULL), 0);
    assert_int_equal(stats(s1).store_puts, 1);
    assert_int_equal(stats(s1).store_misses, 0); /* a fresh client offers no ID: no lookup */

    /* What memcached holds: one key, named by an HMAC, not the ID; a value
     * without the ID or the master secret; expiring with the session (600 s). */
    dumped d[8];
    size_t n = 0;
    for (int round = 0; round < 20 && n != 1; round++) {
        if (round) usleep(50000);
        n = dump_keys(main_mc.port, d, 8);
    }
    assert_int_equal(n, 1);
    assert_int_equal(strncmp(d[0].key, "ktlsx1:", 7), 0);
    assert_int_equal(strlen(d[0].key), 7 + 64);
    char sid_hex[65];
    for (size_t i = 0; i < 32; i++) snprintf(sid_hex + 2 * i, 3, "%02x", sid[i]);
    assert_null(strstr(d[0].key, sid_hex));
    long now = (long)time(NULL);
    if (d[0].exp < now + 590 || d[0].exp > now + 601) fail_msg("entry expires at %ld, now %ld: want +600 s", d[0].exp, now);
    memcached_st *raw = raw_client(main_mc.port);
    size_t vlen;
    uint32_t flags;
    memcached_return_t r;
    char *v = memcached_get(raw, d[0].key, strlen(d[0].key), &vlen, &flags, &r);
    assert_non_null(v);
    assert_false(contains((uint8_t *)v, vlen, sid, 32));
    assert_false(contains((uint8_t *)v, vlen, master, 16));
    free(v);
    memcached_free(raw);

    /* Server 2 never saw the session: it resumes it from memcached. */
    assert_int_equal(connect_once(cc, s2, &sess, NULL, NULL, NULL, NULL), 1);
    assert_int_equal(stats(s2).store_hits, 1);
    /* Server 1 answers from its in-process cache in front: memcached is not asked. */
    assert_int_equal(connect_once(cc, s1, &sess, NULL, NULL, NULL, NULL), 1);
    struct ktlsx_session_stats st1 = stats(s1);
    assert_int_equal(st1.store_hits + st1.store_misses + st1.store_errors, 0);

    /* An ID memcached never had (the session of a server without the store): a miss, a full handshake. */
    ktlsx_config *s3 = store_server(main_mc.spec, key_a, TIMEOUT_MS);
    ktlsx_config *lone = kxt_server_cfg("ecdsa", NULL, NULL);
    KXT_CFG_OK(lone, ktlsx_config_set_tickets(lone, 0, 600));
    blob unknown;
    assert_int_equal(connect_once(cc, lone, NULL, &unknown, NULL, NULL, NULL), 0);
    ktlsx_config_free(lone);
    assert_int_equal(connect_once(cc, s3, &unknown, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(stats(s3).store_misses, 1);
    assert_int_equal(stats(s3).store_errors, 0);

    ktlsx_config_free(s1);
    ktlsx_config_free(s2);
    ktlsx_config_free(s3);
    ktlsx_config_free(cc);
}

/* The single entry's key and value (other than `except`). */
static void the_entry(char *key, size_t keycap, uint8_t *val, size_t *vlen, const char *except)
{
    dumped d[8];
    size_t n_keys = 0, found = 0;
    for (int round = 0; round < 20 && found != 1; round++) { /* an item just set may be listed a moment later */
        if (round) usleep(50000);
        n_keys = dump_keys(main_mc.port, d, 8);
        found = 0;
        for (size_t i = 0; i < n_keys; i++) {
            if (except && strcmp(d[i].key, except) == 0) continue;
            size_t kl = strnlen(d[i].key, sizeof d[i].key);
            assert_true(kl < keycap);
            memcpy(key, d[i].key, kl + 1);
            found++;
        }
    }
    if (found != 1) fail_msg("%zu entries in memcached (%zu listed), wanted 1", found, n_keys);
    memcached_st *raw = raw_client(main_mc.port);
    uint32_t flags;
    memcached_return_t r;
    size_t n;
    char *v = memcached_get(raw, key, strlen(key), &n, &flags, &r);
    assert_non_null(v);
    assert_true(n <= 4096);
    memcpy(val, v, n);
    *vlen = n;
    free(v);
    memcached_free(raw);
}

static void put_raw(const char *key, const uint8_t *val, size_t vlen)
{
    memcached_st *raw = raw_client(main_mc.port);
    assert_true(memcached_success(memcached_set(raw, key, strlen(key), (const char *)val, vlen, 600, 0)));
    memcached_free(raw);
}

static void test_corrupted_entries_rejected(void **state)
{
    (void)state;
    NEED_MEMCACHED();
    ktlsx_config *s1 = store_server(main_mc.spec, key_a, TIMEOUT_MS);
    ktlsx_config *cc = tls12_client();
    blob sess, other;
    char key[128], other_key[128];
    uint8_t val[4096], other_val[4096];
    size_t vlen, other_len;

    /* Byte flips in the magic, the nonce, the ciphertext and the tag; truncations. */
    enum { FLIP, TRUNC, MOVED, OTHER_KEY_FILE, CASES };
    static const size_t flip_at[] = { 0, 5, 40, 100 };
    for (int kind = 0; kind < CASES; kind++) {
        size_t variants = kind == FLIP ? sizeof flip_at / sizeof flip_at[0] : kind == TRUNC ? 3 : 1;
        for (size_t k = 0; k < variants; k++) {
            flush_all(main_mc.port);
            ktlsx_config *s2 = store_server(main_mc.spec, key_a, TIMEOUT_MS);
            assert_int_equal(connect_once(cc, s1, NULL, &sess, NULL, NULL, NULL), 0);
            the_entry(key, sizeof key, val, &vlen, NULL);
            if (kind == FLIP) {
                assert_true(flip_at[k] < vlen);
                val[flip_at[k]] ^= 0x20;
                put_raw(key, val, vlen);
            } else if (kind == TRUNC) {
                static const size_t keep[] = { 0, 20, 0 };
                size_t n = k == 2 ? vlen - 1 : keep[k];
                put_raw(key, val, n);
            } else if (kind == MOVED) {
                /* Another session's valid entry under this session's key. */
                assert_int_equal(connect_once(cc, s1, NULL, &other, NULL, NULL, NULL), 0);
                the_entry(other_key, sizeof other_key, other_val, &other_len, key);
                memcached_st *raw = raw_client(main_mc.port);
                assert_true(memcached_success(memcached_delete(raw, other_key, strlen(other_key), 0)));
                memcached_free(raw);
                put_raw(key, other_val, other_len);
            } else if (kind == OTHER_KEY_FILE) {
                /* An entry sealed by a server with another key file, under this session's key. */
                ktlsx_config *sb = store_server(main_mc.spec, key_b, TIMEOUT_MS);
                assert_int_equal(connect_once(cc, sb, NULL, &other, NULL, NULL, NULL), 0);
                the_entry(other_key, sizeof other_key, other_val, &other_len, key);
                put_raw(key, other_val, other_len);
                /* And that server, with its own names, does not even find this session: a miss. */
                assert_int_equal(connect_once(cc, sb, &sess, NULL, NULL, NULL, NULL), 0);
                assert_int_equal(stats(sb).store_misses, 1);
                assert_int_equal(stats(sb).store_rejected, 0);
                ktlsx_config_free(sb);
            }
            struct ktlsx_session_stats before = stats(s2);
            if (connect_once(cc, s2, &sess, NULL, NULL, NULL, NULL) != 0)
                fail_msg("kind %d variant %zu: resumed from a bad entry", kind, k);
            struct ktlsx_session_stats after = stats(s2);
            if (after.store_rejected != before.store_rejected + 1)
                fail_msg("kind %d variant %zu: rejected %llu -> %llu (misses %llu, errors %llu)", kind, k,
                         (unsigned long long)before.store_rejected, (unsigned long long)after.store_rejected,
                         (unsigned long long)after.store_misses, (unsigned long long)after.store_errors);
            assert_int_equal(after.store_hits, before.store_hits);
            /* Rejected entries are removed (the full handshake then stores a new session under a new ID). */
            assert_false(entry_exists(key));
            ktlsx_config_free(s2);
        }
    }
    ktlsx_config_free(s1);
    ktlsx_config_free(cc);
}

/* A listener that accepts connections (the kernel's backlog) and never answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_memcached_down(void **state)
{
    (void)state;
    NEED_MEMCACHED();
    mcd own = { 0 };
    if (!mcd_start(&own)) fail_msg("a second memcached would not start");
    ktlsx_config *s1 = store_server(own.spec, key_a, TIMEOUT_MS);
    ktlsx_config *s2 = store_server(own.spec, key_a, TIMEOUT_MS);
    ktlsx_config *cc = tls12_client();
    blob sess;
    uint64_t ms;
    assert_int_equal(connect_once(cc, s1, NULL, &sess, NULL, NULL, NULL), 0);
    assert_int_equal(connect_once(cc, s2, &sess, NULL, NULL, NULL, NULL), 1); /* up: shared */

    /* Killed: every handshake completes, full, none waits past the timeout. */
    mcd_stop(&own);
    ktlsx_config *s3 = store_server(own.spec, key_a, TIMEOUT_MS);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(connect_once(cc, s3, &sess, NULL, NULL, NULL, &ms), 0);
        if (ms > TIMEOUT_MS + SLACK_MS) fail_msg("dead memcached: handshake %d took %llu ms", i, (unsigned long long)ms);
    }
    assert_true(stats(s3).store_errors >= 1);
    assert_int_equal(stats(s3).store_hits, 0);

    /* Accepts, never answers: the timeout bounds it; the server is then left alone for a second. */
    int port;
    int lfd = silent_listener(&port);
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", port);
    ktlsx_config *s4 = store_server(spec, key_a, TIMEOUT_MS);
    uint64_t worst = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(connect_once(cc, s4, &sess, NULL, NULL, NULL, &ms), 0);
        if (ms > worst) worst = ms;
    }
    fprintf(stderr, "silent memcached, timeout %u ms: slowest of 3 handshakes %llu ms\n", TIMEOUT_MS,
            (unsigned long long)worst);
    if (worst > TIMEOUT_MS + SLACK_MS) fail_msg("silent memcached: a handshake took %llu ms", (unsigned long long)worst);
    assert_true(stats(s4).store_errors >= 1);
    /* Measured inside: the store waited (the poll half of the timeout) and never past the timeout. */
    uint64_t slowest = stats(s4).store_slowest_ms;
    fprintf(stderr, "silent memcached: slowest store operation %llu ms\n", (unsigned long long)slowest);
    if (slowest < TIMEOUT_MS / 2 - 20 || slowest > TIMEOUT_MS)
        fail_msg("slowest store operation %llu ms: want %u..%u", (unsigned long long)slowest, TIMEOUT_MS / 2 - 20,
                 TIMEOUT_MS);
    assert_true(stats(s3).store_slowest_ms <= TIMEOUT_MS); /* dead: refused at once */
    close(lfd);

    ktlsx_config_free(s1);
    ktlsx_config_free(s2);
    ktlsx_config_free(s3);
    ktlsx_config_free(s4);
    ktlsx_config_free(cc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setter_errors),
        cmocka_unit_test(test_resume_across_configs),
        cmocka_unit_test(test_corrupted_entries_rejected),
        cmocka_unit_test(test_memcached_down),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

#else /* KTLSX_NO_MEMCACHED */
#include <ktlsx/ktlsx.h>

/* Built without libmemcached: asking for the store is refused with the reason. */
static void test_built_without(void **state)
{
    (void)state;
    ktlsx_config *sc = ktlsx_config_new(KTLSX_SERVER);
    assert_non_null(sc);
    assert_int_equal(ktlsx_config_set_memcached_store(sc, "127.0.0.1:11211", "/nonexistent", 100), -1);
    assert_non_null(strstr(ktlsx_config_error(sc), "built without memcached support (make MEMCACHED=0)"));
    ktlsx_config_free(sc);
}

int main(void)
{
    static const struct CMUnitTest tests[] = { cmocka_unit_test(test_built_without) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
