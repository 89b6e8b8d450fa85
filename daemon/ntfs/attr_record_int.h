/*
 * attr_record_int.h — what attr_record.c (one attribute record's header
 * and mapping pairs) and attr_extents.c (the extent planner over several
 * records) share.  Private to daemon/ntfs/.
 */
#ifndef NTFS_ATTR_RECORD_INT_H
#define NTFS_ATTR_RECORD_INT_H

#include <stdbool.h>
#include <stdint.h>

struct ntfs_attr;
struct ntfs_attr_record;
struct ntfs_geometry;
struct ntfs_runlist;

#define ALIGN8(x) (((x) + 7u) & ~7u)

/* Sparse and compressed attributes carry compressed_size in their header. */
bool attr_flags_need_compressed_size(uint16_t flags);
uint32_t attr_nonresident_header_size(uint16_t flags);
/* ntfs_attr_record_set_runlist() with a's new length capped at max_len
 * (at most a's length plus the record's free space). */
int attr_record_set_runlist(uint8_t *rec, struct ntfs_attr_record *a,
			    const struct ntfs_runlist *rl, uint16_t flags, bool partial,
			    uint32_t max_len, int64_t *stop_vcn);
/* The compression unit a plain attribute gets when it becomes sparse. */
uint8_t attr_sparse_compression_unit(const struct ntfs_geometry *g);
/* The runlist is what the header promises and lies inside the volume. */
int attr_runlist_check(struct ntfs_attr *na, const struct ntfs_runlist *rl);
/* OR bits into the file attributes of $STANDARD_INFORMATION and of every
 * $FILE_NAME held (resident) in record rec. */
void attr_record_add_file_attributes(uint8_t *rec, uint32_t bits);
void attr_record_set_sizes(struct ntfs_attr_record *a, uint64_t allocated, uint64_t data,
			   uint64_t initialized, uint64_t compressed);

#endif
