/*
 * test_crash_model — crash consistency under background write-back: a
 * client process runs random pwrite / mmap-store + ntfsc_set_dirty /
 * append / ftruncate (down and up) / fsync / sync over nine files of a
 * copy of the vol4k.img fixture (resident, resident compressed, empty,
 * non-resident, sparse, preallocated, fragmented, compressed, mixed
 * compressed) while the daemon writes back in the background (dirty
 * expiry 100 ms, background threshold 1 MiB), and the daemon is killed
 * with SIGKILL at a random moment; the client is killed right after.
 * The daemon is started again (it adopts the segments when the keeper
 * holds them), `ntfsctl sync` must exit 0, a clean stop must exit 0, and
 * then every file is read with ntfscat and held to crashmodel.h's rules;
 * `ntfsfix -n` must be clean.  What was read becomes the durable state of
 * the next round.
 *
 *  - crash_model_keeper: --fd-store keeper; every operation that returned
 *    before the kill must be on the volume after the restart; a third of
 *    the rounds also kill the restarted daemon 0-200 ms after it starts
 *    (during its adoption write-back), and start it once more.
 *  - crash_model_no_keeper: --fd-store none (a power cut): only what a
 *    returned fsync/sync covered is guaranteed, everything else must be
 *    old data, data written since, or zeroes; the free space of the
 *    volume holds 0xEE (crashrig.h), so stale clusters exposed in a file
 *    show up.
 *
 * The client writes journal entries (what, where, seed of the data:
 * pattern.h) to shared memory before and after each call, so the parent
 * knows which operations returned and which one was in flight.
 *
 * Environment: NTFSD_TEST_SEED=S replays a run's choices (the seed is
 * printed; the kill moments depend on timing too; "random" picks one);
 * NTFSD_TEST_ROUNDS=N rounds (kills) per test, default 16 (so 32 kills,
 * plus the extra ones); NTFSD_TEST_LONG=1: 100 rounds per test.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crashmodel.h"
#include "crashrig.h"
#include "kids.h"
#include "ntfsc.h"
#include "pattern.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define MAX_IO (256 * KiB)
#define JMAX 40000
#define DEFAULT_SEED 0xc4a5e11ull
#define DEFAULT_ROUNDS 16
#define LONG_ROUNDS 100

static const struct rig_file fileset[] = {
	{ "/small.txt", 256 * KiB },      /* resident: grows out of its record */
	{ "/comp/tiny.txt", 256 * KiB },  /* resident, flagged compressed */
	{ "/empty", 1 * MiB },
	{ "/big.bin", 5 * MiB },
	{ "/sparse.bin", 16 * MiB },      /* 10000 B, hole, 20000 B at 8 MiB, hole */
	{ "/prealloc.bin", 2 * MiB },     /* initialized 10000 of 1 MiB, room past it */
	{ "/frag/a.bin", 1 * MiB },       /* 64 one-cluster fragments */
	{ "/comp/text.txt", 1 * MiB },    /* compressed */
	{ "/comp/mixed.bin", 1 * MiB },   /* compressed units, holes, partial units */
};
#define NF ((int)(sizeof(fileset) / sizeof(fileset[0])))

static const char *const daemon_opts[] = { "--dirty-expire-ms", "100", "--dirty-background",
					   "1M", "--flushers", "2", "--cache-size", "64M", NULL };

static struct crashrig rig;
static struct cm_file files[NF];
static uint64_t run_seed;
static unsigned rounds;

/* ---- the journal, shared with the client ---- */

enum jkind { J_PWRITE, J_APPEND, J_GAP, J_ZERO, J_MMAP, J_TRUNC_DOWN, J_TRUNC_UP, J_FSYNC,
	     J_SYNC };
static const char *const jname[] = { "pwrite", "append", "pwrite past the end", "pwrite zeroes",
				     "mmap store", "ftruncate down", "ftruncate up", "fsync",
				     "sync" };
enum jstate { J_UNUSED, J_STARTED, J_DONE, J_FAILED };

struct jentry {
	_Atomic int state;
	int err;
	int kind, file;
	uint64_t off, len, seed, size;
};

struct journal {
	_Atomic uint32_t n;
	_Atomic int ready;
	char msg[256];                  /* why the client gave up before its first op */
	struct jentry e[JMAX];
};

static struct journal *jr;

/* ---- the client (a forked child: no cmocka here) ---- */

struct client {
	uint64_t rng;
	uint64_t size[NF];
	ntfsc_file *h[NF];
	uint8_t *buf;
};

static uint64_t below(struct client *cl, uint64_t n)
{
	return n ? xorshift(&cl->rng) % n : 0;
}

static uint64_t io_len(struct client *cl)
{
	uint64_t r = below(cl, 100);

	if (r < 40)
		return 1 + below(cl, 600);
	if (r < 75)
		return 1 + below(cl, 16 * KiB);
	if (r < 95)
		return 1 + below(cl, 128 * KiB);
	return 1 + below(cl, MAX_IO);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Choose the next operation into e (not yet visible to the parent). */
static void choose(struct client *cl, struct jentry *e, uint32_t opno, uint64_t round_seed)
{
	int f = (int)below(cl, NF);
	uint64_t size = cl->size[f], cap = fileset[f].cap, r = below(cl, 100);

	memset(e, 0, sizeof(*e));
	e->file = f;
	e->seed = mix_seed(round_seed, opno) | 1;
	if (r >= 50 && r < 65 && size > 0) {
		e->kind = J_MMAP;
		e->off = below(cl, size);
		e->len = 1 + below(cl, min_u64(io_len(cl), size - e->off));
		if (e->off + e->len > size)
			e->len = size - e->off;
		return;
	}
	if (r >= 65 && r < 72 && size > 0) {
		e->kind = J_TRUNC_DOWN;
		e->size = below(cl, 3) ? below(cl, size) : size - 1 - below(cl, min_u64(size, 600));
		return;
	}
	if (r >= 65 && r < 77 && size < cap) {
		e->kind = J_TRUNC_UP;
		e->size = size + 1 + below(cl, min_u64(cap - size, 512 * KiB));
		return;
	}
	if (r >= 77 && r < 89) {
		e->kind = J_FSYNC;
		return;
	}
	if (r >= 89 && r < 92) {
		e->kind = J_SYNC;
		return;
	}
	if (r >= 42 && r < 47 && size + 2 < cap) {
		e->kind = J_GAP;
		e->off = size + 1 + below(cl, min_u64(cap - size - 2, 256 * KiB));
	} else if ((r >= 28 && r < 42) || size == 0) {
		e->kind = J_APPEND;
		e->off = size - below(cl, min_u64(size, 8192) + 1);
		if (e->off >= cap)
			e->off = below(cl, size);
	} else {
		e->kind = r >= 47 && r < 50 ? J_ZERO : J_PWRITE;
		e->off = below(cl, size);
	}
	if (e->kind == J_ZERO)
		e->seed = 0;
	e->len = min_u64(io_len(cl), cap - e->off);
	if (!e->len) {
		e->kind = J_FSYNC;
		e->off = 0;
	}
}

static bool conn_lost(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ENOTCONN;
}

/* Do e; 0 when it worked, else the errno. */
static int perform(struct client *cl, ntfsc *c, struct jentry *e)
{
	ntfsc_file *h = cl->h[e->file];
	uint8_t *p;

	switch (e->kind) {
	case J_PWRITE:
	case J_APPEND:
	case J_GAP:
	case J_ZERO:
		pattern_fill(cl->buf, (size_t)e->len, e->seed, e->off);
		if (ntfsc_pwrite(h, cl->buf, (size_t)e->len, (off_t)e->off) != (ssize_t)e->len)
			return errno ? errno : EIO;
		if (e->off + e->len > cl->size[e->file])
			cl->size[e->file] = e->off + e->len;
		return 0;
	case J_MMAP:
		p = ntfsc_mmap(h, (off_t)e->off, (size_t)e->len, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			return errno ? errno : EIO;
		pattern_fill(p, (size_t)e->len, e->seed, e->off);
		if (ntfsc_set_dirty(h, p, (size_t)e->len))
			return errno ? errno : EIO;
		/* the store is done once it is dirty: say so before the unmap,
		 * whose unpin may find the daemon gone */
		atomic_store(&e->state, J_DONE);
		if (ntfsc_munmap(h, p, (size_t)e->len))
			_exit(0);
		return 0;
	case J_TRUNC_DOWN:
	case J_TRUNC_UP:
		if (ntfsc_ftruncate(h, (off_t)e->size))
			return errno ? errno : EIO;
		cl->size[e->file] = e->size;
		return 0;
	case J_FSYNC:
		return ntfsc_fsync(h) ? (errno ? errno : EIO) : 0;
	default:
		return ntfsc_sync(c) ? (errno ? errno : EIO) : 0;
	}
}

static _Noreturn void client_main(const char *sock, uint64_t round_seed)
{
	struct client cl = { .rng = round_seed };
	ntfsc *c = ntfsc_connect(sock);

	signal(SIGALRM, SIG_DFL);
	cl.buf = malloc(MAX_IO);
	if (!c || !cl.buf) {
		snprintf(jr->msg, sizeof(jr->msg), "connect: %s", strerror(errno));
		_exit(2);
	}
	for (int f = 0; f < NF; f++) {
		cl.size[f] = files[f].cur_size;
		cl.h[f] = ntfsc_open(c, fileset[f].path, O_RDWR);
		if (!cl.h[f]) {
			snprintf(jr->msg, sizeof(jr->msg), "open %s: %s", fileset[f].path,
				 strerror(errno));
			_exit(3);
		}
	}
	atomic_store(&jr->ready, 1);
	for (uint32_t i = 0; i < JMAX; i++) {
		struct jentry *e = &jr->e[i];
		int err;

		choose(&cl, e, i, round_seed);
		atomic_store(&e->state, J_STARTED);
		atomic_store(&jr->n, i + 1);
		err = perform(&cl, c, e);
		e->err = err;
		if (atomic_load(&e->state) != J_DONE)
			atomic_store(&e->state, err ? J_FAILED : J_DONE);
		if (err)
			_exit(conn_lost(err) ? 0 : 4);
	}
	_exit(0);
}

/* ---- the parent ---- */

static void describe(const struct jentry *e, char *out, size_t len)
{
	if (e->kind == J_TRUNC_DOWN || e->kind == J_TRUNC_UP)
		snprintf(out, len, "%s %s to %" PRIu64, jname[e->kind], fileset[e->file].path,
			 e->size);
	else if (e->kind == J_FSYNC)
		snprintf(out, len, "fsync %s", fileset[e->file].path);
	else if (e->kind == J_SYNC)
		snprintf(out, len, "sync");
	else
		snprintf(out, len, "%s %s [%" PRIu64 ", +%" PRIu64 ") seed %#" PRIx64, jname[e->kind],
			 fileset[e->file].path, e->off, e->len, e->seed);
}

struct round_stats {
	unsigned ops, synced, kills, in_flight;
};

/* The journal into the models; what the client saw go wrong fails here. */
static void replay_journal(unsigned round, struct round_stats *rs)
{
	uint32_t n = atomic_load(&jr->n);
	char what[256];

	rs->ops = n;
	for (uint32_t i = 0; i < n; i++) {
		struct jentry *e = &jr->e[i];
		int st = atomic_load(&e->state);
		bool returned = st == J_DONE;

		describe(e, what, sizeof(what));
		if (st == J_FAILED && !conn_lost(e->err)) {
			rig_dump_logs(&rig, 40);
			fail_msg("round %u (seed %#" PRIx64 "): op %u, %s, failed with %s: the daemon "
				 "refused or failed a call it must do", round, run_seed, i, what,
				 strerror(e->err));
		}
		if (!returned && i + 1 != n)
			fail_msg("round %u: op %u did not return but op %u followed", round, i, i + 1);
		if (!returned)
			rs->in_flight++;
		switch (e->kind) {
		case J_TRUNC_DOWN:
		case J_TRUNC_UP:
			cm_truncate(&files[e->file], i, e->size, returned);
			break;
		case J_FSYNC:
			if (returned) {
				cm_synced(&files[e->file]);
				rs->synced++;
			}
			break;
		case J_SYNC:
			if (returned) {
				for (int f = 0; f < NF; f++)
					cm_synced(&files[f]);
				rs->synced++;
			}
			break;
		default:
			cm_write(&files[e->file], i, jname[e->kind], e->off, e->len, e->seed, returned);
			break;
		}
	}
}

static void load_models(void)
{
	rig_load_models(&rig, fileset, files, NF);
}

static void free_models(void)
{
	rig_free_models(files, NF);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_rounds(bool keeper)
{
	uint64_t rng = mix_seed(run_seed, keeper ? 1 : 2);
	unsigned total_kills = 0, total_ops = 0, total_synced = 0, in_flight = 0;
	double t0 = now_s();
	char ctx[256];

	printf("    seed %#" PRIx64 " (NTFSD_TEST_SEED), %u rounds, %s\n", run_seed, rounds,
	       keeper ? "--fd-store keeper" : "--fd-store none");
	load_models();
	for (unsigned round = 0; round < rounds; round++) {
		uint64_t round_seed = mix_seed(run_seed, round + (keeper ? 1000 : 2000));
		long delay = 20 + (long)(xorshift(&rng) % 1000);
		struct round_stats rs = { 0 };
		int st;

		memset(jr, 0, sizeof(*jr));
		rig_start(&rig, daemon_opts);
		fflush(NULL);
		rig.child = fork();
		assert_true(rig.child >= 0);
		if (rig.child == 0)
			client_main(rig.dmn.socket, round_seed);
		for (int i = 0; !atomic_load(&jr->ready); i++) {
			if (waitpid(rig.child, &st, WNOHANG) == rig.child) {
				rig.child = 0;
				fail_msg("round %u: the client exited (status 0x%x) before it began: %s",
					 round, st, jr->msg);
			}
			if (i == 1000)
				fail_msg("round %u: the client did not open its files within 10 s",
					 round);
			testvol_sleep_ms(10);
		}
		testvol_sleep_ms(delay);
		snprintf(ctx, sizeof(ctx), "round %u, %ld ms into the workload", round, delay);
		rig_kill9(&rig, ctx);
		rs.kills++;
		kill(rig.child, SIGKILL);
		waitpid(rig.child, &st, 0);
		rig.child = 0;
		if (WIFEXITED(st) && WEXITSTATUS(st))
			fail_msg("round %u: the client failed (exit %d): %s", round, WEXITSTATUS(st),
				 jr->msg);
		replay_journal(round, &rs);

		/* a third of the keeper rounds: kill it again while it adopts */
		if (keeper && xorshift(&rng) % 3 == 0) {
			long d2 = (long)(xorshift(&rng) % 200);

			rig_spawn(&rig, daemon_opts);
			testvol_sleep_ms(d2);
			snprintf(ctx, sizeof(ctx), "round %u, restarted daemon %ld ms after its start",
				 round, d2);
			rig_kill9(&rig, ctx);
			rs.kills++;
		}
		rig_start(&rig, daemon_opts);
		if (keeper && !rig_log_has(&rig, "adopted MFT record") && rs.ops > 1)
			printf("    round %u: the restarted daemon adopted nothing\n", round);
		snprintf(ctx, sizeof(ctx), "round %u (seed %#" PRIx64 ", %s, killed %ld ms in, "
			 "%u ops, last %s)", round, run_seed, keeper ? "keeper" : "no keeper", delay,
			 rs.ops, rs.in_flight ? "in flight" : "returned");
		rig_ctl_sync(&rig, NULL, ctx);
		rig_stop_clean(&rig, ctx);
		rig_check_files(&rig, files, NF, ctx);
		rig_fsck(&rig, ctx);
		total_kills += rs.kills;
		total_ops += rs.ops;
		total_synced += rs.synced;
		in_flight += rs.in_flight;
	}
	printf("    %u rounds: %u kills, %u operations (%u syncs returned, %u in flight at a "
	       "kill), %.1f s\n", rounds, total_kills, total_ops, total_synced, in_flight,
	       now_s() - t0);
	free_models();
}

static int setup(void **state)
{
	(void)state;
	return rig_setup(&rig, false);
}

static int teardown(void **state)
{
	(void)state;
	free_models();
	rig_teardown(&rig);
	return 0;
}

static void crash_model_keeper(void **state)
{
	(void)state;
	rig.keeper = true;
	rig_arm_alarm(&rig, 60 + rounds * 25);
	run_rounds(true);
}

static void crash_model_no_keeper(void **state)
{
	(void)state;
	rig.keeper = false;
	rig_arm_alarm(&rig, 60 + rounds * 25);
	run_rounds(false);
}

static int group_setup(void **state)
{
	(void)state;
	jr = mmap(NULL, sizeof(*jr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (jr == MAP_FAILED)
		return -1;
	return rig_group_setup(&rig, "crashmodel");
}

static int group_teardown(void **state)
{
	(void)state;
	rig_group_teardown(&rig);
	munmap(jr, sizeof(*jr));
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(crash_model_keeper, setup, teardown),
		cmocka_unit_test_setup_teardown(crash_model_no_keeper, setup, teardown),
	};
	const char *s = getenv("NTFSD_TEST_SEED"), *n = getenv("NTFSD_TEST_ROUNDS");

	/* a fixed default, so CI runs can be replayed; "random" for a new one */
	if (s && !strcmp(s, "random"))
		run_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	else
		run_seed = s && *s ? strtoull(s, NULL, 0) : DEFAULT_SEED;
	if (!run_seed)
		run_seed = 1;
	rounds = getenv("NTFSD_TEST_LONG") && atoi(getenv("NTFSD_TEST_LONG")) ? LONG_ROUNDS
									       : DEFAULT_ROUNDS;
	if (n && atoi(n) > 0)
		rounds = (unsigned)atoi(n);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("test_crash_model: NTFSD_TEST_SEED=%#" PRIx64 " NTFSD_TEST_ROUNDS=%u\n", run_seed,
	       rounds);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
