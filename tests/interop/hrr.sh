#!/usr/bin/env bash
# HelloRetryRequest, both directions.
#  1. openssl s_client -groups P-256:X25519 (key share for P-256 only) against
#     ktlsx server --groups x25519: handshake with x25519 after an HRR, which the
#     server's --trace shows.
#  2. ktlsx client --groups x25519,P-256 (key share for x25519 only) against
#     openssl s_server -groups P-256: handshake with group=secp256r1.
#  3. the same against gnutls-serv restricted to SECP256R1.
#  4. gnutls-cli offering SECP256R1 then X25519 against ktlsx server --groups x25519:
#     gnutls sends a key share for both, so the server must pick x25519 *without* HRR.
# Each case also round-trips data after the retried handshake.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
MSG=$WORK/msg.txt
echo "after hello retry request" >"$MSG"

if case_begin server/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" \
         --tls-version 1.3 --groups x25519 --trace --echo --once; then
      run_fed cli "$MSG" "$CD/cli.out" "$(fsize "$MSG")" -- \
        openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
          -CAfile "$CERTS/ca.pem" -verify_return_error -tls1_3 -groups P-256:X25519
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC" || (( RC != 0 )); then fail "s_client $(describe_rc "$RC"): $(grep -m1 -iE 'error|alert' "$CD/cli.err")"
      elif ! grep -qE '^Server Temp Key: X25519' "$CD/cli.err"; then fail "s_client: $(grep -m1 'Temp Key' "$CD/cli.err" || echo 'no key exchange line')"
      elif ! check_summary "$CD/srv.err" version=TLSv1.3 group="$(group_re x25519)"; then fail "$SUM_WHY"
      elif ! grep -q 'HelloRetryRequest' "$CD/srv.err"; then fail "server --trace shows no HelloRetryRequest"
      elif ! same_data "$MSG" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin client/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv --feed /dev/null "$CD/srv.out" "$(fsize "$MSG")" -- \
         openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 $(ossl_cert_args server-ecdsa) -groups P-256; then
      run_fed cli "$MSG" "$CD/srv.out" "$(fsize "$MSG")" -- \
        "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --groups x25519,P-256 --trace
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err")"
      elif ! check_summary "$CD/cli.err" version=TLSv1.3 group=secp256r1; then fail "$SUM_WHY"
      elif ! grep -q 'HelloRetryRequest' "$CD/cli.err"; then fail "client --trace shows no HelloRetryRequest"
      elif ! same_data "$MSG" "$CD/srv.out"; then fail "client->server: $DATA_WHY"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if (( ! QUICK )) && case_begin client/gnutls; then
  if need_ktlsx && need_tool gnutls-serv; then
    if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --x509certfile "$(crt server-ecdsa)" --x509keyfile "$(key server-ecdsa)" \
         --priority "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-SECP256R1"; then
      run_fed cli "$MSG" "$CD/cli.out" "$(fsize "$MSG")" -- \
        "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --groups x25519,P-256 --trace
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err")"
      elif ! check_summary "$CD/cli.err" version=TLSv1.3 group=secp256r1; then fail "$SUM_WHY"
      elif ! grep -q 'HelloRetryRequest' "$CD/cli.err"; then fail "client --trace shows no HelloRetryRequest"
      elif ! same_data "$MSG" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "gnutls-serv did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if (( ! QUICK )) && case_begin server/gnutls-two-shares; then
  if need_ktlsx && need_tool gnutls-cli; then
    if start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" \
         --tls-version 1.3 --groups x25519 --trace --echo --once; then
      run_fed cli "$MSG" "$CD/cli.out" "$(fsize "$MSG")" -- \
        gnutls-cli --logfile "$CD/gnutls.log" --x509cafile "$CERTS/ca.pem" -p "$PORT" 127.0.0.1 \
          --sni-hostname localhost --verify-hostname localhost \
          --priority "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-SECP256R1:+GROUP-X25519"
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC" || (( RC != 0 )); then fail "gnutls-cli $(describe_rc "$RC")"
      elif ! grep -q 'ECDHE-X25519' "$CD/gnutls.log"; then fail "gnutls-cli: $(grep -m1 Description "$CD/gnutls.log" || echo 'no handshake')"
      elif ! check_summary "$CD/srv.err" version=TLSv1.3 group="$(group_re x25519)"; then fail "$SUM_WHY"
      elif grep -q 'HelloRetryRequest' "$CD/srv.err"; then fail "server sent a HelloRetryRequest although the client offered an x25519 share"
      elif ! same_data "$MSG" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

finish
