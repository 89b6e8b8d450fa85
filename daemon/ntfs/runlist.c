/*
 * runlist.c — mapping-pairs decoding and encoding, VCN lookup, editing.
 *
 * Invariants: see runlist.h.  Decoding reads only inside [mp, mp + len) and
 * rejects lengths <= 0, LCNs that go negative or run past the volume, VCN
 * arithmetic that would overflow, and an extent whose decoded end does not
 * match its highest_vcn.  Encoding writes only inside [dst, dst + dst_len)
 * and always ends with the 0 terminator.  Edits build the new run array
 * aside and swap it in only once it is complete, so a failed edit leaves
 * the runlist untouched.
 */
#include "runlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static int rl_append(struct ntfs_runlist *rl, int64_t vcn, int64_t lcn, int64_t length)
{
	if (rl->count == rl->capacity) {
		size_t cap = rl->capacity ? rl->capacity * 2 : 8;
		struct ntfs_run *r = realloc(rl->runs, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		rl->runs = r;
		rl->capacity = cap;
	}
	rl->runs[rl->count++] = (struct ntfs_run){ .vcn = vcn, .lcn = lcn, .length = length };
	return 0;
}

/* Sign-extended little-endian integer of n (1..8) bytes. */
static int64_t get_sle(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	if (n < 8 && (p[n - 1] & 0x80))
		v |= ~0ull << (8 * n);
	return (int64_t)v;
}

int64_t ntfs_rl_end_vcn(const struct ntfs_runlist *rl)
{
	const struct ntfs_run *last;

	if (!rl->count)
		return 0;
	last = &rl->runs[rl->count - 1];
	return last->vcn + last->length;
}

int ntfs_mapping_pairs_decode(struct ntfs_runlist *rl, const uint8_t *mp, size_t len,
			      int64_t lowest_vcn, int64_t highest_vcn, uint64_t nr_clusters,
			      const char *what)
{
	size_t pos = 0, first = rl->count;
	int64_t vcn = lowest_vcn, lcn = 0;
	int err;

	if (lowest_vcn < 0 || (rl->count && lowest_vcn != ntfs_rl_end_vcn(rl)) ||
	    (!rl->count && lowest_vcn != 0))
		return ntfs_fail(EIO, "%s: extent starting at vcn %lld does not continue the "
				 "runlist (which ends at vcn %lld)", what, (long long)lowest_vcn,
				 (long long)ntfs_rl_end_vcn(rl));
	while (pos < len && mp[pos]) {
		unsigned lb = mp[pos] & 0x0f, ob = mp[pos] >> 4;
		int64_t length, delta;

		if (lb == 0 || lb > 8 || ob > 8 || pos + 1 + lb + ob > len)
			goto corrupt;
		length = get_sle(mp + pos + 1, lb);
		if (length <= 0 || vcn > INT64_MAX - length)
			goto corrupt;
		if (ob) {
			delta = get_sle(mp + pos + 1 + lb, ob);
			if ((delta > 0 && lcn > INT64_MAX - delta) ||
			    (delta < 0 && lcn < INT64_MIN - delta))
				goto corrupt;
			lcn += delta;
			if (lcn < 0 || (uint64_t)lcn >= nr_clusters ||
			    (uint64_t)length > nr_clusters - (uint64_t)lcn) {
				rl->count = first;
				/* lcn + length may not be representable: print both. */
				return ntfs_fail(EIO, "%s: run at vcn %lld points to %lld "
						 "clusters from lcn %lld, outside the volume "
						 "(%llu clusters)", what, (long long)vcn,
						 (long long)length, (long long)lcn,
						 (unsigned long long)nr_clusters);
			}
		}
		err = rl_append(rl, vcn, ob ? lcn : LCN_HOLE, length);
		if (err) {
			rl->count = first;
			return ntfs_fail(ENOMEM, "%s: out of memory decoding runlist", what);
		}
		vcn += length;
		pos += 1 + lb + ob;
	}
	if (pos >= len)
		goto corrupt;  /* no terminating zero byte inside the attribute */
	if (vcn - 1 != highest_vcn) {
		rl->count = first;
		return ntfs_fail(EIO, "%s: mapping pairs end at vcn %lld but highest_vcn is %lld",
				 what, (long long)(vcn - 1), (long long)highest_vcn);
	}
	return 0;
corrupt:
	rl->count = first;
	return ntfs_fail(EIO, "%s: corrupted mapping pairs at byte %zu", what, pos);
}

/* Index of the run holding vcn, or rl->count when no run does. */
static size_t rl_find(const struct ntfs_runlist *rl, int64_t vcn)
{
	size_t lo = 0, hi = rl->count;

	if (vcn < 0)
		return rl->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct ntfs_run *r = &rl->runs[mid];

		if (vcn < r->vcn)
			hi = mid;
		else if (vcn >= r->vcn + r->length)
			lo = mid + 1;
		else
			return mid;
	}
	return rl->count;
}

int ntfs_rl_prefix_view(const struct ntfs_runlist *rl, int64_t vcn, struct ntfs_runlist *view)
{
	size_t i = vcn == ntfs_rl_end_vcn(rl) ? rl->count : rl_find(rl, vcn);

	if (i == rl->count && vcn != ntfs_rl_end_vcn(rl))
		return -EINVAL;
	if (i < rl->count && rl->runs[i].vcn != vcn)
		return -EINVAL;
	view->runs = rl->runs;
	view->count = i;
	view->capacity = i;
	return 0;
}

int64_t ntfs_rl_vcn_to_lcn(const struct ntfs_runlist *rl, int64_t vcn, int64_t *count)
{
	size_t i = rl_find(rl, vcn);
	const struct ntfs_run *r;

	if (i == rl->count)
		return LCN_ENOENT;
	r = &rl->runs[i];
	if (count)
		*count = r->vcn + r->length - vcn;
	return r->lcn == LCN_HOLE ? LCN_HOLE : r->lcn + (vcn - r->vcn);
}

void ntfs_runlist_free(struct ntfs_runlist *rl)
{
	free(rl->runs);
	rl->runs = NULL;
	rl->count = rl->capacity = 0;
}

/* ---- editing ---- */

/* Run r with its first `skip` clusters cut off. */
static struct ntfs_run run_tail(const struct ntfs_run *r, int64_t skip)
{
	return (struct ntfs_run){
		.vcn = r->vcn + skip,
		.lcn = r->lcn == LCN_HOLE ? LCN_HOLE : r->lcn + skip,
		.length = r->length - skip,
	};
}

static int runs_mergeable(const struct ntfs_run *a, const struct ntfs_run *b)
{
	if (a->lcn == LCN_HOLE || b->lcn == LCN_HOLE)
		return a->lcn == b->lcn;
	return a->lcn + a->length == b->lcn;
}

/* Merge neighbours that can be one run, in place; returns the new count. */
static size_t runs_merge(struct ntfs_run *runs, size_t n)
{
	size_t i, out = 0;

	for (i = 0; i < n; i++) {
		if (out && runs_mergeable(&runs[out - 1], &runs[i]))
			runs[out - 1].length += runs[i].length;
		else
			runs[out++] = runs[i];
	}
	return out;
}

int ntfs_rl_replace(struct ntfs_runlist *rl, int64_t vcn, int64_t count, int64_t lcn)
{
	int64_t end = ntfs_rl_end_vcn(rl), new_end;
	struct ntfs_run *runs;
	size_t i, n = 0, cap = rl->count + 3;

	if (vcn < 0 || count < 0 || (lcn < 0 && lcn != LCN_HOLE) || vcn > INT64_MAX - count ||
	    (lcn >= 0 && lcn > INT64_MAX - count))
		return ntfs_fail(EINVAL, "runlist edit: cannot map vcn %lld + %lld to lcn %lld",
				 (long long)vcn, (long long)count, (long long)lcn);
	if (!count)
		return 0;
	new_end = vcn + count;
	/* At most: every old run, a run split in two, the new run, a gap hole. */
	runs = malloc(cap * sizeof(*runs));
	if (!runs)
		return -ENOMEM;
	for (i = 0; i < rl->count && rl->runs[i].vcn < vcn; i++) {
		runs[n] = rl->runs[i];
		if (runs[n].vcn + runs[n].length > vcn)
			runs[n].length = vcn - runs[n].vcn;
		n++;
	}
	if (vcn > end)
		runs[n++] = (struct ntfs_run){ .vcn = end, .lcn = LCN_HOLE, .length = vcn - end };
	runs[n++] = (struct ntfs_run){ .vcn = vcn, .lcn = lcn, .length = count };
	for (i = rl_find(rl, new_end); i < rl->count; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		runs[n++] = r->vcn < new_end ? run_tail(r, new_end - r->vcn) : *r;
	}
	n = runs_merge(runs, n);
	free(rl->runs);
	rl->runs = runs;
	rl->count = n;
	rl->capacity = cap;
	return 0;
}

int ntfs_rl_truncate(struct ntfs_runlist *rl, int64_t end_vcn)
{
	size_t i;

	if (end_vcn < 0)
		return ntfs_fail(EINVAL, "runlist edit: cannot truncate at vcn %lld",
				 (long long)end_vcn);
	if (end_vcn >= ntfs_rl_end_vcn(rl))
		return 0;
	i = rl_find(rl, end_vcn);
	if (rl->runs[i].vcn == end_vcn) {
		rl->count = i;
	} else {
		rl->runs[i].length = end_vcn - rl->runs[i].vcn;
		rl->count = i + 1;
	}
	return 0;
}

int ntfs_rl_extract(const struct ntfs_runlist *rl, int64_t vcn, int64_t count,
		    struct ntfs_runlist *out)
{
	int64_t end = ntfs_rl_end_vcn(rl), stop;
	size_t first = out->count, i;

	if (vcn < 0 || count < 0)
		return ntfs_fail(EINVAL, "runlist: cannot list vcn %lld + %lld", (long long)vcn,
				 (long long)count);
	stop = count > end - vcn ? end : vcn + count;
	for (i = rl_find(rl, vcn); vcn < stop && i < rl->count; i++) {
		struct ntfs_run r = run_tail(&rl->runs[i], vcn - rl->runs[i].vcn);

		if (r.vcn + r.length > stop)
			r.length = stop - r.vcn;
		if (rl_append(out, r.vcn, r.lcn, r.length)) {
			out->count = first;
			return -ENOMEM;
		}
		vcn = r.vcn + r.length;
	}
	return 0;
}

int64_t ntfs_rl_allocated(const struct ntfs_runlist *rl, int64_t vcn, int64_t count)
{
	int64_t end = ntfs_rl_end_vcn(rl), stop, total = 0;
	size_t i;

	if (vcn < 0 || count <= 0 || vcn >= end)
		return 0;
	stop = count > end - vcn ? end : vcn + count;
	for (i = rl_find(rl, vcn); i < rl->count && rl->runs[i].vcn < stop; i++) {
		const struct ntfs_run *r = &rl->runs[i];
		int64_t from = r->vcn > vcn ? r->vcn : vcn;
		int64_t to = r->vcn + r->length < stop ? r->vcn + r->length : stop;

		if (r->lcn != LCN_HOLE)
			total += to - from;
	}
	return total;
}

int ntfs_rl_copy(struct ntfs_runlist *dst, const struct ntfs_runlist *src)
{
	struct ntfs_run *runs = malloc((src->count ? src->count : 1) * sizeof(*runs));

	if (!runs)
		return -ENOMEM;
	if (src->count)
		memcpy(runs, src->runs, src->count * sizeof(*runs));
	free(dst->runs);
	dst->runs = runs;
	dst->count = src->count;
	dst->capacity = src->count ? src->count : 1;
	return 0;
}

/* ---- mapping-pairs encoding ---- */

/* Fewest bytes (1..8) holding v as a little-endian two's-complement integer. */
static unsigned sle_size(int64_t v)
{
	unsigned n = 1;

	while (n < 8 && (v < -((int64_t)1 << (8 * n - 1)) || v >= (int64_t)1 << (8 * n - 1)))
		n++;
	return n;
}

static void put_sle(uint8_t *p, int64_t v, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

/* Encode (dst != NULL) or count the pairs from start_vcn; see runlist.h. */
static ssize_t mapping_pairs_walk(const struct ntfs_runlist *rl, int64_t start_vcn,
				  uint8_t *dst, size_t max_size, int64_t *stop_vcn)
{
	int64_t end = ntfs_rl_end_vcn(rl), prev_lcn = 0, vcn = start_vcn;
	size_t size = 0, i;

	if (start_vcn < 0 || start_vcn > end)
		return ntfs_fail(EINVAL, "mapping pairs: start vcn %lld outside the runlist "
				 "(which ends at vcn %lld)", (long long)start_vcn, (long long)end);
	for (i = rl_find(rl, start_vcn); i < rl->count; i++) {
		struct ntfs_run r = run_tail(&rl->runs[i], vcn - rl->runs[i].vcn);
		unsigned lb = sle_size(r.length);
		unsigned ob = r.lcn == LCN_HOLE ? 0 : sle_size(r.lcn - prev_lcn);
		size_t need = 1u + lb + ob;

		if (max_size && size + need + 1 > max_size)
			break;
		if (dst) {
			dst[size] = (uint8_t)(ob << 4 | lb);
			put_sle(dst + size + 1, r.length, lb);
			if (ob)
				put_sle(dst + size + 1 + lb, r.lcn - prev_lcn, ob);
		}
		size += need;
		if (r.lcn != LCN_HOLE)
			prev_lcn = r.lcn;
		vcn = r.vcn + r.length;
	}
	if (dst)
		dst[size] = 0;
	if (stop_vcn)
		*stop_vcn = vcn;
	return (ssize_t)(size + 1);
}

ssize_t ntfs_mapping_pairs_size(const struct ntfs_runlist *rl, int64_t start_vcn,
				size_t max_size, int64_t *stop_vcn)
{
	return mapping_pairs_walk(rl, start_vcn, NULL, max_size, stop_vcn);
}

ssize_t ntfs_mapping_pairs_build(const struct ntfs_runlist *rl, int64_t start_vcn,
				 uint8_t *dst, size_t dst_len, int64_t *stop_vcn)
{
	if (!dst_len)
		return ntfs_fail(EINVAL, "mapping pairs: no room for the terminator");
	return mapping_pairs_walk(rl, start_vcn, dst, dst_len, stop_vcn);
}
