/*
 * holders.c — the lock-id table (see holders.h).
 *
 * Invariants: ids are handed out round-robin from next_id, skipping ids in
 * use, so an id a dead connection left in some page is not reissued before
 * about four million other connections came and went; a linear table
 * (connections number in the hundreds, and it is searched only when a lock
 * is contended).
 */
#include "holders.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_int.h"
#include "log.h"
#include "shm_layout.h"

struct holder_file {
	struct cache_inode *ci;
	unsigned writers;
};

struct holder {
	uint32_t id;
	pid_t pid;
	uid_t uid;
	bool expired;
	void (*expire)(void *arg);
	void *arg;
	struct holder_file *files;
	unsigned nfiles, cap;
	int table_fd;                     /* its lock table (shm_layout.h), ours to close */
	struct shm_lock_table *table;     /* mapped */
};

struct holder_table {
	struct cache_mutex lock;
	struct holder *h;
	unsigned n, cap;
	uint32_t next_id;
};

static void holder_free(struct holder *h)
{
	free(h->files);
	if (h->table)
		munmap(h->table, sizeof(*h->table));
	if (h->table_fd >= 0)
		close(h->table_fd);
}

/* A fresh lock table: a memfd of mode 0600, sealed against shrinking. */
static int table_new(int *fd_out, struct shm_lock_table **out)
{
	int fd = memfd_create("ntfsd-locks", MFD_CLOEXEC | MFD_ALLOW_SEALING), err;
	void *p;

	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, sizeof(struct shm_lock_table)) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		goto fail;
	p = mmap(NULL, sizeof(struct shm_lock_table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	*fd_out = fd;
	*out = p;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

int cache_holders_init(struct cache *c)
{
	struct holder_table *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	cache_mutex_init(&t->lock, LOCK_HOLDERS);
	t->next_id = NTFSD_LOCK_OWNER_DAEMON + 1;
	c->holders = t;
	return 0;
}

void cache_holders_destroy(struct cache *c)
{
	struct holder_table *t = c->holders;
	unsigned i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++)
		holder_free(&t->h[i]);
	free(t->h);
	cache_mutex_destroy(&t->lock);
	free(t);
	c->holders = NULL;
}

static struct holder *find(struct holder_table *t, uint32_t id)
{
	unsigned i;

	cache_assert_held(&t->lock);
	for (i = 0; i < t->n; i++)
		if (t->h[i].id == id)
			return &t->h[i];
	return NULL;
}

int cache_holder_add(struct cache *c, pid_t pid, uid_t uid, void (*expire)(void *arg),
		     void *arg, uint32_t *id)
{
	struct holder_table *t = c->holders;
	struct holder *h;
	uint32_t tries;

	if (!t) {
		*id = (uint32_t)pid;
		return 0;
	}
	cache_mutex_lock(&t->lock);
	if (t->n == t->cap) {
		unsigned cap = t->cap ? t->cap * 2 : 64;
		struct holder *nh = realloc(t->h, cap * sizeof(*nh));

		if (!nh) {
			cache_mutex_unlock(&t->lock);
			return -ENOMEM;
		}
		t->h = nh;
		t->cap = cap;
	}
	for (tries = 0; tries < NTFSD_LOCK_OWNER_MAX; tries++) {
		uint32_t cand = t->next_id;

		t->next_id = cand >= NTFSD_LOCK_OWNER_MAX ? NTFSD_LOCK_OWNER_DAEMON + 1 : cand + 1;
		if (!find(t, cand)) {
			h = &t->h[t->n++];
			memset(h, 0, sizeof(*h));
			h->id = cand;
			h->pid = pid;
			h->uid = uid;
			h->expire = expire;
			h->arg = arg;
			h->table_fd = -1;
			*id = cand;
			cache_mutex_unlock(&t->lock);
			return 0;
		}
	}
	cache_mutex_unlock(&t->lock);
	return -EAGAIN;
}

void cache_holder_remove(struct cache *c, uint32_t id)
{
	struct holder_table *t = c->holders;
	struct holder *h;

	if (!t)
		return;
	cache_mutex_lock(&t->lock);
	h = find(t, id);
	if (h) {
		holder_free(h);
		*h = t->h[--t->n];
	}
	cache_mutex_unlock(&t->lock);
}

void cache_holder_writer(struct cache *c, uint32_t id, struct cache_inode *ci, int delta)
{
	struct holder_table *t = c->holders;
	struct holder *h;
	unsigned i;

	if (!t)
		return;
	cache_mutex_lock(&t->lock);
	h = find(t, id);
	if (!h)
		goto out;
	for (i = 0; i < h->nfiles && h->files[i].ci != ci; i++)
		;
	if (delta > 0) {
		if (i == h->nfiles) {
			if (h->nfiles == h->cap) {
				unsigned cap = h->cap ? h->cap * 2 : 8;
				struct holder_file *nf = realloc(h->files, cap * sizeof(*nf));

				if (!nf) {
					/* unknown writer: its locks are broken
					 * when contended, which costs it only a
					 * retry of its store */
					log_warning("lock table: out of memory recording a writer");
					goto out;
				}
				h->files = nf;
				h->cap = cap;
			}
			h->files[h->nfiles].ci = ci;
			h->files[h->nfiles++].writers = 0;
		}
		h->files[i].writers++;
	} else if (i < h->nfiles && !--h->files[i].writers) {
		h->files[i] = h->files[--h->nfiles];
	}
out:
	cache_mutex_unlock(&t->lock);
}

bool cache_holder_may_lock(struct cache *c, uint32_t id, struct cache_inode *ci)
{
	struct holder_table *t = c->holders;
	struct holder *h;
	bool ok = false;
	unsigned i;

	if (!t)
		return true;
	cache_mutex_lock(&t->lock);
	h = find(t, id);
	if (h && !h->expired)
		for (i = 0; i < h->nfiles && !ok; i++)
			ok = h->files[i].ci == ci;
	cache_mutex_unlock(&t->lock);
	return ok;
}

int cache_holder_lock_table(struct cache *c, uint32_t id, int *fd)
{
	struct holder_table *t = c->holders;
	struct shm_lock_table *table = NULL;
	struct holder *h;
	int nfd = -1, err;

	*fd = -1;
	if (!t)
		return 0;
	err = table_new(&nfd, &table);
	if (err)
		return err;
	cache_mutex_lock(&t->lock);
	h = find(t, id);
	if (h && !h->table) {
		h->table = table;
		h->table_fd = nfd;
		table = NULL;
	}
	if (h)
		*fd = h->table_fd;
	cache_mutex_unlock(&t->lock);
	if (table) {            /* it had one, or is gone */
		munmap(table, sizeof(*table));
		close(nfd);
	}
	return *fd >= 0 ? 0 : -ENOENT;
}

bool cache_holder_claims(struct cache *c, uint32_t id, struct cache_inode *ci, uint64_t index)
{
	struct holder_table *t = c->holders;
	uint64_t key = ntfsd_lock_key(ci->slot, index);
	struct holder *h;
	bool claimed = false;
	unsigned i;

	if (!t)
		return true;
	cache_mutex_lock(&t->lock);
	h = find(t, id);
	if (h && h->table)
		for (i = 0; i < NTFSD_LOCK_TABLE_ENTRIES && !claimed; i++)
			claimed = (atomic_load_explicit(&h->table->entry[i], memory_order_acquire) &
				   ~NTFSD_LOCK_HELD) == key;
	cache_mutex_unlock(&t->lock);
	return claimed;
}

void cache_holder_expire(struct cache *c, uint32_t id, struct cache_inode *ci, uint64_t index,
			 uint64_t held_ms)
{
	struct holder_table *t = c->holders;
	struct holder *h;

	if (!t)
		return;
	cache_mutex_lock(&t->lock);
	h = find(t, id);
	if (h && !h->expired) {
		h->expired = true;
		log_warning("client pid %d uid %u held the lock of page %llu of MFT record %llu "
			    "for %llu ms, past max-lock-hold-ms (%u): disconnecting it and "
			    "breaking its lock", (int)h->pid, (unsigned)h->uid,
			    (unsigned long long)index, (unsigned long long)ci->mft_no,
			    (unsigned long long)held_ms, atomic_load(&c->max_lock_hold_ms));
		if (h->expire)
			h->expire(h->arg);
	}
	cache_mutex_unlock(&t->lock);
}
