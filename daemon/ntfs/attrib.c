/*
 * attrib.c — opening attributes and reading their values.
 *
 * Invariants: see attrib.h.  Extents are collected from every record of the
 * inode, sorted by lowest_vcn and decoded in order, so the merged runlist is
 * contiguous from vcn 0 and ends exactly at allocated_size.  Reads of
 * compressed attributes work a whole compression unit at a time: an all-hole
 * unit is zeroes, a fully allocated unit is stored raw, anything else is
 * LZNT1 data in the unit's leading clusters.
 */
#include "attrib.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"
#include "error.h"
#include "inode.h"
#include "lznt1.h"
#include "mft.h"
#include "unistr.h"
#include "volume.h"

const char *ntfs_attr_describe(const struct ntfs_attr *na, char *buf, size_t len)
{
	char *name = NULL;

	if (na->name_len && ntfs_utf16_to_utf8(na->name, na->name_len, &name))
		name = NULL;
	snprintf(buf, len, "MFT record %llu attribute 0x%x%s%s",
		 (unsigned long long)na->ni->mft_no, na->type, name ? ":" : "",
		 name ? name : "");
	free(name);
	return buf;
}

struct extent {
	int64_t lowest_vcn;
	struct ntfs_attr_record *a;     /* a private copy of the record */
};

struct collect {
	uint32_t type;
	const ntfschar *name;
	uint32_t name_len;
	bool base_only;
	uint64_t base_no;
	struct extent *ext;
	size_t count, cap;
};

static bool attr_name_matches(const struct ntfs_attr_record *a, const ntfschar *name,
			      uint32_t name_len)
{
	if (a->name_length != name_len)
		return false;
	return !name_len || !memcmp(ntfs_attr_name(a), name, name_len * sizeof(ntfschar));
}

static int collect_extent(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	struct collect *c = ctx;
	struct ntfs_attr_record *copy;
	uint32_t len = le32(a->length);

	if (le32(a->type) != c->type || !attr_name_matches(a, c->name, c->name_len))
		return 0;
	if (c->base_only && mft_no != c->base_no)
		return 0;
	if (c->count == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4;
		struct extent *e = realloc(c->ext, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		c->ext = e;
		c->cap = cap;
	}
	/* Copies are at least a full header long so every field is readable. */
	copy = calloc(1, len > sizeof(*copy) ? len : sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, a, len);
	c->ext[c->count].lowest_vcn = a->non_resident ? sle64(a->u.nr.lowest_vcn) : 0;
	c->ext[c->count].a = copy;
	c->count++;
	return 0;
}

static int extent_cmp(const void *x, const void *y)
{
	const struct extent *a = x, *b = y;

	return (a->lowest_vcn > b->lowest_vcn) - (a->lowest_vcn < b->lowest_vcn);
}

static int attr_init_header(struct ntfs_attr *na, const struct ntfs_attr_record *a)
{
	const struct ntfs_geometry *g = &na->ni->vol->geo;
	char what[160];

	na->flags = le16(a->flags);
	na->resident = !a->non_resident;
	if (na->resident) {
		uint32_t len;
		const uint8_t *v = ntfs_attr_value(a, &len);

		na->value = malloc(len ? len : 1);
		if (!na->value)
			return -ENOMEM;
		memcpy(na->value, v, len);
		na->data_size = na->initialized_size = len;
		na->allocated_size = (len + 7u) & ~7u;
		return 0;
	}
	na->data_size = le64(a->u.nr.data_size);
	na->initialized_size = le64(a->u.nr.initialized_size);
	na->allocated_size = le64(a->u.nr.allocated_size);
	ntfs_attr_describe(na, what, sizeof(what));
	if (na->initialized_size > na->data_size || na->data_size > na->allocated_size ||
	    na->allocated_size & (g->cluster_size - 1))
		return ntfs_fail(EIO, "%s: inconsistent sizes (data %llu, initialized %llu, "
				 "allocated %llu)", what, (unsigned long long)na->data_size,
				 (unsigned long long)na->initialized_size,
				 (unsigned long long)na->allocated_size);
	if (na->flags & (ATTR_IS_COMPRESSED | ATTR_IS_SPARSE)) {
		if (le16(a->u.nr.mapping_pairs_offset) < NTFS_ATTR_NONRESIDENT_COMPRESSED_HEADER_SIZE)
			return ntfs_fail(EIO, "%s: compressed or sparse but the header has no "
					 "compressed size", what);
		na->compressed_size = le64(a->u.nr.compressed_size);
	}
	if (na->flags & ATTR_IS_COMPRESSED) {
		na->compression_unit = a->u.nr.compression_unit;
		/* A unit must hold whole 4096-byte LZNT1 chunks. */
		if (na->compression_unit == 0 || na->compression_unit > 8 ||
		    (g->cluster_size << na->compression_unit) % LZNT1_CHUNK_SIZE)
			return ntfs_fail(EIO, "%s: compressed with an invalid compression unit "
					 "of 2^%u clusters", what, na->compression_unit);
		na->compression_block_size = g->cluster_size << na->compression_unit;
	}
	return 0;
}

static int attr_build(struct ntfs_attr *na, struct collect *c)
{
	const struct ntfs_geometry *g = &na->ni->vol->geo;
	char what[160];
	size_t i;
	int err;

	qsort(c->ext, c->count, sizeof(*c->ext), extent_cmp);
	err = attr_init_header(na, c->ext[0].a);
	if (err)
		return err;
	ntfs_attr_describe(na, what, sizeof(what));
	if (na->resident) {
		if (c->count > 1)
			return ntfs_fail(EIO, "%s: resident but has %zu extents", what, c->count);
		return 0;
	}
	for (i = 0; i < c->count; i++) {
		const struct ntfs_attr_record *a = c->ext[i].a;
		uint32_t mpo = le16(a->u.nr.mapping_pairs_offset);

		if (!a->non_resident)
			return ntfs_fail(EIO, "%s: mixes resident and non-resident extents", what);
		err = ntfs_mapping_pairs_decode(&na->rl, (const uint8_t *)a + mpo,
						le32(a->length) - mpo, c->ext[i].lowest_vcn,
						sle64(a->u.nr.highest_vcn), g->nr_clusters, what);
		if (err)
			return err;
	}
	if ((uint64_t)ntfs_rl_end_vcn(&na->rl) > (UINT64_MAX >> g->cluster_size_bits))
		return ntfs_fail(EIO, "%s: runlist of %llu clusters is larger than any volume",
				 what, (unsigned long long)ntfs_rl_end_vcn(&na->rl));
	if (!c->base_only &&
	    (uint64_t)ntfs_rl_end_vcn(&na->rl) << g->cluster_size_bits != na->allocated_size)
		return ntfs_fail(EIO, "%s: runlist covers %llu clusters but the allocated size "
				 "is %llu bytes", what,
				 (unsigned long long)ntfs_rl_end_vcn(&na->rl),
				 (unsigned long long)na->allocated_size);
	return 0;
}

static struct ntfs_attr *attr_alloc(struct ntfs_inode *ni, uint32_t type,
				    const ntfschar *name, uint32_t name_len)
{
	struct ntfs_attr *na = calloc(1, sizeof(*na));

	if (!na)
		return NULL;
	na->ni = ni;
	na->type = type;
	if (name_len) {
		na->name = malloc(name_len * sizeof(ntfschar));
		if (!na->name) {
			free(na);
			return NULL;
		}
		memcpy(na->name, name, name_len * sizeof(ntfschar));
		na->name_len = name_len;
	}
	return na;
}

static int attr_open_common(struct ntfs_inode *ni, uint32_t type, const ntfschar *name,
			    uint32_t name_len, bool base_only, struct ntfs_attr **out)
{
	struct collect c = { .type = type, .name = name, .name_len = name_len,
			     .base_only = base_only, .base_no = ni->mft_no };
	struct ntfs_attr *na;
	size_t i;
	int err;

	err = ntfs_inode_foreach_attr(ni, collect_extent, &c);
	if (!err && !c.count)
		err = -ENOENT;
	na = err ? NULL : attr_alloc(ni, type, name, name_len);
	if (!err && !na)
		err = -ENOMEM;
	if (!err)
		err = attr_build(na, &c);
	for (i = 0; i < c.count; i++)
		free(c.ext[i].a);
	free(c.ext);
	if (err) {
		ntfs_attr_close(na);
		return err;
	}
	*out = na;
	return 0;
}

int ntfs_attr_open(struct ntfs_inode *ni, uint32_t type, const ntfschar *name,
		   uint32_t name_len, struct ntfs_attr **out)
{
	return attr_open_common(ni, type, name, name_len, false, out);
}

int ntfs_attr_open_base_only(struct ntfs_inode *ni, uint32_t type, struct ntfs_attr **out)
{
	struct ntfs_inode base = *ni;

	/* Look only in the base record: hide the attribute list. */
	base.attr_list = NULL;
	base.attr_list_size = 0;
	int err = attr_open_common(&base, type, NULL, 0, true, out);

	if (!err)
		(*out)->ni = ni;
	return err;
}

int ntfs_attr_open_record(struct ntfs_inode *ni, const struct ntfs_attr_record *a,
			  struct ntfs_attr **out)
{
	struct extent e = { .lowest_vcn = 0, .a = (struct ntfs_attr_record *)a };
	struct collect c = { .ext = &e, .count = 1, .cap = 1 };
	struct ntfs_attr *na = attr_alloc(ni, le32(a->type), NULL, 0);
	int err;

	if (!na)
		return -ENOMEM;
	if (a->non_resident && sle64(a->u.nr.lowest_vcn) != 0) {
		ntfs_attr_close(na);
		return ntfs_fail(EIO, "MFT record %llu: attribute 0x%x does not start at vcn 0",
				 (unsigned long long)ni->mft_no, le32(a->type));
	}
	err = attr_build(na, &c);
	if (err) {
		ntfs_attr_close(na);
		return err;
	}
	*out = na;
	return 0;
}

int ntfs_attr_clone(const struct ntfs_attr *na, struct ntfs_attr **out)
{
	struct ntfs_attr *c = attr_alloc(na->ni, na->type, na->name, na->name_len);

	if (!c)
		return -ENOMEM;
	c->flags = na->flags;
	c->resident = na->resident;
	c->data_size = na->data_size;
	c->initialized_size = na->initialized_size;
	c->allocated_size = na->allocated_size;
	c->compressed_size = na->compressed_size;
	c->compression_block_size = na->compression_block_size;
	c->compression_unit = na->compression_unit;
	if (na->value) {
		c->value = malloc(na->data_size ? na->data_size : 1);
		if (!c->value) {
			ntfs_attr_close(c);
			return -ENOMEM;
		}
		memcpy(c->value, na->value, na->data_size);
	}
	if (na->rl.count && ntfs_rl_copy(&c->rl, &na->rl)) {
		ntfs_attr_close(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void ntfs_attr_close(struct ntfs_attr *na)
{
	if (!na)
		return;
	ntfs_runlist_free(&na->rl);
	free(na->value);
	free(na->name);
	free(na);
}

/* ---- reading ---- */

/* Read [pos, pos + len) of clusters mapped by the runlist, holes as zeroes.
 * The range must lie below the runlist's end. */
static int read_mapped(struct ntfs_attr *na, uint64_t pos, size_t len, uint8_t *buf)
{
	struct ntfs_volume *vol = na->ni->vol;
	uint32_t bits = vol->geo.cluster_size_bits;
	char what[160];

	while (len) {
		int64_t vcn = (int64_t)(pos >> bits), run;
		uint64_t ofs = pos & (vol->geo.cluster_size - 1), avail;
		int64_t lcn = ntfs_rl_vcn_to_lcn(&na->rl, vcn, &run);
		size_t chunk;
		int err;

		if (lcn == LCN_ENOENT)
			return ntfs_fail(EIO, "%s: vcn %lld is not mapped by the runlist",
					 ntfs_attr_describe(na, what, sizeof(what)), (long long)vcn);
		avail = (uint64_t)run > (UINT64_MAX >> bits) ? UINT64_MAX
							      : ((uint64_t)run << bits) - ofs;
		chunk = avail < len ? (size_t)avail : len;
		if (lcn == LCN_HOLE) {
			memset(buf, 0, chunk);
		} else {
			err = ntfs_device_pread(vol->dev, buf, chunk, ((uint64_t)lcn << bits) + ofs);
			if (err)
				return err;
		}
		buf += chunk;
		pos += chunk;
		len -= chunk;
	}
	return 0;
}

/* Count allocated and hole clusters of the unit starting at vcn. */
static int unit_classify(struct ntfs_attr *na, int64_t vcn, int64_t clusters,
			 int64_t *allocated)
{
	int64_t end = vcn + clusters, run, lcn;
	char what[160];

	*allocated = 0;
	while (vcn < end) {
		lcn = ntfs_rl_vcn_to_lcn(&na->rl, vcn, &run);
		if (lcn == LCN_ENOENT)
			return ntfs_fail(EIO, "%s: compression unit at vcn %lld is not mapped",
					 ntfs_attr_describe(na, what, sizeof(what)), (long long)vcn);
		if (run > end - vcn)
			run = end - vcn;
		if (lcn >= 0)
			*allocated += run;
		vcn += run;
	}
	return 0;
}

/* Produce the whole uncompressed unit number `unit` into ubuf. */
static int read_compressed_unit(struct ntfs_attr *na, uint64_t unit, uint8_t *ubuf,
				uint8_t *cbuf)
{
	struct ntfs_volume *vol = na->ni->vol;
	uint32_t bits = vol->geo.cluster_size_bits, cb = na->compression_block_size;
	int64_t clusters = (int64_t)1 << na->compression_unit;
	int64_t vcn = (int64_t)unit * clusters, allocated, v, run, lcn;
	size_t got = 0;
	char what[160];
	int err;

	err = unit_classify(na, vcn, clusters, &allocated);
	if (err)
		return err;
	if (allocated == 0) {
		memset(ubuf, 0, cb);
		return 0;
	}
	if (allocated == clusters)
		return read_mapped(na, unit * cb, cb, ubuf);
	/* Compressed: gather the allocated clusters in vcn order. */
	for (v = vcn; v < vcn + clusters; v += run) {
		lcn = ntfs_rl_vcn_to_lcn(&na->rl, v, &run);
		if (run > vcn + clusters - v)
			run = vcn + clusters - v;
		if (lcn < 0)
			continue;
		err = ntfs_device_pread(vol->dev, cbuf + got, (size_t)run << bits,
					(uint64_t)lcn << bits);
		if (err)
			return err;
		got += (size_t)run << bits;
	}
	if (lznt1_decompress_unit(cbuf, got, ubuf, cb))
		return ntfs_fail(EIO, "%s: corrupted compressed data in the unit at vcn %lld",
				 ntfs_attr_describe(na, what, sizeof(what)), (long long)vcn);
	return 0;
}

static int read_compressed(struct ntfs_attr *na, uint64_t pos, size_t len, uint8_t *buf)
{
	uint32_t cb = na->compression_block_size;
	uint8_t *ubuf = malloc(cb), *cbuf = malloc(cb);
	int err = 0;

	if (!ubuf || !cbuf) {
		err = -ENOMEM;
		goto out;
	}
	while (len && !err) {
		uint64_t unit = pos / cb, ofs = pos % cb;
		size_t chunk = cb - ofs < len ? (size_t)(cb - ofs) : len;

		err = read_compressed_unit(na, unit, ubuf, cbuf);
		if (!err)
			memcpy(buf, ubuf + ofs, chunk);
		buf += chunk;
		pos += chunk;
		len -= chunk;
	}
out:
	free(ubuf);
	free(cbuf);
	return err;
}

ssize_t ntfs_attr_pread(struct ntfs_attr *na, uint64_t pos, size_t count, void *buf)
{
	uint64_t end, init_end;
	char what[160];
	int err = 0;

	if (na->flags & ATTR_IS_ENCRYPTED)
		return ntfs_fail(EACCES, "%s: encrypted; ntfsd cannot read encrypted data",
				 ntfs_attr_describe(na, what, sizeof(what)));
	if (pos >= na->data_size || !count)
		return 0;
	end = na->data_size - pos < count ? na->data_size : pos + count;
	count = (size_t)(end - pos);
	if (na->resident) {
		memcpy(buf, na->value + pos, count);
		return (ssize_t)count;
	}
	init_end = end < na->initialized_size ? end : na->initialized_size;
	if (pos < init_end) {
		if (na->flags & ATTR_IS_COMPRESSED) {
			if (na->ni->vol->geo.cluster_size > 4096)
				return ntfs_fail(EOPNOTSUPP, "%s: compressed with clusters larger "
						 "than 4096 bytes, which NTFS does not define",
						 ntfs_attr_describe(na, what, sizeof(what)));
			err = read_compressed(na, pos, (size_t)(init_end - pos), buf);
		} else {
			err = read_mapped(na, pos, (size_t)(init_end - pos), buf);
		}
		if (err)
			return err;
	}
	if (init_end < end)
		memset((uint8_t *)buf + (pos < init_end ? init_end - pos : 0), 0,
		       (size_t)(end - (pos < init_end ? init_end : pos)));
	return (ssize_t)count;
}
