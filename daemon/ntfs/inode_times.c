/*
 * inode_times.c — see inode_times.h: $STANDARD_INFORMATION times and the copies in
 * the parents' $I30 entries.
 *
 * Invariants (beyond the header's): nothing here allocates or frees a
 * record, a cluster or an index block, and nothing moves an entry: every
 * write is a same-length rewrite in place.
 */
#include "inode_times.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attr_write.h"
#include "attrib.h"
#include "error.h"
#include "index.h"
#include "inode.h"
#include "le.h"
#include "mft.h"
#include "namespace.h"
#include "volume.h"

/* 1601-01-01 to 1970-01-01 in 100 ns units */
#define NTFS_TIME_OFFSET 116444736000000000ll

int64_t ntfs_time_to_unix_ns(uint64_t t)
{
	/* a record can hold any 64 bits: clamp to what ns since 1970 hold */
	int64_t d = (int64_t)(t > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : t) - NTFS_TIME_OFFSET;

	if (d > INT64_MAX / 100)
		return INT64_MAX;
	if (d < INT64_MIN / 100)
		return INT64_MIN;
	return d * 100;
}

uint64_t ntfs_time_from_unix_ns(int64_t ns)
{
	/* floor division, so times before 1970 round down as well */
	int64_t q = ns / 100 - (ns % 100 < 0);

	return (uint64_t)(q + NTFS_TIME_OFFSET);
}

uint64_t ntfs_time_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ntfs_time_from_unix_ns((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

int ntfs_set_times(struct ntfs_inode *ni, const uint64_t times[4], unsigned mask)
{
	struct ntfs_attr *na;
	uint64_t t[4];
	int err;

	if (ni->vol->flags & NTFS_OPEN_READ_ONLY)
		return ntfs_fail(EROFS, "MFT record %llu: the volume is opened read-only",
				 (unsigned long long)ni->mft_no);
	err = ntfs_attr_open(ni, AT_STANDARD_INFORMATION, NULL, 0, &na);
	if (err)
		return err;
	if (!na->resident || na->data_size < sizeof(t)) {
		ntfs_attr_close(na);
		return ntfs_fail(ENOENT, "MFT record %llu: no resident $STANDARD_INFORMATION",
				 (unsigned long long)ni->mft_no);
	}
	memcpy(t, na->value, sizeof(t));
	for (unsigned i = 0; i < 4; i++)
		if (mask & (1u << i))
			t[i] = cpu_to_le64(times[i]);
	err = ntfs_attr_write_resident(na, 0, t, sizeof(t));
	ntfs_attr_close(na);
	if (!err)
		for (unsigned i = 0; i < 4; i++)
			ni->times[i] = le64(t[i]);
	return err;
}

int ntfs_touch_dir(struct ntfs_inode *dir)
{
	uint64_t now = ntfs_time_now(), t[4] = { 0, now, now, 0 };

	return ntfs_set_times(dir, t, NTFS_TIME_DATA | NTFS_TIME_MFT);
}

struct names {
	struct ntfs_file_name **fn;
	size_t n;
};

static int collect_name(void *ctx, const struct ntfs_attr_record *a, uint64_t rec_no)
{
	struct names *nm = ctx;
	const struct ntfs_file_name *fn;
	struct ntfs_file_name **grown, *copy;
	uint32_t len;

	(void)rec_no;
	if (le32(a->type) != AT_FILE_NAME || a->non_resident)
		return 0;
	fn = (const void *)ntfs_attr_value(a, &len);
	if (len < sizeof(*fn) || len < sizeof(*fn) + 2u * fn->file_name_length)
		return 0;       /* the name's own checks (dir.c) report it */
	len = (uint32_t)sizeof(*fn) + 2u * fn->file_name_length;
	grown = realloc(nm->fn, (nm->n + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	nm->fn = grown;
	copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, fn, len);
	nm->fn[nm->n++] = copy;
	return 0;
}

int ntfs_sync_dir_copies(struct ntfs_volume *vol, uint64_t mft_no)
{
	struct names nm = { 0 };
	struct ntfs_inode *ni, *dir;
	struct ntfs_attr *na = NULL;
	uint64_t alloc = 0, size = 0, mref;
	uint32_t attrs;
	int err, first = 0;

	err = ntfs_inode_open(vol, mft_no, &ni);
	if (err)
		return err;
	mref = (uint64_t)ni->seq_no << 48 | ni->mft_no;
	attrs = ni->file_attributes;
	if (ntfs_inode_is_dir(ni)) {
		attrs |= FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT;
	} else if (!(err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na))) {
		size = na->data_size;
		alloc = na->flags & (ATTR_IS_COMPRESSED | ATTR_IS_SPARSE) ? na->compressed_size
									 : na->allocated_size;
		ntfs_attr_close(na);
	} else if (err == -ENOENT) {
		ntfs_clear_error();
		err = 0;
	}
	if (!err)
		err = ntfs_inode_foreach_attr(ni, collect_name, &nm);
	for (size_t i = 0; !err && i < nm.n; i++) {
		struct ntfs_file_name *fn = nm.fn[i];
		uint64_t parent = le64(fn->parent_directory);

		fn->creation_time = cpu_to_le64(ni->times[0]);
		fn->last_data_change_time = cpu_to_le64(ni->times[1]);
		fn->last_mft_change_time = cpu_to_le64(ni->times[2]);
		fn->last_access_time = cpu_to_le64(ni->times[3]);
		fn->allocated_size = cpu_to_le64(alloc);
		fn->data_size = cpu_to_le64(size);
		fn->file_attributes = cpu_to_le32(attrs);
		if (ntfs_inode_open(vol, MREF(parent), &dir)) {
			ntfs_clear_error();
			continue;       /* a name whose parent is gone: nothing to keep */
		}
		if (dir->seq_no == MSEQNO(parent) && ntfs_inode_is_dir(dir)) {
			int e = ntfs_index_update_dup(dir, fn, mref);

			if (e == -ENOENT)
				ntfs_clear_error();
			else if (e && !first)
				first = e;
		}
		ntfs_inode_close(dir);
	}
	for (size_t i = 0; i < nm.n; i++)
		free(nm.fn[i]);
	free(nm.fn);
	ntfs_inode_close(ni);
	return err ? err : first;
}
