/*
 * attr_list.c — see attr_list.h.
 *
 * Invariants (beyond the header's): entries are decoded and encoded field
 * by field through the packed on-disk struct, never by casting a pointer
 * into the value to anything wider than a byte; the name offset written is
 * always right after the fixed fields.
 */
#include "attr_list.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "collate.h"
#include "error.h"
#include "inode.h"
#include "le.h"
#include "mft.h"

/* Largest list accepted (as inode.c does when it opens an inode). */
#define AL_MAX_SIZE (16u << 20)

void ntfs_al_free(struct ntfs_attr_list *al)
{
	for (size_t i = 0; i < al->count; i++)
		free(al->e[i].name);
	free(al->e);
	memset(al, 0, sizeof(*al));
}

int ntfs_al_append(struct ntfs_attr_list *al, uint32_t type, const ntfschar *name,
		   uint8_t name_len, int64_t lowest_vcn, uint64_t mref, uint16_t instance)
{
	struct ntfs_al_entry *e;

	if (al->count == al->cap) {
		size_t cap = al->cap ? 2 * al->cap : 16;
		struct ntfs_al_entry *n = realloc(al->e, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		al->e = n;
		al->cap = cap;
	}
	e = &al->e[al->count];
	memset(e, 0, sizeof(*e));
	if (name_len) {
		e->name = malloc(2u * name_len);
		if (!e->name)
			return -ENOMEM;
		memcpy(e->name, name, 2u * name_len);
	}
	e->type = type;
	e->name_len = name_len;
	e->lowest_vcn = lowest_vcn;
	e->mref = mref;
	e->instance = instance;
	al->count++;
	return 0;
}

int ntfs_al_decode(const uint8_t *al, uint32_t size, const char *what, struct ntfs_attr_list *out)
{
	uint32_t off = 0;
	int err;

	memset(out, 0, sizeof(*out));
	while (off < size) {
		struct ntfs_attr_list_entry e;
		uint32_t len;

		if (size - off < sizeof(e))
			goto bad;
		memcpy(&e, al + off, sizeof(e));
		len = le16(e.length);
		if (len < sizeof(e) || len > size - off ||
		    (e.name_length && e.name_offset + 2u * e.name_length > len) ||
		    sle64(e.lowest_vcn) < 0)
			goto bad;
		err = ntfs_al_append(out, le32(e.type), (const ntfschar *)(al + off + e.name_offset),
				     e.name_length, sle64(e.lowest_vcn), le64(e.mft_reference),
				     le16(e.instance));
		if (err) {
			ntfs_al_free(out);
			return err;
		}
		off += len;
	}
	return 0;
bad:
	ntfs_al_free(out);
	return ntfs_fail(EIO, "%s: corrupted $ATTRIBUTE_LIST entry at offset %u", what, off);
}

bool ntfs_al_entry_is(const struct ntfs_al_entry *e, uint32_t type, const ntfschar *name,
		      uint32_t name_len)
{
	return e->type == type && e->name_len == name_len &&
	       (!name_len || !memcmp(e->name, name, 2u * name_len));
}

void ntfs_al_remove_attr(struct ntfs_attr_list *al, uint32_t type, const ntfschar *name,
			 uint32_t name_len)
{
	size_t i, j = 0;

	for (i = 0; i < al->count; i++) {
		if (ntfs_al_entry_is(&al->e[i], type, name, name_len))
			free(al->e[i].name);
		else
			al->e[j++] = al->e[i];
	}
	al->count = j;
}

struct sort_ctx {
	const ntfschar *upcase;
	uint32_t upcase_len;
};

static int entry_cmp(const struct ntfs_al_entry *a, const struct ntfs_al_entry *b,
		     const struct sort_ctx *c)
{
	int rc;

	if (a->type != b->type)
		return a->type < b->type ? -1 : 1;
	rc = ntfs_names_collate(a->name, a->name_len, b->name, b->name_len, c->upcase,
				c->upcase_len, true);
	if (!rc)
		rc = ntfs_names_collate(a->name, a->name_len, b->name, b->name_len, c->upcase,
					c->upcase_len, false);
	if (rc)
		return rc;
	return (a->lowest_vcn > b->lowest_vcn) - (a->lowest_vcn < b->lowest_vcn);
}

/* Merge sort: stable, O(n log n), whatever the list's length. */
static void merge_sort(struct ntfs_al_entry *v, struct ntfs_al_entry *tmp, size_t n,
		       const struct sort_ctx *c)
{
	size_t mid = n / 2, i = 0, j = mid, k = 0;

	if (n < 2)
		return;
	merge_sort(v, tmp, mid, c);
	merge_sort(v + mid, tmp, n - mid, c);
	while (i < mid && j < n)
		tmp[k++] = entry_cmp(&v[j], &v[i], c) < 0 ? v[j++] : v[i++];
	while (i < mid)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof(*v));
}

int ntfs_al_sort(struct ntfs_attr_list *al, const ntfschar *upcase, uint32_t upcase_len)
{
	struct sort_ctx c = { .upcase = upcase, .upcase_len = upcase_len };
	struct ntfs_al_entry *tmp;

	if (al->count < 2)
		return 0;
	tmp = malloc(al->count * sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	merge_sort(al->e, tmp, al->count, &c);
	free(tmp);
	return 0;
}

bool ntfs_al_all_in(const struct ntfs_attr_list *al, uint64_t mft_no)
{
	for (size_t i = 0; i < al->count; i++)
		if (MREF(al->e[i].mref) != mft_no)
			return false;
	return true;
}

uint32_t ntfs_al_encoded_size(const struct ntfs_attr_list *al)
{
	uint32_t size = 0;

	for (size_t i = 0; i < al->count; i++)
		size += NTFS_AL_ENTRY_SIZE(al->e[i].name_len);
	return size;
}

void ntfs_al_encode(const struct ntfs_attr_list *al, uint8_t *buf)
{
	for (size_t i = 0; i < al->count; i++) {
		const struct ntfs_al_entry *s = &al->e[i];
		uint32_t len = NTFS_AL_ENTRY_SIZE(s->name_len);
		struct ntfs_attr_list_entry e = {
			.type = cpu_to_le32(s->type),
			.length = cpu_to_le16((uint16_t)len),
			.name_length = s->name_len,
			.name_offset = sizeof(e),
			.lowest_vcn = cpu_to_le64((uint64_t)s->lowest_vcn),
			.mft_reference = cpu_to_le64(s->mref),
			.instance = cpu_to_le16(s->instance),
		};

		memset(buf, 0, len);
		memcpy(buf, &e, sizeof(e));
		if (s->name_len)
			memcpy(buf + sizeof(e), s->name, 2u * s->name_len);
		buf += len;
	}
}

int ntfs_al_from_record(const uint8_t *rec, uint64_t mref, struct ntfs_attr_list *out)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;
	int err;

	memset(out, 0, sizeof(*out));
	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a)) {
		if (le32(a->type) == AT_ATTRIBUTE_LIST)
			continue;
		err = ntfs_al_append(out, le32(a->type), ntfs_attr_name(a), a->name_length,
				     a->non_resident ? sle64(a->u.nr.lowest_vcn) : 0, mref,
				     le16(a->instance));
		if (err) {
			ntfs_al_free(out);
			return err;
		}
	}
	return 0;
}

int ntfs_al_read_from_record(struct ntfs_inode *ni, const struct ntfs_attr_record *a,
			     uint8_t **value, uint32_t *size, struct ntfs_runlist *rl)
{
	struct ntfs_attr *na;
	ssize_t n;
	int err;

	err = ntfs_attr_open_record(ni, a, &na);
	if (err)
		return err;
	if (na->data_size > AL_MAX_SIZE || na->data_size == 0) {
		err = ntfs_fail(EIO, "MFT record %llu: $ATTRIBUTE_LIST of %llu bytes is implausible",
				(unsigned long long)ni->mft_no, (unsigned long long)na->data_size);
		goto out;
	}
	*value = malloc(na->data_size);
	if (!*value) {
		err = -ENOMEM;
		goto out;
	}
	n = ntfs_attr_pread(na, 0, na->data_size, *value);
	if (n != (ssize_t)na->data_size) {
		free(*value);
		*value = NULL;
		err = n < 0 ? (int)n : ntfs_fail(EIO, "MFT record %llu: short $ATTRIBUTE_LIST",
						 (unsigned long long)ni->mft_no);
		goto out;
	}
	*size = (uint32_t)na->data_size;
	if (rl && !na->resident) {
		err = ntfs_rl_copy(rl, &na->rl);
		if (err) {
			free(*value);
			*value = NULL;
		}
	}
out:
	ntfs_attr_close(na);
	return err;
}
