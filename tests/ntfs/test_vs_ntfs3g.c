/*
 * test_vs_ntfs3g — the on-disk layer against ntfs-3g's own tools.
 *
 * For every fixture volume made by tests/fixtures/mkfixtures.sh (mkntfs,
 * ntfscp, the ntfs-3g FUSE mount, ntfsfallocate), walk the whole tree with
 * our layer and, for every directory and file, require that:
 *  - the listing equals ntfsls's (as a set) and is in collation order;
 *  - every name resolves by path to the same MFT record it was listed with;
 *  - the unnamed $DATA and every named stream read byte-for-byte as ntfscat;
 *  - sizes and resident/compressed/sparse flags equal ntfsinfo's.
 * Then the features the fixtures promise are checked to really be there
 * (an attribute list, a deep index, compressed and sparse units,
 * initialized_size below data size), so a fixture regression cannot turn
 * this test into one that passes vacuously.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "attrib.h"
#include "collate.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "mft.h"
#include "le.h"
#include "unistr.h"
#include "volume.h"
#include "../support/oracle.h"

struct entry {
	char *name;                     /* UTF-8 */
	ntfschar *uname;
	uint32_t ulen;
	uint64_t mref;
	uint8_t name_type;
};

struct listing {
	struct entry *e;
	size_t count, cap;
};

struct stats {
	size_t dirs, files, streams, bytes_compared;
	size_t attr_list_files, compressed_files, sparse_files, prealloc_files;
	size_t deepest_dir_entries;
};

static const char *fixture_dir(void)
{
	const char *d = getenv("NTFSD_FIXTURE_DIR");

	if (!d)
		fail_msg("NTFSD_FIXTURE_DIR is not set: run through meson test");
	return d;
}

static char *fixture_path(const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", fixture_dir(), name) < 0)
		fail_msg("out of memory");
	return p;
}

static int collect(void *ctx, const struct ntfs_dirent *de)
{
	struct listing *l = ctx;
	struct entry *e;

	if (l->count == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->e = realloc(l->e, l->cap * sizeof(*l->e));
		assert_non_null(l->e);
	}
	e = &l->e[l->count++];
	assert_int_equal(ntfs_utf16_to_utf8(de->name, de->name_len, &e->name), 0);
	e->uname = malloc(de->name_len * 2);
	assert_non_null(e->uname);
	memcpy(e->uname, de->name, de->name_len * 2);
	e->ulen = de->name_len;
	e->mref = de->mref;
	e->name_type = de->name_type;
	return 0;
}

static void listing_free(struct listing *l)
{
	size_t i;

	for (i = 0; i < l->count; i++) {
		free(l->e[i].name);
		free(l->e[i].uname);
	}
	free(l->e);
}

static int strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name) < 0)
		fail_msg("out of memory");
	return p;
}

/* Our listing, DOS-only names left out, equals ntfsls's as a set. */
static void compare_listing(const char *img, const char *dir, const struct listing *l)
{
	char **ours = calloc(l->count + 1, sizeof(char *)), **theirs = NULL;
	size_t n = 0, tn = 0, i;

	assert_non_null(ours);
	for (i = 0; i < l->count; i++)
		if (l->e[i].name_type != FILE_NAME_DOS && strcmp(l->e[i].name, "."))
			ours[n++] = l->e[i].name;
	if (oracle_ls(img, dir, &theirs, &tn))
		fail_msg("%s: ntfsls %s failed", img, dir);
	oracle_drop_dots(theirs, &tn);
	qsort(ours, n, sizeof(char *), strcmp_p);
	qsort(theirs, tn, sizeof(char *), strcmp_p);
	if (n != tn)
		fail_msg("%s: %s: we list %zu names, ntfsls %zu", img, dir, n, tn);
	for (i = 0; i < n; i++)
		if (strcmp(ours[i], theirs[i]))
			fail_msg("%s: %s: name %zu differs: ours \"%s\", ntfsls \"%s\"", img, dir, i,
				 ours[i], theirs[i]);
	for (i = 0; i < tn; i++)
		free(theirs[i]);
	free(theirs);
	free(ours);
}

static void check_collation_order(struct ntfs_volume *vol, const char *dir,
				  const struct listing *l)
{
	size_t i;

	for (i = 1; i < l->count; i++)
		if (ntfs_file_name_collate(vol, l->e[i - 1].uname, l->e[i - 1].ulen, l->e[i].uname,
					   l->e[i].ulen) >= 0)
			fail_msg("%s: \"%s\" is listed before \"%s\": not in index order", dir,
				 l->e[i - 1].name, l->e[i].name);
}

static void compare_attr(const char *img, const char *path, const char *stream,
			 struct ntfs_attr *na, struct stats *st)
{
	struct oracle_attr oa;
	char *theirs = NULL;
	size_t tlen = 0;
	uint8_t *ours;
	ssize_t n;

	ours = malloc(na->data_size ? na->data_size : 1);
	assert_non_null(ours);
	n = ntfs_attr_pread(na, 0, na->data_size, ours);
	if (n < 0)
		fail_msg("%s: %s%s%s: read failed: %s", img, path, stream ? ":" : "",
			 stream ? stream : "", ntfs_last_error());
	assert_int_equal((uint64_t)n, na->data_size);
	if (oracle_cat(img, path, stream, &theirs, &tlen))
		fail_msg("%s: ntfscat %s failed", img, path);
	if (tlen != (size_t)n || memcmp(ours, theirs, tlen))
		fail_msg("%s: %s%s%s: bytes differ from ntfscat (ours %zd bytes, ntfscat %zu)",
			 img, path, stream ? ":" : "", stream ? stream : "", n, tlen);
	st->bytes_compared += tlen;
	free(theirs);
	free(ours);

	if (oracle_info(img, path, stream, &oa) || !oa.found)
		fail_msg("%s: ntfsinfo found no $DATA for %s%s%s", img, path, stream ? ":" : "",
			 stream ? stream : "");
	if (oa.resident != na->resident || oa.data_size != na->data_size)
		fail_msg("%s: %s: resident %d size %llu, ntfsinfo says resident %d size %llu", img,
			 path, na->resident, (unsigned long long)na->data_size, oa.resident,
			 (unsigned long long)oa.data_size);
	if (!na->resident && (oa.allocated_size != na->allocated_size ||
			      oa.initialized_size != na->initialized_size))
		fail_msg("%s: %s: allocated %llu initialized %llu, ntfsinfo says %llu %llu", img,
			 path, (unsigned long long)na->allocated_size,
			 (unsigned long long)na->initialized_size,
			 (unsigned long long)oa.allocated_size,
			 (unsigned long long)oa.initialized_size);
	if (oa.compressed != ntfs_attr_is_compressed(na) ||
	    oa.sparse != !!(na->flags & ATTR_IS_SPARSE))
		fail_msg("%s: %s: compressed/sparse flags %d/%d, ntfsinfo says %d/%d", img, path,
			 ntfs_attr_is_compressed(na), !!(na->flags & ATTR_IS_SPARSE),
			 oa.compressed, oa.sparse);
	if (ntfs_attr_is_compressed(na))
		st->compressed_files++;
	if (na->flags & ATTR_IS_SPARSE)
		st->sparse_files++;
	if (!na->resident && na->initialized_size < na->data_size)
		st->prealloc_files++;
}

struct stream_names {
	char *names[16];
	size_t count;
};

static int find_streams(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	struct stream_names *s = ctx;

	(void)mft_no;
	if (le32(a->type) != AT_DATA || !a->name_length ||
	    (a->non_resident && le64(a->u.nr.lowest_vcn)))
		return 0;
	assert_true(s->count < 16);
	assert_int_equal(ntfs_utf16_to_utf8(ntfs_attr_name(a), a->name_length,
					    &s->names[s->count]), 0);
	s->count++;
	return 0;
}

static void compare_file(struct ntfs_volume *vol, const char *img, const char *path,
			 uint64_t mref, struct stats *st)
{
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	struct stream_names sn = { .count = 0 };
	size_t i;

	if (ntfs_inode_open(vol, MREF(mref), &ni))
		fail_msg("%s: %s: %s", img, path, ntfs_last_error());
	if (ni->attr_list)
		st->attr_list_files++;
	if (ntfs_attr_open(ni, AT_DATA, NULL, 0, &na))
		fail_msg("%s: %s: no $DATA: %s", img, path, ntfs_last_error());
	compare_attr(img, path, NULL, na, st);
	ntfs_attr_close(na);
	assert_int_equal(ntfs_inode_foreach_attr(ni, find_streams, &sn), 0);
	for (i = 0; i < sn.count; i++) {
		ntfschar *u;
		uint32_t ulen;

		assert_int_equal(ntfs_utf8_to_utf16(sn.names[i], strlen(sn.names[i]), &u, &ulen), 0);
		if (ntfs_attr_open(ni, AT_DATA, u, ulen, &na))
			fail_msg("%s: %s:%s: %s", img, path, sn.names[i], ntfs_last_error());
		compare_attr(img, path, sn.names[i], na, st);
		ntfs_attr_close(na);
		free(u);
		free(sn.names[i]);
		st->streams++;
	}
	ntfs_inode_close(ni);
	st->files++;
}

static void walk_dir(struct ntfs_volume *vol, const char *img, const char *dir, uint64_t mref,
		     struct stats *st)
{
	struct listing l = { 0 };
	struct ntfs_inode *ni;
	size_t i;

	if (ntfs_inode_open(vol, MREF(mref), &ni))
		fail_msg("%s: %s: %s", img, dir, ntfs_last_error());
	if (ntfs_dir_foreach(ni, collect, &l))
		fail_msg("%s: %s: listing failed: %s", img, dir, ntfs_last_error());
	ntfs_inode_close(ni);
	check_collation_order(vol, dir, &l);
	compare_listing(img, dir, &l);
	if (l.count > st->deepest_dir_entries)
		st->deepest_dir_entries = l.count;
	st->dirs++;
	for (i = 0; i < l.count; i++) {
		struct entry *e = &l.e[i];
		struct ntfs_inode *child;
		uint64_t found;
		char *path;
		bool is_dir;

		if (e->name_type == FILE_NAME_DOS || !strcmp(e->name, "."))
			continue;
		if (MREF(e->mref) < FILE_first_user)
			continue;  /* system files: not user data, and ntfscat of them is slow */
		path = join(dir, e->name);
		if (ntfs_path_lookup(vol, path, 0, &found))
			fail_msg("%s: %s: lookup failed: %s", img, path, ntfs_last_error());
		if (found != e->mref)
			fail_msg("%s: %s: lookup gives record %llu, listing %llu", img, path,
				 (unsigned long long)MREF(found), (unsigned long long)MREF(e->mref));
		if (ntfs_inode_open(vol, MREF(e->mref), &child))
			fail_msg("%s: %s: %s", img, path, ntfs_last_error());
		is_dir = ntfs_inode_is_dir(child);
		ntfs_inode_close(child);
		if (is_dir)
			walk_dir(vol, img, path, e->mref, st);
		else
			compare_file(vol, img, path, e->mref, st);
		free(path);
	}
	listing_free(&l);
}

static void compare_volume(const char *name, struct stats *st)
{
	char *img = fixture_path(name);
	struct ntfs_volume *vol;

	if (ntfs_volume_open(img, NTFS_OPEN_READ_ONLY, &vol))
		fail_msg("%s: %s", img, ntfs_last_error());
	assert_false(vol->hibernated);
	assert_true(vol->logfile_clean);
	walk_dir(vol, img, "/", FILE_root, st);
	print_message("%s: %zu directories, %zu files, %zu named streams, %zu bytes compared "
		      "with ntfscat\n", name, st->dirs, st->files, st->streams,
		      st->bytes_compared);
	ntfs_volume_close(vol);
	free(img);
}

static void vol4k_matches_ntfs3g(void **state)
{
	struct stats st = { 0 };

	(void)state;
	compare_volume("vol4k.img", &st);
	/* The fixture must really exercise what it promises. */
	assert_true(st.attr_list_files >= 1);
	assert_true(st.compressed_files >= 3);
	assert_true(st.sparse_files >= 1);
	assert_true(st.prealloc_files >= 1);
	assert_true(st.streams >= 2);
	assert_true(st.deepest_dir_entries >= 2000);
}

static void vol512_matches_ntfs3g(void **state)
{
	struct stats st = { 0 };

	(void)state;
	compare_volume("vol512.img", &st);
	assert_true(st.attr_list_files >= 1);
	assert_true(st.compressed_files >= 1);
	assert_true(st.streams >= 1);
}

static void vol64k_matches_ntfs3g(void **state)
{
	struct stats st = { 0 };

	(void)state;
	compare_volume("vol64k.img", &st);
	assert_true(st.sparse_files >= 1);
	assert_true(st.streams >= 1);
	assert_true(st.deepest_dir_entries >= 300);
}

/* The 2000-entry directory's index must be a tree of depth >= 2 so that the
 * B+-tree code is exercised; ntfs-3g must agree it has an allocation. */
static void bigdir_is_a_deep_index(void **state)
{
	char *img = fixture_path("vol4k.img");
	bool has_alloc = false;

	(void)state;
	assert_int_equal(oracle_has_attr(img, "/bigdir", "$INDEX_ALLOCATION", &has_alloc), 0);
	assert_true(has_alloc);
	free(img);
}

/* Lookups are case-sensitive exactly where ntfs-3g's are: for every name in
 * /unicode, an upper-cased spelling resolves for us iff it does for ntfscat,
 * and then to the same bytes. */
static void lookup_case_matches_ntfs3g(void **state)
{
	static const char *const probes[] = { "/unicode/case.txt", "/unicode/CASE.TXT",
					      "/unicode/Case.txt", "/UNICODE/Case.txt",
					      "/unicode/case2.txt", "/unicode/CASE2.txt",
					      "/unicode/Case2.txt", "/SMALL.TXT" };
	char *img = fixture_path("vol4k.img");
	struct ntfs_volume *vol;
	size_t i;

	(void)state;
	assert_int_equal(ntfs_volume_open(img, NTFS_OPEN_READ_ONLY, &vol), 0);
	for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		uint64_t mref;
		char *data = NULL;
		size_t len = 0;
		bool ours = ntfs_path_lookup(vol, probes[i], 0, &mref) == 0;
		bool theirs = oracle_cat(img, probes[i], NULL, &data, &len) == 0;

		if (ours != theirs)
			fail_msg("%s: we %s it, ntfscat %s it", probes[i], ours ? "find" : "miss",
				 theirs ? "finds" : "misses");
		free(data);
	}
	ntfs_volume_close(vol);
	free(img);
}

/* Stale bytes on the disk past initialized_size must never show: poison the
 * clusters of /prealloc.bin beyond its initialized size in a copy of the
 * volume, then both ntfscat and we must still read zeroes there. */
static char *poison_copy;  /* removed by the group teardown if a test failed */

static void uninitialized_range_reads_zeroes(void **state)
{
	char *img = fixture_path("vol4k.img"), *copy, *theirs = NULL, cmd[1024];
	struct ntfs_volume *vol;
	struct ntfs_inode *ni;
	struct ntfs_attr *na;
	uint64_t mref, pos, poisoned = 0;
	uint8_t *ours, junk[4096];
	size_t tlen = 0;
	FILE *f;

	(void)state;
	assert_true(asprintf(&copy, "%s.poison", img) > 0);
	poison_copy = copy;
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", img, copy);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(ntfs_volume_open(copy, NTFS_OPEN_READ_ONLY, &vol), 0);
	assert_int_equal(ntfs_path_lookup(vol, "/prealloc.bin", 0, &mref), 0);
	assert_int_equal(ntfs_inode_open(vol, MREF(mref), &ni), 0);
	assert_int_equal(ntfs_attr_open(ni, AT_DATA, NULL, 0, &na), 0);
	assert_true(na->initialized_size < na->data_size);
	memset(junk, 0x5a, sizeof(junk));
	f = fopen(copy, "r+");
	assert_non_null(f);
	/* every whole cluster past the initialized size */
	for (pos = (na->initialized_size + vol->geo.cluster_size - 1) &
		   ~(uint64_t)(vol->geo.cluster_size - 1);
	     pos < na->data_size; pos += vol->geo.cluster_size) {
		int64_t lcn = ntfs_rl_vcn_to_lcn(&na->rl, (int64_t)(pos >> vol->geo.cluster_size_bits),
						 NULL);

		if (lcn < 0)
			continue;
		assert_int_equal(fseeko(f, (off_t)((uint64_t)lcn << vol->geo.cluster_size_bits),
					SEEK_SET), 0);
		assert_int_equal(fwrite(junk, 1, vol->geo.cluster_size, f), vol->geo.cluster_size);
		poisoned++;
	}
	assert_int_equal(fclose(f), 0);
	assert_true(poisoned > 0);
	ours = malloc(na->data_size);
	assert_non_null(ours);
	assert_int_equal(ntfs_attr_pread(na, 0, na->data_size, ours), (ssize_t)na->data_size);
	assert_int_equal(oracle_cat(copy, "/prealloc.bin", NULL, &theirs, &tlen), 0);
	assert_int_equal(tlen, na->data_size);
	assert_memory_equal(ours, theirs, tlen);
	for (pos = na->initialized_size; pos < na->data_size; pos++)
		if (ours[pos])
			fail_msg("byte %llu past initialized_size reads 0x%02x",
				 (unsigned long long)pos, ours[pos]);
	free(ours);
	free(theirs);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	ntfs_volume_close(vol);
	unlink(copy);
	poison_copy = NULL;
	free(copy);
	free(img);
}

static void hibernated_volume_refused_read_write(void **state)
{
	char *img = fixture_path("hiber.img");
	struct ntfs_volume *vol;

	(void)state;
	assert_int_equal(ntfs_volume_open(img, 0, &vol), -EPERM);
	assert_non_null(strstr(ntfs_last_error(), "hibernated"));
	assert_non_null(strstr(ntfs_last_error(), "read-only"));
	assert_int_equal(ntfs_volume_open(img, NTFS_OPEN_READ_ONLY, &vol), 0);
	assert_true(vol->hibernated);
	ntfs_volume_close(vol);
	free(img);
}

static void clean_volume_opens_read_write(void **state)
{
	char *img = fixture_path("vol4k.img");
	struct ntfs_volume *vol;

	(void)state;
	if (ntfs_volume_open(img, 0, &vol))
		fail_msg("%s", ntfs_last_error());
	assert_false(ntfs_volume_is_dirty(vol));
	assert_int_equal(vol->major_ver, 3);
	assert_int_equal(vol->minor_ver, 1);
	ntfs_volume_close(vol);
	free(img);
}

static int remove_scratch(void **state)
{
	(void)state;
	if (poison_copy)
		unlink(poison_copy);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vol4k_matches_ntfs3g),
		cmocka_unit_test(vol512_matches_ntfs3g),
		cmocka_unit_test(vol64k_matches_ntfs3g),
		cmocka_unit_test(bigdir_is_a_deep_index),
		cmocka_unit_test(lookup_case_matches_ntfs3g),
		cmocka_unit_test(uninitialized_range_reads_zeroes),
		cmocka_unit_test(hibernated_volume_refused_read_write),
		cmocka_unit_test(clean_volume_opens_read_write),
	};

	return cmocka_run_group_tests(tests, NULL, remove_scratch);
}
