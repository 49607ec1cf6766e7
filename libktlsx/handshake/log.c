/* The log sink: where the library says what a caller should know without
 * asking (kernel TLS missing and the fallback taken, a socket cut at its
 * deadline).  A daemon routes it to syslog or its own log; the default is
 * one line on stderr, so a plain program still sees why it runs slower. */
#include "handshake/conn.h"
#include <stdarg.h>
#include <stdio.h>

int ktlsx_config_set_log(ktlsx_config *cfg, ktlsx_log_fn fn, void *arg)
{
    if (!cfg) return -1;
    KX_CONFIG_CHANGE(cfg);
    cfg->log_fn = fn;
    cfg->log_arg = arg;
    return 0;
}

static const char *level_name(int level)
{
    switch (level) {
    case KTLSX_LOG_ERROR: return "error";
    case KTLSX_LOG_WARNING: return "warning";
    case KTLSX_LOG_INFO: return "info";
    default: return "debug";
    }
}

void kx_log(const ktlsx_config *cfg, int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (cfg->log_fn) {
        cfg->log_fn(cfg->log_arg, level, line);
        return;
    }
    if (level <= KTLSX_LOG_WARNING) fprintf(stderr, "libktlsx %s: %s\n", level_name(level), line);
}
