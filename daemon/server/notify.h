/*
 * notify.h — talking to systemd: readiness, status, watchdog, socket
 * activation.
 *
 * Invariants: every call is a no-op when the daemon was not started by
 * systemd (NOTIFY_SOCKET, WATCHDOG_USEC, LISTEN_FDS unset).  The watchdog
 * and status timers run on the loop thread, so a loop that is stuck stops
 * pinging the watchdog and systemd restarts the service.
 */
#ifndef NTFSD_NOTIFY_H
#define NTFSD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct cache;

struct notify {
	uv_timer_t status_timer;
	uv_timer_t watchdog_timer;
	struct cache *cache;
	const char *volume_path;
	bool watchdog;
	bool ready;
};

struct fdstore_entry;

/*
 * The listening socket systemd passed (LISTEN_FDS/LISTEN_PID), made
 * non-blocking and close-on-exec, with its path in path (if it has one);
 * -1 when none was passed, -2 (logged) when what was passed is unusable.
 * Segments from systemd's file-descriptor store (names seg.*), and the
 * volume's fd kept there (FDSTORE_VOLUME_NAME), are returned in *segs (the
 * caller frees the array and owns the fds).
 */
int notify_listen_fd(char *path, size_t size, struct fdstore_entry **segs, size_t *nsegs);

/* Start the status and watchdog timers on loop; READY=1 follows from the
 * loop's first iteration. */
void notify_ready(struct notify *n, uv_loop_t *loop, struct cache *cache,
		  const char *volume_path);
/* Report STOPPING=1 (with a status line saying why). */
void notify_stopping(const char *why);
/* Report a free-form STATUS= line. */
__attribute__((format(printf, 1, 2))) void notify_status(const char *fmt, ...);
/* Report RELOADING=1 / READY=1 around a configuration reload. */
void notify_reloading(void);
void notify_reloaded(void);

#endif
