/*
 * server.c — listening socket, connections, framing and fd passing.
 *
 * Invariants: see server.h.  Sockets are non-blocking and driven by
 * uv_poll; a connection reads frames into its input buffer, runs at most
 * one request at a time (requests that arrive meanwhile wait in the
 * buffer), and queues replies, with the file descriptors they carry, until
 * the socket takes them.  A connection is freed only when no request of
 * its is running.
 *
 * Resources (server_limits):
 *  - cn->in holds only bytes received and not yet dispatched, is freed
 *    whenever it empties, and never grows past limits->conn_inflight; a
 *    frame whose announced length does not fit is refused (EMSGSIZE) and
 *    the connection dropped before more of it is read.
 *  - cn->in_charged == cn->in_cap + cn->in_running, and srv->inflight is
 *    the sum of in_charged over every connection not yet freed; a buffer
 *    grows only once srv->inflight stays within limits->inflight, dropping
 *    the live connection charged the most (the grower on a tie) until it
 *    does.
 *  - A reply is first offered to the socket; only what the socket refuses
 *    stays queued, counted in out_count and out_bytes.  More than
 *    limits->conn_replies queued, or more than limits->conn_reply_bytes
 *    with more than one queued, drops the connection.
 *  - A connection being dropped gives back its input and queued replies
 *    (and their fds) at once, not when it is freed.
 *  - The listener is polled except during an accept backoff, when
 *    accept_timer is pending; accept_pauses counts the backoffs of the
 *    current episode and is 0 outside one.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "cache.h"
#include "dispatch.h"
#include "flusher.h"
#include "frame.h"
#include "holders.h"
#include "log.h"
#include "namei.h"
#include "notify.h"
#include "shm_layout.h"

#define CONN_READ_CHUNK 65536
#define ACCEPT_BACKOFF_MS 200

static const struct server_limits server_default_limits = {
	.conn_inflight = SERVER_DEFAULT_CONN_INFLIGHT,
	.inflight = SERVER_DEFAULT_INFLIGHT,
	.conn_handles = SERVER_DEFAULT_CONN_HANDLES,
	.conn_replies = SERVER_DEFAULT_CONN_REPLIES,
	.conn_reply_bytes = SERVER_DEFAULT_CONN_REPLY_BYTES,
};

static void conn_maybe_free(struct conn *cn);
static void conn_process(struct conn *cn);
static void conn_update_poll(struct conn *cn);

/* ---- the reply queue ---- */

struct outmsg {
	struct outmsg *next;
	uint8_t *data;
	size_t len, off;
	int fds[NTFSD_MAX_FRAME_FDS];
	int nfds;
};

static void outmsg_free(struct outmsg *m)
{
	int i;

	for (i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	free(m->data);
	free(m);
}

static void conn_out_free(struct conn *cn)
{
	struct outmsg *m;

	while ((m = cn->out)) {
		cn->out = m->next;
		outmsg_free(m);
	}
	cn->out_count = 0;
	cn->out_bytes = 0;
}

static int conn_flush(struct conn *cn)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * NTFSD_MAX_FRAME_FDS)];
		struct cmsghdr align;
	} ctl;

	while (cn->out) {
		struct outmsg *m = cn->out;
		struct iovec iov = { .iov_base = m->data + m->off, .iov_len = m->len - m->off };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (m->nfds && m->off == 0) {
			struct cmsghdr *c;

			memset(&ctl, 0, sizeof(ctl));
			msg.msg_control = ctl.buf;
			msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)m->nfds);
			c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)m->nfds);
			memcpy(CMSG_DATA(c), m->fds, sizeof(int) * (size_t)m->nfds);
		}
		n = sendmsg(cn->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (m->off == 0 && m->nfds) {
			int i;

			for (i = 0; i < m->nfds; i++)
				close(m->fds[i]);
			m->nfds = 0;
		}
		m->off += (size_t)n;
		cn->out_bytes -= (size_t)n;
		if (m->off == m->len) {
			cn->out = m->next;
			cn->out_count--;
			outmsg_free(m);
		}
	}
	return 0;
}

/* ---- limits ---- */

static void conn_log_limit(const struct conn *cn, const char *key, uint64_t value,
			   const char *unit, const char *detail, const char *action)
{
	log_warning("client pid %d uid %u: over the %s limit of %llu%s (%s): %s", (int)cn->pid,
		    (unsigned)cn->uid, key, (unsigned long long)value, unit, detail, action);
}

/* cn went over the limit key: say so and drop it. */
static void conn_drop_over(struct conn *cn, const char *key, uint64_t value, const char *unit,
			   const char *detail)
{
	char why[64];

	conn_log_limit(cn, key, value, unit, detail, "disconnecting");
	snprintf(why, sizeof(why), "over the %s limit", key);
	conn_shutdown(cn, why);
}

/* Keep cn->in_charged, and the server's total, equal to what cn holds. */
static void conn_recharge(struct conn *cn)
{
	uint64_t now = cn->in_cap + cn->in_running;

	cn->srv->inflight = cn->srv->inflight - cn->in_charged + now;
	cn->in_charged = now;
}

static void conn_set_running(struct conn *cn, size_t len)
{
	cn->in_running = len;
	conn_recharge(cn);
}

/* Drop queued replies past the limits; a lone reply always may wait. */
static void conn_check_replies(struct conn *cn)
{
	const struct server_limits *lim = cn->srv->limits;
	char detail[96];

	if (cn->out_count <= 1)
		return;
	if (cn->out_count > lim->conn_replies) {
		snprintf(detail, sizeof(detail), "%u replies queued that it does not read",
			 cn->out_count);
		conn_drop_over(cn, "max-conn-replies", lim->conn_replies, "", detail);
	} else if (cn->out_bytes > lim->conn_reply_bytes) {
		snprintf(detail, sizeof(detail), "%zu bytes of replies queued that it does not read",
			 cn->out_bytes);
		conn_drop_over(cn, "max-conn-reply-bytes", lim->conn_reply_bytes, " bytes", detail);
	}
}

/*
 * Make room under the total for cn to be charged extra more bytes: drop
 * the live connection charged the most (counting extra for cn, which loses
 * ties) until it fits.  0, or -ENOBUFS when cn itself was dropped.
 */
static int server_make_room(struct server *srv, struct conn *cn, uint64_t extra)
{
	const struct server_limits *lim = srv->limits;

	while (srv->inflight + extra > lim->inflight) {
		struct conn *big = cn, *o;
		uint64_t most = cn->in_charged + extra;
		char detail[128];

		for (o = srv->conns; o; o = o->next)
			if (o != cn && o->in_charged > most) {
				big = o;
				most = o->in_charged;
			}
		snprintf(detail, sizeof(detail), "clients' unprocessed requests would take %llu "
			 "bytes, %llu of them this client's", (unsigned long long)(srv->inflight + extra),
			 (unsigned long long)most);
		conn_drop_over(big, "max-inflight", lim->inflight, " bytes", detail);
		if (big == cn)
			return -ENOBUFS;
	}
	return 0;
}

/* ---- sending ---- */

/*
 * Queue a frame and offer it to the socket at once; takes ownership of fds
 * (closed once sent or dropped).  A reply that leaves the connection over
 * a limit, or a send error, drops the connection; 0 then too (the reply is
 * dealt with).  -ENOMEM when it could not be queued.
 */
int conn_send(struct conn *cn, const uint8_t *payload, size_t len, const int *fds, int nfds)
{
	struct outmsg *m, **pp;
	int i, err;

	if (cn->closing) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		return 0;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->data = malloc(len + 4))) {
		free(m);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		return -ENOMEM;
	}
	m->data[0] = (uint8_t)len;
	m->data[1] = (uint8_t)(len >> 8);
	m->data[2] = (uint8_t)(len >> 16);
	m->data[3] = (uint8_t)(len >> 24);
	memcpy(m->data + 4, payload, len);
	m->len = len + 4;
	for (i = 0; i < nfds; i++)
		m->fds[i] = fds[i];
	m->nfds = nfds;
	for (pp = &cn->out; *pp; pp = &(*pp)->next)
		;
	*pp = m;
	cn->out_count++;
	cn->out_bytes += m->len;
	err = conn_flush(cn);
	if (err) {
		conn_shutdown(cn, strerror(-err));
		return 0;
	}
	conn_check_replies(cn);
	conn_update_poll(cn);
	return 0;
}

/* ---- input ---- */

static void conn_in_free(struct conn *cn)
{
	free(cn->in);
	cn->in = NULL;
	cn->in_len = cn->in_cap = 0;
	conn_recharge(cn);
}

/*
 * Append n received bytes to cn's input, growing the buffer (doubling, at
 * most to the per-connection limit, exactly what is needed when the total
 * is tight) once the total has room.  0, -ENOMEM, or -ENOBUFS when cn was
 * dropped for the total.
 */
static int conn_in_append(struct conn *cn, const uint8_t *p, size_t n)
{
	struct server *srv = cn->srv;
	size_t need = cn->in_len + n, cap = cn->in_cap;

	if (need > cap) {
		uint8_t *in;
		int err;

		cap = cap * 2 > need ? cap * 2 : need;
		if (cap > srv->limits->conn_inflight)
			cap = need > srv->limits->conn_inflight ? need : srv->limits->conn_inflight;
		if (srv->inflight - cn->in_cap + cap > srv->limits->inflight)
			cap = need;
		err = server_make_room(srv, cn, cap - cn->in_cap);
		if (err)
			return err;
		in = realloc(cn->in, cap);
		if (!in)
			return -ENOMEM;
		cn->in = in;
		cn->in_cap = cap;
		conn_recharge(cn);
	}
	memcpy(cn->in + cn->in_len, p, n);
	cn->in_len = need;
	return 0;
}

/* Take n bytes off the front of cn's input. */
static void conn_in_consume(struct conn *cn, size_t n)
{
	memmove(cn->in, cn->in + n, cn->in_len - n);
	cn->in_len -= n;
	if (!cn->in_len)
		conn_in_free(cn);
}

static uint32_t conn_in_frame_len(const struct conn *cn)
{
	return (uint32_t)cn->in[0] | (uint32_t)cn->in[1] << 8 | (uint32_t)cn->in[2] << 16 |
	       (uint32_t)cn->in[3] << 24;
}

/* Is there something for conn_process to do: a whole frame, or a length
 * it refuses? */
static bool conn_in_ready(const struct conn *cn)
{
	uint32_t len;

	if (cn->in_len < 4)
		return false;
	len = conn_in_frame_len(cn);
	return len == 0 || len > NTFSD_MAX_FRAME ||
	       (uint64_t)len + 4 > cn->srv->limits->conn_inflight || cn->in_len >= (size_t)len + 4;
}

/* ---- connection lifetime ---- */

static void conn_poll_closed(uv_handle_t *h)
{
	struct conn *cn = h->data;

	cn->poll_closed = true;
	conn_maybe_free(cn);
}

/* A connection of uid past max-uid-conns: logged once per episode (a
 * client retrying without end must not flood the log). */
static bool uid_over_conns(struct server *srv, uid_t uid)
{
	static bool warned;
	unsigned n = 0;
	struct conn *c;

	for (c = srv->conns; c; c = c->next)
		n += c->uid == uid;
	if (n < srv->limits->uid_conns) {
		warned = false;
		return false;
	}
	if (!warned)
		log_warning("uid %u: over the max-uid-conns limit of %u connections: new "
			    "connections closed at once", (unsigned)uid, srv->limits->uid_conns);
	warned = true;
	return true;
}

/* A page lock it held too long (worker thread, holder table locked, so cn
 * is alive): shutting the socket down makes the loop see it go away. */
static void conn_expire(void *arg)
{
	struct conn *cn = arg;

	shutdown(cn->fd, SHUT_RDWR);
}

/* Stop serving cn: its requests are dropped, its handles released. */
void conn_shutdown(struct conn *cn, const char *why)
{
	struct server *srv = cn->srv;
	struct conn **pp;

	if (cn->closing)
		return;
	cn->closing = true;
	/* from now on its locks are nobody's: waiters break them */
	cache_holder_remove(srv->cache, cn->lock_id);
	log_info("client pid %d uid %u: disconnected%s%s", (int)cn->pid, (unsigned)cn->uid,
		 why ? ": " : "", why ? why : "");
	for (pp = &srv->conns; *pp && *pp != cn; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = cn->next;
	atomic_fetch_sub(&srv->cache->header->counters.clients, 1);
	uv_poll_stop(&cn->poll);
	uv_close((uv_handle_t *)&cn->poll, conn_poll_closed);
	/* nothing will read these: give them back now, not once cn is freed */
	conn_in_free(cn);
	conn_out_free(cn);
}

static void conn_maybe_free(struct conn *cn)
{
	if (!cn->closing || cn->busy || !cn->poll_closed)
		return;
	dispatch_release_conn(cn);
	conn_out_free(cn);
	conn_set_running(cn, 0);
	close(cn->fd);
	free(cn->in);
	free(cn);
}

static void conn_update_poll(struct conn *cn)
{
	int events = 0;

	if (cn->closing)
		return;
	if (!cn->busy)
		events |= UV_READABLE;
	if (cn->out)
		events |= UV_WRITABLE;
	if (events != cn->poll_events) {
		cn->poll_events = events;
		if (events)
			uv_poll_start(&cn->poll, events, cn->poll_cb);
		else
			uv_poll_stop(&cn->poll);
	}
}

/* Reply that cannot be tied to a request, then hang up: the reply goes
 * if the socket takes it at once (a client that does not read loses it). */
static void conn_fatal(struct conn *cn, int err, const char *msg, const char *why)
{
	dispatch_send_error(cn, 0, err, msg);
	conn_shutdown(cn, why);
}

/* The frame at the front of cn's input has a length it may not have:
 * refuse it.  Returns true when it did. */
static bool conn_refuse_frame(struct conn *cn, uint32_t n)
{
	uint64_t limit = cn->srv->limits->conn_inflight;
	char msg[160];

	if (n == 0 || n > NTFSD_MAX_FRAME) {
		snprintf(msg, sizeof(msg), "frame length %u is outside 1..16 MiB: closing", n);
		log_warning("client pid %d uid %u: %s", (int)cn->pid, (unsigned)cn->uid, msg);
		conn_fatal(cn, EMSGSIZE, msg, "protocol error");
		return true;
	}
	if ((uint64_t)n + 4 > limit) {
		char detail[64];

		snprintf(msg, sizeof(msg), "a request frame of %u bytes is over this daemon's "
			 "max-conn-inflight limit of %llu bytes: closing", n, (unsigned long long)limit);
		snprintf(detail, sizeof(detail), "a request frame of %u bytes", n);
		conn_log_limit(cn, "max-conn-inflight", limit, " bytes", detail, "disconnecting");
		conn_fatal(cn, EMSGSIZE, msg, "over the max-conn-inflight limit");
		return true;
	}
	return false;
}

/* Run requests from the input buffer while none is in flight. */
static void conn_process(struct conn *cn)
{
	if (cn->processing)
		return;  /* a request completed synchronously inside this loop */
	cn->processing = true;
	while (!cn->busy && !cn->closing && cn->in_len >= 4) {
		uint32_t n = conn_in_frame_len(cn);
		uint8_t *frame;

		if (conn_refuse_frame(cn, n) || cn->in_len < (size_t)n + 4)
			break;
		/* take the frame out of the buffer before running it; it stays
		 * charged as in-flight until the request is done */
		frame = malloc(n);
		if (!frame) {
			log_warning("client pid %d uid %u: out of memory for a request of %u bytes",
				    (int)cn->pid, (unsigned)cn->uid, n);
			conn_fatal(cn, ENOMEM, "out of memory", "out of memory");
			break;
		}
		memcpy(frame, cn->in + 4, n);
		conn_in_consume(cn, 4 + (size_t)n);
		conn_set_running(cn, n);
		dispatch_request(cn, frame, n);
		free(frame);
		if (!cn->busy)
			conn_set_running(cn, 0);
	}
	cn->processing = false;
	conn_update_poll(cn);
}

/* Read what the socket has, up to the per-connection limit, stopping at a
 * whole frame.  0, -ECONNRESET at EOF, -ENOBUFS when cn was dropped over
 * the total, or -errno. */
static int conn_read(struct conn *cn)
{
	static uint8_t buf[CONN_READ_CHUNK];  /* the loop thread's; copied out at once */

	for (;;) {
		uint64_t limit = cn->srv->limits->conn_inflight;
		size_t want = sizeof(buf);
		ssize_t n;
		int err;

		if (cn->in_len >= limit)
			return 0;  /* a whole frame is buffered: process first */
		if (limit - cn->in_len < want)
			want = (size_t)(limit - cn->in_len);
		n = recv(cn->fd, buf, want, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		err = conn_in_append(cn, buf, (size_t)n);
		if (err)
			return err;
		if (conn_in_ready(cn))
			return 0;  /* let conn_process judge it */
	}
}

static void conn_on_poll(uv_poll_t *h, int status, int events)
{
	struct conn *cn = h->data;
	int err;

	if (cn->closing)
		return;
	if (status < 0) {
		conn_shutdown(cn, uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE) {
		err = conn_flush(cn);
		if (err) {
			conn_shutdown(cn, strerror(-err));
			return;
		}
	}
	if (events & UV_READABLE) {
		err = conn_read(cn);
		if (cn->closing)
			return;  /* dropped over the in-flight total */
		if (err == -ECONNRESET && !cn->in_len) {
			conn_shutdown(cn, NULL);
			return;
		}
		if (err && err != -ECONNRESET) {
			conn_shutdown(cn, strerror(-err));
			return;
		}
		conn_process(cn);
		if (err == -ECONNRESET && !cn->closing) {
			conn_shutdown(cn, cn->in_len ? "hung up inside a frame" : NULL);
			return;
		}
	}
	conn_update_poll(cn);
}

/* A request finished (called by dispatch on the loop thread). */
void conn_request_done(struct conn *cn)
{
	cn->busy = false;
	conn_set_running(cn, 0);
	if (cn->closing) {
		conn_maybe_free(cn);
		return;
	}
	conn_process(cn);
	conn_update_poll(cn);
}

/* ---- accepting ---- */

static void server_on_accept(uv_poll_t *h, int status, int events);

static void server_accept_resume(uv_timer_t *t)
{
	struct server *srv = t->data;

	if (!srv->stopping)
		uv_poll_start(&srv->listen_poll, UV_READABLE, server_on_accept);
}

/* accept() is out of descriptors or memory: the listener stays readable,
 * so stop polling it for a while instead of spinning; log once an episode. */
static void server_accept_pause(struct server *srv, int err)
{
	uv_poll_stop(&srv->listen_poll);
	uv_timer_start(&srv->accept_timer, server_accept_resume, ACCEPT_BACKOFF_MS, 0);
	if (!srv->accept_pauses++) {
		unsigned n = 0;
		struct conn *cn;

		for (cn = srv->conns; cn; cn = cn->next)
			n++;
		log_warning("accept on %s: %s (%u clients connected): not accepting connections "
			    "for %d ms at a time until one is accepted again", srv->socket_path,
			    strerror(err), n, ACCEPT_BACKOFF_MS);
	}
}

static void server_on_accept(uv_poll_t *h, int status, int events)
{
	struct server *srv = h->data;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *cn;
	int fd;

	(void)events;
	if (status < 0)
		return;
	fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			server_accept_pause(srv, errno);
		else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warning("accept on %s: %m", srv->socket_path);
		return;
	}
	if (srv->accept_pauses) {
		log_notice("accepting connections on %s again (after %u pauses of %d ms)",
			   srv->socket_path, srv->accept_pauses, ACCEPT_BACKOFF_MS);
		srv->accept_pauses = 0;
	}
	cn = calloc(1, sizeof(*cn));
	if (!cn) {
		close(fd);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		cn->pid = cred.pid;
		cn->uid = cred.uid;
		cn->gid = cred.gid;
	}
	cn->srv = srv;
	cn->fd = fd;
	if (uid_over_conns(srv, cn->uid)) {
		close(fd);
		free(cn);
		return;
	}
	if (cache_holder_add(srv->cache, cn->pid, cn->uid, conn_expire, cn, &cn->lock_id)) {
		log_warning("client pid %d uid %u: no lock id left to give it: refused",
			    (int)cn->pid, (unsigned)cn->uid);
		close(fd);
		free(cn);
		return;
	}
	cn->poll_cb = conn_on_poll;
	uv_poll_init(srv->loop, &cn->poll, fd);
	cn->poll.data = cn;
	cn->next = srv->conns;
	srv->conns = cn;
	atomic_fetch_add(&srv->cache->header->counters.clients, 1);
	log_info("client pid %d uid %u gid %u: connected", (int)cn->pid, (unsigned)cn->uid,
		 (unsigned)cn->gid);
	conn_update_poll(cn);
}

/* Create the listening socket (mode and group as configured, by default
 * 0660 and the daemon's group), replacing a stale one. */
static int server_listen(const char *path, unsigned mode, int gid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)], *slash;
	int fd, probe;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("socket path %s is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			log_error("cannot create the socket directory %s: %m", dir);
			return -1;
		}
	}
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(probe);
		log_error("%s: another ntfsd is already serving on this socket", path);
		return -1;
	}
	if (probe >= 0)
		close(probe);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    (gid >= 0 && chown(path, (uid_t)-1, (gid_t)gid) < 0) || chmod(path, mode) < 0 ||
	    listen(fd, 128) < 0) {
		log_error("cannot listen on %s: %m", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

struct signal_ctx {
	struct server *srv;
	const struct server_config *cfg;
};

static void server_on_signal(uv_signal_t *h, int signum)
{
	struct signal_ctx *ctx = h->data;
	struct server *srv = ctx->srv;
	const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";

	if (signum == SIGHUP) {
		if (!ctx->cfg->reload) {
			log_notice("SIGHUP: nothing to reload");
			return;
		}
		notify_reloading();
		ctx->cfg->reload(ctx->cfg->reload_arg);
		notify_reloaded();
		return;
	}
	log_notice("%s: shutting down", name);
	notify_stopping(name);
	srv->stopping = true;
	uv_stop(srv->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int server_run(const struct server_config *cfg, struct cache *cache)
{
	struct server srv = { .cache = cache, .volume_path = cfg->volume_path,
			      .socket_path = cfg->socket_path, .read_only = cfg->read_only,
			      .next_handle = 1, .flushers = cfg->flushers,
			      .nr_flushers = cfg->nr_flushers,
			      .limits = cfg->limits ? cfg->limits : &server_default_limits };
	uv_loop_t loop;
	uv_signal_t sig[3];
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	struct signal_ctx sigctx = { .srv = &srv, .cfg = cfg };
	struct notify notify;
	struct conn *cn;
	int i, rc;

	signal(SIGPIPE, SIG_IGN);
	srv.listen_fd = cfg->listen_fd >= 0 ? cfg->listen_fd : server_listen(cfg->socket_path, cfg->socket_mode,
										  cfg->socket_gid);
	if (srv.listen_fd < 0)
		return 1;
	uv_loop_init(&loop);
	srv.loop = &loop;
	uv_poll_init(&loop, &srv.listen_poll, srv.listen_fd);
	srv.listen_poll.data = &srv;
	uv_poll_start(&srv.listen_poll, UV_READABLE, server_on_accept);
	uv_timer_init(&loop, &srv.accept_timer);
	srv.accept_timer.data = &srv;
	for (i = 0; i < 3; i++) {
		uv_signal_init(&loop, &sig[i]);
		sig[i].data = &sigctx;
		uv_signal_start(&sig[i], server_on_signal, signums[i]);
	}
	log_notice("serving %s (%s) on %s, cache limit %llu MiB", cfg->volume_path,
		   cfg->read_only ? "read-only" : "read-write", cfg->socket_path,
		   (unsigned long long)(cache->limit_pages >> (20 - NTFSD_PAGE_SHIFT)));
	log_info("client limits: max-conn-inflight %llu, max-inflight %llu, max-conn-handles %u, "
		 "max-conn-replies %u, max-conn-reply-bytes %llu, max-uid-handles %u, "
		 "max-uid-conns %u, max-lock-hold-ms %u",
		 (unsigned long long)srv.limits->conn_inflight,
		 (unsigned long long)srv.limits->inflight, srv.limits->conn_handles,
		 srv.limits->conn_replies, (unsigned long long)srv.limits->conn_reply_bytes,
		 srv.limits->uid_handles, srv.limits->uid_conns, srv.limits->lock_hold_ms);
	notify_ready(&notify, &loop, cache, cfg->volume_path);
	uv_run(&loop, UV_RUN_DEFAULT);

	/* Shutdown: stop accepting, drop clients, let running requests finish,
	 * then write back everything: nothing dirty is dropped. */
	uv_poll_stop(&srv.listen_poll);
	uv_timer_stop(&srv.accept_timer);
	while ((cn = srv.conns))
		conn_shutdown(cn, "daemon shutting down");
	uv_walk(&loop, close_walk, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	close(srv.listen_fd);
	if (cfg->listen_fd < 0)
		unlink(cfg->socket_path);
	rc = 0;
	if (!srv.read_only) {
		uint64_t dirty = flusher_count_dirty(cache);

		log_notice("writing back %llu dirty pages", (unsigned long long)dirty);
		notify_status("stopping: writing back %llu dirty pages", (unsigned long long)dirty);
		/* Out of memory re-dirties pages rather than failing: go round
		 * again while that is all that happened. */
		for (i = 0; i < 100; i++) {
			if (flusher_sync_all(cache) || cache_flush_device(cache)) {
				log_error("write-back at shutdown failed: %s",
					  cache_last_error() ? cache_last_error() : "see above");
				rc = 1;
				break;
			}
			if (!flusher_count_dirty(cache))
				break;
		}
		dirty = flusher_count_dirty(cache);
		if (dirty) {
			log_error("%llu pages are still dirty after the final write-back",
				  (unsigned long long)dirty);
			rc = 1;
		}
	}
	log_notice("stopped");
	return rc;
}
