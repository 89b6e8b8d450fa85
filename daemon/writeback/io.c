/*
 * io.c — see io.h.
 *
 * Invariants: extents are split at run boundaries into device writes;
 * adjacent device writes are merged when both their file and disk ranges
 * touch.  With io_uring every write of one call is submitted before any is
 * waited for, and all completions are reaped before returning, so no
 * completion can be left behind for another caller.
 */
#include "io.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "error.h"
#include "log.h"
#include "volume.h"

#define RING_ENTRIES 64u

struct io {
	struct ntfs_volume *vol;
	enum io_engine engine;
	pthread_key_t ring_key;
};

struct dev_write {
	uint64_t off;
	uint64_t len;
	const uint8_t *buf;
};

static void ring_free(void *p)
{
	struct io_uring *ring = p;

	io_uring_queue_exit(ring);
	free(ring);
}

int io_create(struct ntfs_volume *vol, enum io_engine want, struct io **out)
{
	struct io *io = calloc(1, sizeof(*io));
	struct io_uring probe;
	int err;

	if (!io)
		return -ENOMEM;
	io->vol = vol;
	io->engine = want;
	if (want == IO_ENGINE_URING) {
		err = io_uring_queue_init(4, &probe, 0);
		if (err) {
			log_warning("io_uring is not available (%s): using the thread engine",
				    strerror(-err));
			io->engine = IO_ENGINE_THREADS;
		} else {
			io_uring_queue_exit(&probe);
		}
	}
	if (io->engine == IO_ENGINE_URING && pthread_key_create(&io->ring_key, ring_free)) {
		io->engine = IO_ENGINE_THREADS;
	}
	*out = io;
	return 0;
}

void io_destroy(struct io *io)
{
	if (!io)
		return;
	if (io->engine == IO_ENGINE_URING) {
		struct io_uring *ring = pthread_getspecific(io->ring_key);

		if (ring) {
			pthread_setspecific(io->ring_key, NULL);
			ring_free(ring);
		}
		pthread_key_delete(io->ring_key);
	}
	free(io);
}

const char *io_engine_name(const struct io *io)
{
	return io->engine == IO_ENGINE_URING ? "uring" : "threads";
}

/* Map the extents to device writes, merging neighbours. */
static int map_extents(struct io *io, struct ntfs_attr *na, const struct io_extent *ext,
		       unsigned n, struct dev_write **out, unsigned *nout)
{
	uint32_t bits = io->vol->geo.cluster_size_bits;
	unsigned cap = n * 2 + 4, k = 0, i;
	struct dev_write *w = malloc(sizeof(*w) * cap);
	char what[160];

	if (!w)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		uint64_t pos = ext[i].file_pos, left = ext[i].len;
		const uint8_t *buf = ext[i].buf;

		while (left) {
			int64_t run, lcn = ntfs_rl_vcn_to_lcn(&na->rl, (int64_t)(pos >> bits), &run);
			uint64_t ofs = pos & (io->vol->geo.cluster_size - 1);
			uint64_t avail = ((uint64_t)run << bits) - ofs, chunk, dev;

			if (lcn < 0) {
				free(w);
				return ntfs_fail(EIO, "%s: byte %llu maps to %s: refusing to write",
						 ntfs_attr_describe(na, what, sizeof(what)),
						 (unsigned long long)pos,
						 lcn == LCN_HOLE ? "a hole" : "nothing");
			}
			chunk = avail < left ? avail : left;
			dev = ((uint64_t)lcn << bits) + ofs;
			if (k && w[k - 1].off + w[k - 1].len == dev &&
			    w[k - 1].buf + w[k - 1].len == buf) {
				w[k - 1].len += chunk;
			} else {
				if (k == cap) {
					struct dev_write *nw = realloc(w, sizeof(*w) * cap * 2);

					if (!nw) {
						free(w);
						return -ENOMEM;
					}
					w = nw;
					cap *= 2;
				}
				w[k++] = (struct dev_write){ .off = dev, .len = chunk, .buf = buf };
			}
			pos += chunk;
			buf += chunk;
			left -= chunk;
		}
	}
	*out = w;
	*nout = k;
	return 0;
}

static int write_threads(struct io *io, const struct dev_write *w, unsigned n)
{
	unsigned i;
	int err;

	for (i = 0; i < n; i++) {
		err = ntfs_device_pwrite(io->vol->dev, w[i].buf, (size_t)w[i].len, w[i].off);
		if (err)
			return err;
	}
	return 0;
}

static struct io_uring *thread_ring(struct io *io)
{
	struct io_uring *ring = pthread_getspecific(io->ring_key);

	if (ring)
		return ring;
	ring = calloc(1, sizeof(*ring));
	if (!ring)
		return NULL;
	if (io_uring_queue_init(RING_ENTRIES, ring, 0)) {
		free(ring);
		return NULL;
	}
	pthread_setspecific(io->ring_key, ring);
	return ring;
}

static int write_uring(struct io *io, const struct dev_write *w, unsigned n)
{
	struct io_uring *ring = thread_ring(io);
	unsigned done = 0, submitted = 0, inflight = 0;
	int err = 0;

	if (!ring)
		return write_threads(io, w, n);  /* this thread could not get a ring */
	if (io->vol->dev->read_only)
		return ntfs_fail(EROFS, "%s: opened read-only", io->vol->dev->path);
	while (done < n) {
		struct io_uring_cqe *cqe;
		int ret;

		while (submitted < n && inflight < RING_ENTRIES) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe)
				break;
			io_uring_prep_write(sqe, io->vol->dev->fd, w[submitted].buf,
					    (unsigned)w[submitted].len, w[submitted].off);
			io_uring_sqe_set_data64(sqe, submitted);
			submitted++;
			inflight++;
		}
		ret = io_uring_submit_and_wait(ring, 1);
		if (ret < 0 && ret != -EINTR)
			return ntfs_fail(-ret, "%s: io_uring submit: %s", io->vol->dev->path,
					 strerror(-ret));
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			uint64_t idx = io_uring_cqe_get_data64(cqe);
			int res = cqe->res;

			io_uring_cqe_seen(ring, cqe);
			inflight--;
			done++;
			if (res < 0 && !err)
				err = ntfs_fail(-res, "%s: write at offset %llu: %s",
						io->vol->dev->path,
						(unsigned long long)w[idx].off, strerror(-res));
			else if (res >= 0 && (uint64_t)res < w[idx].len && !err) {
				/* a short write: finish it synchronously */
				err = ntfs_device_pwrite(io->vol->dev, w[idx].buf + res,
							 (size_t)(w[idx].len - (uint64_t)res),
							 w[idx].off + (uint64_t)res);
			}
		}
	}
	return err;
}

int io_write_extents(struct io *io, struct ntfs_attr *na, const struct io_extent *ext,
		     unsigned n, pthread_rwlock_t *map_lock)
{
	struct dev_write *w = NULL;
	unsigned k = 0;
	int err;

	if (map_lock)
		pthread_rwlock_rdlock(map_lock);
	err = map_extents(io, na, ext, n, &w, &k);
	if (map_lock)
		pthread_rwlock_unlock(map_lock);

	if (err)
		return err;
	err = io->engine == IO_ENGINE_URING ? write_uring(io, w, k) : write_threads(io, w, k);
	free(w);
	return err;
}
