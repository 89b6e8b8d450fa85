/*
 * attr_write.c — see attr_write.h.
 */
#include "attr_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "error.h"
#include "inode.h"
#include "le.h"
#include "mft.h"
#include "mst.h"
#include "volume.h"

int ntfs_attr_pwrite_mapped(struct ntfs_attr *na, uint64_t pos, size_t len, const void *buf)
{
	struct ntfs_volume *vol = na->ni->vol;
	uint32_t bits = vol->geo.cluster_size_bits;
	const uint8_t *p = buf;
	char what[160];

	if (na->resident)
		return ntfs_fail(EINVAL, "%s: resident", ntfs_attr_describe(na, what, sizeof(what)));
	while (len) {
		int64_t vcn = (int64_t)(pos >> bits), run;
		int64_t lcn = ntfs_rl_vcn_to_lcn(&na->rl, vcn, &run);
		uint64_t ofs = pos & (vol->geo.cluster_size - 1), avail;
		size_t chunk;
		int err;

		if (lcn < 0)
			return ntfs_fail(EIO, "%s: vcn %lld is %s: refusing to write there",
					 ntfs_attr_describe(na, what, sizeof(what)), (long long)vcn,
					 lcn == LCN_HOLE ? "a hole" : "not mapped");
		avail = ((uint64_t)run << bits) - ofs;
		chunk = avail < len ? (size_t)avail : len;
		err = ntfs_device_pwrite(vol->dev, p, chunk, ((uint64_t)lcn << bits) + ofs);
		if (err)
			return err;
		p += chunk;
		pos += chunk;
		len -= chunk;
	}
	return 0;
}

int ntfs_mft_record_write(struct ntfs_volume *vol, uint64_t mft_no, const uint8_t *rec)
{
	uint32_t size = vol->geo.mft_record_size;
	uint8_t *copy = malloc(size);
	int err;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, rec, size);
	err = ntfs_mst_pre_write(copy, size);
	if (err)
		err = ntfs_fail(EIO, "MFT record %llu: cannot apply fixups before writing",
				(unsigned long long)mft_no);
	if (!err)
		err = ntfs_attr_pwrite_mapped(vol->mft_data, mft_no << vol->geo.mft_record_size_bits,
					      size, copy);
	if (!err && vol->mirr_data && mft_no < vol->mirr_records)
		err = ntfs_attr_pwrite_mapped(vol->mirr_data,
					      mft_no << vol->geo.mft_record_size_bits, size, copy);
	free(copy);
	return err;
}

struct locate {
	uint32_t type;
	const ntfschar *name;
	uint32_t name_len;
	uint64_t rec;
	uint16_t instance;
	int found;
};

static int locate_first_extent(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	struct locate *l = ctx;

	if (le32(a->type) != l->type || a->name_length != l->name_len ||
	    (l->name_len && memcmp(ntfs_attr_name(a), l->name, 2u * l->name_len)))
		return 0;
	if (a->non_resident && sle64(a->u.nr.lowest_vcn) != 0)
		return 0;
	l->rec = mft_no;
	l->instance = le16(a->instance);
	l->found = 1;
	return 1;
}

/* Read the record holding na's first extent; *a points into *buf. */
int ntfs_attr_load_first_extent(struct ntfs_attr *na, uint8_t **buf, uint64_t *rec_no,
				struct ntfs_attr_record **a)
{
	struct locate l = { .type = na->type, .name = na->name, .name_len = na->name_len };
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *cur;
	char what[160];
	int err;

	err = ntfs_inode_foreach_attr(na->ni, locate_first_extent, &l);
	if (err < 0)
		return err;
	if (!l.found)
		return ntfs_fail(EIO, "%s: first extent not found",
				 ntfs_attr_describe(na, what, sizeof(what)));
	*buf = malloc(na->ni->vol->geo.mft_record_size);
	if (!*buf)
		return -ENOMEM;
	err = ntfs_mft_record_read(na->ni->vol, l.rec, *buf);
	if (err) {
		free(*buf);
		return err;
	}
	ntfs_attr_iter_init(&it, *buf);
	while (ntfs_attr_iter_next(&it, &cur))
		if (le32(cur->type) == na->type && le16(cur->instance) == l.instance) {
			*a = (struct ntfs_attr_record *)cur;
			*rec_no = l.rec;
			return 0;
		}
	free(*buf);
	return ntfs_fail(EIO, "%s: attribute vanished from MFT record %llu",
			 ntfs_attr_describe(na, what, sizeof(what)), (unsigned long long)l.rec);
}

int ntfs_attr_set_sizes(struct ntfs_attr *na, uint64_t data_size, uint64_t initialized_size)
{
	struct ntfs_volume *vol = na->ni->vol;
	struct ntfs_attr_record *a;
	uint64_t rec_no;
	uint8_t *buf;
	char what[160];
	int err;

	if (na->resident || initialized_size > data_size || data_size > na->allocated_size)
		return ntfs_fail(EINVAL, "%s: cannot set sizes %llu/%llu",
				 ntfs_attr_describe(na, what, sizeof(what)),
				 (unsigned long long)data_size, (unsigned long long)initialized_size);
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_attr_load_first_extent(na, &buf, &rec_no, &a);
	if (!err) {
		a->u.nr.data_size = cpu_to_le64(data_size);
		a->u.nr.initialized_size = cpu_to_le64(initialized_size);
		err = ntfs_mft_record_write(vol, rec_no, buf);
		free(buf);
	}
	pthread_mutex_unlock(&vol->mft_lock);
	if (!err) {
		na->data_size = data_size;
		na->initialized_size = initialized_size;
	}
	return err;
}

int ntfs_attr_write_resident(struct ntfs_attr *na, uint64_t pos, const void *data, size_t len)
{
	struct ntfs_volume *vol = na->ni->vol;
	struct ntfs_attr_record *a;
	uint64_t rec_no;
	uint8_t *buf;
	char what[160];
	int err;

	if (!na->resident || pos > na->data_size || len > na->data_size - pos)
		return ntfs_fail(EINVAL, "%s: resident write of %zu bytes at %llu does not fit",
				 ntfs_attr_describe(na, what, sizeof(what)), len,
				 (unsigned long long)pos);
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_attr_load_first_extent(na, &buf, &rec_no, &a);
	if (!err) {
		uint32_t vlen;
		uint8_t *v = (uint8_t *)ntfs_attr_value(a, &vlen);

		if (a->non_resident || vlen != na->data_size) {
			err = ntfs_fail(EIO, "%s: changed on disk under us",
					ntfs_attr_describe(na, what, sizeof(what)));
		} else {
			memcpy(v + pos, data, len);
			err = ntfs_mft_record_write(vol, rec_no, buf);
		}
		free(buf);
	}
	pthread_mutex_unlock(&vol->mft_lock);
	if (!err)
		memcpy(na->value + pos, data, len);
	return err;
}

int ntfs_attr_resize_resident(struct ntfs_attr *na, uint64_t size)
{
	struct ntfs_volume *vol = na->ni->vol;
	struct ntfs_attr_record *a;
	uint64_t rec_no;
	uint8_t *buf, *value = NULL;
	char what[160];
	int err;

	if (!na->resident || size > vol->geo.mft_record_size)
		return !na->resident ? ntfs_fail(EINVAL, "%s: not resident",
						 ntfs_attr_describe(na, what, sizeof(what)))
				     : -E2BIG;
	value = malloc(size ? size : 1);
	if (!value)
		return -ENOMEM;
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_attr_load_first_extent(na, &buf, &rec_no, &a);
	if (!err) {
		uint32_t vlen, voff = le16(a->u.r.value_offset);

		ntfs_attr_value(a, &vlen);
		if (a->non_resident || vlen != na->data_size) {
			err = ntfs_fail(EIO, "%s: changed on disk under us",
					ntfs_attr_describe(na, what, sizeof(what)));
		} else {
			err = ntfs_attr_record_resize(buf, a, (uint32_t)((voff + size + 7) & ~7ull));
			if (!err) {
				uint8_t *v = (uint8_t *)a + voff;

				if (size > vlen)
					memset(v + vlen, 0, (size_t)(size - vlen));
				a->u.r.value_length = cpu_to_le32((uint32_t)size);
				memcpy(value, v, (size_t)size);
				err = ntfs_mft_record_write(vol, rec_no, buf);
			}
		}
		free(buf);
	}
	pthread_mutex_unlock(&vol->mft_lock);
	if (err) {
		free(value);
		return err;
	}
	free(na->value);
	na->value = value;
	na->data_size = na->initialized_size = size;
	return 0;
}
