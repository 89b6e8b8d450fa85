/*
 * readpage.c — filling pages of the data segment from the volume.
 *
 * Invariants: a page is filled and marked uptodate only with its page lock
 * held; every byte of an uptodate page is the file's byte or, past i_size,
 * zero; a page is counted in the cache (and room made by reclaim) before
 * it is filled; the file system (aops->read) returns zeroes for holes and
 * for the range past initialized_size without reading the disk, and
 * decompresses compression units.  A read error leaves the page not uptodate and is returned.
 */
#include "cache_int.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "error.h"
#include "page.h"
#include "sanity.h"

int readpage(struct cache_inode *ci, uint64_t index)
{
	struct cache *c = ci->cache;
	struct shm_page *p;
	uint8_t *buf;
	ssize_t n;
	bool fresh;

	if (index >= cache_nr_pages(ci))   /* every caller stays within the segment */
		return cache_bug("MFT record %llu: readpage of page %llu, past its %llu pages",
				 (unsigned long long)ci->mft_no, (unsigned long long)index,
				 (unsigned long long)cache_nr_pages(ci));
	p = cache_page(ci, index);
	atomic_store_explicit(&cache_page_priv(ci, index)->referenced, 1, memory_order_relaxed);
	if (page_test(p, PG_uptodate))
		return 0;
	cache_lock_page(ci, index);
	if (page_test(p, PG_uptodate)) {
		cache_unlock_page(ci, index);
		return 0;
	}
	fresh = cache_account_page(ci, index);
	buf = cache_data(ci, index << NTFSD_PAGE_SHIFT, NTFSD_PAGE_SIZE);
	cache_assert_may_sleep();
	n = c->aops->read(ci, index << NTFSD_PAGE_SHIFT, NTFSD_PAGE_SIZE, buf);
	if (n < 0) {
		if (fresh)
			cache_unaccount_page(ci, index);
		cache_unlock_page(ci, index);
		return (int)n;
	}
	memset(buf + n, 0, NTFSD_PAGE_SIZE - (size_t)n);
	atomic_store_explicit(&p->buf_uptodate,
			      page_all_buffers(ci->buffers_per_page), memory_order_release);
	page_set_bits(p, PG_buffers | PG_uptodate);
	atomic_fetch_add(&c->header->counters.pages_read, 1);
	cache_unlock_page(ci, index);
	return 0;
}

#define READ_BATCH_PAGES 256u   /* 1 MiB per disk read */
#ifdef MADV_POPULATE_WRITE
#define CACHE_MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define CACHE_MADV_POPULATE_WRITE 23  /* Linux 5.14 */
#endif

/* Fill pages [first, first + n), all locked by us and not uptodate, with
 * one read of the file; unlock them. */
static int readpages_locked(struct cache_inode *ci, uint64_t first, uint64_t n)
{
	struct cache *c = ci->cache;
	uint64_t pos = first << NTFSD_PAGE_SHIFT, len = n << NTFSD_PAGE_SHIFT, i;
	uint8_t *buf = cache_data(ci, pos, len);
	ssize_t got;

	bool fresh[READ_BATCH_PAGES];

	for (i = 0; i < n; i++)
		fresh[i] = cache_account_page(ci, first + i);
	/* Allocate the segment's pages in one call instead of one write fault
	 * per page during the read (a hint: on failure the faults do it). */
	madvise(buf, len, CACHE_MADV_POPULATE_WRITE);
	cache_assert_may_sleep();
	got = c->aops->read(ci, pos, len, buf);
	if (got >= 0)
		memset(buf + got, 0, len - (uint64_t)got);
	for (i = first; i < first + n; i++) {
		struct shm_page *p = cache_page(ci, i);

		cache_assert_page_locked(ci, i);
		if (got >= 0) {
			atomic_store_explicit(&p->buf_uptodate,
					      page_all_buffers(ci->buffers_per_page),
					      memory_order_release);
			page_set_bits(p, PG_buffers | PG_uptodate);
			atomic_fetch_add(&c->header->counters.pages_read, 1);
		} else if (fresh[i - first]) {
			cache_unaccount_page(ci, i);
		}
		atomic_store_explicit(&cache_page_priv(ci, i)->referenced, 1, memory_order_relaxed);
		cache_unlock_page(ci, i);
	}
	return got < 0 ? (int)got : 0;
}

int cache_fault_in(struct cache_inode *ci, uint64_t first, uint64_t count)
{
	uint64_t end = cache_pages_for(ci->i_size), i, n;
	/* A batch's pages are locked, so reclaim cannot take them while it is
	 * read: in a small cache one reader's batch, or a few readers', could
	 * leave it nothing to take and the limit would be passed.  A batch is
	 * at most an eighth of the cache. */
	uint64_t batch = ci->cache->limit_pages / 8;
	int err;

	if (batch > READ_BATCH_PAGES)
		batch = READ_BATCH_PAGES;
	if (batch < 1)
		batch = 1;
	if (first >= end)
		return 0;
	if (count > end - first)
		count = end - first;
	for (i = first; i < first + count;) {
		struct shm_page *p = cache_page(ci, i);

		if (page_test(p, PG_uptodate)) {
			atomic_store_explicit(&cache_page_priv(ci, i)->referenced, 1, memory_order_relaxed);
			i++;
			continue;
		}
		/* Lock a run of pages that need reading; a page someone else
		 * holds ends the run (and is read on its own, waiting for it). */
		for (n = 0; i + n < first + count && n < batch; n++) {
			struct shm_page *q = cache_page(ci, i + n);

			if (page_test(q, PG_uptodate) || !cache_trylock_page(ci, i + n))
				break;
			if (page_test(q, PG_uptodate)) {
				cache_unlock_page(ci, i + n);
				break;
			}
		}
		if (n == 0) {
			err = readpage(ci, i);
			if (err)
				return err;
			i++;
			continue;
		}
		err = readpages_locked(ci, i, n);
		if (err)
			return err;
		i += n;
	}
	return 0;
}
