/*
 * frame.c — blocking frame I/O with SCM_RIGHTS.
 *
 * Invariants: see frame.h.  Every received fd is either handed to the
 * caller or closed; nothing leaks on an error path.
 */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int send_all(int sock, const uint8_t *p, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * NTFSD_MAX_FRAME_FDS)];
		struct cmsghdr align;
	} ctl;

	while (len) {
		struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (nfds > 0) {
			struct cmsghdr *c;

			memset(&ctl, 0, sizeof(ctl));
			msg.msg_control = ctl.buf;
			msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
			c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
		}
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		nfds = 0;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int frame_send(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	uint8_t *frame;
	int err;

	if (len == 0 || len > NTFSD_MAX_FRAME || nfds < 0 || nfds > NTFSD_MAX_FRAME_FDS)
		return -EINVAL;
	frame = malloc(len + 4);
	if (!frame)
		return -ENOMEM;
	frame[0] = (uint8_t)len;
	frame[1] = (uint8_t)(len >> 8);
	frame[2] = (uint8_t)(len >> 16);
	frame[3] = (uint8_t)(len >> 24);
	memcpy(frame + 4, buf, len);
	err = send_all(sock, frame, len + 4, fds, nfds);
	free(frame);
	return err;
}

static void take_fds(struct msghdr *msg, int *fds, int max_fds, int *nfds)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		int n, i, *in;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		in = (int *)CMSG_DATA(c);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, in + i, sizeof(fd));
			if (*nfds < max_fds)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
}

static int recv_all(int sock, uint8_t *p, size_t len, int *fds, int max_fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * NTFSD_MAX_FRAME_FDS)];
		struct cmsghdr align;
	} ctl;

	while (len) {
		struct iovec iov = { .iov_base = p, .iov_len = len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (fds)
			take_fds(&msg, fds, max_fds, nfds);
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int frame_recv(int sock, uint8_t **buf, size_t *len, int *fds, int max_fds, int *nfds)
{
	uint8_t hdr[4];
	uint32_t n;
	int err, i;

	*nfds = 0;
	err = recv_all(sock, hdr, 4, fds, max_fds, nfds);
	if (err)
		goto fail;
	n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
	    (uint32_t)hdr[3] << 24;
	if (n == 0 || n > NTFSD_MAX_FRAME) {
		err = -EPROTO;
		goto fail;
	}
	*buf = malloc(n);
	if (!*buf) {
		err = -ENOMEM;
		goto fail;
	}
	err = recv_all(sock, *buf, n, fds, max_fds, nfds);
	if (err) {
		free(*buf);
		*buf = NULL;
		goto fail;
	}
	*len = n;
	return 0;
fail:
	for (i = 0; i < *nfds; i++)
		close(fds[i]);
	*nfds = 0;
	return err;
}
