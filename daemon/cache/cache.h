/*
 * cache.h — the daemon's page cache: open inodes with their shared-memory
 * segments, readpage, prepare-write, truncate and reclaim, generic over the
 * file system under it, which it reaches only through its address-space
 * operations (aops.h; NTFS's are in daemon/aops/).
 *
 * Invariants:
 *  - One struct cache_inode per cached MFT record, shared by every opener;
 *    it lives while it has openers or in-flight work (refs) and, after
 *    that, while it still has cached pages, so a reopen finds them; its
 *    inode slot in the volume header is in use exactly that long.
 *  - Everything that decides where bytes go on the disk (for NTFS the
 *    inode, the attribute and its runlist, the sizes) is the file system's
 *    and daemon-private; the shared segments hold only page data, page
 *    state and published sizes.
 *  - A page becomes uptodate only under its page lock, after every byte of
 *    it holds the file's contents (zeroes past i_size).
 *  - cache->lock protects the inode list and slot table; it is never held
 *    across disk I/O.  Page state is protected by page locks.
 *
 * Lock order, outermost first.  A thread waits for a lock only while every
 * lock it holds comes earlier in this list (the same rank twice, say two
 * inodes' size_lock, is out of order too); a trylock may be taken in any
 * order, since it cannot deadlock.  Debug and sanitizer builds check it
 * (lockdep.h: every wait, release and cache_assert_held()).
 *
 *  0. cache->ns_lock (rwlock, writers first): read by every lookup by path
 *     (open, stat, readdir), written by every change of the namespace
 *     (dirops.c), across the disk I/O of both; no other lock is held
 *     when it is taken.
 *  1. ci->wb_lock: one writeback pass of the inode (writeback.c; the
 *     flushers only try it).  Held across the whole pass: disk I/O,
 *     flushes, record writes, waits for the writeback of its own pages, and
 *     size_lock when a sync gives back the room to grow.
 *  2. ci->size_lock: i_size, the data size and trim_pending move under it
 *     (prepare-write, truncate, trim); i_size and the data size under the
 *     file system's size lock (4) too, which is all its write_inode may
 *     take to write them into the record.  Held across cluster allocation,
 *     zeroing, device flushes, record writes and waits for page writeback
 *     (a truncate fencing its pages), so ending a page's writeback must
 *     never need it.
 *  3. Page locks: cache_lock_page() takes the page's private PP_LOCKED,
 *     then its shared PG_locked, judging a client that holds that
 *     (page_lock.h; a wait of at most max-lock-hold-ms).  Disk reads
 *     (readpage) and record writes (a resident page 0) happen under them.
 *     A thread waits for one page lock at most; more are only tried
 *     (cache_fault_in()'s batches, reclaim).  Nobody waits for a page's
 *     writeback holding a page lock: ending writeback may lock the page
 *     (re-dirtying it when memory ran out).
 *  4. The file system's size lock (NTFS: init_lock, daemon/aops/ntfs_ci.h):
 *     initialized_size, disk_init, sizes_dirty, and the writes that cross
 *     initialized_size, in order.  Held across zeroing and record writes.
 *  5. The file system's mapping lock (NTFS: rl_lock, a rwlock, writers
 *     first): the runlist, residency and allocated_size.  Read to map or
 *     read the data (across the disk reads and zeroing), written only
 *     inside init_lock to change them (across the record write); never
 *     read-locked twice by one thread (a queued writer would deadlock it).
 *  6. cache->reclaim_lock: the clock hand.  Taken where a page is counted
 *     in the cache, often under a page lock (readpage).  No disk I/O.
 *  7. cache->lock: the inode list, the slot table, refs and openers.  No
 *     disk I/O; under it only page trylocks (reclaim) and the freeing and
 *     storing of segments (munmap, close, a message to the segment store).
 *  8. The holder table's lock (holders.c): a leaf the page-lock paths take
 *     to judge a client's lock, under any of the above; its expire
 *     callback only shuts a socket down.
 *  9. The flusher pool's lock (writeback/flusher.c): a leaf, for its
 *     condition wait, its kicks and the live thresholds.
 *
 * The on-disk layer's locks (vol->mft_lock, $MFT/$BITMAP's and $Bitmap's)
 * lie below all of these: it orders them itself (mftalloc.c), holds none
 * when it returns and never calls up into the cache; it cannot see
 * lockdep.h, so they are not checked.  Ranks 4 and 5 are taken by the
 * file system's operations (aops.h) with the lockdep wrappers, so they are.  Sleeping and disk I/O are allowed
 * under ranks 1 to 5 and never under 6 to 9 (cache_assert_may_sleep()).
 * Waiting for a page's writeback is allowed under ranks 1 and 2 only: its
 * end may need a page lock, init_lock and rl_lock.
 */
#ifndef NTFSD_CACHE_H
#define NTFSD_CACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "aops.h"
#include "dirty_bitmap.h"
#include "lockdep.h"
#include "page_lock.h"
#include "shm_layout.h"

struct io;
struct fdstore;
struct holder_table;
struct fdstore_entry;

/* Growth room of a segment: the volume's size, at least 1 GiB, at most
 * 64 GiB, or as much again as the file has if that is more; and the most
 * pages a segment may have (16 TiB). */
#define CACHE_GROWTH_PAGES (1ull << 18)
#define CACHE_MAX_ROOM_PAGES (1ull << 24)   /* 64 GiB */
#define CACHE_MAX_PAGES (1ull << 32)
/* Segments are laid out to grow in place to 1024 times what they hold at
 * first, at least to this (1 TiB), at most to CACHE_MAX_PAGES. */
#define CACHE_MIN_MAX_PAGES (1ull << 28)
/* A segment made anew for a growth refused while open holds at most this. */
#define CACHE_MAX_WANT_PAGES CACHE_MAX_PAGES
#define CACHE_DEFAULT_MAX_LOCK_HOLD_MS 10000u

/* The daemon's mapping of an open file's segments for one capacity:
 * nr_pages pages of data, page descriptors, bitmaps and private page
 * state.  Immutable once published in ci->geom; a growth publishes a
 * larger one and keeps this one mapped (until cache_inode_destroy), so a
 * pointer taken from any geom stays valid for the pages it covers: all of
 * them map the same memfds. */
struct cache_geom {
	uint64_t nr_pages;
	uint8_t *data;                    /* nr_pages << NTFSD_PAGE_SHIFT bytes */
	uint64_t data_size;
	struct shm_file_header *state;
	uint64_t state_size;
	struct page_priv *priv;
	uint64_t priv_size;
	struct dirty_bitmap dirty;        /* covers nr_pages; holds the descriptors */
	struct cache_geom *older;
};

/* Embedded in the file system's inode (aops.h: alloc_inode). */
struct cache_inode {
	struct cache *cache;
	struct cache_inode *next;         /* in cache->inodes */
	uint64_t mft_no;                  /* the inode number */
	uint32_t generation;              /* NTFS: the record's sequence number */
	uint32_t slot;                    /* in the volume header's inode table */
	unsigned refs;                    /* openers + in-flight work; under cache->lock */
	unsigned openers;
	uint64_t i_size;
	int data_fd;                      /* memfd: the file's bytes */
	int state_fd;                     /* memfd: struct shm_file_header + pages */
	int priv_fd;                      /* memfd: struct page_priv per page (ours only) */
	struct shm_file_header *state;    /* mapped (the first mapping; the header is at
					   * the start of every one): writable by the
					   * file's writers, so the daemon writes there
					   * only i_size and the geometry it grew to,
					   * and reads nothing back */
	uint32_t buffer_size, buffers_per_page;
	uint64_t max_pages;               /* the segments can grow in place to this */
	_Atomic(struct cache_geom *) geom;/* the mapping of the current capacity:
					   * read with cache_geom(); older ones stay
					   * mapped until the inode goes */
	_Atomic uint64_t used_pages;      /* high-water mark of pages below i_size or the
					   * allocation: page state past it is untouched,
					   * so loops over pages stop here */
	_Atomic uint64_t cached_pages;
	/* write side */
	struct cache_mutex size_lock;     /* i_size changes (prepare-write) */
	struct cache_mutex wb_lock;       /* one writeback pass of this inode at a time */
	_Atomic bool wb_running;          /* a writeback pass is under way: its pages may
					   * be under writeback with none left dirty, so a
					   * sync must wait for it (set under wb_lock) */
	bool sizes_dirty;                 /* the on-disk sizes lag the in-memory ones
					   * (set by the file system, under its size lock) */
	_Atomic bool times_dirty;         /* data or size changed since the on-disk
					   * times were written (write_inode writes them) */
	_Atomic uint64_t mtime_ns;        /* when, CLOCK_REALTIME: the data was taken
					   * for write-back or the size changed */
	_Atomic bool orphan;              /* its last name was removed while it was open:
					   * on disk, nameless, until the last close
					   * (cache_evict_orphan frees it then) */
	_Atomic bool dircopy_dirty;       /* write_inode wrote sizes or times that the
					   * parent's entries do not carry yet
					   * (cache_take_dir_copies) */
	_Atomic uint64_t disk_init;       /* initialized_size the on-disk inode holds
					   * (written by the file system under its size
					   * lock): every byte below it is durable on the
					   * device, so a power cut never exposes a
					   * cluster's stale bytes; only write_inode
					   * raises it, after a flush */
	_Atomic uint64_t wb_fence;        /* pages ending past this byte are not written
					   * back (left dirty): a shrinking truncate holds
					   * them until its record is written */
	_Atomic uint64_t wb_enomem;       /* pages re-dirtied for lack of memory */
	_Atomic bool warned_not_uptodate; /* logged a dirty page that was not uptodate */
	_Atomic bool warned_forged;       /* logged a forged lock or writeback flag */
	_Atomic bool warned_system;       /* logged dirty pages of a system file */
	_Atomic bool unlinked;            /* its last name is gone (dirops.c): never
					   * written back, forgotten at its last put */
	_Atomic uint64_t outgrown_pages;  /* a growth to this many pages was refused
					   * with EFBIG (0: none): the next open with
					   * nobody using the file makes its segments
					   * anew, with room for that */
	bool trim_pending;                /* clusters allocated past i_size as room to
					   * grow: freed once nobody has it open */
	_Atomic uint32_t wb_err;          /* errseq: counter << 1 | seen */
	_Atomic int wb_errno;             /* the last writeback error */
	bool stored;                      /* its segments are in c->store */
	bool system_file;                 /* NTFS metadata: never written through the cache */
};

struct cache {
	const struct address_space_operations *aops;
	void *fs;                         /* the file system's volume (NTFS: ntfs_volume) */
	struct cache_geometry geo;
	struct cache_rwlock ns_lock;      /* lookups (read) against namespace changes */
	struct cache_mutex lock;
	struct cache_inode *inodes;
	int header_fd;                    /* memfd of the volume header */
	struct shm_volume_header *header;
	uint8_t slot_used[NTFSD_MAX_INODES];
	uint64_t limit_pages;             /* reclaim keeps cached pages at or below this */
	struct holder_table *holders;     /* lock ids of clients (holders.h); NULL: trust all */
	_Atomic uint32_t max_lock_hold_ms;/* a client holding a page lock longer is
					   * disconnected (0: never) */
	struct cache_mutex reclaim_lock;
	struct cache_inode *hand_inode;   /* clock hand: inode (by mft_no) and page */
	uint64_t hand_mft, hand_page;
	bool read_only;
	struct io *io;                    /* the block I/O engine */
	struct fdstore *store;            /* keeps segments across a crash; may be NULL */
	_Atomic uint64_t pages_written;
	_Atomic uint64_t wb_errors;
};

/* A cache over file system fs, reached through aops. */
int cache_create(const struct address_space_operations *aops, void *fs,
		 const struct cache_geometry *geo, uint64_t limit_bytes, struct cache **out);
void cache_destroy(struct cache *c);

/* For a file system's alloc_inode and destroy_inode (aops.h): the generic
 * fields of a fresh, zeroed inode, and their teardown. */
void cache_inode_init(struct cache_inode *ci, struct cache *c, uint64_t ino);
void cache_inode_fini(struct cache_inode *ci);

/* Open (or find) the cache inode of path; takes an opener reference.
 * Errors: -ENOENT, -EISDIR, -EACCES (encrypted), -EIO; message in
 * ntfs_last_error() (util/error.h). */
int cache_open(struct cache *c, const char *path, struct cache_inode **out);
void cache_close(struct cache_inode *ci);
/* Work references keep an inode alive across asynchronous work. */
void cache_inode_get(struct cache_inode *ci);
void cache_inode_put(struct cache_inode *ci);

/* Take over the segments a crashed daemon left in the store: validate each
 * pair against the volume, rebuild its page state (locks broken, pages
 * that were under writeback dirty again, the dirty bitmap recounted) and
 * add it to the cache with no openers.  Closes every fd in e.  Returns the
 * number of inodes adopted; the ones refused are logged, dropped from the
 * store and never written. */
unsigned cache_adopt(struct cache *c, struct fdstore_entry *e, size_t n);

/* Bring pages [first, first + count) uptodate (count clamped to the file).
 * Returns 0 or -errno. */
int cache_fault_in(struct cache_inode *ci, uint64_t first, uint64_t count);

/* Make pages [first, first + count) write-ready, raising i_size to new_size
 * first when it is larger; refusals are -EROFS, -EPERM, -EACCES, -ENOSPC,
 * -EFBIG and -EOPNOTSUPP (a resident compressed file on clusters over
 * 4 KiB moving out), with a message in ntfs_last_error(); -EIO for a device
 * error or a bug.  Takes size_lock (so not with a page lock held). */
int cache_prepare_write(struct cache_inode *ci, uint64_t first, uint64_t count,
			uint64_t new_size, uint64_t write_start, uint64_t write_end);
/* Give back the clusters allocated past i_size as room to grow (after the
 * data is flushed: it writes the record's sizes too).  See truncate.c. */
int cache_trim_allocation(struct cache_inode *ci);
/* At shutdown: trim every inode that has such room. */
void cache_trim_all(struct cache *c);
/* The volume is full for a write to self (size_lock held): give back the
 * room to grow that self and every other file hold, open or not, taking
 * the others' size_lock only if free.  Safe under open files: only
 * clusters past the one holding i_size go, and nothing past i_size is
 * ever written or prepared.  Returns the number of files trimmed. */
unsigned cache_reclaim_room(struct cache_inode *self);
/* Set the file's size (ftruncate): see truncate.c.  Refusals as for
 * prepare-write, EFBIG past what the open segment holds. */
int cache_truncate(struct cache_inode *ci, uint64_t size);


/* Pages of MFT record mft_no in the cache (all zero if it is not cached). */
void cache_count_pages(struct cache *c, uint64_t mft_no, uint64_t *cached, uint64_t *dirty,
		       uint64_t *writeback);

static inline uint64_t cache_pages_for(uint64_t bytes)
{
	return (bytes + NTFSD_PAGE_SIZE - 1) >> NTFSD_PAGE_SHIFT;
}

/* The current geometry of ci's segments. */
static inline struct cache_geom *cache_geom(const struct cache_inode *ci)
{
	return atomic_load_explicit(&((struct cache_inode *)ci)->geom, memory_order_acquire);
}

/* A geometry that covers page index: a caller that knows the index has
 * seen the growth that made it, so the current one does (the slow path
 * looks again after a full fence, and aborts on a page past every
 * mapping: an access out of bounds). */
struct cache_geom *cache_geom_slow(const struct cache_inode *ci, uint64_t index);

static inline struct cache_geom *cache_geom_for(const struct cache_inode *ci, uint64_t index)
{
	struct cache_geom *g = cache_geom(ci);

	return __builtin_expect(index < g->nr_pages, 1) ? g : cache_geom_slow(ci, index);
}

/* Pages the segments hold now (the file may grow up to this without a
 * growth of the segments). */
static inline uint64_t cache_nr_pages(const struct cache_inode *ci)
{
	return cache_geom(ci)->nr_pages;
}

static inline struct shm_page *cache_page(const struct cache_inode *ci, uint64_t index)
{
	return &cache_geom_for(ci, index)->dirty.pages[index];
}

static inline struct page_priv *cache_page_priv(const struct cache_inode *ci, uint64_t index)
{
	return &cache_geom_for(ci, index)->priv[index];
}

/* Byte pos of the data segment, in a mapping that covers `len` bytes
 * from there (len >= 1). */
static inline uint8_t *cache_data(const struct cache_inode *ci, uint64_t pos, uint64_t len)
{
	return cache_geom_for(ci, (pos + len - 1) >> NTFSD_PAGE_SHIFT)->data + pos;
}

/* The dirty bitmap: the current view (scans), or one that covers index. */
static inline struct dirty_bitmap *cache_dirty(const struct cache_inode *ci)
{
	return &cache_geom(ci)->dirty;
}

static inline struct dirty_bitmap *cache_dirty_for(const struct cache_inode *ci, uint64_t index)
{
	return &cache_geom_for(ci, index)->dirty;
}

/* Grow the segments to hold at least `pages` pages, in place (size_lock
 * held): clients that have the old size mapped keep working and map the
 * rest when they need it.  -EFBIG past max_pages or RLIMIT_FSIZE (with
 * the message, and remembered as cache_refuse_growth() does), -ENOMEM. */
int cache_inode_grow(struct cache_inode *ci, uint64_t pages);

/* Pages that may hold state (see used_pages). */
static inline uint64_t cache_used_pages(const struct cache_inode *ci)
{
	uint64_t n = atomic_load(&((struct cache_inode *)ci)->used_pages), nr = cache_nr_pages(ci);

	return n < nr ? n : nr;
}

/* Dirty pages as the daemon counts them: bits of the dirty bitmap below
 * used_pages, never the header's nr_dirty (which any writer of the file
 * can set to anything). */
static inline uint64_t cache_nr_dirty(const struct cache_inode *ci)
{
	return dirty_bitmap_count(cache_dirty(ci), cache_used_pages(ci));
}

static inline bool cache_has_dirty(const struct cache_inode *ci)
{
	return dirty_bitmap_next(cache_dirty(ci), 0) < cache_used_pages(ci);
}

/* The on-disk inode lags: sizes or times still to be written. */
static inline bool cache_inode_meta_dirty(const struct cache_inode *ci)
{
	return ci->sizes_dirty || atomic_load(&ci->times_dirty);
}

/* The file's data or size changed now: its modification and change times
 * follow at the next write_inode (mtime policy: README, "Times"). */
void cache_inode_touch(struct cache_inode *ci);
/* CLOCK_REALTIME in ns: the clock mtime_ns is kept in. */
uint64_t cache_realtime_ns(void);

/* Raise the high-water mark to cover bytes [0, bytes). */
static inline void cache_use_pages(struct cache_inode *ci, uint64_t bytes)
{
	uint64_t n = cache_pages_for(bytes), old = atomic_load(&ci->used_pages);

	while (old < n && !atomic_compare_exchange_weak(&ci->used_pages, &old, n))
		;
}

#endif
