/*
 * cache_int.h — what only daemon/cache/ uses of itself: the building blocks
 * of opening and adopting an inode, page accounting and reclaim, and the
 * write-side steps prepare-write, truncate and resident files share.  The
 * layers above see cache.h (and namei.h, page_lock.h, holders.h) only.
 */
#ifndef NTFSD_CACHE_INT_H
#define NTFSD_CACHE_INT_H

#include "cache.h"

/* With c->lock held (asserted): free an inode with refs == 0. */
void cache_inode_release(struct cache_inode *ci);
/* With c->lock held: free one inode nobody uses; false if there is none. */
bool cache_evict_unused(struct cache *c);

/* Building blocks of cache_open(), also used by cache_adopt(): an inode
 * read from the volume with no segments yet; mapping segments (the inode
 * takes both fds); linking it in with `openers` opener references (c->lock
 * held; stores its segments); freeing one. */
int cache_inode_alloc(struct cache *c, uint64_t mft_no, struct cache_inode **out);
int cache_inode_map(struct cache_inode *ci, int data_fd, int state_fd,
		    const struct shm_file_header *layout);
int cache_inode_insert(struct cache_inode *ci, unsigned openers);
void cache_inode_destroy(struct cache_inode *ci);

/* Read one page if not uptodate (locks the page itself). */
int readpage(struct cache_inode *ci, uint64_t index);

/* Count one more cached page, first reclaiming (clean, unlocked, unpinned
 * pages not under writeback, least recently faulted first) so the count
 * stays within the limit; it passes it only when every cached page is
 * pinned or busy. */
void cache_reserve_page(struct cache *c);

/* The refusals every write shares: read-only volume (EROFS), system files
 * (EPERM), encrypted (EACCES). */
int cache_check_writable(struct cache_inode *ci);
/* A resident file about to reach new_size: its value grows in the record,
 * or moves out to clusters when it no longer fits (size_lock held); the
 * caller then grows it as a non-resident file.  See resident.c. */
int cache_resident_grow(struct cache_inode *ci, uint64_t new_size);
/* Change a resident value's length within its record (-E2BIG: no room). */
int cache_resident_resize(struct cache_inode *ci, uint64_t size);
/* Make *rl the attribute's runlist, data_size the given value (UINT64_MAX:
 * unchanged), initialized_size at most init_cap (UINT64_MAX: unchanged),
 * and write them into the MFT record, under init_lock and rl_lock (the
 * sizes are read there, so a concurrent raise by writeback is kept).  The
 * record's initialized_size is disk_init (capped), never the in-memory
 * value, which may cover data not yet flushed.  On
 * success *rl is the old runlist (the caller frees it); on failure the
 * attribute is as it was and *rl still the caller's. */
int cache_commit_runlist(struct cache_inode *ci, struct ntfs_runlist *rl, uint64_t data_size,
			 uint64_t init_cap);
/* Store compression unit `unit` of a compressed file uncompressed (fresh
 * clusters, record rewritten, old clusters freed; size_lock held). */
int cache_store_unit_uncompressed(struct cache_inode *ci, uint64_t unit);

/* Count page index in the cache (once: reserving room first); returns
 * false if it already was. */
bool cache_account_page(struct cache_inode *ci, uint64_t index);
void cache_unaccount_page(struct cache_inode *ci, uint64_t index);

/* The sizes of a cached file as clients see them now (the MFT record may
 * lag them until write-back writes it). */
struct cache_attr {
	uint64_t i_size, initialized_size, allocated_size;
	bool resident;
};
/* Fill *a from the cached inode of MFT record mft_no; false when it is not
 * cached (the record on disk is then the truth). */
bool cache_getattr(struct cache *c, uint64_t mft_no, struct cache_attr *a);

#endif
