#!/bin/sh
# ktlsx with --ktls require against OpenSSL and nginx, TLS 1.2 and 1.3 x
# AES-128-GCM / AES-256-GCM / ChaCha20-Poly1305 (ECDSA certificate):
#   <v>-<alg>-client-s_server  ktlsx client <-> openssl s_server (user space):
#                              16 MiB of random data each way
#   <v>-<alg>-s_client-server  openssl s_client (user space) <-> ktlsx server
#                              --echo: 16 MiB out and back
#   <v>-<alg>-client-nginx     ktlsx client <-> nginx with kTLS (sendfile of a
#                              16 MiB file): kTLS at both ends
# Each passes when the sha256 sums match, ktlsx exits 0, its summary line
# says ktls=tx+rx, /proc/net/tls_stat TlsTxSw and TlsRxSw rose for ktlsx's
# socket and TlsCurrTxSw/TlsCurrRxSw were > 0 while the transfer ran.
# kmod-timeout: 480
. "$KMOD_LIB"
. /suite/lib-ktlsx.sh

VERSIONS="1.3 1.2"
ALGS="aes128gcm aes256gcm chacha20"
SIZE=${KX_INTEROP_SIZE:-16777216}     # 16 MiB
MIB=$((SIZE / 1048576))

all=
for v in $VERSIONS; do for a in $ALGS; do
	all="$all tls1${v#1.}-$a-client-s_server tls1${v#1.}-$a-s_client-server tls1${v#1.}-$a-client-nginx"
done; done
# AES-128-CCM (off by default in ktlsx and OpenSSL, asked for by name): TLS 1.3, both directions
all="$all tls13-aes128ccm-client-s_server tls13-aes128ccm-s_client-server"
kx_ready $all || exit 0
if ! have openssl; then for n in $all; do skip "$n" "openssl not in initramfs"; done; exit 0; fi

cd "$KMOD_TMP" || exit 1
s=$(date +%s)
head -c "$SIZE" /dev/urandom >A     # server -> client
head -c "$SIZE" /dev/urandom >C     # client -> server
SHA_A=$(sha A) SHA_C=$(sha C)
info "interop: two $MIB MiB random files made in $(( $(date +%s) - s ))s"

# verdict NAME SNAP PEER_KTLS_TX PEER_KTLS_RX PROBLEM...: common checks, one result
#   PEER_KTLS_*: how many kTLS sockets the peer itself may add to the counters
verdict() {
	_name=$1 _snap=$2 _ptx=$3 _prx=$4
	shift 4
	_tx=$(tls_stat_delta "$_snap" TlsTxSw) _rx=$(tls_stat_delta "$_snap" TlsRxSw)
	_de=$(tls_stat_delta "$_snap" TlsDecryptError)
	_problem="$*"
	if [ -z "$_problem" ]; then
		if [ "$_tx" -lt 1 ] || [ "$_rx" -lt 1 ]; then
			_problem="tls_stat TlsTxSw +$_tx TlsRxSw +$_rx: no kTLS socket for ktlsx"
		elif [ "$_de" -ne 0 ]; then
			_problem="TlsDecryptError rose by $_de"
		elif [ "$KX_CUR_TX" -lt 1 ] || [ "$KX_CUR_RX" -lt 1 ]; then
			_problem="TlsCurrTxSw max $KX_CUR_TX / TlsCurrRxSw max $KX_CUR_RX during the transfer"
		fi
	fi
	info "$_name: $(( $(date +%s) - T0 ))s; tls_stat TlsTxSw=+$_tx TlsRxSw=+$_rx TlsDecryptError=+$_de; max TlsCurrTxSw=$KX_CUR_TX TlsCurrRxSw=$KX_CUR_RX; $(kx_summary "$KX_ERR" | sed 's/^ktlsx: //')"
	if [ -n "$_problem" ]; then fail "$_name" "$_problem"; else pass "$_name"; fi
}

port=4500
# --- (a) ktlsx client <-> openssl s_server (user-space TLS) -------------------
case_client_s_server() {
	v=$1 a=$2 name=tls1${1#1.}-$2-client-s_server
	kx_names "$v" "$a"
	port=$((port + 1))
	rm -f B D "$KX_STOP" s.err c.err
	KX_ERR=$KMOD_TMP/c.err
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	T0=$(date +%s)
	# s_server: sends A, writes what it gets to B; stays until B is complete
	"$KX_FEED" A B "$SIZE" 90 | timeout 120 openssl s_server -accept "127.0.0.1:$port" \
		-cert "$KMOD_CERT" -key "$KMOD_KEY" -naccept 1 -quiet $KX_OSSL >B 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	if ! wait_port "$port" 15; then
		cat s.err; touch "$KX_STOP"; fail "$name" "s_server did not listen on $port"; return
	fi
	kx_sample_start
	"$KX_FEED" C D "$SIZE" 90 | timeout 120 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" \
		--tls-version "$v" --ciphers "$KX_SUITE" --ktls require >D 2>c.err
	crc=$?
	kx_sample_stop
	touch "$KX_STOP"
	wait_pid "$spid" 20
	cat c.err s.err
	p=
	if [ "$crc" -ne 0 ]; then p="ktlsx client exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
	elif [ "$(sha D)" != "$SHA_A" ]; then p="client received $(fsize D) of $SIZE bytes, sha256 differs"
	elif [ "$(sha B)" != "$SHA_C" ]; then p="s_server received $(fsize B) of $SIZE bytes, sha256 differs"
	else p=$(kx_check_summary c.err "$v")
	fi
	verdict "$name" "$snap" 0 0 $p
	rm -f B D
}

# --- (b) openssl s_client (user-space TLS) <-> ktlsx server --echo ------------
case_s_client_server() {
	v=$1 a=$2 name=tls1${1#1.}-$2-s_client-server
	kx_names "$v" "$a"
	port=$((port + 1))
	rm -f B "$KX_STOP" s.err c.err
	KX_ERR=$KMOD_TMP/s.err
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	T0=$(date +%s)
	timeout 120 ktlsx server --listen "127.0.0.1:$port" --cert "$KMOD_CERT" --key "$KMOD_KEY" \
		--tls-version "$v" --ciphers "$KX_SUITE" --ktls require --echo --once 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	if ! wait_port "$port" 15; then
		cat s.err; fail "$name" "ktlsx server did not listen on $port"; return
	fi
	kx_sample_start
	# -no_ign_eof: close at stdin EOF (after the echo is complete);
	# -nocommands: a chunk starting with Q/R/k/K is data, not a command
	"$KX_FEED" C B "$SIZE" 90 | timeout 120 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$KMOD_CA" -verify_return_error -quiet -no_ign_eof -nocommands $KX_OSSL >B 2>c.err
	crc=$?
	kx_sample_stop
	wait_pid "$spid" 20
	src=$WAIT_RC
	cat s.err c.err
	p=
	if [ "$src" -ne 0 ]; then p="ktlsx server exit $src: $(grep -v 'handshake ok\|listening on' s.err | tail -1)"
	elif [ "$(sha B)" != "$SHA_C" ]; then p="echo: s_client got $(fsize B) of $SIZE bytes back, sha256 differs (s_client exit $crc)"
	else p=$(kx_check_summary s.err "$v")
	fi
	verdict "$name" "$snap" 0 0 $p
	rm -f B
}

# --- (c) ktlsx client <-> nginx (kTLS + sendfile) ------------------------------
NGX=$KMOD_TMP/nginx
NGX_PORT=4599
start_nginx() {
	mkdir -p "$NGX/html"
	ln -sf "$KMOD_TMP/A" "$NGX/html/blob"
	nginx_conf "$NGX" 1 info "listen 127.0.0.1:$NGX_PORT ssl;" "access_log off; sendfile on;" \
		"$NGINX_TLS_CERT ssl_protocols TLSv1.2 TLSv1.3; ssl_conf_command Options KTLS; root $NGX/html;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;"
	bg timeout 400 nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log"
	NGX_PID=$BG_PID
	wait_port "$NGX_PORT" 15
}

case_client_nginx() {
	v=$1 a=$2 name=tls1${1#1.}-$2-client-nginx
	kx_names "$v" "$a"
	if [ -z "$NGX_OK" ]; then skip "$name" "nginx not available/listening"; return; fi
	rm -f D c.err
	KX_ERR=$KMOD_TMP/c.err
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	T0=$(date +%s)
	kx_sample_start
	# stdin stays open until the body is in: at stdin EOF ktlsx ends after 2 s
	# without data, and a loaded host may pause nginx that long
	( printf 'GET /blob HTTP/1.0\r\nHost: localhost\r\n\r\n'; "$KX_FEED" - D "$SIZE" 100 ) |
		timeout 120 ktlsx client "127.0.0.1:$NGX_PORT" \
		--sni localhost --ca "$KMOD_CA" --tls-version "$v" --ciphers "$KX_SUITE" --ktls require >D 2>c.err
	crc=$?
	kx_sample_stop
	cat c.err
	head -c 200 D | head -3
	tx=$(tls_stat_delta "$snap" TlsTxSw)
	p=
	if [ "$crc" -ne 0 ]; then p="ktlsx client exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
	elif ! head -1 D | grep -q '^HTTP/1.[01] 200'; then p="no HTTP 200: $(head -1 D)"
	elif [ "$(tail -c "$SIZE" D | sha256sum | cut -d' ' -f1)" != "$SHA_A" ]; then
		p="body sha256 differs ($(fsize D) bytes with header)"
	else p=$(kx_check_summary c.err "$v")
	fi
	if [ -z "$p" ] && [ "$tx" -lt 2 ]; then
		# ktlsx's own socket counts 1: nginx (OpenSSL) did not enable kTLS TX
		tail -5 "$NGX/logs/error.log"
		info "$name: nginx did not use kTLS TX (TlsTxSw +$tx); $(kx_summary c.err | sed 's/^ktlsx: //')"
		skip "$name" "nginx/OpenSSL did not enable kTLS TX for $KX_SUITE on this kernel (TlsTxSw +$tx, ktlsx ok)"
		rm -f D
		return
	fi
	verdict "$name" "$snap" 1 1 $p
	rm -f D
}

for v in $VERSIONS; do
	for a in $ALGS; do
		case_client_s_server "$v" "$a"
		case_s_client_server "$v" "$a"
	done
done
case_client_s_server 1.3 aes128ccm
case_s_client_server 1.3 aes128ccm

NGX_OK=
if have nginx && start_nginx; then NGX_OK=1; else cat "$NGX/logs/error.log" 2>/dev/null; fi
for v in $VERSIONS; do
	for a in $ALGS; do
		case_client_nginx "$v" "$a"
	done
done
[ -n "$NGX_PID" ] && kill "$NGX_PID" 2>/dev/null
rm -f A C
exit 0
