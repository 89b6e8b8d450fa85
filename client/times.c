/*
 * times.c — a file's times: ntfsc_stat_times / ntfsc_fstat_times and
 * ntfsc_utimens / ntfsc_futimens (utimensat(2) semantics).
 *
 * Invariants: UTIME_NOW is resolved here, with this machine's
 * CLOCK_REALTIME (the daemon's clock too); UTIME_OMIT sends nothing for
 * that time; any other tv_nsec outside [0, 1e9) is EINVAL before a
 * request is made.  Struct sizes are honoured as for ntfsc_stat_disk:
 * only the members the caller's struct_size holds are written.
 */
#include "ntfsc_int.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static struct timespec ts_from_ns(int64_t ns)
{
	int64_t s = ns / 1000000000, r = ns % 1000000000;

	if (r < 0) {
		r += 1000000000;
		s--;
	}
	return (struct timespec){ .tv_sec = (time_t)s, .tv_nsec = (long)r };
}

static int times_reply(ntfsc *c, Ntfsd__StatRequest *sr, struct ntfsc_stat_times *out)
{
	struct ntfsc_stat_times v = { .struct_size = sizeof(v) };
	Ntfsd__Reply *rep;

	if (!out || out->struct_size < offsetof(struct ntfsc_stat_times, known) + sizeof(bool))
		return error_set(EINVAL, "ntfsc_stat_times: struct_size is not set "
				 "(use NTFSC_STAT_TIMES_INIT)");
	if (request(c, NTFSD__REQUEST__BODY_STAT, sr, NULL, NULL, &rep))
		return -1;
	v.known = rep->stat->times_known;
	v.creation = ts_from_ns(rep->stat->creation_time_ns);
	v.modification = ts_from_ns(rep->stat->mtime_ns);
	v.change = ts_from_ns(rep->stat->ctime_ns);
	v.access = ts_from_ns(rep->stat->atime_ns);
	ntfsd__reply__free_unpacked(rep, NULL);
	copy_sized(out, &v, sizeof(v));
	return 0;
}

int ntfsc_stat_times(ntfsc *c, const char *path, struct ntfsc_stat_times *st)
{
	Ntfsd__StatRequest sr = NTFSD__STAT_REQUEST__INIT;

	if (!c)
		return error_on(c, error_set(EINVAL, NULL));
	if (check_path(path))
		return error_on(c, -1);
	sr.target_case = NTFSD__STAT_REQUEST__TARGET_PATH;
	sr.path = (char *)path;
	return error_on(c, times_reply(c, &sr, st));
}

int ntfsc_fstat_times(ntfsc_file *f, struct ntfsc_stat_times *st)
{
	Ntfsd__StatRequest sr = NTFSD__STAT_REQUEST__INIT;

	if (!f)
		return error_on(NULL, error_set(EINVAL, NULL));
	sr.target_case = NTFSD__STAT_REQUEST__TARGET_HANDLE;
	sr.handle = f->handle;
	return error_on(f->c, times_reply(f->c, &sr, st));
}

/* One of utimensat's two times into the request: false when omitted. */
static int one_time(const struct timespec *ts, bool *set, int64_t *ns)
{
	struct timespec now;

	*set = false;
	if (!ts || ts->tv_nsec == UTIME_NOW) {
		clock_gettime(CLOCK_REALTIME, &now);
		ts = &now;
	} else if (ts->tv_nsec == UTIME_OMIT) {
		return 0;
	} else if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000) {
		return error_set(EINVAL, "a time's tv_nsec is out of range (not UTIME_NOW, "
				 "UTIME_OMIT or 0 to 999999999)");
	}
	/* seconds past what int64 ns hold (before 1678, after 2262) */
	if (ts->tv_sec > INT64_MAX / 1000000000 - 1 || ts->tv_sec < INT64_MIN / 1000000000 + 1)
		return error_set(EINVAL, "a time is outside what NTFS keeps here (1678 to 2262)");
	*set = true;
	*ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
	return 0;
}

static int set_times(ntfsc *c, Ntfsd__SetTimesRequest *tr, const struct timespec times[2])
{
	Ntfsd__Reply *rep;
	bool set_a, set_m;

	if (one_time(times ? &times[0] : NULL, &set_a, &tr->atime_ns) ||
	    one_time(times ? &times[1] : NULL, &set_m, &tr->mtime_ns))
		return -1;
	tr->set_atime = set_a;
	tr->set_mtime = set_m;
	if (request(c, NTFSD__REQUEST__BODY_SET_TIMES, tr, NULL, NULL, &rep))
		return -1;
	ntfsd__reply__free_unpacked(rep, NULL);
	return 0;
}

int ntfsc_utimens(ntfsc *c, const char *path, const struct timespec times[2])
{
	Ntfsd__SetTimesRequest tr = NTFSD__SET_TIMES_REQUEST__INIT;

	if (!c)
		return error_on(c, error_set(EINVAL, NULL));
	if (check_path(path))
		return error_on(c, -1);
	tr.target_case = NTFSD__SET_TIMES_REQUEST__TARGET_PATH;
	tr.path = (char *)path;
	return error_on(c, set_times(c, &tr, times));
}

int ntfsc_futimens(ntfsc_file *f, const struct timespec times[2])
{
	Ntfsd__SetTimesRequest tr = NTFSD__SET_TIMES_REQUEST__INIT;

	if (!f)
		return error_on(NULL, error_set(EINVAL, NULL));
	if (!f->writable)
		return error_on(f->c, error_set(EBADF, "ntfsc_futimens: the file is open read-only"));
	tr.target_case = NTFSD__SET_TIMES_REQUEST__TARGET_HANDLE;
	tr.handle = f->handle;
	return error_on(f->c, set_times(f->c, &tr, times));
}
