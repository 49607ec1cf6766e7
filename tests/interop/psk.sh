#!/usr/bin/env bash
# TLS 1.3 external PSKs (RFC 8446 §4.2.11) across implementations.
#  - ktlsx client --psk-identity/--psk-file against openssl s_server -psk -nocert
#    and against gnutls-serv --pskpasswd (PSK-only priority)
#  - openssl s_client -psk against ktlsx server --psk-identity/--psk-file, with and
#    without a certificate; gnutls-cli --pskusername/--pskkey against ktlsx server
#  - SHA-384 PSK (--psk-sha384) with TLS_AES_256_GCM_SHA384: ktlsx <-> ktlsx; openssl's
#    -psk is always SHA-256-bound, so against it a SHA-384 PSK must fail cleanly
#  - a wrong key on one side: the handshake fails with an alert (decrypt_error for a
#    bad binder at a ktlsx server), nobody hangs or crashes
# Data: a line (openssl) or 64 KiB of text (echo servers) must round-trip.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
CA=$CERTS/ca.pem
TXT=$(make_text echo 65536)

KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
KEY384=$KEY$KEY
KEY384=${KEY384:0:96}
WRONG=ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
ID=ktlsx-test-psk
echo "$KEY" >"$WORK/psk.hex"
echo "$KEY384" >"$WORK/psk384.hex"
echo "$WRONG" >"$WORK/wrong.hex"
printf '%s:%s\n' "$ID" "$KEY" >"$WORK/gnutls-psk.passwd"
printf '%s:%s\n' "$ID" "$WRONG" >"$WORK/gnutls-wrong.passwd"

q() { (( ! QUICK )); }
GNUTLS_PSK_PRIO="NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+DHE-PSK:+PSK"

ktlsx_psk_client() { # NAME HEXFILE EXTRA...   (stdin: $TXT, waits for the echo when ECHO=1)
  local name=$1 hex=$2; shift 2
  if [[ ${ECHO:-0} == 1 ]]; then
    run_fed "$name" "$TXT" "$CD/$name.out" "$(fsize "$TXT")" -- "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" \
      --tls-version 1.3 --psk-identity "$ID" --psk-file "$hex" "$@"
  else
    echo "psk hello" >"$CD/in.txt"
    run_cmd "$name" "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CA" \
      --tls-version 1.3 --psk-identity "$ID" --psk-file "$hex" "$@"
  fi
}

check_ok_client() { # NAME CIPHER-RE
  if ! ktlsx_sane "$1"; then fail "$WHY"; return 1; fi
  if (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/$1.err" || tail -n1 "$CD/$1.err")"; return 1; fi
  check_summary "$CD/$1.err" version=TLSv1.3 resumed=1 cipher="$2" || { fail "$SUM_WHY"; return 1; }
  return 0
}

# ------------------------------------------------ ktlsx client vs openssl s_server ---
if case_begin client/openssl; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -quiet -tls1_3 -nocert \
         -psk "$KEY" -psk_identity "$ID" -ciphersuites TLS_AES_128_GCM_SHA256; then
      ktlsx_psk_client cli "$WORK/psk.hex"
      server_wait 5
      if check_ok_client cli TLS_AES_128_GCM_SHA256; then
        if ! grep -q 'psk hello' "$CD/srv.out"; then fail "s_server did not receive the data"
        else pass; fi
      fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# openssl's -psk option always binds the key to SHA-256 (apps/s_client.c, s_server.c use
# TLS_AES_128_GCM_SHA256 for the PSK session): a --psk-sha384 ktlsx is a different PSK
# for it.  The handshake must fail with an alert, not hang.
if q && case_begin client/openssl/sha384-mismatch; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -quiet -tls1_3 -nocert \
         -psk "$KEY384" -psk_identity "$ID" -ciphersuites TLS_AES_256_GCM_SHA384; then
      ktlsx_psk_client cli "$WORK/psk384.hex" --psk-sha384 --ciphers TLS_AES_256_GCM_SHA384
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC == 0 )); then fail "ktlsx client succeeded although openssl binds its PSK to SHA-256"
      elif ! grep -qa '(alert ' "$CD/cli.err"; then fail "no alert reported: $(tail -n1 "$CD/cli.err")"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin client/openssl/wrong-key; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -quiet -tls1_3 -nocert \
         -psk "$WRONG" -psk_identity "$ID" -ciphersuites TLS_AES_128_GCM_SHA256; then
      ktlsx_psk_client cli "$WORK/psk.hex"
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC == 0 )); then fail "ktlsx client succeeded with the wrong PSK"
      elif ! grep -qa '(alert ' "$CD/cli.err"; then fail "no alert reported: $(tail -n1 "$CD/cli.err")"
      elif grep -q 'psk hello' "$CD/srv.out"; then fail "data delivered despite the wrong PSK"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------ ktlsx client vs gnutls-serv ---
if case_begin client/gnutls; then
  if need_ktlsx && need_tool gnutls-serv; then
    if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --pskpasswd "$WORK/gnutls-psk.passwd" --priority "$GNUTLS_PSK_PRIO"; then
      ECHO=1 ktlsx_psk_client cli "$WORK/psk.hex"
      if check_ok_client cli 'TLS_[A-Z0-9_]+'; then
        if ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"; else pass; fi
      fi
    else fail "gnutls-serv did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if q && case_begin client/gnutls/wrong-key; then
  if need_ktlsx && need_tool gnutls-serv; then
    if start_server srv -- gnutls-serv --echo -q -p "{PORT}" --pskpasswd "$WORK/gnutls-wrong.passwd" --priority "$GNUTLS_PSK_PRIO"; then
      ktlsx_psk_client cli "$WORK/psk.hex"
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC == 0 )); then fail "ktlsx client succeeded with the wrong PSK"
      elif ! grep -qa '(alert ' "$CD/cli.err"; then fail "no alert reported: $(tail -n1 "$CD/cli.err")"
      else pass; fi
    else fail "gnutls-serv did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------ openssl s_client vs ktlsx server ---
start_ktlsx_psk_server() { # HEXFILE WITH-CERT(0|1) EXTRA...
  local hex=$1 withcert=$2; shift 2
  local certargs=()
  (( withcert )) && certargs=(--cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)")
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" "${certargs[@]}" --tls-version 1.3 \
    --psk-identity "$ID" --psk-file "$hex" --echo --once "$@"
}

for withcert in 0 1; do
  label=$([[ $withcert == 1 ]] && echo with-cert || echo no-cert)
  if case_begin "server/openssl/$label"; then
    if need_ktlsx && need_tool openssl; then
      if start_ktlsx_psk_server "$WORK/psk.hex" "$withcert"; then
        run_fed cli "$TXT" "$CD/cli.out" "$(fsize "$TXT")" -- openssl s_client -connect "127.0.0.1:$PORT" -quiet -nocommands -no_ign_eof \
          -tls1_3 -psk "$KEY" -psk_identity "$ID" -ciphersuites TLS_AES_128_GCM_SHA256
        if ! ktlsx_server_sane srv; then fail "$WHY"
        elif rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"
        elif ! check_summary "$CD/srv.err" version=TLSv1.3 resumed=1 cipher=TLS_AES_128_GCM_SHA256; then fail "$SUM_WHY"
        elif ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
        else pass; fi
      else fail "ktlsx server did not start: $(tail -n1 "$CD/srv.err")"; fi
    else skip "$SKIP_WHY"; fi
  fi
done

if q && case_begin server/openssl/sha384-mismatch; then
  # (see client/openssl/sha384-mismatch) s_client's binder is SHA-256: decrypt_error
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_psk_server "$WORK/psk384.hex" 0 --psk-sha384; then
      echo "must not arrive" >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -psk "$KEY384" -psk_identity "$ID" \
        -ciphersuites TLS_AES_256_GCM_SHA384
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"
      elif ! check_alert "$CD/srv.err" decrypt_error; then fail "ktlsx server: $ALERT_WHY"
      else pass; fi
    else fail "ktlsx server did not start: $(tail -n1 "$CD/srv.err")"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin server/openssl/wrong-key; then
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_psk_server "$WORK/psk.hex" 0; then
      echo "must not arrive" >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -psk "$WRONG" -psk_identity "$ID" \
        -ciphersuites TLS_AES_128_GCM_SHA256
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"
      elif ! check_alert "$CD/srv.err" decrypt_error; then fail "ktlsx server: $ALERT_WHY"
      elif ! grep -qi 'alert decrypt error' "$CD/cli.err"; then
        fail "s_client did not receive decrypt_error: $(grep -m1 -iE 'error|alert' "$CD/cli.err" | cut -c1-200)"
      elif [[ -s $CD/srv.out ]] && grep -q 'must not arrive' "$CD/srv.out"; then fail "data delivered"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if q && case_begin server/openssl/unknown-identity-with-cert; then
  # an identity the server does not know: a ktlsx server with a certificate falls back to it
  if need_ktlsx && need_tool openssl; then
    if start_ktlsx_psk_server "$WORK/psk.hex" 1; then
      run_fed cli "$TXT" "$CD/cli.out" "$(fsize "$TXT")" -- openssl s_client -connect "127.0.0.1:$PORT" -quiet -nocommands -no_ign_eof \
        -servername localhost -CAfile "$CA" -verify_return_error -tls1_3 -psk "$KEY" -psk_identity someone-else
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif ! check_summary "$CD/srv.err" version=TLSv1.3 resumed=0; then fail "$SUM_WHY"
      elif ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------------ gnutls-cli vs ktlsx server ---
if case_begin server/gnutls; then
  if need_ktlsx && need_tool gnutls-cli; then
    if start_ktlsx_psk_server "$WORK/psk.hex" 0; then
      run_fed cli "$TXT" "$CD/cli.out" "$(fsize "$TXT")" -- gnutls-cli --logfile "$CD/gnutls.log" -p "$PORT" 127.0.0.1 \
        --priority "$GNUTLS_PSK_PRIO" --pskusername "$ID" --pskkey "$KEY"
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif rc_crashed "$RC"; then fail "gnutls-cli $(describe_rc "$RC")"
      elif ! check_summary "$CD/srv.err" version=TLSv1.3 resumed=1; then fail "$SUM_WHY"
      elif ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------------------- ktlsx <-> ktlsx ---
if case_begin ktlsx-ktlsx/wrong-key; then
  if need_ktlsx; then
    if start_ktlsx_psk_server "$WORK/psk.hex" 0; then
      ktlsx_psk_client cli "$WORK/wrong.hex"
      if ! ktlsx_sane cli; then fail "$WHY"
      elif ! ktlsx_server_sane srv; then fail "$WHY"
      elif (( RC == 0 )); then fail "ktlsx client succeeded with the wrong PSK"
      elif ! check_alert "$CD/cli.err" decrypt_error; then fail "client: $ALERT_WHY"
      elif ! check_alert "$CD/srv.err" decrypt_error; then fail "server: $ALERT_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi
if q && case_begin ktlsx-ktlsx/ok; then
  if need_ktlsx; then
    if start_ktlsx_psk_server "$WORK/psk.hex" 0; then
      ECHO=1 ktlsx_psk_client cli "$WORK/psk.hex"
      if check_ok_client cli TLS_AES_128_GCM_SHA256; then
        if ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
        elif ! ktlsx_server_sane srv; then fail "$WHY"
        else pass; fi
      fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

if case_begin ktlsx-ktlsx/sha384; then
  if need_ktlsx; then
    if start_ktlsx_psk_server "$WORK/psk384.hex" 0 --psk-sha384; then
      ECHO=1 ktlsx_psk_client cli "$WORK/psk384.hex" --psk-sha384
      if check_ok_client cli TLS_AES_256_GCM_SHA384; then
        if ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
        elif ! ktlsx_server_sane srv; then fail "$WHY"
        else pass; fi
      fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

for f in "$WORK"/client_gnutls*/srv.err; do [[ -f $f ]] && { tail -n 200 "$f" >"$f.tmp"; mv "$f.tmp" "$f"; }; done
finish
