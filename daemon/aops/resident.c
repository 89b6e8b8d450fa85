/*
 * resident.c — NTFS: a resident file growing: within its MFT record while the
 * value fits, else moved out to clusters (non-resident), transparently to
 * clients that have it mapped.
 *
 * Invariants (size_lock held by the caller):
 *  - The bytes moved out are the cache's when page 0 is uptodate (they may
 *    be newer than the record: dirty, not yet written back), else the
 *    record's; page 0 stays locked from the copy until the attribute is
 *    non-resident, so writeback cannot write the old resident value in
 *    between, and a dirty page 0 is simply written again to its cluster.
 *  - Order on the disk: clusters allocated ($Bitmap), the value written to
 *    them, then the record rewritten as non-resident; if the record write
 *    fails, the clusters are freed and the file is resident as before.
 *  - The data segment does not change: client mappings keep working.
 *  - A compressed file moves out as whole compression units (16 clusters)
 *    stored uncompressed, as the first write into a unit would store it.
 */
#include "ntfs_ci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "crashpoint.h"
#include "device.h"
#include "error.h"
#include "lcnalloc.h"
#include "page.h"
#include "volume.h"

static int make_nonresident(struct ntfs_cache_inode *nci)
{
	struct cache_inode *ci = &nci->vfs;
	struct ntfs_volume *vol = NTFS_VOL(ci->cache);
	struct ntfs_attr *na = nci->data;
	struct shm_page *p0 = cache_page(ci, 0);
	uint64_t len = na->data_size, csize = vol->geo.cluster_size;
	int64_t clusters = (int64_t)((len + csize - 1) / csize);
	struct ntfs_runlist rl = { 0 };
	uint8_t *buf = NULL;
	size_t i;
	int err = 0;

	if (na->flags & ATTR_IS_COMPRESSED) {
		/* stored as whole uncompressed units of 16 clusters */
		if (csize > 4096)
			return ntfs_fail(EOPNOTSUPP, "MFT record %llu: NTFS does not compress with "
					 "clusters over 4 KiB", (unsigned long long)ci->mft_no);
		clusters = (clusters + 15) / 16 * 16;
		if (!clusters)
			clusters = 16;
	}
	if (clusters) {
		buf = calloc(1, (size_t)(clusters * (int64_t)csize));
		if (!buf)
			return -ENOMEM;
		err = ntfs_cluster_alloc(vol, clusters, -1, &rl);
		if (err) {
			free(buf);
			return err;
		}
	}
	cache_lock_page(ci, 0);
	if (len)
		memcpy(buf, page_test(p0, PG_uptodate) ? cache_data(ci, 0, 1) : na->value, (size_t)len);
	for (i = 0, err = 0; i < rl.count && !err; i++) {
		uint64_t off = (uint64_t)rl.runs[i].vcn * csize;

		err = ntfs_device_pwrite(vol->dev, buf + off, (size_t)(rl.runs[i].length * (int64_t)csize),
					 (uint64_t)rl.runs[i].lcn * csize);
	}
	if (!err)
		err = ntfs_device_flush(vol->dev);
	crashpoint("resident-before-record");
	if (!err) {
		cache_mutex_lock(&nci->init_lock);
		cache_rwlock_wrlock(&nci->rl_lock);
		err = ntfs_attr_make_nonresident(na, &rl, (uint64_t)clusters * csize);
		if (!err)       /* the value was flushed to its clusters above */
			atomic_store(&ci->disk_init, na->initialized_size);
		ntfs_ci_sanity(nci);
		cache_rwlock_unlock(&nci->rl_lock);
		cache_mutex_unlock(&nci->init_lock);
	}
	cache_unlock_page(ci, 0);
	crashpoint("resident-after-record");
	if (err)
		for (i = 0; i < rl.count; i++)
			ntfs_cluster_free(vol, rl.runs[i].lcn, rl.runs[i].length);
	ntfs_runlist_free(&rl);
	free(buf);
	if (err == -E2BIG)
		err = ntfs_fail(EFBIG, "MFT record %llu: no room in the record for the non-resident "
				"header", (unsigned long long)ci->mft_no);
	return err;
}

int ntfs_ci_resident_resize(struct ntfs_cache_inode *nci, uint64_t size)
{
	struct cache_inode *ci = &nci->vfs;
	int err;

	/* page 0 excludes writepage_resident, rl_lock the readers of na->value */
	cache_lock_page(ci, 0);
	cache_mutex_lock(&nci->init_lock);
	cache_rwlock_wrlock(&nci->rl_lock);
	err = ntfs_attr_resize_resident(nci->data, size);
	if (!err)
		atomic_store(&ci->disk_init, size);
	ntfs_ci_sanity(nci);
	cache_rwlock_unlock(&nci->rl_lock);
	cache_mutex_unlock(&nci->init_lock);
	cache_unlock_page(ci, 0);
	return err;
}

int ntfs_ci_resident_grow(struct ntfs_cache_inode *nci, uint64_t new_size)
{
	struct cache_inode *ci = &nci->vfs;
	int err;

	cache_assert_held(&ci->size_lock);
	if (!nci->data->resident || new_size <= nci->data->data_size)
		return 0;
	err = ntfs_ci_resident_resize(nci, new_size);
	if (err != -E2BIG)
		return err;
	return make_nonresident(nci);
}
