/*
 * test_cache.c — the generic page cache (daemon/cache/) and write-back
 * (daemon/writeback/writeback.c) against a file system in RAM
 * (ramfs.h): no volume, no root, no daemon process; the test calls the
 * cache as the server does and stores into the data segment as libntfsc
 * does (client/write.c).
 *
 * Invariants:
 *  - Each case makes its own file system and cache (cache_create with
 *    its own geometry and limit) and destroys both; the fixture's
 *    teardown frees what a failed case left.
 *  - Each case ends by asserting that ramfs saw no contract violation
 *    (fs->violations: a buffer past i_size, a page not uptodate or past
 *    the fence handed to writepage, a write over a hole, a truncate not
 *    fenced...), so every case also checks the rules it does not name.
 *  - What reached the "disk" is judged by ramfs's write log (the disk's
 *    clock, ramfs_now()), never by the cache's own counters alone.
 *  - In debug and sanitizer builds the lock-order checker and the sanity
 *    asserts are on (NTFSD_LOCKDEP): a violation aborts the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "dirty.h"
#include "error.h"
#include "page.h"
#include "page_io.h"
#include "ramfs.h"
#include "writeback.h"

#define PAGE NTFSD_PAGE_SIZE
#define BLOCK 4096u

/* ---- the fixture ---- */

struct fx {
	struct ramfs *fs;
	struct cache *c;
	struct cache_geometry geo;
	uint64_t limit;
};

static struct fx X;

/* A file system of `blocks` free blocks and a cache over it with buffers
 * of `sector` bytes and a limit of `limit` bytes. */
static void fx_init(uint32_t sector, uint64_t blocks, uint64_t limit)
{
	memset(&X, 0, sizeof(X));
	X.fs = ramfs_create(BLOCK, blocks);
	assert_non_null(X.fs);
	X.geo = (struct cache_geometry){ .sector_size = sector, .cluster_size = BLOCK,
					 .volume_bytes = blocks * BLOCK, .serial = 0x5eed };
	X.limit = limit;
	assert_int_equal(cache_create(&ramfs_aops, X.fs, &X.geo, limit, &X.c), 0);
}

/* A daemon restart: the cache and everything in memory goes, the disk stays. */
static void fx_restart(void)
{
	cache_destroy(X.c);
	X.c = NULL;
	assert_int_equal(cache_create(&ramfs_aops, X.fs, &X.geo, X.limit, &X.c), 0);
}

/* The end of every case: no contract violation, everything freed. */
static void fx_done(void)
{
	assert_int_equal(atomic_load(&X.fs->violations), 0);
	cache_destroy(X.c);
	X.c = NULL;
	assert_int_equal(atomic_load(&X.fs->violations), 0);
	ramfs_destroy(X.fs);
	X.fs = NULL;
}

static int fx_teardown(void **state)
{
	(void)state;
	cache_destroy(X.c);
	ramfs_destroy(X.fs);
	memset(&X, 0, sizeof(X));
	return 0;
}

/* ---- data ---- */

static uint8_t pattern_byte(uint64_t pos, unsigned seed)
{
	uint64_t v = (pos + 1) * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;

	return (uint8_t)((v >> 29) | 1);       /* never zero, never RAMFS_STALE's twin */
}

static void fill(uint8_t *buf, uint64_t pos, uint64_t len, unsigned seed)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		buf[i] = pattern_byte(pos + i, seed);
}

static uint8_t *pattern(uint64_t pos, uint64_t len, unsigned seed)
{
	uint8_t *b = malloc(len ? len : 1);

	assert_non_null(b);
	fill(b, pos, len, seed);
	return b;
}

static bool all_zero(const uint8_t *b, uint64_t len)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static struct ramfs_file *add_file(const char *name, uint64_t size, unsigned seed)
{
	uint8_t *data = pattern(0, size, seed);
	struct ramfs_file *f = ramfs_add_file(X.fs, name, data, size);

	assert_non_null(f);
	free(data);
	return f;
}

static struct cache_inode *open_file(const char *path)
{
	struct cache_inode *ci = NULL;

	assert_int_equal(cache_open(X.c, path, &ci), 0);
	assert_non_null(ci);
	return ci;
}

static uint32_t flags(struct cache_inode *ci, uint64_t index)
{
	return page_flags(cache_page(ci, index));
}

static uint64_t counter_cached(void)
{
	return atomic_load(&X.c->header->counters.cached_pages);
}

/* ---- a client, as libntfsc stores (client/write.c) ---- */

/* The buffers of a page that bytes [s, e) of it touch. */
static uint32_t buffer_mask(const struct cache_inode *ci, uint32_t s, uint32_t e)
{
	uint32_t b0 = s / ci->buffer_size, b1 = (e - 1) / ci->buffer_size;

	return page_all_buffers(b1 + 1) & ~page_all_buffers(b0);
}

/* pwrite: prepare-write (raising the size when the write ends past it),
 * then page by page under its lock: the store, uptodate for a page stored
 * wholly that was not, and set_page_dirty of the buffers touched. */
static int client_write(struct cache_inode *ci, uint64_t pos, const uint8_t *src, uint64_t len)
{
	uint64_t end = pos + len, first = pos >> NTFSD_PAGE_SHIFT;
	uint64_t last = (end - 1) >> NTFSD_PAGE_SHIFT, i;
	int err;

	err = cache_prepare_write(ci, first, last - first + 1, end > ci->i_size ? end : 0, pos,
				  end);
	if (err)
		return err;
	for (i = first; i <= last; i++) {
		struct shm_page *p = cache_page(ci, i);
		uint64_t ps = i << NTFSD_PAGE_SHIFT;
		uint64_t s = pos > ps ? pos : ps, e = end < ps + PAGE ? end : ps + PAGE;

		cache_lock_page(ci, i);
		/* prepare-write made it write-ready, and skipped the read
		 * only of a page the write covers wholly (no cmocka assert:
		 * this runs in a thread too) */
		if (!(page_flags(p) & PG_write_ready) ||
		    (!(page_flags(p) & PG_uptodate) && (s != ps || e != ps + PAGE))) {
			cache_unlock_page(ci, i);
			fprintf(stderr, "page %llu not ready for the write: flags %#x\n",
				(unsigned long long)i, page_flags(p));
			return -EPROTO;
		}
		memcpy(cache_geom(ci)->data + s, src + (s - pos), (size_t)(e - s));
		if (!(page_flags(p) & PG_uptodate)) {
			atomic_store(&p->buf_uptodate, page_all_buffers(ci->buffers_per_page));
			page_set_bits(p, PG_buffers | PG_uptodate);
		}
		set_page_dirty(cache_dirty_for(ci, i), i, buffer_mask(ci, (uint32_t)(s - ps),
							  (uint32_t)(e - ps)));
		cache_unlock_page(ci, i);
	}
	return 0;
}

static void client_write_pattern(struct cache_inode *ci, uint64_t pos, uint64_t len,
				 unsigned seed)
{
	uint8_t *b = pattern(pos, len, seed);

	assert_int_equal(client_write(ci, pos, b, len), 0);
	free(b);
}

/* A client writing page state it should not: bytes stored and buffers
 * dirtied with no prepare-write, under the page lock. */
static void forge_dirty(struct cache_inode *ci, uint64_t index, uint32_t bufs, uint8_t byte,
			uint32_t from, uint32_t to)
{
	cache_lock_page(ci, index);
	memset(cache_geom(ci)->data + (index << NTFSD_PAGE_SHIFT) + from, byte, to - from);
	set_page_dirty(cache_dirty_for(ci, index), index, bufs);
	cache_unlock_page(ci, index);
}

/* The disk, as a fresh mount reads it, equals want[0, len). */
static void assert_disk(const struct ramfs_file *f, const uint8_t *want, uint64_t len)
{
	uint8_t *got = malloc(len);

	assert_non_null(got);
	assert_int_equal(ramfs_read_disk(f, 0, len, got), len);
	assert_memory_equal(got, want, len);
	free(got);
}

/* ---- 1. open, fault-in, close ---- */

static void test_read_fault_in(void **state)
{
	const uint64_t size = 3 * PAGE + 100;
	struct ramfs_file *f, *g, *h;
	struct cache_inode *ci, *again, *gi, *hi;
	uint8_t *want;
	uint64_t cached, dirty, wb, read_before;

	(void)state;
	fx_init(512, 256, 1 << 20);
	f = add_file("a", size, 1);
	want = pattern(0, size, 1);

	ci = open_file("/a");
	assert_int_equal(ci->i_size, size);
	assert_int_equal(ci->cached_pages, 0);
	assert_int_equal(ci->buffer_size, 512);
	assert_int_equal(ci->buffers_per_page, 8);
	/* clamped to the file: 4 pages, not 10 */
	assert_int_equal(cache_fault_in(ci, 0, 10), 0);
	assert_int_equal(atomic_load(&ci->cached_pages), 4);
	assert_int_equal(counter_cached(), 4);
	assert_int_equal(atomic_load(&X.c->header->counters.pages_read), 4);
	assert_memory_equal(cache_geom(ci)->data, want, size);
	/* the disk holds stale bytes past the end of the last block's data */
	assert_int_equal(f->disk[size], RAMFS_STALE);
	assert_true(all_zero(cache_geom(ci)->data + size, 4 * PAGE - size));
	for (unsigned i = 0; i < 4; i++) {
		assert_true(flags(ci, i) & PG_uptodate);
		assert_int_equal(atomic_load(&cache_page(ci, i)->buf_uptodate), 0xff);
	}
	assert_false(flags(ci, 4) & PG_uptodate);
	/* uptodate pages are not read again */
	assert_int_equal(cache_fault_in(ci, 0, 4), 0);
	assert_int_equal(atomic_load(&X.c->header->counters.pages_read), 4);

	/* closed, the inode stays while it has cached pages, and a reopen
	 * finds them */
	cache_close(ci);
	cache_count_pages(X.c, f->ino, &cached, &dirty, &wb);
	assert_int_equal(cached, 4);
	assert_int_equal(dirty, 0);
	assert_int_equal(wb, 0);
	again = open_file("/a");
	assert_ptr_equal(again, ci);
	assert_int_equal(cache_fault_in(again, 0, 4), 0);
	assert_int_equal(atomic_load(&X.c->header->counters.pages_read), 4);
	assert_int_equal(atomic_load(&X.c->header->counters.open_files), 1);
	cache_close(again);
	assert_int_equal(atomic_load(&X.c->header->counters.open_files), 0);

	/* bytes past the disk's initialized size and holes read as zeroes,
	 * whatever the disk holds there */
	g = add_file("b", 4 * PAGE, 2);
	g->disk_init = PAGE + 1000;        /* written past it, never initialized */
	g->block_used[2] = 0;              /* block 2 a hole (its bytes stay) */
	atomic_fetch_add(&X.fs->free_blocks, 1);
	gi = open_file("/b");
	assert_int_equal(cache_fault_in(gi, 0, 4), 0);
	free(want);
	want = pattern(0, PAGE + 1000, 2);
	assert_memory_equal(cache_geom(gi)->data, want, PAGE + 1000);
	assert_true(all_zero(cache_geom(gi)->data + PAGE + 1000, 3 * PAGE - 1000));
	cache_close(gi);

	/* a read error leaves the page not uptodate and not counted */
	h = add_file("c", 2 * PAGE, 3);
	h->read_err = -EIO;
	hi = open_file("/c");
	read_before = atomic_load(&X.c->header->counters.pages_read);
	cached = counter_cached();
	assert_int_equal(cache_fault_in(hi, 0, 2), -EIO);
	assert_false(flags(hi, 0) & PG_uptodate);
	assert_int_equal(atomic_load(&hi->cached_pages), 0);
	assert_int_equal(counter_cached(), cached);
	assert_int_equal(atomic_load(&X.c->header->counters.pages_read), read_before);
	h->read_err = 0;
	assert_int_equal(cache_fault_in(hi, 0, 2), 0);
	assert_int_equal(atomic_load(&hi->cached_pages), 2);
	cache_close(hi);

	/* what cannot be opened */
	assert_int_equal(cache_open(X.c, "/", &ci), -EISDIR);
	assert_int_equal(cache_open(X.c, "/nope", &ci), -ENOENT);
	free(want);
	fx_done();
}

/* ---- 2. the write path and a sync ---- */

static void test_write_back(void **state)
{
	const uint64_t old = PAGE, new_size = 7000;
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint8_t *want;
	uint64_t mark, sizes_before, data_seq, pass_mark, t0 = cache_realtime_ns();

	(void)state;
	fx_init(512, 256, 1 << 20);
	f = add_file("w", old, 1);
	ci = open_file("/w");
	want = pattern(0, 2 * PAGE, 1);
	fill(want + 2000, 2000, new_size - 2000, 2);
	memset(want + new_size, 0, 2 * PAGE - new_size);

	/* a write growing the file: prepare-write raises i_size at once, the
	 * disk's size follows at write-back */
	client_write_pattern(ci, 2000, new_size - 2000, 2);
	assert_int_equal(ci->i_size, new_size);
	assert_int_equal(f->data_size, new_size);
	assert_int_equal(atomic_load(&ci->state->i_size), new_size);
	assert_int_equal(X.c->header->inodes[ci->slot].i_size, new_size);
	assert_int_equal(f->disk_size, old);
	assert_true(ci->sizes_dirty);
	assert_int_equal(ramfs_blocks_used(f), 2);
	assert_int_equal(cache_nr_dirty(ci), 2);
	assert_true(flags(ci, 0) & PG_dirty);
	assert_true(flags(ci, 1) & PG_dirty);
	/* both partly written, so both read first (page 1 as zeroes) */
	assert_true(flags(ci, 0) & PG_uptodate);
	assert_true(flags(ci, 1) & PG_uptodate);
	assert_int_equal(atomic_load(&cache_page(ci, 0)->buf_dirty), 0xf8);     /* [1536, 4096) */
	assert_int_equal(atomic_load(&cache_page(ci, 1)->buf_dirty), 0x3f);     /* [4096, 7168) */

	/* the growth moved the times (written at the next write_inode) */
	assert_true(atomic_load(&ci->times_dirty));
	assert_true(atomic_load(&ci->mtime_ns) >= t0);

	mark = ramfs_now(X.fs);
	sizes_before = f->size_writes;
	assert_int_equal(writeback_inode(ci, true), 0);
	/* exactly the dirty buffers reached the disk, nothing past i_size */
	assert_int_equal(ramfs_written_since(f, mark), 5 * 512 + 6 * 512);
	assert_int_equal(ramfs_written_in(f, mark, 0, 1536), 0);
	assert_int_equal(ramfs_written_in(f, mark, 1536, PAGE - 1536), 5 * 512);
	assert_int_equal(ramfs_written_in(f, mark, PAGE, 6 * 512), 6 * 512);
	assert_int_equal(ramfs_written_in(f, mark, 7168, UINT32_MAX), 0);
	assert_int_equal(ramfs_zeroed_since(f, mark), 0);
	assert_true(all_zero(f->disk + new_size, 7168 - new_size));
	assert_int_equal(f->disk[7168], RAMFS_STALE);
	/* the sizes are on disk, after the data, and the flush after both */
	assert_int_equal(f->disk_size, new_size);
	assert_int_equal(f->disk_init, new_size);
	assert_int_equal(atomic_load(&ci->disk_init), new_size);
	assert_false(ci->sizes_dirty);
	assert_int_equal(f->size_writes, sizes_before + 1);
	/* and the times, as of the write-back of the data */
	assert_false(atomic_load(&ci->times_dirty));
	assert_int_equal(f->times_writes, 1);
	assert_true(f->disk_mtime_ns >= t0 && f->disk_mtime_ns <= cache_realtime_ns());
	data_seq = ramfs_last_write_seq(f);
	assert_true(f->size_seq > data_seq);
	assert_int_equal(atomic_load(&X.fs->sync_calls), 1);
	assert_true(atomic_load(&X.fs->last_sync_seq) > f->size_seq);
	assert_int_equal(atomic_load(&X.fs->write_inode_calls), 1);
	assert_disk(f, want, new_size);
	/* clean, nothing under writeback */
	assert_false(cache_has_dirty(ci));
	assert_false(flags(ci, 0) & (PG_dirty | PG_writeback | PG_error));
	assert_false(flags(ci, 1) & (PG_dirty | PG_writeback | PG_error));
	assert_int_equal(atomic_load(&cache_page(ci, 0)->buf_dirty), 0);
	assert_int_equal(atomic_load(&X.c->header->counters.writeback_pages), 0);
	assert_int_equal(atomic_load(&X.c->pages_written), 2);
	assert_int_equal(errseq_check_and_advance(ci, &(uint32_t){ 0 }), 0);

	/* a second sync writes no data, flushes again */
	pass_mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_int_equal(ramfs_written_since(f, pass_mark), 0);
	assert_int_equal(f->size_writes, sizes_before + 1);
	assert_int_equal(f->times_writes, 1);          /* nothing changed: times kept */
	assert_int_equal(atomic_load(&X.fs->sync_calls), 2);

	/* a client storing past i_size and dirtying those buffers: the tail
	 * is zeroed, the buffer across i_size written with zeroes past it,
	 * the buffers wholly past it cleaned unwritten */
	pass_mark = ramfs_now(X.fs);
	forge_dirty(ci, 1, 0xe0, 0xAA, (uint32_t)(new_size - PAGE), PAGE);
	assert_int_equal(writeback_inode(ci, false), 0);
	assert_int_equal(ramfs_written_since(f, pass_mark), 512);
	assert_int_equal(ramfs_written_in(f, pass_mark, 6656, 512), 512);
	assert_true(all_zero(cache_geom(ci)->data + new_size, 2 * PAGE - new_size));
	assert_true(all_zero(f->disk + new_size, 7168 - new_size));
	assert_false(cache_has_dirty(ci));
	assert_disk(f, want, new_size);

	/* growth past what a client left after the end (stored, not
	 * dirtied): the bytes between the old and the new end are zeroes */
	cache_lock_page(ci, 1);
	memset(cache_geom(ci)->data + new_size, 0xBB, 2 * PAGE - new_size);
	cache_unlock_page(ci, 1);
	client_write_pattern(ci, 7500, 100, 3);
	fill(want + 7500, 7500, 100, 3);
	assert_int_equal(ci->i_size, 7600);
	assert_true(all_zero(cache_geom(ci)->data + new_size, 7500 - new_size));
	assert_true(all_zero(cache_geom(ci)->data + 7600, 2 * PAGE - 7600));
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_disk(f, want, 7600);
	cache_close(ci);

	/* a restarted cache reads what the disk holds */
	fx_restart();
	ci = open_file("/w");
	assert_int_equal(ci->i_size, 7600);
	assert_int_equal(cache_fault_in(ci, 0, 2), 0);
	assert_memory_equal(cache_geom(ci)->data, want, 2 * PAGE);
	cache_close(ci);
	free(want);
	fx_done();
}

/* ---- 3. only dirty buffers are written ---- */

/* Writes of 1 byte in page 1 (at 1000: buffer 1), 512 bytes in page 2
 * (buffer 6 exactly) and 700 bytes in page 3 (at 100: buffers 0 and 1)
 * with buffers of `sector` bytes; want[s]: sector s is to be written. */
static void partial_buffers(uint32_t sector, const bool *want_sector)
{
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint8_t *want;
	uint64_t mark, s, total = 0;

	fx_init(sector, 64, 1 << 20);
	f = add_file("p", 4 * PAGE, 1);
	want = pattern(0, 4 * PAGE, 1);
	ci = open_file("/p");
	assert_int_equal(cache_fault_in(ci, 0, 4), 0);
	client_write_pattern(ci, PAGE + 1000, 1, 2);
	client_write_pattern(ci, 2 * PAGE + 6 * 512, 512, 3);
	client_write_pattern(ci, 3 * PAGE + 100, 700, 4);
	fill(want + PAGE + 1000, PAGE + 1000, 1, 2);
	fill(want + 2 * PAGE + 6 * 512, 2 * PAGE + 6 * 512, 512, 3);
	fill(want + 3 * PAGE + 100, 3 * PAGE + 100, 700, 4);
	assert_int_equal(cache_nr_dirty(ci), 3);
	assert_false(flags(ci, 0) & PG_dirty);

	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, true), 0);
	for (s = 0; s < 4 * PAGE / 512; s++) {
		uint64_t n = ramfs_written_in(f, mark, s * 512, 512);

		if (n != (want_sector[s] ? 512u : 0u))
			fail_msg("sector %llu: %llu bytes written, want %u (buffers of %u bytes)",
				 (unsigned long long)s, (unsigned long long)n,
				 want_sector[s] ? 512u : 0u, sector);
		total += n;
	}
	assert_int_equal(ramfs_written_since(f, mark), total);
	assert_int_equal(ramfs_zeroed_since(f, mark), 0);
	assert_disk(f, want, 4 * PAGE);
	assert_false(cache_has_dirty(ci));
	cache_close(ci);
	free(want);
	fx_done();
}

static void test_partial_buffers(void **state)
{
	bool want[32] = { false };
	unsigned s;

	(void)state;
	/* 512-byte sectors: page 1 buffer 1, page 2 buffer 6, page 3 buffers 0-1 */
	want[8 + 1] = want[16 + 6] = want[24 + 0] = want[24 + 1] = true;
	partial_buffers(512, want);
	/* 4096-byte sectors: one buffer a page, so pages 1-3 whole */
	memset(want, 0, sizeof(want));
	for (s = 8; s < 32; s++)
		want[s] = true;
	partial_buffers(4096, want);
}

/* ---- 4. a failed writepage ---- */

static void test_writepage_eio(void **state)
{
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint8_t *want;
	uint32_t h1, h2, h3, h4;
	uint64_t mark, i;

	(void)state;
	fx_init(512, 64, 1 << 20);
	f = add_file("e", 4 * PAGE, 1);
	want = pattern(0, 4 * PAGE, 2);
	memcpy(want + 2 * PAGE, f->disk + 2 * PAGE, PAGE);     /* page 2 will fail */
	ci = open_file("/e");
	h1 = errseq_sample(ci);
	h2 = errseq_sample(ci);
	assert_int_equal(errseq_check_and_advance(ci, &h1), 0);

	client_write_pattern(ci, 0, 4 * PAGE, 2);
	ramfs_inject_page_error(f, 2, -EIO, 1);
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, true), -EIO);
	/* the others are written, page 2 is not; it is clean, with PG_error,
	 * and the only page with it */
	for (i = 0; i < 4; i++) {
		assert_int_equal(ramfs_written_in(f, mark, i * PAGE, PAGE), i == 2 ? 0 : PAGE);
		assert_int_equal(!!(flags(ci, i) & PG_error), i == 2);
		assert_false(flags(ci, i) & (PG_dirty | PG_writeback));
	}
	assert_false(cache_has_dirty(ci));
	assert_int_equal(atomic_load(&X.c->wb_errors), 1);
	assert_int_equal(atomic_load(&X.c->header->counters.writeback_pages), 0);
	assert_disk(f, want, 4 * PAGE);
	/* the write-back and the flush went on around the failure */
	assert_int_equal(atomic_load(&X.fs->sync_calls), 1);

	/* each handle sees the error once */
	assert_int_equal(errseq_check_and_advance(ci, &h1), -EIO);
	assert_int_equal(errseq_check_and_advance(ci, &h1), 0);
	assert_int_equal(errseq_check_and_advance(ci, &h2), -EIO);
	assert_int_equal(errseq_check_and_advance(ci, &h2), 0);
	/* a handle opened after it was seen does not */
	h3 = errseq_sample(ci);
	assert_int_equal(errseq_check_and_advance(ci, &h3), 0);

	/* a rewrite of part of the page leaves PG_error: the disk may not
	 * hold the rest of it */
	client_write_pattern(ci, 2 * PAGE + 512, 512, 3);
	fill(want + 2 * PAGE + 512, 2 * PAGE + 512, 512, 3);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_true(flags(ci, 2) & PG_error);
	/* a rewrite of all of it that succeeds clears it */
	client_write_pattern(ci, 2 * PAGE, PAGE, 4);
	fill(want + 2 * PAGE, 2 * PAGE, PAGE, 4);
	assert_int_equal(writeback_inode(ci, true), 0);
	for (i = 0; i < 4; i++)
		assert_false(flags(ci, i) & PG_error);
	assert_disk(f, want, 4 * PAGE);
	assert_int_equal(errseq_check_and_advance(ci, &h1), 0);
	assert_int_equal(errseq_check_and_advance(ci, &h3), 0);

	/* an error no handle has seen is reported to a handle sampled after it */
	client_write_pattern(ci, 0, PAGE, 5);
	ramfs_inject_page_error(f, 0, -EIO, 1);
	assert_int_equal(writeback_inode(ci, false), -EIO);
	h4 = errseq_sample(ci);
	assert_int_equal(errseq_check_and_advance(ci, &h4), -EIO);
	assert_int_equal(errseq_check_and_advance(ci, &h4), 0);
	assert_int_equal(errseq_check_and_advance(ci, &h1), -EIO);
	assert_int_equal(atomic_load(&X.c->wb_errors), 2);
	assert_true(flags(ci, 0) & PG_error);
	assert_false(flags(ci, 1) & PG_error);
	cache_close(ci);
	free(want);
	fx_done();
}

/* ---- 5. out of memory ---- */

static void test_enomem(void **state)
{
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint8_t *want;
	uint32_t h;
	uint64_t mark, i;

	(void)state;
	fx_init(512, 64, 1 << 20);
	f = add_file("m", 4 * PAGE, 1);
	want = pattern(0, 4 * PAGE, 2);
	ci = open_file("/m");
	h = errseq_sample(ci);
	client_write_pattern(ci, 0, 4 * PAGE, 2);

	/* a pass: the first three pages run out of memory and are dirty
	 * again, which is not an error; the fourth is written */
	atomic_store(&X.fs->enomem_writepage, 3);
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, false), 0);
	assert_int_equal(atomic_load(&ci->wb_enomem), 3);
	assert_int_equal(cache_nr_dirty(ci), 3);
	for (i = 0; i < 3; i++) {
		assert_true(flags(ci, i) & PG_dirty);
		assert_int_equal(atomic_load(&cache_page(ci, i)->buf_dirty), 0xff);
		assert_int_equal(ramfs_written_in(f, mark, i * PAGE, PAGE), 0);
	}
	assert_false(flags(ci, 3) & PG_dirty);
	assert_int_equal(ramfs_written_in(f, mark, 3 * PAGE, PAGE), PAGE);
	assert_int_equal(atomic_load(&X.c->header->counters.writeback_pages), 0);

	/* a sync retries, in batches now, until every page is clean */
	X.fs->batch_pages = 4;
	atomic_store(&X.fs->enomem_writepage, 5);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_int_equal(atomic_load(&X.fs->enomem_writepage), 0);
	assert_int_equal(atomic_load(&ci->wb_enomem), 8);
	assert_false(cache_has_dirty(ci));
	for (i = 0; i < 4; i++)
		assert_false(flags(ci, i) & (PG_dirty | PG_error | PG_writeback));
	assert_disk(f, want, 4 * PAGE);
	assert_int_equal(errseq_check_and_advance(ci, &h), 0);
	assert_int_equal(atomic_load(&X.c->wb_errors), 0);

	/* a pass that cannot start leaves every page dirty; a sync tries again */
	client_write_pattern(ci, PAGE, 2 * PAGE, 3);
	fill(want + PAGE, PAGE, 2 * PAGE, 3);
	atomic_store(&X.fs->enomem_begin, 1);
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, false), 0);
	assert_int_equal(ramfs_written_since(f, mark), 0);
	assert_int_equal(cache_nr_dirty(ci), 2);
	atomic_store(&X.fs->enomem_begin, 2);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_false(cache_has_dirty(ci));
	assert_int_equal(ramfs_written_since(f, mark), 2 * PAGE);
	assert_disk(f, want, 4 * PAGE);
	assert_int_equal(errseq_check_and_advance(ci, &h), 0);
	cache_close(ci);
	free(want);
	fx_done();
}

/* ---- 6. truncate ---- */

static void test_truncate(void **state)
{
	const uint64_t small = PAGE + 100, big = 3 * PAGE + 10;
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint8_t *want;
	uint64_t mark, free_before, cached, dirty, wb;

	(void)state;
	fx_init(512, 64, 1 << 20);
	f = add_file("t", 4 * PAGE, 1);
	want = pattern(0, 4 * PAGE, 1);
	ci = open_file("/t");
	assert_int_equal(cache_fault_in(ci, 0, 4), 0);
	client_write_pattern(ci, PAGE, 3 * PAGE, 2);
	fill(want + PAGE, PAGE, 100, 2);
	memset(want + small, 0, 4 * PAGE - small);
	assert_int_equal(cache_nr_dirty(ci), 3);

	/* down, with pages 1-3 dirty: 2 and 3 are dropped unwritten, page 1
	 * keeps its dirty bytes below the new end */
	free_before = atomic_load(&X.fs->free_blocks);
	mark = ramfs_now(X.fs);
	assert_int_equal(cache_truncate(ci, small), 0);
	assert_int_equal(ci->i_size, small);
	assert_int_equal(f->disk_size, small);             /* the inode is written at once */
	assert_int_equal(X.c->header->inodes[ci->slot].i_size, small);
	assert_int_equal(atomic_load(&ci->wb_fence), UINT64_MAX);
	assert_int_equal(ramfs_blocks_used(f), 2);
	assert_int_equal(atomic_load(&X.fs->free_blocks), free_before + 2);
	for (unsigned i = 2; i < 4; i++) {
		assert_false(flags(ci, i) & (PG_uptodate | PG_dirty | PG_write_ready));
		assert_false(dirty_bitmap_test(cache_dirty(ci), i));
	}
	assert_true(flags(ci, 1) & PG_dirty);
	assert_true(flags(ci, 1) & PG_uptodate);
	assert_int_equal(atomic_load(&ci->cached_pages), 2);
	assert_true(all_zero(cache_geom(ci)->data + small, 4 * PAGE - small));
	cache_count_pages(X.c, f->ino, &cached, &dirty, &wb);
	assert_int_equal(cached, 2);
	assert_int_equal(dirty, 1);
	assert_int_equal(ramfs_written_since(f, mark), 0);

	assert_int_equal(writeback_inode(ci, true), 0);
	/* only page 1's first buffer, the one across the new end */
	assert_int_equal(ramfs_written_since(f, mark), 512);
	assert_int_equal(ramfs_written_in(f, mark, PAGE, 512), 512);
	assert_int_equal(f->disk_size, small);
	assert_disk(f, want, small);

	/* up: the new range reads as zeroes, a hole on the disk, whatever a
	 * client left past the old end in the cache */
	cache_lock_page(ci, 1);
	memset(cache_geom(ci)->data + small, 0xBB, 2 * PAGE - small);
	cache_unlock_page(ci, 1);
	free_before = atomic_load(&X.fs->free_blocks);
	assert_int_equal(cache_truncate(ci, big), 0);
	assert_int_equal(ci->i_size, big);
	assert_int_equal(f->disk_size, big);
	assert_int_equal(atomic_load(&X.fs->free_blocks), free_before);
	assert_int_equal(ramfs_blocks_used(f), 2);
	assert_int_equal(cache_fault_in(ci, 0, 4), 0);
	assert_memory_equal(cache_geom(ci)->data, want, small);
	assert_true(all_zero(cache_geom(ci)->data + small, 4 * PAGE - small));
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_int_equal(ramfs_written_since(f, mark), 0);
	assert_disk(f, want, big);
	cache_close(ci);

	/* and so after a restart: the stale bytes past the old end (page 1's
	 * tail still holds the first pattern on the disk) never show */
	fx_restart();
	ci = open_file("/t");
	assert_int_equal(ci->i_size, big);
	assert_int_equal(cache_fault_in(ci, 0, 4), 0);
	assert_memory_equal(cache_geom(ci)->data, want, small);
	assert_true(all_zero(cache_geom(ci)->data + small, 4 * PAGE - small));
	/* writing into the hole allocates it */
	client_write_pattern(ci, 2 * PAGE, 100, 3);
	fill(want + 2 * PAGE, 2 * PAGE, 100, 3);
	assert_int_equal(ramfs_blocks_used(f), 3);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_disk(f, want, big);
	cache_close(ci);
	free(want);
	fx_done();
}

/* ---- 7. ENOSPC ---- */

static void test_enospc(void **state)
{
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint32_t before[6];
	uint64_t i, cached;
	uint8_t *b = pattern(0, 2 * PAGE, 9);

	(void)state;
	fx_init(512, 3, 1 << 20);        /* the file takes 2, 1 free */
	f = add_file("s", 2 * PAGE - 300, 1);
	ci = open_file("/s");
	assert_int_equal(cache_fault_in(ci, 0, 2), 0);
	for (i = 0; i < 6; i++)
		before[i] = flags(ci, i);
	cached = atomic_load(&ci->cached_pages);

	/* growth by two pages needs two blocks */
	assert_int_equal(client_write(ci, 2 * PAGE, b, 2 * PAGE), -ENOSPC);
	assert_non_null(strstr(ntfs_last_error(), "free"));
	assert_int_equal(ci->i_size, 2 * PAGE - 300);
	assert_int_equal(f->data_size, 2 * PAGE - 300);
	assert_int_equal(X.c->header->inodes[ci->slot].i_size, 2 * PAGE - 300);
	assert_int_equal(atomic_load(&ci->state->i_size), 2 * PAGE - 300);
	assert_false(ci->sizes_dirty);
	for (i = 0; i < 6; i++)
		assert_int_equal(flags(ci, i), before[i]);
	assert_int_equal(atomic_load(&ci->cached_pages), cached);
	assert_int_equal(ramfs_blocks_used(f), 2);
	assert_int_equal(f->nr_blocks, 2);
	assert_int_equal(atomic_load(&X.fs->free_blocks), 1);
	assert_false(cache_has_dirty(ci));

	/* one page fits */
	assert_int_equal(client_write(ci, 2 * PAGE, b, PAGE), 0);
	assert_int_equal(ci->i_size, 3 * PAGE);
	assert_int_equal(atomic_load(&X.fs->free_blocks), 0);
	/* and filling nothing new needs no block */
	assert_int_equal(client_write(ci, 100, b, 200), 0);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_int_equal(f->disk_size, 3 * PAGE);
	cache_close(ci);
	free(b);
	fx_done();
}

/* ---- 8. reclaim ---- */

static void test_reclaim(void **state)
{
	const uint64_t limit = 16, n = 64;
	struct ramfs_file *f, *g;
	struct cache_inode *ci, *gi, *p;
	uint8_t *want;
	uint64_t i, read_before, cached, dirty, wb;
	bool found;

	(void)state;
	fx_init(512, 256, limit * PAGE);
	assert_int_equal(X.c->limit_pages, limit);
	f = add_file("r", n * PAGE, 1);
	g = add_file("q", 8 * PAGE, 2);
	want = pattern(0, n * PAGE, 1);

	/* an inode nobody has open, with cached pages */
	gi = open_file("/q");
	assert_int_equal(cache_fault_in(gi, 0, 8), 0);
	cache_close(gi);

	ci = open_file("/r");
	for (i = 0; i < n; i++) {
		assert_int_equal(cache_fault_in(ci, i, 1), 0);
		assert_true(counter_cached() <= limit);
		assert_memory_equal(cache_geom(ci)->data + i * PAGE, want + i * PAGE, PAGE);
	}
	assert_true(atomic_load(&ci->cached_pages) <= limit);
	assert_true(atomic_load(&X.c->header->counters.pages_reclaimed) >= n + 8 - limit);
	/* the unused inode went with its last page */
	for (p = X.c->inodes, found = false; p; p = p->next)
		found |= p->mft_no == g->ino;
	assert_false(found);
	cache_count_pages(X.c, g->ino, &cached, &dirty, &wb);
	assert_int_equal(cached, 0);
	/* a reclaimed page is read again, the same bytes */
	assert_false(flags(ci, 0) & PG_uptodate);
	read_before = atomic_load(&X.c->header->counters.pages_read);
	assert_int_equal(cache_fault_in(ci, 0, 1), 0);
	assert_int_equal(atomic_load(&X.c->header->counters.pages_read), read_before + 1);
	assert_memory_equal(cache_geom(ci)->data, want, PAGE);

	/* dirty pages are never reclaimed */
	client_write_pattern(ci, 10 * PAGE, 4 * PAGE, 3);
	fill(want + 10 * PAGE, 10 * PAGE, 4 * PAGE, 3);
	for (i = 0; i < n; i++) {
		assert_int_equal(cache_fault_in(ci, i, 1), 0);
		assert_true(counter_cached() <= limit);
	}
	for (i = 10; i < 14; i++) {
		assert_true(flags(ci, i) & PG_uptodate);
		assert_true(flags(ci, i) & PG_dirty);
	}
	assert_memory_equal(cache_geom(ci)->data + 10 * PAGE, want + 10 * PAGE, 4 * PAGE);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_disk(f, want, n * PAGE);
	/* clean now, they can go (within a few turns of the clock) */
	for (unsigned turn = 0; turn < 4 && (flags(ci, 10) & PG_uptodate); turn++)
		for (i = 20; i < n; i++) {
			assert_int_equal(cache_fault_in(ci, i, 1), 0);
			assert_true(counter_cached() <= limit);
		}
	assert_false(flags(ci, 10) & PG_uptodate);
	cache_close(ci);
	free(want);
	fx_done();
}

/* ---- 9. the pages write-back must not write ---- */

static void test_not_written(void **state)
{
	struct ramfs_file *f;
	struct cache_inode *ci;
	uint64_t mark;

	(void)state;
	fx_init(512, 64, 1 << 20);
	f = add_file("n", 4 * PAGE, 1);
	ci = open_file("/n");
	assert_int_equal(cache_fault_in(ci, 0, 2), 0);
	client_write_pattern(ci, 0, 2 * PAGE, 2);

	/* a fence at the end of page 0 (as a shrinking truncate sets it):
	 * page 1 ends past it and stays dirty */
	atomic_store(&ci->wb_fence, PAGE);
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, false), 0);
	assert_int_equal(ramfs_written_since(f, mark), PAGE);
	assert_int_equal(ramfs_written_in(f, mark, 0, PAGE), PAGE);
	assert_true(flags(ci, 1) & PG_dirty);
	assert_int_equal(atomic_load(&cache_page(ci, 1)->buf_dirty), 0xff);
	assert_int_equal(cache_nr_dirty(ci), 1);

	/* a dirty page never made uptodate: the cache does not hold its
	 * bytes, so it is cleaned, never written, and said so; the fence
	 * lifted, page 1 goes */
	assert_false(flags(ci, 3) & PG_uptodate);
	forge_dirty(ci, 3, 0xff, 0xAB, 0, PAGE);
	atomic_store(&ci->wb_fence, UINT64_MAX);
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, false), 0);
	assert_int_equal(ramfs_written_since(f, mark), PAGE);
	assert_int_equal(ramfs_written_in(f, mark, PAGE, PAGE), PAGE);
	assert_false(flags(ci, 3) & PG_dirty);
	assert_false(dirty_bitmap_test(cache_dirty(ci), 3));
	assert_true(atomic_load(&ci->warned_not_uptodate));
	assert_false(cache_has_dirty(ci));

	/* a page wholly past i_size (the high-water mark stays after a
	 * shrink) dirtied and made uptodate by a client: discarded */
	assert_int_equal(cache_truncate(ci, 2 * PAGE), 0);
	assert_true(cache_used_pages(ci) >= 4);
	cache_lock_page(ci, 3);
	page_set_bits(cache_page(ci, 3), PG_uptodate);
	cache_unlock_page(ci, 3);
	forge_dirty(ci, 3, 0xff, 0xCD, 0, PAGE);
	mark = ramfs_now(X.fs);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_int_equal(ramfs_written_since(f, mark), 0);
	assert_false(cache_has_dirty(ci));
	assert_int_equal(f->disk_size, 2 * PAGE);
	cache_close(ci);
	fx_done();
}

/* ---- 10. room to grow ---- */

static void test_trim_room(void **state)
{
	struct ramfs_file *f, *h, *big;
	struct cache_inode *ci, *bi, *p;
	uint64_t free_before, i, cached, dirty, wb;

	(void)state;
	fx_init(512, 64, 16 * PAGE);
	X.fs->growth_room_blocks = 4;
	f = add_file("g", PAGE, 1);
	free_before = atomic_load(&X.fs->free_blocks);
	ci = open_file("/g");
	client_write_pattern(ci, PAGE, PAGE, 2);
	assert_true(ci->trim_pending);
	assert_int_equal(ramfs_blocks_used(f), 6);
	assert_int_equal(atomic_load(&X.fs->free_blocks), free_before - 5);
	/* open: the room stays across a sync */
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_true(ci->trim_pending);
	assert_int_equal(ramfs_blocks_used(f), 6);
	/* nobody has it open (a work reference keeps it): a sync gives it back */
	cache_inode_get(ci);
	cache_close(ci);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_false(ci->trim_pending);
	assert_int_equal(f->trims, 1);
	assert_int_equal(ramfs_blocks_used(f), 2);
	assert_int_equal(f->nr_blocks, 2);
	assert_int_equal(atomic_load(&X.fs->free_blocks), free_before - 1);
	assert_int_equal(f->disk_size, 2 * PAGE);
	cache_inode_put(ci);

	/* closed with its sizes written, the room given back by nobody yet
	 * (the flusher's next pass would): reclaim may take its pages but
	 * must not forget the inode, or the room stays allocated for good */
	h = add_file("h", PAGE, 3);
	big = add_file("big", 32 * PAGE, 4);
	free_before = atomic_load(&X.fs->free_blocks);
	ci = open_file("/h");
	client_write_pattern(ci, PAGE, PAGE, 5);
	assert_true(ci->trim_pending);
	assert_int_equal(writeback_inode(ci, true), 0);
	assert_false(ci->sizes_dirty);
	cache_close(ci);
	ci = NULL;
	bi = open_file("/big");
	for (i = 0; i < 32; i++)
		assert_int_equal(cache_fault_in(bi, i, 1), 0);
	cache_count_pages(X.c, h->ino, &cached, &dirty, &wb);
	assert_int_equal(cached, 0);          /* its pages went */
	for (p = X.c->inodes; p && p->mft_no != h->ino; p = p->next)
		;
	assert_non_null(p);                   /* the inode did not */
	assert_true(p->trim_pending);
	assert_true(atomic_load(&bi->cached_pages) <= 16);
	assert_int_equal(ramfs_blocks_used(big), 32);
	cache_close(bi);
	/* shutdown's trim gives the room back */
	cache_trim_all(X.c);
	assert_int_equal(h->trims, 1);
	assert_int_equal(ramfs_blocks_used(h), 2);
	assert_int_equal(atomic_load(&X.fs->free_blocks), free_before - 1);
	fx_done();
}

/* ---- 11. write-back racing a writer ---- */

struct racer {
	struct cache_inode *ci;
	uint8_t *model;
	uint64_t max_bytes;
	unsigned iterations;
	int err;
	_Atomic bool done;
};

static void *writer_thread(void *arg)
{
	struct racer *r = arg;
	unsigned seed = 12345, i;

	for (i = 0; i < r->iterations; i++) {
		uint64_t pos, len;
		uint8_t buf[3 * PAGE];

		seed = seed * 1103515245u + 12345u;
		pos = (seed >> 8) % (r->max_bytes - 1);
		seed = seed * 1103515245u + 12345u;
		len = 1 + (seed >> 8) % (sizeof(buf) - 1);
		if (pos + len > r->max_bytes)
			len = r->max_bytes - pos;
		fill(buf, pos, len, i);
		r->err = client_write(r->ci, pos, buf, len);
		if (r->err)
			break;
		memcpy(r->model + pos, buf, len);
	}
	atomic_store(&r->done, true);
	return NULL;
}

static void test_concurrent_writeback(void **state)
{
	struct racer r = { .max_bytes = 16 * PAGE, .iterations = 3000 };
	struct ramfs_file *f;
	pthread_t t;
	unsigned passes = 0;

	(void)state;
	fx_init(512, 64, 1 << 20);
	X.fs->batch_pages = 3;
	f = add_file("x", 4 * PAGE + 123, 1);
	r.model = calloc(1, r.max_bytes);
	assert_non_null(r.model);
	fill(r.model, 0, 4 * PAGE + 123, 1);
	r.ci = open_file("/x");
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &r), 0);
	while (!atomic_load(&r.done)) {
		struct timespec ts = { 0, 200000 };

		assert_int_equal(writeback_inode(r.ci, passes % 8 == 7), 0);
		passes++;
		nanosleep(&ts, NULL);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(writeback_inode(r.ci, true), 0);
	assert_false(cache_has_dirty(r.ci));
	assert_int_equal(f->disk_size, r.ci->i_size);
	assert_disk(f, r.model, r.ci->i_size);
	assert_true(passes > 1);
	cache_close(r.ci);
	free(r.model);
	fx_done();
}

/* ---- 12. segments growing under readers, writers and write-back ---- */

struct grower {
	struct cache_inode *ci;
	uint8_t *model;
	uint64_t max_bytes;
	_Atomic uint64_t size;          /* bytes the model holds */
	int err;
	_Atomic bool done;
};

/* Appends (and rewrites below the end) until the file is max_bytes: with
 * one page of room, the segments grow at every doubling. */
static void *grower_thread(void *arg)
{
	struct grower *g = arg;
	unsigned seed = 777;
	uint64_t size = atomic_load(&g->size);

	while (size < g->max_bytes) {
		uint8_t buf[3 * PAGE];
		uint64_t pos, len;

		seed = seed * 1103515245u + 12345u;
		len = 1 + (seed >> 8) % (sizeof(buf) - 1);
		seed = seed * 1103515245u + 12345u;
		pos = (seed >> 8) % 4 == 0 && size ? (seed >> 10) % size : size;
		if (pos + len > g->max_bytes)
			len = g->max_bytes - pos;
		fill(buf, pos, len, seed);
		g->err = client_write(g->ci, pos, buf, len);
		if (g->err)
			break;
		memcpy(g->model + pos, buf, len);
		if (pos + len > size)
			size = pos + len;
		atomic_store(&g->size, size);
	}
	atomic_store(&g->done, true);
	return NULL;
}

/* Reads pages the writer has finished with, through whatever mapping is
 * current, while the segments grow under it. */
static void *reader_thread(void *arg)
{
	struct grower *g = arg;
	unsigned seed = 4242;

	while (!atomic_load(&g->done)) {
		uint64_t pages = cache_used_pages(g->ci), i;

		if (!pages)
			continue;
		seed = seed * 1103515245u + 12345u;
		i = (seed >> 8) % pages;
		if (cache_fault_in(g->ci, i, 1 + (seed >> 4) % 4)) {
			g->err = -EIO;
			break;
		}
		if (cache_trylock_page(g->ci, i))
			cache_unlock_page(g->ci, i);
		(void)page_flags(cache_page(g->ci, i));
	}
	return NULL;
}

static void test_growth_racing(void **state)
{
	unsigned rounds = RAMFS_MAX_FILES - 1, growths = 0;

	(void)state;
	fx_init(512, RAMFS_MAX_FILES * RAMFS_MAX_PAGES, 1 << 22);
	X.geo.room_pages = 1;
	fx_restart();                   /* the cache with one page of room */
	for (unsigned r = 0; r < rounds; r++) {
		struct grower g = { .max_bytes = RAMFS_MAX_BYTES };
		char name[16], path[20];
		struct ramfs_file *f;
		struct cache_geom *geo;
		pthread_t w, rd;

		snprintf(name, sizeof(name), "g%u", r);
		snprintf(path, sizeof(path), "/g%u", r);
		f = add_file(name, 1, r);       /* ramfs files are never empty */
		g.model = calloc(1, g.max_bytes);
		assert_non_null(g.model);
		{
			uint8_t *b = pattern(0, 1, r);

			g.model[0] = b[0];
			free(b);
			atomic_store(&g.size, 1);
		}
		g.ci = open_file(path);
		assert_int_equal(cache_nr_pages(g.ci), 2);   /* its page and one of room */
		assert_int_equal(pthread_create(&w, NULL, grower_thread, &g), 0);
		assert_int_equal(pthread_create(&rd, NULL, reader_thread, &g), 0);
		while (!atomic_load(&g.done)) {
			struct timespec ts = { 0, 100000 };

			assert_int_equal(writeback_inode(g.ci, false), 0);
			nanosleep(&ts, NULL);
		}
		assert_int_equal(pthread_join(w, NULL), 0);
		assert_int_equal(pthread_join(rd, NULL), 0);
		assert_int_equal(g.err, 0);
		assert_int_equal(writeback_inode(g.ci, true), 0);
		assert_false(cache_has_dirty(g.ci));
		assert_int_equal(g.ci->i_size, g.max_bytes);
		assert_int_equal(f->disk_size, g.max_bytes);
		assert_disk(f, g.model, g.max_bytes);
		assert_true(cache_nr_pages(g.ci) >= g.max_bytes / PAGE);
		for (geo = cache_geom(g.ci); geo->older; geo = geo->older)
			growths++;
		cache_close(g.ci);
		free(g.model);
	}
	/* 2 pages, then 4, 8, ... 256: seven growths a round */
	print_message("%u rounds, %u growths of the segments\n", rounds, growths);
	assert_true(growths >= rounds * 7);
	fx_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_read_fault_in, fx_teardown),
		cmocka_unit_test_teardown(test_write_back, fx_teardown),
		cmocka_unit_test_teardown(test_partial_buffers, fx_teardown),
		cmocka_unit_test_teardown(test_writepage_eio, fx_teardown),
		cmocka_unit_test_teardown(test_enomem, fx_teardown),
		cmocka_unit_test_teardown(test_truncate, fx_teardown),
		cmocka_unit_test_teardown(test_enospc, fx_teardown),
		cmocka_unit_test_teardown(test_reclaim, fx_teardown),
		cmocka_unit_test_teardown(test_not_written, fx_teardown),
		cmocka_unit_test_teardown(test_trim_room, fx_teardown),
		cmocka_unit_test_teardown(test_concurrent_writeback, fx_teardown),
		cmocka_unit_test_teardown(test_growth_racing, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
