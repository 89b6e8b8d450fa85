/*
 * utimes.c — see utimes.h.
 */
#include "utimes.h"

#include <errno.h>

#include "cache_int.h"
#include "error.h"
#include "log.h"

struct cache_inode *cache_find_cached(struct cache *c, const char *path)
{
	struct cache_inode *ci = NULL;
	uint64_t ino;

	cache_rwlock_rdlock(&c->ns_lock);
	if (!c->aops->lookup(c, path, &ino))
		ci = cache_inode_find(c, ino);
	ntfs_clear_error();
	cache_rwlock_unlock(&c->ns_lock);
	return ci;
}

int cache_set_times_inode(struct cache_inode *ci, const struct cache_times *t)
{
	int err;

	if (ci->cache->read_only)
		return ntfs_fail(EROFS, "MFT record %llu: the volume is served read-only",
				 (unsigned long long)ci->mft_no);
	if (ci->system_file)
		return ntfs_fail(EPERM, "MFT record %llu: NTFS metadata keeps its own times",
				 (unsigned long long)ci->mft_no);
	cache_mutex_lock(&ci->wb_lock);
	/* what was pending was written by the caller's write-back; a change
	 * stored since moves the times again at the next write_inode */
	err = ci->cache->aops->set_times(ci, t);
	if (!err)
		atomic_store(&ci->dircopy_dirty, true);
	cache_mutex_unlock(&ci->wb_lock);
	return err;
}

int cache_set_times_path(struct cache *c, const char *path, const struct cache_times *t,
			 uint64_t *ino)
{
	struct cache_inode *ci;
	int err;

	if (c->read_only)
		return ntfs_fail(EROFS, "%s: the volume is served read-only", path);
	cache_rwlock_wrlock(&c->ns_lock);
	err = c->aops->lookup(c, path, ino);
	if (!err && (ci = cache_inode_find(c, *ino))) {
		cache_inode_put(ci);
		err = -EAGAIN;
	} else if (!err) {
		err = c->aops->set_times_path(c, path, t);
	}
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}

bool cache_take_dir_copies(struct cache_inode *ci)
{
	return atomic_exchange(&ci->dircopy_dirty, false);
}

void cache_sync_dir_copies(struct cache *c, uint64_t ino)
{
	int err;

	if (c->read_only || !c->aops->sync_dir_copies)
		return;
	cache_rwlock_wrlock(&c->ns_lock);
	err = c->aops->sync_dir_copies(c, ino);
	if (err && err != -ENOENT)
		log_warning("MFT record %llu: the copies of its sizes and times in its directory "
			    "entries could not be updated: %s", (unsigned long long)ino,
			    ntfs_last_error());
	ntfs_clear_error();
	cache_rwlock_unlock(&c->ns_lock);
}
