/*
 * test_attr_list.c — non-resident attributes spread over extension records
 * behind an $ATTRIBUTE_LIST (ntfs_attr_update_mapping_pairs with runlists
 * that do not fit in one MFT record), judged by ntfs-3g.
 *
 * The group setup makes a pristine image with mkntfs (64 MiB, 512-byte
 * clusters, so that a few MiB of data make thousands of runs) and ntfscp:
 * two small files to fragment, a file with a small named stream, and two
 * files that ntfs-3g itself wrote a cluster at a time, alternately, through
 * a read-write mount until one of them got an $ATTRIBUTE_LIST.  Each test
 * works on a fresh copy.
 *
 * Fragmenting: the layer's own allocator gives two files one cluster each
 * in turn, so each gets a run per cluster; the test writes the new clusters'
 * data through the runlist and calls ntfs_attr_update_mapping_pairs every so
 * often, so the attribute crosses from one record to an attribute list, to
 * more and more extension records (and, for a stream whose long name makes
 * list entries big, to a non-resident attribute list).  Shrinking truncates
 * the runlist, updates, then frees the cut clusters.  One test applies a
 * fixed random sequence of appends, holes, fills, relocations and cuts.
 * The cases: growing into a list; shrinking back (records freed, list
 * removed, down to nothing); rewriting a file ntfs-3g split itself; a
 * sparse named stream next to another stream; the list going non-resident
 * and coming back; the random sequence; no MFT record left (ENOSPC,
 * nothing written, nothing leaked); and the list codec alone.
 *
 * The truth comes from ntfs-3g: ntfscat gives the bytes and the attribute
 * list's raw value (-a 0x20); `ntfsinfo -v -F` gives every extent (lowest
 * and highest vcn, the record holding it, its runs), whose runs together
 * must be exactly the layer's runlist; `ntfscat '$MFT'` gives each record's
 * header (in use, sequence number, base reference) to check the list's MFT
 * references against; `ntfsfix -n` must pass; a fresh read-only mount reads
 * the bytes and its statfs counts free MFT records (f_ffree) and clusters;
 * a read-write mount appends to what we wrote.  The layer, reopening the
 * image read-only, must read the same bytes, and the inode the update ran
 * on must see the new layout without being reopened.
 *
 * Every image lives in a mkdtemp() directory that the group teardown (or a
 * signal handler on a hang or an abort) removes; mounts are unmounted by the
 * helper that made them before anything is asserted about what they read.
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
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "attr_list.h"
#include "attr_record.h"
#include "attr_write.h"
#include "attrib.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "layout.h"
#include "lcnalloc.h"
#include "le.h"
#include "mft.h"
#include "mftalloc.h"
#include "oracle.h"
#include "testvol.h"
#include "runlist.h"
#include "unistr.h"
#include "volume.h"

#define IMAGE_SIZE (64u << 20)
#define CLUSTER 512u
#define RECORD 1024u

/* Files of the pristine image. */
enum {
	F_A,            /* 8 KiB, fragmented by the tests */
	F_B,            /* 8 KiB, its partner */
	F_S,            /* 100 bytes + stream "st" of 8 KiB + stream "zz" of 50 bytes */
	F_ST,
	F_ZZ,
	F_N3A,          /* written by ntfs-3g into an $ATTRIBUTE_LIST */
	F_N3B,
	F_L,            /* 100 bytes + a stream with a 60-character name, 8 KiB */
	F_LONG,
	NR_FILES
};

static const struct {
	const char *path, *stream;
	uint32_t seed;
} files[NR_FILES] = {
	[F_A] = { "/a.bin", NULL, 1 },
	[F_B] = { "/b.bin", NULL, 2 },
	[F_S] = { "/s.bin", NULL, 3 },
	[F_ST] = { "/s.bin", "st", 4 },
	[F_ZZ] = { "/s.bin", "zz", 9 },
	[F_N3A] = { "/n3a.bin", NULL, 5 },
	[F_N3B] = { "/n3b.bin", NULL, 6 },
	[F_L] = { "/l.bin", NULL, 7 },
	[F_LONG] = { "/l.bin", "a_stream_with_a_rather_long_name_that_fills_list_entries_60", 8 },
};

#define SMALL_SIZE 8192u
#define N3_CLUSTERS 3000u

static struct testvol tv;

static unsigned test_timeout = 300;

/* The bytes file f holds at offset off (what the tests write and expect). */
static uint8_t gen(int f, uint64_t off)
{
	uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)files[f].seed << 56;

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return (uint8_t)x;
}

static uint8_t *gen_buf(int f, uint64_t off, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);

	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = gen(f, off + i);
	return b;
}

/* ------------------------------------------------------------------ */
/* the layer                                                            */
/* ------------------------------------------------------------------ */

#define EXPECT_OK(call)                                                            \
	do {                                                                       \
		int e_ = (call);                                                   \
		if (e_)                                                            \
			fail_msg("%s: %d (%s)", #call, e_, ntfs_last_error());     \
	} while (0)

struct file {
	int f;
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
	out->f = f;
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

static void file_close(struct file *fl)
{
	ntfs_attr_close(fl->na);
	ntfs_inode_close(fl->ni);
	fl->na = NULL;
	fl->ni = NULL;
}

static struct ntfs_volume *open_rw(void)
{
	struct ntfs_volume *vol = NULL;

	if (ntfs_volume_open(tv.scratch, 0, &vol))
		fail_msg("cannot open the scratch image read-write: %s", ntfs_last_error());
	return vol;
}

static struct file open_file(struct ntfs_volume *vol, int f)
{
	struct file fl;

	if (file_open(vol, f, &fl))
		fail_msg("%s: %s", files[f].path, ntfs_last_error());
	return fl;
}

/* Write the expected bytes of [from, to) through the runlist. */
static void write_range(struct file *fl, uint64_t from, uint64_t to)
{
	uint8_t *b;

	if (to <= from)
		return;
	b = gen_buf(fl->f, from, (size_t)(to - from));
	EXPECT_OK(ntfs_attr_pwrite_mapped(fl->na, from, (size_t)(to - from), b));
	free(b);
}

/* Append `clusters` one-cluster runs to each file in turn (so no two runs
 * of one file touch), writing their data and updating the mapping pairs
 * every `every` clusters; the files' sizes end `tail` bytes short of their
 * last cluster. */
static void grow_interleaved(struct ntfs_volume *vol, struct file *fl, size_t nfl,
			     int64_t clusters, int64_t every, uint32_t tail)
{
	for (int64_t i = 0; i < clusters; i++) {
		for (size_t k = 0; k < nfl; k++) {
			size_t runs = fl[k].na->rl.count;

			EXPECT_OK(ntfs_cluster_alloc(vol, 1, -1, &fl[k].na->rl));
			/* (the first may continue the file's last run) */
			if (i)
				assert_int_equal(fl[k].na->rl.count, runs + 1);
		}
		if ((i + 1) % every && i + 1 != clusters)
			continue;
		for (size_t k = 0; k < nfl; k++) {
			struct ntfs_attr *na = fl[k].na;
			uint64_t size = ((uint64_t)ntfs_rl_end_vcn(&na->rl) * CLUSTER) - tail;

			write_range(&fl[k], na->data_size, ((size + CLUSTER - 1) / CLUSTER) * CLUSTER);
			na->data_size = na->initialized_size = size;
			EXPECT_OK(ntfs_attr_update_mapping_pairs(na));
			assert_int_equal(na->allocated_size, ntfs_rl_end_vcn(&na->rl) * CLUSTER);
		}
	}
}

/* The inode the update ran on sees the new layout: a fresh ntfs_attr_open
 * on it gives the same runlist, sizes and bytes. */
static void expect_inode_consistent(struct file *fl)
{
	struct ntfs_attr *again = NULL;
	ntfschar *uname = NULL;
	uint32_t ulen = 0;
	uint64_t size = fl->na->data_size;
	uint8_t *buf = malloc(size + 1), *want = gen_buf(fl->f, 0, size);

	assert_non_null(buf);
	if (files[fl->f].stream)
		EXPECT_OK(ntfs_utf8_to_utf16(files[fl->f].stream, strlen(files[fl->f].stream),
					     &uname, &ulen));
	EXPECT_OK(ntfs_attr_open(fl->ni, AT_DATA, uname, ulen, &again));
	free(uname);
	assert_int_equal(again->data_size, fl->na->data_size);
	assert_int_equal(again->allocated_size, fl->na->allocated_size);
	assert_int_equal(again->flags, fl->na->flags);
	assert_int_equal(again->rl.count, fl->na->rl.count);
	assert_memory_equal(again->rl.runs, fl->na->rl.runs,
			    fl->na->rl.count * sizeof(*fl->na->rl.runs));
	assert_int_equal(ntfs_attr_pread(again, 0, size + 1, buf), (ssize_t)size);
	assert_memory_equal(buf, want, size);
	ntfs_attr_close(again);
	free(buf);
	free(want);
}

static int count_data_extents(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	(void)mft_no;
	if (le32(a->type) == AT_DATA && !a->name_length)
		++*(size_t *)ctx;
	return 0;
}

/* ------------------------------------------------------------------ */
/* what ntfs-3g says                                                    */
/* ------------------------------------------------------------------ */

/* What a file should hold: its pattern, zeroes where holes were punched,
 * and what ntfs-3g appended (another file's pattern). */
static uint8_t *want_buf(int f, uint64_t size)
{
	return gen_buf(f, 0, (size_t)size);
}

static void expect_cat(int f, const uint8_t *want, uint64_t size)
{
	char *data = NULL;
	size_t got = 0, i = 0;
	int err = oracle_cat(tv.scratch, files[f].path, files[f].stream, &data, &got);

	if (err)
		fail_msg("ntfscat %s: %d (%s)", files[f].path, err, oracle_last_stderr());
	while (i < got && i < size && (uint8_t)data[i] == want[i])
		i++;
	free(data);
	if (got != size || i != size)
		fail_msg("ntfscat %s: %zu bytes, want %llu; first difference at byte %zu",
			 files[f].path, got, (unsigned long long)size, i);
}

/* The layer, reopening the image read-only, reads the expected bytes. */
static void expect_layer_reads(int f, const uint8_t *want, uint64_t size)
{
	struct ntfs_volume *vol = NULL;
	struct file fl;
	uint8_t *buf = malloc(size + 1);
	ssize_t n;

	assert_non_null(buf);
	if (ntfs_volume_open(tv.scratch, NTFS_OPEN_READ_ONLY, &vol) || file_open(vol, f, &fl))
		fail_msg("layer reopen: %s", ntfs_last_error());
	assert_int_equal(fl.na->data_size, size);
	n = ntfs_attr_pread(fl.na, 0, size + 1, buf);
	file_close(&fl);
	ntfs_volume_close(vol);
	if (n != (ssize_t)size)
		fail_msg("layer read %s: %zd (%s)", files[f].path, n, ntfs_last_error());
	if (size && memcmp(buf, want, size))
		fail_msg("layer read %s: wrong bytes", files[f].path);
	free(buf);
}

/* A fresh read-only ntfs-3g mount reads want[k] (sizes[k] bytes) from
 * files fs[k]; *st (if not NULL) gets its statfs. */
static void expect_mount_reads(const int *fs, uint8_t *const *want, const uint64_t *sizes,
			       size_t n, struct statvfs *st)
{
	char p[700];
	bool ok = true;

	if (testvol_mount(&tv, tv.scratch, "ro,no_detach,streams_interface=windows")) {
		testvol_print_log_tail(&tv);
		fail_msg("ntfs-3g cannot mount the image read-only");
	}
	if (st && statvfs(tv.mnt, st)) {
		testvol_log_note(&tv, "statvfs %s: %s", tv.mnt, strerror(errno));
		ok = false;
	}
	for (size_t k = 0; ok && k < n; k++) {
		size_t len = 0;
		uint8_t *data;

		snprintf(p, sizeof(p), "%s%s%s%s", tv.mnt, files[fs[k]].path,
			 files[fs[k]].stream ? ":" : "",
			 files[fs[k]].stream ? files[fs[k]].stream : "");
		data = testvol_read_whole(p, &len);
		if (!data || len != sizes[k] || (len && memcmp(data, want[k], len))) {
			testvol_log_note(&tv, "mount read %s: %zu bytes, want %llu (%s)", p, len,
					 (unsigned long long)sizes[k],
					 data ? "or wrong bytes" : strerror(errno));
			ok = false;
		}
		free(data);
	}
	if (testvol_unmount(&tv))
		ok = false;
	if (!ok) {
		testvol_print_log_tail(&tv);
		fail_msg("a fresh read-only ntfs-3g mount does not read what was written");
	}
}

static void statfs_now(struct statvfs *st)
{
	expect_mount_reads(NULL, NULL, NULL, 0, st);
}

/* Through a read-write ntfs-3g mount, write len bytes of file `with`'s
 * pattern at offset at of f (an append when at is its size); *want (of
 * at bytes) is grown to match. */
static void mount_append(int f, uint8_t **want, uint64_t at, size_t len, int with)
{
	uint8_t *w = realloc(*want, at + len);

	assert_non_null(w);
	*want = w;
	for (size_t i = 0; i < len; i++)
		w[at + i] = gen(with, at + i);
	if (testvol_mount_write(&tv, tv.scratch, files[f].path, at, w + at, len))
		fail_msg("ntfs-3g could not append to %s", files[f].path);
}

/* One extent as `ntfsinfo -v -F` dumps it. */
struct extent {
	uint64_t rec;
	int64_t lowest, highest;
	uint16_t flags;
	int64_t data_size;      /* -1: not printed (not the first extent) */
	size_t first_run, nruns;
};

struct layout {
	struct extent *ext;
	size_t count;
	struct ntfs_runlist rl;        /* every extent's runs, appended as printed */
	bool has_al, al_resident;
	int64_t al_allocated;           /* bytes, a non-resident list's */
};

static void layout_free(struct layout *l)
{
	free(l->ext);
	ntfs_runlist_free(&l->rl);
	memset(l, 0, sizeof(*l));
}

static void rl_push(struct ntfs_runlist *rl, int64_t vcn, int64_t lcn, int64_t len)
{
	if (rl->count == rl->capacity) {
		rl->capacity = rl->capacity ? 2 * rl->capacity : 64;
		rl->runs = realloc(rl->runs, rl->capacity * sizeof(*rl->runs));
		assert_non_null(rl->runs);
	}
	rl->runs[rl->count++] = (struct ntfs_run){ .vcn = vcn, .lcn = lcn, .length = len };
}

/* Drop the extent being parsed when it belongs to another stream. */
static void block_end(struct layout *l, struct extent **cur, bool ours)
{
	if (*cur && !ours) {
		l->rl.count = (*cur)->first_run;
		l->count--;
	}
	*cur = NULL;
}

static void info_layout(int f, struct layout *l)
{
	const char *argv[] = { "ntfsinfo", "-v", "-F", files[f].path, tv.scratch, NULL };
	const char *want = files[f].stream ? files[f].stream : "";
	char *out = NULL, *save = NULL, *line;
	bool ours = false, in_runlist = false, in_al = false;
	struct extent *cur = NULL;
	int err = oracle_run(argv, &out, NULL, NULL);

	memset(l, 0, sizeof(*l));
	if (err)
		fail_msg("ntfsinfo -v %s: %d (%s)", files[f].path, err, oracle_last_stderr());
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *s = line;

		if (!strncmp(line, "Dumping attribute ", 18) || !strncmp(line, "End of inode", 12)) {
			const char *r = strstr(line, "from mft record ");

			block_end(l, &cur, ours);
			in_runlist = false;
			in_al = !strncmp(line, "Dumping attribute $ATTRIBUTE_LIST ", 34);
			if (in_al)
				l->has_al = true;
			if (strncmp(line, "Dumping attribute $DATA ", 24))
				continue;
			l->ext = realloc(l->ext, (l->count + 1) * sizeof(*l->ext));
			assert_non_null(l->ext);
			cur = &l->ext[l->count++];
			memset(cur, 0, sizeof(*cur));
			cur->data_size = -1;
			cur->rec = r ? strtoull(r + 16, NULL, 0) : UINT64_MAX;
			cur->first_run = l->rl.count;
			ours = !*want;
			continue;
		}
		while (*s == '\t')
			s++;
		if (in_al && !strncmp(s, "Resident:", 9))
			l->al_resident = strstr(s, "Yes") != NULL;
		if (in_al && !strncmp(s, "Allocated size:", 15))
			l->al_allocated = strtoll(s + 15, NULL, 0);
		if (!cur)
			continue;
		if (in_runlist && line[0] == '\t' && line[1] == '\t' && line[2] == '\t') {
			char vcn[64], lcn[64], len[64];

			if (sscanf(line, "%63s %63s %63s", vcn, lcn, len) != 3)
				fail_msg("ntfsinfo: cannot parse runlist line '%s'", line);
			if (strstr(lcn, "NOT_MAPPED"))
				continue;
			if (strncmp(lcn, "0x", 2) && !strstr(lcn, "HOLE"))
				fail_msg("ntfsinfo: unexpected lcn '%s'", lcn);
			rl_push(&l->rl, strtoll(vcn, NULL, 0),
				!strncmp(lcn, "0x", 2) ? strtoll(lcn, NULL, 0) : LCN_HOLE,
				strtoll(len, NULL, 0));
			cur->nruns++;
			continue;
		}
		in_runlist = false;
		if (!strncmp(s, "Attribute name:", 15)) {
			const char *q = strchr(s, '\'');

			ours = q && !strncmp(q + 1, want, strlen(want)) && q[1 + strlen(want)] == '\'';
		} else if (!strncmp(s, "Attribute flags:", 16)) {
			cur->flags = (uint16_t)strtoul(s + 16, NULL, 0);
		} else if (!strncmp(s, "Lowest VCN", 10)) {
			cur->lowest = strtoll(s + 10 + strspn(s + 10, ": \t"), NULL, 0);
		} else if (!strncmp(s, "Highest VCN:", 12)) {
			cur->highest = strtoll(s + 12, NULL, 0);
		} else if (!strncmp(s, "Data size:", 10)) {
			cur->data_size = strtoll(s + 10, NULL, 0);
		} else if (!strncmp(s, "Runlist:", 8)) {
			in_runlist = true;
		}
	}
	block_end(l, &cur, ours);
	free(out);
}

/* ntfsinfo's extents of f: contiguous, in order, each in the record it
 * says, together exactly `want`; the first carries the sizes. */
static void expect_layout(int f, const struct ntfs_runlist *want, uint64_t data_size,
			  uint16_t flags, struct layout *l)
{
	int64_t next = 0;

	info_layout(f, l);
	assert_true(l->count >= 1);
	for (size_t i = 0; i < l->count; i++) {
		const struct extent *e = &l->ext[i];
		int64_t covered = 0;

		if (e->lowest != next)
			fail_msg("ntfsinfo %s: extent %zu starts at vcn %lld, want %lld",
				 files[f].path, i, (long long)e->lowest, (long long)next);
		for (size_t r = e->first_run; r < e->first_run + e->nruns; r++)
			covered += l->rl.runs[r].length;
		assert_int_equal(e->highest + 1 - e->lowest, covered);
		assert_int_equal(e->flags, flags);
		if (i == 0)
			assert_int_equal(e->data_size, data_size);
		next = e->highest + 1;
	}
	if (l->rl.count != want->count ||
	    (want->count && memcmp(l->rl.runs, want->runs, want->count * sizeof(*want->runs)))) {
		size_t i = 0;

		while (i < l->rl.count && i < want->count &&
		       !memcmp(&l->rl.runs[i], &want->runs[i], sizeof(want->runs[i])))
			i++;
		fail_msg("ntfsinfo %s: %zu runs, want %zu; first difference at run %zu",
			 files[f].path, l->rl.count, want->count, i);
	}
}

/* The raw $ATTRIBUTE_LIST of f, as ntfscat gives it; NULL when it has
 * none. */
static uint8_t *cat_attr_list(int f, size_t *len)
{
	const char *argv[] = { "ntfscat", "-a", "0x20", tv.scratch, files[f].path, NULL };
	bool present = false;
	char *out = NULL;

	if (oracle_has_attr(tv.scratch, files[f].path, "$ATTRIBUTE_LIST", &present))
		fail_msg("ntfsinfo %s: %s", files[f].path, oracle_last_stderr());
	if (!present)
		return NULL;
	if (oracle_run(argv, &out, len, NULL))
		fail_msg("ntfscat -a 0x20 %s: %s", files[f].path, oracle_last_stderr());
	return (uint8_t *)out;
}

static uint8_t *cat_mft(size_t *len)
{
	const char *argv[] = { "ntfscat", tv.scratch, "$MFT", NULL };
	char *out = NULL;

	if (oracle_run(argv, &out, len, NULL))
		fail_msg("ntfscat $MFT: %s", oracle_last_stderr());
	return (uint8_t *)out;
}

/* The attribute record (type, instance) of MFT record `no` in the $MFT
 * bytes ntfscat gave (copied to rec), NULL if absent.  ntfscat checks and
 * removes each record's update sequence fixups as it reads $MFT and turns a
 * record whose fixups do not match into "BAAD" (see test_alloc.c), so a
 * "FILE" record here was written with sound fixups. */
static const uint8_t *raw_attr(const uint8_t *mft, uint64_t no, uint32_t type, uint16_t instance,
			       uint8_t *rec)
{
	uint32_t off, in_use;

	memcpy(rec, mft + no * RECORD, RECORD);
	if (memcmp(rec, "FILE", 4))
		fail_msg("MFT record %llu as ntfscat reads it: magic %.4s", (unsigned long long)no,
			 (const char *)rec);
	in_use = get_le32(rec + 24);
	for (off = get_le16(rec + 20); off + 16 <= in_use && get_le32(rec + off) != AT_END;
	     off += get_le32(rec + off + 4)) {
		assert_true(get_le32(rec + off + 4) >= 24);
		if (get_le32(rec + off) == type && get_le16(rec + off + 14) == instance)
			return rec + off;
	}
	return NULL;
}

/* f's attribute list as ntfs-3g gives it: sorted, every entry naming an
 * in-use record of the inode with the right sequence number and holding
 * the attribute instance it names; its $DATA entries (for the stream) are
 * exactly the extents ntfsinfo showed, and the raw extent records carry
 * the sizes in the first extent only.  Returns the number of distinct
 * extension records the list names. */
static size_t expect_attr_list(int f, uint64_t base, const struct layout *l,
			       const uint8_t *in_memory, uint32_t in_memory_size)
{
	size_t len = 0, mft_len = 0, nd = 0, distinct = 0;
	uint8_t *al = cat_attr_list(f, &len), *mft;
	struct ntfs_attr_list list;
	ntfschar *uname = NULL;
	uint32_t ulen = 0;
	uint64_t seen[512];

	assert_non_null(al);
	if (in_memory) {
		assert_int_equal(in_memory_size, len);
		assert_memory_equal(in_memory, al, len);
	}
	EXPECT_OK(ntfs_al_decode(al, (uint32_t)len, "test", &list));
	if (files[f].stream)
		EXPECT_OK(ntfs_utf8_to_utf16(files[f].stream, strlen(files[f].stream), &uname,
					     &ulen));
	mft = cat_mft(&mft_len);
	for (size_t i = 0; i < list.count; i++) {
		const struct ntfs_al_entry *e = &list.e[i];
		uint64_t no = MREF(e->mref);
		const uint8_t *r = mft + no * RECORD;
		bool known = false;

		assert_int_not_equal(e->type, AT_ATTRIBUTE_LIST);
		if (i) {
			const struct ntfs_al_entry *p = &list.e[i - 1];

			assert_true(p->type <= e->type);
			if (p->type == e->type && p->name_len == e->name_len &&
			    (!e->name_len || !memcmp(p->name, e->name, 2u * e->name_len)))
				assert_true(p->lowest_vcn <= e->lowest_vcn);
		}
		assert_true((no + 1) * RECORD <= mft_len);
		assert_true(get_le16(r + 22) & MFT_RECORD_IN_USE);
		assert_int_equal(get_le16(r + 16), MSEQNO(e->mref));
		assert_int_equal(MREF(get_le64(r + 32)), no == base ? 0 : base);
		for (size_t k = 0; k < distinct; k++)
			known |= seen[k] == no;
		if (!known && no != base && distinct < 512)
			seen[distinct++] = no;
		{
			uint8_t rec[RECORD];
			const uint8_t *a = raw_attr(mft, no, e->type, e->instance, rec);

			if (!a)
				fail_msg("attribute list entry %zu (type 0x%x, instance %u): not in "
					 "MFT record %llu", i, e->type, e->instance,
					 (unsigned long long)no);
			assert_int_equal(a[9], e->name_len);
			if (ntfs_al_entry_is(e, AT_DATA, uname, ulen)) {
				assert_true(nd < l->count);
				assert_int_equal(e->lowest_vcn, l->ext[nd].lowest);
				assert_int_equal(no, l->ext[nd].rec);
				assert_int_equal(a[8], 1);
				assert_int_equal((int64_t)get_le64(a + 16), e->lowest_vcn);
				if (e->lowest_vcn == 0) {
					assert_int_equal(get_le64(a + 48), l->ext[0].data_size);
				} else {
					assert_int_equal(get_le64(a + 40), 0);
					assert_int_equal(get_le64(a + 48), 0);
					assert_int_equal(get_le64(a + 56), 0);
				}
				nd++;
			}
		}
	}
	assert_int_equal(nd, l->count);
	ntfs_al_free(&list);
	free(uname);
	free(al);
	free(mft);
	return distinct;
}


/* ------------------------------------------------------------------ */
/* setup                                                                */
/* ------------------------------------------------------------------ */

static int ntfscp(int f, size_t size)
{
	uint8_t *data = gen_buf(f, 0, size);
	int ret = testvol_ntfscp(&tv, tv.img, data, size, files[f].path, files[f].stream);

	free(data);
	return ret;
}

/* Mark the free clusters of every other byte of $Bitmap used, listing
 * them (on), or free the listed ones again (off): ntfs-3g then has only
 * 8-cluster stretches to allocate from.  Written straight into $Bitmap,
 * with no volume of the layer open but this one. */
static int checkerboard(bool on, int64_t **list, size_t *n)
{
	struct ntfs_volume *vol = NULL;
	struct ntfs_inode *ni = NULL;
	struct ntfs_attr *na = NULL;
	uint8_t *bits = NULL;
	int64_t nr;
	int err = ntfs_volume_open(tv.img, 0, &vol);

	if (!err)
		err = ntfs_inode_open(vol, FILE_Bitmap, &ni);
	if (!err)
		err = ntfs_attr_open(ni, AT_DATA, NULL, 0, &na);
	if (!err) {
		nr = (int64_t)vol->geo.nr_clusters;
		bits = malloc(na->data_size);
		err = !bits ? -ENOMEM
		      : ntfs_attr_pread(na, 0, na->data_size, bits) == (ssize_t)na->data_size ? 0
															: -EIO;
	}
	if (!err && on) {
		*list = malloc((size_t)nr * sizeof(**list));
		*n = 0;
		for (int64_t c = 8; *list && c < nr; c += (c & 7) == 7 ? 9 : 1)
			if (!(bits[c >> 3] >> (c & 7) & 1)) {
				bits[c >> 3] |= (uint8_t)(1u << (c & 7));
				(*list)[(*n)++] = c;
			}
		if (!*list)
			err = -ENOMEM;
	} else if (!err) {
		for (size_t i = 0; i < *n; i++)
			bits[(*list)[i] >> 3] &= (uint8_t)~(1u << ((*list)[i] & 7));
	}
	if (!err)
		err = ntfs_attr_pwrite_mapped(na, 0, (size_t)(nr + 7) / 8, bits);
	if (err)
		print_error("checkerboard: %s\n", ntfs_last_error());
	free(bits);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	ntfs_volume_close(vol);
	return err;
}

/* ntfs-3g writes n3a and n3b a cluster at a time, alternately, into a
 * checkerboard: each gets a run per 8-cluster stretch, and n3a an
 * attribute list (ntfs-3g's own layout: it moves $FILE_NAME out and makes
 * the list non-resident as it needs). */
static int ntfs3g_interleave(void)
{
	char pa[400], pb[400];
	int64_t *borrowed = NULL;
	size_t nborrowed = 0;
	int fa = -1, fb = -1, ret = 0;
	uint8_t buf[CLUSTER];

	if (checkerboard(true, &borrowed, &nborrowed))
		return -1;
	if (testvol_mount(&tv, tv.img, "no_detach")) {
		ret = -1;
		goto out;
	}
	snprintf(pa, sizeof(pa), "%s%s", tv.mnt, files[F_N3A].path);
	snprintf(pb, sizeof(pb), "%s%s", tv.mnt, files[F_N3B].path);
	fa = open(pa, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	fb = open(pb, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fa < 0 || fb < 0)
		ret = -1;
	for (uint64_t c = 0; !ret && c < N3_CLUSTERS; c++) {
		for (size_t i = 0; i < CLUSTER; i++)
			buf[i] = gen(F_N3A, c * CLUSTER + i);
		if (pwrite(fa, buf, CLUSTER, (off_t)(c * CLUSTER)) != CLUSTER)
			ret = -1;
		for (size_t i = 0; i < CLUSTER; i++)
			buf[i] = gen(F_N3B, c * CLUSTER + i);
		if (pwrite(fb, buf, CLUSTER, (off_t)(c * CLUSTER)) != CLUSTER)
			ret = -1;
	}
	if (ret)
		testvol_log_note(&tv, "interleaved writes through ntfs-3g: %s", strerror(errno));
	if (fa >= 0 && close(fa))
		ret = -1;
	if (fb >= 0 && close(fb))
		ret = -1;
	if (testvol_unmount(&tv))
		ret = -1;
out:
	if (checkerboard(false, &borrowed, &nborrowed))
		ret = -1;
	free(borrowed);
	return ret;
}

static int group_setup(void **state)
{
	static const char *const need[] = { "mkntfs", "ntfscp", "ntfscat", "ntfsinfo", "ntfsfix",
					    NULL };
	bool present = false;

	(void)state;
	if (testvol_create(&tv, "attrlist", need))
		return -1;
	if (testvol_mkntfs(&tv, IMAGE_SIZE, CLUSTER))
		SETUP_FAIL("mkntfs failed");
	if (ntfscp(F_A, SMALL_SIZE) || ntfscp(F_B, SMALL_SIZE) || ntfscp(F_S, 100) ||
	    ntfscp(F_ST, SMALL_SIZE) || ntfscp(F_ZZ, 50) || ntfscp(F_L, 100) || ntfscp(F_LONG, SMALL_SIZE))
		SETUP_FAIL("ntfscp failed");
	if (ntfs3g_interleave())
		SETUP_FAIL("ntfs-3g could not write the interleaved files");
	if (oracle_has_attr(tv.img, files[F_N3A].path, "$ATTRIBUTE_LIST", &present) || !present)
		SETUP_FAIL("%s did not get an $ATTRIBUTE_LIST", files[F_N3A].path);
	{
		const char *argv[] = { "ntfsfix", "-n", tv.img, NULL };
		int status = -1;

		if (oracle_run(argv, NULL, NULL, &status) || status)
			SETUP_FAIL("ntfsfix -n fails on the pristine image");
	}
	return 0;
fail:
	testvol_print_log_tail(&tv);
	testvol_destroy(&tv);
	return -1;
}

static int group_teardown(void **state)
{
	(void)state;
	testvol_destroy(&tv);
	return 0;
}

static int scratch_setup(void **state)
{
	(void)state;
	return testvol_scratch_setup(&tv, test_timeout);
}

static int scratch_teardown(void **state)
{
	(void)state;
	testvol_scratch_teardown(&tv);
	return 0;
}

/* ------------------------------------------------------------------ */
/* the tests                                                            */
/* ------------------------------------------------------------------ */

/* Clusters on the volume that ntfs-3g counts free (f_bfree, in clusters). */
static int64_t free_clusters(const struct statvfs *st)
{
	return (int64_t)(st->f_bfree * st->f_frsize / CLUSTER);
}

/* Free MFT records as ntfs-3g counts them: its f_ffree is the free records
 * plus the records the free clusters could hold. */
static int64_t free_records(const struct statvfs *st)
{
	return (int64_t)st->f_ffree - free_clusters(st) * CLUSTER / RECORD;
}

/* The list codec alone: decode(encode(x)) == x, sorting is stable and
 * orders by type, then name (case-insensitively first), then lowest vcn. */
static void test_list_codec(void **state)
{
	static const ntfschar up_b[] = { 'B' }, low_a[] = { 'a' }, up_a[] = { 'A' };
	struct ntfs_attr_list al = { 0 }, back = { 0 };
	ntfschar upcase[128];
	uint8_t *buf;
	uint32_t size;

	(void)state;
	EXPECT_OK(ntfs_al_append(&al, AT_DATA, up_b, 1, 0, 70 | 3ull << 48, 4));
	EXPECT_OK(ntfs_al_append(&al, AT_DATA, NULL, 0, 500, 71 | 1ull << 48, 0));
	EXPECT_OK(ntfs_al_append(&al, AT_FILE_NAME, NULL, 0, 0, 64 | 1ull << 48, 3));
	EXPECT_OK(ntfs_al_append(&al, AT_DATA, NULL, 0, 0, 64 | 1ull << 48, 2));
	EXPECT_OK(ntfs_al_append(&al, AT_FILE_NAME, NULL, 0, 0, 66 | 1ull << 48, 0));
	EXPECT_OK(ntfs_al_append(&al, AT_DATA, low_a, 1, 0, 72 | 1ull << 48, 1));
	EXPECT_OK(ntfs_al_append(&al, AT_DATA, up_a, 1, 0, 72 | 1ull << 48, 2));
	EXPECT_OK(ntfs_al_append(&al, AT_STANDARD_INFORMATION, NULL, 0, 0, 64 | 1ull << 48, 0));
	for (unsigned c = 0; c < 128; c++)
		upcase[c] = (ntfschar)(c >= 'a' && c <= 'z' ? c - 32 : c);
	/* Names: 'A' and 'a' tie ignoring case ('A' first by code unit), both
	 * before 'B' (without the table, 'a' would sort last). */
	EXPECT_OK(ntfs_al_sort(&al, upcase, 128));
	assert_int_equal(al.e[0].type, AT_STANDARD_INFORMATION);
	assert_int_equal(al.e[1].type, AT_FILE_NAME);
	assert_int_equal(MREF(al.e[1].mref), 64);   /* equal keys keep their order */
	assert_int_equal(MREF(al.e[2].mref), 66);
	assert_int_equal(al.e[3].name_len, 0);
	assert_int_equal(al.e[3].lowest_vcn, 0);
	assert_int_equal(al.e[4].lowest_vcn, 500);
	assert_int_equal(al.e[5].name[0], 'A');
	assert_int_equal(al.e[6].name[0], 'a');
	assert_int_equal(al.e[7].name[0], 'B');
	size = ntfs_al_encoded_size(&al);
	assert_int_equal(size, 8 * 32);
	buf = malloc(size);
	assert_non_null(buf);
	ntfs_al_encode(&al, buf);
	assert_int_equal(get_le16(buf + 4), 32);
	assert_int_equal(buf[7], 26);
	EXPECT_OK(ntfs_al_decode(buf, size, "codec", &back));
	assert_int_equal(back.count, al.count);
	for (size_t i = 0; i < al.count; i++) {
		assert_int_equal(back.e[i].type, al.e[i].type);
		assert_int_equal(back.e[i].name_len, al.e[i].name_len);
		assert_int_equal(back.e[i].lowest_vcn, al.e[i].lowest_vcn);
		assert_int_equal(back.e[i].mref, al.e[i].mref);
		assert_int_equal(back.e[i].instance, al.e[i].instance);
		if (al.e[i].name_len)
			assert_memory_equal(back.e[i].name, al.e[i].name, 2u * al.e[i].name_len);
	}
	assert_false(ntfs_al_all_in(&back, 64));
	ntfs_al_remove_attr(&back, AT_DATA, NULL, 0);
	assert_int_equal(back.count, 6);
	ntfs_al_free(&back);
	ntfs_al_free(&al);
	/* A corrupt entry (length past the value) is refused. */
	buf[32 + 5] = 0x7f;
	assert_int_equal(ntfs_al_decode(buf, size, "codec", &back), -EIO);
	assert_int_equal(back.count, 0);
	free(buf);
}

/* Two files fragmented into single clusters: their runlists outgrow the
 * base record, get an attribute list and more and more extension records.
 * ntfs-3g reads them, follows every extent, agrees with the list, counts
 * the records and clusters used, and appends to one. */
static void test_grow_into_attribute_list(void **state)
{
	const int64_t n = 1200;
	struct statvfs st0, st1;
	struct ntfs_volume *vol;
	struct file fl[2];
	struct ntfs_runlist rl[2] = { { 0 } };
	uint64_t size[2], base[2];
	uint8_t *al_mem[2], *want[2];
	uint32_t al_size[2];
	size_t ext_recs = 0, extents[2] = { 0, 0 };
	const int fs[2] = { F_A, F_B };

	(void)state;
	statfs_now(&st0);
	vol = open_rw();
	fl[0] = open_file(vol, F_A);
	fl[1] = open_file(vol, F_B);
	assert_null(fl[0].ni->attr_list);
	grow_interleaved(vol, fl, 2, n, 100, 100);
	for (int k = 0; k < 2; k++) {
		assert_non_null(fl[k].ni->attr_list);
		expect_inode_consistent(&fl[k]);
		EXPECT_OK(ntfs_inode_foreach_attr_under_lock(fl[k].ni, count_data_extents,
							     &extents[k]));
		EXPECT_OK(ntfs_rl_copy(&rl[k], &fl[k].na->rl));
		assert_int_equal(rl[k].count, n + 1);
		size[k] = fl[k].na->data_size;
		base[k] = fl[k].ni->mft_no;
		al_size[k] = fl[k].ni->attr_list_size;
		al_mem[k] = malloc(al_size[k]);
		assert_non_null(al_mem[k]);
		memcpy(al_mem[k], fl[k].ni->attr_list, al_size[k]);
		file_close(&fl[k]);
	}
	ntfs_volume_close(vol);

	for (int k = 0; k < 2; k++) {
		struct layout l;

		want[k] = want_buf(fs[k], size[k]);
		expect_cat(fs[k], want[k], size[k]);
		expect_layout(fs[k], &rl[k], size[k], 0, &l);
		assert_true(l.count >= 3);
		assert_int_equal(l.count, extents[k]);
		assert_true(l.has_al && l.al_resident);
		ext_recs += expect_attr_list(fs[k], base[k], &l, al_mem[k], al_size[k]);
		expect_layer_reads(fs[k], want[k], size[k]);
		layout_free(&l);
	}
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_mount_reads(fs, want, size, 2, &st1);
	assert_int_equal(free_records(&st0) - free_records(&st1), ext_recs);
	assert_int_equal(free_clusters(&st0) - free_clusters(&st1), 2 * n);

	/* ntfs-3g appends 20000 bytes to a: it extends our last extent. */
	mount_append(F_A, &want[0], size[0], 20000, F_B);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_cat(F_A, want[0], size[0] + 20000);
	expect_layer_reads(F_A, want[0], size[0] + 20000);
	for (int k = 0; k < 2; k++) {
		ntfs_runlist_free(&rl[k]);
		free(al_mem[k]);
		free(want[k]);
	}
}

/* Shrinking gives the extension records back (ntfs-3g counts them free)
 * and, once everything is in the base record again, the attribute list
 * goes; down to nothing as well. */
static void test_shrink_frees_extension_records(void **state)
{
	const int64_t n = 1200, keep = 10;
	struct statvfs st0, st1, st2;
	struct ntfs_volume *vol;
	struct file fl[2];
	struct ntfs_runlist old = { 0 }, rl = { 0 }, none = { 0 };
	struct layout l;
	uint64_t size, base;
	uint8_t *want;
	size_t recs_a;
	bool present = true;
	const int fs[2] = { F_A, F_B };

	(void)state;
	statfs_now(&st0);
	vol = open_rw();
	fl[0] = open_file(vol, F_A);
	fl[1] = open_file(vol, F_B);
	grow_interleaved(vol, fl, 2, n, 400, 0);
	base = fl[0].ni->mft_no;
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	size = fl[0].na->data_size;
	file_close(&fl[0]);
	file_close(&fl[1]);
	ntfs_volume_close(vol);
	expect_layout(F_A, &rl, size, 0, &l);
	recs_a = expect_attr_list(F_A, base, &l, NULL, 0);
	assert_true(recs_a >= 2);
	layout_free(&l);
	statfs_now(&st1);

	vol = open_rw();
	fl[0] = open_file(vol, F_A);
	fl[1] = open_file(vol, F_B);
	EXPECT_OK(ntfs_rl_copy(&old, &fl[0].na->rl));
	EXPECT_OK(ntfs_rl_truncate(&fl[0].na->rl, keep));
	fl[0].na->data_size = fl[0].na->initialized_size = keep * CLUSTER - 7;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl[0].na));
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &old, keep));
	assert_null(fl[0].ni->attr_list);
	assert_int_equal(fl[0].ni->attr_list_size, 0);
	expect_inode_consistent(&fl[0]);
	/* b down to nothing: one extent without runs stays, in the base. */
	ntfs_runlist_free(&old);
	EXPECT_OK(ntfs_rl_copy(&old, &fl[1].na->rl));
	EXPECT_OK(ntfs_rl_truncate(&fl[1].na->rl, 0));
	fl[1].na->data_size = fl[1].na->initialized_size = 0;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl[1].na));
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &old, 0));
	assert_null(fl[1].ni->attr_list);
	expect_inode_consistent(&fl[1]);
	ntfs_runlist_free(&rl);
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	file_close(&fl[0]);
	file_close(&fl[1]);
	ntfs_volume_close(vol);

	size = keep * CLUSTER - 7;
	want = want_buf(F_A, size);
	expect_cat(F_A, want, size);
	expect_layout(F_A, &rl, size, 0, &l);
	assert_int_equal(l.count, 1);
	assert_false(l.has_al);
	layout_free(&l);
	EXPECT_OK(oracle_has_attr(tv.scratch, files[F_A].path, "$ATTRIBUTE_LIST", &present));
	assert_false(present);
	expect_layout(F_B, &none, 0, 0, &l);
	assert_int_equal(l.count, 1);
	assert_false(l.has_al);
	layout_free(&l);
	expect_cat(F_B, NULL, 0);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_layer_reads(F_A, want, size);
	{
		uint8_t *w[2] = { want, NULL };
		uint64_t sz[2] = { size, 0 };

		expect_mount_reads(fs, w, sz, 2, &st2);
	}
	/* Every extension record is free again (a's and b's), and every
	 * cluster but a's first `keep` (both started with SMALL_SIZE). */
	assert_true(free_records(&st0) - free_records(&st1) > (int64_t)recs_a);
	assert_int_equal(free_records(&st2), free_records(&st0));
	assert_int_equal(free_clusters(&st2) - free_clusters(&st0),
			 2 * (int64_t)(SMALL_SIZE / CLUSTER) - keep);
	mount_append(F_A, &want, size, 3 * CLUSTER, F_B);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_cat(F_A, want, size + 3 * CLUSTER);
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&old);
	free(want);
}

/* A file ntfs-3g split over extension records (non-resident attribute
 * list, $FILE_NAME moved out) is rewritten by the layer: runs in the middle
 * relocated, then many more appended, then cut back. */
static void test_ntfs3g_attribute_list_rewritten(void **state)
{
	struct ntfs_volume *vol;
	struct file fl[2];
	struct ntfs_runlist old = { 0 }, fresh = { 0 }, rl = { 0 };
	struct layout l;
	uint64_t size, base;
	uint8_t *want, buf[CLUSTER];
	size_t before_ext;
	const int64_t from = 100, count = 200;

	(void)state;
	info_layout(F_N3A, &l);
	before_ext = l.count;
	assert_true(before_ext >= 2);
	assert_true(l.has_al);
	layout_free(&l);

	vol = open_rw();
	fl[0] = open_file(vol, F_N3A);
	fl[1] = open_file(vol, F_N3B);
	assert_non_null(fl[0].ni->attr_list);
	assert_int_equal(fl[0].na->data_size, (uint64_t)N3_CLUSTERS * CLUSTER);
	/* Relocate [from, from + count) into every other cluster of a fresh
	 * area, backwards (negative lcn deltas). */
	EXPECT_OK(ntfs_rl_copy(&old, &fl[0].na->rl));
	EXPECT_OK(ntfs_cluster_alloc(vol, 2 * count, -1, &fresh));
	assert_int_equal(fresh.count, 1);
	for (int64_t k = 0; k < count; k++) {
		int64_t lcn = fresh.runs[0].lcn + 2 * (count - 1 - k);

		assert_int_equal(ntfs_attr_pread(fl[0].na, (uint64_t)(from + k) * CLUSTER, CLUSTER,
						 buf), CLUSTER);
		EXPECT_OK(ntfs_device_pwrite(vol->dev, buf, CLUSTER, (uint64_t)lcn * CLUSTER));
		EXPECT_OK(ntfs_rl_replace(&fl[0].na->rl, from + k, 1, lcn));
	}
	for (int64_t k = 0; k < count; k++)
		EXPECT_OK(ntfs_cluster_free(vol, fresh.runs[0].lcn + 2 * k + 1, 1));
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl[0].na));
	for (int64_t k = 0; k < count; k++) {
		int64_t lcn = ntfs_rl_vcn_to_lcn(&old, from + k, NULL);

		EXPECT_OK(ntfs_cluster_free(vol, lcn, 1));
	}
	expect_inode_consistent(&fl[0]);
	/* Then 1500 more single clusters each, alternately. */
	grow_interleaved(vol, fl, 2, 1500, 500, 0);
	expect_inode_consistent(&fl[0]);
	expect_inode_consistent(&fl[1]);
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	size = fl[0].na->data_size;
	base = fl[0].ni->mft_no;
	file_close(&fl[0]);
	file_close(&fl[1]);
	ntfs_volume_close(vol);

	want = want_buf(F_N3A, size);
	expect_cat(F_N3A, want, size);
	expect_layout(F_N3A, &rl, size, 0, &l);
	assert_true(l.count > before_ext);
	expect_attr_list(F_N3A, base, &l, NULL, 0);
	layout_free(&l);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_layer_reads(F_N3A, want, size);
	{
		int fs[1] = { F_N3A };
		uint64_t sz[1] = { size };

		expect_mount_reads(fs, &want, sz, 1, NULL);
	}
	mount_append(F_N3A, &want, size, 10000, F_B);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_cat(F_N3A, want, size + 10000);
	expect_layer_reads(F_N3A, want, size + 10000);

	/* Cut back to 500 clusters: fewer extents, the rest freed. */
	vol = open_rw();
	fl[0] = open_file(vol, F_N3A);
	ntfs_runlist_free(&old);
	EXPECT_OK(ntfs_rl_copy(&old, &fl[0].na->rl));
	EXPECT_OK(ntfs_rl_truncate(&fl[0].na->rl, 500));
	fl[0].na->data_size = fl[0].na->initialized_size = 500 * CLUSTER;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl[0].na));
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &old, 500));
	expect_inode_consistent(&fl[0]);
	ntfs_runlist_free(&rl);
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	file_close(&fl[0]);
	ntfs_volume_close(vol);
	expect_cat(F_N3A, want, 500 * CLUSTER);
	expect_layout(F_N3A, &rl, 500 * CLUSTER, 0, &l);
	expect_attr_list(F_N3A, base, &l, NULL, 0);
	layout_free(&l);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_layer_reads(F_N3A, want, 500 * CLUSTER);
	ntfs_runlist_free(&old);
	ntfs_runlist_free(&fresh);
	ntfs_runlist_free(&rl);
	free(want);
}

/* A named stream, fragmented and then holed every ten clusters: every
 * extent goes sparse (72-byte headers, the name after them), the list's
 * entries carry the name and sort before those of the file's other stream
 * ("zz"), the file reads zeroes in the holes, its other streams are
 * untouched. */
static void test_sparse_named_stream(void **state)
{
	const int64_t n = 1000;
	struct ntfs_volume *vol;
	struct file fl[2];
	struct ntfs_runlist cut = { 0 }, rl = { 0 };
	struct oracle_attr oa;
	struct layout l;
	uint64_t size, base;
	uint8_t *want;
	int64_t holes = 0;

	(void)state;
	vol = open_rw();
	fl[0] = open_file(vol, F_ST);
	fl[1] = open_file(vol, F_A);
	grow_interleaved(vol, fl, 2, n, 250, 0);
	size = fl[0].na->data_size;
	want = want_buf(F_ST, size);
	for (int64_t v = 5; v < ntfs_rl_end_vcn(&fl[0].na->rl); v += 10) {
		EXPECT_OK(ntfs_rl_extract(&fl[0].na->rl, v, 1, &cut));
		EXPECT_OK(ntfs_rl_replace(&fl[0].na->rl, v, 1, LCN_HOLE));
		memset(want + v * CLUSTER, 0, CLUSTER);
		holes++;
	}
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl[0].na));
	for (size_t i = 0; i < cut.count; i++)
		EXPECT_OK(ntfs_cluster_free(vol, cut.runs[i].lcn, cut.runs[i].length));
	assert_true(fl[0].na->flags & ATTR_IS_SPARSE);
	assert_true(fl[0].ni->file_attributes & FILE_ATTR_SPARSE_FILE);
	assert_non_null(fl[0].ni->attr_list);
	{
		struct ntfs_attr *again;
		static const ntfschar st[] = { 's', 't' };
		uint8_t *buf = malloc(size);

		assert_non_null(buf);
		EXPECT_OK(ntfs_attr_open(fl[0].ni, AT_DATA, st, 2, &again));
		assert_int_equal(ntfs_attr_pread(again, 0, size, buf), (ssize_t)size);
		assert_memory_equal(buf, want, size);
		ntfs_attr_close(again);
		free(buf);
	}
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	base = fl[0].ni->mft_no;
	file_close(&fl[0]);
	file_close(&fl[1]);
	ntfs_volume_close(vol);

	expect_cat(F_ST, want, size);
	{
		uint8_t *unnamed = want_buf(F_S, 100);

		expect_cat(F_S, unnamed, 100);
		free(unnamed);
		unnamed = want_buf(F_ZZ, 50);
		expect_cat(F_ZZ, unnamed, 50);
		free(unnamed);
	}
	expect_layout(F_ST, &rl, size, ATTR_IS_SPARSE, &l);
	assert_true(l.count >= 2);
	expect_attr_list(F_ST, base, &l, NULL, 0);
	layout_free(&l);
	EXPECT_OK(oracle_info(tv.scratch, files[F_ST].path, files[F_ST].stream, &oa));
	assert_true(oa.found && oa.sparse && !oa.resident);
	assert_int_equal(oa.data_size, size);
	assert_int_equal(oa.compressed_size, (uint64_t)(ntfs_rl_end_vcn(&rl) - holes) * CLUSTER);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_layer_reads(F_ST, want, size);
	{
		int fs[1] = { F_ST };
		uint64_t sz[1] = { size };

		expect_mount_reads(fs, &want, sz, 1, NULL);
	}
	ntfs_runlist_free(&cut);
	ntfs_runlist_free(&rl);
	free(want);
}

/* A stream whose long name makes every list entry 152 bytes: a few
 * extents and the list no longer fits in the base record as a resident
 * value, so it goes non-resident (into fresh clusters at each change); cut
 * back, it leaves the base record again with its clusters; no cluster is
 * lost on the way. */
static void test_attribute_list_goes_nonresident(void **state)
{
	const int64_t n = 1500, keep = 100;
	struct statvfs st0, st1, st2;
	struct ntfs_volume *vol;
	struct file fl[2];
	struct ntfs_runlist rl = { 0 }, old = { 0 };
	struct layout l;
	uint64_t size, base;
	uint8_t *want;
	int64_t al_long, al_b, al_after;
	const int fs[1] = { F_LONG };

	(void)state;
	statfs_now(&st0);
	vol = open_rw();
	fl[0] = open_file(vol, F_LONG);
	fl[1] = open_file(vol, F_B);
	grow_interleaved(vol, fl, 2, n, 300, 1);
	expect_inode_consistent(&fl[0]);
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	size = fl[0].na->data_size;
	base = fl[0].ni->mft_no;
	file_close(&fl[0]);
	file_close(&fl[1]);
	ntfs_volume_close(vol);

	want = want_buf(F_LONG, size);
	expect_cat(F_LONG, want, size);
	expect_layout(F_LONG, &rl, size, 0, &l);
	assert_true(l.has_al);
	assert_false(l.al_resident);
	assert_true(l.count >= 4);
	expect_attr_list(F_LONG, base, &l, NULL, 0);
	al_long = l.al_allocated / CLUSTER;
	assert_true(al_long >= 2);
	layout_free(&l);
	info_layout(F_B, &l);
	assert_true(l.has_al);
	al_b = l.al_resident ? 0 : l.al_allocated / CLUSTER;
	layout_free(&l);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_layer_reads(F_LONG, want, size);
	{
		uint64_t sz[1] = { size };

		expect_mount_reads(fs, &want, sz, 1, &st1);
	}
	/* Every cluster accounted for: the data's and the lists'. */
	assert_int_equal(free_clusters(&st0) - free_clusters(&st1), 2 * n + al_long + al_b);

	vol = open_rw();
	fl[0] = open_file(vol, F_LONG);
	EXPECT_OK(ntfs_rl_copy(&old, &fl[0].na->rl));
	EXPECT_OK(ntfs_rl_truncate(&fl[0].na->rl, keep));
	fl[0].na->data_size = fl[0].na->initialized_size = keep * CLUSTER;
	EXPECT_OK(ntfs_attr_update_mapping_pairs(fl[0].na));
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &old, keep));
	expect_inode_consistent(&fl[0]);
	ntfs_runlist_free(&rl);
	EXPECT_OK(ntfs_rl_copy(&rl, &fl[0].na->rl));
	file_close(&fl[0]);
	ntfs_volume_close(vol);
	expect_cat(F_LONG, want, keep * CLUSTER);
	expect_layout(F_LONG, &rl, keep * CLUSTER, 0, &l);
	assert_int_equal(l.count, 1);
	al_after = l.has_al && !l.al_resident ? l.al_allocated / CLUSTER : 0;
	if (l.has_al)
		expect_attr_list(F_LONG, base, &l, NULL, 0);
	layout_free(&l);
	testvol_expect_ntfsfix_clean(tv.scratch);
	expect_layer_reads(F_LONG, want, keep * CLUSTER);
	statfs_now(&st2);
	/* The cut clusters came back, and the old list's. */
	assert_int_equal(free_clusters(&st2) - free_clusters(&st1),
			 n + (int64_t)(SMALL_SIZE / CLUSTER) - keep + al_long - al_after);
	assert_true(free_records(&st2) > free_records(&st1));
	ntfs_runlist_free(&rl);
	ntfs_runlist_free(&old);
	free(want);
}

/* No MFT record to spare: the update fails with ENOSPC and writes
 * nothing; the one record it managed to allocate is given back, the inode
 * and the attribute are as they were.  $MFT grows when its records run
 * out, so every cluster is taken first (and exactly the ones the test
 * allocates given back): $MFT cannot grow. */
static void test_no_free_record(void **state)
{
	struct statvfs st0, st1;
	struct ntfs_volume *vol;
	struct file fl;
	struct ntfs_runlist spacers = { 0 }, full = { 0 };
	uint64_t hog[512], no, old_alloc;
	uint16_t old_flags;
	size_t nhog = 0;
	uint8_t *want = want_buf(F_A, SMALL_SIZE);
	int64_t end;
	int err;

	(void)state;
	statfs_now(&st0);
	vol = open_rw();
	fl = open_file(vol, F_A);
	EXPECT_OK(ntfs_cluster_alloc(vol, ntfs_volume_free_clusters(vol), -1, &full));
	while (nhog < 512 && !(err = ntfs_mft_record_alloc(vol, 0, 0, &no)))
		hog[nhog++] = no;
	assert_int_equal(err, -ENOSPC);
	assert_true(nhog > 1);
	EXPECT_OK(ntfs_mft_record_free(vol, hog[--nhog]));     /* one left */
	end = ntfs_rl_end_vcn(&full);
	assert_true(end > 2000);
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &full, end - 2000));
	EXPECT_OK(ntfs_rl_truncate(&full, end - 2000));
	old_alloc = fl.na->allocated_size;
	old_flags = fl.na->flags;
	for (int i = 0; i < 1000; i++) {
		EXPECT_OK(ntfs_cluster_alloc(vol, 1, -1, &fl.na->rl));
		EXPECT_OK(ntfs_cluster_alloc(vol, 1, -1, &spacers));
	}
	fl.na->data_size = fl.na->initialized_size = (uint64_t)ntfs_rl_end_vcn(&fl.na->rl) * CLUSTER;
	assert_int_equal(ntfs_attr_update_mapping_pairs(fl.na), -ENOSPC);
	assert_non_null(strstr(ntfs_last_error(), "MFT record"));
	assert_int_equal(fl.na->allocated_size, old_alloc);
	assert_int_equal(fl.na->flags, old_flags);
	assert_null(fl.ni->attr_list);
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &fl.na->rl, SMALL_SIZE / CLUSTER));
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &spacers, 0));
	EXPECT_OK(ntfs_cluster_free_from_rl(vol, &full, 0));
	while (nhog)
		EXPECT_OK(ntfs_mft_record_free(vol, hog[--nhog]));
	file_close(&fl);
	ntfs_volume_close(vol);

	expect_cat(F_A, want, SMALL_SIZE);
	testvol_expect_ntfsfix_clean(tv.scratch);
	{
		int fs[1] = { F_A };
		uint64_t sz[1] = { SMALL_SIZE };

		expect_mount_reads(fs, &want, sz, 1, &st1);
	}
	assert_int_equal(free_records(&st1), free_records(&st0));
	assert_int_equal(free_clusters(&st1), free_clusters(&st0));
	ntfs_runlist_free(&spacers);
	ntfs_runlist_free(&full);
	free(want);
}

/* ---- random edits ---- */

static uint64_t rnd_state;

static uint64_t rnd(uint64_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return n ? rnd_state % n : 0;
}

/* Free the clusters of runs (a list of runs, holes skipped). */
static void free_runs(struct ntfs_volume *vol, struct ntfs_runlist *runs)
{
	for (size_t i = 0; i < runs->count; i++)
		if (runs->runs[i].lcn >= 0)
			EXPECT_OK(ntfs_cluster_free(vol, runs->runs[i].lcn, runs->runs[i].length));
	ntfs_runlist_free(runs);
}

/* A new cluster for vcn of fl: random bytes, recorded in want. */
static int64_t new_cluster(struct ntfs_volume *vol, struct ntfs_runlist *spacers, uint8_t *want,
			   int64_t vcn)
{
	struct ntfs_runlist one = { 0 };
	uint8_t buf[CLUSTER];
	int64_t lcn;

	EXPECT_OK(ntfs_cluster_alloc(vol, 1, -1, &one));
	lcn = one.runs[0].lcn;
	ntfs_runlist_free(&one);
	/* and one to keep the next apart (given back after the update) */
	EXPECT_OK(ntfs_cluster_alloc(vol, 1, -1, spacers));
	for (size_t i = 0; i < CLUSTER; i++)
		buf[i] = want[vcn * CLUSTER + i] = (uint8_t)rnd(256);
	EXPECT_OK(ntfs_device_pwrite(vol->dev, buf, CLUSTER, (uint64_t)lcn * CLUSTER));
	return lcn;
}

/* The attribute as a fresh ntfs_attr_open on the same inode sees it. */
static void expect_attr_holds(struct file *fl, const uint8_t *want)
{
	struct ntfs_attr *again = NULL;
	uint64_t size = fl->na->data_size;
	uint8_t *buf = malloc(size + 1);

	assert_non_null(buf);
	EXPECT_OK(ntfs_attr_open(fl->ni, AT_DATA, NULL, 0, &again));
	assert_int_equal(again->data_size, size);
	assert_int_equal(again->allocated_size, fl->na->allocated_size);
	assert_int_equal(again->rl.count, fl->na->rl.count);
	if (again->rl.count)
		assert_memory_equal(again->rl.runs, fl->na->rl.runs,
				    again->rl.count * sizeof(*again->rl.runs));
	assert_int_equal(ntfs_attr_pread(again, 0, size + 1, buf), (ssize_t)size);
	if (size)
		assert_memory_equal(buf, want, size);
	ntfs_attr_close(again);
	free(buf);
}

/* Forty random edits of a's runlist (appends of up to 600 separate
 * clusters, holes punched and filled, ranges relocated, cuts, mostly of at
 * most half of it, sometimes to nothing), each written
 * with ntfs_attr_update_mapping_pairs; every fifth, everything ntfs-3g can
 * say is checked, and the volume reopened.  The sequence is fixed;
 * NTFSD_TEST_SEED picks another. */
static void test_random_edits(void **state)
{
	const int64_t max_clusters = 6000;
	uint8_t *want = calloc(1, (size_t)max_clusters * CLUSTER);
	struct ntfs_volume *vol;
	struct file fl;
	struct ntfs_runlist spacers = { 0 }, drop = { 0 }, rl = { 0 };
	uint64_t base;
	bool sparse = false;

	(void)state;
	assert_non_null(want);
	rnd_state = 0x9e3779b97f4a7c15ull;
	if (getenv("NTFSD_TEST_SEED"))     /* to explore other sequences */
		rnd_state ^= strtoull(getenv("NTFSD_TEST_SEED"), NULL, 0) * 0xff51afd7ed558ccdull;
	for (size_t i = 0; i < SMALL_SIZE; i++)
		want[i] = gen(F_A, i);
	vol = open_rw();
	fl = open_file(vol, F_A);
	base = fl.ni->mft_no;
	for (int round = 1; round <= 40; round++) {
		struct ntfs_attr *na = fl.na;
		int64_t end = ntfs_rl_end_vcn(&na->rl), v, n;
		int op = (int)rnd(10);

		if (op < 5 && end < max_clusters - 600) {               /* append */
			n = 1 + (int64_t)rnd(600);
			for (v = end; v < end + n; v++)
				EXPECT_OK(ntfs_rl_replace(&na->rl, v, 1,
							  new_cluster(vol, &spacers, want, v)));
		} else if (op < 7 && end > 2) {                         /* punch holes */
			n = 1 + (int64_t)rnd(40);
			for (int64_t k = 0; k < n; k++) {
				v = (int64_t)rnd((uint64_t)end);
				EXPECT_OK(ntfs_rl_extract(&na->rl, v, 1, &drop));
				EXPECT_OK(ntfs_rl_replace(&na->rl, v, 1, LCN_HOLE));
				memset(want + v * CLUSTER, 0, CLUSTER);
			}
			sparse = true;
		} else if (op < 8 && end > 2) {                         /* fill holes */
			for (v = 0; v < end; v++)
				if (ntfs_rl_vcn_to_lcn(&na->rl, v, NULL) == LCN_HOLE && rnd(2))
					EXPECT_OK(ntfs_rl_replace(&na->rl, v, 1,
								  new_cluster(vol, &spacers, want, v)));
		} else if (op < 9 && end > 2) {                         /* relocate */
			int64_t from = (int64_t)rnd((uint64_t)end);

			n = 1 + (int64_t)rnd((uint64_t)(end - from < 100 ? end - from : 100));
			EXPECT_OK(ntfs_rl_extract(&na->rl, from, n, &drop));
			for (v = from; v < from + n; v++) {
				uint8_t keep[CLUSTER];

				memcpy(keep, want + v * CLUSTER, CLUSTER);
				EXPECT_OK(ntfs_rl_replace(&na->rl, v, 1,
							  new_cluster(vol, &spacers, want, v)));
				memcpy(want + v * CLUSTER, keep, CLUSTER);
				EXPECT_OK(ntfs_attr_pwrite_mapped(na, (uint64_t)v * CLUSTER, CLUSTER,
								  keep));
			}
		} else if (end > 0) {                                   /* cut */
			v = rnd(4) ? end / 2 + (int64_t)rnd((uint64_t)(end - end / 2)) : 0;
			EXPECT_OK(ntfs_rl_extract(&na->rl, v, end - v, &drop));
			EXPECT_OK(ntfs_rl_truncate(&na->rl, v));
			memset(want + v * CLUSTER, 0, (size_t)(end - v) * CLUSTER);
		}
		end = ntfs_rl_end_vcn(&na->rl);
		na->data_size = na->initialized_size = end ? (uint64_t)end * CLUSTER - rnd(CLUSTER) : 0;
		/* (want keeps the bytes past data_size: the disk still holds them
		 * and they are read again if the size grows over them) */
		if (getenv("NTFSD_TEST_VERBOSE"))
			print_message("round %d op %d: %lld clusters, %zu runs\n", round, op,
				      (long long)end, na->rl.count);
		if (ntfs_attr_update_mapping_pairs(na))
			fail_msg("round %d (op %d, %lld clusters, %zu runs): %s", round, op,
				 (long long)end, na->rl.count, ntfs_last_error());
		free_runs(vol, &drop);
		free_runs(vol, &spacers);
		assert_int_equal((na->flags & ATTR_IS_SPARSE) != 0, sparse);
		expect_attr_holds(&fl, want);
		if (round % 5)
			continue;
		EXPECT_OK(ntfs_rl_copy(&rl, &na->rl));
		{
			uint64_t size = na->data_size;
			struct layout l;

			file_close(&fl);
			ntfs_volume_close(vol);
			expect_cat(F_A, want, size);
			expect_layout(F_A, &rl, size, sparse ? ATTR_IS_SPARSE : 0, &l);
			if (l.has_al)
				expect_attr_list(F_A, base, &l, NULL, 0);
			else
				assert_int_equal(l.count, 1);
			layout_free(&l);
			testvol_expect_ntfsfix_clean(tv.scratch);
			expect_layer_reads(F_A, want, size);
		}
		vol = open_rw();
		fl = open_file(vol, F_A);
	}
	{
		int fs[1] = { F_A };
		uint64_t sz[1] = { fl.na->data_size };
		struct statvfs st;

		file_close(&fl);
		ntfs_volume_close(vol);
		expect_mount_reads(fs, &want, sz, 1, &st);
	}
	ntfs_runlist_free(&rl);
	free(want);
}

int main(void)
{
	const char *v = getenv("NTFSD_TEST_TIMEOUT");

	if (v && atoi(v) > 0)
		test_timeout = (unsigned)atoi(v);
	testvol_catch_timeout(&tv, "test_attr_list: a test did not finish in time\n");
	testvol_catch_abort(&tv);
#define T(fn) cmocka_unit_test_setup_teardown(fn, scratch_setup, scratch_teardown)
	const struct CMUnitTest tests[] = {
		T(test_list_codec),
		T(test_grow_into_attribute_list),
		T(test_shrink_frees_extension_records),
		T(test_ntfs3g_attribute_list_rewritten),
		T(test_sparse_named_stream),
		T(test_attribute_list_goes_nonresident),
		T(test_random_edits),
		T(test_no_free_record),
	};
#undef T
	alarm(900); /* the group setup too */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
