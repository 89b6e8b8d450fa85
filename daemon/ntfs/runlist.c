/*
 * runlist.c — mapping-pairs decoding and VCN lookup.
 *
 * Invariants: see runlist.h.  Decoding reads only inside [mp, mp + len) and
 * rejects lengths <= 0, LCNs that go negative or run past the volume, VCN
 * arithmetic that would overflow, and an extent whose decoded end does not
 * match its highest_vcn.
 */
#include "runlist.h"

#include <errno.h>
#include <stdlib.h>

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
				return ntfs_fail(EIO, "%s: run at vcn %lld points to clusters "
						 "%lld..%lld, outside the volume (%llu clusters)",
						 what, (long long)vcn, (long long)lcn,
						 (long long)(lcn + length - 1),
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

int64_t ntfs_rl_vcn_to_lcn(const struct ntfs_runlist *rl, int64_t vcn, int64_t *count)
{
	size_t lo = 0, hi = rl->count;

	if (vcn < 0)
		return LCN_ENOENT;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct ntfs_run *r = &rl->runs[mid];

		if (vcn < r->vcn)
			hi = mid;
		else if (vcn >= r->vcn + r->length)
			lo = mid + 1;
		else {
			if (count)
				*count = r->vcn + r->length - vcn;
			return r->lcn == LCN_HOLE ? LCN_HOLE : r->lcn + (vcn - r->vcn);
		}
	}
	return LCN_ENOENT;
}

void ntfs_runlist_free(struct ntfs_runlist *rl)
{
	free(rl->runs);
	rl->runs = NULL;
	rl->count = rl->capacity = 0;
}
