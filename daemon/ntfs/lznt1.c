/*
 * lznt1.c — LZNT1 decompression of one NTFS compression unit.
 *
 * Invariants:
 *  - src is only read at offsets already checked against src_len: a chunk's
 *    header is read only when two bytes remain, and its data is handed on as
 *    (pointer, length) only after that length was checked to fit.  Inside a
 *    chunk every read is checked against the chunk's own length.
 *  - chunk n is decoded into its own 4096-byte window dst[n*4096 ..], and
 *    only while n < dst_len/4096.  Every write is checked against the room
 *    left in that window first, and every back-reference against the bytes
 *    already produced in it, so no copy reads or writes outside the window.
 *  - on success every byte of dst has been written: each window's unwritten
 *    tail, and every window after the last chunk, is zero-filled.
 */
#include "lznt1.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#define CHUNK LZNT1_CHUNK_SIZE
#define HDR_SIZE 2u
#define HDR_COMPRESSED 0x8000u
#define HDR_SIG_MASK 0x7000u
#define HDR_SIG 0x3000u
#define HDR_LEN_MASK 0x0fffu

/* Little-endian 16-bit load from a byte buffer (any alignment, any host). */
static uint16_t load_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

/* Number of low token bits holding (length - 3) for a phrase at position p:
 * the offset gets max(4, ceil(log2(p))) bits, the length the rest of 16. */
static unsigned phrase_length_bits(size_t p)
{
	unsigned l = 0;

	assert(p >= 1 && p <= CHUNK);
	for (size_t i = p - 1; i >= 0x10; i >>= 1)
		l++;
	assert(l <= 8);
	return 12 - l;
}

/* Expand one phrase token into out[*pos ..], out being a CHUNK-byte window. */
static int copy_phrase(uint8_t *out, size_t *pos, uint16_t token)
{
	size_t p = *pos;
	unsigned len_bits;
	size_t len, back;

	assert(p <= CHUNK);
	if (p == 0)
		return -EIO; /* nothing to refer back to */
	len_bits = phrase_length_bits(p);
	len = (size_t)(token & ((1u << len_bits) - 1)) + 3;
	back = (size_t)(token >> len_bits) + 1;
	if (back > p || len > CHUNK - p)
		return -EIO;
	/* Byte by byte, forward: the source may overlap what is being written. */
	for (size_t i = 0; i < len; i++)
		out[p + i] = out[p - back + i];
	*pos = p + len;
	return 0;
}

/* Decode a compressed chunk's data in[0 .. in_len) into the window out.
 * Sets *produced to the number of bytes written (<= CHUNK). */
static int decode_compressed(const uint8_t *in, size_t in_len, uint8_t *out, size_t *produced)
{
	size_t i = 0, p = 0;

	while (i < in_len) {
		unsigned flags = in[i++];

		for (unsigned bit = 0; bit < 8 && i < in_len; bit++, flags >>= 1) {
			if (!(flags & 1)) {
				if (p >= CHUNK)
					return -EIO;
				out[p++] = in[i++];
				continue;
			}
			if (in_len - i < 2)
				return -EIO; /* phrase token cut by the chunk's end */
			int ret = copy_phrase(out, &p, load_le16(in + i));
			if (ret < 0)
				return ret;
			i += 2;
		}
	}
	assert(p <= CHUNK);
	*produced = p;
	return 0;
}

/* Decode the chunk with header hdr whose data starts at in, avail bytes being
 * left in src from there, into the window out (fully written on success).
 * Sets *consumed to the chunk's data length. */
static int decode_chunk(uint16_t hdr, const uint8_t *in, size_t avail, uint8_t *out,
			size_t *consumed)
{
	size_t len = (size_t)(hdr & HDR_LEN_MASK) + 1;
	size_t produced;

	if ((hdr & HDR_SIG_MASK) != HDR_SIG || len > avail)
		return -EIO;
	if (hdr & HDR_COMPRESSED) {
		int ret = decode_compressed(in, len, out, &produced);

		if (ret < 0)
			return ret;
	} else {
		if (len != CHUNK)
			return -EIO;
		memcpy(out, in, CHUNK);
		produced = CHUNK;
	}
	memset(out + produced, 0, CHUNK - produced);
	*consumed = len;
	return 0;
}

/* Read the header at src[off], or report the end of the stream.
 * Returns 1 with *hdr set, 0 at the end (end of src or zero header), -EIO for
 * a header cut by the end of src. */
static int next_header(const uint8_t *src, size_t src_len, size_t off, uint16_t *hdr)
{
	assert(off <= src_len);
	if (src_len - off == 0)
		return 0;
	if (src_len - off < HDR_SIZE)
		return -EIO;
	*hdr = load_le16(src + off);
	return *hdr != 0;
}

int lznt1_decompress_unit(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len)
{
	size_t nr_chunks, chunk, off = 0;

	assert(dst_len % CHUNK == 0);
	assert(src || !src_len);
	assert(dst || !dst_len);
	if (dst_len % CHUNK)
		return -EIO;
	nr_chunks = dst_len / CHUNK;
	for (chunk = 0;; chunk++) {
		uint16_t hdr;
		size_t consumed;
		int ret = next_header(src, src_len, off, &hdr);

		if (ret <= 0) {
			if (ret < 0)
				return ret;
			break;
		}
		if (chunk == nr_chunks)
			return -EIO; /* more chunks than the unit holds */
		off += HDR_SIZE;
		ret = decode_chunk(hdr, src + off, src_len - off, dst + chunk * CHUNK, &consumed);
		if (ret < 0)
			return ret;
		assert(consumed <= src_len - off);
		off += consumed;
	}
	assert(chunk <= nr_chunks);
	if (chunk < nr_chunks)
		memset(dst + chunk * CHUNK, 0, (nr_chunks - chunk) * CHUNK);
	return 0;
}
