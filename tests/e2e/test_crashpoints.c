/*
 * test_crashpoints — every multi-step operation of the daemon killed in
 * its middle, at each of its named crash points (daemon/crashpoint.h), and
 * the volume consistent and usable afterwards.
 *
 * One test per (crash point, path that reaches it, mode).  Each works on a
 * fresh copy of the vol4k.img fixture whose free space holds 0xEE
 * (crashrig.h), with a daemon started with NTFSD_CRASHPOINT=NAME[:N] and
 * write-back held off (long expiry, high thresholds), in one of two modes:
 * with the segment keeper, or with --fd-store none (a power cut).  In the
 * file the case is about, a client (libntfsc, in this process) first
 * writes and fsyncs some bytes, then writes some more and leaves them
 * dirty, then does the operation the point is in.  Then:
 *
 *  1. the daemon must have died of SIGKILL at that point: the operation
 *     fails with a lost connection, the daemon is gone, its log has the
 *     point's "crash point NAME reached" line.  A point that is renamed,
 *     moved or no longer reached by that path fails the test;
 *  2. a daemon without the point starts (adopting the keeper's segments:
 *     it must say so), `ntfsctl sync` must exit 0 and SIGTERM a clean
 *     exit 0, and its log must hold no error-level line;
 *  3. every file of the set is read with ntfscat and held to its crash
 *     model (crashmodel.h): with the keeper everything that returned is
 *     there and the interrupted operation is before or after; without it
 *     the synced bytes are there and every other byte is old, new or zero,
 *     never 0xEE; the size is one the file had.  ntfsinfo's sizes must be
 *     a valid triple (initialized <= data <= allocated, data = what ntfscat
 *     read), every cluster the file's runlist maps must be in use in
 *     $Bitmap, and `ntfsfix -n` must be clean;
 *  4. the file is not wedged: another daemon writes into its middle,
 *     appends, fsyncs, truncates it down a little and fsyncs again (every
 *     call must succeed, and so the clean stop, with no error in the log),
 *     and step 3's checks hold again, exactly.
 *
 * The points and their paths: truncate-before-record (a shrink, a grow, a
 * resident shrink); truncate-before-free and truncate-after-free (a
 * shrink, a grow, a compressed file's shrink, and the room to spare an
 * append allocated given back after the last close, by a volume sync and
 * by the clean stop on SIGTERM); alloc-before-record and
 * alloc-after-record (filling a hole, growing past the allocation,
 * growing a file that has just moved out of its record);
 * unit-before-record and unit-after-record (a write into a compressed
 * unit, a truncate cutting one, an append that needs a unit past the
 * allocation); resident-before-record and resident-after-record (a
 * write, a truncate up, a write into a resident file flagged compressed);
 * wb-before-sizes (an append, a write past initialized_size, each then
 * fsynced).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crashmodel.h"
#include "crashrig.h"
#include "ntfsc.h"
#include "oracle.h"
#include "pattern.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define BIG_SIZE 3146962ull     /* /big.bin in vol4k.img: 3 MiB + 1234 */

/* The files every test checks; the cases work on one of them. */
static const struct rig_file fileset[] = {
	{ "/small.txt", 1 * MiB },       /* 300 B, resident */
	{ "/comp/tiny.txt", 1 * MiB },   /* 36 B, resident, flagged compressed */
	{ "/big.bin", 8 * MiB },         /* 3 MiB + 1234, allocated to the cluster */
	{ "/sparse.bin", 17 * MiB },     /* 16 MiB: 10000 B, hole, 20000 B at 8 MiB, hole */
	{ "/comp/text.txt", 2 * MiB },   /* 300000 B compressed, 64 KiB units */
	{ "/prealloc.bin", 2 * MiB },    /* 1 MiB, initialized 10000 B */
};
#define NF ((int)(sizeof(fileset) / sizeof(fileset[0])))

enum crash_op {
	OP_WRITE,       /* pwrite [io): the point is inside it */
	OP_TRUNCATE,    /* ntfsc_ftruncate to size: inside it */
	OP_WRITE_FSYNC, /* pwrite [io) returns; the point is inside the fsync after it */
	OP_CLOSE_SYNC,  /* pwrite [io) returns, the handle is closed with the data
			 * dirty; the point is inside the volume sync that writes it and
			 * then gives back the room the write allocated to grow into */
	OP_CLOSE_STOP,  /* pwrite [io) and an fsync return, the handle is closed; the
			 * point is inside the daemon's clean stop (SIGTERM), which gives
			 * that room back */
};

struct range {
	uint64_t off, len;
};

struct crash_case {
	const char *point;      /* NTFSD_CRASHPOINT: NAME[:N] */
	const char *how;        /* the path to the point */
	const char *path;
	struct range synced;    /* written and fsynced first (len 0: none) */
	struct range dirty[2];  /* then written and left dirty */
	enum crash_op op;
	struct range io;        /* OP_WRITE, OP_WRITE_FSYNC, OP_CLOSE_SYNC */
	uint64_t size;          /* OP_TRUNCATE */
};

/* big.bin: bytes synced, bytes dirty below and past the shrink's new end */
#define BIG_PREP { 100000, 50000 }, { { 500000, 9000 }, { 2000000, 70000 } }
#define BIG_SHRINK (1 * MiB + 777)
#define BIG_GROW (6 * MiB + 99)
/* an append past the allocation (it gets room to spare) */
#define BIG_APPEND { BIG_SIZE - 500, 200000 }
#define SMALL_PREP { 10, 50 }, { { 200, 60 } }
#define TINY_PREP { 0, 10 }, { { 20, 10 } }
/* sparse.bin: in its allocated runs at 0 and 8 MiB */
#define SPARSE_PREP { 1000, 3000 }, { { 8 * MiB + 5000, 4000 } }
/* text.txt: both in unit 0, whose rewrite is the point's first hit; the
 * case's own rewrite (unit 2, or unit 3 cut by the truncate) is the second */
#define TEXT_PREP { 1000, 3000 }, { { 20000, 5000 } }
#define PREALLOC_PREP { 100, 2000 }, { { 5000, 1000 } }

static const struct crash_case cases[] = {
	{ "truncate-before-record", "shrink", "/big.bin", BIG_PREP, OP_TRUNCATE, { 0 }, BIG_SHRINK },
	{ "truncate-before-record", "grow", "/big.bin", BIG_PREP, OP_TRUNCATE, { 0 }, BIG_GROW },
	{ "truncate-before-record", "resident shrink", "/small.txt", SMALL_PREP, OP_TRUNCATE, { 0 },
	  100 },
	{ "truncate-before-free", "shrink", "/big.bin", BIG_PREP, OP_TRUNCATE, { 0 }, BIG_SHRINK },
	{ "truncate-before-free", "grow", "/big.bin", BIG_PREP, OP_TRUNCATE, { 0 }, BIG_GROW },
	/* nothing to free; the bytes it cuts are synced, in the cache, clean */
	{ "truncate-before-free", "shrink within the last cluster", "/big.bin",
	  { BIG_SIZE - 3000, 3000 }, { { 500000, 9000 } }, OP_TRUNCATE, { 0 }, BIG_SIZE - 100 },
	{ "truncate-before-free", "room to grow given back at a sync", "/big.bin", BIG_PREP,
	  OP_CLOSE_SYNC, BIG_APPEND, 0 },
	{ "truncate-before-free", "room to grow given back at the stop", "/big.bin", BIG_PREP,
	  OP_CLOSE_STOP, BIG_APPEND, 0 },
	{ "truncate-before-free", "compressed shrink", "/comp/text.txt", TEXT_PREP, OP_TRUNCATE,
	  { 0 }, 200123 },
	{ "truncate-after-free", "shrink", "/big.bin", BIG_PREP, OP_TRUNCATE, { 0 }, BIG_SHRINK },
	{ "truncate-after-free", "compressed shrink", "/comp/text.txt", TEXT_PREP, OP_TRUNCATE,
	  { 0 }, 200123 },
	{ "truncate-after-free", "grow", "/big.bin", BIG_PREP, OP_TRUNCATE, { 0 }, BIG_GROW },
	{ "truncate-after-free", "room to grow given back at a sync", "/big.bin", BIG_PREP,
	  OP_CLOSE_SYNC, BIG_APPEND, 0 },
	{ "truncate-after-free", "room to grow given back at the stop", "/big.bin", BIG_PREP,
	  OP_CLOSE_STOP, BIG_APPEND, 0 },
	{ "alloc-before-record", "hole", "/sparse.bin", SPARSE_PREP, OP_WRITE,
	  { 4 * MiB + 100, 20000 }, 0 },
	{ "alloc-before-record", "growth", "/big.bin", BIG_PREP, OP_WRITE, BIG_APPEND, 0 },
	{ "alloc-after-record", "hole", "/sparse.bin", SPARSE_PREP, OP_WRITE,
	  { 4 * MiB + 100, 20000 }, 0 },
	{ "alloc-after-record", "growth", "/big.bin", BIG_PREP, OP_WRITE, BIG_APPEND, 0 },
	{ "alloc-before-record", "growth of a file just moved out of its record", "/small.txt",
	  SMALL_PREP, OP_WRITE, { 250, 6000 }, 0 },
	{ "alloc-after-record", "growth of a file just moved out of its record", "/small.txt",
	  SMALL_PREP, OP_WRITE, { 250, 6000 }, 0 },
	{ "unit-before-record:2", "write into a unit", "/comp/text.txt", TEXT_PREP, OP_WRITE,
	  { 140000, 3000 }, 0 },
	{ "unit-before-record:2", "truncate cutting a unit", "/comp/text.txt", TEXT_PREP,
	  OP_TRUNCATE, { 0 }, 200123 },
	{ "unit-after-record:2", "write into a unit", "/comp/text.txt", TEXT_PREP, OP_WRITE,
	  { 140000, 3000 }, 0 },
	{ "unit-after-record:2", "truncate cutting a unit", "/comp/text.txt", TEXT_PREP,
	  OP_TRUNCATE, { 0 }, 200123 },
	/* the append rewrites unit 4 (hit 2), then unit 5, past the allocation */
	{ "unit-before-record:3", "append past the allocation", "/comp/text.txt", TEXT_PREP,
	  OP_WRITE, { 300000 - 100, 70000 }, 0 },
	{ "unit-after-record:3", "append past the allocation", "/comp/text.txt", TEXT_PREP,
	  OP_WRITE, { 300000 - 100, 70000 }, 0 },
	{ "resident-before-record", "write", "/small.txt", SMALL_PREP, OP_WRITE, { 250, 6000 }, 0 },
	{ "resident-before-record", "truncate up", "/small.txt", SMALL_PREP, OP_TRUNCATE, { 0 },
	  9000 },
	{ "resident-before-record", "compressed write", "/comp/tiny.txt", TINY_PREP, OP_WRITE,
	  { 30, 5000 }, 0 },
	{ "resident-after-record", "write", "/small.txt", SMALL_PREP, OP_WRITE, { 250, 6000 }, 0 },
	{ "resident-after-record", "truncate up", "/small.txt", SMALL_PREP, OP_TRUNCATE, { 0 },
	  9000 },
	{ "resident-after-record", "compressed write", "/comp/tiny.txt", TINY_PREP, OP_WRITE,
	  { 30, 5000 }, 0 },
	{ "wb-before-sizes", "append", "/big.bin", BIG_PREP, OP_WRITE_FSYNC, BIG_APPEND, 0 },
	{ "wb-before-sizes", "past initialized_size", "/prealloc.bin", PREALLOC_PREP,
	  OP_WRITE_FSYNC, { 500000, 10000 }, 0 },
};
#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* Write-back only when asked: the dirty bytes are dirty at the crash, and
 * nothing in the background reaches a point first. */
static const char *const daemon_opts[] = { "--dirty-expire-ms", "600000", "--dirty-background",
					   "32M", "--flushers", "1", "--cache-size", "64M", NULL };

struct test_state {
	const struct crash_case *k;
	int index;
	bool keeper;
};

static struct crashrig rig;
static struct cm_file files[NF];
static ntfsc *conn;
static uint8_t *buf;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int file_index(const char *path)
{
	for (int f = 0; f < NF; f++)
		if (!strcmp(fileset[f].path, path))
			return f;
	fail_msg("%s is not in the file set", path);
	return -1;
}

static void load_models(void)
{
	rig_load_models(&rig, fileset, files, NF);
}

static void free_models(void)
{
	rig_free_models(files, NF);
}

static void fail_logs(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Fail the test with the daemons' logs on stderr. */
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
	abort();        /* not reached */
}

/* ---- the client ---- */

/* The daemon's message for the last failed call, or "". */
static const char *daemon_says(void)
{
	const char *m = ntfsc_last_error_message(conn);

	return m ? m : "";
}

static ntfsc_file *open_file(const char *path, const char *ctx)
{
	ntfsc_file *h;

	conn = ntfsc_connect(rig.dmn.socket);
	if (!conn)
		fail_logs("%s: connect: %s", ctx, strerror(errno));
	h = ntfsc_open(conn, path, O_RDWR);
	if (!h)
		fail_logs("%s: open %s: %s (%s)", ctx, path, strerror(errno),
			  daemon_says());
	return h;
}

static void disconnect(void)
{
	ntfsc_disconnect(conn);
	conn = NULL;
}

static ssize_t write_pattern(ntfsc_file *h, struct range r, uint64_t seed)
{
	pattern_fill(buf, (size_t)r.len, seed, r.off);
	return ntfsc_pwrite(h, buf, (size_t)r.len, (off_t)r.off);
}

/* A write that must succeed; recorded in the model as returned. */
static void must_write(ntfsc_file *h, struct cm_file *m, uint32_t *id, const char *what,
		       struct range r, const char *ctx)
{
	uint64_t seed = mix_seed(0x5eed, (uint64_t)(*id)++ * 7919 + r.off);

	if (r.off + r.len > m->cap)
		fail_msg("%s: %s [%" PRIu64 ", +%" PRIu64 ") passes the cap of %s", ctx, what,
			 r.off, r.len, m->path);
	if (write_pattern(h, r, seed) != (ssize_t)r.len)
		fail_logs("%s: %s [%" PRIu64 ", +%" PRIu64 ") of %s failed: %s (%s)", ctx, what,
			  r.off, r.len, m->path, strerror(errno), daemon_says());
	cm_write(m, *id, what, r.off, r.len, seed, true);
}

static void must_fsync(ntfsc_file *h, struct cm_file *m, const char *ctx)
{
	if (ntfsc_fsync(h))
		fail_logs("%s: fsync of %s failed: %s (%s)", ctx, m->path, strerror(errno),
			  daemon_says());
	cm_synced(m);
}

static void must_truncate(ntfsc_file *h, struct cm_file *m, uint32_t *id, uint64_t size,
			  const char *ctx)
{
	if (ntfsc_ftruncate(h, (off_t)size))
		fail_logs("%s: ftruncate of %s to %" PRIu64 " failed: %s (%s)", ctx, m->path, size,
			  strerror(errno), daemon_says());
	cm_truncate(m, (*id)++, size, true);
}

/* The call the crash point is in must have failed because the daemon
 * died under it. */
static void expect_lost(int failed, int err, const char *call, const struct crash_case *k,
			const char *ctx)
{
	if (!failed)
		fail_logs("%s: %s returned success: the crash point %s was not reached on this "
			  "path", ctx, call, k->point);
	if (err != ECONNRESET && err != EPIPE && err != ENOTCONN)
		fail_logs("%s: %s failed with %s (%s), not by the daemon's death at %s", ctx, call,
			  strerror(err), daemon_says(), k->point);
}

/* Prepare the case's file, then do the operation the point is in. */
static void crash_in_operation(const struct crash_case *k, struct cm_file *m, const char *ctx)
{
	ntfsc_file *h = open_file(k->path, ctx);
	uint32_t id = 0;
	uint64_t seed;
	int failed, err;

	if (k->synced.len) {
		must_write(h, m, &id, "synced write", k->synced, ctx);
		must_fsync(h, m, ctx);
	}
	for (int i = 0; i < 2; i++)
		if (k->dirty[i].len)
			must_write(h, m, &id, "dirty write", k->dirty[i], ctx);
	switch (k->op) {
	case OP_WRITE:
		seed = mix_seed(0xc4a54, k->io.off);
		failed = write_pattern(h, k->io, seed) != (ssize_t)k->io.len;
		err = errno;
		cm_write(m, id, "pwrite (in flight)", k->io.off, k->io.len, seed, false);
		expect_lost(failed, err, "the pwrite", k, ctx);
		break;
	case OP_TRUNCATE:
		failed = ntfsc_ftruncate(h, (off_t)k->size) != 0;
		err = errno;
		cm_truncate(m, id, k->size, false);
		expect_lost(failed, err, "the ftruncate", k, ctx);
		break;
	case OP_WRITE_FSYNC:
		must_write(h, m, &id, "write to sync", k->io, ctx);
		failed = ntfsc_fsync(h) != 0;
		expect_lost(failed, errno, "the fsync", k, ctx);
		break;
	case OP_CLOSE_SYNC:
		must_write(h, m, &id, "append", k->io, ctx);
		if (ntfsc_close(h))
			fail_logs("%s: close: %s", ctx, strerror(errno));
		failed = ntfsc_sync(conn) != 0;
		expect_lost(failed, errno, "the volume sync", k, ctx);
		break;
	case OP_CLOSE_STOP:
		must_write(h, m, &id, "append", k->io, ctx);
		must_fsync(h, m, ctx);
		if (ntfsc_close(h))
			fail_logs("%s: close: %s", ctx, strerror(errno));
		disconnect();
		/* rig_expect_killed() then requires death by SIGKILL, not exit 0 */
		if (kill(rig.dmn.pid, SIGTERM))
			fail_logs("%s: SIGTERM: %s", ctx, strerror(errno));
		return;
	}
	disconnect();
}

/* ---- what the daemons said ---- */

static char *newest_log(size_t *len)
{
	if (!rig.nlogs)
		fail_msg("no daemon log was kept");
	return (char *)testvol_read_whole(rig.logs[rig.nlogs - 1], len);
}

/* The daemon just stopped logged no error (when started by systemd the
 * level would be a "<3>" prefix; the tests run it without). */
static void expect_no_errors(const char *who, const char *ctx)
{
	size_t len;
	char *log = newest_log(&len), *line, *save = NULL;
	char found[1500] = "";
	size_t used = 0;

	if (!log)
		fail_msg("%s: cannot read the log of %s", ctx, who);
	for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "ntfsd: error:", 13) || !strncmp(line, "<3>", 3)) {
			int n = snprintf(found + used, sizeof(found) - used, "\n    %s", line);

			if (n > 0 && used + (size_t)n < sizeof(found))
				used += (size_t)n;
		}
	free(log);
	if (used)
		fail_logs("%s: %s logged errors:%s", ctx, who, found);
}

/* The killed daemon's log must name the point as reached. */
static void expect_point_reached(const struct crash_case *k, const char *ctx)
{
	char want[128];
	size_t namelen = strcspn(k->point, ":");
	const char *hit = k->point[namelen] ? k->point + namelen + 1 : "1";

	snprintf(want, sizeof(want), "crash point %.*s reached (hit %s): SIGKILL", (int)namelen,
		 k->point, hit);
	if (!rig_log_has(&rig, want))
		fail_logs("%s: the daemon died, but its log has no \"%s\"", ctx, want);
}

/* ---- what is on the volume ---- */

/* ntfsinfo's sizes of path: a valid triple, the data size what ntfscat
 * read (the model's, just accepted). */
static void check_sizes(const struct cm_file *m, const char *ctx)
{
	struct oracle_attr a;
	int err = oracle_info(rig.tv.scratch, m->path, NULL, &a);

	if (err || !a.found)
		fail_logs("%s: ntfsinfo %s: %s", ctx, m->path,
			  err ? strerror(-err) : "no $DATA attribute");
	if (a.data_size != m->cur_size)
		fail_logs("%s: ntfsinfo says %s has %" PRIu64 " bytes, ntfscat read %" PRIu64, ctx,
			  m->path, a.data_size, m->cur_size);
	if (!a.resident && (a.initialized_size > a.data_size || a.data_size > a.allocated_size))
		fail_logs("%s: %s: initialized %" PRIu64 ", data %" PRIu64 ", allocated %" PRIu64
			  ": not initialized <= data <= allocated", ctx, m->path,
			  a.initialized_size, a.data_size, a.allocated_size);
}

/* Every cluster the unnamed $DATA of path maps (ntfsinfo -v) is in use in
 * $Bitmap (ntfscat): nothing on the disk points at a free cluster, which
 * the next allocation would hand out again.  (Clusters in use that
 * nothing maps are garbage a crash may leave; they are not looked for.) */
static void check_bitmap(const char *path, const char *ctx)
{
	const char *argv[] = { "ntfsinfo", "-v", "-F", path, rig.tv.scratch, NULL };
	char *out = NULL, *bm = NULL, *line, *save = NULL;
	size_t bmlen = 0;
	bool in_data = false, in_runlist = false;
	int err = oracle_run(argv, &out, NULL, NULL);

	if (err)
		fail_logs("%s: ntfsinfo -v %s: %s (%s)", ctx, path, strerror(-err),
			  oracle_last_stderr());
	err = oracle_cat(rig.tv.scratch, "/$Bitmap", NULL, &bm, &bmlen);
	if (err) {
		free(out);
		fail_logs("%s: ntfscat $Bitmap: %s (%s)", ctx, strerror(-err), oracle_last_stderr());
	}
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char vcn[64], lcn[64], len[64];
		long long l, n;

		if (!strncmp(line, "Dumping attribute ", 18) || !strncmp(line, "End of inode", 12)) {
			in_data = !strncmp(line, "Dumping attribute $DATA ", 24);
			in_runlist = false;
			continue;
		}
		if (in_data && strstr(line, "Attribute name:") && !strstr(line, "''"))
			in_data = false;        /* a named stream */
		if (in_data && strstr(line, "Runlist:")) {
			in_runlist = true;
			continue;
		}
		if (!in_runlist)
			continue;
		if (strncmp(line, "\t\t\t", 3) || sscanf(line, "%63s %63s %63s", vcn, lcn, len) != 3) {
			in_runlist = false;
			continue;
		}
		if (strncmp(lcn, "0x", 2))
			continue;       /* a hole, or not mapped */
		l = strtoll(lcn, NULL, 0);
		n = strtoll(len, NULL, 0);
		for (long long c = l; c < l + n; c++)
			if ((uint64_t)c / 8 >= bmlen || !((uint8_t)bm[c / 8] & (1u << (c % 8)))) {
				free(out);
				free(bm);
				fail_logs("%s: %s maps cluster %lld (run vcn %s, lcn %lld + %lld), "
					  "which $Bitmap says is free", ctx, path, c, vcn, l, n);
			}
	}
	free(out);
	free(bm);
}

/* Step 3's checks, of every file of the set (after a crash) or of m only
 * (nothing else was written since the last check). */
static void check_volume(struct cm_file *m, bool all, const char *ctx)
{
	if (all)
		rig_check_files(&rig, files, NF, ctx);
	else
		rig_check_files(&rig, m, 1, ctx);
	check_sizes(m, ctx);
	check_bitmap(m->path, ctx);
	rig_fsck(&rig, ctx);
}

/* ---- after the crash ---- */

/* The whole file as the running daemon serves it (ntfsc_pread). */
static uint8_t *read_served(const char *path, uint64_t *len, const char *ctx)
{
	ntfsc_file *h;
	struct ntfsc_stat st;
	uint8_t *data;
	uint64_t at = 0;

	conn = ntfsc_connect(rig.dmn.socket);
	if (!conn)
		fail_logs("%s: connect: %s", ctx, strerror(errno));
	h = ntfsc_open(conn, path, O_RDONLY);
	if (!h || ntfsc_fstat(h, &st))
		fail_logs("%s: open/fstat %s: %s (%s)", ctx, path, strerror(errno), daemon_says());
	data = malloc(st.size ? st.size : 1);
	assert_non_null(data);
	while (at < st.size) {
		ssize_t n = ntfsc_pread(h, data + at, (size_t)(st.size - at), (off_t)at);

		if (n <= 0) {
			free(data);
			fail_logs("%s: pread %s at %" PRIu64 ": %s (%s)", ctx, path, at,
				  n ? strerror(errno) : "end of file before its size", daemon_says());
		}
		at += (uint64_t)n;
	}
	ntfsc_close(h);
	disconnect();
	*len = st.size;
	return data;
}

/* A daemon without the point takes over; everything must be written, and
 * what it served must be what reached the disk. */
static void recover(struct cm_file *m, const char *ctx)
{
	uint64_t len;
	uint8_t *served;

	rig_start(&rig, daemon_opts);
	if (rig.keeper && !rig_log_has(&rig, "segment store: adopted MFT record"))
		fail_logs("%s: the restarted daemon adopted no segments from the keeper", ctx);
	rig_ctl_sync(&rig, NULL, ctx);
	served = read_served(m->path, &len, ctx);
	rig_stop_clean(&rig, ctx);
	expect_no_errors("the daemon started after the crash", ctx);
	check_volume(m, true, ctx);
	if (len != m->cur_size || memcmp(served, m->cur, (size_t)len)) {
		uint64_t b = 0;

		while (b < len && b < m->cur_size && served[b] == m->cur[b])
			b++;
		free(served);
		fail_logs("%s: the restarted daemon served %" PRIu64 " bytes of %s, the disk has %"
			  PRIu64 " after its clean stop; first difference at byte %" PRIu64, ctx,
			  len, m->path, m->cur_size, b);
	}
	free(served);
}

/* The file takes writes, an append, a truncate and syncs again. */
static void still_writable(struct cm_file *m, const char *ctx)
{
	uint64_t size = m->cur_size, grown;
	uint32_t id = 100;
	struct range mid = { size / 2, 5000 }, tail = { size, 30000 };
	ntfsc_file *h;

	rig_start(&rig, daemon_opts);
	h = open_file(m->path, ctx);
	must_write(h, m, &id, "write after recovery", mid, ctx);
	must_write(h, m, &id, "append after recovery", tail, ctx);
	must_fsync(h, m, ctx);
	grown = m->cur_size;
	must_truncate(h, m, &id, grown - 1234, ctx);
	must_fsync(h, m, ctx);
	if (ntfsc_close(h))
		fail_logs("%s: close: %s", ctx, strerror(errno));
	disconnect();
	rig_stop_clean(&rig, ctx);
	expect_no_errors("the daemon writing after the recovery", ctx);
	check_volume(m, false, ctx);
}

/* ---- the tests ---- */

static void crash_case(void **state)
{
	const struct test_state *ts = *state;
	const struct crash_case *k = ts->k;
	struct cm_file *m = &files[file_index(k->path)];
	uint64_t before;
	double t0 = now_s();
	char ctx[300];

	snprintf(ctx, sizeof(ctx), "%s, %s (%s), %s", k->point, k->how, k->path,
		 ts->keeper ? "keeper" : "--fd-store none");
	rig_arm_alarm(&rig, 240);
	load_models();
	before = m->cur_size;
	rig_start_armed(&rig, k->point, daemon_opts);
	crash_in_operation(k, m, ctx);
	rig_expect_killed(&rig, 10000, ctx);
	expect_point_reached(k, ctx);
	recover(m, ctx);
	printf("    %s: size %" PRIu64 " before, %" PRIu64 " after the crash%s\n", ctx, before,
	       m->cur_size,
	       k->op != OP_TRUNCATE ? ""
	       : m->cur_size == k->size ? " (the new size)" : " (the old size)");
	still_writable(m, ctx);
	printf("    %s: %.1f s\n", ctx, now_s() - t0);
}

static int setup(void **state)
{
	const struct test_state *ts = *state;

	return rig_setup(&rig, ts->keeper);
}

static int teardown(void **state)
{
	(void)state;
	if (conn)
		disconnect();
	free_models();
	rig_teardown(&rig);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return rig_group_setup(&rig, "crashpoints");
}

static int group_teardown(void **state)
{
	(void)state;
	rig_group_teardown(&rig);
	return 0;
}

int main(int argc, char **argv)
{
	static struct test_state states[2 * NCASES];
	static char names[2 * NCASES][128];
	struct CMUnitTest tests[2 * NCASES];
	int n = 0, rc;

	for (int mode = 0; mode < 2; mode++)
		for (int i = 0; i < NCASES; i++, n++) {
			states[n] = (struct test_state){ &cases[i], i, mode == 0 };
			snprintf(names[n], sizeof(names[n]), "%s/%s/%s",
				 mode == 0 ? "keeper" : "none", cases[i].point, cases[i].how);
			tests[n] = (struct CMUnitTest){ names[n], crash_case, setup, teardown,
							&states[n] };
		}
	buf = malloc(1 * MiB);
	if (!buf)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	rc = _cmocka_run_group_tests("crashpoints", tests, (size_t)n, group_setup,
				     group_teardown);
	free(buf);
	return rc;
}
