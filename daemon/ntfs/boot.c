/*
 * boot.c — boot sector validation.
 *
 * Invariants: nothing from the boot sector is used before it is checked;
 * every refusal names the field and its value.  Shifts are only computed on
 * values already known to be small powers of two, so no arithmetic here can
 * overflow.
 */
#include "boot.h"

#include <errno.h>
#include <string.h>

#include "le.h"
#include "error.h"
#include "layout.h"

static int ilog2_exact(uint64_t v)
{
	int bits = 0;

	if (!v || (v & (v - 1)))
		return -1;
	while (v >>= 1)
		bits++;
	return bits;
}

/* A size encoded as "clusters if positive, 2^-v bytes if negative". */
static int decode_record_size(int8_t v, uint32_t cluster_size, const char *field,
			      uint32_t *size)
{
	uint64_t bytes;

	if (v == 0)
		return ntfs_fail(EINVAL, "boot sector: %s is 0", field);
	if (v > 0)
		bytes = (uint64_t)v * cluster_size;
	else if (v < -31)
		return ntfs_fail(EINVAL, "boot sector: %s %d is out of range", field, v);
	else
		bytes = 1ull << -v;
	if (ilog2_exact(bytes) < 0 || bytes < 256 || bytes > 65536)
		return ntfs_fail(EINVAL, "boot sector: %s %d gives %llu bytes, not a power of "
				 "two between 256 and 65536", field, v,
				 (unsigned long long)bytes);
	*size = (uint32_t)bytes;
	return 0;
}

static int check_zero_fields(const struct ntfs_boot_sector *bs)
{
	if (le16(bs->reserved_sectors))
		return ntfs_fail(EINVAL, "boot sector: reserved_sectors is %u, must be 0",
				 le16(bs->reserved_sectors));
	if (bs->fats)
		return ntfs_fail(EINVAL, "boot sector: fats is %u, must be 0", bs->fats);
	if (le16(bs->root_entries))
		return ntfs_fail(EINVAL, "boot sector: root_entries is %u, must be 0",
				 le16(bs->root_entries));
	if (le16(bs->sectors))
		return ntfs_fail(EINVAL, "boot sector: sectors is %u, must be 0",
				 le16(bs->sectors));
	if (le16(bs->sectors_per_fat))
		return ntfs_fail(EINVAL, "boot sector: sectors_per_fat is %u, must be 0",
				 le16(bs->sectors_per_fat));
	if (le32(bs->large_sectors))
		return ntfs_fail(EINVAL, "boot sector: large_sectors is %u, must be 0",
				 le32(bs->large_sectors));
	return 0;
}

static int decode_cluster_size(const struct ntfs_boot_sector *bs, uint32_t sector_size,
			       uint32_t *cluster_size)
{
	uint8_t spc = bs->sectors_per_cluster;
	uint64_t bytes;

	if (spc == 0)
		return ntfs_fail(EINVAL, "boot sector: sectors_per_cluster is 0");
	if (spc <= 0x80) {
		if (ilog2_exact(spc) < 0)
			return ntfs_fail(EINVAL, "boot sector: sectors_per_cluster %u is not a "
					 "power of two", spc);
		bytes = (uint64_t)spc * sector_size;
	} else {
		unsigned shift = 256u - spc;

		if (shift > 31)
			return ntfs_fail(EINVAL, "boot sector: sectors_per_cluster 0x%02x "
					 "encodes an impossible cluster size", spc);
		bytes = (uint64_t)sector_size << shift;
	}
	if (bytes < NTFS_MIN_CLUSTER_SIZE || bytes > NTFS_MAX_CLUSTER_SIZE)
		return ntfs_fail(EINVAL, "boot sector: sectors_per_cluster 0x%02x gives a "
				 "cluster size of %llu bytes, outside 512 B..2 MiB", spc,
				 (unsigned long long)bytes);
	*cluster_size = (uint32_t)bytes;
	return 0;
}

int ntfs_boot_parse(const void *buf, uint64_t device_size, struct ntfs_geometry *g)
{
	const struct ntfs_boot_sector *bs = buf;
	uint32_t sector_size, cluster_size = 0;
	uint64_t nr_sectors, volume_bytes;
	int err;

	memset(g, 0, sizeof(*g));
	if (memcmp(bs->oem_id, "NTFS    ", 8))
		return ntfs_fail(EINVAL, "boot sector: OEM id is not \"NTFS    \": not an NTFS "
				 "volume");
	if (le16(bs->end_of_sector_marker) != 0xaa55)
		return ntfs_fail(EINVAL, "boot sector: end-of-sector marker is 0x%04x, not "
				 "0xaa55", le16(bs->end_of_sector_marker));
	sector_size = le16(bs->bytes_per_sector);
	if (sector_size < 512 || sector_size > 4096 || ilog2_exact(sector_size) < 0)
		return ntfs_fail(EINVAL, "boot sector: bytes_per_sector %u is not a power of "
				 "two between 512 and 4096", sector_size);
	err = check_zero_fields(bs);
	if (err)
		return err;
	err = decode_cluster_size(bs, sector_size, &cluster_size);
	if (err)
		return err;
	if (cluster_size < sector_size)
		return ntfs_fail(EINVAL, "boot sector: cluster size %u is smaller than the "
				 "sector size %u", cluster_size, sector_size);
	g->sector_size = sector_size;
	g->cluster_size = cluster_size;
	g->cluster_size_bits = (uint32_t)ilog2_exact(cluster_size);

	err = decode_record_size(bs->clusters_per_mft_record, cluster_size,
				 "clusters_per_mft_record", &g->mft_record_size);
	if (err)
		return err;
	if (g->mft_record_size < NTFS_BLOCK_SIZE || g->mft_record_size < sector_size)
		return ntfs_fail(EINVAL, "boot sector: MFT record size %u is smaller than a "
				 "sector", g->mft_record_size);
	g->mft_record_size_bits = (uint32_t)ilog2_exact(g->mft_record_size);
	err = decode_record_size(bs->clusters_per_index_record, cluster_size,
				 "clusters_per_index_record", &g->index_block_size);
	if (err)
		return err;
	if (g->index_block_size < NTFS_BLOCK_SIZE)
		return ntfs_fail(EINVAL, "boot sector: index block size %u is smaller than "
				 "512", g->index_block_size);
	g->index_block_size_bits = (uint32_t)ilog2_exact(g->index_block_size);

	nr_sectors = le64(bs->number_of_sectors);
	if (nr_sectors == 0 || nr_sectors > (UINT64_MAX >> 12))
		return ntfs_fail(EINVAL, "boot sector: number_of_sectors %llu is invalid",
				 (unsigned long long)nr_sectors);
	volume_bytes = nr_sectors * sector_size;
	if (volume_bytes > device_size)
		return ntfs_fail(EINVAL, "boot sector: the volume is %llu bytes but the device "
				 "holds only %llu: truncated image?",
				 (unsigned long long)volume_bytes, (unsigned long long)device_size);
	g->nr_clusters = volume_bytes >> g->cluster_size_bits;
	if (g->nr_clusters == 0)
		return ntfs_fail(EINVAL, "boot sector: the volume is smaller than one cluster");
	g->mft_lcn = le64(bs->mft_lcn);
	g->mftmirr_lcn = le64(bs->mftmirr_lcn);
	if (g->mft_lcn >= g->nr_clusters)
		return ntfs_fail(EINVAL, "boot sector: mft_lcn %llu is outside the volume "
				 "(%llu clusters)", (unsigned long long)g->mft_lcn,
				 (unsigned long long)g->nr_clusters);
	if (g->mftmirr_lcn >= g->nr_clusters)
		return ntfs_fail(EINVAL, "boot sector: mftmirr_lcn %llu is outside the volume "
				 "(%llu clusters)", (unsigned long long)g->mftmirr_lcn,
				 (unsigned long long)g->nr_clusters);
	g->serial = le64(bs->volume_serial_number);
	return 0;
}
