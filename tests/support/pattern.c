/*
 * pattern.c — see pattern.h.
 */
#include "pattern.h"

#include <string.h>

static uint64_t word(uint64_t seed, uint64_t w)
{
	uint64_t x = w * 0x9E3779B97F4A7C15ull ^ (seed + 1) * 0xC2B2AE3D27D4EB4Full;

	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return x;
}

uint8_t pattern_byte(uint64_t seed, uint64_t off)
{
	if (!seed)
		return 0;
	return (uint8_t)(word(seed, off >> 3) >> ((off & 7) * 8));
}

void pattern_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t off)
{
	size_t i = 0;

	if (!seed) {
		memset(buf, 0, len);
		return;
	}
	for (; i < len && ((off + i) & 7); i++)
		buf[i] = pattern_byte(seed, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t x = word(seed, (off + i) >> 3);

		for (int k = 0; k < 8; k++)
			buf[i + k] = (uint8_t)(x >> (k * 8));
	}
	for (; i < len; i++)
		buf[i] = pattern_byte(seed, off + i);
}

uint64_t mix_seed(uint64_t seed, uint64_t k)
{
	uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z ? z : 1;
}
