#!/usr/bin/env bash
# Fetch and unpack the Debian kernels the kTLS VM tests boot.
#
#   kmod-tests/fetch-kernels.sh [bookworm|trixie|backports ...]
#
# Default: all three.  For each one prints one line on stdout:
#   <suite> <kernel-release> <path-to-vmlinuz>        (available)
#   <suite> - <reason...>                              (unavailable -> skipped)
# Progress goes to stderr.  Downloads and unpacked trees are cached in
# $KTLSX_CACHE (default /var/cache/ktlsx-kmod, fallback build/kmod-cache).
#
# Environment: KTLSX_KMOD_REFRESH=1 forces an apt update (lists are otherwise
# reused for a day); KTLSX_KMOD_SOURCES=FILE derives from FILE instead of the
# machine's debian.sources (testing).
#
# Apt access: the package sources are DERIVED at run time from the machine's
# own /etc/apt/sources.list.d/debian.sources (or /etc/apt/sources.list): the
# same archive URIs and keyrings with the Suites swapped.  No archive host name
# is written in this repository.
set -euo pipefail
. "$(dirname "$0")/lib-common.sh"

CACHE=$(kmod_cache_dir)
LIST_MAX_AGE=${KTLSX_KMOD_LIST_MAX_AGE:-86400}   # seconds before apt lists are refreshed
[ "${KTLSX_KMOD_REFRESH:-0}" = 1 ] && LIST_MAX_AGE=0

exec 9>"$CACHE/.fetch.lock"
flock -w 900 9 || die "could not lock $CACHE/.fetch.lock"

. "$(dirname "$0")/lib-apt.sh"

# --- package resolution ----------------------------------------------------

# newest package name (by version sort of the name) matching an ERE
newest_matching() {
	apt-cache "${APT_OPTS[@]}" search --names-only "$1" 2>/dev/null |
		awk '{print $1}' | grep -E "$1" | sed -E 's/-unsigned$//' | sort -uV | tail -1 || true
}

# pkg_exists NAME
pkg_exists() {
	apt-cache "${APT_OPTS[@]}" show "$1" >/dev/null 2>&1
}

# resolve the versioned image package behind a meta package
resolve_meta() {
	apt-cache "${APT_OPTS[@]}" show "$1" 2>/dev/null |
		awk '/^Depends:/ { sub(/^Depends: */, ""); n = split($0, a, /, */);
			for (i = 1; i <= n; i++) { split(a[i], b, / /);
				if (b[1] ~ /^linux-image-[0-9].*-cloud-amd64(-unsigned)?$/) { print b[1]; exit } } }' || true
}

# deps of PKG whose name contains ABI (linux-binary-*, linux-modules-* split
# packaging used by newer Debian kernels)
abi_deps() {
	local pkg=$1 abi=$2
	apt-cache "${APT_OPTS[@]}" show "$pkg" 2>/dev/null |
		awk -v abi="$abi" '/^Depends:/ { sub(/^Depends: */, ""); gsub(/\|/, ","); n = split($0, a, /, */);
			for (i = 1; i <= n; i++) { split(a[i], b, / /);
				if (index(b[1], abi) && b[1] ~ /^linux-(binary|modules|image|base)-/) print b[1] } ; exit }' || true
}

# fetch_unpack ABI PKG -> unpacked tree in $CACHE/kernels/ABI/root
fetch_unpack() {
	local abi=$1 pkg=$2 kdir=$CACHE/kernels/$1 debs p queue seen=" "
	[ -f "$kdir/.complete" ] && return 0
	rm -rf "$kdir"
	mkdir -p "$kdir/debs" "$kdir/root"
	queue=("$pkg")
	while [ ${#queue[@]} -gt 0 ]; do
		p=${queue[0]}; queue=("${queue[@]:1}")
		[[ $seen == *" $p "* ]] && continue
		seen+="$p "
		log "downloading $p"
		(cd "$kdir/debs" && timeout 600 apt-get "${APT_OPTS[@]}" -q download "$p" >/dev/null) ||
			{ log "download of $p failed"; return 1; }
		for d in $(abi_deps "$p" "$abi"); do queue+=("$d"); done
	done
	for debs in "$kdir"/debs/*.deb; do
		dpkg -x "$debs" "$kdir/root"
	done
	if [ ! -d "$kdir/root/lib/modules/$abi" ] && [ -d "$kdir/root/usr/lib/modules/$abi" ]; then
		ln -sfn usr/lib "$kdir/root/lib"
	fi
	# newer packaging keeps vmlinuz/config under lib/modules/ABI: normalise to boot/
	mkdir -p "$kdir/root/boot"
	for f in vmlinuz config System.map; do
		[ -e "$kdir/root/boot/$f-$abi" ] || [ ! -e "$kdir/root/lib/modules/$abi/$f" ] ||
			ln -s "../lib/modules/$abi/$f" "$kdir/root/boot/$f-$abi"
	done
	[ -f "$kdir/root/boot/vmlinuz-$abi" ] || { log "no vmlinuz-$abi in packages"; return 1; }
	[ -d "$kdir/root/lib/modules/$abi" ] || { log "no modules for $abi"; return 1; }
	depmod -b "$kdir/root" "$abi" || { log "depmod failed for $abi"; return 1; }
	rm -rf "$kdir/debs"
	touch "$kdir/.complete"
}

# --- per-suite logic -------------------------------------------------------

host_codename() {
	. /etc/os-release 2>/dev/null
	printf '%s\n' "${VERSION_CODENAME:-bookworm}"
}

do_suite() {
	local suite=$1 dir=$CACHE/apt/$1 main sec pattern pkg abi cur=$CACHE/kernels/$1.current
	case $suite in
	bookworm) main="bookworm bookworm-updates" sec=bookworm-security ;;
	trixie) main="trixie trixie-updates" sec=trixie-security ;;
	backports) main="trixie-backports" sec= ;;
	*) echo "$suite - unknown suite"; return ;;
	esac
	if ! write_sources "$dir" "$main" "$sec"; then
		echo "$suite - no apt sources on this machine to derive from"
		return
	fi
	apt_opts_for "$dir"
	pkg=
	if apt_update "$dir"; then
		case $suite in
		bookworm) pkg=$(newest_matching '^linux-image-6\.1\.0-[0-9]+-cloud-amd64(-unsigned)?$') ;;
		trixie) pkg=$(newest_matching '^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64(-unsigned)?$') ;;
		backports)
			pkg=$(resolve_meta linux-image-cloud-amd64)
			[ -n "$pkg" ] || pkg=$(newest_matching '^linux-image-[0-9][0-9.]*\+deb[0-9]+-cloud-amd64(-unsigned)?$')
			;;
		esac
	fi
	if [ -n "$pkg" ]; then
		abi=${pkg#linux-image-}; abi=${abi%-unsigned}
		pkg_exists "$pkg" || pkg=$pkg-unsigned
		if fetch_unpack "$abi" "$pkg"; then
			echo "$abi" >"$cur"
		elif [ "$LIST_MAX_AGE" -gt 0 ] && KTLSX_KMOD_REFRESH=1 LIST_MAX_AGE=0 apt_update "$dir" && fetch_unpack "$abi" "$pkg"; then
			echo "$abi" >"$cur"
		else
			log "$suite: could not fetch $pkg"
		fi
	else
		log "$suite: no kernel package found (suite unreachable?)"
	fi
	if [ -f "$cur" ] && abi=$(cat "$cur") && [ -f "$CACHE/kernels/$abi/.complete" ]; then
		if [ "$suite" = backports ]; then
			local v=${abi%%+*}
			if [ "$(printf '%s\n%s\n' 6.14 "$v" | sort -V | head -1)" != 6.14 ]; then
				log "warning: backports kernel $abi is older than 6.14 (no TLS 1.3 rekey)"
			fi
		fi
		[ -n "$pkg" ] || log "$suite: using cached kernel $abi"
		echo "$suite $abi $CACHE/kernels/$abi/root/boot/vmlinuz-$abi"
	else
		echo "$suite - suite unreachable and nothing cached"
	fi
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie backports)
[ "$(host_codename)" = bookworm ] || log "note: host is $(host_codename), deriving sources anyway"
for s in "${suites[@]}"; do
	do_suite "$s"
done

# prune unpacked kernels no suite points at any more
for k in "$CACHE"/kernels/*/; do
	[ -d "$k" ] || continue
	abi=$(basename "$k")
	grep -qxF "$abi" "$CACHE"/kernels/*.current 2>/dev/null && continue
	log "pruning old kernel $abi from cache"
	rm -rf "$k"
done
