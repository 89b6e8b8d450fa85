/*
 * lcnalloc.h — cluster allocation through the volume's cluster bitmap
 * ($Bitmap, MFT record 6, unnamed $DATA: one bit per cluster, least
 * significant bit first, 1 = in use).
 *
 * Invariants:
 *  - A read-write volume holds a copy of $Bitmap in memory (loaded by
 *    ntfs_volume_open) that is identical, byte for byte, to the bitmap on
 *    disk whenever the bitmap lock is not held.  Bits at or past
 *    nr_clusters are never allocated, never freed and never counted free,
 *    whatever they say.
 *  - The free-cluster count is exact: the number of clear bits below
 *    nr_clusters in the in-memory copy.
 *  - Every change reaches the on-disk $Bitmap (the changed bytes, widened to
 *    whole device sectors) before the call returns.  When that write fails
 *    the in-memory change is undone and the call fails, so the disk never
 *    says "free" for a cluster the caller may already use: after a failed
 *    allocation the disk can at worst still say "in use" (a leak that chkdsk
 *    recovers), never the reverse.
 *  - Allocation is all-or-nothing: on any error nothing stays allocated and
 *    the caller's runlist is as it was.
 *  - Each call runs under the volume's bitmap lock, so any number of threads
 *    may allocate and free at once.  Lock order: the MFT bitmap lock
 *    (mftalloc.h) may be held when calling in here; nothing here takes
 *    vol->mft_lock or the MFT bitmap lock.
 *
 * Placement: an allocation takes, going forward from hint_lcn (wrapping
 * around), the first free extent that holds all of it; failing that the
 * largest free extents, one after the other (after a few of those, simply
 * the next ones); all outside the MFT zone while any free cluster remains
 * outside it, the zone only when the rest of the volume is full, from the
 * zone's middle on.  ntfs_cluster_alloc_mft(), for $MFT's own growth, does
 * the reverse: the zone first.  The MFT zone is the one NTFS itself
 * reserves (see lcnalloc.c): 12.5% of the volume from $MFT's first cluster
 * on, widened to start at cluster 0 when $MFT sits at the front of the
 * volume where mkntfs puts it.
 */
#ifndef NTFS_LCNALLOC_H
#define NTFS_LCNALLOC_H

#include <stdint.h>

#include "runlist.h"

struct ntfs_volume;
struct ntfs_lcn_bitmap;

/* Load $Bitmap into memory and count the free clusters (read-write opens).
 * -EIO with a message when $Bitmap is missing, resident, not fully
 * initialized, or too small for nr_clusters. */
int ntfs_lcn_bitmap_load(struct ntfs_volume *vol);
void ntfs_lcn_bitmap_free(struct ntfs_volume *vol);

/* Allocate count clusters and append them to out as one or more runs whose
 * vcns continue from ntfs_rl_end_vcn(out); a first run that continues the
 * last run of out on disk is merged into it.  hint_lcn < 0 means "no
 * preference" (the allocator continues where it last stopped).  Returns 0,
 * -EINVAL (count <= 0), -EROFS (read-only volume), -ENOSPC (fewer than count
 * free clusters: nothing allocated), -ENOMEM, or the error of the bitmap
 * write.  On failure out is as it was (an empty list holds no storage). */
int ntfs_cluster_alloc(struct ntfs_volume *vol, int64_t count, int64_t hint_lcn,
		       struct ntfs_runlist *out);

/* The same for $MFT's own data: inside the MFT zone first (from hint_lcn
 * when it lies in the zone, else from the zone's start), then the rest of
 * the volume. */
int ntfs_cluster_alloc_mft(struct ntfs_volume *vol, int64_t count, int64_t hint_lcn,
			   struct ntfs_runlist *out);

/* Free clusters [lcn, lcn + count).  All of them must be in use: freeing a
 * free cluster is corruption (-EIO with a message, nothing freed).  -EINVAL
 * for a range outside the volume. */
int ntfs_cluster_free(struct ntfs_volume *vol, int64_t lcn, int64_t count);

/* Free every cluster that rl maps from start_vcn to its end (holes are
 * skipped; the run holding start_vcn is freed from start_vcn on).  All or
 * nothing, like ntfs_cluster_free.  The runlist itself is not changed. */
int ntfs_cluster_free_from_rl(struct ntfs_volume *vol, const struct ntfs_runlist *rl,
			      int64_t start_vcn);

/* Free clusters on the volume, exact.  On a read-only volume it is counted
 * from the on-disk $Bitmap at each call.  Negative errno on failure. */
int64_t ntfs_volume_free_clusters(struct ntfs_volume *vol);

/* The MFT zone, [*start, *end) in clusters, as this allocator keeps it. */
void ntfs_mft_zone(const struct ntfs_volume *vol, int64_t *start, int64_t *end);

#endif
