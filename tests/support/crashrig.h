/*
 * crashrig.h — the setting of the crash tests: a copy of the vol4k.img
 * fixture whose free space holds 0xEE (so stale clusters exposed in a file
 * are recognisable), a scratch copy of it per test, a daemon on it with or
 * without the segment keeper, kill -9 and clean stops, `ntfsctl sync`,
 * every file of a set checked against its crash model (crashmodel.h) with
 * ntfscat, and `ntfsfix -n`.
 *
 * Invariants:
 *   - Everything lives in r->tv.dir (testvol.h): the prefilled image
 *     (tv.img), the scratch copy the daemon serves (tv.scratch), the
 *     keeper's socket directory (r->store_dir), the logs of the last
 *     daemons (kept when they stop or are killed, for failure reports).
 *   - rig_teardown() leaves no daemon, keeper or registered child process
 *     behind whatever the test did; rig_group_teardown() removes the dir.
 *     The alarm armed by rig_arm_alarm() kills all of them and removes the
 *     dir when a test hangs, then exits 1.
 *   - The rig_* calls that check something fail the running cmocka test
 *     (fail_msg), having printed the daemons' logs; never call them in a
 *     forked child.
 */
#ifndef NTFSD_TESTS_CRASHRIG_H
#define NTFSD_TESTS_CRASHRIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "crashmodel.h"
#include "daemon.h"
#include "testvol.h"

#define RIG_FREE_BYTE 0xee
#define RIG_LOGS 4

struct crashrig {
	struct testvol tv;
	char store_dir[320];
	struct test_daemon dmn;
	const char *ntfsd, *ntfsctl, *fixture_dir;
	bool keeper;                    /* the running test's mode */
	pid_t child;                    /* a client process to kill in teardown (0: none) */
	uint64_t prefilled;             /* bytes of free space holding RIG_FREE_BYTE */
	char logs[RIG_LOGS][340];       /* the last daemons' logs, newest last */
	unsigned nlogs, log_seq;
};

/* Group setup: environment, temp dir, the prefilled image (checked clean
 * with ntfsfix -n).  0, or -1 having said why. */
int rig_group_setup(struct crashrig *r, const char *tag);
void rig_group_teardown(struct crashrig *r);
/* Per test: a fresh scratch copy and keeper directory; mode. */
int rig_setup(struct crashrig *r, bool keeper);
void rig_teardown(struct crashrig *r);
/* SIGALRM after seconds: kill everything, clean up, exit 1. */
void rig_arm_alarm(struct crashrig *r, unsigned seconds);

/* The daemon options of the mode (keeper or --fd-store none) followed by
 * extra (NULL-ended, may be NULL), into argv (room for max). */
void rig_args(const struct crashrig *r, const char **argv, int max, const char *const *extra);
/* Start the daemon on the scratch image and wait until it serves (30 s:
 * it writes adopted pages back first). */
void rig_start(struct crashrig *r, const char *const *extra);
/* Start it without waiting (to kill it while it adopts). */
void rig_spawn(struct crashrig *r, const char *const *extra);
/* rig_start with NTFSD_CRASHPOINT=point ("NAME[:N]", daemon/crashpoint.h)
 * in that daemon's environment only: it SIGKILLs itself at the point (see
 * rig_expect_killed); the daemons started after it are not armed. */
void rig_start_armed(struct crashrig *r, const char *point, const char *const *extra);
/* kill -9 the daemon; it must have been running (not died by itself).
 * Its log is kept, its dir removed (the keeper lives in store_dir). */
void rig_kill9(struct crashrig *r, const char *when);
/* The daemon died by itself (a crash point): it must have been SIGKILLed;
 * wait up to ms.  Its log is kept, its dir removed. */
void rig_expect_killed(struct crashrig *r, long ms, const char *when);
/* SIGTERM: it must write everything back and exit 0. */
void rig_stop_clean(struct crashrig *r, const char *when);
/* `ntfsctl -s SOCK sync [path]` must exit 0. */
void rig_ctl_sync(struct crashrig *r, const char *path, const char *when);
/* Print the report (cmocka truncates long messages) and the kept logs'
 * tails, and fail the running test. */
void rig_fail(const struct crashrig *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
/* Print the kept daemon logs' tails to stderr. */
void rig_dump_logs(const struct crashrig *r, int lines);
/* Does the running daemon's log, or the newest kept one, contain s? */
bool rig_log_has(const struct crashrig *r, const char *s);

/* ntfscat of path on the scratch image (fails the test if it cannot). */
uint8_t *rig_cat(struct crashrig *r, const char *path, uint64_t *len);
/* Every model in files[0, n) against ntfscat, by the rules of the mode;
 * then cm_accept() what was read.  Fails the test with the first
 * violation, prefixed by context. */
void rig_check_files(struct crashrig *r, struct cm_file *files, int n, const char *context);

/* A file a crash test models, and the most bytes it may grow to. */
struct rig_file {
	const char *path;
	uint64_t cap;
};
/* Start the model of each of the n files from what ntfscat reads now. */
void rig_load_models(struct crashrig *r, const struct rig_file *set, struct cm_file *files, int n);
void rig_free_models(struct cm_file *files, int n);
/* ntfsfix -n on the scratch image must be clean. */
void rig_fsck(struct crashrig *r, const char *context);

#endif
