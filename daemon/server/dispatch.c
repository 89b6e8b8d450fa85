/*
 * dispatch.c — control requests to cache operations and replies.
 *
 * Invariants: see dispatch.h.  Every request gets exactly one reply with its
 * id (or the connection is closed).  A request is decoded and checked on
 * the loop thread; one that needs the disk (open, fault-in, stat by path,
 * list) runs its body on the thread pool and builds its reply there, and
 * the loop thread sends it.  Pins are taken before the pages are read, so a
 * page handed to a mapping can never be reclaimed between fault and use.
 */
#include "dispatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "dirops.h"
#include "flusher.h"
#include "io.h"
#include "frame.h"
#include "holders.h"
#include "log.h"
#include "memstats.h"
#include "namei.h"
#include "ntfsd.pb-c.h"
#include "page.h"
#include "utimes.h"
#include "server.h"
#include "writeback.h"

#define RA_MIN_PAGES 32u    /* 128 KiB */
#define RA_MAX_PAGES 512u   /* 2 MiB */
#define MAX_FAULT_PAGES (1u << 18)   /* 1 GiB per request */

struct work {
	uv_work_t req;
	struct conn *cn;
	Ntfsd__Request *rq;
	void (*run)(struct work *w);
	void (*done)(struct work *w);
	struct handle *h;
	/* reply under construction */
	int err;
	char msg[512];
	Ntfsd__Reply reply;
	union {
		Ntfsd__HelloReply hello;
		Ntfsd__OpenReply open;
		Ntfsd__FaultInReply fault_in;
		Ntfsd__StatReply stat;
		Ntfsd__ListDirReply list_dir;
		Ntfsd__VolumeStatusReply status;
		Ntfsd__PrepareWriteReply prepare_write;
	} body;
	Ntfsd__SegmentSize segment;   /* in fault-in and prepare-write replies */
	int fds[2];
	int nfds;
	struct cache_inode *ci;       /* open: the inode opened */
	uint64_t ra_first, ra_count;  /* fault-in: readahead to start after the reply */
	void *scratch;                /* freed after sending */
	void (*free_scratch)(struct work *w);
};

/* ---- helpers ---- */

__attribute__((format(printf, 3, 4))) static void work_fail(struct work *w, int err,
							    const char *fmt, ...)
{
	va_list ap;

	w->err = err;
	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
}

/* The message of a failure neg (-errno) of the cache: its own, or strerror. */
static const char *error_message(int neg)
{
	const char *m = cache_last_error();

	return m ? m : strerror(-neg);
}

/* An on-disk layer error: errno from it, message from cache_last_error(). */
static void work_fail_ntfs(struct work *w, int neg, const char *what)
{
	/* the message was cleared when this request started (work_run), so it
	 * is this request's or none: never one left by an earlier request,
	 * perhaps another client's, on the same thread */
	const char *msg = neg == -ENOMEM ? "out of memory"
			  : error_message(neg);

	if (!strncmp(msg, what, strlen(what)))
		work_fail(w, -neg, "%s", msg);  /* it names the path already */
	else
		work_fail(w, -neg, "%s: %s", what, msg);
}

static void send_reply(struct conn *cn, Ntfsd__Reply *r, const int *fds, int nfds)
{
	size_t len = ntfsd__reply__get_packed_size(r);
	uint8_t *buf = malloc(len ? len : 1);
	int i;

	if (!buf) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		conn_shutdown(cn, "out of memory");
		return;
	}
	ntfsd__reply__pack(r, buf);
	if (conn_send(cn, buf, len ? len : 1, fds, nfds) == -ENOMEM)
		conn_shutdown(cn, "out of memory");
	free(buf);
}

void dispatch_send_error(struct conn *cn, uint64_t id, int err, const char *msg)
{
	Ntfsd__Reply r = NTFSD__REPLY__INIT;

	r.id = id;
	r.error = err;
	r.message = (char *)msg;
	send_reply(cn, &r, NULL, 0);
}

/* A new fd for a memfd with only the access a client may have. */
static int reopen_fd(int fd, bool writable)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
}

static struct handle *handle_find(struct conn *cn, uint64_t id)
{
	struct handle *h;

	for (h = cn->handles; h && h->id != id; h = h->next)
		;
	return h;
}

/* The handle's pin counts cover pages [0, end) (its file's segments may
 * have grown since it opened; only its connection's one request at a time
 * touches them). */
static bool handle_pins_cover(struct handle *h, uint64_t end)
{
	uint64_t n = cache_nr_pages(h->ci);
	uint32_t *p;

	if (end <= h->nr_pins)
		return true;
	if (n < end)
		n = end;
	/* calloc, not realloc and memset: a segment is sparse and so are the
	 * counts, only the pages pinned are ever touched */
	p = calloc(n, sizeof(*p));
	if (!p)
		return false;
	if (h->nr_pins)
		memcpy(p, h->pins, h->nr_pins * sizeof(*p));
	free(h->pins);
	h->pins = p;
	h->nr_pins = n;
	return true;
}

/* The segments' size, for a reply a client may need to map more after. */
static Ntfsd__SegmentSize *segment_size(struct work *w, struct cache_inode *ci)
{
	struct cache_geom *g = cache_geom(ci);

	ntfsd__segment_size__init(&w->segment);
	w->segment.nr_pages = g->nr_pages;
	w->segment.data_segment_size = g->data_size;
	return &w->segment;
}

static void handle_release(struct conn *cn, struct handle *h)
{
	struct cache_inode *ci = h->ci;
	uint64_t i;

	for (i = 0; i < cache_used_pages(ci); i++) {
		if (i < h->nr_pins && h->pins[i]) {
			cache_unpin_page(ci, i, h->pins[i]);
			h->pins[i] = 0;
		}
		/* a lock the client still held when it went away */
		if (cn->closing && h->writable &&
		    page_lock_owner(cache_page(ci, i)) == cn->lock_id &&
		    unlock_page_if_owner(cache_page(ci, i), cn->lock_id))
			log_warning("client pid %d died holding the lock of page %llu of MFT "
				    "record %llu: released", (int)cn->pid,
				    (unsigned long long)i, (unsigned long long)ci->mft_no);
	}
	if (h->writable)
		cache_holder_writer(cn->srv->cache, cn->lock_id, ci, -1);
	free(h->pins);
	cache_close(ci);
	free(h);
}

void dispatch_release_conn(struct conn *cn)
{
	struct handle *h;

	while ((h = cn->handles)) {
		cn->handles = h->next;
		handle_release(cn, h);
	}
}

/* ---- the thread-pool side ---- */

static void work_run(uv_work_t *req)
{
	struct work *w = req->data;

	cache_clear_error();
	w->run(w);
}

/* Background readahead: holds a reference on the inode, answers nobody. */
struct readahead {
	uv_work_t req;
	struct cache_inode *ci;
	uint64_t first, count;
};

static void readahead_run(uv_work_t *req)
{
	struct readahead *ra = req->data;
	int err = cache_fault_in(ra->ci, ra->first, ra->count);

	if (err)
		log_debug("readahead of pages %llu+%llu of MFT record %llu: %s",
			  (unsigned long long)ra->first, (unsigned long long)ra->count,
			  (unsigned long long)ra->ci->mft_no, error_message(err));
}

static void readahead_done(uv_work_t *req, int status)
{
	struct readahead *ra = req->data;

	(void)status;
	cache_inode_put(ra->ci);
	free(ra);
}

static void readahead_start(struct server *srv, struct cache_inode *ci, uint64_t first,
			    uint64_t count)
{
	struct readahead *ra = calloc(1, sizeof(*ra));

	if (!ra)
		return;  /* readahead is only a hint */
	cache_inode_get(ci);
	ra->ci = ci;
	ra->first = first;
	ra->count = count;
	ra->req.data = ra;
	if (uv_queue_work(srv->loop, &ra->req, readahead_run, readahead_done)) {
		cache_inode_put(ci);
		free(ra);
	}
}

static void work_finish(struct work *w)
{
	struct conn *cn = w->cn;

	if (w->ra_count && !w->err && !cn->closing && !cn->srv->stopping)
		readahead_start(cn->srv, w->h->ci, w->ra_first, w->ra_count);

	if (w->done)
		w->done(w);
	if (!cn->closing) {
		if (w->err) {
			int i;

			for (i = 0; i < w->nfds; i++)
				close(w->fds[i]);
			dispatch_send_error(cn, w->rq->id, w->err, w->msg);
		} else {
			w->reply.id = w->rq->id;
			send_reply(cn, &w->reply, w->fds, w->nfds);
		}
	} else {
		int i;

		for (i = 0; i < w->nfds; i++)
			close(w->fds[i]);
		if (w->ci)
			cache_close(w->ci);  /* opened for a client that is gone */
	}
	if (w->free_scratch)
		w->free_scratch(w);
	ntfsd__request__free_unpacked(w->rq, NULL);
	free(w);
	conn_request_done(cn);
}

static void work_after(uv_work_t *req, int status)
{
	struct work *w = req->data;

	if (status == UV_ECANCELED)
		work_fail(w, ECANCELED, "request cancelled: the daemon is shutting down");
	work_finish(w);
}

static void work_queue(struct work *w)
{
	w->req.data = w;
	w->cn->busy = true;
	if (uv_queue_work(w->cn->srv->loop, &w->req, work_run, work_after)) {
		work_fail(w, ENOMEM, "cannot queue the request");
		work_finish(w);
	}
}

/* ---- hello ---- */

static void do_hello(struct work *w)
{
	struct server *srv = w->cn->srv;
	Ntfsd__Hello *in = w->rq->hello;

	if (in->protocol_version != NTFSD_PROTOCOL_VERSION) {
		work_fail(w, EPROTONOSUPPORT, "protocol version %u is not supported (this ntfsd "
			  "speaks %u)", in->protocol_version, NTFSD_PROTOCOL_VERSION);
		return;
	}
	w->fds[0] = reopen_fd(srv->cache->header_fd, false);
	if (w->fds[0] < 0) {
		work_fail(w, errno, "cannot share the volume header: %s", strerror(errno));
		return;
	}
	w->nfds = 1;
	{
		int tfd, err = cache_holder_lock_table(srv->cache, w->cn->lock_id, &tfd);

		if (!err && tfd >= 0 && (w->fds[1] = fcntl(tfd, F_DUPFD_CLOEXEC, 0)) < 0)
			err = -errno;
		if (err) {
			work_fail(w, -err, "cannot make this connection's lock table: %s",
				  strerror(-err));
			return;
		}
		if (tfd >= 0)
			w->nfds = 2;
	}
	ntfsd__hello_reply__init(&w->body.hello);
	w->body.hello.protocol_version = NTFSD_PROTOCOL_VERSION;
	w->body.hello.layout_version = NTFSD_SHM_LAYOUT_VERSION;
	w->body.hello.volume = (char *)srv->volume_path;
	w->body.hello.read_only = srv->read_only;
	w->body.hello.lock_owner = w->cn->lock_id;
	w->reply.body_case = NTFSD__REPLY__BODY_HELLO;
	w->reply.hello = &w->body.hello;
	w->cn->hello_done = true;
	log_debug("client pid %d: hello from \"%s\"", (int)w->cn->pid, in->client_name);
}

/* ---- open / close ---- */

/* An open the connection has no room for: EMFILE, as open(2) past
 * RLIMIT_NOFILE; logged once per connection, as a client that ignores
 * the refusal could repeat it without end.  True when refused. */
static bool open_over_limit(struct work *w)
{
	struct conn *cn = w->cn, *o;
	unsigned max = cn->srv->limits->conn_handles, uid_max = cn->srv->limits->uid_handles;
	unsigned uid_handles = 0;

	/* one user over all its connections: it must not take every inode
	 * slot (or descriptor) of the daemon from the others */
	for (o = cn->srv->conns; o; o = o->next)
		if (o->uid == cn->uid)
			uid_handles += o->nr_handles;
	if (uid_handles >= uid_max) {
		if (!cn->handles_warned) {
			log_warning("client pid %d uid %u: over the max-uid-handles limit of %u (an "
				    "open of %s with %u handles open by uid %u): refused with "
				    "EMFILE", (int)cn->pid, (unsigned)cn->uid, uid_max,
				    w->rq->open->path, uid_handles, (unsigned)cn->uid);
			cn->handles_warned = true;
		}
		work_fail(w, EMFILE, "%s: user %u already has %u files open, this daemon's "
			  "max-uid-handles limit", w->rq->open->path, (unsigned)cn->uid,
			  uid_handles);
		return true;
	}
	if (cn->nr_handles < max)
		return false;
	if (!cn->handles_warned) {
		log_warning("client pid %d uid %u: over the max-conn-handles limit of %u (an open "
			    "of %s with %u handles open): refused with EMFILE", (int)cn->pid,
			    (unsigned)cn->uid, max, w->rq->open->path, cn->nr_handles);
		cn->handles_warned = true;
	}
	work_fail(w, EMFILE, "%s: this connection already has %u files open, this daemon's "
		  "max-conn-handles limit", w->rq->open->path, cn->nr_handles);
	return true;
}

static void run_open(struct work *w)
{
	Ntfsd__OpenRequest *in = w->rq->open;
	struct cache_inode *ci;
	bool created = false;
	int err;

	err = in->create ? cache_open_create(w->cn->srv->cache, in->path, in->excl, &ci, &created)
			 : cache_open(w->cn->srv->cache, in->path, &ci);
	if (err) {
		work_fail_ntfs(w, err, in->path);
		return;
	}
	w->ci = ci;
	if (in->write && ci->system_file) {
		/* a writable segment of $MFT or $Boot would let a client
		 * rewrite the metadata of every file */
		w->ci = NULL;
		cache_close(ci);
		work_fail(w, EPERM, "%s: a system file (NTFS metadata) opens read-only only", in->path);
		return;
	}
	if (in->trunc && !created && (err = cache_truncate(ci, 0))) {
		w->ci = NULL;
		cache_close(ci);
		work_fail_ntfs(w, err, in->path);
		return;
	}
	/* Writers store into the data segment directly; readers cannot. */
	w->fds[0] = reopen_fd(ci->data_fd, in->write);
	w->fds[1] = w->fds[0] < 0 ? -1 : reopen_fd(ci->state_fd, in->write);
	if (w->fds[0] < 0 || w->fds[1] < 0) {
		work_fail(w, errno, "%s: cannot share its segments: %s", in->path, strerror(errno));
		if (w->fds[0] >= 0)
			close(w->fds[0]);
		w->ci = NULL;
		cache_close(ci);    /* done_open takes no reference on a failure */
		return;
	}
	w->nfds = 2;
}

static void done_open(struct work *w)
{
	struct conn *cn = w->cn;
	struct handle *h;

	if (w->err || cn->closing)
		return;
	h = calloc(1, sizeof(*h));
	if (h)
		h->ci = w->ci;
	if (!h || !handle_pins_cover(h, 1)) {
		if (h)
			free(h);
		cache_close(w->ci);
		w->ci = NULL;
		work_fail(w, ENOMEM, "%s: out of memory", w->rq->open->path);
		return;
	}
	h->id = cn->srv->next_handle++;
	h->ci = w->ci;
	h->errseq = errseq_sample(w->ci);
	h->writable = w->rq->open->write;
	if (h->writable)
		cache_holder_writer(cn->srv->cache, cn->lock_id, w->ci, 1);
	h->next = cn->handles;
	cn->handles = h;
	cn->nr_handles++;
	w->ci = NULL;
	ntfsd__open_reply__init(&w->body.open);
	w->body.open.handle = h->id;
	w->body.open.inode_slot = h->ci->slot;
	w->body.open.mft_no = h->ci->mft_no;
	w->body.open.nr_pages = cache_geom(h->ci)->nr_pages;
	w->body.open.data_segment_size = cache_geom(h->ci)->data_size;
	w->body.open.max_pages = h->ci->max_pages;
	w->body.open.writable = h->writable;
	w->reply.body_case = NTFSD__REPLY__BODY_OPEN;
	w->reply.open = &w->body.open;
	log_debug("client pid %d: opened %s (MFT record %llu) %s as handle %llu", (int)cn->pid,
		  w->rq->open->path, (unsigned long long)h->ci->mft_no,
		  h->writable ? "read-write" : "read-only", (unsigned long long)h->id);
}

static void do_close(struct work *w)
{
	struct conn *cn = w->cn;
	struct handle **pp, *h;

	for (pp = &cn->handles; *pp && (*pp)->id != w->rq->close->handle; pp = &(*pp)->next)
		;
	if (!*pp) {
		work_fail(w, EBADF, "close: no open handle %llu",
			  (unsigned long long)w->rq->close->handle);
		return;
	}
	h = *pp;
	*pp = h->next;
	cn->nr_handles--;
	handle_release(cn, h);
}

/* ---- fault-in / unpin ---- */

static void run_fault_in(struct work *w)
{
	Ntfsd__FaultInRequest *in = w->rq->fault_in;
	struct handle *h = w->h;
	struct cache_inode *ci = h->ci;
	uint64_t end = cache_pages_for(ci->i_size), first = in->first_page, count = in->nr_pages;
	uint64_t ra_end, i;
	int err;

	if (in->lock_check) {
		/* the daemon's own lock judges the holder (page_lock.h); a
		 * lock the client says is forged in its own name goes first */
		if (in->not_mine && first < cache_used_pages(ci) && w->h->writable)
			cache_break_lock_of(ci, first, w->cn->lock_id);
		if (first < cache_used_pages(ci)) {
			cache_lock_page(ci, first);
			cache_unlock_page(ci, first);
		}
		ntfsd__fault_in_reply__init(&w->body.fault_in);
		w->reply.body_case = NTFSD__REPLY__BODY_FAULT_IN;
		w->reply.fault_in = &w->body.fault_in;
		return;
	}
	if (first >= end) {
		count = 0;
	} else if (count > end - first) {
		count = end - first;
	}
	if (in->pin && !handle_pins_cover(h, first + count)) {
		work_fail(w, ENOMEM, "fault-in: out of memory for the pin counts of %llu pages",
			  (unsigned long long)(first + count));
		return;
	}
	if (in->pin)
		for (i = first; i < first + count; i++) {
			h->pins[i]++;
			cache_pin_page(ci, i, 1);
		}
	err = count ? cache_fault_in(ci, first, count) : 0;
	if (err) {
		if (in->pin)
			for (i = first; i < first + count; i++) {
				h->pins[i]--;
				cache_unpin_page(ci, i, 1);
			}
		work_fail_ntfs(w, err, "fault-in");
		return;
	}
	/* Readahead: a reader asking for a page between the end of its last
	 * request and the end of the readahead that followed it is sequential;
	 * after the reply goes out, read a growing window beyond what it asked
	 * for in the background, so the disk works while the client copies. */
	if (count && first >= h->ra_next && first <= h->ra_end) {
		h->ra_window = h->ra_window ? h->ra_window * 2 : RA_MIN_PAGES;
		if (h->ra_window > RA_MAX_PAGES)
			h->ra_window = RA_MAX_PAGES;
		ra_end = first + count + h->ra_window;
		if (ra_end > end)
			ra_end = end;
		if (first + count < ra_end) {
			w->ra_first = first + count;
			w->ra_count = ra_end - w->ra_first;
		}
		h->ra_end = ra_end;
	} else if (count) {
		h->ra_window = 0;
		h->ra_end = first + count;
	}
	if (count)
		h->ra_next = first + count;
	ntfsd__fault_in_reply__init(&w->body.fault_in);
	w->body.fault_in.nr_pages = count;
	w->body.fault_in.segment = segment_size(w, ci);
	w->reply.body_case = NTFSD__REPLY__BODY_FAULT_IN;
	w->reply.fault_in = &w->body.fault_in;
}

static void do_unpin(struct work *w)
{
	Ntfsd__UnpinRequest *in = w->rq->unpin;
	struct handle *h = w->h;
	uint64_t i, end;

	end = in->first_page + in->nr_pages;
	if (end < in->first_page || end > h->nr_pins)
		end = h->nr_pins;
	for (i = in->first_page; i < end; i++)
		if (h->pins[i]) {
			h->pins[i]--;
			cache_unpin_page(h->ci, i, 1);
		}
}

/* ---- stat ---- */

static void fill_stat(Ntfsd__StatReply *s, const struct cache_stat *st)
{
	ntfsd__stat_reply__init(s);
	s->mft_no = st->mft_no;
	s->attributes = st->attributes;
	s->directory = st->directory;
	s->link_count = st->link_count;
	if (st->has_data) {
		s->size = st->size;
		s->initialized_size = st->initialized_size;
		s->allocated_size = st->allocated_size;
		s->resident = st->resident;
		s->compressed = st->compressed;
		s->sparse = st->sparse;
		s->encrypted = st->encrypted;
	}
	s->ondisk_known = st->ondisk_known;
	s->ondisk_size = st->ondisk_size;
	s->ondisk_initialized_size = st->ondisk_initialized_size;
	s->ondisk_allocated_size = st->ondisk_allocated_size;
	s->times_known = st->times_known;
	s->creation_time_ns = st->creation_ns;
	s->mtime_ns = st->mtime_ns;
	s->ctime_ns = st->ctime_ns;
	s->atime_ns = st->atime_ns;
}

static void reply_stat(struct work *w, struct cache *c, const struct cache_stat *st)
{
	fill_stat(&w->body.stat, st);
	cache_count_pages(c, st->mft_no, &w->body.stat.cached_pages, &w->body.stat.dirty_pages,
			  &w->body.stat.writeback_pages);
	w->reply.body_case = NTFSD__REPLY__BODY_STAT;
	w->reply.stat = &w->body.stat;
}

static void run_stat_path(struct work *w)
{
	const char *path = w->rq->stat->path;
	struct cache_stat st;
	int err = cache_stat_path(w->cn->srv->cache, path, &st);

	if (err) {
		work_fail_ntfs(w, err, path);
		return;
	}
	reply_stat(w, w->cn->srv->cache, &st);
}

static void run_stat_handle(struct work *w)
{
	struct cache_stat st;

	cache_stat_inode(w->h->ci, &st);
	reply_stat(w, w->h->ci->cache, &st);
}

/* ---- list ---- */

struct list_scratch {
	Ntfsd__DirEntry *entries;
	Ntfsd__DirEntry **ptrs;
	size_t count, cap;
};

static void free_list(struct work *w)
{
	struct list_scratch *ls = w->scratch;
	size_t i;

	if (!ls)
		return;
	for (i = 0; i < ls->count; i++)
		free(ls->entries[i].name);
	free(ls->entries);
	free(ls->ptrs);
	free(ls);
}

static int list_one(void *ctx, const struct cache_dirent *de)
{
	struct list_scratch *ls = ctx;
	Ntfsd__DirEntry *e;
	char *name = strdup(de->name);

	if (!name)
		return -ENOMEM;
	if (ls->count == ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 64;
		Ntfsd__DirEntry *n = realloc(ls->entries, cap * sizeof(*n));

		if (!n) {
			free(name);
			return -ENOMEM;
		}
		ls->entries = n;
		ls->cap = cap;
	}
	e = &ls->entries[ls->count++];
	ntfsd__dir_entry__init(e);
	e->name = name;
	e->mft_no = de->mft_no;
	e->name_type = de->name_type;
	e->directory = de->directory;
	return 0;
}

static void run_list_dir(struct work *w)
{
	const char *path = w->rq->list_dir->path;
	struct list_scratch *ls = calloc(1, sizeof(*ls));
	size_t i;
	int err;

	if (!ls) {
		work_fail(w, ENOMEM, "%s: out of memory", path);
		return;
	}
	w->scratch = ls;
	w->free_scratch = free_list;
	err = cache_readdir(w->cn->srv->cache, path, list_one, ls);
	if (err) {
		work_fail_ntfs(w, err, path);
		return;
	}
	ls->ptrs = malloc((ls->count ? ls->count : 1) * sizeof(*ls->ptrs));
	if (!ls->ptrs) {
		work_fail(w, ENOMEM, "%s: out of memory", path);
		return;
	}
	for (i = 0; i < ls->count; i++)
		ls->ptrs[i] = &ls->entries[i];
	ntfsd__list_dir_reply__init(&w->body.list_dir);
	w->body.list_dir.n_entries = ls->count;
	w->body.list_dir.entries = ls->ptrs;
	w->reply.body_case = NTFSD__REPLY__BODY_LIST_DIR;
	w->reply.list_dir = &w->body.list_dir;
}

/* ---- volume status ---- */

static void free_status(struct work *w)
{
	Ntfsd__ClientInfo **ptrs = w->scratch;

	if (ptrs)
		free(ptrs[0]);
	free(ptrs);
}

static void do_volume_status(struct work *w)
{
	struct server *srv = w->cn->srv;
	struct shm_counters *k = &srv->cache->header->counters;
	Ntfsd__VolumeStatusReply *s = &w->body.status;
	Ntfsd__ClientInfo *infos, **ptrs;
	struct conn *cn;
	struct memstats ms;
	struct cache_volume_info vi;
	size_t n = 0, i = 0;

	for (cn = srv->conns; cn; cn = cn->next)
		n++;
	infos = calloc(n ? n : 1, sizeof(*infos));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!infos || !ptrs) {
		free(infos);
		free(ptrs);
		work_fail(w, ENOMEM, "status: out of memory");
		return;
	}
	ptrs[0] = infos;
	w->scratch = ptrs;
	w->free_scratch = free_status;
	for (cn = srv->conns; cn; cn = cn->next, i++) {
		ntfsd__client_info__init(&infos[i]);
		infos[i].pid = (uint32_t)cn->pid;
		infos[i].uid = cn->uid;
		infos[i].gid = cn->gid;
		infos[i].open_files = cn->nr_handles;
		ptrs[i] = &infos[i];
	}
	ntfsd__volume_status_reply__init(s);
	s->volume = (char *)srv->volume_path;
	cache_volume_info(srv->cache, &vi);
	s->label = (char *)vi.label;
	s->ntfs_major = vi.major_ver;
	s->ntfs_minor = vi.minor_ver;
	s->read_only = srv->read_only;
	s->cluster_size = vi.cluster_size;
	s->volume_size = vi.size;
	s->free_bytes = vi.free_bytes;
	s->growth_room_bytes = vi.growth_room_bytes;
	s->cache_limit = atomic_load(&k->cache_limit);
	s->cached_pages = atomic_load(&k->cached_pages);
	s->cache_used = s->cached_pages << NTFSD_PAGE_SHIFT;
	s->dirty_pages = flusher_count_dirty(srv->cache);
	s->writeback_pages = atomic_load(&k->writeback_pages);
	s->open_files = atomic_load(&k->open_files);
	s->pages_read = atomic_load(&k->pages_read);
	s->pages_reclaimed = atomic_load(&k->pages_reclaimed);
	s->dirty_limit = atomic_load(&srv->cache->header->dirty_limit);
	s->dirty_background = atomic_load(&srv->cache->header->dirty_background);
	s->pages_written = atomic_load(&srv->cache->pages_written);
	s->write_errors = atomic_load(&srv->cache->wb_errors);
	s->io_engine = (char *)(srv->cache->io ? io_engine_name(srv->cache->io) : "none");
	s->flushers = srv->nr_flushers;
	memstats_read(&ms);
	s->allocator = (char *)ms.allocator;
	s->allocator_stats = ms.available;
	s->allocator_allocated = ms.allocated;
	s->allocator_resident = ms.resident;
	s->n_clients = n;
	s->clients = n ? ptrs : NULL;
	w->reply.body_case = NTFSD__REPLY__BODY_VOLUME_STATUS;
	w->reply.volume_status = &w->body.status;
}

/* ---- writing ---- */

static void run_prepare_write(struct work *w)
{
	Ntfsd__PrepareWriteRequest *in = w->rq->prepare_write;
	struct cache_inode *ci = w->h->ci;
	int err = cache_prepare_write(ci, in->first_page, in->nr_pages, in->new_size,
				      in->write_start, in->write_end);

	if (err) {
		work_fail(w, -err, "%s", error_message(err));
		return;
	}
	ntfsd__prepare_write_reply__init(&w->body.prepare_write);
	w->body.prepare_write.i_size = ci->i_size;
	w->body.prepare_write.segment = segment_size(w, ci);
	w->reply.body_case = NTFSD__REPLY__BODY_PREPARE_WRITE;
	w->reply.prepare_write = &w->body.prepare_write;
}

static void run_unlink(struct work *w)
{
	Ntfsd__UnlinkRequest *in = w->rq->unlink;
	int err = cache_unlink(w->cn->srv->cache, in->path, in->directory);

	if (err)
		work_fail_ntfs(w, err, in->path);
}

static void run_mkdir(struct work *w)
{
	int err = cache_mkdir(w->cn->srv->cache, w->rq->mkdir->path);

	if (err)
		work_fail_ntfs(w, err, w->rq->mkdir->path);
}

static void run_rename(struct work *w)
{
	Ntfsd__RenameRequest *in = w->rq->rename;
	int err = cache_rename(w->cn->srv->cache, in->from, in->to);

	if (err)
		work_fail_ntfs(w, err, in->from);
}

static void times_request(const Ntfsd__SetTimesRequest *in, struct cache_times *t)
{
	*t = (struct cache_times){ .set_atime = in->set_atime, .atime_ns = in->atime_ns,
				   .set_mtime = in->set_mtime, .mtime_ns = in->mtime_ns };
}

/* An inode cached: its dirty data written back first, so that it moves
 * the times before they are set (cache/utimes.h). */
static int set_times_cached(struct cache_inode *ci, const struct cache_times *t)
{
	writeback_inode(ci, true);
	return cache_set_times_inode(ci, t);
}

static void run_set_times(struct work *w)
{
	Ntfsd__SetTimesRequest *in = w->rq->set_times;
	struct cache *c = w->cn->srv->cache;
	struct cache_times t;
	uint64_t ino = 0;
	int err = -EAGAIN;

	times_request(in, &t);
	if (w->h) {
		err = set_times_cached(w->h->ci, &t);
		ino = w->h->ci->mft_no;
	}
	/* by path: the inode cached or not, and it may become cached (or be
	 * forgotten) between the two looks: a few tries */
	for (int tries = 0; !w->h && err == -EAGAIN && tries < 8; tries++) {
		struct cache_inode *ci = cache_find_cached(c, in->path);

		if (ci) {
			ino = ci->mft_no;
			err = set_times_cached(ci, &t);
			cache_inode_put(ci);
		} else {
			err = cache_set_times_path(c, in->path, &t, &ino);
		}
	}
	if (err == -EAGAIN) {
		work_fail(w, EAGAIN, "%s: opened and closed too fast to set its times: try again",
			  in->path);
		return;
	}
	if (err) {
		work_fail_ntfs(w, err, w->h ? "set-times" : in->path);
		return;
	}
	cache_sync_dir_copies(c, ino);
}

static void run_truncate(struct work *w)
{
	int err = cache_truncate(w->h->ci, w->rq->truncate->size);

	if (err)
		work_fail(w, -err, "%s", error_message(err));
}

/* Unseen errors of every cached inode (for a volume-wide sync). */
static int check_all_errors(struct conn *cn)
{
	struct cache *c = cn->srv->cache;
	struct cache_inode *ci;
	struct handle *h;
	int err = 0, e;

	for (h = cn->handles; h; h = h->next) {
		e = errseq_check_and_advance(h->ci, &h->errseq);
		if (e && !err)
			err = e;
	}
	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci; ci = ci->next) {
		uint32_t since = errseq_sample(ci);  /* sees only what nobody has */

		e = errseq_check_and_advance(ci, &since);
		if (e && !err)
			err = e;
	}
	cache_mutex_unlock(&c->lock);
	return err;
}

static void run_sync(struct work *w)
{
	struct server *srv = w->cn->srv;
	int err;

	if (w->h) {
		writeback_inode(w->h->ci, true);
		/* the handle keeps the inode: no reference for an unlink to wait on */
		if (cache_take_dir_copies(w->h->ci))
			cache_sync_dir_copies(srv->cache, w->h->ci->mft_no);
		err = errseq_check_and_advance(w->h->ci, &w->h->errseq);
		if (err)
			work_fail(w, -err, "MFT record %llu: a write-back failed: %s",
				  (unsigned long long)w->h->ci->mft_no, strerror(-err));
		return;
	}
	flusher_sync_all(srv->cache);
	err = cache_flush_device(srv->cache);
	if (!err)
		err = check_all_errors(w->cn);
	if (err)
		work_fail(w, -err, "a write-back failed: %s", strerror(-err));
}

static void run_balance_dirty(struct work *w)
{
	if (w->cn->srv->flushers)  /* none on a read-only volume: nothing is dirty */
		flusher_balance_dirty(w->cn->srv->flushers);
}

/* ---- decoding and routing ---- */

static bool path_ok(struct work *w, const char *path)
{
	if (!path || path[0] != '/') {
		work_fail(w, EINVAL, "path \"%s\" is not absolute", path ? path : "");
		return false;
	}
	if (strlen(path) > 32767) {
		work_fail(w, ENAMETOOLONG, "path is longer than 32767 bytes");
		return false;
	}
	return true;
}

static bool need_handle(struct work *w, uint64_t id)
{
	w->h = handle_find(w->cn, id);
	if (!w->h)
		work_fail(w, EBADF, "no open handle %llu", (unsigned long long)id);
	return w->h != NULL;
}

/* The handle already found must be open for writing; err is what a
 * read-only one gets (EBADF like write(2), EINVAL like ftruncate(2)). */
static bool need_writable(struct work *w, int err)
{
	if (!w->h->writable)
		work_fail(w, err, "handle %llu was opened read-only", (unsigned long long)w->h->id);
	return w->h->writable;
}

/* A request naming a handle and a page count the daemon takes at once. */
static bool need_handle_pages(struct work *w, uint64_t id, uint64_t nr_pages, const char *what)
{
	if (!need_handle(w, id))
		return false;
	if (nr_pages > MAX_FAULT_PAGES) {
		work_fail(w, EINVAL, "%s of %llu pages: at most %u per request", what,
			  (unsigned long long)nr_pages, MAX_FAULT_PAGES);
		return false;
	}
	return true;
}

/* Route a decoded request; returns true when it went to the thread pool. */
static bool route(struct work *w)
{
	Ntfsd__Request *rq = w->rq;
	struct server *srv = w->cn->srv;

	if (rq->body_case != NTFSD__REQUEST__BODY_HELLO && !w->cn->hello_done) {
		work_fail(w, EPROTO, "the first request must be hello");
		return false;
	}
	switch (rq->body_case) {
	case NTFSD__REQUEST__BODY_HELLO:
		do_hello(w);
		return false;
	case NTFSD__REQUEST__BODY_OPEN:
		if (!path_ok(w, rq->open->path))
			return false;
		if (rq->open->write && srv->read_only) {
			work_fail(w, EROFS, "%s: the volume is served read-only", rq->open->path);
			return false;
		}
		if ((rq->open->create || rq->open->trunc) && !rq->open->write) {
			work_fail(w, EINVAL, "%s: O_CREAT and O_TRUNC need a file opened for "
				  "writing", rq->open->path);
			return false;
		}
		if (open_over_limit(w))
			return false;
		w->run = run_open;
		w->done = done_open;
		return true;
	case NTFSD__REQUEST__BODY_CLOSE:
		do_close(w);
		return false;
	case NTFSD__REQUEST__BODY_FAULT_IN:
		if (!need_handle_pages(w, rq->fault_in->handle, rq->fault_in->nr_pages, "fault-in"))
			return false;
		w->run = run_fault_in;
		return true;
	case NTFSD__REQUEST__BODY_UNPIN:
		if (need_handle(w, rq->unpin->handle))
			do_unpin(w);
		return false;
	case NTFSD__REQUEST__BODY_STAT:
		if (rq->stat->target_case == NTFSD__STAT_REQUEST__TARGET_HANDLE) {
			if (!need_handle(w, rq->stat->handle))
				return false;
			w->run = run_stat_handle;    /* the sizes' locks may wait on I/O */
			return true;
		}
		if (rq->stat->target_case != NTFSD__STAT_REQUEST__TARGET_PATH) {
			work_fail(w, EINVAL, "stat: neither a handle nor a path");
			return false;
		}
		if (!path_ok(w, rq->stat->path))
			return false;
		w->run = run_stat_path;
		return true;
	case NTFSD__REQUEST__BODY_LIST_DIR:
		if (!path_ok(w, rq->list_dir->path))
			return false;
		w->run = run_list_dir;
		return true;
	case NTFSD__REQUEST__BODY_VOLUME_STATUS:
		do_volume_status(w);
		return false;
	case NTFSD__REQUEST__BODY_PREPARE_WRITE:
		if (!need_handle_pages(w, rq->prepare_write->handle, rq->prepare_write->nr_pages,
				       "prepare-write") || !need_writable(w, EBADF))
			return false;
		w->run = run_prepare_write;
		return true;
	case NTFSD__REQUEST__BODY_SYNC:
		if (rq->sync->handle && !need_handle(w, rq->sync->handle))
			return false;
		w->run = run_sync;
		return true;
	case NTFSD__REQUEST__BODY_BALANCE_DIRTY:
		w->run = run_balance_dirty;
		return true;
	case NTFSD__REQUEST__BODY_TRUNCATE:
		if (!need_handle(w, rq->truncate->handle) || !need_writable(w, EINVAL))
			return false;
		w->run = run_truncate;
		return true;
	case NTFSD__REQUEST__BODY_UNLINK:
	case NTFSD__REQUEST__BODY_MKDIR: {
		const char *path = rq->body_case == NTFSD__REQUEST__BODY_UNLINK ? rq->unlink->path
										 : rq->mkdir->path;

		if (!path_ok(w, path))
			return false;
		if (srv->read_only) {
			work_fail(w, EROFS, "%s: the volume is served read-only", path);
			return false;
		}
		w->run = rq->body_case == NTFSD__REQUEST__BODY_UNLINK ? run_unlink : run_mkdir;
		return true;
	}
	case NTFSD__REQUEST__BODY_RENAME:
		if (!path_ok(w, rq->rename->from) || !path_ok(w, rq->rename->to))
			return false;
		if (srv->read_only) {
			work_fail(w, EROFS, "%s: the volume is served read-only", rq->rename->from);
			return false;
		}
		w->run = run_rename;
		return true;
	case NTFSD__REQUEST__BODY_SET_TIMES:
		if (rq->set_times->target_case == NTFSD__SET_TIMES_REQUEST__TARGET_HANDLE) {
			if (!need_handle(w, rq->set_times->handle) || !need_writable(w, EBADF))
				return false;
		} else if (rq->set_times->target_case != NTFSD__SET_TIMES_REQUEST__TARGET_PATH) {
			work_fail(w, EINVAL, "set-times: neither a handle nor a path");
			return false;
		} else if (!path_ok(w, rq->set_times->path)) {
			return false;
		}
		if (srv->read_only) {
			work_fail(w, EROFS, "set-times: the volume is served read-only");
			return false;
		}
		w->run = run_set_times;
		return true;
	default:
		work_fail(w, EOPNOTSUPP, "unknown or empty request");
		return false;
	}
}

void dispatch_request(struct conn *cn, const uint8_t *frame, size_t len)
{
	Ntfsd__Request *rq = ntfsd__request__unpack(NULL, len, frame);
	struct work *w;

	if (!rq) {
		dispatch_send_error(cn, 0, EBADMSG, "undecodable request frame");
		return;
	}
	/* A string holding a NUL byte decodes to a shorter C string, and the
	 * request would silently name something else: demand that the request
	 * re-encodes to exactly the bytes received. */
	if (ntfsd__request__get_packed_size(rq) != len) {
		dispatch_send_error(cn, rq->id, EINVAL, "request is not canonically encoded "
				    "(a string with a NUL byte, or duplicate fields)");
		ntfsd__request__free_unpacked(rq, NULL);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		dispatch_send_error(cn, rq->id, ENOMEM, "out of memory");
		ntfsd__request__free_unpacked(rq, NULL);
		return;
	}
	w->cn = cn;
	w->rq = rq;
	ntfsd__reply__init(&w->reply);
	if (route(w))
		work_queue(w);
	else {
		cn->busy = true;  /* work_finish ends it */
		work_finish(w);
	}
}
