/*
 * fdstore.h — keeping the cache's shared segments alive across a crash of
 * the daemon.
 *
 * Dirty pages live in memfds the daemon created; if the daemon dies, the
 * memfds die with it unless another process holds them.  Two holders:
 *  - systemd's file-descriptor store (FDSTORE=1 / FDSTOREREMOVE=1 with
 *    FDNAME=, FileDescriptorStoreMax= in the unit); a restarted service
 *    gets the fds back through LISTEN_FDS / LISTEN_FDNAMES;
 *  - without systemd, the keeper: a small process ntfsd forks, listening on
 *    a socket under /dev/shm (mode 0600, one per volume file) and speaking
 *    the same store/remove verbs; a restarted daemon fetches from it.  It
 *    exits once its daemon has gone with nothing stored, or once the
 *    volume file itself is gone (nobody could write the segments back).
 *
 * The store also holds the volume itself: a duplicate of the daemon's
 * open file description of it, which carries the daemon's lock and, on a
 * block device, its exclusive open (daemon/owner.h).  So after a crash
 * the volume stays locked while its dirty pages wait in the store, and the
 * next daemon takes the same description back (fdstore_take_volume(), or
 * LISTEN_FDS under systemd) instead of opening the volume afresh, which
 * the lock would refuse.
 *
 * Invariants: a segment is stored when it is created and removed when its
 * inode is freed, so the store holds exactly the live segments.  Nothing
 * fetched from a store is trusted: cache_adopt() validates every byte it
 * uses, owner_open() checks a handed-back volume.  The keeper serves one
 * daemon at a time; a second daemon for the same volume file is refused
 * (-EBUSY).  The keeper exits when its daemon disconnects, or says BYE,
 * and the store is empty (a clean shutdown), letting go of the volume
 * before it answers BYE; otherwise it keeps the segments, and the volume,
 * for the next daemon.
 */
#ifndef NTFSD_FDSTORE_H
#define NTFSD_FDSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The name the volume's fd is stored under in systemd's store. */
#define FDSTORE_VOLUME_NAME "volume"

enum fdstore_mode {
	FDSTORE_NONE,
	FDSTORE_SYSTEMD,
	FDSTORE_KEEPER,
};

struct fdstore_entry {
	char name[64];
	int fd;
};

struct fdstore;

/* The mode for a --fd-store value: "auto" (systemd when it announced a
 * store with $FDSTORE, else the keeper), "systemd", "keeper", "none".
 * Returns -1 for anything else. */
int fdstore_parse_mode(const char *s, enum fdstore_mode *out);
const char *fdstore_mode_name(enum fdstore_mode mode);

/* Open the store.  Keeper mode connects to the keeper of the volume file
 * (its device, inode and birth time) under dir, starting one if none runs:
 * call it before any thread exists (it forks).  -EBUSY (logged with the
 * path) when another daemon is connected to that keeper.  volume must
 * outlive the store. */
int fdstore_open(enum fdstore_mode mode, const char *dir, const char *volume,
		 struct fdstore **out);
enum fdstore_mode fdstore_mode(const struct fdstore *s);
const char *fdstore_describe(const struct fdstore *s);

/* Segments a previous daemon stored (keeper mode: fetched from the keeper;
 * they stay stored).  The caller owns the fds and frees *out. */
int fdstore_fetch(struct fdstore *s, struct fdstore_entry **out, size_t *n);

/* Store fd under name (the store takes its own reference), or drop name. */
int fdstore_put(struct fdstore *s, const char *name, int fd);
void fdstore_remove(struct fdstore *s, const char *name);

/* The volume's fd the keeper kept for the previous daemon, or -1 (none,
 * not keeper mode, a keeper too old to hold it).  The caller owns it. */
int fdstore_take_volume(struct fdstore *s);
/* Store a duplicate of the volume's fd (keeper, systemd; a no-op for
 * none).  A failure is logged: the daemon runs on, unprotected after a
 * crash. */
int fdstore_hold_volume(struct fdstore *s, int fd);

/* Disconnect.  The keeper exits if nothing is stored any more, and has let
 * go of the volume when this returns (waiting at most 5 s for it).  Under
 * systemd, release_volume removes the volume's fd from the store: pass it
 * when nothing is left stored (everything was written back). */
void fdstore_close(struct fdstore *s, bool release_volume);

#endif
