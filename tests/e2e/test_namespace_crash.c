/*
 * test_namespace_crash — the daemon killed inside every namespace
 * operation, at each named crash point of create, unlink, rename and the
 * $I30 B-tree's changes (a copy-on-write split, a removal through an
 * internal entry, an empty leaf merged into its sibling), and no existing
 * name lost.
 *
 * Each case works on a fresh copy of the crash rig's image (crashrig.h),
 * with --fd-store none (a power cut).  An unarmed daemon first makes /ns
 * with NFILES files (an index several levels deep: each file's bytes are
 * its own path), /ns/victim (20 KB, clusters to free) and /ns2, and stops
 * cleanly.  A daemon armed with the case's point then runs the case's
 * operation (one call, or a loop of creates or unlinks) until the call
 * that dies with it.  Then:
 *
 *  1. the daemon died of SIGKILL at the point (the call failed by its
 *     death; a point not reached fails the test);
 *  2. `ntfsfix -n` is clean; ntfsls of /ns and /ns2 and Sleuth Kit's fls
 *     (an independent parser) list every name whose creation returned and
 *     none whose removal returned, the one in flight either way (a rename
 *     in flight: the old name, the new one or both, never neither);
 *     ntfscat reads every file's bytes right; no name is listed twice;
 *  3. a daemon without the point finds every listed name (its own
 *     lookup), creates, renames and removes there, stops cleanly, and
 *     ntfsfix -n, ntfsls and a fresh ntfs-3g mount agree with the model.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crashrig.h"
#include "ntfsc.h"
#include "oracle.h"

#define NFILES 400
#define VICTIM_LEN 20000

enum ns_op {
	OP_CREATE,      /* create /ns/new-one */
	OP_UNLINK,      /* unlink /ns/victim */
	OP_RENAME,      /* rename /ns/f-0100 to /ns2/moved */
	OP_CREATE_MANY, /* create /ns/g-NNNN until the daemon dies */
	OP_UNLINK_SEQ,  /* unlink /ns/f-NNNN in order until it dies */
	OP_UNLINK_STRIDE, /* unlink /ns/f-NNNN in a strided order until it dies */
};

struct ns_case {
	const char *point;
	enum ns_op op;
};

static const struct ns_case cases[] = {
	{ "create-before-entry", OP_CREATE },
	{ "unlink-after-entry", OP_UNLINK },
	{ "unlink-before-free", OP_UNLINK },
	{ "rename-after-name", OP_RENAME },
	{ "rename-after-entry", OP_RENAME },
	{ "rename-before-drop", OP_RENAME },
	{ "index-split-before-free", OP_CREATE_MANY },
	{ "index-split-before-free:3", OP_CREATE_MANY },
	{ "index-merge-before-parent", OP_UNLINK_SEQ },
	{ "index-remove-before-leaf", OP_UNLINK_STRIDE },
	{ "index-remove-before-leaf:4", OP_UNLINK_STRIDE },
};
#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* Write-back out of the way: namespace writes are synchronous. */
static const char *const daemon_opts[] = { "--dirty-expire-ms", "600000", "--flushers", "1",
					   NULL };

/* The model: each name of /ns and /ns2 and whether it must, may or must
 * not be there. */
enum presence { ABSENT, PRESENT, EITHER };
#define MAXNAMES (2 * NFILES + 64)
static struct name {
	char path[48];
	char data[48];          /* its bytes: the path it was made under */
	enum presence p;
	bool victim;            /* its bytes are VICTIM_LEN of a pattern */
	bool inflight;          /* its operation was cut: see check_contents */
	bool unsynced;          /* its bytes were never synced: may be lost */
} names[MAXNAMES];
static bool allow_twice;        /* a name may be listed twice (see crash_case) */
static int nnames;

static struct crashrig rig;
static ntfsc *conn;

static void fail_logs(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail_logs(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rig_dump_logs(&rig, 40);
	fflush(stdout);
	fprintf(stderr, "FAILURE: %s\n", msg);
	fail_msg("%s", msg);
	abort();
}

static const char *says(void)
{
	const char *m = ntfsc_last_error_message(conn);

	return m ? m : "";
}

static struct name *model(const char *path, enum presence p)
{
	for (int i = 0; i < nnames; i++)
		if (!strcmp(names[i].path, path)) {
			names[i].p = p;
			names[i].inflight = p == EITHER;
			return &names[i];
		}
	assert_true(nnames < MAXNAMES);
	snprintf(names[nnames].path, sizeof(names[nnames].path), "%s", path);
	snprintf(names[nnames].data, sizeof(names[nnames].data), "%s", path);
	names[nnames].p = p;
	names[nnames].inflight = p == EITHER;
	names[nnames].unsynced = false;
	names[nnames].victim = false;
	return &names[nnames++];
}

static void victim_bytes(uint8_t *b)
{
	for (int i = 0; i < VICTIM_LEN; i++)
		b[i] = (uint8_t)(i * 7 + 3);
}

static void connect_rig(void)
{
	conn = ntfsc_connect(rig.dmn.socket);
	if (!conn)
		fail_logs("connect %s: %s", rig.dmn.socket, strerror(errno));
}

static void disconnect(void)
{
	if (conn)
		ntfsc_disconnect(conn);
	conn = NULL;
}

static int make_file(const char *path, const void *data, size_t len)
{
	ntfsc_file *f = ntfsc_open(conn, path, O_RDWR | O_CREAT | O_EXCL);

	if (!f)
		return -1;
	if (len && ntfsc_pwrite(f, data, len, 0) != (ssize_t)len) {
		int e = errno;

		ntfsc_close(f);
		errno = e;
		return -1;
	}
	return ntfsc_close(f);
}

/* The starting tree, made by an unarmed daemon. */
static void prepare(void)
{
	static uint8_t vb[VICTIM_LEN];
	char path[48];

	nnames = 0;
	rig_start(&rig, daemon_opts);
	connect_rig();
	if (ntfsc_mkdir(conn, "/ns") || ntfsc_mkdir(conn, "/ns2"))
		fail_logs("mkdir: %s (%s)", strerror(errno), says());
	for (int i = 0; i < NFILES; i++) {
		snprintf(path, sizeof(path), "/ns/f-%04d", i);
		if (make_file(path, path, strlen(path)))
			fail_logs("create %s: %s (%s)", path, strerror(errno), says());
		model(path, PRESENT);
	}
	victim_bytes(vb);
	if (make_file("/ns/victim", vb, sizeof(vb)) || ntfsc_sync(conn))
		fail_logs("/ns/victim: %s (%s)", strerror(errno), says());
	model("/ns/victim", PRESENT)->victim = true;
	disconnect();
	rig_stop_clean(&rig, "after the preparation");
}

/* A call that failed must have failed by the daemon's death. */
static void expect_lost(int err, const char *call, const struct ns_case *k)
{
	if (err != ECONNRESET && err != EPIPE && err != ENOTCONN)
		fail_logs("%s failed with %s (%s), not by the daemon's death at %s", call,
			  strerror(err), says(), k->point);
}

static void run_op(const struct ns_case *k)
{
	char path[48];
	int i;

	connect_rig();
	switch (k->op) {
	case OP_CREATE:
		model("/ns/new-one", EITHER);
		if (!make_file("/ns/new-one", "x", 1))
			fail_logs("create returned: %s not reached", k->point);
		expect_lost(errno, "create /ns/new-one", k);
		break;
	case OP_UNLINK:
		model("/ns/victim", EITHER);
		if (!ntfsc_unlink(conn, "/ns/victim"))
			fail_logs("unlink returned: %s not reached", k->point);
		expect_lost(errno, "unlink /ns/victim", k);
		break;
	case OP_RENAME:
		model("/ns/f-0100", EITHER);
		snprintf(model("/ns2/moved", EITHER)->data, 48, "/ns/f-0100");
		if (!ntfsc_rename(conn, "/ns/f-0100", "/ns2/moved"))
			fail_logs("rename returned: %s not reached", k->point);
		expect_lost(errno, "rename /ns/f-0100 /ns2/moved", k);
		break;
	case OP_CREATE_MANY:
		for (i = 0; i < 3000; i++) {
			snprintf(path, sizeof(path), "/ns/g-%04d", i);
			model(path, EITHER);
			if (make_file(path, path, strlen(path)))
				break;
			model(path, PRESENT)->unsynced = true;
		}
		names[nnames - 1].unsynced = true;
		if (i == 3000)
			fail_logs("3000 creates returned: %s not reached", k->point);
		expect_lost(errno, path, k);
		break;
	case OP_UNLINK_SEQ:
	case OP_UNLINK_STRIDE:
		for (i = 0; i < NFILES; i++) {
			int f = k->op == OP_UNLINK_SEQ ? i : (i * 37) % NFILES;

			snprintf(path, sizeof(path), "/ns/f-%04d", f);
			model(path, EITHER);
			if (ntfsc_unlink(conn, path))
				break;
			model(path, ABSENT);
		}
		if (i == NFILES)
			fail_logs("%d unlinks returned: %s not reached", NFILES, k->point);
		expect_lost(errno, path, k);
		break;
	}
	disconnect();
}

/* ---- checks ---- */

static void check_dir(const char *dir, char **got, size_t n)
{
	size_t dlen = strlen(dir);

	for (size_t i = 0; i < n; i++) {
		char full[600];
		bool known = false;

		if (!strcmp(got[i], ".") || !strcmp(got[i], ".."))
			continue;
		for (size_t j = i + 1; j < n && !allow_twice; j++)
			if (!strcmp(got[i], got[j]))
				fail_logs("%s/%s is listed twice", dir, got[i]);
		snprintf(full, sizeof(full), "%s/%s", dir, got[i]);
		for (int m = 0; m < nnames; m++)
			if (!strcmp(names[m].path, full)) {
				known = true;
				if (names[m].p == ABSENT)
					fail_logs("%s is listed; its removal had returned", full);
			}
		if (!known)
			fail_logs("%s is listed; nothing made it", full);
	}
	for (int m = 0; m < nnames; m++) {
		bool listed = false;

		if (strncmp(names[m].path, dir, dlen) || names[m].path[dlen] != '/' ||
		    strchr(names[m].path + dlen + 1, '/'))
			continue;
		for (size_t i = 0; i < n && !listed; i++)
			listed = !strcmp(got[i], names[m].path + dlen + 1);
		if (names[m].p == PRESENT && !listed)
			fail_logs("%s is gone: its creation had returned", names[m].path);
		/* a name whose operation was in flight: from here on it is
		 * what the volume says */
		if (names[m].p == EITHER)
			names[m].p = listed ? PRESENT : ABSENT;
	}
}

static void check_listings(const char *when)
{
	static const char *const dirs[] = { "/ns", "/ns2" };
	char **got;
	size_t n;

	for (int d = 0; d < 2; d++) {
		if (oracle_ls(rig.tv.scratch, dirs[d], &got, &n))
			fail_logs("%s: ntfsls %s: %s", when, dirs[d], oracle_last_stderr());
		check_dir(dirs[d], got, n);
		oracle_free_names(got, n);
	}
	/* a rename in flight leaves at least one of its names */
	for (int m = 0; m < nnames; m++)
		if (!strcmp(names[m].path, "/ns/f-0100") && names[m].p == ABSENT) {
			bool moved = false;

			for (int j = 0; j < nnames; j++)
				moved |= !strcmp(names[j].path, "/ns2/moved") && names[j].p == PRESENT;
			if (!moved && !strstr(when, "restart"))
				fail_logs("%s: the file being renamed has neither name", when);
		}
}

static bool zeroes(const uint8_t *b, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static void check_contents(const char *when)
{
	static uint8_t vb[VICTIM_LEN];
	char *fls = NULL, line[80];
	const char *argv[] = { "fls", "-r", "-p", "-u", "-f", "ntfs", rig.tv.scratch, NULL };
	size_t n;

	victim_bytes(vb);
	if (oracle_run(argv, &fls, &n, NULL))
		fail_logs("%s: fls: %s", when, oracle_last_stderr());
	for (int m = 0; m < nnames; m++) {
		bool listed;

		snprintf(line, sizeof(line), ":\t%s\n", names[m].path + 1);
		listed = strstr(fls, line) != NULL;
		/* The Sleuth Kit also lists a record in use under the directory
		 * its $FILE_NAME names, index entry or not: the name of a cut
		 * operation may be in its listing either way */
		if (listed != (names[m].p == PRESENT) && !(names[m].inflight && listed))
			fail_logs("%s: fls %s %s", when, listed ? "lists" : "does not list",
				  names[m].path);
	}
	free(fls);
	for (int m = 0; m < nnames; m++) {
		uint8_t *got;
		uint64_t len;
		const char *want = names[m].data;
		size_t wlen = strlen(want);

		/* every tenth plain file, and every file whose name moved */
		if (names[m].p != PRESENT || (m % 10 && !names[m].victim &&
					      !strcmp(names[m].path, names[m].data)))
			continue;
		got = rig_cat(&rig, names[m].path, &len);
		if (names[m].victim) {
			if (len != VICTIM_LEN || memcmp(got, vb, VICTIM_LEN))
				fail_logs("%s: ntfscat %s: wrong bytes", when, names[m].path);
		} else if ((len != wlen || memcmp(got, want, wlen)) &&
			   !((names[m].inflight || names[m].unsynced) && zeroes(got, len))) {
			/* (a create cut after its entry: the file is there, empty;
			 * bytes never synced: lost to the power cut, the size maybe
			 * not: zeroes) */
			fail_logs("%s: ntfscat %s: wrong bytes (%.*s)", when, want, (int)len,
				  (const char *)got);
		}
		free(got);
	}
}

/* An unarmed daemon: its own lookup finds every name; it goes on
 * creating, renaming and removing there. */
static void go_on(void)
{
	struct ntfsc_stat st;
	int renamed = 0, removed = 0;

	rig_start(&rig, daemon_opts);
	connect_rig();
	for (int m = 0; m < nnames; m++) {
		if (names[m].p != PRESENT)
			continue;
		if (ntfsc_stat(conn, names[m].path, &st))
			fail_logs("after the crash, ntfsd cannot find %s: %s (%s)", names[m].path,
				  strerror(errno), says());
	}
	if (make_file("/ns/after-crash", "/ns/after-crash", 15))
		fail_logs("create after the crash: %s (%s)", strerror(errno), says());
	model("/ns/after-crash", PRESENT);
	for (int m = 0; m < nnames && (renamed < 5 || removed < 20); m++) {
		char to[48];

		if (names[m].p != PRESENT || names[m].victim || strncmp(names[m].path, "/ns/f-", 6))
			continue;
		if (m % 2 && removed < 20) {
			if (ntfsc_unlink(conn, names[m].path))
				fail_logs("unlink %s after the crash: %s (%s)", names[m].path,
					  strerror(errno), says());
			names[m].p = ABSENT;
			removed++;
		} else if (renamed < 5) {
			snprintf(to, sizeof(to), "/ns/%s", names[m].path + 4);
			to[4] = 'r';    /* /ns/f-NNNN -> /ns/r-NNNN: bytes stay "/ns/f-NNNN" */
			if (ntfsc_rename(conn, names[m].path, to))
				fail_logs("rename %s after the crash: %s (%s)", names[m].path,
					  strerror(errno), says());
			names[m].p = ABSENT;
			snprintf(model(to, PRESENT)->data, 48, "%s", names[m].data);
			renamed++;
		}
	}
	disconnect();
	rig_stop_clean(&rig, "after going on");
}

/* A fresh ntfs-3g mount lists /ns as the model has it. */
static void ntfs3g_agrees(void)
{
	char dir[600];
	DIR *d;
	struct dirent *de;
	int listed = 0, want = 0;
	static char seen[MAXNAMES + 16][256];

	if (testvol_mount(&rig.tv, rig.tv.scratch, "no_detach"))
		fail_logs("ntfs-3g refused the volume after the crash");
	snprintf(dir, sizeof(dir), "%s/ns", rig.tv.mnt);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		bool dup = false;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		for (int i = 0; i < listed && !dup; i++)
			dup = !strcmp(seen[i], de->d_name);
		if (dup && !allow_twice)
			fail_logs("ntfs-3g lists /ns/%s twice", de->d_name);
		if (!dup && listed < MAXNAMES + 16)
			snprintf(seen[listed++], sizeof(seen[0]), "%s", de->d_name);
	}
	if (d)
		closedir(d);
	if (testvol_unmount(&rig.tv))
		fail_logs("unmounting %s failed", rig.tv.mnt);
	for (int m = 0; m < nnames; m++)
		want += names[m].p == PRESENT && !strncmp(names[m].path, "/ns/", 4);
	if (listed != want)
		fail_logs("ntfs-3g lists %d names in /ns, the model has %d", listed, want);
}

static void crash_case(void **state)
{
	const struct ns_case *k = *state;
	bool tree_change = !strncmp(k->point, "index-", 6);
	bool twice_stays = !strncmp(k->point, "index-merge", 11) ||
			   !strncmp(k->point, "index-remove", 12);

	rig_arm_alarm(&rig, 300);
	/* A crash inside a change of the B-tree may leave a name in two
	 * index blocks: after a split, a block no node refers to (the
	 * restarted daemon reclaims it before its first change of the
	 * directory: then no name may be listed twice); after a merge or a
	 * removal through an internal entry, the moved entry in both places
	 * (until that name is removed) */
	allow_twice = tree_change;
	prepare();
	rig_start_armed(&rig, k->point, daemon_opts);
	run_op(k);
	rig_expect_killed(&rig, 10000, k->point);
	if (!rig_log_has(&rig, "crash point"))
		fail_logs("the log does not say the crash point was reached");
	rig_fsck(&rig, "after the crash");
	check_listings("after the crash");
	check_contents("after the crash");
	go_on();
	allow_twice = twice_stays;
	rig_fsck(&rig, "after the restart");
	check_listings("after the restart");
	check_contents("after the restart");
	ntfs3g_agrees();
}

static int setup(void **state)
{
	(void)state;
	return rig_setup(&rig, false);
}

static int teardown(void **state)
{
	(void)state;
	disconnect();
	rig_teardown(&rig);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return rig_group_setup(&rig, "nscrash");
}

static int group_teardown(void **state)
{
	(void)state;
	rig_group_teardown(&rig);
	return 0;
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[NCASES];

	for (int i = 0; i < NCASES; i++)
		tests[i] = (struct CMUnitTest){ cases[i].point, crash_case, setup, teardown,
						(void *)&cases[i] };
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return _cmocka_run_group_tests("namespace_crash", tests, NCASES, group_setup,
				       group_teardown);
}
