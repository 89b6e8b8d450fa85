/*
 * test_crash — dirty data survives a SIGKILL of the daemon.
 *
 * Each test works on its own copy of vol4k.img in its own temp dir,
 * removed in the teardown with every daemon, keeper and child stopped.
 * Write-back is held off (long expiry, high thresholds) so the data is
 * only in the cache when the daemon is killed; ntfscat checks that first.
 *  - keeper: two client processes write (ntfsc_pwrite into a non-resident
 *    and a resident file; stores through a PROT_WRITE mapping and
 *    ntfsc_set_dirty into another file), the daemon is SIGKILLed, started
 *    again (it fetches the segments from the keeper and writes them back
 *    before serving), `ntfsctl sync`; the clients' next call on their old
 *    connection fails, they reconnect, reopen and read their bytes back;
 *    after a clean stop ntfscat reads every byte, `ntfsfix -n` is clean and
 *    the keeper has exited.
 *  - systemd: the test plays systemd: a NOTIFY_SOCKET listener that keeps
 *    the fds sent with FDSTORE=1 (and drops them on FDSTOREREMOVE=1) and
 *    starts the daemon again with them in LISTEN_FDS / LISTEN_FDNAMES after
 *    the SIGKILL.  The store holds the volume's fd too, so the image stays
 *    locked in between.  The page-state header of one file is tampered with
 *    first: that file's segments must be refused (its old bytes stay on
 *    the volume), the other file's written back; a clean stop then removes
 *    every stored fd, the volume's too.
 *  - a keeper socket planted by another user (uid 65534) where ours would
 *    be: the daemon refuses it and exits 1.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "ntfsc.h"
#include "oracle.h"
#include "shm_layout.h"
#include "testvol.h"

static const char *ntfsd_bin, *ntfsctl_bin, *fixture_dir;

static char tmpdir[64], image[128], store_dir[128];
static struct test_daemon dmn;
static pid_t kids[4], sysd_pid;
static int notify_fd = -1;

#define HOLD_OFF_ARGS "--cache-size", "512M", "--dirty-background", "400M", \
		      "--dirty-limit", "450M", "--dirty-expire-ms", "3600000"

static void fill_random(uint64_t seed, void *buf, size_t len)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		p[i] = (uint8_t)(seed >> 24);
	}
}

static int setup(void **state)
{
	char src[256];

	(void)state;
	memset(&dmn, 0, sizeof(dmn));
	memset(kids, 0, sizeof(kids));
	sysd_pid = 0;
	notify_fd = -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ntfsd-crash.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(image, sizeof(image), "%s/vol4k.img", tmpdir);
	snprintf(store_dir, sizeof(store_dir), "%s/store", tmpdir);
	if (mkdir(store_dir, 0700) < 0)
		return -1;
	snprintf(src, sizeof(src), "%s/vol4k.img", fixture_dir);
	return testvol_copy_file(src, image) ? -1 : 0;
}

static int teardown(void **state)
{
	DIR *d;
	struct dirent *e;
	char p[512];

	(void)state;
	for (int i = 0; i < 4; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	if (sysd_pid > 0) {
		kill(sysd_pid, SIGKILL);
		waitpid(sysd_pid, NULL, 0);
	}
	if (notify_fd >= 0)
		close(notify_fd);
	if (dmn.pid > 0) {
		kill(dmn.pid, SIGKILL);
		waitpid(dmn.pid, NULL, 0);
		dmn.pid = 0;
	}
	daemon_stop(&dmn);
	keeper_kill_in(store_dir);
	rmdir(store_dir);
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

static void expect_range(const char *path, uint64_t off, const void *want, size_t len,
			 bool equal)
{
	char *got, snap[200];
	size_t glen;

	/* the daemon or the keeper may hold the image: ntfscat a copy */
	assert_int_equal(testvol_snapshot(image, snap, sizeof(snap)), 0);
	testvol_cat(snap, path, &got, &glen);
	unlink(snap);
	if (glen < off + len)
		fail_msg("ntfscat %s: %zu bytes, want at least %" PRIu64, path, glen, off + len);
	if (equal && memcmp(got + off, want, len)) {
		size_t i;

		for (i = 0; i < len && got[off + i] == ((const char *)want)[i]; i++)
			;
		fail_msg("ntfscat %s: byte %" PRIu64 " differs from what the client wrote", path,
			 off + i);
	}
	if (!equal && !memcmp(got + off, want, len))
		fail_msg("ntfscat %s: the new bytes are already on the volume: write-back was "
			 "not held off, the test proves nothing", path);
	free(got);
}

static void ctl_sync(const char *sock)
{
	const char *argv[] = { ntfsctl_bin, "-s", sock, "sync", NULL };
	char *out = NULL;
	size_t len;
	int status, err = oracle_run(argv, &out, &len, &status);

	if (err || status)
		fail_msg("ntfsctl sync: exit %d: %s%s", status, out ? out : "", oracle_last_stderr());
	free(out);
}

static uint64_t dirty_pages(const char *sock)
{
	struct ntfsc_volume_status st = NTFSC_VOLUME_STATUS_INIT;
	ntfsc *c = ntfsc_connect(sock);
	uint64_t n;

	if (!c || ntfsc_volume_status(c, &st))
		fail_msg("volume status: %s", strerror(errno));
	n = st.dirty_pages;
	ntfsc_volume_status_free(&st);
	ntfsc_disconnect(c);
	return n;
}

/* Someone holds a lock on the image that a writer would conflict with. */
static bool image_locked(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd = open(image, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
	close(fd);
	return fl.l_type != F_UNLCK;
}

static bool log_has(const char *log, const char *needle)
{
	char buf[1 << 16];
	FILE *f = fopen(log, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* ---- the data the clients write ---- */

#define BIG_OFF 12388u             /* unaligned, across pages */
#define BIG_LEN (1u << 20)
#define SMALL_OFF 10u
#define SMALL_LEN 50u
#define FRAG_OFF 8192u
#define FRAG_LEN 20000u

static uint8_t big_new[BIG_LEN], small_new[SMALL_LEN], frag_new[FRAG_LEN];

static void make_data(uint64_t seed)
{
	fill_random(seed, big_new, sizeof(big_new));
	fill_random(seed * 3 + 1, small_new, sizeof(small_new));
	fill_random(seed * 7 + 5, frag_new, sizeof(frag_new));
}

static int write_pwrite(ntfsc *c)
{
	ntfsc_file *f = ntfsc_open(c, "/big.bin", O_RDWR), *s = ntfsc_open(c, "/small.txt", O_RDWR);

	if (!f || !s)
		return -1;
	if (ntfsc_pwrite(f, big_new, BIG_LEN, BIG_OFF) != BIG_LEN ||
	    ntfsc_pwrite(s, small_new, SMALL_LEN, SMALL_OFF) != SMALL_LEN)
		return -1;
	return 0;
}

static int write_mmap(ntfsc *c)
{
	ntfsc_file *f = ntfsc_open(c, "/frag/a.bin", O_RDWR);
	uint8_t *m;

	if (!f)
		return -1;
	m = ntfsc_mmap(f, 0, FRAG_OFF + FRAG_LEN, PROT_READ | PROT_WRITE);
	if (m == MAP_FAILED)
		return -1;
	memcpy(m + FRAG_OFF, frag_new, FRAG_LEN);
	return ntfsc_set_dirty(f, m + FRAG_OFF, FRAG_LEN);
}

/* A client process: writes, says "w", waits for the new socket path,
 * checks its old connection fails, reconnects and reads its bytes back.
 * Exit 0 on success, else a number saying which step failed. */
static _Noreturn void client(int which, const char *sock, int to_parent, int from_parent)
{
	char newsock[256] = "";
	ntfsc *c = ntfsc_connect(sock), *c2;
	ntfsc_file *f;
	uint8_t *buf = malloc(BIG_LEN);
	ssize_t n;

	if (!c || !buf || (which == 0 ? write_pwrite(c) : write_mmap(c)))
		_exit(10);
	if (write(to_parent, "w", 1) != 1)
		_exit(11);
	n = read(from_parent, newsock, sizeof(newsock) - 1);
	if (n <= 0)
		_exit(12);
	newsock[n] = '\0';
	if (ntfsc_sync(c) == 0)
		_exit(13);           /* the daemon that knew this connection is gone */
	c2 = ntfsc_connect(newsock);
	if (!c2)
		_exit(14);
	if (which == 0) {
		f = ntfsc_open(c2, "/big.bin", O_RDONLY);
		if (!f || ntfsc_pread(f, buf, BIG_LEN, BIG_OFF) != BIG_LEN ||
		    memcmp(buf, big_new, BIG_LEN))
			_exit(15);
	} else {
		f = ntfsc_open(c2, "/frag/a.bin", O_RDONLY);
		if (!f || ntfsc_pread(f, buf, FRAG_LEN, FRAG_OFF) != FRAG_LEN ||
		    memcmp(buf, frag_new, FRAG_LEN))
			_exit(16);
	}
	_exit(0);
}

static void keeper_survives_sigkill(void **state)
{
	const char *args[] = { "--fd-store", "keeper", "--fd-store-dir", store_dir, HOLD_OFF_ARGS,
			       NULL };
	int up[2][2], down[2][2], st, i;
	char c, keeper_path[512] = "";
	DIR *d;
	struct dirent *e;

	(void)state;
	make_data(42);
	assert_int_equal(daemon_start(&dmn, ntfsd_bin, image, args), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(pipe2(up[i], O_CLOEXEC), 0);
		assert_int_equal(pipe2(down[i], O_CLOEXEC), 0);
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0)
			client(i, dmn.socket, up[i][1], down[i][0]);
		close(up[i][1]);
		close(down[i][0]);
		if (read(up[i][0], &c, 1) != 1) {
			daemon_dump_log(&dmn);
			fail_msg("client %d failed before it wrote", i);
		}
	}
	assert_true(dirty_pages(dmn.socket) > 0);
	expect_range("/big.bin", BIG_OFF, big_new, BIG_LEN, false);
	expect_range("/frag/a.bin", FRAG_OFF, frag_new, FRAG_LEN, false);

	kill(dmn.pid, SIGKILL);
	waitpid(dmn.pid, NULL, 0);
	dmn.pid = 0;
	daemon_stop(&dmn);              /* its directory; the keeper is elsewhere */
	expect_range("/big.bin", BIG_OFF, big_new, BIG_LEN, false);

	assert_int_equal(daemon_start(&dmn, ntfsd_bin, image, args), 0);
	if (!log_has(dmn.log, "adopted MFT record")) {
		daemon_dump_log(&dmn);
		fail_msg("the restarted daemon adopted nothing");
	}
	for (i = 0; i < 2; i++) {
		assert_int_equal(write(down[i][1], dmn.socket, strlen(dmn.socket)),
				 (ssize_t)strlen(dmn.socket));
		assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
		kids[i] = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fail_msg("client %d: step %d failed after the restart", i,
				 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		close(up[i][0]);
		close(down[i][1]);
	}
	ctl_sync(dmn.socket);
	d = opendir(store_dir);
	while (d && (e = readdir(d)))
		if (strstr(e->d_name, ".fdstore"))
			snprintf(keeper_path, sizeof(keeper_path), "%s/%s", store_dir, e->d_name);
	if (d)
		closedir(d);
	assert_true(keeper_path[0]);
	if (!daemon_stop(&dmn))
		fail_msg("ntfsd did not exit 0 after SIGTERM");
	expect_range("/big.bin", BIG_OFF, big_new, BIG_LEN, true);
	expect_range("/small.txt", SMALL_OFF, small_new, SMALL_LEN, true);
	expect_range("/frag/a.bin", FRAG_OFF, frag_new, FRAG_LEN, true);
	testvol_expect_ntfsfix_clean(image);
	for (i = 0; i < 100 && access(keeper_path, F_OK) == 0; i++)
		testvol_sleep_ms(50);
	if (access(keeper_path, F_OK) == 0)
		fail_msg("the keeper still runs after a clean shutdown (%s)", keeper_path);
}

/*
 * Segments that grew while the file was open survive a kill: a file is
 * grown 1 GiB + 16 MiB past its end (past the room its segments had at
 * open, so they grow in place) and written at the new end and at its
 * start, with write-back held off; the daemon is killed; the next one
 * adopts the grown segments from the keeper (a header that names the
 * grown size, memfds at least that long) and writes both ranges back.
 * ntfscat then reads the new size, the bytes, and zeroes in the gap.
 */
static void keeper_adopts_grown_segments(void **state)
{
	const char *args[] = { "--fd-store", "keeper", "--fd-store-dir", store_dir, HOLD_OFF_ARGS,
			       NULL };
	enum { TAIL = 65536 };
	static uint8_t tail[TAIL], head[4096];
	uint64_t size, target;
	struct ntfsc_stat st;
	char *got, snap[200];
	size_t glen;
	ntfsc_file *f;
	ntfsc *c;

	(void)state;
	fill_random(7, tail, sizeof(tail));
	fill_random(8, head, sizeof(head));
	assert_int_equal(daemon_start(&dmn, ntfsd_bin, image, args), 0);
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	f = ntfsc_open(c, "/big.bin", O_RDWR);
	assert_non_null(f);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	size = st.size;
	target = size + (1ull << 30) + (16u << 20);
	if (ntfsc_ftruncate(f, (off_t)target))
		fail_msg("growing /big.bin to %" PRIu64 ": %s (%s)", target, strerror(errno),
			 ntfsc_last_error_message(c));
	assert_int_equal(ntfsc_pwrite(f, tail, TAIL, (off_t)(target - TAIL)), TAIL);
	assert_int_equal(ntfsc_pwrite(f, head, sizeof(head), 0), (ssize_t)sizeof(head));
	assert_true(dirty_pages(dmn.socket) > 0);

	kill(dmn.pid, SIGKILL);
	waitpid(dmn.pid, NULL, 0);
	dmn.pid = 0;
	daemon_stop(&dmn);
	ntfsc_disconnect(c);    /* the files go with it: its daemon is gone */

	assert_int_equal(daemon_start(&dmn, ntfsd_bin, image, args), 0);
	if (!log_has(dmn.log, "adopted MFT record")) {
		daemon_dump_log(&dmn);
		fail_msg("the restarted daemon adopted nothing");
	}
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	f = ntfsc_open(c, "/big.bin", O_RDONLY);
	assert_non_null(f);
	assert_int_equal(ntfsc_fstat(f, &st), 0);
	assert_int_equal(st.size, target);
	{
		static uint8_t buf[TAIL];

		assert_int_equal(ntfsc_pread(f, buf, TAIL, (off_t)(target - TAIL)), TAIL);
		assert_memory_equal(buf, tail, TAIL);
	}
	assert_int_equal(ntfsc_close(f), 0);
	ntfsc_disconnect(c);
	ctl_sync(dmn.socket);
	if (!daemon_stop(&dmn))
		fail_msg("ntfsd did not exit 0 after SIGTERM");

	assert_int_equal(testvol_snapshot(image, snap, sizeof(snap)), 0);
	testvol_cat(snap, "/big.bin", &got, &glen);
	unlink(snap);
	if (glen != target)
		fail_msg("ntfscat /big.bin: %zu bytes, want %" PRIu64, glen, target);
	if (memcmp(got, head, sizeof(head)) || memcmp(got + target - TAIL, tail, TAIL))
		fail_msg("ntfscat /big.bin: the bytes written before the kill are not there");
	for (uint64_t i = size > sizeof(head) ? size : sizeof(head); i < target - TAIL; i += 4093)
		if (got[i])
			fail_msg("ntfscat /big.bin: byte %" PRIu64 " of the gap is %d", i, got[i]);
	free(got);
	testvol_expect_ntfsfix_clean(image);
}

/* ---- playing systemd ---- */

struct stored {
	char name[64];
	int fd;
};
static struct stored store[64];
static int nstored;
static bool ready_seen;

static bool stored_named(const char *name)
{
	for (int i = 0; i < nstored; i++)
		if (!strcmp(store[i].name, name))
			return true;
	return false;
}

static void store_drop(const char *name)
{
	for (int i = 0; i < nstored; i++)
		if (!strcmp(store[i].name, name)) {
			close(store[i].fd);
			store[i] = store[--nstored];
			return;
		}
}

/* Handle notifications for up to ms milliseconds (stop early at READY=1
 * when until_ready). */
static void notify_pump(long ms, bool until_ready)
{
	for (long waited = 0; waited < ms; waited += 20) {
		struct pollfd p = { .fd = notify_fd, .events = POLLIN };
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int) * 8)];
		} u;
		char text[4096], *name;
		struct iovec iov = { .iov_base = text, .iov_len = sizeof(text) - 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *cm;
		int fds[8], nfds = 0;
		ssize_t n;

		if (poll(&p, 1, 20) <= 0)
			continue;
		n = recvmsg(notify_fd, &m, MSG_CMSG_CLOEXEC);
		if (n < 0)
			continue;
		text[n] = '\0';
		for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_type == SCM_RIGHTS) {
				nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				memcpy(fds, CMSG_DATA(cm), (size_t)nfds * sizeof(int));
			}
		name = strstr(text, "FDNAME=");
		if (name) {
			name += 7;
			name[strcspn(name, "\n")] = '\0';
		}
		if (strstr(text, "FDSTORE=1") && name && nfds == 1 && nstored < 64) {
			store_drop(name);        /* systemd replaces a same-named fd */
			snprintf(store[nstored].name, sizeof(store[nstored].name), "%s", name);
			store[nstored++].fd = fds[0];
			continue;
		}
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (strstr(text, "FDSTOREREMOVE=1") && name)
			store_drop(name);
		if (strstr(text, "READY=1")) {
			ready_seen = true;
			if (until_ready)
				return;
		}
	}
}

static pid_t sysd_spawn(const char *sock, const char *notify_path, bool hand_back)
{
	pid_t pid = fork();

	if (pid == 0) {
		char n[16], names[4096] = "", pidbuf[16];
		int i, high[64];

		setenv("NOTIFY_SOCKET", notify_path, 1);
		setenv("FDSTORE", "256", 1);
		unsetenv("LISTEN_FDS");
		if (hand_back && nstored) {
			for (i = 0; i < nstored; i++)
				high[i] = fcntl(store[i].fd, F_DUPFD, 100);
			for (i = 0; i < nstored; i++) {
				dup2(high[i], 3 + i);
				if (i)
					strcat(names, ":");
				strcat(names, store[i].name);
			}
			snprintf(n, sizeof(n), "%d", nstored);
			snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
			setenv("LISTEN_FDS", n, 1);
			setenv("LISTEN_FDNAMES", names, 1);
			setenv("LISTEN_PID", pidbuf, 1);
		}
		char logp[256];
		snprintf(logp, sizeof(logp), "%s/ntfsd.log", tmpdir);
		int lf = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (lf >= 0)
			dup2(lf, 2);
		execl(ntfsd_bin, ntfsd_bin, "--volume", image, "--socket", sock, "--fd-store", "auto",
		      HOLD_OFF_ARGS, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void dump_sysd_log(void)
{
	struct test_daemon fake = { 0 };

	snprintf(fake.log, sizeof(fake.log), "%s/ntfsd.log", tmpdir);
	daemon_dump_log(&fake);
}

static void systemd_store_survives_sigkill(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char sock[100], notify_path[100], logp[256];
	struct shm_file_header h;
	ntfsc *c;
	int st, i, big_pages = -1;

	(void)state;
	make_data(7);
	snprintf(sock, sizeof(sock), "%s/s.sock", tmpdir);
	snprintf(notify_path, sizeof(notify_path), "%s/notify", tmpdir);
	snprintf(logp, sizeof(logp), "%s/ntfsd.log", tmpdir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", notify_path);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(notify_fd >= 0);
	assert_int_equal(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	nstored = 0;
	ready_seen = false;

	sysd_pid = sysd_spawn(sock, notify_path, false);
	notify_pump(10000, true);
	if (!ready_seen) {
		dump_sysd_log();
		fail_msg("ntfsd never said READY=1");
	}
	c = ntfsc_connect(sock);
	assert_non_null(c);
	assert_int_equal(write_pwrite(c), 0);
	assert_int_equal(write_mmap(c), 0);
	notify_pump(300, false);
	/* /big.bin, /small.txt and /frag/a.bin: a data and a page-state segment
	 * each, and the volume's open file description with its lock */
	if (nstored != 7 || !stored_named("volume")) {
		dump_sysd_log();
		fail_msg("systemd's store holds %d fds%s, want 6 segments and the volume",
			 nstored, stored_named("volume") ? "" : " (no \"volume\")");
	}
	assert_true(dirty_pages(sock) > 0);
	kill(sysd_pid, SIGKILL);
	waitpid(sysd_pid, NULL, 0);
	sysd_pid = 0;
	notify_pump(100, false);
	/* the store keeps the volume locked for the next daemon */
	if (!image_locked())
		fail_msg("the volume is not locked after the daemon died with dirty data in "
			 "systemd's store");
	expect_range("/big.bin", BIG_OFF, big_new, BIG_LEN, false);
	if (ntfsc_sync(c) == 0)
		fail_msg("a call on the dead daemon's connection succeeded");
	ntfsc_disconnect(c);

	/* Tamper with /big.bin's page-state header: claim another MFT record.
	 * Its segments must be refused, not written anywhere. */
	for (i = 0; i < nstored; i++) {
		if (!strstr(store[i].name, ".pages"))
			continue;
		assert_int_equal(pread(store[i].fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
		if (h.i_size >= BIG_OFF + BIG_LEN && h.nr_pages >= 256) {
			big_pages = i;
			h.mft_no += 1;
			assert_int_equal(pwrite(store[i].fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
		}
	}
	assert_true(big_pages >= 0);

	ready_seen = false;
	sysd_pid = sysd_spawn(sock, notify_path, true);
	notify_pump(20000, true);
	if (!ready_seen) {
		dump_sysd_log();
		fail_msg("the restarted ntfsd never said READY=1");
	}
	ctl_sync(sock);
	kill(sysd_pid, SIGTERM);
	assert_int_equal(waitpid(sysd_pid, &st, 0), sysd_pid);
	sysd_pid = 0;
	notify_pump(200, false);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		dump_sysd_log();
		fail_msg("the restarted ntfsd did not exit 0");
	}
	if (!log_has(logp, "refusing the segments of MFT record")) {
		dump_sysd_log();
		fail_msg("the tampered segments were not refused");
	}
	expect_range("/big.bin", BIG_OFF, big_new, BIG_LEN, false);
	expect_range("/small.txt", SMALL_OFF, small_new, SMALL_LEN, true);
	expect_range("/frag/a.bin", FRAG_OFF, frag_new, FRAG_LEN, true);
	testvol_expect_ntfsfix_clean(image);
	if (nstored) {
		dump_sysd_log();
		fail_msg("%d fds still stored after a clean stop (first: %s)", nstored,
			 store[0].name);
	}
}

/*
 * Another user plants a socket where the keeper of our volume would
 * listen: the daemon must refuse to use it (it would hand over every
 * segment, or adopt planted ones), say why, and exit 1.
 */
static void planted_keeper_refused(void **state)
{
	const char *args[] = { "--fd-store", "keeper", "--fd-store-dir", store_dir, NULL };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct statx stx;
	int ready[2], st;
	char c;
	unsigned long long btime = 0;

	(void)state;
	/* the other user may reach and write the keeper directory */
	assert_int_equal(chmod(tmpdir, 0711), 0);
	assert_int_equal(chmod(store_dir, 0777), 0);
	assert_int_equal(statx(AT_FDCWD, image, 0, STATX_INO | STATX_BTIME, &stx), 0);
	if (stx.stx_mask & STATX_BTIME)
		btime = (unsigned long long)stx.stx_btime.tv_sec * 1000000000ull +
			stx.stx_btime.tv_nsec;
	assert_true((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
				     "%s/ntfsd-%x.%x-%llx-%llx.fdstore", store_dir,
				     stx.stx_dev_major, stx.stx_dev_minor,
				     (unsigned long long)stx.stx_ino, btime) < sizeof(sa.sun_path));
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	kids[0] = fork();
	assert_true(kids[0] >= 0);
	if (kids[0] == 0) {
		int l;

		if (setgid(65534) || setuid(65534))
			_exit(1);
		l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 4) ||
		    write(ready[1], "r", 1) != 1)
			_exit(2);
		for (;;) {
			int s = accept(l, NULL, NULL);

			if (s >= 0)
				(void)!write(s, "OK", 2);
		}
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail_msg("the planted keeper (uid 65534) could not listen at %s", sa.sun_path);
	close(ready[0]);
	if (daemon_start(&dmn, ntfsd_bin, image, args) != -ECHILD)
		fail_msg("ntfsd started although the keeper socket belongs to another user");
	st = dmn.exit_status;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 1)
		fail_msg("ntfsd exited with wait status 0x%x, want exit 1", st);
	if (!log_has(dmn.log, "not by us"))
		fail_msg("ntfsd did not say why it refused the keeper");
	daemon_stop(&dmn);
	kill(kids[0], SIGKILL);
	waitpid(kids[0], NULL, 0);
	kids[0] = 0;
	unlink(sa.sun_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(keeper_survives_sigkill, setup, teardown),
		cmocka_unit_test_setup_teardown(keeper_adopts_grown_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(systemd_store_survives_sigkill, setup, teardown),
		cmocka_unit_test_setup_teardown(planted_keeper_refused, setup, teardown),
	};

	ntfsd_bin = getenv("NTFSD_BIN");
	ntfsctl_bin = getenv("NTFSCTL_BIN");
	fixture_dir = getenv("NTFSD_FIXTURE_DIR");
	if (!ntfsd_bin || !ntfsctl_bin || !fixture_dir) {
		fprintf(stderr, "NTFSD_BIN, NTFSCTL_BIN and NTFSD_FIXTURE_DIR must be set\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
