/*
 * testvol.c — a scratch volume for a test; see testvol.h for what it
 * promises.
 */
#include "testvol.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "oracle.h"

/* ------------------------------------------------------------------ */
/* files and processes                                                  */
/* ------------------------------------------------------------------ */

bool testvol_find_tool(const char *name, char *out, size_t len)
{
	const char *env = getenv("PATH");
	char paths[4096];
	char *save = NULL, *d;

	snprintf(paths, sizeof(paths), "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
		 "/sbin:/bin", env ? env : "");
	for (d = strtok_r(paths, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", d, name);
		if (*d && access(out, X_OK) == 0)
			return true;
	}
	out[0] = '\0';
	return false;
}

void testvol_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool testvol_wait_child(pid_t pid, long ms, int *status)
{
	for (long t = 0; t <= ms; t += 20) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid || (r < 0 && errno != EINTR))
			return true;  /* exited, or already reaped / not ours */
		testvol_sleep_ms(20);
	}
	return false;
}

/* write(2) all of len, retrying EINTR; 0 or -errno (-EIO for no progress). */
static int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int testvol_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err;

	if (fd < 0)
		return -errno;
	err = write_all(fd, data, len);
	if (close(fd) && !err)
		err = -errno;
	if (err)
		errno = -err;
	return err;
}

uint8_t *testvol_read_whole(const char *path, size_t *len)
{
	struct stat st;
	size_t cap, got = 0;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC), e;

	if (fd < 0)
		return NULL;
	/* a byte more than the file holds, so that the read seeing the end
	 * needs no realloc */
	cap = (fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 65535) + 1;
	buf = malloc(cap + 1);
	while (buf) {
		ssize_t n;

		if (got == cap) {
			uint8_t *more = realloc(buf, 2 * cap + 1);

			if (!more)
				break;
			buf = more;
			cap *= 2;
		}
		n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			close(fd);
			buf[got] = '\0';
			*len = got;
			return buf;
		}
		got += (size_t)n;
	}
	e = buf ? errno : ENOMEM;
	free(buf);
	close(fd);
	errno = e;
	return NULL;
}

int testvol_copy_file(const char *from, const char *to)
{
	enum { CHUNK = 1 << 20 };
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, err = 0;
	uint8_t *buf = malloc(CHUNK);

	if (in < 0 || !buf) {
		err = in < 0 ? -errno : -ENOMEM;
		goto out;
	}
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		err = -errno;
		goto out;
	}
	for (;;) {
		ssize_t n = read(in, buf, CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
		err = write_all(out, buf, (size_t)n);
		if (err)
			break;
	}
	if (close(out) && !err)
		err = -errno;
out:
	free(buf);
	if (in >= 0)
		close(in);
	if (err)
		errno = -err;
	return err;
}

int testvol_snapshot(const char *img, char *out, size_t len)
{
	if ((size_t)snprintf(out, len, "%s.snapshot", img) >= len)
		return -ENAMETOOLONG;
	return testvol_copy_file(img, out);
}

/* ------------------------------------------------------------------ */
/* the tool log                                                         */
/* ------------------------------------------------------------------ */

void testvol_log_note(const struct testvol *tv, const char *fmt, ...)
{
	FILE *f = fopen(tv->log, "a");
	va_list ap;

	if (!f)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

void testvol_print_log_tail(const struct testvol *tv)
{
	char buf[4001];
	int fd = open(tv->log, O_RDONLY | O_CLOEXEC);
	off_t size;
	ssize_t n;

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > 4000 ? size - 4000 : 0, SEEK_SET);
	n = read(fd, buf, 4000);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* Straight to stderr: cmocka's print_error truncates long messages. */
	fflush(stdout);
	fprintf(stderr, "---- tool output (%s) ----\n%s\n--------\n", tv->log, buf);
}

/* Start argv as a child with stdin from /dev/null, stdout to out_path (or
 * the log) and stderr to the log; its pid, or -1. */
static pid_t spawn_logged(const struct testvol *tv, const char *out_path, char *const argv[])
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		int log = open(tv->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int out = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : log;

		if (null < 0 || log < 0 || out < 0)
			_exit(126);
		dup2(null, 0);
		dup2(out, 1);
		dup2(log, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid < 0 ? -1 : pid;
}

int testvol_run(const struct testvol *tv, const char *out_path, char *const argv[])
{
	pid_t pid = spawn_logged(tv, out_path, argv);
	int status;

	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ------------------------------------------------------------------ */
/* the temp dir and the image                                           */
/* ------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP || type == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

int testvol_create(struct testvol *tv, const char *tag, const char *const *need)
{
	const char *tmp = getenv("TMPDIR");
	char path[256];

	memset(tv, 0, sizeof(*tv));
	snprintf(tv->dir, sizeof(tv->dir), "%s/ntfsd-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
	if (!mkdtemp(tv->dir)) {
		print_error("mkdtemp %s: %s\n", tv->dir, strerror(errno));
		tv->dir[0] = '\0';
		return -1;
	}
	snprintf(tv->img, sizeof(tv->img), "%s/pristine.img", tv->dir);
	snprintf(tv->scratch, sizeof(tv->scratch), "%s/scratch.img", tv->dir);
	snprintf(tv->mnt, sizeof(tv->mnt), "%s/mnt", tv->dir);
	snprintf(tv->log, sizeof(tv->log), "%s/tools.log", tv->dir);
	testvol_find_tool("rm", tv->tool_rm, sizeof(tv->tool_rm));
	for (size_t i = 0; need && need[i]; i++)
		if (!testvol_find_tool(need[i], path, sizeof(path)))
			SETUP_FAIL("required tool %s not found (install ntfs-3g)", need[i]);
	if (!testvol_find_tool("ntfs-3g", tv->tool_ntfs3g, sizeof(tv->tool_ntfs3g)))
		SETUP_FAIL("required tool ntfs-3g not found (install ntfs-3g)");
	if (testvol_find_tool("fusermount", tv->tool_umount, sizeof(tv->tool_umount)) ||
	    testvol_find_tool("fusermount3", tv->tool_umount, sizeof(tv->tool_umount)))
		tv->umount_is_fusermount = true;
	else if (!testvol_find_tool("umount", tv->tool_umount, sizeof(tv->tool_umount)))
		SETUP_FAIL("required tool fusermount (or umount) not found");
	if (mkdir(tv->mnt, 0755) < 0)
		SETUP_FAIL("mkdir %s: %s", tv->mnt, strerror(errno));
	return 0;
fail:
	testvol_destroy(tv);
	return -1;
}

void testvol_destroy(struct testvol *tv)
{
	if (tv->mounted || tv->ntfs3g_pid > 0)
		testvol_unmount(tv);
	if (tv->dir[0] && !tv->mounted)
		nftw(tv->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tv->dir[0] = '\0';
}

int testvol_mkntfs(struct testvol *tv, uint64_t size, unsigned cluster_size)
{
	char mkntfs[256], cluster[16];
	int fd = open(tv->img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || close(fd) < 0) {
		print_error("cannot create %s: %s\n", tv->img, strerror(errno));
		return -1;
	}
	snprintf(cluster, sizeof(cluster), "%u", cluster_size);
	if (!testvol_find_tool("mkntfs", mkntfs, sizeof(mkntfs)))
		snprintf(mkntfs, sizeof(mkntfs), "mkntfs");
	{
		char *argv[] = { mkntfs, "-F", "-Q", "-q", "-c", cluster, tv->img, NULL };

		return testvol_run(tv, NULL, argv) ? -1 : 0;
	}
}

int testvol_ntfscp(const struct testvol *tv, const char *img, const void *data, size_t len,
		   const char *path, const char *stream)
{
	char ntfscp[256], src[300];
	char *argv[8];
	int i = 0;

	snprintf(src, sizeof(src), "%s/ntfscp.src", tv->dir);
	if (testvol_write_file(src, data, len)) {
		testvol_log_note(tv, "writing %s: %s", src, strerror(errno));
		return -1;
	}
	if (!testvol_find_tool("ntfscp", ntfscp, sizeof(ntfscp)))
		snprintf(ntfscp, sizeof(ntfscp), "ntfscp");
	argv[i++] = ntfscp;
	if (stream) {
		argv[i++] = "-N";
		argv[i++] = (char *)stream;
	}
	argv[i++] = (char *)img;
	argv[i++] = src;
	argv[i++] = (char *)path;
	argv[i] = NULL;
	return testvol_run(tv, NULL, argv);
}

/* ------------------------------------------------------------------ */
/* ntfs-3g mounts                                                       */
/* ------------------------------------------------------------------ */

static bool is_mounted(const struct testvol *tv)
{
	struct stat a, b;

	return stat(tv->mnt, &a) == 0 && stat(tv->dir, &b) == 0 && a.st_dev != b.st_dev;
}

int testvol_unmount(struct testvol *tv)
{
	int ret = 0, status = 0;

	if (tv->mounted) {
		char *argv[4] = { tv->tool_umount, tv->umount_is_fusermount ? "-u" : tv->mnt,
				  tv->umount_is_fusermount ? tv->mnt : NULL, NULL };

		for (int tries = 0; tries < 50 && is_mounted(tv); tries++) {
			if (testvol_run(tv, NULL, argv) == 0)
				break;
			testvol_sleep_ms(100);
		}
		if (is_mounted(tv)) {
			testvol_log_note(tv, "could not unmount %s", tv->mnt);
			ret = -1;
		} else {
			tv->mounted = false;
		}
	}
	if (tv->ntfs3g_pid > 0) {
		/* ntfs-3g writes the volume back after the unmount: wait for it. */
		if (!testvol_wait_child(tv->ntfs3g_pid, 30000, &status)) {
			testvol_log_note(tv, "ntfs-3g did not exit after unmount; terminating it");
			kill(tv->ntfs3g_pid, SIGTERM);
			if (!testvol_wait_child(tv->ntfs3g_pid, 5000, &status)) {
				kill(tv->ntfs3g_pid, SIGKILL);
				testvol_wait_child(tv->ntfs3g_pid, 5000, &status);
			}
			ret = -1;
		} else if (tv->ntfs3g_exit_checked && (!WIFEXITED(status) || WEXITSTATUS(status))) {
			testvol_log_note(tv, "ntfs-3g exited with status 0x%x", status);
			ret = -1;
		}
		tv->ntfs3g_pid = 0;
	}
	return ret;
}

int testvol_mount(struct testvol *tv, const char *img, const char *opts)
{
	char *argv[] = { tv->tool_ntfs3g, "-o", (char *)opts, (char *)img, tv->mnt, NULL };
	pid_t pid;

	/* never over a stale mount: what it serves is not img */
	if (tv->mounted || tv->ntfs3g_pid > 0 || is_mounted(tv)) {
		testvol_log_note(tv, "%s is mounted already: refusing to mount over it", tv->mnt);
		return -1;
	}
	pid = spawn_logged(tv, NULL, argv);
	if (pid < 0)
		return -1;
	tv->ntfs3g_pid = pid;
	for (long t = 0; t < 20000; t += 20) {
		int status;

		if (is_mounted(tv)) {
			tv->mounted = true;
			return 0;
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			tv->ntfs3g_pid = 0;
			testvol_log_note(tv, "ntfs-3g exited (status 0x%x) before the mount "
					 "appeared", status);
			return -1;
		}
		testvol_sleep_ms(20);
	}
	testvol_log_note(tv, "ntfs-3g: the mount did not appear within 20 s");
	testvol_unmount(tv);
	return -1;
}

uint8_t *testvol_mount_read(struct testvol *tv, const char *img, const char *path,
			    const char *stream, size_t *len)
{
	char p[700];
	uint8_t *data = NULL;

	if (testvol_mount(tv, img, "ro,no_detach,streams_interface=windows")) {
		testvol_print_log_tail(tv);
		return NULL;
	}
	snprintf(p, sizeof(p), "%s%s%s%s", tv->mnt, path, stream ? ":" : "", stream ? stream : "");
	data = testvol_read_whole(p, len);
	if (!data)
		testvol_log_note(tv, "reading %s through the mount: %s", p, strerror(errno));
	if (testvol_unmount(tv)) {
		free(data);
		data = NULL;
	}
	if (!data)
		testvol_print_log_tail(tv);
	return data;
}

int testvol_mount_write(struct testvol *tv, const char *img, const char *path, uint64_t off,
			const void *buf, size_t len)
{
	char p[700];
	int fd, ret = 0;

	if (testvol_mount(tv, img, "no_detach")) {
		testvol_print_log_tail(tv);
		return -1;
	}
	snprintf(p, sizeof(p), "%s%s", tv->mnt, path);
	fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
		testvol_log_note(tv, "writing %s through the mount: %s", p, strerror(errno));
		ret = -1;
	}
	if (fd >= 0 && close(fd))
		ret = -1;
	if (testvol_unmount(tv))
		ret = -1;
	if (ret)
		testvol_print_log_tail(tv);
	return ret;
}

int testvol_fill_free(struct testvol *tv, const char *img, uint8_t byte, uint64_t *filled)
{
	enum { CHUNK = 1 << 20 };
	char p[700];
	uint8_t *buf = malloc(CHUNK);
	uint64_t total = 0;
	int fd, ret = 0;

	*filled = 0;
	if (!buf)
		return -1;
	memset(buf, byte, CHUNK);
	if (testvol_mount(tv, img, "no_detach")) {
		free(buf);
		testvol_print_log_tail(tv);
		return -1;
	}
	snprintf(p, sizeof(p), "%s/.free-space-fill", tv->mnt);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		testvol_log_note(tv, "creating %s: %s", p, strerror(errno));
		ret = -1;
	}
	/* whole chunks, then smaller pieces down to a cluster: until ENOSPC */
	for (size_t n = CHUNK; fd >= 0 && n >= 4096;) {
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w > 0) {
			total += (uint64_t)w;
			continue;
		}
		if (w < 0 && errno != ENOSPC) {
			testvol_log_note(tv, "filling %s: %s", p, strerror(errno));
			ret = -1;
			break;
		}
		n /= 2;
	}
	if (fd >= 0) {
		if (fsync(fd))
			ret = -1;
		if (close(fd))
			ret = -1;
		if (unlink(p)) {
			testvol_log_note(tv, "removing %s: %s", p, strerror(errno));
			ret = -1;
		}
	}
	if (testvol_unmount(tv))
		ret = -1;
	if (ret)
		testvol_print_log_tail(tv);
	free(buf);
	*filled = total;
	return ret;
}

/* ------------------------------------------------------------------ */
/* per test, and when a test hangs or aborts                            */
/* ------------------------------------------------------------------ */

int testvol_scratch_setup(struct testvol *tv, unsigned timeout)
{
	alarm(timeout);
	if (testvol_copy_file(tv->img, tv->scratch)) {
		print_error("cannot copy %s to %s: %s\n", tv->img, tv->scratch, strerror(errno));
		return -1;
	}
	return 0;
}

void testvol_scratch_teardown(struct testvol *tv)
{
	if (tv->mounted || tv->ntfs3g_pid > 0)
		testvol_unmount(tv);
	alarm(0);
	unlink(tv->scratch);
}

static struct testvol *caught;
static const char *timeout_msg;
static size_t timeout_msg_len;

/* fork + execv + waitpid: async-signal-safe. */
static void spawn_wait(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

static void emergency_cleanup(void)
{
	struct testvol *tv = caught;

	if (!tv)
		return;
	if (tv->mounted && tv->tool_umount[0]) {
		char *const argv[] = { tv->tool_umount, tv->umount_is_fusermount ? "-u" : tv->mnt,
				       tv->umount_is_fusermount ? tv->mnt : NULL, NULL };

		spawn_wait(argv);
	}
	if (tv->ntfs3g_pid > 0)
		kill(tv->ntfs3g_pid, SIGKILL);
	if (tv->dir[0] && tv->tool_rm[0]) {
		char *const argv[] = { tv->tool_rm, "-rf", "--", tv->dir, NULL };

		spawn_wait(argv);
	}
}

static void on_timeout(int sig)
{
	ssize_t n;

	(void)sig;
	n = write(2, timeout_msg, timeout_msg_len);
	(void)n;
	emergency_cleanup();
	_exit(1);
}

static void on_abort(int sig)
{
	emergency_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

void testvol_catch_timeout(struct testvol *tv, const char *msg)
{
	struct sigaction sa = { .sa_handler = on_timeout };

	caught = tv;
	timeout_msg = msg;
	timeout_msg_len = strlen(msg);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
}

void testvol_catch_abort(struct testvol *tv)
{
	struct sigaction sa = { .sa_handler = on_abort };

	caught = tv;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGABRT, &sa, NULL);
}

/* ------------------------------------------------------------------ */
/* what ntfs-3g says                                                    */
/* ------------------------------------------------------------------ */

void testvol_cat(const char *img, const char *path, char **data, size_t *len)
{
	int err = oracle_cat(img, path, NULL, data, len);

	if (err)
		fail_msg("ntfscat %s %s: %s (%s)", img, path, strerror(-err),
			 oracle_last_stderr());
}

void testvol_expect_ntfsfix_clean(const char *img)
{
	const char *argv[] = { "ntfsfix", "-n", img, NULL };
	char *out = NULL;
	int status = -1;
	int err = oracle_run(argv, &out, NULL, &status);

	if (err || status || !strstr(out, "processed successfully") || strstr(out, "FAILED") ||
	    strstr(out, "nconsisten")) {
		print_error("ntfsfix -n %s: %s, exit status %d\n%s\n%s\n", img,
			    err ? strerror(-err) : "ran", status, out ? out : "",
			    oracle_last_stderr());
		free(out);
		fail_msg("ntfsfix -n reports problems on %s", img);
	}
	free(out);
}

long testvol_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');  /* the name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &st) != 2)
		return -1;
	return (long)(ut + st);
}
