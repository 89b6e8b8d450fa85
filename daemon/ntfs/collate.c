/*
 * collate.c — $UpCase-based name comparison.
 *
 * Invariants: see collate.h.  The upcase table is read only within
 * [0, upcase_len).
 */
#include "collate.h"

#include "le.h"
#include "volume.h"

static inline uint16_t upcase_unit(uint16_t c, const ntfschar *upcase, uint32_t upcase_len)
{
	return c < upcase_len ? le16(upcase[c]) : c;
}

int ntfs_names_collate(const void *a, uint32_t la, const void *b, uint32_t lb,
		       const ntfschar *upcase, uint32_t upcase_len, bool ignore_case)
{
	const uint8_t *pa = a, *pb = b;
	uint32_t i, n = la < lb ? la : lb;

	for (i = 0; i < n; i++) {
		uint16_t ca = get_le16(pa + 2 * i), cb = get_le16(pb + 2 * i);

		if (ignore_case) {
			ca = upcase_unit(ca, upcase, upcase_len);
			cb = upcase_unit(cb, upcase, upcase_len);
		}
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return la < lb ? -1 : la > lb ? 1 : 0;
}

int ntfs_file_name_collate(const struct ntfs_volume *vol, const void *a, uint32_t la,
			   const void *b, uint32_t lb)
{
	int rc = ntfs_names_collate(a, la, b, lb, vol->upcase, vol->upcase_len, true);

	if (!rc)
		rc = ntfs_names_collate(a, la, b, lb, vol->upcase, vol->upcase_len, false);
	return rc;
}
