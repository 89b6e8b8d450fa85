/*
 * unistr.c — UTF-16LE <-> UTF-8.
 *
 * Invariants: see unistr.h.  Output buffers are sized for the worst case
 * before any byte is written (3 UTF-8 bytes per UTF-16 unit; one UTF-16 unit
 * per UTF-8 byte).
 */
#include "unistr.h"

#include <errno.h>
#include <stdlib.h>

#include "le.h"

int ntfs_utf16_to_utf8(const void *name, uint32_t len, char **out)
{
	const uint8_t *p = name;
	char *s = malloc((size_t)len * 3 + 1), *o = s;
	uint32_t i;

	if (!s)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		uint32_t c = get_le16(p + 2 * i);

		if (c >= 0xd800 && c < 0xdc00) {
			uint32_t lo;

			if (i + 1 >= len)
				goto bad;
			lo = get_le16(p + 2 * (i + 1));
			if (lo < 0xdc00 || lo >= 0xe000)
				goto bad;
			c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
			i++;
		} else if (c >= 0xdc00 && c < 0xe000) {
			goto bad;
		}
		if (c < 0x80) {
			*o++ = (char)c;
		} else if (c < 0x800) {
			*o++ = (char)(0xc0 | c >> 6);
			*o++ = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			*o++ = (char)(0xe0 | c >> 12);
			*o++ = (char)(0x80 | ((c >> 6) & 0x3f));
			*o++ = (char)(0x80 | (c & 0x3f));
		} else {
			*o++ = (char)(0xf0 | c >> 18);
			*o++ = (char)(0x80 | ((c >> 12) & 0x3f));
			*o++ = (char)(0x80 | ((c >> 6) & 0x3f));
			*o++ = (char)(0x80 | (c & 0x3f));
		}
	}
	*o = '\0';
	*out = s;
	return 0;
bad:
	free(s);
	return -EILSEQ;
}

/* Decode one UTF-8 sequence at s[*i]; returns the code point or -1. */
static int32_t utf8_next(const uint8_t *s, size_t len, size_t *i)
{
	uint32_t c = s[*i], min;
	unsigned n, k;

	if (c < 0x80) {
		(*i)++;
		return (int32_t)c;
	}
	if ((c & 0xe0) == 0xc0)
		n = 1, c &= 0x1f, min = 0x80;
	else if ((c & 0xf0) == 0xe0)
		n = 2, c &= 0x0f, min = 0x800;
	else if ((c & 0xf8) == 0xf0)
		n = 3, c &= 0x07, min = 0x10000;
	else
		return -1;
	if (*i + n >= len)
		return -1;
	for (k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xc0) != 0x80)
			return -1;
		c = c << 6 | (s[*i + k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
		return -1;
	*i += n + 1;
	return (int32_t)c;
}

int ntfs_utf8_to_utf16(const char *str, size_t slen, ntfschar **out, uint32_t *out_len)
{
	const uint8_t *s = (const uint8_t *)str;
	ntfschar *u = malloc((slen + 1) * sizeof(*u));
	size_t i = 0;
	uint32_t n = 0;

	if (!u)
		return -ENOMEM;
	while (i < slen) {
		int32_t c = utf8_next(s, slen, &i);

		if (c < 0) {
			free(u);
			return -EILSEQ;
		}
		if (c >= 0x10000) {
			c -= 0x10000;
			u[n++] = cpu_to_le16((uint16_t)(0xd800 + (c >> 10)));
			u[n++] = cpu_to_le16((uint16_t)(0xdc00 + (c & 0x3ff)));
		} else {
			u[n++] = cpu_to_le16((uint16_t)c);
		}
	}
	*out = u;
	*out_len = n;
	return 0;
}
