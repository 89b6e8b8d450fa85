/*
 * mft.c — reading and validating MFT records.
 *
 * Invariants: see mft.h.  Records are located through $MFT's own $DATA
 * runlist (vol->mft_data), never by assuming the MFT is contiguous; the
 * bootstrap read of record 0 before that runlist exists is done by volume.c.
 * $MFT may grow while records are read: a read checks the record number
 * against nr_mft_records, then loads the $MFT/$DATA snapshot once
 * (ntfs_volume_mft_data(), the rule in volume.h) and reads through it.
 */
#include "mft.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "attrib.h"
#include "le.h"
#include "error.h"
#include "mst.h"
#include "volume.h"

static int attr_record_check(const uint8_t *rec, uint32_t off, uint32_t end,
			     uint64_t mft_no)
{
	const struct ntfs_attr_record *a = (const void *)(rec + off);
	uint32_t len, name_end;

	if (end - off < 16)
		goto bad;
	len = le32(a->length);
	if (len < NTFS_ATTR_RESIDENT_HEADER_SIZE || len % 8 || len > end - off)
		goto bad;
	name_end = le16(a->name_offset) + 2u * a->name_length;
	if (a->name_length && name_end > len)
		goto bad;
	if (!a->non_resident) {
		uint32_t vo = le16(a->u.r.value_offset), vl = le32(a->u.r.value_length);

		if (vo > len || vl > len - vo)
			goto bad;
	} else {
		uint16_t mpo;

		if (len < NTFS_ATTR_NONRESIDENT_HEADER_SIZE)
			goto bad;
		mpo = le16(a->u.nr.mapping_pairs_offset);
		if (mpo < NTFS_ATTR_NONRESIDENT_HEADER_SIZE || mpo >= len)
			goto bad;
		if (sle64(a->u.nr.lowest_vcn) < 0 ||
		    sle64(a->u.nr.highest_vcn) < sle64(a->u.nr.lowest_vcn) - 1)
			goto bad;
		if (sle64(a->u.nr.data_size) < 0 || sle64(a->u.nr.initialized_size) < 0 ||
		    sle64(a->u.nr.allocated_size) < 0)
			goto bad;
	}
	return 0;
bad:
	return ntfs_fail(EIO, "MFT record %llu: corrupted attribute record at offset %u",
			 (unsigned long long)mft_no, off);
}

int ntfs_mft_record_check(uint8_t *buf, uint32_t size, uint64_t mft_no)
{
	struct ntfs_mft_record *m = (void *)buf;
	uint32_t off, in_use;
	int err;

	if (le32(m->magic) == magic_BAAD)
		return ntfs_fail(EIO, "MFT record %llu: marked BAAD (a multi-sector transfer "
				 "failed when it was written)", (unsigned long long)mft_no);
	if (le32(m->magic) != magic_FILE)
		return ntfs_fail(EIO, "MFT record %llu: bad magic 0x%08x, expected FILE",
				 (unsigned long long)mft_no, le32(m->magic));
	err = ntfs_mst_post_read(buf, size, "MFT record", mft_no);
	if (err)
		return err;
	in_use = le32(m->bytes_in_use);
	off = le16(m->attrs_offset);
	if (le32(m->bytes_allocated) != size || in_use > size || in_use < sizeof(*m) ||
	    off % 8 || off < le16(m->usa_ofs) + 2u * le16(m->usa_count) || off + 4 > in_use)
		return ntfs_fail(EIO, "MFT record %llu: inconsistent header (attrs_offset %u, "
				 "bytes_in_use %u, bytes_allocated %u)",
				 (unsigned long long)mft_no, off, in_use,
				 le32(m->bytes_allocated));
	if (le16(m->usa_ofs) >= sizeof(*m) && le32(m->mft_record_number) != (uint32_t)mft_no)
		return ntfs_fail(EIO, "MFT record %llu: header says it is record %u",
				 (unsigned long long)mft_no, le32(m->mft_record_number));
	for (;;) {
		if (in_use - off < 4)
			return ntfs_fail(EIO, "MFT record %llu: attributes run past bytes in use "
					 "without an end marker", (unsigned long long)mft_no);
		if (get_le32(buf + off) == AT_END)
			return 0;
		err = attr_record_check(buf, off, in_use, mft_no);
		if (err)
			return err;
		off += get_le32(buf + off + 4);
	}
}

int ntfs_mft_record_read(struct ntfs_volume *vol, uint64_t mft_no, uint8_t *buf)
{
	uint32_t size = vol->geo.mft_record_size;
	uint64_t nr = vol->nr_mft_records;
	ssize_t n;

	/* The count first, then the snapshot that maps at least that many
	 * records (volume.h). */
	if (mft_no >= nr)
		return ntfs_fail(ENOENT, "MFT record %llu: beyond the end of the MFT (%llu "
				 "records)", (unsigned long long)mft_no, (unsigned long long)nr);
	/* A read racing a write of the same record (another thread's
	 * read-modify-write under mft_lock) may mix old and new sectors; the
	 * update sequence numbers then disagree.  Such a tear heals on a
	 * second read, real corruption does not. */
	for (int attempt = 0;; attempt++) {
		int err;

		n = ntfs_attr_pread(ntfs_volume_mft_data(vol),
				    mft_no << vol->geo.mft_record_size_bits, size, buf);
		if (n < 0)
			return (int)n;
		if ((uint32_t)n != size)
			return ntfs_fail(EIO, "MFT record %llu: short read",
					 (unsigned long long)mft_no);
		err = ntfs_mft_record_check(buf, size, mft_no);
		if (err != -EIO || attempt == 2)
			return err;
	}
}

void ntfs_attr_iter_init(struct ntfs_attr_iter *it, const uint8_t *rec)
{
	const struct ntfs_mft_record *m = (const void *)rec;

	it->rec = rec;
	it->bytes_in_use = le32(m->bytes_in_use);
	it->off = le16(m->attrs_offset);
}

int ntfs_attr_iter_next(struct ntfs_attr_iter *it, const struct ntfs_attr_record **a)
{
	const struct ntfs_attr_record *cur;

	if (it->bytes_in_use - it->off < 16 || get_le32(it->rec + it->off) == AT_END)
		return 0;
	cur = (const void *)(it->rec + it->off);
	it->off += le32(cur->length);
	*a = cur;
	return 1;
}

const uint8_t *ntfs_attr_value(const struct ntfs_attr_record *a, uint32_t *len)
{
	*len = le32(a->u.r.value_length);
	return (const uint8_t *)a + le16(a->u.r.value_offset);
}

uint32_t ntfs_mft_record_free_space(const uint8_t *rec)
{
	const struct ntfs_mft_record *m = (const void *)rec;
	uint32_t in_use = le32(m->bytes_in_use), alloc = le32(m->bytes_allocated);

	return in_use < alloc ? (alloc - in_use) & ~7u : 0;
}

int ntfs_attr_record_resize(uint8_t *rec, struct ntfs_attr_record *a, uint32_t new_len)
{
	struct ntfs_mft_record *m = (void *)rec;
	uint32_t off = (uint32_t)((uint8_t *)a - rec), old_len = le32(a->length);
	uint32_t in_use = le32(m->bytes_in_use), tail = off + old_len;

	assert(new_len % 8 == 0 && new_len >= NTFS_ATTR_RESIDENT_HEADER_SIZE);
	assert(tail <= in_use);
	if (new_len > old_len && new_len - old_len > ntfs_mft_record_free_space(rec))
		return -E2BIG;
	memmove(rec + off + new_len, rec + tail, in_use - tail);
	if (new_len > old_len) {
		memset(rec + tail, 0, new_len - old_len);
		in_use += new_len - old_len;
	} else {
		in_use -= old_len - new_len;
		memset(rec + in_use, 0, old_len - new_len);
	}
	m->bytes_in_use = cpu_to_le32(in_use);
	a->length = cpu_to_le32(new_len);
	return 0;
}

void ntfs_attr_record_remove(uint8_t *rec, struct ntfs_attr_record *a)
{
	struct ntfs_mft_record *m = (void *)rec;
	uint32_t off = (uint32_t)((uint8_t *)a - rec), len = le32(a->length);
	uint32_t in_use = le32(m->bytes_in_use);

	assert(off + len <= in_use);
	memmove(rec + off, rec + off + len, in_use - off - len);
	memset(rec + in_use - len, 0, len);
	m->bytes_in_use = cpu_to_le32(in_use - len);
}

struct ntfs_attr_record *ntfs_attr_record_insert(uint8_t *rec, uint32_t off, uint32_t type,
						 uint32_t len)
{
	struct ntfs_mft_record *m = (void *)rec;
	uint32_t in_use = le32(m->bytes_in_use);
	struct ntfs_attr_record *a;

	assert(len % 8 == 0 && len >= NTFS_ATTR_RESIDENT_HEADER_SIZE);
	assert(off >= le16(m->attrs_offset) && off < in_use);
	if (len > ntfs_mft_record_free_space(rec))
		return NULL;
	memmove(rec + off + len, rec + off, in_use - off);
	memset(rec + off, 0, len);
	m->bytes_in_use = cpu_to_le32(in_use + len);
	a = (void *)(rec + off);
	a->type = cpu_to_le32(type);
	a->length = cpu_to_le32(len);
	return a;
}

struct ntfs_attr_record *ntfs_mft_record_find_instance(uint8_t *rec, uint32_t type,
						       uint16_t instance)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a))
		if (le32(a->type) == type && le16(a->instance) == instance)
			return (struct ntfs_attr_record *)a;
	return NULL;
}
