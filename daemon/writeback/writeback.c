/*
 * writeback.c — writepage, writing back an inode, sizes and errseq.
 *
 * Invariants (the rules of the Linux NTFS driver's ntfs_writepage() and
 * ntfs_write_block(), in user space):
 *  - writepage is entered with the page locked.  A page wholly past i_size
 *    is discarded unwritten (not an error); a page straddling i_size is
 *    zeroed past it first; nothing past i_size reaches the disk.
 *  - Buffer bits are definitive: only dirty buffers are written, buffers
 *    wholly past i_size are cleaned without I/O.  The dirty bits are taken
 *    (and the page made clean) under the page lock, so a store after that
 *    re-dirties the page and is written by a later pass.
 *  - Resident data is copied into the MFT record (fixups, $MFTMirr) and
 *    never goes through buffers.
 *  - PG_writeback is set before any I/O is submitted, then the page is
 *    unlocked; the end of the last buffer's I/O ends writeback and wakes
 *    the waiters; a page that needed no I/O has writeback ended at once.
 *  - A write reaching past initialized_size first puts zeroes on the disk
 *    from the old initialized_size up to it, and writes every buffer of the
 *    page from there on (the cache holds zeroes or data for them); the
 *    in-memory initialized_size rises after the data is written, the MFT
 *    record's only after the data is flushed (writeback_sizes).
 *  - Out of memory re-dirties the page and is not an error; any other
 *    failure sets PG_error, leaves the buffers clean and is recorded in the
 *    inode's errseq, which every handle sees once.  PG_error stays until a
 *    write of the whole page succeeds.
 */
#include "writeback.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attr_write.h"
#include "attrib.h"
#include "crashpoint.h"
#include "dirty.h"
#include "error.h"
#include "io.h"
#include "log.h"
#include "page.h"
#include "sanity.h"
#include "volume.h"

#define ERRSEQ_SEEN 1u

/* ---- errseq ---- */

void errseq_set(struct cache_inode *ci, int err)
{
	uint32_t old = atomic_load(&ci->wb_err), next;

	atomic_store(&ci->wb_errno, err);
	do {
		next = ((old >> 1) + 1) << 1;   /* a new error nobody has seen */
		if (!next)
			next = 2;
	} while (!atomic_compare_exchange_weak(&ci->wb_err, &old, next));
}

uint32_t errseq_sample(struct cache_inode *ci)
{
	uint32_t cur = atomic_load(&ci->wb_err);

	/* an error no handle has seen yet is reported to this one too */
	return (cur & ERRSEQ_SEEN) ? cur : 0;
}

int errseq_check_and_advance(struct cache_inode *ci, uint32_t *since)
{
	uint32_t cur = atomic_load(&ci->wb_err);

	if (cur == *since || !cur)
		return 0;
	while (!(cur & ERRSEQ_SEEN) &&
	       !atomic_compare_exchange_weak(&ci->wb_err, &cur, cur | ERRSEQ_SEEN))
		;
	*since = cur | ERRSEQ_SEEN;
	return -atomic_load(&ci->wb_errno);
}

/* ---- fault injection (tests): NTFSD_FAULT_WRITEPAGE_ENOMEM=N fails the
 * N-th, 2N-th, ... writepage allocation ---- */

static _Atomic unsigned long alloc_calls;
static unsigned long alloc_fail_every = (unsigned long)-1;

void writeback_init_faults(void)
{
	const char *v = getenv("NTFSD_FAULT_WRITEPAGE_ENOMEM");

	if (v && atol(v) > 0) {
		alloc_fail_every = (unsigned long)atol(v);
		log_warning("fault injection: every %lu-th writepage allocation fails",
			    alloc_fail_every);
	}
}

static bool wb_inject_enomem(void)
{
	return (atomic_fetch_add(&alloc_calls, 1) + 1) % alloc_fail_every == 0;
}

static void *wb_alloc(size_t n)
{
	return wb_inject_enomem() ? NULL : malloc(n);
}

/* ---- writepage ---- */

/* Put zeroes on the disk for [from, to) of a non-resident attribute,
 * skipping holes (they read as zeroes anyway). */
static int write_zeroes(struct cache_inode *ci, uint64_t from, uint64_t to)
{
	static const uint8_t zero[65536];
	struct ntfs_attr *na = ci->data;
	uint32_t bits = ci->cache->vol->geo.cluster_size_bits;

	cache_assert_held(&ci->init_lock);      /* initialized_size stays where it is */
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

static void page_failed(struct cache_inode *ci, uint64_t index, int err)
{
	struct shm_page *p = &ci->pages[index];

	page_set_bits(p, PG_error);
	errseq_set(ci, -err);
	atomic_fetch_add(&ci->cache->wb_errors, 1);
	log_error("writeback of page %llu of MFT record %llu failed: %s",
		  (unsigned long long)index, (unsigned long long)ci->mft_no, ntfs_last_error());
}

/* Give the buffers back to be written by a later pass: out of memory is
 * not an error.  Page locked. */
static void redirty_page_locked(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	cache_assert_page_locked(ci, index);
	set_page_dirty(&ci->dirty, index, bufs);
	atomic_fetch_add(&ci->wb_enomem, 1);
}

/* Resident: copy into the MFT record.  Page locked; unlocks. */
static int writepage_resident(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	uint64_t pos = index << NTFSD_PAGE_SHIFT, len;
	int err = 0;

	cache_assert_page_locked(ci, index);
	len = ci->data->data_size > pos ? ci->data->data_size - pos : 0;
	if (len > NTFSD_PAGE_SIZE)
		len = NTFSD_PAGE_SIZE;
	if (len && wb_inject_enomem())
		err = -ENOMEM;  /* stands for the record buffer's allocation */
	else if (len)
		err = ntfs_attr_write_resident(ci->data, pos, ci->data_map + pos, (size_t)len);
	if (err == -ENOMEM) {
		log_debug("writeback of resident MFT record %llu: out of memory, re-dirtied",
			  (unsigned long long)ci->mft_no);
		redirty_page_locked(ci, index, bufs);
		err = 0;
	} else if (err) {
		page_failed(ci, index, err);
	} else {
		atomic_fetch_add(&ci->cache->pages_written, 1);
	}
	cache_unlock_page(ci, index);
	return err;
}

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
			     uint64_t limit, struct io_extent *ext)
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
		ext[n].buf = ci->data_map + start;
		n++;
	}
	return n;
}

/* Did writing buffers `bufs` of page index write all of it below i_size? */
static bool wb_whole_page(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	uint32_t nbuf = ci->buffers_per_page, bsize = ci->buffer_size, b;
	uint64_t pos = index << NTFSD_PAGE_SHIFT;

	for (b = 0; b < nbuf; b++)
		if (!(bufs & (1u << b)) && pos + (uint64_t)b * bsize < ci->i_size)
			return false;
	return true;
}

/* Complete one page: the last step of its writeback. */
static void wb_end_page(struct cache_inode *ci, uint64_t index, uint32_t bufs, int err)
{
	struct cache *c = ci->cache;
	struct shm_page *p = &ci->pages[index];

	if (err == -ENOMEM) {
		cache_lock_page(ci, index);
		redirty_page_locked(ci, index, bufs);
		cache_unlock_page(ci, index);
	} else if (err) {
		page_failed(ci, index, err);
	} else {
		/* A failed page is clean with bytes the disk may not hold;
		 * only a write of all of it puts them all there, so a write of
		 * some of its buffers leaves PG_error (libntfsc must not take
		 * the zeroes it caches for zeroes on the disk). */
		if (wb_whole_page(ci, index, bufs))
			page_clear_bits(p, PG_error);
		atomic_fetch_add(&c->pages_written, 1);
	}
	atomic_fetch_sub(&c->header->counters.writeback_pages, 1);
	cache_end_page_writeback(ci, index);
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
	err = writeback_sizes(bt->ci);
	for (i = 0; i < bt->nsized; i++)
		wb_end_page(bt->ci, bt->sized_index[i], bt->sized_bufs[i], err);
	bt->nsized = 0;
	return err == -ENOMEM ? 0 : err;
}

/* A page whose bytes are written: end it, or keep it under writeback until
 * the sizes are written when the record does not cover it yet. */
static int wb_written(struct wb_batch *bt, uint64_t index, uint32_t bufs, uint64_t limit)
{
	int err = 0;

	if (limit <= atomic_load(&bt->ci->disk_init)) {
		wb_end_page(bt->ci, index, bufs, 0);
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
	cache_mutex_lock(&ci->init_lock);
	if (limit > ci->data->initialized_size) {
		ci->data->initialized_size = limit;
		ci->sizes_dirty = true;
	}
	cache_inode_sanity(ci);
	cache_mutex_unlock(&ci->init_lock);
}

static void redirty_after_failed_run(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{

	cache_lock_page(ci, index);
	set_page_dirty(&ci->dirty, index, bufs);
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
	struct io_extent *ext;
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
			wb_end_page(ci, bt->index[i], bt->bufs[i], -ENOMEM);
		bt->n = 0;
		bt->crossing = false;
		return 0;
	}
	for (i = 0; i < bt->n; i++) {
		bt->next[i] = page_extents(ci, bt->index[i], bt->bufs[i], bt->limit[i], ext + n);
		n += bt->next[i];
	}
	if (n)
		io_write_extents(ci->cache->io, ci->data, ext, n, &ci->rl_lock, ext_err);
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
			wb_end_page(ci, bt->index[i], bt->bufs[i], err);
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

static void warn_not_uptodate(struct cache_inode *ci, uint64_t index)
{
	if (!atomic_exchange(&ci->warned_not_uptodate, true))
		log_warning("MFT record %llu: page %llu is marked dirty but was never made "
			    "uptodate (a client wrote page state it should not have): its "
			    "bytes are not written, and the same for other pages of the file "
			    "is not logged again", (unsigned long long)ci->mft_no,
			    (unsigned long long)index);
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
static int writepage_batch(struct cache_inode *ci, uint64_t index, struct wb_batch *bt)
{
	struct cache *c = ci->cache;
	struct shm_page *p = &ci->pages[index];
	uint32_t nbuf = ci->buffers_per_page, bufs, bsize = ci->buffer_size;
	uint64_t pos = index << NTFSD_PAGE_SHIFT, i_size = ci->i_size, page_end, limit;
	bool crosses_init = false;
	uint32_t b;
	int err = 0, berr = 0;

	cache_assert_held(&ci->wb_lock);
	cache_assert_page_locked(ci, index);
	if (pos >= i_size) {
		/* Wholly past i_size (truncate raced us): discard, not an error. */
		clear_page_dirty_for_io(&ci->dirty, index);
		cache_unlock_page(ci, index);
		return 0;
	}
	page_end = pos + NTFSD_PAGE_SIZE;
	if (page_end > atomic_load(&ci->wb_fence)) {
		/* a shrinking truncate holds it: it stays dirty */
		cache_unlock_page(ci, index);
		return 0;
	}
	if (!page_test(p, PG_uptodate)) {
		/* dirty but never read nor wholly written: the cache does not
		 * hold the file's bytes, so they must never reach the disk */
		clear_page_dirty_for_io(&ci->dirty, index);
		warn_not_uptodate(ci, index);
		cache_unlock_page(ci, index);
		return 0;
	}
	if (page_end > i_size)
		memset(ci->data_map + i_size, 0, (size_t)(page_end - i_size));
	bufs = clear_page_dirty_for_io(&ci->dirty, index);
	if (ci->data->resident) {
		if (!bufs) {
			cache_unlock_page(ci, index);
			return 0;
		}
		return writepage_resident(ci, index, bufs);
	}
	/* Buffers wholly past i_size are clean and uptodate without I/O. */
	limit = page_end < i_size ? page_end : i_size;
	for (b = 0; b < nbuf; b++)
		if (pos + (uint64_t)b * bsize >= limit)
			bufs &= ~(1u << b);
	if (limit > ci->data->initialized_size && bufs) {
		crosses_init = true;
		for (b = 0; b < nbuf; b++) {
			uint64_t bstart = pos + (uint64_t)b * bsize;

			if (bstart + bsize > ci->data->initialized_size && bstart < limit)
				bufs |= 1u << b;
		}
	}
	if (!bufs) {
		cache_unlock_page(ci, index);
		return 0;
	}
	cache_set_page_writeback(ci, index);
	atomic_fetch_add(&c->header->counters.writeback_pages, 1);
	cache_unlock_page(ci, index);

	if (crosses_init && !(bt->crossing && bt->n && bt->index[bt->n - 1] + 1 == index &&
			      bt->limit[bt->n - 1] == pos)) {
		/* A new run past initialized_size: what the batch holds goes
		 * out first, then zeroes up to this page, then the run. */
		berr = wb_submit(bt);
		cache_mutex_lock(&ci->init_lock);
		cache_rwlock_rdlock(&ci->rl_lock);
		if (pos > ci->data->initialized_size)
			err = write_zeroes(ci, ci->data->initialized_size, pos);
		cache_rwlock_unlock(&ci->rl_lock);
		if (!err && pos > ci->data->initialized_size) {
			ci->data->initialized_size = pos;       /* zeroes up to here */
			ci->sizes_dirty = true;
		}
		cache_inode_sanity(ci);
		cache_mutex_unlock(&ci->init_lock);
		if (err) {
			wb_end_page(ci, index, bufs, err);
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

/* ---- a whole inode ---- */

int writeback_sizes(struct cache_inode *ci)
{
	struct ntfs_attr *na = ci->data;
	uint64_t init, size;
	bool need;
	int err;

	if (na->resident) {
		ci->sizes_dirty = false;
		return 0;
	}
	cache_mutex_lock(&ci->init_lock);
	need = ci->sizes_dirty || na->initialized_size != atomic_load(&ci->disk_init);
	init = na->initialized_size;    /* all of it is written: flushed next */
	cache_inode_sanity(ci);
	cache_mutex_unlock(&ci->init_lock);
	if (!need)
		return 0;
	/* The data the new sizes cover must be durable before they are. */
	cache_assert_may_sleep();
	err = ntfs_device_flush(ci->cache->vol->dev);
	crashpoint("wb-before-sizes");
	if (!err) {
		cache_mutex_lock(&ci->init_lock);
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
		cache_inode_sanity(ci);
		cache_mutex_unlock(&ci->init_lock);
	}
	if (err && err != -ENOMEM) {
		errseq_set(ci, -err);
		atomic_fetch_add(&ci->cache->wb_errors, 1);
		log_error("MFT record %llu: cannot write its sizes: %s",
			  (unsigned long long)ci->mft_no, ntfs_last_error());
	}
	return err;
}

int writeback_inode(struct cache_inode *ci, bool sync)
{
	int err;

	cache_mutex_lock(&ci->wb_lock);
	err = writeback_inode_locked(ci, sync);
	cache_mutex_unlock(&ci->wb_lock);
	return err;
}

/* One pass over the dirty pages.  -ENOMEM only if it could not start. */
static int writeback_pass(struct cache_inode *ci)
{
	struct wb_batch *bt = calloc(1, sizeof(*bt));
	uint64_t i = 0;
	int err = 0, first_err = 0;

	cache_assert_held(&ci->wb_lock);
	if (!bt)
		return -ENOMEM;  /* the pages stay dirty for a later pass */
	bt->ci = ci;
	/* before any dirty bit is taken, until every page taken has ended
	 * its writeback: flusher_sync_all() waits for passes it sees */
	atomic_store(&ci->wb_running, true);
	dirty_bitmap_trim(&ci->dirty);
	while ((i = dirty_bitmap_next(&ci->dirty, i)) != UINT64_MAX) {
		struct shm_page *p = &ci->pages[i];

		if (i >= cache_used_pages(ci)) {
			/* no page of the file lies there: a client's bit */
			clear_page_dirty_for_io(&ci->dirty, i);
			i++;
			continue;
		}
		if (!cache_trylock_page(ci, i)) {
			/* its holder may wait for a page we hold under writeback */
			err = wb_flush_batch(bt);
			if (err && !first_err)
				first_err = err;
			cache_lock_page(ci, i);
		}
		if (!page_test(p, PG_dirty) && !atomic_load(&p->buf_dirty)) {
			/* a stale bitmap bit: clear it */
			clear_page_dirty_for_io(&ci->dirty, i);
			cache_unlock_page(ci, i);
			i++;
			continue;
		}
		if (cache_page_writeback(ci, i)) {
			cache_unlock_page(ci, i);
			err = wb_flush_batch(bt);
			if (err && !first_err)
				first_err = err;
			cache_wait_on_page_writeback(ci, i);
			continue;
		}
		cache_clear_forged_writeback(ci, i);
		err = writepage_batch(ci, i, bt);
		if (err && !first_err)
			first_err = err;
		i++;
	}
	err = wb_flush_batch(bt);
	if (err && !first_err)
		first_err = err;
	atomic_store(&ci->wb_running, false);
	free(bt);
	return first_err;
}

/* How long a sync keeps retrying pages that writeback re-dirtied for lack
 * of memory before it reports ENOMEM: about 5 s, backing off to 100 ms. */
#define SYNC_ENOMEM_TRIES 60

static void sync_backoff(unsigned try)
{
	unsigned ms = try < 7 ? 1u << try : 100;
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* Pages only a client's forgery can have dirtied: a read-only daemon's
 * or a system file's (neither ever hands out a writable segment).  Their
 * bits are dropped, never written; logged once per file. */
static bool drop_forged_dirt(struct cache_inode *ci)
{
	uint64_t i = 0;

	if (!ci->cache->read_only && !ci->system_file)
		return false;
	while ((i = dirty_bitmap_next(&ci->dirty, i)) != UINT64_MAX) {
		cache_lock_page(ci, i);
		clear_page_dirty_for_io(&ci->dirty, i);
		cache_unlock_page(ci, i);
		i++;
	}
	dirty_bitmap_trim(&ci->dirty);
	if (!atomic_exchange(&ci->warned_system, true))
		log_warning("MFT record %llu: dirty pages on a %s: dropped, never written "
			    "(only a client writing page state it was not given can make them)",
			    (unsigned long long)ci->mft_no,
			    ci->system_file ? "system file" : "read-only volume");
	return true;
}

int writeback_inode_locked(struct cache_inode *ci, bool sync)
{
	uint64_t i, before;
	unsigned try;
	int err = 0, first_err = 0;

	cache_assert_held(&ci->wb_lock);
	if (drop_forged_dirt(ci))
		return 0;

	if (!sync) {
		err = writeback_pass(ci);
		return err == -ENOMEM ? 0 : err;
	}
	/* A sync covers every page dirty when it began: pages given back for
	 * lack of memory are written again until they are clean. */
	for (try = 0;; try++) {
		before = atomic_load(&ci->wb_enomem);
		err = writeback_pass(ci);
		if (err && err != -ENOMEM && !first_err)
			first_err = err;
		if (err != -ENOMEM && atomic_load(&ci->wb_enomem) == before)
			break;
		if (try == SYNC_ENOMEM_TRIES) {
			log_error("MFT record %llu: sync gives up: write-back kept running out "
				  "of memory; its dirty pages stay dirty",
				  (unsigned long long)ci->mft_no);
			if (!first_err)
				first_err = -ENOMEM;
			break;
		}
		sync_backoff(try);
	}
	for (i = 0; i < cache_used_pages(ci); i++)
		cache_wait_on_page_writeback(ci, i);
	err = writeback_sizes(ci);
	if (!first_err)
		first_err = err;
	/* nobody is appending: the room to grow can go (sizes are on disk) */
	if (!err && ci->trim_pending && !ci->openers && !cache_has_dirty(ci))
		cache_trim_allocation(ci);
	err = ntfs_device_flush(ci->cache->vol->dev);
	if (err && !first_err) {
		errseq_set(ci, -err);
		first_err = err;
	}
	return first_err;
}
