/*
 * ntfsc.h — libntfsc, the client library of ntfsd.
 *
 * A process connects to the daemon that owns an NTFS volume, opens files
 * through it and reads their bytes straight out of the daemon's page cache,
 * which lives in shared memory: ntfsc_pread() copies from the cache and asks
 * the daemon only for pages that are not there; ntfsc_mmap() maps the cache
 * itself, with the pages pinned while mapped.
 *
 * Writes go into the same cache: ntfsc_pwrite() stores into the cached
 * pages and marks them dirty; the daemon writes dirty pages back to the
 * volume later (or at ntfsc_fsync()/ntfsc_sync(), which wait for it and
 * report write errors).  A store through a PROT_WRITE mapping reaches the
 * volume only once ntfsc_set_dirty() has been called for it.  The daemon
 * allocates the clusters a write needs before it may be stored (holes,
 * growth, a resident file moving out of its MFT record, a compressed unit
 * stored uncompressed), so a full volume fails the write with ENOSPC.
 *
 * Conventions:
 *  - Failures return -1, NULL or MAP_FAILED and set errno.  When the daemon
 *    refused a request, errno is the daemon's error and
 *    ntfsc_last_error_message() its message; ECONNRESET or EPIPE mean the
 *    daemon went away (the connection then stays unusable; disconnect).
 *  - A connection and its files may be used from several threads: requests
 *    are serialized per connection.  One ntfsc_file must not be closed while
 *    another thread still uses it (as with close(2)).
 *  - All file descriptors libntfsc holds are close-on-exec.  A connection
 *    must not be used by both sides of a fork().
 *  - Calls that wait for the daemon (ntfsc_fsync, ntfsc_sync, and writes
 *    that wait for dirty data to drain) hold the connection meanwhile:
 *    other threads' requests on the same connection wait too.
 */
#ifndef NTFSC_H
#define NTFSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>      /* PROT_*, MAP_FAILED for ntfsc_mmap */
#include <sys/types.h>
#include <time.h>          /* struct timespec for the times */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ntfsc ntfsc;             /* a connection to ntfsd */
typedef struct ntfsc_file ntfsc_file;   /* an open file */

struct ntfsc_stat {
	uint64_t size, initialized_size, allocated_size;
	uint32_t attributes;                /* NTFS FILE_ATTRIBUTE_* bits */
	bool     resident;
	uint64_t cached_pages, dirty_pages, writeback_pages;
};

/* Everything the daemon says about a file or directory. */
struct ntfsc_stat_ext {
	struct ntfsc_stat st;
	uint64_t mft_no;
	uint32_t link_count;
	bool     directory, compressed, sparse, encrypted;
};

struct ntfsc_client_info {
	uint32_t pid, uid, gid;
	uint32_t open_files;
};

/* Since NTFSC_3 the caller says how large its struct is: set struct_size
 * (NTFSC_VOLUME_STATUS_INIT does), and the library fills only members that
 * fit, so a binary built against this header keeps working when members
 * are added at the end.  Binaries built before NTFSC_3 get the members of
 * the first version only (volume .. clients). */
struct ntfsc_volume_status {
	size_t   struct_size;               /* sizeof(struct ntfsc_volume_status) */
	char    *volume;                    /* path of the image or device */
	char    *label;                     /* UTF-8 */
	uint32_t ntfs_major, ntfs_minor;
	bool     read_only;
	uint32_t cluster_size;
	uint64_t volume_size;               /* bytes */
	uint64_t cache_limit, cache_used;   /* bytes */
	uint64_t cached_pages, dirty_pages, writeback_pages;
	uint64_t open_files;
	uint64_t pages_read, pages_reclaimed;
	size_t   nr_clients;
	struct ntfsc_client_info *clients;  /* nr_clients entries */
	/* Since write-back (new members go at the end). */
	uint64_t dirty_limit;               /* bytes: writers past it wait; 0: no limit */
	uint64_t dirty_background;          /* bytes: background write-back starts */
	uint64_t pages_written, write_errors;
	char    *io_engine;                 /* "uring" or "threads" ("" if not said) */
	uint32_t flushers;                  /* write-back threads */
	/* Since the allocator figures (new members go at the end). */
	char    *allocator;                 /* the daemon's malloc: "jemalloc", or "glibc"
					     * or "asan" in builds without jemalloc
					     * ("" if not said) */
	bool     allocator_stats;           /* the two figures below are known */
	uint64_t allocator_allocated;       /* bytes in live allocations */
	uint64_t allocator_resident;        /* bytes the allocator holds in memory
					     * (jemalloc: stats.resident) */
	/* Since NTFSC_3 (filled when struct_size covers them). */
	uint64_t free_bytes;                /* free space on the volume (0: read-only) */
	uint64_t growth_room_bytes;         /* held past cached files' ends to grow */
};
#define NTFSC_VOLUME_STATUS_INIT { .struct_size = sizeof(struct ntfsc_volume_status) }

/* Connect to the daemon at socket_path; NULL: $NTFSD_SOCKET if set and not
 * empty, else /run/ntfsd/ntfsd.sock. */
ntfsc      *ntfsc_connect(const char *socket_path);
/* Close every file still open on c (see ntfsc_close), then the connection. */
void        ntfsc_disconnect(ntfsc *c);

/* flags: O_RDONLY or O_RDWR, optionally with O_CLOEXEC (always in effect);
 * with O_RDWR also O_CREAT (an empty file when path does not exist; its
 * parent must: ENOENT, ENOTDIR), O_EXCL (with O_CREAT: EEXIST when it
 * does, also for a name differing by case only, as NTFS folds case) and
 * O_TRUNC (size 0).  Names NTFS or Windows forbid are EINVAL, longer than
 * 255 UTF-16 units ENAMETOOLONG; no MFT record or cluster left ENOSPC. */
ntfsc_file *ntfsc_open(ntfsc *c, const char *path, int flags);
/* Since NTFSC_4: remove the file at path (EISDIR for a directory; a file
 * clients have open loses its name at once and stays readable and
 * writable through their handles until the last close, which frees it,
 * as unlink(2) does), make a directory
 * (EEXIST, ENOENT for a missing parent), remove an empty one (ENOTEMPTY,
 * ENOTDIR).  Errors come with a message naming the path. */
int         ntfsc_unlink(ntfsc *c, const char *path);
int         ntfsc_mkdir(ntfsc *c, const char *path);
int         ntfsc_rmdir(ntfsc *c, const char *path);
/* Since NTFSC_5: rename(2).  Moves the name from to to (another directory
 * too); a target file or empty directory is replaced (EISDIR, ENOTDIR
 * when the kinds differ, ENOTEMPTY for a directory with entries); a
 * target file clients have open stays readable and writable through their
 * handles until the last close, as after ntfsc_unlink).  The renamed file may be open;
 * its handles keep working.  A directory into its own subtree is EINVAL,
 * NTFS metadata EPERM, a name taken in another case EEXIST. */
int         ntfsc_rename(ntfsc *c, const char *from, const char *to);
/* Unmaps every ntfsc_mmap() mapping of f, closes f and frees it, also when
 * it returns -1 (the daemon could not be told).  Dirty data stays in the
 * daemon's cache and is written back later; like close(2), ntfsc_close
 * reports no write-back errors: call ntfsc_fsync() first for that. */
int         ntfsc_close(ntfsc_file *f);
int         ntfsc_fstat(ntfsc_file *f, struct ntfsc_stat *st);
int         ntfsc_fstat_ext(ntfsc_file *f, struct ntfsc_stat_ext *st);
/* Reads at most len bytes at off through the cache; 0 at or after the end
 * of the file.  A short count means the end of the file or an error at the
 * next byte (which the next call reports). */
ssize_t     ntfsc_pread(ntfsc_file *f, void *buf, size_t len, off_t off);
/*
 * Writes len bytes at off into the cache and marks them dirty; returns len.
 * The file grows when off + len is past its end.  A write is refused
 * (before any byte is stored) with the daemon's errno: ENOSPC (no clusters
 * or MFT records left), EFBIG (past what the open file can grow to),
 * EPERM (system files), EACCES (encrypted),
 * EROFS (read-only volume).  Zeroes written over bytes that read as zeroes
 * (a hole) allocate nothing.
 * EBADF on a file opened O_RDONLY, EINVAL for off < 0.  A count below len
 * means an error after that many bytes were stored (the next call reports
 * it).  When the daemon's dirty data is over its limit the call waits for
 * write-back to bring it down.  Nothing is on the volume before
 * ntfsc_fsync() (or the daemon's own write-back) has written it.
 */
ssize_t     ntfsc_pwrite(ntfsc_file *f, const void *buf, size_t len, off_t off);
/* Maps [off, off + len) of the file's cache (prot: PROT_READ, PROT_WRITE on
 * an O_RDWR open), pins the pages and faults them in.  With PROT_WRITE the
 * pages of the file in the range are made writable first, with the errors
 * of ntfsc_pwrite (the mapping never grows the file: stores past its end
 * never reach the volume).  Stores through the mapping reach the volume
 * only after ntfsc_set_dirty().  MAP_FAILED on error: EINVAL (off < 0,
 * len 0, bad prot), EACCES (PROT_WRITE on a read-only open, or from an
 * ntfsd that shares file data read-only), ENXIO (beyond the file's cache
 * segment). */
void       *ntfsc_mmap(ntfsc_file *f, off_t off, size_t len, int prot);
/* Marks the pages holding [addr, addr + len) dirty after stores through a
 * PROT_WRITE mapping of f (the whole range inside one such mapping, else
 * EINVAL).  EIO for a page that is not writable (one past the end of the
 * file).  Waits like ntfsc_pwrite when dirty data is over the limit. */
int         ntfsc_set_dirty(ntfsc_file *f, void *addr, size_t len);
/* Unmaps a whole mapping made by ntfsc_mmap() (addr as returned, len as
 * given) and unpins its pages.  EINVAL if there is no such mapping.  The
 * mapping is gone even when -1 is returned because the daemon could not be
 * told. */
int         ntfsc_munmap(ntfsc_file *f, void *addr, size_t len);

/* Write back f's dirty data and wait for it (like fsync(2)); -1 with the
 * errno of a write-back error of the file this handle has not been told
 * about yet (each error is reported once per handle), e.g. EIO. */
int         ntfsc_fsync(ntfsc_file *f);
/* The same for every file of the volume. */
int         ntfsc_sync(ntfsc *c);
/* Set the file's size like ftruncate(2): bytes past a smaller size are gone
 * (also from every mapping), a larger size reads as zeroes.  -1 with EINVAL
 * (negative size, read-only handle), EFBIG (past what the open file can
 * grow to), ENOSPC, EPERM/EACCES/EOPNOTSUPP/EROFS as for writes. */
int         ntfsc_ftruncate(ntfsc_file *f, off_t size);

/* By path, without opening the file; directories too. */
int         ntfsc_stat(ntfsc *c, const char *path, struct ntfsc_stat *st);
int         ntfsc_stat_ext(ntfsc *c, const char *path, struct ntfsc_stat_ext *st);
/* The sizes the file's MFT record on disk holds now; they lag what
 * ntfsc_stat reports while write-back has not written them (since
 * NTFSC_4).  known is false for a directory or a file without data.  The
 * caller sets struct_size (NTFSC_STAT_DISK_INIT); only members that fit
 * are filled. */
struct ntfsc_stat_disk {
	size_t   struct_size;
	bool     known;
	uint64_t size, initialized_size, allocated_size;
};
#define NTFSC_STAT_DISK_INIT { .struct_size = sizeof(struct ntfsc_stat_disk) }
int         ntfsc_stat_disk(ntfsc *c, const char *path, struct ntfsc_stat_disk *d);

/* Since NTFSC_6: a file's or directory's times from its
 * $STANDARD_INFORMATION, as clients see them now (a cached file's change
 * not yet written back included): creation, last data change
 * (modification), last MFT record change (change) and last access
 * (access: never moved by reads, as with noatime).  known is false for a
 * record without times.  The caller sets struct_size
 * (NTFSC_STAT_TIMES_INIT); only members that fit are filled. */
struct ntfsc_stat_times {
	size_t          struct_size;
	bool            known;
	struct timespec creation, modification, change, access;
};
#define NTFSC_STAT_TIMES_INIT { .struct_size = sizeof(struct ntfsc_stat_times) }
int         ntfsc_stat_times(ntfsc *c, const char *path, struct ntfsc_stat_times *st);
int         ntfsc_fstat_times(ntfsc_file *f, struct ntfsc_stat_times *st);
/* Since NTFSC_6: utimensat(2) and futimens(2): times[0] the access time,
 * times[1] the modification time, each a time, UTIME_NOW or UTIME_OMIT;
 * times NULL sets both to now.  The change time becomes now.  Data
 * written to the file before the call is written back first, so it never
 * moves the times after they are set; a write after the call does.
 * ntfsc_futimens needs a file opened for writing (EBADF); both: EINVAL
 * (tv_nsec out of range, a time before 1678 or after 2262), EROFS, EPERM
 * (NTFS metadata), ENOENT, and the daemon's write errors. */
int         ntfsc_utimens(ntfsc *c, const char *path, const struct timespec times[2]);
int         ntfsc_futimens(ntfsc_file *f, const struct timespec times[2]);

/* Calls cb for each entry of the directory, in the daemon's (index) order;
 * DOS-only names are left out.  cb returns 0 to go on; a non-zero value
 * stops the listing and is returned by ntfsc_listdir.  cb may use c. */
typedef int (*ntfsc_listdir_cb)(void *ctx, const char *name, uint64_t mft_no, bool is_dir);
int         ntfsc_listdir(ntfsc *c, const char *path, ntfsc_listdir_cb cb, void *ctx);

/* Fills *st, which the caller initialized with NTFSC_VOLUME_STATUS_INIT
 * (EINVAL when struct_size is too small even for the first version's
 * members); free it with ntfsc_volume_status_free; on failure nothing is
 * left to free. */
int         ntfsc_volume_status(ntfsc *c, struct ntfsc_volume_status *st);
void        ntfsc_volume_status_free(struct ntfsc_volume_status *st);

/* The message that goes with a failed ntfsc_* call: the daemon's message
 * when the daemon refused a request, libntfsc's own when it could not
 * connect or the daemon broke the protocol, NULL when errno says it all.
 * Messages are kept per thread, like errno, and per connection:
 *  - with c NULL (e.g. after ntfsc_connect failed), or when the calling
 *    thread's last failed call was one on c (given c, or a file of c):
 *    the message of the calling thread's last failed call;
 *  - otherwise the message of the last failed call on c, made by any
 *    thread (NULL if none has failed), so the failures of one connection
 *    never show up as another's.
 * A call has failed when it returned -1, NULL or MAP_FAILED (a short count
 * is no failure).  c must be NULL or a connection not yet disconnected.
 * The string stays valid until the thread's next ntfsc_* call. */
const char *ntfsc_last_error_message(ntfsc *c);

/* The library's version ("0.1.0"), and the protocol and shared-memory
 * layout versions it speaks, e.g. "libntfsc 0.1.0 (protocol 2, shm layout
 * 5)" with full = true.  Since NTFSC_3. */
const char *ntfsc_version(bool full);

#ifdef __cplusplus
}
#endif

#endif
