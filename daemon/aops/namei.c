/*
 * namei.c — NTFS's answers by path (aops.h: stat_path, stat_inode,
 * readdir, volume_info), from the MFT records on disk; the generic cache
 * (cache/namei.c) lays a cached file's sizes over them.  And the changes
 * by path (create, unlink): the parent and the last name, then the
 * on-disk layer's namespace.c, which keeps the crash ordering.
 *
 * Invariants: DOS-only names and "." are never listed; a name that is not
 * valid UTF-16 is EILSEQ with the record named, never skipped silently.
 */
#include "namei.h"
#include "ntfs_ci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "attrib.h"
#include "device.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "lcnalloc.h"
#include "namespace.h"
#include "inode_times.h"
#include "log.h"
#include "le.h"
#include "unistr.h"
#include "volume.h"

/* times[4]: creation, data change, MFT change, access (NTFS time). */
static void stat_times(struct cache_stat *st, const uint64_t times[4])
{
	st->times_known = times[1] != 0;
	st->creation_ns = ntfs_time_to_unix_ns(times[0]);
	st->mtime_ns = ntfs_time_to_unix_ns(times[1]);
	st->ctime_ns = ntfs_time_to_unix_ns(times[2]);
	st->atime_ns = ntfs_time_to_unix_ns(times[3]);
}

static void stat_fill(struct cache_stat *st, const struct ntfs_inode *ni,
		      const struct ntfs_attr *na)
{
	*st = (struct cache_stat){ 0 };
	stat_times(st, ni->times);
	st->mft_no = ni->mft_no;
	st->attributes = ni->file_attributes;
	st->directory = ntfs_inode_is_dir(ni);
	st->link_count = ni->link_count;
	if (!na)
		return;
	st->has_data = true;
	st->size = na->data_size;
	st->initialized_size = na->initialized_size;
	st->allocated_size = na->allocated_size;
	st->resident = na->resident;
	st->compressed = na->flags & ATTR_IS_COMPRESSED;
	st->sparse = na->flags & ATTR_IS_SPARSE;
	st->encrypted = na->flags & ATTR_IS_ENCRYPTED;
}

/* The inode at path, read from its record on disk. */
static int open_path(struct cache *c, const char *path, struct ntfs_inode **ni)
{
	uint64_t mref;
	int err = ntfs_path_lookup(NTFS_VOL(c), path, 0, &mref);

	return err ? err : ntfs_inode_open(NTFS_VOL(c), MREF(mref), ni);
}

int ntfs_aops_stat_path(struct cache *c, const char *path, struct cache_stat *st)
{
	struct ntfs_inode *ni;
	struct ntfs_attr *na = NULL;
	int err;

	err = open_path(c, path, &ni);
	if (err)
		return err;
	err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (err && err != -ENOENT) {
		ntfs_inode_close(ni);
		return err;
	}
	stat_fill(st, ni, err ? NULL : na);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	return 0;
}

void ntfs_aops_stat_inode(struct cache_inode *ci, struct cache_stat *st)
{
	struct ntfs_cache_inode *nci = NTFS_CI(ci);

	uint64_t t[4];

	stat_fill(st, nci->ni, nci->data);
	/* the record read at open is older than the times written since */
	for (unsigned i = 0; i < 4; i++)
		t[i] = atomic_load(&nci->std_times[i]);
	stat_times(st, t);
}

struct readdir_ctx {
	int (*cb)(void *ctx, const struct cache_dirent *e);
	void *ctx;
};

static int readdir_one(void *ctx, const struct ntfs_dirent *de)
{
	struct readdir_ctx *rc = ctx;
	struct cache_dirent e;
	char *name;
	int err;

	if (de->name_type == FILE_NAME_DOS)
		return 0;
	if (de->name_len == 1 && get_le16(de->name) == '.')
		return 0;
	if (ntfs_utf16_to_utf8(de->name, de->name_len, &name))
		return ntfs_fail(EILSEQ, "MFT record %llu has a name that is not valid UTF-16",
				 (unsigned long long)MREF(de->mref));
	e.name = name;
	e.mft_no = MREF(de->mref);
	e.name_type = de->name_type;
	e.directory = le32(de->fn->file_attributes) & FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT;
	err = rc->cb(rc->ctx, &e);
	free(name);
	return err;
}

int ntfs_aops_readdir(struct cache *c, const char *path,
		      int (*cb)(void *ctx, const struct cache_dirent *e), void *ctx)
{
	struct readdir_ctx rc = { cb, ctx };
	struct ntfs_inode *ni;
	int err;

	err = open_path(c, path, &ni);
	if (err)
		return err;
	if (!ntfs_inode_is_dir(ni)) {
		ntfs_inode_close(ni);
		return ntfs_fail(ENOTDIR, "%s: not a directory", path);
	}
	err = ntfs_dir_foreach(ni, readdir_one, &rc);
	ntfs_inode_close(ni);
	return err;
}

void ntfs_aops_volume_info(struct cache *c, struct cache_volume_info *vi)
{
	struct ntfs_volume *vol = NTFS_VOL(c);

	vi->label = vol->label;
	vi->major_ver = vol->major_ver;
	vi->minor_ver = vol->minor_ver;
	vi->cluster_size = vol->geo.cluster_size;
	vi->size = vol->geo.nr_clusters << vol->geo.cluster_size_bits;
	vi->free_bytes = 0;
	vi->growth_room_bytes = 0;
	if (c->read_only)
		return;
	{
		int64_t n = ntfs_volume_free_clusters(vol);

		vi->free_bytes = n > 0 ? (uint64_t)n << vol->geo.cluster_size_bits : 0;
	}
	cache_mutex_lock(&c->lock);
	for (struct cache_inode *ci = c->inodes; ci; ci = ci->next) {
		/* allocated_size and i_size are read unlocked: a figure for
		 * display, a page or so off while a file grows */
		uint64_t used = (ci->i_size + vol->geo.cluster_size - 1) &
				~((uint64_t)vol->geo.cluster_size - 1);
		const struct ntfs_attr *na = NTFS_CI(ci)->data;
		uint64_t alloc = na->resident ? 0 : na->allocated_size;

		if (ci->trim_pending && alloc > used)
			vi->growth_room_bytes += alloc - used;
	}
	cache_mutex_unlock(&c->lock);
}


/* ---- namespace changes ---- */

/* Split path into its parent directory (opened into *dir) and its last
 * name (*name, into buf).  "/" and names ending in '/' have no last
 * name: -EINVAL, as do "." and "..". */
static int open_parent(struct cache *c, const char *path, struct ntfs_inode **dir,
		       char *buf, size_t size, const char **name)
{
	size_t len = strlen(path);
	const char *slash;

	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len >= size)
		return ntfs_fail(ENAMETOOLONG, "%s: path too long", path);
	memcpy(buf, path, len);
	buf[len] = '\0';
	slash = strrchr(buf, '/');
	*name = slash ? slash + 1 : buf;
	if (!**name || !strcmp(*name, ".") || !strcmp(*name, ".."))
		return ntfs_fail(EINVAL, "%s: names no file (the root, '.' or '..')", path);
	if (slash == buf)
		return open_path(c, "/", dir);
	if (slash) {
		int err;

		buf[slash - buf] = '\0';
		err = open_path(c, buf, dir);
		buf[slash - buf] = '/';
		return err;
	}
	return open_path(c, "/", dir);
}

/* err, with the message naming path (the on-disk layer names records). */
static int name_path(int err, const char *path)
{
	char msg[512];

	if (!err || strstr(ntfs_last_error(), path))
		return err;
	snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	return ntfs_fail(-err, "%s: %s", path, msg);
}

/* A change of dir's entries took effect: its data and MFT change times
 * move to now, and the copies of them in its own parent's entry follow
 * (as ntfs-3g does).  A failure here undoes nothing: it is logged. */
static void dir_changed(struct cache *c, struct ntfs_inode *dir)
{
	int err = ntfs_touch_dir(dir);

	if (!err)
		err = ntfs_sync_dir_copies(NTFS_VOL(c), dir->mft_no);
	if (err && err != -EROFS)
		log_warning("directory MFT record %llu: its times could not follow a change of "
			    "its entries: %s", (unsigned long long)dir->mft_no, ntfs_last_error());
	ntfs_clear_error();
}

int ntfs_aops_create(struct cache *c, const char *path, bool is_dir, uint64_t *ino)
{
	struct ntfs_inode *dir;
	const char *name;
	char buf[4096];
	int err = open_parent(c, path, &dir, buf, sizeof(buf), &name);

	if (err)
		return err;
	/* NTFS metadata directories take no names from clients: $Extend and
	 * everything under it (the root is record 5, below the first user
	 * record too) */
	if ((dir->mft_no < FILE_first_user && dir->mft_no != FILE_root) ||
	    !strncasecmp(path, "/$Extend/", 9))
		err = ntfs_fail(EPERM, "%s: %s is NTFS metadata: ntfsd makes no names in it",
				path, dir->mft_no == FILE_Extend ? "$Extend" : "its directory");
	else
		err = ntfs_create(NTFS_VOL(c), dir, name, is_dir, ino);
	if (!err)
		dir_changed(c, dir);
	ntfs_inode_close(dir);
	return name_path(err, path);
}

static int unlink_path(struct cache *c, const char *path, bool is_dir, bool keep, bool *kept)
{
	struct ntfs_inode *dir, *ni;
	const char *name;
	char buf[4096];
	int err = open_parent(c, path, &dir, buf, sizeof(buf), &name);

	if (err)
		return err;
	/* the kind the caller asked for: unlink(2) of a directory is EISDIR,
	 * rmdir(2) of a file ENOTDIR */
	err = open_path(c, path, &ni);
	if (!err) {
		if (is_dir && !ntfs_inode_is_dir(ni))
			err = ntfs_fail(ENOTDIR, "%s: not a directory", path);
		else if (!is_dir && ntfs_inode_is_dir(ni))
			err = ntfs_fail(EISDIR, "%s: a directory (rmdir removes it)", path);
		ntfs_inode_close(ni);
	}
	if (!err)
		err = ntfs_unlink_keep(NTFS_VOL(c), dir, name, keep, kept);
	if (!err)
		dir_changed(c, dir);
	ntfs_inode_close(dir);
	return name_path(err, path);
}

int ntfs_aops_unlink(struct cache *c, const char *path, bool is_dir)
{
	return unlink_path(c, path, is_dir, false, NULL);
}

int ntfs_aops_unlink_open(struct cache *c, const char *path, bool *kept)
{
	return unlink_path(c, path, false, true, kept);
}

int ntfs_aops_free_orphan(struct cache *c, uint64_t ino)
{
	return ntfs_free_orphan(NTFS_VOL(c), ino);
}

/* Is the directory ino on the path of directories from "/" down to path's
 * parent (path is where a directory is to go)? */
static int inside(struct cache *c, const char *path, uint64_t ino, bool *in)
{
	char buf[4096];
	size_t len = strlen(path);

	*in = false;
	if (len >= sizeof(buf))
		return ntfs_fail(ENAMETOOLONG, "%s: path too long", path);
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
		uint64_t mref;
		int err;

		*p = '\0';
		err = ntfs_path_lookup(NTFS_VOL(c), buf, 0, &mref);
		*p = '/';
		if (err)
			return err;
		if (MREF(mref) == ino) {
			*in = true;
			return 0;
		}
	}
	return 0;
}

int ntfs_aops_rename(struct cache *c, const char *from, const char *to, bool keep_target,
		     bool *target_kept, uint64_t *ino)
{
	struct ntfs_inode *odir = NULL, *ndir = NULL, *src = NULL, *dst = NULL;
	const char *oname, *nname;
	char obuf[4096], nbuf[4096];
	bool in = false;
	int err;

	err = open_parent(c, from, &odir, obuf, sizeof(obuf), &oname);
	if (!err)
		err = open_parent(c, to, &ndir, nbuf, sizeof(nbuf), &nname);
	if (!err)
		err = open_path(c, from, &src);
	if (err)
		goto out;
	if (!strncasecmp(from, "/$Extend/", 9) || !strncasecmp(to, "/$Extend/", 9) ||
	    (ndir->mft_no < FILE_first_user && ndir->mft_no != FILE_root)) {
		err = ntfs_fail(EPERM, "%s -> %s: NTFS metadata takes no names from clients",
				from, to);
		goto out;
	}
	/* rename(2): a directory into its own subtree is EINVAL */
	if (ntfs_inode_is_dir(src)) {
		err = inside(c, to, src->mft_no, &in);
		if (!err && in)
			err = ntfs_fail(EINVAL, "%s -> %s: a directory cannot move into itself",
					from, to);
		if (err)
			goto out;
	}
	/* a target of another file must be of the source's kind; it goes
	 * first (the caller made sure nobody has it open) */
	err = open_path(c, to, &dst);
	if (err == -ENOENT) {
		ntfs_clear_error();
		err = 0;
	} else if (!err && dst->mft_no != src->mft_no) {
		if (ntfs_inode_is_dir(src) && !ntfs_inode_is_dir(dst))
			err = ntfs_fail(ENOTDIR, "%s -> %s: the target is not a directory", from, to);
		else if (!ntfs_inode_is_dir(src) && ntfs_inode_is_dir(dst))
			err = ntfs_fail(EISDIR, "%s -> %s: the target is a directory", from, to);
		if (!err)
			err = ntfs_unlink_keep(NTFS_VOL(c), ndir, nname, keep_target, target_kept);
		/* unlinking the target may have changed ndir's index: reload
		 * the directory the rename adds to */
		if (!err) {
			ntfs_inode_close(ndir);
			ndir = NULL;
			err = open_parent(c, to, &ndir, nbuf, sizeof(nbuf), &nname);
		}
	}
	if (!err)
		err = ntfs_rename(NTFS_VOL(c), odir, oname, ndir, nname, ino);
	if (!err) {
		/* the moved inode's MFT change time, then every copy of it */
		uint64_t t[4] = { 0, 0, ntfs_time_now(), 0 };

		if (ntfs_set_times(src, t, NTFS_TIME_MFT) ||
		    ntfs_sync_dir_copies(NTFS_VOL(c), src->mft_no))
			log_warning("%s: its MFT change time could not follow the rename: %s", to,
				    ntfs_last_error());
		ntfs_clear_error();
		dir_changed(c, odir);
		if (ndir->mft_no != odir->mft_no)
			dir_changed(c, ndir);
	}
out:
	ntfs_inode_close(dst);
	ntfs_inode_close(src);
	ntfs_inode_close(ndir);
	ntfs_inode_close(odir);
	return name_path(err, from);
}
