#!/usr/bin/env bash
# Install every build and test dependency with apt-get; quiet and fast when
# everything is already there (dpkg-query, no apt-get update).
set -euo pipefail
pkgs=(
  build-essential pkg-config
  libssl-dev liburing-dev libnl-genl-3-dev libcmocka-dev libinih-dev libseccomp-dev
  clang libclang-rt-14-dev clang-tidy cppcheck
  openssl gnutls-bin curl nginx-light lighttpd iproute2 procps python3 gnuplot-nox
  libmemcached-dev memcached
  qemu-system-x86 busybox-static cpio xz-utils kmod zstd
  stunnel4  # make vm-bench (issue 10's rows): a TLS front for busybox httpd
)
missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
# ---- preload shim (issue 10): a dynamically linked busybox for tests/preload/preload.sh ----
# Debian's `busybox` (dynamic) conflicts with `busybox-static` (which the VM initramfs needs), so it
# is unpacked, not installed: apt-get download + dpkg -x into build/deps/busybox-dynamic.  A static
# binary is out of LD_PRELOAD's reach; the test shows both.  Failure here only skips that case.
bb_dir=$(cd "$(dirname "$0")/.." && pwd)/build/deps/busybox-dynamic
if [[ ! -x $bb_dir/bin/busybox ]]; then
  bb_tmp=$(mktemp -d)
  if (cd "$bb_tmp" && timeout 300 apt-get -q download busybox >/dev/null 2>&1) && mkdir -p "$bb_dir" &&
     dpkg -x "$bb_tmp"/busybox_*.deb "$bb_dir"; then
    echo "unpacked Debian's dynamic busybox into ${bb_dir}"
  else
    echo "could not fetch Debian's dynamic busybox (tests/preload skips its busybox case)" >&2
  fi
  rm -rf "$bb_tmp"
fi
# ---- end of preload shim ----
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing: ${missing[*]}"
SUDO=; [[ $(id -u) -ne 0 ]] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx-light and lighttpd start a service on install; the tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then
  for s in nginx lighttpd; do $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true; done
fi
$SUDO pkill -x nginx 2>/dev/null || true
# stunnel4 may start a service on install too (none is configured; the bench runs its own)
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now stunnel4 >/dev/null 2>&1 || true; fi
