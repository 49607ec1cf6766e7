#!/usr/bin/env bash
# openssl s_client, gnutls-cli and curl against `ktlsx server` (TLS 1.3).
# Matrix: 3 ciphers x {x25519, P-256} x {RSA, ECDSA, Ed25519 server cert} per peer.
#  - openssl s_client / gnutls-cli: ktlsx server --echo, 1 MiB random binary
#    echoed back and compared by sha256; the peer's view of the cipher and group
#    and the server's summary line are checked.
#  - curl (OpenSSL backend): --tlsv1.3 --tls13-ciphers --curves, ktlsx server
#    --reply TEXT, body must be TEXT.
# Plus: one server with RSA+ECDSA+Ed25519 certificates, the certificate chosen
# by the client's signature algorithms; a --trace case; TLS_AES_128_CCM_SHA256
# (not in the default lists) with s_client, x25519 and P-256; a P-521 certificate
# with secp521r1 and an Ed448 certificate with x448.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
DATA=$(make_data echo)

start_ktlsx() { # start_ktlsx CERT CIPHER GROUP EXTRA...
  local cert=$1 cipher=$2 group=$3; shift 3
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" \
    --cert "$(crt "server-$cert")" --key "$(key "server-$cert")" \
    --tls-version 1.3 --ciphers "$cipher" --groups "$group" "$@"
}

server_summary_ok() { # the ktlsx server's own summary line
  check_summary "$CD/srv.err" version=TLSv1.3 cipher="$1" group="$(group_re "$2")"
}

# ---------------------------------------------------------- openssl s_client ---
i=0
for cert in "${CERT_TYPES[@]}"; do
  for cipher in "${CIPHERS[@]}"; do
    for group in "${GROUPS_[@]}"; do
      n=$((i++)); quick_keep $n || continue
      case_begin "openssl/$cert/$cipher/$group" || continue
      need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
      start_ktlsx "$cert" "$cipher" "$group" --echo --once || { fail "ktlsx server did not start"; continue; }
      run_fed cli "$DATA" "$CD/cli.out" "$DATA_SIZE" -- \
        openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
          -CAfile "$CERTS/ca.pem" -verify_return_error -verify_hostname localhost \
          -tls1_3 -ciphersuites "$cipher" -groups "$(openssl_group "$group")"
      if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
      if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"; continue; fi
      if ! grep -q "^Ciphersuite: $cipher\$" "$CD/cli.err"; then
        fail "s_client did not negotiate $cipher (rc $RC): $(grep -m1 -E 'Ciphersuite|error' "$CD/cli.err")"; continue; fi
      if ! grep -qE "^Server Temp Key: $(openssl_tempkey_re "$group")" "$CD/cli.err"; then
        fail "s_client: key exchange is not $group: $(grep -m1 'Temp Key' "$CD/cli.err")"; continue; fi
      server_summary_ok "$cipher" "$group" || { fail "$SUM_WHY"; continue; }
      same_data "$DATA" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
      pass
    done
  done
done

# ---------------------------------------------------------------- gnutls-cli ---
i=0
for cert in "${CERT_TYPES[@]}"; do
  for cipher in "${CIPHERS[@]}"; do
    for group in "${GROUPS_[@]}"; do
      n=$((i++)); quick_keep $n || continue
      case_begin "gnutls/$cert/$cipher/$group" || continue
      need_ktlsx && need_tool gnutls-cli || { skip "$SKIP_WHY"; continue; }
      start_ktlsx "$cert" "$cipher" "$group" --echo --once || { fail "ktlsx server did not start"; continue; }
      run_fed cli "$DATA" "$CD/cli.out" "$DATA_SIZE" -- \
        gnutls-cli --logfile "$CD/gnutls.log" --x509cafile "$CERTS/ca.pem" -p "$PORT" 127.0.0.1 \
          --sni-hostname localhost --verify-hostname localhost --priority "$(gnutls_prio "$cipher" "$group")"
      if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
      if rc_crashed "$RC"; then fail "gnutls-cli $(describe_rc "$RC")"; continue; fi
      desc=$(grep -m1 'Description:' "$CD/gnutls.log")
      want="(TLS1.3-X.509)-($(gnutls_kx_desc "$group"))-"
      if [[ $desc != *"$want"* || $desc != *"($(gnutls_cipher "$cipher"))"* ]]; then
        fail "gnutls-cli negotiated '${desc:-nothing}' (rc $RC), wanted $want...($(gnutls_cipher "$cipher"))"; continue; fi
      server_summary_ok "$cipher" "$group" || { fail "$SUM_WHY"; continue; }
      same_data "$DATA" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
      pass
    done
  done
done

# ---------------------------------------------------------------------- curl ---
REPLY="hello from ktlsx $$"
i=0
for cert in "${CERT_TYPES[@]}"; do
  for cipher in "${CIPHERS[@]}"; do
    for group in "${GROUPS_[@]}"; do
      n=$((i++)); quick_keep $n || continue
      case_begin "curl/$cert/$cipher/$group" || continue
      need_ktlsx && need_tool curl || { skip "$SKIP_WHY"; continue; }
      start_ktlsx "$cert" "$cipher" "$group" --reply "$REPLY" --once || { fail "ktlsx server did not start"; continue; }
      run_cmd cli /dev/null curl -sS -v --max-time "$TMO" --cacert "$CERTS/ca.pem" \
        --resolve "localhost:$PORT:127.0.0.1" --tlsv1.3 --tls-max 1.3 --tls13-ciphers "$cipher" \
        --curves "$(openssl_group "$group")" -o "$CD/body.txt" -w '%{http_code}' "https://localhost:$PORT/"
      if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
      if (( RC != 0 )); then fail "curl exit $RC: $(grep -m1 '^curl:' "$CD/cli.err")"; continue; fi
      if ! grep -q "SSL connection using TLSv1.3 / $cipher" "$CD/cli.err"; then
        fail "curl: $(grep -m1 'SSL connection using' "$CD/cli.err" || echo 'no SSL connection line')"; continue; fi
      code=$(cat "$CD/cli.out")
      [[ $code == 200 ]] || { fail "HTTP status '$code', wanted 200"; continue; }
      body=$(cat "$CD/body.txt")   # $(...) drops one trailing newline, if any
      [[ $body == "$REPLY" ]] || { fail "body '$(head -c 80 "$CD/body.txt")', wanted '$REPLY'"; continue; }
      server_summary_ok "$cipher" "$group" || { fail "$SUM_WHY"; continue; }
      pass
    done
  done
done

# ------------------------------------- several certificates, chosen by sigalgs ---
for pair in rsa_pss_rsae_sha256:RSA-PSS:rsa ecdsa_secp256r1_sha256:ECDSA:ecdsa ed25519:ed25519:ed25519; do
  IFS=: read -r sigalg sigtype cert <<<"$pair"
  (( QUICK )) && [[ $cert != ed25519 ]] && continue
  case_begin "multicert/$sigalg" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --once --echo \
      --cert "$(crt server-rsa)" --key "$(key server-rsa)" \
      --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)" \
      --cert "$(crt server-ed25519)" --key "$(key server-ed25519)" \
    || { fail "ktlsx server did not start"; continue; }
  echo "multicert $sigalg" >"$CD/in.txt"
  run_fed cli "$CD/in.txt" "$CD/cli.out" "$(fsize "$CD/in.txt")" -- \
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
      -CAfile "$CERTS/ca.pem" -verify_return_error -sigalgs "$sigalg"
  if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
  if (( RC != 0 )); then fail "s_client exit $RC: $(grep -m1 -iE 'error|alert' "$CD/cli.err")"; continue; fi
  got=$(grep -m1 '^Signature type:' "$CD/cli.err")
  [[ $got == "Signature type: $sigtype" ]] || { fail "server signed with '${got#Signature type: }', wanted $sigtype ($cert certificate)"; continue; }
  same_data "$CD/in.txt" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
  pass
done

# ------------------------- secp521r1 / x448 and P-521 / Ed448 certificates (conf-b) ---
# name cert ktlsx-group openssl-group openssl-sigalg "Server Temp Key" "Peer signature type"
for spec in "p521 P-521 P-521 ecdsa_secp521r1_sha512 ECDH,.secp521r1 ECDSA" \
            "ed448 x448 X448 ed448 X448 ed448"; do
  read -r cert group ogroup sigalg tempkey sigtype <<<"$spec"
  case_begin "openssl/$cert/$group" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt "server-$cert")" \
    --key "$(key "server-$cert")" --tls-version 1.3 --groups "$group" --echo --once \
    || { fail "ktlsx server did not start"; continue; }
  echo "$cert $group" >"$CD/in.txt"
  run_fed cli "$CD/in.txt" "$CD/cli.out" "$(fsize "$CD/in.txt")" -- \
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
      -CAfile "$CERTS/ca.pem" -verify_return_error -verify_hostname localhost -tls1_3 -groups "$ogroup" -sigalgs "$sigalg"
  if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
  if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"; continue; fi
  if ! grep -qE "^(Server|Peer) Temp Key: ${tempkey//./ }" "$CD/cli.err"; then
    fail "s_client: key exchange is not $group: $(grep -m1 'Temp Key' "$CD/cli.err" || tail -n1 "$CD/cli.err")"; continue; fi
  if ! grep -qiE "^(Peer )?signature type: $sigtype" "$CD/cli.err"; then
    fail "s_client: signature is not $sigtype: $(grep -m1 -i 'signature type' "$CD/cli.err")"; continue; fi
  same_data "$CD/in.txt" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
  pass
done

# ------------------------------------------- TLS_AES_128_CCM_SHA256 (conf-b) ---
# Off by default on both sides; selected by name it interoperates.
for group in x25519 P-256; do
  cipher=TLS_AES_128_CCM_SHA256
  case_begin "openssl/ecdsa/$cipher/$group" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  start_ktlsx ecdsa "$cipher" "$group" --echo --once || { fail "ktlsx server did not start"; continue; }
  run_fed cli "$DATA" "$CD/cli.out" "$DATA_SIZE" -- \
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
      -CAfile "$CERTS/ca.pem" -verify_return_error -verify_hostname localhost \
      -tls1_3 -ciphersuites "$cipher" -groups "$(openssl_group "$group")"
  if ! ktlsx_server_sane srv; then fail "$WHY"; continue; fi
  if rc_crashed "$RC"; then fail "openssl s_client $(describe_rc "$RC")"; continue; fi
  if ! grep -q "^Ciphersuite: $cipher\$" "$CD/cli.err"; then
    fail "s_client did not negotiate $cipher (rc $RC): $(grep -m1 -E 'Ciphersuite|error' "$CD/cli.err")"; continue; fi
  server_summary_ok "$cipher" "$group" || { fail "$SUM_WHY"; continue; }
  same_data "$DATA" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
  pass
done

# --------------------------------------------------------------------- trace ---
if case_begin trace; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --once --echo --trace \
         --cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)"; then
      echo trace >"$CD/in.txt"
      run_fed cli "$CD/in.txt" "$CD/cli.out" 6 -- \
        openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -brief -nocommands -no_ign_eof \
          -CAfile "$CERTS/ca.pem" -verify_return_error
      if ! ktlsx_server_sane srv; then fail "$WHY"
      elif (( RC != 0 )); then fail "s_client exit $RC"
      elif ! check_trace "$CD/srv.err" 'C->S ClientHello sni=localhost' 'S->C ServerHello' 'S->C EncryptedExtensions' \
             'S->C Certificate depth=2' 'S->C CertificateVerify sigalg=' 'S->C Finished' 'C->S Finished'; then
        fail "$TRACE_WHY"
      elif ! same_data "$CD/in.txt" "$CD/cli.out"; then fail "echo: $DATA_WHY"
      else pass; fi
    else fail "ktlsx server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

finish
