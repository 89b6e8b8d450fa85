/*
 * dir.c — the $I30 index: validation, traversal and lookup.
 *
 * Invariants: see dir.h.  Node entries are handed to callers only after
 * index_node_check() accepted the whole node.  The index block VCN unit is
 * the cluster when index blocks are at least a cluster, 512 bytes otherwise.
 */
#include "dir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "collate.h"
#include "le.h"
#include "error.h"
#include "inode.h"
#include "mft.h"
#include "mst.h"
#include "unistr.h"
#include "volume.h"

#define NTFS_MAX_INDEX_DEPTH 32
#define NTFS_MAX_NAME_LEN 255
#define NTFS_MAX_INDEX_BLOCKS (1u << 24)  /* 64 GiB of 4 KiB blocks */

/* "$I30" as stored on disk (UTF-16LE), whatever the host byte order. */
static const union {
	uint8_t bytes[8];
	ntfschar units[4];
} i30 = { .bytes = { '$', 0, 'I', 0, '3', 0, '0', 0 } };
#define I30 i30.units

struct index_ctx {
	struct ntfs_inode *dir;
	struct ntfs_attr *ia;           /* $INDEX_ALLOCATION, NULL for a small index */
	uint32_t block_size;
	uint32_t vcn_bits;
	uint64_t nr_blocks;
	uint8_t *visited;               /* one byte per index block */
	uint8_t *root;                  /* copy of the $INDEX_ROOT value */
	uint32_t root_len;
};

struct index_node {
	const uint8_t *base;            /* start of the index header */
	uint32_t entries_off;           /* from base */
	uint32_t end;                   /* from base: end of the entries in use */
	uint64_t vcn;                   /* for messages; UINT64_MAX for the root */
};

/* An error in a whole node (off 0) or in the entry at byte off of it. */
static int node_fail(struct index_ctx *ic, const struct index_node *n, const char *why,
		     uint32_t off)
{
	char where[64] = "";

	if (off)
		snprintf(where, sizeof(where), " (entry at offset %u)", off);
	if (n->vcn == UINT64_MAX)
		return ntfs_fail(EIO, "directory MFT record %llu: index root: %s%s",
				 (unsigned long long)ic->dir->mft_no, why, where);
	return ntfs_fail(EIO, "directory MFT record %llu: index block vcn %llu: %s%s",
			 (unsigned long long)ic->dir->mft_no, (unsigned long long)n->vcn, why,
			 where);
}

/* Validate a node's header (hdr_room bytes available from base) and entries. */
static int index_node_check(struct index_ctx *ic, struct index_node *n, uint32_t hdr_room)
{
	const struct ntfs_index_header *h = (const void *)n->base;
	uint32_t off;

	if (hdr_room < sizeof(*h))
		return node_fail(ic, n, "index header does not fit", 0);
	n->entries_off = le32(h->entries_offset);
	n->end = le32(h->index_length);
	if (n->entries_off < sizeof(*h) || n->entries_off % 8 || n->end > hdr_room ||
	    n->entries_off >= n->end)
		return node_fail(ic, n, "index header offsets out of range", n->entries_off);
	for (off = n->entries_off;;) {
		const struct ntfs_index_entry *e = (const void *)(n->base + off);
		uint32_t len, klen, flags;

		if (n->end - off < sizeof(*e))
			return node_fail(ic, n, "entries run past the node without an end entry",
					 off);
		len = le16(e->length);
		klen = le16(e->key_length);
		flags = le16(e->flags);
		if (len < sizeof(*e) || len % 8 || len > n->end - off)
			return node_fail(ic, n, "bad index entry length", off);
		if ((flags & INDEX_ENTRY_NODE) && len < sizeof(*e) + 8)
			return node_fail(ic, n, "bad index entry length", off);
		if (!(flags & INDEX_ENTRY_END)) {
			const struct ntfs_file_name *fn = (const void *)(e + 1);
			uint32_t room = len - (uint32_t)sizeof(*e) -
					((flags & INDEX_ENTRY_NODE) ? 8u : 0u);

			if (klen < sizeof(*fn) || klen > room ||
			    sizeof(*fn) + 2u * fn->file_name_length > klen ||
			    fn->file_name_length == 0)
				return node_fail(ic, n, "bad index entry key length", off);
		}
		if (flags & INDEX_ENTRY_END)
			return 0;
		off += len;
	}
}

static uint64_t entry_child_vcn(const struct ntfs_index_entry *e)
{
	return get_le64((const uint8_t *)e + le16(e->length) - 8);
}

static int index_ctx_open(struct ntfs_inode *dir, struct index_ctx *ic, struct index_node *root)
{
	const struct ntfs_geometry *g = &dir->vol->geo;
	const struct ntfs_index_root *ir;
	struct ntfs_attr *ra;
	int err;

	memset(ic, 0, sizeof(*ic));
	ic->dir = dir;
	if (!ntfs_inode_is_dir(dir))
		return ntfs_fail(ENOTDIR, "MFT record %llu: not a directory",
				 (unsigned long long)dir->mft_no);
	err = ntfs_attr_open(dir, AT_INDEX_ROOT, I30, 4, &ra);
	if (err)
		return err == -ENOENT ? ntfs_fail(EIO, "directory MFT record %llu: no $I30 "
						  "index root", (unsigned long long)dir->mft_no)
				      : err;
	if (!ra->resident || ra->data_size < sizeof(*ir)) {
		ntfs_attr_close(ra);
		return ntfs_fail(EIO, "directory MFT record %llu: malformed $INDEX_ROOT",
				 (unsigned long long)dir->mft_no);
	}
	ic->root = ra->value;
	ic->root_len = (uint32_t)ra->data_size;
	ra->value = NULL;
	ntfs_attr_close(ra);
	ir = (const void *)ic->root;
	ic->block_size = le32(ir->index_block_size);
	if (le32(ir->type) != AT_FILE_NAME || le32(ir->collation_rule) != COLLATION_FILE_NAME ||
	    ic->block_size < NTFS_BLOCK_SIZE || ic->block_size > 65536 ||
	    (ic->block_size & (ic->block_size - 1)))
		return ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ROOT is not a file name "
				 "index or has a bad block size %u",
				 (unsigned long long)dir->mft_no, ic->block_size);
	ic->vcn_bits = ic->block_size >= g->cluster_size ? g->cluster_size_bits
							 : NTFS_BLOCK_SIZE_BITS;
	*root = (struct index_node){ .base = ic->root + offsetof(struct ntfs_index_root, index),
				     .vcn = UINT64_MAX };
	err = index_node_check(ic, root, ic->root_len - (uint32_t)offsetof(struct ntfs_index_root,
									  index));
	if (err)
		return err;
	err = ntfs_attr_open(dir, AT_INDEX_ALLOCATION, I30, 4, &ic->ia);
	if (err == -ENOENT) {
		ic->ia = NULL;
		return 0;
	}
	if (err)
		return err;
	ic->nr_blocks = ic->ia->data_size / ic->block_size;
	if (ic->nr_blocks > NTFS_MAX_INDEX_BLOCKS || ic->ia->data_size > ic->ia->allocated_size)
		return ntfs_fail(EIO, "directory MFT record %llu: $INDEX_ALLOCATION of %llu bytes is "
				 "implausible", (unsigned long long)dir->mft_no,
				 (unsigned long long)ic->ia->data_size);
	ic->visited = calloc(ic->nr_blocks ? ic->nr_blocks : 1, 1);
	return ic->visited ? 0 : -ENOMEM;
}

static void index_ctx_close(struct index_ctx *ic)
{
	ntfs_attr_close(ic->ia);
	free(ic->visited);
	free(ic->root);
}

/* Read and validate the index block at vcn into buf (block_size bytes). */
static int index_block_read(struct index_ctx *ic, uint64_t vcn, uint8_t *buf,
			    struct index_node *n)
{
	const struct ntfs_index_block *ib = (const void *)buf;
	uint64_t pos = vcn << ic->vcn_bits, idx;
	ssize_t got;
	int err;

	*n = (struct index_node){ .vcn = vcn };
	if (!ic->ia)
		return node_fail(ic, n, "child pointer in an index without $INDEX_ALLOCATION", 0);
	idx = pos / ic->block_size;
	if (vcn >= (UINT64_MAX >> ic->vcn_bits) || pos % ic->block_size || idx >= ic->nr_blocks)
		return node_fail(ic, n, "child vcn outside the index allocation", 0);
	if (ic->visited[idx])
		return node_fail(ic, n, "index block reached twice: the tree has a cycle", 0);
	ic->visited[idx] = 1;
	got = ntfs_attr_pread(ic->ia, pos, ic->block_size, buf);
	if (got < 0)
		return (int)got;
	if ((uint32_t)got != ic->block_size)
		return node_fail(ic, n, "short index block", 0);
	if (le32(ib->magic) != magic_INDX)
		return node_fail(ic, n, "bad magic, expected INDX", 0);
	{
		char what[96];

		snprintf(what, sizeof(what), "directory MFT record %llu: index block at vcn",
			 (unsigned long long)ic->dir->mft_no);
		err = ntfs_mst_post_read(buf, ic->block_size, what, vcn);
	}
	if (err)
		return err;
	if (le64(ib->index_block_vcn) != vcn)
		return node_fail(ic, n, "block records a different vcn", 0);
	n->base = buf + offsetof(struct ntfs_index_block, index);
	return index_node_check(ic, n, ic->block_size - (uint32_t)offsetof(struct ntfs_index_block,
									   index));
}

static void entry_to_dirent(const struct ntfs_index_entry *e, struct ntfs_dirent *de)
{
	const struct ntfs_file_name *fn = (const void *)(e + 1);

	de->mref = le64(e->indexed_file);
	de->name_type = fn->file_name_type;
	de->name = fn + 1;
	de->name_len = fn->file_name_length;
	de->fn = fn;
}

/* ---- in-order traversal ---- */

static int walk_node(struct index_ctx *ic, const struct index_node *n, int depth,
		     ntfs_filldir_fn fn, void *ctx);

static int walk_child(struct index_ctx *ic, uint64_t vcn, int depth, ntfs_filldir_fn fn,
		      void *ctx)
{
	struct index_node child;
	uint8_t *buf;
	int ret;

	if (depth >= NTFS_MAX_INDEX_DEPTH)
		return ntfs_fail(EIO, "directory MFT record %llu: index deeper than %d levels",
				 (unsigned long long)ic->dir->mft_no, NTFS_MAX_INDEX_DEPTH);
	buf = malloc(ic->block_size);
	if (!buf)
		return -ENOMEM;
	ret = index_block_read(ic, vcn, buf, &child);
	if (!ret)
		ret = walk_node(ic, &child, depth + 1, fn, ctx);
	free(buf);
	return ret;
}

static int walk_node(struct index_ctx *ic, const struct index_node *n, int depth,
		     ntfs_filldir_fn fn, void *ctx)
{
	uint32_t off = n->entries_off;

	for (;;) {
		const struct ntfs_index_entry *e = (const void *)(n->base + off);
		uint16_t flags = le16(e->flags);
		struct ntfs_dirent de;
		int ret;

		if (flags & INDEX_ENTRY_NODE) {
			ret = walk_child(ic, entry_child_vcn(e), depth, fn, ctx);
			if (ret)
				return ret;
		}
		if (flags & INDEX_ENTRY_END)
			return 0;
		entry_to_dirent(e, &de);
		ret = fn(ctx, &de);
		if (ret)
			return ret;
		off += le16(e->length);
	}
}

int ntfs_dir_foreach(struct ntfs_inode *dir, ntfs_filldir_fn fn, void *ctx)
{
	struct index_ctx ic;
	struct index_node root;
	int ret = index_ctx_open(dir, &ic, &root);

	if (!ret)
		ret = walk_node(&ic, &root, 0, fn, ctx);
	index_ctx_close(&ic);
	return ret;
}

/* ---- lookup ---- */

struct lookup {
	const ntfschar *name;
	uint32_t len;
	unsigned flags;
	uint64_t exact, folded;
	bool have_exact, have_folded;
};

/* Scan one node; returns 1 when found exactly, 0 with *child set to the vcn to
 * descend into (UINT64_MAX: none). */
static int lookup_node(struct index_ctx *ic, const struct index_node *n, struct lookup *lk,
		       uint64_t *child)
{
	const struct ntfs_volume *vol = ic->dir->vol;
	uint32_t off = n->entries_off;

	for (;;) {
		const struct ntfs_index_entry *e = (const void *)(n->base + off);
		uint16_t flags = le16(e->flags);
		struct ntfs_dirent de;
		int rc;

		if (flags & INDEX_ENTRY_END)
			break;
		entry_to_dirent(e, &de);
		if (ntfs_names_collate(lk->name, lk->len, de.name, de.name_len, vol->upcase,
				       vol->upcase_len, true) == 0 &&
		    de.name_type != FILE_NAME_POSIX && !lk->have_folded) {
			lk->folded = de.mref;
			lk->have_folded = true;
		}
		rc = ntfs_file_name_collate(vol, lk->name, lk->len, de.name, de.name_len);
		if (rc == 0) {
			lk->exact = de.mref;
			lk->have_exact = true;
			return 1;
		}
		if (rc < 0)
			break;
		off += le16(e->length);
	}
	{
		const struct ntfs_index_entry *e = (const void *)(n->base + off);

		*child = (le16(e->flags) & INDEX_ENTRY_NODE) ? entry_child_vcn(e) : UINT64_MAX;
	}
	return 0;
}

int ntfs_dir_lookup(struct ntfs_inode *dir, const ntfschar *name, uint32_t len,
		    unsigned flags, uint64_t *mref)
{
	struct lookup lk = { .name = name, .len = len, .flags = flags };
	struct index_ctx ic;
	struct index_node node;
	uint8_t *buf = NULL;
	uint64_t child;
	int ret, depth = 0;

	ret = index_ctx_open(dir, &ic, &node);
	while (!ret) {
		ret = lookup_node(&ic, &node, &lk, &child);
		if (ret || child == UINT64_MAX)
			break;
		if (++depth > NTFS_MAX_INDEX_DEPTH) {
			ret = ntfs_fail(EIO, "directory MFT record %llu: index too deep",
					(unsigned long long)dir->mft_no);
			break;
		}
		if (!buf && !(buf = malloc(ic.block_size))) {
			ret = -ENOMEM;
			break;
		}
		ret = index_block_read(&ic, child, buf, &node);
	}
	free(buf);
	index_ctx_close(&ic);
	if (ret < 0)
		return ret;
	if (lk.have_exact) {
		*mref = lk.exact;
		return 0;
	}
	if ((flags & NTFS_LOOKUP_IGNORE_CASE) && lk.have_folded) {
		*mref = lk.folded;
		return 0;
	}
	return -ENOENT;
}

int ntfs_path_lookup(struct ntfs_volume *vol, const char *path, unsigned flags,
		     uint64_t *mref)
{
	uint64_t cur = FILE_root;
	const char *p = path;

	while (*p) {
		const char *slash;
		size_t clen;
		ntfschar *u;
		uint32_t ulen;
		struct ntfs_inode *dir = NULL;
		int err;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		slash = strchr(p, '/');
		clen = slash ? (size_t)(slash - p) : strlen(p);
		err = ntfs_utf8_to_utf16(p, clen, &u, &ulen);
		if (err)
			return ntfs_fail(-err, "%s: invalid UTF-8 in path", path);
		if (ulen > NTFS_MAX_NAME_LEN) {
			free(u);
			return ntfs_fail(ENAMETOOLONG, "%s: a path component is longer than "
					 "255 UTF-16 units", path);
		}
		err = ntfs_inode_open(vol, MREF(cur), &dir);
		if (!err && !ntfs_inode_is_dir(dir))
			err = -ENOTDIR;
		if (!err)
			err = ntfs_dir_lookup(dir, u, ulen, flags, &cur);
		ntfs_inode_close(dir);
		free(u);
		if (err == -ENOENT || err == -ENOTDIR)
			return ntfs_fail(-err, "%s: %s", path,
					 err == -ENOENT ? "no such file or directory"
							: "a path component is not a directory");
		if (err)
			return err;
		p += clen;
	}
	*mref = cur;
	return 0;
}
