#!/usr/bin/env bash
# tests/preload/preload.sh — libktlsx-preload.so (issue 10) on the host: no kernel TLS here, so
# the shim's user-space record fallback carries every byte (read/recv and write/send/sendfile).
#
#  exports              the .so exports the interposed libc calls and nothing else
#  rules/*              a rules file with an error stops the program at start: exit 1, "file:line: problem",
#                       the program's own code never runs (bad directive, bad port, missing key, missing cert
#                       file, one-line env form)
#  http/*               python3 -m http.server under the shim (KTLSX_SERVE one-liner), curl: a 16 MiB file
#                       byte-exact over TLS 1.3 and TLS 1.2; openssl s_client fetches it byte-exact
#  plain-next-to-tls    one process, two listeners, a rule for one: HTTPS there, plaintext HTTP on the other
#  dup-fork             a python program accepts, dup()s the socket, closes the original, forks; the child
#                       answers through the dup: close of one fd / the parent's copy does not end TLS
#  client/*             python3 urllib under the shim with a connect rule fetches http://… from
#                       `openssl s_server -WWW`: by address + name=, by host name (SNI from getaddrinfo),
#                       and a wrong name is refused (no plaintext request reaches the server)
#  stall                a client stalled mid-ClientHello on a blocking listener (python http.server): a
#                       curl connecting after it is served at once (each handshake runs on its own shim
#                       thread), the staller is cut at the handshake deadline (6 s here)
#  async/*              an asyncio server (nonblocking listener and sockets, epoll): 4 concurrent curls of
#                       16 MiB byte-exact while a staller sits mid-handshake; an asyncio client
#                       (nonblocking connect) with a connect rule
#  epoll/*              tests/preload/epoll_http.c, a plaintext event-loop program (nonblocking sockets, one
#                       epoll set, 200-byte request reads, 4 KiB writes): as a server, level- and edge-
#                       triggered, 3 concurrent 16 MiB downloads each; as a client (nonblocking connect,
#                       level-triggered 1000-byte reads: most of each 16 KiB record waits in the shim, and
#                       epoll_wait must still report the fd) fetching 16 MiB from openssl s_server -WWW
#  busybox/*            Debian's dynamic busybox (unpacked by tools/install-deps.sh into build/deps/busybox-dynamic,
#                       or BUSYBOX_DYN=PATH) `httpd -f` (a fork per connection) under the shim: curl and
#                       openssl s_client fetch 16 MiB byte-exact; the static /bin/busybox (busybox-static) is
#                       out of LD_PRELOAD's reach: under the same environment it answers plaintext HTTP (the
#                       documented limit, shown)
#  nginx/*              Debian's nginx, plaintext `listen PORT;`, master + 2 workers (prefork: the listener
#                       inherited, workers accept4 with epoll/EPOLLEXCLUSIVE), sendfile on: curl and
#                       s_client 16 MiB byte-exact, plaintext refused; 60 concurrent curls all served in < 7 s
#  lighttpd/*          Debian's lighttpd (epoll, nonblocking accept4, sendfile), minimal plaintext config:
#                       curl and s_client 16 MiB byte-exact, plaintext refused, the shim's fallback carried it
#  client/*-from-nginx-https-16MiB   curl (nonblocking connect + poll), python urllib with a timeout
#                       (nonblocking connect + poll), dynamic busybox wget (stdio via fdopen) with a connect
#                       rule against nginx's own HTTPS: 16 MiB byte-exact, nginx logged the TLS request
#  client/nonblocking-connect-refused   wrong name: EINPROGRESS, select reports the end, SO_ERROR
#                       ECONNREFUSED, send fails, no plaintext reached the server
#  client/select-small-reads   a select() loop reading 1000 bytes per wake-up, 16 MiB byte-exact
#  data/msg-peek, data/sigpipe, data/nosignal   MSG_PEEK twice then a read; a write to a vanished
#                       peer kills the server by SIGPIPE; with MSG_NOSIGNAL: EPIPE/ECONNRESET instead
#  daemon/*             ktlsxd holds the key (mode daemon): curl fetches byte-exact; the server process's
#                       memory (/proc/PID/mem) does not hold the private key; control: in-process mode, it does
# Environment (besides tests/lib.sh's): PRELOAD_SO (default build/lib/libktlsx-preload.so), DAEMON_BIN
#   (ktlsxd's directory, default build/bin), PRELOAD_ASAN=1 (put the ASan runtime first in LD_PRELOAD).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

SO=${PRELOAD_SO:-$ROOT/build/lib/libktlsx-preload.so}
EPOLL_HTTP=${EPOLL_HTTP:-$(dirname "$SO")/../tests/preload_epoll_http}
DBIN=${DAEMON_BIN:-$ROOT/build/bin}
HERE=$ROOT/tests/preload
BIG_SIZE=$((16 * 1024 * 1024))

if [[ ! -f $SO ]]; then
  case_begin build && skip "${SO#$ROOT/} not built"
  finish
fi
# Test a private copy (a relink in the shared build tree must not change it under the test).
cp "$SO" "$WORK/libktlsx-preload.so" && SO=$WORK/libktlsx-preload.so
PRE=$SO
if [[ ${PRELOAD_ASAN:-0} == 1 ]]; then
  # An ASan-built .so needs the ASan runtime loaded first; python itself is not instrumented, so
  # leaks in it are not ours: leak detection off, everything else on.
  rt=$(${CC:-cc} -print-file-name=libasan.so)
  [[ -f $rt ]] || { case_begin build && skip "ASan runtime not found"; finish; }
  PRE="$rt $SO"
  export ASAN_OPTIONS=${PRELOAD_ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:verify_asan_link_order=0}
fi
gen_certs || exit 1
CA=$CERTS/ca.pem
DOCS=$WORK/docs
mkdir -p "$DOCS"
head -c "$BIG_SIZE" /dev/urandom >"$DOCS/big.bin"
echo "hello over the shim" >"$DOCS/hello.txt"

shim() { env LD_PRELOAD="$PRE" "$@"; }

# ------------------------------------------------------------------ exports ---
if case_begin exports; then
  syms=$(nm -D --defined-only "$SO" | awk '$2 == "T" || $2 == "W" {print $3}' | sort | tr '\n' ' ')
  want="accept accept4 close connect dup dup2 dup3 epoll_ctl epoll_pwait epoll_wait fcntl fcntl64 fdopen getaddrinfo getsockopt listen poll ppoll pselect read readv recv recvfrom recvmsg select send sendfile sendfile64 sendmsg sendto shutdown socket splice write writev "
  extra=$(nm -D --defined-only "$SO" | awk '$2 != "T" && $2 != "W" && $2 != "A" {print $3}' | grep -v '^_' | tr '\n' ' ')
  if [[ $syms != "$want" ]]; then fail "exported: $syms (want: $want)"
  elif [[ -n ${extra// } ]]; then fail "other exported symbols: $extra"
  else echo "$syms" >"$CD/exports.txt"; pass; fi
fi

# ------------------------------------------------------------------- rules ---
bad_rules() { # bad_rules NAME EXPECTED-REGEX CONTENT...  (content lines)
  local name=$1 re=$2; shift 2
  case_begin "rules/$name" || return 0
  printf '%s\n' "$@" >"$CD/bad.rules"
  run_cmd prog /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/bad.rules" python3 -c 'print("program ran")'
  if (( RC != 1 )); then fail "exit $RC, want 1"
  elif grep -q 'program ran' "$CD/prog.out"; then fail "the program ran"
  elif ! grep -qE "^ktlsx-preload: $CD/bad.rules:$re" "$CD/prog.err"; then fail "no 'file:$re' message: $(head -c 300 "$CD/prog.err")"
  else pass; fi
}
bad_rules unknown-directive '2: unknown directive' '# a comment' 'listen 8443'
bad_rules bad-port '1: bad port' 'serve 99999 cert=/x key=/y'
bad_rules cert-without-key '3: cert= and key= go together' 'mode auto' '' "serve 8443 cert=$(crt server-ecdsa)"
bad_rules missing-cert-file '2: .*(no such|cannot|No such)' 'log info' "serve 8443 cert=$CD/none.pem key=$CD/none.key"
bad_rules daemon-needs-profile '2: mode daemon: the rule needs profile' 'mode daemon' "serve 8443 cert=$(crt server-ecdsa) key=$(key server-ecdsa)"
bad_rules repeated-rule '3: serve 8443 repeats the rule of' "serve 8443 profile=a" '' "serve 8443 profile=b"
if case_begin rules/env-one-liner; then
  run_cmd prog /dev/null env LD_PRELOAD="$PRE" KTLSX_SERVE=notaport KTLSX_CERT="$(crt server-ecdsa)" \
    KTLSX_KEY="$(key server-ecdsa)" python3 -c 'print("program ran")'
  if (( RC != 1 )) || grep -q 'program ran' "$CD/prog.out"; then fail "exit $RC, the program may have run"
  elif ! grep -q '^ktlsx-preload: KTLSX_SERVE:1: bad port' "$CD/prog.err"; then fail "message: $(head -c 300 "$CD/prog.err")"
  else pass; fi
fi
if case_begin rules/missing-file; then
  run_cmd prog /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/nothere.rules" python3 -c 'print("program ran")'
  if (( RC != 1 )) || grep -q 'program ran' "$CD/prog.out"; then fail "exit $RC, the program may have run"
  elif ! grep -q "nothere.rules: cannot open the rules file" "$CD/prog.err"; then fail "message: $(head -c 300 "$CD/prog.err")"
  else pass; fi
fi

# -------------------------------------------------------- python http.server ---
fetch_big() { # fetch_big NAME PORT CURL-ARGS...: curl the 16 MiB file over HTTPS, byte-exact
  local name=$1 port=$2; shift 2
  run_cmd "$name" /dev/null curl -sS --cacert "$CA" "$@" -o "$CD/$name.data" "https://localhost:$port/big.bin"
  if (( RC != 0 )); then WHY="curl $(describe_rc "$RC"): $(head -c 200 "$CD/$name.err")"; return 1; fi
  same_data "$DOCS/big.bin" "$CD/$name.data" || { WHY=$DATA_WHY; return 1; }
  return 0
}
server_clean() { # the shim wrote no error, no sanitizer report
  if sanitizer_report "$CD/srv.err"; then WHY=$SAN_WHY; return 1; fi
  return 0
}

for v in 1.3 1.2; do
  if case_begin "http/python-tls$v-16MiB"; then
    if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
         KTLSX_KEY="$(key server-ecdsa)" KTLSX_LOG=info python3 -m http.server "{PORT}" --bind 127.0.0.1 -d "$DOCS"; then
      fail "server did not start"
    elif ! fetch_big curl "$PORT" --tlsv$v --tls-max $v; then fail "$WHY"
    elif ! grep -q "accepted TLSv$v\|KTLSX_SERVE:1: TLS on port" "$CD/srv.err"; then fail "no shim line in the server log"
    elif ! server_clean; then fail "$WHY"
    else pass; fi
  fi
done

if case_begin http/python-openssl-s_client; then
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-rsa)" \
       KTLSX_KEY="$(key server-rsa)" python3 -m http.server "{PORT}" --bind 127.0.0.1 -d "$DOCS"; then
    fail "server did not start"
  else
    printf 'GET /big.bin HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$CD/req.txt"
    run_cmd sc "$CD/req.txt" openssl s_client -quiet -ign_eof -connect "127.0.0.1:$PORT" -servername localhost \
      -verify_return_error -CAfile "$CA"
    # the body follows the first empty line of the response
    python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); open(sys.argv[2],"wb").write(d[i+4:] if i>=0 else b"")' \
      "$CD/sc.out" "$CD/sc.data"
    if (( RC != 0 )); then fail "s_client $(describe_rc "$RC")"
    elif ! head -c 20 "$CD/sc.out" | grep -q '^HTTP/1.0 200'; then fail "no 200: $(head -c 100 "$CD/sc.out")"
    elif ! same_data "$DOCS/big.bin" "$CD/sc.data"; then fail "$DATA_WHY"
    else pass; fi
  fi
fi

if case_begin plain-next-to-tls; then
  PLAIN_PORT=$(free_port)
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" python3 "$HERE/two_ports.py" "$DOCS" "{PORT}" "$PLAIN_PORT"; then
    fail "server did not start"
  else
    wait_listen "$PLAIN_PORT" "$SERVER_PID" 10
    run_cmd plain /dev/null curl -sS "http://127.0.0.1:$PLAIN_PORT/hello.txt"
    plain_rc=$RC; cp "$CD/plain.out" "$CD/plain.txt"
    run_cmd tls /dev/null curl -sS --cacert "$CA" "https://localhost:$PORT/hello.txt"
    tls_rc=$RC
    run_cmd plain-on-tls /dev/null curl -sS -m 5 "http://127.0.0.1:$PORT/hello.txt"
    if (( plain_rc != 0 )) || ! cmp -s "$CD/plain.txt" "$DOCS/hello.txt"; then fail "plaintext port: curl exit $plain_rc, $(head -c 100 "$CD/plain.txt")"
    elif (( tls_rc != 0 )) || ! cmp -s "$CD/tls.out" "$DOCS/hello.txt"; then fail "TLS port: curl exit $tls_rc"
    elif (( RC == 0 )); then fail "plaintext HTTP on the TLS port was answered"
    else pass; fi
  fi
fi

if case_begin dup-fork; then
  cat >"$CD/dupfork.py" <<'PY'
import os, socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(8)
for _ in range(2):
    c, _a = srv.accept()
    fd2 = os.dup(c.fileno())
    c.close()                      # closing one fd of the connection must not end its TLS state
    if os.fork() == 0:
        req = os.read(fd2, 4096)
        body = b"child %d read %d bytes\n" % (os.getpid(), len(req))
        os.write(fd2, b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        os.close(fd2)
        os._exit(0)
    os.close(fd2)                  # the parent's copy: no close_notify, the child carries on
    os.wait()
PY
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" python3 "$CD/dupfork.py" "{PORT}"; then
    fail "server did not start"
  else
    run_cmd c1 /dev/null curl -sS --cacert "$CA" "https://localhost:$PORT/"
    rc1=$RC
    run_cmd c2 /dev/null curl -sS --cacert "$CA" "https://localhost:$PORT/"
    if (( rc1 != 0 || RC != 0 )); then fail "curl exit $rc1 / $RC: $(cat "$CD/c1.err" "$CD/c2.err" | head -c 300)"
    elif ! grep -q '^child [0-9]* read [0-9]* bytes' "$CD/c1.out" || ! grep -q '^child' "$CD/c2.out"; then fail "bodies: $(cat "$CD/c1.out" "$CD/c2.out")"
    else pass; fi
  fi
fi

# ------------------------------------------------------------------ client ---
start_www() { # openssl s_server -WWW serving $DOCS (its cwd)
  start_server www -- bash -c "cd '$DOCS' && exec openssl s_server -accept {PORT} -WWW $(ossl_cert_args server-ecdsa) -naccept 4"
}
urllib_get() { # urllib_get NAME URL RULES-TEXT: fetch URL under the shim into $CD/NAME.data
  local name=$1 url=$2
  printf '%s\n' "$3" >"$CD/$name.rules"
  run_cmd "$name" /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/$name.rules" KTLSX_LOG=info python3 -c '
import sys, urllib.request
data = urllib.request.urlopen(sys.argv[1], timeout=None).read()
open(sys.argv[2], "wb").write(data)' "$url" "$CD/$name.data"
}
if case_begin client/urllib-by-address; then
  if ! start_www; then fail "s_server did not start"
  else
    urllib_get get "http://127.0.0.1:$PORT/big.bin" "connect 127.0.0.1:$PORT name=localhost ca=$CA"
    if (( RC != 0 )); then fail "urllib $(describe_rc "$RC"): $(tail -n 3 "$CD/get.err" | head -c 300)"
    elif ! same_data "$DOCS/big.bin" "$CD/get.data"; then fail "$DATA_WHY"
    else pass; fi
  fi
fi
if case_begin client/urllib-by-name; then
  if ! start_www; then fail "s_server did not start"
  else
    urllib_get get "http://localhost:$PORT/hello.txt" "connect localhost:$PORT ca=$CA"
    if (( RC != 0 )); then fail "urllib $(describe_rc "$RC"): $(tail -n 3 "$CD/get.err" | head -c 300)"
    elif ! cmp -s "$DOCS/hello.txt" "$CD/get.data"; then fail "body differs"
    else pass; fi
  fi
fi
if case_begin client/wrong-name-refused; then
  if ! start_www; then fail "s_server did not start"
  else
    urllib_get get "http://127.0.0.1:$PORT/hello.txt" "connect 127.0.0.1:$PORT name=wrong.example ca=$CA"
    if (( RC == 0 )); then fail "the fetch succeeded against a certificate for another name"
    elif rc_crashed "$RC"; then fail "urllib $(describe_rc "$RC")"
    elif grep -q 'GET /hello.txt' "$CD/www.out" "$CD/www.err"; then fail "the request reached the server"
    elif ! grep -qi 'refused\|handshake failed' "$CD/get.err"; then fail "no refusal in the client's stderr: $(tail -n 2 "$CD/get.err")"
    else pass; fi
  fi
fi

# ------------------------------------------------------------------- stall ---
if case_begin stall; then
  printf 'handshake-timeout 6000\nlog info\nserve %s cert=%s key=%s\n' PORTX "$(crt server-ecdsa)" "$(key server-ecdsa)" >"$CD/tmpl.rules"
  SPORT=$(free_port)
  sed "s/PORTX/$SPORT/" "$CD/tmpl.rules" >"$CD/s.rules"
  timeout -k 2 "$SRV_TMO" env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/s.rules" python3 -m http.server "$SPORT" \
    --bind 127.0.0.1 -d "$DOCS" >"$CD/srv.out" 2>"$CD/srv.err" <&"$HOLD_FD" &
  SERVER_PID=$!; BG_PIDS+=("$SERVER_PID"); ALL_PIDS+=("$SERVER_PID")
  if ! wait_listen "$SPORT" "$SERVER_PID" 10; then fail "server did not start"
  else
    timeout 30 python3 "$HERE/staller.py" "$SPORT" 20 >"$CD/staller.out" 2>&1 &
    st_pid=$!; BG_PIDS+=("$st_pid"); ALL_PIDS+=("$st_pid")
    sleep 0.5
    t0=$(date +%s.%N)
    run_cmd c /dev/null curl -sS --cacert "$CA" "https://localhost:$SPORT/hello.txt"
    t1=$(date +%s.%N)
    wait "$st_pid" 2>/dev/null
    secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    echo "curl waited $secs s behind the staller; staller: $(cat "$CD/staller.out")" >"$CD/timing.txt"
    if (( RC != 0 )) || ! cmp -s "$CD/c.out" "$DOCS/hello.txt"; then fail "curl behind the staller: exit $RC"
    elif ! grep -q 'closed-by-server after' "$CD/staller.out"; then fail "the staller was not cut: $(cat "$CD/staller.out")"
    elif ! grep -qE 'closed-by-server after [5-9]\.|closed-by-server after 1[0-9]\.' "$CD/staller.out"; then fail "the staller was cut too early or late: $(cat "$CD/staller.out") (deadline 6 s)"
    elif python3 -c "import sys; sys.exit(0 if $secs < 3 else 1)"; then echo "    $(cat "$CD/timing.txt")"; pass
    else fail "curl waited $secs s behind the staller (it should not wait for it at all)"; fi
  fi
fi

# ------------------------------------------------------------------- async ---
if case_begin async/server-4x16MiB-with-staller; then
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" KTLSX_LOG=info python3 "$HERE/async_server.py" "$DOCS" "{PORT}"; then
    fail "server did not start"
  else
    timeout 30 python3 "$HERE/staller.py" "$PORT" 25 >"$CD/staller.out" 2>&1 &
    st_pid=$!; BG_PIDS+=("$st_pid"); ALL_PIDS+=("$st_pid")
    sleep 0.3
    pids=()
    for i in 1 2 3 4; do
      timeout -k 2 "$TMO" curl -sS --cacert "$CA" -o "$CD/c$i.data" "https://localhost:$PORT/big.bin" 2>"$CD/c$i.err" &
      pids+=($!)
    done
    bad=
    for i in 1 2 3 4; do
      wait "${pids[i-1]}" || bad+=" curl$i:exit$?"
      same_data "$DOCS/big.bin" "$CD/c$i.data" || bad+=" curl$i:$DATA_WHY"
    done
    if [[ -n $bad ]]; then fail "$bad"
    elif ! server_clean; then fail "$WHY"
    else pass; fi
  fi
fi
if case_begin async/client-nonblocking-connect; then
  if ! start_www; then fail "s_server did not start"
  else
    printf 'connect 127.0.0.1:%s name=localhost ca=%s\n' "$PORT" "$CA" >"$CD/c.rules"
    run_cmd get /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" python3 -c '
import asyncio, sys
async def main():
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
    w.write(b"GET /big.bin HTTP/1.0\r\n\r\n")
    await w.drain()
    data = await r.read()
    open(sys.argv[2], "wb").write(data[data.find(b"\r\n\r\n") + 4:])
asyncio.run(main())' "$PORT" "$CD/get.data"
    if (( RC != 0 )); then fail "asyncio client $(describe_rc "$RC"): $(tail -n 3 "$CD/get.err" | head -c 300)"
    elif ! same_data "$DOCS/big.bin" "$CD/get.data"; then fail "$DATA_WHY"
    else pass; fi
  fi
fi

# ------------------------------------------------------------------- epoll ---
for trig in lt et; do
  case_begin "epoll/server-$trig-3x16MiB" || continue
  if [[ ! -x $EPOLL_HTTP ]]; then skip "${EPOLL_HTTP#$ROOT/} not built"; continue; fi
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" KTLSX_LOG=info "$EPOLL_HTTP" serve "{PORT}" "$DOCS" "$trig"; then
    fail "server did not start"; continue
  fi
  pids=() bad=
  for i in 1 2 3; do
    timeout -k 2 "$TMO" curl -sS --cacert "$CA" -o "$CD/c$i.data" "https://localhost:$PORT/big.bin" 2>"$CD/c$i.err" &
    pids+=($!)
  done
  for i in 1 2 3; do
    wait "${pids[i-1]}" || bad+=" curl$i:exit$?"
    same_data "$DOCS/big.bin" "$CD/c$i.data" || bad+=" curl$i:$DATA_WHY"
  done
  if [[ -n $bad ]]; then fail "$bad"
  elif ! server_clean; then fail "$WHY"
  else pass; fi
done
if case_begin epoll/client-small-reads; then
  if [[ ! -x $EPOLL_HTTP ]]; then skip "${EPOLL_HTTP#$ROOT/} not built"
  elif ! start_www; then fail "s_server did not start"
  else
    printf 'connect 127.0.0.1:%s name=localhost ca=%s\n' "$PORT" "$CA" >"$CD/c.rules"
    run_cmd get /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" "$EPOLL_HTTP" get "$PORT" big.bin
    python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); open(sys.argv[2],"wb").write(d[i+4:] if i>=0 else b"")' \
      "$CD/get.out" "$CD/get.data"
    if (( RC != 0 )); then fail "epoll_http get $(describe_rc "$RC"): $(tail -n 2 "$CD/get.err" | head -c 300)"
    elif ! same_data "$DOCS/big.bin" "$CD/get.data"; then fail "$DATA_WHY"
    else pass; fi
  fi
fi

# edge-triggered client: the EPOLLOUT edge of the nonblocking connect must come at the end of the shim's
# handshake (a write before it would get EAGAIN, and no second edge would follow)
if case_begin epoll/client-et-nonblocking-connect; then
  if [[ ! -x $EPOLL_HTTP ]]; then skip "${EPOLL_HTTP#$ROOT/} not built"
  elif ! start_www; then fail "s_server did not start"
  else
    printf 'connect 127.0.0.1:%s name=localhost ca=%s\n' "$PORT" "$CA" >"$CD/c.rules"
    run_cmd get /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" "$EPOLL_HTTP" get "$PORT" big.bin et
    python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); open(sys.argv[2],"wb").write(d[i+4:] if i>=0 else b"")' \
      "$CD/get.out" "$CD/get.data"
    if (( RC != 0 )); then fail "epoll_http get et $(describe_rc "$RC"): $(tail -n 2 "$CD/get.err" | head -c 300)"
    elif ! same_data "$DOCS/big.bin" "$CD/get.data"; then fail "$DATA_WHY"
    else pass; fi
  fi
fi

# ----------------------------------------------------------------- busybox ---
BB=${BUSYBOX_DYN:-$ROOT/build/deps/busybox-dynamic/bin/busybox}
if case_begin busybox/httpd-dynamic; then
  if [[ ! -x $BB ]]; then skip "no dynamic busybox (make deps unpacks Debian's into build/deps/busybox-dynamic)"
  elif ! readelf -l "$BB" 2>/dev/null | grep -q 'Requesting program interpreter'; then skip "$BB is not dynamically linked"
  elif ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" KTLSX_LOG=info "$BB" httpd -f -p "127.0.0.1:{PORT}" -h "$DOCS"; then
    fail "busybox httpd did not start"
  elif ! fetch_big curl "$PORT"; then fail "curl: $WHY"
  else
    printf 'GET /big.bin HTTP/1.0\r\n\r\n' >"$CD/req.txt"
    run_cmd sc "$CD/req.txt" openssl s_client -quiet -ign_eof -connect "127.0.0.1:$PORT" -servername localhost \
      -verify_return_error -CAfile "$CA"
    python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); open(sys.argv[2],"wb").write(d[i+4:] if i>=0 else b"")' \
      "$CD/sc.out" "$CD/sc.data"
    if (( RC != 0 )); then fail "s_client $(describe_rc "$RC")"
    elif ! same_data "$DOCS/big.bin" "$CD/sc.data"; then fail "s_client: $DATA_WHY"
    elif ! server_clean; then fail "$WHY"
    else pass; fi
  fi
fi
if case_begin busybox/static-not-reached; then
  if [[ ! -x /bin/busybox ]] || readelf -l /bin/busybox 2>/dev/null | grep -q 'Requesting program interpreter'; then
    skip "/bin/busybox is not a static binary here"
  elif ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" /bin/busybox httpd -f -p "127.0.0.1:{PORT}" -h "$DOCS"; then
    fail "static busybox httpd did not start"
  else
    run_cmd plain /dev/null curl -sS "http://127.0.0.1:$PORT/hello.txt"
    if (( RC == 0 )) && cmp -s "$CD/plain.out" "$DOCS/hello.txt"; then pass  # plaintext: the limit, as documented
    else fail "the static busybox did not answer plaintext (curl exit $RC): docs/preload.md's limit is wrong"; fi
  fi
fi

# ------------------------------------------------------------------- nginx ---
# Debian's nginx with a plaintext `listen PORT;` config, a master and 2 workers (prefork: the listener is
# made by the master and inherited by the workers, which accept4 on it with epoll, EPOLLEXCLUSIVE),
# sendfile on.  NGINX=PATH overrides the binary.
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
nginx_conf() { # nginx_conf DIR [SERVER-LINES]: config template (port PORTX) and the dirs under DIR
  local d=$1 srv=${2:-listen PORTX;}
  mkdir -p "$d/logs" "$d/tmp"
  cat >"$d/nginx.tmpl" <<CONF
daemon off;
master_process on;
worker_processes 2;
$( (( $(id -u) == 0 )) && echo "user root;")
error_log $d/logs/error.log info;
pid $d/nginx.pid;
events { worker_connections 512; }
http {
  log_format withpid '\$pid \$status \$body_bytes_sent \$request';
  access_log $d/logs/access.log withpid;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
  uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  sendfile on;
  keepalive_timeout 5;
  server { $srv root $DOCS; }
}
CONF
}
start_nginx() { # start_nginx DIR ENV...: nginx under the shim (serve rule for the port in the env)
  local d=$1; shift
  start_server srv -- env LD_PRELOAD="$PRE" "${@//PORTX/\{PORT\}}" bash -c \
    "sed 's/PORTX/{PORT}/' '$d/nginx.tmpl' >'$d/nginx.conf' && exec '$NGINX' -e '$d/logs/error.log' -p '$d' -c '$d/nginx.conf'"
}
stop_nginx() { # the master ends its workers on SIGQUIT/SIGTERM; never leave orphaned workers
  local d=$1 mp
  mp=$(cat "$d/nginx.pid" 2>/dev/null)
  [[ -n $mp ]] && kill -TERM "$mp" 2>/dev/null
  for _ in $(seq 100); do pgrep -f "nginx: worker process" -P "$mp" >/dev/null 2>&1 || break; sleep 0.05; done
}
if case_begin nginx/prefork-16MiB-curl-s_client; then
  if [[ ! -x $NGINX ]]; then skip "nginx not installed (make deps)"
  else
    NG=$CD/ng; nginx_conf "$NG"
    if ! start_nginx "$NG" KTLSX_SERVE=PORTX KTLSX_CERT="$(crt server-ecdsa)" KTLSX_KEY="$(key server-ecdsa)" KTLSX_LOG=info; then
      fail "nginx did not start: $(tail -n 3 "$CD/srv.err" "$NG/logs/error.log" 2>/dev/null | head -c 400)"
    else
      sleep 0.3 # the workers start after the master's listen
      workers=$(pgrep -f "nginx: worker process" | wc -l)
      bad=
      fetch_big curl "$PORT" || bad+=" curl: $WHY"
      printf 'GET /big.bin HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$CD/req.txt"
      run_cmd sc "$CD/req.txt" openssl s_client -quiet -ign_eof -connect "127.0.0.1:$PORT" -servername localhost \
        -verify_return_error -CAfile "$CA"
      python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); open(sys.argv[2],"wb").write(d[i+4:] if i>=0 else b"")' \
        "$CD/sc.out" "$CD/sc.data"
      (( RC == 0 )) || bad+=" s_client $(describe_rc "$RC")"
      same_data "$DOCS/big.bin" "$CD/sc.data" || bad+=" s_client: $DATA_WHY"
      run_cmd plain /dev/null curl -sS -m 5 "http://127.0.0.1:$PORT/hello.txt"
      (( RC == 0 )) && bad+=" plaintext HTTP was answered on the TLS port"
      stop_nginx "$NG"
      if (( workers < 2 )); then fail "expected 2 nginx workers, saw $workers"
      elif [[ -n $bad ]]; then fail "$bad"
      elif grep -q 'ERROR\|AddressSanitizer' "$NG/logs/error.log" "$CD/srv.err"; then fail "shim error: $(grep -m2 'ERROR\|AddressSanitizer' "$NG/logs/error.log" "$CD/srv.err")"
      else pass; fi
    fi
  fi
fi
# Many concurrent connections spread over both workers: every one must be served, none may wait for a
# handshake deadline (with one process's readiness signal visible to the others, a worker would take
# another's wake-up for a client and leave finished connections waiting).
if case_begin nginx/prefork-60-concurrent; then
  if [[ ! -x $NGINX ]]; then skip "nginx not installed (make deps)"
  else
    NG=$CD/ng; nginx_conf "$NG"
    if ! start_nginx "$NG" KTLSX_SERVE=PORTX KTLSX_CERT="$(crt server-ecdsa)" KTLSX_KEY="$(key server-ecdsa)"; then
      fail "nginx did not start"
    else
      sleep 0.3
      t0=$(date +%s%N)
      pids=()
      for i in $(seq 60); do
        timeout -k 2 "$TMO" curl -sS -m 8 --cacert "$CA" -o "$CD/c$i.data" "https://localhost:$PORT/hello.txt" 2>"$CD/c$i.err" &
        pids+=($!)
      done
      bad=0
      for i in $(seq 60); do wait "${pids[i-1]}" || bad=$((bad + 1)); cmp -s "$CD/c$i.data" "$DOCS/hello.txt" || bad=$((bad + 1)); done
      ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      stop_nginx "$NG"
      served_by=$(awk '$2 == 200 {print $1}' "$NG/logs/access.log" | sort | uniq -c | tr '\n' ' ')
      echo "    60 requests in $ms ms; served by (count pid): $served_by"
      if (( bad > 0 )); then fail "$bad of 60 failed or differ: $(cat "$CD"/c*.err | sort | uniq -c | head -n 3)"
      elif (( ms > 7000 )); then fail "60 requests took $ms ms (a connection waited for a deadline)"
      else pass; fi
    fi
  fi
fi

# ---------------------------------------------------------------- lighttpd ---
# Debian's lighttpd (one process, epoll, nonblocking accept4, sends files with sendfile) with a
# minimal plaintext config (no module) under the shim.  LIGHTTPD=PATH overrides the binary.
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
if case_begin lighttpd/sendfile-16MiB-curl-s_client; then
  if [[ ! -x $LIGHTTPD ]]; then skip "lighttpd not installed (make deps)"
  else
    LT=$CD/lt; mkdir -p "$LT"
    printf 'server.document-root = "%s"\nserver.bind = "127.0.0.1"\nserver.port = PORTX\nserver.errorlog = "%s"\n' \
      "$DOCS" "$LT/error.log" >"$LT/lighttpd.tmpl"
    if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
         KTLSX_KEY="$(key server-ecdsa)" KTLSX_LOG=info bash -c \
         "sed 's/PORTX/{PORT}/' '$LT/lighttpd.tmpl' >'$LT/lighttpd.conf' && exec '$LIGHTTPD' -D -f '$LT/lighttpd.conf'"; then
      fail "lighttpd did not start: $(tail -n 2 "$CD/srv.err" "$LT/error.log" 2>/dev/null | head -c 400)"
    else
      bad=
      fetch_big curl "$PORT" || bad+=" curl: $WHY"
      printf 'GET /big.bin HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$CD/req.txt"
      run_cmd sc "$CD/req.txt" openssl s_client -quiet -ign_eof -connect "127.0.0.1:$PORT" -servername localhost \
        -verify_return_error -CAfile "$CA"
      (( RC == 0 )) || bad+=" s_client $(describe_rc "$RC")"
      python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); open(sys.argv[2],"wb").write(d[i+4:] if i>=0 else b"")' \
        "$CD/sc.out" "$CD/sc.data"
      same_data "$DOCS/big.bin" "$CD/sc.data" || bad+=" s_client: $DATA_WHY"
      run_cmd plain /dev/null curl -sS -m 5 "http://127.0.0.1:$PORT/hello.txt"
      (( RC == 0 )) && bad+=" plaintext HTTP was answered on the TLS port"
      if [[ -n $bad ]]; then fail "$bad"
      elif ! grep -q 'user-space record layer carries' "$CD/srv.err"; then fail "no fallback line from the shim: $(head -c 300 "$CD/srv.err")"
      elif ! server_clean; then fail "$WHY"
      else pass; fi
    fi
  fi
fi

# ------------------------------------------------- clients against nginx's own HTTPS ---
# nginx terminates TLS itself (listen ssl); the clients speak plaintext HTTP under the shim with a
# connect rule.  curl and python urllib with a timeout connect nonblocking (EINPROGRESS, then poll for
# writability: the end of the shim's handshake); busybox wget reads and writes through stdio (fdopen).
NGT=$WORK/ngtls
if [[ -x $NGINX ]]; then
  nginx_conf "$NGT" "listen 127.0.0.1:PORTX ssl; ssl_certificate $(crt server-ecdsa); ssl_certificate_key $(key server-ecdsa);"
fi
ngt_start() { start_server ngt -- bash -c "sed 's/PORTX/{PORT}/' '$NGT/nginx.tmpl' >'$NGT/nginx.conf' && exec '$NGINX' -e '$NGT/logs/error.log' -p '$NGT' -c '$NGT/nginx.conf'"; }
for cl in curl urllib busybox-wget; do
  case_begin "client/$cl-from-nginx-https-16MiB" || continue
  if [[ ! -x $NGINX ]]; then skip "nginx not installed"; continue; fi
  if [[ $cl == busybox-wget && ! -x $BB ]]; then skip "no dynamic busybox"; continue; fi
  if [[ $cl == curl && ${PRELOAD_ASAN:-0} == 1 ]] && ! timeout 5 env LD_PRELOAD="${PRE%% *}" curl -sS -o /dev/null file:///dev/null 2>/dev/null; then
    skip "curl hangs under the ASan runtime alone (LD_PRELOAD=libasan.so curl: setlocale deadlock), without the shim"; continue
  fi
: >"$NGT/logs/access.log"
  if ! ngt_start; then fail "nginx (TLS) did not start: $(tail -n 2 "$NGT/logs/error.log")"; continue; fi
  printf 'log info\nconnect 127.0.0.1:%s name=localhost ca=%s\n' "$PORT" "$CA" >"$CD/c.rules"
  url="http://127.0.0.1:$PORT/big.bin"
  case $cl in
    curl) run_cmd get /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" curl -sS -o "$CD/get.data" "$url" ;;
    urllib) run_cmd get /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" python3 -c '
import sys, urllib.request
open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=20).read())' "$url" "$CD/get.data" ;;
    busybox-wget) run_cmd get /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" "$BB" wget -q -O "$CD/get.data" "$url" ;;
  esac
  nginx_pid=$(cat "$NGT/nginx.pid" 2>/dev/null); stop_nginx "$NGT"
  if (( RC != 0 )); then fail "$cl $(describe_rc "$RC"): $(tail -n 2 "$CD/get.err" | head -c 300)"
  elif ! same_data "$DOCS/big.bin" "$CD/get.data"; then fail "$DATA_WHY"
  elif ! grep -q ' 200 16777216 GET /big.bin' "$NGT/logs/access.log"; then fail "nginx logged no TLS request: $(tail -n 1 "$NGT/logs/access.log")"
  elif sanitizer_report "$CD/get.err"; then fail "$SAN_WHY"
  else pass; fi
done

# nonblocking connect whose handshake fails (wrong name): select() reports the end, SO_ERROR is
# ECONNREFUSED, a send fails, and no plaintext reached the server.
if case_begin client/nonblocking-connect-refused; then
  if ! start_www; then fail "s_server did not start"
  else
    printf 'connect 127.0.0.1:%s name=wrong.example ca=%s\n' "$PORT" "$CA" >"$CD/c.rules"
    run_cmd nb /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" python3 -c '
import errno, select, socket, sys
s = socket.socket(); s.setblocking(False)
rc = s.connect_ex(("127.0.0.1", int(sys.argv[1])))
print("connect_ex", errno.errorcode.get(rc, rc))
r, w, x = select.select([], [s], [], 20)
print("writable", bool(w))
print("SO_ERROR", errno.errorcode.get(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0))
try:
    s.send(b"GET /hello.txt HTTP/1.0\r\n\r\n"); print("send ok")
except OSError as e:
    print("send", errno.errorcode.get(e.errno, e.errno))' "$PORT"
    if (( RC != 0 )); then fail "python $(describe_rc "$RC"): $(tail -n 2 "$CD/nb.err")"
    elif ! grep -q '^connect_ex EINPROGRESS' "$CD/nb.out"; then fail "connect_ex: $(head -n1 "$CD/nb.out")"
    elif ! grep -q '^writable True' "$CD/nb.out"; then fail "select did not report the end of the connect"
    elif ! grep -q '^SO_ERROR ECONNREFUSED' "$CD/nb.out"; then fail "$(grep SO_ERROR "$CD/nb.out")"
    elif grep -q '^send ok' "$CD/nb.out"; then fail "a send on the refused connection succeeded"
    elif grep -q 'GET /hello.txt' "$CD/www.out" "$CD/www.err"; then fail "plaintext reached the server"
    else pass; fi
  fi
fi

# a select() loop on a nonblocking TLS client reading 1000 bytes per wake-up: most of each record
# waits in the shim, the socket is not readable, select must still report it (16 MiB byte-exact)
if case_begin client/select-small-reads; then
  if ! start_www; then fail "s_server did not start"
  else
    printf 'connect 127.0.0.1:%s name=localhost ca=%s\n' "$PORT" "$CA" >"$CD/c.rules"
    run_cmd sel /dev/null env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/c.rules" python3 -c '
import select, socket, sys
s = socket.socket(); s.setblocking(False)
s.connect_ex(("127.0.0.1", int(sys.argv[1])))
select.select([], [s], [], 20)
s.setblocking(True); s.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n"); s.setblocking(False)
out = bytearray()
while True:
    r, _, _ = select.select([s], [], [], 10)
    if not r: sys.exit("select timed out with %d bytes" % len(out))
    try: d = s.recv(1000)
    except BlockingIOError: continue
    if not d: break
    out += d
i = out.find(b"\r\n\r\n"); open(sys.argv[2], "wb").write(out[i + 4:])' "$PORT" "$CD/sel.data"
    if (( RC != 0 )); then fail "python $(describe_rc "$RC"): $(tail -n 2 "$CD/sel.err")"
    elif ! same_data "$DOCS/big.bin" "$CD/sel.data"; then fail "$DATA_WHY"
    else pass; fi
  fi
fi

# MSG_PEEK on a TLS fd, and SIGPIPE: a server under the shim peeks 5 bytes, reads the request, answers
# with both; then writes to a peer that has gone away: killed by SIGPIPE (default action) as without
# the shim; the same with MSG_NOSIGNAL: EPIPE/ECONNRESET, no signal.
cat >"$WORK/peekpipe.py" <<'PY'
import errno, os, signal, socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(8)
mode = sys.argv[2]
c, _ = srv.accept()
if mode == "peek":
    p1 = c.recv(5, socket.MSG_PEEK); p2 = c.recv(5, socket.MSG_PEEK)
    req = c.recv(4096)
    body = b"peek=%s again=%s starts=%s\n" % (p1, p2, req[:5])
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body); c.close()
    sys.exit(0)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
c.recv(4096)
time.sleep(1)                     # the client is gone by now
flags = socket.MSG_NOSIGNAL if mode == "nosignal" else 0
for i in range(200):
    try:
        c.send(b"x" * 4096, flags)
    except OSError as e:
        print("error", errno.errorcode.get(e.errno, e.errno), flush=True)
        sys.exit(3)
    time.sleep(0.01)
print("no error", flush=True)
PY
if case_begin data/msg-peek; then
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" python3 "$WORK/peekpipe.py" "{PORT}" peek; then fail "server did not start"
  else
    run_cmd c /dev/null curl -sS --cacert "$CA" "https://localhost:$PORT/"
    if (( RC != 0 )); then fail "curl $(describe_rc "$RC"): $(head -c 200 "$CD/c.err") / $(tail -n 2 "$CD/srv.err")"
    elif ! grep -q "^peek=GET / again=GET / starts=GET /" "$CD/c.out"; then fail "body: $(head -c 200 "$CD/c.out")"
    else pass; fi
  fi
fi
for m in sigpipe nosignal; do
  case_begin "data/$m" || continue
  if ! start_server srv -- env LD_PRELOAD="$PRE" KTLSX_SERVE="{PORT}" KTLSX_CERT="$(crt server-ecdsa)" \
       KTLSX_KEY="$(key server-ecdsa)" python3 "$WORK/peekpipe.py" "{PORT}" "$m"; then fail "server did not start"; continue; fi
  # a TLS client that sends its request and closes at once
  run_cmd cl /dev/null python3 -c '
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.close()' "$PORT" "$CA"
  server_wait 20
  if [[ $m == sigpipe ]]; then
    # timeout(1) reports a child killed by signal N as 128+N
    if (( SERVER_RC == 128 + 13 )); then pass; else fail "server exit $SERVER_RC (want 141, killed by SIGPIPE): $(cat "$CD/srv.out")"; fi
  else
    if (( SERVER_RC == 3 )) && grep -q '^error E\(PIPE\|CONNRESET\)' "$CD/srv.out"; then pass
    else fail "server exit $SERVER_RC: $(cat "$CD/srv.out")"; fi
  fi
done

# ------------------------------------------------------------------ daemon ---
# The private scalar of the ECDSA key, big-endian and as a little-endian word array (BIGNUM in memory),
# and one base64 line of the PEM.
key_needles() {
  local hex
  hex=$(openssl pkey -in "$1" -noout -text 2>/dev/null | awk '/^priv:/{f=1;next} /^pub:/{f=0} f' | tr -d ' :\n')
  hex=$(printf '%064s' "$hex" | tr ' ' 0 | tail -c 64)
  echo "$hex" "$(echo "$hex" | fold -w2 | tac | tr -d '\n')" "$(sed -n 2p "$1" | tr -d '\n' | xxd -p | tr -d '\n')"
}
if [[ ! -x $DBIN/ktlsxd ]]; then
  case_begin daemon/build && skip "ktlsxd not built (${DBIN#$ROOT/}/ktlsxd)"
else
  DOOR_DIR=$(mktemp -d /tmp/ktlsx-preload.XXXXXX)
  trap 'rc=$?; rm -rf "$DOOR_DIR"; (exit $rc); _lib_exit' EXIT
  DOOR=$DOOR_DIR/door.sock
  cat >"$WORK/ktlsxd.conf" <<CONF
[daemon]
socket = $DOOR
log_level = info
handshake_timeout_ms = 8000

[server web]
cert = $(crt server-ecdsa)
key = $(key server-ecdsa)
versions = 1.2-1.3
allow_uids = $(id -u)
export_state = yes
CONF
  for m in daemon in-process; do
    case_begin "daemon/key-$m" || continue
    if [[ $m == daemon ]]; then
      timeout -k 2 "$SRV_TMO" "$DBIN/ktlsxd" -c "$WORK/ktlsxd.conf" >"$CD/ktlsxd.out" 2>"$CD/ktlsxd.err" &
      dpid=$!; BG_PIDS+=("$dpid"); ALL_PIDS+=("$dpid")
      for _ in $(seq 100); do [[ -S $DOOR ]] && break; sleep 0.05; done
      [[ -S $DOOR ]] || { fail "ktlsxd did not open its door"; continue; }
      rules="daemon $DOOR
mode daemon
log info
serve PORTX profile=web"
    else
      rules="mode in-process
log info
serve PORTX cert=$(crt server-ecdsa) key=$(key server-ecdsa)"
    fi
    KPORT=$(free_port)
    echo "${rules//PORTX/$KPORT}" >"$CD/k.rules"
    timeout -k 2 "$SRV_TMO" env LD_PRELOAD="$PRE" KTLSX_RULES="$CD/k.rules" python3 -m http.server "$KPORT" \
      --bind 127.0.0.1 -d "$DOCS" >"$CD/srv.out" 2>"$CD/srv.err" <&"$HOLD_FD" &
    SERVER_PID=$!; BG_PIDS+=("$SERVER_PID"); ALL_PIDS+=("$SERVER_PID")
    if ! wait_listen "$KPORT" "$SERVER_PID" 10; then fail "server did not start"; continue; fi
    if ! fetch_big curl "$KPORT"; then fail "$WHY"; continue; fi
    ppid_=$(pgrep -P "$SERVER_PID" | head -n1)    # timeout -> env (exec'd python)
    read -r -a needles <<<"$(key_needles "$(key server-ecdsa)")"
    python3 "$HERE/memscan.py" "$ppid_" "${needles[@]}" >"$CD/scan.txt" 2>&1
    scan_rc=$?
    if (( scan_rc == 2 )); then fail "memory scan failed: $(cat "$CD/scan.txt")"
    elif [[ $m == daemon ]] && (( scan_rc != 0 )); then fail "the private key is in the server's memory: $(grep found "$CD/scan.txt")"
    elif [[ $m == in-process ]] && (( scan_rc != 1 )); then fail "control: the key was not found in in-process mode (the scan cannot see it)"
    elif [[ $m == daemon ]] && ! grep -q 'ok\|handshake' "$CD/ktlsxd.err"; then fail "ktlsxd logged no handshake"
    else echo "    $m: $(tr '\n' ' ' <"$CD/scan.txt")"; pass; fi
  done
fi

finish
