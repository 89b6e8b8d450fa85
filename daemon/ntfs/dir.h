/*
 * dir.h — directories: the $I30 file-name index (B+-tree in $INDEX_ROOT and
 * $INDEX_ALLOCATION), lookup by name and by path, listing in index order.
 *
 * Invariants: every index node (root or INDX block) is validated before its
 * entries are used: block magic, fixups, the block's own VCN, header offsets
 * inside the block, and every entry's length, key length and file name
 * inside the node.  A walk visits each index block at most once, so a
 * corrupted tree with a cycle ends with an error instead of looping.
 */
#ifndef NTFS_DIR_H
#define NTFS_DIR_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

struct ntfs_inode;
struct ntfs_volume;

struct ntfs_dirent {
	uint64_t mref;                  /* MFT reference (with sequence number) */
	uint8_t name_type;              /* FILE_NAME_POSIX / WIN32 / DOS / WIN32_AND_DOS */
	const void *name;               /* name_len little-endian UTF-16 units */
	uint32_t name_len;
	const struct ntfs_file_name *fn;/* the index key; sizes in it may be stale */
};

/* Return 0 to go on, > 0 to stop (returned to the caller), < 0 on error. */
typedef int (*ntfs_filldir_fn)(void *ctx, const struct ntfs_dirent *de);

/* Every entry (all name spaces, DOS names included) in collation order. */
int ntfs_dir_foreach(struct ntfs_inode *dir, ntfs_filldir_fn fn, void *ctx);

#define NTFS_LOOKUP_IGNORE_CASE 0x1u   /* also match Win32/DOS names ignoring case */

/* Find name (len UTF-16LE units) in dir.  Exact (case-sensitive) matches
 * win, as in ntfs-3g; with NTFS_LOOKUP_IGNORE_CASE a non-POSIX name equal
 * ignoring case is accepted when there is no exact match.  -ENOENT when
 * absent. */
int ntfs_dir_lookup(struct ntfs_inode *dir, const ntfschar *name, uint32_t len,
		    unsigned flags, uint64_t *mref);

/* Resolve an absolute or root-relative UTF-8 path ("/a/b", "a/b", "/") to an
 * MFT reference.  -ENOENT, -ENOTDIR, -EILSEQ (bad UTF-8), -ENAMETOOLONG. */
int ntfs_path_lookup(struct ntfs_volume *vol, const char *path, unsigned flags,
		     uint64_t *mref);

#endif
