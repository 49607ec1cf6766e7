#!/usr/bin/env bash
# The ktlsx client verifies the name it means to reach (RFC 6125 §6; issue 13):
# `ktlsx server` with the test certificate (DNS:localhost, IP:127.0.0.1), and
#  - HOST 127.0.0.1 --sni other-name: refused (the certificate does not name
#    other-name), although it lists the address connected to
#  - HOST 127.0.0.1 --sni localhost: verified against localhost
#  - HOST 127.0.0.1 --sni other-name --verify-name localhost: accepted
#  - HOST localhost --verify-name 127.0.0.1: the IP address verified
source "$(dirname "$0")/../lib.sh"
gen_certs || exit 1
CA=$CERTS/ca.pem

# one_case NAME EXPECT(ok|fail) CLIENT-ARGS...
one_case() {
  local name=$1 expect=$2; shift 2
  if case_begin "verify-name/$name"; then
    if need_ktlsx; then
      if start_server srv -- "$KTLSX" server --listen "127.0.0.1:{PORT}" --cert "$(crt server-rsa)" \
           --key "$(key server-rsa)" --reply "hello" --once; then
        local args=()
        for a in "$@"; do args+=("${a//\{PORT\}/$PORT}"); done
        run_cmd cli /dev/null "$KTLSX" client "${args[@]}" --ca "$CA"
        if ! ktlsx_sane cli; then fail "$WHY"
        elif [[ $expect == ok ]] && ! summary_line "$CD/cli.err" >/dev/null; then
          fail "expected the handshake to succeed: $(failure_line "$CD/cli.err")"
        elif [[ $expect == fail ]] && summary_line "$CD/cli.err" >/dev/null; then
          fail "expected a verification failure, got: $(summary_line "$CD/cli.err")"
        elif [[ $expect == fail ]] && ! grep -qaiE 'handshake failed.*(host|name|bad_certificate)' "$CD/cli.err"; then
          fail "the failure does not say the name did not match: $(failure_line "$CD/cli.err")"
        elif ! ktlsx_server_sane; then fail "$WHY"
        else pass; fi
      else fail "ktlsx server did not start"; fi
    else skip "$SKIP_WHY"; fi
  fi
}

one_case sni-other-name-refused fail "127.0.0.1:{PORT}" --sni other-name
one_case sni-localhost-verified ok "127.0.0.1:{PORT}" --sni localhost
one_case verify-name-overrides-sni ok "127.0.0.1:{PORT}" --sni other-name --verify-name localhost
one_case verify-name-ip ok "localhost:{PORT}" --verify-name 127.0.0.1
one_case verify-name-other-refused fail "localhost:{PORT}" --verify-name other-name

finish
