/*
 * daemon.c — see daemon.h.
 */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static bool socket_ready(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

int daemon_spawn(struct test_daemon *d, const char *ntfsd, const char *volume,
		 const char *const *extra_args)
{
	const char *argv[32], *env_args;
	char *env_copy = NULL;
	int n = 0, i, logfd;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/ntfsd-test.XXXXXX");
	if (!mkdtemp(d->dir)) {
		d->dir[0] = '\0';
		return -errno;
	}
	snprintf(d->socket, sizeof(d->socket), "%s/ntfsd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/ntfsd.log", d->dir);
	argv[n++] = ntfsd;
	argv[n++] = "--volume";
	argv[n++] = volume;
	argv[n++] = "--socket";
	argv[n++] = d->socket;
	/* the segment keeper's socket goes in our directory, so stopping the
	 * daemon can find it (extra args may name another one) */
	argv[n++] = "--fd-store-dir";
	argv[n++] = d->dir;
	for (i = 0; extra_args && extra_args[i] && n < 24; i++)
		argv[n++] = extra_args[i];
	/* NTFSD_TEST_DAEMON_ARGS: more options for every daemon a test starts
	 * (meson runs the write tests once per I/O engine this way). */
	env_args = getenv("NTFSD_TEST_DAEMON_ARGS");
	if (env_args && (env_copy = strdup(env_args))) {
		char *save = NULL, *tok;

		for (tok = strtok_r(env_copy, " ", &save); tok && n < 30;
		     tok = strtok_r(NULL, " ", &save))
			argv[n++] = tok;
	}
	argv[n] = NULL;
	logfd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (logfd < 0) {
		free(env_copy);
		return -errno;
	}
	d->pid = fork();
	if (d->pid < 0) {
		int e = errno;

		d->pid = 0;
		close(logfd);
		free(env_copy);
		return -e;
	}
	if (d->pid == 0) {
		dup2(logfd, STDERR_FILENO);
		execv(ntfsd, (char *const *)argv);
		_exit(127);
	}
	close(logfd);
	free(env_copy);
	return 0;
}

int daemon_wait_ready(struct test_daemon *d, long timeout_ms)
{
	for (long waited = 0; waited <= timeout_ms; waited += 50) {
		int st;

		if (socket_ready(d->socket))
			return 0;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			d->exit_status = st;
			return -ECHILD;
		}
		sleep_ms(50);
	}
	return -ETIMEDOUT;
}

int daemon_start(struct test_daemon *d, const char *ntfsd, const char *volume,
		 const char *const *extra_args)
{
	int err = daemon_spawn(d, ntfsd, volume, extra_args);

	if (err)
		return err;
	err = daemon_wait_ready(d, 10000);
	if (err == -ECHILD) {
		daemon_dump_log(d);
	} else if (err) {
		daemon_dump_log(d);
		daemon_stop(d);
	}
	return err;
}

int daemon_kill9(struct test_daemon *d)
{
	int st = 0;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGKILL);
	while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
	d->exit_status = st;
	return st;
}

int keeper_kill_in(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *de;
	int killed = 0;

	if (!dh)
		return 0;
	while ((de = readdir(dh))) {
		size_t len = strlen(de->d_name);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		int fd;

		if (len < 8 || strcmp(de->d_name + len - 8, ".fdstore"))
			continue;
		if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, de->d_name) >=
		    (int)sizeof(sa.sun_path))
			continue;
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.pid > 0) {
			kill(cred.pid, SIGKILL);
			killed++;
		}
		if (fd >= 0)
			close(fd);
		unlink(sa.sun_path);
	}
	closedir(dh);
	return killed;
}

bool daemon_stop(struct test_daemon *d)
{
	int st = 0, i;
	bool ok = true;

	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		for (i = 0; i < 100; i++) {
			if (waitpid(d->pid, &st, WNOHANG) == d->pid)
				break;
			sleep_ms(50);
		}
		if (i == 100) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			ok = false;
		}
		d->exit_status = st;
		ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
		d->pid = 0;
	}
	if (d->dir[0]) {
		/* a keeper still holding segments (a daemon that died or stopped
		 * with dirty data) must not outlive the test */
		keeper_kill_in(d->dir);
		unlink(d->socket);
		unlink(d->log);
		rmdir(d->dir);
		d->dir[0] = '\0';
	}
	return ok;
}

void daemon_dump_log(const struct test_daemon *d)
{
	char buf[4096];
	FILE *f = fopen(d->log, "r");
	size_t n;

	if (!f)
		return;
	fprintf(stderr, "---- ntfsd log (%s) ----\n", d->log);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(f);
}

bool daemon_test_env(const char **ntfsd, const char **ntfsctl, const char **fixture_dir)
{
	*ntfsd = getenv("NTFSD_BIN");
	*ntfsctl = getenv("NTFSCTL_BIN");
	*fixture_dir = getenv("NTFSD_FIXTURE_DIR");
	if (!*ntfsd || !*ntfsctl || !*fixture_dir) {
		fprintf(stderr, "NTFSD_BIN, NTFSCTL_BIN and NTFSD_FIXTURE_DIR must be set: run "
				"through meson test\n");
		return false;
	}
	return true;
}

void daemon_ctl_argv(const char **argv, int max, const char *ntfsctl,
		     const struct test_daemon *d, va_list ap)
{
	int n = 0;

	argv[n++] = ntfsctl;
	argv[n++] = "-s";
	argv[n++] = d->socket;
	while (n < max - 1 && (argv[n] = va_arg(ap, const char *)))
		n++;
	argv[n] = NULL;
}
