/*
 * transport.c — libntfsc's control connection: requests out, replies in.
 *
 * Invariants:
 *  - A connection sends one Request and reads its Reply under c->lock, so
 *    requests from several threads never interleave on the socket.  The
 *    first transport or framing failure marks the connection dead (and
 *    shuts the socket down): the stream can no longer be trusted, so every
 *    later request fails with ECONNRESET at once.
 *  - A reply is handed over only when it answers this request (same id),
 *    is no error, carries the body asked for and exactly the fds asked
 *    for; otherwise every fd that came with it is closed here, and the
 *    daemon's errno and message become the caller's.
 */
#include "ntfsc_int.h"

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
int call_fds(ntfsc *c, Ntfsd__Request *req, Ntfsd__Reply__BodyCase want_body, int want_fds,
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

int call(ntfsc *c, Ntfsd__Request *req, Ntfsd__Reply__BodyCase want_body, int want_fds,
	 int *fds, Ntfsd__Reply **out)
{
	return call_fds(c, req, want_body, want_fds, fds, NULL, out);
}

/* A request whose reply has no body of interest. */
int call_simple(ntfsc *c, Ntfsd__Request *req)
{
	Ntfsd__Reply *rep;

	if (call(c, req, NTFSD__REPLY__BODY__NOT_SET, 0, NULL, &rep))
		return -1;
	ntfsd__reply__free_unpacked(rep, NULL);
	return 0;
}
