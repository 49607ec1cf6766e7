#!/usr/bin/env bash
# Build the test initramfs for one kernel.
#
#   kmod-tests/mkinitramfs.sh KERNEL_ROOT KERNEL_RELEASE OUT.cpio.gz [CERT_DIR]
#
# KERNEL_ROOT is an unpacked kernel package tree (from fetch-kernels.sh): it
# must contain boot/config-REL and lib/modules/REL.  CERT_DIR, when given,
# holds test certificates made by "mkinitramfs.sh --certs DIR" (run.sh makes
# them once for all kernels); otherwise fresh ones are generated.
#
# Contents: busybox (+ applet links), the kernel's crypto/tls modules
# (decompressed, with a modules.dep made by depmod), build/bin/* and
# build/lib/*.so with their shared libraries, openssl, nginx, curl, the
# kmod-tests/tools/*.c programs (built here, into /usr/bin), the
# kmod-tests/suite/*.sh scripts, certificates in /certs, /kernel.config and
# /init (kmod-tests/init.sh).
set -euo pipefail
. "$(dirname "$0")/lib-common.sh"

# make_certs DIR: CA + server certs (ECDSA P-256 and RSA-2048) for localhost
make_certs() {
	local d=$1
	mkdir -p "$d"
	(
		cd "$d"
		cat >ext.cnf <<-'EOF'
		[ca]
		basicConstraints = critical,CA:TRUE
		keyUsage = critical,keyCertSign,cRLSign
		subjectKeyIdentifier = hash
		[srv]
		basicConstraints = critical,CA:FALSE
		keyUsage = critical,digitalSignature,keyEncipherment
		extendedKeyUsage = serverAuth,clientAuth
		subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
		EOF
		openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout ca.key -out ca.pem -days 3650 -subj "/CN=ktlsx kmod-tests CA" \
			-extensions ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n'; cat ext.cnf) 2>/dev/null
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server.pem -days 3650 -extfile ext.cnf -extensions srv 2>/dev/null
		openssl req -new -newkey rsa:2048 -nodes \
			-keyout server-rsa.key -out server-rsa.csr -subj "/CN=localhost" 2>/dev/null
		openssl x509 -req -in server-rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server-rsa.pem -days 3650 -extfile ext.cnf -extensions srv 2>/dev/null
		rm -f ./*.csr ./*.srl ext.cnf
	)
}

if [ "${1:-}" = --certs ]; then
	[ -n "${2:-}" ] || die "usage: $0 --certs DIR"
	make_certs "$2"
	exit 0
fi

[ $# -ge 3 ] || die "usage: $0 KERNEL_ROOT KERNEL_RELEASE OUT.cpio.gz [CERT_DIR]"
KROOT=$1 KREL=$2 OUT=$3 CERTS=${4:-}
KMODDIR=$KROOT/lib/modules/$KREL
[ -d "$KMODDIR" ] || die "no modules dir $KMODDIR"
BUILD=${KTLSX_BUILD:-$REPO_DIR/build}
BUSYBOX=${KTLSX_BUSYBOX:-$(command -v busybox || echo /bin/busybox)}
! ldd "$BUSYBOX" >/dev/null 2>&1 ||
	log "warning: $BUSYBOX does not look static (install busybox-static)"

mkdir -p "$(dirname "$OUT")"
STAGE=$(mktemp -d "$(dirname "$OUT")/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# --- skeleton (usrmerged like the host) ------------------------------------
mkdir -p "$STAGE"/usr/{bin,sbin,lib,lib64} "$STAGE"/{proc,sys,dev,tmp,run,root,etc,certs,suite,var/log/nginx,var/lib/nginx}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$STAGE/$d"; done
chmod 1777 "$STAGE/tmp"

cp "$BUSYBOX" "$STAGE/usr/bin/busybox"
for a in $("$BUSYBOX" --list-full); do
	[ -e "$STAGE/$a" ] || [ -L "$STAGE/$a" ] || ln -s /usr/bin/busybox "$STAGE/$a"
done

cat >"$STAGE/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$STAGE/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf '127.0.0.1 localhost\n::1 localhost\n' >"$STAGE/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$STAGE/etc/nsswitch.conf"

# --- binaries and their libraries ------------------------------------------
# copy_file SRC [DEST]: copy dereferenced, keeping the path
copy_file() {
	local src=$1 dst=${2:-$1}
	[ -e "$STAGE$dst" ] && return 0
	mkdir -p "$STAGE$(dirname "$dst")"
	cp -L "$src" "$STAGE$dst"
}
# copy_bin PATH [DEST]: binary plus everything ldd says it needs
copy_bin() {
	local bin=$1 dst=${2:-$1} lib
	copy_file "$bin" "$dst"
	while read -r lib; do
		copy_file "$lib"
	done < <(ldd "$bin" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}')
}

# KMOD_EXTRA_BINS: more host binaries (with their libraries) a test needs
# KMOD_PERF=1: the host's perf (a diagnostic: suite 60 profiles each agent's connect storm)
[ "${KMOD_PERF:-0}" = 1 ] && KMOD_EXTRA_BINS="${KMOD_EXTRA_BINS:-} /usr/bin/perf"
for b in ${KMOD_EXTRA_BINS:-}; do
	if [ -x "$b" ]; then copy_bin "$b"; else log "warning: KMOD_EXTRA_BINS: $b not found"; fi
done
for b in /usr/bin/openssl /usr/sbin/nginx /usr/bin/curl; do
	if [ -x "$b" ]; then copy_bin "$b"; else log "warning: $b not installed, peer tests will skip"; fi
done
[ -e /usr/lib/ssl/openssl.cnf ] && copy_file /usr/lib/ssl/openssl.cnf
# libssl/libcrypto may dlopen these (engines/providers); cheap to include
for d in /usr/lib/x86_64-linux-gnu/ossl-modules; do
	[ -d "$d" ] && for f in "$d"/*.so; do [ -e "$f" ] && copy_bin "$f"; done
done

# test tools built from kmod-tests/tools/*.c (static if the host's libc
# allows it, else dynamic with their libraries like the other binaries);
# compiled into the initramfs build dir, then put into /usr/bin
TOOLS_OUT=$(dirname "$OUT")/tools
mkdir -p "$TOOLS_OUT"
for src in "$KMOD_DIR"/tools/*.c; do
	[ -f "$src" ] || continue
	t=$(basename "$src" .c)
	tmp=$TOOLS_OUT/.$t.$$
	cflags=(-std=c17 -O2 -Wall -Wextra -Werror)
	if "${CC:-cc}" "${cflags[@]}" -static -o "$tmp" "$src" 2>"$tmp.err" ||
		"${CC:-cc}" "${cflags[@]}" -o "$tmp" "$src" 2>>"$tmp.err"; then
		mv "$tmp" "$TOOLS_OUT/$t"    # atomic: parallel builds for other kernels
		copy_bin "$TOOLS_OUT/$t" "/usr/bin/$t"
	else
		log "warning: $t did not build ($(tail -1 "$tmp.err")); its tests will skip"
		rm -f "$tmp"
	fi
	rm -f "$tmp.err"
done

# project binaries and shared libraries
mkdir -p "$STAGE/opt/ktlsx/bin" "$STAGE/opt/ktlsx/lib"
if [ -d "$BUILD/lib" ]; then
	for f in "$BUILD"/lib/*.so*; do [ -f "$f" ] && copy_bin "$f" "/opt/ktlsx/lib/$(basename "$f")"; done
fi
nbin=0
if [ -d "$BUILD/bin" ]; then
	for f in "$BUILD"/bin/*; do
		[ -f "$f" ] && [ -x "$f" ] || continue
		copy_bin "$f" "/opt/ktlsx/bin/$(basename "$f")"
		nbin=$((nbin + 1))
	done
fi
log "$KREL: $nbin project binaries from $BUILD/bin"
# test drivers of suite/50-apps.sh (echo servers handing sockets to ktlsxd, a plaintext
# event-loop server for the preload shim) and Debian's dynamic busybox (unpacked by
# tools/install-deps.sh; the static one is out of LD_PRELOAD's reach): its httpd runs under the shim
mkdir -p "$STAGE/opt/ktlsx/tests"
for t in door_load echo_load preload_epoll_http; do
	[ -x "$BUILD/tests/$t" ] && copy_bin "$BUILD/tests/$t" "/opt/ktlsx/tests/$t"
done
BB_DYN=${KTLSX_BUSYBOX_DYN:-$REPO_DIR/build/deps/busybox-dynamic/bin/busybox}
if [ -x "$BB_DYN" ]; then copy_bin "$BB_DYN" /opt/ktlsx/busybox-dynamic
else log "warning: no dynamic busybox ($BB_DYN): 50-apps uses preload_epoll_http under the shim"; fi
# ---- lighttpd under the preload shim (issue 10) ----
# Debian's lighttpd, a plaintext server that sends files with sendfile, for suite/55-preload.sh:
# the binary and its libraries only (pcre2, nettle, xxhash): the suite's minimal config loads no
# module (static files are served by the built-in mod_staticfile), so /usr/lib/lighttpd stays out
if [ -x /usr/sbin/lighttpd ]; then copy_bin /usr/sbin/lighttpd
else log "warning: no /usr/sbin/lighttpd (make deps installs it): 55-preload skips its lighttpd case"; fi
# ---- end of lighttpd ----

# ---- tlshd side by side (issue 9) ----
# Debian trixie's tlshd (ktls-utils) with its trixie libraries and loader, for
# suite/60-kernel-door.sh's measurement against ktlsxd's kernel door; only
# when kmod-tests/fetch-tlshd.sh can have it (KTLSX_NO_TLSHD=1: never).  In the
# image: /opt/tlshd/{sbin/tlshd,lib/*} and /opt/tlshd/tlshd, which runs it with
# the trixie loader and only those libraries.
TLSHD_ROOT=
[ "${KTLSX_NO_TLSHD:-0}" = 1 ] || TLSHD_ROOT=$("$KMOD_DIR/fetch-tlshd.sh" 2>>"$(dirname "$OUT")/fetch-tlshd.log" | tail -1 || true)
if [ -n "$TLSHD_ROOT" ] && [ -f "$TLSHD_ROOT/ldd.txt" ] && [ -x "$TLSHD_ROOT/root/usr/sbin/tlshd" ]; then
	mkdir -p "$STAGE/opt/tlshd/sbin" "$STAGE/opt/tlshd/lib"
	cp "$TLSHD_ROOT/root/usr/sbin/tlshd" "$STAGE/opt/tlshd/sbin/tlshd"
	# the libraries the trixie loader resolved for it (fetch-tlshd.sh's --list), and the loader
	awk '$2 == "=>" && $3 ~ /^\// { print $3 }' "$TLSHD_ROOT/ldd.txt" | while read -r l; do
		cp -L "$l" "$STAGE/opt/tlshd/lib/$(basename "$l")"
	done
	cat >"$STAGE/opt/tlshd/tlshd" <<'TLSHD'
#!/bin/sh
exec /opt/tlshd/lib/ld-linux-x86-64.so.2 --library-path /opt/tlshd/lib /opt/tlshd/sbin/tlshd "$@"
TLSHD
	chmod 755 "$STAGE/opt/tlshd/tlshd"
	log "$KREL: tlshd from $TLSHD_ROOT ($(ls "$STAGE/opt/tlshd/lib" | wc -l) libraries)"
else
	log "$KREL: no tlshd (see $(dirname "$OUT")/fetch-tlshd.log): suite 60 measures ktlsxd alone"
fi
# ---- end of tlshd side by side ----

# --- kernel modules ---------------------------------------------------------
# Whole crypto / x86 crypto / lib / net/tls / net/handshake subtrees, plus the
# dependency closure of each module (per the host modprobe on a depmod'ed
# tree), decompressed so busybox modprobe can load them.
if [ ! -f "$KMODDIR/modules.dep" ]; then
	depmod -b "$KROOT" "$KREL"
fi
MODS_OUT=$STAGE/lib/modules/$KREL
mkdir -p "$MODS_OUT"
mapfile -t seed < <(cd "$KMODDIR" && find kernel/crypto kernel/arch/x86/crypto kernel/lib \
	kernel/net/tls kernel/net/handshake -name '*.ko*' 2>/dev/null)
# NVMe/TCP host and target and configfs: the kernel door's suite (60-kernel-door)
mapfile -t -O "${#seed[@]}" seed < <(cd "$KMODDIR" && find kernel/drivers/nvme kernel/fs/configfs \
	-name '*.ko*' 2>/dev/null)
declare -A want=()
for m in "${seed[@]}"; do want[$m]=1; done
for m in "${seed[@]}"; do
	name=$(basename "$m"); name=${name%%.ko*}
	while read -r _ path _; do
		[ -n "$path" ] && want[${path#"$KMODDIR"/}]=1
	done < <(modprobe -d "$KROOT" -S "$KREL" --show-depends "$name" 2>/dev/null | grep '^insmod ')
done
for m in "${!want[@]}"; do
	src=$KMODDIR/$m
	[ -f "$src" ] || continue
	dst=$MODS_OUT/${m%.xz}; dst=${dst%.zst}; dst=${dst%.gz}
	mkdir -p "$(dirname "$dst")"
	case $src in
	*.xz) xz -dc "$src" >"$dst" ;;
	*.zst) zstd -qdc "$src" >"$dst" ;;
	*.gz) gzip -dc "$src" >"$dst" ;;
	*) cp "$src" "$dst" ;;
	esac
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
	[ -f "$KMODDIR/$f" ] && cp "$KMODDIR/$f" "$MODS_OUT/"
done
depmod -b "$STAGE" "$KREL"
log "$KREL: ${#want[@]} modules"

[ -f "$KROOT/boot/config-$KREL" ] && cp -L "$KROOT/boot/config-$KREL" "$STAGE/kernel.config"
echo "$KREL" >"$STAGE/kernel.release"

# --- certificates, suite, init --------------------------------------------
if [ -n "$CERTS" ]; then
	cp "$CERTS"/* "$STAGE/certs/"
else
	make_certs "$STAGE/certs"
fi
# ---- vm-bench (issue 11) ----
# KMOD_BENCH=1 (make vm-bench): /suite holds the benchmark scripts of
# kmod-tests/bench/ (with suite/lib.sh) instead of the tests, and the raw
# kernel-TLS sendfile tool (built by make vm-bench into $BUILD/bench/) and
# stunnel4 go into /usr/bin.
if [ "${KMOD_BENCH:-0}" = 1 ]; then
	cp "$KMOD_DIR"/suite/lib.sh "$KMOD_DIR"/bench/*.sh "$STAGE/suite/"
	# issue 10's rows: stunnel4 in front of busybox httpd (tools/install-deps.sh installs it)
	if [ -x /usr/bin/stunnel4 ]; then copy_bin /usr/bin/stunnel4
	else log "warning: /usr/bin/stunnel4 not installed (make deps): the stunnel row is skipped"; fi
	if [ -x "$BUILD/bench/ktlsx-ktls-ceiling" ]; then
		copy_bin "$BUILD/bench/ktlsx-ktls-ceiling" /usr/bin/ktlsx-ktls-ceiling
	else
		log "warning: no $BUILD/bench/ktlsx-ktls-ceiling (make vm-bench builds it): the ceiling row is skipped"
	fi
else
	cp "$KMOD_DIR"/suite/*.sh "$STAGE/suite/"
fi
# ---- end of vm-bench ----
cp "$KMOD_DIR/init.sh" "$STAGE/init"
chmod +x "$STAGE/init" "$STAGE"/suite/*.sh

(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "$KREL: initramfs $OUT ($(du -h "$OUT" | cut -f1))"
