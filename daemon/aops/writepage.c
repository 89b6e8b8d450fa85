/*
 * writepage.c — NTFS's writepage and write_inode (aops.h): the rules of
 * the Linux NTFS driver's ntfs_writepage() and ntfs_write_block(), in user
 * space, below the generic write-back pass (writeback/writeback.c, which
 * hands each page over locked, with its dirty buffers taken and nothing
 * past i_size).
 *
 * Invariants:
 *  - Resident data is copied into the MFT record (fixups, $MFTMirr) and
 *    never goes through buffers.
 *  - Non-resident buffers go to the clusters the runlist maps them to and
 *    nowhere else: a hole, an unmapped cluster, the boot sectors or the
 *    system MFT records under a buffer fail it with EIO (map_extents).
 *  - PG_writeback is set before any I/O is submitted, then the page is
 *    unlocked; the end of the last buffer's I/O ends writeback
 *    (cache_end_page_io); a page that needed no I/O has it ended at once.
 *  - A write reaching past initialized_size first puts zeroes on the disk
 *    from the old initialized_size up to it, and writes every buffer of the
 *    page from there on (the cache holds zeroes or data for them); the
 *    in-memory initialized_size rises after the data is written, the MFT
 *    record's only after the data is flushed (write_inode), and a page
 *    past the record's initialized_size ends its writeback only then.
 *  - Out of memory re-dirties the page and is not an error; any other
 *    failure fails only the pages whose own writes failed.
 */
#include "ntfs_ci.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "attr_write.h"
#include "attrib.h"
#include "crashpoint.h"
#include "device.h"
#include "dirty.h"
#include "error.h"
#include "inode_times.h"
#include "io.h"
#include "layout.h"
#include "log.h"
#include "page.h"
#include "page_io.h"
#include "sanity.h"
#include "volume.h"

/* A run of file bytes to write from the cache. */
struct wb_extent {
	uint64_t file_pos;
	uint64_t len;
	const uint8_t *buf;
};

/* True when device bytes [off, off + len) touch what no file's data may
 * occupy: the boot sectors, the system records at the start of $MFT and
 * their mirror.  A user file's runlist pointing there is corrupt, and
 * writing through it would destroy the volume. */
static bool hits_metadata(const struct ntfs_volume *vol, uint64_t off, uint64_t len)
{
	const struct ntfs_geometry *g = &vol->geo;
	uint64_t sys = (uint64_t)FILE_first_user * g->mft_record_size;
	uint64_t mft = g->mft_lcn << g->cluster_size_bits;
	uint64_t mirr = g->mftmirr_lcn << g->cluster_size_bits;
	uint64_t end = off + len;

	return off < 8192 || (off < mft + sys && end > mft) ||
	       (off < mirr + 4ull * g->mft_record_size && end > mirr);
}

/* Map the extents to device writes through na's runlist: split at run
 * boundaries, neighbours of one extent merged when both their file and
 * disk ranges touch.  A hole, an unmapped cluster or the metadata area
 * under an extent fails that extent (EIO), never a write elsewhere. */
static int map_extents(const struct ntfs_volume *vol, struct ntfs_attr *na,
		       const struct wb_extent *ext, unsigned n, int *ext_err,
		       struct io_write **out, unsigned *nout)
{
	uint32_t bits = vol->geo.cluster_size_bits;
	unsigned cap = n * 2 + 4, k = 0, i;
	struct io_write *w = malloc(sizeof(*w) * cap);
	char what[160];

	if (!w)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		uint64_t pos = ext[i].file_pos, left = ext[i].len;
		const uint8_t *buf = ext[i].buf;

		while (left) {
			int64_t run, lcn = ntfs_rl_vcn_to_lcn(&na->rl, (int64_t)(pos >> bits), &run);
			uint64_t ofs = pos & (vol->geo.cluster_size - 1);
			uint64_t avail = ((uint64_t)run << bits) - ofs, chunk, dev;

			chunk = avail < left ? avail : left;
			dev = lcn < 0 ? 0 : ((uint64_t)lcn << bits) + ofs;
			if (lcn < 0 || hits_metadata(vol, dev, chunk)) {
				int err = ntfs_fail(EIO, "%s: byte %llu maps to %s: refusing to write",
						    ntfs_attr_describe(na, what, sizeof(what)),
						    (unsigned long long)pos,
						    lcn == LCN_HOLE ? "a hole"
						    : lcn < 0 ? "nothing"
						    : "the boot sector or the system MFT records");

				if (!ext_err) {
					free(w);
					return err;
				}
				/* this extent fails; what it mapped so far is not written */
				while (k && w[k - 1].ext == i)
					k--;
				ext_err[i] = err;
				break;
			}
			if (k && w[k - 1].off + w[k - 1].len == dev &&
			    w[k - 1].buf + w[k - 1].len == buf && w[k - 1].ext == i) {
				w[k - 1].len += chunk;
			} else {
				if (k == cap) {
					struct io_write *nw = realloc(w, sizeof(*w) * cap * 2);

					if (!nw) {
						free(w);
						return -ENOMEM;
					}
					w = nw;
					cap *= 2;
				}
				w[k++] = (struct io_write){ .off = dev, .len = chunk, .buf = buf,
							     .ext = i };
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

/* Put zeroes on the disk for [from, to) of a non-resident attribute,
 * skipping holes (they read as zeroes anyway). */
static int write_zeroes(struct cache_inode *ci, uint64_t from, uint64_t to)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	static const uint8_t zero[65536];
	struct ntfs_attr *na = nci->data;
	uint32_t bits = NTFS_VOL(ci->cache)->geo.cluster_size_bits;

	cache_assert_held(&nci->init_lock);      /* initialized_size stays where it is */
	cache_assert_may_sleep();
	while (from < to) {
		int64_t run, lcn = ntfs_rl_vcn_to_lcn(&na->rl, (int64_t)(from >> bits), &run);
		uint64_t run_end = ((from >> bits) + (uint64_t)run) << bits;
		uint64_t end = to < run_end ? to : run_end;
		int err;

		if (lcn == LCN_ENOENT)  /* to <= i_size <= allocated_size, the runlist's end */
			return cache_bug("MFT record %llu: zeroing [%llu, %llu) beyond the runlist",
					 (unsigned long long)ci->mft_no, (unsigned long long)from,
					 (unsigned long long)to);
		if (end - from > sizeof(zero))
			end = from + sizeof(zero);
		if (lcn >= 0) {
			err = ntfs_attr_pwrite_mapped(na, from, (size_t)(end - from), zero);
			if (err)
				return err;
		}
		from = end;
	}
	return 0;
}

/* Resident: copy into the MFT record.  Page locked; unlocks. */
static int writepage_resident(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	uint64_t pos = index << NTFSD_PAGE_SHIFT, len;
	int err = 0;

	cache_assert_page_locked(ci, index);
	len = nci->data->data_size > pos ? nci->data->data_size - pos : 0;
	if (len > NTFSD_PAGE_SIZE)
		len = NTFSD_PAGE_SIZE;
	if (len && wb_inject_enomem())
		err = -ENOMEM;  /* stands for the record buffer's allocation */
	else if (len)
		err = ntfs_attr_write_resident(nci->data, pos, cache_data(ci, pos, len ? len : 1), (size_t)len);
	if (err == -ENOMEM) {
		log_debug("writeback of resident MFT record %llu: out of memory, re-dirtied",
			  (unsigned long long)ci->mft_no);
		cache_redirty_page_locked(ci, index, bufs);
		err = 0;
	} else if (err) {
		cache_page_failed(ci, index, err);
	} else {
		atomic_fetch_add(&ci->cache->pages_written, 1);
	}
	cache_unlock_page(ci, index);
	return err;
}

static int write_sizes(struct cache_inode *ci);

/* Pages under writeback whose buffers go to the device together, so
 * neighbouring pages become one large write; and pages whose bytes are
 * written but lie past the record's initialized_size (disk_init): their
 * writeback ends only once the sizes covering them are in the record. */
#define WB_BATCH_PAGES 256u

struct wb_batch {
	struct cache_inode *ci;
	bool crossing;                  /* the batch is one run of pages from
					 * initialized_size on: it rises over
					 * them when they are written */
	unsigned n, nsized;
	uint64_t index[WB_BATCH_PAGES];
	uint32_t bufs[WB_BATCH_PAGES];
	uint64_t limit[WB_BATCH_PAGES];
	unsigned next[WB_BATCH_PAGES];  /* extents of each page, at submit */
	uint64_t sized_index[WB_BATCH_PAGES];
	uint32_t sized_bufs[WB_BATCH_PAGES];
};

/* Extents of the buffers `bufs` of page index, below limit. */
static unsigned page_extents(struct cache_inode *ci, uint64_t index, uint32_t bufs,
			     uint64_t limit, struct wb_extent *ext)
{
	uint32_t bsize = ci->buffer_size, nbuf = ci->buffers_per_page, b = 0;
	uint64_t base = index << NTFSD_PAGE_SHIFT;
	unsigned n = 0;

	while (b < nbuf) {
		uint64_t start, end;

		if (!(bufs & (1u << b))) {
			b++;
			continue;
		}
		start = base + (uint64_t)b * bsize;
		while (b < nbuf && (bufs & (1u << b)))
			b++;
		end = base + (uint64_t)b * bsize;
		if (start >= limit)
			break;
		ext[n].file_pos = start;
		ext[n].len = end - start;
		ext[n].buf = cache_data(ci, start, end - start);
		n++;
	}
	return n;
}

/* The record's sizes cover every written page of the sized list: write
 * them (after a flush of the data), then end those pages' writeback.  A
 * crash before that leaves them under writeback, which the next daemon
 * adopts as dirty. */
static int wb_end_sized(struct wb_batch *bt)
{
	unsigned i;
	int err;

	if (!bt->nsized)
		return 0;
	err = write_sizes(bt->ci);
	for (i = 0; i < bt->nsized; i++)
		cache_end_page_io(bt->ci, bt->sized_index[i], bt->sized_bufs[i], err);
	bt->nsized = 0;
	return err == -ENOMEM ? 0 : err;
}

/* A page whose bytes are written: end it, or keep it under writeback until
 * the sizes are written when the record does not cover it yet. */
static int wb_written(struct wb_batch *bt, uint64_t index, uint32_t bufs, uint64_t limit)
{
	int err = 0;

	if (limit <= atomic_load(&bt->ci->disk_init)) {
		cache_end_page_io(bt->ci, index, bufs, 0);
		return 0;
	}
	if (bt->nsized == WB_BATCH_PAGES)
		err = wb_end_sized(bt);
	bt->sized_index[bt->nsized] = index;
	bt->sized_bufs[bt->nsized++] = bufs;
	return err;
}

/* The bytes below limit are on the device (written, zeroes before them):
 * initialized_size may cover them. */
static void raise_initialized_size(struct cache_inode *ci, uint64_t limit)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	cache_mutex_lock(&nci->init_lock);
	if (limit > nci->data->initialized_size) {
		nci->data->initialized_size = limit;
		ci->sizes_dirty = true;
	}
	ntfs_ci_sanity(nci);
	cache_mutex_unlock(&nci->init_lock);
}

static void redirty_after_failed_run(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{

	cache_lock_page(ci, index);
	set_page_dirty(cache_dirty_for(ci, index), index, bufs);
	cache_unlock_page(ci, index);
	atomic_fetch_sub(&ci->cache->header->counters.writeback_pages, 1);
	cache_end_page_writeback(ci, index);
}

/* Submit the batch and end (or hand to the sized list) its pages; an error
 * fails only the pages whose own writes failed (in a run past
 * initialized_size, the pages after a failed one are written again later,
 * after zeroes over it). */
static int wb_submit(struct wb_batch *bt)
{
	struct cache_inode *ci = bt->ci;
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct wb_extent *ext;
	unsigned i, n = 0, k, e;
	int *ext_err = NULL, err = 0, first_err = 0;

	if (!bt->n)
		return 0;
	ext = wb_alloc(sizeof(*ext) * bt->n * ci->buffers_per_page);
	if (ext)
		ext_err = wb_alloc(sizeof(*ext_err) * bt->n * ci->buffers_per_page);
	if (!ext_err) {
		free(ext);
		log_debug("writeback of MFT record %llu: out of memory, %u pages re-dirtied",
			  (unsigned long long)ci->mft_no, bt->n);
		for (i = 0; i < bt->n; i++)
			cache_end_page_io(ci, bt->index[i], bt->bufs[i], -ENOMEM);
		bt->n = 0;
		bt->crossing = false;
		return 0;
	}
	for (i = 0; i < bt->n; i++) {
		bt->next[i] = page_extents(ci, bt->index[i], bt->bufs[i], bt->limit[i], ext + n);
		n += bt->next[i];
	}
	if (n) {
		struct io_write *w = NULL;
		unsigned nw = 0;

		for (e = 0; e < n; e++)
			ext_err[e] = 0;
		/* mapped under rl_lock, written without it: the clusters cannot
		 * be freed under the write, since whoever frees them first
		 * waits for the pages' writeback */
		cache_assert_may_sleep();
		cache_rwlock_rdlock(&nci->rl_lock);
		err = map_extents(NTFS_VOL(ci->cache), nci->data, ext, n, ext_err, &w, &nw);
		cache_rwlock_unlock(&nci->rl_lock);
		if (err) {
			for (e = 0; e < n; e++)
				ext_err[e] = err;
		} else {
			io_write(ci->cache->io, w, nw, ext_err);
			free(w);
		}
		err = 0;
	}
	for (i = 0, k = 0; i < bt->n; i++) {
		for (e = 0, err = 0; e < bt->next[i]; e++)
			if (ext_err[k + e] && !err)
				err = ext_err[k + e];
		k += bt->next[i];
		if (!err && bt->crossing && first_err) {
			/* written, but past a page of the run that failed:
			 * initialized_size cannot cover it, write it again */
			redirty_after_failed_run(ci, bt->index[i], bt->bufs[i]);
			continue;
		}
		if (!err && bt->crossing)
			raise_initialized_size(ci, bt->limit[i]);
		if (err)
			cache_end_page_io(ci, bt->index[i], bt->bufs[i], err);
		else
			err = wb_written(bt, bt->index[i], bt->bufs[i], bt->limit[i]);
		if (err && !first_err)
			first_err = err;
	}
	free(ext);
	free(ext_err);
	bt->n = 0;
	bt->crossing = false;
	return first_err == -ENOMEM ? 0 : first_err;
}

/* Everything queued goes out: the batch, then the sized list. */
static int wb_flush_batch(struct wb_batch *bt)
{
	int err = wb_submit(bt), err2 = wb_end_sized(bt);

	return err ? err : err2;
}

/*
 * Page locked; returns with it unlocked.  Pages that need buffer I/O join
 * the batch (submitted when full or by the caller); pages that need none
 * and resident pages are done here.  A page past initialized_size starts a
 * run (the batch is submitted first, zeroes go to the disk up to the page)
 * unless it continues the run the batch holds: initialized_size rises over
 * the run's pages as they are written, so appends are written in large
 * batches too.
 */
int ntfs_aops_writepage(struct cache_inode *ci, uint64_t index, uint32_t bufs, void *batch)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct wb_batch *bt = batch;
	struct cache *c = ci->cache;
	uint32_t nbuf = ci->buffers_per_page, bsize = ci->buffer_size;
	uint64_t pos = index << NTFSD_PAGE_SHIFT, i_size = ci->i_size;
	uint64_t page_end = pos + NTFSD_PAGE_SIZE, limit;
	bool crosses_init = false;
	uint32_t b;
	int err = 0, berr = 0;

	cache_assert_held(&ci->wb_lock);
	cache_assert_page_locked(ci, index);
	if (nci->data->resident)
		return writepage_resident(ci, index, bufs);
	limit = page_end < i_size ? page_end : i_size;
	if (limit > nci->data->initialized_size && bufs) {
		crosses_init = true;
		for (b = 0; b < nbuf; b++) {
			uint64_t bstart = pos + (uint64_t)b * bsize;

			if (bstart + bsize > nci->data->initialized_size && bstart < limit)
				bufs |= 1u << b;
		}
	}
	cache_set_page_writeback(ci, index);
	atomic_fetch_add(&c->header->counters.writeback_pages, 1);
	cache_unlock_page(ci, index);

	if (crosses_init && !(bt->crossing && bt->n && bt->index[bt->n - 1] + 1 == index &&
			      bt->limit[bt->n - 1] == pos)) {
		/* A new run past initialized_size: what the batch holds goes
		 * out first, then zeroes up to this page, then the run. */
		berr = wb_submit(bt);
		cache_mutex_lock(&nci->init_lock);
		cache_rwlock_rdlock(&nci->rl_lock);
		if (pos > nci->data->initialized_size)
			err = write_zeroes(ci, nci->data->initialized_size, pos);
		cache_rwlock_unlock(&nci->rl_lock);
		if (!err && pos > nci->data->initialized_size) {
			nci->data->initialized_size = pos;       /* zeroes up to here */
			ci->sizes_dirty = true;
		}
		ntfs_ci_sanity(nci);
		cache_mutex_unlock(&nci->init_lock);
		if (err) {
			cache_end_page_io(ci, index, bufs, err);
			return err == -ENOMEM ? berr : err;
		}
		bt->crossing = true;
	} else if (!crosses_init && bt->crossing) {
		berr = wb_submit(bt);
	}
	bt->index[bt->n] = index;
	bt->bufs[bt->n] = bufs;
	bt->limit[bt->n] = limit;
	if (++bt->n == WB_BATCH_PAGES)
		err = wb_submit(bt);
	return err ? err : berr;
}

/* The record's sizes, once the data they cover is durable. */
static int write_sizes(struct cache_inode *ci)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct ntfs_attr *na = nci->data;
	uint64_t init, size;
	bool need;
	int err;

	if (na->resident) {
		ci->sizes_dirty = false;
		return 0;
	}
	cache_mutex_lock(&nci->init_lock);
	need = ci->sizes_dirty || na->initialized_size != atomic_load(&ci->disk_init);
	init = na->initialized_size;    /* all of it is written: flushed next */
	ntfs_ci_sanity(nci);
	cache_mutex_unlock(&nci->init_lock);
	if (!need)
		return 0;
	/* The data the new sizes cover must be durable before they are. */
	cache_assert_may_sleep();
	err = ntfs_device_flush(NTFS_VOL(ci->cache)->dev);
	crashpoint("wb-before-sizes");
	if (!err) {
		cache_mutex_lock(&nci->init_lock);
		ci->sizes_dirty = false;
		size = ci->i_size;
		if (init > na->initialized_size)
			init = na->initialized_size;    /* a truncate lowered it */
		if (init > size)
			init = size;
		/* i_size grows only into the allocation (prepare-write allocates
		 * first), so the record can always take it */
		if (size > na->allocated_size)
			err = cache_bug("MFT record %llu: i_size %llu lies past its allocation "
					"(%llu bytes)", (unsigned long long)ci->mft_no,
					(unsigned long long)size,
					(unsigned long long)na->allocated_size);
		else
			err = ntfs_attr_set_sizes(na, size, init);
		if (err)
			ci->sizes_dirty = true;
		else
			atomic_store(&ci->disk_init, init);
		ntfs_ci_sanity(nci);
		cache_mutex_unlock(&nci->init_lock);
	}
	if (err && err != -ENOMEM) {
		errseq_set(ci, -err);
		atomic_fetch_add(&ci->cache->wb_errors, 1);
		log_error("MFT record %llu: cannot write its sizes: %s",
			  (unsigned long long)ci->mft_no, ntfs_last_error());
	}
	return err;
}

/* $STANDARD_INFORMATION's modification and MFT change times to the last
 * change the cache saw (cache_inode_touch).  Not ordered with anything:
 * times are not data.  The access time is never moved (README, "Times"). */
static int write_times(struct cache_inode *ci)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	uint64_t t[2];
	int err;

	if (!nci->std || !atomic_exchange(&ci->times_dirty, false))
		return 0;
	t[0] = t[1] = ntfs_time_from_unix_ns((int64_t)atomic_load(&ci->mtime_ns));
	err = ntfs_ci_write_times(nci, 1, t, 2);  /* data change, MFT change */
	if (err) {
		atomic_store(&ci->times_dirty, true);
		if (err != -ENOMEM)
			log_error("MFT record %llu: cannot write its times: %s",
				  (unsigned long long)ci->mft_no, ntfs_last_error());
	}
	return err;
}

int ntfs_aops_write_inode(struct cache_inode *ci)
{
	int err = write_sizes(ci), err2;

	/* times after the sizes: a crash between leaves old times, never
	 * new times over old sizes */
	err2 = write_times(ci);
	return err ? err : err2;
}

/* ---- the batch of a pass ---- */

void *ntfs_aops_writepages_begin(struct cache_inode *ci)
{
	struct wb_batch *bt = calloc(1, sizeof(*bt));

	if (bt)
		bt->ci = ci;
	return bt;
}

int ntfs_aops_writepages_flush(struct cache_inode *ci, void *batch)
{
	(void)ci;
	return wb_flush_batch(batch);
}

void ntfs_aops_writepages_end(struct cache_inode *ci, void *batch)
{
	(void)ci;
	free(batch);
}
