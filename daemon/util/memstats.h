/*
 * memstats.h — what the daemon's memory allocator says about itself, for
 * `ntfsctl status`.
 *
 * Invariants: memstats_read() always fills in every member (it has no
 * error return) and may be called from any thread.  The allocator it names is the one this ntfsd
 * was built with: "jemalloc" only when ntfsd is linked with jemalloc
 * (NTFSD_HAVE_JEMALLOC, set by meson), and then the figures are jemalloc's
 * own ("stats.allocated", "stats.resident", fresh after an "epoch"
 * refresh).  Otherwise the name is "asan" (an AddressSanitizer build: its
 * allocator's figures) or "glibc" (mallinfo2()), never "jemalloc", so a
 * reader can always tell whose figures it is looking at.  When the figures
 * cannot be had, available is false and both are 0.
 */
#ifndef NTFSD_MEMSTATS_H
#define NTFSD_MEMSTATS_H

#include <stdbool.h>
#include <stdint.h>

struct memstats {
	const char *allocator;  /* "jemalloc", "asan" or "glibc"; static storage */
	bool available;         /* allocated and resident are known */
	uint64_t allocated;     /* bytes in live allocations */
	/* bytes the allocator holds in memory: jemalloc's stats.resident
	 * (resident data pages of its own, including metadata); asan: its heap
	 * size; glibc: arena + mmapped chunks from mallinfo2() (address space
	 * obtained from the system, an upper bound of what is resident). */
	uint64_t resident;
};

void memstats_read(struct memstats *ms);

#endif
