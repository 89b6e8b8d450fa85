/*
 * crashrig.c — see crashrig.h.
 */
#include "crashrig.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "oracle.h"

#define fail_with rig_fail

void rig_fail(const struct crashrig *r, const char *fmt, ...)
{
	char msg[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rig_dump_logs(r, 40);
	fflush(stdout);
	fprintf(stderr, "FAILURE: %s\n", msg);
	fail_msg("%.*s%s", 900, msg, strlen(msg) > 900 ? " [... see above]" : "");
	abort();        /* not reached: fail_msg long-jumps */
}

/* ---- the group ---- */

int rig_group_setup(struct crashrig *r, const char *tag)
{
	static const char *const need[] = { "ntfscat", "ntfsfix", "ntfsinfo", NULL };
	char src[512];
	const char *argv[] = { "ntfsfix", "-n", NULL, NULL };
	char *out = NULL;
	int st = -1;

	memset(r, 0, sizeof(*r));
	if (!daemon_test_env(&r->ntfsd, &r->ntfsctl, &r->fixture_dir))
		return -1;
	if (testvol_create(&r->tv, tag, need))
		return -1;
	snprintf(src, sizeof(src), "%s/vol4k.img", r->fixture_dir);
	if (testvol_copy_file(src, r->tv.img)) {
		fprintf(stderr, "cannot copy %s: %s\n", src, strerror(errno));
		goto fail;
	}
	if (testvol_fill_free(&r->tv, r->tv.img, RIG_FREE_BYTE, &r->prefilled)) {
		fprintf(stderr, "cannot fill the free space of %s with 0x%02x\n", r->tv.img,
			RIG_FREE_BYTE);
		goto fail;
	}
	if (r->prefilled < (8u << 20)) {
		fprintf(stderr, "only %llu bytes of free space filled: the stale-data check "
			"would mean nothing\n", (unsigned long long)r->prefilled);
		goto fail;
	}
	argv[2] = r->tv.img;
	if (oracle_run(argv, &out, NULL, &st) || st || !out ||
	    !strstr(out, "processed successfully")) {
		fprintf(stderr, "ntfsfix -n of the prefilled image (exit %d):\n%s\n%s\n", st,
			out ? out : "", oracle_last_stderr());
		free(out);
		goto fail;
	}
	free(out);
	printf("    %s: %.1f MiB of free space hold 0x%02x (written by ntfs-3g, deleted)\n",
	       src, (double)r->prefilled / (1 << 20), RIG_FREE_BYTE);
	return 0;
fail:
	testvol_destroy(&r->tv);
	return -1;
}

void rig_group_teardown(struct crashrig *r)
{
	rig_teardown(r);
	testvol_destroy(&r->tv);
}

/* ---- one test ---- */

int rig_setup(struct crashrig *r, bool keeper)
{
	memset(&r->dmn, 0, sizeof(r->dmn));
	r->keeper = keeper;
	r->child = 0;
	r->nlogs = 0;
	snprintf(r->store_dir, sizeof(r->store_dir), "%s/store", r->tv.dir);
	rmdir(r->store_dir);
	if (mkdir(r->store_dir, 0700) < 0) {
		fprintf(stderr, "mkdir %s: %s\n", r->store_dir, strerror(errno));
		return -1;
	}
	if (testvol_copy_file(r->tv.img, r->tv.scratch)) {
		fprintf(stderr, "cannot copy %s: %s\n", r->tv.img, strerror(errno));
		return -1;
	}
	return 0;
}

void rig_teardown(struct crashrig *r)
{
	if (r->child > 0) {
		kill(r->child, SIGKILL);
		waitpid(r->child, NULL, 0);
		r->child = 0;
	}
	if (r->dmn.pid > 0)
		daemon_kill9(&r->dmn);
	if (r->dmn.dir[0])
		daemon_stop(&r->dmn);
	if (r->store_dir[0]) {
		keeper_kill_in(r->store_dir);
		rmdir(r->store_dir);
	}
	for (unsigned i = 0; i < r->nlogs; i++)
		unlink(r->logs[i]);
	r->nlogs = 0;
	if (r->tv.scratch[0])
		unlink(r->tv.scratch);
	alarm(0);
}

static struct crashrig *alarmed;

static void on_alarm(int sig)
{
	static const char msg[] = "crash test: timed out (a hang): killing the daemon, keeper "
				  "and clients, removing the temp dir, exiting 1\n";
	struct crashrig *r = alarmed;

	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	if (r) {
		if (r->child > 0)
			kill(r->child, SIGKILL);
		if (r->dmn.pid > 0)
			kill(r->dmn.pid, SIGKILL);
		/* not async-signal-safe (opendir, nftw), but the test is over */
		keeper_kill_in(r->store_dir);
		if (r->dmn.dir[0])
			keeper_kill_in(r->dmn.dir);
		testvol_destroy(&r->tv);
	}
	_exit(1);
}

void rig_arm_alarm(struct crashrig *r, unsigned seconds)
{
	struct sigaction sa = { .sa_handler = on_alarm };

	alarmed = r;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}

/* ---- the daemon ---- */

void rig_args(const struct crashrig *r, const char **argv, int max, const char *const *extra)
{
	int n = 0;

	argv[n++] = "--fd-store";
	if (r->keeper) {
		argv[n++] = "keeper";
		argv[n++] = "--fd-store-dir";
		argv[n++] = r->store_dir;
	} else {
		argv[n++] = "none";
	}
	for (int i = 0; extra && extra[i] && n < max - 1; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
}

void rig_spawn(struct crashrig *r, const char *const *extra)
{
	const char *argv[24];
	int err;

	rig_args(r, argv, 24, extra);
	err = daemon_spawn(&r->dmn, r->ntfsd, r->tv.scratch, argv);
	if (err)
		fail_with(r, "cannot start ntfsd: %s", strerror(-err));
}

/* Wait until the daemon just spawned serves. */
static void wait_ready(struct crashrig *r)
{
	int err = daemon_wait_ready(&r->dmn, 30000);

	if (err) {
		daemon_dump_log(&r->dmn);
		/* exit 127 is daemon_spawn's child failing to exec the binary
		 * (say, a rebuild replacing it mid-run), not ntfsd failing */
		fail_with(r, "ntfsd did not come up (%s; wait status 0x%x)",
			  err != -ECHILD ? "no socket within 30 s"
			  : WIFEXITED(r->dmn.exit_status) && WEXITSTATUS(r->dmn.exit_status) == 127
			  ? "it could not be executed: exit 127 from the exec" : "it exited",
			  r->dmn.exit_status);
	}
}

void rig_start(struct crashrig *r, const char *const *extra)
{
	rig_spawn(r, extra);
	wait_ready(r);
}

void rig_start_armed(struct crashrig *r, const char *point, const char *const *extra)
{
	const char *argv[24];
	int err;

	rig_args(r, argv, 24, extra);
	/* the child copies the environment at its exec: disarm at once, so no
	 * later daemon (nor a failure path) inherits the point */
	setenv("NTFSD_CRASHPOINT", point, 1);
	err = daemon_spawn(&r->dmn, r->ntfsd, r->tv.scratch, argv);
	unsetenv("NTFSD_CRASHPOINT");
	if (err)
		fail_with(r, "cannot start ntfsd (crash point %s): %s", point, strerror(-err));
	wait_ready(r);
}

/* Link the running (or just dead) daemon's log into the temp dir. */
static void keep_log(struct crashrig *r)
{
	char path[340];

	if (!r->dmn.dir[0])
		return;
	snprintf(path, sizeof(path), "%s/ntfsd-%u.log", r->tv.dir, r->log_seq++);
	if (link(r->dmn.log, path))
		return;
	if (r->nlogs == RIG_LOGS) {
		unlink(r->logs[0]);
		memmove(r->logs[0], r->logs[1], sizeof(r->logs[0]) * (RIG_LOGS - 1));
		r->nlogs--;
	}
	snprintf(r->logs[r->nlogs++], sizeof(r->logs[0]), "%s", path);
}

void rig_kill9(struct crashrig *r, const char *when)
{
	int st;

	if (r->dmn.pid <= 0)
		fail_with(r, "%s: no daemon to kill", when);
	if (waitpid(r->dmn.pid, &st, WNOHANG) == r->dmn.pid) {
		r->dmn.pid = 0;
		keep_log(r);
		daemon_stop(&r->dmn);
		fail_with(r, "%s: the daemon had died by itself before the kill (wait status 0x%x)",
			  when, st);
	}
	st = daemon_kill9(&r->dmn);
	keep_log(r);
	daemon_stop(&r->dmn);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		fail_with(r, "%s: the daemon ended with wait status 0x%x, not by our SIGKILL", when,
			  st);
}

void rig_expect_killed(struct crashrig *r, long ms, const char *when)
{
	int st = 0;

	if (r->dmn.pid <= 0)
		fail_with(r, "%s: no daemon", when);
	if (!testvol_wait_child(r->dmn.pid, ms, &st)) {
		keep_log(r);
		fail_with(r, "%s: the daemon still runs %ld ms later: the crash point was not "
			  "reached", when, ms);
	}
	r->dmn.pid = 0;
	keep_log(r);
	daemon_stop(&r->dmn);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		fail_with(r, "%s: the daemon ended with wait status 0x%x, not SIGKILL at the crash "
			  "point", when, st);
}

void rig_stop_clean(struct crashrig *r, const char *when)
{
	bool ok;

	keep_log(r);
	ok = daemon_stop(&r->dmn);
	if (!ok)
		fail_with(r, "%s: ntfsd did not exit 0 after SIGTERM (wait status 0x%x)", when,
			  r->dmn.exit_status);
}

void rig_ctl_sync(struct crashrig *r, const char *path, const char *when)
{
	const char *argv[] = { r->ntfsctl, "-s", r->dmn.socket, "sync", path, NULL };
	char *out = NULL;
	int st = -1, err = oracle_run(argv, &out, NULL, &st);

	free(out);
	if (err || st) {
		keep_log(r);
		fail_with(r, "%s: ntfsctl sync%s%s exited %d: %s", when, path ? " " : "",
			  path ? path : "", st, oracle_last_stderr());
	}
}

void rig_dump_logs(const struct crashrig *r, int lines)
{
	for (unsigned i = 0; i < r->nlogs; i++) {
		size_t len, at;
		char *data = (char *)testvol_read_whole(r->logs[i], &len);
		int seen = 0;

		if (!data)
			continue;
		for (at = len; at > 0; at--)
			if (data[at - 1] == '\n' && ++seen > lines)
				break;
		fprintf(stderr, "---- %s (last %d lines) ----\n%s---- end ----\n", r->logs[i],
			lines, data + at);
		free(data);
	}
}

bool rig_log_has(const struct crashrig *r, const char *s)
{
	const char *path = r->dmn.dir[0] ? r->dmn.log : r->nlogs ? r->logs[r->nlogs - 1] : NULL;
	size_t len;
	char *data;
	bool found;

	if (!path || !(data = (char *)testvol_read_whole(path, &len)))
		return false;
	found = strstr(data, s) != NULL;
	free(data);
	return found;
}

/* ---- what is on the volume ---- */

uint8_t *rig_cat(struct crashrig *r, const char *path, uint64_t *len)
{
	char *data = NULL;
	size_t n = 0;
	int err = oracle_cat(r->tv.scratch, path, NULL, &data, &n);

	if (err)
		fail_with(r, "ntfscat %s: %s (%s)", path, strerror(-err), oracle_last_stderr());
	*len = n;
	return (uint8_t *)data;
}

void rig_check_files(struct crashrig *r, struct cm_file *files, int n, const char *context)
{
	static char why[6000];

	for (int i = 0; i < n; i++) {
		uint64_t len;
		uint8_t *got = rig_cat(r, files[i].path, &len);

		if (cm_check(&files[i], got, len, r->keeper, why, sizeof(why))) {
			free(got);
			fail_with(r, "%s: %s", context, why);
		}
		cm_accept(&files[i], got, len);
		free(got);
	}
}

void rig_fsck(struct crashrig *r, const char *context)
{
	const char *argv[] = { "ntfsfix", "-n", r->tv.scratch, NULL };
	char *out = NULL;
	int st = -1, err = oracle_run(argv, &out, NULL, &st);

	if (err || st || !out || !strstr(out, "processed successfully") || strstr(out, "FAILED") ||
	    strstr(out, "nconsisten")) {
		char copy[3000];

		snprintf(copy, sizeof(copy), "%s", out ? out : "");
		free(out);
		fail_with(r, "%s: ntfsfix -n reports problems (exit %d):\n%s%s", context, st, copy,
			  oracle_last_stderr());
	}
	free(out);
}

void rig_load_models(struct crashrig *r, const struct rig_file *set, struct cm_file *files, int n)
{
	for (int f = 0; f < n; f++) {
		uint64_t len;
		uint8_t *data = rig_cat(r, set[f].path, &len);

		if (len > set[f].cap)
			fail_with(r, "%s: %" PRIu64 " bytes, more than its cap", set[f].path, len);
		assert_int_equal(cm_init(&files[f], set[f].path, set[f].cap, data, len), 0);
		free(data);
	}
}

void rig_free_models(struct cm_file *files, int n)
{
	for (int f = 0; f < n; f++)
		cm_free(&files[f]);
}
