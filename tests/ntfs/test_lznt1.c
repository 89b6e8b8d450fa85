/*
 * test_lznt1.c — tests for the LZNT1 decompressor.
 *
 * Streams come from a small greedy compressor in this file (test-only: the
 * longest match in the whole window, found through 3-byte hash chains) and
 * from hand-built bytes.  Every
 * call to the decompressor gets heap buffers of exactly src_len and dst_len
 * bytes, so any out-of-bounds access trips AddressSanitizer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lznt1.h"

#define CHUNK 4096u
#define UNIT (16u * CHUNK) /* 4 KiB clusters, compression unit 16 */
#define NR_CHUNKS (UNIT / CHUNK)
/* Room for a whole unit's stream: every chunk stored, plus an end marker. */
#define STREAM_CAP (NR_CHUNKS * (2 + CHUNK) + 2)

/* ---- deterministic PRNG (xorshift64*) ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static uint32_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static uint32_t rng_below(uint32_t n)
{
	return n ? rng() % n : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
}

/* Random bytes from a small alphabet: many short matches at all offsets. */
static void fill_alphabet(uint8_t *p, size_t n, unsigned letters)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)('a' + rng_below(letters));
}

/* Runs of one byte of random lengths (1..300). */
static void fill_runs(uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t len = 1 + rng_below(300);
		uint8_t c = (uint8_t)rng();

		for (; len && i < n; len--)
			p[i++] = c;
	}
}

/* Words drawn from a small dictionary: long matches at long offsets. */
static void fill_text(uint8_t *p, size_t n)
{
	static const char *const words[] = {
		"compression ", "unit ", "cluster ", "attribute ", "NTFS ",
		"the ", "of ", "record ", "runlist ", "\n", "sparse ", "index ",
	};
	size_t i = 0;

	while (i < n) {
		const char *w = words[rng_below(sizeof(words) / sizeof(words[0]))];

		for (; *w && i < n; w++)
			p[i++] = (uint8_t)*w;
	}
}

/* ---- test-only greedy LZNT1 compressor ---- */

/* Offset bits for a phrase at position p: max(4, ceil(log2(p))).  Written
 * differently from the decoder on purpose, as a cross-check. */
static unsigned offset_bits(size_t p)
{
	unsigned bits = 4;

	while (((size_t)1 << bits) < p)
		bits++;
	return bits;
}

/* Candidate positions for matches: chains of earlier positions in the chunk
 * whose next 3 bytes hash alike (any match of 3+ bytes shares the hash). */
#define HASH_SIZE 4096u
struct matcher {
	int head[HASH_SIZE]; /* latest position per hash, or -1 */
	int prev[CHUNK];     /* previous position with the same hash, or -1 */
	size_t inserted;     /* positions [0, inserted) are chained */
};

static unsigned hash3(const uint8_t *s)
{
	return ((unsigned)s[0] << 4 ^ (unsigned)s[1] << 2 ^ s[2]) * 2654435761u >> 20 & (HASH_SIZE - 1);
}

/* Chain every position before p that has 3 bytes to hash. */
static void matcher_advance(struct matcher *m, const uint8_t *in, size_t n, size_t p)
{
	for (; m->inserted < p; m->inserted++) {
		size_t q = m->inserted;

		if (q + 3 > n)
			continue;
		unsigned h = hash3(in + q);
		m->prev[q] = m->head[h];
		m->head[h] = (int)q;
	}
}

/* Longest match for in[p..n) inside the chunk (nearest first on ties);
 * 0 if shorter than 3. */
static size_t find_match(struct matcher *m, const uint8_t *in, size_t n, size_t p,
			 size_t *back_out)
{
	unsigned obits = offset_bits(p);
	size_t max_back = (size_t)1 << obits;
	size_t max_len = ((size_t)1 << (16 - obits)) - 1 + 3;
	size_t best = 0;

	if (p + 3 > n)
		return 0;
	matcher_advance(m, in, n, p);
	if (max_len > n - p)
		max_len = n - p;
	for (int q = m->head[hash3(in + p)]; q >= 0 && best < max_len; q = m->prev[q]) {
		size_t back = p - (size_t)q, len = 0;

		if (back > max_back)
			break;
		while (len < max_len && in[(size_t)q + len] == in[p + len])
			len++;
		if (len > best) {
			best = len;
			*back_out = back;
		}
	}
	return best >= 3 ? best : 0;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* Compress n (1..CHUNK) bytes into one chunk, header included; a chunk that
 * does not shrink below CHUNK is stored (zero-padded to CHUNK).  Returns the
 * bytes written to out (at most 2 + CHUNK). */
static size_t compress_chunk(const uint8_t *in, size_t n, uint8_t *out)
{
	static struct matcher m;
	uint8_t buf[CHUNK + CHUNK / 8 + 8];
	size_t o = 0, p = 0;

	assert_true(n >= 1 && n <= CHUNK);
	memset(m.head, 0xff, sizeof(m.head));
	m.inserted = 0;
	while (p < n) {
		size_t flag_at = o++;
		unsigned flags = 0;

		for (unsigned bit = 0; bit < 8 && p < n; bit++) {
			size_t back = 0, len = find_match(&m, in, n, p, &back);

			if (!len) {
				buf[o++] = in[p++];
				continue;
			}
			unsigned lbits = 16 - offset_bits(p);
			put16(buf + o, (unsigned)((back - 1) << lbits | (len - 3)));
			o += 2;
			flags |= 1u << bit;
			p += len;
		}
		buf[flag_at] = (uint8_t)flags;
	}
	if (o < CHUNK) {
		put16(out, 0xb000u | (unsigned)(o - 1));
		memcpy(out + 2, buf, o);
		return 2 + o;
	}
	put16(out, 0x3000u | (CHUNK - 1));
	memcpy(out + 2, in, n);
	memset(out + 2 + n, 0, CHUNK - n);
	return 2 + CHUNK;
}

static bool chunk_is_stored(const uint8_t *chunk)
{
	return !(chunk[1] & 0x80);
}

/* Compress in[0..n) as consecutive chunks, at most max_chunks of them,
 * optionally followed by an end marker.  *stored counts stored chunks. */
static size_t compress_stream(const uint8_t *in, size_t n, size_t max_chunks, bool end_marker,
			      uint8_t *out, size_t *stored)
{
	size_t o = 0, chunks = 0;

	*stored = 0;
	for (size_t off = 0; off < n && chunks < max_chunks; off += CHUNK, chunks++) {
		size_t len = n - off < CHUNK ? n - off : CHUNK;

		size_t start = o;

		o += compress_chunk(in + off, len, out + o);
		*stored += chunk_is_stored(out + start);
	}
	if (end_marker) {
		put16(out + o, 0);
		o += 2;
	}
	return o;
}

/* ---- running the decompressor on exactly-sized heap buffers ---- */

/* Decompress src into a fresh dst_len buffer pre-filled with `fill`.
 * Returns the result; *dst_out (caller frees) holds the output. */
static int run_fill(const uint8_t *src, size_t src_len, size_t dst_len, uint8_t fill,
		    uint8_t **dst_out)
{
	uint8_t *s = malloc(src_len ? src_len : 1);
	uint8_t *d = malloc(dst_len ? dst_len : 1);
	int ret;

	assert_non_null(s);
	assert_non_null(d);
	if (src_len)
		memcpy(s, src, src_len);
	memset(d, fill, dst_len);
	ret = lznt1_decompress_unit(s, src_len, d, dst_len);
	free(s);
	*dst_out = d;
	return ret;
}

static int run(const uint8_t *src, size_t src_len, size_t dst_len)
{
	uint8_t *d;
	int ret = run_fill(src, src_len, dst_len, 0xa5, &d);

	free(d);
	return ret;
}

/* src must decompress to expect[0..expect_len) followed by zeros up to
 * dst_len, whatever dst held before. */
static void check_output(const uint8_t *src, size_t src_len, size_t dst_len,
			 const uint8_t *expect, size_t expect_len)
{
	static const uint8_t fills[] = { 0x00, 0xa5, 0xff };

	assert_true(expect_len <= dst_len);
	for (size_t f = 0; f < sizeof(fills); f++) {
		uint8_t *d;

		assert_int_equal(run_fill(src, src_len, dst_len, fills[f], &d), 0);
		if (expect_len)
			assert_memory_equal(d, expect, expect_len);
		for (size_t i = expect_len; i < dst_len; i++)
			if (d[i]) {
				print_error("byte %zu is 0x%02x, expected 0\n", i, d[i]);
				fail();
			}
		free(d);
	}
}

/* Round-trip a whole unit through the compressor; returns stored chunks. */
static size_t roundtrip(const uint8_t *data, bool end_marker)
{
	uint8_t *stream = malloc(STREAM_CAP);
	size_t stored, len;

	assert_non_null(stream);
	len = compress_stream(data, UNIT, NR_CHUNKS, end_marker, stream, &stored);
	check_output(stream, len, UNIT, data, UNIT);
	free(stream);
	return stored;
}

/* ---- round trips ---- */

static void test_roundtrip_random(void **state)
{
	uint8_t *data = malloc(UNIT);

	(void)state;
	assert_non_null(data);
	rng_seed(1);
	fill_random(data, UNIT);
	/* Random data never compresses: every chunk is stored. */
	assert_int_equal(roundtrip(data, false), NR_CHUNKS);
	assert_int_equal(roundtrip(data, true), NR_CHUNKS);
	free(data);
}

static void test_roundtrip_repetitive(void **state)
{
	uint8_t *data = malloc(UNIT);

	(void)state;
	assert_non_null(data);
	rng_seed(2);

	memset(data, 0, UNIT);
	assert_int_equal(roundtrip(data, false), 0);

	for (size_t i = 0; i < UNIT; i++)
		data[i] = (uint8_t)"abc"[i % 3];
	assert_int_equal(roundtrip(data, true), 0);

	for (size_t i = 0; i < UNIT; i++)
		data[i] = (uint8_t)(i % 251); /* period longer than the 4-bit offsets */
	assert_int_equal(roundtrip(data, false), 0);

	fill_runs(data, UNIT);
	assert_int_equal(roundtrip(data, false), 0);

	fill_text(data, UNIT);
	assert_int_equal(roundtrip(data, true), 0);

	fill_alphabet(data, UNIT, 2);
	assert_int_equal(roundtrip(data, false), 0);
	fill_alphabet(data, UNIT, 4);
	assert_int_equal(roundtrip(data, false), 0);
	free(data);
}

static void test_roundtrip_mixed(void **state)
{
	uint8_t *data = malloc(UNIT);

	(void)state;
	assert_non_null(data);
	rng_seed(3);
	for (int round = 0; round < 4; round++) {
		size_t stored;

		for (size_t c = 0; c < NR_CHUNKS; c++) {
			uint8_t *p = data + c * CHUNK;

			switch ((c + (size_t)round) % 5) {
			case 0: fill_random(p, CHUNK); break;
			case 1: memset(p, 0, CHUNK); break;
			case 2: fill_text(p, CHUNK); break;
			case 3: fill_runs(p, CHUNK); break;
			default: /* half random, half repetitive */
				fill_random(p, CHUNK / 2);
				fill_alphabet(p + CHUNK / 2, CHUNK / 2, 3);
				break;
			}
		}
		stored = roundtrip(data, round & 1);
		assert_true(stored > 0 && stored < NR_CHUNKS);
	}
	free(data);
}

/* A unit whose data ends part-way through a chunk (a file's tail), with an
 * end marker and padding to the cluster, as NTFS stores it. */
static void test_roundtrip_short_data(void **state)
{
	static const size_t lengths[] = { 1, 2, 3, 17, 1000, 4095, 4096, 4097, 10000, UNIT - 1 };
	uint8_t *data = malloc(UNIT), *stream = malloc(STREAM_CAP + CHUNK);

	(void)state;
	assert_non_null(data);
	assert_non_null(stream);
	rng_seed(4);
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		size_t n = lengths[i], stored, len;

		fill_text(data, n);
		len = compress_stream(data, n, NR_CHUNKS, true, stream, &stored);
		memset(stream + len, 0, CHUNK - len % CHUNK); /* cluster padding */
		check_output(stream, len, UNIT, data, n);
		check_output(stream, len + CHUNK - len % CHUNK, UNIT, data, n);
		/* Random tails do not compress: the last partial chunk is stored
		 * zero-padded. */
		fill_random(data, n);
		len = compress_stream(data, n, NR_CHUNKS, false, stream, &stored);
		check_output(stream, len, UNIT, data, n);
	}
	free(stream);
	free(data);
}

/* The stream stops after a few chunks: the rest of the unit must be zero,
 * whether it ends with a zero header (followed by garbage) or src just ends. */
static void test_early_end(void **state)
{
	uint8_t *data = malloc(UNIT), *stream = malloc(STREAM_CAP + 64);

	(void)state;
	assert_non_null(data);
	assert_non_null(stream);
	rng_seed(5);
	for (size_t c = 0; c < NR_CHUNKS; c++)
		if (c & 1)
			fill_random(data + c * CHUNK, CHUNK);
		else
			fill_text(data + c * CHUNK, CHUNK);
	for (size_t keep = 0; keep <= 5; keep++) {
		size_t stored, len;

		len = compress_stream(data, UNIT, keep, true, stream, &stored);
		fill_random(stream + len, 64); /* garbage after the end marker */
		check_output(stream, len, UNIT, data, keep * CHUNK);
		check_output(stream, len + 64, UNIT, data, keep * CHUNK);
		/* no end marker: src runs out at a chunk boundary */
		check_output(stream, len - 2, UNIT, data, keep * CHUNK);
	}
	free(stream);
	free(data);
}

/* ---- hand-built streams ---- */

static void test_literal_chunk(void **state)
{
	static const uint8_t src[] = {
		0x0b, 0xb0, /* compressed, 12 data bytes */
		0x00, 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H',
		0x00, 'I', 'J',
	};
	static const uint8_t empty[] = { 0x00, 0xb0, 0x00 }; /* a flag byte, no tokens */

	(void)state;
	check_output(src, sizeof(src), CHUNK, (const uint8_t *)"ABCDEFGHIJ", 10);
	check_output(src, sizeof(src), 3 * CHUNK, (const uint8_t *)"ABCDEFGHIJ", 10);
	check_output(empty, sizeof(empty), 2 * CHUNK, NULL, 0);
	check_output(NULL, 0, UNIT, NULL, 0);
	check_output(NULL, 0, 0, NULL, 0);
}

static void test_overlapping_backref(void **state)
{
	/* 'a', then back 1 length 4095 at p=1 (12 length bits): 4096 'a's. */
	static const uint8_t run_a[] = { 0x03, 0xb0, 0x02, 'a', 0xfc, 0x0f };
	/* "ab", then back 2 length 10: "abababababab". */
	static const uint8_t run_ab[] = { 0x04, 0xb0, 0x04, 'a', 'b', 0x07, 0x10 };
	/* 'x', back 1 length 16 (p=1) -> 17 'x'; 'y'; then at p=18 the split
	 * is 5 offset / 11 length bits: back 18 length 5 -> "xxxxx". */
	static const uint8_t split[] = { 0x06, 0xb0, 0x0a, 'x', 0x0d, 0x00, 'y', 0x02, 0x88 };
	uint8_t expect[CHUNK];

	(void)state;
	memset(expect, 'a', CHUNK);
	check_output(run_a, sizeof(run_a), CHUNK, expect, CHUNK);
	check_output(run_ab, sizeof(run_ab), CHUNK, (const uint8_t *)"abababababab", 12);
	memset(expect, 'x', 23);
	expect[17] = 'y';
	check_output(split, sizeof(split), CHUNK, expect, 23);
}

static void test_stored_chunk(void **state)
{
	uint8_t src[2 + CHUNK + sizeof("\x02\xb0\x00zz") - 1 + 2];
	uint8_t expect[2 * CHUNK];

	(void)state;
	rng_seed(6);
	put16(src, 0x3fff);
	fill_random(src + 2, CHUNK);
	memcpy(src + 2 + CHUNK, "\x02\xb0\x00zz", 5);
	put16(src + 2 + CHUNK + 5, 0);
	memcpy(expect, src + 2, CHUNK);
	memcpy(expect + CHUNK, "zz", 2);
	check_output(src, 2 + CHUNK, CHUNK, expect, CHUNK);
	check_output(src, 2 + CHUNK, UNIT, expect, CHUNK);
	check_output(src, sizeof(src), UNIT, expect, CHUNK + 2);
	check_output(src, sizeof(src) - 2, 2 * CHUNK, expect, CHUNK + 2);
}

/* ---- malformed streams ---- */

static void test_bad_signature(void **state)
{
	static const unsigned headers[] = {
		0x800b, 0x900b, 0xa00b, 0xc00b, 0xf00b, /* compressed, sig != 3 */
		0x0fff, 0x2fff, 0x7fff,                  /* stored, sig != 3 */
	};
	uint8_t src[2 + CHUNK];

	(void)state;
	memset(src, 0, sizeof(src));
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		put16(src, headers[i]);
		assert_int_equal(run(src, sizeof(src), CHUNK), -EIO);
	}
	/* a stored chunk must hold exactly 4096 bytes */
	put16(src, 0x30ff);
	assert_int_equal(run(src, 2 + 0x100, CHUNK), -EIO);
	put16(src, 0x3ffe);
	assert_int_equal(run(src, 2 + CHUNK - 1, CHUNK), -EIO);
}

static void test_chunk_past_src(void **state)
{
	static const uint8_t lit[] = { 0x0b, 0xb0, 0x00, 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H',
				       0x00, 'I', 'J' };
	/* phrase token cut by the end of the chunk's data: at the end of src, and
	 * followed by an end marker that must not be read as the token's rest */
	static const uint8_t cut_token[] = { 0x02, 0xb0, 0x02, 'a', 0xfc };
	static const uint8_t cut_token_end[] = { 0x02, 0xb0, 0x02, 'a', 0xfc, 0x00, 0x00 };
	uint8_t stored[2 + CHUNK];

	(void)state;
	for (size_t len = 2; len < sizeof(lit); len++)
		assert_int_equal(run(lit, len, CHUNK), -EIO);
	assert_int_equal(run(lit, sizeof(lit), CHUNK), 0);
	assert_int_equal(run(cut_token, sizeof(cut_token), CHUNK), -EIO);
	assert_int_equal(run(cut_token_end, sizeof(cut_token_end), CHUNK), -EIO);
	/* a lone byte where a header should be */
	assert_int_equal(run(lit, 1, CHUNK), -EIO);
	{
		uint8_t plus1[sizeof(lit) + 1];

		memcpy(plus1, lit, sizeof(lit));
		plus1[sizeof(lit)] = 0;
		assert_int_equal(run(plus1, sizeof(plus1), 2 * CHUNK), -EIO);
	}
	memset(stored, 'q', sizeof(stored));
	put16(stored, 0x3fff);
	assert_int_equal(run(stored, sizeof(stored) - 1, CHUNK), -EIO);
	assert_int_equal(run(stored, sizeof(stored), CHUNK), 0);
}

static void test_backref_before_start(void **state)
{
	/* phrase at p=0 */
	static const uint8_t at0[] = { 0x02, 0xb0, 0x01, 0x00, 0x00 };
	/* "ab" then back 3 (> 2 produced) */
	static const uint8_t back3[] = { 0x04, 0xb0, 0x04, 'a', 'b', 0x00, 0x20 };
	/* "ab" then back 2 is fine */
	static const uint8_t back2[] = { 0x04, 0xb0, 0x04, 'a', 'b', 0x00, 0x10 };
	/* back-references never reach into the previous chunk */
	uint8_t two[2 + CHUNK + 5];

	(void)state;
	assert_int_equal(run(at0, sizeof(at0), CHUNK), -EIO);
	assert_int_equal(run(back3, sizeof(back3), CHUNK), -EIO);
	check_output(back2, sizeof(back2), CHUNK, (const uint8_t *)"ababa", 5);
	memset(two, 'z', sizeof(two));
	put16(two, 0x3fff);
	memcpy(two + 2 + CHUNK, "\x02\xb0\x01\x00\x00", 5);
	assert_int_equal(run(two, sizeof(two), 2 * CHUNK), -EIO);
}

static void test_write_past_chunk(void **state)
{
	/* 'a' then length 4096 at p=1: one byte too many */
	static const uint8_t too_long[] = { 0x03, 0xb0, 0x02, 'a', 0xfd, 0x0f };
	/* 'a', length 4095 (chunk full), then a literal */
	static const uint8_t lit_after[] = { 0x04, 0xb0, 0x02, 'a', 0xfc, 0x0f, 'b' };
	/* 'a', length 4095, then a phrase */
	static const uint8_t phrase_after[] = { 0x05, 0xb0, 0x06, 'a', 0xfc, 0x0f, 0x00, 0x00 };
	/* 'a', length 4090 (p=4091), then a phrase of length 6 at p=4091 (4 length
	 * bits): 4097 > 4096 */
	static const uint8_t near_end[] = { 0x05, 0xb0, 0x06, 'a', 0xf7, 0x0f, 0x03, 0x00 };
	/* ... while length 5 exactly fills the chunk */
	static const uint8_t exact[] = { 0x05, 0xb0, 0x06, 'a', 0xf7, 0x0f, 0x02, 0x00 };
	uint8_t expect[CHUNK];

	(void)state;
	assert_int_equal(run(too_long, sizeof(too_long), CHUNK), -EIO);
	assert_int_equal(run(lit_after, sizeof(lit_after), CHUNK), -EIO);
	assert_int_equal(run(phrase_after, sizeof(phrase_after), CHUNK), -EIO);
	assert_int_equal(run(near_end, sizeof(near_end), CHUNK), -EIO);
	memset(expect, 'a', CHUNK);
	check_output(exact, sizeof(exact), CHUNK, expect, CHUNK);
}

static void test_too_many_chunks(void **state)
{
	static const uint8_t two[] = { 0x02, 0xb0, 0x00, 'x', 'y', 0x02, 0xb0, 0x00, 'z', 'w' };
	static const uint8_t two_end[] = { 0x02, 0xb0, 0x00, 'x', 'y', 0x02, 0xb0, 0x00, 'z', 'w',
					   0x00, 0x00, 0xde, 0xad };
	static const uint8_t one_end[] = { 0x02, 0xb0, 0x00, 'x', 'y', 0x00, 0x00, 0x02, 0xb0 };
	uint8_t expect[CHUNK + 2];

	(void)state;
	assert_int_equal(run(two, sizeof(two), CHUNK), -EIO);
	assert_int_equal(run(two, 5, 0), -EIO);
	assert_int_equal(run(two_end, sizeof(two_end), CHUNK), -EIO);
	memset(expect, 0, sizeof(expect));
	memcpy(expect, "xy", 2);
	memcpy(expect + CHUNK, "zw", 2);
	check_output(two, sizeof(two), 2 * CHUNK, expect, sizeof(expect));
	check_output(two_end, sizeof(two_end), 2 * CHUNK, expect, sizeof(expect));
	/* a zero header after the last chunk is fine, garbage after it too */
	check_output(one_end, sizeof(one_end), CHUNK, expect, 2);
	check_output(two_end + 5, sizeof(two_end) - 5, CHUNK, (const uint8_t *)"zw", 2);
}

/* ---- garbage ---- */

/* Any result must be 0 or -EIO; on 0 the output must not depend on what dst
 * held before (every byte written). */
static void fuzz_one(const uint8_t *src, size_t src_len, size_t dst_len, unsigned *ok)
{
	uint8_t *a, *b;
	int ra = run_fill(src, src_len, dst_len, 0x00, &a);
	int rb = run_fill(src, src_len, dst_len, 0xff, &b);

	assert_true(ra == 0 || ra == -EIO);
	assert_int_equal(ra, rb);
	if (ra == 0) {
		if (dst_len)
			assert_memory_equal(a, b, dst_len);
		(*ok)++;
	}
	free(a);
	free(b);
}

static void test_garbage(void **state)
{
	uint8_t *buf = malloc(STREAM_CAP), *data = malloc(UNIT);
	unsigned ok = 0;

	(void)state;
	assert_non_null(buf);
	assert_non_null(data);
	rng_seed(7);
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = rng_below(3 * CHUNK);
		size_t dst_len = rng_below(5) * CHUNK;

		fill_random(buf, len);
		/* make valid-looking headers common */
		for (size_t off = 0; off + 1 < len; off += 1 + rng_below(CHUNK))
			if (rng_below(2))
				buf[off + 1] = (uint8_t)((buf[off + 1] & 0x8f) | 0x30);
		if (len >= 2 && rng_below(2))
			buf[1] = (uint8_t)((buf[1] & 0x80) | 0x30 | rng_below(2));
		fuzz_one(buf, len, dst_len, &ok);
	}
	/* mutated and truncated valid streams */
	for (int base = 0; base < 4; base++) {
		size_t stored, len;

		switch (base) {
		case 0: fill_text(data, UNIT); break;
		case 1: fill_alphabet(data, UNIT, 3); break;
		case 2: fill_runs(data, UNIT); break;
		default:
			fill_text(data, UNIT / 2);
			fill_random(data + UNIT / 2, UNIT / 2);
			break;
		}
		len = compress_stream(data, UNIT, NR_CHUNKS, true, buf, &stored);
		for (int iter = 0; iter < 300; iter++) {
			uint8_t *m = malloc(len);
			size_t flips = 1 + rng_below(4), mlen = len;

			assert_non_null(m);
			memcpy(m, buf, len);
			for (size_t f = 0; f < flips; f++)
				m[rng_below((uint32_t)len)] ^= (uint8_t)(1u << rng_below(8));
			if (rng_below(4) == 0)
				mlen = rng_below((uint32_t)len + 1);
			fuzz_one(m, mlen, UNIT, &ok);
			free(m);
		}
	}
	/* some inputs must have been accepted, or the loop tests little */
	assert_true(ok > 0);
	free(data);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_roundtrip_repetitive),
		cmocka_unit_test(test_roundtrip_mixed),
		cmocka_unit_test(test_roundtrip_short_data),
		cmocka_unit_test(test_early_end),
		cmocka_unit_test(test_literal_chunk),
		cmocka_unit_test(test_overlapping_backref),
		cmocka_unit_test(test_stored_chunk),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_chunk_past_src),
		cmocka_unit_test(test_backref_before_start),
		cmocka_unit_test(test_write_past_chunk),
		cmocka_unit_test(test_too_many_chunks),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
