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
 * Invariants: a segment is stored when it is created and removed when its
 * inode is freed, so the store holds exactly the live segments.  Nothing
 * fetched from a store is trusted: cache_adopt() validates every byte it
 * uses.  The keeper serves one daemon at a time; a second daemon for the
 * same volume file is refused (-EBUSY), which doubles as the lock that
 * keeps two daemons off one volume.  The keeper exits when its daemon
 * disconnects and the store is empty (a clean shutdown), and otherwise
 * keeps the segments for the next daemon.
 */
#ifndef NTFSD_FDSTORE_H
#define NTFSD_FDSTORE_H

#include <stddef.h>
#include <stdint.h>

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

/* Disconnect.  The keeper exits if nothing is stored any more. */
void fdstore_close(struct fdstore *s);

#endif
