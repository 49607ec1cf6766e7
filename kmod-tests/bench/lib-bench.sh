# Helpers of the make vm-bench scripts (kmod-tests/bench/[0-9]*.sh), sourced after $KMOD_LIB.
# Callers set SECS (measured seconds per row), ONLY (server-name filter), W (scratch dir, the
# current directory, with www/ holding the files) and round (the round number, for the lines).

# bench_files DIR: the benchmark files, random bytes: 4k 128k 1m 64m (.bin)
bench_files() {
	mkdir -p "$1"
	for _s in 4k:4096 128k:131072 1m:1048576 64m:67108864; do
		[ -s "$1/${_s%%:*}.bin" ] || head -c "${_s#*:}" /dev/urandom >"$1/${_s%%:*}.bin"
	done
}

# json_num FILE KEY: a number from ktlsx-load's JSON (first occurrence)
json_num() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" "$1" | head -1; }

# probe NAME PORT: kernel TLS TX on the server's side (curl is user-space: only the server moves)
probe() {
	tls_stat_snapshot "$W/probe.stat"
	if ! timeout 120 curl -sS --cacert "$KMOD_CA" --tlsv1.3 -o "$W/probe.out" "https://localhost:$2/1m.bin" 2>"$W/probe.err"; then
		echo "probe $1: curl failed: $(tail -1 "$W/probe.err")"
		echo fail
		return
	fi
	if ! cmp -s "$W/probe.out" www/1m.bin; then echo "probe $1: bytes differ"; echo fail; return; fi
	if [ "$(tls_stat_delta "$W/probe.stat" TlsTxSw)" -ge 1 ]; then echo yes; else echo no; fi
}

# cpu_ticks PID: user + system clock ticks (USER_HZ, 100/s) of PID and its reaped children
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
uptime_cs() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }

# settle NAME PID: wait (at most 20 s) until the server has gone quiet (< 4 % CPU over 0.5 s):
# a server still busy with the connections a run left behind must not steal the next row's CPU
settle() {
	_i=0
	while [ "$_i" -lt 40 ]; do
		_t=$(cpu_ticks "$2")
		sleep 0.5
		[ $(( $(cpu_ticks "$2") - _t )) -le 2 ] && return 0
		_i=$((_i + 1))
	done
	# which threads burn it (io_uring's io-wq workers are threads of the server): name, state, ticks, wchan
	_th=$(for _d in /proc/"$2"/task/*; do
		printf '%s/%s/%s/%s,' "$(cat "$_d/comm" 2>/dev/null | tr ' ' '_')" \
			"$(awk '{ sub(/^.*\) /, ""); print $1 "/" $12 + $13 }' "$_d/stat" 2>/dev/null)" "$(cat "$_d/wchan" 2>/dev/null)"
	done | cut -c1-600)
	info "BENCH-NOTE server=$1 still busy 20 s after its row (CPU $(( $(cpu_ticks "$2") - _t )) ticks in the last 0.5 s; threads: $_th tcp: $(awk 'NR > 1 { n[$4]++ } END { for (s in n) printf "%s=%d ", s, n[s] }' /proc/net/tcp))"
}

# row SERVER PORT KTLS FILE SIZE CONNS [PID]: one ktlsx-load run, one BENCH line; with PID the
# server's CPU use over the run (srv_cpu, % of one CPU) and a settle afterwards
row() {
	srv=$1 port=$2 ktls=$3 f=$4 size=$5 conns=$6 spid=${7:-}
	c0=0 u0=$(uptime_cs)
	[ -n "$spid" ] && c0=$(cpu_ticks "$spid")
	warm=1 secs=$SECS
	# 64 connections: their handshakes (tens of ms each under TCG) stay in the warm-up
	[ "$conns" -gt 1 ] && warm=3
	[ "$conns" -gt 1 ] && [ "$size" -ge 67108864 ] && warm=5
	# 64 MiB: a response takes seconds under TCG; MB/s then counts every byte of the window
	[ "$size" -ge 67108864 ] && secs=$((SECS * 2))
	out=$W/load-$srv-$f-$conns.json
	timeout $((warm + secs + 90)) ktlsx-load "127.0.0.1:$port" --mode download --path "/$f.bin" --expect-size "$size" \
		--connections "$conns" --duration "$secs" --warmup "$warm" --timeout 300000 --tls 1.3 \
		--ciphers TLS_AES_128_GCM_SHA256 --ca "$KMOD_CA" --sni localhost --cpu 1 --json >"$out" 2>"$out.err"
	rc=$?
	srv_cpu=-
	[ -n "$spid" ] && srv_cpu=$(( ($(cpu_ticks "$spid") - c0) * 100 / ($(uptime_cs) - u0 + 1) ))
	[ -n "$spid" ] && settle "$srv" "$spid"
	dur=$(json_num "$out" duration_s) reqs=$(json_num "$out" requests) rate=$(json_num "$out" rate)
	rx=$(json_num "$out" bytes_rx) body=$(json_num "$out" body_bytes_per_s) errs=$(json_num "$out" total)
	p50=$(json_num "$out" p50) p99=$(json_num "$out" p99)
	if [ -z "$dur" ] || [ -z "$rx" ] || [ "$rx" = 0 ]; then
		info "BENCH server=$srv file=$f conns=$conns group=${BENCH_GROUP:-main} status=failed rc=$rc srv_cpu=$srv_cpu why=$(head -1 "$out.err" | tr ' ' '_')"
		return 1
	fi
	# MB/s: bodies of the responses completed in the window when there are many of them;
	# else (a few responses per window, or none) every byte received in the window (heads ~0 %)
	mbps=$(awk -v r="$reqs" -v c="$conns" -v b="$body" -v x="$rx" -v d="$dur" \
		'BEGIN { if (r >= 4 * c) printf "%.2f", b / 1e6; else printf "%.2f", x / d / 1e6 }')
	info "BENCH server=$srv file=$f conns=$conns group=${BENCH_GROUP:-main} status=ok ktls_tx=$ktls mbps=$mbps rps=$rate reqs=$reqs secs=$dur p50_us=$p50 p99_us=$p99 errors=$errs srv_cpu=$srv_cpu rc=$rc round=$round"
	return 0
}

want() { case "$1" in *"$ONLY"*) return 0 ;; esac; return 1; }

# bench_nginx_conf DIR PORT HTTP-LINES SERVER-LINES: nginx_conf (suite/lib.sh) for one nginx worker
# (no master) with a TLS 1.3 server on 127.0.0.1:PORT and the harness's certificate, keep-alive without
# limits, no access log; HTTP-LINES go into the http block, SERVER-LINES into the server block (the kTLS
# option, a root or a proxy_pass)
bench_nginx_conf() {
	nginx_conf "$1" 1 warn "listen 127.0.0.1:$2 ssl;" \
		"access_log off; keepalive_requests 1000000; keepalive_timeout 300s; send_timeout 300s; $3" \
		"$NGINX_TLS_CERT ssl_protocols TLSv1.3; $4"
}

# bench_verdicts RUNS TAIL: one PASS/FAIL per server in $SERVERS from $W/failed-rows (RUNS rows
# each), then stop $PIDS and show the last TAIL lines of each server's stderr
bench_verdicts() {
	for _s in $SERVERS; do
		_n=$(grep -cx "${_s%%:*}" "$W/failed-rows" 2>/dev/null)
		if [ "${_n:-0}" -eq 0 ]; then pass "bench-${_s%%:*}"
		else fail "bench-${_s%%:*}" "$_n of $1 runs failed (see the BENCH lines)"; fi
	done
	for _p in $PIDS; do kill "$_p" 2>/dev/null; done
	sleep 0.5
	for _s in $SERVERS; do echo "--- ${_s%%:*}"; tail -n "$2" "$W/${_s%%:*}.err"; done
}
