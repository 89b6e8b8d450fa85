/*
 * mftalloc.h — MFT record allocation through $MFT's $BITMAP attribute
 * (MFT record 0, unnamed $BITMAP: one bit per record, 1 = in use).
 *
 * Invariants:
 *  - A read-write volume holds a copy of $MFT/$BITMAP in memory (loaded by
 *    ntfs_volume_open), identical to the disk whenever the MFT bitmap lock
 *    is not held.  Records 0..23 are never handed out nor freed here:
 *    0..15 are the system files, 16..23 are kept by NTFS for $MFT's own
 *    extension records.
 *  - A record is marked in the on-disk bitmap before it is formatted as in
 *    use, and formatted as unused before its bit is cleared, so a crash at
 *    any point leaves at worst a bit set for an unused record (a leak), never
 *    an in-use record whose bit is clear.
 *  - Lock order: the MFT bitmap lock, then the cluster bitmap lock
 *    (lcnalloc.h) or vol->mft_lock, which is taken for every record
 *    read-modify-write (see attr_write.h).  Nothing here is called with
 *    vol->mft_lock held.
 *  - When no free record lies inside $MFT's initialized data, $MFT grows by
 *    64 free records (formatted, not in use), into clusters its allocation
 *    already holds or fresh ones from the MFT zone, with $MFT/$BITMAP grown
 *    to match, committed by one write of record 0 (mftalloc.c has the
 *    steps).  It fails with -ENOSPC when no cluster is free, or when $MFT
 *    would need an extension record for its own runlist (not implemented).
 *  - $MFT/$DATA (vol->mft_data) is replaced, never changed in place, when
 *    $MFT grows, so record reads need no lock (the rule is in volume.h).
 *    $MFTMirr is not affected: it mirrors the first records only, and the
 *    new ones are past them (record 0's new contents go to both copies).
 */
#ifndef NTFS_MFTALLOC_H
#define NTFS_MFTALLOC_H

#include <stdint.h>

struct ntfs_volume;
struct ntfs_mft_bitmap;

/* The first record number ever allocated. */
#define NTFS_MFT_FIRST_ALLOCATABLE 24u

int ntfs_mft_bitmap_load(struct ntfs_volume *vol);
void ntfs_mft_bitmap_free(struct ntfs_volume *vol);

/* Allocate a free MFT record and format it on disk as an empty in-use
 * extension record of the base record (base_mft_no, base_seq): FILE magic,
 * update sequence array, the sequence number on disk plus one (never 0),
 * no attributes.  base_mft_no == 0 with base_seq == 0 formats a base record
 * instead (no base reference), for the caller to fill in.  *mft_no_out gets
 * the record number; its sequence number is in the record.  Returns 0,
 * -EROFS, -EINVAL (bad base), -ENOSPC (no free record and $MFT cannot
 * grow), -EIO (the record's bit was clear but the record is in use: a
 * corrupted $MFT/$BITMAP) or a write error (nothing allocated; a growth of
 * $MFT that was committed before the error stays). */
int ntfs_mft_record_alloc(struct ntfs_volume *vol, uint64_t base_mft_no, uint16_t base_seq,
			  uint64_t *mft_no_out);

/* Format buf (vol->geo.mft_record_size bytes, in memory only) as the empty
 * in-use record ntfs_mft_record_alloc() writes: header, update sequence
 * array (update sequence number usn), sequence number seq, base reference
 * base_ref, an end marker and nothing else. */
void ntfs_mft_record_format_empty(const struct ntfs_volume *vol, uint8_t *buf, uint64_t mft_no,
				  uint16_t seq, uint16_t usn, uint64_t base_ref);

/* Mark record mft_no unused (IN_USE cleared, sequence number bumped, never
 * to 0) and clear its bit.  -EINVAL for records 0..23 or past the MFT, -EIO
 * when the record or its bit is already free. */
int ntfs_mft_record_free(struct ntfs_volume *vol, uint64_t mft_no);

#endif
