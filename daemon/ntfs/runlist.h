/*
 * runlist.h — decoded runlists: the VCN to LCN map of a non-resident
 * attribute.
 *
 * Invariants: runs are sorted by vcn, contiguous (each starts where the
 * previous ends), each has length > 0, and each run's lcn is either LCN_HOLE
 * or a cluster range lying wholly inside the volume.  A runlist built from
 * several attribute extents is only accepted if the extents join without a
 * gap or an overlap.
 *
 * The editing functions (ntfs_rl_replace, ntfs_rl_truncate) keep those
 * invariants, except that they cannot know the volume: the clusters a caller
 * maps must lie inside it.  They are all-or-nothing: on any error the
 * runlist is exactly as it was.  ntfs_rl_replace leaves no two neighbours
 * that could be one run (both holes, or physically contiguous clusters).
 *
 * Mapping pairs (the on-disk form of one attribute extent's runs): a header
 * byte whose low nibble is the byte count of the run length and whose high
 * nibble is the byte count of the lcn delta, then the length and the delta
 * as little-endian signed integers of those sizes; a delta size of 0 is a
 * hole; the delta is relative to the previous non-hole run of the same
 * extent (the first one to lcn 0); a 0 header byte ends the list.  The
 * encoder writes one pair per run, with the fewest bytes that hold each
 * signed value (a zero delta still takes one byte), so decoding what it
 * wrote gives back the same runs.
 */
#ifndef NTFS_RUNLIST_H
#define NTFS_RUNLIST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* ---- editing (pure, in memory) ---- */

/* Make [vcn, vcn + count) map to lcn .. lcn + count - 1, or to a hole when
 * lcn is LCN_HOLE, splitting the runs at the range's edges and merging
 * neighbours that become one run.  The range may reach or start past the
 * current end: the runlist grows, a gap before vcn becoming a hole.
 * count == 0 changes nothing.  Returns 0, -EINVAL (negative vcn or count,
 * an lcn that is neither >= 0 nor LCN_HOLE, arithmetic overflow) or
 * -ENOMEM. */
int ntfs_rl_replace(struct ntfs_runlist *rl, int64_t vcn, int64_t count, int64_t lcn);

/* Drop everything at or past end_vcn (splitting the run that straddles it);
 * an end_vcn at or past the end changes nothing.  Returns 0 or -EINVAL for a
 * negative end_vcn.  Never allocates. */
int ntfs_rl_truncate(struct ntfs_runlist *rl, int64_t end_vcn);

/* Append to *out the runs that [vcn, vcn + count) maps to now, clipped to
 * the range (and to the runlist's end), holes included as LCN_HOLE runs: the
 * clusters to free before replacing or truncating that range.  out may
 * already hold runs (it is not kept contiguous or sorted then).  Returns 0,
 * -EINVAL or -ENOMEM (out unchanged). */
int ntfs_rl_extract(const struct ntfs_runlist *rl, int64_t vcn, int64_t count,
		    struct ntfs_runlist *out);

/* Clusters of [vcn, vcn + count) that are allocated (not holes); the range
 * is clipped to the runlist.  ntfs_rl_allocated(rl, 0, INT64_MAX) is what
 * compressed_size counts, in clusters. */
int64_t ntfs_rl_allocated(const struct ntfs_runlist *rl, int64_t vcn, int64_t count);

/* Point *view at the runs of rl that lie before vcn, sharing rl's array
 * (the view must not be edited nor freed, and dies with rl), when vcn is
 * where a run of rl starts or where rl ends; returns 0 then, else -EINVAL
 * (vcn inside a run or outside [0, end]). */
int ntfs_rl_prefix_view(const struct ntfs_runlist *rl, int64_t vcn, struct ntfs_runlist *view);

/* Replace *dst by a copy of src.  Returns 0 or -ENOMEM (dst unchanged). */
int ntfs_rl_copy(struct ntfs_runlist *dst, const struct ntfs_runlist *src);

/* ---- mapping-pairs encoding ---- */

/* Bytes (terminating 0 included) that the mapping pairs of the runs from
 * start_vcn to the end of rl take; start_vcn may fall inside a run (the
 * extent then starts with the rest of it, its lcn delta from 0).  With
 * max_size > 0, stops before the first pair that would make the total
 * exceed max_size.  *stop_vcn (if not NULL) is the first vcn not encoded:
 * the runlist's end when everything fits.  Returns the size (>= 1) or
 * -EINVAL (start_vcn outside [0, end]). */
ssize_t ntfs_mapping_pairs_size(const struct ntfs_runlist *rl, int64_t start_vcn,
				size_t max_size, int64_t *stop_vcn);

/* Write the mapping pairs that ntfs_mapping_pairs_size(rl, start_vcn,
 * dst_len, stop_vcn) counts into dst: as many as fit in dst_len bytes with
 * the terminator.  Returns the bytes written (>= 1), -EINVAL for dst_len 0
 * or a bad start_vcn. */
ssize_t ntfs_mapping_pairs_build(const struct ntfs_runlist *rl, int64_t start_vcn,
				 uint8_t *dst, size_t dst_len, int64_t *stop_vcn);

#endif
