/*
 * info.c — what the daemon says about files, directories and the volume
 * (stat, listdir, volume status), the NTFSC_0 compatibility symbols, and
 * the library's version.
 *
 * Invariants:
 *  - ntfsc_volume_status writes only the members the caller's struct_size
 *    holds (and struct_size itself), and hands over only strings that fit
 *    in it; on failure nothing is left to free.  The NTFSC_0 symbols fill
 *    and free only the first version's members.
 *  - Nothing here touches shared memory: every answer comes from a reply.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static void fill_stat(struct ntfsc_stat_ext *x, const Ntfsd__StatReply *s)
{
	memset(x, 0, sizeof(*x));
	x->st.size = s->size;
	x->st.initialized_size = s->initialized_size;
	x->st.allocated_size = s->allocated_size;
	x->st.attributes = s->attributes;
	x->st.resident = s->resident;
	x->st.cached_pages = s->cached_pages;
	x->st.dirty_pages = s->dirty_pages;
	x->st.writeback_pages = s->writeback_pages;
	x->mft_no = s->mft_no;
	x->link_count = s->link_count;
	x->directory = s->directory;
	x->compressed = s->compressed;
	x->sparse = s->sparse;
	x->encrypted = s->encrypted;
}

static int do_stat(ntfsc *c, Ntfsd__StatRequest *sr, struct ntfsc_stat_ext *x)
{
	Ntfsd__Reply *rep;

	if (request(c, NTFSD__REQUEST__BODY_STAT, sr, NULL, NULL, &rep))
		return -1;
	fill_stat(x, rep->stat);
	ntfsd__reply__free_unpacked(rep, NULL);
	return 0;
}

static int file_stat(ntfsc_file *f, struct ntfsc_stat_ext *st)
{
	Ntfsd__StatRequest sr = NTFSD__STAT_REQUEST__INIT;

	if (!f || !st)
		return error_set(EINVAL, NULL);
	sr.target_case = NTFSD__STAT_REQUEST__TARGET_HANDLE;
	sr.handle = f->handle;
	return do_stat(f->c, &sr, st);
}

static int path_stat(ntfsc *c, const char *path, struct ntfsc_stat_ext *st)
{
	Ntfsd__StatRequest sr = NTFSD__STAT_REQUEST__INIT;

	if (!c || !st)
		return error_set(EINVAL, NULL);
	if (check_path(path))
		return -1;
	sr.target_case = NTFSD__STAT_REQUEST__TARGET_PATH;
	sr.path = (char *)path;
	return do_stat(c, &sr, st);
}

int ntfsc_fstat_ext(ntfsc_file *f, struct ntfsc_stat_ext *st)
{
	return error_on(file_conn(f), file_stat(f, st));
}

int ntfsc_fstat(ntfsc_file *f, struct ntfsc_stat *st)
{
	struct ntfsc_stat_ext x;
	int ret = st ? file_stat(f, &x) : error_set(EINVAL, NULL);

	if (!ret)
		*st = x.st;
	return error_on(file_conn(f), ret);
}

int ntfsc_stat_ext(ntfsc *c, const char *path, struct ntfsc_stat_ext *st)
{
	return error_on(c, path_stat(c, path, st));
}

int ntfsc_stat_disk(ntfsc *c, const char *path, struct ntfsc_stat_disk *d)
{
	Ntfsd__StatRequest sr = NTFSD__STAT_REQUEST__INIT;
	struct ntfsc_stat_disk v = { .struct_size = sizeof(v) };
	Ntfsd__Reply *rep;

	if (!d || d->struct_size < offsetof(struct ntfsc_stat_disk, known) + sizeof(bool))
		return error_on(c, error_set(EINVAL, "ntfsc_stat_disk: struct_size is not set "
					     "(use NTFSC_STAT_DISK_INIT)"));
	if (!c)
		return error_on(c, error_set(EINVAL, NULL));
	if (check_path(path))
		return error_on(c, -1);
	sr.target_case = NTFSD__STAT_REQUEST__TARGET_PATH;
	sr.path = (char *)path;
	if (request(c, NTFSD__REQUEST__BODY_STAT, &sr, NULL, NULL, &rep))
		return error_on(c, -1);
	v.known = rep->stat->ondisk_known;
	v.size = rep->stat->ondisk_size;
	v.initialized_size = rep->stat->ondisk_initialized_size;
	v.allocated_size = rep->stat->ondisk_allocated_size;
	ntfsd__reply__free_unpacked(rep, NULL);
	copy_sized(d, &v, sizeof(v));    /* the caller's struct may be older, shorter */
	return error_on(c, 0);
}

int ntfsc_stat(ntfsc *c, const char *path, struct ntfsc_stat *st)
{
	struct ntfsc_stat_ext x;
	int ret = st ? path_stat(c, path, &x) : error_set(EINVAL, NULL);

	if (!ret)
		*st = x.st;
	return error_on(c, ret);
}

/* ---- names ---- */

static int name_request(ntfsc *c, const char *path, bool mkdir, bool dir)
{
	Ntfsd__UnlinkRequest ur = NTFSD__UNLINK_REQUEST__INIT;
	Ntfsd__MkdirRequest mr = NTFSD__MKDIR_REQUEST__INIT;
	Ntfsd__Reply *rep;

	if (!c)
		return error_set(EINVAL, NULL);
	if (check_path(path))
		return -1;
	ur.path = mr.path = (char *)path;
	ur.directory = dir;
	if (mkdir ? request(c, NTFSD__REQUEST__BODY_MKDIR, &mr, NULL, NULL, &rep)
		  : request(c, NTFSD__REQUEST__BODY_UNLINK, &ur, NULL, NULL, &rep))
		return -1;
	ntfsd__reply__free_unpacked(rep, NULL);
	return 0;
}

int ntfsc_unlink(ntfsc *c, const char *path)
{
	return error_on(c, name_request(c, path, false, false));
}

int ntfsc_mkdir(ntfsc *c, const char *path)
{
	return error_on(c, name_request(c, path, true, true));
}

int ntfsc_rmdir(ntfsc *c, const char *path)
{
	return error_on(c, name_request(c, path, false, true));
}

int ntfsc_rename(ntfsc *c, const char *from, const char *to)
{
	Ntfsd__RenameRequest rr = NTFSD__RENAME_REQUEST__INIT;
	Ntfsd__Reply *rep;

	if (!c)
		return error_set(EINVAL, NULL);
	if (check_path(from) || check_path(to))
		return error_on(c, -1);
	rr.from = (char *)from;
	rr.to = (char *)to;
	if (request(c, NTFSD__REQUEST__BODY_RENAME, &rr, NULL, NULL, &rep))
		return error_on(c, -1);
	ntfsd__reply__free_unpacked(rep, NULL);
	return error_on(c, 0);
}

/* ---- directories and the volume ---- */

int ntfsc_listdir(ntfsc *c, const char *path, ntfsc_listdir_cb cb, void *ctx)
{
	Ntfsd__ListDirRequest lr = NTFSD__LIST_DIR_REQUEST__INIT;
	Ntfsd__Reply *rep;
	int ret = 0;

	/* What cb returns is not a failure of ours: only these are recorded. */
	if (!c || !cb)
		return error_on(c, error_set(EINVAL, NULL));
	if (check_path(path))
		return error_on(c, -1);
	lr.path = (char *)path;
	if (request(c, NTFSD__REQUEST__BODY_LIST_DIR, &lr, NULL, NULL, &rep))
		return error_on(c, -1);
	for (size_t i = 0; i < rep->list_dir->n_entries && !ret; i++) {
		const Ntfsd__DirEntry *e = rep->list_dir->entries[i];

		if (e)
			ret = cb(ctx, e->name ? e->name : "", e->mft_no, e->directory);
	}
	ntfsd__reply__free_unpacked(rep, NULL);
	return ret;
}

/* The members of struct ntfsc_volume_status a caller's struct_size holds. */
#define STATUS_HAS(size, member) \
	((size) >= offsetof(struct ntfsc_volume_status, member) + \
		   sizeof(((struct ntfsc_volume_status *)0)->member))
#define STATUS_MIN_SIZE offsetof(struct ntfsc_volume_status, dirty_limit)

static void status_free_members(struct ntfsc_volume_status *st, size_t size)
{
	free(st->volume);
	free(st->label);
	free(st->clients);
	if (STATUS_HAS(size, io_engine))
		free(st->io_engine);
	if (STATUS_HAS(size, allocator))
		free(st->allocator);
}

void ntfsc_volume_status_free(struct ntfsc_volume_status *st)
{
	size_t size;

	if (!st)
		return;
	size = st->struct_size < sizeof(*st) ? st->struct_size : sizeof(*st);
	if (size < STATUS_MIN_SIZE)
		return;         /* never filled */
	status_free_members(st, size);
	memset((char *)st + sizeof(st->struct_size), 0, size - sizeof(st->struct_size));
}

static int volume_status(ntfsc *c, struct ntfsc_volume_status *st)
{
	Ntfsd__VolumeStatusRequest vr = NTFSD__VOLUME_STATUS_REQUEST__INIT;
	Ntfsd__Reply *rep;
	const Ntfsd__VolumeStatusReply *v;
	struct ntfsc_volume_status s = NTFSC_VOLUME_STATUS_INIT;
	size_t size;

	if (!c || !st)
		return error_set(EINVAL, NULL);
	size = st->struct_size < sizeof(s) ? st->struct_size : sizeof(s);
	if (size < STATUS_MIN_SIZE)
		return error_set(EINVAL, "struct ntfsc_volume_status of %zu bytes: set "
				 "struct_size (NTFSC_VOLUME_STATUS_INIT)", st->struct_size);
	if (request(c, NTFSD__REQUEST__BODY_VOLUME_STATUS, &vr, NULL, NULL, &rep))
		return -1;
	v = rep->volume_status;
	s.volume = strdup(v->volume ? v->volume : "");
	s.label = strdup(v->label ? v->label : "");
	s.io_engine = strdup(v->io_engine ? v->io_engine : "");
	s.allocator = strdup(v->allocator ? v->allocator : "");
	if (v->n_clients)
		s.clients = calloc(v->n_clients, sizeof(*s.clients));
	if (!s.volume || !s.label || !s.io_engine || !s.allocator ||
	    (v->n_clients && !s.clients)) {
		ntfsd__reply__free_unpacked(rep, NULL);
		status_free_members(&s, sizeof(s));
		return error_set(ENOMEM, NULL);
	}
	s.ntfs_major = v->ntfs_major;
	s.ntfs_minor = v->ntfs_minor;
	s.read_only = v->read_only;
	s.cluster_size = v->cluster_size;
	s.volume_size = v->volume_size;
	s.cache_limit = v->cache_limit;
	s.cache_used = v->cache_used;
	s.cached_pages = v->cached_pages;
	s.dirty_pages = v->dirty_pages;
	s.writeback_pages = v->writeback_pages;
	s.open_files = v->open_files;
	s.pages_read = v->pages_read;
	s.pages_reclaimed = v->pages_reclaimed;
	s.dirty_limit = v->dirty_limit;
	s.dirty_background = v->dirty_background;
	s.pages_written = v->pages_written;
	s.write_errors = v->write_errors;
	s.flushers = v->flushers;
	s.allocator_stats = v->allocator_stats;
	s.allocator_allocated = v->allocator_allocated;
	s.allocator_resident = v->allocator_resident;
	s.free_bytes = v->free_bytes;
	s.growth_room_bytes = v->growth_room_bytes;
	for (size_t i = 0; i < v->n_clients; i++) {
		const Ntfsd__ClientInfo *ci = v->clients[i];

		if (!ci)
			continue;
		s.clients[s.nr_clients].pid = ci->pid;
		s.clients[s.nr_clients].uid = ci->uid;
		s.clients[s.nr_clients].gid = ci->gid;
		s.clients[s.nr_clients].open_files = ci->open_files;
		s.nr_clients++;
	}
	ntfsd__reply__free_unpacked(rep, NULL);
	/* what does not fit the caller's struct is not handed over */
	if (!STATUS_HAS(size, io_engine))
		free(s.io_engine);
	if (!STATUS_HAS(size, allocator))
		free(s.allocator);
	s.struct_size = st->struct_size;
	memcpy(st, &s, size);
	return 0;
}

int ntfsc_volume_status(ntfsc *c, struct ntfsc_volume_status *st)
{
	return error_on(c, volume_status(c, st));
}

/* ---- NTFSC_0 compatibility: binaries built before struct_size ----
 * Their struct was one of three layouts that all begin with these members
 * (the struct grew at its end twice); only these are filled and freed. */
struct volume_status_v0 {
	char    *volume, *label;
	uint32_t ntfs_major, ntfs_minor;
	bool     read_only;
	uint32_t cluster_size;
	uint64_t volume_size;
	uint64_t cache_limit, cache_used;
	uint64_t cached_pages, dirty_pages, writeback_pages;
	uint64_t open_files;
	uint64_t pages_read, pages_reclaimed;
	size_t   nr_clients;
	struct ntfsc_client_info *clients;
};

__attribute__((visibility("default"))) int compat_volume_status_v0(ntfsc *c,
								    struct volume_status_v0 *st);
__attribute__((visibility("default"))) void compat_volume_status_free_v0(
	struct volume_status_v0 *st);
__asm__(".symver compat_volume_status_v0, ntfsc_volume_status@NTFSC_0");
__asm__(".symver compat_volume_status_free_v0, ntfsc_volume_status_free@NTFSC_0");

int compat_volume_status_v0(ntfsc *c, struct volume_status_v0 *st)
{
	struct ntfsc_volume_status s = NTFSC_VOLUME_STATUS_INIT;
	struct volume_status_v0 o;

	if (!st)
		return error_on(c, error_set(EINVAL, NULL));
	if (ntfsc_volume_status(c, &s))
		return -1;      /* recorded there */
	o.volume = s.volume;
	o.label = s.label;
	o.ntfs_major = s.ntfs_major;
	o.ntfs_minor = s.ntfs_minor;
	o.read_only = s.read_only;
	o.cluster_size = s.cluster_size;
	o.volume_size = s.volume_size;
	o.cache_limit = s.cache_limit;
	o.cache_used = s.cache_used;
	o.cached_pages = s.cached_pages;
	o.dirty_pages = s.dirty_pages;
	o.writeback_pages = s.writeback_pages;
	o.open_files = s.open_files;
	o.pages_read = s.pages_read;
	o.pages_reclaimed = s.pages_reclaimed;
	o.nr_clients = s.nr_clients;
	o.clients = s.clients;
	free(s.io_engine);
	free(s.allocator);
	*st = o;
	return 0;
}

void compat_volume_status_free_v0(struct volume_status_v0 *st)
{
	if (!st)
		return;
	free(st->volume);
	free(st->label);
	free(st->clients);
	memset(st, 0, sizeof(*st));
}

/* Spelled out for the version string; the asserts keep them true. */
#define NTFSC_PROTOCOL_STR "3"
#define NTFSC_LAYOUT_STR "6"
_Static_assert(NTFSD_PROTOCOL_VERSION == 3, "update NTFSC_PROTOCOL_STR");
_Static_assert(NTFSD_SHM_LAYOUT_VERSION == 6, "update NTFSC_LAYOUT_STR");

const char *ntfsc_version(bool full)
{
	return full ? "libntfsc " NTFSC_VERSION " (protocol " NTFSC_PROTOCOL_STR
		      ", shm layout " NTFSC_LAYOUT_STR ")"
		    : NTFSC_VERSION;
}
