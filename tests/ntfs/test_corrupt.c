/*
 * test_corrupt.c — corrupted volumes must give a clean error, never a crash
 * and never garbage data.
 *
 * The group setup builds one pristine image with the real ntfs-3g tools:
 * mkntfs (32 MiB, 4 KiB clusters), ntfscp of a ~2 MiB non-resident file and
 * a small resident one, and a FUSE mount of ntfs-3g to create /dir holding
 * 200 files (enough for INDX blocks).  Every on-disk structure a test
 * corrupts is located with the layer itself on that pristine image ($MFT's
 * runlist for MFT records, the directory's $INDEX_ALLOCATION runlist for
 * INDX blocks).
 *
 * Each test copies the pristine image to a scratch file, corrupts exactly
 * one thing (re-applying the update sequence fixups when it edits a
 * protected record, so the intended corruption is the only one), opens it
 * read-only and checks that the operation fails with the expected negative
 * errno and a message naming the object and the reason.  The pristine and
 * "edited but unchanged" controls show the same operations succeed when the
 * data is sound, so the failures happen for the right reason.
 *
 * Run it under AddressSanitizer and UndefinedBehaviorSanitizer: any read out
 * of bounds or runaway loop on corrupted input is a failure too.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "attrib.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "layout.h"
#include "le.h"
#include "mft.h"
#include "mst.h"
#include "runlist.h"
#include "testvol.h"
#include "unistr.h"
#include "volume.h"

#define IMAGE_SIZE (32u << 20)
#define BIG_SIZE ((2u << 20) + 777u)    /* ~2 MiB, ends in a partial cluster */
#define SMALL_SIZE 150u
#define DIR_FILES 200
#define MAX_PIECES 32
#define MAX_ROOT_CHILDREN 64

/* "$I30" as stored on disk, whatever the host byte order. */
static const union {
	uint8_t bytes[8];
	ntfschar units[4];
} i30 = { .bytes = { '$', 0, 'I', 0, '3', 0, '0', 0 } };

/* Where a byte range of an attribute lies on the disk. */
struct range {
	unsigned n;
	uint32_t size;
	struct {
		uint64_t off;
		uint32_t len;
	} p[MAX_PIECES];
};

struct fixture {
	struct testvol tv;      /* tv.img: the pristine image, tv.scratch: a test's copy */
	char tool_ntfscat[256];

	uint8_t *big;           /* source of /big.bin */
	uint8_t *big_cat;       /* what ntfscat printed for /big.bin */
	size_t big_cat_len;
	uint8_t small[SMALL_SIZE];

	/* geometry of the pristine image */
	uint32_t cluster_size, cluster_bits, rec_size, index_block_size;
	uint64_t nr_clusters, mft_lcn;

	/* inodes and where their records lie */
	uint64_t big_no, small_no, dir_no;
	struct range big_rec, small_rec, dir_rec, mft0_rec, upcase_rec;

	/* /dir's index */
	uint64_t dir_mref[DIR_FILES];
	uint64_t root_child[MAX_ROOT_CHILDREN];
	unsigned nr_root_child;
	uint64_t ia_blocks;     /* blocks in $INDEX_ALLOCATION */
	uint32_t vcn_bits;
	struct range indx;      /* the first child block of the root */
	uint64_t indx_vcn;
	bool indx_internal;     /* it has children of its own */
	struct range leaf;      /* a leaf block (== indx when the tree has 2 levels) */
	uint64_t leaf_vcn;
};

static struct fixture fx;

/* NTFSD_TEST_VERBOSE=1 prints every error message the layer produced. */
static bool verbose;

/* Per-test watchdog, seconds (NTFSD_TEST_TIMEOUT overrides). */
static unsigned test_timeout = 120;

/* ------------------------------------------------------------------ */
/* small utilities                                                      */
/* ------------------------------------------------------------------ */

static void dir_name(char *buf, size_t len, int i)
{
	snprintf(buf, len, "file_%03d.txt", i);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint8_t rng_byte(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint8_t)((rng_state * 0x2545f4914f6cdd1dull) >> 56);
}

/* ------------------------------------------------------------------ */
/* locating structures                                                  */
/* ------------------------------------------------------------------ */

/* Map [pos, pos + len) of an attribute through its runlist to disk pieces. */
static int map_range(const struct ntfs_runlist *rl, uint32_t cbits, uint64_t pos, uint32_t len,
		     struct range *r)
{
	memset(r, 0, sizeof(*r));
	r->size = len;
	while (len) {
		int64_t count = 0;
		int64_t lcn = ntfs_rl_vcn_to_lcn(rl, (int64_t)(pos >> cbits), &count);
		uint64_t ofs = pos & ((1ull << cbits) - 1), avail;
		uint32_t chunk;

		if (lcn < 0 || count <= 0 || r->n == MAX_PIECES)
			return -1;
		avail = ((uint64_t)count << cbits) - ofs;
		chunk = avail < len ? (uint32_t)avail : len;
		r->p[r->n].off = ((uint64_t)lcn << cbits) + ofs;
		r->p[r->n].len = chunk;
		r->n++;
		pos += chunk;
		len -= chunk;
	}
	return 0;
}

static int mft_record_range(struct ntfs_volume *vol, uint64_t mft_no, struct range *r)
{
	return map_range(&vol->mft_data->rl, vol->geo.cluster_size_bits,
			 mft_no << vol->geo.mft_record_size_bits, vol->geo.mft_record_size, r);
}

static void range_io(const char *img, const struct range *r, uint8_t *buf, bool write)
{
	int fd = open(img, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	uint32_t done = 0;

	assert_true(fd >= 0);
	for (unsigned i = 0; i < r->n; i++) {
		ssize_t n = write ? pwrite(fd, buf + done, r->p[i].len, (off_t)r->p[i].off)
				  : pread(fd, buf + done, r->p[i].len, (off_t)r->p[i].off);

		assert_int_equal(n, r->p[i].len);
		done += r->p[i].len;
	}
	assert_int_equal(close(fd), 0);
}

/* Raw bytes of a range, fixups still applied. */
static uint8_t *load_raw(const struct range *r)
{
	uint8_t *buf = malloc(r->size);

	assert_non_null(buf);
	range_io(fx.tv.scratch, r, buf, false);
	return buf;
}

static void store_raw(const struct range *r, uint8_t *buf)
{
	range_io(fx.tv.scratch, r, buf, true);
	free(buf);
}

/* A protected record (FILE or INDX) with its fixups removed, ready to edit. */
static uint8_t *load_unfixed(const struct range *r)
{
	uint8_t *buf = load_raw(r);

	if (ntfs_mst_post_read(buf, r->size, "test record", 0))
		fail_msg("pristine record does not pass its fixups: %s", ntfs_last_error());
	return buf;
}

/* Re-apply fixups and write the edited record back. */
static void store_refixed(const struct range *r, uint8_t *buf)
{
	assert_int_equal(ntfs_mst_pre_write(buf, r->size), 0);
	store_raw(r, buf);
}

/* Offset of the first attribute of type (with name, or unnamed) in an
 * unfixed pristine record. */
static uint32_t rec_find_attr(const uint8_t *rec, uint32_t size, uint32_t type,
			      const ntfschar *name, uint8_t name_len)
{
	uint32_t off = get_le16(rec + offsetof(struct ntfs_mft_record, attrs_offset));

	while (off + 8 <= size) {
		const struct ntfs_attr_record *a = (const void *)(rec + off);
		uint32_t len = get_le32(rec + off + 4);

		if (get_le32(rec + off) == AT_END || len == 0)
			break;
		if (get_le32(rec + off) == type && a->name_length == name_len &&
		    (!name_len || !memcmp(rec + off + get_le16(&a->name_offset), name,
					  2u * name_len)))
			return off;
		off += len;
	}
	fail_msg("attribute 0x%x not found in the pristine record", type);
	return 0;
}

/* ------------------------------------------------------------------ */
/* assertions on errors                                                 */
/* ------------------------------------------------------------------ */

static void expect_err_at(const char *file, int line, long got, int want,
			  const char *const *keywords)
{
	char msg[600];

	snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	if (verbose)
		print_message("    -> %ld: %s\n", got, msg);
	if (got != -want) {
		print_error("expected -%d (%s), got %ld (%s); last error: \"%s\"\n", want,
			    strerror(want), got, got < 0 ? strerror((int)-got) : "success", msg);
		_fail(file, line);
	}
	for (; *keywords; keywords++) {
		if (!strstr(msg, *keywords)) {
			print_error("error message \"%s\" does not mention \"%s\"\n", msg, *keywords);
			_fail(file, line);
		}
	}
}

/* got must be -want and the last error must contain every keyword. */
#define EXPECT_ERR(got, want, ...)                                                  \
	expect_err_at(__FILE__, __LINE__, (long)(got), (want),                      \
		      (const char *const[]){ __VA_ARGS__, NULL })

#define EXPECT_OK(expr)                                                               \
	do {                                                                          \
		long rc_ = (long)(expr);                                              \
		if (rc_ < 0)                                                          \
			fail_msg("%s failed: %ld, \"%s\"", #expr, rc_, ntfs_last_error()); \
	} while (0)

static const char *rec_name(uint64_t mft_no)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "MFT record %llu", (unsigned long long)mft_no);
	return buf;
}

static struct ntfs_volume *open_scratch(void)
{
	struct ntfs_volume *vol = NULL;

	ntfs_clear_error();
	EXPECT_OK(ntfs_volume_open(fx.tv.scratch, NTFS_OPEN_READ_ONLY, &vol));
	return vol;
}

/* ntfs_volume_open of the scratch image must fail with -want. */
static int open_scratch_fails(void)
{
	struct ntfs_volume *vol = NULL;
	int err;

	ntfs_clear_error();
	err = ntfs_volume_open(fx.tv.scratch, NTFS_OPEN_READ_ONLY, &vol);
	if (!err) {
		ntfs_volume_close(vol);
		fail_msg("the corrupted volume opened");
	}
	assert_null(vol);
	return err;
}

/* ------------------------------------------------------------------ */
/* whole-volume checks shared by the controls and corruption tests      */
/* ------------------------------------------------------------------ */

static int read_big(struct ntfs_volume *vol, uint8_t **data)
{
	struct ntfs_inode *ni = NULL;
	struct ntfs_attr *na = NULL;
	uint8_t *buf;
	ssize_t n;
	int err;

	*data = NULL;
	err = ntfs_inode_open(vol, fx.big_no, &ni);
	if (err)
		return err;
	err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (err) {
		ntfs_inode_close(ni);
		return err;
	}
	buf = malloc(BIG_SIZE + 4096);
	assert_non_null(buf);
	/* Ask for more than there is: the count must stop at data_size. */
	n = ntfs_attr_pread(na, 0, BIG_SIZE + 4096, buf);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	assert_int_equal(n, BIG_SIZE);
	*data = buf;
	return 0;
}

struct list_ctx {
	unsigned seen;
	unsigned foreign;       /* entries that match nothing in the pristine /dir */
	bool mask[DIR_FILES];
};

static int list_cb(void *ctx, const struct ntfs_dirent *de)
{
	struct list_ctx *lc = ctx;
	char *name = NULL, want[32];
	unsigned idx;
	char tail;

	lc->seen++;
	if (ntfs_utf16_to_utf8(de->name, de->name_len, &name)) {
		lc->foreign++;
		return 0;
	}
	if (sscanf(name, "file_%3u.tx%c", &idx, &tail) == 2 && idx < DIR_FILES) {
		dir_name(want, sizeof(want), (int)idx);
		if (!strcmp(name, want) && de->mref == fx.dir_mref[idx] && !lc->mask[idx]) {
			lc->mask[idx] = true;
			free(name);
			return 0;
		}
	}
	print_error("unexpected directory entry \"%s\" -> 0x%llx\n", name,
		    (unsigned long long)de->mref);
	lc->foreign++;
	free(name);
	return 0;
}

/* Everything a healthy scratch image must do. */
static void check_volume_healthy(void)
{
	struct ntfs_volume *vol = open_scratch();
	struct ntfs_inode *dir = NULL, *ni = NULL;
	struct ntfs_attr *na = NULL;
	struct list_ctx lc = { 0 };
	uint8_t *data = NULL, small[SMALL_SIZE + 16];
	uint64_t mref;
	char path[64];

	EXPECT_OK(read_big(vol, &data));
	assert_memory_equal(data, fx.big, BIG_SIZE);
	free(data);

	EXPECT_OK(ntfs_path_lookup(vol, "/small.txt", 0, &mref));
	assert_int_equal(MREF(mref), fx.small_no);
	EXPECT_OK(ntfs_inode_open(vol, fx.small_no, &ni));
	EXPECT_OK(ntfs_attr_open(ni, AT_DATA, NULL, 0, &na));
	assert_true(na->resident);
	assert_int_equal(ntfs_attr_pread(na, 0, sizeof(small), small), SMALL_SIZE);
	assert_memory_equal(small, fx.small, SMALL_SIZE);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);

	EXPECT_OK(ntfs_inode_open(vol, fx.dir_no, &dir));
	EXPECT_OK(ntfs_dir_foreach(dir, list_cb, &lc));
	assert_int_equal(lc.seen, DIR_FILES);
	assert_int_equal(lc.foreign, 0);
	ntfs_inode_close(dir);
	for (int i = 0; i < DIR_FILES; i++) {
		snprintf(path, sizeof(path), "/dir/");
		dir_name(path + 5, sizeof(path) - 5, i);
		EXPECT_OK(ntfs_path_lookup(vol, path, 0, &mref));
		assert_int_equal(mref, fx.dir_mref[i]);
	}
	ntfs_volume_close(vol);
}

/* /dir is corrupted: listing must fail with -EIO naming the index; every
 * entry it delivers before that must be genuine; every lookup must either
 * find the pristine answer or fail cleanly.  Returns the failed lookups. */
static unsigned check_dir_corrupt(const char *const *keywords)
{
	struct ntfs_volume *vol = open_scratch();
	struct ntfs_inode *dir = NULL;
	struct list_ctx lc = { 0 };
	char msg[600], path[64];
	unsigned failed = 0;
	uint64_t mref;
	int err;

	EXPECT_OK(ntfs_inode_open(vol, fx.dir_no, &dir));
	ntfs_clear_error();
	err = ntfs_dir_foreach(dir, list_cb, &lc);
	snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	EXPECT_ERR(err, EIO, "index");
	for (; *keywords; keywords++)
		if (!strstr(msg, *keywords))
			fail_msg("error message \"%s\" does not mention \"%s\"", msg, *keywords);
	assert_int_equal(lc.foreign, 0);
	assert_true(lc.seen < DIR_FILES);
	ntfs_inode_close(dir);

	for (int i = 0; i < DIR_FILES; i++) {
		snprintf(path, sizeof(path), "/dir/");
		dir_name(path + 5, sizeof(path) - 5, i);
		ntfs_clear_error();
		mref = 0;
		err = ntfs_path_lookup(vol, path, 0, &mref);
		if (err == 0) {
			if (mref != fx.dir_mref[i])
				fail_msg("%s resolved to 0x%llx instead of 0x%llx", path,
					 (unsigned long long)mref,
					 (unsigned long long)fx.dir_mref[i]);
			continue;
		}
		failed++;
		if (verbose && failed == 1)
			print_message("    -> lookup %s: %d: %s\n", path, err, ntfs_last_error());
		/* -EIO naming the index, or -ENOENT when the corruption sends the
		 * search down the wrong branch of an otherwise valid tree. */
		if (!((err == -EIO && strstr(ntfs_last_error(), "index")) ||
		      (err == -ENOENT && strstr(ntfs_last_error(), path))))
			fail_msg("lookup of %s failed with %d \"%s\", expected -EIO naming the "
				 "index", path, err, ntfs_last_error());
	}
	ntfs_volume_close(vol);
	return failed;
}

/* ------------------------------------------------------------------ */
/* group and per-test fixtures                                          */
/* ------------------------------------------------------------------ */

static void cleanup_all(void)
{
	testvol_destroy(&fx.tv);
	free(fx.big);
	free(fx.big_cat);
	fx.big = fx.big_cat = NULL;
}

/* Find the inodes, records and index blocks the tests corrupt. */
static int locate_structures(void)
{
	struct ntfs_volume *vol = NULL;
	struct ntfs_inode *dir = NULL;
	struct ntfs_attr *ir = NULL, *ia = NULL;
	struct list_ctx lc = { 0 };
	uint64_t mref;
	char path[64];
	int err, ret = -1;

	err = ntfs_volume_open(fx.tv.img, NTFS_OPEN_READ_ONLY, &vol);
	if (err)
		SETUP_FAIL("the layer cannot open the pristine image: %s", ntfs_last_error());
	fx.cluster_size = vol->geo.cluster_size;
	fx.cluster_bits = vol->geo.cluster_size_bits;
	fx.rec_size = vol->geo.mft_record_size;
	fx.index_block_size = vol->geo.index_block_size;
	fx.nr_clusters = vol->geo.nr_clusters;
	fx.mft_lcn = vol->geo.mft_lcn;

	if (ntfs_path_lookup(vol, "/big.bin", 0, &mref))
		SETUP_FAIL("/big.bin: %s", ntfs_last_error());
	fx.big_no = MREF(mref);
	if (ntfs_path_lookup(vol, "/small.txt", 0, &mref))
		SETUP_FAIL("/small.txt: %s", ntfs_last_error());
	fx.small_no = MREF(mref);
	if (ntfs_path_lookup(vol, "/dir", 0, &mref))
		SETUP_FAIL("/dir: %s", ntfs_last_error());
	fx.dir_no = MREF(mref);
	for (int i = 0; i < DIR_FILES; i++) {
		snprintf(path, sizeof(path), "/dir/");
		dir_name(path + 5, sizeof(path) - 5, i);
		if (ntfs_path_lookup(vol, path, 0, &fx.dir_mref[i]))
			SETUP_FAIL("%s: %s", path, ntfs_last_error());
	}
	if (mft_record_range(vol, fx.big_no, &fx.big_rec) ||
	    mft_record_range(vol, fx.small_no, &fx.small_rec) ||
	    mft_record_range(vol, fx.dir_no, &fx.dir_rec) ||
	    mft_record_range(vol, FILE_UpCase, &fx.upcase_rec))
		SETUP_FAIL("cannot map an MFT record through $MFT's runlist");
	/* Record 0 is read straight from mft_lcn when the volume is opened. */
	fx.mft0_rec = (struct range){ .n = 1, .size = fx.rec_size };
	fx.mft0_rec.p[0].off = fx.mft_lcn << fx.cluster_bits;
	fx.mft0_rec.p[0].len = fx.rec_size;

	if (ntfs_inode_open(vol, fx.dir_no, &dir))
		SETUP_FAIL("open /dir: %s", ntfs_last_error());
	if (ntfs_dir_foreach(dir, list_cb, &lc) || lc.seen != DIR_FILES || lc.foreign)
		SETUP_FAIL("pristine /dir lists %u entries (%u unexpected): %s", lc.seen,
			   lc.foreign, ntfs_last_error());
	if (ntfs_attr_open(dir, AT_INDEX_ROOT, i30.units, 4, &ir) || !ir->resident)
		SETUP_FAIL("/dir $INDEX_ROOT: %s", ntfs_last_error());
	if (ntfs_attr_open(dir, AT_INDEX_ALLOCATION, i30.units, 4, &ia))
		SETUP_FAIL("/dir has no $INDEX_ALLOCATION (not enough files?): %s",
			   ntfs_last_error());
	if (get_le32(ir->value + 8) != fx.index_block_size)
		SETUP_FAIL("unexpected index block size %u", get_le32(ir->value + 8));
	fx.vcn_bits = fx.index_block_size >= fx.cluster_size ? fx.cluster_bits
							     : NTFS_BLOCK_SIZE_BITS;
	fx.ia_blocks = ia->data_size / fx.index_block_size;

	/* The root's child pointers (the root is trusted: it is pristine). */
	{
		const uint8_t *hdr = ir->value + offsetof(struct ntfs_index_root, index);
		uint32_t off = get_le32(hdr), end = get_le32(hdr + 4);

		while (off + sizeof(struct ntfs_index_entry) <= end) {
			const uint8_t *e = hdr + off;
			uint16_t len = get_le16(e + 8), flags = get_le16(e + 12);

			if (flags & INDEX_ENTRY_NODE && fx.nr_root_child < MAX_ROOT_CHILDREN)
				fx.root_child[fx.nr_root_child++] = get_le64(e + len - 8);
			if ((flags & INDEX_ENTRY_END) || !len)
				break;
			off += len;
		}
	}
	if (fx.nr_root_child == 0)
		SETUP_FAIL("the /dir index root has no child blocks");
	fx.indx_vcn = fx.root_child[0];
	if (map_range(&ia->rl, fx.cluster_bits, fx.indx_vcn << fx.vcn_bits, fx.index_block_size,
		      &fx.indx))
		SETUP_FAIL("cannot map index block vcn %llu", (unsigned long long)fx.indx_vcn);
	/* Follow first children down to a leaf. */
	fx.leaf_vcn = fx.indx_vcn;
	for (int depth = 0;; depth++) {
		uint8_t *blk = malloc(fx.index_block_size);
		uint32_t hdr = offsetof(struct ntfs_index_block, index), off;
		bool internal;

		if (!blk || depth > 8 ||
		    ntfs_attr_pread(ia, fx.leaf_vcn << fx.vcn_bits, fx.index_block_size, blk) !=
			    (ssize_t)fx.index_block_size ||
		    ntfs_mst_post_read(blk, fx.index_block_size, "index block", fx.leaf_vcn)) {
			free(blk);
			SETUP_FAIL("cannot read pristine index block vcn %llu: %s",
				   (unsigned long long)fx.leaf_vcn, ntfs_last_error());
		}
		internal = blk[hdr + 12] & 1;
		if (depth == 0)
			fx.indx_internal = internal;
		if (!internal) {
			free(blk);
			break;
		}
		off = hdr + get_le32(blk + hdr);
		while (!(get_le16(blk + off + 12) & INDEX_ENTRY_NODE))
			off += get_le16(blk + off + 8);
		fx.leaf_vcn = get_le64(blk + off + get_le16(blk + off + 8) - 8);
		free(blk);
	}
	if (map_range(&ia->rl, fx.cluster_bits, fx.leaf_vcn << fx.vcn_bits, fx.index_block_size,
		      &fx.leaf))
		SETUP_FAIL("cannot map index block vcn %llu", (unsigned long long)fx.leaf_vcn);
	ret = 0;
fail:
	ntfs_attr_close(ir);
	ntfs_attr_close(ia);
	ntfs_inode_close(dir);
	ntfs_volume_close(vol);
	return ret;
}

static int group_setup(void **state)
{
	static const char *const need[] = { "mkntfs", "ntfscp", "ntfscat", NULL };
	char cat_out[320], path[400];

	memset(&fx, 0, sizeof(fx));
	if (testvol_create(&fx.tv, "corrupt", need))
		return -1;
	/* The setup's own mount must also end with ntfs-3g exiting 0. */
	fx.tv.ntfs3g_exit_checked = true;
	snprintf(cat_out, sizeof(cat_out), "%s/big.cat", fx.tv.dir);
	testvol_find_tool("ntfscat", fx.tool_ntfscat, sizeof(fx.tool_ntfscat));

	/* The pristine image. */
	if (testvol_mkntfs(&fx.tv, IMAGE_SIZE, 4096))
		SETUP_FAIL("mkntfs failed");

	/* Files copied in with ntfscp. */
	fx.big = malloc(BIG_SIZE);
	if (!fx.big)
		SETUP_FAIL("out of memory");
	for (size_t i = 0; i < BIG_SIZE; i++)
		fx.big[i] = rng_byte();
	for (size_t i = 0; i < SMALL_SIZE; i++)
		fx.small[i] = (uint8_t)('a' + i % 26);
	fx.small[SMALL_SIZE - 1] = '\n';
	if (testvol_ntfscp(&fx.tv, fx.tv.img, fx.big, BIG_SIZE, "/big.bin", NULL) ||
	    testvol_ntfscp(&fx.tv, fx.tv.img, fx.small, SMALL_SIZE, "/small.txt", NULL))
		SETUP_FAIL("ntfscp failed");

	/* /dir with DIR_FILES files, through a FUSE mount (no_detach: ntfs-3g
	 * stays our child, so the unmount can wait for it to flush). */
	if (testvol_mount(&fx.tv, fx.tv.img, "no_detach"))
		SETUP_FAIL("ntfs-3g could not mount the image on %s", fx.tv.mnt);
	snprintf(path, sizeof(path), "%s/dir", fx.tv.mnt);
	if (mkdir(path, 0755) < 0)
		SETUP_FAIL("mkdir %s: %s", path, strerror(errno));
	for (int i = 0; i < DIR_FILES; i++) {
		char name[32], body[64];
		int n;

		dir_name(name, sizeof(name), i);
		snprintf(path, sizeof(path), "%s/dir/%s", fx.tv.mnt, name);
		n = snprintf(body, sizeof(body), "this is %s\n", name);
		if (testvol_write_file(path, body, (size_t)n))
			SETUP_FAIL("cannot write %s: %s", path, strerror(errno));
	}
	if (testvol_unmount(&fx.tv))
		SETUP_FAIL("unmounting %s failed", fx.tv.mnt);

	/* What the reference implementation reads back. */
	{
		char *argv[] = { fx.tool_ntfscat, fx.tv.img, "/big.bin", NULL };

		if (testvol_run(&fx.tv, cat_out, argv))
			SETUP_FAIL("ntfscat failed");
		fx.big_cat = testvol_read_whole(cat_out, &fx.big_cat_len);
		if (!fx.big_cat)
			SETUP_FAIL("cannot read %s", cat_out);
	}

	if (locate_structures())
		goto fail;
	*state = &fx;
	return 0;
fail:
	if (fx.tv.mounted || fx.tv.ntfs3g_pid > 0)
		testvol_unmount(&fx.tv);   /* first, so ntfs-3g's own messages are in the log */
	testvol_print_log_tail(&fx.tv);
	cleanup_all();
	return -1;
}

static int group_teardown(void **state)
{
	(void)state;
	cleanup_all();
	return 0;
}

static int scratch_setup(void **state)
{
	(void)state;
	return testvol_scratch_setup(&fx.tv, test_timeout);
}

static int scratch_teardown(void **state)
{
	(void)state;
	testvol_scratch_teardown(&fx.tv);
	return 0;
}

/* ------------------------------------------------------------------ */
/* controls                                                             */
/* ------------------------------------------------------------------ */

/* The pristine image opens and reads back what ntfscat prints. */
static void test_pristine(void **state)
{
	struct ntfs_volume *vol;
	uint8_t *data = NULL;

	(void)state;
	assert_int_equal(fx.big_cat_len, BIG_SIZE);
	assert_memory_equal(fx.big_cat, fx.big, BIG_SIZE);

	vol = open_scratch();
	EXPECT_OK(read_big(vol, &data));
	assert_memory_equal(data, fx.big_cat, fx.big_cat_len);
	free(data);
	ntfs_volume_close(vol);

	check_volume_healthy();
	/* The tree really has INDX blocks, so the index tests reach them. */
	assert_true(fx.ia_blocks >= 2);
	assert_true(fx.nr_root_child >= 1);
}

/* Undoing and re-applying fixups without an edit changes nothing the layer
 * cares about: the corruption tests fail only because of their edit. */
static void test_refixup_roundtrip(void **state)
{
	const struct range *rs[] = { &fx.big_rec, &fx.small_rec, &fx.dir_rec, &fx.mft0_rec,
				     &fx.upcase_rec, &fx.indx, &fx.leaf };

	(void)state;
	for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++)
		store_refixed(rs[i], load_unfixed(rs[i]));
	check_volume_healthy();
}

/* ------------------------------------------------------------------ */
/* boot sector                                                          */
/* ------------------------------------------------------------------ */

static void patch_scratch(uint64_t off, const void *bytes, size_t len)
{
	int fd = open(fx.tv.scratch, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void test_boot_bad_oem(void **state)
{
	(void)state;
	patch_scratch(offsetof(struct ntfs_boot_sector, oem_id), "MSDOS5.0", 8);
	EXPECT_ERR(open_scratch_fails(), EINVAL, "boot sector", "OEM id", fx.tv.scratch);
}

static void test_boot_bytes_per_sector(void **state)
{
	uint8_t v[2];

	(void)state;
	put_le16(v, 1000);
	patch_scratch(offsetof(struct ntfs_boot_sector, bytes_per_sector), v, 2);
	EXPECT_ERR(open_scratch_fails(), EINVAL, "boot sector", "bytes_per_sector", "1000");
}

static void test_boot_sectors_per_cluster(void **state)
{
	uint8_t v = 3;

	(void)state;
	patch_scratch(offsetof(struct ntfs_boot_sector, sectors_per_cluster), &v, 1);
	EXPECT_ERR(open_scratch_fails(), EINVAL, "boot sector", "sectors_per_cluster", "3");
}

static void test_boot_clusters_per_mft_record(void **state)
{
	uint8_t v = 0;

	(void)state;
	patch_scratch(offsetof(struct ntfs_boot_sector, clusters_per_mft_record), &v, 1);
	EXPECT_ERR(open_scratch_fails(), EINVAL, "boot sector", "clusters_per_mft_record");
}

static void test_boot_mft_lcn_beyond(void **state)
{
	uint64_t v = cpu_to_le64(fx.nr_clusters + 100);
	char num[32];

	(void)state;
	snprintf(num, sizeof(num), "%llu", (unsigned long long)(fx.nr_clusters + 100));
	patch_scratch(offsetof(struct ntfs_boot_sector, mft_lcn), &v, 8);
	EXPECT_ERR(open_scratch_fails(), EINVAL, "boot sector", "mft_lcn", num,
		   "outside the volume");
}

/* mft_lcn inside the volume but pointing at something else (the boot
 * sector itself): the record check, not the boot check, must refuse it. */
static void test_boot_mft_lcn_wrong(void **state)
{
	uint64_t v = 0;

	(void)state;
	patch_scratch(offsetof(struct ntfs_boot_sector, mft_lcn), &v, 8);
	EXPECT_ERR(open_scratch_fails(), EIO, "MFT record 0", "magic");
}

static void test_boot_huge_volume(void **state)
{
	uint64_t v = cpu_to_le64((uint64_t)IMAGE_SIZE / 512 * 4);

	(void)state;
	patch_scratch(offsetof(struct ntfs_boot_sector, number_of_sectors), &v, 8);
	EXPECT_ERR(open_scratch_fails(), EINVAL, "boot sector", "truncated");
}

/* ------------------------------------------------------------------ */
/* truncated images                                                     */
/* ------------------------------------------------------------------ */

static bool mentions_truncation(const char *msg)
{
	return strstr(msg, "truncat") || strstr(msg, "past the end") ||
	       strstr(msg, "end of device");
}

static void truncate_scratch(off_t size)
{
	assert_int_equal(truncate(fx.tv.scratch, size), 0);
}

static void test_truncated_half(void **state)
{
	struct ntfs_volume *vol = NULL;
	uint8_t *data = NULL;
	int err;

	(void)state;
	truncate_scratch(IMAGE_SIZE / 2);
	ntfs_clear_error();
	err = ntfs_volume_open(fx.tv.scratch, NTFS_OPEN_READ_ONLY, &vol);
	if (err) {
		assert_true(err < 0);
		assert_null(vol);
		if (!mentions_truncation(ntfs_last_error()))
			fail_msg("open failed (%d) but \"%s\" does not say the image is "
				 "truncated", err, ntfs_last_error());
		return;
	}
	/* If the layer opens it anyway, the big file must not read as garbage. */
	ntfs_clear_error();
	err = read_big(vol, &data);
	if (err) {
		assert_true(err < 0);
		if (!mentions_truncation(ntfs_last_error()) &&
		    !strstr(ntfs_last_error(), "outside the volume"))
			fail_msg("read failed (%d) with \"%s\"", err, ntfs_last_error());
	} else {
		assert_memory_equal(data, fx.big, BIG_SIZE);
	}
	free(data);
	ntfs_volume_close(vol);
}

/* Shorter than the boot sector itself. */
static void test_truncated_tiny(void **state)
{
	int err;

	(void)state;
	truncate_scratch(100);
	err = open_scratch_fails();
	EXPECT_ERR(err, EIO, fx.tv.scratch, "past the end", "truncated");
}

static void test_truncated_empty(void **state)
{
	(void)state;
	truncate_scratch(0);
	EXPECT_ERR(open_scratch_fails(), EIO, "past the end");
}

/* Losing only the backup boot sector (the last sector, outside the volume
 * mkntfs records) must not make the layer refuse a sound volume. */
static void test_truncated_backup_boot_only(void **state)
{
	(void)state;
	truncate_scratch(IMAGE_SIZE - 512);
	check_volume_healthy();
}

/* ------------------------------------------------------------------ */
/* MFT records                                                          */
/* ------------------------------------------------------------------ */

/* Open inode mft_no on the scratch image: must fail with -want. */
static int inode_open_fails(uint64_t mft_no)
{
	struct ntfs_volume *vol = open_scratch();
	struct ntfs_inode *ni = NULL;
	char msg[600];
	int err;

	ntfs_clear_error();
	err = ntfs_inode_open(vol, mft_no, &ni);
	snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
	if (!err) {
		ntfs_inode_close(ni);
		ntfs_volume_close(vol);
		fail_msg("inode %llu of the corrupted volume opened",
			 (unsigned long long)mft_no);
	}
	ntfs_volume_close(vol);
	ntfs_error("%s", msg);  /* keep the message for the caller's check */
	return err;
}

/* Flip every bit of the first attribute's length, in place, without touching
 * the fixups (the field is far from a sector end): record validation must
 * refuse the record. */
static void test_mft_attr_length_flipped(void **state)
{
	uint8_t *rec = load_raw(&fx.small_rec);
	uint32_t off = get_le16(rec + offsetof(struct ntfs_mft_record, attrs_offset));
	uint32_t len = get_le32(rec + off + 4);
	uint32_t flipped = cpu_to_le32(~len);

	(void)state;
	assert_true(off + 8 < NTFS_BLOCK_SIZE - 2);
	memcpy(rec + off + 4, &flipped, 4);
	store_raw(&fx.small_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.small_no), EIO, rec_name(fx.small_no),
		   "attribute record");
}

/* An attribute length of 0 would make a naive walker spin forever. */
static void test_mft_attr_length_zero(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);

	(void)state;
	memset(rec + off + 4, 0, 4);
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "attribute record");
}

/* A length that is a multiple of 8 but runs past bytes_in_use. */
static void test_mft_attr_length_past_end(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);
	uint32_t in_use = get_le32(rec + offsetof(struct ntfs_mft_record, bytes_in_use));
	uint32_t v = cpu_to_le32(((in_use - off) + 8) & ~7u);

	(void)state;
	memcpy(rec + off + 4, &v, 4);
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "attribute record");
}

/* A resident value that would extend outside its attribute. */
static void test_mft_resident_value_offset(void **state)
{
	uint8_t *rec = load_unfixed(&fx.small_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);
	struct ntfs_attr_record *a = (void *)(rec + off);

	(void)state;
	assert_int_equal(a->non_resident, 0);
	put_le16(rec + off + offsetof(struct ntfs_attr_record, u.r.value_offset), 0xfff0);
	store_refixed(&fx.small_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.small_no), EIO, rec_name(fx.small_no),
		   "attribute record");
}

static void test_mft_resident_value_length(void **state)
{
	uint8_t *rec = load_unfixed(&fx.small_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);
	uint32_t v = cpu_to_le32(0x7fffffff);

	(void)state;
	memcpy(rec + off + offsetof(struct ntfs_attr_record, u.r.value_length), &v, 4);
	store_refixed(&fx.small_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.small_no), EIO, rec_name(fx.small_no),
		   "attribute record");
}

/* A name that would run past its attribute. */
static void test_mft_attr_name_overflow(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);

	(void)state;
	rec[off + offsetof(struct ntfs_attr_record, name_length)] = 0xff;
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "attribute record");
}

/* Mapping pairs offset past the attribute. */
static void test_mft_mapping_pairs_offset(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);

	(void)state;
	assert_int_equal(rec[off + 8], 1);
	put_le16(rec + off + offsetof(struct ntfs_attr_record, u.nr.mapping_pairs_offset),
		 (uint16_t)get_le32(rec + off + 4));
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "attribute record");
}

static void test_mft_bytes_in_use(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t v = cpu_to_le32(fx.rec_size + 8);

	(void)state;
	memcpy(rec + offsetof(struct ntfs_mft_record, bytes_in_use), &v, 4);
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "inconsistent header");
}

static void test_mft_record_number_mismatch(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t v = cpu_to_le32((uint32_t)fx.small_no);

	(void)state;
	memcpy(rec + offsetof(struct ntfs_mft_record, mft_record_number), &v, 4);
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "header says it is record");
}

static void test_mft_bad_magic(void **state)
{
	uint8_t *rec = load_raw(&fx.big_rec);

	(void)state;
	memcpy(rec, "XILE", 4);
	store_raw(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no), "magic");
}

/* A base record claiming to be an extension of another record. */
static void test_mft_claims_extension(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint64_t v = cpu_to_le64(fx.small_no | (1ull << 48));

	(void)state;
	memcpy(rec + offsetof(struct ntfs_mft_record, base_mft_record), &v, 8);
	store_refixed(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "extension record");
}

/* Bytes flipped across the first sector boundary of the record, fixups left
 * alone: the update sequence check catches it. */
static void test_mft_flip_across_sector(void **state)
{
	uint8_t *rec = load_raw(&fx.big_rec);

	(void)state;
	for (unsigned i = NTFS_BLOCK_SIZE - 4; i < NTFS_BLOCK_SIZE + 4; i++)
		rec[i] ^= 0xa5;
	store_raw(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "update sequence");
}

/* The last two bytes of the record's second sector no longer carry the
 * update sequence number. */
static void test_mft_broken_fixup(void **state)
{
	uint8_t *rec = load_raw(&fx.big_rec);

	(void)state;
	assert_true(fx.rec_size >= 2 * NTFS_BLOCK_SIZE);
	rec[2 * NTFS_BLOCK_SIZE - 2] ^= 0xff;
	rec[2 * NTFS_BLOCK_SIZE - 1] ^= 0x5a;
	store_raw(&fx.big_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.big_no), EIO, rec_name(fx.big_no),
		   "update sequence", "sector 1");
}

/* A corrupted update sequence array header. */
static void test_mft_bad_usa_count(void **state)
{
	uint8_t *rec = load_raw(&fx.small_rec);

	(void)state;
	put_le16(rec + offsetof(struct ntfs_mft_record, usa_count), 200);
	store_raw(&fx.small_rec, rec);
	EXPECT_ERR(inode_open_fails(fx.small_no), EIO, rec_name(fx.small_no),
		   "update sequence array");
}

/* The directory's own record is damaged: lookups through it fail cleanly. */
static void test_mft_dir_record_fixup(void **state)
{
	struct ntfs_volume *vol;
	uint8_t *rec = load_raw(&fx.dir_rec);
	uint64_t mref = 0;

	(void)state;
	rec[NTFS_BLOCK_SIZE - 1] ^= 0x01;
	store_raw(&fx.dir_rec, rec);
	vol = open_scratch();
	ntfs_clear_error();
	EXPECT_ERR(ntfs_path_lookup(vol, "/dir/file_007.txt", 0, &mref), EIO,
		   rec_name(fx.dir_no), "update sequence");
	/* Unrelated paths still work. */
	EXPECT_OK(ntfs_path_lookup(vol, "/big.bin", 0, &mref));
	assert_int_equal(MREF(mref), fx.big_no);
	ntfs_volume_close(vol);
}

/* System records needed to open the volume. */
static void test_mft_record0_fixup(void **state)
{
	uint8_t *rec = load_raw(&fx.mft0_rec);

	(void)state;
	rec[2 * NTFS_BLOCK_SIZE - 2] ^= 0xff;
	store_raw(&fx.mft0_rec, rec);
	EXPECT_ERR(open_scratch_fails(), EIO, "MFT record 0", "update sequence");
}

static void test_mft_upcase_fixup(void **state)
{
	uint8_t *rec = load_raw(&fx.upcase_rec);

	(void)state;
	rec[NTFS_BLOCK_SIZE - 2] ^= 0xff;
	store_raw(&fx.upcase_rec, rec);
	EXPECT_ERR(open_scratch_fails(), EIO, "MFT record 10", "update sequence");
}

/* ------------------------------------------------------------------ */
/* runlists                                                             */
/* ------------------------------------------------------------------ */

static unsigned sle_bytes(int64_t v)
{
	unsigned n = 1;

	while (n < 8 && (v < -(1ll << (8 * n - 1)) || v >= (1ll << (8 * n - 1))))
		n++;
	return n;
}

/* Replace the mapping pairs of the unnamed $DATA in an unfixed record with
 * one run of `length` clusters at `lcn`. */
static void rewrite_runlist(uint8_t *rec, int64_t lcn, int64_t length)
{
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);
	uint8_t *a = rec + off;
	uint32_t alen = get_le32(a + 4);
	uint32_t mpo = get_le16(a + offsetof(struct ntfs_attr_record, u.nr.mapping_pairs_offset));
	unsigned lb = sle_bytes(length), ob = sle_bytes(lcn), i;
	uint8_t *mp = a + mpo;

	assert_int_equal(a[8], 1);
	if (mpo + 1 + lb + ob + 1 > alen)
		fail_msg("no room for the new mapping pairs (%u bytes)", alen - mpo);
	memset(mp, 0, alen - mpo);
	mp[0] = (uint8_t)(ob << 4 | lb);
	for (i = 0; i < lb; i++)
		mp[1 + i] = (uint8_t)((uint64_t)length >> (8 * i));
	for (i = 0; i < ob; i++)
		mp[1 + lb + i] = (uint8_t)((uint64_t)lcn >> (8 * i));
}

static int64_t data_clusters(const uint8_t *rec)
{
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);

	return (int64_t)get_le64(rec + off + offsetof(struct ntfs_attr_record, u.nr.highest_vcn)) + 1;
}

/* Open the big file's $DATA: the inode must open, the attribute must not. */
static void expect_big_data_open_fails(const char *kw1, const char *kw2)
{
	struct ntfs_volume *vol = open_scratch();
	struct ntfs_inode *ni = NULL;
	struct ntfs_attr *na = NULL;
	uint64_t mref;
	int err;

	EXPECT_OK(ntfs_path_lookup(vol, "/big.bin", 0, &mref));
	assert_int_equal(MREF(mref), fx.big_no);
	EXPECT_OK(ntfs_inode_open(vol, fx.big_no, &ni));
	ntfs_clear_error();
	err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (!err) {
		ntfs_attr_close(na);
		fail_msg("the corrupted $DATA opened");
	}
	assert_null(na);
	EXPECT_ERR(err, EIO, rec_name(fx.big_no), kw1, kw2);
	ntfs_inode_close(ni);
	ntfs_volume_close(vol);
}

static void test_runlist_lcn_past_end(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);

	(void)state;
	rewrite_runlist(rec, (int64_t)fx.nr_clusters + 16, data_clusters(rec));
	store_refixed(&fx.big_rec, rec);
	expect_big_data_open_fails("outside the volume", "vcn 0");
}

/* Starts inside the volume, ends past it. */
static void test_runlist_run_overhangs_end(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);

	(void)state;
	assert_true(data_clusters(rec) > 1);
	rewrite_runlist(rec, (int64_t)fx.nr_clusters - 1, data_clusters(rec));
	store_refixed(&fx.big_rec, rec);
	expect_big_data_open_fails("outside the volume", "clusters");
}

static void test_runlist_negative_lcn(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);

	(void)state;
	rewrite_runlist(rec, -5, data_clusters(rec));
	store_refixed(&fx.big_rec, rec);
	expect_big_data_open_fails("outside the volume", "-5");
}

/* The runs end before highest_vcn. */
static void test_runlist_short(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	int64_t n = data_clusters(rec);

	(void)state;
	rewrite_runlist(rec, 100, n - 1);
	store_refixed(&fx.big_rec, rec);
	expect_big_data_open_fails("highest_vcn", "mapping pairs");
}

/* A mapping pairs header asking for 9-byte fields. */
static void test_runlist_bad_header(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);
	uint32_t mpo = get_le16(rec + off + offsetof(struct ntfs_attr_record,
						      u.nr.mapping_pairs_offset));

	(void)state;
	rec[off + mpo] = 0x29;
	store_refixed(&fx.big_rec, rec);
	expect_big_data_open_fails("corrupted mapping pairs", "attribute 0x80");
}

/* data_size larger than allocated_size. */
static void test_data_sizes_inconsistent(void **state)
{
	uint8_t *rec = load_unfixed(&fx.big_rec);
	uint32_t off = rec_find_attr(rec, fx.rec_size, AT_DATA, NULL, 0);
	uint64_t alloc = get_le64(rec + off + offsetof(struct ntfs_attr_record,
							u.nr.allocated_size));
	uint64_t v = cpu_to_le64(alloc + fx.cluster_size);

	(void)state;
	memcpy(rec + off + offsetof(struct ntfs_attr_record, u.nr.data_size), &v, 8);
	store_refixed(&fx.big_rec, rec);
	expect_big_data_open_fails("inconsistent sizes", "attribute 0x80");
}

/* $MFT's own $DATA runs off the volume: nothing can be found, open fails. */
static void test_runlist_mft_past_end(void **state)
{
	uint8_t *rec = load_unfixed(&fx.mft0_rec);

	(void)state;
	rewrite_runlist(rec, (int64_t)fx.nr_clusters + 1000, data_clusters(rec));
	store_refixed(&fx.mft0_rec, rec);
	EXPECT_ERR(open_scratch_fails(), EIO, "MFT record 0", "outside the volume");
}

/* ------------------------------------------------------------------ */
/* index blocks                                                         */
/* ------------------------------------------------------------------ */

/* Offset of the n-th entry (0-based) of an unfixed INDX block. */
static uint32_t indx_entry(const uint8_t *blk, unsigned n)
{
	uint32_t hdr = offsetof(struct ntfs_index_block, index);
	uint32_t off = hdr + get_le32(blk + hdr);

	while (n--) {
		uint16_t flags = get_le16(blk + off + 12);

		if (flags & INDEX_ENTRY_END)
			fail_msg("index block has too few entries");
		off += get_le16(blk + off + 8);
	}
	return off;
}

static const char *dir_rec_name(void)
{
	static char buf[80];

	snprintf(buf, sizeof(buf), "directory MFT record %llu", (unsigned long long)fx.dir_no);
	return buf;
}

static void corrupt_entry_length(const struct range *r, unsigned entry, uint16_t len)
{
	uint8_t *blk = load_unfixed(r);

	put_le16(blk + indx_entry(blk, entry) + 8, len);
	store_refixed(r, blk);
}

static void test_indx_entry_length_zero(void **state)
{
	(void)state;
	corrupt_entry_length(&fx.indx, 2, 0);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "bad index entry length", NULL }) > 0);
}

static void test_indx_entry_length_odd(void **state)
{
	(void)state;
	corrupt_entry_length(&fx.indx, 0, 13);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "bad index entry length", NULL }) > 0);
}

static void test_indx_entry_length_huge(void **state)
{
	(void)state;
	corrupt_entry_length(&fx.indx, 0, 0xfff8);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "bad index entry length", NULL }) > 0);
}

static void test_indx_key_length(void **state)
{
	uint8_t *blk = load_unfixed(&fx.indx);

	(void)state;
	put_le16(blk + indx_entry(blk, 1) + 10, 0x4000);
	store_refixed(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "key length", NULL }) > 0);
}

static void test_indx_file_name_length(void **state)
{
	uint8_t *blk = load_unfixed(&fx.indx);
	uint32_t e = indx_entry(blk, 1);

	(void)state;
	/* The name would run past the key. */
	blk[e + 16 + offsetof(struct ntfs_file_name, file_name_length)] = 0xff;
	store_refixed(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "key length", NULL }) > 0);
}

/* An empty name would reach callers as a zero-length directory entry. */
static void test_indx_empty_name(void **state)
{
	uint8_t *blk = load_unfixed(&fx.indx);
	uint32_t e = indx_entry(blk, 0);

	(void)state;
	blk[e + 16 + offsetof(struct ntfs_file_name, file_name_length)] = 0;
	store_refixed(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "key length", NULL }) > 0);
}

/* Clear the END flag of the last entry: the node has no end. */
static void test_indx_no_end_entry(void **state)
{
	uint8_t *blk = load_unfixed(&fx.indx);
	uint32_t hdr = offsetof(struct ntfs_index_block, index);
	uint32_t off = hdr + get_le32(blk + hdr);

	(void)state;
	while (!(get_le16(blk + off + 12) & INDEX_ENTRY_END))
		off += get_le16(blk + off + 8);
	put_le16(blk + off + 12, get_le16(blk + off + 12) & ~INDEX_ENTRY_END);
	store_refixed(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(), NULL }) > 0);
}

static void test_indx_index_length(void **state)
{
	uint8_t *blk = load_unfixed(&fx.indx);
	uint32_t hdr = offsetof(struct ntfs_index_block, index);
	uint32_t v = cpu_to_le32(fx.index_block_size);

	(void)state;
	memcpy(blk + hdr + 4, &v, 4);
	store_refixed(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "offsets out of range", NULL }) > 0);
}

static void test_indx_wrong_vcn(void **state)
{
	uint8_t *blk = load_unfixed(&fx.indx);
	uint64_t v = cpu_to_le64(fx.indx_vcn + 1);

	(void)state;
	memcpy(blk + offsetof(struct ntfs_index_block, index_block_vcn), &v, 8);
	store_refixed(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "different vcn", NULL }) > 0);
}

static void test_indx_bad_magic(void **state)
{
	uint8_t *blk = load_raw(&fx.indx);

	(void)state;
	memset(blk, 0, 4);
	store_raw(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(), "magic", "INDX",
							     NULL }) > 0);
}

/* The whole block overwritten with zeroes (a lost write). */
static void test_indx_zeroed(void **state)
{
	uint8_t *blk = load_raw(&fx.indx);

	(void)state;
	memset(blk, 0, fx.indx.size);
	store_raw(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(), "magic",
							     NULL }) > 0);
}

static void test_indx_broken_fixup(void **state)
{
	uint8_t *blk = load_raw(&fx.indx);

	(void)state;
	assert_true(fx.indx.size >= 4 * NTFS_BLOCK_SIZE);
	blk[4 * NTFS_BLOCK_SIZE - 1] ^= 0x80;
	store_raw(&fx.indx, blk);
	assert_true(check_dir_corrupt((const char *const[]){ "update sequence", "sector 3",
							     NULL }) > 0);
}

/* ---- the index root (in the directory's MFT record) ---- */

/* Offset in the unfixed dir record of the root's n-th entry with a child. */
static uint32_t root_node_entry(const uint8_t *rec, unsigned n)
{
	uint32_t a = rec_find_attr(rec, fx.rec_size, AT_INDEX_ROOT, i30.units, 4);
	uint32_t val = a + get_le16(rec + a + offsetof(struct ntfs_attr_record, u.r.value_offset));
	uint32_t hdr = val + offsetof(struct ntfs_index_root, index);
	uint32_t off = hdr + get_le32(rec + hdr);

	for (;;) {
		uint16_t flags = get_le16(rec + off + 12);

		if ((flags & INDEX_ENTRY_NODE) && n-- == 0)
			return off;
		if (flags & INDEX_ENTRY_END)
			fail_msg("the index root has too few child pointers");
		off += get_le16(rec + off + 8);
	}
}

static void set_root_child(uint8_t *rec, unsigned n, uint64_t vcn)
{
	uint32_t e = root_node_entry(rec, n);
	uint64_t v = cpu_to_le64(vcn);

	memcpy(rec + e + get_le16(rec + e + 8) - 8, &v, 8);
}

static void test_root_child_out_of_range(void **state)
{
	uint8_t *rec = load_unfixed(&fx.dir_rec);

	(void)state;
	set_root_child(rec, 0, (fx.ia_blocks + 7) * (fx.index_block_size >> fx.vcn_bits));
	store_refixed(&fx.dir_rec, rec);
	assert_true(check_dir_corrupt((const char *const[]){ dir_rec_name(),
							     "outside the index allocation",
							     NULL }) > 0);
}

/* A leaf block (some names live elsewhere): lookups of names in other
 * blocks still succeed, the others fail cleanly. */
static void test_leaf_entry_length(void **state)
{
	unsigned failed;

	(void)state;
	corrupt_entry_length(&fx.leaf, 1, 0);
	failed = check_dir_corrupt((const char *const[]){ dir_rec_name(),
							  "bad index entry length", NULL });
	assert_true(failed > 0);
	if (fx.indx_internal)
		assert_true(failed < DIR_FILES);
}

static void test_leaf_bad_magic(void **state)
{
	uint8_t *blk = load_raw(&fx.leaf);
	unsigned failed;

	(void)state;
	memcpy(blk, "BAAD", 4);
	store_raw(&fx.leaf, blk);
	failed = check_dir_corrupt((const char *const[]){ dir_rec_name(), "magic", NULL });
	assert_true(failed > 0);
	if (fx.indx_internal)
		assert_true(failed < DIR_FILES);
}

/* An index block whose child pointer leads back to itself (or, in a
 * two-level tree, two root entries sharing a child): the walk must stop with
 * an error instead of looping or recursing without end. */
static void test_index_cycle(void **state)
{
	uint8_t *buf;

	(void)state;
	if (fx.indx_internal) {
		uint32_t e;

		buf = load_unfixed(&fx.indx);
		e = indx_entry(buf, 0);
		while (!(get_le16(buf + e + 12) & INDEX_ENTRY_NODE))
			e += get_le16(buf + e + 8);
		{
			uint64_t v = cpu_to_le64(fx.indx_vcn);

			memcpy(buf + e + get_le16(buf + e + 8) - 8, &v, 8);
		}
		store_refixed(&fx.indx, buf);
	} else {
		if (fx.nr_root_child < 2)
			fail_msg("the fixture's root index has %u children: the cycle needs two",
				 fx.nr_root_child);
		buf = load_unfixed(&fx.dir_rec);
		set_root_child(buf, 1, fx.root_child[0]);
		store_refixed(&fx.dir_rec, buf);
	}
	check_dir_corrupt((const char *const[]){ dir_rec_name(), "twice", "cycle", NULL });
}

/* A root entry with a bad length. */
static void test_root_entry_length(void **state)
{
	uint8_t *rec = load_unfixed(&fx.dir_rec);
	uint32_t e = root_node_entry(rec, 0);

	(void)state;
	put_le16(rec + e + 8, 0);
	store_refixed(&fx.dir_rec, rec);
	/* Every lookup goes through the root: they all fail. */
	assert_int_equal(check_dir_corrupt((const char *const[]){ dir_rec_name(), "index root",
								  "bad index entry length",
								  NULL }),
			 DIR_FILES);
}

/* ------------------------------------------------------------------ */
/* volume state: what guards a read-write open                          */
/* ------------------------------------------------------------------ */

/* A read-write open of the scratch image must fail -EPERM naming why, while
 * a read-only open still works. */
static void expect_rw_refused(const char *why)
{
	struct ntfs_volume *vol = NULL;

	ntfs_clear_error();
	EXPECT_ERR(ntfs_volume_open(fx.tv.scratch, 0, &vol), EPERM, why, "read-only",
		   fx.tv.scratch);
	assert_null(vol);
	vol = open_scratch();
	ntfs_volume_close(vol);
}

static void test_state_clean_opens_rw(void **state)
{
	struct ntfs_volume *vol = NULL;

	(void)state;
	EXPECT_OK(ntfs_volume_open(fx.tv.scratch, 0, &vol));
	assert_false(ntfs_volume_is_dirty(vol));
	assert_true(vol->logfile_clean);
	assert_false(vol->hibernated);
	ntfs_volume_close(vol);
}

static void test_state_dirty_flag(void **state)
{
	struct ntfs_volume *vol = open_scratch();
	struct range r;
	uint8_t *rec;
	uint32_t off, vo;
	uint16_t flags;

	(void)state;
	assert_int_equal(mft_record_range(vol, FILE_Volume, &r), 0);
	ntfs_volume_close(vol);
	rec = load_unfixed(&r);
	off = rec_find_attr(rec, r.size, AT_VOLUME_INFORMATION, NULL, 0);
	vo = off + get_le16(rec + off + offsetof(struct ntfs_attr_record, u.r.value_offset));
	flags = get_le16(rec + vo + offsetof(struct ntfs_volume_information, flags));
	put_le16(rec + vo + offsetof(struct ntfs_volume_information, flags),
		 flags | VOLUME_IS_DIRTY);
	store_refixed(&r, rec);
	expect_rw_refused("marked dirty");
	vol = open_scratch();
	assert_true(ntfs_volume_is_dirty(vol));
	ntfs_volume_close(vol);
}

/* Write a restart page (RSTR) at the start of $LogFile whose restart area
 * has a client in use and, unless clean, no "volume is clean" flag: the log
 * of a volume that was not shut down. */
static void write_restart_page(bool clean)
{
	struct ntfs_volume *vol = open_scratch();
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	struct ntfs_restart_page *rp;
	struct ntfs_restart_area *ra;
	struct range r;
	uint8_t *page = calloc(1, 4096);

	assert_non_null(page);
	EXPECT_OK(ntfs_inode_open(vol, FILE_LogFile, &ni));
	EXPECT_OK(ntfs_attr_open(ni, AT_DATA, NULL, 0, &na));
	assert_int_equal(map_range(&na->rl, vol->geo.cluster_size_bits, 0, 4096, &r), 0);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	ntfs_volume_close(vol);
	rp = (void *)page;
	rp->magic = cpu_to_le32(magic_RSTR);
	rp->usa_ofs = cpu_to_le16(0x1e);
	rp->usa_count = cpu_to_le16(4096 / 512 + 1);
	rp->system_page_size = cpu_to_le32(4096);
	rp->log_page_size = cpu_to_le32(4096);
	rp->restart_area_offset = cpu_to_le16(0x30);
	rp->minor_ver = cpu_to_le16(1);
	rp->major_ver = cpu_to_le16(1);
	ra = (void *)(page + 0x30);
	ra->current_lsn = cpu_to_le64(0x1000);
	ra->log_clients = cpu_to_le16(1);
	ra->client_free_list = cpu_to_le16(LOGFILE_NO_CLIENT);
	ra->client_in_use_list = cpu_to_le16(0);
	ra->flags = cpu_to_le16(clean ? RESTART_VOLUME_IS_CLEAN : 0);
	store_refixed(&r, page);
}

static void test_state_unclean_logfile(void **state)
{
	struct ntfs_volume *vol;

	(void)state;
	write_restart_page(false);
	expect_rw_refused("not shut down cleanly");
	vol = open_scratch();
	assert_false(vol->logfile_clean);
	ntfs_volume_close(vol);
}

/* The same restart page saying "clean" is a clean volume: the refusal above
 * is for the right reason. */
static void test_state_clean_logfile_with_restart_page(void **state)
{
	struct ntfs_volume *vol = NULL;

	(void)state;
	write_restart_page(true);
	EXPECT_OK(ntfs_volume_open(fx.tv.scratch, 0, &vol));
	assert_true(vol->logfile_clean);
	ntfs_volume_close(vol);
}

int main(void)
{
	const char *v = getenv("NTFSD_TEST_VERBOSE");

	verbose = v && *v && strcmp(v, "0");
	v = getenv("NTFSD_TEST_TIMEOUT");
	if (v && atoi(v) > 0)
		test_timeout = (unsigned)atoi(v);
	/* A corrupted structure that sends the layer into an endless loop must
	 * fail the run, not hang it. */
	testvol_catch_timeout(&fx.tv, "test_corrupt: a test did not finish within the time "
			      "limit (endless loop on corrupted data?)\n");
#define T(fn) cmocka_unit_test_setup_teardown(fn, scratch_setup, scratch_teardown)
	const struct CMUnitTest tests[] = {
		T(test_pristine),
		T(test_refixup_roundtrip),
		T(test_boot_bad_oem),
		T(test_boot_bytes_per_sector),
		T(test_boot_sectors_per_cluster),
		T(test_boot_clusters_per_mft_record),
		T(test_boot_mft_lcn_beyond),
		T(test_boot_mft_lcn_wrong),
		T(test_boot_huge_volume),
		T(test_truncated_half),
		T(test_truncated_tiny),
		T(test_truncated_empty),
		T(test_truncated_backup_boot_only),
		T(test_mft_attr_length_flipped),
		T(test_mft_attr_length_zero),
		T(test_mft_attr_length_past_end),
		T(test_mft_resident_value_offset),
		T(test_mft_resident_value_length),
		T(test_mft_attr_name_overflow),
		T(test_mft_mapping_pairs_offset),
		T(test_mft_bytes_in_use),
		T(test_mft_record_number_mismatch),
		T(test_mft_bad_magic),
		T(test_mft_claims_extension),
		T(test_mft_flip_across_sector),
		T(test_mft_broken_fixup),
		T(test_mft_bad_usa_count),
		T(test_mft_dir_record_fixup),
		T(test_mft_record0_fixup),
		T(test_mft_upcase_fixup),
		T(test_runlist_lcn_past_end),
		T(test_runlist_run_overhangs_end),
		T(test_runlist_negative_lcn),
		T(test_runlist_short),
		T(test_runlist_bad_header),
		T(test_data_sizes_inconsistent),
		T(test_runlist_mft_past_end),
		T(test_indx_entry_length_zero),
		T(test_indx_entry_length_odd),
		T(test_indx_entry_length_huge),
		T(test_indx_key_length),
		T(test_indx_file_name_length),
		T(test_indx_empty_name),
		T(test_indx_no_end_entry),
		T(test_indx_index_length),
		T(test_indx_wrong_vcn),
		T(test_indx_bad_magic),
		T(test_indx_zeroed),
		T(test_indx_broken_fixup),
		T(test_root_child_out_of_range),
		T(test_leaf_entry_length),
		T(test_leaf_bad_magic),
		T(test_index_cycle),
		T(test_root_entry_length),
		T(test_state_clean_opens_rw),
		T(test_state_dirty_flag),
		T(test_state_unclean_logfile),
		T(test_state_clean_logfile_with_restart_page),
	};
#undef T
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
