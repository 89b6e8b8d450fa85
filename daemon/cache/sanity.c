/*
 * sanity.c — see sanity.h.
 *
 * Invariants: a check reads each field under the lock that protects its
 * changes (size_lock: i_size, trim_pending; the file system's checks take
 * its own), or reads a field that only moves within bounds the check
 * states (the page counts against the segment).
 */
#include "sanity.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"
#include "error.h"
#include "log.h"

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

void cache_insane_at(const struct cache_inode *ci, const char *file, int line,
		     const char *check, const char *detail)
{
	log_error("sanity: %s:%d: MFT record %llu: %s does not hold (i_size %llu, %s%spages: "
		  "%llu in the segment, %llu used, %llu cached; refs %u, openers %u)",
		  short_file(file), line, (unsigned long long)ci->mft_no, check,
		  (unsigned long long)ci->i_size, detail ? detail : "", detail ? "; " : "",
		  (unsigned long long)cache_nr_pages(ci), (unsigned long long)cache_used_pages(ci),
		  (unsigned long long)atomic_load(&ci->cached_pages), ci->refs, ci->openers);
	abort();
}

#define SANE(cond) do { if (!(cond)) cache_insane_at(ci, file, line, #cond, NULL); } while (0)

void cache_inode_sanity_settled_at(struct cache_inode *ci, const char *file, int line)
{
	bool take = !lockdep_held(&ci->size_lock);

	if (take)
		cache_mutex_lock_at(&ci->size_lock, file, line);
	/* the segment holds the file: growth past it is EFBIG */
	SANE(ci->i_size <= cache_nr_pages(ci) << NTFSD_PAGE_SHIFT);
	SANE(atomic_load(&ci->cached_pages) <= cache_nr_pages(ci));
	SANE(cache_used_pages(ci) >= cache_pages_for(ci->i_size));
	if (ci->cache->aops->sanity_settled)
		ci->cache->aops->sanity_settled(ci, file, line);
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
