# scripts/lib/deps.sh — install what ntfsd needs from Debian 12 packages.
#
# Sourced by scripts/test and scripts/demo.  Only packages that are missing
# are installed, and `apt-get update` runs only when something is missing,
# so a machine that already has everything does no network work.

NTFSD_BUILD_PACKAGES=(
  gcc meson ninja-build pkg-config
  libcmocka-dev
  libprotobuf-c-dev protobuf-c-compiler
  libuv1-dev libjemalloc-dev liburing-dev libsystemd-dev
)
NTFSD_TEST_PACKAGES=(
  ntfs-3g attr fuse3 nbdkit libnbd-bin
  clang libclang-rt-14-dev
  systemd
  mount                 # losetup: test_owner serves a loop device
  sleuthkit             # icat: a second, independent NTFS reader
)

ntfsd_missing_packages() {
  local p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s\n' "$p"
    fi
  done
}

ntfsd_install_deps() {
  local missing
  mapfile -t missing < <(ntfsd_missing_packages "${NTFSD_BUILD_PACKAGES[@]}" "${NTFSD_TEST_PACKAGES[@]}")
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages and not root: run as root or install them: ${missing[*]}" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}
