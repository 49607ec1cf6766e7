#!/bin/sh
# make vm-bench (issue 11): file serving over kernel TLS, measured in ONE VM run with
# ktlsx-load as the client (pinned to CPU 1, every server pinned to CPU 0):
#   fileserver           ktlsx-fileserver --workers 1 (kernel TLS, bodies by sendfile(2))
#   fileserver-splice    the same with --body splice (io_uring: file -> pipe -> socket)
#   nginx-ktls           nginx, 1 worker, sendfile on + ssl_conf_command Options KTLS
#   nginx-user           nginx, 1 worker, user-space TLS (nginx turns sendfile off under SSL)
# x files of 4 KiB, 128 KiB, 1 MiB, 64 MiB x 1 and 64 keep-alive connections, TLS 1.3
# AES-128-GCM everywhere; plus
#   ceiling              ktlsx-ktls-ceiling: one connection, keys installed by ktlsx on both
#                        ends, sendfile(2) of 64 MiB in a loop, the reader discards
# All servers are started first and probed with curl (user-space TLS, 1 MiB, compared byte
# for byte): kernel TLS TX is "yes" when TlsTxSw rose.  nginx-ktls without it is reported
# unavailable, not measured.  Then case by case (file x connections) every server in turn,
# so that whatever else the host does meanwhile hits the servers of one case alike.
# Output (fd 3, the console): "KMOD-INFO <kernel> BENCH key=value ..." lines, one per row,
# turned into the table by bench/vm-bench-report.sh on the host; one result per server.
# The whole matrix (and the ceiling) runs VM_BENCH_ROUNDS times; the report keeps each row's best
# run (on a shared host other work only ever lowers a figure).
# Environment (kernel command line): VM_BENCH_SECS (measured seconds per row, default 3; 64 MiB
# rows twice that), VM_BENCH_ROUNDS (default 1: ~8 min for the whole VM on a busy 2-core host;
# 2 takes ~17 min), VM_BENCH_ONLY (a substring of the server names).
# kmod-timeout: 1100
. "$KMOD_LIB"
. "$(dirname "$0")/lib-bench.sh"   # bench_files, json_num, probe, row, want

SECS=${VM_BENCH_SECS:-3}
ROUNDS=${VM_BENCH_ROUNDS:-1}
ONLY=${VM_BENCH_ONLY:-}
W=$KMOD_TMP
mkdir -p "$W/www"
cd "$W" || exit 1
bench_files www
info "BENCH-ENV cpus=$(nproc) mem=$(awk '/MemTotal/ {print $2 "kB"}' /proc/meminfo) kernel=$(uname -r) cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1 | tr ' ' '_')"
info "BENCH-ENV openssl=$(openssl version | tr ' ' '_') nginx=$(nginx -v 2>&1 | sed 's/.*\///')"

PIN=
have taskset && PIN="taskset -c 0"


# --- the servers, all started first (idle ones cost nothing) -----------------
# SERVERS: "name:port:ktls_tx" of those that serve
SERVERS=
PIDS=
add_server() { # add_server NAME PORT PID
	_kmod_bg_pids="$_kmod_bg_pids $3"
	PIDS="$PIDS $3"
	if ! wait_port "$2" 30; then
		fail "bench-$1" "did not listen on $2: $(tail -1 "$W/$1.err" 2>/dev/null)"
		return
	fi
	k=$(probe "$1" "$2" | tail -1)
	info "BENCH-PROBE server=$1 ktls_tx=$k"
	case "$1:$k" in
	*:fail) fail "bench-$1" "curl could not fetch 1 MiB byte-exact" ;;
	nginx-ktls:no)
		info "BENCH server=$1 file=all conns=all status=unavailable why=nginx_did_not_use_kernel_TLS_(TlsTxSw_did_not_rise)"
		skip "bench-$1" "this nginx/OpenSSL did not move TX into the kernel (TlsTxSw did not rise)" ;;
	nginx-user:yes) fail "bench-$1" "user-space nginx moved TX into the kernel?" ;;
	fileserver*:no) fail "bench-$1" "ktlsx-fileserver did not use kernel TLS" ;;
	*) SERVERS="$SERVERS $1:$2:$k:$3" ;;
	esac
}

for mode in sendfile splice; do
	name=fileserver port=4800
	[ "$mode" = splice ] && name=fileserver-splice port=4801
	want "$name" || continue
	if ! have ktlsx-fileserver; then skip "bench-$name" "ktlsx-fileserver not in the initramfs"; continue; fi
	$PIN ktlsx-fileserver --root www --listen "127.0.0.1:$port" --cert "$KMOD_CERT" --key "$KMOD_KEY" \
		--workers 1 --body "$mode" --send-timeout 300000 >"$W/$name.out" 2>"$W/$name.err" </dev/null &
	add_server "$name" "$port" $!
done

file_nginx_conf() { # file_nginx_conf PORT KTLS(yes|no): the file-serving nginx, its prefix printed
	d=$W/nginx-$1
	extra=
	[ "$2" = yes ] && extra="ssl_conf_command Options KTLS;"
	bench_nginx_conf "$d" "$1" "sendfile on;" "$extra root $W/www;"
	echo "$d"
}
for kind in ktls user; do
	name=nginx-$kind port=4810
	[ "$kind" = user ] && port=4811
	want "$name" || continue
	if ! have nginx; then skip "bench-$name" "nginx not in the initramfs"; continue; fi
	d=$(file_nginx_conf "$port" "$([ "$kind" = ktls ] && echo yes || echo no)")
	$PIN nginx -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" </dev/null >"$W/$name.err" 2>&1 &
	add_server "$name" "$port" $!
done

# --- the matrix: case by case, every server in turn; ROUNDS times -------------
ceiling() {
	tls_stat_snapshot "$W/ceil.stat"
	timeout $((SECS * 2 + 60)) ktlsx-ktls-ceiling --file www/64m.bin --cert "$KMOD_CERT" --key "$KMOD_KEY" \
		--ca "$KMOD_CA" --seconds $((SECS * 2)) --warmup 1 >"$W/ceil.out" 2>"$W/ceil.err"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		mbps=$(sed -n 's/.*mbps=\([0-9.]*\).*/\1/p' "$W/ceil.out")
		info "BENCH server=ceiling file=64m conns=1 status=ok ktls_tx=yes mbps=$mbps rps=0 reqs=0 secs=$((SECS * 2)) tx_sw=$(tls_stat_delta "$W/ceil.stat" TlsTxSw) rx_sw=$(tls_stat_delta "$W/ceil.stat" TlsRxSw) round=$round"
	else
		info "BENCH server=ceiling file=64m conns=1 status=failed why=rc_${rc}_$(tail -1 "$W/ceil.err" | tr ' ' '_')"
		echo "exit $rc: $(tail -1 "$W/ceil.err")" >"$W/ceil.failed"
	fi
}
# fileserver-splice last in each case: after 64 x 64 MiB its io-wq workers stayed busy for more
# than 20 s (docs/fileserver.md), and a server measured in that spell on the same vCPU is starved
SERVERS="$(for e in $SERVERS; do case $e in fileserver-splice:*) ;; *) printf '%s ' "$e" ;; esac; done)$(
	for e in $SERVERS; do case $e in fileserver-splice:*) printf '%s' "$e" ;; esac; done)"
round=0
while [ "$round" -lt "$ROUNDS" ]; do
round=$((round + 1))
# the ceiling first: the last case (64 x 64 MiB) may leave a server busy
if want ceiling && have ktlsx-ktls-ceiling; then ceiling; fi
for fs_case in 4k:4096:1 4k:4096:64 128k:131072:1 128k:131072:64 1m:1048576:1 1m:1048576:64 \
	64m:67108864:1 64m:67108864:64; do
	c_file=${fs_case%%:*} c_rest=${fs_case#*:}
	c_size=${c_rest%%:*} c_conns=${c_rest#*:}
	for s_ent in $SERVERS; do
		s_name=${s_ent%%:*} s_rest=${s_ent#*:}
		s_port=${s_rest%%:*} s_rest=${s_rest#*:}
		s_ktls=${s_rest%%:*} s_pid=${s_rest#*:}
		row "$s_name" "$s_port" "$s_ktls" "$c_file" "$c_size" "$c_conns" "$s_pid" || echo "$s_name" >>"$W/failed-rows"
	done
done
done
bench_verdicts $((8 * ROUNDS)) 3

# --- the kernel's own ceiling (measured in each round above) -------------------
if want ceiling; then
	if ! have ktlsx-ktls-ceiling; then skip bench-ceiling "ktlsx-ktls-ceiling not in the initramfs"
	elif [ -s "$W/ceil.failed" ]; then fail bench-ceiling "$(cat "$W/ceil.failed")"
	else pass bench-ceiling; fi
fi
exit 0
