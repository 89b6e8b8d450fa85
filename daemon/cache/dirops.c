/*
 * dirops.c — see dirops.h.
 */
#include "dirops.h"

#include <errno.h>
#include <time.h>

#include "cache_int.h"
#include "error.h"
#include "log.h"

static int refuse_read_only(const char *path)
{
	return ntfs_fail(EROFS, "%s: the volume is served read-only", path);
}

int cache_open_create(struct cache *c, const char *path, bool excl, struct cache_inode **out,
		      bool *created)
{
	uint64_t ino;
	int err;

	*created = false;
	if (c->read_only)
		return refuse_read_only(path);
	cache_rwlock_wrlock(&c->ns_lock);
	err = c->aops->lookup(c, path, &ino);
	if (!err && excl)
		err = ntfs_fail(EEXIST, "%s: exists (O_EXCL)", path);
	else if (err == -ENOENT) {
		ntfs_clear_error();
		err = c->aops->create(c, path, false, &ino);
		*created = !err;
	}
	if (!err)
		err = cache_open_locked(c, path, out);
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}

int cache_mkdir(struct cache *c, const char *path)
{
	uint64_t ino;
	int err;

	if (c->read_only)
		return refuse_read_only(path);
	cache_rwlock_wrlock(&c->ns_lock);
	err = c->aops->create(c, path, true, &ino);
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}

/* The cached inode ino, claimed for its removal (ns_lock written): a
 * reference, so it stays, and -EBUSY when someone else uses it (open_ok:
 * clients may have it open; *is_open says whether they do).  NULL in
 * *out when it is not cached. */
static int claim_inode(struct cache *c, const char *path, uint64_t ino, bool open_ok,
		       bool *is_open, struct cache_inode **out)
{
	struct cache_inode *ci;
	unsigned tries = 0;
	int err = 0;

	cache_mutex_lock(&c->lock);
	for (;;) {
		for (ci = c->inodes; ci && ci->mft_no != ino; ci = ci->next)
			;
		/* a write-back pass (or readahead) holds a reference for a
		 * moment: wait for it, up to 5 s; nothing can open the file
		 * meanwhile (ns_lock) */
		if (!ci || ci->openers || !ci->refs || ++tries > 500)
			break;
		cache_mutex_unlock(&c->lock);
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
		cache_mutex_lock(&c->lock);
	}
	*is_open = ci && ci->openers;
	if (ci && ci->openers && !open_ok)
		err = ntfs_fail(EBUSY, "%s: open (%u handle%s): an open file cannot be "
				"replaced by a rename (or, here, removed) yet", path, ci->openers,
				ci->openers == 1 ? "" : "s");
	else if (ci && ci->openers)
		ci->refs++;
	else if (ci && ci->refs)
		err = ntfs_fail(EBUSY, "%s: its write-back has been running for 5 s: try again",
				path);
	else if (ci)
		ci->refs++;
	cache_mutex_unlock(&c->lock);
	*out = err ? NULL : ci;
	return err;
}

/* Removal: the file system checks and removes; only once it has is the
 * cached inode (dirty pages and all) given up.  Its wb_lock is held
 * meanwhile, so no write-back pass runs under the removal and none can
 * start on it after: writeback_inode_locked() drops what an unlinked
 * inode has dirty. */
int cache_unlink(struct cache *c, const char *path, bool dir)
{
	struct cache_inode *ci = NULL;
	bool is_open = false, kept = false;
	uint64_t ino;
	int err;

	if (c->read_only)
		return refuse_read_only(path);
	cache_rwlock_wrlock(&c->ns_lock);
	err = c->aops->lookup(c, path, &ino);
	if (!err)
		err = claim_inode(c, path, ino, !dir && c->aops->unlink_open, &is_open, &ci);
	if (is_open) {
		/* its handles keep the inode: only the name goes now, the rest
		 * at the last close (cache_evict_orphan) */
		err = c->aops->unlink_open(c, path, &kept);
		if (!err && kept)
			atomic_store(&ci->orphan, true);
		cache_inode_put(ci);
		cache_rwlock_unlock(&c->ns_lock);
		return err;
	}
	if (ci)
		cache_mutex_lock(&ci->wb_lock);
	if (!err)
		err = c->aops->unlink(c, path, dir);
	if (ci) {
		if (!err)
			atomic_store(&ci->unlinked, true);
		cache_mutex_unlock(&ci->wb_lock);
		cache_inode_put(ci);    /* the last reference forgets an unlinked inode */
	}
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}

bool cache_evict_orphan(struct cache_inode *ci)
{
	struct cache *c = ci->cache;
	bool go;
	int err;

	if (!atomic_load(&ci->orphan))
		return false;
	cache_rwlock_wrlock(&c->ns_lock);
	cache_mutex_lock(&c->lock);
	go = atomic_load(&ci->orphan) && !ci->openers;
	cache_mutex_unlock(&c->lock);
	if (go) {
		/* no write-back pass runs under the free, and none writes it
		 * after: an unlinked inode's dirt is dropped */
		cache_mutex_lock(&ci->wb_lock);
		atomic_store(&ci->unlinked, true);
		atomic_store(&ci->orphan, false);
		err = c->aops->free_orphan(c, ci->mft_no);
		cache_mutex_unlock(&ci->wb_lock);
		if (err)
			log_error("MFT record %llu: unlinked while open, it could not be freed at "
				  "its last close (its record and clusters stay in use, nameless): "
				  "%s", (unsigned long long)ci->mft_no, ntfs_last_error());
		else
			log_debug("MFT record %llu: unlinked while open, freed after its last close",
				  (unsigned long long)ci->mft_no);
		ntfs_clear_error();
	}
	cache_rwlock_unlock(&c->ns_lock);
	return go;
}

int cache_rename(struct cache *c, const char *from, const char *to)
{
	struct cache_inode *ci = NULL;
	bool is_open = false, kept = false;
	uint64_t src, dst, ino;
	int err;

	if (c->read_only)
		return refuse_read_only(from);
	if (!c->aops->rename)
		return ntfs_fail(EOPNOTSUPP, "%s: this file system cannot rename", from);
	cache_rwlock_wrlock(&c->ns_lock);
	err = c->aops->lookup(c, from, &src);
	/* a target that is another file goes: claimed as an unlink claims it */
	if (!err && !c->aops->lookup(c, to, &dst) && dst != src)
		err = claim_inode(c, to, dst, true, &is_open, &ci);
	else
		ntfs_clear_error();
	if (ci && !is_open)
		cache_mutex_lock(&ci->wb_lock);
	if (!err)
		err = c->aops->rename(c, from, to, is_open, &kept, &ino);
	if (ci && is_open) {
		/* an open target keeps its inode for its handles: an orphan,
		 * freed after their last close (cache_evict_orphan) */
		if (kept)
			atomic_store(&ci->orphan, true);
		cache_inode_put(ci);
	} else if (ci) {
		/* the target's name is gone if the rename happened, or if it
		 * failed after the target's removal: its inode is no longer
		 * reachable either way when the lookup fails */
		if (!err || c->aops->lookup(c, to, &dst) || dst != ci->mft_no)
			atomic_store(&ci->unlinked, true);
		ntfs_clear_error();
		cache_mutex_unlock(&ci->wb_lock);
		cache_inode_put(ci);
	}
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}
