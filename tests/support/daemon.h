/*
 * daemon.h — starting and stopping a real ntfsd for the tests.
 *
 * Invariants: a started daemon is always stopped by daemon_stop() (SIGTERM,
 * then SIGKILL after 5 s) and its socket directory removed; the tests call
 * it from their teardown so a failing test leaves no daemon behind.
 */
#ifndef NTFSD_TESTS_DAEMON_H
#define NTFSD_TESTS_DAEMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

struct test_daemon {
	pid_t pid;
	char dir[48];          /* private temp dir holding the socket and log */
	char socket[100];
	char log[100];
	int exit_status;       /* after daemon_stop: wait status */
};

/* Start NTFSD (path to the binary) on volume with extra args (NULL-ended,
 * may be NULL); waits until the socket accepts connections (10 s). */
int daemon_start(struct test_daemon *d, const char *ntfsd, const char *volume,
		 const char *const *extra_args);
/* The two halves of daemon_start(): fork and exec (d->pid, d->dir, the
 * socket and log paths set; 0 or -errno), and wait up to timeout_ms until
 * the socket accepts (0; -ECHILD with d->exit_status when it exited,
 * d->pid then 0; -ETIMEDOUT, still running). */
int daemon_spawn(struct test_daemon *d, const char *ntfsd, const char *volume,
		 const char *const *extra_args);
int daemon_wait_ready(struct test_daemon *d, long timeout_ms);
/* SIGKILL and reap it (a crash); its directory and log stay for
 * daemon_stop() to remove.  The wait status, or -1 if none was running. */
int daemon_kill9(struct test_daemon *d);
/* SIGTERM and wait; returns true if it exited 0. */
bool daemon_stop(struct test_daemon *d);
/* SIGKILL every segment keeper whose socket (*.fdstore) is in dir and
 * remove the sockets; returns how many keepers answered. */
int keeper_kill_in(const char *dir);
/* Print the daemon's log (for failures). */
void daemon_dump_log(const struct test_daemon *d);
/* The e2e tests' programs and fixtures, from the environment meson test
 * sets (NTFSD_BIN, NTFSCTL_BIN, NTFSD_FIXTURE_DIR); false, having said so
 * on stderr, when one is missing. */
bool daemon_test_env(const char **ntfsd, const char **ntfsctl, const char **fixture_dir);
/* Fill argv (room for max entries) with: NTFSCTL -s d's socket, the
 * strings of ap up to a NULL (as many as fit), and a NULL. */
void daemon_ctl_argv(const char **argv, int max, const char *ntfsctl,
		     const struct test_daemon *d, va_list ap);

#endif
