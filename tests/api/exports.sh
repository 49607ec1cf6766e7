#!/usr/bin/env bash
# tests/api/exports.sh [BUILD] — the packaging of libktlsx 1.0, as a user of
# the installed library sees it.  Prints one line per check:
#   PASS name            or            FAIL name: reason
# and exits 1 if any check failed.  BUILD is the build tree (default: $BUILD,
# else build/); the library is built there if it is missing.
#
# Checks:
#   exports        nm -D --defined-only libktlsx.so lists only ktlsx_* symbols.
#                  Ignored, and why: the version node KTLSX_1.0 (an absolute "A"
#                  symbol the linker adds for the version script's node: it names
#                  the ABI version, it is not code or data); _init/_fini if a
#                  toolchain exports them (ELF start-up hooks, not API).
#   header-symbols every ktlsx_* function declared in ktlsx.h is exported.
#   internal-hidden a program using an internal kx_* symbol does not link
#                  against the shared library.
#   soname         the SONAME is libktlsx.so.1 and build/lib has the symlinks.
#   install        make install DESTDIR=tmp PREFIX=/usr installs the expected files.
#   pkg-config     a small C program built with `pkg-config --cflags --libs ktlsx`
#                  against that DESTDIR links to libktlsx.so.1 and runs (creates a
#                  configuration and a connection, frees them).
#   uninstall      make uninstall removes every installed file again.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
BUILD=${1:-${BUILD:-build}}
LIB=$BUILD/lib
failed=0

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }

tmp=$(mktemp -d /tmp/ktlsx-api.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

if ! make -s -C "$ROOT" O="$BUILD" "$BUILD/lib/libktlsx.so" "$BUILD/lib/libktlsx.a" >"$tmp/build.log" 2>&1; then
  fail build "make $BUILD/lib/libktlsx.so failed: $(tail -n 3 "$tmp/build.log" | tr '\n' ' ')"
  exit 1
fi

# ---- exports
if ! nm -D --defined-only "$LIB/libktlsx.so" >"$tmp/nm.txt" 2>"$tmp/nm.err"; then
  fail exports "nm -D failed: $(head -n1 "$tmp/nm.err")"
else
  # "ADDR TYPE NAME[@@VERSION]"
  stray=$(awk '{ n = $NF; sub(/@.*/, "", n);
                 if ($2 == "A" && n == "KTLSX_1.0") next;   # the version node
                 if (n == "_init" || n == "_fini") next;    # ELF start-up hooks
                 if (n !~ /^ktlsx_/) print n }' "$tmp/nm.txt" | sort -u | tr '\n' ' ')
  count=$(grep -c ' ktlsx_' "$tmp/nm.txt")
  if [[ -n $stray ]]; then fail exports "symbols outside ktlsx_*: $stray"
  elif (( count == 0 )); then fail exports "no ktlsx_* symbol exported at all"
  else pass exports; fi
  unversioned=$(grep ' ktlsx_' "$tmp/nm.txt" | grep -v '@@KTLSX_1.0' | awk '{print $NF}' | tr '\n' ' ')
  if [[ -n $unversioned ]]; then fail symbol-version "not in node KTLSX_1.0: $unversioned"
  else pass symbol-version; fi
fi

# ---- header-symbols: a public declaration missing from the .so is a broken promise.
# Preprocessed, so names that only appear in comments do not count.
declared=$(for h in include/ktlsx/*.h; do cc -E -P -Iinclude "$h"; done 2>/dev/null |
           grep -ohE '\bktlsx_[a-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u)
[[ -n $declared ]] || fail header-symbols "no ktlsx_* declaration found in include/ktlsx/*.h"
missing=
for f in $declared; do
  grep -q " $f@@" "$tmp/nm.txt" || missing+="$f "
done
if [[ -n $missing ]]; then fail header-symbols "declared but not exported: $missing"
else pass header-symbols; fi

# ---- soname
soname=$(readelf -d "$LIB/libktlsx.so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [[ $soname != libktlsx.so.1 ]]; then fail soname "SONAME is '${soname:-none}', wanted libktlsx.so.1"
elif [[ $(readlink "$LIB/libktlsx.so") != libktlsx.so.1 || $(readlink "$LIB/libktlsx.so.1") != libktlsx.so.1.0.0 ]]; then
  fail soname "symlinks: libktlsx.so -> $(readlink "$LIB/libktlsx.so"), libktlsx.so.1 -> $(readlink "$LIB/libktlsx.so.1")"
elif [[ ! -f $LIB/libktlsx.so.1.0.0 ]]; then fail soname "$LIB/libktlsx.so.1.0.0 missing"
else pass soname; fi

# ---- internal-hidden: kx_* must not be reachable through the shared library.
cat >"$tmp/internal.c" <<'C'
#include <stddef.h>
const char *kx_alert_name(unsigned char alert);
int main(void) { return kx_alert_name(0) == NULL; }
C
if cc -o "$tmp/internal" "$tmp/internal.c" -L"$LIB" -lktlsx >"$tmp/internal.log" 2>&1; then
  fail internal-hidden "a program calling kx_alert_name linked against $LIB/libktlsx.so"
elif grep -q 'undefined reference to .kx_alert_name' "$tmp/internal.log"; then pass internal-hidden
else fail internal-hidden "link failed for another reason: $(head -n2 "$tmp/internal.log" | tr '\n' ' ')"; fi

# ---- install
dest=$tmp/dest
if ! make -s -C "$ROOT" O="$BUILD" install DESTDIR="$dest" PREFIX=/usr >"$tmp/install.log" 2>&1; then
  fail install "make install failed: $(tail -n 3 "$tmp/install.log" | tr '\n' ' ')"
else
  want=(usr/include/ktlsx/ktlsx.h usr/lib/libktlsx.a usr/lib/libktlsx.so.1.0.0 usr/lib/libktlsx.so.1
        usr/lib/libktlsx.so usr/lib/pkgconfig/ktlsx.pc usr/bin/ktlsx
        usr/share/man/man1/ktlsx.1 usr/share/man/man3/libktlsx.3
        usr/sbin/ktlsxd usr/sbin/ktlsxctl usr/share/man/man8/ktlsxd.8 usr/share/man/man8/ktlsxctl.8
        usr/share/man/man5/ktlsxd.conf.5 usr/lib/systemd/system/ktlsxd.service usr/lib/systemd/system/ktlsxd.socket
        usr/lib/modules-load.d/ktlsx.conf usr/share/doc/ktlsx/ktlsxd.conf.example)
  for h in include/ktlsx/*.h; do want+=("usr/include/ktlsx/$(basename "$h")"); done
  absent=
  for f in "${want[@]}"; do [[ -e $dest/$f ]] || absent+="$f "; done
  links_ok=1
  [[ $(readlink "$dest/usr/lib/libktlsx.so") == libktlsx.so.1 && $(readlink "$dest/usr/lib/libktlsx.so.1") == libktlsx.so.1.0.0 ]] || links_ok=0
  if [[ -n $absent ]]; then fail install "not installed: $absent"
  elif (( ! links_ok )); then fail install "library symlinks are wrong in $dest/usr/lib"
  elif ! grep -qx 'libdir=/usr/lib' "$dest/usr/lib/pkgconfig/ktlsx.pc"; then
    fail install "ktlsx.pc does not name libdir=/usr/lib (PREFIX not applied)"
  elif ! man -l "$dest/usr/share/man/man3/libktlsx.3" >/dev/null 2>&1 && command -v man >/dev/null; then
    fail install "libktlsx.3 does not render with man -l"
  elif ! grep -qx 'ExecStart=/usr/sbin/ktlsxd -c /etc/ktlsx/ktlsxd.conf' "$dest/usr/lib/systemd/system/ktlsxd.service"; then
    fail install "ktlsxd.service does not start /usr/sbin/ktlsxd (SBINDIR not applied)"
  else pass install; fi
fi

# ---- pkg-config: build a user program the way a user would.
if [[ ! -f $dest/usr/lib/pkgconfig/ktlsx.pc ]]; then
  fail pkg-config "no installed ktlsx.pc"
else
  cat >"$tmp/user.c" <<'C'
#include <ktlsx/ktlsx.h>
#include <stdio.h>
int main(void)
{
    ktlsx_config *cfg = ktlsx_config_new(KTLSX_CLIENT);
    if (!cfg) { fputs("ktlsx_config_new failed\n", stderr); return 1; }
    if (ktlsx_config_set_alpn(cfg, "h2,http/1.1") != 0) { fprintf(stderr, "%s\n", ktlsx_config_error(cfg)); return 1; }
    ktlsx_conn *c = ktlsx_conn_new(cfg, "localhost");
    if (!c) { fputs("ktlsx_conn_new failed\n", stderr); return 1; }
    /* The engine is usable: a ClientHello is produced. */
    const uint8_t *out;
    int st = ktlsx_handshake(c);
    size_t n = ktlsx_pending_output(c, &out);
    ktlsx_conn_free(c);
    ktlsx_config_free(cfg);
    if (st != KTLSX_WANT_READ || n < 100) { fprintf(stderr, "handshake %d, %zu bytes\n", st, n); return 1; }
    puts("ok");
    return 0;
}
C
  export PKG_CONFIG_PATH=$dest/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
  if ! flags=$(pkg-config --cflags --libs ktlsx 2>"$tmp/pc.err"); then
    fail pkg-config "pkg-config --cflags --libs ktlsx: $(head -n1 "$tmp/pc.err")"
  elif ! cc -std=c17 -Wall -Werror -o "$tmp/user" "$tmp/user.c" $flags >"$tmp/cc.log" 2>&1; then
    fail pkg-config "cc ... $flags: $(head -n3 "$tmp/cc.log" | tr '\n' ' ')"
  elif ! readelf -d "$tmp/user" | grep -q 'Shared library: \[libktlsx.so.1\]'; then
    fail pkg-config "the program does not link libktlsx.so.1 dynamically"
  elif ! out=$(LD_LIBRARY_PATH=$dest/usr/lib "$tmp/user" 2>&1) || [[ $out != ok ]]; then
    fail pkg-config "the program failed: $out"
  elif ! LD_LIBRARY_PATH=$dest/usr/lib ldd "$tmp/user" | grep -q "$dest/usr/lib/libktlsx.so.1"; then
    fail pkg-config "the program did not load the installed library"
  else pass pkg-config; fi
  unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
fi

# ---- uninstall
if [[ -d $dest ]]; then
  if ! make -s -C "$ROOT" O="$BUILD" uninstall DESTDIR="$dest" PREFIX=/usr >"$tmp/uninstall.log" 2>&1; then
    fail uninstall "make uninstall failed: $(tail -n 3 "$tmp/uninstall.log" | tr '\n' ' ')"
  else
    left=$(find "$dest" \( -type f -o -type l \) -printf '%P ')
    if [[ -n $left ]]; then fail uninstall "left behind: $left"; else pass uninstall; fi
  fi
fi

exit $failed
