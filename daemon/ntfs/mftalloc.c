/*
 * mftalloc.c — see mftalloc.h.
 *
 * Invariants: mb->bits holds $MFT/$BITMAP's value (mb->size bytes) as it is
 * on disk whenever mb->lock is free.  A record handed out is at least
 * NTFS_MFT_FIRST_ALLOCATABLE and lies inside the bitmap, $MFT's data size
 * and its initialized size, so ntfs_mft_record_read() can read it back as
 * soon as it is formatted.  Allocation searches first-fit from record 24
 * (from mb->hint: no bit below it is clear), which keeps the MFT dense
 * (ntfs-3g starts at 64 for its own files, which is no concern of ours: it
 * honours the bitmap).  The whole allocation (bit, record, any growth) runs
 * under mb->lock, and every record read-modify-write under vol->mft_lock.
 *
 * Growing $MFT (when every record inside its initialized data is in use)
 * adds MFT_GROW_RECORDS (64) free records at once: 64 KiB with 1 KiB
 * records.  ntfs-3g and the Linux driver allocate 16 records' worth of
 * clusters and initialize them one record at a time, rewriting record 0 for
 * each; 64 formatted at once costs one write of record 0 per 64
 * allocations, fewer runs in record 0 and fewer retired snapshots (below),
 * while still being a small bite of the MFT zone.  One growth:
 *  1. clusters: when $MFT's allocation does not already hold the records
 *     past its initialized size, ntfs_cluster_alloc_mft() (the MFT zone
 *     first, from the cluster after $MFT's last run, so growth usually
 *     extends the last run); on ENOSPC one record's worth; with none free,
 *     whatever the allocation already holds;
 *  2. $MFT/$BITMAP: bits for every record of the new data, as zeroed bytes
 *     written past its size, in a cluster allocated for it when its
 *     allocation is full (ntfs-3g's choice too: one cluster, after its last);
 *  3. the new records are written formatted and free (FILE, fixups,
 *     sequence number 1, not in use: what ntfs-3g's record layout gives), so
 *     every record inside $MFT's initialized data is a valid FILE record,
 *     as chkdsk and ntfs-3g expect; then a device flush;
 *  4. the commit: one write of record 0 (and $MFTMirr's copy) with
 *     $MFT/$DATA's mapping pairs and sizes (allocated, data and initialized
 *     all raised to the new records) and $MFT/$BITMAP's.  $MFT never gets an
 *     extension record here: mapping pairs that no longer fit in record 0,
 *     or attributes of $MFT that already continue in extension records,
 *     fail the growth with -ENOSPC saying so;
 *  5. publishing (volume.h): the new $MFT/$DATA snapshot is stored with
 *     release order, then nr_mft_records raised; the old snapshot is kept
 *     in mb->retired until the volume closes (a reader may still be using
 *     it; each is a few hundred bytes, one per 64 records grown).
 * Each step before the commit writes only where nothing on disk points yet,
 * so a crash or an error leaves at worst clusters marked in use that
 * nothing uses (given back when the error is ours, leaked on a crash).  A
 * bit already set past $MFT's initialized data (such a leak from an older
 * crash) stays set: that record is never handed out.
 */
#include "mftalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "device.h"
#include "error.h"
#include "inode.h"
#include "lcnalloc.h"
#include "le.h"
#include "mft.h"
#include "mst.h"
#include "runlist.h"
#include "volume.h"

/* Records $MFT grows by at a time (see the module comment). */
#define MFT_GROW_RECORDS 64u

struct ntfs_mft_bitmap {
	pthread_mutex_t lock;
	struct ntfs_attr *na;           /* $MFT/$BITMAP */
	uint8_t *bits;
	uint64_t size;                  /* bytes in bits (the attribute's data_size) */
	uint64_t hint;                  /* no clear bit in [NTFS_MFT_FIRST_ALLOCATABLE, hint) */
	struct ntfs_attr **retired;     /* $MFT/$DATA snapshots growth replaced */
	size_t nretired, retired_cap;
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
	mb->hint = NTFS_MFT_FIRST_ALLOCATABLE;
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
	/* The volume is closing: no reader can still hold one of these. */
	for (size_t i = 0; i < mb->nretired; i++)
		ntfs_attr_close(mb->retired[i]);
	free(mb->retired);
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
static uint64_t mft_records_usable(struct ntfs_volume *vol, const struct ntfs_mft_bitmap *mb)
{
	uint64_t n = vol->nr_mft_records, init;

	init = ntfs_volume_mft_data(vol)->initialized_size >> vol->geo.mft_record_size_bits;
	if (init < n)
		n = init;
	if (mb->size * 8 < n)
		n = mb->size * 8;
	return n;
}

/* ---- growing $MFT ---- */

/* One growth of $MFT, built up privately and committed by one write of
 * record 0. */
struct mft_grow {
	struct ntfs_attr *old;          /* the published $MFT/$DATA snapshot */
	struct ntfs_attr *new;          /* the snapshot to publish */
	uint64_t first, end;            /* records formatted free: [first, end) */
	int64_t old_vcns;               /* $MFT's clusters before (new->rl past it: ours) */
	bool committing;                /* record 0's write was attempted */
	struct ntfs_runlist bm_rl;      /* $MFT/$BITMAP's runlist, when it gains clusters */
	int64_t bm_old_vcns;
	uint64_t bm_size;               /* $MFT/$BITMAP's new size (mb->size: unchanged) */
	uint8_t *bits;                  /* the in-memory bitmap at bm_size, when it grows */
};

/* Clusters for `bytes` more bytes of an attribute whose allocation ends at
 * a cluster boundary: at least one. */
static int64_t clusters_for(const struct ntfs_volume *vol, uint64_t bytes)
{
	int64_t n = (int64_t)((bytes + vol->geo.cluster_size - 1) >> vol->geo.cluster_size_bits);

	return n ? n : 1;
}

/* The lcn just past the runlist's last run (where a contiguous extension
 * would go), or -1. */
static int64_t rl_next_lcn(const struct ntfs_runlist *rl)
{
	const struct ntfs_run *r;

	if (!rl->count)
		return -1;
	r = &rl->runs[rl->count - 1];
	return r->lcn >= 0 ? r->lcn + r->length : -1;
}

/* Give $MFT/$DATA (g->new) clusters so that it reaches `want` records, in
 * the MFT zone first; on ENOSPC one record's worth, then none at all when
 * the allocation already holds records past the initialized data. */
static int grow_data_clusters(struct ntfs_volume *vol, struct mft_grow *g, uint64_t want)
{
	uint32_t bits = vol->geo.mft_record_size_bits;
	uint64_t alloc = g->new->allocated_size, have = alloc >> bits;
	int64_t hint = rl_next_lcn(&g->new->rl), count, min;
	int err;

	if (have >= want)
		return 0;
	count = clusters_for(vol, (want << bits) - alloc);
	min = clusters_for(vol, ((have + 1) << bits) - alloc);
	err = ntfs_cluster_alloc_mft(vol, count, hint, &g->new->rl);
	if (err == -ENOSPC && count > min)
		err = ntfs_cluster_alloc_mft(vol, count = min, hint, &g->new->rl);
	if (err == -ENOSPC && have > g->first) {
		ntfs_clear_error();
		return 0;
	}
	if (err == -ENOSPC)
		return ntfs_fail(ENOSPC, "%s: every MFT record is in use (%llu records) and no "
				 "cluster is free to grow $MFT", vol->dev->path,
				 (unsigned long long)g->first);
	if (err)
		return err;
	g->new->allocated_size = (uint64_t)ntfs_rl_end_vcn(&g->new->rl) << vol->geo.cluster_size_bits;
	return 0;
}

/* Make $MFT/$BITMAP hold bits for records [0, g->end): the new bytes are
 * zeroes, written to disk now (past its size, so unseen until record 0
 * says otherwise), in clusters allocated here when its allocation is too
 * small.  A resident bitmap grows in record 0 at once (a longer bitmap
 * with clear bits past $MFT's data is consistent). */
static int grow_bitmap(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb, struct mft_grow *g)
{
	uint64_t need = (g->end + 63) / 64 * 8, sector = vol->geo.sector_size, start;
	struct ntfs_attr tmp;
	int err;

	if (need <= mb->size)
		return 0;
	g->bits = calloc(1, (size_t)need + 1);
	if (!g->bits)
		return -ENOMEM;
	memcpy(g->bits, mb->bits, (size_t)mb->size);
	if (mb->na->resident) {
		err = ntfs_attr_resize_resident(mb->na, need);
		if (err == -E2BIG)
			return ntfs_fail(ENOSPC, "%s: $MFT/$BITMAP is resident and record 0 has no "
					 "room for it to grow; making it non-resident is not "
					 "implemented", vol->dev->path);
		if (err)
			return err;
		/* Done on disk: adopt it now, whatever happens next. */
		free(mb->bits);
		mb->bits = g->bits;
		mb->size = need;
		g->bits = NULL;
		return 0;
	}
	g->bm_size = need;
	tmp = *mb->na;
	if (need > mb->na->allocated_size) {
		err = ntfs_rl_copy(&g->bm_rl, &mb->na->rl);
		if (err)
			return err;
		g->bm_old_vcns = ntfs_rl_end_vcn(&g->bm_rl);
		err = ntfs_cluster_alloc(vol, clusters_for(vol, need - mb->na->allocated_size),
					 rl_next_lcn(&g->bm_rl), &g->bm_rl);
		if (err == -ENOSPC)
			return ntfs_fail(ENOSPC, "%s: no cluster is free to grow $MFT/$BITMAP",
					 vol->dev->path);
		if (err)
			return err;
		tmp.rl = g->bm_rl;
	}
	start = mb->size - mb->size % sector;
	return ntfs_attr_pwrite_mapped(&tmp, start, (size_t)(need - start), g->bits + start);
}

/* Write records [g->first, g->end) as free records (FILE, fixups, sequence
 * number 1, not in use, no attributes), the way ntfs-3g lays out records it
 * initializes: they lie past $MFT's initialized size until the commit. */
static int grow_format_records(struct ntfs_volume *vol, struct mft_grow *g)
{
	uint32_t size = vol->geo.mft_record_size, bits = vol->geo.mft_record_size_bits;
	size_t count = (size_t)(g->end - g->first);
	uint8_t *buf = malloc(count * size);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < count && !err; i++) {
		uint8_t *rec = buf + i * size;
		struct ntfs_mft_record *m = (void *)rec;

		ntfs_mft_record_format_empty(vol, rec, g->first + i, 1, 0, 0);
		m->flags = 0;
		if (ntfs_mst_pre_write(rec, size))
			err = ntfs_fail(EIO, "MFT record %llu: cannot apply fixups",
					(unsigned long long)(g->first + i));
	}
	if (!err)
		err = ntfs_attr_pwrite_mapped(g->new, g->first << bits, count * size, buf);
	free(buf);
	return err;
}

/* The unnamed attribute record of `type` starting at vcn 0 in record 0. */
static struct ntfs_attr_record *record0_find(uint8_t *rec, uint32_t type)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a))
		if (le32(a->type) == type && !a->name_length &&
		    (!a->non_resident || sle64(a->u.nr.lowest_vcn) == 0))
			return (struct ntfs_attr_record *)a;
	return NULL;
}

/* a (non-resident, in record 0) must map its whole runlist, ending at
 * end_vcn: $MFT's own attributes are only edited there. */
static int record0_check_whole(const struct ntfs_volume *vol, const struct ntfs_attr_record *a,
			       const char *name, int64_t end_vcn)
{
	if (!a || !a->non_resident)
		return ntfs_fail(EIO, "%s: $MFT/%s is not a non-resident attribute of record 0",
				 vol->dev->path, name);
	if (sle64(a->u.nr.highest_vcn) + 1 != end_vcn)
		return ntfs_fail(ENOSPC, "%s: $MFT/%s continues in extension records; growing it "
				 "there is not implemented", vol->dev->path, name);
	return 0;
}

/* Re-encode a's mapping pairs from rl in record 0; -ENOSPC when they do
 * not fit there. */
static int record0_set_runlist(struct ntfs_volume *vol, uint8_t *rec, struct ntfs_attr_record *a,
			       const struct ntfs_runlist *rl, const char *name)
{
	int err = ntfs_attr_record_set_runlist(rec, a, rl, le16(a->flags), false, NULL);

	if (err == -E2BIG)
		return ntfs_fail(ENOSPC, "%s: $MFT/%s's runlist (%zu runs) no longer fits in MFT "
				 "record 0 and $MFT would need an extension record for itself, "
				 "which is not implemented", vol->dev->path, name, rl->count);
	return err;
}

/* The commit: record 0 gets $MFT/$DATA's new runlist and sizes and
 * $MFT/$BITMAP's, in one write (and its $MFTMirr copy). */
static int grow_commit(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb, struct mft_grow *g)
{
	uint32_t size = vol->geo.mft_record_size;
	uint8_t *rec = malloc(size);
	struct ntfs_attr_record *a;
	int err;

	if (!rec)
		return -ENOMEM;
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, FILE_MFT, rec);
	if (err)
		goto out;
	a = record0_find(rec, AT_DATA);
	err = record0_check_whole(vol, a, "$DATA", g->old_vcns);
	if (!err && ntfs_rl_end_vcn(&g->new->rl) != g->old_vcns)
		err = record0_set_runlist(vol, rec, a, &g->new->rl, "$DATA");
	if (err)
		goto out;
	a->u.nr.allocated_size = cpu_to_le64(g->new->allocated_size);
	a->u.nr.data_size = cpu_to_le64(g->new->data_size);
	a->u.nr.initialized_size = cpu_to_le64(g->new->initialized_size);
	if (g->bm_size) {
		a = record0_find(rec, AT_BITMAP);
		err = record0_check_whole(vol, a, "$BITMAP", ntfs_rl_end_vcn(&mb->na->rl));
		if (!err && g->bm_rl.count)
			err = record0_set_runlist(vol, rec, a, &g->bm_rl, "$BITMAP");
		if (err)
			goto out;
		if (g->bm_rl.count)
			a->u.nr.allocated_size = cpu_to_le64((uint64_t)ntfs_rl_end_vcn(&g->bm_rl)
							     << vol->geo.cluster_size_bits);
		a->u.nr.data_size = cpu_to_le64(g->bm_size);
		a->u.nr.initialized_size = cpu_to_le64(g->bm_size);
	}
	g->committing = true;
	err = ntfs_mft_record_write(vol, FILE_MFT, rec);
	if (!err)
		memcpy(vol->mft_ni->mrec, rec, size);
out:
	pthread_mutex_unlock(&vol->mft_lock);
	free(rec);
	return err;
}

/* After a failed growth: give back the clusters it took (a failure to do
 * so leaks them, logged).  When record 0's write failed, its main copy may
 * have reached the disk and point at them: they are kept (leaked) then. */
static void grow_undo(struct ntfs_volume *vol, struct mft_grow *g)
{
	char msg[512];
	int err = 0;

	snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	if (g->committing) {
		ntfs_error("%s: writing MFT record 0 failed while growing $MFT; the clusters "
			   "taken for it stay marked in use (run chkdsk): %s", vol->dev->path, msg);
		return;
	}
	if (g->new && ntfs_rl_end_vcn(&g->new->rl) > g->old_vcns)
		err = ntfs_cluster_free_from_rl(vol, &g->new->rl, g->old_vcns);
	if (ntfs_rl_end_vcn(&g->bm_rl) > g->bm_old_vcns &&
	    ntfs_cluster_free_from_rl(vol, &g->bm_rl, g->bm_old_vcns) && !err)
		err = -EIO;
	if (err)
		ntfs_error("%s: growing $MFT failed and the clusters it took could not all be "
			   "freed (leaked): %s", vol->dev->path, ntfs_last_error());
	ntfs_error("%s", msg);
}

/* Grow $MFT by up to MFT_GROW_RECORDS free records (see the module
 * comment), with mb->lock held. */
static int mft_grow(struct ntfs_volume *vol, struct ntfs_mft_bitmap *mb)
{
	uint32_t bits = vol->geo.mft_record_size_bits;
	struct mft_grow g = { .old = ntfs_volume_mft_data(vol) };
	uint64_t limit;
	int err;

	g.first = g.old->initialized_size >> bits;
	if (g.first < NTFS_MFT_FIRST_ALLOCATABLE)
		return ntfs_fail(EIO, "$MFT: only %llu records initialized",
				 (unsigned long long)g.first);
	if (mb->size * 8 < g.first)
		return ntfs_fail(EIO, "$MFT/$BITMAP (%llu bytes) falls short of $MFT's %llu "
				 "initialized records: the MFT is corrupted (run chkdsk)",
				 (unsigned long long)mb->size, (unsigned long long)g.first);
	if (g.first < vol->mirr_records || g.old->initialized_size & (vol->geo.mft_record_size - 1))
		return ntfs_fail(EIO, "$MFT: initialized size %llu is not a whole number of "
				 "records past $MFTMirr's",
				 (unsigned long long)g.old->initialized_size);
	/* Record numbers are 32 bits in NTFS 3.1 records (and the references'
	 * 48 bits everywhere). */
	limit = (uint64_t)UINT32_MAX + 1;
	if (g.first >= limit)
		return ntfs_fail(ENOSPC, "%s: $MFT holds the most records NTFS allows",
				 vol->dev->path);
	if (mb->nretired == mb->retired_cap) {
		size_t cap = mb->retired_cap ? mb->retired_cap * 2 : 8;
		struct ntfs_attr **r = realloc(mb->retired, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		mb->retired = r;
		mb->retired_cap = cap;
	}
	err = ntfs_attr_clone(g.old, &g.new);
	if (err)
		return err;
	g.old_vcns = ntfs_rl_end_vcn(&g.new->rl);
	if ((uint64_t)g.old_vcns << vol->geo.cluster_size_bits != g.old->allocated_size) {
		err = ntfs_fail(EIO, "$MFT/$DATA: runlist and allocated size disagree");
		goto fail;
	}
	err = grow_data_clusters(vol, &g, g.first + MFT_GROW_RECORDS < limit ?
						  g.first + MFT_GROW_RECORDS : limit);
	if (err)
		goto fail;
	/* Every record the allocation holds when clusters were just added
	 * (their count was rounded up to reach MFT_GROW_RECORDS), else the
	 * next MFT_GROW_RECORDS of what it already held. */
	g.end = g.new->allocated_size >> bits;
	if (ntfs_rl_end_vcn(&g.new->rl) == g.old_vcns && g.end > g.first + MFT_GROW_RECORDS)
		g.end = g.first + MFT_GROW_RECORDS;
	if (g.end > limit)
		g.end = limit;
	g.new->initialized_size = g.end << bits;
	if (g.new->data_size < g.new->initialized_size)
		g.new->data_size = g.new->initialized_size;
	err = grow_bitmap(vol, mb, &g);
	if (!err)
		err = grow_format_records(vol, &g);
	/* What record 0 is about to point at must be on disk first. */
	if (!err)
		err = ntfs_device_flush(vol->dev);
	if (!err)
		err = grow_commit(vol, mb, &g);
	if (err)
		goto fail;

	/* Committed: publish the new snapshot, then the count (volume.h). */
	atomic_store_explicit(&vol->mft_data, g.new, memory_order_release);
	mb->retired[mb->nretired++] = g.old;
	if (g.new->data_size >> bits > vol->nr_mft_records)
		vol->nr_mft_records = g.new->data_size >> bits;
	if (g.bm_size) {
		free(mb->bits);
		mb->bits = g.bits;
		mb->size = g.bm_size;
		if (g.bm_rl.count) {
			ntfs_runlist_free(&mb->na->rl);
			mb->na->rl = g.bm_rl;
			mb->na->allocated_size = (uint64_t)ntfs_rl_end_vcn(&g.bm_rl)
						 << vol->geo.cluster_size_bits;
		}
		mb->na->data_size = mb->na->initialized_size = g.bm_size;
	}
	return 0;
fail:
	grow_undo(vol, &g);
	ntfs_attr_close(g.new);
	ntfs_runlist_free(&g.bm_rl);
	free(g.bits);
	return err;
}

int ntfs_mft_record_alloc(struct ntfs_volume *vol, uint64_t base_mft_no, uint16_t base_seq,
			  uint64_t *mft_no_out)
{
	struct ntfs_mft_bitmap *mb = vol->mft_bitmap;
	uint64_t usable, no;
	bool in_use = false;
	int err;

	if (!mb)
		return ntfs_fail(EROFS, "%s: cannot allocate an MFT record: volume opened read-only",
				 vol->dev->path);
	if ((base_mft_no || base_seq) && base_mft_no >= vol->nr_mft_records)
		return ntfs_fail(EINVAL, "MFT record allocation: base record %llu is past the MFT",
				 (unsigned long long)base_mft_no);
	pthread_mutex_lock(&mb->lock);
	for (;;) {
		usable = mft_records_usable(vol, mb);
		no = find_clear(mb->bits, mb->hint < usable ? mb->hint : usable, usable);
		if (no < usable)
			break;
		err = mft_grow(vol, mb);
		if (err)
			goto out;
	}
	err = mft_bitmap_change(vol, mb, no, true);
	if (err)
		goto out;
	mb->hint = no + 1;
	err = mft_record_format(vol, no, (uint64_t)base_seq << 48 | MREF(base_mft_no), &in_use);
	if (err && !in_use) {
		char msg[512];

		/* The record is unused: free its bit.  A record found in use
		 * keeps the bit just set: now the bitmap tells the truth and
		 * the next allocation moves on. */
		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		if (!mft_bitmap_change(vol, mb, no, false))
			mb->hint = no;
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
	if (!err && mft_no < mb->hint)
		mb->hint = mft_no;
out:
	pthread_mutex_unlock(&mb->lock);
	free(buf);
	return err;
}
