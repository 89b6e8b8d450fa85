/*
 * write.c — storing into the cache: ntfsc_pwrite, page locks, making
 * pages write-ready, the dirty limit; and fsync, ftruncate and sync.
 *
 * Invariants:
 *  - A byte is stored into the cache only under the lock of its page, with
 *    PG_uptodate and PG_write_ready seen set under that lock (so reclaim,
 *    which never takes a locked or dirty page, cannot drop it meanwhile),
 *    and the page is dirtied with set_page_dirty() before it is unlocked.
 *    A page the daemon did not read becomes uptodate only when a store
 *    covered it wholly.
 *  - Page locks are taken in ascending page order, and none is held while
 *    a request waits for the daemon (which may need those locks), except
 *    the daemon's judgement of a lock we wait for (client_lock_page).
 *  - Stores go through pwrite(2) on the data fd only within the file's
 *    cache segment (which is not sealed against growing): never past
 *    file_geom(f)->readable.
 *  - A size change goes with the last PrepareWrite of a range only, so a
 *    write refused part way leaves the file's size alone.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dirty.h"
#include <sched.h>

#include "page.h"

/* How long a page lock may keep this client waiting before the daemon is
 * asked to judge its holder. */
#define LOCK_CHECK_MS 200

/* Lock page idx of f.  The page state is writable by every writer of the
 * file, so a lock may be forged, or held by a client that hangs: after
 * LOCK_CHECK_MS the daemon judges the holder (it breaks a lock nobody
 * legitimately holds, and disconnects a holder past max-lock-hold-ms).
 * false, errno set, when the daemon cannot be asked any more. */
static _Thread_local uint32_t lock_hint;  /* where this thread looks for a free entry */

/* Put key into a free entry of our lock table, before the lock is taken;
 * its index.  Entries live for a page copy at most, so a full table only
 * ever makes us wait a moment. */
static uint32_t lock_entry_get(ntfsc *c, uint64_t key)
{
	const uint32_t n = NTFSD_LOCK_TABLE_ENTRIES;
	uint32_t i = lock_hint % n;

	for (;;) {
		for (uint32_t k = 0; k < n; k++, i = (i + 1) % n) {
			uint64_t z = 0;

			if (atomic_load_explicit(&c->locks->entry[i], memory_order_relaxed) == 0 &&
			    atomic_compare_exchange_strong(&c->locks->entry[i], &z, key)) {
				lock_hint = i + 1;
				/* the entry is seen before the lock that follows */
				atomic_thread_fence(memory_order_release);
				return i;
			}
		}
		sched_yield();
	}
}

/* Is key held (NTFSD_LOCK_HELD) by any thread of ours? */
static bool lock_held_by_us(const ntfsc *c, uint64_t key)
{
	for (uint32_t i = 0; i < NTFSD_LOCK_TABLE_ENTRIES; i++)
		if (atomic_load_explicit(&c->locks->entry[i], memory_order_acquire) ==
		    (key | NTFSD_LOCK_HELD))
			return true;
	return false;
}

/* Lock page idx of f.  The page state is writable by every writer of the
 * file, so a lock may be forged, or held by a client that hangs: after
 * LOCK_CHECK_MS the daemon judges the holder (it breaks a lock nobody
 * legitimately holds, and disconnects a holder past max-lock-hold-ms).  A
 * lock in our own name that no thread of ours holds (our lock table says
 * so) was forged in our name: the daemon is told, and breaks it.
 * *entry: our lock table's entry for it, for client_unlock_page().  false,
 * errno set, when the daemon cannot be asked any more. */
bool client_lock_page(ntfsc_file *f, uint64_t idx, uint32_t *entry)
{
	struct shm_page *p = file_page(f, idx);
	uint64_t key = ntfsd_lock_key(f->slot, idx);

	*entry = lock_entry_get(f->c, key);
	while (!lock_page_timeout(p, f->c->lock_owner, LOCK_CHECK_MS)) {
		Ntfsd__FaultInRequest fr = NTFSD__FAULT_IN_REQUEST__INIT;
		struct saved_error se;

		fr.handle = f->handle;
		fr.first_page = idx;
		fr.lock_check = true;
		fr.not_mine = page_lock_owner(p) == f->c->lock_owner && !lock_held_by_us(f->c, key);
		error_save(&se);
		if (request(f->c, NTFSD__REQUEST__BODY_FAULT_IN, &fr, NULL, NULL, NULL) &&
		    f->c->dead) {
			int err = errno;

			atomic_store_explicit(&f->c->locks->entry[*entry], 0, memory_order_release);
			error_restore(&se);
			return error_set(err, "page %llu of MFT record %llu stays locked and "
					 "ntfsd is gone", (unsigned long long)idx,
					 (unsigned long long)f->mft_no) == 0;
		}
		error_restore(&se);
	}
	atomic_store_explicit(&f->c->locks->entry[*entry], key | NTFSD_LOCK_HELD,
			      memory_order_release);
	return true;
}

void client_unlock_page(ntfsc_file *f, uint64_t idx, uint32_t entry)
{
	unlock_page(file_page(f, idx));
	/* only once the lock is gone: while we hold it, the entry is there */
	atomic_store_explicit(&f->c->locks->entry[entry], 0, memory_order_release);
}

#define WRITE_READY (PG_uptodate | PG_write_ready)

bool page_write_ready(const struct shm_page *p)
{
	return (page_flags(p) & WRITE_READY) == WRITE_READY;
}

/* The buffers of a page that bytes [s, e) of it touch (s < e <= page size). */
static uint32_t buffer_mask(const ntfsc_file *f, uint32_t s, uint32_t e)
{
	uint32_t b0 = s / f->buffer_size, b1 = (e - 1) / f->buffer_size;

	return page_all_buffers(b1 + 1) & ~page_all_buffers(b0);
}

/* Is page i wholly inside the bytes [ws, we) being written? */
static bool page_covered(uint64_t i, uint64_t ws, uint64_t we)
{
	return (i << PAGE_SHIFT_) >= ws && ((i + 1) << PAGE_SHIFT_) <= we;
}

/* May page i take the write [ws, we)?  Write-ready and uptodate, or
 * write-ready and about to be overwritten wholly (ntfsd need not have read
 * it; the writer makes it uptodate). */
static bool page_writable_for(const ntfsc_file *f, uint64_t i, uint64_t ws, uint64_t we)
{
	const struct shm_page *p = file_page(f, i);

	return page_write_ready(p) ||
	       ((page_flags(p) & PG_write_ready) && page_covered(i, ws, we));
}

/* Are pages first..last all there and writable (a hint: unlocked)? */
static bool range_write_ready(const ntfsc_file *f, uint64_t first, uint64_t last, uint64_t ws,
			      uint64_t we)
{
	if (last >= file_nr_pages(f))
		return false;
	for (uint64_t i = first; i <= last; i++)
		if (!page_writable_for(f, i, ws, we))
			return false;
	return true;
}

/*
 * Make [first, first + n) write-ready in requests ntfsd accepts.  new_size
 * (0: none) goes with the last request only, so a range refused part way
 * leaves the file's size alone (pages made write-ready before the refusal
 * stay so, which changes nothing on the volume).
 */
int prepare_range(ntfsc_file *f, uint64_t first, uint64_t n, uint64_t new_size,
			 uint64_t ws, uint64_t we)
{
	uint64_t done = 0, i_size;

	while (done < n) {
		Ntfsd__PrepareWriteRequest pr = NTFSD__PREPARE_WRITE_REQUEST__INIT;
		uint64_t chunk = n - done < MAX_FAULT_PAGES ? n - done : MAX_FAULT_PAGES;
		bool last = done + chunk == n;
		Ntfsd__Reply *rep;

		pr.handle = f->handle;
		pr.first_page = first + done;
		pr.nr_pages = chunk;
		pr.new_size = last ? new_size : 0;  /* raised first when larger */
		pr.write_start = ws;
		pr.write_end = we;
		if (request(f->c, NTFSD__REQUEST__BODY_PREPARE_WRITE, &pr, NULL, NULL, &rep))
			return -1;
		i_size = rep->prepare_write->i_size;  /* the size after */
		if (rep->prepare_write->segment &&
		    file_remap(f, rep->prepare_write->segment->nr_pages,
			       rep->prepare_write->segment->data_segment_size)) {
			ntfsd__reply__free_unpacked(rep, NULL);
			return -1;
		}
		ntfsd__reply__free_unpacked(rep, NULL);
		if (last && new_size && i_size < new_size)
			return error_set(EPROTO, "ntfsd left MFT record %llu at %llu bytes when asked "
					 "to extend it to %llu", (unsigned long long)f->mft_no,
					 (unsigned long long)i_size, (unsigned long long)new_size);
		done += chunk;
	}
	return 0;
}

/*
 * Lock pages idx, idx + 1, ... up to last (at most COPY_RUN_PAGES), in
 * ascending order, as long as each is uptodate and write-ready under its
 * lock.  Returns how many are locked: 0 when page idx is not write-ready.
 */
static uint64_t lock_run(ntfsc_file *f, uint64_t idx, uint64_t last, uint64_t ws, uint64_t we,
		       uint32_t *ents)
{
	uint64_t n = 0;

	while (idx + n <= last && n < COPY_RUN_PAGES) {
		if (!client_lock_page(f, idx + n, &ents[n]))
			break;
		if (!page_writable_for(f, idx + n, ws, we)) {
			client_unlock_page(f, idx + n, ents[n]);
			break;
		}
		n++;
	}
	return n;
}

/* Copy src to bytes [pos, end) of the cache through the data fd (the kernel
 * copies, so no page of ours faults); *done: bytes stored, also on error. */
static int store(const ntfsc_file *f, const uint8_t *src, uint64_t pos, uint64_t end,
		 uint64_t *done)
{
	*done = 0;
	while (pos + *done < end) {
		ssize_t n = pwrite(f->data_fd, src + *done, (size_t)(end - pos - *done),
				   (off_t)(pos + *done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return error_set(errno, "cannot store into the cache of MFT record %llu: %s",
					 (unsigned long long)f->mft_no, strerror(errno));
		}
		if (n == 0)
			return error_set(EIO, "storing into the cache of MFT record %llu made no "
					 "progress", (unsigned long long)f->mft_no);
		*done += (uint64_t)n;
	}
	return 0;
}

/* Dirty the buffers that bytes [pos, stored_end) touch in the n locked
 * pages from idx, then unlock all n. */
static uint64_t dirty_unlock_run(ntfsc_file *f, uint64_t idx, uint64_t n, uint64_t pos,
				 uint64_t stored_end, const uint32_t *ents)
{
	uint64_t kept = stored_end;

	for (uint64_t i = 0; i < n; i++) {
		struct shm_page *p = file_page(f, idx + i);
		uint64_t ps = (idx + i) << PAGE_SHIFT_, pe = ps + PAGE_SIZE_;
		uint64_t s = pos > ps ? pos : ps, e = kept < pe ? kept : pe;

		if (s < e && !(page_flags(p) & PG_uptodate)) {
			/* ntfsd did not read it: only a page we stored wholly
			 * may become uptodate; a partial store is not kept */
			if (s == ps && e == pe) {
				atomic_store_explicit(&p->buf_uptodate,
						      page_all_buffers(PAGE_SIZE_ / f->buffer_size),
						      memory_order_release);
				page_set_bits(p, PG_buffers | PG_uptodate);
			} else {
				kept = s;
				e = s;
			}
		}
		if (s < e)
			set_page_dirty(&file_geom(f)->dirty, idx + i,
				       buffer_mask(f, (uint32_t)(s - ps), (uint32_t)(e - ps)));
		client_unlock_page(f, idx + i, ents[i]);
	}
	return kept;
}

/*
 * Past the daemon's dirty limit: wait until write-back brings the dirty
 * data under it.  The header's count is refreshed by the daemon only now
 * and then and this file's own count says nothing of other files, so on
 * top of those two lower bounds every connection also checks in with the
 * daemon (which counts exactly) after dirtying its share of the limit:
 * limit / (2 x open files).  So writers on many files together overshoot
 * the limit by at most about half of it.  What was written stays written
 * whatever happens here (a lost connection is reported by the next
 * request), so errors are kept from the caller.
 */
void balance_dirty(ntfsc_file *f, uint64_t pages)
{
	struct shm_volume_header *h = (struct shm_volume_header *)f->c->hdr;
	uint64_t limit = atomic_load_explicit(&h->dirty_limit, memory_order_relaxed);
	uint64_t dirty = atomic_load_explicit(&h->counters.dirty_pages, memory_order_relaxed);
	uint64_t mine = atomic_load_explicit(&f->state->nr_dirty, memory_order_relaxed);
	uint64_t files = atomic_load_explicit(&h->counters.open_files, memory_order_relaxed);
	Ntfsd__BalanceDirtyRequest br = NTFSD__BALANCE_DIRTY_REQUEST__INIT;
	uint64_t share, since;
	struct saved_error se;

	if (!limit)
		return;
	share = limit / PAGE_SIZE_ / (2 * (files ? files : 1));
	since = atomic_fetch_add(&f->c->dirtied_since_balance, pages) + pages;
	if (mine > dirty)
		dirty = mine;
	if (dirty <= limit / PAGE_SIZE_ && since < (share ? share : 1))
		return;
	atomic_store(&f->c->dirtied_since_balance, 0);
	error_save(&se);
	request(f->c, NTFSD__REQUEST__BODY_BALANCE_DIRTY, &br, NULL, NULL, NULL);
	error_restore(&se);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zero[4096];

	while (n) {
		size_t k = n < sizeof(zero) ? n : sizeof(zero);

		if (memcmp(p, zero, k))
			return false;
		p += k;
		n -= k;
	}
	return true;
}

/* ntfsc_ftruncate without recording a failure as the connection's: the
 * size change pwrite_zeroes asks for may be refused and the write then
 * succeed the normal way. */
static int file_truncate(ntfsc_file *f, off_t size)
{
	Ntfsd__TruncateRequest tr = NTFSD__TRUNCATE_REQUEST__INIT;

	if (!f || size < 0)
		return error_set(EINVAL, NULL);
	tr.handle = f->handle;
	tr.size = (uint64_t)size;
	return request(f->c, NTFSD__REQUEST__BODY_TRUNCATE, &tr, NULL, NULL, NULL);
}

/*
 * A buffer of zeroes over bytes that already read as zeroes (a hole, the
 * tail of an allocation) changes nothing, so it must not make ntfsd
 * allocate clusters (the old NTFS driver's check for zero buffers): the
 * part inside the file is checked by reading it, the part past the end
 * becomes a (sparse) size change.  Returns 1 when the write was done so,
 * 0 when it must go the normal way (also when the size change is refused),
 * -1 on error.
 */
static int pwrite_zeroes(ntfsc_file *f, uint64_t start, uint64_t end)
{
	uint8_t *tmp;
	uint64_t size = file_size(f), pos;
	int ret = 1;

	if (start > size)
		return 0;               /* a gap before: the normal path says how */
	/* Zeroes the cache holds over a page whose write-back failed may not
	 * be on the disk (the page is clean, with the new bytes): written
	 * again they must reach it like any other bytes. */
	for (pos = start >> PAGE_SHIFT_; pos < file_nr_pages(f) && pos << PAGE_SHIFT_ < end &&
	     pos << PAGE_SHIFT_ < size; pos++)
		if (page_test(file_page(f, pos), PG_error))
			return 0;
	tmp = malloc(1u << 16);
	if (!tmp)
		return 0;
	for (pos = start; pos < end && pos < size && ret == 1;) {
		uint64_t lim = end < size ? end : size;
		size_t n = lim - pos < (1u << 16) ? (size_t)(lim - pos) : (1u << 16);
		ssize_t got = ntfsc_pread(f, tmp, n, (off_t)pos);

		if (got < 0)
			ret = -1;
		else if (got == 0 || !all_zero(tmp, (size_t)got))
			ret = 0;
		else
			pos += (uint64_t)got;
	}
	free(tmp);
	/* a size change the daemon refuses: let the write itself say why (or
	 * do it), so zeroes are never refused where other bytes would not be */
	if (ret == 1 && end > file_size(f) && file_truncate(f, (off_t)end))
		ret = 0;
	return ret;
}

/*
 * One PrepareWrite for the whole range when some page is not write-ready
 * or the file must grow; then runs of locked, write-ready pages are stored
 * with one pwrite(2) each, dirtied and unlocked.  A page reclaimed between
 * its PrepareWrite and its lock is made write-ready again; when that keeps
 * happening (the cache is thrashing) the write pins PIN_CHUNK pages at a
 * time before making them write-ready, which always makes progress.
 */
static ssize_t file_write(ntfsc_file *f, const void *buf, size_t len, off_t off)
{
	const uint8_t *in = buf;
	uint32_t ents[COPY_RUN_PAGES];      /* lock table entries of a locked run */
	uint64_t start, end, pos, last, size;
	unsigned retries = 0;
	bool thrash = false;

	if (!f || off < 0 || (!buf && len))
		return error_set(EINVAL, NULL);
	if (!f->writable)
		return error_set(EBADF, "MFT record %llu is open read-only",
				 (unsigned long long)f->mft_no);
	if (len == 0)
		return 0;
	if (!f->data_writable)
		return error_set(EACCES, "ntfsd shares the data of MFT record %llu read-only",
				 (unsigned long long)f->mft_no);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	start = pos = (uint64_t)off;
	end = start + len;              /* both below 2^63: no overflow */
	last = (end - 1) >> PAGE_SHIFT_;
	if (all_zero(in, len)) {
		int z = pwrite_zeroes(f, start, end);

		if (z)
			return z < 0 ? -1 : (ssize_t)len;
	}

	size = file_size(f);
	if ((end > size || !range_write_ready(f, start >> PAGE_SHIFT_, last, start, end)) &&
	    prepare_range(f, start >> PAGE_SHIFT_, last - (start >> PAGE_SHIFT_) + 1,
			  end > size ? end : 0, start, end))
		return -1;
	if (end > file_geom(f)->readable)
		return error_set(EPROTO, "ntfsd made bytes up to %llu of MFT record %llu "
				 "writable, beyond its cache segment (%llu bytes)",
				 (unsigned long long)end, (unsigned long long)f->mft_no,
				 (unsigned long long)file_geom(f)->readable);

	while (pos < end) {
		uint64_t idx = pos >> PAGE_SHIFT_, lim = last, pinned = 0, n, done = 0;
		int err = 0;

		if (thrash) {
			uint64_t want = last - idx + 1 < PIN_CHUNK ? last - idx + 1 : PIN_CHUNK;

			if (file_fault_in(f, idx, want, true, &pinned))
				break;
			if (pinned) {
				lim = idx + pinned - 1;
				err = prepare_range(f, idx, pinned, 0, start, end);
			}
		}
		n = err ? 0 : lock_run(f, idx, lim, start, end, ents);
		if (n) {
			uint64_t run_end = (idx + n) << PAGE_SHIFT_;

			if (run_end > end)
				run_end = end;
			err = store(f, in + (pos - start), pos, run_end, &done);
			pos = dirty_unlock_run(f, idx, n, pos, pos + done, ents);
			retries = 0;
		}
		if (pinned) {
			if (err) {
				struct saved_error se;

				error_save(&se);
				file_unpin(f, idx, pinned);
				error_restore(&se);
			} else {
				err = file_unpin(f, idx, pinned);
			}
		}
		if (err)
			break;
		if (n) {
			balance_dirty(f, n);
			continue;
		}
		/* Page idx was reclaimed after it was made write-ready. */
		if (retries++ == MAX_FAULT_RETRIES) {
			error_set(EIO, "page %llu of MFT record %llu is still not write-ready after "
				  "%u attempts", (unsigned long long)idx,
				  (unsigned long long)f->mft_no, MAX_FAULT_RETRIES);
			break;
		}
		if (retries > 1) {
			thrash = true;  /* the next round pins before it prepares */
		} else {
			uint64_t upto = last - idx < COPY_RUN_PAGES ? last : idx + COPY_RUN_PAGES - 1;

			size = file_size(f);
			if (prepare_range(f, idx, upto - idx + 1, end > size ? end : 0, start, end))
				break;
		}
	}
	if (pos == end)
		return (ssize_t)len;
	return pos > start ? (ssize_t)(pos - start) : -1;
}

ssize_t ntfsc_pwrite(ntfsc_file *f, const void *buf, size_t len, off_t off)
{
	return error_on_ssize(file_conn(f), file_write(f, buf, len, off));
}

int ntfsc_fsync(ntfsc_file *f)
{
	Ntfsd__SyncRequest sr = NTFSD__SYNC_REQUEST__INIT;

	if (!f)
		return error_set(EINVAL, NULL);
	sr.handle = f->handle;
	return error_on(f->c, request(f->c, NTFSD__REQUEST__BODY_SYNC, &sr, NULL, NULL, NULL));
}

int ntfsc_ftruncate(ntfsc_file *f, off_t size)
{
	return error_on(file_conn(f), file_truncate(f, size));
}

int ntfsc_sync(ntfsc *c)
{
	Ntfsd__SyncRequest sr = NTFSD__SYNC_REQUEST__INIT;  /* handle 0: the volume */

	if (!c)
		return error_set(EINVAL, NULL);
	return error_on(c, request(c, NTFSD__REQUEST__BODY_SYNC, &sr, NULL, NULL, NULL));
}
