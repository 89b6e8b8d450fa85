/*
 * owner.h — one owner per volume: opening the volume so that nobody else
 * may write it while anything of ours may.
 *
 * What the daemon holds, for as long as it (or the keeper or systemd's
 * file-descriptor store, which hold a duplicate of the same open file
 * description) may still write the volume:
 *   - an image file: an open-file-description lock (F_OFD_SETLK) over the
 *     whole file, a write lock when read-write, a read lock when
 *     read-only.  OFD locks and the classic fcntl locks conflict, and
 *     ntfs-3g and its tools (ntfscat, ntfsfix, ...) take classic ones: a
 *     read-write mount is refused beside any daemon, a read-only one (and
 *     the read-only tools) beside a read-write daemon.  Several read-only
 *     daemons may share an image; none may share it with a writer.
 *   - a block device: an O_EXCL open (the kernel then refuses every other
 *     exclusive opener: mount, a FUSE "fuseblk" mount such as ntfs-3g's,
 *     mkfs, another ntfsd), read-only daemons too, since the exclusive
 *     claim is the only thing a kernel mount honours and a read-only view
 *     beside a writer goes stale; plus the same OFD lock on the device
 *     node, which ntfs-3g's tools honour.  So one daemon per block device.
 * Advisory locks bind only those who ask: a plain open(2) and write(2)
 * of the image (dd, cp, a VM) is not stopped by anything here.
 *
 * Invariants: owner_open() returns an fd only once the lock (and on a
 * block device the exclusive open) is held by that fd's open file
 * description; when another holder has the volume it logs one error that
 * names the path and the holders it can see (pid, program, read-only or
 * read-write; "pid unknown" when it sees none) and returns -EBUSY.
 */
#ifndef NTFSD_OWNER_H
#define NTFSD_OWNER_H

#include <stdbool.h>

/*
 * Open path for the daemon and make it ours (see above): O_RDWR, or
 * O_RDONLY when read_only.  handed is an fd a store handed back (the
 * keeper or systemd kept it across a crash of the previous daemon) or -1:
 * when it is path opened the right way, its lock is taken over (it holds
 * it already) and it is returned; otherwise it is closed with a warning
 * and path opened afresh.  Returns the fd in *fd, or -EBUSY (the volume
 * has another owner, logged) or another negative errno (logged).
 */
int owner_open(const char *path, bool read_only, int handed, int *fd);

/*
 * Log why path cannot be ours: "PATH: the volume is in use by ...", with
 * what the kernel and /proc say about who holds it (lock holders, on a
 * block device also openers, mounts and kernel holders), and a hint when
 * the holder is a keeper holding a crashed daemon's dirty data.
 */
void owner_report_busy(const char *path, bool read_only);

#endif
