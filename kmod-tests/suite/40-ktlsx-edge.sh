#!/bin/sh
# ktlsx --ktls require at the edges of the kTLS hand-over and of the record
# stream, against OpenSSL (user-space TLS):
#   tickets      TLS 1.3 s_server sends NewSessionTickets then data at once
#   finished     s_client's first data right behind its Finished
#   frag         records of 512 bytes (-max_send_frag) into kTLS RX
#   sendfile     ktlsx server --sendfile 64 MiB -> s_client (sha256)
#   keyupdate    OpenSSL sends KeyUpdate mid-stream: continues on >= 6.14
#                (TlsRxRekeyOk rises), clear error (not a hang) before
#   key-update-after  ktlsx sends KeyUpdate itself (if the CLI has it)
#   close_notify peer closes -> ktlsx exits 0
#   handoff      ktlsx client --handoff: a fresh `ktlsx adopt` process takes the
#                kernel-TLS socket + state, gets data, KeyUpdate (>= 6.14), a ticket
#   corrupt      a flipped ciphertext byte (kmod-tests/tools/corrupt-proxy.c)
#                -> error exit naming bad_record_mac, TlsDecryptError, no crash
#   rsl512       a client with record_size_limit 512 (user-space records: it refuses a bigger
#                one with record_overflow) <- ktlsx server --sendfile 1 MiB, --ktls auto: on a
#                kernel with TLS_TX_MAX_PAYLOAD_LEN the server's TX is in the kernel (told the
#                limit), before it TX stays in user space with a reason; byte-exact either way
# kmod-timeout: 360
. "$KMOD_LIB"
. /suite/lib-ktlsx.sh

all="edge-tls13-tickets-then-data edge-tls13-data-with-finished edge-tls12-data-with-finished
edge-tls13-frag512-to-client edge-tls12-frag512-to-client edge-tls13-frag512-to-server edge-tls12-frag512-to-server
edge-tls13-sendfile-64m edge-tls12-sendfile-16m edge-tls13-keyupdate-to-server edge-tls13-keyupdate-requested-to-server
edge-tls13-keyupdate-to-client edge-tls13-key-update-after edge-close_notify-to-client edge-close_notify-to-server
edge-corrupt-record-to-server edge-corrupt-record-to-client edge-tls13-handoff edge-tls12-handoff
edge-tls13-rsl512-sendfile edge-tls12-rsl512-sendfile"
kx_ready $all || exit 0
if ! have openssl; then for n in $all; do skip "$n" "openssl not in initramfs"; done; exit 0; fi

cd "$KMOD_TMP" || exit 1
head -c 1048576 /dev/urandom >M1      # 1 MiB
SHA_M1=$(sha M1)
port=4600
SRV="--cert $KMOD_CERT --key $KMOD_KEY"

# crash_or_eio FILE: non-empty if ktlsx's stderr shows EIO or a crash
crash_or_eio() { grep -a -i -E 'input/output error|EIO|segmentation|aborted|sanitizer|core dumped' "$1" | head -1; }

# --- ktlsx client <- s_server: SRC sent by s_server right after the handshake
# client_case NAME VER SRC S_SERVER-OPTS...
client_case() {
	name=$1 v=$2 src=$3
	shift 3
	port=$((port + 1))
	rm -f B D "$KX_STOP" s.err c.err
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	n=$(fsize "$src")
	# -nbio: s_server selects on stdin and the socket together; when both are
	# readable before the handshake is done, its SSL_write of stdin finishes
	# the handshake and it then calls SSL_read on the stale "socket
	# readable" — blocking for good on a socket that has nothing more (the
	# client sends nothing).  Seen as a 60 s stall after the first 16 KiB
	# stdin chunk (both TCP queues empty, s_server in tcp_recvmsg).  A
	# non-blocking socket turns that read into WANT_READ and the loop goes on.
	"$KX_FEED" "$src" D "$n" 60 | timeout 90 openssl s_server -accept "127.0.0.1:$port" $SRV \
		-naccept 1 -nbio -quiet "$@" >B 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; touch "$KX_STOP"; fail "$name" "s_server did not listen"; return; }
	kx_watch_start D 10
	"$KX_FEED" - D "$n" 60 | timeout 90 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" \
		--tls-version "$v" --ktls require >D 2>c.err
	crc=$?
	kx_watch_stop
	touch "$KX_STOP"
	wait_pid "$spid" 15
	cat c.err s.err
	p=
	if [ "$crc" -ne 0 ]; then p="ktlsx client exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
	elif [ "$(sha D)" != "$(sha "$src")" ]; then p="received $(fsize D) of $n bytes, sha256 differs${KX_STALL:+; $KX_STALL}"
	elif [ -n "$(crash_or_eio c.err)" ]; then p="stderr: $(crash_or_eio c.err)"
	elif ! kx_summary c.err | grep -q 'ktls=tx+rx'; then p="not ktls=tx+rx: $(kx_summary c.err)"
	elif [ "$(tls_stat_delta "$snap" TlsRxSw)" -lt 1 ]; then p="TlsRxSw did not rise"
	fi
	info "$name: $(kx_stat_line "$snap"); $(kx_summary c.err | sed 's/^ktlsx: //')"
	if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	rm -f B D
}

# --- s_client -> ktlsx server --echo: SRC sent by s_client at once ----------
# server_case NAME VER SRC S_CLIENT-OPTS...
server_case() {
	name=$1 v=$2 src=$3
	shift 3
	port=$((port + 1))
	rm -f B s.err c.err "$KX_STOP"
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	n=$(fsize "$src")
	timeout 90 ktlsx server --listen "127.0.0.1:$port" $SRV --tls-version "$v" \
		--ktls require --echo --once 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; fail "$name" "ktlsx server did not listen"; return; }
	# the data is in the pipe before the connection: s_client writes it
	# right after its Finished
	kx_watch_start B 10
	"$KX_FEED" "$src" B "$n" 60 | timeout 90 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$KMOD_CA" -quiet -no_ign_eof -nocommands "$@" >B 2>c.err
	kx_watch_stop
	wait_pid "$spid" 15
	src_rc=$WAIT_RC
	cat s.err c.err
	p=
	if [ "$src_rc" -ne 0 ]; then p="ktlsx server exit $src_rc: $(grep -v 'handshake ok\|listening' s.err | tail -1)"
	elif [ "$(sha B)" != "$(sha "$src")" ]; then p="echo: got $(fsize B) of $n bytes back, sha256 differs${KX_STALL:+; $KX_STALL}"
	elif [ -n "$(crash_or_eio s.err)" ]; then p="stderr: $(crash_or_eio s.err)"
	elif ! kx_summary s.err | grep -q 'ktls=tx+rx'; then p="not ktls=tx+rx: $(kx_summary s.err)"
	elif [ "$(tls_stat_delta "$snap" TlsRxSw)" -lt 1 ]; then p="TlsRxSw did not rise"
	fi
	info "$name: $(kx_stat_line "$snap"); $(kx_summary s.err | sed 's/^ktlsx: //')"
	if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	rm -f B
}

# tickets: OpenSSL sends 2 NewSessionTickets right after the server Finished,
# then 1 MiB at once; ktlsx has kTLS RX from the first byte after Finished
client_case edge-tls13-tickets-then-data 1.3 M1 -tls1_3 -num_tickets 2
# client data in the same flight as its Finished
server_case edge-tls13-data-with-finished 1.3 M1 -tls1_3
server_case edge-tls12-data-with-finished 1.2 M1 -tls1_2
# small records
client_case edge-tls13-frag512-to-client 1.3 M1 -tls1_3 -max_send_frag 512
client_case edge-tls12-frag512-to-client 1.2 M1 -tls1_2 -max_send_frag 512
server_case edge-tls13-frag512-to-server 1.3 M1 -tls1_3 -max_send_frag 512
server_case edge-tls12-frag512-to-server 1.2 M1 -tls1_2 -max_send_frag 512

# --- sendfile ---------------------------------------------------------------
sendfile_case() {
	name=$1 v=$2 size=$3
	if ! ktlsx server --help 2>&1 | grep -q -- '--sendfile'; then skip "$name" "ktlsx server has no --sendfile"; return; fi
	port=$((port + 1))
	t0=$(date +%s)
	head -c "$size" /dev/urandom >F
	want=$(sha F)
	t1=$(date +%s)
	rm -f B s.err c.err "$KX_STOP"
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	timeout 120 ktlsx server --listen "127.0.0.1:$port" $SRV --tls-version "$v" \
		--ktls require --sendfile F --once 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; fail "$name" "ktlsx server did not listen"; return; }
	# -quiet implies -ign_eof: s_client reads until the server closes
	timeout 120 openssl s_client -connect "127.0.0.1:$port" -CAfile "$KMOD_CA" -quiet </dev/null >B 2>c.err
	crc=$?
	t2=$(date +%s)
	wait_pid "$spid" 15
	src_rc=$WAIT_RC
	cat s.err c.err
	got=$(sha B)
	p=
	if [ "$src_rc" -ne 0 ]; then p="ktlsx server exit $src_rc: $(grep -v 'handshake ok\|listening' s.err | tail -1)"
	elif [ "$got" != "$want" ]; then p="s_client got $(fsize B) of $size bytes, sha256 differs (s_client exit $crc)"
	elif ! kx_summary s.err | grep -q 'ktls=tx'; then p="TX not in the kernel: $(kx_summary s.err)"
	elif [ "$(tls_stat_delta "$snap" TlsTxSw)" -lt 1 ]; then p="TlsTxSw did not rise"
	fi
	info "$name: $((size / 1048576)) MiB: file made in $((t1 - t0))s, sent in $((t2 - t1))s; $(kx_stat_line "$snap"); $(kx_summary s.err | sed 's/^ktlsx: //')"
	if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	rm -f B F
}
sendfile_case edge-tls13-sendfile-64m 1.3 67108864
sendfile_case edge-tls12-sendfile-16m 1.2 16777216

# --- record_size_limit (RFC 8449) and TLS_TX_MAX_PAYLOAD_LEN --------------------
rsl_case() {
	name=$1 v=$2
	if ! ktlsx client --help 2>&1 | grep -q -- '--record-size-limit'; then skip "$name" "ktlsx has no --record-size-limit"; return; fi
	port=$((port + 1))
	rm -f B s.err c.err
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	timeout 90 ktlsx server --listen "127.0.0.1:$port" $SRV --tls-version "$v" \
		--ktls auto --sendfile M1 --once 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; fail "$name" "ktlsx server did not listen"; return; }
	timeout 90 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" --tls-version "$v" --ktls off \
		--record-size-limit 512 </dev/null >B 2>c.err
	crc=$?
	wait_pid "$spid" 15
	src_rc=$WAIT_RC
	tx=$(tls_stat_delta "$snap" TlsTxSw)
	sum=$(kx_summary s.err | sed 's/^ktlsx: //')
	why=$(grep -a -m1 'TX stays in user space' s.err)
	info "$name: server: $sum; TlsTxSw +$tx; ${why:-kernel TX told the limit}"
	p=
	if [ "$crc" -ne 0 ]; then p="client exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
	elif [ "$src_rc" -ne 0 ]; then p="ktlsx server exit $src_rc: $(grep -v 'handshake ok\|listening' s.err | tail -1)"
	elif [ "$(sha B)" != "$SHA_M1" ]; then p="client got $(fsize B) of 1048576 bytes, sha256 differs"
	elif ! kx_summary c.err | grep -q 'record_size_limit='; then p="the client's summary has no record_size_limit: $(kx_summary c.err)"
	elif echo "$sum" | grep -q 'ktls=tx'; then
		[ "$tx" -ge 1 ] || p="summary says ktls=tx but TlsTxSw did not rise"
	elif [ -z "$why" ]; then p="TX not in the kernel and no reason given: $sum"
	fi
	if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	rm -f B
}
rsl_case edge-tls13-rsl512-sendfile 1.3
rsl_case edge-tls12-rsl512-sendfile 1.2

# --- KeyUpdate ----------------------------------------------------------------
# on < 6.14: want a non-zero exit with a message about re-keying, quickly
rekey_err_ok() { grep -a -i -E 're-?key|6\.14|keyupdate|key update' "$1" | grep -v 'handshake ok' | head -1; }

# s_client -> ktlsx server --echo; s_client's command letter LETTER (k: peer
# updates its keys, K: and asks ktlsx to update its own) between two lines
keyupdate_server_case() {
	name=$1 letter=$2
	port=$((port + 1))
	rm -f B s.err c.err "$KX_STOP"
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	timeout 60 ktlsx server --listen "127.0.0.1:$port" $SRV --tls-version 1.3 \
		--ktls require --echo --once 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; fail "$name" "ktlsx server did not listen"; return; }
	# chunks apart so that s_client reads "k\n" alone (a command, not data),
	# from the end of the handshake on
	( kx_wait_handshake s.err; printf 'before-keyupdate\n'; sleep 1.5; printf '%s\n' "$letter"; sleep 1.5
	  printf 'after-keyupdate\n'; "$KX_FEED" - B 33 12 ) |
		timeout 40 openssl s_client -connect "127.0.0.1:$port" -CAfile "$KMOD_CA" \
			-quiet -no_ign_eof -tls1_3 >B 2>c.err &
	cpid=$!
	_kmod_bg_pids="$_kmod_bg_pids $cpid"
	t0=$(date +%s)
	wait_pid "$spid" 30
	src_rc=$WAIT_RC
	el=$(( $(date +%s) - t0 ))
	touch "$KX_STOP"
	wait_pid "$cpid" 10
	cat s.err c.err; echo "--- echoed:"; cat B
	rxok=$(tls_stat_delta "$snap" TlsRxRekeyOk) txok=$(tls_stat_delta "$snap" TlsTxRekeyOk)
	rxerr=$(tls_stat_delta "$snap" TlsRxRekeyError)
	info "$name: server exit $src_rc after ${el}s; TlsRxRekeyOk=+$rxok TlsTxRekeyOk=+$txok TlsRxRekeyError=+$rxerr $(kx_stat_line "$snap"); $(grep -a -c KEYUPDATE c.err) KeyUpdate(s) sent by s_client"
	if ! grep -q KEYUPDATE c.err; then fail "$name" "s_client did not send a KeyUpdate (no KEYUPDATE on its stderr)"; return; fi
	if kver_ge 6.14; then
		p=
		if [ "$src_rc" -ne 0 ]; then p="ktlsx server exit $src_rc: $(grep -v 'handshake ok\|listening' s.err | tail -1)"
		elif [ "$(cat B)" != "$(printf 'before-keyupdate\nafter-keyupdate')" ]; then p="echo after the KeyUpdate incomplete: $(tr '\n' '|' <B)"
		elif [ "$rxok" -lt 1 ]; then p="TlsRxRekeyOk did not rise"
		elif [ "$letter" = K ] && [ "$txok" -lt 1 ]; then p="update_requested: TlsTxRekeyOk did not rise"
		fi
		if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	else
		if [ "$src_rc" -eq 124 ]; then fail "$name" "kernel without TLS 1.3 re-key: ktlsx server hung (killed after 30s)"
		elif [ "$src_rc" -eq 0 ]; then fail "$name" "kernel without TLS 1.3 re-key but ktlsx server exit 0"
		elif [ "$src_rc" -ge 128 ]; then fail "$name" "ktlsx server died by signal (exit $src_rc)"
		elif [ -z "$(rekey_err_ok s.err)" ]; then fail "$name" "exit $src_rc without a re-key message: $(tail -1 s.err)"
		else
			info "$name: kernel < 6.14: $(rekey_err_ok s.err)"
			pass "$name"
		fi
	fi
}
keyupdate_server_case edge-tls13-keyupdate-to-server k
keyupdate_server_case edge-tls13-keyupdate-requested-to-server K

# s_server (with command letters, so not -quiet) -> ktlsx client: "K" = a
# KeyUpdate that also asks ktlsx to update its sending keys
keyupdate_client_case() {
	name=$1
	port=$((port + 1))
	rm -f B D s.err c.err "$KX_STOP"
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	# -nbio: see client_case (s_server would block on a stale readable flag)
	( kx_wait_handshake c.err; sleep 0.3; printf 'before-keyupdate\n'; sleep 1.5; printf 'K\n'; sleep 1.5
	  printf 'after-keyupdate\n'; "$KX_FEED" - D 33 12
	  # and until ktlsx's own line (sent with its updated keys) is in
	  i=0; while ! grep -q from-client-after B && [ "$i" -lt 50 ] && [ ! -e "$KX_STOP" ]; do
		sleep 0.2; i=$((i + 1)); done ) |
		timeout 40 openssl s_server -accept "127.0.0.1:$port" $SRV -naccept 1 -nbio -tls1_3 >B 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; touch "$KX_STOP"; fail "$name" "s_server did not listen"; return; }
	# ktlsx also sends a line after the KeyUpdate: its new TX keys must work
	# (once the line s_server sent after its KeyUpdate has arrived, or
	# ktlsx has said more than "handshake ok": its error on kernels < 6.14)
	( i=0; while ! grep -q after-keyupdate D 2>/dev/null && [ "$(cat c.err 2>/dev/null | grep -a -c .)" -le 1 ] &&
		[ "$i" -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
	  printf 'from-client-after\n'; "$KX_FEED" - /nonexistent 1 8 ) |
		timeout 30 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" --tls-version 1.3 --ktls require >D 2>c.err
	crc=$?
	touch "$KX_STOP"
	wait_pid "$spid" 10
	cat c.err; echo "--- s_server:"; cat B s.err; echo "--- client got:"; cat D
	rxok=$(tls_stat_delta "$snap" TlsRxRekeyOk) txok=$(tls_stat_delta "$snap" TlsTxRekeyOk)
	info "$name: client exit $crc; TlsRxRekeyOk=+$rxok TlsTxRekeyOk=+$txok $(kx_stat_line "$snap")"
	if ! grep -a -q -i 'key.\?update\|SSL_do_handshake -> 1' B s.err; then fail "$name" "s_server did not send a KeyUpdate"; return; fi
	if kver_ge 6.14; then
		p=
		if [ "$crc" -ne 0 ]; then p="ktlsx client exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
		elif [ "$(cat D)" != "$(printf 'before-keyupdate\nafter-keyupdate')" ]; then p="data after the KeyUpdate lost: $(tr '\n' '|' <D)"
		elif ! grep -q 'from-client-after' B; then p="s_server did not get the client's line sent after the KeyUpdate"
		elif [ "$rxok" -lt 1 ] || [ "$txok" -lt 1 ]; then p="TlsRxRekeyOk +$rxok TlsTxRekeyOk +$txok (want both >= 1)"
		fi
		if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	else
		if [ "$crc" -eq 124 ] || [ "$crc" -eq 143 ]; then fail "$name" "kernel without TLS 1.3 re-key: ktlsx client hung"
		elif [ "$crc" -eq 0 ]; then fail "$name" "kernel without TLS 1.3 re-key but ktlsx client exit 0"
		elif [ "$crc" -ge 128 ]; then fail "$name" "ktlsx client died by signal (exit $crc)"
		elif [ -z "$(rekey_err_ok c.err)" ]; then fail "$name" "exit $crc without a re-key message: $(tail -1 c.err)"
		else info "$name: kernel < 6.14: $(rekey_err_ok c.err)"; pass "$name"
		fi
	fi
}
keyupdate_client_case edge-tls13-keyupdate-to-client

# ktlsx client --handoff: the handshake in one process, kernel TLS installed,
# then socket + state handed over a unix socket to a fresh `ktlsx adopt`
# process, which must carry on with kernel TLS: the server's data, on >= 6.14
# its KeyUpdate (update_requested: our line after it goes out under the new
# key), and its NewSessionTicket (saved with --sess-out, then resumed).
handoff_case() {
	name=$1 v=$2
	if ! ktlsx client --help 2>&1 | grep -q -- '--handoff'; then skip "$name" "ktlsx client has no --handoff"; return; fi
	port=$((port + 1))
	rm -f B D s.err c.err r.err sess "$KX_STOP"
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	ku=; [ "$v" = 1.3 ] && kver_ge 6.14 && ku=K
	flag=-tls1_3; [ "$v" = 1.2 ] && flag=-tls1_2
	( i=0; while ! grep -q 'adopted connection' c.err 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
	  printf 'before-keyupdate\n'; sleep 1
	  [ -n "$ku" ] && { printf 'K\n'; sleep 1; }
	  printf 'after-keyupdate\n'
	  i=0; while [ ! -e "$KX_STOP" ] && [ "$i" -lt 150 ]; do sleep 0.2; i=$((i + 1)); done ) |
		timeout 60 openssl s_server -accept "127.0.0.1:$port" $SRV -naccept 2 -nbio $flag >B 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; touch "$KX_STOP"; fail "$name" "s_server did not listen"; return; }
	( i=0; while ! grep -q after-keyupdate D 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
	  printf 'from-client-after\n' ) |
		timeout 40 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" --tls-version "$v" --ktls require \
			--handoff --sess-out sess >D 2>c.err
	crc=$?
	echo | timeout 20 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" --tls-version "$v" --ktls require \
		--sess-in sess >/dev/null 2>r.err
	rrc=$?
	touch "$KX_STOP"
	wait_pid "$spid" 10
	cat c.err r.err; echo "--- s_server:"; cat B s.err; echo "--- client got:"; cat D
	rxok=$(tls_stat_delta "$snap" TlsRxRekeyOk)
	info "$name: client exit $crc, resume exit $rrc; TlsRxRekeyOk=+$rxok $(kx_stat_line "$snap")"
	want=$(printf 'before-keyupdate\nafter-keyupdate')
	p=
	if [ "$crc" -ne 0 ]; then p="ktlsx client --handoff exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
	elif ! grep -q 'adopted connection.*ktls=tx+rx' c.err; then p="adopting process not on kernel TLS: $(grep -a 'adopt' c.err | tail -1)"
	elif [ "$(cat D)" != "$want" ]; then p="adopting process got: $(tr '\n' '|' <D)"
	elif ! grep -q from-client-after B; then p="s_server did not get the line sent after its KeyUpdate"
	elif [ -n "$ku" ] && [ "$rxok" -lt 1 ]; then p="TlsRxRekeyOk +$rxok (want >= 1)"
	elif [ ! -s sess ]; then p="no session saved (NewSessionTicket not stored by the adopting process)"
	elif [ "$rrc" -ne 0 ] || ! grep -q 'resumed=1' r.err; then p="the saved session did not resume: exit $rrc $(tail -1 r.err)"
	fi
	if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
}
handoff_case edge-tls13-handoff 1.3
handoff_case edge-tls12-handoff 1.2

# ktlsx client --key-update-after: ktlsx starts the KeyUpdate (update_requested)
key_update_after_case() {
	name=edge-tls13-key-update-after
	if ! ktlsx client --help 2>&1 | grep -q -- '--key-update-after'; then skip "$name" "ktlsx client has no --key-update-after"; return; fi
	port=$((port + 1))
	rm -f B D s.err c.err "$KX_STOP"
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	n=$(fsize M1)
	"$KX_FEED" M1 B "$n" 40 | timeout 60 openssl s_server -accept "127.0.0.1:$port" $SRV \
		-naccept 1 -quiet -tls1_3 >B 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; touch "$KX_STOP"; fail "$name" "s_server did not listen"; return; }
	"$KX_FEED" M1 D "$n" 40 | timeout 60 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" --tls-version 1.3 \
		--ktls require --key-update-after 65536 >D 2>c.err
	crc=$?
	touch "$KX_STOP"
	wait_pid "$spid" 10
	cat c.err s.err
	rxok=$(tls_stat_delta "$snap" TlsRxRekeyOk) txok=$(tls_stat_delta "$snap" TlsTxRekeyOk)
	info "$name: client exit $crc; TlsTxRekeyOk=+$txok TlsRxRekeyOk=+$rxok $(kx_stat_line "$snap"); $(grep -a 'KeyUpdate' c.err | head -1)"
	if kver_ge 6.14; then
		p=
		if [ "$crc" -ne 0 ]; then p="ktlsx client exit $crc: $(grep -v 'handshake ok' c.err | tail -1)"
		elif [ "$(sha B)" != "$SHA_M1" ]; then p="s_server got $(fsize B) bytes, sha256 differs"
		elif [ "$(sha D)" != "$SHA_M1" ]; then p="client got $(fsize D) bytes, sha256 differs"
		elif [ "$txok" -lt 1 ]; then p="TlsTxRekeyOk did not rise"
		elif [ "$rxok" -lt 1 ]; then p="TlsRxRekeyOk did not rise (OpenSSL answers update_requested with its own KeyUpdate)"
		fi
		if [ -n "$p" ]; then fail "$name" "$p"; else pass "$name"; fi
	else
		if [ "$crc" -eq 124 ] || [ "$crc" -eq 143 ]; then fail "$name" "ktlsx client hung"
		elif [ "$crc" -ge 128 ]; then fail "$name" "ktlsx client died by signal (exit $crc)"
		elif [ "$crc" -ne 0 ] && [ -n "$(rekey_err_ok c.err)" ]; then info "$name: kernel < 6.14: $(rekey_err_ok c.err)"; pass "$name"
		else fail "$name" "kernel without TLS 1.3 re-key: exit $crc, want a clear re-key error: $(tail -1 c.err)"
		fi
	fi
	rm -f B D
}
key_update_after_case

# --- close_notify ---------------------------------------------------------------
close_notify_client_case() {
	name=edge-close_notify-to-client
	port=$((port + 1))
	rm -f B D s.err c.err "$KX_STOP"
	# s_server command "Q": SSL_shutdown (close_notify) and exit
	# -nbio and "bye" after the handshake: see client_case
	( kx_wait_handshake c.err; sleep 0.3; printf 'bye\n'; sleep 1; printf 'Q\n'; sleep 10 ) |
		timeout 30 openssl s_server -accept "127.0.0.1:$port" $SRV -naccept 1 -nbio >B 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; fail "$name" "s_server did not listen"; return; }
	# ktlsx's stdin stays open: only the peer's close_notify can end it
	"$KX_FEED" - /nonexistent 1 20 | timeout 30 ktlsx client "127.0.0.1:$port" --ca "$KMOD_CA" \
		--ktls require >D 2>c.err &
	cpid=$!
	_kmod_bg_pids="$_kmod_bg_pids $cpid"
	wait_pid "$cpid" 15
	crc=$WAIT_RC el=$WAIT_EL
	touch "$KX_STOP"
	cat c.err B s.err
	info "$name: ktlsx client exit $crc ${el}s after connecting"
	if [ "$crc" -ne 0 ]; then fail "$name" "ktlsx client exit $crc after the peer's close_notify: $(tail -1 c.err)"
	elif [ "$(cat D)" != bye ]; then fail "$name" "got '$(cat D)' instead of 'bye'"
	else pass "$name"
	fi
}
close_notify_client_case

close_notify_server_case() {
	name=edge-close_notify-to-server
	port=$((port + 1))
	rm -f B s.err c.err "$KX_STOP"
	timeout 30 ktlsx server --listen "127.0.0.1:$port" $SRV --ktls require --echo --once 2>s.err &
	spid=$!
	_kmod_bg_pids="$_kmod_bg_pids $spid"
	wait_port "$port" 15 || { cat s.err; fail "$name" "ktlsx server did not listen"; return; }
	# -no_ign_eof: s_client sends close_notify at stdin EOF (after the echo)
	( printf 'bye\n'; "$KX_FEED" - B 4 10 ) | timeout 20 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$KMOD_CA" -quiet -no_ign_eof >B 2>c.err
	wait_pid "$spid" 10
	src_rc=$WAIT_RC
	cat s.err c.err
	if [ "$src_rc" -ne 0 ]; then fail "$name" "ktlsx server --once exit $src_rc after the client's close_notify: $(tail -1 s.err)"
	elif [ "$(cat B)" != bye ]; then fail "$name" "echo '$(cat B)'"
	else pass "$name"
	fi
}
close_notify_server_case

# --- a corrupted record ----------------------------------------------------------
# corrupt_case NAME DIRECTION(to-server|to-client): corrupt-proxy (built from
# kmod-tests/tools/corrupt-proxy.c) between OpenSSL and ktlsx flips one byte
# (body offset 10) of the first application_data record that reaches past
# byte 4096 of that direction.  The handshake and the NewSessionTickets (in
# TLS 1.3 type 23 on the wire too) end well before (~1.3 KiB from s_server,
# ~0.3 KiB from s_client), so that is the first record of the 64 KiB OpenSSL
# sends (8-16 KiB records).  The first one, because s_server sometimes sends
# only its first record and then blocks reading the socket (when the
# ClientHello and its stdin become readable together).  ktlsx must fail the
# connection naming bad_record_mac (the kernel's EBADMSG), within a few
# seconds although its peer's stdin stays open for 15 s, and
# TlsDecryptError must rise.
corrupt_case() {
	name=$1 dir=$2
	if ! have corrupt-proxy; then
		skip "$name" "no corrupt-proxy in the initramfs (kmod-tests/tools/corrupt-proxy.c did not build on the host)"
		return
	fi
	port=$((port + 2))
	front=$port back=$((port - 1))
	_kmod_cleanup     # nothing of the previous case may be left
	rm -f B D s.err c.err p.err "$KX_STOP"
	head -c 65536 M1 >M64k
	if [ "$dir" = to-server ]; then pdir=c2s; else pdir=s2c; fi
	snap=$KMOD_TMP/snap; tls_stat_snapshot "$snap"
	if [ "$dir" = to-server ]; then
		timeout 40 ktlsx server --listen "127.0.0.1:$back" $SRV --tls-version 1.3 --ktls require --echo --once 2>s.err &
		kpid=$!
		_kmod_bg_pids="$_kmod_bg_pids $kpid"
		wait_port "$back" 15 || { cat s.err; fail "$name" "ktlsx server did not listen"; return; }
	else
		"$KX_FEED" M64k /nonexistent 1 15 | timeout 40 openssl s_server -accept "127.0.0.1:$back" $SRV \
			-naccept 1 -nbio -quiet -tls1_3 >B 2>s.err &  # -nbio: see client_case
		opid=$!
		_kmod_bg_pids="$_kmod_bg_pids $opid"
		wait_port "$back" 15 || { cat s.err; fail "$name" "s_server did not listen"; return; }
	fi
	bg corrupt-proxy -d "$pdir" -a 4096 -o 10 -t 40 "$front" 127.0.0.1 "$back" 2>p.err
	wait_port "$front" 15 || { cat p.err; fail "$name" "corrupt-proxy did not listen"; return; }
	if [ "$dir" = to-server ]; then
		"$KX_FEED" M64k /nonexistent 1 15 | timeout 30 openssl s_client -connect "127.0.0.1:$front" \
			-CAfile "$KMOD_CA" -quiet -no_ign_eof -nocommands -tls1_3 >B 2>c.err &
		opid=$!
		_kmod_bg_pids="$_kmod_bg_pids $opid"
		kerr=s.err
	else
		"$KX_FEED" - /nonexistent 1 15 | timeout 30 ktlsx client "127.0.0.1:$front" --ca "$KMOD_CA" \
			--tls-version 1.3 --ktls require >D 2>c.err &
		kpid=$!
		_kmod_bg_pids="$_kmod_bg_pids $kpid"
		kerr=c.err
	fi
	# when ktlsx reports the failure, and when it exits
	t0=$(date +%s) tmsg=-
	while [ "$(( $(date +%s) - t0 ))" -lt 20 ]; do
		[ "$tmsg" = - ] && grep -q 'failed' "$kerr" && tmsg=$(( $(date +%s) - t0 ))
		[ "$(awk '{print $3}' "/proc/$kpid/stat" 2>/dev/null || echo Z)" = Z ] && break
		sleep 0.2
	done
	wait_pid "$kpid" 1
	krc=$WAIT_RC el=$(( $(date +%s) - t0 ))
	touch "$KX_STOP"
	wait_pid "$opid" 5
	sleep 0.3         # corrupt-proxy ends with the connection
	cat s.err c.err p.err
	de=$(tls_stat_delta "$snap" TlsDecryptError)
	msg=$(grep -a -v 'handshake ok\|listening' "$kerr" | tail -1)
	flip=$(grep -a 'corrupt-proxy: flipped' p.err | sed 's/^corrupt-proxy: //')
	crash=$(grep -a -i -E 'segmentation|sanitizer|core dumped' "$kerr" | head -1)
	info "$name: ktlsx reported the failure after ${tmsg}s, exit $krc after ${el}s, $(kx_stat_line "$snap"); $msg; proxy: ${flip:-nothing flipped}"
	if ! kx_summary "$kerr" | grep -q 'ktls=tx+rx'; then fail "$name" "handshake through corrupt-proxy did not complete with kTLS: $(tail -1 "$kerr") / $(tail -1 p.err)"
	elif [ -z "$flip" ]; then fail "$name" "corrupt-proxy flipped nothing: $(tail -1 p.err)"
	elif [ "$krc" -eq 124 ] || [ "$krc" -eq 143 ]; then fail "$name" "ktlsx hung after the corrupted record"
	elif [ "$krc" -ge 128 ]; then fail "$name" "ktlsx died by signal (exit $krc)"
	elif [ -n "$crash" ]; then fail "$name" "crash: $crash"
	elif [ "$krc" -eq 0 ]; then fail "$name" "ktlsx exit 0 after a corrupted record"
	elif ! echo "$msg" | grep -q -i -E 'bad_record_mac|failed authentication'; then fail "$name" "ktlsx exit $krc without naming bad_record_mac: $msg"
	elif [ "$de" -lt 1 ]; then fail "$name" "ktlsx exit $krc but TlsDecryptError did not rise: $msg"
	elif [ "$el" -ge 10 ]; then fail "$name" "ktlsx took ${el}s to end the connection (its peer's stdin was still open: the error waited for it?)"
	else pass "$name"
	fi
}
corrupt_case edge-corrupt-record-to-client to-client
corrupt_case edge-corrupt-record-to-server to-server

rm -f M1 M64k F
exit 0
