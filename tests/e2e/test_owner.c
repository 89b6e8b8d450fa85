/*
 * test_owner — one owner per volume (daemon/owner.h): while ntfsd serves a
 * volume read-write nobody else may write it, nor look at it through a
 * read-only daemon, and that holds across a crash of the daemon while the
 * keeper keeps its dirty pages.
 *
 * One mkntfs volume with a file (/data.bin) per run (support/testvol.h);
 * each test works on a copy of it (tv.scratch), or on a loop device over
 * that copy, and its teardown stops every daemon and keeper it started,
 * unmounts what is mounted (waiting for ntfs-3g to exit) and detaches the
 * loop device, also when the test failed or hung (SIGALRM, SIGABRT).
 *
 *  - second_writer_refused: beside a read-write ntfsd, a second one
 *    (sharing its keeper directory, and with --fd-store none) exits 75 and
 *    its message names the volume and the first daemon's pid; an ntfs-3g
 *    read-write mount is refused.
 *  - reader_refused_beside_writer: a --read-only ntfsd beside a read-write
 *    one exits 75, naming it and saying why (stale data).
 *  - readers_share: two --read-only daemons serve one image together and
 *    ntfscat reads it meanwhile; a read-write daemon and an ntfs-3g
 *    read-write mount are refused, the message naming both readers.
 *  - restart_after_clean_stop: stop (exit 0) and start again at once,
 *    three times; then an ntfs-3g read-write mount is accepted.
 *  - sigkill_keeper_holds_volume: a client writes (write-back held off),
 *    the daemon is SIGKILLed; while the keeper holds the dirty pages an
 *    ntfs-3g mount, ntfscat, a --fd-store none daemon and a read-only
 *    daemon are all refused (the daemons naming the keeper); the restarted
 *    daemon takes the volume over from the keeper, writes the data back,
 *    and after its clean stop ntfscat reads it and a mount is accepted.
 *  - loop_device: on /dev/loopN over the image, while ntfsd serves it:
 *    `ntfs-3g /dev/loopN mnt` refused, an O_EXCL open refused (EBUSY), a
 *    second and a read-only daemon refused; after a SIGKILL with dirty
 *    data the same (the keeper holds the exclusive open); the restarted
 *    daemon writes the data back; once it stopped, the mount is accepted
 *    and reads the data.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "ntfsc.h"
#include "testvol.h"

#define EXIT_BUSY 75            /* EX_TEMPFAIL: another owner holds the volume */
#define DATA_LEN (256u << 10)
#define WRITE_OFF 12345u
#define WRITE_LEN 10000u
#define TEST_TIMEOUT 120

#define HOLD_OFF "--cache-size", "64M", "--dirty-background", "48M", "--dirty-limit", "56M", \
		 "--dirty-expire-ms", "3600000"

static const char *ntfsd_bin;
static struct testvol tv;
static char store_dir[320];     /* a keeper directory the daemons of a test share */
static char loopdev[64];        /* "" when no loop device is attached */
static char losetup_bin[256];
static uint8_t data_orig[DATA_LEN], data_new[WRITE_LEN];

#define NDAEMONS 4
static struct test_daemon dmn[NDAEMONS];
/* every daemon and keeper pid seen, for the emergency cleanup */
static volatile pid_t seen_pids[64];
static volatile int nseen;

static void fill(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		p[i] = (uint8_t)(seed >> 24);
	}
}

static void remember_pid(pid_t pid)
{
	if (pid > 0 && nseen < 64)
		seen_pids[nseen++] = pid;
}

/* The keepers listening in dir (their pids, via SO_PEERCRED). */
static void remember_keepers(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		int fd;

		if (!strstr(e->d_name, ".fdstore") ||
		    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, e->d_name) >=
			    (int)sizeof(sa.sun_path))
			continue;
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			remember_pid(cred.pid);
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
}

/* ---- when a test hangs or aborts: async-signal-safe calls only ---- */

static void spawn_wait(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

static void emergency_cleanup(void)
{
	for (int i = 0; i < nseen; i++)
		kill(seen_pids[i], SIGKILL);
	for (int i = 0; i < NDAEMONS; i++)
		if (dmn[i].pid > 0)
			kill(dmn[i].pid, SIGKILL);
	if (tv.mounted && tv.tool_umount[0]) {
		char *const argv[] = { tv.tool_umount, tv.umount_is_fusermount ? "-u" : tv.mnt,
				       tv.umount_is_fusermount ? tv.mnt : NULL, NULL };

		spawn_wait(argv);
	}
	if (tv.ntfs3g_pid > 0)
		kill(tv.ntfs3g_pid, SIGKILL);
	if (loopdev[0] && losetup_bin[0]) {
		char *const argv[] = { losetup_bin, "-d", loopdev, NULL };

		spawn_wait(argv);
	}
	if (tv.dir[0] && tv.tool_rm[0]) {
		char *const argv[] = { tv.tool_rm, "-rf", "--", tv.dir, NULL };

		spawn_wait(argv);
	}
}

static void on_timeout(int sig)
{
	static const char msg[] = "test_owner: a test did not finish in time\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	emergency_cleanup();
	_exit(1);
}

static void on_abort(int sig)
{
	emergency_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- setup and teardown ---- */

static int group_setup(void **state)
{
	static const char *const need[] = { "mkntfs", "ntfscp", "ntfscat", "losetup", NULL };
	struct sigaction sa = { .sa_handler = on_timeout };

	(void)state;
	if (testvol_create(&tv, "owner", need))
		return -1;
	testvol_find_tool("losetup", losetup_bin, sizeof(losetup_bin));
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_abort;
	sigaction(SIGABRT, &sa, NULL);
	fill(data_orig, sizeof(data_orig), 1);
	if (testvol_mkntfs(&tv, 64u << 20, 4096) ||
	    testvol_ntfscp(&tv, tv.img, data_orig, sizeof(data_orig), "/data.bin", NULL)) {
		testvol_print_log_tail(&tv);
		testvol_destroy(&tv);
		return -1;
	}
	snprintf(store_dir, sizeof(store_dir), "%s/store", tv.dir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	testvol_destroy(&tv);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	memset(dmn, 0, sizeof(dmn));
	nseen = 0;
	loopdev[0] = '\0';
	if (mkdir(store_dir, 0700) < 0 && errno != EEXIST)
		return -1;
	return testvol_scratch_setup(&tv, TEST_TIMEOUT);
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NDAEMONS; i++) {
		if (dmn[i].pid > 0) {
			kill(dmn[i].pid, SIGKILL);
			waitpid(dmn[i].pid, NULL, 0);
			dmn[i].pid = 0;
		}
		daemon_stop(&dmn[i]);   /* its dir, and a keeper in it */
	}
	keeper_kill_in(store_dir);
	for (int i = 0; i < nseen; i++)
		kill(seen_pids[i], SIGKILL);
	nseen = 0;
	testvol_scratch_teardown(&tv);  /* unmounts, reaps ntfs-3g, alarm(0) */
	if (loopdev[0]) {
		char *argv[] = { losetup_bin, "-d", loopdev, NULL };

		if (testvol_run(&tv, NULL, argv))
			fprintf(stderr, "losetup -d %s failed\n", loopdev);
		loopdev[0] = '\0';
	}
	rmdir(store_dir);
	return 0;
}

/* ---- daemons ---- */

static void start_ok(struct test_daemon *d, const char *volume, const char *const *args)
{
	int err = daemon_start(d, ntfsd_bin, volume, args);

	if (err)
		fail_msg("ntfsd on %s did not start: %s", volume, strerror(-err));
	remember_pid(d->pid);
	remember_keepers(d->dir);
	remember_keepers(store_dir);
}

static char *read_log(const struct test_daemon *d)
{
	size_t len;
	char *s = (char *)testvol_read_whole(d->log, &len);

	if (!s)
		fail_msg("cannot read %s: %s", d->log, strerror(errno));
	return s;
}

/*
 * Start a daemon that must be refused: it exits 75 and its log names the
 * volume and says it is in use, and contains every string of need (NULL
 * ended).  Its directory is removed again.
 */
static void start_refused(struct test_daemon *d, const char *volume, const char *const *args,
			  const char *const *need)
{
	int err = daemon_start(d, ntfsd_bin, volume, args), st;
	char *log, want[400];

	if (err != -ECHILD) {
		if (!err)
			remember_pid(d->pid);
		fail_msg("ntfsd on %s was not refused (%s)", volume,
			 err ? strerror(-err) : "it serves");
	}
	st = d->exit_status;
	log = read_log(d);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != EXIT_BUSY)
		fail_msg("the refused ntfsd: wait status 0x%x, want exit %d; log:\n%s", st,
			 EXIT_BUSY, log);
	snprintf(want, sizeof(want), "%s: the volume is in use by ", volume);
	if (!strstr(log, want))
		fail_msg("the refused ntfsd's log lacks \"%s\":\n%s", want, log);
	for (int i = 0; need && need[i]; i++)
		if (!strstr(log, need[i]))
			fail_msg("the refused ntfsd's log lacks \"%s\":\n%s", need[i], log);
	free(log);
	daemon_stop(d);
}

static void stop_clean(struct test_daemon *d)
{
	if (!daemon_stop(d))
		fail_msg("ntfsd did not exit 0 after SIGTERM (wait status 0x%x)", d->exit_status);
}

/* SIGKILL, and remove its directory (its keeper is in store_dir). */
static void sigkill(struct test_daemon *d)
{
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
	daemon_stop(d);
}

static const char *holder(const struct test_daemon *d, const char *mode, char *buf, size_t len)
{
	snprintf(buf, len, "ntfsd (pid %d, %s)", (int)d->pid, mode);
	return buf;
}

/* Write data_new into /data.bin at WRITE_OFF through the daemon; it stays
 * dirty in the cache (write-back held off). */
static void client_write(const struct test_daemon *d)
{
	struct ntfsc_volume_status st = NTFSC_VOLUME_STATUS_INIT;
	ntfsc *c = ntfsc_connect(d->socket);
	ntfsc_file *f;

	if (!c)
		fail_msg("connect %s: %s", d->socket, strerror(errno));
	f = ntfsc_open(c, "/data.bin", O_RDWR);
	if (!f || ntfsc_pwrite(f, data_new, WRITE_LEN, WRITE_OFF) != WRITE_LEN)
		fail_msg("writing /data.bin: %s", strerror(errno));
	assert_int_equal(ntfsc_volume_status(c, &st), 0);
	assert_true(st.dirty_pages > 0);
	ntfsc_volume_status_free(&st);
	ntfsc_close(f);
	ntfsc_disconnect(c);
}

/* ---- what the others see ---- */

/* An ntfs-3g mount of what must be refused: it must not come up, and
 * ntfs-3g must say the volume is locked or busy. */
static void mount_refused(const char *what, const char *opts)
{
	size_t before = 0, len;
	uint8_t *log = testvol_read_whole(tv.log, &before);

	free(log);
	if (testvol_mount(&tv, what, opts) == 0) {
		testvol_unmount(&tv);
		fail_msg("ntfs-3g -o %s %s was accepted while the volume is owned", opts, what);
	}
	log = testvol_read_whole(tv.log, &len);
	if (!log || len < before ||
	    (!strstr((char *)log + before, "Resource temporarily unavailable") &&
	     !strstr((char *)log + before, "busy"))) {
		testvol_print_log_tail(&tv);
		fail_msg("ntfs-3g %s failed, but not because the volume is owned", what);
	}
	free(log);
}

static void mount_accepted(const char *what, bool check_data)
{
	char p[400];
	size_t len;
	uint8_t *got;

	if (testvol_mount(&tv, what, "no_detach")) {
		testvol_print_log_tail(&tv);
		fail_msg("ntfs-3g %s was refused after ntfsd stopped", what);
	}
	snprintf(p, sizeof(p), "%s/data.bin", tv.mnt);
	got = testvol_read_whole(p, &len);
	if (!got || len != DATA_LEN)
		fail_msg("reading %s through the mount: %s", p, got ? "wrong size" : strerror(errno));
	if (check_data && memcmp(got + WRITE_OFF, data_new, WRITE_LEN))
		fail_msg("the mount does not show the data the daemon wrote back");
	free(got);
	if (testvol_unmount(&tv))
		fail_msg("unmounting %s failed", tv.mnt);
}

/* ntfscat /data.bin of img: 0 and the bytes, or the tool's exit status. */
static int ntfscat_data(const char *img, uint8_t **out, size_t *len)
{
	char ntfscat[256], outp[400];
	char *argv[] = { ntfscat, (char *)img, "/data.bin", NULL };
	int rc;

	testvol_find_tool("ntfscat", ntfscat, sizeof(ntfscat));
	snprintf(outp, sizeof(outp), "%s/cat.out", tv.dir);
	rc = testvol_run(&tv, outp, argv);
	*out = rc ? NULL : testvol_read_whole(outp, len);
	unlink(outp);
	return rc;
}

static void expect_data_on_disk(const char *img, bool written)
{
	uint8_t *got;
	size_t len;

	if (ntfscat_data(img, &got, &len) || !got)
		fail_msg("ntfscat %s /data.bin failed", img);
	assert_int_equal(len, DATA_LEN);
	if (written && memcmp(got + WRITE_OFF, data_new, WRITE_LEN))
		fail_msg("%s: the daemon's data did not reach the disk", img);
	if (!written && memcmp(got, data_orig, DATA_LEN))
		fail_msg("%s: /data.bin changed", img);
	free(got);
}

/* ---- the tests ---- */

static void second_writer_refused(void **state)
{
	const char *const shared[] = { "--fd-store-dir", store_dir, NULL };
	const char *const none[] = { "--fd-store", "none", NULL };
	char who[64];

	(void)state;
	start_ok(&dmn[0], tv.scratch, shared);
	holder(&dmn[0], "read-write", who, sizeof(who));
	{
		const char *const need[] = { who, NULL };

		start_refused(&dmn[1], tv.scratch, shared, need);   /* same keeper */
		start_refused(&dmn[1], tv.scratch, NULL, need);     /* its own */
		start_refused(&dmn[1], tv.scratch, none, need);     /* no keeper */
	}
	mount_refused(tv.scratch, "no_detach");
	/* the first still serves */
	client_write(&dmn[0]);
	stop_clean(&dmn[0]);
	expect_data_on_disk(tv.scratch, true);
}

static void reader_refused_beside_writer(void **state)
{
	const char *const ro[] = { "--read-only", NULL };
	char who[64];

	(void)state;
	start_ok(&dmn[0], tv.scratch, NULL);
	holder(&dmn[0], "read-write", who, sizeof(who));
	{
		const char *const need[] = { who, "stale", NULL };

		start_refused(&dmn[1], tv.scratch, ro, need);
	}
	stop_clean(&dmn[0]);
}

static void readers_share(void **state)
{
	const char *const ro[] = { "--read-only", NULL };
	char who0[64], who1[64];
	uint8_t *got;
	size_t len;

	(void)state;
	start_ok(&dmn[0], tv.scratch, ro);
	start_ok(&dmn[1], tv.scratch, ro);
	holder(&dmn[0], "read-only", who0, sizeof(who0));
	holder(&dmn[1], "read-only", who1, sizeof(who1));
	{
		const char *const need[] = { who0, who1, NULL };

		start_refused(&dmn[2], tv.scratch, NULL, need);
	}
	/* ntfs-3g's read-only tools share with readers, its writers do not */
	if (ntfscat_data(tv.scratch, &got, &len))
		fail_msg("ntfscat was refused beside read-only daemons");
	assert_int_equal(len, DATA_LEN);
	assert_memory_equal(got, data_orig, DATA_LEN);
	free(got);
	mount_refused(tv.scratch, "no_detach");
	/* both serve */
	for (int i = 0; i < 2; i++) {
		ntfsc *c = ntfsc_connect(dmn[i].socket);
		ntfsc_file *f = c ? ntfsc_open(c, "/data.bin", O_RDONLY) : NULL;
		uint8_t buf[100];

		if (!f || ntfsc_pread(f, buf, sizeof(buf), 1000) != (ssize_t)sizeof(buf))
			fail_msg("read-only daemon %d does not serve: %s", i, strerror(errno));
		assert_memory_equal(buf, data_orig + 1000, sizeof(buf));
		ntfsc_close(f);
		ntfsc_disconnect(c);
	}
	stop_clean(&dmn[0]);
	stop_clean(&dmn[1]);
	mount_accepted(tv.scratch, false);
}

static void restart_after_clean_stop(void **state)
{
	const char *const shared[] = { "--fd-store-dir", store_dir, NULL };

	(void)state;
	for (int i = 0; i < 3; i++) {
		start_ok(&dmn[0], tv.scratch, shared);
		if (i == 1)
			client_write(&dmn[0]);
		stop_clean(&dmn[0]);
	}
	expect_data_on_disk(tv.scratch, true);
	mount_accepted(tv.scratch, true);
}

/* The shared part of the crash tests: dmn[0] serves volume with its keeper
 * in store_dir; a client writes; SIGKILL; then nobody else gets it. */
static void crash_with_dirty_data(const char *volume)
{
	const char *const args[] = { "--fd-store-dir", store_dir, HOLD_OFF, NULL };
	const char *const none[] = { "--fd-store", "none", NULL };
	const char *const ro[] = { "--read-only", NULL };
	const char *const need[] = { "ntfsd-keeper (pid ", "dirty pages of an ntfsd that died",
				     NULL };

	start_ok(&dmn[0], volume, args);
	client_write(&dmn[0]);
	sigkill(&dmn[0]);
	mount_refused(volume, "no_detach");
	mount_refused(volume, "ro,no_detach");
	start_refused(&dmn[1], volume, none, need);
	start_refused(&dmn[1], volume, ro, need);
}

/* The restarted daemon takes the volume over and writes the data back. */
static void restart_takes_over(const char *volume)
{
	const char *const args[] = { "--fd-store-dir", store_dir, HOLD_OFF, NULL };
	char *log;

	start_ok(&dmn[0], volume, args);
	log = read_log(&dmn[0]);
	if (!strstr(log, "taking the volume over from the previous daemon") ||
	    !strstr(log, "1 file adopted, 3 dirty pages written back"))
		fail_msg("the restarted daemon did not take the volume over and write back:\n%s",
			 log);
	free(log);
	stop_clean(&dmn[0]);
}

static void sigkill_keeper_holds_volume(void **state)
{
	uint8_t *got;
	size_t len;

	(void)state;
	crash_with_dirty_data(tv.scratch);
	/* ntfs-3g's read-only tools are refused too: the keeper's lock is a
	 * write lock */
	if (ntfscat_data(tv.scratch, &got, &len) == 0)
		fail_msg("ntfscat read the image while the keeper holds its dirty pages");
	restart_takes_over(tv.scratch);
	expect_data_on_disk(tv.scratch, true);
	mount_accepted(tv.scratch, true);
}

static void attach_loop(void)
{
	char outp[400], *argv[] = { losetup_bin, "-f", "--show", tv.scratch, NULL };
	uint8_t *out;
	size_t len;

	snprintf(outp, sizeof(outp), "%s/losetup.out", tv.dir);
	if (testvol_run(&tv, outp, argv) || !(out = testvol_read_whole(outp, &len))) {
		testvol_print_log_tail(&tv);
		fail_msg("losetup -f --show %s failed", tv.scratch);
	}
	unlink(outp);
	snprintf(loopdev, sizeof(loopdev), "%.*s", (int)strcspn((char *)out, "\n"),
		 (char *)out);
	free(out);
	if (strncmp(loopdev, "/dev/loop", 9))
		fail_msg("losetup said \"%s\"", loopdev);
}

/* The kernel refuses an exclusive opener of the device. */
static void excl_open_refused(void)
{
	int fd = open(loopdev, O_RDONLY | O_EXCL | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		fail_msg("%s opened O_EXCL while ntfsd (or its keeper) owns it", loopdev);
	}
	assert_int_equal(errno, EBUSY);
}

static void loop_device(void **state)
{
	const char *const ro[] = { "--read-only", NULL };
	char who[64];

	(void)state;
	attach_loop();
	start_ok(&dmn[0], loopdev, NULL);
	mount_refused(loopdev, "no_detach");
	excl_open_refused();
	holder(&dmn[0], "read-write", who, sizeof(who));
	{
		const char *const need[] = { who, NULL };

		start_refused(&dmn[1], loopdev, NULL, need);
		start_refused(&dmn[1], loopdev, ro, need);
	}
	stop_clean(&dmn[0]);

	/* a read-only daemon holds the device exclusively too */
	start_ok(&dmn[0], loopdev, ro);
	mount_refused(loopdev, "ro,no_detach");
	holder(&dmn[0], "read-only", who, sizeof(who));
	{
		const char *const need[] = { who, "one ntfsd at a time", NULL };

		start_refused(&dmn[1], loopdev, ro, need);
	}
	stop_clean(&dmn[0]);

	/* a crash with dirty data: the keeper keeps the device */
	crash_with_dirty_data(loopdev);
	excl_open_refused();
	restart_takes_over(loopdev);
	mount_accepted(loopdev, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(second_writer_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(reader_refused_beside_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(readers_share, setup, teardown),
		cmocka_unit_test_setup_teardown(restart_after_clean_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(sigkill_keeper_holds_volume, setup, teardown),
		cmocka_unit_test_setup_teardown(loop_device, setup, teardown),
	};

	ntfsd_bin = getenv("NTFSD_BIN");
	if (!ntfsd_bin) {
		fprintf(stderr, "NTFSD_BIN must be set: run through meson test\n");
		return 1;
	}
	fill(data_new, sizeof(data_new), 2);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
