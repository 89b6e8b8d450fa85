/*
 * attr_list.h — $ATTRIBUTE_LIST values in memory: decoding, editing,
 * sorting and encoding the entries, and reading an inode's list as it is on
 * disk (resident or not).
 *
 * On disk an entry is: type (4 bytes), entry length (2), name length in
 * ntfschars (1), name offset (1, always 26 here), lowest vcn (8), MFT
 * reference of the record holding the attribute record (8, sequence number
 * in the top 16 bits), attribute instance (2), then the name; the entry
 * length is rounded up to 8 bytes.  The list has one entry per attribute
 * record of the inode (one per extent for a non-resident attribute split
 * over records), none for the list itself, sorted by type, then name (in
 * $UpCase order, ties broken by exact code units), then lowest vcn.
 *
 * Invariants:
 *  - A struct ntfs_attr_list owns its entries and their names.  Every
 *    decoded entry was checked to lie inside the value, to be long enough
 *    for its fixed fields and its name, and to have a non-negative lowest
 *    vcn: code walking the entries never reads outside them.
 *  - ntfs_al_encode() writes exactly ntfs_al_encoded_size() bytes, entries
 *    in their current order, padding zeroed: decoding what it wrote gives the
 *    same entries back.
 *  - ntfs_al_sort() is stable: entries equal in type, name and lowest vcn
 *    (several $FILE_NAME attributes) keep their relative order.
 *  - Nothing here does I/O except ntfs_al_read_from_record(), which only
 *    reads.
 */
#ifndef NTFS_ATTR_LIST_H
#define NTFS_ATTR_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "runlist.h"

struct ntfs_inode;

/* Bytes of an entry with a name of name_len ntfschars. */
#define NTFS_AL_ENTRY_SIZE(name_len) ((sizeof(struct ntfs_attr_list_entry) + 2u * (name_len) + 7u) & ~7u)

struct ntfs_al_entry {
	uint32_t type;
	uint8_t name_len;               /* ntfschars */
	ntfschar *name;                 /* NULL when name_len == 0; owned */
	int64_t lowest_vcn;
	uint64_t mref;                  /* record number | sequence number << 48 */
	uint16_t instance;
};

struct ntfs_attr_list {
	struct ntfs_al_entry *e;
	size_t count, cap;
};

/* Decode the value al[0..size).  `what` names the inode for messages.
 * Returns 0, -EIO (corrupt entry) or -ENOMEM; *out is empty on error. */
int ntfs_al_decode(const uint8_t *al, uint32_t size, const char *what, struct ntfs_attr_list *out);

void ntfs_al_free(struct ntfs_attr_list *al);

/* Append an entry (the name is copied).  Returns 0 or -ENOMEM. */
int ntfs_al_append(struct ntfs_attr_list *al, uint32_t type, const ntfschar *name,
		   uint8_t name_len, int64_t lowest_vcn, uint64_t mref, uint16_t instance);

/* Drop every entry of attribute (type, name): all its extents. */
void ntfs_al_remove_attr(struct ntfs_attr_list *al, uint32_t type, const ntfschar *name,
			 uint32_t name_len);

/* Whether entry e names attribute (type, name) (exact code units). */
bool ntfs_al_entry_is(const struct ntfs_al_entry *e, uint32_t type, const ntfschar *name,
		      uint32_t name_len);

/* Sort (stably) by type, name, lowest vcn; names compare through upcase
 * (upcase_len units; may be 0), then by exact code units. */
int ntfs_al_sort(struct ntfs_attr_list *al, const ntfschar *upcase, uint32_t upcase_len);

/* Whether every entry points at record mft_no (the list is then not
 * needed: all the attributes live in the base record). */
bool ntfs_al_all_in(const struct ntfs_attr_list *al, uint64_t mft_no);

uint32_t ntfs_al_encoded_size(const struct ntfs_attr_list *al);
void ntfs_al_encode(const struct ntfs_attr_list *al, uint8_t *buf);

/* One entry per attribute record of the (validated) MFT record rec, whose
 * MFT reference is mref, in record order, skipping $ATTRIBUTE_LIST itself:
 * the list a base record gets when it starts needing one.  Returns 0 or
 * -ENOMEM. */
int ntfs_al_from_record(const uint8_t *rec, uint64_t mref, struct ntfs_attr_list *out);

/* Read the value of the $ATTRIBUTE_LIST record a (resident or not) of
 * inode ni, whose base record holds it: *value is malloc'ed, *size its
 * length (never 0), and when rl is not NULL and the list is non-resident,
 * *rl gets a copy of its runlist (left empty for a resident list).
 * Returns 0, -EIO (empty or implausible size, corrupt runlist, short or
 * failed read) or -ENOMEM; nothing to free on error. */
int ntfs_al_read_from_record(struct ntfs_inode *ni, const struct ntfs_attr_record *a,
			     uint8_t **value, uint32_t *size, struct ntfs_runlist *rl);

#endif
