/*
 * dirty.h — set_page_dirty, the one way either side marks a page dirty.
 *
 * Invariants: called with the page locked (so writeback's snapshot of the
 * buffer bits is never torn); buffer bits are set before PG_dirty, and the
 * page's bit in the dirty bitmap and the file's nr_dirty count follow
 * PG_dirty exactly: set once when PG_dirty goes from clear to set, cleared
 * once by the daemon's clear_page_dirty_for_io().  A page is never clean
 * while one of its buffers is dirty.  nr_dirty is only a hint (any writer
 * of the file can overwrite it): the daemon counts the bitmap instead.
 */
#ifndef NTFSD_SHM_DIRTY_H
#define NTFSD_SHM_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#include "dirty_bitmap.h"
#include "shm_layout.h"

/* Dirty buffers `mask` of page `index` (page lock held).  Returns true when
 * the page was clean before. */
bool set_page_dirty(struct dirty_bitmap *b, uint64_t index, uint32_t mask);

/* Daemon, page lock held: take the dirty buffer bits for writing and make
 * the page clean; returns the buffers to write (0: nothing was dirty). */
uint32_t clear_page_dirty_for_io(struct dirty_bitmap *b, uint64_t index);

#endif
