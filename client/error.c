/*
 * error.c — libntfsc's errors: errno and the thread's message.
 *
 * Invariants:
 *  - Errors set errno and the thread's error message together (error_set):
 *    a stale message never goes with a new errno.  A failure that errno
 *    says all about sets no message, and clears the one before.
 *  - error_save/error_restore carry both across an undo, so a caller
 *    sees the failure that made the call fail, not the undo's.
 *  - The message is per thread, like errno; nothing here takes a lock.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[ERROR_MSG_SIZE];
static _Thread_local bool err_has_msg;

int error_set(int err, const char *fmt, ...)
{
	err_has_msg = false;
	if (fmt) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
		va_end(ap);
		err_has_msg = true;
	}
	errno = err;
	return -1;
}

void error_save(struct saved_error *s)
{
	s->err = errno;
	s->has_msg = err_has_msg;
	if (s->has_msg)
		memcpy(s->msg, err_msg, sizeof(s->msg));
}

void error_restore(const struct saved_error *s)
{
	err_has_msg = s->has_msg;
	if (s->has_msg)
		memcpy(err_msg, s->msg, sizeof(err_msg));
	errno = s->err;
}

const char *ntfsc_last_error_message(ntfsc *c)
{
	(void)c;
	return err_has_msg ? err_msg : NULL;
}

int check_path(const char *path)
{
	if (!path)
		return error_set(EINVAL, NULL);
	if (strlen(path) > MAX_PATH_BYTES)
		return error_set(ENAMETOOLONG, NULL);
	return 0;
}
