/*
 * unistr.h — conversion between NTFS names (UTF-16LE) and UTF-8.
 *
 * Invariants: conversions never write past the buffers they allocate; a
 * surrogate pair becomes one 4-byte UTF-8 sequence and back; an unpaired
 * surrogate or invalid UTF-8 is refused with -EILSEQ (never guessed at).
 */
#ifndef NTFS_UNISTR_H
#define NTFS_UNISTR_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

/* name: len code units, stored little-endian (possibly unaligned). */
int ntfs_utf16_to_utf8(const void *name, uint32_t len, char **out);
/* s: slen bytes of UTF-8.  *out holds *out_len code units, little-endian as
 * on disk. */
int ntfs_utf8_to_utf16(const char *s, size_t slen, ntfschar **out, uint32_t *out_len);

#endif
