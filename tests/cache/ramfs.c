/*
 * ramfs.c — see ramfs.h: the address-space operations of a file system in
 * RAM, kept to the contract of daemon/cache/aops.h and checking that the
 * generic code keeps its side of it.
 *
 * Invariants (besides ramfs.h's):
 *  - writepage follows daemon/aops/writepage.c: the page comes locked with
 *    its dirty buffers taken; it goes under writeback (private bit, then
 *    the shared one, and the header's writeback_pages count) before its
 *    I/O, is unlocked, and its I/O ends with cache_end_page_io(), by
 *    writepages_flush at the latest; out of memory re-dirties it and is
 *    not an error.  The file's lock is never held across
 *    cache_end_page_io() (which may take the page lock, rank 3 < 4).
 *  - A data write that starts past init_size first zero-fills the disk
 *    from init_size up to it (backed blocks only), then init_size rises
 *    over what was written (sizes_dirty: write_inode records it).
 *  - The sizes on disk change only in write_inode, truncate_blocks and
 *    trim_allocation, and disk_init never passes init_size.
 */
#include "ramfs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "namei.h"
#include "page.h"
#include "page_io.h"
#include "page_lock.h"
#include "sanity.h"

struct ramfs_inode {
	struct cache_inode vfs;
	struct ramfs_file *f;
};

static struct ramfs_file *RFILE(struct cache_inode *ci)
{
	return ((struct ramfs_inode *)((char *)ci - offsetof(struct ramfs_inode, vfs)))->f;
}

static struct ramfs *RFS(struct cache *c)
{
	return c->fs;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t blocks_for(const struct ramfs *fs, uint64_t bytes)
{
	return (bytes + fs->block_size - 1) / fs->block_size;
}

static uint64_t max_blocks(const struct ramfs *fs)
{
	return blocks_for(fs, RAMFS_MAX_BYTES);
}

/* Take one from an injection counter; true if there was one. */
static bool take_one(_Atomic unsigned *n)
{
	unsigned v = atomic_load(n);

	while (v && !atomic_compare_exchange_weak(n, &v, v - 1))
		;
	return v != 0;
}

__attribute__((format(printf, 2, 3)))
static void violation(struct ramfs *fs, const char *fmt, ...)
{
	char what[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	atomic_fetch_add(&fs->violations, 1);
	log_error("ramfs: contract violation: %s", what);
}

static void log_io(struct ramfs_file *f, uint64_t pos, uint64_t len, enum ramfs_io_kind kind)
{
	if (f->nlog == f->caplog) {
		size_t cap = f->caplog ? f->caplog * 2 : 64;
		struct ramfs_io *n = realloc(f->log, cap * sizeof(*n));

		if (!n)
			abort();        /* a test fixture: no way to go on */
		f->log = n;
		f->caplog = cap;
	}
	f->log[f->nlog++] = (struct ramfs_io){ .seq = atomic_fetch_add(&f->fs->seq, 1) + 1,
					       .pos = pos, .len = len, .kind = kind };
}

/* ---- the fixture's side ---- */

struct ramfs *ramfs_create(uint32_t block_size, uint64_t total_blocks)
{
	struct ramfs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return NULL;
	fs->block_size = block_size;
	fs->total_blocks = total_blocks;
	atomic_store(&fs->free_blocks, total_blocks);
	return fs;
}

void ramfs_destroy(struct ramfs *fs)
{
	unsigned i;

	if (!fs)
		return;
	for (i = 0; i < fs->nfiles; i++) {
		struct ramfs_file *f = &fs->files[i];

		free(f->disk);
		free(f->block_used);
		free(f->log);
		cache_mutex_destroy(&f->lock);
	}
	free(fs);
}

/* Take n blocks from the free count; false (nothing taken) if fewer are left. */
static bool take_blocks(struct ramfs *fs, uint64_t n)
{
	uint64_t v = atomic_load(&fs->free_blocks);

	do {
		if (v < n)
			return false;
	} while (!atomic_compare_exchange_weak(&fs->free_blocks, &v, v - n));
	return true;
}

struct ramfs_file *ramfs_add_file(struct ramfs *fs, const char *name, const void *data,
				  uint64_t size)
{
	struct ramfs_file *f;
	uint64_t b, nb;

	if (fs->nfiles == RAMFS_MAX_FILES || size > RAMFS_MAX_BYTES ||
	    strlen(name) + 2 > sizeof(f->name) || strchr(name, '/'))
		return NULL;
	nb = blocks_for(fs, size);
	if (!take_blocks(fs, nb))
		return NULL;
	f = &fs->files[fs->nfiles];
	memset(f, 0, sizeof(*f));
	f->disk = malloc(RAMFS_MAX_BYTES);
	f->block_used = calloc(max_blocks(fs), 1);
	if (!f->disk || !f->block_used) {
		free(f->disk);
		free(f->block_used);
		atomic_fetch_add(&fs->free_blocks, nb);
		return NULL;
	}
	fs->nfiles++;
	f->fs = fs;
	snprintf(f->name, sizeof(f->name), "/%s", name);
	f->ino = RAMFS_FIRST_INO + (fs->nfiles - 1);
	f->generation = 1;
	cache_mutex_init(&f->lock, LOCK_INIT);
	memset(f->disk, RAMFS_STALE, RAMFS_MAX_BYTES);
	for (b = 0; b < nb; b++)
		f->block_used[b] = 1;
	if (data)
		memcpy(f->disk, data, size);
	else
		memset(f->disk, 0, size);
	f->nr_blocks = nb;
	f->data_size = f->init_size = f->disk_size = f->disk_init = size;
	return f;
}

struct ramfs_file *ramfs_find(struct ramfs *fs, const char *name)
{
	unsigned i;

	for (i = 0; i < fs->nfiles; i++)
		if (!strcmp(fs->files[i].name, name))
			return &fs->files[i];
	return NULL;
}

static struct ramfs_file *find_ino(struct ramfs *fs, uint64_t ino)
{
	return ino >= RAMFS_FIRST_INO && ino - RAMFS_FIRST_INO < fs->nfiles
		       ? &fs->files[ino - RAMFS_FIRST_INO] : NULL;
}

uint64_t ramfs_now(struct ramfs *fs)
{
	return atomic_load(&fs->seq);
}

static uint64_t overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
	uint64_t s = max64(a0, b0), e = min64(a1, b1);

	return e > s ? e - s : 0;
}

uint64_t ramfs_written_in(const struct ramfs_file *f, uint64_t since, uint64_t pos, uint64_t len)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < f->nlog; i++)
		if (f->log[i].kind == RAMFS_IO_DATA && f->log[i].seq > since)
			n += overlap(f->log[i].pos, f->log[i].pos + f->log[i].len, pos, pos + len);
	return n;
}

uint64_t ramfs_written_since(const struct ramfs_file *f, uint64_t since)
{
	return ramfs_written_in(f, since, 0, UINT64_MAX / 2);
}

uint64_t ramfs_zeroed_since(const struct ramfs_file *f, uint64_t since)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < f->nlog; i++)
		if (f->log[i].kind == RAMFS_IO_ZERO && f->log[i].seq > since)
			n += f->log[i].len;
	return n;
}

/* Bytes [pos, pos + n) as stored: the disk below init, zeroes elsewhere
 * (f->lock held, or the file quiet). */
static void copy_out(const struct ramfs_file *f, uint64_t init, uint64_t pos, uint64_t n,
		     uint8_t *buf)
{
	uint32_t bs = f->fs->block_size;

	while (n) {
		uint64_t blk = pos / bs, chunk = min64(n, (blk + 1) * bs - pos);
		uint64_t from_disk = 0;

		if (blk < f->nr_blocks && f->block_used[blk] && pos < init)
			from_disk = min64(chunk, init - pos);
		memcpy(buf, f->disk + pos, (size_t)from_disk);
		memset(buf + from_disk, 0, (size_t)(chunk - from_disk));
		buf += chunk;
		pos += chunk;
		n -= chunk;
	}
}

uint64_t ramfs_read_disk(const struct ramfs_file *f, uint64_t pos, uint64_t len, uint8_t *buf)
{
	uint64_t n = pos < f->disk_size ? min64(len, f->disk_size - pos) : 0;

	copy_out(f, f->disk_init, pos, n, buf);
	memset(buf + n, 0, (size_t)(len - n));
	return n;
}

uint64_t ramfs_last_write_seq(const struct ramfs_file *f)
{
	uint64_t seq = 0;
	size_t i;

	for (i = 0; i < f->nlog; i++)
		seq = max64(seq, f->log[i].seq);
	return seq;
}

uint64_t ramfs_blocks_used(const struct ramfs_file *f)
{
	uint64_t b, n = 0;

	for (b = 0; b < max_blocks(f->fs); b++)
		n += f->block_used[b];
	return n;
}

void ramfs_inject_page_error(struct ramfs_file *f, uint64_t index, int err, unsigned times)
{
	if (index < RAMFS_MAX_PAGES) {
		f->fail_err[index] = err;
		f->fail_times[index] = times;
	}
}

/* ---- inodes ---- */

static int ramfs_lookup(struct cache *c, const char *path, uint64_t *ino)
{
	struct ramfs_file *f;

	if (!strcmp(path, "/")) {
		*ino = RAMFS_ROOT_INO;
		return 0;
	}
	f = ramfs_find(RFS(c), path);
	if (!f)
		return ntfs_fail(ENOENT, "ramfs: %s: no such file", path);
	*ino = f->ino;
	return 0;
}

static int ramfs_alloc_inode(struct cache *c, uint64_t ino, struct cache_inode **out)
{
	struct ramfs_file *f = find_ino(RFS(c), ino);
	struct ramfs_inode *ri;

	if (ino == RAMFS_ROOT_INO)
		return ntfs_fail(EISDIR, "ramfs: inode %llu is a directory",
				 (unsigned long long)ino);
	if (!f)
		return ntfs_fail(ENOENT, "ramfs: no inode %llu", (unsigned long long)ino);
	ri = calloc(1, sizeof(*ri));
	if (!ri)
		return ntfs_fail(ENOMEM, "ramfs: no memory for inode %llu", (unsigned long long)ino);
	ri->f = f;
	cache_inode_init(&ri->vfs, c, ino);
	cache_mutex_lock(&f->lock);
	if (!atomic_load(&f->ci)) {
		/* read from the disk: what the inode there says (a cache
		 * destroyed with sizes not yet written is a crash) */
		f->data_size = f->disk_size;
		f->init_size = f->disk_init;
		atomic_store(&f->ci, &ri->vfs);
	}
	/* else a racing opener's inode is live and its sizes are the truth */
	ri->vfs.i_size = f->data_size;
	atomic_store(&ri->vfs.disk_init, f->disk_init);
	ri->vfs.generation = f->generation;
	ri->vfs.system_file = false;
	cache_mutex_unlock(&f->lock);
	*out = &ri->vfs;
	return 0;
}

static void ramfs_destroy_inode(struct cache_inode *ci)
{
	struct ramfs_file *f = RFILE(ci);
	struct cache_inode *mine = ci;

	/* under cache->lock (reclaim frees unused inodes there): no f->lock */
	atomic_compare_exchange_strong(&f->ci, &mine, NULL);
	cache_inode_fini(ci);
	free((char *)ci - offsetof(struct ramfs_inode, vfs));
}

static void ramfs_getattr(struct cache_inode *ci, struct cache_attr *a)
{
	struct ramfs_file *f = RFILE(ci);

	cache_mutex_lock(&f->lock);
	a->i_size = ci->i_size;
	a->initialized_size = f->init_size;
	a->allocated_size = f->nr_blocks * f->fs->block_size;
	a->resident = false;
	cache_mutex_unlock(&f->lock);
}

/* The segment's i_size wins where the disk can take it; the disk's beyond. */
static void ramfs_adopt_sizes(struct cache_inode *ci, uint64_t seg_bytes, uint64_t *i_size)
{
	struct ramfs_file *f = RFILE(ci);
	uint64_t limit = min64(seg_bytes, f->nr_blocks * f->fs->block_size);

	cache_mutex_lock(&f->lock);
	if (*i_size > limit)
		*i_size = min64(f->disk_size, limit);
	ci->sizes_dirty = *i_size != f->data_size;
	f->data_size = *i_size;
	ci->i_size = *i_size;
	f->init_size = min64(f->init_size, *i_size);
	if (f->disk_init > *i_size) {
		f->disk_init = *i_size;
		atomic_store(&ci->disk_init, *i_size);
		ci->sizes_dirty = true;
	}
	cache_mutex_unlock(&f->lock);
}

/* ---- data ---- */

static int ramfs_check_writable(struct cache_inode *ci)
{
	struct ramfs_file *f = RFILE(ci);

	return f->deny_write ? ntfs_fail(EACCES, "ramfs: %s is not writable", f->name) : 0;
}

static ssize_t ramfs_read(struct cache_inode *ci, uint64_t pos, uint64_t len, uint8_t *buf)
{
	struct ramfs_file *f = RFILE(ci);
	uint64_t n;

	if (f->read_err)
		return ntfs_fail(-f->read_err, "ramfs: %s: injected read error at byte %llu",
				 f->name, (unsigned long long)pos);
	cache_mutex_lock(&f->lock);
	n = pos < f->data_size ? min64(len, f->data_size - pos) : 0;
	copy_out(f, f->init_size, pos, n, buf);
	cache_mutex_unlock(&f->lock);
	return (ssize_t)n;
}

/* Block ranges an allocation covers: [lo[i], hi[i]). */
struct block_ranges {
	unsigned n;
	uint64_t lo[3], hi[3];
};

static bool in_ranges(const struct block_ranges *r, uint64_t b)
{
	unsigned i;

	for (i = 0; i < r->n; i++)
		if (b >= r->lo[i] && b < r->hi[i])
			return true;
	return false;
}

static void add_range(struct block_ranges *r, uint64_t lo, uint64_t hi)
{
	if (lo < hi) {
		r->lo[r->n] = lo;
		r->hi[r->n++] = hi;
	}
}

static uint64_t ranges_end(const struct block_ranges *r)
{
	uint64_t e = 0;
	unsigned i;

	for (i = 0; i < r->n; i++)
		e = max64(e, r->hi[i]);
	return e;
}

static uint64_t ranges_start(const struct block_ranges *r)
{
	uint64_t s = UINT64_MAX;
	unsigned i;

	for (i = 0; i < r->n; i++)
		s = min64(s, r->lo[i]);
	return s;
}

static uint64_t count_unbacked(const struct ramfs_file *f, const struct block_ranges *r)
{
	uint64_t b, n = 0, end = ranges_end(r);

	for (b = r->n ? ranges_start(r) : 0; b < end; b++)
		n += in_ranges(r, b) && !f->block_used[b];
	return n;
}

/* Back every hole of r with a block (f->lock held, the blocks taken). */
static void back_ranges(struct ramfs_file *f, const struct block_ranges *r)
{
	uint32_t bs = f->fs->block_size;
	uint64_t b, end = ranges_end(r);

	for (b = r->n ? ranges_start(r) : 0; b < end; b++) {
		if (!in_ranges(r, b) || f->block_used[b])
			continue;
		f->block_used[b] = 1;
		/* a hole filled below init_size reads as zeroes already, and
		 * must go on doing so: zero the stale block on the disk */
		if (b * bs < f->init_size) {
			memset(f->disk + b * bs, 0, bs);
			log_io(f, b * bs, bs, RAMFS_IO_ZERO);
		}
	}
	f->nr_blocks = max64(f->nr_blocks, end);
}

static int ramfs_prepare_write(struct cache_inode *ci, uint64_t pos, uint64_t end,
			       uint64_t new_size)
{
	struct ramfs_file *f = RFILE(ci);
	struct ramfs *fs = f->fs;
	struct block_ranges r = { 0 }, room = { 0 };
	bool grow = new_size > ci->i_size;
	uint64_t limit = grow ? new_size : ci->i_size, need, extra = 0;
	int err = 0;

	cache_assert_held(&ci->size_lock);
	if (limit > RAMFS_MAX_BYTES)
		return ntfs_fail(EFBIG, "ramfs: %s: %llu bytes is past the file's most (%u)",
				 f->name, (unsigned long long)limit, RAMFS_MAX_BYTES);
	end = min64(end, limit);
	cache_mutex_lock(&f->lock);
	if (pos < end)
		add_range(&r, pos / fs->block_size, blocks_for(fs, end));
	if (grow) {
		/* the old last page is written back whole (zeroes past the old
		 * end), so it needs blocks; the gap up to the write stays a hole */
		uint64_t tail = min64(cache_pages_for(ci->i_size) << NTFSD_PAGE_SHIFT, new_size);

		add_range(&r, ci->i_size / fs->block_size, blocks_for(fs, tail));
		if (fs->growth_room_blocks) {
			uint64_t from = max64(blocks_for(fs, new_size), f->nr_blocks);

			add_range(&room, from, min64(from + fs->growth_room_blocks,
						     max_blocks(fs)));
		}
	}
	need = count_unbacked(f, &r);
	if (!take_blocks(fs, need)) {
		err = ntfs_fail(ENOSPC, "ramfs: %s: %llu blocks needed for bytes %llu-%llu, "
				"%llu free", f->name, (unsigned long long)need,
				(unsigned long long)pos, (unsigned long long)end,
				(unsigned long long)atomic_load(&fs->free_blocks));
		goto out;
	}
	back_ranges(f, &r);
	f->nr_blocks = max64(f->nr_blocks, blocks_for(fs, limit));
	/* room to grow: best effort, given back by trim_allocation */
	if (room.n) {
		extra = count_unbacked(f, &room);
		if (take_blocks(fs, extra)) {
			back_ranges(f, &room);
			ci->trim_pending = true;
		}
	}
	if (grow) {
		/* with the file's own size, under the lock write_inode takes */
		f->data_size = new_size;
		ci->i_size = new_size;
		ci->sizes_dirty = true;
	}
out:
	cache_mutex_unlock(&f->lock);
	return err;
}

/* Free the blocks from block `from` on (f->lock held): stale again. */
static void free_blocks_from(struct ramfs_file *f, uint64_t from)
{
	uint32_t bs = f->fs->block_size;
	uint64_t b, n = 0;

	for (b = from; b < max_blocks(f->fs); b++)
		if (f->block_used[b]) {
			f->block_used[b] = 0;
			memset(f->disk + b * bs, RAMFS_STALE, bs);
			n++;
		}
	atomic_fetch_add(&f->fs->free_blocks, n);
	if (f->nr_blocks > from)
		f->nr_blocks = from;
}

static int ramfs_truncate_blocks(struct cache_inode *ci, uint64_t size)
{
	struct ramfs_file *f = RFILE(ci);
	struct ramfs *fs = f->fs;
	uint64_t i;

	cache_assert_held(&ci->size_lock);
	if (size > RAMFS_MAX_BYTES)
		return ntfs_fail(EFBIG, "ramfs: %s: %llu bytes is past the file's most", f->name,
				 (unsigned long long)size);
	if (size < ci->i_size) {
		/* the generic half fences the pages past size first and waits
		 * out their writeback: nothing may land on the blocks freed */
		if (atomic_load(&ci->wb_fence) > size)
			violation(fs, "%s: truncate to %llu with the write-back fence at %llu",
				  f->name, (unsigned long long)size,
				  (unsigned long long)atomic_load(&ci->wb_fence));
		for (i = size >> NTFSD_PAGE_SHIFT; i < cache_used_pages(ci); i++)
			if (cache_page_writeback(ci, i))
				violation(fs, "%s: truncate to %llu with page %llu under writeback",
					  f->name, (unsigned long long)size, (unsigned long long)i);
	}
	cache_mutex_lock(&f->lock);
	if (size < f->data_size) {
		free_blocks_from(f, blocks_for(fs, size));
		f->init_size = min64(f->init_size, size);
		if (f->disk_init > size) {
			f->disk_init = size;
			atomic_store(&ci->disk_init, size);
		}
	} else {
		f->nr_blocks = max64(f->nr_blocks, blocks_for(fs, size));   /* a hole */
	}
	/* the inode is written at once, as NTFS writes the record */
	f->disk_size = size;
	f->size_writes++;
	f->size_seq = atomic_fetch_add(&fs->seq, 1) + 1;
	f->data_size = size;
	ci->i_size = size;
	cache_mutex_unlock(&f->lock);
	return 0;
}

static int ramfs_trim_allocation(struct cache_inode *ci)
{
	struct ramfs_file *f = RFILE(ci);

	cache_assert_held(&ci->size_lock);
	if (!ci->trim_pending)
		violation(f->fs, "%s: trim_allocation without trim_pending", f->name);
	cache_mutex_lock(&f->lock);
	free_blocks_from(f, blocks_for(f->fs, f->data_size));
	f->nr_blocks = blocks_for(f->fs, f->data_size);
	f->disk_size = f->data_size;
	f->size_writes++;
	f->size_seq = atomic_fetch_add(&f->fs->seq, 1) + 1;
	f->trims++;
	cache_mutex_unlock(&f->lock);
	return 0;
}

/* ---- write-back ---- */

#define RAMFS_BATCH_MAX 16u

struct ramfs_batch {
	struct cache_inode *ci;
	unsigned n;
	uint64_t index[RAMFS_BATCH_MAX];
	uint32_t bufs[RAMFS_BATCH_MAX];
};

static void *ramfs_writepages_begin(struct cache_inode *ci)
{
	struct ramfs *fs = RFS(ci->cache);
	struct ramfs_batch *bt;

	cache_assert_held(&ci->wb_lock);
	if (take_one(&fs->enomem_begin))
		return NULL;
	bt = calloc(1, sizeof(*bt));
	if (bt)
		bt->ci = ci;
	return bt;
}

/* Write buffers bufs of page index to the disk (the page under writeback,
 * unlocked): 0, or -EIO for a buffer over a hole. */
static int write_buffers(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	struct ramfs_file *f = RFILE(ci);
	struct ramfs *fs = f->fs;
	uint32_t bsize = ci->buffer_size, nbuf = ci->buffers_per_page, b = 0, bs = fs->block_size;
	uint64_t base = index << NTFSD_PAGE_SHIFT;
	int err = 0;

	cache_mutex_lock(&f->lock);
	while (b < nbuf) {
		uint64_t start, stop, blk;

		if (!(bufs & (1u << b))) {
			b++;
			continue;
		}
		start = base + (uint64_t)b * bsize;
		while (b < nbuf && (bufs & (1u << b)))
			b++;
		stop = base + (uint64_t)b * bsize;
		for (blk = start / bs; blk < blocks_for(fs, stop); blk++)
			if (blk >= f->nr_blocks || !f->block_used[blk]) {
				violation(fs, "%s: page %llu: writepage over a hole (block %llu): "
					  "writepage never allocates", f->name,
					  (unsigned long long)index, (unsigned long long)blk);
				err = ntfs_fail(EIO, "ramfs: %s: byte %llu maps to a hole", f->name,
						(unsigned long long)start);
				break;
			}
		if (err)
			break;
		if (start > f->init_size) {
			/* zeroes from init_size on, then the data: the disk
			 * never shows a stale byte below init_size */
			uint64_t z = f->init_size;

			while (z < start) {
				uint64_t zb = z / bs, ze = min64((zb + 1) * bs, start);

				if (zb < f->nr_blocks && f->block_used[zb]) {
					memset(f->disk + z, 0, (size_t)(ze - z));
					log_io(f, z, ze - z, RAMFS_IO_ZERO);
				}
				z = ze;
			}
		}
		memcpy(f->disk + start, cache_geom(ci)->data + start, (size_t)(stop - start));
		log_io(f, start, stop - start, RAMFS_IO_DATA);
		if (min64(stop, f->data_size) > f->init_size) {
			f->init_size = min64(stop, f->data_size);
			ci->sizes_dirty = true;
		}
	}
	cache_mutex_unlock(&f->lock);
	return err;
}

/* The I/O of the batch's pages, each ended (never with f->lock held). */
static int submit(struct ramfs_batch *bt)
{
	struct cache_inode *ci = bt->ci;
	struct ramfs_file *f = RFILE(ci);
	struct ramfs *fs = f->fs;
	int first_err = 0;
	unsigned i;

	for (i = 0; i < bt->n; i++) {
		uint64_t index = bt->index[i];
		uint32_t bufs = bt->bufs[i];
		int err = 0;

		if (take_one(&fs->enomem_writepage)) {
			cache_end_page_io(ci, index, bufs, -ENOMEM);   /* re-dirtied */
			continue;
		}
		cache_mutex_lock(&f->lock);
		if (index < RAMFS_MAX_PAGES && f->fail_times[index]) {
			f->fail_times[index]--;
			err = ntfs_fail(-f->fail_err[index], "ramfs: %s: page %llu: injected "
					"write error", f->name, (unsigned long long)index);
		}
		cache_mutex_unlock(&f->lock);
		if (!err)
			err = write_buffers(ci, index, bufs);
		cache_end_page_io(ci, index, bufs, err);
		if (err && !first_err)
			first_err = err;
	}
	bt->n = 0;
	return first_err;
}

/* What the generic pass promises every page it hands over (writeback.c). */
static void check_page(struct cache_inode *ci, uint64_t index, uint32_t bufs)
{
	struct ramfs *fs = RFS(ci->cache);
	const char *name = RFILE(ci)->name;
	uint64_t pos = index << NTFSD_PAGE_SHIFT, page_end = pos + NTFSD_PAGE_SIZE, b;
	uint64_t i_size = ci->i_size;

	if (!bufs || (bufs & ~page_all_buffers(ci->buffers_per_page)))
		violation(fs, "%s: page %llu handed over with buffers %#x", name,
			  (unsigned long long)index, bufs);
	if (!page_test(cache_page(ci, index), PG_uptodate))
		violation(fs, "%s: page %llu is not uptodate", name, (unsigned long long)index);
	if (pos >= i_size)
		violation(fs, "%s: page %llu lies wholly past i_size %llu", name,
			  (unsigned long long)index, (unsigned long long)i_size);
	if (page_end > atomic_load(&ci->wb_fence))
		violation(fs, "%s: page %llu ends past the write-back fence %llu", name,
			  (unsigned long long)index, (unsigned long long)atomic_load(&ci->wb_fence));
	for (b = 0; b < ci->buffers_per_page; b++)
		if ((bufs & (1u << b)) && pos + b * ci->buffer_size >= i_size)
			violation(fs, "%s: page %llu: buffer %llu lies past i_size %llu", name,
				  (unsigned long long)index, (unsigned long long)b,
				  (unsigned long long)i_size);
	for (b = i_size; b < page_end && b > pos; b++)
		if (cache_geom(ci)->data[b]) {
			violation(fs, "%s: page %llu: byte %llu past i_size is not zero", name,
				  (unsigned long long)index, (unsigned long long)b);
			break;
		}
}

static int ramfs_writepage(struct cache_inode *ci, uint64_t index, uint32_t bufs, void *batch)
{
	struct ramfs *fs = RFS(ci->cache);
	struct ramfs_batch *bt = batch;
	unsigned cap = fs->batch_pages < 1 ? 1
		       : fs->batch_pages > RAMFS_BATCH_MAX ? RAMFS_BATCH_MAX : fs->batch_pages;

	cache_assert_held(&ci->wb_lock);
	cache_assert_page_locked(ci, index);
	atomic_fetch_add(&fs->writepage_calls, 1);
	check_page(ci, index, bufs);
	cache_set_page_writeback(ci, index);
	atomic_fetch_add(&ci->cache->header->counters.writeback_pages, 1);
	cache_unlock_page(ci, index);
	bt->index[bt->n] = index;
	bt->bufs[bt->n++] = bufs;
	return bt->n >= cap ? submit(bt) : 0;
}

static int ramfs_writepages_flush(struct cache_inode *ci, void *batch)
{
	(void)ci;
	return submit(batch);
}

static void ramfs_writepages_end(struct cache_inode *ci, void *batch)
{
	struct ramfs_batch *bt = batch;

	if (bt->n) {
		violation(RFS(ci->cache), "%s: a batch of %u pages ended unsubmitted",
			  RFILE(ci)->name, bt->n);
		submit(bt);
	}
	free(bt);
}

static int ramfs_write_inode(struct cache_inode *ci)
{
	struct ramfs_file *f = RFILE(ci);
	struct ramfs *fs = f->fs;
	uint64_t init;

	atomic_fetch_add(&fs->write_inode_calls, 1);
	cache_mutex_lock(&f->lock);
	init = min64(f->init_size, f->data_size);
	if (ci->sizes_dirty || f->disk_size != f->data_size || f->disk_init != init) {
		f->disk_size = f->data_size;
		f->disk_init = init;
		atomic_store(&ci->disk_init, init);
		f->size_writes++;
		f->size_seq = atomic_fetch_add(&fs->seq, 1) + 1;
	}
	ci->sizes_dirty = false;
	/* the times: only that they were written, and as of when */
	if (atomic_exchange(&ci->times_dirty, false)) {
		f->times_writes++;
		f->disk_mtime_ns = atomic_load(&ci->mtime_ns);
	}
	cache_mutex_unlock(&f->lock);
	return 0;
}

static int ramfs_sync_fs(struct cache *c)
{
	struct ramfs *fs = RFS(c);

	atomic_fetch_add(&fs->sync_calls, 1);
	atomic_store(&fs->last_sync_seq, atomic_fetch_add(&fs->seq, 1) + 1);
	return 0;
}

/* ---- by path ---- */

static void stat_file(struct ramfs_file *f, struct cache_stat *st)
{
	memset(st, 0, sizeof(*st));
	st->mft_no = f->ino;
	st->link_count = 1;
	st->has_data = true;
	cache_mutex_lock(&f->lock);
	st->size = f->disk_size;
	st->initialized_size = f->disk_init;
	st->allocated_size = f->nr_blocks * f->fs->block_size;
	cache_mutex_unlock(&f->lock);
}

static int ramfs_stat_path(struct cache *c, const char *path, struct cache_stat *st)
{
	uint64_t ino;
	int err = ramfs_lookup(c, path, &ino);

	if (err)
		return err;
	if (ino == RAMFS_ROOT_INO) {
		memset(st, 0, sizeof(*st));
		st->mft_no = ino;
		st->link_count = 1;
		st->directory = true;
		return 0;
	}
	stat_file(find_ino(RFS(c), ino), st);
	return 0;
}

static void ramfs_stat_inode(struct cache_inode *ci, struct cache_stat *st)
{
	stat_file(RFILE(ci), st);
}

static int ramfs_readdir(struct cache *c, const char *path,
			 int (*cb)(void *ctx, const struct cache_dirent *e), void *ctx)
{
	struct ramfs *fs = RFS(c);
	unsigned i;
	int err;

	if (strcmp(path, "/"))
		return ramfs_find(fs, path) ? ntfs_fail(ENOTDIR, "ramfs: %s: not a directory", path)
					    : ntfs_fail(ENOENT, "ramfs: %s: no such file", path);
	for (i = 0; i < fs->nfiles; i++) {
		struct cache_dirent e = { .name = fs->files[i].name + 1, .mft_no = fs->files[i].ino };

		err = cb(ctx, &e);
		if (err)
			return err;
	}
	return 0;
}

static void ramfs_volume_info(struct cache *c, struct cache_volume_info *vi)
{
	struct ramfs *fs = RFS(c);

	memset(vi, 0, sizeof(*vi));
	vi->label = "ramfs";
	vi->major_ver = 3;
	vi->minor_ver = 1;
	vi->cluster_size = fs->block_size;
	vi->size = fs->total_blocks * fs->block_size;
	vi->free_bytes = atomic_load(&fs->free_blocks) * fs->block_size;
}

#if NTFSD_LOCKDEP

/* What holds between size changes (size_lock held). */
static void ramfs_sanity_settled(struct cache_inode *ci, const char *file, int line)
{
	struct ramfs_file *f = RFILE(ci);
	uint64_t disk_init;
	const char *bad = NULL;
	char detail[200];

	cache_mutex_lock_at(&f->lock, file, line);
	/* under f->lock, which write_inode raises it under (read before it, a
	 * write-back racing the check made it fail with equal values) */
	disk_init = atomic_load(&ci->disk_init);
	if (ci->i_size != f->data_size)
		bad = "i_size == data_size";
	else if (f->init_size > f->data_size)
		bad = "init_size <= data_size";
	else if (f->data_size > f->nr_blocks * f->fs->block_size)
		bad = "data_size <= allocated_size";
	else if (disk_init != f->disk_init)
		bad = "ci->disk_init == the disk's init";
	else if (disk_init > f->init_size)
		bad = "disk_init <= init_size";
	snprintf(detail, sizeof(detail), "ramfs %s: data %llu, init %llu, blocks %llu, "
		 "disk size %llu, disk init %llu", f->name, (unsigned long long)f->data_size,
		 (unsigned long long)f->init_size, (unsigned long long)f->nr_blocks,
		 (unsigned long long)f->disk_size, (unsigned long long)f->disk_init);
	cache_mutex_unlock_at(&f->lock, file, line);
	if (bad)
		cache_insane_at(ci, file, line, bad, detail);
}

#endif

const struct address_space_operations ramfs_aops = {
	.name = "ramfs",
	.lookup = ramfs_lookup,
	.alloc_inode = ramfs_alloc_inode,
	.destroy_inode = ramfs_destroy_inode,
	.getattr = ramfs_getattr,
	.adopt_sizes = ramfs_adopt_sizes,
	.check_writable = ramfs_check_writable,
	.read = ramfs_read,
	.prepare_write = ramfs_prepare_write,
	.truncate_blocks = ramfs_truncate_blocks,
	.trim_allocation = ramfs_trim_allocation,
	.writepages_begin = ramfs_writepages_begin,
	.writepage = ramfs_writepage,
	.writepages_flush = ramfs_writepages_flush,
	.writepages_end = ramfs_writepages_end,
	.write_inode = ramfs_write_inode,
	.sync_fs = ramfs_sync_fs,
	.stat_path = ramfs_stat_path,
	.stat_inode = ramfs_stat_inode,
	.readdir = ramfs_readdir,
	.volume_info = ramfs_volume_info,
#if NTFSD_LOCKDEP
	.sanity_settled = ramfs_sanity_settled,
#endif
};
