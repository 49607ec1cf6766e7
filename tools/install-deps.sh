#!/usr/bin/env bash
# Install every build and test dependency with apt-get; quiet and fast when
# everything is already there (dpkg-query, no apt-get update).
set -euo pipefail
pkgs=(
  build-essential pkg-config
  libssl-dev liburing-dev libnl-genl-3-dev libcmocka-dev libinih-dev
  clang libclang-rt-14-dev clang-tidy cppcheck
  openssl gnutls-bin curl nginx-light iproute2 procps python3 gnuplot-nox
  qemu-system-x86 busybox-static cpio xz-utils kmod zstd
)
missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing: ${missing[*]}"
SUDO=; [[ $(id -u) -ne 0 ]] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx-light starts a service on install; the tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
$SUDO pkill -x nginx 2>/dev/null || true
