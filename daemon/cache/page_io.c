/*
 * page_io.c — see page_io.h.
 */
#include "page_io.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cache.h"
#include "dirty.h"
#include "error.h"
#include "log.h"
#include "page.h"

#define ERRSEQ_SEEN 1u

/* ---- errseq ---- */

void errseq_set(struct cache_inode *ci, int err)
{
	uint32_t old = atomic_load(&ci->wb_err), next;

	atomic_store(&ci->wb_errno, err);
	do {
		next = ((old >> 1) + 1) << 1;   /* a new error nobody has seen */
		if (!next)
			next = 2;
	} while (!atomic_compare_exchange_weak(&ci->wb_err, &old, next));
}

uint32_t errseq_sample(struct cache_inode *ci)
{
	uint32_t cur = atomic_load(&ci->wb_err);

	/* an error no handle has seen yet is reported to this one too */
	return (cur & ERRSEQ_SEEN) ? cur : 0;
}

int errseq_check_and_advance(struct cache_inode *ci, uint32_t *since)
{
	uint32_t cur = atomic_load(&ci->wb_err);

	if (cur == *since || !cur)
		return 0;
	while (!(cur & ERRSEQ_SEEN) &&
	       !atomic_compare_exchange_weak(&ci->wb_err, &cur, cur | ERRSEQ_SEEN))
		;
	*since = cur | ERRSEQ_SEEN;
	return -atomic_load(&ci->wb_errno);
}

/* ---- fault injection ---- */

static _Atomic unsigned long alloc_calls;
static unsigned long alloc_fail_every = (unsigned long)-1;

void writeback_init_faults(void)
{
	const char *v = getenv("NTFSD_FAULT_WRITEPAGE_ENOMEM");

	if (v && atol(v) > 0) {
		alloc_fail_every = (unsigned long)atol(v);
		log_warning("fault injection: every %lu-th writepage allocation fails",
			    alloc_fail_every);
	}
}

bool wb_inject_enomem(void)
{
	return (atomic_fetch_add(&alloc_calls, 1) + 1) % alloc_fail_every == 0;
}

void *wb_alloc(size_t n)
{
	return wb_inject_enomem() ? NULL : malloc(n);
}

/* ---- the end of a page's I/O ---- */

void cache_page_failed(struct cache_inode *ci, uint64_t index, int err)
{
	struct shm_page *p = cache_page(ci, index);

	page_set_bits(p, PG_error);
	errseq_set(ci, -err);
	atomic_fetch_add(&ci->cache->wb_errors, 1);
	log_error("writeback of page %llu of MFT record %llu failed: %s",
		  (unsigned long long)index, (unsigned long long)ci->mft_no, ntfs_last_error());
}

void cache_redirty_page_locked(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	cache_assert_page_locked(ci, index);
	set_page_dirty(cache_dirty_for(ci, index), index, bufs);
	atomic_fetch_add(&ci->wb_enomem, 1);
}

/* Did writing buffers `bufs` of page index write all of it below i_size? */
static bool wb_whole_page(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	uint32_t nbuf = ci->buffers_per_page, bsize = ci->buffer_size, b;
	uint64_t pos = index << NTFSD_PAGE_SHIFT;

	for (b = 0; b < nbuf; b++)
		if (!(bufs & (1u << b)) && pos + (uint64_t)b * bsize < ci->i_size)
			return false;
	return true;
}

void cache_end_page_io(struct cache_inode *ci, uint64_t index, uint32_t bufs, int err)
{
	struct cache *c = ci->cache;
	struct shm_page *p = cache_page(ci, index);

	if (err == -ENOMEM) {
		cache_lock_page(ci, index);
		cache_redirty_page_locked(ci, index, bufs);
		cache_unlock_page(ci, index);
	} else if (err) {
		cache_page_failed(ci, index, err);
	} else {
		/* A failed page is clean with bytes the disk may not hold;
		 * only a write of all of it puts them all there, so a write of
		 * some of its buffers leaves PG_error (libntfsc must not take
		 * the zeroes it caches for zeroes on the disk). */
		if (wb_whole_page(ci, index, bufs))
			page_clear_bits(p, PG_error);
		atomic_fetch_add(&c->pages_written, 1);
	}
	atomic_fetch_sub(&c->header->counters.writeback_pages, 1);
	cache_end_page_writeback(ci, index);
}
