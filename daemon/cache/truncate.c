/*
 * truncate.c — changing a file's size (ntfsd's truncate_setsize + the NTFS
 * driver's attribute resize).
 *
 * Invariants:
 *  - Everything happens under the inode's size_lock, so it is ordered with
 *    prepare-write.  A shrink first fences the pages past the new end off
 *    from writeback (wb_fence: they stay dirty, unwritten) and waits for
 *    I/O already under way, then writes the record; only when that
 *    succeeded are i_size lowered and the pages dropped, so a failed
 *    truncate loses no write, and no write lands on clusters being freed.
 *  - Dropping a page: it is locked, waited out of writeback, cleaned, made
 *    not uptodate, its generation bumped and its memory punched out of the
 *    data segment, so every client mapping and pread sees it gone.  The
 *    tail of the new last page is zeroed in the cache.
 *  - On the disk: the MFT record (runlist, sizes) is written before freed
 *    clusters go back to $Bitmap, so nothing on disk ever points at a free
 *    cluster.  Growing past the allocation extends the runlist with a hole
 *    (sparse: a large truncate up costs no clusters); initialized_size is
 *    kept, so the new range reads as zeroes.
 *  - Resident files keep their value in the record while it fits, else move
 *    out to clusters (resident.c).  Compressed files change size in whole
 *    compression units; the unit the new end cuts is stored uncompressed
 *    first.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "crashpoint.h"
#include "device.h"
#include "dirty.h"
#include "error.h"
#include "lcnalloc.h"
#include "log.h"
#include "page.h"
#include "sanity.h"
#include "seqcount.h"
#include "volume.h"

static void publish_sizes(struct cache_inode *ci)
{
	struct inode_sizes v = { .i_size = ci->i_size,
				 .initialized_size = ci->data->initialized_size,
				 .allocated_size = ci->data->allocated_size };

	atomic_store(&ci->state->i_size, ci->i_size);
	inode_slot_write(&ci->cache->header->inodes[ci->slot], &v);
}

/* Drop page index from the cache entirely (see the invariants). */
static void truncate_page(struct cache_inode *ci, uint64_t index)
{
	struct shm_page *p = &ci->pages[index];

	cache_lock_page(ci, index);
	while (cache_page_writeback(ci, index)) {
		cache_unlock_page(ci, index);
		cache_wait_on_page_writeback(ci, index);
		cache_lock_page(ci, index);
	}
	cache_clear_forged_writeback(ci, index);
	clear_page_dirty_for_io(&ci->dirty, index);
	page_clear_bits(p, PG_uptodate | PG_write_ready | PG_error);
	atomic_store(&p->buf_uptodate, 0);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (fallocate(ci->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(index << NTFSD_PAGE_SHIFT), NTFSD_PAGE_SIZE) < 0)
		memset(ci->data_map + (index << NTFSD_PAGE_SHIFT), 0, NTFSD_PAGE_SIZE);
	cache_unaccount_page(ci, index);
	cache_unlock_page(ci, index);
}

/* Zero the cached bytes [from, end of its page). */
static void zero_page_tail(struct cache_inode *ci, uint64_t from)
{

	if (!(from % NTFSD_PAGE_SIZE))
		return;
	cache_lock_page(ci, from >> NTFSD_PAGE_SHIFT);
	memset(ci->data_map + from, 0, NTFSD_PAGE_SIZE - from % NTFSD_PAGE_SIZE);
	cache_unlock_page(ci, from >> NTFSD_PAGE_SHIFT);
}

/* A resident value to size: shrinking always fits in the record, and
 * growth reaches here after cache_resident_grow() made it fit or moved it
 * out, so no room (E2BIG) is a bug. */
static int truncate_resident(struct cache_inode *ci, uint64_t size)
{
	int err = cache_resident_resize(ci, size);

	if (err == -E2BIG)
		return cache_bug("MFT record %llu: a resident value of %llu bytes does not fit "
				 "in its record after it was made to", (unsigned long long)ci->mft_no,
				 (unsigned long long)size);
	return err;
}

/* Non-resident: new runlist end and sizes into the record, then free. */
static int truncate_nonresident(struct cache_inode *ci, uint64_t size)
{
	struct ntfs_volume *vol = ci->cache->vol;
	struct ntfs_attr *na = ci->data;
	uint32_t bits = vol->geo.cluster_size_bits;
	int64_t end_vcn = (int64_t)((size + vol->geo.cluster_size - 1) >> bits);
	int64_t ucl = ntfs_attr_is_compressed(na) ? (int64_t)1 << na->compression_unit : 1;
	int64_t alloc_vcn = (int64_t)(na->allocated_size >> bits);
	struct ntfs_runlist rl = { 0 }, freed = { 0 };
	size_t i;
	int err;

	cache_assert_held(&ci->size_lock);
	/* A compressed file is allocated in whole compression units; the unit
	 * the new end cuts is made uncompressed first, so what it keeps past
	 * the end is plain bytes past initialized_size, never read. */
	end_vcn = (end_vcn + ucl - 1) / ucl * ucl;
	if (ucl > 1 && size % na->compression_block_size && size < na->data_size &&
	    (int64_t)(size >> bits) < alloc_vcn &&
	    ntfs_rl_allocated(&na->rl, (int64_t)(size >> bits) / ucl * ucl, ucl) % ucl) {
		err = cache_store_unit_uncompressed(ci, size / na->compression_block_size);
		if (err)
			return err;
		alloc_vcn = (int64_t)(na->allocated_size >> bits);
	}
	err = ntfs_rl_copy(&rl, &na->rl);
	if (!err && end_vcn < alloc_vcn) {
		err = ntfs_rl_extract(&na->rl, end_vcn, alloc_vcn - end_vcn, &freed);
		if (!err)
			err = ntfs_rl_truncate(&rl, end_vcn);
	} else if (!err && end_vcn > alloc_vcn) {
		err = ntfs_rl_replace(&rl, alloc_vcn, end_vcn - alloc_vcn, LCN_HOLE);
	}
	/* the record's initialized_size is disk_init: already durable */
	if (!err)
		err = cache_commit_runlist(ci, &rl, size, size);
	ntfs_runlist_free(&rl);
	crashpoint("truncate-before-free");
	/* Only now does nothing on the disk point at them, once the record is
	 * durable: freed first, a power cut could leave the old record mapping
	 * clusters marked free.  Without the flush they stay allocated (a
	 * leak, logged), never free under a record. */
	if (!err && freed.count && ntfs_device_flush(vol->dev)) {
		log_error("MFT record %llu: the device flush after its truncate failed: %s; its "
			  "freed clusters stay allocated", (unsigned long long)ci->mft_no,
			  ntfs_last_error());
		freed.count = 0;
	}
	for (i = 0; !err && i < freed.count; i++)
		if (freed.runs[i].lcn >= 0 &&
		    ntfs_cluster_free(vol, freed.runs[i].lcn, freed.runs[i].length))
			log_error("MFT record %llu: cannot free clusters %lld+%lld: %s",
				  (unsigned long long)ci->mft_no, (long long)freed.runs[i].lcn,
				  (long long)freed.runs[i].length, ntfs_last_error());
	ntfs_runlist_free(&freed);
	crashpoint("truncate-after-free");
	return err;
}

/* Keep writeback off page index (it ends past the fence) and clients from
 * dirtying it anew without prepare-write, then wait out I/O under way. */
static void fence_page(struct cache_inode *ci, uint64_t index)
{
	struct shm_page *p = &ci->pages[index];

	cache_assert_held(&ci->size_lock);
	cache_lock_page(ci, index);
	page_clear_bits(p, PG_write_ready);
	cache_unlock_page(ci, index);
	cache_wait_on_page_writeback(ci, index);
}

/*
 * Shrink to size.  The record is written first, while the pages past the
 * new end are fenced off from writeback but keep their data and dirty
 * bits: if it fails, nothing a client wrote is lost, the file is as it
 * was.  Only then do i_size and the pages follow.
 */
static int truncate_shrink(struct cache_inode *ci, uint64_t size)
{
	uint64_t i, used = cache_used_pages(ci), first = size >> NTFSD_PAGE_SHIFT;
	int err;

	atomic_store(&ci->wb_fence, size);
	for (i = first; i < used; i++)
		fence_page(ci, i);
	crashpoint("truncate-before-record");
	err = ci->data->resident ? truncate_resident(ci, size) : truncate_nonresident(ci, size);
	if (err) {
		atomic_store(&ci->wb_fence, UINT64_MAX);
		return err;
	}
	ci->i_size = size;
	publish_sizes(ci);
	for (i = cache_pages_for(size); i < used; i++)
		truncate_page(ci, i);
	zero_page_tail(ci, size);
	atomic_store(&ci->wb_fence, UINT64_MAX);
	return 0;
}

/* Grow to size: the new range is a hole (or zeroes in the record). */
static int truncate_grow(struct cache_inode *ci, uint64_t size)
{
	int err;

	zero_page_tail(ci, ci->i_size);
	crashpoint("truncate-before-record");
	err = cache_resident_grow(ci, size);
	if (!err)
		err = ci->data->resident ? truncate_resident(ci, size)
					 : truncate_nonresident(ci, size);
	if (err)
		return err;
	ci->i_size = size;
	cache_use_pages(ci, size);
	return 0;
}

int cache_truncate(struct cache_inode *ci, uint64_t size)
{
	int err;

	if (ci->cache->read_only)
		return ntfs_fail(EROFS, "the volume is served read-only");
	err = cache_check_writable(ci);
	if (err)
		return err;
	if (cache_pages_for(size) > ci->nr_pages)
		return ntfs_fail(EFBIG, "MFT record %llu: %llu bytes is past what its cache segment "
				 "can hold while it is open; close every handle of it and reopen",
				 (unsigned long long)ci->mft_no, (unsigned long long)size);
	cache_mutex_lock(&ci->size_lock);
	if (size < ci->i_size)
		err = truncate_shrink(ci, size);
	else if (size > ci->i_size)
		err = truncate_grow(ci, size);
	publish_sizes(ci);
	cache_inode_sanity_settled(ci);     /* on failure too: the file as it was */
	cache_mutex_unlock(&ci->size_lock);
	return err;
}

int cache_trim_allocation(struct cache_inode *ci)
{
	struct ntfs_attr *na = ci->data;
	uint64_t cs = ci->cache->vol->geo.cluster_size;
	int err = 0;

	cache_mutex_lock(&ci->size_lock);
	if (ci->trim_pending && !na->resident && !ntfs_attr_is_compressed(na) &&
	    na->allocated_size > (ci->i_size + cs - 1) / cs * cs)
		err = truncate_nonresident(ci, ci->i_size);
	/* best effort, tried once: a failure leaves the room allocated (no
	 * data is at stake) until the file grows again, rather than a retry
	 * and a warning at every flusher pass */
	ci->trim_pending = false;
	cache_inode_sanity_settled(ci);
	cache_mutex_unlock(&ci->size_lock);
	if (err)
		log_warning("MFT record %llu: cannot give back the room allocated past its end: %s",
			    (unsigned long long)ci->mft_no, ntfs_last_error());
	return err;
}

void cache_trim_all(struct cache *c)
{
	struct cache_inode *ci;

	if (c->read_only)
		return;
	/* at shutdown: no other thread touches the inode list */
	for (ci = c->inodes; ci; ci = ci->next)
		if (ci->trim_pending && !cache_has_dirty(ci))
			cache_trim_allocation(ci);
	ntfs_device_flush(c->vol->dev);
}
