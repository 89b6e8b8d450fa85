/*
 * prepare_write.c — NTFS's prepare_write (aops.h): backing the bytes a
 * client is about to write with clusters (ntfsd's page_mkwrite, the
 * allocating half).
 *
 * Invariants: every refusal of a write that needs space happens here,
 * before a client may dirty a page, so writeback never meets a write it
 * cannot do: a full volume (ENOSPC), a resident compressed file on
 * clusters over 4 KiB moving out (EOPNOTSUPP).  Clusters are allocated
 * here and only here — holes filled (zeroed on disk first), the allocation
 * grown, compression units stored uncompressed, a resident value grown or
 * moved out — and the MFT record rewritten with the new runlist before
 * any page over them may be dirtied, so writeback never allocates.  A
 * growth raises i_size and the attribute's data_size here, together under
 * init_lock; the pages are the generic cache's (cache/prepare_write.c).
 */
#include "ntfs_ci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attr_record.h"
#include "attrib.h"
#include "crashpoint.h"
#include "device.h"
#include "lcnalloc.h"
#include "log.h"
#include "error.h"
#include "sanity.h"
#include "volume.h"

/* The refusals NTFS adds to the generic ones: encrypted files. */
int ntfs_aops_check_writable(struct cache_inode *ci)
{
	if (NTFS_CI(ci)->data->flags & ATTR_IS_ENCRYPTED)
		return ntfs_fail(EACCES, "MFT record %llu is encrypted",
				 (unsigned long long)ci->mft_no);
	return 0;
}

/* ---- allocation ---- */

int ntfs_ci_commit_runlist(struct ntfs_cache_inode *nci, struct ntfs_runlist *rl,
			   uint64_t data_size, uint64_t init_cap)
{
	struct cache_inode *ci = &nci->vfs;
	struct ntfs_attr *na = nci->data;
	struct ntfs_attr saved;
	uint64_t rec_init;
	int err;

	/* sizes are read and written under init_lock: writeback raises
	 * initialized_size under it, and its raise must not be lost */
	cache_assert_may_sleep();       /* the record write */
	cache_mutex_lock(&nci->init_lock);
	cache_rwlock_wrlock(&nci->rl_lock);
	saved = *na;
	na->rl = *rl;
	if (data_size != UINT64_MAX)
		na->data_size = data_size;
	if (na->initialized_size > init_cap)
		na->initialized_size = init_cap;
	if (na->initialized_size > na->data_size)
		na->initialized_size = na->data_size;
	rec_init = atomic_load(&ci->disk_init);
	if (rec_init > na->initialized_size)
		rec_init = na->initialized_size;
	err = ntfs_attr_update_mapping_pairs_init(na, rec_init);
	if (!err) {
		atomic_store(&ci->disk_init, rec_init);
		if (data_size != UINT64_MAX)
			ci->i_size = data_size;  /* with the record, under init_lock */
	}
	if (err) {
		na->rl = saved.rl;
		na->data_size = saved.data_size;
		na->initialized_size = saved.initialized_size;
		na->allocated_size = saved.allocated_size;
		na->compressed_size = saved.compressed_size;
		na->flags = saved.flags;
	} else {
		*rl = saved.rl;         /* the caller frees the old one */
	}
	ntfs_ci_sanity(nci);
	cache_rwlock_unlock(&nci->rl_lock);
	cache_mutex_unlock(&nci->init_lock);
	return err;
}

/* Put zeroes on the clusters [lcn, lcn + count) (fresh clusters that will
 * lie below initialized_size: stale bytes must never become file data). */
static int zero_clusters(struct ntfs_volume *vol, int64_t lcn, int64_t count)
{
	static const uint8_t zero[1 << 16];
	uint64_t pos = (uint64_t)lcn << vol->geo.cluster_size_bits;
	uint64_t end = (uint64_t)(lcn + count) << vol->geo.cluster_size_bits;

	cache_assert_may_sleep();
	while (pos < end) {
		size_t n = end - pos < sizeof(zero) ? (size_t)(end - pos) : sizeof(zero);
		int err = ntfs_device_pwrite(vol->dev, zero, n, pos);

		if (err)
			return err;
		pos += n;
	}
	return 0;
}

/* The lcn just after the allocated cluster nearest below vcn, as a hint. */
static int64_t hint_before(const struct ntfs_runlist *rl, int64_t vcn)
{
	size_t i;
	int64_t hint = -1;

	for (i = 0; i < rl->count && rl->runs[i].vcn < vcn; i++)
		if (rl->runs[i].lcn >= 0) {
			int64_t end = rl->runs[i].vcn + rl->runs[i].length;

			hint = rl->runs[i].lcn + ((end < vcn ? end : vcn) - rl->runs[i].vcn);
		}
	return hint;
}

/* Map [vcn, vcn + count) to new clusters in rl; a hole being filled gets
 * zeroes on disk first (always: writeback may raise initialized_size past
 * it at any moment, having skipped the hole when it zero-filled), clusters
 * past the allocation need none (initialized_size never passes it). */
static int allocate_clusters(struct cache_inode *ci, struct ntfs_runlist *rl, int64_t vcn,
			     int64_t count, bool zero, struct ntfs_runlist *fresh)
{
	struct ntfs_volume *vol = NTFS_VOL(ci->cache);
	struct ntfs_runlist got = { 0 };
	int64_t at = vcn;
	size_t i;
	int err;

	err = ntfs_cluster_alloc(vol, count, hint_before(rl, vcn), &got);
	if (err)
		return err;
	for (i = 0; i < got.count && !err; i++) {
		const struct ntfs_run *r = &got.runs[i];

		if (zero)
			err = zero_clusters(vol, r->lcn, r->length);
		if (!err)
			err = ntfs_rl_replace(rl, at, r->length, r->lcn);
		at += r->length;
	}
	/* fresh lists what to give back if a later step fails */
	for (i = 0, at = vcn; i < got.count && !err; at += got.runs[i].length, i++)
		err = ntfs_rl_replace(fresh, at, got.runs[i].length, got.runs[i].lcn);
	if (err) {
		/* nothing on disk points at them yet; rl is the caller's scratch copy */
		ntfs_rl_truncate(fresh, vcn);
		for (i = 0; i < got.count; i++)
			ntfs_cluster_free(vol, got.runs[i].lcn, got.runs[i].length);
	}
	ntfs_runlist_free(&got);
	return err;
}

/* Sparse files are allocated in units of 16 clusters (the compression unit
 * NTFS gives a sparse attribute, as Windows does). */
#define SPARSE_UNIT_CLUSTERS 16

/* Where the clusters of a write starting at vcn `first` past the
 * allocation's end (alloc_end) begin: alloc_end, or, when at least a sparse
 * unit lies between, the unit boundary at or below `first`, the clusters
 * before it left a hole.  Only where NTFS has sparse files (3.0 on) and not
 * for compressed files, whose holes are per compression unit already. */
static int64_t sparse_gap_end(struct cache_inode *ci, int64_t alloc_end, int64_t first)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	int64_t at = first / SPARSE_UNIT_CLUSTERS * SPARSE_UNIT_CLUSTERS;

	if (NTFS_VOL(ci->cache)->major_ver < 3 || ntfs_attr_is_compressed(nci->data) || at <= alloc_end)
		return alloc_end;
	return at;
}

/*
 * Make every cluster under [pos, end) allocated: fill holes, grow the
 * allocation past its end (with some room to spare when `room`, so a file
 * written by appends gets few, large extents), then write the new runlist
 * into the MFT record before any page may be dirtied over it.  size_lock
 * held.  On failure nothing changed: the clusters are freed, the runlist
 * restored.
 */
static int allocate_range(struct cache_inode *ci, uint64_t pos, uint64_t end, bool room)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct ntfs_volume *vol = NTFS_VOL(ci->cache);
	struct ntfs_attr *na = nci->data;
	uint32_t bits = vol->geo.cluster_size_bits;
	int64_t vcn, last, run, lcn, alloc_end, want_end;
	struct ntfs_runlist rl = { 0 }, fresh = { 0 };
	bool changed = false;
	size_t i;
	int err;

	cache_assert_held(&ci->size_lock);
	if (end <= pos)
		return 0;
	last = (int64_t)((end - 1) >> bits);
	alloc_end = (int64_t)(na->allocated_size >> bits);
	for (vcn = (int64_t)(pos >> bits); vcn <= last && vcn < alloc_end; vcn += run) {
		lcn = ntfs_rl_vcn_to_lcn(&na->rl, vcn, &run);
		if (lcn >= 0)
			continue;
		if (lcn != LCN_HOLE)
			return ntfs_fail(EIO, "MFT record %llu: vcn %lld is not mapped",
					 (unsigned long long)ci->mft_no, (long long)vcn);
		if (!changed && (err = ntfs_rl_copy(&rl, &na->rl)))
			return err;
		changed = true;
		if (run > last + 1 - vcn)
			run = last + 1 - vcn;
		err = allocate_clusters(ci, &rl, vcn, run, true, &fresh);
		if (err)
			goto undo;
	}
	if (last >= alloc_end) {
		int64_t extra = !room ? 0 : alloc_end / 8 > 256 ? alloc_end / 8 : 256;
		int64_t from = sparse_gap_end(ci, alloc_end, (int64_t)(pos >> bits));

		if (!changed && (err = ntfs_rl_copy(&rl, &na->rl)))
			return err;
		changed = true;
		/* a write far past the end leaves the gap a hole, as ntfs-3g
		 * does: only the clusters written are allocated */
		if (from > alloc_end && (err = ntfs_rl_replace(&rl, alloc_end, from - alloc_end,
							       LCN_HOLE)))
			goto undo;
		want_end = last + 1;
		err = allocate_clusters(ci, &rl, from, want_end + extra - from, false, &fresh);
		if (!err && extra)
			ci->trim_pending = true;
		else if (err == -ENOSPC && extra)  /* the room to spare is a wish, not a need */
			err = allocate_clusters(ci, &rl, from, want_end - from, false, &fresh);
		if (err)
			goto undo;
	}
	if (!changed)
		return 0;
	/* The clusters' $Bitmap bits, and the zeroes over holes filled below
	 * initialized_size, must be durable before the record maps those
	 * clusters: a volatile write cache may otherwise keep the record and
	 * lose the bitmap (clusters in use, marked free: allocated twice).
	 * The record's initialized_size is disk_init, durable by definition. */
	if ((err = ntfs_device_flush(vol->dev)))
		goto undo;
	crashpoint("alloc-before-record");
	err = ntfs_ci_commit_runlist(nci, &rl, UINT64_MAX, UINT64_MAX);
	if (err)
		goto undo;
	cache_use_pages(ci, na->allocated_size);
	crashpoint("alloc-after-record");
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&fresh);
	return 0;
undo:
	for (i = 0; i < fresh.count; i++)
		if (fresh.runs[i].lcn >= 0)
			ntfs_cluster_free(vol, fresh.runs[i].lcn, fresh.runs[i].length);
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&fresh);
	return err;
}

/* ---- compressed files ---- */

/*
 * Store compression unit `unit` uncompressed: the whole unit's current bytes
 * (decompressed; zeroes for a sparse unit or one past the allocation) go to
 * freshly allocated clusters, the record is rewritten to map the unit to
 * them (a fully allocated unit is an uncompressed one in NTFS), and only
 * then are the unit's old clusters freed.  The disk is consistent at every
 * step, and writes to the unit from now on are plain writes through the
 * runlist.  size_lock held; no page of the unit can be dirty (none is
 * write-ready before this).
 */
int ntfs_ci_store_unit_uncompressed(struct ntfs_cache_inode *nci, uint64_t unit)
{
	struct cache_inode *ci = &nci->vfs;
	struct ntfs_volume *vol = NTFS_VOL(ci->cache);
	struct ntfs_attr *na = nci->data;
	uint32_t bits = vol->geo.cluster_size_bits, cb = na->compression_block_size;
	int64_t ucl = (int64_t)1 << na->compression_unit, vcn0 = (int64_t)unit * ucl, at;
	int64_t alloc_end = (int64_t)(na->allocated_size >> bits);
	struct ntfs_runlist got = { 0 }, rl = { 0 }, old_runs = { 0 };
	uint8_t *buf = calloc(1, cb);
	ssize_t n = 0;
	size_t i;
	int err;

	cache_assert_held(&ci->size_lock);
	if (!buf)
		return -ENOMEM;
	if (vcn0 < alloc_end) {
		cache_rwlock_rdlock(&nci->rl_lock);
		n = ntfs_attr_pread(na, unit * cb, cb, buf);
		cache_rwlock_unlock(&nci->rl_lock);
		if (n < 0) {
			free(buf);
			return (int)n;
		}
	}
	err = ntfs_cluster_alloc(vol, ucl, hint_before(&na->rl, vcn0), &got);
	for (i = 0, at = 0; !err && i < got.count; at += got.runs[i].length, i++)
		err = ntfs_device_pwrite(vol->dev, buf + ((uint64_t)at << bits),
					 (size_t)got.runs[i].length << bits,
					 (uint64_t)got.runs[i].lcn << bits);
	if (!err)
		err = ntfs_device_flush(vol->dev);
	if (!err)
		err = ntfs_rl_copy(&rl, &na->rl);
	if (!err && vcn0 < alloc_end)
		err = ntfs_rl_extract(&na->rl, vcn0, ucl, &old_runs);
	for (i = 0, at = vcn0; !err && i < got.count; at += got.runs[i].length, i++)
		err = ntfs_rl_replace(&rl, at, got.runs[i].length, got.runs[i].lcn);
	crashpoint("unit-before-record");
	if (!err)
		err = ntfs_ci_commit_runlist(nci, &rl, UINT64_MAX, UINT64_MAX);
	if (err) {
		for (i = 0; i < got.count; i++)
			ntfs_cluster_free(vol, got.runs[i].lcn, got.runs[i].length);
	} else {
		crashpoint("unit-after-record");
		/* the old clusters go only once the record no longer mapping
		 * them is durable (as in truncate.c) */
		if (old_runs.count && ntfs_device_flush(vol->dev)) {
			log_error("MFT record %llu: the device flush after rewriting compression "
				  "unit %llu failed: %s; its old clusters stay allocated",
				  (unsigned long long)ci->mft_no, (unsigned long long)unit,
				  ntfs_last_error());
			old_runs.count = 0;
		}
		for (i = 0; i < old_runs.count; i++)
			if (old_runs.runs[i].lcn >= 0)
				ntfs_cluster_free(vol, old_runs.runs[i].lcn, old_runs.runs[i].length);
		cache_use_pages(ci, na->allocated_size);
	}
	ntfs_runlist_free(&got);
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&old_runs);
	free(buf);
	return err;
}

/* Every compression unit under [pos, end) stored uncompressed. */
static int uncompress_range(struct cache_inode *ci, uint64_t pos, uint64_t end)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct ntfs_attr *na = nci->data;
	uint32_t cb = na->compression_block_size;
	int64_t ucl = (int64_t)1 << na->compression_unit;
	uint32_t bits = NTFS_VOL(ci->cache)->geo.cluster_size_bits;
	uint64_t unit;
	int err;

	for (unit = pos / cb; unit * cb < end; unit++) {
		int64_t vcn0 = (int64_t)unit * ucl;

		if (vcn0 + ucl <= (int64_t)(na->allocated_size >> bits) &&
		    ntfs_rl_allocated(&na->rl, vcn0, ucl) == ucl)
			continue;       /* already an uncompressed unit */
		err = ntfs_ci_store_unit_uncompressed(nci, unit);
		if (err)
			return err;
	}
	return 0;
}

/* The post-condition of the allocation above: every byte under [pos, end)
 * is backed, by clusters or (resident) by the value in the record.  Only a
 * bug in allocate_range(), uncompress_range() or ntfs_ci_resident_grow()
 * leaves it unmet; the writer gets EIO, never a page over nothing. */
static int check_allocated(struct cache_inode *ci, uint64_t pos, uint64_t end)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct ntfs_attr *na = nci->data;
	uint32_t bits = NTFS_VOL(ci->cache)->geo.cluster_size_bits;
	int64_t vcn, last, run, lcn;

	if (na->resident)
		return end <= na->data_size ? 0
		       : cache_bug("MFT record %llu: bytes up to %llu prepared for writing, but "
				   "its resident value holds %llu", (unsigned long long)ci->mft_no,
				   (unsigned long long)end, (unsigned long long)na->data_size);
	if (end > na->allocated_size)
		return cache_bug("MFT record %llu: bytes up to %llu prepared for writing, but only "
				 "%llu are allocated", (unsigned long long)ci->mft_no,
				 (unsigned long long)end, (unsigned long long)na->allocated_size);
	if (end <= pos)
		return 0;
	last = (int64_t)((end - 1) >> bits);
	for (vcn = (int64_t)(pos >> bits); vcn <= last; vcn += run) {
		lcn = ntfs_rl_vcn_to_lcn(&na->rl, vcn, &run);
		if (lcn == LCN_HOLE)
			return cache_bug("MFT record %llu: vcn %lld prepared for writing is still a "
					 "hole", (unsigned long long)ci->mft_no, (long long)vcn);
		if (lcn < 0)
			return ntfs_fail(EIO, "MFT record %llu: vcn %lld is not mapped",
					 (unsigned long long)ci->mft_no, (long long)vcn);
	}
	return 0;
}

/* Growing to new_size, the bytes from i_size on that need clusters besides
 * the write's own: the rest of the old last page (written back with it,
 * zeroes past the old end), and, where the file may have holes, nothing
 * more: the gap up to the write reads as zeroes from a hole, as it does
 * when ntfs-3g writes past the end.  Without sparse files (NTFS before
 * 3.0; compressed files are handled by unit) the whole gap is allocated. */
static uint64_t growth_alloc_end(struct cache_inode *ci, uint64_t new_size)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	uint64_t tail = cache_pages_for(ci->i_size) << NTFSD_PAGE_SHIFT;

	if (NTFS_VOL(ci->cache)->major_ver < 3 || ntfs_attr_is_compressed(nci->data))
		return new_size;
	return tail < new_size ? tail : new_size;
}

int ntfs_aops_prepare_write(struct cache_inode *ci, uint64_t pos, uint64_t end,
			    uint64_t new_size)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	bool grow = new_size > ci->i_size;
	uint64_t limit;
	int err;

	cache_assert_held(&ci->size_lock);
	/* Only bytes below the new i_size will ever be written. */
	limit = grow ? new_size : ci->i_size;
	if (end > limit)
		end = limit;
	err = grow ? ntfs_ci_resident_grow(nci, new_size) : 0;
	if (!err && !nci->data->resident && ntfs_attr_is_compressed(nci->data)) {
		err = uncompress_range(ci, pos, end);
		if (!err && grow)
			err = uncompress_range(ci, ci->i_size, new_size);
	} else if (!err && !nci->data->resident) {
		/* A refused write leaves nothing allocated past i_size: the old
		 * last page's clusters (a hole under it after a truncate up)
		 * come first, without room, as they are no growth; then the
		 * write's own, which may grow the allocation and, refused,
		 * gives all of that back.  The other way round a refusal of
		 * the old last page (no cluster left) kept the growth, never
		 * to be given back (found by space_model). */
		if (grow)
			err = allocate_range(ci, ci->i_size, growth_alloc_end(ci, new_size), false);
		if (!err)
			err = allocate_range(ci, pos, end, true);
	}
	if (!err)
		err = check_allocated(ci, pos, end);
	if (!err && grow)
		err = check_allocated(ci, ci->i_size, growth_alloc_end(ci, new_size));
	if (!err && grow) {
		/* i_size and the data size move together under init_lock:
		 * write_inode, which may take only init_lock, reads i_size and
		 * writes it into the record and the data size under it; raised
		 * outside it, a raise landing in that window was undone in
		 * memory (the data size behind i_size).  The record's sizes
		 * follow at write-back. */
		cache_mutex_lock(&nci->init_lock);
		ci->i_size = new_size;
		if (!nci->data->resident) {
			nci->data->data_size = new_size;
			ci->sizes_dirty = true;
		}
		cache_mutex_unlock(&nci->init_lock);
	}
	return err;
}
