/*
 * error.c — libntfsc's errors: errno and the thread's message, and the
 * message of each connection's last failure.
 *
 * Invariants:
 *  - Errors set errno and the thread's error message together (error_set):
 *    a stale message never goes with a new errno.  A failure that errno
 *    says all about sets no message, and clears the one before.
 *  - error_save/error_restore carry both across an undo, so a caller
 *    sees the failure that made the call fail, not the undo's.
 *  - The thread's message is per thread, like errno.  It is attributed to
 *    a connection (err_conn) only by error_record, at the end of a call on
 *    that connection that failed, which also copies it into the
 *    connection under c->err_lock; any error_set clears the attribution
 *    until then.  So ntfsc_last_error_message(c) returns the thread's
 *    message only when the thread's last failure was a call on c, and
 *    otherwise c's copy of the last failure of a call on c in any thread.
 *  - Connections are told apart by their id, never reused in a process,
 *    so a thread's attribution to a connection since disconnected never
 *    matches a new one at the same address.
 *  - c->err_lock is taken for a copy of at most ERROR_MSG_SIZE bytes and
 *    nothing else is taken under it.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[ERROR_MSG_SIZE];
static _Thread_local bool err_has_msg;
/* The id of the connection the thread's last failure was a call on; 0: not
 * one (yet). */
static _Thread_local uint64_t err_conn;
/* The copy of a connection's message ntfsc_last_error_message returns. */
static _Thread_local char conn_msg[ERROR_MSG_SIZE];

int error_set(int err, const char *fmt, ...)
{
	err_has_msg = false;
	err_conn = 0;
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
	s->conn = err_conn;
	s->has_msg = err_has_msg;
	if (s->has_msg)
		memcpy(s->msg, err_msg, sizeof(s->msg));
}

void error_restore(const struct saved_error *s)
{
	err_conn = s->conn;
	err_has_msg = s->has_msg;
	if (s->has_msg)
		memcpy(err_msg, s->msg, sizeof(err_msg));
	errno = s->err;
}

void error_record(ntfsc *c)
{
	if (!c)
		return;
	err_conn = c->id;
	pthread_mutex_lock(&c->err_lock);
	c->err_has_msg = err_has_msg;
	if (err_has_msg)
		memcpy(c->err_msg, err_msg, strlen(err_msg) + 1);
	pthread_mutex_unlock(&c->err_lock);
}

const char *ntfsc_last_error_message(ntfsc *c)
{
	bool has;

	if (!c || err_conn == c->id)
		return err_has_msg ? err_msg : NULL;
	pthread_mutex_lock(&c->err_lock);
	has = c->err_has_msg;
	if (has)
		memcpy(conn_msg, c->err_msg, strlen(c->err_msg) + 1);
	pthread_mutex_unlock(&c->err_lock);
	return has ? conn_msg : NULL;
}

int check_path(const char *path)
{
	if (!path)
		return error_set(EINVAL, NULL);
	if (strlen(path) > MAX_PATH_BYTES)
		return error_set(ENAMETOOLONG, NULL);
	return 0;
}
