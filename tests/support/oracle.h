/*
 * oracle.h - ask ntfs-3g's own tools (ntfscat, ntfsls, ntfsinfo) what is
 * on an NTFS image, so that tests can compare ntfsd against an independent
 * implementation.
 *
 * The tools are run with fork() + execvpe(): the argument vector goes to the
 * tool unchanged (no shell), so any file name works.  The child gets
 * /dev/null as stdin and LC_ALL=C.UTF-8; its stdout is captured and
 * returned, its stderr is captured separately and kept (per thread) for
 * diagnostics, see oracle_last_stderr().
 *
 * Conventions for every function below:
 *   - 0 on success, a negative errno value on failure.  Failures:
 *       -ENOPKG   the tool is not installed (execvp found no such program)
 *       -ENOENT   the image path or the file inside the image does not exist
 *       -ENODATA  (oracle_cat) the file has no such $DATA stream, or is a
 *                 directory (ntfscat cannot tell these apart)
 *       -EIO      the tool failed in another way (non-zero exit, signal)
 *       -EBADMSG  the tool's output could not be parsed
 *       -EINVAL   bad arguments (paths inside the image must be absolute)
 *       other     fork/pipe/malloc errors, as -errno
 *   - Output buffers are malloc()ed and owned by the caller; on failure
 *     nothing is returned and nothing needs freeing.
 *   - Paths inside the image are absolute, '/'-separated, UTF-8, and are
 *     looked up the way libntfs-3g does it: case-sensitively (x.txt and
 *     X.txt are different files), a DOS 8.3 name also finds its file.
 *   - The image must not be mounted read-write by ntfs-3g at the time
 *     (the tools refuse an image that another ntfs-3g process holds).
 *
 * Real tool behaviour relied upon (ntfs-3g 2022.10.3, observed on images
 * made by tests/fixtures/mkfixtures.sh) is documented in oracle.c.
 */
#ifndef NTFSD_TESTS_ORACLE_H
#define NTFSD_TESTS_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Run argv[0] (found on PATH) with argv.  *out gets everything it wrote to
 * stdout, NUL-terminated for convenience (*out_len excludes the NUL); out
 * and out_len may be NULL to discard stdout.
 *
 * If exit_status is non-NULL, the tool's completion with any exit status
 * is a success (return 0) and *exit_status tells it (128 + signal number if
 * it was killed).  If exit_status is NULL, a non-zero exit is a failure
 * (-EIO).
 */
int oracle_run(const char *const argv[], char **out, size_t *out_len, int *exit_status);
/* The same with stdin read from stdin_path (NULL: /dev/null). */
int oracle_run_input(const char *const argv[], const char *stdin_path, char **out,
                     size_t *out_len, int *exit_status);

/* The stderr text of the last tool run by this thread ("" if none);
 * truncated to a few KiB.  Valid until the next oracle call in the thread. */
const char *oracle_last_stderr(void);

/*
 * The contents of a file's unnamed $DATA attribute (stream NULL or ""), or
 * of its named $DATA stream: `ntfscat IMG PATH` or
 * `ntfscat -a 0x80 -n STREAM IMG PATH`.  *data is NUL-terminated (not
 * counted in *len).  Uninitialized ranges and holes read as zeros, and
 * compressed data comes out decompressed.
 */
int oracle_cat(const char *img, const char *path, const char *stream, char **data, size_t *len);

/*
 * The names in directory DIR, as `ntfsls -a -s -p DIR IMG` prints them, in
 * the order printed: "." and "..", then index collation order (names
 * compared upper-cased, UTF-16 unit by unit; equal ones then by exact
 * code units, so "CASE2.txt" < "case2.txt" and "X.txt" < "x.txt").
 * The set is:
 *   - "." and ".." first, always: libntfs-3g synthesizes them (they are
 *     not index entries).  The root's own index does hold a real "."
 *     entry (Win32&DOS, collating after "$Volume"); ntfsls does not print
 *     it a second time, so "/" also lists exactly one "." and one "..";
 *   - every POSIX, Win32 and Win32&DOS name: one entry per directory index
 *     entry, so a file with two hard links in DIR appears twice;
 *   - NTFS system files ($MFT, $Bitmap, ..., $Extend in the root; $ObjId,
 *     $Quota, $Reparse in /$Extend) are included;
 *   - DOS-only 8.3 names (the short twin of a Win32 long name) are NOT
 *     included: such a file appears once, under its long name.
 * If DIR is not a directory, ntfsls prints that file's own name instead.
 * Names containing '\n' cannot be represented (lines are split on '\n').
 * Free the result with oracle_free_names().
 */
int oracle_ls(const char *img, const char *dir, char ***names, size_t *count);
void oracle_free_names(char **names, size_t count);
/* Free and remove the "." and ".." entries ntfsls makes up (they are not
 * index entries); the order of the rest changes. */
void oracle_drop_dots(char **names, size_t *count);

/* One $DATA attribute as ntfsinfo reports it. */
struct oracle_attr {
    bool found;        /* the file has this $DATA attribute */
    bool resident;
    bool compressed;   /* attribute flags & 0x00ff (also set on small
                          resident files created in a compressed dir) */
    bool sparse;       /* attribute flags & 0x8000 */
    bool encrypted;    /* attribute flags & 0x4000 */
    /* For a resident attribute data_size is the value length and
     * allocated_size = initialized_size = 0 (ntfsinfo prints neither). */
    uint64_t data_size, allocated_size, initialized_size;
    /* Extras beyond the basic set: */
    uint64_t compressed_size; /* "Compressed size" (compressed or sparse
                                 non-resident attributes), else 0 */
    uint16_t flags;           /* raw attribute flags */
};

/*
 * Describe the unnamed (stream NULL or "") or named $DATA attribute of
 * PATH, from `ntfsinfo -F PATH IMG`.  A file without that attribute gives
 * 0 with a->found == false; a missing file gives -ENOENT.
 */
int oracle_info(const char *img, const char *path, const char *stream, struct oracle_attr *a);

/*
 * Whether PATH has at least one attribute of type ATTR_NAME (e.g.
 * "$ATTRIBUTE_LIST", "$INDEX_ALLOCATION", "$DATA", "$REPARSE_POINT"), in
 * its base MFT record or any extent record, per `ntfsinfo -F PATH IMG`.
 */
int oracle_has_attr(const char *img, const char *path, const char *attr_name, bool *present);

#ifdef __cplusplus
}
#endif

#endif /* NTFSD_TESTS_ORACLE_H */
