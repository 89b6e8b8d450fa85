/*
 * fdstore.c — see fdstore.h.  The keeper's protocol is one SOCK_SEQPACKET
 * message per verb: "PUT name" (+ one fd), "DEL name", "FETCH" answered by
 * "FD name" (+ one fd) per entry and "END"; "VOL" (+ the volume's fd) to
 * hold the volume's open file description, "GETVOL" answered by "VOL" (+
 * fd) or "NOVOL"; "BYE" at a clean stop, answered by "GONE" once the
 * keeper has let go of the volume (nothing stored: it exits) or "KEPT"
 * (segments stay stored, and the volume with them).  On connect the keeper
 * says "OK 2" (the version; a keeper from before the volume verbs says
 * "OK") or "BUSY PID" naming the daemon it serves.  Both ends check the
 * other's uid (SO_PEERCRED): only a peer with the same uid is served, and a
 * daemon never talks to a keeper socket some other user planted in the
 * shared directory.
 */
#include "fdstore.h"

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
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"

#define MSG_MAX 128
#define KEEPER_CHECK_MS 5000
#define KEEPER_REPLY_MS 5000    /* how long a daemon waits for the keeper's answer */

struct fdstore {
	enum fdstore_mode mode;
	int sock;                       /* keeper connection */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char what[160];
	const char *volume;
	bool keeper_v2;                 /* the keeper speaks VOL, GETVOL and BYE */
	bool volume_stored;             /* systemd: the volume's fd is in the store */
};

int fdstore_parse_mode(const char *s, enum fdstore_mode *out)
{
	const char *fd = getenv("FDSTORE");

	if (!s || !strcmp(s, "auto"))
		*out = fd && strtoul(fd, NULL, 10) > 0 && getenv("NOTIFY_SOCKET") ?
			FDSTORE_SYSTEMD : FDSTORE_KEEPER;
	else if (!strcmp(s, "systemd"))
		*out = FDSTORE_SYSTEMD;
	else if (!strcmp(s, "keeper"))
		*out = FDSTORE_KEEPER;
	else if (!strcmp(s, "none"))
		*out = FDSTORE_NONE;
	else
		return -1;
	return 0;
}

const char *fdstore_mode_name(enum fdstore_mode mode)
{
	return mode == FDSTORE_SYSTEMD ? "systemd" : mode == FDSTORE_KEEPER ? "keeper" : "none";
}

/* ---- one message, with at most one fd ---- */

static int msg_send(int sock, const char *text, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), &fd, sizeof(int));
	}
	while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* Receive one message into text (NUL-terminated); *fd gets its fd or -1.
 * Returns the length, 0 at end of stream, or -errno. */
static ssize_t msg_recv(int sock, char *text, size_t size, int *fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} u;
	struct iovec iov = { .iov_base = text, .iov_len = size - 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k, nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[4];

			memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
			for (k = 0; k < nfds; k++) {
				if (*fd < 0)
					*fd = fds[k];
				else
					close(fds[k]);   /* one fd per message, no more */
			}
		}
	}
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	text[n] = '\0';
	return n;
}

/* msg_recv, giving up (-ETIMEDOUT) when nothing comes within
 * KEEPER_REPLY_MS: a keeper that does not answer must not hang a daemon. */
static ssize_t msg_recv_timed(int sock, char *text, size_t size, int *fd)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	int r;

	*fd = -1;
	do
		r = poll(&p, 1, KEEPER_REPLY_MS);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	return msg_recv(sock, text, size, fd);
}

/* ---- the keeper process ---- */

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

static bool peer_is_us(int sock)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
	       cred.uid == getuid();
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

			if (s >= 0 && !peer_is_us(s)) {
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
static int keeper_spawn(const char *path, const char *volume)
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

static int keeper_connect(struct fdstore *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char text[MSG_MAX];
	int fd = -1, attempt, err = 0;
	ssize_t n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
	for (attempt = 0; attempt < 3; attempt++) {
		s->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (s->sock < 0)
			return -errno;
		if (connect(s->sock, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		err = -errno;
		close(s->sock);
		s->sock = -1;
		if (err != -ENOENT && err != -ECONNREFUSED)
			break;
		if (err == -ECONNREFUSED)
			unlink(s->path);        /* a keeper that died: its socket is stale */
		err = keeper_spawn(s->path, s->volume);
		if (err && err != -EADDRINUSE)
			break;
	}
	if (s->sock < 0) {
		log_error("segment store: cannot reach or start the keeper at %s: %s", s->path,
			  strerror(-err));
		return err ? err : -EIO;
	}
	/* /dev/shm is everyone's: a socket someone else planted there must
	 * never see our segments nor hand us theirs */
	if (!peer_is_us(s->sock)) {
		struct ucred cred = { 0 };
		socklen_t len = sizeof(cred);

		getsockopt(s->sock, SOL_SOCKET, SO_PEERCRED, &cred, &len);
		log_error("segment store: %s is served by uid %u, not by us (uid %u): refusing it",
			  s->path, (unsigned)cred.uid, (unsigned)getuid());
		close(s->sock);
		s->sock = -1;
		return -EPERM;
	}
	n = msg_recv_timed(s->sock, text, sizeof(text), &fd);
	if (fd >= 0)
		close(fd);
	if (n > 0 && (!strcmp(text, "OK") || !strcmp(text, "OK 2"))) {
		s->keeper_v2 = !strcmp(text, "OK 2");
		if (!s->keeper_v2)
			log_warning("segment store: the keeper at %s is from an older ntfsd: it "
				    "does not hold the volume's lock across a crash", s->path);
		return 0;
	}
	close(s->sock);
	s->sock = -1;
	if (n > 0 && !strncmp(text, "BUSY", 4)) {
		int pid = atoi(text + 4);

		if (pid > 0)
			log_notice("segment store: ntfsd (pid %d) is connected to the keeper at %s",
				   pid, s->path);
		else
			log_notice("segment store: another ntfsd is connected to the keeper at %s",
				   s->path);
		return -EBUSY;
	}
	log_error("segment store: the keeper at %s did not answer", s->path);
	return -EPROTO;
}

int fdstore_open(enum fdstore_mode mode, const char *dir, const char *volume,
		 struct fdstore **out)
{
	struct fdstore *s = calloc(1, sizeof(*s));
	struct statx stx;
	struct stat st;
	unsigned long long btime = 0;
	int err;

	if (!s)
		return -ENOMEM;
	s->mode = mode;
	s->sock = -1;
	s->volume = volume;
	if (mode == FDSTORE_KEEPER) {
		err = stat(dir, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
		if (err) {
			log_error("segment store: %s: %s", dir, strerror(-err));
			free(s);
			return err;
		}
		/* The volume file's identity: device, inode and birth time, so a
		 * new file that happens to reuse the inode is another volume. */
		if (statx(AT_FDCWD, volume, 0, STATX_INO | STATX_BTIME, &stx) < 0) {
			err = -errno;
			log_error("%s: cannot open the volume: %s", volume, strerror(errno));
			free(s);
			return err;
		}
		if (stx.stx_mask & STATX_BTIME)
			btime = (unsigned long long)stx.stx_btime.tv_sec * 1000000000ull +
				stx.stx_btime.tv_nsec;
		if ((size_t)snprintf(s->path, sizeof(s->path), "%s/ntfsd-%x.%x-%llx-%llx.fdstore",
				     dir, stx.stx_dev_major, stx.stx_dev_minor,
				     (unsigned long long)stx.stx_ino, btime) >= sizeof(s->path)) {
			log_error("segment store: the directory %s is too long for a socket path", dir);
			free(s);
			return -ENAMETOOLONG;
		}
		err = keeper_connect(s);
		if (err) {
			free(s);
			return err;
		}
		snprintf(s->what, sizeof(s->what), "keeper at %s", s->path);
	} else {
		snprintf(s->what, sizeof(s->what), "%s",
			 mode == FDSTORE_SYSTEMD ? "systemd's file-descriptor store" : "none");
	}
	*out = s;
	return 0;
}

enum fdstore_mode fdstore_mode(const struct fdstore *s)
{
	return s ? s->mode : FDSTORE_NONE;
}

const char *fdstore_describe(const struct fdstore *s)
{
	return s ? s->what : "none";
}

int fdstore_fetch(struct fdstore *s, struct fdstore_entry **out, size_t *n)
{
	struct fdstore_entry *e = NULL;
	size_t cap = 0;
	char text[MSG_MAX];
	int fd, err;
	ssize_t len;

	*out = NULL;
	*n = 0;
	if (!s || s->mode != FDSTORE_KEEPER)
		return 0;
	err = msg_send(s->sock, "FETCH", -1);
	while (!err) {
		len = msg_recv(s->sock, text, sizeof(text), &fd);
		if (len <= 0) {
			err = len ? (int)len : -EPIPE;
			break;
		}
		if (!strcmp(text, "END"))
			break;
		if (strncmp(text, "FD ", 3) || fd < 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (*n == cap) {
			struct fdstore_entry *ne;

			cap = cap ? cap * 2 : 64;
			ne = realloc(e, cap * sizeof(*e));
			if (!ne) {
				close(fd);
				err = -ENOMEM;
				break;
			}
			e = ne;
		}
		snprintf(e[*n].name, sizeof(e[*n].name), "%.63s", text + 3);
		e[(*n)++].fd = fd;
	}
	if (err) {
		log_error("segment store: fetching from the %s failed: %s", s->what, strerror(-err));
		while (*n)
			close(e[--*n].fd);
		free(e);
		return err;
	}
	*out = e;
	return 0;
}

int fdstore_put(struct fdstore *s, const char *name, int fd)
{
	char text[MSG_MAX];
	int err = 0;

	if (!s || s->mode == FDSTORE_NONE)
		return 0;
	if (s->mode == FDSTORE_SYSTEMD) {
		snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
		err = sd_pid_notify_with_fds(0, 0, text, &fd, 1);
		err = err < 0 ? err : 0;
	} else {
		snprintf(text, sizeof(text), "PUT %s", name);
		err = msg_send(s->sock, text, fd);
	}
	if (err)
		log_warning("segment store: cannot store %s in the %s: %s (its dirty pages would "
			    "not survive a crash)", name, s->what, strerror(-err));
	return err;
}

void fdstore_remove(struct fdstore *s, const char *name)
{
	char text[MSG_MAX];

	if (!s || s->mode == FDSTORE_NONE)
		return;
	if (s->mode == FDSTORE_SYSTEMD) {
		snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
		sd_notify(0, text);
	} else {
		snprintf(text, sizeof(text), "DEL %s", name);
		msg_send(s->sock, text, -1);
	}
}

int fdstore_take_volume(struct fdstore *s)
{
	char text[MSG_MAX];
	int fd = -1;
	ssize_t n;

	if (!s || s->mode != FDSTORE_KEEPER || !s->keeper_v2 || s->sock < 0)
		return -1;
	if (msg_send(s->sock, "GETVOL", -1))
		return -1;
	n = msg_recv_timed(s->sock, text, sizeof(text), &fd);
	if (n > 0 && !strcmp(text, "VOL") && fd >= 0)
		return fd;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		log_warning("segment store: the keeper at %s did not say whether it holds the "
			    "volume: %s", s->path, n ? strerror((int)-n) : "it hung up");
	return -1;
}

int fdstore_hold_volume(struct fdstore *s, int fd)
{
	int err = 0;

	if (!s || s->mode == FDSTORE_NONE)
		return 0;
	if (s->mode == FDSTORE_SYSTEMD) {
		/* one volume in the store: drop what a previous daemon stored
		 * (the same description, or one owner_open() refused); we hold
		 * the lock meanwhile */
		sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_VOLUME_NAME);
		err = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" FDSTORE_VOLUME_NAME, &fd, 1);
		err = err < 0 ? err : err == 0 ? -ENOTCONN : 0;
		s->volume_stored = !err;
	} else if (s->keeper_v2) {
		err = msg_send(s->sock, "VOL", fd);
	}
	if (err)
		log_warning("segment store: cannot hand the volume to the %s: %s (after a crash "
			    "nothing keeps other programs off the volume until ntfsd is back)",
			    s->what, strerror(-err));
	return err;
}

void fdstore_close(struct fdstore *s, bool release_volume)
{
	char text[MSG_MAX];
	int fd;
	ssize_t n;

	if (!s)
		return;
	if (s->mode == FDSTORE_SYSTEMD && s->volume_stored && release_volume)
		sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_VOLUME_NAME);
	if (s->sock >= 0 && s->keeper_v2 && msg_send(s->sock, "BYE", -1) == 0) {
		/* wait until the keeper has let go of the volume (GONE, or it
		 * hung up exiting), or says it keeps segments and the volume */
		n = msg_recv_timed(s->sock, text, sizeof(text), &fd);
		if (fd >= 0)
			close(fd);
		if (n > 0 && !strcmp(text, "KEPT"))
			log_notice("segment store: the keeper at %s keeps what could not be written "
				   "back, and the volume with it, for the next ntfsd", s->path);
		else if (n < 0 && n != -ECONNRESET)
			log_warning("segment store: the keeper at %s did not answer at the stop: %s",
				    s->path, strerror((int)-n));
	}
	if (s->sock >= 0)
		close(s->sock);
	free(s);
}
