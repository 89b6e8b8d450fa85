/*
 * keeper.c — see keeper.h.
 */
#include "keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdmsg.h"
#include "fdstore.h"
#include "log.h"

#define KEEPER_CHECK_MS 5000

struct keeper {
	struct fdstore_entry *e;
	size_t n, cap;
	int vol;                        /* the volume's open file description, or -1 */
	const char *path;               /* the keeper's socket */
};

static void keeper_put(struct keeper *k, const char *name, int fd)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		if (!strcmp(k->e[i].name, name)) {
			close(k->e[i].fd);
			k->e[i].fd = fd;
			return;
		}
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 64;
		struct fdstore_entry *e = realloc(k->e, cap * sizeof(*e));

		if (!e) {
			close(fd);      /* the daemon still holds it */
			return;
		}
		k->e = e;
		k->cap = cap;
	}
	snprintf(k->e[k->n].name, sizeof(k->e[k->n].name), "%.63s", name);
	k->e[k->n++].fd = fd;
}

static void keeper_del(struct keeper *k, const char *name)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		if (!strcmp(k->e[i].name, name)) {
			close(k->e[i].fd);
			k->e[i] = k->e[--k->n];
			return;
		}
}


/* Serve one message; false when the daemon has gone. */
static bool keeper_serve(struct keeper *k, int conn)
{
	char text[MSG_MAX], reply[MSG_MAX];
	size_t i;
	int fd;
	ssize_t n = msg_recv(conn, text, sizeof(text), &fd);

	if (n <= 0)
		return n < 0 && (n == -EAGAIN || n == -EPROTO);
	if (!strncmp(text, "PUT ", 4) && fd >= 0) {
		keeper_put(k, text + 4, fd);
		return true;
	}
	if (!strcmp(text, "VOL") && fd >= 0) {
		/* a new daemon's, or the same description again: keep one */
		if (k->vol >= 0)
			close(k->vol);
		k->vol = fd;
		return true;
	}
	if (fd >= 0)
		close(fd);
	if (!strcmp(text, "GETVOL")) {
		msg_send(conn, k->vol >= 0 ? "VOL" : "NOVOL", k->vol);
	} else if (!strcmp(text, "BYE")) {
		if (k->n == 0) {
			/* let go of the volume before saying so: the daemon's
			 * next owner may open it as soon as the daemon exits */
			if (k->vol >= 0)
				close(k->vol);
			k->vol = -1;
			unlink(k->path);
			msg_send(conn, "GONE", -1);
			_exit(0);
		}
		msg_send(conn, "KEPT", -1);
	} else if (!strncmp(text, "DEL ", 4)) {
		keeper_del(k, text + 4);
	} else if (!strcmp(text, "FETCH")) {
		for (i = 0; i < k->n; i++) {
			snprintf(reply, sizeof(reply), "FD %s", k->e[i].name);
			msg_send(conn, reply, k->e[i].fd);
		}
		msg_send(conn, "END", -1);
	}
	return true;
}

/* The volume file the segments belong to is gone (deleted, or its file
 * system unmounted): nobody can ever write them back. */
static bool volume_gone(int vfd)
{
	struct stat st;

	return fstat(vfd, &st) < 0 || (S_ISREG(st.st_mode) && st.st_nlink == 0);
}

static _Noreturn void keeper_run(int lfd, int vfd, const char *path)
{
	struct keeper k = { .vol = -1, .path = path };
	int conn = -1, r;

	for (;;) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN },
				       { .fd = conn, .events = POLLIN } };

		r = poll(p, conn >= 0 ? 2 : 1, KEEPER_CHECK_MS);
		if (r < 0 && errno != EINTR)
			_exit(1);
		if (r <= 0) {
			if (conn < 0 && volume_gone(vfd)) {
				unlink(path);
				_exit(0);
			}
			continue;
		}
		if (p[0].revents & POLLIN) {
			int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (s >= 0 && !msg_peer_is_us(s)) {
				close(s);
			} else if (s >= 0 && conn >= 0) {
				struct ucred cred = { 0 };
				socklen_t len = sizeof(cred);
				char busy[32];

				getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len);
				snprintf(busy, sizeof(busy), "BUSY %d", (int)cred.pid);
				msg_send(s, busy, -1);
				close(s);
			} else if (s >= 0) {
				conn = s;
				msg_send(conn, "OK 2", -1);
			}
		}
		if (conn >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    !keeper_serve(&k, conn)) {
			close(conn);
			conn = -1;
			if (k.n == 0) {
				unlink(path);
				_exit(0);
			}
		}
	}
}

/* Bind the keeper's socket and fork the keeper (detached: a grandchild in
 * its own session, so it outlives us and is nobody's zombie).  The keeper
 * itself calls listen(), so SO_PEERCRED on a connection names it; it says
 * so through a pipe before we go on. */
int keeper_spawn(const char *path, const char *volume)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lfd, vfd, pipefd[2], status, err;
	mode_t old;
	pid_t pid;
	char c = 0;

	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	vfd = open(volume, O_PATH | O_CLOEXEC);
	if (vfd < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
		err = -errno;
		if (vfd >= 0)
			close(vfd);
		close(lfd);
		return err;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	old = umask(077);
	err = bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old);
	if (!err && chmod(path, 0600) < 0)
		err = -errno;
	if (!err && (pid = fork()) < 0)
		err = -errno;
	if (err) {
		if (err != -EADDRINUSE)
			unlink(path);
		close(lfd);
		close(vfd);
		close(pipefd[0]);
		close(pipefd[1]);
		return err;
	}
	if (pid == 0) {
		int null, keep[3] = { lfd, vfd, pipefd[1] }, i;

		if (fork() != 0)
			_exit(0);
		setsid();
		null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		/* keep lfd, vfd and the pipe: move them to 3, 4, 5 and close the rest */
		for (i = 0; i < 3; i++) {
			int fd = fcntl(keep[i], F_DUPFD_CLOEXEC, 10);

			keep[i] = fd;
		}
		for (i = 0; i < 3; i++)
			dup2(keep[i], 3 + i);
		close_range(6, ~0u, 0);
		lfd = 3;
		vfd = 4;
		signal(SIGHUP, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGPIPE, SIG_IGN);
		signal(SIGTERM, SIG_DFL);
		prctl(PR_SET_NAME, "ntfsd-keeper");
		if (listen(lfd, 4) < 0)
			_exit(1);
		if (write(5, "k", 1) != 1)
			_exit(1);
		close(5);
		keeper_run(lfd, vfd, path);
	}
	close(lfd);
	close(vfd);
	close(pipefd[1]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	/* one byte once the keeper listens; nothing if it died first */
	while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
		;
	close(pipefd[0]);
	return c == 'k' ? 0 : -ECHILD;
}
