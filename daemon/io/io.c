/*
 * io.c — see io.h.
 *
 * Invariants: every device write belongs to one extent and its result to
 * that extent alone.  Every write is tried, whatever failed before it.  With io_uring all completions of a call are reaped before it
 * returns; when the ring refuses a submission, the writes the kernel took
 * are waited for and the ring is thrown away with the entries it did not
 * take, so no completion or stale entry is ever left for another call.
 */
#include "io.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "error.h"
#include "log.h"

#define RING_ENTRIES 64u

struct io {
	struct ntfs_device *dev;
	enum io_engine engine;
	pthread_key_t ring_key;
};

static void ring_free(void *p)
{
	struct io_uring *ring = p;

	io_uring_queue_exit(ring);
	free(ring);
}

int io_create(struct ntfs_device *dev, enum io_engine want, struct io **out)
{
	struct io *io = calloc(1, sizeof(*io));
	struct io_uring probe;
	int err;

	if (!io)
		return -ENOMEM;
	io->dev = dev;
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

/* Record the result of device write w (the first error of its extent). */
static int note_result(int *ext_err, const struct io_write *w, int err)
{
	if (err && ext_err && !ext_err[w->ext])
		ext_err[w->ext] = err;
	return err;
}

/* Write w[i] for every i not yet done, synchronously; returns the first
 * error, having tried every write. */
static int write_sync(struct io *io, const struct io_write *w, unsigned n, const bool *done,
		      int *ext_err)
{
	unsigned i;
	int err, first = 0;

	for (i = 0; i < n; i++) {
		if (done && done[i])
			continue;
		err = note_result(ext_err, &w[i], ntfs_device_pwrite(io->dev, w[i].buf,
								     (size_t)w[i].len, w[i].off));
		if (err && !first)
			first = err;
	}
	return first;
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

/* Reap one completion of this call; returns the write's result. */
static int reap_one(struct io *io, struct io_uring_cqe *cqe, const struct io_write *w,
		    bool *done, int *ext_err)
{
	uint64_t idx = io_uring_cqe_get_data64(cqe);
	int res = cqe->res, err = 0;

	done[idx] = true;
	if (res < 0)
		err = ntfs_fail(-res, "%s: write at offset %llu: %s", io->dev->path,
				(unsigned long long)w[idx].off, strerror(-res));
	else if ((uint64_t)res < w[idx].len)
		/* a short write: finish it synchronously */
		err = ntfs_device_pwrite(io->dev, w[idx].buf + res,
					 (size_t)(w[idx].len - (uint64_t)res),
					 w[idx].off + (uint64_t)res);
	return note_result(ext_err, &w[idx], err);
}

/*
 * The ring refused a submission: wait for every write the kernel took
 * (their completions belong to this call, never to a later one), then
 * throw the ring away with the entries it did not take, so they can never
 * be submitted later, and write what is left without io_uring.
 */
static int uring_abandon(struct io *io, struct io_uring *ring, int ret, const struct io_write *w,
			 unsigned n, unsigned inflight, bool *done, int *ext_err)
{
	unsigned taken = inflight - io_uring_sq_ready(ring);
	int err, first = 0;

	log_warning("%s: io_uring submit: %s: finishing %u write%s in flight, then writing the "
		    "rest without io_uring", io->dev->path, strerror(-ret), taken,
		    taken == 1 ? "" : "s");
	while (taken) {
		struct io_uring_cqe *cqe;

		ret = io_uring_wait_cqe(ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0) {
			/* cannot wait: what was in flight is written again below,
			 * and the ring is not reused */
			break;
		}
		err = reap_one(io, cqe, w, done, ext_err);
		io_uring_cqe_seen(ring, cqe);
		if (err && !first)
			first = err;
		taken--;
	}
	pthread_setspecific(io->ring_key, NULL);
	ring_free(ring);
	err = write_sync(io, w, n, done, ext_err);
	return first ? first : err;
}

/* Fault injection (tests): NTFSD_FAULT_URING_SUBMIT=N makes every N-th
 * io_uring submission look refused after the kernel took its writes, the
 * worst case for uring_abandon(). */
static _Atomic unsigned long submit_calls;
static unsigned long submit_fail_every;

void io_init_faults(void)
{
	const char *v = getenv("NTFSD_FAULT_URING_SUBMIT");

	if (v && atol(v) > 0) {
		submit_fail_every = (unsigned long)atol(v);
		log_warning("fault injection: every %lu-th io_uring submission fails",
			    submit_fail_every);
	}
}

static bool uring_inject_fail(void)
{
	return submit_fail_every &&
	       (atomic_fetch_add(&submit_calls, 1) + 1) % submit_fail_every == 0;
}

static int write_uring(struct io *io, const struct io_write *w, unsigned n, int *ext_err)
{
	struct io_uring *ring = thread_ring(io);
	unsigned ndone = 0, submitted = 0, inflight = 0;
	bool *done;
	int err = 0, e;

	if (!ring)
		return write_sync(io, w, n, NULL, ext_err);  /* no ring for this thread */
	if (io->dev->read_only)
		return ntfs_fail(EROFS, "%s: opened read-only", io->dev->path);
	done = calloc(n ? n : 1, sizeof(*done));
	if (!done)
		return write_sync(io, w, n, NULL, ext_err);
	while (ndone < n) {
		struct io_uring_cqe *cqe;
		int ret;

		while (submitted < n && inflight < RING_ENTRIES) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe)
				break;
			io_uring_prep_write(sqe, io->dev->fd, w[submitted].buf,
					    (unsigned)w[submitted].len, w[submitted].off);
			io_uring_sqe_set_data64(sqe, submitted);
			submitted++;
			inflight++;
		}
		ret = io_uring_submit_and_wait(ring, 1);
		if (ret >= 0 && uring_inject_fail())
			ret = -EBUSY;
		if (ret < 0 && ret != -EINTR) {
			e = uring_abandon(io, ring, ret, w, n, inflight, done, ext_err);
			free(done);
			return err ? err : e;
		}
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			e = reap_one(io, cqe, w, done, ext_err);
			io_uring_cqe_seen(ring, cqe);
			inflight--;
			ndone++;
			if (e && !err)
				err = e;
		}
	}
	free(done);
	return err;
}

int io_write(struct io *io, const struct io_write *w, unsigned n, int *ext_err)
{
	return io->engine == IO_ENGINE_URING ? write_uring(io, w, n, ext_err)
					    : write_sync(io, w, n, NULL, ext_err);
}
