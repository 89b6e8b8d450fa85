/*
 * map.c — ntfsc_mmap, ntfsc_munmap and ntfsc_set_dirty: the cache mapped
 * into the client.
 *
 * Invariants:
 *  - A mapping made by ntfsc_mmap holds one pin (taken by the daemon for
 *    this connection) on each of its pages that the daemon said it covered,
 *    and exactly those are unpinned when it is unmapped.  Every mapping
 *    and every pin is undone on every error path.
 *  - A mapping is on f->maps (under maps_lock) from its creation until
 *    ntfsc_munmap or file_release takes it off; ntfsc_set_dirty holds
 *    maps_lock throughout, so the mapping and its pins stay meanwhile.
 *  - Pinned pages are never reclaimed, so pages of a PROT_WRITE mapping
 *    made write-ready at ntfsc_mmap stay so for as long as it lives; a
 *    page is dirtied (under its lock) only if it is write-ready then.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "dirty.h"
#include "page.h"

#ifdef MADV_POPULATE_READ
#define NTFSC_MADV_POPULATE_READ MADV_POPULATE_READ
#else
#define NTFSC_MADV_POPULATE_READ 22  /* Linux 5.14 */
#endif
#ifdef MADV_POPULATE_WRITE
#define NTFSC_MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define NTFSC_MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * Pin and fault in [first, first + n) in requests ntfsd accepts; *pinned:
 * pages pinned from first (the daemon stops at the end of the file).  On
 * failure nothing stays pinned: a refused request pinned nothing, and what
 * earlier requests pinned is unpinned again.
 */
static int pin_range(ntfsc_file *f, uint64_t first, uint64_t n, uint64_t *pinned)
{
	uint64_t done = 0, covered;

	while (done < n) {
		uint64_t chunk = n - done < MAX_FAULT_PAGES ? n - done : MAX_FAULT_PAGES;

		if (file_fault_in(f, first + done, chunk, true, &covered)) {
			if (done) {
				struct saved_error se;

				error_save(&se);
				file_unpin(f, first, done);
				error_restore(&se);
			}
			return -1;
		}
		done += covered;
		if (covered < chunk)
			break;
	}
	*pinned = done;
	return 0;
}

static void *file_map(ntfsc_file *f, off_t off, size_t len, int prot)
{
	struct mapping *m;
	uint64_t base, lead, map_len, covered;
	void *addr;

	if (!f || off < 0 || len == 0 || (prot & ~(PROT_READ | PROT_WRITE))) {
		error_set(EINVAL, NULL);
		return MAP_FAILED;
	}
	if ((prot & PROT_WRITE) && !f->writable) {
		error_set(EACCES, NULL);
		return MAP_FAILED;
	}
	if ((prot & PROT_WRITE) && !f->data_writable) {
		error_set(EACCES, "ntfsd shares the data of MFT record %llu read-only",
			  (unsigned long long)f->mft_no);
		return MAP_FAILED;
	}
	base = (uint64_t)off & ~(uint64_t)(PAGE_SIZE_ - 1);
	lead = (uint64_t)off - base;
	/* past what we map: the daemon may have grown the segments since */
	if (len < (1ull << 62) && (uint64_t)off + len > file_geom(f)->data_size) {
		struct saved_error se;

		error_save(&se);
		if (file_need_pages(f, ((uint64_t)off + len + PAGE_SIZE_ - 1) >> PAGE_SHIFT_))
			error_restore(&se);     /* ENXIO below says it */
	}
	if (base >= file_geom(f)->data_size || len > file_geom(f)->data_size - base ||
	    lead + len > file_geom(f)->data_size - base) {
		error_set(ENXIO, NULL);
		return MAP_FAILED;
	}
	map_len = (lead + len + PAGE_SIZE_ - 1) & ~(uint64_t)(PAGE_SIZE_ - 1);
	if (map_len > file_geom(f)->data_size - base) {
		error_set(ENXIO, NULL);
		return MAP_FAILED;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		error_set(ENOMEM, NULL);
		return MAP_FAILED;
	}
	if (pin_range(f, base >> PAGE_SHIFT_, map_len >> PAGE_SHIFT_, &covered)) {
		free(m);
		return MAP_FAILED;
	}
	/* Pinned pages are never reclaimed, so once write-ready they stay so
	 * for as long as the mapping lives.  Pages past the end of the file
	 * (not pinned) are not made write-ready: nothing stored there can
	 * reach the volume. */
	if ((prot & PROT_WRITE) && covered &&
	    prepare_range(f, base >> PAGE_SHIFT_, covered, 0, 0, 0))
		goto unpin;
	addr = mmap(NULL, (size_t)map_len, prot, MAP_SHARED, f->data_fd, (off_t)base);
	if (addr == MAP_FAILED) {
		error_set(errno, NULL);
		goto unpin;
	}
	/* The pinned pages are uptodate: map them all now rather than take a
	 * page fault at each first touch (only a hint; errors are harmless). */
	if (covered)
		madvise(addr, (size_t)(covered << PAGE_SHIFT_) < (size_t)map_len
				       ? (size_t)(covered << PAGE_SHIFT_) : (size_t)map_len,
			(prot & PROT_WRITE) ? NTFSC_MADV_POPULATE_WRITE : NTFSC_MADV_POPULATE_READ);
	m->base = addr;
	m->len = (size_t)map_len;
	m->user = (uint8_t *)addr + lead;
	m->ulen = len;
	m->prot = prot;
	m->first_page = base >> PAGE_SHIFT_;
	m->pinned = covered;
	pthread_mutex_lock(&f->maps_lock);
	m->next = f->maps;
	f->maps = m;
	pthread_mutex_unlock(&f->maps_lock);
	return m->user;

unpin: {
		struct saved_error se;

		error_save(&se);
		if (covered)
			file_unpin(f, base >> PAGE_SHIFT_, covered);
		free(m);
		error_restore(&se);
		return MAP_FAILED;
	}
}

static int file_unmap(ntfsc_file *f, void *addr, size_t len)
{
	struct mapping **pp, *m = NULL;
	uint64_t first, pinned;
	int err = 0;

	if (!f || !addr || len == 0)
		return error_set(EINVAL, NULL);
	pthread_mutex_lock(&f->maps_lock);
	for (pp = &f->maps; *pp; pp = &(*pp)->next) {
		struct mapping *x = *pp;
		size_t lead = (size_t)(x->user - x->base);

		if (x->user == addr && len <= x->len - lead &&
		    ((lead + len + PAGE_SIZE_ - 1) & ~(size_t)(PAGE_SIZE_ - 1)) == x->len) {
			m = x;
			*pp = x->next;
			break;
		}
	}
	pthread_mutex_unlock(&f->maps_lock);
	if (!m)
		return error_set(EINVAL, NULL);
	munmap(m->base, m->len);
	first = m->first_page;
	pinned = m->pinned;
	free(m);
	if (pinned)
		err = file_unpin(f, first, pinned);
	return err;
}

static int file_set_dirty(ntfsc_file *f, void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, u;
	struct mapping *m;
	uint64_t first, last;
	uint32_t all;
	int err = 0;

	if (!f || !addr)
		return error_set(EINVAL, NULL);
	/* maps_lock is held throughout: the mapping, and so its pins, stay. */
	pthread_mutex_lock(&f->maps_lock);
	for (m = f->maps; m; m = m->next) {
		u = (uintptr_t)m->user;
		if ((m->prot & PROT_WRITE) && a >= u && a - u <= m->ulen && len <= m->ulen - (a - u))
			break;
	}
	if (!m) {
		pthread_mutex_unlock(&f->maps_lock);
		return error_set(EINVAL, "no writable mapping of MFT record %llu holds that range",
				 (unsigned long long)f->mft_no);
	}
	if (len == 0) {
		pthread_mutex_unlock(&f->maps_lock);
		return 0;
	}
	a -= (uintptr_t)m->base;        /* now the offset into the mapping */
	first = m->first_page + (a >> PAGE_SHIFT_);
	last = m->first_page + (a + len - 1) / PAGE_SIZE_;
	all = page_all_buffers(f->buffers_per_page);
	for (uint64_t i = first; i <= last; i++) {
		struct shm_page *p;
		uint32_t ent;

		if (i >= file_nr_pages(f)) {
			err = error_set(EIO, "page %llu of MFT record %llu lies beyond its cache "
					"segment", (unsigned long long)i, (unsigned long long)f->mft_no);
			break;
		}
		p = file_page(f, i);
		if (!client_lock_page(f, i, &ent)) {
			err = -1;
			break;
		}
		if (!page_write_ready(p)) {
			client_unlock_page(f, i, ent);
			err = error_set(EIO, "page %llu of MFT record %llu is not writable (past the "
					"end of the file, or lost)", (unsigned long long)i,
					(unsigned long long)f->mft_no);
			break;
		}
		set_page_dirty(&file_geom(f)->dirty, i, all);
		client_unlock_page(f, i, ent);
	}
	pthread_mutex_unlock(&f->maps_lock);
	if (!err)
		balance_dirty(f, (len + PAGE_SIZE_ - 1) / PAGE_SIZE_ + 1);
	return err;
}

void *ntfsc_mmap(ntfsc_file *f, off_t off, size_t len, int prot)
{
	void *p = file_map(f, off, len, prot);

	if (p == MAP_FAILED)
		error_record(file_conn(f));
	return p;
}

int ntfsc_munmap(ntfsc_file *f, void *addr, size_t len)
{
	return error_on(file_conn(f), file_unmap(f, addr, len));
}

int ntfsc_set_dirty(ntfsc_file *f, void *addr, size_t len)
{
	return error_on(file_conn(f), file_set_dirty(f, addr, len));
}
