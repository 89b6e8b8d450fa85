/*
 * sanity.c — see sanity.h.
 *
 * Invariants: a check reads each field under the lock that protects its
 * changes (init_lock: initialized_size, disk_init, the runlist and the
 * allocated size; size_lock: i_size, the data size, trim_pending), or
 * reads a field that only moves within bounds the check states (i_size
 * against the segment); checks that would need a lock the caller cannot
 * take (writeback may not take size_lock: a truncate holding it waits for
 * writeback) are left to the settled check.
 */
#include "sanity.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "cache_int.h"
#include "error.h"
#include "log.h"
#include "runlist.h"
#include "volume.h"

/* Where a file name starts inside the tree: "daemon/cache/x.c". */
static const char *short_file(const char *file)
{
	const char *p = strstr(file, "daemon/");

	return p ? p : file;
}

int cache_bug_at(const char *file, int line, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	log_error("BUG at %s:%d: %s", short_file(file), line, what);
#if NTFSD_LOCKDEP
	abort();
#endif
	return ntfs_fail(EIO, "%s (a bug in ntfsd, logged by the daemon)", what);
}

#if NTFSD_LOCKDEP

__attribute__((noreturn))
static void insane(const struct cache_inode *ci, const char *file, int line, const char *check)
{
	const struct ntfs_attr *na = ci->data;

	log_error("sanity: %s:%d: MFT record %llu: %s does not hold (i_size %llu, %s, data "
		  "size %llu, initialized %llu, allocated %llu, disk_init %llu, runlist end vcn "
		  "%lld, pages: %llu in the segment, %llu used, %llu cached; refs %u, openers %u)",
		  short_file(file), line, (unsigned long long)ci->mft_no, check,
		  (unsigned long long)ci->i_size, na->resident ? "resident" : "non-resident",
		  (unsigned long long)na->data_size, (unsigned long long)na->initialized_size,
		  (unsigned long long)na->allocated_size,
		  (unsigned long long)atomic_load(&ci->disk_init),
		  (long long)ntfs_rl_end_vcn(&na->rl), (unsigned long long)ci->nr_pages,
		  (unsigned long long)cache_used_pages(ci),
		  (unsigned long long)atomic_load(&ci->cached_pages), ci->refs, ci->openers);
	abort();
}

#define SANE(cond) do { if (!(cond)) insane(ci, file, line, #cond); } while (0)

void cache_inode_sanity_at(struct cache_inode *ci, const char *file, int line)
{
	const struct ntfs_attr *na = ci->data;
	uint64_t disk_init = atomic_load(&ci->disk_init);
	uint32_t bits = ci->cache->vol->geo.cluster_size_bits;

	lockdep_assert_held(&ci->init_lock, LOCK_INIT, file, line);
	/* the segment holds the file: growth past it is EFBIG */
	SANE(ci->i_size <= ci->nr_pages << NTFSD_PAGE_SHIFT);
	SANE(atomic_load(&ci->cached_pages) <= ci->nr_pages);
	if (na->resident) {
		SANE(na->initialized_size == na->data_size);
		SANE(disk_init == na->data_size);
		SANE(na->rl.count == 0);
		return;
	}
	/* the record's initialized_size never passes memory's; data_size
	 * may run ahead of initialized_size only between size changes */
	SANE(disk_init <= na->initialized_size);
	SANE(disk_init <= na->data_size);
	SANE(na->initialized_size <= na->allocated_size);
	SANE(na->data_size <= na->allocated_size);
	SANE(!(na->allocated_size & ((1ull << bits) - 1)));
	SANE((uint64_t)ntfs_rl_end_vcn(&na->rl) << bits == na->allocated_size);
}

void cache_inode_sanity_settled_at(struct cache_inode *ci, const char *file, int line)
{
	bool take = !lockdep_held(&ci->size_lock);
	const struct ntfs_attr *na = ci->data;

	if (take)
		cache_mutex_lock_at(&ci->size_lock, file, line);
	cache_mutex_lock_at(&ci->init_lock, file, line);
	cache_inode_sanity_at(ci, file, line);
	SANE(ci->i_size == na->data_size);
	SANE(na->initialized_size <= na->data_size);
	SANE(cache_used_pages(ci) >= cache_pages_for(ci->i_size));
	SANE(!ci->trim_pending || !na->resident);     /* room is never left resident */
	cache_mutex_unlock_at(&ci->init_lock, file, line);
	if (take)
		cache_mutex_unlock_at(&ci->size_lock, file, line);
}

void cache_inode_sanity_refs_at(struct cache_inode *ci, const char *file, int line)
{
	lockdep_assert_held(&ci->cache->lock, LOCK_CACHE, file, line);
	SANE(ci->refs < UINT_MAX / 2 && ci->openers < UINT_MAX / 2);  /* neither fell below 0 */
	SANE(ci->refs >= ci->openers);
	SANE(ci->slot < NTFSD_MAX_INODES && ci->cache->slot_used[ci->slot]);
}

#endif
