/*
 * namespace.h — creating and removing names on disk: a new file or
 * directory (its MFT record and its entry in the parent's $I30 index), and
 * unlink/rmdir (the entry, and the record with its clusters once no name
 * is left).
 *
 * Invariants:
 *  - Name policy (ntfs_name_check): a name is 1 to 255 UTF-16 units and
 *    is refused with -EINVAL when it is "." or "..", or holds NUL, '/',
 *    any control character (U+0001..U+001F), or one of the characters
 *    Win32 forbids: " * < > ? : | and backslash.  So every name made here
 *    can be opened from Windows and from POSIX alike (with ntfs-3g's
 *    windows_names option too).  No DOS 8.3 name is generated, and a
 *    Win32 (namespace 1) name is by definition the long half of a Win32 +
 *    DOS pair: ntfs-3g (and the Linux driver) cannot unlink a Win32 name
 *    that has no DOS twin.  So a name that is itself a valid DOS 8.3 name
 *    (upper case, 8 + 3 characters of the DOS set, not a reserved device
 *    name) goes in the Win32-and-DOS name space (FILE_NAME_WIN32_AND_DOS,
 *    what Windows gives such names), and every other name — lower case,
 *    long, non-ASCII, a trailing dot or space, a reserved device name
 *    (CON, PRN, AUX, NUL, COM1-9, LPT1-9, alone or before a dot) — in the
 *    POSIX name space (as ntfs-3g names everything it creates).  No DOS
 *    8.3 name is made for those.  A name equal to an existing entry of the
 *    directory ignoring case (through the volume's $UpCase, whatever that
 *    entry's name space) is refused with -EEXIST, so no two names of a
 *    directory differ by case only.  Invalid UTF-8 is -EILSEQ.
 *  - A new record holds, in this order: $STANDARD_INFORMATION (all four
 *    times now, in NTFS time; ARCHIVE for a file, no attribute for a
 *    directory), $FILE_NAME (indexed; the parent's reference with its
 *    sequence number, the same times, sizes 0, the file attributes, plus
 *    FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT for a directory), a security
 *    descriptor (below), and for a file an empty resident unnamed $DATA,
 *    for a directory an empty $INDEX_ROOT:$I30 (a leaf with only its END
 *    entry, the volume's index block size) with MFT_RECORD_IS_DIRECTORY;
 *    link count 1.  Security: when the parent's $STANDARD_INFORMATION
 *    carries a security id (NTFS 3.x, as Windows writes it), the child
 *    gets the NTFS 3.x $STANDARD_INFORMATION with the same security id
 *    and owner id (the parent's descriptor as it is: inheritance rules are
 *    not applied); otherwise, as ntfs-3g does, the short
 *    $STANDARD_INFORMATION and a resident $SECURITY_DESCRIPTOR granting
 *    Everyone full access (owner and group Administrators), left out only
 *    for a directory whose name is so long that the record would have no
 *    room for its index to grow out of the record.
 *  - Crash ordering (no journal; rename's is at ntfs_rename): create writes the record in use and
 *    complete before the index entry that points at it (a crash in between
 *    leaks the record); unlink removes the index entry first, then marks
 *    the record unused and clears its bit (ntfs_mft_record_free), then its
 *    extension records, and frees the clusters of its non-resident
 *    attributes last (a crash in between leaks records or clusters).  So
 *    no crash leaves an entry pointing at a free record, or a record in
 *    use whose clusters are free.
 *  - Locking: the caller serializes every change of one parent directory
 *    and of the inode being unlinked (index.h: one writer per directory);
 *    the allocators and vol->mft_lock are taken inside, never held by the
 *    caller.  Nothing here knows the cache: an inode the caller still
 *    holds open for a name unlinked here is the caller's business.
 */
#ifndef NTFS_NAMESPACE_H
#define NTFS_NAMESPACE_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

struct ntfs_inode;
struct ntfs_volume;

#define NTFS_MAX_NAME_LEN 255u

/* Apply the name policy above to name (len UTF-16LE units): 0 with
 * *name_space FILE_NAME_WIN32_AND_DOS or FILE_NAME_POSIX, -EINVAL or
 * -ENAMETOOLONG (with a message). */
int ntfs_name_check(const ntfschar *name, uint32_t len, uint8_t *name_space);

/* Create the file or directory `name` (UTF-8) in dir; *mft_no gets its
 * record number (its sequence number is in the record and the parent's
 * entry).  Returns 0, -EEXIST, -EINVAL, -ENAMETOOLONG, -EILSEQ,
 * -ENOTDIR, -EROFS, -ENOSPC (no MFT record, no cluster for the parent's
 * index, or a parent record too full for its index to grow), -EOPNOTSUPP,
 * -EIO, -ENOMEM or a write error; on error nothing new is referenced (a
 * record allocated for the call is freed again, or leaked if that fails:
 * logged). */
int ntfs_create(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name, bool is_dir,
		uint64_t *mft_no);

/* Remove the name `name` (UTF-8, exact: the very code units) from dir.
 * A Win32 name also takes its DOS twin (the 8.3 name of the same link)
 * with it.  When no name of the inode is left, its record (and extension
 * records) are freed and its clusters given back.  A directory must be
 * empty.  Returns 0, -ENOENT, -ENOTEMPTY, -EPERM (a system file: records
 * below 24, or anything in $Extend), -ENOTDIR, -EROFS, -EILSEQ,
 * -ENAMETOOLONG, -EOPNOTSUPP (a hard link whose $FILE_NAME lies in an
 * extension record), -EIO, -ENOMEM or a write error.  Once the index entry
 * is gone the call has taken effect: later failures leak records or
 * clusters (logged) and are returned. */
int ntfs_unlink(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name);
/* The same; with keep, a name that is the inode's last leaves only the
 * index (step 1) and the record stays in use with its clusters, nameless
 * (*kept true), for handles still open on it: ntfs_free_orphan() frees it
 * at their last close.  A crash before that leaks the record and its
 * clusters (in use, no entry points at it). */
int ntfs_unlink_keep(struct ntfs_volume *vol, struct ntfs_inode *dir, const char *name,
		     bool keep, bool *kept);
/* Free the record (extension records, then clusters, in unlink's order)
 * of an inode ntfs_unlink_keep() kept.  -EPERM for a system record. */
int ntfs_free_orphan(struct ntfs_volume *vol, uint64_t mft_no);

/* Rename `oname` (UTF-8, exact) in odir to `nname` in ndir (odir or
 * another directory).  The new name follows the name policy above; it
 * must be free in ndir, ignoring case, unless it names the same file (a
 * change of case; the very same name changes nothing).  A target to
 * replace is the caller's to unlink first.  A Win32 name's DOS twin goes
 * with it.  The new $FILE_NAME keeps the old one's times, sizes and
 * attributes, with the new parent (a directory's ".." on NTFS) and the MFT
 * change time now.  Crash order: (1) the record gains the new $FILE_NAME
 * (link count + 1), (2) the new index entry goes in, (3) the old entry
 * (and twin) comes out, (4) the old $FILE_NAME leaves the record.  A crash
 * leaves the file under its old name, or under both (a hard link), never
 * under none; a failure at 1 or 2 undoes 1.  *mft_no: the file's record.
 * Returns 0 or the errors of ntfs_create() and ntfs_unlink() (-ENOSPC
 * also when the record has no room for a second $FILE_NAME). */
int ntfs_rename(struct ntfs_volume *vol, struct ntfs_inode *odir, const char *oname,
		struct ntfs_inode *ndir, const char *nname, uint64_t *mft_no);

#endif
