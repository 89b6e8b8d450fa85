/*
 * device.h — the volume's backing store: an image file or a block device.
 *
 * Invariants: I/O is positional (pread/pwrite), so one device may be used
 * from many threads at once; a read or write either moves every byte asked
 * for or fails with a message naming the device, the offset and the reason;
 * nothing is ever written past the end of the device or to a device opened
 * read-only.  A read that
 * would run past the end of the device fails with EIO ("truncated").
 */
#ifndef NTFS_DEVICE_H
#define NTFS_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ntfs_device {
	int fd;
	bool read_only;
	uint64_t size;      /* bytes */
	char *path;
};

int ntfs_device_open(const char *path, bool read_only, struct ntfs_device **out);
/* The same on fd, already open on path (O_RDWR unless read_only); the
 * device owns fd from then on, also when this fails.  The caller decides
 * how it was opened and locked (the daemon: daemon/owner.c). */
int ntfs_device_open_fd(const char *path, int fd, bool read_only, struct ntfs_device **out);
void ntfs_device_close(struct ntfs_device *dev);
int ntfs_device_pread(struct ntfs_device *dev, void *buf, size_t len, uint64_t off);
/* Write every byte or fail (-EROFS on a read-only device, -errno). */
int ntfs_device_pwrite(struct ntfs_device *dev, const void *buf, size_t len, uint64_t off);
/* Make completed writes durable (fdatasync). */
int ntfs_device_flush(struct ntfs_device *dev);

#endif
