/*
 * error.c — thread-local last-error message for the on-disk layer.
 *
 * Invariant: the buffer is always NUL-terminated; a new message replaces the
 * old one entirely.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

static void ntfs_verror(const char *fmt, va_list ap)
{
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
}

void ntfs_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ntfs_verror(fmt, ap);
	va_end(ap);
}

int ntfs_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ntfs_verror(fmt, ap);
	va_end(ap);
	return -err;
}

const char *ntfs_last_error(void)
{
	return last_error[0] ? last_error : "no error recorded";
}

void ntfs_clear_error(void)
{
	last_error[0] = '\0';
}
