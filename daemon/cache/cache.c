/*
 * cache.c — creating the cache, opening and closing cache inodes and their
 * shared segments.
 *
 * Invariants: see cache.h.  Segments are memfds sealed against shrinking
 * (F_SEAL_SHRINK) so a mapping can never lose its backing under a client;
 * the daemon maps them read-write, clients get what their open mode allows.
 */
#include "cache_int.h"
#include "holders.h"
#include "sanity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fdstore.h"
#include "log.h"
#include "page.h"
#include "segment.h"
#include "seqcount.h"

/* A sealed memfd of mode 0600: a client handed a read-only descriptor of
 * it cannot reopen /proc/self/fd/N writable (memfds are created 0777),
 * unless it runs as the daemon's user or as root, who are trusted anyway. */
static int memfd_sized(const char *name, uint64_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int cache_create(const struct address_space_operations *aops, void *fs,
		 const struct cache_geometry *geo, uint64_t limit_bytes, struct cache **out)
{
	struct cache *c = calloc(1, sizeof(*c));
	struct shm_volume_header *h;
	int fd;

	if (!c)
		return -ENOMEM;
	fd = memfd_sized("ntfsd-volume", sizeof(*h));
	if (fd < 0) {
		free(c);
		return ntfs_fail(-fd, "cannot create the volume header segment: %s",
				 strerror(-fd));
	}
	h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		close(fd);
		free(c);
		return ntfs_fail(errno, "cannot map the volume header segment: %s",
				 strerror(errno));
	}
	h->magic = NTFSD_SHM_VOLUME_MAGIC;
	h->layout_version = NTFSD_SHM_LAYOUT_VERSION;
	h->page_size = NTFSD_PAGE_SIZE;
	h->buffer_size = geo->sector_size;
	h->cluster_size = geo->cluster_size;
	h->max_inodes = NTFSD_MAX_INODES;
	c->limit_pages = limit_bytes >> NTFSD_PAGE_SHIFT;
	if (c->limit_pages < 16)
		c->limit_pages = 16;
	atomic_store(&h->counters.cache_limit, c->limit_pages << NTFSD_PAGE_SHIFT);
	c->aops = aops;
	c->fs = fs;
	c->geo = *geo;
	c->header = h;
	c->header_fd = fd;
	atomic_store(&c->max_lock_hold_ms, CACHE_DEFAULT_MAX_LOCK_HOLD_MS);
	cache_mutex_init(&c->lock, LOCK_CACHE);
	cache_mutex_init(&c->reclaim_lock, LOCK_RECLAIM);
	{
		pthread_rwlockattr_t ra;

		/* a namespace change must not starve behind a stream of opens */
		pthread_rwlockattr_init(&ra);
		pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		cache_rwlock_init(&c->ns_lock, LOCK_NS, &ra);
		pthread_rwlockattr_destroy(&ra);
	}
	*out = c;
	return 0;
}

static void segment_name(char *buf, size_t size, uint64_t mft_no, const char *kind)
{
	snprintf(buf, size, "seg.%llu.%s", (unsigned long long)mft_no, kind);
}

static void geom_unmap(struct cache_geom *g)
{
	if (g->data && g->data_size)
		munmap(g->data, g->data_size);
	if (g->state)
		munmap(g->state, g->state_size);
	if (g->priv)
		munmap(g->priv, g->priv_size);
	free(g);
}

static void geom_free_all(struct cache_inode *ci)
{
	struct cache_geom *g = atomic_load(&ci->geom), *older;

	for (; g; g = older) {
		older = g->older;
		geom_unmap(g);
	}
	atomic_store(&ci->geom, NULL);
}

struct cache_geom *cache_geom_slow(const struct cache_inode *ci, uint64_t index)
{
	struct cache_geom *g;

	atomic_thread_fence(memory_order_seq_cst);
	g = cache_geom(ci);
	if (index < g->nr_pages)
		return g;
	fprintf(stderr, "<2>ntfsd: BUG: page %llu of MFT record %llu lies past its segments "
		"(%llu pages)\n", (unsigned long long)index, (unsigned long long)ci->mft_no,
		(unsigned long long)g->nr_pages);
	abort();
}

/* Map ci's three memfds for nr_pages pages (they are at least that long). */
static int geom_map(struct cache_inode *ci, const struct shm_file_header *layout,
		    struct cache_geom **out)
{
	struct cache_geom *g = calloc(1, sizeof(*g));
	int err;

	if (!g)
		return -ENOMEM;
	g->nr_pages = layout->nr_pages;
	g->data_size = layout->nr_pages << NTFSD_PAGE_SHIFT;
	g->state_size = layout->segment_size;
	g->priv_size = layout->nr_pages * sizeof(struct page_priv);
	if (g->data_size) {
		g->data = mmap(NULL, g->data_size, PROT_READ | PROT_WRITE, MAP_SHARED, ci->data_fd, 0);
		if (g->data == MAP_FAILED)
			goto fail;
	}
	g->state = mmap(NULL, (size_t)g->state_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			ci->state_fd, 0);
	if (g->state == MAP_FAILED)
		goto fail;
	if (g->priv_size) {
		g->priv = mmap(NULL, (size_t)g->priv_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       ci->priv_fd, 0);
		if (g->priv == MAP_FAILED)
			goto fail;
	}
	dirty_bitmap_init(&g->dirty, g->state, layout);
	*out = g;
	return 0;
fail:
	err = -errno;
	if (g->data == MAP_FAILED)
		g->data = NULL;
	if (g->state == MAP_FAILED)
		g->state = NULL;
	if (g->priv == MAP_FAILED)
		g->priv = NULL;
	geom_unmap(g);
	return err;
}

void cache_inode_destroy(struct cache_inode *ci)
{
	char name[64];

	if (ci->stored) {
		segment_name(name, sizeof(name), ci->mft_no, "data");
		fdstore_remove(ci->cache->store, name);
		segment_name(name, sizeof(name), ci->mft_no, "pages");
		fdstore_remove(ci->cache->store, name);
	}
	geom_free_all(ci);
	if (ci->data_fd >= 0)
		close(ci->data_fd);
	if (ci->state_fd >= 0)
		close(ci->state_fd);
	if (ci->priv_fd >= 0)
		close(ci->priv_fd);
	ci->cache->aops->destroy_inode(ci);
}

void cache_inode_init(struct cache_inode *ci, struct cache *c, uint64_t ino)
{
	ci->cache = c;
	ci->mft_no = ino;
	ci->data_fd = ci->state_fd = ci->priv_fd = -1;
	atomic_store(&ci->wb_fence, UINT64_MAX);
	cache_mutex_init(&ci->size_lock, LOCK_SIZE);
	cache_mutex_init(&ci->wb_lock, LOCK_WB);
}

uint64_t cache_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cache_inode_touch(struct cache_inode *ci)
{
	atomic_store(&ci->mtime_ns, cache_realtime_ns());
	atomic_store(&ci->times_dirty, true);
}

void cache_inode_fini(struct cache_inode *ci)
{
	cache_mutex_destroy(&ci->size_lock);
	cache_mutex_destroy(&ci->wb_lock);
}

void cache_destroy(struct cache *c)
{
	struct cache_inode *ci, *next;

	if (!c)
		return;
	for (ci = c->inodes; ci; ci = next) {
		next = ci->next;
		if (ci->stored && (cache_has_dirty(ci) || cache_inode_meta_dirty(ci))) {
			/* writeback failed: the next daemon gets another chance */
			ci->stored = false;
			ntfs_error("MFT record %llu still has dirty data; its segments stay in the "
				   "store", (unsigned long long)ci->mft_no);
			fprintf(stderr, "<4>%s\n", ntfs_last_error());
		}
		cache_inode_destroy(ci);
	}
	cache_holders_destroy(c);
	munmap(c->header, sizeof(*c->header));
	close(c->header_fd);
	cache_mutex_destroy(&c->lock);
	cache_mutex_destroy(&c->reclaim_lock);
	cache_rwlock_destroy(&c->ns_lock);
	free(c);
}

int cache_inode_map(struct cache_inode *ci, int data_fd, int state_fd,
		    const struct shm_file_header *layout)
{
	struct cache_geom *g;
	struct stat st;
	int err;

	ci->data_fd = data_fd;
	ci->state_fd = state_fd;
	ci->buffer_size = layout->buffer_size;
	ci->buffers_per_page = layout->buffers_per_page;
	ci->max_pages = layout->max_pages;
	/* Only the caller's private copy of the geometry counts from here on:
	 * the mapped header is writable by every writer of the file.  A
	 * daemon killed in the middle of a growth may have left the memfds
	 * longer than the header says: the header's size is what holds. */
	if (fstat(state_fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < layout->segment_size)
		return -EINVAL;   /* the segment is not the one the layout describes */
	if (fstat(data_fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < layout->nr_pages << NTFSD_PAGE_SHIFT)
		return -EINVAL;
	/* page_priv: daemon-private, in a memfd too, so a larger mapping of
	 * it after a growth shares the state of the pages both cover */
	ci->priv_fd = memfd_create("ntfsd-priv", MFD_CLOEXEC);
	if (ci->priv_fd < 0)
		return -errno;
	if (ftruncate(ci->priv_fd, (off_t)(layout->nr_pages * sizeof(struct page_priv))) < 0)
		return -errno;
	err = geom_map(ci, layout, &g);
	if (err)
		return err;
	ci->state = g->state;
	atomic_store(&ci->geom, g);
	cache_use_pages(ci, ci->i_size);
	{
		struct cache_attr a;

		ci->cache->aops->getattr(ci, &a);
		cache_use_pages(ci, a.allocated_size);
	}
	return 0;
}

int cache_inode_grow(struct cache_inode *ci, uint64_t pages)
{
	struct cache_geom *old = cache_geom(ci), *g;
	struct shm_file_header layout;
	uint64_t nr;
	int err;

	cache_assert_held(&ci->size_lock);
	if (pages <= old->nr_pages)
		return 0;
	if (pages > ci->max_pages)
		return cache_refuse_growth(ci, pages);
	/* at least double, so a file growing a page at a time maps a few
	 * times, not at every page */
	nr = old->nr_pages * 2 > pages ? old->nr_pages * 2 : pages;
	if (nr > ci->max_pages)
		nr = ci->max_pages;
	shm_file_layout_max(&layout, nr, ci->max_pages, ci->buffer_size);
	/* The memfds get longer first: whoever maps them by the header (a
	 * client, a daemon adopting them after a crash) finds them at least
	 * as long as it says. */
	if (ftruncate(ci->data_fd, (off_t)(nr << NTFSD_PAGE_SHIFT)) < 0 ||
	    ftruncate(ci->state_fd, (off_t)layout.segment_size) < 0 ||
	    ftruncate(ci->priv_fd, (off_t)(nr * sizeof(struct page_priv))) < 0) {
		err = errno;
		if (err == EFBIG)
			return cache_refuse_growth(ci, pages);
		return ntfs_fail(err, "MFT record %llu: cannot grow its cache segments to %llu "
				 "pages: %s", (unsigned long long)ci->mft_no,
				 (unsigned long long)nr, strerror(err));
	}
	err = geom_map(ci, &layout, &g);
	if (err)
		return ntfs_fail(-err, "MFT record %llu: cannot map its cache segments grown to "
				 "%llu pages: %s", (unsigned long long)ci->mft_no,
				 (unsigned long long)nr, strerror(-err));
	g->older = old;
	atomic_store_explicit(&ci->geom, g, memory_order_release);
	/* then the header, for clients and for adoption */
	atomic_store_explicit((_Atomic uint64_t *)&ci->state->segment_size, layout.segment_size,
			      memory_order_release);
	atomic_store_explicit((_Atomic uint64_t *)&ci->state->nr_pages, nr, memory_order_release);
	log_info("MFT record %llu: cache segments grown from %llu to %llu pages",
		  (unsigned long long)ci->mft_no, (unsigned long long)old->nr_pages,
		  (unsigned long long)nr);
	return 0;
}

/* Store the inode's segments so they outlive a crash of the daemon. */
static void cache_inode_store(struct cache_inode *ci)
{
	struct fdstore *store = ci->cache->store;
	char name[64];

	if (fdstore_mode(store) == FDSTORE_NONE)
		return;
	segment_name(name, sizeof(name), ci->mft_no, "pages");
	if (fdstore_put(store, name, ci->state_fd))
		return;
	segment_name(name, sizeof(name), ci->mft_no, "data");
	ci->stored = true;
	fdstore_put(store, name, ci->data_fd);
}

/* Build the segments of a freshly loaded inode, holding at least
 * want_pages. */
static int cache_inode_segments(struct cache_inode *ci, uint64_t want_pages)
{
	const struct cache_geometry *geo = &ci->cache->geo;
	struct shm_file_header layout;
	uint64_t alloc_pages, nr_pages, room;
	struct cache_attr a;
	int data_fd, state_fd, err;

	ci->cache->aops->getattr(ci, &a);
	alloc_pages = cache_pages_for(a.allocated_size);
	nr_pages = cache_pages_for(ci->i_size);
	if (alloc_pages > nr_pages)
		nr_pages = alloc_pages;
	if (want_pages > nr_pages)
		nr_pages = want_pages < CACHE_MAX_WANT_PAGES ? want_pages : CACHE_MAX_WANT_PAGES;
	/* Room to grow: the segments are sparse, so capacity costs address
	 * space only, and nothing walks page state past used_pages. */
	/* room: the file's size again, at least 1 GiB, and up to the volume's
	 * size (capped): what a file can grow to while it stays open */
	room = cache_pages_for(geo->volume_bytes);
	if (room > CACHE_MAX_ROOM_PAGES)
		room = CACHE_MAX_ROOM_PAGES;
	if (room < CACHE_GROWTH_PAGES)
		room = CACHE_GROWTH_PAGES;
	if (room < nr_pages)
		room = nr_pages;
	if (geo->room_pages)
		room = geo->room_pages;
	if (room > CACHE_MAX_PAGES - nr_pages)
		room = CACHE_MAX_PAGES - nr_pages;
	data_fd = memfd_sized("ntfsd-data", (nr_pages + room) << NTFSD_PAGE_SHIFT);
	if (data_fd == -EFBIG)  /* RLIMIT_FSIZE: no room to grow, but serve */
		room = 0, data_fd = memfd_sized("ntfsd-data", nr_pages << NTFSD_PAGE_SHIFT);
	if (data_fd < 0)
		return data_fd;
	nr_pages += room;
	/* the bitmaps are laid out for growth in place up to max_pages:
	 * sparse, so it costs address space only (a 1 TiB file's bitmap is
	 * 32 MiB of it) */
	{
		uint64_t max = nr_pages * 1024 > CACHE_MIN_MAX_PAGES ? nr_pages * 1024
								     : CACHE_MIN_MAX_PAGES;

		if (max > CACHE_MAX_PAGES)
			max = CACHE_MAX_PAGES;
		shm_file_layout_max(&layout, nr_pages, max, geo->sector_size);
	}
	layout.volume_serial = geo->serial;
	layout.mft_no = ci->mft_no;
	layout.seq_no = ci->generation;
	layout.i_size = ci->i_size;
	state_fd = memfd_sized("ntfsd-pages", layout.segment_size);
	if (state_fd < 0) {
		close(data_fd);
		return state_fd;
	}
	/* the header goes in before anyone (a store, a client) can see it */
	if (pwrite(state_fd, &layout, sizeof(layout), 0) != (ssize_t)sizeof(layout)) {
		err = errno ? -errno : -EIO;
		close(data_fd);
		close(state_fd);
		return err;
	}
	return cache_inode_map(ci, data_fd, state_fd, &layout);
}

int cache_inode_alloc(struct cache *c, uint64_t mft_no, struct cache_inode **out)
{
	return c->aops->alloc_inode(c, mft_no, out);
}

/* want_pages: pages the segments must hold at least (a growth refused
 * before; 0: none). */
static int cache_inode_load(struct cache *c, uint64_t mft_no, uint64_t want_pages,
			    struct cache_inode **out)
{
	struct cache_inode *ci;
	int err = cache_inode_alloc(c, mft_no, &ci);

	if (err)
		return err;
	err = cache_inode_segments(ci, want_pages);
	if (err && want_pages) {
		/* segments for the growth refused before cannot be had:
		 * serve the file as it is, the growth stays refused */
		cache_inode_destroy(ci);
		return cache_inode_load(c, mft_no, 0, out);
	}
	if (err) {
		if (!strstr(ntfs_last_error(), "segment"))
			ntfs_error("cannot create the shared segments of MFT record %llu: %s",
				   (unsigned long long)mft_no, strerror(-err));
		cache_inode_destroy(ci);
		return err;
	}
	*out = ci;
	return 0;
}

static int slot_alloc(struct cache *c)
{
	uint32_t i;

	for (i = 0; i < NTFSD_MAX_INODES; i++)
		if (!c->slot_used[i]) {
			c->slot_used[i] = 1;
			return (int)i;
		}
	return -1;
}

/* The sizes come from the caller (getattr takes the file system's locks,
 * which rank above c->lock): the inode is not visible yet, so they cannot
 * have changed since. */
static void slot_publish(struct cache_inode *ci, const struct cache_attr *a)
{
	struct shm_inode_slot *s = &ci->cache->header->inodes[ci->slot];
	struct inode_sizes v = { .i_size = ci->i_size,
				 .initialized_size = a->initialized_size,
				 .allocated_size = a->allocated_size };

	s->mft_no = ci->mft_no;
	s->in_use = 1;
	atomic_store(&ci->state->i_size, ci->i_size);
	inode_slot_write(s, &v);
}

int cache_open(struct cache *c, const char *path, struct cache_inode **out)
{
	int err;

	cache_rwlock_rdlock(&c->ns_lock);
	err = cache_open_locked(c, path, out);
	cache_rwlock_unlock(&c->ns_lock);
	return err;
}

int cache_open_locked(struct cache *c, const char *path, struct cache_inode **out)
{
	struct cache_inode *ci, *fresh = NULL;
	struct cache_attr a;
	uint64_t ino, want = 0;
	int err;

	err = c->aops->lookup(c, path, &ino);
	if (err)
		return err;
	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci && ci->mft_no != ino; ci = ci->next)
		;
	if (ci && !ci->refs && atomic_load(&ci->outgrown_pages) && !cache_has_dirty(ci) &&
	    !cache_inode_meta_dirty(ci) && !ci->trim_pending) {
		/* it outgrew its segments and nobody uses it: forget the
		 * cached pages (all clean) and load it anew, with segments
		 * that hold the growth refused (the EFBIG message promises
		 * it) */
		want = atomic_load(&ci->outgrown_pages);
		cache_inode_release(ci);
		ci = NULL;
	}
	if (ci) {
		ci->refs++;
		ci->openers++;
		atomic_fetch_add(&c->header->counters.open_files, 1);
		cache_inode_sanity_refs(ci);
		cache_mutex_unlock(&c->lock);
		cache_inode_sanity_settled(ci);
		*out = ci;
		return 0;
	}
	cache_mutex_unlock(&c->lock);

	err = cache_inode_load(c, ino, want, &fresh);
	if (err)
		return err;
	c->aops->getattr(fresh, &a);
	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci && ci->mft_no != fresh->mft_no; ci = ci->next)
		;
	if (ci) {               /* another opener won the race */
		ci->refs++;
		ci->openers++;
		atomic_fetch_add(&c->header->counters.open_files, 1);
		cache_inode_sanity_refs(ci);
		cache_mutex_unlock(&c->lock);
		cache_inode_destroy(fresh);
		cache_inode_sanity_settled(ci);
		*out = ci;
		return 0;
	}
	err = cache_inode_insert(fresh, 1, &a);
	cache_mutex_unlock(&c->lock);
	if (err) {
		cache_inode_destroy(fresh);
		return ntfs_fail(-err, "%s: too many open files (at most %u)", path,
				 NTFSD_MAX_INODES);
	}
	cache_inode_sanity_settled(fresh);
	*out = fresh;
	return 0;
}

int cache_inode_insert(struct cache_inode *ci, unsigned openers, const struct cache_attr *a)
{
	struct cache *c = ci->cache;
	int slot;

	cache_assert_held(&c->lock);
	slot = slot_alloc(c);
	if (slot < 0 && cache_evict_unused(c))
		slot = slot_alloc(c);
	if (slot < 0)
		return -EMFILE;
	ci->slot = (uint32_t)slot;
	ci->refs = ci->openers = openers;
	slot_publish(ci, a);
	ci->next = c->inodes;
	c->inodes = ci;
	atomic_fetch_add(&c->header->counters.open_files, openers);
	cache_inode_store(ci);
	cache_inode_sanity_refs(ci);
	return 0;
}

void cache_inode_get(struct cache_inode *ci)
{
	cache_mutex_lock(&ci->cache->lock);
	ci->refs++;
	cache_inode_sanity_refs(ci);
	cache_mutex_unlock(&ci->cache->lock);
}

/* Called with c->lock held and refs == 0: unlink and free. */
void cache_inode_release(struct cache_inode *ci)
{
	struct cache *c = ci->cache;
	struct cache_inode **pp;

	cache_assert_held(&c->lock);
	for (pp = &c->inodes; *pp != ci; pp = &(*pp)->next)
		;
	*pp = ci->next;
	c->header->inodes[ci->slot].in_use = 0;
	c->slot_used[ci->slot] = 0;
	atomic_fetch_sub(&c->header->counters.cached_pages, atomic_load(&ci->cached_pages));
	cache_inode_destroy(ci);
}

/* An inode nobody uses any more stays cached while it has cached pages, so
 * reopening it finds them; reclaim frees it once its last page goes.  One
 * that outgrew its segments stays too: the next open remakes them with
 * room for that growth (reclaim or the slot table may still take it). */
static void cache_inode_unused(struct cache_inode *ci)
{
	if (atomic_load(&ci->unlinked)) {
		cache_inode_release(ci);        /* the file is gone: its pages too */
		return;
	}
	if (atomic_load(&ci->orphan))
		return;                         /* the flusher frees it on disk first */
	if (atomic_load(&ci->cached_pages) == 0 && !cache_has_dirty(ci) &&
	    !cache_inode_meta_dirty(ci) && !ci->trim_pending &&
	    !atomic_load(&ci->outgrown_pages))
		cache_inode_release(ci);
}

bool cache_evict_unused(struct cache *c)
{
	struct cache_inode *ci;

	cache_assert_held(&c->lock);
	for (ci = c->inodes; ci && (ci->refs || cache_has_dirty(ci) ||
				    cache_inode_meta_dirty(ci) || ci->trim_pending ||
				    atomic_load(&ci->orphan));
	     ci = ci->next)
		;
	if (!ci)
		return false;
	cache_inode_release(ci);  /* no opener: no pins, no client locks */
	return true;
}

void cache_inode_put(struct cache_inode *ci)
{
	struct cache *c = ci->cache;

	cache_mutex_lock(&c->lock);
	ci->refs--;
	cache_inode_sanity_refs(ci);
	if (ci->refs == 0)
		cache_inode_unused(ci);
	cache_mutex_unlock(&c->lock);
}

void cache_close(struct cache_inode *ci)
{
	struct cache *c = ci->cache;

	cache_mutex_lock(&c->lock);
	ci->openers--;
	atomic_fetch_sub(&c->header->counters.open_files, 1);
	ci->refs--;
	cache_inode_sanity_refs(ci);
	if (ci->refs == 0)
		cache_inode_unused(ci);
	cache_mutex_unlock(&c->lock);
}

struct cache_inode *cache_inode_find(struct cache *c, uint64_t mft_no)
{
	struct cache_inode *ci;

	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci && ci->mft_no != mft_no; ci = ci->next)
		;
	if (ci)
		ci->refs++;
	cache_mutex_unlock(&c->lock);
	return ci;
}

bool cache_getattr(struct cache *c, uint64_t mft_no, struct cache_attr *a)
{
	struct cache_inode *ci = cache_inode_find(c, mft_no);

	if (!ci)
		return false;
	c->aops->getattr(ci, a);
	a->times_pending = atomic_load(&ci->times_dirty);
	a->mtime_ns = atomic_load(&ci->mtime_ns);
	cache_inode_put(ci);
	return true;
}

void cache_count_pages(struct cache *c, uint64_t mft_no, uint64_t *cached, uint64_t *dirty,
		       uint64_t *writeback)
{
	struct cache_inode *ci;
	uint64_t i;

	*cached = *dirty = *writeback = 0;
	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci && ci->mft_no != mft_no; ci = ci->next)
		;
	if (ci) {
		*cached = atomic_load(&ci->cached_pages);
		for (i = 0; i < cache_used_pages(ci); i++) {
			uint32_t f = page_flags(cache_page(ci, i));

			*dirty += !!(f & PG_dirty);
			*writeback += cache_page_writeback(ci, i);
		}
	}
	cache_mutex_unlock(&c->lock);
}

bool cache_account_page(struct cache_inode *ci, uint64_t index)
{
	if (atomic_load(&cache_page_priv(ci, index)->counted))
		return false;
	cache_reserve_page(ci->cache);
	if (atomic_exchange(&cache_page_priv(ci, index)->counted, 1)) {
		atomic_fetch_sub(&ci->cache->header->counters.cached_pages, 1);
		return false;
	}
	atomic_fetch_add(&ci->cached_pages, 1);
	return true;
}

void cache_unaccount_page(struct cache_inode *ci, uint64_t index)
{
	if (atomic_exchange(&cache_page_priv(ci, index)->counted, 0)) {
		atomic_fetch_sub(&ci->cached_pages, 1);
		atomic_fetch_sub(&ci->cache->header->counters.cached_pages, 1);
	}
}
