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
 *  - What a client can make the daemon hold is bounded by struct
 *    server_limits: input received and not yet processed (per connection
 *    and in total), open handles, replies queued because the client does
 *    not read them.  Over a limit the connection is dropped, except that an
 *    open past max-conn-handles is refused with EMFILE; either way a
 *    warning names the client's pid and uid, the limit and its value.
 *  - When accept() runs out of descriptors (EMFILE, ENFILE) or memory the
 *    listener is not polled for ACCEPT_BACKOFF_MS at a time, and the
 *    episode is logged once, when it starts (and once when it ends).
 */
#ifndef NTFSD_SERVER_H
#define NTFSD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

struct cache;
struct flusher_pool;

/* Defaults of struct server_limits (documented in --help, ntfsd(8), the
 * README and deploy/ntfsd.conf.example). */
#define SERVER_DEFAULT_CONN_INFLIGHT (1ull << 20)
#define SERVER_DEFAULT_INFLIGHT (64ull << 20)
#define SERVER_DEFAULT_CONN_HANDLES 4096u
#define SERVER_DEFAULT_CONN_REPLIES 64u
#define SERVER_DEFAULT_CONN_REPLY_BYTES (4ull << 20)
#define SERVER_DEFAULT_UID_HANDLES 768u
#define SERVER_DEFAULT_UID_CONNS 256u
#define SERVER_MIN_CONN_INFLIGHT (64ull << 10)  /* the largest valid request fits */

/*
 * Per-client resource limits; every field is set (main fills the defaults).
 * Read on every use, on the loop thread, so a SIGHUP reload may change them
 * while clients are connected; a lowered limit applies from the next read,
 * reply or open on (it closes no handle already open).
 */
struct server_limits {
	/* bytes one connection's received, unprocessed requests may occupy
	 * (its input buffer plus the request it runs); a frame announced
	 * larger than this (with its 4-byte length) is refused at once */
	uint64_t conn_inflight;
	/* the same over all connections: past it, the connection holding the
	 * most is dropped */
	uint64_t inflight;
	unsigned conn_handles;          /* open handles per connection (EMFILE) */
	unsigned conn_replies;          /* replies queued unsent per connection */
	uint64_t conn_reply_bytes;      /* their bytes; a lone reply may exceed it */
	unsigned uid_handles;           /* open handles of one uid, all connections (EMFILE) */
	unsigned uid_conns;             /* connections of one uid */
	unsigned lock_hold_ms;          /* see cache.h max_lock_hold_ms */
};

struct server_config {
	const char *volume_path;
	const char *socket_path;
	bool read_only;
	unsigned socket_mode;           /* of the socket we create (not an activated one) */
	int socket_gid;                 /* its group; -1: the daemon's */
	int listen_fd;                  /* >= 0: already listening (socket activation) */
	struct flusher_pool *flushers;
	unsigned nr_flushers;
	/* SIGHUP: re-read the configuration (on the loop thread); may be NULL */
	void (*reload)(void *arg);
	void *reload_arg;
	const struct server_limits *limits;
};

/* Serve until SIGTERM or SIGINT; returns the process exit status.  Under
 * systemd, reports readiness, status and watchdog pings (see notify.h). */
int server_run(const struct server_config *cfg, struct cache *cache);

#endif
