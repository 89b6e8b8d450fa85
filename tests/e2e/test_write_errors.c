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
static volatile sig_atomic_t in_teardown, timed_out;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

static uint8_t *cat_image(const char *img, const char *path, size_t *len)
{
	char *data = NULL, snap[300];
	int err;

	/* a running daemon holds its volume locked: ntfscat a copy */
	if (dmn.pid > 0) {
		if (testvol_snapshot(img, snap, sizeof(snap)))
			fail_msg("copying %s: %s", img, strerror(errno));
		err = oracle_cat(snap, path, NULL, &data, len);
		unlink(snap);
	} else {
		err = oracle_cat(img, path, NULL, &data, len);
	}
	if (err)
		fail_msg("ntfscat %s %s: %s (%s)", img, path, strerror(-err), oracle_last_stderr());
	return (uint8_t *)data;
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

/* Write version seed of [off, off + len) through f and into model. */
static void write_range(ntfsc_file *f, uint8_t *model, uint64_t off, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);
	ssize_t n;

	assert_non_null(buf);
	pattern_fill(buf, len, seed, off);
	n = ntfsc_pwrite(f, buf, len, (off_t)off);
	if (n != (ssize_t)len)
		fail_msg("ntfsc_pwrite(%zu bytes at %llu) = %zd: %s (%s)", len,
			 (unsigned long long)off, n, strerror(errno),
			 ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "");
	memcpy(model + off, buf, len);
	free(buf);
}

static void expect_fsync(ntfsc_file *f, const char *who, int want_errno)
{
	int r = ntfsc_fsync(f), e = errno;

	if (want_errno == 0 && r != 0)
		fail_msg("fsync on %s: -1 (%s: %s), expected 0", who, strerror(e),
			 ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "");
	if (want_errno && r == 0)
		fail_msg("fsync on %s: 0, expected -1 with %s", who, strerror(want_errno));
	if (want_errno && e != want_errno)
		fail_msg("fsync on %s: %s, expected %s", who, strerror(e), strerror(want_errno));
	if (want_errno)
		printf("    fsync on %s: -1 (%s) \"%s\"\n", who, strerror(e),
		       ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "");
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

static uint64_t write_errors(ntfsc *c)
{
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	uint64_t n;

	if (ntfsc_volume_status(c, &vs))
		fail_msg("ntfsc_volume_status: %s", strerror(errno));
	n = vs.write_errors;
	ntfsc_volume_status_free(&vs);
	return n;
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

/* `ntfsctl sync /big.bin` from a fresh process: exit status 0, or 1 with
 * exactly the documented message. */
static void ntfsctl_sync(int want_status, const char *why)
{
	char *err = NULL;
	int status = ntfsctl(NULL, NULL, &err, "sync", "/big.bin", (char *)NULL);

	printf("    ntfsctl sync /big.bin (%s): exit %d%s%s", why, status, *err ? ", " : "\n",
	       err);
	if (status != want_status)
		fail_msg("ntfsctl sync /big.bin (%s): exit %d, expected %d", why, status,
			 want_status);
	if (want_status == 1 && strcmp(err, "ntfsctl: sync /big.bin: Input/output error\n"))
		fail_msg("ntfsctl sync stderr \"%s\", expected \"ntfsctl: sync /big.bin: "
			 "Input/output error\\n\"", err);
	if (want_status == 0 && *err)
		fail_msg("ntfsctl sync succeeded but printed \"%s\"", err);
	free(err);
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
	int status, e;

	(void)state;
	alarm(150);
	if (!have_program("nbdkit") || !have_program("nbdfuse") || !have_program("fusermount3") ||
	    access("/dev/fuse", R_OK | W_OK) != 0) {
		/* scripts/test installs them: their absence is a failure, not a skip */
		free(orig);
		fail_msg("needs nbdkit (error filter), nbdfuse, fusermount3 and /dev/fuse");
	}
	img = copy_fixture("vol4k.img");
	model = cat_image(img, "/big.bin", &len);
	orig_small = cat_image(orig, "/small.txt", &small_len);
	orig_frag = cat_image(orig, "/frag/a.bin", &frag_len);
	b_off = len - b_len;                 /* the tail: a page straddling the end */
	assert_true(len > c_off + c_len && c_off > d_off + d_len);

	e = nbd_error_start(&nbd, img);
	if (e)
		fail_msg("cannot serve %s through nbdkit + nbdfuse: %s", img, strerror(-e));
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
	assert_int_equal(nbd_error_set(&nbd, true), 0);

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
	assert_int_equal(nbd_error_set(&nbd, false), 0);
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
	stop_daemon_clean(NULL);
	if (nbd_error_stop(&nbd))
		fail_msg("unmounting nbdfuse / stopping nbdkit was not clean");

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
	int e;

	(void)state;
	alarm(150);
	if (!have_program("nbdkit") || !have_program("nbdfuse") || !have_program("fusermount3"))
		fail_msg("needs nbdkit (error filter), nbdfuse and fusermount3");
	img = copy_fixture("vol4k.img");
	model = cat_image(img, "/big.bin", &len);
	e = nbd_error_start(&nbd, img);
	if (e)
		fail_msg("cannot serve %s through nbdkit + nbdfuse: %s", img, strerror(-e));
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
		assert_int_equal(nbd_error_set(&nbd, true), 0);
		if (ntfsc_ftruncate(f, (off_t)cut) == 0)
			fail_msg("round %u: ftruncate to %llu succeeded on a failing disk", round,
				 (unsigned long long)cut);
		if (errno != EIO)
			fail_msg("round %u: ftruncate failed with %s, not EIO", round,
				 strerror(errno));
		assert_int_equal(nbd_error_set(&nbd, false), 0);
		assert_int_equal(ntfsc_fstat(f, &st), 0);
		if (st.size != len)
			fail_msg("round %u: the failed truncate left size %llu, not %zu", round,
				 (unsigned long long)st.size, len);
		assert_cache_file(f, model, len);
		expect_fsync(f, "after the failed truncate", 0);
	}
	assert_int_equal(ntfsc_close(f), 0);
	disconnect_daemon(c);
	stop_daemon_clean(NULL);
	if (nbd_error_stop(&nbd))
		fail_msg("unmounting nbdfuse / stopping nbdkit was not clean");
	assert_image_file(img, "/big.bin", model, len);
	assert_ntfsfix_clean(img);
	printf("    10 failed truncates, every write kept\n");
	free(model);
	free(img);
	passed = true;
}

/* ---- 2. out of memory in writeback ---- */

static uint64_t rnd_state = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
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
				 ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "");
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
		cmocka_unit_test_setup_teardown(enomem_is_not_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(enomem_at_shutdown_loses_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(throttle_io_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(throttle_io_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(throttle_across_files, setup, teardown),
		cmocka_unit_test_setup_teardown(encrypted_file_refused, setup, teardown),
	};

	if (!daemon_test_env(&ntfsd_bin, &ntfsctl_bin, &fixture_dir))
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
