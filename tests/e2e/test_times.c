/*
 * test_times — times through the daemon (issue 13): a file's
 * $STANDARD_INFORMATION times follow writes, size changes, renames and
 * utimensat (ntfsc_futimens, ntfsc_utimens, `ntfsctl touch`); a
 * directory's follow the changes of its entries; and the copies of sizes
 * and times in the parents' $I30 entries carry what the records say once
 * the file is synced or closed, as ntfs-3g keeps them.
 *
 * Readers: a fresh ntfs-3g mount (stat(2) of each file: ntfs-3g reads the
 * times from the record itself, with its own parser), `ntfsctl stat`
 * and `ls -l`, and the index entries read back with the on-disk layer's
 * reader (the only reader here that shows the copies; ntfs-3g's own
 * writes are read the same way as the reference for what they hold).
 * Each case runs on a fresh copy of the crash rig's image (crashrig.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crashrig.h"
#include "ntfsc.h"
#include "oracle.h"

/* the on-disk layer, to read the index entries' copies */
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "le.h"
#include "unistr.h"
#include "volume.h"

static struct crashrig rig;
static ntfsc *conn;

/* Write-back held off: times must come from the rules, not from luck. */
static const char *const daemon_opts[] = { "--dirty-expire-ms", "600000", NULL };

#define fail_logs(...) rig_fail(&rig, __VA_ARGS__)

static const char *says(void)
{
	const char *m = ntfsc_last_error_message(conn);

	return m ? m : "";
}

static void start(void)
{
	rig_start(&rig, daemon_opts);
	conn = ntfsc_connect(rig.dmn.socket);
	if (!conn)
		fail_logs("connect %s: %s", rig.dmn.socket, strerror(errno));
}

static void stop(void)
{
	if (conn)
		ntfsc_disconnect(conn);
	conn = NULL;
	rig_stop_clean(&rig, "stop");
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t ns_of(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* NTFS keeps 100 ns: a time read back is the time truncated to that. */
static int64_t ntfs_round(int64_t ns)
{
	return ns - ((ns % 100) + 100) % 100;
}

static void sleep_ms(long ms)
{
	testvol_sleep_ms(ms);
}

static struct ntfsc_stat_times times_of(const char *path)
{
	struct ntfsc_stat_times t = NTFSC_STAT_TIMES_INIT;

	if (ntfsc_stat_times(conn, path, &t))
		fail_logs("stat_times %s: %s (%s)", path, strerror(errno), says());
	if (!t.known)
		fail_logs("%s: the daemon reports no times", path);
	return t;
}

static ntfsc_file *open_rw(const char *path, int flags)
{
	ntfsc_file *f = ntfsc_open(conn, path, O_RDWR | flags);

	if (!f)
		fail_logs("open %s: %s (%s)", path, strerror(errno), says());
	return f;
}

static void put(ntfsc_file *f, const char *what, const void *data, size_t len, off_t off)
{
	if (ntfsc_pwrite(f, data, len, off) != (ssize_t)len)
		fail_logs("write %s: %s (%s)", what, strerror(errno), says());
}

static void within(const char *what, int64_t got, int64_t lo, int64_t hi)
{
	if (got < ntfs_round(lo) || got > hi)
		fail_logs("%s: %" PRId64 " is not within [%" PRId64 ", %" PRId64 "] (%+" PRId64
			  " ns from the start)", what, got, ntfs_round(lo), hi, got - lo);
}

/* ---- what is on disk, read with the daemon stopped ---- */

/* stat(2) through a fresh ntfs-3g mount of the scratch image. */
static struct stat ntfs3g_stat(const char *path)
{
	char p[700];
	struct stat st;
	int rc;

	if (testvol_mount(&rig.tv, rig.tv.scratch, "ro,no_detach"))
		fail_logs("ntfs-3g refused the volume");
	snprintf(p, sizeof(p), "%s%s", rig.tv.mnt, path);
	rc = stat(p, &st);
	if (testvol_unmount(&rig.tv))
		fail_logs("unmounting %s failed", rig.tv.mnt);
	if (rc)
		fail_logs("ntfs-3g: stat %s: %s", path, strerror(errno));
	return st;
}

struct entry_find {
	const char *name;
	struct ntfs_file_name fn;
	bool found;
};

static int entry_cb(void *ctx, const struct ntfs_dirent *de)
{
	struct entry_find *ef = ctx;
	char *name = NULL;

	if (de->name_type == FILE_NAME_DOS || ntfs_utf16_to_utf8(de->name, de->name_len, &name))
		return 0;
	if (!strcmp(name, ef->name)) {
		ef->fn = *de->fn;
		ef->found = true;
	}
	free(name);
	return 0;
}

/* The $FILE_NAME key of the entry `name` in directory dir of img. */
static struct ntfs_file_name index_copy(const char *img, const char *dir, const char *name)
{
	struct entry_find ef = { .name = name };
	struct ntfs_volume *vol;
	struct ntfs_inode *ni;
	uint64_t mref;

	if (ntfs_volume_open(img, NTFS_OPEN_READ_ONLY, &vol))
		fail_logs("open %s: %s", img, ntfs_last_error());
	if (ntfs_path_lookup(vol, dir, 0, &mref) || ntfs_inode_open(vol, MREF(mref), &ni))
		fail_logs("%s: %s", dir, ntfs_last_error());
	if (ntfs_dir_foreach(ni, entry_cb, &ef) < 0)
		fail_logs("readdir %s: %s", dir, ntfs_last_error());
	ntfs_inode_close(ni);
	ntfs_volume_close(vol);
	if (!ef.found)
		fail_logs("%s has no entry %s", dir, name);
	return ef.fn;
}

static int64_t fn_ns(uint64_t le)
{
	return ((int64_t)le64(le) - 116444736000000000ll) * 100;
}

/* The entry of dir/name on the scratch image carries size bytes (when
 * size >= 0) and the record's modification and change times, as ntfs-3g
 * reads them from the record. */
static void expect_copy(const char *dir, const char *name, int64_t size)
{
	char path[600];
	struct ntfs_file_name fn;
	struct stat st;

	snprintf(path, sizeof(path), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name);
	st = ntfs3g_stat(path);
	fn = index_copy(rig.tv.scratch, dir, name);
	if (size >= 0 && (int64_t)le64(fn.data_size) != size)
		fail_logs("%s: its entry says %" PRIu64 " bytes, the file has %" PRId64, path,
			  le64(fn.data_size), size);
	if (size >= 0 && S_ISREG(st.st_mode) && (int64_t)le64(fn.data_size) != st.st_size)
		fail_logs("%s: its entry says %" PRIu64 " bytes, ntfs-3g %lld", path,
			  le64(fn.data_size), (long long)st.st_size);
	if (fn_ns(fn.last_data_change_time) != ns_of(&st.st_mtim))
		fail_logs("%s: its entry's modification time is %" PRId64 ", the record's %" PRId64,
			  path, fn_ns(fn.last_data_change_time), ns_of(&st.st_mtim));
	if (fn_ns(fn.last_mft_change_time) != ns_of(&st.st_ctim))
		fail_logs("%s: its entry's change time is %" PRId64 ", the record's %" PRId64, path,
			  fn_ns(fn.last_mft_change_time), ns_of(&st.st_ctim));
}

/* ---- cases ---- */

/* Writes, a truncate and a sync move the modification and change times
 * (never the creation time); the parent's times move with its entries;
 * the copies follow at the sync. */
static void times_follow_changes(void **state)
{
	struct ntfsc_stat_times a, b, d0, d1;
	int64_t t0, t1, t2;
	ntfsc_file *f;
	char buf[5000];

	(void)state;
	start();
	if (ntfsc_mkdir(conn, "/t"))
		fail_logs("mkdir /t: %s (%s)", strerror(errno), says());
	d0 = times_of("/t");
	sleep_ms(30);
	t0 = now_ns();
	f = open_rw("/t/a.txt", O_CREAT | O_EXCL);
	t1 = now_ns();
	a = times_of("/t/a.txt");
	within("creation time of a new file", ns_of(&a.creation), t0, t1);
	within("modification time of a new file", ns_of(&a.modification), t0, t1);
	d1 = times_of("/t");
	within("/t's modification time after a create in it", ns_of(&d1.modification), t0, t1);
	if (ns_of(&d1.creation) != ns_of(&d0.creation))
		fail_logs("/t's creation time moved with a create in it");

	sleep_ms(30);
	memset(buf, 'x', sizeof(buf));
	t0 = now_ns();
	put(f, "/t/a.txt", buf, sizeof(buf), 0);
	if (ntfsc_fsync(f))
		fail_logs("fsync: %s (%s)", strerror(errno), says());
	t1 = now_ns();
	b = times_of("/t/a.txt");
	within("modification time after a write and fsync", ns_of(&b.modification), t0, t1);
	within("change time after a write and fsync", ns_of(&b.change), t0, t1);
	if (ns_of(&b.creation) != ns_of(&a.creation))
		fail_logs("the creation time moved with a write");

	/* a truncate moves them at once, before any write-back */
	sleep_ms(30);
	t0 = now_ns();
	if (ntfsc_ftruncate(f, 3000))
		fail_logs("ftruncate: %s (%s)", strerror(errno), says());
	t1 = now_ns();
	b = times_of("/t/a.txt");
	within("modification time after ftruncate", ns_of(&b.modification), t0, t1);
	if (ntfsc_fsync(f) || ntfsc_close(f))
		fail_logs("fsync/close: %s (%s)", strerror(errno), says());
	t2 = ns_of(&b.modification);
	b = times_of("/t/a.txt");
	if (ns_of(&b.modification) != ntfs_round(t2))
		fail_logs("the sync moved the modification time from %" PRId64 " to %" PRId64,
			  t2, ns_of(&b.modification));
	stop();
	{
		struct stat st = ntfs3g_stat("/t/a.txt");

		if (st.st_size != 3000 || ns_of(&st.st_mtim) != ns_of(&b.modification) ||
		    ns_of(&st.st_ctim) != ns_of(&b.change))
			fail_logs("ntfs-3g: size %lld mtime %" PRId64 " ctime %" PRId64 "; the "
				  "daemon said 3000, %" PRId64 ", %" PRId64, (long long)st.st_size,
				  ns_of(&st.st_mtim), ns_of(&st.st_ctim), ns_of(&b.modification),
				  ns_of(&b.change));
	}
	expect_copy("/t", "a.txt", 3000);
	expect_copy("/", "t", -1);
	rig_fsck(&rig, "times_follow_changes");
}

/* futimens over data still dirty: the data is written first, so the
 * times set are the ones that stay; a write after moves them again. */
static void futimens_over_pending_data(void **state)
{
	/* 2001-02-03 04:05:06.1234567 and 1999-12-31 23:59:59.0000001 */
	const struct timespec set[2] = { { 946684799, 100 }, { 981173106, 123456700 } };
	struct ntfsc_stat_times t;
	ntfsc_file *f;
	char buf[9000];
	int64_t t0, t1;

	(void)state;
	start();
	f = open_rw("/set.bin", O_CREAT | O_EXCL);
	memset(buf, 'y', sizeof(buf));
	put(f, "/set.bin", buf, sizeof(buf), 0);
	if (ntfsc_futimens(f, set))
		fail_logs("futimens: %s (%s)", strerror(errno), says());
	t = times_of("/set.bin");
	if (ns_of(&t.modification) != ns_of(&set[1]) || ns_of(&t.access) != ns_of(&set[0]))
		fail_logs("after futimens: mtime %" PRId64 " atime %" PRId64 ", set %" PRId64
			  " and %" PRId64, ns_of(&t.modification), ns_of(&t.access),
			  ns_of(&set[1]), ns_of(&set[0]));
	/* nothing left dirty may move them: sync, close, restart */
	if (ntfsc_fsync(f) || ntfsc_close(f) || ntfsc_sync(conn))
		fail_logs("sync: %s (%s)", strerror(errno), says());
	stop();
	{
		struct stat st = ntfs3g_stat("/set.bin");

		if (ns_of(&st.st_mtim) != ns_of(&set[1]) || ns_of(&st.st_atim) != ns_of(&set[0]) ||
		    st.st_size != (off_t)sizeof(buf))
			fail_logs("ntfs-3g: mtime %" PRId64 " atime %" PRId64 " size %lld; set %"
				  PRId64 " and %" PRId64 ", %zu bytes", ns_of(&st.st_mtim),
				  ns_of(&st.st_atim), (long long)st.st_size, ns_of(&set[1]),
				  ns_of(&set[0]), sizeof(buf));
	}
	expect_copy("/", "set.bin", sizeof(buf));

	/* UTIME_OMIT keeps one; a write after the call moves mtime again */
	start();
	f = open_rw("/set.bin", 0);
	{
		const struct timespec omit[2] = { { 5, 0 }, { 0, UTIME_OMIT } };

		if (ntfsc_futimens(f, omit))
			fail_logs("futimens (omit): %s (%s)", strerror(errno), says());
	}
	t = times_of("/set.bin");
	if (ns_of(&t.modification) != ns_of(&set[1]) || ns_of(&t.access) != 5000000000ll)
		fail_logs("UTIME_OMIT: mtime %" PRId64 " atime %" PRId64, ns_of(&t.modification),
			  ns_of(&t.access));
	t0 = now_ns();
	put(f, "/set.bin", "z", 1, 20000);
	if (ntfsc_fsync(f))
		fail_logs("fsync: %s (%s)", strerror(errno), says());
	t1 = now_ns();
	t = times_of("/set.bin");
	within("modification time of a write after futimens", ns_of(&t.modification), t0, t1);
	if (ns_of(&t.access) != 5000000000ll)
		fail_logs("a write moved the access time to %" PRId64, ns_of(&t.access));
	/* refusals */
	{
		const struct timespec bad[2] = { { 0, 1000000000 }, { 0, 0 } };
		ntfsc_file *ro = ntfsc_open(conn, "/set.bin", O_RDONLY);

		if (!ntfsc_futimens(f, bad) || errno != EINVAL)
			fail_logs("futimens with tv_nsec 1e9: %s, not EINVAL", strerror(errno));
		if (!ro)
			fail_logs("open O_RDONLY: %s", strerror(errno));
		if (!ntfsc_futimens(ro, NULL) || errno != EBADF)
			fail_logs("futimens on a read-only handle: %s, not EBADF", strerror(errno));
		ntfsc_close(ro);
		if (!ntfsc_utimens(conn, "/$MFT", NULL) || errno != EPERM)
			fail_logs("utimens /$MFT: %s, not EPERM", strerror(errno));
		if (!ntfsc_utimens(conn, "/nope", NULL) || errno != ENOENT ||
		    !strstr(says(), "/nope"))
			fail_logs("utimens /nope: %s (%s), not ENOENT naming the path",
				  strerror(errno), says());
	}
	if (ntfsc_close(f))
		fail_logs("close: %s (%s)", strerror(errno), says());
	stop();
	expect_copy("/", "set.bin", 20001);
	rig_fsck(&rig, "futimens_over_pending_data");
}

/* Directories' times follow creates, renames and unlinks in them; a
 * rename moves the file's change time only; utimens by path works on a
 * directory and on a file nobody has open. */
static void directories_and_renames(void **state)
{
	const struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 500000000 } };
	struct ntfsc_stat_times f0, f1, d;
	int64_t t0, t1;
	ntfsc_file *f;

	(void)state;
	start();
	if (ntfsc_mkdir(conn, "/td1") || ntfsc_mkdir(conn, "/td2"))
		fail_logs("mkdir: %s (%s)", strerror(errno), says());
	f = open_rw("/td1/file", O_CREAT | O_EXCL);
	put(f, "/td1/file", "hello", 5, 0);
	if (ntfsc_close(f))
		fail_logs("close: %s (%s)", strerror(errno), says());
	if (ntfsc_utimens(conn, "/td1/file", old) || ntfsc_utimens(conn, "/td2", old))
		fail_logs("utimens: %s (%s)", strerror(errno), says());
	d = times_of("/td2");
	if (ns_of(&d.modification) != ns_of(&old[1]))
		fail_logs("/td2: utimens by path set mtime %" PRId64, ns_of(&d.modification));
	f0 = times_of("/td1/file");
	sleep_ms(30);
	t0 = now_ns();
	if (ntfsc_rename(conn, "/td1/file", "/td2/moved"))
		fail_logs("rename: %s (%s)", strerror(errno), says());
	t1 = now_ns();
	f1 = times_of("/td2/moved");
	if (ns_of(&f1.modification) != ns_of(&f0.modification))
		fail_logs("a rename moved the modification time");
	within("change time of a renamed file", ns_of(&f1.change), t0, t1);
	d = times_of("/td1");
	within("/td1's modification time after a rename out of it", ns_of(&d.modification), t0, t1);
	d = times_of("/td2");
	within("/td2's modification time after a rename into it", ns_of(&d.modification), t0, t1);
	sleep_ms(30);
	f = open_rw("/td2/gone", O_CREAT | O_EXCL);
	ntfsc_close(f);
	t0 = now_ns();
	if (ntfsc_unlink(conn, "/td2/gone"))
		fail_logs("unlink: %s (%s)", strerror(errno), says());
	t1 = now_ns();
	d = times_of("/td2");
	within("/td2's modification time after an unlink", ns_of(&d.modification), t0, t1);
	stop();
	expect_copy("/td2", "moved", 5);
	expect_copy("/", "td1", -1);
	expect_copy("/", "td2", -1);
	{
		struct stat st = ntfs3g_stat("/td2/moved");

		if (ns_of(&st.st_mtim) != ns_of(&old[1]) || ns_of(&st.st_atim) != ns_of(&old[0]))
			fail_logs("ntfs-3g: /td2/moved mtime %" PRId64 " atime %" PRId64,
				  ns_of(&st.st_mtim), ns_of(&st.st_atim));
	}
	rig_fsck(&rig, "directories_and_renames");
}

/* ntfsctl touch, stat and ls -l. */
static int ctl(char **out, ...)
{
	const char *argv[16];
	va_list ap;
	int st = -1;

	va_start(ap, out);
	daemon_ctl_argv(argv, 16, rig.ntfsctl, &rig.dmn, ap);
	va_end(ap);
	if (oracle_run(argv, out, NULL, &st))
		return -1;
	return st;
}

static void ntfsctl_touch_stat_ls(void **state)
{
	char *out = NULL;
	int rc;

	(void)state;
	start();
	rc = ctl(&out, "touch", "-d", "@1000000000.25", "/touched", NULL);
	free(out);
	if (rc)
		fail_logs("ntfsctl touch -d exited %d: %s", rc, oracle_last_stderr());
	rc = ctl(&out, "stat", "/touched", NULL);
	if (rc || !strstr(out, "modified:         2001-09-09 01:46:40.2500000 UTC"))
		fail_logs("ntfsctl stat exited %d:\n%s", rc, out ? out : "");
	free(out);
	rc = ctl(&out, "--json", "stat", "/touched", NULL);
	if (rc || !strstr(out, "\"mtime_ns\": 1000000000250000000"))
		fail_logs("ntfsctl --json stat exited %d:\n%s", rc, out ? out : "");
	free(out);
	rc = ctl(&out, "ls", "-l", "/", NULL);
	if (rc || !strstr(out, "-              0  2001-09-09 01:46:40  "))
		fail_logs("ntfsctl ls -l exited %d:\n%s", rc, out ? out : "");
	free(out);
	/* -c: a missing file stays missing, and that is no error */
	rc = ctl(&out, "touch", "-c", "/not-made", NULL);
	free(out);
	if (rc)
		fail_logs("ntfsctl touch -c of a missing file exited %d", rc);
	{
		struct ntfsc_stat st;

		if (!ntfsc_stat(conn, "/not-made", &st) || errno != ENOENT)
			fail_logs("touch -c made /not-made");
	}
	rc = ctl(&out, "touch", "-d", "yesterday", "/touched", NULL);
	free(out);
	if (rc != 2)
		fail_logs("ntfsctl touch -d yesterday exited %d, not 2 (usage)", rc);
	rc = ctl(&out, "touch", "/no/such/dir/file", NULL);
	free(out);
	if (rc != 1 || !strstr(oracle_last_stderr(), "/no/such/dir/file"))
		fail_logs("touch under a missing directory exited %d: %s", rc,
			  oracle_last_stderr());
	stop();
	{
		struct stat st = ntfs3g_stat("/touched");

		if (ns_of(&st.st_mtim) != 1000000000250000000ll || st.st_size != 0)
			fail_logs("ntfs-3g: /touched mtime %" PRId64 " size %lld", ns_of(&st.st_mtim),
				  (long long)st.st_size);
	}
	expect_copy("/", "touched", 0);
	rig_fsck(&rig, "ntfsctl_touch_stat_ls");
}

/* The reference: what ntfs-3g itself leaves in an entry after it wrote a
 * file (its copies follow the record too), so the rule above is ntfs-3g's. */
static void ntfs3g_keeps_copies_too(void **state)
{
	char p[700];
	FILE *fp;

	(void)state;
	if (testvol_mount(&rig.tv, rig.tv.scratch, "no_detach"))
		fail_logs("ntfs-3g refused the volume");
	snprintf(p, sizeof(p), "%s/by-ntfs3g", rig.tv.mnt);
	fp = fopen(p, "w");
	if (!fp || fwrite("0123456789", 1, 10, fp) != 10 || fclose(fp))
		fail_logs("ntfs-3g write %s: %s", p, strerror(errno));
	fp = fopen(p, "a");
	if (!fp || fwrite("abc", 1, 3, fp) != 3 || fclose(fp))
		fail_logs("ntfs-3g append %s: %s", p, strerror(errno));
	if (testvol_unmount(&rig.tv))
		fail_logs("unmount failed");
	expect_copy("/", "by-ntfs3g", 13);
}

static int setup(void **state)
{
	(void)state;
	rig_arm_alarm(&rig, 120);       /* a hang or an abort cleans up too */
	return rig_setup(&rig, false);
}

static int teardown(void **state)
{
	(void)state;
	if (conn)
		ntfsc_disconnect(conn);
	conn = NULL;
	rig_teardown(&rig);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return rig_group_setup(&rig, "times");
}

static int group_teardown(void **state)
{
	(void)state;
	rig_group_teardown(&rig);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(ntfs3g_keeps_copies_too, setup, teardown),
		cmocka_unit_test_setup_teardown(times_follow_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(futimens_over_pending_data, setup, teardown),
		cmocka_unit_test_setup_teardown(directories_and_renames, setup, teardown),
		cmocka_unit_test_setup_teardown(ntfsctl_touch_stat_ls, setup, teardown),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("times", tests, group_setup, group_teardown);
}
