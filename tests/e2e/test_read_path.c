/*
 * test_read_path — ntfsd end to end, against ntfs-3g's tools.
 *
 * A real ntfsd serves each fixture volume (read-only); real client code
 * (libntfsc and the ntfsctl binary) reads through it, and ntfs-3g's tools
 * say what the right answer is:
 *  - every file of every fixture read through ntfsc_pread, ntfsc_mmap and
 *    `ntfsctl cat` equals ntfscat; every `ntfsctl ls` equals ntfsls; sizes
 *    from ntfsc_stat equal ntfsinfo's;
 *  - several client processes read one file in overlapping ranges with the
 *    cache limited to a quarter of the file: every byte right, the limit
 *    held in every status sample, no deadlock;
 *  - a client SIGKILLed while holding a page lock and pins: others proceed
 *    within a second and the pins are gone;
 *  - malformed traffic gets an error reply or a closed connection, and the
 *    daemon keeps serving everyone else.
 */
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "frame.h"
#include "ntfsc.h"
#include "ntfsd.pb-c.h"
#include "oracle.h"
#include "page.h"
#include "rawclient.h"
#include "dirty.h"
#include "dirty_bitmap.h"
#include "segment.h"

static struct test_daemon dmn;
static const char *ntfsd_bin, *ntfsctl_bin, *fixture_dir;

static char *fixture(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", fixture_dir, name) > 0);
	return p;
}

static void start(const char *image, const char *const *args)
{
	char *img = fixture(image);
	int err = daemon_start(&dmn, ntfsd_bin, img, args);

	if (err)
		fail_msg("cannot start ntfsd on %s: %s", img, strerror(-err));
	free(img);
}

static int teardown_daemon(void **state)
{
	(void)state;
	if (dmn.pid && !daemon_stop(&dmn)) {
		fprintf(stderr, "ntfsd did not exit cleanly (status 0x%x)\n", dmn.exit_status);
		return -1;
	}
	daemon_stop(&dmn);
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Run ntfsctl -s SOCKET args...; capture stdout. */
static int ntfsctl(char **out, size_t *len, int *status, ...)
{
	const char *argv[16];
	va_list ap;

	va_start(ap, status);
	daemon_ctl_argv(argv, 16, ntfsctl_bin, &dmn, ap);
	va_end(ap);
	return oracle_run(argv, out, len, status);
}

/* ---- whole-fixture comparison ---- */

struct walk {
	ntfsc *c;
	const char *img;
	size_t files, dirs, bytes;
	char **dirs_todo;
	size_t ndirs_todo, cap;
	char **files_todo;
	size_t nfiles_todo, fcap;
	const char *cur;
};

static char *join(const char *dir, const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name) > 0);
	return p;
}

static int collect(void *ctx, const char *name, uint64_t mft_no, bool is_dir)
{
	struct walk *w = ctx;
	char *path;

	if (mft_no < 16 || !strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	path = join(w->cur, name);
	if (is_dir) {
		if (w->ndirs_todo == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 16;
			w->dirs_todo = realloc(w->dirs_todo, w->cap * sizeof(char *));
		}
		w->dirs_todo[w->ndirs_todo++] = path;
	} else {
		if (w->nfiles_todo == w->fcap) {
			w->fcap = w->fcap ? w->fcap * 2 : 64;
			w->files_todo = realloc(w->files_todo, w->fcap * sizeof(char *));
		}
		w->files_todo[w->nfiles_todo++] = path;
	}
	return 0;
}

static int strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* `ntfsctl ls DIR` against ntfsls, as sets of names. */
static void compare_ls(const char *img, const char *dir)
{
	char *out = NULL, **theirs = NULL, **ours = NULL, *line, *save;
	size_t len, tn = 0, on = 0, i;
	int status;

	assert_int_equal(ntfsctl(&out, &len, &status, "ls", dir, (char *)NULL), 0);
	if (status)
		fail_msg("ntfsctl ls %s exited %d", dir, status);
	ours = calloc(len + 1, sizeof(char *));
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		ours[on++] = line;
	assert_int_equal(oracle_ls(img, dir, &theirs, &tn), 0);
	oracle_drop_dots(theirs, &tn);
	qsort(ours, on, sizeof(char *), strcmp_p);
	qsort(theirs, tn, sizeof(char *), strcmp_p);
	if (on != tn)
		fail_msg("%s: ntfsctl ls lists %zu names, ntfsls %zu", dir, on, tn);
	for (i = 0; i < on; i++)
		if (strcmp(ours[i], theirs[i]))
			fail_msg("%s: ntfsctl ls \"%s\", ntfsls \"%s\"", dir, ours[i], theirs[i]);
	for (i = 0; i < tn; i++)
		free(theirs[i]);
	free(theirs);
	free(ours);
	free(out);
}

static void compare_file(struct walk *w, const char *path, bool full_checks)
{
	char *want = NULL, *ctl = NULL;
	size_t wlen = 0, clen = 0;
	struct ntfsc_stat st;
	ntfsc_file *f;
	uint8_t *buf;
	int status;

	if (oracle_cat(w->img, path, NULL, &want, &wlen))
		fail_msg("ntfscat %s failed", path);
	f = ntfsc_open(w->c, path, O_RDONLY);
	if (!f)
		fail_msg("ntfsc_open %s: %s", path, strerror(errno));
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	if (st.size != wlen)
		fail_msg("%s: size %llu, ntfscat gives %zu bytes", path,
			 (unsigned long long)st.size, wlen);
	buf = malloc(wlen + 1);
	assert_non_null(buf);
	if (ntfsc_pread(f, buf, wlen + 1, 0) != (ssize_t)wlen || memcmp(buf, want, wlen))
		fail_msg("%s: ntfsc_pread differs from ntfscat", path);
	/* an unaligned read inside the file */
	if (wlen > 5000 && (ntfsc_pread(f, buf, 3000, 1234) != 3000 ||
			    memcmp(buf, want + 1234, 3000)))
		fail_msg("%s: unaligned ntfsc_pread differs", path);
	if (wlen) {
		uint8_t *m = ntfsc_mmap(f, 0, wlen, PROT_READ);

		if (m == MAP_FAILED)
			fail_msg("ntfsc_mmap %s: %s", path, strerror(errno));
		if (memcmp(m, want, wlen))
			fail_msg("%s: ntfsc_mmap differs from ntfscat", path);
		assert_int_equal(ntfsc_munmap(f, m, wlen), 0);
	}
	if (full_checks) {
		struct oracle_attr oa;

		assert_int_equal(oracle_info(w->img, path, NULL, &oa), 0);
		if (oa.data_size != st.size ||
		    (!oa.resident && (oa.allocated_size != st.allocated_size ||
				      oa.initialized_size != st.initialized_size)) ||
		    oa.resident != st.resident)
			fail_msg("%s: stat %llu/%llu/%llu res %d, ntfsinfo %llu/%llu/%llu res %d",
				 path, (unsigned long long)st.size,
				 (unsigned long long)st.initialized_size,
				 (unsigned long long)st.allocated_size, st.resident,
				 (unsigned long long)oa.data_size,
				 (unsigned long long)oa.initialized_size,
				 (unsigned long long)oa.allocated_size, oa.resident);
	}
	assert_int_equal(ntfsc_close(f), 0);
	assert_int_equal(ntfsctl(&ctl, &clen, &status, "cat", path, (char *)NULL), 0);
	if (status || clen != wlen || memcmp(ctl, want, wlen))
		fail_msg("%s: ntfsctl cat differs from ntfscat (exit %d, %zu bytes)", path, status,
			 clen);
	w->files++;
	w->bytes += wlen;
	free(ctl);
	free(buf);
	free(want);
}

static void compare_fixture(const char *image)
{
	struct walk w = { 0 };
	char *img = fixture(image);
	size_t i;

	start(image, (const char *const[]){ "--read-only", NULL });
	w.c = ntfsc_connect(dmn.socket);
	if (!w.c)
		fail_msg("ntfsc_connect %s: %s", dmn.socket, strerror(errno));
	w.img = img;
	w.dirs_todo = calloc(1, sizeof(char *));
	w.dirs_todo[0] = strdup("/");
	w.ndirs_todo = w.cap = 1;
	while (w.ndirs_todo) {
		char *dir = w.dirs_todo[--w.ndirs_todo];

		w.cur = dir;
		if (ntfsc_listdir(w.c, dir, collect, &w))
			fail_msg("ntfsc_listdir %s: %s", dir, strerror(errno));
		compare_ls(img, dir);
		w.dirs++;
		free(dir);
	}
	for (i = 0; i < w.nfiles_todo; i++) {
		/* ntfsinfo is slow: sizes for every file outside the big
		 * directories, every 25th inside them */
		bool full = !strstr(w.files_todo[i], "bigdir/") && !strstr(w.files_todo[i], "dir300/");

		compare_file(&w, w.files_todo[i], full || i % 25 == 0);
		free(w.files_todo[i]);
	}
	print_message("%s: %zu directories and %zu files (%zu bytes) read through ntfsd equal "
		      "ntfs-3g's tools\n", image, w.dirs, w.files, w.bytes);
	assert_true(w.files >= 15);
	free(w.files_todo);
	free(w.dirs_todo);
	ntfsc_disconnect(w.c);
	free(img);
}

static void vol4k_through_daemon(void **state)
{
	(void)state;
	compare_fixture("vol4k.img");
}

static void vol512_through_daemon(void **state)
{
	(void)state;
	compare_fixture("vol512.img");
}

static void vol64k_through_daemon(void **state)
{
	(void)state;
	compare_fixture("vol64k.img");
}

/* ---- concurrent readers under a small cache ---- */

#define READERS 4

static int reader_child(const char *path, const uint8_t *want, size_t len, unsigned seed)
{
	ntfsc *c = ntfsc_connect(dmn.socket);
	ntfsc_file *f = c ? ntfsc_open(c, path, O_RDONLY) : NULL;
	uint8_t *buf = malloc(262144);
	unsigned i;

	if (!f || !buf)
		return 10;
	srand(seed);
	for (i = 0; i < 400; i++) {
		size_t off = (size_t)rand() % len, n = 1 + (size_t)rand() % 200000;

		if (n > len - off)
			n = len - off;
		if (i % 4 == 3) {  /* through a pinned mapping */
			/* pinned pages cannot be reclaimed: keep every reader's
			 * pins (16 pages at most) well inside the limit */
			if (n > 65536)
				n = 65536;
			uint8_t *m = ntfsc_mmap(f, (off_t)off, n, PROT_READ);

			if (m == MAP_FAILED)
				return 11;
			if (memcmp(m, want + off, n))
				return 12;
			if (ntfsc_munmap(f, m, n))
				return 13;
		} else {
			if (ntfsc_pread(f, buf, n, (off_t)off) != (ssize_t)n)
				return 14;
			if (memcmp(buf, want + off, n))
				return 15;
		}
	}
	free(buf);
	ntfsc_close(f);
	ntfsc_disconnect(c);
	return 0;
}

static void concurrent_readers_small_cache(void **state)
{
	char *img = fixture("vol4k.img"), *want = NULL, limit[32];
	size_t len = 0;
	pid_t kids[READERS];
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	uint64_t max_used = 0, samples = 0, reclaimed;
	int i, alive, st;
	ntfsc *c;

	(void)state;
	assert_int_equal(oracle_cat(img, "/big.bin", NULL, &want, &len), 0);
	snprintf(limit, sizeof(limit), "%zu", len / 4);
	start("vol4k.img", (const char *const[]){ "--read-only", "--cache-size", limit, NULL });
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	for (i = 0; i < READERS; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			alarm(120);
			_exit(reader_child("/big.bin", (uint8_t *)want, len, (unsigned)i + 1));
		}
	}
	alarm(150);
	for (alive = READERS; alive;) {
		assert_int_equal(ntfsc_volume_status(c, &vs), 0);
		samples++;
		if (vs.cache_used > max_used)
			max_used = vs.cache_used;
		if (vs.cache_used > vs.cache_limit)
			fail_msg("cache holds %llu bytes, over its limit of %llu",
				 (unsigned long long)vs.cache_used,
				 (unsigned long long)vs.cache_limit);
		ntfsc_volume_status_free(&vs);
		for (i = 0; i < READERS; i++) {
			if (kids[i] > 0 && waitpid(kids[i], &st, WNOHANG) == kids[i]) {
				if (!WIFEXITED(st) || WEXITSTATUS(st))
					fail_msg("reader %d failed (status 0x%x)", i, st);
				kids[i] = 0;
				alive--;
			}
		}
		sleep_ms(5);
	}
	alarm(0);
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	reclaimed = vs.pages_reclaimed;
	ntfsc_volume_status_free(&vs);
	print_message("%d readers, %llu status samples, cache peaked at %llu of %zu bytes, %llu "
		      "pages reclaimed\n", READERS, (unsigned long long)samples,
		      (unsigned long long)max_used, len / 4, (unsigned long long)reclaimed);
	assert_true(reclaimed > 0);  /* the limit really was in play */
	ntfsc_disconnect(c);
	free(want);
	free(img);
}

/* ---- a raw protocol client (support/rawclient.h), for what libntfsc
 * would never send ---- */

static int connect_raw(void)
{
	int fd = raw_connect(dmn.socket, 0);

	if (fd < 0)
		fail_msg("connect %s: %s", dmn.socket, strerror(-fd));
	return fd;
}

/* Hello; returns the lock id the daemon gave the connection. */
static uint32_t hello_raw(int fd)
{
	struct raw_hello_info info;
	int err = raw_hello(fd, "test_read_path", &info);

	if (err)
		fail_msg("hello: %s (%s)", strerror(-err), raw_last_message());
	if (info.header_fd >= 0)
		close(info.header_fd);
	return raw_lock_id(&info);
}

/* The daemon still serves a well-behaved client. */
static void assert_daemon_serves(void)
{
	ntfsc *c = ntfsc_connect(dmn.socket);
	struct ntfsc_stat st;

	if (!c)
		fail_msg("a fresh client cannot connect: %s", strerror(errno));
	if (ntfsc_stat(c, "/small.txt", &st))
		fail_msg("a fresh client cannot stat: %s", strerror(errno));
	assert_int_equal(st.size, 300);
	ntfsc_disconnect(c);
}

/* ---- a client killed holding a page lock and pins ---- */

static void killed_client_releases_lock_and_pins(void **state)
{
	int pfd[2], fd, fds[4], nfds = 0;
	Ntfsd__Reply *r;
	pid_t kid;
	char c;
	struct timespec t0, t1;
	ntfsc *cl;
	ntfsc_file *f;
	uint8_t *m, buf[4096];
	long ms;

	(void)state;
	start("vol4k.img", NULL);
	assert_int_equal(pipe(pfd), 0);
	kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		/* Open read-write, pin pages 0..7 and take the lock of page 400,
		 * which nobody has read yet (readahead stays far below it). */
		Ntfsd__Request rq = NTFSD__REQUEST__INIT;
		Ntfsd__OpenRequest o = NTFSD__OPEN_REQUEST__INIT;
		Ntfsd__FaultInRequest fi = NTFSD__FAULT_IN_REQUEST__INIT;
		struct shm_file_header *h;
		struct stat sb;
		uint64_t handle;
		uint32_t lock_owner;

		fd = connect_raw();
		lock_owner = hello_raw(fd);
		o.path = "/big.bin";
		o.write = true;
		rq.id = 2;
		rq.body_case = NTFSD__REQUEST__BODY_OPEN;
		rq.open = &o;
		assert_int_equal(raw_send(fd, &rq), 0);
		r = raw_recv(fd, fds, 4, &nfds);
		if (!r || r->error || nfds != 2)
			_exit(20);
		handle = r->open->handle;
		if (fstat(fds[1], &sb))
			_exit(21);
		h = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
		if (h == MAP_FAILED || !shm_file_header_valid(h, (uint64_t)sb.st_size))
			_exit(22);
		fi.handle = handle;
		fi.first_page = 0;
		fi.nr_pages = 8;
		fi.pin = true;
		rq.id = 3;
		rq.body_case = NTFSD__REQUEST__BODY_FAULT_IN;
		rq.fault_in = &fi;
		assert_int_equal(raw_send(fd, &rq), 0);
		r = raw_recv(fd, NULL, 0, NULL);
		if (!r || r->error)
			_exit(23);
		if (page_test(&shm_file_pages(h)[400], PG_uptodate))
			_exit(26);
		lock_page(&shm_file_pages(h)[400], lock_owner);
		if (write(pfd[1], "x", 1) != 1)
			_exit(24);
		pause();
		_exit(25);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	close(pfd[0]);

	cl = ntfsc_connect(dmn.socket);
	assert_non_null(cl);
	f = ntfsc_open(cl, "/big.bin", O_RDONLY);
	assert_non_null(f);
	/* page 400 is locked by the child, pages 0..7 are pinned by it */
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(10);
	/* reading page 400 needs its lock: the daemon must break the dead one */
	m = ntfsc_mmap(f, 400 * 4096, 4096, PROT_READ);
	assert_true(m != MAP_FAILED);
	assert_int_equal(ntfsc_pread(f, buf, sizeof(buf), 400 * 4096), 4096);
	assert_memory_equal(m, buf, 4096);
	assert_int_equal(ntfsc_munmap(f, m, 4096), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	alarm(0);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	print_message("after SIGKILL of the lock holder, another client went on in %ld ms\n", ms);
	assert_true(ms < 1000);

	/* The pins are gone: look at the page-state segment ourselves. */
	{
		Ntfsd__Request rq = NTFSD__REQUEST__INIT;
		Ntfsd__OpenRequest o = NTFSD__OPEN_REQUEST__INIT;
		struct shm_file_header *h;
		struct shm_page *pages;
		struct stat sb;
		int i, rfd = connect_raw();

		hello_raw(rfd);
		o.path = "/big.bin";
		rq.id = 2;
		rq.body_case = NTFSD__REQUEST__BODY_OPEN;
		rq.open = &o;
		assert_int_equal(raw_send(rfd, &rq), 0);
		r = raw_recv(rfd, fds, 4, &nfds);
		assert_non_null(r);
		assert_int_equal(r->error, 0);
		ntfsd__reply__free_unpacked(r, NULL);
		assert_int_equal(nfds, 2);
		assert_int_equal(fstat(fds[1], &sb), 0);
		h = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fds[1], 0);
		assert_true(h != MAP_FAILED);
		pages = shm_file_pages(h);
		for (i = 0; i < 401; i++) {
			if (atomic_load(&pages[i].pincount))
				fail_msg("page %d still has %u pins", i,
					 atomic_load(&pages[i].pincount));
			if (page_test(&pages[i], PG_locked))
				fail_msg("page %d is still locked (owner %u)", i,
					 atomic_load(&pages[i].lock_owner));
		}
		munmap(h, (size_t)sb.st_size);
		close(fds[0]);
		close(fds[1]);
		close(rfd);
	}
	ntfsc_close(f);
	ntfsc_disconnect(cl);
}

/* ---- page state a client should never write ---- */

/*
 * A read-write client marks a page dirty that was never read nor written
 * through the daemon (not uptodate) and fills the data segment under it
 * with 0xEE: the daemon must not write those bytes (the cache never held
 * the file's contents there), sync still succeeds, and the volume keeps
 * its old bytes, which ntfscat reads after the daemon stops.
 */
static void dirty_page_not_uptodate_is_not_written(void **state)
{
	char dir[] = "/tmp/ntfsd-rp-XXXXXX", img[64], *src = fixture("vol4k.img"), *out = NULL;
	char *before, *after;
	uint8_t *data;
	size_t blen, alen, outlen;
	const uint64_t index = 100;
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__OpenRequest o = NTFSD__OPEN_REQUEST__INIT;
	Ntfsd__Reply *r;
	struct shm_file_header *h, layout;
	uint32_t lock_owner;
	struct shm_page *pages;
	struct dirty_bitmap b;
	struct stat ds, ss;
	int fds[4], nfds = 0, rfd, status, e;
	char *log;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/v.img", dir);
	{
		const char *argv[] = { "cp", "--sparse=always", src, img, NULL };

		assert_int_equal(oracle_run(argv, NULL, NULL, &status), 0);
		assert_int_equal(status, 0);
	}
	free(src);
	assert_int_equal(oracle_cat(img, "/big.bin", NULL, &before, &blen), 0);
	assert_true(blen > (index + 1) * 4096);
	e = daemon_start(&dmn, ntfsd_bin, img,
			 (const char *const[]){ "--dirty-expire-ms", "100", NULL });
	if (e)
		fail_msg("cannot start ntfsd on %s: %s", img, strerror(-e));

	rfd = connect_raw();
	lock_owner = hello_raw(rfd);
	o.path = "/big.bin";
	o.write = true;
	rq.id = 2;
	rq.body_case = NTFSD__REQUEST__BODY_OPEN;
	rq.open = &o;
	assert_int_equal(raw_send(rfd, &rq), 0);
	r = raw_recv(rfd, fds, 4, &nfds);
	assert_non_null(r);
	assert_int_equal(r->error, 0);
	ntfsd__reply__free_unpacked(r, NULL);
	assert_int_equal(nfds, 2);
	assert_int_equal(fstat(fds[0], &ds), 0);
	assert_int_equal(fstat(fds[1], &ss), 0);
	data = mmap(NULL, (size_t)ds.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	h = mmap(NULL, (size_t)ss.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
	assert_true(data != MAP_FAILED && h != MAP_FAILED);
	pages = shm_file_pages(h);
	if (page_test(&pages[index], PG_uptodate))
		fail_msg("page %llu is uptodate before anyone read it",
			 (unsigned long long)index);
	memset(data + index * 4096, 0xEE, 4096);
	memcpy(&layout, h, sizeof(layout));
	dirty_bitmap_init(&b, h, &layout);
	lock_page(&pages[index], lock_owner);
	set_page_dirty(&b, index, page_all_buffers(layout.buffers_per_page));
	unlock_page(&pages[index]);

	/* background write-back (100 ms expiry) and an explicit sync pass over it */
	sleep_ms(300);
	assert_int_equal(ntfsctl(&out, &outlen, &status, "sync", (char *)NULL), 0);
	if (status != 0)
		fail_msg("ntfsctl sync: exit status %d", status);
	free(out);
	munmap(data, (size_t)ds.st_size);
	munmap(h, (size_t)ss.st_size);
	close(fds[0]);
	close(fds[1]);
	close(rfd);
	assert_daemon_serves();
	{
		const char *argv[] = { "cat", dmn.log, NULL };

		assert_int_equal(oracle_run(argv, &log, NULL, NULL), 0);
	}
	if (!daemon_stop(&dmn))
		fail_msg("ntfsd did not exit cleanly (status 0x%x)", dmn.exit_status);
	assert_int_equal(oracle_cat(img, "/big.bin", NULL, &after, &alen), 0);
	assert_int_equal(alen, blen);
	if (memcmp(before, after, blen))
		fail_msg("the volume changed: bytes of a page the cache never held were written");
	if (!log || !strstr(log, "never made uptodate"))
		fail_msg("the daemon did not log the page it refused to write:\n%s", log ? log : "");
	free(log);
	free(before);
	free(after);
	unlink(img);
	rmdir(dir);
}

/* ---- malformed traffic ---- */

static void send_bytes(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* After bad input the daemon either replies with an error or hangs up. */
static void expect_error_or_close(int fd, const char *what)
{
	Ntfsd__Reply *r = raw_recv(fd, NULL, 0, NULL);

	if (r) {
		if (r->error == 0)
			fail_msg("%s: the daemon answered without an error", what);
		ntfsd__reply__free_unpacked(r, NULL);
	}
	assert_daemon_serves();
}

static void malformed_traffic(void **state)
{
	uint8_t junk[4096];
	int fd, i;

	(void)state;
	start("vol4k.img", (const char *const[]){ "--read-only", NULL });
	srand(7);
	for (i = 0; i < (int)sizeof(junk); i++)
		junk[i] = (uint8_t)rand();

	/* random bytes: a length and garbage */
	fd = connect_raw();
	junk[0] = 200;
	junk[1] = junk[2] = junk[3] = 0;
	send_bytes(fd, junk, 204);
	expect_error_or_close(fd, "random bytes");
	close(fd);

	/* a truncated frame, then the client hangs up */
	fd = connect_raw();
	send_bytes(fd, "\x40\x00\x00\x00\x08\x01", 6);
	close(fd);
	assert_daemon_serves();

	/* a length of 4 GiB - 1 */
	fd = connect_raw();
	send_bytes(fd, "\xff\xff\xff\xff", 4);
	expect_error_or_close(fd, "4 GiB length");
	close(fd);

	/* a zero length */
	fd = connect_raw();
	send_bytes(fd, "\x00\x00\x00\x00", 4);
	expect_error_or_close(fd, "zero length");
	close(fd);

	/* an unknown message type: field 99 of Request */
	fd = connect_raw();
	hello_raw(fd);
	send_bytes(fd, "\x05\x00\x00\x00\x08\x05\x9a\x06\x00", 9);
	expect_error_or_close(fd, "unknown request");
	close(fd);

	/* a request before hello */
	fd = connect_raw();
	{
		Ntfsd__Request rq = NTFSD__REQUEST__INIT;
		Ntfsd__VolumeStatusRequest vs = NTFSD__VOLUME_STATUS_REQUEST__INIT;

		rq.id = 9;
		rq.body_case = NTFSD__REQUEST__BODY_VOLUME_STATUS;
		rq.volume_status = &vs;
		assert_int_equal(raw_send(fd, &rq), 0);
	}
	expect_error_or_close(fd, "request before hello");
	close(fd);

	/* paths: with a NUL byte, not existing, relative, a directory */
	{
		/* Request{id=4, open{path="/small.txt\0x"}} encoded by hand */
		static const uint8_t nul_path[] = { 0x08, 0x04, 0x1a, 0x0e, 0x0a, 0x0c, '/', 's', 'm',
						    'a', 'l', 'l', '.', 't', 'x', 't', 0, 'x' };
		uint8_t frame[4 + sizeof(nul_path)] = { sizeof(nul_path), 0, 0, 0 };
		const char *paths[] = { "/no/such/file", "relative.txt", "/d1", "" };
		Ntfsd__Reply *r;

		fd = connect_raw();
		hello_raw(fd);
		memcpy(frame + 4, nul_path, sizeof(nul_path));
		send_bytes(fd, frame, sizeof(frame));
		r = raw_recv(fd, NULL, 0, NULL);
		assert_non_null(r);
		if (!r->error)
			fail_msg("a path with a NUL byte was opened");
		ntfsd__reply__free_unpacked(r, NULL);
		for (i = 0; i < 4; i++) {
			Ntfsd__Request rq = NTFSD__REQUEST__INIT;
			Ntfsd__OpenRequest o = NTFSD__OPEN_REQUEST__INIT;

			o.path = (char *)paths[i];
			rq.id = 10 + (uint64_t)i;
			rq.body_case = NTFSD__REQUEST__BODY_OPEN;
			rq.open = &o;
			assert_int_equal(raw_send(fd, &rq), 0);
			r = raw_recv(fd, NULL, 0, NULL);
			assert_non_null(r);
			if (!r->error || !r->message || !*r->message)
				fail_msg("open \"%s\": no error with a message", paths[i]);
			ntfsd__reply__free_unpacked(r, NULL);
		}
		close(fd);
	}

	/* a flood of junk frames on many connections at once */
	{
		int fds[16];

		for (i = 0; i < 16; i++) {
			fds[i] = connect_raw();
			junk[0] = (uint8_t)(i + 1);
			junk[1] = junk[2] = junk[3] = 0;
			send_bytes(fds[i], junk, (size_t)i + 5);
		}
		assert_daemon_serves();
		for (i = 0; i < 16; i++)
			close(fds[i]);
	}
	assert_daemon_serves();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(vol4k_through_daemon, teardown_daemon),
		cmocka_unit_test_teardown(vol512_through_daemon, teardown_daemon),
		cmocka_unit_test_teardown(vol64k_through_daemon, teardown_daemon),
		cmocka_unit_test_teardown(concurrent_readers_small_cache, teardown_daemon),
		cmocka_unit_test_teardown(killed_client_releases_lock_and_pins, teardown_daemon),
		cmocka_unit_test_teardown(malformed_traffic, teardown_daemon),
		cmocka_unit_test_teardown(dirty_page_not_uptodate_is_not_written, teardown_daemon),
	};

	if (!daemon_test_env(&ntfsd_bin, &ntfsctl_bin, &fixture_dir))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
