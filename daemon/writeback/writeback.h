/*
 * writeback.h — writepage, inode writeback, errseq (see writeback.c).
 */
#ifndef NTFSD_WRITEBACK_H
#define NTFSD_WRITEBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"

void writeback_init_faults(void);
/* Write every dirty page; with sync also wait, write the sizes and flush. */
int writeback_inode(struct cache_inode *ci, bool sync);
int writeback_sizes(struct cache_inode *ci);
/* The same with ci->wb_lock already held. */
int writeback_inode_locked(struct cache_inode *ci, bool sync);

void errseq_set(struct cache_inode *ci, int err);
uint32_t errseq_sample(struct cache_inode *ci);
/* 0, or -errno of an error *since has not seen (and *since advances). */
int errseq_check_and_advance(struct cache_inode *ci, uint32_t *since);

#endif
