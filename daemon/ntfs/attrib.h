/*
 * attrib.h — an opened attribute (type + name) of an inode and reading its
 * value.
 *
 * Invariants: an ntfs_attr holds the sizes and flags of the attribute's
 * first extent and, when non-resident, the runlist of all its extents merged
 * and validated (contiguous from vcn 0, every run inside the volume).  A
 * resident attribute holds a private copy of its value.  Reading never
 * touches the disk for holes or for bytes at or past initialized_size; those
 * read as zeroes.  Nothing past data_size is ever returned.
 */
#ifndef NTFS_ATTRIB_H
#define NTFS_ATTRIB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "layout.h"
#include "runlist.h"

struct ntfs_inode;

struct ntfs_attr {
	struct ntfs_inode *ni;
	uint32_t type;
	ntfschar *name;                 /* NULL for the unnamed attribute */
	uint32_t name_len;
	uint16_t flags;                 /* ATTR_IS_* */
	bool resident;
	uint64_t data_size;
	uint64_t initialized_size;
	uint64_t allocated_size;
	uint64_t compressed_size;       /* compressed or sparse only */
	uint32_t compression_block_size;/* bytes per compression unit, 0 if none */
	uint8_t compression_unit;       /* log2 clusters per unit */
	uint8_t *value;                 /* resident value (data_size bytes) */
	struct ntfs_runlist rl;
};

/* Open attribute (type, name) of ni.  name may be NULL (unnamed).  Returns
 * -ENOENT when the inode has no such attribute. */
int ntfs_attr_open(struct ntfs_inode *ni, uint32_t type, const ntfschar *name,
		   uint32_t name_len, struct ntfs_attr **out);
/* Build an attribute from just the extents present in the base record: used
 * to bootstrap $MFT, whose extension records can only be found through it. */
int ntfs_attr_open_base_only(struct ntfs_inode *ni, uint32_t type, struct ntfs_attr **out);
/* Build an attribute from one attribute record (a single extent): used for
 * $ATTRIBUTE_LIST, which never has more than one. */
int ntfs_attr_open_record(struct ntfs_inode *ni, const struct ntfs_attr_record *a,
			  struct ntfs_attr **out);
void ntfs_attr_close(struct ntfs_attr *na);
/* A deep copy of na (name, resident value and runlist copied): for building
 * a changed attribute while others still read na.  0 or -ENOMEM. */
int ntfs_attr_clone(const struct ntfs_attr *na, struct ntfs_attr **out);

/* Read up to count bytes at pos.  Returns the bytes read (short only at
 * data_size), or -EACCES for encrypted data, -EIO for corruption or device
 * errors, -EOPNOTSUPP for an unsupported compression. */
ssize_t ntfs_attr_pread(struct ntfs_attr *na, uint64_t pos, size_t count, void *buf);

static inline bool ntfs_attr_is_compressed(const struct ntfs_attr *na)
{
	return na->flags & ATTR_IS_COMPRESSED;
}

/* A printable description of the attribute for messages ("MFT record 42 $DATA:foo"). */
const char *ntfs_attr_describe(const struct ntfs_attr *na, char *buf, size_t len);

#endif
