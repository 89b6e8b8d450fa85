/*
 * fdmsg.h — one SOCK_SEQPACKET message of text with at most one file
 * descriptor (SCM_RIGHTS), the unit of the keeper's protocol (fdstore.c).
 *
 * Invariants: a message is at most MSG_MAX bytes, NUL-terminated on
 * receipt; a received fd is close-on-exec; extra fds a peer attached are
 * closed, never leaked.
 */
#ifndef NTFSD_STORE_FDMSG_H
#define NTFSD_STORE_FDMSG_H

#include <stdbool.h>
#include <sys/types.h>

#define MSG_MAX 128
#define KEEPER_REPLY_MS 5000    /* how long a daemon waits for the keeper's answer */

/* 0 or -errno; fd < 0: none. */
int msg_send(int sock, const char *text, int fd);
/* The text's length (0: the peer closed), or -errno; *fd the fd received
 * or -1 (fd may be NULL: a received fd is closed). */
ssize_t msg_recv(int sock, char *text, size_t size, int *fd);
/* The same, waiting at most KEEPER_REPLY_MS (-ETIMEDOUT). */
ssize_t msg_recv_timed(int sock, char *text, size_t size, int *fd);

/* The peer of a unix socket runs as our uid (SO_PEERCRED). */
bool msg_peer_is_us(int sock);

#endif
