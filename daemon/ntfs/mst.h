/*
 * mst.h — multi-sector transfer (update sequence) fixups.
 *
 * Invariant: a protected record read from disk is only used after
 * ntfs_mst_post_read() verified that the last two bytes of every 512-byte
 * stride carry the update sequence number and restored the saved bytes.  A
 * record failing that check is torn or corrupted and is never used.
 */
#ifndef NTFS_MST_H
#define NTFS_MST_H

#include <stdint.h>

/* Verify and remove fixups in place.  `what` and `number` name the record in
 * the error ("MFT record", 37).  Returns 0 or -EIO. */
int ntfs_mst_post_read(void *buf, uint32_t size, const char *what, uint64_t number);

/* Apply fixups before a write: bump the sequence number and stash the stride
 * tails.  The record must have passed ntfs_mst_post_read() (or been built
 * with a valid header).  Returns 0 or -EINVAL. */
int ntfs_mst_pre_write(void *buf, uint32_t size);

/* Undo ntfs_mst_pre_write() after the write was submitted. */
void ntfs_mst_post_write(void *buf, uint32_t size);

#endif
