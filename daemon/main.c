/*
 * main.c — ntfsd: opening the volume, recovering a crashed daemon's
 * segments, serving, and SIGHUP (options and the config file: config.c).
 *
 * Invariants: SIGHUP applies the client limits, like the dirty thresholds,
 * at once; the other settings need a restart and say so.
 * Bad usage exits 2 with a message, a volume or socket that cannot be
 * served exits 1 with the path and the reason, a volume that another
 * owner holds (owner.h) exits 75 (EX_TEMPFAIL) naming the holder, a clean
 * shutdown exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cache.h"
#include "config.h"
#include "crashpoint.h"
#include "error.h"
#include "fdstore.h"
#include "holders.h"
#include "flusher.h"
#include "io.h"
#include "frame.h"
#include "log.h"
#include "notify.h"
#include "ntfs_aops.h"
#include "owner.h"
#include "server.h"
#include "volume.h"
#include "writeback.h"
#include <sys/un.h>
#include <unistd.h>
/* What SIGHUP needs: the command line to parse again, and what is running. */
struct reload_ctx {
	int argc;
	char **argv;
	const struct options *cur;      /* as started (socket and cache-size defaulted) */
	struct flusher_pool *flushers;  /* NULL on a read-only volume */
	struct flusher_config fc;       /* in force */
	struct server_limits *limits;   /* in force; the server reads them live */
	struct cache *cache;            /* takes max-lock-hold-ms */
	int default_log_level;
};

static unsigned log_limit_change(const char *key, uint64_t old, uint64_t new)
{
	if (old == new)
		return 0;
	log_notice("SIGHUP: %s %llu -> %llu", key, (unsigned long long)old,
		   (unsigned long long)new);
	return 1;
}

/* SIGHUP: the client limits from n take effect at once (on the loop
 * thread, where the server reads them); returns how many changed. */
static unsigned reload_limits(struct reload_ctx *r, const struct options *n)
{
	struct server_limits nl, *l = r->limits;
	unsigned changes = 0;

	effective_limits(n, &nl);
	changes += log_limit_change("max-conn-inflight", l->conn_inflight, nl.conn_inflight);
	changes += log_limit_change("max-inflight", l->inflight, nl.inflight);
	changes += log_limit_change("max-conn-handles", l->conn_handles, nl.conn_handles);
	changes += log_limit_change("max-conn-replies", l->conn_replies, nl.conn_replies);
	changes += log_limit_change("max-conn-reply-bytes", l->conn_reply_bytes,
				    nl.conn_reply_bytes);
	changes += log_limit_change("max-uid-handles", l->uid_handles, nl.uid_handles);
	changes += log_limit_change("max-uid-conns", l->uid_conns, nl.uid_conns);
	changes += log_limit_change("max-lock-hold-ms", l->lock_hold_ms, nl.lock_hold_ms);
	*l = nl;
	if (r->cache)
		atomic_store(&r->cache->max_lock_hold_ms, nl.lock_hold_ms);
	return changes;
}

static bool str_differs(const char *a, const char *b, const char *dflt)
{
	return strcmp(a ? a : dflt, b ? b : dflt) != 0;
}

/*
 * SIGHUP: read the command line and the config file again and apply what
 * can change live; the command line still wins over the file.  A bad file
 * changes nothing.
 */
static void reload_config(void *arg)
{
	struct reload_ctx *r = arg;
	const struct options *cur = r->cur;
	struct options n = OPTIONS_INIT;
	struct flusher_config fc;
	int level, old_level = log_max_level, rc;
	unsigned changes = 0;

	if (!cur->config) {
		log_notice("SIGHUP: no --config file: nothing to reload");
		return;
	}
	optind = 0;  /* re-initialize getopt */
	rc = parse_args(r->argc, r->argv, &n);
	if (rc != -1) {
		log_error("SIGHUP: %s is not valid (see above): nothing changed", cur->config);
		free_options(&n);
		return;
	}

	level = n.log_level ? n.log_level : r->default_log_level;
	if (level != old_level) {
		/* log at whichever of the two levels is more verbose */
		if (level > old_level)
			log_max_level = level;
		log_notice("SIGHUP: log-level %s -> %s", log_level_name(old_level),
			   log_level_name(level));
		log_max_level = level;
		changes++;
	}

	effective_flusher_config(&n, cur->cache_size, &fc);
	fc.threads = r->fc.threads;
	if (fc.dirty_background != r->fc.dirty_background || fc.dirty_limit != r->fc.dirty_limit ||
	    fc.expire_ms != r->fc.expire_ms) {
		static const char *const names[] = { "dirty-background", "dirty-limit",
						     "dirty-expire-ms" };
		const uint64_t olds[] = { r->fc.dirty_background, r->fc.dirty_limit,
					  r->fc.expire_ms };
		const uint64_t news[] = { fc.dirty_background, fc.dirty_limit, fc.expire_ms };
		int i;

		for (i = 0; i < 3; i++) {
			if (olds[i] == news[i])
				continue;
			if (r->flushers)
				log_notice("SIGHUP: %s %llu -> %llu", names[i],
					   (unsigned long long)olds[i], (unsigned long long)news[i]);
			else
				log_notice("SIGHUP: %s %llu -> %llu has no effect: the volume is "
					   "read-only", names[i], (unsigned long long)olds[i],
					   (unsigned long long)news[i]);
			changes++;
		}
		if (r->flushers)
			flusher_set_config(r->flushers, &fc);
		r->fc = fc;
	}

	changes += reload_limits(r, &n);

	/* the rest is fixed while the daemon runs */
	{
		const char *restart[10];
		int nr = 0, i;

		if (str_differs(n.volume, cur->volume, ""))
			restart[nr++] = "volume";
		if (str_differs(n.socket, cur->socket, NTFSD_DEFAULT_SOCKET))
			restart[nr++] = "socket";
		if (n.read_only != cur->read_only)
			restart[nr++] = "read-only";
		if ((n.cache_size ? n.cache_size : DEFAULT_CACHE_SIZE) != cur->cache_size)
			restart[nr++] = "cache-size";
		if (n.flushers != cur->flushers)
			restart[nr++] = "flushers";
		if (str_differs(n.io, cur->io, "uring"))
			restart[nr++] = "io";
		if (str_differs(n.fd_store, cur->fd_store, "auto"))
			restart[nr++] = "fd-store";
		if (str_differs(n.fd_store_dir, cur->fd_store_dir, "/dev/shm"))
			restart[nr++] = "fd-store-dir";
		if (n.socket_mode != cur->socket_mode)
			restart[nr++] = "socket-mode";
		if (n.socket_gid != cur->socket_gid)
			restart[nr++] = "socket-group";
		for (i = 0; i < nr; i++)
			log_warning("SIGHUP: %s changed in %s: it takes effect only after a "
				    "restart", restart[i], cur->config);
		changes += (unsigned)nr;
	}
	if (!changes)
		log_notice("SIGHUP: %s re-read: nothing changed", cur->config);
	free_options(&n);
}

static int open_fd_store(const struct options *o, struct fdstore **out)
{
	enum fdstore_mode mode;

	fdstore_parse_mode(o->fd_store, &mode);   /* checked when parsed */
	return fdstore_open(mode, o->fd_store_dir ? o->fd_store_dir : "/dev/shm", o->volume, out);
}

/* Take over what a crashed daemon left (systemd's handback in *segs, the
 * keeper's store) and write every dirty page back before serving. */
static int recover(struct cache *cache, struct fdstore *store, struct fdstore_entry **segs,
		   size_t *nsegs)
{
	struct fdstore_entry *kept = NULL, *all;
	size_t nkept = 0, n;
	unsigned adopted;
	uint64_t dirty;
	int err;

	err = fdstore_fetch(store, &kept, &nkept);
	if (err)
		return err;
	n = *nsegs + nkept;
	if (!n)
		return 0;
	all = realloc(*segs, n * sizeof(*all));
	if (!all) {
		while (nkept)
			close(kept[--nkept].fd);
		free(kept);
		log_error("out of memory adopting stored segments");
		return -ENOMEM;
	}
	if (nkept)
		memcpy(all + *nsegs, kept, nkept * sizeof(*all));
	free(kept);
	*segs = NULL;
	*nsegs = 0;
	log_notice("segment store: %zu segment%s left by a previous daemon; adopting them",
		   n, n == 1 ? "" : "s");
	adopted = cache_adopt(cache, all, n);
	free(all);
	dirty = flusher_count_dirty(cache);
	notify_status("writing back %" PRIu64 " dirty pages left by a crashed daemon", dirty);
	err = flusher_sync_all(cache);
	if (err)
		log_error("writing back the adopted dirty pages failed: %s (the pages stay in the "
			  "store; `ntfsctl sync` reports it)", strerror(-err));
	else
		log_notice("segment store: %u file%s adopted, %" PRIu64 " dirty page%s written "
			   "back", adopted, adopted == 1 ? "" : "s", dirty, dirty == 1 ? "" : "s");
	return 0;
}

/* Take the entry named name out of segs: its fd, or -1. */
static int take_entry(struct fdstore_entry *segs, size_t *nsegs, const char *name)
{
	size_t i;
	int fd;

	for (i = 0; i < *nsegs; i++)
		if (!strcmp(segs[i].name, name)) {
			fd = segs[i].fd;
			segs[i] = segs[--*nsegs];
			return fd;
		}
	return -1;
}

int main(int argc, char **argv)
{
	struct options o = OPTIONS_INIT;
	struct server_config sc = { .listen_fd = -1 };
	struct ntfs_volume *vol = NULL;
	struct cache *cache = NULL;
	struct flusher_pool *flushers = NULL;
	struct server_limits limits;
	struct reload_ctx reload = { .argc = argc, .argv = argv, .cur = &o, .limits = &limits };
	char activated_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	struct fdstore_entry *segs = NULL;
	struct fdstore *store = NULL;
	size_t nsegs = 0;
	int rc, err, vfd = -1, handed;
	bool store_busy = false;

	rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		goto out;
	reload.default_log_level = log_max_level;
	if (o.log_level)
		log_max_level = o.log_level;
	if (!o.socket)
		o.socket = strdup(NTFSD_DEFAULT_SOCKET);
	if (!o.cache_size)
		o.cache_size = DEFAULT_CACHE_SIZE;
	crashpoint_init();      /* the tests' NTFSD_CRASHPOINT (crashpoint.h) */
	ntfs_crashpoint_hook = crashpoint;      /* ... also in ntfs/ */

	/* socket activation: systemd (or systemd-socket-activate) listens for us;
	 * its file-descriptor store hands back segments of a crashed daemon */
	sc.listen_fd = notify_listen_fd(activated_path, sizeof(activated_path), &segs, &nsegs);
	if (sc.listen_fd == -2) {
		rc = 1;
		goto out;
	}
	/* the volume's open file description, kept by systemd across a crash */
	handed = take_entry(segs, &nsegs, FDSTORE_VOLUME_NAME);
	if (o.read_only && (nsegs || handed >= 0)) {
		log_error("%s: systemd handed back %s of a daemon that crashed; start ntfsd "
			  "read-write so it can write back what it left and let go of the volume",
			  o.volume, nsegs ? "the segments" : "the volume");
		if (handed >= 0)
			close(handed);
		rc = 1;
		goto out;
	}
	if (!o.read_only) {
		/* before any thread exists: the keeper is forked.  A keeper
		 * busy with another daemon: owner_open() below names who holds
		 * the volume. */
		err = open_fd_store(&o, &store);
		if (err == -EBUSY)
			store_busy = true;
		else if (err) {
			rc = 1;
			goto out;
		}
		if (handed < 0)
			handed = fdstore_take_volume(store);
	}
	/* one owner per volume: locked (and a block device opened
	 * exclusively) before anything is read from it */
	err = owner_open(o.volume, o.read_only, handed, &vfd);
	if (err) {
		rc = err == -EBUSY ? EX_TEMPFAIL : 1;
		goto out;
	}
	if (store_busy) {
		/* the daemon on the keeper does not lock (an older ntfsd) */
		log_error("%s: the volume is in use: another ntfsd is connected to its segment "
			  "keeper: not serving it", o.volume);
		close(vfd);
		rc = EX_TEMPFAIL;
		goto out;
	}
	/* the store keeps the volume locked across a crash of ours */
	fdstore_hold_volume(store, vfd);
	err = ntfs_volume_open_fd(o.volume, vfd, o.read_only ? NTFS_OPEN_READ_ONLY : 0, &vol);
	if (err) {
		log_error("cannot open the volume: %s", ntfs_last_error());
		rc = 1;
		goto out;
	}
	err = ntfs_cache_create(vol, o.cache_size, &cache);
	if (err) {
		log_error("cannot create the cache: %s", ntfs_last_error());
		rc = 1;
		goto out;
	}
	cache->read_only = o.read_only;
	cache->store = store;
	if (cache_holders_init(cache)) {
		log_error("cannot create the lock-id table: out of memory");
		rc = 1;
		goto out;
	}
	reload.cache = cache;
	if (!o.read_only) {
		struct flusher_config fc;

		effective_flusher_config(&o, o.cache_size, &fc);
		writeback_init_faults();
		io_init_faults();
		io_create(vol->dev, o.io && !strcmp(o.io, "threads") ? IO_ENGINE_THREADS : IO_ENGINE_URING,
			  &cache->io);
		if (flusher_start(cache, &fc, &flushers)) {
			log_error("cannot start the flusher threads");
			rc = 1;
			goto out;
		}
		sc.flushers = flushers;
		sc.nr_flushers = fc.threads;
		reload.flushers = flushers;
		reload.fc = fc;
		log_info("writeback: %u flushers, io %s, dirty background %llu, limit %llu, "
			 "expire %llu ms, segments kept by %s", fc.threads, io_engine_name(cache->io),
			 (unsigned long long)fc.dirty_background,
			 (unsigned long long)fc.dirty_limit, (unsigned long long)fc.expire_ms,
			 fdstore_describe(store));
		if (recover(cache, store, &segs, &nsegs)) {
			rc = 1;
			goto out;
		}
	} else {
		effective_flusher_config(&o, o.cache_size, &reload.fc);
	}
	sc.volume_path = o.volume;
	sc.socket_path = sc.listen_fd >= 0 && activated_path[0] ? activated_path : o.socket;
	sc.read_only = o.read_only;
	sc.socket_mode = o.socket_mode >= 0 ? (unsigned)o.socket_mode : 0660;
	sc.socket_gid = o.socket_gid;
	sc.reload = reload_config;
	sc.reload_arg = &reload;
	effective_limits(&o, &limits);
	atomic_store(&cache->max_lock_hold_ms, limits.lock_hold_ms);
	sc.limits = &limits;
	rc = server_run(&sc, cache);
	flusher_stop(flushers);
	if (cache && flushers)
		cache_trim_all(cache);
out:
	if (cache)
		io_destroy(cache->io);
	cache_destroy(cache);
	/* rc 0: everything was written back, nothing is left stored */
	fdstore_close(store, rc == 0);
	while (nsegs)
		close(segs[--nsegs].fd);
	free(segs);
	ntfs_volume_close(vol);
	free_options(&o);
	return rc;
}
