/*
 * attr_record.c — see attr_record.h: one attribute record's header and
 * mapping pairs, and the resident-to-non-resident move; laying a runlist
 * out over several records is attr_extents.c.
 *
 * Invariants (beyond the header's): the record buffers being edited are
 * private copies of records read from disk under vol->mft_lock; every edit
 * that can fail happens before the first write, or the copies are
 * discarded, so "nothing written" holds by construction.  The in-memory
 * ntfs_attr and inode change only after the base record write succeeded.
 */
#include "attr_record.h"
#include "attr_record_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr_list.h"
#include "attr_write.h"
#include "attrib.h"
#include "collate.h"
#include "device.h"
#include "error.h"
#include "inode.h"
#include "lcnalloc.h"
#include "le.h"
#include "mft.h"
#include "mftalloc.h"
#include "volume.h"

bool attr_flags_need_compressed_size(uint16_t flags)
{
	return flags & (ATTR_IS_SPARSE | ATTR_IS_COMPRESSED);
}

uint32_t attr_nonresident_header_size(uint16_t flags)
{
	return attr_flags_need_compressed_size(flags) ? NTFS_ATTR_NONRESIDENT_COMPRESSED_HEADER_SIZE
						 : NTFS_ATTR_NONRESIDENT_HEADER_SIZE;
}

/* ntfs_attr_record_set_runlist() with a's new length capped at max_len
 * (at most a's length plus the record's free space). */
int attr_record_set_runlist(uint8_t *rec, struct ntfs_attr_record *a,
			    const struct ntfs_runlist *rl, uint16_t flags, bool partial,
			      uint32_t max_len, int64_t *stop_vcn)
{
	int64_t lowest = sle64(a->u.nr.lowest_vcn), stop;
	uint32_t hdr = attr_nonresident_header_size(flags), name_bytes = 2u * a->name_length;
	uint32_t mpo = ALIGN8(hdr + name_bytes), new_len;
	struct ntfs_attr_record *n;
	ssize_t size;
	int err;

	if (!a->non_resident)
		return ntfs_fail(EINVAL, "attribute 0x%x is resident: no mapping pairs",
				 le32(a->type));
	if (max_len < mpo + 1)
		return -E2BIG;
	size = ntfs_mapping_pairs_size(rl, lowest, partial ? max_len - mpo : 0, &stop);
	if (size < 0)
		return (int)size;
	if (mpo + (size_t)size > max_len ||
	    (partial && stop == lowest && lowest < ntfs_rl_end_vcn(rl)))
		return -E2BIG;
	new_len = ALIGN8(mpo + (uint32_t)size);
	n = calloc(1, new_len > sizeof(*n) ? new_len : sizeof(*n));
	if (!n)
		return -ENOMEM;
	/* The fields every non-resident header has, then the optional one. */
	memcpy(n, a, NTFS_ATTR_NONRESIDENT_HEADER_SIZE);
	if (hdr == NTFS_ATTR_NONRESIDENT_COMPRESSED_HEADER_SIZE &&
	    attr_flags_need_compressed_size(le16(a->flags)) &&
	    le16(a->u.nr.mapping_pairs_offset) >= NTFS_ATTR_NONRESIDENT_COMPRESSED_HEADER_SIZE)
		n->u.nr.compressed_size = a->u.nr.compressed_size;
	if (name_bytes)
		memcpy((uint8_t *)n + hdr, ntfs_attr_name(a), name_bytes);
	size = ntfs_mapping_pairs_build(rl, lowest, (uint8_t *)n + mpo, (size_t)size, NULL);
	if (size < 0) {
		free(n);
		return (int)size;
	}
	n->length = cpu_to_le32(new_len);
	n->name_offset = cpu_to_le16((uint16_t)hdr);
	n->flags = cpu_to_le16(flags);
	n->u.nr.mapping_pairs_offset = cpu_to_le16((uint16_t)mpo);
	n->u.nr.highest_vcn = cpu_to_le64((uint64_t)(stop - 1));
	err = ntfs_attr_record_resize(rec, a, new_len);
	if (!err)
		memcpy(a, n, new_len);
	free(n);
	if (!err && stop_vcn)
		*stop_vcn = stop;
	return err;
}

int ntfs_attr_record_set_runlist(uint8_t *rec, struct ntfs_attr_record *a,
				 const struct ntfs_runlist *rl, uint16_t flags, bool partial,
				 int64_t *stop_vcn)
{
	return attr_record_set_runlist(rec, a, rl, flags, partial,
				  le32(a->length) + ntfs_mft_record_free_space(rec), stop_vcn);
}

/* ---- helpers on a whole attribute ---- */

/* The compression unit a plain attribute gets when it becomes sparse: 16
 * clusters, the granularity Windows allocates sparse files in and what
 * ntfs-3g writes; none where compression is impossible (clusters > 4 KiB).
 * Readers use it only for compressed attributes. */
uint8_t attr_sparse_compression_unit(const struct ntfs_geometry *g)
{
	return g->cluster_size <= 4096 ? 4 : 0;
}

/* The runlist is what the header promises and lies inside the volume. */
int attr_runlist_check(struct ntfs_attr *na, const struct ntfs_runlist *rl)
{
	const struct ntfs_geometry *g = &na->ni->vol->geo;
	int64_t vcn = 0;
	char what[160];
	size_t i;

	for (i = 0; i < rl->count; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		if (r->vcn != vcn || r->length <= 0 ||
		    (r->lcn != LCN_HOLE &&
		     (r->lcn < 0 || (uint64_t)r->lcn >= g->nr_clusters ||
		      (uint64_t)r->length > g->nr_clusters - (uint64_t)r->lcn)))
			return ntfs_fail(EINVAL, "%s: refusing to write an invalid runlist (run %zu: "
					 "vcn %lld, lcn %lld, %lld clusters)",
					 ntfs_attr_describe(na, what, sizeof(what)), i,
					 (long long)r->vcn, (long long)r->lcn,
					 (long long)r->length);
		vcn += r->length;
	}
	if ((uint64_t)vcn > (UINT64_MAX >> g->cluster_size_bits) >> 1)
		return ntfs_fail(EINVAL, "%s: runlist of %lld clusters is too large",
				 ntfs_attr_describe(na, what, sizeof(what)), (long long)vcn);
	return 0;
}

/* OR bits into the file attributes of $STANDARD_INFORMATION and of every
 * $FILE_NAME held (resident) in record rec. */
void attr_record_add_file_attributes(uint8_t *rec, uint32_t bits)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a)) {
		uint32_t type = le32(a->type), len, off;
		uint8_t *v;

		if (a->non_resident)
			continue;
		if (type == AT_STANDARD_INFORMATION)
			off = offsetof(struct ntfs_standard_information, file_attributes);
		else if (type == AT_FILE_NAME)
			off = offsetof(struct ntfs_file_name, file_attributes);
		else
			continue;
		v = (uint8_t *)ntfs_attr_value(a, &len);
		if (len >= off + 4u) {
			uint32_t fa = get_le32(v + off) | bits, le = cpu_to_le32(fa);

			memcpy(v + off, &le, sizeof(le));
		}
	}
}

/* After writing record rec_no (under mft_lock): keep the inode's cached base
 * record and flags in step with the disk. */
static void inode_refresh(struct ntfs_inode *ni, uint64_t rec_no, const uint8_t *buf,
			  uint32_t added_file_attributes)
{
	if (rec_no == ni->mft_no)
		memcpy(ni->mrec, buf, ni->vol->geo.mft_record_size);
	ni->file_attributes |= added_file_attributes;
}

/* Set FILE_ATTR_SPARSE_FILE in the base record when the attribute lives in
 * an extension record (under mft_lock). */
static int base_record_add_file_attributes(struct ntfs_inode *ni, uint32_t bits)
{
	struct ntfs_volume *vol = ni->vol;
	uint8_t *buf = malloc(vol->geo.mft_record_size);
	int err;

	if (!buf)
		return -ENOMEM;
	err = ntfs_mft_record_read(vol, ni->mft_no, buf);
	if (!err) {
		attr_record_add_file_attributes(buf, bits);
		err = ntfs_mft_record_write(vol, ni->mft_no, buf);
	}
	if (!err)
		inode_refresh(ni, ni->mft_no, buf, bits);
	free(buf);
	return err;
}

void attr_record_set_sizes(struct ntfs_attr_record *a, uint64_t allocated, uint64_t data,
			   uint64_t initialized, uint64_t compressed)
{
	a->u.nr.allocated_size = cpu_to_le64(allocated);
	a->u.nr.data_size = cpu_to_le64(data);
	a->u.nr.initialized_size = cpu_to_le64(initialized);
	if (le16(a->u.nr.mapping_pairs_offset) >= NTFS_ATTR_NONRESIDENT_COMPRESSED_HEADER_SIZE &&
	    attr_flags_need_compressed_size(le16(a->flags)))
		a->u.nr.compressed_size = cpu_to_le64(compressed);
}

static int explain_e2big(struct ntfs_attr *na, const uint8_t *buf, const struct ntfs_runlist *rl)
{
	char what[160];

	return ntfs_fail(E2BIG, "%s: %zd bytes of mapping pairs do not fit in its MFT record "
			 "(%u bytes free) for the conversion to non-resident; convert with a "
			 "shorter runlist, then grow it with ntfs_attr_update_mapping_pairs",
			 ntfs_attr_describe(na, what, sizeof(what)),
			 ntfs_mapping_pairs_size(rl, 0, 0, NULL), ntfs_mft_record_free_space(buf));
}

/* Checks on the runlist and flags of a resident-to-non-resident conversion;
 * sets *flags and *cu to what the new header gets. */
static int nonresident_plan(struct ntfs_attr *na, const struct ntfs_runlist *rl,
			    uint64_t allocated_size, uint16_t *flags, uint8_t *cu)
{
	const struct ntfs_geometry *g = &na->ni->vol->geo;
	int64_t end = ntfs_rl_end_vcn(rl);
	char what[160];
	int err;

	ntfs_attr_describe(na, what, sizeof(what));
	err = attr_runlist_check(na, rl);
	if (err)
		return err;
	if ((uint64_t)end << g->cluster_size_bits != allocated_size ||
	    allocated_size < na->data_size)
		return ntfs_fail(EINVAL, "%s: allocated size %llu does not match a runlist of "
				 "%lld clusters holding %llu bytes", what,
				 (unsigned long long)allocated_size, (long long)end,
				 (unsigned long long)na->data_size);
	*flags = na->flags;
	*cu = 0;
	if (*flags & ATTR_IS_COMPRESSED) {
		uint64_t unit = (uint64_t)g->cluster_size << 4;

		if (g->cluster_size > 4096)
			return ntfs_fail(EOPNOTSUPP, "%s: compressed, but NTFS compression needs "
					 "clusters of at most 4096 bytes", what);
		if (allocated_size % unit || ntfs_rl_allocated(rl, 0, end) != end)
			return ntfs_fail(EINVAL, "%s: compressed: the runlist must allocate whole "
					 "%llu-byte compression units without holes", what,
					 (unsigned long long)unit);
		*cu = 4;
	} else if (ntfs_rl_allocated(rl, 0, end) < end || (*flags & ATTR_IS_SPARSE)) {
		*flags |= ATTR_IS_SPARSE;
		*cu = attr_sparse_compression_unit(g);
	}
	return 0;
}

int ntfs_attr_make_nonresident(struct ntfs_attr *na, const struct ntfs_runlist *rl,
			       uint64_t allocated_size)
{
	struct ntfs_volume *vol = na->ni->vol;
	struct ntfs_runlist copy = { 0 };
	struct ntfs_attr_record *a;
	uint8_t name[2 * 255], cu = 0;
	uint16_t flags = 0, instance;
	uint32_t hdr, name_bytes, type, vlen;
	uint64_t rec_no, compressed;
	uint8_t *buf;
	int64_t stop;
	bool gains_sparse;
	char what[160];
	int err;

	ntfs_attr_describe(na, what, sizeof(what));
	if (vol->flags & NTFS_OPEN_READ_ONLY)
		return ntfs_fail(EROFS, "%s: the volume is open read-only", what);
	if (!na->resident)
		return ntfs_fail(EINVAL, "%s: already non-resident", what);
	err = nonresident_plan(na, rl, allocated_size, &flags, &cu);
	if (err)
		return err;
	gains_sparse = (flags & ATTR_IS_SPARSE) && !(na->flags & ATTR_IS_SPARSE);
	compressed = (uint64_t)ntfs_rl_allocated(rl, 0, ntfs_rl_end_vcn(rl))
		     << vol->geo.cluster_size_bits;
	err = ntfs_rl_copy(&copy, rl);
	if (err)
		return err;

	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_attr_load_first_extent(na, &buf, &rec_no, &a);
	if (err)
		goto unlock;
	ntfs_attr_value(a, &vlen);
	if (a->non_resident || vlen != na->data_size) {
		err = ntfs_fail(EIO, "%s: changed on disk under us", what);
		goto out;
	}
	/* The skeleton of the non-resident record: header and name. */
	type = le32(a->type);
	instance = le16(a->instance);
	name_bytes = 2u * a->name_length;
	memcpy(name, ntfs_attr_name(a), name_bytes);
	hdr = attr_nonresident_header_size(flags);
	err = ntfs_attr_record_resize(buf, a, ALIGN8(hdr + name_bytes));
	if (err) {
		err = explain_e2big(na, buf, rl);
		goto out;
	}
	memset(a, 0, ALIGN8(hdr + name_bytes));
	a->type = cpu_to_le32(type);
	a->length = cpu_to_le32(ALIGN8(hdr + name_bytes));
	a->non_resident = 1;
	a->name_length = (uint8_t)(name_bytes / 2);
	a->name_offset = cpu_to_le16((uint16_t)hdr);
	a->flags = cpu_to_le16(flags);
	a->instance = cpu_to_le16(instance);
	a->u.nr.lowest_vcn = 0;
	a->u.nr.highest_vcn = cpu_to_le64((uint64_t)-1);
	a->u.nr.mapping_pairs_offset = cpu_to_le16((uint16_t)ALIGN8(hdr + name_bytes));
	a->u.nr.compression_unit = cu;
	memcpy((uint8_t *)a + hdr, name, name_bytes);
	/* The buffer is a scratch copy: a failure below discards it. */
	err = ntfs_attr_record_set_runlist(buf, a, &copy, flags, false, &stop);
	if (err == -E2BIG)
		err = explain_e2big(na, buf, rl);
	if (err)
		goto out;
	attr_record_set_sizes(a, allocated_size, na->data_size, na->data_size, compressed);
	if (gains_sparse && rec_no == na->ni->mft_no)
		attr_record_add_file_attributes(buf, FILE_ATTR_SPARSE_FILE);
	err = ntfs_mft_record_write(vol, rec_no, buf);
	if (err)
		goto out;
	inode_refresh(na->ni, rec_no, buf, rec_no == na->ni->mft_no && gains_sparse ?
				FILE_ATTR_SPARSE_FILE : 0);
	free(na->value);
	na->value = NULL;
	na->resident = false;
	na->flags = flags;
	ntfs_runlist_free(&na->rl);
	na->rl = copy;
	copy = (struct ntfs_runlist){ 0 };
	na->initialized_size = na->data_size;
	na->allocated_size = allocated_size;
	na->compressed_size = attr_flags_need_compressed_size(flags) ? compressed : 0;
	if (flags & ATTR_IS_COMPRESSED) {
		na->compression_unit = cu;
		na->compression_block_size = vol->geo.cluster_size << cu;
	}
	if (gains_sparse && rec_no != na->ni->mft_no)
		err = base_record_add_file_attributes(na->ni, FILE_ATTR_SPARSE_FILE);
out:
	free(buf);
unlock:
	pthread_mutex_unlock(&vol->mft_lock);
	ntfs_runlist_free(&copy);
	return err;
}
