/*
 * inode.h — an NTFS inode: a base MFT record plus, when its attributes spill
 * into extension records, its $ATTRIBUTE_LIST.
 *
 * Invariants: ni->mrec is the validated base record (in use, not itself an
 * extension record).  When ni->attr_list is set, every entry in it was
 * checked to lie inside the list.  ntfs_inode_foreach_attr() visits every
 * attribute record of the inode, in base and extension records, in the
 * order the attribute list gives (or record order without one), and only
 * visits extension records whose base reference points back to this inode.
 * ni->mrec and ni->attr_list are replaced (the list freed and reallocated)
 * by ntfs_attr_update_mapping_pairs() under vol->mft_lock: walk them under
 * that lock (ntfs_inode_foreach_attr_under_lock), or under whatever
 * serializes those calls for the inode.
 */
#ifndef NTFS_INODE_H
#define NTFS_INODE_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

struct ntfs_volume;

struct ntfs_inode {
	struct ntfs_volume *vol;
	uint64_t mft_no;
	uint16_t seq_no;
	uint16_t mrec_flags;            /* MFT_RECORD_* */
	uint16_t link_count;
	uint8_t *mrec;                  /* base record, vol->geo.mft_record_size bytes */
	uint8_t *attr_list;             /* $ATTRIBUTE_LIST value, or NULL */
	uint32_t attr_list_size;
	uint32_t file_attributes;       /* from $STANDARD_INFORMATION */
	uint64_t times[4];              /* creation, data change, mft change, access */
};

int ntfs_inode_open(struct ntfs_volume *vol, uint64_t mft_no, struct ntfs_inode **out);
/* Build an inode from a record already read and validated (the $MFT bootstrap). */
int ntfs_inode_open_record(struct ntfs_volume *vol, uint64_t mft_no, const uint8_t *rec,
			   struct ntfs_inode **out);
void ntfs_inode_close(struct ntfs_inode *ni);

static inline bool ntfs_inode_is_dir(const struct ntfs_inode *ni)
{
	return ni->mrec_flags & MFT_RECORD_IS_DIRECTORY;
}

/* Called for every attribute record; mft_no is the record holding it.
 * Return 0 to go on, > 0 to stop (returned to the caller), < 0 on error. */
typedef int (*ntfs_attr_visit_fn)(void *ctx, const struct ntfs_attr_record *a,
				  uint64_t mft_no);
int ntfs_inode_foreach_attr(struct ntfs_inode *ni, ntfs_attr_visit_fn fn, void *ctx);
/* The first attribute record of the given type in MFT record rec (fixups
 * removed), or NULL. */
const struct ntfs_attr_record *ntfs_record_find_attr(const uint8_t *rec, uint32_t type);
/* The same with vol->mft_lock held throughout: for walking an inode that
 * another thread may be rewriting with ntfs_attr_update_mapping_pairs()
 * (fn must not take vol->mft_lock). */
int ntfs_inode_foreach_attr_under_lock(struct ntfs_inode *ni, ntfs_attr_visit_fn fn, void *ctx);

#endif
