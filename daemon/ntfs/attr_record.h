/*
 * attr_record.h — rewriting attribute records after the attribute's runlist
 * or sizes changed: re-encoding a non-resident attribute's mapping pairs
 * over as many extents (attribute records in the base record and in
 * extension records, found through $ATTRIBUTE_LIST) as the runlist needs,
 * switching to the sparse header when the runlist gains its first hole,
 * and turning a resident attribute into a non-resident one.
 *
 * Invariants:
 *  - Every change is a read-modify-write of records as they are on disk,
 *    under vol->mft_lock, built in private buffers and written with
 *    ntfs_mft_record_write() (update-sequence fixups, $MFTMirr kept in step)
 *    only once the whole layout is complete: a function that fails before
 *    its first write has written nothing and left the ntfs_attr as it was
 *    (the exceptions are named at each function).
 *  - A record written here keeps bytes_in_use 8-aligned, every attribute
 *    record 8-aligned and in order (type, name, lowest vcn), and an end
 *    marker; a non-resident attribute record has the 72-byte header (with
 *    compressed_size) exactly when it is sparse or compressed, its name
 *    right after the header, its mapping pairs at the next 8-byte boundary,
 *    and highest_vcn one below where they stop.
 *  - The extents of an attribute cover [0, end of the runlist) without gap
 *    or overlap, in lowest-vcn order, each ending on a run boundary; only
 *    the first (lowest_vcn 0) carries allocated, data, initialized and
 *    compressed sizes, the others have them 0; all have the same flags and
 *    compression unit.  The attribute list, when the inode has one, has one
 *    entry per attribute record of the inode (none for itself), sorted by
 *    type, name and lowest vcn, each with the record's sequence number; an
 *    inode whose attributes all fit in the base record has no list.
 *  - Crash ordering: records that gain an extent (new extension records
 *    first of all) and a list's fresh clusters are written before the base
 *    record that points at them; records and clusters the new layout drops
 *    are written or freed only after it.  Without a journal a crash in
 *    between can still leave an extent rewritten in place that the old list
 *    describes with its old lowest vcn.
 *  - The runlist written is checked first: contiguous from vcn 0 and every
 *    run inside the volume.  The caller owns the attribute's clusters:
 *    nothing here allocates or frees them (only the attribute list's own).
 *  - The inode's cached base record (ni->mrec), attribute list
 *    (ni->attr_list, attr_list_size) and ni->file_attributes are refreshed
 *    under vol->mft_lock after a successful write, so a later
 *    ntfs_attr_open() or ntfs_inode_foreach_attr() on the same inode sees
 *    the new layout.  Whoever walks them while these functions may run must
 *    hold vol->mft_lock or the caller's own lock that serializes these calls
 *    for the inode: ni->attr_list is freed and replaced.  Other ntfs_inode
 *    structures for the same MFT record are not refreshed (keep one per
 *    record while writing).
 *
 * Locking (caller): hold none of vol->mft_lock, the MFT bitmap lock or the
 * cluster bitmap lock: ntfs_attr_update_mapping_pairs takes vol->mft_lock,
 * allocates and frees clusters for the attribute list under it (lcnalloc.h
 * allows that), and drops it to allocate or free MFT records
 * (mftalloc.h's order: the MFT bitmap lock before vol->mft_lock).
 */
#ifndef NTFS_ATTR_RECORD_H
#define NTFS_ATTR_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "runlist.h"

struct ntfs_attr;

/* Pure, on a validated MFT record rec (fixups removed) holding the
 * non-resident attribute record a: re-encode a's mapping pairs from rl,
 * starting at a's lowest_vcn, with attribute flags `flags` (whether
 * ATTR_IS_SPARSE or ATTR_IS_COMPRESSED is set decides the header size; the
 * compressed_size field is kept when the old header had it, else zeroed).
 * a is rebuilt as header, name, mapping pairs; highest_vcn is set to
 * *stop_vcn - 1; the sizes are not touched.  Without partial, all runs to
 * the end of rl must fit in a plus the record's free space, else -E2BIG;
 * with partial, as many pairs as fit are written (at least one when there
 * are any: else -E2BIG) and *stop_vcn says where they stop.  On error the
 * record is unchanged.  Returns 0, -E2BIG, -EINVAL or -ENOMEM. */
int ntfs_attr_record_set_runlist(uint8_t *rec, struct ntfs_attr_record *a,
				 const struct ntfs_runlist *rl, uint16_t flags, bool partial,
				 int64_t *stop_vcn);

/* Write na's runlist and sizes to disk: mapping pairs from na->rl over the
 * attribute's extents, highest_vcn, allocated_size (the runlist's end),
 * compressed_size (allocated clusters, for sparse or compressed
 * attributes), data_size and initialized_size from na.
 *
 * The runlist is laid out over the records that already hold the
 * attribute's extents first (an extent whose range still encodes in its
 * record keeps it, so appending rewrites only the last one), then over
 * extension records allocated for the purpose (ntfs_mft_record_alloc with
 * the base record's number and sequence number); extents no longer needed
 * are removed and records left empty freed.  When the base record cannot
 * hold the whole runlist and has no $ATTRIBUTE_LIST, one is created
 * (resident, listing every attribute of the base record) and the runlist
 * continues in extension records; when the list no longer fits in the base
 * record as a resident value it becomes non-resident (rewritten into fresh
 * clusters whenever it changes); when every attribute is back in the base
 * record the list is removed.  Attributes other than na are never moved.
 *
 * A runlist with a hole on an attribute that is neither sparse nor
 * compressed makes it sparse: ATTR_IS_SPARSE and the 72-byte header in
 * every extent, compression unit 4 (16 clusters, as ntfs-3g writes; 0 when
 * clusters are over 4 KiB), and FILE_ATTR_SPARSE_FILE in
 * $STANDARD_INFORMATION and the $FILE_NAME attributes of the base record
 * ($FILE_NAME attributes that live in extension records keep their flags).
 * The sparse flag is never cleared here.  On success na->flags,
 * allocated_size and compressed_size are updated, and the inode's cached
 * state (see above).
 *
 * Returns 0; -EINVAL (resident, sizes inconsistent, runlist invalid);
 * -ENOSPC (no free MFT record, no cluster for the attribute list, the base
 * record has no room even for a non-resident list, or $MFT's own runlist
 * would need an extension record: not implemented); -EROFS; -EIO (corrupt
 * or changed on disk; or a write error); -EAGAIN (the inode kept changing
 * while records were allocated); -ENOMEM.  A write error before the base
 * record is written can leave existing extension records rewritten while
 * the base record still describes the old layout (records allocated for the
 * call are freed again).  Once the base record is written the call
 * succeeds: failing to write a record that only lost extents, or to free a
 * record or the old list's clusters, leaves them unreferenced or leaked and
 * is logged with ntfs_error() (so the caller never takes back clusters the
 * disk now maps). */
int ntfs_attr_update_mapping_pairs(struct ntfs_attr *na);
/* The same, but the MFT record gets initialized_size record_init (at most
 * na->initialized_size) instead of na's: for an owner whose in-memory
 * initialized_size may cover data not yet durable on the device.  na keeps
 * its own initialized_size. */
int ntfs_attr_update_mapping_pairs_init(struct ntfs_attr *na, uint64_t record_init);

/* Turn resident attribute na into a non-resident one mapped by rl, whose
 * clusters the caller has allocated and already holds the value (the rest
 * of the last cluster should be zeroes).  Type, name, instance and flags
 * are kept; data_size = initialized_size = the value's length;
 * allocated_size must be rl's end in bytes and at least the value's length.
 * A compressed attribute gets compression unit 4 (16 clusters, cluster size
 * at most 4096) and rl must then allocate whole units without holes (the
 * data is stored raw).  A hole in rl makes a plain attribute sparse, as in
 * ntfs_attr_update_mapping_pairs (when the attribute lives in an extension
 * record, the base record's flags are a second write: if only that one
 * fails, the attribute is sparse on disk but the inode's flag is not).
 * On success na becomes non-resident: the value is freed, na->rl is a copy
 * of rl, the sizes are set.  The whole runlist must fit in the attribute's
 * record (a short one: call ntfs_attr_update_mapping_pairs afterwards to
 * grow it over extension records).
 * Returns 0, -EINVAL, -E2BIG (does not fit in the record), -EOPNOTSUPP,
 * -EROFS, -EIO (the record changed on disk under us) or -ENOMEM. */
int ntfs_attr_make_nonresident(struct ntfs_attr *na, const struct ntfs_runlist *rl,
			       uint64_t allocated_size);

#endif
