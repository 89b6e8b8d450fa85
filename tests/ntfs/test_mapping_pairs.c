/*
 * test_mapping_pairs — cmocka unit tests for the runlist editing and
 * mapping-pairs encoding in daemon/ntfs/runlist.c and for rewriting a
 * non-resident attribute record inside a synthetic MFT record
 * (ntfs_attr_record_set_runlist, ntfs_attr_record_resize).  Byte buffers
 * only; the same operations on real volumes, checked with ntfs-3g's tools,
 * are in test_attr_record.
 *
 * Every encoding test decodes what was encoded with the existing decoder
 * and requires the same runs back, and the hand-checked vectors come from
 * the Linux-NTFS documentation's "Data Runs" examples (fragmented,
 * scrambled with a negative offset, sparse, compressed).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "attr_record.h"
#include "error.h"
#include "layout.h"
#include "le.h"
#include "mft.h"
#include "mst.h"
#include "runlist.h"

#define BIG_VOLUME INT64_MAX   /* nr_clusters for decoding: no volume limit */

struct run3 {
	int64_t vcn, lcn, length;
};

static void rl_set(struct ntfs_runlist *rl, const struct run3 *r, size_t n)
{
	ntfs_runlist_free(rl);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ntfs_rl_replace(rl, r[i].vcn, r[i].length, r[i].lcn), 0);
}

static void expect_runs_at(const char *file, int line, const struct ntfs_runlist *rl,
			   const struct run3 *want, size_t n)
{
	bool ok = rl->count == n;

	for (size_t i = 0; ok && i < n; i++)
		ok = rl->runs[i].vcn == want[i].vcn && rl->runs[i].lcn == want[i].lcn &&
		     rl->runs[i].length == want[i].length;
	if (ok)
		return;
	print_error("%s:%d: runlist differs\n  got (%zu):", file, line, rl->count);
	for (size_t i = 0; i < rl->count; i++)
		print_error(" [%lld %lld %lld]", (long long)rl->runs[i].vcn,
			    (long long)rl->runs[i].lcn, (long long)rl->runs[i].length);
	print_error("\n  want (%zu):", n);
	for (size_t i = 0; i < n; i++)
		print_error(" [%lld %lld %lld]", (long long)want[i].vcn, (long long)want[i].lcn,
			    (long long)want[i].length);
	print_error("\n");
	fail();
}
#define expect_runs(rl, ...)                                                          \
	do {                                                                          \
		static const struct run3 w_[] = { __VA_ARGS__ };                      \
		expect_runs_at(__FILE__, __LINE__, rl, w_, sizeof(w_) / sizeof(w_[0])); \
	} while (0)

/* The runlist invariants, plus "no two neighbours could be one run". */
static void check_invariants(const struct ntfs_runlist *rl)
{
	int64_t vcn = 0;

	for (size_t i = 0; i < rl->count; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		assert_int_equal(r->vcn, vcn);
		assert_true(r->length > 0);
		assert_true(r->lcn >= 0 || r->lcn == LCN_HOLE);
		if (i) {
			const struct ntfs_run *p = &rl->runs[i - 1];

			assert_false(p->lcn == LCN_HOLE && r->lcn == LCN_HOLE);
			assert_false(p->lcn >= 0 && r->lcn >= 0 && p->lcn + p->length == r->lcn);
		}
		vcn += r->length;
	}
}

/* Encode rl from start_vcn, require exactly `want` (if given), decode it
 * back onto rl's first start_vcn clusters and require rl again. */
static void round_trip(const struct ntfs_runlist *rl, int64_t start_vcn, const uint8_t *want,
		       size_t want_len)
{
	int64_t end = ntfs_rl_end_vcn(rl), stop = -5;
	ssize_t size = ntfs_mapping_pairs_size(rl, start_vcn, 0, &stop);
	struct ntfs_runlist back = { 0 };
	uint8_t *buf;

	assert_true(size >= 1);
	assert_int_equal(stop, end);
	buf = malloc((size_t)size + 16);
	assert_non_null(buf);
	memset(buf, 0xa5, (size_t)size + 16);
	assert_int_equal(ntfs_mapping_pairs_build(rl, start_vcn, buf, (size_t)size, &stop), size);
	assert_int_equal(stop, end);
	assert_int_equal(buf[size - 1], 0);
	assert_int_equal(buf[size], 0xa5);  /* nothing written past dst_len */
	if (want) {
		assert_int_equal(size, want_len);
		assert_memory_equal(buf, want, want_len);
	}
	assert_int_equal(ntfs_rl_copy(&back, rl), 0);
	assert_int_equal(ntfs_rl_truncate(&back, start_vcn), 0);
	assert_int_equal(ntfs_mapping_pairs_decode(&back, buf, (size_t)size, start_vcn, end - 1,
						   BIG_VOLUME, "t"),
			 0);
	/* The decoder does not merge runs at the extent boundary. */
	for (size_t i = 0, j = 0; i < rl->count; i++) {
		int64_t vcn = rl->runs[i].vcn;

		for (; vcn < rl->runs[i].vcn + rl->runs[i].length; j++) {
			assert_true(j < back.count);
			assert_int_equal(back.runs[j].vcn, vcn);
			assert_int_equal(back.runs[j].lcn,
					 rl->runs[i].lcn == LCN_HOLE
						 ? LCN_HOLE
						 : rl->runs[i].lcn + (vcn - rl->runs[i].vcn));
			vcn += back.runs[j].length;
		}
		assert_int_equal(vcn, rl->runs[i].vcn + rl->runs[i].length);
		if (i == rl->count - 1)
			assert_int_equal(j, back.count);
	}
	ntfs_runlist_free(&back);
	free(buf);
}

/* Decode a documented vector, then encode it back byte for byte. */
static void doc_vector(const uint8_t *mp, size_t len, int64_t clusters, const struct run3 *want,
		       size_t n)
{
	struct ntfs_runlist rl = { 0 };

	assert_int_equal(ntfs_mapping_pairs_decode(&rl, mp, len, 0, clusters - 1, BIG_VOLUME, "doc"),
			 0);
	expect_runs_at(__FILE__, __LINE__, &rl, want, n);
	round_trip(&rl, 0, mp, len);
	ntfs_runlist_free(&rl);
}

/* ---- mapping pairs ---- */

static void doc_examples(void **state)
{
	/* Example 1: unfragmented, 0x18 clusters at 0x5634. */
	static const uint8_t ex1[] = { 0x21, 0x18, 0x34, 0x56, 0x00 };
	static const struct run3 r1[] = { { 0, 0x5634, 0x18 } };
	/* Example 2: fragmented: 0x38 at 0x342573, 0x114 at +0x211e5, 0x42 at +0x300aa. */
	static const uint8_t ex2[] = { 0x31, 0x38, 0x73, 0x25, 0x34, 0x32, 0x14, 0x01, 0xe5,
				       0x11, 0x02, 0x31, 0x42, 0xaa, 0x00, 0x03, 0x00 };
	static const struct run3 r2[] = { { 0, 0x342573, 0x38 },
					  { 0x38, 0x363758, 0x114 },
					  { 0x14c, 0x393802, 0x42 } };
	/* Example 3: scrambled: the third run is 0x20 clusters before the second. */
	static const uint8_t ex3[] = { 0x11, 0x30, 0x60, 0x21, 0x10, 0x00, 0x01,
				       0x11, 0x20, 0xe0, 0x00 };
	static const struct run3 r3[] = { { 0, 0x60, 0x30 }, { 0x30, 0x160, 0x10 },
					  { 0x40, 0x140, 0x20 } };
	/* Example 4: sparse: a 0x60-cluster hole between two runs. */
	static const uint8_t ex4[] = { 0x11, 0x30, 0x20, 0x01, 0x60, 0x11, 0x10, 0x30, 0x00 };
	static const struct run3 r4[] = { { 0, 0x20, 0x30 }, { 0x30, LCN_HOLE, 0x60 },
					  { 0x90, 0x50, 0x10 } };
	/* Example 5: compressed: units padded with holes, hole last. */
	static const uint8_t ex5[] = { 0x11, 0x08, 0x40, 0x01, 0x08, 0x11, 0x10, 0x08,
				       0x11, 0x0c, 0x10, 0x01, 0x04, 0x00 };
	static const struct run3 r5[] = { { 0, 0x40, 8 },     { 8, LCN_HOLE, 8 },
					  { 0x10, 0x48, 0x10 }, { 0x20, 0x58, 0xc },
					  { 0x2c, LCN_HOLE, 4 } };

	(void)state;
	doc_vector(ex1, sizeof(ex1), 0x18, r1, 1);
	doc_vector(ex2, sizeof(ex2), 0x18e, r2, 3);
	doc_vector(ex3, sizeof(ex3), 0x60, r3, 3);
	doc_vector(ex4, sizeof(ex4), 0xa0, r4, 3);
	doc_vector(ex5, sizeof(ex5), 0x30, r5, 5);
}

/* Byte counts at the sign boundaries of both fields. */
static void minimal_signed_sizes(void **state)
{
	struct ntfs_runlist rl = { 0 };

	(void)state;
	/* length 0x7f: one byte; lcn 0 first: a zero delta still takes a byte. */
	rl_set(&rl, (const struct run3[]){ { 0, 0, 0x7f } }, 1);
	round_trip(&rl, 0, (const uint8_t[]){ 0x11, 0x7f, 0x00, 0x00 }, 4);
	/* length 0x80 needs two bytes (0x80 alone would be negative). */
	rl_set(&rl, (const struct run3[]){ { 0, 0x7f, 0x80 } }, 1);
	round_trip(&rl, 0, (const uint8_t[]){ 0x12, 0x80, 0x00, 0x7f, 0x00 }, 5);
	/* lcn 0x80: two bytes; length 0xff: two bytes. */
	rl_set(&rl, (const struct run3[]){ { 0, 0x80, 0xff } }, 1);
	round_trip(&rl, 0, (const uint8_t[]){ 0x22, 0xff, 0x00, 0x80, 0x00, 0x00 }, 6);
	/* Deltas -0x80 (one byte) and -0x81 (two bytes). */
	rl_set(&rl, (const struct run3[]){ { 0, 0x1000, 1 }, { 1, 0x1000 - 0x80, 1 },
					   { 2, 0x1000 - 0x80 - 0x81, 1 } },
	       3);
	round_trip(&rl, 0,
		   (const uint8_t[]){ 0x21, 0x01, 0x00, 0x10, 0x11, 0x01, 0x80, 0x21, 0x01, 0x7f,
				      0xff, 0x00 },
		   12);
	/* Delta +0x7fff (two bytes), +0x8000 (three). */
	rl_set(&rl, (const struct run3[]){ { 0, 1, 1 }, { 1, 0x8000, 1 }, { 2, 0x10000, 1 } }, 3);
	round_trip(&rl, 0,
		   (const uint8_t[]){ 0x11, 0x01, 0x01, 0x21, 0x01, 0xff, 0x7f, 0x31, 0x01, 0x00,
				      0x80, 0x00, 0x00 },
		   13);
	ntfs_runlist_free(&rl);
}

static void huge_values(void **state)
{
	struct ntfs_runlist rl = { 0 };
	const int64_t big = (int64_t)1 << 62;

	(void)state;
	/* A length and an lcn that take 8 bytes each, then a huge negative delta. */
	assert_int_equal(ntfs_rl_replace(&rl, 0, big, big - 1), 0);
	assert_int_equal(ntfs_rl_replace(&rl, big, 3, 5), 0);
	round_trip(&rl, 0,
		   (const uint8_t[]){ 0x88, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xff, 0xff, 0xff, 0xff, 0xff,
				      0xff, 0xff, 0x3f, 0x81, 0x03, 0x06, 0, 0, 0, 0, 0, 0, 0xc0,
				      0x00 },
		   28);
	/* Six-byte values. */
	rl_set(&rl, (const struct run3[]){ { 0, 0x123456789abLL, 0x7fffffffffffLL } }, 1);
	round_trip(&rl, 0,
		   (const uint8_t[]){ 0x66, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xab, 0x89, 0x67,
				      0x45, 0x23, 0x01, 0x00 },
		   14);
	ntfs_runlist_free(&rl);
}

static void holes_first_and_last(void **state)
{
	struct ntfs_runlist rl = { 0 };

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 5, 3, 100), 0);   /* hole 0..4 appears */
	assert_int_equal(ntfs_rl_replace(&rl, 8, 7, LCN_HOLE), 0);
	expect_runs(&rl, { 0, LCN_HOLE, 5 }, { 5, 100, 3 }, { 8, LCN_HOLE, 7 });
	round_trip(&rl, 0, (const uint8_t[]){ 0x01, 0x05, 0x11, 0x03, 0x64, 0x01, 0x07, 0x00 }, 8);
	/* All hole. */
	rl_set(&rl, (const struct run3[]){ { 0, LCN_HOLE, 0x1234 } }, 1);
	round_trip(&rl, 0, (const uint8_t[]){ 0x02, 0x34, 0x12, 0x00 }, 4);
	/* Empty: just the terminator, stop at 0. */
	ntfs_runlist_free(&rl);
	round_trip(&rl, 0, (const uint8_t[]){ 0x00 }, 1);
}

/* An extent that starts in the middle of the runlist, even mid-run: its
 * first delta is from lcn 0 again. */
static void start_in_the_middle(void **state)
{
	struct ntfs_runlist rl = { 0 };
	int64_t stop;

	(void)state;
	rl_set(&rl, (const struct run3[]){ { 0, 1000, 10 }, { 10, 500, 10 },
					   { 20, LCN_HOLE, 5 }, { 25, 2000, 5 } },
	       4);
	/* vcn 15: 5 clusters at 505 (0x1f9), hole of 5, 5 at 2000 (delta 1495 = 0x5d7). */
	round_trip(&rl, 15,
		   (const uint8_t[]){ 0x21, 0x05, 0xf9, 0x01, 0x01, 0x05, 0x21, 0x05, 0xd7, 0x05,
				      0x00 },
		   11);
	/* From the start of a run, and from the hole. */
	round_trip(&rl, 10, (const uint8_t[]){ 0x21, 0x0a, 0xf4, 0x01, 0x01, 0x05, 0x21, 0x05,
					       0xdc, 0x05, 0x00 },
		   11);
	round_trip(&rl, 22, (const uint8_t[]){ 0x01, 0x03, 0x21, 0x05, 0xd0, 0x07, 0x00 }, 7);
	/* At the very end: an empty extent. */
	round_trip(&rl, 30, (const uint8_t[]){ 0x00 }, 1);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, 31, 0, &stop), -EINVAL);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, -1, 0, &stop), -EINVAL);
	ntfs_runlist_free(&rl);
}

/* With a size limit the encoder stops before the pair that does not fit
 * and says where. */
static void size_limit_and_stop_vcn(void **state)
{
	struct ntfs_runlist rl = { 0 };
	uint8_t buf[32];
	int64_t stop;

	(void)state;
	/* Pairs of 4, 2 and 4 bytes, + 1 terminator = 11. */
	rl_set(&rl, (const struct run3[]){ { 0, 1000, 10 }, { 10, LCN_HOLE, 5 },
					   { 15, 3000, 5 } },
	       3);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, 0, 0, &stop), 11);
	assert_int_equal(stop, 20);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, 0, 11, &stop), 11);
	assert_int_equal(stop, 20);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, 0, 10, &stop), 7);
	assert_int_equal(stop, 15);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, 0, 6, &stop), 5);
	assert_int_equal(stop, 10);
	assert_int_equal(ntfs_mapping_pairs_size(&rl, 0, 4, &stop), 1);
	assert_int_equal(stop, 0);
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(ntfs_mapping_pairs_build(&rl, 0, buf, 10, &stop), 7);
	assert_int_equal(stop, 15);
	assert_memory_equal(buf, ((const uint8_t[]){ 0x21, 0x0a, 0xe8, 0x03, 0x01, 0x05, 0x00 }),
			    7);
	assert_int_equal(buf[7], 0xee);
	/* The rest as a second extent: the delta restarts from 0. */
	assert_int_equal(ntfs_mapping_pairs_build(&rl, stop, buf, sizeof(buf), &stop), 5);
	assert_memory_equal(buf, ((const uint8_t[]){ 0x21, 0x05, 0xb8, 0x0b, 0x00 }), 5);
	assert_int_equal(stop, 20);
	assert_int_equal(ntfs_mapping_pairs_build(&rl, 0, buf, 0, &stop), -EINVAL);
	ntfs_runlist_free(&rl);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random runlists of every scale, from random start vcns. */
static void random_round_trips(void **state)
{
	struct ntfs_runlist rl = { 0 };

	(void)state;
	for (int iter = 0; iter < 3000; iter++) {
		unsigned runs = 1 + rnd() % 40, scale = 1 + rnd() % 56;
		int64_t vcn = 0;

		ntfs_runlist_free(&rl);
		for (unsigned i = 0; i < runs; i++) {
			int64_t len = 1 + (int64_t)(rnd() % ((uint64_t)1 << (scale / 2 + 1)));
			int64_t lcn = rnd() % 4 == 0 ? LCN_HOLE
						      : (int64_t)(rnd() % ((uint64_t)1 << scale));

			assert_int_equal(ntfs_rl_replace(&rl, vcn, len, lcn), 0);
			vcn += len;
		}
		check_invariants(&rl);
		round_trip(&rl, 0, NULL, 0);
		round_trip(&rl, (int64_t)(rnd() % (uint64_t)(vcn + 1)), NULL, 0);
	}
	ntfs_runlist_free(&rl);
}

/* ---- editing ---- */

static void replace_splits_and_merges(void **state)
{
	struct ntfs_runlist rl = { 0 };

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 0, 100, 1000), 0);
	expect_runs(&rl, { 0, 1000, 100 });
	/* A piece in the middle moves elsewhere: the run splits in three. */
	assert_int_equal(ntfs_rl_replace(&rl, 40, 10, 5000), 0);
	expect_runs(&rl, { 0, 1000, 40 }, { 40, 5000, 10 }, { 50, 1050, 50 });
	/* Moving it back makes the three one run again. */
	assert_int_equal(ntfs_rl_replace(&rl, 40, 10, 1040), 0);
	expect_runs(&rl, { 0, 1000, 100 });
	/* Holes at both edges and in the middle. */
	assert_int_equal(ntfs_rl_replace(&rl, 0, 5, LCN_HOLE), 0);
	assert_int_equal(ntfs_rl_replace(&rl, 95, 5, LCN_HOLE), 0);
	assert_int_equal(ntfs_rl_replace(&rl, 20, 10, LCN_HOLE), 0);
	expect_runs(&rl, { 0, LCN_HOLE, 5 }, { 5, 1005, 15 }, { 20, LCN_HOLE, 10 },
		    { 30, 1030, 65 }, { 95, LCN_HOLE, 5 });
	/* A hole next to a hole is one hole. */
	assert_int_equal(ntfs_rl_replace(&rl, 5, 15, LCN_HOLE), 0);
	expect_runs(&rl, { 0, LCN_HOLE, 30 }, { 30, 1030, 65 }, { 95, LCN_HOLE, 5 });
	/* Filling the hole contiguously merges with the run after it. */
	assert_int_equal(ntfs_rl_replace(&rl, 10, 20, 1010), 0);
	expect_runs(&rl, { 0, LCN_HOLE, 10 }, { 10, 1010, 85 }, { 95, LCN_HOLE, 5 });
	/* One replace spanning several runs, ends inside runs. */
	assert_int_equal(ntfs_rl_replace(&rl, 5, 92, 7000), 0);
	expect_runs(&rl, { 0, LCN_HOLE, 5 }, { 5, 7000, 92 }, { 97, LCN_HOLE, 3 });
	/* Covering everything. */
	assert_int_equal(ntfs_rl_replace(&rl, 0, 100, 1), 0);
	expect_runs(&rl, { 0, 1, 100 });
	/* Nothing to do. */
	assert_int_equal(ntfs_rl_replace(&rl, 50, 0, 3), 0);
	expect_runs(&rl, { 0, 1, 100 });
	ntfs_runlist_free(&rl);
}

static void replace_appends(void **state)
{
	struct ntfs_runlist rl = { 0 };

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 0, 10, 100), 0);
	/* Right at the end, contiguous: grows the last run. */
	assert_int_equal(ntfs_rl_replace(&rl, 10, 5, 110), 0);
	expect_runs(&rl, { 0, 100, 15 });
	/* Past the end: the gap is a hole. */
	assert_int_equal(ntfs_rl_replace(&rl, 20, 5, 200), 0);
	expect_runs(&rl, { 0, 100, 15 }, { 15, LCN_HOLE, 5 }, { 20, 200, 5 });
	/* A hole past the end after a hole... */
	assert_int_equal(ntfs_rl_replace(&rl, 30, 5, LCN_HOLE), 0);
	expect_runs(&rl, { 0, 100, 15 }, { 15, LCN_HOLE, 5 }, { 20, 200, 5 },
		    { 25, LCN_HOLE, 10 });
	/* Straddling the end. */
	assert_int_equal(ntfs_rl_replace(&rl, 33, 4, 300), 0);
	expect_runs(&rl, { 0, 100, 15 }, { 15, LCN_HOLE, 5 }, { 20, 200, 5 },
		    { 25, LCN_HOLE, 8 }, { 33, 300, 4 });
	ntfs_runlist_free(&rl);
	/* An empty runlist starting past 0. */
	assert_int_equal(ntfs_rl_replace(&rl, 3, 2, 9), 0);
	expect_runs(&rl, { 0, LCN_HOLE, 3 }, { 3, 9, 2 });
	ntfs_runlist_free(&rl);
}

static void replace_rejects(void **state)
{
	struct ntfs_runlist rl = { 0 };

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 0, 10, 100), 0);
	assert_int_equal(ntfs_rl_replace(&rl, -1, 1, 5), -EINVAL);
	assert_int_equal(ntfs_rl_replace(&rl, 0, -1, 5), -EINVAL);
	assert_int_equal(ntfs_rl_replace(&rl, 0, 1, -2), -EINVAL);
	assert_int_equal(ntfs_rl_replace(&rl, 0, 1, LCN_ENOENT), -EINVAL);
	assert_int_equal(ntfs_rl_replace(&rl, INT64_MAX - 1, 2, 5), -EINVAL);
	assert_int_equal(ntfs_rl_replace(&rl, 0, 2, INT64_MAX - 1), -EINVAL);
	expect_runs(&rl, { 0, 100, 10 });
	ntfs_runlist_free(&rl);
}

static void truncate_extract_allocated(void **state)
{
	struct ntfs_runlist rl = { 0 }, out = { 0 };

	(void)state;
	rl_set(&rl, (const struct run3[]){ { 0, 100, 10 }, { 10, LCN_HOLE, 10 },
					   { 20, 500, 10 } },
	       3);
	assert_int_equal(ntfs_rl_allocated(&rl, 0, INT64_MAX), 20);
	assert_int_equal(ntfs_rl_allocated(&rl, 5, 20), 10);
	assert_int_equal(ntfs_rl_allocated(&rl, 12, 5), 0);
	assert_int_equal(ntfs_rl_allocated(&rl, 30, 5), 0);
	/* What [5, 25) maps to now: clipped pieces, the hole included. */
	assert_int_equal(ntfs_rl_extract(&rl, 5, 20, &out), 0);
	expect_runs(&out, { 5, 105, 5 }, { 10, LCN_HOLE, 10 }, { 20, 500, 5 });
	/* Clipped at the end; appended after what out holds. */
	assert_int_equal(ntfs_rl_extract(&rl, 28, 100, &out), 0);
	assert_int_equal(out.count, 4);
	assert_int_equal(out.runs[3].vcn, 28);
	assert_int_equal(out.runs[3].lcn, 508);
	assert_int_equal(out.runs[3].length, 2);
	assert_int_equal(ntfs_rl_extract(&rl, 40, 5, &out), 0);
	assert_int_equal(out.count, 4);
	assert_int_equal(ntfs_rl_extract(&rl, -1, 5, &out), -EINVAL);
	/* Truncate inside a run, at a boundary, past the end, to nothing. */
	assert_int_equal(ntfs_rl_truncate(&rl, 40), 0);
	expect_runs(&rl, { 0, 100, 10 }, { 10, LCN_HOLE, 10 }, { 20, 500, 10 });
	assert_int_equal(ntfs_rl_truncate(&rl, 25), 0);
	expect_runs(&rl, { 0, 100, 10 }, { 10, LCN_HOLE, 10 }, { 20, 500, 5 });
	assert_int_equal(ntfs_rl_truncate(&rl, 20), 0);
	expect_runs(&rl, { 0, 100, 10 }, { 10, LCN_HOLE, 10 });
	assert_int_equal(ntfs_rl_truncate(&rl, -1), -EINVAL);
	assert_int_equal(ntfs_rl_truncate(&rl, 0), 0);
	assert_int_equal(rl.count, 0);
	assert_int_equal(ntfs_rl_end_vcn(&rl), 0);
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&out);
}

/* Random edits against a flat vcn -> lcn model. */
static void edits_match_model(void **state)
{
	enum { N = 300 };
	int64_t model[N];
	int64_t end = 0;
	struct ntfs_runlist rl = { 0 };

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		int op = (int)(rnd() % 8);

		if (op == 0) {
			int64_t to = (int64_t)(rnd() % (N / 2));

			assert_int_equal(ntfs_rl_truncate(&rl, to), 0);
			if (to < end)
				end = to;
		} else {
			int64_t vcn = (int64_t)(rnd() % (N - 20)), count = 1 + (int64_t)(rnd() % 20);
			int64_t lcn = rnd() % 3 == 0 ? LCN_HOLE : (int64_t)(rnd() % 64);

			/* Often continue the neighbour so merges happen. */
			if (lcn != LCN_HOLE && vcn > 0 && vcn <= end && model[vcn - 1] >= 0 &&
			    rnd() % 2)
				lcn = model[vcn - 1] + 1;
			assert_int_equal(ntfs_rl_replace(&rl, vcn, count, lcn), 0);
			for (int64_t v = end; v < vcn; v++)
				model[v] = LCN_HOLE;
			for (int64_t v = 0; v < count; v++)
				model[vcn + v] = lcn == LCN_HOLE ? LCN_HOLE : lcn + v;
			if (vcn + count > end)
				end = vcn + count;
		}
		check_invariants(&rl);
		assert_int_equal(ntfs_rl_end_vcn(&rl), end);
		for (int64_t v = 0; v < end; v++)
			assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, v, NULL), model[v]);
		if (iter % 100 == 0)
			round_trip(&rl, (int64_t)(rnd() % (uint64_t)(end + 1)), NULL, 0);
	}
	ntfs_runlist_free(&rl);
}

/* ---- rewriting an attribute record in a synthetic MFT record ---- */

#define REC_SIZE 1024u

/* A 1 KiB FILE record: $STANDARD_INFORMATION (resident, 72 bytes),
 * $DATA:"ab" (non-resident, one run), $FILE_NAME-like resident attribute
 * 0x30 with a recognisable value, end marker. */
struct synth {
	uint8_t rec[REC_SIZE];
	uint32_t data_off;
};

static uint32_t put_resident(uint8_t *rec, uint32_t off, uint32_t type, uint16_t instance,
			     uint32_t vlen, uint8_t fill)
{
	struct ntfs_attr_record *a = (void *)(rec + off);
	uint32_t len = (24 + vlen + 7) & ~7u;

	a->type = cpu_to_le32(type);
	a->length = cpu_to_le32(len);
	a->name_offset = cpu_to_le16(24);
	a->instance = cpu_to_le16(instance);
	a->u.r.value_length = cpu_to_le32(vlen);
	a->u.r.value_offset = cpu_to_le16(24);
	memset(rec + off + 24, fill, vlen);
	return off + len;
}

static void synth_init(struct synth *s, const struct ntfs_runlist *rl)
{
	struct ntfs_mft_record *m = (void *)s->rec;
	struct ntfs_attr_record *a;
	uint32_t off = 56;
	ssize_t mp;

	memset(s->rec, 0, sizeof(s->rec));
	m->magic = cpu_to_le32(magic_FILE);
	m->usa_ofs = cpu_to_le16(48);
	m->usa_count = cpu_to_le16(REC_SIZE / NTFS_BLOCK_SIZE + 1);
	m->sequence_number = cpu_to_le16(1);
	m->link_count = cpu_to_le16(1);
	m->attrs_offset = cpu_to_le16(off);
	m->flags = cpu_to_le16(MFT_RECORD_IN_USE);
	m->bytes_allocated = cpu_to_le32(REC_SIZE);
	m->next_attr_instance = cpu_to_le16(3);
	m->mft_record_number = cpu_to_le32(42);
	put_le16(s->rec + 48, 1);  /* update sequence number */
	off = put_resident(s->rec, off, AT_STANDARD_INFORMATION, 0, 72, 0x11);
	s->data_off = off;
	a = (void *)(s->rec + off);
	a->type = cpu_to_le32(AT_DATA);
	a->non_resident = 1;
	a->name_length = 2;
	a->name_offset = cpu_to_le16(64);
	a->instance = cpu_to_le16(1);
	memcpy(s->rec + off + 64, "a\0b\0", 4);
	a->u.nr.mapping_pairs_offset = cpu_to_le16(72);
	mp = ntfs_mapping_pairs_build(rl, 0, s->rec + off + 72, 64, NULL);
	assert_true(mp > 0);
	a->u.nr.highest_vcn = cpu_to_le64((uint64_t)(ntfs_rl_end_vcn(rl) - 1));
	a->u.nr.allocated_size = cpu_to_le64((uint64_t)ntfs_rl_end_vcn(rl) << 12);
	a->u.nr.data_size = a->u.nr.initialized_size = a->u.nr.allocated_size;
	a->length = cpu_to_le32((72 + (uint32_t)mp + 7) & ~7u);
	off += le32(a->length);
	off = put_resident(s->rec, off, AT_FILE_NAME, 2, 90, 0x33);
	put_le16(s->rec + off, 0xffff);
	put_le16(s->rec + off + 2, 0xffff);
	m->bytes_in_use = cpu_to_le32(off + 8);
}

/* Fixups on, then the full validation a read does, on a copy. */
static void synth_validate(const struct synth *s)
{
	uint8_t copy[REC_SIZE];

	memcpy(copy, s->rec, REC_SIZE);
	assert_int_equal(ntfs_mst_pre_write(copy, REC_SIZE), 0);
	if (ntfs_mft_record_check(copy, REC_SIZE, 42))
		fail_msg("rewritten record does not validate: %s", ntfs_last_error());
}

/* Decode the data attribute's runs from the record and compare with rl. */
static void synth_expect_runlist(const struct synth *s, const struct ntfs_runlist *rl)
{
	const struct ntfs_attr_record *a = (const void *)(s->rec + s->data_off);
	uint32_t mpo = le16(a->u.nr.mapping_pairs_offset);
	struct ntfs_runlist back = { 0 };

	assert_int_equal(mpo % 8, 0);
	assert_int_equal(ntfs_mapping_pairs_decode(&back, s->rec + s->data_off + mpo,
						   le32(a->length) - mpo, 0,
						   sle64(a->u.nr.highest_vcn), BIG_VOLUME, "synth"),
			 0);
	expect_runs_at(__FILE__, __LINE__, &back, (const struct run3 *)rl->runs, rl->count);
	ntfs_runlist_free(&back);
}

static const struct ntfs_attr_record *synth_attr(const struct synth *s, uint32_t type)
{
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;

	ntfs_attr_iter_init(&it, s->rec);
	while (ntfs_attr_iter_next(&it, &a))
		if (le32(a->type) == type)
			return a;
	fail_msg("attribute 0x%x lost", type);
	return NULL;
}

static void record_grows_shrinks_and_goes_sparse(void **state)
{
	struct ntfs_runlist rl = { 0 };
	struct synth s;
	struct ntfs_attr_record *a;
	const struct ntfs_attr_record *fn;
	uint32_t in_use;
	int64_t stop;

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 0, 64, 0x1000), 0);
	synth_init(&s, &rl);
	synth_validate(&s);
	a = (void *)(s.rec + s.data_off);
	in_use = get_le32(s.rec + 24);

	/* 16 runs of 4 clusters, scattered backwards: the record grows. */
	for (int i = 0; i < 16; i++)
		assert_int_equal(ntfs_rl_replace(&rl, 4 * i, 4, 0x9000 - 0x100 * i), 0);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, false, &stop), 0);
	assert_int_equal(stop, 64);
	assert_true(get_le32(s.rec + 24) > in_use);
	assert_int_equal(get_le32(s.rec + 24) % 8, 0);
	assert_int_equal(le16(a->u.nr.mapping_pairs_offset), 72);  /* name at 64, 4 bytes */
	assert_int_equal(sle64(a->u.nr.highest_vcn), 63);
	synth_validate(&s);
	synth_expect_runlist(&s, &rl);
	fn = synth_attr(&s, AT_FILE_NAME);
	for (int i = 0; i < 90; i++)
		assert_int_equal(((const uint8_t *)fn)[24 + i], 0x33);

	/* A hole, flagged sparse: the header grows to 72, the name moves. */
	assert_int_equal(ntfs_rl_replace(&rl, 8, 8, LCN_HOLE), 0);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, ATTR_IS_SPARSE, false, &stop),
			 0);
	assert_int_equal(le16(a->flags), ATTR_IS_SPARSE);
	assert_int_equal(le16(a->name_offset), 72);
	assert_memory_equal(s.rec + s.data_off + 72, "a\0b\0", 4);
	assert_int_equal(le16(a->u.nr.mapping_pairs_offset), 80);
	assert_int_equal(le64(a->u.nr.compressed_size), 0);
	synth_validate(&s);
	synth_expect_runlist(&s, &rl);
	a->u.nr.compressed_size = cpu_to_le64(12345);

	/* Shrink back to one run; the sparse header and compressed_size stay. */
	assert_int_equal(ntfs_rl_truncate(&rl, 0), 0);
	assert_int_equal(ntfs_rl_replace(&rl, 0, 3, 7), 0);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, ATTR_IS_SPARSE, false, &stop),
			 0);
	assert_int_equal(le64(a->u.nr.compressed_size), 12345);
	assert_int_equal(le32(a->length), 88);
	assert_int_equal(get_le32(s.rec + 24), in_use + 8);
	synth_validate(&s);
	synth_expect_runlist(&s, &rl);
	fn = synth_attr(&s, AT_FILE_NAME);
	for (int i = 0; i < 90; i++)
		assert_int_equal(((const uint8_t *)fn)[24 + i], 0x33);
	/* Nothing left behind past bytes_in_use. */
	for (uint32_t i = get_le32(s.rec + 24); i < REC_SIZE; i++)
		assert_int_equal(s.rec[i], 0);

	/* Plain again: back to the 64-byte header. */
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, false, &stop), 0);
	assert_int_equal(le16(a->name_offset), 64);
	assert_int_equal(le32(a->length), 80);
	assert_int_equal(get_le32(s.rec + 24), in_use);
	synth_validate(&s);

	/* Empty: highest_vcn -1, just a terminator. */
	assert_int_equal(ntfs_rl_truncate(&rl, 0), 0);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, false, &stop), 0);
	assert_int_equal(sle64(a->u.nr.highest_vcn), -1);
	assert_int_equal(stop, 0);
	synth_validate(&s);
	ntfs_runlist_free(&rl);
}

/* Too many pairs: -E2BIG and not one byte changed; partial mode fills the
 * record and reports where it stopped. */
static void record_full(void **state)
{
	struct ntfs_runlist rl = { 0 }, head = { 0 };
	struct synth s;
	uint8_t before[REC_SIZE];
	struct ntfs_attr_record *a;
	int64_t stop = -7;

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 0, 1, 50), 0);
	synth_init(&s, &rl);
	a = (void *)(s.rec + s.data_off);
	/* 400 one-cluster runs 2 apart: 3 bytes each, 1200 bytes. */
	for (int i = 0; i < 400; i++)
		assert_int_equal(ntfs_rl_replace(&rl, i, 1, 50 + 2 * i), 0);
	memcpy(before, s.rec, REC_SIZE);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, false, &stop), -E2BIG);
	assert_int_equal(stop, -7);
	assert_memory_equal(before, s.rec, REC_SIZE);

	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, true, &stop), 0);
	assert_true(stop > 100 && stop < 400);
	assert_int_equal(sle64(a->u.nr.highest_vcn), stop - 1);
	assert_true(ntfs_mft_record_free_space(s.rec) < 8);
	synth_validate(&s);
	assert_int_equal(ntfs_rl_copy(&head, &rl), 0);
	assert_int_equal(ntfs_rl_truncate(&head, stop), 0);
	synth_expect_runlist(&s, &head);

	/* A full record with no room for even one pair: -E2BIG in both modes,
	 * nothing changed; an empty runlist (just the terminator) still fits. */
	ntfs_runlist_free(&rl);
	assert_int_equal(ntfs_rl_replace(&rl, 0, 1, 50), 0);
	synth_init(&s, &rl);
	assert_int_equal(ntfs_attr_record_resize(s.rec, (void *)(s.rec + 56),
						 96 + ntfs_mft_record_free_space(s.rec)),
			 0);
	assert_int_equal(ntfs_mft_record_free_space(s.rec), 0);
	a = (struct ntfs_attr_record *)synth_attr(&s, AT_DATA);   /* it moved */
	assert_int_equal(ntfs_rl_replace(&rl, 0, (int64_t)1 << 40, (int64_t)1 << 40), 0);
	memcpy(before, s.rec, REC_SIZE);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, true, &stop), -E2BIG);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, false, &stop), -E2BIG);
	assert_memory_equal(before, s.rec, REC_SIZE);
	assert_int_equal(ntfs_rl_truncate(&rl, 0), 0);
	assert_int_equal(ntfs_attr_record_set_runlist(s.rec, a, &rl, 0, true, &stop), 0);
	assert_int_equal(stop, 0);
	synth_validate(&s);
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&head);
}

static void record_resize_moves_followers(void **state)
{
	struct ntfs_runlist rl = { 0 };
	struct synth s;
	struct ntfs_attr_record *si;
	uint32_t in_use;

	(void)state;
	assert_int_equal(ntfs_rl_replace(&rl, 0, 4, 10), 0);
	synth_init(&s, &rl);
	si = (void *)(s.rec + 56);
	in_use = get_le32(s.rec + 24);
	assert_int_equal(ntfs_attr_record_resize(s.rec, si, 96 + 200), 0);
	assert_int_equal(get_le32(s.rec + 24), in_use + 200);
	assert_int_equal(le32(synth_attr(&s, AT_DATA)->type), AT_DATA);
	assert_int_equal(((const uint8_t *)synth_attr(&s, AT_FILE_NAME))[24], 0x33);
	synth_validate(&s);
	assert_int_equal(ntfs_attr_record_resize(s.rec, si, REC_SIZE), -E2BIG);
	assert_int_equal(ntfs_attr_record_resize(s.rec, si, 96), 0);
	assert_int_equal(get_le32(s.rec + 24), in_use);
	synth_validate(&s);
	ntfs_runlist_free(&rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(doc_examples),
		cmocka_unit_test(minimal_signed_sizes),
		cmocka_unit_test(huge_values),
		cmocka_unit_test(holes_first_and_last),
		cmocka_unit_test(start_in_the_middle),
		cmocka_unit_test(size_limit_and_stop_vcn),
		cmocka_unit_test(random_round_trips),
		cmocka_unit_test(replace_splits_and_merges),
		cmocka_unit_test(replace_appends),
		cmocka_unit_test(replace_rejects),
		cmocka_unit_test(truncate_extract_allocated),
		cmocka_unit_test(edits_match_model),
		cmocka_unit_test(record_grows_shrinks_and_goes_sparse),
		cmocka_unit_test(record_full),
		cmocka_unit_test(record_resize_moves_followers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
