/*
 * frame.h — framing of control-protocol messages on a unix stream socket.
 *
 * Invariants: a frame is a 4-byte little-endian length then that many bytes
 * (1..NTFSD_MAX_FRAME); file descriptors ride on the first byte of a frame
 * (SCM_RIGHTS), at most NTFSD_MAX_FRAME_FDS of them.  These blocking helpers
 * serve libntfsc; the daemon does its own non-blocking reads with the same
 * limits, and refuses a request frame longer than its max-conn-inflight
 * setting (1 MiB by default) allows.
 */
#ifndef NTFSD_PROTO_FRAME_H
#define NTFSD_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define NTFSD_PROTOCOL_VERSION 3u
#define NTFSD_MAX_FRAME (16u << 20)
#define NTFSD_MAX_FRAME_FDS 4
#define NTFSD_DEFAULT_SOCKET "/run/ntfsd/ntfsd.sock"

/* Send one frame (with fds if nfds > 0).  0 or -errno. */
int frame_send(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* Receive one frame into a malloc()ed *buf; fds received are stored in fds
 * (up to max_fds, *nfds set; extra ones are closed).  0, -EPROTO for a bad
 * length, -ECONNRESET on EOF, or -errno. */
int frame_recv(int sock, uint8_t **buf, size_t *len, int *fds, int max_fds, int *nfds);

#endif
