/*
 * test_ondisk_units — cmocka unit tests for the parts of daemon/ntfs that
 * work on byte buffers alone: boot sector validation, update-sequence
 * fixups, mapping-pairs decoding and lookup, UTF-16/UTF-8 conversion and
 * name collation.  Volume-level behaviour is tested against ntfs-3g in
 * test_vs_ntfs3g and test_corrupt.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "boot.h"
#include "collate.h"
#include "error.h"
#include "layout.h"
#include "le.h"
#include "mst.h"
#include "runlist.h"
#include "unistr.h"

/* A boot sector as mkntfs writes it for a 64 MiB volume, 4 KiB clusters. */
static void make_boot(struct ntfs_boot_sector *bs)
{
	memset(bs, 0, sizeof(*bs));
	memcpy(bs->oem_id, "NTFS    ", 8);
	bs->bytes_per_sector = cpu_to_le16(512);
	bs->sectors_per_cluster = 8;
	bs->media_type = 0xf8;
	bs->number_of_sectors = cpu_to_le64(131071);
	bs->mft_lcn = cpu_to_le64(4);
	bs->mftmirr_lcn = cpu_to_le64(8191);
	bs->clusters_per_mft_record = -10;
	bs->clusters_per_index_record = 1;
	bs->end_of_sector_marker = cpu_to_le16(0xaa55);
}

static void boot_accepts_mkntfs_layout(void **state)
{
	struct ntfs_boot_sector bs;
	struct ntfs_geometry g;

	(void)state;
	make_boot(&bs);
	assert_int_equal(ntfs_boot_parse(&bs, 64 << 20, &g), 0);
	assert_int_equal(g.cluster_size, 4096);
	assert_int_equal(g.cluster_size_bits, 12);
	assert_int_equal(g.mft_record_size, 1024);
	assert_int_equal(g.index_block_size, 4096);
	assert_int_equal(g.nr_clusters, 131071 * 512 / 4096);
}

static void boot_negative_cluster_exponent(void **state)
{
	struct ntfs_boot_sector bs;
	struct ntfs_geometry g;

	(void)state;
	make_boot(&bs);
	bs.sectors_per_cluster = 0xf4;  /* 2^12 sectors of 512 = 2 MiB clusters */
	bs.clusters_per_index_record = -12;
	bs.number_of_sectors = cpu_to_le64(1ull << 20);
	bs.mftmirr_lcn = cpu_to_le64(100);
	assert_int_equal(ntfs_boot_parse(&bs, 1ull << 29, &g), 0);
	assert_int_equal(g.cluster_size, 2u << 20);
	assert_int_equal(g.index_block_size, 4096);
	bs.sectors_per_cluster = 0xf3;  /* 4 MiB: too large */
	assert_int_equal(ntfs_boot_parse(&bs, 1ull << 29, &g), -EINVAL);
	assert_non_null(strstr(ntfs_last_error(), "sectors_per_cluster"));
}

struct boot_case {
	void (*mutate)(struct ntfs_boot_sector *);
	const char *field;
};

static void m_oem(struct ntfs_boot_sector *b) { memcpy(b->oem_id, "MSDOS5.0", 8); }
static void m_bps(struct ntfs_boot_sector *b) { b->bytes_per_sector = cpu_to_le16(1000); }
static void m_bps_big(struct ntfs_boot_sector *b) { b->bytes_per_sector = cpu_to_le16(8192); }
static void m_spc(struct ntfs_boot_sector *b) { b->sectors_per_cluster = 3; }
static void m_mftrec(struct ntfs_boot_sector *b) { b->clusters_per_mft_record = 0; }
static void m_mftrec2(struct ntfs_boot_sector *b) { b->clusters_per_mft_record = 3; }
static void m_idx(struct ntfs_boot_sector *b) { b->clusters_per_index_record = -40; }
static void m_mftlcn(struct ntfs_boot_sector *b) { b->mft_lcn = cpu_to_le64(1ull << 40); }
static void m_mirr(struct ntfs_boot_sector *b) { b->mftmirr_lcn = cpu_to_le64(16383); }
static void m_fats(struct ntfs_boot_sector *b) { b->fats = 2; }
static void m_sectors(struct ntfs_boot_sector *b) { b->number_of_sectors = cpu_to_le64(1ull << 30); }
static void m_marker(struct ntfs_boot_sector *b) { b->end_of_sector_marker = 0; }

static void boot_rejects_each_bad_field(void **state)
{
	static const struct boot_case cases[] = {
		{ m_oem, "OEM" },
		{ m_bps, "bytes_per_sector" },
		{ m_bps_big, "bytes_per_sector" },
		{ m_spc, "sectors_per_cluster" },
		{ m_mftrec, "clusters_per_mft_record" },
		{ m_mftrec2, "clusters_per_mft_record" },
		{ m_idx, "clusters_per_index_record" },
		{ m_mftlcn, "mft_lcn" },
		{ m_mirr, "mftmirr_lcn" },
		{ m_fats, "fats" },
		{ m_sectors, "truncated" },
		{ m_marker, "end-of-sector" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ntfs_boot_sector bs;
		struct ntfs_geometry g;

		make_boot(&bs);
		cases[i].mutate(&bs);
		assert_int_equal(ntfs_boot_parse(&bs, 64 << 20, &g), -EINVAL);
		if (!strstr(ntfs_last_error(), cases[i].field))
			fail_msg("case %zu: message \"%s\" does not name %s", i, ntfs_last_error(),
				 cases[i].field);
	}
}

static void mst_round_trip_and_torn(void **state)
{
	uint8_t rec[1024], orig[1024];
	struct ntfs_record_header *h = (void *)rec;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rec); i++)
		rec[i] = (uint8_t)(i * 7);
	h->magic = cpu_to_le32(magic_FILE);
	h->usa_ofs = cpu_to_le16(0x30);
	h->usa_count = cpu_to_le16(3);
	put_le16(rec + 0x30, 41);
	memcpy(orig, rec, sizeof(rec));
	assert_int_equal(ntfs_mst_pre_write(rec, sizeof(rec)), 0);
	assert_int_equal(get_le16(rec + 510), 42);
	assert_int_equal(get_le16(rec + 1022), 42);
	assert_int_equal(ntfs_mst_post_read(rec, sizeof(rec), "MFT record", 7), 0);
	assert_memory_equal(rec + 0x40, orig + 0x40, sizeof(rec) - 0x40);
	assert_memory_equal(rec + 510, orig + 510, 2);

	assert_int_equal(ntfs_mst_pre_write(rec, sizeof(rec)), 0);
	rec[1022] ^= 0xff;  /* a torn second sector */
	assert_int_equal(ntfs_mst_post_read(rec, sizeof(rec), "MFT record", 7), -EIO);
	assert_non_null(strstr(ntfs_last_error(), "MFT record 7"));
	assert_non_null(strstr(ntfs_last_error(), "sector 1"));

	h->usa_count = cpu_to_le16(9);  /* does not match the size */
	assert_int_equal(ntfs_mst_post_read(rec, sizeof(rec), "MFT record", 7), -EIO);
	assert_non_null(strstr(ntfs_last_error(), "update sequence array"));
}

static void runlist_decode_with_hole_and_negative_delta(void **state)
{
	/* 0x10 clusters at lcn 0x100; 8-cluster hole; 4 clusters at lcn 0x100-0x80 */
	static const uint8_t mp[] = { 0x21, 0x10, 0x00, 0x01, 0x01, 0x08,
				      0x11, 0x04, 0x80, 0x00 };
	struct ntfs_runlist rl = { 0 };
	int64_t count;

	(void)state;
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, mp, sizeof(mp), 0, 27, 1000, "t"), 0);
	assert_int_equal(rl.count, 3);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, 0, &count), 0x100);
	assert_int_equal(count, 16);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, 15, &count), 0x10f);
	assert_int_equal(count, 1);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, 16, &count), LCN_HOLE);
	assert_int_equal(count, 8);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, 25, &count), 0x81);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, 28, NULL), LCN_ENOENT);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, -1, NULL), LCN_ENOENT);
	ntfs_runlist_free(&rl);
}

static void runlist_merges_extents_and_rejects_gaps(void **state)
{
	static const uint8_t a[] = { 0x11, 0x10, 0x20, 0x00 };  /* vcn 0..15 at 32 */
	static const uint8_t b[] = { 0x11, 0x08, 0x40, 0x00 };  /* 8 clusters at 64 */
	struct ntfs_runlist rl = { 0 };

	(void)state;
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, a, sizeof(a), 0, 15, 1000, "t"), 0);
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, b, sizeof(b), 17, 24, 1000, "t"), -EIO);
	assert_int_equal(rl.count, 1);
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, b, sizeof(b), 16, 23, 1000, "t"), 0);
	assert_int_equal(ntfs_rl_end_vcn(&rl), 24);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&rl, 16, NULL), 64);
	ntfs_runlist_free(&rl);
}

static void runlist_rejects_corruption(void **state)
{
	static const uint8_t off_volume[] = { 0x21, 0x10, 0xe8, 0x03, 0x00 };
	static const uint8_t no_end[] = { 0x11, 0x10, 0x20 };
	static const uint8_t neg_lcn[] = { 0x11, 0x10, 0x20, 0x11, 0x01, 0x80, 0x00 };
	static const uint8_t zero_len[] = { 0x11, 0x00, 0x20, 0x00 };
	static const uint8_t bad_hdr[] = { 0x90, 0x01, 0x00 };
	static const uint8_t short_end[] = { 0x11, 0x10, 0x20, 0x00 };
	struct ntfs_runlist rl = { 0 };

	(void)state;
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, off_volume, sizeof(off_volume), 0, 15,
						   1000, "t"), -EIO);
	assert_non_null(strstr(ntfs_last_error(), "outside the volume"));
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, no_end, sizeof(no_end), 0, 15, 1000, "t"),
			 -EIO);
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, neg_lcn, sizeof(neg_lcn), 0, 16, 1000,
						   "t"), -EIO);
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, zero_len, sizeof(zero_len), 0, -1, 1000,
						   "t"), -EIO);
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, bad_hdr, sizeof(bad_hdr), 0, 0, 1000,
						   "t"), -EIO);
	assert_int_equal(ntfs_mapping_pairs_decode(&rl, short_end, sizeof(short_end), 0, 20,
						   1000, "t"), -EIO);
	assert_non_null(strstr(ntfs_last_error(), "highest_vcn"));
	assert_int_equal(rl.count, 0);
	ntfs_runlist_free(&rl);
}

static void unistr_round_trip(void **state)
{
	const char *s = "Ünïcödé-日本語-\xf0\x9f\x98\x80.txt";
	ntfschar *u;
	uint32_t n;
	char *back;

	(void)state;
	assert_int_equal(ntfs_utf8_to_utf16(s, strlen(s), &u, &n), 0);
	assert_int_equal(n, 7 + 1 + 3 + 1 + 2 + 4);  /* the emoji is a surrogate pair */
	assert_int_equal(ntfs_utf16_to_utf8(u, n, &back), 0);
	assert_string_equal(back, s);
	free(back);
	/* an unpaired high surrogate is refused */
	assert_int_equal(ntfs_utf16_to_utf8(u + 12, 1, &back), -EILSEQ);
	free(u);
	assert_int_equal(ntfs_utf8_to_utf16("\xc3", 1, &u, &n), -EILSEQ);
	assert_int_equal(ntfs_utf8_to_utf16("\xc0\xaf", 2, &u, &n), -EILSEQ);  /* overlong */
	assert_int_equal(ntfs_utf8_to_utf16("\xed\xa0\x80", 3, &u, &n), -EILSEQ); /* surrogate */
}

static void collate_names(void **state)
{
	ntfschar up[128];
	ntfschar *a, *b, *c;
	uint32_t la, lb, lc, i;

	(void)state;
	for (i = 0; i < 128; i++)
		up[i] = cpu_to_le16((uint16_t)(i >= 'a' && i <= 'z' ? i - 32 : i));
	assert_int_equal(ntfs_utf8_to_utf16("readme", 6, &a, &la), 0);
	assert_int_equal(ntfs_utf8_to_utf16("README", 6, &b, &lb), 0);
	assert_int_equal(ntfs_utf8_to_utf16("readme.txt", 10, &c, &lc), 0);
	assert_int_equal(ntfs_names_collate(a, la, b, lb, up, 128, true), 0);
	assert_int_equal(ntfs_names_collate(a, la, b, lb, up, 128, false), 1);
	assert_int_equal(ntfs_names_collate(a, la, c, lc, up, 128, true), -1);
	assert_int_equal(ntfs_names_collate(c, lc, b, lb, up, 128, true), 1);
	free(a);
	free(b);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(boot_accepts_mkntfs_layout),
		cmocka_unit_test(boot_negative_cluster_exponent),
		cmocka_unit_test(boot_rejects_each_bad_field),
		cmocka_unit_test(mst_round_trip_and_torn),
		cmocka_unit_test(runlist_decode_with_hole_and_negative_delta),
		cmocka_unit_test(runlist_merges_extents_and_rejects_gaps),
		cmocka_unit_test(runlist_rejects_corruption),
		cmocka_unit_test(unistr_round_trip),
		cmocka_unit_test(collate_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
