/*
 * log.h — the daemon's logging: one line per event on stderr.
 *
 * Invariants: a line is written with a single write(2), so lines from
 * different threads never interleave.  Under systemd (JOURNAL_STREAM set)
 * each line starts with a <N> syslog priority journald reads as the level;
 * on a terminal it starts with "ntfsd: LEVEL: ".
 */
#ifndef NTFSD_LOG_H
#define NTFSD_LOG_H

enum log_level { LOG_ERR_ = 3, LOG_WARNING_ = 4, LOG_NOTICE_ = 5, LOG_INFO_ = 6, LOG_DEBUG_ = 7 };

extern int log_max_level;

/* "error", "warning", "notice", "info", "debug" -> level; -1 if unknown. */
int log_level_parse(const char *s);
const char *log_level_name(int level);
__attribute__((format(printf, 2, 3))) void log_msg(int level, const char *fmt, ...);

#define log_error(...) log_msg(LOG_ERR_, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING_, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE_, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO_, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG_, __VA_ARGS__)

#endif
