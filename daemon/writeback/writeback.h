/*
 * writeback.h — inode write-back and sync (see writeback.c); errseq and
 * the end of a page's I/O are the cache's (page_io.h).
 */
#ifndef NTFSD_WRITEBACK_H
#define NTFSD_WRITEBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "page_io.h"

/* Write every dirty page; with sync also wait, write the sizes and flush. */
int writeback_inode(struct cache_inode *ci, bool sync);
/* The same with ci->wb_lock already held. */
int writeback_inode_locked(struct cache_inode *ci, bool sync);

#endif
