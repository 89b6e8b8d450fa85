/*
 * collate.h — NTFS file-name collation through the volume's $UpCase table.
 *
 * Invariants: names are compared code unit by code unit after mapping each
 * unit through $UpCase (units beyond the table map to themselves); a shorter
 * name that is a prefix of a longer one sorts first.  The file-name index
 * order is: case-insensitive order, ties broken by case-sensitive order.
 */
#ifndef NTFS_COLLATE_H
#define NTFS_COLLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

struct ntfs_volume;

/* a and b are little-endian UTF-16 names of la and lb units. */
int ntfs_names_collate(const void *a, uint32_t la, const void *b, uint32_t lb,
		       const ntfschar *upcase, uint32_t upcase_len, bool ignore_case);
/* The COLLATION_FILE_NAME order of index keys. */
int ntfs_file_name_collate(const struct ntfs_volume *vol, const void *a, uint32_t la,
			   const void *b, uint32_t lb);

#endif
