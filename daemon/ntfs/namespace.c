/*
 * namespace.c — see namespace.h: ntfs_create() and ntfs_unlink().
 *
 * Invariants (beyond the header's): a new record is built in a private
 * buffer from the empty record ntfs_mft_record_alloc() formatted (read
 * back under vol->mft_lock) and written once, complete.  unlink decides
 * everything it will do (the names to drop, whether the inode goes, the
 * clusters it holds) from the records as they are before its first
 * write, and writes in the order the header gives.
 */
#include "namespace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attrib.h"
#include "error.h"
#include "index.h"
#include "inode_times.h"
#include "inode.h"
#include "lcnalloc.h"
#include "le.h"
#include "mft.h"
#include "mftalloc.h"
#include "attr_write.h"
#include "runlist.h"
#include "unistr.h"
#include "volume.h"

#define NS_ALIGN8(x) (((x) + 7u) & ~7u)
#define SI_V1_SIZE 48u   /* NTFS 1.2 $STANDARD_INFORMATION */
#define SI_V3_SIZE 72u   /* NTFS 3.x: owner id, security id, quota, usn follow */
#define SI_OWNER_ID 48u
#define SI_SECURITY_ID 52u
#define RESIDENT_ATTR_IS_INDEXED 0x01
/* What a directory's record must keep free for its index to move out of
 * the record later (index.c's root_convert): $INDEX_ALLOCATION:$I30 with
 * a short runlist, $BITMAP:$I30, and the root's END entry gaining a VCN. */
#define DIR_GROWTH_ROOM (80u + 40u + 8u)

static const union {
	uint8_t bytes[8];
	ntfschar units[4];
} i30 = { .bytes = { '$', 0, 'I', 0, '3', 0, '0', 0 } };

/* Self-relative security descriptor: Everyone full access, inherited by
 * files and directories; owner and group BUILTIN\Administrators (the one
 * ntfs-3g gives files it creates without a security id). */
static const uint8_t sd_everyone[80] = {
	0x01, 0x00, 0x04, 0x80,             /* revision 1, SE_DACL_PRESENT | SE_SELF_RELATIVE */
	0x30, 0x00, 0x00, 0x00,             /* owner at 48 */
	0x40, 0x00, 0x00, 0x00,             /* group at 64 */
	0x00, 0x00, 0x00, 0x00,             /* no SACL */
	0x14, 0x00, 0x00, 0x00,             /* DACL at 20 */
	0x02, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, /* ACL rev 2, 28 bytes, 1 ACE */
	0x00, 0x03, 0x14, 0x00,             /* ACCESS_ALLOWED, OI|CI, 20 bytes */
	0xff, 0x01, 0x1f, 0x00,             /* FILE_ALL_ACCESS */
	0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* S-1-1-0 */
	0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00,
	0x20, 0x02, 0x00, 0x00,             /* S-1-5-32-544 */
	0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00,
	0x20, 0x02, 0x00, 0x00,             /* S-1-5-32-544 */
};

/* ---- names ---- */

static uint16_t unit_at(const ntfschar *name, uint32_t i)
{
	return get_le16((const uint8_t *)name + 2 * i);
}

static uint16_t ascii_upper(uint16_t c)
{
	return c >= 'a' && c <= 'z' ? (uint16_t)(c - 32) : c;
}

/* name[0, len) equals the ASCII word w ignoring ASCII case. */
static bool ascii_equal(const ntfschar *name, uint32_t len, const char *w)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		if (!w[i] || ascii_upper(unit_at(name, i)) != (uint16_t)w[i])
			return false;
	return !w[i];
}

/* A Win32 reserved device name: CON, PRN, AUX, NUL, COM1-9, LPT1-9, alone
 * or followed by a dot and anything. */
static bool win32_reserved(const ntfschar *name, uint32_t len)
{
	static const char *const words[] = { "CON", "PRN", "AUX", "NUL" };
	uint32_t stem = 0;

	while (stem < len && unit_at(name, stem) != '.')
		stem++;
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
		if (ascii_equal(name, stem, words[w]))
			return true;
	if (stem == 4 && (ascii_equal(name, 3, "COM") || ascii_equal(name, 3, "LPT")) &&
	    unit_at(name, 3) >= '1' && unit_at(name, 3) <= '9')
		return true;
	return false;
}

/* A valid DOS 8.3 name as Windows stores one: 1 to 8 characters, then
 * optionally a dot and 1 to 3 more, of upper-case letters, digits and
 * ! # $ % & ' ( ) - @ ^ _ ` { } ~ (ASCII only, no lower case). */
static bool dos_valid(const ntfschar *name, uint32_t len)
{
	static const char extra[] = "!#$%&'()-@^_`{}~";
	uint32_t base = 0, ext = 0;
	bool dot = false;

	for (uint32_t i = 0; i < len; i++) {
		uint16_t c = unit_at(name, i);

		if (c == '.') {
			if (dot || !base)
				return false;
			dot = true;
			continue;
		}
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c < 0x80 && c && strchr(extra, (char)c))))
			return false;
		if (dot ? ++ext > 3 : ++base > 8)
			return false;
	}
	return base && (!dot || ext);
}

int ntfs_name_check(const ntfschar *name, uint32_t len, uint8_t *name_space)
{
	static const char forbidden[] = "\"*<>?:|\\/";
	uint16_t last;

	if (len == 0)
		return ntfs_fail(EINVAL, "an empty name is not allowed");
	if (len > NTFS_MAX_NAME_LEN)
		return ntfs_fail(ENAMETOOLONG, "a name of %u UTF-16 units is longer than the 255 "
				 "NTFS allows", len);
	if ((len == 1 && unit_at(name, 0) == '.') ||
	    (len == 2 && unit_at(name, 0) == '.' && unit_at(name, 1) == '.'))
		return ntfs_fail(EINVAL, "\".\" and \"..\" cannot be names of a directory entry");
	for (uint32_t i = 0; i < len; i++) {
		uint16_t c = unit_at(name, i);

		if (c < 0x20)
			return ntfs_fail(EINVAL, "a name with the control character U+%04X (at %u) "
					 "is not allowed", c, i);
		if (c < 0x80 && strchr(forbidden, (char)c))
			return ntfs_fail(EINVAL, "a name with '%c' (at %u) is not allowed: Win32 "
					 "forbids \" * < > ? : | \\ and POSIX '/'", (char)c, i);
	}
	last = unit_at(name, len - 1);
	if (last == '.' || last == ' ' || win32_reserved(name, len))
		*name_space = FILE_NAME_POSIX;
	else
		*name_space = dos_valid(name, len) ? FILE_NAME_WIN32_AND_DOS : FILE_NAME_POSIX;
	return 0;
}

/* ---- create ---- */

/* Append a resident attribute to rec (before its end marker); -E2BIG
 * when it does not fit. */
/* A resident attribute at offset off of rec (an attribute boundary). */
static int add_resident_at(uint8_t *rec, uint32_t off, uint32_t type, const ntfschar *name,
			   uint8_t name_len, const void *value, uint32_t vlen, uint8_t resident_flags)
{
	struct ntfs_mft_record *m = (void *)rec;
	uint32_t voff = NS_ALIGN8(NTFS_ATTR_RESIDENT_HEADER_SIZE + 2u * name_len);
	uint32_t len = NS_ALIGN8(voff + vlen);
	uint16_t inst = le16(m->next_attr_instance);
	struct ntfs_attr_record *a;

	a = ntfs_attr_record_insert(rec, off, type, len);
	if (!a)
		return -E2BIG;
	a->name_length = name_len;
	a->name_offset = cpu_to_le16(NTFS_ATTR_RESIDENT_HEADER_SIZE);
	a->instance = cpu_to_le16(inst);
	a->u.r.value_length = cpu_to_le32(vlen);
	a->u.r.value_offset = cpu_to_le16((uint16_t)voff);
	a->u.r.resident_flags = resident_flags;
	if (name_len)
		memcpy((uint8_t *)a + NTFS_ATTR_RESIDENT_HEADER_SIZE, name, 2u * name_len);
	if (vlen)
		memcpy((uint8_t *)a + voff, value, vlen);
	m->next_attr_instance = cpu_to_le16((uint16_t)(inst + 1));
	return 0;
}

/* The same at the end of rec (a record built in attribute order). */
static int add_resident(uint8_t *rec, uint32_t type, const ntfschar *name, uint8_t name_len,
			const void *value, uint32_t vlen, uint8_t resident_flags)
{
	return add_resident_at(rec, le32(((struct ntfs_mft_record *)rec)->bytes_in_use) - 8, type,
			       name, name_len, value, vlen, resident_flags);
}

/* The parent's security id and owner id, when its $STANDARD_INFORMATION
 * has them (NTFS 3.x) and the security id is set. */
static bool parent_security(const struct ntfs_inode *dir, uint32_t *security_id,
			    uint32_t *owner_id)
{
	const struct ntfs_attr_record *a = ntfs_record_find_attr(dir->mrec, AT_STANDARD_INFORMATION);
	const uint8_t *v;
	uint32_t len;

	if (!a || a->non_resident)
		return false;
	v = ntfs_attr_value(a, &len);
	if (len < SI_V3_SIZE)
		return false;
	*owner_id = get_le32(v + SI_OWNER_ID);
	*security_id = get_le32(v + SI_SECURITY_ID);
	return *security_id != 0;
}

/* Fill the empty in-use record rec (record no, from ntfs_mft_record_alloc)
 * as the new inode; fn is its $FILE_NAME value (fn_len bytes). */
static int build_record(struct ntfs_volume *vol, struct ntfs_inode *dir, uint8_t *rec,
			uint64_t no, bool is_dir, const struct ntfs_file_name *fn, uint32_t fn_len,
			uint64_t now)
{
	struct ntfs_mft_record *m = (void *)rec;
	uint8_t si[SI_V3_SIZE] = { 0 };
	struct ntfs_standard_information *s = (void *)si;
	uint32_t security_id = 0, owner_id = 0, si_len = SI_V1_SIZE;
	bool with_sd = true;
	int err;

	s->creation_time = s->last_data_change_time = cpu_to_le64(now);
	s->last_mft_change_time = s->last_access_time = cpu_to_le64(now);
	s->file_attributes = cpu_to_le32(is_dir ? 0 : FILE_ATTR_ARCHIVE);
	if (parent_security(dir, &security_id, &owner_id)) {
		si_len = SI_V3_SIZE;
		memcpy(si + SI_OWNER_ID, &(uint32_t){ cpu_to_le32(owner_id) }, 4);
		memcpy(si + SI_SECURITY_ID, &(uint32_t){ cpu_to_le32(security_id) }, 4);
		with_sd = false;
	}
	err = add_resident(rec, AT_STANDARD_INFORMATION, NULL, 0, si, si_len, 0);
	if (!err)
		err = add_resident(rec, AT_FILE_NAME, NULL, 0, fn, fn_len, RESIDENT_ATTR_IS_INDEXED);
	if (!err && with_sd && is_dir) {
		/* the record as it will be with the descriptor and the index
		 * root, against what the index needs to grow */
		uint32_t in_use = le32(m->bytes_in_use);
		uint32_t sd = NS_ALIGN8(NTFS_ATTR_RESIDENT_HEADER_SIZE + sizeof(sd_everyone));
		uint32_t root = NS_ALIGN8(NTFS_ATTR_RESIDENT_HEADER_SIZE + 8u +
					  sizeof(struct ntfs_index_root) + 16u);

		if (in_use + sd + root + DIR_GROWTH_ROOM > vol->geo.mft_record_size)
			with_sd = false;
	}
	if (!err && with_sd)
		err = add_resident(rec, AT_SECURITY_DESCRIPTOR, NULL, 0, sd_everyone,
				   sizeof(sd_everyone), 0);
	if (!err && !is_dir) {
		err = add_resident(rec, AT_DATA, NULL, 0, NULL, 0, 0);
	} else if (!err) {
		uint8_t v[sizeof(struct ntfs_index_root) + 16] = { 0 };
		struct ntfs_index_root *ir = (void *)v;
		uint32_t bs = vol->geo.index_block_size;

		ir->type = cpu_to_le32(AT_FILE_NAME);
		ir->collation_rule = cpu_to_le32(COLLATION_FILE_NAME);
		ir->index_block_size = cpu_to_le32(bs);
		ir->clusters_per_index_block = (int8_t)(bs >= vol->geo.cluster_size
							? bs >> vol->geo.cluster_size_bits
							: bs >> NTFS_BLOCK_SIZE_BITS);
		ir->index.entries_offset = cpu_to_le32(16);
		ir->index.index_length = cpu_to_le32(32);
		ir->index.allocated_size = cpu_to_le32(32);
		/* the END entry: length 16, flags INDEX_ENTRY_END */
		put_le16(v + sizeof(*ir) + 8, 16);
		put_le16(v + sizeof(*ir) + 12, INDEX_ENTRY_END);
		err = add_resident(rec, AT_INDEX_ROOT, i30.units, 4, v, sizeof(v), 0);
	}
	if (err == -E2BIG)
		return ntfs_fail(ENOSPC, "MFT record %llu: the new inode's attributes do not fit "
				 "in one record", (unsigned long long)no);
	if (err)
		return err;
	m->link_count = cpu_to_le16(1);
	m->flags = cpu_to_le16(MFT_RECORD_IN_USE | (is_dir ? MFT_RECORD_IS_DIRECTORY : 0));
	return 0;
}

/* What create and unlink check first: a writable volume, a directory,
 * a name in UTF-8 (*u its UTF-16, the caller frees it). */
static int name_in_dir(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name,
		       const char *verb, ntfschar **u, uint32_t *ulen)
{
	int err;

	if (vol->flags & NTFS_OPEN_READ_ONLY)
		return ntfs_fail(EROFS, "%s: cannot %s: volume opened read-only", vol->dev->path,
				 verb);
	if (!ntfs_inode_is_dir(dir))
		return ntfs_fail(ENOTDIR, "MFT record %llu: not a directory",
				 (unsigned long long)dir->mft_no);
	err = ntfs_utf8_to_utf16(name, strlen(name), u, ulen);
	if (err == -EILSEQ)
		return ntfs_fail(EILSEQ, "directory MFT record %llu: the name to %s is not "
				 "valid UTF-8", (unsigned long long)dir->mft_no, verb);
	return err;
}

int ntfs_create(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name, bool is_dir,
		uint64_t *mft_no)
{
	struct ntfs_file_name *fn = NULL;
	ntfschar *u = NULL;
	uint8_t *rec = NULL, ns;
	uint32_t ulen, fn_len;
	uint64_t no = 0, mref, now;
	bool allocated = false;
	int err;

	err = name_in_dir(vol, dir, name, "create", &u, &ulen);
	if (err)
		return err;
	err = ntfs_name_check(u, ulen, &ns);
	if (err)
		goto out;
	err = ntfs_index_lookup(dir, u, ulen, NTFS_INDEX_ANY_CASE, &mref, NULL);
	if (!err) {
		err = ntfs_fail(EEXIST, "directory MFT record %llu: \"%s\" exists already (as MFT "
				"record %llu, maybe in another case)",
				(unsigned long long)dir->mft_no, name,
				(unsigned long long)MREF(mref));
		goto out;
	}
	if (err != -ENOENT)
		goto out;
	ntfs_clear_error();
	fn_len = (uint32_t)sizeof(*fn) + 2u * ulen;
	fn = calloc(1, fn_len);
	rec = malloc(vol->geo.mft_record_size);
	if (!fn || !rec) {
		err = -ENOMEM;
		goto out;
	}
	now = ntfs_time_now();
	fn->parent_directory = cpu_to_le64((uint64_t)dir->seq_no << 48 | dir->mft_no);
	fn->creation_time = fn->last_data_change_time = cpu_to_le64(now);
	fn->last_mft_change_time = fn->last_access_time = cpu_to_le64(now);
	fn->file_attributes = cpu_to_le32(is_dir ? FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT
						 : FILE_ATTR_ARCHIVE);
	fn->file_name_length = (uint8_t)ulen;
	fn->file_name_type = ns;
	memcpy(fn + 1, u, 2u * ulen);

	/* 1: the record, complete and in use, referenced by nothing yet */
	err = ntfs_mft_record_alloc(vol, 0, 0, &no);
	if (err)
		goto out;
	allocated = true;
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, no, rec);
	if (!err)
		err = build_record(vol, dir, rec, no, is_dir, fn, fn_len, now);
	if (!err)
		err = ntfs_mft_record_write(vol, no, rec);
	pthread_mutex_unlock(&vol->mft_lock);
	if (err)
		goto out;
	mref = (uint64_t)le16(((const struct ntfs_mft_record *)rec)->sequence_number) << 48 | no;
	ntfs_crashpoint("create-before-entry");
	/* 2: the entry that points at it */
	err = ntfs_index_add(dir, fn, mref);
	if (err)
		goto out;
	allocated = false;
	*mft_no = no;
out:
	if (allocated) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		if (ntfs_mft_record_free(vol, no))
			ntfs_error("%s; MFT record %llu allocated for it could not be freed (leaked): "
				   "%s", msg, (unsigned long long)no, ntfs_last_error());
		else
			ntfs_error("%s", msg);
	}
	free(u);
	free(fn);
	free(rec);
	return err;
}

/* ---- unlink ---- */

struct fn_scan {
	uint64_t dir_no;
	const ntfschar *name;
	uint32_t len;
	/* found: the link's $FILE_NAME, and the DOS twin of a Win32 name */
	bool found, twin;
	uint8_t type;
	uint64_t rec_no, twin_rec_no;
	uint16_t instance, twin_instance;
	ntfschar twin_name[NTFS_MAX_NAME_LEN];
	uint32_t twin_len;
	/* non-resident attributes (first extents), to free */
	struct { uint32_t type; ntfschar name[255]; uint8_t name_len; } *nr;
	size_t nnr, nr_cap;
	const struct ntfs_attr_record *attr_list;
};

static int scan_attr(void *ctx, const struct ntfs_attr_record *a, uint64_t rec_no)
{
	struct fn_scan *sc = ctx;
	uint32_t type = le32(a->type);

	if (type == AT_FILE_NAME && !a->non_resident) {
		uint32_t vlen;
		const struct ntfs_file_name *fn = (const void *)ntfs_attr_value(a, &vlen);

		if (vlen < sizeof(*fn) || sizeof(*fn) + 2u * fn->file_name_length > vlen ||
		    MREF(le64(fn->parent_directory)) != sc->dir_no)
			return 0;
		if (fn->file_name_type == FILE_NAME_DOS) {
			sc->twin_rec_no = rec_no;
			sc->twin_instance = le16(a->instance);
			sc->twin_len = fn->file_name_length;
			memcpy(sc->twin_name, fn + 1, 2u * fn->file_name_length);
			sc->twin = true;
		}
		if (fn->file_name_length == sc->len &&
		    !memcmp(fn + 1, sc->name, 2u * sc->len) && !sc->found) {
			sc->found = true;
			sc->type = fn->file_name_type;
			sc->rec_no = rec_no;
			sc->instance = le16(a->instance);
		}
		return 0;
	}
	if (a->non_resident && type != AT_ATTRIBUTE_LIST && sle64(a->u.nr.lowest_vcn) == 0) {
		if (sc->nnr == sc->nr_cap) {
			size_t cap = sc->nr_cap ? sc->nr_cap * 2 : 8;
			void *p = realloc(sc->nr, cap * sizeof(*sc->nr));

			if (!p)
				return -ENOMEM;
			sc->nr = p;
			sc->nr_cap = cap;
		}
		sc->nr[sc->nnr].type = type;
		sc->nr[sc->nnr].name_len = a->name_length;
		memcpy(sc->nr[sc->nnr].name, ntfs_attr_name(a), 2u * a->name_length);
		sc->nnr++;
	}
	return 0;
}

/* Remove the $FILE_NAME attributes (instances) the unlinked names had from
 * the base record and store the new link count: the inode keeps other
 * names. */
static int drop_names(struct ntfs_inode *ni, const struct fn_scan *sc, bool with_twin,
		      uint16_t links)
{
	struct ntfs_volume *vol = ni->vol;
	uint8_t *rec = malloc(vol->geo.mft_record_size);
	struct ntfs_attr_record *a;
	int err;

	if (!rec)
		return -ENOMEM;
	if (sc->rec_no != ni->mft_no || (with_twin && sc->twin_rec_no != ni->mft_no)) {
		free(rec);
		return ntfs_fail(EOPNOTSUPP, "MFT record %llu: the $FILE_NAME to remove lies in an "
				 "extension record; not implemented", (unsigned long long)ni->mft_no);
	}
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, ni->mft_no, rec);
	if (!err) {
		a = ntfs_mft_record_find_instance(rec, AT_FILE_NAME, sc->instance);
		if (a)
			ntfs_attr_record_remove(rec, a);
		if (with_twin && (a = ntfs_mft_record_find_instance(rec, AT_FILE_NAME,
								     sc->twin_instance)))
			ntfs_attr_record_remove(rec, a);
		((struct ntfs_mft_record *)rec)->link_count = cpu_to_le16(links);
		err = ntfs_mft_record_write(vol, ni->mft_no, rec);
		if (!err) {
			memcpy(ni->mrec, rec, vol->geo.mft_record_size);
			ni->link_count = links;
		}
	}
	pthread_mutex_unlock(&vol->mft_lock);
	free(rec);
	return err;
}

/* Free inode ni: its base record, its extension records, then the
 * clusters of the runlists in rls (copied while the records were in use). */
static int free_inode(struct ntfs_inode *ni, struct ntfs_runlist *rls, size_t nrl)
{
	struct ntfs_volume *vol = ni->vol;
	int err, first = 0;

	err = ntfs_mft_record_free(vol, ni->mft_no);
	if (err)
		return err;
	for (uint32_t off = 0; ni->attr_list && off < ni->attr_list_size;) {
		const struct ntfs_attr_list_entry *e = (const void *)(ni->attr_list + off);
		uint64_t rec_no = MREF(le64(e->mft_reference));
		bool seen = rec_no == ni->mft_no;

		/* each extension record once */
		for (uint32_t o2 = 0; o2 < off && !seen;) {
			const struct ntfs_attr_list_entry *p = (const void *)(ni->attr_list + o2);

			seen = MREF(le64(p->mft_reference)) == rec_no;
			o2 += le16(p->length);
		}
		if (!seen && (err = ntfs_mft_record_free(vol, rec_no)) && !first)
			first = err;
		off += le16(e->length);
	}
	ntfs_crashpoint("unlink-before-free");
	for (size_t i = 0; i < nrl; i++)
		if (rls[i].count && (err = ntfs_cluster_free_from_rl(vol, &rls[i], 0)) && !first)
			first = err;
	return first;
}

/* The runlists of every non-resident attribute sc found in ni, and of a
 * non-resident $ATTRIBUTE_LIST, copied into *rls (*nrl of them). */
static int copy_runlists(struct ntfs_inode *ni, const struct fn_scan *sc,
			 struct ntfs_runlist **rls, size_t *nrl)
{
	const struct ntfs_attr_record *al = NULL;
	struct ntfs_attr_iter it;
	int err = 0;

	*nrl = 0;
	*rls = calloc(sc->nnr + 1, sizeof(**rls));
	if (!*rls)
		return -ENOMEM;
	for (size_t i = 0; i < sc->nnr && !err; i++) {
		struct ntfs_attr *na;

		err = ntfs_attr_open(ni, sc->nr[i].type, sc->nr[i].name_len ? sc->nr[i].name : NULL,
				     sc->nr[i].name_len, &na);
		if (!err) {
			err = ntfs_rl_copy(&(*rls)[(*nrl)++], &na->rl);
			ntfs_attr_close(na);
		}
	}
	ntfs_attr_iter_init(&it, ni->mrec);
	while (!err && ntfs_attr_iter_next(&it, &al))
		if (le32(al->type) == AT_ATTRIBUTE_LIST) {
			struct ntfs_attr *na;

			if (!al->non_resident)
				break;
			err = ntfs_attr_open_record(ni, al, &na);
			if (!err) {
				err = ntfs_rl_copy(&(*rls)[(*nrl)++], &na->rl);
				ntfs_attr_close(na);
			}
			break;
		}
	return err;
}

int ntfs_free_orphan(struct ntfs_volume *vol, uint64_t mft_no)
{
	struct fn_scan sc = { .dir_no = UINT64_MAX };
	struct ntfs_runlist *rls = NULL;
	struct ntfs_inode *ni = NULL;
	size_t nrl = 0;
	int err;

	if (vol->flags & NTFS_OPEN_READ_ONLY)
		return ntfs_fail(EROFS, "%s: volume opened read-only", vol->dev->path);
	if (mft_no < NTFS_MFT_FIRST_ALLOCATABLE)
		return ntfs_fail(EPERM, "MFT record %llu is a system file",
				 (unsigned long long)mft_no);
	err = ntfs_inode_open(vol, mft_no, &ni);
	if (!err)
		err = ntfs_inode_foreach_attr(ni, scan_attr, &sc);
	if (err >= 0)
		err = copy_runlists(ni, &sc, &rls, &nrl);
	if (!err)
		err = free_inode(ni, rls, nrl);
	for (size_t i = 0; i < nrl; i++)
		ntfs_runlist_free(&rls[i]);
	free(rls);
	free(sc.nr);
	ntfs_inode_close(ni);
	return err;
}

int ntfs_unlink(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name)
{
	return ntfs_unlink_keep(vol, dir, name, false, NULL);
}

int ntfs_unlink_keep(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name,
		     bool keep, bool *kept)
{
	struct fn_scan sc = { 0 };
	struct ntfs_inode *ni = NULL;
	struct ntfs_runlist *rls = NULL;
	size_t nrl = 0;
	ntfschar *u = NULL;
	uint32_t ulen;
	uint64_t mref, got;
	unsigned removed;
	uint16_t links;
	int err;

	err = name_in_dir(vol, dir, name, "unlink", &u, &ulen);
	if (err)
		return err;
	if (ulen > NTFS_MAX_NAME_LEN) {
		err = ntfs_fail(ENAMETOOLONG, "a name of %u UTF-16 units is longer than the 255 "
				"NTFS allows", ulen);
		goto out;
	}
	err = ulen ? ntfs_index_lookup(dir, u, ulen, NTFS_INDEX_EXACT, &mref, NULL) : -ENOENT;
	if (err == -ENOENT)
		err = ntfs_fail(ENOENT, "directory MFT record %llu: no entry \"%s\"",
				(unsigned long long)dir->mft_no, name);
	if (err)
		goto out;
	if (MREF(mref) < NTFS_MFT_FIRST_ALLOCATABLE || dir->mft_no == FILE_Extend) {
		err = ntfs_fail(EPERM, "directory MFT record %llu: \"%s\" is a system file (MFT "
				"record %llu)", (unsigned long long)dir->mft_no, name,
				(unsigned long long)MREF(mref));
		goto out;
	}
	err = ntfs_inode_open(vol, MREF(mref), &ni);
	if (!err && MSEQNO(mref) && MSEQNO(mref) != ni->seq_no)
		err = ntfs_fail(EIO, "directory MFT record %llu: the entry \"%s\" points at MFT "
				"record %llu with sequence number %u, but the record has %u",
				(unsigned long long)dir->mft_no, name,
				(unsigned long long)MREF(mref), MSEQNO(mref), ni->seq_no);
	if (err)
		goto out;
	if (ntfs_inode_is_dir(ni)) {
		err = ntfs_index_is_empty(ni);
		if (err == 0)
			err = ntfs_fail(ENOTEMPTY, "directory \"%s\" (MFT record %llu) is not empty",
					name, (unsigned long long)ni->mft_no);
		if (err < 0)
			goto out;
	}
	sc.dir_no = dir->mft_no;
	sc.name = u;
	sc.len = ulen;
	err = ntfs_inode_foreach_attr(ni, scan_attr, &sc);
	if (err < 0)
		goto out;
	if (!sc.found) {
		err = ntfs_fail(EIO, "directory MFT record %llu: the entry \"%s\" points at MFT "
				"record %llu, which has no such $FILE_NAME",
				(unsigned long long)dir->mft_no, name, (unsigned long long)ni->mft_no);
		goto out;
	}
	sc.twin = sc.twin && sc.type == FILE_NAME_WIN32;
	removed = sc.twin ? 2 : 1;
	links = ni->link_count > removed ? (uint16_t)(ni->link_count - removed) : 0;
	if (kept)
		*kept = false;
	/* the clusters to give back, copied while the records are ours (an
	 * inode kept for its open handles is freed later, from its records
	 * as they are then) */
	if (!links && !keep && (err = copy_runlists(ni, &sc, &rls, &nrl)))
		goto out;
	/* 1: the index entries */
	err = ntfs_index_remove(dir, u, ulen, &got);
	if (!err && MREF(got) != MREF(mref))
		err = ntfs_fail(EIO, "directory MFT record %llu: the entry \"%s\" changed while it "
				"was being removed", (unsigned long long)dir->mft_no, name);
	if (err)
		goto out;
	if (sc.twin) {
		err = ntfs_index_remove(dir, sc.twin_name, sc.twin_len, NULL);
		if (err == -ENOENT) {
			ntfs_clear_error();
			err = 0;
		}
		if (err)
			goto out;
	}
	ntfs_crashpoint("unlink-after-entry");
	/* 2: the record keeps its other names, or goes with its clusters, or
	 * (keep) stays, nameless, until ntfs_free_orphan() */
	if (!links && keep) {
		*kept = true;
		err = 0;
	} else {
		err = links ? drop_names(ni, &sc, sc.twin, links) : free_inode(ni, rls, nrl);
	}
out:
	for (size_t i = 0; i < nrl; i++)
		ntfs_runlist_free(&rls[i]);
	free(rls);
	free(sc.nr);
	ntfs_inode_close(ni);
	free(u);
	return err;
}

/* ---- rename ---- */

/* Add fn as one more (indexed) $FILE_NAME of ni's base record, after the
 * ones it has (attributes stay in type order), with link count links. */
static int add_name(struct ntfs_inode *ni, const struct ntfs_file_name *fn, uint32_t fn_len,
		    uint16_t links)
{
	struct ntfs_volume *vol = ni->vol;
	uint8_t *rec = malloc(vol->geo.mft_record_size);
	const struct ntfs_attr_record *a;
	struct ntfs_attr_iter it;
	uint32_t off;
	int err;

	if (!rec)
		return -ENOMEM;
	pthread_mutex_lock(&vol->mft_lock);
	err = ntfs_mft_record_read(vol, ni->mft_no, rec);
	if (!err) {
		off = le32(((struct ntfs_mft_record *)rec)->bytes_in_use) - 8;
		ntfs_attr_iter_init(&it, rec);
		while (ntfs_attr_iter_next(&it, &a))
			if (le32(a->type) > AT_FILE_NAME) {
				off = (uint32_t)((const uint8_t *)a - rec);
				break;
			}
		err = add_resident_at(rec, off, AT_FILE_NAME, NULL, 0, fn, fn_len,
				      RESIDENT_ATTR_IS_INDEXED);
		if (err == -E2BIG)
			err = ntfs_fail(ENOSPC, "MFT record %llu has no room for the $FILE_NAME "
					"of its new name", (unsigned long long)ni->mft_no);
	}
	if (!err) {
		((struct ntfs_mft_record *)rec)->link_count = cpu_to_le16(links);
		err = ntfs_mft_record_write(vol, ni->mft_no, rec);
	}
	if (!err) {
		memcpy(ni->mrec, rec, vol->geo.mft_record_size);
		ni->link_count = links;
	}
	pthread_mutex_unlock(&vol->mft_lock);
	free(rec);
	return err;
}

int ntfs_rename(struct ntfs_volume *vol, struct ntfs_inode *odir, const char *oname,
		struct ntfs_inode *ndir, const char *nname, uint64_t *mft_no)
{
	struct fn_scan sc = { 0 };
	struct ntfs_inode *ni = NULL;
	struct ntfs_file_name *fn = NULL;
	ntfschar *ou = NULL, *nu = NULL;
	uint32_t oulen, nulen, fn_len;
	uint64_t mref, other, got;
	uint16_t links;
	uint8_t ns;
	int err;

	err = name_in_dir(vol, odir, oname, "rename", &ou, &oulen);
	if (!err)
		err = name_in_dir(vol, ndir, nname, "rename", &nu, &nulen);
	if (err)
		goto out;
	if (oulen > NTFS_MAX_NAME_LEN) {
		err = ntfs_fail(ENAMETOOLONG, "a name of %u UTF-16 units is longer than the 255 "
				"NTFS allows", oulen);
		goto out;
	}
	err = ntfs_name_check(nu, nulen, &ns);
	if (err)
		goto out;
	err = oulen ? ntfs_index_lookup(odir, ou, oulen, NTFS_INDEX_EXACT, &mref, NULL) : -ENOENT;
	if (err == -ENOENT)
		err = ntfs_fail(ENOENT, "directory MFT record %llu: no entry \"%s\"",
				(unsigned long long)odir->mft_no, oname);
	if (err)
		goto out;
	if (MREF(mref) < NTFS_MFT_FIRST_ALLOCATABLE || odir->mft_no == FILE_Extend ||
	    ndir->mft_no == FILE_Extend) {
		err = ntfs_fail(EPERM, "\"%s\" (MFT record %llu) is NTFS metadata, or the name "
				"would be", oname, (unsigned long long)MREF(mref));
		goto out;
	}
	/* the new name must be free, ignoring case, unless it names the file
	 * itself (a change of case; the same name is nothing to do) */
	err = ntfs_index_lookup(ndir, nu, nulen, NTFS_INDEX_ANY_CASE, &other, NULL);
	if (!err && MREF(other) != MREF(mref)) {
		err = ntfs_fail(EEXIST, "directory MFT record %llu: \"%s\" exists already (as MFT "
				"record %llu, maybe in another case)", (unsigned long long)ndir->mft_no,
				nname, (unsigned long long)MREF(other));
		goto out;
	}
	if (err && err != -ENOENT)
		goto out;
	ntfs_clear_error();
	if (odir->mft_no == ndir->mft_no && oulen == nulen && !memcmp(ou, nu, 2u * oulen)) {
		err = 0;
		*mft_no = MREF(mref);
		goto out;
	}
	err = ntfs_inode_open(vol, MREF(mref), &ni);
	if (!err && MSEQNO(mref) && MSEQNO(mref) != ni->seq_no)
		err = ntfs_fail(EIO, "directory MFT record %llu: the entry \"%s\" points at MFT "
				"record %llu with sequence number %u, but the record has %u",
				(unsigned long long)odir->mft_no, oname,
				(unsigned long long)MREF(mref), MSEQNO(mref), ni->seq_no);
	if (err)
		goto out;
	sc.dir_no = odir->mft_no;
	sc.name = ou;
	sc.len = oulen;
	err = ntfs_inode_foreach_attr(ni, scan_attr, &sc);
	if (err < 0)
		goto out;
	if (!sc.found || sc.rec_no != ni->mft_no) {
		err = ntfs_fail(sc.found ? EOPNOTSUPP : EIO, sc.found
				? "MFT record %llu: the $FILE_NAME of \"%s\" lies in an extension "
				  "record; not implemented"
				: "MFT record %llu has no $FILE_NAME for the entry \"%s\"",
				(unsigned long long)ni->mft_no, oname);
		goto out;
	}
	sc.twin = sc.twin && sc.type == FILE_NAME_WIN32;
	/* the new $FILE_NAME: the old one's times, sizes and attributes, the
	 * new parent and name */
	{
		const struct ntfs_attr_record *a =
			ntfs_mft_record_find_instance(ni->mrec, AT_FILE_NAME, sc.instance);
		const struct ntfs_file_name *old;
		uint32_t vlen = 0;

		old = a ? (const void *)ntfs_attr_value(a, &vlen) : NULL;
		if (!old || vlen < sizeof(*old)) {
			err = ntfs_fail(EIO, "MFT record %llu: its $FILE_NAME for \"%s\" is gone",
					(unsigned long long)ni->mft_no, oname);
			goto out;
		}
		fn_len = (uint32_t)sizeof(*fn) + 2u * nulen;
		fn = calloc(1, fn_len);
		if (!fn) {
			err = -ENOMEM;
			goto out;
		}
		memcpy(fn, old, sizeof(*fn));
	}
	fn->parent_directory = cpu_to_le64((uint64_t)ndir->seq_no << 48 | ndir->mft_no);
	fn->last_mft_change_time = cpu_to_le64(ntfs_time_now());
	fn->file_name_length = (uint8_t)nulen;
	fn->file_name_type = ns;
	memcpy(fn + 1, nu, 2u * nulen);
	mref = (uint64_t)ni->seq_no << 48 | ni->mft_no;
	links = ni->link_count;

	/* 1: the record gets the new name (a second link) */
	err = add_name(ni, fn, fn_len, (uint16_t)(links + 1));
	if (err)
		goto out;
	ntfs_crashpoint("rename-after-name");
	/* 2: the new entry points at it */
	err = ntfs_index_add(ndir, fn, mref);
	if (err) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", ntfs_last_error());
		/* take the name back out: the file stays as it was */
		struct fn_scan undo = { .rec_no = ni->mft_no };

		undo.instance = (uint16_t)(le16(((struct ntfs_mft_record *)ni->mrec)->
						next_attr_instance) - 1);
		if (drop_names(ni, &undo, false, links))
			ntfs_error("%s; and MFT record %llu keeps the $FILE_NAME of the new name "
				   "without an entry: %s", msg, (unsigned long long)ni->mft_no,
				   ntfs_last_error());
		else
			ntfs_error("%s", msg);
		goto out;
	}
	ntfs_crashpoint("rename-after-entry");
	/* 3: the old entry (and its DOS twin) go: from here on the rename has
	 * happened, a crash before 4 leaves an extra $FILE_NAME */
	err = ntfs_index_remove(odir, ou, oulen, &got);
	if (!err && MREF(got) != ni->mft_no)
		err = ntfs_fail(EIO, "directory MFT record %llu: the entry \"%s\" changed while it "
				"was being renamed", (unsigned long long)odir->mft_no, oname);
	if (!err && sc.twin) {
		err = ntfs_index_remove(odir, sc.twin_name, sc.twin_len, NULL);
		if (err == -ENOENT) {
			ntfs_clear_error();
			err = 0;
		}
	}
	ntfs_crashpoint("rename-before-drop");
	/* 4: the old $FILE_NAME(s) leave the record */
	if (!err)
		err = drop_names(ni, &sc, sc.twin, links + 1 - (sc.twin ? 2 : 1));
	if (!err)
		*mft_no = ni->mft_no;
out:
	free(sc.nr);
	free(fn);
	ntfs_inode_close(ni);
	free(ou);
	free(nu);
	return err;
}
