/*
 * nbd_error.h — a failing disk for the tests: an image file served by
 * nbdkit through its error filter and exposed as a regular file by nbdfuse,
 * so that a daemon writing to that file gets real EIO from pwrite(2)
 * whenever the test says so.
 *
 *   nbdkit -f -U SOCK -P PIDFILE --exit-with-parent --filter=error file IMAGE \
 *          error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file=TRIGGER
 *   nbdfuse MNT/ --unix SOCK              (the file is MNT/nbd)
 *
 * (nbd_error_start_rate() sets another error-pwrite-rate.)
 * Only NBD write requests fail, and only while TRIGGER exists (reads,
 * flushes, trims, zeroes keep working).  nbdfuse passes every write(2) to
 * the NBD server synchronously, so the writer's pwrite(2) itself returns
 * EIO (observed with nbdkit 1.32.5, nbdfuse 1.14.2 on Linux 6.x).
 *
 * Invariants: everything lives in a private temp dir (socket, mount
 * point, trigger, logs); nbd_error_stop() always unmounts, stops both
 * processes (politely, then SIGKILL) and removes the dir, also after a
 * partial start, and may be called any number of times.  The volume file
 * must be closed by its users (the daemon stopped) before the stop, or
 * the unmount falls back to a lazy one.  Both children are started with
 * a parent-death signal, so a killed test leaves no server behind.
 */
#ifndef NTFSD_TESTS_NBD_ERROR_H
#define NTFSD_TESTS_NBD_ERROR_H

#include <stdbool.h>
#include <sys/types.h>

struct nbd_error_dev {
	pid_t nbdkit, nbdfuse;
	bool mounted;
	char dir[48];           /* private temp dir */
	char sock[80];
	char mnt[80];
	char file[96];          /* mnt/nbd: what the daemon opens */
	char trigger[80];
	char nbdkit_log[80];
	char nbdfuse_log[80];
	int nbdkit_status, nbdfuse_status;  /* wait statuses after stop */
};

/* Serve image (read-write); waits (10 s each) until nbdkit listens (it
 * has written its pidfile) and d->file is there with the image's size.
 * 0 or -errno (-ECHILD: nbdkit or nbdfuse exited, -ETIMEDOUT); on failure
 * everything started is stopped again. */
int nbd_error_start(struct nbd_error_dev *d, const char *image);
/* The same with NBD writes failing at rate (nbdkit's syntax: "3%", "0.03")
 * while the trigger exists, instead of all of them. */
int nbd_error_start_rate(struct nbd_error_dev *d, const char *image, const char *rate);
/* Make every NBD write fail with EIO from now on (on = true) or not. */
int nbd_error_set(struct nbd_error_dev *d, bool on);
/* Unmount, stop nbdfuse and nbdkit, remove the dir.  0 when everything
 * went cleanly (plain unmount, both exited by themselves or on SIGTERM). */
int nbd_error_stop(struct nbd_error_dev *d);
/* For a hung test: SIGKILL nbdfuse and nbdkit at once, which aborts the
 * FUSE connection, so whoever is stuck on d->file gets an error (ENOTCONN)
 * and can exit.  Async-signal-safe; nbd_error_stop() still reaps and
 * cleans up. */
void nbd_error_abort(struct nbd_error_dev *d);
/* Print nbdkit's and nbdfuse's stderr (for failures). */
void nbd_error_dump_logs(const struct nbd_error_dev *d);

#endif
