/*
 * conn.c — connecting to ntfsd: the socket, the hello, the volume header;
 * and disconnecting.
 *
 * Invariants:
 *  - ntfsc_connect hands out a connection only once the daemon has agreed
 *    to our protocol and shared-memory layout, given a lock id in range,
 *    and sent a volume header segment that passed map_header's checks;
 *    otherwise nothing of it is left (socket closed, mutexes destroyed,
 *    memory freed, the header fd closed) and errno and the message are
 *    the first failure's.
 *  - What decides where we access memory is copied out of the volume
 *    header once, checked (max_inodes), and used from the private copy.
 *  - ntfsc_disconnect closes every file still open on the connection
 *    (file_release) before the socket and the header go, and leaves the
 *    caller's errno and message as they were.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The last connection id handed out (ntfsc.id). */
static _Atomic uint64_t conn_ids;

static int connect_unix(int sock, const struct sockaddr_un *sa)
{
	struct pollfd pfd = { .fd = sock, .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int err = 0;

	if (connect(sock, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EINTR && errno != EINPROGRESS)
		return -1;
	/* Interrupted: the connection goes on; wait for its outcome. */
	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static int map_header(ntfsc *c, int fd)
{
	const struct shm_volume_header *h;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return error_set(errno, "cannot stat ntfsd's volume header segment: %s",
				 strerror(errno));
	if ((uint64_t)st.st_size < sizeof(*h))
		return error_set(EPROTO, "ntfsd's volume header segment is too small (%lld bytes)",
				 (long long)st.st_size);
	h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		return error_set(errno, "cannot map ntfsd's volume header segment: %s",
				 strerror(errno));
	if (h->magic != NTFSD_SHM_VOLUME_MAGIC || h->layout_version != NTFSD_SHM_LAYOUT_VERSION ||
	    h->page_size != NTFSD_PAGE_SIZE || h->max_inodes == 0 ||
	    h->max_inodes > NTFSD_MAX_INODES) {
		int e = h->magic != NTFSD_SHM_VOLUME_MAGIC ? EPROTO : EPROTONOSUPPORT;

		error_set(e, "ntfsd's volume header is not one libntfsc understands (magic %#llx, "
			  "layout %u, page size %u, %u inodes)", (unsigned long long)h->magic,
			  h->layout_version, h->page_size, h->max_inodes);
		munmap((void *)h, sizeof(*h));
		return -1;
	}
	c->hdr = h;
	c->max_inodes = h->max_inodes;
	return 0;
}

/* Our lock table: ours alone to write (shm_layout.h). */
static int map_lock_table(ntfsc *c, int fd)
{
	struct stat st;
	void *p;

	if (fstat(fd, &st) < 0)
		return error_set(errno, "cannot stat ntfsd's lock table: %s", strerror(errno));
	if ((uint64_t)st.st_size < sizeof(struct shm_lock_table))
		return error_set(EPROTO, "ntfsd's lock table is too small (%lld bytes)",
				 (long long)st.st_size);
	p = mmap(NULL, sizeof(struct shm_lock_table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return error_set(errno, "cannot map ntfsd's lock table: %s", strerror(errno));
	c->locks = p;
	return 0;
}

static int hello(ntfsc *c)
{
	Ntfsd__Hello hr = NTFSD__HELLO__INIT;
	Ntfsd__Reply *rep;
	const Ntfsd__HelloReply *h;
	int fds[2], err;

	hr.protocol_version = NTFSD_PROTOCOL_VERSION;
	hr.client_name = program_invocation_short_name && *program_invocation_short_name
			 ? program_invocation_short_name : "libntfsc";
	if (request(c, NTFSD__REQUEST__BODY_HELLO, &hr, fds, NULL, &rep))
		return -1;
	h = rep->hello;
	if (h->protocol_version != NTFSD_PROTOCOL_VERSION)
		err = error_set(EPROTONOSUPPORT, "ntfsd speaks protocol version %u, libntfsc %u",
				h->protocol_version, NTFSD_PROTOCOL_VERSION);
	else if (h->layout_version != NTFSD_SHM_LAYOUT_VERSION)
		err = error_set(EPROTONOSUPPORT,
				"ntfsd uses shared-memory layout %u, libntfsc %u",
				h->layout_version, NTFSD_SHM_LAYOUT_VERSION);
	else if (h->lock_owner <= NTFSD_LOCK_OWNER_DAEMON || h->lock_owner > NTFSD_LOCK_OWNER_MAX)
		err = error_set(EPROTO, "ntfsd gave lock id %u", h->lock_owner);
	else if (!(err = map_header(c, fds[0])) && (err = map_lock_table(c, fds[1])))
		munmap((void *)c->hdr, sizeof(*c->hdr));
	c->lock_owner = h->lock_owner;
	ntfsd__reply__free_unpacked(rep, NULL);
	close(fds[0]);
	close(fds[1]);
	return err;
}

ntfsc *ntfsc_connect(const char *socket_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ntfsc *c;

	if (!socket_path) {
		const char *env = getenv("NTFSD_SOCKET");

		socket_path = env && *env ? env : NTFSD_DEFAULT_SOCKET;
	}
	if (!*socket_path) {
		error_set(ENOENT, "the socket path is empty");
		return NULL;
	}
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		error_set(ENAMETOOLONG, "socket path %s is too long for a unix socket",
			  socket_path);
		return NULL;
	}
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c) {
		error_set(ENOMEM, NULL);
		return NULL;
	}
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		error_set(errno, "cannot create a unix socket: %s", strerror(errno));
		free(c);
		return NULL;
	}
	if (connect_unix(c->sock, &sa) < 0) {
		error_set(errno, "cannot connect to %s: %s", socket_path, strerror(errno));
		close(c->sock);
		free(c);
		return NULL;
	}
	c->id = atomic_fetch_add(&conn_ids, 1) + 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->files_lock, NULL);
	pthread_mutex_init(&c->err_lock, NULL);
	if (hello(c) < 0) {
		struct saved_error se;

		error_save(&se);
		close(c->sock);
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->files_lock);
		pthread_mutex_destroy(&c->err_lock);
		free(c);
		error_restore(&se);
		return NULL;
	}
	return c;
}

void ntfsc_disconnect(ntfsc *c)
{
	struct saved_error se;
	ntfsc_file *f;

	if (!c)
		return;
	error_save(&se);
	for (;;) {
		pthread_mutex_lock(&c->files_lock);
		f = c->files;
		if (f) {
			c->files = f->next;
			if (c->files)
				c->files->prev = NULL;
		}
		pthread_mutex_unlock(&c->files_lock);
		if (!f)
			break;
		file_release(f);
	}
	close(c->sock);
	munmap((void *)c->hdr, sizeof(*c->hdr));
	munmap(c->locks, sizeof(*c->locks));
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->files_lock);
	pthread_mutex_destroy(&c->err_lock);
	free(c);
	error_restore(&se);
}
