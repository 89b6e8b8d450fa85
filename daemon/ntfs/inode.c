/*
 * inode.c — opening inodes and visiting their attributes.
 *
 * Invariants: see inode.h.  The attribute list is read once at open and
 * validated entry by entry; an entry that names a record which is not an
 * extension of this inode, or an attribute instance that record does not
 * hold, is corruption and reported with both record numbers.
 */
#include "inode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "le.h"
#include "error.h"
#include "mft.h"
#include "volume.h"

#define NTFS_MAX_ATTR_LIST_SIZE (16u << 20)

static int attr_list_check(const uint8_t *al, uint32_t size, uint64_t mft_no)
{
	uint32_t off = 0;

	while (off < size) {
		const struct ntfs_attr_list_entry *e = (const void *)(al + off);
		uint32_t len;

		if (size - off < sizeof(*e))
			goto bad;
		len = le16(e->length);
		if (len < sizeof(*e) || len > size - off ||
		    (e->name_length && e->name_offset + 2u * e->name_length > len))
			goto bad;
		off += len;
	}
	return 0;
bad:
	return ntfs_fail(EIO, "MFT record %llu: corrupted $ATTRIBUTE_LIST entry at offset %u",
			 (unsigned long long)mft_no, off);
}

const struct ntfs_attr_record *ntfs_record_find_attr(const uint8_t *rec, uint32_t type)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a))
		if (le32(a->type) == type)
			return a;
	return NULL;
}

static int inode_load_attr_list(struct ntfs_inode *ni)
{
	const struct ntfs_attr_record *a = ntfs_record_find_attr(ni->mrec, AT_ATTRIBUTE_LIST);
	struct ntfs_attr *na;
	ssize_t n;
	int err;

	if (!a)
		return 0;
	err = ntfs_attr_open_record(ni, a, &na);
	if (err)
		return err;
	if (na->data_size > NTFS_MAX_ATTR_LIST_SIZE || na->data_size == 0) {
		ntfs_attr_close(na);
		return ntfs_fail(EIO, "MFT record %llu: $ATTRIBUTE_LIST of %llu bytes is "
				 "implausible", (unsigned long long)ni->mft_no,
				 (unsigned long long)na->data_size);
	}
	ni->attr_list = malloc(na->data_size);
	if (!ni->attr_list) {
		ntfs_attr_close(na);
		return -ENOMEM;
	}
	ni->attr_list_size = (uint32_t)na->data_size;
	n = ntfs_attr_pread(na, 0, na->data_size, ni->attr_list);
	ntfs_attr_close(na);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n != ni->attr_list_size)
		return ntfs_fail(EIO, "MFT record %llu: short $ATTRIBUTE_LIST",
				 (unsigned long long)ni->mft_no);
	return attr_list_check(ni->attr_list, ni->attr_list_size, ni->mft_no);
}

static void inode_load_std_info(struct ntfs_inode *ni)
{
	const struct ntfs_attr_record *a = ntfs_record_find_attr(ni->mrec, AT_STANDARD_INFORMATION);
	const struct ntfs_standard_information *si;
	uint32_t len;

	if (!a || a->non_resident)
		return;
	si = (const void *)ntfs_attr_value(a, &len);
	if (len < sizeof(*si))
		return;
	ni->file_attributes = le32(si->file_attributes);
	ni->times[0] = le64(si->creation_time);
	ni->times[1] = le64(si->last_data_change_time);
	ni->times[2] = le64(si->last_mft_change_time);
	ni->times[3] = le64(si->last_access_time);
}

int ntfs_inode_open_record(struct ntfs_volume *vol, uint64_t mft_no, const uint8_t *rec,
			   struct ntfs_inode **out)
{
	const struct ntfs_mft_record *m = (const void *)rec;
	struct ntfs_inode *ni;
	int err;

	if (!(le16(m->flags) & MFT_RECORD_IN_USE))
		return ntfs_fail(ENOENT, "MFT record %llu: not in use",
				 (unsigned long long)mft_no);
	if (MREF(le64(m->base_mft_record)))
		return ntfs_fail(EIO, "MFT record %llu: is an extension record of %llu, not an "
				 "inode", (unsigned long long)mft_no,
				 (unsigned long long)MREF(le64(m->base_mft_record)));
	ni = calloc(1, sizeof(*ni));
	if (!ni)
		return -ENOMEM;
	ni->mrec = malloc(vol->geo.mft_record_size);
	if (!ni->mrec) {
		free(ni);
		return -ENOMEM;
	}
	memcpy(ni->mrec, rec, vol->geo.mft_record_size);
	ni->vol = vol;
	ni->mft_no = mft_no;
	ni->seq_no = le16(m->sequence_number);
	ni->mrec_flags = le16(m->flags);
	ni->link_count = le16(m->link_count);
	inode_load_std_info(ni);
	err = inode_load_attr_list(ni);
	if (err) {
		ntfs_inode_close(ni);
		return err;
	}
	*out = ni;
	return 0;
}

int ntfs_inode_open(struct ntfs_volume *vol, uint64_t mft_no, struct ntfs_inode **out)
{
	uint8_t *buf = malloc(vol->geo.mft_record_size);
	int err;

	if (!buf)
		return -ENOMEM;
	err = ntfs_mft_record_read(vol, mft_no, buf);
	if (!err)
		err = ntfs_inode_open_record(vol, mft_no, buf, out);
	free(buf);
	return err;
}

void ntfs_inode_close(struct ntfs_inode *ni)
{
	if (!ni)
		return;
	free(ni->attr_list);
	free(ni->mrec);
	free(ni);
}

static int foreach_in_record(const uint8_t *rec, uint64_t mft_no, ntfs_attr_visit_fn fn,
			     void *ctx)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;
	int ret;

	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a)) {
		ret = fn(ctx, a, mft_no);
		if (ret)
			return ret;
	}
	return 0;
}

/* Load extension record ext_no into buf and check it belongs to ni. */
static int load_extension(struct ntfs_inode *ni, uint64_t ext_no, uint8_t *buf)
{
	const struct ntfs_mft_record *m = (const void *)buf;
	int err = ntfs_mft_record_read(ni->vol, ext_no, buf);

	if (err)
		return err;
	if (!(le16(m->flags) & MFT_RECORD_IN_USE) ||
	    MREF(le64(m->base_mft_record)) != ni->mft_no)
		return ntfs_fail(EIO, "MFT record %llu: attribute list names record %llu, which "
				 "is not an extension record of it",
				 (unsigned long long)ni->mft_no, (unsigned long long)ext_no);
	return 0;
}

int ntfs_inode_foreach_attr(struct ntfs_inode *ni, ntfs_attr_visit_fn fn, void *ctx)
{
	uint8_t *ext = NULL;
	uint64_t ext_no = 0;
	uint32_t off = 0;
	int ret = 0;

	if (!ni->attr_list)
		return foreach_in_record(ni->mrec, ni->mft_no, fn, ctx);
	while (off < ni->attr_list_size && !ret) {
		const struct ntfs_attr_list_entry *e = (const void *)(ni->attr_list + off);
		uint64_t rec_no = MREF(le64(e->mft_reference));
		const uint8_t *rec = ni->mrec;
		const struct ntfs_attr_record *a;

		off += le16(e->length);
		if (le32(e->type) == AT_ATTRIBUTE_LIST)
			continue;
		if (rec_no != ni->mft_no) {
			if (!ext) {
				ext = malloc(ni->vol->geo.mft_record_size);
				if (!ext)
					return -ENOMEM;
			}
			if (ext_no != rec_no) {
				ext_no = 0;
				ret = load_extension(ni, rec_no, ext);
				if (ret)
					break;
				ext_no = rec_no;
			}
			rec = ext;
		}
		a = ntfs_mft_record_find_instance((uint8_t *)rec, le32(e->type), le16(e->instance));
		if (!a) {
			ret = ntfs_fail(EIO, "MFT record %llu: attribute list entry (type 0x%x, "
					"instance %u) not found in record %llu",
					(unsigned long long)ni->mft_no, le32(e->type),
					le16(e->instance), (unsigned long long)rec_no);
			break;
		}
		ret = fn(ctx, a, rec_no);
	}
	free(ext);
	return ret;
}

int ntfs_inode_foreach_attr_under_lock(struct ntfs_inode *ni, ntfs_attr_visit_fn fn, void *ctx)
{
	int ret;

	pthread_mutex_lock(&ni->vol->mft_lock);
	ret = ntfs_inode_foreach_attr(ni, fn, ctx);
	pthread_mutex_unlock(&ni->vol->mft_lock);
	return ret;
}
