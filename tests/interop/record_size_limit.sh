#!/usr/bin/env bash
# record_size_limit (RFC 8449; issue 9) against GnuTLS, TLS 1.3 and TLS 1.2,
# ktlsx as client and as server, each side's limit in turn:
#  - peer-limit: the GnuTLS peer advertises 512 (--recordsize 512); ktlsx sends
#    256 KiB of text through an echo and every application-data record GnuTLS
#    decrypted (its -d 5 log, "Decrypted Packet ... Application Data(23) with
#    length: N") must be <= 512 content bytes, with at least 256 KiB / 512
#    records; the summary line must show record_size_limit=512/16384.
#    (ktlsx as server: gnutls-cli --recordsize loses data it sends through
#    partial record writes, so ktlsx --sendfile sends the text instead.)
#  - own-limit: ktlsx advertises 1000 (--record-size-limit 1000); the echo comes
#    back intact (ktlsx refuses any larger record with record_overflow) and the
#    summary shows record_size_limit=16384/999 (TLS 1.3: the limit counts the
#    content type byte) or 16384/1000 (TLS 1.2).  GnuTLS ignores (server) or
#    refuses with illegal_parameter (client) any limit below 512.
#  - tls1.2/offer13: gnutls-cli offering TLS 1.3 and 1.2 with --recordsize 512
#    sends 513 and holds TLS 1.2 records to 512: ktlsx sends at most 512.
# Plus: --record-size-limit 63 is refused with a message naming the range.
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
TXT=$(make_text rsl $((256 * 1024)))
SIZE=$(fsize "$TXT")
SMALL=$(make_text rsl-small $((24 * 1024)))
SMALL_SIZE=$(fsize "$SMALL")

# slow_feed FILE WAITFILE SIZE: FILE one 77-byte line at a time, 5 ms apart, then
# hold stdin open until WAITFILE has SIZE bytes.  gnutls-cli sends what one
# read(2) of stdin returns with a single gnutls_record_send and drops what that
# does not take (more than the peer's record limit), so its input must come in
# pieces well under the limit.
slow_feed() {
  python3 -c 'import sys, time
for line in open(sys.argv[1], "rb"):
    sys.stdout.buffer.write(line); sys.stdout.buffer.flush(); time.sleep(0.005)' "$1"
  wait_sizes "$2" "$3"
}

prio() { # prio VERSION
  echo "NORMAL:-VERS-ALL:+VERS-TLS$1"
}

# largest_decrypted LOG: the largest application-data plaintext GnuTLS decrypted,
# and how many records; "MAX COUNT"
largest_decrypted() {
  awk '/Decrypted Packet\[[0-9]+\] Application Data\(23\) with length:/ {
         n = $NF + 0; c++; if (n > m) m = n }
       END { print m + 0, c + 0 }' "$1"
}

# check_peer_saw LOG LIMIT MINRECORDS: sets WHY
check_peer_saw() {
  local max count
  read -r max count < <(largest_decrypted "$1")
  if (( count < $3 )); then WHY="GnuTLS decrypted only $count application records (wanted >= $3)"; return 1; fi
  if (( max > $2 )); then WHY="GnuTLS decrypted a $max-byte record, over the limit of $2"; return 1; fi
  return 0
}

for v in 1.3 1.2; do
  own=$([[ $v == 1.3 ]] && echo 999 || echo 1000)

  # ------------------------------------------------ ktlsx client, GnuTLS's limit ---
  if case_begin "client/tls$v/peer-limit"; then
    if need_ktlsx && need_tool gnutls-serv; then
      if start_server srv -- gnutls-serv --echo -q -d 5 -p "{PORT}" --recordsize 512 \
           --x509certfile "$(crt server-rsa)" --x509keyfile "$(key server-rsa)" --priority "$(prio "$v")"; then
        run_fed cli "$TXT" "$CD/cli.out" "$SIZE" -- "$KTLSX" client "127.0.0.1:$PORT" --sni localhost \
          --ca "$CERTS/ca.pem" --tls-version "$v" --record-size-limit 16385
        if ! ktlsx_sane cli; then fail "$WHY"
        elif (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"
        elif ! check_summary "$CD/cli.err" version="TLSv$v" record_size_limit=512/16384; then fail "$SUM_WHY"
        elif ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
        elif ! check_peer_saw "$CD/srv.err" 512 $((SIZE / 512)); then fail "$WHY"
        else pass; fi
      else fail "gnutls-serv did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi

  # -------------------------------------------------- ktlsx client, its own limit ---
  if case_begin "client/tls$v/own-limit"; then
    if need_ktlsx && need_tool gnutls-serv; then
      if start_server srv -- gnutls-serv --echo -q -p "{PORT}" \
           --x509certfile "$(crt server-rsa)" --x509keyfile "$(key server-rsa)" --priority "$(prio "$v")"; then
        run_fed cli "$TXT" "$CD/cli.out" "$SIZE" -- "$KTLSX" client "127.0.0.1:$PORT" --sni localhost \
          --ca "$CERTS/ca.pem" --tls-version "$v" --record-size-limit 1000
        if ! ktlsx_sane cli; then fail "$WHY"
        elif (( RC != 0 )); then fail "ktlsx client exit $RC: $(failure_line "$CD/cli.err" || tail -n1 "$CD/cli.err")"
        elif ! check_summary "$CD/cli.err" version="TLSv$v" record_size_limit="16384/$own"; then fail "$SUM_WHY"
        elif ! same_data "$TXT" "$CD/cli.out"; then fail "echo: $DATA_WHY"
        else pass; fi
      else fail "gnutls-serv did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi

  # ------------------------------------------------ ktlsx server, GnuTLS's limit ---
  for offer in only offer13; do
    [[ $v == 1.3 && $offer == offer13 ]] && continue
    cprio=$(prio "$v"); [[ $offer == offer13 ]] && cprio="NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
    name="server/tls$v/peer-limit"; [[ $offer == offer13 ]] && name="server/tls$v/offer13-peer-limit"
    if case_begin "$name"; then
      if need_ktlsx && need_tool gnutls-cli; then
        if start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --once --sendfile "$TXT" \
             --cert "$(crt server-rsa)" --key "$(key server-rsa)" --tls-version "$v"; then
          run_fed cli /dev/null "$CD/cli.out" "$SIZE" -- gnutls-cli -d 5 --logfile "$CD/gnutls.log" \
            --x509cafile "$CERTS/ca.pem" -p "$PORT" 127.0.0.1 --sni-hostname localhost --verify-hostname localhost \
            --priority "$cprio" --recordsize 512
          if ! ktlsx_server_sane srv; then fail "$WHY"
          elif rc_crashed "$RC"; then fail "gnutls-cli $(describe_rc "$RC")"
          elif ! check_summary "$CD/srv.err" version="TLSv$v" record_size_limit=512/16384; then fail "$SUM_WHY"
          elif ! same_data "$TXT" "$CD/cli.out"; then fail "sendfile: $DATA_WHY"
          elif ! check_peer_saw "$CD/cli.err" 512 $((SIZE / 512)); then fail "$WHY"
          else pass; fi
        else fail "ktlsx server did not start"; fi
      else skip "$SKIP_WHY"; fi
    fi
  done

  # -------------------------------------------------- ktlsx server, its own limit ---
  if case_begin "server/tls$v/own-limit"; then
    if need_ktlsx && need_tool gnutls-cli python3; then
      if start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --once --echo --record-size-limit 1000 \
           --cert "$(crt server-rsa)" --key "$(key server-rsa)" --tls-version "$v"; then
        slow_feed "$SMALL" "$CD/cli.out" "$SMALL_SIZE" | run_cmd cli - gnutls-cli --logfile "$CD/gnutls.log" \
          --x509cafile "$CERTS/ca.pem" -p "$PORT" 127.0.0.1 --sni-hostname localhost --verify-hostname localhost \
          --priority "$(prio "$v")"
        if ! ktlsx_server_sane srv; then fail "$WHY"
        elif rc_crashed "$RC"; then fail "gnutls-cli $(describe_rc "$RC")"
        elif ! check_summary "$CD/srv.err" version="TLSv$v" record_size_limit="16384/$own"; then fail "$SUM_WHY"
        elif ! same_data "$SMALL" "$CD/cli.out"; then fail "echo: $DATA_WHY"
        else pass; fi
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
done
# gnutls-serv -d 5 logs every record: keep only the tail
for f in "$WORK"/*/srv.err "$WORK"/*/cli.err; do
  [[ -f $f ]] && (( $(fsize "$f") > 1000000 )) && { tail -n 400 "$f" >"$f.tmp"; mv "$f.tmp" "$f"; }
done

# ------------------------------------------------------------------ bad value ---
if case_begin cli/bad-value; then
  if need_ktlsx; then
    run_cmd cli /dev/null "$KTLSX" client 127.0.0.1:1 --ca "$CERTS/ca.pem" --record-size-limit 63
    if (( RC == 0 )) || rc_crashed "$RC"; then fail "--record-size-limit 63: $(describe_rc "$RC"), wanted a refusal"
    elif ! grep -q '64\.\.16385' "$CD/cli.err"; then fail "no message naming 64..16385: $(tail -n1 "$CD/cli.err")"
    else pass; fi
  else skip "$SKIP_WHY"; fi
fi

finish
