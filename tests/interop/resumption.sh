#!/usr/bin/env bash
# Session resumption across implementations.
#  - openssl s_client -reconnect against ktlsx server --echo: TLS 1.2 session IDs
#    (-no_ticket), TLS 1.2 tickets, TLS 1.3 tickets: 5 of 6 connections "Reused"
#    (TLS 1.3 -reconnect is checked against openssl s_server first: OpenSSL 3.0's
#    s_client reconnects before the tickets arrive, so it never reuses there)
#  - openssl s_client -sess_out / -sess_in against ktlsx server (1.2, 1.3): "Reused"
#  - ktlsx client --sess-out / --sess-in against openssl s_server (1.2, 1.3),
#    gnutls-serv (1.2, 1.3) and ktlsx server (1.2 ID, 1.2 ticket, 1.3): resumed=1
#  - a ticket from a key that is gone (server restarted with another
#    --ticket-key-file, or with random keys): full handshake (resumed=0), no error;
#    the same key file after a restart: resumed=1
#  - --no-tickets: TLS 1.3 resumed=0; TLS 1.2 still resumes by session ID
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
CA=$CERTS/ca.pem
DATA=$(make_data small 16384)

q() { (( ! QUICK )); }

ktlsx_echo_server() { # VERSION EXTRA...  (serves connections until killed)
  local v=$1; shift
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" \
    --tls-version "$v" --echo "$@"
}

# feed_until OUTFILE REGEX: print a line, then keep stdin open until OUTFILE matches REGEX ($TMO)
feed_until() {
  local out=$1 re=$2 deadline=$((SECONDS + TMO))
  echo "ping resumption test"
  while (( SECONDS < deadline )); do
    grep -qa "$re" "$out" 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.2
}

# s_client_once NAME ARGS...: one openssl s_client connection (not quiet: it prints
# "New," / "Reused,"), one echoed line; output in $CD/NAME.out
s_client_once() {
  local name=$1; shift
  local fifo=$CD/$name.fifo fpid
  rm -f "$fifo"; mkfifo -m 600 "$fifo"
  ( feed_until "$CD/$name.out" '^ping resumption test' >"$fifo" ) 2>/dev/null &
  fpid=$!; ALL_PIDS+=("$fpid")
  run_cmd "$name" "$fifo" openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CA" \
    -verify_return_error -nocommands "$@"
  _kill_pids "$fpid"
  rm -f "$fifo"
}

# ktlsx_client_once NAME ARGS...: one ktlsx client connection sending $DATA; when the peer
# echoes (ECHO=1), wait for it all; sets RC
ktlsx_client_once() {
  local name=$1; shift
  if [[ ${ECHO:-1} == 1 ]]; then
    run_fed "$name" "$DATA" "$CD/$name.out" "$(fsize "$DATA")" -- "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" "$@"
  else
    run_cmd "$name" "$DATA" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" "$@"
  fi
}

# resume_pair EXPECT2 ARGS...: first connection (resumed=0, saves the session), second
# with it: resumed=EXPECT2.  Both must succeed.  Returns 1 (after fail) on a problem.
resume_pair() {
  local expect=$1; shift
  ktlsx_client_once c1 --sess-out "$CD/sess" "$@"
  if ! ktlsx_sane c1; then fail "$WHY"; return 1; fi
  if (( RC != 0 )); then fail "first ktlsx client exit $RC: $(failure_line "$CD/c1.err" || tail -n1 "$CD/c1.err")"; return 1; fi
  check_summary "$CD/c1.err" resumed=0 || { fail "first: $SUM_WHY"; return 1; }
  [[ -s $CD/sess ]] || { fail "no session saved by --sess-out"; return 1; }
  ktlsx_client_once c2 --sess-in "$CD/sess" --sess-out "$CD/sess2" "$@"
  if ! ktlsx_sane c2; then fail "$WHY"; return 1; fi
  if (( RC != 0 )); then fail "second ktlsx client exit $RC: $(failure_line "$CD/c2.err" || tail -n1 "$CD/c2.err")"; return 1; fi
  check_summary "$CD/c2.err" resumed="$expect" || { fail "second: $SUM_WHY"; return 1; }
  if [[ ${ECHO:-1} == 1 ]]; then
    same_data "$DATA" "$CD/c2.out" || { fail "second: echo: $DATA_WHY"; return 1; }
  fi
  return 0
}

# ------------------------------------------------ s_client -reconnect vs ktlsx ---
reconnect_case() { # NAME VERSION-FLAGS SERVER-EXTRA...
  local name=$1 vflags=$2; shift 2
  case_begin "s_client-reconnect/$name" || return 0
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; return 0; }
  local ver=1.2; [[ $vflags == *tls1_3* ]] && ver=1.3
  ktlsx_echo_server "$ver" "$@" || { fail "ktlsx server did not start"; return 0; }
  run_cmd cli /dev/null openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CA" \
    -verify_return_error -reconnect $vflags
  local reused; reused=$(grep -c '^Reused' "$CD/cli.out")
  if ! ktlsx_server_sane srv 0; then fail "$WHY"; return 0; fi
  if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"; return 0; fi
  local srv_resumed; srv_resumed=$(grep -c 'resumed=1' "$CD/srv.err")
  if (( reused != 5 )); then fail "s_client reused $reused of 5 reconnects (ktlsx server says resumed=1 $srv_resumed times)"; return 0; fi
  (( srv_resumed == 5 )) || { fail "ktlsx server reports resumed=1 $srv_resumed times, s_client 5"; return 0; }
  pass
}

reconnect_case tls12-session-id "-tls1_2 -no_ticket"
reconnect_case tls12-ticket "-tls1_2" --session-cache 0
q && reconnect_case tls12-ticket-and-cache "-tls1_2"

if case_begin s_client-reconnect/tls13-ticket; then
  if need_ktlsx && need_tool openssl; then
    # reference: does this s_client reuse TLS 1.3 sessions with -reconnect at all?
    if start_server ref -- openssl s_server -accept "127.0.0.1:{PORT}" $(ossl_cert_args server-ecdsa) -tls1_3; then
      run_cmd refcli /dev/null openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CA" -reconnect -tls1_3
      ref_reused=$(grep -c '^Reused' "$CD/refcli.out")
      stop_case_procs
      if (( ref_reused == 0 )); then
        skip "openssl s_client -reconnect does not resume TLS 1.3 even against openssl s_server ($(openssl version | cut -d' ' -f1-2)); covered by -sess_out/-sess_in"
      else
        ktlsx_echo_server 1.3 || fail "ktlsx server did not start"
        if [[ -n $CASE ]]; then
          run_cmd cli /dev/null openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CA" -reconnect -tls1_3
          reused=$(grep -c '^Reused' "$CD/cli.out")
          if ! ktlsx_server_sane srv 0; then fail "$WHY"
          elif (( reused != ref_reused )); then fail "s_client reused $reused (against openssl s_server: $ref_reused)"
          else pass; fi
        fi
      fi
    else fail "reference openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------- s_client -sess_out/-sess_in vs ktlsx ---
for spec in "tls12:-tls1_2 -no_ticket:1.2" "tls12-ticket:-tls1_2:1.2" "tls13:-tls1_3:1.3"; do
  IFS=: read -r name vflags ver <<<"$spec"
  if case_begin "s_client-sess/$name"; then
    if need_ktlsx && need_tool openssl; then
      extra=(); [[ $name == tls12-ticket ]] && extra=(--session-cache 0)
      if ktlsx_echo_server "$ver" "${extra[@]}"; then
        s_client_once c1 $vflags -sess_out "$CD/ossl.sess"
        s_client_once c2 $vflags -sess_in "$CD/ossl.sess"
        if ! ktlsx_server_sane srv 0; then fail "$WHY"
        elif ! grep -q '^New,' "$CD/c1.out"; then fail "first s_client connection failed: $(grep -m1 -iE 'error|alert' "$CD/c1.err" | cut -c1-200)"
        elif [[ ! -s $CD/ossl.sess ]]; then fail "s_client saved no session"
        elif ! grep -q '^Reused,' "$CD/c2.out"; then
          fail "second s_client connection not reused ($(grep -m1 -E '^(New|Reused),' "$CD/c2.out"); ktlsx: $(summary_line "$CD/srv.err" | grep -o 'resumed=.'))"
        elif (( $(grep -c 'resumed=1' "$CD/srv.err") != 1 )); then fail "ktlsx server did not report resumed=1 once"
        elif ! grep -q '^ping resumption test' "$CD/c2.out"; then fail "no echo on the resumed connection"
        else pass; fi
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done

# ------------------------------------------- ktlsx client vs openssl s_server ---
for ver in 1.2 1.3; do
  if case_begin "ktlsx-client/openssl/tls$ver"; then
    if need_ktlsx && need_tool openssl; then
      if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" $(ossl_cert_args server-ecdsa) -tls${ver/./_} -quiet; then
        ECHO=0 resume_pair 1 --tls-version "$ver" && pass
      else fail "openssl s_server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done
if q && case_begin "ktlsx-client/openssl/tls1.2-no-ticket"; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" $(ossl_cert_args server-rsa) -tls1_2 -quiet -no_ticket; then
      ECHO=0 resume_pair 1 --tls-version 1.2 && pass
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------ ktlsx client vs gnutls-serv ---
for ver in 1.2 1.3; do
  if case_begin "ktlsx-client/gnutls/tls$ver"; then
    if need_ktlsx && need_tool gnutls-serv; then
      if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --x509certfile "$(crt server-ecdsa)" \
           --x509keyfile "$(key server-ecdsa)" --priority "NORMAL:-VERS-ALL:+VERS-TLS$ver"; then
        TXT=$(make_text echo 16384)
        DATA=$TXT resume_pair 1 --tls-version "$ver" && pass
      else fail "gnutls-serv did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done

# ------------------------------------------------------------ ktlsx <-> ktlsx ---
for spec in "tls1.2-session-id:1.2:--no-tickets" "tls1.2-ticket:1.2:--session-cache 0" "tls1.3:1.3:"; do
  IFS=: read -r name ver extra <<<"$spec"
  if case_begin "ktlsx-ktlsx/$name"; then
    if need_ktlsx; then
      # shellcheck disable=SC2086
      if ktlsx_echo_server "$ver" $extra; then
        if resume_pair 1 --tls-version "$ver"; then
          # and the session from the resumed connection resumes again
          ktlsx_client_once c3 --sess-in "$CD/sess2" --tls-version "$ver"
          if ! ktlsx_sane c3; then fail "$WHY"
          elif (( RC != 0 )); then fail "third ktlsx client exit $RC"
          elif ! check_summary "$CD/c3.err" resumed=1; then fail "third (from the resumed session): $SUM_WHY"
          elif ! ktlsx_server_sane srv 0; then fail "$WHY"
          elif (( $(grep -c 'resumed=1' "$CD/srv.err") != 2 )); then fail "ktlsx server did not report resumed=1 twice"
          else pass; fi
        fi
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done

# -------------------------------------------------------- ticket key rotation ---
head -c 80 /dev/urandom >"$WORK/keyA"
head -c 48 /dev/urandom >"$WORK/keyB"
for ver in 1.2 1.3; do
  if case_begin "ticket-keys/tls$ver"; then
    if need_ktlsx; then
      x=(--session-cache 0)
      if ktlsx_echo_server "$ver" "${x[@]}" --ticket-key-file "$WORK/keyA"; then
        ktlsx_client_once c1 --sess-out "$CD/sess" --tls-version "$ver"
        stop_case_procs
        ok=1
        if (( RC != 0 )) || [[ ! -s $CD/sess ]]; then fail "first connection: exit $RC, session saved: $([[ -s $CD/sess ]] && echo yes || echo no)"; ok=0; fi
        # restart with the same key file: the ticket still opens
        if (( ok )) && ktlsx_echo_server "$ver" "${x[@]}" --ticket-key-file "$WORK/keyA"; then
          ktlsx_client_once same --sess-in "$CD/sess" --tls-version "$ver"
          mv "$CD/srv.err" "$CD/srv-same.err"; stop_case_procs
          if (( RC != 0 )) || ! check_summary "$CD/same.err" resumed=1; then fail "same key file after restart: exit $RC ${SUM_WHY:-}"; ok=0; fi
        elif (( ok )); then fail "ktlsx server (same key) did not start"; ok=0; fi
        # another key file: full handshake, no error
        if (( ok )) && ktlsx_echo_server "$ver" "${x[@]}" --ticket-key-file "$WORK/keyB"; then
          ktlsx_client_once other --sess-in "$CD/sess" --tls-version "$ver"
          mv "$CD/srv.err" "$CD/srv-other.err"; stop_case_procs
          if ! ktlsx_sane other; then fail "$WHY"; ok=0
          elif (( RC != 0 )); then fail "other key file: exit $RC: $(failure_line "$CD/other.err")"; ok=0
          elif ! check_summary "$CD/other.err" resumed=0; then fail "other key file: $SUM_WHY"; ok=0
          elif ! same_data "$DATA" "$CD/other.out"; then fail "other key file: echo: $DATA_WHY"; ok=0; fi
        elif (( ok )); then fail "ktlsx server (other key) did not start"; ok=0; fi
        # random keys (no file): full handshake, no error
        if (( ok )) && ktlsx_echo_server "$ver" "${x[@]}"; then
          ktlsx_client_once random --sess-in "$CD/sess" --tls-version "$ver"
          if ! ktlsx_sane random; then fail "$WHY"; ok=0
          elif (( RC != 0 )); then fail "random keys: exit $RC: $(failure_line "$CD/random.err")"; ok=0
          elif ! check_summary "$CD/random.err" resumed=0; then fail "random keys: $SUM_WHY"; ok=0
          elif ! ktlsx_server_sane srv 0; then fail "$WHY"; ok=0
          elif grep -qa 'handshake failed' "$CD"/srv*.err; then fail "a ktlsx server logged a failure"; ok=0; fi
        elif (( ok )); then fail "ktlsx server (random keys) did not start"; ok=0; fi
        (( ok )) && pass
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done

# ------------------------------------------------------------------ --no-tickets ---
if case_begin no-tickets/tls1.3; then
  if need_ktlsx; then
    if ktlsx_echo_server 1.3 --no-tickets; then
      ktlsx_client_once c1 --sess-out "$CD/sess" --tls-version 1.3
      if ! ktlsx_sane c1; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC"
      else
        if [[ -s $CD/sess ]]; then
          ktlsx_client_once c2 --sess-in "$CD/sess" --tls-version 1.3
          if (( RC != 0 )); then fail "second ktlsx client exit $RC"
          elif ! check_summary "$CD/c2.err" resumed=0; then fail "$SUM_WHY"
          else pass; fi
        else
          pass # nothing to resume from: no session saved
        fi
      fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi
if case_begin no-tickets/tls1.2-session-id; then
  if need_ktlsx; then
    if ktlsx_echo_server 1.2 --no-tickets --session-cache 16; then
      resume_pair 1 --tls-version 1.2 && pass
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi
if q && case_begin no-tickets/tls1.2-no-cache; then
  if need_ktlsx; then
    if ktlsx_echo_server 1.2 --no-tickets --session-cache 0; then
      ktlsx_client_once c1 --sess-out "$CD/sess" --tls-version 1.2
      if (( RC != 0 )); then fail "ktlsx client exit $RC"
      elif [[ -s $CD/sess ]]; then
        ktlsx_client_once c2 --sess-in "$CD/sess" --tls-version 1.2
        if (( RC != 0 )); then fail "second ktlsx client exit $RC"
        elif ! check_summary "$CD/c2.err" resumed=0; then fail "$SUM_WHY"
        else pass; fi
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

finish
