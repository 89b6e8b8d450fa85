/*
 * layout.h — NTFS on-disk structures.
 *
 * Invariants:
 *  - Every struct here is packed, little-endian, and its size is pinned by a
 *    _Static_assert: these are the bytes on the disk, nothing more.
 *  - Raw disk buffers are only ever viewed through these structs after the
 *    caller has checked that the whole struct lies inside the buffer.  The
 *    decoding modules (boot.c, mft.c, attr.c, index.c) are that boundary.
 *  - Multi-byte fields are read with le16/le32/le64 (see endian.h) so the
 *    code stays correct on a big-endian host.
 */
#ifndef NTFS_LAYOUT_H
#define NTFS_LAYOUT_H

#include <stdint.h>

#define NTFS_PACKED __attribute__((packed))

typedef uint16_t ntfschar; /* one UTF-16LE code unit as stored on disk */

/* Fixups protect every 512-byte stride of a multi-sector record. */
#define NTFS_BLOCK_SIZE 512u
#define NTFS_BLOCK_SIZE_BITS 9u

/* Well-known MFT record numbers. */
enum {
	FILE_MFT = 0,
	FILE_MFTMirr = 1,
	FILE_LogFile = 2,
	FILE_Volume = 3,
	FILE_AttrDef = 4,
	FILE_root = 5,
	FILE_Bitmap = 6,
	FILE_Boot = 7,
	FILE_BadClus = 8,
	FILE_Secure = 9,
	FILE_UpCase = 10,
	FILE_Extend = 11,
	FILE_first_user = 16,
};

#define MFT_REF_MASK 0x0000ffffffffffffULL
#define MREF(x) ((uint64_t)(x) & MFT_REF_MASK)
#define MSEQNO(x) ((uint16_t)((uint64_t)(x) >> 48))

/* ---- Boot sector ---- */
struct ntfs_boot_sector {
	uint8_t jump[3];
	char oem_id[8];               /* "NTFS    " */
	uint16_t bytes_per_sector;
	uint8_t sectors_per_cluster;  /* > 0x80: cluster = 2^(256 - v) bytes */
	uint16_t reserved_sectors;    /* must be 0 */
	uint8_t fats;                 /* must be 0 */
	uint16_t root_entries;        /* must be 0 */
	uint16_t sectors;             /* must be 0 */
	uint8_t media_type;
	uint16_t sectors_per_fat;     /* must be 0 */
	uint16_t sectors_per_track;
	uint16_t heads;
	uint32_t hidden_sectors;
	uint32_t large_sectors;       /* must be 0 */
	uint8_t physical_drive;
	uint8_t current_head;
	uint8_t extended_boot_signature;
	uint8_t reserved2;
	uint64_t number_of_sectors;
	uint64_t mft_lcn;
	uint64_t mftmirr_lcn;
	int8_t clusters_per_mft_record;   /* < 0: record = 2^-v bytes */
	uint8_t reserved0[3];
	int8_t clusters_per_index_record; /* < 0: block = 2^-v bytes */
	uint8_t reserved1[3];
	uint64_t volume_serial_number;
	uint32_t checksum;
	uint8_t bootstrap[426];
	uint16_t end_of_sector_marker;    /* 0xaa55 */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_boot_sector) == 512, "boot sector size");

/* ---- Multi-sector (update sequence) header ---- */
struct ntfs_record_header {
	uint32_t magic;
	uint16_t usa_ofs;
	uint16_t usa_count;
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_record_header) == 8, "record header size");

#define NTFS_MAGIC(a, b, c, d) \
	((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define magic_FILE NTFS_MAGIC('F', 'I', 'L', 'E')
#define magic_INDX NTFS_MAGIC('I', 'N', 'D', 'X')
#define magic_BAAD NTFS_MAGIC('B', 'A', 'A', 'D')
#define magic_RSTR NTFS_MAGIC('R', 'S', 'T', 'R')
#define magic_RCRD NTFS_MAGIC('R', 'C', 'R', 'D')
#define magic_CHKD NTFS_MAGIC('C', 'H', 'K', 'D')

/* ---- MFT record ---- */
struct ntfs_mft_record {
	uint32_t magic;
	uint16_t usa_ofs;
	uint16_t usa_count;
	uint64_t lsn;
	uint16_t sequence_number;
	uint16_t link_count;
	uint16_t attrs_offset;
	uint16_t flags;                /* MFT_RECORD_* */
	uint32_t bytes_in_use;
	uint32_t bytes_allocated;
	uint64_t base_mft_record;      /* 0 for a base record */
	uint16_t next_attr_instance;
	uint16_t reserved;             /* NTFS 3.1+ */
	uint32_t mft_record_number;    /* NTFS 3.1+ */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_mft_record) == 48, "MFT record header size");

#define MFT_RECORD_IN_USE 0x0001
#define MFT_RECORD_IS_DIRECTORY 0x0002

/* ---- Attribute types ---- */
enum {
	AT_UNUSED = 0,
	AT_STANDARD_INFORMATION = 0x10,
	AT_ATTRIBUTE_LIST = 0x20,
	AT_FILE_NAME = 0x30,
	AT_OBJECT_ID = 0x40,
	AT_SECURITY_DESCRIPTOR = 0x50,
	AT_VOLUME_NAME = 0x60,
	AT_VOLUME_INFORMATION = 0x70,
	AT_DATA = 0x80,
	AT_INDEX_ROOT = 0x90,
	AT_INDEX_ALLOCATION = 0xa0,
	AT_BITMAP = 0xb0,
	AT_REPARSE_POINT = 0xc0,
	AT_EA_INFORMATION = 0xd0,
	AT_EA = 0xe0,
	AT_LOGGED_UTILITY_STREAM = 0x100,
	AT_END = 0xffffffff,
};

/* Attribute flags. */
#define ATTR_COMPRESSION_MASK 0x00ff
#define ATTR_IS_COMPRESSED 0x0001
#define ATTR_IS_ENCRYPTED 0x4000
#define ATTR_IS_SPARSE 0x8000

/* ---- Attribute record header ---- */
struct ntfs_attr_record {
	uint32_t type;
	uint32_t length;
	uint8_t non_resident;
	uint8_t name_length;           /* in ntfschars */
	uint16_t name_offset;
	uint16_t flags;
	uint16_t instance;
	union {
		struct {
			uint32_t value_length;
			uint16_t value_offset;
			uint8_t resident_flags;
			int8_t reserved;
		} NTFS_PACKED r;
		struct {
			uint64_t lowest_vcn;
			uint64_t highest_vcn;
			uint16_t mapping_pairs_offset;
			uint8_t compression_unit;  /* log2 of clusters per unit */
			uint8_t reserved[5];
			uint64_t allocated_size;   /* only valid in the first extent */
			uint64_t data_size;
			uint64_t initialized_size;
			uint64_t compressed_size;  /* only when compressed or sparse */
		} NTFS_PACKED nr;
	} NTFS_PACKED u;
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_attr_record) == 72, "attribute record size");
#define NTFS_ATTR_RESIDENT_HEADER_SIZE 24u
#define NTFS_ATTR_NONRESIDENT_HEADER_SIZE 64u  /* without compressed_size */
#define NTFS_ATTR_NONRESIDENT_COMPRESSED_HEADER_SIZE 72u

/* ---- $STANDARD_INFORMATION ---- */
struct ntfs_standard_information {
	uint64_t creation_time;
	uint64_t last_data_change_time;
	uint64_t last_mft_change_time;
	uint64_t last_access_time;
	uint32_t file_attributes;      /* FILE_ATTR_* */
	/* NTFS 3.x fields follow; the first 48 bytes are always present */
	uint32_t maximum_versions;
	uint32_t version_number;
	uint32_t class_id;
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_standard_information) == 48, "std info size");

#define FILE_ATTR_READONLY 0x00000001
#define FILE_ATTR_HIDDEN 0x00000002
#define FILE_ATTR_SYSTEM 0x00000004
#define FILE_ATTR_DIRECTORY 0x00000010
#define FILE_ATTR_ARCHIVE 0x00000020
#define FILE_ATTR_NORMAL 0x00000080
#define FILE_ATTR_TEMPORARY 0x00000100
#define FILE_ATTR_SPARSE_FILE 0x00000200
#define FILE_ATTR_REPARSE_POINT 0x00000400
#define FILE_ATTR_COMPRESSED 0x00000800
#define FILE_ATTR_OFFLINE 0x00001000
#define FILE_ATTR_NOT_CONTENT_INDEXED 0x00002000
#define FILE_ATTR_ENCRYPTED 0x00004000
#define FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT 0x10000000

/* ---- $ATTRIBUTE_LIST entry ---- */
struct ntfs_attr_list_entry {
	uint32_t type;
	uint16_t length;
	uint8_t name_length;
	uint8_t name_offset;
	uint64_t lowest_vcn;
	uint64_t mft_reference;
	uint16_t instance;
	/* name follows at name_offset */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_attr_list_entry) == 26, "attr list entry size");

/* ---- $FILE_NAME ---- */
struct ntfs_file_name {
	uint64_t parent_directory;
	uint64_t creation_time;
	uint64_t last_data_change_time;
	uint64_t last_mft_change_time;
	uint64_t last_access_time;
	uint64_t allocated_size;
	uint64_t data_size;
	uint32_t file_attributes;
	uint32_t reparse_point_tag;
	uint8_t file_name_length;      /* in ntfschars */
	uint8_t file_name_type;        /* FILE_NAME_* */
	/* ntfschar file_name[] follows */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_file_name) == 66, "file name size");

#define FILE_NAME_POSIX 0x00
#define FILE_NAME_WIN32 0x01
#define FILE_NAME_DOS 0x02
#define FILE_NAME_WIN32_AND_DOS 0x03

/* ---- $VOLUME_INFORMATION ---- */
struct ntfs_volume_information {
	uint64_t reserved;
	uint8_t major_ver;
	uint8_t minor_ver;
	uint16_t flags;                /* VOLUME_* */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_volume_information) == 12, "volume info size");

#define VOLUME_IS_DIRTY 0x0001

/* ---- Indexes ---- */
struct ntfs_index_header {
	uint32_t entries_offset;       /* relative to this header */
	uint32_t index_length;         /* bytes in use, from this header */
	uint32_t allocated_size;
	uint8_t flags;                 /* 1: the node has children (large index) */
	uint8_t reserved[3];
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_index_header) == 16, "index header size");

struct ntfs_index_root {
	uint32_t type;                 /* AT_FILE_NAME for directories */
	uint32_t collation_rule;
	uint32_t index_block_size;
	int8_t clusters_per_index_block;
	uint8_t reserved[3];
	struct ntfs_index_header index;
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_index_root) == 32, "index root size");

#define COLLATION_FILE_NAME 0x01

struct ntfs_index_block {
	uint32_t magic;                /* "INDX" */
	uint16_t usa_ofs;
	uint16_t usa_count;
	uint64_t lsn;
	uint64_t index_block_vcn;
	struct ntfs_index_header index;
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_index_block) == 40, "index block size");

struct ntfs_index_entry {
	uint64_t indexed_file;         /* MFT reference (file name indexes) */
	uint16_t length;               /* of the whole entry, 8-aligned */
	uint16_t key_length;
	uint16_t flags;                /* INDEX_ENTRY_* */
	uint16_t reserved;
	/* key, then (if INDEX_ENTRY_NODE) the child's VCN in the last 8 bytes */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_index_entry) == 16, "index entry size");

#define INDEX_ENTRY_NODE 0x01
#define INDEX_ENTRY_END 0x02

/* ---- $LogFile restart page ---- */
struct ntfs_restart_page {
	uint32_t magic;                /* "RSTR" or "CHKD" */
	uint16_t usa_ofs;
	uint16_t usa_count;
	uint64_t chkdsk_lsn;
	uint32_t system_page_size;
	uint32_t log_page_size;
	uint16_t restart_area_offset;
	int16_t minor_ver;
	int16_t major_ver;
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_restart_page) == 30, "restart page size");

struct ntfs_restart_area {
	uint64_t current_lsn;
	uint16_t log_clients;
	uint16_t client_free_list;
	uint16_t client_in_use_list;
	uint16_t flags;
	/* more follows; not needed for the clean-shutdown check */
} NTFS_PACKED;
_Static_assert(sizeof(struct ntfs_restart_area) == 16, "restart area size");

#define LOGFILE_NO_CLIENT 0xffff
#define RESTART_VOLUME_IS_CLEAN 0x0002

#endif
