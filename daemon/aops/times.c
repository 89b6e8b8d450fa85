/*
 * times.c — NTFS's set_times, set_times_path and sync_dir_copies
 * (aops.h): utimensat(2) on $STANDARD_INFORMATION, and the copies in the
 * parents' $I30 entries (ntfs/inode_times.h does the on-disk work).
 *
 * Invariants: the change time is now in every call; the creation time is
 * never written; a cached inode's std_times follow only a successful
 * write.  NTFS metadata (records below the first user record but the
 * root, and $Extend) keeps its own times: -EPERM.
 */
#include "ntfs_ci.h"

#include <errno.h>
#include <strings.h>

#include "attr_write.h"
#include "attrib.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "layout.h"
#include "namespace.h"
#include "inode_times.h"
#include "volume.h"

int ntfs_ci_write_times(struct ntfs_cache_inode *nci, unsigned first, const uint64_t *t,
			unsigned n)
{
	uint64_t le[4] = { 0 };
	int err;

	if (first + n > 4)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		le[i] = htole64(t[i]);
	err = ntfs_attr_write_resident(nci->std, 8u * first, le, 8u * n);
	if (!err)
		for (unsigned i = 0; i < n; i++)
			atomic_store(&nci->std_times[first + i], t[i]);
	return err;
}

int ntfs_aops_set_times(struct cache_inode *ci, const struct cache_times *t)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);
	uint64_t v[3];

	if (!nci->std)
		return ntfs_fail(EOPNOTSUPP, "MFT record %llu has no resident "
				 "$STANDARD_INFORMATION to keep times in",
				 (unsigned long long)ci->mft_no);
	v[0] = t->set_mtime ? ntfs_time_from_unix_ns(t->mtime_ns) : atomic_load(&nci->std_times[1]);
	v[1] = ntfs_time_now();
	v[2] = t->set_atime ? ntfs_time_from_unix_ns(t->atime_ns) : atomic_load(&nci->std_times[3]);
	return ntfs_ci_write_times(nci, 1, v, 3);
}

int ntfs_aops_set_times_path(struct cache *c, const char *path, const struct cache_times *t)
{
	struct ntfs_volume *vol = NTFS_VOL(c);
	struct ntfs_inode *ni;
	uint64_t mref, v[4] = { 0 };
	unsigned mask = NTFS_TIME_MFT;
	int err = ntfs_path_lookup(vol, path, 0, &mref);

	if (err)
		return err;
	if ((MREF(mref) < FILE_first_user && MREF(mref) != FILE_root) ||
	    !strncasecmp(path, "/$Extend", 8))
		return ntfs_fail(EPERM, "%s is NTFS metadata: it keeps its own times", path);
	err = ntfs_inode_open(vol, MREF(mref), &ni);
	if (err)
		return err;
	v[2] = ntfs_time_now();
	if (t->set_mtime) {
		v[1] = ntfs_time_from_unix_ns(t->mtime_ns);
		mask |= NTFS_TIME_DATA;
	}
	if (t->set_atime) {
		v[3] = ntfs_time_from_unix_ns(t->atime_ns);
		mask |= NTFS_TIME_ACCESS;
	}
	err = ntfs_set_times(ni, v, mask);
	ntfs_inode_close(ni);
	return err;
}

int ntfs_aops_sync_dir_copies(struct cache *c, uint64_t ino)
{
	return ntfs_sync_dir_copies(NTFS_VOL(c), ino);
}
