/*
 * utimes.h — setting a file's times through the cache (utimensat(2)), and
 * keeping the copies of its sizes and times in its directory entries up
 * to date after write-back wrote the inode.
 *
 * Invariants:
 *  - A cached inode's times are set under its wb_lock, after the caller
 *    wrote back its dirty data (writeback_inode(ci, true)): data stored
 *    before the call moves the times before it, never over the times it
 *    sets; a later store moves them again, as write(2) after utimensat(2)
 *    does.  An inode that is not cached is set on disk by path with
 *    c->ns_lock written, so it cannot become cached meanwhile.
 *  - The change time becomes now, whatever is asked; the creation time
 *    never changes.
 *  - Directory copies are brought up to date with c->ns_lock written
 *    (they are index rewrites) and by inode number, holding no reference
 *    to a cached inode, so an unlink never waits for them; whatever the
 *    record number holds at that moment is what its entries get (from
 *    disk, so they cannot be wrong, only late).  Failures are logged,
 *    never returned: the copies are a convenience Windows also lets lag.
 */
#ifndef NTFSD_CACHE_UTIMES_H
#define NTFSD_CACHE_UTIMES_H

#include <stdbool.h>
#include <stdint.h>

#include "aops.h"

struct cache;
struct cache_inode;

/* -EROFS, -EPERM (a system file), or the file system's error. */
int cache_set_times_inode(struct cache_inode *ci, const struct cache_times *t);
/* By path; -EAGAIN when the inode is cached (the caller takes it and uses
 * cache_set_times_inode); *ino gets the inode number. */
int cache_set_times_path(struct cache *c, const char *path, const struct cache_times *t,
			 uint64_t *ino);
/* The cached inode at path, with a reference (cache_inode_put), or NULL
 * when it is not cached or the lookup fails. */
struct cache_inode *cache_find_cached(struct cache *c, const char *path);

/* Take ci's dircopy_dirty flag: true when its entries need an update. */
bool cache_take_dir_copies(struct cache_inode *ci);
void cache_sync_dir_copies(struct cache *c, uint64_t ino);

#endif
