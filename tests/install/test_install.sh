#!/usr/bin/env bash
# test_install.sh — what `meson install` provides, checked from the outside.
#
# Installs the build in $BUILD_DIR (default: build) into a DESTDIR staging
# tree under a fresh temporary directory, checks that every file a package
# needs is there (binaries, the shared library and its soname, the header,
# the pkg-config file, the systemd units, the tmpfiles.d entry, the manual
# pages), then builds a small program outside the source tree against the
# staged library using only pkg-config, and runs it.  It also checks that
# the staged ntfsd is linked with jemalloc exactly when
# $NTFSD_EXPECT_ALLOCATOR (set by meson) is jemalloc, and libntfsc never is.
#
# A missing tool is a failure, never a skip: an install test that silently
# does nothing proves nothing.  The temporary directory is always removed.
set -euo pipefail

BUILD_DIR=${BUILD_DIR:-build}
failures=0
checks=0

ok()   { checks=$((checks + 1)); printf 'ok:   %s\n' "$*"; }
bad()  { checks=$((checks + 1)); failures=$((failures + 1)); printf 'FAIL: %s\n' "$*"; }
die()  { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

for tool in meson python3 readelf pkg-config cc ldd mktemp; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' is not installed"
done
[[ -d $BUILD_DIR ]] || die "build directory '$BUILD_DIR' does not exist"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ntfsd-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

# ---- where this build installs things ----
# One line per directory option, made absolute against the prefix as meson
# does (an absolute libdir etc. stays as it is).
dirs=$(meson introspect "$BUILD_DIR" --buildoptions | python3 -c '
import json, os, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
prefix = opts["prefix"]
print("prefix", prefix)
for k in ("bindir", "sbindir", "libdir", "includedir", "mandir"):
    print(k, os.path.join(prefix, opts[k]))
print("sanitize", opts.get("b_sanitize", "none"))
') || die "cannot read the install directories of $BUILD_DIR"
prefix=$(awk '$1 == "prefix" {print $2}' <<<"$dirs")
bindir=$(awk '$1 == "bindir" {print $2}' <<<"$dirs")
sbindir=$(awk '$1 == "sbindir" {print $2}' <<<"$dirs")
libdir=$(awk '$1 == "libdir" {print $2}' <<<"$dirs")
includedir=$(awk '$1 == "includedir" {print $2}' <<<"$dirs")
mandir=$(awk '$1 == "mandir" {print $2}' <<<"$dirs")
# A library built with sanitizers needs a program built with them too.
sanitize=$(awk '$1 == "sanitize" {print $2}' <<<"$dirs")
san_flags=
[[ $sanitize != none && -n $sanitize ]] && san_flags="-fsanitize=$sanitize"
echo "build dir: $BUILD_DIR"
echo "prefix $prefix, libdir $libdir; staging into $root"

# ---- install ----
if ! meson install -C "$BUILD_DIR" --destdir "$root" --quiet; then
	die "meson install -C $BUILD_DIR --destdir $root failed"
fi
ok "meson install into DESTDIR"

# ---- the installed tree ----
check_file() {  # check_file PATH DESCRIPTION [-x]
	local path=$root$1
	if [[ ! -f $path ]]; then
		bad "$2: $1 is missing"
	elif [[ ${3:-} == -x && ! -x $path ]]; then
		bad "$2: $1 is not executable"
	else
		ok "$2: $1"
	fi
}

check_file "$sbindir/ntfsd" "daemon" -x
check_file "$bindir/ntfsctl" "command-line tool" -x
check_file "$libdir/libntfsc.so.0" "shared library (soname link)"
check_file "$libdir/libntfsc.so" "shared library (development link)"
check_file "$includedir/ntfsc.h" "header"
check_file "$libdir/pkgconfig/ntfsc.pc" "pkg-config file"
check_file "$prefix/lib/systemd/system/ntfsd@.service" "systemd service template"
check_file "$prefix/lib/systemd/system/ntfsd@.socket" "systemd socket template"
check_file "$prefix/lib/tmpfiles.d/ntfsd.conf" "tmpfiles.d entry"
check_file "$mandir/man8/ntfsd.8" "manual page"
check_file "$mandir/man8/ntfsctl.8" "manual page"
check_file "$mandir/man3/ntfsc.3" "manual page"

if [[ -f $root$libdir/libntfsc.so.0 ]]; then
	soname=$(readelf -d "$root$libdir/libntfsc.so.0" |
		sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
	if [[ $soname == libntfsc.so.0 ]]; then
		ok "SONAME of libntfsc is $soname"
	else
		bad "SONAME of libntfsc is '${soname:-none}', expected libntfsc.so.0"
	fi
fi

# jemalloc is the daemon's allocator (not in sanitizer builds), never the
# client library's: a program using libntfsc keeps its own malloc.
expect_alloc=${NTFSD_EXPECT_ALLOCATOR:-}
case $expect_alloc in
jemalloc | asan | glibc) ;;
*) die "NTFSD_EXPECT_ALLOCATOR (${expect_alloc:-unset}) is not jemalloc, asan or glibc" ;;
esac
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'; }
if [[ -f $root$sbindir/ntfsd ]]; then
	libs=$(needed "$root$sbindir/ntfsd")
	if grep -q '^libjemalloc\.so' <<<"$libs"; then
		if [[ $expect_alloc == jemalloc ]]; then
			ok "ntfsd is linked with jemalloc"
		else
			bad "ntfsd is linked with jemalloc in a build that expects $expect_alloc"
		fi
	elif [[ $expect_alloc == jemalloc ]]; then
		bad "ntfsd is not linked with jemalloc: $(tr '\n' ' ' <<<"$libs")"
	else
		ok "ntfsd is not linked with jemalloc ($expect_alloc build)"
	fi
fi
if [[ -f $root$libdir/libntfsc.so.0 ]]; then
	libs=$(needed "$root$libdir/libntfsc.so.0")
	if grep -q '^libjemalloc\.so' <<<"$libs"; then
		bad "libntfsc is linked with jemalloc; only the daemon may be"
	else
		ok "libntfsc is not linked with jemalloc"
	fi
fi

# The unit must start the daemon from where this build installed it.
unit=$root$prefix/lib/systemd/system/ntfsd@.service
if [[ -f $unit ]]; then
	if grep -q "^ExecStart=$sbindir/ntfsd " "$unit"; then
		ok "ntfsd@.service runs $sbindir/ntfsd"
	else
		bad "ntfsd@.service: ExecStart does not name $sbindir/ntfsd: $(grep '^ExecStart=' "$unit")"
	fi
fi

# ---- a program built against the staged install, outside the tree ----
pcdir=$root$libdir/pkgconfig
if [[ -f $pcdir/ntfsc.pc ]]; then
	# PKG_CONFIG_LIBDIR: see only the staged .pc file, never an installed
	# one.  PKG_CONFIG_SYSROOT_DIR: the .pc file names the final prefix;
	# pkg-config puts the staging root in front of its -I and -L paths.
	pc() { PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH='' PKG_CONFIG_SYSROOT_DIR=$root \
		pkg-config "$@"; }
	if flags=$(pc --cflags --libs ntfsc); then
		ok "pkg-config --cflags --libs ntfsc: $flags"
		case " $flags " in
		*" -I$root$includedir "*) ok "cflags point into the staging tree" ;;
		*) bad "cflags do not name -I$root$includedir: $flags" ;;
		esac
		case " $flags " in
		*" -L$root$libdir "*) ok "libs point into the staging tree" ;;
		*) bad "libs do not name -L$root$libdir: $flags" ;;
		esac
	else
		bad "pkg-config cannot find ntfsc in $pcdir"
		flags=
	fi

	cat >"$tmp/connect.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ntfsc.h>

int main(int argc, char **argv)
{
	ntfsc *c;
	const char *msg;

	if (argc != 2)
		return 2;
	errno = 0;
	c = ntfsc_connect(argv[1]);
	if (c) {
		printf("ntfsc_connect(%s) unexpectedly succeeded\n", argv[1]);
		ntfsc_disconnect(c);
		return 1;
	}
	msg = ntfsc_last_error_message(NULL);
	printf("ntfsc_connect(%s): NULL, errno %d (%s), message: %s\n", argv[1], errno,
	       strerror(errno), msg ? msg : "(none)");
	return errno == ENOENT || errno == ECONNREFUSED ? 0 : 1;
}
EOF
	# shellcheck disable=SC2086  # $flags is a list of words
	if [[ -n $flags ]] &&
	   (cd "$tmp" && cc -std=c17 -Wall -Wextra -Werror $san_flags -o connect connect.c $flags); then
		ok "built $tmp/connect.c against the staged libntfsc"
		lib=$(LD_LIBRARY_PATH=$root$libdir ldd "$tmp/connect" |
			awk '$1 == "libntfsc.so.0" {print $3}')
		case $lib in
		"$root$libdir"/*) ok "it loads libntfsc.so.0 from the staging tree ($lib)" ;;
		*) bad "it loads libntfsc.so.0 from '${lib:-nowhere}', not from $root$libdir" ;;
		esac
		if out=$(env -u NTFSD_SOCKET LD_LIBRARY_PATH="$root$libdir" \
			 "$tmp/connect" "$tmp/no-such.sock" 2>&1); then
			ok "$out"
		else
			bad "connecting to a missing socket: ${out:-no output}"
		fi
	else
		bad "cannot build a program against the staged libntfsc"
	fi
fi

echo "$checks checks, $failures failed"
[[ $failures -eq 0 ]]
