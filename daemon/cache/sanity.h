/*
 * sanity.h — a cache inode's invariants, asserted at its state changes (as
 * SQLite's pcache asserts its page sanity checks), and reports of bugs.
 *
 * Invariants:
 *  - The checks look only at daemon-private state (sizes, runlist, page
 *    counts; never the shared segments, which clients write), so only a
 *    bug in ntfsd can make one fail; a failure logs every size of the
 *    inode and the check that failed, and aborts.
 *  - They exist in the debug and sanitizer builds (NTFSD_LOCKDEP, which
 *    also knows which locks the thread holds) and are no-ops otherwise.
 *  - cache_bug() is for post-conditions that only a bug can break: it logs
 *    the bug, aborts in those builds and is -EIO (with a message for the
 *    client) in the others, never a user-facing "not supported".
 */
#ifndef NTFSD_CACHE_SANITY_H
#define NTFSD_CACHE_SANITY_H

#include "lockdep.h"

struct cache_inode;

#if NTFSD_LOCKDEP
/* What holds whenever init_lock is held (the caller holds it): sizes and
 * runlist consistent, disk_init below what memory says, page counts within
 * the segment.  For the middle of a size change (commit_runlist,
 * writeback_sizes). */
void cache_inode_sanity_at(struct cache_inode *ci, const char *file, int line);
/* What holds between size changes: the above, and i_size is the data size,
 * covered by used_pages.  Takes size_lock unless the thread holds it (the
 * end of a prepare-write or truncate), and init_lock. */
void cache_inode_sanity_settled_at(struct cache_inode *ci, const char *file, int line);
/* The reference counts (cache->lock held). */
void cache_inode_sanity_refs_at(struct cache_inode *ci, const char *file, int line);
#define cache_inode_sanity(ci) cache_inode_sanity_at((ci), __FILE__, __LINE__)
#define cache_inode_sanity_settled(ci) cache_inode_sanity_settled_at((ci), __FILE__, __LINE__)
#define cache_inode_sanity_refs(ci) cache_inode_sanity_refs_at((ci), __FILE__, __LINE__)
#else
#define cache_inode_sanity(ci) ((void)(ci))
#define cache_inode_sanity_settled(ci) ((void)(ci))
#define cache_inode_sanity_refs(ci) ((void)(ci))
#endif

/* A bug: logged, fatal with NTFSD_LOCKDEP, else -EIO with the message in
 * ntfs_last_error(). */
__attribute__((format(printf, 3, 4)))
int cache_bug_at(const char *file, int line, const char *fmt, ...);
#define cache_bug(...) cache_bug_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
