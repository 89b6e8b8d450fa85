/*
 * crashpoint.h — named places where the daemon can be made to die, for the
 * crash tests: NTFSD_CRASHPOINT=NAME[:N] makes the N-th (default: the
 * first) call of crashpoint("NAME") log one line and raise(SIGKILL), as a
 * power cut or a kill -9 at exactly that moment would stop it.
 *
 * Invariants: the environment is read once (crashpoint_init() at startup,
 * or the first crashpoint() call); unset, a call costs one relaxed load
 * and returns.  Only the named point counts hits (atomically, so the N-th
 * hit is the N-th across all threads); nothing else changes behaviour.
 */
#ifndef NTFSD_CRASHPOINT_H
#define NTFSD_CRASHPOINT_H

/* Read NTFSD_CRASHPOINT and log what is armed (idempotent). */
void crashpoint_init(void);
/* Die here (SIGKILL) if this is the armed point's N-th hit. */
void crashpoint(const char *name);

#endif
