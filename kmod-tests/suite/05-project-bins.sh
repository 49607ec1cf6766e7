#!/bin/sh
# Every project binary copied from build/bin loads in the VM (all its shared
# libraries were packed into the initramfs).
# kmod-timeout: 30
. "$KMOD_LIB"

n=0
for b in "$KTLSX_BIN_DIR"/*; do
	[ -f "$b" ] && [ -x "$b" ] || continue
	n=$((n + 1))
	name=bin-$(basename "$b")
	out=$(/lib64/ld-linux-x86-64.so.2 --list "$b" 2>&1)
	echo "$out"
	if echo "$out" | grep -q 'not found'; then
		fail "$name" "missing libraries: $(echo "$out" | grep 'not found' | awk '{print $1}' | tr '\n' ' ')"
	elif [ -z "$out" ]; then
		fail "$name" "ld.so --list printed nothing"
	else
		pass "$name"
	fi
done
[ "$n" -gt 0 ] || skip project-binaries "no binaries in build/bin when the initramfs was made"
exit 0
