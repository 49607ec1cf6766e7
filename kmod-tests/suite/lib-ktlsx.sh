# Helpers shared by the ktlsx kTLS scripts (20-ktlsx-probe, 30-ktlsx-interop,
# 40-ktlsx-edge).  Source after lib.sh:
#     . "$KMOD_LIB"; . /suite/lib-ktlsx.sh
# (not run by /init itself: its name does not start with a digit)

KX_CNF=$KMOD_TMP/ossl-ktls.cnf       # OPENSSL_CONF turning on OpenSSL's kTLS
cat >"$KX_CNF" <<'EOT'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = KTLS
EOT

# kx_feed SRC [WATCH SIZE [SECS]]: a program (for a pipe into a peer's stdin)
# that writes SRC ("-" = nothing) and then keeps the pipe open until WATCH
# holds SIZE bytes, $KMOD_TMP/stop exists or SECS (default 60) passed.  Peers
# that end the connection at stdin EOF (openssl s_server/s_client) thus
# stay until they have received everything.
KX_FEED=$KMOD_TMP/feed.sh
cat >"$KX_FEED" <<'EOT'
#!/bin/sh
[ "$1" = - ] || cat "$1"
[ -n "$2" ] || exit 0
end=$(( $(date +%s) + ${4:-60} ))
while [ "$(stat -c %s "$2" 2>/dev/null || echo 0)" -lt "$3" ]; do
	[ -e "${KX_STOP:-/nonexistent}" ] && exit 0
	[ "$(date +%s)" -ge "$end" ] && exit 0
	sleep 0.2
done
EOT
chmod +x "$KX_FEED"
export KX_STOP=$KMOD_TMP/stop

fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
sha() { sha256sum <"$1" 2>/dev/null | cut -d' ' -f1; }

# wait_size FILE SIZE SECS: until FILE holds SIZE bytes (1 on timeout)
wait_size() {
	_e=$(( $(date +%s) + $3 ))
	while [ "$(fsize "$1")" -lt "$2" ]; do
		[ "$(date +%s)" -ge "$_e" ] && return 1
		sleep 0.2
	done
}

# wait_pid PID SECS: wait for a background process, kill it after SECS;
# sets WAIT_RC (its exit status; 124 if it had to be killed) and WAIT_EL
# (seconds until it ended).  For a background pipeline PID is its last
# process; "wait" would also wait for the feeder in front of it, so once
# PID has ended $KX_STOP is created (kx_feed stops).
wait_pid() {
	_s=$(date +%s)
	_e=$(( _s + $2 ))
	while kill -0 "$1" 2>/dev/null; do
		# a zombie child still answers kill -0: check its state
		[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ] && break
		if [ "$(date +%s)" -ge "$_e" ]; then
			kill "$1" 2>/dev/null; sleep 0.3; kill -9 "$1" 2>/dev/null
			touch "$KX_STOP"
			wait "$1" 2>/dev/null
			WAIT_RC=124 WAIT_EL=$2
			return
		fi
		sleep 0.1
	done
	WAIT_EL=$(( $(date +%s) - _s ))
	touch "$KX_STOP"
	wait "$1" 2>/dev/null
	WAIT_RC=$?
}

# kx_names VER ALG: sets KX_SUITE (name for --ciphers / OpenSSL), KX_IANA,
# KX_OSSL (openssl s_client/s_server options selecting version and suite).
# ALG: aes128gcm | aes256gcm | chacha20 | aes128ccm (TLS 1.3 only)
kx_names() {
	case $1-$2 in
	1.3-aes128gcm) KX_SUITE=TLS_AES_128_GCM_SHA256 ;;
	1.3-aes256gcm) KX_SUITE=TLS_AES_256_GCM_SHA384 ;;
	1.3-chacha20) KX_SUITE=TLS_CHACHA20_POLY1305_SHA256 ;;
	1.3-aes128ccm) KX_SUITE=TLS_AES_128_CCM_SHA256 ;;
	1.2-aes128gcm) KX_SUITE=ECDHE-ECDSA-AES128-GCM-SHA256 KX_IANA=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ;;
	1.2-aes256gcm) KX_SUITE=ECDHE-ECDSA-AES256-GCM-SHA384 KX_IANA=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 ;;
	1.2-chacha20) KX_SUITE=ECDHE-ECDSA-CHACHA20-POLY1305 KX_IANA=TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 ;;
	esac
	if [ "$1" = 1.3 ]; then
		KX_IANA=$KX_SUITE
		KX_OSSL="-tls1_3 -ciphersuites $KX_SUITE"
	else
		KX_OSSL="-tls1_2 -cipher $KX_SUITE"
	fi
}

# kx_wait_handshake FILE [SECS]: until ktlsx's stderr FILE has its
# "handshake ok" line (1 after SECS, default 20).  Scripted peer input waits
# for this rather than for a fixed sleep: a slow handshake under TCG would
# otherwise let command lines pile up into one read (s_client/s_server take
# "k\n" as a command only when it comes alone).
kx_wait_handshake() {
	_e=$(( $(date +%s) + ${2:-20} ))
	while ! grep -a -q 'ktlsx: handshake ok' "$1" 2>/dev/null; do
		[ "$(date +%s)" -ge "$_e" ] && return 1
		sleep 0.1
	done
}

# kx_summary FILE: ktlsx's "handshake ok" line from its stderr
kx_summary() { grep -a 'ktlsx: handshake ok' "$1" 2>/dev/null | tail -1; }

# kx_check_summary FILE VER: empty if the summary line says version VER,
# the suite from kx_names and ktls=tx+rx; else what is wrong
kx_check_summary() {
	_s=$(kx_summary "$1")
	case $_s in
	"") echo "no 'handshake ok' line from ktlsx"; return ;;
	esac
	case $_s in *"version=TLSv$2 "*) ;; *) echo "wrong version in: $_s"; return ;; esac
	case $_s in *"cipher=$KX_SUITE "*|*"cipher=$KX_IANA "*) ;; *) echo "wrong cipher in: $_s"; return ;; esac
	case $_s in *"ktls=tx+rx"*) ;; *) echo "not ktls=tx+rx: $_s"; return ;; esac
}

# Sampling TlsCurrTxSw/TlsCurrRxSw while a transfer runs:
#   kx_sample_start; ...transfer...; kx_sample_stop  -> KX_CUR_TX KX_CUR_RX (max seen)
kx_sample_start() {
	rm -f "$KMOD_TMP/cur"
	bg _kx_sample_loop
	KX_SAMPLER=$BG_PID
}
_kx_sample_loop() {
	mt=0 mr=0
	while :; do
		v=$(awk '$1 == "TlsCurrTxSw" { t = $2 } $1 == "TlsCurrRxSw" { r = $2 } END { print t + 0, r + 0 }' /proc/net/tls_stat)
		t=${v% *} r=${v#* }
		[ "$t" -gt "$mt" ] && mt=$t
		[ "$r" -gt "$mr" ] && mr=$r
		echo "$mt $mr" >"$KMOD_TMP/cur.tmp" && mv "$KMOD_TMP/cur.tmp" "$KMOD_TMP/cur"
		sleep 0.1
	done
}
kx_sample_stop() {
	kill "$KX_SAMPLER" 2>/dev/null
	wait "$KX_SAMPLER" 2>/dev/null
	read -r KX_CUR_TX KX_CUR_RX <"$KMOD_TMP/cur" 2>/dev/null || { KX_CUR_TX=0 KX_CUR_RX=0; }
}

# kx_stat_line SNAP: the tls_stat deltas worth reporting
kx_stat_line() {
	echo "TlsTxSw=+$(tls_stat_delta "$1" TlsTxSw) TlsRxSw=+$(tls_stat_delta "$1" TlsRxSw) TlsDecryptError=+$(tls_stat_delta "$1" TlsDecryptError)"
}

# kx_ready NAME...: skip NAMEs and return 1 unless ktlsx with --ktls and the
# tls module are there
kx_ready() {
	_why=
	if ! have ktlsx; then _why="ktlsx not built"
	elif ! ktlsx client --help 2>&1 | grep -q -- '--ktls'; then _why="ktlsx CLI has no --ktls option"
	elif [ ! -r /proc/net/tls_stat ]; then _why="no /proc/net/tls_stat (tls module not loaded)"
	fi
	[ -z "$_why" ] && return 0
	for _n in "$@"; do skip "$_n" "$_why"; done
	return 1
}

# A transfer that stops is a question of which end waits for what.
#   kx_watch_start FILE SECS; ...transfer...; kx_watch_stop
# When FILE has not grown for SECS, writes once to $KMOD_TMP/stall what
# each ktlsx/openssl/nginx process waits in (wchan) and the send/receive
# queues of the established TCP sockets; kx_watch_stop sets KX_STALL to
# that report in one line ("" if there was no stall).
kx_watch_start() {
	rm -f "$KMOD_TMP/stall"
	bg _kx_watch_loop "$1" "$2"
	KX_WATCHER=$BG_PID
}
_kx_watch_loop() {
	_last=-1 _same=0
	while :; do
		_sz=$(fsize "$1")
		if [ "$_sz" = "$_last" ]; then _same=$((_same + 1)); else _same=0 _last=$_sz; fi
		if [ "$_same" -eq $(($2 * 5)) ]; then
			{
				printf 'stalled at %s bytes for %ss:' "$_sz" "$2"
				for _p in $(pidof ktlsx openssl nginx 2>/dev/null); do
					printf ' %s(%s)=%s' "$(cut -d' ' -f2 /proc/$_p/stat 2>/dev/null)" "$_p" \
						"$(cat /proc/$_p/wchan 2>/dev/null)"
				done
				# established sockets: local port -> remote port tx/rx queue (hex)
				awk 'NR > 1 && $4 == "01" { split($2, l, ":"); split($3, r, ":"); split($5, q, ":");
					printf " tcp %d->%d tx=%d rx=%d", ("0x" l[2]) + 0, ("0x" r[2]) + 0, ("0x" q[1]) + 0, ("0x" q[2]) + 0 }' \
					/proc/net/tcp 2>/dev/null
			} >"$KMOD_TMP/stall"
		fi
		sleep 0.2
	done
}
kx_watch_stop() {
	kill "$KX_WATCHER" 2>/dev/null
	wait "$KX_WATCHER" 2>/dev/null
	KX_STALL=$(cat "$KMOD_TMP/stall" 2>/dev/null)
}
