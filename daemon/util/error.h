/*
 * error.h — the daemon's error channel, used by every layer from the
 * on-disk one up (named ntfs_ since it began there).
 *
 * Invariants: functions return a negative errno; whenever they do so because
 * of something on the disk, the device or a request, they first record a message with
 * ntfs_error() that names the object (record number, attribute, field) and
 * the reason.  The message is thread-local and lives until the next
 * ntfs_error() on the same thread, so a caller can report it verbatim.
 */
#ifndef NTFS_ERROR_H
#define NTFS_ERROR_H

__attribute__((format(printf, 1, 2))) void ntfs_error(const char *fmt, ...);
/* Like ntfs_error, and returns -err so `return ntfs_fail(EIO, ...)` reads well. */
__attribute__((format(printf, 2, 3))) int ntfs_fail(int err, const char *fmt, ...);
const char *ntfs_last_error(void);
void ntfs_clear_error(void);

#endif
