/*
 * ramfs.h — a file system in RAM under the generic page cache, for the
 * cache's and write-back's unit tests: struct address_space_operations
 * (daemon/cache/aops.h) over a few files, each a byte array ("the disk"),
 * a block map and the sizes its "inode on disk" records.
 *
 * Invariants:
 *  - A file's bytes live at their own offsets in disk[]; a block is backed
 *    (block_used) or a hole; nr_blocks is the end of the block map, holes
 *    included (allocated_size = nr_blocks * block_size >= data_size).
 *    Fresh and freed blocks hold RAMFS_STALE bytes, as a real disk holds
 *    old data: only a block filled below init_size is zeroed when
 *    allocated; past init_size reads return zeroes, never the disk.
 *  - data_size and init_size are the in-memory sizes, disk_size and
 *    disk_init the on-disk inode's (write_inode, and truncate, which
 *    writes the inode at once as NTFS does).  data_size == ci->i_size,
 *    and both move together under the file's lock (rank LOCK_INIT: the
 *    file system's size lock of cache.h), which also guards the block map,
 *    the disk bytes and the log.
 *  - prepare_write and truncate_blocks are the only places blocks are
 *    allocated or freed; writepage never allocates: a buffer over a hole is
 *    a contract violation (counted, and the page fails with EIO).
 *  - Every contract breach the generic code could commit against this file
 *    system (aops.h, writeback.c's rules) is counted in fs->violations and
 *    logged; a test passes only with none.
 *  - The disk's clock (fs->seq) ticks for every data write, zero fill,
 *    inode write and sync, so a test can tell what reached the disk after
 *    a moment it noted (ramfs_now()).
 */
#ifndef NTFSD_TESTS_RAMFS_H
#define NTFSD_TESTS_RAMFS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aops.h"
#include "cache.h"

#define RAMFS_MAX_FILES 8u
#define RAMFS_MAX_BYTES (1u << 20)                       /* per file */
#define RAMFS_MAX_PAGES (RAMFS_MAX_BYTES / NTFSD_PAGE_SIZE)
#define RAMFS_SECTOR 512u                                /* granule of the write log */
#define RAMFS_MAX_SECTORS (RAMFS_MAX_BYTES / RAMFS_SECTOR)
#define RAMFS_STALE 0xEEu                                /* what an unwritten block holds */
#define RAMFS_ROOT_INO 5u                                /* "/", a directory */
#define RAMFS_FIRST_INO 64u

enum ramfs_io_kind { RAMFS_IO_DATA, RAMFS_IO_ZERO };

/* One write that reached a file's disk. */
struct ramfs_io {
	uint64_t seq, pos, len;
	enum ramfs_io_kind kind;
};

struct ramfs;

struct ramfs_file {
	struct ramfs *fs;
	char name[64];                  /* "/name" */
	uint64_t ino;
	struct cache_mutex lock;        /* LOCK_INIT: everything below */
	uint8_t *disk;                  /* RAMFS_MAX_BYTES */
	uint8_t *block_used;            /* per block: backed, not a hole */
	uint64_t nr_blocks;
	uint64_t data_size, init_size;  /* in memory */
	uint64_t disk_size, disk_init;  /* the inode on disk */
	bool deny_write;                /* check_writable: EACCES */
	int read_err;                   /* read fails with it (0: reads work) */
	uint32_t generation;
	struct cache_inode *_Atomic ci; /* while cached (set by alloc_inode under
					 * lock, cleared by destroy_inode, which
					 * runs under cache->lock and so takes none) */
	/* the log */
	struct ramfs_io *log;
	size_t nlog, caplog;
	uint64_t size_writes;           /* write_inode calls that wrote the inode */
	uint64_t times_writes;          /* write_inode calls that wrote the times */
	uint64_t disk_mtime_ns;         /* the modification time on disk */
	uint64_t size_seq;              /* when the inode was last written */
	uint64_t trims;
	/* injected: page index fails with fail_err for its next fail_times writes */
	int fail_err[RAMFS_MAX_PAGES];
	unsigned fail_times[RAMFS_MAX_PAGES];
};

struct ramfs {
	struct ramfs_file files[RAMFS_MAX_FILES];
	unsigned nfiles;
	uint32_t block_size;            /* the cluster size; a multiple of the page size */
	_Atomic uint64_t free_blocks;   /* prepare_write fails with ENOSPC past it */
	uint64_t total_blocks;
	uint64_t growth_room_blocks;    /* allocated past a growth, trim_pending set */
	unsigned batch_pages;           /* pages a batch gathers before its I/O (<= 1: none) */
	_Atomic uint64_t seq;           /* the disk's clock */
	/* injected out-of-memory: the next N of these fail */
	_Atomic unsigned enomem_writepage, enomem_begin;
	/* counters */
	_Atomic uint64_t writepage_calls, write_inode_calls, sync_calls, last_sync_seq;
	_Atomic uint64_t violations;
};

/* A file system of total_blocks blocks of block_size bytes, all free. */
struct ramfs *ramfs_create(uint32_t block_size, uint64_t total_blocks);
void ramfs_destroy(struct ramfs *fs);
/* A file named "/name" holding size bytes of data (NULL: zeroes), its
 * blocks taken from the free ones; NULL when it cannot be. */
struct ramfs_file *ramfs_add_file(struct ramfs *fs, const char *name, const void *data,
				  uint64_t size);
struct ramfs_file *ramfs_find(struct ramfs *fs, const char *name);

/* The disk's clock now: what is written later has a larger seq. */
uint64_t ramfs_now(struct ramfs *fs);
/* Bytes of [pos, pos + len) that data writes after `since` put on f's disk
 * (each write counted: a byte written twice counts twice). */
uint64_t ramfs_written_in(const struct ramfs_file *f, uint64_t since, uint64_t pos, uint64_t len);
/* All bytes data writes after `since` put on f's disk. */
uint64_t ramfs_written_since(const struct ramfs_file *f, uint64_t since);
/* Bytes zero-filled on f's disk after `since` (below a raised init_size). */
uint64_t ramfs_zeroed_since(const struct ramfs_file *f, uint64_t since);
/* The seq of the last write (data or zeroes) to f's disk (0: none). */
uint64_t ramfs_last_write_seq(const struct ramfs_file *f);
/* Read [pos, pos + len) as a fresh mount would: the on-disk sizes, zeroes
 * for holes and past disk_init; returns the bytes below disk_size. */
uint64_t ramfs_read_disk(const struct ramfs_file *f, uint64_t pos, uint64_t len, uint8_t *buf);
/* Backed blocks of f. */
uint64_t ramfs_blocks_used(const struct ramfs_file *f);
/* Fail the next `times` writes of page index of f with err (-EIO...). */
void ramfs_inject_page_error(struct ramfs_file *f, uint64_t index, int err, unsigned times);

extern const struct address_space_operations ramfs_aops;

#endif
