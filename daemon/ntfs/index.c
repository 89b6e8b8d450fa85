/*
 * index.c — see index.h: lookups and changes of the $I30 B-tree.
 *
 * Invariants (beyond the header's):
 *  - One struct ix per call, built from the directory's base record as it
 *    is on disk when the call starts (ix_open) and thrown away at its end:
 *    nothing of it outlives a failed call.  Its root node is the
 *    in-memory copy of $INDEX_ROOT, which every change writes through at
 *    once; blocks are read fresh from disk by every descent, so a descent
 *    after a change sees that change.
 *  - A node in memory is its list of entries, each a private copy of the
 *    entry's bytes (length, key, and the child VCN when INDEX_ENTRY_NODE),
 *    END last; a node is rebuilt from that list whenever it is written.
 *    Entries are moved between lists, never shared.
 *  - Block numbers: block i of $INDEX_ALLOCATION starts at byte i * bs and
 *    has VCN (i * bs) >> vcn_bits, the VCN unit being the cluster when
 *    blocks are at least a cluster, 512 bytes otherwise (as in dir.c).
 *  - A new block is first reserved in memory (a block number whose bit is
 *    clear on disk and that no other reservation holds; when none is free
 *    the allocation grows in memory, with clusters taken from lcnalloc.c
 *    at once), then written, then committed: $INDEX_ALLOCATION's new
 *    sizes and runlist to the record (if it grew), its bit in $BITMAP:$I30
 *    to disk, and only then is it referenced by its parent.  Clusters
 *    taken for a growth that was never committed are freed when the call
 *    ends.
 */
#include "index.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "collate.h"
#include "error.h"
#include "inode.h"
#include "lcnalloc.h"
#include "le.h"
#include "mft.h"
#include "mst.h"
#include "runlist.h"
#include "volume.h"

#define IX_MAX_DEPTH 32
#define IX_MAX_BLOCKS (1u << 24)
#define IX_ALIGN8(x) (((x) + 7u) & ~7u)
#define IX_ROOT_HDR ((uint32_t)offsetof(struct ntfs_index_root, index))   /* 16 */
#define IX_BLOCK_HDR ((uint32_t)offsetof(struct ntfs_index_block, index)) /* 24 */
#define IE_HDR ((uint32_t)sizeof(struct ntfs_index_entry))               /* 16 */
#define IX_MAX_RESERVED 8
/* Bytes of the base record a root growing with an entry must leave free
 * once the index has an allocation (see commit()). */
#define IX_ROOT_RESERVE 64u

/* "$I30" as stored on disk (UTF-16LE), whatever the host byte order. */
static const union {
	uint8_t bytes[8];
	ntfschar units[4];
} i30 = { .bytes = { '$', 0, 'I', 0, '3', 0, '0', 0 } };
#define I30 i30.units

struct ix_node {
	bool root;
	bool internal;          /* entries carry child VCNs */
	bool is_new;            /* reserved block, never written yet */
	uint64_t vcn;           /* blocks */
	uint8_t *raw;           /* blocks: the block as last read or written (fixups off) */
	uint8_t **e;            /* entries (private copies), END last */
	size_t n, cap;
};

struct ix_level {
	struct ix_node *node;
	size_t pos;             /* the entry matched, or whose child is the next level */
};

struct ix {
	struct ntfs_volume *vol;
	struct ntfs_inode *dir;
	uint32_t bs, vcn_bits;
	uint8_t root_hdr[16];   /* the ntfs_index_root fields before its index header */
	struct ix_node root;
	struct ntfs_attr *ia;   /* $INDEX_ALLOCATION:$I30, NULL when absent */
	struct ntfs_attr *bm;   /* $BITMAP:$I30, NULL when absent */
	uint8_t *bits;          /* $BITMAP:$I30 as on disk (bits_size bytes) */
	uint64_t bits_size;
	uint64_t nr_blocks;     /* blocks inside ia's data (in memory; see grown) */
	bool grown;             /* nr_blocks and ia's sizes raised in memory only */
	int64_t fresh_vcn;      /* clusters of ia->rl from here on are uncommitted; -1 none */
	uint64_t reserved[IX_MAX_RESERVED];
	unsigned nreserved;
};

/* ---- entries ---- */

static inline uint16_t ie_len(const uint8_t *e) { return get_le16(e + 8); }
static inline uint16_t ie_flags(const uint8_t *e) { return get_le16(e + 12); }
static inline bool ie_is_end(const uint8_t *e) { return ie_flags(e) & INDEX_ENTRY_END; }
static inline const struct ntfs_file_name *ie_fn(const uint8_t *e)
{
	return (const void *)(e + IE_HDR);
}
static inline const void *ie_name(const uint8_t *e) { return e + IE_HDR + sizeof(struct ntfs_file_name); }
static inline uint32_t ie_name_len(const uint8_t *e) { return ie_fn(e)->file_name_length; }
static inline uint64_t ie_child(const uint8_t *e) { return get_le64(e + ie_len(e) - 8); }

static void put_le64(void *p, uint64_t v)
{
	v = cpu_to_le64(v);
	memcpy(p, &v, sizeof(v));
}

static inline void ie_set_child(uint8_t *e, uint64_t vcn) { put_le64(e + ie_len(e) - 8, vcn); }

/* A copy of e with a child VCN (internal) or without one (leaf). */
static uint8_t *ie_copy_as(const uint8_t *e, bool internal, uint64_t vcn)
{
	bool has = ie_flags(e) & INDEX_ENTRY_NODE;
	uint32_t len = ie_len(e), body = has ? len - 8 : len, nlen = internal ? body + 8 : body;
	uint8_t *c = calloc(1, nlen);

	if (!c)
		return NULL;
	memcpy(c, e, body);
	put_le16(c + 8, (uint16_t)nlen);
	put_le16(c + 12, (uint16_t)(internal ? ie_flags(e) | INDEX_ENTRY_NODE
					     : ie_flags(e) & ~INDEX_ENTRY_NODE));
	if (internal)
		put_le64(c + nlen - 8, has && vcn == UINT64_MAX ? ie_child(e) : vcn);
	return c;
}

static uint8_t *ie_end(bool internal, uint64_t vcn)
{
	uint8_t e[IE_HDR + 8] = { 0 };

	put_le16(e + 8, IE_HDR);
	put_le16(e + 12, INDEX_ENTRY_END);
	return ie_copy_as(e, internal, vcn);
}

/* ---- nodes in memory ---- */

static void node_clear(struct ix_node *n)
{
	for (size_t i = 0; i < n->n; i++)
		free(n->e[i]);
	free(n->e);
	free(n->raw);
	n->e = NULL;
	n->raw = NULL;
	n->n = n->cap = 0;
}

static void node_free(struct ix_node *n)
{
	if (n && !n->root) {
		node_clear(n);
		free(n);
	}
}

/* Insert e (owned from now on, also on failure) at position i. */
static int node_insert(struct ix_node *n, size_t i, uint8_t *e)
{
	if (!e)
		return -ENOMEM;
	if (n->n == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 16;
		uint8_t **ne = realloc(n->e, cap * sizeof(*ne));

		if (!ne) {
			free(e);
			return -ENOMEM;
		}
		n->e = ne;
		n->cap = cap;
	}
	memmove(n->e + i + 1, n->e + i, (n->n - i) * sizeof(*n->e));
	n->e[i] = e;
	n->n++;
	return 0;
}

/* Take entry i out of n (the caller owns it). */
static uint8_t *node_take(struct ix_node *n, size_t i)
{
	uint8_t *e = n->e[i];

	memmove(n->e + i, n->e + i + 1, (n->n - i - 1) * sizeof(*n->e));
	n->n--;
	return e;
}

static uint32_t node_bytes(const struct ix_node *n)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < n->n; i++)
		sum += ie_len(n->e[i]);
	return sum;
}

static int ix_fail_node(const struct ix *ix, const struct ix_node *n, const char *why)
{
	if (n->root)
		return ntfs_fail(EIO, "directory MFT record %llu: index root: %s",
				 (unsigned long long)ix->dir->mft_no, why);
	return ntfs_fail(EIO, "directory MFT record %llu: index block vcn %llu: %s",
			 (unsigned long long)ix->dir->mft_no, (unsigned long long)n->vcn, why);
}

/* Parse and check the index header at hdr (room bytes there) into n. */
static int node_parse(const struct ix *ix, struct ix_node *n, const uint8_t *hdr, uint32_t room)
{
	const struct ntfs_index_header *h = (const void *)hdr;
	uint32_t off, end;

	if (room < sizeof(*h))
		return ix_fail_node(ix, n, "index header does not fit");
	off = le32(h->entries_offset);
	end = le32(h->index_length);
	if (off < sizeof(*h) || off % 8 || end > room || off >= end)
		return ix_fail_node(ix, n, "index header offsets out of range");
	n->internal = h->flags & 1;
	for (;;) {
		const uint8_t *e = hdr + off;
		uint32_t len, klen, flags;
		int err;

		if (end - off < IE_HDR)
			return ix_fail_node(ix, n, "entries run past the node without an end entry");
		len = ie_len(e);
		klen = get_le16(e + 10);
		flags = ie_flags(e);
		if (len < IE_HDR || len % 8 || len > end - off)
			return ix_fail_node(ix, n, "bad index entry length");
		if (!!(flags & INDEX_ENTRY_NODE) != n->internal)
			return ix_fail_node(ix, n, "an entry's child flag disagrees with its node's");
		if (n->internal && len < IE_HDR + 8)
			return ix_fail_node(ix, n, "bad index entry length");
		if (!(flags & INDEX_ENTRY_END)) {
			const struct ntfs_file_name *fn = (const void *)(e + IE_HDR);
			uint32_t keyroom = len - IE_HDR - (n->internal ? 8u : 0u);

			if (klen < sizeof(*fn) || klen > keyroom || fn->file_name_length == 0 ||
			    sizeof(*fn) + 2u * fn->file_name_length > klen)
				return ix_fail_node(ix, n, "bad index entry key length");
		}
		{
			uint8_t *c = malloc(len);

			if (!c)
				return -ENOMEM;
			memcpy(c, e, len);
			err = node_insert(n, n->n, c);
			if (err)
				return err;
		}
		if (flags & INDEX_ENTRY_END)
			return 0;
		off += len;
	}
}

static uint64_t block_to_vcn(const struct ix *ix, uint64_t i)
{
	return (i * ix->bs) >> ix->vcn_bits;
}

static uint64_t vcn_to_block(const struct ix *ix, uint64_t vcn)
{
	return (vcn << ix->vcn_bits) / ix->bs;
}

static bool bit_get(const struct ix *ix, uint64_t i)
{
	return i < ix->bits_size * 8 && (ix->bits[i >> 3] >> (i & 7) & 1);
}

/* Read and check the block at vcn. */
static int node_load(struct ix *ix, uint64_t vcn, struct ix_node **out)
{
	struct ix_node *n = calloc(1, sizeof(*n));
	const struct ntfs_index_block *ib;
	uint64_t i;
	ssize_t got;
	char what[96];
	int err;

	if (!n)
		return -ENOMEM;
	n->vcn = vcn;
	if (!ix->ia) {
		err = ix_fail_node(ix, n, "child pointer in an index without $INDEX_ALLOCATION");
		goto fail;
	}
	i = vcn_to_block(ix, vcn);
	if (vcn >= (UINT64_MAX >> ix->vcn_bits) || (vcn << ix->vcn_bits) % ix->bs ||
	    i >= ix->nr_blocks) {
		err = ix_fail_node(ix, n, "child vcn outside the index allocation");
		goto fail;
	}
	n->raw = malloc(ix->bs);
	if (!n->raw) {
		err = -ENOMEM;
		goto fail;
	}
	got = ntfs_attr_pread(ix->ia, vcn << ix->vcn_bits, ix->bs, n->raw);
	if (got < 0) {
		err = (int)got;
		goto fail;
	}
	ib = (const void *)n->raw;
	if ((uint32_t)got != ix->bs) {
		err = ix_fail_node(ix, n, "short index block");
		goto fail;
	}
	if (le32(ib->magic) != magic_INDX) {
		err = ix_fail_node(ix, n, "bad magic, expected INDX");
		goto fail;
	}
	snprintf(what, sizeof(what), "directory MFT record %llu: index block at vcn",
		 (unsigned long long)ix->dir->mft_no);
	err = ntfs_mst_post_read(n->raw, ix->bs, what, vcn);
	if (err)
		goto fail;
	if (le64(ib->index_block_vcn) != vcn) {
		err = ix_fail_node(ix, n, "block records a different vcn");
		goto fail;
	}
	err = node_parse(ix, n, n->raw + IX_BLOCK_HDR, ix->bs - IX_BLOCK_HDR);
	if (err)
		goto fail;
	*out = n;
	return 0;
fail:
	node_free(n);
	return err;
}

/* ---- the context ---- */

/* The $INDEX_ROOT:$I30 record of the validated record rec, or NULL. */
static struct ntfs_attr_record *record_find_root(uint8_t *rec)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a))
		if (le32(a->type) == AT_INDEX_ROOT && a->name_length == 4 &&
		    !memcmp(ntfs_attr_name(a), I30, 8))
			return (struct ntfs_attr_record *)a;
	return NULL;
}

/* Re-read the directory's base record into its cached copy. */
static int dir_refresh(struct ix *ix)
{
	uint8_t *buf = malloc(ix->vol->geo.mft_record_size);
	int err;

	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&ix->vol->mft_lock);
	err = ntfs_mft_record_read(ix->vol, ix->dir->mft_no, buf);
	if (!err)
		memcpy(ix->dir->mrec, buf, ix->vol->geo.mft_record_size);
	pthread_mutex_unlock(&ix->vol->mft_lock);
	free(buf);
	return err;
}

static int ix_open_alloc(struct ix *ix)
{
	ssize_t got;
	int err;

	err = ntfs_attr_open(ix->dir, AT_INDEX_ALLOCATION, I30, 4, &ix->ia);
	if (err == -ENOENT) {
		ix->ia = NULL;
		ntfs_clear_error();
		if (ix->root.internal)
			return ntfs_fail(EIO, "directory MFT record %llu: large index without "
					 "$INDEX_ALLOCATION", (unsigned long long)ix->dir->mft_no);
		return 0;
	}
	if (err)
		return err;
	if (ix->ia->resident || (ix->ia->flags & (ATTR_COMPRESSION_MASK | ATTR_IS_SPARSE |
						   ATTR_IS_ENCRYPTED)))
		return ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ALLOCATION is resident, "
				 "compressed, sparse or encrypted", (unsigned long long)ix->dir->mft_no);
	if (ix->ia->data_size % ix->bs || ix->ia->data_size / ix->bs > IX_MAX_BLOCKS ||
	    ix->ia->initialized_size != ix->ia->data_size)
		return ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ALLOCATION sizes (data %llu, "
				 "initialized %llu) are not whole %u-byte blocks",
				 (unsigned long long)ix->dir->mft_no,
				 (unsigned long long)ix->ia->data_size,
				 (unsigned long long)ix->ia->initialized_size, ix->bs);
	ix->nr_blocks = ix->ia->data_size / ix->bs;
	err = ntfs_attr_open(ix->dir, AT_BITMAP, I30, 4, &ix->bm);
	if (err == -ENOENT)
		return ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ALLOCATION without "
				 "$BITMAP", (unsigned long long)ix->dir->mft_no);
	if (err)
		return err;
	if (ix->bm->data_size > (1u << 21) ||
	    (!ix->bm->resident && ix->bm->initialized_size != ix->bm->data_size) ||
	    (ix->bm->flags & (ATTR_COMPRESSION_MASK | ATTR_IS_SPARSE | ATTR_IS_ENCRYPTED)))
		return ntfs_fail(EIO, "directory MFT record %llu: $BITMAP:$I30 of %llu bytes is "
				 "implausible", (unsigned long long)ix->dir->mft_no,
				 (unsigned long long)ix->bm->data_size);
	ix->bits_size = ix->bm->data_size;
	ix->bits = calloc(1, (size_t)ix->bits_size + 1);
	if (!ix->bits)
		return -ENOMEM;
	got = ntfs_attr_pread(ix->bm, 0, (size_t)ix->bits_size, ix->bits);
	if (got < 0)
		return (int)got;
	if ((uint64_t)got != ix->bits_size)
		return ntfs_fail(EIO, "directory MFT record %llu: short $BITMAP:$I30",
				 (unsigned long long)ix->dir->mft_no);
	return 0;
}

static void ix_close(struct ix *ix)
{
	if (ix->ia && ix->fresh_vcn >= 0 && ntfs_rl_end_vcn(&ix->ia->rl) > ix->fresh_vcn) {
		char msg[512];

		/* clusters for a growth that never reached the record */
		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		if (ntfs_cluster_free_from_rl(ix->vol, &ix->ia->rl, ix->fresh_vcn))
			ntfs_error("directory MFT record %llu: clusters taken for its index could "
				   "not be given back (leaked): %s; before that: %s",
				   (unsigned long long)ix->dir->mft_no, ntfs_last_error(), msg);
		else
			ntfs_error("%s", msg);
	}
	ntfs_attr_close(ix->ia);
	ntfs_attr_close(ix->bm);
	free(ix->bits);
	ix->root.root = false;
	node_clear(&ix->root);
}

static int ix_open(struct ntfs_inode *dir, struct ix *ix)
{
	struct ntfs_volume *vol = dir->vol;
	const struct ntfs_geometry *g = &vol->geo;
	const struct ntfs_index_root *ir;
	const struct ntfs_attr_record *a;
	uint32_t vlen;
	const uint8_t *v;
	int err;

	memset(ix, 0, sizeof(*ix));
	ix->vol = vol;
	ix->dir = dir;
	ix->fresh_vcn = -1;
	ix->root.root = true;
	if (!ntfs_inode_is_dir(dir))
		return ntfs_fail(ENOTDIR, "MFT record %llu: not a directory",
				 (unsigned long long)dir->mft_no);
	err = dir_refresh(ix);
	if (err)
		return err;
	a = record_find_root(dir->mrec);
	if (!a)
		return dir->attr_list
			       ? ntfs_fail(EOPNOTSUPP, "directory MFT record %llu: $INDEX_ROOT is not "
					   "in the base record; changing such an index is not "
					   "implemented", (unsigned long long)dir->mft_no)
			       : ntfs_fail(EIO, "directory MFT record %llu: no $I30 index root",
					   (unsigned long long)dir->mft_no);
	if (a->non_resident)
		return ntfs_fail(EIO, "directory MFT record %llu: malformed $INDEX_ROOT",
				 (unsigned long long)dir->mft_no);
	v = ntfs_attr_value(a, &vlen);
	if (vlen < sizeof(*ir))
		return ntfs_fail(EIO, "directory MFT record %llu: malformed $INDEX_ROOT",
				 (unsigned long long)dir->mft_no);
	ir = (const void *)v;
	ix->bs = le32(ir->index_block_size);
	if (le32(ir->type) != AT_FILE_NAME || le32(ir->collation_rule) != COLLATION_FILE_NAME ||
	    ix->bs < NTFS_BLOCK_SIZE || ix->bs > 65536 || (ix->bs & (ix->bs - 1)))
		return ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ROOT is not a file name "
				 "index or has a bad block size %u", (unsigned long long)dir->mft_no,
				 ix->bs);
	ix->vcn_bits = ix->bs >= g->cluster_size ? g->cluster_size_bits : NTFS_BLOCK_SIZE_BITS;
	memcpy(ix->root_hdr, v, sizeof(ix->root_hdr));
	err = node_parse(ix, &ix->root, v + IX_ROOT_HDR, vlen - IX_ROOT_HDR);
	if (!err)
		err = ix_open_alloc(ix);
	return err;
}

/* ---- writing nodes ---- */

/* Write the root: one write of the base record, -E2BIG when it has no
 * room for it, or would leave less than `reserve` bytes of the record free
 * (nothing written then). */
static int root_write_reserve(struct ix *ix, uint32_t reserve)
{
	struct ntfs_volume *vol = ix->vol;
	struct ix_node *n = &ix->root;
	uint32_t sum = node_bytes(n), vlen = IX_ROOT_HDR + 16 + sum, voff;
	struct ntfs_index_header *h;
	struct ntfs_attr_record *a;
	uint8_t *rec, *v;
	int err;

	rec = malloc(vol->geo.mft_record_size);
	if (!rec)
		return -ENOMEM;
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, ix->dir->mft_no, rec);
	if (err)
		goto out;
	a = record_find_root(rec);
	if (!a || a->non_resident) {
		err = ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ROOT vanished",
				(unsigned long long)ix->dir->mft_no);
		goto out;
	}
	voff = le16(a->u.r.value_offset);
	if (IX_ALIGN8(voff + vlen) > le32(a->length) &&
	    IX_ALIGN8(voff + vlen) - le32(a->length) + reserve > ntfs_mft_record_free_space(rec)) {
		err = -E2BIG;
		goto out;
	}
	err = ntfs_attr_record_resize(rec, a, IX_ALIGN8(voff + vlen));
	if (err)
		goto out;
	a->u.r.value_length = cpu_to_le32(vlen);
	v = (uint8_t *)a + voff;
	memcpy(v, ix->root_hdr, IX_ROOT_HDR);
	h = (void *)(v + IX_ROOT_HDR);
	h->entries_offset = cpu_to_le32(16);
	h->index_length = cpu_to_le32(16 + sum);
	h->allocated_size = cpu_to_le32(16 + sum);
	h->flags = n->internal ? 1 : 0;
	memset(h->reserved, 0, sizeof(h->reserved));
	v += IX_ROOT_HDR + 16;
	for (size_t i = 0; i < n->n; i++) {
		memcpy(v, n->e[i], ie_len(n->e[i]));
		v += ie_len(n->e[i]);
	}
	err = ntfs_mft_record_write(vol, ix->dir->mft_no, rec);
	if (!err)
		memcpy(ix->dir->mrec, rec, vol->geo.mft_record_size);
out:
	pthread_mutex_unlock(&vol->mft_lock);
	free(rec);
	return err;
}

static int root_write(struct ix *ix)
{
	return root_write_reserve(ix, 0);
}

/* Where a new block's entries start, from its index header. */
static uint32_t block_entries_offset(const struct ix *ix)
{
	return IX_ALIGN8(16u + 2u * (ix->bs / NTFS_BLOCK_SIZE + 1));
}

static bool block_fits(const struct ix *ix, const struct ix_node *n)
{
	uint32_t eo = n->raw ? le32(((const struct ntfs_index_block *)n->raw)->index.entries_offset)
			     : block_entries_offset(ix);

	return IX_BLOCK_HDR + eo + node_bytes(n) <= ix->bs;
}

/* Lay block n out in n->raw (allocated for a new block): header, entries,
 * zeroes after them.  The caller checked block_fits(). */
static int block_build(struct ix *ix, struct ix_node *n)
{
	struct ntfs_index_block *ib;
	uint32_t eo, len;
	uint8_t *p;

	if (!n->raw) {
		uint32_t usa_count = ix->bs / NTFS_BLOCK_SIZE + 1;

		n->raw = calloc(1, ix->bs);
		if (!n->raw)
			return -ENOMEM;
		ib = (void *)n->raw;
		ib->magic = cpu_to_le32(magic_INDX);
		ib->usa_ofs = cpu_to_le16(sizeof(*ib));
		ib->usa_count = cpu_to_le16((uint16_t)usa_count);
		ib->index.entries_offset = cpu_to_le32(block_entries_offset(ix));
	}
	ib = (void *)n->raw;
	ib->index_block_vcn = cpu_to_le64(n->vcn);
	eo = le32(ib->index.entries_offset);
	len = eo + node_bytes(n);
	ib->index.index_length = cpu_to_le32(len);
	ib->index.allocated_size = cpu_to_le32(ix->bs - IX_BLOCK_HDR);
	ib->index.flags = n->internal ? 1 : 0;
	p = n->raw + IX_BLOCK_HDR + eo;
	for (size_t i = 0; i < n->n; i++) {
		memcpy(p, n->e[i], ie_len(n->e[i]));
		p += ie_len(n->e[i]);
	}
	memset(p, 0, ix->bs - (size_t)(p - n->raw));
	return 0;
}

/* Write n->raw through na (fixups on a copy). */
static int block_put(struct ix *ix, struct ntfs_attr *na, struct ix_node *n)
{
	uint8_t *copy = malloc(ix->bs);
	int err;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, n->raw, ix->bs);
	err = ntfs_mst_pre_write(copy, ix->bs);
	if (err)
		err = ntfs_fail(EIO, "directory MFT record %llu: index block vcn %llu: cannot "
				"apply fixups", (unsigned long long)ix->dir->mft_no,
				(unsigned long long)n->vcn);
	else
		err = ntfs_attr_pwrite_mapped(na, n->vcn << ix->vcn_bits, ix->bs, copy);
	if (!err) {
		/* keep the update sequence number the disk now has */
		ntfs_mst_post_write(copy, ix->bs);
		memcpy(n->raw, copy, ix->bs);
	}
	free(copy);
	return err;
}

/* $BITMAP:$I30 large enough for bit i (whole 8-byte steps, as NTFS keeps
 * it), new bytes zero. */
static int bitmap_reach(struct ix *ix, uint64_t i)
{
	uint64_t need = (i / 64 + 1) * 8;
	uint8_t *nb;
	int err;

	if (need <= ix->bits_size)
		return 0;
	nb = realloc(ix->bits, (size_t)need + 1);
	if (!nb)
		return -ENOMEM;
	ix->bits = nb;
	memset(nb + ix->bits_size, 0, (size_t)(need - ix->bits_size));
	if (ix->bm->resident) {
		err = ntfs_attr_resize_resident(ix->bm, need);
		if (err == -E2BIG)
			return ntfs_fail(ENOSPC, "directory MFT record %llu: $BITMAP:$I30 must grow to "
					 "%llu bytes and the record has no room; making it "
					 "non-resident is not implemented",
					 (unsigned long long)ix->dir->mft_no, (unsigned long long)need);
		if (!err)
			err = dir_refresh(ix);
	} else {
		if (need > ix->bm->allocated_size)
			return ntfs_fail(ENOSPC, "directory MFT record %llu: $BITMAP:$I30 must grow "
					 "past its allocation (%llu bytes); not implemented",
					 (unsigned long long)ix->dir->mft_no,
					 (unsigned long long)ix->bm->allocated_size);
		/* zeroes on disk first, then the sizes that make them visible */
		err = ntfs_attr_pwrite_mapped(ix->bm, ix->bits_size, (size_t)(need - ix->bits_size),
					      ix->bits + ix->bits_size);
		if (!err)
			err = ntfs_attr_set_sizes(ix->bm, need, need);
	}
	if (err)
		return err;
	ix->bits_size = need;
	return 0;
}

/* Set or clear bit i of $BITMAP:$I30 on disk. */
static int bitmap_change(struct ix *ix, uint64_t i, bool on)
{
	uint8_t old;
	int err = on ? bitmap_reach(ix, i) : 0;

	if (err)
		return err;
	if (!on && i >= ix->bits_size * 8)
		return 0;
	old = ix->bits[i >> 3];
	if (on)
		ix->bits[i >> 3] |= (uint8_t)(1u << (i & 7));
	else
		ix->bits[i >> 3] &= (uint8_t)~(1u << (i & 7));
	if (ix->bm->resident) {
		err = ntfs_attr_write_resident(ix->bm, i >> 3, ix->bits + (i >> 3), 1);
		if (!err)
			err = dir_refresh(ix);
	} else {
		err = ntfs_attr_pwrite_mapped(ix->bm, i >> 3, 1, ix->bits + (i >> 3));
	}
	if (err)
		ix->bits[i >> 3] = old;
	return err;
}

/* Reserve a block for a new node: its VCN in *vcn (see the module
 * comment). */
static int block_reserve(struct ix *ix, uint64_t *vcn)
{
	struct ntfs_volume *vol = ix->vol;
	uint64_t i;

	if (ix->nreserved == IX_MAX_RESERVED)
		return ntfs_fail(EIO, "directory MFT record %llu: too many index blocks reserved "
				 "at once", (unsigned long long)ix->dir->mft_no);
	for (i = 0; i < ix->nr_blocks; i++) {
		bool taken = bit_get(ix, i);

		for (unsigned r = 0; r < ix->nreserved && !taken; r++)
			taken = ix->reserved[r] == i;
		if (!taken)
			break;
	}
	if (i == ix->nr_blocks) {
		uint64_t end = (i + 1) * ix->bs;

		if (i >= IX_MAX_BLOCKS)
			return ntfs_fail(ENOSPC, "directory MFT record %llu: the index has the most "
					 "blocks allowed here", (unsigned long long)ix->dir->mft_no);
		if (end > ix->ia->allocated_size) {
			int64_t have = ntfs_rl_end_vcn(&ix->ia->rl), hint = -1, count;
			const struct ntfs_run *last = ix->ia->rl.count ?
				&ix->ia->rl.runs[ix->ia->rl.count - 1] : NULL;
			int err;

			if (last && last->lcn >= 0)
				hint = last->lcn + last->length;
			count = (int64_t)((end - ix->ia->allocated_size + vol->geo.cluster_size - 1) >>
					  vol->geo.cluster_size_bits);
			err = ntfs_cluster_alloc(vol, count, hint, &ix->ia->rl);
			if (err)
				return err;
			if (ix->fresh_vcn < 0)
				ix->fresh_vcn = have;
			ix->ia->allocated_size = (uint64_t)ntfs_rl_end_vcn(&ix->ia->rl)
						 << vol->geo.cluster_size_bits;
		}
		ix->nr_blocks = i + 1;
		ix->grown = true;
	}
	ix->reserved[ix->nreserved++] = i;
	*vcn = block_to_vcn(ix, i);
	return 0;
}

/* After a new block's contents are on disk: the allocation's growth to the
 * record, then the block's bit. */
static int block_commit(struct ix *ix, struct ix_node *n)
{
	uint64_t i = vcn_to_block(ix, n->vcn);
	int err = 0;

	if (ix->grown) {
		ix->ia->data_size = ix->ia->initialized_size = ix->nr_blocks * ix->bs;
		err = ntfs_attr_update_mapping_pairs(ix->ia);
		if (err)
			return err;
		ix->grown = false;
		ix->fresh_vcn = -1;
	}
	err = bitmap_change(ix, i, true);
	if (err)
		return err;
	for (unsigned r = 0; r < ix->nreserved; r++)
		if (ix->reserved[r] == i) {
			ix->reserved[r] = ix->reserved[--ix->nreserved];
			break;
		}
	n->is_new = false;
	return 0;
}

/* Write block n (which fits), and commit it when new. */
static int block_write(struct ix *ix, struct ix_node *n)
{
	int err = block_build(ix, n);

	if (!err)
		err = block_put(ix, ix->ia, n);
	if (!err && n->is_new)
		err = block_commit(ix, n);
	return err;
}

static struct ix_node *node_new(bool internal)
{
	struct ix_node *n = calloc(1, sizeof(*n));

	if (n) {
		n->internal = internal;
		n->is_new = true;
	}
	return n;
}

/* ---- insertion ---- */

static int commit(struct ix *ix, struct ix_level *path, int lvl);

/* The first move of a full root into a block: $INDEX_ALLOCATION (one
 * block's clusters, holding the root's entries at vcn 0) and $BITMAP come
 * into being in the same record write that leaves the root with only an
 * END entry pointing at that block. */
static int root_convert(struct ix *ix)
{
	struct ntfs_volume *vol = ix->vol;
	uint32_t cbits = vol->geo.cluster_size_bits, rsize = vol->geo.mft_record_size;
	int64_t clusters = ix->bs >= vol->geo.cluster_size ? (int64_t)(ix->bs >> cbits) : 1;
	struct ntfs_runlist rl = { 0 };
	struct ix_node b = { .vcn = 0 };
	struct ntfs_attr tmp;
	struct ntfs_attr_record *a;
	uint8_t *rec = NULL, *end = NULL;
	bool committed = false;
	ssize_t mp;
	int err;

	b.e = ix->root.e;
	b.n = ix->root.n;
	b.cap = ix->root.cap;
	b.internal = false;
	if (!block_fits(ix, &b)) {
		b.e = NULL;
		return ntfs_fail(ENOSPC, "directory MFT record %llu: the index root does not fit "
				 "in one %u-byte index block", (unsigned long long)ix->dir->mft_no,
				 ix->bs);
	}
	end = ie_end(true, 0);
	rec = malloc(rsize);
	if (!end || !rec) {
		err = -ENOMEM;
		goto out;
	}
	err = ntfs_cluster_alloc(vol, clusters, -1, &rl);
	if (err)
		goto out;
	/* the block, written where nothing points yet */
	tmp = (struct ntfs_attr){ .ni = ix->dir, .type = AT_INDEX_ALLOCATION,
				  .name = (ntfschar *)I30, .name_len = 4, .rl = rl };
	err = block_build(ix, &b);
	if (!err)
		err = block_put(ix, &tmp, &b);
	if (err)
		goto out;
	/* the commit: root, $INDEX_ALLOCATION and $BITMAP in one record write */
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, ix->dir->mft_no, rec);
	if (!err) {
		struct ntfs_mft_record *m = (void *)rec;
		uint16_t inst = le16(m->next_attr_instance);
		uint32_t voff, vlen = IX_ROOT_HDR + 16 + IE_HDR + 8, off, ia_len, bm_len;
		struct ntfs_attr_iter it;
		const struct ntfs_attr_record *cur;
		struct ntfs_index_header *h;
		uint8_t *v;

		a = record_find_root(rec);
		if (!a) {
			err = ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ROOT vanished",
					(unsigned long long)ix->dir->mft_no);
			goto unlock;
		}
		voff = le16(a->u.r.value_offset);
		err = ntfs_attr_record_resize(rec, a, IX_ALIGN8(voff + vlen));
		if (err)
			goto nospace;
		a->u.r.value_length = cpu_to_le32(vlen);
		v = (uint8_t *)a + voff;
		memcpy(v, ix->root_hdr, IX_ROOT_HDR);
		h = (void *)(v + IX_ROOT_HDR);
		h->entries_offset = cpu_to_le32(16);
		h->index_length = cpu_to_le32(16 + IE_HDR + 8);
		h->allocated_size = h->index_length;
		h->flags = 1;
		memcpy(v + IX_ROOT_HDR + 16, end, IE_HDR + 8);
		/* $INDEX_ALLOCATION:$I30 and $BITMAP:$I30 go where their types
		 * sort: before the first attribute of a higher type */
		mp = ntfs_mapping_pairs_size(&rl, 0, 0, NULL);
		if (mp < 0) {
			err = (int)mp;
			goto unlock;
		}
		ia_len = IX_ALIGN8(NTFS_ATTR_NONRESIDENT_HEADER_SIZE + 8u + (uint32_t)mp);
		bm_len = IX_ALIGN8(NTFS_ATTR_RESIDENT_HEADER_SIZE + 8u + 8u);
		for (int pass = 0; pass < 2; pass++) {
			uint32_t type = pass ? AT_BITMAP : AT_INDEX_ALLOCATION;
			struct ntfs_attr_record *na;

			ntfs_attr_iter_init(&it, rec);
			off = le32(m->bytes_in_use) - 8;
			while (ntfs_attr_iter_next(&it, &cur)) {
				if (le32(cur->type) == type && cur->name_length == 4 &&
				    !memcmp(ntfs_attr_name(cur), I30, 8)) {
					err = ntfs_fail(EIO, "directory MFT record %llu: a small "
							"index with a $%s:$I30 already",
							(unsigned long long)ix->dir->mft_no,
							pass ? "BITMAP" : "INDEX_ALLOCATION");
					goto unlock;
				}
				if (le32(cur->type) > type) {
					off = (uint32_t)((const uint8_t *)cur - rec);
					break;
				}
			}
			na = ntfs_attr_record_insert(rec, off, type, pass ? bm_len : ia_len);
			if (!na)
				goto nospace;
			na->name_length = 4;
			na->instance = cpu_to_le16(inst++);
			if (!pass) {
				na->non_resident = 1;
				na->name_offset = cpu_to_le16(NTFS_ATTR_NONRESIDENT_HEADER_SIZE);
				memcpy((uint8_t *)na + NTFS_ATTR_NONRESIDENT_HEADER_SIZE, I30, 8);
				na->u.nr.lowest_vcn = 0;
				na->u.nr.highest_vcn = cpu_to_le64((uint64_t)(clusters - 1));
				na->u.nr.mapping_pairs_offset =
					cpu_to_le16(NTFS_ATTR_NONRESIDENT_HEADER_SIZE + 8);
				na->u.nr.allocated_size = cpu_to_le64((uint64_t)clusters << cbits);
				na->u.nr.data_size = cpu_to_le64(ix->bs);
				na->u.nr.initialized_size = cpu_to_le64(ix->bs);
				mp = ntfs_mapping_pairs_build(&rl, 0, (uint8_t *)na +
							      NTFS_ATTR_NONRESIDENT_HEADER_SIZE + 8,
							      ia_len - NTFS_ATTR_NONRESIDENT_HEADER_SIZE - 8,
							      NULL);
				if (mp < 0) {
					err = (int)mp;
					goto unlock;
				}
			} else {
				na->name_offset = cpu_to_le16(NTFS_ATTR_RESIDENT_HEADER_SIZE);
				memcpy((uint8_t *)na + NTFS_ATTR_RESIDENT_HEADER_SIZE, I30, 8);
				na->u.r.value_length = cpu_to_le32(8);
				na->u.r.value_offset = cpu_to_le16(NTFS_ATTR_RESIDENT_HEADER_SIZE + 8);
				((uint8_t *)na)[NTFS_ATTR_RESIDENT_HEADER_SIZE + 8] = 1;
			}
		}
		m->next_attr_instance = cpu_to_le16(inst);
		err = ntfs_mft_record_write(vol, ix->dir->mft_no, rec);
		committed = !err;
		if (!err)
			memcpy(ix->dir->mrec, rec, rsize);
		goto unlock;
nospace:
		err = ntfs_fail(ENOSPC, "directory MFT record %llu: no room in the record to "
				"add $INDEX_ALLOCATION and $BITMAP to its full index root "
				"(moving attributes to an extension record is not implemented)",
				(unsigned long long)ix->dir->mft_no);
unlock:;
	}
	pthread_mutex_unlock(&vol->mft_lock);
	if (committed) {
		/* the root now holds only the END entry; its old entries are b's */
		ix->root.e = NULL;
		ix->root.n = ix->root.cap = 0;
		ix->root.internal = true;
		err = node_insert(&ix->root, 0, end);
		end = NULL;
		if (!err)
			err = ix_open_alloc(ix);
	}
out:
	if (!committed && rl.count) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		if (ntfs_cluster_free_from_rl(vol, &rl, 0))
			ntfs_error("directory MFT record %llu: clusters for its index could not be "
				   "given back (leaked): %s; before that: %s",
				   (unsigned long long)ix->dir->mft_no, ntfs_last_error(), msg);
		else
			ntfs_error("%s", msg);
	}
	if (committed) {
		/* b's entry array is the root's old one: freed with b */
		node_clear(&b);
	} else {
		free(b.raw);
	}
	ntfs_runlist_free(&rl);
	free(end);
	free(rec);
	return err;
}

/* The root does not fit in its record: all of its entries move down into
 * a new block and the root keeps an END entry pointing there. */
static int root_push_down(struct ix *ix)
{
	struct ix_node *b;
	struct ix_level path[2];
	uint64_t vcn;
	uint8_t *end;
	int err;

	if (!ix->ia)
		return root_convert(ix);
	err = block_reserve(ix, &vcn);
	if (err)
		return err;
	b = node_new(ix->root.internal);
	end = ie_end(true, vcn);
	if (!b || !end) {
		free(b);
		free(end);
		return -ENOMEM;
	}
	b->vcn = vcn;
	b->e = ix->root.e;
	b->n = ix->root.n;
	b->cap = ix->root.cap;
	ix->root.e = NULL;
	ix->root.n = ix->root.cap = 0;
	ix->root.internal = true;
	err = node_insert(&ix->root, 0, end);
	if (!err) {
		path[0] = (struct ix_level){ .node = &ix->root, .pos = 0 };
		path[1] = (struct ix_level){ .node = b, .pos = 0 };
		/* b first (when it splits, its median reaches the root, which
		 * is written then), then the root */
		err = commit(ix, path, 1);
	}
	if (!err)
		err = root_write(ix);
	node_free(b);
	return err;
}

static int split_cow(struct ix *ix, struct ix_level *path, int lvl, struct ix_node *lo,
		     uint8_t *median);

/* Split block path[lvl] around its median (see index.h). */
static int split(struct ix *ix, struct ix_level *path, int lvl)
{
	struct ix_node *n = path[lvl].node, *lo;
	size_t nreal = n->n - 1, m, i;
	uint32_t total = 0, acc = 0;
	uint8_t *median = NULL;
	uint64_t vcn;
	int err;

	if (nreal < 3 || lvl == 0)
		return ix_fail_node(ix, n, "overflows with fewer than 3 entries: cannot split");
	for (i = 0; i < nreal; i++)
		total += ie_len(n->e[i]);
	for (m = 0; m < nreal; m++) {
		acc += ie_len(n->e[m]);
		if (acc > total / 2)
			break;
	}
	if (m < 1)
		m = 1;
	if (m > nreal - 2)
		m = nreal - 2;
	err = block_reserve(ix, &vcn);
	if (err)
		return err;
	lo = node_new(n->internal);
	if (!lo)
		return -ENOMEM;
	lo->vcn = vcn;
	/* lower half, and its END: for an internal node, the median's child */
	for (i = 0; i < m && !err; i++)
		err = node_insert(lo, lo->n, n->e[i]);
	if (!err)
		err = node_insert(lo, lo->n, ie_end(n->internal, n->internal ? ie_child(n->e[m])
									     : 0));
	if (err) {
		/* entries already moved belong to lo now: take them back */
		for (i = 0; i < lo->n && i < m; i++)
			lo->e[i] = NULL;
		node_free(lo);
		return err;
	}
	median = ie_copy_as(n->e[m], true, vcn);
	if (!median) {
		for (i = 0; i < m; i++)
			lo->e[i] = NULL;
		node_free(lo);
		return -ENOMEM;
	}
	/* n keeps the upper half */
	free(n->e[m]);
	memmove(n->e, n->e + m + 1, (n->n - m - 1) * sizeof(*n->e));
	n->n -= m + 1;
	if (n->is_new) {
		/* a block just pushed down from the root: nothing refers to
		 * it yet, so it is written in place, before its parent */
		err = block_write(ix, lo);
		node_free(lo);
		if (!err)
			err = block_write(ix, n);
		if (err) {
			free(median);
			return err;
		}
		err = node_insert(path[lvl - 1].node, path[lvl - 1].pos, median);
		return err ? err : commit(ix, path, lvl - 1);
	}
	return split_cow(ix, path, lvl, lo, median);
}

/* The rest of split() for a block on disk: copy-on-write.  Both halves go
 * to new blocks (lo, and hi taking n's upper half), written and their
 * bits set while nothing refers to them; then one write of the parent
 * (its entry for n pointing at hi, the median before it pointing at lo)
 * switches the tree over, so a crash at any moment leaves the old tree or
 * the new one, never a name lost or listed twice; then n's old block is
 * written empty and its bit cleared (a crash before leaks it).  lo and
 * median are ours. */
static int split_cow(struct ix *ix, struct ix_level *path, int lvl, struct ix_node *lo,
		     uint8_t *median)
{
	struct ix_node *n = path[lvl].node, *hi = NULL;
	uint8_t *pe = path[lvl - 1].node->e[path[lvl - 1].pos];
	uint64_t vcn;
	int err;

	if (ie_child(pe) != n->vcn) {
		err = ix_fail_node(ix, n, "its parent's entry points elsewhere");
		goto fail;
	}
	err = block_reserve(ix, &vcn);
	if (!err && !(hi = node_new(n->internal)))
		err = -ENOMEM;
	if (err)
		goto fail;
	hi->vcn = vcn;
	hi->e = n->e;
	hi->n = n->n;
	hi->cap = n->cap;
	n->e = NULL;
	n->n = n->cap = 0;
	err = block_write(ix, lo);
	if (!err)
		err = block_write(ix, hi);
	if (err)
		goto fail;
	ie_set_child(pe, hi->vcn);
	err = node_insert(path[lvl - 1].node, path[lvl - 1].pos, median);
	median = NULL;
	if (!err)
		err = commit(ix, path, lvl - 1);
	if (err)
		goto fail;
	ntfs_crashpoint("index-split-before-free");
	/* n's old block: unreferenced now, written empty for readers that
	 * ignore $BITMAP:$I30 (The Sleuth Kit), then free */
	n->internal = false;
	err = node_insert(n, 0, ie_end(false, 0));
	if (!err)
		err = block_write(ix, n);
	if (!err)
		err = bitmap_change(ix, vcn_to_block(ix, n->vcn), false);
	node_free(lo);
	node_free(hi);
	/* the split has happened: a block that could not be freed is only
	 * leaked, and no caller may undo what refers to lo and hi now */
	if (err)
		ntfs_clear_error();
	return 0;
fail:
	/* the new blocks that got their bits are unreferenced: free again */
	if (!lo->is_new && bitmap_change(ix, vcn_to_block(ix, lo->vcn), false))
		ntfs_clear_error();
	if (hi && !hi->is_new && bitmap_change(ix, vcn_to_block(ix, hi->vcn), false))
		ntfs_clear_error();
	node_free(lo);
	node_free(hi);
	free(median);
	return err;
}

/* Write path[lvl].node after an entry went in or changed: as it is when it
 * fits, else a split (blocks) or a move down (the root). */
static int commit(struct ix *ix, struct ix_level *path, int lvl)
{
	struct ix_node *n = path[lvl].node;
	int err;

	if (n->root) {
		/* a growing root leaves room for $BITMAP:$I30 and the
		 * allocation's mapping pairs to grow in the same record */
		err = root_write_reserve(ix, ix->ia && n->n > 1 ? IX_ROOT_RESERVE : 0);
		if (err != -E2BIG)
			return err;
		ntfs_clear_error();
		return root_push_down(ix);
	}
	if (block_fits(ix, n))
		return block_write(ix, n);
	return split(ix, path, lvl);
}

/* ---- descent ---- */

static void path_release(struct ix_level *path, int depth)
{
	for (int i = 0; i <= depth; i++)
		node_free(path[i].node);
}

/* Descend from the root towards name.  *depth: the last level filled;
 * *found: path[*depth].pos is the entry named exactly name, else the
 * position where it would go in the leaf path[*depth]. */
static int descend(struct ix *ix, const void *name, uint32_t len, struct ix_level *path,
		   int *depth, bool *found)
{
	struct ix_node *n = &ix->root;
	int d = 0;

	*found = false;
	*depth = -1;
	for (;;) {
		size_t i;

		for (i = 0; i + 1 < n->n; i++) {
			int rc = ntfs_file_name_collate(ix->vol, name, len, ie_name(n->e[i]),
							ie_name_len(n->e[i]));

			if (rc == 0)
				*found = true;
			if (rc <= 0)
				break;
		}
		path[d] = (struct ix_level){ .node = n, .pos = i };
		*depth = d;
		if (*found || !n->internal)
			return 0;
		if (d + 1 >= IX_MAX_DEPTH)
			return ntfs_fail(EIO, "directory MFT record %llu: index deeper than %d levels",
					 (unsigned long long)ix->dir->mft_no, IX_MAX_DEPTH);
		{
			int err = node_load(ix, ie_child(n->e[i]), &n);

			if (err)
				return err;
		}
		d++;
	}
}

/* Insert leaf entry e (a copy is taken) from the top. */
static int ix_insert(struct ix *ix, const uint8_t *e)
{
	struct ix_level path[IX_MAX_DEPTH];
	int depth, err;
	bool found;

	err = descend(ix, ie_name(e), ie_name_len(e), path, &depth, &found);
	if (!err && found)
		err = -EEXIST;
	if (!err) {
		struct ix_node *leaf = path[depth].node;

		err = node_insert(leaf, path[depth].pos, ie_copy_as(e, false, 0));
		if (!err)
			err = commit(ix, path, depth);
	}
	path_release(path, depth);
	return err;
}

/* ---- removal ---- */

/* The empty leaf path[lvl] goes into a sibling leaf with room for the
 * separator between them, with writes in an order no crash loses an
 * entry by: (0) the leaf written empty (what the removal took is gone;
 * the parent still points at an empty leaf, which readers take as a node
 * without entries), (1) the sibling with the separator added (listed
 * twice, in the parent and the sibling, until 2), (2) the parent without
 * the separator and the pointer to the leaf, (3) the leaf's bit cleared
 * (a crash before it leaks the block).  *done false (and nothing written)
 * when there is no such sibling: remove_empty's general way then. */
static int merge_into_sibling(struct ix *ix, struct ix_level *path, int lvl, bool *done)
{
	struct ix_node *b, *p, *sib = NULL;
	size_t j, sep;
	bool right;
	int err;

	*done = false;
	if (lvl < 1)
		return 0;
	b = path[lvl].node;
	p = path[lvl - 1].node;
	j = path[lvl - 1].pos;
	right = !ie_is_end(p->e[j]);
	sep = right ? j : j - 1;
	if (b->internal || (!right && j == 0))
		return 0;
	err = node_load(ix, ie_child(p->e[right ? j + 1 : j - 1]), &sib);
	if (err)
		return err;
	if (sib->internal) {
		node_free(sib);
		return 0;
	}
	err = node_insert(sib, right ? 0 : sib->n - 1, ie_copy_as(p->e[sep], false, 0));
	if (err || !block_fits(ix, sib)) {
		node_free(sib);
		return err;
	}
	*done = true;
	/* 0 */
	err = block_write(ix, b);
	/* 1 */
	if (!err)
		err = block_write(ix, sib);
	node_free(sib);
	if (err)
		return err;
	ntfs_crashpoint("index-merge-before-parent");
	/* 2: right: the separator's successor (child: the sibling) takes its
	 * slot; left: the END entry now points at the sibling */
	if (right) {
		free(node_take(p, j));
	} else {
		uint8_t *x = node_take(p, j - 1);

		ie_set_child(p->e[j - 1], ie_child(x));
		free(x);
	}
	err = p->root ? root_write(ix) : block_write(ix, p);
	/* 3 */
	if (!err)
		err = bitmap_change(ix, vcn_to_block(ix, b->vcn), false);
	return err;
}

/* path[lvl] is a block whose subtree is now empty: into a sibling leaf
 * when one has room (merge_into_sibling), else free it (and parents left
 * with nothing), fixing up the first ancestor that keeps entries; the
 * entry that ancestor loses is inserted again from the top.  That second
 * way has a window: between the ancestor's write and the reinsertion, a
 * crash loses that one entry's name (the file stays, without a name). */
static int remove_empty(struct ix *ix, struct ix_level *path, int lvl)
{
	struct ix_node *freed[IX_MAX_DEPTH];
	unsigned nfreed = 0;
	uint8_t *again = NULL;
	struct ix_node *p;
	int k = lvl - 1, err;
	bool merged;

	err = merge_into_sibling(ix, path, lvl, &merged);
	if (err || merged)
		return err;
	freed[nfreed++] = path[lvl].node;
	for (;; k--) {
		size_t j;

		p = path[k].node;
		j = path[k].pos;
		if (!ie_is_end(p->e[j])) {
			uint8_t *e = node_take(p, j);

			again = ie_copy_as(e, false, 0);
			free(e);
			break;
		}
		if (j > 0) {
			uint8_t *e = node_take(p, j - 1);

			ie_set_child(p->e[j - 1], ie_child(e));
			again = ie_copy_as(e, false, 0);
			free(e);
			break;
		}
		if (p->root) {
			/* the whole tree is empty: the root becomes a leaf */
			uint8_t *e = ie_end(false, 0);

			if (!e)
				return -ENOMEM;
			free(node_take(p, 0));
			p->internal = false;
			err = node_insert(p, 0, e);
			if (err)
				return err;
			break;
		}
		freed[nfreed++] = p;
	}
	if (!again && !(p->root && !p->internal))
		return -ENOMEM;
	err = p->root ? root_write(ix) : block_write(ix, p);
	/* unreferenced now: each freed block is written empty (so that no
	 * reader that ignores $BITMAP:$I30, like The Sleuth Kit, takes its
	 * old entries for live names), then its bit cleared */
	for (unsigned f = 0; f < nfreed && !err; f++) {
		struct ix_node *b = freed[f];

		for (size_t i = 0; i < b->n; i++)
			free(b->e[i]);
		b->n = 0;
		b->internal = false;
		err = node_insert(b, 0, ie_end(false, 0));
		if (!err)
			err = block_write(ix, b);
		if (!err)
			err = bitmap_change(ix, vcn_to_block(ix, b->vcn), false);
	}
	if (!err && again)
		err = ix_insert(ix, again);
	free(again);
	return err;
}

/* Drop entry path[lvl].pos of the leaf path[lvl]. */
static int leaf_remove(struct ix *ix, struct ix_level *path, int lvl)
{
	struct ix_node *n = path[lvl].node;

	free(node_take(n, path[lvl].pos));
	if (n->root)
		return root_write(ix);
	if (n->n > 1)
		return block_write(ix, n);
	return remove_empty(ix, path, lvl);
}

/* path[*k] is an internal node at the entry whose predecessor is wanted:
 * descend to the rightmost leaf of its child, filling path; *k: that
 * leaf's level, its pos the predecessor (the last entry before END).
 * 1 (nothing failed) when that leaf is empty (see merge_into_sibling). */
static int pred_leaf(struct ix *ix, struct ix_level *path, int *k)
{
	for (uint64_t child = ie_child(path[*k].node->e[path[*k].pos]);;) {
		struct ix_node *c;
		int err;

		if (*k + 1 >= IX_MAX_DEPTH)
			return ntfs_fail(EIO, "directory MFT record %llu: index deeper than %d levels",
					 (unsigned long long)ix->dir->mft_no, IX_MAX_DEPTH);
		err = node_load(ix, child, &c);
		if (err)
			return err;
		path[++*k] = (struct ix_level){ .node = c, .pos = c->n - 1 };
		if (!c->internal)
			break;
		child = ie_child(c->e[c->n - 1]);
	}
	if (path[*k].node->n < 2)
		return 1;
	path[*k].pos = path[*k].node->n - 2;
	return 0;
}

/* x, at path[slot], has an empty leaf as its child path[slot + 1] (what a
 * crash inside merge_into_sibling leaves): x goes, the entry after it
 * keeps its own child, and the leaf is freed. */
static int drop_with_empty_child(struct ix *ix, struct ix_level *path, int slot)
{
	struct ix_node *n = path[slot].node, *b = path[slot + 1].node;
	int err;

	free(node_take(n, path[slot].pos));
	err = n->root ? root_write(ix) : block_write(ix, n);
	if (!err)
		err = bitmap_change(ix, vcn_to_block(ix, b->vcn), false);
	return err;
}

/* Is name in the index (exactly)?  *mref: its entry's reference. */
static int ix_find(struct ix *ix, const void *name, uint32_t len, bool *found, uint64_t *mref)
{
	struct ix_level path[IX_MAX_DEPTH];
	int depth, err = descend(ix, name, len, path, &depth, found);

	if (!err && *found)
		*mref = get_le64(path[depth].node->e[path[depth].pos]);
	path_release(path, depth);
	return err;
}

static int ix_remove(struct ix *ix, const void *name, uint32_t len, uint64_t *mref)
{
	struct ix_level path[IX_MAX_DEPTH];
	uint8_t *pred = NULL;
	int depth, slot, err;
	bool found;

	err = descend(ix, name, len, path, &depth, &found);
	if (!err && !found)
		err = -ENOENT;
	if (err)
		goto out;
	if (mref)
		*mref = get_le64(path[depth].node->e[path[depth].pos]);
	if (!path[depth].node->internal) {
		err = leaf_remove(ix, path, depth);
		goto out;
	}
	/* internal: the predecessor (from the rightmost leaf of the child)
	 * takes its place first, and only then leaves its leaf: a crash in
	 * between lists it twice (found either way), never loses it */
	slot = depth;
	err = pred_leaf(ix, path, &depth);
	if (err == 1 && depth == slot + 1) {
		err = drop_with_empty_child(ix, path, slot);
		goto out;
	}
	if (err == 1)
		err = ix_fail_node(ix, path[depth].node, "empty index block");
	if (err)
		goto out;
	pred = ie_copy_as(path[depth].node->e[path[depth].pos], false, 0);
	if (!pred) {
		err = -ENOMEM;
		goto out;
	}
	/* 1: the predecessor in the removed entry's place, keeping its child */
	{
		struct ix_node *n = path[slot].node;
		size_t pos = path[slot].pos;
		uint8_t *r = ie_copy_as(pred, true, ie_child(n->e[pos]));

		if (!r) {
			err = -ENOMEM;
			goto out;
		}
		free(n->e[pos]);
		n->e[pos] = r;
		path_release(path + slot + 1, depth - slot - 1);
		depth = slot;
		err = commit(ix, path, slot);
	}
	path_release(path, depth);
	depth = -1;
	if (err)
		goto out;
	ntfs_crashpoint("index-remove-before-leaf");
	/* 2: its leaf copy goes, wherever the tree has it now */
	err = descend(ix, ie_name(pred), ie_name_len(pred), path, &depth, &found);
	if (!err && (!found || !path[depth].node->internal))
		err = ntfs_fail(EIO, "directory MFT record %llu: an index entry moved while "
				"another was removed", (unsigned long long)ix->dir->mft_no);
	if (err)
		goto out;
	err = pred_leaf(ix, path, &depth);
	if (err == 1)
		err = ix_fail_node(ix, path[depth].node, "empty index block");
	if (err)
		goto out;
	if (ntfs_file_name_collate(ix->vol, ie_name(pred), ie_name_len(pred),
				   ie_name(path[depth].node->e[path[depth].pos]),
				   ie_name_len(path[depth].node->e[path[depth].pos]))) {
		err = ntfs_fail(EIO, "directory MFT record %llu: the predecessor of a removed "
				"index entry is not where it was", (unsigned long long)ix->dir->mft_no);
		goto out;
	}
	err = leaf_remove(ix, path, depth);
out:
	path_release(path, depth);
	free(pred);
	return err;
}

/* ---- orphaned blocks ---- */

/* Mark the block at vcn and every block under it as reached. */
static int ix_mark(struct ix *ix, uint64_t vcn, uint8_t *reached, int depth)
{
	uint64_t b = vcn_to_block(ix, vcn);
	struct ix_node *n = NULL;
	int err;

	if (depth >= IX_MAX_DEPTH || b >= ix->nr_blocks || reached[b / 8] & (1u << (b % 8)))
		return -EIO;
	reached[b / 8] |= (uint8_t)(1u << (b % 8));
	err = node_load(ix, vcn, &n);
	for (size_t i = 0; !err && n->internal && i < n->n; i++)
		err = ix_mark(ix, ie_child(n->e[i]), reached, depth + 1);
	if (n)
		node_free(n);
	return err;
}

/* Blocks $BITMAP:$I30 has in use that no node refers to: what a crash
 * inside a split (split_cow) or a merge leaves.  ntfs-3g's readdir and
 * The Sleuth Kit list the entries of every block in use, so such a block
 * shows stale names; each is written empty and freed.  Once per directory
 * and run, before its first change; best effort: a tree that does not
 * walk cleanly is left alone (the change itself then reports it). */
static void ix_reclaim_orphans(struct ix *ix)
{
	struct ntfs_volume *vol = ix->vol;
	uint8_t *reached = NULL;
	bool seen = false;
	int err = 0;

	pthread_mutex_lock(&vol->mft_lock);
	for (size_t i = 0; i < vol->ix_nchecked && !seen; i++)
		seen = vol->ix_checked[i] == ix->dir->mft_no;
	if (!seen && vol->ix_nchecked == vol->ix_checked_cap) {
		size_t cap = vol->ix_checked_cap ? 2 * vol->ix_checked_cap : 64;
		uint64_t *p = realloc(vol->ix_checked, cap * sizeof(*p));

		if (p) {
			vol->ix_checked = p;
			vol->ix_checked_cap = cap;
		}
	}
	if (!seen && vol->ix_nchecked < vol->ix_checked_cap)
		vol->ix_checked[vol->ix_nchecked++] = ix->dir->mft_no;
	pthread_mutex_unlock(&vol->mft_lock);
	if (seen || !ix->ia || !ix->nr_blocks)
		return;
	reached = calloc(ix->nr_blocks / 8 + 1, 1);
	if (!reached)
		return;
	for (size_t i = 0; !err && ix->root.internal && i < ix->root.n; i++)
		err = ix_mark(ix, ie_child(ix->root.e[i]), reached, 1);
	for (uint64_t b = 0; !err && b < ix->nr_blocks; b++) {
		struct ix_node *n;

		if (!bit_get(ix, b) || reached[b / 8] & (1u << (b % 8)))
			continue;
		n = node_new(false);
		if (!n)
			break;
		n->vcn = block_to_vcn(ix, b);
		n->is_new = false;
		err = node_insert(n, 0, ie_end(false, 0));
		if (!err)
			err = block_write(ix, n);
		if (!err)
			err = bitmap_change(ix, b, false);
		node_free(n);
	}
	free(reached);
	ntfs_clear_error();
}

/* ---- the API ---- */

int ntfs_index_lookup(struct ntfs_inode *dir, const ntfschar *name, uint32_t len, unsigned how,
		      uint64_t *mref, uint8_t *name_type)
{
	const struct ntfs_volume *vol = dir->vol;
	struct ix ix;
	struct ix_node *n, *loaded = NULL;
	int err, depth = 0;

	err = ix_open(dir, &ix);
	if (err)
		goto out;
	for (n = &ix.root;;) {
		size_t i;

		for (i = 0; i + 1 < n->n; i++) {
			const uint8_t *e = n->e[i];
			int rc = how & NTFS_INDEX_ANY_CASE
					 ? ntfs_names_collate(name, len, ie_name(e), ie_name_len(e),
							      vol->upcase, vol->upcase_len, true)
					 : ntfs_file_name_collate(vol, name, len, ie_name(e),
								  ie_name_len(e));

			if (rc == 0) {
				if (mref)
					*mref = get_le64(e);
				if (name_type)
					*name_type = ie_fn(e)->file_name_type;
				goto out;
			}
			if (rc < 0)
				break;
		}
		if (!n->internal) {
			err = -ENOENT;
			goto out;
		}
		if (++depth >= IX_MAX_DEPTH) {
			err = ntfs_fail(EIO, "directory MFT record %llu: index deeper than %d levels",
					(unsigned long long)dir->mft_no, IX_MAX_DEPTH);
			goto out;
		}
		{
			struct ix_node *c;

			err = node_load(&ix, ie_child(n->e[i]), &c);
			node_free(loaded);
			loaded = NULL;
			if (err)
				goto out;
			n = loaded = c;
		}
	}
out:
	node_free(loaded);
	ix_close(&ix);
	return err;
}

int ntfs_index_add(struct ntfs_inode *dir, const struct ntfs_file_name *fn, uint64_t mref)
{
	uint32_t klen = (uint32_t)sizeof(*fn) + 2u * fn->file_name_length;
	uint32_t len = IX_ALIGN8(IE_HDR + klen);
	uint8_t *e;
	struct ix ix;
	int err;

	if (!fn->file_name_length)
		return ntfs_fail(EINVAL, "directory MFT record %llu: empty name",
				 (unsigned long long)dir->mft_no);
	e = calloc(1, len);
	if (!e)
		return -ENOMEM;
	put_le64(e, mref);
	put_le16(e + 8, (uint16_t)len);
	put_le16(e + 10, (uint16_t)klen);
	memcpy(e + IE_HDR, fn, klen);
	err = ix_open(dir, &ix);
	if (!err) {
		ix_reclaim_orphans(&ix);
		err = ix_insert(&ix, e);
	}
	ix_close(&ix);
	free(e);
	return err;
}

int ntfs_index_remove(struct ntfs_inode *dir, const ntfschar *name, uint32_t len,
		      uint64_t *mref)
{
	struct ix ix;
	uint64_t got = 0, again = 0;
	bool found = false;
	int err = ix_open(dir, &ix);

	if (!err) {
		ix_reclaim_orphans(&ix);
		err = ix_remove(&ix, name, len, &got);
	}
	/* a crash inside a removal may have left a second entry of the
	 * name for the same file (see ix_remove, merge_into_sibling): it
	 * goes too, or it would point at a record freed after this */
	for (int i = 0; !err && i < 4; i++) {
		err = ix_find(&ix, name, len, &found, &again);
		if (err || !found || MREF(again) != MREF(got))
			break;
		err = ix_remove(&ix, name, len, NULL);
	}
	if (!err && mref)
		*mref = got;
	ix_close(&ix);
	return err;
}

/* The duplicated information of a $FILE_NAME key: the times, sizes,
 * attributes and reparse tag, between the parent reference and the name's
 * length. */
#define DUP_OFF offsetof(struct ntfs_file_name, creation_time)
#define DUP_LEN (offsetof(struct ntfs_file_name, file_name_length) - DUP_OFF)

int ntfs_index_update_dup(struct ntfs_inode *dir, const struct ntfs_file_name *fn, uint64_t mref)
{
	struct ix_level path[IX_MAX_DEPTH];
	struct ix ix;
	bool found = false;
	int depth = -1, err = ix_open(dir, &ix);

	if (!err)
		err = descend(&ix, fn + 1, fn->file_name_length, path, &depth, &found);
	if (!err && !found)
		err = -ENOENT;
	if (!err) {
		struct ix_node *n = path[depth].node;
		uint8_t *e = n->e[path[depth].pos];
		uint8_t *key = e + IE_HDR;

		if (MREF(get_le64(e)) != MREF(mref) || ie_fn(e)->file_name_type != fn->file_name_type)
			err = -ENOENT;
		else if (memcmp(key + DUP_OFF, (const uint8_t *)fn + DUP_OFF, DUP_LEN)) {
			/* same length: the node is rewritten in place, one write */
			memcpy(key + DUP_OFF, (const uint8_t *)fn + DUP_OFF, DUP_LEN);
			err = n->root ? root_write(&ix) : block_write(&ix, n);
		}
	}
	if (depth >= 0)
		path_release(path, depth);
	ix_close(&ix);
	return err;
}

/* ---- walking the whole tree ---- */

struct ix_walk {
	struct ix *ix;
	struct ntfs_index_stats st;
	uint8_t *visited;          /* one byte per block */
	uint8_t *prev;             /* the last entry seen, in order */
	int leaf_depth;            /* -1 until the first leaf */
	bool stop_at_first;        /* ntfs_index_is_empty */
};

static int walk(struct ix_walk *w, struct ix_node *n, int depth)
{
	struct ix *ix = w->ix;
	int err = 0;

	if (!n->root && !n->internal && n->n < 2)
		return ix_fail_node(ix, n, "empty leaf block");
	if (!n->internal) {
		if (w->leaf_depth < 0)
			w->leaf_depth = depth;
		else if (w->leaf_depth != depth)
			return ix_fail_node(ix, n, "leaves at different depths");
	}
	if ((unsigned)depth + 1 > w->st.depth)
		w->st.depth = (unsigned)depth + 1;
	for (size_t i = 0; i < n->n; i++) {
		const uint8_t *e = n->e[i];

		if (n->internal) {
			struct ix_node *c;
			uint64_t b;

			if (depth + 1 >= IX_MAX_DEPTH)
				return ntfs_fail(EIO, "directory MFT record %llu: index deeper than "
						 "%d levels", (unsigned long long)ix->dir->mft_no,
						 IX_MAX_DEPTH);
			err = node_load(ix, ie_child(e), &c);
			if (err)
				return err;
			b = vcn_to_block(ix, c->vcn);
			if (w->visited[b]) {
				err = ix_fail_node(ix, c, "reached twice: the tree has a cycle");
			} else if (!bit_get(ix, b)) {
				err = ix_fail_node(ix, c, "in use but its $BITMAP:$I30 bit is clear");
			} else {
				w->visited[b] = 1;
				w->st.blocks_used++;
				err = walk(w, c, depth + 1);
			}
			node_free(c);
			if (err)
				return err;
		}
		if (ie_is_end(e))
			break;
		if (w->prev && ntfs_file_name_collate(ix->vol, ie_name(w->prev),
						      ie_name_len(w->prev), ie_name(e),
						      ie_name_len(e)) >= 0)
			return ix_fail_node(ix, n, "entries out of collation order (or a name twice)");
		free(w->prev);
		w->prev = malloc(ie_len(e));
		if (!w->prev)
			return -ENOMEM;
		memcpy(w->prev, e, ie_len(e));
		w->st.entries++;
		if (w->stop_at_first)
			return 1;
	}
	return 0;
}

static int walk_all(struct ntfs_inode *dir, bool stop_at_first, struct ntfs_index_stats *st)
{
	struct ix ix;
	struct ix_walk w = { .ix = &ix, .leaf_depth = -1, .stop_at_first = stop_at_first };
	int err = ix_open(dir, &ix);

	if (err)
		goto out;
	w.visited = calloc(ix.nr_blocks + 1, 1);
	if (!w.visited) {
		err = -ENOMEM;
		goto out;
	}
	err = walk(&w, &ix.root, 0);
	if (err)
		goto out;
	w.st.blocks_allocated = ix.nr_blocks;
	for (uint64_t i = 0; i < ix.bits_size * 8; i++) {
		if (!bit_get(&ix, i))
			continue;
		w.st.bits_set++;
		if (i >= ix.nr_blocks || !w.visited[i]) {
			err = ntfs_fail(EIO, "directory MFT record %llu: $BITMAP:$I30 bit %llu is set "
					"but no index entry points at that block%s",
					(unsigned long long)dir->mft_no, (unsigned long long)i,
					i >= ix.nr_blocks ? " (past the allocation)" : "");
			goto out;
		}
	}
	if (st)
		*st = w.st;
out:
	free(w.visited);
	free(w.prev);
	ix_close(&ix);
	return err;
}

int ntfs_index_is_empty(struct ntfs_inode *dir)
{
	struct ntfs_index_stats st;
	int err = walk_all(dir, true, &st);

	if (err < 0)
		return err;
	return err == 0;
}

int ntfs_index_check(struct ntfs_inode *dir, struct ntfs_index_stats *st)
{
	return walk_all(dir, false, st);
}
