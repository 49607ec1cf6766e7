#!/usr/bin/env bash
# Fetch and unpack Debian trixie's tlshd (ktls-utils) with its trixie
# libraries and loader, for the side-by-side measurement of ktlsxd's kernel
# door (kmod-tests/suite/60-kernel-door.sh, issue 9).
#
#   kmod-tests/fetch-tlshd.sh
#
# Prints one line on stdout: the unpacked tree (it holds usr/sbin/tlshd,
# usr/lib/x86_64-linux-gnu/*.so* and the trixie loader), or nothing when the
# package cannot be had (the suite then says so and measures ktlsxd alone).
# Progress goes to stderr.  Cached in $KTLSX_CACHE/tlshd/<version>.
#
# Apt access as kmod-tests/fetch-kernels.sh does it (kmod-tests/lib-apt.sh):
# the trixie sources derived from the machine's own apt sources, in the same
# $KTLSX_CACHE/apt/trixie directory; `apt-get download` + `dpkg -x`, nothing
# installed.  The packages: ktls-utils and the closure of its dependencies
# (libraries only: libc6 brings the loader), as `apt-cache depends --recurse`
# gives it for trixie.
set -euo pipefail
. "$(dirname "$0")/lib-common.sh"

CACHE=$(kmod_cache_dir)
LIST_MAX_AGE=${KTLSX_KMOD_LIST_MAX_AGE:-86400}
[ "${KTLSX_KMOD_REFRESH:-0}" = 1 ] && LIST_MAX_AGE=0
PKG=ktls-utils

exec 9>"$CACHE/.fetch.lock"
flock -w 900 9 || die "could not lock $CACHE/.fetch.lock"
. "$(dirname "$0")/lib-apt.sh"

dir=$CACHE/apt/trixie
write_sources "$dir" "trixie trixie-updates" trixie-security || { log "tlshd: no apt sources to derive from"; exit 0; }
apt_opts_for "$dir"
apt_update "$dir" || log "tlshd: apt update failed; trying the lists there are"

ver=$(apt-cache "${APT_OPTS[@]}" show "$PKG" 2>/dev/null | awk '/^Version:/ { print $2; exit }' || true)
if [ -z "$ver" ]; then
	# nothing reachable: an earlier download, if any
	old=$(ls -d "$CACHE"/tlshd/*/.complete 2>/dev/null | sort -V | tail -1 || true)
	[ -n "$old" ] && { log "tlshd: using cached $(basename "$(dirname "$old")")"; dirname "$old"; exit 0; }
	log "tlshd: no $PKG in trixie's lists"
	exit 0
fi
out=$CACHE/tlshd/$ver
if [ ! -f "$out/.complete" ]; then
	rm -rf "$out"
	mkdir -p "$out/debs" "$out/root"
	# the closure of Depends (and Pre-Depends) of ktls-utils; a virtual package
	# (<name>) is skipped, a package that is not a library or libc is not needed
	mapfile -t pkgs < <(apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests \
		--no-conflicts --no-breaks --no-replaces --no-enhances "$PKG" 2>/dev/null |
		grep -v '^ ' | grep -v '^<' | sort -u)
	[ ${#pkgs[@]} -gt 0 ] || { log "tlshd: no dependency list for $PKG"; exit 0; }
	log "tlshd: downloading $PKG $ver and ${#pkgs[@]} packages: ${pkgs[*]}"
	if ! (cd "$out/debs" && timeout 600 apt-get "${APT_OPTS[@]}" -q download "${pkgs[@]}" >"$out/download.log" 2>&1); then
		log "tlshd: download failed: $(tail -2 "$out/download.log" | tr '\n' ' ')"
		rm -rf "$out"
		exit 0
	fi
	for d in "$out"/debs/*.deb; do dpkg -x "$d" "$out/root"; done
	ld=$(ls "$out"/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$out"/root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
		2>/dev/null | head -1 || true)
	if [ ! -x "$out/root/usr/sbin/tlshd" ] || [ -z "$ld" ]; then
		log "tlshd: no usr/sbin/tlshd or no trixie loader in the packages"
		rm -rf "$out"
		exit 0
	fi
	# it must run with the trixie loader and libraries alone (here, on this machine's kernel)
	if ! "$ld" --library-path "$out/root/usr/lib/x86_64-linux-gnu" --list "$out/root/usr/sbin/tlshd" >"$out/ldd.txt" 2>&1 ||
		grep -q 'not found' "$out/ldd.txt"; then
		log "tlshd: libraries missing: $(grep 'not found' "$out/ldd.txt" | tr '\n' ' ')"
		rm -rf "$out"
		exit 0
	fi
	rm -rf "$out/debs"
	touch "$out/.complete"
	# an older version unpacked before is not needed any more
	for old in "$CACHE"/tlshd/*/; do
		[ "${old%/}" = "$out" ] || { log "tlshd: pruning $(basename "$old")"; rm -rf "$old"; }
	done
fi
echo "$out"
