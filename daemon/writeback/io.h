/*
 * io.h — the block I/O engine: writes of file extents through a runlist.
 *
 * Invariants: io_write_extents() returns only when every byte it was given
 * is on the device (written, not necessarily flushed) or an error is known;
 * an extent is only ever written to the clusters the runlist maps it to,
 * and a hole or unmapped cluster under it is an error, never a write
 * elsewhere.  The io_uring engine (liburing, a ring per writing thread)
 * and the thread engine (pwrite from the writing thread) share this
 * contract, so writepage's completion handling is the same for both.
 */
#ifndef NTFSD_IO_H
#define NTFSD_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "lockdep.h"

struct ntfs_attr;
struct ntfs_volume;

struct io_extent {
	uint64_t file_pos;
	uint64_t len;
	const uint8_t *buf;
};

enum io_engine { IO_ENGINE_URING, IO_ENGINE_THREADS };

struct io;

/* want: the engine asked for; io_uring that cannot be set up falls back to
 * threads with a logged reason.  Never fails for lack of io_uring. */
int io_create(struct ntfs_volume *vol, enum io_engine want, struct io **out);
void io_destroy(struct io *io);
/* Read the fault-injection setting of the environment (tests). */
void io_init_faults(void);
const char *io_engine_name(const struct io *io);
/* Write the extents of na.  map_lock (the inode's rl_lock; may be NULL
 * when the caller holds it already) is read-locked while the extents are mapped through na's
 * runlist, not during the I/O: the clusters cannot be freed under the
 * write, since whoever frees them first waits for the pages' writeback.
 * ext_err (may be NULL) gets each extent's own result, 0 or -errno: one
 * failed write fails only its extent.  Returns the first error. */
int io_write_extents(struct io *io, struct ntfs_attr *na, const struct io_extent *ext,
		     unsigned n, struct cache_rwlock *map_lock, int *ext_err);

#endif
