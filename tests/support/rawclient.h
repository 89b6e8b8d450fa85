/*
 * rawclient.h — a raw control-protocol client for the tests: requests
 * libntfsc would never send, and the shared segments mapped as they come,
 * so that a test can play a misbehaving or hostile client.
 *
 * Invariants:
 *   - Nothing here fails a cmocka test or exits: every call returns 0, a
 *     value or a pointer on success and -errno (or NULL with errno set) on
 *     failure, so the same calls serve the test process and its forked
 *     children (which report through their exit status).
 *   - A refusal by the daemon (a reply with error != 0) is returned as the
 *     negated errno of the reply, and its message is kept for
 *     raw_last_message() (per thread) until the next call here.
 *   - Every fd received is close-on-exec (frame_recv() asks for it); fds a
 *     caller did not ask for are closed, never leaked.
 *   - raw_call() numbers its requests itself (one counter per process) and
 *     checks that the reply carries the request's id.
 */
#ifndef NTFSD_TESTS_RAWCLIENT_H
#define NTFSD_TESTS_RAWCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ntfsd.pb-c.h"
#include "shm_layout.h"

/* Connect to the daemon's socket; with timeout_ms > 0 sends and receives
 * time out (SO_SNDTIMEO/SO_RCVTIMEO) so a daemon that never answers cannot
 * hang the caller.  The fd, or -errno. */
int raw_connect(const char *socket_path, int timeout_ms);
/* Send rq as one frame.  0 or -errno. */
int raw_send(int fd, const Ntfsd__Request *rq);
/* The next reply, unpacked (free it with ntfsd__reply__free_unpacked).
 * Up to max_fds fds it carried go into fds (*nfds set), the rest are
 * closed; fds may be NULL (all closed).  NULL with errno ECONNRESET when
 * the daemon hung up, EAGAIN on a receive timeout, EBADMSG for a frame
 * that does not decode. */
Ntfsd__Reply *raw_recv(int fd, int *fds, int max_fds, int *nfds);
/* Send rq (its id set here) and receive its reply; NULL as raw_recv(), or
 * EPROTO when the reply answers another id.  Does not look at
 * reply->error. */
Ntfsd__Reply *raw_call(int fd, Ntfsd__Request *rq, int *fds, int max_fds, int *nfds);

/* What a hello answer said. */
struct raw_hello_info {
	uint32_t protocol_version, layout_version;
	bool read_only;
	/* HelloReply.lock_owner (field 5), read from the wire so that it is
	 * seen whether or not this build's generated code knows the field;
	 * 0 when the daemon did not send it */
	uint32_t lock_owner;
	int header_fd;          /* the volume header segment, -1 if none came */
	int lock_table_fd;      /* this connection's lock table, -1 if none came */
	struct shm_lock_table *locks;   /* mapped read-write, NULL if none came */
};

/* Hello as client_name (NULL: "rawclient").  info may be NULL (the header
 * fd is then closed).  0, or -errno (the daemon's refusal, or the
 * connection's failure). */
int raw_hello(int fd, const char *client_name, struct raw_hello_info *info);
/* Say in our lock table that we hold page `page` of the file in inode slot
 * `slot` (as libntfsc does around every page lock it takes); the entry's
 * index, or -1 with no table or no free entry.  raw_lock_unclaim() frees
 * it.  A raw client that takes a lock without a claim has its lock broken
 * as forged when the daemon meets it. */
int raw_lock_claim(const struct raw_hello_info *info, uint32_t slot, uint64_t page);
void raw_lock_unclaim(const struct raw_hello_info *info, int entry);
/* Unmap the lock table and close both fds. */
void raw_hello_info_free(struct raw_hello_info *info);
/* The id this connection takes page locks with: HelloReply.lock_owner,
 * or, from a daemon that does not assign one, the caller's pid. */
uint32_t raw_lock_id(const struct raw_hello_info *info);

/* An open file and its segments, mapped as the fds allow: read-write when
 * the daemon sent an O_RDWR fd, read-only otherwise. */
struct raw_file {
	uint64_t handle;
	uint32_t inode_slot;
	uint64_t mft_no, nr_pages;
	bool writable;                  /* OpenReply.writable */
	int data_fd, state_fd;          /* -1 when closed */
	int data_mode, state_mode;      /* O_RDONLY or O_RDWR: the fds' access modes */
	uint8_t *data;                  /* NULL if the data segment is empty */
	size_t data_len;
	struct shm_file_header *h;      /* the page-state segment */
	size_t state_len;
	struct shm_page *pages;         /* as the header said at open */
};

/* Open path (write: a read-write open) and map its segments.  0, or
 * -errno: the daemon's refusal, or EPROTO when the reply does not carry
 * two fds or the page-state header is not valid. */
int raw_open(int fd, const char *path, bool write, struct raw_file *f);
/* Unmap and close what raw_open() mapped (the handle stays open at the
 * daemon: send a close, or drop the connection). */
void raw_file_unmap(struct raw_file *f);
int raw_close(int fd, uint64_t handle);
int raw_fault_in(int fd, uint64_t handle, uint64_t first, uint64_t nr_pages, bool pin);
int raw_prepare_write(int fd, uint64_t handle, uint64_t first, uint64_t nr_pages,
		      uint64_t write_start, uint64_t write_end);
/* handle 0: the whole volume */
int raw_sync(int fd, uint64_t handle);

/* The daemon's message with the last refusal seen by this thread ("" if
 * none). */
const char *raw_last_message(void);

#endif
