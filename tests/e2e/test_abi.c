/*
 * test_abi.c — libntfsc's binary interface across versions.
 *
 * struct ntfsc_volume_status grew twice under the NTFSC_0 symbols; since
 * NTFSC_3 it starts with struct_size.  A binary built before calls
 * ntfsc_volume_status@NTFSC_0, which must fill only the first version's
 * members, whichever of the three layouts the binary has: this test is
 * such a binary (the old struct is frozen below, the old symbol bound with
 * .symver) and puts canary bytes right after it.  It also checks the new
 * interface against a caller whose struct_size is that of an older header,
 * the refusal of an unset struct_size, ntfsc_version(), that a client
 * speaking protocol 1 is refused with EPROTONOSUPPORT and a message that
 * names both versions, and that ntfsc_last_error_message(c) keeps each
 * connection's message apart from the others'.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "frame.h"
#include "ntfsc.h"
#include "ntfsd.pb-c.h"
#include "testvol.h"

/* The NTFSC_0 struct as the read-path release's ntfsc.h declared it. */
struct status_v0 {
	char    *volume;
	char    *label;
	uint32_t ntfs_major, ntfs_minor;
	bool     read_only;
	uint32_t cluster_size;
	uint64_t volume_size;
	uint64_t cache_limit, cache_used;
	uint64_t cached_pages, dirty_pages, writeback_pages;
	uint64_t open_files;
	uint64_t pages_read, pages_reclaimed;
	size_t   nr_clients;
	void    *clients;
};

int old_volume_status(ntfsc *c, struct status_v0 *st);
void old_volume_status_free(struct status_v0 *st);
__asm__(".symver old_volume_status, ntfsc_volume_status@NTFSC_0");
__asm__(".symver old_volume_status_free, ntfsc_volume_status_free@NTFSC_0");

static struct test_daemon dmn;
static char dir[64], img[128];

static int setup(void **state)
{
	const char *ntfsd, *ntfsctl, *fixtures;
	const char *args[] = { "--read-only", "--fd-store", "none", NULL };
	char src[512];

	(void)state;
	if (!daemon_test_env(&ntfsd, &ntfsctl, &fixtures))
		return -1;
	snprintf(dir, sizeof(dir), "/tmp/ntfsd-abi.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(src, sizeof(src), "%s/vol4k.img", fixtures);
	snprintf(img, sizeof(img), "%s/vol.img", dir);
	if (testvol_copy_file(src, img) || daemon_start(&dmn, ntfsd, img, args)) {
		fprintf(stderr, "cannot start ntfsd on a copy of %s\n", src);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (dmn.pid > 0 && !daemon_stop(&dmn))
		daemon_dump_log(&dmn);
	unlink(img);
	rmdir(dir);
	return 0;
}

#define CANARY 0xA5

static void old_binary_gets_first_version_only(void **state)
{
	unsigned char buf[sizeof(struct status_v0) + 256];
	struct status_v0 *st = (struct status_v0 *)buf;
	ntfsc *c;
	size_t i;

	(void)state;
	memset(buf, CANARY, sizeof(buf));
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	assert_int_equal(old_volume_status(c, st), 0);
	assert_non_null(st->volume);
	assert_string_equal(st->volume, img);
	assert_true(st->read_only);
	assert_int_equal(st->cluster_size, 4096);
	for (i = sizeof(*st); i < sizeof(buf); i++)
		if (buf[i] != CANARY)
			fail_msg("ntfsc_volume_status@NTFSC_0 wrote byte %zu past the first "
				 "version's struct (%zu bytes)", i, sizeof(*st));
	old_volume_status_free(st);
	assert_null(st->volume);
	ntfsc_disconnect(c);
}

static void struct_size_bounds_what_is_written(void **state)
{
	unsigned char buf[sizeof(struct ntfsc_volume_status) + 64];
	struct ntfsc_volume_status *st = (struct ntfsc_volume_status *)buf, full =
		NTFSC_VOLUME_STATUS_INIT;
	size_t small = offsetof(struct ntfsc_volume_status, dirty_limit), i;
	ntfsc *c;

	(void)state;
	c = ntfsc_connect(dmn.socket);
	assert_non_null(c);
	/* a header of today: everything, io_engine and allocator included */
	assert_int_equal(ntfsc_volume_status(c, &full), 0);
	assert_non_null(full.io_engine);
	assert_non_null(full.allocator);
	assert_int_equal(full.struct_size, sizeof(full));
	ntfsc_volume_status_free(&full);
	assert_int_equal(full.struct_size, sizeof(full));   /* reusable */
	assert_null(full.volume);

	/* a header as small as the first version's members */
	memset(buf, CANARY, sizeof(buf));
	st->struct_size = small;
	assert_int_equal(ntfsc_volume_status(c, st), 0);
	assert_string_equal(st->volume, img);
	for (i = small; i < sizeof(buf); i++)
		if (buf[i] != CANARY)
			fail_msg("struct_size %zu, but byte %zu was written", small, i);
	ntfsc_volume_status_free(st);
	for (i = small; i < sizeof(buf); i++)
		if (buf[i] != CANARY)
			fail_msg("free: struct_size %zu, but byte %zu was written", small, i);

	/* an unset size is refused, not guessed */
	memset(buf, 0, sizeof(buf));
	errno = 0;
	assert_int_equal(ntfsc_volume_status(c, st), -1);
	assert_int_equal(errno, EINVAL);
	assert_non_null(strstr(ntfsc_last_error_message(c), "NTFSC_VOLUME_STATUS_INIT"));
	ntfsc_disconnect(c);
}

static void version_strings(void **state)
{
	char want[96];

	(void)state;
	assert_string_equal(ntfsc_version(false), "0.1.0");
	snprintf(want, sizeof(want), "libntfsc 0.1.0 (protocol %u, shm layout %u)",
		 NTFSD_PROTOCOL_VERSION, 6u);
	assert_string_equal(ntfsc_version(true), want);
}

/* A hello as a client of protocol 1 sends it. */
static void protocol_1_client_is_refused(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Ntfsd__Request rq = NTFSD__REQUEST__INIT;
	Ntfsd__Hello h = NTFSD__HELLO__INIT;
	Ntfsd__Reply *r;
	uint8_t *frame = NULL;
	char mine[16];
	size_t len = 0;
	int fd, fds[4], nfds = 0;

	(void)state;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", dmn.socket);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	h.protocol_version = 1;
	h.client_name = "old-client";
	rq.id = 1;
	rq.body_case = NTFSD__REQUEST__BODY_HELLO;
	rq.hello = &h;
	{
		size_t n = ntfsd__request__get_packed_size(&rq);
		uint8_t *b = malloc(n ? n : 1);

		assert_non_null(b);
		ntfsd__request__pack(&rq, b);
		assert_int_equal(frame_send(fd, b, n, NULL, 0), 0);
		free(b);
	}
	assert_int_equal(frame_recv(fd, &frame, &len, fds, 4, &nfds), 0);
	assert_int_equal(nfds, 0);
	r = ntfsd__reply__unpack(NULL, len, frame);
	assert_non_null(r);
	assert_int_equal(r->error, EPROTONOSUPPORT);
	snprintf(mine, sizeof(mine), "%u", NTFSD_PROTOCOL_VERSION);
	if (!strstr(r->message, "protocol version 1") || !strstr(r->message, mine))
		fail_msg("the refusal does not name both versions: \"%s\"", r->message);
	ntfsd__reply__free_unpacked(r, NULL);
	free(frame);
	close(fd);
}

/* Does the message m name what?  (NULL names nothing.) */
static bool names(const char *m, const char *what)
{
	return m && strstr(m, what);
}

#define ASSERT_NAMES(m, what)                                                       \
	do {                                                                        \
		const char *m_ = (m);                                               \
		if (!names(m_, what))                                               \
			fail_msg("%s is \"%s\", which does not name %s", #m,         \
				 m_ ? m_ : "(null)", what);                         \
	} while (0)

struct other_thread {
	ntfsc *a, *b;
	char *msg_a, *msg_b;        /* what it saw, copied */
	bool null_is_null;          /* ntfsc_last_error_message(NULL) was NULL */
	bool fail_on_b;             /* then fail a call on b */
};

static char *dup_or_null(const char *m)
{
	return m ? strdup(m) : NULL;
}

static void *other_thread_run(void *arg)
{
	struct other_thread *o = arg;

	o->msg_a = dup_or_null(ntfsc_last_error_message(o->a));
	o->msg_b = dup_or_null(ntfsc_last_error_message(o->b));
	o->null_is_null = ntfsc_last_error_message(NULL) == NULL;
	if (o->fail_on_b && ntfsc_open(o->b, "/no-such-file-of-another-thread", O_RDONLY))
		o->fail_on_b = false;   /* it did not fail */
	return NULL;
}

static void run_other_thread(struct other_thread *o)
{
	pthread_t t;

	free(o->msg_a);
	free(o->msg_b);
	o->msg_a = o->msg_b = NULL;
	assert_int_equal(pthread_create(&t, NULL, other_thread_run, o), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

/*
 * A failure on connection a, then one on b: a's message stays a's.  A
 * library whose message is only the thread's (before per-connection
 * messages) answers every connection with b's message in this thread, and
 * with none in a thread that has failed nothing, so the checks marked
 * "old:" fail there.
 */
static void messages_stay_with_their_connection(void **state)
{
	struct other_thread o = { 0 };
	struct ntfsc_stat st;
	ntfsc *a, *b;

	(void)state;
	a = ntfsc_connect(dmn.socket);
	b = ntfsc_connect(dmn.socket);
	assert_non_null(a);
	assert_non_null(b);
	o.a = a;
	o.b = b;

	errno = 0;
	assert_null(ntfsc_open(a, "/no-such-file-on-a", O_RDONLY));
	assert_int_equal(errno, ENOENT);
	ASSERT_NAMES(ntfsc_last_error_message(a), "no-such-file-on-a");
	errno = 0;
	assert_int_equal(ntfsc_stat(b, "/no-such-dir-on-b/x", &st), -1);
	assert_int_equal(errno, ENOENT);
	ASSERT_NAMES(ntfsc_last_error_message(b), "no-such-dir-on-b");
	/* the thread's last failure, as errno goes */
	ASSERT_NAMES(ntfsc_last_error_message(NULL), "no-such-dir-on-b");
	/* old: b's message */
	ASSERT_NAMES(ntfsc_last_error_message(a), "no-such-file-on-a");

	/* a call that succeeds changes no message */
	assert_int_equal(ntfsc_stat(a, "/", &st), 0);
	ASSERT_NAMES(ntfsc_last_error_message(a), "no-such-file-on-a");
	ASSERT_NAMES(ntfsc_last_error_message(b), "no-such-dir-on-b");

	/* a thread that has failed nothing sees each connection's last failure
	 * (old: none at all), and has no message of its own */
	run_other_thread(&o);
	ASSERT_NAMES(o.msg_a, "no-such-file-on-a");
	ASSERT_NAMES(o.msg_b, "no-such-dir-on-b");
	assert_true(o.null_is_null);

	/* a failure that errno says all about leaves a without a message and
	 * b with its own (old: none) */
	errno = 0;
	assert_null(ntfsc_open(a, NULL, O_RDONLY));
	assert_int_equal(errno, EINVAL);
	assert_null(ntfsc_last_error_message(a));
	ASSERT_NAMES(ntfsc_last_error_message(b), "no-such-dir-on-b");

	/* another thread's failure on b is b's last failure for this thread
	 * too, whose own last failure (a's, without a message) stays its own */
	o.fail_on_b = true;
	run_other_thread(&o);
	assert_true(o.fail_on_b);
	assert_null(o.msg_a);
	ASSERT_NAMES(ntfsc_last_error_message(b), "no-such-file-of-another-thread");
	assert_null(ntfsc_last_error_message(a));
	assert_null(ntfsc_last_error_message(NULL));

	free(o.msg_a);
	free(o.msg_b);
	ntfsc_disconnect(a);
	ntfsc_disconnect(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(old_binary_gets_first_version_only),
		cmocka_unit_test(struct_size_bounds_what_is_written),
		cmocka_unit_test(version_strings),
		cmocka_unit_test(protocol_1_client_is_refused),
		cmocka_unit_test(messages_stay_with_their_connection),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
