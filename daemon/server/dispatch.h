/*
 * dispatch.h — connections, open handles, and turning requests into cache
 * operations and replies.
 *
 * Invariants: a struct handle belongs to exactly one connection; its pins
 * array counts the page pins this handle took, so releasing a handle drops
 * exactly those.  Request bodies that do disk I/O run on the thread pool
 * with conn->busy set; nothing else touches that connection's handles
 * meanwhile.  An open is refused with EMFILE (before it touches the disk)
 * while the connection holds limits->conn_handles handles, so nr_handles
 * never exceeds the limit in force when each open was routed.
 */
#ifndef NTFSD_DISPATCH_H
#define NTFSD_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct cache;
struct cache_inode;
struct outmsg;
struct server_limits;

struct server {
	uv_loop_t *loop;
	struct cache *cache;
	const char *volume_path;
	const char *socket_path;
	bool read_only;
	bool stopping;
	int listen_fd;
	uv_poll_t listen_poll;
	struct conn *conns;
	uint64_t next_handle;
	struct flusher_pool *flushers;
	unsigned nr_flushers;
	uv_timer_t stats_timer;
	const struct server_limits *limits;
	uint64_t inflight;              /* sum of every connection's in_charged */
	uv_timer_t accept_timer;        /* resumes accepting after a backoff */
	unsigned accept_pauses;         /* backoffs in this episode; 0: none */
};

struct handle {
	struct handle *next;
	uint64_t id;
	struct cache_inode *ci;
	bool writable;
	uint32_t *pins;                 /* per page, pins held by this handle */
	uint64_t nr_pins;               /* pages pins covers (grows with the file) */
	uint64_t ra_next;               /* page a sequential reader asks for next */
	uint64_t ra_window;             /* readahead pages */
	uint64_t ra_end;                /* end of the last readahead started */
	uint32_t errseq;                /* the inode's write errors this handle saw */
};

struct conn {
	struct conn *next;
	struct server *srv;
	int fd;
	pid_t pid;
	uid_t uid;
	uint32_t lock_id;               /* its page locks' owner id (holders.h) */
	gid_t gid;
	uv_poll_t poll;
	uv_poll_cb poll_cb;
	int poll_events;
	bool hello_done;
	bool busy;                      /* a request runs on the thread pool */
	bool closing;
	bool poll_closed;
	bool processing;                /* inside conn_process() */
	bool handles_warned;            /* max-conn-handles already logged */
	uint8_t *in;                    /* received, not yet dispatched; NULL when empty */
	size_t in_len, in_cap;
	size_t in_running;              /* frame length of the request running */
	uint64_t in_charged;            /* in_cap + in_running, counted in srv->inflight */
	struct outmsg *out;
	unsigned out_count;             /* replies queued, not yet wholly sent */
	size_t out_bytes;               /* their unsent bytes */
	struct handle *handles;
	unsigned nr_handles;
};

/* server.c */
int conn_send(struct conn *cn, const uint8_t *payload, size_t len, const int *fds, int nfds);
void conn_request_done(struct conn *cn);
void conn_shutdown(struct conn *cn, const char *why);

/* dispatch.c */
void dispatch_request(struct conn *cn, const uint8_t *frame, size_t len);
void dispatch_send_error(struct conn *cn, uint64_t id, int err, const char *msg);
void dispatch_release_conn(struct conn *cn);

#endif
