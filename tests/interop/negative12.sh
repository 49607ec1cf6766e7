#!/usr/bin/env bash
# TLS 1.2 negative cases: renegotiation and garbage on an established connection.
#  - openssl s_client -tls1_2 against ktlsx server: "R" on s_client's stdin asks
#    for a renegotiation; ktlsx refuses with a warning no_renegotiation (--trace:
#    "ClientHello refused: no_renegotiation"); the connection continues or ends
#    with an alert; ktlsx does not crash and serves the next connection
#  - openssl s_server -tls1_2 with ktlsx client: "r" on s_server's stdin sends a
#    HelloRequest; the ktlsx client refuses ("HelloRequest refused: no_renegotiation")
#    without crashing or hanging
#  - after a valid TLS 1.2 handshake (python3 ssl with memory BIOs, so raw bytes can
#    follow on the socket): a forged application_data record -> ktlsx server fails
#    with bad_record_mac and sends an alert record; random garbage -> a failure with
#    an alert; plain text instead of a ClientHello -> a handshake failure.  Each time
#    the ktlsx server keeps running and completes the next connection.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
CA=$CERTS/ca.pem

start_ktlsx_srv() { # EXTRA...   (keeps serving: no --once)
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" \
    --tls-version 1.2 --echo --trace "$@"
}

# still_serving: a fresh s_client connection to the ktlsx server gets its echo back
still_serving() {
  echo "next connection" >"$CD/next.txt"
  run_fed next "$CD/next.txt" "$CD/next.out" 16 -- openssl s_client -connect "127.0.0.1:$PORT" -servername localhost \
    -brief -nocommands -no_ign_eof -CAfile "$CA" -tls1_2
  if ! grep -q 'next connection' "$CD/next.out"; then
    WHY="the ktlsx server did not serve the next connection (s_client: $(grep -m1 -iE 'error|alert' "$CD/next.err" | cut -c1-160))"
    return 1
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then WHY="the ktlsx server exited"; return 1; fi
  return 0
}

# --------------------------------------------- client-initiated renegotiation ---
if case_begin renegotiate/s_client-to-ktlsx; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_srv; then
      # line 1, wait for its echo, "R" (renegotiate), line 2, keep stdin open a moment
      fifo=$CD/cli.fifo; mkfifo -m 600 "$fifo"
      (
        echo "before renegotiation"
        for _ in $(seq 1 100); do grep -q 'before renegotiation' "$CD/cli.out" 2>/dev/null && break; sleep 0.05; done
        echo "R"
        sleep 1
        echo "after renegotiation"
        sleep 1
      ) >"$fifo" 2>/dev/null &
      fpid=$!; ALL_PIDS+=("$fpid")
      run_cmd cli "$fifo" openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CA" -tls1_2
      _kill_pids "$fpid"
      if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"
      elif ! grep -q 'before renegotiation' "$CD/cli.out"; then fail "no echo before the renegotiation attempt"
      elif ! grep -q 'RENEGOTIATING' "$CD/cli.out" "$CD/cli.err"; then fail "s_client did not try to renegotiate"
      elif ! check_trace "$CD/srv.err" 'C->S ClientHello refused: no_renegotiation'; then fail "$TRACE_WHY"
      elif sanitizer_report "$CD/srv.err"; then fail "ktlsx server: $SAN_WHY"
      elif ! still_serving; then fail "$WHY"
      else
        # either outcome is fine: the connection went on (second line echoed) or s_client ended it with the alert
        if grep -q 'after renegotiation' "$CD/cli.out"; then log "$CASE: connection continued after the refusal"
        else log "$CASE: s_client ended the connection: $(grep -m1 -iE 'alert|error' "$CD/cli.err" | cut -c1-120)"; fi
        pass
      fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# --------------------------------------------- server-initiated renegotiation ---
if case_begin renegotiate/s_server-to-ktlsx; then
  if need_ktlsx && need_tool openssl; then
    # s_server's stdin: a FIFO whose writer sends "r" once the client's data has arrived
    sfifo=$CD/srv.fifo; mkfifo -m 600 "$sfifo"
    (
      exec 9>"$sfifo"
      for _ in $(seq 1 200); do grep -q 'from ktlsx' "$CD/srv.out" 2>/dev/null && break; sleep 0.05; done
      echo "r" >&9
      sleep 1.5
      echo "server line after r" >&9
      sleep 1.5
    ) 2>/dev/null &
    spid=$!; ALL_PIDS+=("$spid")
    if start_server srv --stdin "$sfifo" -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -tls1_2 \
         $(ossl_cert_args server-ecdsa); then
      cfifo=$CD/cli.fifo; mkfifo -m 600 "$cfifo"
      ( echo "from ktlsx"; sleep 4 ) >"$cfifo" 2>/dev/null &
      cpid=$!; ALL_PIDS+=("$cpid")
      run_cmd cli "$cfifo" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" --tls-version 1.2 --trace
      _kill_pids "$cpid" "$spid"
      if ! ktlsx_sane cli; then fail "$WHY"
      elif ! grep -q 'from ktlsx' "$CD/srv.out"; then fail "s_server did not get the client's data"
      elif ! check_trace "$CD/cli.err" 'S->C HelloRequest refused: no_renegotiation'; then fail "$TRACE_WHY"
      else
        log "$CASE: ktlsx client exit $RC ($(grep -a -m1 -E '^ktlsx: (connection|handshake) failed' "$CD/cli.err" || echo 'no failure line'))"
        pass
      fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ---------------------------------------------------- raw bytes after a handshake ---
cat >"$WORK/raw12.py" <<'PY'
# raw12.py PORT CA MODE: TLS 1.2 handshake with ssl memory BIOs, one echoed line,
# then MODE bytes straight onto the socket: "forged" (an application_data record
# with a random body) or "garbage" (random bytes).  Prints what came back:
# "alert-record" if a record of type 21 arrived, "closed" at EOF.
import os, socket, ssl, sys
port, ca, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.load_verify_locations(ca)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
o = ctx.wrap_bio(inc, out, server_hostname="localhost")
def flush():
    d = out.read()
    if d: s.sendall(d)
def pull():
    d = s.recv(65536)
    if not d: raise EOFError
    inc.write(d)
while True:
    try:
        o.do_handshake(); flush(); break
    except ssl.SSLWantReadError:
        flush(); pull()
print("handshake", o.version(), o.cipher()[0], flush=True)
o.write(b"hello before garbage\n"); flush()
got = b""
while b"\n" not in got:
    try: got += o.read(4096)
    except ssl.SSLWantReadError: pull()
print("echo", got.strip().decode(), flush=True)
if mode == "forged":
    body = os.urandom(40)
    s.sendall(bytes([23, 3, 3, 0, len(body)]) + body)
else:
    s.sendall(os.urandom(300))
raw = b""
try:
    while True:
        d = s.recv(65536)
        if not d: break
        raw += d
except (ConnectionResetError, socket.timeout):
    pass
if len(raw) >= 5 and raw[0] == 21: print("alert-record", flush=True)
print("closed", len(raw), flush=True)
PY

for mode in forged garbage; do
  if case_begin "raw/$mode-record-after-handshake"; then
    if need_ktlsx && need_tool openssl python3; then
      if start_ktlsx_srv; then
        run_cmd cli /dev/null python3 "$WORK/raw12.py" "$PORT" "$CA" "$mode"
        sleep 0.3
        if (( RC != 0 )); then fail "python client exit $RC: $(tail -n1 "$CD/cli.err")"
        elif ! grep -q '^echo hello before garbage' "$CD/cli.out"; then fail "no echo before the garbage"
        elif ! grep -q '^alert-record' "$CD/cli.out"; then fail "ktlsx sent no alert record after the $mode bytes ($(tail -n1 "$CD/cli.out"))"
        elif [[ $mode == forged ]] && ! grep -qa 'bad_record_mac' "$CD/srv.err"; then
          fail "ktlsx server did not report bad_record_mac: $(grep -a 'failed' "$CD/srv.err" | tail -n1)"
        elif ! grep -qaE '^ktlsx: (connection|handshake) failed: .*\(alert [a-z_]+\)' "$CD/srv.err"; then
          fail "ktlsx server logged no failure with an alert: $(tail -n1 "$CD/srv.err")"
        elif sanitizer_report "$CD/srv.err"; then fail "ktlsx server: $SAN_WHY"
        elif ! still_serving; then fail "$WHY"
        else pass; fi
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done

if case_begin raw/plaintext-instead-of-hello; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_srv; then
      # an HTTP request on the TLS port, and random bytes on another connection
      { exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3 >"$CD/http.out"; exec 3>&-; } 2>"$CD/http.err"
      { exec 3<>"/dev/tcp/127.0.0.1/$PORT" && head -c 512 /dev/urandom >&3 && timeout 5 cat <&3 >"$CD/rand.out"; exec 3>&-; } 2>"$CD/rand.err"
      sleep 0.3
      nfail=$(grep -ac '^ktlsx: handshake failed: .*(alert ' "$CD/srv.err")
      if (( nfail < 2 )); then fail "expected 2 handshake failures with an alert in the server log, got $nfail: $(grep -a failed "$CD/srv.err" | tail -n2 | tr '\n' ' ')"
      elif sanitizer_report "$CD/srv.err"; then fail "ktlsx server: $SAN_WHY"
      elif ! still_serving; then fail "$WHY"
      else
        # the alert record is best effort here: ktlsx closes with the rest of the request
        # unread, so the kernel may answer with a RST that discards it
        [[ -s $CD/http.out ]] && (( $(head -c1 "$CD/http.out" | od -An -tu1) == 21 )) \
          && log "$CASE: alert record received" || log "$CASE: no alert record seen (connection reset)"
        pass
      fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

finish
