/*
 * dirops.h — changing directories through the cache: create, mkdir,
 * unlink, rmdir (the file system does them on disk: aops.h).
 *
 * Invariants:
 *  - Every change holds c->ns_lock written and every lookup by path holds
 *    it read (cache_open, cache_stat_path, cache_readdir), so a lookup
 *    never reads a directory index a change is rewriting, and a name
 *    cannot go between the lookup and the open that follows it.
 *  - A file unlinked while clients have it open loses its name at once
 *    and stays usable through their handles (reads, writes, growth,
 *    write-back as before: "orphan"); its record and blocks are freed by
 *    the flusher after the last close (cache_evict_orphan), and a crash
 *    before that leaks them (in use, nameless).  A file replaced by a
 *    rename while open is kept the same way.  A cached file nobody uses is held (a reference and its
 *    wb_lock) while the file system checks and removes it, and forgotten
 *    only once that succeeded, its pages with it (clean or dirty: they are
 *    the deleted file's); a refused removal keeps every dirty byte.  No
 *    write-back of it can land on blocks the removal frees.
 *  - Errors are negative errnos with a message naming the path.
 */
#ifndef NTFSD_CACHE_DIROPS_H
#define NTFSD_CACHE_DIROPS_H

#include <stdbool.h>

struct cache;
struct cache_inode;

/* Open path, creating it as an empty file when it does not exist (excl:
 * -EEXIST when it does); *created says which. */
int cache_open_create(struct cache *c, const char *path, bool excl, struct cache_inode **out,
		      bool *created);
int cache_mkdir(struct cache *c, const char *path);
/* unlink(2) (dir false) and rmdir(2) (dir true). */
int cache_unlink(struct cache *c, const char *path, bool dir);
/* rename(2) (aops.h): a target that is another file is replaced; if it
 * is open it stays for its handles, as for unlink; the renamed file may
 * be open too. */
int cache_rename(struct cache *c, const char *from, const char *to);
/* ci (a reference held, no lock) lost its last name while open: once
 * nobody has it open, free it on disk and mark it unlinked, so the last
 * reference forgets it.  True when it was freed (or its free failed:
 * logged); false while it is still open, or not an orphan. */
bool cache_evict_orphan(struct cache_inode *ci);

#endif
