#!/usr/bin/env bash
# Boot each test kernel in qemu and run kmod-tests/suite/ inside it.
#
#   kmod-tests/run.sh [bookworm|trixie|backports ...]     (default: all three)
#
# Environment:
#   KTLSX_CACHE        download cache (default /var/cache/ktlsx-kmod)
#   KTLSX_BUILD        project build dir whose bin/ and lib/ go in (default build)
#   KMOD_ONLY          run only suite scripts whose name contains this
#   KMOD_VM_TIMEOUT    seconds per VM (default 900: a hang guard; a loaded host once took ~600 s for 7.3)
#   KMOD_TEST_TIMEOUT  default seconds per suite script (default 120)
#   KMOD_PARALLEL      VMs booted at once (default 1; TCG uses ~1 core per vCPU)
#   KMOD_BOOT_ATTEMPTS boots per kernel when it panics before the suite starts (default 3)
#   KMOD_KVM=1         try KVM (checked with a short boot first; TCG otherwise)
#   KMOD_BENCH=1       benchmark mode (make vm-bench): the VM runs kmod-tests/bench/
#                      instead of the suite (VM_BENCH_SECS, VM_BENCH_ROUNDS, VM_BENCH_ONLY passed in),
#                      logs are <kernel>.bench.log, and bench/vm-bench-report.sh turns
#                      the BENCH lines into build/vm-bench/ (table, PNG)
# Output: PASS/FAIL/SKIP <kernel>: <test> [reason] lines and a summary line;
# serial logs in build/kmod-logs/<kernel>.log.  Exit status 1 if anything
# failed or a VM did not reach KMOD-DONE.
set -uo pipefail
. "$(dirname "$0")/lib-common.sh"

VM_TIMEOUT=${KMOD_VM_TIMEOUT:-900}
# ---- vm-bench (issue 11): benchmark mode ----
BENCH=${KMOD_BENCH:-0}
SFX=
if [ "$BENCH" = 1 ]; then
	SFX=.bench
	VM_TIMEOUT=${KMOD_VM_TIMEOUT:-1200}
fi
# ---- end of vm-bench ----
BOOT_ATTEMPTS=${KMOD_BOOT_ATTEMPTS:-3}
OUTDIR=$REPO_DIR/build
LOGDIR=$OUTDIR/kmod-logs
WORK=$OUTDIR/kmod-work
mkdir -p "$LOGDIR" "$WORK"
missing=
for c in qemu-system-x86_64 busybox cpio gzip xz depmod modprobe apt-get dpkg openssl flock; do
	command -v "$c" >/dev/null || missing+=" $c"
done
[ -z "$missing" ] || die "missing host tools:$missing (Debian packages: qemu-system-x86 busybox-static cpio xz-utils kmod openssl; peers: nginx-light curl)"

t0=$(date +%s)
mapfile -t kernels < <("$KMOD_DIR/fetch-kernels.sh" "$@")
log "kernels fetched in $(( $(date +%s) - t0 ))s"

# certificates once for all kernels (per run: concurrent runs don't collide)
CERTS=$(mktemp -d "$WORK/certs.XXXXXX")
trap 'rm -rf "$CERTS"' EXIT
"$KMOD_DIR/mkinitramfs.sh" --certs "$CERTS" || die "certificate generation failed"

# --- accelerator: TCG unless KVM demonstrably works -------------------------
ACCEL=(-accel tcg -cpu max)
if [ "${KMOD_KVM:-0}" = 1 ] && [ -w /dev/kvm ]; then
	# a kernel without initrd panics quickly ("VFS: unable to mount root");
	# if KVM hangs at kernel entry there is no output at all
	first=$(printf '%s\n' "${kernels[@]}" | awk '$2 != "-" {print $3}' | head -1)
	rm -f "$WORK/kvm-probe.log"
	( timeout -k 5 20 qemu-system-x86_64 -accel kvm -cpu host -m 256 -display none \
		-serial "file:$WORK/kvm-probe.log" -monitor none -nic none -no-reboot -kernel "$first" \
		-append "console=ttyS0 panic=-1" </dev/null ) >/dev/null 2>&1
	if [ -n "$first" ] && grep -aqE 'Kernel panic|Unable to mount root' "$WORK/kvm-probe.log" 2>/dev/null; then
		ACCEL=(-accel kvm -cpu host)
		log "KVM works, using it"
	else
		log "KVM did not boot a kernel within 20s, using TCG"
	fi
fi

# --- one VM --------------------------------------------------------------
# run_vm SUITE REL VMLINUZ -> writes $WORK/REL.status (secs + done flag)
run_vm() {
	local suite=$1 rel=$2 vmlinuz=$3 initrd=$WORK/$2$SFX.cpio.gz log=$LOGDIR/$2$SFX.log s e
	s=$(date +%s)
	if ! "$KMOD_DIR/mkinitramfs.sh" "$(dirname "$(dirname "$vmlinuz")")" "$rel" "$initrd" "$CERTS" \
		>"$WORK/$rel.mkinitramfs.log" 2>&1; then
		echo "KMOD-RESULT fail $rel initramfs mkinitramfs.sh failed: $(tail -1 "$WORK/$rel.mkinitramfs.log")" >"$log"
		echo "0 0" >"$WORK/$rel.status"
		return
	fi
	local wd=$((VM_TIMEOUT - 20))   # in-VM watchdog fires before the host kills qemu
	[ "$wd" -ge $((VM_TIMEOUT * 3 / 4)) ] || wd=$((VM_TIMEOUT * 3 / 4))
	local append="console=ttyS0 quiet panic=-1 KMOD_VM_TIMEOUT=$wd"
	[ -n "${KMOD_ONLY:-}" ] && append+=" KMOD_ONLY=$KMOD_ONLY"
	[ -n "${KMOD_TEST_TIMEOUT:-}" ] && append+=" KMOD_TEST_TIMEOUT=$KMOD_TEST_TIMEOUT"
	[ -n "${KMOD_PERF:-}" ] && append+=" KMOD_PERF=$KMOD_PERF"
	[ "$BENCH" = 1 ] && [ -n "${VM_BENCH_SECS:-}" ] && append+=" VM_BENCH_SECS=$VM_BENCH_SECS"
	[ "$BENCH" = 1 ] && [ -n "${VM_BENCH_ONLY:-}" ] && append+=" VM_BENCH_ONLY=$VM_BENCH_ONLY"
	[ "$BENCH" = 1 ] && [ -n "${VM_BENCH_ROUNDS:-}" ] && append+=" VM_BENCH_ROUNDS=$VM_BENCH_ROUNDS"
	# A kernel that panics before init has printed "booted" never ran a test.
	# Under TCG with two vCPUs this happens, rarely: CI once saw 7.3 oops at
	# 1.4 s with RIP inside a 5-byte NOP in the scheduler (a static branch being
	# patched), while 125 boots in a row here were clean.  Boot again, up to
	# BOOT_ATTEMPTS times, and say so in the report; a panic after "booted" is
	# a result and is never retried.
	local attempt rc
	for attempt in $(seq 1 "$BOOT_ATTEMPTS"); do
		timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -M q35 "${ACCEL[@]}" -m 1024 -smp "${KMOD_SMP:-2}" \
			-display none -monitor none -serial "file:$log" -nic none -no-reboot \
			-kernel "$vmlinuz" -initrd "$initrd" -append "$append" </dev/null >"$WORK/$rel.qemu.log" 2>&1
		rc=$?
		tr -d '\r' <"$log" | grep -aq '^KMOD-INFO [^ ]* booted' && break
		tr -d '\r' <"$log" | grep -aq 'Kernel panic' || break
		[ "$attempt" -lt "$BOOT_ATTEMPTS" ] || break
		cp "$log" "$LOGDIR/$rel.boot-panic.$attempt.log"
		echo "boot attempt $attempt panicked before the suite started ($(tr -d '\r' <"$log" | grep -aoE -m2 'RIP: [^ ]+ [^ ]+|not syncing: .*' | paste -sd ' ' -)); log kept in $LOGDIR/$rel.boot-panic.$attempt.log" \
			>>"$WORK/$rel.boot-notes"
	done
	e=$(date +%s)
	echo "$((e - s)) $rc" >"$WORK/$rel.status"
}

declare -a order=()
declare -A unavailable=() suite_of=()
running=0
for line in "${kernels[@]}"; do
	read -r suite rel rest <<<"$line"
	if [ "$rel" = - ]; then
		unavailable[$suite]=$rest
		continue
	fi
	order+=("$rel"); suite_of[$rel]=$suite
	rm -f "$WORK/$rel.status" "$WORK/$rel.boot-notes" "$LOGDIR/$rel$SFX.log" "$LOGDIR/$rel".boot-panic.*.log
	log "booting $rel ($suite)"
	run_vm "$suite" "$rel" "$rest" &
	running=$((running + 1))
	if [ "$running" -ge "${KMOD_PARALLEL:-1}" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

# --- report --------------------------------------------------------------
npass=0 nfail=0 nskip=0
for suite in "${!unavailable[@]}"; do
	echo "SKIP $suite: all-tests ${unavailable[$suite]}"
	nskip=$((nskip + 1))
done
for rel in "${order[@]}"; do
	log=$LOGDIR/$rel$SFX.log
	read -r secs rc <"$WORK/$rel.status" 2>/dev/null || { secs=?; rc=?; }
	sed "s/^/INFO $rel: /" "$WORK/$rel.boot-notes" 2>/dev/null
	tr -d '\r' <"$log" 2>/dev/null | grep -a '^KMOD-INFO ' | sed "s/^KMOD-INFO [^ ]* /INFO $rel: /"
	while read -r _ st k name reason; do
		case $st in
		pass) echo "PASS $rel: $name"; npass=$((npass + 1)) ;;
		fail) echo "FAIL $rel: $name${reason:+ ($reason)}"; nfail=$((nfail + 1)) ;;
		skip) echo "SKIP $rel: $name${reason:+ ($reason)}"; nskip=$((nskip + 1)) ;;
		esac
	done < <(tr -d '\r' <"$log" 2>/dev/null | grep -a '^KMOD-RESULT ')
	if ! grep -aq '^KMOD-DONE' "$log" 2>/dev/null; then
		why="VM did not reach KMOD-DONE"
		[ "$rc" = 124 ] || [ "$rc" = 137 ] && why+=" (timed out after ${VM_TIMEOUT}s)"
		[ "$rc" != 124 ] && [ "$rc" != 137 ] && [ "$rc" != 0 ] && why+=" (qemu exit $rc: $(tail -1 "$WORK/$rel.qemu.log" 2>/dev/null))"
		echo "FAIL $rel: vm $why; see $log"
		tr -d '\r' <"$log" 2>/dev/null | grep -av '^KMOD-' | tail -n 15 | sed "s|^|LOG $rel: |"
		nfail=$((nfail + 1))
	fi
	echo "TIME $rel (${suite_of[$rel]}): ${secs}s"
done
echo "$npass passed, $nfail failed, $nskip skipped"
if [ "$BENCH" = 1 ]; then   # ---- vm-bench (issue 11) ----
	for rel in "${order[@]}"; do
		"$REPO_DIR/bench/vm-bench-report.sh" "$LOGDIR/$rel$SFX.log" "$OUTDIR/vm-bench" || nfail=$((nfail + 1))
	done
fi
log "total $(( $(date +%s) - t0 ))s"
[ "$nfail" -eq 0 ]
