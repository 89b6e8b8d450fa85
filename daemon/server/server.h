/*
 * server.h — the control socket: a libuv loop serving clients.
 *
 * Invariants:
 *  - Everything here runs on the loop thread, except request bodies that
 *    touch the disk, which run on libuv's thread pool one at a time per
 *    connection; so a connection's replies leave in request order and a
 *    slow disk never stalls other clients' sockets.
 *  - A connection owns its open handles and the pins they took; when it
 *    goes away (orderly or because the client died) they are released, and
 *    any page lock still recorded under the client's pid is broken.
 *  - Malformed input (bad length, undecodable frame, unknown request,
 *    request before hello) gets an error reply or closes that connection
 *    only.
 */
#ifndef NTFSD_SERVER_H
#define NTFSD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

struct cache;
struct ntfs_volume;
struct flusher_pool;

struct server_config {
	const char *volume_path;
	const char *socket_path;
	bool read_only;
	int listen_fd;                  /* >= 0: already listening (socket activation) */
	struct flusher_pool *flushers;
	unsigned nr_flushers;
	/* SIGHUP: re-read the configuration (on the loop thread); may be NULL */
	void (*reload)(void *arg);
	void *reload_arg;
};

/* Serve until SIGTERM or SIGINT; returns the process exit status.  Under
 * systemd, reports readiness, status and watchdog pings (see notify.h). */
int server_run(const struct server_config *cfg, struct ntfs_volume *vol, struct cache *cache);

#endif
