/*
 * nbd_error.c — see nbd_error.h.
 */
#include "nbd_error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* fork + execvp with stdin from /dev/null and stdout+stderr appended to
 * log (or /dev/null); the child gets SIGTERM when the test dies. */
static pid_t spawn(const char *const argv[], const char *log)
{
	pid_t parent = getpid(), pid;

	pid = fork();
	if (pid != 0)
		return pid;
	{
		int in = open("/dev/null", O_RDONLY);
		int out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (in < 0 || out < 0)
			_exit(126);
		dup2(in, STDIN_FILENO);
		dup2(out, STDOUT_FILENO);
		dup2(out, STDERR_FILENO);
		if (in > 2)
			close(in);
		if (out > 2)
			close(out);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(125);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
}

/* Wait up to ms for pid; true (and *status) if it ended. */
static bool wait_pid(pid_t pid, long ms, int *status)
{
	long waited = 0;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return true;
		if (r < 0 && errno != EINTR) {
			*status = 0;
			return true;    /* not our child (any more) */
		}
		if (waited >= ms)
			return false;
		sleep_ms(20);
		waited += 20;
	}
}

/* Stop pid: sig (0: none, it is expected to end by itself), wait ms,
 * then SIGTERM (unless that was sig) and SIGKILL.  true if it ended within
 * ms, on sig or by itself with exit 0. */
static bool stop_pid(pid_t *pid, int sig, long ms, int *status)
{
	bool clean = true;

	if (*pid <= 0)
		return true;
	if (sig)
		kill(*pid, sig);
	if (!wait_pid(*pid, ms, status)) {
		clean = false;
		if (sig != SIGTERM)
			kill(*pid, SIGTERM);
		if (sig == SIGTERM || !wait_pid(*pid, 3000, status)) {
			kill(*pid, SIGKILL);
			wait_pid(*pid, 5000, status);
		}
	}
	*pid = 0;
	if (!(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) &&
	    !(WIFSIGNALED(*status) && WTERMSIG(*status) == sig))
		clean = false;
	return clean;
}

static bool is_mounted(const char *mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char point[PATH_MAX];

		/* id parent major:minor root mount-point ... */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", point) == 1 && !strcmp(point, mnt))
			found = true;
	}
	fclose(f);
	return found;
}

/* fusermount3 -u [-z] mnt; true when it exited 0 (within 10 s). */
static bool fusermount(const char *mnt, bool lazy)
{
	const char *argv[] = { "fusermount3", "-u", lazy ? "-z" : mnt, lazy ? mnt : NULL, NULL };
	int st = 0;
	pid_t pid = spawn(argv, NULL);

	if (pid < 0)
		return false;
	if (!wait_pid(pid, 10000, &st)) {
		kill(pid, SIGKILL);
		wait_pid(pid, 5000, &st);
		return false;
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int nbd_error_start(struct nbd_error_dev *d, const char *image)
{
	return nbd_error_start_rate(d, image, "100%");
}

int nbd_error_start_rate(struct nbd_error_dev *d, const char *image, const char *rate)
{
	char tmpl[] = "/tmp/ntfsd-nbd.XXXXXX", real[PATH_MAX], rule[128], pidfile[96];
	char rate_arg[64];
	struct stat ist, st;
	int i, status, err;

	memset(d, 0, sizeof(*d));
	if (stat(image, &ist) < 0)
		return -errno;
	if (!mkdtemp(tmpl))
		return -errno;
	if (!realpath(tmpl, real)) {
		err = -errno;
		rmdir(tmpl);
		return err;
	}
	if (strlen(real) >= sizeof(d->dir)) {
		rmdir(tmpl);
		return -ENAMETOOLONG;
	}
	memcpy(d->dir, real, strlen(real) + 1);
	snprintf(d->sock, sizeof(d->sock), "%s/nbd.sock", d->dir);
	snprintf(d->mnt, sizeof(d->mnt), "%s/mnt", d->dir);
	snprintf(d->file, sizeof(d->file), "%s/nbd", d->mnt);
	snprintf(d->trigger, sizeof(d->trigger), "%s/trigger", d->dir);
	snprintf(d->nbdkit_log, sizeof(d->nbdkit_log), "%s/nbdkit.log", d->dir);
	snprintf(d->nbdfuse_log, sizeof(d->nbdfuse_log), "%s/nbdfuse.log", d->dir);
	snprintf(rule, sizeof(rule), "error-pwrite-file=%s", d->trigger);
	snprintf(rate_arg, sizeof(rate_arg), "error-pwrite-rate=%s", rate);
	snprintf(pidfile, sizeof(pidfile), "%s/nbdkit.pid", d->dir);
	if (mkdir(d->mnt, 0755) < 0) {
		err = -errno;
		goto fail;
	}
	if (is_mounted(d->mnt)) {       /* never mount over a stale mount */
		fprintf(stderr, "nbd_error: something is mounted on %s already\n", d->mnt);
		err = -EBUSY;
		goto fail;
	}

	{
		const char *argv[] = { "nbdkit", "-f", "--exit-with-parent", "-U", d->sock,
				       "-P", pidfile, "--filter=error", "file", image,
				       "error-pwrite=EIO", rate_arg, rule, NULL };

		d->nbdkit = spawn(argv, d->nbdkit_log);
		if (d->nbdkit < 0) {
			err = -errno;
			d->nbdkit = 0;
			goto fail;
		}
	}
	/* nbdkit writes its pidfile once it listens (probing the socket would
	 * make it log a failed handshake) */
	for (i = 0; access(pidfile, F_OK) != 0; i++) {
		if (i == 500 || waitpid(d->nbdkit, &status, WNOHANG) == d->nbdkit) {
			err = i < 500 ? -ECHILD : -ETIMEDOUT;  /* exited, or too slow */
			if (i < 500)
				d->nbdkit = 0;
			goto fail;
		}
		sleep_ms(20);
	}

	{
		char where[sizeof(d->mnt) + 2];
		const char *argv[] = { "nbdfuse", where, "--unix", d->sock, NULL };

		snprintf(where, sizeof(where), "%s/", d->mnt);   /* file name "nbd" */
		d->nbdfuse = spawn(argv, d->nbdfuse_log);
		if (d->nbdfuse < 0) {
			err = -errno;
			d->nbdfuse = 0;
			goto fail;
		}
	}
	for (i = 0;; i++) {
		if (is_mounted(d->mnt))
			d->mounted = true;
		if (d->mounted && stat(d->file, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size == ist.st_size)
			break;
		if (i == 500 || waitpid(d->nbdfuse, &status, WNOHANG) == d->nbdfuse) {
			err = i < 500 ? -ECHILD : -ETIMEDOUT;
			if (i < 500)
				d->nbdfuse = 0;
			goto fail;
		}
		sleep_ms(20);
	}
	return 0;

fail:
	nbd_error_dump_logs(d);
	nbd_error_stop(d);
	return err;
}

int nbd_error_set(struct nbd_error_dev *d, bool on)
{
	if (on) {
		int fd = open(d->trigger, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		if (fd < 0)
			return -errno;
		close(fd);
	} else if (unlink(d->trigger) < 0 && errno != ENOENT) {
		return -errno;
	}
	return 0;
}

int nbd_error_stop(struct nbd_error_dev *d)
{
	bool clean = true;

	if (!d->dir[0])
		return 0;
	if (d->mounted || is_mounted(d->mnt)) {
		if (!fusermount(d->mnt, false)) {
			clean = false;
			fusermount(d->mnt, true);
		}
	}
	/* nbdfuse exits by itself once unmounted; SIGTERM also unmounts. */
	if (d->nbdfuse > 0 && !stop_pid(&d->nbdfuse, 0, 5000, &d->nbdfuse_status)) {
		clean = false;
	}
	if (is_mounted(d->mnt)) {
		clean = false;
		fusermount(d->mnt, true);
	}
	d->mounted = false;
	if (d->nbdkit > 0 && !stop_pid(&d->nbdkit, SIGTERM, 5000, &d->nbdkit_status))
		clean = false;
	unlink(d->trigger);
	unlink(d->sock);
	unlink(d->nbdkit_log);
	unlink(d->nbdfuse_log);
	{
		char pidfile[96];

		snprintf(pidfile, sizeof(pidfile), "%s/nbdkit.pid", d->dir);
		unlink(pidfile);
	}
	rmdir(d->mnt);
	if (rmdir(d->dir) < 0)
		clean = false;
	d->dir[0] = '\0';
	return clean ? 0 : -EBUSY;
}

void nbd_error_abort(struct nbd_error_dev *d)
{
	if (d->nbdfuse > 0)
		kill(d->nbdfuse, SIGKILL);
	if (d->nbdkit > 0)
		kill(d->nbdkit, SIGKILL);
}

static void dump(const char *what, const char *path)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return;
	fprintf(stderr, "---- %s (%s) ----\n", what, path);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of %s ----\n", what);
	fclose(f);
}

void nbd_error_dump_logs(const struct nbd_error_dev *d)
{
	if (!d->dir[0])
		return;
	dump("nbdkit log", d->nbdkit_log);
	dump("nbdfuse log", d->nbdfuse_log);
}
