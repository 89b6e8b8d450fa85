/*
 * device.c — positional reads from an image file or block device.
 *
 * Invariants: see device.h.  EINTR and short reads are retried; a zero-byte
 * read before the requested length is a truncated device, reported as EIO.
 */
#include "device.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

static int device_size(int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return ntfs_fail(errno, "%s: cannot stat: %s", path, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;

		if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
			return ntfs_fail(errno, "%s: cannot get block device size: %s", path,
					 strerror(errno));
		*size = bytes;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return ntfs_fail(ENODEV, "%s: not a regular file or block device", path);
	*size = (uint64_t)st.st_size;
	return 0;
}

int ntfs_device_open(const char *path, bool read_only, struct ntfs_device **out)
{
	int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);

	if (fd < 0)
		return ntfs_fail(errno, "%s: cannot open: %s", path, strerror(errno));
	return ntfs_device_open_fd(path, fd, read_only, out);
}

int ntfs_device_open_fd(const char *path, int fd, bool read_only, struct ntfs_device **out)
{
	struct ntfs_device *dev;
	int err;

	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		close(fd);
		return ntfs_fail(ENOMEM, "%s: out of memory", path);
	}
	dev->fd = fd;
	dev->read_only = read_only;
	dev->path = strdup(path);
	err = dev->path ? device_size(fd, path, &dev->size) : -ENOMEM;
	if (err) {
		ntfs_device_close(dev);
		return err;
	}
	*out = dev;
	return 0;
}

void ntfs_device_close(struct ntfs_device *dev)
{
	if (!dev)
		return;
	if (dev->fd >= 0)
		close(dev->fd);
	free(dev->path);
	free(dev);
}

int ntfs_device_pread(struct ntfs_device *dev, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (off > dev->size || len > dev->size - off)
		return ntfs_fail(EIO, "%s: read of %zu bytes at offset %llu runs past the end "
				 "of the device (%llu bytes): truncated image?",
				 dev->path, len, (unsigned long long)off,
				 (unsigned long long)dev->size);
	while (len) {
		ssize_t n = pread(dev->fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ntfs_fail(errno, "%s: read at offset %llu: %s", dev->path,
					 (unsigned long long)off, strerror(errno));
		}
		if (n == 0)
			return ntfs_fail(EIO, "%s: unexpected end of device at offset %llu",
					 dev->path, (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int ntfs_device_pwrite(struct ntfs_device *dev, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	if (dev->read_only)
		return ntfs_fail(EROFS, "%s: opened read-only", dev->path);
	if (off > dev->size || len > dev->size - off)
		return ntfs_fail(EIO, "%s: write of %zu bytes at offset %llu runs past the end of "
				 "the device", dev->path, len, (unsigned long long)off);
	while (len) {
		ssize_t n = pwrite(dev->fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ntfs_fail(errno, "%s: write at offset %llu: %s", dev->path,
					 (unsigned long long)off, strerror(errno));
		}
		if (n == 0)
			return ntfs_fail(EIO, "%s: write at offset %llu made no progress", dev->path,
					 (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int ntfs_device_flush(struct ntfs_device *dev)
{
	if (dev->read_only)
		return 0;
	if (fdatasync(dev->fd) < 0)
		return ntfs_fail(errno, "%s: flush: %s", dev->path, strerror(errno));
	return 0;
}
