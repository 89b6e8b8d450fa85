/*
 * config.h — ntfsd's options: the command line, the --config file, their
 * defaults and ranges.
 *
 * Invariants: every option has one key, usable both as --KEY on the command
 * line and as "KEY = VALUE" in the --config file; the command line wins.
 * The client limits have one table (limit_keys) for parsing, range checks
 * and defaults.  Bad usage is reported on stderr with the key and the
 * value; parse_args() returns the exit status then (2), or 0 after --help
 * and --version, or -1 to go on.
 */
#ifndef NTFSD_CONFIG_H
#define NTFSD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define NTFSD_VERSION "0.1.0"
#define DEFAULT_CACHE_SIZE (256ull << 20)

struct flusher_config;
struct server_limits;

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

/* The options before anything is parsed (every field "not given"). */
#define OPTIONS_INIT { .socket_mode = -1, .socket_gid = -1 }

int parse_args(int argc, char **argv, struct options *o);
void free_options(struct options *o);
/* The flusher settings o asks for, with their defaults, on a cache of
 * cache_size bytes. */
void effective_flusher_config(const struct options *o, uint64_t cache_size,
			      struct flusher_config *fc);
/* The client limits o asks for, with their defaults. */
void effective_limits(const struct options *o, struct server_limits *l);

#endif
