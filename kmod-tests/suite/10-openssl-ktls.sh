#!/bin/sh
# The peers themselves do kTLS in this VM: OpenSSL (s_server/s_client with
# "Options = KTLS" from an OpenSSL config) and nginx (ssl_conf_command Options
# KTLS + sendfile) serving a file to curl.  Checked through /proc/net/tls_stat.
# kmod-timeout: 150
. "$KMOD_LIB"

if [ ! -r /proc/net/tls_stat ]; then
	for t in openssl-tls13-aes128gcm openssl-tls12-aes128gcm nginx-tls13-sendfile nginx-tls12-sendfile; do
		skip "$t" "no /proc/net/tls_stat (tls module not loaded)"
	done
	exit 0
fi

# OpenSSL config turning kTLS on for every SSL_CTX (s_server and s_client)
cat >"$KMOD_TMP/ktls.cnf" <<'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = KTLS
EOF

# openssl_case NAME PORT CLIENT-OPTS...
openssl_case() {
	name=$1 port=$2
	shift 2
	if ! have openssl; then skip "$name" "openssl not in initramfs"; return; fi
	snap=$KMOD_TMP/$name.stat
	tls_stat_snapshot "$snap"
	OPENSSL_CONF=$KMOD_TMP/ktls.cnf bg timeout 40 openssl s_server -accept "127.0.0.1:$port" \
		-cert "$KMOD_CERT" -key "$KMOD_KEY" -naccept 1 -rev -quiet
	spid=$BG_PID
	if ! wait_port "$port" 15; then
		fail "$name" "s_server did not listen on $port"
		return
	fi
	# -rev: the server returns each line reversed; "CLOSE" ends the session
	printf 'hello-ktls\nCLOSE\n' | OPENSSL_CONF=$KMOD_TMP/ktls.cnf timeout 30 openssl s_client \
		-connect "127.0.0.1:$port" -CAfile "$KMOD_CA" -verify_return_error -ign_eof "$@" \
		>"$KMOD_TMP/$name.out" 2>&1
	crc=$?
	wait "$spid" 2>/dev/null
	cat "$KMOD_TMP/$name.out"
	tx=$(tls_stat_delta "$snap" TlsTxSw) rx=$(tls_stat_delta "$snap" TlsRxSw)
	txd=$(tls_stat_delta "$snap" TlsTxDevice) rxd=$(tls_stat_delta "$snap" TlsRxDevice)
	derr=$(tls_stat_delta "$snap" TlsDecryptError)
	proto=$(sed -n 's/^ *Protocol *: *//p' "$KMOD_TMP/$name.out" | head -1)
	cipher=$(sed -n 's/^ *Cipher *: *//p' "$KMOD_TMP/$name.out" | head -1)
	info "$name: $proto $cipher; tls_stat delta TlsTxSw=+$tx TlsRxSw=+$rx TlsTxDevice=+$txd TlsRxDevice=+$rxd TlsDecryptError=+$derr"
	if [ "$crc" -ne 0 ]; then
		fail "$name" "s_client exited $crc"
	elif ! grep -q 'sltk-olleh' "$KMOD_TMP/$name.out"; then
		fail "$name" "reply did not come back through the TLS session"
	elif [ "$derr" -ne 0 ]; then
		fail "$name" "TlsDecryptError rose by $derr"
	elif [ "$tx" -lt 1 ]; then
		fail "$name" "TlsTxSw did not rise (OpenSSL did not enable kTLS TX)"
	else
		pass "$name"
	fi
}

openssl_case openssl-tls13-aes128gcm 4431 -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256
openssl_case openssl-tls12-aes128gcm 4432 -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256

# nginx: sendfile of a file through kTLS, fetched by curl (user-space TLS)
nginx_case() {
	name=$1 port=$2 protos=$3
	shift 3
	if ! have nginx || ! have curl; then skip "$name" "nginx or curl not in initramfs"; return; fi
	d=$KMOD_TMP/nginx-$port
	mkdir -p "$d/html"
	dd if=/dev/urandom of="$d/html/blob" bs=64k count=16 2>/dev/null   # 1 MiB
	nginx_conf "$d" 1 info "listen 127.0.0.1:$port ssl;" "access_log off; sendfile on;" \
		"$NGINX_TLS_CERT ssl_protocols $protos; ssl_conf_command Options KTLS; root $d/html;"
	snap=$KMOD_TMP/$name.stat
	tls_stat_snapshot "$snap"
	bg timeout 60 nginx -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log"
	if ! wait_port "$port" 15; then
		cat "$d/logs/error.log"
		fail "$name" "nginx did not listen on $port"
		return
	fi
	timeout 40 curl -sS --cacert "$KMOD_CA" -o "$d/got" "$@" "https://localhost:$port/blob"
	crc=$?
	kill "$BG_PID" 2>/dev/null
	tx=$(tls_stat_delta "$snap" TlsTxSw) rx=$(tls_stat_delta "$snap" TlsRxSw)
	info "$name: tls_stat delta TlsTxSw=+$tx TlsRxSw=+$rx"
	grep -i -E 'ktls|BIO_get_ktls|SSL_sendfile' "$d/logs/error.log" | tail -5
	want=$(sha256sum <"$d/html/blob" | cut -d' ' -f1)
	got=$(sha256sum <"$d/got" 2>/dev/null | cut -d' ' -f1)
	if [ "$crc" -ne 0 ]; then
		cat "$d/logs/error.log"
		fail "$name" "curl exited $crc"
	elif [ "$want" != "$got" ]; then
		fail "$name" "sha256 of fetched file differs"
	elif [ "$tx" -lt 1 ]; then
		cat "$d/logs/error.log"
		fail "$name" "TlsTxSw did not rise (nginx did not use kTLS)"
	else
		pass "$name"
	fi
}

nginx_case nginx-tls13-sendfile 4433 TLSv1.3 --tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256
nginx_case nginx-tls12-sendfile 4434 TLSv1.2 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256
exit 0
