/*
 * test_alloc.c — cluster and MFT record allocation (lcnalloc.c,
 * mftalloc.c) checked against ntfs-3g.
 *
 * Every test makes its own volume with mkntfs in a private temporary
 * directory, which the per-test teardown removes (after unmounting any
 * ntfs-3g mount the test left behind), whether the test passed or not.
 *
 * The truth comes from ntfs-3g, never from the layer under test:
 *  - free clusters: `ntfsinfo -m` ("Free Clusters") and the statfs of a
 *    fresh read-only ntfs-3g mount (f_bfree);
 *  - the MFT zone: `ntfsinfo -m` ("MFT Zone Start/End");
 *  - which clusters are in use: $Bitmap's bytes as `ntfscat IMG '$Bitmap'`
 *    prints them;
 *  - MFT records: $MFT's bytes as `ntfscat IMG '$MFT'` prints them (parsed
 *    here, fixups checked here), the free-inode count of an ntfs-3g mount
 *    (f_ffree, which ntfs-3g derives from $MFT/$BITMAP), and ntfs-3g
 *    creating files on the volume afterwards without reusing our records;
 *  - consistency: `ntfsfix -n` exits 0.
 * (`ntfsinfo -i N` cannot show an extension record, nor any record without
 * $STANDARD_INFORMATION: it prints "Error loading node" for those, as it
 * does for ntfs-3g's own extension records, so it is not used on them.)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "attrib.h"
#include "dir.h"
#include "error.h"
#include "layout.h"
#include "lcnalloc.h"
#include "le.h"
#include "mft.h"
#include "mftalloc.h"
#include "oracle.h"
#include "runlist.h"
#include "volume.h"

#define MiB (1u << 20)

static struct {
	char mkntfs[256], ntfsinfo[256], ntfsfix[256], ntfscat[256], ntfs3g[256], umount[256];
	bool umount_is_fusermount;
} tool;

/* Per test. */
static struct {
	char dir[256], img[300], mnt[300], log[300];
	pid_t ntfs3g_pid;
	bool mounted;
} tc;

/* ------------------------------------------------------------------ */
/* utilities                                                            */
/* ------------------------------------------------------------------ */

static bool find_tool(const char *name, char *out, size_t len)
{
	const char *env = getenv("PATH");
	char paths[4096];
	char *save = NULL, *d;

	snprintf(paths, sizeof(paths), "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
		 "/sbin:/bin", env ? env : "");
	for (d = strtok_r(paths, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (!*d)
			continue;
		snprintf(out, len, "%s/%s", d, name);
		if (access(out, X_OK) == 0)
			return true;
	}
	out[0] = '\0';
	return false;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Run a tool; fail the test unless it exits 0.  *out (may be NULL) gets
 * its stdout. */
static void run_ok(const char *const argv[], char **out, size_t *len)
{
	int status = 0, err = oracle_run(argv, out, len, &status);

	if (err || status)
		fail_msg("%s failed (%d, exit %d): %s", argv[0], err, status, oracle_last_stderr());
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) < 0)
		fail_msg("cannot write %s: %s", path, strerror(errno));
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* ------------------------------------------------------------------ */
/* volumes and ntfs-3g                                                  */
/* ------------------------------------------------------------------ */

static void make_image(uint64_t bytes, unsigned cluster_size)
{
	char cs[16];
	const char *argv[] = { tool.mkntfs, "-F", "-Q", "-q", "-c", cs, tc.img, NULL };
	int fd;

	unlink(tc.img);
	fd = open(tc.img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0 || close(fd) < 0)
		fail_msg("cannot create %s: %s", tc.img, strerror(errno));
	snprintf(cs, sizeof(cs), "%u", cluster_size);
	run_ok(argv, NULL, NULL);
}

static bool is_mounted(void)
{
	struct stat a, b;

	return stat(tc.mnt, &a) == 0 && stat(tc.dir, &b) == 0 && a.st_dev != b.st_dev;
}

static void do_mount(bool read_only)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		int log = open(tc.log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (null < 0 || log < 0)
			_exit(126);
		dup2(null, 0);
		dup2(log, 1);
		dup2(log, 2);
		/* no_detach: stay our child, so unmounting can wait for it. */
		execl(tool.ntfs3g, tool.ntfs3g, "-o", read_only ? "ro,no_detach" : "no_detach",
		      tc.img, tc.mnt, (char *)NULL);
		_exit(127);
	}
	tc.ntfs3g_pid = pid;
	for (long t = 0; t < 20000; t += 20) {
		int status;

		if (is_mounted()) {
			tc.mounted = true;
			return;
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			tc.ntfs3g_pid = 0;
			fail_msg("ntfs-3g exited (status 0x%x) before the mount appeared (see %s)",
				 status, tc.log);
		}
		sleep_ms(20);
	}
	fail_msg("ntfs-3g: the mount did not appear within 20 s");
}

static bool wait_child(pid_t pid, long ms, int *status)
{
	for (long t = 0; t <= ms; t += 20) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid || (r < 0 && errno != EINTR))
			return true;
		sleep_ms(20);
	}
	return false;
}

/* Unmount and wait for ntfs-3g to finish writing.  Returns 0 or -1; safe to
 * call when nothing is mounted (teardown). */
static int do_unmount(void)
{
	int ret = 0, status = 0;

	if (tc.mounted) {
		const char *argv[] = { tool.umount, tool.umount_is_fusermount ? "-u" : tc.mnt,
				       tool.umount_is_fusermount ? tc.mnt : NULL, NULL };

		for (int tries = 0; tries < 50 && is_mounted(); tries++) {
			int st;

			if (oracle_run(argv, NULL, NULL, &st) == 0 && st == 0)
				break;
			sleep_ms(100);
		}
		if (is_mounted())
			ret = -1;
		else
			tc.mounted = false;
	}
	if (tc.ntfs3g_pid > 0) {
		if (!wait_child(tc.ntfs3g_pid, 30000, &status)) {
			kill(tc.ntfs3g_pid, SIGTERM);
			if (!wait_child(tc.ntfs3g_pid, 5000, &status)) {
				kill(tc.ntfs3g_pid, SIGKILL);
				wait_child(tc.ntfs3g_pid, 5000, &status);
			}
			ret = -1;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			ret = -1;
		}
		tc.ntfs3g_pid = 0;
	}
	return ret;
}

static void unmount_ok(void)
{
	if (do_unmount())
		fail_msg("unmounting %s failed", tc.mnt);
}

/* statfs of a fresh read-only ntfs-3g mount. */
static void ntfs3g_statfs(struct statvfs *st)
{
	do_mount(true);
	if (statvfs(tc.mnt, st) < 0)
		fail_msg("statvfs %s: %s", tc.mnt, strerror(errno));
	unmount_ok();
}

/* A "Key: value" number from `ntfsinfo -m`. */
static int64_t ntfsinfo_m(const char *key)
{
	const char *argv[] = { tool.ntfsinfo, "-m", tc.img, NULL };
	char *out = NULL, *p;
	long long v;

	run_ok(argv, &out, NULL);
	p = strstr(out, key);
	if (!p || sscanf(p + strlen(key), " %lld", &v) != 1) {
		free(out);
		fail_msg("ntfsinfo -m printed no \"%s\"", key);
	}
	free(out);
	return v;
}

static int64_t ntfs3g_free_clusters(void)
{
	return ntfsinfo_m("Free Clusters:");
}

static void ntfsfix_clean(void)
{
	const char *argv[] = { tool.ntfsfix, "-n", tc.img, NULL };
	char *out = NULL;
	int status = 0;

	assert_int_equal(oracle_run(argv, &out, NULL, &status), 0);
	if (status || !strstr(out, "processed successfully"))
		fail_msg("ntfsfix -n: exit %d\n%s%s", status, out, oracle_last_stderr());
	free(out);
}

/* A system file's unnamed $DATA as ntfs-3g reads it. */
static uint8_t *ntfs3g_cat(const char *path, size_t *len)
{
	const char *argv[] = { tool.ntfscat, tc.img, path, NULL };
	char *out = NULL;

	run_ok(argv, &out, len);
	return (uint8_t *)out;
}

static bool bit(const uint8_t *b, int64_t i)
{
	return b[i >> 3] >> (i & 7) & 1;
}

static struct ntfs_volume *open_rw(void)
{
	struct ntfs_volume *vol = NULL;
	int err = ntfs_volume_open(tc.img, 0, &vol);

	if (err)
		fail_msg("ntfs_volume_open(%s): %d %s", tc.img, err, ntfs_last_error());
	return vol;
}

#define EXPECT_OK(call)                                                              \
	do {                                                                         \
		int err_ = (call);                                                   \
		if (err_)                                                            \
			fail_msg("%s: %d %s", #call, err_, ntfs_last_error());       \
	} while (0)

static int64_t rl_clusters(const struct ntfs_runlist *rl)
{
	int64_t n = 0;

	for (size_t i = 0; i < rl->count; i++)
		n += rl->runs[i].length;
	return n;
}

/* The runlist is well formed: contiguous vcns from 0, runs inside the
 * volume, no two runs that should have been merged. */
static void check_runlist(const struct ntfs_runlist *rl, int64_t nr_clusters)
{
	int64_t vcn = 0;

	for (size_t i = 0; i < rl->count; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		assert_int_equal(r->vcn, vcn);
		assert_true(r->length > 0);
		assert_true(r->lcn >= 0 && r->lcn + r->length <= nr_clusters);
		if (i)
			assert_false(rl->runs[i - 1].lcn + rl->runs[i - 1].length == r->lcn);
		vcn += r->length;
	}
}

/* ------------------------------------------------------------------ */
/* fixtures                                                             */
/* ------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP || type == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static int test_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	memset(&tc, 0, sizeof(tc));
	snprintf(tc.dir, sizeof(tc.dir), "%s/ntfsd-alloc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tc.dir)) {
		print_error("mkdtemp %s: %s\n", tc.dir, strerror(errno));
		tc.dir[0] = '\0';
		return -1;
	}
	snprintf(tc.img, sizeof(tc.img), "%s/vol.img", tc.dir);
	snprintf(tc.mnt, sizeof(tc.mnt), "%s/mnt", tc.dir);
	snprintf(tc.log, sizeof(tc.log), "%s/ntfs-3g.log", tc.dir);
	if (mkdir(tc.mnt, 0755) < 0) {
		print_error("mkdir %s: %s\n", tc.mnt, strerror(errno));
		return -1;
	}
	alarm(300);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	alarm(0);
	if (tc.mounted || tc.ntfs3g_pid > 0)
		do_unmount();
	if (tc.dir[0] && !tc.mounted)
		nftw(tc.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else if (tc.dir[0])
		print_error("leaving %s behind: %s is still mounted\n", tc.dir, tc.mnt);
	tc.dir[0] = '\0';
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	if (!find_tool("mkntfs", tool.mkntfs, sizeof(tool.mkntfs)) ||
	    !find_tool("ntfsinfo", tool.ntfsinfo, sizeof(tool.ntfsinfo)) ||
	    !find_tool("ntfsfix", tool.ntfsfix, sizeof(tool.ntfsfix)) ||
	    !find_tool("ntfscat", tool.ntfscat, sizeof(tool.ntfscat)) ||
	    !find_tool("ntfs-3g", tool.ntfs3g, sizeof(tool.ntfs3g))) {
		print_error("ntfs-3g's tools (mkntfs, ntfsinfo, ntfsfix, ntfscat, ntfs-3g) are "
			    "required: install ntfs-3g\n");
		return -1;
	}
	if (find_tool("fusermount", tool.umount, sizeof(tool.umount)) ||
	    find_tool("fusermount3", tool.umount, sizeof(tool.umount))) {
		tool.umount_is_fusermount = true;
	} else if (!find_tool("umount", tool.umount, sizeof(tool.umount))) {
		print_error("fusermount (or umount) is required\n");
		return -1;
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		print_error("/dev/fuse is required for the ntfs-3g mounts: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* The watchdog: a hung test must not hang the run, nor leave a mount. */
static void on_timeout(int sig)
{
	static const char msg[] = "test_alloc: a test did not finish within 300 s\n";
	ssize_t n;

	(void)sig;
	n = write(2, msg, sizeof(msg) - 1);
	(void)n;
	if (tc.mounted && fork() == 0) {
		execl(tool.umount, tool.umount, "-u", tc.mnt, (char *)NULL);
		_exit(127);
	}
	_exit(1);
}

/* ------------------------------------------------------------------ */
/* free-cluster count and the MFT zone                                  */
/* ------------------------------------------------------------------ */

/* At open, the free count and the MFT zone are what ntfs-3g says, for
 * several cluster sizes and volume sizes whose cluster count is not a
 * multiple of 8 (so $Bitmap's last byte has bits past the volume). */
static void test_open_matches_ntfs3g(void **state)
{
	static const struct {
		uint64_t bytes;
		unsigned cluster;
	} vols[] = {
		{ 64 * MiB, 4096 }, { 50001 * 1024, 512 }, { 50001 * 1024, 1024 },
		{ 33 * MiB + 4096 * 5 + 512, 4096 }, { 48 * MiB, 65536 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(vols) / sizeof(vols[0]); i++) {
		struct ntfs_volume *vol, *ro;
		struct statvfs st;
		int64_t want, zs, ze;

		make_image(vols[i].bytes, vols[i].cluster);
		want = ntfs3g_free_clusters();
		ntfs3g_statfs(&st);
		assert_int_equal((int64_t)st.f_bfree, want);
		vol = open_rw();
		assert_int_equal(vol->geo.cluster_size, vols[i].cluster);
		assert_int_equal(ntfs_volume_free_clusters(vol), want);
		ntfs_mft_zone(vol, &zs, &ze);
		assert_int_equal(zs, ntfsinfo_m("MFT Zone Start:"));
		assert_int_equal(ze, ntfsinfo_m("MFT Zone End:"));
		ntfs_volume_close(vol);

		/* A read-only open counts from the disk, and cannot allocate. */
		EXPECT_OK(ntfs_volume_open(tc.img, NTFS_OPEN_READ_ONLY, &ro));
		assert_null(ro->lcn_bitmap);
		assert_int_equal(ntfs_volume_free_clusters(ro), want);
		{
			struct ntfs_runlist rl = { 0 };
			uint64_t no;

			assert_int_equal(ntfs_cluster_alloc(ro, 1, -1, &rl), -EROFS);
			assert_int_equal(ntfs_mft_record_alloc(ro, 0, 0, &no), -EROFS);
			assert_int_equal(rl.count, 0);
		}
		ntfs_volume_close(ro);
	}
}

/* Allocate N clusters in assorted pieces and free M of them: a fresh
 * ntfs-3g mount and ntfsinfo see the free count move by exactly N - M, and
 * ntfs-3g's $Bitmap has exactly the clusters still held set. */
static void test_alloc_free_counts(void **state)
{
	struct ntfs_runlist rl[6] = { 0 };
	static const int64_t sizes[6] = { 1, 7, 100, 513, 2048, 33 };
	struct ntfs_volume *vol;
	struct statvfs st0, st1;
	uint8_t *before, *after;
	size_t blen, alen;
	int64_t free0, nr, n = 0, m = 0;

	(void)state;
	make_image(64 * MiB, 4096);
	free0 = ntfs3g_free_clusters();
	ntfs3g_statfs(&st0);
	before = ntfs3g_cat("/$Bitmap", &blen);

	vol = open_rw();
	nr = (int64_t)vol->geo.nr_clusters;
	for (int i = 0; i < 6; i++) {
		EXPECT_OK(ntfs_cluster_alloc(vol, sizes[i], i % 2 ? -1 : 3000 + 1000 * i, &rl[i]));
		check_runlist(&rl[i], nr);
		assert_int_equal(rl_clusters(&rl[i]), sizes[i]);
		n += sizes[i];
		assert_int_equal(ntfs_volume_free_clusters(vol), free0 - n);
		if (i == 2) {
			/* Grow it right where it ends: the new clusters merge
			 * into its run. */
			int64_t end = rl[2].runs[0].lcn + rl[2].runs[0].length;

			assert_int_equal(rl[2].count, 1);
			EXPECT_OK(ntfs_cluster_alloc(vol, 10, end, &rl[2]));
			assert_int_equal(rl[2].count, 1);
			assert_int_equal(rl[2].runs[0].length, 110);
			n += 10;
		}
	}
	/* Free: a whole allocation, part of one run, and a runlist from a vcn. */
	EXPECT_OK(ntfs_cluster_free(vol, rl[1].runs[0].lcn, 7));
	m += 7;
	assert_true(rl[4].runs[0].length >= 150);
	EXPECT_OK(ntfs_cluster_free(vol, rl[4].runs[0].lcn + 100, 50));
	m += 50;
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &rl[3], 13));
	m += 500;
	assert_int_equal(ntfs_volume_free_clusters(vol), free0 - n + m);
	ntfs_volume_close(vol);

	assert_int_equal(ntfs3g_free_clusters(), free0 - n + m);
	ntfs3g_statfs(&st1);
	assert_int_equal((int64_t)st0.f_bfree - (int64_t)st1.f_bfree, n - m);
	ntfsfix_clean();

	/* Bit by bit: what changed is exactly what we still hold. */
	after = ntfs3g_cat("/$Bitmap", &alen);
	assert_int_equal(alen, blen);
	{
		uint8_t *want = malloc(blen);

		memcpy(want, before, blen);
		for (int i = 0; i < 6; i++)
			for (size_t r = 0; r < rl[i].count; r++)
				for (int64_t c = 0; c < rl[i].runs[r].length; c++) {
					int64_t lcn = rl[i].runs[r].lcn + c, vcn = rl[i].runs[r].vcn + c;
					bool freed = i == 1 || (i == 4 && vcn >= 100 && vcn < 150) ||
						     (i == 3 && vcn >= 13);

					assert_false(bit(before, lcn));  /* it was free */
					if (!freed)
						want[lcn >> 3] |= (uint8_t)(1u << (lcn & 7));
				}
		assert_memory_equal(after, want, blen);
		free(want);
	}
	free(before);
	free(after);
	for (int i = 0; i < 6; i++)
		ntfs_runlist_free(&rl[i]);
}

/* Contiguity and the hint: on an empty stretch an allocation is one run at
 * the hint; an allocation that cannot be one run takes the largest holes. */
static void test_contiguous_near_hint(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_runlist a = { 0 }, b = { 0 }, c = { 0 };
	int64_t zs, ze, nr;

	(void)state;
	make_image(64 * MiB, 4096);
	vol = open_rw();
	nr = (int64_t)vol->geo.nr_clusters;
	ntfs_mft_zone(vol, &zs, &ze);

	EXPECT_OK(ntfs_cluster_alloc(vol, 300, 5000, &a));
	assert_int_equal(a.count, 1);
	assert_int_equal(a.runs[0].lcn, 5000);
	/* A hint inside the MFT zone is moved out of it. */
	EXPECT_OK(ntfs_cluster_alloc(vol, 10, zs + 5, &b));
	assert_int_equal(b.count, 1);
	assert_true(b.runs[0].lcn >= ze);
	ntfs_runlist_free(&b);

	/* Punch holes of 5 and 40 clusters into a, then ask for 45 where only
	 * those two holes are free before the end of a. */
	EXPECT_OK(ntfs_cluster_free(vol, 5010, 5));
	EXPECT_OK(ntfs_cluster_free(vol, 5100, 40));
	EXPECT_OK(ntfs_cluster_alloc(vol, 30, 5000, &c));
	assert_int_equal(c.count, 1);
	assert_int_equal(c.runs[0].lcn, 5100);   /* first extent holding all 30 */
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &c, 0));
	ntfs_runlist_free(&c);
	/* Everything else after the zone is taken: fill it. */
	{
		struct ntfs_runlist fill = { 0 };
		uint8_t *bm;
		size_t len;
		int64_t outside = 0;

		ntfs_volume_close(vol);
		bm = ntfs3g_cat("/$Bitmap", &len);
		for (int64_t i = ze; i < nr; i++)
			outside += !bit(bm, i);
		for (int64_t i = 0; i < zs; i++)
			outside += !bit(bm, i);
		free(bm);
		vol = open_rw();
		/* Leave only the two holes (5 + 40) outside the zone. */
		EXPECT_OK(ntfs_cluster_alloc(vol, outside - 45, ze, &fill));
		for (size_t r = 0; r < fill.count; r++)
			assert_true(fill.runs[r].lcn >= ze || fill.runs[r].lcn + fill.runs[r].length <= zs);
		EXPECT_OK(ntfs_cluster_alloc(vol, 45, 5000, &c));
		assert_int_equal(c.count, 2);
		/* the largest hole first */
		assert_int_equal(c.runs[0].lcn, 5100);
		assert_int_equal(c.runs[0].length, 40);
		assert_int_equal(c.runs[1].lcn, 5010);
		assert_int_equal(c.runs[1].length, 5);
		ntfs_runlist_free(&fill);
	}
	ntfs_volume_close(vol);
	ntfsfix_clean();
	ntfs_runlist_free(&a);
	ntfs_runlist_free(&c);
}

/* The MFT zone stays untouched while anything else is free; then it is
 * used; ENOSPC is all-or-nothing; freeing makes room again. */
static void test_zone_and_enospc(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_runlist rl = { 0 }, more = { 0 }, tail = { 0 };
	struct statvfs st;
	uint8_t *bm;
	size_t len;
	int64_t zs, ze, nr, free0, outside = 0, inside = 0;

	(void)state;
	make_image(32 * MiB, 4096);
	zs = ntfsinfo_m("MFT Zone Start:");
	ze = ntfsinfo_m("MFT Zone End:");
	free0 = ntfs3g_free_clusters();
	bm = ntfs3g_cat("/$Bitmap", &len);
	vol = open_rw();
	nr = (int64_t)vol->geo.nr_clusters;
	for (int64_t i = 0; i < nr; i++)
		if (!bit(bm, i)) {
			if (i >= zs && i < ze)
				inside++;
			else
				outside++;
		}
	assert_int_equal(inside + outside, free0);
	assert_true(inside > 100 && outside > 1000);

	/* In pieces of 97 with no hint, until everything outside the zone is
	 * gone: not one cluster of the zone is used. */
	while (rl_clusters(&rl) + 97 <= outside)
		EXPECT_OK(ntfs_cluster_alloc(vol, 97, -1, &rl));
	for (size_t r = 0; r < rl.count; r++) {
		const struct ntfs_run *run = &rl.runs[r];

		assert_true(run->lcn >= ze || run->lcn + run->length <= zs);
		for (int64_t c = 0; c < run->length; c++)
			assert_false(bit(bm, run->lcn + c));
	}
	/* The rest of the outside, then into the zone. */
	EXPECT_OK(ntfs_cluster_alloc(vol, outside - rl_clusters(&rl), -1, &rl));
	assert_int_equal(rl_clusters(&rl), outside);
	for (size_t r = 0; r < rl.count; r++)
		assert_true(rl.runs[r].lcn >= ze || rl.runs[r].lcn + rl.runs[r].length <= zs);
	EXPECT_OK(ntfs_cluster_alloc(vol, 10, -1, &more));
	for (size_t r = 0; r < more.count; r++)
		assert_true(more.runs[r].lcn >= zs && more.runs[r].lcn + more.runs[r].length <= ze);

	/* ENOSPC: one more than is free allocates nothing. */
	{
		int64_t left = ntfs_volume_free_clusters(vol);
		size_t count0 = more.count;
		int64_t len0 = more.runs[count0 - 1].length;

		assert_int_equal(left, inside - 10);
		assert_int_equal(ntfs_cluster_alloc(vol, left + 1, -1, &more), -ENOSPC);
		assert_non_null(strstr(ntfs_last_error(), "free"));
		assert_int_equal(ntfs_volume_free_clusters(vol), left);
		assert_int_equal(more.count, count0);
		assert_int_equal(more.runs[count0 - 1].length, len0);
		/* Exactly what is left works, then the volume is full. */
		EXPECT_OK(ntfs_cluster_alloc(vol, left, -1, &tail));
		assert_int_equal(ntfs_volume_free_clusters(vol), 0);
		assert_int_equal(ntfs_cluster_alloc(vol, 1, -1, &more), -ENOSPC);
	}
	ntfs_volume_close(vol);
	assert_int_equal(ntfs3g_free_clusters(), 0);
	ntfs3g_statfs(&st);
	assert_int_equal(st.f_bfree, 0);
	ntfsfix_clean();

	/* Reopened: still full; freeing makes room for exactly that much. */
	vol = open_rw();
	assert_int_equal(ntfs_volume_free_clusters(vol), 0);
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &tail, 0));
	EXPECT_OK(ntfs_cluster_free(vol, rl.runs[0].lcn, 3));
	assert_int_equal(ntfs_volume_free_clusters(vol), rl_clusters(&tail) + 3);
	ntfs_runlist_free(&more);
	EXPECT_OK(ntfs_cluster_alloc(vol, rl_clusters(&tail) + 3, -1, &more));
	assert_int_equal(ntfs_volume_free_clusters(vol), 0);
	assert_int_equal(ntfs_cluster_alloc(vol, 1, -1, &more), -ENOSPC);
	ntfs_volume_close(vol);
	assert_int_equal(ntfs3g_free_clusters(), 0);
	ntfsfix_clean();
	free(bm);
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&more);
	ntfs_runlist_free(&tail);
}

/* Freeing free clusters is corruption: -EIO, nothing freed, even when only
 * the last of several runs is at fault; bad ranges are -EINVAL. */
static void test_double_free(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_runlist rl = { 0 }, bad = { 0 };
	int64_t free0, nr;

	(void)state;
	make_image(32 * MiB, 4096);
	vol = open_rw();
	nr = (int64_t)vol->geo.nr_clusters;
	EXPECT_OK(ntfs_cluster_alloc(vol, 64, 4000, &rl));
	free0 = ntfs_volume_free_clusters(vol);
	assert_int_equal(ntfs_cluster_free(vol, 4000 + 60, 8), -EIO);
	assert_non_null(strstr(ntfs_last_error(), "already free"));
	assert_int_equal(ntfs_volume_free_clusters(vol), free0);
	/* Two runs over the same clusters: the second finds them free. */
	bad.runs = calloc(2, sizeof(*bad.runs));
	bad.count = bad.capacity = 2;
	bad.runs[0] = (struct ntfs_run){ .vcn = 0, .lcn = 4000, .length = 10 };
	bad.runs[1] = (struct ntfs_run){ .vcn = 10, .lcn = 4005, .length = 10 };
	assert_int_equal(ntfs_cluster_free_from_rl(vol, &bad, 0), -EIO);
	assert_int_equal(ntfs_volume_free_clusters(vol), free0);
	assert_int_equal(ntfs_cluster_free(vol, -1, 1), -EINVAL);
	assert_int_equal(ntfs_cluster_free(vol, nr - 1, 2), -EINVAL);
	assert_int_equal(ntfs_cluster_free(vol, 0, 0), -EINVAL);
	assert_int_equal(ntfs_cluster_alloc(vol, 0, -1, &bad), -EINVAL);
	ntfs_volume_close(vol);
	/* Nothing of that reached the disk: the 64 are still in use. */
	assert_int_equal(ntfs3g_free_clusters(), free0);
	vol = open_rw();
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &rl, 0));
	assert_int_equal(ntfs_volume_free_clusters(vol), free0 + 64);
	ntfs_volume_close(vol);
	assert_int_equal(ntfs3g_free_clusters(), free0 + 64);
	ntfsfix_clean();
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&bad);
}

/* A failing bitmap write (the device's descriptor swapped for a read-only
 * one) fails the call and undoes it in memory. */
static void test_write_error_rolls_back(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_runlist rl = { 0 }, got = { 0 };
	int64_t free0;
	int rw_fd, ro_fd, dev_fd;

	(void)state;
	make_image(32 * MiB, 4096);
	vol = open_rw();
	EXPECT_OK(ntfs_cluster_alloc(vol, 20, 4000, &rl));
	free0 = ntfs_volume_free_clusters(vol);
	dev_fd = vol->dev->fd;
	rw_fd = dup(dev_fd);
	ro_fd = open(tc.img, O_RDONLY | O_CLOEXEC);
	assert_true(rw_fd >= 0 && ro_fd >= 0);
	assert_true(dup2(ro_fd, dev_fd) == dev_fd);

	assert_int_equal(ntfs_cluster_alloc(vol, 5, 4020, &rl), -EBADF);
	assert_non_null(strstr(ntfs_last_error(), "$Bitmap"));
	assert_int_equal(rl.count, 1);
	assert_int_equal(rl.runs[0].length, 20);
	assert_int_equal(ntfs_volume_free_clusters(vol), free0);
	assert_int_equal(ntfs_cluster_free(vol, 4000, 20), -EBADF);
	assert_int_equal(ntfs_volume_free_clusters(vol), free0);
	assert_int_equal(ntfs_cluster_free_from_rl(vol, &rl, 0), -EBADF);
	assert_int_equal(ntfs_volume_free_clusters(vol), free0);

	assert_true(dup2(rw_fd, dev_fd) == dev_fd);
	close(rw_fd);
	close(ro_fd);
	/* The clusters the failed call had picked are free again. */
	EXPECT_OK(ntfs_cluster_alloc(vol, 5, 4020, &got));
	assert_int_equal(got.runs[0].lcn, 4020);
	/* The 20 are still ours. */
	assert_int_equal(ntfs_cluster_free(vol, 4000, 26), -EIO);
	EXPECT_OK(ntfs_cluster_free(vol, 4000, 20));
	assert_int_equal(ntfs_volume_free_clusters(vol), free0 + 15);
	ntfs_volume_close(vol);
	assert_int_equal(ntfs3g_free_clusters(), free0 + 15);
	ntfsfix_clean();
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&got);
}

/* $MFT's own clusters go into the MFT zone first. */
static void test_alloc_for_mft(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_runlist rl = { 0 };
	int64_t zs, ze, mft_end;

	(void)state;
	make_image(64 * MiB, 4096);
	vol = open_rw();
	ntfs_mft_zone(vol, &zs, &ze);
	mft_end = vol->mft_data->rl.runs[vol->mft_data->rl.count - 1].lcn +
		  vol->mft_data->rl.runs[vol->mft_data->rl.count - 1].length;
	EXPECT_OK(ntfs_cluster_alloc_mft(vol, 16, mft_end, &rl));
	for (size_t r = 0; r < rl.count; r++)
		assert_true(rl.runs[r].lcn >= zs && rl.runs[r].lcn + rl.runs[r].length <= ze);
	assert_true(rl.runs[0].lcn >= mft_end);
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &rl, 0));
	ntfs_volume_close(vol);
	ntfsfix_clean();
	ntfs_runlist_free(&rl);
}

/* ------------------------------------------------------------------ */
/* threads                                                              */
/* ------------------------------------------------------------------ */

#define THREADS 4
#define ITERATIONS 400
#define HELD_MAX 64

struct worker {
	struct ntfs_volume *vol;
	_Atomic uint8_t *owner;         /* per cluster: held by some thread */
	const uint8_t *initial;         /* ntfs-3g's $Bitmap before */
	uint64_t seed;
	struct ntfs_runlist held[HELD_MAX];
	int nheld;
	int64_t held_clusters;
	int errors;
	char first_error[256];
};

static void worker_error(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (!w->errors++) {
		va_start(ap, fmt);
		vsnprintf(w->first_error, sizeof(w->first_error), fmt, ap);
		va_end(ap);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int64_t nr = (int64_t)w->vol->geo.nr_clusters;

	for (int it = 0; it < ITERATIONS; it++) {
		uint64_t r = rng_next(&w->seed);

		if (w->nheld < HELD_MAX && (r % 5 < 3 || !w->nheld)) {
			struct ntfs_runlist *rl = &w->held[w->nheld];
			int64_t count = 1 + (int64_t)(r >> 8) % 48;
			int64_t hint = (r >> 20) % 3 ? (int64_t)((r >> 24) % (uint64_t)nr) : -1;
			int err = ntfs_cluster_alloc(w->vol, count, hint, rl);

			if (err) {
				worker_error(w, "alloc %lld: %d %s", (long long)count, err,
					     ntfs_last_error());
				continue;
			}
			if (rl_clusters(rl) != count)
				worker_error(w, "alloc %lld gave %lld", (long long)count,
					     (long long)rl_clusters(rl));
			for (size_t i = 0; i < rl->count; i++)
				for (int64_t c = 0; c < rl->runs[i].length; c++) {
					int64_t lcn = rl->runs[i].lcn + c;

					if (atomic_exchange(&w->owner[lcn], 1))
						worker_error(w, "cluster %lld handed out twice",
							     (long long)lcn);
					if (bit(w->initial, lcn))
						worker_error(w, "cluster %lld was in use before",
							     (long long)lcn);
				}
			w->held_clusters += count;
			w->nheld++;
		} else {
			int k = (int)((r >> 8) % (uint64_t)w->nheld);
			struct ntfs_runlist *rl = &w->held[k];
			int err = 0;

			/* Give up ownership before the clusters can be reused. */
			for (size_t i = 0; i < rl->count; i++)
				for (int64_t c = 0; c < rl->runs[i].length; c++)
					atomic_store(&w->owner[rl->runs[i].lcn + c], 0);
			if (r & 1) {
				err = ntfs_cluster_free_from_rl(w->vol, rl, 0);
			} else {
				for (size_t i = 0; i < rl->count && !err; i++)
					err = ntfs_cluster_free(w->vol, rl->runs[i].lcn,
								rl->runs[i].length);
			}
			if (err)
				worker_error(w, "free: %d %s", err, ntfs_last_error());
			w->held_clusters -= rl_clusters(rl);
			ntfs_runlist_free(rl);
			w->held[k] = w->held[--w->nheld];
			memset(&w->held[w->nheld], 0, sizeof(w->held[0]));
		}
	}
	return NULL;
}

/* Several threads allocating and freeing at once: no cluster is handed out
 * twice, none that was in use, and the count is exact, in memory and for
 * ntfs-3g afterwards. */
static void test_threads(void **state)
{
	static struct worker w[THREADS];
	pthread_t th[THREADS];
	struct ntfs_volume *vol;
	_Atomic uint8_t *owner;
	uint8_t *initial, *after;
	size_t len, alen;
	int64_t free0, held = 0, nr;

	(void)state;
	make_image(64 * MiB, 4096);
	free0 = ntfs3g_free_clusters();
	initial = ntfs3g_cat("/$Bitmap", &len);
	vol = open_rw();
	nr = (int64_t)vol->geo.nr_clusters;
	owner = calloc((size_t)nr, sizeof(*owner));
	assert_non_null(owner);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < THREADS; i++) {
		w[i].vol = vol;
		w[i].owner = owner;
		w[i].initial = initial;
		w[i].seed = rng_next(&rng) | 1;
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < THREADS; i++) {
		if (w[i].errors)
			fail_msg("thread %d: %d errors, first: %s", i, w[i].errors, w[i].first_error);
		held += w[i].held_clusters;
	}
	assert_true(held > 0);
	assert_int_equal(ntfs_volume_free_clusters(vol), free0 - held);
	ntfs_volume_close(vol);

	assert_int_equal(ntfs3g_free_clusters(), free0 - held);
	ntfsfix_clean();
	after = ntfs3g_cat("/$Bitmap", &alen);
	assert_int_equal(alen, len);
	for (int64_t c = 0; c < nr; c++)
		if (bit(after, c) != (bit(initial, c) || owner[c]))
			fail_msg("cluster %lld: on disk %d, expected %d", (long long)c, bit(after, c),
				 bit(initial, c) || owner[c]);
	for (int i = 0; i < THREADS; i++)
		for (int k = 0; k < w[i].nheld; k++)
			ntfs_runlist_free(&w[i].held[k]);
	free(owner);
	free(initial);
	free(after);
}

/* ------------------------------------------------------------------ */
/* MFT records                                                          */
/* ------------------------------------------------------------------ */

struct rec_view {
	bool file, fixups_ok, in_use;
	uint16_t seq;
	uint64_t base;
	uint32_t number;
	uint16_t attrs_offset;
	uint32_t bytes_in_use, bytes_allocated;
	uint32_t first_attr;
};

/* Record no of $MFT as ntfs-3g's ntfscat read it.  ntfs-3g checks and
 * removes the update sequence fixups of every record as it reads $MFT, and
 * hands out a record whose fixups do not match with its magic changed to
 * "BAAD" (observed with ntfs-3g 2022.10.3: a torn sector tail turns "FILE"
 * into "BAAD" in ntfscat's output), so a "FILE" here has sound fixups. */
static struct rec_view rec_view(const uint8_t *mft, size_t len, uint32_t rec_size, uint64_t no)
{
	struct rec_view v = { 0 };
	const uint8_t *r;

	if ((no + 1) * rec_size > len)
		return v;
	r = mft + no * rec_size;
	v.file = !memcmp(r, "FILE", 4);
	v.fixups_ok = v.file && get_le16(r + 6) == rec_size / 512 + 1;
	v.seq = get_le16(r + 16);
	v.attrs_offset = get_le16(r + 20);
	v.in_use = get_le16(r + 22) & 1;
	v.bytes_in_use = get_le32(r + 24);
	v.bytes_allocated = get_le32(r + 28);
	v.base = get_le64(r + 32);
	v.number = get_le32(r + 44);
	if (v.attrs_offset + 4u <= rec_size)
		v.first_attr = get_le32(r + v.attrs_offset);
	return v;
}

/* Give the volume free MFT records the way ntfs-3g leaves them: create
 * files through a mount (ntfs-3g puts new files at record 64 and up,
 * extending $MFT) and delete some. */
static void make_mft_volume(int create, int keep)
{
	char path[400];

	make_image(64 * MiB, 4096);
	do_mount(false);
	for (int i = 0; i < create; i++) {
		snprintf(path, sizeof(path), "%s/f%03d", tc.mnt, i);
		write_file(path, path, strlen(path));
	}
	for (int i = keep; i < create; i++) {
		snprintf(path, sizeof(path), "%s/f%03d", tc.mnt, i);
		if (unlink(path) < 0)
			fail_msg("unlink %s: %s", path, strerror(errno));
	}
	unmount_ok();
}

/* Allocated records are formatted extension records of their base, marked
 * in $MFT/$BITMAP for ntfs-3g (its free-inode count drops, and files it
 * creates afterwards go elsewhere); freeing them undoes that. */
static void test_mft_records(void **state)
{
	enum { K = 6 };
	struct ntfs_volume *vol;
	struct statvfs st0, st1, st2;
	uint8_t *mft0, *mft1, *mft2;
	size_t len0, len1, len2;
	uint64_t no[K], base_no;
	uint32_t rs;
	struct rec_view v;

	(void)state;
	make_mft_volume(10, 4);
	ntfs3g_statfs(&st0);
	mft0 = ntfs3g_cat("/$MFT", &len0);

	vol = open_rw();
	rs = vol->geo.mft_record_size;
	{
		uint64_t mref;
		EXPECT_OK(ntfs_path_lookup(vol, "/f001", 0, &mref));
		base_no = MREF(mref);
		for (int i = 0; i < K; i++) {
			EXPECT_OK(ntfs_mft_record_alloc(vol, base_no, MSEQNO(mref), &no[i]));
			assert_true(no[i] >= 24);
			for (int j = 0; j < i; j++)
				assert_true(no[i] != no[j]);
			/* The layer reads it back as a valid record. */
			{
				uint8_t *buf = malloc(rs);
				EXPECT_OK(ntfs_mft_record_read(vol, no[i], buf));
				free(buf);
			}
		}
		ntfs_volume_close(vol);

		mft1 = ntfs3g_cat("/$MFT", &len1);
		for (int i = 0; i < K; i++) {
			struct rec_view old = rec_view(mft0, len0, rs, no[i]);
			uint16_t want_seq = (uint16_t)(old.file ? old.seq + 1 : 1);

			v = rec_view(mft1, len1, rs, no[i]);
			assert_true(v.file && v.fixups_ok && v.in_use);
			assert_false(old.in_use);
			assert_int_equal(v.seq, want_seq ? want_seq : 1);
			assert_int_equal(v.base, mref);
			assert_int_equal(v.number, no[i]);
			assert_int_equal(v.attrs_offset % 8, 0);
			assert_int_equal(v.first_attr, 0xffffffffu);
			assert_int_equal(v.bytes_in_use, v.attrs_offset + 8u);
			assert_int_equal(v.bytes_allocated, rs);
		}
		ntfsfix_clean();
		ntfs3g_statfs(&st1);
		assert_int_equal(st1.f_bfree, st0.f_bfree);
		assert_int_equal((int64_t)st0.f_ffree - (int64_t)st1.f_ffree, K);
	}

	/* ntfs-3g mounts, reads, and creates files without reusing ours. */
	{
		char path[400];
		struct ntfs_volume *v2;

		do_mount(false);
		for (int i = 0; i < 20; i++) {
			snprintf(path, sizeof(path), "%s/g%03d", tc.mnt, i);
			write_file(path, "x", 1);
		}
		unmount_ok();
		ntfsfix_clean();
		v2 = open_rw();
		for (int i = 0; i < 20; i++) {
			uint64_t m;

			snprintf(path, sizeof(path), "/g%03d", i);
			EXPECT_OK(ntfs_path_lookup(v2, path, 0, &m));
			for (int j = 0; j < K; j++)
				assert_true(MREF(m) != no[j]);
		}
		/* Free them again. */
		for (int i = 0; i < K; i++)
			EXPECT_OK(ntfs_mft_record_free(v2, no[i]));
		assert_int_equal(ntfs_mft_record_free(v2, no[0]), -EIO);
		assert_int_equal(ntfs_mft_record_free(v2, 5), -EINVAL);
		assert_int_equal(ntfs_mft_record_free(v2, 23), -EINVAL);
		ntfs_volume_close(v2);
	}
	mft2 = ntfs3g_cat("/$MFT", &len2);
	for (int i = 0; i < K; i++) {
		struct rec_view was = rec_view(mft1, len1, rs, no[i]);

		v = rec_view(mft2, len2, rs, no[i]);
		assert_true(v.file && v.fixups_ok);
		assert_false(v.in_use);
		assert_int_equal(v.seq, (uint16_t)(was.seq + 1) ? (uint16_t)(was.seq + 1) : 1);
	}
	ntfsfix_clean();
	ntfs3g_statfs(&st2);
	/* 20 new files took 20 records; ours are free again. */
	assert_int_equal((int64_t)st0.f_ffree - (int64_t)st2.f_ffree,
			 20 + (int64_t)(st0.f_bfree - st2.f_bfree) *
				      (int64_t)(st2.f_bsize / rs));
	free(mft0);
	free(mft1);
	free(mft2);
}

/* `ntfsinfo -i 0`'s "KEY" line (e.g. "Allocated size:") in the dump of
 * $MFT's attribute ATTR (e.g. "$BITMAP"). */
static int64_t mft_attr_field(const char *attr, const char *key)
{
	const char *argv[] = { tool.ntfsinfo, "-i", "0", tc.img, NULL };
	char *out = NULL, *p, head[64];
	long long v;

	run_ok(argv, &out, NULL);
	snprintf(head, sizeof(head), "Dumping attribute %s ", attr);
	p = strstr(out, head);
	if (p)
		p = strstr(p, key);
	if (!p || sscanf(p + strlen(key), " %lld", &v) != 1) {
		free(out);
		fail_msg("ntfsinfo -i 0 printed no %s \"%s\"", attr, key);
	}
	free(out);
	return v;
}

/* Records in use according to ntfs-3g: f_files - f_ffree of a fresh mount
 * (ntfs-3g counts f_files as $MFT/$BITMAP's allocation in bits plus the
 * free clusters in records, and f_ffree as those free clusters in records
 * plus the clear bits and the unused allocation of $MFT/$BITMAP: the
 * difference is the set bits). */
static int64_t ntfs3g_records_in_use(const struct statvfs *st)
{
	return (int64_t)st->f_files - (int64_t)st->f_ffree;
}

/* The records of $MFT as ntfs-3g reads them after a growth: every record
 * inside its data is a FILE record with sound fixups; ours (mine[no]) are
 * in use extension records of 5 with sequence number 2 (formatted free with
 * 1 by the growth, bumped by the allocation), the others past the old data
 * are free; records 1 .. old_records - 1 are byte for byte what they were;
 * $MFTMirr equals $MFT's first records. */
static void check_grown_mft(const uint8_t *mft0, size_t len0, const uint8_t *mft, size_t len,
			    const bool *mine, uint32_t rs)
{
	uint64_t nrec = len / rs, old = len0 / rs;
	uint8_t *mirr;
	size_t mlen;

	for (uint64_t r = 0; r < nrec; r++) {
		struct rec_view v = rec_view(mft, len, rs, r);

		if (!v.file || !v.fixups_ok)
			fail_msg("$MFT record %llu: not a sound FILE record", (unsigned long long)r);
		if (r >= 1 && r < old && memcmp(mft + r * rs, mft0 + r * rs, rs))
			fail_msg("$MFT record %llu changed", (unsigned long long)r);
		if (r < old)
			continue;
		assert_int_equal(v.number, r);
		assert_int_equal(v.bytes_allocated, rs);
		if (mine[r]) {
			assert_true(v.in_use);
			assert_int_equal(v.seq, 2);
			assert_int_equal(v.base, 5 | (uint64_t)5 << 48);
			assert_int_equal(v.first_attr, 0xffffffffu);
		} else if (v.in_use) {
			fail_msg("$MFT record %llu: in use but not allocated by us",
				 (unsigned long long)r);
		}
	}
	mirr = ntfs3g_cat("/$MFTMirr", &mlen);
	assert_true(mlen >= 4 * rs && mlen <= len);
	assert_memory_equal(mirr, mft, mlen);
	free(mirr);
}

/* On a fresh mkntfs volume every record inside $MFT's data is in use (24
 * to 26 are $Extend's files), so 200 extension records make $MFT grow
 * several times, into the MFT zone.  ntfs-3g reads the grown $MFT, counts
 * the records, is happy with it (ntfsfix), creates files of its own in the
 * free records we formatted; freeing ours gives them back. */
static void test_mft_grow(void **state)
{
	enum { K = 200 };
	struct ntfs_volume *vol;
	struct oracle_attr before, after;
	struct statvfs st0, st1, st2;
	uint8_t *mft0, *mft1, *mft2;
	size_t len0, len1, len2;
	uint64_t no[K], records0, records1, max_no = 0;
	int64_t zs, ze, mft_clusters;
	bool *mine;
	uint32_t rs;

	(void)state;
	make_image(64 * MiB, 4096);
	assert_int_equal(oracle_info(tc.img, "/$MFT", NULL, &before), 0);
	assert_true(before.found && !before.resident);
	ntfs3g_statfs(&st0);
	mft0 = ntfs3g_cat("/$MFT", &len0);

	vol = open_rw();
	rs = vol->geo.mft_record_size;
	records0 = vol->nr_mft_records;
	assert_int_equal(records0 * rs, before.data_size);
	ntfs_mft_zone(vol, &zs, &ze);
	mine = calloc(1u << 16, sizeof(*mine));
	assert_non_null(mine);
	for (int i = 0; i < K; i++) {
		uint8_t *buf = malloc(rs);

		EXPECT_OK(ntfs_mft_record_alloc(vol, 5, 5, &no[i]));
		assert_true(no[i] >= 24 && no[i] < (1u << 16));
		assert_false(mine[no[i]]);
		mine[no[i]] = true;
		if (no[i] > max_no)
			max_no = no[i];
		EXPECT_OK(ntfs_mft_record_read(vol, no[i], buf));
		assert_int_equal(get_le64(buf + 32), 5 | (uint64_t)5 << 48);
		free(buf);
	}
	records1 = vol->nr_mft_records;
	assert_true(records1 > max_no && records1 >= records0 + K);
	{
		struct ntfs_attr *md = ntfs_volume_mft_data(vol);

		check_runlist(&md->rl, (int64_t)vol->geo.nr_clusters);
		mft_clusters = rl_clusters(&md->rl);
		assert_int_equal(md->allocated_size, (uint64_t)mft_clusters * vol->geo.cluster_size);
		assert_int_equal(md->data_size, records1 * rs);
		assert_int_equal(md->initialized_size, records1 * rs);
		/* Grown in the MFT zone. */
		for (size_t r = 0; r < md->rl.count; r++)
			assert_true(md->rl.runs[r].lcn >= zs &&
				    md->rl.runs[r].lcn + md->rl.runs[r].length <= ze);
	}
	ntfs_volume_close(vol);

	assert_int_equal(oracle_info(tc.img, "/$MFT", NULL, &after), 0);
	assert_int_equal(after.data_size, records1 * rs);
	assert_int_equal(after.initialized_size, after.data_size);
	assert_int_equal(after.allocated_size, (uint64_t)mft_clusters * 4096);
	mft1 = ntfs3g_cat("/$MFT", &len1);
	assert_int_equal(len1, after.data_size);
	check_grown_mft(mft0, len0, mft1, len1, mine, rs);
	ntfsfix_clean();
	ntfs3g_statfs(&st1);
	/* The clusters $MFT took (its $BITMAP had room), and K more records. */
	assert_int_equal((int64_t)(st0.f_bfree - st1.f_bfree),
			 (int64_t)(after.allocated_size - before.allocated_size) / 4096);
	assert_int_equal(ntfs3g_records_in_use(&st1) - ntfs3g_records_in_use(&st0), K);
	assert_int_equal((int64_t)st0.f_ffree - (int64_t)st1.f_ffree,
			 K + (int64_t)(st0.f_bfree - st1.f_bfree) * (int64_t)(st1.f_bsize / rs));

	/* ntfs-3g creates files in our free records, never in ours. */
	{
		char path[400];

		do_mount(false);
		for (int i = 0; i < 30; i++) {
			snprintf(path, sizeof(path), "%s/h%03d", tc.mnt, i);
			write_file(path, "y", 1);
		}
		unmount_ok();
		ntfsfix_clean();
		vol = open_rw();
		for (int i = 0; i < 30; i++) {
			uint64_t m;

			snprintf(path, sizeof(path), "/h%03d", i);
			EXPECT_OK(ntfs_path_lookup(vol, path, 0, &m));
			assert_false(MREF(m) < (1u << 16) && mine[MREF(m)]);
		}
		for (int i = 0; i < K; i++)
			EXPECT_OK(ntfs_mft_record_free(vol, no[i]));
		ntfs_volume_close(vol);
	}
	ntfsfix_clean();
	mft2 = ntfs3g_cat("/$MFT", &len2);
	for (int i = 0; i < K; i++) {
		struct rec_view v = rec_view(mft2, len2, rs, no[i]);

		assert_true(v.file && v.fixups_ok && !v.in_use);
	}
	ntfs3g_statfs(&st2);
	assert_int_equal(ntfs3g_records_in_use(&st2) - ntfs3g_records_in_use(&st1), 30 - K);
	/* Reopened, the freed records are handed out again, lowest first. */
	vol = open_rw();
	{
		uint64_t n;

		EXPECT_OK(ntfs_mft_record_alloc(vol, 5, 5, &n));
		assert_int_equal(n, 27);
		EXPECT_OK(ntfs_mft_record_free(vol, n));
	}
	ntfs_volume_close(vol);
	ntfsfix_clean();
	free(mine);
	free(mft0);
	free(mft1);
	free(mft2);
}

/* With 512-byte clusters mkntfs gives $MFT/$BITMAP one cluster: bits for
 * 4096 records.  Growing $MFT past that gives the bitmap a cluster too. */
static void test_mft_grow_bitmap(void **state)
{
	enum { K = 4200 };
	struct ntfs_volume *vol;
	struct oracle_attr before, after;
	struct statvfs st0, st1, st2;
	uint8_t *mft0, *mft1;
	size_t len0, len1;
	uint64_t *no, records1;
	int64_t bm_alloc0, bm_alloc1, bm_size1;
	bool *mine;
	uint32_t rs;

	(void)state;
	make_image(64 * MiB, 512);
	assert_int_equal(oracle_info(tc.img, "/$MFT", NULL, &before), 0);
	bm_alloc0 = mft_attr_field("$BITMAP", "Allocated size:");
	assert_int_equal(bm_alloc0, 512);
	ntfs3g_statfs(&st0);
	mft0 = ntfs3g_cat("/$MFT", &len0);
	no = calloc(K, sizeof(*no));
	mine = calloc(1u << 16, sizeof(*mine));
	assert_true(no && mine);

	vol = open_rw();
	rs = vol->geo.mft_record_size;
	for (int i = 0; i < K; i++) {
		EXPECT_OK(ntfs_mft_record_alloc(vol, 5, 5, &no[i]));
		assert_true(no[i] >= 24 && no[i] < (1u << 16) && !mine[no[i]]);
		mine[no[i]] = true;
	}
	records1 = vol->nr_mft_records;
	assert_true(records1 > 4096);
	check_runlist(&ntfs_volume_mft_data(vol)->rl, (int64_t)vol->geo.nr_clusters);
	{
		uint8_t *buf = malloc(rs);

		for (int i = 0; i < K; i += 97)
			EXPECT_OK(ntfs_mft_record_read(vol, no[i], buf));
		EXPECT_OK(ntfs_mft_record_read(vol, records1 - 1, buf));
		free(buf);
	}
	ntfs_volume_close(vol);

	assert_int_equal(oracle_info(tc.img, "/$MFT", NULL, &after), 0);
	assert_int_equal(after.data_size, records1 * rs);
	assert_int_equal(after.initialized_size, after.data_size);
	bm_alloc1 = mft_attr_field("$BITMAP", "Allocated size:");
	bm_size1 = mft_attr_field("$BITMAP", "Data size:");
	assert_int_equal(bm_alloc1, 1024);
	assert_int_equal(bm_size1, (int64_t)(records1 + 63) / 64 * 8);
	assert_int_equal(mft_attr_field("$BITMAP", "Initialized size:"), bm_size1);
	mft1 = ntfs3g_cat("/$MFT", &len1);
	check_grown_mft(mft0, len0, mft1, len1, mine, rs);
	ntfsfix_clean();
	ntfs3g_statfs(&st1);
	/* $MFT's clusters and the bitmap's one; f_files counts the bitmap's
	 * allocation in bits and the free clusters in records (two to one). */
	assert_int_equal((int64_t)(st0.f_bfree - st1.f_bfree),
			 (int64_t)(after.allocated_size - before.allocated_size) / 512 + 1);
	assert_int_equal(st0.f_files, 512 * 8 + st0.f_bfree / 2);
	assert_int_equal(st1.f_files, 1024 * 8 + st1.f_bfree / 2);
	assert_int_equal(ntfs3g_records_in_use(&st1) - ntfs3g_records_in_use(&st0), K);

	/* ntfs-3g writes on it; ours all go back. */
	{
		char path[400];

		do_mount(false);
		for (int i = 0; i < 10; i++) {
			snprintf(path, sizeof(path), "%s/b%03d", tc.mnt, i);
			write_file(path, "z", 1);
		}
		unmount_ok();
	}
	ntfsfix_clean();
	vol = open_rw();
	for (int i = 0; i < K; i++)
		EXPECT_OK(ntfs_mft_record_free(vol, no[i]));
	ntfs_volume_close(vol);
	ntfsfix_clean();
	ntfs3g_statfs(&st2);
	assert_int_equal(ntfs3g_records_in_use(&st2) - ntfs3g_records_in_use(&st1), 10 - K);
	free(no);
	free(mine);
	free(mft0);
	free(mft1);
}

/* When free space is so fragmented that $MFT's runlist outgrows record 0,
 * growing fails with ENOSPC and says why, without leaking a cluster; what
 * was grown before stays, consistent. */
static void test_mft_grow_record0_full(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_runlist all = { 0 };
	struct statvfs st0, st1;
	uint8_t *mft0, *mft1;
	size_t len0, len1;
	uint64_t no, records1;
	int64_t free_left;
	bool *mine;
	int err, got = 0;
	uint32_t rs;

	(void)state;
	make_image(64 * MiB, 4096);
	mft0 = ntfs3g_cat("/$MFT", &len0);
	mine = calloc(1u << 16, sizeof(*mine));
	assert_non_null(mine);
	vol = open_rw();
	rs = vol->geo.mft_record_size;
	/* Every other cluster free: each cluster $MFT gets is a run of its own. */
	EXPECT_OK(ntfs_cluster_alloc(vol, ntfs_volume_free_clusters(vol), -1, &all));
	for (size_t r = 0; r < all.count; r++)
		for (int64_t c = 0; c < all.runs[r].length; c += 2)
			EXPECT_OK(ntfs_cluster_free(vol, all.runs[r].lcn + c, 1));
	ntfs_volume_close(vol);
	ntfs3g_statfs(&st0);

	vol = open_rw();
	for (;;) {
		int64_t free0 = ntfs_volume_free_clusters(vol);
		size_t runs0 = ntfs_volume_mft_data(vol)->rl.count;

		err = ntfs_mft_record_alloc(vol, 5, 5, &no);
		if (err) {
			/* Nothing taken by the failed growth. */
			assert_int_equal(ntfs_volume_free_clusters(vol), free0);
			assert_int_equal(ntfs_volume_mft_data(vol)->rl.count, runs0);
			break;
		}
		assert_true(no < (1u << 16) && !mine[no]);
		mine[no] = true;
		got++;
	}
	assert_int_equal(err, -ENOSPC);
	assert_non_null(strstr(ntfs_last_error(), "record 0"));
	assert_non_null(strstr(ntfs_last_error(), "extension record"));
	assert_true(got > 200);
	records1 = vol->nr_mft_records;
	assert_true(ntfs_volume_mft_data(vol)->rl.count > 100);
	free_left = ntfs_volume_free_clusters(vol);
	assert_true(free_left > 1000);
	ntfs_volume_close(vol);

	assert_int_equal(ntfs3g_free_clusters(), free_left);
	mft1 = ntfs3g_cat("/$MFT", &len1);
	assert_int_equal(len1, records1 * rs);
	check_grown_mft(mft0, len0, mft1, len1, mine, rs);
	ntfsfix_clean();
	ntfs3g_statfs(&st1);
	assert_int_equal(ntfs3g_records_in_use(&st1) - ntfs3g_records_in_use(&st0), got);
	ntfs_runlist_free(&all);
	free(mine);
	free(mft0);
	free(mft1);
}

/* A growth that fails on a write changes nothing: no record, no cluster,
 * the same $MFT/$DATA snapshot; the next one works. */
static void test_mft_grow_write_error(void **state)
{
	struct ntfs_volume *vol;
	struct ntfs_attr *md0;
	uint64_t records0, no;
	int64_t free0;
	int rw_fd, ro_fd, dev_fd;

	(void)state;
	make_image(64 * MiB, 4096);
	vol = open_rw();
	records0 = vol->nr_mft_records;
	free0 = ntfs_volume_free_clusters(vol);
	md0 = ntfs_volume_mft_data(vol);
	dev_fd = vol->dev->fd;
	rw_fd = dup(dev_fd);
	ro_fd = open(tc.img, O_RDONLY | O_CLOEXEC);
	assert_true(rw_fd >= 0 && ro_fd >= 0);
	assert_true(dup2(ro_fd, dev_fd) == dev_fd);
	assert_int_equal(ntfs_mft_record_alloc(vol, 5, 5, &no), -EBADF);
	assert_int_equal(vol->nr_mft_records, records0);
	assert_int_equal(ntfs_volume_free_clusters(vol), free0);
	assert_ptr_equal(ntfs_volume_mft_data(vol), md0);
	assert_true(dup2(rw_fd, dev_fd) == dev_fd);
	close(rw_fd);
	close(ro_fd);
	EXPECT_OK(ntfs_mft_record_alloc(vol, 5, 5, &no));
	assert_int_equal(no, records0);
	assert_true(vol->nr_mft_records > records0);
	free0 = ntfs_volume_free_clusters(vol);
	ntfs_volume_close(vol);
	assert_int_equal(ntfs3g_free_clusters(), free0);
	ntfsfix_clean();
}

/* Threads allocating records, growing $MFT several times, while other
 * threads read records through ntfs_mft_record_read(): the system records
 * and every record an allocator has finished with, located through
 * whatever $MFT/$DATA snapshot is current.  Every read succeeds and finds
 * what it should; the records are distinct and ntfs-3g counts exactly the
 * ones kept. */
#define GROW_ALLOCATORS 4
#define GROW_READERS 3
#define GROW_PER_THREAD 96

struct grow_alloc {
	struct ntfs_volume *vol;
	uint64_t got[GROW_PER_THREAD];
	_Atomic int published;          /* got[0 .. published) may be read */
	int freed, errors;
	char first_error[256];
};

struct grow_reader {
	struct ntfs_volume *vol;
	struct grow_alloc *allocs;
	_Atomic bool *stop;
	uint64_t seed;
	long reads, errors;
	char first_error[256];
};

static void *grow_alloc_main(void *arg)
{
	struct grow_alloc *w = arg;

	for (int i = 0; i < GROW_PER_THREAD; i++) {
		uint64_t no;
		int err = ntfs_mft_record_alloc(w->vol, 5, 5, &no);

		/* Every fourth one is freed at once (and never published). */
		if (!err && i % 4 == 3) {
			err = ntfs_mft_record_free(w->vol, no);
			w->freed++;
		} else if (!err) {
			int k = atomic_load_explicit(&w->published, memory_order_relaxed);

			w->got[k] = no;
			atomic_store_explicit(&w->published, k + 1, memory_order_release);
		}
		if (err && !w->errors++)
			snprintf(w->first_error, sizeof(w->first_error), "alloc/free: %d %s", err,
				 ntfs_last_error());
	}
	return NULL;
}

static void *grow_reader_main(void *arg)
{
	struct grow_reader *r = arg;
	uint32_t rs = r->vol->geo.mft_record_size;
	uint8_t *buf = malloc(rs);

	while (buf && !atomic_load(r->stop)) {
		uint64_t x = rng_next(&r->seed), no, want_base = 0;
		struct grow_alloc *a = &r->allocs[x % GROW_ALLOCATORS];
		int n = atomic_load_explicit(&a->published, memory_order_acquire), err;

		if (n && (x >> 8) % 4) {
			no = a->got[(x >> 16) % (uint64_t)n];
			want_base = 5 | (uint64_t)5 << 48;
		} else {
			no = 1 + (x >> 16) % 15;
		}
		/* The publishing order: a snapshot loaded after the count maps
		 * at least that many records. */
		{
			uint64_t nr = r->vol->nr_mft_records;
			struct ntfs_attr *md = ntfs_volume_mft_data(r->vol);

			if (md->initialized_size < nr * rs ||
			    (uint64_t)ntfs_rl_end_vcn(&md->rl) << r->vol->geo.cluster_size_bits <
				    nr * rs) {
				if (!r->errors++)
					snprintf(r->first_error, sizeof(r->first_error),
						 "%llu records, but the $MFT/$DATA snapshot maps "
						 "%llu bytes", (unsigned long long)nr,
						 (unsigned long long)md->initialized_size);
			}
		}
		err = ntfs_mft_record_read(r->vol, no, buf);
		if (!err && want_base && get_le64(buf + 32) != want_base)
			err = -EUCLEAN;
		if (!err && !(get_le16(buf + 22) & MFT_RECORD_IN_USE))
			err = -EUCLEAN;
		r->reads++;
		if (err && !r->errors++)
			snprintf(r->first_error, sizeof(r->first_error), "record %llu: %d %s",
				 (unsigned long long)no, err, ntfs_last_error());
	}
	free(buf);
	return NULL;
}

static void test_mft_grow_threads(void **state)
{
	static struct grow_alloc a[GROW_ALLOCATORS];
	static struct grow_reader rd[GROW_READERS];
	pthread_t ta[GROW_ALLOCATORS], tr[GROW_READERS];
	_Atomic bool stop = false;
	struct ntfs_volume *vol;
	struct statvfs st0, st1;
	uint64_t records0;
	bool *seen;
	int kept = 0;

	(void)state;
	make_image(64 * MiB, 4096);
	ntfs3g_statfs(&st0);
	seen = calloc(1u << 16, sizeof(*seen));
	assert_non_null(seen);
	vol = open_rw();
	records0 = vol->nr_mft_records;
	memset(a, 0, sizeof(a));
	memset(rd, 0, sizeof(rd));
	for (int i = 0; i < GROW_READERS; i++) {
		rd[i] = (struct grow_reader){ .vol = vol, .allocs = a, .stop = &stop,
					      .seed = rng_next(&rng) | 1 };
		assert_int_equal(pthread_create(&tr[i], NULL, grow_reader_main, &rd[i]), 0);
	}
	for (int i = 0; i < GROW_ALLOCATORS; i++) {
		a[i].vol = vol;
		assert_int_equal(pthread_create(&ta[i], NULL, grow_alloc_main, &a[i]), 0);
	}
	for (int i = 0; i < GROW_ALLOCATORS; i++)
		pthread_join(ta[i], NULL);
	sleep_ms(50);
	atomic_store(&stop, true);
	for (int i = 0; i < GROW_READERS; i++)
		pthread_join(tr[i], NULL);
	for (int i = 0; i < GROW_ALLOCATORS; i++) {
		if (a[i].errors)
			fail_msg("allocator %d: %d errors, first: %s", i, a[i].errors,
				 a[i].first_error);
		assert_int_equal(a[i].published + a[i].freed, GROW_PER_THREAD);
		for (int k = 0; k < a[i].published; k++) {
			assert_true(a[i].got[k] >= 24 && a[i].got[k] < (1u << 16));
			assert_false(seen[a[i].got[k]]);
			seen[a[i].got[k]] = true;
		}
		kept += a[i].published;
	}
	for (int i = 0; i < GROW_READERS; i++) {
		if (rd[i].errors)
			fail_msg("reader %d: %ld of %ld reads failed, first: %s", i, rd[i].errors,
				 rd[i].reads, rd[i].first_error);
		assert_true(rd[i].reads > 0);
	}
	/* $MFT grew several times while the readers ran. */
	assert_true(vol->nr_mft_records >= records0 + (uint64_t)kept);
	assert_true(vol->nr_mft_records >= records0 + 4 * 64);
	ntfs_volume_close(vol);
	ntfsfix_clean();
	ntfs3g_statfs(&st1);
	assert_int_equal(ntfs3g_records_in_use(&st1) - ntfs3g_records_in_use(&st0), kept);
	free(seen);
}

struct mft_worker {
	struct ntfs_volume *vol;
	uint64_t got[16];
	int n, errors;
	char first_error[256];
};

static void *mft_worker_main(void *arg)
{
	struct mft_worker *w = arg;

	for (int i = 0; i < 16; i++) {
		uint64_t no;
		int err = ntfs_mft_record_alloc(w->vol, 5, 5, &no);

		if (!err && i % 3 == 2)
			err = ntfs_mft_record_free(w->vol, no);
		else if (!err)
			w->got[w->n++] = no;
		if (err && !w->errors++)
			snprintf(w->first_error, sizeof(w->first_error), "%d %s", err,
				 ntfs_last_error());
	}
	return NULL;
}

/* Threads allocating (and freeing some) MFT records at once get distinct
 * records; ntfs-3g's free-inode count moves by exactly what they kept. */
static void test_mft_threads(void **state)
{
	static struct mft_worker w[THREADS];
	pthread_t th[THREADS];
	struct ntfs_volume *vol;
	struct statvfs st0, st1;
	int kept = 0;

	(void)state;
	make_mft_volume(80, 2);
	ntfs3g_statfs(&st0);
	vol = open_rw();
	memset(w, 0, sizeof(w));
	for (int i = 0; i < THREADS; i++) {
		w[i].vol = vol;
		assert_int_equal(pthread_create(&th[i], NULL, mft_worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < THREADS; i++) {
		if (w[i].errors)
			fail_msg("thread %d: %d errors, first: %s", i, w[i].errors, w[i].first_error);
		for (int a = 0; a < w[i].n; a++) {
			for (int j = 0; j <= i; j++)
				for (int b = 0; b < (j == i ? a : w[j].n); b++)
					assert_true(w[i].got[a] != w[j].got[b]);
		}
		kept += w[i].n;
	}
	ntfs_volume_close(vol);
	ntfsfix_clean();
	ntfs3g_statfs(&st1);
	assert_int_equal(st1.f_bfree, st0.f_bfree);
	assert_int_equal((int64_t)st0.f_ffree - (int64_t)st1.f_ffree, kept);
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_timeout };
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)
		T(test_open_matches_ntfs3g),
		T(test_alloc_free_counts),
		T(test_contiguous_near_hint),
		T(test_zone_and_enospc),
		T(test_double_free),
		T(test_write_error_rolls_back),
		T(test_alloc_for_mft),
		T(test_threads),
		T(test_mft_records),
		T(test_mft_grow),
		T(test_mft_grow_bitmap),
		T(test_mft_grow_record0_full),
		T(test_mft_grow_write_error),
		T(test_mft_grow_threads),
		T(test_mft_threads),
#undef T
	};

	sigaction(SIGALRM, &sa, NULL);
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
