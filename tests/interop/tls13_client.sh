#!/usr/bin/env bash
# ktlsx client (TLS 1.3) against openssl s_server and gnutls-serv.
# Matrix: 3 ciphers x {x25519, P-256} x {RSA, ECDSA, Ed25519 server cert} per peer.
#  - openssl s_server: both directions in one connection, 1 MiB random each way,
#    compared by sha256 (s_server writes what it got to stdout and sends its stdin).
#  - gnutls-serv --echo: 1 MiB of random base64 text echoed back (gnutls-serv's
#    echo mode is not binary-safe).
# The summary line must show TLSv1.3 and the expected cipher and group.
# Plus: a --trace case checking the message sequence, and an ALPN case;
# TLS_AES_128_CCM_SHA256 (not in the default lists) with s_server, x25519 and P-256;
# s_server with a P-521 certificate and secp521r1, an Ed448 certificate and x448.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
C2S=$(make_data c2s)
S2C=$(make_data s2c)
TXT=$(make_text echo)

ktlsx_client() { # ktlsx_client CIPHER GROUP EXTRA... -> client args
  echo client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --tls-version 1.3 --ciphers "$1" --groups "$2"
}

# ---------------------------------------------------------------- openssl ---
i=0
for cert in "${CERT_TYPES[@]}"; do
  for cipher in "${CIPHERS[@]}"; do
    for group in "${GROUPS_[@]}"; do
      n=$((i++)); quick_keep $n || continue
      case_begin "openssl/$cert/$cipher/$group" || continue
      need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
      start_server srv --feed "$S2C" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
        openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 \
          $(ossl_cert_args "server-$cert") -ciphersuites "$cipher" -groups "$(openssl_group "$group")" \
        || { fail "openssl s_server did not start"; continue; }
      run_fed cli "$C2S" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
        "$KTLSX" $(ktlsx_client "$cipher" "$group")
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"; continue; fi
      if (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"; continue; fi
      check_summary "$CD/cli.err" version=TLSv1.3 cipher="$cipher" group="$(group_re "$group")" \
        || { fail "$SUM_WHY"; continue; }
      same_data "$C2S" "$CD/srv.out" || { fail "client->server: $DATA_WHY"; continue; }
      same_data "$S2C" "$CD/cli.out" || { fail "server->client: $DATA_WHY"; continue; }
      pass
    done
  done
done

# ----------------------------------------------------------------- gnutls ---
i=0
for cert in "${CERT_TYPES[@]}"; do
  for cipher in "${CIPHERS[@]}"; do
    for group in "${GROUPS_[@]}"; do
      n=$((i++)); quick_keep $n || continue
      case_begin "gnutls/$cert/$cipher/$group" || continue
      need_ktlsx && need_tool gnutls-serv || { skip "$SKIP_WHY"; continue; }
      start_server srv -- gnutls-serv --echo -q -p "{PORT}" \
          --x509certfile "$(crt "server-$cert")" --x509keyfile "$(key "server-$cert")" \
          --priority "$(gnutls_prio "$cipher" "$group")" \
        || { fail "gnutls-serv did not start"; continue; }
      size=$(fsize "$TXT")
      run_fed cli "$TXT" "$CD/cli.out" "$size" -- "$KTLSX" $(ktlsx_client "$cipher" "$group")
      if ! ktlsx_sane cli; then fail "$WHY"; continue; fi
      if (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"; continue; fi
      check_summary "$CD/cli.err" version=TLSv1.3 cipher="$cipher" group="$(group_re "$group")" \
        || { fail "$SUM_WHY"; continue; }
      same_data "$TXT" "$CD/cli.out" || { fail "echo: $DATA_WHY"; continue; }
      pass
    done
  done
done
# gnutls-serv's echo mode logs every record to stderr: keep only the tail
for f in "$WORK"/gnutls_*/srv.err; do [[ -f $f ]] && { tail -n 200 "$f" >"$f.tmp"; mv "$f.tmp" "$f"; }; done

# ------------------------------------------------------------------ trace ---
if case_begin trace; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 \
         $(ossl_cert_args server-ecdsa) -sigalgs ecdsa_secp256r1_sha256; then
      echo hello >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --trace
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC"
      elif ! check_trace "$CD/cli.err" 'C->S ClientHello' 'S->C ServerHello' 'S->C EncryptedExtensions' \
             'S->C Certificate depth=2' 'S->C CertificateVerify sigalg=ecdsa_secp256r1_sha256' 'S->C Finished' 'C->S Finished'; then
        fail "$TRACE_WHY"
      elif ! grep -q hello "$CD/srv.out"; then fail "s_server did not receive the data"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------------------------------------------------- alpn ---
if (( ! QUICK )) && case_begin alpn; then
  if need_ktlsx && need_tool openssl; then
    if start_server srv -- openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 \
         $(ossl_cert_args server-ecdsa) -alpn http/1.1; then
      echo hello >"$CD/in.txt"
      run_cmd cli "$CD/in.txt" "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --alpn h2,http/1.1
      server_wait 5
      if ! ktlsx_sane cli; then fail "$WHY"
      elif (( RC != 0 )); then fail "ktlsx client exit $RC"
      elif ! check_summary "$CD/cli.err" alpn=http/1.1 'peer="[^"]*localhost[^"]*"'; then fail "$SUM_WHY"
      else pass; fi
    else fail "openssl s_server did not start"; fi
  else skip "$SKIP_WHY"; fi
fi

# ------------------------- secp521r1 / x448 and P-521 / Ed448 certificates (conf-b) ---
for spec in "p521 P-521 P-521 secp521r1" "ed448 x448 X448 x448"; do
  read -r cert group ogroup gname <<<"$spec"
  case_begin "openssl/$cert/$group" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  start_server srv --feed "$S2C" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
    openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 \
      $(ossl_cert_args "server-$cert") -groups "$ogroup" \
    || { fail "openssl s_server did not start"; continue; }
  run_fed cli "$C2S" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
    "$KTLSX" client "127.0.0.1:$PORT" --sni localhost --ca "$CERTS/ca.pem" --tls-version 1.3 --groups "$group"
  server_wait 5
  if ! ktlsx_sane cli; then fail "$WHY"; continue; fi
  if (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"; continue; fi
  check_summary "$CD/cli.err" version=TLSv1.3 group="$gname" || { fail "$SUM_WHY"; continue; }
  same_data "$C2S" "$CD/srv.out" || { fail "client->server: $DATA_WHY"; continue; }
  same_data "$S2C" "$CD/cli.out" || { fail "server->client: $DATA_WHY"; continue; }
  pass
done

# ------------------------------------------- TLS_AES_128_CCM_SHA256 (conf-b) ---
# Off by default on both sides; selected by name it interoperates.
for group in x25519 P-256; do
  cipher=TLS_AES_128_CCM_SHA256
  case_begin "openssl/ecdsa/$cipher/$group" || continue
  need_ktlsx && need_tool openssl || { skip "$SKIP_WHY"; continue; }
  start_server srv --feed "$S2C" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
    openssl s_server -accept "127.0.0.1:{PORT}" -naccept 1 -brief -tls1_3 \
      $(ossl_cert_args server-ecdsa) -ciphersuites "$cipher" -groups "$(openssl_group "$group")" \
    || { fail "openssl s_server did not start"; continue; }
  run_fed cli "$C2S" "$CD/srv.out" "$DATA_SIZE" "$CD/cli.out" "$DATA_SIZE" -- \
    "$KTLSX" $(ktlsx_client "$cipher" "$group")
  server_wait 5
  if ! ktlsx_sane cli; then fail "$WHY"; continue; fi
  if (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"; continue; fi
  check_summary "$CD/cli.err" version=TLSv1.3 cipher="$cipher" group="$(group_re "$group")" \
    || { fail "$SUM_WHY"; continue; }
  same_data "$C2S" "$CD/srv.out" || { fail "client->server: $DATA_WHY"; continue; }
  same_data "$S2C" "$CD/cli.out" || { fail "server->client: $DATA_WHY"; continue; }
  pass
done

finish
