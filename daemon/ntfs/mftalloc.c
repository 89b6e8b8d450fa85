/*
 * mftalloc.c — see mftalloc.h.
 *
 * Invariants: mb->bits holds $MFT/$BITMAP's value (mb->size bytes) as it is
 * on disk whenever mb->lock is free.  A record handed out is at least
 * NTFS_MFT_FIRST_ALLOCATABLE and lies inside the bitmap, $MFT's data size
 * and its initialized size, so ntfs_mft_record_read() can read it back as
 * soon as it is formatted.  Allocation searches first-fit from record 24,
 * which keeps the MFT dense (ntfs-3g starts at 64 for its own files, which
 * is no concern of ours: it honours the bitmap).  The whole allocation
 * (bit, record, any growth) runs under mb->lock, and every record
 * read-modify-write under vol->mft_lock.
 *
 * Growing $MFT (when every record inside its initialized data is in use)
 * takes the record just past the initialized data, provided $MFT's
 * allocation already covers it, in this order: the record's bit (growing
 * $MFT/$BITMAP by 8 zeroed bytes inside its allocation first if the bit lies
 * past it), the formatted record, then $MFT/$DATA's sizes in record 0.  Each
 * step leaves the disk consistent if the next one never happens: a set bit
 * past $MFT's data is a leak, a formatted record past the data is unseen.
 * Other threads read records through vol->mft_data without a lock while
 * this happens; its sizes and vol->nr_mft_records only grow, and nobody
 * can ask for the new record before the allocation returning it is done.
 */
#include "mftalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr_write.h"
#include "attrib.h"
#include "error.h"
#include "inode.h"
#include "le.h"
#include "mft.h"
#include "mst.h"
#include "volume.h"

/* NTFS keeps $MFT/$BITMAP's size a multiple of 8 bytes. */
#define MFT_BITMAP_GROWTH 8u

struct ntfs_mft_bitmap {
	pthread_mutex_t lock;
	struct ntfs_attr *na;           /* $MFT/$BITMAP */
	uint8_t *bits;
	uint64_t size;                  /* bytes in bits (the attribute's data_size) */
};

static inline bool bit_test(const uint8_t *b, uint64_t i)
{
	return b[i >> 3] >> (i & 7) & 1;
}

static inline void bit_assign(uint8_t *b, uint64_t i, bool on)
{
	if (on)
		b[i >> 3] |= (uint8_t)(1u << (i & 7));
	else
		b[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

/* First clear bit in [from, limit), or limit. */
static uint64_t find_clear(const uint8_t *b, uint64_t from, uint64_t limit)
{
	uint64_t i = from;

	while (i < limit) {
		if (!(i & 7) && limit - i >= 8 && b[i >> 3] == 0xff) {
			i += 8;
			continue;
		}
		if (!bit_test(b, i))
			return i;
		i++;
	}
	return limit;
}

int ntfs_mft_bitmap_load(struct ntfs_volume *vol)
{
	struct ntfs_mft_bitmap *mb = calloc(1, sizeof(*mb));
	struct ntfs_attr *na;
	ssize_t n;
	int err;

	if (!mb)
		return -ENOMEM;
	pthread_mutex_init(&mb->lock, NULL);
	vol->mft_bitmap = mb;
	err = ntfs_attr_open(vol->mft_ni, AT_BITMAP, NULL, 0, &mb->na);
	if (err)
		return err == -ENOENT ? ntfs_fail(EIO, "$MFT has no $BITMAP attribute") : err;
	na = mb->na;
	if (na->flags & (ATTR_COMPRESSION_MASK | ATTR_IS_SPARSE | ATTR_IS_ENCRYPTED))
		return ntfs_fail(EIO, "$MFT/$BITMAP is compressed, sparse or encrypted");
	if (!na->resident && na->initialized_size != na->data_size)
		return ntfs_fail(EIO, "$MFT/$BITMAP: initialized size %llu differs from its size "
				 "%llu", (unsigned long long)na->initialized_size,
				 (unsigned long long)na->data_size);
	if (na->data_size > (uint64_t)1 << 40)
		return ntfs_fail(EIO, "$MFT/$BITMAP: implausible size %llu",
				 (unsigned long long)na->data_size);
	mb->size = na->data_size;
	mb->bits = calloc(1, (size_t)mb->size + 1);
	if (!mb->bits)
		return -ENOMEM;
	n = ntfs_attr_pread(na, 0, (size_t)mb->size, mb->bits);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n != mb->size)
		return ntfs_fail(EIO, "$MFT/$BITMAP: short read");
	return 0;
}

void ntfs_mft_bitmap_free(struct ntfs_volume *vol)
{
	struct ntfs_mft_bitmap *mb = vol->mft_bitmap;

	if (!mb)
		return;
	ntfs_attr_close(mb->na);
	free(mb->bits);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
	vol->mft_bitmap = NULL;
}

/* Write the byte holding bit i (widened to device sectors, clipped to the
 * bitmap) from memory. */
static int mft_bitmap_write_bit(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb, uint64_t i)
{
	uint64_t sector = vol->geo.sector_size, start = i >> 3, end = start + 1;

	if (mb->na->resident)
		return ntfs_attr_write_resident(mb->na, start, mb->bits + start, 1);
	start -= start % sector;
	end += (sector - end % sector) % sector;
	if (end > mb->size)
		end = mb->size;
	return ntfs_attr_pwrite_mapped(mb->na, start, (size_t)(end - start), mb->bits + start);
}

/* Set or clear bit i and write it through; on a write error the bit is put
 * back in memory and rewritten (best effort; on failure the disk is at worst
 * left saying "in use"). */
static int mft_bitmap_change(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb, uint64_t i,
			     bool on)
{
	int err;

	bit_assign(mb->bits, i, on);
	err = mft_bitmap_write_bit(vol, mb, i);
	if (err) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		bit_assign(mb->bits, i, !on);
		mft_bitmap_write_bit(vol, mb, i);
		ntfs_error("$MFT/$BITMAP: writing the bit of record %llu failed, change undone: %s",
			   (unsigned long long)i, msg);
	}
	return err;
}

/* Grow $MFT/$BITMAP by MFT_BITMAP_GROWTH zeroed bytes inside its allocation. */
static int mft_bitmap_grow(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb)
{
	uint64_t new_size = mb->size + MFT_BITMAP_GROWTH, sector = vol->geo.sector_size;
	uint64_t start = mb->size - mb->size % sector;
	uint8_t *bits;
	int err;

	if (mb->na->resident || new_size > mb->na->allocated_size)
		return ntfs_fail(ENOSPC, "$MFT/$BITMAP is full (%llu bytes%s) and growing its "
				 "allocation is not implemented",
				 (unsigned long long)mb->size,
				 mb->na->resident ? ", resident" : "");
	bits = realloc(mb->bits, (size_t)new_size + 1);
	if (!bits)
		return -ENOMEM;
	memset(bits + mb->size, 0, MFT_BITMAP_GROWTH + 1);
	mb->bits = bits;
	/* The new bytes lie past the initialized size: zero them on disk first. */
	err = ntfs_attr_pwrite_mapped(mb->na, start, (size_t)(new_size - start), bits + start);
	if (!err)
		err = ntfs_attr_set_sizes(mb->na, new_size, new_size);
	if (!err)
		mb->size = new_size;
	return err;
}

/* Sequence number, update sequence number and flags of the record on disk,
 * when it holds a readable FILE record; zeroes otherwise. */
static void mft_record_peek(struct ntfs_volume *vol, uint64_t mft_no, uint8_t *buf,
			    uint16_t *seq, uint16_t *usn, uint16_t *flags)
{
	uint32_t size = vol->geo.mft_record_size;
	const struct ntfs_mft_record *m = (const void *)buf;
	ssize_t n;

	*seq = *usn = *flags = 0;
	n = ntfs_attr_pread(vol->mft_data, mft_no << vol->geo.mft_record_size_bits, size, buf);
	if (n != (ssize_t)size || le32(m->magic) != magic_FILE)
		return;
	if (ntfs_mst_post_read(buf, size, "MFT record", mft_no)) {
		ntfs_clear_error();
		return;
	}
	*seq = le16(m->sequence_number);
	*usn = get_le16(buf + le16(m->usa_ofs));
	*flags = le16(m->flags);
}

void ntfs_mft_record_format_empty(const struct ntfs_volume *vol, uint8_t *buf, uint64_t mft_no,
				  uint16_t seq, uint16_t usn, uint64_t base_ref)
{
	uint32_t size = vol->geo.mft_record_size;
	struct ntfs_mft_record *m = (void *)buf;
	bool v31 = vol->major_ver > 3 || (vol->major_ver == 3 && vol->minor_ver >= 1);
	uint16_t usa_ofs, usa_count, attrs;

	usa_ofs = v31 ? sizeof(struct ntfs_mft_record) : 42;
	usa_count = (uint16_t)(size / NTFS_BLOCK_SIZE + 1);
	attrs = (uint16_t)((usa_ofs + 2u * usa_count + 7u) & ~7u);
	memset(buf, 0, size);
	m->magic = cpu_to_le32(magic_FILE);
	m->usa_ofs = cpu_to_le16(usa_ofs);
	m->usa_count = cpu_to_le16(usa_count);
	put_le16(buf + usa_ofs, usn);   /* ntfs_mst_pre_write() moves it on */
	m->sequence_number = cpu_to_le16(seq);
	m->link_count = 0;
	m->attrs_offset = cpu_to_le16(attrs);
	m->flags = cpu_to_le16(MFT_RECORD_IN_USE);
	m->bytes_in_use = cpu_to_le32(attrs + 8u);
	m->bytes_allocated = cpu_to_le32(size);
	m->base_mft_record = cpu_to_le64(base_ref);
	m->next_attr_instance = 0;
	if (v31)
		m->mft_record_number = cpu_to_le32((uint32_t)mft_no);
	memset(buf + attrs, 0xff, 4);   /* AT_END */
}

/* Format record mft_no as an empty in-use record with base reference
 * base_ref and write it, under vol->mft_lock.  *in_use: the record was
 * found in use on disk (-EIO, nothing written). */
static int mft_record_format(struct ntfs_volume *vol, uint64_t mft_no, uint64_t base_ref,
			     bool *in_use)
{
	uint8_t *buf = malloc(vol->geo.mft_record_size);
	uint16_t seq, usn, flags;
	int err;

	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&vol->mft_lock);
	mft_record_peek(vol, mft_no, buf, &seq, &usn, &flags);
	*in_use = flags & MFT_RECORD_IN_USE;
	if (*in_use) {
		err = ntfs_fail(EIO, "MFT record %llu is in use but $MFT/$BITMAP says it is free: "
				"the MFT is corrupted (run chkdsk)", (unsigned long long)mft_no);
		goto out;
	}
	seq = (uint16_t)(seq + 1);
	if (!seq)
		seq = 1;
	ntfs_mft_record_format_empty(vol, buf, mft_no, seq, usn, base_ref);
	err = ntfs_mft_record_write(vol, mft_no, buf);
out:
	pthread_mutex_unlock(&vol->mft_lock);
	free(buf);
	return err;
}

/* Records usable without growing $MFT: inside its data, its initialized
 * data and the bitmap. */
static uint64_t mft_records_usable(const struct ntfs_volume *vol, const struct ntfs_mft_bitmap *mb)
{
	uint64_t n = vol->nr_mft_records, init;

	init = vol->mft_data->initialized_size >> vol->geo.mft_record_size_bits;
	if (init < n)
		n = init;
	if (mb->size * 8 < n)
		n = mb->size * 8;
	return n;
}

/* Make room for record `no`, the first past $MFT's initialized data:
 * $MFT's allocation must already hold it; the bitmap grows if needed. */
static int mft_grow_prepare(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb, uint64_t no)
{
	uint32_t bits = vol->geo.mft_record_size_bits;

	if (((no + 1) << bits) > vol->mft_data->allocated_size)
		return ntfs_fail(ENOSPC, "%s: every MFT record is in use (%llu records) and "
				 "extending $MFT's allocation is not implemented yet",
				 vol->dev->path, (unsigned long long)no);
	if (no >= mb->size * 8)
		return mft_bitmap_grow(vol, mb);
	return 0;
}

/* Raise $MFT/$DATA's sizes to cover record `no`. */
static int mft_grow_commit(struct ntfs_volume *vol, uint64_t no)
{
	struct ntfs_attr *na = vol->mft_data;
	uint64_t end = (no + 1) << vol->geo.mft_record_size_bits;
	int err;

	err = ntfs_attr_set_sizes(na, na->data_size > end ? na->data_size : end, end);
	if (!err && no + 1 > vol->nr_mft_records)
		vol->nr_mft_records = no + 1;
	return err;
}

int ntfs_mft_record_alloc(struct ntfs_volume *vol, uint64_t base_mft_no, uint16_t base_seq,
			  uint64_t *mft_no_out)
{
	struct ntfs_mft_bitmap *mb = vol->mft_bitmap;
	uint64_t usable, no;
	bool grow, in_use = false;
	int err;

	if (!mb)
		return ntfs_fail(EROFS, "%s: cannot allocate an MFT record: volume opened read-only",
				 vol->dev->path);
	if ((base_mft_no || base_seq) && base_mft_no >= vol->nr_mft_records)
		return ntfs_fail(EINVAL, "MFT record allocation: base record %llu is past the MFT",
				 (unsigned long long)base_mft_no);
	pthread_mutex_lock(&mb->lock);
	usable = mft_records_usable(vol, mb);
	no = find_clear(mb->bits, NTFS_MFT_FIRST_ALLOCATABLE, usable);
	grow = no == usable;
	if (grow) {
		no = vol->mft_data->initialized_size >> vol->geo.mft_record_size_bits;
		if (no < NTFS_MFT_FIRST_ALLOCATABLE) {
			err = ntfs_fail(EIO, "$MFT: only %llu records initialized",
					(unsigned long long)no);
			goto out;
		}
		err = mft_grow_prepare(vol, mb, no);
		if (err)
			goto out;
		if (no >= mb->size * 8) {
			err = ntfs_fail(EIO, "$MFT/$BITMAP (%llu bytes) falls short of $MFT's %llu "
					"initialized records: the MFT is corrupted (run chkdsk)",
					(unsigned long long)mb->size, (unsigned long long)no);
			goto out;
		}
		if (bit_test(mb->bits, no)) {
			err = ntfs_fail(EIO, "$MFT/$BITMAP marks record %llu, past $MFT's initialized "
					"data, in use: the MFT is corrupted (run chkdsk)",
					(unsigned long long)no);
			goto out;
		}
	}
	err = mft_bitmap_change(vol, mb, no, true);
	if (err)
		goto out;
	err = mft_record_format(vol, no, (uint64_t)base_seq << 48 | MREF(base_mft_no), &in_use);
	if (!err && grow)
		err = mft_grow_commit(vol, no);
	if (err && !in_use) {
		char msg[512];

		/* The record is unused (or unseen past $MFT's data): free its bit.
		 * A record found in use keeps the bit just set: now the bitmap
		 * tells the truth and the next allocation moves on. */
		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		mft_bitmap_change(vol, mb, no, false);
		ntfs_error("%s", msg);
	}
	if (err)
		goto out;
	*mft_no_out = no;
out:
	pthread_mutex_unlock(&mb->lock);
	return err;
}

int ntfs_mft_record_free(struct ntfs_volume *vol, uint64_t mft_no)
{
	struct ntfs_mft_bitmap *mb = vol->mft_bitmap;
	uint32_t size = vol->geo.mft_record_size;
	struct ntfs_mft_record *m;
	uint8_t *buf;
	uint16_t seq;
	int err;

	if (!mb)
		return ntfs_fail(EROFS, "%s: cannot free an MFT record: volume opened read-only",
				 vol->dev->path);
	if (mft_no < NTFS_MFT_FIRST_ALLOCATABLE || mft_no >= vol->nr_mft_records)
		return ntfs_fail(EINVAL, "MFT record %llu cannot be freed (system, reserved or "
				 "past the MFT)", (unsigned long long)mft_no);
	buf = malloc(size);
	if (!buf)
		return -ENOMEM;
	m = (void *)buf;
	pthread_mutex_lock(&mb->lock);
	if (mft_no >= mb->size * 8 || !bit_test(mb->bits, mft_no)) {
		err = ntfs_fail(EIO, "MFT record %llu: freeing it, but $MFT/$BITMAP says it is "
				"already free", (unsigned long long)mft_no);
		goto out;
	}
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, mft_no, buf);
	if (!err && !(le16(m->flags) & MFT_RECORD_IN_USE))
		err = ntfs_fail(EIO, "MFT record %llu: freeing it, but it is not in use",
				(unsigned long long)mft_no);
	if (!err) {
		seq = (uint16_t)(le16(m->sequence_number) + 1);
		m->sequence_number = cpu_to_le16(seq ? seq : 1);
		m->flags = cpu_to_le16(le16(m->flags) & ~MFT_RECORD_IN_USE);
		err = ntfs_mft_record_write(vol, mft_no, buf);
	}
	pthread_mutex_unlock(&vol->mft_lock);
	if (!err)
		err = mft_bitmap_change(vol, mb, mft_no, false);
out:
	pthread_mutex_unlock(&mb->lock);
	free(buf);
	return err;
}
