/*
 * notify.c — sd_notify(3) readiness, status and watchdog; socket activation.
 *
 * Invariants: see notify.h.
 */
#include <stdbool.h>

#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "cache.h"
#include "fdstore.h"
#include "log.h"
#include "shm_layout.h"

#define STATUS_INTERVAL_MS 5000

static void strv_free_names(char **names)
{
	char **p;

	for (p = names; p && *p; p++)
		free(*p);
	free(names);
}

int notify_listen_fd(char *path, size_t size, struct fdstore_entry **segs, size_t *nsegs)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	char **names = NULL;
	int n, i, fd = -1, flags, r, sockets = 0;

	if (size)
		path[0] = '\0';
	*segs = NULL;
	*nsegs = 0;
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		log_error("socket activation: %s", strerror(-n));
		return -2;
	}
	/* Segments systemd kept for us (FDSTORE=1) come back named seg.*, the
	 * volume's open file description named FDSTORE_VOLUME_NAME; the one
	 * other fd is the listening socket. */
	if (n > 0)
		*segs = calloc((size_t)n, sizeof(**segs));
	for (i = 0; i < n; i++) {
		const char *name = names && names[i] ? names[i] : "";

		if ((!strncmp(name, "seg.", 4) || !strcmp(name, FDSTORE_VOLUME_NAME)) && *segs) {
			snprintf((*segs)[*nsegs].name, sizeof((*segs)[*nsegs].name), "%s", name);
			(*segs)[(*nsegs)++].fd = SD_LISTEN_FDS_START + i;
			fcntl(SD_LISTEN_FDS_START + i, F_SETFD, FD_CLOEXEC);
		} else {
			fd = SD_LISTEN_FDS_START + i;
			sockets++;
		}
	}
	strv_free_names(names);
	if (sockets > 1) {
		log_error("socket activation: systemd passed %d sockets; ntfsd takes exactly one",
			  sockets);
		return -2;
	}
	if (sockets == 0)
		return -1;
	r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
	if (r <= 0) {
		log_error("socket activation: fd %d is not a listening unix stream socket%s%s", fd,
			  r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
		return -2;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		log_error("socket activation: fd %d: %m", fd);
		return -2;
	}
	memset(&sa, 0, sizeof(sa));
	if (size && getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
	    len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0]) {
		snprintf(path, size, "%.*s", (int)(len - offsetof(struct sockaddr_un, sun_path)),
			 sa.sun_path);
	}
	return fd;
}

static void send_status(struct notify *n, const char *prefix)
{
	struct shm_counters *c = &n->cache->header->counters;
	uint64_t dirty = atomic_load(&c->dirty_pages), wb = atomic_load(&c->writeback_pages);
	unsigned clients = (unsigned)atomic_load(&c->clients);

	sd_notifyf(0, "%sSTATUS=serving %s: %u client%s, dirty %" PRIu64 " KiB (%" PRIu64
		   " pages), writeback %" PRIu64 " KiB (%" PRIu64 " pages)",
		   prefix, n->volume_path, clients, clients == 1 ? "" : "s",
		   dirty << (NTFSD_PAGE_SHIFT - 10), dirty, wb << (NTFSD_PAGE_SHIFT - 10), wb);
}

/* The first run, from inside the running loop, reports READY=1. */
static void on_status_timer(uv_timer_t *t)
{
	struct notify *n = t->data;

	send_status(n, n->ready ? "" : n->watchdog ? "READY=1\nWATCHDOG=1\n" : "READY=1\n");
	n->ready = true;
}

static void on_watchdog_timer(uv_timer_t *t)
{
	(void)t;
	sd_notify(0, "WATCHDOG=1");
}

void notify_ready(struct notify *n, uv_loop_t *loop, struct cache *cache,
		  const char *volume_path)
{
	uint64_t usec = 0;

	n->cache = cache;
	n->volume_path = volume_path;
	n->watchdog = false;
	n->ready = false;
	if (!getenv("NOTIFY_SOCKET"))
		return;
	uv_timer_init(loop, &n->status_timer);
	n->status_timer.data = n;
	uv_timer_start(&n->status_timer, on_status_timer, 0, STATUS_INTERVAL_MS);
	if (sd_watchdog_enabled(0, &usec) > 0 && usec) {
		uint64_t ms = usec / 2000;

		if (!ms)
			ms = 1;
		uv_timer_init(loop, &n->watchdog_timer);
		n->watchdog_timer.data = n;
		uv_timer_start(&n->watchdog_timer, on_watchdog_timer, ms, ms);
		n->watchdog = true;
		log_info("systemd watchdog: pinging every %" PRIu64 " ms", ms);
	}
}

void notify_stopping(const char *why)
{
	sd_notifyf(0, "STOPPING=1\nSTATUS=%s: shutting down", why);
}

void notify_status(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!getenv("NOTIFY_SOCKET"))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sd_notifyf(0, "STATUS=%s", buf);
}

void notify_reloading(void)
{
	sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
}

void notify_reloaded(void)
{
	sd_notify(0, "READY=1");
}
