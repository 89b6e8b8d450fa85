/*
 * owner.c — see owner.h.
 *
 * Who holds the volume: F_OFD_GETLK names the pid of a classic fcntl lock
 * (ntfs-3g's) but says -1 for an OFD lock (another ntfsd, its keeper), and
 * /proc/locks says -1 for those too.  /proc/PID/fdinfo/FD lists the locks
 * held through that fd's open file description, so the holders are the
 * processes with an fd on the volume whose fdinfo has a "lock:" line.  On
 * a block device whose exclusive open failed, whoever has it open, the
 * mounts of it and its kernel holders (device-mapper, md) are candidates
 * too.  What /proc does not show (another pid namespace, another user's
 * process when we are not root) is reported as "pid unknown".
 */
#include "owner.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

static int lock_fd(int fd, bool read_only)
{
	struct flock fl = { .l_type = read_only ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EACCES ? -EAGAIN : -errno;
}

/* The same volume: the same file, or the same block device. */
static bool same_volume(const struct stat *a, const struct stat *b)
{
	if (S_ISBLK(a->st_mode) || S_ISBLK(b->st_mode))
		return S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode) && a->st_rdev == b->st_rdev;
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int owner_open(const char *path, bool read_only, int handed, int *out)
{
	struct stat st, hs;
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, fd, err;

	*out = -1;
	if (stat(path, &st) < 0) {
		err = -errno;
		log_error("%s: cannot open the volume: %s", path, strerror(errno));
		if (handed >= 0)
			close(handed);
		return err;
	}
	if (handed >= 0) {
		int fl = fcntl(handed, F_GETFL);
		const char *why = NULL;

		if (fstat(handed, &hs) < 0 || !same_volume(&st, &hs))
			why = "is another file";
		else if (fl < 0 || (fl & O_ACCMODE) != (read_only ? O_RDONLY : O_RDWR))
			why = read_only ? "is open for writing" : "is not open for writing";
		else if (lock_fd(handed, read_only))
			why = "does not hold the volume's lock";
		if (!why) {
			log_notice("%s: taking the volume over from the previous daemon (its open "
				   "file, and with it the lock, was kept)", path);
			*out = handed;
			return 0;
		}
		log_warning("%s: the volume descriptor handed back %s: ignoring it", path, why);
		close(handed);
	}
	if (S_ISBLK(st.st_mode))
		flags |= O_EXCL;
	fd = open(path, flags);
	if (fd < 0) {
		err = -errno;
		if (err == -EBUSY && S_ISBLK(st.st_mode)) {
			owner_report_busy(path, read_only);
			return -EBUSY;
		}
		log_error("%s: cannot open the volume: %s", path, strerror(-err));
		return err;
	}
	err = lock_fd(fd, read_only);
	if (err == -EAGAIN) {
		close(fd);
		owner_report_busy(path, read_only);
		return -EBUSY;
	}
	if (err)
		log_warning("%s: cannot lock the volume (%s): nothing keeps other programs from "
			    "writing it while it is served", path, strerror(-err));
	*out = fd;
	return 0;
}

/* ---- who holds it ---- */

#define MAX_HOLDERS 8

struct holder {
	pid_t pid;
	char comm[32];
	char lock;              /* 'W' write lock, 'R' read lock, 0 none (only has it open) */
};

struct holders {
	struct holder h[MAX_HOLDERS];
	int n, more;
	bool blk;
	struct stat target;
};

/* Append to out (size bytes), cutting what does not fit. */
__attribute__((format(printf, 3, 4))) static void append(char *out, size_t size,
							 const char *fmt, ...)
{
	size_t len = strlen(out);
	va_list ap;

	if (len + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(out + len, size - len, fmt, ap);
	va_end(ap);
}

static void read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;

	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

static void comm_of(pid_t pid, char *out, size_t size)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/comm", (int)pid);
	read_small(p, out, size);
	out[strcspn(out, "\n")] = '\0';
	if (!out[0])
		snprintf(out, size, "?");
}

static void add_holder(struct holders *hs, pid_t pid, char lock)
{
	int i;

	for (i = 0; i < hs->n; i++)
		if (hs->h[i].pid == pid) {
			if (lock == 'W' || (lock == 'R' && !hs->h[i].lock))
				hs->h[i].lock = lock;
			return;
		}
	if (hs->n == MAX_HOLDERS) {
		hs->more++;
		return;
	}
	hs->h[hs->n].pid = pid;
	hs->h[hs->n].lock = lock;
	comm_of(pid, hs->h[hs->n].comm, sizeof(hs->h[hs->n].comm));
	hs->n++;
}

static bool numeric(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* One fd of pid that is on the volume: its lock, if any (its fdinfo). */
static void look_at_fd(struct holders *hs, pid_t pid, const char *fd)
{
	char p[320], info[2048], *line, *save = NULL;
	char lock = 0;
	unsigned long flags = 0;

	snprintf(p, sizeof(p), "/proc/%d/fdinfo/%s", (int)pid, fd);
	read_small(p, info, sizeof(info));
	for (line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "flags:", 6))
			flags = strtoul(line + 6, NULL, 8);
		else if (!strncmp(line, "lock:", 5) && !strstr(line, "FLOCK") && !strstr(line, "LEASE"))
			lock = strstr(line, " WRITE ") ? 'W' : lock ? lock : 'R';
	}
	if (flags & O_PATH)
		return;         /* a keeper's handle on the file's name, not an open */
	if (lock || hs->blk)
		add_holder(hs, pid, lock);
}

static void scan_proc(struct holders *hs)
{
	DIR *proc = opendir("/proc"), *fds;
	struct dirent *pe, *fe;
	pid_t self = getpid();
	char p[320];
	struct stat st;

	while (proc && (pe = readdir(proc))) {
		pid_t pid;

		if (!numeric(pe->d_name) || (pid = (pid_t)atoi(pe->d_name)) == self)
			continue;
		snprintf(p, sizeof(p), "/proc/%d/fd", (int)pid);
		fds = opendir(p);
		while (fds && (fe = readdir(fds))) {
			if (!numeric(fe->d_name))
				continue;
			snprintf(p, sizeof(p), "/proc/%d/fd/%s", (int)pid, fe->d_name);
			if (stat(p, &st) == 0 && same_volume(&hs->target, &st))
				look_at_fd(hs, pid, fe->d_name);
		}
		if (fds)
			closedir(fds);
	}
	if (proc)
		closedir(proc);
}

/* Append to out: the mounts of the block device, its kernel holders. */
static void blk_users(const struct holders *hs, char *out, size_t size)
{
	char want[32], line[4096], p[96];
	unsigned mounts = 0;
	FILE *f;
	DIR *d;
	struct dirent *e;

	snprintf(want, sizeof(want), "%u:%u", major(hs->target.st_rdev),
		 minor(hs->target.st_rdev));
	f = fopen("/proc/self/mountinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char dev[32], mnt[1024], *dash;
		char fstype[64] = "?";

		if (sscanf(line, "%*s %*s %31s %*s %1023s", dev, mnt) != 2 || strcmp(dev, want))
			continue;
		dash = strstr(line, " - ");
		if (dash)
			sscanf(dash + 3, "%63s", fstype);
		if (mounts++ < 2)
			append(out, size, "%sa %s mount on %s", out[0] ? ", " : "", fstype, mnt);
	}
	if (f)
		fclose(f);
	snprintf(p, sizeof(p), "/sys/dev/block/%s/holders", want);
	d = opendir(p);
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			append(out, size, "%sthe kernel's %s", out[0] ? ", " : "", e->d_name);
	if (d)
		closedir(d);
}

void owner_report_busy(const char *path, bool read_only)
{
	struct holders hs = { 0 };
	struct flock fl = { .l_type = read_only ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
	char who[640] = "", hint[400] = "";
	bool daemon = false, keeper = false, writer = false, locked = false;
	int fd, i;

	if (stat(path, &hs.target) < 0) {
		log_error("%s: the volume is in use (and now cannot be looked at: %s)", path,
			  strerror(errno));
		return;
	}
	hs.blk = S_ISBLK(hs.target.st_mode);
	/* a classic fcntl lock in the way names its pid (an OFD lock says -1) */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0)
		add_holder(&hs, fl.l_pid, fl.l_type == F_WRLCK ? 'W' : 'R');
	if (fd >= 0)
		close(fd);
	scan_proc(&hs);
	for (i = 0; i < hs.n; i++)
		locked |= hs.h[i].lock != 0;
	for (i = 0; i < hs.n; i++) {
		const struct holder *h = &hs.h[i];
		bool is_keeper = !strcmp(h->comm, "ntfsd-keeper");

		if (locked && !h->lock)
			continue;       /* the lock holders are the ones in the way */
		daemon |= !strcmp(h->comm, "ntfsd");
		keeper |= is_keeper;
		writer |= h->lock == 'W';
		append(who, sizeof(who), "%s%s (pid %d, %s)", who[0] ? ", " : "", h->comm,
		       (int)h->pid, is_keeper ? "segment keeper" : h->lock == 'W' ? "read-write"
				    : h->lock == 'R' ? "read-only" : "has it open");
	}
	if (hs.more)
		append(who, sizeof(who), " and %d more", hs.more);
	if (hs.blk)
		blk_users(&hs, who, sizeof(who));
	if (!who[0])
		snprintf(who, sizeof(who), "a holder this process cannot see (pid unknown: "
			 "another pid namespace, or a process whose /proc we may not read)");
	if (keeper && !daemon)
		snprintf(hint, sizeof(hint), "; the keeper holds the dirty pages of an ntfsd that "
			 "died: a read-write ntfsd on this volume with the same --fd-store-dir "
			 "takes them over and writes them back (killing the keeper throws them away)");
	else if (read_only && writer)
		snprintf(hint, sizeof(hint), "; a read-only daemon beside a writer would serve "
			 "stale data");
	else if (hs.blk && read_only && daemon)
		snprintf(hint, sizeof(hint), "; a block device is served by one ntfsd at a time, "
			 "read-only or not: use that one");
	log_error("%s: the volume is in use by %s: not serving it%s", path, who, hint);
}
