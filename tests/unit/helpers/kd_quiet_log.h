/* The daemon's logging (daemon/ktlsxd.h: kd_log, kd_log_sink, kd_log_level),
 * which daemon/conf.c refers to, kept quiet: for the unit test and the fuzz
 * target that compile conf.c in without the rest of the daemon. */
#ifndef KTLSX_TEST_KD_QUIET_LOG_H
#define KTLSX_TEST_KD_QUIET_LOG_H

int kd_log_level = KTLSX_LOG_ERROR;
void kd_log(int level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}
void kd_log_sink(void *arg, int level, const char *line)
{
    (void)arg;
    (void)level;
    (void)line;
}

#endif
