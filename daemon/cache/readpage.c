/*
 * readpage.c — filling pages of the data segment from the volume.
 *
 * Invariants: a page is filled and marked uptodate only with its page lock
 * held; every byte of an uptodate page is the file's byte or, past i_size,
 * zero; a page is counted in the cache (and room made by reclaim) before
 * it is filled; the on-disk layer returns zeroes for holes and for the range past
 * initialized_size without reading the disk, and decompresses compression
 * units.  A read error leaves the page not uptodate and is returned.
 */
#include "cache.h"

#include <errno.h>
#include <string.h>

#include "attrib.h"
#include "error.h"
#include "page.h"
#include "volume.h"

int readpage(struct cache_inode *ci, uint64_t index)
{
	struct cache *c = ci->cache;
	struct shm_page *p;
	uint8_t *buf;
	ssize_t n;

	if (index >= ci->nr_pages)
		return -EINVAL;
	p = &ci->pages[index];
	atomic_store_explicit(&ci->referenced[index], 1, memory_order_relaxed);
	if (page_test(p, PG_uptodate))
		return 0;
	lock_page(p, c->owner);
	if (page_test(p, PG_uptodate)) {
		unlock_page(p);
		return 0;
	}
	cache_reserve_page(c);
	buf = ci->data_map + (index << NTFSD_PAGE_SHIFT);
	n = ntfs_attr_pread(ci->data, index << NTFSD_PAGE_SHIFT, NTFSD_PAGE_SIZE, buf);
	if (n < 0) {
		atomic_fetch_sub(&c->header->counters.cached_pages, 1);
		unlock_page(p);
		return (int)n;
	}
	memset(buf + n, 0, NTFSD_PAGE_SIZE - (size_t)n);
	atomic_store_explicit(&p->buf_uptodate,
			      page_all_buffers(ci->state->buffers_per_page), memory_order_release);
	page_set_bits(p, PG_buffers | PG_uptodate);
	atomic_fetch_add(&ci->cached_pages, 1);
	atomic_fetch_add(&c->header->counters.pages_read, 1);
	unlock_page(p);
	return 0;
}

int cache_fault_in(struct cache_inode *ci, uint64_t first, uint64_t count)
{
	uint64_t end, i;
	int err;

	end = cache_pages_for(ci->i_size);
	if (first >= end)
		return 0;
	if (count > end - first)
		count = end - first;
	for (i = first; i < first + count; i++) {
		err = readpage(ci, i);
		if (err)
			return err;
	}
	return 0;
}
