/*
 * ntfs_aops.h — NTFS under the page cache: its address-space operations
 * (cache/aops.h) and the cache made over a volume with them.
 *
 * daemon/aops/ is the only code that knows both the cache and the on-disk
 * format.  It is not part of daemon/ntfs/ so that the on-disk layer stays
 * a library of its own (ntfsd-read, the fuzzer and the format tests link
 * it without a cache).
 */
#ifndef NTFSD_AOPS_NTFS_AOPS_H
#define NTFSD_AOPS_NTFS_AOPS_H

#include <stdint.h>

struct cache;
struct ntfs_volume;

extern const struct address_space_operations ntfs_aops;

/* cache_create() over vol with NTFS's operations and geometry. */
int ntfs_cache_create(struct ntfs_volume *vol, uint64_t limit_bytes, struct cache **out);

#endif
