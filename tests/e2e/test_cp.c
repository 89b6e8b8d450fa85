/*
 * test_cp — `ntfsctl cp` both ways between the host and the volume and
 * within the volume (issue 13): a 12 MiB file with a 4 MiB run of zeroes
 * in the middle (which must stay a hole: no clusters), into a directory,
 * over an existing file, back to the host; the refusals (usage errors exit
 * 2, failures 1 with the path named); and the progress bar, which is
 * drawn on a terminal (a pty here) and never on a pipe.  The bytes are
 * checked with ntfscat after a clean stop, the volume with ntfsfix -n.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crashrig.h"
#include "ntfsc.h"
#include "oracle.h"

#define BIG (12u << 20)
#define HOLE_AT (4u << 20)
#define HOLE_LEN (4u << 20)

static struct crashrig rig;

static const char *const daemon_opts[] = { "--dirty-expire-ms", "1000", NULL };

#define fail_logs(...) rig_fail(&rig, __VA_ARGS__)

/* ntfsctl -s SOCKET args...: its exit status; *err its stderr. */
static int ctl(char **err, ...)
{
	const char *argv[16];
	char *out = NULL;
	va_list ap;
	int st = -1;

	va_start(ap, err);
	daemon_ctl_argv(argv, 16, rig.ntfsctl, &rig.dmn, ap);
	va_end(ap);
	if (oracle_run(argv, &out, NULL, &st))
		st = -1;
	free(out);
	if (err)
		*err = strdup(oracle_last_stderr());
	return st;
}

static uint8_t *big_data(void)
{
	uint8_t *b = malloc(BIG);

	assert_non_null(b);
	for (uint32_t i = 0; i < BIG; i++)
		b[i] = (uint8_t)(i * 2654435761u >> 24);
	memset(b + HOLE_AT, 0, HOLE_LEN);
	return b;
}

static void expect_bytes(const char *what, const uint8_t *got, size_t len, const uint8_t *want,
			 size_t wlen)
{
	if (len != wlen)
		fail_logs("%s: %zu bytes, not %zu", what, len, wlen);
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i])
			fail_logs("%s: byte %zu is 0x%02x, not 0x%02x", what, i, got[i], want[i]);
}

/* ntfsctl cp with stderr on a pty: what it drew there. */
static char *cp_on_tty(const char *from, const char *to)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY), st;
	static char got[1 << 16];
	size_t n = 0;
	pid_t pid;

	if (master < 0 || grantpt(master) || unlockpt(master))
		fail_logs("no pty: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		fail_logs("fork: %s", strerror(errno));
	if (pid == 0) {
		int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
		int null = open("/dev/null", O_RDWR);

		if (slave < 0 || null < 0)
			_exit(126);
		dup2(null, 0);
		dup2(null, 1);
		dup2(slave, 2);
		setenv("NTFSCTL_PROGRESS_AFTER_MS", "0", 1);
		execl(rig.ntfsctl, "ntfsctl", "-s", rig.dmn.socket, "cp", from, to, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		struct pollfd p = { .fd = master, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 30000) <= 0)
			break;
		r = read(master, got + n, sizeof(got) - 1 - n);
		if (r <= 0)
			break;          /* EIO once the child closed the slave */
		n += (size_t)r;
		if (n == sizeof(got) - 1)
			n = 0;          /* keep the tail */
	}
	got[n] = '\0';
	waitpid(pid, &st, 0);
	close(master);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_logs("ntfsctl cp %s %s on a tty: status 0x%x: %s", from, to, st, got);
	return got;
}

static void cp_both_ways(void **state)
{
	uint8_t *want = big_data(), *got;
	char host_src[400], host_dir[400], host_back[400], *err = NULL;
	ntfsc *c;
	struct ntfsc_stat_ext x;
	uint64_t len;
	size_t hlen;
	int rc;

	(void)state;
	snprintf(host_src, sizeof(host_src), "%s/src.bin", rig.tv.dir);
	snprintf(host_dir, sizeof(host_dir), "%s/back", rig.tv.dir);
	snprintf(host_back, sizeof(host_back), "%s/back/big.bin", rig.tv.dir);
	if (testvol_write_file(host_src, want, BIG) || mkdir(host_dir, 0700))
		fail_logs("host files: %s", strerror(errno));
	rig_start(&rig, daemon_opts);
	c = ntfsc_connect(rig.dmn.socket);
	if (!c || ntfsc_mkdir(c, "/cp"))
		fail_logs("mkdir /cp: %s", strerror(errno));

	/* host -> volume, by name and into a directory (a pipe: no bar) */
	if ((rc = ctl(&err, "cp", host_src, ":/cp/big.bin", NULL)) || *err)
		fail_logs("cp host -> :/cp/big.bin: exit %d, stderr \"%s\"", rc, err);
	free(err);
	if ((rc = ctl(&err, "cp", host_src, ":/cp", NULL)))
		fail_logs("cp host -> :/cp: exit %d: %s", rc, err);
	free(err);
	if (ntfsc_stat_ext(c, "/cp/src.bin", &x) || x.st.size != BIG)
		fail_logs("cp into :/cp made no /cp/src.bin of %u bytes", BIG);
	if (ntfsc_stat_ext(c, "/cp/big.bin", &x) || x.st.size != BIG)
		fail_logs("/cp/big.bin: %s", strerror(errno));
	/* within the volume, over an existing file (replaced, not merged) */
	if ((rc = ctl(&err, "cp", ":/cp/big.bin", ":/cp/copy.bin", NULL)))
		fail_logs("cp :/cp/big.bin :/cp/copy.bin: exit %d: %s", rc, err);
	free(err);
	if (testvol_write_file(host_src, "short", 5) ||
	    (rc = ctl(&err, "cp", host_src, ":/cp/src.bin", NULL)))
		fail_logs("cp over an existing file: exit %d", rc);
	free(err);
	/* volume -> host, into a directory, with the bar on a tty */
	{
		const char *drawn = cp_on_tty(":/cp/big.bin", host_dir);

		if (!strstr(drawn, "cp: [") || !strstr(drawn, "MiB/s") ||
		    !strstr(drawn, "12.0 MiB"))
			fail_logs("no progress bar on the tty: \"%s\"", drawn);
	}
	got = testvol_read_whole(host_back, &hlen);
	if (!got)
		fail_logs("%s: %s", host_back, strerror(errno));
	expect_bytes("the copy back to the host", got, hlen, want, BIG);
	free(got);

	/* refusals */
	if ((rc = ctl(&err, "cp", ":/cp/big.bin", ":/cp/big.bin", NULL)) != 1 ||
	    !strstr(err, "same file"))
		fail_logs("cp onto itself: exit %d: %s", rc, err);
	free(err);
	if ((rc = ctl(&err, "cp", ":/cp/missing", host_dir, NULL)) != 1 ||
	    !strstr(err, "/cp/missing"))
		fail_logs("cp of a missing file: exit %d: %s", rc, err);
	free(err);
	if ((rc = ctl(&err, "cp", ":/cp", host_dir, NULL)) != 1 || !strstr(err, "directory"))
		fail_logs("cp of a directory: exit %d: %s", rc, err);
	free(err);
	if ((rc = ctl(&err, "cp", host_src, host_dir, NULL)) != 2)
		fail_logs("cp host to host: exit %d, not 2", rc);
	free(err);
	if ((rc = ctl(&err, "cp", host_src, ":cp/x", NULL)) != 2)
		fail_logs("cp to a relative volume path: exit %d, not 2", rc);
	free(err);
	if ((rc = ctl(&err, "cp", host_src, ":/no/such/dir/x", NULL)) != 1 ||
	    !strstr(err, "/no/such/dir/x"))
		fail_logs("cp into a missing directory: exit %d: %s", rc, err);
	free(err);
	ntfsc_disconnect(c);
	rig_stop_clean(&rig, "after the copies");

	got = rig_cat(&rig, "/cp/big.bin", &len);
	expect_bytes("ntfscat /cp/big.bin", got, len, want, BIG);
	free(got);
	got = rig_cat(&rig, "/cp/copy.bin", &len);
	expect_bytes("ntfscat /cp/copy.bin", got, len, want, BIG);
	free(got);
	got = rig_cat(&rig, "/cp/src.bin", &len);
	expect_bytes("ntfscat /cp/src.bin (replaced)", got, len, (const uint8_t *)"short", 5);
	free(got);
	{
		/* the zeroes stayed a hole: the clusters hold only the data */
		struct oracle_attr a;

		if (oracle_info(rig.tv.scratch, "/cp/big.bin", NULL, &a) || !a.found)
			fail_logs("ntfsinfo /cp/big.bin: %s", oracle_last_stderr());
		if (!a.sparse || a.compressed_size > BIG - HOLE_LEN)
			fail_logs("/cp/big.bin (sparse %d) holds %llu bytes of clusters: its %u zero "
				  "bytes were allocated, not left a hole", a.sparse,
				  (unsigned long long)(a.sparse ? a.compressed_size
							      : a.allocated_size), HOLE_LEN);
	}
	rig_fsck(&rig, "cp_both_ways");
	free(want);
}

static int setup(void **state)
{
	(void)state;
	rig_arm_alarm(&rig, 300);
	return rig_setup(&rig, false);
}

static int teardown(void **state)
{
	char p[400];

	(void)state;
	rig_teardown(&rig);
	snprintf(p, sizeof(p), "%s/src.bin", rig.tv.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/back/big.bin", rig.tv.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/back", rig.tv.dir);
	rmdir(p);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	return rig_group_setup(&rig, "cp");
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
		cmocka_unit_test_setup_teardown(cp_both_ways, setup, teardown),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("cp", tests, group_setup, group_teardown);
}
