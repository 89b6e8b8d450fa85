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

#include "fdmsg.h"
#include "keeper.h"
#include "log.h"


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
	if (!msg_peer_is_us(s->sock)) {
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
