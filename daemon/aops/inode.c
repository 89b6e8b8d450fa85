/*
 * inode.c — NTFS's inode operations for the cache (aops.h): lookup, the
 * cache inode around an MFT record and its unnamed $DATA, sizes, reads,
 * adoption's reconciliation, the sanity checks; and the table itself.
 *
 * Invariants:
 *  - A cache inode is a regular file's MFT record with an unnamed $DATA
 *    attribute that is not encrypted; directories are EISDIR.
 *  - System files are the reserved records and everything under $Extend
 *    (ntfsd renames nothing, so this never changes while cached).
 *  - getattr reads the sizes under init_lock and rl_lock, so it never sees
 *    a half-made change; read holds rl_lock (read) across the disk reads.
 */
#include "ntfs_aops.h"
#include "ntfs_ci.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "attrib.h"
#include "device.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "layout.h"
#include "le.h"
#include "log.h"
#include "mft.h"
#include "runlist.h"
#include "sanity.h"
#include "volume.h"

static int ntfs_aops_lookup(struct cache *c, const char *path, uint64_t *ino)
{
	uint64_t mref;
	int err = ntfs_path_lookup(NTFS_VOL(c), path, 0, &mref);

	if (!err)
		*ino = MREF(mref);
	return err;
}

static int parent_is_extend(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	const struct ntfs_file_name *fn;
	uint32_t len;

	(void)ctx;
	(void)mft_no;
	if (le32(a->type) != AT_FILE_NAME || a->non_resident)
		return 0;
	fn = (const void *)ntfs_attr_value(a, &len);
	return len >= sizeof(*fn) && MREF(le64(fn->parent_directory)) == FILE_Extend;
}

static void ntfs_aops_destroy_inode(struct cache_inode *ci)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);

	ntfs_attr_close(nci->std);
	ntfs_attr_close(nci->data);
	ntfs_inode_close(nci->ni);
	cache_mutex_destroy(&nci->init_lock);
	cache_rwlock_destroy(&nci->rl_lock);
	cache_inode_fini(ci);
	free(nci);
}

static int ntfs_aops_alloc_inode(struct cache *c, uint64_t mft_no, struct cache_inode **out)
{
	struct ntfs_cache_inode *nci = calloc(1, sizeof(*nci));
	struct cache_inode *ci;
	pthread_rwlockattr_t ra;
	int err;

	if (!nci)
		return -ENOMEM;
	ci = &nci->vfs;
	cache_inode_init(ci, c, mft_no);
	cache_mutex_init(&nci->init_lock, LOCK_INIT);
	/* allocation must not starve behind a stream of readers */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	cache_rwlock_init(&nci->rl_lock, LOCK_RL, &ra);
	pthread_rwlockattr_destroy(&ra);

	err = ntfs_inode_open(NTFS_VOL(c), mft_no, &nci->ni);
	if (!err && ntfs_inode_is_dir(nci->ni))
		err = ntfs_fail(EISDIR, "MFT record %llu is a directory",
				(unsigned long long)mft_no);
	if (!err) {
		err = ntfs_attr_open(nci->ni, AT_DATA, NULL, 0, &nci->data);
		if (err == -ENOENT)
			err = ntfs_fail(ENOENT, "MFT record %llu has no unnamed $DATA",
					(unsigned long long)mft_no);
	}
	if (!err && (nci->data->flags & ATTR_IS_ENCRYPTED))
		err = ntfs_fail(EACCES, "MFT record %llu is encrypted: ntfsd cannot read "
				"encrypted files", (unsigned long long)mft_no);
	/* the times write_inode keeps; a record without them keeps none */
	if (!err && ntfs_attr_open(nci->ni, AT_STANDARD_INFORMATION, NULL, 0, &nci->std))
		nci->std = NULL;
	if (nci->std && (!nci->std->resident ||
			 nci->std->data_size < 32)) {
		ntfs_attr_close(nci->std);
		nci->std = NULL;
	}
	for (unsigned i = 0; i < 4; i++)
		atomic_store(&nci->std_times[i], nci->std ? get_le64(nci->std->value + 8 * i)
							  : nci->ni->times[i]);
	if (err) {
		ntfs_aops_destroy_inode(ci);
		return err;
	}
	ci->generation = nci->ni->seq_no;
	ci->i_size = nci->data->data_size;
	atomic_store(&ci->disk_init, nci->data->initialized_size);
	ci->system_file = mft_no < FILE_first_user ||
			  ntfs_inode_foreach_attr(nci->ni, parent_is_extend, NULL) > 0;
	*out = ci;
	return 0;
}

static void ntfs_aops_getattr(struct cache_inode *ci, struct cache_attr *a)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);

	/* initialized_size changes under init_lock (writeback), the
	 * allocation under rl_lock; i_size is one word (size_lock is held
	 * across allocation I/O, which a stat need not wait for) */
	cache_mutex_lock(&nci->init_lock);
	cache_rwlock_rdlock(&nci->rl_lock);
	a->i_size = ci->i_size;
	a->resident = nci->data->resident;
	a->initialized_size = a->resident ? ci->i_size : nci->data->initialized_size;
	a->allocated_size = nci->data->allocated_size;
	cache_rwlock_unlock(&nci->rl_lock);
	cache_mutex_unlock(&nci->init_lock);
}

/* A crash may cut any size change short; whatever step it cut, the sizes
 * kept are a valid triple (initialized <= data <= allocated). */
static void ntfs_aops_adopt_sizes(struct cache_inode *ci, uint64_t seg_bytes, uint64_t *i_size)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	struct ntfs_attr *na = nci->data;
	uint64_t limit = seg_bytes;

	if (!na->resident && na->allocated_size < limit)
		limit = na->allocated_size;
	if (na->resident && *i_size != na->data_size) {
		/* a resize of the value or a move out of the record was cut
		 * short: the record is the truth, the cached bytes below its
		 * size are still written */
		log_warning("segment store: MFT record %" PRIu64 ": i_size %" PRIu64 " is not the "
			    "resident size %" PRIu64 " (a size change was cut short): keeping "
			    "the record's", ci->mft_no, *i_size, na->data_size);
		*i_size = na->data_size;
	} else if (!na->resident && *i_size > limit) {
		/* a shrink reached the record before the header: the record wins */
		log_warning("segment store: MFT record %" PRIu64 ": i_size %" PRIu64 " lies past "
			    "the allocation on disk (%" PRIu64 "; a truncate was cut short): "
			    "keeping the record's size %" PRIu64, ci->mft_no, *i_size, limit,
			    na->data_size);
		*i_size = na->data_size;
	}
	if (na->resident)
		return;
	ci->sizes_dirty = *i_size != na->data_size;
	if (*i_size < na->data_size)
		ci->trim_pending = true;  /* clusters past the end go back */
	na->data_size = *i_size;
	if (na->initialized_size > *i_size) {
		na->initialized_size = *i_size;
		atomic_store(&ci->disk_init, *i_size);
		ci->sizes_dirty = true;
	}
}

static ssize_t ntfs_aops_read(struct cache_inode *ci, uint64_t pos, uint64_t len, uint8_t *buf)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	ssize_t n;

	cache_rwlock_rdlock(&nci->rl_lock);
	n = ntfs_attr_pread(nci->data, pos, len, buf);
	cache_rwlock_unlock(&nci->rl_lock);
	return n;
}

static int ntfs_aops_sync_fs(struct cache *c)
{
	return ntfs_device_flush(NTFS_VOL(c)->dev);
}

#if NTFSD_LOCKDEP

__attribute__((noreturn))
static void insane(struct ntfs_cache_inode *nci, const char *file, int line, const char *check)
{
	const struct ntfs_attr *na = nci->data;
	char detail[240];

	snprintf(detail, sizeof(detail), "%s, data size %llu, initialized %llu, allocated "
		 "%llu, disk_init %llu, runlist end vcn %lld",
		 na->resident ? "resident" : "non-resident", (unsigned long long)na->data_size,
		 (unsigned long long)na->initialized_size, (unsigned long long)na->allocated_size,
		 (unsigned long long)atomic_load(&nci->vfs.disk_init),
		 (long long)ntfs_rl_end_vcn(&na->rl));
	cache_insane_at(&nci->vfs, file, line, check, detail);
}

#define SANE(cond) do { if (!(cond)) insane(nci, file, line, #cond); } while (0)

void ntfs_ci_sanity_at(struct ntfs_cache_inode *nci, const char *file, int line)
{
	const struct ntfs_attr *na = nci->data;
	uint64_t disk_init = atomic_load(&nci->vfs.disk_init);
	uint32_t bits = NTFS_VOL(nci->vfs.cache)->geo.cluster_size_bits;

	lockdep_assert_held(&nci->init_lock, LOCK_INIT, file, line);
	if (na->resident) {
		SANE(na->initialized_size == na->data_size);
		SANE(disk_init == na->data_size);
		SANE(na->rl.count == 0);
		return;
	}
	/* the record's initialized_size never passes memory's; data_size
	 * may run ahead of initialized_size only between size changes */
	SANE(disk_init <= na->initialized_size);
	SANE(disk_init <= na->data_size);
	SANE(na->initialized_size <= na->allocated_size);
	SANE(na->data_size <= na->allocated_size);
	SANE(!(na->allocated_size & ((1ull << bits) - 1)));
	SANE((uint64_t)ntfs_rl_end_vcn(&na->rl) << bits == na->allocated_size);
}

void ntfs_aops_sanity_settled(struct cache_inode *ci, const char *file, int line)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	const struct ntfs_attr *na = nci->data;

	cache_mutex_lock_at(&nci->init_lock, file, line);
	ntfs_ci_sanity_at(nci, file, line);
	SANE(ci->i_size == na->data_size);
	SANE(na->initialized_size <= na->data_size);
	SANE(!ci->trim_pending || !na->resident);     /* room is never left resident */
	cache_mutex_unlock_at(&nci->init_lock, file, line);
}

#endif

const struct address_space_operations ntfs_aops = {
	.name = "ntfs",
	.lookup = ntfs_aops_lookup,
	.alloc_inode = ntfs_aops_alloc_inode,
	.destroy_inode = ntfs_aops_destroy_inode,
	.getattr = ntfs_aops_getattr,
	.adopt_sizes = ntfs_aops_adopt_sizes,
	.check_writable = ntfs_aops_check_writable,
	.read = ntfs_aops_read,
	.prepare_write = ntfs_aops_prepare_write,
	.truncate_blocks = ntfs_aops_truncate_blocks,
	.trim_allocation = ntfs_aops_trim_allocation,
	.writepages_begin = ntfs_aops_writepages_begin,
	.writepage = ntfs_aops_writepage,
	.writepages_flush = ntfs_aops_writepages_flush,
	.writepages_end = ntfs_aops_writepages_end,
	.write_inode = ntfs_aops_write_inode,
	.sync_fs = ntfs_aops_sync_fs,
	.stat_path = ntfs_aops_stat_path,
	.stat_inode = ntfs_aops_stat_inode,
	.readdir = ntfs_aops_readdir,
	.volume_info = ntfs_aops_volume_info,
	.create = ntfs_aops_create,
	.unlink = ntfs_aops_unlink,
	.rename = ntfs_aops_rename,
	.unlink_open = ntfs_aops_unlink_open,
	.free_orphan = ntfs_aops_free_orphan,
	.set_times = ntfs_aops_set_times,
	.set_times_path = ntfs_aops_set_times_path,
	.sync_dir_copies = ntfs_aops_sync_dir_copies,
#if NTFSD_LOCKDEP
	.sanity_settled = ntfs_aops_sanity_settled,
#endif
};

int ntfs_cache_create(struct ntfs_volume *vol, uint64_t limit_bytes, struct cache **out)
{
	struct cache_geometry geo = {
		.sector_size = vol->geo.sector_size,
		.cluster_size = vol->geo.cluster_size,
		.volume_bytes = vol->geo.nr_clusters << vol->geo.cluster_size_bits,
		.serial = vol->geo.serial,
	};

	return cache_create(&ntfs_aops, vol, &geo, limit_bytes, out);
}
