/*
 * attr_write.h — the write side of the on-disk layer: attribute data
 * through existing runlists, MFT records with fixups and $MFTMirr, and the
 * size fields and resident values of attributes.
 *
 * Invariants: nothing here allocates clusters or changes a runlist; a write
 * that would land in a hole or outside the runlist is refused.  Every MFT
 * record write applies fixups to a private copy, writes it where $MFT's
 * runlist says, and, for the records $MFTMirr mirrors, writes the identical
 * bytes there too.  Read-modify-write of a record happens under
 * vol->mft_lock, starting from the record as it is on disk.
 */
#ifndef NTFS_ATTR_WRITE_H
#define NTFS_ATTR_WRITE_H

#include <stddef.h>
#include <stdint.h>

struct ntfs_attr;
struct ntfs_attr_record;
struct ntfs_volume;

int ntfs_attr_pwrite_mapped(struct ntfs_attr *na, uint64_t pos, size_t len, const void *buf);
/* rec: a record as read (fixups removed). */
int ntfs_mft_record_write(struct ntfs_volume *vol, uint64_t mft_no, const uint8_t *rec);
/* Store data_size and initialized_size in the attribute's first extent. */
int ntfs_attr_set_sizes(struct ntfs_attr *na, uint64_t data_size, uint64_t initialized_size);
/* Replace bytes [pos, pos + len) of a resident attribute's value on disk
 * (the value's length does not change). */
int ntfs_attr_write_resident(struct ntfs_attr *na, uint64_t pos, const void *buf, size_t len);

/* Change the length of a resident attribute's value to size (new bytes are
 * zero), moving the attributes after it in the record.  -E2BIG when the
 * record has no room: the caller must make it non-resident. */
int ntfs_attr_resize_resident(struct ntfs_attr *na, uint64_t size);
/* With vol->mft_lock held: read from disk the MFT record holding na's first
 * extent (found through the inode's cached base record and attribute
 * list) into *buf (malloc'ed, the caller frees it), *rec_no its number and
 * *a the attribute record inside *buf. */
int ntfs_attr_load_first_extent(struct ntfs_attr *na, uint8_t **buf, uint64_t *rec_no,
				struct ntfs_attr_record **a);

#endif
