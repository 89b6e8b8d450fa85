/*
 * le.h — little-endian field access for on-disk structures.
 *
 * Invariant: every multi-byte on-disk field is read through le16/le32/le64
 * (or written through cpu_to_le*), so host byte order never leaks into the
 * interpretation of the disk.
 */
#ifndef NTFS_LE_H
#define NTFS_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t le16(uint16_t v) { return le16toh(v); }
static inline uint32_t le32(uint32_t v) { return le32toh(v); }
static inline uint64_t le64(uint64_t v) { return le64toh(v); }
static inline int64_t sle64(uint64_t v) { return (int64_t)le64toh(v); }
static inline uint16_t cpu_to_le16(uint16_t v) { return htole16(v); }
static inline uint32_t cpu_to_le32(uint32_t v) { return htole32(v); }
static inline uint64_t cpu_to_le64(uint64_t v) { return htole64(v); }

/* Unaligned loads from a byte buffer (index entries need not be aligned). */
static inline uint16_t get_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t get_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t get_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void put_le16(void *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

#endif
