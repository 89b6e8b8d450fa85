/*
 * test_limits — a hostile local client cannot make the daemon hold memory,
 * handles or replies without bound (issue 11), and the accept loop backs
 * off at the descriptor limit.
 *
 * Each test serves its own copy of vol4k.img (read-only) from its own
 * temp dir, with small limits: max-conn-inflight 64K, max-inflight 1M and
 * max-conn-reply-bytes 64K on the command line, max-conn-handles 16 and
 * max-conn-replies 8 in a --config file.  The teardown closes every raw
 * socket, kills the daemon if it still runs and removes the temp dir, so a
 * failing test leaves nothing behind.  The hostile clients are raw sockets
 * of this process, so the daemon's log lines name our pid.
 *  - help: --help documents every limit; a bad value exits 2.
 *  - inflight: 40 connections each announce a 16 MiB frame and push as
 *    much of it as the daemon takes: each gets EMSGSIZE and is dropped at
 *    the header, with a max-conn-inflight line in the log.  Then 40 more
 *    announce frames that fit the per-connection limit and trickle them:
 *    the daemon drops connections over the 1M total (max-inflight lines)
 *    so that at most 1M / 59 KB of them survive.  The daemon's VmRSS
 *    stays within 2 x max-inflight + 16 MiB (+ 64 MiB under ASan) of what
 *    it was before, a normal client still reads a file (while the
 *    survivors hold their bytes), and SIGTERM exits 0.  Without the limits
 *    the daemon buffers 640 MiB for the first 40.
 *  - handles: one connection opens /small.txt until refused: the 17th open
 *    is EMFILE naming max-conn-handles, the connection stays usable (a
 *    close makes room for one more open), the refusal is logged once, and
 *    another client opens and reads; max-conn-handles raised to 18 in the
 *    file and SIGHUP: two more opens on the same connection succeed.
 *  - replies: a connection sends 20000 status requests and never reads:
 *    it is dropped (max-conn-replies in the log) long before its replies
 *    are all queued, and a normal client reads; then again with
 *    max-conn-replies raised on the command line over the config file, so
 *    that max-conn-reply-bytes (4K) is what drops it.
 *  - accept_backoff: the daemon's RLIMIT_NOFILE is lowered (prlimit) so a
 *    few connections exhaust it and more wait in the backlog: for 2 s the
 *    daemon uses under 0.4 s of CPU and logs the accept failure once;
 *    after the limit is restored and the connections closed, a new client
 *    is served and the log says accepting resumed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "frame.h"
#include "ntfsc.h"
#include "ntfsd.pb-c.h"
#include "oracle.h"
#include "testvol.h"

#define CONN_INFLIGHT (64u << 10)
#define INFLIGHT (1u << 20)
#define CONN_HANDLES 16
#define CONN_REPLIES 8
#define CONN_REPLY_BYTES (64u << 10)
#define HOSTILE 40
#define MAX_SOCKS 128

static const char *ntfsd_bin, *ntfsctl_bin, *fixture_dir;
static char tmpdir[64], image[128], config[128];
static char *small_want;        /* /small.txt as ntfscat reads it */
static size_t small_len;
static struct test_daemon dmn;
static int socks[MAX_SOCKS];    /* raw sockets, -1 when closed */
static int recv_err;            /* why raw_recv() last returned NULL (-errno) */

/* ---- set-up ---- */

/* The --config file: the limits from the file (the others are on the
 * command line). */
static int write_config(int handles, int replies)
{
	FILE *f = fopen(config, "w");

	if (!f)
		return -1;
	fprintf(f, "# limits from the file; the others are on the command line\n"
		   "max-conn-handles = %d\nmax-conn-replies = %d\n", handles, replies);
	return fclose(f) ? -1 : 0;
}

static int setup(void **state)
{
	char src[256];
	int i;

	(void)state;
	memset(&dmn, 0, sizeof(dmn));
	for (i = 0; i < MAX_SOCKS; i++)
		socks[i] = -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ntfsd-limits.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(image, sizeof(image), "%s/vol4k.img", tmpdir);
	snprintf(config, sizeof(config), "%s/ntfsd.conf", tmpdir);
	snprintf(src, sizeof(src), "%s/vol4k.img", fixture_dir);
	if (testvol_copy_file(src, image))
		return -1;
	return write_config(CONN_HANDLES, CONN_REPLIES);
}

static void socks_close(void)
{
	for (int i = 0; i < MAX_SOCKS; i++)
		if (socks[i] >= 0) {
			close(socks[i]);
			socks[i] = -1;
		}
}

static int teardown(void **state)
{
	DIR *d;
	struct dirent *e;
	char p[512];

	(void)state;
	socks_close();
	daemon_stop(&dmn);
	d = opendir(tmpdir);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
	return 0;
}

/* Start the daemon with the test's limits, then extra options. */
static void start(const char *const *extra)
{
	const char *args[24] = { "--read-only", "--config", config, "--max-conn-inflight", "64K",
				 "--max-inflight", "1M", "--max-conn-reply-bytes", "64K" };
	int n = 9, err;

	while (extra && *extra && n < 23)
		args[n++] = *extra++;
	args[n] = NULL;
	err = daemon_start(&dmn, ntfsd_bin, image, args);
	if (err)
		fail_msg("ntfsd did not start: %s", strerror(-err));
}

static void stop_expect_clean(void)
{
	pid_t pid = dmn.pid;

	socks_close();
	if (!daemon_stop(&dmn))
		fail_msg("ntfsd (pid %d) did not exit 0 on SIGTERM (wait status 0x%x)", (int)pid,
			 dmn.exit_status);
}

/* ---- the daemon from outside ---- */

static long vmrss_kib(pid_t pid)
{
	char path[64], line[256];
	FILE *f;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	if (kib < 0)
		fail_msg("no VmRSS in %s", path);
	return kib;
}

/* utime + stime in clock ticks */
static long cpu_ticks(pid_t pid)
{
	long t = testvol_cpu_ticks(pid);

	if (t < 0)
		fail_msg("cannot read /proc/%d/stat", (int)pid);
	return t;
}

static int count_fds(pid_t pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		fail_msg("%s: %s", path, strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Lines of the daemon's log holding both a and b (b may be NULL). */
static int log_count(const char *a, const char *b)
{
	FILE *f = fopen(dmn.log, "r");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f)
		fail_msg("%s: %s", dmn.log, strerror(errno));
	while (getline(&line, &cap, f) > 0)
		if (strstr(line, a) && (!b || strstr(line, b)))
			n++;
	free(line);
	fclose(f);
	return n;
}

/* "client pid P uid U:", as the daemon names us */
static const char *me(void)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "client pid %d uid %u:", (int)getpid(), (unsigned)getuid());
	return buf;
}

/* A well-behaved libntfsc client opens /small.txt and reads what ntfscat reads. */
static void client_reads(const char *when)
{
	ntfsc *c = ntfsc_connect(dmn.socket);
	ntfsc_file *f;
	char buf[4096];
	ssize_t n;

	if (!small_want)
		testvol_cat(image, "/small.txt", &small_want, &small_len);
	if (!c)
		fail_msg("%s: a normal client cannot connect: %s", when, strerror(errno));
	f = ntfsc_open(c, "/small.txt", O_RDONLY);
	if (!f)
		fail_msg("%s: a normal client cannot open /small.txt: %s (%s)", when,
			 strerror(errno), ntfsc_last_error_message(c));
	n = ntfsc_pread(f, buf, sizeof(buf), 0);
	if (n != (ssize_t)small_len || memcmp(buf, small_want, small_len))
		fail_msg("%s: a normal client read %zd bytes of /small.txt, not ntfscat's %zu", when,
			 n, small_len);
	ntfsc_close(f);
	ntfsc_disconnect(c);
}

/* ---- raw protocol ---- */

static int sock_add(int fd)
{
	for (int i = 0; i < MAX_SOCKS; i++)
		if (socks[i] < 0) {
			socks[i] = fd;
			return i;
		}
	close(fd);
	fail_msg("more than %d raw sockets", MAX_SOCKS);
	return -1;
}

static void sock_close(int i)
{
	if (socks[i] >= 0)
		close(socks[i]);
	socks[i] = -1;
}

/* A raw connection, in socks[returned]. */
static int raw_connect(bool nonblock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	struct timeval tv = { .tv_sec = 5 };

	if (fd < 0)
		fail_msg("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", dmn.socket);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		fail_msg("connect %s: %s", dmn.socket, strerror(errno));
	}
	/* a daemon that never answers fails the test instead of hanging it */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return sock_add(fd);
}

/* rq as a frame: length and bytes, malloc()ed. */
static uint8_t *frame_of(Ntfsd__Request *rq, size_t *len)
{
	size_t n = ntfsd__request__get_packed_size(rq);
	uint8_t *buf = malloc(n + 4);

	assert_non_null(buf);
	buf[0] = (uint8_t)n;
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = (uint8_t)(n >> 16);
	buf[3] = (uint8_t)(n >> 24);
	ntfsd__request__pack(rq, buf + 4);
	*len = n + 4;
	return buf;
}

static void raw_send(int i, Ntfsd__Request *rq)
{
	size_t len;
	uint8_t *buf = frame_of(rq, &len);
	int err = frame_send(socks[i], buf + 4, len - 4, NULL, 0);

	free(buf);
	if (err)
		fail_msg("sending a request: %s", strerror(-err));
}

/* The next reply, its fds closed; NULL on EOF, error or timeout. */
static Ntfsd__Reply *raw_recv(int i)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int fds[NTFSD_MAX_FRAME_FDS], nfds = 0, k;
	Ntfsd__Reply *r;

	recv_err = frame_recv(socks[i], &buf, &len, fds, NTFSD_MAX_FRAME_FDS, &nfds);
	if (recv_err)
		return NULL;
	for (k = 0; k < nfds; k++)
		close(fds[k]);
	r = ntfsd__reply__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(r);
	return r;
}

static void raw_hello(int i)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__Hello h = NTFSD__HELLO__INIT;
	Ntfsd__Reply *r;

	h.protocol_version = NTFSD_PROTOCOL_VERSION;
	h.client_name = "test_limits";
	rq.id = 1;
	rq.body_case = NTFSD__REQUEST__BODY_HELLO;
	rq.hello = &h;
	raw_send(i, &rq);
	r = raw_recv(i);
	if (!r || r->error)
		fail_msg("hello: %s", r ? r->message : "no reply");
	ntfsd__reply__free_unpacked(r, NULL);
}

/* Has the daemon hung up on socks[i]?  Looks only (nothing is read). */
static bool hung_up(int i)
{
	struct pollfd p = { .fd = socks[i], .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static bool send_failed_by_hangup(void)
{
	return errno == EPIPE || errno == ECONNRESET;
}

/* ---- help ---- */

static void help_documents_limits(void **state)
{
	static const char *const keys[] = { "--max-conn-inflight", "--max-inflight",
					    "--max-conn-handles", "--max-conn-replies",
					    "--max-conn-reply-bytes" };
	const char *help[] = { ntfsd_bin, "--help", NULL };
	const char *bad[] = { ntfsd_bin, "--volume", image, "--max-conn-replies", "0", NULL };
	char *out = NULL;
	size_t len;
	int status;

	(void)state;
	assert_int_equal(oracle_run(help, &out, &len, &status), 0);
	assert_int_equal(status, 0);
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (!strstr(out, keys[k]))
			fail_msg("ntfsd --help does not mention %s", keys[k]);
	free(out);
	out = NULL;
	assert_int_equal(oracle_run(bad, &out, &len, &status), 0);
	if (status != 2)
		fail_msg("--max-conn-replies 0: exit %d, want 2", status);
	free(out);
}

/* ---- in-flight bytes ---- */

/*
 * Each of n connections announces a frame of frame_len bytes and pushes
 * body bytes into it, step at a time, up to body bytes (never the whole
 * frame), pausing pause_ms between rounds; done when each has sent it all
 * or was hung up on.  Returns how many were hung up on.
 */
static int push_frames(const int *idx, int n, uint32_t frame_len, size_t body, size_t step,
		       int pause_ms, int timeout_s)
{
	static uint8_t zeroes[1 << 16];
	size_t sent[MAX_SOCKS] = { 0 };
	bool done[MAX_SOCKS] = { false };
	int dropped = 0, left = n, k;
	time_t end = time(NULL) + timeout_s;
	uint8_t hdr[4] = { (uint8_t)frame_len, (uint8_t)(frame_len >> 8),
			   (uint8_t)(frame_len >> 16), (uint8_t)(frame_len >> 24) };

	for (k = 0; k < n; k++)
		if (send(socks[idx[k]], hdr, 4, MSG_NOSIGNAL) != 4)
			fail_msg("sending a frame header: %s", strerror(errno));
	while (left && time(NULL) < end) {
		for (k = 0; k < n; k++) {
			size_t want = body - sent[k] < step ? body - sent[k] : step;
			ssize_t r;

			if (done[k])
				continue;
			r = send(socks[idx[k]], zeroes, want, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (r < 0 && send_failed_by_hangup()) {
				done[k] = true;
				dropped++;
				left--;
				continue;
			}
			if (r < 0 && errno != EAGAIN)
				fail_msg("send: %s", strerror(errno));
			if (r > 0)
				sent[k] += (size_t)r;
			if (sent[k] == body) {
				done[k] = true;
				left--;
			}
		}
		if (pause_ms) {
			struct timespec ts = { .tv_nsec = pause_ms * 1000000L };

			nanosleep(&ts, NULL);
		} else {
			poll(NULL, 0, 1);
		}
	}
	if (left)
		fail_msg("%d of %d connections still sending after %d s", left, n, timeout_s);
	return dropped;
}

/*
 * How much the daemon's VmRSS may grow while hostile clients hold the
 * in-flight total: twice the total (a buffer grows by doubling), and 16 MiB
 * for the allocator and the connections themselves; under AddressSanitizer
 * another 64 MiB, as its quarantine keeps freed blocks (up to 256 MiB) and
 * their shadow resident.  Without the limits 40 connections cost 640 MiB.
 */
static long rss_bound_kib(void)
{
	const char *alloc = getenv("NTFSD_EXPECT_ALLOCATOR");
	long bound = 2 * INFLIGHT + (16l << 20);

	if (alloc && !strcmp(alloc, "asan"))
		bound += 64l << 20;
	return bound / 1024;
}

static void inflight_bounded(void **state)
{
	int idx[HOSTILE], k, dropped, survivors = 0;
	long rss0, rss1, rss2, bound_kib;
	Ntfsd__Reply *r;

	(void)state;
	bound_kib = rss_bound_kib();
	start(NULL);
	client_reads("before");
	rss0 = vmrss_kib(dmn.pid);

	/* 40 frames of 16 MiB: refused at the header */
	for (k = 0; k < HOSTILE; k++)
		idx[k] = raw_connect(false);
	dropped = push_frames(idx, HOSTILE, NTFSD_MAX_FRAME, NTFSD_MAX_FRAME - 1, 1 << 16, 0, 60);
	rss1 = vmrss_kib(dmn.pid);
	print_message("%d connections announcing 16 MiB frames: %d dropped; ntfsd VmRSS %ld -> "
		      "%ld KiB\n", HOSTILE, dropped, rss0, rss1);
	if (rss1 - rss0 > bound_kib)
		fail_msg("ntfsd grew by %ld KiB for %d half-sent 16 MiB frames (bound %ld KiB)",
			 rss1 - rss0, HOSTILE, bound_kib);
	assert_int_equal(dropped, HOSTILE);
	r = raw_recv(idx[0]);
	if (!r || r->error != EMSGSIZE)
		fail_msg("a 16 MiB frame got %s %d, want an EMSGSIZE reply", r ? "error" : "no reply",
			 r ? (int)r->error : 0);
	ntfsd__reply__free_unpacked(r, NULL);
	if (log_count(me(), "over the max-conn-inflight limit of 65536 bytes") < HOSTILE)
		fail_msg("the log has %d max-conn-inflight lines for pid %d, want %d",
			 log_count(me(), "over the max-conn-inflight limit"), (int)getpid(), HOSTILE);
	for (k = 0; k < HOSTILE; k++)
		sock_close(idx[k]);
	client_reads("after the 16 MiB frames");

	/* 40 frames within max-conn-inflight, trickled: the total drops some */
	for (k = 0; k < HOSTILE; k++)
		idx[k] = raw_connect(false);
	dropped = push_frames(idx, HOSTILE, 60000, 59000, 1500, 20, 60);
	for (k = 0; k < HOSTILE; k++)
		if (!hung_up(idx[k]))
			survivors++;
	rss2 = vmrss_kib(dmn.pid);
	print_message("%d connections trickling 59000 of 60000-byte frames: %d dropped while "
		      "sending, %d survive; ntfsd VmRSS %ld KiB\n", HOSTILE, dropped, survivors,
		      rss2);
	if (survivors > (int)(INFLIGHT / 59004))
		fail_msg("%d connections hold 59000 bytes each, over the max-inflight total of %u",
			 survivors, INFLIGHT);
	if (log_count(me(), "over the max-inflight limit of 1048576 bytes") < HOSTILE - survivors)
		fail_msg("the log has %d max-inflight lines for pid %d, want %d",
			 log_count(me(), "over the max-inflight limit"), (int)getpid(),
			 HOSTILE - survivors);
	if (rss2 - rss0 > bound_kib)
		fail_msg("ntfsd grew by %ld KiB (bound %ld KiB)", rss2 - rss0, bound_kib);
	/* with the survivors still holding their bytes, a normal client works */
	client_reads("while trickling connections hold the total");
	stop_expect_clean();
}

/* ---- open handles ---- */

static Ntfsd__Reply *raw_open(int i, uint64_t id, const char *path)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__OpenRequest o = NTFSD__OPEN_REQUEST__INIT;
	Ntfsd__Reply *r;

	o.path = (char *)path;
	rq.id = id;
	rq.body_case = NTFSD__REQUEST__BODY_OPEN;
	rq.open = &o;
	raw_send(i, &rq);
	r = raw_recv(i);
	if (!r)
		fail_msg("open %s (request %llu): the daemon hung up or did not answer", path,
			 (unsigned long long)id);
	return r;
}

static void handles_refused(void **state)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__CloseRequest cl = NTFSD__CLOSE_REQUEST__INIT;
	Ntfsd__Reply *r;
	uint64_t first = 0;
	int s, opened;

	(void)state;
	start(NULL);
	s = raw_connect(false);
	raw_hello(s);
	for (opened = 0; opened < 4 * CONN_HANDLES; opened++) {
		r = raw_open(s, 10 + (uint64_t)opened, "/small.txt");
		if (r->error) {
			if (r->error != EMFILE || !strstr(r->message, "max-conn-handles"))
				fail_msg("open %d refused with %d \"%s\", want EMFILE naming "
					 "max-conn-handles", opened + 1, (int)r->error, r->message);
			ntfsd__reply__free_unpacked(r, NULL);
			break;
		}
		if (!first)
			first = r->open->handle;
		ntfsd__reply__free_unpacked(r, NULL);
	}
	if (opened != CONN_HANDLES)
		fail_msg("%d opens succeeded on one connection, want %d (max-conn-handles from the "
			 "config file)", opened, CONN_HANDLES);
	print_message("one connection: %d opens, then EMFILE\n", opened);

	/* a refusal, not a drop: closing one handle makes room for one open */
	cl.handle = first;
	rq.id = 100;
	rq.body_case = NTFSD__REQUEST__BODY_CLOSE;
	rq.close = &cl;
	raw_send(s, &rq);
	r = raw_recv(s);
	if (!r || r->error)
		fail_msg("close after the refusal: %s", r ? r->message : "the daemon hung up");
	ntfsd__reply__free_unpacked(r, NULL);
	r = raw_open(s, 101, "/big.bin");
	if (r->error)
		fail_msg("open after a close: %s", r->message);
	ntfsd__reply__free_unpacked(r, NULL);
	r = raw_open(s, 102, "/big.bin");
	assert_int_equal(r->error, EMFILE);
	ntfsd__reply__free_unpacked(r, NULL);

	client_reads("while one connection is at its handle limit");
	if (log_count(me(), "over the max-conn-handles limit of 16") != 1)
		fail_msg("the log has %d max-conn-handles lines for pid %d, want exactly 1",
			 log_count(me(), "over the max-conn-handles limit"), (int)getpid());

	/* SIGHUP applies a raised limit at once, to connections already open */
	if (write_config(CONN_HANDLES + 2, CONN_REPLIES))
		fail_msg("cannot rewrite %s: %s", config, strerror(errno));
	kill(dmn.pid, SIGHUP);
	for (int t = 0; t < 100 && !log_count("SIGHUP: max-conn-handles 16 -> 18", NULL); t++)
		poll(NULL, 0, 50);
	if (!log_count("SIGHUP: max-conn-handles 16 -> 18", NULL))
		fail_msg("SIGHUP did not log max-conn-handles 16 -> 18");
	for (int k = 0; k < 2; k++) {
		r = raw_open(s, 103 + (uint64_t)k, "/small.txt");
		if (r->error)
			fail_msg("open %d after raising max-conn-handles to 18: %s", 17 + k, r->message);
		ntfsd__reply__free_unpacked(r, NULL);
	}
	r = raw_open(s, 105, "/small.txt");
	assert_int_equal(r->error, EMFILE);
	ntfsd__reply__free_unpacked(r, NULL);
	stop_expect_clean();
}

/* ---- unread replies ---- */

/*
 * A connection that sends up to 20000 status requests and never reads:
 * returns true when the daemon hung up on it (it then reads what was sent
 * before, fewer replies than requests).
 */
static bool flood_unread(int *nreplies, int *nsent)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__VolumeStatusRequest vs = NTFSD__VOLUME_STATUS_REQUEST__INIT;
	const int total = 20000;
	size_t flen, off = 0;
	uint8_t *f;
	time_t end = time(NULL) + 10;
	bool hup = false;
	int s = raw_connect(false), fl;
	Ntfsd__Reply *r;

	raw_hello(s);
	fl = fcntl(socks[s], F_GETFL);
	fcntl(socks[s], F_SETFL, fl | O_NONBLOCK);
	rq.id = 7;
	rq.body_case = NTFSD__REQUEST__BODY_VOLUME_STATUS;
	rq.volume_status = &vs;
	f = frame_of(&rq, &flen);
	*nsent = 0;
	while (*nsent < total && time(NULL) < end) {
		ssize_t n = send(socks[s], f + off, flen - off, MSG_NOSIGNAL);

		if (n < 0 && send_failed_by_hangup()) {
			hup = true;
			break;
		}
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = socks[s], .events = POLLOUT };

			poll(&p, 1, 100);
			continue;
		}
		if (n < 0)
			fail_msg("send: %s", strerror(errno));
		off += (size_t)n;
		if (off == flen) {
			off = 0;
			(*nsent)++;
		}
	}
	free(f);
	/* what the socket holds, then EOF if the daemon hung up */
	fcntl(socks[s], F_SETFL, fl);
	*nreplies = 0;
	while ((r = raw_recv(s))) {
		ntfsd__reply__free_unpacked(r, NULL);
		++*nreplies;
	}
	/* EOF or a reset, not the receive timeout */
	hup = hup || (recv_err != -EAGAIN && recv_err != -EWOULDBLOCK);
	sock_close(s);
	return hup && *nreplies < *nsent;
}

static void replies_dropped(void **state)
{
	const char *more_replies[] = { "--max-conn-replies", "100000", "--max-conn-reply-bytes",
				       "4K", NULL };
	int nreplies, nsent;

	(void)state;
	start(NULL);
	if (!flood_unread(&nreplies, &nsent))
		fail_msg("a connection that sent %d requests and read none was not dropped",
			 nsent);
	print_message("max-conn-replies %d: dropped after %d requests, %d replies were in the "
		      "socket\n", CONN_REPLIES, nsent, nreplies);
	if (log_count(me(), "over the max-conn-replies limit of 8") != 1)
		fail_msg("the log has %d max-conn-replies lines for pid %d, want 1",
			 log_count(me(), "over the max-conn-replies limit"), (int)getpid());
	client_reads("after an unread connection was dropped");
	stop_expect_clean();

	/* the command line wins over the file: now the bytes limit drops it */
	start(more_replies);
	if (!flood_unread(&nreplies, &nsent))
		fail_msg("with max-conn-reply-bytes 4K, a connection that sent %d requests and "
			 "read none was not dropped", nsent);
	print_message("max-conn-reply-bytes 4K: dropped after %d requests, %d replies were in "
		      "the socket\n", nsent, nreplies);
	if (log_count(me(), "over the max-conn-reply-bytes limit of 4096 bytes") != 1)
		fail_msg("the log has %d max-conn-reply-bytes lines for pid %d, want 1",
			 log_count(me(), "over the max-conn-reply-bytes limit"), (int)getpid());
	client_reads("after an unread connection was dropped for its reply bytes");
	stop_expect_clean();
}

/* ---- accept at the descriptor limit ---- */

static void accept_backoff(void **state)
{
	struct rlimit old, low;
	long ticks0, ticks1, hz = sysconf(_SC_CLK_TCK);
	int k;

	(void)state;
	start(NULL);
	if (prlimit(dmn.pid, RLIMIT_NOFILE, NULL, &old))
		fail_msg("prlimit: %s", strerror(errno));
	low = old;
	low.rlim_cur = (rlim_t)count_fds(dmn.pid) + 3;
	if (prlimit(dmn.pid, RLIMIT_NOFILE, &low, NULL))
		fail_msg("prlimit: %s", strerror(errno));
	for (k = 0; k < 10; k++)
		raw_connect(false);  /* 3 accepted, the rest wait in the backlog */
	poll(NULL, 0, 200);
	ticks0 = cpu_ticks(dmn.pid);
	poll(NULL, 0, 2000);
	ticks1 = cpu_ticks(dmn.pid);
	print_message("at RLIMIT_NOFILE %llu with 7 connections waiting: %ld ms of CPU in 2 s, "
		      "%d accept warnings\n", (unsigned long long)low.rlim_cur,
		      (ticks1 - ticks0) * 1000 / hz, log_count("accept on", NULL));
	if (ticks1 - ticks0 > hz * 4 / 10)
		fail_msg("the daemon spun: %ld ms of CPU in 2 s at the descriptor limit",
			 (ticks1 - ticks0) * 1000 / hz);
	if (log_count("accept on", "not accepting") != 1 || log_count("accept on", NULL) != 1)
		fail_msg("the accept failure was logged %d times, want once",
			 log_count("accept on", NULL));
	socks_close();
	if (prlimit(dmn.pid, RLIMIT_NOFILE, &old, NULL))
		fail_msg("prlimit: %s", strerror(errno));
	client_reads("after the descriptor limit was restored");
	/* Every episode of refused accepts (a warning) ends with one notice
	 * that accepting resumed.  While the descriptor limit was still low,
	 * closing the waiting connections may have ended one episode and
	 * begun another (seen under ASan, whose runtime holds descriptors
	 * too), so the count is the warnings', at least one. */
	for (int i = 0; i < 50 && log_count("accepting connections on", "again") <
				      log_count("accept on", "not accepting"); i++)
		testvol_sleep_ms(100);
	if (log_count("accepting connections on", "again") < 1 ||
	    log_count("accepting connections on", "again") !=
	    log_count("accept on", "not accepting"))
		fail_msg("the log says %d times that accepting resumed after %d episodes of "
			 "refused accepts", log_count("accepting connections on", "again"),
			 log_count("accept on", "not accepting"));
	stop_expect_clean();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(help_documents_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(inflight_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(handles_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(replies_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(accept_backoff, setup, teardown),
	};
	int rc;

	if (!daemon_test_env(&ntfsd_bin, &ntfsctl_bin, &fixture_dir))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(small_want);
	return rc;
}
