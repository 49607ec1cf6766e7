#!/bin/sh
# /init of the kmod-tests initramfs (busybox sh).  Runs every /suite/[0-9]*.sh
# and reports on the serial console:
#   KMOD-RESULT <pass|fail|skip> <kernel> <test> [reason]
#   KMOD-INFO <kernel> <text>
#   KMOD-DONE
# then powers off.  Kernel command line "NAME=value" words arrive here as
# environment variables: KMOD_ONLY (substring filter on script names),
# KMOD_TEST_TIMEOUT (default per-script timeout, s), KMOD_VM_TIMEOUT (s).
export PATH=/opt/ktlsx/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mount -t tmpfs tmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# keep kernel chatter off the console: result lines must stay whole
echo 1 >/proc/sys/kernel/printk

KMOD_KERNEL=$(uname -r)
export KMOD_KERNEL
K=$KMOD_KERNEL

# hard stop even if something wedges (run.sh also has a host-side timeout)
(
	sleep "${KMOD_VM_TIMEOUT:-280}"
	echo "KMOD-RESULT fail $K vm-watchdog in-VM watchdog fired after ${KMOD_VM_TIMEOUT:-280}s"
	echo "KMOD-DONE"
	poweroff -f
) &
WATCHDOG=$!

# kill_strays: kill user-space processes a suite script left behind (servers
# it started in the background, or everything after a timeout)
kill_strays() {
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = 1 ] || [ "$pid" = "$$" ] || [ "$pid" = "$WATCHDOG" ] && continue
		cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
		[ -n "$cmd" ] || continue                # kernel thread (or gone)
		ppid=$(awk '{print $4}' "$p/stat" 2>/dev/null)
		[ "$ppid" = "$WATCHDOG" ] && continue
		kill -9 "$pid" 2>/dev/null
	done
}

hostname kmod-vm
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
/sbin/modprobe tls >/tmp/modprobe-tls.log 2>&1 || true

export KMOD_CERTS=/certs
export KMOD_CA=/certs/ca.pem
export KMOD_CERT=/certs/server.pem KMOD_KEY=/certs/server.key
export KMOD_RSA_CERT=/certs/server-rsa.pem KMOD_RSA_KEY=/certs/server-rsa.key
export KMOD_CONFIG=/kernel.config
export KTLSX_BIN_DIR=/opt/ktlsx/bin
export LD_LIBRARY_PATH=/opt/ktlsx/lib
export KMOD_RESULTS=/tmp/kmod-results
export KMOD_LIB=/suite/lib.sh
: >"$KMOD_RESULTS"

echo "KMOD-INFO $K booted; cpus=$(grep -c ^processor /proc/cpuinfo) mem=$(awk '/MemTotal/ {print $2 "kB"}' /proc/meminfo)"

mkdir -p /tmp/logs
exec 3>&1   # suite scripts report on fd 3 (the console)
for t in /suite/[0-9]*.sh; do
	[ -e "$t" ] || continue
	n=$(basename "$t" .sh)
	case "$n" in *"${KMOD_ONLY:-}"*) ;; *) continue ;; esac
	to=$(sed -n 's/^# *kmod-timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
	to=${to:-${KMOD_TEST_TIMEOUT:-120}}
	before=$(wc -l <"$KMOD_RESULTS")
	start=$(date +%s)
	timeout -k 5 "$to" sh "$t" >"/tmp/logs/$n.log" 2>&1 </dev/null
	rc=$?
	kill_strays
	after=$(wc -l <"$KMOD_RESULTS")
	echo "KMOD-INFO $K $n finished rc=$rc in $(( $(date +%s) - start ))s"
	bad=0
	if [ "$rc" -eq 143 ] || [ "$rc" -eq 137 ] || [ "$rc" -eq 124 ]; then
		echo "KMOD-RESULT fail $K $n script timed out after ${to}s"
		bad=1
	elif [ "$after" -eq "$before" ]; then
		echo "KMOD-RESULT fail $K $n script exited rc=$rc without reporting a result"
		bad=1
	elif [ "$rc" -ne 0 ]; then
		echo "KMOD-INFO $K $n exited rc=$rc"
	fi
	if [ "$bad" = 1 ] || grep -q '^fail ' "$KMOD_RESULTS.$n" 2>/dev/null; then
		tail -n 40 "/tmp/logs/$n.log" | sed "s|^|KMOD-LOG $n: |"
	fi
done

echo "KMOD-DONE"
sync
poweroff -f
