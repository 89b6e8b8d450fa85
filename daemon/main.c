/*
 * main.c — ntfsd: options and configuration, opening the volume, serving.
 *
 * Invariants: every option has one key, usable both as --KEY on the command
 * line and as "KEY = VALUE" in the --config file; the command line wins.
 * The client limits (limit_keys) have one table for parsing, range checks
 * and defaults; SIGHUP applies them, like the dirty thresholds, at once.
 * Bad usage exits 2 with a message, a volume or socket that cannot be
 * served exits 1 with the path and the reason, a volume that another
 * owner holds (owner.h) exits 75 (EX_TEMPFAIL) naming the holder, a clean
 * shutdown exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cache.h"
#include "crashpoint.h"
#include "error.h"
#include "fdstore.h"
#include "holders.h"
#include "flusher.h"
#include "io.h"
#include "frame.h"
#include "log.h"
#include "notify.h"
#include "owner.h"
#include "server.h"
#include "volume.h"
#include "writeback.h"
#include <sys/un.h>
#include <unistd.h>

#define NTFSD_VERSION "0.1.0"
#define DEFAULT_CACHE_SIZE (256ull << 20)

struct options {
	uint64_t dirty_background, dirty_limit, dirty_expire_ms;
	unsigned flushers;
	char *io;
	char *fd_store;
	char *fd_store_dir;
	char *volume;
	char *socket;
	bool read_only;
	bool read_only_set;
	int socket_mode;                /* -1: not given (0660) */
	int socket_gid;                 /* -1: not given (the daemon's group) */
	uint64_t cache_size;
	char *config;
	int log_level;
	/* client limits (server_limits); 0: not given */
	uint64_t max_conn_inflight, max_inflight, max_conn_handles, max_conn_replies;
	uint64_t max_conn_reply_bytes, max_uid_handles, max_uid_conns, max_lock_hold_ms;
};

/* The client limits: their keys, where struct options keeps them, their
 * defaults and the values they may take. */
struct limit_key {
	const char *key;
	size_t offset;          /* of a uint64_t in struct options */
	bool bytes;             /* a size (K, M, G suffixes) or a plain count */
	uint64_t dflt, min, max;
};

static const struct limit_key limit_keys[] = {
	{ "max-conn-inflight", offsetof(struct options, max_conn_inflight), true,
	  SERVER_DEFAULT_CONN_INFLIGHT, SERVER_MIN_CONN_INFLIGHT, 1ull << 30 },
	{ "max-inflight", offsetof(struct options, max_inflight), true,
	  SERVER_DEFAULT_INFLIGHT, SERVER_MIN_CONN_INFLIGHT, 1ull << 40 },
	{ "max-conn-handles", offsetof(struct options, max_conn_handles), false,
	  SERVER_DEFAULT_CONN_HANDLES, 1, 1000000 },
	{ "max-conn-replies", offsetof(struct options, max_conn_replies), false,
	  SERVER_DEFAULT_CONN_REPLIES, 1, 1000000 },
	{ "max-conn-reply-bytes", offsetof(struct options, max_conn_reply_bytes), true,
	  SERVER_DEFAULT_CONN_REPLY_BYTES, 4096, 1ull << 30 },
	{ "max-uid-handles", offsetof(struct options, max_uid_handles), false,
	  SERVER_DEFAULT_UID_HANDLES, 1, 1000000 },
	{ "max-uid-conns", offsetof(struct options, max_uid_conns), false,
	  SERVER_DEFAULT_UID_CONNS, 1, 1000000 },
	{ "max-lock-hold-ms", offsetof(struct options, max_lock_hold_ms), false,
	  CACHE_DEFAULT_MAX_LOCK_HOLD_MS, 10, 3600000 },
};
#define NR_LIMIT_KEYS (sizeof(limit_keys) / sizeof(limit_keys[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ntfsd --volume PATH [OPTIONS]\n"
		"Serve an NTFS volume (image file or block device) to ntfsd clients through a\n"
		"shared-memory page cache.  Runs in the foreground and logs to stderr.\n\n"
		"  -v, --volume PATH       the volume to serve (required)\n"
		"  -s, --socket PATH       control socket (default %s)\n"
		"      --socket-mode MODE  the socket's mode (octal, default 0660): who may\n"
		"                          connect; see ACCESS in ntfsd(8)\n"
		"      --socket-group GROUP  the socket's group (default: the daemon's)\n"
		"  -r, --read-only         open the volume read-only; refuse write opens\n"
		"  -c, --cache-size BYTES  keep at most this much file data cached\n"
		"                          (suffixes K, M, G, T, optionally KiB etc.;\n"
		"                          default 256M)\n"
		"  -f, --config FILE       read KEY = VALUE settings; the keys are the long\n"
		"                          option names (volume, socket, read-only, ...,\n"
		"                          io); options given on the command line win\n"
		"  -l, --log-level LEVEL   error, warning, notice, info (default) or debug\n"
		"      --flushers N        writeback threads (default: the CPU count)\n"
		"      --dirty-background BYTES  start background writeback past this much\n"
		"                          dirty data (default: a quarter of the cache)\n"
		"      --dirty-limit BYTES writers wait while dirty data is past this\n"
		"                          (default: half of the cache)\n"
		"      --dirty-expire-ms MS  write back data dirty for longer (default 5000)\n"
		"      --io ENGINE         uring (default; falls back to threads when\n"
		"                          io_uring is unavailable) or threads\n"
		"      --fd-store MODE     where the cache's segments survive a crash of the\n"
		"                          daemon: systemd (its file-descriptor store),\n"
		"                          keeper (a process ntfsd starts, with a socket in\n"
		"                          --fd-store-dir), none, or auto (default: systemd\n"
		"                          when it announces a store, else keeper)\n"
		"      --fd-store-dir DIR  the keeper's socket directory (default /dev/shm)\n"
		"Limits on what one client can make the daemon hold (over a limit the\n"
		"connection is dropped and a warning names the client and the limit):\n"
		"      --max-conn-inflight BYTES  requests received and not yet processed,\n"
		"                          per connection; a larger request frame is refused\n"
		"                          (64K..1G, default 1M)\n"
		"      --max-inflight BYTES  the same over all connections; past it the\n"
		"                          connection holding the most is dropped (default 64M)\n"
		"      --max-conn-handles N  open files per connection; past it an open fails\n"
		"                          with EMFILE and the connection stays (default 4096)\n"
		"      --max-conn-replies N  replies queued because the client does not read\n"
		"                          them, per connection (default 64)\n"
		"      --max-conn-reply-bytes BYTES  their bytes; a single reply may be larger\n"
		"                          (default 4M)\n"
		"      --max-uid-handles N  open files of one user over all its connections;\n"
		"                          past it an open fails with EMFILE (default 768,\n"
		"                          below the 1024 files the daemon can have open)\n"
		"      --max-uid-conns N   connections of one user; a connection past it is\n"
		"                          closed at once (default 256)\n"
		"      --max-lock-hold-ms MS  a client holding a page lock longer while the\n"
		"                          daemon waits for it is disconnected and its lock\n"
		"                          broken (default 10000)\n"
		"  -h, --help              show this help and exit\n"
		"  -V, --version           show the version and exit\n\n"
		"Exit status: 0 after a clean shutdown (SIGTERM or SIGINT), 1 when the volume\n"
		"or the socket cannot be served, 2 on a usage or configuration error, 75 when\n"
		"another program (another ntfsd, its keeper, ntfs-3g, a mount) holds the volume.\n",
		NTFSD_DEFAULT_SOCKET);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'B' || *end == 'b') && end[1] == '\0')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static bool parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off"))
		*out = false;
	else
		return false;
	return true;
}

static const struct limit_key *limit_key_find(const char *key)
{
	size_t i;

	for (i = 0; i < NR_LIMIT_KEYS; i++)
		if (!strcmp(limit_keys[i].key, key))
			return &limit_keys[i];
	return NULL;
}

static uint64_t *limit_slot(struct options *o, const struct limit_key *k)
{
	return (uint64_t *)((char *)o + k->offset);
}

/* What o asks for limit k, or its default. */
static uint64_t limit_value(const struct options *o, const struct limit_key *k)
{
	uint64_t v = *limit_slot((struct options *)o, k);

	return v ? v : k->dflt;
}

static int apply_limit(struct options *o, const struct limit_key *k, const char *val,
		       bool from_file, const char *where)
{
	uint64_t v, *dst = limit_slot(o, k);
	char *end;
	int bad;

	if (k->bytes) {
		bad = parse_size(val, &v);
	} else {
		errno = 0;
		v = strtoull(val, &end, 10);
		bad = errno || end == val || *end || *val == '-';
	}
	if (bad || v < k->min || v > k->max) {
		fprintf(stderr, "ntfsd: %s: %s must be %s from %llu to %llu, not \"%s\"\n", where,
			k->key, k->bytes ? "a size in bytes" : "a number", (unsigned long long)k->min,
			(unsigned long long)k->max, val);
		return -1;
	}
	if (!from_file || !*dst)
		*dst = v;
	return 0;
}

/* Apply one setting; from_file settings never override the command line. */
static int apply_setting(struct options *o, const char *key, const char *val, bool from_file,
			 const char *where)
{
	if (!strcmp(key, "volume")) {
		if (!from_file || !o->volume) {
			free(o->volume);
			o->volume = strdup(val);
		}
	} else if (!strcmp(key, "socket")) {
		if (!from_file || !o->socket) {
			free(o->socket);
			o->socket = strdup(val);
		}
	} else if (!strcmp(key, "socket-mode")) {
		char *end;
		unsigned long v = strtoul(val, &end, 8);

		if (!*val || *end || v > 0777 || (v & 0111)) {
			fprintf(stderr, "ntfsd: %s: socket-mode must be an octal mode like 0660 "
				"without execute bits, not \"%s\"\n", where, val);
			return -1;
		}
		if (!from_file || o->socket_mode < 0)
			o->socket_mode = (int)v;
	} else if (!strcmp(key, "socket-group")) {
		struct group *g = getgrnam(val);
		char *end;
		unsigned long v = strtoul(val, &end, 10);

		if (!g && (!*val || *end || v > INT32_MAX)) {
			fprintf(stderr, "ntfsd: %s: socket-group \"%s\" is no group name or "
				"number\n", where, val);
			return -1;
		}
		if (!from_file || o->socket_gid < 0)
			o->socket_gid = g ? (int)g->gr_gid : (int)v;
	} else if (!strcmp(key, "read-only")) {
		bool b;

		if (!parse_bool(val, &b)) {
			fprintf(stderr, "ntfsd: %s: read-only must be yes or no, not \"%s\"\n",
				where, val);
			return -1;
		}
		if (!from_file || !o->read_only_set) {
			o->read_only = b;
			o->read_only_set = true;
		}
	} else if (!strcmp(key, "cache-size")) {
		uint64_t v;

		if (parse_size(val, &v) || v == 0) {
			fprintf(stderr, "ntfsd: %s: cache-size \"%s\" is not a size in bytes "
				"(e.g. 512M)\n", where, val);
			return -1;
		}
		if (!from_file || !o->cache_size)
			o->cache_size = v;
	} else if (!strcmp(key, "log-level")) {
		int l = log_level_parse(val);

		if (l < 0) {
			fprintf(stderr, "ntfsd: %s: log-level \"%s\" is not one of error, warning, "
				"notice, info, debug\n", where, val);
			return -1;
		}
		if (!from_file || !o->log_level)
			o->log_level = l;
	} else if (!strcmp(key, "flushers")) {
		char *end;
		unsigned long v = strtoul(val, &end, 10);

		if (*end || !v || v > 64) {
			fprintf(stderr, "ntfsd: %s: flushers must be 1..64, not \"%s\"\n", where, val);
			return -1;
		}
		if (!from_file || !o->flushers)
			o->flushers = (unsigned)v;
	} else if (!strcmp(key, "dirty-background") || !strcmp(key, "dirty-limit") ||
		   !strcmp(key, "dirty-expire-ms")) {
		uint64_t v, *dst = !strcmp(key, "dirty-background") ? &o->dirty_background
				  : !strcmp(key, "dirty-limit")      ? &o->dirty_limit
								     : &o->dirty_expire_ms;

		if (parse_size(val, &v) || v == 0) {
			fprintf(stderr, "ntfsd: %s: %s \"%s\" is not a positive number\n", where,
				key, val);
			return -1;
		}
		if (!from_file || !*dst)
			*dst = v;
	} else if (!strcmp(key, "io")) {
		if (strcmp(val, "uring") && strcmp(val, "threads")) {
			fprintf(stderr, "ntfsd: %s: io must be uring or threads, not \"%s\"\n", where,
				val);
			return -1;
		}
		if (!from_file || !o->io) {
			free(o->io);
			o->io = strdup(val);
		}
	} else if (!strcmp(key, "fd-store")) {
		enum fdstore_mode m;

		if (fdstore_parse_mode(val, &m)) {
			fprintf(stderr, "ntfsd: %s: fd-store must be auto, systemd, keeper or none, "
				"not \"%s\"\n", where, val);
			return -1;
		}
		if (!from_file || !o->fd_store) {
			free(o->fd_store);
			o->fd_store = strdup(val);
		}
	} else if (!strcmp(key, "fd-store-dir")) {
		if (!from_file || !o->fd_store_dir) {
			free(o->fd_store_dir);
			o->fd_store_dir = strdup(val);
		}
	} else if (limit_key_find(key)) {
		return apply_limit(o, limit_key_find(key), val, from_file, where);
	} else {
		fprintf(stderr, "ntfsd: %s: unknown setting \"%s\"\n", where, key);
		return -1;
	}
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int read_config(struct options *o, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[4200];
	unsigned lineno = 0;

	if (!f) {
		fprintf(stderr, "ntfsd: cannot read config %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line), *eq;

		lineno++;
		if (!*s || *s == '#' || *s == ';')
			continue;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		eq = strchr(s, '=');
		if (!eq) {
			fprintf(stderr, "ntfsd: %s: expected KEY = VALUE\n", where);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		if (apply_setting(o, trim(s), trim(eq + 1), true, where)) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "volume", required_argument, NULL, 'v' },
		{ "socket", required_argument, NULL, 's' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "cache-size", required_argument, NULL, 'c' },
		{ "config", required_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "flushers", required_argument, NULL, 1 },
		{ "dirty-background", required_argument, NULL, 2 },
		{ "dirty-limit", required_argument, NULL, 3 },
		{ "dirty-expire-ms", required_argument, NULL, 4 },
		{ "io", required_argument, NULL, 5 },
		{ "fd-store", required_argument, NULL, 6 },
		{ "fd-store-dir", required_argument, NULL, 7 },
		{ "max-conn-inflight", required_argument, NULL, 8 },
		{ "max-inflight", required_argument, NULL, 9 },
		{ "max-conn-handles", required_argument, NULL, 10 },
		{ "max-conn-replies", required_argument, NULL, 11 },
		{ "max-conn-reply-bytes", required_argument, NULL, 12 },
		{ "max-uid-handles", required_argument, NULL, 13 },
		{ "max-uid-conns", required_argument, NULL, 14 },
		{ "max-lock-hold-ms", required_argument, NULL, 15 },
		{ "socket-mode", required_argument, NULL, 16 },
		{ "socket-group", required_argument, NULL, 17 },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "v:s:rc:f:l:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			if (apply_setting(o, "volume", optarg, false, "--volume"))
				return 2;
			break;
		case 's':
			if (apply_setting(o, "socket", optarg, false, "--socket"))
				return 2;
			break;
		case 'r':
			apply_setting(o, "read-only", "yes", false, "--read-only");
			break;
		case 'c':
			if (apply_setting(o, "cache-size", optarg, false, "--cache-size"))
				return 2;
			break;
		case 'f':
			free(o->config);
			o->config = strdup(optarg);
			break;
		case 'l':
			if (apply_setting(o, "log-level", optarg, false, "--log-level"))
				return 2;
			break;
		case 1: case 2: case 3: case 4: case 5: case 6: case 7:
		case 8: case 9: case 10: case 11: case 12: case 13: case 14: case 15:
		case 16: case 17: {
			static const char *const keys[] = { NULL, "flushers", "dirty-background",
							    "dirty-limit", "dirty-expire-ms", "io",
							    "fd-store", "fd-store-dir",
							    "max-conn-inflight", "max-inflight",
							    "max-conn-handles", "max-conn-replies",
							    "max-conn-reply-bytes", "max-uid-handles",
							    "max-uid-conns", "max-lock-hold-ms",
							    "socket-mode", "socket-group" };

			if (apply_setting(o, keys[opt], optarg, false, keys[opt]))
				return 2;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("ntfsd %s (protocol %u, shm layout %u)\n", NTFSD_VERSION,
			       NTFSD_PROTOCOL_VERSION, NTFSD_SHM_LAYOUT_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'ntfsd --help' for more information.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ntfsd: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (o->config && read_config(o, o->config))
		return 2;
	if (!o->volume) {
		fprintf(stderr, "ntfsd: no volume given: use --volume PATH (see --help)\n");
		return 2;
	}
	return -1;  /* go on */
}

static void free_options(struct options *o)
{
	free(o->volume);
	free(o->socket);
	free(o->config);
	free(o->io);
	free(o->fd_store);
	free(o->fd_store_dir);
}

/* The flusher settings o asks for, with their defaults, on a cache of
 * cache_size bytes. */
static void effective_flusher_config(const struct options *o, uint64_t cache_size,
				     struct flusher_config *fc)
{
	fc->threads = o->flushers ? o->flushers : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	fc->dirty_background = o->dirty_background ? o->dirty_background : cache_size / 4;
	fc->dirty_limit = o->dirty_limit ? o->dirty_limit : cache_size / 2;
	fc->expire_ms = o->dirty_expire_ms ? o->dirty_expire_ms : 5000;
	if (fc->dirty_limit > cache_size) {
		log_warning("dirty-limit %llu is larger than the cache: using %llu",
			    (unsigned long long)fc->dirty_limit, (unsigned long long)cache_size);
		fc->dirty_limit = cache_size;
	}
	if (fc->dirty_background > fc->dirty_limit)
		fc->dirty_background = fc->dirty_limit;
}

/* The client limits o asks for, with their defaults. */
static void effective_limits(const struct options *o, struct server_limits *l)
{
	l->conn_inflight = limit_value(o, limit_key_find("max-conn-inflight"));
	l->inflight = limit_value(o, limit_key_find("max-inflight"));
	l->conn_handles = (unsigned)limit_value(o, limit_key_find("max-conn-handles"));
	l->conn_replies = (unsigned)limit_value(o, limit_key_find("max-conn-replies"));
	l->conn_reply_bytes = limit_value(o, limit_key_find("max-conn-reply-bytes"));
	l->uid_handles = (unsigned)limit_value(o, limit_key_find("max-uid-handles"));
	l->uid_conns = (unsigned)limit_value(o, limit_key_find("max-uid-conns"));
	l->lock_hold_ms = (unsigned)limit_value(o, limit_key_find("max-lock-hold-ms"));
}

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
	struct options n = { .socket_mode = -1, .socket_gid = -1 };
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
	struct options o = { .socket_mode = -1, .socket_gid = -1 };
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
	err = cache_create(vol, o.cache_size, &cache);
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
		io_create(vol, o.io && !strcmp(o.io, "threads") ? IO_ENGINE_THREADS : IO_ENGINE_URING,
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
	rc = server_run(&sc, vol, cache);
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
