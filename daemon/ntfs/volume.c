/*
 * volume.c — opening a volume: boot sector, $MFT bootstrap, $Volume,
 * $UpCase, and the clean-shutdown and hibernation checks.
 *
 * Invariants: see volume.h.  $MFT is bootstrapped in two steps: record 0 is
 * read straight from mft_lcn, a provisional $DATA runlist is built from the
 * extents in that record alone, and with it the extension records named by
 * $MFT's attribute list are read to build the complete runlist, which then
 * replaces the provisional one.  The snapshots of $MFT/$DATA that growth
 * retired are freed by ntfs_mft_bitmap_free(), the current one here, when
 * no reader can be left.
 */
#include "volume.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attrib.h"
#include "dir.h"
#include "le.h"
#include "error.h"
#include "inode.h"
#include "lcnalloc.h"
#include "mft.h"
#include "mftalloc.h"
#include "mst.h"
#include "unistr.h"

void (*ntfs_crashpoint_hook)(const char *name);

static int volume_load_mft(struct ntfs_volume *vol)
{
	const struct ntfs_geometry *g = &vol->geo;
	uint8_t *buf = malloc(g->mft_record_size);
	struct ntfs_attr *base, *full;
	int err;

	if (!buf)
		return -ENOMEM;
	err = ntfs_device_pread(vol->dev, buf, g->mft_record_size,
				g->mft_lcn << g->cluster_size_bits);
	if (!err)
		err = ntfs_mft_record_check(buf, g->mft_record_size, FILE_MFT);
	if (!err)
		err = ntfs_inode_open_record(vol, FILE_MFT, buf, &vol->mft_ni);
	free(buf);
	if (err)
		return err;
	err = ntfs_attr_open_base_only(vol->mft_ni, AT_DATA, &base);
	if (err)
		return err == -ENOENT ? ntfs_fail(EIO, "$MFT has no $DATA attribute") : err;
	/* Nobody else sees the volume yet: plain stores are enough. */
	atomic_store_explicit(&vol->mft_data, base, memory_order_relaxed);
	if (base->resident)
		return ntfs_fail(EIO, "$MFT/$DATA is resident");
	vol->nr_mft_records = base->data_size >> g->mft_record_size_bits;
	if (vol->nr_mft_records < FILE_first_user)
		return ntfs_fail(EIO, "$MFT holds only %llu records",
				 (unsigned long long)vol->nr_mft_records);
	if (!vol->mft_ni->attr_list)
		return 0;
	err = ntfs_attr_open(vol->mft_ni, AT_DATA, NULL, 0, &full);
	if (err)
		return err;
	atomic_store_explicit(&vol->mft_data, full, memory_order_relaxed);
	ntfs_attr_close(base);
	return 0;
}

static int volume_load_info(struct ntfs_volume *vol)
{
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	struct ntfs_volume_information vi = { 0 };
	int err;

	err = ntfs_inode_open(vol, FILE_Volume, &ni);
	if (err)
		return err;
	err = ntfs_attr_open(ni, AT_VOLUME_INFORMATION, NULL, 0, &na);
	if (!err) {
		if (!na->resident || na->data_size < sizeof(vi))
			err = ntfs_fail(EIO, "$Volume: malformed $VOLUME_INFORMATION");
		else
			memcpy(&vi, na->value, sizeof(vi));
		ntfs_attr_close(na);
	} else if (err == -ENOENT) {
		err = ntfs_fail(EIO, "$Volume: no $VOLUME_INFORMATION");
	}
	if (!err) {
		vol->major_ver = vi.major_ver;
		vol->minor_ver = vi.minor_ver;
		vol->vol_flags = le16(vi.flags);
		if (vol->major_ver < 1 || vol->major_ver > 3)
			err = ntfs_fail(EIO, "$Volume: unknown NTFS version %u.%u",
					vol->major_ver, vol->minor_ver);
	}
	if (!err && ntfs_attr_open(ni, AT_VOLUME_NAME, NULL, 0, &na) == 0) {
		if (na->resident &&
		    ntfs_utf16_to_utf8(na->value, (uint32_t)(na->data_size / 2), &vol->label))
			vol->label = NULL;
		ntfs_attr_close(na);
	}
	ntfs_inode_close(ni);
	if (!err && !vol->label)
		vol->label = strdup("");
	return err;
}

static int volume_load_upcase(struct ntfs_volume *vol)
{
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	ssize_t n;
	int err;

	err = ntfs_inode_open(vol, FILE_UpCase, &ni);
	if (err)
		return err;
	err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (err) {
		ntfs_inode_close(ni);
		return err == -ENOENT ? ntfs_fail(EIO, "$UpCase has no $DATA") : err;
	}
	if (na->data_size < 2 || na->data_size > 65536 * 2 || na->data_size % 2) {
		err = ntfs_fail(EIO, "$UpCase: implausible size %llu",
				(unsigned long long)na->data_size);
	} else if (!(vol->upcase = malloc(na->data_size))) {
		err = -ENOMEM;
	} else {
		n = ntfs_attr_pread(na, 0, na->data_size, vol->upcase);
		if (n < 0)
			err = (int)n;
		else
			vol->upcase_len = (uint32_t)(na->data_size / 2);
	}
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	return err;
}

/* Check one restart page at pos; sets *valid, *clean and *lsn. */
static int logfile_restart_page(struct ntfs_attr *na, uint64_t pos, bool *valid, bool *clean,
				uint64_t *lsn)
{
	struct ntfs_restart_page rp;
	const struct ntfs_restart_area *ra;
	uint8_t *page;
	uint32_t psize, ra_off;
	ssize_t n;
	int err;

	*valid = false;
	n = ntfs_attr_pread(na, pos, sizeof(rp), &rp);
	if (n < 0)
		return (int)n;
	if ((size_t)n < sizeof(rp))
		return 0;
	if (le32(rp.magic) == magic_CHKD) {
		*valid = true;
		*clean = false;
		*lsn = UINT64_MAX;
		return 0;
	}
	if (le32(rp.magic) != magic_RSTR)
		return 0;
	psize = le32(rp.system_page_size);
	if (psize < 512 || psize > 65536 || (psize & (psize - 1)))
		return 0;
	page = malloc(psize);
	if (!page)
		return -ENOMEM;
	n = ntfs_attr_pread(na, pos, psize, page);
	err = n < 0 ? (int)n : 0;
	if (!err && (uint32_t)n == psize && !ntfs_mst_post_read(page, psize, "$LogFile page", pos)) {
		ra_off = le16(rp.restart_area_offset);
		if (ra_off % 8 == 0 && ra_off + sizeof(*ra) <= psize) {
			ra = (const void *)(page + ra_off);
			*valid = true;
			*lsn = le64(ra->current_lsn);
			*clean = le16(ra->client_in_use_list) == LOGFILE_NO_CLIENT ||
				 (le16(ra->flags) & RESTART_VOLUME_IS_CLEAN);
		}
	}
	ntfs_clear_error();
	free(page);
	return err;
}

static bool buffer_all_ff(const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != 0xff)
			return false;
	return true;
}

/* $LogFile: clean when empty (all 0xff, as mkntfs and ntfs-3g leave it) or
 * when the newest restart area has no client in use or says clean. */
static int volume_check_logfile(struct ntfs_volume *vol)
{
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	uint8_t head[512];
	bool valid[2] = { false, false }, clean[2] = { false, false };
	uint64_t lsn[2] = { 0, 0 };
	ssize_t n;
	int err, i;

	err = ntfs_inode_open(vol, FILE_LogFile, &ni);
	if (err)
		return err;
	err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (err) {
		ntfs_inode_close(ni);
		return err == -ENOENT ? ntfs_fail(EIO, "$LogFile has no $DATA") : err;
	}
	n = ntfs_attr_pread(na, 0, sizeof(head), head);
	if (n < 0) {
		err = (int)n;
	} else if ((size_t)n == sizeof(head) && buffer_all_ff(head, sizeof(head))) {
		vol->logfile_clean = true;
	} else {
		for (i = 0; i < 2 && !err; i++) {
			uint64_t pos = 0;

			if (i == 1) {
				struct ntfs_restart_page rp;

				memcpy(&rp, head, sizeof(rp));
				pos = valid[0] ? le32(rp.system_page_size) : 4096;
			}
			err = logfile_restart_page(na, pos, &valid[i], &clean[i], &lsn[i]);
		}
		if (!err) {
			if (valid[0] && valid[1])
				vol->logfile_clean = lsn[0] >= lsn[1] ? clean[0] : clean[1];
			else
				vol->logfile_clean = (valid[0] && clean[0]) || (valid[1] && clean[1]);
		}
	}
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	return err;
}

/* A hibernated Windows leaves "hibr" (or "wake" after a fast startup resume
 * in progress) at the start of /hiberfil.sys. */
static int volume_check_hiberfile(struct ntfs_volume *vol)
{
	static const union {
		uint8_t bytes[24];
		ntfschar units[12];
	} hiberfil = { .bytes = { 'h', 0, 'i', 0, 'b', 0, 'e', 0, 'r', 0, 'f', 0, 'i', 0, 'l', 0,
				  '.', 0, 's', 0, 'y', 0, 's', 0 } };
	struct ntfs_inode *root, *ni;
	struct ntfs_attr *na;
	uint64_t mref;
	char magic[4];
	ssize_t n;
	int err;

	err = ntfs_inode_open(vol, FILE_root, &root);
	if (err)
		return err;
	err = ntfs_dir_lookup(root, hiberfil.units, 12, NTFS_LOOKUP_IGNORE_CASE, &mref);
	ntfs_inode_close(root);
	if (err == -ENOENT) {
		ntfs_clear_error();
		return 0;
	}
	if (err)
		return err;
	err = ntfs_inode_open(vol, MREF(mref), &ni);
	if (err)
		return err;
	err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (!err) {
		n = ntfs_attr_pread(na, 0, sizeof(magic), magic);
		if (n < 0)
			err = (int)n;
		else if (n == sizeof(magic))
			vol->hibernated = !memcmp(magic, "hibr", 4) || !memcmp(magic, "HIBR", 4) ||
					  !memcmp(magic, "wake", 4) || !memcmp(magic, "WAKE", 4);
		ntfs_attr_close(na);
	} else if (err == -ENOENT) {
		err = 0;
	}
	ntfs_inode_close(ni);
	return err;
}

static int volume_check_writable(struct ntfs_volume *vol)
{
	const char *path = vol->dev->path;

	if (vol->hibernated)
		return ntfs_fail(EPERM, "%s: Windows is hibernated on this volume "
				 "(/hiberfil.sys): writing would lose the hibernated session's "
				 "data; resume and shut down Windows fully, or open it read-only",
				 path);
	if (!vol->logfile_clean)
		return ntfs_fail(EPERM, "%s: $LogFile shows the volume was not shut down cleanly: "
				 "let Windows (or chkdsk) replay the log, or open it read-only",
				 path);
	if (ntfs_volume_is_dirty(vol))
		return ntfs_fail(EPERM, "%s: the volume is marked dirty: run chkdsk (or ntfsfix) "
				 "first, or open it read-only", path);
	return 0;
}

/* $MFTMirr: the first records of $MFT, kept identical by every record write. */
static int volume_load_mirror(struct ntfs_volume *vol)
{
	int err = ntfs_inode_open(vol, FILE_MFTMirr, &vol->mirr_ni);

	if (!err)
		err = ntfs_attr_open(vol->mirr_ni, AT_DATA, NULL, 0, &vol->mirr_data);
	if (err)
		return err == -ENOENT ? ntfs_fail(EIO, "$MFTMirr has no $DATA") : err;
	if (vol->mirr_data->resident)
		return ntfs_fail(EIO, "$MFTMirr/$DATA is resident");
	vol->mirr_records = (uint32_t)(vol->mirr_data->data_size >> vol->geo.mft_record_size_bits);
	return 0;
}

int ntfs_volume_open(const char *path, unsigned flags, struct ntfs_volume **out)
{
	return ntfs_volume_open_fd(path, -1, flags, out);
}

int ntfs_volume_open_fd(const char *path, int fd, unsigned flags, struct ntfs_volume **out)
{
	struct ntfs_volume *vol = calloc(1, sizeof(*vol));
	uint8_t boot[512];
	int err;

	if (!vol) {
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	pthread_mutex_init(&vol->mft_lock, NULL);
	vol->flags = flags;
	err = fd >= 0 ? ntfs_device_open_fd(path, fd, flags & NTFS_OPEN_READ_ONLY, &vol->dev)
		      : ntfs_device_open(path, flags & NTFS_OPEN_READ_ONLY, &vol->dev);
	if (!err)
		err = ntfs_device_pread(vol->dev, boot, sizeof(boot), 0);
	if (!err) {
		err = ntfs_boot_parse(boot, vol->dev->size, &vol->geo);
		if (err) {
			char why[400];

			snprintf(why, sizeof(why), "%s", ntfs_last_error());
			err = ntfs_fail(-err, "%s: %s", path, why);
		}
	}
	if (!err)
		err = volume_load_mft(vol);
	if (!err)
		err = volume_load_info(vol);
	if (!err)
		err = volume_load_upcase(vol);
	if (!err)
		err = volume_check_logfile(vol);
	if (!err)
		err = volume_check_hiberfile(vol);
	if (!err && !(flags & NTFS_OPEN_READ_ONLY))
		err = volume_check_writable(vol);
	if (!err && !(flags & NTFS_OPEN_READ_ONLY))
		err = volume_load_mirror(vol);
	if (!err && !(flags & NTFS_OPEN_READ_ONLY))
		err = ntfs_lcn_bitmap_load(vol);
	if (!err && !(flags & NTFS_OPEN_READ_ONLY))
		err = ntfs_mft_bitmap_load(vol);
	if (err) {
		ntfs_volume_close(vol);
		return err;
	}
	*out = vol;
	return 0;
}

void ntfs_volume_close(struct ntfs_volume *vol)
{
	if (!vol)
		return;
	ntfs_mft_bitmap_free(vol);
	ntfs_lcn_bitmap_free(vol);
	ntfs_attr_close(vol->mirr_data);
	ntfs_inode_close(vol->mirr_ni);
	ntfs_attr_close(atomic_load_explicit(&vol->mft_data, memory_order_relaxed));
	ntfs_inode_close(vol->mft_ni);
	pthread_mutex_destroy(&vol->mft_lock);
	free(vol->ix_checked);
	free(vol->upcase);
	free(vol->label);
	ntfs_device_close(vol->dev);
	free(vol);
}
