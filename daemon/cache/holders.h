/*
 * holders.h — who may hold a page lock: the lock ids the daemon hands out.
 *
 * Every client connection gets a lock id at hello (2 .. NTFSD_LOCK_OWNER_MAX,
 * never one in use, never NTFSD_LOCK_OWNER_DAEMON) and records it in the
 * page locks it takes, so the id is one the daemon can check whatever PID
 * namespace the client lives in.  The table knows, per id, the files the
 * connection has writable handles on: only such a holder can take a page
 * lock legitimately (a read-only handle maps the page state read-only),
 * and each holder has a lock table only its connection can write
 * (shm_layout.h): a lock that names it without an entry there is forged
 * in its name.
 *
 * Invariants: one mutex guards the table (rank 8 of the lock order in
 * cache.h: a leaf, taken under page locks and cache->lock; the page-lock
 * paths judge a client's lock with it); the expire callback runs under
 * it, at most once per holder, and cache_holder_remove() takes it too, so
 * the callback never runs for a connection being freed.  A cache with no
 * table (tools, unit tests) trusts every lock it sees, as before.
 */
#ifndef NTFSD_CACHE_HOLDERS_H
#define NTFSD_CACHE_HOLDERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct cache;
struct cache_inode;

/* Give the cache a holder table (once, before serving). */
int cache_holders_init(struct cache *c);
void cache_holders_destroy(struct cache *c);

/* A new holder (a connection of pid/uid); expire(arg) disconnects it.
 * 0 and *id, or -EAGAIN when every id is taken. */
int cache_holder_add(struct cache *c, pid_t pid, uid_t uid, void (*expire)(void *arg),
		     void *arg, uint32_t *id);
/* The holder's lock table (shm_layout.h), made at its first call (at
 * hello, so a connection that never says hello costs no descriptor but
 * its socket): *fd stays the holder's, give the client a dup.  0 with
 * *fd = -1 without a holder table; -errno of memfd_create or mmap. */
int cache_holder_lock_table(struct cache *c, uint32_t id, int *fd);
void cache_holder_remove(struct cache *c, uint32_t id);
/* The holder opened (delta 1) or closed (-1) a writable handle on ci. */
void cache_holder_writer(struct cache *c, uint32_t id, struct cache_inode *ci, int delta);
/* True when id may hold a page lock of ci now: a connected, unexpired
 * holder with a writable handle on it. */
bool cache_holder_may_lock(struct cache *c, uint32_t id, struct cache_inode *ci);
/* True when id's lock table has an entry for page index of ci (it holds
 * the page's lock or is taking it); false for a lock forged in its name. */
bool cache_holder_claims(struct cache *c, uint32_t id, struct cache_inode *ci, uint64_t index);
/* id has held page `index` of ci for held_ms, past max_lock_hold_ms: log
 * and disconnect it (once). */
void cache_holder_expire(struct cache *c, uint32_t id, struct cache_inode *ci, uint64_t index,
			 uint64_t held_ms);

#endif
