/*
 * inode_times.h — an inode's times in $STANDARD_INFORMATION, and the copies of
 * its times, sizes and attributes that the parent directory's $I30 index
 * keeps in each of the inode's entries (the "duplicated information" of
 * their $FILE_NAME keys), which Windows and ntfs-3g keep current and
 * `dir`, Explorer, ntfs-3g's readdir and The Sleuth Kit show.
 *
 * Invariants:
 *  - Times are NTFS times (100 ns since 1601-01-01 UTC).  A change writes
 *    the four times of $STANDARD_INFORMATION in one record write; the
 *    inode's in-memory copy (ni->times) follows only when it succeeded.
 *  - ntfs_sync_dir_copies() takes everything from the records as they are
 *    on disk at the call (so it runs after the sizes and times it should
 *    carry were written): the $STANDARD_INFORMATION times and attributes
 *    (plus FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT for a directory), and for
 *    a file its unnamed $DATA's data size and allocated size (the
 *    compressed size when compressed or sparse: what is allocated), as
 *    Windows fills them; a directory's sizes are 0.  The $FILE_NAME
 *    attributes in the inode's own record are not changed (Windows keeps
 *    them as the name was made or last renamed).  Each entry is one
 *    in-place rewrite of one index node, skipped when nothing changed: a
 *    crash leaves each copy old or new, never a torn node.
 *  - Locking: the caller serializes these with every change and lookup
 *    of the parent directories (index.h), as for a namespace change.
 */
#ifndef NTFS_INODE_TIMES_H
#define NTFS_INODE_TIMES_H

#include <stdint.h>

struct ntfs_inode;
struct ntfs_volume;

#define NTFS_TIME_CREATION 0x1u
#define NTFS_TIME_DATA 0x2u        /* last data change: mtime */
#define NTFS_TIME_MFT 0x4u         /* last MFT change: ctime */
#define NTFS_TIME_ACCESS 0x8u      /* last access: atime */

/* Set the times selected by mask to times[0..3] (creation, data change,
 * MFT change, access).  -ENOENT for an inode without a resident
 * $STANDARD_INFORMATION, -EROFS, a write error. */
int ntfs_set_times(struct ntfs_inode *ni, const uint64_t times[4], unsigned mask);

/* Data and MFT change times to now: what a change of a directory's
 * entries does to the directory. */
int ntfs_touch_dir(struct ntfs_inode *dir);

/* Bring the copies in the parents' indexes of record mft_no (every name
 * of it) to what its records say now.  0, or the first error (entries
 * not found are skipped: a crash can leave a name without an entry). */
int ntfs_sync_dir_copies(struct ntfs_volume *vol, uint64_t mft_no);

/* NTFS time of now (CLOCK_REALTIME). */
uint64_t ntfs_time_now(void);
/* NTFS time <-> nanoseconds since 1970 (signed: before 1970 is negative;
 * NTFS times outside what an int64_t of ns holds, before 1678 or after
 * 2262, are clamped; every int64_t of ns is a valid NTFS time). */
int64_t ntfs_time_to_unix_ns(uint64_t t);
uint64_t ntfs_time_from_unix_ns(int64_t ns);

#endif
