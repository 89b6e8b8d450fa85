/*
 * attr_extents.c — the extent planner: ntfs_attr_update_mapping_pairs()
 * lays an attribute's runlist out over the MFT records of its inode
 * (attr_record.h).
 *
 * Invariants: the record buffers being edited are private copies of
 * records read from disk under vol->mft_lock; every edit that can fail
 * (resizing for lack of room, allocation) happens before the first write,
 * or the copies are discarded, so "nothing written" holds by
 * construction.  The in-memory ntfs_attr and inode change only after the
 * base record write succeeded.  Records are kept in an array whose element
 * 0 is the base record; an attribute record is found again by (type,
 * instance) once other attributes of its record may have moved (a record
 * resized in place stays where it is).
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

/*
 * ntfs_attr_update_mapping_pairs lays the runlist out over "extents", each
 * an attribute record covering [lowest_vcn, highest_vcn + 1), in this
 * order of preference: the records that already hold the attribute's
 * extents (an extent whose range still encodes in its record keeps it, so
 * an append only rewrites the last one), then other records of the inode
 * already loaded with room for another extent, then extension records
 * allocated for this call.  Each attempt starts from the records as they
 * are on disk (read once per lock hold) and edits private copies; only a
 * complete layout is written.
 *
 * The base record must also hold the $ATTRIBUTE_LIST, whose size depends
 * on the number of extents: an attempt holds back `reserve` bytes of the
 * base record from the extent placed there, and when the list does not fit
 * the next attempt holds back more; when the base record has no extent left
 * to squeeze, the list goes non-resident (its clusters allocated fresh, so
 * the old list stays intact on disk until the base record stops pointing at
 * it).
 */

/* Internal status: more extension records are needed than this call has
 * allocated (x->need more). */
#define NEED_RECORDS 1
/* Attempts per lock hold before giving up (each shrinks the base record's
 * extent by at least 40 bytes or changes the list's form). */
#define MAX_ATTEMPTS 64
/* Times the lock is dropped to allocate records before giving up. */
#define MAX_ROUNDS 4

struct xrec {
	uint64_t no;
	uint8_t *buf;           /* the copy being edited */
	const uint8_t *orig;    /* as on disk (in the cache); NULL for a virtual record */
	bool virt;              /* planning only: a record still to be allocated */
	bool spare;             /* allocated by this call: nothing on disk points at it */
	bool holds_new;         /* holds an extent of the new layout */
	bool full;              /* no room for another extent */
};

struct xslot {
	size_t rec;             /* index into rec[] */
	uint16_t instance;
	int64_t lowest, stop;   /* maps [lowest, stop) */
};

struct xcache {
	uint64_t no;
	uint8_t *orig;
};

struct xupdate {
	struct ntfs_attr *na;
	struct ntfs_inode *ni;
	struct ntfs_volume *vol;
	const char *what;
	uint32_t rec_size;
	uint16_t flags;                 /* the attribute's new flags */
	bool gains_sparse;
	uint8_t cu;                     /* compression unit every extent gets */
	int64_t end;
	uint64_t allocated, compressed;
	uint64_t init;                  /* initialized_size the record gets */
	/* records allocated for this call, all formatted as our extension records */
	uint64_t *spare;
	size_t nspare, spare_cap;
	/* records read under the current lock hold */
	struct xcache *cache;
	size_t ncache, cache_cap;
	/* one attempt */
	struct xrec *rec;               /* rec[0] is the base record */
	size_t nrec, rec_cap;
	struct xslot *old, *ext;        /* extents on disk; extents laid out */
	size_t nold, old_cap, next, ext_cap;
	size_t spare_used, need;
	struct ntfs_attr_list al;       /* the list being built */
	bool had_al, al_old_nonres;
	uint16_t al_instance;
	uint32_t al_old_len;            /* its attribute record's length, 0 if none */
	uint8_t *al_old, *al_new;
	uint32_t al_old_size, al_new_size;
	struct ntfs_runlist al_old_rl;
	bool al_needed, al_changed, al_nonres;
	/* kept across attempts and rounds */
	struct ntfs_runlist al_new_rl;  /* clusters for a new non-resident list */
	bool committed;                 /* the base record was written */
	uint64_t *to_free;              /* records emptied by the new layout */
	size_t nto_free;
};

/* Room for element `count` in the array whose pointer is at arrp (copied
 * in and out with memcpy: it is a struct pointer, not a void *). */
static int xgrow(void *arrp, size_t *cap, size_t count, size_t size)
{
	void *arr, *n;
	size_t ncap;

	if (count < *cap)
		return 0;
	ncap = *cap ? 2 * *cap : 8;
	memcpy(&arr, arrp, sizeof(arr));
	n = realloc(arr, ncap * size);
	if (!n)
		return -ENOMEM;
	memcpy(arrp, &n, sizeof(n));
	*cap = ncap;
	return 0;
}

static uint16_t record_seq(const uint8_t *rec)
{
	return le16(((const struct ntfs_mft_record *)rec)->sequence_number);
}

static bool record_is_empty(const uint8_t *rec)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, rec);
	return !ntfs_attr_iter_next(&it, &a);
}

/* Where an attribute record (type, name, lowest vcn) belongs in rec: the
 * records are sorted by type, name and lowest vcn. */
static uint32_t sorted_insert_offset(const struct ntfs_volume *vol, const uint8_t *rec,
				     uint32_t type, const ntfschar *name, uint32_t name_len,
				     int64_t lowest)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;
	uint32_t off;

	ntfs_attr_iter_init(&it, rec);
	for (off = it.off; ntfs_attr_iter_next(&it, &a); off = it.off) {
		uint32_t t = le32(a->type);
		int rc;

		if (t < type)
			continue;
		if (t > type)
			break;
		rc = ntfs_file_name_collate(vol, ntfs_attr_name(a), a->name_length, name, name_len);
		if (rc > 0 || (!rc && a->non_resident && sle64(a->u.nr.lowest_vcn) > lowest))
			break;
	}
	return off;
}

/* The record as it is on disk (read once per lock hold), checked to be an
 * extension record of ours (or the base record itself); seq, when not 0,
 * is the sequence number the attribute list expects. */
static int xcache_get(struct xupdate *x, uint64_t no, uint16_t seq, const uint8_t **orig)
{
	const struct ntfs_mft_record *m;
	uint8_t *buf;
	size_t i;
	int err;

	for (i = 0; i < x->ncache; i++)
		if (x->cache[i].no == no) {
			*orig = x->cache[i].orig;
			goto check;
		}
	err = xgrow(&x->cache, &x->cache_cap, x->ncache, sizeof(*x->cache));
	if (err)
		return err;
	buf = malloc(x->rec_size);
	if (!buf)
		return -ENOMEM;
	err = ntfs_mft_record_read(x->vol, no, buf);
	if (err) {
		free(buf);
		return err;
	}
	x->cache[x->ncache++] = (struct xcache){ .no = no, .orig = buf };
	*orig = buf;
check:
	m = (const void *)*orig;
	if (!(le16(m->flags) & MFT_RECORD_IN_USE) ||
	    (no == x->ni->mft_no ? MREF(le64(m->base_mft_record)) != 0
				 : MREF(le64(m->base_mft_record)) != x->ni->mft_no) ||
	    (seq && record_seq(*orig) != seq))
		return ntfs_fail(EIO, "%s: MFT record %llu is not %s (in use, base reference, "
				 "sequence number)", x->what, (unsigned long long)no,
				 no == x->ni->mft_no ? "the inode's base record any more"
						     : "an extension record of the inode");
	return 0;
}

static void xcache_free(struct xupdate *x)
{
	for (size_t i = 0; i < x->ncache; i++)
		free(x->cache[i].orig);
	free(x->cache);
	x->cache = NULL;
	x->ncache = x->cache_cap = 0;
}

/* The index in rec[] of record no, adding a private copy when needed. */
static int xrec_get(struct xupdate *x, uint64_t no, uint16_t seq, size_t *idx)
{
	const uint8_t *orig;
	uint8_t *buf;
	size_t i;
	int err;

	for (i = 0; i < x->nrec; i++)
		if (!x->rec[i].virt && x->rec[i].no == no) {
			if (seq && record_seq(x->rec[i].buf) != seq)
				return ntfs_fail(EIO, "%s: attribute list names MFT record %llu with "
						 "sequence number %u, the record has %u", x->what,
						 (unsigned long long)no, seq,
						 record_seq(x->rec[i].buf));
			*idx = i;
			return 0;
		}
	err = xcache_get(x, no, seq, &orig);
	if (!err)
		err = xgrow(&x->rec, &x->rec_cap, x->nrec, sizeof(*x->rec));
	if (err)
		return err;
	buf = malloc(x->rec_size);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, orig, x->rec_size);
	x->rec[x->nrec] = (struct xrec){ .no = no, .buf = buf, .orig = orig };
	*idx = x->nrec++;
	return 0;
}

/* Forget everything an attempt built (the cache and the records allocated
 * for the call stay). */
static void attempt_reset(struct xupdate *x)
{
	for (size_t i = 0; i < x->nrec; i++)
		free(x->rec[i].buf);
	free(x->rec);
	free(x->old);
	free(x->ext);
	free(x->al_old);
	free(x->al_new);
	ntfs_al_free(&x->al);
	ntfs_runlist_free(&x->al_old_rl);
	x->rec = NULL;
	x->old = x->ext = NULL;
	x->al_old = x->al_new = NULL;
	x->nrec = x->rec_cap = x->nold = x->old_cap = x->next = x->ext_cap = 0;
	x->spare_used = x->need = 0;
	x->had_al = x->al_old_nonres = x->al_needed = x->al_changed = x->al_nonres = false;
	x->al_instance = 0;
	x->al_old_len = x->al_old_size = x->al_new_size = 0;
}

static int slot_cmp(const void *p, const void *q)
{
	const struct xslot *a = p, *b = q;

	return (a->lowest > b->lowest) - (a->lowest < b->lowest);
}

static int old_slot_add(struct xupdate *x, size_t rec, uint16_t instance)
{
	struct ntfs_attr_record *a =
		ntfs_mft_record_find_instance(x->rec[rec].buf, x->na->type, instance);
	int err;

	if (!a || !a->non_resident)
		return ntfs_fail(EIO, "%s: extent (instance %u) %s in MFT record %llu", x->what,
				 instance, a ? "is resident" : "not found",
				 (unsigned long long)x->rec[rec].no);
	for (size_t i = 0; i < x->nold; i++)
		if (x->old[i].rec == rec && x->old[i].instance == instance)
			return ntfs_fail(EIO, "%s: the attribute list names extent (instance %u) "
					 "of MFT record %llu twice", x->what, instance,
					 (unsigned long long)x->rec[rec].no);
	err = xgrow(&x->old, &x->old_cap, x->nold, sizeof(*x->old));
	if (err)
		return err;
	x->old[x->nold++] = (struct xslot){ .rec = rec, .instance = instance,
					    .lowest = sle64(a->u.nr.lowest_vcn),
					    .stop = sle64(a->u.nr.highest_vcn) + 1 };
	return 0;
}

/* Read the base record, its attribute list and the attribute's extents. */
static int attempt_load(struct xupdate *x)
{
	struct ntfs_attr *na = x->na;
	const struct ntfs_attr_record *a, *al = NULL;
	struct ntfs_attr_iter it;
	uint64_t base_ref;
	size_t idx;
	int err;

	err = xrec_get(x, x->ni->mft_no, 0, &idx);
	if (err)
		return err;
	base_ref = x->ni->mft_no | (uint64_t)record_seq(x->rec[0].buf) << 48;
	ntfs_attr_iter_init(&it, x->rec[0].buf);
	while (ntfs_attr_iter_next(&it, &a))
		if (le32(a->type) == AT_ATTRIBUTE_LIST)
			al = a;
	if (al) {
		x->had_al = true;
		x->al_old_nonres = al->non_resident;
		x->al_instance = le16(al->instance);
		x->al_old_len = le32(al->length);
		err = ntfs_al_read_from_record(x->ni, al, &x->al_old, &x->al_old_size,
					       &x->al_old_rl);
		if (!err)
			err = ntfs_al_decode(x->al_old, x->al_old_size, x->what, &x->al);
		for (size_t i = 0; !err && i < x->al.count; i++) {
			const struct ntfs_al_entry *e = &x->al.e[i];

			if (!ntfs_al_entry_is(e, na->type, na->name, na->name_len))
				continue;
			err = xrec_get(x, MREF(e->mref), MSEQNO(e->mref), &idx);
			if (!err)
				err = old_slot_add(x, idx, e->instance);
		}
	} else {
		ntfs_attr_iter_init(&it, x->rec[0].buf);
		while (!err && ntfs_attr_iter_next(&it, &a))
			if (le32(a->type) == na->type &&
			    a->name_length == na->name_len &&
			    (!na->name_len ||
			     !memcmp(ntfs_attr_name(a), na->name, 2u * na->name_len)))
				err = old_slot_add(x, 0, le16(a->instance));
		if (!err)
			err = ntfs_al_from_record(x->rec[0].buf, base_ref, &x->al);
	}
	if (err)
		return err;
	qsort(x->old, x->nold, sizeof(*x->old), slot_cmp);
	if (!x->nold || x->old[0].lowest != 0)
		return ntfs_fail(EIO, "%s: changed on disk under us (no longer a non-resident "
				 "first extent)", x->what);
	if (!x->gains_sparse) {
		a = ntfs_mft_record_find_instance(x->rec[x->old[0].rec].buf, na->type,
						  x->old[0].instance);
		x->cu = a->u.nr.compression_unit;
	}
	ntfs_al_remove_attr(&x->al, na->type, na->name, na->name_len);
	return 0;
}

/* Extent a in rec[ri] now maps [vcn, stop): sizes in the first extent
 * only, the same compression unit everywhere. */
static int extent_placed(struct xupdate *x, size_t ri, struct ntfs_attr_record *a, int64_t vcn,
			 int64_t stop)
{
	int err = xgrow(&x->ext, &x->ext_cap, x->next, sizeof(*x->ext));

	if (err)
		return err;
	if (vcn == 0)
		attr_record_set_sizes(a, x->allocated, x->na->data_size, x->init, x->compressed);
	else
		attr_record_set_sizes(a, 0, 0, 0, 0);
	a->u.nr.compression_unit = x->cu;
	x->ext[x->next++] = (struct xslot){ .rec = ri, .instance = le16(a->instance),
					    .lowest = vcn, .stop = stop };
	x->rec[ri].holds_new = true;
	return 0;
}

/* A record with room for one more extent: a loaded extension record, else
 * one of the records allocated for this call, else (planning) a virtual
 * empty one, counted in x->need. */
static int pick_record(struct xupdate *x, size_t *ri)
{
	uint32_t need = ALIGN8(attr_nonresident_header_size(x->flags) + 2u * x->na->name_len) + 24u;
	struct xrec *r;
	uint8_t *buf;
	size_t i;
	int err;

	for (i = 1; i < x->nrec; i++)
		if (!x->rec[i].full && ntfs_mft_record_free_space(x->rec[i].buf) >= need) {
			*ri = i;
			return 0;
		}
	if (x->ni->mft_no == FILE_MFT)
		return ntfs_fail(ENOSPC, "%s: $MFT's runlist no longer fits in its records and "
				 "giving $MFT more extension records is not implemented", x->what);
	if (x->spare_used < x->nspare) {
		err = xrec_get(x, x->spare[x->spare_used], 0, ri);
		if (err)
			return err;
		x->spare_used++;
		r = &x->rec[*ri];
		if (!record_is_empty(r->buf))
			return ntfs_fail(EIO, "%s: MFT record %llu, just allocated, is not empty",
					 x->what, (unsigned long long)r->no);
		r->spare = true;
		return 0;
	}
	err = xgrow(&x->rec, &x->rec_cap, x->nrec, sizeof(*x->rec));
	if (err)
		return err;
	buf = malloc(x->rec_size);
	if (!buf)
		return -ENOMEM;
	ntfs_mft_record_format_empty(x->vol, buf, 0, 1, 0, x->ni->mft_no);
	x->rec[x->nrec] = (struct xrec){ .buf = buf, .virt = true };
	*ri = x->nrec++;
	x->need++;
	return 0;
}

/* A new, empty extent record of the attribute starting at vcn, in rec. */
static struct ntfs_attr_record *extent_insert(struct xupdate *x, uint8_t *rec, int64_t vcn)
{
	struct ntfs_attr *na = x->na;
	struct ntfs_mft_record *m = (void *)rec;
	uint32_t hdr = attr_nonresident_header_size(x->flags), len = ALIGN8(hdr + 2u * na->name_len);
	struct ntfs_attr_record *a;

	a = ntfs_attr_record_insert(rec, sorted_insert_offset(x->vol, rec, na->type, na->name,
							      na->name_len, vcn),
				    na->type, len);
	if (!a)
		return NULL;
	a->non_resident = 1;
	a->name_length = (uint8_t)na->name_len;
	a->name_offset = cpu_to_le16((uint16_t)hdr);
	a->flags = cpu_to_le16(x->flags);
	a->instance = m->next_attr_instance;
	m->next_attr_instance = cpu_to_le16((uint16_t)(le16(m->next_attr_instance) + 1));
	a->u.nr.lowest_vcn = cpu_to_le64((uint64_t)vcn);
	a->u.nr.highest_vcn = cpu_to_le64((uint64_t)(vcn - 1));
	a->u.nr.mapping_pairs_offset = cpu_to_le16((uint16_t)len);
	a->u.nr.compression_unit = x->cu;
	if (na->name_len)
		memcpy((uint8_t *)a + hdr, na->name, 2u * na->name_len);
	return a;
}

/* Re-encode old extent s at vcn: its old range when that still encodes in
 * place (a run boundary, not the last extent), else as much as fits. */
static int slot_refill(struct xupdate *x, const struct xslot *s, bool last, uint32_t reserve,
		       int64_t vcn, int64_t *stop)
{
	struct xrec *r = &x->rec[s->rec];
	struct ntfs_attr_record *a = ntfs_mft_record_find_instance(r->buf, x->na->type,
								   s->instance);
	struct ntfs_runlist view;
	uint32_t room;
	int err = -E2BIG;

	room = le32(a->length) + ntfs_mft_record_free_space(r->buf);
	if (s->rec == 0)
		room = room > reserve ? room - reserve : 0;
	a->u.nr.lowest_vcn = cpu_to_le64((uint64_t)vcn);
	if (!last && s->lowest == vcn && s->stop > vcn && s->stop <= x->end &&
	    !ntfs_rl_prefix_view(&x->na->rl, s->stop, &view))
		err = attr_record_set_runlist(r->buf, a, &view, x->flags, false, room, stop);
	if (err == -E2BIG)
		err = attr_record_set_runlist(r->buf, a, &x->na->rl, x->flags, true, room, stop);
	if (err == -E2BIG) {
		ntfs_attr_record_remove(r->buf, a);
		return 1;
	}
	return err ? err : extent_placed(x, s->rec, a, vcn, *stop);
}

/* Lay the runlist out over the records (see the comment above). */
static int place(struct xupdate *x, uint32_t reserve)
{
	int64_t vcn = 0, stop;
	size_t i, ri;
	int err;

	for (i = 0; i < x->nold; i++) {
		const struct xslot *s = &x->old[i];

		if (x->next && vcn >= x->end) {
			struct xrec *r = &x->rec[s->rec];

			ntfs_attr_record_remove(r->buf, ntfs_mft_record_find_instance(
							r->buf, x->na->type, s->instance));
			continue;
		}
		err = slot_refill(x, s, i + 1 == x->nold, reserve, vcn, &stop);
		if (err < 0)
			return err;
		if (!err)
			vcn = stop;
	}
	while (!x->next || vcn < x->end) {
		struct ntfs_attr_record *a;
		struct xrec *r;

		err = pick_record(x, &ri);
		if (err)
			return err;
		r = &x->rec[ri];
		a = extent_insert(x, r->buf, vcn);
		err = a ? attr_record_set_runlist(r->buf, a, &x->na->rl, x->flags, true,
					     le32(a->length) + ntfs_mft_record_free_space(r->buf),
					     &stop)
			: -E2BIG;
		if (err == -E2BIG) {
			if (a)
				ntfs_attr_record_remove(r->buf, a);
			if (r->virt || r->spare || r->full)
				return ntfs_fail(E2BIG, "%s: an empty MFT record cannot hold an "
						 "extent of it", x->what);
			r->full = true;
			continue;
		}
		if (!err)
			err = extent_placed(x, ri, a, vcn, stop);
		if (err)
			return err;
		vcn = stop;
	}
	return 0;
}

/* Make x->al_new_rl exactly `clusters` clusters long (freshly allocated). */
static int al_clusters(struct xupdate *x, int64_t clusters)
{
	int64_t hint = x->al_old_rl.count ? x->al_old_rl.runs[0].lcn : -1;
	int err;

	if (ntfs_rl_end_vcn(&x->al_new_rl) == clusters)
		return 0;
	if (x->al_new_rl.count) {
		err = ntfs_cluster_free_from_rl(x->vol, &x->al_new_rl, 0);
		if (err)
			return err;
		ntfs_runlist_free(&x->al_new_rl);
	}
	return ntfs_cluster_alloc(x->vol, clusters, hint, &x->al_new_rl);
}

/* Build the new attribute list; *len gets the length its attribute record
 * will have in the base record (0: no list any more). */
static int al_plan(struct xupdate *x, bool nonres, uint32_t *len)
{
	struct ntfs_attr *na = x->na;
	uint32_t bits = x->vol->geo.cluster_size_bits;
	ssize_t mp;
	int err;

	for (size_t i = 0; i < x->next; i++) {
		const struct xslot *e = &x->ext[i];
		const struct xrec *r = &x->rec[e->rec];

		err = ntfs_al_append(&x->al, na->type, na->name, (uint8_t)na->name_len, e->lowest,
				     r->no | (uint64_t)record_seq(r->buf) << 48, e->instance);
		if (err)
			return err;
	}
	err = ntfs_al_sort(&x->al, x->vol->upcase, x->vol->upcase_len);
	if (err)
		return err;
	x->al_needed = !ntfs_al_all_in(&x->al, x->ni->mft_no);
	if (!x->al_needed) {
		x->al_changed = x->had_al;
		*len = 0;
		return 0;
	}
	x->al_new_size = ntfs_al_encoded_size(&x->al);
	x->al_new = malloc(x->al_new_size);
	if (!x->al_new)
		return -ENOMEM;
	ntfs_al_encode(&x->al, x->al_new);
	x->al_changed = !x->had_al || x->al_new_size != x->al_old_size ||
			memcmp(x->al_new, x->al_old, x->al_new_size);
	if (!x->al_changed) {
		x->al_nonres = x->al_old_nonres;
		*len = x->al_old_len;
		return 0;
	}
	x->al_nonres = nonres;
	if (!nonres) {
		*len = ALIGN8(NTFS_ATTR_RESIDENT_HEADER_SIZE + x->al_new_size);
		return 0;
	}
	err = al_clusters(x, (int64_t)((x->al_new_size + x->vol->geo.cluster_size - 1) >> bits));
	if (err)
		return err;
	mp = ntfs_mapping_pairs_size(&x->al_new_rl, 0, 0, NULL);
	if (mp < 0)
		return (int)mp;
	*len = ALIGN8(NTFS_ATTR_NONRESIDENT_HEADER_SIZE + (uint32_t)mp);
	return 0;
}

/* Rewrite (or add, or remove) the $ATTRIBUTE_LIST record of the base
 * record copy as al_plan decided; the room was checked. */
static int al_record_store(struct xupdate *x, uint32_t len)
{
	uint8_t *base = x->rec[0].buf;
	struct ntfs_mft_record *m = (void *)base;
	struct ntfs_attr_record *a = NULL;
	uint16_t instance;

	if (x->had_al)
		a = ntfs_mft_record_find_instance(base, AT_ATTRIBUTE_LIST, x->al_instance);
	if (!x->al_needed) {
		if (a)
			ntfs_attr_record_remove(base, a);
		return 0;
	}
	if (!x->al_changed)
		return 0;
	if (a) {
		instance = x->al_instance;
		if (ntfs_attr_record_resize(base, a, len))
			return ntfs_fail(E2BIG, "%s: no room for the $ATTRIBUTE_LIST", x->what);
	} else {
		instance = le16(m->next_attr_instance);
		m->next_attr_instance = cpu_to_le16((uint16_t)(instance + 1));
		a = ntfs_attr_record_insert(base, sorted_insert_offset(x->vol, base,
								       AT_ATTRIBUTE_LIST, NULL, 0, 0),
					    AT_ATTRIBUTE_LIST, len);
		if (!a)
			return ntfs_fail(E2BIG, "%s: no room for the $ATTRIBUTE_LIST", x->what);
	}
	memset(a, 0, len);
	a->type = cpu_to_le32(AT_ATTRIBUTE_LIST);
	a->length = cpu_to_le32(len);
	a->instance = cpu_to_le16(instance);
	if (!x->al_nonres) {
		a->name_offset = cpu_to_le16(NTFS_ATTR_RESIDENT_HEADER_SIZE);
		a->u.r.value_length = cpu_to_le32(x->al_new_size);
		a->u.r.value_offset = cpu_to_le16(NTFS_ATTR_RESIDENT_HEADER_SIZE);
		memcpy((uint8_t *)a + NTFS_ATTR_RESIDENT_HEADER_SIZE, x->al_new, x->al_new_size);
		return 0;
	}
	{
		int64_t clusters = ntfs_rl_end_vcn(&x->al_new_rl);
		uint32_t hdr = NTFS_ATTR_NONRESIDENT_HEADER_SIZE;
		ssize_t n;

		a->non_resident = 1;
		a->name_offset = cpu_to_le16((uint16_t)hdr);
		a->u.nr.lowest_vcn = 0;
		a->u.nr.highest_vcn = cpu_to_le64((uint64_t)(clusters - 1));
		a->u.nr.mapping_pairs_offset = cpu_to_le16((uint16_t)hdr);
		a->u.nr.allocated_size =
			cpu_to_le64((uint64_t)clusters << x->vol->geo.cluster_size_bits);
		a->u.nr.data_size = cpu_to_le64(x->al_new_size);
		a->u.nr.initialized_size = cpu_to_le64(x->al_new_size);
		n = ntfs_mapping_pairs_build(&x->al_new_rl, 0, (uint8_t *)a + hdr, len - hdr, NULL);
		return n < 0 ? (int)n : 0;
	}
}

/* The new non-resident list's bytes into its (fresh) clusters, the rest of
 * the last cluster zeroed. */
static int al_write_clusters(struct xupdate *x)
{
	uint32_t bits = x->vol->geo.cluster_size_bits;
	size_t total = (size_t)ntfs_rl_end_vcn(&x->al_new_rl) << bits, done = 0;
	uint8_t *buf = calloc(1, total);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, x->al_new, x->al_new_size);
	for (size_t i = 0; !err && i < x->al_new_rl.count; i++) {
		const struct ntfs_run *r = &x->al_new_rl.runs[i];

		err = ntfs_device_pwrite(x->vol->dev, buf + done, (size_t)r->length << bits,
					 (uint64_t)r->lcn << bits);
		done += (size_t)r->length << bits;
	}
	free(buf);
	return err;
}

static bool record_changed(const struct xupdate *x, const struct xrec *r)
{
	return memcmp(r->buf, r->orig, x->rec_size) != 0;
}

/* Keep the inode's cached base record and attribute list in step (copy:
 * the new list, allocated before anything was written). */
static void inode_refresh_list(struct xupdate *x, uint8_t *copy)
{
	struct ntfs_inode *ni = x->ni;

	memcpy(ni->mrec, x->rec[0].buf, x->rec_size);
	if (x->gains_sparse)
		ni->file_attributes |= FILE_ATTR_SPARSE_FILE;
	if (!x->al_needed || x->al_changed) {
		free(ni->attr_list);
		ni->attr_list = copy;
		ni->attr_list_size = copy ? x->al_new_size : 0;
	}
}

/* Write the layout: records gaining extents, then the base record (which
 * commits the new list), then records that only lost extents; records
 * left empty are freed later (x->to_free).  Once the base record is
 * written the call has succeeded: a later write failure leaves only an
 * extent nothing points at any more, which is logged, not returned (the
 * caller must not take back clusters the disk now maps). */
static int commit(struct xupdate *x, uint32_t al_len)
{
	struct xrec *base = &x->rec[0];
	uint8_t *copy = NULL;
	char msg[512] = "";
	int err;
	size_t i;

	err = al_record_store(x, al_len);
	if (err)
		return err;
	if (x->gains_sparse)
		attr_record_add_file_attributes(base->buf, FILE_ATTR_SPARSE_FILE);
	x->to_free = calloc(x->nrec, sizeof(*x->to_free));
	if (x->al_needed && x->al_changed)
		copy = malloc(x->al_new_size);
	if (!x->to_free || (x->al_needed && x->al_changed && !copy)) {
		free(copy);
		return -ENOMEM;
	}
	if (copy)
		memcpy(copy, x->al_new, x->al_new_size);
	if (x->al_needed && x->al_changed && x->al_nonres)
		err = al_write_clusters(x);
	for (i = 1; !err && i < x->nrec; i++)
		if (x->rec[i].holds_new && record_changed(x, &x->rec[i]))
			err = ntfs_mft_record_write(x->vol, x->rec[i].no, x->rec[i].buf);
	if (!err && record_changed(x, base))
		err = ntfs_mft_record_write(x->vol, base->no, base->buf);
	if (err) {
		free(copy);
		return err;
	}
	x->committed = true;
	inode_refresh_list(x, copy);
	for (i = 1; i < x->nrec; i++) {
		struct xrec *r = &x->rec[i];

		if (r->holds_new || !record_changed(x, r))
			continue;
		if (record_is_empty(r->buf)) {
			x->to_free[x->nto_free++] = r->no;
			continue;
		}
		if (ntfs_mft_record_write(x->vol, r->no, r->buf) && !msg[0])
			snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	}
	if (msg[0])
		ntfs_error("%s: dropping old extents after the new layout was written: %s (they "
			   "stay in their records, unreferenced)", x->what, msg);
	return 0;
}

static bool base_holds_extent(const struct xupdate *x)
{
	for (size_t i = 0; i < x->next; i++)
		if (x->ext[i].rec == 0)
			return true;
	return false;
}

/* Everything under vol->mft_lock: attempts until a layout fits, then the
 * writes.  NEED_RECORDS when x->need more records must be allocated. */
static int xupdate_locked(struct xupdate *x)
{
	uint32_t reserve = 0, len = 0, room;
	int nonres = -1, err;

	for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
		attempt_reset(x);
		err = attempt_load(x);
		if (err)
			return err;
		if (nonres < 0)
			nonres = x->had_al && x->al_old_nonres;
		err = place(x, reserve);
		if (err)
			return err;
		if (x->need)
			return NEED_RECORDS;
		err = al_plan(x, nonres, &len);
		if (err)
			return err;
		room = x->al_old_len + ntfs_mft_record_free_space(x->rec[0].buf);
		if (len <= room)
			return commit(x, len);
		if (base_holds_extent(x)) {
			reserve += ALIGN8(len - room) + 32u;
		} else if (!nonres) {
			nonres = 1;
			reserve = 0;
		} else {
			return ntfs_fail(ENOSPC, "%s: base MFT record %llu has no room left for the "
					 "$ATTRIBUTE_LIST (%u bytes short); moving other "
					 "attributes out of it is not implemented", x->what,
					 (unsigned long long)x->ni->mft_no, len - room);
		}
	}
	return ntfs_fail(EIO, "%s: no layout of its %lld clusters over MFT records found",
			 x->what, (long long)x->end);
}

static int spares_alloc(struct xupdate *x, size_t count)
{
	int err;

	while (count--) {
		err = xgrow(&x->spare, &x->spare_cap, x->nspare, sizeof(*x->spare));
		if (!err)
			err = ntfs_mft_record_alloc(x->vol, x->ni->mft_no, x->ni->seq_no,
						    &x->spare[x->nspare]);
		if (err)
			return err;
		x->nspare++;
	}
	return 0;
}

/* After the lock is dropped: free what the new layout no longer uses
 * (emptied records, the old list's clusters) or what a failure left
 * unused (records and list clusters allocated for the call).  Failures
 * here leak (a record or clusters marked in use that nothing uses) and are
 * logged. */
static void xupdate_finish(struct xupdate *x)
{
	size_t first_unused = x->committed ? x->spare_used : 0;
	char msg[512] = "";

	for (size_t i = 0; i < x->nto_free; i++)
		if (ntfs_mft_record_free(x->vol, x->to_free[i]) && !msg[0])
			snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	for (size_t i = first_unused; i < x->nspare; i++)
		if (ntfs_mft_record_free(x->vol, x->spare[i]) && !msg[0])
			snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	if (x->committed && x->al_changed && x->had_al && x->al_old_nonres &&
	    ntfs_cluster_free_from_rl(x->vol, &x->al_old_rl, 0) && !msg[0])
		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	if (!(x->committed && x->al_needed && x->al_changed && x->al_nonres) &&
	    x->al_new_rl.count && ntfs_cluster_free_from_rl(x->vol, &x->al_new_rl, 0) && !msg[0])
		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	if (msg[0])
		ntfs_error("%s: cleaning up after rewriting its extents: %s (space leaked)",
			   x->what, msg);
	attempt_reset(x);
	ntfs_runlist_free(&x->al_new_rl);
	free(x->spare);
	free(x->to_free);
}

/* ---- the public operations ---- */

int ntfs_attr_update_mapping_pairs(struct ntfs_attr *na)
{
	return ntfs_attr_update_mapping_pairs_init(na, na->initialized_size);
}

int ntfs_attr_update_mapping_pairs_init(struct ntfs_attr *na, uint64_t record_init)
{
	struct ntfs_volume *vol = na->ni->vol;
	uint32_t bits = vol->geo.cluster_size_bits;
	int64_t end = ntfs_rl_end_vcn(&na->rl), alloc_clusters;
	struct xupdate x = { .na = na, .ni = na->ni, .vol = vol, .init = record_init };
	char what[160];
	int err;

	ntfs_attr_describe(na, what, sizeof(what));
	if (vol->flags & NTFS_OPEN_READ_ONLY)
		return ntfs_fail(EROFS, "%s: the volume is open read-only", what);
	if (na->resident)
		return ntfs_fail(EINVAL, "%s: resident: no mapping pairs", what);
	err = attr_runlist_check(na, &na->rl);
	if (err)
		return err;
	x.what = what;
	x.rec_size = vol->geo.mft_record_size;
	x.end = end;
	x.allocated = (uint64_t)end << bits;
	if (na->initialized_size > na->data_size || record_init > na->initialized_size ||
	    na->data_size > x.allocated)
		return ntfs_fail(EINVAL, "%s: sizes do not fit the runlist (data %llu, initialized "
				 "%llu, runlist %llu bytes)", what,
				 (unsigned long long)na->data_size,
				 (unsigned long long)na->initialized_size,
				 (unsigned long long)x.allocated);
	alloc_clusters = ntfs_rl_allocated(&na->rl, 0, end);
	x.compressed = (uint64_t)alloc_clusters << bits;
	x.flags = na->flags;
	x.gains_sparse = alloc_clusters < end && !attr_flags_need_compressed_size(x.flags);
	if (x.gains_sparse) {
		x.flags |= ATTR_IS_SPARSE;
		x.cu = attr_sparse_compression_unit(&vol->geo);
	}

	for (int round = 0;; round++) {
		pthread_mutex_lock(&vol->mft_lock);
		err = xupdate_locked(&x);
		xcache_free(&x);
		pthread_mutex_unlock(&vol->mft_lock);
		if (err != NEED_RECORDS)
			break;
		if (round + 1 == MAX_ROUNDS) {
			err = ntfs_fail(EAGAIN, "%s: the inode kept changing while MFT records were "
					"allocated for it", what);
			break;
		}
		err = spares_alloc(&x, x.need);
		if (err)
			break;
	}
	if (!err) {
		na->flags = x.flags;
		na->allocated_size = x.allocated;
		if (attr_flags_need_compressed_size(x.flags))
			na->compressed_size = x.compressed;
	}
	xupdate_finish(&x);
	return err;
}
