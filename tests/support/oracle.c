/*
 * oracle.c - run ntfs-3g's tools and parse what they print.
 *
 * Observed tool behaviour (ntfs-3g 2022.10.3, Debian 12):
 *
 * ntfscat [-a TYPE] [-n NAME] IMG PATH
 *   - Writes the attribute value to stdout; exit 0.  -n NAME alone also
 *     selects $DATA (type 0x80 is the default); -n "" is the unnamed
 *     stream.  "PATH:stream" syntax is NOT understood (it is looked up as a
 *     file name and fails).
 *   - Holes, compressed units and the range between initialized size and
 *     data size all come out as they should be read (zeros, decompressed).
 *   - Missing file: exit 1, stderr "ERROR: Couldn't open inode: No such
 *     file or directory".  Missing stream, or PATH is a directory: exit 1,
 *     stderr "Cannot find attribute type 0x80.".
 *   - Its option parser does not understand "--", so an image path that
 *     starts with '-' is passed as "./-..." here (same for all tools).
 *
 * ntfsls [-a] [-s] [-x] -p DIR IMG
 *   - One name per line, "%s\n", in the order ntfs_readdir() walks the
 *     index ($INDEX_ROOT then the $INDEX_ALLOCATION B+tree: collation
 *     order), after "." and ".." which libntfs-3g synthesizes.  Names are
 *     printed as UTF-8 regardless of the locale.
 *   - Filters, per entry: MFT number < 16 (system files, and "." / ".." of
 *     or pointing at the root) only with -s; POSIX-namespace names only
 *     with -a ("." and ".." count as POSIX; ntfs-3g creates every name in
 *     the POSIX namespace unless a DOS name is attached); Win32-only names
 *     hidden with -x; DOS-only names shown only with -x.  Win32&DOS names
 *     always.  Without -a and -s it behaves as -a.  So "-a -s" lists every
 *     long name, "." and "..", system files, and no 8.3 twins; with -x the
 *     8.3 twin replaces its long name.
 *   - DIR not found: exit 3 (nothing on stdout).  Image unusable: exit 2.
 *     Errors while reading the directory are NOT reflected in the exit
 *     status (0).  In /$Extend it also prints "Could not decode the type
 *     of inode N" on stderr for $ObjId, $Quota and $Reparse.
 *
 * ntfsinfo -F PATH IMG
 *   - Exits 0 even when PATH does not exist (only "Error loading node: No
 *     such file or directory" on stderr, nothing on stdout): existence is
 *     judged by the "Dumping Inode N (0xN)" header line.
 *   - Then one block per attribute, in attribute-list order (type, name,
 *     lowest VCN), each starting at column 0 with
 *         Dumping attribute $DATA (0x80) from mft record 68 (0x44)
 *     followed by tab-indented "Key:<tabs> value" lines:
 *         \tResident: \t\t Yes|No
 *         \tAttribute name:\t\t 'alpha'        (named attributes only)
 *         \tAttribute flags:\t 0x8000          (0x0001 compressed,
 *                                               0x4000 encrypted,
 *                                               0x8000 sparse)
 *         \tData size:\t\t 300000 (0x493e0)   (resident: value length)
 *         \tAllocated size:\t\t 327680 (0x50000)   (non-resident only)
 *         \tInitialized size:\t 300000 (0x493e0)   (non-resident only)
 *         \tCompressed size:\t 57344 (0xe000)      (compressed/sparse only)
 *     The block list ends with "End of inode reached".
 *   - A non-resident attribute split over extent MFT records (files with
 *     an $ATTRIBUTE_LIST) prints one block per extent; only the first one
 *     (lowest VCN 0) has the size lines.
 *   - $FILE_NAME blocks use "Data Size:"/"Allocated Size:" (capital S)
 *     for the (stale) sizes cached in the name; never confuse those.
 *   - For big directories (observed: $INDEX_ALLOCATION of 128 KiB and
 *     more; 4 KiB is fine) ntfsinfo prints "Corrupt attribute 0xa0 in
 *     inode N" / "Failed to read $INDEX_ALLOCATION attribute: Value too
 *     large for defined data type" on stderr and still exits 0: it reads
 *     the whole attribute with a size-limited helper.  The directory is
 *     fine (ntfsls and the ntfs-3g mount list it); only the dump is cut.
 *   - Non-verbose -F does not print runlists, index entries or attribute
 *     list entries; "Compressed size" and "Compression unit" are printed.
 */
#include "oracle.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define STDERR_KEEP 8192

static _Thread_local char last_stderr[STDERR_KEEP];

const char *oracle_last_stderr(void)
{
    return last_stderr;
}

/* ------------------------------------------------------------ buffers -- */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len > extra)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len <= extra) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* --------------------------------------------------------- the runner -- */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* environ with LC_ALL replaced by C.UTF-8, built before fork(). */
static char **child_environ(void)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LC_ALL=", 7) != 0)
            env[k++] = environ[i];
    env[k++] = (char *)"LC_ALL=C.UTF-8";
    env[k] = NULL;
    return env;
}

/* Reads from fd into b (if b) or a bounded stderr buffer. Returns 1 at EOF,
 * 0 if more may come, negative errno on error. */
static int drain(int fd, struct buf *b, size_t *err_len)
{
    char tmp[65536];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r < 0)
        return (errno == EINTR || errno == EAGAIN) ? 0 : -errno;
    if (r == 0)
        return 1;
    if (b) {
        int e = buf_reserve(b, (size_t)r);
        if (e)
            return e;
        memcpy(b->p + b->len, tmp, (size_t)r);
        b->len += (size_t)r;
    } else {
        size_t room = STDERR_KEEP - 1 - *err_len;
        size_t k = (size_t)r < room ? (size_t)r : room;
        memcpy(last_stderr + *err_len, tmp, k);
        *err_len += k;
        last_stderr[*err_len] = '\0';
    }
    return 0;
}

int oracle_run(const char *const argv[], char **out, size_t *out_len, int *exit_status)
{
    return oracle_run_input(argv, NULL, out, out_len, exit_status);
}

int oracle_run_input(const char *const argv[], const char *stdin_path, char **out,
                     size_t *out_len, int *exit_status)
{
    int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, execp[2] = { -1, -1 };
    int devnull = -1, ret = 0;
    struct buf ob = { 0 };
    size_t err_len = 0;
    char **env = NULL;
    pid_t pid;

    last_stderr[0] = '\0';
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!argv || !argv[0])
        return -EINVAL;

    env = child_environ();
    if (!env)
        return -ENOMEM;
    devnull = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) ||
        pipe2(execp, O_CLOEXEC)) {
        ret = -errno;
        goto out;
    }

    pid = fork();
    if (pid < 0) {
        ret = -errno;
        goto out;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here on. */
        if (dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0) {
            int e = errno;
            (void)!write(execp[1], &e, sizeof e);
            _exit(127);
        }
        signal(SIGPIPE, SIG_DFL);
        execvpe(argv[0], (char *const *)argv, env);
        int e = errno;
        (void)!write(execp[1], &e, sizeof e);
        _exit(127);
    }

    close_fd(&outp[1]);
    close_fd(&errp[1]);
    close_fd(&execp[1]);

    /* The exec pipe closes on a successful exec (O_CLOEXEC); otherwise the
     * child sends errno first. */
    int exec_errno = 0;
    ssize_t r;
    do
        r = read(execp[0], &exec_errno, sizeof exec_errno);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof exec_errno)
        exec_errno = 0;

    /* Collect stdout and stderr until both reach EOF. */
    while (outp[0] >= 0 || errp[0] >= 0) {
        struct pollfd p[2];
        int n = 0;
        if (outp[0] >= 0)
            p[n++] = (struct pollfd){ .fd = outp[0], .events = POLLIN };
        if (errp[0] >= 0)
            p[n++] = (struct pollfd){ .fd = errp[0], .events = POLLIN };
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            if (!ret)
                ret = -errno;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            bool is_out = p[i].fd == outp[0];
            int e = drain(p[i].fd, is_out ? &ob : NULL, &err_len);
            if (e < 0 && !ret)
                ret = e;
            if (e != 0)
                close_fd(is_out ? &outp[0] : &errp[0]);
        }
    }

    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            if (!ret)
                ret = -errno;
            goto out;
        }
    }
    if (ret)
        goto out;
    if (exec_errno) {
        ret = exec_errno == ENOENT ? -ENOPKG : -exec_errno;
        snprintf(last_stderr, sizeof last_stderr, "cannot run %s: %s", argv[0],
                 strerror(exec_errno));
        goto out;
    }

    int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (exit_status)
        *exit_status = status;
    else if (status != 0) {
        ret = -EIO;
        goto out;
    }

    if (buf_reserve(&ob, 1)) {
        ret = -ENOMEM;
        goto out;
    }
    ob.p[ob.len] = '\0';
    if (out) {
        *out = ob.p;
        ob.p = NULL;
    }
    if (out_len)
        *out_len = ob.len;

out:
    free(ob.p);
    free(env);
    close_fd(&devnull);
    close_fd(&outp[0]);
    close_fd(&outp[1]);
    close_fd(&errp[0]);
    close_fd(&errp[1]);
    close_fd(&execp[0]);
    close_fd(&execp[1]);
    return ret;
}

/* ------------------------------------------------------------ helpers -- */

/* The tools take no "--": keep an image path from looking like an option. */
static const char *img_arg(const char *img, char **tmp)
{
    *tmp = NULL;
    if (img[0] != '-')
        return img;
    if (asprintf(tmp, "./%s", img) < 0) {
        *tmp = NULL;
        return NULL;
    }
    return *tmp;
}

static bool stderr_has(const char *s)
{
    return strstr(last_stderr, s) != NULL;
}

/* Runs a tool expected to exit 0; maps a non-zero exit to an errno by
 * the tool's message. */
static int run_tool(const char *const argv[], char **out, size_t *len)
{
    int status = 0;
    int e = oracle_run(argv, out, len, &status);
    if (e)
        return e;
    if (status == 0)
        return 0;
    free(*out);
    *out = NULL;
    if (stderr_has("No such file or directory"))
        return -ENOENT;
    return -EIO;
}

/* ---------------------------------------------------------- ntfscat -- */

int oracle_cat(const char *img, const char *path, const char *stream, char **data, size_t *len)
{
    char *tmp, *out = NULL;
    size_t n = 0;
    if (!img || !path || path[0] != '/' || !data || !len)
        return -EINVAL;
    const char *imga = img_arg(img, &tmp);
    if (!imga)
        return -ENOMEM;

    const char *argv[8];
    int k = 0;
    argv[k++] = "ntfscat";
    if (stream && stream[0]) {
        argv[k++] = "-a";
        argv[k++] = "0x80";
        argv[k++] = "-n";
        argv[k++] = stream;
    }
    argv[k++] = imga;
    argv[k++] = path;
    argv[k] = NULL;

    int status = 0;
    int e = oracle_run(argv, &out, &n, &status);
    free(tmp);
    if (e)
        return e;
    if (status != 0) {
        free(out);
        if (stderr_has("Cannot find attribute"))
            return -ENODATA;
        if (stderr_has("No such file or directory"))
            return -ENOENT;
        return -EIO;
    }
    *data = out;
    *len = n;
    return 0;
}

/* ----------------------------------------------------------- ntfsls -- */

void oracle_free_names(char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

void oracle_drop_dots(char **names, size_t *count)
{
    for (size_t i = 0; i < *count;) {
        if (!strcmp(names[i], ".") || !strcmp(names[i], "..")) {
            free(names[i]);
            names[i] = names[--*count];
        } else {
            i++;
        }
    }
}

int oracle_ls(const char *img, const char *dir, char ***names, size_t *count)
{
    char *tmp, *out = NULL;
    size_t n = 0;
    if (!img || !dir || dir[0] != '/' || !names || !count)
        return -EINVAL;
    const char *imga = img_arg(img, &tmp);
    if (!imga)
        return -ENOMEM;
    const char *argv[] = { "ntfsls", "-a", "-s", "-p", dir, imga, NULL };
    int status = 0;
    int e = oracle_run(argv, &out, &n, &status);
    free(tmp);
    if (e)
        return e;
    if (status != 0) {
        free(out);
        return status == 3 ? -ENOENT : -EIO;
    }

    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n')
            lines++;
    char **v = calloc(lines + 1, sizeof *v);
    if (!v) {
        free(out);
        return -ENOMEM;
    }
    size_t c = 0;
    char *p = out, *end = out + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (l > 0) {
            v[c] = strndup(p, l);
            if (!v[c]) {
                oracle_free_names(v, c);
                free(out);
                return -ENOMEM;
            }
            c++;
        }
        p += l + 1;
    }
    free(out);
    *names = v;
    *count = c;
    return 0;
}

/* --------------------------------------------------------- ntfsinfo -- */

static int run_ntfsinfo(const char *img, const char *path, char **out)
{
    char *tmp;
    size_t n;
    if (!img || !path || path[0] != '/')
        return -EINVAL;
    const char *imga = img_arg(img, &tmp);
    if (!imga)
        return -ENOMEM;
    const char *argv[] = { "ntfsinfo", "-F", path, imga, NULL };
    int e = run_tool(argv, out, &n);
    free(tmp);
    if (e)
        return e;
    /* ntfsinfo exits 0 for a missing file: it just dumps nothing. */
    if (strncmp(*out, "Dumping Inode ", 14) != 0 && !strstr(*out, "\nDumping Inode ")) {
        bool empty = (*out)[0] == '\0';
        free(*out);
        *out = NULL;
        return empty || stderr_has("No such file") ? -ENOENT : -EBADMSG;
    }
    return 0;
}

/* If line (tabs stripped) starts with key, return the value after it with
 * leading blanks skipped. */
static const char *value_of(const char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0)
        return NULL;
    line += k;
    while (*line == ' ' || *line == '\t')
        line++;
    return line;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno || end == s)
        return -EBADMSG;
    *v = x;
    return 0;
}

int oracle_info(const char *img, const char *path, const char *stream, struct oracle_attr *a)
{
    char *out = NULL;
    if (!a)
        return -EINVAL;
    memset(a, 0, sizeof *a);
    int e = run_ntfsinfo(img, path, &out);
    if (e)
        return e;
    const char *want = stream ? stream : "";

    /* Per $DATA block state. */
    bool in_data = false, done = false;
    bool have_name = false, have_res = false, have_flags = false, have_size = false;
    char name[1024];
    struct oracle_attr cur = { 0 };
    int ret = 0;

    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
        bool boundary = !line || strncmp(line, "Dumping attribute ", 18) == 0 ||
                        strncmp(line, "End of inode reached", 20) == 0;
        if (boundary && in_data) {
            /* close the current $DATA block */
            if (strcmp(have_name ? name : "", want) == 0) {
                a->found = true;
                if (have_size && !done) {
                    if (!have_res || !have_flags) {
                        ret = -EBADMSG;
                        break;
                    }
                    cur.found = true;
                    *a = cur;
                    done = true;
                }
            }
            in_data = false;
        }
        if (!line)
            break;
        if (boundary) {
            if (strncmp(line, "Dumping attribute $DATA ", 24) == 0) {
                in_data = true;
                have_name = have_res = have_flags = have_size = false;
                memset(&cur, 0, sizeof cur);
            }
            continue;
        }
        if (!in_data)
            continue;

        const char *l = line, *v;
        while (*l == '\t')
            l++;
        if ((v = value_of(l, "Attribute name:"))) {
            const char *q1 = strchr(v, '\''), *q2 = strrchr(v, '\'');
            if (!q1 || q2 == q1 || (size_t)(q2 - q1 - 1) >= sizeof name) {
                ret = -EBADMSG;
                break;
            }
            memcpy(name, q1 + 1, (size_t)(q2 - q1 - 1));
            name[q2 - q1 - 1] = '\0';
            have_name = true;
        } else if ((v = value_of(l, "Resident:"))) {
            if (strncmp(v, "Yes", 3) == 0)
                cur.resident = true;
            else if (strncmp(v, "No", 2) == 0)
                cur.resident = false;
            else {
                ret = -EBADMSG;
                break;
            }
            have_res = true;
        } else if ((v = value_of(l, "Attribute flags:"))) {
            uint64_t f;
            if (parse_u64(v, &f) || f > 0xffff) {
                ret = -EBADMSG;
                break;
            }
            cur.flags = (uint16_t)f;
            cur.compressed = (f & 0x00ff) != 0;
            cur.encrypted = (f & 0x4000) != 0;
            cur.sparse = (f & 0x8000) != 0;
            have_flags = true;
        } else if ((v = value_of(l, "Data size:"))) {
            if (parse_u64(v, &cur.data_size)) {
                ret = -EBADMSG;
                break;
            }
            have_size = true;
        } else if ((v = value_of(l, "Allocated size:"))) {
            if (parse_u64(v, &cur.allocated_size)) {
                ret = -EBADMSG;
                break;
            }
        } else if ((v = value_of(l, "Initialized size:"))) {
            if (parse_u64(v, &cur.initialized_size)) {
                ret = -EBADMSG;
                break;
            }
        } else if ((v = value_of(l, "Compressed size:"))) {
            if (parse_u64(v, &cur.compressed_size)) {
                ret = -EBADMSG;
                break;
            }
        }
    }
    free(out);
    if (ret == 0 && a->found && !done)
        ret = -EBADMSG; /* blocks seen, but none carried the sizes */
    if (ret)
        memset(a, 0, sizeof *a);
    return ret;
}

int oracle_has_attr(const char *img, const char *path, const char *attr_name, bool *present)
{
    char *out = NULL;
    if (!attr_name || !attr_name[0] || !present)
        return -EINVAL;
    *present = false;
    int e = run_ntfsinfo(img, path, &out);
    if (e)
        return e;
    size_t an = strlen(attr_name);
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "Dumping attribute ", 18) == 0 &&
            strncmp(line + 18, attr_name, an) == 0 && line[18 + an] == ' ') {
            *present = true;
            break;
        }
    }
    free(out);
    return 0;
}
