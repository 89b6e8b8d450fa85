/*
 * lznt1.h — the LZNT1 decompressor used for NTFS compressed attributes.
 *
 * Invariant: lznt1_decompress_unit() touches only src[0 .. src_len) and
 * dst[0 .. dst_len), whatever the input, and on success every byte of dst
 * has been written (decompressed data, or zeros where the stream is short).
 */
#ifndef NTFS_LZNT1_H
#define NTFS_LZNT1_H

#include <stddef.h>
#include <stdint.h>

/* Uncompressed size of one LZNT1 chunk (sub-block). */
#define LZNT1_CHUNK_SIZE 4096u

/* Decompress one NTFS compression unit.
 * src/src_len: the compressed bytes as stored in the unit's allocated
 * clusters (may have trailing garbage/zero padding after the end marker).
 * dst/dst_len: the unit's uncompressed size (cluster_size << compression_unit,
 * a multiple of 4096).
 * Chunks are 4096 bytes uncompressed each.  Every byte of dst is written: a
 * chunk that decompresses to fewer than 4096 bytes is zero-filled to 4096;
 * after the end marker (a zero 16-bit header) or when src runs out exactly at
 * a chunk boundary, the rest of dst is zero.  Once dst_len/4096 chunks have
 * been decoded, anything after them other than a zero header or the end of
 * src counts as an extra chunk.
 * Returns 0, or -EIO when the stream is malformed: a chunk header whose
 * signature bits are wrong (or a stored chunk not 4096 bytes long), a header
 * or chunk that runs past src_len (a lone byte at a chunk boundary is a
 * truncated header), a back-reference before the start of its
 * chunk, a literal or phrase that would write past the chunk's 4096 bytes, or
 * more than dst_len/4096 chunks.  A dst_len that is not a multiple of 4096 is
 * a caller bug (asserted; -EIO without assertions).  On -EIO the contents of
 * dst are unspecified but nothing outside it was written. */
int lznt1_decompress_unit(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len);

#endif
