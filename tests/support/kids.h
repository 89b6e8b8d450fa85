/*
 * kids.h — the multi-process harness of the model tests: forked clients,
 * each with a pipe from the parent (down: the daemon's socket path, once a
 * phase) and one to the parent (up: a byte when its phase is done); and
 * the xorshift generator their random operations come from.
 *
 * Invariants:
 *   - After kids_init() every pid is 0 and every pipe end -1; a pid is
 *     non-zero exactly while that child is running and not yet reaped, a
 *     pipe end is >= 0 exactly while the parent holds it open.
 *   - kids_kill() and kids_close_fds() may be called at any time (a test's
 *     teardown calls both) and leave the set as after kids_init(), with no
 *     child left behind.
 *   - A child gets only its own two pipe ends (the rest are O_CLOEXEC or
 *     closed before child_main runs) and leaves with _exit(child_main()),
 *     so it never flushes or runs anything of the parent's.
 *   - A go message is always KIDS_SOCK_MSG bytes, NUL-padded.
 */
#ifndef NTFSD_TESTS_KIDS_H
#define NTFSD_TESTS_KIDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KIDS_MAX 8
#define KIDS_SOCK_MSG 108

struct kids {
	int n;                  /* children in use, <= KIDS_MAX */
	pid_t pid[KIDS_MAX];    /* 0: none, or reaped */
	int down[KIDS_MAX];     /* the parent's write ends, -1 when closed */
	int up[KIDS_MAX];       /* the parent's read ends, -1 when closed */
};

/* xorshift64 of *s (which must not be 0); the new state. */
uint64_t xorshift(uint64_t *s);

/* No children, no pipes; n of them later. */
void kids_init(struct kids *ks, int n);
/* Close the parent's pipe ends. */
void kids_close_fds(struct kids *ks);
/* SIGKILL and reap every child still running. */
void kids_kill(struct kids *ks);
/* Fork ks->n children, child k running _exit(child_main(k, down, up));
 * fails the test if a pipe or fork fails. */
void kids_spawn(struct kids *ks, int (*child_main)(int k, int down, int up));
/* Send every child the socket path to use in its next phase. */
void kids_send_go(const struct kids *ks, const char *socket);
/* In a child: read the parent's go message (a socket path) into sock,
 * KIDS_SOCK_MSG bytes; false at EOF. */
bool kids_wait_go(int fd, char *sock, size_t size);
/* Wait for a byte from every child, polling every poll_ms and calling tick
 * (if not NULL) before each poll; fails the test after timeout_s.  Returns
 * -1 when all are done, or the first child that died instead (reaped, its
 * wait status in *status) for the caller to fail with its own message. */
int kids_wait_phase(struct kids *ks, int timeout_s, int poll_ms, void (*tick)(void),
		    int *status);
/* Reap every child; fails the test unless each exited 0. */
void kids_reap(struct kids *ks);

#endif
