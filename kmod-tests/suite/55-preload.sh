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
# kmod-timeout: 120
. "$KMOD_LIB"
. /suite/lib-ktlsx.sh

SO=/opt/ktlsx/lib/libktlsx-preload.so
BBD=/opt/ktlsx/busybox-dynamic
CASES="preload-nginx-prefork preload-wget-nginx-tls"
kx_ready $CASES || exit 0
if [ ! -f "$SO" ] || ! have nginx || ! have curl; then
	for n in $CASES; do skip "$n" "libktlsx-preload.so, nginx or curl not in the initramfs"; done
	exit 0
fi

cd "$KMOD_TMP" || exit 1
mkdir -p www
head -c 16777216 /dev/urandom >www/16MiB
echo "hello over the shim" >www/hello.txt

# ngx_conf DIR LISTEN-LINE EXTRA...: an nginx prefix in DIR (2 workers, sendfile on)
ngx_conf() {
	_d=$1 _listen=$2
	shift 2
	mkdir -p "$_d/logs" "$_d/tmp"
	cat >"$_d/nginx.conf" <<EOF
user root;
daemon off;
master_process on;
worker_processes 2;
pid $_d/nginx.pid;
error_log $_d/logs/error.log info;
events { worker_connections 256; }
http {
    log_format withpid '\$pid \$status \$body_bytes_sent \$request';
    access_log $_d/logs/access.log withpid;
    client_body_temp_path $_d/tmp; proxy_temp_path $_d/tmp; fastcgi_temp_path $_d/tmp;
    uwsgi_temp_path $_d/tmp; scgi_temp_path $_d/tmp;
    sendfile on;
    server {
        $_listen
        $*
        root $KMOD_TMP/www;
    }
}
EOF
}
ngx_stop() { # the master ends its workers
	[ -f "$1/nginx.pid" ] && kill "$(cat "$1/nginx.pid")" 2>/dev/null
	_i=0
	while [ "$_i" -lt 50 ] && pidof nginx >/dev/null 2>&1; do sleep 0.1; _i=$((_i + 1)); done
}

# --- nginx, plaintext config, under the shim --------------------------------
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
	ngx_conf "$D" "listen 127.0.0.1:4782 ssl;" "ssl_certificate $KMOD_CERT; ssl_certificate_key $KMOD_KEY; ssl_conf_command Options KTLS;"
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
		[ "$nby" -ge 2 ] || info "$name: every request went to one worker this time ($by)"
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
exit 0
