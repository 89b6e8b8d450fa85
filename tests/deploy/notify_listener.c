/*
 * notify_listener.c — stand in for systemd's notification socket in tests.
 *
 * Usage: notify_listener SOCKET_PATH
 * Binds an AF_UNIX datagram socket at SOCKET_PATH (replacing a stale file),
 * prints "listening" once bound, then prints each datagram it receives on
 * one line (its newlines turned into spaces), flushing after each, until
 * killed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[65536];
	int fd;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: notify_listener SOCKET_PATH (shorter than %zu bytes)\n",
			sizeof(sa.sun_path));
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "notify_listener: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0), i;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "notify_listener: recv: %s\n", strerror(errno));
			return 1;
		}
		while (n > 0 && buf[n - 1] == '\n')
			n--;
		for (i = 0; i < n; i++)
			if (buf[i] == '\n' || buf[i] == '\0')
				buf[i] = ' ';
		buf[n] = '\0';
		printf("%s\n", buf);
		fflush(stdout);
	}
}
