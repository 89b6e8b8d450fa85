/*
 * test_alloc_model — writes that allocate and truncation, end to end: a
 * model-based multi-process test in the style of fsx against a real ntfsd,
 * checked with ntfs-3g's tools once the daemon has written everything back.
 *
 * Every test makes its own volume with mkntfs in its own temp dir
 * (support/testvol.h), fills it through an ntfs-3g mount, and removes it in
 * the teardown (with every mount, daemon and client process it started)
 * whatever happened.
 *
 *  - alloc_model: three client processes, each owning ten files of every
 *    kind (a sparse file, a 1 MiB file, a file whose initialized size is
 *    below its data size, three resident files of different room, an empty
 *    one, a compressed file and a resident compressed file in a compressed
 *    directory, and a sparse file written in small pieces all over so that
 *    its runlist outgrows its MFT record), and all sharing /shared.bin,
 *    each its own unaligned slice of it.  Each runs random ntfsc_pwrite
 *    (inside the file, around and far past its end, into holes, unaligned,
 *    1 byte to 1 MiB, some all zero), stores through PROT_WRITE mappings +
 *    ntfsc_set_dirty, ntfsc_ftruncate down and up (0, unaligned, sparse
 *    growth), ntfsc_pread and whole-file checks, fstat (sizes and flags)
 *    and fsync against an in-memory model of its files, and writes and
 *    truncations past what any cache segment can hold (16 TiB: EFBIG; below
 *    that an open file's segments grow in place).
 *    Resident files grow within their record and move out of it: the model
 *    learns where each record's limit lies and holds the daemon to it.
 *    What the daemon did not support must fail with the documented errno
 *    and leave the file as it was: see "Not supported yet" below, one
 *    switch per feature (all landed now).  The daemon is stopped (SIGTERM:
 *    write everything back, exit 0) and restarted half way, and stopped at
 *    the end: each time ntfscat of every file must equal its model,
 *    ntfsinfo's data size the model's (initialized <= data, covering every
 *    non-zero byte; allocated >= data; the resident, compressed and sparse
 *    flags as the model expects) and `ntfsfix -n` must pass; at the end a
 *    fresh read-only ntfs-3g mount must read every file as the model says.
 *  - alloc_model_small_cache: the same with a 2 MiB cache and write-back
 *    running all the time (reclaim rereads what was written back).
 *  - truncate_up_races_writeback: appends past initialized_size, each
 *    followed by a small truncate up, while write-back raises
 *    initialized_size: nothing written may be lost (pread, ntfscat).
 *  - hole_fill_races_writeback: a write into a hole while write-back of a
 *    page far past initialized_size zero-fills up to it and raises
 *    initialized_size past the hole: the page around the write must read
 *    as zeroes, not as the stale bytes of the fresh clusters.
 *  - volume_full: one writer appends to a file until ENOSPC (1 MiB, then
 *    64 KiB, then 4 KiB writes); writes into holes and past the end, and
 *    PROT_WRITE mappings over holes, are then ENOSPC too while a sparse
 *    truncate up still works; everything accepted before reads back
 *    (pread, and after the stop ntfscat and a mount); a truncate down frees
 *    clusters and writing goes on.
 *  - zero_pwrite_grows_compressed: a write of zeroes at the end of a
 *    compressed file (non-resident and resident) grows it like a write of
 *    data (it once failed: the client turned it into a truncate).
 *
 * Seeds: NTFSD_ALLOC_SEED=S (default DEFAULT_SEED) replays a run, child k
 * using a seed derived from S and k; NTFSD_ALLOC_OPS=N sets the operations
 * per child and phase (default OPS_PER_PHASE); NTFSD_ALLOC_TRACE=1 prints
 * every operation; NTFSD_ALLOC_ONLY=PATTERN runs only the tests whose
 * names match.  A failing child prints its last HISTORY operations.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "kids.h"
#include "ntfsc.h"
#include "oracle.h"
#include "testvol.h"

/* ======================================================================
 * Not supported yet.  Each feature the daemon lacks is one switch: the
 * errno it refuses with today.  Set a switch to 0 when the feature lands
 * and the model expects the operation to work (and checks the result).
 * ====================================================================== */

/* pwrite / mmap PROT_WRITE into a compressed file (was EOPNOTSUPP). */
#define UNSUPPORTED_COMPRESSED_WRITE    0
/* ftruncate of a compressed file (was EOPNOTSUPP). */
#define UNSUPPORTED_COMPRESSED_TRUNCATE 0
/* ftruncate growing a resident compressed file (was EOPNOTSUPP, even
 * within its record). */
#define UNSUPPORTED_COMPRESSED_RESIDENT_TRUNCATE_UP 0
/* A write growing a resident compressed file past what its MFT record
 * holds (was EOPNOTSUPP; within the record it grew).  Where the limit lies
 * the model learns: every size that fitted must fit again, every size
 * that did not must not. */
#define UNSUPPORTED_COMPRESSED_MOVE_OUT 0
/* A resident file growing past its record, by pwrite or ftruncate: moved
 * out to clusters (was EOPNOTSUPP / EFBIG). */
#define UNSUPPORTED_RESIDENT_MOVE_OUT   0
/* A runlist that no longer fits in the base MFT record (was EFBIG before
 * attribute lists): with the switch set, any call that allocates or
 * truncates up on a non-resident file may fail with this errno, with
 * RUNLIST_FULL_MESSAGE in the daemon's message, and must then leave the
 * file as it was. */
#define UNSUPPORTED_RUNLIST_FULL        0
#define RUNLIST_FULL_MESSAGE            "runlist no longer fits"

/*
 * Was a bug: ntfsc_pwrite of a buffer of zeroes that grows a file whose
 * bytes from the write's offset on read as zeroes becomes an
 * ntfsc_ftruncate, and failed where ftruncate failed though the same write
 * of data worked (compressed files, resident compressed files).  1: the
 * model expects what ftruncate would do; 0: a write is a write (the test
 * zero_pwrite_grows_compressed checks it directly).
 */
#define KNOWN_BUG_ZERO_PWRITE_TRUNCATES 0

/* ---------------------------------------------------------------------- */

#define DEFAULT_SEED 0x5eed2024a110cULL
#define OPS_PER_PHASE 1000
#define NCHILD 3
#define HISTORY 64
#define HIST_LEN 200
#define CHILD_TIMEOUT_S 300
#define MAX_IO (1u << 20)
#define CLUSTER 4096u
#define MODEL_VOL_MIB 512       /* > what the files' caps (+1/8 room) can take */
#define FULL_VOL_MIB 40
#define SHARED_SLICE 70001u
/* past what any cache segment can hold (16 TiB), open or not: EFBIG */
#define BEYOND_SEGMENT ((uint64_t)1 << 44)

static const char *ntfsd_bin;

/* Per test: the scratch volume (temp dir, image tv.img, mount), the
 * daemon, forked kids. */
static struct testvol tv;
static const char *image = tv.img;
static struct test_daemon dmn;
static const char *const *daemon_args;  /* extra ntfsd options of this test */
static unsigned log_seq;
static char last_log[160];          /* the last stopped daemon's kept log */

static struct kids kids;                /* the model's clients */

/* ---- small helpers ---- */

static void write_all(int fd, const void *data, size_t len, off_t off, const char *what)
{
	const char *p = data;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("writing %s: %s", what, n < 0 ? strerror(errno) : "no progress");
		p += n;
		off += n;
		len -= (size_t)n;
	}
}

static uint64_t mix_seed(uint64_t seed, uint64_t k)
{
	uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z ? z : 1;
}

static void fill_random(uint64_t *s, void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t x = xorshift(s);

		memcpy(b + i, &x, 8);
	}
	for (; i < len; i++)
		b[i] = (uint8_t)(xorshift(s) >> 56);
}

/* Compressible text. */
static void fill_text(uint64_t *s, void *buf, size_t len)
{
	static const char *const words[] = { "cluster ", "record ", "runlist ", "page ",
					     "the ", "write ", "back ", "sparse ", "hole ",
					     "resident ", "compressed ", "\n" };
	char *b = buf;
	size_t n = 0;

	while (n < len) {
		const char *w = words[xorshift(s) % (sizeof(words) / sizeof(words[0]))];
		size_t l = strlen(w);

		if (l > len - n)
			l = len - n;
		memcpy(b + n, w, l);
		n += l;
	}
}

static char *tmp_path(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", tv.dir, name) > 0);
	return p;
}

/* The last lines of a log file, to stderr. */
static void dump_tail(const char *path, int lines)
{
	char *data;
	size_t len, i;
	int seen = 0;

	if (!path[0] || !(data = (char *)testvol_read_whole(path, &len)))
		return;
	for (i = len; i > 0; i--)
		if (data[i - 1] == '\n' && ++seen > lines)
			break;
	fprintf(stderr, "---- %s (last %d lines) ----\n%s---- end ----\n", path, lines, data + i);
	free(data);
}

/* ---- the volume: mkntfs, ntfs-3g mounts (support/testvol.h) ---- */

static void run_tool(char *const argv[])
{
	int st = testvol_run(&tv, NULL, argv);

	if (st) {
		testvol_print_log_tail(&tv);
		fail_msg("%s failed (exit status %d)", argv[0], st);
	}
}

static void make_volume(unsigned mib)
{
	if (testvol_mkntfs(&tv, (uint64_t)mib << 20, 4096)) {
		testvol_print_log_tail(&tv);
		fail_msg("mkntfs of a %u MiB volume failed", mib);
	}
}

/* ntfs-3g in the foreground (testvol: no_detach, our child); read-write
 * with compression so that compressed directories compress. */
static void mount_volume(bool read_only)
{
	if (testvol_mount(&tv, tv.img, read_only ? "ro,no_detach" : "no_detach,compression")) {
		testvol_print_log_tail(&tv);
		fail_msg("ntfs-3g could not mount %s on %s", tv.img, tv.mnt);
	}
}

static void unmount_ok(void)
{
	if (testvol_unmount(&tv)) {
		testvol_print_log_tail(&tv);
		fail_msg("unmounting %s failed", tv.mnt);
	}
}

static char *mnt_path(const char *path)
{
	char *p;

	assert_true(asprintf(&p, "%s%s", tv.mnt, path) > 0);
	return p;
}

/* A file through the rw mount: bytes at offsets, then a size. */
static void mount_put(const char *path, const void *data, size_t len, off_t off)
{
	char *p = mnt_path(path);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		fail_msg("create %s: %s", p, strerror(errno));
	if (len)
		write_all(fd, data, len, off, p);
	if (close(fd))
		fail_msg("close %s: %s", p, strerror(errno));
	free(p);
}

static void mount_truncate(const char *path, off_t size)
{
	char *p = mnt_path(path);

	if (truncate(p, size))
		fail_msg("truncate %s: %s", p, strerror(errno));
	free(p);
}

static void mount_mkdir(const char *path, bool compressed)
{
	char *p = mnt_path(path);

	if (mkdir(p, 0755))
		fail_msg("mkdir %s: %s", p, strerror(errno));
	if (compressed) {
		/* FILE_ATTRIBUTE_COMPRESSED | FILE_ATTRIBUTE_DIRECTORY, big endian */
		static const uint8_t attrib[4] = { 0x00, 0x00, 0x08, 0x10 };

		if (setxattr(p, "system.ntfs_attrib_be", attrib, sizeof(attrib), 0))
			fail_msg("setxattr system.ntfs_attrib_be %s: %s", p, strerror(errno));
	}
	free(p);
}

/* ---- setup and teardown ---- */

static void free_files(void);

static int setup_dir(void **state)
{
	static const char *const need[] = { "mkntfs", "ntfsfallocate", "ntfscat", "ntfsinfo",
					     "ntfsfix", NULL };

	(void)state;
	memset(&dmn, 0, sizeof(dmn));
	kids_init(&kids, 0);
	daemon_args = NULL;
	log_seq = 0;
	last_log[0] = '\0';
	return testvol_create(&tv, "allocmodel", need);
}

/* Whatever the test left: children, the daemon, a mount, the temp dir. */
static int teardown_dir(void **state)
{
	(void)state;
	kids_kill(&kids);
	kids_close_fds(&kids);
	if (dmn.pid || dmn.dir[0])
		daemon_stop(&dmn);      /* also the keeper and the socket dir */
	free_files();
	testvol_destroy(&tv);   /* unmounts; keeps the dir if a mount is stuck */
	return 0;
}

/* ---- the daemon ---- */

static void start_daemon(void)
{
	int err = daemon_start(&dmn, ntfsd_bin, image, daemon_args);

	if (err)
		fail_msg("cannot start ntfsd on %s: %s", image, strerror(-err));
}

/* SIGTERM; the daemon must write everything back and exit 0.  Its log is
 * kept in the temp dir (last_log) so that later failures can show it. */
static void stop_daemon_clean(void)
{
	char name[32], *keep;

	snprintf(name, sizeof(name), "ntfsd-%u.log", log_seq++);
	keep = tmp_path(name);
	if (link(dmn.log, keep))
		fprintf(stderr, "cannot keep the daemon's log: %s\n", strerror(errno));
	snprintf(last_log, sizeof(last_log), "%s", keep);
	free(keep);
	if (!daemon_stop(&dmn)) {
		dump_tail(last_log, 80);
		fail_msg("ntfsd did not exit cleanly after SIGTERM (wait status 0x%x)",
			 dmn.exit_status);
	}
}

static ntfsc *connect_daemon(void)
{
	ntfsc *c = ntfsc_connect(dmn.socket);

	if (!c)
		fail_msg("ntfsc_connect %s: %s", dmn.socket, strerror(errno));
	return c;
}

/* ---- ntfs-3g's view ---- */

static void cat_image(const char *path, char **data, size_t *len)
{
	int err = oracle_cat(image, path, NULL, data, len);

	if (err)
		fail_msg("ntfscat %s %s: %s (%s)", image, path, strerror(-err),
			 oracle_last_stderr());
}

static void info_image(const char *path, struct oracle_attr *a)
{
	int err = oracle_info(image, path, NULL, a);

	if (err || !a->found)
		fail_msg("ntfsinfo %s: %s", path, err ? strerror(-err) : "no $DATA");
}

static void expect_fsck_clean(const char *when)
{
	const char *argv[] = { "ntfsfix", "-n", image, NULL };
	char *out = NULL;
	size_t len;
	int status, err = oracle_run(argv, &out, &len, &status);

	if (err)
		fail_msg("ntfsfix -n: %s", strerror(-err));
	if (status || !strstr(out, "processed successfully") || strstr(out, "FAILED") ||
	    strstr(out, "nconsisten")) {
		dump_tail(last_log, 60);
		fail_msg("%s: ntfsfix -n %s (exit %d) reports problems:\n%s%s", when, image, status,
			 out, oracle_last_stderr());
	}
	free(out);
}

/* Where got and want differ: first and last byte, how many, and 16 bytes
 * of each from the first; "" when they are equal. */
static const char *describe_diff(const uint8_t *got, const uint8_t *want, size_t n, uint64_t base)
{
	static char out[400];
	size_t first = n, last = 0, count = 0;
	int len;

	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i]) {
			if (first == n)
				first = i;
			last = i;
			count++;
		}
	if (!count)
		return "";
	len = snprintf(out, sizeof(out), "%zu bytes differ in [%" PRIu64 ", %" PRIu64 "] (pages %"
		       PRIu64 "..%" PRIu64 "); from %" PRIu64 " got", count, base + first,
		       base + last, (base + first) / 4096, (base + last) / 4096, base + first);
	for (size_t i = first; i < n && i < first + 16 && len < (int)sizeof(out) - 4; i++)
		len += snprintf(out + len, sizeof(out) - (size_t)len, " %02x", got[i]);
	len += snprintf(out + len, sizeof(out) - (size_t)len, ", model");
	for (size_t i = first; i < n && i < first + 16 && len < (int)sizeof(out) - 4; i++)
		len += snprintf(out + len, sizeof(out) - (size_t)len, " %02x", want[i]);
	return out;
}

/* got (what a tool read) must be want exactly. */
static void expect_same(const char *when, const char *who, const char *path, const uint8_t *got,
			size_t got_len, const uint8_t *want, uint64_t want_len)
{
	if (got_len != want_len) {
		dump_tail(last_log, 60);
		fail_msg("%s: %s %s gives %zu bytes, the model has %" PRIu64, when, who, path,
			 got_len, want_len);
	}
	if (memcmp(got, want, got_len)) {
		dump_tail(last_log, 60);
		fail_msg("%s: %s %s: %s", when, who, path, describe_diff(got, want, got_len, 0));
	}
}

/* ======================================================================
 * The model
 * ====================================================================== */

enum tri { NO, YES, ANY };

static const char *tri_name(int t)
{
	return t == YES ? "yes" : t == NO ? "no" : "either";
}

/* One file and its model; in shared memory, so the parent reads what the
 * children did. */
struct mfile {
	char path[128];
	int owner;                      /* child index; -1: shared by slices */
	bool compressed;                /* the attribute is (stays) compressed */
	int resident, sparse;           /* enum tri: what ntfsinfo must say */
	uint64_t size, cap;             /* the model's size; it never grows past cap */
	uint64_t res_fit_max;           /* resident: the largest size known to fit */
	uint64_t res_nofit_min;         /* ... the smallest known not to */
	uint64_t hole_lo, hole_hi;      /* a range believed to be a hole */
	uint8_t *model;                 /* cap + 1 bytes, zero past size */
	size_t map_len;
};

struct ftemplate {
	const char *name;
	unsigned weight;
	uint64_t cap;
};

#define NOWN 10
#define FRAG_IDX 9      /* written in small pieces all over: a long runlist */
static const struct ftemplate own_files[NOWN] = {
	{ "sparse.bin", 4, 16u << 20 }, { "one.bin", 3, 6u << 20 },
	{ "pre.bin", 2, 6u << 20 },     { "small.txt", 2, 6u << 20 },
	{ "empty", 1, 6u << 20 },       { "z/comp.txt", 2, 6u << 20 },
	{ "z/tiny.txt", 1, 6u << 20 },  { "r600.txt", 1, 6u << 20 },
	{ "a resident file with a name long enough to take room in its record.txt", 1,
	  6u << 20 },
	{ "frag.bin", 3, 16u << 20 },
};
#define SHARED_WEIGHT 2
#define NFILES (NCHILD * NOWN + 1)
#define SHARED_IDX (NFILES - 1)

static struct mfile *files;             /* NFILES, MAP_SHARED */

static void free_files(void)
{
	if (!files)
		return;
	for (int i = 0; i < NFILES; i++)
		if (files[i].model)
			munmap(files[i].model, files[i].map_len);
	munmap(files, sizeof(*files) * NFILES);
	files = NULL;
}

static uint64_t seed_base;
static unsigned ops_per_phase;
static bool trace;

/* Make the model volume: a file of every kind per child, and the shared
 * one, through an ntfs-3g mount and ntfsfallocate. */
static void make_model_volume(void)
{
	uint64_t s = 0x1234567;
	uint8_t *buf = malloc(1u << 20);
	char path[128];

	assert_non_null(buf);
	make_volume(MODEL_VOL_MIB);
	mount_volume(false);
	for (int k = 0; k < NCHILD; k++) {
		snprintf(path, sizeof(path), "/c%d", k);
		mount_mkdir(path, false);
		snprintf(path, sizeof(path), "/c%d/z", k);
		mount_mkdir(path, true);
		/* sparse: 10000 B at 0, 20000 B at 6 MiB, hole to 12 MiB */
		snprintf(path, sizeof(path), "/c%d/sparse.bin", k);
		fill_random(&s, buf, 20000);
		mount_put(path, buf, 10000, 0);
		mount_put(path, buf, 20000, 6 << 20);
		mount_truncate(path, 12 << 20);
		snprintf(path, sizeof(path), "/c%d/one.bin", k);
		fill_random(&s, buf, 1u << 20);
		mount_put(path, buf, 1u << 20, 0);
		snprintf(path, sizeof(path), "/c%d/pre.bin", k);
		fill_random(&s, buf, 10000);
		mount_put(path, buf, 10000, 0);
		snprintf(path, sizeof(path), "/c%d/small.txt", k);
		fill_text(&s, buf, 200);
		mount_put(path, buf, 200, 0);
		snprintf(path, sizeof(path), "/c%d/empty", k);
		mount_put(path, buf, 0, 0);
		snprintf(path, sizeof(path), "/c%d/z/comp.txt", k);
		fill_text(&s, buf, 200000);
		mount_put(path, buf, 200000, 0);
		snprintf(path, sizeof(path), "/c%d/z/tiny.txt", k);
		fill_text(&s, buf, 40);
		mount_put(path, buf, 40, 0);
		snprintf(path, sizeof(path), "/c%d/r600.txt", k);
		fill_random(&s, buf, 600);
		mount_put(path, buf, 600, 0);
		snprintf(path, sizeof(path), "/c%d/%s", k, own_files[8].name);
		fill_text(&s, buf, 100);
		mount_put(path, buf, 100, 0);
		snprintf(path, sizeof(path), "/c%d/frag.bin", k);
		fill_random(&s, buf, 4096);
		mount_put(path, buf, 4096, 0);
		mount_truncate(path, 16 << 20);
	}
	fill_random(&s, buf, NCHILD * SHARED_SLICE);
	mount_put("/shared.bin", buf, NCHILD * SHARED_SLICE, 0);
	unmount_ok();
	/* pre.bin: data size 1 MiB, initialized 10000 B, allocated 64 KiB more */
	for (int k = 0; k < NCHILD; k++) {
		char *a1[] = { "ntfsfallocate", "-l", "1048576", tv.img, path, NULL };
		char *a2[] = { "ntfsfallocate", "-n", "-o", "1048576", "-l", "65536", tv.img, path,
			       NULL };

		snprintf(path, sizeof(path), "/c%d/pre.bin", k);
		run_tool(a1);
		run_tool(a2);
	}
	free(buf);
}

/* Models from ntfscat, flags from ntfsinfo; the kinds must be as made. */
static void load_models(void)
{
	files = mmap(NULL, sizeof(*files) * NFILES, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(files != MAP_FAILED);
	memset(files, 0, sizeof(*files) * NFILES);
	for (int i = 0; i < NFILES; i++) {
		struct mfile *mf = &files[i];
		struct oracle_attr a;
		char *data;
		size_t len;

		if (i == SHARED_IDX) {
			snprintf(mf->path, sizeof(mf->path), "/shared.bin");
			mf->owner = -1;
			mf->cap = NCHILD * SHARED_SLICE;
		} else {
			snprintf(mf->path, sizeof(mf->path), "/c%d/%s", i / NOWN,
				 own_files[i % NOWN].name);
			mf->owner = i / NOWN;
			mf->cap = own_files[i % NOWN].cap;
		}
		mf->map_len = (size_t)mf->cap + 4096;
		mf->model = mmap(NULL, mf->map_len, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		assert_true(mf->model != MAP_FAILED);
		cat_image(mf->path, &data, &len);
		info_image(mf->path, &a);
		if (len > mf->cap || a.data_size != len)
			fail_msg("%s: %zu bytes (ntfsinfo: %" PRIu64 "), cap %" PRIu64, mf->path, len,
				 a.data_size, mf->cap);
		memcpy(mf->model, data, len);
		free(data);
		mf->size = len;
		mf->compressed = a.compressed;
		mf->resident = a.resident ? YES : NO;
		mf->sparse = a.sparse ? YES : NO;
		mf->res_fit_max = len;
		mf->res_nofit_min = 1024;       /* an MFT record: 1 KiB */
		/* what the setup made, or the test means nothing */
		switch (i == SHARED_IDX ? -1 : i % NOWN) {
		case 0:
			if (a.resident || !a.sparse || a.compressed)
				fail_msg("setup: %s is not a sparse file", mf->path);
			mf->hole_lo = 1 << 20;
			mf->hole_hi = 6 << 20;
			break;
		case FRAG_IDX:
			if (a.resident || !a.sparse || a.compressed)
				fail_msg("setup: %s is not a sparse file", mf->path);
			mf->hole_lo = 4096;
			mf->hole_hi = 16 << 20;
			break;
		case 1:
			if (a.resident || a.sparse || a.compressed)
				fail_msg("setup: %s is not a plain non-resident file", mf->path);
			break;
		case 2:
			if (a.resident || a.initialized_size >= a.data_size)
				fail_msg("setup: %s: initialized %" PRIu64 " of %" PRIu64, mf->path,
					 a.initialized_size, a.data_size);
			break;
		case 3:
		case 4:
		case 7:
		case 8:
			if (!a.resident || a.compressed)
				fail_msg("setup: %s is not resident", mf->path);
			break;
		case 5:
			if (a.resident || !a.compressed)
				fail_msg("setup: %s is not compressed and non-resident", mf->path);
			break;
		case 6:
			if (!a.resident || !a.compressed)
				fail_msg("setup: %s is not resident and flagged compressed", mf->path);
			break;
		default:
			if (a.resident)
				fail_msg("setup: %s is resident", mf->path);
			break;
		}
	}
}

/* ---- a client process ---- */

struct child {
	int k;
	uint64_t rng;
	unsigned op;
	ntfsc *c;
	ntfsc_file *h[NFILES];
	uint8_t *buf;
	char history[HISTORY][HIST_LEN];
	unsigned n_write, n_grow, n_gap, n_hole, n_zero, n_mmap, n_trunc_down, n_trunc_up,
		 n_read, n_whole, n_fsync, n_stat, n_beyond, n_refused, n_runlist_full,
		 n_moved_out;
};

static void hist(struct child *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hist(struct child *ch, const char *fmt, ...)
{
	va_list ap;
	char *h = ch->history[ch->op % HISTORY];
	int n = snprintf(h, HIST_LEN, "op %u: ", ch->op);

	va_start(ap, fmt);
	vsnprintf(h + n, (size_t)(HIST_LEN - n), fmt, ap);
	va_end(ap);
}

/* Append the outcome to the current history line (and trace it). */
static void hist_end(struct child *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hist_end(struct child *ch, const char *fmt, ...)
{
	va_list ap;
	char *h = ch->history[ch->op % HISTORY];
	size_t n = strlen(h);

	va_start(ap, fmt);
	if (n < HIST_LEN - 1)
		vsnprintf(h + n, HIST_LEN - n, fmt, ap);
	va_end(ap);
	if (trace)
		fprintf(stderr, "child %d %s\n", ch->k, h);
}

static int child_fail(struct child *ch, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* Report from a child (never cmocka: it would long-jump into the parent's
 * copy of the runner): the failure, the files, the last ops; exit 1. */
static int child_fail(struct child *ch, const char *fmt, ...)
{
	va_list ap;
	int err = errno;
	const char *msg = ntfsc_last_error_message(NULL);
	unsigned first = ch->op >= HISTORY ? ch->op - HISTORY + 1 : 0;

	fprintf(stderr, "child %d, op %u: ", ch->k, ch->op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, " [errno %d %s%s%s]\n", err, strerror(err), msg ? "; ntfsd: " : "",
			msg ? msg : "");
	else
		fprintf(stderr, "\n");
	fprintf(stderr, "  seed %#" PRIx64 " (NTFSD_ALLOC_SEED=%#" PRIx64 ")\n",
		mix_seed(seed_base, (uint64_t)ch->k), seed_base);
	for (int i = 0; i < NFILES; i++) {
		const struct mfile *mf = &files[i];

		if (mf->owner == ch->k || mf->owner < 0)
			fprintf(stderr, "  %s: model size %" PRIu64 ", resident %s, sparse %s%s\n",
				mf->path, mf->size, tri_name(mf->resident), tri_name(mf->sparse),
				mf->compressed ? ", compressed" : "");
	}
	fprintf(stderr, "  last ops:\n");
	for (unsigned i = first; i <= ch->op; i++)
		fprintf(stderr, "    %s\n", ch->history[i % HISTORY]);
	_exit(1);
}

/* A disagreement with the model (not a failed call: no errno to show). */
#define model_fail(ch, ...) (errno = 0, child_fail((ch), __VA_ARGS__))

static uint64_t below(struct child *ch, uint64_t n)
{
	return n ? xorshift(&ch->rng) % n : 0;
}

static uint64_t between(struct child *ch, uint64_t lo, uint64_t hi)  /* [lo, hi] */
{
	return lo + below(ch, hi - lo + 1);
}

static size_t io_len(struct child *ch)
{
	uint64_t r = below(ch, 20);

	if (r < 10)
		return 1 + (size_t)below(ch, 600);
	if (r < 15)
		return 1 + (size_t)below(ch, 16384);
	if (r < 18)
		return 1 + (size_t)below(ch, 131072);
	return 1 + (size_t)below(ch, MAX_IO);
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static int first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (int)i;
	return -1;
}

/* pread [off, off + len) and compare with the model. */
static void check_read(struct child *ch, int idx, uint64_t off, size_t len)
{
	const struct mfile *mf = &files[idx];
	size_t want = off >= mf->size ? 0 : (size_t)min64(mf->size - off, len);
	ssize_t n = ntfsc_pread(ch->h[idx], ch->buf, len, (off_t)off);
	int d;

	if (n != (ssize_t)want) {
		if (n >= 0)
			errno = 0;
		child_fail(ch, "%s: pread %zu at %" PRIu64 " gave %zd, want %zu", mf->path, len, off,
			   n, want);
	}
	d = first_diff(ch->buf, mf->model + off, want);
	if (d >= 0)
		model_fail(ch, "%s: pread %zu at %" PRIu64 ": %s", mf->path, len, off,
			   describe_diff(ch->buf, mf->model + off, want, off));
}

static void check_whole(struct child *ch, int idx)
{
	for (uint64_t off = 0; off < files[idx].size + 1; off += MAX_IO)
		check_read(ch, idx, off, MAX_IO);
}

static void fstat_or_fail(struct child *ch, int idx, struct ntfsc_stat_ext *st)
{
	if (ntfsc_fstat_ext(ch->h[idx], st))
		child_fail(ch, "%s: fstat", files[idx].path);
}

/* Sizes and flags the daemon reports must be the model's. */
static void check_stat(struct child *ch, int idx)
{
	const struct mfile *mf = &files[idx];
	struct ntfsc_stat_ext st;

	fstat_or_fail(ch, idx, &st);
	if (st.st.size != mf->size)
		model_fail(ch, "%s: fstat size %" PRIu64 ", model %" PRIu64, mf->path, st.st.size,
			   mf->size);
	if ((mf->resident == YES && !st.st.resident) || (mf->resident == NO && st.st.resident))
		model_fail(ch, "%s: fstat says %sresident, the model %s", mf->path,
			   st.st.resident ? "" : "non-", tri_name(mf->resident));
	if (!st.st.resident && (st.st.allocated_size < st.st.size ||
				st.st.initialized_size > st.st.size))
		model_fail(ch, "%s: fstat sizes: data %" PRIu64 ", initialized %" PRIu64
			   ", allocated %" PRIu64, mf->path, st.st.size, st.st.initialized_size,
			   st.st.allocated_size);
	if (st.compressed != mf->compressed)
		model_fail(ch, "%s: fstat compressed %d, model %d", mf->path, st.compressed,
			   mf->compressed);
	if ((mf->sparse == YES && !st.sparse) || (mf->sparse == NO && st.sparse))
		model_fail(ch, "%s: fstat sparse %d, the model %s", mf->path, st.sparse,
			   tri_name(mf->sparse));
}

/* ---- expectations: what the daemon must answer ---- */

struct expect {
	int err;                /* 0: must work; else must fail with it ... */
	bool maybe;             /* ... or may either work or fail with it */
	bool runlist_full_ok;   /* may fail with UNSUPPORTED_RUNLIST_FULL */
};

/* A resident file growing to size: in its record, or moved out of it,
 * which move_out_err (0: works) says. */
static struct expect expect_resident_grow(const struct mfile *mf, uint64_t size,
					  int move_out_err)
{
	struct expect e = { 0 };

	if (size <= mf->res_fit_max || !move_out_err)
		return e;
	e.err = move_out_err;
	e.maybe = size < mf->res_nofit_min;     /* not known yet whether it fits */
	return e;
}

static struct expect expect_truncate(const struct mfile *mf, uint64_t size)
{
	struct expect e = { 0 };

	if (mf->compressed && UNSUPPORTED_COMPRESSED_TRUNCATE) {
		e.err = UNSUPPORTED_COMPRESSED_TRUNCATE;
		return e;
	}
	if (mf->compressed && mf->resident == YES && size > mf->size &&
	    UNSUPPORTED_COMPRESSED_RESIDENT_TRUNCATE_UP) {
		e.err = UNSUPPORTED_COMPRESSED_RESIDENT_TRUNCATE_UP;
		return e;
	}
	if (size > BEYOND_SEGMENT / 2) {
		e.err = EFBIG;
		return e;
	}
	if (mf->resident == YES && size > mf->size)
		return expect_resident_grow(mf, size, mf->compressed ? UNSUPPORTED_COMPRESSED_MOVE_OUT
								      : UNSUPPORTED_RESIDENT_MOVE_OUT);
	e.runlist_full_ok = UNSUPPORTED_RUNLIST_FULL && mf->resident == NO && size > mf->size;
	return e;
}

/* pwrite of [off, off + len), or a PROT_WRITE mapping of it; zero_grow: a
 * buffer of zeroes over zeroes that grows the file. */
static struct expect expect_write(const struct mfile *mf, uint64_t off, uint64_t len,
				  bool zero_grow)
{
	struct expect e = { 0 };

	if (off + len > BEYOND_SEGMENT / 2) {
		e.err = EFBIG;
		return e;
	}
	if (zero_grow && KNOWN_BUG_ZERO_PWRITE_TRUNCATES)
		return expect_truncate(mf, off + len);
	if (mf->resident == YES && off + len > mf->size)
		return expect_resident_grow(mf, off + len,
					    mf->compressed ? UNSUPPORTED_COMPRESSED_MOVE_OUT
							   : UNSUPPORTED_RESIDENT_MOVE_OUT);
	if (mf->compressed && UNSUPPORTED_COMPRESSED_WRITE) {
		e.err = UNSUPPORTED_COMPRESSED_WRITE;
		return e;
	}
	e.runlist_full_ok = UNSUPPORTED_RUNLIST_FULL && mf->resident == NO;
	return e;
}

enum result { DONE, REFUSED, RUNLIST_FULL };

/*
 * The outcome of a call the model predicted with e: ok is whether it
 * worked.  DONE: the operation took effect (the model must follow);
 * REFUSED (as expected) or RUNLIST_FULL: the file must be as it was
 * (checked here over [off, off + len)).
 */
static enum result outcome(struct child *ch, int idx, const struct expect *e, bool ok,
			   const char *what, uint64_t off, uint64_t len)
{
	enum result res;
	const struct mfile *mf = &files[idx];
	int err = errno;
	const char *msg = ntfsc_last_error_message(NULL);
	struct ntfsc_stat_ext st;

	if (ok) {
		if (e->err && !e->maybe)
			model_fail(ch, "%s: %s worked; the model expects %s", mf->path, what,
				   strerror(e->err));
		hist_end(ch, " -> ok");
		return DONE;
	}
	if (e->err && err == e->err) {
		res = REFUSED;
		if ((err == EOPNOTSUPP || err == EFBIG) && !msg)
			model_fail(ch, "%s: %s: the refusal came without the daemon's message",
				   mf->path, what);
		hist_end(ch, " -> %s (expected)", strerrorname_np(err));
		ch->n_refused++;
	} else if (e->runlist_full_ok && err == UNSUPPORTED_RUNLIST_FULL && msg &&
		   strstr(msg, RUNLIST_FULL_MESSAGE)) {
		res = RUNLIST_FULL;
		hist_end(ch, " -> %s: runlist full (allowed)", strerrorname_np(err));
		ch->n_runlist_full++;
	} else {
		errno = err;
		child_fail(ch, "%s: %s failed; the model expects %s", mf->path, what,
			   e->err ? strerror(e->err) : "it to work");
	}
	/* refused: nothing changed */
	fstat_or_fail(ch, idx, &st);
	if (st.st.size != mf->size)
		model_fail(ch, "%s: the refused %s changed the size from %" PRIu64 " to %" PRIu64,
			   mf->path, what, mf->size, st.st.size);
	if (off < mf->size)
		check_read(ch, idx, off, (size_t)min64(len, MAX_IO));
	return res;
}

/* ---- the operations ---- */

/* The model follows a write of buf at off (which worked). */
static void model_write(struct mfile *mf, const uint8_t *buf, uint64_t off, size_t len)
{
	memcpy(mf->model + off, buf, len);   /* bytes between size and off are 0 already */
	if (off + len > mf->size)
		mf->size = off + len;
}

/* The model follows a truncate (which worked). */
static void model_truncate(struct mfile *mf, uint64_t size)
{
	if (size < mf->size)
		memset(mf->model + size, 0, mf->size - size);
	mf->size = size;
}

static uint64_t round_up(uint64_t x)
{
	return (x + CLUSTER - 1) / CLUSTER * CLUSTER;
}

static bool zero_range(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * A file that was resident grew from old to size (that worked): it is
 * resident now exactly when size fits in its record.  Learn where that
 * limit lies and hold the daemon to what was learnt.  by_truncate: the
 * growth was a truncate, which leaves a hole after the bytes moved out.
 */
static void learn_residency(struct child *ch, int idx, uint64_t old, uint64_t size,
			    bool by_truncate)
{
	struct mfile *mf = &files[idx];
	struct ntfsc_stat_ext st;

	fstat_or_fail(ch, idx, &st);
	if (st.st.resident) {
		if (size >= mf->res_nofit_min)
			model_fail(ch, "%s: still resident at %" PRIu64 " bytes, though %" PRIu64
				   " did not fit in its record", mf->path, size, mf->res_nofit_min);
		if (size > mf->res_fit_max)
			mf->res_fit_max = size;
		return;
	}
	if (size <= mf->res_fit_max)
		model_fail(ch, "%s: moved out of its record at %" PRIu64 " bytes, though %" PRIu64
			   " fitted", mf->path, size, mf->res_fit_max);
	if (size < mf->res_nofit_min)
		mf->res_nofit_min = size;
	mf->resident = NO;
	/* the old bytes got clusters; what a truncate added is a hole */
	mf->sparse = mf->compressed ? ANY : by_truncate && round_up(size) > round_up(old) ? YES : NO;
	if (mf->sparse == YES) {
		mf->hole_lo = round_up(old);
		mf->hole_hi = size;
	}
	hist_end(ch, " (moved out of its record)");
	ch->n_moved_out++;
}

/* A non-resident file grew by a truncate (or a zero write that became
 * one) from alloc bytes allocated: past them is a hole, so it is sparse. */
static void truncated_up(struct mfile *mf, uint64_t alloc, uint64_t size)
{
	if (mf->resident == NO && !mf->compressed && round_up(size) > alloc) {
		mf->sparse = YES;
		mf->hole_lo = alloc;
		mf->hole_hi = size;
	}
}

/* A write starting at off past the allocation (alloc bytes): the clusters
 * before the 16-cluster sparse unit holding off stay a hole, as ntfs-3g
 * leaves them, so the file is sparse from then on (unless compressed). */
#define SPARSE_UNIT (16u * CLUSTER)

static void written_past_alloc(struct mfile *mf, uint64_t alloc, uint64_t off)
{
	uint64_t at = off / SPARSE_UNIT * SPARSE_UNIT;

	if (mf->resident == NO && !mf->compressed && at > alloc) {
		mf->sparse = YES;
		mf->hole_lo = alloc;
		mf->hole_hi = at;
	}
}

/* A write into file idx: where, how much, what. */
static void op_pwrite(struct child *ch, int idx)
{
	struct mfile *mf = &files[idx];
	size_t len = io_len(ch);
	uint64_t off, lo = 0, hi = mf->cap, r = below(ch, 100);
	const char *kind;
	struct ntfsc_stat_ext st;
	struct expect e;
	enum result res;
	bool zero, zero_grow;
	int was = mf->resident;
	uint64_t old = mf->size;
	ssize_t n;

	if (mf->owner < 0) {
		/* the shared file: only this child's slice */
		lo = (uint64_t)ch->k * SHARED_SLICE;
		hi = lo + SHARED_SLICE;
		off = between(ch, lo, hi - 1);
		kind = "in its slice";
	} else if (idx % NOWN == FRAG_IDX) {
		/* small pieces anywhere: a new run (or two) each time */
		off = below(ch, mf->size);
		len = 1 + (size_t)below(ch, 2000);
		kind = "a piece";
		ch->n_hole++;
	} else if (mf->resident == YES) {
		/* inside, or growing it: within its record and past it */
		if (r < 50 && mf->size) {
			off = below(ch, mf->size);
			kind = "inside";
		} else {
			off = below(ch, mf->size + 1);
			len = (size_t)between(ch, mf->size > off ? mf->size - off + 1 : 1,
					      mf->size - min64(off, mf->size) + 1500);
			kind = "growing it";
		}
	} else if (r < 35 && mf->size) {
		off = below(ch, mf->size);
		kind = "inside";
	} else if (r < 55) {
		off = mf->size > 8192 ? mf->size - 8192 + below(ch, 16384) : below(ch, 16384);
		kind = "around the end";
	} else if (r < 70) {
		off = mf->size + between(ch, 1, 2u << 20);
		kind = "past the end";
		ch->n_gap++;
	} else if (r < 78) {
		off = mf->size + between(ch, 2u << 20, 5u << 20);
		kind = "far past the end";
		ch->n_gap++;
	} else if (mf->hole_hi > mf->hole_lo && mf->hole_hi <= mf->size) {
		off = between(ch, mf->hole_lo, mf->hole_hi - 1);
		kind = "into a hole";
		ch->n_hole++;
	} else {
		off = below(ch, mf->size + 1);
		kind = "anywhere";
	}
	/* keep within the cap (and the slice) */
	if (off >= hi)
		off = hi - 1;
	if (off < lo)
		off = lo;
	if (len > hi - off)
		len = (size_t)(hi - off);
	zero = below(ch, 10) == 0;
	if (zero) {
		memset(ch->buf, 0, len);
		ch->n_zero++;
	} else {
		fill_random(&ch->rng, ch->buf, len);
	}
	/* zeroes over zeroes that grow the file: a (sparse) size change */
	zero_grow = zero && off <= mf->size && off + len > mf->size &&
		    zero_range(mf->model + off, mf->size - off);
	fstat_or_fail(ch, idx, &st);
	e = expect_write(mf, off, len, zero_grow);
	hist(ch, "%s: pwrite %zu at %" PRIu64 " (%s; size %" PRIu64 ", allocated %" PRIu64 ")%s",
	     mf->path, len, off, kind, mf->size, st.st.allocated_size,
	     zero_grow ? " zeroes growing it" : zero ? " zeroes" : "");
	n = ntfsc_pwrite(ch->h[idx], ch->buf, len, (off_t)off);
	if (n >= 0 && n != (ssize_t)len)
		child_fail(ch, "%s: pwrite %zu at %" PRIu64 " returned %zd", mf->path, len, off, n);
	res = outcome(ch, idx, &e, n == (ssize_t)len, "pwrite", off, len);
	if (res == REFUSED && e.maybe && off + len < mf->res_nofit_min)
		mf->res_nofit_min = off + len;          /* learnt: it does not fit */
	if (res != DONE)
		return;
	model_write(mf, ch->buf, off, len);
	if (mf->size > old) {
		ch->n_grow++;
		if (was == YES)
			learn_residency(ch, idx, old, mf->size, zero_grow);
		else if (zero_grow)
			truncated_up(mf, st.st.allocated_size, mf->size);
		else
			written_past_alloc(mf, st.st.allocated_size, off);
	}
	if (mf->compressed)
		mf->sparse = ANY;
	ch->n_write++;
}

/* Map [off, off + len) of file idx writable, check it, store in 1..3
 * places, dirty. */
static void op_mmap(struct child *ch, int idx)
{
	struct mfile *mf = &files[idx];
	uint64_t lo = 0, hi = mf->size, off;
	size_t len, slo, shi = 0;
	int stores = 1 + (int)below(ch, 3), d;
	struct expect e;
	uint8_t *m;

	if (mf->owner < 0) {
		lo = (uint64_t)ch->k * SHARED_SLICE;
		hi = lo + SHARED_SLICE;
	}
	if (hi <= lo)
		return;
	off = between(ch, lo, hi - 1);
	len = (size_t)between(ch, 1, min64(hi - off, below(ch, 4) ? 20000 : 300000));
	if (idx % NOWN == FRAG_IDX && mf->owner >= 0)
		len = (size_t)between(ch, 1, min64(hi - off, 3000));
	if (mf->owner >= 0 && mf->hole_hi > mf->hole_lo && mf->hole_hi <= mf->size &&
	    below(ch, 3) == 0) {
		off = between(ch, mf->hole_lo, mf->hole_hi - 1);
		len = (size_t)between(ch, 1, min64(mf->hole_hi - off, 100000));
	}
	e = expect_write(mf, off, len, false);
	hist(ch, "%s: mmap %zu at %" PRIu64 ", %d stores (size %" PRIu64 ")", mf->path, len, off,
	     stores, mf->size);
	m = ntfsc_mmap(ch->h[idx], (off_t)off, len, PROT_READ | PROT_WRITE);
	if (outcome(ch, idx, &e, m != MAP_FAILED, "mmap PROT_WRITE", off, len) != DONE)
		return;
	d = first_diff(m, mf->model + off, len);
	if (d >= 0)
		model_fail(ch, "%s: the mapping of %zu at %" PRIu64 ": %s", mf->path, len, off,
			   describe_diff(m, mf->model + off, len, off));
	slo = len;
	for (int i = 0; i < stores; i++) {
		size_t a = (size_t)below(ch, len), b = 1 + (size_t)below(ch, len - a);

		if (below(ch, 8) == 0)
			memset(m + a, 0, b);
		else
			fill_random(&ch->rng, m + a, b);
		memcpy(mf->model + off + a, m + a, b);
		if (a < slo)
			slo = a;
		if (a + b > shi)
			shi = a + b;
		if (below(ch, 3) == 0 && ntfsc_set_dirty(ch->h[idx], m + a, b))
			child_fail(ch, "%s: set_dirty %zu at %" PRIu64, mf->path, b, off + a);
	}
	if (below(ch, 2) ? ntfsc_set_dirty(ch->h[idx], m, len)
			 : ntfsc_set_dirty(ch->h[idx], m + slo, shi - slo))
		child_fail(ch, "%s: set_dirty after the stores at %" PRIu64 "+[%zu, %zu)", mf->path,
			   off, slo, shi);
	if (ntfsc_munmap(ch->h[idx], m, len))
		child_fail(ch, "%s: munmap", mf->path);
	if (mf->compressed)
		mf->sparse = ANY;
	ch->n_mmap++;
}

static void op_truncate(struct child *ch, int idx)
{
	struct mfile *mf = &files[idx];
	struct ntfsc_stat_ext st;
	uint64_t r = below(ch, 100), size, old = mf->size;
	int was = mf->resident;
	struct expect e;
	enum result res;
	const char *kind;
	int ret;

	if (r < 8) {
		size = 0;
		kind = "to 0";
	} else if (r < 40) {
		size = below(ch, mf->size + 1);
		kind = "down";
	} else if (r < 75) {
		size = mf->resident == YES && below(ch, 2) ? mf->size + between(ch, 1, 1200)
							   : mf->size + between(ch, 1, 3u << 20);
		kind = "up";
	} else if (r < 85) {
		size = mf->size;
		kind = "to its size";
	} else {
		uint64_t d = between(ch, 1, 5000);

		size = below(ch, 2) ? mf->size + d : mf->size > d ? mf->size - d : 0;
		kind = "by a little";
	}
	if (size > mf->cap)
		size = mf->cap - below(ch, 4096);
	fstat_or_fail(ch, idx, &st);
	e = expect_truncate(mf, size);
	hist(ch, "%s: ftruncate %s to %" PRIu64 " (size %" PRIu64 ", allocated %" PRIu64 ")",
	     mf->path, kind, size, mf->size, st.st.allocated_size);
	ret = ntfsc_ftruncate(ch->h[idx], (off_t)size);
	res = outcome(ch, idx, &e, ret == 0, "ftruncate", size < old ? size : old, 65536);
	if (res == REFUSED && e.maybe && size < mf->res_nofit_min)
		mf->res_nofit_min = size;               /* learnt: it does not fit */
	if (res != DONE)
		return;
	model_truncate(mf, size);
	if (size > old) {
		if (was == YES)
			learn_residency(ch, idx, old, size, true);
		else
			truncated_up(mf, st.st.allocated_size, size);
	}
	if (mf->hole_hi > size)
		mf->hole_hi = size;
	if (mf->compressed)
		mf->sparse = ANY;
	if (size < old)
		ch->n_trunc_down++;
	else if (size > old)
		ch->n_trunc_up++;
}

/* Past what any cache segment can hold: EFBIG, nothing changes. */
static void op_beyond(struct child *ch, int idx)
{
	struct mfile *mf = &files[idx];
	uint64_t where = BEYOND_SEGMENT + below(ch, 1u << 20);
	uint8_t one = 0x5a;
	struct expect e;
	bool ok;

	if (mf->owner < 0 || below(ch, 2)) {
		e = expect_write(mf, where, 1, false);
		hist(ch, "%s: pwrite 1 at %" PRIu64 " (beyond the segment)", mf->path, where);
		ok = ntfsc_pwrite(ch->h[idx], &one, 1, (off_t)where) == 1;
		outcome(ch, idx, &e, ok, "pwrite beyond the segment", 0, 4096);
	} else {
		e = expect_truncate(mf, where);
		hist(ch, "%s: ftruncate to %" PRIu64 " (beyond the segment)", mf->path, where);
		ok = ntfsc_ftruncate(ch->h[idx], (off_t)where) == 0;
		outcome(ch, idx, &e, ok, "ftruncate beyond the segment", 0, 4096);
	}
	ch->n_beyond++;
}

/* A file of this child's (or the shared one), by weight. */
static int pick_file(struct child *ch)
{
	unsigned total = SHARED_WEIGHT, r;

	for (int i = 0; i < NOWN; i++)
		total += own_files[i].weight;
	r = (unsigned)below(ch, total);
	for (int i = 0; i < NOWN; i++) {
		if (r < own_files[i].weight)
			return ch->k * NOWN + i;
		r -= own_files[i].weight;
	}
	return SHARED_IDX;
}

static void one_op(struct child *ch)
{
	int idx = pick_file(ch);
	struct mfile *mf = &files[idx];
	uint64_t r = below(ch, 100);

	if (mf->owner >= 0 && idx % NOWN == FRAG_IDX) {
		/* mostly small writes, never a truncate (which would drop runs) */
		if (r < 60)
			r = 0;                  /* pwrite */
		else if (r < 70)
			r = 40;                 /* mmap */
		else if (r < 90)
			r = 70;                 /* pread */
		else if (r > 93 && r < 97)
			r = 85;                 /* fstat instead of a whole-file check */
	}
	if (r < 33) {
		op_pwrite(ch, idx);
	} else if (r < 46) {
		op_mmap(ch, idx);
	} else if (r < 60) {
		if (mf->owner < 0 || idx % NOWN == FRAG_IDX)
			op_pwrite(ch, idx);
		else
			op_truncate(ch, idx);
	} else if (r < 80) {
		uint64_t off = mf->owner < 0 ? ch->k * SHARED_SLICE + below(ch, SHARED_SLICE)
					     : below(ch, mf->size + 10000);
		size_t len = io_len(ch);

		if (mf->owner < 0 && len > (ch->k + 1) * SHARED_SLICE - off)
			len = (size_t)((ch->k + 1) * SHARED_SLICE - off);
		hist(ch, "%s: pread %zu at %" PRIu64 " (size %" PRIu64 ")", mf->path, len, off,
		     mf->size);
		check_read(ch, idx, off, len);
		hist_end(ch, " -> ok");
		ch->n_read++;
	} else if (r < 84) {
		hist(ch, "%s: fsync", mf->path);
		if (ntfsc_fsync(ch->h[idx]))
			child_fail(ch, "%s: fsync", mf->path);
		hist_end(ch, " -> ok");
		ch->n_fsync++;
	} else if (r < 92) {
		hist(ch, "%s: fstat", mf->path);
		check_stat(ch, idx);
		hist_end(ch, " -> ok");
		ch->n_stat++;
	} else if (r < 94) {
		op_beyond(ch, idx);
	} else if (r < 97 && mf->owner >= 0) {
		hist(ch, "%s: whole-file check (size %" PRIu64 ")", mf->path, mf->size);
		check_whole(ch, idx);
		hist_end(ch, " -> ok");
		ch->n_whole++;
	} else {
		op_pwrite(ch, idx);
	}
}

static bool child_uses(const struct child *ch, int idx)
{
	return files[idx].owner == ch->k || files[idx].owner < 0;
}

static void child_open(struct child *ch, const char *sock)
{
	ch->c = ntfsc_connect(sock);
	if (!ch->c)
		child_fail(ch, "connect %s", sock);
	for (int i = 0; i < NFILES; i++) {
		if (!child_uses(ch, i))
			continue;
		ch->h[i] = ntfsc_open(ch->c, files[i].path, O_RDWR);
		if (!ch->h[i])
			child_fail(ch, "open %s", files[i].path);
	}
	hist(ch, "(re)connected: whole-file checks and fstat of every file");
	for (int i = 0; i < NFILES; i++)
		if (child_uses(ch, i)) {
			if (files[i].owner < 0)
				check_read(ch, i, (uint64_t)ch->k * SHARED_SLICE, SHARED_SLICE);
			else
				check_whole(ch, i);
			check_stat(ch, i);
		}
	hist_end(ch, " -> ok");
	ch->op++;
}

static void child_close(struct child *ch, bool fsync_first)
{
	for (int i = 0; i < NFILES; i++) {
		if (!ch->h[i])
			continue;
		if (fsync_first && ntfsc_fsync(ch->h[i]))
			child_fail(ch, "final fsync of %s", files[i].path);
		if (ntfsc_close(ch->h[i]))
			child_fail(ch, "close %s", files[i].path);
		ch->h[i] = NULL;
	}
	ntfsc_disconnect(ch->c);
	ch->c = NULL;
}

static int child_main(int k, int down, int up)
{
	static struct child ch;
	char sock[KIDS_SOCK_MSG];

	memset(&ch, 0, sizeof(ch));
	ch.k = k;
	ch.rng = mix_seed(seed_base, (uint64_t)k);
	alarm(CHILD_TIMEOUT_S);
	ch.buf = malloc(MAX_IO + 1);
	if (!ch.buf)
		child_fail(&ch, "out of memory");
	for (int phase = 0; phase < 2; phase++) {
		if (!kids_wait_go(down, sock, sizeof(sock)))
			child_fail(&ch, "the parent went away");
		child_open(&ch, sock);
		for (unsigned i = 0; i < ops_per_phase; i++, ch.op++)
			one_op(&ch);
		/* child 0 leaves it all to the daemon's SIGTERM write-back */
		child_close(&ch, k != 0);
		if (write(up, "d", 1) != 1)
			child_fail(&ch, "cannot tell the parent");
	}
	fprintf(stderr, "child %d: %u pwrites (%u growing a file, %u past its end with a gap, "
		"%u into holes, %u all zero), %u mapped stores, %u truncates down, %u up, %u "
		"reads, %u whole-file checks, %u fstats, %u fsyncs, %u beyond the segment; %u "
		"resident files moved out, %u refused as expected, %u runlist full\n", k,
		ch.n_write, ch.n_grow, ch.n_gap, ch.n_hole, ch.n_zero, ch.n_mmap, ch.n_trunc_down,
		ch.n_trunc_up, ch.n_read, ch.n_whole, ch.n_stat, ch.n_fsync, ch.n_beyond,
		ch.n_moved_out, ch.n_refused, ch.n_runlist_full);
	free(ch.buf);
	return 0;
}

/* ---- the parent ---- */

/* Wait for a byte from every child; a child that dies fails the test. */
static void wait_phase(void)
{
	int st, k = kids_wait_phase(&kids, CHILD_TIMEOUT_S + 10, 200, NULL, &st);

	if (k >= 0) {
		if (dmn.pid)
			daemon_dump_log(&dmn);
		fail_msg("client %d failed (wait status 0x%x): see its output above "
			 "(seed: NTFSD_ALLOC_SEED=%#" PRIx64 ")", k, st, seed_base);
	}
}

/* The last byte that is not zero, + 1. */
static uint64_t data_end(const uint8_t *m, uint64_t size)
{
	while (size && !m[size - 1])
		size--;
	return size;
}

/* Every file on the image (daemon stopped) equals its model: ntfscat,
 * ntfsinfo's sizes and flags, ntfsfix -n. */
static void compare_models(const char *when)
{
	for (int i = 0; i < NFILES; i++) {
		const struct mfile *mf = &files[i];
		struct oracle_attr a;
		char *data;
		size_t len;

		cat_image(mf->path, &data, &len);
		expect_same(when, "ntfscat", mf->path, (const uint8_t *)data, len, mf->model,
			    mf->size);
		free(data);
		info_image(mf->path, &a);
		if (a.data_size != mf->size)
			fail_msg("%s: ntfsinfo says %s has %" PRIu64 " bytes, the model %" PRIu64,
				 when, mf->path, a.data_size, mf->size);
		if ((mf->resident == YES && !a.resident) || (mf->resident == NO && a.resident))
			fail_msg("%s: ntfsinfo says %s is %sresident, the model %s", when, mf->path,
				 a.resident ? "" : "non-", tri_name(mf->resident));
		if (a.compressed != mf->compressed)
			fail_msg("%s: ntfsinfo says %s is %scompressed", when, mf->path,
				 a.compressed ? "" : "not ");
		if ((mf->sparse == YES && !a.sparse) || (mf->sparse == NO && a.sparse))
			fail_msg("%s: ntfsinfo says %s is %ssparse, the model %s", when, mf->path,
				 a.sparse ? "" : "not ", tri_name(mf->sparse));
		if (!a.resident) {
			uint64_t last = data_end(mf->model, mf->size);

			if (a.initialized_size > a.data_size || a.initialized_size < last)
				fail_msg("%s: ntfsinfo says %s has initialized_size %" PRIu64
					 " (data %" PRIu64 "), the model has data up to byte %"
					 PRIu64, when, mf->path, a.initialized_size, a.data_size,
					 last);
			if (a.allocated_size < a.data_size)
				fail_msg("%s: ntfsinfo says %s has %" PRIu64 " bytes allocated for %"
					 PRIu64, when, mf->path, a.allocated_size, a.data_size);
		}
	}
	expect_fsck_clean(when);
	{
		unsigned lists = 0;

		for (int i = 0; i < NFILES; i++) {
			bool has = false;

			if (oracle_has_attr(image, files[i].path, "$ATTRIBUTE_LIST", &has) == 0 && has)
				lists++;
		}
		print_message("%s: every file on the image equals its model (ntfscat, ntfsinfo, "
			      "ntfsfix -n); %u have an attribute list\n", when, lists);
	}
}

/* A fresh read-only ntfs-3g mount reads every file as the model says. */
static void compare_mount(const char *when)
{
	mount_volume(true);
	for (int i = 0; i < NFILES; i++) {
		const struct mfile *mf = &files[i];
		char *p = mnt_path(mf->path), *data;
		size_t len;

		if (!(data = (char *)testvol_read_whole(p, &len)))
			fail_msg("%s: reading %s: %s", when, p, strerror(errno));
		expect_same(when, "ntfs-3g mount", mf->path, (const uint8_t *)data, len, mf->model,
			    mf->size);
		free(data);
		free(p);
	}
	unmount_ok();
	print_message("%s: a fresh ntfs-3g mount reads every file as the model\n", when);
}

static void model_run(const char *const *args)
{
	daemon_args = args;
	print_message("seed %#" PRIx64 " (NTFSD_ALLOC_SEED to change it), %u operations per "
		      "client and phase (NTFSD_ALLOC_OPS)\n", seed_base, ops_per_phase);
	make_model_volume();
	load_models();
	start_daemon();
	kids_init(&kids, NCHILD);
	kids_spawn(&kids, child_main);
	kids_send_go(&kids, dmn.socket);
	wait_phase();

	/* half way: stop (everything must be written back), check, restart */
	stop_daemon_clean();
	compare_models("after the first SIGTERM");
	start_daemon();
	kids_send_go(&kids, dmn.socket);
	wait_phase();
	kids_reap(&kids);
	kids_close_fds(&kids);
	stop_daemon_clean();
	compare_models("after the final SIGTERM");
	compare_mount("after the final SIGTERM");
	for (int i = 0; i < NFILES; i++) {
		const struct mfile *mf = &files[i];

		if (mf->resident == YES && mf->res_nofit_min < 1024)
			print_message("%s: resident, %" PRIu64 " bytes fit in its record, %" PRIu64
				      " do not\n", mf->path, mf->res_fit_max, mf->res_nofit_min);
	}
}

static void alloc_model(void **state)
{
	(void)state;
	model_run(NULL);
}

/* The same with a cache far smaller than the files and write-back all the
 * time: reclaim rereads what was written back, and writeback races with
 * every allocation and truncation. */
static void alloc_model_small_cache(void **state)
{
	static const char *const args[] = { "--cache-size", "2M", "--dirty-limit", "512K",
					     "--dirty-background", "64K", "--dirty-expire-ms",
					     "10", NULL };

	(void)state;
	model_run(args);
}

/* ======================================================================
 * The volume full
 * ====================================================================== */

/* A file being filled, and its model. */
struct ffile {
	const char *path;
	ntfsc_file *f;
	uint8_t *model;
	uint64_t size, cap;
};

static void ff_check(struct ffile *ff, const char *when)
{
	uint8_t *back = malloc(ff->size + 1);
	ssize_t n;

	assert_non_null(back);
	n = ntfsc_pread(ff->f, back, ff->size + 1, 0);
	if (n != (ssize_t)ff->size)
		fail_msg("%s: pread %s gave %zd bytes, the model has %" PRIu64, when, ff->path, n,
			 ff->size);
	expect_same(when, "pread", ff->path, back, (size_t)n, ff->model, ff->size);
	free(back);
}

static uint8_t scratch[2u << 20];

static ssize_t ff_write(struct ffile *ff, uint64_t *seed, uint64_t off, size_t len)
{
	ssize_t n;

	assert_true(off + len <= ff->cap && len <= sizeof(scratch));
	fill_random(seed, scratch, len);
	n = ntfsc_pwrite(ff->f, scratch, len, (off_t)off);
	if (n > 0) {
		memcpy(ff->model + off, scratch, (size_t)n);
		if (off + (uint64_t)n > ff->size)
			ff->size = off + (uint64_t)n;
	}
	if (n < 0 && errno != ENOSPC)
		fail_msg("pwrite %zu at %" PRIu64 " of %s: %s (%s)", len, off, ff->path,
			 strerror(errno), ntfsc_last_error_message(NULL));
	if (n >= 0 && n != (ssize_t)len)
		fail_msg("pwrite %zu at %" PRIu64 " of %s stored %zd", len, off, ff->path, n);
	return n;
}

/* Append len-byte writes until ENOSPC; returns how many worked. */
static unsigned ff_fill(struct ffile *ff, uint64_t *seed, size_t len)
{
	unsigned n = 0;

	while (ff->size + len + len <= ff->cap && ff_write(ff, seed, ff->size, len) > 0)
		n++;
	if (ff->size + len + len > ff->cap)
		fail_msg("%s reached %" PRIu64 " bytes without ENOSPC", ff->path, ff->size);
	return n;
}

static void expect_enospc(ssize_t ret, const char *what)
{
	if (ret != -1 || errno != ENOSPC)
		fail_msg("%s on a full volume: returned %zd (%s), want ENOSPC", what, ret,
			 ret < 0 ? strerror(errno) : "-");
}

static void ff_compare_image(struct ffile *ff, const char *when)
{
	char *data;
	size_t len;
	struct oracle_attr a;

	cat_image(ff->path, &data, &len);
	expect_same(when, "ntfscat", ff->path, (const uint8_t *)data, len, ff->model, ff->size);
	free(data);
	info_image(ff->path, &a);
	if (a.data_size != ff->size || a.initialized_size > a.data_size ||
	    a.allocated_size < a.data_size)
		fail_msg("%s: ntfsinfo %s: data %" PRIu64 ", initialized %" PRIu64 ", allocated %"
			 PRIu64 ", the model %" PRIu64, when, ff->path, a.data_size,
			 a.initialized_size, a.allocated_size, ff->size);
}

static void volume_full(void **state)
{
	enum { FILL, KEEP, HOLES, NFF };
	struct ffile ff[NFF] = {
		{ .path = "/fill.bin", .cap = FULL_VOL_MIB << 20 },
		{ .path = "/keep.bin", .cap = 1u << 20 },
		{ .path = "/holes.bin", .cap = 16u << 20 },
	};
	uint64_t seed = mix_seed(seed_base, 99), s0 = 77;
	unsigned n1, n64, n4;
	ntfsc *c;
	uint8_t *m, buf[8192];
	struct ntfsc_stat st;
	char *data;
	size_t len;

	(void)state;
	make_volume(FULL_VOL_MIB);
	mount_volume(false);
	fill_random(&s0, buf, sizeof(buf));
	mount_put("/fill.bin", buf, 5000, 0);
	for (int i = 0; i < 40; i++)
		mount_put("/keep.bin", buf, sizeof(buf), (off_t)i * 7000);
	mount_put("/holes.bin", buf, 4096, 0);
	mount_truncate("/holes.bin", 8 << 20);
	unmount_ok();
	for (int i = 0; i < NFF; i++) {
		ff[i].model = calloc(1, ff[i].cap + 1);
		assert_non_null(ff[i].model);
		cat_image(ff[i].path, &data, &len);
		assert_true(len <= ff[i].cap / 2);
		memcpy(ff[i].model, data, len);
		ff[i].size = len;
		free(data);
	}

	start_daemon();
	c = connect_daemon();
	for (int i = 0; i < NFF; i++) {
		ff[i].f = ntfsc_open(c, ff[i].path, O_RDWR);
		if (!ff[i].f)
			fail_msg("open %s: %s", ff[i].path, strerror(errno));
	}
	/* fill: 1 MiB writes, then 64 KiB, then 4 KiB, each until ENOSPC */
	n1 = ff_fill(&ff[FILL], &seed, 1u << 20);
	ff_check(&ff[FILL], "after the first ENOSPC");
	n64 = ff_fill(&ff[FILL], &seed, 65536);
	n4 = ff_fill(&ff[FILL], &seed, 4096);
	print_message("the volume took %u 1 MiB, %u 64 KiB and %u 4 KiB writes: %s is %" PRIu64
		      " bytes\n", n1, n64, n4, ff[FILL].path, ff[FILL].size);
	if (ff[FILL].size < (FULL_VOL_MIB / 2) << 20)
		fail_msg("ENOSPC with only %" PRIu64 " bytes written to a %u MiB volume",
			 ff[FILL].size, FULL_VOL_MIB);

	/* full: anything that needs a cluster is ENOSPC and changes nothing */
	memset(buf, 0xa5, sizeof(buf));
	expect_enospc(ntfsc_pwrite(ff[HOLES].f, buf, 100, 3 << 20), "a write into a hole");
	expect_enospc(ntfsc_pwrite(ff[KEEP].f, buf, 10, (off_t)ff[KEEP].size + (1 << 20)),
		      "a write past the end with a gap");
	m = ntfsc_mmap(ff[HOLES].f, 5 << 20, 8192, PROT_READ | PROT_WRITE);
	expect_enospc(m == MAP_FAILED ? -1 : 0, "mmap PROT_WRITE over a hole");
	if (m != MAP_FAILED)
		ntfsc_munmap(ff[HOLES].f, m, 8192);
	expect_enospc(ff_write(&ff[FILL], &seed, ff[FILL].size, 4096), "an append");
	for (int i = 0; i < NFF; i++) {
		assert_int_equal(ntfsc_fstat(ff[i].f, &st), 0);
		if (st.size != ff[i].size)
			fail_msg("%s: size %" PRIu64 " after ENOSPC, the model %" PRIu64, ff[i].path,
				 st.size, ff[i].size);
		ff_check(&ff[i], "on the full volume");
	}
	/* a sparse truncate up needs no clusters */
	if (ntfsc_ftruncate(ff[HOLES].f, 12 << 20))
		fail_msg("a sparse ftruncate up on the full volume: %s (%s)", strerror(errno),
			 ntfsc_last_error_message(NULL));
	ff[HOLES].size = 12 << 20;
	/* everything accepted is written back */
	for (int i = 0; i < NFF; i++)
		if (ntfsc_fsync(ff[i].f))
			fail_msg("fsync %s on the full volume: %s (%s)", ff[i].path, strerror(errno),
				 ntfsc_last_error_message(NULL));

	/* a truncate down frees clusters: writing goes on */
	{
		uint64_t down = ff[FILL].size - (3u << 20) - 1234;

		if (ntfsc_ftruncate(ff[FILL].f, (off_t)down))
			fail_msg("ftruncate %s down: %s", ff[FILL].path, strerror(errno));
		memset(ff[FILL].model + down, 0, ff[FILL].size - down);
		ff[FILL].size = down;
	}
	if (ff_write(&ff[HOLES], &seed, (4u << 20) + 100, 2u << 20) < 0)
		fail_msg("a write into a hole after the truncate: %s (%s)", strerror(errno),
			 ntfsc_last_error_message(NULL));
	if (ff_write(&ff[FILL], &seed, ff[FILL].size, 512 * 1024) < 0)
		fail_msg("an append after the truncate: %s (%s)", strerror(errno),
			 ntfsc_last_error_message(NULL));
	for (int i = 0; i < NFF; i++) {
		ff_check(&ff[i], "after the truncate and more writes");
		ntfsc_close(ff[i].f);
	}
	ntfsc_disconnect(c);
	stop_daemon_clean();

	for (int i = 0; i < NFF; i++)
		ff_compare_image(&ff[i], "after SIGTERM");
	{
		struct oracle_attr a;

		info_image("/holes.bin", &a);
		if (!a.sparse)
			fail_msg("/holes.bin is no longer sparse");
	}
	expect_fsck_clean("after SIGTERM");
	mount_volume(true);
	for (int i = 0; i < NFF; i++) {
		char *p = mnt_path(ff[i].path);

		if (!(data = (char *)testvol_read_whole(p, &len)))
			fail_msg("reading %s: %s", p, strerror(errno));
		expect_same("a fresh mount", "ntfs-3g mount", ff[i].path, (const uint8_t *)data, len,
			    ff[i].model, ff[i].size);
		free(data);
		free(p);
	}
	unmount_ok();
	for (int i = 0; i < NFF; i++)
		free(ff[i].model);
}

/* ======================================================================
 * A write of zeroes is a write
 * ====================================================================== */

/*
 * ntfsc_pwrite of zeroes at the end of a compressed file, non-resident or
 * resident (within its record), must grow it as the same write of data
 * does (KNOWN_BUG_ZERO_PWRITE_TRUNCATES: it becomes an ntfsc_ftruncate,
 * which a resident compressed file refuses).
 */
static void zero_pwrite_grows_compressed(void **state)
{
	static const char *const paths[] = { "/z/comp.txt", "/z/tiny.txt" };
	static const size_t sizes[] = { 20000, 40 };
	static const uint8_t zero[100];
	uint8_t data[100], *model[2];
	uint64_t s = 5;
	struct ntfsc_stat st;
	ntfsc *c;
	ntfsc_file *f;
	ssize_t n;
	size_t len;
	char *img;
	bool bad = false;

	(void)state;
	make_volume(16);
	mount_volume(false);
	mount_mkdir("/z", true);
	for (int i = 0; i < 2; i++) {
		model[i] = malloc(sizes[i] + 200);
		assert_non_null(model[i]);
		fill_text(&s, model[i], sizes[i]);
		mount_put(paths[i], model[i], sizes[i], 0);
	}
	unmount_ok();
	start_daemon();
	c = connect_daemon();
	memset(data, 'x', sizeof(data));
	for (int i = 0; i < 2; i++) {
		f = ntfsc_open(c, paths[i], O_RDWR);
		assert_non_null(f);
		/* data at the end works ... */
		n = ntfsc_pwrite(f, data, sizeof(data), (off_t)sizes[i]);
		if (n != (ssize_t)sizeof(data))
			fail_msg("pwrite of 100 bytes at the end of %s: %s (%s)", paths[i],
				 strerror(errno), ntfsc_last_error_message(NULL));
		memcpy(model[i] + sizes[i], data, sizeof(data));
		/* ... and so must zeroes */
		n = ntfsc_pwrite(f, zero, sizeof(zero), (off_t)sizes[i] + 100);
		if (n != (ssize_t)sizeof(zero)) {
			print_error("pwrite of 100 zero bytes at the end (%zu) of the compressed %s "
				    "returned %zd (%s: %s); 100 bytes of data there work\n",
				    sizes[i] + 100, paths[i], n, strerror(errno),
				    ntfsc_last_error_message(NULL));
			bad = true;
			assert_int_equal(ntfsc_fstat(f, &st), 0);
			assert_int_equal(st.size, sizes[i] + 100);
		} else {
			memset(model[i] + sizes[i] + 100, 0, sizeof(zero));
			assert_int_equal(ntfsc_fstat(f, &st), 0);
			assert_int_equal(st.size, sizes[i] + 200);
		}
		assert_int_equal(ntfsc_close(f), 0);
	}
	ntfsc_disconnect(c);
	stop_daemon_clean();
	for (int i = 0; i < 2; i++) {
		struct oracle_attr a;

		cat_image(paths[i], &img, &len);
		info_image(paths[i], &a);
		expect_same("after SIGTERM", "ntfscat", paths[i], (const uint8_t *)img, len,
			    model[i], a.data_size);
		free(img);
		free(model[i]);
	}
	expect_fsck_clean("after SIGTERM");
	if (bad)
		fail_msg("a write of zeroes failed where the same write of data works");
}

/* ======================================================================
 * initialized_size against a truncate
 * ====================================================================== */

/*
 * Writes past the end (each one past initialized_size, so its write-back
 * raises initialized_size) followed at once by a small truncate up, with
 * write-back running all the time: a truncate that takes initialized_size
 * before write-back raised it and stores it back after loses the raise, and
 * the bytes past the stale initialized_size read as zeroes once reclaimed,
 * and are zeroed on the disk by the next write-back past it.  Several
 * rounds, each checked with pread, then everything with ntfscat.
 */
#define RACE_ROUNDS 4
#define RACE_ITERS 600
#define RACE_PIECE 500u

static void truncate_up_races_writeback(void **state)
{
	static const char *const args[] = { "--cache-size", "1M", "--dirty-background", "4K",
					     "--dirty-expire-ms", "1", NULL };
	static const char *const paths[RACE_ROUNDS] = { "/r0.bin", "/r1.bin", "/r2.bin",
							 "/r3.bin" };
	uint64_t cap = 40u << 20, size[RACE_ROUNDS], seed = mix_seed(seed_base, 7);
	uint8_t *model[RACE_ROUNDS], *back = malloc(cap), piece[RACE_PIECE];
	unsigned bad_rounds = 0;
	ntfsc *c;

	(void)state;
	assert_non_null(back);
	make_volume(256);
	mount_volume(false);
	for (int r = 0; r < RACE_ROUNDS; r++) {
		model[r] = calloc(1, cap);
		assert_non_null(model[r]);
		fill_random(&seed, model[r], 100000);
		mount_put(paths[r], model[r], 100000, 0);
		size[r] = 100000;
	}
	unmount_ok();
	daemon_args = args;
	start_daemon();
	c = connect_daemon();
	for (int r = 0; r < RACE_ROUNDS; r++) {
		ntfsc_file *f = ntfsc_open(c, paths[r], O_RDWR);
		ssize_t n;

		if (!f)
			fail_msg("open %s: %s", paths[r], strerror(errno));
		for (unsigned i = 0; i < RACE_ITERS; i++) {
			uint64_t off = size[r] + 40000 + (uint64_t)(i % 7) * 1000;

			fill_random(&seed, piece, sizeof(piece));
			piece[0] |= 1;
			if (ntfsc_pwrite(f, piece, sizeof(piece), (off_t)off) != (ssize_t)sizeof(piece))
				fail_msg("pwrite %s at %" PRIu64 ": %s", paths[r], off, strerror(errno));
			memcpy(model[r] + off, piece, sizeof(piece));
			size[r] = off + sizeof(piece) + 1 + i % 5000;
			if (ntfsc_ftruncate(f, (off_t)size[r]))
				fail_msg("ftruncate %s to %" PRIu64 ": %s", paths[r], size[r],
					 strerror(errno));
		}
		if (ntfsc_fsync(f))
			fail_msg("fsync %s: %s", paths[r], strerror(errno));
		n = ntfsc_pread(f, back, size[r], 0);
		if (n != (ssize_t)size[r])
			fail_msg("pread %s: %zd of %" PRIu64, paths[r], n, size[r]);
		if (memcmp(back, model[r], size[r])) {
			print_error("round %d (%s): pread: %s\n", r, paths[r],
				    describe_diff(back, model[r], size[r], 0));
			bad_rounds++;
		}
		assert_int_equal(ntfsc_close(f), 0);
	}
	ntfsc_disconnect(c);
	stop_daemon_clean();
	for (int r = 0; r < RACE_ROUNDS; r++) {
		char *data;
		size_t len;

		cat_image(paths[r], &data, &len);
		if (len != size[r] || memcmp(data, model[r], len)) {
			print_error("round %d (%s): ntfscat: %zu bytes, %s\n", r, paths[r], len,
				    len == size[r] ? describe_diff((uint8_t *)data, model[r], len, 0)
						   : "sizes differ");
			bad_rounds++;
		}
		free(data);
		free(model[r]);
	}
	free(back);
	if (bad_rounds)
		fail_msg("data written past initialized_size was lost (%u checks failed): a "
			 "truncate stored back a stale initialized_size", bad_rounds);
	expect_fsck_clean("after SIGTERM");
}

/* ======================================================================
 * Fresh clusters against write-back raising initialized_size
 * ====================================================================== */

static ntfsc_file *syncer_file;

static void *syncer(void *arg)
{
	(void)arg;
	ntfsc_fsync(syncer_file);
	return NULL;
}

/*
 * A write into a hole gets fresh clusters, zeroed on the disk first when
 * they lie below initialized_size.  Meanwhile write-back of a page far past
 * initialized_size zero-fills everything allocated up to it and raises
 * initialized_size past the hole.  If the hole write decided "above
 * initialized_size, no zeroing" before the raise and its clusters join the
 * runlist after the zero-fill, they hold stale bytes below
 * initialized_size, and the rest of the page it reads in for the partial
 * write shows them.  Clusters full of 0xa5 are freed each round so that
 * stale bytes are visible; the page around a 100-byte write into the hole
 * must read as zeroes.
 */
#define HOLE_RACE_ROUNDS 60

static void hole_fill_races_writeback(void **state)
{
	static uint8_t junk[1 << 20], page[4096], piece[100];
	const uint64_t holes = 4u << 20, gap = 16u << 20;
	ntfsc *c, *c2;
	ntfsc_file *a, *b;
	unsigned bad_rounds = 0;

	(void)state;
	make_volume(128);
	mount_volume(false);
	memset(junk, 0xa5, sizeof(junk));
	mount_put("/junk.bin", junk, 4096, 0);
	mount_put("/holes.bin", junk, 4096, 0);
	unmount_ok();
	start_daemon();
	c = connect_daemon();
	c2 = connect_daemon();
	a = ntfsc_open(c, "/junk.bin", O_RDWR);
	b = ntfsc_open(c, "/holes.bin", O_RDWR);
	syncer_file = ntfsc_open(c2, "/holes.bin", O_RDWR);
	assert_true(a && b && syncer_file);
	memset(piece, 0x11, sizeof(piece));
	for (unsigned i = 0; i < HOLE_RACE_ROUNDS && bad_rounds < 3; i++) {
		uint64_t hole = (uint64_t)(i % 60) * 65536 + 1000 + 4096 * (i % 13);
		uint64_t base = hole & ~(uint64_t)4095;
		struct timespec ts = { 0, (long)(i % 20) * 100000 };
		uint8_t one = 1;
		pthread_t t;

		/* all hole below 4 MiB, initialized_size 0 */
		if (ntfsc_ftruncate(b, 0) || ntfsc_ftruncate(b, (off_t)holes))
			fail_msg("ftruncate /holes.bin: %s", strerror(errno));
		/* a write past the end: 16 MiB of gap for its write-back to zero-fill */
		if (ntfsc_pwrite(b, &one, 1, (off_t)(holes + gap)) != 1)
			fail_msg("pwrite /holes.bin at %" PRIu64 ": %s", holes + gap, strerror(errno));
		/* free clusters full of 0xa5 for the hole write to get */
		for (int j = 0; j < 8; j++)
			if (ntfsc_pwrite(a, junk, sizeof(junk), (off_t)j << 20) != (ssize_t)sizeof(junk))
				fail_msg("pwrite /junk.bin: %s", strerror(errno));
		if (ntfsc_fsync(a) || ntfsc_ftruncate(a, 0) || ntfsc_fsync(a))
			fail_msg("freeing /junk.bin's clusters: %s", strerror(errno));
		/* write-back now (another connection), the hole write meanwhile */
		assert_int_equal(pthread_create(&t, NULL, syncer, NULL), 0);
		nanosleep(&ts, NULL);
		if (ntfsc_pwrite(b, piece, sizeof(piece), (off_t)hole) != (ssize_t)sizeof(piece))
			fail_msg("pwrite into the hole at %" PRIu64 ": %s", hole, strerror(errno));
		assert_int_equal(pthread_join(t, NULL), 0);
		if (ntfsc_pread(b, page, sizeof(page), (off_t)base) != (ssize_t)sizeof(page))
			fail_msg("pread /holes.bin at %" PRIu64 ": %s", base, strerror(errno));
		{
			uint8_t want[4096] = { 0 };

			memcpy(want + (hole - base), piece, sizeof(piece));
			if (memcmp(page, want, sizeof(page))) {
				print_error("round %u: the page around a write into a hole: %s\n", i,
					    describe_diff(page, want, sizeof(page), base));
				bad_rounds++;
			}
		}
		if (ntfsc_fsync(b))
			fail_msg("fsync /holes.bin: %s", strerror(errno));
	}
	ntfsc_close(syncer_file);
	ntfsc_disconnect(c2);
	ntfsc_close(a);
	ntfsc_close(b);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	if (bad_rounds)
		fail_msg("fresh clusters in a hole below initialized_size were not zeroed: stale "
			 "bytes in %u rounds", bad_rounds);
	expect_fsck_clean("after SIGTERM");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(alloc_model, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(alloc_model_small_cache, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(truncate_up_races_writeback, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(hole_fill_races_writeback, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(volume_full, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(zero_pwrite_grows_compressed, setup_dir,
						teardown_dir),
	};
	const char *s;

	ntfsd_bin = getenv("NTFSD_BIN");
	if (!ntfsd_bin) {
		fprintf(stderr, "NTFSD_BIN must be set: run through meson test\n");
		return 1;
	}
	if (access("/dev/fuse", R_OK | W_OK)) {
		fprintf(stderr, "/dev/fuse is required for the ntfs-3g mounts: %s\n",
			strerror(errno));
		return 1;
	}
	s = getenv("NTFSD_ALLOC_SEED");
	seed_base = s && *s ? strtoull(s, NULL, 0) : DEFAULT_SEED;
	s = getenv("NTFSD_ALLOC_OPS");
	ops_per_phase = s && *s ? (unsigned)strtoul(s, NULL, 0) : OPS_PER_PHASE;
	s = getenv("NTFSD_ALLOC_TRACE");
	trace = s && *s && strcmp(s, "0");
	s = getenv("NTFSD_ALLOC_ONLY");         /* a test name (pattern) to run alone */
	if (s && *s)
		cmocka_set_test_filter(s);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
