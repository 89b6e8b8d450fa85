/*
 * page_io.h — how a page's write-back ends, for any file system's
 * writepage (aops.h) and for the generic write-back pass: the inode's
 * error sequence, a failed page, a page re-dirtied for lack of memory.
 *
 * Invariants: an error is recorded in the inode's errseq before its page's
 * writeback ends, so a sync that waits for the page sees it; every handle
 * sees each error once (errseq_check_and_advance).  Out of memory is never
 * an error: the buffers are dirty again and a later pass writes them.
 * PG_error stays on a page until a write of all of it below i_size
 * succeeds.
 */
#ifndef NTFSD_CACHE_PAGE_IO_H
#define NTFSD_CACHE_PAGE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_inode;

void errseq_set(struct cache_inode *ci, int err);
uint32_t errseq_sample(struct cache_inode *ci);
/* 0, or -errno of an error *since has not seen (and *since advances). */
int errseq_check_and_advance(struct cache_inode *ci, uint32_t *since);

/* The page failed with err: PG_error, errseq, counted and logged with the
 * error channel's message. */
void cache_page_failed(struct cache_inode *ci, uint64_t index, int err);
/* Give buffers bufs back to be written by a later pass (page locked). */
void cache_redirty_page_locked(struct cache_inode *ci, uint64_t index, uint32_t bufs);
/* The I/O of buffers bufs of page index (under writeback) ended with err
 * (0, -ENOMEM: re-dirtied, or an error): the last step of its writeback. */
void cache_end_page_io(struct cache_inode *ci, uint64_t index, uint32_t bufs, int err);

/* Fault injection (tests): NTFSD_FAULT_WRITEPAGE_ENOMEM=N fails the N-th,
 * 2N-th, ... write-back allocation. */
void writeback_init_faults(void);
/* True when the next write-back allocation is to fail. */
bool wb_inject_enomem(void);
/* malloc, failing when injected. */
void *wb_alloc(size_t n);

#endif
