/*
 * fuzz_ntfs.c — one libFuzzer target over the on-disk NTFS read layer.
 *
 * The first input byte (mod NR_MODES) picks what is fuzzed; the rest is the
 * payload for that mode:
 *
 *   0  MFT record: ntfs_mft_record_check() on a 1024-byte (or 4096-byte)
 *      record, then an ntfs_attr_iter walk that decodes every non-resident
 *      attribute's mapping pairs and looks VCNs up in the result.
 *        [flags: bit0 = 4096-byte record][mft_no: le32][nr_clusters: 1 << b]
 *        [record bytes, zero padded]
 *   1  Mapping pairs: ntfs_mapping_pairs_decode() on raw bytes.
 *        [flags: bit0 = two extents][lowest_vcn: le64][highest_vcn: le64]
 *        [nr_clusters: le64][split: le16][mapping pairs bytes]
 *      With two extents, bytes [0, split) are decoded first as the extent
 *      0 .. lowest_vcn - 1 and the rest must continue it.
 *   2  Volume: a real NTFS image made once with mkntfs + ntfscp (40 files
 *      in the root directory, so it has an $INDEX_ALLOCATION) lives in a
 *      memfd.  The payload is a list of patches applied to regions of that
 *      image located at start-up through the layer itself (boot sector,
 *      system and file MFT records, the root's INDX blocks, $LogFile restart
 *      pages, a compressed cluster):
 *        { [region: bit7 = raw][offset: le16][len: u8][len bytes] } ...
 *      MFT records and INDX blocks are patched in their fixed-up (logical)
 *      form and the fixups are applied again afterwards, unless the region
 *      byte has bit 7 set, in which case the on-disk bytes are patched as
 *      they are.  Then the volume is opened read-only through
 *      /proc/self/fd/N, the root (and its subdirectories) listed with
 *      ntfs_dir_foreach, a few paths resolved with ntfs_path_lookup, and
 *      every file the listing names has its $DATA opened; it is also read
 *      with ntfs_attr_pread unless it is one of the user files whose record
 *      is not a patch region (those read the same in every run, and
 *      decompressing them each time would only slow the fuzzer down).  The
 *      patched bytes are restored afterwards.
 *   3  LZNT1: lznt1_decompress_unit() of the payload into a
 *      4..64 KiB unit.      [units of 4 KiB - 1: low 4 bits][compressed bytes]
 *   4  Boot sector: ntfs_boot_parse().   [512 bytes][device size: le64]
 *   5  Fixups: ntfs_mst_post_read() and a pre_write/post_read round trip.
 *        [size: le16, bit15 set: (v & 0x7fff) % 8193 bytes, else
 *         (v % 16 + 1) * 512 bytes][buffer bytes]
 *
 * Besides the sanitizers, the target checks the invariants the headers
 * promise (runlists contiguous and inside the volume, lookups agreeing with
 * a linear scan, every byte of a decompressed unit written, reads short
 * only at data_size and zero past initialized_size, ...) and aborts with a
 * message when one does not hold.
 *
 * Set FUZZ_NTFS_SEED_DIR to have start-up write seed inputs for mode 2
 * (whole regions of the image as patches) into that directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attrib.h"
#include "boot.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "layout.h"
#include "le.h"
#include "lznt1.h"
#include "mft.h"
#include "mst.h"
#include "runlist.h"
#include "unistr.h"
#include "volume.h"

enum { MODE_MFT, MODE_RUNLIST, MODE_VOLUME, MODE_LZNT1, MODE_BOOT, MODE_MST, NR_MODES };

/* ---------------------------------------------------------------- helpers */

__attribute__((noreturn, format(printf, 1, 2))) static void invariant_failed(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_ntfs: invariant violated: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (last layer error: %s)\n", ntfs_last_error());
	abort();
}

#define CHECK(cond, ...)                                \
	do {                                            \
		if (!(cond))                            \
			invariant_failed(__VA_ARGS__);  \
	} while (0)

/* Keeps reads of returned bytes from being optimised away, so ASan sees them. */
static volatile uint64_t sink;

/* The harness's own byte loops are not worth coverage feedback, and tracing
 * their comparisons would dominate the run time. */
#define NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))

NO_COVERAGE static void touch(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s = s * 31 + b[i];
	sink += s;
}

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t in_u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint64_t in_le(struct input *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)in_u8(in) << (8 * i);
	return v;
}

/* A heap copy of exactly n bytes (at least one allocated), so that any read
 * past the end is an ASan report rather than a read of the next input byte. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	if (!b)
		abort();
	if (n)
		memcpy(b, p, n);
	return b;
}

/* ------------------------------------------------------------- runlists */

/* The invariants runlist.h promises for rl[from ..]. */
static void check_runlist(const struct ntfs_runlist *rl, uint64_t nr_clusters)
{
	for (size_t i = 0; i < rl->count; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		CHECK(r->length > 0, "run %zu has length %lld", i, (long long)r->length);
		CHECK(r->vcn >= 0 && r->vcn <= INT64_MAX - r->length, "run %zu vcn %lld overflows",
		      i, (long long)r->vcn);
		if (i)
			CHECK(r->vcn == rl->runs[i - 1].vcn + rl->runs[i - 1].length,
			      "run %zu at vcn %lld does not continue run %zu", i, (long long)r->vcn,
			      i - 1);
		else
			CHECK(r->vcn == 0, "runlist starts at vcn %lld", (long long)r->vcn);
		if (r->lcn != LCN_HOLE)
			CHECK(r->lcn >= 0 && (uint64_t)r->lcn < nr_clusters &&
			      (uint64_t)r->length <= nr_clusters - (uint64_t)r->lcn,
			      "run %zu (lcn %lld, %lld clusters) is outside a volume of %llu "
			      "clusters", i, (long long)r->lcn, (long long)r->length,
			      (unsigned long long)nr_clusters);
	}
}

/* Linear reference for ntfs_rl_vcn_to_lcn(). */
static int64_t ref_vcn_to_lcn(const struct ntfs_runlist *rl, int64_t vcn, int64_t *count)
{
	for (size_t i = 0; i < rl->count; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		if (vcn >= r->vcn && vcn - r->vcn < r->length) {
			*count = r->length - (vcn - r->vcn);
			return r->lcn == LCN_HOLE ? LCN_HOLE : r->lcn + (vcn - r->vcn);
		}
	}
	return LCN_ENOENT;
}

static void check_lookup(const struct ntfs_runlist *rl, int64_t vcn)
{
	int64_t count = -7, ref_count = -7;
	int64_t lcn = ntfs_rl_vcn_to_lcn(rl, vcn, &count);
	int64_t ref = ref_vcn_to_lcn(rl, vcn, &ref_count);

	CHECK(lcn == ref, "vcn %lld maps to %lld, linear scan says %lld", (long long)vcn,
	      (long long)lcn, (long long)ref);
	if (lcn != LCN_ENOENT)
		CHECK(count == ref_count && count > 0, "vcn %lld: count %lld, expected %lld",
		      (long long)vcn, (long long)count, (long long)ref_count);
	/* count may be NULL */
	CHECK(ntfs_rl_vcn_to_lcn(rl, vcn, NULL) == lcn, "vcn %lld: lookup without count differs",
	      (long long)vcn);
}

static void check_lookups(const struct ntfs_runlist *rl, const int64_t *extra, size_t n_extra)
{
	check_lookup(rl, -1);
	check_lookup(rl, INT64_MIN);
	check_lookup(rl, INT64_MAX);
	check_lookup(rl, ntfs_rl_end_vcn(rl));
	for (size_t i = 0; i < rl->count && i < 64; i++) {
		const struct ntfs_run *r = &rl->runs[i];

		check_lookup(rl, r->vcn);
		check_lookup(rl, r->vcn + r->length - 1);
		check_lookup(rl, r->vcn + r->length / 2);
	}
	for (size_t i = 0; i < n_extra; i++)
		check_lookup(rl, extra[i]);
}

/* Decode and verify the failure contract (runlist left as it was). */
static int decode_checked(struct ntfs_runlist *rl, const uint8_t *mp, size_t len,
			  int64_t lowest, int64_t highest, uint64_t nr_clusters)
{
	size_t before = rl->count;
	int64_t end_before = ntfs_rl_end_vcn(rl);
	uint8_t *copy = dup_exact(mp, len);
	int err = ntfs_mapping_pairs_decode(rl, copy, len, lowest, highest, nr_clusters,
					    "fuzz attribute");

	free(copy);
	if (err) {
		CHECK(err == -EIO || err == -ENOMEM, "decode returned %d", err);
		CHECK(rl->count == before, "failed decode left %zu runs, had %zu", rl->count,
		      before);
		CHECK(ntfs_rl_end_vcn(rl) == end_before, "failed decode moved the runlist end");
		return err;
	}
	CHECK(ntfs_rl_end_vcn(rl) - 1 == highest, "decoded extent ends at vcn %lld, highest_vcn "
	      "%lld", (long long)(ntfs_rl_end_vcn(rl) - 1), (long long)highest);
	check_runlist(rl, nr_clusters);
	return 0;
}

/* -------------------------------------------------------- mode 0: records */

static void check_attr_bounds(const uint8_t *rec, const struct ntfs_attr_record *a,
			      uint32_t in_use)
{
	uint32_t off = (uint32_t)((const uint8_t *)a - rec), len = le32(a->length);

	CHECK(off < in_use && len >= NTFS_ATTR_RESIDENT_HEADER_SIZE && len % 8 == 0 &&
	      len <= in_use - off, "attribute at %u (length %u) not inside %u bytes in use",
	      off, len, in_use);
	if (a->name_length) {
		CHECK(le16(a->name_offset) + 2u * a->name_length <= len,
		      "attribute at %u: name outside the record", off);
		touch(ntfs_attr_name(a), 2u * a->name_length);
	}
	if (!a->non_resident) {
		uint32_t vlen;
		const uint8_t *v = ntfs_attr_value(a, &vlen);

		CHECK(v >= (const uint8_t *)a && (size_t)(v - (const uint8_t *)a) + vlen <= len,
		      "attribute at %u: value outside the record", off);
		touch(v, vlen);
	} else {
		CHECK(len >= NTFS_ATTR_NONRESIDENT_HEADER_SIZE &&
		      le16(a->u.nr.mapping_pairs_offset) < len,
		      "attribute at %u: mapping pairs outside the record", off);
	}
}

static void fuzz_mft_record(struct input in)
{
	uint8_t flags = in_u8(&in);
	uint32_t size = (flags & 1) ? 4096 : 1024;
	uint64_t mft_no = in_le(&in, 4);
	uint64_t nr_clusters = 1ull << (in_u8(&in) % 63);
	uint8_t *rec = calloc(1, size);
	struct ntfs_attr_iter it;
	const struct ntfs_attr_record *a;
	struct ntfs_runlist rl = { 0 };
	uint32_t cur_type = AT_UNUSED, in_use, steps = 0;

	if (!rec)
		abort();
	memcpy(rec, in.p, in.n < size ? in.n : size);
	if (ntfs_mft_record_check(rec, size, mft_no)) {
		free(rec);
		return;
	}
	in_use = le32(((const struct ntfs_mft_record *)rec)->bytes_in_use);
	CHECK(in_use <= size, "accepted a record with %u bytes in use of %u", in_use, size);
	ntfs_attr_iter_init(&it, rec);
	while (ntfs_attr_iter_next(&it, &a)) {
		CHECK(++steps <= size / NTFS_ATTR_RESIDENT_HEADER_SIZE, "attribute walk does not end");
		check_attr_bounds(rec, a, in_use);
		if (!a->non_resident)
			continue;
		/* Extents of one attribute type in a row are decoded into one runlist,
		 * as attrib.c does; anything else starts a new one. */
		if (le32(a->type) != cur_type) {
			ntfs_runlist_free(&rl);
			cur_type = le32(a->type);
		}
		{
			uint32_t mpo = le16(a->u.nr.mapping_pairs_offset);
			int64_t lowest = sle64(a->u.nr.lowest_vcn), highest = sle64(a->u.nr.highest_vcn);
			int64_t extra[4] = { lowest, highest, highest + (highest < INT64_MAX),
					     (int64_t)(le64(a->u.nr.data_size) >> 12) };

			if (decode_checked(&rl, (const uint8_t *)a + mpo, le32(a->length) - mpo,
					   lowest, highest, nr_clusters) == 0)
				check_lookups(&rl, extra, 4);
			else
				ntfs_runlist_free(&rl);
		}
	}
	ntfs_runlist_free(&rl);
	free(rec);
}

/* ------------------------------------------------ mode 1: mapping pairs */

static void fuzz_runlist(struct input in)
{
	uint8_t flags = in_u8(&in);
	int64_t lowest = (int64_t)in_le(&in, 8), highest = (int64_t)in_le(&in, 8);
	uint64_t nr_clusters = in_le(&in, 8);
	size_t split = (size_t)in_le(&in, 2);
	struct ntfs_runlist rl = { 0 };
	int64_t extra[6] = { lowest, highest, lowest - (lowest > INT64_MIN),
			     highest + (highest < INT64_MAX), (int64_t)nr_clusters, 0 };
	int err = 0;

	if ((flags & 1) && lowest > 0) {
		split = in.n ? split % (in.n + 1) : 0;
		err = decode_checked(&rl, in.p, split, 0, lowest - 1, nr_clusters);
		in.p += split;
		in.n -= split;
	}
	if (!err)
		err = decode_checked(&rl, in.p, in.n, lowest, highest, nr_clusters);
	check_lookups(&rl, extra, 6);
	ntfs_runlist_free(&rl);
}

/* --------------------------------------------------------- mode 3: LZNT1 */

static void fuzz_lznt1(struct input in)
{
	size_t dst_len = ((size_t)(in_u8(&in) & 15) + 1) * LZNT1_CHUNK_SIZE;
	uint8_t *src = dup_exact(in.p, in.n);
	uint8_t *d0 = malloc(dst_len), *d1 = malloc(dst_len);
	int r0, r1;

	if (!d0 || !d1)
		abort();
	memset(d0, 0x00, dst_len);
	memset(d1, 0xa5, dst_len);
	r0 = lznt1_decompress_unit(src, in.n, d0, dst_len);
	r1 = lznt1_decompress_unit(src, in.n, d1, dst_len);
	CHECK(r0 == r1, "lznt1 is not deterministic: %d then %d", r0, r1);
	CHECK(r0 == 0 || r0 == -EIO, "lznt1 returned %d", r0);
	if (r0 == 0)
		CHECK(memcmp(d0, d1, dst_len) == 0,
		      "lznt1 succeeded without writing every byte of the unit");
	free(src);
	free(d0);
	free(d1);
}

/* ---------------------------------------------------- mode 4: boot sector */

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static void fuzz_boot(struct input in)
{
	uint8_t sector[512] = { 0 };
	struct ntfs_geometry g;
	uint64_t dev_size;
	size_t n = in.n < sizeof(sector) ? in.n : sizeof(sector);

	memcpy(sector, in.p, n);
	in.p += n;
	in.n -= n;
	dev_size = in.n ? in_le(&in, 8) : 1ull << 40;
	if (ntfs_boot_parse(sector, dev_size, &g))
		return;
	CHECK(pow2(g.sector_size) && g.sector_size >= 512 && g.sector_size <= 4096,
	      "sector size %u", g.sector_size);
	CHECK(pow2(g.cluster_size) && g.cluster_size >= NTFS_MIN_CLUSTER_SIZE &&
	      g.cluster_size <= NTFS_MAX_CLUSTER_SIZE && g.cluster_size >= g.sector_size &&
	      (1u << g.cluster_size_bits) == g.cluster_size, "cluster size %u", g.cluster_size);
	CHECK(pow2(g.mft_record_size) && g.mft_record_size >= 512 && g.mft_record_size <= 65536 &&
	      g.mft_record_size >= g.sector_size &&
	      (1u << g.mft_record_size_bits) == g.mft_record_size,
	      "MFT record size %u", g.mft_record_size);
	CHECK(pow2(g.index_block_size) && g.index_block_size >= 512 &&
	      g.index_block_size <= 65536 &&
	      (1u << g.index_block_size_bits) == g.index_block_size,
	      "index block size %u", g.index_block_size);
	CHECK(g.nr_clusters > 0 && g.nr_clusters <= dev_size >> g.cluster_size_bits,
	      "%llu clusters on a %llu-byte device", (unsigned long long)g.nr_clusters,
	      (unsigned long long)dev_size);
	CHECK(g.mft_lcn < g.nr_clusters && g.mftmirr_lcn < g.nr_clusters, "MFT outside volume");
}

/* ----------------------------------------------------------- mode 5: MST */

static void fuzz_mst(struct input in)
{
	uint16_t sel = (uint16_t)in_le(&in, 2);
	/* Mostly whole strides (1..16 of them); sometimes any size up to 8 KiB. */
	uint32_t size = (sel & 0x8000) ? (sel & 0x7fff) % 8193u : ((sel % 16u) + 1) * 512u;
	/* Exactly size bytes (malloc(0) under ASan has no addressable byte), so
	 * any read outside the buffer is reported. */
	uint8_t *buf = malloc(size), *orig, *copy;
	uint16_t usa_ofs;

	if (!buf)
		abort();
	memset(buf, 0, size);
	memcpy(buf, in.p, in.n < size ? in.n : size);
	orig = dup_exact(buf, size);
	if (ntfs_mst_post_read(buf, size, "fuzz record", 7)) {
		CHECK(size == 0 || memcmp(buf, orig, size) == 0,
		      "failed post_read modified the buffer");
		free(orig);
		free(buf);
		return;
	}
	CHECK(size >= 512 && size % 512 == 0, "post_read accepted a %u-byte buffer", size);
	usa_ofs = get_le16(buf + 4);
	/* Round trip: pre_write then post_read gives back the record, with only the
	 * update sequence number changed; post_write undoes pre_write likewise. */
	copy = dup_exact(buf, size);
	CHECK(ntfs_mst_pre_write(copy, size) == 0, "pre_write refused a record post_read accepted");
	{
		uint8_t *again = dup_exact(copy, size);

		ntfs_mst_post_write(again, size);
		put_le16(again + usa_ofs, get_le16(buf + usa_ofs));
		CHECK(memcmp(again, buf, size) == 0, "post_write does not undo pre_write");
		free(again);
	}
	CHECK(ntfs_mst_post_read(copy, size, "fuzz record", 7) == 0,
	      "post_read refused what pre_write produced");
	put_le16(copy + usa_ofs, get_le16(buf + usa_ofs));
	CHECK(memcmp(copy, buf, size) == 0, "pre_write + post_read does not round trip");
	free(copy);
	free(orig);
	free(buf);
}

/* ------------------------------------------------------ mode 2: a volume */

#define MAX_REGIONS 32
#define NR_FILES 40      /* files created in the root directory */
#define READ_CAP (24u << 10)    /* bytes read per file from offset 0 */

struct region {
	char name[48];
	uint64_t dev_off;
	uint32_t size;
	bool mst;               /* fixups protected: patched in logical form */
	uint8_t *raw;           /* pristine bytes as on disk */
	uint8_t *logical;       /* pristine bytes with fixups removed (mst only) */
	uint8_t *work;
	bool touched, work_raw;
};

static struct {
	bool ready;
	int fd;
	char path[64];
	uint8_t *image;
	size_t image_size;
	struct region regions[MAX_REGIONS];
	unsigned nr_regions;
	/* MFT numbers of the user files whose records are not patch regions: their
	 * data is the same in every run, so runs only open their $DATA (which
	 * decodes the runlist) instead of decompressing it again. */
	uint64_t plain_files[NR_FILES];
	unsigned nr_plain_files;
} img;

static void file_name(unsigned i, char *buf, size_t len)
{
	static const char *const kind[4] = { "tiny", "text", "noise", "sparse" };

	snprintf(buf, len, "file-%02u-%s.dat", i, kind[i % 4]);
}

static uint64_t prng_state = 0x9e3779b97f4a7c15ull;

static uint64_t prng(void)
{
	prng_state ^= prng_state << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= prng_state << 17;
	return prng_state;
}

static int write_host_file(const char *path, unsigned i)
{
	size_t size;
	uint8_t *b;
	FILE *f;

	switch (i % 4) {
	case 0: size = 40 + 37 * i; break;                      /* resident */
	case 1: size = 3000 + 2500 * (i % 9); break;            /* compressible text */
	case 2: size = 1000 + 1700 * (i % 7); break;            /* incompressible */
	default: size = 65536 + 1000 + 300 * i; break;          /* a zero unit, then text */
	}
	b = calloc(1, size);
	if (!b)
		return -1;
	for (size_t k = 0; k < size; k++) {
		if (i % 4 == 2)
			b[k] = (uint8_t)prng();
		else if (i % 4 != 3 || k >= 65536)
			b[k] = (uint8_t)("the quick brown fox jumps over the lazy dog\n"[(k * 7 + i) % 44]);
	}
	f = fopen(path, "wb");
	if (!f || fwrite(b, 1, size, f) != size || fclose(f)) {
		free(b);
		return -1;
	}
	free(b);
	return 0;
}

static int run_quiet(char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

__attribute__((noreturn, format(printf, 1, 2))) static void init_failed(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_ntfs: cannot set up the fuzz volume: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Build the image with mkntfs and ntfscp in a temporary directory and read it in. */
static void make_image(void)
{
	char dir[] = "/tmp/fuzz_ntfs.XXXXXX", imgpath[64], host[128], name[64];
	struct stat st;
	FILE *f;

	if (!mkdtemp(dir))
		init_failed("mkdtemp: %s", strerror(errno));
	snprintf(imgpath, sizeof(imgpath), "%s/vol.img", dir);
	f = fopen(imgpath, "wb");
	if (!f || ftruncate(fileno(f), 4 << 20) || fclose(f))
		init_failed("%s: %s", imgpath, strerror(errno));
	{
		char *argv[] = { "mkntfs", "-F", "-Q", "-q", "-C", "-L", "fuzz", imgpath, NULL };

		if (run_quiet(argv))
			init_failed("mkntfs failed (is ntfs-3g installed?)");
	}
	for (unsigned i = 0; i < NR_FILES; i++) {
		snprintf(host, sizeof(host), "%s/src%u", dir, i);
		file_name(i, name, sizeof(name));
		if (write_host_file(host, i))
			init_failed("%s: %s", host, strerror(errno));
		char *argv[] = { "ntfscp", "-q", imgpath, host, name, NULL };

		if (run_quiet(argv))
			init_failed("ntfscp %s failed", name);
		unlink(host);
	}
	/* One named stream, on the first text file. */
	snprintf(host, sizeof(host), "%s/stream", dir);
	if (write_host_file(host, 5))
		init_failed("%s: %s", host, strerror(errno));
	file_name(1, name, sizeof(name));
	{
		char *argv[] = { "ntfscp", "-q", "-N", "meta", imgpath, host, name, NULL };

		if (run_quiet(argv))
			init_failed("ntfscp -N failed");
	}
	unlink(host);
	if (stat(imgpath, &st))
		init_failed("%s: %s", imgpath, strerror(errno));
	img.image_size = (size_t)st.st_size;
	img.image = malloc(img.image_size);
	f = fopen(imgpath, "rb");
	if (!img.image || !f || fread(img.image, 1, img.image_size, f) != img.image_size)
		init_failed("reading %s back failed", imgpath);
	fclose(f);
	unlink(imgpath);
	rmdir(dir);
}

static void add_region(const char *name, uint64_t dev_off, uint32_t size, bool mst)
{
	struct region *r;

	if (img.nr_regions == MAX_REGIONS)
		return;
	if (dev_off > img.image_size || size > img.image_size - dev_off)
		init_failed("region %s at %llu is outside the image", name,
			    (unsigned long long)dev_off);
	r = &img.regions[img.nr_regions++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->dev_off = dev_off;
	r->size = size;
	r->mst = mst;
	r->raw = dup_exact(img.image + dev_off, size);
	r->work = malloc(size);
	if (!r->work)
		abort();
	if (mst) {
		r->logical = dup_exact(r->raw, size);
		if (ntfs_mst_post_read(r->logical, size, name, 0))
			init_failed("region %s: %s", name, ntfs_last_error());
	}
}

/* Byte offset on the device of [pos, pos + len) of a non-resident attribute,
 * which must not cross a run. */
static uint64_t attr_dev_off(struct ntfs_volume *vol, struct ntfs_attr *na, uint64_t pos,
			     uint32_t len)
{
	uint32_t bits = vol->geo.cluster_size_bits;
	int64_t count, lcn;

	if (na->resident)
		init_failed("attribute unexpectedly resident");
	lcn = ntfs_rl_vcn_to_lcn(&na->rl, (int64_t)(pos >> bits), &count);
	if (lcn < 0 || ((uint64_t)count << bits) - (pos & (vol->geo.cluster_size - 1)) < len)
		init_failed("attribute range at %llu not mapped contiguously",
			    (unsigned long long)pos);
	return ((uint64_t)lcn << bits) + (pos & (vol->geo.cluster_size - 1));
}

static void add_record_region(struct ntfs_volume *vol, const char *name, uint64_t mft_no)
{
	uint32_t size = vol->geo.mft_record_size;
	char what[48];

	snprintf(what, sizeof(what), "MFT record %llu (%s)", (unsigned long long)mft_no, name);
	add_region(what, attr_dev_off(vol, vol->mft_data, mft_no << vol->geo.mft_record_size_bits,
				      size), size, true);
}

static struct ntfs_attr *open_data(struct ntfs_volume *vol, uint64_t mft_no,
				   struct ntfs_inode **ni)
{
	struct ntfs_attr *na;

	if (ntfs_inode_open(vol, mft_no, ni) || ntfs_attr_open(*ni, AT_DATA, NULL, 0, &na))
		init_failed("record %llu: %s", (unsigned long long)mft_no, ntfs_last_error());
	return na;
}

static void locate_regions(void)
{
	static const union {
		uint8_t bytes[8];
		ntfschar units[4];
	} i30 = { .bytes = { '$', 0, 'I', 0, '3', 0, '0', 0 } };
	struct ntfs_volume *vol;
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	char path[80], name[64];
	uint64_t mref;

	if (ntfs_volume_open(img.path, NTFS_OPEN_READ_ONLY, &vol))
		init_failed("the layer cannot open the pristine image: %s", ntfs_last_error());
	add_region("boot sector", 0, 512, false);
	add_record_region(vol, "$MFT", FILE_MFT);
	add_record_region(vol, "$LogFile", FILE_LogFile);
	add_record_region(vol, "$Volume", FILE_Volume);
	add_record_region(vol, "root", FILE_root);
	add_record_region(vol, "$UpCase", FILE_UpCase);

	/* The root's INDX blocks. */
	if (ntfs_inode_open(vol, FILE_root, &ni) ||
	    ntfs_attr_open(ni, AT_INDEX_ALLOCATION, i30.units, 4, &na))
		init_failed("root $INDEX_ALLOCATION: %s", ntfs_last_error());
	{
		uint32_t bs = vol->geo.index_block_size;

		for (uint64_t pos = 0; pos + bs <= na->data_size; pos += bs) {
			char what[48];

			snprintf(what, sizeof(what), "root INDX block at %llu",
				 (unsigned long long)pos);
			add_region(what, attr_dev_off(vol, na, pos, bs), bs, true);
		}
		if (na->data_size < 2 * bs)
			init_failed("the root index has only %llu bytes of INDX blocks",
				    (unsigned long long)na->data_size);
	}
	ntfs_attr_close(na);
	ntfs_inode_close(ni);

	/* $LogFile's two restart pages. */
	na = open_data(vol, FILE_LogFile, &ni);
	add_region("$LogFile restart pages", attr_dev_off(vol, na, 0, 8192), 8192, false);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);

	/* One file of each kind, and the first compressed cluster of a text file. */
	for (unsigned i = 0; i < 4; i++) {
		file_name(i + 4, name, sizeof(name));
		snprintf(path, sizeof(path), "/%s", name);
		if (ntfs_path_lookup(vol, path, 0, &mref))
			init_failed("%s: %s", path, ntfs_last_error());
		add_record_region(vol, name, MREF(mref));
		if (i == 1 || i == 3) {
			na = open_data(vol, MREF(mref), &ni);
			if (!ntfs_attr_is_compressed(na))
				init_failed("%s is not compressed: mkntfs -C did not take", name);
			snprintf(path, sizeof(path), "compressed data of %s", name);
			add_region(path, attr_dev_off(vol, na, i == 3 ? 65536 : 0,
						      vol->geo.cluster_size),
				   vol->geo.cluster_size, false);
			ntfs_attr_close(na);
			ntfs_inode_close(ni);
		}
	}
	/* The user files whose records are not regions. */
	for (unsigned i = 0; i < NR_FILES; i++) {
		if (i >= 4 && i < 8)
			continue;
		file_name(i, name, sizeof(name));
		snprintf(path, sizeof(path), "/%s", name);
		if (ntfs_path_lookup(vol, path, 0, &mref))
			init_failed("%s: %s", path, ntfs_last_error());
		img.plain_files[img.nr_plain_files++] = MREF(mref);
	}
	ntfs_volume_close(vol);
}

static void write_seed(const char *dir, const char *name, const uint8_t *b, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(b, 1, n, f) != n || fclose(f))
		init_failed("writing seed %s: %s", path, strerror(errno));
}

/* Mode 2 seeds: the pristine image as is, and each region rewritten whole
 * (in its logical form) so mutations start from real structures. */
static void dump_seeds(const char *dir)
{
	uint8_t *b = malloc(1 + 65536 + 4 * 300);
	char name[64];

	if (!b)
		abort();
	b[0] = MODE_VOLUME;
	write_seed(dir, "volume-pristine", b, 1);
	for (unsigned r = 0; r < img.nr_regions; r++) {
		const struct region *rg = &img.regions[r];
		const uint8_t *src = rg->mst ? rg->logical : rg->raw;
		size_t n = 1;

		for (uint32_t off = 0; off < rg->size; off += 255) {
			uint32_t len = rg->size - off < 255 ? rg->size - off : 255;

			b[n++] = (uint8_t)r;
			b[n++] = (uint8_t)off;
			b[n++] = (uint8_t)(off >> 8);
			b[n++] = (uint8_t)len;
			memcpy(b + n, src + off, len);
			n += len;
		}
		snprintf(name, sizeof(name), "volume-region-%02u", r);
		write_seed(dir, name, b, n);
	}
	free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seed_dir = getenv("FUZZ_NTFS_SEED_DIR");

	(void)argc;
	(void)argv;
	make_image();
	img.fd = memfd_create("fuzz_ntfs_volume", MFD_CLOEXEC);
	if (img.fd < 0)
		init_failed("memfd_create: %s", strerror(errno));
	if (pwrite(img.fd, img.image, img.image_size, 0) != (ssize_t)img.image_size)
		init_failed("writing the memfd: %s", strerror(errno));
	snprintf(img.path, sizeof(img.path), "/proc/self/fd/%d", img.fd);
	locate_regions();
	if (seed_dir)
		dump_seeds(seed_dir);
	fprintf(stderr, "fuzz_ntfs: %zu-byte volume in %s, %u patchable regions\n",
		img.image_size, img.path, img.nr_regions);
	img.ready = true;
	return 0;
}

static void region_write(const struct region *r, const uint8_t *b)
{
	if (pwrite(img.fd, b, r->size, (off_t)r->dev_off) != (ssize_t)r->size)
		abort();
}

struct walk {
	uint64_t mrefs[64];
	unsigned nr_mrefs;
	char *names[6];
	unsigned nr_names;
	unsigned entries;
};

static int walk_cb(void *ctx, const struct ntfs_dirent *de)
{
	struct walk *w = ctx;
	char *u8;

	CHECK(de->name_len > 0 && de->name_len <= 255, "dirent name of %u units", de->name_len);
	touch(de->name, 2u * de->name_len);
	touch(de->fn, sizeof(*de->fn));
	if (++w->entries > 100000)
		return 1;
	if (w->nr_mrefs < 64)
		w->mrefs[w->nr_mrefs++] = de->mref;
	if (ntfs_utf16_to_utf8(de->name, de->name_len, &u8) == 0) {
		if (w->nr_names < 6 && de->name_type != FILE_NAME_DOS && !strchr(u8, '/'))
			w->names[w->nr_names++] = u8;
		else
			free(u8);
	}
	return 0;
}

/* 1 + the index of the first non-zero byte, or 0 when all are zero. */
NO_COVERAGE static size_t first_nonzero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return i + 1;
	return 0;
}

/* Read a file's data in a few ways and check what ntfs_attr_pread promises. */
static void read_attr(struct ntfs_attr *na, uint8_t *buf)
{
	uint64_t positions[3] = { 0, na->data_size / 3 + 1, na->data_size - (na->data_size > 100) * 100 };
	size_t counts[3] = { READ_CAP, 5000, 300 };

	for (unsigned k = 0; k < 3; k++) {
		uint64_t pos = positions[k];
		size_t count = counts[k];
		ssize_t n = ntfs_attr_pread(na, pos, count, buf);
		size_t want;

		if (n < 0) {
			CHECK(n == -EIO || n == -EACCES || n == -EOPNOTSUPP || n == -ENOMEM,
			      "pread returned %zd", n);
			return;
		}
		want = pos >= na->data_size ? 0
		       : na->data_size - pos < count ? (size_t)(na->data_size - pos) : count;
		CHECK((size_t)n == want, "pread of %zu at %llu returned %zd, expected %zu "
		      "(data size %llu)", count, (unsigned long long)pos, n, want,
		      (unsigned long long)na->data_size);
		{
			size_t z = pos >= na->initialized_size ? 0 : (size_t)(na->initialized_size - pos);
			size_t nz = z < (size_t)n ? first_nonzero(buf + z, (size_t)n - z) : 0;

			CHECK(nz == 0, "byte %llu past initialized size %llu is not zero",
			      (unsigned long long)(pos + z + nz - 1),
			      (unsigned long long)na->initialized_size);
		}
		touch(buf, (size_t)n);
	}
}

static void read_file(struct ntfs_volume *vol, uint64_t mref, uint8_t *buf)
{
	static const union {
		uint8_t bytes[8];
		ntfschar units[4];
	} meta = { .bytes = { 'm', 0, 'e', 0, 't', 0, 'a', 0 } };
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	bool plain = false;

	for (unsigned i = 0; i < img.nr_plain_files; i++)
		plain |= img.plain_files[i] == MREF(mref);
	if (ntfs_inode_open(vol, MREF(mref), &ni))
		return;
	if (ntfs_attr_open(ni, AT_DATA, NULL, 0, &na) == 0) {
		if (!plain)
			read_attr(na, buf);
		ntfs_attr_close(na);
	}
	if (ntfs_attr_open(ni, AT_DATA, meta.units, 4, &na) == 0) {
		read_attr(na, buf);
		ntfs_attr_close(na);
	}
	ntfs_inode_close(ni);
}

static void list_dir(struct ntfs_volume *vol, uint64_t mft_no, struct walk *w)
{
	struct ntfs_inode *dir;

	if (ntfs_inode_open(vol, mft_no, &dir))
		return;
	if (ntfs_inode_is_dir(dir))
		ntfs_dir_foreach(dir, walk_cb, w);
	ntfs_inode_close(dir);
}

static void exercise_volume(void)
{
	struct ntfs_volume *vol;
	struct walk root = { 0 }, sub = { 0 };
	uint8_t *buf;
	uint64_t mref;
	char name[64], path[160];

	if (ntfs_volume_open(img.path, NTFS_OPEN_READ_ONLY, &vol)) {
		CHECK(strlen(ntfs_last_error()) > 0, "volume open failed without a message");
		return;
	}
	CHECK(vol->mft_data && vol->upcase && vol->label && vol->nr_mft_records >= FILE_first_user,
	      "an opened volume lacks $MFT/$UpCase/label");
	buf = malloc(READ_CAP);
	if (!buf)
		abort();

	list_dir(vol, FILE_root, &root);
	/* Subdirectories of the root ($Extend), one level down. */
	for (unsigned i = 0; i < root.nr_mrefs; i++) {
		struct ntfs_inode *ni;

		if (MREF(root.mrefs[i]) == FILE_root ||
		    ntfs_inode_open(vol, MREF(root.mrefs[i]), &ni))
			continue;
		if (ntfs_inode_is_dir(ni))
			list_dir(vol, MREF(root.mrefs[i]), &sub);
		ntfs_inode_close(ni);
	}

	/* Path lookups: known names (also ignoring case), missing ones, a file
	 * used as a directory, and names the listing returned. */
	for (unsigned i = 0; i < NR_FILES; i += 9) {
		file_name(i, name, sizeof(name));
		snprintf(path, sizeof(path), "/%s", name);
		ntfs_path_lookup(vol, path, 0, &mref);
		for (char *c = path; *c; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
		if (ntfs_path_lookup(vol, path, NTFS_LOOKUP_IGNORE_CASE, &mref) == 0)
			read_file(vol, mref, buf);
	}
	ntfs_path_lookup(vol, "/no-such-file", 0, &mref);
	ntfs_path_lookup(vol, "/$Extend/$Quota", 0, &mref);
	ntfs_path_lookup(vol, "/", 0, &mref);
	file_name(4, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/below-a-file", name);
	ntfs_path_lookup(vol, path, 0, &mref);
	for (unsigned i = 0; i < root.nr_names; i++) {
		snprintf(path, sizeof(path), "/%s", root.names[i]);
		ntfs_path_lookup(vol, path, NTFS_LOOKUP_IGNORE_CASE, &mref);
	}

	/* Read every file the root listed. */
	for (unsigned i = 0; i < root.nr_mrefs; i++)
		read_file(vol, root.mrefs[i], buf);

	for (unsigned i = 0; i < root.nr_names; i++)
		free(root.names[i]);
	for (unsigned i = 0; i < sub.nr_names; i++)
		free(sub.names[i]);
	free(buf);
	ntfs_volume_close(vol);
}

static void fuzz_volume(struct input in)
{
	if (!img.ready)
		return;
	while (in.n >= 4) {
		uint8_t sel = in_u8(&in);
		uint32_t off = (uint32_t)in_le(&in, 2);
		size_t len = in_u8(&in);
		struct region *r = &img.regions[(sel & 0x7f) % img.nr_regions];

		if (!r->touched) {
			r->touched = true;
			r->work_raw = !r->mst || (sel & 0x80);
			memcpy(r->work, r->work_raw ? r->raw : r->logical, r->size);
		}
		off %= r->size;
		if (len > in.n)
			len = in.n;
		if (len > r->size - off)
			len = r->size - off;
		memcpy(r->work + off, in.p, len);
		in.p += len;
		in.n -= len;
	}
	for (unsigned i = 0; i < img.nr_regions; i++) {
		struct region *r = &img.regions[i];

		if (!r->touched)
			continue;
		/* A patch that broke the header leaves the record without fixups,
		 * which is just another corruption. */
		if (!r->work_raw)
			(void)ntfs_mst_pre_write(r->work, r->size);
		region_write(r, r->work);
	}

	exercise_volume();

	for (unsigned i = 0; i < img.nr_regions; i++) {
		struct region *r = &img.regions[i];

		if (r->touched)
			region_write(r, r->raw);
		r->touched = false;
	}
}

/* ---------------------------------------------------------------- entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data + 1, size ? size - 1 : 0 };

	if (!size)
		return 0;
	ntfs_clear_error();
	switch (data[0] % NR_MODES) {
	case MODE_MFT: fuzz_mft_record(in); break;
	case MODE_RUNLIST: fuzz_runlist(in); break;
	case MODE_VOLUME: fuzz_volume(in); break;
	case MODE_LZNT1: fuzz_lznt1(in); break;
	case MODE_BOOT: fuzz_boot(in); break;
	case MODE_MST: fuzz_mst(in); break;
	}
	return 0;
}
