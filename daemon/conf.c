/* ktlsxd's configuration file: INI, read with libinih.
 *
 *   [daemon]            socket, log_level, event_loop, ticket_key_file, max_clients, max_handshakes_per_uid,
 *                       request_timeout_ms, handshake_timeout_ms, max_handshake_timeout_ms
 *   [server NAME]       cert + key (pairs, several), ca, crl, verify_client, alpn, versions, ciphers,
 *   [client NAME]       groups, tickets, session_cache (entries, or memcached:host:port[,...] with
 *                       session_store_key and session_store_timeout_ms), allow_uids, allow_gids, export_state
 *   [kernel]            enabled, server_profile, client_profile, versions, ca_file (the netlink door, door_kernel.c)
 *
 * Each key is applied to the profile's ktlsx_config as it is read, so a
 * refusal (a missing file, a key that does not match its certificate, an
 * unknown cipher) is reported at the line that asked for it: "file:line:
 * problem".  The first problem wins; the file is refused as a whole. */
#include "ktlsxd.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <grp.h>
#include <ini.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct parse {
    struct kd_conf *conf;
    FILE *f;
    int line;          /* of the line libinih is handling (our reader counts) */
    int section_line;  /* of the last [section] header read */
    char err[512];     /* the first problem, "line: problem" with no file yet */
    int err_line;
    char section[128]; /* the section of the previous key */
};

static void problem(struct parse *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(struct parse *p, int line, const char *fmt, ...)
{
    if (p->err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    if (!p->err[0]) snprintf(p->err, sizeof p->err, "?");
    p->err_line = line;
}

/* libinih reads through this so that the handler knows the line number. */
static char *count_lines(char *str, int num, void *stream)
{
    struct parse *p = stream;
    char *s = fgets(str, num, p->f);
    if (s) {
        p->line++;
        if (s[strspn(s, " \t")] == '[') p->section_line = p->line;
    }
    return s;
}

/* Bounded copy; callers have checked the length, so nothing is ever cut. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *out)
{
    char *end;
    if (!isdigit((unsigned char)v[0])) return -1;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n > max) return -1;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1")) return *out = true, 0;
    if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0")) return *out = false, 0;
    return -1;
}

static int parse_version(const char *v, uint16_t *out)
{
    if (!strcmp(v, "1.2")) return *out = KTLSX_TLS12, 0;
    if (!strcmp(v, "1.3")) return *out = KTLSX_TLS13, 0;
    return -1;
}

/* "1000, alice, 0": numbers or names, comma or space separated; "*" = anyone (uids only). */
static int parse_ids(struct parse *p, struct kd_profile *pr, const char *v, bool gids)
{
    char copy[1024];
    if (strlen(v) >= sizeof copy) return problem(p, p->line, "list too long"), -1;
    copy_str(copy, sizeof copy, v);
    for (char *save = NULL, *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        unsigned long long n;
        if (!gids && !strcmp(t, "*")) {
            pr->any_uid = true;
            continue;
        }
        if (parse_uint(t, 0xfffffffeULL, &n) < 0) {
            if (gids) {
                const struct group *g = getgrnam(t);
                if (!g) return problem(p, p->line, "allow_gids: no group '%s'", t), -1;
                n = g->gr_gid;
            } else {
                const struct passwd *u = getpwnam(t);
                if (!u) return problem(p, p->line, "allow_uids: no user '%s'", t), -1;
                n = u->pw_uid;
            }
        }
        if ((gids ? pr->ngids : pr->nuids) == KD_MAX_IDS)
            return problem(p, p->line, "%s: more than %d entries", gids ? "allow_gids" : "allow_uids", KD_MAX_IDS), -1;
        if (gids) pr->gids[pr->ngids++] = (gid_t)n;
        else pr->uids[pr->nuids++] = (uid_t)n;
    }
    return 0;
}

static int daemon_key(struct parse *p, const char *name, const char *v)
{
    struct kd_conf *c = p->conf;
    unsigned long long n;
    if (!strcmp(name, "socket")) {
        if (v[0] != '/' || strlen(v) >= sizeof c->socket_path)
            return problem(p, p->line, "socket: want an absolute path under %zu bytes, not '%s'",
                           sizeof c->socket_path, v), -1;
        copy_str(c->socket_path, sizeof c->socket_path, v);
    } else if (!strcmp(name, "log_level")) {
        static const struct { const char *n; int l; } levels[] = {
            { "error", KTLSX_LOG_ERROR }, { "warning", KTLSX_LOG_WARNING },
            { "info", KTLSX_LOG_INFO },   { "debug", KTLSX_LOG_DEBUG },
        };
        for (size_t i = 0; i < 4; i++)
            if (!strcmp(v, levels[i].n)) return c->log_level = levels[i].l, 0;
        return problem(p, p->line, "log_level: want error, warning, info or debug, not '%s'", v), -1;
    } else if (!strcmp(name, "ticket_key_file")) {
        if (c->nticket_key_files == KD_MAX_TICKET_KEY_FILES)
            return problem(p, p->line, "ticket_key_file: at most %d", KD_MAX_TICKET_KEY_FILES), -1;
        if (strlen(v) >= sizeof c->ticket_key_files[0]) return problem(p, p->line, "ticket_key_file: path too long"), -1;
        copy_str(c->ticket_key_files[c->nticket_key_files++], sizeof c->ticket_key_files[0], v);
    } else if (!strcmp(name, "event_loop")) {
        if (strcmp(v, "auto") != 0 && strcmp(v, "epoll") != 0)
            return problem(p, p->line, "event_loop: want auto or epoll, not '%s'", v), -1;
        c->epoll_only = !strcmp(v, "epoll");
    } else if (!strcmp(name, "max_clients")) {
        if (parse_uint(v, 1000000, &n) < 0 || n == 0)
            return problem(p, p->line, "max_clients: want 1 to 1000000, not '%s'", v), -1;
        c->max_clients = (size_t)n;
    } else if (!strcmp(name, "max_clients_per_uid")) {
        if (parse_uint(v, 1000000, &n) < 0 || n == 0)
            return problem(p, p->line, "max_clients_per_uid: want 1 to 1000000, not '%s'", v), -1;
        c->max_clients_per_uid = (size_t)n;
    } else if (!strcmp(name, "max_handshakes_per_uid")) {
        if (parse_uint(v, 1000000, &n) < 0 || n == 0)
            return problem(p, p->line, "max_handshakes_per_uid: want 1 to 1000000, not '%s'", v), -1;
        c->max_per_uid = (size_t)n;
    } else if (!strcmp(name, "request_timeout_ms") || !strcmp(name, "handshake_timeout_ms") ||
               !strcmp(name, "max_handshake_timeout_ms")) {
        if (parse_uint(v, 3600000, &n) < 0 || n < 10)
            return problem(p, p->line, "%s: want 10 to 3600000, not '%s'", name, v), -1;
        *(name[0] == 'r' ? &c->request_timeout_ms : name[0] == 'h' ? &c->handshake_timeout_ms
                                                                    : &c->max_handshake_timeout_ms) = (int)n;
    } else if (!strcmp(name, "workers")) {
        if (!strcmp(v, "auto")) return c->workers = 0, 0;
        if (parse_uint(v, KD_MAX_WORKERS, &n) < 0 || n == 0)
            return problem(p, p->line, "workers: want auto or 1 to %d, not '%s'", KD_MAX_WORKERS, v), -1;
        c->workers = (int)n;
    } else if (!strcmp(name, "control_socket")) {
        if (!strcmp(v, "none")) return c->control_path[0] = '\0', c->control_set = true, 0;
        if (v[0] != '/' || strlen(v) >= sizeof c->control_path)
            return problem(p, p->line, "control_socket: want none or an absolute path under %zu bytes, not '%s'",
                           sizeof c->control_path, v), -1;
        copy_str(c->control_path, sizeof c->control_path, v);
        c->control_set = true;
    } else if (!strcmp(name, "control_allow_uids")) {
        struct kd_profile ids = { 0 };
        ids.line = p->line;
        if (parse_ids(p, &ids, v, false) < 0) return -1;
        memcpy(c->control_uids, ids.uids, sizeof c->control_uids);
        c->ncontrol_uids = ids.nuids;
        c->control_any_uid = ids.any_uid;
    } else if (!strcmp(name, "user")) {
        if (!v[0] || strlen(v) >= sizeof c->user) return problem(p, p->line, "user: want a user name"), -1;
        /* Checked at start (not here): --check on a build machine without the user stays useful. */
        copy_str(c->user, sizeof c->user, v);
    } else if (!strcmp(name, "seccomp")) {
        if (parse_bool(v, &c->seccomp) < 0) return problem(p, p->line, "seccomp: want yes or no, not '%s'", v), -1;
    } else if (!strcmp(name, "ticket_rotation_s")) {
        if (parse_uint(v, 7 * 86400, &n) < 0 || (n != 0 && n < 60))
            return problem(p, p->line, "ticket_rotation_s: want 0 (never) or 60 to 604800, not '%s'", v), -1;
        c->ticket_rotation_s = (unsigned)n;
    } else {
        return problem(p, p->line, "unknown key '%s' in [daemon]", name), -1;
    }
    return 0;
}

static int profile_name_ok(const char *v)
{
    size_t len = strlen(v);
    if (len == 0 || len > KTLSX_DOOR_NAME_MAX) return -1;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("-_.", v[i])) return -1;
    return 0;
}

/* record_size_limit (RFC 8449), in [kernel] and in profiles: 64..16385, or 0 (not offered). */
static int parse_record_size_limit(struct parse *p, const char *v, unsigned *out)
{
    unsigned long long n;
    if (parse_uint(v, 16385, &n) < 0 || (n != 0 && n < 64))
        return problem(p, p->line, "record_size_limit: want 64 to 16385 (0: not offered), not '%s'", v), -1;
    *out = (unsigned)n;
    return 0;
}

/* [kernel]: enabled, server_profile, client_profile, versions, ca_file, record_size_limit.  Which
 * profile a name means is checked once the whole file is read. */
static int kernel_key(struct parse *p, const char *name, const char *v)
{
    struct kd_conf *c = p->conf;
    if (!strcmp(name, "enabled")) {
        if (parse_bool(v, &c->kernel_enabled) < 0) return problem(p, p->line, "enabled: want yes or no, not '%s'", v), -1;
    } else if (!strcmp(name, "server_profile") || !strcmp(name, "client_profile")) {
        if (profile_name_ok(v) < 0) return problem(p, p->line, "%s: not a profile name: '%s'", name, v), -1;
        bool server = name[0] == 's';
        copy_str(server ? c->kernel_server_profile : c->kernel_client_profile, KTLSX_DOOR_NAME_MAX + 1, v);
        *(server ? &c->kernel_server_line : &c->kernel_client_line) = p->line;
    } else if (!strcmp(name, "ca_file")) {
        if (strlen(v) >= sizeof c->kernel_ca_file || access(v, R_OK) < 0)
            return problem(p, p->line, "ca_file: cannot read '%s': %s", v,
                           strlen(v) >= sizeof c->kernel_ca_file ? "path too long" : strerror(errno)), -1;
        copy_str(c->kernel_ca_file, sizeof c->kernel_ca_file, v);
    } else if (!strcmp(name, "record_size_limit")) { /* for the requests that use no profile */
        if (parse_record_size_limit(p, v, &c->kernel_record_size_limit) < 0) return -1;
    } else if (!strcmp(name, "versions")) {
        char lo[8] = "", hi[8] = "";
        const char *dash = strchr(v, '-');
        if (strlen(v) < sizeof lo && !dash) copy_str(lo, sizeof lo, v), copy_str(hi, sizeof hi, v);
        else if (dash && (size_t)(dash - v) < sizeof lo && strlen(dash + 1) < sizeof hi)
            memcpy(lo, v, (size_t)(dash - v)), copy_str(hi, sizeof hi, dash + 1);
        if (parse_version(lo, &c->kernel_min_version) < 0 || parse_version(hi, &c->kernel_max_version) < 0 ||
            c->kernel_min_version > c->kernel_max_version)
            return problem(p, p->line, "versions: want 1.3, 1.2 or 1.2-1.3, not '%s'", v), -1;
    } else {
        return problem(p, p->line, "unknown key '%s' in [kernel]", name), -1;
    }
    return 0;
}

/* A setter's refusal, at this line. */
static int setter(struct parse *p, struct kd_profile *pr, int rc)
{
    if (rc < 0) problem(p, p->line, "%s", ktlsx_config_error(pr->cfg));
    return rc;
}

static int profile_key(struct parse *p, struct kd_profile *pr, const char *name, const char *v)
{
    bool server = pr->role == KTLSX_SERVER, b;
    unsigned long long n;
    if (!strcmp(name, "cert")) {
        if (pr->cert_pending[0]) return problem(p, pr->cert_line, "cert without a key line after it"), -1;
        if (strlen(v) >= sizeof pr->cert_pending) return problem(p, p->line, "cert: path too long"), -1;
        copy_str(pr->cert_pending, sizeof pr->cert_pending, v);
        pr->cert_line = p->line;
    } else if (!strcmp(name, "key")) {
        if (!pr->cert_pending[0]) return problem(p, p->line, "key without a cert line before it"), -1;
        if (setter(p, pr, ktlsx_config_add_cert(pr->cfg, pr->cert_pending, v)) < 0) return -1;
        pr->cert_pending[0] = '\0';
        pr->certs++;
    } else if (!strcmp(name, "psk_identity")) {
        if (pr->psk_set || pr->psk_pending[0]) return problem(p, p->line, "psk_identity: one PSK per profile"), -1;
        if (!v[0] || strlen(v) >= sizeof pr->psk_pending) return problem(p, p->line, "psk_identity: 1 to 255 bytes"), -1;
        copy_str(pr->psk_pending, sizeof pr->psk_pending, v);
        pr->psk_line = p->line;
    } else if (!strcmp(name, "psk_hash")) {
        if (strcmp(v, "sha256") != 0 && strcmp(v, "sha384") != 0)
            return problem(p, p->line, "psk_hash: want sha256 or sha384, not '%s'", v), -1;
        if (pr->psk_set) return problem(p, p->line, "psk_hash: before psk_file"), -1;
        pr->psk_sha384 = !strcmp(v, "sha384");
    } else if (!strcmp(name, "psk_file")) {
        if (!pr->psk_pending[0]) return problem(p, p->line, "psk_file without a psk_identity line before it"), -1;
        if (setter(p, pr, ktlsx_config_set_psk_file(pr->cfg, pr->psk_pending, v, pr->psk_sha384)) < 0) return -1;
        OPENSSL_cleanse(pr->psk_pending, sizeof pr->psk_pending);
        pr->psk_set = true;
    } else if (!strcmp(name, "ca")) {
        return setter(p, pr, ktlsx_config_set_ca_file(pr->cfg, v));
    } else if (!strcmp(name, "crl")) {
        return setter(p, pr, ktlsx_config_set_crl_file(pr->cfg, v));
    } else if (!strcmp(name, "verify_client") && server) {
        enum ktlsx_verify_client m = !strcmp(v, "none") ? KTLSX_VERIFY_NONE
                                     : !strcmp(v, "optional") ? KTLSX_VERIFY_OPTIONAL
                                     : !strcmp(v, "require") ? KTLSX_VERIFY_REQUIRE : (enum ktlsx_verify_client)-1;
        if ((int)m < 0) return problem(p, p->line, "verify_client: want none, optional or require, not '%s'", v), -1;
        return setter(p, pr, ktlsx_config_set_verify_client(pr->cfg, m));
    } else if (!strcmp(name, "alpn")) {
        return setter(p, pr, ktlsx_config_set_alpn(pr->cfg, v));
    } else if (!strcmp(name, "record_size_limit")) { /* RFC 8449: offered by a client, answered by a server */
        unsigned limit;
        if (parse_record_size_limit(p, v, &limit) < 0) return -1;
        return setter(p, pr, ktlsx_config_set_record_size_limit(pr->cfg, limit));
    } else if (!strcmp(name, "ciphers")) {
        return setter(p, pr, ktlsx_config_set_ciphers(pr->cfg, v));
    } else if (!strcmp(name, "groups")) {
        return setter(p, pr, ktlsx_config_set_groups(pr->cfg, v));
    } else if (!strcmp(name, "versions")) {
        char lo[8] = "", hi[8] = "";
        uint16_t min, max;
        const char *dash = strchr(v, '-');
        if (strlen(v) < sizeof lo && !dash) copy_str(lo, sizeof lo, v), copy_str(hi, sizeof hi, v);
        else if (dash && (size_t)(dash - v) < sizeof lo && strlen(dash + 1) < sizeof hi)
            memcpy(lo, v, (size_t)(dash - v)), copy_str(hi, sizeof hi, dash + 1);
        if (parse_version(lo, &min) < 0 || parse_version(hi, &max) < 0 || min > max)
            return problem(p, p->line, "versions: want 1.2, 1.3 or 1.2-1.3, not '%s'", v), -1;
        return setter(p, pr, ktlsx_config_set_versions(pr->cfg, min, max));
    } else if (!strcmp(name, "tickets") && server) {
        if (parse_uint(v, 16, &n) < 0) return problem(p, p->line, "tickets: want 0 (off) to 16, not '%s'", v), -1;
        return setter(p, pr, ktlsx_config_set_tickets(pr->cfg, (unsigned)n, 7200));
    } else if (!strcmp(name, "session_cache") && server && !strncmp(v, "memcached:", 10)) { /* issue 12 */
        if (!v[10] || strlen(v + 10) >= sizeof pr->store_pending)
            return problem(p, p->line, "session_cache: want memcached:host:port[,host:port...], not '%s'", v), -1;
        copy_str(pr->store_pending, sizeof pr->store_pending, v + 10);
        pr->store_line = p->line;
    } else if (!strcmp(name, "session_store_timeout_ms") && server) {
        if (parse_uint(v, 10000, &n) < 0 || n == 0)
            return problem(p, p->line, "session_store_timeout_ms: want 1 to 10000, not '%s'", v), -1;
        pr->store_timeout_ms = (unsigned)n;
    } else if (!strcmp(name, "session_store_key") && server) {
        if (!pr->store_pending[0])
            return problem(p, p->line, "session_store_key without a session_cache = memcached:... line before it"), -1;
        if (setter(p, pr, ktlsx_config_set_memcached_store(pr->cfg, pr->store_pending, v, pr->store_timeout_ms)) < 0)
            return -1;
        pr->store_pending[0] = '\0';
    } else if (!strcmp(name, "session_cache") && server) {
        if (parse_uint(v, 1000000, &n) < 0)
            return problem(p, p->line, "session_cache: want 0 (off) to 1000000 entries, not '%s'", v), -1;
        return setter(p, pr, ktlsx_config_set_session_cache(pr->cfg, (size_t)n, 300));
    } else if (!strcmp(name, "allow_uids") || !strcmp(name, "allow_gids")) {
        return parse_ids(p, pr, v, name[6] == 'g');
    } else if (!strcmp(name, "export_state")) {
        if (parse_bool(v, &b) < 0) return problem(p, p->line, "export_state: want yes or no, not '%s'", v), -1;
        pr->export_state = b;
    } else {
        return problem(p, p->line, "unknown key '%s' in a %s profile", name, server ? "server" : "client"), -1;
    }
    return 0;
}

/* The checks a profile can only have once all its keys are read. */
static void finish_profile(struct parse *p, struct kd_profile *pr)
{
    if (pr->cert_pending[0]) problem(p, pr->cert_line, "cert without a key line after it");
    else if (pr->psk_pending[0]) problem(p, pr->psk_line, "psk_identity without a psk_file line after it");
    else if (pr->store_pending[0]) problem(p, pr->store_line, "session_cache = memcached:... without a session_store_key line after it");
    else if (pr->role == KTLSX_SERVER && pr->certs == 0 && !pr->psk_set)
        problem(p, pr->line, "[server %s]: no cert/key pair and no psk_identity/psk_file", pr->name);
}

static struct kd_profile *find_or_add(struct parse *p, const char *section)
{
    struct kd_conf *c = p->conf;
    enum ktlsx_role role = section[0] == 's' ? KTLSX_SERVER : KTLSX_CLIENT;
    const char *name = section + 7; /* after "server " / "client " */
    for (size_t i = 0; i < c->nprofiles; i++)
        if (!strcmp(c->profiles[i].name, name) && c->profiles[i].role == role) {
            if (strcmp(p->section, section) != 0) /* the section came back after another one */
                return problem(p, p->section_line, "[%s] appears twice", section), NULL;
            return &c->profiles[i];
        }
    size_t len = strlen(name);
    if (len == 0 || len > KTLSX_DOOR_NAME_MAX)
        return problem(p, p->section_line, "profile name empty or over 64 bytes"), NULL;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i]))
            return problem(p, p->section_line, "profile name '%s': letters, digits, '-', '_' and '.' only", name), NULL;
    if (c->nprofiles == KD_MAX_PROFILES) return problem(p, p->section_line, "more than %d profiles", KD_MAX_PROFILES), NULL;
    struct kd_profile *pr = &c->profiles[c->nprofiles];
    memset(pr, 0, sizeof *pr);
    pr->cfg = ktlsx_config_new(role);
    if (!pr->cfg) return problem(p, p->line, "out of memory"), NULL;
    c->nprofiles++;
    copy_str(pr->name, sizeof pr->name, name);
    pr->role = role;
    pr->line = p->section_line;
    if (ktlsx_config_set_log(pr->cfg, kd_log_sink, NULL) < 0) return problem(p, p->line, "out of memory"), NULL;
    return pr;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    if (p->err[0]) return 1; /* the first problem is the one reported */
    int rc;
    if (!strcmp(section, "daemon")) {
        rc = daemon_key(p, name, value);
    } else if (!strcmp(section, "kernel")) {
        rc = kernel_key(p, name, value);
    } else if (!strncmp(section, "server ", 7) || !strncmp(section, "client ", 7)) {
        struct kd_profile *pr = find_or_add(p, section);
        rc = pr ? profile_key(p, pr, name, value) : -1;
    } else {
        problem(p, p->section_line, "unknown section [%s]: want [daemon], [kernel], [server NAME] or [client NAME]", section);
        rc = -1;
    }
    snprintf(p->section, sizeof p->section, "%s", section);
    return rc == 0 ? 1 : 0;
}

void kd_conf_free(struct kd_conf *conf)
{
    if (!conf) return;
    for (size_t i = 0; i < conf->nprofiles; i++) ktlsx_config_free(conf->profiles[i].cfg);
    free(conf);
}

struct kd_conf *kd_conf_load(const char *path, char *err, size_t errlen)
{
    struct parse p = { 0 };
    ini_allow_multiline = false; /* an indented line is a key of its own, not a continuation */
    p.conf = calloc(1, sizeof *p.conf);
    if (!p.conf) return snprintf(err, errlen, "%s: out of memory", path), NULL;
    struct kd_conf *c = p.conf;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->socket_path, sizeof c->socket_path, "%s", KTLSX_DOOR_DEFAULT_PATH);
    c->log_level = KTLSX_LOG_INFO;
    c->max_clients = 4096;
    c->max_per_uid = 1024;
    c->max_clients_per_uid = 1024;
    c->request_timeout_ms = 10000;
    c->handshake_timeout_ms = 30000;
    c->max_handshake_timeout_ms = 120000;
    c->ticket_rotation_s = 3600;
    c->seccomp = true;
    c->kernel_min_version = c->kernel_max_version = KTLSX_TLS13;
    p.f = fopen(path, "r");
    if (!p.f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return kd_conf_free(c), NULL;
    }
    int rc = ini_parse_stream(count_lines, &p, on_key, &p);
    fclose(p.f);
    if (rc > 0 && !p.err[0]) problem(&p, rc, "not an INI line (want [section] or key = value)");
    for (size_t i = 0; i < c->nprofiles && !p.err[0]; i++) finish_profile(&p, &c->profiles[i]);
    for (size_t i = 0; i < c->nprofiles && !p.err[0]; i++)
        for (size_t k = 0; k < c->nticket_key_files && c->profiles[i].role == KTLSX_SERVER; k++)
            if (ktlsx_config_add_ticket_key_file(c->profiles[i].cfg, c->ticket_key_files[k]) < 0) {
                snprintf(p.err, sizeof p.err, "ticket_key_file: %s", ktlsx_config_error(c->profiles[i].cfg));
                p.err_line = -1;
                break;
            }
    for (size_t i = 0; i < c->nprofiles && !p.err[0] && c->nticket_key_files == 0; i++)
        if (c->profiles[i].role == KTLSX_SERVER &&
            ktlsx_config_set_ticket_rotation(c->profiles[i].cfg, c->ticket_rotation_s) < 0) {
            snprintf(p.err, sizeof p.err, "ticket_rotation_s: %s", ktlsx_config_error(c->profiles[i].cfg));
            p.err_line = -1;
        }
    if (!c->control_set) { /* beside the door: /run/ktlsx/ktlsxd.sock -> /run/ktlsx/ktlsxd.ctl */
        size_t n = strlen(c->socket_path);
        if (n > 5 && !strcmp(c->socket_path + n - 5, ".sock")) n -= 5;
        if (n + 4 < sizeof c->control_path)
            snprintf(c->control_path, sizeof c->control_path, "%.*s.ctl", (int)n, c->socket_path);
        else
            snprintf(p.err, sizeof p.err, "socket path too long to put the control socket beside it: set control_socket");
    }
    if (!p.err[0] && c->nprofiles == 0 && !c->kernel_enabled) snprintf(p.err, sizeof p.err, "no [server NAME] or [client NAME] profile");
    if (!p.err[0] && c->kernel_server_profile[0] && !kd_conf_profile(c, c->kernel_server_profile, KTLSX_SERVER))
        problem(&p, c->kernel_server_line, "server_profile: no [server %s]", c->kernel_server_profile);
    if (!p.err[0] && c->kernel_client_profile[0] && !kd_conf_profile(c, c->kernel_client_profile, KTLSX_CLIENT))
        problem(&p, c->kernel_client_line, "client_profile: no [client %s]", c->kernel_client_profile);
    if (!p.err[0] && c->handshake_timeout_ms > c->max_handshake_timeout_ms)
        snprintf(p.err, sizeof p.err, "handshake_timeout_ms is over max_handshake_timeout_ms");
    /* issue 12: a memcached store needs TCP sockets to the network, which the
     * seccomp filter allows only when it is set up for them (at start: a
     * filter cannot be widened later).  A reload bringing the first store to
     * a daemon whose filter lacks them is refused, at the line. */
    for (size_t i = 0; i < c->nprofiles && !p.err[0]; i++) {
        if (!c->profiles[i].store_line) continue;
        c->tcp_store = true;
        if (kd_sandbox_on && !kd_sandbox_tcp) {
            snprintf(p.err, sizeof p.err, "session_cache = memcached:... needs a restart of ktlsxd: the seccomp "
                                          "filter in force was set up without TCP sockets (no store at start)");
            p.err_line = c->profiles[i].store_line;
        }
    }
    if (p.err[0]) {
        if (p.err_line > 0) snprintf(err, errlen, "%s:%d: %s", path, p.err_line, p.err);
        else snprintf(err, errlen, "%s: %s", path, p.err);
        return kd_conf_free(c), NULL;
    }
    return c;
}

bool kd_sandbox_on, kd_sandbox_tcp; /* set by sandbox.c when its filter is in force */

const struct kd_profile *kd_conf_profile(const struct kd_conf *conf, const char *name, enum ktlsx_role role)
{
    for (size_t i = 0; i < conf->nprofiles; i++)
        if (conf->profiles[i].role == role && !strcmp(conf->profiles[i].name, name)) return &conf->profiles[i];
    return NULL;
}

/* A listed uid, primary gid (SO_PEERCRED) or supplementary group (SO_PEERGROUPS);
 * a profile that lists nobody is root's alone. */
bool kd_profile_allows(const struct kd_profile *p, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups)
{
    if (p->any_uid) return true;
    if (p->nuids == 0 && p->ngids == 0) return uid == 0;
    for (size_t i = 0; i < p->nuids; i++)
        if (p->uids[i] == uid) return true;
    for (size_t i = 0; i < p->ngids; i++) {
        if (p->gids[i] == gid) return true;
        for (size_t k = 0; k < ngroups; k++)
            if (p->gids[i] == groups[k]) return true;
    }
    return false;
}

/* The configuration in force.  Workers read it under the read lock for a
 * request's profile checks; a reload takes the write lock only to swap the
 * pointer, so a reader never sees a configuration being freed. */
static pthread_rwlock_t current_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct kd_conf *current;

const struct kd_conf *kd_conf_hold(void)
{
    pthread_rwlock_rdlock(&current_lock);
    return current;
}

void kd_conf_drop(void) { pthread_rwlock_unlock(&current_lock); }

struct kd_conf *kd_conf_swap(struct kd_conf *next)
{
    pthread_rwlock_wrlock(&current_lock);
    struct kd_conf *prev = current;
    current = next;
    pthread_rwlock_unlock(&current_lock);
    return prev;
}
