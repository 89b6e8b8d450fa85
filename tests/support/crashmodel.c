/*
 * crashmodel.c — see crashmodel.h.
 */
#include "crashmodel.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

int cm_init(struct cm_file *f, const char *path, uint64_t cap, const uint8_t *data, uint64_t len)
{
	memset(f, 0, sizeof(*f));
	if (len > cap)
		return -EFBIG;
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->cap = cap;
	f->base = calloc(1, cap ? cap : 1);
	f->cur = calloc(1, cap ? cap : 1);
	if (!f->base || !f->cur) {
		cm_free(f);
		return -ENOMEM;
	}
	cm_accept(f, data, len);
	return 0;
}

void cm_free(struct cm_file *f)
{
	free(f->base);
	free(f->cur);
	free(f->ops);
	memset(f, 0, sizeof(*f));
}

static struct cm_op *add_op(struct cm_file *f)
{
	if (f->nops == f->ops_cap) {
		size_t n = f->ops_cap ? 2 * f->ops_cap : 64;
		struct cm_op *o = realloc(f->ops, n * sizeof(*o));

		if (!o)
			abort();        /* a test helper: nothing sensible to do */
		f->ops = o;
		f->ops_cap = n;
	}
	memset(&f->ops[f->nops], 0, sizeof(f->ops[0]));
	return &f->ops[f->nops++];
}

void cm_write(struct cm_file *f, uint32_t id, const char *what, uint64_t off, uint64_t len,
	      uint64_t seed, bool returned)
{
	struct cm_op *o = add_op(f);

	if (off + len > f->cap)
		abort();
	o->kind = CM_WRITE;
	o->returned = returned;
	o->id = id;
	o->what = what;
	o->off = off;
	o->len = len;
	o->seed = seed;
	o->size_before = f->cur_size;
	o->size_after = off + len > f->cur_size ? off + len : f->cur_size;
	if (returned) {
		pattern_fill(f->cur + off, (size_t)len, seed, off);
		f->cur_size = o->size_after;
	}
}

void cm_truncate(struct cm_file *f, uint32_t id, uint64_t size, bool returned)
{
	struct cm_op *o = add_op(f);

	if (size > f->cap)
		abort();
	o->kind = CM_TRUNCATE;
	o->returned = returned;
	o->id = id;
	o->what = "ftruncate";
	o->size_before = f->cur_size;
	o->size_after = size;
	if (returned) {
		if (size < f->cur_size)
			memset(f->cur + size, 0, (size_t)(f->cur_size - size));
		f->cur_size = size;
	}
}

void cm_synced(struct cm_file *f)
{
	memcpy(f->base, f->cur, (size_t)f->cap);
	f->base_size = f->cur_size;
	f->nops = 0;
}

bool cm_in_flight(const struct cm_file *f)
{
	return f->nops && !f->ops[f->nops - 1].returned;
}

void cm_accept(struct cm_file *f, const uint8_t *got, uint64_t len)
{
	memset(f->base, 0, (size_t)f->cap);
	memcpy(f->base, got, (size_t)len);
	f->base_size = len;
	memcpy(f->cur, f->base, (size_t)f->cap);
	f->cur_size = len;
	f->nops = 0;
}

/* ---- checking ---- */

struct out {
	char *p;
	size_t len, used;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->used + 1 >= o->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->used, o->len - o->used, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used = o->used + (size_t)n < o->len ? o->used + (size_t)n : o->len - 1;
}

static bool size_allowed(const struct cm_file *f, uint64_t len, bool keeper)
{
	if (keeper) {
		if (len == f->cur_size)
			return true;
		return cm_in_flight(f) && len == f->ops[f->nops - 1].size_after;
	}
	if (len == f->base_size)
		return true;
	for (size_t i = 0; i < f->nops; i++)
		if (len == f->ops[i].size_after)
			return true;
	return false;
}

static void describe_sizes(const struct cm_file *f, bool keeper, struct out *o)
{
	size_t shown = 0;

	if (keeper) {
		put(o, "%" PRIu64, f->cur_size);
		if (cm_in_flight(f))
			put(o, " or %" PRIu64 " (op %u in flight)", f->ops[f->nops - 1].size_after,
			    f->ops[f->nops - 1].id);
		return;
	}
	put(o, "durable %" PRIu64, f->base_size);
	for (size_t i = 0; i < f->nops && shown < 12; i++, shown++)
		put(o, ", %" PRIu64 " (after op %u %s%s)", f->ops[i].size_after, f->ops[i].id,
		    f->ops[i].what, f->ops[i].returned ? "" : ", in flight");
	if (f->nops > shown)
		put(o, ", ... (%zu ops in all)", f->nops);
}

static void describe_ops_at(const struct cm_file *f, uint64_t b, struct out *o)
{
	size_t shown = 0;

	for (size_t i = f->nops; i-- > 0 && shown < 8;) {
		const struct cm_op *op = &f->ops[i];

		if (op->kind == CM_WRITE && b >= op->off && b < op->off + op->len) {
			put(o, "\n      op %u %s [%" PRIu64 ", +%" PRIu64 ") seed %#" PRIx64
			    " wrote 0x%02x%s", op->id, op->what, op->off, op->len, op->seed,
			    pattern_byte(op->seed, b), op->returned ? "" : " (did not return)");
			shown++;
		} else if (op->kind == CM_TRUNCATE &&
			   (b >= op->size_after || b >= op->size_before)) {
			put(o, "\n      op %u ftruncate %" PRIu64 " -> %" PRIu64 "%s", op->id,
			    op->size_before, op->size_after, op->returned ? "" : " (did not return)");
			shown++;
		}
	}
	if (!shown)
		put(o, "\n      (no operation since the durable state touched it)");
}

int cm_check(const struct cm_file *f, const uint8_t *got, uint64_t len, bool keeper, char *why,
	     size_t whylen)
{
	struct out o = { why, whylen, 0 };
	uint8_t *ok;
	uint64_t b, first = UINT64_MAX, last = 0, bad = 0, stale = 0;

	why[0] = '\0';
	if (len > f->cap || !size_allowed(f, len, keeper)) {
		put(&o, "%s: size %" PRIu64 "; allowed (%s): ", f->path, len,
		    keeper ? "keeper: every returned op" : "no keeper: any size since the sync");
		describe_sizes(f, keeper, &o);
		return -1;
	}
	ok = calloc(1, len ? len : 1);
	if (!ok) {
		put(&o, "%s: out of memory checking it", f->path);
		return -1;
	}
	if (keeper) {
		for (b = 0; b < len; b++)
			ok[b] = got[b] == f->cur[b];
		if (cm_in_flight(f)) {
			const struct cm_op *op = &f->ops[f->nops - 1];
			uint64_t lo, hi;

			if (op->kind == CM_WRITE) {
				lo = op->off < op->size_before ? op->off : op->size_before;
				hi = op->off + op->len;
			} else {
				lo = op->size_before < op->size_after ? op->size_before : op->size_after;
				hi = op->size_before < op->size_after ? op->size_after : op->size_before;
			}
			for (b = lo; b < hi && b < len; b++)
				if (!got[b] || (op->kind == CM_WRITE && b >= op->off &&
						got[b] == pattern_byte(op->seed, b)))
					ok[b] = 1;
		}
	} else {
		uint8_t *touched = calloc(1, len ? len : 1);

		if (!touched) {
			free(ok);
			put(&o, "%s: out of memory checking it", f->path);
			return -1;
		}
		for (b = 0; b < len; b++)
			ok[b] = got[b] == (b < f->base_size ? f->base[b] : 0);
		for (size_t i = 0; i < f->nops; i++) {
			const struct cm_op *op = &f->ops[i];

			if (op->kind == CM_WRITE) {
				for (b = op->off; b < op->off + op->len && b < len; b++) {
					touched[b] = 1;
					if (got[b] == pattern_byte(op->seed, b))
						ok[b] = 1;
				}
			} else {
				for (b = op->size_after; b < len; b++)
					touched[b] = 1;
			}
		}
		for (b = 0; b < len; b++)
			if (touched[b] && !got[b])
				ok[b] = 1;
		free(touched);
	}
	for (b = 0; b < len; b++)
		if (!ok[b]) {
			if (first == UINT64_MAX)
				first = b;
			last = b;
			bad++;
			if (got[b] == 0xee)
				stale++;
		}
	free(ok);
	if (!bad)
		return 0;
	put(&o, "%s (%s rules): %" PRIu64 " bytes wrong in [%" PRIu64 ", %" PRIu64 "] (pages %"
	    PRIu64 "..%" PRIu64 ")%s; size %" PRIu64 " (durable %" PRIu64 ", current %" PRIu64
	    ")\n    first: byte %" PRIu64 " is 0x%02x; durable 0x%02x, current 0x%02x; got from "
	    "there:", f->path, keeper ? "keeper" : "no-keeper", bad, first, last, first / 4096,
	    last / 4096, 2 * stale > bad ? " -- mostly 0xee: stale free-space bytes exposed" : "", len,
	    f->base_size, f->cur_size, first, got[first],
	    first < f->base_size ? f->base[first] : 0, f->cur[first]);
	for (b = first; b < len && b < first + 16; b++)
		put(&o, " %02x", got[b]);
	put(&o, "\n    ops since the durable state at that byte (newest first):");
	describe_ops_at(f, first, &o);
	put(&o, "\n    the last ops on the file since the durable state (of %zu):", f->nops);
	for (size_t i = f->nops > 12 ? f->nops - 12 : 0; i < f->nops; i++) {
		const struct cm_op *op = &f->ops[i];

		if (op->kind == CM_WRITE)
			put(&o, "\n      op %u %s [%" PRIu64 ", +%" PRIu64 ") size %" PRIu64
			    " -> %" PRIu64 "%s", op->id, op->what, op->off, op->len,
			    op->size_before, op->size_after, op->returned ? "" : " (did not return)");
		else
			put(&o, "\n      op %u ftruncate %" PRIu64 " -> %" PRIu64 "%s", op->id,
			    op->size_before, op->size_after, op->returned ? "" : " (did not return)");
	}
	return -1;
}
