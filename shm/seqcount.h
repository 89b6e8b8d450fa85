/*
 * seqcount.h — reading and writing an inode slot's sizes consistently.
 *
 * Invariant: a slot has one writer (the daemon, under its inode lock);
 * readers in any process never block it and never see a torn triple.
 */
#ifndef NTFSD_SHM_SEQCOUNT_H
#define NTFSD_SHM_SEQCOUNT_H

#include "shm_layout.h"

struct inode_sizes {
	uint64_t i_size, initialized_size, allocated_size;
};

static inline void inode_slot_write(struct shm_inode_slot *s, const struct inode_sizes *v)
{
	uint32_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);

	atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->i_size, v->i_size, memory_order_relaxed);
	atomic_store_explicit(&s->initialized_size, v->initialized_size, memory_order_relaxed);
	atomic_store_explicit(&s->allocated_size, v->allocated_size, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

static inline void inode_slot_read(const struct shm_inode_slot *cs, struct inode_sizes *v)
{
	struct shm_inode_slot *s = (struct shm_inode_slot *)cs;
	uint32_t seq;

	for (;;) {
		seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		if (seq & 1)
			continue;
		v->i_size = atomic_load_explicit(&s->i_size, memory_order_relaxed);
		v->initialized_size = atomic_load_explicit(&s->initialized_size,
							   memory_order_relaxed);
		v->allocated_size = atomic_load_explicit(&s->allocated_size, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) == seq)
			return;
	}
}

#endif
