/*
 * oracle_selftest FIXTURE_DIR
 *
 * Checks the oracle (oracle.c) against the images that
 * tests/fixtures/mkfixtures.sh writes to FIXTURE_DIR: that each query
 * answers what the fixture is known to contain, and that errors come back
 * as documented.  Prints one line per failed check and closes with
 * "N passed, N failed"; exit status 0 only if nothing failed.
 */
#include "oracle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            passed++;                                                                \
        } else {                                                                     \
            failed++;                                                                \
            fprintf(stderr, "FAIL %s:%d: %s [stderr: %s]\n", __FILE__, __LINE__, #cond, \
                    oracle_last_stderr());                                           \
        }                                                                            \
    } while (0)

static char img4k[4096], img512[4096], img64k[4096], imghib[4096];

static bool has_name(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static void test_run(void)
{
    char *out = NULL;
    size_t len = 0;
    int st = -1;
    const char *echo[] = { "printf", "%s|%s", "a b", "$HOME;`x`", NULL };
    CHECK(oracle_run(echo, &out, &len, &st) == 0);
    CHECK(st == 0 && out && strcmp(out, "a b|$HOME;`x`") == 0 && len == 13);
    free(out);

    const char *fail[] = { "false", NULL };
    CHECK(oracle_run(fail, NULL, NULL, &st) == 0 && st == 1);
    CHECK(oracle_run(fail, NULL, NULL, NULL) == -EIO);

    const char *missing[] = { "no-such-tool-for-oracle-selftest", NULL };
    out = (char *)1;
    CHECK(oracle_run(missing, &out, &len, &st) == -ENOPKG && out == NULL);
}

static void test_cat(void)
{
    char *d = NULL;
    size_t n = 0;

    CHECK(oracle_cat(img4k, "/small.txt", NULL, &d, &n) == 0);
    CHECK(n == 300 && d && strncmp(d, "0000000000 alpha", 16) == 0);
    free(d);

    CHECK(oracle_cat(img4k, "/big.bin", NULL, &d, &n) == 0 && n == 3 * 1048576 + 1234);
    free(d);

    CHECK(oracle_cat(img4k, "/empty", NULL, &d, &n) == 0 && n == 0);
    free(d);

    CHECK(oracle_cat(img4k, "/streams.txt", NULL, &d, &n) == 0);
    CHECK(n == 20 && strcmp(d, "unnamed data stream\n") == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/streams.txt", "", &d, &n) == 0 && n == 20);
    free(d);
    CHECK(oracle_cat(img4k, "/streams.txt", "alpha", &d, &n) == 0);
    CHECK(n == 17 && strcmp(d, "alpha stream data") == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/streams.txt", "beta", &d, &n) == 0 && n == 102400);
    free(d);
    d = (char *)1;
    CHECK(oracle_cat(img4k, "/streams.txt", "gamma", &d, &n) == -ENODATA && d == (char *)1);

    /* sparse: data, hole, data, hole */
    CHECK(oracle_cat(img4k, "/sparse.bin", NULL, &d, &n) == 0 && n == 16u << 20);
    if (d && n == 16u << 20) {
        size_t nz = 0;
        for (size_t i = 10000; i < (8u << 20); i++)
            nz += d[i] != 0;
        for (size_t i = (8u << 20) + 20000; i < n; i++)
            nz += d[i] != 0;
        CHECK(nz == 0);
    }
    free(d);

    /* prealloc: beyond the initialized size everything reads as zero */
    CHECK(oracle_cat(img4k, "/prealloc.bin", NULL, &d, &n) == 0 && n == 1048576);
    if (d && n == 1048576) {
        size_t nz = 0;
        for (size_t i = 10000; i < n; i++)
            nz += d[i] != 0;
        CHECK(nz == 0);
    }
    free(d);

    /* compressed text decompresses to the generator's text */
    CHECK(oracle_cat(img4k, "/comp/text.txt", NULL, &d, &n) == 0 && n == 300000);
    CHECK(d && n == 300000 && d[63] == '\n' && strncmp(d + 64, "0000000001 bravo", 16) == 0);
    free(d);

    /* case-sensitive names, unicode, DOS name lookup */
    CHECK(oracle_cat(img4k, "/unicode/x.txt", NULL, &d, &n) == 0 && strcmp(d, "lower x\n") == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/unicode/X.txt", NULL, &d, &n) == 0 && strcmp(d, "upper X\n") == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/unicode/日本語.txt", NULL, &d, &n) == 0 && strcmp(d, "kanji\n") == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/unicode/emoji-\xF0\x9F\x98\x80.txt", NULL, &d, &n) == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/unicode/AVERYL~1.TXT", NULL, &d, &n) == 0 &&
          strcmp(d, "long name with a DOS name\n") == 0);
    free(d);
    CHECK(oracle_cat(img4k, "/unicode/case.txt", NULL, &d, &n) == -ENOENT);
    CHECK(oracle_cat(img4k, "/d1/d2/d3/deep.txt", NULL, &d, &n) == 0 && n == 10);
    free(d);

    CHECK(oracle_cat(img4k, "/no/such/file", NULL, &d, &n) == -ENOENT);
    CHECK(oracle_cat(img4k, "/unicode", NULL, &d, &n) == -ENODATA);
    CHECK(oracle_cat(img4k, "relative", NULL, &d, &n) == -EINVAL);

    CHECK(oracle_cat(imghib, "/hiberfil.sys", NULL, &d, &n) == 0 && n == 8192 &&
          memcmp(d, "hibr\0\0\0\0", 8) == 0);
    free(d);
}

static void test_ls(void)
{
    char **v = NULL;
    size_t n = 0;

    static const char *const unicode_order[] = {
        ".", "..", "A very long file name indeed.txt", "Case.txt", "CASE2.txt", "case2.txt",
        "emoji-\xF0\x9F\x98\x80.txt", "X.txt", "x.txt", "Ünïcödé-ñ.txt", "日本語.txt",
    };
    CHECK(oracle_ls(img4k, "/unicode", &v, &n) == 0);
    CHECK(n == sizeof unicode_order / sizeof unicode_order[0]);
    for (size_t i = 0; i < n && i < sizeof unicode_order / sizeof unicode_order[0]; i++)
        CHECK(strcmp(v[i], unicode_order[i]) == 0);
    CHECK(!has_name(v, n, "AVERYL~1.TXT"));
    oracle_free_names(v, n);

    CHECK(oracle_ls(img4k, "/", &v, &n) == 0);
    CHECK(n >= 2 && strcmp(v[0], ".") == 0 && strcmp(v[1], "..") == 0);
    CHECK(has_name(v, n, "$MFT") && has_name(v, n, "$Extend") && has_name(v, n, "big.bin"));
    CHECK(!has_name(v, n, "hiberfil.sys") && !has_name(v, n, "fill") && !has_name(v, n, ".holes"));
    oracle_free_names(v, n);

    CHECK(oracle_ls(img4k, "/bigdir", &v, &n) == 0 && n == 2002);
    oracle_free_names(v, n);
    CHECK(oracle_ls(img64k, "/dir300", &v, &n) == 0 && n == 302);
    oracle_free_names(v, n);

    CHECK(oracle_ls(img4k, "/nonexistent", &v, &n) == -ENOENT);
    CHECK(oracle_ls(img4k, "/small.txt", &v, &n) == 0 && n == 1 && strcmp(v[0], "small.txt") == 0);
    oracle_free_names(v, n);
}

static void test_info(void)
{
    struct oracle_attr a;

    CHECK(oracle_info(img4k, "/small.txt", NULL, &a) == 0);
    CHECK(a.found && a.resident && !a.compressed && a.data_size == 300 && a.allocated_size == 0);

    CHECK(oracle_info(img4k, "/big.bin", NULL, &a) == 0);
    CHECK(a.found && !a.resident && a.data_size == 3 * 1048576 + 1234 &&
          a.allocated_size == 3149824 && a.initialized_size == a.data_size);

    CHECK(oracle_info(img4k, "/attrlist.bin", NULL, &a) == 0);
    CHECK(a.found && !a.resident && a.data_size == 400 * 4096);

    CHECK(oracle_info(img4k, "/sparse.bin", NULL, &a) == 0);
    CHECK(a.sparse && !a.compressed && a.data_size == 16u << 20 && a.compressed_size > 0 &&
          a.initialized_size < a.data_size);

    CHECK(oracle_info(img4k, "/comp/text.txt", NULL, &a) == 0);
    CHECK(a.compressed && a.data_size == 300000 && a.compressed_size < 300000 / 2);
    CHECK(oracle_info(img4k, "/comp/mixed.bin", NULL, &a) == 0 && a.compressed);
    CHECK(oracle_info(img4k, "/comp/tiny.txt", NULL, &a) == 0 && a.resident && a.compressed);

    CHECK(oracle_info(img4k, "/prealloc.bin", NULL, &a) == 0);
    CHECK(a.data_size == 1048576 && a.initialized_size == 10000 && a.allocated_size > a.data_size);

    CHECK(oracle_info(img4k, "/streams.txt", "alpha", &a) == 0 && a.found && a.resident &&
          a.data_size == 17);
    CHECK(oracle_info(img4k, "/streams.txt", "beta", &a) == 0 && a.found && !a.resident &&
          a.data_size == 102400);
    CHECK(oracle_info(img4k, "/streams.txt", NULL, &a) == 0 && a.found && a.data_size == 20);
    CHECK(oracle_info(img4k, "/streams.txt", "gamma", &a) == 0 && !a.found);
    CHECK(oracle_info(img4k, "/bigdir", NULL, &a) == 0 && !a.found);
    CHECK(oracle_info(img4k, "/nope", NULL, &a) == -ENOENT);

    CHECK(oracle_info(img512, "/comp/mixed.bin", NULL, &a) == 0 && a.compressed &&
          a.data_size == 14 * 8192);
    CHECK(oracle_info(img64k, "/prealloc.bin", NULL, &a) == 0 &&
          a.initialized_size < a.data_size);
    CHECK(oracle_info(img64k, "/big.bin", NULL, &a) == 0 && a.allocated_size % 65536 == 0);
}

static void test_has_attr(void)
{
    bool p;
    CHECK(oracle_has_attr(img4k, "/attrlist.bin", "$ATTRIBUTE_LIST", &p) == 0 && p);
    CHECK(oracle_has_attr(img4k, "/big.bin", "$ATTRIBUTE_LIST", &p) == 0 && !p);
    CHECK(oracle_has_attr(img4k, "/bigdir", "$INDEX_ALLOCATION", &p) == 0 && p);
    CHECK(oracle_has_attr(img4k, "/d1", "$INDEX_ALLOCATION", &p) == 0 && !p);
    CHECK(oracle_has_attr(img4k, "/d1", "$INDEX_ROOT", &p) == 0 && p);
    CHECK(oracle_has_attr(img4k, "/big.bin", "$DATA", &p) == 0 && p);
    CHECK(oracle_has_attr(img4k, "/big.bin", "$DAT", &p) == 0 && !p);
    CHECK(oracle_has_attr(img512, "/attrlist.bin", "$ATTRIBUTE_LIST", &p) == 0 && p);
    CHECK(oracle_has_attr(img64k, "/dir300", "$INDEX_ALLOCATION", &p) == 0 && p);
    CHECK(oracle_has_attr(img4k, "/missing", "$DATA", &p) == -ENOENT);
    CHECK(oracle_has_attr("/nonexistent.img", "/x", "$DATA", &p) < 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    snprintf(img4k, sizeof img4k, "%s/vol4k.img", argv[1]);
    snprintf(img512, sizeof img512, "%s/vol512.img", argv[1]);
    snprintf(img64k, sizeof img64k, "%s/vol64k.img", argv[1]);
    snprintf(imghib, sizeof imghib, "%s/hiber.img", argv[1]);

    test_run();
    test_cat();
    test_ls();
    test_info();
    test_has_attr();

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
