#!/bin/sh
# ktlsxd's kernel door (issue 9): the daemon answers the kernel's `handshake`
# netlink upcall for NVMe/TCP with TLS, on loopback, both sides in this VM:
# an nvmet target on 127.0.0.1:4420 with tsas tls1.3 (its server handshakes)
# and the host connecting with `tls` through /dev/nvme-fabrics (its client
# handshakes), a retained PSK "NVMe0R01 <hostnqn> <subnqn>" in the .nvme
# keyring.  16 MiB written to the namespace (file-backed) and read back with
# equal sha256; tls_stat shows the sockets in kernel TLS; the daemon's log
# names each handshake and its status.  Then the failures: the host offering
# a key the target does not hold (EKEYREJECTED/EACCES, the connect fails well
# within its timeout), and the daemon stopped (the connect fails) and started
# again (it succeeds).
# kmod-timeout: 420
. "$KMOD_LIB"
. /suite/lib-ktlsx.sh

tests="kdoor-family kdoor-daemon kdoor-probe kdoor-connect kdoor-data kdoor-tls-stat kdoor-log kdoor-stats kdoor-queues kdoor-storm kdoor-wrong-psk kdoor-unknown-identity kdoor-daemon-restart kdoor-unprivileged kdoor-record-size-limit kdoor-tlshd kdoor-bench kdoor-restart-storm"
out=$(timeout 20 ktlsx probe 2>&1)
hs=$(echo "$out" | grep '^handshake-genl:' | head -1)
info "probe: $hs"
case "$hs" in
"handshake-genl: yes"*) pass kdoor-family ;;
*)
	for t in $tests; do skip "$t" "no handshake netlink family: $hs"; done
	exit 0
	;;
esac

W=$KMOD_TMP/kdoor
mkdir -p "$W"
for m in configfs nvmet nvmet-tcp nvme-fabrics nvme-tcp; do
	modprobe "$m" >>"$W/modprobe.log" 2>&1 || echo "modprobe $m failed" >>"$W/modprobe.log"
done
grep -q configfs /proc/mounts || mount -t configfs none /sys/kernel/config 2>>"$W/modprobe.log"
cat "$W/modprobe.log"
CFS=/sys/kernel/config/nvmet
if [ ! -d "$CFS" ] || [ ! -e /dev/nvme-fabrics ] || ! have kdkey; then
	for t in $(echo "$tests" | cut -d' ' -f2-); do
		skip "$t" "no nvmet configfs, /dev/nvme-fabrics or kdkey: $(tail -3 "$W/modprobe.log" | tr '\n' ' ')"
	done
	exit 0
fi

# --- ktlsxd with the kernel door ---
cat >"$W/ktlsxd.conf" <<EOF
[daemon]
socket = $W/ktlsxd.sock
workers = 2
log_level = debug
[kernel]
enabled = yes
EOF
start_daemon() {
	_ready=$(grep -c "ready:" "$W/ktlsxd.log")
	${KD_WRAP:-} ktlsxd -c "$W/ktlsxd.conf" >>"$W/ktlsxd.log" 2>&1 &
	KD_PID=$!
	i=0
	while [ $i -lt 100 ] && [ "$(grep -c "ready:" "$W/ktlsxd.log")" -le "$_ready" ]; do sleep 0.1; i=$((i + 1)); done
}
stop_daemon() {
	kill -TERM "$KD_PID" 2>/dev/null
	wait_pid "$KD_PID" 15
}
: >"$W/ktlsxd.log"
start_daemon
if grep -q "kernel door: open" "$W/ktlsxd.log" && kill -0 "$KD_PID" 2>/dev/null; then
	pass kdoor-daemon
else
	fail kdoor-daemon "no 'kernel door: open' line: $(grep -i 'kernel door\|error' "$W/ktlsxd.log" | head -3 | tr '\n' ' ')"
fi
info "$(grep 'kernel door' "$W/ktlsxd.log" | head -3 | tr '\n' ' ')"

# --- target: subsystem, file-backed namespace, TLS port ---
HOSTID=6b2e1f0a-1d2c-4b5a-9e8f-0123456789ab
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:$HOSTID
SUBNQN=nqn.2026-12.io.ktlsx:kdoor
truncate -s 32M "$W/ns.img" 2>/dev/null || dd if=/dev/zero of="$W/ns.img" bs=1M count=32 2>/dev/null
mkdir "$CFS/subsystems/$SUBNQN"
echo 1 >"$CFS/subsystems/$SUBNQN/attr_allow_any_host"
mkdir "$CFS/subsystems/$SUBNQN/namespaces/1"
echo "$W/ns.img" >"$CFS/subsystems/$SUBNQN/namespaces/1/device_path"
echo 1 >"$CFS/subsystems/$SUBNQN/namespaces/1/buffered_io" 2>/dev/null
echo 1 >"$CFS/subsystems/$SUBNQN/namespaces/1/enable"
P=$CFS/ports/1
mkdir "$P"
echo tcp >"$P/addr_trtype"
echo ipv4 >"$P/addr_adrfam"
echo 127.0.0.1 >"$P/addr_traddr"
echo 4420 >"$P/addr_trsvcid"
echo tls1.3 >"$P/addr_tsas" || info "addr_tsas tls1.3 refused"
ln -s "$CFS/subsystems/$SUBNQN" "$P/subsystems/$SUBNQN"
info "port: tsas=$(cat "$P/addr_tsas" 2>/dev/null) treq=$(cat "$P/addr_treq" 2>/dev/null)"

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
PSK=$(hex 32)
SERIAL=$(kdkey add .nvme "NVMe0R01 $HOSTNQN $SUBNQN" "$PSK" 2>&1)
info "PSK serial $SERIAL in .nvme"

# connect OPTIONS SECS: write the option string to /dev/nvme-fabrics (the
# write returns when the controller is up or has failed); CONNECT_RC, CONNECT_EL
connect() {
	_s=$(date +%s)
	( echo "transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$SUBNQN,hostnqn=$HOSTNQN,hostid=$HOSTID,tls$1" >/dev/nvme-fabrics ) \
		>"$W/connect.out" 2>&1 &
	wait_pid $! "$2"
	CONNECT_RC=$WAIT_RC
	CONNECT_EL=$(( $(date +%s) - _s ))
}
disconnect_all() {
	for c in /sys/class/nvme/nvme*; do
		[ -e "$c/delete_controller" ] && echo 1 >"$c/delete_controller" 2>/dev/null
	done
	sleep 1
}

tls_stat_snapshot "$W/tls0"
connect ",nr_io_queues=2" 60
dev=
i=0
while [ $i -lt 50 ]; do
	for d in /dev/nvme*n1; do [ -b "$d" ] && dev=$d; done
	[ -n "$dev" ] && break
	sleep 0.2
	i=$((i + 1))
done
if [ "$CONNECT_RC" -eq 0 ] && [ -n "$dev" ]; then
	pass kdoor-connect
	info "connected in ${CONNECT_EL}s: $dev ($(cat /sys/class/nvme/nvme0/transport 2>/dev/null) $(cat /sys/class/nvme/nvme0/tls_key 2>/dev/null))"
else
	fail kdoor-connect "rc $CONNECT_RC after ${CONNECT_EL}s, no block device: $(tr '\n' ' ' <"$W/connect.out") $(dmesg | grep -i 'nvme\|tls\|handshake' | tail -5 | tr '\n' ' ')"
fi

if [ -n "$dev" ]; then
	dd if=/dev/urandom of="$W/src" bs=1M count=16 2>/dev/null
	dd if="$W/src" of="$dev" bs=1M count=16 conv=fsync 2>"$W/dd.err"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	dd if="$dev" of="$W/back" bs=1M count=16 2>>"$W/dd.err"
	want=$(sha "$W/src")
	got=$(sha "$W/back")
	on_target=$(dd if="$W/ns.img" bs=1M count=16 2>/dev/null | sha256sum | cut -d' ' -f1)
	if [ -n "$want" ] && [ "$want" = "$got" ] && [ "$want" = "$on_target" ]; then
		pass kdoor-data
	else
		fail kdoor-data "sha256 written $want, read back $got, target file $on_target: $(tr '\n' ' ' <"$W/dd.err")"
	fi
	tx=$(tls_stat_delta "$W/tls0" TlsTxSw)
	rx=$(tls_stat_delta "$W/tls0" TlsRxSw)
	cur=$(tls_stat TlsCurrTxSw)
	info "tls_stat: TlsTxSw +$tx TlsRxSw +$rx TlsCurrTxSw $cur TlsDecryptError $(tls_stat TlsDecryptError)"
	# admin + at least one I/O queue (2 asked; the host caps them at its CPUs),
	# host and target sides: at least 4 sockets in kernel TLS
	if [ "$tx" -ge 4 ] && [ "$rx" -ge 4 ] && [ "$cur" -ge 4 ]; then
		pass kdoor-tls-stat
	else
		fail kdoor-tls-stat "TlsTxSw +$tx TlsRxSw +$rx TlsCurrTxSw $cur (want >= 4 each)"
	fi
else
	skip kdoor-data "not connected"
	skip kdoor-tls-stat "not connected"
fi
nserver=$(grep -c "kernel door: psk server: ok" "$W/ktlsxd.log")
nclient=$(grep -c "kernel door: psk client.*: ok" "$W/ktlsxd.log")
info "daemon: $nserver server and $nclient client handshakes ok; $(grep 'kernel door: psk' "$W/ktlsxd.log" | head -2 | tr '\n' ' ')"
if [ "$nserver" -ge 2 ] && [ "$nclient" -ge 2 ] && [ "$nserver" -eq "$nclient" ]; then
	pass kdoor-log
else
	fail kdoor-log "server ok $nserver, client ok $nclient (want >= 2 each, equal): $(grep 'kernel door' "$W/ktlsxd.log" | tail -4 | tr '\n' ' ')"
fi
info "$(grep -m1 'kernel door: ACCEPT fd' "$W/ktlsxd.log")"
# the attribute probe: the DONE policy from the kernel, the ACCEPT reply's attributes as seen
probe=$(grep -m1 'attribute probe:' "$W/ktlsxd.log")
carry=$(grep -m1 'ACCEPT replies carry:' "$W/ktlsxd.log")
info "$probe; $carry"
case "$probe" in
*"DONE takes status sockfd remote_auth"*)
	case "$carry" in
	*"sockfd"*"message_type timeout auth_mode peer_identity"*) pass kdoor-probe ;;
	*) fail kdoor-probe "ACCEPT attributes: '$carry'" ;;
	esac
	;;
*) fail kdoor-probe "probe: '$probe'" ;;
esac
ktlsxctl -s "$W/ktlsxd.ctl" stats >"$W/stats.out" 2>&1
st=$(grep '^door kernel:' "$W/stats.out")
info "ktlsxctl stats: $st; $(grep '^kernel door:' "$W/stats.out")"
case "$st" in
"door kernel: handshakes $((nserver + nclient)), ok $((nserver + nclient)), failed 0, resumed 0") pass kdoor-stats ;;
*) fail kdoor-stats "want $((nserver + nclient)) handshakes all ok, got '$st': $(head -5 "$W/stats.out" | tr '\n' ' ')" ;;
esac
disconnect_all

# --- connect time with more queues: one TLS handshake per queue on each side.  The host
# caps I/O and write queues at its CPUs (2 here): nr_io_queues=1 gives admin + 1, the
# second connect admin + 2 + 2.  The queue count is what ktlsxd answered / 2. ---
ms_now() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
qinfo= counts=
for opts in "nr_io_queues=1" "nr_io_queues=8,nr_write_queues=8"; do
	before=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
	t0=$(ms_now)
	connect ",$opts" 60
	t1=$(ms_now)
	after=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
	hs=$((after - before))
	counts="$counts $CONNECT_RC:$hs"
	qinfo="$qinfo $opts: rc $CONNECT_RC, $((hs / 2)) queues, $hs handshakes, $((t1 - t0)) ms;"
	disconnect_all
done
info "connect with TLS, both sides answered by ktlsxd:$qinfo"
set -- $counts
if [ "$1" = 0:4 ] && [ "${2%%:*}" = 0 ] && [ "${2#*:}" -gt 4 ] && [ $(( ${2#*:} % 2 )) -eq 0 ]; then
	pass kdoor-queues
else
	fail kdoor-queues "want rc 0 with 4 handshakes, then rc 0 with more (even):$qinfo"
fi

# --- a storm: 6 hosts (own hostnqn, hostid and PSK each) connecting at once with
# admin + 2 I/O + 2 write queues: 30 client and 30 server handshakes in flight together ---
NH=6
i=1
while [ $i -le $NH ]; do
	kdkey add .nvme "NVMe0R01 $HOSTNQN-$i $SUBNQN" "$(hex 32)" >/dev/null 2>&1
	i=$((i + 1))
done
before=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
t0=$(ms_now)
pids=
i=1
while [ $i -le $NH ]; do
	( echo "transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$SUBNQN,hostnqn=$HOSTNQN-$i,hostid=6b2e1f0a-1d2c-4b5a-9e8f-00000000000$i,tls,nr_io_queues=8,nr_write_queues=8" \
		>/dev/nvme-fabrics ) >"$W/storm.$i" 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
src=0
for p in $pids; do wait_pid "$p" 90; [ "$WAIT_RC" -eq 0 ] || src=$WAIT_RC; done
t1=$(ms_now)
after=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
hs=$((after - before))
ctrls=$(ls -d /sys/class/nvme/nvme* 2>/dev/null | wc -l)
el=$((t1 - t0))
[ "$el" -gt 0 ] || el=1
info "storm: $NH controllers at once, $ctrls up, $hs handshakes ok in $el ms ($((hs * 1000 / el)) handshakes/s under TCG), last failing rc $src"
if [ "$src" -eq 0 ] && [ "$ctrls" -eq "$NH" ] && [ "$hs" -ge $((NH * 4)) ] && [ $((hs % 2)) -eq 0 ]; then
	pass kdoor-storm
else
	fail kdoor-storm "rc $src, $ctrls controllers, $hs handshakes: $(cat "$W"/storm.* | tr '\n' ' ') $(grep 'kernel door: psk' "$W/ktlsxd.log" | grep -v ': ok' | tail -2 | tr '\n' ' ')"
fi
disconnect_all

# --- a key the target does not hold: the host offers K2 under the same identity
# from a keyring of its own (tls_key=SERIAL); the target finds K1 in .nvme ---
BAD=$(kdkey add @s "NVMe0R01 $HOSTNQN $SUBNQN" "$(hex 32)" 2>&1)
before=$(grep -c "kernel door: psk .*: \(EKEYREJECTED\|EACCES\)" "$W/ktlsxd.log")
connect ",tls_key=$BAD" 60
after=$(grep -c "kernel door: psk .*: \(EKEYREJECTED\|EACCES\)" "$W/ktlsxd.log")
info "wrong PSK: connect rc $CONNECT_RC in ${CONNECT_EL}s; $(grep 'kernel door: psk' "$W/ktlsxd.log" | tail -2 | tr '\n' ' ')"
if [ "$CONNECT_RC" -ne 0 ] && [ "$CONNECT_RC" -ne 124 ] && [ "$after" -gt "$before" ]; then
	pass kdoor-wrong-psk
else
	fail kdoor-wrong-psk "connect rc $CONNECT_RC in ${CONNECT_EL}s, refusals logged $before -> $after"
fi
disconnect_all

# --- an identity the target does not know (the key exists only in the host's own keyring):
# the target's side is EKEYREJECTED, the connect fails at once ---
UNK=$(kdkey add @s "NVMe0R01 $HOSTNQN nqn.2026-12.io.ktlsx:unknown" "$(hex 32)" 2>&1)
before=$(grep -c "kernel door: psk server: EKEYREJECTED" "$W/ktlsxd.log")
connect ",tls_key=$UNK" 60
after=$(grep -c "kernel door: psk server: EKEYREJECTED" "$W/ktlsxd.log")
info "unknown identity: connect rc $CONNECT_RC in ${CONNECT_EL}s; $(grep 'kernel door: \(psk\|no PSK\)' "$W/ktlsxd.log" | tail -3 | tr '\n' ' ')"
if [ "$CONNECT_RC" -ne 0 ] && [ "$CONNECT_RC" -ne 124 ] && [ "$after" -gt "$before" ]; then
	pass kdoor-unknown-identity
else
	fail kdoor-unknown-identity "connect rc $CONNECT_RC in ${CONNECT_EL}s, server EKEYREJECTED $before -> $after"
fi
disconnect_all

# --- the daemon stopped: the kernel's request fails; started again: it succeeds ---
stop_daemon
connect ",nr_io_queues=1" 60
down_rc=$CONNECT_RC down_el=$CONNECT_EL
disconnect_all
start_daemon
connect ",nr_io_queues=1" 60
info "daemon down: connect rc $down_rc in ${down_el}s; up again: rc $CONNECT_RC in ${CONNECT_EL}s"
if [ "$down_rc" -ne 0 ] && [ "$down_rc" -ne 124 ] && [ "$CONNECT_RC" -eq 0 ]; then
	pass kdoor-daemon-restart
else
	fail kdoor-daemon-restart "down: rc $down_rc in ${down_el}s; up: rc $CONNECT_RC in ${CONNECT_EL}s: $(tr '\n' ' ' <"$W/connect.out") $(dmesg | grep -i 'nvme\|tls\|handshake' | tail -4 | tr '\n' ' ') $(tail -3 "$W/ktlsxd.log" | tr '\n' ' ')"
fi
disconnect_all
stop_daemon

# --- as `nobody`, keeping CAP_NET_ADMIN alone (ACCEPT is an admin operation),
# the keys read through the session keyring's link to .nvme ---
sed -i 's/^workers = 2$/workers = 2\nuser = nobody/' "$W/ktlsxd.conf"
chmod 755 "$W"
start_daemon
st=$(grep -E '^(Uid|CapEff|CapPrm|CapInh|CapBnd):' "/proc/$KD_PID/status" 2>/dev/null | tr '\t' ' ' | tr '\n' ' ')
before=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
connect ",nr_io_queues=1" 60
after=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
info "as nobody: $st; connect rc $CONNECT_RC in ${CONNECT_EL}s, handshakes ok $before -> $after"
case "$st" in
*"Uid: 65534 65534 65534 65534"*"CapInh: 0000000000000000"*"CapPrm: 0000000000001000"*"CapEff: 0000000000001000"*"CapBnd: 0000000000001000"*)
	if [ "$CONNECT_RC" -eq 0 ] && [ "$after" -ge $((before + 2)) ] && grep -q "CAP_NET_ADMIN only" "$W/ktlsxd.log"; then
		pass kdoor-unprivileged
	else
		fail kdoor-unprivileged "connect rc $CONNECT_RC, handshakes ok $before -> $after: $(grep 'kernel door\|running as' "$W/ktlsxd.log" | tail -3 | tr '\n' ' ')"
	fi
	;;
*) fail kdoor-unprivileged "process status: $st; $(grep 'running as\|error' "$W/ktlsxd.log" | tail -3 | tr '\n' ' ')" ;;
esac
disconnect_all
stop_daemon

# --- [kernel] record_size_limit = 4096 (RFC 8449) on both sides: each side's kernel TX must keep
# to 4095-byte records.  A kernel with TLS_TX_MAX_PAYLOAD_LEN (6.19+) connects and carries data;
# one without cannot (TLS_TX would send 16 KiB records the peer refuses): the connect fails at
# once with EIO and the reason in the log, never a hang or a connection that breaks later. ---
printf '[daemon]\nsocket = %s\nworkers = 2\nlog_level = info\n[kernel]\nenabled = yes\nrecord_size_limit = 4096\n' \
	"$W/ktlsxd.sock" >"$W/ktlsxd.conf"
start_daemon
connect ",nr_io_queues=1" 60
# (the daemon logs a handshake's end after its DONE: the line may trail the connect's return)
i=0
while [ $i -lt 30 ] && ! grep -q 'EIO.*record_size_limit' "$W/ktlsxd.log"; do
	[ "$CONNECT_RC" -eq 0 ] && break
	sleep 0.1
	i=$((i + 1))
done
rsl_why=$(grep -m1 'EIO.*record_size_limit' "$W/ktlsxd.log" | grep -o 'EIO.*' | cut -c1-200)
rsl_dev=
for d in /dev/nvme*n1; do [ -b "$d" ] && rsl_dev=$d; done
if [ "$CONNECT_RC" -eq 0 ] && [ -n "$rsl_dev" ]; then
	dd if=/dev/urandom of="$W/rsl.src" bs=64k count=16 2>/dev/null
	dd if="$W/rsl.src" of="$rsl_dev" bs=64k count=16 conv=fsync 2>/dev/null
	echo 3 >/proc/sys/vm/drop_caches
	dd if="$rsl_dev" of="$W/rsl.back" bs=64k count=16 2>/dev/null
	info "record_size_limit 4096: connected in ${CONNECT_EL}s, 1 MiB written and read back"
	if [ "$(sha "$W/rsl.src")" = "$(sha "$W/rsl.back")" ]; then pass kdoor-record-size-limit
	else fail kdoor-record-size-limit "connected, but 1 MiB read back differs"; fi
elif [ "$CONNECT_RC" -ne 124 ] && [ -n "$rsl_why" ]; then
	info "record_size_limit 4096: connect refused in ${CONNECT_EL}s: $rsl_why"
	pass kdoor-record-size-limit
else
	fail kdoor-record-size-limit "connect rc $CONNECT_RC in ${CONNECT_EL}s, reason in the log: '${rsl_why:-none}': $(grep 'kernel door: psk' "$W/ktlsxd.log" | tail -2 | tr '\n' ' ')"
fi
disconnect_all
stop_daemon

# --- side by side: Debian trixie's tlshd (ktls-utils 1.0.0, forks per handshake) and
# ktlsxd, one after the other on this kernel and this target, the same PSKs:
#   connect time of one controller with N I/O queues (admin + N: N+1 handshakes on each
#   side), the median of 3; the host caps each queue kind (read, write, poll) at its CPUs,
#   so N = 1, 4 and 6 with the default 2 vCPUs, 1, 4 and 16 with KMOD_SMP=6 (see QSPECS);
#   a storm: 12 hosts of their own at once, admin + 4 queues each (60 + 60 handshakes),
#   its rate and the VM's CPU per handshake (/proc/stat: all of it, and user space alone:
#   the agents' share; tlshd's children are reaped unseen, so no per-process count).
# Handshakes are counted by the kernel (tls_stat TlsTxSw: one per socket put in kernel
# TLS, host and target sides alike), not by either agent's log. ---
ms_now() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
cpu_now() { awk '/^cpu / { print $2 + $3, $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; } # user, busy (ticks)
# each agent in a cgroup of its own: cpu.stat counts its CPU, tlshd's forked children included
CG=
grep -q cgroup2 /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
mkdir -p /sys/fs/cgroup/kdoor-agent 2>/dev/null && [ -e /sys/fs/cgroup/kdoor-agent/cpu.stat ] && CG=/sys/fs/cgroup/kdoor-agent
# IN_CG PROGRAM ARGS...: PROGRAM exec'd inside $CG when there is one.  A script, not a shell
# function: "func ... &" forks a subshell whose $! is not the program's pid, so a later
# kill -TERM $! left the agent running (and answering the kernel) behind the next one's back.
IN_CG=$W/in-cg.sh
printf '#!/bin/sh\n[ -n "$CG" ] && echo $$ >"$CG/cgroup.procs"\nexec "$@"\n' >"$IN_CG"
chmod 755 "$IN_CG"
export CG
# agents_gone: no tlshd (parent or forked child) and no ktlsxd left; kills stragglers (-9) and
# says so in AGENTS_LEFT (empty when there were none)
agents_gone() {
	AGENTS_LEFT=
	for _p in /proc/[0-9]*; do
		_c=$(tr '\0' ' ' <"$_p/cmdline" 2>/dev/null)
		case "$_c" in
		*/opt/tlshd/*|ktlsxd\ *|*/ktlsxd\ *) AGENTS_LEFT="$AGENTS_LEFT ${_p#/proc/}:${_c%% -*}"; kill -9 "${_p#/proc/}" 2>/dev/null ;;
		esac
	done
	[ -z "$AGENTS_LEFT" ]
}
cg_usec() { [ -n "$CG" ] && awk '$1 == "usage_usec" { print $2 }' "$CG/cpu.stat" || echo 0; }
NB=12
i=1
while [ $i -le $NB ]; do
	kdkey add .nvme "NVMe0R01 $HOSTNQN-b$i $SUBNQN" "$(hex 32)" >/dev/null 2>&1
	i=$((i + 1))
done
nvme_clear() { # delete every controller and wait until none is left
	for c in /sys/class/nvme/nvme*; do [ -e "$c/delete_controller" ] && echo 1 >"$c/delete_controller" 2>/dev/null; done
	_i=0
	while [ $_i -lt 50 ] && ls -d /sys/class/nvme/nvme* >/dev/null 2>&1; do sleep 0.1; _i=$((_i + 1)); done
	sleep 0.2
}
# The controller sizes: N I/O queues as read + write + poll queues, each kind capped by the host at
# the CPU count, so N = 1, 4 and 6 with 2 vCPUs and 1, 4 and 16 with 6 or more (KMOD_SMP=6).
NCPU=$(grep -c '^processor' /proc/cpuinfo)
qspec() { # qspec N: "N:nr_io_queues=A[,nr_write_queues=B][,nr_poll_queues=C]"
	_r=$1 _io=$1
	[ "$_io" -gt "$NCPU" ] && _io=$NCPU
	_r=$((_r - _io)) _wr=$_r
	[ "$_wr" -gt "$NCPU" ] && _wr=$NCPU
	_r=$((_r - _wr))
	# (the kernel refuses a write or poll queue count of 0: left out)
	echo "$1:nr_io_queues=$_io$([ "$_wr" -gt 0 ] && echo ",nr_write_queues=$_wr")$([ "$_r" -gt 0 ] && echo ",nr_poll_queues=$_r")"
}
if [ "$NCPU" -ge 6 ]; then QNS="1 4 16"; else QNS="1 4 6"; fi
QSPECS=
for n in $QNS; do QSPECS="$QSPECS $(qspec "$n")"; done
info "controller sizes for $NCPU vCPUs:$QSPECS"
# bench AGENT: sets B_<AGENT>_Q<N> for each N of QNS (ms), B_<AGENT>_RATE (handshakes/s), _STORM (ms), _OK (1/0)
bench() {
	_ag=$1 _ok=1 _line=
	for spec in $QSPECS; do
		_n=${spec%%:*} _o=${spec#*:} _ts=
		for _rep in 1 2 3; do
			tls_stat_snapshot "$W/b0"
			_t0=$(ms_now)
			timeout 60 sh -c "echo 'transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$SUBNQN,hostnqn=$HOSTNQN,hostid=$HOSTID,tls,$_o' >/dev/nvme-fabrics" \
				>"$W/b.out" 2>&1
			_rc=$?
			_t1=$(ms_now)
			_hs=$(tls_stat_delta "$W/b0" TlsTxSw)
			if [ "$_rc" -ne 0 ] || [ "$_hs" -ne $((2 * (_n + 1))) ]; then
				_ok=0
				_line="$_line N=$_n rep $_rep: rc $_rc, $_hs sockets in kernel TLS (want $((2 * (_n + 1)))) $(tr '\n' ' ' <"$W/b.out");"
			fi
			_ts="$_ts $((_t1 - _t0))"
			nvme_clear
		done
		_med=$(echo "$_ts" | tr ' ' '\n' | grep . | sort -n | sed -n 2p)
		eval "B_${_ag}_Q$_n=$_med"
		_line="$_line N=$_n:$_ts ms (median $_med);"
	done
	_i0=$(cg_usec)
	sleep 1
	_idle=$((($(cg_usec) - _i0) / 1000))
	tls_stat_snapshot "$W/b0"
	set -- $(cpu_now)
	_u0=$1 _b0=$2
	_a0=$(cg_usec)
	_t0=$(ms_now)
	_perf=
	if [ "${KMOD_PERF:-0}" = 1 ] && have perf; then # where the CPU goes during the storm, every task
		echo 0 >/proc/sys/kernel/kptr_restrict 2>/dev/null
		perf record -q -a -g -e cpu-clock -F 499 -o "$W/perf.$_ag.data" >"$W/perf.$_ag.log" 2>&1 &
		_perf=$!
		sleep 1
		tls_stat_snapshot "$W/b0"
		set -- $(cpu_now)
		_u0=$1 _b0=$2
		_a0=$(cg_usec)
		_t0=$(ms_now)
	fi
	_pids=
	_i=1
	while [ $_i -le "$NB" ]; do
		timeout 90 sh -c "echo 'transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$SUBNQN,hostnqn=$HOSTNQN-b$_i,hostid=6b2e1f0a-1d2c-4b5a-9e8f-$(printf %012d $((_i + 100))),tls,nr_io_queues=2,nr_write_queues=2' >/dev/nvme-fabrics" \
			>"$W/bs.$_i" 2>&1 &
		_pids="$_pids $!"
		_i=$((_i + 1))
	done
	_src=0
	for _p in $_pids; do wait "$_p" || _src=$?; done
	_t1=$(ms_now)
	_a1=$(cg_usec)
	set -- $(cpu_now)
	_hs=$(tls_stat_delta "$W/b0" TlsTxSw)
	if [ -n "$_perf" ]; then
		kill -INT "$_perf" 2>/dev/null
		wait "$_perf"
		# by task, then the top symbols of the agent's tasks with their callers
		perf report -i "$W/perf.$_ag.data" --stdio --no-children --sort comm -g none -q 2>/dev/null | grep . | head -25 |
			while read -r l; do info "perf $_ag by task: $l"; done
		perf report -i "$W/perf.$_ag.data" --stdio --no-children --sort comm,dso,sym -g none -q 2>/dev/null |
			grep . | grep -v ' swapper ' | head -60 | while read -r l; do info "perf $_ag by symbol: $l"; done
		cp "$W/perf.$_ag.data" "$KMOD_TMP/" 2>/dev/null
	fi
	_el=$((_t1 - _t0))
	[ "$_el" -gt 0 ] || _el=1
	_h=$_hs
	[ "$_h" -gt 0 ] || _h=1
	eval "B_${_ag}_RATE=$((_hs * 1000 / _el))"
	eval "B_${_ag}_STORM=$_el"
	# ticks are 10 ms: CPU ms per handshake, one decimal
	eval "B_${_ag}_CPU=$(awk -v t=$(($2 - _b0)) -v h=$_h 'BEGIN { printf "%.1f", t * 10 / h }')"
	eval "B_${_ag}_UCPU=$(awk -v t=$(($1 - _u0)) -v h=$_h 'BEGIN { printf "%.1f", t * 10 / h }')"
	eval "B_${_ag}_ACPU=$(awk -v t=$((_a1 - _a0)) -v h=$_h 'BEGIN { printf "%.2f", t / 1000 / h }')"
	if [ "$_src" -ne 0 ] || [ "$_hs" -ne $((NB * 10)) ]; then
		_ok=0
		_line="$_line storm: rc $_src, $_hs sockets in kernel TLS (want $((NB * 10))) $(cat "$W"/bs.* | tr '\n' ' ');"
	fi
	_line="$_line storm: $NB controllers x 5 queues, $_hs handshakes in $_el ms ($((_hs * 1000 / _el))/s), CPU $(($2 - _b0))0 ms (user $(($1 - _u0))0 ms, the agent's cgroup $(((_a1 - _a0) / 1000)) ms; idle for 1 s before: $_idle ms)"
	nvme_clear
	eval "B_${_ag}_OK=$_ok"
	info "bench $_ag:$_line"
}

TLSHD=/opt/tlshd/tlshd
if [ -x "$TLSHD" ]; then
	printf '[debug]\nloglevel=1\ntls=0\nnl=0\n[authenticate]\n[authenticate.client]\n[authenticate.server]\n' >"$W/tlshd.conf"
	: >"$W/tlshd.log"
	"$IN_CG" "$TLSHD" -s -c "$W/tlshd.conf" >>"$W/tlshd.log" 2>&1 &
	TL_PID=$!
	i=0
	while [ $i -lt 100 ] && ! grep -q "Built from" "$W/tlshd.log"; do sleep 0.1; i=$((i + 1)); done
	sleep 0.5
	info "tlshd: $(head -3 "$W/tlshd.log" | tr '\n' ' ')"
	if kill -0 "$TL_PID" 2>/dev/null; then
		bench tlshd
		info "tlshd log: $(grep -c 'was successful' "$W/tlshd.log") handshakes logged successful, $(grep -c 'failed' "$W/tlshd.log") failed"
	else
		B_tlshd_OK=0
		info "tlshd did not start: $(tail -5 "$W/tlshd.log" | tr '\n' ' ')"
	fi
	kill -TERM "$TL_PID" 2>/dev/null
	wait_pid "$TL_PID" 10
	sleep 0.5 # a forked child may be finishing its handshake
	agents_gone || info "left after tlshd's SIGTERM (killed):$AGENTS_LEFT"
	TL_DONE=$(grep -c 'was successful' "$W/tlshd.log")
	if [ "$B_tlshd_OK" = 1 ]; then pass kdoor-tlshd; else fail kdoor-tlshd "see the 'bench tlshd' line"; fi
else
	skip kdoor-tlshd "no tlshd in the image (kmod-tests/fetch-tlshd.sh could not fetch ktls-utils)"
fi
# ktlsxd as deployed (root here; log one line per handshake, as tlshd's loglevel=1 does)
# (one worker per vCPU, its default; and no other agent left to answer the kernel)
agents_gone || info "agents still running before ktlsxd's bench (killed):$AGENTS_LEFT"
printf '[daemon]\nsocket = %s\nlog_level = info\n[kernel]\nenabled = yes\n' "$W/ktlsxd.sock" >"$W/ktlsxd.conf"
KD_WRAP=$IN_CG
start_daemon
bench ktlsxd
[ -n "${TL_DONE:-}" ] && info "tlshd's successful handshakes: $TL_DONE at its stop, $(grep -c 'was successful' "$W/tlshd.log") after ktlsxd's bench"

# --- the daemon stopped during a connect storm and started again: the kernel's requests
# in flight fail or wait (none hangs past its timeout), then connects succeed again ---
_ok0=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
_pids=
i=1
t0=$(ms_now)
while [ $i -le $NB ]; do
	timeout 90 sh -c "echo 'transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$SUBNQN,hostnqn=$HOSTNQN-b$i,hostid=6b2e1f0a-1d2c-4b5a-9e8f-$(printf %012d $((i + 100))),tls,nr_io_queues=2,nr_write_queues=2' >/dev/nvme-fabrics" \
		>"$W/rs.$i" 2>&1 &
	_pids="$_pids $!"
	i=$((i + 1))
done
sleep 0.4
stop_daemon
t_stop=$(ms_now)
STOPPED_OK=1
pidof ktlsxd >/dev/null 2>&1 && STOPPED_OK=0 # the storm must meet no daemon at all
_mid=$(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log")
sleep 1
start_daemon
nfail=0 nhung=0 nok=0
for p in $_pids; do
	wait "$p"
	case $? in 0) nok=$((nok + 1)) ;; 124) nhung=$((nhung + 1)) ;; *) nfail=$((nfail + 1)) ;; esac
done
t1=$(ms_now)
nvme_clear
connect ",nr_io_queues=1" 60
info "daemon stopped $((t_stop - t0)) ms into a storm of $NB connects, started 1 s later: $nok connected, $nfail failed, $nhung hung; handshakes ok before the stop $((_mid - _ok0)), after $(( $(grep -c "kernel door: psk .*: ok" "$W/ktlsxd.log") - _mid)); all ended in $((t1 - t0)) ms; a fresh connect then: rc $CONNECT_RC; $(grep 'kernel door: psk\|stopping' "$W/ktlsxd.log" | grep -v ': ok' | tail -2 | tr '\n' ' ')"
if [ "$STOPPED_OK" = 0 ]; then
	fail kdoor-restart-storm "ktlsxd was still running after its SIGTERM: the storm never met a stopped daemon"
elif [ "$nhung" -eq 0 ] && [ $((nok + nfail)) -eq "$NB" ] && [ "$CONNECT_RC" -eq 0 ]; then
	pass kdoor-restart-storm
else
	fail kdoor-restart-storm "$nok connected, $nfail failed, $nhung hung (timeout 90 s); fresh connect rc $CONNECT_RC: $(tr '\n' ' ' <"$W/connect.out")"
fi
nvme_clear
stop_daemon
if [ "$B_ktlsxd_OK" = 1 ]; then pass kdoor-bench; else fail kdoor-bench "see the 'bench ktlsxd' line"; fi
if [ "${B_tlshd_OK:-0}" = 1 ] && [ "$B_ktlsxd_OK" = 1 ]; then
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }
	for n in $QNS; do
		eval "_tq=\$B_tlshd_Q$n _kq=\$B_ktlsxd_Q$n"
		info "side by side | N=$n connect ms | tlshd $_tq | ktlsxd $_kq | $(ratio "$_tq" "$_kq")x |"
	done
	info "side by side | storm handshakes/s | tlshd $B_tlshd_RATE ($B_tlshd_STORM ms) | ktlsxd $B_ktlsxd_RATE ($B_ktlsxd_STORM ms) | $(ratio "$B_ktlsxd_RATE" "$B_tlshd_RATE")x |"
	info "side by side | CPU ms per handshake (VM, all) | tlshd $B_tlshd_CPU | ktlsxd $B_ktlsxd_CPU | $(ratio "$B_tlshd_CPU" "$B_ktlsxd_CPU")x |"
	if [ -n "$CG" ]; then
		info "side by side | the agent's CPU ms per handshake (its cgroup) | tlshd $B_tlshd_ACPU | ktlsxd $B_ktlsxd_ACPU | $(ratio "$B_tlshd_ACPU" "$B_ktlsxd_ACPU")x |"
		# the rest of the VM's CPU per handshake is the kernel's own (NVMe connect, TCP, kTLS
		# setup, in the writers' and kworkers' context), the same whoever answers: it caps the
		# storm's rate ratio even for an agent that cost nothing
		_kern=$(awk -v a="$B_ktlsxd_CPU" -v b="$B_ktlsxd_ACPU" 'BEGIN { printf "%.1f", a - b }')
		info "side by side | the rest of the VM's CPU ms per handshake (kernel, writers) | tlshd $(awk -v a="$B_tlshd_CPU" -v b="$B_tlshd_ACPU" 'BEGIN { printf "%.1f", a - b }') | ktlsxd $_kern | a zero-cost agent: at most $(ratio "$B_tlshd_CPU" "$_kern")x tlshd's CPU-bound storm rate |"
	fi
	info "side by side | CPU ms per handshake (user space) | tlshd $B_tlshd_UCPU | ktlsxd $B_ktlsxd_UCPU | $(ratio "$B_tlshd_UCPU" "$B_ktlsxd_UCPU")x |"
fi
rm -f "$P/subsystems/$SUBNQN"
echo "--- ktlsxd log (tail)"
tail -40 "$W/ktlsxd.log"
exit 0
