/*
 * read.c — ntfsc_pread: copies out of the shared cache, asking the daemon
 * only for the pages that are not there.
 *
 * Invariants:
 *  - pread copies a page only when PG_uptodate was set before the copy and
 *    the page's generation and PG_uptodate are unchanged after it; the
 *    daemon clears PG_uptodate and bumps the generation before it punches a
 *    page out, so a copy that raced with reclaim is always detected.  When
 *    reclaim takes pages between their fault-in and our copy, pread pins
 *    what it copies (and unpins it), so it makes progress however small the
 *    cache.
 *  - Nothing is copied from at or past file_geom(f)->readable, the bytes both the
 *    data segment and the page descriptors cover; a file whose size goes
 *    past them is EIO, not a read out of bounds.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "page.h"

/*
 * Copy [pos, end) of page pos >> PAGE_SHIFT (end within that page) if the
 * page is uptodate and stays so, with the same generation, across the copy.
 */
static bool copy_page(const ntfsc_file *f, uint8_t *dst, uint64_t pos, uint64_t end)
{
	struct shm_page *p = file_page(f, pos >> PAGE_SHIFT_);
	uint32_t gen = atomic_load_explicit(&p->generation, memory_order_acquire);

	if (!(page_flags(p) & PG_uptodate))
		return false;
	memcpy(dst, file_geom(f)->data + pos, (size_t)(end - pos));
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&p->generation, memory_order_relaxed) == gen &&
	       (page_flags(p) & PG_uptodate);
}

/*
 * Copy as much of [pos, end) as lies in consecutive uptodate pages with one
 * pread(2) of the data segment: the kernel copies straight from the
 * segment's pages, with none of the page faults a first touch of our
 * mapping costs.  Each page's generation is taken before and checked after,
 * so a page reclaimed meanwhile ends the run there.  Returns the bytes
 * copied (0: the first page is not uptodate).
 */
static uint64_t copy_run(const ntfsc_file *f, uint8_t *dst, uint64_t pos, uint64_t end)
{
	uint32_t gen[COPY_RUN_PAGES];
	uint64_t first = pos >> PAGE_SHIFT_, n = 0, run_end, i, good;
	ssize_t got;

	while (n < COPY_RUN_PAGES && ((first + n) << PAGE_SHIFT_) < end) {
		struct shm_page *p = file_page(f, first + n);

		gen[n] = atomic_load_explicit(&p->generation, memory_order_acquire);
		if (!(page_flags(p) & PG_uptodate))
			break;
		n++;
	}
	if (!n)
		return 0;
	run_end = (first + n) << PAGE_SHIFT_;
	if (run_end > end)
		run_end = end;
	got = pread(f->data_fd, dst, (size_t)(run_end - pos), (off_t)pos);
	if (got <= 0)
		return 0;  /* treated like a page that is not there: fault in, retry */
	atomic_thread_fence(memory_order_acquire);
	good = pos + (uint64_t)got;
	for (i = 0; i < n && (first + i) << PAGE_SHIFT_ < good; i++) {
		struct shm_page *p = file_page(f, first + i);

		if (atomic_load_explicit(&p->generation, memory_order_relaxed) != gen[i] ||
		    !(page_flags(p) & PG_uptodate)) {
			good = (first + i) << PAGE_SHIFT_;
			break;
		}
	}
	return good > pos ? good - pos : 0;
}

/* The end of what pread may copy from pos on, or -1 (EIO) when the file
 * extends beyond its segments; *eof when there is nothing left. */
static int read_limit(ntfsc_file *f, uint64_t pos, uint64_t want_end, uint64_t *end)
{
	uint64_t e = file_size(f);

	if (e > want_end)
		e = want_end;
	/* the file grew past our mappings (the daemon grew its segments):
	 * map them again first */
	if (pos < e && e > file_geom(f)->readable &&
	    file_need_pages(f, (e + PAGE_SIZE_ - 1) >> PAGE_SHIFT_) && pos >= file_geom(f)->readable)
		return -1;
	if (pos < e && pos >= file_geom(f)->readable)
		return error_set(EIO, "byte %llu of MFT record %llu lies beyond its cache segment",
				 (unsigned long long)pos, (unsigned long long)f->mft_no);
	if (e > file_geom(f)->readable)
		e = file_geom(f)->readable;
	*end = e;
	return 0;
}

static int no_page_faulted(const ntfsc_file *f, uint64_t idx)
{
	return error_set(EIO, "ntfsd faulted in no page at page %llu of MFT record %llu, before "
			 "the end of the file", (unsigned long long)idx,
			 (unsigned long long)f->mft_no);
}

/*
 * Reads normally fault in everything they still need, unpinned, and copy
 * page by page.  A page that is gone again right after its fault-in means
 * the cache is thrashing (reclaim takes pages before we get to them); from
 * then on the read pins PIN_CHUNK pages at a time, copies them and unpins
 * them, which always makes progress.
 */
static ssize_t file_read(ntfsc_file *f, void *buf, size_t len, off_t off)
{
	uint8_t *out = buf;
	uint64_t start, want_end, pos, covered, want;
	unsigned faults = 0;
	bool thrash = false;

	if (!f || off < 0 || (!buf && len))
		return error_set(EINVAL, NULL);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	start = pos = (uint64_t)off;
	want_end = start + len;         /* both below 2^63: no overflow */

	while (pos < want_end) {
		uint64_t end = 0, idx, page_end, last;

		if (read_limit(f, pos, want_end, &end))
			goto fail;
		if (pos >= end)
			break;
		idx = pos >> PAGE_SHIFT_;
		{
			uint64_t copied = copy_run(f, out + (pos - start), pos, end);

			if (copied) {
				pos += copied;
				faults = 0;
				continue;
			}
		}
		/* Not there, or reclaimed while we copied. */
		if (faults++ == MAX_FAULT_RETRIES) {
			error_set(EIO, "page %llu of MFT record %llu is still not uptodate after %u "
				  "fault-ins", (unsigned long long)idx, (unsigned long long)f->mft_no,
				  MAX_FAULT_RETRIES);
			goto fail;
		}
		last = (end - 1) >> PAGE_SHIFT_;
		want = last - idx + 1;
		if (faults > 1)
			thrash = true;
		if (!thrash) {
			if (want > MAX_FAULT_PAGES)
				want = MAX_FAULT_PAGES;
			if (file_fault_in(f, idx, want, false, &covered))
				goto fail;
			if (covered == 0 && pos < file_size(f)) {
				no_page_faulted(f, idx);
				goto fail;
			}
			continue;
		}

		/* Thrashing: pin, copy, unpin. */
		if (want > PIN_CHUNK)
			want = PIN_CHUNK;
		if (file_fault_in(f, idx, want, true, &covered))
			goto fail;
		if (covered == 0) {
			if (pos < file_size(f)) {
				no_page_faulted(f, idx);
				goto fail;
			}
			continue;
		}
		while (pos < end && (pos >> PAGE_SHIFT_) < idx + covered) {
			page_end = ((pos >> PAGE_SHIFT_) + 1) << PAGE_SHIFT_;
			if (page_end > end)
				page_end = end;
			if (!copy_page(f, out + (pos - start), pos, page_end))
				break;
			pos = page_end;
			faults = 0;
		}
		if (file_unpin(f, idx, covered))
			goto fail;
	}
	return (ssize_t)(pos - start);
fail:
	return pos > start ? (ssize_t)(pos - start) : -1;
}

/* A short count is no failure (the next call reports the error): only -1
 * is recorded as the connection's. */
ssize_t ntfsc_pread(ntfsc_file *f, void *buf, size_t len, off_t off)
{
	return error_on_ssize(file_conn(f), file_read(f, buf, len, off));
}
