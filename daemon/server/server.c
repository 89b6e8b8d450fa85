/*
 * server.c — listening socket, connections, framing and fd passing.
 *
 * Invariants: see server.h.  Sockets are non-blocking and driven by
 * uv_poll; a connection reads frames into its input buffer, runs at most
 * one request at a time (requests that arrive meanwhile wait in the
 * buffer), and queues replies, with the file descriptors they carry, until
 * the socket takes them.  A connection is freed only when no request of
 * its is running.
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
#include "error.h"
#include "flusher.h"
#include "frame.h"
#include "log.h"
#include "notify.h"
#include "shm_layout.h"
#include "volume.h"

#define CONN_READ_CHUNK 65536

static void conn_maybe_free(struct conn *cn);
static void conn_process(struct conn *cn);
static void conn_update_poll(struct conn *cn);

/* ---- output ---- */

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

/* Queue a frame; takes ownership of fds (closed once sent or dropped). */
int conn_send(struct conn *cn, const uint8_t *payload, size_t len, const int *fds, int nfds)
{
	struct outmsg *m = calloc(1, sizeof(*m)), **pp;
	int i;

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
	conn_update_poll(cn);
	return 0;
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
		if (m->off == m->len) {
			cn->out = m->next;
			outmsg_free(m);
		}
	}
	return 0;
}

/* ---- connection lifetime ---- */

static void conn_poll_closed(uv_handle_t *h)
{
	struct conn *cn = h->data;

	cn->poll_closed = true;
	conn_maybe_free(cn);
}

/* Stop serving cn: its requests are dropped, its handles released. */
void conn_shutdown(struct conn *cn, const char *why)
{
	struct server *srv = cn->srv;
	struct conn **pp;

	if (cn->closing)
		return;
	cn->closing = true;
	log_info("client pid %d uid %u: disconnected%s%s", (int)cn->pid, (unsigned)cn->uid,
		 why ? ": " : "", why ? why : "");
	for (pp = &srv->conns; *pp && *pp != cn; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = cn->next;
	atomic_fetch_sub(&srv->cache->header->counters.clients, 1);
	uv_poll_stop(&cn->poll);
	uv_close((uv_handle_t *)&cn->poll, conn_poll_closed);
}

static void conn_maybe_free(struct conn *cn)
{
	struct outmsg *m;

	if (!cn->closing || cn->busy || !cn->poll_closed)
		return;
	dispatch_release_conn(cn);
	while ((m = cn->out)) {
		cn->out = m->next;
		outmsg_free(m);
	}
	close(cn->fd);
	free(cn->in);
	free(cn);
}

/* ---- input ---- */

static void conn_update_poll(struct conn *cn)
{
	int events = 0;

	if (cn->closing)
		return;
	if (!cn->busy && !cn->close_after_flush)
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

/* Reply that cannot be tied to a request and hang up after sending it. */
static void conn_fatal(struct conn *cn, int err, const char *fmt, const char *detail)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, detail);
	log_warning("client pid %d: %s", (int)cn->pid, msg);
	dispatch_send_error(cn, 0, err, msg);
	cn->close_after_flush = true;
	cn->in_len = 0;
	conn_update_poll(cn);
}

/* Run requests from the input buffer while none is in flight. */
static void conn_process(struct conn *cn)
{
	if (cn->processing)
		return;  /* a request completed synchronously inside this loop */
	cn->processing = true;
	while (!cn->busy && !cn->closing && !cn->close_after_flush && cn->in_len >= 4) {
		uint32_t n = (uint32_t)cn->in[0] | (uint32_t)cn->in[1] << 8 |
			     (uint32_t)cn->in[2] << 16 | (uint32_t)cn->in[3] << 24;

		uint8_t *frame;

		if (n == 0 || n > NTFSD_MAX_FRAME) {
			char len[32];

			snprintf(len, sizeof(len), "%u", n);
			conn_fatal(cn, EMSGSIZE, "frame length %s is outside 1..16 MiB: closing", len);
			break;
		}
		if (cn->in_len < (size_t)n + 4)
			break;
		/* take the frame out of the buffer before running it */
		frame = malloc(n);
		if (!frame) {
			conn_fatal(cn, ENOMEM, "%s", "out of memory");
			break;
		}
		memcpy(frame, cn->in + 4, n);
		memmove(cn->in, cn->in + 4 + n, cn->in_len - 4 - n);
		cn->in_len -= 4 + (size_t)n;
		dispatch_request(cn, frame, n);
		free(frame);
	}
	cn->processing = false;
	conn_update_poll(cn);
}

static int conn_read(struct conn *cn)
{
	for (;;) {
		ssize_t n;

		if (cn->in_cap - cn->in_len < CONN_READ_CHUNK) {
			size_t cap = cn->in_cap ? cn->in_cap * 2 : CONN_READ_CHUNK * 2;
			uint8_t *in;

			if (cap > NTFSD_MAX_FRAME + 4 + CONN_READ_CHUNK * 2)
				cap = NTFSD_MAX_FRAME + 4 + CONN_READ_CHUNK * 2;
			if (cap <= cn->in_cap)
				return 0;  /* full: a whole frame is buffered, process first */
			in = realloc(cn->in, cap);
			if (!in)
				return -ENOMEM;
			cn->in = in;
			cn->in_cap = cap;
		}
		n = recv(cn->fd, cn->in + cn->in_len, cn->in_cap - cn->in_len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		cn->in_len += (size_t)n;
		if (cn->in_len >= 4) {
			uint32_t len = (uint32_t)cn->in[0] | (uint32_t)cn->in[1] << 8 |
				       (uint32_t)cn->in[2] << 16 | (uint32_t)cn->in[3] << 24;

			if (len == 0 || len > NTFSD_MAX_FRAME || cn->in_len >= (size_t)len + 4)
				return 0;  /* let conn_process judge it */
		}
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
		if (!cn->out && cn->close_after_flush) {
			conn_shutdown(cn, "protocol error");
			return;
		}
	}
	if (events & UV_READABLE) {
		err = conn_read(cn);
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
	if (cn->closing) {
		conn_maybe_free(cn);
		return;
	}
	conn_process(cn);
	conn_update_poll(cn);
}

/* ---- accepting ---- */

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
		if (errno != EAGAIN && errno != EINTR)
			log_warning("accept on %s: %m", srv->socket_path);
		return;
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

/* Create the listening socket, mode 0660, replacing a stale one. */
static int server_listen(const char *path)
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
	    chmod(path, 0660) < 0 || listen(fd, 128) < 0) {
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

int server_run(const struct server_config *cfg, struct ntfs_volume *vol, struct cache *cache)
{
	struct server srv = { .vol = vol, .cache = cache, .volume_path = cfg->volume_path,
			      .socket_path = cfg->socket_path, .read_only = cfg->read_only,
			      .next_handle = 1, .flushers = cfg->flushers,
			      .nr_flushers = cfg->nr_flushers };
	uv_loop_t loop;
	uv_signal_t sig[3];
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	struct signal_ctx sigctx = { .srv = &srv, .cfg = cfg };
	struct notify notify;
	struct conn *cn;
	int i, rc;

	signal(SIGPIPE, SIG_IGN);
	srv.listen_fd = cfg->listen_fd >= 0 ? cfg->listen_fd : server_listen(cfg->socket_path);
	if (srv.listen_fd < 0)
		return 1;
	uv_loop_init(&loop);
	srv.loop = &loop;
	uv_poll_init(&loop, &srv.listen_poll, srv.listen_fd);
	srv.listen_poll.data = &srv;
	uv_poll_start(&srv.listen_poll, UV_READABLE, server_on_accept);
	for (i = 0; i < 3; i++) {
		uv_signal_init(&loop, &sig[i]);
		sig[i].data = &sigctx;
		uv_signal_start(&sig[i], server_on_signal, signums[i]);
	}
	log_notice("serving %s (%s) on %s, cache limit %llu MiB", cfg->volume_path,
		   cfg->read_only ? "read-only" : "read-write", cfg->socket_path,
		   (unsigned long long)(cache->limit_pages >> (20 - NTFSD_PAGE_SHIFT)));
	notify_ready(&notify, &loop, cache, cfg->volume_path);
	uv_run(&loop, UV_RUN_DEFAULT);

	/* Shutdown: stop accepting, drop clients, let running requests finish,
	 * then write back everything: nothing dirty is dropped. */
	uv_poll_stop(&srv.listen_poll);
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
			if (flusher_sync_all(cache) || ntfs_device_flush(vol->dev)) {
				log_error("write-back at shutdown failed: %s", ntfs_last_error());
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
