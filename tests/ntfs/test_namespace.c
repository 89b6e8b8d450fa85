/*
 * test_namespace.c — creating and removing names on disk (namespace.c,
 * index.c) on volumes made with mkntfs, judged by tools that share no code
 * with the layer: ntfs-3g's (ntfsfix, ntfsls, ntfscat, an ntfs-3g mount)
 * and The Sleuth Kit's (fls, icat), an independent NTFS parser.
 *
 * The group setup makes one pristine image (mkntfs, 128 MiB, 4 KiB
 * clusters) and fills /filled with FILLED files through a read-write
 * ntfs-3g mount, so that one directory has a large index that ntfs-3g
 * built.  Each test works on a copy of it and keeps a model: every path
 * under the root it knows of (what the pristine image held, read once with
 * ntfsls and the layer's own lookup, and what the test created), with the
 * MFT record number, and the paths it removed.  After each phase the
 * volume is closed and:
 *  - `ntfsfix -n` must pass;
 *  - `ntfsls -a -s -p DIR` of every directory must list exactly the
 *    model's names for it;
 *  - `fls -r -p -u` must list exactly the model's paths (plus what it
 *    listed on the pristine image: system streams, $OrphanFiles), each
 *    with the model's MFT record number;
 *  - `icat` and `ntfscat` of a sample of the files must give their
 *    (empty) contents;
 *  - an ntfs-3g mount must show every directory as the model says
 *    (readdir), and create and delete a few files itself (the model
 *    follows); after its unmount (at the mount point, waiting for the
 *    ntfs-3g process) `ntfsfix -n` must pass again;
 *  - the layer reopens the image and must find every path of the model at
 *    its record (ntfs_path_lookup), none of the removed ones, and
 *    ntfs_index_check() must accept every directory's index.
 * The tests print what they reached (entries, index depth, blocks).
 *
 * Everything lives in a mkdtemp() directory the group teardown (or, on a
 * hang or an abort, a signal handler) removes, with any mount unmounted.
 * NTFSD_TEST_SEED varies the names' order and the removals.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
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

#include "dir.h"
#include "error.h"
#include "index.h"
#include "inode.h"
#include "layout.h"
#include "namespace.h"
#include "oracle.h"
#include "testvol.h"
#include "unistr.h"
#include "volume.h"

#define IMAGE_SIZE (128ull << 20)
#define CLUSTER 4096u
#define FILLED 600          /* files ntfs-3g puts in /filled */
#define BIG 3000            /* files the layer puts in /big */
#define SAMPLE 12           /* files whose contents each phase reads */
#define NO_MFT UINT64_MAX   /* made by ntfs-3g through the mount: not known yet */

static unsigned test_timeout = 900;

struct ent {
	char *path;             /* absolute, "/a/b" */
	bool dir;
	uint64_t mft;           /* or NO_MFT */
};

static struct {
	struct testvol tv;
	char **fls_base;        /* fls paths of the pristine image not in the model */
	size_t nfls_base;
	struct ent *base;       /* the pristine image's model */
	size_t nbase;
	/* per test */
	struct ntfs_volume *vol;
	struct ent *m;
	size_t n, cap;
	char **gone;
	size_t ngone, gone_cap;
	unsigned mount_round;
} fx;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ */
/* the model                                                            */
/* ------------------------------------------------------------------ */

static void model_add(const char *path, bool dir, uint64_t mft)
{
	if (fx.n == fx.cap) {
		fx.cap = fx.cap ? fx.cap * 2 : 1024;
		fx.m = realloc(fx.m, fx.cap * sizeof(*fx.m));
		assert_non_null(fx.m);
	}
	fx.m[fx.n].path = strdup(path);
	assert_non_null(fx.m[fx.n].path);
	fx.m[fx.n].dir = dir;
	fx.m[fx.n].mft = mft;
	fx.n++;
}

static ssize_t model_find(const char *path)
{
	for (size_t i = 0; i < fx.n; i++)
		if (!strcmp(fx.m[i].path, path))
			return (ssize_t)i;
	return -1;
}

static void model_del(const char *path)
{
	ssize_t i = model_find(path);

	assert_true(i >= 0);
	if (fx.ngone == fx.gone_cap) {
		fx.gone_cap = fx.gone_cap ? fx.gone_cap * 2 : 1024;
		fx.gone = realloc(fx.gone, fx.gone_cap * sizeof(*fx.gone));
		assert_non_null(fx.gone);
	}
	fx.gone[fx.ngone++] = fx.m[i].path;
	fx.m[i] = fx.m[--fx.n];
}

static void model_reset(void)
{
	for (size_t i = 0; i < fx.n; i++)
		free(fx.m[i].path);
	for (size_t i = 0; i < fx.ngone; i++)
		free(fx.gone[i]);
	fx.n = fx.ngone = 0;
	for (size_t i = 0; i < fx.nbase; i++)
		model_add(fx.base[i].path, fx.base[i].dir, fx.base[i].mft);
}

/* The parent part of path ("/" for "/x") in buf. */
static const char *parent_of(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n = (size_t)(slash - path);

	if (n == 0)
		n = 1;
	snprintf(buf, len, "%.*s", (int)n, path);
	return buf;
}

static const char *base_of(const char *path)
{
	return strrchr(path, '/') + 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of dir's children in the model, sorted; with_system: also the
 * records below 16 (which an ntfs-3g mount hides). */
static char **model_children(const char *dir, bool with_system, size_t *count)
{
	char **v = malloc((fx.n + 1) * sizeof(*v)), pbuf[1024];
	size_t k = 0;

	assert_non_null(v);
	for (size_t i = 0; i < fx.n; i++) {
		if (!strcmp(fx.m[i].path, "/") || strcmp(parent_of(fx.m[i].path, pbuf, sizeof(pbuf)), dir))
			continue;
		if (!with_system && fx.m[i].mft < FILE_first_user)
			continue;
		v[k++] = (char *)base_of(fx.m[i].path);
	}
	qsort(v, k, sizeof(*v), cmp_str);
	*count = k;
	return v;
}

/* Compare two sorted name lists; fail the test naming the first
 * differences. */
static void expect_same(const char *what, char **want, size_t nw, char **got, size_t ng)
{
	size_t i = 0, j = 0, shown = 0;

	while ((i < nw || j < ng) && shown < 6) {
		int c = i == nw ? 1 : j == ng ? -1 : strcmp(want[i], got[j]);

		if (!c) {
			i++, j++;
			continue;
		}
		print_error("%s: %s \"%s\"\n", what, c < 0 ? "missing" : "unexpected",
			    c < 0 ? want[i] : got[j]);
		shown++;
		if (c < 0)
			i++;
		else
			j++;
	}
	if (shown)
		fail_msg("%s: %zu names expected, %zu found", what, nw, ng);
}

/* ------------------------------------------------------------------ */
/* the layer                                                            */
/* ------------------------------------------------------------------ */

#define EXPECT_OK(call)                                                        \
	do {                                                                   \
		int e_ = (call);                                               \
		if (e_)                                                        \
			fail_msg("%s: %d (%s)", #call, e_, ntfs_last_error()); \
	} while (0)

static void vol_open(void)
{
	EXPECT_OK(ntfs_volume_open(fx.tv.scratch, 0, &fx.vol));
}

static void vol_close(void)
{
	ntfs_volume_close(fx.vol);
	fx.vol = NULL;
}

static struct ntfs_inode *open_dir(const char *path)
{
	struct ntfs_inode *ni;
	uint64_t mref;

	EXPECT_OK(ntfs_path_lookup(fx.vol, path, 0, &mref));
	EXPECT_OK(ntfs_inode_open(fx.vol, MREF(mref), &ni));
	return ni;
}

/* Create path through the layer: its error (the model follows success). */
static int try_create(struct ntfs_inode *dir, const char *path, bool is_dir)
{
	uint64_t no = 0;
	int err = ntfs_create(fx.vol, dir, base_of(path), is_dir, &no);

	if (!err) {
		assert_true(no >= 24);
		model_add(path, is_dir, no);
	}
	return err;
}

static void create_ok(const char *path, bool is_dir)
{
	char pbuf[1024];
	struct ntfs_inode *dir = open_dir(parent_of(path, pbuf, sizeof(pbuf)));
	int err = try_create(dir, path, is_dir);

	ntfs_inode_close(dir);
	if (err)
		fail_msg("create %s: %d (%s)", path, err, ntfs_last_error());
}

static int try_unlink(struct ntfs_inode *dir, const char *path)
{
	int err = ntfs_unlink(fx.vol, dir, base_of(path));

	if (!err)
		model_del(path);
	return err;
}

static void unlink_ok(const char *path)
{
	char pbuf[1024];
	struct ntfs_inode *dir = open_dir(parent_of(path, pbuf, sizeof(pbuf)));
	int err = try_unlink(dir, path);

	ntfs_inode_close(dir);
	if (err)
		fail_msg("unlink %s: %d (%s)", path, err, ntfs_last_error());
}

static void expect_create_err(const char *dirpath, const char *name, bool is_dir, int want)
{
	struct ntfs_inode *dir = open_dir(dirpath);
	uint64_t no = 0;
	int err = ntfs_create(fx.vol, dir, name, is_dir, &no);

	ntfs_inode_close(dir);
	if (err != want)
		fail_msg("create \"%s\" in %s: %d (%s), expected %d", name, dirpath, err,
			 err ? ntfs_last_error() : "created", want);
}

static void expect_unlink_err(const char *path, int want)
{
	char pbuf[1024];
	struct ntfs_inode *dir = open_dir(parent_of(path, pbuf, sizeof(pbuf)));
	int err = ntfs_unlink(fx.vol, dir, base_of(path));

	ntfs_inode_close(dir);
	if (err != want)
		fail_msg("unlink %s: %d (%s), expected %d", path, err,
			 err ? ntfs_last_error() : "removed", want);
}

static void print_stats(const char *what, const char *path)
{
	struct ntfs_inode *dir = open_dir(path);
	struct ntfs_index_stats st;

	EXPECT_OK(ntfs_index_check(dir, &st));
	ntfs_inode_close(dir);
	print_message("  %s %s: %llu entries, index depth %u, %llu of %llu blocks in use\n", what,
		      path, (unsigned long long)st.entries, st.depth,
		      (unsigned long long)st.blocks_used, (unsigned long long)st.blocks_allocated);
}

/* ------------------------------------------------------------------ */
/* the phase check                                                      */
/* ------------------------------------------------------------------ */

static void check_ntfsls(void)
{
	for (size_t i = 0; i < fx.n; i++) {
		char **want, **got, what[1100];
		size_t nw, ng;

		if (!fx.m[i].dir || (fx.m[i].mft < 16 && strcmp(fx.m[i].path, "/")))
			continue;       /* $Extend's files: fls_base has them */
		want = model_children(fx.m[i].path, true, &nw);
		if (oracle_ls(fx.tv.scratch, fx.m[i].path, &got, &ng))
			fail_msg("ntfsls %s failed: %s", fx.m[i].path, oracle_last_stderr());
		oracle_drop_dots(got, &ng);
		qsort(got, ng, sizeof(*got), cmp_str);
		snprintf(what, sizeof(what), "ntfsls %s", fx.m[i].path);
		expect_same(what, want, nw, got, ng);
		oracle_free_names(got, ng);
		free(want);
	}
}

/* `fls -r -p -u`: "TYPE INODE-TYPE-ID:\tPATH" a line. */
static void check_fls(void)
{
	const char *argv[] = { "fls", "-r", "-p", "-u", fx.tv.scratch, NULL };
	char *out = NULL, *save = NULL, **got, **want;
	size_t len = 0, ng = 0, nw = 0;
	int status = -1;

	if (oracle_run(argv, &out, &len, &status) || status)
		fail_msg("fls failed (exit %d): %s", status, oracle_last_stderr());
	got = malloc((len / 4 + 1) * sizeof(*got));
	want = malloc((fx.n + fx.nfls_base + 1) * sizeof(*want));
	assert_non_null(got);
	assert_non_null(want);
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t'), *meta = strchr(line, ' ');
		ssize_t k;
		char abs[1100];

		if (!tab || !meta)
			fail_msg("fls: cannot parse \"%s\"", line);
		*tab = '\0';
		got[ng++] = tab + 1;
		snprintf(abs, sizeof(abs), "/%s", tab + 1);
		k = model_find(abs);
		if (k >= 0 && fx.m[k].mft != NO_MFT &&
		    strtoull(meta + 1, NULL, 10) != fx.m[k].mft)
			fail_msg("fls: %s is MFT record %s, the layer made it %llu", abs, meta + 1,
				 (unsigned long long)fx.m[k].mft);
	}
	/* system files: as fls listed them on the pristine image */
	for (size_t i = 0; i < fx.n; i++)
		if (fx.m[i].mft >= FILE_first_user)
			want[nw++] = fx.m[i].path + 1;
	for (size_t i = 0; i < fx.nfls_base; i++)
		want[nw++] = fx.fls_base[i];
	qsort(got, ng, sizeof(*got), cmp_str);
	qsort(want, nw, sizeof(*want), cmp_str);
	expect_same("fls -r", want, nw, got, ng);
	free(got);
	free(want);
	free(out);
}

static void check_contents(void)
{
	size_t files = 0;

	for (size_t i = 0; i < fx.n; i++)
		files += !fx.m[i].dir && fx.m[i].mft >= 24 && fx.m[i].mft != NO_MFT;
	for (unsigned s = 0; s < SAMPLE && files; s++) {
		size_t pick = (size_t)(rng() % files), i;
		char *data = NULL, ino[32];
		size_t len = 0;
		int status = -1;

		for (i = 0;; i++)
			if (!fx.m[i].dir && fx.m[i].mft >= 24 && fx.m[i].mft != NO_MFT && !pick--)
				break;
		testvol_cat(fx.tv.scratch, fx.m[i].path, &data, &len);
		if (len)
			fail_msg("ntfscat %s: %zu bytes, expected an empty file", fx.m[i].path, len);
		free(data);
		data = NULL;
		snprintf(ino, sizeof(ino), "%llu", (unsigned long long)fx.m[i].mft);
		{
			const char *argv[] = { "icat", fx.tv.scratch, ino, NULL };

			if (oracle_run(argv, &data, &len, &status) || status)
				fail_msg("icat %s (%s) failed: %s", ino, fx.m[i].path,
					 oracle_last_stderr());
		}
		if (len)
			fail_msg("icat %s (%s): %zu bytes, expected an empty file", ino, fx.m[i].path,
				 len);
		free(data);
	}
}

/* readdir of every directory through the mount, then a few files created
 * and deleted there by ntfs-3g. */
static void check_mount(void)
{
	char mp[1400];
	const char *where = NULL;

	if (testvol_mount(&fx.tv, fx.tv.scratch, "no_detach")) {
		testvol_print_log_tail(&fx.tv);
		fail_msg("ntfs-3g could not mount the image");
	}
	for (size_t i = 0; i < fx.n; i++) {
		char **want, **got, what[1100];
		size_t nw, ng = 0;
		DIR *d;
		struct dirent *de;

		if (!fx.m[i].dir)
			continue;
		if (fx.m[i].mft < 16 && strcmp(fx.m[i].path, "/"))
			continue;       /* $Extend: hidden by ntfs-3g */
		if (fx.m[i].mft >= 24 && (!where || !strcmp(where, "/filled")))
			where = fx.m[i].path;
		snprintf(mp, sizeof(mp), "%s%s", fx.tv.mnt, fx.m[i].path);
		want = model_children(fx.m[i].path, false, &nw);
		got = malloc((nw + 64) * sizeof(*got));
		assert_non_null(got);
		d = opendir(mp);
		if (!d)
			fail_msg("opendir %s through ntfs-3g: %s", fx.m[i].path, strerror(errno));
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (ng == nw + 64)
				break;
			got[ng++] = strdup(de->d_name);
		}
		closedir(d);
		qsort(got, ng, sizeof(*got), cmp_str);
		snprintf(what, sizeof(what), "readdir %s through ntfs-3g", fx.m[i].path);
		expect_same(what, want, nw, got, ng);
		for (size_t k = 0; k < ng; k++)
			free(got[k]);
		free(got);
		free(want);
	}
	/* ntfs-3g writes into what the layer made */
	if (!where)
		where = "/";
	fx.mount_round++;
	for (int k = 0; k < 3; k++) {
		char path[1100];
		int fd;

		snprintf(path, sizeof(path), "%s/by-ntfs-3g-%u-%d", strcmp(where, "/") ? where : "",
			 fx.mount_round, k);
		snprintf(mp, sizeof(mp), "%s%s", fx.tv.mnt, path);
		fd = open(mp, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0 || close(fd) < 0)
			fail_msg("creating %s through ntfs-3g: %s", path, strerror(errno));
		model_add(path, false, NO_MFT);
	}
	for (int k = 0, done = 0; k < (int)fx.n * 4 && done < 2; k++) {
		size_t i = (size_t)(rng() % fx.n);
		char pbuf[1024];

		if (fx.m[i].dir || fx.m[i].mft < 24 ||
		    strcmp(parent_of(fx.m[i].path, pbuf, sizeof(pbuf)), where))
			continue;
		snprintf(mp, sizeof(mp), "%s%s", fx.tv.mnt, fx.m[i].path);
		if (unlink(mp))
			fail_msg("unlink %s through ntfs-3g: %s", fx.m[i].path, strerror(errno));
		model_del(fx.m[i].path);
		done++;
	}
	if (testvol_unmount(&fx.tv)) {
		testvol_print_log_tail(&fx.tv);
		fail_msg("ntfs-3g: unmount failed");
	}
}

static void check_layer(void)
{
	vol_open();
	for (size_t i = 0; i < fx.n; i++) {
		uint64_t mref;
		int err = ntfs_path_lookup(fx.vol, fx.m[i].path, 0, &mref);

		if (err)
			fail_msg("the layer cannot find %s: %d (%s)", fx.m[i].path, err,
				 ntfs_last_error());
		if (fx.m[i].mft != NO_MFT && MREF(mref) != fx.m[i].mft)
			fail_msg("%s is MFT record %llu, expected %llu", fx.m[i].path,
				 (unsigned long long)MREF(mref), (unsigned long long)fx.m[i].mft);
		if (fx.m[i].mft == NO_MFT)
			fx.m[i].mft = MREF(mref);
		if (fx.m[i].dir && fx.m[i].mft != FILE_Extend) {
			struct ntfs_inode *d = open_dir(fx.m[i].path);
			struct ntfs_index_stats st;
			int e = ntfs_index_check(d, &st);

			ntfs_inode_close(d);
			if (e)
				fail_msg("index of %s: %s", fx.m[i].path, ntfs_last_error());
		}
	}
	for (size_t i = 0; i < fx.ngone; i++) {
		uint64_t mref;
		int err;

		if (model_find(fx.gone[i]) >= 0)
			continue;       /* made again since */
		err = ntfs_path_lookup(fx.vol, fx.gone[i], 0, &mref);
		if (err != -ENOENT)
			fail_msg("%s was removed but the layer finds it (%d)", fx.gone[i], err);
	}
}

/* Close the volume and judge it (see the header); reopens it. */
static void phase_check(const char *label)
{
	double t0 = now_s();

	vol_close();
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	check_ntfsls();
	check_fls();
	check_contents();
	check_mount();
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	check_layer();
	print_message("  phase \"%s\": %zu paths in the model; ntfsfix -n clean twice, ntfsls, "
		      "fls, icat, ntfscat, ntfs-3g readdir and the layer agree (%.1f s)\n", label,
		      fx.n, now_s() - t0);
}

/* ------------------------------------------------------------------ */
/* the tests                                                            */
/* ------------------------------------------------------------------ */

/* One file in the root: a small index that keeps fitting in its record. */
static void test_one_file(void **state)
{
	(void)state;
	vol_open();
	create_ok("/hello.txt", false);
	expect_create_err("/", "hello.txt", false, -EEXIST);
	phase_check("one file");
}

/* Shuffle v[0..n). */
static void shuffle(char **v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(rng() % i);
		char *t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* A name for file i of a big directory: lengths from 1 to about 70
 * units, some non-ASCII, in no particular order. */
static void big_name(char *buf, size_t len, const char *dir, unsigned i)
{
	static const char *const stems[] = { "file", "Résumé", "日本語", "data-log", "ÆØÅ",
					     "x", "Straße", "Ωmega" };
	unsigned pad = (i * 37) % 50;

	snprintf(buf, len, "%s/%s-%05u%.*s", dir, stems[i % 8], (i * 7919u) % 100000u, (int)pad,
		 "-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ");
}

/* 3000 files in a new directory: the root moves into $INDEX_ALLOCATION,
 * blocks split many times, the tree grows levels; then half of them go,
 * in random order, emptying and freeing blocks. */
static void test_big_directory(void **state)
{
	struct ntfs_inode *dir;
	char **paths;
	double t0;

	(void)state;
	vol_open();
	create_ok("/big", true);
	paths = malloc(BIG * sizeof(*paths));
	assert_non_null(paths);
	for (unsigned i = 0; i < BIG; i++) {
		char p[300];

		big_name(p, sizeof(p), "/big", i);
		paths[i] = strdup(p);
		assert_non_null(paths[i]);
	}
	shuffle(paths, BIG);
	dir = open_dir("/big");
	t0 = now_s();
	for (unsigned i = 0; i < BIG; i++) {
		int err = try_create(dir, paths[i], false);

		if (err)
			fail_msg("create %s (#%u): %d (%s)", paths[i], i, err, ntfs_last_error());
		if (i == 10 || i == 100 || i == 1000) {
			struct ntfs_index_stats st;

			EXPECT_OK(ntfs_index_check(dir, &st));
			print_message("  after %u files: index depth %u, %llu blocks\n", i + 1,
				      st.depth, (unsigned long long)st.blocks_used);
		}
	}
	ntfs_inode_close(dir);
	print_message("  %u files created in %.2f s\n", BIG, now_s() - t0);
	print_stats("created", "/big");
	phase_check("3000 files");

	/* half of the layer's files (and whatever the mount left), at random */
	dir = open_dir("/big");
	shuffle(paths, BIG);
	t0 = now_s();
	for (unsigned i = 0; i < BIG / 2; i++) {
		int err;

		if (model_find(paths[i]) < 0)
			continue;       /* ntfs-3g deleted it */
		err = try_unlink(dir, paths[i]);
		if (err)
			fail_msg("unlink %s (#%u): %d (%s)", paths[i], i, err, ntfs_last_error());
		if (i % 250 == 0)
			EXPECT_OK(ntfs_index_check(dir, NULL));
	}
	ntfs_inode_close(dir);
	print_message("  %u files removed in %.2f s\n", BIG / 2, now_s() - t0);
	print_stats("after removing half", "/big");
	/* every name starting "file-": a run in collation order, which
	 * empties whole leaves while the rest of the tree stays */
	{
		struct ntfs_index_stats before, after;
		unsigned n = 0;

		dir = open_dir("/big");
		EXPECT_OK(ntfs_index_check(dir, &before));
		for (size_t i = fx.n; i-- > 0;) {
			char pbuf[1024], *p;

			if (strcmp(parent_of(fx.m[i].path, pbuf, sizeof(pbuf)), "/big") ||
			    strncmp(base_of(fx.m[i].path), "file-", 5))
				continue;
			p = strdup(fx.m[i].path);
			EXPECT_OK(try_unlink(dir, p));
			free(p);
			n++;
		}
		EXPECT_OK(ntfs_index_check(dir, &after));
		ntfs_inode_close(dir);
		print_message("  removed the %u names starting \"file-\": blocks in use %llu -> "
			      "%llu\n", n, (unsigned long long)before.blocks_used,
			      (unsigned long long)after.blocks_used);
		if (after.blocks_used >= before.blocks_used)
			fail_msg("removing a run of %u names freed no index block", n);
	}
	phase_check("half removed");

	/* all the rest: the root becomes a leaf again; then the directory */
	dir = open_dir("/big");
	for (size_t i = fx.n; i-- > 0;) {
		char pbuf[1024];

		if (strcmp(parent_of(fx.m[i].path, pbuf, sizeof(pbuf)), "/big"))
			continue;
		{
			char *p = strdup(fx.m[i].path);
			int err = try_unlink(dir, p);

			if (err)
				fail_msg("unlink %s: %d (%s)", p, err, ntfs_last_error());
			free(p);
		}
		if (i % 300 == 0)
			EXPECT_OK(ntfs_index_check(dir, NULL));
	}
	ntfs_inode_close(dir);
	print_stats("emptied", "/big");
	assert_int_equal(ntfs_index_is_empty(dir = open_dir("/big")), 1);
	ntfs_inode_close(dir);
	unlink_ok("/big");
	phase_check("all removed, rmdir");
	for (unsigned i = 0; i < BIG; i++)
		free(paths[i]);
	free(paths);
}

/* A directory whose index ntfs-3g built: the layer adds to it, and takes
 * away names of both. */
static void test_existing_directory(void **state)
{
	struct ntfs_inode *dir;
	char p[300];
	unsigned removed = 0;

	(void)state;
	vol_open();
	print_stats("as ntfs-3g made it", "/filled");
	dir = open_dir("/filled");
	for (unsigned i = 0; i < 1000; i++) {
		int err;

		snprintf(p, sizeof(p), "/filled/layer-%04u-%s", (i * 613u) % 1000u,
			 i % 2 ? "résumé" : "NOTES");
		err = try_create(dir, p, false);
		if (err)
			fail_msg("create %s: %d (%s)", p, err, ntfs_last_error());
	}
	/* ntfs-3g's names in another case collide */
	{
		uint64_t no;
		int err = ntfs_create(fx.vol, dir, "FILLED-00007", false, &no);

		if (err != -EEXIST)
			fail_msg("create FILLED-00007 next to ntfs-3g's filled-00007: %d, expected "
				 "EEXIST", err);
	}
	ntfs_inode_close(dir);
	print_stats("with the layer's 1000", "/filled");
	phase_check("1000 added to ntfs-3g's directory");

	dir = open_dir("/filled");
	for (unsigned k = 0; k < 8 * 600 && removed < 600; k++) {
		size_t i = (size_t)(rng() % fx.n);
		char pbuf[1024], *path;
		int err;

		if (fx.m[i].dir || strcmp(parent_of(fx.m[i].path, pbuf, sizeof(pbuf)), "/filled"))
			continue;
		path = strdup(fx.m[i].path);
		err = try_unlink(dir, path);
		if (err)
			fail_msg("unlink %s: %d (%s)", path, err, ntfs_last_error());
		free(path);
		removed++;
	}
	ntfs_inode_close(dir);
	print_message("  removed %u names (ntfs-3g's and the layer's)\n", removed);
	print_stats("after removals", "/filled");
	phase_check("600 removed from ntfs-3g's directory");
}

/* "a" repeated: n UTF-8 copies of s. */
static char *repeat(const char *s, unsigned n)
{
	size_t l = strlen(s);
	char *r = malloc(l * n + 1);

	assert_non_null(r);
	for (unsigned i = 0; i < n; i++)
		memcpy(r + i * l, s, l);
	r[l * n] = '\0';
	return r;
}

static uint8_t name_space_of(const char *path)
{
	char pbuf[1024];
	struct ntfs_inode *dir = open_dir(parent_of(path, pbuf, sizeof(pbuf)));
	ntfschar *u;
	uint32_t ulen;
	uint8_t ns = 0xff;

	EXPECT_OK(ntfs_utf8_to_utf16(base_of(path), strlen(base_of(path)), &u, &ulen));
	EXPECT_OK(ntfs_index_lookup(dir, u, ulen, NTFS_INDEX_EXACT, NULL, &ns));
	free(u);
	ntfs_inode_close(dir);
	return ns;
}

/* Unicode, 255-unit names, case-insensitive collisions, forbidden names,
 * and the name space each name gets (namespace.h). */
static void test_names(void **state)
{
	static const char *const unicode[] = {
		"café", "日本語のファイル", "Ελληνικά", "😀 smile", "ß", "ǅ-titlecase", "Ä-upper",
	};
	static const char *const forbidden[] = {
		"", "a/b", "a:b", "a*b", "a?b", "a<b", "a>b", "a|b", "a\\b", "a\"b", "tab\there",
		"\x01", "\x1f", ".", "..",
	};
	static const char *const posix_only[] = { "trailing.", "trailing ", "CON", "nul.txt",
						  "Com1", "LPT9.LOG", "lower.txt", "LONGFILENAME.TXT",
						  "A.B.C", "SPACE X" };
	static const char *const dos_names[] = { "README.TXT", "A", "FILE_01.C", "{X}~1.$$$" };
	char path[2048];
	char *long_a = repeat("a", 255), *long_e = repeat("é", 255), *too_long = repeat("b", 256);
	char *long_dir = repeat("D", 255), *long_emoji = repeat("😀", 127);

	(void)state;
	vol_open();
	create_ok("/names", true);
	for (size_t i = 0; i < sizeof(unicode) / sizeof(unicode[0]); i++) {
		snprintf(path, sizeof(path), "/names/%s", unicode[i]);
		create_ok(path, false);
		assert_int_equal(name_space_of(path), FILE_NAME_POSIX);
	}
	/* valid DOS names are their own short name: Win32 & DOS */
	for (size_t i = 0; i < sizeof(dos_names) / sizeof(dos_names[0]); i++) {
		snprintf(path, sizeof(path), "/names/%s", dos_names[i]);
		create_ok(path, false);
		assert_int_equal(name_space_of(path), FILE_NAME_WIN32_AND_DOS);
	}
	/* 255 units: ASCII, two-byte UTF-8, and surrogate pairs (254 units) */
	snprintf(path, sizeof(path), "/names/%s", long_a);
	create_ok(path, false);
	snprintf(path, sizeof(path), "/names/%s", long_e);
	create_ok(path, false);
	snprintf(path, sizeof(path), "/names/%s", long_emoji);
	create_ok(path, false);
	expect_create_err("/names", too_long, false, -ENAMETOOLONG);
	{
		char *s = repeat("😀", 128);   /* 256 units */

		expect_create_err("/names", s, false, -ENAMETOOLONG);
		free(s);
	}
	/* collisions ignoring case, through $UpCase */
	expect_create_err("/names", "CAFÉ", false, -EEXIST);
	expect_create_err("/names", "ä-UPPER", true, -EEXIST);
	expect_create_err("/names", "ελληνικά", false, -EEXIST);
	expect_create_err("/names", "café", false, -EEXIST);
	{
		char *up = repeat("A", 255);

		expect_create_err("/names", up, false, -EEXIST);
		free(up);
	}
	/* forbidden names, and bad UTF-8 */
	for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
		expect_create_err("/names", forbidden[i], false, -EINVAL);
	expect_create_err("/names", "bad-\xc3\x28", false, -EILSEQ);
	/* what Win32 cannot name goes in the POSIX name space */
	for (size_t i = 0; i < sizeof(posix_only) / sizeof(posix_only[0]); i++) {
		snprintf(path, sizeof(path), "/names/%s", posix_only[i]);
		create_ok(path, false);
		assert_int_equal(name_space_of(path), FILE_NAME_POSIX);
	}
	/* a directory with a 255-unit name still grows an index allocation */
	snprintf(path, sizeof(path), "/names/%s", long_dir);
	create_ok(path, true);
	for (unsigned i = 0; i < 200; i++) {
		char f[2400];

		/* 240 two-byte units and "-NNN": 244 units */
		snprintf(f, sizeof(f), "/names/%s/%.*s-%03u", long_dir, i % 2 ? 480 : 5,
			 i % 2 ? long_e : "short", i);
		create_ok(f, false);
	}
	snprintf(path, sizeof(path), "/names/%s", long_dir);
	print_stats("255-unit directory", path);
	/* unlink refusals */
	expect_unlink_err("/$MFT", -EPERM);
	expect_unlink_err("/names/not-there", -ENOENT);
	expect_unlink_err("/names/CAFÉ", -ENOENT);  /* unlink is exact */
	expect_create_err("/names", "readme.txt", false, -EEXIST);
	phase_check("names");
	/* (unless the ntfs-3g mount of the phase check deleted them) */
	if (model_find("/names/café") >= 0)
		unlink_ok("/names/café");
	snprintf(path, sizeof(path), "/names/%s", long_e);
	if (model_find(path) >= 0)
		unlink_ok(path);
	create_ok("/names/CAFÉ", false);             /* the name is free again */
	phase_check("names removed and made again");
	free(long_a);
	free(long_e);
	free(too_long);
	free(long_dir);
	free(long_emoji);
}

/* Nested directories; rmdir refused while not empty, then bottom up. */
static void test_nested(void **state)
{
	static const char *const dirs[] = { "/a", "/a/b", "/a/b/c", "/a/b/c/d", "/a/b2" };
	char path[300];

	(void)state;
	vol_open();
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		create_ok(dirs[i], true);
		for (int k = 0; k < 40; k++) {
			snprintf(path, sizeof(path), "%s/f%02d", dirs[i], k);
			create_ok(path, false);
		}
	}
	expect_unlink_err("/a", -ENOTEMPTY);
	expect_unlink_err("/a/b/c/d", -ENOTEMPTY);
	expect_create_err("/a/b", "C", true, -EEXIST);
	phase_check("nested");
	/* empty d, then rmdir up the tree; b2 stays with its files */
	for (size_t i = 4; i-- > 1;) {
		for (int k = 0; k < 40; k++) {
			snprintf(path, sizeof(path), "%s/f%02d", dirs[i], k);
			if (model_find(path) >= 0)
				unlink_ok(path);
		}
		/* what ntfs-3g made there through the mount */
		for (size_t j = fx.n; j-- > 0;) {
			char pbuf[1024], *p;

			if (strcmp(parent_of(fx.m[j].path, pbuf, sizeof(pbuf)), dirs[i]) ||
			    fx.m[j].dir)
				continue;
			p = strdup(fx.m[j].path);
			unlink_ok(p);
			free(p);
		}
		if (i > 1)
			expect_unlink_err(dirs[i - 1], -ENOTEMPTY);
		unlink_ok(dirs[i]);
	}
	expect_unlink_err("/a/b", -ENOENT);
	expect_unlink_err("/a", -ENOTEMPTY);
	phase_check("nested, removed bottom up");
}

/* ------------------------------------------------------------------ */
/* setup                                                                */
/* ------------------------------------------------------------------ */

static void cleanup_all(void)
{
	if (fx.vol)
		vol_close();
	testvol_destroy(&fx.tv);
}

static int group_setup(void **state)
{
	static const char *const need[] = { "mkntfs", "ntfsls", "ntfscat", "ntfsfix", "fls",
					    "icat", NULL };
	char **names = NULL;
	size_t count = 0;
	const char *seed = getenv("NTFSD_TEST_SEED");

	(void)state;
	if (seed && strtoull(seed, NULL, 0))
		rng_state = strtoull(seed, NULL, 0);
	print_message("seed 0x%llx (NTFSD_TEST_SEED)\n", (unsigned long long)rng_state);
	if (testvol_create(&fx.tv, "namespace", need))
		return -1;
	if (testvol_mkntfs(&fx.tv, IMAGE_SIZE, CLUSTER))
		SETUP_FAIL("mkntfs failed");
	/* /filled, by ntfs-3g */
	if (testvol_mount(&fx.tv, fx.tv.img, "no_detach"))
		SETUP_FAIL("ntfs-3g cannot mount the new image");
	{
		char p[700];

		snprintf(p, sizeof(p), "%s/filled", fx.tv.mnt);
		if (mkdir(p, 0755))
			SETUP_FAIL("mkdir %s: %s", p, strerror(errno));
		for (int i = 0; i < FILLED; i++) {
			int fd;

			snprintf(p, sizeof(p), "%s/filled/filled-%05d", fx.tv.mnt, i);
			fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0 || close(fd) < 0)
				SETUP_FAIL("creating %s: %s", p, strerror(errno));
		}
	}
	if (testvol_unmount(&fx.tv))
		SETUP_FAIL("ntfs-3g: unmount failed");
	/* the model of the pristine image: the root's and /filled's names */
	{
		struct ntfs_volume *vol;
		const char *dirs[] = { "/", "/filled" };

		if (ntfs_volume_open(fx.tv.img, NTFS_OPEN_READ_ONLY, &vol))
			SETUP_FAIL("the layer cannot open the image: %s", ntfs_last_error());
		fx.base = calloc(FILLED + 64, sizeof(*fx.base));
		if (!fx.base)
			SETUP_FAIL("out of memory");
		fx.base[fx.nbase++] = (struct ent){ .path = strdup("/"), .dir = true, .mft = 5 };
		for (int d = 0; d < 2; d++) {
			if (oracle_ls(fx.tv.img, dirs[d], &names, &count))
				SETUP_FAIL("ntfsls %s: %s", dirs[d], oracle_last_stderr());
			oracle_drop_dots(names, &count);
			for (size_t i = 0; i < count && fx.nbase < FILLED + 64; i++) {
				char p[700];
				uint64_t mref;
				struct ntfs_inode *ni;

				snprintf(p, sizeof(p), "%s/%s", d ? dirs[d] : "", names[i]);
				if (ntfs_path_lookup(vol, p, 0, &mref) ||
				    ntfs_inode_open(vol, MREF(mref), &ni))
					SETUP_FAIL("the layer cannot find %s: %s", p, ntfs_last_error());
				fx.base[fx.nbase++] = (struct ent){ .path = strdup(p),
								    .dir = ntfs_inode_is_dir(ni),
								    .mft = MREF(mref) };
				ntfs_inode_close(ni);
			}
			oracle_free_names(names, count);
			names = NULL;
		}
		ntfs_volume_close(vol);
		if (fx.nbase != 1 + 17 + FILLED)   /* 16 system files + "filled" */
			print_message("note: the pristine model has %zu paths\n", fx.nbase);
	}
	/* what fls lists of the system files (with their streams, $Extend's
	 * files) and $OrphanFiles */
	{
		const char *argv[] = { "fls", "-r", "-p", "-u", fx.tv.img, NULL };
		char *out = NULL, *save = NULL;
		size_t len = 0;
		int status = -1;

		if (oracle_run(argv, &out, &len, &status) || status)
			SETUP_FAIL("fls on the pristine image: %s", oracle_last_stderr());
		fx.fls_base = calloc(len / 4 + 1, sizeof(*fx.fls_base));
		for (char *line = strtok_r(out, "\n", &save); line && fx.fls_base;
		     line = strtok_r(NULL, "\n", &save)) {
			char *tab = strchr(line, '\t'), abs[1100];
			bool known = false;

			if (!tab)
				continue;
			snprintf(abs, sizeof(abs), "/%s", tab + 1);
			for (size_t i = 0; i < fx.nbase && !known; i++)
				known = fx.base[i].mft >= FILE_first_user &&
					!strcmp(fx.base[i].path, abs);
			if (!known)
				fx.fls_base[fx.nfls_base++] = strdup(tab + 1);
		}
		free(out);
	}
	testvol_expect_ntfsfix_clean(fx.tv.img);
	return 0;
fail:
	testvol_print_log_tail(&fx.tv);
	cleanup_all();
	return -1;
}

static int group_teardown(void **state)
{
	(void)state;
	cleanup_all();
	model_reset();
	for (size_t i = 0; i < fx.n; i++)
		free(fx.m[i].path);
	free(fx.m);
	free(fx.gone);
	for (size_t i = 0; i < fx.nbase; i++)
		free(fx.base[i].path);
	free(fx.base);
	for (size_t i = 0; i < fx.nfls_base; i++)
		free(fx.fls_base[i]);
	free(fx.fls_base);
	return 0;
}

static int scratch_setup(void **state)
{
	(void)state;
	model_reset();
	fx.mount_round = 0;
	return testvol_scratch_setup(&fx.tv, test_timeout);
}

static int scratch_teardown(void **state)
{
	(void)state;
	if (fx.vol)
		vol_close();
	testvol_scratch_teardown(&fx.tv);
	return 0;
}

int main(void)
{
	const char *v = getenv("NTFSD_TEST_TIMEOUT");

	if (v && atoi(v) > 0)
		test_timeout = (unsigned)atoi(v);
	testvol_catch_timeout(&fx.tv, "test_namespace: a test did not finish in time\n");
	testvol_catch_abort(&fx.tv);
#define T(fn) cmocka_unit_test_setup_teardown(fn, scratch_setup, scratch_teardown)
	const struct CMUnitTest tests[] = {
		T(test_one_file),
		T(test_names),
		T(test_nested),
		T(test_existing_directory),
		T(test_big_directory),
	};
#undef T
	alarm(600);  /* the group setup too */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
