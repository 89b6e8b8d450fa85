/*
 * test_attr_record.c — attribute record rewrites on real volumes, judged by
 * ntfs-3g: ntfs_attr_update_mapping_pairs (shrinking, emptying, relocating
 * into a fragmented runlist, punching holes that make a file sparse,
 * growing with a hole, a named stream whose name moves with the sparse
 * header, a runlist too long for its record spilling into extension
 * records, an attribute ntfs-3g split over extents cut back to one, and an
 * inode with an $ATTRIBUTE_LIST whose single-extent $DATA spills and
 * shrinks again) and ntfs_attr_make_nonresident (unnamed and named
 * streams), plus the refusals (-EINVAL, -EROFS) that must leave the image
 * byte for byte unchanged.  (test_attr_list.c covers attributes over many
 * extension records in depth.)
 *
 * The group setup makes one pristine image with mkntfs (32 MiB, 4 KiB
 * clusters) and ntfscp, then two files through a read-write ntfs-3g mount:
 * one written a cluster at a time after the free clusters of every other
 * $Bitmap byte were marked used (through the layer), so that ntfs-3g gives
 * it a run per 8-cluster gap and splits its runlist over extension records
 * itself (the borrowed bits are cleared again afterwards); and one with a
 * dozen long hard-link names, which ntfs-3g spreads over extension records
 * behind an $ATTRIBUTE_LIST while its $DATA stays one extent.
 *
 * The tests have no cluster allocator to call, so they pick clusters that
 * $Bitmap (read through the layer) shows free, and keep $Bitmap honest
 * themselves: clusters a test starts using are marked, clusters a runlist
 * stops using are cleared.  After each change: ntfscat must give the
 * expected bytes, ntfsinfo the expected sizes, flags and (with -v) exactly
 * the expected runlist, ntfsfix -n must pass, a fresh read-only ntfs-3g
 * mount must read the expected bytes, and the layer itself, reopening the
 * image, must read them too.  Twice ntfs-3g also writes (through a
 * read-write mount) into what we rewrote: into the holes we punched, and
 * past the end of the file we made non-resident.
 *
 * Every image lives in a mkdtemp() directory that the group teardown (or,
 * on a hang or an abort, a signal handler) removes; a mount is always
 * unmounted by the helper that made it before any assertion about what it
 * read.
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

#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "device.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "layout.h"
#include "le.h"
#include "mft.h"
#include "oracle.h"
#include "testvol.h"
#include "runlist.h"
#include "unistr.h"
#include "volume.h"

#define IMAGE_SIZE (32u << 20)
#define CLUSTER 4096u

/* The files of the pristine image. */
enum {
	F_SHRINK,       /* 1 MiB + 300 bytes, contiguous */
	F_EMPTY,        /* 64 KiB, to be emptied */
	F_FRAG,         /* 256 KiB (64 clusters), to be relocated */
	F_SMALL,        /* 150 bytes, resident */
	F_SPARSE,       /* 512 KiB (128 clusters) */
	F_STREAMS,      /* 20 bytes resident + :alpha 100 bytes resident + :beta 100 KiB */
	F_ALPHA,
	F_BETA,
	F_ATTRLIST,     /* 10 MiB written into a checkerboard: $ATTRIBUTE_LIST */
	F_LINKED,       /* 64 KiB with 12 more hard links: $ATTRIBUTE_LIST, one extent */
	NR_FILES
};

static const struct {
	const char *path, *stream;
	size_t size;
} files[NR_FILES] = {
	[F_SHRINK] = { "/shrink.bin", NULL, (1u << 20) + 300 },
	[F_EMPTY] = { "/empty.bin", NULL, 64u << 10 },
	[F_FRAG] = { "/frag.bin", NULL, 256u << 10 },
	[F_SMALL] = { "/small.txt", NULL, 150 },
	[F_SPARSE] = { "/sparse.bin", NULL, 512u << 10 },
	[F_STREAMS] = { "/streams.txt", NULL, 20 },
	[F_ALPHA] = { "/streams.txt", "alpha", 100 },
	[F_BETA] = { "/streams.txt", "beta", 100u << 10 },
	[F_ATTRLIST] = { "/attrlist.bin", NULL, 10u << 20 },
	[F_LINKED] = { "/linked.bin", NULL, 64u << 10 },
};

#define NR_LINKS 12

struct fixture {
	struct testvol tv;
	uint8_t *data[NR_FILES];  /* what each file holds in the pristine image */
};

static struct fixture fx;
static unsigned test_timeout = 180;

static void cleanup_all(void)
{
	testvol_destroy(&fx.tv);
	for (int i = 0; i < NR_FILES; i++) {
		free(fx.data[i]);
		fx.data[i] = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* the layer: files and $Bitmap                                         */
/* ------------------------------------------------------------------ */

struct file {
	struct ntfs_volume *vol;
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
};

static int file_open(struct ntfs_volume *vol, int f, struct file *out)
{
	ntfschar *uname = NULL;
	uint32_t ulen = 0;
	uint64_t mref;
	int err;

	memset(out, 0, sizeof(*out));
	out->vol = vol;
	err = ntfs_path_lookup(vol, files[f].path, 0, &mref);
	if (!err)
		err = ntfs_inode_open(vol, MREF(mref), &out->ni);
	if (!err && files[f].stream)
		err = ntfs_utf8_to_utf16(files[f].stream, strlen(files[f].stream), &uname, &ulen);
	if (!err)
		err = ntfs_attr_open(out->ni, AT_DATA, uname, ulen, &out->na);
	free(uname);
	if (err) {
		ntfs_inode_close(out->ni);
		out->ni = NULL;
	}
	return err;
}

static void file_close(struct file *f)
{
	ntfs_attr_close(f->na);
	ntfs_inode_close(f->ni);
	f->na = NULL;
	f->ni = NULL;
}

/* Open the scratch image read-write and the file f in it. */
static struct file open_rw(int f)
{
	struct ntfs_volume *vol = NULL;
	struct file fl;

	if (ntfs_volume_open(fx.tv.scratch, 0, &vol))
		fail_msg("cannot open the scratch image read-write: %s", ntfs_last_error());
	if (file_open(vol, f, &fl))
		fail_msg("%s: %s", files[f].path, ntfs_last_error());
	return fl;
}

static void close_rw(struct file *fl)
{
	struct ntfs_volume *vol = fl->vol;

	file_close(fl);
	ntfs_volume_close(vol);
}

struct bitmap {
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	uint8_t *bits;
	uint64_t nr_clusters;
};

static int bitmap_load(struct ntfs_volume *vol, struct bitmap *bm)
{
	int err;

	memset(bm, 0, sizeof(*bm));
	bm->nr_clusters = vol->geo.nr_clusters;
	err = ntfs_inode_open(vol, FILE_Bitmap, &bm->ni);
	if (!err)
		err = ntfs_attr_open(bm->ni, AT_DATA, NULL, 0, &bm->na);
	if (!err && bm->na->data_size < (bm->nr_clusters + 7) / 8)
		err = -EIO;
	if (!err) {
		bm->bits = malloc(bm->na->data_size);
		if (!bm->bits)
			err = -ENOMEM;
	}
	if (!err && ntfs_attr_pread(bm->na, 0, bm->na->data_size, bm->bits) !=
			    (ssize_t)bm->na->data_size)
		err = -EIO;
	return err;
}

static void bitmap_free(struct bitmap *bm)
{
	free(bm->bits);
	ntfs_attr_close(bm->na);
	ntfs_inode_close(bm->ni);
	memset(bm, 0, sizeof(*bm));
}

static bool bit_used(const struct bitmap *bm, int64_t lcn)
{
	return bm->bits[lcn >> 3] >> (lcn & 7) & 1;
}

/* Set or clear [lcn, lcn + count) and write the touched bytes. */
static int bitmap_mark(struct bitmap *bm, int64_t lcn, int64_t count, bool used)
{
	for (int64_t c = lcn; c < lcn + count; c++) {
		if (used)
			bm->bits[c >> 3] |= (uint8_t)(1u << (c & 7));
		else
			bm->bits[c >> 3] &= (uint8_t)~(1u << (c & 7));
	}
	return count ? ntfs_attr_pwrite_mapped(bm->na, (uint64_t)lcn >> 3,
					       (size_t)(((lcn + count - 1) >> 3) - (lcn >> 3) + 1),
					       bm->bits + (lcn >> 3))
		     : 0;
}

/* First run of `count` free clusters at or after `from`. */
static int64_t bitmap_find_free(const struct bitmap *bm, int64_t from, int64_t count)
{
	int64_t start = from, c;

	for (c = from; c < (int64_t)bm->nr_clusters; c++) {
		if (bit_used(bm, c))
			start = c + 1;
		else if (c + 1 - start == count)
			return start;
	}
	return -1;
}

/* Mark the allocated clusters of a list of runs used or free. */
static void bitmap_mark_runs(struct bitmap *bm, const struct ntfs_runlist *runs, bool used)
{
	for (size_t i = 0; i < runs->count; i++)
		if (runs->runs[i].lcn >= 0)
			assert_int_equal(bitmap_mark(bm, runs->runs[i].lcn, runs->runs[i].length,
						     used),
					 0);
}

/* ------------------------------------------------------------------ */
/* what ntfs-3g says                                                    */
/* ------------------------------------------------------------------ */

static void expect_cat(const char *img, int f, const uint8_t *want, size_t len)
{
	char *data = NULL;
	size_t got = 0;
	int err = oracle_cat(img, files[f].path, files[f].stream, &data, &got);

	if (err)
		fail_msg("ntfscat %s%s%s: %d (%s)", files[f].path, files[f].stream ? ":" : "",
			 files[f].stream ? files[f].stream : "", err, oracle_last_stderr());
	if (got != len || (len && memcmp(data, want, len))) {
		size_t i = 0;

		while (i < got && i < len && (uint8_t)data[i] == want[i])
			i++;
		free(data);
		fail_msg("ntfscat %s: %zu bytes, want %zu; first difference at %zu",
			 files[f].path, got, len, i);
	}
	free(data);
}

static void expect_info(const char *img, int f, bool resident, bool sparse, uint64_t data_size,
			uint64_t allocated, uint64_t initialized, uint64_t compressed)
{
	struct oracle_attr a;
	int err = oracle_info(img, files[f].path, files[f].stream, &a);

	if (err || !a.found)
		fail_msg("ntfsinfo %s: %d (%s)", files[f].path, err, oracle_last_stderr());
	assert_int_equal(a.resident, resident);
	assert_int_equal(a.sparse, sparse);
	assert_int_equal(a.data_size, data_size);
	if (!resident) {
		assert_int_equal(a.allocated_size, allocated);
		assert_int_equal(a.initialized_size, initialized);
		assert_int_equal(a.compressed_size, compressed);
	}
}

/* `ntfsinfo -v -F`: the runlist of f's $DATA block (single extent) and the
 * file attributes of $STANDARD_INFORMATION and the first $FILE_NAME. */
struct info_v {
	struct ntfs_runlist rl;
	uint32_t si_attrs, fn_attrs;
	unsigned data_blocks;
	int compression_unit;   /* -1: not printed */
};

static void info_v(const char *img, int f, struct info_v *iv)
{
	const char *argv[] = { "ntfsinfo", "-v", "-F", files[f].path, img, NULL };
	const char *want = files[f].stream ? files[f].stream : "";
	char *out = NULL, *save = NULL, *line;
	enum { NONE, SI, FN, DATA, OTHER } blk = NONE;
	bool in_runlist = false, fn_seen = false, ours = false;
	int err = oracle_run(argv, &out, NULL, NULL);

	memset(iv, 0, sizeof(*iv));
	iv->compression_unit = -1;
	if (err)
		fail_msg("ntfsinfo -v %s: %d (%s)", files[f].path, err, oracle_last_stderr());
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *l = line;

		if (!strncmp(line, "Dumping attribute ", 18)) {
			in_runlist = false;
			ours = false;
			if (!strncmp(line + 18, "$STANDARD_INFORMATION ", 22))
				blk = SI;
			else if (!strncmp(line + 18, "$FILE_NAME ", 11))
				blk = fn_seen ? OTHER : FN;
			else if (!strncmp(line + 18, "$DATA ", 6))
				blk = DATA, ours = !*want;
			else
				blk = OTHER;
			if (blk == FN)
				fn_seen = true;
			continue;
		}
		while (*l == '\t')
			l++;
		if (blk == DATA && !strncmp(l, "Attribute name:", 15)) {
			const char *q = strchr(l, '\'');

			ours = q && !strncmp(q + 1, want, strlen(want)) && q[1 + strlen(want)] == '\'';
		}
		if (blk == DATA && ours && !strncmp(l, "Compression unit:", 17))
			iv->compression_unit = (int)strtol(l + 17, NULL, 0);
		if (blk == DATA && ours && !strncmp(l, "Runlist:", 8)) {
			in_runlist = true;
			iv->data_blocks++;
			continue;
		}
		if ((blk == SI || blk == FN) && !strncmp(l, "File attributes:", 16)) {
			const char *p = strrchr(l, '(');

			if (p)
				*(blk == SI ? &iv->si_attrs : &iv->fn_attrs) =
					(uint32_t)strtoul(p + 1, NULL, 16);
		}
		if (in_runlist && line[0] == '\t' && line[1] == '\t' && line[2] == '\t') {
			char vcn[64], lcn[64], len[64];
			int64_t v, c, n;

			if (sscanf(line, "%63s %63s %63s", vcn, lcn, len) != 3)
				fail_msg("ntfsinfo: cannot parse runlist line '%s'", line);
			v = strtoll(vcn, NULL, 0);
			n = strtoll(len, NULL, 0);
			c = !strncmp(lcn, "0x", 2) ? strtoll(lcn, NULL, 0) : LCN_HOLE;
			if (c == LCN_HOLE && !strstr(lcn, "HOLE"))
				fail_msg("ntfsinfo: unexpected lcn '%s'", lcn);
			assert_int_equal(v, ntfs_rl_end_vcn(&iv->rl));
			/* Appended as given (not merged): compare run by run. */
			if (iv->rl.count == iv->rl.capacity) {
				iv->rl.capacity = iv->rl.capacity ? 2 * iv->rl.capacity : 16;
				iv->rl.runs = realloc(iv->rl.runs,
						      iv->rl.capacity * sizeof(*iv->rl.runs));
				assert_non_null(iv->rl.runs);
			}
			iv->rl.runs[iv->rl.count++] =
				(struct ntfs_run){ .vcn = v, .lcn = c, .length = n };
		} else if (in_runlist) {
			in_runlist = false;
		}
	}
	free(out);
}

static void expect_runlist(const char *img, int f, const struct ntfs_runlist *want)
{
	struct info_v iv;

	info_v(img, f, &iv);
	if (iv.data_blocks != 1)
		fail_msg("ntfsinfo -v %s: %u $DATA runlists", files[f].path, iv.data_blocks);
	if (iv.rl.count != want->count ||
	    (want->count && memcmp(iv.rl.runs, want->runs, want->count * sizeof(*want->runs)))) {
		for (size_t i = 0; i < iv.rl.count; i++)
			print_error("ntfsinfo run %zu: vcn %lld lcn %lld len %lld\n", i,
				    (long long)iv.rl.runs[i].vcn, (long long)iv.rl.runs[i].lcn,
				    (long long)iv.rl.runs[i].length);
		for (size_t i = 0; i < want->count; i++)
			print_error("expected run %zu: vcn %lld lcn %lld len %lld\n", i,
				    (long long)want->runs[i].vcn, (long long)want->runs[i].lcn,
				    (long long)want->runs[i].length);
		ntfs_runlist_free(&iv.rl);
		fail_msg("ntfsinfo -v %s: runlist differs", files[f].path);
	}
	ntfs_runlist_free(&iv.rl);
}

/* The layer, reopening the image read-only, reads `want` for f. */
static void expect_layer_reads(const char *img, int f, const uint8_t *want, size_t len)
{
	struct ntfs_volume *vol = NULL;
	struct file fl;
	uint8_t *buf = malloc(len + 1);
	ssize_t n;

	assert_non_null(buf);
	if (ntfs_volume_open(img, NTFS_OPEN_READ_ONLY, &vol) || file_open(vol, f, &fl))
		fail_msg("layer reopen: %s", ntfs_last_error());
	assert_int_equal(fl.na->data_size, len);
	n = ntfs_attr_pread(fl.na, 0, len + 1, buf);
	if (n != (ssize_t)len)
		fail_msg("layer read %s: %zd (%s)", files[f].path, n, ntfs_last_error());
	if (len)
		assert_memory_equal(buf, want, len);
	file_close(&fl);
	ntfs_volume_close(vol);
	free(buf);
}

static void expect_mount_reads(const char *img, int f, const uint8_t *want, size_t len)
{
	size_t got = 0;
	uint8_t *data = testvol_mount_read(&fx.tv, img, files[f].path, files[f].stream, &got);

	if (!data)
		fail_msg("a fresh ntfs-3g mount could not read %s", files[f].path);
	if (got != len || (len && memcmp(data, want, len))) {
		free(data);
		fail_msg("ntfs-3g mount reads %zu bytes of %s, want %zu (or different bytes)",
			 got, files[f].path, len);
	}
	free(data);
}

/* Everything ntfs-3g and the layer can say about f holding want. */
static void expect_file(int f, const uint8_t *want, size_t len, bool mount)
{
	expect_cat(fx.tv.scratch, f, want, len);
	expect_layer_reads(fx.tv.scratch, f, want, len);
	if (mount)
		expect_mount_reads(fx.tv.scratch, f, want, len);
}

static void expect_image_unchanged(void)
{
	size_t a_len, b_len;
	uint8_t *a = testvol_read_whole(fx.tv.img, &a_len);
	uint8_t *b = testvol_read_whole(fx.tv.scratch, &b_len);
	bool same = a && b && a_len == b_len && !memcmp(a, b, a_len);

	free(a);
	free(b);
	assert_true(same);
}

/* ------------------------------------------------------------------ */
/* setup                                                                */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint8_t rng_byte(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint8_t)((rng_state * 0x2545f4914f6cdd1dull) >> 56);
}

/* Mark the free clusters of every other $Bitmap byte used (and list them),
 * or free them again.  (ntfs-3g's allocator only starts a run in a wholly
 * free bitmap byte, so single free clusters would not be used at all.) */
static int checkerboard(bool on, int64_t **list, size_t *n)
{
	struct ntfs_volume *vol = NULL;
	struct bitmap bm;
	int err = ntfs_volume_open(fx.tv.img, 0, &vol);

	if (!err)
		err = bitmap_load(vol, &bm);
	if (err) {
		print_error("checkerboard: %s\n", ntfs_last_error());
		ntfs_volume_close(vol);
		return -1;
	}
	if (on) {
		*list = malloc(bm.nr_clusters * sizeof(**list));
		*n = 0;
		for (int64_t c = 8; *list && c < (int64_t)bm.nr_clusters; c += (c & 7) == 7 ? 9 : 1)
			if (!bit_used(&bm, c)) {
				bm.bits[c >> 3] |= (uint8_t)(1u << (c & 7));
				(*list)[(*n)++] = c;
			}
	} else {
		for (size_t i = 0; i < *n; i++)
			bm.bits[(*list)[i] >> 3] &= (uint8_t)~(1u << ((*list)[i] & 7));
	}
	err = *list ? ntfs_attr_pwrite_mapped(bm.na, 0, (bm.nr_clusters + 7) / 8, bm.bits)
		    : -ENOMEM;
	bitmap_free(&bm);
	ntfs_volume_close(vol);
	return err;
}

static int ntfscp(int f)
{
	return testvol_ntfscp(&fx.tv, fx.tv.img, fx.data[f], files[f].size, files[f].path,
			      files[f].stream);
}

static int write_all(const char *path, const uint8_t *data, size_t size, size_t chunk)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), ret = 0;

	if (fd < 0)
		ret = -1;
	for (size_t off = 0; !ret && off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (write(fd, data + off, n) != (ssize_t)n)
			ret = -1;
	}
	if (ret)
		testvol_log_note(&fx.tv, "writing %s: %s", path, strerror(errno));
	if (fd >= 0 && close(fd))
		ret = -1;
	return ret;
}

/* Through a read-write ntfs-3g mount: write F_ATTRLIST one cluster per
 * write(2), so that in a checkerboard each write makes ntfs-3g allocate on
 * its own and the file gets a run per free stretch (ntfscp asks for all its
 * clusters at once, which ntfs-3g's allocator cannot satisfy from a
 * checkerboard); and give F_LINKED so many names that ntfs-3g moves some
 * into extension records behind an $ATTRIBUTE_LIST while its $DATA stays
 * one extent in the base record. */
static int fuse_writes(void)
{
	char path[400], link_path[500];
	int ret = 0;

	if (testvol_mount(&fx.tv, fx.tv.img, "no_detach"))
		return -1;
	snprintf(path, sizeof(path), "%s%s", fx.tv.mnt, files[F_ATTRLIST].path);
	ret = write_all(path, fx.data[F_ATTRLIST], files[F_ATTRLIST].size, CLUSTER);
	snprintf(path, sizeof(path), "%s%s", fx.tv.mnt, files[F_LINKED].path);
	if (!ret)
		ret = write_all(path, fx.data[F_LINKED], files[F_LINKED].size,
				files[F_LINKED].size);
	for (int i = 0; !ret && i < NR_LINKS; i++) {
		snprintf(link_path, sizeof(link_path),
			 "%s/another_rather_long_name_for_the_same_file_%02d.bin", fx.tv.mnt, i);
		if (link(path, link_path)) {
			testvol_log_note(&fx.tv, "link %s: %s", link_path, strerror(errno));
			ret = -1;
		}
	}
	if (testvol_unmount(&fx.tv))
		ret = -1;
	return ret;
}

static int group_setup(void **state)
{
	static const char *const need[] = { "mkntfs", "ntfscp", "ntfscat", "ntfsinfo", "ntfsfix",
					    NULL };
	int64_t *borrowed = NULL;
	size_t nborrowed = 0;
	bool present = false;

	(void)state;
	memset(&fx, 0, sizeof(fx));
	if (testvol_create(&fx.tv, "attrrec", need))
		return -1;
	if (testvol_mkntfs(&fx.tv, IMAGE_SIZE, CLUSTER))
		SETUP_FAIL("mkntfs failed");
	for (int f = 0; f < NR_FILES; f++) {
		fx.data[f] = malloc(files[f].size);
		if (!fx.data[f])
			SETUP_FAIL("out of memory");
		for (size_t i = 0; i < files[f].size; i++)
			fx.data[f][i] = f == F_SMALL || f == F_STREAMS || f == F_ALPHA
						? (uint8_t)('a' + (i + (size_t)f) % 26)
						: rng_byte();
		if (f == F_ATTRLIST || f == F_LINKED)
			continue;
		if (ntfscp(f))
			SETUP_FAIL("ntfscp %s%s%s failed", files[f].path, files[f].stream ? ":" : "",
				   files[f].stream ? files[f].stream : "");
	}
	/* Free space in single clusters: ntfscp has to fragment the file
	 * so much that its runlist spills into extension records. */
	if (checkerboard(true, &borrowed, &nborrowed))
		SETUP_FAIL("cannot checkerboard $Bitmap");
	if (fuse_writes()) {
		free(borrowed);
		SETUP_FAIL("cannot write %s and %s through ntfs-3g", files[F_ATTRLIST].path,
			   files[F_LINKED].path);
	}
	if (checkerboard(false, &borrowed, &nborrowed)) {
		free(borrowed);
		SETUP_FAIL("cannot give the borrowed clusters back");
	}
	free(borrowed);
	if (oracle_has_attr(fx.tv.img, files[F_ATTRLIST].path, "$ATTRIBUTE_LIST", &present) ||
	    !present)
		SETUP_FAIL("%s did not get an $ATTRIBUTE_LIST", files[F_ATTRLIST].path);
	present = false;
	if (oracle_has_attr(fx.tv.img, files[F_LINKED].path, "$ATTRIBUTE_LIST", &present) ||
	    !present)
		SETUP_FAIL("%s did not get an $ATTRIBUTE_LIST", files[F_LINKED].path);
	{
		const char *argv[] = { "ntfsfix", "-n", fx.tv.img, NULL };
		int status = -1;

		if (oracle_run(argv, NULL, NULL, &status) || status)
			SETUP_FAIL("ntfsfix -n fails on the pristine image");
	}
	return 0;
fail:
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
/* the tests                                                            */
/* ------------------------------------------------------------------ */

#define EXPECT_OK(call)                                                            \
	do {                                                                       \
		int e_ = (call);                                                   \
		if (e_)                                                            \
			fail_msg("%s: %d (%s)", #call, e_, ntfs_last_error());     \
	} while (0)

/* Shrink a contiguous file to 100 clusters, freeing exactly the clusters
 * that were cut off. */
static void test_shrink(void **state)
{
	const uint64_t new_size = 100 * CLUSTER - 1000;
	struct file fl = open_rw(F_SHRINK);
	struct ntfs_runlist cut = { 0 }, expect = { 0 };
	struct bitmap bm;
	int64_t end = ntfs_rl_end_vcn(&fl.na->rl);

	(void)state;
	assert_int_equal(end, (files[F_SHRINK].size + CLUSTER - 1) / CLUSTER);
	EXPECT_OK(ntfs_rl_extract(&fl.na->rl, 100, end - 100, &cut));
	assert_int_equal(ntfs_rl_allocated(&cut, 100, end), end - 100);
	EXPECT_OK(ntfs_rl_truncate(&fl.na->rl, 100));
	fl.na->data_size = fl.na->initialized_size = new_size;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	assert_int_equal(fl.na->allocated_size, 100 * CLUSTER);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_SHRINK, false, false, new_size, 100 * CLUSTER, new_size, 0);
	expect_runlist(fx.tv.scratch, F_SHRINK, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SHRINK, fx.data[F_SHRINK], new_size, true);
	ntfs_runlist_free(&cut);
	ntfs_runlist_free(&expect);
}

/* Down to nothing: highest_vcn -1, a lone terminator, every size 0. */
static void test_shrink_to_empty(void **state)
{
	struct file fl = open_rw(F_EMPTY);
	struct ntfs_runlist cut = { 0 }, none = { 0 };
	struct bitmap bm;

	(void)state;
	EXPECT_OK(ntfs_rl_extract(&fl.na->rl, 0, INT64_MAX, &cut));
	EXPECT_OK(ntfs_rl_truncate(&fl.na->rl, 0));
	fl.na->data_size = fl.na->initialized_size = 0;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_EMPTY, false, false, 0, 0, 0, 0);
	expect_runlist(fx.tv.scratch, F_EMPTY, &none);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_EMPTY, NULL, 0, true);
	ntfs_runlist_free(&cut);
}

/* Move a contiguous file's data into 16 scattered runs in reverse order
 * (negative lcn deltas): ntfs-3g must follow the new runlist exactly. */
static void test_relocate_fragmented(void **state)
{
	const size_t size = files[F_FRAG].size;
	struct file fl = open_rw(F_FRAG);
	struct ntfs_runlist old = { 0 }, expect = { 0 };
	uint8_t *data = malloc(size);
	struct bitmap bm;
	int64_t base;

	(void)state;
	assert_non_null(data);
	assert_int_equal(ntfs_attr_pread(fl.na, 0, size, data), (ssize_t)size);
	assert_memory_equal(data, fx.data[F_FRAG], size);
	EXPECT_OK(ntfs_rl_copy(&old, &fl.na->rl));
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	/* 128 free clusters from the middle of the volume on. */
	base = bitmap_find_free(&bm, (int64_t)bm.nr_clusters / 2, 128);
	assert_true(base > 0);
	for (int k = 0; k < 16; k++) {
		int64_t lcn = base + (15 - k) * 8;

		EXPECT_OK(ntfs_rl_replace(&fl.na->rl, 4 * k, 4, lcn));
		EXPECT_OK(bitmap_mark(&bm, lcn, 4, true));
	}
	assert_int_equal(fl.na->rl.count, 16);
	EXPECT_OK(ntfs_attr_pwrite_mapped(fl.na, 0, size, data));
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	bitmap_mark_runs(&bm, &old, false);
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_FRAG, false, false, size, size, size, 0);
	expect_runlist(fx.tv.scratch, F_FRAG, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_FRAG, fx.data[F_FRAG], size, true);
	ntfs_runlist_free(&old);
	ntfs_runlist_free(&expect);
	free(data);
}

/* More pairs than the record holds: the file's 257 clusters relocated one
 * by one into free clusters no two of which touch.  The runlist spills into
 * extension records behind a new $ATTRIBUTE_LIST (test_attr_list.c checks
 * those in depth); ntfs-3g reads the file through it. */
static void test_record_full_spills(void **state)
{
	const size_t size = files[F_SHRINK].size;
	struct file fl = open_rw(F_SHRINK);
	struct ntfs_runlist old = { 0 };
	int64_t end = ntfs_rl_end_vcn(&fl.na->rl), lcn = 100;
	uint8_t *data = malloc(size);
	struct bitmap bm;
	bool present = false;

	(void)state;
	assert_non_null(data);
	assert_null(fl.ni->attr_list);
	assert_int_equal(ntfs_attr_pread(fl.na, 0, size, data), (ssize_t)size);
	EXPECT_OK(ntfs_rl_copy(&old, &fl.na->rl));
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	for (int64_t v = 0; v < end; v++) {
		lcn = bitmap_find_free(&bm, lcn + 2, 1);
		assert_true(lcn > 0);
		EXPECT_OK(ntfs_rl_replace(&fl.na->rl, v, 1, lcn));
		EXPECT_OK(bitmap_mark(&bm, lcn, 1, true));
	}
	assert_int_equal(fl.na->rl.count, end);
	EXPECT_OK(ntfs_attr_pwrite_mapped(fl.na, 0, size, data));
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	assert_non_null(fl.ni->attr_list);
	bitmap_mark_runs(&bm, &old, false);
	bitmap_free(&bm);
	close_rw(&fl);

	EXPECT_OK(oracle_has_attr(fx.tv.scratch, files[F_SHRINK].path, "$ATTRIBUTE_LIST",
				  &present));
	assert_true(present);
	expect_info(fx.tv.scratch, F_SHRINK, false, false, size, (uint64_t)end * CLUSTER, size, 0);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SHRINK, fx.data[F_SHRINK], size, true);
	ntfs_runlist_free(&old);
	free(data);
}

/* Refusals that must not write: inconsistent sizes, a runlist outside the
 * volume, a read-only volume, a resident attribute. */
static void test_invalid_refused(void **state)
{
	struct file fl = open_rw(F_FRAG), small;
	struct ntfs_volume *ro = NULL;
	int64_t end = ntfs_rl_end_vcn(&fl.na->rl);

	(void)state;
	fl.na->data_size = (uint64_t)end * CLUSTER + 1;
	assert_int_equal(ntfs_attr_update_mapping_pairs(fl.na), -EINVAL);
	fl.na->data_size = files[F_FRAG].size;
	fl.na->initialized_size = fl.na->data_size + 1;
	assert_int_equal(ntfs_attr_update_mapping_pairs(fl.na), -EINVAL);
	fl.na->initialized_size = fl.na->data_size;
	EXPECT_OK(ntfs_rl_replace(&fl.na->rl, end - 1, 1, (int64_t)fl.vol->geo.nr_clusters));
	assert_int_equal(ntfs_attr_update_mapping_pairs(fl.na), -EINVAL);
	assert_non_null(strstr(ntfs_last_error(), "invalid runlist"));
	EXPECT_OK(file_open(fl.vol, F_SMALL, &small));
	assert_int_equal(ntfs_attr_update_mapping_pairs(small.na), -EINVAL);
	file_close(&small);
	close_rw(&fl);

	EXPECT_OK(ntfs_volume_open(fx.tv.scratch, NTFS_OPEN_READ_ONLY, &ro));
	EXPECT_OK(file_open(ro, F_FRAG, &fl));
	assert_int_equal(ntfs_attr_update_mapping_pairs(fl.na), -EROFS);
	file_close(&fl);
	ntfs_volume_close(ro);
	expect_image_unchanged();
}

/* Write buf (len bytes, zero-padded to whole clusters) at lcn. */
static void write_clusters(struct ntfs_volume *vol, int64_t lcn, const void *buf, size_t len)
{
	size_t padded = (len + CLUSTER - 1) / CLUSTER * CLUSTER;
	uint8_t *p = calloc(1, padded ? padded : 1);

	assert_non_null(p);
	memcpy(p, buf, len);
	EXPECT_OK(ntfs_device_pwrite(vol->dev, p, padded, (uint64_t)lcn * CLUSTER));
	free(p);
}

/* A resident file becomes non-resident in a cluster of its own; then, in
 * the same session, it grows by a second cluster through
 * ntfs_attr_update_mapping_pairs. */
static void test_make_nonresident(void **state)
{
	const size_t len = files[F_SMALL].size, grown = CLUSTER + 500;
	struct file fl = open_rw(F_SMALL);
	struct ntfs_runlist rl = { 0 }, expect = { 0 };
	uint8_t *want = calloc(1, 2 * CLUSTER);
	struct bitmap bm;
	int64_t lcn;

	(void)state;
	assert_non_null(want);
	assert_true(fl.na->resident);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	lcn = bitmap_find_free(&bm, (int64_t)bm.nr_clusters / 2, 3);
	assert_true(lcn > 0);
	write_clusters(fl.vol, lcn, fx.data[F_SMALL], len);
	EXPECT_OK(bitmap_mark(&bm, lcn, 1, true));
	EXPECT_OK(ntfs_rl_replace(&rl, 0, 1, lcn));
	/* The allocated size must match the runlist. */
	assert_int_equal(ntfs_attr_make_nonresident(fl.na, &rl, 2 * CLUSTER), -EINVAL);
	EXPECT_OK(ntfs_attr_make_nonresident(fl.na, &rl, CLUSTER));
	assert_false(fl.na->resident);
	assert_null(fl.na->value);
	assert_int_equal(fl.na->data_size, len);
	assert_int_equal(fl.na->initialized_size, len);
	assert_int_equal(fl.na->allocated_size, CLUSTER);
	assert_int_equal(ntfs_rl_vcn_to_lcn(&fl.na->rl, 0, NULL), lcn);
	assert_int_equal(ntfs_attr_make_nonresident(fl.na, &rl, CLUSTER), -EINVAL);
	/* Reading through the converted attribute works at once. */
	{
		uint8_t buf[200];

		assert_int_equal(ntfs_attr_pread(fl.na, 0, sizeof(buf), buf), (ssize_t)len);
		assert_memory_equal(buf, fx.data[F_SMALL], len);
	}
	close_rw(&fl);
	bitmap_free(&bm);

	expect_info(fx.tv.scratch, F_SMALL, false, false, len, CLUSTER, len, 0);
	EXPECT_OK(ntfs_rl_copy(&expect, &rl));
	expect_runlist(fx.tv.scratch, F_SMALL, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SMALL, fx.data[F_SMALL], len, true);

	/* Grow it: a second cluster, right after the first (one run). */
	fl = open_rw(F_SMALL);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	for (size_t i = 0; i < grown; i++)
		want[i] = i < len ? fx.data[F_SMALL][i] : (uint8_t)(i * 7);
	EXPECT_OK(ntfs_rl_replace(&fl.na->rl, 1, 1, lcn + 1));
	EXPECT_OK(bitmap_mark(&bm, lcn + 1, 1, true));
	EXPECT_OK(ntfs_attr_pwrite_mapped(fl.na, 0, 2 * CLUSTER, want));
	fl.na->data_size = fl.na->initialized_size = grown;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	assert_int_equal(fl.na->rl.count, 1);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	bitmap_free(&bm);
	close_rw(&fl);
	expect_info(fx.tv.scratch, F_SMALL, false, false, grown, 2 * CLUSTER, grown, 0);
	expect_runlist(fx.tv.scratch, F_SMALL, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SMALL, want, grown, true);

	/* ntfs-3g appends to the file we converted and grew. */
	{
		uint8_t *more = malloc(grown + 3 * CLUSTER);

		assert_non_null(more);
		memcpy(more, want, grown);
		for (size_t i = grown; i < grown + 3 * CLUSTER; i++)
			more[i] = (uint8_t)(i * 13);
		if (testvol_mount_write(&fx.tv, fx.tv.scratch, files[F_SMALL].path, grown,
					more + grown, 3 * CLUSTER))
			fail_msg("ntfs-3g could not append to the converted file");
		testvol_expect_ntfsfix_clean(fx.tv.scratch);
		expect_file(F_SMALL, more, grown + 3 * CLUSTER, false);
		free(more);
	}
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&expect);
	free(want);
}

/* A resident named stream becomes non-resident: the name survives, the
 * other streams are untouched. */
static void test_make_nonresident_named(void **state)
{
	const size_t len = files[F_ALPHA].size;
	struct file fl = open_rw(F_ALPHA);
	struct ntfs_runlist rl = { 0 };
	struct bitmap bm;
	int64_t lcn;

	(void)state;
	assert_true(fl.na->resident);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	lcn = bitmap_find_free(&bm, 100, 1);
	assert_true(lcn > 0);
	write_clusters(fl.vol, lcn, fx.data[F_ALPHA], len);
	EXPECT_OK(bitmap_mark(&bm, lcn, 1, true));
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_replace(&rl, 0, 1, lcn));
	EXPECT_OK(ntfs_attr_make_nonresident(fl.na, &rl, CLUSTER));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_ALPHA, false, false, len, CLUSTER, len, 0);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_ALPHA, fx.data[F_ALPHA], len, true);
	expect_cat(fx.tv.scratch, F_STREAMS, fx.data[F_STREAMS], files[F_STREAMS].size);
	expect_cat(fx.tv.scratch, F_BETA, fx.data[F_BETA], files[F_BETA].size);
	ntfs_runlist_free(&rl);
}

/* Punch a hole: the attribute becomes sparse (header grows to 72 bytes),
 * the file is flagged sparse, the clusters are freed, ntfs-3g reads
 * zeroes there.  Then a hole at the start and growth by a hole at the end. */
static void test_sparse_holes(void **state)
{
	const size_t size = files[F_SPARSE].size, grown = size + 16 * CLUSTER + 123;
	struct file fl = open_rw(F_SPARSE);
	struct ntfs_runlist cut = { 0 }, expect = { 0 };
	uint8_t *want = calloc(1, grown);
	struct info_v iv;
	struct bitmap bm;

	(void)state;
	assert_non_null(want);
	memcpy(want, fx.data[F_SPARSE], size);
	memset(want + 32 * CLUSTER, 0, 16 * CLUSTER);
	EXPECT_OK(ntfs_rl_extract(&fl.na->rl, 32, 16, &cut));
	EXPECT_OK(ntfs_rl_replace(&fl.na->rl, 32, 16, LCN_HOLE));
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	assert_true(fl.na->flags & ATTR_IS_SPARSE);
	assert_int_equal(fl.na->compressed_size, 112 * CLUSTER);
	assert_true(fl.ni->file_attributes & FILE_ATTR_SPARSE_FILE);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_SPARSE, false, true, size, size, size, 112 * CLUSTER);
	expect_runlist(fx.tv.scratch, F_SPARSE, &expect);
	info_v(fx.tv.scratch, F_SPARSE, &iv);
	assert_true(iv.si_attrs & FILE_ATTR_SPARSE_FILE);
	assert_true(iv.fn_attrs & FILE_ATTR_SPARSE_FILE);
	assert_int_equal(iv.compression_unit, 4);   /* as ntfs-3g makes sparse files */
	ntfs_runlist_free(&iv.rl);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SPARSE, want, size, true);

	/* Already sparse: a hole first, and 16 more clusters of hole at the end. */
	fl = open_rw(F_SPARSE);
	ntfs_runlist_free(&cut);
	EXPECT_OK(ntfs_rl_extract(&fl.na->rl, 0, 8, &cut));
	EXPECT_OK(ntfs_rl_replace(&fl.na->rl, 0, 8, LCN_HOLE));
	EXPECT_OK(ntfs_rl_replace(&fl.na->rl, 128, 17, LCN_HOLE));
	memset(want, 0, 8 * CLUSTER);
	fl.na->data_size = grown;   /* initialized_size stays: zeroes past it */
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	assert_int_equal(fl.na->compressed_size, 104 * CLUSTER);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	assert_int_equal(expect.runs[0].lcn, LCN_HOLE);
	assert_int_equal(expect.runs[expect.count - 1].lcn, LCN_HOLE);
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_SPARSE, false, true, grown, 145 * CLUSTER, size,
		    104 * CLUSTER);
	expect_runlist(fx.tv.scratch, F_SPARSE, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SPARSE, want, grown, true);

	/* ntfs-3g, writing into the holes we made, takes over from there. */
	memset(want + 40 * CLUSTER - 100, 0x5a, 200);
	memset(want + 2 * CLUSTER, 0xa5, 300);
	if (testvol_mount_write(&fx.tv, fx.tv.scratch, files[F_SPARSE].path, 40 * CLUSTER - 100,
				want + 40 * CLUSTER - 100, 200) ||
	    testvol_mount_write(&fx.tv, fx.tv.scratch, files[F_SPARSE].path, 2 * CLUSTER,
				want + 2 * CLUSTER, 300))
		fail_msg("ntfs-3g could not write into the holes");
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_SPARSE, want, grown, false);
	ntfs_runlist_free(&cut);
	ntfs_runlist_free(&expect);
	free(want);
}

/* A named non-resident stream goes sparse: its name moves from offset 64
 * to 72 with the header; the other streams are untouched. */
static void test_sparse_named_stream(void **state)
{
	const size_t size = files[F_BETA].size;
	struct file fl = open_rw(F_BETA);
	struct ntfs_runlist cut = { 0 }, expect = { 0 };
	uint8_t *want = malloc(size);
	struct bitmap bm;

	(void)state;
	assert_non_null(want);
	assert_false(fl.na->resident);
	memcpy(want, fx.data[F_BETA], size);
	memset(want + 5 * CLUSTER, 0, 5 * CLUSTER);
	EXPECT_OK(ntfs_rl_extract(&fl.na->rl, 5, 5, &cut));
	EXPECT_OK(ntfs_rl_replace(&fl.na->rl, 5, 5, LCN_HOLE));
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_BETA, false, true, size, 25 * CLUSTER, size, 20 * CLUSTER);
	expect_runlist(fx.tv.scratch, F_BETA, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_BETA, want, size, true);
	expect_cat(fx.tv.scratch, F_STREAMS, fx.data[F_STREAMS], files[F_STREAMS].size);
	expect_cat(fx.tv.scratch, F_ALPHA, fx.data[F_ALPHA], files[F_ALPHA].size);
	ntfs_runlist_free(&cut);
	ntfs_runlist_free(&expect);
	free(want);
}

/* An attribute ntfs-3g split over several extents is rewritten: cut to
 * its first ten clusters it is one extent again; the extension records
 * that held the rest are freed, the rest of ntfs-3g's layout (the moved
 * $FILE_NAME, the list itself) stays valid. */
static void test_attribute_list_rewritten(void **state)
{
	struct file fl = open_rw(F_ATTRLIST);
	struct ntfs_runlist old = { 0 }, expect = { 0 };
	struct bitmap bm;

	(void)state;
	assert_non_null(fl.ni->attr_list);
	expect_cat(fx.tv.scratch, F_ATTRLIST, fx.data[F_ATTRLIST], files[F_ATTRLIST].size);
	EXPECT_OK(ntfs_rl_copy(&old, &fl.na->rl));
	EXPECT_OK(ntfs_rl_truncate(&fl.na->rl, 10));
	fl.na->data_size = fl.na->initialized_size = 10 * CLUSTER;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	{
		struct ntfs_runlist cut = { 0 };

		EXPECT_OK(ntfs_rl_extract(&old, 10, ntfs_rl_end_vcn(&old) - 10, &cut));
		bitmap_mark_runs(&bm, &cut, false);
		ntfs_runlist_free(&cut);
	}
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_ATTRLIST, false, false, 10 * CLUSTER, 10 * CLUSTER,
		    10 * CLUSTER, 0);
	expect_runlist(fx.tv.scratch, F_ATTRLIST, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_ATTRLIST, fx.data[F_ATTRLIST], 10 * CLUSTER, true);
	ntfs_runlist_free(&old);
	ntfs_runlist_free(&expect);
}

/* An inode with an attribute list whose $DATA is one extent (in the base
 * record, which ntfs-3g filled with names): holes in every other cluster
 * and 300 more one-cluster runs spill the runlist into extension records
 * added to ntfs-3g's list; then shrinking brings it back to one extent.
 * Every name of the file reads the new contents each time. */
static void test_attribute_list_single_extent(void **state)
{
	struct file fl = open_rw(F_LINKED);
	struct ntfs_runlist cut = { 0 }, expect = { 0 };
	const uint64_t new_size = 4 * CLUSTER - 10;
	int64_t end = ntfs_rl_end_vcn(&fl.na->rl), lcn;
	const int64_t extra = 300;
	const size_t grown = (size_t)(end + 2 * extra) * CLUSTER;
	uint8_t *want = calloc(1, grown);
	struct bitmap bm;

	(void)state;
	assert_non_null(want);
	assert_non_null(fl.ni->attr_list);
	assert_int_equal(end, 16);
	memcpy(want, fx.data[F_LINKED], files[F_LINKED].size);
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	for (int64_t v = 1; v < end; v += 2) {
		EXPECT_OK(ntfs_rl_extract(&fl.na->rl, v, 1, &cut));
		EXPECT_OK(ntfs_rl_replace(&fl.na->rl, v, 1, LCN_HOLE));
		memset(want + v * CLUSTER, 0, CLUSTER);
	}
	/* 300 clusters, each after a hole of one, in every third free cluster. */
	lcn = 100;
	for (int64_t k = 0; k < extra; k++) {
		lcn = bitmap_find_free(&bm, lcn + 2, 1);
		assert_true(lcn > 0);
		EXPECT_OK(bitmap_mark(&bm, lcn, 1, true));
		EXPECT_OK(ntfs_rl_replace(&fl.na->rl, end + 2 * k + 1, 1, lcn));
		for (size_t i = 0; i < CLUSTER; i++)
			want[(end + 2 * k + 1) * CLUSTER + i] = (uint8_t)(k * 31 + i);
	}
	for (int64_t k = 0; k < extra; k++)
		EXPECT_OK(ntfs_attr_pwrite_mapped(fl.na, (uint64_t)(end + 2 * k + 1) * CLUSTER,
						  CLUSTER, want + (end + 2 * k + 1) * CLUSTER));
	fl.na->data_size = fl.na->initialized_size = grown - 100;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	assert_true(fl.na->flags & ATTR_IS_SPARSE);
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_LINKED, false, true, grown - 100, grown, grown - 100,
		    (uint64_t)(end / 2 + extra) * CLUSTER);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_LINKED, want, grown - 100, true);
	ntfs_runlist_free(&cut);

	fl = open_rw(F_LINKED);
	EXPECT_OK(ntfs_rl_extract(&fl.na->rl, 4, ntfs_rl_end_vcn(&fl.na->rl) - 4, &cut));
	EXPECT_OK(ntfs_rl_truncate(&fl.na->rl, 4));
	fl.na->data_size = fl.na->initialized_size = new_size;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl.na));
	EXPECT_OK(bitmap_load(fl.vol, &bm));
	bitmap_mark_runs(&bm, &cut, false);
	bitmap_free(&bm);
	EXPECT_OK(ntfs_rl_copy(&expect, &fl.na->rl));
	close_rw(&fl);

	expect_info(fx.tv.scratch, F_LINKED, false, true, new_size, 4 * CLUSTER, new_size,
		    2 * CLUSTER);
	expect_runlist(fx.tv.scratch, F_LINKED, &expect);
	testvol_expect_ntfsfix_clean(fx.tv.scratch);
	expect_file(F_LINKED, want, new_size, true);
	{
		char path[128], *data = NULL;
		size_t len = 0;

		snprintf(path, sizeof(path), "/another_rather_long_name_for_the_same_file_%02d.bin",
			 NR_LINKS - 1);
		EXPECT_OK(oracle_cat(fx.tv.scratch, path, NULL, &data, &len));
		assert_int_equal(len, new_size);
		assert_memory_equal(data, want, new_size);
		free(data);
	}
	ntfs_runlist_free(&cut);
	ntfs_runlist_free(&expect);
	free(want);
}

int main(void)
{
	const char *v = getenv("NTFSD_TEST_TIMEOUT");

	if (v && atoi(v) > 0)
		test_timeout = (unsigned)atoi(v);
	testvol_catch_timeout(&fx.tv, "test_attr_record: a test did not finish in time\n");
	testvol_catch_abort(&fx.tv);
#define T(fn) cmocka_unit_test_setup_teardown(fn, scratch_setup, scratch_teardown)
	const struct CMUnitTest tests[] = {
		T(test_shrink),
		T(test_shrink_to_empty),
		T(test_relocate_fragmented),
		T(test_record_full_spills),
		T(test_invalid_refused),
		T(test_make_nonresident),
		T(test_make_nonresident_named),
		T(test_sparse_holes),
		T(test_sparse_named_stream),
		T(test_attribute_list_rewritten),
		T(test_attribute_list_single_extent),
	};
#undef T
	alarm(600);  /* the group setup too */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
