/*
 * index.h — changing a directory's $I30 file-name index: a B-tree whose
 * root is the resident $INDEX_ROOT:$I30 of the directory's base MFT record
 * and whose other nodes are INDX blocks of $INDEX_ALLOCATION:$I30, with
 * $BITMAP:$I30 saying which blocks are in use.  (Reading it is dir.h.)
 *
 * Invariants kept by every change (and checked by ntfs_index_check()):
 *  - Entries are in COLLATION_FILE_NAME order (collate.h, the volume's
 *    $UpCase) across the whole tree, read in order, and no two have the
 *    same name; each node ends with an END entry.
 *  - A node is a leaf (no entry has INDEX_ENTRY_NODE, header flag 0) or
 *    internal (every entry, END included, has INDEX_ENTRY_NODE and its
 *    child's VCN in its last 8 bytes, header flag 1); every leaf is at the
 *    same depth.  The root is internal exactly when the $INDEX_ROOT header
 *    says LARGE_INDEX; then $INDEX_ALLOCATION and $BITMAP exist.  Once
 *    they exist they stay (also when the root becomes a leaf again, as
 *    ntfs-3g leaves them); they only ever grow.
 *  - Exactly the blocks reachable from the root have their bit set in
 *    $BITMAP:$I30, and all of them lie inside $INDEX_ALLOCATION's data;
 *    a block this code freed holds only an END entry.
 *    No leaf block but the root is empty (only an END entry) once a change
 *    returns; internal blocks may hold just an END entry and its child.
 *  - INDX blocks are written whole, with update-sequence fixups applied to
 *    a private copy (mst.h) and the bytes past the entries zeroed, through
 *    $INDEX_ALLOCATION's runlist; $INDEX_ROOT is rewritten in the base
 *    record in one MFT record write.
 *
 * What a change does, node by node (index.c has the details):
 *  - insert: into the leaf where the name belongs; a block that overflows
 *    is split around its median entry by bytes: the lower half goes to a
 *    new block, the median moves up into the parent pointing at it, the
 *    upper half stays in the old block; a root that overflows the MFT
 *    record (or, once the index has an allocation, would leave less than
 *    64 bytes of it free, the room $BITMAP:$I30 and the allocation's
 *    mapping pairs grow into) moves all its entries down into a new block
 *    and keeps only an END entry pointing at it (the tree grows by one
 *    level).  The first
 *    such move creates $INDEX_ALLOCATION (one block's clusters, lcnalloc.h)
 *    and $BITMAP in the same record write that shrinks the root.
 *  - remove: from a leaf, the entry is dropped; from an internal node, it
 *    is replaced by its predecessor (the last entry of the rightmost leaf
 *    of its child), which is taken out of that leaf first.  A leaf left
 *    empty is freed: its parent drops the entry pointing at it (or, for
 *    the parent's END, takes over the child of the entry before it), and
 *    that entry is inserted again from the top; a parent left with
 *    nothing is freed the same way, up to the root, which then becomes a
 *    leaf again.  A freed block is rewritten with no entries before its
 *    bit is cleared (readers that ignore $BITMAP:$I30, as The Sleuth Kit
 *    does, would list its old entries as live names).  Nodes are not
 *    merged or rebalanced otherwise: blocks can be left sparsely filled.
 *  - growth: a new block takes the first clear bit of $BITMAP:$I30 below
 *    the allocation's data size, else extends $INDEX_ALLOCATION (clusters
 *    from lcnalloc.h when its allocation is full, then its mapping pairs
 *    and sizes, attr_record.h), and $BITMAP grows by 8 bytes at a time
 *    (resident in the base record, made non-resident when the record has
 *    no room).
 *
 * Crash ordering (no journal): every block is written before anything
 * that points at it (a new block before its parent, a bit in $BITMAP after
 * the block's contents and before its parent), and an entry leaves its
 * old place before it reaches its new one (a split writes the new lower
 * block, then the old block without the lower half, then the parent with
 * the median; a predecessor leaves its leaf before it replaces the removed
 * entry; an entry moved by freeing an empty leaf leaves the parent before
 * it is inserted again).  So a crash between two writes can lose entries
 * (their MFT records are then in use and unreferenced: leaked) and can
 * leave clusters or $BITMAP:$I30 bits in use for blocks nothing points at,
 * but never leaves a name twice in the tree or a pointer at a block that
 * is unwritten or free.
 *
 * Locking: the caller serializes every change and every lookup of one
 * directory (one writer per directory; reads of the index through dir.h
 * may run concurrently only when no change is running).  Nothing here
 * holds vol->mft_lock across an allocation: it is taken for each record
 * read-modify-write, as attr_write.h and attr_record.h do.  The directory
 * inode's cached base record (dir->mrec) is refreshed after every write
 * of that record made here.  Only a directory whose $INDEX_ROOT is in the
 * base record is changed (-EOPNOTSUPP otherwise).
 */
#ifndef NTFS_INDEX_H
#define NTFS_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

struct ntfs_inode;

/* ntfs_index_lookup(): how names match. */
#define NTFS_INDEX_EXACT 0x0u      /* the very code units */
#define NTFS_INDEX_ANY_CASE 0x1u   /* equal through $UpCase, in any name space */

/* Find name (len UTF-16LE units) in dir's index.  *mref (may be NULL) gets
 * the entry's MFT reference, *name_type (may be NULL) its FILE_NAME_*
 * name space.  With NTFS_INDEX_ANY_CASE the first entry found that is
 * equal ignoring case.  -ENOENT when there is none, -ENOTDIR, -EIO. */
int ntfs_index_lookup(struct ntfs_inode *dir, const ntfschar *name, uint32_t len, unsigned how,
		      uint64_t *mref, uint8_t *name_type);

/* Insert an entry for mref keyed by fn (a $FILE_NAME value: sizeof(*fn)
 * plus 2 * fn->file_name_length bytes).  -EEXIST when the exact name is
 * already there (no case-insensitive check: the caller's policy), -ENOSPC
 * (no cluster, or an MFT record too full for the index to grow),
 * -EOPNOTSUPP, -EIO, -ENOMEM, or a write error (see the crash ordering). */
int ntfs_index_add(struct ntfs_inode *dir, const struct ntfs_file_name *fn, uint64_t mref);

/* Remove the entry whose name is exactly name; *mref (may be NULL) gets
 * the MFT reference it held.  -ENOENT, -EIO, -ENOMEM, a write error. */
int ntfs_index_remove(struct ntfs_inode *dir, const ntfschar *name, uint32_t len,
		      uint64_t *mref);

/* Rewrite the duplicated information (times, sizes, attributes, reparse
 * tag) of the entry named exactly as fn, in fn's name space, for mref,
 * with fn's: the copies Windows and ntfs-3g keep current in the parent's
 * index.  One write of the node holding it, none when nothing changed.
 * -ENOENT when there is no such entry. */
int ntfs_index_update_dup(struct ntfs_inode *dir, const struct ntfs_file_name *fn, uint64_t mref);

/* 1 when dir's index holds no entry, 0 when it holds one, or an error. */
int ntfs_index_is_empty(struct ntfs_inode *dir);

struct ntfs_index_stats {
	unsigned depth;             /* levels: 1 for a root-only index */
	uint64_t entries;           /* every entry but END entries */
	uint64_t blocks_used;       /* INDX blocks reachable from the root */
	uint64_t blocks_allocated;  /* $INDEX_ALLOCATION data size / block size */
	uint64_t bits_set;          /* bits set in $BITMAP:$I30 */
};

/* Walk the whole index and check the invariants above (order, one name
 * once, node kinds, equal leaf depth, no empty leaf block, bitmap bits
 * exactly for the blocks in use, blocks inside the allocation).  0 with
 * *st filled (st may be NULL), or -EIO naming the first violation. */
int ntfs_index_check(struct ntfs_inode *dir, struct ntfs_index_stats *st);

#endif
