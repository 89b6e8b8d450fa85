/*
 * test_write_path — writes through libntfsc and ntfsctl into a real ntfsd,
 * checked with ntfs-3g's tools once the daemon has written them back.
 *
 * Every test works on its own copy of vol4k.img in its own temp dir
 * (writes change the image), removed in the teardown whatever happened.
 *  - a model test in the style of fsx: three client processes each own a
 *    non-resident file and share the resident /small.txt (each its own
 *    100-byte slice of it); each runs random ntfsc_pwrite (unaligned,
 *    across pages, across and past i_size up to the allocated size),
 *    stores through PROT_WRITE mappings with ntfsc_set_dirty, ntfsc_pread
 *    checks and ntfsc_fsync against an in-memory model of its file.  The
 *    daemon is stopped (SIGTERM, which must write everything back and exit
 *    0) and restarted half way, and at the end: each time ntfscat of every
 *    file must equal the models, ntfsinfo's sizes the models' and
 *    `ntfsfix -n` must find the volume clean.  Run again with a cache far
 *    smaller than the files and a small dirty limit, which must hold;
 *  - refusals: a write far past
 *    what an open file's cache segment holds (EFBIG), system files,
 *    read-only handles and bad arguments fail with the documented errno and
 *    change nothing on the volume;
 *  - writes that allocate: into the holes of a sparse file, across and far
 *    past the allocated size, a resident file growing within its record
 *    and then out of it (non-resident, while mapped), compressed files
 *    (the units written are stored uncompressed; the rest stay compressed
 *    and read back byte-exact); a file grown by ntfsd into free space
 *    ntfs-3g cut into pieces, until its runlist continues behind an
 *    $ATTRIBUTE_LIST, read back by ntfscat and a fresh ntfs-3g mount; ntfscat, ntfsinfo and ntfsfix -n agree, and
 *    after ntfs-3g (mounted) has filled the rest of the volume with a new
 *    file every byte ntfsd wrote still reads back (bitmap truth); a write
 *    that cannot be allocated fails with ENOSPC and leaves what was
 *    accepted before intact;
 *  - `ntfsctl write` (with and without --mmap) and `ntfsctl sync` round
 *    trips checked with ntfscat, and their failures;
 *  - a write-back that fails (the daemon runs under an RLIMIT_FSIZE below
 *    the file's clusters) makes `ntfsctl sync PATH` print the errno and
 *    exit 1, and ntfsc_fsync report it once per handle.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "kids.h"
#include "ntfsc.h"
#include "oracle.h"
#include "testvol.h"

static const char *ntfsd_bin, *ntfsctl_bin, *fixture_dir;

/* Per test: the temp dir, the image copy in it, the daemon, forked kids. */
static char tmpdir[64];
static char image[128];
static struct test_daemon dmn;
static unsigned log_seq;

static struct kids kids;     /* the model test's clients */

static void free_initial(void);

/* ---- files ---- */

static char *tmp_path(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
	return p;
}

/* ---- setup and teardown ---- */

static int setup_image(void **state)
{
	char *src;
	int err;

	(void)state;
	memset(&dmn, 0, sizeof(dmn));
	kids_init(&kids, 0);
	log_seq = 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ntfsd-write.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		tmpdir[0] = '\0';
		return -1;
	}
	snprintf(image, sizeof(image), "%s/vol4k.img", tmpdir);
	if (asprintf(&src, "%s/vol4k.img", fixture_dir) < 0)
		return -1;
	err = testvol_copy_file(src, image);
	if (err)
		fprintf(stderr, "cannot copy %s to %s: %s\n", src, image, strerror(-err));
	free(src);
	return err ? -1 : 0;
}

/* Whatever the test left: children, the daemon, the temp dir. */
static int teardown_image(void **state)
{
	DIR *d;
	struct dirent *e;

	(void)state;
	kids_kill(&kids);
	kids_close_fds(&kids);
	free_initial();
	if (dmn.pid)
		daemon_stop(&dmn);
	if (!tmpdir[0])
		return 0;
	{
		/* an ntfs-3g mount a failed test left behind */
		char *mnt = tmp_path("mnt");
		const char *argv[] = { "fusermount", "-u", "-z", "-q", mnt, NULL };
		char *out = NULL;
		size_t len;
		int st;

		if (access(mnt, F_OK) == 0)
			oracle_run(argv, &out, &len, &st);
		free(out);
		rmdir(mnt);
		free(mnt);
	}
	d = opendir(tmpdir);
	if (d) {
		while ((e = readdir(d))) {
			char *p;

			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			p = tmp_path(e->d_name);
			unlink(p);
			free(p);
		}
		closedir(d);
	}
	if (rmdir(tmpdir))
		fprintf(stderr, "cannot remove %s: %s\n", tmpdir, strerror(errno));
	tmpdir[0] = '\0';
	return 0;
}

/* ---- the daemon ---- */

static void start_daemon(const char *const *args)
{
	int err = daemon_start(&dmn, ntfsd_bin, image, args);

	if (err)
		fail_msg("cannot start ntfsd on %s: %s", image, strerror(-err));
}

/* SIGTERM; the daemon must write everything back and exit 0.  Its log is
 * kept (a hard link in the temp dir) so a failure can show it. */
static void stop_daemon_clean(void)
{
	char name[32], *keep;
	bool ok;

	snprintf(name, sizeof(name), "ntfsd-%u.log", log_seq++);
	keep = tmp_path(name);
	if (link(dmn.log, keep))
		fprintf(stderr, "cannot keep the daemon's log: %s\n", strerror(errno));
	ok = daemon_stop(&dmn);
	if (!ok) {
		size_t len;
		char *log = (char *)testvol_read_whole(keep, &len);

		if (log)
			fprintf(stderr, "---- ntfsd log ----\n%s---- end of log ----\n", log);
		free(log);
		free(keep);
		fail_msg("ntfsd did not exit cleanly after SIGTERM (wait status 0x%x)",
			 dmn.exit_status);
	}
	free(keep);
}

static ntfsc *connect_daemon(void)
{
	ntfsc *c = ntfsc_connect(dmn.socket);

	if (!c)
		fail_msg("ntfsc_connect %s: %s", dmn.socket, strerror(errno));
	return c;
}

/* ---- ntfs-3g's view ---- */

static void expect_bytes(const char *what, const void *got, size_t got_len, const void *want,
			 size_t want_len)
{
	const uint8_t *g = got, *w = want;

	if (got_len != want_len)
		fail_msg("%s: %zu bytes, want %zu", what, got_len, want_len);
	for (size_t i = 0; i < want_len; i++)
		if (g[i] != w[i])
			fail_msg("%s: byte %zu is 0x%02x, want 0x%02x", what, i, g[i], w[i]);
}

/* ntfscat path: of the image, or, while the daemon runs and holds the image
 * locked, of a copy of it. */
static void cat_disk(const char *path, char **data, size_t *len)
{
	char snap[300];

	if (!dmn.pid) {
		testvol_cat(image, path, data, len);
		return;
	}
	if (testvol_snapshot(image, snap, sizeof(snap)))
		fail_msg("copying %s: %s", image, strerror(errno));
	testvol_cat(snap, path, data, len);
	unlink(snap);
}

static void expect_cat(const char *path, const void *want, size_t len)
{
	char *got, what[256];
	size_t glen;

	cat_disk(path, &got, &glen);
	snprintf(what, sizeof(what), "ntfscat %s", path);
	expect_bytes(what, got, glen, want, len);
	free(got);
}

static void info_image(const char *path, struct oracle_attr *a)
{
	char snap[300];
	int err;

	if (dmn.pid && testvol_snapshot(image, snap, sizeof(snap)))
		fail_msg("copying %s: %s", image, strerror(errno));
	err = oracle_info(dmn.pid ? snap : image, path, NULL, a);
	if (dmn.pid)
		unlink(snap);

	if (err || !a->found)
		fail_msg("ntfsinfo %s: %s", path, err ? strerror(-err) : "no $DATA");
}

/* ---- ntfsctl ---- */

struct ctl_result {
	int status;                     /* exit status, 128 + signal */
	char *out, *err;
	size_t out_len, err_len;
};

static void ctl_free(struct ctl_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* ntfsctl -s SOCKET ARGS... with stdin from in (NULL: /dev/null). */
static void run_ctl(struct ctl_result *r, const char *in, ...)
{
	const char *argv[16];
	va_list ap;
	int rc;

	va_start(ap, in);
	daemon_ctl_argv(argv, 16, ntfsctl_bin, &dmn, ap);
	va_end(ap);
	memset(r, 0, sizeof(*r));
	rc = oracle_run_input(argv, in, &r->out, &r->out_len, &r->status);
	if (rc)
		fail_msg("cannot run ntfsctl: %s (%s)", strerror(-rc), oracle_last_stderr());
	r->err = strdup(oracle_last_stderr());
	assert_non_null(r->err);
	r->err_len = strlen(r->err);
}

static void expect_ctl_ok(struct ctl_result *r, const char *what)
{
	if (r->status)
		fail_msg("ntfsctl %s exited %d: %s", what, r->status, r->err);
}

/* ---- random data ---- */

static void fill_random(uint64_t *s, void *buf, size_t len)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(xorshift(s) >> 56);
}

/* ======================================================================
 * a) the model test
 * ====================================================================== */

#define NCHILD 3
#define SMALL_SIZE 300u
#define SMALL_SLICE 100u
#define OPS_PER_PHASE 150
#define MAX_IO 70000u
#define HISTORY 24
#define CHILD_TIMEOUT_S 240

static const char *const own_path[NCHILD] = { "/big.bin", "/frag/a.bin", "/prealloc.bin" };

/* What the parent knows before the children start (they inherit it). */
static struct {
	char *data[NCHILD];
	size_t size[NCHILD];
	uint64_t alloc[NCHILD];
	char *small;
} initial;

static void free_initial(void)
{
	for (int k = 0; k < NCHILD; k++)
		free(initial.data[k]);
	free(initial.small);
	memset(&initial, 0, sizeof(initial));
}

struct child {
	int k;
	const char *path;
	uint64_t rng;
	unsigned op;
	ntfsc *c;
	ntfsc_file *f, *small;
	uint8_t *model;                 /* alloc bytes; zero past size */
	uint64_t size, alloc;
	uint8_t small_model[SMALL_SIZE];
	uint8_t *buf;
	char history[HISTORY][128];
	unsigned n_write, n_extend, n_mmap, n_read, n_fsync, n_small;
};

static void hist(struct child *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hist(struct child *ch, const char *fmt, ...)
{
	va_list ap;
	char *h = ch->history[ch->op % HISTORY];
	int n = snprintf(h, 128, "op %u: ", ch->op);

	va_start(ap, fmt);
	vsnprintf(h + n, (size_t)(128 - n), fmt, ap);
	va_end(ap);
}

static int child_fail(struct child *ch, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Report from a child (never cmocka: it would long-jump into the parent's
 * copy of the runner): the failure, the last ops, then exit 1. */
static int child_fail(struct child *ch, const char *fmt, ...)
{
	va_list ap;
	int err = errno;
	const char *msg = ntfsc_last_error_message(NULL);
	unsigned first = ch->op >= HISTORY ? ch->op - HISTORY + 1 : 0;

	fprintf(stderr, "child %d (%s), op %u: ", ch->k, ch->path, ch->op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " [errno %d %s%s%s]\n", err, strerror(err), msg ? "; " : "",
		msg ? msg : "");
	fprintf(stderr, "  model size %" PRIu64 ", allocated %" PRIu64 "; last ops:\n", ch->size,
		ch->alloc);
	for (unsigned i = first; i <= ch->op; i++)
		fprintf(stderr, "    %s\n", ch->history[i % HISTORY]);
	_exit(1);
}

static uint64_t below(struct child *ch, uint64_t n)
{
	return n ? xorshift(&ch->rng) % n : 0;
}

static size_t io_len(struct child *ch)
{
	uint64_t r = below(ch, 10);

	if (r < 6)
		return 1 + (size_t)below(ch, 600);
	if (r < 9)
		return 1 + (size_t)below(ch, 3 * 4096 + 100);
	return 1 + (size_t)below(ch, MAX_IO);
}

static int first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (int)i;
	return -1;
}

/* pread [off, off + len) of the own file and compare with the model. */
static void check_read(struct child *ch, uint64_t off, size_t len)
{
	size_t want = off >= ch->size ? 0 : (size_t)(ch->size - off < len ? ch->size - off : len);
	ssize_t n = ntfsc_pread(ch->f, ch->buf, len, (off_t)off);
	int d;

	if (n != (ssize_t)want)
		child_fail(ch, "pread %zu at %" PRIu64 " gave %zd, want %zu", len, off, n, want);
	d = first_diff(ch->buf, ch->model + off, want);
	if (d >= 0)
		child_fail(ch, "pread %zu at %" PRIu64 ": byte %" PRIu64 " is 0x%02x, model 0x%02x",
			   len, off, off + (uint64_t)d, ch->buf[d], ch->model[off + (uint64_t)d]);
}

static void check_whole(struct child *ch)
{
	for (uint64_t off = 0; off < ch->size + 1; off += MAX_IO)
		check_read(ch, off, MAX_IO);
}

static void check_small(struct child *ch)
{
	uint64_t lo = (uint64_t)ch->k * SMALL_SLICE;
	ssize_t n = ntfsc_pread(ch->small, ch->buf, SMALL_SLICE, (off_t)lo);
	int d;

	if (n != SMALL_SLICE)
		child_fail(ch, "pread of /small.txt slice gave %zd", n);
	d = first_diff(ch->buf, ch->small_model + lo, SMALL_SLICE);
	if (d >= 0)
		child_fail(ch, "/small.txt byte %" PRIu64 " is 0x%02x, model 0x%02x",
			   lo + (uint64_t)d, ch->buf[d], ch->small_model[lo + (uint64_t)d]);
}

static void op_pwrite(struct child *ch)
{
	size_t len = io_len(ch);
	uint64_t off;
	ssize_t n;

	if (below(ch, 4) == 0) {
		/* around the end of the file, maybe past it (within the allocation) */
		uint64_t lo = ch->size > len + 2000 ? ch->size - len - 2000 : 0;
		uint64_t hi = ch->size + 5000 < ch->alloc ? ch->size + 5000 : ch->alloc;

		off = lo + below(ch, hi - lo);
	} else {
		off = below(ch, ch->size);
	}
	if (off >= ch->alloc)
		off = ch->alloc - 1;
	if (len > ch->alloc - off)
		len = (size_t)(ch->alloc - off);
	fill_random(&ch->rng, ch->buf, len);
	hist(ch, "pwrite %zu at %" PRIu64 " (size %" PRIu64 ")", len, off, ch->size);
	n = ntfsc_pwrite(ch->f, ch->buf, len, (off_t)off);
	if (n != (ssize_t)len)
		child_fail(ch, "pwrite %zu at %" PRIu64 " returned %zd", len, off, n);
	memcpy(ch->model + off, ch->buf, len);  /* bytes between old size and off stay 0 */
	ch->n_write++;
	if (off + len > ch->size) {
		ch->size = off + len;
		ch->n_extend++;
	}
}

/* Map [off, off + len) writable, check it, store in 1..3 places, dirty. */
static void op_mmap_store(struct child *ch, ntfsc_file *f, uint8_t *model, uint64_t off,
			  size_t len, const char *name)
{
	uint8_t *m;
	size_t lo = len, hi = 0;
	int stores = 1 + (int)below(ch, 3), d;

	hist(ch, "mmap %s %zu at %" PRIu64 ", %d stores", name, len, off, stores);
	m = ntfsc_mmap(f, (off_t)off, len, PROT_READ | PROT_WRITE);
	if (m == MAP_FAILED)
		child_fail(ch, "mmap %s %zu at %" PRIu64, name, len, off);
	/* (in /small.txt the range lies in this child's own slice) */
	d = first_diff(m, model + off, len);
	if (d >= 0)
		child_fail(ch, "mapping of %s at %" PRIu64 ": byte %" PRIu64 " differs", name, off,
			   off + (uint64_t)d);
	for (int i = 0; i < stores; i++) {
		size_t a = (size_t)below(ch, len), b = 1 + (size_t)below(ch, len - a);

		fill_random(&ch->rng, m + a, b);
		memcpy(model + off + a, m + a, b);
		if (a < lo)
			lo = a;
		if (a + b > hi)
			hi = a + b;
		if (below(ch, 3) == 0) {
			/* dirty this store now; later stores dirty again */
			if (ntfsc_set_dirty(f, m + a, b))
				child_fail(ch, "set_dirty %s %zu at %" PRIu64, name, b, off + a);
		}
	}
	/* all of the mapping, or just the span stored into */
	if (below(ch, 2) ? ntfsc_set_dirty(f, m, len) : ntfsc_set_dirty(f, m + lo, hi - lo))
		child_fail(ch, "set_dirty %s after stores at %" PRIu64 "+[%zu, %zu)", name, off, lo,
			   hi);
	if (ntfsc_munmap(f, m, len))
		child_fail(ch, "munmap %s", name);
	ch->n_mmap++;
}

static void op_small_write(struct child *ch)
{
	uint64_t lo = (uint64_t)ch->k * SMALL_SLICE;
	uint64_t off = lo + below(ch, SMALL_SLICE);
	size_t len = 1 + (size_t)below(ch, lo + SMALL_SLICE - off);
	ssize_t n;

	if (below(ch, 2)) {
		op_mmap_store(ch, ch->small, ch->small_model, off, len, "/small.txt");
		return;
	}
	fill_random(&ch->rng, ch->buf, len);
	hist(ch, "pwrite /small.txt %zu at %" PRIu64, len, off);
	n = ntfsc_pwrite(ch->small, ch->buf, len, (off_t)off);
	if (n != (ssize_t)len)
		child_fail(ch, "pwrite /small.txt %zu at %" PRIu64 " returned %zd", len, off, n);
	memcpy(ch->small_model + off, ch->buf, len);
}

static void one_op(struct child *ch)
{
	uint64_t r = below(ch, 100);

	if (r < 30) {
		op_pwrite(ch);
	} else if (r < 45) {
		uint64_t off = below(ch, ch->size);
		size_t len = io_len(ch);

		if (len > ch->size - off)
			len = (size_t)(ch->size - off);
		op_mmap_store(ch, ch->f, ch->model, off, len, ch->path);
	} else if (r < 70) {
		uint64_t off = below(ch, ch->size + 100);
		size_t len = io_len(ch);

		hist(ch, "pread %zu at %" PRIu64, len, off);
		check_read(ch, off, len);
		ch->n_read++;
	} else if (r < 74) {
		hist(ch, "fsync");
		if (ntfsc_fsync(below(ch, 4) ? ch->f : ch->small))
			child_fail(ch, "fsync");
		ch->n_fsync++;
	} else if (r < 80) {
		struct ntfsc_stat st;

		hist(ch, "fstat");
		if (ntfsc_fstat(ch->f, &st))
			child_fail(ch, "fstat");
		if (st.size != ch->size || st.allocated_size != ch->alloc)
			child_fail(ch, "fstat: size %" PRIu64 " allocated %" PRIu64 ", model %" PRIu64
				   " / %" PRIu64, st.size, st.allocated_size, ch->size, ch->alloc);
	} else if (r < 95) {
		op_small_write(ch);
		ch->n_small++;
	} else {
		hist(ch, "pread /small.txt slice");
		check_small(ch);
	}
}

static void child_open(struct child *ch, const char *sock)
{
	ch->c = ntfsc_connect(sock);
	if (!ch->c)
		child_fail(ch, "connect %s", sock);
	ch->f = ntfsc_open(ch->c, ch->path, O_RDWR);
	if (!ch->f)
		child_fail(ch, "open %s", ch->path);
	ch->small = ntfsc_open(ch->c, "/small.txt", O_RDWR);
	if (!ch->small)
		child_fail(ch, "open /small.txt");
	hist(ch, "(re)connected, whole-file check");
	check_whole(ch);
	check_small(ch);
}

static void child_close(struct child *ch, bool fsync_first)
{
	if (fsync_first && (ntfsc_fsync(ch->f) || ntfsc_fsync(ch->small)))
		child_fail(ch, "final fsync");
	if (ntfsc_close(ch->f) || ntfsc_close(ch->small))
		child_fail(ch, "close");
	ntfsc_disconnect(ch->c);
	ch->c = NULL;
}

static void child_save_models(struct child *ch)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/model-%d", tmpdir, ch->k);
	if (testvol_write_file(p, ch->model, (size_t)ch->size))
		child_fail(ch, "cannot save the model");
	snprintf(p, sizeof(p), "%s/small-%d", tmpdir, ch->k);
	if (testvol_write_file(p, ch->small_model, SMALL_SIZE))
		child_fail(ch, "cannot save the /small.txt model");
}

static int child_main(int k, int down, int up)
{
	struct child ch = { .k = k, .path = own_path[k] };
	char sock[KIDS_SOCK_MSG];

	alarm(CHILD_TIMEOUT_S);
	/* NTFSD_WRITE_SEED=S replays a run: child k then uses S + k */
	if (getenv("NTFSD_WRITE_SEED"))
		ch.rng = strtoull(getenv("NTFSD_WRITE_SEED"), NULL, 0) + (uint64_t)k;
	else
		ch.rng = ((uint64_t)time(NULL) << 24 ^ (uint64_t)getpid() << 4) + (uint64_t)k;
	fprintf(stderr, "child %d (%s): seed %#" PRIx64 " (NTFSD_WRITE_SEED=%#" PRIx64 ")\n", k,
		ch.path, ch.rng, ch.rng - (uint64_t)k);
	if (!ch.rng)
		ch.rng = 1;  /* xorshift's one bad state */
	ch.alloc = initial.alloc[k];
	ch.size = initial.size[k];
	ch.model = calloc(1, (size_t)ch.alloc + 1);
	ch.buf = malloc(MAX_IO + 1);
	if (!ch.model || !ch.buf)
		child_fail(&ch, "out of memory");
	memcpy(ch.model, initial.data[k], ch.size);
	memcpy(ch.small_model, initial.small, SMALL_SIZE);

	for (int phase = 0; phase < 2; phase++) {
		if (!kids_wait_go(down, sock, sizeof(sock)))
			child_fail(&ch, "the parent went away");
		child_open(&ch, sock);
		for (int i = 0; i < OPS_PER_PHASE; i++, ch.op++)
			one_op(&ch);
		/* child 0 leaves it all to the daemon's SIGTERM write-back */
		child_close(&ch, phase == 1 && k != 0);
		child_save_models(&ch);
		if (write(up, "d", 1) != 1)
			child_fail(&ch, "cannot tell the parent");
	}
	fprintf(stderr, "child %d (%s): %u pwrites (%u extending the file to %" PRIu64 " of %"
		PRIu64 " bytes), %u mapped stores, %u reads, %u fsyncs, %u writes to /small.txt\n",
		k, ch.path, ch.n_write, ch.n_extend, ch.size, ch.alloc, ch.n_mmap, ch.n_read,
		ch.n_fsync, ch.n_small);
	free(ch.model);
	free(ch.buf);
	return 0;
}

/* The most dirty data seen while the children ran, from VolumeStatus
 * (which counts it afresh each time). */
static uint64_t max_dirty_bytes;

static void sample_dirty(void)
{
	ntfsc *c = ntfsc_connect(dmn.socket);
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;

	if (!c)
		return;
	if (!ntfsc_volume_status(c, &vs)) {
		if (vs.dirty_pages * 4096 > max_dirty_bytes)
			max_dirty_bytes = vs.dirty_pages * 4096;
		ntfsc_volume_status_free(&vs);
	}
	ntfsc_disconnect(c);
}

/* Wait for a byte from every child; a child that dies fails the test. */
static void wait_phase(void)
{
	int st, k = kids_wait_phase(&kids, CHILD_TIMEOUT_S + 10, 10, sample_dirty, &st);

	if (k >= 0)
		fail_msg("client %d (%s) failed (wait status 0x%x): see its output above", k,
			 own_path[k], st);
}

/* Every file on the image equals the children's saved models. */
static void compare_models(const char *when)
{
	uint8_t small[SMALL_SIZE];

	for (int k = 0; k < NCHILD; k++) {
		char name[32], *p, *model;
		size_t len;
		struct oracle_attr a;

		snprintf(name, sizeof(name), "model-%d", k);
		p = tmp_path(name);
		model = (char *)testvol_read_whole(p, &len);
		assert_non_null(model);
		free(p);
		expect_cat(own_path[k], model, len);
		info_image(own_path[k], &a);
		if (a.data_size != len || a.allocated_size != initial.alloc[k])
			fail_msg("%s: ntfsinfo says %s has %" PRIu64 " bytes (%" PRIu64 " allocated), "
				 "the model %zu (%" PRIu64 ")", when, own_path[k], a.data_size,
				 a.allocated_size, len, initial.alloc[k]);
		/* initialized_size: never past the data, and covering every
		 * non-zero byte of the model (the rest reads as zeroes) */
		{
			size_t last = len;

			while (last && !model[last - 1])
				last--;
			if (a.initialized_size > a.data_size || a.initialized_size < last)
				fail_msg("%s: ntfsinfo says %s has initialized_size %" PRIu64
					 " (data %" PRIu64 "), but the model has data up to "
					 "byte %zu", when, own_path[k], a.initialized_size,
					 a.data_size, last);
		}
		free(model);

		snprintf(name, sizeof(name), "small-%d", k);
		p = tmp_path(name);
		model = (char *)testvol_read_whole(p, &len);
		assert_non_null(model);
		assert_int_equal(len, SMALL_SIZE);
		memcpy(small + k * SMALL_SLICE, model + k * SMALL_SLICE, SMALL_SLICE);
		free(model);
		free(p);
	}
	expect_cat("/small.txt", small, SMALL_SIZE);
	testvol_expect_ntfsfix_clean(image);
	print_message("%s: every file on the image equals its model\n", when);
}

/* Run the model test on a daemon started with args; dirty_limit: the
 * --dirty-limit among them (0: the default, not checked). */
static void model_run(const char *const *args, uint64_t dirty_limit)
{
	struct oracle_attr a;
	size_t slen;

	max_dirty_bytes = 0;
	for (int k = 0; k < NCHILD; k++) {
		cat_disk(own_path[k], &initial.data[k], &initial.size[k]);
		info_image(own_path[k], &a);
		initial.alloc[k] = a.allocated_size;
		assert_true(a.allocated_size >= initial.size[k]);
	}
	cat_disk("/small.txt", &initial.small, &slen);
	assert_int_equal(slen, SMALL_SIZE);
	/* what the test relies on: room to grow in two of the files */
	assert_true(initial.alloc[0] > initial.size[0]);
	assert_true(initial.alloc[2] >= initial.size[2] + 65536);

	start_daemon(args);
	kids_init(&kids, NCHILD);
	kids_spawn(&kids, child_main);
	kids_send_go(&kids, dmn.socket);
	wait_phase();

	/* half way: stop (everything must be written back), check, restart */
	stop_daemon_clean();
	compare_models("after the first SIGTERM");
	start_daemon(args);
	kids_send_go(&kids, dmn.socket);
	wait_phase();
	kids_reap(&kids);
	kids_close_fds(&kids);
	stop_daemon_clean();
	compare_models("after the final SIGTERM");
	free_initial();
	print_message("at most %" PRIu64 " bytes were dirty at a time\n", max_dirty_bytes);
	/* A writer balances after each call that dirtied pages, so each child
	 * may be past the limit by what one call dirties: at most MAX_IO bytes
	 * and the two pages they straddle.  (Observed: under 200 KiB with
	 * balancing, 360-740 KiB without.) */
	if (dirty_limit && max_dirty_bytes > dirty_limit + NCHILD * (MAX_IO + 2 * 4096))
		fail_msg("%" PRIu64 " bytes were dirty at once, with a dirty limit of %" PRIu64,
			 max_dirty_bytes, dirty_limit);
}

static void model_test(void **state)
{
	(void)state;
	model_run(NULL, 0);
}

/* The same with a cache far smaller than the files: reclaim takes clean
 * write-ready pages between a PrepareWrite and the write, and writers
 * must wait for write-back (BalanceDirty) all the time. */
static void model_test_small_cache(void **state)
{
	static const char *const args[] = { "--cache-size", "256K", "--dirty-limit", "64K",
					     "--dirty-background", "32K", NULL };

	(void)state;
	model_run(args, 64 * 1024);
}

/* ======================================================================
 * b) refusals
 * ====================================================================== */

static const char *last_message(void)
{
	const char *m = ntfsc_last_error_message(NULL);

	return m ? m : "no message";
}

/* ret must be -1 with errno want; the daemon's refusals (EOPNOTSUPP,
 * EPERM) must come with its message. */
static void expect_refused(ssize_t ret, int want, const char *what)
{
	if (ret != -1 || errno != want)
		fail_msg("%s: returned %zd (errno %s), want -1 with %s", what, ret,
			 ret < 0 ? strerror(errno) : "-", strerror(want));
	if ((want == EOPNOTSUPP || want == EPERM || want == EFBIG) &&
	    !ntfsc_last_error_message(NULL))
		fail_msg("%s: the daemon's refusal came without a message", what);
}

static ntfsc_file *open_or_fail(ntfsc *c, const char *path, int flags)
{
	ntfsc_file *f = ntfsc_open(c, path, flags);

	if (!f)
		fail_msg("ntfsc_open %s %s: %s (%s)", path, flags == O_RDWR ? "O_RDWR" : "O_RDONLY",
			 strerror(errno), last_message());
	return f;
}

/* Mount the image with ntfs-3g and write one file as large as the free
 * space allows; returns its size.  What it overwrites must not be ours. */
static uint64_t ntfs3g_fill_volume(void)
{
	char *mnt = tmp_path("mnt"), *fill, cmd[512];
	const char *mount_argv[] = { "ntfs-3g", image, mnt, NULL };
	const char *umount_argv[] = { "fusermount", "-u", mnt, NULL };
	char *out = NULL;
	size_t len;
	int st, fd;
	uint64_t total = 0;
	static char chunk[1 << 16];

	assert_true(mkdir(mnt, 0700) == 0 || errno == EEXIST);
	if (oracle_run(mount_argv, &out, &len, &st) || st)
		fail_msg("ntfs-3g %s: %s", image, oracle_last_stderr());
	free(out);
	out = NULL;
	assert_true(asprintf(&fill, "%s/fill.bin", mnt) > 0);
	fd = open(fill, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	memset(chunk, 0x5a, sizeof(chunk));
	while (fd >= 0) {
		ssize_t n = write(fd, chunk, sizeof(chunk));

		if (n <= 0)
			break;
		total += (uint64_t)n;
	}
	if (fd >= 0)
		close(fd);
	free(fill);
	snprintf(cmd, sizeof(cmd), "%s", mnt);
	if (oracle_run(umount_argv, &out, &len, &st) || st)
		fail_msg("fusermount -u %s: %s", cmd, oracle_last_stderr());
	free(out);
	rmdir(mnt);
	free(mnt);
	return total;
}

#define SMALL_BIG 100000u

static void writes_that_allocate(void **state)
{
	char *sparse, *big, *small;
	size_t sparse_len, big_len, small_len;
	uint64_t small_seed = 5;
	char *comp_text = NULL, *comp_mixed = NULL;
	size_t comp_text_len = 0, comp_mixed_len = 0;
	uint8_t buf[8192], *m;
	struct ntfsc_stat st;
	struct oracle_attr a;
	uint64_t big_alloc, gap_off, filled;
	ntfsc *c;
	ntfsc_file *f;
	size_t huge_len = 3u << 20;
	uint8_t *huge = malloc(huge_len);

	(void)state;
	assert_non_null(huge);
	cat_disk("/sparse.bin", &sparse, &sparse_len);
	cat_disk("/big.bin", &big, &big_len);
	cat_disk("/small.txt", &small, &small_len);
	assert_int_equal(small_len, SMALL_SIZE);
	small = realloc(small, SMALL_BIG);
	assert_non_null(small);
	start_daemon(NULL);
	c = connect_daemon();

	/* sparse: into a hole, and from data into a hole */
	f = open_or_fail(c, "/sparse.bin", O_RDWR);
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(ntfsc_pwrite(f, buf, 1, 1 << 20), 1);
	memcpy(sparse + (1 << 20), buf, 1);
	assert_int_equal(ntfsc_pwrite(f, buf, 4000, 9000), 4000);
	memcpy(sparse + 9000, buf, 4000);
	assert_int_equal(ntfsc_pread(f, buf, 100, (1 << 20) - 50), 100);
	assert_memory_equal(buf, sparse + (1 << 20) - 50, 100);
	assert_int_equal(ntfsc_close(f), 0);

	/* across, at and far past the allocated size (a gap of zeroes) */
	f = open_or_fail(c, "/big.bin", O_RDWR);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	big_alloc = st.allocated_size;
	{
		uint64_t seed = 99;

		fill_random(&seed, huge, huge_len);
	}
	gap_off = big_alloc + (1u << 20) + 123;
	big = realloc(big, gap_off + huge_len);
	assert_non_null(big);
	memset(big + big_len, 0, gap_off + huge_len - big_len);
	memset(buf, 0x3c, sizeof(buf));
	assert_int_equal(ntfsc_pwrite(f, buf, 5000, (off_t)big_len - 100), 5000);
	memcpy(big + big_len - 100, buf, 5000);
	assert_int_equal(ntfsc_pwrite(f, huge, huge_len, (off_t)gap_off), (ssize_t)huge_len);
	memcpy(big + gap_off, huge, huge_len);
	big_len = gap_off + huge_len;
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	assert_int_equal(st.size, big_len);
	assert_true(st.allocated_size >= big_len);
	assert_int_equal(ntfsc_fsync(f), 0);
	assert_int_equal(ntfsc_close(f), 0);

	/* compressed: a unit in the middle, a store through a mapping, growth */
	for (int k = 0; k < 2; k++) {
		const char *path = k ? "/comp/mixed.bin" : "/comp/text.txt";
		char *cdata;
		size_t clen, off;

		cat_disk(path, &cdata, &clen);
		assert_true(clen > 20000);
		f = open_or_fail(c, path, O_RDWR);
		memset(buf, 0x41 + k, sizeof(buf));
		off = clen / 2 - 3000;
		assert_int_equal(ntfsc_pwrite(f, buf, 6000, (off_t)off), 6000);
		memcpy(cdata + off, buf, 6000);
		m = ntfsc_mmap(f, 0, 4096, PROT_READ | PROT_WRITE);
		assert_true(m != MAP_FAILED);
		m[7] ^= 0xff;
		cdata[7] ^= 0xff;
		assert_int_equal(ntfsc_set_dirty(f, m + 7, 1), 0);
		assert_int_equal(ntfsc_munmap(f, m, 4096), 0);
		cdata = realloc(cdata, clen + 70000);
		assert_non_null(cdata);
		memset(cdata + clen, 0, 60000);
		memset(cdata + clen + 60000, 0x61 + k, 10000);
		memset(buf, 0x61 + k, sizeof(buf));
		assert_int_equal(ntfsc_pwrite(f, buf, 8192, (off_t)clen + 60000), 8192);
		assert_int_equal(ntfsc_pwrite(f, buf, 10000 - 8192, (off_t)clen + 60000 + 8192),
				 10000 - 8192);
		clen += 70000;
		assert_int_equal(ntfsc_close(f), 0);
		if (k) {
			comp_mixed = cdata;
			comp_mixed_len = clen;
		} else {
			comp_text = cdata;
			comp_text_len = clen;
		}
	}

	/* resident: grows in its record, then out of it while mapped */
	f = open_or_fail(c, "/small.txt", O_RDWR);
	m = ntfsc_mmap(f, 0, 4096, PROT_READ | PROT_WRITE);
	assert_true(m != MAP_FAILED);
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(ntfsc_pwrite(f, buf, 40, SMALL_SIZE + 10), 40);
	memset(small + SMALL_SIZE, 0, 10);
	memcpy(small + SMALL_SIZE + 10, buf, 40);
	small_len = SMALL_SIZE + 50;
	fill_random(&small_seed, small + small_len, SMALL_BIG - small_len);
	assert_int_equal(ntfsc_pwrite(f, small + small_len, SMALL_BIG - small_len,
				      (off_t)small_len), (ssize_t)(SMALL_BIG - small_len));
	small_len = SMALL_BIG;
	m[1] = 'Q';             /* a store through the old mapping still counts */
	assert_int_equal(ntfsc_set_dirty(f, m + 1, 1), 0);
	small[1] = 'Q';
	assert_int_equal(ntfsc_munmap(f, m, 4096), 0);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();

	expect_cat("/comp/text.txt", comp_text, comp_text_len);
	expect_cat("/comp/mixed.bin", comp_mixed, comp_mixed_len);
	info_image("/comp/mixed.bin", &a);
	assert_true(a.compressed);
	assert_int_equal(a.data_size, comp_mixed_len);
	expect_cat("/small.txt", small, small_len);
	info_image("/small.txt", &a);
	assert_false(a.resident);
	assert_int_equal(a.data_size, small_len);
	expect_cat("/sparse.bin", sparse, sparse_len);
	expect_cat("/big.bin", big, big_len);
	info_image("/big.bin", &a);
	assert_int_equal(a.data_size, big_len);
	/* the room allocated to grow into was given back at shutdown */
	if (a.allocated_size != (big_len + 4095) / 4096 * 4096)
		fail_msg("/big.bin: %" PRIu64 " bytes allocated for %zu bytes of data",
			 a.allocated_size, big_len);
	info_image("/sparse.bin", &a);
	assert_true(a.sparse);
	assert_int_equal(a.data_size, sparse_len);
	testvol_expect_ntfsfix_clean(image);

	/* Bitmap truth: ntfs-3g fills every cluster it thinks free. */
	filled = ntfs3g_fill_volume();
	assert_true(filled > 0);
	expect_cat("/sparse.bin", sparse, sparse_len);
	expect_cat("/big.bin", big, big_len);

	/* Volume full: ENOSPC at the writer, what was accepted stays. */
	start_daemon(NULL);
	c = connect_daemon();
	f = open_or_fail(c, "/big.bin", O_RDWR);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	expect_refused(ntfsc_pwrite(f, huge, huge_len, (off_t)st.allocated_size + 4096),
		       ENOSPC, "pwrite on a full volume");
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	assert_int_equal(st.size, big_len);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	expect_cat("/big.bin", big, big_len);
	expect_cat("/small.txt", small, small_len);
	testvol_expect_ntfsfix_clean(image);
	free(sparse);
	free(big);
	free(small);
	free(huge);
	free(comp_text);
	free(comp_mixed);
}

/* ntfsc_ftruncate and `ntfsctl truncate`: down, up (sparse), resident. */
static void truncate_sizes(void **state)
{
	char *big, *small, *sparse, *comp, sz[32];
	size_t big_len, small_len, sparse_len, comp_len, comp_cut;
	struct ctl_result r;
	struct oracle_attr a, sparse_before;
	ntfsc *c;
	ntfsc_file *f;
	uint8_t buf[4096];
	const uint64_t down = 100001, up = 40u << 20;

	(void)state;
	cat_disk("/big.bin", &big, &big_len);
	cat_disk("/small.txt", &small, &small_len);
	assert_true(big_len > down);
	info_image("/sparse.bin", &sparse_before);
	cat_disk("/sparse.bin", &sparse, &sparse_len);
	cat_disk("/comp/text.txt", &comp, &comp_len);
	start_daemon(NULL);
	c = connect_daemon();
	/* zeroes into holes, and past the end, allocate nothing */
	f = open_or_fail(c, "/sparse.bin", O_RDWR);
	{
		static uint8_t zero[65536];

		assert_int_equal(ntfsc_pwrite(f, zero, sizeof(zero), 4 << 20), (ssize_t)sizeof(zero));
		assert_int_equal(ntfsc_pwrite(f, zero, sizeof(zero), (off_t)sparse_len - 1000),
				 (ssize_t)sizeof(zero));
	}
	assert_int_equal(ntfsc_close(f), 0);
	f = open_or_fail(c, "/big.bin", O_RDWR);
	assert_int_equal(ntfsc_ftruncate(f, (off_t)down), 0);
	assert_int_equal(ntfsc_pread(f, buf, sizeof(buf), (off_t)down - 10), 10);
	assert_memory_equal(buf, big + down - 10, 10);
	assert_int_equal(ntfsc_ftruncate(f, (off_t)up), 0);
	assert_int_equal(ntfsc_pread(f, buf, sizeof(buf), (off_t)down - 10), (ssize_t)sizeof(buf));
	assert_memory_equal(buf, big + down - 10, 10);
	for (size_t i = 10; i < sizeof(buf); i++)
		if (buf[i])
			fail_msg("byte %zu past the truncated end reads 0x%02x, not zero",
				 (size_t)down + i - 10, buf[i]);
	expect_refused(ntfsc_ftruncate(f, -1), EINVAL, "ftruncate to -1");
	assert_int_equal(ntfsc_close(f), 0);
	f = open_or_fail(c, "/small.txt", O_RDWR);
	assert_int_equal(ntfsc_ftruncate(f, 50), 0);
	assert_int_equal(ntfsc_close(f), 0);
	/* compressed: cut inside a compressed unit, then grow again */
	comp_cut = comp_len / 2 + 123;
	f = open_or_fail(c, "/comp/text.txt", O_RDWR);
	assert_int_equal(ntfsc_ftruncate(f, (off_t)comp_cut), 0);
	assert_int_equal(ntfsc_ftruncate(f, (off_t)comp_cut + 70000), 0);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)(up + 5));
	run_ctl(&r, NULL, "truncate", "/big.bin", sz, NULL);
	expect_ctl_ok(&r, "ntfsctl truncate");
	ctl_free(&r);
	stop_daemon_clean();

	big = realloc(big, up + 5);
	assert_non_null(big);
	memset(big + down, 0, up + 5 - down);
	expect_cat("/big.bin", big, up + 5);
	expect_cat("/small.txt", small, 50);
	comp = realloc(comp, comp_cut + 70000);
	assert_non_null(comp);
	memset(comp + comp_cut, 0, 70000);
	expect_cat("/comp/text.txt", comp, comp_cut + 70000);
	info_image("/comp/text.txt", &a);
	assert_true(a.compressed);
	sparse = realloc(sparse, sparse_len + 64536);
	assert_non_null(sparse);
	memset(sparse + sparse_len, 0, 64536);
	expect_cat("/sparse.bin", sparse, sparse_len + 64536);
	info_image("/sparse.bin", &a);
	if (a.compressed_size != sparse_before.compressed_size)
		fail_msg("writing zeroes into holes allocated clusters: %" PRIu64 " bytes "
			 "allocated, %" PRIu64 " before", a.compressed_size,
			 sparse_before.compressed_size);
	info_image("/big.bin", &a);
	assert_int_equal(a.data_size, up + 5);
	assert_true(a.sparse);
	assert_true(a.initialized_size <= down);
	testvol_expect_ntfsfix_clean(image);
	free(big);
	free(small);
	free(sparse);
	free(comp);
}

/* Run a command (argv) and fail the test unless it exits 0. */
static void must_run(const char *const argv[])
{
	char *out = NULL;
	size_t len;
	int st;

	if (oracle_run(argv, &out, &len, &st) || st)
		fail_msg("%s failed (exit %d): %s%s", argv[0], st, out ? out : "",
			 oracle_last_stderr());
	free(out);
}

/*
 * Free space cut into 8-cluster pieces by ntfs-3g (files made, every other
 * one deleted), then ntfsd grows a file into it: its runlist needs
 * hundreds of runs, so its $DATA continues in extension records behind an
 * $ATTRIBUTE_LIST.  ntfs-3g must read it back, and ntfsfix -n find the
 * volume clean.
 */
static void fragmented_until_attribute_list(void **state)
{
	char *mnt = tmp_path("mnt"), path[600];
	const char *mkfs[] = { "mkntfs", "-q", "-F", "-f", "-c", "512", "-L", "frag", image, NULL };
	const char *mount[] = { "ntfs-3g", image, mnt, NULL };
	const char *umount[] = { "fusermount", "-u", mnt, NULL };
	static uint8_t block[4096];
	size_t want, got_len;
	uint8_t *data;
	struct statvfs sv;
	char *got;
	bool has_list = false;
	uint64_t seed = 11;
	int i, n, fd;
	ntfsc *c;
	ntfsc_file *f;

	(void)state;
	/* a fresh 16 MiB volume with 512-byte clusters in place of the copy */
	assert_int_equal(truncate(image, 16 << 20), 0);
	must_run(mkfs);
	assert_true(mkdir(mnt, 0700) == 0 || errno == EEXIST);
	must_run(mount);
	memset(block, 0x11, sizeof(block));
	for (n = 0;; n++) {
		snprintf(path, sizeof(path), "%s/f%05d", mnt, n);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			break;
		{
			bool ok = write(fd, block, sizeof(block)) == (ssize_t)sizeof(block);

			if (close(fd) || !ok) {
				unlink(path);
				break;
			}
		}
	}
	for (i = 0; i < n; i += 2) {
		snprintf(path, sizeof(path), "%s/f%05d", mnt, i);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/grown.bin", mnt);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	close(fd);
	/* nearly all that is free: the large free extents run out, the holes
	 * between the files remain */
	assert_int_equal(statvfs(mnt, &sv), 0);
	want = ((size_t)sv.f_bavail * sv.f_frsize - (512u << 10)) & ~(size_t)0xffff;
	data = malloc(want);
	assert_non_null(data);
	fill_random(&seed, data, want);
	must_run(umount);
	rmdir(mnt);
	print_message("%d files of 4 KiB made, every other deleted; writing %zu bytes\n", n,
		      want);
	assert_true(n > 1000);

	start_daemon(NULL);
	c = connect_daemon();
	f = open_or_fail(c, "/grown.bin", O_RDWR);
	for (size_t off = 0; off < want; off += 64 << 10) {
		if (ntfsc_pwrite(f, data + off, 64 << 10, (off_t)off) != 64 << 10)
			fail_msg("pwrite at %zu: %s (%s)", off, strerror(errno), last_message());
	}
	assert_int_equal(ntfsc_fsync(f), 0);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();

	assert_int_equal(oracle_has_attr(image, "/grown.bin", "$ATTRIBUTE_LIST", &has_list), 0);
	if (!has_list) {
		const char *info[] = { "ntfsinfo", "-v", "-F", "/grown.bin", image, NULL };
		char *out = NULL;
		size_t len;
		int st;

		oracle_run(info, &out, &len, &st);
		fprintf(stderr, "%s\n", out ? out : "");
		fail_msg("/grown.bin has no $ATTRIBUTE_LIST: the test did not fragment it "
			 "enough (ntfsinfo above)");
	}
	expect_cat("/grown.bin", data, want);
	testvol_expect_ntfsfix_clean(image);
	/* a fresh ntfs-3g mount reads it the same */
	assert_true(mkdir(mnt, 0700) == 0 || errno == EEXIST);
	must_run(mount);
	snprintf(path, sizeof(path), "%s/grown.bin", mnt);
	{
		got = (char *)testvol_read_whole(path, &got_len);
		must_run(umount);
		rmdir(mnt);
		assert_non_null(got);
	}
	expect_bytes("ntfs-3g mount /grown.bin", got, got_len, data, want);
	free(got);
	free(data);
	free(mnt);
}

static void refusals(void **state)
{
	static const char *const watched[] = { "/big.bin", "/small.txt", "/$Boot" };
#define NWATCHED (sizeof(watched) / sizeof(watched[0]))
	char *before[NWATCHED];
	size_t before_len[NWATCHED];
	uint8_t buf[8192];
	struct ntfsc_stat st;
	ntfsc *c;
	ntfsc_file *f, *ro;
	uint8_t *m;

	(void)state;
	for (size_t i = 0; i < NWATCHED; i++)
		cat_disk(watched[i], &before[i], &before_len[i]);
	memset(buf, 0xa5, sizeof(buf));
	start_daemon(NULL);
	c = connect_daemon();

	/* far past what the open file's cache segment can hold */
	f = open_or_fail(c, "/big.bin", O_RDWR);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	memset(buf, 0xa5, sizeof(buf));
	expect_refused(ntfsc_pwrite(f, buf, 1, (off_t)1 << 44), EFBIG,
		       "pwrite far beyond the file");
	{
		struct ntfsc_stat st2;

		assert_int_equal(ntfsc_fstat(f, &st2), 0);
		if (st2.size != st.size)
			fail_msg("a refused write changed the size of /big.bin from %" PRIu64
				 " to %" PRIu64, st.size, st2.size);
	}
	/* argument errors on a writable handle */
	expect_refused(ntfsc_pwrite(f, buf, 1, -1), EINVAL, "pwrite at -1");
	assert_int_equal(ntfsc_pwrite(f, buf, 0, 0), 0);
	m = ntfsc_mmap(f, 0, 4096, PROT_READ);
	assert_true(m != MAP_FAILED);
	expect_refused(ntfsc_set_dirty(f, m, 4096), EINVAL, "set_dirty on a read-only mapping");
	assert_int_equal(ntfsc_munmap(f, m, 4096), 0);
	m = ntfsc_mmap(f, 100, 5000, PROT_READ | PROT_WRITE);
	assert_true(m != MAP_FAILED);
	expect_refused(ntfsc_set_dirty(f, m, 5001), EINVAL, "set_dirty past the mapping");
	expect_refused(ntfsc_set_dirty(f, m - 1, 10), EINVAL, "set_dirty before the mapping");
	expect_refused(ntfsc_set_dirty(f, buf, 10), EINVAL, "set_dirty of no mapping");
	assert_int_equal(ntfsc_munmap(f, m, 5000), 0);
	expect_refused(ntfsc_set_dirty(f, m, 10), EINVAL, "set_dirty after munmap");
	assert_int_equal(ntfsc_close(f), 0);

	/* a read-only handle */
	ro = open_or_fail(c, "/big.bin", O_RDONLY);
	expect_refused(ntfsc_pwrite(ro, buf, 10, 0), EBADF, "pwrite on a read-only handle");
	expect_refused(ntfsc_pwrite(ro, buf, 0, 0), EBADF, "empty pwrite on a read-only handle");
	m = ntfsc_mmap(ro, 0, 4096, PROT_READ | PROT_WRITE);
	expect_refused(m == MAP_FAILED ? -1 : 0, EACCES, "mmap PROT_WRITE of a read-only handle");
	assert_int_equal(ntfsc_fsync(ro), 0);  /* like fsync(2): allowed, nothing to do */
	assert_int_equal(ntfsc_close(ro), 0);

	/* system files */
	{
		static const char *const sys[] = { "/$MFT", "/$Boot", "/$MFTMirr", "/$LogFile" };

		for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
			char what[64];

			f = ntfsc_open(c, sys[i], O_RDWR);
			if (!f) {
				/* not what the brief expects, but a refusal: say which */
				print_message("ntfsc_open %s O_RDWR is refused: %s (%s)\n", sys[i],
					      strerror(errno), last_message());
				assert_true(errno == EPERM || errno == EACCES);
				continue;
			}
			snprintf(what, sizeof(what), "pwrite %s", sys[i]);
			expect_refused(ntfsc_pwrite(f, buf, 16, 0), EPERM, what);
			snprintf(what, sizeof(what), "mmap PROT_WRITE %s", sys[i]);
			m = ntfsc_mmap(f, 0, 4096, PROT_READ | PROT_WRITE);
			expect_refused(m == MAP_FAILED ? -1 : 0, EPERM, what);
			assert_int_equal(ntfsc_close(f), 0);
		}
	}
	assert_int_equal(ntfsc_sync(c), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	for (size_t i = 0; i < NWATCHED; i++) {
		expect_cat(watched[i], before[i], before_len[i]);
		free(before[i]);
	}
	testvol_expect_ntfsfix_clean(image);

	/* a read-only daemon refuses write opens */
	start_daemon((const char *const[]){ "--read-only", NULL });
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	if (f || errno != EROFS)
		fail_msg("O_RDWR open on a read-only daemon: %s", f ? "succeeded" : strerror(errno));
	ntfsc_disconnect(c);
	stop_daemon_clean();
#undef NWATCHED
}

/* ======================================================================
 * c) ntfsctl write and sync
 * ====================================================================== */

/* Random bytes into a file in the temp dir; returns its path. */
static char *data_file(const char *name, uint64_t seed, size_t len, uint8_t **bytes)
{
	char *p = tmp_path(name);
	uint8_t *b = malloc(len + 1);

	fill_random(&seed, b, len);
	assert_int_equal(testvol_write_file(p, b, len), 0);
	*bytes = b;
	return p;
}

/*
 * Whole pages written into a file nobody has read are not read from the
 * disk first (prepare-write skips them and the writer makes them
 * uptodate), partly written pages are; either way the cache and then the
 * disk hold exactly the written bytes around the file's old ones.
 */
static void whole_page_writes_skip_reads(void **state)
{
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	char *big;
	size_t big_len;
	uint8_t buf[65536 + 100];
	uint64_t read_before, read_after;
	ntfsc *c;
	ntfsc_file *f;
	uint8_t *back;

	(void)state;
	cat_disk("/big.bin", &big, &big_len);
	start_daemon(NULL);
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + 5);
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	read_before = vs.pages_read;
	ntfsc_volume_status_free(&vs);
	/* 16 whole pages at 1 MiB: nothing to read */
	assert_int_equal(ntfsc_pwrite(f, buf, 65536, 1 << 20), 65536);
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	read_after = vs.pages_read;
	ntfsc_volume_status_free(&vs);
	if (read_after != read_before)
		fail_msg("a write of 16 whole pages read %llu pages first",
			 (unsigned long long)(read_after - read_before));
	memcpy(big + (1 << 20), buf, 65536);
	/* unaligned: two partial pages must be read, the whole ones between not */
	assert_int_equal(ntfsc_pwrite(f, buf, sizeof(buf), 2 * (1 << 20) + 1000),
			 (ssize_t)sizeof(buf));
	memcpy(big + 2 * (1 << 20) + 1000, buf, sizeof(buf));
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	if (vs.pages_read - read_after > 2 + 64)  /* + readahead it may start */
		fail_msg("an unaligned 16-page write read %llu pages",
			 (unsigned long long)(vs.pages_read - read_after));
	ntfsc_volume_status_free(&vs);
	back = malloc(big_len);
	assert_non_null(back);
	assert_int_equal(ntfsc_pread(f, back, big_len, 0), (ssize_t)big_len);
	assert_memory_equal(back, big, big_len);
	free(back);
	assert_int_equal(ntfsc_fsync(f), 0);
	ntfsc_close(f);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	expect_cat("/big.bin", big, big_len);
	free(big);
}

static void ctl_write_sync(void **state)
{
	char *big, *small, *frag, *pre, off[32];
	size_t big_len, small_len, frag_len, pre_len;
	uint8_t *d1, *d2, *d3, *d4, *d5;
	char *in1, *in2, *in3, *in4, *in5;
	struct ctl_result r;

	(void)state;
	cat_disk("/big.bin", &big, &big_len);
	cat_disk("/small.txt", &small, &small_len);
	cat_disk("/frag/a.bin", &frag, &frag_len);
	cat_disk("/prealloc.bin", &pre, &pre_len);
	in1 = data_file("in1", 1, 20000, &d1);
	in2 = data_file("in2", 2, 50, &d2);
	in3 = data_file("in3", 3, 3 * 4096 + 17, &d3);
	in4 = data_file("in4", 4, 300, &d4);
	in5 = data_file("in5", 5, 20, &d5);
	/* write-back only when asked: the on-disk sizes below must lag */
	start_daemon((const char *const[]){ "--dirty-expire-ms", "3600000", NULL });

	/* pwrite path, then sync of that file */
	run_ctl(&r, in1, "write", "/big.bin", "--offset", "12345", (char *)NULL);
	expect_ctl_ok(&r, "write /big.bin");
	assert_int_equal(r.err_len, 0);
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", "/big.bin", (char *)NULL);
	expect_ctl_ok(&r, "sync /big.bin");
	ctl_free(&r);
	memcpy(big + 12345, d1, 20000);
	expect_cat("/big.bin", big, big_len);  /* on the disk while the daemon runs */

	/* --mmap into the resident file, then a whole-volume sync */
	run_ctl(&r, in2, "write", "--mmap", "/small.txt", "--offset=10", (char *)NULL);
	expect_ctl_ok(&r, "write --mmap /small.txt");
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", (char *)NULL);
	expect_ctl_ok(&r, "sync");
	ctl_free(&r);
	memcpy(small + 10, d2, 50);
	expect_cat("/small.txt", small, small_len);

	/* --mmap across pages of a fragmented file */
	run_ctl(&r, in3, "write", "/frag/a.bin", "--mmap", "--offset", "4000", (char *)NULL);
	expect_ctl_ok(&r, "write --mmap /frag/a.bin");
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", "/frag/a.bin", (char *)NULL);
	expect_ctl_ok(&r, "sync /frag/a.bin");
	ctl_free(&r);
	memcpy(frag + 4000, d3, 3 * 4096 + 17);
	expect_cat("/frag/a.bin", frag, frag_len);

	/* extending a file within its allocation (no --offset: from 0 is
	 * tested above; here across the end) */
	snprintf(off, sizeof(off), "%zu", pre_len - 100);
	run_ctl(&r, in4, "write", "/prealloc.bin", "--offset", off, (char *)NULL);
	expect_ctl_ok(&r, "write /prealloc.bin across its end");
	ctl_free(&r);
	/* before any sync, stat says the size clients see, not the record's */
	run_ctl(&r, NULL, "stat", "/prealloc.bin", (char *)NULL);
	expect_ctl_ok(&r, "stat /prealloc.bin");
	{
		char want[64];

		snprintf(want, sizeof(want), "\nsize:             %zu\n", pre_len + 200);
		if (!strstr(r.out, want))
			fail_msg("ntfsctl stat right after a write across the end does not show "
				 "size %zu:\n%s", pre_len + 200, r.out);
		/* ... and the record's own, which lags until write-back */
		snprintf(want, sizeof(want), "\ndisk size:        %zu (write-back pending)\n",
			 pre_len);
		if (!strstr(r.out, want))
			fail_msg("ntfsctl stat before the sync does not show the on-disk size %zu:\n%s",
				 pre_len, r.out);
	}
	ctl_free(&r);
	run_ctl(&r, NULL, "--json", "stat", "/prealloc.bin", (char *)NULL);
	expect_ctl_ok(&r, "--json stat /prealloc.bin");
	{
		char want[128];

		snprintf(want, sizeof(want), "\"on_disk\": {\"size\": %zu, ", pre_len);
		if (!strstr(r.out, want) || !strstr(r.out, "\"differs\": true}"))
			fail_msg("ntfsctl --json stat before the sync: no on_disk size %zu that "
				 "differs:\n%s", pre_len, r.out);
	}
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", "/prealloc.bin", (char *)NULL);
	expect_ctl_ok(&r, "sync /prealloc.bin");
	ctl_free(&r);
	/* synced: the record says what clients see, and stat shows one size */
	run_ctl(&r, NULL, "stat", "/prealloc.bin", (char *)NULL);
	expect_ctl_ok(&r, "stat /prealloc.bin after sync");
	if (strstr(r.out, "disk size:"))
		fail_msg("ntfsctl stat after the sync still shows an on-disk size:\n%s", r.out);
	ctl_free(&r);
	run_ctl(&r, NULL, "--json", "stat", "/prealloc.bin", (char *)NULL);
	expect_ctl_ok(&r, "--json stat /prealloc.bin after sync");
	{
		char want[128];

		snprintf(want, sizeof(want), "\"on_disk\": {\"size\": %zu, ", pre_len + 200);
		if (!strstr(r.out, want) || !strstr(r.out, "\"differs\": false}"))
			fail_msg("ntfsctl --json stat after the sync: on_disk is not size %zu, "
				 "the same:\n%s", pre_len + 200, r.out);
	}
	ctl_free(&r);
	pre = realloc(pre, pre_len + 200);
	memcpy(pre + pre_len - 100, d4, 300);
	pre_len += 200;
	expect_cat("/prealloc.bin", pre, pre_len);

	/* --mmap cannot grow a file: refused before anything is stored */
	run_ctl(&r, in5, "write", "/small.txt", "--offset", "290", "--mmap", (char *)NULL);
	if (r.status != 1 || !strstr(r.err, "ntfsctl: write /small.txt: --mmap cannot make a file "
				     "longer"))
		fail_msg("write --mmap past the end: exit %d, stderr \"%s\"", r.status, r.err);
	ctl_free(&r);
	/* refusals come with the daemon's message */
	run_ctl(&r, in5, "write", "/$Boot", (char *)NULL);
	if (r.status != 1 || strncmp(r.err, "ntfsctl: write /$Boot: ", 23) ||
	    !strstr(r.err, "system file"))
		fail_msg("write /$Boot: exit %d, stderr \"%s\"", r.status, r.err);
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", "/no/such/file", (char *)NULL);
	{
		char want[128];

		snprintf(want, sizeof(want), "ntfsctl: sync /no/such/file: %s\n", strerror(ENOENT));
		if (r.status != 1 || strcmp(r.err, want))
			fail_msg("sync /no/such/file: exit %d, stderr \"%s\", want \"%s\"", r.status,
				 r.err, want);
	}
	ctl_free(&r);
	run_ctl(&r, NULL, "write", "/big.bin", "--offset", "-1", (char *)NULL);
	assert_int_equal(r.status, 2);
	ctl_free(&r);
	run_ctl(&r, NULL, "cat", "/big.bin", "--mmap", (char *)NULL);
	assert_int_equal(r.status, 2);
	ctl_free(&r);

	/* status shows write-back */
	run_ctl(&r, NULL, "status", (char *)NULL);
	expect_ctl_ok(&r, "status");
	if (!strstr(r.out, "dirty limit:") || !strstr(r.out, "dirty background:") ||
	    !strstr(r.out, "pages written:") || !strstr(r.out, "write errors:") ||
	    !strstr(r.out, "io engine:") || !strstr(r.out, "flushers:"))
		fail_msg("ntfsctl status lacks write-back lines:\n%s", r.out);
	ctl_free(&r);
	run_ctl(&r, NULL, "--json", "status", (char *)NULL);
	expect_ctl_ok(&r, "--json status");
	if (!strstr(r.out, "\"dirty_limit\": ") || !strstr(r.out, "\"io_engine\": \"") ||
	    !strstr(r.out, "\"pages_written\": ") || !strstr(r.out, "\"flushers\": "))
		fail_msg("ntfsctl --json status lacks write-back fields:\n%s", r.out);
	ctl_free(&r);
	{
		/* the library sees the same */
		ntfsc *c = connect_daemon();
		struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;

		assert_int_equal(ntfsc_volume_status(c, &vs), 0);
		assert_true(vs.pages_written > 0);
		assert_int_equal(vs.write_errors, 0);
		assert_true(vs.dirty_limit >= vs.dirty_background);
		assert_non_null(vs.io_engine);
		assert_true(vs.flushers > 0);
		print_message("write-back: %" PRIu64 " pages written, io engine %s, %u flushers\n",
			      vs.pages_written, vs.io_engine, vs.flushers);
		ntfsc_volume_status_free(&vs);
		ntfsc_disconnect(c);
	}

	stop_daemon_clean();
	expect_cat("/big.bin", big, big_len);
	expect_cat("/small.txt", small, small_len);
	expect_cat("/frag/a.bin", frag, frag_len);
	expect_cat("/prealloc.bin", pre, pre_len);
	testvol_expect_ntfsfix_clean(image);
	free(big);
	free(small);
	free(frag);
	free(pre);
	free(d1);
	free(d2);
	free(d3);
	free(d4);
	free(d5);
	free(in1);
	free(in2);
	free(in3);
	free(in4);
	free(in5);
}

/*
 * Growing an open file past what its segments hold grows them in place,
 * with every handle open: a sparse truncate up by 3 GiB (room to grow is
 * 1 GiB past the size at open), then bytes written at the new end with
 * pwrite and through ntfsc_mmap.  A second client that mapped the file at
 * its old size reads them (its old mapping keeps working, the new pages
 * are mapped when it needs them), through pread and ntfsc_mmap, and its
 * mapping of the start of the file still reads what it did.  ntfsinfo and
 * a fresh daemon read the new size and the bytes; ntfsfix -n is clean.
 */
static void growth_past_segment_while_open(void **state)
{
	const uint64_t grow = 3ull << 30;
	struct ntfsc_stat st;
	uint64_t size, target;
	uint8_t one = 0xa5, got = 0, head[4096], head2[4096], tail[8192];
	const uint8_t *old_map;
	ntfsc_file *f, *r;
	ntfsc *c, *c2;
	uint8_t *w;

	(void)state;
	start_daemon(NULL);
	c = connect_daemon();
	c2 = connect_daemon();
	f = ntfsc_open(c, "/sparse.bin", O_RDWR);
	assert_non_null(f);
	r = ntfsc_open(c2, "/sparse.bin", O_RDONLY);
	assert_non_null(r);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	size = st.size;
	target = size + grow;
	assert_int_equal(ntfsc_pread(r, head, sizeof(head), 0), (ssize_t)sizeof(head));
	old_map = ntfsc_mmap(r, 0, sizeof(head), PROT_READ);
	assert_true(old_map != MAP_FAILED);
	if (ntfsc_ftruncate(f, (off_t)target))
		fail_msg("a truncate 3 GiB past the open segment: %s (%s)", strerror(errno),
			 ntfsc_last_error_message(c));
	assert_int_equal(ntfsc_pwrite(f, &one, 1, (off_t)target), 1);
	/* a store through a mapping of the grown part */
	w = ntfsc_mmap(f, (off_t)(target - 8192), 8192, PROT_READ | PROT_WRITE);
	if (w == MAP_FAILED)
		fail_msg("ntfsc_mmap of the grown part: %s (%s)", strerror(errno),
			 ntfsc_last_error_message(c));
	for (size_t i = 0; i < 8192; i++)
		w[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(ntfsc_set_dirty(f, w, 8192), 0);
	assert_int_equal(ntfsc_munmap(f, w, 8192), 0);
	/* the reader mapped the old size: it maps the rest when it needs it */
	assert_int_equal(ntfsc_pread(r, &got, 1, (off_t)target), 1);
	assert_int_equal(got, one);
	assert_int_equal(ntfsc_pread(r, tail, sizeof(tail), (off_t)(target - 8192)),
			 (ssize_t)sizeof(tail));
	for (size_t i = 0; i < 8192; i++)
		if (tail[i] != (uint8_t)(i * 7 + 1))
			fail_msg("the reader reads byte %zu of the grown tail as %u", i, tail[i]);
	{
		const uint8_t *m = ntfsc_mmap(r, (off_t)(target - 8192), 8193, PROT_READ);

		if (m == MAP_FAILED)
			fail_msg("the reader's ntfsc_mmap of the grown part: %s (%s)",
				 strerror(errno), ntfsc_last_error_message(c2));
		assert_memory_equal(m, tail, sizeof(tail));
		assert_int_equal(m[8192], one);
		assert_int_equal(ntfsc_munmap(r, (void *)m, 8193), 0);
	}
	assert_memory_equal(old_map, head, sizeof(head));
	assert_int_equal(ntfsc_pread(r, head2, sizeof(head2), 0), (ssize_t)sizeof(head2));
	assert_memory_equal(head2, head, sizeof(head));
	assert_int_equal(ntfsc_munmap(r, (void *)old_map, sizeof(head)), 0);
	assert_int_equal(ntfsc_close(r), 0);
	ntfsc_disconnect(c2);
	assert_int_equal(ntfsc_fsync(f), 0);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	assert_int_equal(st.size, target + 1);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	{
		const char *argv[] = { "ntfsinfo", "-F", "/sparse.bin", image, NULL };
		char *out = NULL, want[64];
		size_t len;

		if (oracle_run(argv, &out, &len, NULL))
			fail_msg("ntfsinfo: %s", oracle_last_stderr());
		/* $DATA's "Data size" (its $FILE_NAME copy is "Data Size") */
		snprintf(want, sizeof(want), "Data size:\t\t %llu ", (unsigned long long)(target + 1));
		if (!strstr(out, want) && fprintf(stderr, "%s", out) >= 0)
			fail_msg("ntfsinfo does not give the data size %llu (see its output above)",
				 (unsigned long long)(target + 1));
		free(out);
	}
	testvol_expect_ntfsfix_clean(image);
	/* a fresh daemon reads the byte at the end and zeroes before it */
	start_daemon(NULL);
	c = connect_daemon();
	f = ntfsc_open(c, "/sparse.bin", O_RDONLY);
	assert_non_null(f);
	assert_int_equal(ntfsc_pread(f, &got, 1, (off_t)target), 1);
	assert_int_equal(got, one);
	assert_int_equal(ntfsc_pread(f, tail, sizeof(tail), (off_t)(target - 8192)),
			 (ssize_t)sizeof(tail));
	for (size_t i = 0; i < 8192; i++)
		if (tail[i] != (uint8_t)(i * 7 + 1))
			fail_msg("a fresh daemon reads byte %zu of the grown tail as %u", i, tail[i]);
	assert_int_equal(ntfsc_pread(f, &got, 1, (off_t)(target - 8193)), 1);
	assert_int_equal(got, 0);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
}

/* ---- names ---- */

static bool name_listed(char **names, size_t n, const char *want)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], want))
			return true;
	return false;
}

/* The names of dir on the stopped image by ntfsls, with the count of the
 * entries a listing must hold exactly (want, nwant), "." and ".." aside. */
static void expect_ls(const char *dir, const char *const *want, size_t nwant)
{
	char **names;
	size_t n, real = 0;

	if (oracle_ls(image, dir, &names, &n))
		fail_msg("ntfsls %s: %s", dir, oracle_last_stderr());
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], ".") && strcmp(names[i], ".."))
			real++;
	if (real != nwant)
		fail_msg("ntfsls %s: %zu names, the model has %zu", dir, real, nwant);
	for (size_t i = 0; i < nwant; i++)
		if (!name_listed(names, n, want[i]))
			fail_msg("ntfsls %s: no %s", dir, want[i]);
	oracle_free_names(names, n);
}

/* Sleuth Kit's fls -r -p -u (allocated names only) of the image lists path
 * (an independent parser). */
static void expect_fls(const char *out, const char *path, bool present)
{
	char line[600];

	snprintf(line, sizeof(line), ":\t%s\n", path + 1);
	if (!!strstr(out, line) != present)
		fail_msg("fls -r -p -u %s %s", present ? "does not list" : "still lists", path);
}

/*
 * Names through the daemon: ntfsctl write makes a missing file, mkdir -p
 * makes the directories on the way; O_CREAT, O_EXCL (EEXIST, also in
 * another case) and O_TRUNC; a removal while the file is open takes the
 * name and the handle keeps working; rm of a directory is EISDIR, rmdir of a file
 * ENOTDIR, of a full directory ENOTEMPTY; names Windows forbids EINVAL;
 * 300 files made in one directory and 100 removed (its index grows out of
 * the record).  After the stop: ntfsls and Sleuth Kit's fls list exactly
 * the model, ntfscat reads the data, ntfsfix -n is clean.
 */
static void names_through_the_daemon(void **state)
{
	static const char data[] = "a file made through ntfsd\n";
	struct ctl_result r;
	char *in = tmp_path("in.txt"), path[64], *fls = NULL;
	const char *many[200];
	char many_buf[200][16];
	ntfsc_file *f, *g;
	size_t len;
	ntfsc *c;
	int fd, i;

	(void)state;
	fd = open(in, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, sizeof(data) - 1), (ssize_t)(sizeof(data) - 1));
	close(fd);
	start_daemon(NULL);

	run_ctl(&r, NULL, "mkdir", "-p", "/made/deep/er", (char *)NULL);
	expect_ctl_ok(&r, "mkdir -p /made/deep/er");
	ctl_free(&r);
	run_ctl(&r, NULL, "mkdir", "-p", "/made/deep", (char *)NULL);
	expect_ctl_ok(&r, "mkdir -p of directories that exist");
	ctl_free(&r);
	run_ctl(&r, in, "write", "/made/deep/new.txt", (char *)NULL);
	expect_ctl_ok(&r, "write of a missing file");
	ctl_free(&r);

	c = connect_daemon();
	/* O_CREAT | O_EXCL: new, then EEXIST, also in another case */
	f = ntfsc_open(c, "/made/x.bin", O_RDWR | O_CREAT | O_EXCL);
	assert_non_null(f);
	assert_int_equal(ntfsc_pwrite(f, "xyz", 3, 0), 3);
	assert_null(ntfsc_open(c, "/made/x.bin", O_RDWR | O_CREAT | O_EXCL));
	assert_int_equal(errno, EEXIST);
	assert_null(ntfsc_open(c, "/made/X.BIN", O_RDWR | O_CREAT | O_EXCL));
	assert_int_equal(errno, EEXIST);
	assert_int_equal(ntfsc_close(f), 0);
	/* open: the name goes, the handle keeps the file (test_names_concurrent
	 * has the rest) */
	f = ntfsc_open(c, "/made/open.bin", O_RDWR | O_CREAT | O_EXCL);
	assert_non_null(f);
	assert_int_equal(ntfsc_pwrite(f, "abc", 3, 0), 3);
	if (ntfsc_unlink(c, "/made/open.bin"))
		fail_msg("unlink of an open file: %s", strerror(errno));
	assert_null(ntfsc_open(c, "/made/open.bin", O_RDONLY));
	assert_int_equal(errno, ENOENT);
	{
		char back[3];

		assert_int_equal(ntfsc_pread(f, back, 3, 0), 3);
		assert_memory_equal(back, "abc", 3);
	}
	assert_int_equal(ntfsc_close(f), 0);
	/* O_TRUNC */
	g = ntfsc_open(c, "/made/x.bin", O_RDWR | O_TRUNC);
	assert_non_null(g);
	{
		struct ntfsc_stat st;

		assert_int_equal(ntfsc_fstat(g, &st), 0);
		assert_int_equal(st.size, 0);
	}
	assert_int_equal(ntfsc_close(g), 0);
	assert_int_equal(ntfsc_unlink(c, "/made/x.bin"), 0);
	assert_null(ntfsc_open(c, "/made/x.bin", O_RDONLY));
	assert_int_equal(errno, ENOENT);
	/* the wrong kind, a full directory, forbidden names, no parent */
	if (ntfsc_unlink(c, "/made/deep") == 0 || errno != EISDIR)
		fail_msg("unlink of a directory: %s, not EISDIR", strerror(errno));
	/* (new.txt is cached with its bytes still dirty: a refused removal
	 * must keep every one of them, checked after the stop) */
	if (ntfsc_rmdir(c, "/made/deep/new.txt") == 0 || errno != ENOTDIR)
		fail_msg("rmdir of a file: %s, not ENOTDIR", strerror(errno));
	if (ntfsc_rmdir(c, "/made/deep") == 0 || errno != ENOTEMPTY)
		fail_msg("rmdir of a full directory: %s, not ENOTEMPTY", strerror(errno));
	if (!strstr(ntfsc_last_error_message(c), "/made/deep"))
		fail_msg("the ENOTEMPTY message does not name the path: %s",
			 ntfsc_last_error_message(c));
	assert_null(ntfsc_open(c, "/made/a:b", O_RDWR | O_CREAT));
	assert_int_equal(errno, EINVAL);
	/* NTFS metadata takes no new names and loses none */
	assert_null(ntfsc_open(c, "/$Extend/x", O_RDWR | O_CREAT));
	assert_int_equal(errno, EPERM);
	assert_int_equal(ntfsc_mkdir(c, "/$Extend/d") == 0 ? 0 : errno, EPERM);
	assert_int_equal(ntfsc_unlink(c, "/$MFT") == 0 ? 0 : errno, EPERM);
	assert_int_equal(ntfsc_unlink(c, "/$Extend/$Quota") == 0 ? 0 : errno, EPERM);
	assert_int_equal(ntfsc_mkdir(c, "/nowhere/d") == 0 ? 0 : errno, ENOENT);
	/* many names in one directory, some removed again */
	assert_int_equal(ntfsc_mkdir(c, "/many"), 0);
	for (i = 0; i < 300; i++) {
		snprintf(path, sizeof(path), "/many/file-%03d", i);
		f = ntfsc_open(c, path, O_RDWR | O_CREAT | O_EXCL);
		if (!f)
			fail_msg("create %s: %s (%s)", path, strerror(errno),
				 ntfsc_last_error_message(c));
		assert_int_equal(ntfsc_close(f), 0);
	}
	for (i = 0; i < 300; i += 3) {
		snprintf(path, sizeof(path), "/many/file-%03d", i);
		if (ntfsc_unlink(c, path))
			fail_msg("unlink %s: %s (%s)", path, strerror(errno),
				 ntfsc_last_error_message(c));
	}
	ntfsc_disconnect(c);
	run_ctl(&r, NULL, "rmdir", "/made/deep/er", (char *)NULL);
	expect_ctl_ok(&r, "rmdir /made/deep/er");
	ctl_free(&r);
	stop_daemon_clean();

	expect_ls("/made", (const char *const[]){ "deep" }, 1);
	expect_ls("/made/deep", (const char *const[]){ "new.txt" }, 1);
	for (i = 0, len = 0; i < 300; i++)
		if (i % 3) {
			snprintf(many_buf[len], sizeof(many_buf[len]), "file-%03d", i);
			many[len] = many_buf[len];
			len++;
		}
	expect_ls("/many", many, len);
	expect_cat("/made/deep/new.txt", data, sizeof(data) - 1);
	{
		const char *argv[] = { "fls", "-r", "-p", "-u", "-f", "ntfs", image, NULL };
		size_t n;

		if (oracle_run(argv, &fls, &n, NULL))
			fail_msg("fls: %s", oracle_last_stderr());
	}
	expect_fls(fls, "/made/deep/new.txt", true);
	expect_fls(fls, "/many/file-001", true);
	expect_fls(fls, "/many/file-000", false);
	expect_fls(fls, "/made/x.bin", false);
	expect_fls(fls, "/made/deep/er", false);
	free(fls);
	testvol_expect_ntfsfix_clean(image);
	free(in);
}

/* ntfsinfo -F path: its MFT record number and that of the directory its
 * (only) $FILE_NAME names as parent. */
static void ntfsinfo_parent(const char *path, unsigned long long *ino, unsigned long long *parent)
{
	const char *argv[] = { "ntfsinfo", "-F", path, image, NULL };
	char *out = NULL, *p;
	size_t n;

	if (oracle_run(argv, &out, &n, NULL))
		fail_msg("ntfsinfo -F %s: %s", path, oracle_last_stderr());
	p = strstr(out, "Dumping Inode ");
	if (!p || sscanf(p, "Dumping Inode %llu", ino) != 1)
		fail_msg("ntfsinfo -F %s: no inode number in\n%s", path, out);
	p = strstr(out, "Parent directory:");
	if (!p || sscanf(p, "Parent directory: %llu", parent) != 1)
		fail_msg("ntfsinfo -F %s: no parent directory in\n%s", path, out);
	if (strstr(p + 1, "Parent directory:"))
		fail_msg("ntfsinfo -F %s: more than one $FILE_NAME:\n%s", path, out);
	free(out);
}

/* After our renames, ntfs-3g goes on in the same directories: through a
 * mount of the image, a moved directory's ".." is its new parent, and
 * ntfs-3g creates, removes and renames there; what it did is what a
 * second mount lists.  A failure is reported after the unmount. */
static void ntfs3g_goes_on_after_renames(void)
{
	static const char *const need[] = { "ntfs-3g", NULL };
	static struct testvol tv;
	char a[600], b[600], err[800] = "";
	struct stat up, r2;
	int fd;

	if (testvol_create(&tv, "renames", need))
		fail_msg("no scratch volume for ntfs-3g");
	if (testvol_mount(&tv, image, "no_detach")) {
		testvol_print_log_tail(&tv);
		testvol_destroy(&tv);
		fail_msg("ntfs-3g refused %s after our renames", image);
	}
	snprintf(a, sizeof(a), "%s/r2/sub2/..", tv.mnt);
	snprintf(b, sizeof(b), "%s/r2", tv.mnt);
	if (stat(a, &up) || stat(b, &r2) || up.st_ino != r2.st_ino)
		snprintf(err, sizeof(err), "through ntfs-3g, /r2/sub2/.. is not /r2");
	snprintf(a, sizeof(a), "%s/to/by-ntfs-3g", tv.mnt);
	fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || write(fd, "x", 1) != 1)
		snprintf(err, sizeof(err), "ntfs-3g create %s: %s", a, strerror(errno));
	if (fd >= 0)
		close(fd);
	snprintf(a, sizeof(a), "%s/to/moved-000", tv.mnt);
	if (!err[0] && unlink(a))
		snprintf(err, sizeof(err), "ntfs-3g unlink %s: %s", a, strerror(errno));
	snprintf(a, sizeof(a), "%s/to/moved-001", tv.mnt);
	snprintf(b, sizeof(b), "%s/r2/sub2/from-to", tv.mnt);
	if (!err[0] && rename(a, b))
		snprintf(err, sizeof(err), "ntfs-3g rename %s: %s", a, strerror(errno));
	if (testvol_unmount(&tv)) {
		testvol_destroy(&tv);
		fail_msg("unmounting %s failed", tv.mnt);
	}
	testvol_destroy(&tv);
	if (err[0])
		fail_msg("%s", err);
	expect_ls("/r2/sub2", (const char *const[]){ "f1", "from-to" }, 2);
	expect_cat("/r2/sub2/from-to", "/from/file-001", 14);
	testvol_expect_ntfsfix_clean(image);
}

/* A new file at path holding len bytes of data, closed. */
static void make_file(ntfsc *c, const char *path, const void *data, size_t len)
{
	ntfsc_file *f = ntfsc_open(c, path, O_RDWR | O_CREAT | O_EXCL);

	if (!f)
		fail_msg("create %s: %s (%s)", path, strerror(errno), ntfsc_last_error_message(c));
	if (len && ntfsc_pwrite(f, data, len, 0) != (ssize_t)len)
		fail_msg("write %s: %s", path, strerror(errno));
	assert_int_equal(ntfsc_close(f), 0);
}

static void expect_rename_refused(ntfsc *c, const char *from, const char *to, int want)
{
	if (ntfsc_rename(c, from, to) == 0)
		fail_msg("rename %s -> %s succeeded, want %s", from, to, strerror(want));
	if (errno != want)
		fail_msg("rename %s -> %s: %s (%s), want %s", from, to, strerror(errno),
			 ntfsc_last_error_message(c), strerror(want));
	if (!strstr(ntfsc_last_error_message(c), from))
		fail_msg("rename %s -> %s: the message does not name the path: %s", from, to,
			 ntfsc_last_error_message(c));
}

/*
 * Renames through the daemon: in one directory, across directories, over
 * an existing file, a directory with files into another parent, a change
 * of case only; refusals (a directory into its own subtree EINVAL, over a
 * full directory ENOTEMPTY, the kinds crossed EISDIR/ENOTDIR, a missing
 * source ENOENT, metadata EPERM, all with the source untouched); an open
 * target replaced, its handle still reading the old file; a file renamed
 * while open keeps taking writes
 * through its handle; 300 files moved from one directory to another (the
 * new index grows out of the record, the old one empties).  After the
 * stop: ntfsls and Sleuth Kit's fls list exactly the model, ntfscat reads
 * the data, ntfsinfo shows each moved file's one $FILE_NAME naming its new
 * parent, ntfsfix -n is clean; then ntfs-3g goes on in those directories.
 */
static void renames_through_the_daemon(void **state)
{
	static const char one[] = "the first file\n", two[] = "the second file, longer\n";
	static const char early[] = "written before the rename|", late[] = "and after it\n";
	char path[64], to[64], *fls = NULL;
	const char *moved[300];
	char moved_buf[300][20];
	ntfsc_file *f, *g;
	ntfsc *c;
	int i;

	(void)state;
	start_daemon(NULL);
	c = connect_daemon();
	assert_int_equal(ntfsc_mkdir(c, "/r"), 0);
	assert_int_equal(ntfsc_mkdir(c, "/r2"), 0);
	assert_int_equal(ntfsc_mkdir(c, "/r/sub"), 0);
	make_file(c, "/r/a.txt", one, sizeof(one) - 1);
	make_file(c, "/r/sub/f1", two, sizeof(two) - 1);
	make_file(c, "/r2/d.txt", two, sizeof(two) - 1);

	/* same directory, then across, then over an existing file */
	assert_int_equal(ntfsc_rename(c, "/r/a.txt", "/r/b.txt"), 0);
	assert_null(ntfsc_open(c, "/r/a.txt", O_RDONLY));
	assert_int_equal(errno, ENOENT);
	assert_int_equal(ntfsc_rename(c, "/r/b.txt", "/r2/c.txt"), 0);
	assert_int_equal(ntfsc_rename(c, "/r2/c.txt", "/r2/d.txt"), 0);
	/* a change of case only */
	assert_int_equal(ntfsc_rename(c, "/r2/d.txt", "/r2/D.TXT"), 0);
	/* a directory with a file into another parent */
	assert_int_equal(ntfsc_rename(c, "/r/sub", "/r2/sub2"), 0);
	f = ntfsc_open(c, "/r2/sub2/f1", O_RDONLY);
	assert_non_null(f);
	assert_int_equal(ntfsc_close(f), 0);

	/* refusals */
	expect_rename_refused(c, "/r2/sub2", "/r2/sub2/inner", EINVAL);
	assert_int_equal(ntfsc_mkdir(c, "/r/empty"), 0);
	expect_rename_refused(c, "/r/empty", "/r2/sub2", ENOTEMPTY);
	expect_rename_refused(c, "/r/empty", "/r2/D.TXT", ENOTDIR);
	expect_rename_refused(c, "/r2/D.TXT", "/r/empty", EISDIR);
	expect_rename_refused(c, "/r/none", "/r/other", ENOENT);
	expect_rename_refused(c, "/$MFT", "/mft", EPERM);
	expect_rename_refused(c, "/r2/D.TXT", "/$Extend/x", EPERM);
	make_file(c, "/r/busy", one, sizeof(one) - 1);
	g = ntfsc_open(c, "/r/busy", O_RDONLY);
	assert_non_null(g);
	/* over an open target: replaced; the target's handle keeps its file */
	make_file(c, "/r/rep", two, sizeof(two) - 1);
	if (ntfsc_rename(c, "/r/rep", "/r/busy"))
		fail_msg("rename over an open file: %s (%s)", strerror(errno),
			 ntfsc_last_error_message(c));
	{
		char back[sizeof(one)];

		assert_int_equal(ntfsc_pread(g, back, sizeof(back), 0), (ssize_t)sizeof(one) - 1);
		assert_memory_equal(back, one, sizeof(one) - 1);
	}
	assert_int_equal(ntfsc_close(g), 0);
	/* an empty directory is replaced by a directory */
	assert_int_equal(ntfsc_mkdir(c, "/r/gone"), 0);
	assert_int_equal(ntfsc_rename(c, "/r/empty", "/r/gone"), 0);

	/* renamed while open: the handle goes on writing the same file */
	f = ntfsc_open(c, "/r/open.bin", O_RDWR | O_CREAT | O_EXCL);
	assert_non_null(f);
	assert_int_equal(ntfsc_pwrite(f, early, sizeof(early) - 1, 0), (ssize_t)sizeof(early) - 1);
	assert_int_equal(ntfsc_rename(c, "/r/open.bin", "/r2/open2.bin"), 0);
	assert_int_equal(ntfsc_pwrite(f, late, sizeof(late) - 1, sizeof(early) - 1),
			 (ssize_t)sizeof(late) - 1);
	assert_int_equal(ntfsc_fsync(f), 0);
	assert_int_equal(ntfsc_close(f), 0);

	/* 300 files from one directory to another */
	assert_int_equal(ntfsc_mkdir(c, "/from"), 0);
	assert_int_equal(ntfsc_mkdir(c, "/to"), 0);
	for (i = 0; i < 300; i++) {
		snprintf(path, sizeof(path), "/from/file-%03d", i);
		make_file(c, path, path, strlen(path));
	}
	for (i = 0; i < 300; i++) {
		snprintf(path, sizeof(path), "/from/file-%03d", i);
		snprintf(to, sizeof(to), "/to/moved-%03d", i);
		if (ntfsc_rename(c, path, to))
			fail_msg("rename %s -> %s: %s (%s)", path, to, strerror(errno),
				 ntfsc_last_error_message(c));
		snprintf(moved_buf[i], sizeof(moved_buf[i]), "moved-%03d", i);
		moved[i] = moved_buf[i];
	}
	ntfsc_disconnect(c);
	/* ntfsctl mv: a rename, a refusal naming the path (1), a usage error (2) */
	{
		struct ctl_result r;

		run_ctl(&r, NULL, "mv", "/r/gone", "/r/gone2", (char *)NULL);
		expect_ctl_ok(&r, "mv /r/gone /r/gone2");
		ctl_free(&r);
		run_ctl(&r, NULL, "mv", "/r/none", "/r/x", (char *)NULL);
		if (r.status != 1 || !r.err || !strstr(r.err, "/r/none"))
			fail_msg("mv of a missing file: status %d, stderr %s", r.status,
				 r.err ? r.err : "");
		ctl_free(&r);
		run_ctl(&r, NULL, "mv", "/r/gone2", (char *)NULL);
		if (r.status != 2)
			fail_msg("mv without NEWPATH: status %d, not 2", r.status);
		ctl_free(&r);
	}
	stop_daemon_clean();

	expect_ls("/r", (const char *const[]){ "busy", "gone2" }, 2);
	expect_ls("/r2", (const char *const[]){ "D.TXT", "sub2", "open2.bin" }, 3);
	expect_ls("/r2/sub2", (const char *const[]){ "f1" }, 1);
	expect_ls("/from", NULL, 0);
	expect_ls("/to", moved, 300);
	expect_cat("/r2/D.TXT", one, sizeof(one) - 1);
	expect_cat("/r/busy", two, sizeof(two) - 1);
	expect_cat("/r2/sub2/f1", two, sizeof(two) - 1);
	expect_cat("/r2/open2.bin", "written before the rename|and after it\n",
		   sizeof(early) + sizeof(late) - 2);
	expect_cat("/to/moved-123", "/from/file-123", 14);
	{
		const char *argv[] = { "fls", "-r", "-p", "-u", "-f", "ntfs", image, NULL };
		size_t n;

		if (oracle_run(argv, &fls, &n, NULL))
			fail_msg("fls: %s", oracle_last_stderr());
	}
	expect_fls(fls, "/r2/D.TXT", true);
	expect_fls(fls, "/r2/d.txt", false);
	expect_fls(fls, "/r2/c.txt", false);
	expect_fls(fls, "/r/b.txt", false);
	expect_fls(fls, "/r2/sub2/f1", true);
	expect_fls(fls, "/r/sub/f1", false);
	expect_fls(fls, "/r/gone2", true);
	expect_fls(fls, "/r/gone", false);
	expect_fls(fls, "/r/empty", false);
	expect_fls(fls, "/r2/open2.bin", true);
	expect_fls(fls, "/to/moved-000", true);
	expect_fls(fls, "/to/moved-299", true);
	expect_fls(fls, "/from/file-150", false);
	free(fls);
	/* the moved directory's and file's $FILE_NAME name the new parent
	 * (a directory's ".."), and each kept one name */
	{
		unsigned long long r2, up, sub2, f1, up2;

		ntfsinfo_parent("/r2", &r2, &up);
		ntfsinfo_parent("/r2/sub2", &sub2, &up);
		assert_int_equal(up, r2);
		ntfsinfo_parent("/r2/sub2/f1", &f1, &up2);
		assert_int_equal(up2, sub2);
		ntfsinfo_parent("/r2/open2.bin", &f1, &up);
		assert_int_equal(up, r2);
	}
	testvol_expect_ntfsfix_clean(image);
	ntfs3g_goes_on_after_renames();
}

/* ---- times ---- */

struct si_times {
	time_t created, modified, mft_changed, accessed;
};

/* "2026-12-03 16:17:10.530995600 (UTC)" after label in istat's output,
 * the first occurrence ($STANDARD_INFORMATION comes before $FILE_NAME). */
static time_t istat_time(const char *out, const char *label)
{
	const char *p = strstr(out, label);
	struct tm tm = { 0 };

	if (!p || !strptime(p + strlen(label), " %Y-%m-%d %H:%M:%S", &tm))
		fail_msg("istat: no '%s' time in:\n%s", label, out);
	return timegm(&tm);
}

/* The $STANDARD_INFORMATION times of path on the stopped image, read by
 * The Sleuth Kit (istat), and the modification time by ntfs-3g's ntfsinfo
 * too: both must say the same second. */
static struct si_times si_times(const char *path)
{
	const char *info_argv[] = { "ntfsinfo", "-F", path, image, NULL };
	char *out = NULL, *p, ino[32];
	struct si_times t;
	struct tm tm = { 0 };
	size_t len;

	if (oracle_run(info_argv, &out, &len, NULL) || !(p = strstr(out, "Dumping Inode ")))
		fail_msg("ntfsinfo -F %s: %s", path, oracle_last_stderr());
	snprintf(ino, sizeof(ino), "%llu", strtoull(p + 14, NULL, 10));
	p = strstr(out, "File Altered Time:");
	if (!p || !strptime(p + 18, " %a %b %d %H:%M:%S %Y", &tm))
		fail_msg("ntfsinfo -F %s: no File Altered Time:\n%s", path, out);
	free(out);
	{
		const char *istat_argv[] = { "istat", "-f", "ntfs", image, ino, NULL };

		if (oracle_run(istat_argv, &out, &len, NULL))
			fail_msg("istat %s %s: %s", image, ino, oracle_last_stderr());
	}
	t.created = istat_time(out, "Created:");
	t.modified = istat_time(out, "File Modified:");
	t.mft_changed = istat_time(out, "MFT Modified:");
	t.accessed = istat_time(out, "Accessed:");
	free(out);
	if (timegm(&tm) != t.modified)
		fail_msg("%s: ntfsinfo says modified at %lld, istat %lld", path,
			 (long long)timegm(&tm), (long long)t.modified);
	return t;
}

/* Until the clock is past t by two seconds (so a moved time shows). */
static void wait_past(time_t t)
{
	while (time(NULL) < t + 2)
		testvol_sleep_ms(100);
}

static void expect_moved(const char *what, struct si_times before, struct si_times after,
			 time_t t1, time_t t2)
{
	if (after.modified < t1 - 1 || after.modified > t2 + 1 || after.mft_changed < t1 - 1 ||
	    after.mft_changed > t2 + 1)
		fail_msg("%s: modified %lld, MFT changed %lld, not within [%lld, %lld]", what,
			 (long long)after.modified, (long long)after.mft_changed,
			 (long long)t1, (long long)t2);
	if (after.created != before.created || after.accessed != before.accessed)
		fail_msg("%s: created %lld -> %lld, accessed %lld -> %lld (must not move)", what,
			 (long long)before.created, (long long)after.created,
			 (long long)before.accessed, (long long)after.accessed);
}

/*
 * $STANDARD_INFORMATION times as rsync and backup tools read them: a write
 * (in place, no size change) and a size change move the modification and
 * MFT change times to when they happened; a read moves nothing; creation
 * and access times never move (README, "Times").  Read back by istat and
 * ntfsinfo, after an fsync and after a plain stop.
 */
static void times_move_on_write(void **state)
{
	static uint8_t buf[4096];
	struct si_times t0, t1, t2, t3;
	time_t a, b;
	ntfsc_file *f;
	ntfsc *c;

	(void)state;
	t0 = si_times("/big.bin");
	wait_past(t0.modified > t0.mft_changed ? t0.modified : t0.mft_changed);
	start_daemon(NULL);
	c = connect_daemon();
	a = time(NULL);
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(ntfsc_pwrite(f, buf, sizeof(buf), 8192), (ssize_t)sizeof(buf));
	assert_int_equal(ntfsc_fsync(f), 0);
	b = time(NULL);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	t1 = si_times("/big.bin");
	expect_moved("a write and fsync", t0, t1, a, b);

	/* a size change, written by the stop's write-back */
	wait_past(t1.modified);
	start_daemon(NULL);
	c = connect_daemon();
	a = time(NULL);
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	{
		struct ntfsc_stat st;

		assert_int_equal(ntfsc_fstat(f, &st), 0);
		assert_int_equal(ntfsc_ftruncate(f, (off_t)st.size + 1), 0);
	}
	b = time(NULL);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	t2 = si_times("/big.bin");
	expect_moved("a truncate up", t1, t2, a, b);

	/* a read moves nothing */
	wait_past(t2.modified);
	start_daemon(NULL);
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDONLY);
	assert_non_null(f);
	assert_int_equal(ntfsc_pread(f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	t3 = si_times("/big.bin");
	if (memcmp(&t2, &t3, sizeof(t2)))
		fail_msg("a read moved the times: modified %lld -> %lld, MFT changed %lld -> %lld",
			 (long long)t2.modified, (long long)t3.modified, (long long)t2.mft_changed,
			 (long long)t3.mft_changed);
	testvol_expect_ntfsfix_clean(image);
	print_message("times: modified %lld -> %lld -> %lld, read kept %lld\n",
		      (long long)t0.modified, (long long)t1.modified, (long long)t2.modified,
		      (long long)t3.modified);
}

/*
 * ntfsctl write's three modes: without an option it replaces the contents
 * (as a shell's > does: the old tail goes, an empty stdin empties the
 * file), --append writes at the end, --offset in place; --mmap replaces
 * too.  --append with --offset or --mmap is a usage error (exit 2).
 */
static void ctl_write_modes(void **state)
{
	struct ctl_result r;
	uint8_t *d1, *d2, *d3, *d0;
	char *in1, *in2, *in3, *empty, *frag, *want;
	size_t frag_len;

	(void)state;
	cat_disk("/frag/a.bin", &frag, &frag_len);
	assert_true(frag_len > 9000);   /* the replaced contents must be shorter */
	in1 = data_file("m1", 11, 5000, &d1);
	in2 = data_file("m2", 12, 3000, &d2);
	in3 = data_file("m3", 13, 100, &d3);
	empty = data_file("m0", 14, 0, &d0);
	free(d0);
	start_daemon(NULL);

	run_ctl(&r, in1, "write", "/frag/a.bin", (char *)NULL);
	expect_ctl_ok(&r, "write /frag/a.bin (replace)");
	ctl_free(&r);
	run_ctl(&r, in2, "write", "--append", "/frag/a.bin", (char *)NULL);
	expect_ctl_ok(&r, "write --append /frag/a.bin");
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", "/frag/a.bin", (char *)NULL);
	expect_ctl_ok(&r, "sync /frag/a.bin");
	ctl_free(&r);
	want = malloc(8000);
	assert_non_null(want);
	memcpy(want, d1, 5000);
	memcpy(want + 5000, d2, 3000);
	expect_cat("/frag/a.bin", want, 8000);
	/* --mmap replaces as well (the file is long enough for it) */
	run_ctl(&r, in3, "write", "--mmap", "/frag/a.bin", (char *)NULL);
	expect_ctl_ok(&r, "write --mmap /frag/a.bin (replace)");
	ctl_free(&r);
	/* an empty stdin empties the file */
	run_ctl(&r, empty, "write", "/small.txt", (char *)NULL);
	expect_ctl_ok(&r, "write /small.txt from an empty stdin");
	ctl_free(&r);
	/* usage errors, nothing written */
	run_ctl(&r, in1, "write", "--append", "--offset", "5", "/frag/a.bin", (char *)NULL);
	if (r.status != 2 || !strstr(r.err, "--append and --offset cannot be combined"))
		fail_msg("write --append --offset: exit %d, stderr \"%s\"", r.status, r.err);
	ctl_free(&r);
	run_ctl(&r, in1, "write", "--append", "--mmap", "/frag/a.bin", (char *)NULL);
	if (r.status != 2 || !strstr(r.err, "--append and --mmap cannot be combined"))
		fail_msg("write --append --mmap: exit %d, stderr \"%s\"", r.status, r.err);
	ctl_free(&r);
	run_ctl(&r, NULL, "ls", "--append", "/", (char *)NULL);
	if (r.status != 2 || !strstr(r.err, "--append is an option of write"))
		fail_msg("ls --append: exit %d, stderr \"%s\"", r.status, r.err);
	ctl_free(&r);

	stop_daemon_clean();
	expect_cat("/frag/a.bin", d3, 100);
	expect_cat("/small.txt", "", 0);
	testvol_expect_ntfsfix_clean(image);
	free(want);
	free(frag);
	free(d1);
	free(d2);
	free(d3);
	free(in1);
	free(in2);
	free(in3);
	free(empty);
}

/* ======================================================================
 * d) a failing write-back
 * ====================================================================== */

/* The first LCN of a file's unnamed $DATA, from `ntfsinfo -v -F`. */
static int64_t first_lcn(const char *path)
{
	const char *argv[] = { "ntfsinfo", "-v", "-F", path, image, NULL };
	char *out = NULL, *p;
	size_t len;
	bool in_data = false;
	long long vcn, lcn;

	if (oracle_run(argv, &out, &len, NULL))
		fail_msg("ntfsinfo -v -F %s failed: %s", path, oracle_last_stderr());
	for (p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, "Dumping attribute ", 18))
			in_data = !strncmp(p + 18, "$DATA", 5);
		if (in_data && strstr(p, "Runlist:") && strchr(p, '\n')) {
			char *next = strchr(p, '\n') + 1;

			if (sscanf(next, " %llx %llx", &vcn, &lcn) == 2) {
				free(out);
				return lcn;
			}
		}
	}
	free(out);
	return -1;
}

static void sync_reports_write_error(void **state)
{
	static const char *const meta[] = { "/$MFT", "/$MFTMirr", "/$LogFile", "/$Volume" };
	struct rlimit old, lim;
	struct sigaction ign = { .sa_handler = SIG_IGN }, oldsa;
	struct ctl_result r;
	char *in, want[128];
	uint8_t *d, buf[4096];
	int64_t lcn = first_lcn("/big.bin");
	ntfsc *c;
	ntfsc_file *f;
	int err;

	(void)state;
	/* Writes at or past the limit fail with EFBIG (SIGXFSZ ignored), so
	 * the volume's metadata must lie below /big.bin's first cluster. */
	if (lcn <= 0)
		fail_msg("cannot find the clusters of /big.bin with ntfsinfo");
	for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
		int64_t m = first_lcn(meta[i]);

		if (m >= lcn)
			fail_msg("%s lies after /big.bin on this image: the fixture no longer lets "
				 "the test fail only /big.bin's writes", meta[i]);
	}
	in = data_file("in", 9, 10000, &d);
	memset(buf, 0x5a, sizeof(buf));

	/* The daemon inherits the limit and the ignored signal through exec. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)lcn * 4096;
	assert_int_equal(sigaction(SIGXFSZ, &ign, &oldsa), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	err = daemon_start(&dmn, ntfsd_bin, image, NULL);
	setrlimit(RLIMIT_FSIZE, &old);
	sigaction(SIGXFSZ, &oldsa, NULL);
	if (err)
		fail_msg("cannot start ntfsd on %s: %s", image, strerror(-err));

	run_ctl(&r, in, "write", "/big.bin", "--offset", "5000", (char *)NULL);
	expect_ctl_ok(&r, "write /big.bin");
	ctl_free(&r);
	run_ctl(&r, NULL, "sync", "/big.bin", (char *)NULL);
	snprintf(want, sizeof(want), "ntfsctl: sync /big.bin: %s\n", strerror(EFBIG));
	if (r.status != 1 || strcmp(r.err, want))
		fail_msg("sync after a failed write-back: exit %d, stderr \"%s\", want \"%s\"",
			 r.status, r.err, want);
	ctl_free(&r);

	/* through the library: once per handle */
	c = connect_daemon();
	f = open_or_fail(c, "/big.bin", O_RDWR);
	assert_int_equal(ntfsc_pwrite(f, buf, sizeof(buf), 40000), (ssize_t)sizeof(buf));
	if (ntfsc_fsync(f) != -1 || errno != EFBIG)
		fail_msg("ntfsc_fsync after a failed write-back: %s", strerror(errno));
	assert_non_null(ntfsc_last_error_message(NULL));
	if (ntfsc_fsync(f))
		fail_msg("the second ntfsc_fsync reported the error again: %s", strerror(errno));
	{
		struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;

		assert_int_equal(ntfsc_volume_status(c, &vs), 0);
		assert_true(vs.write_errors > 0);
		ntfsc_volume_status_free(&vs);
	}
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	daemon_stop(&dmn);
	testvol_expect_ntfsfix_clean(image);
	free(d);
	free(in);
}

/* ---- space ---- */

/* Free clusters of img, as ntfsinfo -m counts them (daemon stopped). */
static uint64_t free_clusters(const char *img)
{
	const char *argv[] = { "ntfsinfo", "-m", img, NULL };
	char *out = NULL, *p;
	int st = -1;
	uint64_t n;

	if (oracle_run(argv, &out, NULL, &st) || st || !out || !(p = strstr(out, "Free Clusters:")))
		fail_msg("ntfsinfo -m %s: exit %d: %s", img, st, out ? out : "");
	n = strtoull(p + strlen("Free Clusters:"), NULL, 10);
	free(out);
	return n;
}

/*
 * A 4 KiB write 40 MB past the end of a 3 MB file: the gap stays a hole
 * and the file becomes sparse, as through an ntfs-3g mount of the same
 * volume, where it used to cost the whole gap in clusters.  Both ways the
 * volume loses about one sparse unit (16 clusters).
 */
static void far_write_leaves_a_hole(void **state)
{
	static const char *const need[] = { "ntfsinfo", "icat", NULL };
	const uint64_t gap = 40u << 20;
	struct testvol tv;
	struct oracle_attr a;
	char peer[320];
	uint8_t buf[4096];
	uint64_t before, ours, theirs, size, off, i;
	struct ntfsc_stat_ext x;
	ntfsc_file *f;
	ntfsc *c;
	char *data, *tsk = NULL, inode[24];
	size_t len, tsk_len = 0;
	int tsk_st = -1;

	(void)state;
	assert_int_equal(testvol_create(&tv, "farwrite", need), 0);
	snprintf(peer, sizeof(peer), "%s/peer.img", tv.dir);
	assert_int_equal(testvol_copy_file(image, peer), 0);
	before = free_clusters(image);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);

	start_daemon(NULL);
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	assert_int_equal(ntfsc_fstat_ext(f, &x), 0);
	size = x.st.size;
	off = size + gap;
	assert_int_equal(ntfsc_pwrite(f, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
	assert_int_equal(ntfsc_fsync(f), 0);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	ours = before - free_clusters(image);

	assert_int_equal(testvol_mount_write(&tv, peer, "/big.bin", off, buf, sizeof(buf)), 0);
	theirs = before - free_clusters(peer);
	print_message("a 4 KiB write %llu MB past the end costs %llu clusters through ntfsd, "
		      "%llu through ntfs-3g (the gap: %llu clusters)\n",
		      (unsigned long long)(gap >> 20), (unsigned long long)ours,
		      (unsigned long long)theirs, (unsigned long long)(gap / 4096));
	if (ours > theirs + 16)
		fail_msg("the far write cost %llu clusters, ntfs-3g's %llu",
			 (unsigned long long)ours, (unsigned long long)theirs);

	assert_int_equal(oracle_info(image, "/big.bin", NULL, &a), 0);
	if (!a.sparse || a.data_size != off + sizeof(buf))
		fail_msg("/big.bin after the far write: sparse %d, size %llu (want sparse, %llu)",
			 a.sparse, (unsigned long long)a.data_size,
			 (unsigned long long)(off + sizeof(buf)));
	testvol_cat(image, "/big.bin", &data, &len);
	assert_int_equal(len, off + sizeof(buf));
	for (i = size; i < off; i++)
		if (data[i])
			fail_msg("byte %llu of the gap reads %#x, not zero", (unsigned long long)i,
				 (unsigned char)data[i]);
	assert_memory_equal(data + off, buf, sizeof(buf));
	/* The Sleuth Kit, which parses NTFS with its own code, reads the same */
	snprintf(inode, sizeof(inode), "%llu", (unsigned long long)x.mft_no);
	{
		const char *argv[] = { "icat", "-f", "ntfs", image, inode, NULL };

		if (oracle_run(argv, &tsk, &tsk_len, &tsk_st) || tsk_st)
			fail_msg("icat %s %s: exit %d", image, inode, tsk_st);
	}
	if (tsk_len != len || memcmp(tsk, data, len))
		fail_msg("icat reads %zu bytes of /big.bin that differ from ntfscat's %zu", tsk_len,
			 len);
	free(tsk);
	free(data);
	testvol_expect_ntfsfix_clean(image);
	testvol_destroy(&tv);
}

/*
 * A volume filled by appends: at least 95% of the free space ntfs-3g
 * reports becomes file data before ENOSPC (room to grow is a wish, never
 * the reason a write fails), sync succeeds, ntfsfix -n is clean; a truncate
 * gives space back and writes succeed again; afterwards a second writer,
 * an ntfs-3g mount filling every free cluster and deleting its file, leaves
 * our file intact ($Bitmap tells the truth about what we use).  It runs in
 * every variant, injected io_uring submit failures too: appends race the
 * flushers' size writes all the way (a raise of i_size once lost to one
 * made the debug daemon abort near ENOSPC: see extend_i_size()).
 */
static void fill_to_enospc(void **state)
{
	static const char *const need[] = { "ntfsinfo", NULL };
	static uint8_t buf[1 << 20];
	struct testvol tv;
	uint64_t free0, start, size, appended = 0, filled = 0, i;
	size_t chunk = sizeof(buf);
	struct ntfsc_stat st;
	ntfsc_file *f;
	ntfsc *c;
	char *data;
	size_t len;
	ssize_t n;
	double pct;

	(void)state;
	assert_int_equal(testvol_create(&tv, "fill", need), 0);
	free0 = free_clusters(image);
	start_daemon(NULL);
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	start = size = st.size;
	/* 1 MiB appends, then 4 KiB ones into what is left */
	for (;;) {
		for (i = 0; i < chunk; i++)
			buf[i] = (uint8_t)((size + i) * 131 >> 7);
		n = ntfsc_pwrite(f, buf, chunk, (off_t)size);
		if (n < 0) {
			if (errno != ENOSPC)
				fail_msg("append at %llu: %s (%s)", (unsigned long long)size,
					 strerror(errno), ntfsc_last_error_message(c));
			if (chunk == 4096)
				break;
			chunk = 4096;
			continue;
		}
		assert_int_equal(n, (ssize_t)chunk);
		size += chunk;
		appended += chunk;
	}
	assert_int_equal(ntfsc_fsync(f), 0);
	pct = 100.0 * (double)appended / (double)(free0 * 4096);
	print_message("appended %llu of the %llu free bytes ntfs-3g reports before ENOSPC: "
		      "%.1f%%\n", (unsigned long long)appended,
		      (unsigned long long)(free0 * 4096), pct);
	if (pct < 95.0)
		fail_msg("the volume took only %.1f%% of its free space before ENOSPC", pct);
	/* space given back by a truncate is usable again */
	assert_int_equal(ntfsc_ftruncate(f, (off_t)(size - (8u << 20))), 0);
	size -= 8u << 20;
	assert_int_equal(ntfsc_fsync(f), 0);
	for (i = 0; i < 4; i++) {
		uint64_t k;

		for (k = 0; k < sizeof(buf); k++)
			buf[k] = (uint8_t)((size + k) * 131 >> 7);
		if (ntfsc_pwrite(f, buf, sizeof(buf), (off_t)size) != (ssize_t)sizeof(buf))
			fail_msg("a write after the truncate freed 8 MiB: %s (%s)", strerror(errno),
				 ntfsc_last_error_message(c));
		size += sizeof(buf);
	}
	assert_int_equal(ntfsc_fsync(f), 0);
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	testvol_expect_ntfsfix_clean(image);

	/* a second writer fills the rest through ntfs-3g and deletes it */
	assert_int_equal(testvol_fill_free(&tv, image, 0xEE, &filled), 0);
	print_message("then ntfs-3g wrote %llu more bytes\n", (unsigned long long)filled);
	testvol_cat(image, "/big.bin", &data, &len);
	assert_int_equal(len, size);
	for (i = start; i < size; i++)
		if ((uint8_t)data[i] != (uint8_t)(i * 131 >> 7))
			fail_msg("byte %llu of /big.bin reads %#x after ntfs-3g filled the volume",
				 (unsigned long long)i, (unsigned char)data[i]);
	free(data);
	testvol_expect_ntfsfix_clean(image);
	testvol_destroy(&tv);
}

/*
 * Appends allocate room to grow past the end; once the file is closed and
 * its data written back (within the dirty expiry, no sync asked for) the
 * room is given back: the file holds what its data needs.
 */
static void room_given_back_when_idle(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "200", NULL };
	static uint8_t buf[1 << 20];
	struct ntfsc_stat st;
	ntfsc_file *f;
	ntfsc *c;
	uint64_t size, need;
	int i;

	(void)state;
	memset(buf, 0x5a, sizeof(buf));
	start_daemon(args);
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	size = st.size;
	assert_int_equal(ntfsc_pwrite(f, buf, sizeof(buf), (off_t)size), (ssize_t)sizeof(buf));
	size += sizeof(buf);
	need = (size + 4095) / 4096 * 4096;
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	if (st.allocated_size <= need)
		fail_msg("an append allocated no room to grow (allocated %llu for %llu bytes): "
			 "nothing to give back, the test proves nothing",
			 (unsigned long long)st.allocated_size, (unsigned long long)size);
	{
		struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;

		assert_int_equal(ntfsc_volume_status(c, &vs), 0);
		if (vs.growth_room_bytes != st.allocated_size - need || !vs.free_bytes)
			fail_msg("status says %llu bytes of growth room (want %llu) and %llu free",
				 (unsigned long long)vs.growth_room_bytes,
				 (unsigned long long)(st.allocated_size - need),
				 (unsigned long long)vs.free_bytes);
		ntfsc_volume_status_free(&vs);
	}
	assert_int_equal(ntfsc_close(f), 0);
	for (i = 0; i < 50; i++) {
		assert_int_equal(ntfsc_stat(c, "/big.bin", &st), 0);
		if (st.allocated_size == need && !st.dirty_pages)
			break;
		testvol_sleep_ms(100);
	}
	if (st.allocated_size != need)
		fail_msg("5 s after the last close /big.bin still holds %llu bytes of clusters for "
			 "%llu bytes of data", (unsigned long long)st.allocated_size,
			 (unsigned long long)size);
	print_message("room given back %d ms after the close\n", i * 100);
	ntfsc_disconnect(c);
	stop_daemon_clean();
	testvol_expect_ntfsfix_clean(image);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(model_test, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(model_test_small_cache, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(refusals, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(writes_that_allocate, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(far_write_leaves_a_hole, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(room_given_back_when_idle, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(fill_to_enospc, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(truncate_sizes, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(fragmented_until_attribute_list, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(ctl_write_sync, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(ctl_write_modes, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(times_move_on_write, setup_image, teardown_image),
		cmocka_unit_test_setup_teardown(names_through_the_daemon, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(renames_through_the_daemon, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(growth_past_segment_while_open, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(whole_page_writes_skip_reads, setup_image,
						teardown_image),
		cmocka_unit_test_setup_teardown(sync_reports_write_error, setup_image,
						teardown_image),
	};

	if (!daemon_test_env(&ntfsd_bin, &ntfsctl_bin, &fixture_dir))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	/* NTFSD_TEST_FILTER=name (cmocka's pattern) runs only those tests */
	if (getenv("NTFSD_TEST_FILTER"))
		cmocka_set_test_filter(getenv("NTFSD_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
