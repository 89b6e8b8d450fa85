/*
 * shm_layout.h — the shared-memory contract between ntfsd and its clients.
 *
 * Three kinds of segment (memfds passed over the control socket):
 *  - the volume header (one per daemon; clients map it read-only): sizes,
 *    counters and the open-inode table whose sizes are read under a
 *    per-slot seqcount;
 *  - a data segment per open file: byte N of the file is byte N of the
 *    segment; sparse; sealed against shrinking;
 *  - a page-state segment per open file: a header, a two-level dirty bitmap
 *    and one struct shm_page per page.
 *
 * Both per-file segments grow in place while the file is open (a file
 * growing past its room): the memfds only ever get longer, the bitmaps
 * are laid out for max_pages from the start, so growth appends page
 * descriptors and data at the end and moves nothing.  Whoever has the old
 * length mapped keeps a valid view of the pages it covers; a new mapping
 * covers the rest.
 *
 * Invariants:
 *  - Every struct here has a fixed size and layout on all builds
 *    (_Static_assert), no pointers, and only lock-free atomics, so two
 *    processes built separately agree on it.  NTFSD_SHM_LAYOUT_VERSION
 *    changes whenever a byte of this file's meaning does.
 *  - Only the daemon writes the volume header, the inode table and pin
 *    counts.  Clients that opened a file read-only map its segments
 *    read-only (the memfds have mode 0600, so the descriptor cannot be
 *    reopened writable either).  A page-state segment is writable by every
 *    writer of its file, so the daemon keeps its geometry, its page locks,
 *    writeback bits, pins and dirty counts in private memory and treats
 *    what it reads there (flags, dirty bits, lock owners) as claims to
 *    check: see daemon/cache/page_lock.h.
 *  - A page's flags word is the futex for its lock and for waiting on its
 *    bits (see page.h).
 */
#ifndef NTFSD_SHM_LAYOUT_H
#define NTFSD_SHM_LAYOUT_H

#include <stdatomic.h>
#include <stdint.h>

#define NTFSD_SHM_LAYOUT_VERSION 6u
#define NTFSD_SHM_VOLUME_MAGIC 0x31564453464e544eULL /* "NTNFSDV1" */
#define NTFSD_SHM_FILE_MAGIC 0x31464453464e544eULL   /* "NTNFSDF1" */

#define NTFSD_PAGE_SIZE 4096u
#define NTFSD_PAGE_SHIFT 12u
#define NTFSD_MAX_BUFFERS_PER_PAGE 8u   /* a 4096-byte page of 512-byte sectors */
#define NTFSD_MAX_INODES 1024u          /* open files per daemon */

_Static_assert(sizeof(_Atomic uint32_t) == 4, "atomic u32 size");
_Static_assert(sizeof(_Atomic uint64_t) == 8, "atomic u64 size");

/* ---- page flags (struct shm_page.flags) ---- */
#define PG_locked      (1u << 0)  /* held by lock_page(); owner in lock_owner */
#define PG_waiters     (1u << 1)  /* someone sleeps on this page's futex */
#define PG_uptodate    (1u << 2)  /* the data segment holds the file's bytes */
#define PG_dirty       (1u << 3)  /* a hint: buffer bits are definitive */
#define PG_writeback   (1u << 4)  /* I/O submitted, not yet completed */
#define PG_error       (1u << 5)  /* a writeback of the page failed, and no write
				   * of all of it has succeeded since: the disk
				   * may not hold the (clean) bytes cached */
#define PG_write_ready (1u << 6)  /* prepare-write done: may be dirtied */
#define PG_buffers     (1u << 7)  /* buffer bitmaps are valid (page has buffers) */
/* Bits 10..31 hold the lock id of the holder while PG_locked is set, so
 * taking, dropping and breaking a lock are each one atomic operation and a
 * holder killed at any instruction leaves a lock that names it.  Lock ids
 * are the daemon's to give: NTFSD_LOCK_OWNER_DAEMON for its own locks, and
 * for each client connection the id in its HelloReply (not its pid, which
 * the daemon cannot check across PID namespaces). */
#define PG_OWNER_SHIFT 10u
#define PG_OWNER_MASK  (~0u << PG_OWNER_SHIFT)
#define NTFSD_LOCK_OWNER_DAEMON 1u
#define NTFSD_LOCK_OWNER_MAX (PG_OWNER_MASK >> PG_OWNER_SHIFT)

/* One per page of a file: 64 bytes, a cache line. */
struct shm_page {
	_Atomic uint32_t flags;
	_Atomic uint32_t pincount;        /* written by the daemon only */
	_Atomic uint32_t lock_owner;      /* mirror of the owner bits, for display */
	_Atomic uint32_t generation;      /* bumped whenever the page's data is dropped */
	_Atomic uint32_t buf_dirty;       /* bit b: buffer b of the page is dirty */
	_Atomic uint32_t buf_uptodate;    /* bit b: buffer b holds the file's bytes */
	_Atomic uint64_t first_dirtied_ns;/* CLOCK_MONOTONIC when it became dirty, 0 if clean */
	uint8_t reserved[32];
};
_Static_assert(sizeof(struct shm_page) == 64, "page descriptor size");

/* Header of a page-state segment.  Followed (at the offsets it gives) by the
 * level-1 dirty bitmap (bit w set while level-2 word w is non-zero), the
 * level-2 dirty bitmap (bit p set while page p is dirty) and the page
 * descriptors.  All offsets are multiples of 64.  The bitmaps are sized for
 * max_pages, the descriptors (and segment_size) for nr_pages, the pages
 * the segment holds now; growth raises nr_pages (up to max_pages) and
 * segment_size, after the memfd got longer. */
struct shm_file_header {
	uint64_t magic;                   /* NTFSD_SHM_FILE_MAGIC */
	uint32_t layout_version;
	uint32_t page_size;
	uint32_t buffer_size;
	uint32_t buffers_per_page;
	uint64_t nr_pages;                /* descriptors in the segment */
	uint64_t l1_words;
	uint64_t l2_words;
	uint64_t l1_offset;
	uint64_t l2_offset;
	uint64_t pages_offset;
	uint64_t segment_size;
	_Atomic uint64_t nr_dirty;        /* pages with PG_dirty */
	/* Whose pages these are, for a daemon that re-adopts the segment after
	 * a crash (written by the daemon only; checked against the volume). */
	uint64_t volume_serial;
	uint64_t mft_no;
	_Atomic uint64_t i_size;          /* the daemon's i_size, ahead of the MFT record */
	uint16_t seq_no;                  /* the MFT record's sequence number */
	uint8_t reserved0[6];
	uint64_t max_pages;               /* what the bitmaps are laid out for */
	uint8_t reserved[64];
};
_Static_assert(sizeof(struct shm_file_header) == 192, "file header size");

/* A connection's lock table: one per client connection, a memfd the daemon
 * makes and shares with that client only (mode 0600, read-write), so no
 * other client can write it.  A thread of the client puts the key of a
 * page in a free entry before it takes the page's lock, marks it
 * NTFSD_LOCK_HELD once the lock is its own, and frees the entry only
 * after it released the lock.  So a lock that names the connection while
 * its table has no entry for the page was forged in its name, and the
 * daemon breaks it rather than wait for (and in the end disconnect) a
 * client that never took it. */
#define NTFSD_LOCK_TABLE_ENTRIES 16384u
#define NTFSD_LOCK_HELD (1ull << 63)

static inline uint64_t ntfsd_lock_key(uint32_t inode_slot, uint64_t page)
{
	return ((uint64_t)(inode_slot + 1) << 32) | (page & 0xffffffffull);
}

struct shm_lock_table {
	_Atomic uint64_t entry[NTFSD_LOCK_TABLE_ENTRIES];   /* 0: free */
};
_Static_assert(sizeof(struct shm_lock_table) == 8 * NTFSD_LOCK_TABLE_ENTRIES,
	       "lock table size");

/* Sizes of an open inode, published under a seqcount: the writer makes seq
 * odd, stores, makes it even; a reader retries while seq is odd or changed. */
struct shm_inode_slot {
	_Atomic uint32_t seq;
	uint32_t in_use;
	uint64_t mft_no;
	_Atomic uint64_t i_size;
	_Atomic uint64_t initialized_size;
	_Atomic uint64_t allocated_size;
	uint64_t reserved[3];
};
_Static_assert(sizeof(struct shm_inode_slot) == 64, "inode slot size");

struct shm_counters {
	_Atomic uint64_t cache_limit;     /* bytes */
	_Atomic uint64_t cached_pages;    /* uptodate pages in data segments */
	_Atomic uint64_t dirty_pages;
	_Atomic uint64_t writeback_pages;
	_Atomic uint64_t pages_read;      /* readpage calls */
	_Atomic uint64_t pages_reclaimed;
	_Atomic uint64_t open_files;
	_Atomic uint64_t clients;
};
_Static_assert(sizeof(struct shm_counters) == 64, "counters size");

struct shm_volume_header {
	uint64_t magic;                   /* NTFSD_SHM_VOLUME_MAGIC */
	uint32_t layout_version;
	uint32_t page_size;
	uint32_t buffer_size;             /* = the volume's sector size */
	uint32_t cluster_size;
	uint32_t max_inodes;
	uint32_t reserved0;
	_Atomic uint64_t dirty_limit;     /* bytes: writers past it must balance_dirty */
	_Atomic uint64_t dirty_background;/* bytes: background writeback starts */
	uint8_t reserved[16];
	struct shm_counters counters;
	struct shm_inode_slot inodes[NTFSD_MAX_INODES];
};
_Static_assert(sizeof(struct shm_volume_header) == 128 + 64 * NTFSD_MAX_INODES,
	       "volume header size");

#endif
