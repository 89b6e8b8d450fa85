/*
 * log.c — see log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int log_max_level = LOG_INFO_;

static const char *const names[] = { [LOG_ERR_] = "error", [LOG_WARNING_] = "warning",
				     [LOG_NOTICE_] = "notice", [LOG_INFO_] = "info",
				     [LOG_DEBUG_] = "debug" };

int log_level_parse(const char *s)
{
	int i;

	for (i = LOG_ERR_; i <= LOG_DEBUG_; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

const char *log_level_name(int level)
{
	return level >= LOG_ERR_ && level <= LOG_DEBUG_ ? names[level] : "?";
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	int n;
	va_list ap;

	if (level > log_max_level)
		return;
	if (getenv("JOURNAL_STREAM"))
		n = snprintf(line, sizeof(line), "<%d>", level);
	else
		n = snprintf(line, sizeof(line), "ntfsd: %s: ", log_level_name(level));
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}
