/*
 * ntfsd-read — the on-disk layer on the command line: volume information,
 * directory listings, file contents and attribute sizes, read straight from
 * an image or device without the daemon.  A debugging and demo tool; it
 * always opens the volume read-only.
 *
 * Invariants: never writes to the volume; every failure prints
 * "ntfsd-read: COMMAND PATH: reason" and exits 1 (2 for usage errors).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrib.h"
#include "dir.h"
#include "error.h"
#include "inode.h"
#include "le.h"
#include "mft.h"
#include "unistr.h"
#include "volume.h"

static const char *prog = "ntfsd-read";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s VOLUME COMMAND [ARGS]\n"
		"Read an NTFS volume (image or device) with ntfsd's on-disk layer.\n\n"
		"Commands:\n"
		"  info                 geometry, version, label and state of the volume\n"
		"  ls PATH              list a directory in index order (all name spaces)\n"
		"  cat PATH [STREAM]    write the file's data (or named stream) to stdout\n"
		"  stat PATH [STREAM]   sizes and flags of the file's $DATA attribute\n"
		"  streams PATH         list the file's named data streams\n\n"
		"Exit status: 0 success, 1 failure, 2 usage error.\n", prog);
}

static int fail(const char *cmd, const char *path, int err)
{
	fprintf(stderr, "%s: %s%s%s: %s\n", prog, cmd, path ? " " : "", path ? path : "",
		err == -ENOMEM ? strerror(ENOMEM) : ntfs_last_error());
	return 1;
}

static int cmd_info(struct ntfs_volume *vol)
{
	const struct ntfs_geometry *g = &vol->geo;

	printf("label:            %s\n", vol->label);
	printf("ntfs version:     %u.%u\n", vol->major_ver, vol->minor_ver);
	printf("sector size:      %u\n", g->sector_size);
	printf("cluster size:     %u\n", g->cluster_size);
	printf("clusters:         %llu\n", (unsigned long long)g->nr_clusters);
	printf("mft record size:  %u\n", g->mft_record_size);
	printf("index block size: %u\n", g->index_block_size);
	printf("mft records:      %llu\n", (unsigned long long)vol->nr_mft_records);
	printf("dirty:            %s\n", ntfs_volume_is_dirty(vol) ? "yes" : "no");
	printf("logfile clean:    %s\n", vol->logfile_clean ? "yes" : "no");
	printf("hibernated:       %s\n", vol->hibernated ? "yes" : "no");
	return 0;
}

static int print_entry(void *ctx, const struct ntfs_dirent *de)
{
	char *name;
	static const char *const ns[] = { "posix", "win32", "dos", "win32+dos" };

	(void)ctx;
	if (ntfs_utf16_to_utf8(de->name, de->name_len, &name))
		return ntfs_fail(EILSEQ, "a name in the directory is not valid UTF-16");
	printf("%-10s %8llu  %s\n", ns[de->name_type & 3],
	       (unsigned long long)(de->mref & 0xffffffffffffULL), name);
	free(name);
	return 0;
}

static int open_path(struct ntfs_volume *vol, const char *path, struct ntfs_inode **ni)
{
	uint64_t mref;
	int err = ntfs_path_lookup(vol, path, 0, &mref);

	return err ? err : ntfs_inode_open(vol, MREF(mref), ni);
}

static int open_data(struct ntfs_inode *ni, const char *stream, struct ntfs_attr **na)
{
	ntfschar *u = NULL;
	uint32_t ulen = 0;
	int err = 0;

	if (stream && (err = ntfs_utf8_to_utf16(stream, strlen(stream), &u, &ulen)))
		return ntfs_fail(-err, "invalid stream name");
	err = ntfs_attr_open(ni, AT_DATA, u, ulen, na);
	free(u);
	if (err == -ENOENT)
		return ntfs_fail(ENOENT, "no such data stream");
	return err;
}

static int cmd_cat(struct ntfs_attr *na)
{
	static uint8_t buf[1 << 20];
	uint64_t pos = 0;

	while (pos < na->data_size) {
		ssize_t n = ntfs_attr_pread(na, pos, sizeof(buf), buf);

		if (n < 0)
			return (int)n;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return ntfs_fail(EIO, "write to stdout: %s", strerror(errno));
		pos += (uint64_t)n;
	}
	return 0;
}

static void cmd_stat(struct ntfs_inode *ni, struct ntfs_attr *na)
{
	printf("mft record:       %llu\n", (unsigned long long)ni->mft_no);
	printf("file attributes:  0x%08x\n", ni->file_attributes);
	printf("resident:         %s\n", na->resident ? "yes" : "no");
	printf("compressed:       %s\n", na->flags & ATTR_IS_COMPRESSED ? "yes" : "no");
	printf("sparse:           %s\n", na->flags & ATTR_IS_SPARSE ? "yes" : "no");
	printf("encrypted:        %s\n", na->flags & ATTR_IS_ENCRYPTED ? "yes" : "no");
	printf("data size:        %llu\n", (unsigned long long)na->data_size);
	printf("initialized size: %llu\n", (unsigned long long)na->initialized_size);
	printf("allocated size:   %llu\n", (unsigned long long)na->allocated_size);
	if (!na->resident)
		printf("runs:             %zu\n", na->rl.count);
}

static int print_stream(void *ctx, const struct ntfs_attr_record *a, uint64_t mft_no)
{
	char *name;

	(void)ctx;
	(void)mft_no;
	if (le32(a->type) != AT_DATA || !a->name_length ||
	    (a->non_resident && le64(a->u.nr.lowest_vcn) != 0))
		return 0;
	if (ntfs_utf16_to_utf8(ntfs_attr_name(a), a->name_length, &name))
		return ntfs_fail(EILSEQ, "a stream name is not valid UTF-16");
	printf("%s\n", name);
	free(name);
	return 0;
}

int main(int argc, char **argv)
{
	struct ntfs_volume *vol;
	struct ntfs_inode *ni = NULL;
	struct ntfs_attr *na = NULL;
	const char *cmd, *path;
	int err;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc < 3) {
		usage(stderr);
		return 2;
	}
	cmd = argv[2];
	path = argc > 3 ? argv[3] : NULL;
	if (strcmp(cmd, "info") && !path) {
		usage(stderr);
		return 2;
	}
	err = ntfs_volume_open(argv[1], NTFS_OPEN_READ_ONLY, &vol);
	if (err)
		return fail("open", argv[1], err);
	if (!strcmp(cmd, "info")) {
		err = cmd_info(vol);
	} else if ((err = open_path(vol, path, &ni))) {
		/* reported below */
	} else if (!strcmp(cmd, "ls")) {
		err = ntfs_dir_foreach(ni, print_entry, NULL);
	} else if (!strcmp(cmd, "streams")) {
		err = ntfs_inode_foreach_attr(ni, print_stream, NULL);
	} else if (!strcmp(cmd, "cat") || !strcmp(cmd, "stat")) {
		err = open_data(ni, argc > 4 ? argv[4] : NULL, &na);
		if (!err && !strcmp(cmd, "cat"))
			err = cmd_cat(na);
		else if (!err)
			cmd_stat(ni, na);
	} else {
		ntfs_inode_close(ni);
		ntfs_volume_close(vol);
		fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
		return 2;
	}
	if (err)
		fail(cmd, path, err);
	ntfs_attr_close(na);
	ntfs_inode_close(ni);
	ntfs_volume_close(vol);
	return err ? 1 : 0;
}
