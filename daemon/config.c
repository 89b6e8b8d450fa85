/*
 * config.c — see config.h.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "fdstore.h"
#include "flusher.h"
#include "frame.h"
#include "log.h"
#include "server.h"
#include "shm_layout.h"
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

int parse_args(int argc, char **argv, struct options *o)
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

void free_options(struct options *o)
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
void effective_flusher_config(const struct options *o, uint64_t cache_size,
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
void effective_limits(const struct options *o, struct server_limits *l)
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

