/*
 * page.c — futex-based page locks and bit waits.
 *
 * Invariants: see page.h.  Futexes are non-private (FUTEX_WAIT/FUTEX_WAKE
 * without FUTEX_PRIVATE_FLAG) because the flags word lives in a segment
 * mapped by several processes.  A wait always re-reads the word, so a
 * spurious or stale wakeup only costs a loop.
 */
#include "page.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int futex_wait(_Atomic uint32_t *addr, uint32_t expected, const struct timespec *ts)
{
	return (int)syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

bool trylock_page(struct shm_page *p, uint32_t owner)
{
	uint32_t f = atomic_load_explicit(&p->flags, memory_order_relaxed);

	do {
		if (f & PG_locked)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		&p->flags, &f, (f & ~PG_OWNER_MASK) | PG_locked | (owner << PG_OWNER_SHIFT),
		memory_order_acquire, memory_order_relaxed));
	atomic_store_explicit(&p->lock_owner, owner, memory_order_relaxed);
	return true;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep while (flags & bits) != 0, arming PG_waiters; false on timeout. */
static bool sleep_on_bits(struct shm_page *p, uint32_t bits, int64_t deadline)
{
	uint32_t f = page_flags(p);

	while (f & bits) {
		struct timespec ts, *tsp = NULL;

		if (!(f & PG_waiters)) {
			if (!atomic_compare_exchange_weak_explicit(&p->flags, &f, f | PG_waiters,
								   memory_order_acq_rel,
								   memory_order_acquire))
				continue;
			f |= PG_waiters;
		}
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return false;
			ts.tv_sec = left / 1000;
			ts.tv_nsec = (left % 1000) * 1000000;
			tsp = &ts;
		}
		futex_wait(&p->flags, f, tsp);
		f = page_flags(p);
	}
	return true;
}

bool lock_page_timeout(struct shm_page *p, uint32_t owner, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

	while (!trylock_page(p, owner))
		if (!sleep_on_bits(p, PG_locked, deadline))
			return false;
	return true;
}

void lock_page(struct shm_page *p, uint32_t owner)
{
	lock_page_timeout(p, owner, -1);
}

void clear_page_bits_wake(struct shm_page *p, uint32_t bits)
{
	uint32_t old = atomic_fetch_and_explicit(&p->flags, ~(bits | PG_waiters),
						 memory_order_release);

	if (old & PG_waiters)
		futex_wake_all(&p->flags);
}

void unlock_page(struct shm_page *p)
{
	atomic_store_explicit(&p->lock_owner, 0, memory_order_relaxed);
	clear_page_bits_wake(p, PG_locked | PG_OWNER_MASK);
}

bool unlock_page_if_owner(struct shm_page *p, uint32_t owner)
{
	uint32_t f = atomic_load_explicit(&p->flags, memory_order_acquire);

	if (!owner)
		return false;
	do {
		if (!(f & PG_locked) || page_lock_owner_of(f) != owner)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		&p->flags, &f, f & ~(PG_locked | PG_waiters | PG_OWNER_MASK),
		memory_order_acq_rel, memory_order_acquire));
	atomic_store_explicit(&p->lock_owner, 0, memory_order_relaxed);
	if (f & PG_waiters)
		futex_wake_all(&p->flags);
	return true;
}

void wait_on_page_bits(struct shm_page *p, uint32_t bits)
{
	sleep_on_bits(p, bits, -1);
}
