/*
 * lcnalloc.c — see lcnalloc.h.
 *
 * Invariants: bm->bits is $Bitmap's data (bm->size bytes) as it is on disk
 * whenever bm->lock is free; bm->free is the number of clear bits below
 * nr_clusters in it.  Under the lock a call first changes the in-memory
 * bits and records each changed cluster range as a span, then writes the
 * spans' bytes (widened to device sectors, clipped to the bitmap's size),
 * and on a write error undoes every span in memory and rewrites what it had
 * already written (best effort: if that fails too, the disk says "in use"
 * for clusters nothing uses, the safe side).  bm->data_pos only steers
 * allocations without a hint.
 *
 * The MFT zone.  NTFS keeps a stretch of clusters after $MFT free so the
 * MFT can grow without fragmenting, and fills it only when the rest of the
 * volume is full (Microsoft KB174619, "the MFT zone").  Its size is a
 * fraction of the volume chosen by the NtfsMftZoneReservation setting, 1 by
 * default = 12.5%; the setting is not stored on the volume, so we use the
 * default, as ntfs-3g does.  The zone starts at $MFT's first cluster; when
 * $MFT sits where a standard format puts it (at or before the first cluster
 * that is both past the first 16 KiB and at least one cluster past the
 * 8 KiB boot area), the zone is stretched back to cluster 0 so that the
 * $MFT bitmap and the other small system files mkntfs puts in front of
 * $MFT are inside it too.  A zone that would reach past the volume is
 * halved until it fits.  This is the zone ntfs-3g computes and `ntfsinfo -m` prints ("MFT Zone Start/End"),
 * which the tests compare against.  Windows since Vista starts with a fixed
 * 200 MiB zone instead (KB961095).  We keep the 12.5% rule because it is
 * what ntfs-3g, the other implementation likely to write these volumes,
 * keeps free too, and because it can be checked against ntfs-3g; the zone
 * is an order of preference, never a limit, so either choice is correct on
 * any volume.
 */
#include "lcnalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr_write.h"
#include "attrib.h"
#include "error.h"
#include "inode.h"
#include "volume.h"

/* After this many "largest free extent" picks for one allocation, the rest
 * is taken extent by extent going forward: bounds the cost on a badly
 * fragmented volume to a few scans of the bitmap. */
#define LARGEST_PICKS_MAX 8

struct ntfs_lcn_bitmap {
	pthread_mutex_t lock;
	struct ntfs_inode *ni;          /* $Bitmap */
	struct ntfs_attr *na;           /* its unnamed $DATA */
	uint8_t *bits;
	uint64_t size;                  /* bytes in bits (the attribute's data_size) */
	int64_t nr_clusters;
	int64_t free;
	int64_t zone_start, zone_end;   /* the MFT zone */
	int64_t data_pos;               /* where an allocation without a hint starts */
};

struct span {
	int64_t lcn, len;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

/* ------------------------------------------------------------------ */
/* bits                                                                 */
/* ------------------------------------------------------------------ */

static inline bool bit_test(const uint8_t *b, int64_t i)
{
	return b[i >> 3] >> (i & 7) & 1;
}

static void bits_set(uint8_t *b, int64_t lcn, int64_t len, bool on)
{
	int64_t i = lcn, end = lcn + len;

	for (; i < end && (i & 7); i++)
		b[i >> 3] = on ? b[i >> 3] | 1u << (i & 7) : b[i >> 3] & ~(1u << (i & 7));
	if (end - i >= 8) {
		memset(b + (i >> 3), on ? 0xff : 0, (size_t)((end - i) >> 3));
		i += (end - i) & ~(int64_t)7;
	}
	for (; i < end; i++)
		b[i >> 3] = on ? b[i >> 3] | 1u << (i & 7) : b[i >> 3] & ~(1u << (i & 7));
}

/* First bit in [from, limit) whose value is `want`, or limit. */
static int64_t bits_find(const uint8_t *b, int64_t from, int64_t limit, bool want)
{
	const uint8_t skip = want ? 0x00 : 0xff;   /* bytes holding no such bit */
	int64_t i = from;

	while (i < limit && (i & 7)) {
		if (bit_test(b, i) == want)
			return i;
		i++;
	}
	while (limit - i >= 64) {
		uint64_t w;

		memcpy(&w, b + (i >> 3), 8);
		if (w != (want ? 0 : ~0ull))
			break;
		i += 64;
	}
	while (limit - i >= 8 && b[i >> 3] == skip)
		i += 8;
	for (; i < limit; i++)
		if (bit_test(b, i) == want)
			return i;
	return limit;
}

/* Clear bits in [0, nbits) of b. */
static int64_t bits_count_clear(const uint8_t *b, int64_t nbits)
{
	int64_t set = 0, i = 0;

	for (; nbits - i >= 64; i += 64) {
		uint64_t w;

		memcpy(&w, b + (i >> 3), 8);
		set += __builtin_popcountll(w);
	}
	for (; i < nbits; i++)
		set += bit_test(b, i);
	return nbits - set;
}

/* ------------------------------------------------------------------ */
/* write-through                                                        */
/* ------------------------------------------------------------------ */

static int spans_add(struct spans *s, int64_t lcn, int64_t len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct span *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (struct span){ lcn, len };
	return 0;
}

/* The bytes holding clusters [lcn, lcn + len), widened to whole sectors and
 * clipped to the bitmap. */
static void span_bytes(const struct ntfs_volume *vol, const struct ntfs_lcn_bitmap *bm,
		       const struct span *sp, uint64_t *start, uint64_t *end)
{
	uint64_t sector = vol->geo.sector_size;

	*start = (uint64_t)sp->lcn >> 3;
	*end = ((uint64_t)(sp->lcn + sp->len - 1) >> 3) + 1;
	*start -= *start % sector;
	*end += (sector - *end % sector) % sector;
	if (*end > bm->size)
		*end = bm->size;
}

/* Write the bytes of spans [0, n) from memory.  *done: how many were written
 * before an error. */
static int bitmap_write_spans(struct ntfs_volume *vol, struct ntfs_lcn_bitmap *bm,
			      const struct spans *s, size_t *done)
{
	uint64_t last_start = 1, last_end = 0;   /* empty */
	size_t i;

	for (i = 0; i < s->n; i++) {
		uint64_t start, end;
		int err;

		span_bytes(vol, bm, &s->v[i], &start, &end);
		if (start >= last_start && end <= last_end)
			continue;   /* the previous write covered it */
		err = ntfs_attr_pwrite_mapped(bm->na, start, (size_t)(end - start), bm->bits + start);
		if (err) {
			*done = i;
			return err;
		}
		last_start = start;
		last_end = end;
	}
	*done = s->n;
	return 0;
}

/* Undo spans [0, n) in memory (they were set when `were_set`), then put the
 * first `written` back on disk as well.  Keeps the first error message. */
static void bitmap_undo_spans(struct ntfs_volume *vol, struct ntfs_lcn_bitmap *bm,
			      const struct spans *s, bool were_set, size_t written)
{
	struct spans head = { .v = s->v, .n = written, .cap = written };
	char msg[512];
	size_t i, done;

	for (i = s->n; i-- > 0;) {
		bits_set(bm->bits, s->v[i].lcn, s->v[i].len, !were_set);
		bm->free += were_set ? s->v[i].len : -s->v[i].len;
	}
	if (written) {
		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		bitmap_write_spans(vol, bm, &head, &done);
		ntfs_error("%s", msg);
	}
}

/* Write spans [0, s->n) through; on error undo all of them. */
static int bitmap_commit(struct ntfs_volume *vol, struct ntfs_lcn_bitmap *bm,
			 const struct spans *s, bool were_set)
{
	size_t done;
	int err = bitmap_write_spans(vol, bm, s, &done);

	if (err) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		ntfs_error("$Bitmap: write-through failed, change undone: %s", msg);
		bitmap_undo_spans(vol, bm, s, were_set, done);
	}
	return err;
}

/* ------------------------------------------------------------------ */
/* load                                                                 */
/* ------------------------------------------------------------------ */

void ntfs_mft_zone(const struct ntfs_volume *vol, int64_t *start, int64_t *end)
{
	const struct ntfs_geometry *g = &vol->geo;
	int64_t nr = (int64_t)g->nr_clusters, size = nr / 8, cs = g->cluster_size;
	int64_t mft = (int64_t)g->mft_lcn, std_lcn, past_boot;

	std_lcn = (16384 + cs - 1) / cs;
	past_boot = (8192 + cs - 1) / cs + 1;
	if (past_boot > std_lcn)
		std_lcn = past_boot;
	*start = mft <= std_lcn ? 0 : mft;
	*end = mft + size;
	while (*end >= nr && size) {
		size >>= 1;
		*end = mft + size;
	}
	if (*end > nr)
		*end = nr;
}

static int lcn_bitmap_open(struct ntfs_volume *vol, struct ntfs_inode **ni, struct ntfs_attr **na)
{
	int err = ntfs_inode_open(vol, FILE_Bitmap, ni);

	if (err)
		return err;
	err = ntfs_attr_open(*ni, AT_DATA, NULL, 0, na);
	if (err) {
		ntfs_inode_close(*ni);
		*ni = NULL;
		return err == -ENOENT ? ntfs_fail(EIO, "$Bitmap has no $DATA attribute") : err;
	}
	if ((*na)->data_size * 8 < vol->geo.nr_clusters) {
		err = ntfs_fail(EIO, "$Bitmap: %llu bytes cannot cover the volume's %llu clusters",
				(unsigned long long)(*na)->data_size,
				(unsigned long long)vol->geo.nr_clusters);
		ntfs_attr_close(*na);
		ntfs_inode_close(*ni);
		*na = NULL;
		*ni = NULL;
	}
	return err;
}

int ntfs_lcn_bitmap_load(struct ntfs_volume *vol)
{
	struct ntfs_lcn_bitmap *bm = calloc(1, sizeof(*bm));
	ssize_t n;
	int err;

	if (!bm)
		return -ENOMEM;
	pthread_mutex_init(&bm->lock, NULL);
	vol->lcn_bitmap = bm;
	err = lcn_bitmap_open(vol, &bm->ni, &bm->na);
	if (err)
		return err;
	if (bm->na->resident || bm->na->flags & (ATTR_COMPRESSION_MASK | ATTR_IS_SPARSE |
						  ATTR_IS_ENCRYPTED))
		return ntfs_fail(EIO, "$Bitmap/$DATA is %s: cannot write it in place",
				 bm->na->resident ? "resident" : "compressed, sparse or encrypted");
	if (bm->na->initialized_size != bm->na->data_size)
		return ntfs_fail(EIO, "$Bitmap/$DATA: initialized size %llu differs from its size "
				 "%llu", (unsigned long long)bm->na->initialized_size,
				 (unsigned long long)bm->na->data_size);
	if (bm->na->data_size > SIZE_MAX - 8)
		return -ENOMEM;
	bm->size = bm->na->data_size;
	/* 8 spare zero bytes so word loads near the end stay inside. */
	bm->bits = calloc(1, (size_t)bm->size + 8);
	if (!bm->bits)
		return ntfs_fail(ENOMEM, "$Bitmap: cannot hold %llu bytes in memory",
				 (unsigned long long)bm->size);
	n = ntfs_attr_pread(bm->na, 0, (size_t)bm->size, bm->bits);
	if (n < 0)
		return (int)n;
	if ((uint64_t)n != bm->size)
		return ntfs_fail(EIO, "$Bitmap: short read");
	bm->nr_clusters = (int64_t)vol->geo.nr_clusters;
	bm->free = bits_count_clear(bm->bits, bm->nr_clusters);
	ntfs_mft_zone(vol, &bm->zone_start, &bm->zone_end);
	bm->data_pos = bm->zone_end < bm->nr_clusters ? bm->zone_end : 0;
	return 0;
}

void ntfs_lcn_bitmap_free(struct ntfs_volume *vol)
{
	struct ntfs_lcn_bitmap *bm = vol->lcn_bitmap;

	if (!bm)
		return;
	ntfs_attr_close(bm->na);
	ntfs_inode_close(bm->ni);
	free(bm->bits);
	pthread_mutex_destroy(&bm->lock);
	free(bm);
	vol->lcn_bitmap = NULL;
}

/* ------------------------------------------------------------------ */
/* allocation                                                           */
/* ------------------------------------------------------------------ */

/* A region of the volume: up to two cluster intervals, in lcn order. */
struct region {
	int64_t b[2], e[2];
	int n;
};

/* The pieces of a region to scan, in order, when starting at `start` and
 * wrapping around once. */
static int region_segments(const struct region *r, int64_t start, int64_t sb[3], int64_t se[3])
{
	int i, n = 0, split = -1;

	for (i = 0; i < r->n; i++)
		if (r->e[i] > start) {
			if (r->b[i] < start)
				split = i;
			sb[n] = r->b[i] > start ? r->b[i] : start;
			se[n++] = r->e[i];
		}
	for (i = 0; i < r->n; i++)
		if (r->e[i] <= start) {
			sb[n] = r->b[i];
			se[n++] = r->e[i];
		}
	if (split >= 0) {
		sb[n] = r->b[split];
		se[n++] = start;
	}
	return n;
}

/* Scan the region from start.  Returns true with *fit set to the first free
 * extent of at least need clusters; otherwise false, *largest the largest
 * free extent seen (length 0 when the region is full). */
static bool region_scan(const struct ntfs_lcn_bitmap *bm, const struct region *r, int64_t start,
			int64_t need, struct span *fit, struct span *largest)
{
	int64_t sb[3], se[3];
	int i, n = region_segments(r, start, sb, se);

	*largest = (struct span){ 0, 0 };
	for (i = 0; i < n; i++) {
		int64_t p = sb[i];

		while (p < se[i]) {
			int64_t f = bits_find(bm->bits, p, se[i], false), u;

			if (f == se[i])
				break;
			u = bits_find(bm->bits, f, se[i], true);
			if (u - f >= need) {
				*fit = (struct span){ f, u - f };
				return true;
			}
			if (u - f > largest->len)
				*largest = (struct span){ f, u - f };
			p = u;
		}
	}
	return false;
}

/* Append [lcn, lcn + len) at the end of rl, merging with its last run when
 * that ends right where this starts. */
static int rl_push(struct ntfs_runlist *rl, int64_t lcn, int64_t len)
{
	int64_t vcn = ntfs_rl_end_vcn(rl);

	if (rl->count) {
		struct ntfs_run *last = &rl->runs[rl->count - 1];

		if (last->lcn >= 0 && last->lcn + last->length == lcn) {
			last->length += len;
			return 0;
		}
	}
	if (rl->count == rl->capacity) {
		size_t cap = rl->capacity ? rl->capacity * 2 : 8;
		struct ntfs_run *v = realloc(rl->runs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		rl->runs = v;
		rl->capacity = cap;
	}
	rl->runs[rl->count++] = (struct ntfs_run){ .vcn = vcn, .lcn = lcn, .length = len };
	return 0;
}

/* Take [lcn, lcn + len): mark it in memory, note the span, add the run. */
static int take(struct ntfs_lcn_bitmap *bm, struct spans *s, struct ntfs_runlist *out,
		int64_t lcn, int64_t len)
{
	int err = spans_add(s, lcn, len);

	if (err)
		return err;
	err = rl_push(out, lcn, len);
	if (err) {
		s->n--;
		return err;
	}
	bits_set(bm->bits, lcn, len, true);
	bm->free -= len;
	return 0;
}

/* Allocate up to *remaining clusters from region r starting near start. */
static int alloc_from_region(struct ntfs_lcn_bitmap *bm, const struct region *r, int64_t start,
			     int64_t *remaining, struct spans *s, struct ntfs_runlist *out)
{
	int picks = 0;

	while (*remaining > 0) {
		struct span ext, largest;
		int64_t len;
		int err;

		if (picks < LARGEST_PICKS_MAX) {
			if (!region_scan(bm, r, start, *remaining, &ext, &largest)) {
				if (!largest.len)
					return 0;   /* region full */
				ext = largest;
				picks++;
			}
		} else if (!region_scan(bm, r, start, 1, &ext, &largest)) {
			return 0;           /* region full */
		}
		len = ext.len < *remaining ? ext.len : *remaining;
		err = take(bm, s, out, ext.lcn, len);
		if (err)
			return err;
		*remaining -= len;
		start = ext.lcn + len;
		if (start >= bm->nr_clusters)
			start = 0;
	}
	return 0;
}

static bool in_zone(const struct ntfs_lcn_bitmap *bm, int64_t lcn)
{
	return lcn >= bm->zone_start && lcn < bm->zone_end;
}

/* Where to start looking in the data region (everything but the MFT zone). */
static int64_t data_start(const struct ntfs_lcn_bitmap *bm, int64_t hint_lcn)
{
	int64_t start = hint_lcn >= 0 && hint_lcn < bm->nr_clusters ? hint_lcn : bm->data_pos;

	if (in_zone(bm, start))
		start = bm->zone_end < bm->nr_clusters ? bm->zone_end : 0;
	return start;
}

static int cluster_alloc(struct ntfs_volume *vol, int64_t count, int64_t hint_lcn, bool for_mft,
			 struct ntfs_runlist *out)
{
	struct ntfs_lcn_bitmap *bm = vol->lcn_bitmap;
	struct region data = { .n = 0 }, zone = { .n = 0 };
	struct spans s = { 0 };
	size_t count0 = out->count;
	bool had_runs = out->runs != NULL;
	int64_t last_len0 = count0 ? out->runs[count0 - 1].length : 0;
	int64_t remaining = count, zone_from;
	int err = 0;

	if (count <= 0)
		return ntfs_fail(EINVAL, "cluster allocation of %lld clusters", (long long)count);
	if (!bm)
		return ntfs_fail(EROFS, "%s: cannot allocate clusters: volume opened read-only",
				 vol->dev->path);
	pthread_mutex_lock(&bm->lock);
	if (count > bm->free) {
		err = ntfs_fail(ENOSPC, "%s: %lld clusters wanted, %lld free", vol->dev->path,
				(long long)count, (long long)bm->free);
		goto out;
	}
	if (bm->zone_start > 0) {
		data.b[data.n] = 0;
		data.e[data.n++] = bm->zone_start;
	}
	if (bm->zone_end < bm->nr_clusters) {
		data.b[data.n] = bm->zone_end;
		data.e[data.n++] = bm->nr_clusters;
	}
	zone.b[0] = bm->zone_start;
	zone.e[0] = bm->zone_end;
	zone.n = bm->zone_end > bm->zone_start;

	if (for_mft) {
		/* $MFT itself: the zone first, from the hint (just past $MFT). */
		zone_from = in_zone(bm, hint_lcn) ? hint_lcn : bm->zone_start;
		err = alloc_from_region(bm, &zone, zone_from, &remaining, &s, out);
		if (!err && remaining > 0)
			err = alloc_from_region(bm, &data, data_start(bm, hint_lcn), &remaining, &s,
						out);
	} else {
		err = alloc_from_region(bm, &data, data_start(bm, hint_lcn), &remaining, &s, out);
		if (!err && remaining > 0) {
			/* The rest of the volume is full: eat into the MFT zone from its
			 * middle on, so the clusters right after $MFT go last. */
			zone_from = in_zone(bm, hint_lcn)
					    ? hint_lcn
					    : bm->zone_start + (bm->zone_end - bm->zone_start) / 2;
			err = alloc_from_region(bm, &zone, zone_from, &remaining, &s, out);
		}
	}
	if (!err && remaining > 0)
		err = ntfs_fail(EIO, "$Bitmap: %lld clusters counted free but not found",
				(long long)remaining);
	if (!err)
		err = bitmap_commit(vol, bm, &s, true);
	else
		bitmap_undo_spans(vol, bm, &s, true, 0);
	if (err) {
		out->count = count0;
		if (count0)
			out->runs[count0 - 1].length = last_len0;
		/* a list that had no runs gets none: callers handing in an
		 * empty one return on failure without freeing it (a $Bitmap
		 * write that fails with EIO leaked the array rl_push made) */
		if (!had_runs)
			ntfs_runlist_free(out);
	} else if (s.n && !in_zone(bm, s.v[s.n - 1].lcn)) {
		struct span *last = &s.v[s.n - 1];

		bm->data_pos = last->lcn + last->len < bm->nr_clusters ? last->lcn + last->len : 0;
	}
out:
	pthread_mutex_unlock(&bm->lock);
	free(s.v);
	return err;
}

int ntfs_cluster_alloc(struct ntfs_volume *vol, int64_t count, int64_t hint_lcn,
		       struct ntfs_runlist *out)
{
	return cluster_alloc(vol, count, hint_lcn, false, out);
}

int ntfs_cluster_alloc_mft(struct ntfs_volume *vol, int64_t count, int64_t hint_lcn,
			   struct ntfs_runlist *out)
{
	return cluster_alloc(vol, count, hint_lcn, true, out);
}

/* ------------------------------------------------------------------ */
/* freeing                                                              */
/* ------------------------------------------------------------------ */

/* Clear [lcn, lcn + len) in memory after checking every cluster in it is in
 * use; note the span. */
static int release(struct ntfs_volume *vol, struct ntfs_lcn_bitmap *bm, struct spans *s,
		   int64_t lcn, int64_t len)
{
	int64_t f = bits_find(bm->bits, lcn, lcn + len, false);
	int err;

	if (f < lcn + len)
		return ntfs_fail(EIO, "%s: freeing clusters %lld..%lld, but cluster %lld is "
				 "already free: a runlist or $Bitmap is corrupted",
				 vol->dev->path, (long long)lcn, (long long)(lcn + len - 1),
				 (long long)f);
	err = spans_add(s, lcn, len);
	if (err)
		return err;
	bits_set(bm->bits, lcn, len, false);
	bm->free += len;
	return 0;
}

static int check_range(struct ntfs_volume *vol, int64_t lcn, int64_t count)
{
	if (lcn < 0 || count <= 0 || lcn > (int64_t)vol->geo.nr_clusters ||
	    count > (int64_t)vol->geo.nr_clusters - lcn)
		return ntfs_fail(EINVAL, "%s: cannot free %lld clusters at lcn %lld: outside the "
				 "volume (%llu clusters)", vol->dev->path, (long long)count,
				 (long long)lcn, (unsigned long long)vol->geo.nr_clusters);
	return 0;
}

int ntfs_cluster_free(struct ntfs_volume *vol, int64_t lcn, int64_t count)
{
	struct ntfs_lcn_bitmap *bm = vol->lcn_bitmap;
	struct spans s = { 0 };
	int err = check_range(vol, lcn, count);

	if (err)
		return err;
	if (!bm)
		return ntfs_fail(EROFS, "%s: cannot free clusters: volume opened read-only",
				 vol->dev->path);
	pthread_mutex_lock(&bm->lock);
	err = release(vol, bm, &s, lcn, count);
	if (!err)
		err = bitmap_commit(vol, bm, &s, false);
	pthread_mutex_unlock(&bm->lock);
	free(s.v);
	return err;
}

int ntfs_cluster_free_from_rl(struct ntfs_volume *vol, const struct ntfs_runlist *rl,
			      int64_t start_vcn)
{
	struct ntfs_lcn_bitmap *bm = vol->lcn_bitmap;
	struct spans s = { 0 };
	size_t i;
	int err = 0;

	if (start_vcn < 0)
		return ntfs_fail(EINVAL, "freeing a runlist from vcn %lld", (long long)start_vcn);
	if (!bm)
		return ntfs_fail(EROFS, "%s: cannot free clusters: volume opened read-only",
				 vol->dev->path);
	pthread_mutex_lock(&bm->lock);
	for (i = 0; i < rl->count && !err; i++) {
		const struct ntfs_run *r = &rl->runs[i];
		int64_t skip = start_vcn > r->vcn ? start_vcn - r->vcn : 0;

		if (r->lcn < 0 || skip >= r->length)
			continue;
		err = check_range(vol, r->lcn + skip, r->length - skip);
		if (!err)
			err = release(vol, bm, &s, r->lcn + skip, r->length - skip);
	}
	if (err)
		bitmap_undo_spans(vol, bm, &s, false, 0);
	else
		err = bitmap_commit(vol, bm, &s, false);
	pthread_mutex_unlock(&bm->lock);
	free(s.v);
	return err;
}

/* ------------------------------------------------------------------ */
/* counting                                                             */
/* ------------------------------------------------------------------ */

/* A read-only volume has no bitmap in memory: count from the disk. */
static int64_t count_free_on_disk(struct ntfs_volume *vol)
{
	enum { CHUNK = 1 << 20 };
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	uint8_t *buf = malloc(CHUNK);
	int64_t nr = (int64_t)vol->geo.nr_clusters, done = 0, free_clusters = 0;
	int err;

	if (!buf)
		return -ENOMEM;
	err = lcn_bitmap_open(vol, &ni, &na);
	if (err) {
		free(buf);
		return err;
	}
	while (done < nr) {
		int64_t bits = nr - done < (int64_t)CHUNK * 8 ? nr - done : (int64_t)CHUNK * 8;
		size_t bytes = (size_t)((bits + 7) / 8);
		ssize_t n = ntfs_attr_pread(na, (uint64_t)done / 8, bytes, buf);

		if (n < 0 || (size_t)n != bytes) {
			free_clusters = n < 0 ? n : ntfs_fail(EIO, "$Bitmap: short read");
			break;
		}
		free_clusters += bits_count_clear(buf, bits);
		done += bits;
	}
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	free(buf);
	return free_clusters;
}

int64_t ntfs_volume_free_clusters(struct ntfs_volume *vol)
{
	struct ntfs_lcn_bitmap *bm = vol->lcn_bitmap;
	int64_t n;

	if (!bm)
		return count_free_on_disk(vol);
	pthread_mutex_lock(&bm->lock);
	n = bm->free;
	pthread_mutex_unlock(&bm->lock);
	return n;
}
