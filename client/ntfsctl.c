/*
 * ntfsctl — the operator's view of a running ntfsd: the volume and cache
 * status, a file's sizes and cache state, directory listings, file
 * contents read through the daemon's cache, writes into it and syncs.
 * Uses only libntfsc's public API.
 *
 * Invariants: the usage text lives in usage() alone and --help prints it;
 * every failure prints "ntfsctl: COMMAND[ PATH]: reason" (the daemon's
 * message when there is one, else strerror; sync always gives strerror, so
 * scripts can match it) and exits 1; usage errors exit 2; success exits 0
 * only once everything reached stdout, and for sync only once everything
 * reached the disk.  JSON output is valid JSON whatever bytes a name holds
 * (invalid UTF-8 becomes U+FFFD).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ntfsc.h"

#ifndef NTFSD_VERSION
#define NTFSD_VERSION "unknown"
#endif

#define CAT_CHUNK (1u << 20)
#define WRITE_CHUNK (1u << 20)
/* write --mmap maps (and so pins) at most this much at a time: a small cache
 * must not be filled with pins */
#define MMAP_WINDOW (1u << 20)

static const char *prog = "ntfsctl";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [-s SOCKET] [--json] COMMAND [ARGS]\n"
		"Inspect an NTFS volume served by ntfsd; read and write files through its cache.\n"
		"\n"
		"Options:\n"
		"  -s, --socket=SOCKET  the daemon's control socket (default: $NTFSD_SOCKET,\n"
		"                       else /run/ntfsd/ntfsd.sock)\n"
		"      --json           print JSON (status, stat and ls)\n"
		"  -h, --help           print this help and exit\n"
		"  -V, --version        print the version and exit\n"
		"\n"
		"Commands:\n"
		"  status               the volume, the cache and write-back, and the clients\n"
		"  stat PATH            sizes, attributes and cached pages of a file or directory,\n"
		"                       and the on-disk sizes while write-back has not written them\n"
		"  ls [-l] PATH         the names in a directory, in index order, one a line\n"
		"                       (-l, --long: also the type, size, modification time\n"
		"                       (UTC) and MFT record number)\n"
		"  cat PATH             write the file's bytes, read through the cache, to stdout\n"
		"  write PATH [--offset N | --append] [--mmap]\n"
		"                       copy stdin into the file through the cache: without an\n"
		"                       option it replaces the contents (as a shell's > does),\n"
		"                       --offset N writes in place from byte N, --append at the\n"
		"                       end; the file grows as needed (clusters allocated).\n"
		"                       --mmap stores through a shared mapping instead (the file\n"
		"                       must already reach the end of the data).  The data\n"
		"                       reaches the disk with the daemon's write-back or sync\n"
		"  truncate PATH SIZE   set the file's size to SIZE bytes: a smaller size drops\n"
		"                       the bytes past it (their clusters are freed), a larger\n"
		"                       one reads as zeroes (sparse, costing no clusters)\n"
		"  mkdir [-p] PATH      make a directory (-p, --parents: and the missing ones\n"
		"                       above it; existing ones are fine)\n"
		"  rm PATH              remove a file (one a client has open stays usable\n"
		"                       through its handles until the last close)\n"
		"  rmdir PATH           remove an empty directory\n"
		"  mv PATH NEWPATH      rename PATH to NEWPATH (in another directory too),\n"
		"                       replacing a file or empty directory there as rename(2)\n"
		"                       does; the file may be open\n"
		"  cp SRC DEST          copy a file between the host and the volume, or within\n"
		"                       the volume; a volume path is written :/PATH (e.g.\n"
		"                       cp disk.img :/images/ or cp :/logs/a.txt .); a DEST\n"
		"                       that is a directory gets SRC's name; an existing file\n"
		"                       is replaced.  Not synced (see sync).  On a terminal a\n"
		"                       long copy shows a progress bar\n"
		"  touch [-c] [-d @SECONDS[.FRACTION]] PATH\n"
		"                       set the access and modification times of a file or\n"
		"                       directory to now (-d, --date: to that time, in seconds\n"
		"                       since 1970 UTC); a missing file is created empty,\n"
		"                       unless -c (--no-create) is given\n"
		"  sync [PATH]          write the file's (without PATH: every file's) dirty data\n"
		"                       back and wait; fails if any of it could not be written\n"
		"\n"
		"PATH is an absolute path inside the volume, e.g. /Windows/win.ini.\n"
		"Exit status: 0 success, 1 failure, 2 usage error.\n",
		prog);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: what is wrong, then the usage; exit status 2. */
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	usage(stderr);
	return 2;
}

/* Print the failure line for the errno and libntfsc message of now. */
static int fail(const char *cmd, const char *path)
{
	int err = errno;
	const char *msg = ntfsc_last_error_message(NULL);

	fprintf(stderr, "%s: %s%s%s: %s\n", prog, cmd, path ? " " : "", path ? path : "",
		msg ? msg : strerror(err));
	return 1;
}

/* ---- output helpers ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	uint32_t cp, min;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void json_string(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);

	putchar('"');
	while (n) {
		size_t l = utf8_len(s, n);

		if (l == 0) {
			fputs("\\ufffd", stdout);
			l = 1;
		} else if (*s == '"' || *s == '\\') {
			putchar('\\');
			putchar(*s);
		} else if (*s == '\n') {
			fputs("\\n", stdout);
		} else if (*s == '\t') {
			fputs("\\t", stdout);
		} else if (*s == '\r') {
			fputs("\\r", stdout);
		} else if (*s < 0x20 || *s == 0x7f) {
			printf("\\u%04x", *s);
		} else {
			fwrite(s, 1, l, stdout);
		}
		s += l;
		n -= l;
	}
	putchar('"');
}

static const char *yes_no(bool b)
{
	return b ? "yes" : "no";
}

static const char *json_bool(bool b)
{
	return b ? "true" : "false";
}

static const char *human(uint64_t bytes, char *buf, size_t size)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", bytes);
		return buf;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, "%.1f %s", v, unit[u]);
	return buf;
}

/* ---- status ---- */

static int numlen(uint64_t v)
{
	char buf[24];

	return snprintf(buf, sizeof(buf), "%" PRIu64, v);
}

/* The allocator row: "jemalloc, 3.2 MiB allocated, 8.0 MiB resident";
 * another allocator's figures say whose they are. */
static void allocator_text(const struct ntfsc_volume_status *s, char *buf, size_t size)
{
	char a[32], r[32];
	const char *whose = "";

	if (!*s->allocator) {
		snprintf(buf, size, "unknown (the daemon does not say)");
		return;
	}
	if (!s->allocator_stats) {
		snprintf(buf, size, "%s (no figures)", s->allocator);
		return;
	}
	if (!strcmp(s->allocator, "glibc"))
		whose = " (glibc's mallinfo2, not jemalloc)";
	else if (!strcmp(s->allocator, "asan"))
		whose = " (AddressSanitizer's allocator, not jemalloc)";
	else if (strcmp(s->allocator, "jemalloc"))
		whose = " (not jemalloc)";
	snprintf(buf, size, "%s, %s allocated, %s resident%s", s->allocator,
		 human(s->allocator_allocated, a, sizeof(a)),
		 human(s->allocator_resident, r, sizeof(r)), whose);
}

static void status_text(const struct ntfsc_volume_status *s)
{
	char h1[32], alloc[160];

#define ROW(label, fmt, ...) printf("%-18s" fmt "\n", label ":", __VA_ARGS__)
	ROW("volume", "%s", s->volume);
	ROW("label", "%s", s->label);
	ROW("ntfs version", "%u.%u", s->ntfs_major, s->ntfs_minor);
	ROW("read-only", "%s", yes_no(s->read_only));
	ROW("cluster size", "%u", s->cluster_size);
	ROW("volume size", "%" PRIu64 " (%s)", s->volume_size,
	    human(s->volume_size, h1, sizeof(h1)));
	if (!s->read_only) {
		ROW("free space", "%" PRIu64 " (%s)", s->free_bytes,
		    human(s->free_bytes, h1, sizeof(h1)));
		ROW("growth room", "%" PRIu64 " (%s)", s->growth_room_bytes,
		    human(s->growth_room_bytes, h1, sizeof(h1)));
	}
	ROW("cache used", "%" PRIu64 " (%s)", s->cache_used,
	    human(s->cache_used, h1, sizeof(h1)));
	ROW("cache limit", "%" PRIu64 " (%s)", s->cache_limit,
	    human(s->cache_limit, h1, sizeof(h1)));
	ROW("pages cached", "%" PRIu64, s->cached_pages);
	ROW("pages dirty", "%" PRIu64, s->dirty_pages);
	ROW("pages writeback", "%" PRIu64, s->writeback_pages);
	ROW("pages read", "%" PRIu64, s->pages_read);
	ROW("pages reclaimed", "%" PRIu64, s->pages_reclaimed);
	ROW("pages written", "%" PRIu64, s->pages_written);
	ROW("write errors", "%" PRIu64, s->write_errors);
	if (s->dirty_limit)
		ROW("dirty limit", "%" PRIu64 " (%s)", s->dirty_limit,
		    human(s->dirty_limit, h1, sizeof(h1)));
	else
		ROW("dirty limit", "%s", "none");
	ROW("dirty background", "%" PRIu64 " (%s)", s->dirty_background,
	    human(s->dirty_background, h1, sizeof(h1)));
	ROW("io engine", "%s", *s->io_engine ? s->io_engine : "-");
	ROW("flushers", "%" PRIu32, s->flushers);
	allocator_text(s, alloc, sizeof(alloc));
	ROW("allocator", "%s", alloc);
	ROW("open files", "%" PRIu64, s->open_files);
	ROW("clients", "%zu", s->nr_clients);
#undef ROW
	if (s->nr_clients) {
		int w[4] = { 3, 3, 3, 10 };   /* PID UID GID OPEN FILES */

		for (size_t i = 0; i < s->nr_clients; i++) {
			const struct ntfsc_client_info *ci = &s->clients[i];
			int l[4] = { numlen(ci->pid), numlen(ci->uid), numlen(ci->gid),
				     numlen(ci->open_files) };

			for (int k = 0; k < 4; k++)
				if (l[k] > w[k])
					w[k] = l[k];
		}
		printf("\n%*s  %*s  %*s  %*s\n", w[0], "PID", w[1], "UID", w[2], "GID", w[3],
		       "OPEN FILES");
		for (size_t i = 0; i < s->nr_clients; i++) {
			const struct ntfsc_client_info *ci = &s->clients[i];

			printf("%*u  %*u  %*u  %*u\n", w[0], ci->pid, w[1], ci->uid, w[2], ci->gid,
			       w[3], ci->open_files);
		}
	}
}

static void status_json(const struct ntfsc_volume_status *s)
{
	fputs("{\"volume\": ", stdout);
	json_string(s->volume);
	fputs(", \"label\": ", stdout);
	json_string(s->label);
	printf(", \"ntfs_version\": \"%u.%u\", \"ntfs_major\": %u, \"ntfs_minor\": %u",
	       s->ntfs_major, s->ntfs_minor, s->ntfs_major, s->ntfs_minor);
	printf(", \"read_only\": %s, \"cluster_size\": %u, \"volume_size\": %" PRIu64,
	       json_bool(s->read_only), s->cluster_size, s->volume_size);
	printf(", \"free_bytes\": %" PRIu64 ", \"growth_room_bytes\": %" PRIu64, s->free_bytes,
	       s->growth_room_bytes);
	printf(", \"cache_used\": %" PRIu64 ", \"cache_limit\": %" PRIu64, s->cache_used,
	       s->cache_limit);
	printf(", \"cached_pages\": %" PRIu64 ", \"dirty_pages\": %" PRIu64
	       ", \"writeback_pages\": %" PRIu64, s->cached_pages, s->dirty_pages,
	       s->writeback_pages);
	printf(", \"pages_read\": %" PRIu64 ", \"pages_reclaimed\": %" PRIu64
	       ", \"pages_written\": %" PRIu64 ", \"write_errors\": %" PRIu64, s->pages_read,
	       s->pages_reclaimed, s->pages_written, s->write_errors);
	printf(", \"dirty_limit\": %" PRIu64 ", \"dirty_background\": %" PRIu64
	       ", \"io_engine\": ", s->dirty_limit, s->dirty_background);
	json_string(s->io_engine);
	printf(", \"flushers\": %" PRIu32 ", \"allocator\": {\"name\": ", s->flushers);
	json_string(s->allocator);
	if (s->allocator_stats)
		printf(", \"allocated\": %" PRIu64 ", \"resident\": %" PRIu64 "}",
		       s->allocator_allocated, s->allocator_resident);
	else
		fputs(", \"allocated\": null, \"resident\": null}", stdout);
	printf(", \"open_files\": %" PRIu64 ", \"clients\": [", s->open_files);
	for (size_t i = 0; i < s->nr_clients; i++) {
		const struct ntfsc_client_info *ci = &s->clients[i];

		printf("%s{\"pid\": %u, \"uid\": %u, \"gid\": %u, \"open_files\": %u}",
		       i ? ", " : "", ci->pid, ci->uid, ci->gid, ci->open_files);
	}
	fputs("]}\n", stdout);
}

struct opts {
	const char *socket;             /* for a second connection (sync progress) */
	bool json, long_list;
	bool mmap, has_offset, append;  /* write */
	bool parents;                   /* mkdir -p */
	off_t offset;
	off_t size;                     /* truncate */
	const char *target;             /* mv */
	bool no_create, has_date;       /* touch */
	struct timespec date;
};

static int cmd_status(ntfsc *c, const char *path, const struct opts *o)
{
	struct ntfsc_volume_status s = NTFSC_VOLUME_STATUS_INIT;

	(void)path;
	if (ntfsc_volume_status(c, &s))
		return fail("status", NULL);
	if (o->json)
		status_json(&s);
	else
		status_text(&s);
	ntfsc_volume_status_free(&s);
	return 0;
}

/* ---- stat ---- */

static const struct {
	uint32_t bit;
	const char *name;
} attr_names[] = {
	{ 0x00000001, "READONLY" },
	{ 0x00000002, "HIDDEN" },
	{ 0x00000004, "SYSTEM" },
	{ 0x00000010, "DIRECTORY" },
	{ 0x00000020, "ARCHIVE" },
	{ 0x00000040, "DEVICE" },
	{ 0x00000080, "NORMAL" },
	{ 0x00000100, "TEMPORARY" },
	{ 0x00000200, "SPARSE_FILE" },
	{ 0x00000400, "REPARSE_POINT" },
	{ 0x00000800, "COMPRESSED" },
	{ 0x00001000, "OFFLINE" },
	{ 0x00002000, "NOT_CONTENT_INDEXED" },
	{ 0x00004000, "ENCRYPTED" },
	{ 0x00008000, "INTEGRITY_STREAM" },
	{ 0x00010000, "VIRTUAL" },
	{ 0x00020000, "NO_SCRUB_DATA" },
	{ 0x00040000, "RECALL_ON_OPEN" },
	{ 0x00080000, "PINNED" },
	{ 0x00100000, "UNPINNED" },
	{ 0x00400000, "RECALL_ON_DATA_ACCESS" },
	{ 0x10000000, "DUP_FILE_NAME_INDEX_PRESENT" },
	{ 0x20000000, "DUP_VIEW_INDEX_PRESENT" },
};

#define NR_ATTR_NAMES (sizeof(attr_names) / sizeof(attr_names[0]))

static uint32_t known_attrs(void)
{
	uint32_t m = 0;

	for (size_t i = 0; i < NR_ATTR_NAMES; i++)
		m |= attr_names[i].bit;
	return m;
}

static void attrs_text(uint32_t a)
{
	const char *sep = "";

	printf("0x%08" PRIx32 " (", a);
	for (size_t i = 0; i < NR_ATTR_NAMES; i++)
		if (a & attr_names[i].bit) {
			printf("%s%s", sep, attr_names[i].name);
			sep = ", ";
		}
	if (a & ~known_attrs())
		printf("%s0x%" PRIx32, sep, a & ~known_attrs());
	else if (!*sep)
		fputs("none", stdout);
	puts(")");
}

/* The record on disk lags what clients see (write-back pending). */
static bool disk_differs(const struct ntfsc_stat_ext *x, const struct ntfsc_stat_disk *d)
{
	return d->known && (d->size != x->st.size || d->initialized_size != x->st.initialized_size ||
			    d->allocated_size != x->st.allocated_size);
}

/* A time as "2026-12-04 17:30:12.1234567 UTC" (NTFS keeps 100 ns). */
static const char *time_text(const struct timespec *ts, char *buf, size_t size)
{
	struct tm tm;
	char day[32];

	if (!gmtime_r(&ts->tv_sec, &tm) || !strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, size, "%lld s since 1970", (long long)ts->tv_sec);
	else
		snprintf(buf, size, "%s.%07ld UTC", day, ts->tv_nsec / 100);
	return buf;
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void stat_text(const char *path, const struct ntfsc_stat_ext *x,
		      const struct ntfsc_stat_disk *d, const struct ntfsc_stat_times *t)
{
	const struct ntfsc_stat *s = &x->st;

#define ROW(label, fmt, ...) printf("%-18s" fmt "\n", label ":", __VA_ARGS__)
	ROW("path", "%s", path);
	ROW("type", "%s", x->directory ? "directory" : "file");
	ROW("mft record", "%" PRIu64, x->mft_no);
	ROW("links", "%" PRIu32, x->link_count);
	ROW("size", "%" PRIu64, s->size);
	ROW("initialized size", "%" PRIu64, s->initialized_size);
	ROW("allocated size", "%" PRIu64, s->allocated_size);
	if (disk_differs(x, d)) {
		/* what a crash now would leave, until write-back writes it */
		ROW("disk size", "%" PRIu64 " (write-back pending)", d->size);
		ROW("disk initialized", "%" PRIu64, d->initialized_size);
		ROW("disk allocated", "%" PRIu64, d->allocated_size);
	}
	if (t->known) {
		char b[64];

		ROW("modified", "%s", time_text(&t->modification, b, sizeof(b)));
		ROW("changed", "%s", time_text(&t->change, b, sizeof(b)));
		ROW("accessed", "%s", time_text(&t->access, b, sizeof(b)));
		ROW("created", "%s", time_text(&t->creation, b, sizeof(b)));
	}
	printf("%-18s", "attributes:");
	attrs_text(s->attributes);
	ROW("resident", "%s", yes_no(s->resident));
	ROW("compressed", "%s", yes_no(x->compressed));
	ROW("sparse", "%s", yes_no(x->sparse));
	ROW("encrypted", "%s", yes_no(x->encrypted));
	ROW("cached pages", "%" PRIu64, s->cached_pages);
	ROW("dirty pages", "%" PRIu64, s->dirty_pages);
	ROW("writeback pages", "%" PRIu64, s->writeback_pages);
#undef ROW
}

static void stat_json(const char *path, const struct ntfsc_stat_ext *x,
		      const struct ntfsc_stat_disk *d, const struct ntfsc_stat_times *t)
{
	const struct ntfsc_stat *s = &x->st;
	const char *sep = "";

	fputs("{\"path\": ", stdout);
	json_string(path);
	printf(", \"directory\": %s, \"mft_no\": %" PRIu64 ", \"link_count\": %" PRIu32,
	       json_bool(x->directory), x->mft_no, x->link_count);
	printf(", \"size\": %" PRIu64 ", \"initialized_size\": %" PRIu64
	       ", \"allocated_size\": %" PRIu64, s->size, s->initialized_size,
	       s->allocated_size);
	printf(", \"attributes\": %" PRIu32 ", \"attributes_hex\": \"0x%08" PRIx32
	       "\", \"attribute_names\": [", s->attributes, s->attributes);
	for (size_t i = 0; i < NR_ATTR_NAMES; i++)
		if (s->attributes & attr_names[i].bit) {
			printf("%s\"%s\"", sep, attr_names[i].name);
			sep = ", ";
		}
	printf("], \"resident\": %s, \"compressed\": %s, \"sparse\": %s, \"encrypted\": %s",
	       json_bool(s->resident), json_bool(x->compressed), json_bool(x->sparse),
	       json_bool(x->encrypted));
	printf(", \"cached_pages\": %" PRIu64 ", \"dirty_pages\": %" PRIu64
	       ", \"writeback_pages\": %" PRIu64, s->cached_pages, s->dirty_pages,
	       s->writeback_pages);
	if (d->known)
		printf(", \"on_disk\": {\"size\": %" PRIu64 ", \"initialized_size\": %" PRIu64
		       ", \"allocated_size\": %" PRIu64 ", \"differs\": %s}", d->size,
		       d->initialized_size, d->allocated_size, json_bool(disk_differs(x, d)));
	if (t->known)
		printf(", \"mtime_ns\": %" PRId64 ", \"ctime_ns\": %" PRId64 ", \"atime_ns\": %" PRId64
		       ", \"creation_time_ns\": %" PRId64, ts_ns(&t->modification), ts_ns(&t->change),
		       ts_ns(&t->access), ts_ns(&t->creation));
	puts("}");
}

static int cmd_stat(ntfsc *c, const char *path, const struct opts *o)
{
	struct ntfsc_stat_disk d = NTFSC_STAT_DISK_INIT;
	struct ntfsc_stat_times t = NTFSC_STAT_TIMES_INIT;
	struct ntfsc_stat_ext x;

	/* the record first: sizes seen after it are at least as new */
	if (ntfsc_stat_disk(c, path, &d) || ntfsc_stat_ext(c, path, &x) ||
	    ntfsc_stat_times(c, path, &t))
		return fail("stat", path);
	if (o->json)
		stat_json(path, &x, &d, &t);
	else
		stat_text(path, &x, &d, &t);
	return 0;
}

/* ---- ls ---- */

struct ls_ctx {
	ntfsc *c;
	const char *dir;
	const struct opts *o;
	size_t n;
	int failed;                     /* an entry could not be stat'ed */
};

static int ls_entry(void *ctx, const char *name, uint64_t mft_no, bool is_dir)
{
	struct ls_ctx *l = ctx;

	if (l->o->json) {
		fputs(l->n ? ",\n " : "[", stdout);
		fputs("{\"name\": ", stdout);
		json_string(name);
		printf(", \"mft_no\": %" PRIu64 ", \"directory\": %s}", mft_no, json_bool(is_dir));
	} else if (l->o->long_list) {
		struct ntfsc_stat_times t = NTFSC_STAT_TIMES_INIT;
		struct ntfsc_stat_ext x;
		char *p = NULL, when[32] = "-";
		size_t dl = strlen(l->dir);

		if (asprintf(&p, "%s%s%s", l->dir, dl && l->dir[dl - 1] == '/' ? "" : "/",
			     name) < 0)
			return -1;
		if (ntfsc_stat_ext(l->c, p, &x) || ntfsc_stat_times(l->c, p, &t)) {
			/* the entry went between the listing and the stat */
			l->failed = fail("ls", p);
			free(p);
			return 0;
		}
		free(p);
		if (t.known) {
			struct tm tm;

			if (gmtime_r(&t.modification.tv_sec, &tm))
				strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		}
		printf("%c %14" PRIu64 "  %s  %10" PRIu64 "  %s\n", is_dir ? 'd' : '-',
		       is_dir ? (uint64_t)0 : x.st.size, when, mft_no, name);
	} else {
		puts(name);
	}
	l->n++;
	return ferror(stdout) ? 1 : 0;  /* stop early: the error is reported at exit */
}

static int cmd_ls(ntfsc *c, const char *path, const struct opts *o)
{
	struct ls_ctx l = { .c = c, .dir = path, .o = o };

	if (ntfsc_listdir(c, path, ls_entry, &l) < 0)
		return fail("ls", path);
	if (o->json)
		puts(l.n ? "]" : "[]");
	return l.failed;
}

/* ---- cat ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int cmd_cat(ntfsc *c, const char *path, const struct opts *o)
{
	ntfsc_file *f;
	char *buf;
	off_t off = 0;
	int ret = 0;

	(void)o;
	buf = malloc(CAT_CHUNK);
	if (!buf) {
		errno = ENOMEM;
		fprintf(stderr, "%s: cat %s: %s\n", prog, path, strerror(errno));
		return 1;
	}
	f = ntfsc_open(c, path, O_RDONLY);
	if (!f) {
		free(buf);
		return fail("cat", path);
	}
	for (;;) {
		ssize_t n = ntfsc_pread(f, buf, CAT_CHUNK, off);

		if (n < 0) {
			ret = fail("cat", path);
			break;
		}
		if (n == 0)
			break;
		if (write_all(STDOUT_FILENO, buf, (size_t)n)) {
			/* With SIGPIPE ignored a closed pipe ends up here: EPIPE. */
			fprintf(stderr, "%s: cat %s: cannot write to standard output: %s\n", prog,
				path, strerror(errno));
			ret = 1;
			break;
		}
		off += n;
	}
	ntfsc_close(f);  /* everything read is out; a failing close changes nothing */
	free(buf);
	return ret;
}

/* ---- write ---- */

static int read_fail(const char *path)
{
	fprintf(stderr, "%s: write %s: cannot read standard input: %s\n", prog, path,
		strerror(errno));
	return 1;
}

/* Read up to len bytes of stdin (less only at its end); -1 on error. */
static ssize_t read_full(void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(STDIN_FILENO, (char *)buf + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int offset_too_big(const char *path)
{
	fprintf(stderr, "%s: write %s: %s\n", prog, path, strerror(EFBIG));
	return 1;
}

/* stdin -> ntfsc_pwrite, a chunk at a time. */
/* Copies stdin to the file from off; *end gets the byte after the last
 * one written. */
static int write_stream(ntfsc_file *f, const char *path, off_t off, off_t *end)
{
	char *buf = malloc(WRITE_CHUNK);
	int ret = 0;

	if (!buf) {
		fprintf(stderr, "%s: write %s: %s\n", prog, path, strerror(ENOMEM));
		return 1;
	}
	for (;;) {
		ssize_t n = read_full(buf, WRITE_CHUNK), done = 0;

		if (n < 0) {
			ret = read_fail(path);
			break;
		}
		if (n == 0)
			break;
		if (n > INT64_MAX - off) {
			ret = offset_too_big(path);
			break;
		}
		while (done < n) {
			/* a short count means an error at the next byte: ask again */
			ssize_t w = ntfsc_pwrite(f, buf + done, (size_t)(n - done), off + done);

			if (w < 0)
				break;
			done += w;
		}
		if (done < n) {
			ret = fail("write", path);
			break;
		}
		off += n;
	}
	free(buf);
	*end = off;
	return ret;
}

/* All of stdin into memory (*len bytes; *data NULL when empty). */
static int slurp_stdin(const char *path, char **data, size_t *len)
{
	size_t cap = 0, n = 0;
	char *buf = NULL;

	for (;;) {
		ssize_t got;

		if (n == cap) {
			char *nb;

			if (cap > SIZE_MAX / 2 - WRITE_CHUNK) {
				errno = ENOMEM;
				free(buf);
				return read_fail(path);
			}
			cap = cap ? cap * 2 : WRITE_CHUNK;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return read_fail(path);
			}
			buf = nb;
		}
		got = read(STDIN_FILENO, buf + n, cap - n);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return read_fail(path);
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (!n) {
		free(buf);
		buf = NULL;
	}
	*data = buf;
	*len = n;
	return 0;
}

/* stdin -> shared mappings of at most MMAP_WINDOW bytes: store, then
 * ntfsc_set_dirty.  The file is not grown: all of stdin is read first and
 * nothing is stored unless it fits. */
static int write_mmap(ntfsc_file *f, const char *path, off_t off, off_t *end)
{
	struct ntfsc_stat st;
	char *data;
	size_t len, done = 0;
	int ret = 0;

	*end = off;
	if (slurp_stdin(path, &data, &len))
		return 1;
	if (!len)
		return 0;
	if ((uint64_t)len > (uint64_t)(INT64_MAX - off)) {
		free(data);
		return offset_too_big(path);
	}
	if (ntfsc_fstat(f, &st)) {
		free(data);
		return fail("write", path);
	}
	if ((uint64_t)off + len > st.size) {
		fprintf(stderr, "%s: write %s: --mmap cannot make a file longer: it has %" PRIu64
			" bytes, the data would end at byte %" PRIu64 " (write without --mmap "
			"to extend it)\n", prog, path, st.size, (uint64_t)off + len);
		free(data);
		return 1;
	}
	while (done < len) {
		size_t n = len - done < MMAP_WINDOW ? len - done : MMAP_WINDOW;
		char *m = ntfsc_mmap(f, off + (off_t)done, n, PROT_READ | PROT_WRITE);

		if (m == MAP_FAILED) {
			ret = fail("write", path);
			break;
		}
		memcpy(m, data + done, n);
		if (ntfsc_set_dirty(f, m, n)) {
			ret = fail("write", path);
			ntfsc_munmap(f, m, n);
			break;
		}
		if (ntfsc_munmap(f, m, n)) {
			ret = fail("write", path);
			break;
		}
		done += n;
	}
	*end = off + (off_t)done;
	free(data);
	return ret;
}

/*
 * write: --offset N in place; --append at the size every client sees;
 * neither: the file's contents replaced, as a shell's `>` does.  The new
 * bytes go in first and the old tail is cut after them, so no client ever
 * sees the file emptied in between, and a write that fails half way
 * leaves the old tail rather than a file cut short.
 */
static int cmd_write(ntfsc *c, const char *path, const struct opts *o)
{
	/* a missing file is made, as a shell's > and >> make it */
	ntfsc_file *f = ntfsc_open(c, path, O_RDWR | O_CREAT);
	off_t off = o->offset, end = 0;
	struct ntfsc_stat st;
	int ret;

	if (!f)
		return fail("write", path);
	if (o->append) {
		if (ntfsc_fstat(f, &st)) {
			ret = fail("write", path);
			ntfsc_close(f);
			return ret;
		}
		off = (off_t)st.size;
	}
	ret = o->mmap ? write_mmap(f, path, off, &end) : write_stream(f, path, off, &end);
	if (!ret && !o->has_offset && !o->append && ntfsc_ftruncate(f, end))
		ret = fail("write", path);
	/* The data is in the daemon's cache once the daemon heard of it all:
	 * a close that could not be told is a failure. */
	if (ntfsc_close(f) && !ret)
		ret = fail("write", path);
	return ret;
}

/* ---- sync ---- */

/* Always strerror, never the daemon's message: "ntfsctl: sync PATH: Input/output error". */
static int sync_fail(const char *path)
{
	int err = errno;

	fprintf(stderr, "%s: sync%s%s: %s\n", prog, path ? " " : "", path ? path : "",
		strerror(err));
	return 1;
}

/*
 * The sync itself runs on its own thread; on a terminal, the main thread
 * shows the dirty and writeback bytes still to go once the sync has taken
 * longer than a moment, polling the daemon over a second connection (a
 * connection serves one request at a time).  On a pipe nothing is drawn.
 */
struct sync_job {
	ntfsc *c;
	const char *path;
	int rc, err;
	_Atomic bool done;
};

static void *sync_thread(void *arg)
{
	struct sync_job *j = arg;
	ntfsc_file *f;

	j->rc = 0;
	if (!j->path) {
		j->rc = ntfsc_sync(j->c);
	} else if (!(f = ntfsc_open(j->c, j->path, O_RDONLY))) {
		/* Read-only is enough to sync, as with fsync(2), and works on
		 * a read-only volume too. */
		j->rc = -1;
	} else {
		j->rc = ntfsc_fsync(f);
		j->err = errno;
		ntfsc_close(f);  /* a failing close changes nothing that reached the disk */
		errno = j->err;
	}
	j->err = errno;
	atomic_store(&j->done, true);
	return NULL;
}

static void draw_progress(ntfsc *poll, uint64_t *total)
{
	struct ntfsc_volume_status st = NTFSC_VOLUME_STATUS_INIT;
	uint64_t left;
	unsigned filled, i;
	char bar[41];

	if (ntfsc_volume_status(poll, &st))
		return;
	left = (st.dirty_pages + st.writeback_pages) * 4096;
	ntfsc_volume_status_free(&st);
	if (left > *total)
		*total = left;
	filled = *total ? (unsigned)((*total - left) * 40 / *total) : 40;
	for (i = 0; i < 40; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[40] = '\0';
	fprintf(stderr, "\rsync: [%s] %8.1f MiB left ", bar, (double)left / (1 << 20));
}

static int cmd_sync(ntfsc *c, const char *path, const struct opts *o)
{
	struct sync_job j = { .c = c, .path = path };
	bool tty = isatty(STDERR_FILENO), drew = false;
	ntfsc *poll = NULL;
	uint64_t total = 0;
	pthread_t t;
	const char *after = getenv("NTFSCTL_PROGRESS_AFTER_MS");
	int waited = 0, delay = after ? atoi(after) / 50 : 10;  /* 10 x 50 ms */

	if (pthread_create(&t, NULL, sync_thread, &j)) {
		sync_thread(&j);
	} else {
		while (!atomic_load(&j.done)) {
			usleep(50000);
			if (!tty || ++waited < delay)  /* nothing drawn at first */
				continue;
			if (!poll && !(poll = ntfsc_connect(o->socket)))
				tty = false;
			if (poll) {
				draw_progress(poll, &total);
				drew = true;
			}
		}
		pthread_join(t, NULL);
	}
	if (drew)
		fprintf(stderr, "\r%*s\r", 70, "");
	if (poll)
		ntfsc_disconnect(poll);
	if (j.rc) {
		errno = j.err;
		return sync_fail(path);
	}
	return 0;
}

/* ---- names ---- */

/* mkdir -p: every missing directory on the way; one that exists (as a
 * directory) is fine. */
static int mkdir_parents(ntfsc *c, const char *path)
{
	char *buf = strdup(path), *p;
	struct ntfsc_stat_ext x;
	int ret = 0;

	if (!buf) {
		errno = ENOMEM;
		return fail("mkdir", path);
	}
	for (p = buf + 1;; p++) {
		bool last = !*p;

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (p > buf + 1 && p[-1] != '/' && ntfsc_mkdir(c, buf)) {
			if (errno != EEXIST || ntfsc_stat_ext(c, buf, &x) || !x.directory) {
				if (errno == 0)
					errno = ENOTDIR;
				ret = fail("mkdir", buf);
				break;
			}
		}
		if (last)
			break;
		*p = '/';
	}
	free(buf);
	return ret;
}

static int cmd_mkdir(ntfsc *c, const char *path, const struct opts *o)
{
	if (o->parents)
		return mkdir_parents(c, path);
	return ntfsc_mkdir(c, path) ? fail("mkdir", path) : 0;
}

static int cmd_rm(ntfsc *c, const char *path, const struct opts *o)
{
	(void)o;
	return ntfsc_unlink(c, path) ? fail("rm", path) : 0;
}

static int cmd_rmdir(ntfsc *c, const char *path, const struct opts *o)
{
	(void)o;
	return ntfsc_rmdir(c, path) ? fail("rmdir", path) : 0;
}

static int cmd_mv(ntfsc *c, const char *path, const struct opts *o)
{
	if (!ntfsc_rename(c, path, o->target))
		return 0;
	/* the message names both paths */
	fprintf(stderr, "%s: mv: %s\n", prog,
		ntfsc_last_error_message(NULL) ? ntfsc_last_error_message(NULL)
					       : strerror(errno));
	return 1;
}

static int cmd_truncate(ntfsc *c, const char *path, const struct opts *o)
{
	ntfsc_file *f = ntfsc_open(c, path, O_RDWR);

	if (!f || ntfsc_ftruncate(f, o->size)) {
		int rc = fail("truncate", path);

		if (f)
			ntfsc_close(f);
		return rc;
	}
	if (ntfsc_close(f))
		return fail("truncate", path);
	return 0;
}

/* ---- cp ---- */

#define CP_CHUNK (1u << 20)

/* One side of a copy: a host file (fd) or a volume file (f). */
struct cp_end {
	const char *name;               /* as given, ":/..." for the volume */
	const char *vpath;              /* the volume path (NULL: host) */
	char *owned;                    /* name with the source's base name added */
	int fd;
	ntfsc_file *f;
};

static int cp_fail(const struct cp_end *e, const char *what)
{
	int err = errno;
	const char *msg = e->vpath ? ntfsc_last_error_message(NULL) : NULL;

	fprintf(stderr, "%s: cp: %s %s: %s\n", prog, what, e->owned ? e->owned : e->name,
		msg ? msg : strerror(err));
	return 1;
}

static ssize_t cp_read(struct cp_end *e, void *buf, size_t len, off_t off)
{
	ssize_t n;

	if (e->f)
		return ntfsc_pread(e->f, buf, len, off);
	do
		n = pread(e->fd, buf, len, off);
	while (n < 0 && errno == EINTR);
	return n;
}

static int cp_write(struct cp_end *e, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = e->f ? ntfsc_pwrite(e->f, p, len, off) : pwrite(e->fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void draw_copy(uint64_t done, uint64_t total, uint64_t ms)
{
	unsigned filled = total ? (unsigned)(done * 40 / total) : 40, i;
	char bar[41];

	for (i = 0; i < 40; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[40] = '\0';
	fprintf(stderr, "\rcp: [%s] %3u%% %8.1f of %.1f MiB, %.1f MiB/s ", bar,
		total ? (unsigned)(done * 100 / total) : 100, (double)done / (1 << 20),
		(double)total / (1 << 20), ms ? (double)done / (1 << 20) * 1000 / (double)ms : 0.0);
}

/* DIR/base of the source, when the destination is a directory. */
static int cp_into_dir(struct cp_end *dst, const char *src_name)
{
	const char *base = strrchr(src_name, '/');
	const char *dir = dst->vpath ? dst->vpath : dst->name;
	size_t dl = strlen(dir);

	base = base ? base + 1 : src_name;
	if (!*base) {
		errno = EISDIR;
		return -1;
	}
	if (asprintf(&dst->owned, "%s%s%s%s", dst->vpath ? ":" : "", dir,
		     dl && dir[dl - 1] == '/' ? "" : "/", base) < 0)
		return -1;
	if (dst->vpath)
		dst->vpath = dst->owned + 1;
	return 0;
}

static int cp_open_src(ntfsc *c, struct cp_end *e, uint64_t *size, uint64_t *mft)
{
	struct ntfsc_stat_ext x;
	struct stat st;

	if (e->vpath) {
		if (ntfsc_stat_ext(c, e->vpath, &x))
			return cp_fail(e, "cannot read");
		if (x.directory) {
			errno = EISDIR;
			fprintf(stderr, "%s: cp: %s: is a directory (cp copies files)\n", prog,
				e->name);
			return 1;
		}
		e->f = ntfsc_open(c, e->vpath, O_RDONLY);
		if (!e->f)
			return cp_fail(e, "cannot open");
		*size = x.st.size;
		*mft = x.mft_no;
		return 0;
	}
	e->fd = open(e->name, O_RDONLY | O_CLOEXEC);
	if (e->fd < 0)
		return cp_fail(e, "cannot open");
	if (fstat(e->fd, &st))
		return cp_fail(e, "cannot read");
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "%s: cp: %s: %s (cp copies regular files)\n", prog, e->name,
			S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
		return 1;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

static int cp_open_dst(ntfsc *c, struct cp_end *e, const char *src_name, uint64_t src_mft)
{
	struct ntfsc_stat_ext x;
	struct stat st;

	if (e->vpath) {
		x.mft_no = UINT64_MAX;          /* a new name */
		if (!ntfsc_stat_ext(c, e->vpath, &x) && x.directory) {
			if (cp_into_dir(e, src_name))
				return cp_fail(e, "cannot name a file in");
			if (ntfsc_stat_ext(c, e->vpath, &x))
				x.mft_no = UINT64_MAX;
		}
		if (src_mft != UINT64_MAX && x.mft_no == src_mft) {
			fprintf(stderr, "%s: cp: %s and %s are the same file\n", prog, src_name,
				e->owned ? e->owned : e->name);
			return 1;
		}
		e->f = ntfsc_open(c, e->vpath, O_RDWR | O_CREAT | O_TRUNC);
		return e->f ? 0 : cp_fail(e, "cannot create");
	}
	if (!stat(e->name, &st) && S_ISDIR(st.st_mode) && cp_into_dir(e, src_name))
		return cp_fail(e, "cannot name a file in");
	e->fd = open(e->owned ? e->owned : e->name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	return e->fd < 0 ? cp_fail(e, "cannot create") : 0;
}

/*
 * cp SRC DST: a volume path is written ":/PATH"; at least one side is one.
 * A destination that is a directory gets the source's base name.  The
 * copy goes through the cache and is not synced (as write: `ntfsctl sync`
 * makes it durable).  On a terminal a copy that runs past half a second
 * draws a progress bar on stderr, erased at the end.
 */
static int cmd_cp(ntfsc *c, const char *from, const struct opts *o)
{
	struct cp_end src = { .name = from, .fd = -1 }, dst = { .name = o->target, .fd = -1 };
	const char *after = getenv("NTFSCTL_PROGRESS_AFTER_MS");
	uint64_t size = 0, done = 0, mft = UINT64_MAX, start = mono_ms(), drawn = 0;
	uint64_t wait_ms = after ? strtoull(after, NULL, 10) : 500;
	bool tty = isatty(STDERR_FILENO), drew = false;
	char *buf = NULL;
	int ret;

	src.vpath = from[0] == ':' ? from + 1 : NULL;
	dst.vpath = o->target[0] == ':' ? o->target + 1 : NULL;
	ret = cp_open_src(c, &src, &size, &mft);
	if (!ret)
		ret = cp_open_dst(c, &dst, src.vpath ? src.vpath : from, src.vpath ? mft : UINT64_MAX);
	if (!ret && !(buf = malloc(CP_CHUNK))) {
		errno = ENOMEM;
		ret = cp_fail(&src, "cannot copy");
	}
	while (!ret) {
		ssize_t n = cp_read(&src, buf, CP_CHUNK, (off_t)done);
		uint64_t now;

		if (n < 0) {
			ret = cp_fail(&src, "cannot read");
			break;
		}
		if (n == 0)
			break;
		if (cp_write(&dst, buf, (size_t)n, (off_t)done)) {
			ret = cp_fail(&dst, "cannot write");
			break;
		}
		done += (uint64_t)n;
		now = mono_ms();
		if (tty && now - start >= wait_ms && (!drew || now - drawn >= 100)) {
			draw_copy(done, size > done ? size : done, now - start);
			drew = true;
			drawn = now;
		}
	}
	if (drew)
		fprintf(stderr, "\r%*s\r", 78, "");
	free(buf);
	if (src.f)
		ntfsc_close(src.f);
	if (src.fd >= 0)
		close(src.fd);
	/* the data is in the cache once the daemon heard of it all */
	if (dst.f && ntfsc_close(dst.f) && !ret)
		ret = cp_fail(&dst, "cannot close");
	if (dst.fd >= 0 && close(dst.fd) && !ret)
		ret = cp_fail(&dst, "cannot write");
	free(src.owned);
	free(dst.owned);
	return ret;
}

/* ---- touch ---- */

static int cmd_touch(ntfsc *c, const char *path, const struct opts *o)
{
	struct timespec t[2] = { o->date, o->date };
	const struct timespec *times = o->has_date ? t : NULL;
	ntfsc_file *f;

	if (!ntfsc_utimens(c, path, times))
		return 0;
	if (errno == ENOENT && o->no_create)
		return 0;       /* as touch(1) -c: nothing to do, not an error */
	if (errno != ENOENT)
		return fail("touch", path);
	/* missing: made empty (its times are now), then given the date */
	f = ntfsc_open(c, path, O_RDWR | O_CREAT);
	if (!f)
		return fail("touch", path);
	if (times && ntfsc_futimens(f, times)) {
		int rc = fail("touch", path);

		ntfsc_close(f);
		return rc;
	}
	return ntfsc_close(f) ? fail("touch", path) : 0;
}

/* "@SECONDS[.FRACTION]" since 1970 UTC (the form date(1) -d accepts too). */
static bool parse_date(const char *s, struct timespec *ts)
{
	long long sec;
	long ns = 0, scale = 100000000;
	char *end;

	if (*s++ != '@' || !*s)
		return false;
	errno = 0;
	sec = strtoll(s, &end, 10);
	if (errno || end == s || (*end && *end != '.'))
		return false;
	if (*end == '.') {
		for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
			ns += scale ? (*end - '0') * scale : 0;
		if (*end)
			return false;
		if (sec < 0 && ns) {    /* -1.5 is 2 s before, plus 0.5 */
			sec--;
			ns = 1000000000 - ns;
		}
	}
	ts->tv_sec = (time_t)sec;
	ts->tv_nsec = ns;
	return true;
}

/* ---- main ---- */

enum { OPT_OFFSET = 0x100, OPT_MMAP, OPT_APPEND };

static const struct command {
	const char *name;
	bool takes_path, optional_path, json, long_list, write_opts;
	int (*run)(ntfsc *c, const char *path, const struct opts *o);
	bool takes_size, takes_target;
} commands[] = {
	{ "status", false, false, true, false, false, cmd_status, false, false },
	{ "stat", true, false, true, false, false, cmd_stat, false, false },
	{ "ls", true, false, true, true, false, cmd_ls, false, false },
	{ "cat", true, false, false, false, false, cmd_cat, false, false },
	{ "write", true, false, false, false, true, cmd_write, false, false },
	{ "sync", false, true, false, false, false, cmd_sync, false, false },
	{ "truncate", true, false, false, false, false, cmd_truncate, true, false },
	{ "mkdir", true, false, false, false, false, cmd_mkdir, false, false },
	{ "rm", true, false, false, false, false, cmd_rm, false, false },
	{ "rmdir", true, false, false, false, false, cmd_rmdir, false, false },
	{ "mv", true, false, false, false, false, cmd_mv, false, true },
	{ "touch", true, false, false, false, false, cmd_touch, false, false },
	{ "cp", true, false, false, false, false, cmd_cp, false, true },
};

/* A byte offset: decimal digits only, at most INT64_MAX. */
static bool parse_offset(const char *s, off_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > INT64_MAX)
		return false;
	*out = (off_t)v;
	return true;
}

/* Everything printed must really be out for a zero exit. */
static int finish_stdout(const char *cmd, const char *path, int ret)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		int err = errno;

		if (ret == 0)
			fprintf(stderr, "%s: %s%s%s: cannot write to standard output: %s\n", prog,
				cmd, path ? " " : "", path ? path : "", strerror(err));
		return 1;
	}
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "long", no_argument, NULL, 'l' },
		{ "offset", required_argument, NULL, OPT_OFFSET },
		{ "mmap", no_argument, NULL, OPT_MMAP },
		{ "append", no_argument, NULL, OPT_APPEND },
		{ "parents", no_argument, NULL, 'p' },
		{ "no-create", no_argument, NULL, 'c' },
		{ "date", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const struct command *cmd = NULL;
	const char *sock = NULL, *path = NULL;
	struct opts o = { 0 };
	bool help = false, version = false;
	ntfsc *c;
	int opt, ret;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":s:lhVpcd:", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'j': o.json = true; break;
		case 'l': o.long_list = true; break;
		case 'p': o.parents = true; break;
		case 'c': o.no_create = true; break;
		case 'd':
			if (!parse_date(optarg, &o.date))
				return usage_error("-d needs @SECONDS[.FRACTION] since 1970 UTC, not "
						   "'%s'", optarg);
			o.has_date = true;
			break;
		case OPT_OFFSET:
			if (!parse_offset(optarg, &o.offset))
				return usage_error("--offset needs a byte offset (0 to %lld), not '%s'",
						   (long long)INT64_MAX, optarg);
			o.has_offset = true;
			break;
		case OPT_MMAP: o.mmap = true; break;
		case OPT_APPEND: o.append = true; break;
		case 'h': help = true; break;
		case 'V': version = true; break;
		case ':': return usage_error("option %s needs an argument", argv[optind - 1]);
		default:
			if (optopt) {
				char s[3] = { '-', (char)optopt, 0 };

				return usage_error("unknown option %s", s);
			}
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (help) {
		usage(stdout);
		return finish_stdout("--help", NULL, 0);
	}
	if (version) {
		printf("ntfsctl (ntfsd) %s\n", NTFSD_VERSION);
		return finish_stdout("--version", NULL, 0);
	}
	if (optind >= argc)
		return usage_error("no command given");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[optind], commands[i].name))
			cmd = &commands[i];
	if (!cmd)
		return usage_error("unknown command '%s'", argv[optind]);
	optind++;
	if (cmd->takes_path) {
		if (optind >= argc)
			return usage_error("%s needs a PATH", cmd->name);
		path = argv[optind++];
		if (cmd->takes_size) {
			if (optind >= argc)
				return usage_error("%s needs a SIZE in bytes", cmd->name);
			if (!parse_offset(argv[optind], &o.size))
				return usage_error("SIZE must be a byte count (0 to %lld), not '%s'",
						   (long long)INT64_MAX, argv[optind]);
			optind++;
		}
		if (cmd->takes_target) {
			if (optind >= argc)
				return usage_error("%s needs a %s", cmd->name,
						   strcmp(cmd->name, "cp") ? "NEWPATH" : "DEST");
			o.target = argv[optind++];
		}
	} else if (cmd->optional_path && optind < argc) {
		path = argv[optind++];
	}
	if (optind < argc)
		return usage_error("too many arguments for %s", cmd->name);
	if (o.json && !cmd->json)
		return usage_error("%s has no JSON output", cmd->name);
	if (o.long_list && !cmd->long_list)
		return usage_error("-l is an option of ls, not of %s", cmd->name);
	if (o.parents && strcmp(cmd->name, "mkdir"))
		return usage_error("-p is an option of mkdir, not of %s", cmd->name);
	if ((o.no_create || o.has_date) && strcmp(cmd->name, "touch"))
		return usage_error("-%c is an option of touch, not of %s", o.no_create ? 'c' : 'd',
				   cmd->name);
	if ((o.has_offset || o.mmap || o.append) && !cmd->write_opts)
		return usage_error("--%s is an option of write, not of %s",
				   o.has_offset ? "offset" : o.mmap ? "mmap" : "append", cmd->name);
	if (o.append && o.has_offset)
		return usage_error("--append and --offset cannot be combined: --append writes at "
				   "the end");
	if (o.append && o.mmap)
		return usage_error("--append and --mmap cannot be combined: a mapping cannot make "
				   "a file longer");
	if (!strcmp(cmd->name, "cp") && path[0] != ':' && o.target[0] != ':')
		return usage_error("cp: one side must be a volume path, written :/PATH");
	if (!strcmp(cmd->name, "cp") && ((path[0] == ':' && path[1] != '/') ||
					 (o.target[0] == ':' && o.target[1] != '/')))
		return usage_error("cp: a volume path is absolute: :/PATH");
	if (sock && !*sock)
		return usage_error("the socket path is empty");

	o.socket = sock;
	c = ntfsc_connect(sock);
	if (!c)
		return fail(cmd->name, path);
	ret = cmd->run(c, path, &o);
	ntfsc_disconnect(c);
	return finish_stdout(cmd->name, path, ret);
}
