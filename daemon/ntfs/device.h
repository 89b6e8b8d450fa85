/*
 * device.h — the volume's backing store: an image file or a block device.
 *
 * Invariants: reads are positional (pread), so one device may be read from
 * many threads at once; a read either returns every byte asked for or fails
 * with a message naming the device, the offset and the reason.  A read that
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
void ntfs_device_close(struct ntfs_device *dev);
int ntfs_device_pread(struct ntfs_device *dev, void *buf, size_t len, uint64_t off);

#endif
