/*
 * test_names_concurrent — creators, renamers and removers in one directory
 * from several processes at once (issue 13), each with its own connection.
 *
 * NPROC processes each create NOWN files of their own in /cc (each file's
 * bytes are its path), race for NSHARED contested names with O_EXCL
 * (exactly one process may win each, the others get EEXIST) and for
 * NCASE names whose spellings differ by case only (one spelling wins,
 * the others get EEXIST), then rename half of their own files to /cc2
 * and remove a quarter.  ROUNDS rounds, each on a fresh volume.
 *
 * Checked after a clean stop: every process's results add up (one winner
 * a name), `ntfsfix -n` is clean, ntfsls and The Sleuth Kit's fls list
 * exactly the model's names in /cc and /cc2, ntfscat reads each
 * surviving file's bytes, and a fresh ntfs-3g mount lists the same.
 *
 * unlink_while_open: files removed while two connections have them open
 * (one writing, one reading) lose their names at once and stay readable,
 * writable and growable through the handles; a new file takes the name;
 * after the last close (and a sync) the record and clusters are free again
 * (the volume's free space comes back, The Sleuth Kit's istat calls the
 * record unallocated), NORPHAN rounds; then ntfsfix -n, ntfsls, fls and
 * ntfscat agree.  A daemon killed while such a file is open leaves a
 * clean volume with every named file intact (the orphan's record leaks).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crashrig.h"
#include "ntfsc.h"
#include "oracle.h"

#define NPROC 4
#define NOWN 150
#define NSHARED 40
#define NCASE 20
#define ROUNDS 5

static struct crashrig rig;

static const char *const daemon_opts[] = { "--dirty-expire-ms", "200", NULL };

#define fail_logs(...) rig_fail(&rig, __VA_ARGS__)

/* What a child reports through its pipe: per contested name, won or not. */
struct report {
	int status;                     /* 0, or the line of the first failure */
	char why[200];
	bool shared_won[NSHARED];
	bool case_won[NCASE];
};

static int make(ntfsc *c, const char *path)
{
	ntfsc_file *f = ntfsc_open(c, path, O_RDWR | O_CREAT | O_EXCL);
	size_t len = strlen(path);

	if (!f)
		return -1;
	if (ntfsc_pwrite(f, path, len, 0) != (ssize_t)len) {
		int e = errno;

		ntfsc_close(f);
		errno = e;
		return -1;
	}
	return ntfsc_close(f);
}

#define CHILD_FAIL(...)                                                  \
	do {                                                             \
		r->status = __LINE__;                                    \
		snprintf(r->why, sizeof(r->why), __VA_ARGS__);           \
		return;                                                  \
	} while (0)

/* A case spelling of name j for process k: "mixed-case-J" in k's pattern. */
static void case_name(char *out, size_t size, int j, int k)
{
	char base[32];

	snprintf(base, sizeof(base), "mixed-case-%02d", j);
	for (size_t i = 0; base[i]; i++)
		if (base[i] >= 'a' && base[i] <= 'z' && ((i + (size_t)k) % 3 == 0))
			base[i] = (char)(base[i] - 32);
	snprintf(out, size, "/cc/%s", base);
}

static void child(int k, struct report *r)
{
	ntfsc *c = ntfsc_connect(rig.dmn.socket);
	char p[64], q[64];

	memset(r, 0, sizeof(*r));
	if (!c)
		CHILD_FAIL("connect: %s", strerror(errno));
	for (int i = 0; i < NOWN; i++) {
		snprintf(p, sizeof(p), "/cc/p%d-%04d", k, i);
		if (make(c, p))
			CHILD_FAIL("create %s: %s (%s)", p, strerror(errno),
				   ntfsc_last_error_message(c));
		/* the contested names, interleaved with the own ones */
		if (i % (NOWN / NSHARED) == 0 && i / (NOWN / NSHARED) < NSHARED) {
			int j = i / (NOWN / NSHARED);

			snprintf(q, sizeof(q), "/cc/shared-%02d", j);
			if (!make(c, q))
				r->shared_won[j] = true;
			else if (errno != EEXIST)
				CHILD_FAIL("create %s: %s, not EEXIST (%s)", q, strerror(errno),
					   ntfsc_last_error_message(c));
		}
		if (i % (NOWN / NCASE) == 1 && i / (NOWN / NCASE) < NCASE) {
			int j = i / (NOWN / NCASE);

			case_name(q, sizeof(q), j, k);
			if (!make(c, q))
				r->case_won[j] = true;
			else if (errno != EEXIST)
				CHILD_FAIL("create %s: %s, not EEXIST (%s)", q, strerror(errno),
					   ntfsc_last_error_message(c));
		}
	}
	for (int i = 0; i < NOWN; i++) {
		snprintf(p, sizeof(p), "/cc/p%d-%04d", k, i);
		if (i % 2 == 0) {
			snprintf(q, sizeof(q), "/cc2/p%d-%04d", k, i);
			if (ntfsc_rename(c, p, q))
				CHILD_FAIL("rename %s: %s (%s)", p, strerror(errno),
					   ntfsc_last_error_message(c));
		} else if (i % 4 == 1) {
			if (ntfsc_unlink(c, p))
				CHILD_FAIL("unlink %s: %s (%s)", p, strerror(errno),
					   ntfsc_last_error_message(c));
		}
	}
	if (ntfsc_sync(c))
		CHILD_FAIL("sync: %s", strerror(errno));
	ntfsc_disconnect(c);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* names (count n) must be exactly want (count m), any order. */
static void expect_names(const char *who, const char *dir, char **names, size_t n, char **want,
			 size_t m)
{
	qsort(names, n, sizeof(*names), cmp_str);
	qsort(want, m, sizeof(*want), cmp_str);
	for (size_t i = 0, j = 0; i < n || j < m;) {
		int rc = i == n ? 1 : j == m ? -1 : strcmp(names[i], want[j]);

		if (rc < 0)
			fail_logs("%s lists %s/%s, which the model does not have", who, dir, names[i]);
		if (rc > 0)
			fail_logs("%s does not list %s/%s", who, dir, want[j]);
		i++, j++;
	}
}

/* fls -p -u of the scratch image: the names under dir ("cc/"). */
static char **fls_names(const char *dir, size_t *n)
{
	const char *argv[] = { "fls", "-r", "-p", "-u", "-f", "ntfs", rig.tv.scratch, NULL };
	char *out = NULL, *save = NULL, *line, **v = NULL;
	size_t cap = 0, dl = strlen(dir);
	int st = -1;

	*n = 0;
	if (oracle_run(argv, &out, NULL, &st) || st)
		fail_logs("fls failed (%d): %s", st, oracle_last_stderr());
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* "r/r 64-128-1:\tcc/p0-0001" */
		char *tab = strchr(line, '\t');

		if (!tab || strncmp(tab + 1, dir, dl) || strchr(tab + 1 + dl, '/'))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 256;
			v = realloc(v, cap * sizeof(*v));
			assert_non_null(v);
		}
		v[(*n)++] = strdup(tab + 1 + dl);
	}
	free(out);
	return v;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void one_round(int round)
{
	struct report rep[NPROC];
	pid_t pid[NPROC];
	int fds[NPROC][2];
	char **want_cc = calloc(NPROC * NOWN + NSHARED + NCASE, sizeof(char *));
	char **want_cc2 = calloc(NPROC * NOWN, sizeof(char *));
	size_t ncc = 0, ncc2 = 0;
	ntfsc *c;

	assert_non_null(want_cc);
	assert_non_null(want_cc2);
	if (rig_setup(&rig, false))
		fail_logs("round %d: no scratch volume", round);
	rig_arm_alarm(&rig, 300);       /* rig_teardown disarms it: per round */
	rig_start(&rig, daemon_opts);
	c = ntfsc_connect(rig.dmn.socket);
	if (!c || ntfsc_mkdir(c, "/cc") || ntfsc_mkdir(c, "/cc2"))
		fail_logs("round %d: mkdir: %s", round, strerror(errno));
	ntfsc_disconnect(c);
	for (int k = 0; k < NPROC; k++) {
		if (pipe(fds[k]))
			fail_logs("pipe: %s", strerror(errno));
		pid[k] = fork();
		if (pid[k] < 0)
			fail_logs("fork: %s", strerror(errno));
		if (pid[k] == 0) {
			struct report r;

			close(fds[k][0]);
			child(k, &r);
			if (write(fds[k][1], &r, sizeof(r)) != (ssize_t)sizeof(r))
				_exit(3);
			_exit(0);
		}
		close(fds[k][1]);
	}
	for (int k = 0; k < NPROC; k++) {
		int st;
		ssize_t got = read(fds[k][0], &rep[k], sizeof(rep[k]));

		close(fds[k][0]);
		waitpid(pid[k], &st, 0);
		if (got != (ssize_t)sizeof(rep[k]) || !WIFEXITED(st) || WEXITSTATUS(st))
			fail_logs("round %d: process %d died (status 0x%x)", round, k, st);
		if (rep[k].status)
			fail_logs("round %d: process %d, line %d: %s", round, k, rep[k].status,
				  rep[k].why);
	}
	/* the model: one winner per contested name */
	for (int j = 0; j < NSHARED; j++) {
		int winners = 0;

		for (int k = 0; k < NPROC; k++)
			winners += rep[k].shared_won[j];
		if (winners != 1)
			fail_logs("round %d: /cc/shared-%02d was created by %d processes", round, j,
				  winners);
		if (asprintf(&want_cc[ncc++], "shared-%02d", j) < 0)
			abort();
	}
	for (int j = 0; j < NCASE; j++) {
		int winners = 0, who = -1;
		char q[64];

		for (int k = 0; k < NPROC; k++)
			if (rep[k].case_won[j]) {
				winners++;
				who = k;
			}
		if (winners != 1)
			fail_logs("round %d: mixed-case-%02d was created in %d spellings", round, j,
				  winners);
		case_name(q, sizeof(q), j, who);
		want_cc[ncc++] = strdup(q + 4);
	}
	for (int k = 0; k < NPROC; k++)
		for (int i = 0; i < NOWN; i++) {
			char *s;

			if (asprintf(&s, "p%d-%04d", k, i) < 0)
				abort();
			if (i % 2 == 0)
				want_cc2[ncc2++] = s;
			else if (i % 4 == 1)
				free(s);
			else
				want_cc[ncc++] = s;
		}
	rig_stop_clean(&rig, "after the race");
	rig_fsck(&rig, "after the race");
	{
		char **v;
		size_t n;

		if (oracle_ls(rig.tv.scratch, "/cc", &v, &n))
			fail_logs("ntfsls /cc: %s", oracle_last_stderr());
		oracle_drop_dots(v, &n);
		expect_names("ntfsls", "/cc", v, n, want_cc, ncc);
		oracle_free_names(v, n);
		if (oracle_ls(rig.tv.scratch, "/cc2", &v, &n))
			fail_logs("ntfsls /cc2: %s", oracle_last_stderr());
		oracle_drop_dots(v, &n);
		expect_names("ntfsls", "/cc2", v, n, want_cc2, ncc2);
		oracle_free_names(v, n);
		v = fls_names("cc/", &n);
		expect_names("fls", "/cc", v, n, want_cc, ncc);
		free_names(v, n);
		v = fls_names("cc2/", &n);
		expect_names("fls", "/cc2", v, n, want_cc2, ncc2);
		free_names(v, n);
	}
	/* every 7th surviving file's bytes: the path it was made under */
	for (size_t i = 0; i < ncc2; i += 7) {
		char path[64], made[64], *data = NULL;
		size_t len = 0;

		snprintf(path, sizeof(path), "/cc2/%s", want_cc2[i]);
		snprintf(made, sizeof(made), "/cc/%s", want_cc2[i]);
		if (oracle_cat(rig.tv.scratch, path, NULL, &data, &len) || len != strlen(made) ||
		    memcmp(data, made, len))
			fail_logs("ntfscat %s: %.*s, not %s", path, (int)len, data ? data : "", made);
		free(data);
	}
	{
		char dir[600];
		size_t n = 0;
		struct dirent *de;
		DIR *d;

		if (testvol_mount(&rig.tv, rig.tv.scratch, "ro,no_detach"))
			fail_logs("ntfs-3g refused the volume");
		snprintf(dir, sizeof(dir), "%s/cc", rig.tv.mnt);
		d = opendir(dir);
		while (d && (de = readdir(d)))
			n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
		if (d)
			closedir(d);
		if (testvol_unmount(&rig.tv))
			fail_logs("unmount failed");
		if (n != ncc)
			fail_logs("ntfs-3g lists %zu names in /cc, the model has %zu", n, ncc);
	}
	printf("    round %d: %d processes, %zu names left in /cc, %zu in /cc2, %d contested "
	       "names with one winner each\n", round, NPROC, ncc, ncc2, NSHARED + NCASE);
	free_names(want_cc, ncc);
	free_names(want_cc2, ncc2);
	rig_teardown(&rig);
}

#define NORPHAN 12
#define OLEN (3u << 20)

static uint8_t obyte(int round, uint64_t i)
{
	return (uint8_t)((i * 131 + (uint64_t)round * 7) >> 3);
}

static void fill(uint8_t *b, int round, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		b[i] = obyte(round, off + i);
}

static uint64_t free_bytes(ntfsc *c)
{
	struct ntfsc_volume_status st = NTFSC_VOLUME_STATUS_INIT;
	uint64_t n;

	if (ntfsc_volume_status(c, &st))
		fail_logs("volume status: %s", strerror(errno));
	n = st.free_bytes;
	ntfsc_volume_status_free(&st);
	return n;
}

static void expect_unallocated(uint64_t mft_no)
{
	char ino[24], *out = NULL;
	const char *argv[] = { "istat", "-f", "ntfs", rig.tv.scratch, ino, NULL };
	int st = -1;

	snprintf(ino, sizeof(ino), "%llu", (unsigned long long)mft_no);
	if (oracle_run(argv, &out, NULL, &st) || st)
		fail_logs("istat %s: %s", ino, oracle_last_stderr());
	if (!strstr(out, "Not Allocated"))
		fail_logs("istat: MFT record %s is still allocated:\n%.400s", ino, out);
	free(out);
}

static void unlink_while_open(void **state)
{
	static uint8_t buf[OLEN + (1u << 20)], back[OLEN + (1u << 20)];
	uint64_t freed_mft[NORPHAN], base;
	ntfsc *w, *r;

	(void)state;
	if (rig_setup(&rig, false))
		fail_logs("no scratch volume");
	rig_arm_alarm(&rig, 300);
	rig_start(&rig, daemon_opts);
	w = ntfsc_connect(rig.dmn.socket);
	r = ntfsc_connect(rig.dmn.socket);
	if (!w || !r || ntfsc_mkdir(w, "/u"))
		fail_logs("connect/mkdir: %s", strerror(errno));
	for (int round = 0; round < NORPHAN; round++) {
		struct ntfsc_stat_ext x;
		ntfsc_file *fw, *fr, *again;
		struct ntfsc_stat st;
		uint8_t *m;

		ntfsc_sync(w);
		base = free_bytes(w);   /* before this round's file */
		fw = ntfsc_open(w, "/u/victim", O_RDWR | O_CREAT | O_EXCL);
		if (!fw)
			fail_logs("round %d: create: %s", round, strerror(errno));
		fill(buf, round, 0, OLEN);
		if (ntfsc_pwrite(fw, buf, OLEN, 0) != (ssize_t)OLEN ||
		    (round % 2 && ntfsc_fsync(fw)))
			fail_logs("round %d: write: %s", round, strerror(errno));
		fr = ntfsc_open(r, "/u/victim", O_RDONLY);
		if (!fr || ntfsc_fstat_ext(fr, &x))
			fail_logs("round %d: open for reading: %s", round, strerror(errno));
		freed_mft[round] = x.mft_no;
		if (ntfsc_unlink(r, "/u/victim"))
			fail_logs("round %d: unlink of an open file: %s (%s)", round, strerror(errno),
				  ntfsc_last_error_message(r));
		if (!ntfsc_stat(w, "/u/victim", &st) || errno != ENOENT)
			fail_logs("round %d: the name is still there after the unlink", round);
		/* the name is free: a new file takes it */
		again = ntfsc_open(w, "/u/victim", O_RDWR | O_CREAT | O_EXCL);
		if (!again || ntfsc_pwrite(again, "new", 3, 0) != 3 || ntfsc_close(again))
			fail_logs("round %d: a new /u/victim: %s", round, strerror(errno));
		/* the handles keep the old file: it grows, both see it */
		fill(buf, round, OLEN, 1u << 20);
		if (ntfsc_pwrite(fw, buf, 1u << 20, OLEN) != (ssize_t)(1u << 20) || ntfsc_fsync(fw))
			fail_logs("round %d: write after the unlink: %s (%s)", round,
				  strerror(errno), ntfsc_last_error_message(w));
		fill(buf, round, 0, OLEN + (1u << 20));
		if (ntfsc_pread(fr, back, sizeof(back), 0) != (ssize_t)sizeof(back) ||
		    memcmp(back, buf, sizeof(back)))
			fail_logs("round %d: the reader does not read the unlinked file's bytes", round);
		m = ntfsc_mmap(fr, 0, 1u << 20, PROT_READ);
		if (m == MAP_FAILED || memcmp(m, buf, 1u << 20))
			fail_logs("round %d: mmap of the unlinked file: %s", round, strerror(errno));
		ntfsc_munmap(fr, m, 1u << 20);
		if (ntfsc_close(fw))
			fail_logs("round %d: close: %s", round, strerror(errno));
		/* one handle left: nothing freed yet */
		if (ntfsc_pread(fr, back, 4096, OLEN) != 4096 || memcmp(back, buf + OLEN, 4096))
			fail_logs("round %d: read after the writer's close", round);
		if (ntfsc_unlink(w, "/u/victim"))
			fail_logs("round %d: unlink of the new file: %s", round, strerror(errno));
		if (round % 3 == 2)
			continue;       /* left open: freed when the connection goes */
		if (ntfsc_close(fr))
			fail_logs("round %d: close: %s", round, strerror(errno));
		if (ntfsc_sync(w))
			fail_logs("round %d: sync: %s", round, strerror(errno));
		if (free_bytes(w) + (2u << 20) < base)
			fail_logs("round %d: %llu bytes free after the last close, %llu before: the "
				  "round's unlinked file's clusters were not freed", round,
				  (unsigned long long)free_bytes(w), (unsigned long long)base);
	}
	ntfsc_disconnect(w);
	ntfsc_disconnect(r);        /* the handles left open close with it */
	rig_stop_clean(&rig, "after the unlinks");
	rig_fsck(&rig, "unlink_while_open");
	for (int round = 0; round < NORPHAN; round++)
		expect_unallocated(freed_mft[round]);
	{
		char **v;
		size_t n;

		if (oracle_ls(rig.tv.scratch, "/u", &v, &n))
			fail_logs("ntfsls /u: %s", oracle_last_stderr());
		oracle_drop_dots(v, &n);
		if (n)
			fail_logs("ntfsls /u lists %zu names (%s), not none", n, v[0]);
		oracle_free_names(v, n);
	}

	/* a crash while an unlinked file is open: a clean volume, the named
	 * files intact */
	rig_start(&rig, daemon_opts);
	w = ntfsc_connect(rig.dmn.socket);
	{
		ntfsc_file *keep = ntfsc_open(w, "/u/kept", O_RDWR | O_CREAT | O_EXCL);
		ntfsc_file *gone = ntfsc_open(w, "/u/gone", O_RDWR | O_CREAT | O_EXCL);

		if (!keep || !gone || ntfsc_pwrite(keep, "kept", 4, 0) != 4 ||
		    ntfsc_pwrite(gone, buf, 1u << 20, 0) != (ssize_t)(1u << 20) || ntfsc_sync(w) ||
		    ntfsc_unlink(w, "/u/gone") || ntfsc_pwrite(gone, buf, 4096, 1u << 20) != 4096)
			fail_logs("before the crash: %s", strerror(errno));
		ntfsc_close(keep);
		rig_kill9(&rig, "with an unlinked file open");
		ntfsc_disconnect(w);
	}
	rig_fsck(&rig, "after a crash with an unlinked file open");
	{
		uint64_t len;
		uint8_t *got = rig_cat(&rig, "/u/kept", &len);

		if (len != 4 || memcmp(got, "kept", 4))
			fail_logs("/u/kept after the crash: %llu bytes", (unsigned long long)len);
		free(got);
	}
	rig_teardown(&rig);
}

static void concurrent_creators(void **state)
{
	(void)state;
	for (int round = 0; round < ROUNDS; round++)
		one_round(round);
}

static int setup(void **state)
{
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rig_teardown(&rig);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return rig_group_setup(&rig, "ccreate");
}

static int group_teardown(void **state)
{
	(void)state;
	rig_group_teardown(&rig);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(concurrent_creators, setup, teardown),
		cmocka_unit_test_setup_teardown(unlink_while_open, setup, teardown),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("names_concurrent", tests, group_setup,
					   group_teardown);
}
