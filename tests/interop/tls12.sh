#!/usr/bin/env bash
# TLS 1.2 interop, both directions, with openssl and gnutls, for every TLS 1.2
# suite ktlsx has (ECDHE-ECDSA-* with the ECDSA certificate, ECDHE-RSA-* with
# the RSA certificate):
#  - ktlsx client -> openssl s_server: 1 MiB random each way, sha256-compared
#  - ktlsx client -> gnutls-serv --echo: 1 MiB random text echoed back
#  - openssl s_client -> ktlsx server --echo: 1 MiB random echoed back
#  - gnutls-cli -> ktlsx server --echo: 1 MiB random text echoed back
# The ktlsx summary line must say version=TLSv1.2 and the suite's IANA name.
# Plus: mutual TLS (one case per peer and direction), --trace on both ktlsx
# sides showing the RFC 5246 flow, and legacy RSA key exchange
# (AES128-GCM-SHA256) which works only with --legacy-rsa-kx.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
C2S=$(make_data c2s)
S2C=$(make_data s2c)
TXT=$(make_text echo)
CA=$CERTS/ca.pem

# openssl name : IANA name : certificate : gnutls cipher : gnutls kx
SUITES=(
  "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:ecdsa:AES-128-GCM:ECDHE-ECDSA"
  "ECDHE-ECDSA-AES256-GCM-SHA384:TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:ecdsa:AES-256-GCM:ECDHE-ECDSA"
  "ECDHE-ECDSA-CHACHA20-POLY1305:TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:ecdsa:CHACHA20-POLY1305:ECDHE-ECDSA"
  "ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:rsa:AES-128-GCM:ECDHE-RSA"
  "ECDHE-RSA-AES256-GCM-SHA384:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:rsa:AES-256-GCM:ECDHE-RSA"
  "ECDHE-RSA-CHACHA20-POLY1305:TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:rsa:CHACHA20-POLY1305:ECDHE-RSA"
)
# QUICK: one ECDSA and one RSA suite
quick_suite() { (( ! QUICK )) || [[ $1 == 0 || $1 == 4 ]]; }

gnutls_prio12() { # CIPHER KX
  echo "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+$1:-KX-ALL:+$2:-MAC-ALL:+AEAD"
}

ktlsx_err_line() { failure_line "$1" || grep -a -m1 '^ktlsx:' "$1" || tail -n1 "$1"; }

# ---------------------------------------------------------------- checks ---

# ktlsx client against a server already started (openssl s_server, both directions).
ktlsx_client_vs_s_server() { # IANA KTLSX-EXTRA...
  local iana=$1; shift
  run_fed cli "$C2S" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
    "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" --tls-version 1.2 "$@"
  server_wait 5
  if ! ktlsx_sane cli; then fail "$WHY"; return; fi
  if (( RC != 0 )); then fail "ktlsx client exit $RC: $(ktlsx_err_line "$CD/cli.err")"; return; fi
  check_summary "$CD/cli.err" version=TLSv1.2 cipher="$iana" || { fail "$SUM_WHY"; return; }
  same_data "$C2S" "$CD/srv.out" || { fail "client->server: $DATA_WHY"; return; }
  same_data "$S2C" "$CD/cli.out" || { fail "server->client: $DATA_WHY"; return; }
  # mTLS: s_server -Verify 1 -verify_return_error refuses a handshake without a valid
  # client certificate; the trace shows ktlsx sent one and signed with it
  if [[ -n ${WANT_CLIENT_CERT:-} ]]; then
    check_trace "$CD/cli.err" 'S->C CertificateRequest' 'C->S Certificate' 'C->S CertificateVerify' \
      || { fail "$TRACE_WHY"; return; }
  fi
  pass
}

start_s_server() { # OPENSSL-CIPHER CERT EXTRA...
  local cipher=$1 cert=$2; shift 2
  start_server srv --feed "$S2C" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
    openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_2 \
      $(ossl_cert_args "server-$cert") -cipher "$cipher" "$@"
}

ktlsx_client_vs_gnutls() { # IANA KTLSX-EXTRA...
  local iana=$1; shift
  local size; size=$(fsize "$TXT")
  run_fed cli "$TXT" "$CD/cli.out" "$size" -- \
    "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" --tls-version 1.2 "$@"
  if ! ktlsx_sane cli; then fail "$WHY"; return; fi
  if (( RC != 0 )); then fail "ktlsx client exit $RC: $(ktlsx_err_line "$CD/cli.err")"; return; fi
  check_summary "$CD/cli.err" version=TLSv1.2 cipher="$iana" || { fail "$SUM_WHY"; return; }
  same_data "$TXT" "$CD/cli.out" || { fail "echo: $DATA_WHY"; return; }
  pass
}

start_ktlsx_server() { # CERT EXTRA...
  local cert=$1; shift
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt "server-$cert")" \
    --key "$(key "server-$cert")" --tls-version 1.2 --echo --once "$@"
}

s_client_vs_ktlsx() { # IANA PEER-RE CLIENT-EXTRA...
  local iana=$1 peer_re=$2; shift 2
  run_fed cli "$C2S" "$CD/cli.out" "$DATA_SIZE" -- \
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
      -CAfile "$CA" -verify_return_error -tls1_2 "$@"
  if ! ktlsx_server_sane srv; then fail "$WHY"; return; fi
  if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"; return; fi
  check_summary "$CD/srv.err" version=TLSv1.2 cipher="$iana" "peer=\"$peer_re\"" || { fail "$SUM_WHY"; return; }
  grep -q "Protocol version: TLSv1.2" "$CD/cli.err" || { fail "s_client did not report TLSv1.2"; return; }
  same_data "$C2S" "$CD/cli.out" || { fail "echo: $DATA_WHY"; return; }
  pass
}

gnutls_cli_vs_ktlsx() { # IANA PEER-RE PRIO CLIENT-EXTRA...
  local iana=$1 peer_re=$2 prio=$3; shift 3
  local size; size=$(fsize "$TXT")
  run_fed cli "$TXT" "$CD/cli.out" "$size" -- \
    gnutls-cli --logfile "$CD/gnutls.log" --x509cafile "$CA" -p "$PORT" 127.0.0.1 \
      --sni-hostname localhost --verify-hostname localhost --priority "$prio" "$@"
  if ! ktlsx_server_sane srv; then fail "$WHY"; return; fi
  if rc_crashed "$RC"; then fail "gnutls-cli $(describe_rc "$RC")"; return; fi
  check_summary "$CD/srv.err" version=TLSv1.2 cipher="$iana" "peer=\"$peer_re\"" || { fail "$SUM_WHY"; return; }
  same_data "$TXT" "$CD/cli.out" || { fail "echo: $DATA_WHY"; return; }
  pass
}

# ------------------------------------------------------------ suite matrix ---
i=0
for spec in "${SUITES[@]}"; do
  n=$((i++))
  quick_suite $n || continue
  IFS=: read -r ossl iana cert gcipher gkx <<<"$spec"
  prio=$(gnutls_prio12 "$gcipher" "$gkx")

  if case_begin "client/openssl/$ossl"; then
    if need_ktlsx && need_tool openssl; then
      if start_s_server "$ossl" "$cert"; then ktlsx_client_vs_s_server "$iana" --ciphers "$ossl"
      else fail "openssl s_server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi

  if case_begin "client/gnutls/$ossl"; then
    if need_ktlsx && need_tool gnutls-serv; then
      if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --x509certfile "$(crt "server-$cert")" \
           --x509keyfile "$(key "server-$cert")" --priority "$prio"; then
        ktlsx_client_vs_gnutls "$iana" --ciphers "$iana"
      else fail "gnutls-serv did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi

  if case_begin "server/openssl/$ossl"; then
    if need_ktlsx && need_tool openssl; then
      if start_ktlsx_server "$cert" --ciphers "$ossl"; then s_client_vs_ktlsx "$iana" "" -cipher "$ossl"
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi

  if case_begin "server/gnutls/$ossl"; then
    if need_ktlsx && need_tool gnutls-cli; then
      if start_ktlsx_server "$cert" --ciphers "$iana"; then gnutls_cli_vs_ktlsx "$iana" "" "$prio"
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done
for f in "$WORK"/client_gnutls_*/srv.err; do [[ -f $f ]] && { tail -n 200 "$f" >"$f.tmp"; mv "$f.tmp" "$f"; }; done

# ------------------------------------------------------------- mutual TLS ---
CLIENT_CERT=(--cert "$(crt client)" --key "$(key client)")

if case_begin mtls/client/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_s_server ECDHE-RSA-AES256-GCM-SHA384 rsa -Verify 1 -verify_return_error -CAfile "$CA"; then
      WANT_CLIENT_CERT=1 ktlsx_client_vs_s_server TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 "${CLIENT_CERT[@]}" --trace
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin mtls/client/gnutls; then
  if need_ktlsx && need_tool gnutls-serv; then
    if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --require-client-cert --x509cafile "$CA" \
         --x509certfile "$(crt server-ecdsa)" --x509keyfile "$(key server-ecdsa)" \
         --priority "$(gnutls_prio12 AES-128-GCM ECDHE-ECDSA)"; then
      ktlsx_client_vs_gnutls TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 "${CLIENT_CERT[@]}"
    else fail "gnutls-serv did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin mtls/server/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_server ecdsa --ca "$CA" --verify-client require; then
      s_client_vs_ktlsx 'TLS_ECDHE_ECDSA_[A-Z0-9_]+' '[^"]*ktlsx-client[^"]*' $(ossl_cert_args client)
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin mtls/server/gnutls; then
  if need_ktlsx && need_tool gnutls-cli; then
    if start_ktlsx_server rsa --ca "$CA" --verify-client require; then
      gnutls_cli_vs_ktlsx TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 '[^"]*ktlsx-client[^"]*' \
        "$(gnutls_prio12 CHACHA20-POLY1305 ECDHE-RSA)" --x509certfile "$(crt client)" --x509keyfile "$(key client)"
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin mtls/server/openssl-nocert; then
  # required but not sent: ktlsx refuses with an alert, s_client sees it
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_server ecdsa --ca "$CA" --verify-client require; then
      echo "must not arrive" >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -tls1_2 -CAfile "$CA"
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"
      elif ! grep -qa '^ktlsx: handshake failed' "$CD/srv.err"; then fail "ktlsx server did not report the failure: $(tail -n1 "$CD/srv.err")"
      elif ! grep -qiE 'alert (handshake failure|certificate required)' "$CD/cli.err"; then
        fail "s_client did not receive an alert: $(grep -m1 -iE 'error|alert' "$CD/cli.err" | cut -c1-200)"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------------------------ trace ---
FLOW=('C->S ClientHello' 'S->C ServerHello version=TLSv1.2' 'S->C Certificate' 'S->C ServerKeyExchange'
      'S->C ServerHelloDone' 'C->S ClientKeyExchange' 'C->S ChangeCipherSpec' 'C->S Finished'
      'S->C NewSessionTicket' 'S->C ChangeCipherSpec' 'S->C Finished')

if case_begin trace/client; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_2 $(ossl_cert_args server-ecdsa); then
      echo hello >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" --tls-version 1.2 --trace
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC: $(ktlsx_err_line "$CD/cli.err")"
      elif ! check_trace "$CD/cli.err" "${FLOW[@]}"; then fail "$TRACE_WHY"
      elif ! check_summary "$CD/cli.err" version=TLSv1.2 resumed=0; then fail "$SUM_WHY"
      elif ! grep -q hello "$CD/srv.out"; then fail "s_server did not receive the data"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin trace/server; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_server rsa --trace; then
      head -c 4096 "$C2S" >"$CD/in.data"
      run_fed cli "$CD/in.data" "$CD/cli.out" 4096 -- openssl s_client -connect "127.0.0.1:$PORT" -servername localhost \
        -brief -nocommands -no_ign_eof -CAfile "$CA" -tls1_2
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif ! check_trace "$CD/srv.err" "${FLOW[@]}"; then fail "$TRACE_WHY"
      elif ! check_summary "$CD/srv.err" version=TLSv1.2 'cipher=TLS_ECDHE_RSA_[A-Z0-9_]+'; then fail "$SUM_WHY"
      elif ! same_data "$CD/in.data" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------------- legacy RSA key exchange ---
if case_begin legacy-rsa/client/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_s_server AES128-GCM-SHA256 rsa; then
      ktlsx_client_vs_s_server TLS_RSA_WITH_AES_128_GCM_SHA256 --ciphers AES128-GCM-SHA256 --legacy-rsa-kx
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin legacy-rsa/client/openssl-refused; then
  # without --legacy-rsa-kx the client has no suite to offer (or the handshake fails): a clear error, no hang
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_2 \
         $(ossl_cert_args server-rsa) -cipher AES128-GCM-SHA256; then
      echo "must not arrive" >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" --tls-version 1.2 \
        --ciphers AES128-GCM-SHA256
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC == 0 )); then fail "ktlsx client succeeded without --legacy-rsa-kx"
      elif ! grep -qaiE 'legacy|rsa|cipher suite' "$CD/cli.err"; then fail "no clear error: $(tail -n2 "$CD/cli.err" | tr '\n' ' ')"
      elif grep -q 'must not arrive' "$CD/srv.out"; then fail "data delivered"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin legacy-rsa/server/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_server rsa --legacy-rsa-kx --ciphers AES128-GCM-SHA256,ECDHE-RSA-AES128-GCM-SHA256; then
      s_client_vs_ktlsx TLS_RSA_WITH_AES_128_GCM_SHA256 "" -cipher AES128-GCM-SHA256
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin legacy-rsa/server/gnutls; then
  if need_ktlsx && need_tool gnutls-cli; then
    if start_ktlsx_server rsa --legacy-rsa-kx; then
      gnutls_cli_vs_ktlsx TLS_RSA_WITH_AES_128_GCM_SHA256 "" "$(gnutls_prio12 AES-128-GCM RSA)"
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin legacy-rsa/server/openssl-refused; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_server rsa; then
      echo "must not arrive" >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -tls1_2 \
        -CAfile "$CA" -cipher AES128-GCM-SHA256
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"
      elif ! check_alert "$CD/srv.err" handshake_failure; then fail "ktlsx server: $ALERT_WHY"
      elif ! grep -qi 'alert handshake failure' "$CD/cli.err"; then
        fail "s_client did not receive handshake_failure: $(grep -m1 -iE 'error|alert' "$CD/cli.err" | cut -c1-200)"
      elif [[ -s $CD/cli.out ]]; then fail "data echoed"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------------- version pinning ---
if case_begin version/client-1.2-vs-s_server-1.3only; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 $(ossl_cert_args server-ecdsa); then
      echo "must not arrive" >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" --tls-version 1.2
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC == 0 )); then fail "ktlsx client succeeded against a TLS 1.3-only server"
      elif ! check_alert "$CD/cli.err" protocol_version; then fail "$ALERT_WHY"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

finish
