#!/usr/bin/env bash
# Large ClientHellos against `ktlsx server` (issue 13 item 8), with a raw-socket
# probe (python3) that builds the ClientHello itself: about 70 KiB, made of
# 20000 unknown cipher suites ahead of TLS_AES_128_GCM_SHA256 and a 30000-byte
# padding extension (RFC 7685), sent in records of 2^14 bytes.
#  - default limit (128 KiB): the server answers with a ServerHello
#  - --max-handshake-message 16384: the server answers with a fatal
#    illegal_parameter alert, and the probe - still sending when the server
#    gave up - reads that alert and then a clean end of stream, never
#    ECONNRESET (the server lingers after the alert, draining what is in flight)
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1

cat >"$WORK/big_hello.py" <<'PY'
# big_hello.py PORT: send a ~70 KiB TLS 1.3 ClientHello, then print what came
# back: "sent all" or "send failed: ERR", then "handshake-record" / "alert
# LEVEL DESC" for the first record, then "eof" or "reset".
import os, socket, struct, sys
port = int(sys.argv[1])
def ext(t, body): return struct.pack("!HH", t, len(body)) + body
suites = b"\xee\xee" * 20000 + b"\x13\x01"
exts = (ext(0, struct.pack("!HBH", 12, 0, 9) + b"localhost")
        + ext(43, b"\x02\x03\x04")
        + ext(10, b"\x00\x02\x00\x1d")
        + ext(13, b"\x00\x06\x04\x03\x08\x04\x08\x07")
        + ext(51, struct.pack("!HHH", 36, 0x1d, 32) + os.urandom(32))
        + ext(21, bytes(30000)))
body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
        + struct.pack("!H", len(suites)) + suites + b"\x01\x00"
        + struct.pack("!H", len(exts)) + exts)
msg = b"\x01" + len(body).to_bytes(3, "big") + body
wire = b"".join(struct.pack("!BHH", 22, 0x0301, len(msg[i:i + 16384])) + msg[i:i + 16384]
                for i in range(0, len(msg), 16384))
print("hello", len(msg), flush=True)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
try:
    s.sendall(wire)
    print("sent all", flush=True)
except OSError as e:
    print("send failed:", e.__class__.__name__, flush=True)
raw, end = b"", "eof"
try:
    while True:
        d = s.recv(65536)
        if not d: break
        raw += d
        if len(raw) >= 5 and raw[0] == 22: break  # a ServerHello: enough
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    end = "timeout"
if len(raw) >= 5 and raw[0] == 22: print("handshake-record", flush=True)
elif len(raw) >= 7 and raw[0] == 21: print("alert", raw[5], raw[6], flush=True)
else: print("nothing", raw[:16].hex(), flush=True)
print(end, flush=True)
PY

start_srv() { # EXTRA...
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" \
    --key "$(key server-ecdsa)" --once "$@"
}

if case_begin big-hello/70k-accepted-by-default; then
  if need_ktlsx && need_tool python3; then
    if start_srv; then
      run_cmd cli /dev/null python3 "$WORK/big_hello.py" "$PORT"
      if (( RC != 0 )); then fail "python probe exit $RC: $(tail -n1 "$CD/cli.err")"
      elif ! grep -q '^handshake-record' "$CD/cli.out"; then
        fail "no ServerHello for a $(awk '/^hello/{print $2}' "$CD/cli.out")-byte ClientHello: $(sed -n 3p "$CD/cli.out") ($(grep -m1 'handshake failed' "$CD/srv.err"))"
      elif ! ktlsx_server_sane; then fail "$WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin big-hello/over-limit-alert-not-reset; then
  if need_ktlsx && need_tool python3; then
    if start_srv --max-handshake-message 16384; then
      run_cmd cli /dev/null python3 "$WORK/big_hello.py" "$PORT"
      if (( RC != 0 )); then fail "python probe exit $RC: $(tail -n1 "$CD/cli.err")"
      elif ! grep -q '^alert 2 47$' "$CD/cli.out"; then fail "expected a fatal illegal_parameter alert, got: $(sed -n 3p "$CD/cli.out")"
      elif ! grep -q '^eof$' "$CD/cli.out"; then fail "after the alert: $(tail -n1 "$CD/cli.out") (wanted a clean end of stream)"
      elif ! grep -q '^sent all' "$CD/cli.out"; then fail "the probe could not send its ClientHello: $(sed -n 2p "$CD/cli.out")"
      elif ! grep -q 'handshake failed' "$CD/srv.err"; then fail "the server did not report the failure"
      elif ! ktlsx_server_sane; then fail "$WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin big-hello/limit-option-refused; then
  if need_ktlsx; then
    run_cmd cli /dev/null "$KTLSX" server --listen 127.0.0.1:1 --cert "$(crt server-ecdsa)" \
      --key "$(key server-ecdsa)" --max-handshake-message 1000
    if (( RC == 0 )) || rc_crashed "$RC"; then fail "ktlsx server $(describe_rc "$RC") with --max-handshake-message 1000"
    elif ! grep -q '1000' "$CD/cli.err"; then fail "the message does not name the value: $(head -n1 "$CD/cli.err")"
    else pass; fi
  else skip "$SKIP_WHY"; fi
fi

finish
