/*
 * truncate.c — NTFS's truncate_blocks and trim_allocation (aops.h): the
 * attribute resized on disk, clusters freed or the new range a hole.
 *
 * Invariants (size_lock held by the caller; a shrink's pages past the new
 * end are fenced from write-back already, cache/truncate.c):
 *  - On the disk the MFT record (runlist, sizes) is written and flushed
 *    before freed clusters go back to $Bitmap, so nothing on disk ever
 *    points at a free cluster.  Growing past the allocation extends the
 *    runlist with a hole (sparse: a large truncate up costs no clusters);
 *    initialized_size is kept, so the new range reads as zeroes.
 *  - Resident files keep their value in the record while it fits, else move
 *    out to clusters (resident.c).  Compressed files change size in whole
 *    compression units; the unit the new end cuts is stored uncompressed
 *    first.
 */
#include "ntfs_ci.h"

#include <errno.h>

#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "crashpoint.h"
#include "device.h"
#include "error.h"
#include "lcnalloc.h"
#include "log.h"
#include "sanity.h"
#include "volume.h"

/* A resident value to size: shrinking always fits in the record, and
 * growth reaches here after ntfs_ci_resident_grow() made it fit or moved it
 * out, so no room (E2BIG) is a bug. */
static int truncate_resident(struct cache_inode *ci, uint64_t size)
{
	int err = ntfs_ci_resident_resize(NTFS_CI(ci), size);

	if (err == -E2BIG)
		return cache_bug("MFT record %llu: a resident value of %llu bytes does not fit "
				 "in its record after it was made to", (unsigned long long)ci->mft_no,
				 (unsigned long long)size);
	return err;
}

/* Non-resident: new runlist end and sizes into the record, then free. */
int ntfs_ci_truncate_nonresident(struct ntfs_cache_inode *nci, uint64_t size)
{
	struct cache_inode *ci = &nci->vfs;
	struct ntfs_volume *vol = NTFS_VOL(ci->cache);
	struct ntfs_attr *na = nci->data;
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
		err = ntfs_ci_store_unit_uncompressed(nci, size / na->compression_block_size);
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
		err = ntfs_ci_commit_runlist(nci, &rl, size, size);
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

int ntfs_aops_truncate_blocks(struct cache_inode *ci, uint64_t size)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	int err = size > ci->i_size ? ntfs_ci_resident_grow(nci, size) : 0;

	if (err)
		return err;
	if (!nci->data->resident)
		return ntfs_ci_truncate_nonresident(nci, size);  /* i_size with the record */
	err = truncate_resident(ci, size);
	if (!err) {
		cache_mutex_lock(&nci->init_lock);
		ci->i_size = size;
		cache_mutex_unlock(&nci->init_lock);
	}
	return err;
}

int ntfs_aops_trim_allocation(struct cache_inode *ci)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct ntfs_attr *na = nci->data;
	uint64_t cs = NTFS_VOL(ci->cache)->geo.cluster_size;

	cache_assert_held(&ci->size_lock);
	if (na->resident || ntfs_attr_is_compressed(na) ||
	    na->allocated_size <= (ci->i_size + cs - 1) / cs * cs)
		return 0;
	return ntfs_ci_truncate_nonresident(nci, ci->i_size);
}
