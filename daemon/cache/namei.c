/*
 * namei.c — see namei.h: the server's questions by path, answered by the
 * file system (aops.h) with a cached file's sizes taken from the cache.
 */
#include "namei.h"

#include <string.h>

#include "cache_int.h"
#include "error.h"

/* A cached file's sizes are what clients see now. */
static void stat_cached_sizes(struct cache *c, struct cache_stat *st)
{
	struct cache_attr a;

	if (st->directory || !cache_getattr(c, st->mft_no, &a))
		return;
	st->size = a.i_size;
	st->initialized_size = a.initialized_size;
	st->allocated_size = a.allocated_size;
	st->resident = a.resident;
	if (a.times_pending && st->times_known)
		st->mtime_ns = st->ctime_ns = (int64_t)a.mtime_ns;
}

int cache_stat_path(struct cache *c, const char *path, struct cache_stat *st)
{
	int err;

	cache_rwlock_rdlock(&c->ns_lock);
	err = c->aops->stat_path(c, path, st);
	cache_rwlock_unlock(&c->ns_lock);

	if (err)
		return err;
	/* the file system answered from the inode on disk */
	st->ondisk_known = st->has_data && !st->directory;
	st->ondisk_size = st->size;
	st->ondisk_initialized_size = st->initialized_size;
	st->ondisk_allocated_size = st->allocated_size;
	stat_cached_sizes(c, st);
	return 0;
}

void cache_stat_inode(struct cache_inode *ci, struct cache_stat *st)
{
	ci->cache->aops->stat_inode(ci, st);
	stat_cached_sizes(ci->cache, st);
	st->ondisk_known = false;   /* the open inode's sizes are memory's */
}

int cache_readdir(struct cache *c, const char *path,
		  int (*cb)(void *ctx, const struct cache_dirent *e), void *ctx)
{
	int err;

	/* cb only builds a reply: it takes no lock of the cache */
	cache_rwlock_rdlock(&c->ns_lock);
	err = c->aops->readdir(c, path, cb, ctx);
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}

void cache_volume_info(struct cache *c, struct cache_volume_info *vi)
{
	c->aops->volume_info(c, vi);
}

int cache_flush_device(struct cache *c)
{
	return c->aops->sync_fs(c);
}

const char *cache_last_error(void)
{
	const char *m = ntfs_last_error();

	return strcmp(m, "no error recorded") ? m : NULL;
}

void cache_clear_error(void)
{
	ntfs_clear_error();
}
