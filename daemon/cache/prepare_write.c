/*
 * prepare_write.c — making pages write-ready (ntfsd's page_mkwrite), the
 * generic half: the refusals, i_size, the pages.  The file system backs
 * the bytes with blocks (aops->prepare_write).
 *
 * Invariants: every refusal happens here or in the file system's
 * prepare_write, before a client may dirty a page, so writeback never
 * meets a write it cannot do: a read-only volume (EROFS), system files
 * (EPERM), the file system's own (EACCES, ENOSPC, ...), growth past what
 * the segments can grow to in place (EFBIG; below that they grow, see
 * cache_inode_grow()).  i_size only grows here, under size_lock, when
 * the file system backed the new range (it raises i_size itself, with its
 * own copy of the size, under its size lock), and when it does the bytes
 * between the old and new i_size are zero in the cache whatever a client
 * left in the old last page's tail.  ENOSPC reaches the writer only once
 * the room to grow other files hold has been given back and the write
 * still does not fit.  A page leaves here PG_write_ready and
 * uptodate, unless the caller said it will overwrite the page wholly: then
 * it is not read, and the writer marks it uptodate after storing all of
 * it.
 */
#include "cache_int.h"

#include <errno.h>
#include <string.h>

#include "error.h"
#include "page.h"
#include "sanity.h"
#include "seqcount.h"

int cache_check_writable(struct cache_inode *ci)
{
	if (ci->cache->read_only)
		return ntfs_fail(EROFS, "the volume is served read-only");
	if (ci->system_file)
		return ntfs_fail(EPERM, "MFT record %llu is a system file: ntfsd never writes "
				 "NTFS metadata through the cache", (unsigned long long)ci->mft_no);
	return ci->cache->aops->check_writable ? ci->cache->aops->check_writable(ci) : 0;
}

void cache_publish_sizes(struct cache_inode *ci)
{
	struct cache_attr a;
	struct inode_sizes v;

	ci->cache->aops->getattr(ci, &a);
	v.i_size = ci->i_size;
	v.initialized_size = a.initialized_size;
	v.allocated_size = a.allocated_size;
	atomic_store(&ci->state->i_size, ci->i_size);
	inode_slot_write(&ci->cache->header->inodes[ci->slot], &v);
}

/* Before i_size grows from `from`: the old last page's tail is zero in the
 * cache (a client may have stored past the end) and the pages up to the
 * new end are in use.  Harmless if the growth then fails: bytes past
 * i_size are zero anyway, and used_pages is only a high-water mark. */
static void before_growth(struct cache_inode *ci, uint64_t from, uint64_t new_size)
{
	cache_assert_held(&ci->size_lock);
	if (from % NTFSD_PAGE_SIZE) {
		cache_lock_page(ci, from >> NTFSD_PAGE_SHIFT);
		memset(cache_data(ci, from, 1), 0, NTFSD_PAGE_SIZE - from % NTFSD_PAGE_SIZE);
		cache_unlock_page(ci, from >> NTFSD_PAGE_SHIFT);
	}
	cache_use_pages(ci, new_size);
}

int cache_refuse_growth(struct cache_inode *ci, uint64_t pages)
{
	if (pages > CACHE_MAX_WANT_PAGES)
		return ntfs_fail(EFBIG, "MFT record %llu: a size of %llu pages is past the %llu "
				 "pages a cache segment can hold", (unsigned long long)ci->mft_no,
				 (unsigned long long)pages, (unsigned long long)CACHE_MAX_WANT_PAGES);
	atomic_store(&ci->outgrown_pages, pages);
	return ntfs_fail(EFBIG, "MFT record %llu: %llu pages lie past what its cache segments "
			 "can grow to while it is open (%llu pages); close every handle of it "
			 "and reopen to grow it further", (unsigned long long)ci->mft_no,
			 (unsigned long long)pages, (unsigned long long)ci->max_pages);
}

int cache_prepare_write(struct cache_inode *ci, uint64_t first, uint64_t count,
			uint64_t new_size, uint64_t write_start, uint64_t write_end)
{
	uint64_t i;
	bool grow;
	int err;

	err = cache_check_writable(ci);
	if (err)
		return err;
	if (first > CACHE_MAX_PAGES || count > CACHE_MAX_PAGES - first ||
	    new_size > CACHE_MAX_PAGES << NTFSD_PAGE_SHIFT)
		return cache_refuse_growth(ci, CACHE_MAX_PAGES + 1);
	cache_mutex_lock(&ci->size_lock);
	{
		/* past the segments' room: grow them in place first */
		uint64_t want = cache_pages_for(new_size);

		if (first + count > want)
			want = first + count;
		err = cache_inode_grow(ci, want);
		if (err) {
			cache_mutex_unlock(&ci->size_lock);
			return err;
		}
	}
	grow = new_size > ci->i_size;
	if (grow)
		before_growth(ci, ci->i_size, new_size);
	/* the file system raises i_size with its own size (aops.h) */
	err = ci->cache->aops->prepare_write(ci, first << NTFSD_PAGE_SHIFT,
					     (first + count) << NTFSD_PAGE_SHIFT, new_size);
	/* Room to grow is a wish, never the reason a write fails: with the
	 * volume full, the room files hold goes back and the write is tried
	 * once more (a refused one changed nothing). */
	if (err == -ENOSPC && cache_reclaim_room(ci))
		err = ci->cache->aops->prepare_write(ci, first << NTFSD_PAGE_SHIFT,
						     (first + count) << NTFSD_PAGE_SHIFT, new_size);
	if (!err && grow) {
		cache_publish_sizes(ci);
		cache_inode_touch(ci);
	}
	cache_inode_sanity_settled(ci);     /* on failure too: nothing half done */
	cache_mutex_unlock(&ci->size_lock);
	if (err)
		return err;
	/* Pages the write will only partly cover must hold the file's bytes;
	 * a page it overwrites wholly need not be read: it is counted in the
	 * cache and made write-ready, and the writer makes it uptodate. */
	for (i = first; i < first + count; i++) {
		uint64_t ps = i << NTFSD_PAGE_SHIFT;

		if (ps >= write_start && ps + NTFSD_PAGE_SIZE <= write_end &&
		    !page_test(cache_page(ci, i), PG_uptodate)) {
			cache_account_page(ci, i);
			atomic_store_explicit(&cache_page_priv(ci, i)->referenced, 1, memory_order_relaxed);
		} else {
			err = readpage(ci, i);
			if (err)
				return err;
		}
		page_set_bits(cache_page(ci, i), PG_write_ready);
	}
	return 0;
}
