/*
 * rawclient.c — see rawclient.h.
 */
#include "rawclient.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "segment.h"

static _Thread_local char last_msg[512];
static uint64_t next_id = 1;

const char *raw_last_message(void)
{
	return last_msg;
}

int raw_connect(const char *socket_path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), err;

	if (fd < 0)
		return -errno;
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path) >=
	    (int)sizeof(sa.sun_path)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	if (timeout_ms > 0) {
		struct timeval tv = { .tv_sec = timeout_ms / 1000,
				      .tv_usec = (timeout_ms % 1000) * 1000 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

int raw_send(int fd, const Ntfsd__Request *rq)
{
	size_t len = ntfsd__request__get_packed_size(rq);
	uint8_t *buf = malloc(len ? len : 1);
	int err;

	if (!buf)
		return -ENOMEM;
	ntfsd__request__pack(rq, buf);
	err = frame_send(fd, buf, len, NULL, 0);
	free(buf);
	return err;
}

/* One frame; its fds as raw_recv() hands them out. */
static int recv_frame(int fd, uint8_t **buf, size_t *len, int *fds, int max_fds, int *nfds)
{
	int got[NTFSD_MAX_FRAME_FDS], n = 0, k, err;

	if (nfds)
		*nfds = 0;
	err = frame_recv(fd, buf, len, got, NTFSD_MAX_FRAME_FDS, &n);
	if (err)
		return err;
	for (k = 0; k < n; k++) {
		if (fds && nfds && k < max_fds)
			fds[(*nfds)++] = got[k];
		else
			close(got[k]);
	}
	return 0;
}

static void close_fds(int *fds, int n)
{
	for (int k = 0; k < n; k++)
		close(fds[k]);
}

Ntfsd__Reply *raw_recv(int fd, int *fds, int max_fds, int *nfds)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int n = 0, err = recv_frame(fd, &buf, &len, fds, max_fds, &n);
	Ntfsd__Reply *r;

	if (nfds)
		*nfds = n;
	if (err) {
		errno = err == -EWOULDBLOCK ? EAGAIN : -err;
		return NULL;
	}
	r = ntfsd__reply__unpack(NULL, len, buf);
	free(buf);
	if (!r) {
		if (fds)
			close_fds(fds, n);
		if (nfds)
			*nfds = 0;
		errno = EBADMSG;
	}
	return r;
}

Ntfsd__Reply *raw_call(int fd, Ntfsd__Request *rq, int *fds, int max_fds, int *nfds)
{
	Ntfsd__Reply *r;
	int err;

	rq->id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
	if (nfds)
		*nfds = 0;
	err = raw_send(fd, rq);
	if (err) {
		errno = -err;
		return NULL;
	}
	r = raw_recv(fd, fds, max_fds, nfds);
	if (r && r->id != rq->id) {
		ntfsd__reply__free_unpacked(r, NULL);
		if (fds && nfds)
			close_fds(fds, *nfds);
		if (nfds)
			*nfds = 0;
		errno = EPROTO;
		return NULL;
	}
	return r;
}

/* A refusal: keep its message, return -errno. */
static int refused(const Ntfsd__Reply *r)
{
	snprintf(last_msg, sizeof(last_msg), "%s", r->message ? r->message : "");
	return -(r->error > 0 ? r->error : EPROTO);
}

/* A request without a reply body worth keeping: 0 or -errno. */
static int call_simple(int fd, Ntfsd__Request *rq)
{
	Ntfsd__Reply *r;
	int err;

	last_msg[0] = '\0';
	r = raw_call(fd, rq, NULL, 0, NULL);
	if (!r)
		return -errno;
	err = r->error ? refused(r) : 0;
	ntfsd__reply__free_unpacked(r, NULL);
	return err;
}

/* ---- protobuf wire format, for fields this build's generated code may
 * not know yet ---- */

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 64) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
		shift += 7;
	}
	return false;
}

/* Find field `field` in a message: its varint value (wire type 0) or its
 * bytes (wire type 2).  False if absent or undecodable. */
static bool wire_find(const uint8_t *p, const uint8_t *end, uint32_t field, unsigned type,
		      uint64_t *v, const uint8_t **bytes, size_t *blen)
{
	while (p < end) {
		uint64_t key, val, skip;

		if (!wire_varint(&p, end, &key))
			return false;
		switch (key & 7) {
		case 0:
			if (!wire_varint(&p, end, &val))
				return false;
			if ((key >> 3) == field && type == 0) {
				*v = val;
				return true;
			}
			break;
		case 1:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 2:
			if (!wire_varint(&p, end, &skip) || skip > (uint64_t)(end - p))
				return false;
			if ((key >> 3) == field && type == 2) {
				*bytes = p;
				*blen = (size_t)skip;
				return true;
			}
			p += skip;
			break;
		case 5:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		default:
			return false;
		}
	}
	return false;
}

/* Reply.hello (field 4) -> HelloReply.lock_owner (field 5); 0 if absent. */
static uint32_t wire_lock_owner(const uint8_t *buf, size_t len)
{
	const uint8_t *hello;
	size_t hlen;
	uint64_t v;

	if (!wire_find(buf, buf + len, 4, 2, NULL, &hello, &hlen))
		return 0;
	if (!wire_find(hello, hello + hlen, 5, 0, &v, NULL, NULL))
		return 0;
	return (uint32_t)v;
}

int raw_hello(int fd, const char *client_name, struct raw_hello_info *info)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__Hello h = NTFSD__HELLO__INIT;
	Ntfsd__Reply *r;
	uint8_t *buf = NULL;
	size_t len = 0;
	int fds[2], nfds = 0, err;

	last_msg[0] = '\0';
	if (info) {
		memset(info, 0, sizeof(*info));
		info->header_fd = info->lock_table_fd = -1;
	}
	h.protocol_version = NTFSD_PROTOCOL_VERSION;
	h.client_name = (char *)(client_name ? client_name : "rawclient");
	rq.id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
	rq.body_case = NTFSD__REQUEST__BODY_HELLO;
	rq.hello = &h;
	err = raw_send(fd, &rq);
	if (err)
		return err;
	err = recv_frame(fd, &buf, &len, fds, 2, &nfds);
	if (err)
		return err == -EWOULDBLOCK ? -EAGAIN : err;
	r = ntfsd__reply__unpack(NULL, len, buf);
	if (!r) {
		err = -EBADMSG;
	} else if (r->error) {
		err = refused(r);
	} else if (r->id != rq.id || r->body_case != NTFSD__REPLY__BODY_HELLO) {
		err = -EPROTO;
	} else if (info) {
		info->protocol_version = r->hello->protocol_version;
		info->layout_version = r->hello->layout_version;
		info->read_only = r->hello->read_only;
		info->lock_owner = wire_lock_owner(buf, len);
		if (nfds == 2) {
			void *p = mmap(NULL, sizeof(struct shm_lock_table), PROT_READ | PROT_WRITE,
				       MAP_SHARED, fds[1], 0);

			info->lock_table_fd = fds[1];
			info->locks = p == MAP_FAILED ? NULL : p;
			nfds = 1;
		}
		if (nfds) {
			info->header_fd = fds[0];
			nfds = 0;
		}
	}
	if (r)
		ntfsd__reply__free_unpacked(r, NULL);
	free(buf);
	close_fds(fds, nfds);
	return err;
}

int raw_lock_claim(const struct raw_hello_info *info, uint32_t slot, uint64_t page)
{
	if (!info || !info->locks)
		return -1;
	for (int i = 0; i < (int)NTFSD_LOCK_TABLE_ENTRIES; i++) {
		uint64_t z = 0;

		if (atomic_compare_exchange_strong(&info->locks->entry[i], &z,
						   ntfsd_lock_key(slot, page) | NTFSD_LOCK_HELD))
			return i;
	}
	return -1;
}

void raw_lock_unclaim(const struct raw_hello_info *info, int entry)
{
	if (info && info->locks && entry >= 0)
		atomic_store(&info->locks->entry[entry], 0);
}

void raw_hello_info_free(struct raw_hello_info *info)
{
	if (info->locks)
		munmap(info->locks, sizeof(*info->locks));
	if (info->lock_table_fd >= 0)
		close(info->lock_table_fd);
	if (info->header_fd >= 0)
		close(info->header_fd);
	info->locks = NULL;
	info->lock_table_fd = info->header_fd = -1;
}

uint32_t raw_lock_id(const struct raw_hello_info *info)
{
	return info && info->lock_owner ? info->lock_owner : (uint32_t)getpid();
}

/* ---- files ---- */

static int fd_mode(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : (fl & O_ACCMODE);
}

static void *map_fd(int fd, int mode, size_t len)
{
	int prot = mode == O_RDWR ? PROT_READ | PROT_WRITE : PROT_READ;
	void *p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

void raw_file_unmap(struct raw_file *f)
{
	if (f->data)
		munmap(f->data, f->data_len);
	if (f->h)
		munmap(f->h, f->state_len);
	if (f->data_fd >= 0)
		close(f->data_fd);
	if (f->state_fd >= 0)
		close(f->state_fd);
	f->data = NULL;
	f->h = NULL;
	f->pages = NULL;
	f->data_fd = f->state_fd = -1;
}

int raw_open(int fd, const char *path, bool write, struct raw_file *f)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__OpenRequest o = NTFSD__OPEN_REQUEST__INIT;
	Ntfsd__Reply *r;
	struct stat ds, ss;
	int fds[2], nfds = 0, err = 0;

	memset(f, 0, sizeof(*f));
	f->data_fd = f->state_fd = -1;
	last_msg[0] = '\0';
	o.path = (char *)path;
	o.write = write;
	rq.body_case = NTFSD__REQUEST__BODY_OPEN;
	rq.open = &o;
	r = raw_call(fd, &rq, fds, 2, &nfds);
	if (!r)
		return -errno;
	if (r->error) {
		err = refused(r);
		ntfsd__reply__free_unpacked(r, NULL);
		close_fds(fds, nfds);
		return err;
	}
	if (r->body_case != NTFSD__REPLY__BODY_OPEN || nfds != 2) {
		ntfsd__reply__free_unpacked(r, NULL);
		close_fds(fds, nfds);
		return -EPROTO;
	}
	f->handle = r->open->handle;
	f->inode_slot = r->open->inode_slot;
	f->mft_no = r->open->mft_no;
	f->nr_pages = r->open->nr_pages;
	f->writable = r->open->writable;
	f->data_fd = fds[0];
	f->state_fd = fds[1];
	ntfsd__reply__free_unpacked(r, NULL);
	f->data_mode = fd_mode(f->data_fd);
	f->state_mode = fd_mode(f->state_fd);
	if (fstat(f->data_fd, &ds) || fstat(f->state_fd, &ss)) {
		err = -errno;
		goto fail;
	}
	f->data_len = (size_t)ds.st_size;
	f->state_len = (size_t)ss.st_size;
	if (f->data_len && !(f->data = map_fd(f->data_fd, f->data_mode, f->data_len))) {
		err = -errno;
		goto fail;
	}
	if (!(f->h = map_fd(f->state_fd, f->state_mode, f->state_len))) {
		err = -errno;
		goto fail;
	}
	if (!shm_file_header_valid(f->h, f->state_len)) {
		err = -EPROTO;
		goto fail;
	}
	f->pages = shm_file_pages(f->h);
	return 0;
fail:
	raw_file_unmap(f);
	return err;
}

int raw_close(int fd, uint64_t handle)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__CloseRequest c = NTFSD__CLOSE_REQUEST__INIT;

	c.handle = handle;
	rq.body_case = NTFSD__REQUEST__BODY_CLOSE;
	rq.close = &c;
	return call_simple(fd, &rq);
}

int raw_fault_in(int fd, uint64_t handle, uint64_t first, uint64_t nr_pages, bool pin)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__FaultInRequest fi = NTFSD__FAULT_IN_REQUEST__INIT;

	fi.handle = handle;
	fi.first_page = first;
	fi.nr_pages = nr_pages;
	fi.pin = pin;
	rq.body_case = NTFSD__REQUEST__BODY_FAULT_IN;
	rq.fault_in = &fi;
	return call_simple(fd, &rq);
}

int raw_prepare_write(int fd, uint64_t handle, uint64_t first, uint64_t nr_pages,
		      uint64_t write_start, uint64_t write_end)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__PrepareWriteRequest pw = NTFSD__PREPARE_WRITE_REQUEST__INIT;

	pw.handle = handle;
	pw.first_page = first;
	pw.nr_pages = nr_pages;
	pw.write_start = write_start;
	pw.write_end = write_end;
	rq.body_case = NTFSD__REQUEST__BODY_PREPARE_WRITE;
	rq.prepare_write = &pw;
	return call_simple(fd, &rq);
}

int raw_sync(int fd, uint64_t handle)
{
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__SyncRequest s = NTFSD__SYNC_REQUEST__INIT;

	s.handle = handle;
	rq.body_case = NTFSD__REQUEST__BODY_SYNC;
	rq.sync = &s;
	return call_simple(fd, &rq);
}
