/*
 * transport.c — libntfsc's control connection: requests out, replies in.
 *
 * Invariants:
 *  - A connection sends one Request and reads its Reply under c->lock, so
 *    requests from several threads never interleave on the socket.  The
 *    first transport or framing failure marks the connection dead (and
 *    shuts the socket down): the stream can no longer be trusted, so every
 *    later request fails with ECONNRESET at once.
 *  - Every request goes out through request(), and what its reply must
 *    carry is a function of the request's kind alone: one row of
 *    request_kinds[] per body case.  A reply is handed over only when it
 *    answers this request (same id), is no error, carries the body its row
 *    names and exactly the fds it names; otherwise every fd that came with
 *    it is closed here, and the daemon's errno and message (or ours, for a
 *    broken reply) become the caller's.
 */
#include "ntfsc_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Under c->lock: the stream is unusable from now on. */
static void connection_lost(ntfsc *c)
{
	c->dead = true;
	shutdown(c->sock, SHUT_RDWR);
}

static int transport_error(int err)
{
	if (err == ECONNRESET || err == EPIPE)
		return error_set(err, "ntfsd closed the connection");
	if (err == EPROTO)
		return error_set(err, "ntfsd sent a malformed frame");
	return error_set(err, "lost the connection to ntfsd: %s", strerror(err));
}

int fd_count_error(int got, int want)
{
	return error_set(EPROTO, "ntfsd sent %d file descriptor%s with its reply, not %d", got,
			 got == 1 ? "" : "s", want);
}

static void *reply_body(const Ntfsd__Reply *r)
{
	switch (r->body_case) {
	case NTFSD__REPLY__BODY_HELLO: return r->hello;
	case NTFSD__REPLY__BODY_OPEN: return r->open;
	case NTFSD__REPLY__BODY_FAULT_IN: return r->fault_in;
	case NTFSD__REPLY__BODY_STAT: return r->stat;
	case NTFSD__REPLY__BODY_LIST_DIR: return r->list_dir;
	case NTFSD__REPLY__BODY_VOLUME_STATUS: return r->volume_status;
	case NTFSD__REPLY__BODY_PREPARE_WRITE: return r->prepare_write;
	default: return NULL;
	}
}

/*
 * Send req and wait for its reply.  want_body is the body the reply must
 * carry on success (NTFSD__REPLY__BODY__NOT_SET: none is looked at);
 * want_fds how many fds must come with it, stored in fds.  With want_fds < 0
 * any number is accepted: fds must have room for NTFSD_MAX_FRAME_FDS and
 * *nfds says how many came.  0 with *out set (free with
 * ntfsd__reply__free_unpacked), or -1 with errno and message set and
 * nothing to release.
 */
static int call(ntfsc *c, Ntfsd__Request *req, Ntfsd__Reply__BodyCase want_body, int want_fds,
		int *fds, int *nfds, Ntfsd__Reply **out)
{
	int rfds[NTFSD_MAX_FRAME_FDS];
	int nr = 0, err;
	uint8_t *buf, *rbuf = NULL;
	size_t len, rlen = 0;
	Ntfsd__Reply *rep;

	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return error_set(ECONNRESET, "the connection to ntfsd was lost earlier");
	}
	req->id = ++c->next_id;
	len = ntfsd__request__get_packed_size(req);
	if (len > NTFSD_MAX_FRAME) {
		pthread_mutex_unlock(&c->lock);
		return error_set(E2BIG, NULL);
	}
	buf = malloc(len);
	if (!buf) {
		pthread_mutex_unlock(&c->lock);
		return error_set(ENOMEM, NULL);
	}
	ntfsd__request__pack(req, buf);
	err = frame_send(c->sock, buf, len, NULL, 0);
	free(buf);
	if (!err)
		err = frame_recv(c->sock, &rbuf, &rlen, rfds, NTFSD_MAX_FRAME_FDS, &nr);
	if (err) {
		connection_lost(c);
		pthread_mutex_unlock(&c->lock);
		return transport_error(-err);
	}
	rep = ntfsd__reply__unpack(NULL, rlen, rbuf);
	free(rbuf);
	if (!rep || rep->id != req->id) {
		uint64_t got = rep ? rep->id : 0;

		connection_lost(c);
		pthread_mutex_unlock(&c->lock);
		close_fds(rfds, nr);
		if (rep) {
			ntfsd__reply__free_unpacked(rep, NULL);
			return error_set(EPROTO, "ntfsd answered request %llu with the reply to %llu",
					 (unsigned long long)req->id, (unsigned long long)got);
		}
		return error_set(EPROTO, "ntfsd sent a reply that cannot be decoded");
	}
	pthread_mutex_unlock(&c->lock);

	if (rep->error) {
		int e = rep->error > 0 ? rep->error : EPROTO;
		const char *m = rep->message && *rep->message ? rep->message : NULL;

		close_fds(rfds, nr);
		if (m)
			error_set(e, "%s", m);
		else
			error_set(e, NULL);
		ntfsd__reply__free_unpacked(rep, NULL);
		return -1;
	}
	if (want_body != NTFSD__REPLY__BODY__NOT_SET &&
	    (rep->body_case != want_body || !reply_body(rep))) {
		close_fds(rfds, nr);
		ntfsd__reply__free_unpacked(rep, NULL);
		return error_set(EPROTO, "ntfsd sent a reply of the wrong kind");
	}
	if (want_fds >= 0 && nr != want_fds) {
		close_fds(rfds, nr);
		ntfsd__reply__free_unpacked(rep, NULL);
		return fd_count_error(nr, want_fds);
	}
	if (nr)
		memcpy(fds, rfds, sizeof(int) * (size_t)nr);
	if (nfds)
		*nfds = nr;
	*out = rep;
	return 0;
}

/*
 * Every request libntfsc sends, by its body case: the message it carries,
 * and what a successful reply to it must carry (the body: NOT_SET when
 * none is looked at; the fds: -1 for any number, which the caller counts).
 */
static const struct request_kind {
	const ProtobufCMessageDescriptor *body;
	Ntfsd__Reply__BodyCase reply;
	int fds;
} request_kinds[] = {
#define KIND(req, msg, rep, fds) \
	[NTFSD__REQUEST__BODY_##req] = { &ntfsd__##msg##__descriptor, NTFSD__REPLY__BODY_##rep, fds }
	KIND(HELLO,          hello,                  HELLO,          2),  /* header, lock table */
	KIND(OPEN,           open_request,           OPEN,          -1),  /* data and page state */
	KIND(CLOSE,          close_request,          _NOT_SET,       0),
	KIND(FAULT_IN,       fault_in_request,       FAULT_IN,       0),
	KIND(UNPIN,          unpin_request,          _NOT_SET,       0),
	KIND(STAT,           stat_request,           STAT,           0),
	KIND(LIST_DIR,       list_dir_request,       LIST_DIR,       0),
	KIND(VOLUME_STATUS,  volume_status_request,  VOLUME_STATUS,  0),
	KIND(PREPARE_WRITE,  prepare_write_request,  PREPARE_WRITE,  0),
	KIND(SYNC,           sync_request,           _NOT_SET,       0),
	KIND(BALANCE_DIRTY,  balance_dirty_request,  _NOT_SET,       0),
	KIND(TRUNCATE,       truncate_request,       _NOT_SET,       0),
	KIND(UNLINK,         unlink_request,         _NOT_SET,       0),
	KIND(MKDIR,          mkdir_request,          _NOT_SET,       0),
	KIND(RENAME,         rename_request,         _NOT_SET,       0),
	KIND(SET_TIMES,      set_times_request,      _NOT_SET,       0),
#undef KIND
};

/* The body member of the request's oneof that kind names. */
static void request_set_body(Ntfsd__Request *req, Ntfsd__Request__BodyCase kind, void *body)
{
	req->body_case = kind;
	switch (kind) {
	case NTFSD__REQUEST__BODY_HELLO: req->hello = body; break;
	case NTFSD__REQUEST__BODY_OPEN: req->open = body; break;
	case NTFSD__REQUEST__BODY_CLOSE: req->close = body; break;
	case NTFSD__REQUEST__BODY_FAULT_IN: req->fault_in = body; break;
	case NTFSD__REQUEST__BODY_UNPIN: req->unpin = body; break;
	case NTFSD__REQUEST__BODY_STAT: req->stat = body; break;
	case NTFSD__REQUEST__BODY_LIST_DIR: req->list_dir = body; break;
	case NTFSD__REQUEST__BODY_VOLUME_STATUS: req->volume_status = body; break;
	case NTFSD__REQUEST__BODY_PREPARE_WRITE: req->prepare_write = body; break;
	case NTFSD__REQUEST__BODY_SYNC: req->sync = body; break;
	case NTFSD__REQUEST__BODY_BALANCE_DIRTY: req->balance_dirty = body; break;
	case NTFSD__REQUEST__BODY_TRUNCATE: req->truncate = body; break;
	case NTFSD__REQUEST__BODY_UNLINK: req->unlink = body; break;
	case NTFSD__REQUEST__BODY_MKDIR: req->mkdir = body; break;
	case NTFSD__REQUEST__BODY_RENAME: req->rename = body; break;
	case NTFSD__REQUEST__BODY_SET_TIMES: req->set_times = body; break;
	default: assert(!"a request kind libntfsc does not send"); break;
	}
}

int request(ntfsc *c, Ntfsd__Request__BodyCase kind, void *body, int *fds, int *nfds,
	    Ntfsd__Reply **out)
{
	Ntfsd__Request req = NTFSD__REQUEST__INIT;
	const struct request_kind *k;
	Ntfsd__Reply *rep = NULL;

	assert(kind > 0 && (size_t)kind < sizeof(request_kinds) / sizeof(request_kinds[0]));
	k = &request_kinds[kind];
	assert(k->body && ((const ProtobufCMessage *)body)->descriptor == k->body);
	assert((k->fds == 0 || fds) && (k->fds >= 0 || nfds));
	request_set_body(&req, kind, body);
	if (call(c, &req, k->reply, k->fds, fds, nfds, &rep))
		return -1;
	if (out)
		*out = rep;
	else
		ntfsd__reply__free_unpacked(rep, NULL);
	return 0;
}
