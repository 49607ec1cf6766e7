/* ktlsx_conn_import: the blob ktlsxd hands an application with a socket,
 * read as untrusted input.
 *
 * Input: the blob, imported on a client and on a server configuration (no
 * certificate, no key; at most one may accept it: the role must match).  An
 * accepted blob must give a connection that
 *   - exports again, and that export imports and re-exports to the same bytes
 *     (nothing invented or lost between the two formats' readers and writers);
 *   - answers every getter with a terminated string;
 *   - survives the post-handshake calls: write, KeyUpdate, read, close_notify,
 *     get_session (their results are whatever the state allows).
 *
 * Seeds (tests/fuzz/corpus/fuzz_import/) are real exports of every suite and
 * role, dumped by the unit test:
 *   mkdir -p tests/fuzz/corpus/fuzz_import
 *   KTLSX_EXPORT_SEED_DIR=tests/fuzz/corpus/fuzz_import build/tests/test_export */
#include "handshake/conn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ktlsx_config *client_cfg, *server_cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    client_cfg = ktlsx_config_new(KTLSX_CLIENT);
    server_cfg = ktlsx_config_new(KTLSX_SERVER);
    if (!client_cfg || !server_cfg) abort();
    return 0;
}

static void check_getters(const ktlsx_conn *c)
{
    const char *s[] = { ktlsx_version_name(c), ktlsx_cipher_name(c), ktlsx_group_name(c),
                        ktlsx_peer_subject(c), ktlsx_sni(c), ktlsx_alpn(c) ? ktlsx_alpn(c) : "" };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (!s[i] || strlen(s[i]) >= KX_MAX_NAME) abort();
    if (ktlsx_version(c) != KTLSX_TLS12 && ktlsx_version(c) != KTLSX_TLS13) abort();
    if (ktlsx_handshake((ktlsx_conn *)c) != KTLSX_DONE) abort();
}

/* export(c) must import again and re-export to the same bytes. */
static void check_roundtrip(ktlsx_config *cfg, const ktlsx_conn *c)
{
    static uint8_t a[KTLSX_EXPORT_MAX], b[KTLSX_EXPORT_MAX];
    const char *why = NULL;
    long na = ktlsx_conn_export(c, a, sizeof a, &why);
    if (na <= 0) {
        fprintf(stderr, "fuzz_import: an imported connection does not export: %s\n", why ? why : "?");
        abort();
    }
    ktlsx_conn *c2 = ktlsx_conn_import(cfg, a, (size_t)na, &why);
    if (!c2) {
        fprintf(stderr, "fuzz_import: a re-export does not import: %s\n", why ? why : "?");
        abort();
    }
    long nb = ktlsx_conn_export(c2, b, sizeof b, &why);
    if (nb != na || memcmp(a, b, (size_t)na) != 0) {
        fprintf(stderr, "fuzz_import: export -> import -> export changed the blob\n");
        abort();
    }
    ktlsx_conn_free(c2);
}

static void exercise(ktlsx_conn *c)
{
    uint8_t buf[256];
    const uint8_t *out;
    (void)ktlsx_write(c, "x", 1);
    (void)ktlsx_key_update(c, 1);
    (void)ktlsx_read(c, buf, sizeof buf);
    (void)ktlsx_get_session(c, buf, sizeof buf);
    (void)ktlsx_close_notify(c);
    size_t n = ktlsx_pending_output(c, &out);
    ktlsx_output_done(c, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * KTLSX_EXPORT_MAX) return 0;
    ktlsx_config *cfgs[2] = { client_cfg, server_cfg };
    int accepted = 0;
    for (int i = 0; i < 2; i++) {
        const char *why = NULL;
        ktlsx_conn *c = ktlsx_conn_import(cfgs[i], data, size, &why);
        if (!c) {
            if (!why || !*why) abort(); /* a refusal always says why */
            continue;
        }
        accepted++;
        if (ktlsx_conn_export(c, NULL, 0, NULL) != -1) abort();
        check_getters(c);
        check_roundtrip(cfgs[i], c);
        exercise(c);
        ktlsx_conn_free(c);
    }
    if (accepted > 1) abort(); /* one blob, one role */
    return 0;
}
