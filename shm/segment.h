/*
 * segment.h — computing the layout of a page-state segment.
 *
 * Invariant: shm_file_layout() is the single place that decides where the
 * bitmaps and descriptors of a page-state segment lie; the daemon uses it to
 * create segments and clients to check the header they map.
 */
#ifndef NTFSD_SHM_SEGMENT_H
#define NTFSD_SHM_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "shm_layout.h"

/* The most pages a page-state segment may be laid out for (16 TiB). */
#define NTFSD_SHM_MAX_PAGES (1ull << 32)

/* Fill the geometry fields of h for nr_pages pages of buffer_size buffers,
 * with bitmaps for max_pages (>= nr_pages, <= NTFSD_SHM_MAX_PAGES) so the
 * segment can grow to that many in place. */
void shm_file_layout_max(struct shm_file_header *h, uint64_t nr_pages, uint64_t max_pages,
			 uint32_t buffer_size);
/* The same with no room to grow (max_pages = nr_pages). */
void shm_file_layout(struct shm_file_header *h, uint64_t nr_pages, uint32_t buffer_size);
/* Set h's size fields for nr_pages (<= h->max_pages), keeping its layout. */
void shm_file_resize(struct shm_file_header *h, uint64_t nr_pages);
/* Check a mapped header against the segment's real size. */
bool shm_file_header_valid(const struct shm_file_header *h, uint64_t mapped_size);

static inline struct shm_page *shm_file_pages(struct shm_file_header *h)
{
	return (struct shm_page *)((uint8_t *)h + h->pages_offset);
}

#endif
