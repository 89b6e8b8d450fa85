/*
 * runlist.h — decoded runlists: the VCN to LCN map of a non-resident
 * attribute.
 *
 * Invariants: runs are sorted by vcn, contiguous (each starts where the
 * previous ends), each has length > 0, and each run's lcn is either LCN_HOLE
 * or a cluster range lying wholly inside the volume.  A runlist built from
 * several attribute extents is only accepted if the extents join without a
 * gap or an overlap.
 */
#ifndef NTFS_RUNLIST_H
#define NTFS_RUNLIST_H

#include <stddef.h>
#include <stdint.h>

#define LCN_HOLE (-1)
#define LCN_ENOENT (-3)   /* vcn is not covered by the runlist */

struct ntfs_run {
	int64_t vcn;
	int64_t lcn;
	int64_t length;
};

struct ntfs_runlist {
	struct ntfs_run *runs;
	size_t count;
	size_t capacity;
};

/* Decode the mapping pairs of one attribute extent and append its runs.
 * `what` names the attribute for error messages.  The extent must start at
 * the runlist's current end.  Returns 0, -EIO (corrupt) or -ENOMEM. */
int ntfs_mapping_pairs_decode(struct ntfs_runlist *rl, const uint8_t *mp, size_t len,
			      int64_t lowest_vcn, int64_t highest_vcn, uint64_t nr_clusters,
			      const char *what);

/* First VCN past the end of the runlist. */
int64_t ntfs_rl_end_vcn(const struct ntfs_runlist *rl);

/* Map vcn: returns an lcn >= 0, LCN_HOLE or LCN_ENOENT.  When it returns an
 * lcn or LCN_HOLE, *count (if not NULL) is the number of clusters from vcn to
 * the end of that run. */
int64_t ntfs_rl_vcn_to_lcn(const struct ntfs_runlist *rl, int64_t vcn, int64_t *count);

void ntfs_runlist_free(struct ntfs_runlist *rl);

#endif
