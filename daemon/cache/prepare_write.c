/*
 * prepare_write.c — making pages write-ready (ntfsd's page_mkwrite).
 *
 * Invariants: every refusal happens here, before a client may dirty a page,
 * so writeback never meets a write it cannot do: system files and metadata
 * under $Extend (EPERM), compressed data and anything that would need new
 * clusters — a hole, beyond the allocated size, a resident value growing —
 * (EOPNOTSUPP, until allocation exists).  i_size only grows here, under
 * size_lock, and when it does the bytes between the old and new i_size are
 * zero in the cache whatever a client left in the old last page's tail.  A
 * page leaves here PG_write_ready and uptodate, unless the caller said it
 * will overwrite the page wholly: then it is not read, and the writer marks
 * it uptodate after storing all of it.
 */
#include "cache.h"

#include <errno.h>
#include <string.h>

#include "attrib.h"
#include "error.h"
#include "inode.h"
#include "le.h"
#include "mft.h"
#include "page.h"
#include "seqcount.h"
#include "volume.h"

static int parent_is_extend(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	const struct ntfs_file_name *fn;
	uint32_t len;

	(void)ctx;
	(void)mft_no;
	if (le32(a->type) != AT_FILE_NAME || a->non_resident)
		return 0;
	fn = (const void *)ntfs_attr_value(a, &len);
	return len >= sizeof(*fn) && MREF(le64(fn->parent_directory)) == FILE_Extend;
}

static int check_writable(struct cache_inode *ci)
{
	struct ntfs_attr *na = ci->data;

	if (ci->cache->read_only)
		return ntfs_fail(EROFS, "the volume is served read-only");
	if (ci->mft_no < FILE_first_user ||
	    ntfs_inode_foreach_attr(ci->ni, parent_is_extend, NULL) > 0)
		return ntfs_fail(EPERM, "MFT record %llu is a system file: ntfsd never writes "
				 "NTFS metadata through the cache", (unsigned long long)ci->mft_no);
	if (na->flags & ATTR_IS_ENCRYPTED)
		return ntfs_fail(EACCES, "MFT record %llu is encrypted",
				 (unsigned long long)ci->mft_no);
	if (na->flags & ATTR_IS_COMPRESSED)
		return ntfs_fail(EOPNOTSUPP, "MFT record %llu is compressed: writing compressed "
				 "files is not supported yet", (unsigned long long)ci->mft_no);
	return 0;
}

/* Every cluster under [pos, end) must be allocated. */
static int check_allocated(struct cache_inode *ci, uint64_t pos, uint64_t end)
{
	struct ntfs_attr *na = ci->data;
	uint32_t bits = ci->cache->vol->geo.cluster_size_bits;
	int64_t vcn, last, run, lcn;

	if (na->resident)
		return end <= na->data_size ? 0
		       : ntfs_fail(EOPNOTSUPP, "MFT record %llu: growing a resident file is not "
				   "supported yet", (unsigned long long)ci->mft_no);
	if (end > na->allocated_size)
		return ntfs_fail(EOPNOTSUPP, "MFT record %llu: writing past the allocated size "
				 "(%llu bytes) needs new clusters, not supported yet",
				 (unsigned long long)ci->mft_no,
				 (unsigned long long)na->allocated_size);
	if (end <= pos)
		return 0;
	last = (int64_t)((end - 1) >> bits);
	for (vcn = (int64_t)(pos >> bits); vcn <= last; vcn += run) {
		lcn = ntfs_rl_vcn_to_lcn(&na->rl, vcn, &run);
		if (lcn == LCN_HOLE)
			return ntfs_fail(EOPNOTSUPP, "MFT record %llu: writing into a hole (vcn "
					 "%lld) needs new clusters, not supported yet",
					 (unsigned long long)ci->mft_no, (long long)vcn);
		if (lcn < 0)
			return ntfs_fail(EIO, "MFT record %llu: vcn %lld is not mapped",
					 (unsigned long long)ci->mft_no, (long long)vcn);
	}
	return 0;
}

/* Raise i_size to new_size (size_lock held). */
static void extend_i_size(struct cache_inode *ci, uint64_t new_size)
{
	struct shm_inode_slot *slot = &ci->cache->header->inodes[ci->slot];
	uint64_t old = ci->i_size;
	struct inode_sizes v;

	if (old % NTFSD_PAGE_SIZE) {
		struct shm_page *p = &ci->pages[old >> NTFSD_PAGE_SHIFT];

		lock_page(p, ci->cache->owner);
		memset(ci->data_map + old, 0, NTFSD_PAGE_SIZE - old % NTFSD_PAGE_SIZE);
		unlock_page(p);
	}
	ci->i_size = new_size;
	atomic_store(&ci->state->i_size, new_size);
	if (!ci->data->resident)
		ci->data->data_size = new_size;
	ci->sizes_dirty = true;
	v.i_size = new_size;
	v.initialized_size = ci->data->initialized_size;
	v.allocated_size = ci->data->allocated_size;
	inode_slot_write(slot, &v);
}

int cache_prepare_write(struct cache_inode *ci, uint64_t first, uint64_t count,
			uint64_t new_size, uint64_t write_start, uint64_t write_end)
{
	uint64_t pos = first << NTFSD_PAGE_SHIFT, end, i, limit;
	int err;

	err = check_writable(ci);
	if (err)
		return err;
	if (first > ci->nr_pages || count > ci->nr_pages - first)
		return ntfs_fail(EOPNOTSUPP, "MFT record %llu: pages %llu+%llu lie past the "
				 "allocated size: not supported yet", (unsigned long long)ci->mft_no,
				 (unsigned long long)first, (unsigned long long)count);
	pthread_mutex_lock(&ci->size_lock);
	end = (first + count) << NTFSD_PAGE_SHIFT;
	/* Only bytes below the new i_size will ever be written. */
	limit = new_size > ci->i_size ? new_size : ci->i_size;
	if (ci->data->resident && !(new_size > ci->i_size))
		limit = ci->i_size;
	err = check_allocated(ci, pos, end < limit ? end : limit);
	if (!err && new_size > ci->i_size)
		err = check_allocated(ci, ci->i_size, new_size);
	if (!err && new_size > ci->i_size)
		extend_i_size(ci, new_size);
	pthread_mutex_unlock(&ci->size_lock);
	if (err)
		return err;
	/* Pages the write will only partly cover must hold the file's bytes;
	 * a page it overwrites wholly need not be read: it is counted in the
	 * cache and made write-ready, and the writer makes it uptodate. */
	for (i = first; i < first + count; i++) {
		uint64_t ps = i << NTFSD_PAGE_SHIFT;

		if (ps >= write_start && ps + NTFSD_PAGE_SIZE <= write_end &&
		    !page_test(&ci->pages[i], PG_uptodate)) {
			cache_account_page(ci, i);
			atomic_store_explicit(&ci->referenced[i], 1, memory_order_relaxed);
		} else {
			err = readpage(ci, i);
			if (err)
				return err;
		}
		page_set_bits(&ci->pages[i], PG_write_ready);
	}
	return 0;
}
