/*
 * kids.c — see kids.h.
 */
#include "kids.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

void kids_init(struct kids *ks, int n)
{
	ks->n = n;
	for (int i = 0; i < KIDS_MAX; i++) {
		ks->pid[i] = 0;
		ks->down[i] = ks->up[i] = -1;
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void kids_close_fds(struct kids *ks)
{
	for (int i = 0; i < KIDS_MAX; i++) {
		close_fd(&ks->down[i]);
		close_fd(&ks->up[i]);
	}
}

void kids_kill(struct kids *ks)
{
	for (int i = 0; i < KIDS_MAX; i++)
		if (ks->pid[i] > 0) {
			kill(ks->pid[i], SIGKILL);
			waitpid(ks->pid[i], NULL, 0);
			ks->pid[i] = 0;
		}
}

void kids_spawn(struct kids *ks, int (*child_main)(int k, int down, int up))
{
	assert_true(ks->n > 0 && ks->n <= KIDS_MAX);
	for (int k = 0; k < ks->n; k++) {
		int d[2], u[2];

		assert_int_equal(pipe2(d, O_CLOEXEC), 0);
		assert_int_equal(pipe2(u, O_CLOEXEC), 0);
		fflush(NULL);
		ks->pid[k] = fork();
		assert_true(ks->pid[k] >= 0);
		if (ks->pid[k] == 0) {
			close(d[1]);
			close(u[0]);
			_exit(child_main(k, d[0], u[1]));
		}
		close(d[0]);
		close(u[1]);
		ks->down[k] = d[1];
		ks->up[k] = u[0];
	}
}

void kids_send_go(const struct kids *ks, const char *socket)
{
	char msg[KIDS_SOCK_MSG] = { 0 };

	snprintf(msg, sizeof(msg), "%s", socket);
	for (int k = 0; k < ks->n; k++)
		assert_int_equal(write(ks->down[k], msg, sizeof(msg)), (ssize_t)sizeof(msg));
}

bool kids_wait_go(int fd, char *sock, size_t size)
{
	size_t n = 0;

	while (n < size) {
		ssize_t r = read(fd, sock + n, size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		n += (size_t)r;
	}
	sock[size - 1] = '\0';
	return true;
}

int kids_wait_phase(struct kids *ks, int timeout_s, int poll_ms, void (*tick)(void),
		    int *status)
{
	bool done[KIDS_MAX] = { false };
	int left = ks->n;
	time_t deadline = time(NULL) + timeout_s;

	while (left) {
		struct pollfd p[KIDS_MAX];
		int n = 0, idx[KIDS_MAX];

		for (int k = 0; k < ks->n; k++)
			if (!done[k]) {
				p[n].fd = ks->up[k];
				p[n].events = POLLIN;
				idx[n++] = k;
			}
		if (time(NULL) > deadline)
			fail_msg("the clients did not finish in time");
		if (tick)
			tick();
		if (poll(p, (nfds_t)n, poll_ms) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			char c;
			int k = idx[i];

			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (read(ks->up[k], &c, 1) != 1) {
				*status = 0;
				waitpid(ks->pid[k], status, 0);
				ks->pid[k] = 0;
				return k;
			}
			done[k] = true;
			left--;
		}
	}
	return -1;
}

void kids_reap(struct kids *ks)
{
	for (int k = 0; k < ks->n; k++) {
		int st;

		assert_int_equal(waitpid(ks->pid[k], &st, 0), ks->pid[k]);
		ks->pid[k] = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fail_msg("client %d exited with status 0x%x", k, st);
	}
}
