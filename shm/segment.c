/*
 * segment.c — page-state segment geometry.
 *
 * Invariants: see segment.h.  Offsets are 64-byte aligned; the segment size
 * is a multiple of the page size.
 */
#include "segment.h"

#include <string.h>

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

void shm_file_resize(struct shm_file_header *h, uint64_t nr_pages)
{
	h->nr_pages = nr_pages;
	h->segment_size = round_up(h->pages_offset + nr_pages * sizeof(struct shm_page),
				   NTFSD_PAGE_SIZE);
}

void shm_file_layout(struct shm_file_header *h, uint64_t nr_pages, uint32_t buffer_size)
{
	shm_file_layout_max(h, nr_pages, nr_pages, buffer_size);
}

void shm_file_layout_max(struct shm_file_header *h, uint64_t nr_pages, uint64_t max_pages,
			 uint32_t buffer_size)
{
	memset(h, 0, sizeof(*h));
	h->magic = NTFSD_SHM_FILE_MAGIC;
	h->layout_version = NTFSD_SHM_LAYOUT_VERSION;
	h->page_size = NTFSD_PAGE_SIZE;
	h->buffer_size = buffer_size;
	h->buffers_per_page = NTFSD_PAGE_SIZE / buffer_size;
	h->max_pages = max_pages;
	h->l2_words = (max_pages + 63) / 64;
	h->l1_words = (h->l2_words + 63) / 64;
	h->l1_offset = sizeof(*h);
	h->l2_offset = h->l1_offset + round_up(h->l1_words * 8, 64);
	h->pages_offset = h->l2_offset + round_up(h->l2_words * 8, 64);
	shm_file_resize(h, nr_pages);
}

bool shm_file_header_valid(const struct shm_file_header *h, uint64_t mapped_size)
{
	struct shm_file_header want;

	if (mapped_size < sizeof(*h) || h->magic != NTFSD_SHM_FILE_MAGIC ||
	    h->layout_version != NTFSD_SHM_LAYOUT_VERSION || h->buffer_size < 512 ||
	    h->buffer_size > NTFSD_PAGE_SIZE || (h->buffer_size & (h->buffer_size - 1)) ||
	    h->max_pages > NTFSD_SHM_MAX_PAGES || h->nr_pages > h->max_pages)
		return false;
	shm_file_layout_max(&want, h->nr_pages, h->max_pages, h->buffer_size);
	return want.page_size == h->page_size && want.buffers_per_page == h->buffers_per_page &&
	       want.l1_words == h->l1_words && want.l2_words == h->l2_words &&
	       want.l1_offset == h->l1_offset && want.l2_offset == h->l2_offset &&
	       want.pages_offset == h->pages_offset && want.segment_size == h->segment_size &&
	       h->segment_size <= mapped_size;
}
