/*
 * test_lockdep.c — the lock-order checker (daemon/cache/lockdep.c) must be
 * able to fail.
 *
 * The checker is compiled into this test with NTFSD_LOCKDEP=1 whatever the
 * build type, so every build proves it.  Each case runs in a forked child
 * whose stderr the parent reads: locks taken in the order of cache.h (and
 * trylocks, which cannot deadlock, in any order) must leave it exiting 0
 * without a word; a lock waited for out of order, a second page lock
 * waited for, a release of a lock not held, a missing cache_assert_held(),
 * and a wait for writeback or a sleep under a lock that forbids it must
 * abort it with the checker's message naming the locks.  The page locks
 * are driven through the checker's page entry points, as page_lock.c does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lockdep.h"

static struct cache_mutex wb, size_a, size_b, init, reclaim, cache_lock;
static struct cache_rwlock rl, ns;

static void init_locks(void)
{
	cache_mutex_init(&wb, LOCK_WB);
	cache_mutex_init(&size_a, LOCK_SIZE);
	cache_mutex_init(&size_b, LOCK_SIZE);
	cache_mutex_init(&init, LOCK_INIT);
	cache_rwlock_init(&rl, LOCK_RL, NULL);
	cache_rwlock_init(&ns, LOCK_NS, NULL);
	cache_mutex_init(&reclaim, LOCK_RECLAIM);
	cache_mutex_init(&cache_lock, LOCK_CACHE);
}

/* The page-lock calls page_lock.c makes around its futexes. */
static void page_lock(void)
{
	lockdep_page_before(__FILE__, __LINE__);
	lockdep_page_acquired(__FILE__, __LINE__);
}

static void page_trylock(void)
{
	lockdep_page_acquired(__FILE__, __LINE__);
}

static void page_unlock(void)
{
	lockdep_page_release(__FILE__, __LINE__);
}

struct outcome {
	int status;
	char err[4096];
};

/* Run fn in a child; its stderr and wait status. */
static void run(void (*fn)(void), struct outcome *o)
{
	int fds[2];
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], STDERR_FILENO);
		init_locks();
		fn();
		_exit(0);
	}
	close(fds[1]);
	while ((n = read(fds[0], o->err + len, sizeof(o->err) - 1 - len)) > 0)
		len += (size_t)n;
	o->err[len] = 0;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &o->status, 0), pid);
}

static void expect_clean(void (*fn)(void))
{
	struct outcome o;

	run(fn, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0 || o.err[0])
		fail_msg("expected a clean exit, got status %#x and \"%s\"", o.status, o.err);
}

static void expect_abort(void (*fn)(void), const char *msg)
{
	struct outcome o;

	run(fn, &o);
	if (!WIFSIGNALED(o.status) || WTERMSIG(o.status) != SIGABRT)
		fail_msg("expected SIGABRT, got status %#x and \"%s\"", o.status, o.err);
	if (!strstr(o.err, "lockdep: ") || !strstr(o.err, msg))
		fail_msg("the checker's message lacks \"%s\": \"%s\"", msg, o.err);
}

/* ---- in order: nothing said ---- */

static void every_rank_in_order(void)
{
	cache_rwlock_rdlock(&ns);
	cache_mutex_lock(&wb);
	cache_mutex_lock(&size_a);
	page_lock();
	page_trylock();                 /* more pages: only tried */
	cache_mutex_lock(&init);
	cache_rwlock_rdlock(&rl);
	cache_mutex_lock(&reclaim);
	cache_mutex_lock(&cache_lock);
	page_trylock();                 /* reclaim tries pages under cache->lock */
	cache_assert_held(&init);
	cache_assert_held(&rl);
	page_unlock();
	cache_mutex_unlock(&cache_lock);
	cache_mutex_unlock(&reclaim);
	/* released out of LIFO order: allowed */
	cache_mutex_unlock(&init);
	cache_rwlock_unlock(&rl);
	page_unlock();
	page_unlock();
	lockdep_wait_writeback(__FILE__, __LINE__);   /* wb_lock and size_lock only */
	lockdep_may_sleep(__FILE__, __LINE__);
	cache_mutex_unlock(&size_a);
	cache_mutex_unlock(&wb);
	cache_rwlock_unlock(&ns);
	/* the same lock again, and the other inode's, once released */
	cache_mutex_lock(&size_b);
	cache_mutex_unlock(&size_b);
	cache_rwlock_wrlock(&rl);
	cache_rwlock_unlock(&rl);
	if (lockdep_pages_held())
		abort();
}

static void trylock_out_of_order(void)
{
	cache_mutex_lock(&cache_lock);
	if (!cache_mutex_trylock(&size_a))   /* a trylock cannot deadlock */
		abort();
	cache_mutex_unlock(&size_a);
	cache_mutex_unlock(&cache_lock);
}

static void *hold_init(void *arg)
{
	(void)arg;
	cache_mutex_lock(&init);
	cache_mutex_unlock(&init);
	return NULL;
}

static void per_thread(void)
{
	pthread_t t;

	/* what one thread holds does not bind another */
	cache_rwlock_rdlock(&rl);
	if (pthread_create(&t, NULL, hold_init, NULL) || pthread_join(t, NULL))
		abort();
	cache_rwlock_unlock(&rl);
}

static void test_in_order(void **state)
{
	(void)state;
	expect_clean(every_rank_in_order);
	expect_clean(trylock_out_of_order);
	expect_clean(per_thread);
}

/* ---- out of order: aborts, naming both ---- */

static void size_under_init(void)
{
	cache_mutex_lock(&init);
	cache_mutex_lock(&size_a);
}

/* a namespace change under an inode's lock: ns_lock is outermost */
static void ns_under_wb(void)
{
	cache_mutex_lock(&wb);
	cache_rwlock_wrlock(&ns);
}

static void wb_under_size(void)
{
	cache_mutex_lock(&size_a);
	cache_mutex_lock(&wb);
}

static void two_inodes_size(void)
{
	cache_mutex_lock(&size_a);
	cache_mutex_lock(&size_b);
}

static void rl_read_twice(void)
{
	cache_rwlock_rdlock(&rl);
	cache_rwlock_rdlock(&rl);       /* a queued writer would deadlock it */
}

static void init_under_cache(void)
{
	cache_mutex_lock(&cache_lock);
	cache_mutex_lock(&init);
}

static void test_out_of_order(void **state)
{
	(void)state;
	expect_abort(size_under_init, "lock order violation: waiting for size_lock (rank 3) "
		     "while holding init_lock (rank 5");
	expect_abort(wb_under_size, "waiting for wb_lock (rank 2) while holding size_lock");
	expect_abort(ns_under_wb, "waiting for ns_lock (rank 1) while holding wb_lock");
	expect_abort(two_inodes_size, "waiting for size_lock (rank 3) while holding size_lock");
	expect_abort(rl_read_twice, "rl_lock (rank 6) that this thread already holds");
	expect_abort(init_under_cache, "waiting for init_lock (rank 5) while holding "
		     "cache->lock (rank 8");
}

/* ---- page locks ---- */

static void page_under_rl(void)
{
	cache_rwlock_rdlock(&rl);
	page_lock();
}

static void size_under_page(void)
{
	page_lock();
	cache_mutex_lock(&size_a);
}

static void second_page_waited(void)
{
	page_lock();
	page_lock();
}

static void page_unlock_unheld(void)
{
	page_unlock();
}

static void test_page_locks(void **state)
{
	(void)state;
	expect_abort(page_under_rl, "waiting for a page lock (rank 4) while holding rl_lock");
	expect_abort(size_under_page, "waiting for size_lock (rank 3) while holding a page lock");
	expect_abort(second_page_waited, "waiting for a page lock while holding another");
	expect_abort(page_unlock_unheld, "this thread holds no page lock");
}

/* ---- releases, assertions, waits ---- */

static void unlock_unheld(void)
{
	cache_mutex_unlock(&init);
}

static void assert_unheld(void)
{
	cache_mutex_lock(&size_a);
	cache_assert_held(&size_b);     /* the other inode's */
}

static void writeback_wait_under_page(void)
{
	page_lock();
	lockdep_wait_writeback(__FILE__, __LINE__);
}

static void writeback_wait_under_init(void)
{
	cache_mutex_lock(&init);
	lockdep_wait_writeback(__FILE__, __LINE__);
}

static void sleep_under_cache_lock(void)
{
	cache_mutex_lock(&cache_lock);
	lockdep_may_sleep(__FILE__, __LINE__);
}

static void test_misuse(void **state)
{
	(void)state;
	expect_abort(unlock_unheld, "releasing init_lock (rank 5) that this thread does not hold");
	expect_abort(assert_unheld, "size_lock (rank 3) must be held here");
	expect_abort(writeback_wait_under_page, "waiting for a page's writeback while holding a "
		     "page lock");
	expect_abort(writeback_wait_under_init, "waiting for a page's writeback while holding "
		     "init_lock");
	expect_abort(sleep_under_cache_lock, "disk I/O or a sleep while holding cache->lock");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_page_locks),
		cmocka_unit_test(test_misuse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
