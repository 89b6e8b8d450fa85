/*
 * memstats.c — see memstats.h.
 */
#include "memstats.h"

#include <string.h>

#if defined(NTFSD_HAVE_JEMALLOC)
#include <jemalloc/jemalloc.h>
#else
#if defined(__SANITIZE_ADDRESS__)
#define NTFSD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NTFSD_ASAN 1
#endif
#endif
#if defined(NTFSD_ASAN)
#include <stddef.h>
/* The sanitizers' allocator interface (<sanitizer/allocator_interface.h>
 * comes with clang only; gcc's libasan exports the same functions). */
size_t __sanitizer_get_current_allocated_bytes(void);
size_t __sanitizer_get_heap_size(void);
#else
#include <malloc.h>
#endif
#endif

void memstats_read(struct memstats *ms)
{
	memset(ms, 0, sizeof(*ms));
#if defined(NTFSD_HAVE_JEMALLOC)
	/* Debian's jemalloc exports the unprefixed mallctl (no je_ prefix). */
	uint64_t epoch = 1;
	size_t allocated = 0, resident = 0;
	size_t esz = sizeof(epoch), sz = sizeof(size_t);

	ms->allocator = "jemalloc";
	/* The statistics are a snapshot taken at the last epoch: refresh it. */
	if (mallctl("epoch", &epoch, &esz, &epoch, esz))
		return;
	if (mallctl("stats.allocated", &allocated, &sz, NULL, 0))
		return;
	sz = sizeof(size_t);
	if (mallctl("stats.resident", &resident, &sz, NULL, 0))
		return;
	ms->allocated = allocated;
	ms->resident = resident;
	ms->available = true;
#elif defined(NTFSD_ASAN)
	ms->allocator = "asan";
	ms->allocated = __sanitizer_get_current_allocated_bytes();
	ms->resident = __sanitizer_get_heap_size();
	ms->available = true;
#else
	struct mallinfo2 mi = mallinfo2();

	ms->allocator = "glibc";
	ms->allocated = (uint64_t)mi.uordblks + mi.hblkhd;
	ms->resident = (uint64_t)mi.arena + mi.hblkhd;
	ms->available = true;
#endif
}
