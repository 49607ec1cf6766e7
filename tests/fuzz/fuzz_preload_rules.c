/* The preload shim's rules parser (preload/rules.c) on arbitrary text: a
 * rules file is read at every program start, possibly from a path an
 * operator mistyped.  Whatever the input: no crash, no overread; a refusal
 * carries "fuzz.rules:N: ..." naming a line that exists; an accepted file's
 * rules have terminated fields, ports 1..65535, and the lookups find them. */
#include "../../preload/rules.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void terminated(const char *s, size_t cap)
{
    if (strnlen(s, cap) == cap) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pl_rules r;
    char err[512];
    pl_rules_init(&r);
    err[0] = '\0';
    /* copy: the parser must not read past `size` (ASan sees an exact-size heap block) */
    char *text = malloc(size ? size : 1);
    if (text == NULL) return 0;
    memcpy(text, data, size);
    if (pl_rules_parse(text, size, "fuzz.rules", &r, err, sizeof err) < 0) {
        if (strncmp(err, "fuzz.rules:", 11) != 0) abort();
        long line = strtol(err + 11, NULL, 10);
        size_t lines = 1;
        for (size_t i = 0; i < size; i++) lines += text[i] == '\n';
        if (line < 1 || (size_t)line > lines) abort();
    } else {
        for (size_t i = 0; i < r.n; i++) {
            const struct pl_rule *u = &r.v[i];
            terminated(u->host, sizeof u->host);
            terminated(u->name, sizeof u->name);
            terminated(u->profile, sizeof u->profile);
            terminated(u->cert, sizeof u->cert);
            terminated(u->key, sizeof u->key);
            terminated(u->ca, sizeof u->ca);
            terminated(u->alpn, sizeof u->alpn);
            if (u->port == 0) abort();
            if (u->kind == PL_SERVE && pl_rules_serve(&r, u->port) != u) abort();
            if (u->kind == PL_CONNECT && pl_rules_connect(&r, u->host, NULL, u->port) == NULL) abort();
        }
        if (r.hs_ms < PL_HS_MS_MIN || r.hs_ms > PL_HS_MS_MAX) abort();
    }
    pl_rules_free(&r);
    free(text);
    return 0;
}
