#!/usr/bin/env bash
# ktlsx client --handoff: the handshake runs in one process, which exports the
# connection and passes socket + TLS state over a unix socket (SCM_RIGHTS) to
# a freshly exec'd `ktlsx adopt`; that process carries the data on (here on
# user-space records: this host has no kernel TLS; the VM suite does the same
# with kernel TLS).  Against openssl s_server it must: receive the server's
# data, answer the server's KeyUpdate with update_requested ('K', TLS 1.3:
# our line sent afterwards must arrive under our new keys), store the
# server's ticket (NewSessionTicket) and save it with --sess-out, so that a
# later connection resumes with --sess-in.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1

# wait_for FILE TEXT SECONDS: until FILE contains TEXT
wait_for() { local i=0; while ! grep -qa "$2" "$1" 2>/dev/null && (( i < $3 * 10 )); do sleep 0.1; i=$((i + 1)); done; }

for ver in 1.3 1.2; do
  case_begin "client/tls$ver" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  flag=-tls1_3; [[ $ver == 1.2 ]] && flag=-tls1_2
  stop=$CD/stop
  # s_server's stdin: its lines once the adopting process runs, a KeyUpdate
  # ('K', TLS 1.3) between them, then held open until the case is over.
  srv_input() {
    wait_for "$CD/cli.err" 'adopted connection' 10
    printf 'before-keyupdate\n'; sleep 0.5
    [[ $ver == 1.3 ]] && { printf 'K\n'; sleep 0.5; }
    printf 'after-keyupdate\n'
    wait_for "$stop" . 30
  }
  : >"$CD/cli.err"; rm -f "$stop" "$CD/sess"
  start_server srv --stdin <(srv_input) -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 2 -nbio $flag \
    $(ossl_cert_args server-ecdsa) || { fail "openssl s_server did not start"; continue; }
  # our line goes after the server's second line (and so after its KeyUpdate)
  ( wait_for "$CD/cli.out" after-keyupdate 15; printf 'from-client-after\n' ) |
    timeout 40 "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --handoff \
      --sess-out "$CD/sess" >"$CD/cli.out" 2>>"$CD/cli.err"
  RC=$?
  echo | timeout 20 "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" \
    --sess-in "$CD/sess" >"$CD/resume.out" 2>"$CD/resume.err"
  RC2=$?
  echo stop >"$stop"
  if ! ktlsx_server_sane srv 5; then fail "$WHY"; continue; fi
  if ! ktlsx_sane cli; then fail "$WHY"; continue; fi
  (( RC == 0 )) || { fail "ktlsx client --handoff exit $RC: $(grep -v 'handshake ok' "$CD/cli.err" | tail -n1)"; continue; }
  grep -q 'handed the connection to process' "$CD/cli.err" || { fail "no hand-off reported"; continue; }
  grep -q 'adopted connection' "$CD/cli.err" || { fail "ktlsx adopt did not take the connection"; continue; }
  [[ $(cat "$CD/cli.out") == $'before-keyupdate\nafter-keyupdate' ]] ||
    { fail "adopting process got '$(tr '\n' '|' <"$CD/cli.out")'"; continue; }
  grep -q from-client-after "$CD/srv.out" || { fail "s_server did not get the line sent after its KeyUpdate"; continue; }
  [[ -s $CD/sess ]] || { fail "the adopting process saved no session (NewSessionTicket not stored)"; continue; }
  (( RC2 == 0 )) || { fail "resuming client exit $RC2: $(tail -n1 "$CD/resume.err")"; continue; }
  check_summary "$CD/resume.err" resumed=1 || { fail "$SUM_WHY"; continue; }
  pass
done

finish
