/*
 * keeper.h — ntfsd-keeper: the process that holds a daemon's segments (and
 * its volume's open file description) across a crash of the daemon, when
 * systemd's fd store is not there.  The protocol is in fdstore.c.
 *
 * Invariants: the keeper is a detached grandchild in its own session; it
 * serves only peers of its own uid, one daemon at a time; it exits once
 * its daemon says BYE with nothing stored, or the volume file is deleted.
 */
#ifndef NTFSD_STORE_KEEPER_H
#define NTFSD_STORE_KEEPER_H

/* Bind the keeper's socket at path and fork the keeper for volume; 0 once
 * it listens, or -errno (-ECHILD: it died first). */
int keeper_spawn(const char *path, const char *volume);

#endif
