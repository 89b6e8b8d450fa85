#!/bin/bash
# test_service.sh — ntfsd as a systemd service, without systemd running:
#  (a) systemd-analyze verify on deploy/ntfsd@.service and ntfsd@.socket;
#  (b) sd_notify: READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 reach a
#      NOTIFY_SOCKET of our own;
#  (c) socket activation through systemd-socket-activate;
#  (d) SIGHUP re-reads the --config file and applies the live tunables;
#  (e) `ntfsctl status` (text and --json) names the allocator this build
#      links: jemalloc with allocated > 0 and resident >= allocated, or in a
#      build without jemalloc (sanitizers) the allocator it has, never
#      "jemalloc".
#
# Environment: NTFSD_BIN, NTFSCTL_BIN, NTFSD_FIXTURE_DIR (vol4k.img),
# NTFSD_EXPECT_ALLOCATOR (jemalloc, asan or glibc: what meson linked ntfsd
# with), and NOTIFY_LISTENER_BIN (tests/deploy/notify_listener.c; compiled
# with $CC or cc into the scratch directory when unset).  A missing tool is a
# failure, not a skip.  Exits 0 when everything passed.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
need() { command -v "$1" >/dev/null 2>&1 || fail "required tool '$1' is not installed"; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir=$(cd "$here/../.." && pwd)

[[ -n "${NTFSD_BIN:-}" && -x "$NTFSD_BIN" ]] || fail "NTFSD_BIN (${NTFSD_BIN:-unset}) is not an executable"
[[ -n "${NTFSCTL_BIN:-}" && -x "$NTFSCTL_BIN" ]] || fail "NTFSCTL_BIN (${NTFSCTL_BIN:-unset}) is not an executable"
[[ -n "${NTFSD_FIXTURE_DIR:-}" && -f "$NTFSD_FIXTURE_DIR/vol4k.img" ]] ||
	fail "no fixture volume \$NTFSD_FIXTURE_DIR/vol4k.img (NTFSD_FIXTURE_DIR=${NTFSD_FIXTURE_DIR:-unset})"
need systemd-analyze
need systemd-socket-activate
need python3
expect_alloc=${NTFSD_EXPECT_ALLOCATOR:-}
case $expect_alloc in
jemalloc | asan | glibc) ;;
*) fail "NTFSD_EXPECT_ALLOCATOR (${expect_alloc:-unset}) is not jemalloc, asan or glibc" ;;
esac
NTFSD_BIN=$(realpath "$NTFSD_BIN")
NTFSCTL_BIN=$(realpath "$NTFSCTL_BIN")

# short path: unix socket paths are limited to 107 bytes
tmp=$(mktemp -d /tmp/ntfsd-svc.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s
wait_for() {
	local n=$(($1 * 10)) i
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

if [[ -n "${NOTIFY_LISTENER_BIN:-}" ]]; then
	listener=$NOTIFY_LISTENER_BIN
	[[ -x "$listener" ]] || fail "NOTIFY_LISTENER_BIN ($listener) is not an executable"
else
	cc=${CC:-cc}
	need "$cc"
	listener=$tmp/notify_listener
	"$cc" -std=c17 -D_GNU_SOURCE -O1 -Wall -o "$listener" "$here/notify_listener.c" ||
		fail "cannot compile notify_listener.c"
fi

cp "$NTFSD_FIXTURE_DIR/vol4k.img" "$tmp/vol.img"

# stop_daemon PID LOG: SIGTERM, and the daemon must exit 0
stop_daemon() {
	local rc=0
	kill -TERM "$1"
	wait "$1" || rc=$?
	[[ $rc -eq 0 ]] || { cat "$2" >&2; fail "ntfsd exited $rc after SIGTERM"; }
}

# ---------------------------------------------------------------- (a)
step "(a) systemd-analyze verify"
mkdir "$tmp/units"
sed "s#^ExecStart=/usr/sbin/ntfsd #ExecStart=$NTFSD_BIN #" "$srcdir/deploy/ntfsd@.service" \
	>"$tmp/units/ntfsd@.service"
grep -q "^ExecStart=$NTFSD_BIN " "$tmp/units/ntfsd@.service" ||
	fail "could not point ExecStart= of ntfsd@.service at $NTFSD_BIN"
cp "$srcdir/deploy/ntfsd@.socket" "$tmp/units/"
rc=0
out=$(cd "$tmp/units" && systemd-analyze verify ./ntfsd@.service ./ntfsd@.socket 2>&1) || rc=$?
[[ -z "$out" ]] || echo "$out"
[[ $rc -eq 0 ]] || fail "systemd-analyze verify exited $rc"
if grep -q 'ntfsd' <<<"$out"; then
	fail "systemd-analyze verify complained about the ntfsd units"
fi
for key in Type=notify WatchdogSec=30 Restart=on-failure NoNewPrivileges=yes \
	ProtectSystem=strict RuntimeDirectory=ntfsd 'ExecReload=/bin/kill -HUP $MAINPID'; do
	grep -qxF "$key" "$srcdir/deploy/ntfsd@.service" || fail "ntfsd@.service lacks $key"
done
grep -qxF 'ListenStream=/run/ntfsd/%i.sock' "$srcdir/deploy/ntfsd@.socket" ||
	fail "ntfsd@.socket does not listen on /run/ntfsd/%i.sock"

# ---------------------------------------------------------------- (b)
step "(b) sd_notify: READY, STATUS, WATCHDOG, STOPPING"
"$listener" "$tmp/notify.sock" >"$tmp/notify.log" 2>&1 &
lpid=$!
pids+=("$lpid")
wait_for 5 grep -q '^listening$' "$tmp/notify.log" || fail "notify_listener did not start"
# WATCHDOG_PID must be ntfsd's own pid: a shell that execs it
NOTIFY_SOCKET=$tmp/notify.sock WATCHDOG_USEC=2000000 \
	bash -c 'export WATCHDOG_PID=$$; exec "$@"' ntfsd-wrapper \
	"$NTFSD_BIN" --volume "$tmp/vol.img" --socket "$tmp/b.sock" 2>"$tmp/b.log" &
dpid=$!
pids+=("$dpid")
wait_for 10 grep -q 'READY=1' "$tmp/notify.log" ||
	{ cat "$tmp/b.log" "$tmp/notify.log" >&2; fail "no READY=1"; }
t_ready=$(date +%s%N)
[[ -S "$tmp/b.sock" ]] || fail "READY=1 came before the socket was listening"
grep -q 'STATUS=.*dirty' "$tmp/notify.log" || { cat "$tmp/notify.log" >&2; fail "no STATUS= line with the dirty figures"; }
# a ping of its own (the first comes with READY=1) within 2 s
wait_for 3 grep -qx 'WATCHDOG=1' "$tmp/notify.log" ||
	{ cat "$tmp/notify.log" >&2; fail "no WATCHDOG=1 ping"; }
t_ping=$(date +%s%N)
(((t_ping - t_ready) / 1000000 <= 2000)) || fail "first WATCHDOG=1 took $(((t_ping - t_ready) / 1000000)) ms"
"$NTFSCTL_BIN" -s "$tmp/b.sock" status >/dev/null || fail "ntfsctl status failed against the notified daemon"
stop_daemon "$dpid" "$tmp/b.log"
grep -q 'STOPPING=1' "$tmp/notify.log" || { cat "$tmp/notify.log" >&2; fail "no STOPPING=1 after SIGTERM"; }
echo "notifications:"; sed 's/^/  /' "$tmp/notify.log"

# without NOTIFY_SOCKET nothing is sent and nothing breaks: covered by (c), (d)

# ---------------------------------------------------------------- (c)
step "(c) socket activation"
systemd-socket-activate -l "$tmp/c.sock" \
	"$NTFSD_BIN" --volume "$tmp/vol.img" --socket "$tmp/not-this.sock" 2>"$tmp/c.log" &
dpid=$!
pids+=("$dpid")
wait_for 10 test -S "$tmp/c.sock" || { cat "$tmp/c.log" >&2; fail "systemd-socket-activate did not listen"; }
wait_for 10 "$NTFSCTL_BIN" -s "$tmp/c.sock" status >/dev/null 2>&1 ||
	{ cat "$tmp/c.log" >&2; fail "ntfsctl status through the activated socket failed"; }
"$NTFSCTL_BIN" -s "$tmp/c.sock" status | grep -q . || fail "empty status"
[[ ! -e "$tmp/not-this.sock" ]] || fail "ntfsd created its own socket although one was passed"
grep -q "on $tmp/c.sock" "$tmp/c.log" || { cat "$tmp/c.log" >&2; fail "the log does not name the activated socket"; }
stop_daemon "$dpid" "$tmp/c.log"
[[ -S "$tmp/c.sock" ]] || fail "ntfsd removed the socket it was passed"

# ---------------------------------------------------------------- (d)
step "(d) SIGHUP reload"
conf=$tmp/d.conf
write_conf() {
	cat >"$conf" <<EOT
# test configuration
volume = $tmp/vol.img
log-level = info
dirty-limit = $1
dirty-background = 524288
${2:-}
EOT
}
json_field() {
	"$NTFSCTL_BIN" -s "$tmp/d.sock" --json status | grep -o "\"$1\": [0-9]*" | grep -o '[0-9]*$'
}
write_conf 1048576
"$NTFSD_BIN" --config "$conf" --socket "$tmp/d.sock" 2>"$tmp/d.log" &
dpid=$!
pids+=("$dpid")
wait_for 10 "$NTFSCTL_BIN" -s "$tmp/d.sock" status >/dev/null 2>&1 ||
	{ cat "$tmp/d.log" >&2; fail "the daemon with --config did not come up"; }
[[ $(json_field dirty_limit) == 1048576 ]] || fail "dirty_limit is $(json_field dirty_limit), not 1048576"

write_conf 2097152
kill -HUP "$dpid"
wait_for 5 grep -q 'SIGHUP: dirty-limit 1048576 -> 2097152' "$tmp/d.log" ||
	{ cat "$tmp/d.log" >&2; fail "the log does not say that dirty-limit changed"; }
[[ $(json_field dirty_limit) == 2097152 ]] || fail "after SIGHUP dirty_limit is $(json_field dirty_limit), not 2097152"
[[ $(json_field dirty_background) == 524288 ]] || fail "dirty_background changed although the file did not change it"
if grep -q 'SIGHUP: dirty-background' "$tmp/d.log"; then
	fail "logged a dirty-background change that did not happen"
fi

# a bad file changes nothing
write_conf 4194304 "flushers = lots"
kill -HUP "$dpid"
wait_for 5 grep -q 'nothing changed' "$tmp/d.log" ||
	{ cat "$tmp/d.log" >&2; fail "a bad config file was not reported"; }
[[ $(json_field dirty_limit) == 2097152 ]] || fail "a bad config file changed dirty_limit"

# keys that need a restart are named, live ones still apply
write_conf 3145728 "cache-size = 128M"
kill -HUP "$dpid"
wait_for 5 grep -q 'SIGHUP: dirty-limit 2097152 -> 3145728' "$tmp/d.log" ||
	{ cat "$tmp/d.log" >&2; fail "the third reload did not apply dirty-limit"; }
grep -q 'cache-size changed.*restart' "$tmp/d.log" ||
	{ cat "$tmp/d.log" >&2; fail "a changed cache-size was not reported as needing a restart"; }
[[ $(json_field cache_limit) == $((256 << 20)) ]] || fail "cache-size changed live"

# log-level is live too
write_conf 3145728 "log-level = debug"
sed -i '/^log-level = info$/d' "$conf"
kill -HUP "$dpid"
wait_for 5 grep -q 'SIGHUP: log-level info -> debug' "$tmp/d.log" ||
	{ cat "$tmp/d.log" >&2; fail "log-level change not applied"; }
stop_daemon "$dpid" "$tmp/d.log"
echo "reload log:"; grep 'SIGHUP' "$tmp/d.log" | sed 's/^/  /'

# ---------------------------------------------------------------- (e)
step "(e) the allocator in ntfsctl status (expected: $expect_alloc)"
"$NTFSD_BIN" --volume "$tmp/vol.img" --socket "$tmp/e.sock" 2>"$tmp/e.log" &
dpid=$!
pids+=("$dpid")
wait_for 10 "$NTFSCTL_BIN" -s "$tmp/e.sock" status >/dev/null 2>&1 ||
	{ cat "$tmp/e.log" >&2; fail "the daemon for (e) did not come up"; }
"$NTFSCTL_BIN" -s "$tmp/e.sock" ls / >/dev/null || fail "ntfsctl ls / failed"
row=$("$NTFSCTL_BIN" -s "$tmp/e.sock" status | grep '^allocator:') ||
	fail "ntfsctl status has no allocator row"
echo "$row"
size='[0-9.]+ (B|KiB|MiB|GiB|TiB)'
if [[ $expect_alloc == jemalloc ]]; then
	[[ $row =~ ^allocator:\ +jemalloc,\ $size\ allocated,\ $size\ resident$ ]] ||
		fail "the allocator row is not 'jemalloc, N allocated, N resident': $row"
else
	[[ $row =~ ^allocator:\ +$expect_alloc,\ $size\ allocated,\ $size\ resident\ \(.*not\ jemalloc\)$ ]] ||
		fail "the allocator row is not '$expect_alloc, ... (... not jemalloc)': $row"
fi
json=$("$NTFSCTL_BIN" -s "$tmp/e.sock" --json status) || fail "ntfsctl --json status failed"
python3 - "$expect_alloc" "$json" <<'PY' || fail "ntfsctl --json status: wrong allocator figures"
import json, sys
want, doc = sys.argv[1], json.loads(sys.argv[2])
a = doc.get("allocator")
print("json allocator:", a)
ok = isinstance(a, dict) and a.get("name") == want
ok = ok and isinstance(a.get("allocated"), int) and isinstance(a.get("resident"), int)
ok = ok and a["allocated"] > 0 and a["resident"] >= a["allocated"]
if want != "jemalloc":
    ok = ok and a["name"] != "jemalloc"
sys.exit(0 if ok else 1)
PY
stop_daemon "$dpid" "$tmp/e.log"

echo "PASS"
