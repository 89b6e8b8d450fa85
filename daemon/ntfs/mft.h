/*
 * mft.h — MFT records: reading by number, validating, iterating attributes.
 *
 * Invariants: a record buffer handed out by ntfs_mft_record_read() has had
 * its fixups verified and removed, its header checked (magic, sizes, offsets,
 * record number), and every attribute record in it checked to lie inside the
 * bytes in use with consistent name, value and mapping-pairs offsets.  So
 * code walking a record with ntfs_attr_iter never reads outside the record.
 */
#ifndef NTFS_MFT_H
#define NTFS_MFT_H

#include <stdbool.h>
#include <stdint.h>

#include "le.h"
#include "layout.h"

struct ntfs_volume;

/* Read record mft_no into buf (vol->geo.mft_record_size bytes). */
int ntfs_mft_record_read(struct ntfs_volume *vol, uint64_t mft_no, uint8_t *buf);

/* Verify fixups and validate a raw record already in buf. */
int ntfs_mft_record_check(uint8_t *buf, uint32_t size, uint64_t mft_no);

/* Walk the attribute records of a validated MFT record. */
struct ntfs_attr_iter {
	const uint8_t *rec;
	uint32_t bytes_in_use;
	uint32_t off;
};

void ntfs_attr_iter_init(struct ntfs_attr_iter *it, const uint8_t *rec);
/* Next attribute (stops before AT_END): 1 with *a set, 0 at the end. */
int ntfs_attr_iter_next(struct ntfs_attr_iter *it, const struct ntfs_attr_record **a);

/* The attribute's name, as stored (name_length ntfschars, may be unaligned
 * so callers compare with memcmp). */
static inline const void *ntfs_attr_name(const struct ntfs_attr_record *a)
{
	return (const uint8_t *)a + le16(a->name_offset);
}

/* Resident value of a (validated) resident attribute. */
const uint8_t *ntfs_attr_value(const struct ntfs_attr_record *a, uint32_t *len);

/* Bytes an attribute record in rec may grow by: bytes_allocated minus
 * bytes_in_use, rounded down to 8. */
uint32_t ntfs_mft_record_free_space(const uint8_t *rec);

/* Make attribute record a (inside the validated record rec) new_len bytes
 * long (a multiple of 8, at least 24), moving the attributes after it and
 * the end marker and updating bytes_in_use.  The first min(old, new_len)
 * bytes of a stay; a's length field is set; a grown part is zeroed.
 * Returns 0 or -E2BIG when the record has no room (nothing changed). */
int ntfs_attr_record_resize(uint8_t *rec, struct ntfs_attr_record *a, uint32_t new_len);

/* Remove attribute record a from the validated record rec: the attributes
 * after it and the end marker move down, bytes_in_use shrinks, the freed
 * tail is zeroed. */
void ntfs_attr_record_remove(uint8_t *rec, struct ntfs_attr_record *a);

/* Open a gap of len bytes (a multiple of 8, at least 24) at offset off of
 * the validated record rec, which must be an attribute boundary (an
 * attribute's start or the end marker's); the gap is zeroed and becomes an
 * attribute record of type `type` and length len, for the caller to fill.
 * Returns it, or NULL when the record has no room (nothing changed). */
struct ntfs_attr_record *ntfs_attr_record_insert(uint8_t *rec, uint32_t off, uint32_t type,
						 uint32_t len);

/* The attribute record of type `type` with instance `instance` in the
 * validated record rec, or NULL. */
struct ntfs_attr_record *ntfs_mft_record_find_instance(uint8_t *rec, uint32_t type,
						       uint16_t instance);

#endif
