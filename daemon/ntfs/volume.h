/*
 * volume.h — an open NTFS volume: geometry, $MFT, $UpCase and state.
 *
 * Invariants: an ntfs_volume returned by ntfs_volume_open() has a validated
 * geometry, a complete $MFT runlist (every extent merged), a loaded $UpCase
 * table, and its state (version, dirty flag, $LogFile and hibernation
 * checks) read.  A read-write volume was clean and not hibernated when it was
 * opened, and holds its cluster bitmap and MFT bitmap in memory, each with
 * its own lock (lcnalloc.h, mftalloc.h); a read-only open loads neither.
 * After open the fields here are only read, except what the allocators
 * change under their locks: the bitmaps, and mft_data with nr_mft_records
 * when the MFT grows.  So a volume may be shared by many threads.
 *
 * $MFT/$DATA (mft_data) is published, not edited: every ntfs_attr it ever
 * points at is immutable (runlist, sizes) and stays allocated until
 * ntfs_volume_close().  Growing $MFT (mftalloc.c, under the MFT bitmap
 * lock) builds a new snapshot, writes record 0, then stores the pointer
 * with release order and only after that raises nr_mft_records.  Readers
 * take no lock: they check a record number against nr_mft_records first,
 * then load mft_data once with ntfs_volume_mft_data() (acquire) and use
 * that one snapshot for the whole operation.  A reader that saw the new
 * record count therefore sees the snapshot that maps it; one that still
 * holds an older snapshot reads the records that snapshot maps, which
 * never move.
 */
#ifndef NTFS_VOLUME_H
#define NTFS_VOLUME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "boot.h"
#include "device.h"
#include "layout.h"

struct ntfs_attr;
struct ntfs_inode;
struct ntfs_lcn_bitmap;
struct ntfs_mft_bitmap;

#define NTFS_OPEN_READ_ONLY 0x1u

struct ntfs_volume {
	struct ntfs_device *dev;
	struct ntfs_geometry geo;
	unsigned flags;                 /* NTFS_OPEN_* */
	struct ntfs_inode *mft_ni;      /* $MFT */
	struct ntfs_attr *_Atomic mft_data; /* $MFT/$DATA: locates every record;
					     * load with ntfs_volume_mft_data() */
	_Atomic uint64_t nr_mft_records; /* grows when mftalloc.c extends $MFT */
	ntfschar *upcase;               /* $UpCase, upcase_len entries */
	uint32_t upcase_len;
	uint8_t major_ver, minor_ver;
	uint16_t vol_flags;             /* $VOLUME_INFORMATION flags */
	bool logfile_clean;             /* $LogFile shows a clean shutdown */
	bool hibernated;                /* /hiberfil.sys says Windows is hibernated */
	char *label;                    /* UTF-8, may be empty */
	/* write side */
	pthread_mutex_t mft_lock;       /* serializes read-modify-write of MFT records */
	/* directories whose $I30 had its orphaned blocks reclaimed this run
	 * (index.c; under mft_lock) */
	uint64_t *ix_checked;
	size_t ix_nchecked, ix_checked_cap;
	struct ntfs_inode *mirr_ni;     /* $MFTMirr, NULL when read-only */
	struct ntfs_attr *mirr_data;
	uint32_t mirr_records;          /* records $MFTMirr mirrors */
	struct ntfs_lcn_bitmap *lcn_bitmap; /* $Bitmap in memory (lcnalloc.c), NULL when read-only */
	struct ntfs_mft_bitmap *mft_bitmap; /* $MFT/$BITMAP in memory (mftalloc.c), NULL when read-only */
};

/* Open the volume at path.  A read-write open (flags without
 * NTFS_OPEN_READ_ONLY) of a dirty, unclean or hibernated volume fails with
 * -EPERM and a message that says why and how to open it read-only.  Errors
 * are negative errno with ntfs_last_error() describing them. */
int ntfs_volume_open(const char *path, unsigned flags, struct ntfs_volume **out);
/* The same on fd, already open on path (see ntfs_device_open_fd()), which
 * the volume owns from then on, also when this fails; fd -1 opens path. */
int ntfs_volume_open_fd(const char *path, int fd, unsigned flags, struct ntfs_volume **out);
void ntfs_volume_close(struct ntfs_volume *vol);

/* The current $MFT/$DATA snapshot (see the rule above): load it once per
 * operation, after checking the record number against nr_mft_records. */
static inline struct ntfs_attr *ntfs_volume_mft_data(struct ntfs_volume *vol)
{
	return atomic_load_explicit(&vol->mft_data, memory_order_acquire);
}

static inline bool ntfs_volume_is_dirty(const struct ntfs_volume *vol)
{
	return vol->vol_flags & VOLUME_IS_DIRTY;
}

/* The daemon's crash points (util/crashpoint.h, for the crash tests) in
 * this layer's multi-write operations: set once at startup, before any
 * volume is opened; NULL (the tools, the fuzzer) makes them nothing. */
extern void (*ntfs_crashpoint_hook)(const char *name);

static inline void ntfs_crashpoint(const char *name)
{
	if (ntfs_crashpoint_hook)
		ntfs_crashpoint_hook(name);
}

#endif
