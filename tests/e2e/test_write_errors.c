/*
 * test_write_errors — ntfsd's write side when things go wrong, end to end:
 * a real ntfsd, real clients (libntfsc, the ntfsctl binary) and ntfs-3g's
 * tools saying what is on the disk afterwards.
 *
 *  1. A failing disk: the volume is a file exposed by nbdfuse from nbdkit's
 *     error filter, so the daemon's own pwrite(2) gets EIO while the test's
 *     trigger file exists.  Checked: the errseq rules (every handle open when
 *     a write-back failed sees it once; a new handle sees only an error
 *     nobody has seen yet, e.g. one of the background write-back),
 *     ntfsctl's exit status and message, the daemon keeps serving, and once
 *     the disk works again the rewritten data reaches it: ntfscat equals the
 *     model and ntfsfix -n passes.
 *  1b. A truncate whose record write fails keeps every write, ten times.
 *  1c. Twenty rounds on one daemon of: 1 MiB written, the disk fails, the
 *     sync (ntfsc_fsync, ntfsc_sync, ntfsctl sync in turn) fails with EIO
 *     once per handle and the volume holds the old bytes; the disk works,
 *     the same bytes again, the sync returns 0 and the volume holds them;
 *     each round also with (a) dirty pages over five files in one sync (an
 *     append, a write past initialized_size, a resident file, zeroes over
 *     data) or (b) stores through ntfsc_mmap + ntfsc_set_dirty.
 *  1d. Zeroes written again over a failed page reach the disk (libntfsc
 *     skips zeroes over cached zeroes), also after part of it was rewritten.
 *  1e. Failures met by the background write-back (100 ms expiry), the disk
 *     failing before or during the writes: each page on the volume old or
 *     new, every handle sees EIO once, a fresh sync only while none did.
 *  1f. A batch of 256 pages on a disk failing 10% of the writes: exactly the
 *     pages whose writes failed (the daemon's log names them) are old on
 *     the volume and only they need writing again; past initialized_size
 *     the record never covers a failed write; both I/O engines.
 *  1g. ntfsc_sync while a flusher's write-back is in flight waits for it.
 *  1h. Growth that needs clusters is refused with EIO and changes nothing.
 *  1i. Random pwrite / append / zeroes / mmap / ftruncate / fsync / sync on
 *     six files for NTFSD_TEST_SECONDS (60; NTFSD_TEST_LONG=1: 300) while
 *     NTFSD_TEST_ERROR_RATE (2%) of the disk's writes fail, against a model
 *     of what each returned sync makes durable; then the disk works,
 *     everything again, sync 0, and ntfscat equals the model after a clean
 *     stop.  NTFSD_TEST_SEED (printed) picks the offsets and data.
 *  2. Out of memory in writepage (NTFSD_FAULT_WRITEPAGE_ENOMEM=3) only
 *     re-dirties: fsync never fails and leaves nothing dirty (it writes the
 *     re-dirtied pages again), for non-resident and resident files alike;
 *     the data all arrives, both with fsync
 *     and (2b) when it is left to the write-back at SIGTERM.
 *  3. Throttling: with a 1 MiB dirty limit, writers never push the dirty
 *     data past the limit by more than one write (64 KiB) per writer: two
 *     writers of /big.bin, and (3b) five writers of five files.
 *  4. 3 with each I/O engine (--io threads, --io uring).
 *  5. A file marked encrypted on disk (by this test, through the on-disk
 *     layer) is refused at open with EACCES; nothing else changes.
 *
 * Every test is bounded by alarm(): the handler fails the test (cmocka
 * longjmps out of it), and the teardown then always kills the writer
 * processes, stops ntfsd, unmounts nbdfuse, stops nbdkit and removes the
 * temp files.  A timeout inside the teardown itself kills everything
 * still running and exits.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "nbd_error.h"
#include "ntfsc.h"
#include "oracle.h"
#include "pattern.h"
#include "testvol.h"

/* the on-disk layer, to mark a file encrypted */
#include "attr_write.h"
#include "dir.h"
#include "error.h"
#include "layout.h"
#include "le.h"
#include "mft.h"
#include "volume.h"

#define PAGE 4096u
#define KiB 1024u
#define MiB (1024u * 1024u)

static const char *ntfsd_bin, *ntfsctl_bin, *fixture_dir;

/* ---- what a test has running: the teardown undoes all of it ---- */

#define MAX_CONNS 8
#define MAX_KIDS 8

static struct test_daemon dmn;
static struct nbd_error_dev nbd;
static char tmpdir[48];                 /* image copies, tool output */
static ntfsc *conns[MAX_CONNS];
static pid_t kids[MAX_KIDS];
static bool passed;                     /* the test body reached its end */
static bool chatty;                     /* print every expected failure */
static volatile sig_atomic_t in_teardown, timed_out;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64 (*s never 0); below(): uniform enough in [0, n), 0 for n 0. */
static uint64_t xs_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? xs_next(s) % n : 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* async-signal-safe: a timeout in the teardown itself */
static void emergency_stop(void)
{
	static const char msg[] = "test_write_errors: timeout while cleaning up: killing "
				  "everything and exiting\n";
	pid_t pid;
	int i;

	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	for (i = 0; i < MAX_KIDS; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
	if (dmn.pid > 0)
		kill(dmn.pid, SIGKILL);
	if (nbd.dir[0]) {
		nbd_error_abort(&nbd);
		pid = fork();
		if (pid == 0) {
			char *const argv[] = { "fusermount3", "-u", "-z", nbd.mnt, NULL };
			char *const envp[] = { NULL };

			execve("/usr/bin/fusermount3", argv, envp);
			execve("/bin/fusermount3", argv, envp);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
}

static void on_alarm(int sig)
{
	(void)sig;
	if (in_teardown) {
		emergency_stop();
		_exit(99);
	}
	timed_out = 1;
	fail_msg("timed out (alarm): the daemon or a tool hangs");
}

static char *tmp_path(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
	return p;
}

static char *fixture(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", fixture_dir, name) > 0);
	return p;
}

static void copy_file(const char *from, const char *to)
{
	static char buf[1 << 20];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	if (in < 0)
		fail_msg("%s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		fail_msg("%s: %s", to, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	assert_int_equal(fsync(out), 0);
	close(in);
	close(out);
}

/* A private copy of a fixture image in tmpdir; returns its path. */
static char *copy_fixture(const char *name)
{
	char *src = fixture(name), *dst = tmp_path(name);

	copy_file(src, dst);
	free(src);
	return dst;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t cap = 0, len = 0, n;

	if (!f)
		return strdup("");
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			s = realloc(s, cap);
			assert_non_null(s);
		}
		n = fread(s + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	s[len] = '\0';
	fclose(f);
	return s;
}

static unsigned count_substr(const char *s, const char *needle)
{
	unsigned n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s += strlen(needle);
	}
	return n;
}

static void start_daemon(const char *volume, const char *const *args)
{
	int err = daemon_start(&dmn, ntfsd_bin, volume, args);

	if (err)
		fail_msg("cannot start ntfsd on %s: %s", volume, strerror(-err));
}

static ntfsc *connect_daemon(void)
{
	ntfsc *c = ntfsc_connect(dmn.socket);
	int i;

	if (!c)
		fail_msg("ntfsc_connect: %s", strerror(errno));
	for (i = 0; i < MAX_CONNS && conns[i]; i++)
		;
	assert_true(i < MAX_CONNS);
	conns[i] = c;
	return c;
}

static void disconnect_daemon(ntfsc *c)
{
	int i;

	for (i = 0; i < MAX_CONNS; i++)
		if (conns[i] == c)
			conns[i] = NULL;
	ntfsc_disconnect(c);
}

static bool wait_child(pid_t pid, int *st, long ms)
{
	long waited;

	for (waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, st, WNOHANG);

		if (r == pid || (r < 0 && errno == ECHILD))
			return true;
		if (waited >= ms)
			return false;
		sleep_ms(10);
	}
}

/*
 * Stop the daemon, bounded: SIGTERM and term_ms; then SIGKILL; a daemon
 * still stuck after that is stuck on the nbdfuse file (its disk hangs):
 * abort the FUSE connection so its I/O fails, and wait once more.
 * Returns its wait status (-1 if it could not be reaped); removes its
 * directory either way.  *log_out (may be NULL) gets its whole log.
 */
static int halt_daemon(long term_ms, char **log_out)
{
	pid_t pid = dmn.pid;
	int st = -1;

	if (pid > 0) {
		kill(pid, SIGTERM);
		if (!wait_child(pid, &st, term_ms)) {
			fprintf(stderr, "ntfsd (pid %d) still runs %ld ms after SIGTERM: SIGKILL\n",
				(int)pid, term_ms);
			kill(pid, SIGKILL);
			if (!wait_child(pid, &st, 3000) && nbd.dir[0]) {
				fprintf(stderr, "ntfsd (pid %d) hangs on %s: killing nbdfuse and "
						"nbdkit\n", (int)pid, nbd.file);
				nbd_error_abort(&nbd);
			}
			if (!wait_child(pid, &st, 10000)) {
				fprintf(stderr, "ntfsd (pid %d) cannot be reaped: left behind\n",
					(int)pid);
				st = -1;
			}
		}
		dmn.pid = 0;
		dmn.exit_status = st;
	}
	if (log_out)
		*log_out = read_text(dmn.log);
	daemon_stop(&dmn);              /* pid 0: only removes its directory */
	return st;
}

/* Stop the daemon at the end of a test (10 s to write everything back);
 * returns its wait status. */
static int stop_daemon(char **log_out)
{
	assert_true(dmn.pid > 0);
	return halt_daemon(10000, log_out);
}

static void assert_clean_exit(int st, char *log)
{
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	fprintf(stderr, "---- ntfsd log ----\n%s---- end of log ----\n", log);
	if (st == -1)
		fail_msg("ntfsd could not be stopped");
	if (WIFSIGNALED(st))
		fail_msg("ntfsd was killed by signal %d after SIGTERM, not a clean exit",
			 WTERMSIG(st));
	fail_msg("ntfsd exited %d after SIGTERM, not 0 (log above)", WEXITSTATUS(st));
}

/* Stop the daemon; it must exit 0 (everything written back).  *log_out
 * (may be NULL) gets its log. */
static void stop_daemon_clean(char **log_out)
{
	char *log;
	int st = stop_daemon(&log);

	assert_clean_exit(st, log);
	if (log_out)
		*log_out = log;
	else
		free(log);
}

/*
 * Run argv with stdin from stdin_path (NULL: /dev/null), stdout and stderr
 * captured (out/err may be NULL); 30 s at most.  Returns the exit status
 * (128 + signal if killed).
 */
static int run_tool(const char *const argv[], const char *stdin_path, char **out, char **err)
{
	char *o = NULL;
	int st = 0, rc = oracle_run_input(argv, stdin_path, &o, NULL, &st);

	if (rc)
		fail_msg("cannot run %s: %s (%s)", argv[0], strerror(-rc), oracle_last_stderr());
	if (out)
		*out = o;
	else
		free(o);
	if (err) {
		*err = strdup(oracle_last_stderr());
		assert_non_null(*err);
	}
	return st;
}

/* ntfsctl -s SOCKET args... */
static int ntfsctl(const char *stdin_path, char **out, char **err, ...)
{
	const char *argv[16];
	va_list ap;

	va_start(ap, err);
	daemon_ctl_argv(argv, 16, ntfsctl_bin, &dmn, ap);
	va_end(ap);
	return run_tool(argv, stdin_path, out, err);
}

/* ---- data ---- */

/* ntfsfix -n finds nothing to repair on img (the daemon must be stopped). */
static void assert_ntfsfix_clean(const char *img)
{
	const char *argv[] = { "ntfsfix", "-n", img, NULL };
	char *out = NULL, *err = NULL;
	int status = run_tool(argv, NULL, &out, &err);

	if (status != 0)
		fail_msg("ntfsfix -n %s: exit %d\n%s%s", img, status, out, err);
	free(out);
	free(err);
}

/* Where to read img with ntfs-3g's tools: img itself, or while a daemon
 * runs (it holds its volume locked) a copy in snap, which view_done()
 * removes. */
static const char *view_image(const char *img, char *snap, size_t len)
{
	if (dmn.pid <= 0)
		return img;
	if (testvol_snapshot(img, snap, len))
		fail_msg("copying %s: %s", img, strerror(errno));
	return snap;
}

static void view_done(const char *view, const char *img)
{
	if (view != img)
		unlink(view);
}

/* ntfscat of path on view (an image, or a copy from view_image()). */
static uint8_t *cat_view(const char *view, const char *path, size_t *len)
{
	char *data = NULL;
	int err = oracle_cat(view, path, NULL, &data, len);

	if (err)
		fail_msg("ntfscat %s %s: %s (%s)", view, path, strerror(-err), oracle_last_stderr());
	return (uint8_t *)data;
}

static uint8_t *cat_image(const char *img, const char *path, size_t *len)
{
	char snap[300];
	const char *view = view_image(img, snap, sizeof(snap));
	uint8_t *data = cat_view(view, path, len);

	view_done(view, img);
	return data;
}

static void assert_same(const char *what, const uint8_t *got, size_t glen, const uint8_t *want,
			size_t wlen)
{
	size_t i;

	if (glen != wlen)
		fail_msg("%s: %zu bytes, expected %zu", what, glen, wlen);
	if (!memcmp(got, want, wlen))
		return;
	for (i = 0; got[i] == want[i]; i++)
		;
	fail_msg("%s: first difference at byte %zu (page %zu): 0x%02x, expected 0x%02x", what, i,
		 i / PAGE, got[i], want[i]);
}

/* ntfscat of path on img equals want. */
static void assert_image_file(const char *img, const char *path, const uint8_t *want, size_t wlen)
{
	size_t len;
	uint8_t *got = cat_image(img, path, &len);
	char what[256];

	snprintf(what, sizeof(what), "ntfscat %s", path);
	assert_same(what, got, len, want, wlen);
	free(got);
}

/* The whole file read through the daemon's cache equals want. */
static void assert_cache_file(ntfsc_file *f, const uint8_t *want, size_t wlen)
{
	uint8_t *got = malloc(wlen + 1);
	ssize_t n;

	assert_non_null(got);
	n = ntfsc_pread(f, got, wlen + 1, 0);
	if (n < 0)
		fail_msg("ntfsc_pread: %s", strerror(errno));
	assert_same("ntfsc_pread", got, (size_t)n, want, wlen);
	free(got);
}

static const char *daemon_msg(void)
{
	return ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "";
}

/* ntfsc_pwrite of version seed of [off, off + len) (seed 0: zeroes);
 * 0, or the errno of a failed or short write. */
static int try_pwrite_pattern(ntfsc_file *f, uint64_t off, size_t len, uint64_t seed)
{
	uint8_t *buf = malloc(len ? len : 1);
	ssize_t n;
	int e;

	assert_non_null(buf);
	pattern_fill(buf, len, seed, off);
	n = ntfsc_pwrite(f, buf, len, (off_t)off);
	e = n == (ssize_t)len ? 0 : n < 0 ? errno : EIO;
	free(buf);
	return e;
}

/* The same, which must work. */
static void pwrite_pattern(ntfsc_file *f, uint64_t off, size_t len, uint64_t seed)
{
	int e = try_pwrite_pattern(f, off, len, seed);

	if (e)
		fail_msg("ntfsc_pwrite(%zu bytes at %llu): %s (%s)", len, (unsigned long long)off,
			 strerror(e), daemon_msg());
}

/* Write version seed of [off, off + len) through f and into model. */
static void write_range(ntfsc_file *f, uint8_t *model, uint64_t off, size_t len, unsigned seed)
{
	pwrite_pattern(f, off, len, seed);
	pattern_fill(model + off, len, seed, off);
}

static void expect_fsync(ntfsc_file *f, const char *who, int want_errno)
{
	int r = ntfsc_fsync(f), e = errno;

	if (want_errno == 0 && r != 0)
		fail_msg("fsync on %s: -1 (%s: %s), expected 0", who, strerror(e), daemon_msg());
	if (want_errno && r == 0)
		fail_msg("fsync on %s: 0, expected -1 with %s", who, strerror(want_errno));
	if (want_errno && e != want_errno)
		fail_msg("fsync on %s: %s, expected %s", who, strerror(e), strerror(want_errno));
	if (want_errno && chatty)
		printf("    fsync on %s: -1 (%s) \"%s\"\n", who, strerror(e), daemon_msg());
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	char tmpl[] = "/tmp/ntfsd-we.XXXXXX";
	sigset_t ss;

	(void)state;
	memset(&dmn, 0, sizeof(dmn));
	memset(&nbd, 0, sizeof(nbd));
	memset(conns, 0, sizeof(conns));
	memset(kids, 0, sizeof(kids));
	passed = false;
	chatty = true;
	timed_out = 0;
	in_teardown = 0;
	/* a timeout that longjmp()ed out of the handler left SIGALRM blocked */
	sigemptyset(&ss);
	sigaddset(&ss, SIGALRM);
	sigprocmask(SIG_UNBLOCK, &ss, NULL);
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "%s", tmpl);
	alarm(180);
	return 0;
}

static void remove_tmpdir(void)
{
	DIR *d;
	struct dirent *de;

	if (!tmpdir[0])
		return;
	d = opendir(tmpdir);
	if (d) {
		while ((de = readdir(d))) {
			char p[512];

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(tmpdir);
	tmpdir[0] = '\0';
}

static int teardown(void **state)
{
	int i, st;

	(void)state;
	in_teardown = 1;
	alarm(60);
	for (i = 0; i < MAX_KIDS; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], &st, 0);
			kids[i] = 0;
		}
	if (!passed) {
		if (dmn.dir[0])
			daemon_dump_log(&dmn);
		nbd_error_dump_logs(&nbd);
	}
	/* the daemon first: a hung one cannot then hold up the disconnects */
	halt_daemon(5000, NULL);
	/* After a timeout a connection may be stuck mid-request with its
	 * lock held: leave it be. */
	for (i = 0; i < MAX_CONNS; i++) {
		if (conns[i] && !timed_out)
			ntfsc_disconnect(conns[i]);
		conns[i] = NULL;
	}
	if (nbd_error_stop(&nbd))
		fprintf(stderr, "teardown: nbdfuse/nbdkit did not stop cleanly\n");
	unsetenv("NTFSD_FAULT_WRITEPAGE_ENOMEM");
	remove_tmpdir();
	alarm(0);
	in_teardown = 0;
	timed_out = 0;
	return 0;
}

static int group_setup(void **state)
{
	struct sigaction sa;

	(void)state;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_NODEFER;       /* the handler longjmp()s out */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int group_teardown(void **state)
{
	/* everything is stopped per test; this is only a last sweep */
	return teardown(state);
}

/* ---- 1. a failing disk ---- */

/* The daemon's write-back counters: pages written, write errors. */
struct wb_counts {
	uint64_t written, errors;
};

static struct wb_counts wb_counts(ntfsc *c)
{
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	struct wb_counts n;

	if (ntfsc_volume_status(c, &vs))
		fail_msg("ntfsc_volume_status: %s", strerror(errno));
	n.written = vs.pages_written;
	n.errors = vs.write_errors;
	ntfsc_volume_status_free(&vs);
	return n;
}

static uint64_t write_errors(ntfsc *c)
{
	return wb_counts(c).errors;
}

/* `ntfsctl write PATH --offset OFF` of version seed of [off, off + len). */
static void ntfsctl_write(uint8_t *model, uint64_t off, size_t len, unsigned seed)
{
	char *stdin_path = tmp_path("ntfsctl-write.data"), *err = NULL, off_s[32];
	uint8_t *buf = malloc(len);
	int fd, status;

	assert_non_null(buf);
	pattern_fill(buf, len, seed, off);
	fd = open(stdin_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	snprintf(off_s, sizeof(off_s), "%llu", (unsigned long long)off);
	status = ntfsctl(stdin_path, NULL, &err, "write", "/big.bin", "--offset", off_s,
			 (char *)NULL);
	if (status != 0)
		fail_msg("ntfsctl write /big.bin --offset %s: exit %d: %s", off_s, status, err);
	memcpy(model + off, buf, len);
	unlink(stdin_path);
	free(stdin_path);
	free(err);
	free(buf);
}

/* `ntfsctl sync [PATH]` from a fresh process (path NULL: the volume):
 * exit status 0, or 1 with exactly the documented message. */
static void ntfsctl_sync_path(const char *path, int want_status, const char *why)
{
	char *err = NULL, want_err[300];
	int status = path ? ntfsctl(NULL, NULL, &err, "sync", path, (char *)NULL)
			  : ntfsctl(NULL, NULL, &err, "sync", (char *)NULL);

	if (chatty)
		printf("    ntfsctl sync%s%s (%s): exit %d%s%s", path ? " " : "", path ? path : "",
		       why, status, *err ? ", " : "\n", err);
	if (status != want_status)
		fail_msg("ntfsctl sync%s%s (%s): exit %d, expected %d (%s)", path ? " " : "",
			 path ? path : "", why, status, want_status, err);
	snprintf(want_err, sizeof(want_err), "ntfsctl: sync%s%s: Input/output error\n",
		 path ? " " : "", path ? path : "");
	if (want_status == 1 && strcmp(err, want_err))
		fail_msg("ntfsctl sync stderr \"%s\", expected \"%s\"", err, want_err);
	if (want_status == 0 && *err)
		fail_msg("ntfsctl sync succeeded but printed \"%s\"", err);
	free(err);
}

static void ntfsctl_sync(int want_status, const char *why)
{
	ntfsctl_sync_path("/big.bin", want_status, why);
}

static bool have_program(const char *name)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL, buf[512];
	bool found = false;

	copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	assert_non_null(copy);
	for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		snprintf(buf, sizeof(buf), "%s/%s", dir, name);
		found = access(buf, X_OK) == 0;
	}
	free(copy);
	return found;
}

/* Serve img through nbdkit's error filter and nbdfuse (nbd.file is the
 * volume for the daemon); rate NULL: every write fails while the disk
 * fails, else that share of them.  The teardown stops it in every case. */
static void serve_failing(const char *img, const char *rate)
{
	int e;

	if (!have_program("nbdkit") || !have_program("nbdfuse") || !have_program("fusermount3") ||
	    access("/dev/fuse", R_OK | W_OK) != 0)
		/* scripts/test installs them: their absence is a failure, not a skip */
		fail_msg("needs nbdkit (error filter), nbdfuse, fusermount3 and /dev/fuse");
	e = rate ? nbd_error_start_rate(&nbd, img, rate) : nbd_error_start(&nbd, img);
	if (e)
		fail_msg("cannot serve %s through nbdkit + nbdfuse: %s", img, strerror(-e));
}

/* From now on the disk's writes fail (at the rate it was started with), or not. */
static void disk_fails(bool on)
{
	int e = nbd_error_set(&nbd, on);

	if (e)
		fail_msg("turning the disk's write errors %s: %s", on ? "on" : "off", strerror(-e));
}

/* The end of a failing-disk test: a clean daemon stop (everything
 * written back, exit 0), then nbdfuse unmounted and nbdkit stopped. */
static void stop_failing(char **log_out)
{
	stop_daemon_clean(log_out);
	if (nbd_error_stop(&nbd))
		fail_msg("unmounting nbdfuse / stopping nbdkit was not clean");
}

static void eio_from_failing_device(void **state)
{
	/* Data stays dirty until fsync for a second after each write (so
	 * nothing written just before the disk starts failing can be written
	 * back early); later the background write-back fails on its own. */
	static const char *const args[] = { "--dirty-expire-ms", "1000", "--flushers", "2", NULL };
	char *img, *orig = fixture("vol4k.img"), *out = NULL, *err = NULL, *log;
	uint8_t *model, *orig_small, *orig_frag;
	size_t len, small_len, frag_len;
	uint64_t a_off = 20580, a_len = 65536, b_off, b_len = 5000, c_off = 2 * MiB + 3,
		 c_len = 20000, d_off = 1 * MiB + 4096, d_len = 8192, errs;
	struct ntfsc_stat st;
	ntfsc *ca, *cb;
	ntfsc_file *fa, *fb;
	double t0 = now_s(), t;
	int status;

	(void)state;
	alarm(150);
	img = copy_fixture("vol4k.img");
	model = cat_image(img, "/big.bin", &len);
	orig_small = cat_image(orig, "/small.txt", &small_len);
	orig_frag = cat_image(orig, "/frag/a.bin", &frag_len);
	b_off = len - b_len;                 /* the tail: a page straddling the end */
	assert_true(len > c_off + c_len && c_off > d_off + d_len);

	serve_failing(img, NULL);
	start_daemon(nbd.file, args);
	ca = connect_daemon();
	cb = connect_daemon();
	fa = ntfsc_open(ca, "/big.bin", O_RDWR);
	fb = ntfsc_open(cb, "/big.bin", O_RDWR);
	if (!fa || !fb)
		fail_msg("ntfsc_open(/big.bin, O_RDWR): %s", strerror(errno));

	/* distinct data from two handles on two connections, then the disk fails */
	write_range(fa, model, a_off, a_len, 1);
	write_range(fb, model, b_off, b_len, 2);
	disk_fails(true);

	/* the write-back fails: every handle open at the time sees it, once */
	expect_fsync(fa, "handle A", EIO);
	expect_fsync(fb, "handle B", EIO);
	expect_fsync(fa, "handle A (again)", 0);
	expect_fsync(fb, "handle B (again)", 0);

	/* A new handle sees only an error nobody has seen yet: A and B saw
	 * this one, so a fresh `ntfsctl sync` succeeds. */
	ntfsctl_sync(0, "A and B saw the error");

	/* new data through ntfsctl while the disk still fails: its sync fails
	 * (its own write-back fails while its handle is open) */
	ntfsctl_write(model, c_off, c_len, 3);
	ntfsctl_sync(1, "its own write-back fails");

	/* the daemon keeps serving, and counts the failures */
	status = ntfsctl(NULL, &out, &err, "status", (char *)NULL);
	if (status != 0)
		fail_msg("ntfsctl status after write errors: exit %d: %s", status, err);
	free(out);
	free(err);
	out = err = NULL;
	errs = write_errors(ca);
	printf("    status: %llu write errors so far\n", (unsigned long long)errs);
	assert_true(errs > 0);

	/* A and B were open when ntfsctl's write-back failed: they see that
	 * error too, once, although none of their own data was involved. */
	expect_fsync(fa, "handle A (ntfsctl's failure)", EIO);
	expect_fsync(fa, "handle A (seen)", 0);
	expect_fsync(fb, "handle B (ntfsctl's failure)", EIO);
	expect_fsync(fb, "handle B (seen)", 0);

	/* An error nobody has seen: ntfsctl writes and exits, the daemon's
	 * background write-back (expiry) fails with no handle checking. */
	ntfsctl_write(model, d_off, d_len, 4);
	t = now_s();
	for (;;) {
		assert_int_equal(ntfsc_fstat(fa, &st), 0);
		if (!st.dirty_pages && !st.writeback_pages && write_errors(ca) > errs)
			break;
		if (now_s() - t > 10)
			fail_msg("the background write-back did not run within 10 s (%llu dirty)",
				 (unsigned long long)st.dirty_pages);
		sleep_ms(20);
	}
	printf("    background write-back failed after %.2f s\n", now_s() - t);
	ntfsctl_sync(1, "nobody has seen the background failure");
	ntfsctl_sync(0, "the previous ntfsctl saw it");
	expect_fsync(fa, "handle A (background failure)", EIO);
	expect_fsync(fa, "handle A (seen)", 0);
	expect_fsync(fb, "handle B (background failure)", EIO);
	expect_fsync(fb, "handle B (seen)", 0);
	status = ntfsctl(NULL, &out, &err, "status", (char *)NULL);
	if (status != 0)
		fail_msg("ntfsctl status after write errors: exit %d: %s", status, err);
	free(out);
	free(err);
	out = err = NULL;

	/* The disk works again.  The failed pages are clean in the cache (with
	 * the new data) but old on the disk: write everything again. */
	disk_fails(false);
	write_range(fa, model, a_off, a_len, 11);
	write_range(fb, model, b_off, b_len, 12);
	write_range(fa, model, c_off, c_len, 13);
	write_range(fb, model, d_off, d_len, 14);
	expect_fsync(fa, "handle A (disk working)", 0);
	expect_fsync(fb, "handle B (disk working)", 0);
	ntfsctl_sync(0, "disk working");
	assert_cache_file(fa, model, len);
	log = read_text(dmn.log);
	printf("    daemon log: %u \"writeback of page ... failed\" lines\n",
	       count_substr(log, "writeback of page"));
	free(log);

	assert_int_equal(ntfsc_close(fa), 0);
	assert_int_equal(ntfsc_close(fb), 0);
	disconnect_daemon(ca);
	disconnect_daemon(cb);
	stop_failing(NULL);

	assert_image_file(img, "/big.bin", model, len);
	assert_image_file(img, "/small.txt", orig_small, small_len);
	assert_image_file(img, "/frag/a.bin", orig_frag, frag_len);
	assert_ntfsfix_clean(img);
	printf("    [timing] failing disk: %.2f s\n", now_s() - t0);
	free(model);
	free(orig_small);
	free(orig_frag);
	free(orig);
	free(img);
	passed = true;
}

/*
 * 1b. A truncate whose record write fails loses nothing: dirty data past
 * the new end (and before it) is still in the cache and reaches the disk
 * with the next fsync once the disk works; the size stays the old one.
 * Ten rounds on one daemon, each with new data.
 */
static void failed_truncate_keeps_writes(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "600000", NULL };
	char *img;
	uint8_t *model;
	size_t len;
	struct ntfsc_stat st;
	ntfsc *c;
	ntfsc_file *f;
	unsigned round;

	(void)state;
	alarm(150);
	img = copy_fixture("vol4k.img");
	model = cat_image(img, "/big.bin", &len);
	serve_failing(img, NULL);
	start_daemon(nbd.file, args);
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	if (!f)
		fail_msg("ntfsc_open(/big.bin, O_RDWR): %s", strerror(errno));
	for (round = 0; round < 10; round++) {
		uint64_t cut = len / 2 + round * 12345;

		/* dirty data on both sides of the cut, then the disk fails */
		write_range(f, model, cut - 7000, 3000, 100 + round);
		write_range(f, model, cut + 5000, 70000, 200 + round);
		write_range(f, model, len - 100, 100, 300 + round);
		disk_fails(true);
		if (ntfsc_ftruncate(f, (off_t)cut) == 0)
			fail_msg("round %u: ftruncate to %llu succeeded on a failing disk", round,
				 (unsigned long long)cut);
		if (errno != EIO)
			fail_msg("round %u: ftruncate failed with %s, not EIO", round,
				 strerror(errno));
		disk_fails(false);
		assert_int_equal(ntfsc_fstat(f, &st), 0);
		if (st.size != len)
			fail_msg("round %u: the failed truncate left size %llu, not %zu", round,
				 (unsigned long long)st.size, len);
		assert_cache_file(f, model, len);
		expect_fsync(f, "after the failed truncate", 0);
	}
	assert_int_equal(ntfsc_close(f), 0);
	disconnect_daemon(c);
	stop_failing(NULL);
	assert_image_file(img, "/big.bin", model, len);
	assert_ntfsfix_clean(img);
	printf("    10 failed truncates, every write kept\n");
	free(model);
	free(img);
	passed = true;
}

/* ---- 1c-1e. EIO and recovery, round after round ---- */

/* NTFSD_TEST_SEED: where the rounds' offsets and data come from (printed). */
#define DEFAULT_SEED 0xe10e10ull
static uint64_t run_seed = DEFAULT_SEED;

/*
 * A file as the failing-disk rounds model it: cur is every returned
 * store (what the cache holds), disk what the volume must hold (the file
 * as the test found it, or at the last sync that returned 0).  Lengths
 * never pass cap; bytes past a length are zero.
 */
struct fmodel {
	const char *path;
	ntfsc_file *h;
	uint8_t *cur, *disk;
	size_t cur_len, disk_len, cap;
};

/* Model path as img has it, with room to grow, and open it on c. */
static void fm_open(struct fmodel *m, ntfsc *c, const char *img, const char *path, size_t room)
{
	size_t len;
	uint8_t *data = cat_image(img, path, &len);

	m->path = path;
	m->cap = len + room;
	m->cur = calloc(1, m->cap);
	m->disk = calloc(1, m->cap);
	assert_true(m->cur && m->disk);
	memcpy(m->cur, data, len);
	memcpy(m->disk, data, len);
	m->cur_len = m->disk_len = len;
	free(data);
	m->h = ntfsc_open(c, path, O_RDWR);
	if (!m->h)
		fail_msg("ntfsc_open(%s, O_RDWR): %s", path, strerror(errno));
}

static void fm_close(struct fmodel *m)
{
	if (m->h)
		assert_int_equal(ntfsc_close(m->h), 0);
	m->h = NULL;
}

static void fm_free(struct fmodel *m)
{
	free(m->cur);
	free(m->disk);
	memset(m, 0, sizeof(*m));
}

/* The volume has every byte of the models: what the cache holds is durable. */
static void fm_synced(struct fmodel *const *ms, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		memcpy(ms[i]->disk, ms[i]->cur, ms[i]->cap);
		ms[i]->disk_len = ms[i]->cur_len;
	}
}

/* A size the sync still has to write into the record (it grew). */
static bool fm_grows(const struct fmodel *m)
{
	return m->cur_len != m->disk_len;
}

/* Store version seed of [off, off + len) into the file: with
 * ntfsc_pwrite, or (mmap; within the file's size) through ntfsc_mmap and
 * ntfsc_set_dirty; and into m->cur. */
static void fm_store(struct fmodel *m, bool mmap, uint64_t off, uint64_t len, uint64_t seed)
{
	assert_true(len && off + len <= m->cap);
	if (mmap) {
		uint8_t *p = ntfsc_mmap(m->h, (off_t)off, (size_t)len, PROT_READ | PROT_WRITE);

		if (p == MAP_FAILED)
			fail_msg("ntfsc_mmap(%s, %llu bytes at %llu): %s (%s)", m->path,
				 (unsigned long long)len, (unsigned long long)off, strerror(errno),
				 daemon_msg());
		pattern_fill(p, (size_t)len, seed, off);
		if (ntfsc_set_dirty(m->h, p, (size_t)len))
			fail_msg("ntfsc_set_dirty(%s): %s (%s)", m->path, strerror(errno),
				 daemon_msg());
		assert_int_equal(ntfsc_munmap(m->h, p, (size_t)len), 0);
	} else {
		pwrite_pattern(m->h, off, (size_t)len, seed);
	}
	pattern_fill(m->cur + off, (size_t)len, seed, off);
	if (off + len > m->cur_len)
		m->cur_len = (size_t)(off + len);
}

/* ntfscat of every model equals its cur (want_cur) or its disk bytes;
 * one copy of the image for all of them while the daemon runs. */
static void fm_assert_volume(const char *img, struct fmodel *const *ms, unsigned n, bool want_cur,
			     const char *ctx)
{
	char snap[300], what[300];
	const char *view = view_image(img, snap, sizeof(snap));

	for (unsigned i = 0; i < n; i++) {
		size_t len;
		uint8_t *got = cat_view(view, ms[i]->path, &len);

		snprintf(what, sizeof(what), "%s: ntfscat %s (%s)", ctx, ms[i]->path,
			 want_cur ? "every store" : "what was synced before");
		assert_same(what, got, len, want_cur ? ms[i]->cur : ms[i]->disk,
			    want_cur ? ms[i]->cur_len : ms[i]->disk_len);
		free(got);
	}
	view_done(view, img);
}

/* Nothing of the models is dirty or under write-back. */
static void fm_assert_clean(struct fmodel *const *ms, unsigned n, const char *ctx)
{
	struct ntfsc_stat st;

	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(ntfsc_fstat(ms[i]->h, &st), 0);
		if (st.dirty_pages || st.writeback_pages)
			fail_msg("%s: %s has %llu dirty pages and %llu under write-back after the "
				 "sync", ctx, ms[i]->path, (unsigned long long)st.dirty_pages,
				 (unsigned long long)st.writeback_pages);
	}
}

/* A copy of vol4k.img on a failing disk (rate: see serve_failing()), a
 * daemon with args serving it, a connection in *c; the image's path. */
static char *failing_volume(const char *rate, const char *const *args, ntfsc **c)
{
	char *img = copy_fixture("vol4k.img");

	serve_failing(img, rate);
	start_daemon(nbd.file, args);
	*c = connect_daemon();
	return img;
}

/* The end of a test of models on a failing disk: handles closed, a clean
 * stop, then ntfscat equals every model and ntfsfix -n is clean; the
 * models and img freed. */
static void finish_models(ntfsc *c, char *img, struct fmodel *const *ms, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		fm_close(ms[i]);
	disconnect_daemon(c);
	stop_failing(NULL);
	fm_assert_volume(img, ms, n, true, "after the stop");
	assert_ntfsfix_clean(img);
	for (i = 0; i < n; i++)
		fm_free(ms[i]);
	free(img);
}

/* The stores of a round, to do once more after the failure. */
#define ROUND_OPS 48

struct fm_op {
	struct fmodel *m;
	bool mmap;
	uint64_t off, len, seed;
};

struct fm_round {
	unsigned n;
	struct fm_op op[ROUND_OPS];
};

static void round_store(struct fm_round *r, struct fmodel *m, bool mmap, uint64_t off,
			uint64_t len, uint64_t seed)
{
	assert_true(r->n < ROUND_OPS);
	r->op[r->n++] = (struct fm_op){ .m = m, .mmap = mmap, .off = off, .len = len,
					.seed = seed };
	fm_store(m, mmap, off, len, seed);
}

/* The same bytes again: failed pages are clean in the cache and reach the
 * disk only when written again. */
static void round_redo(const struct fm_round *r)
{
	for (unsigned i = 0; i < r->n; i++)
		fm_store(r->op[i].m, r->op[i].mmap, r->op[i].off, r->op[i].len, r->op[i].seed);
}

/* How a round syncs: ntfsc_fsync of each file, one ntfsc_sync on the
 * connection holding the handles, or `ntfsctl sync [PATH]` from a fresh
 * process (PATH for one file, the volume for several). */
enum sync_via { VIA_FSYNC, VIA_SYNC, VIA_NTFSCTL };
static const char *const via_name[] = { "ntfsc_fsync", "ntfsc_sync", "ntfsctl sync" };

static void expect_sync(ntfsc *c, const char *who, int want_errno)
{
	int r = ntfsc_sync(c), e = errno;

	if (want_errno == 0 && r != 0)
		fail_msg("ntfsc_sync (%s): -1 (%s: %s), expected 0", who, strerror(e), daemon_msg());
	if (want_errno && (r == 0 || e != want_errno))
		fail_msg("ntfsc_sync (%s): %s, expected -1 with %s", who, r ? strerror(e) : "0",
			 strerror(want_errno));
}

/*
 * The round's sync.  failing: every write fails, so the sync fails with
 * EIO and every handle sees that once: a second fsync returns 0, except
 * on a file that grew, whose sizes every sync writes again (and fails
 * again).  Else everything must work.  Either way nothing is left dirty.
 */
static void round_sync(ntfsc *c, enum sync_via via, struct fmodel *const *ms, unsigned n,
		       bool failing, const char *ctx)
{
	char who[300];
	bool grows = false;
	unsigned i;

	switch (via) {
	case VIA_FSYNC:
		for (i = 0; i < n; i++) {
			snprintf(who, sizeof(who), "%s, %s", ctx, ms[i]->path);
			expect_fsync(ms[i]->h, who, failing ? EIO : 0);
		}
		break;
	case VIA_SYNC:
		expect_sync(c, ctx, failing ? EIO : 0);
		break;
	case VIA_NTFSCTL:
		ntfsctl_sync_path(n == 1 ? ms[0]->path : NULL, failing ? 1 : 0, ctx);
		/* the handles were open when its write-back failed */
		for (i = 0; i < n; i++) {
			snprintf(who, sizeof(who), "%s, %s (ntfsctl's failure)", ctx, ms[i]->path);
			expect_fsync(ms[i]->h, who, failing ? EIO : 0);
		}
		break;
	}
	for (i = 0; i < n; i++) {
		snprintf(who, sizeof(who), "%s, %s again", ctx, ms[i]->path);
		expect_fsync(ms[i]->h, who, failing && fm_grows(ms[i]) ? EIO : 0);
		grows |= fm_grows(ms[i]);
	}
	if (via == VIA_SYNC && !(failing && grows))
		expect_sync(c, ctx, 0);
	fm_assert_clean(ms, n, ctx);
}

/*
 * A round whose stores (r) are in the cache: the disk fails, the sync
 * fails with EIO, once for each handle, and nothing of the round is on the
 * volume; the disk works again, the same stores once more, the sync
 * returns 0 and the volume and the cache hold every byte.
 */
static void eio_round(ntfsc *c, const char *img, struct fmodel *const *ms, unsigned n,
		      const struct fm_round *r, enum sync_via via, const char *ctx)
{
	uint64_t errs = write_errors(c);

	disk_fails(true);
	round_sync(c, via, ms, n, true, ctx);
	if (write_errors(c) <= errs)
		fail_msg("%s: the failed sync counted no write error", ctx);
	fm_assert_volume(img, ms, n, false, ctx);
	disk_fails(false);
	round_redo(r);
	round_sync(c, via, ms, n, false, ctx);
	fm_assert_volume(img, ms, n, true, ctx);
	for (unsigned i = 0; i < n; i++)
		assert_cache_file(ms[i]->h, ms[i]->cur, ms[i]->cur_len);
	fm_synced(ms, n);
}

#define EIO_ROUNDS 20

enum { M_BIG, M_FRAG_A, M_FRAG_C, M_SMALL, M_PREALLOC, M_ATTRLIST, NMODELS };
static const struct {
	const char *path;
	size_t room;
} round_files[NMODELS] = {
	{ "/big.bin", 0 },
	{ "/frag/a.bin", 0 },           /* 64 one-cluster fragments */
	{ "/frag/c.bin", 256 * KiB },   /* appended to */
	{ "/small.txt", 0 },            /* resident */
	{ "/prealloc.bin", 0 },         /* initialized 10000 of 1 MiB */
	{ "/attrlist.bin", 0 },         /* runlist behind an $ATTRIBUTE_LIST */
};

/* (a): scattered pwrites into two files, a page-aligned write of zeroes
 * over data, an append (sizes and initialized_size move), a write past
 * the initialized size of a preallocated file, a resident file: one sync
 * for all of them. */
static void round_many_files(struct fm_round *r, struct fmodel *ms, uint64_t *rs, uint64_t seed)
{
	struct fmodel *big = &ms[M_BIG], *fa = &ms[M_FRAG_A], *fc = &ms[M_FRAG_C];
	struct fmodel *sm = &ms[M_SMALL], *pre = &ms[M_PREALLOC];
	struct ntfsc_stat st;
	uint64_t len, off;
	unsigned i;

	for (i = 0; i < 16; i++) {
		len = 1 + below(rs, 16 * KiB);
		round_store(r, big, false, below(rs, big->cur_len - len), len, seed + i);
	}
	for (i = 0; i < 8; i++) {
		len = 1 + below(rs, 8 * KiB);
		round_store(r, fa, false, below(rs, fa->cur_len - len), len, seed + 100 + i);
	}
	/* zeroes over data: written again they must not count as "already
	 * zero" because the cache holds zeroes the disk does not */
	round_store(r, big, false, (below(rs, big->cur_len / PAGE - 17) + 1) * PAGE, 16 * PAGE, 0);
	len = 3000 + below(rs, 17000);
	round_store(r, fc, false, fc->cur_len, len, seed + 200);
	assert_int_equal(ntfsc_fstat(pre->h, &st), 0);
	off = st.initialized_size + below(rs, 3000);
	round_store(r, pre, false, off, 7000, seed + 300);
	len = 1 + below(rs, sm->cur_len);
	round_store(r, sm, false, below(rs, sm->cur_len - len + 1), len, seed + 400);
}

/* (b): stores through ntfsc_mmap + ntfsc_set_dirty into two files. */
static void round_mmap(struct fm_round *r, struct fmodel *ms, uint64_t *rs, uint64_t seed)
{
	struct fmodel *pick[2] = { &ms[M_BIG], &ms[M_ATTRLIST] };

	for (unsigned i = 0; i < 10; i++) {
		struct fmodel *m = pick[i % 2];
		uint64_t len = 1 + below(rs, 32 * KiB);

		round_store(r, m, true, below(rs, m->cur_len - len), len, seed + i);
	}
}

static uint64_t round_seed(unsigned round, unsigned part)
{
	return mix_seed(run_seed, round * 16u + part) << 8;   /* seed + i stays distinct */
}

/*
 * 1c. Twenty rounds on one daemon: 1 MiB into /big.bin, the disk fails,
 * the sync fails (ntfsc_fsync, ntfsc_sync and ntfsctl sync in turn), the
 * disk works, the same bytes again, the sync returns 0, and the volume
 * holds them; then in even rounds (a) dirty pages over five files (one
 * appended, one past its initialized size, one resident) in one sync, in
 * odd rounds (b) stores through ntfsc_mmap.  Expiry is long: only the
 * syncs write back.
 */
static void eio_rounds(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "600000", "--flushers", "2", NULL };
	struct fmodel ms[NMODELS];
	struct fmodel *all[NMODELS], *big = &ms[M_BIG];
	struct fmodel *five[] = { &ms[M_BIG], &ms[M_FRAG_A], &ms[M_FRAG_C], &ms[M_SMALL],
				  &ms[M_PREALLOC] };
	struct fmodel *mapped[] = { &ms[M_BIG], &ms[M_ATTRLIST] };
	struct wb_counts w0, w;
	char *img, ctx[160];
	unsigned round, i, stores = 0;
	uint64_t rs = mix_seed(run_seed, 1);
	double t0 = now_s();
	ntfsc *c;

	(void)state;
	alarm(240);
	memset(ms, 0, sizeof(ms));
	img = failing_volume(NULL, args, &c);
	for (i = 0; i < NMODELS; i++) {
		fm_open(&ms[i], c, img, round_files[i].path, round_files[i].room);
		all[i] = &ms[i];
	}
	w0 = wb_counts(c);
	chatty = false;
	for (round = 0; round < EIO_ROUNDS; round++) {
		struct fm_round r = { 0 };
		enum sync_via via = (enum sync_via)(round % 3);
		uint64_t off = below(&rs, big->cur_len - MiB + 1);

		snprintf(ctx, sizeof(ctx), "round %u (1 MiB at %llu, %s)", round,
			 (unsigned long long)off, via_name[via]);
		round_store(&r, big, false, off, MiB, round_seed(round, 0));
		eio_round(c, img, &big, 1, &r, via, ctx);
		stores += r.n;

		r.n = 0;
		if (round % 2 == 0) {
			via = round % 4 ? VIA_NTFSCTL : VIA_SYNC;
			snprintf(ctx, sizeof(ctx), "round %u (a: five files, %s)", round, via_name[via]);
			round_many_files(&r, ms, &rs, round_seed(round, 1));
			eio_round(c, img, five, 5, &r, via, ctx);
		} else {
			via = round % 4 == 1 ? VIA_FSYNC : VIA_SYNC;
			snprintf(ctx, sizeof(ctx), "round %u (b: mmap, %s)", round, via_name[via]);
			round_mmap(&r, ms, &rs, round_seed(round, 2));
			eio_round(c, img, mapped, 2, &r, via, ctx);
		}
		stores += r.n;
	}
	w = wb_counts(c);
	printf("    %u rounds, %u EIO episodes (%u stores, each done twice): %llu write errors, "
	       "%llu pages written\n", EIO_ROUNDS, 2 * EIO_ROUNDS, stores,
	       (unsigned long long)(w.errors - w0.errors),
	       (unsigned long long)(w.written - w0.written));
	finish_models(c, img, all, NMODELS);
	printf("    [timing] %u EIO rounds: %.2f s\n", EIO_ROUNDS, now_s() - t0);
	passed = true;
}

/*
 * 1d. Zeroes written over a page whose write-back failed: the cache holds
 * zeroes the disk does not, so writing them again must write them
 * (libntfsc skips zeroes written over bytes that already read as zeroes),
 * also after part of the page was rewritten and written back meanwhile.
 */
static void zeroes_over_a_failed_page(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "600000", NULL };
	struct fmodel m = { 0 }, *mp = &m;
	struct fm_round r = { 0 };
	uint64_t p = 100 * PAGE, q = 300 * PAGE;
	char *img;
	ntfsc *c;

	(void)state;
	alarm(60);
	img = failing_volume(NULL, args, &c);
	fm_open(&m, c, img, "/big.bin", 0);

	/* 16 pages of zeroes over data fail, and are written again */
	round_store(&r, &m, false, p, 16 * PAGE, 0);
	eio_round(c, img, &mp, 1, &r, VIA_FSYNC, "zeroes over 16 pages");

	/* a page of zeroes fails; one byte of it is rewritten and written
	 * back; then zeroes over the rest of the page, which the cache
	 * already holds but the disk does not */
	fm_store(&m, false, q, PAGE, 0);
	disk_fails(true);
	expect_fsync(m.h, "a page of zeroes", EIO);
	disk_fails(false);
	fm_store(&m, false, q, 1, 77);
	expect_fsync(m.h, "one byte of the failed page", 0);
	fm_store(&m, false, q + 512, PAGE - 512, 0);
	expect_fsync(m.h, "zeroes over the rest of the failed page", 0);
	fm_assert_volume(img, &mp, 1, true, "zeroes over a partly rewritten failed page");
	fm_synced(&mp, 1);
	finish_models(c, img, &mp, 1);
	passed = true;
}

/* Wait (10 s at most) until the background write-back has taken every
 * dirty page of m and counted write errors past errs. */
static void wait_background_failure(ntfsc *c, struct fmodel *m, uint64_t errs, const char *ctx)
{
	struct ntfsc_stat st;
	double t = now_s();

	for (;;) {
		assert_int_equal(ntfsc_fstat(m->h, &st), 0);
		if (!st.dirty_pages && !st.writeback_pages && write_errors(c) > errs)
			return;
		if (now_s() - t > 10)
			fail_msg("%s: the background write-back did not fail within 10 s (%llu pages "
				 "dirty, %llu under write-back)", ctx,
				 (unsigned long long)st.dirty_pages,
				 (unsigned long long)st.writeback_pages);
		sleep_ms(10);
	}
}

/* ntfscat of m: every page is what it was (m->disk) or what was stored
 * (m->cur), whole: one failed device write fails its page alone.
 * Returns how many pages hold the new bytes. */
static unsigned assert_pages_old_or_new(const char *img, const struct fmodel *m, const char *ctx)
{
	size_t len, pg, n;
	unsigned fresh = 0;
	uint8_t *got = cat_image(img, m->path, &len);

	assert_true(len == m->cur_len && len == m->disk_len);
	for (pg = 0; pg * PAGE < len; pg++) {
		size_t o = pg * PAGE;

		n = len - o < PAGE ? len - o : PAGE;
		if (!memcmp(got + o, m->disk + o, n))
			continue;
		if (memcmp(got + o, m->cur + o, n))
			fail_msg("%s: page %zu of %s on the volume is neither what it was nor what "
				 "was stored", ctx, pg, m->path);
		fresh++;
	}
	free(got);
	return fresh;
}

#define BG_ROUNDS 10
#define BG_SLOT (64 * KiB)

/*
 * 1e. Errors that the background write-back meets, not a sync: expiry
 * 100 ms, two handles A and B on /big.bin (two connections).  Odd
 * rounds: the disk fails, then 24 writes, left to the flushers; even
 * rounds: 64 KiB writes one after another into distinct slots while the
 * flushers write them back, the disk failing from the middle on (on the
 * volume each page is then old or new).  Once the flushers have met the
 * errors, every handle open then sees EIO once, and a fresh `ntfsctl
 * sync` sees it only if no handle saw it yet (README: once to every
 * handle, and to the next sync of anyone if no handle saw it).  Then the
 * disk works, the same writes again, fsync returns 0, the volume holds
 * every byte.
 */
static void eio_in_background_writeback(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "100", "--flushers", "2", NULL };
	struct fmodel m = { 0 }, *mp = &m;
	uint64_t rs = mix_seed(run_seed, 3), errs;
	unsigned round, fresh = 0, nslots;
	ntfsc_file *hb;
	char *img, ctx[160];
	double t0 = now_s();
	ntfsc *ca, *cb;

	(void)state;
	alarm(180);
	img = failing_volume(NULL, args, &ca);
	cb = connect_daemon();
	fm_open(&m, ca, img, "/big.bin", 0);
	hb = ntfsc_open(cb, "/big.bin", O_RDWR);
	if (!hb)
		fail_msg("ntfsc_open(/big.bin): %s", strerror(errno));
	nslots = (unsigned)(m.cur_len / BG_SLOT);
	chatty = false;
	for (round = 0; round < BG_ROUNDS; round++) {
		struct fm_round r = { 0 };
		uint64_t seed = round_seed(round, 3);
		unsigned i;

		errs = write_errors(ca);
		if (round % 2) {
			snprintf(ctx, sizeof(ctx), "round %u (the disk fails, then 24 writes)", round);
			disk_fails(true);
			for (i = 0; i < 24; i++) {
				uint64_t len = 1 + below(&rs, 32 * KiB);

				round_store(&r, &m, false, below(&rs, m.cur_len - len), len, seed + i);
			}
		} else {
			bool slot_used[64] = { false };

			snprintf(ctx, sizeof(ctx), "round %u (the disk fails during the writes)",
				 round);
			assert_true(nslots <= 64);
			for (i = 0; i < 32; i++) {
				unsigned k = (unsigned)below(&rs, nslots);

				while (slot_used[k])
					k = (k + 1) % nslots;
				slot_used[k] = true;
				if (i == 16)
					disk_fails(true);
				round_store(&r, &m, false, (uint64_t)k * BG_SLOT, BG_SLOT, seed + i);
				sleep_ms(15);
			}
		}
		wait_background_failure(ca, &m, errs, ctx);
		if (round % 2)
			fm_assert_volume(img, &mp, 1, false, ctx);
		else
			fresh += assert_pages_old_or_new(img, &m, ctx);
		/* reported: to a fresh sync only while no handle saw it */
		switch (round % 4) {
		case 0:
		case 1:
			ntfsctl_sync_path(NULL, 1, ctx);
			ntfsctl_sync_path(NULL, 0, ctx);
			expect_fsync(m.h, "handle A", EIO);
			expect_fsync(hb, "handle B", EIO);
			break;
		default:
			expect_fsync(m.h, "handle A", EIO);
			ntfsctl_sync_path("/big.bin", 0, ctx);
			expect_fsync(hb, "handle B", EIO);
			break;
		}
		expect_fsync(m.h, "handle A (seen)", 0);
		expect_fsync(hb, "handle B (seen)", 0);

		disk_fails(false);
		round_redo(&r);
		expect_fsync(m.h, "handle A (disk working)", 0);
		expect_fsync(hb, "handle B (disk working)", 0);
		fm_assert_volume(img, &mp, 1, true, ctx);
		fm_synced(&mp, 1);
	}
	printf("    %u rounds of background write-back failing (%u pages written before the "
	       "disk failed); every handle saw each once\n", BG_ROUNDS, fresh);
	assert_cache_file(m.h, m.cur, m.cur_len);
	assert_int_equal(ntfsc_close(hb), 0);
	disconnect_daemon(cb);
	finish_models(ca, img, &mp, 1);
	printf("    [timing] background failures: %.2f s\n", now_s() - t0);
	passed = true;
}

/* ---- 1f. one failed write fails one page ---- */

#define BATCH 256u      /* pages writeback submits together (WB_BATCH_PAGES) */

static size_t log_size(void)
{
	struct stat st;

	return stat(dmn.log, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The pages of MFT record mft that the daemon's log, from byte `from`
 * on, says failed: failed[i] for page first + i (n pages).  Returns how
 * many; a failed page of it outside them fails the test. */
static unsigned logged_failures(size_t from, uint64_t mft, uint64_t first, unsigned n,
				bool *failed)
{
	char *log = read_text(dmn.log), *p;
	unsigned count = 0;

	memset(failed, 0, n * sizeof(*failed));
	for (p = log + (from < strlen(log) ? from : strlen(log));
	     (p = strstr(p, "writeback of page ")); p++) {
		unsigned long long page, rec;

		if (sscanf(p, "writeback of page %llu of MFT record %llu failed", &page, &rec) != 2 ||
		    rec != mft)
			continue;
		if (page < first || page >= first + n)
			fail_msg("page %llu of MFT record %llu failed, outside pages %llu..%llu", page,
				 rec, (unsigned long long)first, (unsigned long long)(first + n - 1));
		if (!failed[page - first]) {
			failed[page - first] = true;
			count++;
		}
	}
	free(log);
	return count;
}

/* Page i of [first, first + n) of m on the view: what was stored (cur),
 * what it was (disk) or zero, as the caller wants. */
enum page_is { PAGE_NEW, PAGE_OLD, PAGE_ZERO, PAGE_NEW_OR_ZERO };

static void assert_page(const uint8_t *got, const struct fmodel *m, uint64_t pg, enum page_is want,
			const char *ctx)
{
	static const uint8_t zero[PAGE];
	const uint8_t *at = got + pg * PAGE;
	bool is_new = !memcmp(at, m->cur + pg * PAGE, PAGE), is_zero = !memcmp(at, zero, PAGE);
	bool ok = want == PAGE_NEW ? is_new : want == PAGE_OLD ? !memcmp(at, m->disk + pg * PAGE, PAGE)
			: want == PAGE_ZERO ? is_zero : is_new || is_zero;
	static const char *const name[] = { "what was stored", "what it was", "zeroes",
					    "what was stored or zeroes" };

	if (!ok)
		fail_msg("%s: page %llu of %s on the volume is not %s", ctx, (unsigned long long)pg,
			 m->path, name[want]);
}

/* The pages [first, first + n) of m on the volume that end at or below
 * limit: a failed one (failed[i]) is if_failed, the others if_ok. */
static void assert_run(const char *img, const struct fmodel *m, uint64_t first, unsigned n,
		       const bool *failed, enum page_is if_failed, enum page_is if_ok,
		       uint64_t limit, const char *ctx)
{
	size_t len;
	uint8_t *got = cat_image(img, m->path, &len);

	assert_int_equal(len, m->cur_len);
	for (unsigned i = 0; i < n; i++)
		if ((first + i + 1) * PAGE <= limit)
			assert_page(got, m, first + i, failed[i] ? if_failed : if_ok, ctx);
	free(got);
}

/* The nf failed pages of [first, first + n) written again, the same
 * bytes: the next fsync writes exactly those, no error, and the volume
 * then holds every store.  w: the counters before; returns them after. */
static struct wb_counts rewrite_failed(ntfsc *c, const char *img, struct fmodel *m,
				       uint64_t first, unsigned n, const bool *failed,
				       unsigned nf, uint64_t seed, struct wb_counts w)
{
	struct wb_counts after;

	for (unsigned i = 0; i < n; i++)
		if (failed[i])
			fm_store(m, false, (first + i) * PAGE, PAGE, seed);
	expect_fsync(m->h, "the failed pages written again", 0);
	after = wb_counts(c);
	assert_int_equal(after.written - w.written, nf);
	assert_int_equal(after.errors, w.errors);
	fm_assert_volume(img, &m, 1, true, "the failed pages written again");
	return after;
}

static uint64_t file_mft(ntfsc_file *f)
{
	struct ntfsc_stat_ext sx;

	assert_int_equal(ntfsc_fstat_ext(f, &sx), 0);
	return sx.mft_no;
}

static uint64_t record_init(const char *img, const char *path)
{
	char snap[300];
	const char *view = view_image(img, snap, sizeof(snap));
	struct oracle_attr oa;
	int err = oracle_info(view, path, NULL, &oa);

	view_done(view, img);
	if (err || !oa.found)
		fail_msg("ntfsinfo %s: %s", path, err ? strerror(-err) : "no $DATA");
	return oa.initialized_size;
}

/*
 * Overwrites: 256 whole pages of /big.bin in one fsync, one batch, while
 * a share of the disk's writes fails.  The failed pages (the daemon logs
 * each) are the old bytes on the volume, every other page the new ones;
 * the counters agree (pages written, write errors); nothing is left dirty.
 * Written again, only the failed pages, the next fsync writes exactly
 * those and the volume holds everything.
 */
static void batch_overwrite(ntfsc *c, const char *img, struct fmodel *m, uint64_t seed)
{
	const uint64_t first = 16;
	bool failed[BATCH];
	struct wb_counts w0, w1;
	unsigned nf;
	uint64_t mft = file_mft(m->h);
	size_t from;

	fm_store(m, false, first * PAGE, BATCH * PAGE, seed);
	w0 = wb_counts(c);
	from = log_size();
	disk_fails(true);
	expect_fsync(m->h, "256 pages, some writes failing", EIO);
	disk_fails(false);
	nf = logged_failures(from, mft, first, BATCH, failed);
	w1 = wb_counts(c);
	printf("    overwrite: %u of %u pages failed, %llu written (one batch, one fsync)\n", nf,
	       BATCH, (unsigned long long)(w1.written - w0.written));
	if (!nf || nf == BATCH)
		fail_msg("%u of %u pages failed: the rate gives no partial batch", nf, BATCH);
	assert_int_equal(w1.written - w0.written, BATCH - nf);
	assert_int_equal(w1.errors - w0.errors, nf);
	fm_assert_clean(&m, 1, "the partly failed batch");
	assert_run(img, m, first, BATCH, failed, PAGE_OLD, PAGE_NEW, UINT64_MAX,
		   "the partly failed batch");
	rewrite_failed(c, img, m, first, BATCH, failed, nf, seed, w1);
	fm_synced(&m, 1);
}

/*
 * Past the initialized size (/prealloc.bin: 10000 of 1 MiB): 200 whole
 * pages from page 4 on, one fsync, a share of the writes failing.  A run
 * past initialized_size starts with zeroes from it up to the run's first
 * page; initialized_size rises over the pages as they are written, never
 * over a gap.  So whichever writes fail (the zeroes before a page fail that
 * page alone, and the run starts again after it): the pages written and
 * done lie below the record's initialized size and hold the new bytes, a
 * failed page there holds the new bytes or zeroes, nothing there is
 * anything else; the pages neither failed nor done are dirty again
 * (written after a failed one: written again later, after zeroes over the
 * gap).  The next fsync writes exactly those; the failed pages, written
 * again, complete the file.
 */
static void batch_past_initialized(ntfsc *c, const char *img, struct fmodel *m, uint64_t seed)
{
	const uint64_t first = 4, n = 200;
	bool failed[200];
	struct wb_counts w0, w1, w2;
	struct ntfsc_stat st;
	unsigned nf, i, done = 0;
	uint64_t mft = file_mft(m->h), init0 = record_init(img, m->path), init1, init2;
	size_t from;

	assert_true(init0 < first * PAGE && (first + n) * PAGE <= m->cur_len);
	fm_store(m, false, first * PAGE, n * PAGE, seed);
	w0 = wb_counts(c);
	from = log_size();
	disk_fails(true);
	expect_fsync(m->h, "200 pages past initialized_size, some writes failing", EIO);
	disk_fails(false);
	nf = logged_failures(from, mft, first, (unsigned)n, failed);
	if (!nf)
		fail_msg("the fsync failed, but no page of the run did");
	w1 = wb_counts(c);
	init1 = record_init(img, m->path);
	assert_true(init1 >= init0);
	for (i = 0; i < n; i++)
		done += !failed[i] && (first + i + 1) * PAGE <= init1;
	assert_int_equal(ntfsc_fstat(m->h, &st), 0);
	printf("    past initialized_size: %u of %llu pages failed; %llu written and done, %llu "
	       "dirty again; the record's initialized size %llu -> %llu\n", nf,
	       (unsigned long long)n, (unsigned long long)(w1.written - w0.written),
	       (unsigned long long)st.dirty_pages, (unsigned long long)init0,
	       (unsigned long long)init1);
	if (w1.written - w0.written != done)
		fail_msg("%llu pages written, but %u pages that did not fail lie below the "
			 "record's initialized size %llu", (unsigned long long)(w1.written - w0.written),
			 done, (unsigned long long)init1);
	if (st.dirty_pages != n - nf - done || st.writeback_pages)
		fail_msg("%llu pages dirty and %llu under write-back, expected the %llu neither "
			 "failed nor done", (unsigned long long)st.dirty_pages,
			 (unsigned long long)st.writeback_pages,
			 (unsigned long long)(n - nf - done));
	assert_run(img, m, first, (unsigned)n, failed, PAGE_NEW_OR_ZERO, PAGE_NEW, init1,
		   "below the record's initialized size");

	/* the re-dirtied pages, written: zeroes over the failed ones first */
	expect_fsync(m->h, "the pages written after a failed one", 0);
	w2 = wb_counts(c);
	assert_int_equal(w2.written - w1.written, n - nf - done);
	fm_assert_clean(&m, 1, "after the re-dirtied pages");
	init2 = record_init(img, m->path);
	assert_run(img, m, first, (unsigned)n, failed, PAGE_NEW_OR_ZERO, PAGE_NEW, UINT64_MAX,
		   "after the re-dirtied pages");
	/* the failed pages written again complete it */
	rewrite_failed(c, img, m, first, (unsigned)n, failed, nf, seed, w2);
	if (record_init(img, m->path) < (first + n) * PAGE)
		fail_msg("the record's initialized size stops before the end of the run");
	printf("    then: %llu re-dirtied pages written (initialized size %llu), then the %u "
	       "failed ones\n", (unsigned long long)(w2.written - w1.written),
	       (unsigned long long)init2, nf);
	fm_synced(&m, 1);
}

/*
 * 1f. One failed device write fails only the page it carried (README):
 * a disk on which 10% of the writes fail, batches of 256 pages.
 */
static void failed_pages_in_a_batch(const char *io)
{
	static const char *const base[] = { "--dirty-expire-ms", "600000", "--flushers", "1",
					    "--io" };
	const char *args[8];
	struct fmodel big = { 0 }, pre = { 0 }, *both[] = { &big, &pre };
	char *img;
	double t0 = now_s();
	ntfsc *c;

	alarm(120);
	memcpy(args, base, sizeof(base));
	args[5] = io;
	args[6] = NULL;
	img = failing_volume("10%", args, &c);
	fm_open(&big, c, img, "/big.bin", 0);
	fm_open(&pre, c, img, "/prealloc.bin", 0);
	printf("    --io %s\n", io);
	batch_overwrite(c, img, &big, round_seed(0, 4));
	batch_past_initialized(c, img, &pre, round_seed(0, 5));
	finish_models(c, img, both, 2);
	printf("    [timing] partly failed batches, --io %s: %.2f s\n", io, now_s() - t0);
	passed = true;
}

static void failed_pages_in_a_batch_threads(void **state)
{
	(void)state;
	failed_pages_in_a_batch("threads");
}

static void failed_pages_in_a_batch_uring(void **state)
{
	(void)state;
	failed_pages_in_a_batch("uring");
}

/* ---- 1g, 1h. syncs and refusals on a failing disk ---- */

/*
 * 1g. A volume-wide sync waits for write-back already under way: the disk
 * fails, 256 pages of /big.bin are dirtied and left to the flushers
 * (expiry 100 ms); once a flusher has taken them all (none dirty, all
 * under write-back, their writes in flight) ntfsc_sync runs: the data was
 * written before it began and is not on the disk, so it must fail with
 * EIO, never return 0.  Twenty times, counting how often the sync came
 * while the write-back was still in flight.
 */
static void sync_waits_for_flushers(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "100", "--flushers", "1", NULL };
	struct fmodel m = { 0 };
	struct ntfsc_stat st;
	unsigned attempt, caught = 0;
	char *img;
	ntfsc *c;

	(void)state;
	alarm(120);
	img = failing_volume(NULL, args, &c);
	fm_open(&m, c, img, "/big.bin", 0);
	disk_fails(true);
	chatty = false;
	for (attempt = 0; attempt < 20; attempt++) {
		double t = now_s();
		bool in_flight = false;

		fm_store(&m, false, (attempt % 3) * BATCH * PAGE, BATCH * PAGE,
			 round_seed(attempt, 7));
		while (now_s() - t < 5) {
			assert_int_equal(ntfsc_fstat(m.h, &st), 0);
			if (!st.dirty_pages) {
				in_flight = st.writeback_pages > 0;
				break;
			}
		}
		if (in_flight) {
			caught++;
			expect_sync(c, "a flusher's write-back in flight", EIO);
		}
		/* whatever is left of this round's errors */
		while (ntfsc_fstat(m.h, &st) == 0 && (st.dirty_pages || st.writeback_pages))
			sleep_ms(5);
		(void)ntfsc_fsync(m.h);
	}
	printf("    %u of 20 syncs came while a flusher's write-back was in flight: each failed\n",
	       caught);
	if (!caught)
		fail_msg("no sync came while a flusher's write-back was in flight: nothing shown");
	disk_fails(false);
	fm_close(&m);
	disconnect_daemon(c);
	stop_failing(NULL);
	fm_free(&m);
	free(img);
	passed = true;
}

/*
 * 1h. Writes that need new clusters while the disk fails: an append past
 * the allocation of /frag/c.bin and a resident /small.txt grown out of its
 * record are refused with EIO (the $Bitmap or record write fails) and
 * change nothing: same size, nothing dirty, the volume as it was.  Once
 * the disk works the same writes succeed and reach the volume.  (Under
 * AddressSanitizer the clean stop also shows the refusals leak nothing.)
 */
static void growth_refused_on_a_failing_disk(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "600000", NULL };
	struct fmodel fc = { 0 }, sm = { 0 }, *both[] = { &fc, &sm };
	struct ntfsc_stat st;
	char *img;
	ntfsc *c;
	unsigned i, round;

	(void)state;
	alarm(60);
	img = failing_volume(NULL, args, &c);
	fm_open(&fc, c, img, "/frag/c.bin", 16 * MiB);
	fm_open(&sm, c, img, "/small.txt", 16 * MiB);
	for (round = 0; round < 3; round++) {
		for (i = 0; i < 2; i++) {
			struct fmodel *m = both[i];
			uint64_t seed = round_seed(round, 8 + i), len;
			int e;

			/* past the allocation (a resident file: out of its record) */
			assert_int_equal(ntfsc_fstat(m->h, &st), 0);
			len = (st.resident ? 0 : st.allocated_size - m->cur_len) + 8 * KiB;
			disk_fails(true);
			e = try_pwrite_pattern(m->h, m->cur_len, (size_t)len, seed);
			if (e != EIO)
				fail_msg("round %u: growing %s by %llu bytes on a failing disk: %s, "
					 "expected EIO", round, m->path, (unsigned long long)len,
					 e ? strerror(e) : "it worked");
			assert_int_equal(ntfsc_fstat(m->h, &st), 0);
			if (st.size != m->cur_len || st.dirty_pages)
				fail_msg("round %u: the refused growth of %s left size %llu (was %zu) "
					 "and %llu dirty pages", round, m->path,
					 (unsigned long long)st.size, m->cur_len,
					 (unsigned long long)st.dirty_pages);
			disk_fails(false);
			fm_store(m, false, m->cur_len, len, seed);
			expect_fsync(m->h, m->path, 0);
		}
		fm_assert_volume(img, both, 2, true, "grown once the disk works");
		fm_synced(both, 2);
	}
	finish_models(c, img, both, 2);
	passed = true;
}

/* ---- 1i. a disk that fails now and then ---- */

/*
 * NTFSD_TEST_SECONDS (default 60, NTFSD_TEST_LONG=1: 300) of random
 * pwrite / append / zeroes / mmap store / ftruncate / fsync / sync over six
 * files while NTFSD_TEST_ERROR_RATE (default 2%) of the disk's writes fail
 * and the flushers write back every 100 ms.
 *
 * The model: per file the bytes every returned call left (cur, bytes past
 * the size zero), and per byte the number of the call that last wrote it
 * (truncations write the zeroes they expose or drop).  A call that fails
 * with EIO (the disk failed under a prepare-write or a truncate's record
 * write) changed nothing the model must know, and is made again until it
 * works.  An fsync or sync that fails reports a write-back error: what the
 * file got before it may be lost until written again, so such bytes are
 * only checked at the end.  An fsync (sync) that returns 0 at call s
 * means, by the errseq rules (one handle per file, one connection, a
 * single-threaded client): every byte whose last write came after the
 * last failure reported for its file, or that was never written, is on
 * the volume; and its size if it changed after that.  That is checked on
 * a copy of the image at most once a second.  At the end the disk works,
 * the errors of writes made before are reported (fsync and sync once
 * more, failing or not), everything is written again, ntfsc_sync must
 * return 0, and after a clean stop ntfscat must equal the model byte for
 * byte, ntfsfix -n clean.
 */
#define FR_MAX_TRIES 200

static const struct {
	const char *path;
	uint64_t cap;
} fr_set[] = {
	{ "/big.bin", 5 * MiB },
	{ "/frag/a.bin", 1 * MiB },     /* 64 one-cluster fragments */
	{ "/attrlist.bin", 2 * MiB },   /* runlist behind an $ATTRIBUTE_LIST */
	{ "/small.txt", 256 * KiB },    /* resident: grows out of its record */
	{ "/prealloc.bin", 2 * MiB },   /* initialized 10000 of 1 MiB */
	{ "/empty", 1 * MiB },
};
#define FR_N ((unsigned)(sizeof(fr_set) / sizeof(fr_set[0])))

struct frfile {
	const char *path;
	uint64_t cap, size;
	ntfsc_file *h;
	uint8_t *cur;
	uint32_t *stamp;        /* per byte: the call that last wrote it; 0: none */
	uint32_t size_stamp;    /* the call that last changed the size */
	uint32_t reported;      /* the last call that reported EIO for the file */
};

enum fr_kind { FR_PWRITE, FR_APPEND, FR_ZERO, FR_MMAP, FR_TRUNC, FR_FSYNC, FR_SYNC, FR_KINDS };
static const char *const fr_name[] = { "pwrite", "append", "zeroes", "mmap", "ftruncate",
				       "fsync", "sync" };

struct frstats {
	unsigned calls[FR_KINDS], retries[FR_KINDS];
	unsigned fsync_eio, sync_eio, checks;
};

/* [from, to) of f now holds version seed (0: zeroes) in the model, by call op. */
static void fr_wrote(struct frfile *f, uint64_t from, uint64_t to, uint64_t seed, uint32_t op)
{
	if (from >= to)
		return;
	pattern_fill(f->cur + from, (size_t)(to - from), seed, from);
	for (uint64_t b = from; b < to; b++)
		f->stamp[b] = op;
}

/* The file's size is now size, by call op. */
static void fr_resized(struct frfile *f, uint64_t size, uint32_t op)
{
	if (size == f->size)
		return;
	/* the bytes it drops or exposes are zeroes from here on */
	fr_wrote(f, size < f->size ? size : f->size, size < f->size ? f->size : size, 0, op);
	f->size = size;
	f->size_stamp = op;
}

/* One attempt at a store or truncation: 0 or its errno. */
static int fr_try(struct frfile *f, enum fr_kind k, uint64_t off, uint64_t len, uint64_t seed)
{
	uint8_t *p;
	int e = 0;

	switch (k) {
	case FR_TRUNC:
		return ntfsc_ftruncate(f->h, (off_t)off) ? errno : 0;
	case FR_MMAP:
		p = ntfsc_mmap(f->h, (off_t)off, (size_t)len, PROT_READ | PROT_WRITE);
		if (p == MAP_FAILED)
			return errno;
		pattern_fill(p, (size_t)len, seed, off);
		if (ntfsc_set_dirty(f->h, p, (size_t)len))
			e = errno;
		if (ntfsc_munmap(f->h, p, (size_t)len) && !e)
			e = errno;
		return e;
	default:
		return try_pwrite_pattern(f->h, off, (size_t)len, seed);
	}
}

/* The store or truncation, again until it works: only EIO is allowed. */
static void fr_do(struct frfile *f, enum fr_kind k, uint64_t off, uint64_t len, uint64_t seed,
		  uint32_t op, struct frstats *st)
{
	int e, tries;

	for (tries = 0; (e = fr_try(f, k, off, len, seed)); tries++) {
		if (e != EIO || tries == FR_MAX_TRIES)
			fail_msg("call %u, %s %s [%llu, +%llu): %s (%s)%s", op, fr_name[k], f->path,
				 (unsigned long long)off, (unsigned long long)len, strerror(e),
				 daemon_msg(), e == EIO ? " every time" : "");
		st->retries[k]++;
	}
	st->calls[k]++;
	if (k == FR_TRUNC) {
		fr_resized(f, off, op);
		return;
	}
	if (off > f->size)
		fr_resized(f, off, op);        /* the gap reads as zeroes */
	if (off + len > f->size) {
		f->size = off + len;
		f->size_stamp = op;
	}
	fr_wrote(f, off, off + len, seed, op);
}

/* After a sync that returned 0: what the model says must be on the volume
 * is (see above).  view: a copy of the image. */
static void fr_check(const char *view, const struct frfile *f, uint32_t op)
{
	size_t len, n, b;
	uint8_t *got = cat_view(view, f->path, &len);

	if ((!f->size_stamp || f->size_stamp > f->reported) && len != f->size)
		fail_msg("call %u: %s synced at size %llu (set by call %u; last failure reported "
			 "at call %u), but the volume has %zu bytes", op, f->path,
			 (unsigned long long)f->size, f->size_stamp, f->reported, len);
	n = len < f->size ? len : (size_t)f->size;
	for (b = 0; b < n; b++)
		if ((!f->stamp[b] || f->stamp[b] > f->reported) && got[b] != f->cur[b])
			fail_msg("call %u: %s synced, but byte %zu (page %zu) on the volume is 0x%02x, "
				 "not 0x%02x (written by call %u; last failure reported at call %u)",
				 op, f->path, b, b / PAGE, got[b], f->cur[b], f->stamp[b],
				 f->reported);
	free(got);
}

/* Check f (NULL: every file) on a copy of the image. */
static void fr_check_now(const char *img, struct frfile *fs, struct frfile *f, uint32_t op,
			 struct frstats *st)
{
	char snap[300];
	const char *view = view_image(img, snap, sizeof(snap));

	for (unsigned i = 0; i < FR_N; i++)
		if (!f || f == &fs[i])
			fr_check(view, &fs[i], op);
	view_done(view, img);
	st->checks++;
}

static uint64_t fr_len(uint64_t *rs)
{
	uint64_t r = below(rs, 100);

	return 1 + below(rs, r < 40 ? 600 : r < 75 ? 16 * KiB : r < 95 ? 64 * KiB : 256 * KiB);
}

/* One random call on a random file. */
static void fr_step(ntfsc *c, const char *img, struct frfile *fs, uint64_t *rs, uint32_t op,
		    struct frstats *st, double *last_check)
{
	struct frfile *f = &fs[below(rs, FR_N)];
	uint64_t r = below(rs, 100), off, len = fr_len(rs), seed = mix_seed(run_seed, op) | 1;
	enum fr_kind k;
	int e;

	if (r < 34) {
		k = FR_PWRITE;
		off = below(rs, f->size + 1);
	} else if (r < 48) {
		k = FR_APPEND;
		off = f->size - below(rs, (f->size < 4096 ? f->size : 4096) + 1);
	} else if (r < 53) {
		k = FR_ZERO;
		seed = 0;
		off = below(rs, 3) ? below(rs, f->size + 1) : below(rs, f->size / PAGE + 1) * PAGE;
	} else if (r < 68 && f->size) {
		k = FR_MMAP;
		off = below(rs, f->size);
		if (len > f->size - off)
			len = f->size - off;
	} else if (r < 72) {
		k = FR_TRUNC;
		off = below(rs, 2) ? below(rs, f->size + 1)
				   : f->size + below(rs, (f->cap - f->size) / 4 + 1);
		len = 0;
	} else if (r < 92) {
		k = FR_FSYNC;
	} else {
		k = FR_SYNC;
	}
	if (k <= FR_MMAP && off + len > f->cap) {
		if (off >= f->cap)
			off = below(rs, f->cap);
		len = f->cap - off;
	}
	if (k <= FR_TRUNC) {
		fr_do(f, k, off, len, seed, op, st);
		return;
	}
	st->calls[k]++;
	e = k == FR_FSYNC ? ntfsc_fsync(f->h) : ntfsc_sync(c);
	if (e) {
		e = errno;
		if (e != EIO)
			fail_msg("call %u: %s %s: %s (%s)", op, fr_name[k], k == FR_FSYNC ? f->path : "",
				 strerror(e), daemon_msg());
		if (k == FR_FSYNC) {
			st->fsync_eio++;
			f->reported = op;
		} else {
			st->sync_eio++;
			for (unsigned i = 0; i < FR_N; i++)
				fs[i].reported = op;
		}
		return;
	}
	if (now_s() - *last_check >= 1.0) {
		fr_check_now(img, fs, k == FR_FSYNC ? f : NULL, op, st);
		*last_check = now_s();
	}
}

/* The disk works: everything the model holds, written again, a page at a
 * time (so a page of zeroes is a write of zeroes, which must not be
 * skipped where the disk lost them). */
static void fr_rewrite(struct frfile *f)
{
	const size_t chunk = PAGE;
	struct ntfsc_stat st;

	for (uint64_t off = 0; off < f->size; off += chunk) {
		size_t n = f->size - off < chunk ? (size_t)(f->size - off) : chunk;

		if (ntfsc_pwrite(f->h, f->cur + off, n, (off_t)off) != (ssize_t)n)
			fail_msg("rewriting %s at %llu: %s (%s)", f->path, (unsigned long long)off,
				 strerror(errno), daemon_msg());
	}
	assert_int_equal(ntfsc_fstat(f->h, &st), 0);
	if (st.size != f->size)
		fail_msg("%s: size %llu in the daemon, %llu in the model", f->path,
			 (unsigned long long)st.size, (unsigned long long)f->size);
}

static unsigned fault_seconds(void)
{
	const char *s = getenv("NTFSD_TEST_SECONDS"), *l = getenv("NTFSD_TEST_LONG");

	if (s && atoi(s) > 0)
		return (unsigned)atoi(s);
	return l && atoi(l) ? 300 : 60;
}

static void random_faults(void **state)
{
	static const char *const args[] = { "--dirty-expire-ms", "100", "--dirty-background", "1M",
					    "--flushers", "2", NULL };
	const char *rate = getenv("NTFSD_TEST_ERROR_RATE");
	unsigned seconds = fault_seconds(), i, k, calls = 0, failed_wb, failed_sizes;
	struct frfile fs[FR_N];
	struct frstats st = { 0 };
	uint64_t rs = mix_seed(run_seed, 6);
	uint32_t op = 0;
	double t0, last_check;
	char *img, *log;
	ntfsc *c;

	(void)state;
	if (!rate || !*rate)
		rate = "2%";
	alarm(seconds + 180);
	memset(fs, 0, sizeof(fs));
	img = failing_volume(rate, args, &c);
	for (i = 0; i < FR_N; i++) {
		size_t len;
		uint8_t *data = cat_image(img, fr_set[i].path, &len);

		fs[i].path = fr_set[i].path;
		fs[i].cap = fr_set[i].cap;
		assert_true(len <= fs[i].cap);
		fs[i].cur = calloc(1, fs[i].cap);
		fs[i].stamp = calloc(fs[i].cap, sizeof(*fs[i].stamp));
		assert_true(fs[i].cur && fs[i].stamp);
		memcpy(fs[i].cur, data, len);
		fs[i].size = len;
		free(data);
		fs[i].h = ntfsc_open(c, fs[i].path, O_RDWR);
		if (!fs[i].h)
			fail_msg("ntfsc_open(%s): %s", fs[i].path, strerror(errno));
	}
	printf("    %u s, %s of the disk's writes failing, seed %#llx\n", seconds, rate,
	       (unsigned long long)run_seed);
	disk_fails(true);
	t0 = last_check = now_s();
	while (now_s() - t0 < seconds)
		fr_step(c, img, fs, &rs, ++op, &st, &last_check);

	/* the disk works: errors of writes made before are reported now
	 * (or not), then everything again, and the sync must work */
	disk_fails(false);
	for (i = 0; i < FR_N; i++)
		(void)ntfsc_fsync(fs[i].h);
	(void)ntfsc_sync(c);
	for (i = 0; i < FR_N; i++)
		fr_rewrite(&fs[i]);
	expect_sync(c, "everything written again on a working disk", 0);
	for (i = 0; i < FR_N; i++) {
		expect_fsync(fs[i].h, fs[i].path, 0);
		assert_int_equal(ntfsc_close(fs[i].h), 0);
		fs[i].h = NULL;
	}
	disconnect_daemon(c);
	stop_failing(&log);
	failed_wb = count_substr(log, "writeback of page");
	failed_sizes = count_substr(log, "cannot write its sizes");
	free(log);

	for (k = 0; k < FR_KINDS; k++) {
		calls += st.calls[k];
		if (k < FR_FSYNC)
			printf("    %-9s %6u calls, %4u refused with EIO and made again\n",
			       fr_name[k], st.calls[k], st.retries[k]);
		else
			printf("    %-9s %6u calls, %4u failed with EIO\n", fr_name[k], st.calls[k],
			       k == FR_FSYNC ? st.fsync_eio : st.sync_eio);
	}
	printf("    %u calls in %.1f s, %u checks of synced data on a copy of the volume; "
	       "daemon log: %u failed page write-backs, %u failed size writes\n", calls,
	       now_s() - t0, st.checks, failed_wb, failed_sizes);
	if (!failed_wb)
		fail_msg("no write-back failed (the daemon log shows none): raise the rate");
	if (!st.fsync_eio && !st.sync_eio)
		fail_msg("no fsync or sync failed: raise the rate");
	if (!st.checks)
		fail_msg("no fsync or sync succeeded: lower the rate");

	/* after the clean stop: exactly the model */
	for (i = 0; i < FR_N; i++) {
		char what[200];
		size_t len;
		uint8_t *got = cat_image(img, fs[i].path, &len);

		snprintf(what, sizeof(what), "after the stop: ntfscat %s", fs[i].path);
		assert_same(what, got, len, fs[i].cur, (size_t)fs[i].size);
		free(got);
		free(fs[i].cur);
		free(fs[i].stamp);
	}
	assert_ntfsfix_clean(img);
	printf("    [timing] random faults: %.2f s\n", now_s() - t0);
	free(img);
	passed = true;
}

/* ---- 2. out of memory in writeback ---- */

static uint64_t rnd_state = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
	return xs_next(&rnd_state);
}

/* `bytes` of random bytes in scattered 1-4 KiB pieces, through f and into
 * model (len bytes); returns the number of pieces. */
static size_t scattered_writes(ntfsc_file *f, uint8_t *model, size_t len, size_t bytes)
{
	uint8_t buf[4096];
	size_t written = 0, pieces = 0;

	while (written < bytes) {
		size_t n = 1024 + (size_t)(rnd() % 3073), i;
		uint64_t off;

		if (n > len)
			n = len;
		off = rnd() % (len - n + 1);
		for (i = 0; i < n; i++)
			buf[i] = (uint8_t)rnd();
		if (ntfsc_pwrite(f, buf, n, (off_t)off) != (ssize_t)n)
			fail_msg("ntfsc_pwrite(%zu at %llu): %s", n, (unsigned long long)off,
				 strerror(errno));
		memcpy(model + off, buf, n);
		written += n;
		pieces++;
	}
	return pieces;
}

/* ntfsd with every 3rd writepage allocation failing */
static void start_daemon_enomem(const char *img)
{
	static const char *const args[] = { "--log-level", "debug", "--dirty-expire-ms", "600000",
					    "--flushers", "2", NULL };
	char *log;

	setenv("NTFSD_FAULT_WRITEPAGE_ENOMEM", "3", 1);
	start_daemon(img, args);
	unsetenv("NTFSD_FAULT_WRITEPAGE_ENOMEM");
	log = read_text(dmn.log);
	if (!strstr(log, "fault injection: every 3-th writepage allocation fails"))
		fail_msg("the daemon did not take NTFSD_FAULT_WRITEPAGE_ENOMEM=3:\n%s", log);
	free(log);
}

/* The log's debug lines for injected failures ("... out of memory, ...
 * re-dirtied"), and no real failure. */
static unsigned count_enomem(const char *log)
{
	if (strstr(log, "failed:"))
		fail_msg("the daemon log reports a failure:\n%s", log);
	return count_substr(log, "out of memory");
}

/* 40 rounds of: rewrite the resident /small.txt, fsync, which must leave
 * nothing dirty; the record must hold the last round's bytes at the end
 * (checked after the daemon stops). */
static uint8_t resident_model[300];

static void resident_enomem_rounds(ntfsc *c)
{
	struct ntfsc_stat st;
	ntfsc_file *f = ntfsc_open(c, "/small.txt", O_RDWR);
	unsigned round, i;

	if (!f)
		fail_msg("ntfsc_open /small.txt: %s", strerror(errno));
	for (round = 0; round < 40; round++) {
		for (i = 0; i < sizeof(resident_model); i++)
			resident_model[i] = (uint8_t)('a' + (round + i) % 26);
		if (ntfsc_pwrite(f, resident_model, sizeof(resident_model), 0) !=
		    (ssize_t)sizeof(resident_model))
			fail_msg("round %u: pwrite /small.txt: %s", round, strerror(errno));
		if (ntfsc_fsync(f))
			fail_msg("round %u: fsync /small.txt: %s (%s): out of memory is not an "
				 "error", round, strerror(errno),
				 daemon_msg());
		assert_int_equal(ntfsc_fstat(f, &st), 0);
		if (st.dirty_pages || st.writeback_pages)
			fail_msg("round %u: fsync of the resident /small.txt returned 0 with %llu "
				 "pages still dirty", round, (unsigned long long)st.dirty_pages);
	}
	assert_int_equal(ntfsc_close(f), 0);
}

/*
 * ~1 MiB in 8 bursts of scattered 1-4 KiB writes, each burst followed by
 * fsyncs until nothing is dirty: how many writepage allocations one fsync
 * makes depends on how the daemon batches pages, so several fsyncs make
 * sure some of them fail.
 */
#define BURSTS 8

static void enomem_is_not_an_error(void **state)
{
	char *img, *log;
	uint8_t *model;
	size_t len, pieces = 0;
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	struct ntfsc_stat st;
	unsigned burst, fsyncs = 0, injected;
	ntfsc *c;
	ntfsc_file *f;
	double t0 = now_s();

	(void)state;
	alarm(120);
	img = copy_fixture("vol4k.img");
	model = cat_image(img, "/big.bin", &len);
	start_daemon_enomem(img);
	c = connect_daemon();
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	if (!f)
		fail_msg("ntfsc_open: %s", strerror(errno));
	for (burst = 0; burst < BURSTS; burst++) {
		pieces += scattered_writes(f, model, len, MiB / BURSTS);
		/* fsync never fails, and returns only when every page it covers
		 * is clean: those whose allocation failed are written again */
		fsyncs++;
		if (ntfsc_fsync(f))
			fail_msg("burst %u: fsync: %s (%s): out of memory is not an error", burst,
				 strerror(errno), ntfsc_last_error_message(NULL) ?
							  ntfsc_last_error_message(NULL) : "");
		assert_int_equal(ntfsc_fstat(f, &st), 0);
		if (st.dirty_pages || st.writeback_pages)
			fail_msg("burst %u: fsync returned 0 with %llu pages still dirty and %llu "
				 "under writeback", burst, (unsigned long long)st.dirty_pages,
				 (unsigned long long)st.writeback_pages);
	}
	/* a resident file: its writepage copies into the MFT record, and out
	 * of memory there re-dirties the page too */
	resident_enomem_rounds(c);
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	printf("    %zu pieces in %u bursts, %u fsyncs; "
	       "status: write_errors %llu, pages_written %llu, dirty %llu\n", pieces, BURSTS,
	       fsyncs, (unsigned long long)vs.write_errors,
	       (unsigned long long)vs.pages_written, (unsigned long long)vs.dirty_pages);
	if (vs.write_errors)
		fail_msg("%llu write errors counted: out of memory must not count",
			 (unsigned long long)vs.write_errors);
	assert_int_equal(vs.dirty_pages, 0);
	ntfsc_volume_status_free(&vs);
	log = read_text(dmn.log);
	injected = count_enomem(log);
	free(log);
	printf("    %u injected allocation failures (daemon log)\n", injected);
	if (!injected)
		fail_msg("no injected allocation failure happened (the log shows none)");
	assert_cache_file(f, model, len);
	assert_int_equal(ntfsc_close(f), 0);
	disconnect_daemon(c);
	stop_daemon_clean(NULL);
	assert_image_file(img, "/big.bin", model, len);
	assert_image_file(img, "/small.txt", resident_model, sizeof(resident_model));
	printf("    [timing] ENOMEM injection: %.2f s\n", now_s() - t0);
	free(model);
	free(img);
	passed = true;
}

/*
 * 2b. The same left to the daemon: data still dirty at SIGTERM is written
 * back at shutdown ("nothing dirty is dropped", server.c), also when
 * writepage allocations fail then, and the daemon exits 0.  Dirty data in
 * four files makes the final write-back allocate several times.
 */
static void enomem_at_shutdown_loses_nothing(void **state)
{
	static const char *const paths[] = { "/big.bin", "/attrlist.bin", "/frag/a.bin",
					     "/frag/b.bin" };
	static const size_t amount[] = { MiB, 128 * KiB, 32 * KiB, 32 * KiB };
	char *img, *log;
	uint8_t *model[4];
	size_t len[4], pieces = 0, lost = 0;
	unsigned i, injected;
	int st;
	ntfsc *c;
	ntfsc_file *f;
	double t0 = now_s();

	(void)state;
	alarm(120);
	img = copy_fixture("vol4k.img");
	for (i = 0; i < 4; i++)
		model[i] = cat_image(img, paths[i], &len[i]);
	start_daemon_enomem(img);
	c = connect_daemon();
	for (i = 0; i < 4; i++) {
		f = ntfsc_open(c, paths[i], O_RDWR);
		if (!f)
			fail_msg("ntfsc_open(%s): %s", paths[i], strerror(errno));
		pieces += scattered_writes(f, model[i], len[i], amount[i]);
		assert_int_equal(ntfsc_close(f), 0);
	}
	disconnect_daemon(c);
	printf("    %zu pieces written to 4 files, no fsync; SIGTERM\n", pieces);
	st = stop_daemon(&log);
	injected = count_enomem(log);
	printf("    %u injected allocation failures (daemon log); exit status %d\n", injected,
	       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	/* what reached the disk, before judging the exit status */
	for (i = 0; i < 4; i++) {
		size_t got_len, p, bad = 0;
		uint8_t *got = cat_image(img, paths[i], &got_len);

		assert_int_equal(got_len, len[i]);
		for (p = 0; p < len[i]; p += PAGE)
			if (memcmp(got + p, model[i] + p, len[i] - p < PAGE ? len[i] - p : PAGE))
				bad++;
		if (bad)
			printf("    %s: %zu pages on the disk differ from what was written\n",
			       paths[i], bad);
		lost += bad;
		free(got);
	}
	assert_clean_exit(st, log);
	free(log);
	if (lost)
		fail_msg("%zu written pages never reached the disk", lost);
	for (i = 0; i < 4; i++)
		free(model[i]);
	if (!injected)
		fail_msg("no injected allocation failure happened at shutdown");
	printf("    [timing] ENOMEM at shutdown: %.2f s\n", now_s() - t0);
	free(img);
	passed = true;
}

/* ---- 3 and 4. throttling, with each I/O engine ---- */

#define PASSES 4
#define CHUNK (64 * KiB)
#define DIRTY_LIMIT (1 * MiB)
#define MAX_WRITERS 5
/*
 * How far past the limit the dirty data may go.  A writer stores a whole
 * pwrite's run of locked pages (CHUNK, 16 pages) before it looks at the
 * dirty count (ntfsc_pwrite -> balance_dirty), and every writer may have
 * just passed that check when the count crosses the limit: writers * CHUNK.
 * Writers on different files see only a stale volume count and their own
 * file's, so each also checks in with the daemon after dirtying its share
 * of the limit, limit / (2 x open files): together at most half the limit
 * more.  So: limit + limit / 2 + writers * CHUNK.
 */
#define SLACK(writers) ((uint64_t)(writers) * CHUNK + DIRTY_LIMIT / 2)

/* Writer `first` of `stride` on path: chunks first, first + stride, ...
 * of every pass; version seed + pass of the data. */
struct writer_job {
	const char *path;
	unsigned first, stride, seed;
	uint64_t len;
};

static int writer_child(const char *sock, const struct writer_job *j)
{
	uint8_t *buf = malloc(CHUNK);
	ntfsc *c = ntfsc_connect(sock);
	ntfsc_file *f;
	unsigned pass;

	if (!buf || !c)
		return 2;
	f = ntfsc_open(c, j->path, O_RDWR);
	if (!f)
		return 3;
	for (pass = 0; pass < PASSES; pass++) {
		uint64_t off;

		for (off = (uint64_t)j->first * CHUNK; off < j->len;
		     off += (uint64_t)j->stride * CHUNK) {
			size_t n = j->len - off < CHUNK ? (size_t)(j->len - off) : CHUNK;

			pattern_fill(buf, n, j->seed + pass, off);
			if (ntfsc_pwrite(f, buf, n, (off_t)off) != (ssize_t)n) {
				fprintf(stderr, "writer of %s: pwrite at %llu: %s\n", j->path,
					(unsigned long long)off, strerror(errno));
				return 4;
			}
		}
	}
	if (ntfsc_close(f))
		return 5;
	ntfsc_disconnect(c);
	free(buf);
	return 0;
}

/*
 * ntfsd with an 8 MiB cache, 1 MiB dirty limit, 512 KiB background; the
 * writers run in child processes while this process samples the volume
 * status; then a sync and every byte on the disk.
 */
static void throttled_writers(const char *io, const char *const *paths, unsigned npaths,
			      unsigned nwriters)
{
	const char *const args[] = { "--cache-size", "8M", "--dirty-limit", "1M",
				     "--dirty-background", "512K", "--flushers", "2",
				     io ? "--io" : NULL, io, NULL };
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	struct writer_job jobs[MAX_WRITERS];
	uint64_t max_dirty = 0, max_wb = 0, samples = 0, over = 0, bound;
	uint8_t *model[MAX_WRITERS];
	size_t len[MAX_WRITERS];
	char *img, *log;
	unsigned i, alive;
	ntfsc *c;
	double t0 = now_s(), tw;

	assert_true(nwriters <= MAX_WRITERS && npaths <= nwriters);
	bound = DIRTY_LIMIT + SLACK(nwriters);
	alarm(150);
	img = copy_fixture("vol4k.img");
	for (i = 0; i < npaths; i++) {
		model[i] = cat_image(img, paths[i], &len[i]);
		pattern_fill(model[i], len[i], 100 * (i + 1) + PASSES - 1, 0);
	}
	/* several writers of one file split its chunks; else one per file */
	for (i = 0; i < nwriters; i++) {
		unsigned p = npaths == 1 ? 0 : i;

		jobs[i] = (struct writer_job){ .path = paths[p], .len = len[p],
					       .first = npaths == 1 ? i : 0,
					       .stride = npaths == 1 ? nwriters : 1,
					       .seed = 100 * (p + 1) };
	}
	start_daemon(img, args);
	c = connect_daemon();
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	assert_int_equal(vs.dirty_limit, DIRTY_LIMIT);
	assert_int_equal(vs.dirty_background, 512 * KiB);
	if (io) {
		printf("    --io %s: status says io_engine \"%s\"\n", io, vs.io_engine);
		if (strcmp(vs.io_engine, io)) {
			log = read_text(dmn.log);
			if (!strcmp(io, "uring") && !strcmp(vs.io_engine, "threads") &&
			    strstr(log, "io_uring is not available"))
				printf("    io_uring is unavailable here (daemon log): threads "
				       "accepted\n");
			else
				fail_msg("--io %s: the daemon uses \"%s\"\n%s", io, vs.io_engine,
					 log);
			free(log);
		}
	}
	ntfsc_volume_status_free(&vs);

	for (i = 0; i < nwriters; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			signal(SIGALRM, SIG_DFL);   /* never longjmp into cmocka here */
			alarm(120);
			_exit(writer_child(dmn.socket, &jobs[i]));
		}
	}
	for (alive = nwriters; alive;) {
		assert_int_equal(ntfsc_volume_status(c, &vs), 0);
		samples++;
		if (vs.dirty_pages > max_dirty)
			max_dirty = vs.dirty_pages;
		if (vs.writeback_pages > max_wb)
			max_wb = vs.writeback_pages;
		if (vs.dirty_pages * PAGE > bound)
			over++;
		ntfsc_volume_status_free(&vs);
		for (i = 0; i < nwriters; i++) {
			int st;

			if (kids[i] > 0 && waitpid(kids[i], &st, WNOHANG) == kids[i]) {
				kids[i] = 0;
				alive--;
				if (!WIFEXITED(st) || WEXITSTATUS(st))
					fail_msg("writer %u (%s) failed: wait status 0x%x", i,
						 jobs[i].path, st);
			}
		}
	}
	tw = now_s() - t0;
	printf("    %u writers on %u file(s), %u passes, %u-KiB writes: %.2f s; %llu status "
	       "samples: max dirty %llu pages = %llu KiB (bound: limit %u KiB + slack %llu "
	       "KiB), %llu samples over; max write-back %llu pages\n",
	       nwriters, npaths, PASSES, CHUNK / KiB, tw, (unsigned long long)samples,
	       (unsigned long long)max_dirty, (unsigned long long)(max_dirty * PAGE / KiB),
	       DIRTY_LIMIT / KiB, (unsigned long long)(SLACK(nwriters) / KiB),
	       (unsigned long long)over, (unsigned long long)max_wb);
	if (max_dirty * PAGE > bound)
		fail_msg("dirty data reached %llu bytes: limit %u + slack %llu",
			 (unsigned long long)(max_dirty * PAGE), DIRTY_LIMIT,
			 (unsigned long long)SLACK(nwriters));

	if (ntfsc_sync(c))
		fail_msg("ntfsc_sync: %s", strerror(errno));
	assert_int_equal(ntfsc_volume_status(c, &vs), 0);
	assert_int_equal(vs.dirty_pages, 0);
	assert_int_equal(vs.write_errors, 0);
	ntfsc_volume_status_free(&vs);
	/* on the disk after the sync, with the daemon still running ... */
	for (i = 0; i < npaths; i++)
		assert_image_file(img, paths[i], model[i], len[i]);
	disconnect_daemon(c);
	stop_daemon_clean(NULL);
	/* ... and after it stopped */
	for (i = 0; i < npaths; i++) {
		assert_image_file(img, paths[i], model[i], len[i]);
		free(model[i]);
	}
	printf("    [timing] throttling%s%s: %.2f s\n", io ? ", --io " : "", io ? io : "",
	       now_s() - t0);
	free(img);
	passed = true;
}

static const char *const big_only[] = { "/big.bin" };

static void throttle_io_threads(void **state)
{
	(void)state;
	throttled_writers("threads", big_only, 1, 2);
}

static void throttle_io_uring(void **state)
{
	(void)state;
	throttled_writers("uring", big_only, 1, 2);
}

/* 3b. The limit is the volume's: writers of five different files, none
 * of them over it alone. */
static void throttle_across_files(void **state)
{
	static const char *const paths[] = { "/big.bin", "/attrlist.bin", "/frag/a.bin",
					     "/frag/b.bin", "/frag/c.bin" };

	(void)state;
	throttled_writers(NULL, paths, 5, 5);
}

/* ---- 5. encrypted ---- */

/*
 * Mark path encrypted the way Windows has it: ATTR_IS_ENCRYPTED in the
 * unnamed $DATA attribute's flags and FILE_ATTR_ENCRYPTED in
 * $STANDARD_INFORMATION, in the base MFT record, written back with fixups
 * (and to $MFTMirr for the mirrored records).  Nothing else changes.
 */
static void mark_encrypted(const char *img, const char *path)
{
	struct ntfs_volume *vol = NULL;
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;
	uint64_t mref;
	uint8_t *rec;
	bool data = false, si = false;
	int err;

	err = ntfs_volume_open(img, 0, &vol);
	if (err)
		fail_msg("ntfs_volume_open %s: %s", img, ntfs_last_error());
	err = ntfs_path_lookup(vol, path, 0, &mref);
	if (err)
		fail_msg("ntfs_path_lookup %s: %s", path, strerror(-err));
	rec = malloc(vol->geo.mft_record_size);
	assert_non_null(rec);
	err = ntfs_mft_record_read(vol, MREF(mref), rec);
	if (err)
		fail_msg("ntfs_mft_record_read %llu: %s", (unsigned long long)MREF(mref),
			 ntfs_last_error());
	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a) == 1) {
		struct ntfs_attr_record *wa = (struct ntfs_attr_record *)(rec + ((const uint8_t *)a - rec));

		if (le32(a->type) == AT_DATA && a->name_length == 0) {
			wa->flags = cpu_to_le16(le16(a->flags) | ATTR_IS_ENCRYPTED);
			data = true;
		} else if (le32(a->type) == AT_STANDARD_INFORMATION && !a->non_resident) {
			uint32_t vlen;
			const uint8_t *v = ntfs_attr_value(a, &vlen);
			struct ntfs_standard_information *s =
				(struct ntfs_standard_information *)(rec + (v - rec));

			assert_true(vlen >= 48);
			s->file_attributes = cpu_to_le32(le32(s->file_attributes) | FILE_ATTR_ENCRYPTED);
			si = true;
		}
	}
	if (!data || !si)
		fail_msg("%s: MFT record %llu has no %s in its base record", path,
			 (unsigned long long)MREF(mref), data ? "$STANDARD_INFORMATION" : "$DATA");
	err = ntfs_mft_record_write(vol, MREF(mref), rec);
	if (err)
		fail_msg("ntfs_mft_record_write %llu: %s", (unsigned long long)MREF(mref),
			 ntfs_last_error());
	err = ntfs_device_flush(vol->dev);
	if (err)
		fail_msg("flushing %s: %s", img, ntfs_last_error());
	free(rec);
	ntfs_volume_close(vol);
}

static void encrypted_file_refused(void **state)
{
	static const char *const files[] = { "/big.bin", "/frag/a.bin" };
	char *img, *orig = fixture("vol4k.img");
	struct oracle_attr oa;
	struct ntfsc_stat_ext sx;
	uint8_t *want[2];
	size_t want_len[2];
	ntfsc *c;
	ntfsc_file *f;
	unsigned i;
	double t0 = now_s();
	int e;

	(void)state;
	alarm(60);
	img = copy_fixture("vol4k.img");
	for (i = 0; i < 2; i++)
		want[i] = cat_image(orig, files[i], &want_len[i]);
	mark_encrypted(img, "/small.txt");
	/* ntfs-3g agrees it is encrypted now */
	assert_int_equal(oracle_info(img, "/small.txt", NULL, &oa), 0);
	assert_true(oa.found);
	if (!oa.encrypted)
		fail_msg("ntfsinfo: /small.txt $DATA flags 0x%04x, not encrypted", oa.flags);

	start_daemon(img, NULL);
	c = connect_daemon();
	assert_int_equal(ntfsc_stat_ext(c, "/small.txt", &sx), 0);
	assert_true(sx.encrypted);
	f = ntfsc_open(c, "/small.txt", O_RDWR);
	e = errno;
	if (f)
		fail_msg("ntfsc_open(/small.txt, O_RDWR) of an encrypted file succeeded");
	printf("    open O_RDWR: NULL, %s \"%s\"\n", strerror(e),
	       ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "");
	if (e != EACCES)
		fail_msg("ntfsc_open(/small.txt, O_RDWR): %s, expected EACCES", strerror(e));
	f = ntfsc_open(c, "/small.txt", O_RDONLY);
	e = errno;
	if (f)
		fail_msg("ntfsc_open(/small.txt, O_RDONLY) of an encrypted file succeeded");
	if (e != EACCES)
		fail_msg("ntfsc_open(/small.txt, O_RDONLY): %s, expected EACCES", strerror(e));
	/* the others are served as before */
	for (i = 0; i < 2; i++) {
		f = ntfsc_open(c, files[i], O_RDWR);
		if (!f)
			fail_msg("ntfsc_open(%s): %s", files[i], strerror(errno));
		assert_cache_file(f, want[i], want_len[i]);
		assert_int_equal(ntfsc_close(f), 0);
	}
	disconnect_daemon(c);
	stop_daemon_clean(NULL);
	for (i = 0; i < 2; i++) {
		assert_image_file(img, files[i], want[i], want_len[i]);
		free(want[i]);
	}
	printf("    [timing] encrypted refusal: %.2f s\n", now_s() - t0);
	free(orig);
	free(img);
	passed = true;
}

/* argv[1], if given: run only the tests matching this pattern (cmocka's
 * filter: * and ? wildcards). */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(eio_from_failing_device, setup, teardown),
		cmocka_unit_test_setup_teardown(failed_truncate_keeps_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(eio_rounds, setup, teardown),
		cmocka_unit_test_setup_teardown(zeroes_over_a_failed_page, setup, teardown),
		cmocka_unit_test_setup_teardown(eio_in_background_writeback, setup, teardown),
		cmocka_unit_test_setup_teardown(failed_pages_in_a_batch_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(failed_pages_in_a_batch_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(sync_waits_for_flushers, setup, teardown),
		cmocka_unit_test_setup_teardown(growth_refused_on_a_failing_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(random_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(enomem_is_not_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(enomem_at_shutdown_loses_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(throttle_io_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(throttle_io_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(throttle_across_files, setup, teardown),
		cmocka_unit_test_setup_teardown(encrypted_file_refused, setup, teardown),
	};

	const char *seed = getenv("NTFSD_TEST_SEED");

	if (!daemon_test_env(&ntfsd_bin, &ntfsctl_bin, &fixture_dir))
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* a fixed default, so runs can be replayed; "random" for a new one */
	if (seed && !strcmp(seed, "random"))
		run_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	else if (seed && *seed)
		run_seed = strtoull(seed, NULL, 0);
	if (!run_seed)
		run_seed = 1;
	printf("test_write_errors: NTFSD_TEST_SEED=%#llx NTFSD_TEST_SECONDS=%u\n",
	       (unsigned long long)run_seed, fault_seconds());
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
