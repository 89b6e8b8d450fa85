/*
 * namei.h — what the server asks of the file system by path: a file's
 * attributes, a directory's entries, the volume's identity.  The server
 * talks to the cache only; these hide the on-disk layer from it.
 *
 * Invariants: a cached file's sizes are the cache's (the MFT record lags
 * them until write-back writes it), so `ntfsctl stat` and ntfsc_fstat
 * agree; by path, the record's own sizes come along as the on-disk ones;
 * everything else comes from the record on disk.  Errors are
 * negative errnos with the on-disk layer's message (ntfs_last_error()).
 */
#ifndef NTFSD_CACHE_NAMEI_H
#define NTFSD_CACHE_NAMEI_H

#include <stdbool.h>
#include <stdint.h>

struct cache;
struct cache_inode;

struct cache_stat {
	uint64_t mft_no;
	uint32_t attributes;            /* FILE_ATTRIBUTE_* of $STANDARD_INFORMATION */
	uint32_t link_count;
	bool directory;
	bool has_data;                  /* an unnamed $DATA: the fields below are set */
	uint64_t size, initialized_size, allocated_size;
	bool resident, compressed, sparse, encrypted;
	/* By path: the on-disk inode's sizes, which lag the ones above while
	 * write-back has not written them (ondisk_known false: not asked) */
	bool ondisk_known;
	uint64_t ondisk_size, ondisk_initialized_size, ondisk_allocated_size;
	/* Times in ns since 1970 (times_known false: the inode has none):
	 * what clients see, a cached file's pending change included. */
	bool times_known;
	int64_t creation_ns, mtime_ns, ctime_ns, atime_ns;
};

/* By path (directories too). */
int cache_stat_path(struct cache *c, const char *path, struct cache_stat *st);
/* Of an open inode. */
void cache_stat_inode(struct cache_inode *ci, struct cache_stat *st);

struct cache_dirent {
	const char *name;               /* UTF-8 */
	uint64_t mft_no;
	uint8_t name_type;              /* FILE_NAME_POSIX, _WIN32, _WIN32_AND_DOS */
	bool directory;
};

/* Calls cb for each entry of the directory at path in index order, DOS-only
 * names and "." left out; a non-zero return of cb stops and is returned. */
int cache_readdir(struct cache *c, const char *path,
		  int (*cb)(void *ctx, const struct cache_dirent *e), void *ctx);

struct cache_volume_info {
	const char *label;              /* UTF-8; lives as long as the volume */
	uint8_t major_ver, minor_ver;
	uint32_t cluster_size;
	uint64_t size;                  /* bytes */
	uint64_t free_bytes;            /* $Bitmap's free clusters (0: read-only) */
	uint64_t growth_room_bytes;     /* allocated past the end of cached files */
};

void cache_volume_info(struct cache *c, struct cache_volume_info *vi);
/* Flush the device (a volume-wide sync's last step). */
int cache_flush_device(struct cache *c);

/* The message of the last failure on this thread (the on-disk layer's,
 * which the cache's calls leave), NULL when none was recorded since
 * cache_clear_error(). */
const char *cache_last_error(void);
void cache_clear_error(void);

#endif
