/*
 * ntfs_ci.h — NTFS's cache inode: the generic struct cache_inode with what
 * only NTFS knows about the file around it (its MFT record, its unnamed
 * $DATA attribute and the two locks over them), and the steps the NTFS
 * address-space operations share.  Private to daemon/aops/.
 *
 * Invariants:
 *  - vfs is the cache's view; everything else here is seen only by
 *    daemon/aops/.  One ntfs_cache_inode per cached MFT record.
 *  - init_lock (rank LOCK_INIT) orders initialized_size, disk_init,
 *    sizes_dirty and the writes crossing initialized_size; rl_lock (rank
 *    LOCK_RL, writers first) guards data->rl, ->resident and
 *    ->allocated_size: read to map or read, written only inside init_lock.
 *  - The record's initialized_size is vfs.disk_init, never the in-memory
 *    value, which may cover data not yet flushed.
 */
#ifndef NTFSD_AOPS_NTFS_CI_H
#define NTFSD_AOPS_NTFS_CI_H

#include <stddef.h>

#include "cache.h"
#include "lockdep.h"

struct ntfs_inode;
struct ntfs_attr;
struct ntfs_runlist;
struct ntfs_volume;

struct ntfs_cache_inode {
	struct cache_inode vfs;
	struct ntfs_inode *ni;
	struct ntfs_attr *data;           /* unnamed $DATA */
	struct ntfs_attr *std;            /* $STANDARD_INFORMATION (NULL: none) */
	_Atomic uint64_t std_times[4];    /* its creation, data change, MFT change and
					   * access times as on disk (NTFS time): written
					   * under wb_lock, read by stat unlocked */
	struct cache_mutex init_lock;     /* writes crossing initialized_size, in order */
	struct cache_rwlock rl_lock;      /* data->rl, ->resident, ->allocated_size */
};

static inline struct ntfs_cache_inode *NTFS_CI(struct cache_inode *ci)
{
	return (struct ntfs_cache_inode *)((char *)ci - offsetof(struct ntfs_cache_inode, vfs));
}

static inline struct ntfs_volume *NTFS_VOL(const struct cache *c)
{
	return c->fs;
}

/* Make *rl the attribute's runlist, data_size the given value (UINT64_MAX:
 * unchanged), initialized_size at most init_cap (UINT64_MAX: unchanged),
 * and write them into the MFT record, under init_lock and rl_lock (the
 * sizes are read there, so a concurrent raise by writeback is kept).  On
 * success *rl is the old runlist (the caller frees it); on failure the
 * attribute is as it was and *rl still the caller's. */
int ntfs_ci_commit_runlist(struct ntfs_cache_inode *nci, struct ntfs_runlist *rl,
			   uint64_t data_size, uint64_t init_cap);
/* Store compression unit `unit` of a compressed file uncompressed (fresh
 * clusters, record rewritten, old clusters freed; size_lock held). */
int ntfs_ci_store_unit_uncompressed(struct ntfs_cache_inode *nci, uint64_t unit);
/* A resident file about to reach new_size: its value grows in the record,
 * or moves out to clusters when it no longer fits (size_lock held); the
 * caller then grows it as a non-resident file.  See resident.c. */
int ntfs_ci_resident_grow(struct ntfs_cache_inode *nci, uint64_t new_size);
/* Change a resident value's length within its record (-E2BIG: no room). */
int ntfs_ci_resident_resize(struct ntfs_cache_inode *nci, uint64_t size);
/* Non-resident: the runlist ends at size and the record says so, then the
 * clusters past it are freed (size_lock held). */
int ntfs_ci_truncate_nonresident(struct ntfs_cache_inode *nci, uint64_t size);

/* The address-space operations, by module. */
int ntfs_aops_check_writable(struct cache_inode *ci);
int ntfs_aops_prepare_write(struct cache_inode *ci, uint64_t pos, uint64_t end,
			    uint64_t new_size);
int ntfs_aops_truncate_blocks(struct cache_inode *ci, uint64_t size);
int ntfs_aops_trim_allocation(struct cache_inode *ci);
void *ntfs_aops_writepages_begin(struct cache_inode *ci);
int ntfs_aops_writepage(struct cache_inode *ci, uint64_t index, uint32_t bufs, void *batch);
int ntfs_aops_writepages_flush(struct cache_inode *ci, void *batch);
void ntfs_aops_writepages_end(struct cache_inode *ci, void *batch);
int ntfs_aops_write_inode(struct cache_inode *ci);
int ntfs_aops_stat_path(struct cache *c, const char *path, struct cache_stat *st);
void ntfs_aops_stat_inode(struct cache_inode *ci, struct cache_stat *st);
int ntfs_aops_readdir(struct cache *c, const char *path,
		      int (*cb)(void *ctx, const struct cache_dirent *e), void *ctx);
void ntfs_aops_volume_info(struct cache *c, struct cache_volume_info *vi);
int ntfs_aops_create(struct cache *c, const char *path, bool is_dir, uint64_t *ino);
int ntfs_aops_unlink(struct cache *c, const char *path, bool is_dir);
int ntfs_aops_unlink_open(struct cache *c, const char *path, bool *kept);
int ntfs_aops_free_orphan(struct cache *c, uint64_t ino);
int ntfs_aops_rename(struct cache *c, const char *from, const char *to, bool keep_target,
		     bool *target_kept, uint64_t *ino);
int ntfs_aops_set_times(struct cache_inode *ci, const struct cache_times *t);
/* Write n of $STANDARD_INFORMATION's four times (creation, data change,
 * MFT change, access: NTFS time) from index first, and std_times with
 * them once the record is written (nci->std set; wb_lock held). */
int ntfs_ci_write_times(struct ntfs_cache_inode *nci, unsigned first, const uint64_t *t,
			unsigned n);
int ntfs_aops_set_times_path(struct cache *c, const char *path, const struct cache_times *t);
int ntfs_aops_sync_dir_copies(struct cache *c, uint64_t ino);

/* What holds whenever init_lock is held (asserted): sizes and runlist
 * agree.  Debug and sanitizer builds only; aborts with the state logged. */
#if NTFSD_LOCKDEP
void ntfs_ci_sanity_at(struct ntfs_cache_inode *nci, const char *file, int line);
void ntfs_aops_sanity_settled(struct cache_inode *ci, const char *file, int line);
#define ntfs_ci_sanity(nci) ntfs_ci_sanity_at((nci), __FILE__, __LINE__)
#else
#define ntfs_ci_sanity(nci) ((void)(nci))
#endif

#endif
