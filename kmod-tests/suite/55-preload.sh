#!/bin/sh
# The preload shim (issue 10) with programs nobody here wrote, on kernel TLS:
#   preload-nginx-prefork   Debian's nginx with a plaintext `listen 4781;` config, a master and 2
#                           workers (the listener made by the master, inherited by the workers, which
#                           accept4 on it with epoll/EPOLLEXCLUSIVE), sendfile on, under
#                           LD_PRELOAD=libktlsx-preload.so (KTLSX_SERVE, key in the process): curl
#                           fetches 16 MiB byte-exact, TlsTxSw rose, the shim says "sendfile: through
#                           kernel TLS" and never "user-space record layer"; then 12 concurrent
#                           small fetches all served (by both workers, usually: the
#                           split is reported)
#   preload-wget-nginx-tls  nginx's own HTTPS (ssl_conf_command Options KTLS, sendfile on) on 4782;
#                           Debian's dynamic busybox `wget http://127.0.0.1:4782/16MiB` under the shim
#                           with a connect rule: byte-exact, TlsTxSw +2 (nginx and the shim's client)
#                           and TlsRxSw +1 or more (the shim's client): kernel TLS at both ends; the
#                           shim did not fall back to user-space records
#   preload-httpd-s_client  Debian's dynamic busybox `httpd -f` (blocking accept, a fork per
#                           connection) under the shim (KTLSX_SERVE, key in the process):
#                           `openssl s_client` fetches 16 MiB byte-exact (header + Content-Length
#                           + body), TlsTxSw rose, no fallback to user-space records
#   preload-httpd-stall     the same server, handshake deadline 8 s (KTLSX_HANDSHAKE_TIMEOUT_MS):
#                           two busybox nc stall mid-handshake (one says nothing, one sends a
#                           record header and the first bytes of a ClientHello, then both hold
#                           the connection); meanwhile 3 curls in a row are served, each in < 4 s,
#                           and both stallers are still connected after them; then the server cuts
#                           each staller 7..16 s after it connected (the deadline)
#   preload-lighttpd-sendfile  Debian's lighttpd (epoll, nonblocking accept4, sendfile) with a
#                           minimal plaintext config (no modules) under the shim (KTLSX_SERVE,
#                           key in the process), a staller held mid-handshake all along: curl
#                           fetches 16 MiB byte-exact, TlsTxSw rose, the shim says "sendfile:
#                           through kernel TLS" and never "user-space record layer"
#   preload-epoll-server    tests/preload/epoll_http.c (a nonblocking edge-triggered epoll server in
#                           the style of a typical event loop, 4 KiB writes) under the shim
#                           (KTLSX_SERVE, key in the process): curl fetches 16 MiB byte-exact while 4
#                           concurrent small fetches are served too; TlsTxSw and TlsRxSw rose (the
#                           program's reads and writes go through kernel TLS), no fallback
# kmod-timeout: 180
. "$KMOD_LIB"
. /suite/lib-ktlsx.sh

SO=/opt/ktlsx/lib/libktlsx-preload.so
BBD=/opt/ktlsx/busybox-dynamic
NG_CASES="preload-nginx-prefork preload-wget-nginx-tls"
BB_CASES="preload-httpd-s_client preload-httpd-stall"
LT_CASES="preload-lighttpd-sendfile"
EP_CASES="preload-epoll-server"
kx_ready $NG_CASES $BB_CASES $LT_CASES $EP_CASES || exit 0
if [ ! -f "$SO" ] || ! have curl; then
	for n in $NG_CASES $BB_CASES $LT_CASES $EP_CASES; do skip "$n" "libktlsx-preload.so or curl not in the initramfs"; done
	exit 0
fi

cd "$KMOD_TMP" || exit 1
mkdir -p www
head -c 16777216 /dev/urandom >www/16MiB
echo "hello over the shim" >www/hello.txt

# ngx_conf DIR LISTEN-LINE [SERVER-LINES]: an nginx prefix in DIR (a master and 2 workers, sendfile on,
# an access log that names the worker of each request)
ngx_conf() {
	nginx_conf "$1" 2 info "$2" \
		"log_format withpid '\$pid \$status \$body_bytes_sent \$request'; access_log $1/logs/access.log withpid; sendfile on;" \
		"${3:-} root $KMOD_TMP/www;"
}
ngx_stop() { # the master ends its workers
	[ -f "$1/nginx.pid" ] && kill "$(cat "$1/nginx.pid")" 2>/dev/null
	_i=0
	while [ "$_i" -lt 50 ] && pidof nginx >/dev/null 2>&1; do sleep 0.1; _i=$((_i + 1)); done
}

# --- nginx, plaintext config, under the shim --------------------------------
if ! have nginx; then
	for n in $NG_CASES; do skip "$n" "nginx not in the initramfs"; done
else
name=preload-nginx-prefork
D=$KMOD_TMP/ng1
ngx_conf "$D" "listen 4781;"
snap=$KMOD_TMP/snap1; tls_stat_snapshot "$snap"
bg env LD_PRELOAD="$SO" KTLSX_SERVE=4781 KTLSX_CERT="$KMOD_CERT" KTLSX_KEY="$KMOD_KEY" KTLSX_LOG=info \
	timeout 60 nginx -p "$D" -c "$D/nginx.conf" -e "$D/logs/error.log"
if ! wait_port 4781 15; then
	fail "$name" "nginx under the shim did not listen: $(tail -2 "$D/logs/error.log")"
else
	sleep 0.5 # the workers start after the master's listen
	T0=$(date +%s)
	timeout 60 curl -sS --cacert "$KMOD_CA" -o got1 "https://localhost:4781/16MiB" 2>curl1.err
	crc=$?
	T1=$(date +%s)
	tx=$(tls_stat_delta "$snap" TlsTxSw)
	i=0 bad=0 pids=
	while [ "$i" -lt 12 ]; do
		timeout 20 curl -sS -m 10 --cacert "$KMOD_CA" -o "small.$i" "https://localhost:4781/hello.txt" 2>/dev/null &
		pids="$pids $!"
		i=$((i + 1))
	done
	for p in $pids; do wait "$p"; done
	i=0
	while [ "$i" -lt 12 ]; do cmp -s "small.$i" www/hello.txt || bad=$((bad + 1)); i=$((i + 1)); done
	T2=$(date +%s)
	ngx_stop "$D"
	by=$(awk '$2 == 200 {print $1}' "$D/logs/access.log" | sort | uniq -c | awk '{printf "%s ", $1}')
	nby=$(awk '$2 == 200 {print $1}' "$D/logs/access.log" | sort -u | wc -l)
	[ "$nby" -ge 2 ] || info "$name: every request went to one worker this time ($by)"
	info "$name: 16 MiB in $((T1 - T0))s, 12 small in $((T2 - T1))s, requests per worker: $by; $(kx_stat_line "$snap")"
	grep -a 'ktlsx-preload' "$D/logs/error.log" | sort | uniq -c | sort -rn | head -4
	if [ "$crc" -ne 0 ]; then fail "$name" "curl exit $crc: $(tail -1 curl1.err); $(grep -a -m1 'ktlsx-preload' "$D/logs/error.log")"
	elif ! cmp -s got1 www/16MiB; then fail "$name" "not byte-exact ($(fsize got1) bytes)"
	elif [ "$tx" -lt 1 ]; then fail "$name" "TlsTxSw +$tx: the shim did not put TX in the kernel; $(grep -a -m1 'kernel TLS' "$D/logs/error.log")"
	elif grep -a -q 'user-space record layer carries' "$D/logs/error.log"; then fail "$name" "the shim says: $(grep -a -m1 'user-space record layer' "$D/logs/error.log")"
	elif ! grep -a -q 'sendfile: through kernel TLS' "$D/logs/error.log"; then fail "$name" "nginx's sendfile did not reach kernel TLS (no shim line)"
	elif [ "$bad" -ne 0 ]; then fail "$name" "$bad of 12 concurrent fetches failed or differ"
	else pass "$name"; fi
fi
rm -f got1 small.*

# --- busybox wget under the shim, from nginx's own HTTPS ----------------------
name=preload-wget-nginx-tls
D=$KMOD_TMP/ng2
if [ ! -x "$BBD" ]; then
	skip "$name" "no dynamic busybox in the initramfs (the static one is out of LD_PRELOAD's reach)"
else
	ngx_conf "$D" "listen 127.0.0.1:4782 ssl;" "$NGINX_TLS_CERT ssl_conf_command Options KTLS;"
	bg timeout 60 nginx -p "$D" -c "$D/nginx.conf" -e "$D/logs/error.log"
	if ! wait_port 4782 15; then
		fail "$name" "nginx (TLS) did not listen: $(tail -2 "$D/logs/error.log")"
	else
		printf 'log info\nconnect 127.0.0.1:4782 name=localhost ca=%s\n' "$KMOD_CA" >wget.rules
		snap=$KMOD_TMP/snap2; tls_stat_snapshot "$snap"
		T0=$(date +%s)
		env LD_PRELOAD="$SO" KTLSX_RULES="$KMOD_TMP/wget.rules" timeout 60 "$BBD" wget -q -O got2 \
			"http://127.0.0.1:4782/16MiB" >wget.out 2>wget.err
		wrc=$?
		T1=$(date +%s)
		tx=$(tls_stat_delta "$snap" TlsTxSw) rx=$(tls_stat_delta "$snap" TlsRxSw)
		info "$name: 16 MiB in $((T1 - T0))s; $(kx_stat_line "$snap")"
		cat wget.err
		if [ "$wrc" -ne 0 ]; then fail "$name" "wget exit $wrc: $(tail -1 wget.err)"
		elif ! cmp -s got2 www/16MiB; then fail "$name" "not byte-exact ($(fsize got2) bytes)"
		elif grep -a -q 'user-space record layer carries' wget.err; then fail "$name" "the shim says: $(grep -a -m1 'user-space record layer' wget.err)"
		elif [ "$tx" -lt 2 ]; then fail "$name" "TlsTxSw +$tx: expected +2 (nginx's and the shim's TX in the kernel)"
		elif [ "$rx" -lt 1 ]; then fail "$name" "TlsRxSw +$rx: the shim's client did not receive through kernel TLS"
		else pass "$name"; fi
	fi
	ngx_stop "$D"
	rm -f got2
fi
fi # nginx

# --- stallers: busybox nc holding a connection mid-handshake ---------------------
now() { awk '{print $1}' /proc/uptime; }
# gone PID: the background process ended (a zombie child counts as ended)
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
# staller_start N PORT HOW: nc connects to PORT and holds the connection; its stdin is a fifo whose
# write end this shell keeps open as fd 6+N, so nc never sees end of input. HOW: quiet (says
# nothing) or half (a handshake record header announcing 257 bytes, then 34 of them: the start
# of a ClientHello). Sets STALL_PID; STALL_T0_N is when it started (uptime seconds).
staller_start() {
	rm -f "st$1.fifo"
	mkfifo "st$1.fifo"
	nc 127.0.0.1 "$2" <"st$1.fifo" >"st$1.out" 2>&1 &
	STALL_PID=$!
	_kmod_bg_pids="$_kmod_bg_pids $STALL_PID"
	eval "exec $((6 + $1))>st$1.fifo"
	[ "$3" = half ] && printf '\026\003\001\001\001\001\001\001\001\003\003RRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR' >&$((6 + $1))
	eval "STALL_T0_$1=\$(now)"
}
staller_stop() { kill "$2" 2>/dev/null; eval "exec $((6 + $1))>&-"; rm -f "st$1.fifo"; }

# --- busybox httpd under the shim: openssl s_client, stalled handshakes --------
if [ ! -x "$BBD" ] || ! have openssl; then
	for n in $BB_CASES; do skip "$n" "no dynamic busybox or openssl in the initramfs"; done
else
	bg env LD_PRELOAD="$SO" KTLSX_SERVE=4783 KTLSX_CERT="$KMOD_CERT" KTLSX_KEY="$KMOD_KEY" KTLSX_LOG=info \
		KTLSX_HANDSHAKE_TIMEOUT_MS=8000 timeout 90 "$BBD" httpd -f -p 127.0.0.1:4783 -h "$KMOD_TMP/www" \
		>bb.out 2>bb.err </dev/null
	BB_PID=$BG_PID
	if ! wait_port 4783 15; then
		for n in $BB_CASES; do fail "$n" "busybox httpd under the shim did not listen: $(tail -1 bb.err)"; done
	else
		name=preload-httpd-s_client
		snap=$KMOD_TMP/snap3; tls_stat_snapshot "$snap"
		printf 'GET /16MiB HTTP/1.0\r\nHost: localhost\r\n\r\n' >req.txt
		T0=$(date +%s)
		timeout 90 openssl s_client -quiet -ign_eof -connect 127.0.0.1:4783 -servername localhost \
			-verify_return_error -CAfile "$KMOD_CA" <req.txt >sc.out 2>sc.err
		src=$?
		T1=$(date +%s)
		tx=$(tls_stat_delta "$snap" TlsTxSw)
		# the response is a header ending in an empty line, then the file: its last 16 MiB are the
		# body, what is before them is the header (one empty line, at its end)
		hl=$(( $(fsize sc.out) - 16777216 ))
		hend=; [ "$hl" -gt 4 ] && hend=$(head -c "$hl" sc.out | tail -c 4 | od -An -tx1 | tr -d ' \n')
		info "$name: 16 MiB in $((T1 - T0))s, header $hl bytes; $(kx_stat_line "$snap")"
		if [ "$src" -ne 0 ]; then fail "$name" "s_client exit $src: $(grep -v '^depth=\|^verify return' sc.err | tail -1)"
		elif ! head -c 12 sc.out | grep -q '^HTTP/1.[01] 200'; then fail "$name" "no 200: $(head -c 60 sc.out | tr -d '\r')"
		elif [ "$hend" != 0d0a0d0a ] || [ "$(head -c "$hl" sc.out | tr -d '\r' | grep -c '^$')" != 1 ]; then
			fail "$name" "the response is not header + 16 MiB ($(fsize sc.out) bytes)"
		elif ! head -c "$hl" sc.out | tr -d '\r' | grep -qi '^Content-Length: 16777216$'; then fail "$name" "no Content-Length: 16777216"
		elif ! tail -c 16777216 sc.out | cmp -s - www/16MiB; then fail "$name" "the body differs from the file"
		elif [ "$tx" -lt 1 ]; then fail "$name" "TlsTxSw +$tx: the shim did not put TX in the kernel; $(grep -m1 'kernel TLS' bb.err)"
		elif grep -q 'user-space record layer carries' bb.err; then fail "$name" "the shim says: $(grep -m1 'user-space record layer' bb.err)"
		else pass "$name"; fi
		rm -f sc.out

		name=preload-httpd-stall
		staller_start 1 4783 quiet; P1=$STALL_PID
		staller_start 2 4783 half; P2=$STALL_PID
		sleep 0.5 # both connected: their handshakes are running on shim threads
		i=0 bad='' times=''
		while [ "$i" -lt 3 ]; do
			c0=$(now)
			timeout 20 curl -sS -m 15 --cacert "$KMOD_CA" -o "sm.$i" "https://localhost:4783/hello.txt" 2>"sm.$i.err"
			crc=$?
			c1=$(now)
			el=$(awk "BEGIN { printf \"%.1f\", $c1 - $c0 }")
			times="$times ${el}s"
			if [ "$crc" -ne 0 ]; then bad="$bad curl$i: exit $crc ($(tail -1 "sm.$i.err"));"
			elif ! cmp -s "sm.$i" www/hello.txt; then bad="$bad curl$i: wrong body;"
			elif awk "BEGIN { exit !($el >= 4) }"; then bad="$bad curl$i took ${el}s;"; fi
			i=$((i + 1))
		done
		held=0
		gone "$P1" || held=$((held + 1))
		gone "$P2" || held=$((held + 1))
		# the cut: each staller's nc ends when the server closes its connection
		e=$(( $(date +%s) + 25 )) cut1='' cut2=''
		while [ -z "$cut1" ] || [ -z "$cut2" ]; do
			[ -z "$cut1" ] && gone "$P1" && cut1=$(awk "BEGIN { printf \"%.1f\", $(now) - $STALL_T0_1 }")
			[ -z "$cut2" ] && gone "$P2" && cut2=$(awk "BEGIN { printf \"%.1f\", $(now) - $STALL_T0_2 }")
			[ "$(date +%s)" -ge "$e" ] && break
			sleep 0.1
		done
		staller_stop 1 "$P1"; staller_stop 2 "$P2"
		info "$name: curls behind 2 stallers:$times; stallers held after them: $held of 2; cut after ${cut1:-never}s / ${cut2:-never}s (deadline 8 s)"
		grep -a 'handshake' bb.err | sed 's/\[[0-9]*\]//' | sort | uniq -c | sort -rn | head -3
		in_window() { [ -n "$1" ] && awk "BEGIN { exit !($1 >= 7 && $1 <= 16) }"; }
		if [ -n "$bad" ]; then fail "$name" "behind the stallers:$bad"
		elif [ "$held" -ne 2 ]; then fail "$name" "a staller was cut before the curls were done ($held of 2 held)"
		elif [ -z "$cut1" ] || [ -z "$cut2" ]; then fail "$name" "a staller was not cut within 25 s (${cut1:-never}s / ${cut2:-never}s)"
		elif ! in_window "$cut1" || ! in_window "$cut2"; then fail "$name" "stallers cut after ${cut1}s / ${cut2}s: not the 8 s deadline"
		else pass "$name"; fi
		rm -f sm.*
	fi
	kill "$BB_PID" 2>/dev/null
fi

# --- lighttpd under the shim: its sendfile through kernel TLS ----------------------
name=preload-lighttpd-sendfile
if ! have lighttpd; then
	skip "$name" "lighttpd not in the initramfs (make deps installs it)"
else
	D=$KMOD_TMP/lt
	mkdir -p "$D"
	cat >"$D/lighttpd.conf" <<EOF2
server.document-root = "$KMOD_TMP/www"
server.bind = "127.0.0.1"
server.port = 4784
server.errorlog = "$D/error.log"
server.pid-file = "$D/lighttpd.pid"
EOF2
	snap=$KMOD_TMP/snap4; tls_stat_snapshot "$snap"
	bg env LD_PRELOAD="$SO" KTLSX_SERVE=4784 KTLSX_CERT="$KMOD_CERT" KTLSX_KEY="$KMOD_KEY" KTLSX_LOG=info \
		timeout 60 lighttpd -D -f "$D/lighttpd.conf" >lt.out 2>lt.err </dev/null
	LT_PID=$BG_PID
	if ! wait_port 4784 15; then
		fail "$name" "lighttpd under the shim did not listen: $(tail -1 lt.err) $(tail -1 "$D/error.log" 2>/dev/null)"
	else
		staller_start 3 4784 half; P3=$STALL_PID
		sleep 0.3
		T0=$(date +%s)
		timeout 60 curl -sS --cacert "$KMOD_CA" -o got4 "https://localhost:4784/16MiB" 2>curl4.err
		crc=$?
		T1=$(date +%s)
		tx=$(tls_stat_delta "$snap" TlsTxSw)
		held=held; gone "$P3" && held="cut already"
		staller_stop 3 "$P3"
		cat lt.err "$D/error.log" 2>/dev/null >lt.all
		info "$name: 16 MiB in $((T1 - T0))s (a staller $held); $(kx_stat_line "$snap")"
		grep -a 'ktlsx-preload' lt.all | sed 's/\[[0-9]*\]//' | sort | uniq -c | sort -rn | head -4
		if [ "$crc" -ne 0 ]; then fail "$name" "curl exit $crc: $(tail -1 curl4.err); $(grep -a -m1 'ktlsx-preload' lt.all)"
		elif ! cmp -s got4 www/16MiB; then fail "$name" "not byte-exact ($(fsize got4) bytes)"
		elif [ "$tx" -lt 1 ]; then fail "$name" "TlsTxSw +$tx: the shim did not put TX in the kernel; $(grep -a -m1 'kernel TLS' lt.all)"
		elif grep -a -q 'user-space record layer carries' lt.all; then fail "$name" "the shim says: $(grep -a -m1 'user-space record layer' lt.all)"
		elif ! grep -a -q 'sendfile: through kernel TLS' lt.all; then fail "$name" "lighttpd's sendfile did not reach kernel TLS (no shim line)"
		else pass "$name"; fi
	fi
	kill "$LT_PID" 2>/dev/null
	rm -f got4
fi

# --- an epoll server written here, under the shim -----------------------------
name=preload-epoll-server
EPH=/opt/ktlsx/tests/preload_epoll_http
if [ ! -x "$EPH" ]; then
	skip "$name" "preload_epoll_http not in the initramfs"
else
	snap=$KMOD_TMP/snap5; tls_stat_snapshot "$snap"
	bg env LD_PRELOAD="$SO" KTLSX_SERVE=4785 KTLSX_CERT="$KMOD_CERT" KTLSX_KEY="$KMOD_KEY" KTLSX_LOG=info \
		timeout 90 "$EPH" serve 4785 www et >ep.out 2>ep.err </dev/null
	EP_PID=$BG_PID
	if ! wait_port 4785 15; then
		fail "$name" "preload_epoll_http under the shim did not listen: $(tail -1 ep.err)"
	else
		T0=$(date +%s)
		timeout 60 curl -sS --cacert "$KMOD_CA" -o got5 "https://localhost:4785/16MiB" 2>curl5.err &
		BIG=$!
		small_ok=0 sp=
		for i in 1 2 3 4; do
			timeout 30 curl -sS --cacert "$KMOD_CA" -o "small5.$i" "https://localhost:4785/hello.txt" 2>"curl5.$i.err" &
			sp="$sp $!"
		done
		for p in $sp; do wait "$p"; done
		for i in 1 2 3 4; do cmp -s "small5.$i" www/hello.txt && small_ok=$((small_ok + 1)); done
		wait "$BIG"; crc=$?
		T1=$(date +%s)
		tx=$(tls_stat_delta "$snap" TlsTxSw)
		rx=$(tls_stat_delta "$snap" TlsRxSw)
		info "$name: 16 MiB in $((T1 - T0))s with 4 small fetches beside it ($small_ok served); $(kx_stat_line "$snap")"
		if [ "$crc" -ne 0 ]; then fail "$name" "curl exit $crc: $(tail -1 curl5.err); $(grep -a -m1 'ktlsx-preload' ep.err)"
		elif ! cmp -s got5 www/16MiB; then fail "$name" "not byte-exact ($(fsize got5) bytes)"
		elif [ "$small_ok" -ne 4 ]; then fail "$name" "$small_ok/4 small fetches served: $(cat curl5.*.err | tr '\n' ' ')"
		elif [ "$tx" -lt 5 ] || [ "$rx" -lt 5 ]; then fail "$name" "TlsTxSw +$tx TlsRxSw +$rx for 5 connections: not all in kernel TLS"
		elif grep -a -q 'user-space record layer carries' ep.err; then fail "$name" "the shim says: $(grep -a -m1 'user-space record layer' ep.err)"
		else pass "$name"; fi
	fi
	kill "$EP_PID" 2>/dev/null
	rm -f got5 small5.*
fi
exit 0
