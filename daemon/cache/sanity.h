/*
 * sanity.h — a cache inode's invariants, asserted at its state changes (as
 * SQLite's pcache asserts its page sanity checks), and reports of bugs.
 *
 * Invariants:
 *  - The checks look only at daemon-private state (sizes, page counts, and
 *    the file system's own, checked by it: aops->sanity_settled; never the
 *    shared segments, which clients write), so only a
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
/* What holds between size changes: i_size within the segment and covered
 * by used_pages, page counts within the segment, and what the file system
 * checks (aops->sanity_settled: for NTFS, i_size is the data size and the
 * sizes and runlist agree).  Takes size_lock unless the thread holds it. */
void cache_inode_sanity_settled_at(struct cache_inode *ci, const char *file, int line);
/* The reference counts (cache->lock held). */
void cache_inode_sanity_refs_at(struct cache_inode *ci, const char *file, int line);
/* A check failed: log it with the inode's generic state and the file
 * system's detail (may be NULL), and abort. */
__attribute__((noreturn))
void cache_insane_at(const struct cache_inode *ci, const char *file, int line,
		     const char *check, const char *detail);
#define cache_inode_sanity_settled(ci) cache_inode_sanity_settled_at((ci), __FILE__, __LINE__)
#define cache_inode_sanity_refs(ci) cache_inode_sanity_refs_at((ci), __FILE__, __LINE__)
#else
#define cache_inode_sanity_settled(ci) ((void)(ci))
#define cache_inode_sanity_refs(ci) ((void)(ci))
#endif

/* A bug: logged, fatal with NTFSD_LOCKDEP, else -EIO with the message in
 * ntfs_last_error(). */
__attribute__((format(printf, 3, 4)))
int cache_bug_at(const char *file, int line, const char *fmt, ...);
#define cache_bug(...) cache_bug_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
