/*
 * ntfsc.c — libntfsc: connecting to ntfsd, and reads and writes through its
 * shared-memory page cache.  Errors are error.c's, requests transport.c's.
 *
 * Invariants:
 *  - Every fd that arrives with a reply is either kept by the open file it
 *    belongs to or closed before the call returns; every mapping is undone
 *    on every error path.  A file the daemon opened for us but that we
 *    could not set up is closed on the daemon's side again.
 *  - Everything read from a shared segment that decides where we access
 *    memory (page counts, sizes) is checked once against the segment's real
 *    size and then kept privately; the shared copy is never trusted again.
 *  - pread copies a page only when PG_uptodate was set before the copy and
 *    the page's generation and PG_uptodate are unchanged after it; the
 *    daemon clears PG_uptodate and bumps the generation before it punches a
 *    page out, so a copy that raced with reclaim is always detected.  When
 *    reclaim takes pages between their fault-in and our copy, pread pins
 *    what it copies, so it makes progress however small the cache.
 *  - A mapping made by ntfsc_mmap holds one pin (taken by the daemon for
 *    this connection) on each of its pages that the daemon said it covered,
 *    and exactly those are unpinned when it is unmapped.
 *  - A byte is stored into the cache only under the lock of its page, with
 *    PG_uptodate and PG_write_ready seen set under that lock (so reclaim,
 *    which never takes a locked or dirty page, cannot drop it meanwhile),
 *    and the page is dirtied with set_page_dirty() before it is unlocked.
 *    Page locks are taken in ascending page order, and none is held while
 *    a request waits for the daemon (which may need those locks).
 *  - Stores go through pwrite(2) on the data fd only within the file's
 *    cache segment (which is not sealed against growing): never past
 *    f->readable.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dirty.h"
#include "page.h"
#include "segment.h"
#include "seqcount.h"

#ifdef MADV_POPULATE_READ
#define NTFSC_MADV_POPULATE_READ MADV_POPULATE_READ
#else
#define NTFSC_MADV_POPULATE_READ 22  /* Linux 5.14 */
#endif
#ifdef MADV_POPULATE_WRITE
#define NTFSC_MADV_POPULATE_WRITE MADV_POPULATE_WRITE
#else
#define NTFSC_MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* ---- requests on a handle ---- */

/* Tell the daemon f's handle is closed. */
static int file_close_handle(ntfsc_file *f)
{
	Ntfsd__CloseRequest cr = NTFSD__CLOSE_REQUEST__INIT;

	cr.handle = f->handle;
	return request(f->c, NTFSD__REQUEST__BODY_CLOSE, &cr, NULL, NULL, NULL);
}

/* Unpin [first, first + n) of f. */
static int file_unpin(ntfsc_file *f, uint64_t first, uint64_t n)
{
	Ntfsd__UnpinRequest ur = NTFSD__UNPIN_REQUEST__INIT;

	ur.handle = f->handle;
	ur.first_page = first;
	ur.nr_pages = n;
	return request(f->c, NTFSD__REQUEST__BODY_UNPIN, &ur, NULL, NULL, NULL);
}

/* Fault pages in; *covered: pages the daemon says it covered. */
static int file_fault_in(ntfsc_file *f, uint64_t first, uint64_t n, bool pin, uint64_t *covered)
{
	Ntfsd__FaultInRequest fr = NTFSD__FAULT_IN_REQUEST__INIT;
	Ntfsd__Reply *rep;

	fr.handle = f->handle;
	fr.first_page = first;
	fr.nr_pages = n;
	fr.pin = pin;
	if (request(f->c, NTFSD__REQUEST__BODY_FAULT_IN, &fr, NULL, NULL, &rep))
		return -1;
	*covered = rep->fault_in->nr_pages;
	ntfsd__reply__free_unpacked(rep, NULL);
	if (*covered > n)
		return error_set(EPROTO, "ntfsd faulted in %llu pages when asked for %llu",
				 (unsigned long long)*covered, (unsigned long long)n);
	return 0;
}

/* How long a page lock may keep this client waiting before the daemon is
 * asked to judge its holder. */
#define LOCK_CHECK_MS 200

/* Lock page idx of f.  The page state is writable by every writer of the
 * file, so a lock may be forged, or held by a client that hangs: after
 * LOCK_CHECK_MS the daemon judges the holder (it breaks a lock nobody
 * legitimately holds, and disconnects a holder past max-lock-hold-ms).
 * false, errno set, when the daemon cannot be asked any more. */
static bool client_lock_page(ntfsc_file *f, uint64_t idx)
{
	while (!lock_page_timeout(&f->pages[idx], f->c->lock_owner, LOCK_CHECK_MS)) {
		Ntfsd__FaultInRequest fr = NTFSD__FAULT_IN_REQUEST__INIT;
		struct saved_error se;

		fr.handle = f->handle;
		fr.first_page = idx;
		fr.lock_check = true;
		error_save(&se);
		if (request(f->c, NTFSD__REQUEST__BODY_FAULT_IN, &fr, NULL, NULL, NULL) &&
		    f->c->dead) {
			int err = errno;

			error_restore(&se);
			return error_set(err, "page %llu of MFT record %llu stays locked and "
					 "ntfsd is gone", (unsigned long long)idx,
					 (unsigned long long)f->mft_no) == 0;
		}
		error_restore(&se);
	}
	return true;
}

/* ---- connecting ---- */

static int connect_unix(int sock, const struct sockaddr_un *sa)
{
	struct pollfd pfd = { .fd = sock, .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int err = 0;

	if (connect(sock, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EINTR && errno != EINPROGRESS)
		return -1;
	/* Interrupted: the connection goes on; wait for its outcome. */
	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static int map_header(ntfsc *c, int fd)
{
	const struct shm_volume_header *h;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return error_set(errno, "cannot stat ntfsd's volume header segment: %s",
				 strerror(errno));
	if ((uint64_t)st.st_size < sizeof(*h))
		return error_set(EPROTO, "ntfsd's volume header segment is too small (%lld bytes)",
				 (long long)st.st_size);
	h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		return error_set(errno, "cannot map ntfsd's volume header segment: %s",
				 strerror(errno));
	if (h->magic != NTFSD_SHM_VOLUME_MAGIC || h->layout_version != NTFSD_SHM_LAYOUT_VERSION ||
	    h->page_size != NTFSD_PAGE_SIZE || h->max_inodes == 0 ||
	    h->max_inodes > NTFSD_MAX_INODES) {
		int e = h->magic != NTFSD_SHM_VOLUME_MAGIC ? EPROTO : EPROTONOSUPPORT;

		error_set(e, "ntfsd's volume header is not one libntfsc understands (magic %#llx, "
			  "layout %u, page size %u, %u inodes)", (unsigned long long)h->magic,
			  h->layout_version, h->page_size, h->max_inodes);
		munmap((void *)h, sizeof(*h));
		return -1;
	}
	c->hdr = h;
	c->max_inodes = h->max_inodes;
	return 0;
}

static int hello(ntfsc *c)
{
	Ntfsd__Hello hr = NTFSD__HELLO__INIT;
	Ntfsd__Reply *rep;
	const Ntfsd__HelloReply *h;
	int fd, err;

	hr.protocol_version = NTFSD_PROTOCOL_VERSION;
	hr.client_name = program_invocation_short_name && *program_invocation_short_name
			 ? program_invocation_short_name : "libntfsc";
	if (request(c, NTFSD__REQUEST__BODY_HELLO, &hr, &fd, NULL, &rep))
		return -1;
	h = rep->hello;
	if (h->protocol_version != NTFSD_PROTOCOL_VERSION)
		err = error_set(EPROTONOSUPPORT, "ntfsd speaks protocol version %u, libntfsc %u",
				h->protocol_version, NTFSD_PROTOCOL_VERSION);
	else if (h->layout_version != NTFSD_SHM_LAYOUT_VERSION)
		err = error_set(EPROTONOSUPPORT,
				"ntfsd uses shared-memory layout %u, libntfsc %u",
				h->layout_version, NTFSD_SHM_LAYOUT_VERSION);
	else if (h->lock_owner <= NTFSD_LOCK_OWNER_DAEMON || h->lock_owner > NTFSD_LOCK_OWNER_MAX)
		err = error_set(EPROTO, "ntfsd gave lock id %u", h->lock_owner);
	else
		err = map_header(c, fd);
	c->lock_owner = h->lock_owner;
	ntfsd__reply__free_unpacked(rep, NULL);
	close(fd);
	return err;
}

ntfsc *ntfsc_connect(const char *socket_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ntfsc *c;

	if (!socket_path) {
		const char *env = getenv("NTFSD_SOCKET");

		socket_path = env && *env ? env : NTFSD_DEFAULT_SOCKET;
	}
	if (!*socket_path) {
		error_set(ENOENT, "the socket path is empty");
		return NULL;
	}
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		error_set(ENAMETOOLONG, "socket path %s is too long for a unix socket",
			  socket_path);
		return NULL;
	}
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c) {
		error_set(ENOMEM, NULL);
		return NULL;
	}
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		error_set(errno, "cannot create a unix socket: %s", strerror(errno));
		free(c);
		return NULL;
	}
	if (connect_unix(c->sock, &sa) < 0) {
		error_set(errno, "cannot connect to %s: %s", socket_path, strerror(errno));
		close(c->sock);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->files_lock, NULL);
	if (hello(c) < 0) {
		struct saved_error se;

		error_save(&se);
		close(c->sock);
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->files_lock);
		free(c);
		error_restore(&se);
		return NULL;
	}
	return c;
}

/* ---- files ---- */

static uint64_t file_size(const ntfsc_file *f)
{
	struct inode_sizes sz;

	inode_slot_read(&f->c->hdr->inodes[f->slot], &sz);
	return sz.i_size;
}

/* Take the segments of a fresh OpenReply into f; closes both fds. */
static int file_setup(ntfsc_file *f, const Ntfsd__OpenReply *o, int data_fd, int state_fd)
{
	struct shm_file_header layout;
	struct stat st;
	void *p;
	uint64_t pages_bytes;
	int seals, fl;

	f->data_fd = data_fd;
	if (o->inode_slot >= f->c->max_inodes) {
		error_set(EPROTO, "ntfsd gave inode slot %u of %u", o->inode_slot,
			  f->c->max_inodes);
		goto fail;
	}
	f->slot = o->inode_slot;

	/* The page-state segment. */
	if (fstat(state_fd, &st) < 0) {
		error_set(errno, "cannot stat a page-state segment: %s", strerror(errno));
		goto fail;
	}
	if ((uint64_t)st.st_size < sizeof(struct shm_file_header) || (uint64_t)st.st_size > SIZE_MAX) {
		error_set(EPROTO, "ntfsd sent a page-state segment of %lld bytes",
			  (long long)st.st_size);
		goto fail;
	}
	p = mmap(NULL, (size_t)st.st_size, f->writable ? PROT_READ | PROT_WRITE : PROT_READ,
		 MAP_SHARED, state_fd, 0);
	if (p == MAP_FAILED) {
		error_set(errno, "cannot map a page-state segment: %s", strerror(errno));
		goto fail;
	}
	f->state = p;
	f->state_len = (size_t)st.st_size;
	/* The layout comes from what only the daemon writes (the reply's page
	 * count, the volume header's buffer size), never from the mapped
	 * header: any writer of the file can rewrite that at any time. */
	if (o->nr_pages > (1ull << 40) || f->c->hdr->buffer_size < 512 ||
	    f->c->hdr->buffer_size > NTFSD_PAGE_SIZE ||
	    (f->c->hdr->buffer_size & (f->c->hdr->buffer_size - 1))) {
		error_set(EPROTO, "ntfsd sent a page-state segment of an impossible geometry "
			  "(%llu pages of %u-byte buffers)", (unsigned long long)o->nr_pages,
			  f->c->hdr->buffer_size);
		goto fail;
	}
	shm_file_layout(&layout, o->nr_pages, f->c->hdr->buffer_size);
	if (layout.segment_size > (uint64_t)st.st_size) {
		error_set(EPROTO, "ntfsd sent a page-state segment of %lld bytes for %llu pages",
			  (long long)st.st_size, (unsigned long long)o->nr_pages);
		goto fail;
	}
	f->nr_pages = o->nr_pages;
	dirty_bitmap_init(&f->dirty, f->state, &layout);
	f->pages = f->dirty.pages;
	f->buffer_size = layout.buffer_size;  /* checked: a power of 2, 512..4096 */
	f->buffers_per_page = NTFSD_PAGE_SIZE / f->buffer_size;

	/* The data segment: sealed against shrinking, so mapping it never faults. */
	if (fstat(data_fd, &st) < 0) {
		error_set(errno, "cannot stat a data segment: %s", strerror(errno));
		goto fail;
	}
	if ((uint64_t)st.st_size < o->data_segment_size || o->data_segment_size > SIZE_MAX) {
		error_set(EPROTO, "ntfsd announced a data segment of %llu bytes but sent one of %lld",
			  (unsigned long long)o->data_segment_size, (long long)st.st_size);
		goto fail;
	}
	seals = fcntl(data_fd, F_GET_SEALS);
	if (o->data_segment_size && (seals < 0 || !(seals & F_SEAL_SHRINK))) {
		error_set(EPROTO, "ntfsd sent a data segment that is not sealed against shrinking");
		goto fail;
	}
	/* An ntfsd without write-back shares data read-only even with
	 * OpenReply.writable: only the fd's mode says whether stores may go. */
	fl = fcntl(data_fd, F_GETFL);
	f->data_writable = fl >= 0 && (fl & O_ACCMODE) == O_RDWR;
	f->data_size = o->data_segment_size;
	if (f->data_size) {
		p = mmap(NULL, (size_t)f->data_size, PROT_READ, MAP_SHARED, data_fd, 0);
		if (p == MAP_FAILED) {
			error_set(errno, "cannot map a data segment: %s", strerror(errno));
			goto fail;
		}
		f->data = p;
	}
	pages_bytes = f->nr_pages << PAGE_SHIFT_;
	f->readable = pages_bytes < f->data_size ? pages_bytes : f->data_size;
	close(state_fd);
	return 0;
fail:
	close(state_fd);
	return -1;
}

/* Unmap and close what file_setup took (not the mappings of ntfsc_mmap). */
static void file_free(ntfsc_file *f)
{
	if (f->data)
		munmap((void *)f->data, (size_t)f->data_size);
	if (f->state)
		munmap(f->state, f->state_len);
	if (f->data_fd >= 0)
		close(f->data_fd);
	pthread_mutex_destroy(&f->maps_lock);
	free(f);
}

ntfsc_file *ntfsc_open(ntfsc *c, const char *path, int flags)
{
	Ntfsd__OpenRequest orq = NTFSD__OPEN_REQUEST__INIT;
	Ntfsd__Reply *rep;
	ntfsc_file *f;
	int fds[NTFSD_MAX_FRAME_FDS], nfds;
	int acc = flags & O_ACCMODE;

	if (!c || (flags & ~(O_ACCMODE | O_CLOEXEC | O_LARGEFILE)) ||
	    (acc != O_RDONLY && acc != O_RDWR)) {
		error_set(EINVAL, NULL);
		return NULL;
	}
	if (check_path(path))
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f) {
		error_set(ENOMEM, NULL);
		return NULL;
	}
	f->c = c;
	f->data_fd = -1;
	pthread_mutex_init(&f->maps_lock, NULL);

	orq.path = (char *)path;
	orq.write = acc == O_RDWR;
	/* Any number of fds: the file is open on the daemon's side even when
	 * the count is wrong, and must then be closed again. */
	if (request(c, NTFSD__REQUEST__BODY_OPEN, &orq, fds, &nfds, &rep)) {
		file_free(f);
		return NULL;
	}
	f->handle = rep->open->handle;
	f->mft_no = rep->open->mft_no;
	f->writable = orq.write;
	if (nfds != 2) {
		close_fds(fds, nfds);
		fd_count_error(nfds, 2);
		goto undo;
	}
	if (orq.write && !rep->open->writable) {
		close_fds(fds, 2);
		error_set(EROFS, "ntfsd opened %s read-only", path);
		goto undo;
	}
	if (file_setup(f, rep->open, fds[0], fds[1]))
		goto undo;
	ntfsd__reply__free_unpacked(rep, NULL);

	pthread_mutex_lock(&c->files_lock);
	f->next = c->files;
	if (c->files)
		c->files->prev = f;
	c->files = f;
	pthread_mutex_unlock(&c->files_lock);
	return f;

undo: {
		struct saved_error se;

		error_save(&se);
		ntfsd__reply__free_unpacked(rep, NULL);
		file_close_handle(f);
		file_free(f);
		error_restore(&se);
		return NULL;
	}
}

/* Unmap and unpin every mapping, close the handle, free f.  f is off the
 * connection's list already. */
static int file_release(ntfsc_file *f)
{
	struct saved_error se = { 0 };
	struct mapping *m, *next;
	bool failed = false;

	pthread_mutex_lock(&f->maps_lock);
	m = f->maps;
	f->maps = NULL;
	pthread_mutex_unlock(&f->maps_lock);
	for (; m; m = next) {
		next = m->next;
		munmap(m->base, m->len);
		if (m->pinned && !failed && file_unpin(f, m->first_page, m->pinned)) {
			failed = true;
			error_save(&se);
		}
		free(m);
	}
	/* Unpin failing for a refused request still leaves Close to try; a
	 * lost connection makes Close fail at once. */
	if (file_close_handle(f) && !failed) {
		failed = true;
		error_save(&se);
	}
	file_free(f);
	if (failed) {
		error_restore(&se);
		return -1;
	}
	return 0;
}

int ntfsc_close(ntfsc_file *f)
{
	ntfsc *c;

	if (!f)
		return error_set(EINVAL, NULL);
	c = f->c;
	pthread_mutex_lock(&c->files_lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		c->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&c->files_lock);
	return file_release(f);
}

void ntfsc_disconnect(ntfsc *c)
{
	struct saved_error se;
	ntfsc_file *f;

	if (!c)
		return;
	error_save(&se);
	for (;;) {
		pthread_mutex_lock(&c->files_lock);
		f = c->files;
		if (f) {
			c->files = f->next;
			if (c->files)
				c->files->prev = NULL;
		}
		pthread_mutex_unlock(&c->files_lock);
		if (!f)
			break;
		file_release(f);
	}
	close(c->sock);
	munmap((void *)c->hdr, sizeof(*c->hdr));
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->files_lock);
	free(c);
	error_restore(&se);
}

/* ---- stat ---- */

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

int ntfsc_fstat_ext(ntfsc_file *f, struct ntfsc_stat_ext *st)
{
	Ntfsd__StatRequest sr = NTFSD__STAT_REQUEST__INIT;

	if (!f || !st)
		return error_set(EINVAL, NULL);
	sr.target_case = NTFSD__STAT_REQUEST__TARGET_HANDLE;
	sr.handle = f->handle;
	return do_stat(f->c, &sr, st);
}

int ntfsc_fstat(ntfsc_file *f, struct ntfsc_stat *st)
{
	struct ntfsc_stat_ext x;

	if (!st)
		return error_set(EINVAL, NULL);
	if (ntfsc_fstat_ext(f, &x))
		return -1;
	*st = x.st;
	return 0;
}

int ntfsc_stat_ext(ntfsc *c, const char *path, struct ntfsc_stat_ext *st)
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

int ntfsc_stat(ntfsc *c, const char *path, struct ntfsc_stat *st)
{
	struct ntfsc_stat_ext x;

	if (!st)
		return error_set(EINVAL, NULL);
	if (ntfsc_stat_ext(c, path, &x))
		return -1;
	*st = x.st;
	return 0;
}

/* ---- reading ---- */

/*
 * Copy [pos, end) of page pos >> PAGE_SHIFT (end within that page) if the
 * page is uptodate and stays so, with the same generation, across the copy.
 */
static bool copy_page(const ntfsc_file *f, uint8_t *dst, uint64_t pos, uint64_t end)
{
	struct shm_page *p = &f->pages[pos >> PAGE_SHIFT_];
	uint32_t gen = atomic_load_explicit(&p->generation, memory_order_acquire);

	if (!(page_flags(p) & PG_uptodate))
		return false;
	memcpy(dst, f->data + pos, (size_t)(end - pos));
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&p->generation, memory_order_relaxed) == gen &&
	       (page_flags(p) & PG_uptodate);
}

#define COPY_RUN_PAGES 256u

/*
 * Copy as much of [pos, end) as lies in consecutive uptodate pages with one
 * pread(2) of the data segment: the kernel copies straight from the
 * segment's pages, with none of the page faults a first touch of our
 * mapping costs.  Each page's generation is taken before and checked after,
 * so a page reclaimed meanwhile ends the run there.  Returns the bytes
 * copied (0: the first page is not uptodate).
 */
static uint64_t copy_run(const ntfsc_file *f, uint8_t *dst, uint64_t pos, uint64_t end)
{
	uint32_t gen[COPY_RUN_PAGES];
	uint64_t first = pos >> PAGE_SHIFT_, n = 0, run_end, i, good;
	ssize_t got;

	while (n < COPY_RUN_PAGES && ((first + n) << PAGE_SHIFT_) < end) {
		struct shm_page *p = &f->pages[first + n];

		gen[n] = atomic_load_explicit(&p->generation, memory_order_acquire);
		if (!(page_flags(p) & PG_uptodate))
			break;
		n++;
	}
	if (!n)
		return 0;
	run_end = (first + n) << PAGE_SHIFT_;
	if (run_end > end)
		run_end = end;
	got = pread(f->data_fd, dst, (size_t)(run_end - pos), (off_t)pos);
	if (got <= 0)
		return 0;  /* treated like a page that is not there: fault in, retry */
	atomic_thread_fence(memory_order_acquire);
	good = pos + (uint64_t)got;
	for (i = 0; i < n && (first + i) << PAGE_SHIFT_ < good; i++) {
		struct shm_page *p = &f->pages[first + i];

		if (atomic_load_explicit(&p->generation, memory_order_relaxed) != gen[i] ||
		    !(page_flags(p) & PG_uptodate)) {
			good = (first + i) << PAGE_SHIFT_;
			break;
		}
	}
	return good > pos ? good - pos : 0;
}

/* The end of what pread may copy from pos on, or -1 (EIO) when the file
 * extends beyond its segments; *eof when there is nothing left. */
static int read_limit(const ntfsc_file *f, uint64_t pos, uint64_t want_end, uint64_t *end)
{
	uint64_t e = file_size(f);

	if (e > want_end)
		e = want_end;
	if (pos < e && pos >= f->readable)
		return error_set(EIO, "byte %llu of MFT record %llu lies beyond its cache segment",
				 (unsigned long long)pos, (unsigned long long)f->mft_no);
	if (e > f->readable)
		e = f->readable;
	*end = e;
	return 0;
}

static int no_page_faulted(const ntfsc_file *f, uint64_t idx)
{
	return error_set(EIO, "ntfsd faulted in no page at page %llu of MFT record %llu, before "
			 "the end of the file", (unsigned long long)idx,
			 (unsigned long long)f->mft_no);
}

/*
 * Reads normally fault in everything they still need, unpinned, and copy
 * page by page.  A page that is gone again right after its fault-in means
 * the cache is thrashing (reclaim takes pages before we get to them); from
 * then on the read pins PIN_CHUNK pages at a time, copies them and unpins
 * them, which always makes progress.
 */
#define PIN_CHUNK 32u

ssize_t ntfsc_pread(ntfsc_file *f, void *buf, size_t len, off_t off)
{
	uint8_t *out = buf;
	uint64_t start, want_end, pos, covered, want;
	unsigned faults = 0;
	bool thrash = false;

	if (!f || off < 0 || (!buf && len))
		return error_set(EINVAL, NULL);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	start = pos = (uint64_t)off;
	want_end = start + len;         /* both below 2^63: no overflow */

	while (pos < want_end) {
		uint64_t end = 0, idx, page_end, last;

		if (read_limit(f, pos, want_end, &end))
			goto fail;
		if (pos >= end)
			break;
		idx = pos >> PAGE_SHIFT_;
		{
			uint64_t copied = copy_run(f, out + (pos - start), pos, end);

			if (copied) {
				pos += copied;
				faults = 0;
				continue;
			}
		}
		/* Not there, or reclaimed while we copied. */
		if (faults++ == MAX_FAULT_RETRIES) {
			error_set(EIO, "page %llu of MFT record %llu is still not uptodate after %u "
				  "fault-ins", (unsigned long long)idx, (unsigned long long)f->mft_no,
				  MAX_FAULT_RETRIES);
			goto fail;
		}
		last = (end - 1) >> PAGE_SHIFT_;
		want = last - idx + 1;
		if (faults > 1)
			thrash = true;
		if (!thrash) {
			if (want > MAX_FAULT_PAGES)
				want = MAX_FAULT_PAGES;
			if (file_fault_in(f, idx, want, false, &covered))
				goto fail;
			if (covered == 0 && pos < file_size(f)) {
				no_page_faulted(f, idx);
				goto fail;
			}
			continue;
		}

		/* Thrashing: pin, copy, unpin. */
		if (want > PIN_CHUNK)
			want = PIN_CHUNK;
		if (file_fault_in(f, idx, want, true, &covered))
			goto fail;
		if (covered == 0) {
			if (pos < file_size(f)) {
				no_page_faulted(f, idx);
				goto fail;
			}
			continue;
		}
		while (pos < end && (pos >> PAGE_SHIFT_) < idx + covered) {
			page_end = ((pos >> PAGE_SHIFT_) + 1) << PAGE_SHIFT_;
			if (page_end > end)
				page_end = end;
			if (!copy_page(f, out + (pos - start), pos, page_end))
				break;
			pos = page_end;
			faults = 0;
		}
		if (file_unpin(f, idx, covered))
			goto fail;
	}
	return (ssize_t)(pos - start);
fail:
	return pos > start ? (ssize_t)(pos - start) : -1;
}

/* ---- writing ---- */

#define WRITE_READY (PG_uptodate | PG_write_ready)

static bool page_write_ready(const struct shm_page *p)
{
	return (page_flags(p) & WRITE_READY) == WRITE_READY;
}

/* The buffers of a page that bytes [s, e) of it touch (s < e <= page size). */
static uint32_t buffer_mask(const ntfsc_file *f, uint32_t s, uint32_t e)
{
	uint32_t b0 = s / f->buffer_size, b1 = (e - 1) / f->buffer_size;

	return page_all_buffers(b1 + 1) & ~page_all_buffers(b0);
}

/* Is page i wholly inside the bytes [ws, we) being written? */
static bool page_covered(uint64_t i, uint64_t ws, uint64_t we)
{
	return (i << PAGE_SHIFT_) >= ws && ((i + 1) << PAGE_SHIFT_) <= we;
}

/* May page i take the write [ws, we)?  Write-ready and uptodate, or
 * write-ready and about to be overwritten wholly (ntfsd need not have read
 * it; the writer makes it uptodate). */
static bool page_writable_for(const ntfsc_file *f, uint64_t i, uint64_t ws, uint64_t we)
{
	const struct shm_page *p = &f->pages[i];

	return page_write_ready(p) ||
	       ((page_flags(p) & PG_write_ready) && page_covered(i, ws, we));
}

/* Are pages first..last all there and writable (a hint: unlocked)? */
static bool range_write_ready(const ntfsc_file *f, uint64_t first, uint64_t last, uint64_t ws,
			      uint64_t we)
{
	if (last >= f->nr_pages)
		return false;
	for (uint64_t i = first; i <= last; i++)
		if (!page_writable_for(f, i, ws, we))
			return false;
	return true;
}

/*
 * Make [first, first + n) write-ready in requests ntfsd accepts.  new_size
 * (0: none) goes with the last request only, so a range refused part way
 * leaves the file's size alone (pages made write-ready before the refusal
 * stay so, which changes nothing on the volume).
 */
static int prepare_range(ntfsc_file *f, uint64_t first, uint64_t n, uint64_t new_size,
			 uint64_t ws, uint64_t we)
{
	uint64_t done = 0, i_size;

	while (done < n) {
		Ntfsd__PrepareWriteRequest pr = NTFSD__PREPARE_WRITE_REQUEST__INIT;
		uint64_t chunk = n - done < MAX_FAULT_PAGES ? n - done : MAX_FAULT_PAGES;
		bool last = done + chunk == n;
		Ntfsd__Reply *rep;

		pr.handle = f->handle;
		pr.first_page = first + done;
		pr.nr_pages = chunk;
		pr.new_size = last ? new_size : 0;  /* raised first when larger */
		pr.write_start = ws;
		pr.write_end = we;
		if (request(f->c, NTFSD__REQUEST__BODY_PREPARE_WRITE, &pr, NULL, NULL, &rep))
			return -1;
		i_size = rep->prepare_write->i_size;  /* the size after */
		ntfsd__reply__free_unpacked(rep, NULL);
		if (last && new_size && i_size < new_size)
			return error_set(EPROTO, "ntfsd left MFT record %llu at %llu bytes when asked "
					 "to extend it to %llu", (unsigned long long)f->mft_no,
					 (unsigned long long)i_size, (unsigned long long)new_size);
		done += chunk;
	}
	return 0;
}

/*
 * Lock pages idx, idx + 1, ... up to last (at most COPY_RUN_PAGES), in
 * ascending order, as long as each is uptodate and write-ready under its
 * lock.  Returns how many are locked: 0 when page idx is not write-ready.
 */
static uint64_t lock_run(ntfsc_file *f, uint64_t idx, uint64_t last, uint64_t ws, uint64_t we)
{
	uint64_t n = 0;

	while (idx + n <= last && n < COPY_RUN_PAGES) {
		struct shm_page *p = &f->pages[idx + n];

		if (!client_lock_page(f, idx + n))
			break;
		if (!page_writable_for(f, idx + n, ws, we)) {
			unlock_page(p);
			break;
		}
		n++;
	}
	return n;
}

/* Copy src to bytes [pos, end) of the cache through the data fd (the kernel
 * copies, so no page of ours faults); *done: bytes stored, also on error. */
static int store(const ntfsc_file *f, const uint8_t *src, uint64_t pos, uint64_t end,
		 uint64_t *done)
{
	*done = 0;
	while (pos + *done < end) {
		ssize_t n = pwrite(f->data_fd, src + *done, (size_t)(end - pos - *done),
				   (off_t)(pos + *done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return error_set(errno, "cannot store into the cache of MFT record %llu: %s",
					 (unsigned long long)f->mft_no, strerror(errno));
		}
		if (n == 0)
			return error_set(EIO, "storing into the cache of MFT record %llu made no "
					 "progress", (unsigned long long)f->mft_no);
		*done += (uint64_t)n;
	}
	return 0;
}

/* Dirty the buffers that bytes [pos, stored_end) touch in the n locked
 * pages from idx, then unlock all n. */
static uint64_t dirty_unlock_run(ntfsc_file *f, uint64_t idx, uint64_t n, uint64_t pos,
				 uint64_t stored_end)
{
	uint64_t kept = stored_end;

	for (uint64_t i = 0; i < n; i++) {
		struct shm_page *p = &f->pages[idx + i];
		uint64_t ps = (idx + i) << PAGE_SHIFT_, pe = ps + PAGE_SIZE_;
		uint64_t s = pos > ps ? pos : ps, e = kept < pe ? kept : pe;

		if (s < e && !(page_flags(p) & PG_uptodate)) {
			/* ntfsd did not read it: only a page we stored wholly
			 * may become uptodate; a partial store is not kept */
			if (s == ps && e == pe) {
				atomic_store_explicit(&p->buf_uptodate,
						      page_all_buffers(PAGE_SIZE_ / f->buffer_size),
						      memory_order_release);
				page_set_bits(p, PG_buffers | PG_uptodate);
			} else {
				kept = s;
				e = s;
			}
		}
		if (s < e)
			set_page_dirty(&f->dirty, idx + i,
				       buffer_mask(f, (uint32_t)(s - ps), (uint32_t)(e - ps)));
		unlock_page(p);
	}
	return kept;
}

/*
 * Past the daemon's dirty limit: wait until write-back brings the dirty
 * data under it.  The header's count is refreshed by the daemon only now
 * and then and this file's own count says nothing of other files, so on
 * top of those two lower bounds every connection also checks in with the
 * daemon (which counts exactly) after dirtying its share of the limit:
 * limit / (2 x open files).  So writers on many files together overshoot
 * the limit by at most about half of it.  What was written stays written
 * whatever happens here (a lost connection is reported by the next
 * request), so errors are kept from the caller.
 */
static void balance_dirty(ntfsc_file *f, uint64_t pages)
{
	struct shm_volume_header *h = (struct shm_volume_header *)f->c->hdr;
	uint64_t limit = atomic_load_explicit(&h->dirty_limit, memory_order_relaxed);
	uint64_t dirty = atomic_load_explicit(&h->counters.dirty_pages, memory_order_relaxed);
	uint64_t mine = atomic_load_explicit(&f->state->nr_dirty, memory_order_relaxed);
	uint64_t files = atomic_load_explicit(&h->counters.open_files, memory_order_relaxed);
	Ntfsd__BalanceDirtyRequest br = NTFSD__BALANCE_DIRTY_REQUEST__INIT;
	uint64_t share, since;
	struct saved_error se;

	if (!limit)
		return;
	share = limit / PAGE_SIZE_ / (2 * (files ? files : 1));
	since = atomic_fetch_add(&f->c->dirtied_since_balance, pages) + pages;
	if (mine > dirty)
		dirty = mine;
	if (dirty <= limit / PAGE_SIZE_ && since < (share ? share : 1))
		return;
	atomic_store(&f->c->dirtied_since_balance, 0);
	error_save(&se);
	request(f->c, NTFSD__REQUEST__BODY_BALANCE_DIRTY, &br, NULL, NULL, NULL);
	error_restore(&se);
}

/*
 * One PrepareWrite for the whole range when some page is not write-ready
 * or the file must grow; then runs of locked, write-ready pages are stored
 * with one pwrite(2) each, dirtied and unlocked.  A page reclaimed between
 * its PrepareWrite and its lock is made write-ready again; when that keeps
 * happening (the cache is thrashing) the write pins PIN_CHUNK pages at a
 * time before making them write-ready, which always makes progress.
 */
static bool all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t zero[4096];

	while (n) {
		size_t k = n < sizeof(zero) ? n : sizeof(zero);

		if (memcmp(p, zero, k))
			return false;
		p += k;
		n -= k;
	}
	return true;
}

/*
 * A buffer of zeroes over bytes that already read as zeroes (a hole, the
 * tail of an allocation) changes nothing, so it must not make ntfsd
 * allocate clusters (the old NTFS driver's check for zero buffers): the
 * part inside the file is checked by reading it, the part past the end
 * becomes a (sparse) size change.  Returns 1 when the write was done so,
 * 0 when it must go the normal way (also when the size change is refused),
 * -1 on error.
 */
static int pwrite_zeroes(ntfsc_file *f, uint64_t start, uint64_t end)
{
	uint8_t *tmp;
	uint64_t size = file_size(f), pos;
	int ret = 1;

	if (start > size)
		return 0;               /* a gap before: the normal path says how */
	/* Zeroes the cache holds over a page whose write-back failed may not
	 * be on the disk (the page is clean, with the new bytes): written
	 * again they must reach it like any other bytes. */
	for (pos = start >> PAGE_SHIFT_; pos < f->nr_pages && pos << PAGE_SHIFT_ < end &&
	     pos << PAGE_SHIFT_ < size; pos++)
		if (page_test(&f->pages[pos], PG_error))
			return 0;
	tmp = malloc(1u << 16);
	if (!tmp)
		return 0;
	for (pos = start; pos < end && pos < size && ret == 1;) {
		uint64_t lim = end < size ? end : size;
		size_t n = lim - pos < (1u << 16) ? (size_t)(lim - pos) : (1u << 16);
		ssize_t got = ntfsc_pread(f, tmp, n, (off_t)pos);

		if (got < 0)
			ret = -1;
		else if (got == 0 || !all_zero(tmp, (size_t)got))
			ret = 0;
		else
			pos += (uint64_t)got;
	}
	free(tmp);
	/* a size change the daemon refuses: let the write itself say why (or
	 * do it), so zeroes are never refused where other bytes would not be */
	if (ret == 1 && end > file_size(f) && ntfsc_ftruncate(f, (off_t)end))
		ret = 0;
	return ret;
}

ssize_t ntfsc_pwrite(ntfsc_file *f, const void *buf, size_t len, off_t off)
{
	const uint8_t *in = buf;
	uint64_t start, end, pos, last, size;
	unsigned retries = 0;
	bool thrash = false;

	if (!f || off < 0 || (!buf && len))
		return error_set(EINVAL, NULL);
	if (!f->writable)
		return error_set(EBADF, "MFT record %llu is open read-only",
				 (unsigned long long)f->mft_no);
	if (len == 0)
		return 0;
	if (!f->data_writable)
		return error_set(EACCES, "ntfsd shares the data of MFT record %llu read-only",
				 (unsigned long long)f->mft_no);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	start = pos = (uint64_t)off;
	end = start + len;              /* both below 2^63: no overflow */
	last = (end - 1) >> PAGE_SHIFT_;
	if (all_zero(in, len)) {
		int z = pwrite_zeroes(f, start, end);

		if (z)
			return z < 0 ? -1 : (ssize_t)len;
	}

	size = file_size(f);
	if ((end > size || !range_write_ready(f, start >> PAGE_SHIFT_, last, start, end)) &&
	    prepare_range(f, start >> PAGE_SHIFT_, last - (start >> PAGE_SHIFT_) + 1,
			  end > size ? end : 0, start, end))
		return -1;
	if (end > f->readable)
		return error_set(EPROTO, "ntfsd made bytes up to %llu of MFT record %llu "
				 "writable, beyond its cache segment (%llu bytes)",
				 (unsigned long long)end, (unsigned long long)f->mft_no,
				 (unsigned long long)f->readable);

	while (pos < end) {
		uint64_t idx = pos >> PAGE_SHIFT_, lim = last, pinned = 0, n, done = 0;
		int err = 0;

		if (thrash) {
			uint64_t want = last - idx + 1 < PIN_CHUNK ? last - idx + 1 : PIN_CHUNK;

			if (file_fault_in(f, idx, want, true, &pinned))
				break;
			if (pinned) {
				lim = idx + pinned - 1;
				err = prepare_range(f, idx, pinned, 0, start, end);
			}
		}
		n = err ? 0 : lock_run(f, idx, lim, start, end);
		if (n) {
			uint64_t run_end = (idx + n) << PAGE_SHIFT_;

			if (run_end > end)
				run_end = end;
			err = store(f, in + (pos - start), pos, run_end, &done);
			pos = dirty_unlock_run(f, idx, n, pos, pos + done);
			retries = 0;
		}
		if (pinned) {
			if (err) {
				struct saved_error se;

				error_save(&se);
				file_unpin(f, idx, pinned);
				error_restore(&se);
			} else {
				err = file_unpin(f, idx, pinned);
			}
		}
		if (err)
			break;
		if (n) {
			balance_dirty(f, n);
			continue;
		}
		/* Page idx was reclaimed after it was made write-ready. */
		if (retries++ == MAX_FAULT_RETRIES) {
			error_set(EIO, "page %llu of MFT record %llu is still not write-ready after "
				  "%u attempts", (unsigned long long)idx,
				  (unsigned long long)f->mft_no, MAX_FAULT_RETRIES);
			break;
		}
		if (retries > 1) {
			thrash = true;  /* the next round pins before it prepares */
		} else {
			uint64_t upto = last - idx < COPY_RUN_PAGES ? last : idx + COPY_RUN_PAGES - 1;

			size = file_size(f);
			if (prepare_range(f, idx, upto - idx + 1, end > size ? end : 0, start, end))
				break;
		}
	}
	if (pos == end)
		return (ssize_t)len;
	return pos > start ? (ssize_t)(pos - start) : -1;
}

int ntfsc_fsync(ntfsc_file *f)
{
	Ntfsd__SyncRequest sr = NTFSD__SYNC_REQUEST__INIT;

	if (!f)
		return error_set(EINVAL, NULL);
	sr.handle = f->handle;
	return request(f->c, NTFSD__REQUEST__BODY_SYNC, &sr, NULL, NULL, NULL);
}

int ntfsc_ftruncate(ntfsc_file *f, off_t size)
{
	Ntfsd__TruncateRequest tr = NTFSD__TRUNCATE_REQUEST__INIT;

	if (!f || size < 0)
		return error_set(EINVAL, NULL);
	tr.handle = f->handle;
	tr.size = (uint64_t)size;
	return request(f->c, NTFSD__REQUEST__BODY_TRUNCATE, &tr, NULL, NULL, NULL);
}

int ntfsc_sync(ntfsc *c)
{
	Ntfsd__SyncRequest sr = NTFSD__SYNC_REQUEST__INIT;  /* handle 0: the volume */

	if (!c)
		return error_set(EINVAL, NULL);
	return request(c, NTFSD__REQUEST__BODY_SYNC, &sr, NULL, NULL, NULL);
}

/* ---- mapping ---- */

/*
 * Pin and fault in [first, first + n) in requests ntfsd accepts; *pinned:
 * pages pinned from first (the daemon stops at the end of the file).  On
 * failure nothing stays pinned: a refused request pinned nothing, and what
 * earlier requests pinned is unpinned again.
 */
static int pin_range(ntfsc_file *f, uint64_t first, uint64_t n, uint64_t *pinned)
{
	uint64_t done = 0, covered;

	while (done < n) {
		uint64_t chunk = n - done < MAX_FAULT_PAGES ? n - done : MAX_FAULT_PAGES;

		if (file_fault_in(f, first + done, chunk, true, &covered)) {
			if (done) {
				struct saved_error se;

				error_save(&se);
				file_unpin(f, first, done);
				error_restore(&se);
			}
			return -1;
		}
		done += covered;
		if (covered < chunk)
			break;
	}
	*pinned = done;
	return 0;
}

void *ntfsc_mmap(ntfsc_file *f, off_t off, size_t len, int prot)
{
	struct mapping *m;
	uint64_t base, lead, map_len, covered;
	void *addr;

	if (!f || off < 0 || len == 0 || (prot & ~(PROT_READ | PROT_WRITE))) {
		error_set(EINVAL, NULL);
		return MAP_FAILED;
	}
	if ((prot & PROT_WRITE) && !f->writable) {
		error_set(EACCES, NULL);
		return MAP_FAILED;
	}
	if ((prot & PROT_WRITE) && !f->data_writable) {
		error_set(EACCES, "ntfsd shares the data of MFT record %llu read-only",
			  (unsigned long long)f->mft_no);
		return MAP_FAILED;
	}
	base = (uint64_t)off & ~(uint64_t)(PAGE_SIZE_ - 1);
	lead = (uint64_t)off - base;
	if (base >= f->data_size || len > f->data_size - base ||
	    lead + len > f->data_size - base) {
		error_set(ENXIO, NULL);
		return MAP_FAILED;
	}
	map_len = (lead + len + PAGE_SIZE_ - 1) & ~(uint64_t)(PAGE_SIZE_ - 1);
	if (map_len > f->data_size - base) {
		error_set(ENXIO, NULL);
		return MAP_FAILED;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		error_set(ENOMEM, NULL);
		return MAP_FAILED;
	}
	if (pin_range(f, base >> PAGE_SHIFT_, map_len >> PAGE_SHIFT_, &covered)) {
		free(m);
		return MAP_FAILED;
	}
	/* Pinned pages are never reclaimed, so once write-ready they stay so
	 * for as long as the mapping lives.  Pages past the end of the file
	 * (not pinned) are not made write-ready: nothing stored there can
	 * reach the volume. */
	if ((prot & PROT_WRITE) && covered &&
	    prepare_range(f, base >> PAGE_SHIFT_, covered, 0, 0, 0))
		goto unpin;
	addr = mmap(NULL, (size_t)map_len, prot, MAP_SHARED, f->data_fd, (off_t)base);
	if (addr == MAP_FAILED) {
		error_set(errno, NULL);
		goto unpin;
	}
	/* The pinned pages are uptodate: map them all now rather than take a
	 * page fault at each first touch (only a hint; errors are harmless). */
	if (covered)
		madvise(addr, (size_t)(covered << PAGE_SHIFT_) < (size_t)map_len
				       ? (size_t)(covered << PAGE_SHIFT_) : (size_t)map_len,
			(prot & PROT_WRITE) ? NTFSC_MADV_POPULATE_WRITE : NTFSC_MADV_POPULATE_READ);
	m->base = addr;
	m->len = (size_t)map_len;
	m->user = (uint8_t *)addr + lead;
	m->ulen = len;
	m->prot = prot;
	m->first_page = base >> PAGE_SHIFT_;
	m->pinned = covered;
	pthread_mutex_lock(&f->maps_lock);
	m->next = f->maps;
	f->maps = m;
	pthread_mutex_unlock(&f->maps_lock);
	return m->user;

unpin: {
		struct saved_error se;

		error_save(&se);
		if (covered)
			file_unpin(f, base >> PAGE_SHIFT_, covered);
		free(m);
		error_restore(&se);
		return MAP_FAILED;
	}
}

int ntfsc_munmap(ntfsc_file *f, void *addr, size_t len)
{
	struct mapping **pp, *m = NULL;
	uint64_t first, pinned;
	int err = 0;

	if (!f || !addr || len == 0)
		return error_set(EINVAL, NULL);
	pthread_mutex_lock(&f->maps_lock);
	for (pp = &f->maps; *pp; pp = &(*pp)->next) {
		struct mapping *x = *pp;
		size_t lead = (size_t)(x->user - x->base);

		if (x->user == addr && len <= x->len - lead &&
		    ((lead + len + PAGE_SIZE_ - 1) & ~(size_t)(PAGE_SIZE_ - 1)) == x->len) {
			m = x;
			*pp = x->next;
			break;
		}
	}
	pthread_mutex_unlock(&f->maps_lock);
	if (!m)
		return error_set(EINVAL, NULL);
	munmap(m->base, m->len);
	first = m->first_page;
	pinned = m->pinned;
	free(m);
	if (pinned)
		err = file_unpin(f, first, pinned);
	return err;
}

int ntfsc_set_dirty(ntfsc_file *f, void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, u;
	struct mapping *m;
	uint64_t first, last;
	uint32_t all;
	int err = 0;

	if (!f || !addr)
		return error_set(EINVAL, NULL);
	/* maps_lock is held throughout: the mapping, and so its pins, stay. */
	pthread_mutex_lock(&f->maps_lock);
	for (m = f->maps; m; m = m->next) {
		u = (uintptr_t)m->user;
		if ((m->prot & PROT_WRITE) && a >= u && a - u <= m->ulen && len <= m->ulen - (a - u))
			break;
	}
	if (!m) {
		pthread_mutex_unlock(&f->maps_lock);
		return error_set(EINVAL, "no writable mapping of MFT record %llu holds that range",
				 (unsigned long long)f->mft_no);
	}
	if (len == 0) {
		pthread_mutex_unlock(&f->maps_lock);
		return 0;
	}
	a -= (uintptr_t)m->base;        /* now the offset into the mapping */
	first = m->first_page + (a >> PAGE_SHIFT_);
	last = m->first_page + (a + len - 1) / PAGE_SIZE_;
	all = page_all_buffers(f->buffers_per_page);
	for (uint64_t i = first; i <= last; i++) {
		struct shm_page *p;

		if (i >= f->nr_pages) {
			err = error_set(EIO, "page %llu of MFT record %llu lies beyond its cache "
					"segment", (unsigned long long)i, (unsigned long long)f->mft_no);
			break;
		}
		p = &f->pages[i];
		if (!client_lock_page(f, i)) {
			err = -1;
			break;
		}
		if (!page_write_ready(p)) {
			unlock_page(p);
			err = error_set(EIO, "page %llu of MFT record %llu is not writable (past the "
					"end of the file, or lost)", (unsigned long long)i,
					(unsigned long long)f->mft_no);
			break;
		}
		set_page_dirty(&f->dirty, i, all);
		unlock_page(p);
	}
	pthread_mutex_unlock(&f->maps_lock);
	if (!err)
		balance_dirty(f, (len + PAGE_SIZE_ - 1) / PAGE_SIZE_ + 1);
	return err;
}

/* ---- directories and the volume ---- */

int ntfsc_listdir(ntfsc *c, const char *path, ntfsc_listdir_cb cb, void *ctx)
{
	Ntfsd__ListDirRequest lr = NTFSD__LIST_DIR_REQUEST__INIT;
	Ntfsd__Reply *rep;
	int ret = 0;

	if (!c || !cb)
		return error_set(EINVAL, NULL);
	if (check_path(path))
		return -1;
	lr.path = (char *)path;
	if (request(c, NTFSD__REQUEST__BODY_LIST_DIR, &lr, NULL, NULL, &rep))
		return -1;
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

int ntfsc_volume_status(ntfsc *c, struct ntfsc_volume_status *st)
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
		return error_set(EINVAL, NULL);
	if (ntfsc_volume_status(c, &s))
		return -1;
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
#define NTFSC_PROTOCOL_STR "2"
#define NTFSC_LAYOUT_STR "5"
_Static_assert(NTFSD_PROTOCOL_VERSION == 2, "update NTFSC_PROTOCOL_STR");
_Static_assert(NTFSD_SHM_LAYOUT_VERSION == 5, "update NTFSC_LAYOUT_STR");

const char *ntfsc_version(bool full)
{
	return full ? "libntfsc " NTFSC_VERSION " (protocol " NTFSC_PROTOCOL_STR
		      ", shm layout " NTFSC_LAYOUT_STR ")"
		    : NTFSC_VERSION;
}
