/*
 * boot.h — decoding and validating the NTFS boot sector.
 *
 * Invariant: a struct ntfs_geometry only exists in a filled-in state after
 * ntfs_boot_parse() accepted every field; all sizes in it are powers of two
 * within the ranges NTFS allows, and the MFT and MFT mirror lie inside the
 * volume, which itself fits inside the device.
 */
#ifndef NTFS_BOOT_H
#define NTFS_BOOT_H

#include <stdint.h>

struct ntfs_geometry {
	uint32_t sector_size;
	uint32_t cluster_size;
	uint32_t cluster_size_bits;
	uint64_t nr_clusters;
	uint64_t mft_lcn;
	uint64_t mftmirr_lcn;
	uint32_t mft_record_size;
	uint32_t mft_record_size_bits;
	uint32_t index_block_size;
	uint32_t index_block_size_bits;
	uint64_t serial;
};

#define NTFS_MIN_CLUSTER_SIZE 512u
#define NTFS_MAX_CLUSTER_SIZE (2u << 20)

/* buf holds the first 512 bytes of the volume.  Returns 0 or -EINVAL with a
 * message naming the offending field. */
int ntfs_boot_parse(const void *buf, uint64_t device_size, struct ntfs_geometry *g);

#endif
