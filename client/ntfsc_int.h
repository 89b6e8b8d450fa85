/*
 * ntfsc_int.h — what the files of libntfsc share: the handles' structures
 * and the internal functions one job offers the others.  Nothing declared
 * here is exported: the library is built with -fvisibility=hidden, and
 * these declarations are hidden explicitly as well, so only what ntfsc.h
 * declares (included below with default visibility) leaves the library.
 *
 * The jobs, one file each:
 *   error.c      errno and the thread's message, set together, and each
 *                connection's copy of the message of its last failure
 *   transport.c  frames on the socket, one request at a time per connection,
 *                every request through one table-driven call (request())
 *   conn.c       connect (socket, hello, volume header), disconnect
 *   file.c       open and close, the file's segments, requests on a handle
 *   read.c       ntfsc_pread
 *   write.c      ntfsc_pwrite, page locks, write-ready pages, the dirty
 *                limit; fsync, ftruncate, sync
 *   map.c        ntfsc_mmap, ntfsc_munmap, ntfsc_set_dirty
 *   info.c       stat, listdir, volume status (and NTFSC_0's), version
 *
 * Invariants every file keeps:
 *  - A failure sets errno and the thread's message together (error_set);
 *    a path that must undo something first saves the error and restores
 *    it afterwards (error_save/error_restore), so the caller sees the
 *    first failure, never the undo's.
 *  - A public function given a connection, or a file of one, leaves
 *    through error_on, error_on_ssize or error_record, so its failure is
 *    that connection's last; the code beneath never records one.
 *  - Nothing here is named ntfsc_*: libntfsc.map exports that prefix.
 */
#ifndef NTFSC_INT_H
#define NTFSC_INT_H

/* Built with -fvisibility=hidden: only what ntfsc.h declares is exported. */
#pragma GCC visibility push(default)
#include "ntfsc.h"
#pragma GCC visibility pop

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dirty_bitmap.h"
#include "frame.h"             /* NTFSD_MAX_FRAME_FDS, protocol constants */
#include "ntfsd.pb-c.h"
#include "shm_layout.h"

#pragma GCC visibility push(hidden)

#define PAGE_SIZE_ NTFSD_PAGE_SIZE
#define PAGE_SHIFT_ NTFSD_PAGE_SHIFT
/* A path of 32767 UTF-16 units (NTFS's limit) is at most 3 bytes a unit. */
#define MAX_PATH_BYTES (32767u * 3u)
/* pread: fault-ins of one page that may leave it not uptodate. */
#define MAX_FAULT_RETRIES 1000u
/* Pages per FaultInRequest: ntfsd refuses more than 1 GiB in one
 * (MAX_FAULT_PAGES in daemon/server/dispatch.c). */
#define MAX_FAULT_PAGES (1u << 18)
/* Pages one pread(2) copies or one pwrite(2) stores at most (a run). */
#define COPY_RUN_PAGES 256u
/* Pages pinned at a time by a read or write whose pages reclaim keeps
 * taking before it gets to them (the cache is thrashing). */
#define PIN_CHUNK 32u
/* The size of an error message, with its NUL. */
#define ERROR_MSG_SIZE 1024u

struct mapping {
	struct mapping *next;
	uint8_t *base;                  /* what mmap returned */
	size_t len;                     /* bytes mapped, a multiple of the page size */
	uint8_t *user;                  /* what ntfsc_mmap returned */
	size_t ulen;                    /* the len given to ntfsc_mmap */
	int prot;
	uint64_t first_page;
	uint64_t pinned;                /* pages the daemon pinned from first_page */
};

struct ntfsc {
	uint64_t id;                    /* never 0, never reused in the process */
	int sock;
	pthread_mutex_t lock;           /* one request at a time; guards the fields below */
	uint64_t next_id;
	bool dead;

	const struct shm_volume_header *hdr;
	uint32_t max_inodes;
	uint32_t lock_owner;            /* the id our page locks carry (HelloReply) */
	struct shm_lock_table *locks;   /* an entry per page lock a thread holds or takes */

	pthread_mutex_t files_lock;     /* guards files */
	struct ntfsc_file *files;
	_Atomic uint64_t dirtied_since_balance; /* pages, see balance_dirty() */

	pthread_mutex_t err_lock;       /* guards the message below (error_record) */
	bool err_has_msg;
	char err_msg[ERROR_MSG_SIZE];   /* of the last failed call on c, in any thread */
};

/* One size of a file's segments as this client maps them; immutable once
 * published.  A larger one replaces it in f->geom when the daemon grew the
 * segments; older ones stay mapped until close (they map the same memfds,
 * so what they cover stays valid). */
struct file_geom {
	uint64_t nr_pages;              /* checked against the segment */
	const uint8_t *data;            /* whole data segment, read-only; NULL if empty */
	uint64_t data_size;
	struct shm_file_header *state;
	size_t state_len;
	uint64_t readable;              /* bytes pread may copy: pages and data both cover */
	struct dirty_bitmap dirty;      /* pointers into state; holds the descriptors */
	struct file_geom *older;
};

struct ntfsc_file {
	ntfsc *c;
	struct ntfsc_file *prev, *next; /* in c->files */
	uint64_t handle;
	uint32_t slot;
	uint64_t mft_no;
	bool writable;                  /* opened O_RDWR */
	bool data_writable;             /* the data fd may be mapped PROT_WRITE */
	int data_fd;
	int state_fd;                   /* kept: the segments may grow while open */
	struct shm_file_header *state;  /* the first mapping (the header: nr_dirty) */
	uint64_t max_pages;             /* from OpenReply: what the layout is for */
	uint32_t buffer_size;           /* a power of 2, 512..4096 (the volume header's) */
	uint32_t buffers_per_page;
	_Atomic(struct file_geom *) geom; /* the mappings of the current size */
	pthread_mutex_t geom_lock;      /* one growth of the mappings at a time */
	pthread_mutex_t maps_lock;      /* guards maps */
	struct mapping *maps;
};

static inline struct file_geom *file_geom(const ntfsc_file *f)
{
	return atomic_load_explicit(&((ntfsc_file *)f)->geom, memory_order_acquire);
}

/* Page idx, which the caller knows lies below file_geom(f)->nr_pages. */
static inline struct shm_page *file_page(const ntfsc_file *f, uint64_t idx)
{
	return &file_geom(f)->dirty.pages[idx];
}

static inline uint64_t file_nr_pages(const ntfsc_file *f)
{
	return file_geom(f)->nr_pages;
}

/* Map the segments again when the daemon says they now hold nr_pages
 * (data_size bytes of data); nothing when we map that much already. */
int file_remap(ntfsc_file *f, uint64_t nr_pages, uint64_t data_size);
/* Make the mappings cover pages [0, end): ask the daemon for the segments'
 * size if they do not.  -1 (EIO) when even its segments do not. */
int file_need_pages(ntfsc_file *f, uint64_t end);

/* ---- error.c ---- */

/* Set errno to err and the thread's message to fmt (none if fmt is NULL);
 * returns -1. */
int error_set(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct saved_error {
	int err;
	uint64_t conn;
	bool has_msg;
	char msg[ERROR_MSG_SIZE];
};

void error_save(struct saved_error *s);
void error_restore(const struct saved_error *s);
/* EINVAL for no path, ENAMETOOLONG for one no NTFS path can be. */
int check_path(const char *path);

/* Copy the members after struct_size of the full struct v (v_size bytes,
 * struct_size first) into the caller's out, as far as its struct_size
 * reaches: an older, shorter struct gets what it has room for. */
static inline void copy_sized(void *out, const void *v, size_t v_size)
{
	size_t have = *(const size_t *)out, n = have < v_size ? have : v_size;

	memcpy((char *)out + sizeof(size_t), (const char *)v + sizeof(size_t),
	       n - sizeof(size_t));
}
/*
 * At the end of a call on c (c: the connection it was given, or the one
 * of the file it was given; NULL for none) that failed: the thread's errno
 * and message are that failure's, and become the connection's last
 * failure too.  The public functions call it (through error_on and
 * error_on_ssize) on their way out, never the code beneath them, so only
 * what a caller saw fail is recorded.  errno is left alone.
 */
void error_record(ntfsc *c);

static inline int error_on(ntfsc *c, int ret)
{
	if (ret < 0)
		error_record(c);
	return ret;
}

static inline ssize_t error_on_ssize(ntfsc *c, ssize_t ret)
{
	if (ret < 0)
		error_record(c);
	return ret;
}

/* The connection of f, NULL for no file. */
static inline ntfsc *file_conn(const ntfsc_file *f)
{
	return f ? f->c : NULL;
}

/* ---- transport.c ---- */

void close_fds(int *fds, int n);
/* EPROTO: the reply came with got fds, not want. */
int fd_count_error(int got, int want);
/*
 * Send body, a request message of kind `kind`, on c and wait for the reply,
 * which must carry what the request table in transport.c says for that
 * kind (the reply's body, and how many fds come with it).  out: the reply,
 * to be freed with ntfsd__reply__free_unpacked, or NULL when nothing in it
 * is needed.  fds: where the fds that came go; when any number may come
 * (an open) it has room for NTFSD_MAX_FRAME_FDS and *nfds says how many.
 * 0, or -1 with errno and message set and nothing to release.
 */
int request(ntfsc *c, Ntfsd__Request__BodyCase kind, void *body, int *fds, int *nfds,
	    Ntfsd__Reply **out);

/* ---- file.c ---- */

/* The file's size as the volume header has it now. */
uint64_t file_size(const ntfsc_file *f);
/* Unpin [first, first + n) of f. */
int file_unpin(ntfsc_file *f, uint64_t first, uint64_t n);
/* Fault pages [first, first + n) of f in (pinned if pin); *covered: pages
 * the daemon says it covered (EPROTO if more than n). */
int file_fault_in(ntfsc_file *f, uint64_t first, uint64_t n, bool pin, uint64_t *covered);
/* Unmap and unpin every mapping, close the handle, free f, which is off
 * its connection's list already.  -1 with the first failure's error when
 * the daemon could not be told, but f is gone all the same. */
int file_release(ntfsc_file *f);

/* ---- write.c ---- */

/* Lock page idx of f, asking the daemon to judge a holder that keeps it
 * long; false, errno set, when the daemon cannot be asked any more.  The
 * page's entry in the connection's lock table goes in first (*entry) and
 * comes out in client_unlock_page(), after the lock. */
bool client_lock_page(ntfsc_file *f, uint64_t idx, uint32_t *entry);
void client_unlock_page(ntfsc_file *f, uint64_t idx, uint32_t entry);
/* PG_uptodate and PG_write_ready both set. */
bool page_write_ready(const struct shm_page *p);
/* Make [first, first + n) of f write-ready, growing the file to new_size
 * (0: no size change) with the last request; ws, we: the bytes written. */
int prepare_range(ntfsc_file *f, uint64_t first, uint64_t n, uint64_t new_size, uint64_t ws,
		  uint64_t we);
/* pages were just dirtied: wait for write-back past the dirty limit. */
void balance_dirty(ntfsc_file *f, uint64_t pages);

#pragma GCC visibility pop

#endif
