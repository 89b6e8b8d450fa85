/*
 * adopt.c — taking over the segments a crashed daemon left in the store.
 *
 * Invariants: nothing read from an adopted segment is used before it is
 * checked against the volume or against the segment's real size: the
 * names, the header geometry (recomputed by shm_file_layout()), the volume
 * serial, the MFT record number and sequence number, i_size (bounded by
 * the data segment, then reconciled with the inode on disk by the file
 * system, aops->adopt_sizes: a crash in the middle of a size change may
 * leave it past the allocation or beside a resident value of another
 * length) and every page's buffer bits (masked to the page's buffers,
 * dirty only where uptodate).  Page locks are
 * broken (their holders belonged to the dead daemon or to clients whose
 * connection died with it), pins are reset, and a page that was under
 * writeback is dirty again in every uptodate buffer, since nobody knows
 * whether its I/O finished.  A clean page reaching past the record's
 * initialized_size is dropped and read again, so the cache serves what the
 * disk holds (a truncate cut short may leave old bytes there that the
 * record no longer covers).  An adopted inode has no openers; it stays
 * cached while it has dirty pages, so writeback finds it.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dirty_bitmap.h"
#include "error.h"
#include "fdstore.h"
#include "log.h"
#include "page.h"
#include "sanity.h"
#include "segment.h"

struct adopt_pair {
	uint64_t mft_no;
	int data_fd, state_fd;
	char data_name[64], state_name[64];
};

static bool parse_name(const char *name, uint64_t *mft_no, bool *is_data)
{
	unsigned long long no;
	char kind[8];
	int end = 0;

	if (sscanf(name, "seg.%llu.%5[a-z]%n", &no, kind, &end) != 2 || name[end])
		return false;
	*mft_no = no;
	if (!strcmp(kind, "data"))
		*is_data = true;
	else if (!strcmp(kind, "pages"))
		*is_data = false;
	else
		return false;
	return true;
}

static void drop(struct cache *c, const char *name, int fd)
{
	if (fd >= 0)
		close(fd);
	if (name[0])
		fdstore_remove(c->store, name);
}

/* Check the page-state header of a stored pair; fills *h_out with a
 * private, validated copy. */
static int check_header(struct cache *c, struct adopt_pair *p, struct shm_file_header *out)
{
	struct shm_file_header h, want;
	struct stat ds, ss;
	int seals;

	if (fstat(p->data_fd, &ds) < 0 || fstat(p->state_fd, &ss) < 0)
		return ntfs_fail(errno, "cannot stat: %s", strerror(errno));
	if (!S_ISREG(ds.st_mode) || !S_ISREG(ss.st_mode))
		return ntfs_fail(EINVAL, "not a memory segment");
	seals = fcntl(p->data_fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK) ||
	    (seals = fcntl(p->state_fd, F_GET_SEALS)) < 0 || !(seals & F_SEAL_SHRINK))
		return ntfs_fail(EINVAL, "not sealed against shrinking");
	/* segments of an older daemon may still have memfd_create's 0777 */
	if (fchmod(p->data_fd, 0600) < 0 || fchmod(p->state_fd, 0600) < 0)
		return ntfs_fail(errno, "cannot restrict its mode: %s", strerror(errno));
	if (pread(p->state_fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return ntfs_fail(EINVAL, "page-state segment too short");
	/* a daemon killed in the middle of a growth leaves the memfds longer
	 * than the header says (they grow first): the header's size holds */
	if (!shm_file_header_valid(&h, (uint64_t)ss.st_size))
		return ntfs_fail(EINVAL, "page-state header does not describe its segment");
	shm_file_layout_max(&want, h.nr_pages, h.max_pages, c->geo.sector_size);
	if (h.buffer_size != want.buffer_size)
		return ntfs_fail(EINVAL, "buffer size %u is not the volume's sector size %u",
				 h.buffer_size, want.buffer_size);
	if (h.volume_serial != c->geo.serial)
		return ntfs_fail(EINVAL, "made for volume serial %016" PRIx64 ", this is %016" PRIx64,
				 h.volume_serial, c->geo.serial);
	if (h.mft_no != p->mft_no)
		return ntfs_fail(EINVAL, "header names MFT record %" PRIu64, h.mft_no);
	if ((uint64_t)ds.st_size < (h.nr_pages << NTFSD_PAGE_SHIFT))
		return ntfs_fail(EINVAL, "data segment of %lld bytes for %" PRIu64 " pages",
				 (long long)ds.st_size, h.nr_pages);
	*out = h;
	return 0;
}

/* A clean page whose bytes the disk may no longer hold: not uptodate any
 * more, its memory punched out, so the next reader reads the disk. */
static void forget_page(struct cache_inode *ci, uint64_t index, uint32_t *flags)
{
	struct shm_page *p = cache_page(ci, index);

	*flags &= ~(uint32_t)(PG_uptodate | PG_write_ready);
	atomic_store(&p->buf_uptodate, 0);
	atomic_fetch_add(&p->generation, 1);
	if (fallocate(ci->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(index << NTFSD_PAGE_SHIFT), NTFSD_PAGE_SIZE) < 0)
		memset(cache_data(ci, index << NTFSD_PAGE_SHIFT, NTFSD_PAGE_SIZE), 0, NTFSD_PAGE_SIZE);
}

/* Rebuild the page state from the flags a dead daemon and its clients
 * left; returns the number of dirty pages.
 *
 * A clean page reaching past the record's initialized_size is read again:
 * in a running daemon such a page holds zeroes there (a page written past
 * the record's initialized_size stays under writeback until the record
 * covers it, and comes back dirty), except when a shrinking truncate was
 * cut short after its record write lowered the record's sizes, while
 * i_size (which may be kept, see adopt_pair) and the cache still had the
 * old bytes.  The disk reads zeroes there now: serving the cached bytes
 * would show data that changes at the next restart without a write. */
static uint64_t rebuild_pages(struct cache_inode *ci)
{
	uint32_t bpp = ci->buffers_per_page;
	uint32_t mask = bpp >= 32 ? ~0u : (1u << bpp) - 1;
	uint64_t i, w, nr_dirty = 0, end = cache_pages_for(ci->i_size), disk_init;
	struct cache_attr a;

	ci->cache->aops->getattr(ci, &a);
	disk_init = a.resident ? UINT64_MAX : a.initialized_size;

	for (w = 0; w < cache_dirty(ci)->l1_words; w++)
		atomic_store(&cache_dirty(ci)->l1[w], 0);
	for (w = 0; w < cache_dirty(ci)->l2_words; w++)
		atomic_store(&cache_dirty(ci)->l2[w], 0);
	for (i = 0; i < cache_used_pages(ci); i++) {
		struct shm_page *p = cache_page(ci, i);
		uint32_t f = atomic_load(&p->flags);
		uint32_t upt = atomic_load(&p->buf_uptodate) & mask;
		uint32_t dirty = atomic_load(&p->buf_dirty) & mask;
		uint32_t keep = f & (PG_uptodate | PG_write_ready | PG_buffers);

		if (f & PG_uptodate)
			upt = mask;
		if (f & PG_writeback)
			dirty |= upt;
		if ((f & PG_dirty) && !(f & PG_buffers))
			dirty |= upt;   /* dirty without buffers: the whole page */
		dirty &= upt;           /* bytes the cache never held are never written */
		if (i >= end)
			dirty = 0;      /* nothing past i_size reaches the disk */
		atomic_store(&p->pincount, 0);
		atomic_store(&p->lock_owner, 0);
		atomic_store(&p->buf_uptodate, upt);
		atomic_store(&p->buf_dirty, dirty);
		if (!dirty && (keep & PG_uptodate) && ((i + 1) << NTFSD_PAGE_SHIFT) > disk_init)
			forget_page(ci, i, &keep);
		if (dirty) {
			keep |= PG_dirty;
			dirty_bitmap_set(cache_dirty_for(ci, i), i);
			if (!atomic_load(&p->first_dirtied_ns))
				atomic_store(&p->first_dirtied_ns, 1);
			nr_dirty++;
		} else {
			atomic_store(&p->first_dirtied_ns, 0);
		}
		atomic_store(&p->flags, keep);
		if (keep & PG_uptodate)
			cache_account_page(ci, i);
	}
	atomic_store(&ci->state->nr_dirty, nr_dirty);
	return nr_dirty;
}

static int adopt_pair(struct cache *c, struct adopt_pair *p, uint64_t *dirty_out)
{
	struct shm_file_header h;
	struct cache_inode *ci;
	struct cache_attr a;
	uint64_t i_size, limit;
	int err;

	err = check_header(c, p, &h);
	if (err)
		return err;
	err = cache_inode_alloc(c, p->mft_no, &ci);
	if (err)
		return err;
	if (ci->generation != h.seq_no) {
		cache_inode_destroy(ci);
		return ntfs_fail(ESTALE, "MFT record %" PRIu64 " now has sequence number %u, the "
				 "segments were made for %u: the file was deleted since",
				 p->mft_no, ci->generation, h.seq_no);
	}
	i_size = atomic_load(&h.i_size);
	limit = h.nr_pages << NTFSD_PAGE_SHIFT;
	c->aops->adopt_sizes(ci, limit, &i_size);
	ci->i_size = i_size;
	err = cache_inode_map(ci, p->data_fd, p->state_fd, &h);
	p->data_fd = p->state_fd = -1;  /* the inode owns them now */
	if (err) {
		cache_inode_destroy(ci);
		return ntfs_fail(-err, "cannot map: %s", strerror(-err));
	}
	*dirty_out = rebuild_pages(ci);
	c->aops->getattr(ci, &a);
	cache_mutex_lock(&c->lock);
	err = cache_inode_insert(ci, 0, &a);
	cache_mutex_unlock(&c->lock);
	if (err) {
		ci->stored = true;      /* destroying it removes the names */
		cache_inode_destroy(ci);
		return ntfs_fail(-err, "too many inodes");
	}
	cache_inode_sanity_settled(ci);
	return 0;
}

unsigned cache_adopt(struct cache *c, struct fdstore_entry *e, size_t n)
{
	struct adopt_pair *pairs = calloc(n ? n : 1, sizeof(*pairs));
	size_t i, j, np = 0;
	unsigned adopted = 0;

	if (!pairs) {
		log_error("adopting stored segments: out of memory");
		for (i = 0; i < n; i++)
			close(e[i].fd);
		return 0;
	}
	for (i = 0; i < n; i++) {
		uint64_t mft_no;
		bool is_data;

		if (!parse_name(e[i].name, &mft_no, &is_data)) {
			log_warning("segment store: ignoring %s: not a segment name ntfsd makes",
				    e[i].name);
			drop(c, e[i].name, e[i].fd);
			continue;
		}
		for (j = 0; j < np && pairs[j].mft_no != mft_no; j++)
			;
		if (j == np) {
			pairs[np].mft_no = mft_no;
			pairs[np].data_fd = pairs[np].state_fd = -1;
			np++;
		}
		if (is_data ? pairs[j].data_fd >= 0 : pairs[j].state_fd >= 0) {
			log_warning("segment store: %s given twice; keeping the first", e[i].name);
			close(e[i].fd);
			continue;
		}
		snprintf(is_data ? pairs[j].data_name : pairs[j].state_name, 64, "%s", e[i].name);
		*(is_data ? &pairs[j].data_fd : &pairs[j].state_fd) = e[i].fd;
	}
	for (j = 0; j < np; j++) {
		struct adopt_pair *p = &pairs[j];
		uint64_t dirty = 0;
		int err;

		if (p->data_fd < 0 || p->state_fd < 0) {
			log_warning("segment store: MFT record %" PRIu64 " has only its %s segment; "
				    "dropping it", p->mft_no, p->data_fd < 0 ? "page-state" : "data");
			drop(c, p->data_name, p->data_fd);
			drop(c, p->state_name, p->state_fd);
			continue;
		}
		err = adopt_pair(c, p, &dirty);
		if (err) {
			log_error("segment store: refusing the segments of MFT record %" PRIu64
				  ": %s; their pages are not written", p->mft_no, ntfs_last_error());
			drop(c, p->data_name, p->data_fd);
			drop(c, p->state_name, p->state_fd);
			continue;
		}
		adopted++;
		log_notice("segment store: adopted MFT record %" PRIu64 " with %" PRIu64
			   " dirty page%s", p->mft_no, dirty, dirty == 1 ? "" : "s");
	}
	free(pairs);
	return adopted;
}
