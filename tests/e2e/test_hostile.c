/*
 * test_hostile — the shared memory is a trust boundary (issue 14): hostile
 * clients write what they can reach of the shared segments, and a normal
 * client, the daemon and the volume must not care.
 *
 * Every test serves its own copy of vol4k.img from its own temp dir; each
 * attack runs in a process of its own (support/kids.h), mostly a raw
 * protocol client (support/rawclient.h) that maps what the daemon hands it
 * and writes into it; a normal libntfsc client runs in another process
 * with every step bounded in time, so a wedged daemon fails the test
 * instead of hanging it.  Problems are collected and reported together at
 * the end of a test, so one run shows every way an attack bites.  The
 * teardown kills whatever still runs, stops the daemon and removes the
 * temp dir.
 *
 * After an attack the normal client (checker) reads other files and the
 * attacked file X (every byte right, forged pages faulted in within the
 * step bound), fsyncs X, writes, fsyncs and reads back a file Y, truncates
 * X and reads it again, and asks for the volume status; then `ntfsctl
 * status` answers, the daemon is the same process, idles, stops on SIGTERM
 * within 10 s (exit 0, or 1: its final write-back failed), and on the
 * stopped image: ntfscat of the other files and of X and Y as expected,
 * ntfsfix -n clean, and no cluster outside X's, Y's, $MFT's, $MFTMirr's
 * and $Bitmap's and no MFT record but X's, Y's and free ones changed.
 *
 *  - help: --help documents --socket-mode, --max-lock-hold-ms,
 *    --max-uid-handles (768) and --max-uid-conns (256).
 *  - lock_ids_assigned: each connection's HelloReply.lock_owner is its
 *    own, >= 2 (NTFSD_LOCK_OWNER_DAEMON, 1, is the daemon's).
 *  - segments_private: uid 65534 opens files read-only: every fd it gets
 *    (volume header, data, page state) is O_RDONLY, mmap PROT_WRITE fails,
 *    reopening via /proc/self/fd O_RDWR fails with EACCES (segments are
 *    mode 0600); whatever it got writable is used (stores into the data,
 *    forged dirty pages, forged sizes and an odd seqcount in the header),
 *    and other clients still read the true bytes, the volume unchanged.
 *  - read_only_forged_dirty: a --read-only daemon, a root client forges a
 *    dirty page through a reopened fd: `ntfsctl sync` exits 0, the daemon
 *    serves and stops cleanly, the image is byte for byte unchanged.
 *  - system_files_refused: read-write opens of $MFT, $Boot, $Bitmap,
 *    $LogFile, $MFTMirr, $UpCase, $AttrDef and $Extend's files fail with
 *    EPERM naming the path; read-only opens read what ntfscat reads.
 *  - system_files_never_written: root reopens the segments of those files
 *    read-write, stores 0xEE and forges every dirty bit: after sync and
 *    stop the image is byte for byte unchanged.
 *  - control_benign_writer: the harness itself: a writer that dirtied a
 *    page the proper way passes every check below.
 *  - forge_*: a client with a writable handle on X (/big.bin) dirties a
 *    page, then overwrites a page-state header field (pages_offset,
 *    segment_size, buffer_size, buffers_per_page with 0, 2^32-1 and 3,
 *    nr_pages, l1/l2 offsets, the identity fields, nr_dirty = 2^63 and
 *    2^40 kept there while a normal writer writes 8 MiB), or forges dirty state past
 *    i_size, on pages never uptodate, in holes (X = /sparse.bin), page
 *    locks owned by the daemon's lock id or a random one (the daemon
 *    breaks them and logs "broken"), or PG_writeback.
 *  - lock_held_too_long: --max-lock-hold-ms 500; a client holding a page
 *    lock with its own lock id is SIGSTOPped: a reader's fault-in of the
 *    page completes within 5 s, a warning names the holder and
 *    "disconnect", its connection is closed.
 *  - lock_holder_in_pid_namespace: a client that is pid 1 of its own pid
 *    namespace takes a lock and is SIGKILLed: the lock is broken in < 2 s.
 *  - uid_limits: --max-uid-handles 20 --max-uid-conns 4: uid 65534's 21st
 *    handle (over four connections) is EMFILE, its fifth connection is
 *    closed with a logged reason, root still opens files; a close makes
 *    room again.
 *  - fuzz_page_state: for 20 s (NTFSD_TEST_LONG=1: 120 s) a hostile
 *    process writes random bytes (NTFSD_TEST_SEED) over X's page-state
 *    segment while a normal client writes, reads and fsyncs Y (checked
 *    against a model) and another works on X: the daemon stays the same
 *    answering process, every operation returns in time, Y reads back
 *    exactly after the stop, ntfsfix -n clean.
 *
 * NTFSD_TEST_FILTER=GLOB runs only the tests whose names match.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "dirty_bitmap.h"
#include "kids.h"
#include "ntfsc.h"
#include "oracle.h"
#include "page.h"
#include "pattern.h"
#include "rawclient.h"
#include "segment.h"
#include "seqcount.h"
#include "shm_layout.h"
#include "testvol.h"

#define NOBODY 65534
#define STEP_S 10               /* every step of the normal client */
#define STOP_S 10               /* SIGTERM to exit */
#define PAGE NTFSD_PAGE_SIZE
#define NO_TRUNC UINT64_MAX

static const char *ntfsd_bin, *ntfsctl_bin, *fixture_dir;
static char src_img[256];       /* the fixture */
static char tmpdir[64], image[128], pre_img[300], model_path[160];
static struct test_daemon dmn;
static pid_t dmn_pid;           /* the pid it started with (0: none) */
static struct kids atk, chk;    /* the attacker, the normal client */
static char problems[16384];
static int nproblems;
static uint64_t run_seed;

/* ---- problems: collected, reported at the end of a test ---- */

__attribute__((format(printf, 1, 2))) static void problem(const char *fmt, ...)
{
	size_t n = strlen(problems);
	va_list ap;

	nproblems++;
	if (n < sizeof(problems) - 2) {
		va_start(ap, fmt);
		vsnprintf(problems + n, sizeof(problems) - n - 1, fmt, ap);
		va_end(ap);
		n = strlen(problems);
		problems[n] = '\n';
		problems[n + 1] = '\0';
	}
	va_start(ap, fmt);
	fprintf(stderr, "  problem: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void finish(void)
{
	if (nproblems) {
		if (dmn.dir[0])
			daemon_dump_log(&dmn);
		fail_msg("%d problem(s):\n%s", nproblems, problems);
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- what the fixture holds (ntfscat of the pristine image) ---- */

struct known {
	const char *path, *stream;
	char *data;
	size_t len;
};

static struct known known[] = {
	{ "/small.txt", NULL, NULL, 0 },       { "/empty", NULL, NULL, 0 },
	{ "/d1/d2/d3/deep.txt", NULL, NULL, 0 }, { "/frag/a.bin", NULL, NULL, 0 },
	{ "/frag/b.bin", NULL, NULL, 0 },      { "/frag/c.bin", NULL, NULL, 0 },
	{ "/attrlist.bin", NULL, NULL, 0 },    { "/sparse.bin", NULL, NULL, 0 },
	{ "/big.bin", NULL, NULL, 0 },         { "/comp/text.txt", NULL, NULL, 0 },
	{ "/comp/mixed.bin", NULL, NULL, 0 },  { "/comp/tiny.txt", NULL, NULL, 0 },
	{ "/prealloc.bin", NULL, NULL, 0 },    { "/streams.txt", NULL, NULL, 0 },
	{ "/streams.txt", "beta", NULL, 0 },   { "/unicode/日本語.txt", NULL, NULL, 0 },
	{ "/$Boot", NULL, NULL, 0 },           { "/$MFT", NULL, NULL, 0 },
	{ "/$Bitmap", NULL, NULL, 0 },         { "/$LogFile", NULL, NULL, 0 },
	{ "/$MFTMirr", NULL, NULL, 0 },        { "/$UpCase", NULL, NULL, 0 },
	{ "/$AttrDef", NULL, NULL, 0 },
};
#define NKNOWN (sizeof(known) / sizeof(known[0]))

static const struct known *known_file(const char *path)
{
	for (size_t i = 0; i < NKNOWN; i++)
		if (!strcmp(known[i].path, path) && !known[i].stream)
			return &known[i];
	fail_msg("%s is not among the known files", path);
	return NULL;
}

/* Files checked with ntfscat after each stop (the image diff covers the
 * rest); X and Y are left out where they are the test's. */
static const char *const after_files[] = { "/small.txt", "/frag/a.bin", "/comp/text.txt",
					   "/streams.txt", "/big.bin", "/frag/c.bin" };

/* ---- running programs with a time limit ---- */

/* Run argv with stdout and stderr into *out (may be NULL); killed after
 * timeout_s (alarm() survives execve).  0 and *status, or -ETIMEDOUT, or
 * -errno. */
static int run_timed(const char *const argv[], int timeout_s, char **out, int *status)
{
	int p[2], st;
	pid_t pid;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	if (!buf || pipe2(p, O_CLOEXEC)) {
		free(buf);
		return -ENOMEM;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		free(buf);
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		alarm((unsigned)timeout_s);
		execv(argv[0], (char *const *)argv);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t n;

		if (cap - len < 1024) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		n = read(p[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(p[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (out)
		*out = buf;
	else
		free(buf);
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
		return -ETIMEDOUT;
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

/* ntfsctl -s SOCKET args... within timeout_s: its exit status, -1 when it
 * timed out (then a problem is noted). */
static int ntfsctl_timed(int timeout_s, char **out, ...)
{
	const char *argv[16];
	va_list ap;
	int status = -1, err;

	va_start(ap, out);
	daemon_ctl_argv(argv, 16, ntfsctl_bin, &dmn, ap);
	va_end(ap);
	err = run_timed(argv, timeout_s, out, &status);
	if (err == -ETIMEDOUT) {
		problem("ntfsctl %s did not return within %d s", argv[3], timeout_s);
		return -1;
	}
	if (err)
		fail_msg("cannot run ntfsctl: %s", strerror(-err));
	return status;
}

/* ---- the daemon ---- */

static bool daemon_alive(const char *when)
{
	int st;

	if (!dmn.pid)
		return false;
	if (waitpid(dmn.pid, &st, WNOHANG) == dmn.pid) {
		if (WIFSIGNALED(st))
			problem("%s: ntfsd (pid %d) died of signal %d (%s)", when, (int)dmn.pid,
				WTERMSIG(st), strsignal(WTERMSIG(st)));
		else
			problem("%s: ntfsd (pid %d) exited with status %d", when, (int)dmn.pid,
				WEXITSTATUS(st));
		dmn.exit_status = st;
		dmn.pid = 0;
		/* its keeper holds the volume (and the segments) meanwhile */
		keeper_kill_in(dmn.dir);
		return false;
	}
	if (dmn.pid != dmn_pid)
		problem("%s: ntfsd is pid %d, not the %d it started as", when, (int)dmn.pid,
			(int)dmn_pid);
	return true;
}

/* Start ntfsd on the test's image with args (NULL-ended); its socket
 * directory and socket reachable by every uid.  False (a problem noted)
 * when it would not start. */
static bool start(const char *const *args)
{
	const char *argv[24];
	int n = 0, err;

	while (args && args[n] && n < 22) {
		argv[n] = args[n];
		n++;
	}
	argv[n] = NULL;
	err = daemon_start(&dmn, ntfsd_bin, image, argv);
	if (err) {
		char opts[256] = "";

		for (int i = 0; i < n; i++)
			snprintf(opts + strlen(opts), sizeof(opts) - strlen(opts), " %s", argv[i]);
		if (err == -ECHILD)
			problem("ntfsd%s did not start: exit status %d", opts,
				WIFEXITED(dmn.exit_status) ? WEXITSTATUS(dmn.exit_status) : -1);
		else
			problem("ntfsd%s did not start: %s", opts, strerror(-err));
		return false;
	}
	dmn_pid = dmn.pid;
	/* the uid-65534 clients must reach the socket */
	if (chmod(dmn.dir, 0755) || chmod(dmn.socket, 0666))
		fail_msg("chmod %s: %s", dmn.socket, strerror(errno));
	return true;
}

/* SIGTERM; the daemon must be gone within STOP_S with exit 0 or 1 (its
 * final write-back failed, documented).  Returns its exit code (-1: it
 * did not stop, or died of a signal). */
static int stop_timed(void)
{
	int st = 0, code = -1;
	int64_t end;

	if (!daemon_alive("before SIGTERM"))
		return -1;
	kill(dmn.pid, SIGTERM);
	end = now_ms() + STOP_S * 1000;
	while (now_ms() < end) {
		if (waitpid(dmn.pid, &st, WNOHANG) == dmn.pid)
			break;
		sleep_ms(20);
	}
	if (now_ms() >= end && waitpid(dmn.pid, &st, WNOHANG) != dmn.pid) {
		problem("ntfsd did not exit within %d s of SIGTERM", STOP_S);
		kill(dmn.pid, SIGKILL);
		waitpid(dmn.pid, &st, 0);
	} else if (WIFSIGNALED(st)) {
		problem("ntfsd died of signal %d (%s) after SIGTERM", WTERMSIG(st),
			strsignal(WTERMSIG(st)));
	} else {
		code = WEXITSTATUS(st);
		if (code == 1)
			print_message("  ntfsd exited 1 (its final write-back failed)\n");
		else if (code != 0)
			problem("ntfsd exited %d after SIGTERM (0, or 1 for a failed final write-back)",
				code);
	}
	dmn.exit_status = st;
	dmn.pid = 0;
	/* a failed final write-back leaves the keeper holding the volume */
	keeper_kill_in(dmn.dir);
	return code;
}

/* Lines of the daemon's log holding a, b and c (b, c may be NULL). */
static int log_count3(const char *a, const char *b, const char *c)
{
	FILE *f = fopen(dmn.log, "r");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0)
		if (strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c)))
			n++;
	free(line);
	fclose(f);
	return n;
}

static int log_count(const char *a, const char *b)
{
	return log_count3(a, b, NULL);
}

/* A warning of the log names "pid PID" (not a longer number) and word. */
static bool log_warns_pid(pid_t pid, const char *word)
{
	FILE *f = fopen(dmn.log, "r");
	char *line = NULL, key[32];
	size_t cap = 0, kl;
	bool found = false;

	if (!f)
		return false;
	kl = (size_t)snprintf(key, sizeof(key), "pid %d", (int)pid);
	while (!found && getline(&line, &cap, f) > 0) {
		const char *p = line;

		if (!strstr(line, "warning") || !strstr(line, word))
			continue;
		while ((p = strstr(p, key)) && (p[kl] >= '0' && p[kl] <= '9'))
			p += kl;
		found = p != NULL;
	}
	free(line);
	fclose(f);
	return found;
}


/* The daemon's CPU over ms must stay under max_ms. */
static void idle_cpu(long ms, long max_ms, const char *when)
{
	long hz = sysconf(_SC_CLK_TCK), t0, t1;

	if (!daemon_alive(when))
		return;
	t0 = testvol_cpu_ticks(dmn.pid);
	sleep_ms(ms);
	t1 = testvol_cpu_ticks(dmn.pid);
	if (t0 < 0 || t1 < 0)
		return;
	if ((t1 - t0) * 1000 / hz > max_ms)
		problem("%s: ntfsd used %ld ms of CPU in %ld ms idle (at most %ld)", when,
			(t1 - t0) * 1000 / hz, ms, max_ms);
}

static void status_answers(const char *when)
{
	char *out = NULL;
	int st;

	if (!daemon_alive(when))
		return;
	st = ntfsctl_timed(STEP_S, &out, "status", (char *)NULL);

	if (st > 0)
		problem("%s: ntfsctl status exited %d: %s", when, st, out ? out : "");
	free(out);
}

/* ---- child processes: lines up the pipe ---- */

__attribute__((format(printf, 2, 3))) static void say(int up, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	for (int i = 0; i < n; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	buf[n++] = '\n';
	if (write(up, buf, (size_t)n) < 0) {
		/* the parent is gone: nothing to tell */
	}
}

/* The next line from fd within timeout_ms: 1, 0 on timeout, -1 at EOF. */
static int read_line(int fd, char *line, size_t size, long timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	size_t n = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = end - now_ms();
		ssize_t r;
		char c;

		/* a line begun is read to its end (children write whole lines):
		 * a timeout in its middle dropped its start, and the rest of it
		 * then read as a line of its own (a DONE lost under load) */
		if (left <= 0 && n == 0)
			return 0;
		if (left <= 0)
			left = 1000;
		if (poll(&p, 1, (int)left) <= 0) {
			if (n && now_ms() > end + 10000)
				return -1;      /* half a line and then nothing for 10 s */
			continue;
		}
		r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (c == '\n') {
			line[n] = '\0';
			return 1;
		}
		if (n < size - 1)
			line[n++] = c;
	}
}

/* In a child: until the parent writes a byte or goes away; every 20 ms
 * calls tick (if not NULL). */
static void wait_parent(int down, void (*tick)(void *), void *arg)
{
	for (;;) {
		struct pollfd p = { .fd = down, .events = POLLIN };

		if (poll(&p, 1, 20) > 0)
			return;
		if (tick)
			tick(arg);
	}
}

static bool become_nobody(void)
{
	return !setgroups(0, NULL) && !setresgid(NOBODY, NOBODY, NOBODY) &&
	       !setresuid(NOBODY, NOBODY, NOBODY) && !prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) &&
	       getuid() == NOBODY && geteuid() == NOBODY;
}

/* Wait for child k of ks to exit within ms; its wait status, or -1 (then
 * it is killed). */
static int kid_reap(struct kids *ks, int k, long ms)
{
	int st = -1;

	if (ks->pid[k] <= 0)
		return -1;
	if (!testvol_wait_child(ks->pid[k], ms, &st)) {
		kill(ks->pid[k], SIGKILL);
		waitpid(ks->pid[k], NULL, 0);
		st = -1;
	}
	ks->pid[k] = 0;
	return st;
}

/* ---- the normal client ---- */

struct plan {
	const char *x;          /* the attacked file (NULL: none) */
	bool x_read_only;       /* open it O_RDONLY */
	uint64_t x_trunc;       /* truncate X to this (NO_TRUNC: not) */
	const char *y;          /* written by the client (NULL: none) */
	size_t y_len;           /* bytes written at 0 */
	/* bytes of X the attacker stored: either they or the file's read right */
	uint64_t alt_off, alt_len;
	uint8_t alt_byte;
};
static struct plan plan;
/* What the normal client did to Y: nothing, a write that returned and was
 * synced, or something in between (Y's bytes are then not known). */
static enum { Y_ORIGINAL, Y_UNKNOWN, Y_WRITTEN } y_state;

static const char *const other_reads[] = { "/small.txt", "/frag/a.bin", "/comp/text.txt",
					   "/d1/d2/d3/deep.txt" };

/* First offset where got differs from want (the alt range may hold
 * alt_byte instead), or -1. */
static long long mismatch(const uint8_t *got, const uint8_t *want, size_t len, bool alt)
{
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i] &&
		    !(alt && i >= plan.alt_off && i < plan.alt_off + plan.alt_len &&
		      got[i] == plan.alt_byte))
			return (long long)i;
	return -1;
}

/* Read path whole through f (len bytes expected) and compare. */
static void read_compare(int up, ntfsc_file *f, const char *path, const uint8_t *want,
			 size_t len, bool alt)
{
	uint8_t *buf = malloc(len + 1);
	ssize_t n;
	long long at;

	if (!buf) {
		say(up, "FAIL %s: out of memory", path);
		return;
	}
	n = ntfsc_pread(f, buf, len + 1, 0);
	if (n != (ssize_t)len)
		say(up, "FAIL reading %s: %zd bytes, want %zu (%s)", path, n, len,
		    n < 0 ? strerror(errno) : "short");
	else if ((at = mismatch(buf, want, len, alt)) >= 0)
		say(up, "FAIL reading %s: byte %lld is 0x%02x, want 0x%02x", path, at, buf[at],
		    want[at]);
	free(buf);
}

static void read_other(int up, ntfsc *c, const char *path)
{
	const struct known *k = known_file(path);
	ntfsc_file *f = ntfsc_open(c, path, O_RDONLY);

	if (!f) {
		say(up, "FAIL open %s: %s (%s)", path, strerror(errno),
		    ntfsc_last_error_message(c) ? ntfsc_last_error_message(c) : "");
		return;
	}
	read_compare(up, f, path, (const uint8_t *)k->data, k->len, false);
	ntfsc_close(f);
}

static void y_fill(uint8_t *buf, size_t len)
{
	pattern_fill(buf, len, mix_seed(run_seed, 7), 0);
}

static int checker_main(int k, int down, int up)
{
	const struct known *kx = plan.x ? known_file(plan.x) : NULL;
	ntfsc_file *fx = NULL, *fy;
	struct ntfsc_volume_status vs = NTFSC_VOLUME_STATUS_INIT;
	ntfsc *c;

	(void)k;
	(void)down;
	say(up, "STEP connect");
	c = ntfsc_connect(dmn.socket);
	if (!c) {
		say(up, "FAIL connect: %s", strerror(errno));
		return 1;
	}
	say(up, "STEP read other files");
	for (size_t i = 0; i < sizeof(other_reads) / sizeof(other_reads[0]); i++)
		if ((!plan.x || strcmp(other_reads[i], plan.x)) &&
		    (!plan.y || strcmp(other_reads[i], plan.y)))
			read_other(up, c, other_reads[i]);
	if (plan.x) {
		say(up, "STEP read X");
		fx = ntfsc_open(c, plan.x, plan.x_read_only ? O_RDONLY : O_RDWR);
		if (!fx)
			say(up, "FAIL open %s: %s (%s)", plan.x, strerror(errno),
			    ntfsc_last_error_message(c) ? ntfsc_last_error_message(c) : "");
		else
			read_compare(up, fx, plan.x, (const uint8_t *)kx->data, kx->len, true);
		if (fx) {
			say(up, "STEP fsync X");
			if (ntfsc_fsync(fx))
				say(up, "INFO fsync %s: %s", plan.x, strerror(errno));
		}
	}
	if (plan.y) {
		const struct known *ky = known_file(plan.y);
		size_t len = plan.y_len > ky->len ? plan.y_len : ky->len;
		uint8_t *want = malloc(len), *got = malloc(len + 1);
		ssize_t n;

		memcpy(want, ky->data, ky->len);
		y_fill(want, plan.y_len);
		say(up, "STEP write Y");
		fy = ntfsc_open(c, plan.y, O_RDWR);
		if (!fy) {
			say(up, "FAIL open %s O_RDWR: %s (%s)", plan.y, strerror(errno),
			    ntfsc_last_error_message(c) ? ntfsc_last_error_message(c) : "");
		} else {
			n = ntfsc_pwrite(fy, want, plan.y_len, 0);
			if (n != (ssize_t)plan.y_len)
				say(up, "FAIL writing %zu bytes to %s: %zd (%s)", plan.y_len, plan.y,
				    n, n < 0 ? strerror(errno) : "short");
			say(up, "STEP fsync Y");
			if (ntfsc_fsync(fy))
				say(up, "FAIL fsync %s: %s (%s)", plan.y, strerror(errno),
				    ntfsc_last_error_message(c) ? ntfsc_last_error_message(c)
								 : "");
			else if (n == (ssize_t)plan.y_len)
				say(up, "YWRITTEN");
			say(up, "STEP read Y");
			n = ntfsc_pread(fy, got, len + 1, 0);
			if (n != (ssize_t)len || memcmp(got, want, len))
				say(up, "FAIL %s reads back %zd bytes, not the %zu written", plan.y,
				    n, len);
			ntfsc_close(fy);
		}
		free(want);
		free(got);
	}
	if (fx && plan.x_trunc != NO_TRUNC) {
		struct ntfsc_stat st;

		say(up, "STEP truncate X");
		if (ntfsc_ftruncate(fx, (off_t)plan.x_trunc)) {
			say(up, "TRUNC %d", errno);
		} else {
			say(up, "TRUNC 0");
			say(up, "STEP read X after truncate");
			if (ntfsc_fstat(fx, &st) || st.size != plan.x_trunc)
				say(up, "FAIL %s: size %llu after truncating to %llu", plan.x,
				    (unsigned long long)st.size, (unsigned long long)plan.x_trunc);
			else
				read_compare(up, fx, plan.x, (const uint8_t *)kx->data,
					     (size_t)plan.x_trunc, true);
		}
	}
	if (fx)
		ntfsc_close(fx);
	say(up, "STEP volume status");
	if (ntfsc_volume_status(c, &vs))
		say(up, "FAIL volume status: %s", strerror(errno));
	else
		ntfsc_volume_status_free(&vs);
	ntfsc_disconnect(c);
	say(up, "DONE");
	return 0;
}

/* Run the normal client with plan; returns the truncate's result (0 or
 * an errno; -1: not reached). */
static int run_checker(void)
{
	char line[1100], step[1100] = "start";
	int trunc = -1, r, st;

	y_state = Y_ORIGINAL;
	if (!daemon_alive("before the normal client"))
		return -1;
	kids_init(&chk, 1);
	kids_spawn(&chk, checker_main);
	for (;;) {
		r = read_line(chk.up[0], line, sizeof(line), STEP_S * 1000);
		if (r == 0) {
			problem("normal client: \"%s\" did not complete within %d s", step, STEP_S);
			kill(chk.pid[0], SIGKILL);
			break;
		}
		if (r < 0) {
			st = kid_reap(&chk, 0, 2000);
			problem("normal client died in \"%s\" (wait status 0x%x)", step, st);
			break;
		}
		if (!strncmp(line, "STEP ", 5)) {
			snprintf(step, sizeof(step), "%s", line + 5);
			if (!strcmp(step, "write Y"))
				y_state = Y_UNKNOWN;
		}
		else if (!strncmp(line, "FAIL ", 5))
			problem("normal client, %s: %s", step, line + 5);
		else if (!strcmp(line, "YWRITTEN"))
			y_state = Y_WRITTEN;
		else if (!strncmp(line, "TRUNC ", 6))
			trunc = atoi(line + 6);
		else if (!strncmp(line, "INFO ", 5))
			print_message("  normal client: %s\n", line + 5);
		else if (!strcmp(line, "DONE"))
			break;
	}
	if (trunc > 0)
		print_message("  normal client: truncating %s failed: %s\n", plan.x,
			      strerror(trunc));
	if (chk.pid[0] > 0 && kid_reap(&chk, 0, 2000) < 0)
		problem("normal client did not exit");
	kids_close_fds(&chk);
	return trunc;
}

/* ---- the volume after the stop ---- */

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#define MAX_RUNS 1024
#define MAX_RECS 16

/* The clusters and MFT records holding a file's attributes. */
struct placement {
	int64_t vcn[MAX_RUNS], lcn[MAX_RUNS], len[MAX_RUNS];
	int n;
	uint64_t rec[MAX_RECS];
	int nrec;
};

/* Every run ntfsinfo -v shows of path (or of MFT record inode when path is
 * NULL) on img, and the records its attributes live in. */
static bool placement_of(const char *img, const char *path, long inode, struct placement *pl)
{
	char num[24], *out = NULL, *save = NULL, *line;
	const char *argv[] = { "ntfsinfo", "-v", path ? "-F" : "-i", path ? path : num, img, NULL };
	bool in_runlist = false;
	int status;

	snprintf(num, sizeof(num), "%ld", inode);
	if (oracle_run(argv, &out, NULL, &status) || status) {
		problem("ntfsinfo -v %s %s failed: %s", path ? path : num, img,
			oracle_last_stderr());
		free(out);
		return false;
	}
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *r = strstr(line, "from mft record ");
		char vcn[64], lcn[64], len[64];

		if (r && pl->nrec < MAX_RECS) {
			uint64_t rec = strtoull(r + 16, NULL, 0);
			int i;

			for (i = 0; i < pl->nrec && pl->rec[i] != rec; i++)
				;
			if (i == pl->nrec)
				pl->rec[pl->nrec++] = rec;
		}
		if (strstr(line, "Runlist:")) {
			in_runlist = true;
			continue;
		}
		if (!in_runlist || strncmp(line, "\t\t\t", 3)) {
			in_runlist = false;
			continue;
		}
		if (sscanf(line, "%63s %63s %63s", vcn, lcn, len) == 3 && !strncmp(lcn, "0x", 2) &&
		    pl->n < MAX_RUNS) {
			pl->vcn[pl->n] = strtoll(vcn, NULL, 0);
			pl->lcn[pl->n] = strtoll(lcn, NULL, 0);
			pl->len[pl->n++] = strtoll(len, NULL, 0);
		}
	}
	free(out);
	return true;
}

static void allow(bool *ok, uint64_t nclusters, const struct placement *pl)
{
	for (int i = 0; i < pl->n; i++)
		for (int64_t c = pl->lcn[i]; c < pl->lcn[i] + pl->len[i]; c++)
			if (c >= 0 && (uint64_t)c < nclusters)
				ok[c] = true;
}

/*
 * Nothing of the volume changed but what the given files (X and Y) and the
 * allocator own: clusters outside theirs and outside $MFT's, $MFTMirr's
 * and $Bitmap's are byte for byte as before, and so is every MFT record
 * but theirs and the ones free before.  The files' directories count as
 * theirs: their entries carry copies of the files' sizes and times, which
 * follow a sync (taken from the records on disk, never from a client).
 */
static void unchanged_outside(const char *const *paths, int npaths)
{
	uint8_t *a, *b;
	size_t alen, blen;
	uint64_t csize, nclusters, rsize, changed = 0, first[4];
	int8_t cpr;
	bool *ok = NULL;
	struct placement *pl = calloc(1, sizeof(*pl));
	const char *imgs[2] = { pre_img, image };
	char *ma = NULL, *mb = NULL;
	size_t malen = 0, mblen = 0;
	uint64_t recs[2 * MAX_RECS * 4];
	int nrecs = 0;

	a = testvol_read_whole(pre_img, &alen);
	b = testvol_read_whole(image, &blen);
	if (!a || !b || !pl || alen != blen || alen < 512) {
		problem("cannot compare %s with %s", image, pre_img);
		goto out;
	}
	csize = le(a + 0x0b, 2) * le(a + 0x0d, 1);
	cpr = (int8_t)a[0x40];
	rsize = cpr < 0 ? 1ull << -cpr : (uint64_t)cpr * csize;
	nclusters = alen / csize;
	ok = calloc(nclusters, 1);
	if (!ok)
		goto out;
	for (int v = 0; v < 2; v++) {
		static const long meta[] = { 0, 1, 6 };   /* $MFT, $MFTMirr, $Bitmap */

		for (int m = 0; m < 3; m++) {
			memset(pl, 0, sizeof(*pl));
			if (!placement_of(imgs[v], NULL, meta[m], pl))
				goto out_ok;
			allow(ok, nclusters, pl);
		}
		for (int i = 0; i < 2 * npaths; i++) {
			char parent[256];
			const char *p = paths[i / 2];

			if (i % 2) {    /* the file's directory */
				const char *slash = strrchr(p, '/');
				size_t n = slash && slash != p ? (size_t)(slash - p) : 1;

				snprintf(parent, sizeof(parent), "%.*s", (int)n, p);
				p = parent;
			}
			memset(pl, 0, sizeof(*pl));
			if (!placement_of(imgs[v], p, 0, pl))
				goto out_ok;
			allow(ok, nclusters, pl);
			for (int r = 0; r < pl->nrec && nrecs < (int)(sizeof(recs) / sizeof(recs[0]));
			     r++)
				recs[nrecs++] = pl->rec[r];
		}
	}
	for (uint64_t c = 0; c < nclusters; c++)
		if (!ok[c] && memcmp(a + c * csize, b + c * csize, csize)) {
			if (changed < 4)
				first[changed] = c;
			changed++;
		}
	if (changed) {
		char lcns[96] = "";

		for (uint64_t i = 0; i < changed && i < 4; i++)
			snprintf(lcns + strlen(lcns), sizeof(lcns) - strlen(lcns), "%s0x%llx",
				 i ? ", " : "", (unsigned long long)first[i]);
		problem("%llu clusters outside the files written changed on the volume (LCN %s%s)",
			(unsigned long long)changed, lcns, changed > 4 ? ", ..." : "");
	}
	free(ok);
	ok = NULL;
	/* MFT records */
	if (oracle_cat(pre_img, "/$MFT", NULL, &ma, &malen) ||
	    oracle_cat(image, "/$MFT", NULL, &mb, &mblen)) {
		problem("ntfscat /$MFT failed: %s", oracle_last_stderr());
		goto out;
	}
	for (uint64_t r = 0; r * rsize < malen && (r + 1) * rsize <= mblen; r++) {
		const uint8_t *ra = (uint8_t *)ma + r * rsize, *rb = (uint8_t *)mb + r * rsize;
		bool mine = false;

		for (int i = 0; i < nrecs; i++)
			mine = mine || recs[i] == r;
		if (mine || !(le(ra + 0x16, 2) & 1))   /* theirs, or free before */
			continue;
		if (memcmp(ra, rb, rsize))
			problem("MFT record %llu (not the attacked file's) changed",
				(unsigned long long)r);
	}
out_ok:
	free(ok);
out:
	free(ma);
	free(mb);
	free(pl);
	free(a);
	free(b);
}

/* The stopped image: known files other than X and Y as ntfscat read them
 * before, X and Y as expected, ntfsfix -n clean, nothing else changed. */
static void check_volume(int trunc)
{
	const char *argv[] = { "ntfsfix", "-n", image, NULL };
	const char *mine[2];
	int nmine = 0, status = -1;
	char *out = NULL, *got;
	size_t glen;

	for (size_t i = 0; i < sizeof(after_files) / sizeof(after_files[0]); i++) {
		const struct known *k = known_file(after_files[i]);

		if ((plan.x && !strcmp(k->path, plan.x)) || (plan.y && !strcmp(k->path, plan.y)))
			continue;
		got = NULL;
		if (oracle_cat(image, k->path, NULL, &got, &glen))
			problem("ntfscat %s failed: %s", k->path, oracle_last_stderr());
		else if (glen != k->len || memcmp(got, k->data, glen))
			problem("%s changed on the volume (%zu bytes, was %zu)", k->path, glen,
				k->len);
		free(got);
	}
	if (plan.x) {
		const struct known *k = known_file(plan.x);
		size_t want = trunc == 0 ? (size_t)plan.x_trunc : k->len;
		long long at;

		mine[nmine++] = plan.x;
		if (oracle_cat(image, plan.x, NULL, &got, &glen)) {
			problem("ntfscat %s failed: %s", plan.x, oracle_last_stderr());
		} else {
			if (glen != want)
				problem("%s holds %zu bytes on the volume, want %zu", plan.x, glen,
					want);
			else if ((at = mismatch((uint8_t *)got, (uint8_t *)k->data, glen, true)) >= 0)
				problem("%s on the volume: byte %lld is 0x%02x, not 0x%02x", plan.x, at,
					(uint8_t)got[at], (uint8_t)k->data[at]);
			free(got);
		}
	}
	if (plan.y) {
		const struct known *k = known_file(plan.y);
		size_t len = plan.y_len > k->len ? plan.y_len : k->len;
		uint8_t *want = malloc(len);

		mine[nmine++] = plan.y;
		memcpy(want, k->data, k->len);
		if (y_state == Y_WRITTEN) {
			y_fill(want, plan.y_len);
		} else {
			len = k->len;   /* never written: as it was */
		}
		got = NULL;
		if (y_state == Y_UNKNOWN)
			print_message("  %s: the normal client's write did not complete: not "
				      "checked\n", plan.y);
		else if (oracle_cat(image, plan.y, NULL, &got, &glen))
			problem("ntfscat %s failed: %s", plan.y, oracle_last_stderr());
		else if (glen != len || memcmp(got, want, len))
			problem("%s on the volume is not what the normal client %s", plan.y,
				y_state == Y_WRITTEN ? "wrote and synced" : "left (it did not write)");
		free(got);
		free(want);
	}
	if (oracle_run(argv, &out, NULL, &status) || status ||
	    !strstr(out, "processed successfully") || strstr(out, "FAILED") ||
	    strstr(out, "nconsisten"))
		problem("ntfsfix -n: exit %d: %s %s", status, out ? out : "", oracle_last_stderr());
	free(out);
	unchanged_outside(mine, nmine);
}

/* ---- the attacker ---- */

struct atk {
	int fd, up;
	struct raw_hello_info hi;
	uint32_t id;                    /* its page-lock id */
	struct raw_file f;
	struct shm_file_header h0;      /* the header as the daemon made it */
	struct shm_page *pages;         /* as h0 says */
	struct dirty_bitmap b;          /* as h0 says */
	uint64_t isize_pages;
	uint64_t rng;
};

typedef int (*attack_fn)(struct atk *a);

struct attack {
	const char *path;               /* open it (NULL: the attack opens) */
	bool write;                     /* read-write */
	bool nobody;                    /* as uid 65534 */
	attack_fn fn;                   /* forge; 0 or an exit code */
	void (*persist)(void *a);       /* every 20 ms until released */
	/* a header field and the values written to it in turn */
	size_t field_off, field_size;
	uint64_t vals[4];
	int nvals;
	uint32_t lock_owner;            /* forge_lock: 0 = a random id */
};
static struct attack aplan;
static char atk_said[8192];             /* every line the attacker said */

#define FD_FLAG 1u
#define FD_BUFS 2u
#define FD_BITMAP 4u
#define FD_COUNT 8u
#define FD_ALL (FD_FLAG | FD_BUFS | FD_BITMAP | FD_COUNT)

/* Mark page i dirty through what the attacker mapped, piece by piece. */
static void forge_dirty(struct atk *a, uint64_t i, unsigned what, uint32_t extra_flags)
{
	struct shm_page *p = &a->pages[i];

	if (what & FD_BUFS)
		atomic_fetch_or(&p->buf_dirty, page_all_buffers(a->h0.buffers_per_page));
	if (what & FD_FLAG) {
		atomic_store(&p->first_dirtied_ns, 1);  /* long expired */
		atomic_fetch_or(&p->flags, PG_dirty | extra_flags);
	}
	if (what & FD_BITMAP)
		dirty_bitmap_set(&a->b, i);
	if (what & FD_COUNT)
		atomic_fetch_add(&a->f.h->nr_dirty, 1);
}

/* A legitimately dirtied page: write-ready (asked for), locked with our
 * id, dirtied, unlocked (its bytes unchanged). */
static int dirty_page(struct atk *a, uint64_t i)
{
	int err = raw_prepare_write(a->fd, a->f.handle, i, 1, 0, 0);

	if (err) {
		say(a->up, "FAIL prepare-write of page %llu: %s (%s)", (unsigned long long)i,
		    strerror(-err), raw_last_message());
		return 3;
	}
	{
		/* as libntfsc does: the claim in our lock table first */
		int ent = raw_lock_claim(&a->hi, a->f.inode_slot, i);

		lock_page(&a->pages[i], a->id);
		forge_dirty(a, i, FD_ALL, 0);
		unlock_page(&a->pages[i]);
		raw_lock_unclaim(&a->hi, ent);
	}
	return 0;
}

static void forge_lock(struct atk *a, uint64_t i, uint32_t owner)
{
	struct shm_page *p = &a->pages[i];
	uint32_t f = atomic_load(&p->flags);

	while (!atomic_compare_exchange_weak(
		&p->flags, &f, (f & ~PG_OWNER_MASK) | PG_locked | (owner << PG_OWNER_SHIFT)))
		;
	atomic_store(&p->lock_owner, owner);
}

static void field_write(struct atk *a, uint64_t v)
{
	uint8_t *h = (uint8_t *)a->f.h;

	switch (aplan.field_size) {
	case 2: {
		uint16_t x = (uint16_t)v;

		memcpy(h + aplan.field_off, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;

		memcpy(h + aplan.field_off, &x, 4);
		break;
	}
	default:
		memcpy(h + aplan.field_off, &v, 8);
	}
}

/* Each value in turn, with a page dirtied after it, time for write-back
 * between them; the last one stays. */
static int atk_header_field(struct atk *a)
{
	for (int v = 0; v < aplan.nvals; v++) {
		field_write(a, aplan.vals[v]);
		forge_dirty(a, 2 + (uint64_t)v, FD_FLAG | FD_BUFS | FD_BITMAP, 0);
		say(a->up, "INFO header field at %zu := 0x%llx", aplan.field_off,
		    (unsigned long long)aplan.vals[v]);
		if (v + 1 < aplan.nvals)
			sleep_ms(250);
	}
	return 0;
}

/* Several forged fields at once, one value each. */
static int atk_identity(struct atk *a)
{
	struct shm_file_header *h = a->f.h;

	h->magic = 0x4b43415454414b43ull;
	h->layout_version = 0xffff;
	h->page_size = 1;
	h->volume_serial ^= 0x5a5a5a5a;
	h->mft_no = 5;                  /* the root directory */
	atomic_store(&h->i_size, UINT64_MAX);
	h->seq_no ^= 0xffff;
	forge_dirty(a, 2, FD_FLAG | FD_BUFS | FD_BITMAP, 0);
	return 0;
}

/* 2^63, and 2^40, which does not wrap to 0 when counted in bytes */
static void persist_nr_dirty(void *arg)
{
	struct atk *a = arg;
	static unsigned n;

	atomic_store(&a->f.h->nr_dirty, n++ % 2 ? 1ull << 40 : 1ull << 63);
}

static int atk_nr_dirty(struct atk *a)
{
	persist_nr_dirty(a);
	return 0;
}

/* Dirty state on pages past i_size: whole, piece by piece, the straddling
 * page with junk past i_size, the segment's last descriptor. */
static int atk_past_isize(struct atk *a)
{
	uint64_t last = a->isize_pages - 1, tail = a->f.h->i_size;
	int err = raw_fault_in(a->fd, a->f.handle, last, 1, false);

	if (err) {
		say(a->up, "FAIL fault-in of page %llu: %s", (unsigned long long)last,
		    strerror(-err));
		return 3;
	}
	memset(a->f.data + tail, 0xEE, (size_t)((last + 1) * PAGE - tail));
	forge_dirty(a, last, FD_ALL, 0);
	forge_dirty(a, last + 1, FD_ALL, 0);
	forge_dirty(a, last + 2, FD_BITMAP, 0);
	forge_dirty(a, last + 3, FD_FLAG | FD_BUFS, PG_uptodate | PG_write_ready | PG_buffers);
	forge_dirty(a, last + 300, FD_BUFS | FD_BITMAP, 0);
	forge_dirty(a, a->h0.nr_pages - 1, FD_ALL, PG_uptodate);
	say(a->up, "INFO forged dirty pages %llu..%llu, %llu and %llu past i_size",
	    (unsigned long long)last, (unsigned long long)last + 3,
	    (unsigned long long)last + 300, (unsigned long long)a->h0.nr_pages - 1);
	return 0;
}

/* Dirty state on pages nobody read: never uptodate, their data zeroes. */
static int atk_not_uptodate(struct atk *a)
{
	static const uint64_t pg[] = { 300, 301, 302, 303, 500 };

	for (unsigned i = 0; i < 5; i++)
		if (atomic_load(&a->pages[pg[i]].flags) & PG_uptodate) {
			say(a->up, "FAIL page %llu is uptodate before anyone read it",
			    (unsigned long long)pg[i]);
			return 3;
		}
	forge_dirty(a, 300, FD_ALL, 0);
	forge_dirty(a, 301, FD_BITMAP | FD_COUNT, 0);
	forge_dirty(a, 302, FD_BUFS | FD_BITMAP, PG_buffers);
	/* half of its buffers "uptodate", all of them dirty */
	atomic_store(&a->pages[303].buf_uptodate, 0x0f);
	forge_dirty(a, 303, FD_ALL, PG_buffers | PG_write_ready);
	forge_dirty(a, 500, FD_FLAG | FD_BITMAP, PG_write_ready);
	return 0;
}

/* X = /sparse.bin: pages in its hole, read (zeroes) or not, dirtied
 * without prepare-write; one holds stored bytes. */
static int atk_hole(struct atk *a)
{
	int err = raw_fault_in(a->fd, a->f.handle, 100, 4, false);

	if (err) {
		say(a->up, "FAIL fault-in of the hole: %s", strerror(-err));
		return 3;
	}
	memset(a->f.data + 100 * PAGE, 0xEE, PAGE);
	for (uint64_t i = 100; i < 104; i++)
		forge_dirty(a, i, FD_ALL, PG_write_ready);
	forge_dirty(a, 3000, FD_ALL, PG_write_ready | PG_uptodate | PG_buffers);
	atomic_store(&a->pages[3000].buf_uptodate, 0xffffffffu);
	return 0;
}

/* Locks the attacker does not hold: a dirty page, a page to be read, a
 * page the truncate drops. */
static int atk_lock(struct atk *a)
{
	uint32_t owner = aplan.lock_owner;

	if (!owner)
		owner = 2 + (uint32_t)(xorshift(&a->rng) % ((PG_OWNER_MASK >> PG_OWNER_SHIFT) - 2));
	if (owner == a->id)
		owner++;
	say(a->up, "INFO forging locks owned by %u (our lock id %u)", owner, a->id);
	forge_lock(a, 2, owner);
	forge_lock(a, 300, owner);
	forge_lock(a, 700, owner);
	return 0;
}

static int atk_writeback(struct atk *a)
{
	page_set_bits(&a->pages[2], PG_writeback);
	page_set_bits(&a->pages[300], PG_writeback);
	page_set_bits(&a->pages[700], PG_writeback);
	return 0;
}

static int attacker_main(int k, int down, int up)
{
	struct atk a = { .up = up, .fd = -1 };
	int err, rc = 0;

	(void)k;
	a.f.data_fd = a.f.state_fd = -1;
	a.rng = mix_seed(run_seed, 99);
	if (aplan.nobody && !become_nobody()) {
		say(up, "FAIL cannot become uid %d: %s", NOBODY, strerror(errno));
		return 2;
	}
	a.fd = raw_connect(dmn.socket, 10000);
	if (a.fd < 0) {
		say(up, "FAIL connect: %s", strerror(-a.fd));
		return 2;
	}
	err = raw_hello(a.fd, "hostile", &a.hi);
	if (err) {
		say(up, "FAIL hello: %s (%s)", strerror(-err), raw_last_message());
		return 2;
	}
	a.id = raw_lock_id(&a.hi);
	say(up, "LOCKID %u %s", a.id, a.hi.lock_owner ? "assigned" : "pid (none assigned)");
	if (aplan.path) {
		err = raw_open(a.fd, aplan.path, aplan.write, &a.f);
		if (err) {
			say(up, "FAIL open %s: %s (%s)", aplan.path, strerror(-err),
			    raw_last_message());
			return 2;
		}
		if (aplan.write && a.f.state_mode != O_RDWR) {
			say(up, "FAIL a read-write open of %s gave a read-only page-state fd",
			    aplan.path);
			return 2;
		}
		a.h0 = *a.f.h;
		a.pages = a.f.pages;
		dirty_bitmap_init(&a.b, a.f.h, a.f.h);
		a.isize_pages = (a.f.h->i_size + PAGE - 1) / PAGE;
		err = raw_fault_in(a.fd, a.f.handle, 0, 16, false);
		if (err) {
			say(up, "FAIL fault-in: %s (%s)", strerror(-err), raw_last_message());
			return 2;
		}
		if (aplan.write && (rc = dirty_page(&a, 2)))
			return rc;
	}
	rc = aplan.fn(&a);
	if (rc)
		return rc;
	say(up, "READY");
	wait_parent(down, aplan.persist, &a);
	raw_file_unmap(&a.f);
	close(a.fd);
	return 0;
}

/* Start the attacker and wait until its attack is in place (lines it
 * said are kept in atk_said).  False (a problem noted) when it failed. */
static bool attack(void)
{
	char line[1100];
	int r;

	atk_said[0] = '\0';
	kids_init(&atk, 1);
	kids_spawn(&atk, attacker_main);
	for (;;) {
		r = read_line(atk.up[0], line, sizeof(line), 20000);
		if (r <= 0) {
			int st = r < 0 ? kid_reap(&atk, 0, 2000) : -1;

			problem("the attacker %s (wait status 0x%x): the attack did not happen",
				r < 0 ? "failed" : "did not get ready in 20 s", st);
			return false;
		}
		snprintf(atk_said + strlen(atk_said), sizeof(atk_said) - strlen(atk_said), "%s\n",
			 line);
		if (!strncmp(line, "FAIL ", 5))
			problem("attacker: %s", line + 5);
		else if (!strncmp(line, "INFO ", 5))
			print_message("  attacker: %s\n", line + 5);
		else if (!strcmp(line, "READY"))
			return true;
	}
}

/* Let the attacker go (it disconnects and exits). */
static void attack_release(void)
{
	if (atk.pid[0] <= 0)
		return;
	if (write(atk.down[0], "q", 1) != 1) {
		/* it is gone already */
	}
	if (kid_reap(&atk, 0, 5000) < 0)
		problem("the attacker did not exit when released");
	kids_close_fds(&atk);
}

/* A value the attacker said: "KEY value..." (NULL if it did not). */
static const char *atk_value(const char *key)
{
	static char v[256];
	const char *p = atk_said;
	size_t kl = strlen(key);

	while (p && *p) {
		if (!strncmp(p, key, kl) && p[kl] == ' ') {
			size_t n = strcspn(p + kl + 1, "\n");

			snprintf(v, sizeof(v), "%.*s", (int)n, p + kl + 1);
			return v;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

/* ---- set-up and teardown ---- */

static pid_t main_pid;

static void on_alarm(int sig)
{
	static const char msg[] = "test_hostile: a test hung; killing what it started\n";

	if (getpid() != main_pid) {
		/* a child's own watchdog (alarm() before a call that must return):
		 * die of it, as the parent expects */
		signal(sig, SIG_DFL);
		raise(sig);
		_exit(128 + sig);
	}
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do */
	}
	for (int k = 0; k < KIDS_MAX; k++) {
		if (atk.pid[k] > 0)
			kill(atk.pid[k], SIGKILL);
		if (chk.pid[k] > 0)
			kill(chk.pid[k], SIGKILL);
	}
	if (dmn.pid > 0)
		kill(dmn.pid, SIGKILL);
	unlink(image);
	unlink(model_path);
	rmdir(tmpdir);
	_exit(1);
}

static int64_t test_t0;

static int setup(void **state)
{
	(void)state;
	test_t0 = now_ms();
	memset(&dmn, 0, sizeof(dmn));
	dmn_pid = 0;
	problems[0] = '\0';
	nproblems = 0;
	memset(&plan, 0, sizeof(plan));
	plan.x_trunc = NO_TRUNC;
	memset(&aplan, 0, sizeof(aplan));
	kids_init(&atk, 1);
	kids_init(&chk, 1);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ntfsd-hostile.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(image, sizeof(image), "%s/vol4k.img", tmpdir);
	snprintf(pre_img, sizeof(pre_img), "%s", src_img);
	snprintf(model_path, sizeof(model_path), "%s/model", tmpdir);
	if (testvol_copy_file(src_img, image))
		return -1;
	signal(SIGALRM, on_alarm);
	alarm(240);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	alarm(0);
	print_message("  (%lld ms)\n", (long long)(now_ms() - test_t0));
	kids_kill(&atk);
	kids_kill(&chk);
	kids_close_fds(&atk);
	kids_close_fds(&chk);
	daemon_stop(&dmn);
	unlink(image);
	unlink(model_path);
	rmdir(tmpdir);
	return 0;
}

/* ---- help ---- */

static void help_documents_options(void **state)
{
	static const char *const keys[] = { "--socket-mode", "--max-lock-hold-ms",
					    "--max-uid-handles", "--max-uid-conns" };
	const char *argv[] = { ntfsd_bin, "--help", NULL };
	char *out = NULL;
	int status = -1;

	(void)state;
	assert_int_equal(run_timed(argv, 10, &out, &status), 0);
	if (status)
		problem("ntfsd --help exited %d", status);
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (!strstr(out, keys[k]))
			problem("ntfsd --help does not mention %s", keys[k]);
	if (!strstr(out, "768"))
		problem("ntfsd --help does not give max-uid-handles' default of 768");
	if (!strstr(out, "256"))
		problem("ntfsd --help does not give max-uid-conns' default of 256");
	free(out);
	finish();
}

/* ---- lock ids ---- */

/* Every connection gets a lock id of its own from the daemon: >= 2 (1 is
 * the daemon's), different from the other connections'. */
static void lock_ids_assigned(void **state)
{
	struct raw_hello_info hi[3];
	int fd[3];

	(void)state;
	if (!start(NULL))
		goto out;
	for (int i = 0; i < 3; i++) {
		int err;

		fd[i] = raw_connect(dmn.socket, 5000);
		assert_true(fd[i] >= 0);
		err = raw_hello(fd[i], "lock ids", &hi[i]);
		if (err)
			fail_msg("hello: %s", strerror(-err));
		if (hi[i].header_fd >= 0)
			close(hi[i].header_fd);
		if (!hi[i].lock_owner)
			problem("connection %d got no lock id (HelloReply.lock_owner = 5)", i + 1);
		else if (hi[i].lock_owner < 2)
			problem("connection %d got lock id %u, want >= 2 (%u is the daemon's)", i + 1,
				hi[i].lock_owner, NTFSD_LOCK_OWNER_DAEMON);
		else if (hi[i].lock_owner > (PG_OWNER_MASK >> PG_OWNER_SHIFT))
			problem("connection %d got lock id %u, which does not fit the owner bits",
				i + 1, hi[i].lock_owner);
		for (int j = 0; j < i; j++)
			if (hi[i].lock_owner && hi[i].lock_owner == hi[j].lock_owner)
				problem("connections %d and %d got the same lock id %u", j + 1, i + 1,
					hi[i].lock_owner);
	}
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	stop_timed();
out:
	finish();
}

/* ---- segments a client may only read ---- */

static int fd_reopen_rw(int fd)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = open(path, O_RDWR | O_CLOEXEC);
	return r < 0 ? -errno : r;
}

/* Map fd read-write and say how it went: the mapping, or NULL. */
static void *try_map_rw(struct atk *a, const char *name, int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	say(a->up, "MMAPW %s %d", name, p == MAP_FAILED ? errno : 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Everything a read-only client could do with what it was given, or with
 * what it makes of it. */
static int atk_private(struct atk *a)
{
	struct raw_file small;
	struct shm_volume_header *vh;
	const char *names[3] = { "header", "data", "state" };
	int fds[3] = { a->hi.header_fd, a->f.data_fd, a->f.state_fd }, err;
	size_t lens[3] = { sizeof(struct shm_volume_header), a->f.data_len, a->f.state_len };
	void *rw[3] = { NULL, NULL, NULL };

	err = raw_open(a->fd, "/small.txt", false, &small);
	if (err) {
		say(a->up, "FAIL open /small.txt: %s", strerror(-err));
		return 3;
	}
	say(a->up, "MODE header %d data %d state %d", fds[0] >= 0 ? fcntl(fds[0], F_GETFL) &
							 O_ACCMODE : -1,
	    a->f.data_mode, a->f.state_mode);
	for (int i = 0; i < 3; i++) {
		void *p = fds[i] >= 0 ? try_map_rw(a, names[i], fds[i], lens[i]) : NULL;
		int r = fds[i] >= 0 ? fd_reopen_rw(fds[i]) : -EBADF;

		say(a->up, "REOPEN %s %d", names[i], r < 0 ? -r : 0);
		if (!p && r >= 0) {
			p = mmap(NULL, lens[i], PROT_READ | PROT_WRITE, MAP_SHARED, r, 0);
			if (p == MAP_FAILED)
				p = NULL;
		}
		if (r >= 0)
			close(r);
		rw[i] = p;
	}
	if (rw[1]) {
		/* the file's bytes, as every client reads them */
		memset(rw[1], 0xEE, 2 * PAGE);
		say(a->up, "WROTE data");
	}
	if (rw[2]) {
		a->pages = shm_file_pages(rw[2]);
		dirty_bitmap_init(&a->b, rw[2], rw[2]);
		for (uint64_t i = 0; i < 2; i++) {
			struct shm_page *p = &a->pages[i];

			atomic_fetch_or(&p->buf_dirty, 0xff);
			atomic_store(&p->first_dirtied_ns, 1);
			atomic_fetch_or(&p->flags, PG_dirty | PG_write_ready);
			dirty_bitmap_set(&a->b, i);
			atomic_fetch_add(&((struct shm_file_header *)rw[2])->nr_dirty, 1);
		}
		say(a->up, "WROTE state");
	}
	if (rw[0]) {
		struct inode_sizes sz = { 1, 1, 1 };

		vh = rw[0];
		inode_slot_write(&vh->inodes[a->f.inode_slot], &sz);
		/* a seqcount left odd: readers of /small.txt's size spin */
		atomic_fetch_add(&vh->inodes[small.inode_slot].seq, 1);
		atomic_store(&vh->dirty_limit, 1);
		atomic_store(&vh->counters.dirty_pages, UINT64_MAX / 2);
		say(a->up, "WROTE header");
	}
	raw_file_unmap(&small);
	return 0;
}

static void segments_private(void **state)
{
	const char *v;
	int hm = -1, dm = -1, sm = -1, trunc;

	(void)state;
	if (!start((const char *const[]){ "--dirty-expire-ms", "100", NULL }))
		goto out;
	aplan.path = "/frag/a.bin";
	aplan.nobody = true;
	aplan.fn = atk_private;
	if (!attack())
		goto out;
	v = atk_value("MODE");
	if (!v || sscanf(v, "header %d data %d state %d", &hm, &dm, &sm) != 3)
		problem("the attacker did not report its fds' modes");
	if (hm != O_RDONLY || dm != O_RDONLY || sm != O_RDONLY)
		problem("a read-only client (uid %d) got fds opened %s/%s/%s (header, data, page "
			"state), want O_RDONLY each", NOBODY, hm == O_RDWR ? "O_RDWR" : "?",
			dm == O_RDWR ? "O_RDWR" : "?", sm == O_RDWR ? "O_RDWR" : "?");
	for (int i = 0; i < 3; i++) {
		const char *name = (const char *[]){ "header", "data", "state" }[i];
		char key[32];
		const char *m, *r;

		snprintf(key, sizeof(key), "MMAPW %s", name);
		m = atk_value(key);
		if (!m || atoi(m) == 0)
			problem("uid %d mapped the %s segment PROT_WRITE", NOBODY, name);
		snprintf(key, sizeof(key), "REOPEN %s", name);
		r = atk_value(key);
		if (!r || atoi(r) != EACCES)
			problem("uid %d reopening its %s fd O_RDWR via /proc/self/fd: %s, want "
				"EACCES", NOBODY, name, r && atoi(r) ? strerror(atoi(r)) : "success");
	}
	if (strstr(atk_said, "WROTE"))
		print_message("  the attacker wrote:%s%s%s\n",
			      strstr(atk_said, "WROTE data") ? " data" : "",
			      strstr(atk_said, "WROTE state") ? " page-state" : "",
			      strstr(atk_said, "WROTE header") ? " volume-header" : "");
	/* another client sees the true bytes of the file and of /small.txt,
	 * and a writer is not held by a forged dirty limit */
	plan.x = "/frag/a.bin";
	plan.x_read_only = true;
	plan.y = "/frag/c.bin";
	plan.y_len = 1 << 20;
	trunc = run_checker();
	status_answers("after the attack");
	attack_release();
	stop_timed();
	check_volume(trunc);
out:
	finish();
}

/* ---- a read-only daemon ---- */

/* Root: reopen the segments of a read-only open read-write (DAC does not
 * stop root) and forge a dirty page with bytes in it. */
static int atk_reopen_dirty(struct atk *a)
{
	int dfd = fd_reopen_rw(a->f.data_fd), sfd = fd_reopen_rw(a->f.state_fd);
	uint8_t *data = NULL;
	struct shm_file_header *h = NULL;

	if (dfd >= 0)
		data = mmap(NULL, a->f.data_len, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	if (sfd >= 0)
		h = mmap(NULL, a->f.state_len, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	if (dfd >= 0)
		close(dfd);
	if (sfd >= 0)
		close(sfd);
	if (!h || h == MAP_FAILED) {
		say(a->up, "INFO root could not make the page state writable (%s): nothing to "
			   "forge", sfd < 0 ? strerror(-sfd) : strerror(errno));
		return 0;
	}
	a->pages = shm_file_pages(h);
	dirty_bitmap_init(&a->b, h, h);
	if (data && data != MAP_FAILED)
		memset(data + PAGE, 0xEE, PAGE);
	for (uint64_t i = 1; i < 3; i++) {
		atomic_fetch_or(&a->pages[i].buf_dirty, 0xff);
		atomic_store(&a->pages[i].first_dirtied_ns, 1);
		atomic_fetch_or(&a->pages[i].flags, PG_dirty | PG_write_ready);
		dirty_bitmap_set(&a->b, i);
		atomic_fetch_add(&h->nr_dirty, 1);
	}
	atomic_fetch_or(&a->pages[300].flags, PG_dirty);
	dirty_bitmap_set(&a->b, 300);
	say(a->up, "INFO forged dirty pages 1, 2 (0xEE stored in 1) and 300");
	return 0;
}

static void read_only_forged_dirty(void **state)
{
	uint8_t *before = NULL, *after;
	size_t blen = 0, alen;
	char *out = NULL;
	int st;

	(void)state;
	before = testvol_read_whole(image, &blen);
	assert_non_null(before);
	if (!start((const char *const[]){ "--read-only", NULL }))
		goto out;
	aplan.path = "/big.bin";
	aplan.fn = atk_reopen_dirty;
	if (!attack())
		goto out;
	st = ntfsctl_timed(STEP_S, &out, "sync", (char *)NULL);
	if (st > 0)
		problem("ntfsctl sync on a --read-only daemon with a forged dirty page exited %d: "
			"%s", st, out ? out : "");
	free(out);
	daemon_alive("after ntfsctl sync");
	plan.x = NULL;
	run_checker();
	status_answers("after sync");
	attack_release();
	stop_timed();
	after = testvol_read_whole(image, &alen);
	if (!after || alen != blen || memcmp(before, after, blen))
		problem("a --read-only daemon changed its volume");
	free(after);
out:
	free(before);
	finish();
}

/* ---- system files ---- */

static const char *const sys_files[] = { "/$MFT",     "/$Boot",   "/$Bitmap", "/$LogFile",
					 "/$MFTMirr", "/$UpCase", "/$AttrDef" };
static const char *const extend_files[] = { "/$Extend/$ObjId", "/$Extend/$Quota",
					    "/$Extend/$Reparse" };

/* ntfscat shows MFT records with their update-sequence fixups applied,
 * ntfsd the bytes on the disk: with mst, the last two bytes of every
 * 512-byte sector are not compared. */
static bool same_but_fixups(const uint8_t *a, const uint8_t *b, size_t len, bool mst)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i] && !(mst && i % 512 >= 510))
			return false;
	return true;
}

static void system_files_refused(void **state)
{
	ntfsc *c;

	(void)state;
	if (!start(NULL))
		goto out;
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	for (size_t i = 0; i < sizeof(sys_files) / sizeof(sys_files[0]); i++) {
		const struct known *k = known_file(sys_files[i]);
		ntfsc_file *f = ntfsc_open(c, sys_files[i], O_RDWR);
		const char *msg;
		uint8_t *buf;

		if (f) {
			problem("a read-write open of %s succeeded", sys_files[i]);
			ntfsc_close(f);
		} else {
			int e = errno;

			msg = ntfsc_last_error_message(c);
			if (e != EPERM)
				problem("a read-write open of %s failed with %s, want EPERM",
					sys_files[i], strerror(e));
			else if (!msg || !strstr(msg, sys_files[i]))
				problem("the refusal of %s does not name it: \"%s\"", sys_files[i],
					msg ? msg : "");
		}
		f = ntfsc_open(c, sys_files[i], O_RDONLY);
		if (!f) {
			problem("a read-only open of %s failed: %s", sys_files[i], strerror(errno));
			continue;
		}
		buf = malloc(k->len + 1);
		if (ntfsc_pread(f, buf, k->len + 1, 0) != (ssize_t)k->len ||
		    !same_but_fixups(buf, (const uint8_t *)k->data, k->len,
				     !strcmp(sys_files[i], "/$MFT") || !strcmp(sys_files[i], "/$MFTMirr")))
			problem("%s read through ntfsd differs from ntfscat", sys_files[i]);
		free(buf);
		ntfsc_close(f);
	}
	for (size_t i = 0; i < sizeof(extend_files) / sizeof(extend_files[0]); i++) {
		ntfsc_file *f = ntfsc_open(c, extend_files[i], O_RDONLY);
		int ro = f ? 0 : errno;

		if (f)
			ntfsc_close(f);
		f = ntfsc_open(c, extend_files[i], O_RDWR);
		if (f) {
			problem("a read-write open of %s succeeded", extend_files[i]);
			ntfsc_close(f);
		} else if (errno != EPERM && !(ro == ENOENT && errno == ENOENT)) {
			/* no unnamed $DATA: refused either way */
			problem("a read-write open of %s failed with %s, want EPERM", extend_files[i],
				strerror(errno));
		}
	}
	ntfsc_disconnect(c);
	stop_timed();
out:
	finish();
}

/* Root: every system file's segments made writable however it can (a
 * read-write open, else a read-only one reopened), 0xEE stored and every
 * dirty bit forged. */
static int atk_system_files(struct atk *a)
{
	for (size_t i = 0; i < sizeof(sys_files) / sizeof(sys_files[0]); i++) {
		struct raw_file f;
		const char *how = "a read-write open";
		int err = raw_open(a->fd, sys_files[i], true, &f), dfd, sfd;
		uint64_t n;
		uint8_t *data;
		struct shm_file_header *h;
		struct shm_page *pages;
		struct dirty_bitmap b;

		if (err) {
			how = "a read-only open reopened read-write";
			err = raw_open(a->fd, sys_files[i], false, &f);
		}
		if (err) {
			say(a->up, "FAIL open %s: %s (%s)", sys_files[i], strerror(-err),
			    raw_last_message());
			return 3;
		}
		n = (atomic_load(&f.h->i_size) + PAGE - 1) / PAGE;
		if (n > 4)
			n = 4;
		raw_fault_in(a->fd, f.handle, 0, n, false);
		dfd = fd_reopen_rw(f.data_fd);
		sfd = fd_reopen_rw(f.state_fd);
		data = dfd >= 0 ? mmap(NULL, f.data_len, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0)
				: MAP_FAILED;
		h = sfd >= 0 ? mmap(NULL, f.state_len, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0)
			     : MAP_FAILED;
		if (dfd >= 0)
			close(dfd);
		if (sfd >= 0)
			close(sfd);
		if (data == MAP_FAILED || h == MAP_FAILED) {
			say(a->up, "INFO %s: root could not map it writable: nothing forged",
			    sys_files[i]);
			raw_file_unmap(&f);
			continue;
		}
		pages = shm_file_pages(h);
		dirty_bitmap_init(&b, h, h);
		memset(data, 0xEE, (size_t)n * PAGE);
		for (uint64_t p = 0; p < n; p++) {
			atomic_store(&pages[p].buf_uptodate, 0xffffffffu);
			atomic_store(&pages[p].buf_dirty, 0xffffffffu);
			atomic_store(&pages[p].first_dirtied_ns, 1);
			atomic_fetch_or(&pages[p].flags,
					PG_dirty | PG_uptodate | PG_write_ready | PG_buffers);
			dirty_bitmap_set(&b, p);
			atomic_fetch_add(&h->nr_dirty, 1);
		}
		say(a->up, "INFO %s: %llu pages forged dirty with 0xEE, through %s", sys_files[i],
		    (unsigned long long)n, how);
		munmap(data, f.data_len);
		munmap(h, f.state_len);
		raw_file_unmap(&f);
	}
	return 0;
}

static void system_files_never_written(void **state)
{
	uint8_t *before = NULL, *after;
	size_t blen = 0, alen;
	char *out = NULL;
	int st;

	(void)state;
	before = testvol_read_whole(image, &blen);
	assert_non_null(before);
	if (!start((const char *const[]){ "--dirty-expire-ms", "100", NULL }))
		goto out;
	aplan.fn = atk_system_files;
	if (!attack())
		goto out;
	sleep_ms(300);  /* background write-back passes over them */
	st = ntfsctl_timed(STEP_S, &out, "sync", (char *)NULL);
	if (st > 0)
		print_message("  ntfsctl sync exited %d: %s", st, out ? out : "");
	free(out);
	daemon_alive("after ntfsctl sync");
	attack_release();
	stop_timed();
	after = testvol_read_whole(image, &alen);
	if (!after || alen != blen) {
		problem("the image cannot be read after the stop");
	} else if (memcmp(before, after, blen)) {
		size_t at = 0;

		while (before[at] == after[at])
			at++;
		problem("forged dirty pages of system files reached the volume (first changed "
			"byte at 0x%zx)", at);
	}
	free(after);
out:
	free(before);
	finish();
}

/* ---- forged page state on a file the attacker may write ---- */

/* Start, attack X with fn, run the normal client and every check; y_len
 * bytes written to Y by the normal client. */
static void forge_case(const char *x, uint64_t x_trunc, size_t y_len, long idle_ms,
		       long idle_max_ms)
{
	int trunc;

	if (!start((const char *const[]){ "--dirty-expire-ms", "100", NULL }))
		return;
	aplan.path = x;
	aplan.write = true;
	if (!attack())
		return;
	sleep_ms(150);  /* background write-back meets the forgery */
	daemon_alive("after the forgery");
	plan.x = x;
	plan.x_trunc = x_trunc;
	plan.y = "/frag/c.bin";
	plan.y_len = y_len;
	trunc = run_checker();
	status_answers("after the normal client");
	idle_cpu(idle_ms, idle_max_ms, "forged state in place");
	attack_release();
	status_answers("after the attacker left");
	stop_timed();
	check_volume(trunc);
}

static int atk_nothing(struct atk *a)
{
	(void)a;
	return 0;
}

/* The harness itself: a writer that only dirtied a page the proper way
 * (prepare-write, its own lock) passes every check. */
static void control_benign_writer(void **state)
{
	(void)state;
	aplan.fn = atk_nothing;
	forge_case("/big.bin", 1 << 20, 64 << 10, 500, 150);
	finish();
}

#define FIELD(f) offsetof(struct shm_file_header, f), sizeof(((struct shm_file_header *)0)->f)

static void forge_field(size_t off, size_t size, const uint64_t *vals, int n)
{
	aplan.fn = atk_header_field;
	aplan.field_off = off;
	aplan.field_size = size;
	for (int i = 0; i < n; i++)
		aplan.vals[i] = vals[i];
	aplan.nvals = n;
	forge_case("/big.bin", 1 << 20, 64 << 10, 500, 150);
	finish();
}

static void forge_pages_offset(void **state)
{
	(void)state;
	forge_field(FIELD(pages_offset), (const uint64_t[]){ 1ull << 40, 8, 0 }, 3);
}

static void forge_segment_size(void **state)
{
	(void)state;
	forge_field(FIELD(segment_size), (const uint64_t[]){ 4096, 0, 1ull << 62 }, 3);
}

static void forge_buffer_size(void **state)
{
	(void)state;
	forge_field(FIELD(buffer_size), (const uint64_t[]){ 0, 0xffffffffu, 3 }, 3);
}

static void forge_buffers_per_page(void **state)
{
	(void)state;
	forge_field(FIELD(buffers_per_page), (const uint64_t[]){ 0, 0xffffffffu, 3 }, 3);
}

static void forge_nr_pages(void **state)
{
	(void)state;
	forge_field(FIELD(nr_pages), (const uint64_t[]){ 0, 1ull << 40, UINT64_MAX }, 3);
}

static void forge_l1_offset(void **state)
{
	(void)state;
	forge_field(FIELD(l1_offset), (const uint64_t[]){ 1ull << 40, 0, UINT64_MAX - 63 }, 3);
}

static void forge_l2_offset(void **state)
{
	(void)state;
	forge_field(FIELD(l2_offset), (const uint64_t[]){ 1ull << 40, 0, UINT64_MAX - 63 }, 3);
}

static void forge_identity(void **state)
{
	(void)state;
	aplan.fn = atk_identity;
	forge_case("/big.bin", 1 << 20, 64 << 10, 500, 150);
	finish();
}

/* nr_dirty = 2^63, rewritten every 20 ms: a writer of another file
 * writes 8 MiB, the daemon idles. */
static void forge_nr_dirty(void **state)
{
	(void)state;
	aplan.fn = atk_nr_dirty;
	aplan.persist = persist_nr_dirty;
	forge_case("/big.bin", 1 << 20, 8 << 20, 2000, 500);
	finish();
}

/* The bytes of X's last cluster past i_size (the attacker stored 0xEE
 * there in the cache) are on the disk as they were. */
static void slack_unchanged(const char *path)
{
	const struct known *k = known_file(path);
	struct placement *pl = calloc(1, sizeof(*pl));
	uint64_t csize = 4096, vcn = k->len / csize, off = k->len % csize;
	uint8_t *a = NULL, *b = NULL;
	size_t alen, blen;

	if (!pl || !off || !placement_of(image, path, 0, pl))
		goto out;
	for (int i = 0; i < pl->n; i++) {
		if ((uint64_t)pl->vcn[i] > vcn || (uint64_t)(pl->vcn[i] + pl->len[i]) <= vcn)
			continue;
		a = testvol_read_whole(pre_img, &alen);
		b = testvol_read_whole(image, &blen);
		if (a && b) {
			uint64_t at = (uint64_t)(pl->lcn[i] + ((int64_t)vcn - pl->vcn[i])) * csize;

			if (at + csize <= alen && at + csize <= blen &&
			    memcmp(a + at + off, b + at + off, csize - off))
				problem("%s: the bytes of its last cluster past i_size changed on the "
					"disk (%s)", path, b[at + off] == 0xEE ? "to the 0xEE the "
					"attacker stored in the cache past i_size" : "");
		}
		break;
	}
out:
	free(a);
	free(b);
	free(pl);
}

static void forge_dirty_past_isize(void **state)
{
	(void)state;
	aplan.fn = atk_past_isize;
	/* not truncated: its last cluster stays its own */
	forge_case("/big.bin", NO_TRUNC, 64 << 10, 500, 150);
	if (dmn.dir[0])
		slack_unchanged("/big.bin");
	finish();
}

static void forge_dirty_not_uptodate(void **state)
{
	(void)state;
	aplan.fn = atk_not_uptodate;
	forge_case("/big.bin", 1 << 20, 64 << 10, 500, 150);
	finish();
}

static void forge_dirty_hole(void **state)
{
	(void)state;
	aplan.fn = atk_hole;
	plan.alt_off = 100 * PAGE;
	plan.alt_len = PAGE;
	plan.alt_byte = 0xEE;
	forge_case("/sparse.bin", 9 << 20, 64 << 10, 500, 150);
	finish();
}

static void forge_lock_case(uint32_t owner)
{
	aplan.fn = atk_lock;
	aplan.lock_owner = owner;
	forge_case("/big.bin", 1 << 20, 64 << 10, 500, 150);
	if (dmn.dir[0] && !log_count("broken", NULL))
		problem("no line of the daemon's log says a forged lock was broken");
	finish();
}

static void forge_lock_daemon_owner(void **state)
{
	(void)state;
	forge_lock_case(NTFSD_LOCK_OWNER_DAEMON);
}

static void forge_lock_random_owner(void **state)
{
	(void)state;
	forge_lock_case(0);
}

static void forge_writeback(void **state)
{
	(void)state;
	aplan.fn = atk_writeback;
	forge_case("/big.bin", 1 << 20, 64 << 10, 500, 150);
	finish();
}

/* ---- real locks held too long, and by a client in a pid namespace ---- */

#define LOCKED_PAGE 400

/* Open /big.bin read-write, take the lock of LOCKED_PAGE (never read) with
 * our lock id and say so; 0 or an exit code. */
static int take_lock(int up, int *fdp, struct raw_file *f)
{
	struct raw_hello_info hi;
	int fd = raw_connect(dmn.socket, 10000), err;
	uint32_t id;

	if (fd < 0) {
		say(up, "FAIL connect: %s", strerror(-fd));
		return 2;
	}
	err = raw_hello(fd, "lock holder", &hi);
	if (!err)
		err = raw_open(fd, "/big.bin", true, f);
	if (err) {
		say(up, "FAIL hello or open: %s (%s)", strerror(-err), raw_last_message());
		return 2;
	}
	if (hi.header_fd >= 0)
		close(hi.header_fd);
	/* cached pages keep the inode, and so this segment, when we are gone */
	err = raw_fault_in(fd, f->handle, 0, 4, false);
	if (err) {
		say(up, "FAIL fault-in: %s", strerror(-err));
		return 2;
	}
	if (page_test(&f->pages[LOCKED_PAGE], PG_uptodate)) {
		say(up, "FAIL page %d is uptodate before anyone read it", LOCKED_PAGE);
		return 2;
	}
	id = raw_lock_id(&hi);
	/* a real lock: claimed in our lock table (the mapping stays) */
	if (raw_lock_claim(&hi, f->inode_slot, LOCKED_PAGE) < 0) {
		say(up, "FAIL no lock table entry");
		return 2;
	}
	lock_page(&f->pages[LOCKED_PAGE], id);
	say(up, "LOCKED %d %u %s", (int)getpid(), id, hi.lock_owner ? "assigned" : "pid");
	*fdp = fd;
	return 0;
}

static int holder_main(int k, int down, int up)
{
	struct raw_file f;
	int fd, rc, err;

	(void)k;
	(void)down;
	rc = take_lock(up, &fd, &f);
	if (rc)
		return rc;
	raise(SIGSTOP);
	/* continued: the daemon should have hung up on us */
	err = raw_fault_in(fd, f.handle, 0, 1, false);
	say(up, "AFTER %d", -err);
	return err ? 0 : 1;
}

/* A reader's fault-in of LOCKED_PAGE, in a child: its time in ms, or -1
 * when it took longer than limit_s (it is killed). */
static long timed_fault_in(int limit_s)
{
	const struct known *k = known_file("/big.bin");
	int p[2];
	pid_t pid;
	long ms = -1;
	int64_t t0 = now_ms();
	char line[256];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		ntfsc *c = ntfsc_connect(dmn.socket);
		ntfsc_file *f = c ? ntfsc_open(c, "/big.bin", O_RDONLY) : NULL;
		uint8_t buf[PAGE];

		if (!f)
			_exit(2);
		if (ntfsc_pread(f, buf, PAGE, (off_t)LOCKED_PAGE * PAGE) != PAGE ||
		    memcmp(buf, k->data + (size_t)LOCKED_PAGE * PAGE, PAGE))
			say(p[1], "BAD");
		else
			say(p[1], "OK");
		_exit(0);
	}
	close(p[1]);
	chk.pid[0] = pid;       /* killed by the teardown if need be */
	switch (read_line(p[0], line, sizeof(line), limit_s * 1000L)) {
	case 1:
		ms = (long)(now_ms() - t0);
		if (strcmp(line, "OK"))
			problem("the reader of the locked page read the wrong bytes");
		break;
	case 0:
		problem("a reader's fault-in of a page locked by a stopped or dead client did not "
			"complete within %d s", limit_s);
		break;
	default:
		problem("the reader of the locked page failed");
	}
	close(p[0]);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	chk.pid[0] = 0;
	return ms;
}

/* Is pid among the daemon's clients (ntfsctl status --json)? */
static bool is_client(pid_t pid)
{
	char *out = NULL, key[32];
	bool found;

	if (ntfsctl_timed(STEP_S, &out, "--json", "status", (char *)NULL) < 0)
		return false;
	snprintf(key, sizeof(key), "\"pid\": %d", (int)pid);
	found = out && (strstr(out, key) != NULL);
	if (!found) {
		snprintf(key, sizeof(key), "\"pid\":%d", (int)pid);
		found = out && strstr(out, key);
	}
	free(out);
	return found;
}

static void lock_held_too_long(void **state)
{
	char line[256];
	int holder = 0, st, r;
	long ms;

	(void)state;
	if (!start((const char *const[]){ "--max-lock-hold-ms", "500", NULL }))
		goto out;
	kids_init(&atk, 1);
	kids_spawn(&atk, holder_main);
	r = read_line(atk.up[0], line, sizeof(line), 10000);
	if (r <= 0 || sscanf(line, "LOCKED %d", &holder) != 1) {
		problem("the lock holder did not take its lock: %s", r > 0 ? line : "no answer");
		goto out;
	}
	print_message("  holder pid %d: %s\n", holder, line);
	if (strstr(line, " pid"))
		problem("the daemon assigned the holder no lock id (HelloReply.lock_owner)");
	/* stopped, holding the lock and its connection */
	if (waitpid(atk.pid[0], &st, WUNTRACED) != atk.pid[0] || !WIFSTOPPED(st)) {
		problem("the lock holder did not stop");
		goto out;
	}
	ms = timed_fault_in(5);
	if (ms >= 0)
		print_message("  the reader got the page in %ld ms\n", ms);
	if (!log_warns_pid(holder, "disconnect"))
		problem("no warning in the log names the holder (pid %d) and \"disconnect\"",
			holder);
	if (is_client(holder))
		problem("the holder's connection is still open (ntfsctl status lists pid %d)",
			holder);
	kill(atk.pid[0], SIGCONT);
	r = read_line(atk.up[0], line, sizeof(line), 10000);
	st = kid_reap(&atk, 0, 5000);
	if (r <= 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		problem("the holder's connection still answered after it held the lock too long "
			"(%s)", r > 0 ? line : "no answer");
	kids_close_fds(&atk);
	stop_timed();
out:
	finish();
}

/*
 * A writer forges page locks in another writer's name: the victim's lock
 * id, read off the flags of a page it holds, written into pages it is
 * about to lock and into pages the daemon's write-back must lock.  With
 * --max-lock-hold-ms 1000 and 4 s of forging, a daemon that took such a
 * lock for the victim's would disconnect it several times over.  The
 * victim's lock table (shm_layout.h) has no entry for a forged page, so
 * the daemon breaks each one it meets at once, and the victim, which meets
 * one in its own name that no thread of it holds, asks for it to be
 * broken.  The victim keeps its connection, every write and fsync
 * succeeds, and ntfscat reads its last bytes.
 */
struct framer {
	struct raw_file f;
	uint32_t own_id, victim_id;
	uint64_t first, npages;         /* the pages forged */
	_Atomic bool stop;
	_Atomic uint64_t forged;
};

static void *framer_thread(void *arg)
{
	struct framer *fr = arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	int64_t end = now_ms() + 10000;

	/* learn the victim's id from a page it holds */
	while (!fr->victim_id && !atomic_load(&fr->stop) && now_ms() < end)
		for (uint64_t i = fr->first; i < fr->first + fr->npages; i++) {
			uint32_t f = atomic_load(&fr->f.pages[i].flags);
			uint32_t o = page_lock_owner_of(f);

			if (o && o != fr->own_id && o != NTFSD_LOCK_OWNER_DAEMON) {
				fr->victim_id = o;
				break;
			}
		}
	while (fr->victim_id && !atomic_load(&fr->stop)) {
		struct shm_page *p;
		uint32_t f;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p = &fr->f.pages[fr->first + rng % fr->npages];
		f = atomic_load(&p->flags);
		if (!(f & PG_locked) &&
		    atomic_compare_exchange_strong(&p->flags, &f,
						   f | PG_locked | (fr->victim_id << PG_OWNER_SHIFT)))
			atomic_fetch_add(&fr->forged, 1);
		sleep_ms(1);
	}
	return NULL;
}

static void lock_forged_in_a_writers_name(void **state)
{
	enum { SPAN = 16 * 4096 };
	const struct known *k = known_file("/frag/b.bin");
	struct raw_hello_info hi;
	struct framer fr = { .first = 0, .npages = SPAN / 4096 };
	static uint8_t buf[SPAN];
	unsigned writes = 0, syncs = 0;
	pthread_t t;
	int64_t end;
	ntfsc_file *f = NULL;
	ntfsc *c = NULL;
	int rfd = -1;
	char *got = NULL;
	size_t glen = 0;

	(void)state;
	if (k->len < SPAN)
		fail_msg("/frag/b.bin is shorter than %d bytes", SPAN);
	if (!start((const char *const[]){ "--max-lock-hold-ms", "1000", NULL }))
		goto out;
	c = ntfsc_connect(dmn.socket);
	f = c ? ntfsc_open(c, "/frag/b.bin", O_RDWR) : NULL;
	rfd = raw_connect(dmn.socket, 10000);
	if (!f || rfd < 0 || raw_hello(rfd, "framer", &hi) ||
	    raw_open(rfd, "/frag/b.bin", true, &fr.f)) {
		problem("cannot set up the victim and the framer: %s", strerror(errno));
		goto out;
	}
	fr.own_id = raw_lock_id(&hi);
	assert_int_equal(pthread_create(&t, NULL, framer_thread, &fr), 0);
	end = now_ms() + 4000;
	while (now_ms() < end || !fr.victim_id) {
		memset(buf, (int)(writes % 251) + 1, sizeof(buf));
		if (ntfsc_pwrite(f, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
			problem("the victim's write %u failed: %s (%s)", writes, strerror(errno),
				ntfsc_last_error_message(c));
			break;
		}
		writes++;
		if (writes % 8 == 0) {
			if (ntfsc_fsync(f)) {
				problem("the victim's fsync %u failed: %s (%s)", syncs,
					strerror(errno), ntfsc_last_error_message(c));
				break;
			}
			syncs++;
		}
		if (now_ms() > end + 10000) {
			problem("the framer never saw the victim hold a lock");
			break;
		}
	}
	atomic_store(&fr.stop, true);
	pthread_join(t, NULL);
	print_message("  victim lock id %u: %u writes, %u fsyncs, %llu locks forged in its name\n",
		      fr.victim_id, writes, syncs, (unsigned long long)atomic_load(&fr.forged));
	/* a forged page stays locked until someone meets it: few but
	 * every one is in the way of the victim or of write-back */
	if (atomic_load(&fr.forged) < 10 || writes < 5)
		problem("only %llu locks were forged, %u writes: the test proves little",
			(unsigned long long)atomic_load(&fr.forged), writes);
	if (!nproblems && ntfsc_fsync(f))
		problem("the last fsync failed: %s", strerror(errno));
	if (log_count("past max-lock-hold-ms", NULL))
		problem("the daemon disconnected a client for a lock forged in its name");
	if (!log_count("does not hold it", NULL))
		problem("the log does not say a lock forged in a writer's name was broken");
	ntfsc_close(f);
	f = NULL;
	ntfsc_disconnect(c);
	c = NULL;
	raw_file_unmap(&fr.f);
	raw_hello_info_free(&hi);
	close(rfd);
	rfd = -1;
	if (stop_timed() != 0)
		problem("ntfsd did not stop cleanly");
	if (oracle_cat(image, "/frag/b.bin", NULL, &got, &glen) || glen != k->len)
		problem("ntfscat /frag/b.bin: %s", oracle_last_stderr());
	else
		for (size_t i = 0; i < SPAN; i++)
			if ((uint8_t)got[i] != (uint8_t)(((writes - 1) % 251) + 1)) {
				problem("ntfscat /frag/b.bin: byte %zu is not the victim's last", i);
				break;
			}
	free(got);
out:
	if (f)
		ntfsc_close(f);
	if (c)
		ntfsc_disconnect(c);
	if (rfd >= 0)
		close(rfd);
	finish();
}

/* The middle child: a new pid namespace; its child (pid 1 there) takes the
 * lock; says the grandchild's pid as we see it and waits for it. */
static int pidns_main(int k, int down, int up)
{
	pid_t pid;
	int st;

	(void)k;
	if (unshare(CLONE_NEWPID)) {
		say(up, "FAIL unshare(CLONE_NEWPID): %s", strerror(errno));
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		say(up, "FAIL fork: %s", strerror(errno));
		return 2;
	}
	if (pid == 0) {
		struct raw_file f;
		int fd, rc;

		if (getpid() != 1) {
			say(up, "FAIL not pid 1 in the new namespace but %d", (int)getpid());
			_exit(2);
		}
		rc = take_lock(up, &fd, &f);
		if (rc)
			_exit(rc);
		for (;;)
			pause();
	}
	say(up, "GRANDCHILD %d", (int)pid);
	(void)down;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return 0;
}

static void lock_holder_in_pid_namespace(void **state)
{
	char line[256];
	int gc = 0, id = 0, r;
	bool locked = false;
	long ms;

	(void)state;
	if (!start(NULL))
		goto out;
	kids_init(&atk, 1);
	kids_spawn(&atk, pidns_main);
	while (!(gc && locked)) {
		r = read_line(atk.up[0], line, sizeof(line), 10000);
		if (r <= 0 || !strncmp(line, "FAIL", 4)) {
			problem("the pid-namespace lock holder failed: %s", r > 0 ? line : "no answer");
			goto out;
		}
		if (sscanf(line, "GRANDCHILD %d", &gc) == 1)
			continue;
		if (sscanf(line, "LOCKED %*d %d", &id) == 1) {
			locked = true;
			if (strstr(line, " pid"))
				problem("the daemon assigned no lock id (HelloReply.lock_owner): the "
					"holder locks as pid %d, its pid in its namespace", id);
			print_message("  pid 1 of its namespace (pid %d here) took the lock with id "
				      "%d\n", gc, id);
		}
	}
	kill(gc, SIGKILL);
	ms = timed_fault_in(2);
	if (ms >= 0)
		print_message("  the reader got the page in %ld ms\n", ms);
	if (kid_reap(&atk, 0, 5000) < 0)
		problem("the pid-namespace child did not exit");
	kids_close_fds(&atk);
	stop_timed();
out:
	finish();
}

/* ---- per-uid limits ---- */

#define UID_HANDLES 20
#define UID_CONNS 4

static int uid_main(int k, int down, int up)
{
	ntfsc *c[UID_CONNS];
	ntfsc_file *f[UID_HANDLES + 8];
	int n = 0, fd, err, i;
	struct raw_hello_info hi;
	char b;

	(void)k;
	if (!become_nobody()) {
		say(up, "FAIL cannot become uid %d", NOBODY);
		return 2;
	}
	for (i = 0; i < UID_CONNS; i++) {
		c[i] = ntfsc_connect(dmn.socket);
		if (!c[i]) {
			say(up, "FAIL connection %d of %d refused: %s", i + 1, UID_CONNS,
			    strerror(errno));
			return 2;
		}
	}
	for (n = 0; n < UID_HANDLES + 8; n++) {
		f[n] = ntfsc_open(c[n % UID_CONNS], "/small.txt", O_RDONLY);
		if (!f[n]) {
			say(up, "OPENS %d %d %s", n, errno,
			    ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL) : "");
			break;
		}
	}
	if (n == UID_HANDLES + 8)
		say(up, "OPENS %d 0 all", n);
	/* one connection more than the limit */
	fd = raw_connect(dmn.socket, 3000);
	err = fd < 0 ? fd : raw_hello(fd, "one too many", &hi);
	if (!err) {
		/* answered hello: is it closed right after? */
		Ntfsd__Request rq = NTFSD__REQUEST__INIT;
		Ntfsd__VolumeStatusRequest vs = NTFSD__VOLUME_STATUS_REQUEST__INIT;
		Ntfsd__Reply *r;

		if (hi.header_fd >= 0)
			close(hi.header_fd);
		sleep_ms(200);
		rq.body_case = NTFSD__REQUEST__BODY_VOLUME_STATUS;
		rq.volume_status = &vs;
		r = raw_call(fd, &rq, NULL, 0, NULL);
		if (r && !r->error)
			say(up, "EXTRA served");
		else
			say(up, "EXTRA %d", r ? r->error : errno);
		if (r)
			ntfsd__reply__free_unpacked(r, NULL);
	} else {
		say(up, "EXTRA %d", -err);
	}
	if (fd >= 0)
		close(fd);
	say(up, "READY");
	if (read(down, &b, 1) < 0) {
		/* released either way */
	}
	/* a close makes room for a handle, a disconnect for a connection */
	if (n > 0 && n < UID_HANDLES + 8) {
		ntfsc_close(f[0]);
		f[0] = ntfsc_open(c[0], "/small.txt", O_RDONLY);
		say(up, "REOPEN %d", f[0] ? 0 : errno);
	}
	ntfsc_disconnect(c[UID_CONNS - 1]);
	/* the daemon sees the hang-up when it sees it: give it 2 s */
	for (i = 0; i < 20; i++) {
		c[UID_CONNS - 1] = ntfsc_connect(dmn.socket);
		if (c[UID_CONNS - 1])
			break;
		sleep_ms(100);
	}
	say(up, "RECONNECT %d", c[UID_CONNS - 1] ? 0 : errno);
	for (i = 0; i < UID_CONNS; i++)
		if (c[i])
			ntfsc_disconnect(c[i]);
	say(up, "DONE");
	return 0;
}

static void uid_limits(void **state)
{
	char line[1100];
	int opened = -1, err = -1, extra = -1, r, reopen = -1, reconnect = -1;
	ntfsc *c;
	static const char *const files[] = { "/small.txt", "/big.bin", "/frag/a.bin", "/empty",
					     "/comp/text.txt" };

	(void)state;
	if (!start((const char *const[]){ "--max-uid-handles", "20", "--max-uid-conns", "4",
					   NULL }))
		goto out;
	kids_init(&atk, 1);
	kids_spawn(&atk, uid_main);
	for (;;) {
		r = read_line(atk.up[0], line, sizeof(line), 20000);
		if (r <= 0) {
			problem("the uid %d client %s", NOBODY, r ? "died" : "hung");
			goto out;
		}
		if (!strncmp(line, "FAIL ", 5)) {
			problem("uid %d: %s", NOBODY, line + 5);
			goto out;
		}
		if (sscanf(line, "OPENS %d %d", &opened, &err) == 2)
			print_message("  uid %d: %s\n", NOBODY, line);
		if (!strncmp(line, "EXTRA ", 6)) {
			extra = strcmp(line + 6, "served") ? atoi(line + 6) : 0;
			print_message("  uid %d: %s\n", NOBODY, line);
		}
		if (!strcmp(line, "READY"))
			break;
	}
	if (opened != UID_HANDLES || err != EMFILE)
		problem("uid %d opened %d handles over %d connections, the next one %s; want %d "
			"and EMFILE", NOBODY, opened, UID_CONNS, err ? strerror(err) : "too",
			UID_HANDLES);
	if (extra == 0)
		problem("uid %d's connection %d (over --max-uid-conns %d) was served", NOBODY,
			UID_CONNS + 1, UID_CONNS);
	if (!log_count("max-uid-conns", NULL))
		problem("no log line gives the reason (max-uid-conns) for the connection closed");
	/* meanwhile root opens files */
	c = ntfsc_connect(dmn.socket);
	if (!c) {
		problem("root cannot connect while uid %d is at its limits: %s", NOBODY,
			strerror(errno));
	} else {
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			ntfsc_file *f = ntfsc_open(c, files[i], O_RDONLY);

			if (!f)
				problem("root cannot open %s while uid %d is at its limit: %s",
					files[i], NOBODY, strerror(errno));
			else
				ntfsc_close(f);
		}
		ntfsc_disconnect(c);
	}
	if (write(atk.down[0], "q", 1) != 1)
		problem("the uid %d client went away", NOBODY);
	while ((r = read_line(atk.up[0], line, sizeof(line), 20000)) > 0 && strcmp(line, "DONE")) {
		sscanf(line, "REOPEN %d", &reopen);
		sscanf(line, "RECONNECT %d", &reconnect);
	}
	if (reopen != 0)
		problem("after closing a handle uid %d could not open one: %s", NOBODY,
			reopen > 0 ? strerror(reopen) : "no answer");
	if (reconnect != 0)
		problem("after closing a connection uid %d could not connect: %s", NOBODY,
			reconnect > 0 ? strerror(reconnect) : "no answer");
	kid_reap(&atk, 0, 5000);
	kids_close_fds(&atk);
	stop_timed();
out:
	finish();
}

/* ---- random page state ---- */

#define FZ_HOSTILE 0
#define FZ_Y 1
#define FZ_X 2
#define FZ_Y_SPAN (384u << 10)

static int64_t fz_end_ms;

static bool fz_released(int down)
{
	struct pollfd p = { .fd = down, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

static int fz_hostile(int down, int up)
{
	struct raw_hello_info hi;
	struct raw_file f;
	uint64_t rng = mix_seed(run_seed, 1), writes = 0;
	int fd = raw_connect(dmn.socket, 10000);
	uint8_t *h;
	size_t pages_off, bitmap_off, used = 1024;

	if (fd < 0 || raw_hello(fd, "fuzzer", &hi) || raw_open(fd, "/big.bin", true, &f)) {
		say(up, "FAIL the fuzzer cannot open /big.bin");
		return 2;
	}
	raw_fault_in(fd, f.handle, 0, 64, false);
	h = (uint8_t *)f.h;
	pages_off = f.h->pages_offset;
	bitmap_off = f.h->l1_offset;
	if (used > f.nr_pages)
		used = (size_t)f.nr_pages;
	say(up, "READY");
	while (!fz_released(down)) {
		uint64_t r = xorshift(&rng), v = xorshift(&rng);
		unsigned kind = r % 100, len = 1 + (unsigned)((r >> 8) % 8);
		size_t off;

		if (kind < 20)                  /* the header */
			off = (size_t)((r >> 16) % sizeof(struct shm_file_header));
		else if (kind < 35)             /* the bitmaps */
			off = bitmap_off + (size_t)((r >> 16) % (pages_off - bitmap_off));
		else if (kind < 60)             /* flags words */
			off = pages_off + (size_t)((r >> 16) % used) * sizeof(struct shm_page);
		else                            /* anywhere in a descriptor */
			off = pages_off + (size_t)((r >> 16) % (used * sizeof(struct shm_page)));
		if (off + len > f.state_len)
			continue;
		for (unsigned i = 0; i < len; i++)
			((volatile uint8_t *)h)[off + i] = (uint8_t)(v >> (8 * i));
		if (++writes % 16 == 0)
			sleep_ms(1);
		if (writes % 512 == 0)  /* and talk to the daemon now and then */
			raw_fault_in(fd, f.handle, xorshift(&rng) % 800, 4, false);
	}
	say(up, "DONE %llu writes", (unsigned long long)writes);
	return 0;
}

/* Y: random writes, reads and syncs against a model. */
static int fz_y(int down, int up)
{
	const struct known *k = known_file("/frag/b.bin");
	uint64_t rng = mix_seed(run_seed, 2), ops = 0;
	size_t len = k->len, cap = FZ_Y_SPAN + (64u << 10);
	uint8_t *model = calloc(1, cap), *buf = malloc(cap);
	ntfsc *c = ntfsc_connect(dmn.socket);
	ntfsc_file *f = c ? ntfsc_open(c, "/frag/b.bin", O_RDWR) : NULL;
	FILE *mf;

	if (!f || !model || !buf) {
		say(up, "FAIL Y: cannot open /frag/b.bin: %s", strerror(errno));
		return 2;
	}
	memcpy(model, k->data, len);
	say(up, "READY");
	while (!fz_released(down)) {
		uint64_t r = xorshift(&rng);
		size_t off = (size_t)(r % FZ_Y_SPAN), n = 1 + (size_t)((r >> 24) % 32768);
		unsigned op = (unsigned)((r >> 48) % 10);
		ssize_t got;

		alarm(STEP_S * 2);      /* a hung call kills us: the parent sees it */
		if (op < 6) {
			pattern_fill(buf, n, mix_seed(run_seed, 1000 + ops), off);
			got = ntfsc_pwrite(f, buf, n, (off_t)off);
			if (got != (ssize_t)n) {
				say(up, "FAIL Y: pwrite %zu at %zu: %zd (%s)", n, off, got,
				    strerror(errno));
				return 1;
			}
			memcpy(model + off, buf, n);
			if (off + n > len)
				len = off + n;
		} else if (op < 9) {
			got = ntfsc_pread(f, buf, n, (off_t)off);
			size_t want = off >= len ? 0 : (len - off < n ? len - off : n);

			if (got != (ssize_t)want || memcmp(buf, model + off, want)) {
				say(up, "FAIL Y: pread %zu at %zu: %zd bytes, want %zu%s", n, off,
				    got, want, got == (ssize_t)want ? " (different bytes)" : "");
				return 1;
			}
		} else if (ntfsc_fsync(f)) {
			say(up, "FAIL Y: fsync: %s", strerror(errno));
			return 1;
		}
		alarm(0);
		ops++;
	}
	alarm(STEP_S * 2);
	if (ntfsc_fsync(f)) {
		say(up, "FAIL Y: the last fsync: %s", strerror(errno));
		return 1;
	}
	alarm(0);
	mf = fopen(model_path, "w");
	if (!mf || fwrite(model, 1, len, mf) != len || fclose(mf)) {
		say(up, "FAIL Y: cannot write the model");
		return 1;
	}
	ntfsc_close(f);
	ntfsc_disconnect(c);
	say(up, "DONE %llu operations, %zu bytes", (unsigned long long)ops, len);
	return 0;
}

/* X: reads, writes and syncs on the fuzzed file; any result but a hang. */
static int fz_x(int down, int up)
{
	uint64_t rng = mix_seed(run_seed, 3), ops = 0, refused = 0, opens = 0;
	uint8_t *buf = malloc(65536);
	ntfsc *c = ntfsc_connect(dmn.socket);
	ntfsc_file *f = NULL;

	if (!c || !buf) {
		say(up, "FAIL X: cannot connect: %s", strerror(errno));
		return 2;
	}
	say(up, "READY");
	while (!fz_released(down)) {
		uint64_t r = xorshift(&rng);
		size_t off = (size_t)(r % (3u << 20)), n = 1 + (size_t)((r >> 24) % 65536);
		unsigned op = (unsigned)((r >> 48) % 10);
		ssize_t got;

		alarm(STEP_S * 3);      /* forged locks may have to be broken more than once */
		if (!f) {
			f = ntfsc_open(c, "/big.bin", O_RDWR);
			opens++;
			if (!f) {
				refused++;
				alarm(0);
				if (errno == ECONNRESET || errno == EPIPE) {
					say(up, "FAIL X: the daemon hung up: %s", strerror(errno));
					return 1;
				}
				sleep_ms(20);
				continue;
			}
		}
		if (op < 5) {
			got = ntfsc_pread(f, buf, n, (off_t)off);
		} else if (op < 8) {
			pattern_fill(buf, n, r, off);
			got = ntfsc_pwrite(f, buf, n, (off_t)off);
		} else if (op < 9) {
			got = ntfsc_fsync(f);
		} else {
			ntfsc_close(f);
			f = NULL;
			got = 0;
		}
		if (got < 0)
			refused++;
		alarm(0);
		ops++;
	}
	if (f)
		ntfsc_close(f);
	ntfsc_disconnect(c);
	say(up, "DONE %llu operations (%llu refused, %llu opens)", (unsigned long long)ops,
	    (unsigned long long)refused, (unsigned long long)opens);
	return 0;
}

static int fz_main(int k, int down, int up)
{
	switch (k) {
	case FZ_HOSTILE:
		return fz_hostile(down, up);
	case FZ_Y:
		return fz_y(down, up);
	default:
		return fz_x(down, up);
	}
}

static const char *const fz_names[] = { "the fuzzer", "the client of /frag/b.bin",
					"the client of /big.bin" };

/* Read what the fuzz children say until each said `until` (READY or DONE);
 * false when one failed or fell silent for timeout_s. */
static bool fz_collect(const char *until, int timeout_s, void (*tick)(void))
{
	bool done[3] = { false, false, false };
	int left = 3;
	int64_t end = now_ms() + timeout_s * 1000L;
	char line[1100];

	while (left) {
		for (int k = 0; k < 3; k++) {
			int r;

			if (done[k])
				continue;
			r = read_line(atk.up[k], line, sizeof(line), 100);
			if (r < 0) {
				int st = kid_reap(&atk, k, 1000);

				problem("%s died (wait status 0x%x%s)", fz_names[k], st,
					WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM
						? ": a call did not return in time" : "");
				return false;
			}
			if (r == 0)
				continue;
			if (!strncmp(line, "FAIL ", 5)) {
				problem("%s: %s", fz_names[k], line + 5);
				return false;
			}
			if (!strncmp(line, until, strlen(until))) {
				if (strcmp(until, "READY"))
					print_message("  %s: %s\n", fz_names[k], line);
				done[k] = true;
				left--;
			}
		}
		if (tick)
			tick();
		if (now_ms() > end) {
			problem("the fuzz clients did not say %s within %d s", until, timeout_s);
			return false;
		}
	}
	return true;
}

static int64_t fz_next_check;

static void fz_tick(void)
{
	if (now_ms() < fz_next_check)
		return;
	fz_next_check = now_ms() + 1000;
	if (daemon_alive("while fuzzing"))
		status_answers("while fuzzing");
}

static void fuzz_page_state(void **state)
{
	const char *longrun = getenv("NTFSD_TEST_LONG");
	int seconds = longrun && !strcmp(longrun, "1") ? 120 : 20;
	uint8_t *model;
	size_t mlen;
	char *got = NULL, *out = NULL;
	size_t glen;
	int st;

	(void)state;
	print_message("  fuzzing for %d s, NTFSD_TEST_SEED=%llu\n", seconds,
		      (unsigned long long)run_seed);
	alarm((unsigned)seconds + 180);
	if (!start((const char *const[]){ "--dirty-expire-ms", "100", NULL }))
		goto out;
	kids_init(&atk, 3);
	kids_spawn(&atk, fz_main);
	if (!fz_collect("READY", 20, NULL))
		goto out;
	fz_end_ms = now_ms() + seconds * 1000L;
	while (now_ms() < fz_end_ms && !nproblems) {
		bool ok = true;

		for (int k = 0; k < 3 && ok; k++) {
			char line[1100];
			int r = read_line(atk.up[k], line, sizeof(line), 50);

			if (r < 0) {
				int s = kid_reap(&atk, k, 1000);

				problem("%s died while fuzzing (wait status 0x%x%s)", fz_names[k], s,
					WIFSIGNALED(s) && WTERMSIG(s) == SIGALRM
						? ": a call did not return in time (20 s for the client "
						  "of /frag/b.bin, 30 s for that of /big.bin)" : "");
				ok = false;
			} else if (r > 0 && !strncmp(line, "FAIL ", 5)) {
				problem("%s: %s", fz_names[k], line + 5);
				ok = false;
			}
		}
		fz_tick();
	}
	for (int k = 0; k < 3; k++)
		if (atk.pid[k] > 0 && write(atk.down[k], "q", 1) != 1)
			problem("%s went away", fz_names[k]);
	if (!nproblems && !fz_collect("DONE", 40, NULL))
		goto out;
	for (int k = 0; k < 3; k++)
		if (atk.pid[k] > 0 && ((st = kid_reap(&atk, k, 5000)) < 0 || !WIFEXITED(st) ||
				       WEXITSTATUS(st)))
			problem("%s exited with wait status 0x%x", fz_names[k], st);
	kids_close_fds(&atk);
	if (!daemon_alive("after fuzzing"))
		goto out;
	st = ntfsctl_timed(STEP_S * 3, &out, "sync", (char *)NULL);
	if (st > 0)
		print_message("  ntfsctl sync after fuzzing exited %d: %s", st, out ? out : "");
	free(out);
	idle_cpu(1000, 250, "after fuzzing");
	stop_timed();
	/* Y exactly as the model, the rest as before */
	model = testvol_read_whole(model_path, &mlen);
	if (!model) {
		problem("no model of /frag/b.bin was written");
	} else if (oracle_cat(image, "/frag/b.bin", NULL, &got, &glen)) {
		problem("ntfscat /frag/b.bin failed: %s", oracle_last_stderr());
	} else if (glen != mlen || memcmp(got, model, mlen)) {
		size_t at = 0;

		while (at < glen && at < mlen && got[at] == (char)model[at])
			at++;
		problem("/frag/b.bin on the volume differs from what its client wrote (%zu bytes, "
			"want %zu, first difference at %zu)", glen, mlen, at);
	}
	free(got);
	free(model);
	plan.x = NULL;
	plan.y = NULL;
	{
		const char *const mine[] = { "/big.bin", "/frag/b.bin" };
		const char *argv[] = { "ntfsfix", "-n", image, NULL };

		for (size_t i = 0; i < sizeof(after_files) / sizeof(after_files[0]); i++) {
			const struct known *k = known_file(after_files[i]);

			if (!strcmp(k->path, "/big.bin"))
				continue;
			if (oracle_cat(image, k->path, NULL, &got, &glen) || glen != k->len ||
			    memcmp(got, k->data, glen))
				problem("%s changed on the volume", k->path);
			free(got);
			got = NULL;
		}
		out = NULL;
		if (oracle_run(argv, &out, NULL, &st) || st || !strstr(out, "processed successfully") ||
		    strstr(out, "FAILED") || strstr(out, "nconsisten"))
			problem("ntfsfix -n: exit %d: %s %s", st, out ? out : "",
				oracle_last_stderr());
		free(out);
		unchanged_outside(mine, 2);
	}
out:
	finish();
}

/* ---- main ---- */

static int group_setup(void **state)
{
	(void)state;
	snprintf(src_img, sizeof(src_img), "%s/vol4k.img", fixture_dir);
	for (size_t i = 0; i < NKNOWN; i++)
		if (oracle_cat(src_img, known[i].path, known[i].stream, &known[i].data,
			       &known[i].len)) {
			fprintf(stderr, "ntfscat %s %s: %s\n", src_img, known[i].path,
				oracle_last_stderr());
			return -1;
		}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < NKNOWN; i++)
		free(known[i].data);
	return 0;
}

int main(void)
{
	const char *seed = getenv("NTFSD_TEST_SEED");
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(help_documents_options),
		T(lock_ids_assigned),
		T(segments_private),
		T(read_only_forged_dirty),
		T(system_files_refused),
		T(system_files_never_written),
		T(control_benign_writer),
		T(forge_pages_offset),
		T(forge_segment_size),
		T(forge_buffer_size),
		T(forge_buffers_per_page),
		T(forge_nr_pages),
		T(forge_l1_offset),
		T(forge_l2_offset),
		T(forge_identity),
		T(forge_nr_dirty),
		T(forge_dirty_past_isize),
		T(forge_dirty_not_uptodate),
		T(forge_dirty_hole),
		T(forge_lock_daemon_owner),
		T(forge_lock_random_owner),
		T(forge_writeback),
		T(lock_held_too_long),
		T(lock_forged_in_a_writers_name),
		T(lock_holder_in_pid_namespace),
		T(uid_limits),
		T(fuzz_page_state),
#undef T
	};

	const char *filter = getenv("NTFSD_TEST_FILTER");

	if (!daemon_test_env(&ntfsd_bin, &ntfsctl_bin, &fixture_dir))
		return 1;
	if (filter && *filter)
		cmocka_set_test_filter(filter);  /* a glob over the test names */
	if (geteuid() != 0) {
		fprintf(stderr, "test_hostile plays clients of other uids: run it as root\n");
		return 1;
	}
	main_pid = getpid();
	run_seed = seed && *seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	if (!run_seed)
		run_seed = 1;
	printf("test_hostile: NTFSD_TEST_SEED=%llu\n", (unsigned long long)run_seed);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
