/*
 * cache_int.h — what only daemon/cache/ uses of itself: the building blocks
 * of opening and adopting an inode, page accounting and reclaim, and the
 * write-side steps prepare-write and truncate share.  The
 * layers above see cache.h (and namei.h, page_lock.h, holders.h) only.
 */
#ifndef NTFSD_CACHE_INT_H
#define NTFSD_CACHE_INT_H

#include "cache.h"

/* cache_open() with c->ns_lock held (either way). */
int cache_open_locked(struct cache *c, const char *path, struct cache_inode **out);
/* The cached inode mft_no with a reference taken (cache_inode_put), or
 * NULL when it is not cached. */
struct cache_inode *cache_inode_find(struct cache *c, uint64_t mft_no);

/* With c->lock held (asserted): free an inode with refs == 0. */
void cache_inode_release(struct cache_inode *ci);
/* With c->lock held: free one inode nobody uses; false if there is none. */
bool cache_evict_unused(struct cache *c);

/* Building blocks of cache_open(), also used by cache_adopt(): an inode
 * read from the volume with no segments yet; mapping segments (the inode
 * takes both fds); linking it in with `openers` opener references (c->lock
 * held; stores its segments; a: its sizes, taken before c->lock); freeing
 * one. */
int cache_inode_alloc(struct cache *c, uint64_t mft_no, struct cache_inode **out);
int cache_inode_map(struct cache_inode *ci, int data_fd, int state_fd,
		    const struct shm_file_header *layout);
int cache_inode_insert(struct cache_inode *ci, unsigned openers, const struct cache_attr *a);
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
/* EFBIG for a growth to `pages` past the open segments; remembered so
 * that the next open with nobody using the file makes them anew, with
 * room for it, up to CACHE_MAX_WANT_PAGES. */
int cache_refuse_growth(struct cache_inode *ci, uint64_t pages);

/* Publish i_size and the file system's sizes (getattr) to clients: the
 * state header and the volume header's inode slot. */
void cache_publish_sizes(struct cache_inode *ci);

/* Count page index in the cache (once: reserving room first); returns
 * false if it already was. */
bool cache_account_page(struct cache_inode *ci, uint64_t index);
void cache_unaccount_page(struct cache_inode *ci, uint64_t index);

/* Fill *a from the cached inode of MFT record mft_no; false when it is not
 * cached (the record on disk is then the truth). */
bool cache_getattr(struct cache *c, uint64_t mft_no, struct cache_attr *a);

#endif
