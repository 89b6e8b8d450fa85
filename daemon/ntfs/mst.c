/*
 * mst.c — update sequence array handling.
 *
 * Invariants: the update sequence array must lie inside the first stride and
 * hold exactly one entry per 512-byte stride plus the sequence number itself;
 * anything else is a corrupted header.  Buffers are only touched inside
 * [0, size).
 */
#include "mst.h"

#include <errno.h>

#include "le.h"
#include "error.h"
#include "layout.h"

static int mst_check_header(const uint8_t *b, uint32_t size, uint16_t *usa_ofs,
			    uint16_t *usa_count)
{
	const struct ntfs_record_header *h = (const void *)b;
	uint32_t strides = size / NTFS_BLOCK_SIZE;

	*usa_ofs = *usa_count = 0;
	if (size < NTFS_BLOCK_SIZE || size % NTFS_BLOCK_SIZE)
		return -1;
	*usa_ofs = le16(h->usa_ofs);
	*usa_count = le16(h->usa_count);
	if ((*usa_ofs & 1) || *usa_ofs < sizeof(*h))
		return -1;
	if (*usa_count != strides + 1)
		return -1;
	if ((uint32_t)*usa_ofs + (uint32_t)*usa_count * 2 > NTFS_BLOCK_SIZE - 2)
		return -1;
	return 0;
}

int ntfs_mst_post_read(void *buf, uint32_t size, const char *what, uint64_t number)
{
	uint8_t *b = buf;
	uint16_t usa_ofs, usa_count, usn;
	uint32_t i;

	if (mst_check_header(b, size, &usa_ofs, &usa_count))
		return ntfs_fail(EIO, "%s %llu: corrupted update sequence array (offset %u, "
				 "count %u for %u bytes)", what, (unsigned long long)number,
				 usa_ofs, usa_count, size);
	usn = get_le16(b + usa_ofs);
	for (i = 1; i < usa_count; i++) {
		uint8_t *tail = b + i * NTFS_BLOCK_SIZE - 2;

		if (get_le16(tail) != usn)
			return ntfs_fail(EIO, "%s %llu: update sequence mismatch in sector %u: "
					 "torn or corrupted record", what,
					 (unsigned long long)number, i - 1);
	}
	for (i = 1; i < usa_count; i++) {
		uint8_t *tail = b + i * NTFS_BLOCK_SIZE - 2;

		tail[0] = b[usa_ofs + 2 * i];
		tail[1] = b[usa_ofs + 2 * i + 1];
	}
	return 0;
}

int ntfs_mst_pre_write(void *buf, uint32_t size)
{
	uint8_t *b = buf;
	uint16_t usa_ofs, usa_count, usn;
	uint32_t i;

	if (mst_check_header(b, size, &usa_ofs, &usa_count))
		return -EINVAL;
	usn = get_le16(b + usa_ofs) + 1;
	if (usn == 0 || usn == 0xffff)
		usn = 1;
	put_le16(b + usa_ofs, usn);
	for (i = 1; i < usa_count; i++) {
		uint8_t *tail = b + i * NTFS_BLOCK_SIZE - 2;

		b[usa_ofs + 2 * i] = tail[0];
		b[usa_ofs + 2 * i + 1] = tail[1];
		put_le16(tail, usn);
	}
	return 0;
}

void ntfs_mst_post_write(void *buf, uint32_t size)
{
	uint8_t *b = buf;
	uint16_t usa_ofs, usa_count;
	uint32_t i;

	if (mst_check_header(b, size, &usa_ofs, &usa_count))
		return;
	for (i = 1; i < usa_count; i++) {
		uint8_t *tail = b + i * NTFS_BLOCK_SIZE - 2;

		tail[0] = b[usa_ofs + 2 * i];
		tail[1] = b[usa_ofs + 2 * i + 1];
	}
}
