/*
 * file.c — open files: opening and closing them, taking their segments,
 * and the requests every job makes on a handle (unpin, fault-in).
 *
 * Invariants:
 *  - Every fd that arrives with an open reply is either kept by the open
 *    file it belongs to or closed before ntfsc_open returns.  A file the
 *    daemon opened for us but that we could not set up is closed on the
 *    daemon's side again.
 *  - Everything that decides where we access memory (page counts, sizes)
 *    comes from what only the daemon writes (its replies, the volume
 *    header's buffer size), never from the page-state header any writer
 *    may rewrite, and is checked against the memfds' real sizes before we
 *    map by it.  The segments grow while open: each size is one struct
 *    file_geom, published once mapped, kept until close.
 *  - A file is on its connection's list (c->files, under files_lock) from
 *    a successful open until ntfsc_close or ntfsc_disconnect takes it off;
 *    only the one that took it off releases it (file_release), so a file
 *    is released once, with every mapping unmapped and unpinned.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "segment.h"
#include "seqcount.h"

/* Tell the daemon f's handle is closed. */
static int file_close_handle(ntfsc_file *f)
{
	Ntfsd__CloseRequest cr = NTFSD__CLOSE_REQUEST__INIT;

	cr.handle = f->handle;
	return request(f->c, NTFSD__REQUEST__BODY_CLOSE, &cr, NULL, NULL, NULL);
}

/* Unpin [first, first + n) of f. */
int file_unpin(ntfsc_file *f, uint64_t first, uint64_t n)
{
	Ntfsd__UnpinRequest ur = NTFSD__UNPIN_REQUEST__INIT;

	ur.handle = f->handle;
	ur.first_page = first;
	ur.nr_pages = n;
	return request(f->c, NTFSD__REQUEST__BODY_UNPIN, &ur, NULL, NULL, NULL);
}

/* The segments' size a reply carries: map them again if they grew. */
static int adopt_segment(ntfsc_file *f, const Ntfsd__SegmentSize *sz)
{
	return sz ? file_remap(f, sz->nr_pages, sz->data_segment_size) : 0;
}

/* Fault pages in; *covered: pages the daemon says it covered. */
int file_fault_in(ntfsc_file *f, uint64_t first, uint64_t n, bool pin, uint64_t *covered)
{
	Ntfsd__FaultInRequest fr = NTFSD__FAULT_IN_REQUEST__INIT;
	Ntfsd__Reply *rep;
	int err;

	fr.handle = f->handle;
	fr.first_page = first;
	fr.nr_pages = n;
	fr.pin = pin;
	if (request(f->c, NTFSD__REQUEST__BODY_FAULT_IN, &fr, NULL, NULL, &rep))
		return -1;
	*covered = rep->fault_in->nr_pages;
	err = adopt_segment(f, rep->fault_in->segment);
	ntfsd__reply__free_unpacked(rep, NULL);
	if (err)
		return err;
	if (*covered > n)
		return error_set(EPROTO, "ntfsd faulted in %llu pages when asked for %llu",
				 (unsigned long long)*covered, (unsigned long long)n);
	if (*covered && first + *covered > file_nr_pages(f))
		return error_set(EPROTO, "ntfsd faulted in pages up to %llu of MFT record %llu, "
				 "past its segments (%llu pages)",
				 (unsigned long long)(first + *covered), (unsigned long long)f->mft_no,
				 (unsigned long long)file_nr_pages(f));
	return 0;
}

int file_need_pages(ntfsc_file *f, uint64_t end)
{
	uint64_t covered;

	if (end <= file_nr_pages(f))
		return 0;
	/* a fault-in of no pages: the reply says how large the segments are */
	if (file_fault_in(f, 0, 0, false, &covered))
		return -1;
	if (end <= file_nr_pages(f))
		return 0;
	return error_set(EIO, "page %llu of MFT record %llu lies beyond its cache segments "
			 "(%llu pages)", (unsigned long long)(end - 1), (unsigned long long)f->mft_no,
			 (unsigned long long)file_nr_pages(f));
}

uint64_t file_size(const ntfsc_file *f)
{
	struct inode_sizes sz;

	inode_slot_read(&f->c->hdr->inodes[f->slot], &sz);
	return sz.i_size;
}

static void geom_unmap(struct file_geom *g)
{
	if (g->data)
		munmap((void *)g->data, (size_t)g->data_size);
	if (g->state)
		munmap(g->state, g->state_len);
	free(g);
}

/* Map f's segments for nr_pages pages and data_size bytes (the daemon's
 * word), checked against what the memfds really hold. */
static struct file_geom *geom_map(ntfsc_file *f, uint64_t nr_pages, uint64_t data_size)
{
	struct shm_file_header layout;
	struct file_geom *g;
	struct stat st;
	uint64_t pages_bytes;
	void *p;

	if (nr_pages > f->max_pages) {
		error_set(EPROTO, "ntfsd announced %llu pages for MFT record %llu, past the %llu "
			  "its segment is laid out for", (unsigned long long)nr_pages,
			  (unsigned long long)f->mft_no, (unsigned long long)f->max_pages);
		return NULL;
	}
	shm_file_layout_max(&layout, nr_pages, f->max_pages, f->buffer_size);
	if (fstat(f->state_fd, &st) < 0) {
		error_set(errno, "cannot stat a page-state segment: %s", strerror(errno));
		return NULL;
	}
	if (layout.segment_size > (uint64_t)st.st_size || layout.segment_size > SIZE_MAX) {
		error_set(EPROTO, "ntfsd sent a page-state segment of %lld bytes for %llu pages",
			  (long long)st.st_size, (unsigned long long)nr_pages);
		return NULL;
	}
	if (fstat(f->data_fd, &st) < 0) {
		error_set(errno, "cannot stat a data segment: %s", strerror(errno));
		return NULL;
	}
	if ((uint64_t)st.st_size < data_size || data_size > SIZE_MAX) {
		error_set(EPROTO, "ntfsd announced a data segment of %llu bytes but sent one of %lld",
			  (unsigned long long)data_size, (long long)st.st_size);
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		error_set(ENOMEM, NULL);
		return NULL;
	}
	p = mmap(NULL, (size_t)layout.segment_size,
		 f->writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, f->state_fd, 0);
	if (p == MAP_FAILED) {
		error_set(errno, "cannot map a page-state segment: %s", strerror(errno));
		free(g);
		return NULL;
	}
	g->state = p;
	g->state_len = (size_t)layout.segment_size;
	g->nr_pages = nr_pages;
	dirty_bitmap_init(&g->dirty, g->state, &layout);
	g->data_size = data_size;
	if (data_size) {
		p = mmap(NULL, (size_t)data_size, PROT_READ, MAP_SHARED, f->data_fd, 0);
		if (p == MAP_FAILED) {
			error_set(errno, "cannot map a data segment: %s", strerror(errno));
			geom_unmap(g);
			return NULL;
		}
		g->data = p;
	}
	pages_bytes = nr_pages << PAGE_SHIFT_;
	g->readable = pages_bytes < data_size ? pages_bytes : data_size;
	return g;
}

int file_remap(ntfsc_file *f, uint64_t nr_pages, uint64_t data_size)
{
	struct file_geom *old, *g;

	pthread_mutex_lock(&f->geom_lock);
	old = file_geom(f);
	if (old && nr_pages <= old->nr_pages && data_size <= old->data_size) {
		pthread_mutex_unlock(&f->geom_lock);
		return 0;
	}
	if (old && nr_pages < old->nr_pages)
		nr_pages = old->nr_pages;   /* segments never shrink */
	if (old && data_size < old->data_size)
		data_size = old->data_size;
	g = geom_map(f, nr_pages, data_size);
	if (!g) {
		pthread_mutex_unlock(&f->geom_lock);
		return -1;
	}
	g->older = old;
	atomic_store_explicit(&f->geom, g, memory_order_release);
	pthread_mutex_unlock(&f->geom_lock);
	return 0;
}

/* Take the segments of a fresh OpenReply into f; f keeps both fds. */
static int file_setup(ntfsc_file *f, const Ntfsd__OpenReply *o, int data_fd, int state_fd)
{
	int seals, fl;

	f->data_fd = data_fd;
	f->state_fd = state_fd;
	if (o->inode_slot >= f->c->max_inodes)
		return error_set(EPROTO, "ntfsd gave inode slot %u of %u", o->inode_slot,
				 f->c->max_inodes);
	f->slot = o->inode_slot;
	/* The layout comes from what only the daemon writes (the reply's page
	 * counts, the volume header's buffer size), never from the mapped
	 * header: any writer of the file can rewrite that at any time.  (A
	 * daemon of another layout was refused at connect.) */
	f->max_pages = o->max_pages;
	if (f->max_pages > NTFSD_SHM_MAX_PAGES || o->nr_pages > f->max_pages ||
	    f->c->hdr->buffer_size < 512 || f->c->hdr->buffer_size > NTFSD_PAGE_SIZE ||
	    (f->c->hdr->buffer_size & (f->c->hdr->buffer_size - 1)))
		return error_set(EPROTO, "ntfsd sent a page-state segment of an impossible geometry "
				 "(%llu pages of %llu, %u-byte buffers)",
				 (unsigned long long)o->nr_pages, (unsigned long long)f->max_pages,
				 f->c->hdr->buffer_size);
	f->buffer_size = f->c->hdr->buffer_size;
	f->buffers_per_page = NTFSD_PAGE_SIZE / f->buffer_size;

	/* The data segment: sealed against shrinking, so mapping it never faults. */
	seals = fcntl(data_fd, F_GET_SEALS);
	if (o->data_segment_size && (seals < 0 || !(seals & F_SEAL_SHRINK)))
		return error_set(EPROTO, "ntfsd sent a data segment that is not sealed against "
				 "shrinking");
	/* An ntfsd without write-back shares data read-only even with
	 * OpenReply.writable: only the fd's mode says whether stores may go. */
	fl = fcntl(data_fd, F_GETFL);
	f->data_writable = fl >= 0 && (fl & O_ACCMODE) == O_RDWR;
	if (file_remap(f, o->nr_pages, o->data_segment_size))
		return -1;
	f->state = file_geom(f)->state;
	return 0;
}

/* Unmap and close what file_setup took (not the mappings of ntfsc_mmap). */
static void file_free(ntfsc_file *f)
{
	struct file_geom *g = file_geom(f), *older;

	for (; g; g = older) {
		older = g->older;
		geom_unmap(g);
	}
	if (f->data_fd >= 0)
		close(f->data_fd);
	if (f->state_fd >= 0)
		close(f->state_fd);
	pthread_mutex_destroy(&f->maps_lock);
	pthread_mutex_destroy(&f->geom_lock);
	free(f);
}

static ntfsc_file *file_open(ntfsc *c, const char *path, int flags)
{
	Ntfsd__OpenRequest orq = NTFSD__OPEN_REQUEST__INIT;
	Ntfsd__Reply *rep;
	ntfsc_file *f;
	int fds[NTFSD_MAX_FRAME_FDS], nfds;
	int acc = flags & O_ACCMODE;

	if (!c || (flags & ~(O_ACCMODE | O_CLOEXEC | O_LARGEFILE | O_CREAT | O_EXCL | O_TRUNC)) ||
	    (acc != O_RDONLY && acc != O_RDWR)) {
		error_set(EINVAL, NULL);
		return NULL;
	}
	if ((flags & (O_CREAT | O_TRUNC)) && acc != O_RDWR) {
		error_set(EINVAL, "%s: O_CREAT and O_TRUNC need O_RDWR", path ? path : "");
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
	f->data_fd = f->state_fd = -1;
	pthread_mutex_init(&f->maps_lock, NULL);
	pthread_mutex_init(&f->geom_lock, NULL);

	orq.path = (char *)path;
	orq.write = acc == O_RDWR;
	orq.create = flags & O_CREAT;
	orq.excl = (flags & O_CREAT) && (flags & O_EXCL);
	orq.trunc = flags & O_TRUNC;
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

ntfsc_file *ntfsc_open(ntfsc *c, const char *path, int flags)
{
	ntfsc_file *f = file_open(c, path, flags);

	if (!f)
		error_record(c);
	return f;
}

/* Unmap and unpin every mapping, close the handle, free f.  f is off the
 * connection's list already. */
int file_release(ntfsc_file *f)
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
	return error_on(c, file_release(f));
}
