#!/usr/bin/env bash
# Mutual TLS and certificate-verification failures (TLS 1.3).
#  positive: ktlsx client with a client certificate against openssl s_server
#            -Verify and gnutls-serv --require-client-cert; ktlsx server
#            --verify-client require|optional with openssl s_client and gnutls-cli.
#  failures: no client certificate when required (certificate_required), wrong
#            host name (bad_certificate), expired (certificate_expired), unknown
#            CA (unknown_ca), revoked by CRL (certificate_revoked) — each: ktlsx
#            exits non-zero with "(alert NAME)" on stderr, the openssl peer prints
#            the alert where it receives one, nobody crashes or hangs.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
DATA=$(make_data c2s)
TXT=$(make_text echo 65536)
CA=$CERTS/ca.pem
CLIENT_ARGS=(--cert "$(crt client)" --key "$(key client)")

# ktlsx client against an openssl s_server started with EXTRA args; on success
# the s_server stdout must hold what the client sent.
ktlsx_vs_openssl_ok() { # NAME KTLSX-EXTRA... -- SERVER-EXTRA...
  local kx=() sx=()
  while [[ $1 != -- ]]; do kx+=("$1"); shift; done; shift; sx=("$@")
  start_server srv --feed /dev/null "$CD/srv.out" 4096 -- \
    openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 $(ossl_cert_args server-ecdsa) "${sx[@]}" \
    || { fail "openssl s_server did not start"; return; }
  head -c 4096 "$DATA" >"$CD/in.data"
  run_fed cli "$CD/in.data" "$CD/srv.out" 4096 -- "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" "${kx[@]}"
  server_wait 5
  if ! ktlsx_sane cli; then fail "$WHY"; return; fi
  if (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"; return; fi
  check_summary "$CD/cli.err" version=TLSv1.3 || { fail "$SUM_WHY"; return; }
  if ! grep -q 'CN = ktlsx-client' "$CD/srv.err"; then fail "s_server did not see the client certificate"; return; fi
  same_data "$CD/in.data" "$CD/srv.out" || { fail "client->server: $DATA_WHY"; return; }
  if [[ " ${kx[*]} " == *" --trace "* ]]; then
    check_trace "$CD/cli.err" 'S->C CertificateRequest' 'C->S Certificate' 'C->S CertificateVerify' 'C->S Finished' \
      || { fail "$TRACE_WHY"; return; }
  fi
  pass
}

# ktlsx client must refuse: ALERT in its stderr; PEER_TEXT (regex) in the openssl
# s_server's output if given.
ktlsx_client_refuses() { # ALERT PEER_TEXT SERVER_CERT KTLSX-EXTRA... -- SERVER-EXTRA...
  local alert=$1 ptext=$2 scert=$3; shift 3
  local kx=() sx=()
  while [[ $1 != -- ]]; do kx+=("$1"); shift; done; shift; sx=("$@")
  start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 $(ossl_cert_args "$scert") "${sx[@]}" \
    || { fail "openssl s_server did not start"; return; }
  echo "must not arrive" >"$CD/in.txt"
  run_cmd cli "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" "${kx[@]}"
  server_wait 5
  if ! ktlsx_sane cli; then fail "$WHY"; return; fi
  (( RC != 0 )) || { fail "ktlsx client exit 0, expected a failure with (alert $alert)"; return; }
  check_alert "$CD/cli.err" "$alert" || { fail "$ALERT_WHY"; return; }
  if [[ -n $ptext ]] && ! grep -qiE "$ptext" "$CD/srv.err"; then
    fail "s_server output lacks '$ptext' (it printed: $(grep -m1 -iE 'error|alert' "$CD/srv.err" | cut -c1-200))"; return; fi
  if grep -q 'must not arrive' "$CD/srv.out"; then fail "application data was delivered despite the failure"; return; fi
  pass
}

# same against gnutls-serv (its alert output is not checked)
ktlsx_client_refuses_gnutls() { # ALERT SERVER_CERT KTLSX-EXTRA... -- SERVER-EXTRA...
  local alert=$1 scert=$2; shift 2
  local kx=() sx=()
  while [[ $1 != -- ]]; do kx+=("$1"); shift; done; shift; sx=("$@")
  start_server srv -- gnutls-serv --echo -q -p "{PORT}" --x509certfile "$(crt "$scert")" --x509keyfile "$(key "$scert")" "${sx[@]}" \
    || { fail "gnutls-serv did not start"; return; }
  echo "must not arrive" >"$CD/in.txt"
  run_cmd cli "$CD/in.txt" "$KTLSX" client "${KHOST:-127.0.0.1}:$PORT" --sni localhost --ca "$CA" "${kx[@]}"
  if ! ktlsx_sane cli; then fail "$WHY"; return; fi
  (( RC != 0 )) || { fail "ktlsx client exit 0, expected a failure with (alert $alert)"; return; }
  check_alert "$CD/cli.err" "$alert" || { fail "$ALERT_WHY"; return; }
  if grep -q 'must not arrive' "$CD/cli.out"; then fail "data was echoed despite the failure"; return; fi
  pass
}

start_ktlsx_srv() { # start_ktlsx_srv EXTRA...
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" \
    --tls-version 1.3 --echo --once "$@"
}

# openssl s_client against ktlsx server; OUTCOME ok|ALERT; PEER_CN expected in the
# server's summary (ok) ; s_client extra args after --
s_client_vs_ktlsx() { # OUTCOME PEER_RE SERVER-EXTRA... -- CLIENT-EXTRA...
  local outcome=$1 peer_re=$2; shift 2
  local sx=() cx=()
  while [[ $1 != -- ]]; do sx+=("$1"); shift; done; shift; cx=("$@")
  start_ktlsx_srv "${sx[@]}" || { fail "ktlsx server did not start"; return; }
  head -c 4096 "$DATA" >"$CD/in.data"
  run_fed cli "$CD/in.data" "$CD/cli.out" 4096 -- \
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
      -CAfile "$CA" -verify_return_error "${cx[@]}"
  if ! ktlsx_server_sane srv; then fail "$WHY"; return; fi
  if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"; return; fi
  if [[ $outcome == ok ]]; then
    check_summary "$CD/srv.err" version=TLSv1.3 "peer=\"$peer_re\"" || { fail "$SUM_WHY"; return; }
    same_data "$CD/in.data" "$CD/cli.out" || { fail "echo: $DATA_WHY"; return; }
  else
    check_alert "$CD/srv.err" "$outcome" || { fail "ktlsx server: $ALERT_WHY"; return; }
    grep -qi "$(openssl_alert_text "$outcome")" "$CD/cli.err" \
      || { fail "s_client did not receive '$(openssl_alert_text "$outcome")' (it printed: $(grep -m1 -iE 'error|alert' "$CD/cli.err" | cut -c1-200))"; return; }
    [[ -s $CD/cli.out ]] && { fail "data was echoed despite the failure"; return; }
  fi
  pass
}

gnutls_cli_vs_ktlsx() { # OUTCOME PEER_RE SERVER-EXTRA... -- CLIENT-EXTRA...
  local outcome=$1 peer_re=$2; shift 2
  local sx=() cx=()
  while [[ $1 != -- ]]; do sx+=("$1"); shift; done; shift; cx=("$@")
  start_ktlsx_srv "${sx[@]}" || { fail "ktlsx server did not start"; return; }
  local size; size=$(fsize "$TXT")
  run_fed cli "$TXT" "$CD/cli.out" "$size" -- \
    gnutls-cli --logfile "$CD/gnutls.log" --x509cafile "$CA" -p "$PORT" 127.0.0.1 \
      --sni-hostname localhost --verify-hostname localhost "${cx[@]}"
  if ! ktlsx_server_sane srv; then fail "$WHY"; return; fi
  if rc_crashed "$RC"; then fail "gnutls-cli $(describe_rc "$RC")"; return; fi
  if [[ $outcome == ok ]]; then
    check_summary "$CD/srv.err" version=TLSv1.3 "peer=\"$peer_re\"" || { fail "$SUM_WHY"; return; }
    same_data "$TXT" "$CD/cli.out" || { fail "echo: $DATA_WHY"; return; }
  else
    check_alert "$CD/srv.err" "$outcome" || { fail "ktlsx server: $ALERT_WHY"; return; }
    [[ -s $CD/cli.out ]] && { fail "data was echoed despite the failure"; return; }
  fi
  pass
}

q() { (( ! QUICK )); }   # full run only

# ---------------------------------------------------------------- positive ---
if case_begin client/openssl; then
  need_ktlsx && need_tool openssl && ktlsx_vs_openssl_ok "${CLIENT_ARGS[@]}" --trace -- -Verify 1 -verify_return_error -CAfile "$CA" \
    || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if case_begin client/gnutls; then
  if need_ktlsx && need_tool gnutls-serv; then
    if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --require-client-cert --x509cafile "$CA" \
         --x509certfile "$(crt server-ecdsa)" --x509keyfile "$(key server-ecdsa)"; then
      run_fed cli "$TXT" "$CD/cli.out" "$(fsize "$TXT")" -- "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" "${CLIENT_ARGS[@]}"
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err")"
      elif ! check_summary "$CD/cli.err" version=TLSv1.3; then fail "$SUM_WHY"
      elif ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "gnutls-serv did not start"; fi
  else skip "$SKIP_WHY"; fi
fi
if case_begin server-require/openssl; then
  need_ktlsx && need_tool openssl && s_client_vs_ktlsx ok '[^"]*ktlsx-client[^"]*' --ca "$CA" --verify-client require -- \
    $(ossl_cert_args client) || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if case_begin server-require/gnutls; then
  need_ktlsx && need_tool gnutls-cli && gnutls_cli_vs_ktlsx ok '[^"]*ktlsx-client[^"]*' --ca "$CA" --verify-client require -- \
    --x509certfile "$(crt client)" --x509keyfile "$(key client)" || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if q && case_begin server-optional-cert/openssl; then
  need_ktlsx && need_tool openssl && s_client_vs_ktlsx ok '[^"]*ktlsx-client[^"]*' --ca "$CA" --verify-client optional -- \
    $(ossl_cert_args client) || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if q && case_begin server-optional-nocert/openssl; then
  need_ktlsx && need_tool openssl && s_client_vs_ktlsx ok '(-|)' --ca "$CA" --verify-client optional -- \
    || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if q && case_begin server-optional-nocert/gnutls; then
  need_ktlsx && need_tool gnutls-cli && gnutls_cli_vs_ktlsx ok '(-|)' --ca "$CA" --verify-client optional -- \
    || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi

# ------------------------------------------------------- certificate_required ---
if case_begin server-require-nocert/openssl; then
  need_ktlsx && need_tool openssl && s_client_vs_ktlsx certificate_required '' --ca "$CA" --verify-client require -- \
    || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if q && case_begin server-require-nocert/gnutls; then
  need_ktlsx && need_tool gnutls-cli && gnutls_cli_vs_ktlsx certificate_required '' --ca "$CA" --verify-client require -- \
    || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if case_begin client-nocert/openssl; then
  need_ktlsx && need_tool openssl && ktlsx_client_refuses certificate_required 'peer did not return a certificate' server-ecdsa \
    -- -Verify 1 -verify_return_error -CAfile "$CA" || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi
if q && case_begin client-nocert/gnutls; then
  need_ktlsx && need_tool gnutls-serv && ktlsx_client_refuses_gnutls certificate_required server-ecdsa \
    -- --require-client-cert --x509cafile "$CA" || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
fi

# ---------------------------------------- ktlsx client rejects the server cert ---
for spec in wrongname:bad_certificate: expired:certificate_expired: other:unknown_ca: revoked:certificate_revoked:--crl; do
  IFS=: read -r scert alert extra <<<"$spec"
  kx=(); [[ -n $extra ]] && kx=(--crl "$CERTS/crl.pem")
  if case_begin "client-rejects-$scert/openssl"; then
    need_ktlsx && need_tool openssl && ktlsx_client_refuses "$alert" "$(openssl_alert_text "$alert")" "$scert" "${kx[@]}" -- \
      || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
  fi
  if q && case_begin "client-rejects-$scert/gnutls"; then
    need_ktlsx && need_tool gnutls-serv && ktlsx_client_refuses_gnutls "$alert" "$scert" "${kx[@]}" -- \
      || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
  fi
done

# host name check by DNS name (HOST localhost; gnutls-serv listens on IPv4 and IPv6)
if q && case_begin "client-rejects-wrongname-dns/gnutls"; then
  KHOST=localhost
  need_ktlsx && need_tool gnutls-serv && ktlsx_client_refuses_gnutls bad_certificate wrongname -- \
    || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
  KHOST=
fi

# ---------------------------------------- ktlsx server rejects the client cert ---
for spec in expired:certificate_expired other:unknown_ca revoked:certificate_revoked; do
  IFS=: read -r ccert alert <<<"$spec"
  sx=(--ca "$CA" --verify-client require)
  [[ $ccert == revoked ]] && sx+=(--crl "$CERTS/crl.pem")
  if case_begin "server-rejects-$ccert/openssl"; then
    need_ktlsx && need_tool openssl && s_client_vs_ktlsx "$alert" '' "${sx[@]}" -- $(ossl_cert_args "$ccert") \
      || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
  fi
  if q && case_begin "server-rejects-$ccert/gnutls"; then
    need_ktlsx && need_tool gnutls-cli && gnutls_cli_vs_ktlsx "$alert" '' "${sx[@]}" -- \
      --x509certfile "$(crt "$ccert")" --x509keyfile "$(key "$ccert")" || { [[ -n $CASE ]] && skip "$SKIP_WHY"; }
  fi
done

finish
