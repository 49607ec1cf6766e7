#!/usr/bin/env bash
# NSS key log (--keylog FILE and $SSLKEYLOGFILE), client and server side.
# The ktlsx key log must hold CLIENT_HANDSHAKE_TRAFFIC_SECRET,
# SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT_TRAFFIC_SECRET_0 and
# SERVER_TRAFFIC_SECRET_0 lines "LABEL <32-byte client_random hex> <secret hex>"
# (secret: 32 bytes for SHA-256 suites, 48 for SHA-384), and the very same
# lines as the openssl peer's -keylogfile for that connection.
# (Decryption with tshark is not checked.)
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
MSG=$WORK/msg.txt
echo "key log test" >"$MSG"
LABELS=(CLIENT_HANDSHAKE_TRAFFIC_SECRET SERVER_HANDSHAKE_TRAFFIC_SECRET CLIENT_TRAFFIC_SECRET_0 SERVER_TRAFFIC_SECRET_0)

# check_keylog FILE SECRET_HEXLEN PEERFILE -> sets KL_WHY
check_keylog() {
  local f=$1 hl=$2 peer=$3 l mine theirs bad
  [[ -s $f ]] || { KL_WHY="key log ${f##*/} missing or empty"; return 1; }
  bad=$(grep -vE '^(#.*|[A-Z_0-9]+ [0-9a-fA-F]{64} [0-9a-fA-F]+)?$' "$f" | head -n1)
  [[ -z $bad ]] || { KL_WHY="malformed key log line: ${bad:0:120}"; return 1; }
  for l in "${LABELS[@]}"; do
    mine=$(grep -E "^$l " "$f" | tr 'A-F' 'a-f' | sort -u)
    [[ -n $mine ]] || { KL_WHY="no $l line"; return 1; }
    if grep -E "^$l " "$f" | grep -qvE "^$l [0-9a-fA-F]{64} [0-9a-fA-F]{$hl}\$"; then
      KL_WHY="$l: wrong client_random/secret length (want 64/$hl hex digits): $(grep -m1 -E "^$l " "$f" | cut -c1-200)"; return 1
    fi
    theirs=$(grep -E "^$l " "$peer" 2>/dev/null | tr 'A-F' 'a-f' | sort -u)
    [[ $mine == "$theirs" ]] || { KL_WHY="$l differs from the peer's key log (ktlsx: ${mine:0:80}... peer: ${theirs:0:80}...)"; return 1; }
  done
  return 0
}

hexlen() { case $1 in *SHA384) echo 96 ;; *) echo 64 ;; esac; }

# ------------------------------------------------------------------ client ---
for spec in opt:TLS_AES_128_GCM_SHA256 env:TLS_AES_256_GCM_SHA384; do
  how=${spec%%:*} cipher=${spec#*:}
  (( QUICK )) && [[ $how == env ]] && continue
  case_begin "client/$how/$cipher" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  start_server srv --feed /dev/null "$CD/srv.out" "$(fsize "$MSG")" -- \
    openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 $(ossl_cert_args server-ecdsa) \
      -ciphersuites "$cipher" -keylogfile "$CD/peer.keylog" \
    || { fail "openssl s_server did not start"; continue; }
  args=("$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --ciphers "$cipher")
  if [[ $how == opt ]]; then args+=(--keylog "$CD/ktlsx.keylog"); else args=(env "SSLKEYLOGFILE=$CD/ktlsx.keylog" "${args[@]}"); fi
  run_fed cli "$MSG" "$CD/srv.out" "$(fsize "$MSG")" -- "${args[@]}"
  server_wait 5
  if ! ktlsx_sane cli; then fail "$WHY"; continue; fi
  (( RC == 0 )) || { fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err")"; continue; }
  check_summary "$CD/cli.err" cipher="$cipher" || { fail "$SUM_WHY"; continue; }
  check_keylog "$CD/ktlsx.keylog" "$(hexlen "$cipher")" "$CD/peer.keylog" || { fail "$KL_WHY" "$CD/ktlsx.keylog" "$CD/peer.keylog"; continue; }
  pass
done

# ------------------------------------------------------------------ server ---
for spec in opt:TLS_AES_256_GCM_SHA384 env:TLS_CHACHA20_POLY1305_SHA256; do
  how=${spec%%:*} cipher=${spec#*:}
  (( QUICK )) && [[ $how == env ]] && continue
  case_begin "server/$how/$cipher" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  args=("$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" --ciphers "$cipher" --echo --once)
  if [[ $how == opt ]]; then args+=(--keylog "$CD/ktlsx.keylog"); else args=(env "SSLKEYLOGFILE=$CD/ktlsx.keylog" "${args[@]}"); fi
  start_server srv -- "${args[@]}" || { fail "ktlsx server did not start"; continue; }
  run_fed cli "$MSG" "$CD/cli.out" "$(fsize "$MSG")" -- \
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
      -CAfile "$CERTS/ca.pem" -verify_return_error -ciphersuites "$cipher" -keylogfile "$CD/peer.keylog"
  if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
  (( RC == 0 )) || { fail "s_client exit $RC: $(grep -m1 -iE 'error|alert' "$CD/cli.err")"; continue; }
  check_summary "$CD/srv.err" cipher="$cipher" || { fail "$SUM_WHY"; continue; }
  same_data "$MSG" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
  check_keylog "$CD/ktlsx.keylog" "$(hexlen "$cipher")" "$CD/peer.keylog" || { fail "$KL_WHY" "$CD/ktlsx.keylog" "$CD/peer.keylog"; continue; }
  pass
done

finish
