/*
 * crashpoint.c — see crashpoint.h.
 */
#include "crashpoint.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_bool armed;
static char armed_name[64];
static unsigned long armed_hit = 1;
static atomic_ulong hits;

static void read_env(void)
{
	const char *v = getenv("NTFSD_CRASHPOINT");
	const char *colon;
	size_t len;

	if (!v || !*v)
		return;
	colon = strchr(v, ':');
	len = colon ? (size_t)(colon - v) : strlen(v);
	if (len == 0 || len >= sizeof(armed_name)) {
		log_warning("NTFSD_CRASHPOINT=%s: not NAME[:N]; ignored", v);
		return;
	}
	if (colon) {
		char *end;
		unsigned long n = strtoul(colon + 1, &end, 10);

		if (!n || *end) {
			log_warning("NTFSD_CRASHPOINT=%s: not NAME[:N] with N >= 1; ignored", v);
			return;
		}
		armed_hit = n;
	}
	memcpy(armed_name, v, len);
	armed_name[len] = '\0';
	log_warning("crash point armed: %s, hit %lu", armed_name, armed_hit);
	atomic_store(&armed, true);
}

void crashpoint_init(void)
{
	pthread_once(&once, read_env);
}

void crashpoint(const char *name)
{
	pthread_once(&once, read_env);
	if (!atomic_load_explicit(&armed, memory_order_relaxed) || strcmp(name, armed_name))
		return;
	if (atomic_fetch_add(&hits, 1) + 1 != armed_hit)
		return;
	log_warning("crash point %s reached (hit %lu): SIGKILL", name, armed_hit);
	raise(SIGKILL);
}
