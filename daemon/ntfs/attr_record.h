/*
 * attr_record.h — rewriting attribute records inside their MFT record after
 * the attribute's runlist or sizes changed: re-encoding a non-resident
 * attribute's mapping pairs (the record grows or shrinks in place, the
 * attributes after it move), switching to the sparse header when the
 * runlist gains its first hole, and turning a resident attribute into a
 * non-resident one.
 *
 * Invariants:
 *  - Every change is a read-modify-write of the record as it is on disk,
 *    under vol->mft_lock, built in a private buffer and written with
 *    ntfs_mft_record_write() only once it is complete: a function that fails
 *    has written nothing (the one exception is named at
 *    ntfs_attr_update_mapping_pairs) and has left the ntfs_attr as it was.
 *  - A record written here keeps bytes_in_use 8-aligned, every attribute
 *    record 8-aligned, and an end marker; a non-resident attribute record
 *    has the 72-byte header (with compressed_size) exactly when it is sparse
 *    or compressed, its name right after the header, its mapping pairs at
 *    the next 8-byte boundary, and highest_vcn one below where they stop.
 *  - The runlist written is checked first: contiguous from vcn 0 and every
 *    run inside the volume.  The caller owns cluster allocation: nothing
 *    here touches $Bitmap.
 *  - When the record written is the inode's base record, ni->mrec is
 *    refreshed from it under vol->mft_lock (so whoever walks ni->mrec while
 *    these run must hold that lock), and ni->file_attributes too.
 *
 * Not yet: attributes whose runlist spans several extents (an attribute
 * list with more than one record for the attribute) are refused with
 * -EOPNOTSUPP, and a runlist that does not fit in the record gives -E2BIG;
 * both need extension records and $ATTRIBUTE_LIST edits, which
 * ntfs_attr_record_set_runlist() (partial mode) is meant to serve.
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

/* Write na's runlist and sizes to its attribute record (the first extent,
 * wherever the attribute list puts it): mapping pairs from na->rl,
 * highest_vcn, allocated_size (the runlist's end), compressed_size
 * (allocated clusters, for sparse or compressed attributes), data_size and
 * initialized_size from na.  A runlist with a hole on an attribute that is
 * neither sparse nor compressed makes it sparse: ATTR_IS_SPARSE, the 72-byte
 * header, compression unit 4 (16 clusters, as ntfs-3g writes; 0 when
 * clusters are over 4 KiB), and FILE_ATTR_SPARSE_FILE in
 * $STANDARD_INFORMATION and the
 * $FILE_NAME attributes of the base record (a second record write when the
 * attribute lives in an extension record: if only that one fails, the
 * attribute is sparse on disk but the inode's flag is not).  The sparse
 * flag is never cleared here.  On success na->flags, allocated_size and
 * compressed_size are updated.
 * Returns 0; -EINVAL (resident, sizes inconsistent, runlist invalid);
 * -E2BIG (the pairs do not fit in the record: nothing written);
 * -EOPNOTSUPP (the attribute has more than one extent); -EROFS; -EIO;
 * -ENOMEM. */
int ntfs_attr_update_mapping_pairs(struct ntfs_attr *na);

/* Turn resident attribute na into a non-resident one mapped by rl, whose
 * clusters the caller has allocated and already holds the value (the rest
 * of the last cluster should be zeroes).  Type, name, instance and flags
 * are kept; data_size = initialized_size = the value's length;
 * allocated_size must be rl's end in bytes and at least the value's length.
 * A compressed attribute gets compression unit 4 (16 clusters, cluster size
 * at most 4096) and rl must then allocate whole units without holes (the
 * data is stored raw).  A hole in rl makes a plain attribute sparse, as in
 * ntfs_attr_update_mapping_pairs.  On success na becomes non-resident: the
 * value is freed, na->rl is a copy of rl, the sizes are set.
 * Returns 0, -EINVAL, -E2BIG (does not fit in the record), -EOPNOTSUPP,
 * -EROFS, -EIO (the record changed on disk under us) or -ENOMEM. */
int ntfs_attr_make_nonresident(struct ntfs_attr *na, const struct ntfs_runlist *rl,
			       uint64_t allocated_size);

#endif
