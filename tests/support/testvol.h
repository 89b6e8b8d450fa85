/*
 * testvol.h — a scratch volume for a test: a temp dir, an image made with
 * mkntfs and filled with ntfscp, ntfs-3g mounts and unmounts with time
 * limits, reading and writing through a mount, running a tool with its
 * output logged, what ntfscat and ntfsfix say about an image; and the file
 * and process helpers all of that needs (which work without a volume).
 *
 * Invariants:
 *   - Everything a testvol makes lives in tv->dir, a mkdtemp() directory
 *     ($TMPDIR or /tmp): the pristine image tv->img, a test's copy
 *     tv->scratch, the mount point tv->mnt, the tool log tv->log.
 *     testvol_destroy() unmounts and removes it (it keeps the directory if
 *     the mount cannot be removed, rather than delete through it); the
 *     handlers armed by testvol_catch_timeout()/testvol_catch_abort()
 *     unmount and remove it on a hang or an abort, with async-signal-safe
 *     calls only.
 *   - At most one mount at a time, on tv->mnt, by an ntfs-3g started with
 *     no_detach so that it stays our child: tv->mounted says whether the
 *     mount is up, tv->ntfs3g_pid which child serves it (0: none).
 *     testvol_unmount() always reaps that child (killing it if it has not
 *     exited 30 s after the unmount), so what ntfs-3g wrote back is on the
 *     image when it returns; tv->mounted stays true only when the mount
 *     could not be removed (it then fails).  testvol_mount_read() and
 *     testvol_mount_write() unmount before they return: nothing a test
 *     asserts afterwards runs with a mount up.
 *   - Time limits: a mount must appear within 20 s; ntfs-3g must exit
 *     within 30 s of its unmount (then SIGTERM, then SIGKILL).
 *   - Every tool's stdout and stderr go to tv->log (appended), never to the
 *     test's output; testvol_print_log_tail() shows its last 4000 bytes
 *     when something failed.
 *   - The file helpers retry EINTR and return 0 or a negative errno (a
 *     pointer or NULL with errno set); they hold nothing between calls.
 *   - testvol_cat() and testvol_expect_ntfsfix_clean() fail the running
 *     cmocka test; nothing else here does.
 */
#ifndef NTFSD_TESTS_TESTVOL_H
#define NTFSD_TESTS_TESTVOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct testvol {
	char dir[256];          /* the mkdtemp() directory; "" when there is none */
	char img[300];          /* dir/pristine.img */
	char scratch[300];      /* dir/scratch.img: a test's copy of img */
	char mnt[300];          /* dir/mnt */
	char log[300];          /* dir/tools.log */
	char tool_ntfs3g[256], tool_umount[256], tool_rm[256];
	bool umount_is_fusermount;
	bool mounted;
	pid_t ntfs3g_pid;
	/* testvol_unmount() also fails when ntfs-3g exits other than with 0 */
	bool ntfs3g_exit_checked;
};

/* In a cmocka group setup: report, then jump to the caller's `fail:`. */
#define SETUP_FAIL(...)                   \
	do {                              \
		print_error(__VA_ARGS__); \
		print_error("\n");        \
		goto fail;                \
	} while (0)

/* ---- files and processes (no volume needed) ---- */

/* An executable named name in $PATH or the usual system directories; its
 * path in out ("" and false when there is none). */
bool testvol_find_tool(const char *name, char *out, size_t len);
void testvol_sleep_ms(long ms);
/* utime + stime of pid in clock ticks, from /proc/PID/stat; -1 when it
 * cannot be read (the process is gone) or parsed. */
long testvol_cpu_ticks(pid_t pid);
/* Wait up to ms for a child to exit; false if it has not (still running). */
bool testvol_wait_child(pid_t pid, long ms, int *status);
/* Create or truncate path (mode 0644) and write len bytes. */
int testvol_write_file(const char *path, const void *data, size_t len);
/* The whole file, malloc()ed, with a '\0' after the *len bytes. */
uint8_t *testvol_read_whole(const char *path, size_t *len);
int testvol_copy_file(const char *from, const char *to);
/* ntfs-3g's tools refuse an image that a read-write ntfsd, or the keeper
 * of a crashed one, holds (its lock; see daemon/owner.h): to look at what
 * is on disk meanwhile, copy img (plain reads ignore the lock) to
 * IMG.snapshot; that path in out.  Remove it with unlink(). */
int testvol_snapshot(const char *img, char *out, size_t len);

/* ---- the volume ---- */

/* Make the temp dir "ntfsd-TAG-XXXXXX" with mnt/ in it and find ntfs-3g,
 * fusermount (or umount) and rm, and every tool named in need (NULL-ended,
 * may be NULL).  Prints why and removes what it made when it fails. */
int testvol_create(struct testvol *tv, const char *tag, const char *const *need);
/* Unmount, remove the temp dir; tv->dir is "" afterwards.  Idempotent. */
void testvol_destroy(struct testvol *tv);

/* Append a line to the tool log. */
void testvol_log_note(const struct testvol *tv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The last 4000 bytes of the tool log, on stderr. */
void testvol_print_log_tail(const struct testvol *tv);
/* Run argv (a path, or a name looked up in $PATH) with stdin from
 * /dev/null, stdout to out_path (truncated; NULL: the log) and stderr to
 * the log.  Its exit status, or -1 if it could not run or was killed. */
int testvol_run(const struct testvol *tv, const char *out_path, char *const argv[]);

/* tv->img: size bytes, formatted by mkntfs -F -Q with that cluster size. */
int testvol_mkntfs(struct testvol *tv, uint64_t size, unsigned cluster_size);
/* ntfscp len bytes of data into img as path (its stream, if not NULL). */
int testvol_ntfscp(const struct testvol *tv, const char *img, const void *data, size_t len,
		   const char *path, const char *stream);

/* Mount img on tv->mnt with ntfs-3g -o opts (which must include no_detach). */
int testvol_mount(struct testvol *tv, const char *img, const char *opts);
int testvol_unmount(struct testvol *tv);
/* path (and :stream) read through a fresh read-only mount of img; NULL on
 * any failure (the log tail printed). */
uint8_t *testvol_mount_read(struct testvol *tv, const char *img, const char *path,
			    const char *stream, size_t *len);
/* len bytes written at off into the existing path through a read-write
 * mount of img; -1 on any failure (the log tail printed). */
int testvol_mount_write(struct testvol *tv, const char *img, const char *path, uint64_t off,
			const void *buf, size_t len);

/* Fill the free space of img with byte: a file written through a
 * read-write mount until ENOSPC, then deleted, so the clusters are free
 * again but hold byte (stale contents a test can recognise when they leak
 * into a file).  *filled: the bytes written.  -1 on any failure. */
int testvol_fill_free(struct testvol *tv, const char *img, uint8_t byte, uint64_t *filled);

/* Per test: arm alarm(timeout) and copy img to scratch; then disarm,
 * unmount whatever the test left mounted and remove scratch. */
int testvol_scratch_setup(struct testvol *tv, unsigned timeout);
void testvol_scratch_teardown(struct testvol *tv);

/* SIGALRM (a test that hangs): write msg to stderr, clean tv up, _exit(1). */
void testvol_catch_timeout(struct testvol *tv, const char *msg);
/* SIGABRT (a failed assert, a sanitizer report): clean tv up, then abort. */
void testvol_catch_abort(struct testvol *tv);

/* ---- what ntfs-3g says about an image (fail the test otherwise) ---- */

/* ntfscat img path: the bytes, malloc()ed. */
void testvol_cat(const char *img, const char *path, char **data, size_t *len);
/* ntfsfix -n img processes it successfully and reports nothing wrong. */
void testvol_expect_ntfsfix_clean(const char *img);

#endif
