#!/usr/bin/env bash
# tests/examples/echo_server.sh — the examples under test (issue 7):
#
#  examples/echo-server with 500 concurrent clients from tests/examples/echo_load.c (one epoll
#  program): OpenSSL and ktlsx clients whose 16-64 KiB must come back byte-exact, clients that
#  stall in the handshake (cut at the server's deadline, not before), clients that send garbage
#  (an alert record before the close), and none waiting on another.  Then SIGTERM: the server
#  exits 0 with a summary whose counts match, and no sanitizer report.
#  examples/https-get against `ktlsx server --reply`: the body on stdout, exit 0; and exit 1
#  without --ca (the test CA is in no system store).
#
# Cases: echo_server/{openssl,ktlsx,stalled,garbage,no-waiting} (the driver's verdicts),
#   echo_server/driver, echo_server/server-exit, echo_server/https-get, echo_server/https-get-untrusted
# Environment (besides tests/lib.sh's): EXAMPLES_BIN (default build/bin), ECHO_LOAD (default
#   build/tests/echo_load), ECHO_HS_MS (the server's handshake timeout, default 12000), ECHO_SLACK_MS
#   (how late after it a stalled client may be cut, default 1500), ECHO_CLIENTS ("openssl ktlsx
#   stall garbage", default "200 200 50 50").
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

BIN=${EXAMPLES_BIN:-$ROOT/build/bin}
LOAD=${ECHO_LOAD:-$ROOT/build/tests/echo_load}
HS_MS=${ECHO_HS_MS:-12000}
SLACK_MS=${ECHO_SLACK_MS:-1500}
read -r N_OSSL N_KTLSX N_STALL N_GARBAGE <<<"${ECHO_CLIENTS:-200 200 50 50}"
N_ALL=$((N_OSSL + N_KTLSX + N_STALL + N_GARBAGE))
VERDICTS=(openssl ktlsx stalled garbage no-waiting)

# 500 sockets in the driver and as many in the server, plus their own files.
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
if (( $(ulimit -n) < N_ALL + 64 )); then
  for v in "${VERDICTS[@]}" driver server-exit; do
    case_begin "$v" && skip "ulimit -n is $(ulimit -n): too low for $N_ALL connections"
  done
  finish
fi
gen_certs || exit 1

# ---------------------------------------------------------------- the load ---
RUN=$WORK/load
mkdir -p "$RUN"
LOAD_RC= SRV_RC= have_bins=1
[[ -x $BIN/echo-server && -x $LOAD ]] || have_bins=0

# start_echo: the server on a free port; waits (bounded) for its "listening" line.
# Retries on another port when it lost a race for one.  Sets PORT, SRV_PID.
start_echo() {
  local attempt i
  for attempt in 1 2 3; do
    PORT=$(free_port) || return 1
    timeout -k 2 $(( HS_MS / 1000 + 90 )) "$BIN/echo-server" --handshake-timeout-ms "$HS_MS" \
      "127.0.0.1:$PORT" "$(crt server-ecdsa)" "$(key server-ecdsa)" >"$RUN/server.out" 2>"$RUN/server.err" </dev/null &
    SRV_PID=$!
    ALL_PIDS+=("$SRV_PID")
    for ((i = 0; i < 200; i++)); do
      grep -q '^echo-server: listening on ' "$RUN/server.out" 2>/dev/null && return 0
      kill -0 "$SRV_PID" 2>/dev/null || break
      sleep 0.05
    done
    _kill_pids "$SRV_PID"
    grep -qi 'address already in use' "$RUN/server.err" || return 1
  done
  return 1
}

if (( have_bins )) && start_echo; then
  printf '%q ' "$LOAD" --port "$PORT" --ca "$CERTS/ca.pem" >"$RUN/load.cmd"; echo >>"$RUN/load.cmd"
  timeout -k 2 $(( (HS_MS + SLACK_MS) / 1000 + 40 )) "$LOAD" --port "$PORT" --ca "$CERTS/ca.pem" \
    --handshake-timeout-ms "$HS_MS" --slack-ms "$SLACK_MS" --openssl "$N_OSSL" --ktlsx "$N_KTLSX" \
    --stall "$N_STALL" --garbage "$N_GARBAGE" >"$RUN/load.out" 2>"$RUN/load.err" </dev/null
  LOAD_RC=$?
  # SIGTERM through `timeout`, which passes it on and exits with the server's status.
  kill -TERM "$SRV_PID" 2>/dev/null
  for ((i = 0; i < 200; i++)); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$SRV_PID" 2>/dev/null; then _kill_pids "$SRV_PID"; SRV_RC=hang; else wait "$SRV_PID"; SRV_RC=$?; fi
  sed 's/^/    /' "$RUN/load.out" >&2
fi

for v in "${VERDICTS[@]}"; do
  case_begin "$v" || continue
  if (( ! have_bins )); then skip "${BIN#$ROOT/}/echo-server or ${LOAD#$ROOT/} not built"; continue; fi
  [[ -n $LOAD_RC ]] || { fail "echo-server did not start" "$RUN/server.err"; continue; }
  line=$(grep -m1 -E "^(PASS|FAIL) $v: " "$RUN/load.out")
  case $line in
    PASS*) pass ;;
    FAIL*) fail "${line#FAIL $v: }" "$RUN/load.out" "$RUN/server.err" ;;
    *) fail "the driver gave no verdict ($(describe_rc "$LOAD_RC"))" "$RUN/load.out" "$RUN/load.err" ;;
  esac
done

if case_begin driver; then
  if (( ! have_bins )); then skip "not built"
  elif [[ -z $LOAD_RC ]]; then fail "echo-server did not start" "$RUN/server.err"
  elif rc_crashed "$LOAD_RC"; then fail "echo_load $(describe_rc "$LOAD_RC")" "$RUN/load.err"
  elif sanitizer_report "$RUN/load.err"; then fail "echo_load: $SAN_WHY" "$RUN/load.err"
  elif ! grep -q "^echo_load: $N_ALL clients" "$RUN/load.out"; then fail "no summary line" "$RUN/load.out" "$RUN/load.err"
  else pass; fi
fi

if case_begin server-exit; then
  want="accepted $N_ALL, completed $((N_OSSL + N_KTLSX)), failed: handshake timeout $N_STALL,"
  want+=" tls error $N_GARBAGE, closed early 0"
  got=$(grep -m1 '^echo-server: accepted ' "$RUN/server.out" 2>/dev/null)
  if (( ! have_bins )); then skip "not built"
  elif [[ -z $LOAD_RC ]]; then fail "echo-server did not start" "$RUN/server.err"
  elif [[ $SRV_RC != 0 ]]; then fail "after SIGTERM: exit status $SRV_RC, not 0" "$RUN/server.err"
  elif sanitizer_report "$RUN/server.err"; then fail "echo-server: $SAN_WHY" "$RUN/server.err"
  elif [[ $got != "echo-server: $want" ]]; then fail "summary '${got:-none}', expected '$want'" "$RUN/server.out"
  else pass; fi
fi

# --------------------------------------------------------------- https-get ---
REPLY="hello from ktlsx server for https-get $$"
for c in https-get https-get-untrusted; do
  case_begin "$c" || continue
  [[ -x $BIN/https-get ]] || { skip "${BIN#$ROOT/}/https-get not built"; continue; }
  need_ktlsx || { skip "$SKIP_WHY"; continue; }
  if ! start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" \
       --key "$(key server-ecdsa)" --reply "$REPLY"; then
    fail "ktlsx server did not start"; continue
  fi
  if [[ $c == https-get ]]; then
    run_cmd get /dev/null "$BIN/https-get" "https://localhost:$PORT/index.html" --ca "$CERTS/ca.pem"
    if rc_crashed "$RC" || sanitizer_report "$CD/get.err"; then fail "https-get $(describe_rc "$RC") ${SAN_WHY:-}"
    elif (( RC != 0 )); then fail "https-get exit $RC: $(tail -n1 "$CD/get.err")"
    elif [[ $(cat "$CD/get.out") != "$REPLY" ]]; then fail "body '$(head -c 200 "$CD/get.out")', expected '$REPLY'"
    else pass; fi
  else
    run_cmd get /dev/null "$BIN/https-get" "https://localhost:$PORT/"
    if rc_crashed "$RC" || sanitizer_report "$CD/get.err"; then fail "https-get $(describe_rc "$RC") ${SAN_WHY:-}"
    elif (( RC != 1 )) || [[ -s $CD/get.out ]]; then
      fail "without --ca: exit $RC and $(fsize "$CD/get.out") bytes of body, expected exit 1 and none"
    elif ! grep -q 'certificate verify failed' "$CD/get.err"; then fail "no 'certificate verify failed' message"
    else pass; fi
  fi
done

finish
