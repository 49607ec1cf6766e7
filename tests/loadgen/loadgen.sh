#!/usr/bin/env bash
# tests/loadgen/loadgen.sh — ktlsx-load, the load generator (issue 11), against real servers on the host.
#
#  nginx/*       nginx (1 worker, its own nginx.conf in the case directory, the test certificate,
#                ssl_session_tickets on, ssl_session_cache shared; a second server with tickets off):
#                full handshakes (with and without a request), resumed by TLS 1.3 ticket, TLS 1.2 ticket
#                and TLS 1.2 session ID — each checked against nginx's own $ssl_session_reused in
#                its access log —, keep-alive requests (one handshake per connection), two threads,
#                download byte-exact against Content-Length and --expect-size, a wrong
#                --expect-size and a 404 (response errors, exit 1), a wrong CA and a wrong --sni name
#                (handshake errors), --sni localhost verified while connecting to 127.0.0.1
#  s_server/*    openssl s_server -WWW (HTTP/1.0, no Content-Length): full, resumed, download
#                (a close-delimited body counted to the byte)
#  ktlsx/*       `ktlsx server --reply` / `--sendfile`: full, resumed (TLS 1.3 ticket; TLS 1.2 session
#                ID with --no-tickets), download byte-exact
#  fileserver/*  ktlsx-fileserver (FILESERVER, default next to ktlsx-load), when built: every mode;
#                skipped with a line otherwise
#  stall         a server that accepts and never answers: timeouts counted as errors, exit 1, and the
#                tool ends on time (--duration + a grace)
#  refused       nobody listens: connect errors, exit 1, on time
#  usage/*       bad options: exit 2 with the reason
# Every run is checked for sanitizer reports (the ASan pass runs the same script).
# Environment (besides tests/lib.sh's): LOADGEN (default build/bin/ktlsx-load), LOAD_SECONDS
# (measured seconds per run, default 1.5).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

LOADGEN=${LOADGEN:-$ROOT/build/bin/ktlsx-load}
[[ $LOADGEN == /* ]] || LOADGEN=$ROOT/$LOADGEN
LOADGEN_ORIG=$LOADGEN
# a private copy, as lib.sh takes of ktlsx: a relink meanwhile does not change what is tested
if [[ -x $LOADGEN ]] && mkdir -p "$WORK/bin" && cp "$LOADGEN" "$WORK/bin/ktlsx-load" 2>/dev/null; then
  LOADGEN=$WORK/bin/ktlsx-load
fi
SECS=${LOAD_SECONDS:-1.5}
TMO=$((TMO + 20)) # a run is warmup + duration, plus start-up under ASan
RUN=$WORK/run
mkdir -p "$RUN"

if [[ ! -x $LOADGEN ]]; then
  case_begin build && skip "ktlsx-load not built (${LOADGEN_ORIG#$ROOT/})"
  finish
fi
gen_certs || exit 1

# The document root: a small page, a 1 MiB + 3 bytes random file (an odd size, so an off-by-one shows).
WWW=$RUN/www
mkdir -p "$WWW"
echo "hello from the loadgen test" >"$WWW/index.html"
BIG_SIZE=1048579
head -c "$BIG_SIZE" /dev/urandom >"$WWW/big.bin"

# load NAME ARGS...: run ktlsx-load --json with ARGS; sets RC, ELAPSED (seconds, 1 decimal) and J_*
# from the JSON report (J_ok, J_rate, J_handshakes, J_resumed, J_resumed_pct, J_requests, J_body_bytes,
# J_err_total, J_err_connect, J_err_handshake, J_err_timeout, J_err_response, J_err_io, J_p50, J_p99,
# J_p999, J_max, J_first (all first errors on one line)).  JSON_OK=0 when stdout was not one object.
load() {
  local name=$1; shift
  local t0=$EPOCHREALTIME
  run_cmd "$name" /dev/null "$LOADGEN" --json "$@"
  ELAPSED=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  unset "${!J_@}"
  JSON_OK=0
  local vars
  vars=$(python3 - "$CD/$name.out" <<'PY' 2>>"$CD/$name.err"
import json, shlex, sys
d = json.loads(open(sys.argv[1]).read())
l, e = d["latency_us"], d["errors"]
out = dict(ok=d["ok"], rate=d["rate"], handshakes=d["handshakes"], resumed=d["resumed"],
           resumed_pct=d["resumed_pct"], requests=d["requests"], body_bytes=d["body_bytes"],
           p50=l["p50"], p99=l["p99"], p999=l["p999"], max=l["max"], count=l["count"],
           first="; ".join(f"{k}: {v}" for k, v in d["first_error"].items()))
out.update({"err_" + k: v for k, v in e.items()})
for k, v in out.items():
    print(f"J_{k}={shlex.quote(str(v))}")
PY
  ) && { eval "$vars"; JSON_OK=1; }
  return 0
}
# gt A B / ge A B: numeric comparisons of decimals
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# healthy [EXTRA_CHECK_MSG]: the common verdict of a run against a healthy server: exit 0, a JSON
# report, a positive rate, zero errors, no sanitizer report.  Sets WHY and returns 1 otherwise.
healthy() {
  WHY=
  if sanitizer_report "$CD"/*.err; then WHY=$SAN_WHY
  elif (( JSON_OK != 1 )); then WHY="no JSON report ($(describe_rc "$RC"))"
  elif (( RC != 0 )); then WHY="exit $RC; errors $J_err_total ($J_first)"
  elif ! gt "$J_rate" 0; then WHY="rate $J_rate"
  elif (( J_err_total != 0 )); then WHY="$J_err_total errors ($J_first)"
  fi
  [[ -z $WHY ]]
}

COMMON=(--ca "$CERTS/ca.pem" --duration "$SECS" --warmup 0.5)

# ------------------------------------------------------------------ nginx ---
NGX=$RUN/nginx
NGX_PORT= NGX_PORT2=
start_nginx() {
  have nginx || return 1
  mkdir -p "$NGX/logs" "$NGX/tmp"
  local attempt
  for attempt in 1 2 3 4 5; do
    NGX_PORT=$(free_port) NGX_PORT2=$(free_port)
    [[ $NGX_PORT != "$NGX_PORT2" ]] || continue
    # `user` only as root (nginx refuses to switch users otherwise, and warns)
    cat >"$NGX/nginx.conf" <<EOF
$( (( EUID == 0 )) && echo 'user root;')
worker_processes 1;
daemon off;
master_process on;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log warn;
events { worker_connections 4096; }
http {
  log_format reuse '\$ssl_session_reused \$ssl_protocol \$status \$request';
  client_body_temp_path $NGX/tmp; proxy_temp_path $NGX/tmp; fastcgi_temp_path $NGX/tmp;
  uwsgi_temp_path $NGX/tmp; scgi_temp_path $NGX/tmp;
  keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate $(crt server-ecdsa); ssl_certificate_key $(key server-ecdsa);
  ssl_session_cache shared:SSL:10m;
  root $WWW;
  server {
    listen 127.0.0.1:$NGX_PORT ssl;
    ssl_session_tickets on;
    access_log $NGX/logs/tickets.log reuse;
  }
  server {
    listen 127.0.0.1:$NGX_PORT2 ssl;
    ssl_session_tickets off;
    access_log $NGX/logs/ids.log reuse;
  }
}
EOF
    timeout -k 2 600 nginx -p "$NGX" -c "$NGX/nginx.conf" </dev/null >"$NGX/nginx.out" 2>"$NGX/nginx.err" &
    NGX_PID=$!
    ALL_PIDS+=("$NGX_PID")
    if wait_listen "$NGX_PORT" "$NGX_PID" 10 && wait_listen "$NGX_PORT2" "$NGX_PID" 5; then return 0; fi
    _kill_pids "$NGX_PID"
    grep -qi 'address already in use' "$NGX/logs/error.log" "$NGX/nginx.err" 2>/dev/null || return 1
  done
  return 1
}
# reuse_counts LOG: R_YES / R_NO = lines of nginx's log with $ssl_session_reused "r" / "."
reuse_counts() {
  R_YES=$(grep -c '^r ' "$1" 2>/dev/null) R_NO=$(grep -c '^\. ' "$1" 2>/dev/null)
}

if start_nginx; then
  T="127.0.0.1:$NGX_PORT"
  if case_begin nginx/full; then
    load run "$T" "${COMMON[@]}" --mode full --tls 1.3 --groups x25519 --connections 8
    if ! healthy; then fail "$WHY"
    elif (( J_handshakes != J_ok || J_resumed != 0 )); then fail "handshakes $J_handshakes, ok $J_ok, resumed $J_resumed"
    elif ! { gt "$J_p50" 0 && ge "$J_p99" "$J_p50" && ge "$J_p999" "$J_p99" && ge "$J_max" "$J_p999"; }; then
      fail "latency quantiles out of order: p50 $J_p50 p99 $J_p99 p999 $J_p999 max $J_max"
    elif (( J_count != J_ok )); then fail "$J_count latency samples for $J_ok handshakes"
    else pass; fi
  fi
  if case_begin nginx/full-request; then
    : >"$NGX/logs/tickets.log"
    load run "$T" "${COMMON[@]}" --mode full --path /index.html --connections 8
    reuse_counts "$NGX/logs/tickets.log"
    if ! healthy; then fail "$WHY"
    elif (( J_requests != J_ok )); then fail "$J_requests responses for $J_ok connections"
    elif (( R_NO < J_ok || R_YES != 0 )); then fail "nginx logged $R_NO full and $R_YES resumed for $J_ok connections"
    else pass; fi
  fi
  # Resumption: the tool's own count and nginx's $ssl_session_reused must both say ~100 %.  Only the
  # first connections (up to --connections of them, before a session exists) may be full.
  resumed_case() { # resumed_case NAME PORT LOG ARGS...
    local name=$1 port=$2 log=$3; shift 3
    case_begin "$name" || return 0
    : >"$log"
    load run "127.0.0.1:$port" "${COMMON[@]}" --mode resumed --path /index.html --connections 4 "$@"
    reuse_counts "$log"
    if ! healthy; then fail "$WHY"
    elif ! ge "$J_resumed_pct" 99; then fail "the tool saw $J_resumed of $J_handshakes handshakes resumed ($J_resumed_pct %)"
    elif (( R_YES < J_ok * 99 / 100 || R_NO > 4 + 2 )); then
      fail "nginx logged $R_YES resumed and $R_NO full for $J_ok connections the tool counted (log ${log##*/})"
    else pass; fi
  }
  resumed_case nginx/resumed-ticket-13 "$NGX_PORT" "$NGX/logs/tickets.log" --tls 1.3 --resume ticket
  resumed_case nginx/resumed-ticket-12 "$NGX_PORT" "$NGX/logs/tickets.log" --tls 1.2 --resume ticket
  resumed_case nginx/resumed-id-12 "$NGX_PORT2" "$NGX/logs/ids.log" --tls 1.2 --resume id
  if case_begin nginx/requests; then
    : >"$NGX/logs/tickets.log"
    # no warmup: the 8 handshakes fall into the window, and must be all there is (keep-alive kept)
    load run "$T" --ca "$CERTS/ca.pem" --duration "$SECS" --warmup 0 --mode requests --path /index.html --connections 8
    n_log=$(grep -c ' 200 GET /index.html' "$NGX/logs/tickets.log")
    if ! healthy; then fail "$WHY"
    elif (( J_handshakes != 8 )); then fail "$J_handshakes handshakes for 8 keep-alive connections"
    elif (( J_requests != J_ok || n_log < J_ok )); then fail "ok $J_ok, responses $J_requests, nginx logged $n_log"
    else pass; fi
  fi
  if case_begin nginx/threads; then
    load run "$T" "${COMMON[@]}" --mode requests --path /index.html --connections 8 --threads 2
    if ! healthy; then fail "$WHY"; else pass; fi
  fi
  if case_begin nginx/download; then
    load run "$T" "${COMMON[@]}" --mode download --path /big.bin --expect-size "$BIG_SIZE" --connections 4
    if ! healthy; then fail "$WHY"
    elif (( J_body_bytes != J_requests * BIG_SIZE )); then fail "body bytes $J_body_bytes for $J_requests responses of $BIG_SIZE"
    else pass; fi
  fi
  if case_begin nginx/download-content-length; then
    # without --expect-size: Content-Length alone decides, and it must be nginx's file size
    load run "$T" "${COMMON[@]}" --mode download --path /big.bin --connections 2
    if ! healthy; then fail "$WHY"
    elif (( J_body_bytes != J_requests * BIG_SIZE )); then fail "body bytes $J_body_bytes for $J_requests responses of $BIG_SIZE"
    else pass; fi
  fi
  if case_begin nginx/download-wrong-size; then
    load run "$T" "${COMMON[@]}" --mode download --path /big.bin --expect-size $((BIG_SIZE - 1)) --connections 2
    if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
    elif (( JSON_OK != 1 || RC != 1 )); then fail "want exit 1 with a report, got $(describe_rc "$RC")"
    elif (( J_ok != 0 || J_err_response == 0 )); then fail "ok $J_ok, response errors $J_err_response"
    elif [[ $J_first != *"Content-Length is not --expect-size"* ]]; then fail "first error: $J_first"
    else pass; fi
  fi
  if case_begin nginx/not-found; then
    load run "$T" "${COMMON[@]}" --mode requests --path /missing --connections 2
    if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
    elif (( JSON_OK != 1 || RC != 1 )); then fail "want exit 1 with a report, got $(describe_rc "$RC")"
    elif (( J_err_response == 0 )) || [[ $J_first != *"status 404"* ]]; then fail "response errors $J_err_response: $J_first"
    else pass; fi
  fi
  if case_begin nginx/sni; then
    # the certificate names localhost: sent as SNI and verified, while connecting to 127.0.0.1
    load run "$T" "${COMMON[@]}" --mode full --sni localhost --connections 2
    if ! healthy; then fail "$WHY"; else pass; fi
  fi
  if case_begin nginx/sni-wrong-name; then
    load run "$T" --ca "$CERTS/ca.pem" --duration 1 --warmup 0 --mode full --sni wrong.example --connections 2
    if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
    elif (( JSON_OK != 1 || RC != 1 )); then fail "want exit 1 with a report, got $(describe_rc "$RC")"
    elif (( J_err_handshake == 0 || J_ok != 0 )); then fail "ok $J_ok, handshake errors $J_err_handshake: $J_first"
    else pass; fi
  fi
  if case_begin nginx/wrong-ca; then
    load run "$T" --ca "$CERTS/other-ca.pem" --duration 1 --warmup 0 --mode full --connections 2
    if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
    elif (( JSON_OK != 1 || RC != 1 )); then fail "want exit 1 with a report, got $(describe_rc "$RC")"
    elif (( J_err_handshake == 0 )) || [[ $J_first != *"certificate verify failed"* ]]; then fail "handshake errors $J_err_handshake: $J_first"
    else pass; fi
  fi
else
  case_begin nginx && skip "nginx not installed or did not start: $(tail -n 2 "$NGX/nginx.err" "$NGX/logs/error.log" 2>/dev/null | tr '\n' ' ')"
fi

# ------------------------------------------------------- openssl s_server ---
# -WWW: one connection at a time, HTTP/1.0, no Content-Length (the body ends with the connection).
if have openssl && case_begin s_server/full; then
  cd "$WWW" || exit 1 # -WWW serves paths relative to its working directory
  if start_server s_server -- openssl s_server -accept "127.0.0.1:{PORT}" -cert "$(crt server-ecdsa)" \
       -key "$(key server-ecdsa)" -cert_chain "$CERTS/int.pem" -WWW -quiet; then
    SS_PORT=$PORT SS_PID=$SERVER_PID
    BG_PIDS=() # keep it for the next cases (killed at exit)
    load run "127.0.0.1:$SS_PORT" "${COMMON[@]}" --mode full --path /index.html --connections 4
    if ! healthy; then fail "$WHY"; else pass; fi
  else
    SS_PORT=; fail "openssl s_server did not start"
  fi
fi
if [[ -n ${SS_PORT:-} ]]; then
  if case_begin s_server/resumed-13; then
    load run "127.0.0.1:$SS_PORT" "${COMMON[@]}" --mode resumed --tls 1.3 --path /index.html --connections 4
    if ! healthy; then fail "$WHY"
    elif ! ge "$J_resumed_pct" 99; then fail "$J_resumed of $J_handshakes resumed ($J_resumed_pct %)"
    else pass; fi
  fi
  if case_begin s_server/download; then
    load run "127.0.0.1:$SS_PORT" "${COMMON[@]}" --mode download --path /big.bin --expect-size "$BIG_SIZE" --connections 2
    if ! healthy; then fail "$WHY"
    elif (( J_body_bytes != J_requests * BIG_SIZE || J_requests == 0 )); then fail "body bytes $J_body_bytes for $J_requests responses of $BIG_SIZE"
    else pass; fi
  fi
fi
cd "$ROOT" || exit 1

# ------------------------------------------------------------ ktlsx server ---
if need_ktlsx; then
  KS=(server --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" --listen "127.0.0.1:{PORT}")
  if case_begin ktlsx/full; then
    if start_server ktlsx -- "$KTLSX" "${KS[@]}" --reply hello; then
      load run "127.0.0.1:$PORT" "${COMMON[@]}" --mode full --tls 1.3 --connections 4
      if ! healthy; then fail "$WHY"; else pass; fi
    else fail "ktlsx server did not start"; fi
  fi
  if case_begin ktlsx/resumed-13; then
    if start_server ktlsx -- "$KTLSX" "${KS[@]}" --reply hello; then
      load run "127.0.0.1:$PORT" "${COMMON[@]}" --mode resumed --tls 1.3 --path / --connections 4
      if ! healthy; then fail "$WHY"
      elif ! ge "$J_resumed_pct" 99; then fail "$J_resumed of $J_handshakes resumed ($J_resumed_pct %)"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  fi
  if case_begin ktlsx/resumed-id-12; then
    # --no-tickets: the only way back is the server's session-ID cache
    if start_server ktlsx -- "$KTLSX" "${KS[@]}" --reply hello --no-tickets; then
      load run "127.0.0.1:$PORT" "${COMMON[@]}" --mode resumed --tls 1.2 --resume id --connections 4
      if ! healthy; then fail "$WHY"
      elif ! ge "$J_resumed_pct" 99; then fail "$J_resumed of $J_handshakes resumed ($J_resumed_pct %)"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  fi
  if case_begin ktlsx/download; then
    if start_server ktlsx -- "$KTLSX" "${KS[@]}" --sendfile "$WWW/big.bin"; then
      load run "127.0.0.1:$PORT" "${COMMON[@]}" --mode download --path /big.bin --expect-size "$BIG_SIZE" --connections 2
      if ! healthy; then fail "$WHY"
      elif (( J_body_bytes != J_requests * BIG_SIZE || J_requests == 0 )); then fail "body bytes $J_body_bytes for $J_requests responses of $BIG_SIZE"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  fi
else
  case_begin ktlsx && skip "$SKIP_WHY"
fi

# -------------------------------------------------------- ktlsx-fileserver ---
# The project's file server (issue 11), when built: $FILESERVER, default BUILD/bin/ktlsx-fileserver.
FILESERVER=${FILESERVER:-$(dirname "$LOADGEN_ORIG")/ktlsx-fileserver}
if [[ -x $FILESERVER ]]; then
  if case_begin fileserver/start &&
     start_server fileserver -- "$FILESERVER" --root "$WWW" --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" \
       --key "$(key server-ecdsa)" --workers 1; then
    FS_PORT=$PORT
    BG_PIDS=() # kept for the next cases (killed at exit)
    pass
    for spec in "full|full" "resumed-13|resumed --tls 1.3" "resumed-12|resumed --tls 1.2 --path /index.html" \
                "requests|requests --path /index.html" "download|download --path /big.bin --expect-size $BIG_SIZE"; do
      case_begin "fileserver/${spec%%|*}" || continue
      read -r -a margs <<<"${spec#*|}"
      load run "127.0.0.1:$FS_PORT" "${COMMON[@]}" --connections 4 --mode "${margs[@]}"
      if ! healthy; then fail "$WHY"
      elif [[ $spec == resumed* ]] && ! ge "$J_resumed_pct" 99; then fail "$J_resumed of $J_handshakes resumed"
      elif [[ $spec == download* ]] && (( J_body_bytes != J_requests * BIG_SIZE || J_requests == 0 )); then
        fail "body bytes $J_body_bytes for $J_requests responses of $BIG_SIZE"
      else pass; fi
    done
  elif [[ -n $CASE ]]; then
    fail "ktlsx-fileserver did not start"
  fi
else
  case_begin fileserver && skip "no ktlsx-fileserver at ${FILESERVER#$ROOT/} (set FILESERVER=path)"
fi

# --------------------------------------------------------------- failures ---
if case_begin stall; then
  # accepts every connection and never sends a byte
  if start_server staller -- python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(256); held = []
while True: held.append(s.accept()[0])' "{PORT}"; then
    load run "127.0.0.1:$PORT" --insecure --duration 3 --warmup 0 --timeout 1000 --connections 4
    if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
    elif (( JSON_OK != 1 || RC != 1 )); then fail "want exit 1 with a report, got $(describe_rc "$RC")"
    elif (( J_ok != 0 || J_err_timeout < 4 )); then fail "ok $J_ok, timeouts $J_err_timeout (want >= 4: one per connection and second)"
    elif gt "$ELAPSED" 6; then fail "took $ELAPSED s for --duration 3 (the deadline does not hold)"
    else pass; fi
  else fail "the stalling server did not start"; fi
fi
if case_begin refused; then
  p=$(free_port)
  load run "127.0.0.1:$p" --insecure --duration 1 --warmup 0 --connections 4
  if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
  elif (( JSON_OK != 1 || RC != 1 )); then fail "want exit 1 with a report, got $(describe_rc "$RC")"
  elif (( J_err_connect == 0 || J_ok != 0 )) || [[ $J_first != *"refused"* ]]; then fail "connect errors $J_err_connect: $J_first"
  elif gt "$ELAPSED" 4; then fail "took $ELAPSED s for --duration 1"
  else pass; fi
fi
usage_case() { # usage_case NAME EXPECTED-TEXT ARGS...
  local name=$1 want=$2; shift 2
  case_begin "usage/$name" || return 0
  run_cmd run /dev/null "$LOADGEN" "$@"
  if sanitizer_report "$CD"/*.err; then fail "$SAN_WHY"
  elif (( RC != 2 )) || ! grep -q -- "$want" "$CD/run.err"; then fail "want exit 2 and '$want', got $(describe_rc "$RC"): $(head -c 300 "$CD/run.err")"
  else pass; fi
}
usage_case no-target "HOST:PORT is required" --mode full
usage_case bad-mode "want full, resumed, requests or download" 127.0.0.1:1 --mode fast
usage_case download-no-path "needs --path" 127.0.0.1:1 --mode download
usage_case resume-id-13 "session IDs are TLS 1.2" 127.0.0.1:1 --mode resumed --resume id
usage_case bad-connections "want 1 to 100000" 127.0.0.1:1 --connections 0
usage_case bad-target "want HOST:PORT" localhost
usage_case bad-group "" 127.0.0.1:1 --groups nosuchgroup

finish
