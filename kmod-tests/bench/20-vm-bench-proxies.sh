#!/bin/sh
# make vm-bench, issue 10's rows: a plaintext server (busybox httpd) made TLS three ways, measured
# with ktlsx-load (CPU 1; servers on CPU 0), TLS 1.3 AES-128-GCM:
#   preload-httpd     Debian's dynamic busybox httpd under LD_PRELOAD=libktlsx-preload.so,
#                     KTLSX_SERVE=port (the shim's TLS in the server process, kernel TLS after
#                     the handshake)
#   stunnel-httpd     stunnel4 (Debian's, as configured out of the box: user-space TLS unless
#                     the probe says otherwise) in front of the static busybox httpd
#   nginx-proxy-httpd nginx (1 worker, ssl_conf_command Options KTLS) proxy_pass to the same httpd
# Rows: 4 KiB over 1 and 16 connections (p50 / p99 request latency, requests/s), 1 MiB and 64 MiB
# over one connection (MB/s).  busybox httpd closes after each response: the preload and stunnel
# rows pay a TCP connect + TLS handshake per request (counted in requests/s, not in the request
# latency, which runs from the request's first byte to the response's last); nginx keeps the
# client's connection and opens one to httpd per request.
# Environment: VM_BENCH_SECS (default 3), VM_BENCH_PROXY_ROUNDS (default 1), VM_BENCH_ONLY.
# kmod-timeout: 600
. "$KMOD_LIB"
. "$(dirname "$0")/lib-bench.sh"   # bench_files, json_num, probe, row, want

SECS=${VM_BENCH_SECS:-3}
ROUNDS=${VM_BENCH_PROXY_ROUNDS:-1}
ONLY=${VM_BENCH_ONLY:-}
W=$KMOD_TMP
cd "$W" || exit 1
bench_files www
SO=${BENCH_PRELOAD_SO:-/opt/ktlsx/lib/libktlsx-preload.so}
BBD=${BENCH_BUSYBOX_DYN:-/opt/ktlsx/busybox-dynamic}
PIN=
have taskset && PIN="taskset -c 0"
BENCH_GROUP=proxy
SERVERS=
PIDS=
round=0

add_front() { # add_front NAME PORT PID
	_kmod_bg_pids="$_kmod_bg_pids $3"
	PIDS="$PIDS $3"
	if ! wait_port "$2" 30; then
		fail "bench-$1" "did not listen on $2: $(tail -1 "$W/$1.err" 2>/dev/null)"
		return
	fi
	k=$(probe "$1" "$2" | tail -1)
	info "BENCH-PROBE server=$1 ktls_tx=$k"
	if [ "$k" = fail ]; then fail "bench-$1" "curl could not fetch 1 MiB byte-exact: $(tail -3 "$W/$1.err" | tr '\n' ' ')"; return; fi
	SERVERS="$SERVERS $1:$2:$k:$3"
}

# the plaintext origin (static busybox) for stunnel and nginx
if want stunnel-httpd || want nginx-proxy-httpd; then
	$PIN busybox httpd -f -p 127.0.0.1:8080 -h www </dev/null >"$W/origin.err" 2>&1 &
	_kmod_bg_pids="$_kmod_bg_pids $!"
	PIDS="$PIDS $!"
	wait_port 8080 20 || info "plain busybox httpd did not listen on 8080"
fi

if want preload-httpd; then
	if [ ! -f "$SO" ] || [ ! -x "$BBD" ]; then
		skip bench-preload-httpd "libktlsx-preload.so or the dynamic busybox not in the initramfs"
	else
		env LD_PRELOAD="$SO" KTLSX_SERVE=4820 KTLSX_CERT="$KMOD_CERT" KTLSX_KEY="$KMOD_KEY" \
			$PIN "$BBD" httpd -f -p 127.0.0.1:4820 -h www </dev/null >"$W/preload-httpd.err" 2>&1 &
		add_front preload-httpd 4820 $!
	fi
fi

if want stunnel-httpd; then
	if ! have stunnel4; then
		skip bench-stunnel-httpd "stunnel4 not in the initramfs (tools/install-deps.sh installs it)"
	else
		cat >"$W/stunnel.conf" <<EOF
foreground = yes
pid =
debug = 4
[https]
accept = 127.0.0.1:4821
connect = 127.0.0.1:8080
cert = $KMOD_CERT
key = $KMOD_KEY
sslVersionMin = TLSv1.3
EOF
		$PIN stunnel4 "$W/stunnel.conf" </dev/null >"$W/stunnel-httpd.err" 2>&1 &
		add_front stunnel-httpd 4821 $!
	fi
fi

if want nginx-proxy-httpd; then
	if ! have nginx; then
		skip bench-nginx-proxy-httpd "nginx not in the initramfs"
	else
		d=$W/nginx-proxy
		bench_nginx_conf "$d" 4822 "" "ssl_conf_command Options KTLS; location / { proxy_pass http://127.0.0.1:8080; proxy_read_timeout 300s; }"
		$PIN nginx -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" </dev/null >"$W/nginx-proxy-httpd.err" 2>&1 &
		add_front nginx-proxy-httpd 4822 $!
	fi
fi

while [ "$round" -lt "$ROUNDS" ]; do
	round=$((round + 1))
	for p_case in 4k:4096:1 4k:4096:16 1m:1048576:1 64m:67108864:1; do
		c_file=${p_case%%:*} c_rest=${p_case#*:}
		c_size=${c_rest%%:*} c_conns=${c_rest#*:}
		for s_ent in $SERVERS; do
			s_name=${s_ent%%:*} s_rest=${s_ent#*:}
			s_port=${s_rest%%:*} s_rest=${s_rest#*:}
			row "$s_name" "$s_port" "${s_rest%%:*}" "$c_file" "$c_size" "$c_conns" "${s_rest#*:}" ||
				echo "$s_name" >>"$W/failed-rows"
		done
	done
done
bench_verdicts $((4 * ROUNDS)) 5
exit 0
