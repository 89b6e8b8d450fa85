/*
 * io.h — the block I/O engine: device writes, batched.  It knows
 * offsets on the device, never files: the file system maps its extents
 * (daemon/aops/map.c for NTFS) and hands them here.
 *
 * Invariants: io_write() returns only when every byte it was given is on
 * the device (written, not necessarily flushed) or an error is known, and
 * each write's error goes to the extent it belongs to.  The io_uring engine (liburing, a ring per writing thread)
 * and the thread engine (pwrite from the writing thread) share this
 * contract, so writepage's completion handling is the same for both.
 */
#ifndef NTFSD_IO_H
#define NTFSD_IO_H

#include <stdbool.h>
#include <stdint.h>

struct ntfs_device;

/* One device write, part of extent `ext` of the caller's. */
struct io_write {
	uint64_t off;
	uint64_t len;
	const uint8_t *buf;
	unsigned ext;
};

enum io_engine { IO_ENGINE_URING, IO_ENGINE_THREADS };

struct io;

/* want: the engine asked for; io_uring that cannot be set up falls back to
 * threads with a logged reason.  Never fails for lack of io_uring. */
int io_create(struct ntfs_device *dev, enum io_engine want, struct io **out);
void io_destroy(struct io *io);
/* Read the fault-injection setting of the environment (tests). */
void io_init_faults(void);
const char *io_engine_name(const struct io *io);
/* Write w[0..n) (may sleep).  ext_err (may be NULL) gets each extent's
 * first error, indexed by w[i].ext; the caller zeroes it: one failed write
 * fails only its extent.  Returns the first error. */
int io_write(struct io *io, const struct io_write *w, unsigned n, int *ext_err);

#endif
