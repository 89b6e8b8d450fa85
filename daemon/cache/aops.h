/*
 * aops.h — the file system under the page cache: the one table through
 * which the generic cache (daemon/cache/) and write-back
 * (daemon/writeback/) reach the on-disk format.  NTFS fills it in
 * daemon/aops/ (ntfs_aops.h); the cache's unit tests fill it with a
 * file system in RAM (tests/cache/ramfs.c).
 *
 * Named after the kernel's struct address_space_operations, it carries the
 * superblock and inode verbs the cache needs as well (lookup, getattr,
 * readdir, sync_fs), so there is one seam, not three.
 *
 * Invariants every implementation keeps (the generic code relies on them):
 *  - A file system inode embeds its struct cache_inode (alloc_inode makes
 *    both; destroy_inode frees both) and sets, before alloc_inode returns:
 *    i_size, disk_init, generation, system_file.  Everything that maps
 *    bytes to the disk is the file system's, private to it.
 *  - prepare_write and truncate_blocks run under size_lock; they are the
 *    only places blocks are allocated or freed, so writepage never
 *    allocates; every refusal (ENOSPC, EFBIG, EOPNOTSUPP...) happens there,
 *    with the file as it was.
 *  - writepage is entered with the page locked and its dirty buffers taken
 *    (bufs, never 0; wholly-past-i_size buffers already dropped); it sets
 *    writeback before I/O and returns with the page unlocked; every page it
 *    took ends with cache_end_page_io() (or is re-dirtied) by the time
 *    writepages_flush returns.
 *  - sizes_dirty and trim_pending of the cache inode are set by the file
 *    system only, read by the generic code to decide what needs a pass.
 *  - Errors are a negative errno with a message in the error channel
 *    (util/error.h).
 */
#ifndef NTFSD_CACHE_AOPS_H
#define NTFSD_CACHE_AOPS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct cache;
struct cache_inode;
struct cache_stat;
struct cache_dirent;
struct cache_volume_info;

/* The sizes of a cached file as clients see them now (the file system's
 * on-disk copy may lag them until write-back writes it). */
struct cache_attr {
	uint64_t i_size, initialized_size, allocated_size;
	bool resident;                  /* the data lives inside the inode's record */
	/* filled by the cache, not the file system: a change of data or size
	 * whose times write_inode has not written yet, and when it was */
	bool times_pending;
	uint64_t mtime_ns;
};

/* utimensat(2)'s request: each time set to the value given or left. */
struct cache_times {
	bool set_atime, set_mtime;
	int64_t atime_ns, mtime_ns;     /* since 1970, CLOCK_REALTIME */
};

/* What the cache needs to know of the volume to lay out segments. */
struct cache_geometry {
	uint32_t sector_size;           /* the buffer size of a page */
	uint32_t cluster_size;          /* allocation unit (published to clients) */
	uint64_t volume_bytes;          /* bounds a segment's room to grow */
	uint64_t serial;                /* stamps segments, checked on adoption */
	uint64_t room_pages;            /* room to grow a segment gets at open beyond
					 * the file (0: the volume's size, at least
					 * 1 GiB, at most 64 GiB); past it the
					 * segment grows in place */
};

struct address_space_operations {
	const char *name;

	/* ---- inodes ---- */
	/* The inode number of path (-ENOENT, -ENOTDIR, ...). */
	int (*lookup)(struct cache *c, const char *path, uint64_t *ino);
	/* Read inode ino into a new cache inode (no segments yet):
	 * -EISDIR, -ENOENT, -EACCES (encrypted) and the like. */
	int (*alloc_inode)(struct cache *c, uint64_t ino, struct cache_inode **out);
	void (*destroy_inode)(struct cache_inode *ci);
	/* The sizes now (takes the file system's own inode locks, so never
	 * with c->lock held). */
	void (*getattr)(struct cache_inode *ci, struct cache_attr *a);
	/* Adoption after a crash: reconcile the i_size a dead daemon left
	 * (*i_size; its segment holds seg_bytes) with the inode on disk,
	 * which may be a step ahead or behind; *i_size becomes the size to
	 * serve (at most seg_bytes) and the file system's sizes a valid state
	 * around it. */
	void (*adopt_sizes)(struct cache_inode *ci, uint64_t seg_bytes, uint64_t *i_size);

	/* ---- data ---- */
	/* Refusals beyond the generic ones (read-only volume, system file):
	 * encrypted and the like. */
	int (*check_writable)(struct cache_inode *ci);
	/* Read [pos, pos + len) of the file into buf: the bytes read (fewer
	 * past the end: the caller zeroes the rest), or -errno.  Holes and
	 * bytes past initialized_size read as zeroes. */
	ssize_t (*read)(struct cache_inode *ci, uint64_t pos, uint64_t len, uint8_t *buf);
	/* Back bytes [pos, end) with blocks, and the range from i_size to
	 * new_size when it grows (size_lock held).  On success with
	 * new_size > i_size it raises i_size to new_size, together with its
	 * own copy of the size and under the lock its write_inode takes, so
	 * a size write in between never undoes the raise. */
	int (*prepare_write)(struct cache_inode *ci, uint64_t pos, uint64_t end,
			     uint64_t new_size);
	/* Set the file's size to size (size_lock held; a shrink only after
	 * the pages past size are fenced from write-back): blocks past it
	 * freed, or the new range a hole, and i_size moved as prepare_write
	 * moves it.  The caller then drops the pages past it. */
	int (*truncate_blocks)(struct cache_inode *ci, uint64_t size);
	/* Give back blocks allocated past i_size as room to grow (size_lock
	 * held, trim_pending set; the caller clears it). */
	int (*trim_allocation)(struct cache_inode *ci);

	/* ---- write-back ---- */
	/* A batch for one pass over an inode (NULL: out of memory, the pass
	 * does not start and the pages stay dirty). */
	void *(*writepages_begin)(struct cache_inode *ci);
	/* Write buffers bufs of page index, or queue them in the batch.  Page
	 * locked, its dirty bits taken; returns with it unlocked. */
	int (*writepage)(struct cache_inode *ci, uint64_t index, uint32_t bufs, void *batch);
	/* Submit what the batch holds and end those pages' writeback. */
	int (*writepages_flush)(struct cache_inode *ci, void *batch);
	void (*writepages_end)(struct cache_inode *ci, void *batch);
	/* Write the inode's sizes to disk once the data they cover is durable,
	 * and its times when times_dirty (mtime_ns); clears both flags
	 * (-ENOMEM: try again later). */
	int (*write_inode)(struct cache_inode *ci);
	/* Make every completed write durable (the device flush). */
	int (*sync_fs)(struct cache *c);

	/* ---- by path, for the server ---- */
	/* stat_path answers from the inode on disk (the cache lays a cached
	 * file's sizes over it and keeps these as the on-disk ones). */
	int (*stat_path)(struct cache *c, const char *path, struct cache_stat *st);
	void (*stat_inode)(struct cache_inode *ci, struct cache_stat *st);
	int (*readdir)(struct cache *c, const char *path,
		       int (*cb)(void *ctx, const struct cache_dirent *e), void *ctx);
	void (*volume_info)(struct cache *c, struct cache_volume_info *vi);

	/* ---- namespace changes (c->ns_lock written) ---- */
	/* Create the file or directory at path: its parent must exist
	 * (-ENOENT, -ENOTDIR), the name be new (-EEXIST, also for a name
	 * that differs by case only where the file system folds case) and
	 * allowed (-EINVAL, -ENAMETOOLONG), -ENOSPC; *ino its inode. */
	int (*create)(struct cache *c, const char *path, bool is_dir, uint64_t *ino);
	/* Remove the name at path (is_dir: rmdir, a directory that must be
	 * empty, -ENOTEMPTY; else a file, -EISDIR for a directory), and the
	 * inode with its blocks once no name is left.  The cache has
	 * forgotten the inode first; nobody has it open. */
	int (*unlink)(struct cache *c, const char *path, bool is_dir);
	/* unlink(2) of a file clients have open: the name goes as unlink's
	 * does; when it was the last, the inode stays, nameless, with its
	 * blocks (*kept true), for the open handles, until free_orphan frees
	 * it after their last close.  NULL: such an unlink is -EBUSY. */
	int (*unlink_open)(struct cache *c, const char *path, bool *kept);
	int (*free_orphan)(struct cache *c, uint64_t ino);
	/* rename(2): move the name at from to to (another directory too),
	 * replacing a target of the same kind (a file, or an empty
	 * directory: -ENOTEMPTY, -EISDIR, -ENOTDIR otherwise); a directory
	 * into its own subtree is -EINVAL.  Open handles of the file keep
	 * working.  A target clients have open is removed as unlink_open
	 * removes it (keep_target: *target_kept true when its inode stayed,
	 * nameless, for free_orphan).  *ino: the renamed inode.  May be NULL
	 * (-EOPNOTSUPP). */
	int (*rename)(struct cache *c, const char *from, const char *to, bool keep_target,
		      bool *target_kept, uint64_t *ino);

	/* ---- times (cache/utimes.h) ---- */
	/* Set the times t asks for, and the change time to now: of the cached
	 * inode ci (wb_lock held), or by path of an inode that is not cached
	 * (a directory too; ns_lock written).  Either clears times_dirty's
	 * pending change only through the caller. */
	int (*set_times)(struct cache_inode *ci, const struct cache_times *t);
	int (*set_times_path)(struct cache *c, const char *path, const struct cache_times *t);
	/* Bring the copies of inode ino's sizes and times that its parents'
	 * directory entries hold to what its record on disk says now
	 * (ns_lock written).  May be NULL. */
	int (*sync_dir_copies)(struct cache *c, uint64_t ino);

	/* ---- debug builds (may be NULL) ---- */
	/* What holds between size changes, checked by
	 * cache_inode_sanity_settled() with size_lock held. */
	void (*sanity_settled)(struct cache_inode *ci, const char *file, int line);
};

#endif
