/* The shim's rules: which sockets become TLS, and how.
 *
 *   # comment
 *   daemon /run/ktlsx/ktlsxd.sock          door path
 *   mode daemon|in-process|auto            (default auto)
 *   log error|warning|info|debug           (default warning)
 *   handshake-timeout MS                   deadline of every handshake (default 10000)
 *   nonblocking-timeout MS                 accepted, unused (an earlier draft's; docs/preload.md)
 *   serve PORT [profile=NAME] [cert=FILE key=FILE] [ca=FILE] [verify-client=require|optional|none] [alpn=LIST]
 *   connect HOST:PORT [name=SNI] [profile=NAME] [ca=FILE] [cert=FILE key=FILE] [alpn=LIST] [verify=peer|none]
 *
 * Every problem is "file:line: problem"; the shim turns it into exit(1) at
 * start.  The parser is pure (tests/unit/test_preload_rules.c,
 * tests/fuzz/fuzz_preload_rules.c); pl_rules_build loads the files. */
#include "preload.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PL_MAX_RULES 256
#define PL_LINE_MAX 4096

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *pl_mode_name(enum pl_mode m)
{
    switch (m) {
    case PL_MODE_DAEMON: return "daemon";
    case PL_MODE_INPROCESS: return "in-process";
    default: return "auto";
    }
}

void pl_rules_init(struct pl_rules *r)
{
    memset(r, 0, sizeof *r);
    r->mode = PL_MODE_AUTO;
    r->log_level = KTLSX_LOG_WARNING;
    r->hs_ms = PL_HS_MS_DEFAULT;
    r->nb_hs_ms = PL_NB_HS_MS_DEFAULT;
}

void pl_rules_free(struct pl_rules *r)
{
    if (r == NULL) return;
    for (size_t i = 0; i < r->n; i++) ktlsx_config_free(r->v[i].cfg);
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* A decimal in [lo, hi], the whole token. */
static int parse_uint(const char *s, long lo, long hi, long *out)
{
    long v = 0;
    if (*s == '\0') return -1;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        v = v * 10 + (*p - '0');
        if (v > hi) return -1;
    }
    if (v < lo) return -1;
    *out = v;
    return 0;
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/* A host name or IP literal: letters, digits, '-', '.', '_', ':' (IPv6), no empty labels at the ends. */
static int host_ok(const char *h)
{
    if (*h == '\0' || strlen(h) > KTLSX_DOOR_HOST_MAX) return 0;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_' && *p != ':') return 0;
    return 1;
}

static int alpn_ok(const char *a)
{
    /* comma-separated, each 1..255 printable, no spaces */
    size_t run = 0;
    if (*a == '\0') return 0;
    for (const char *p = a; *p; p++) {
        if (*p == ',') {
            if (run == 0) return 0;
            run = 0;
        } else if (!isgraph((unsigned char)*p)) {
            return 0;
        } else {
            run++;
        }
    }
    return run > 0;
}

/* HOST:PORT or [V6]:PORT into rule->host / rule->port. */
static int parse_hostport(const char *tok, struct pl_rule *rule, const char **why)
{
    const char *colon;
    char host[KTLSX_DOOR_HOST_MAX + 3];
    long port;
    size_t hl;

    if (tok[0] == '[') {
        const char *end = strchr(tok, ']');
        if (end == NULL || end[1] != ':') { *why = "expected [IPv6]:PORT"; return -1; }
        hl = (size_t)(end - tok - 1);
        colon = end + 1;
        if (hl == 0 || hl > KTLSX_DOOR_HOST_MAX) { *why = "bad host"; return -1; }
        memcpy(host, tok + 1, hl);
    } else {
        colon = strrchr(tok, ':');
        if (colon == NULL) { *why = "expected HOST:PORT"; return -1; }
        hl = (size_t)(colon - tok);
        if (hl == 0 || hl > KTLSX_DOOR_HOST_MAX || memchr(tok, ':', hl) != NULL) {
            *why = "bad host (IPv6 addresses go in brackets: [::1]:443)";
            return -1;
        }
        memcpy(host, tok, hl);
    }
    host[hl] = '\0';
    if (!host_ok(host)) { *why = "bad host"; return -1; }
    if (parse_uint(colon + 1, 1, 65535, &port) < 0) { *why = "bad port (1..65535)"; return -1; }
    memcpy(rule->host, host, hl + 1);
    rule->port = (uint16_t)port;
    return 0;
}

/* Split a line into at most `max` whitespace-separated tokens (in place). */
static int tokenize(char *line, char **tok, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (*p == '\0' || *p == '#') break;
        if (n == max) return -1;
        tok[n++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r') p++;
        if (*p == '\0') break;
        *p++ = '\0';
    }
    return n;
}

#define MAXTOK 16

static int parse_rule(char **tok, int ntok, struct pl_rule *rule, const char **why, char *whybuf, size_t whylen)
{
    unsigned seen = 0;
    static const char *const keys_serve[] = {"profile", "cert", "key", "ca", "verify-client", "alpn", NULL};
    static const char *const keys_connect[] = {"name", "profile", "ca", "cert", "key", "alpn", "verify", NULL};
    const char *const *keys = rule->kind == PL_SERVE ? keys_serve : keys_connect;

    rule->verify = PL_VERIFY_UNSET;
    if (ntok < 2) {
        *why = rule->kind == PL_SERVE ? "serve needs a PORT" : "connect needs HOST:PORT";
        return -1;
    }
    if (rule->kind == PL_SERVE) {
        long port;
        if (parse_uint(tok[1], 1, 65535, &port) < 0) { *why = "bad port (1..65535)"; return -1; }
        rule->port = (uint16_t)port;
    } else if (parse_hostport(tok[1], rule, why) < 0) {
        return -1;
    }
    for (int i = 2; i < ntok; i++) {
        char *eq = strchr(tok[i], '=');
        int k;
        if (eq == NULL || eq == tok[i]) {
            snprintf(whybuf, whylen, "expected key=value, got '%.64s'", tok[i]);
            *why = whybuf;
            return -1;
        }
        *eq = '\0';
        const char *key = tok[i], *val = eq + 1;
        for (k = 0; keys[k] != NULL; k++)
            if (strcmp(keys[k], key) == 0) break;
        if (keys[k] == NULL) {
            snprintf(whybuf, whylen, "unknown option '%.64s' for %s", key, rule->kind == PL_SERVE ? "serve" : "connect");
            *why = whybuf;
            return -1;
        }
        if (seen & (1u << k)) {
            snprintf(whybuf, whylen, "option '%s' given twice", key);
            *why = whybuf;
            return -1;
        }
        seen |= 1u << k;
        if (*val == '\0') {
            snprintf(whybuf, whylen, "option '%s' has an empty value", key);
            *why = whybuf;
            return -1;
        }
        int bad = 0;
        if (strcmp(key, "profile") == 0) {
            bad = copy_field(rule->profile, sizeof rule->profile, val);
            for (const char *p = val; !bad && *p; p++)
                if (!isgraph((unsigned char)*p)) bad = 1;
        } else if (strcmp(key, "cert") == 0) {
            bad = copy_field(rule->cert, sizeof rule->cert, val);
        } else if (strcmp(key, "key") == 0) {
            bad = copy_field(rule->key, sizeof rule->key, val);
        } else if (strcmp(key, "ca") == 0) {
            bad = copy_field(rule->ca, sizeof rule->ca, val);
        } else if (strcmp(key, "alpn") == 0) {
            bad = !alpn_ok(val) || copy_field(rule->alpn, sizeof rule->alpn, val);
        } else if (strcmp(key, "name") == 0) {
            bad = !host_ok(val) || copy_field(rule->name, sizeof rule->name, val);
        } else if (strcmp(key, "verify-client") == 0) {
            if (strcmp(val, "require") == 0) rule->verify = PL_VERIFY_REQUIRE;
            else if (strcmp(val, "optional") == 0) rule->verify = PL_VERIFY_OPTIONAL;
            else if (strcmp(val, "none") == 0) rule->verify = PL_VERIFY_NONE;
            else bad = 1;
        } else if (strcmp(key, "verify") == 0) {
            if (strcmp(val, "peer") == 0) rule->verify = PL_VERIFY_REQUIRE;
            else if (strcmp(val, "none") == 0) rule->verify = PL_VERIFY_NONE;
            else bad = 1;
        }
        if (bad) {
            snprintf(whybuf, whylen, "bad value for '%s': '%.64s'", key, val);
            *why = whybuf;
            return -1;
        }
    }
    if ((rule->cert[0] != '\0') != (rule->key[0] != '\0')) {
        *why = "cert= and key= go together";
        return -1;
    }
    if (rule->kind == PL_SERVE && rule->profile[0] == '\0' && rule->cert[0] == '\0') {
        *why = "serve needs profile=NAME (daemon) or cert=FILE key=FILE (in-process)";
        return -1;
    }
    return 0;
}

static int parse_global(char **tok, int ntok, struct pl_rules *out, const char **why)
{
    long v;
    if (ntok != 2) { *why = "expected one value"; return -1; }
    if (strcmp(tok[0], "daemon") == 0) {
        if (tok[1][0] != '/' || copy_field(out->daemon, sizeof out->daemon, tok[1]) < 0) {
            *why = "daemon needs an absolute socket path of at most 107 bytes";
            return -1;
        }
    } else if (strcmp(tok[0], "mode") == 0) {
        if (strcmp(tok[1], "daemon") == 0) out->mode = PL_MODE_DAEMON;
        else if (strcmp(tok[1], "in-process") == 0) out->mode = PL_MODE_INPROCESS;
        else if (strcmp(tok[1], "auto") == 0) out->mode = PL_MODE_AUTO;
        else { *why = "mode is daemon, in-process or auto"; return -1; }
    } else if (strcmp(tok[0], "log") == 0) {
        if (strcmp(tok[1], "error") == 0) out->log_level = KTLSX_LOG_ERROR;
        else if (strcmp(tok[1], "warning") == 0) out->log_level = KTLSX_LOG_WARNING;
        else if (strcmp(tok[1], "info") == 0) out->log_level = KTLSX_LOG_INFO;
        else if (strcmp(tok[1], "debug") == 0) out->log_level = KTLSX_LOG_DEBUG;
        else { *why = "log is error, warning, info or debug"; return -1; }
    } else if (strcmp(tok[0], "handshake-timeout") == 0 || strcmp(tok[0], "nonblocking-timeout") == 0) {
        if (parse_uint(tok[1], PL_HS_MS_MIN, PL_HS_MS_MAX, &v) < 0) {
            *why = "timeout is milliseconds, 100..600000";
            return -1;
        }
        if (tok[0][0] == 'h') out->hs_ms = (int)v;
        else out->nb_hs_ms = (int)v;
    }
    return 0;
}

int pl_rules_parse(const char *text, size_t len, const char *fname, struct pl_rules *out, char *err, size_t errlen)
{
    char line[PL_LINE_MAX + 1];
    char whybuf[160];
    size_t pos = 0;
    int lineno = 0;

    if (text == NULL && len > 0) { seterr(err, errlen, "%s: no text", fname); return -1; }
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        size_t n = end - pos;
        lineno++;
        if (n > PL_LINE_MAX) {
            seterr(err, errlen, "%s:%d: line longer than %d bytes", fname, lineno, PL_LINE_MAX);
            return -1;
        }
        if (memchr(text + pos, '\0', n) != NULL) {
            seterr(err, errlen, "%s:%d: NUL byte in the line", fname, lineno);
            return -1;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = end + 1;

        char *tok[MAXTOK];
        int ntok = tokenize(line, tok, MAXTOK);
        const char *why = NULL;
        if (ntok < 0) {
            seterr(err, errlen, "%s:%d: too many words (at most %d)", fname, lineno, MAXTOK);
            return -1;
        }
        if (ntok == 0) continue;
        if (strcmp(tok[0], "serve") == 0 || strcmp(tok[0], "connect") == 0) {
            struct pl_rule rule;
            memset(&rule, 0, sizeof rule);
            rule.kind = tok[0][0] == 's' ? PL_SERVE : PL_CONNECT;
            rule.line = lineno;
            snprintf(rule.where, sizeof rule.where, "%.*s:%d", PL_PATH_MAX, fname, lineno);
            if (parse_rule(tok, ntok, &rule, &why, whybuf, sizeof whybuf) < 0) {
                seterr(err, errlen, "%s:%d: %s", fname, lineno, why);
                return -1;
            }
            for (size_t i = 0; i < out->n; i++) {
                const struct pl_rule *o = &out->v[i];
                if (o->kind == rule.kind && o->port == rule.port &&
                    (rule.kind == PL_SERVE || strcasecmp(o->host, rule.host) == 0)) {
                    seterr(err, errlen, "%s:%d: %s %s%s%u repeats the rule of %s", fname, lineno, tok[0],
                           rule.kind == PL_CONNECT ? rule.host : "", rule.kind == PL_CONNECT ? ":" : "",
                           (unsigned)rule.port, o->where);
                    return -1;
                }
            }
            if (out->n >= PL_MAX_RULES) {
                seterr(err, errlen, "%s:%d: more than %d rules", fname, lineno, PL_MAX_RULES);
                return -1;
            }
            struct pl_rule *nv = realloc(out->v, (out->n + 1) * sizeof *nv);
            if (nv == NULL) {
                seterr(err, errlen, "%s:%d: out of memory", fname, lineno);
                return -1;
            }
            out->v = nv;
            out->v[out->n++] = rule;
        } else if (strcmp(tok[0], "daemon") == 0 || strcmp(tok[0], "mode") == 0 || strcmp(tok[0], "log") == 0 ||
                   strcmp(tok[0], "handshake-timeout") == 0 || strcmp(tok[0], "nonblocking-timeout") == 0) {
            if (parse_global(tok, ntok, out, &why) < 0) {
                seterr(err, errlen, "%s:%d: %s: %s", fname, lineno, tok[0], why);
                return -1;
            }
        } else {
            seterr(err, errlen, "%s:%d: unknown directive '%.64s' (serve, connect, daemon, mode, log, "
                   "handshake-timeout, nonblocking-timeout)", fname, lineno, tok[0]);
            return -1;
        }
    }
    return 0;
}

static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    size_t cap = 0, n = 0;
    char *b = NULL;
    if (f == NULL) {
        seterr(err, errlen, "%s: cannot open the rules file: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= 1u << 20) {
                seterr(err, errlen, "%s: rules file larger than 1 MiB", path);
                goto fail;
            }
            cap = cap ? cap * 2 : 4096;
            char *nb = realloc(b, cap);
            if (nb == NULL) { seterr(err, errlen, "%s: out of memory", path); goto fail; }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) { seterr(err, errlen, "%s: read error", path); goto fail; }
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
fail:
    free(b);
    fclose(f);
    return -1;
}

/* One environment value as one line of rules: no line breaks, no whitespace inside (paths with spaces: use a file). */
static int env_line(const char *var, const char *val, char *line, size_t cap, const char *prefix, char *err,
                    size_t errlen)
{
    for (const char *p = val; *p; p++)
        if (isspace((unsigned char)*p)) {
            seterr(err, errlen, "%s: whitespace in the value (use KTLSX_RULES=FILE)", var);
            return -1;
        }
    if ((size_t)snprintf(line, cap, "%s%s", prefix, val) >= cap) {
        seterr(err, errlen, "%s: value too long", var);
        return -1;
    }
    return 0;
}

int pl_rules_from_env(struct pl_rules *r, char *(*get)(const char *), char *err, size_t errlen)
{
    const char *v;
    char line[PL_LINE_MAX];

    pl_rules_init(r);
    if ((v = get("KTLSX_RULES")) != NULL && *v != '\0') {
        char *buf = NULL;
        size_t len = 0;
        if (read_file(v, &buf, &len, err, errlen) < 0) return -1;
        int rc = pl_rules_parse(buf, len, v, r, err, errlen);
        free(buf);
        if (rc < 0) return -1;
    }
    static const struct { const char *var, *prefix; } globals[] = {
        {"KTLSX_DAEMON", "daemon "},
        {"KTLSX_MODE", "mode "},
        {"KTLSX_LOG", "log "},
        {"KTLSX_HANDSHAKE_TIMEOUT_MS", "handshake-timeout "},
    };
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) {
        if ((v = get(globals[i].var)) == NULL || *v == '\0') continue;
        if (env_line(globals[i].var, v, line, sizeof line, globals[i].prefix, err, errlen) < 0 ||
            pl_rules_parse(line, strlen(line), globals[i].var, r, err, errlen) < 0)
            return -1;
    }
    if ((v = get("KTLSX_SERVE")) != NULL && *v != '\0') {
        const char *cert = get("KTLSX_CERT"), *key = get("KTLSX_KEY"), *prof = get("KTLSX_PROFILE");
        char opts[PL_LINE_MAX / 2] = "";
        size_t o = 0;
        if (prof != NULL && *prof) o += (size_t)snprintf(opts + o, sizeof opts - o, " profile=%s", prof);
        if (o < sizeof opts && cert != NULL && *cert) o += (size_t)snprintf(opts + o, sizeof opts - o, " cert=%s", cert);
        if (o < sizeof opts && key != NULL && *key) o += (size_t)snprintf(opts + o, sizeof opts - o, " key=%s", key);
        if (o >= sizeof opts) { seterr(err, errlen, "KTLSX_SERVE: options too long"); return -1; }
        if (env_line("KTLSX_SERVE", v, line, sizeof line / 2, "serve ", err, errlen) < 0) return -1;
        size_t l = strlen(line);
        if ((size_t)snprintf(line + l, sizeof line - l, "%s", opts) >= sizeof line - l) {
            seterr(err, errlen, "KTLSX_SERVE: too long");
            return -1;
        }
        if (pl_rules_parse(line, strlen(line), "KTLSX_SERVE", r, err, errlen) < 0) return -1;
    }
    if ((v = get("KTLSX_CONNECT")) != NULL && *v != '\0') {
        const char *ca = get("KTLSX_CA");
        if (env_line("KTLSX_CONNECT", v, line, sizeof line / 2, "connect ", err, errlen) < 0) return -1;
        if (ca != NULL && *ca) {
            size_t l = strlen(line);
            if ((size_t)snprintf(line + l, sizeof line - l, " ca=%s", ca) >= sizeof line - l) {
                seterr(err, errlen, "KTLSX_CA: too long");
                return -1;
            }
        }
        if (pl_rules_parse(line, strlen(line), "KTLSX_CONNECT", r, err, errlen) < 0) return -1;
    }
    return 0;
}

int pl_rules_build(struct pl_rules *r, char *err, size_t errlen)
{
    for (size_t i = 0; i < r->n; i++) {
        struct pl_rule *u = &r->v[i];
        int inproc_ok = u->kind == PL_CONNECT || u->cert[0] != '\0';
        if (r->mode == PL_MODE_DAEMON && u->profile[0] == '\0') {
            seterr(err, errlen, "%s: mode daemon: the rule needs profile=NAME (a ktlsxd profile)", u->where);
            return -1;
        }
        if (r->mode == PL_MODE_INPROCESS && !inproc_ok) {
            seterr(err, errlen, "%s: mode in-process: serve needs cert=FILE key=FILE", u->where);
            return -1;
        }
        if (r->mode == PL_MODE_DAEMON || !inproc_ok) continue;
        /* In-process configuration, built now: a missing or wrong file stops the program at start. */
        ktlsx_config *cfg = ktlsx_config_new(u->kind == PL_SERVE ? KTLSX_SERVER : KTLSX_CLIENT);
        if (cfg == NULL) { seterr(err, errlen, "%s: out of memory", u->where); return -1; }
        int rc = 0;
        if (u->cert[0] != '\0') rc = ktlsx_config_add_cert(cfg, u->cert, u->key);
        if (rc == 0 && u->ca[0] != '\0') rc = ktlsx_config_set_ca_file(cfg, u->ca);
        if (rc == 0 && u->alpn[0] != '\0') rc = ktlsx_config_set_alpn(cfg, u->alpn);
        if (rc == 0 && u->kind == PL_SERVE && u->verify != PL_VERIFY_UNSET)
            rc = ktlsx_config_set_verify_client(cfg, (enum ktlsx_verify_client)u->verify);
        if (rc == 0 && u->kind == PL_CONNECT && u->verify == PL_VERIFY_NONE) rc = ktlsx_config_set_insecure(cfg, 1);
        if (rc < 0) {
            seterr(err, errlen, "%s: %s", u->where, ktlsx_config_error(cfg));
            ktlsx_config_free(cfg);
            return -1;
        }
        u->cfg = cfg;
    }
    return 0;
}

const struct pl_rule *pl_rules_serve(const struct pl_rules *r, uint16_t port)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].kind == PL_SERVE && r->v[i].port == port) return &r->v[i];
    return NULL;
}

const struct pl_rule *pl_rules_connect(const struct pl_rules *r, const char *addr, const char *name, uint16_t port)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct pl_rule *u = &r->v[i];
        if (u->kind != PL_CONNECT || u->port != port) continue;
        if (addr != NULL && strcasecmp(u->host, addr) == 0) return u;
        if (name != NULL && strcasecmp(u->host, name) == 0) return u;
    }
    return NULL;
}
