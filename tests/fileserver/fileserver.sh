#!/usr/bin/env bash
# tests/fileserver/fileserver.sh — ktlsx-fileserver (issue 11) on the host (no kernel TLS here: the
# library's user-space records carry the bodies; the same code path calls sendfile(2) with kTLS).
#
#  options/*     bad options: a clear message and exit 2 (missing --root, bad numbers, bad --body, no such root,
#                bad --listen, --verify-client without --ca, an unknown option)
#  get/*         curl, wget, openssl s_client and python3 urllib fetch files byte-exact over TLS 1.3
#                and TLS 1.2 (a 16 MiB random file, a 1 MiB one, index.html); ALPN http/1.1
#  range/*       bytes=a-b, a-, -n (206 + Content-Range, bytes exact), unsatisfiable (416 with
#                Content-Range: bytes */size), several ranges (200, whole file), If-Range
#  cond/*        If-None-Match with the ETag -> 304, another ETag -> 200; If-Modified-Since with
#                Last-Modified -> 304, an old date -> 200
#  head          HEAD: the GET's headers, no body (a GET pipelined after it parses right)
#  pipeline      3 requests in one write: 3 responses in order, bodies exact, the connection kept
#  status/*      every error status: 400 403 404 405 (Allow) 408 413 416 505, and 301 for a directory
#  traversal/*   "..", %2e%2e, %2f, %00, %5c, absolute-form URLs, symlinks out of the root, over-long
#                lines: never the planted secret outside the root; the --no-openat2 walk as well
#  abort-mid-download  5 clients leave in the middle of a 16 MiB body: the server keeps serving
#  truncated-while-sent  a file truncated during its response: that response ends (connection closed),
#                the server keeps serving
#  slowloris     headers one byte per second: 408 / cut at --header-timeout while curl is served
#  idle          10,000 idle keep-alive connections (FS_IDLE_CONNS) held while a new client is served;
#                server memory per connection measured (VmRSS) and bounded
#  workers       --workers 2 serves; access-log lines in the common log format
#  limits/*      a silent TCP client cut at --handshake-timeout, an idle keep-alive connection closed at
#                --keepalive-timeout, --max-conns 5: a 6th connection refused, served again below it
#  list-dirs     --list-dirs: a sorted listing, names HTML-escaped and hrefs percent-encoded
#  verify-client --ca + --verify-client: no certificate refused, the test client certificate served
#  sane/*        SIGTERM: exit 0, no sanitizer report
#  options/daemon-*, options/profile-no-daemon  --daemon with --cert, without --profile; --profile alone
#  daemon/*      --daemon SOCKET --profile web against a ktlsxd started here (export_state = yes, the
#                key only in ktlsxd): curl byte-exact over TLS 1.3 and 1.2 (16 MiB, ALPN http/1.1),
#                keep-alive; 5 silent TCP clients whose handshakes wait in ktlsxd while curl is served
#                within 3 s (their deadline is 4 s: a blocking door call would hold curl); ktlsxd
#                stopped: the connection closed with a log line, the server alive, then served again
#                once ktlsxd is back; a fake door that accepts and never answers: 4 connections all
#                cut at their own 2.5 s deadline together, the server alive; SIGTERM clean
# Environment (besides tests/lib.sh's): FS_BIN (default build/bin/ktlsx-fileserver), KTLSXD_BIN
# (default: the ktlsxd next to FS_BIN).
SRV_TMO=${SRV_TMO:-900} # one server carries most cases
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
ONLY= # the cases share one server and build on one another: all of them run

FS=${FS_BIN:-$ROOT/build/bin/ktlsx-fileserver}
PY=$ROOT/tests/fileserver/fsclient.py
IDLE_N=${FS_IDLE_CONNS:-10000}
HDR_TMO_S=3 # --header-timeout of the main server (slowloris)
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [[ ! -x $FS ]]; then
  case_begin build && skip "ktlsx-fileserver not built (${FS#$ROOT/})"
  finish
fi
for t in curl python3 openssl; do
  have "$t" || { case_begin build && skip "$t not installed"; finish; }
done
gen_certs || exit 1
CA=$CERTS/ca.pem
# A private copy of the binary (a relink meanwhile must not change it).
FS_DIR=$(dirname "$FS") # ktlsxd next to it: the same build (plain or ASan)
mkdir -p "$WORK/bin" && cp "$FS" "$WORK/bin/" && FS=$WORK/bin/$(basename "$FS")

# ---- the served tree: $WWW; the secret next to it, outside ----
TOP=$WORK/tree WWW=$WORK/tree/www
mkdir -p "$WWW/sub" "$WWW/noindex" "$WWW/dir with space"
echo "TOP-SECRET-$RANDOM$RANDOM" >"$TOP/secret.txt"; SECRET=$(cat "$TOP/secret.txt")
echo "<h1>ktlsx-fileserver test</h1>" >"$WWW/index.html"
echo "sub index" >"$WWW/sub/index.html"
echo "spaced" >"$WWW/dir with space/f.txt"
echo x >"$WWW/noindex/a<b&c.txt"; mkdir -p "$WWW/noindex/d"; echo y >"$WWW/noindex/z.txt"
head -c 16777216 /dev/urandom >"$WWW/big.bin"
head -c 1048576 /dev/urandom >"$WWW/mid.bin"
printf '0123456789abcdefghijklmnopqrstuvwxyz' >"$WWW/abc.txt"
: >"$WWW/empty.txt"
ln -s ../secret.txt "$WWW/escape"
ln -s "$TOP/secret.txt" "$WWW/escape-abs"
ln -s .. "$WWW/updir"
ln -s /etc "$WWW/etc"
ln -s abc.txt "$WWW/inside-link"
mkfifo "$WWW/fifo"
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$WWW/sock" 2>/dev/null
chmod 644 "$WWW"/*.bin

ALOG=$WORK/access.log
start_fs() { # start_fs NAME [extra options]: the server on {PORT}; sets URL
  local name=$1; shift
  start_server "$name" -- "$FS" --root "$WWW" --listen '127.0.0.1:{PORT}' --cert "$(crt server-ecdsa)" \
    --key "$(key server-ecdsa)" --access-log "$ALOG" "$@" || return 1
  URL=https://localhost:$PORT
}
CURL=(curl -sS --cacert "$CA" --max-time "$TMO")
curl_() { "${CURL[@]}" "$@"; }
# raw NAME [--tls12]: stdin -> one write on a TLS connection; answer in $CD/NAME.out
raw() { local n=$1; shift; timeout -k 2 "$TMO" python3 "$PY" raw "$PORT" "$CA" "$@" >"$CD/$n.out" 2>"$CD/$n.err"; }
parsed() { python3 "$PY" parse "$CD/$1.out" "${@:2}"; }
status_line() { head -c 4096 "$CD/$1.out" | head -n1 | tr -d '\r'; }
fs_sane() { # after a case: the server is alive and reported no sanitizer error
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then WHY="the server died"; return 1; fi
  if sanitizer_report "$CD/srv.err"; then WHY=$SAN_WHY; return 1; fi
  return 0
}

# ------------------------------------------------------------------ options ---
opt_case() { # opt_case NAME EXPECTED-REGEX ARGS...
  local name=$1 re=$2; shift 2
  case_begin "options/$name" || return 0
  run_cmd fs - "$FS" "$@"
  if (( RC != 2 )); then fail "exit $RC, expected 2"
  elif ! grep -qE -- "$re" "$CD/fs.err"; then fail "no message matching '$re'"
  else pass; fi
}
C=(--cert "$(crt server-ecdsa)" --key "$(key server-ecdsa)")
opt_case no-root '--root is required' --listen 127.0.0.1:1 "${C[@]}"
opt_case bad-workers "--workers: 'x' is not a number" --root "$WWW" --listen 127.0.0.1:1 "${C[@]}" --workers x
opt_case bad-max-header "--max-header: '10' is not a number in 1024..65536" --root "$WWW" --listen 127.0.0.1:1 "${C[@]}" --max-header 10
opt_case no-such-root "--root $WORK/nope: No such file or directory" --root "$WORK/nope" --listen 127.0.0.1:1 "${C[@]}"
opt_case bad-listen "--listen: 'nowhere' is not IPV4:PORT" --root "$WWW" --listen nowhere "${C[@]}"
opt_case verify-no-ca '--verify-client needs --ca' --root "$WWW" --listen 127.0.0.1:1 "${C[@]}" --verify-client
opt_case bad-cert 'nope.pem' --root "$WWW" --listen 127.0.0.1:1 --cert "$WORK/nope.pem" --key "$WORK/nope.key"
opt_case unknown-option 'usage:' --root "$WWW" --bogus
opt_case bad-body "--body mmap: want sendfile or splice" --root "$WWW" --listen 127.0.0.1:1 "${C[@]}" --body mmap

# ----------------------------------------------------------------- downloads ---
case_begin get/start
if ! start_fs srv --header-timeout $((HDR_TMO_S * 1000)) --keepalive-timeout 600000; then fail "server did not start: $(last_words "$CD/srv.err")"; finish; fi
SRV_CD=$CD
# The later cases use this one server: keep it out of the per-case cleanup.
MAIN_PID=$SERVER_PID; BG_PIDS=()
pass
CD_SRV_ERR=$SRV_CD/srv.err
main_sane() {
  if ! kill -0 "$MAIN_PID" 2>/dev/null; then WHY="the server died"; return 1; fi
  if sanitizer_report "$CD_SRV_ERR"; then WHY=$SAN_WHY; return 1; fi
  return 0
}
check_file() { # check_file EXPECTED OUT WHAT
  if [[ $RC != 0 ]]; then fail "$3 $(describe_rc "$RC")"; return; fi
  if ! same_data "$1" "$2"; then fail "$3: $DATA_WHY"; return; fi
  if ! main_sane; then fail "$WHY"; return; fi
  pass
}
for v in 1.3 1.2; do
  case_begin "get/curl-tls$v-16MiB"
  run_cmd curl - curl -sS --cacert "$CA" --max-time "$TMO" --tlsv"$v" --tls-max "$v" -o "$CD/big.data" "$URL/big.bin"
  check_file "$WWW/big.bin" "$CD/big.data" curl
  case_begin "get/curl-tls$v-index"
  run_cmd curl - curl -sS --cacert "$CA" --max-time "$TMO" --tlsv"$v" --tls-max "$v" -o "$CD/index.data" "$URL/"
  check_file "$WWW/index.html" "$CD/index.data" curl
  case_begin "get/wget-tls$v"
  if have wget; then
    run_cmd wget - wget -q --ca-certificate="$CA" --secure-protocol=TLSv${v/./_} -O "$CD/mid.data" "$URL/mid.bin"
    check_file "$WWW/mid.bin" "$CD/mid.data" wget
  else skip "wget not installed"; fi
  case_begin "get/openssl-tls$v"
  printf 'GET /mid.bin HTTP/1.0\r\n\r\n' >"$CD/req.txt"
  run_cmd ossl "$CD/req.txt" openssl s_client -quiet -connect "127.0.0.1:$PORT" -servername localhost \
    -CAfile "$CA" -verify_return_error -tls${v/./_}
  python3 -c "import sys; d=open(sys.argv[1],'rb').read(); i=d.find(b'\r\n\r\n'); open(sys.argv[2],'wb').write(d[i+4:] if i>=0 else b'')" \
    "$CD/ossl.out" "$CD/mid.data"
  check_file "$WWW/mid.bin" "$CD/mid.data" "openssl s_client"
  case_begin "get/python-urllib-tls$v"
  run_cmd py - python3 "$PY" urllib "$URL/big.bin" "$CA" $([[ $v == 1.2 ]] && echo --tls12) "$CD/big.data"
  check_file "$WWW/big.bin" "$CD/big.data" urllib
done
case_begin get/alpn
run_cmd ossl /dev/null openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CA" -alpn http/1.1
if grep -q 'ALPN protocol: http/1.1' "$CD/ossl.out"; then pass; else fail "no 'ALPN protocol: http/1.1' from s_client"; fi
case_begin get/space-in-name
run_cmd curl - "${CURL[@]}" -o "$CD/f.data" "$URL/dir%20with%20space/f.txt"
check_file "$WWW/dir with space/f.txt" "$CD/f.data" curl
case_begin get/empty-file
run_cmd curl - "${CURL[@]}" -o "$CD/e.data" -w '%{http_code} %{size_download}' "$URL/empty.txt"
if [[ $(cat "$CD/curl.out") == "200 0" ]]; then pass; else fail "got '$(cat "$CD/curl.out")', expected '200 0'"; fi
case_begin get/content-type
run_cmd curl - "${CURL[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{content_type}|' "$URL/index.html" "$URL/abc.txt" "$URL/big.bin"
exp='text/html; charset=utf-8|text/plain; charset=utf-8|application/octet-stream|'
if [[ $(cat "$CD/curl.out") == "$exp" ]]; then pass; else fail "types '$(cat "$CD/curl.out")', expected '$exp'"; fi

# --------------------------------------------------------------------- range ---
range_case() { # range_case NAME RANGE-ARG EXPECTED-CODE EXPECTED-BODY [EXPECTED-CONTENT-RANGE]
  case_begin "range/$1"
  run_cmd curl - "${CURL[@]}" -H "Range: $2" -D "$CD/h.txt" -o "$CD/b.data" -w '%{http_code}' "$URL/abc.txt"
  local code body cr
  code=$(cat "$CD/curl.out"); body=$(cat "$CD/b.data" 2>/dev/null)
  cr=$(grep -i '^content-range:' "$CD/h.txt" | tr -d '\r' | cut -d' ' -f2-)
  if [[ $code != "$3" ]]; then fail "status $code, expected $3"
  elif [[ $3 != 416 && $body != "$4" ]]; then fail "body '$body', expected '$4'"
  elif [[ -n ${5:-} && $cr != "$5" ]]; then fail "Content-Range '$cr', expected '$5'"
  elif [[ -z ${5:-} && -n $cr ]]; then fail "unexpected Content-Range '$cr'"
  else pass; fi
}
range_case first-ten 'bytes=0-9' 206 0123456789 'bytes 0-9/36'
range_case open 'bytes=30-' 206 uvwxyz 'bytes 30-35/36'
range_case suffix 'bytes=-3' 206 xyz 'bytes 33-35/36'
range_case past-end 'bytes=34-99' 206 yz 'bytes 34-35/36'
range_case unsatisfiable 'bytes=36-40' 416 '' 'bytes */36'
range_case multiple 'bytes=0-1,4-5' 200 0123456789abcdefghijklmnopqrstuvwxyz
range_case other-unit 'items=0-1' 200 0123456789abcdefghijklmnopqrstuvwxyz
case_begin range/big-middle
run_cmd curl - "${CURL[@]}" -r 5000000-5999999 -o "$CD/b.data" "$URL/big.bin"
dd if="$WWW/big.bin" of="$CD/exp.data" bs=1000000 skip=5 count=1 status=none
check_file "$CD/exp.data" "$CD/b.data" "curl -r"
ETAG=$(curl_ -sI "$URL/abc.txt" | grep -i '^etag:' | tr -d '\r' | cut -d' ' -f2)
LASTMOD=$(curl_ -sI "$URL/abc.txt" | grep -i '^last-modified:' | tr -d '\r' | cut -d' ' -f2-)
case_begin range/if-range-match
run_cmd curl - "${CURL[@]}" -H 'Range: bytes=0-1' -H "If-Range: $ETAG" -o "$CD/b.data" -w '%{http_code}' "$URL/abc.txt"
if [[ $(cat "$CD/curl.out") == 206 && $(cat "$CD/b.data") == 01 ]]; then pass; else fail "got $(cat "$CD/curl.out"), expected 206 '01'"; fi
case_begin range/if-range-stale
run_cmd curl - "${CURL[@]}" -H 'Range: bytes=0-1' -H 'If-Range: "0-0"' -o "$CD/b.data" -w '%{http_code}' "$URL/abc.txt"
if [[ $(cat "$CD/curl.out") == 200 && $(fsize "$CD/b.data") == 36 ]]; then pass; else fail "got $(cat "$CD/curl.out"), expected 200 and the whole file"; fi

# --------------------------------------------------------------- conditional ---
cond_case() { # cond_case NAME HEADER EXPECTED
  case_begin "cond/$1"
  run_cmd curl - "${CURL[@]}" -H "$2" -o "$CD/b.data" -w '%{http_code}' "$URL/abc.txt"
  if [[ $(cat "$CD/curl.out") == "$3" ]]; then pass; else fail "status $(cat "$CD/curl.out"), expected $3 (${2})"; fi
}
case_begin cond/etag-format
if [[ $ETAG =~ ^\"[0-9a-f]+-24\"$ && -n $LASTMOD ]]; then pass; else fail "ETag '$ETAG' (expected \"<mtime hex>-24\"), Last-Modified '$LASTMOD'"; fi
cond_case inm-match "If-None-Match: $ETAG" 304
cond_case inm-list "If-None-Match: \"x-1\", W/$ETAG" 304
cond_case inm-star "If-None-Match: *" 304
cond_case inm-other 'If-None-Match: "0-0"' 200
cond_case ims-same "If-Modified-Since: $LASTMOD" 304
cond_case ims-old 'If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT' 200
cond_case ims-garbage 'If-Modified-Since: yesterday' 200
cond_case inm-wins "If-None-Match: \"0-0\"" 200

# ---------------------------------------------------------- head, pipelining ---
case_begin head
printf 'HEAD /abc.txt HTTP/1.1\r\nHost: localhost\r\n\r\nGET /abc.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' | raw r
mapfile -t R < <(parsed r 0)
exp_sha=$(sha "$WWW/abc.txt")
if (( ${#R[@]} != 2 )); then fail "${#R[@]} responses: ${R[*]}"
elif [[ ${R[0]} != "200 36 $(printf '' | sha256sum | cut -d' ' -f1) "* ]]; then fail "HEAD answer: ${R[0]}"
elif [[ ${R[1]} != "200 36 $exp_sha "* ]]; then fail "GET after HEAD: ${R[1]}"
else pass; fi
case_begin pipeline
{ printf 'GET /abc.txt HTTP/1.1\r\nHost: localhost\r\n\r\n'
  printf 'GET /sub/ HTTP/1.1\r\nHost: localhost\r\n\r\n'
  printf 'GET /mid.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'; } | raw r
mapfile -t R < <(parsed r)
if (( ${#R[@]} != 3 )); then fail "${#R[@]} responses, expected 3: ${R[*]}"
elif [[ ${R[0]} != "200 36 $exp_sha "*connection:keep-alive* ]]; then fail "1st: ${R[0]}"
elif [[ ${R[1]} != "200 10 $(sha "$WWW/sub/index.html") "* ]]; then fail "2nd: ${R[1]}"
elif [[ ${R[2]} != "200 1048576 $(sha "$WWW/mid.bin") "*connection:close* ]]; then fail "3rd: ${R[2]}"
else pass; fi
case_begin pipeline-tls12
{ for i in 1 2 3; do printf 'GET /abc.txt HTTP/1.1\r\nHost: localhost\r\n\r\n'; done
  printf 'GET /abc.txt HTTP/1.0\r\n\r\n'; } | raw r --tls12
mapfile -t R < <(parsed r)
if (( ${#R[@]} == 4 )) && [[ ${R[3]} == "200 36 $exp_sha "* ]]; then pass; else fail "${#R[@]} responses: ${R[*]}"; fi
case_begin http10-closes
printf 'GET /abc.txt HTTP/1.0\r\n\r\nGET /abc.txt HTTP/1.0\r\n\r\n' | raw r
mapfile -t R < <(parsed r)
if (( ${#R[@]} == 1 )) && [[ ${R[0]} == *connection:close* ]]; then pass; else fail "HTTP/1.0 without keep-alive: ${#R[@]} responses: ${R[*]}"; fi

# --------------------------------------------------------------- statuses ---
status_case() { # status_case NAME EXPECTED-STATUS REQUEST-PRINTF [HEADER-REGEX]
  case_begin "status/$1"
  printf "$3" | raw r
  local st; st=$(status_line r)
  if [[ $st != "HTTP/1.1 $2 "* ]]; then fail "got '$st', expected $2"
  elif [[ -n ${4:-} ]] && ! grep -qaiE "$4" "$CD/r.out"; then fail "no header matching '$4'"
  elif ! main_sane; then fail "$WHY"
  else pass; fi
}
status_case 400-bad-line 400 'GET /\r\n\r\n'
status_case 400-no-host 400 'GET / HTTP/1.1\r\n\r\n'
status_case 400-bare-lf 400 'GET / HTTP/1.1\nHost: x\n\n'
status_case 400-obs-fold 400 'GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n'
status_case 403-no-index 403 'GET /noindex/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
status_case 403-fifo 403 'GET /fifo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
status_case 403-socket 403 'GET /sock HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
status_case 404 404 'GET /nope.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
status_case 404-under-file 404 'GET /abc.txt/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
status_case 405-post 405 'POST /abc.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc' '^Allow: GET, HEAD'
status_case 405-delete 405 'DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' '^Allow: GET, HEAD'
status_case 416 416 'GET /abc.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=100-\r\nConnection: close\r\n\r\n' '^Content-Range: bytes \*/36'
status_case 505 505 'GET / HTTP/2.0\r\nHost: x\r\n\r\n'
status_case 301-dir 301 'GET /sub HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' '^Location: /sub/'
case_begin status/413-header
{ printf 'GET / HTTP/1.1\r\nHost: x\r\nX-Big: '; head -c 9000 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } | raw r
st=$(status_line r)
if [[ $st == "HTTP/1.1 413 "* ]] && main_sane; then pass; else fail "got '$st' ${WHY:-}, expected 413"; fi
case_begin status/413-line
{ printf 'GET /'; head -c 9000 /dev/zero | tr '\0' b; printf ' HTTP/1.1\r\nHost: x\r\n\r\n'; } | raw r
st=$(status_line r)
if [[ $st == "HTTP/1.1 413 "* ]] && main_sane; then pass; else fail "got '$st', expected 413"; fi
case_begin status/keep-alive-after-404
printf 'GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | raw r
mapfile -t R < <(parsed r)
if (( ${#R[@]} == 2 )) && [[ ${R[0]} == 404* && ${R[1]} == "200 36 $exp_sha "* ]]; then pass; else fail "${R[*]}"; fi
case_begin status/close-after-400
printf 'GET / HTTP/1.1\r\n\r\nGET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n' | raw r
mapfile -t R < <(parsed r)
if (( ${#R[@]} == 1 )) && [[ ${R[0]} == 400*connection:close* ]]; then pass; else fail "${#R[@]} responses: ${R[*]}"; fi

# -------------------------------------------------------------- traversal ---
TRAV=(
  '/../secret.txt' '/..%2fsecret.txt' '/%2e%2e/secret.txt' '/%2E%2E/secret.txt' '/sub/../../secret.txt'
  '/sub/%2e%2e/%2e%2e/secret.txt' '/%2e%2e%2fsecret.txt' '/..%5csecret.txt' '/..\secret.txt'
  '/escape' '/escape-abs' '/updir/secret.txt' '/etc/passwd' '/etc/hostname' '/updir/www/../secret.txt'
  '/abc.txt%00.html' '/%00' '/sub%2f..%2f..%2fsecret.txt' '/.%2e/secret.txt' '/%252e%252e/secret.txt'
  'http://localhost/../../secret.txt' 'http://localhost/../../etc/passwd' 'http://localhost/%2e%2e/secret.txt'
  'https://localhost:1/escape' 'http://localhost@evil/secret.txt' '../secret.txt' 'secret.txt' '//../secret.txt'
  '/./../secret.txt' '/sub/./../.././secret.txt' '/%c0%ae%c0%ae/secret.txt' '/..;/secret.txt'
)
trav_run() { # trav_run PREFIX: every target of TRAV through the current server; sets WHY
  local t i=0 st bad=0
  WHY=
  for t in "${TRAV[@]}"; do
    i=$((i + 1))
    printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$t" | raw "t$i"
    st=$(status_line "t$i")
    if grep -qa "$SECRET" "$CD/t$i.out"; then WHY+="[$t: THE SECRET WAS SERVED] "; bad=1; continue; fi
    if grep -qa '^root:' "$CD/t$i.out"; then WHY+="[$t: /etc/passwd was served] "; bad=1; continue; fi
    [[ $st =~ ^HTTP/1.1\ (400|403|404)\  ]] || { WHY+="[$t: '$st'] "; bad=1; }
    echo "$t -> $st" >>"$CD/statuses.txt"
  done
  # curl with --path-as-is sends the dots as they are
  run_cmd curl - "${CURL[@]}" --path-as-is "$URL/../secret.txt" "$URL/sub/../../secret.txt" "$URL/escape"
  grep -qa "$SECRET" "$CD/curl.out" && { WHY+="[curl --path-as-is: THE SECRET WAS SERVED] "; bad=1; }
  # over-long lines: never a crash, never the secret
  { printf 'GET /'; for i in $(seq 1 3000); do printf '../'; done; printf 'secret.txt HTTP/1.1\r\nHost: x\r\n\r\n'; } | raw long
  [[ $(status_line long) =~ ^HTTP/1.1\ (400|413)\  ]] || { WHY+="[over-long ../ line: '$(status_line long)'] "; bad=1; }
  return $bad
}
case_begin traversal/openat2
if trav_run && main_sane; then pass; else fail "$WHY"; fi
case_begin traversal/inside-symlink
run_cmd curl - "${CURL[@]}" -o "$CD/l.data" "$URL/inside-link"
check_file "$WWW/abc.txt" "$CD/l.data" "a symlink inside the root"

case_begin abort-mid-download
for i in 1 2 3 4 5; do
  timeout -k 2 "$TMO" curl -sS --cacert "$CA" "$URL/big.bin" 2>/dev/null | head -c $((i * 100000)) >/dev/null
done
run_cmd curl - "${CURL[@]}" -o "$CD/mid.data" "$URL/mid.bin"
if [[ $RC == 0 ]] && same_data "$WWW/mid.bin" "$CD/mid.data" && main_sane; then pass
else fail "after 5 clients left mid-download: rc $RC ${DATA_WHY:-} ${WHY:-}"; fi

case_begin truncated-while-sent
head -c 33554432 /dev/urandom >"$WWW/trunc.bin"
run_cmd tr - python3 "$PY" truncate "$PORT" "$CA" /trunc.bin "$WWW/trunc.bin"
res=$(cat "$CD/tr.out"); body=${res#body=}; body=${body%% *}
run_cmd curl - "${CURL[@]}" -o "$CD/mid.data" "$URL/mid.bin"
if [[ $res != *end=closed ]]; then fail "the response did not end when the file shrank: '$res' $(tail -n1 "$CD/tr.err")"
elif (( body >= 33554432 )); then fail "the whole body came although the file was truncated: $res"
elif [[ $RC != 0 ]] || ! same_data "$WWW/mid.bin" "$CD/mid.data" || ! main_sane; then fail "not serving afterwards: rc $RC ${DATA_WHY:-} ${WHY:-}"
else echo "$res" >"$CD/result.txt"; pass; fi
rm -f "$WWW/trunc.bin"

# ------------------------------------------------------------- slowloris ---
case_begin slowloris
python3 "$PY" slow "$PORT" "$CA" 1 $'GET /abc.txt HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n' \
  >"$CD/slow.out" 2>"$CD/slow.err" &
slow_pid=$!; BG_PIDS+=("$slow_pid"); ALL_PIDS+=("$slow_pid")
sleep 1
t0=$SECONDS
run_cmd curl - "${CURL[@]}" -o "$CD/mid.data" "$URL/mid.bin"
served=$((SECONDS - t0))
wait "$slow_pid"
res=$(cat "$CD/slow.out")
after=${res##*after=}; after=${after%.*}
if [[ $RC != 0 ]] || ! same_data "$WWW/mid.bin" "$CD/mid.data"; then fail "curl meanwhile: rc $RC ${DATA_WHY:-}"
elif (( served > 4 )); then fail "curl took ${served}s while a slowloris client was connected"
elif [[ $res != status=408* ]]; then fail "the slow client did not get 408: $res"
elif (( after > HDR_TMO_S + 4 )); then fail "cut after ${after}s, the header deadline is ${HDR_TMO_S}s"
else echo "$res" >"$CD/result.txt"; pass; fi

# -------------------------------------------------------------------- idle ---
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fs_pid() { pgrep -P "$MAIN_PID" -f ktlsx-fileserver | head -n1; } # start_server runs it under `timeout`
case_begin idle
spid=$(fs_pid)
rss0=$(rss_kb "$spid")
rm -f "$CD/go"
timeout -k 2 $((TMO * 15)) python3 "$PY" idle "$PORT" "$CA" "$IDLE_N" "$CD/go" >"$CD/idle.out" 2>"$CD/idle.err" &
idle_pid=$!; BG_PIDS+=("$idle_pid"); ALL_PIDS+=("$idle_pid")
deadline=$((SECONDS + TMO * 12))
while (( SECONDS < deadline )) && ! grep -q '^ready' "$CD/idle.out" && kill -0 "$idle_pid" 2>/dev/null; do sleep 0.2; done
rss1=$(rss_kb "$spid")
run_cmd curl - "${CURL[@]}" -o "$CD/big.data" "$URL/big.bin"
curl_rc=$RC
touch "$CD/go"
wait "$idle_pid"
if ! grep -q "^ready $IDLE_N" "$CD/idle.out"; then fail "the idle client did not get $IDLE_N connections: $(tail -n2 "$CD/idle.err")"
elif [[ $curl_rc != 0 ]] || ! same_data "$WWW/big.bin" "$CD/big.data"; then fail "a new client was not served: rc $curl_rc ${DATA_WHY:-}"
elif ! grep -q '^alive 20/20' "$CD/idle.out"; then fail "idle connections lost: $(cat "$CD/idle.out")"
else
  per=$(( (rss1 - rss0) * 1024 / IDLE_N ))
  echo "server VmRSS ${rss0} kB -> ${rss1} kB with $IDLE_N idle keep-alive connections: $per bytes/connection" | tee "$CD/memory.txt" >&2
  # ASan keeps freed memory in quarantine and pads every allocation: its RSS says little (bound 1 MiB there).
  bound=${FS_MAX_CONN_BYTES:-65536}
  grep -qa __asan_init "$FS" && bound=${FS_MAX_CONN_BYTES_ASAN:-1048576}
  if (( per > bound )); then fail "$per bytes per idle connection (bound $bound)"
  elif ! main_sane; then fail "$WHY"
  else pass; fi
fi

# -------------------------------------------------------------- access log ---
case_begin access-log
if grep -qE '^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} [+-][0-9]{4}\] "GET /big\.bin HTTP/1\.1" 200 16777216$' "$ALOG" &&
   grep -qE '"GET /abc\.txt HTTP/1\.1" 206 10$' "$ALOG" && grep -qE '"HEAD /abc\.txt HTTP/1\.1" 200 -$' "$ALOG" &&
   grep -qE '"-" 400 [0-9]+$' "$ALOG"; then pass
else fail "access log lines missing (see ${ALOG#$ROOT/})"; fi

# ----------------------------------------------------------------- SIGTERM ---
case_begin sane/sigterm
spid=$(fs_pid)
kill -TERM "$spid" 2>/dev/null
for i in $(seq 1 100); do kill -0 "$MAIN_PID" 2>/dev/null || break; sleep 0.1; done
wait "$MAIN_PID" 2>/dev/null; rc=$?
if (( rc != 0 )); then fail "exit $rc after SIGTERM" "$CD_SRV_ERR"
elif sanitizer_report "$CD_SRV_ERR"; then fail "$SAN_WHY" "$CD_SRV_ERR"
elif grep -qE 'AddressSanitizer|runtime error' "$CD_SRV_ERR"; then fail "sanitizer output" "$CD_SRV_ERR"
else pass; fi

# ---------------------------------------------- a second server: the walk ---
case_begin traversal/no-openat2
if start_fs srv --no-openat2; then
  if ! grep -q 'O_NOFOLLOW walk' "$CD/srv.err"; then fail "the server does not say it walks"
  else
    CD_SRV_ERR=$CD/srv.err MAIN_PID=$SERVER_PID
    if trav_run && main_sane; then
      run_cmd curl - "${CURL[@]}" -o "$CD/a.data" "$URL/sub/"
      if same_data "$WWW/sub/index.html" "$CD/a.data"; then pass; else fail "the walk does not serve /sub/: $DATA_WHY"; fi
    else fail "$WHY"; fi
  fi
else fail "server did not start: $(last_words "$CD/srv.err")"; fi

case_begin workers
if start_fs srv --workers 2 --header-timeout 2000; then
  ok=0
  for i in 1 2 3 4 5 6; do curl_ -o "$CD/w$i.data" "$URL/mid.bin" && same_data "$WWW/mid.bin" "$CD/w$i.data" && ok=$((ok + 1)); done
  if (( ok == 6 )) && grep -q '2 workers' "$CD/srv.err"; then pass; else fail "$ok/6 downloads with 2 workers"; fi
else fail "server did not start: $(last_words "$CD/srv.err")"; fi

case_begin verify-client
if start_fs srv --ca "$CA" --verify-client; then
  run_cmd nocert - "${CURL[@]}" -o "$CD/n.data" "$URL/abc.txt"
  nocert_rc=$RC
  run_cmd cert - "${CURL[@]}" --cert "$(crt client)" --key "$(key client)" -o "$CD/c.data" "$URL/abc.txt"
  if (( nocert_rc == 0 )); then fail "served a client without a certificate"
  elif [[ $RC != 0 ]] || ! same_data "$WWW/abc.txt" "$CD/c.data"; then fail "a client with a certificate: rc $RC ${DATA_WHY:-}"
  elif sanitizer_report "$CD/srv.err"; then fail "$SAN_WHY"
  else pass; fi
else fail "server did not start: $(last_words "$CD/srv.err")"; fi

case_begin list-dirs
if start_fs srv --list-dirs; then
  run_cmd curl - "${CURL[@]}" -D "$CD/h.txt" -o "$CD/l.html" "$URL/noindex/"
  run_cmd sub - "${CURL[@]}" -o "$CD/s.data" "$URL/sub/"
  if ! grep -qi '^content-type: text/html' "$CD/h.txt"; then fail "no text/html listing: $(head -n1 "$CD/h.txt")"
  elif ! grep -qF '<li><a href="a%3Cb%26c.txt">a&lt;b&amp;c.txt</a>' "$CD/l.html"; then fail "the name with <& is not escaped as expected"
  elif ! grep -qF '<li><a href="d/">d/</a>' "$CD/l.html"; then fail "the subdirectory is not listed with a /"
  elif [[ $(grep -o 'href="[^"]*"' "$CD/l.html" | tr '\n' ' ') != 'href="../" href="a%3Cb%26c.txt" href="d/" href="z.txt" ' ]]; then
    fail "entries not sorted or wrong: $(grep -o 'href="[^"]*"' "$CD/l.html" | tr '\n' ' ')"
  elif ! same_data "$WWW/sub/index.html" "$CD/s.data"; then fail "index.html is not preferred: $DATA_WHY"
  elif sanitizer_report "$CD/srv.err"; then fail "$SAN_WHY"
  else pass; fi
else fail "server did not start: $(last_words "$CD/srv.err")"; fi

case_begin limits/handshake-timeout
if start_fs srv --handshake-timeout 2000 --keepalive-timeout 2000; then
  t0=$SECONDS
  timeout -k 2 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; cat <&3 >/dev/null"; rc=$?
  el=$((SECONDS - t0))
  run_cmd ka - python3 "$PY" keepalive "$PORT" "$CA"
  ka=$(cat "$CD/ka.out"); ka_s=${ka##*after=}; ka_s=${ka_s%.*}
  if (( rc != 0 )); then fail "a silent TCP client was not cut at the 2 s handshake deadline ($(describe_rc $rc))"
  elif (( el > 6 )); then fail "the silent client was cut after ${el}s, the deadline is 2 s"
  elif [[ $ka != closed* ]] || (( ka_s < 1 || ka_s > 6 )); then fail "idle keep-alive connection (deadline 2 s): '$ka'"
  elif sanitizer_report "$CD/srv.err"; then fail "$SAN_WHY"
  else echo "silent client cut after ${el}s; idle keep-alive $ka" >"$CD/result.txt"; pass; fi
else fail "server did not start: $(last_words "$CD/srv.err")"; fi
case_begin limits/max-conns
if start_fs srv --max-conns 5; then
  rm -f "$CD/go"
  timeout -k 2 60 python3 "$PY" idle "$PORT" "$CA" 5 "$CD/go" >"$CD/idle.out" 2>"$CD/idle.err" &
  idle_pid=$!; BG_PIDS+=("$idle_pid"); ALL_PIDS+=("$idle_pid")
  for i in $(seq 1 200); do grep -q '^ready' "$CD/idle.out" && break; sleep 0.1; done
  run_cmd over - "${CURL[@]}" -o "$CD/o.data" "$URL/abc.txt"
  over_rc=$RC
  touch "$CD/go"; wait "$idle_pid"
  run_cmd after - "${CURL[@]}" -o "$CD/a.data" "$URL/abc.txt"
  if ! grep -q '^ready 5' "$CD/idle.out"; then fail "5 connections were not held: $(tail -n1 "$CD/idle.err")"
  elif (( over_rc == 0 )); then fail "a 6th connection was served over --max-conns 5"
  elif ! grep -q 'connection limit (--max-conns 5) reached' "$CD/srv.err"; then fail "no log line about the limit"
  elif ! grep -q '^alive 5/' "$CD/idle.out"; then fail "the 5 held connections: $(cat "$CD/idle.out")"
  elif [[ $RC != 0 ]] || ! same_data "$WWW/abc.txt" "$CD/a.data"; then fail "not serving once below the limit: rc $RC"
  else pass; fi
else fail "server did not start: $(last_words "$CD/srv.err")"; fi

# ------------------------------------------------- --daemon: ktlsxd does the handshakes ---
# ktlsxd holds the key (export_state = yes: no kernel TLS here, the state comes back and the
# fileserver carries user-space records); the fileserver runs with no --cert/--key.
KTLSXD=${KTLSXD_BIN:-$FS_DIR/ktlsxd}
DDIR=$(mktemp -d /tmp/kxfs-door.XXXXXX) # a short path: a unix socket path has 108 bytes at most
DOOR=$DDIR/door.sock
KD_PID=
start_ktlsxd() { # start_ktlsxd NAME: ktlsxd on $DOOR with profile "web" (logs $CD/NAME.err)
  cat >"$CD/$1.conf" <<CONF
[daemon]
socket = $DOOR
log_level = info
control_socket = none

[server web]
cert = $(crt server-ecdsa)
key = $(key server-ecdsa)
versions = 1.2-1.3
alpn = http/1.1
allow_uids = $(id -u)
export_state = yes
CONF
  timeout -k 2 "$SRV_TMO" "$KTLSXD" -c "$CD/$1.conf" >"$CD/$1.out" 2>"$CD/$1.err" </dev/null &
  KD_PID=$!; BG_PIDS+=("$KD_PID"); ALL_PIDS+=("$KD_PID")
  for _ in $(seq 1 100); do grep -q 'ktlsxd: info: ready' "$CD/$1.err" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
start_fs_daemon() { # start_fs_daemon NAME [options]: the fileserver handing handshakes to $DOOR
  local name=$1; shift
  start_server "$name" -- "$FS" --root "$WWW" --listen '127.0.0.1:{PORT}' --daemon "$DOOR" --profile web \
    --access-log "$ALOG" "$@" || return 1
  URL=https://localhost:$PORT
}
dsane() { # the fileserver (PID $1, stderr $2) is alive and clean
  if ! kill -0 "$1" 2>/dev/null; then WHY="the fileserver died"; return 1; fi
  if sanitizer_report "$2"; then WHY=$SAN_WHY; return 1; fi
  return 0
}

opt_case daemon-with-cert '--daemon: the certificate, key and client verification are the daemon' \
  --root "$WWW" --listen 127.0.0.1:1 --daemon "$DOOR" --profile web "${C[@]}"
opt_case daemon-no-profile '--profile is required' --root "$WWW" --listen 127.0.0.1:1 --daemon "$DOOR"
opt_case profile-no-daemon '--profile needs --daemon SOCKET' --root "$WWW" --listen 127.0.0.1:1 "${C[@]}" --profile web

if [[ ! -x $KTLSXD ]]; then
  case_begin daemon/start && skip "ktlsxd not built (${KTLSXD#$ROOT/})"
  finish
fi
case_begin daemon/start
if ! start_ktlsxd kd; then fail "ktlsxd did not start" "$CD/kd.err"; finish; fi
if ! start_fs_daemon srv --handshake-timeout 4000; then fail "the fileserver did not start with --daemon: $(last_words "$CD/srv.err")" "$CD/srv.err"; finish; fi
D_PID=$SERVER_PID D_ERR=$CD/srv.err D_URL=$URL D_PORT=$PORT
BG_PIDS=() # both stay for the cases below
pass

for v in 1.3 1.2; do
  case_begin "daemon/curl-tls$v-16MiB"
  run_cmd curl - "${CURL[@]}" --tlsv"$v" --tls-max "$v" -v -o "$CD/big.data" "$D_URL/big.bin"
  if [[ $RC != 0 ]]; then fail "curl $(describe_rc "$RC")"
  elif ! same_data "$WWW/big.bin" "$CD/big.data"; then fail "$DATA_WHY"
  elif ! grep -q "SSL connection using TLSv$v" "$CD/curl.err"; then fail "not TLS $v: $(grep -m1 'SSL connection' "$CD/curl.err")"
  elif ! grep -q 'ALPN.*accepted.*http/1.1' "$CD/curl.err"; then fail "ALPN http/1.1 not chosen (the profile's alpn line)"
  elif ! dsane "$D_PID" "$D_ERR"; then fail "$WHY"
  else pass; fi
done
case_begin daemon/keepalive
run_cmd curl - "${CURL[@]}" -o "$CD/a.data" -o "$CD/b.data" -w '%{num_connects} ' "$D_URL/mid.bin" "$D_URL/abc.txt"
if [[ $RC != 0 ]]; then fail "curl $(describe_rc "$RC")"
elif [[ $(cat "$CD/curl.out") != "1 0 " ]]; then fail "two requests did not share one connection: connects '$(cat "$CD/curl.out")'"
elif ! same_data "$WWW/mid.bin" "$CD/a.data" || ! same_data "$WWW/abc.txt" "$CD/b.data"; then fail "$DATA_WHY"
else pass; fi

# Silent TCP clients: each one's handshake waits in ktlsxd (up to the 4 s deadline); the worker
# (one ring) serves curl meanwhile.  A blocking door call would hold curl for 5 x 4 s.
case_begin daemon/stalled-handshakes
for i in 1 2 3 4 5; do
  timeout -k 2 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$D_PORT; cat <&3 >/dev/null" &
  BG_PIDS+=($!); ALL_PIDS+=($!)
done
sleep 0.5
t0=$(date +%s%N)
run_cmd curl - "${CURL[@]}" -o "$CD/m.data" "$D_URL/mid.bin"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
alive=0; for p in "${BG_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
if [[ $RC != 0 ]] || ! same_data "$WWW/mid.bin" "$CD/m.data"; then fail "curl with 5 stalled handshakes: rc $RC ${DATA_WHY:-}"
elif (( ms > 3000 )); then fail "curl took $ms ms behind 5 stalled handshakes (their deadline is 4000 ms)"
elif (( alive != 5 )); then fail "only $alive of the 5 silent clients were still waiting when curl was done"
else echo "curl served in $ms ms while 5 handshakes waited in ktlsxd" >"$CD/result.txt"; pass; fi

# ktlsxd down: each connection is closed with a log line, the server keeps running; ktlsxd back:
# served again.
case_begin daemon/daemon-down
kill -TERM "$KD_PID"; wait "$KD_PID" 2>/dev/null
run_cmd curl - "${CURL[@]}" -o "$CD/x.data" "$D_URL/abc.txt"
down_rc=$RC
sleep 0.2
if (( down_rc == 0 )); then fail "served with ktlsxd down?"
elif ! grep -q "ktlsxd: unreachable: cannot reach the daemon at $DOOR: .*: connection closed" "$D_ERR"; then
  fail "no log line for the unreachable daemon" "$D_ERR"
elif ! dsane "$D_PID" "$D_ERR"; then fail "$WHY"
elif ! start_ktlsxd kd2; then fail "ktlsxd did not start again" "$CD/kd2.err"
else
  BG_PIDS=()
  run_cmd curl - "${CURL[@]}" -o "$CD/y.data" "$D_URL/abc.txt"
  if [[ $RC != 0 ]] || ! same_data "$WWW/abc.txt" "$CD/y.data"; then fail "not served once ktlsxd is back: rc $RC"
  else pass; fi
fi

# A door that accepts and never answers: every connection is cut at its own deadline
# (--handshake-timeout 1500 + 1 s), together, not one after the other; the server lives on.
case_begin daemon/silent-door
kill -TERM "$KD_PID" 2>/dev/null; wait "$KD_PID" 2>/dev/null
rm -f "$DOOR"
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1]); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)   # read nothing, answer nothing
' "$DOOR" >"$CD/door.out" 2>"$CD/door.err" &
door_pid=$!; BG_PIDS+=("$door_pid"); ALL_PIDS+=("$door_pid")
for _ in $(seq 1 50); do [[ -S $DOOR ]] && break; sleep 0.1; done
if start_fs_daemon srv --handshake-timeout 1500; then
  S_PID=$SERVER_PID
  t0=$(date +%s%N)
  cpids=()
  for i in 1 2 3 4; do "${CURL[@]}" -o /dev/null "$URL/abc.txt" 2>"$CD/c$i.err" & cpids+=($!); done
  crc=0; for p in "${cpids[@]}"; do wait "$p" || crc=$((crc + 1)); done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  n=$(grep -c 'ktlsxd: unreachable: no answer in 2500 ms: connection closed' "$CD/srv.err")
  if (( crc != 4 )); then fail "$((4 - crc)) of 4 connections were served by a door that never answers"
  elif (( ms < 2000 || ms > 7000 )); then fail "4 connections ended after $ms ms (each one's deadline: 2500 ms)"
  elif (( n < 1 )); then fail "no log line for the silent daemon" "$CD/srv.err"
  elif ! dsane "$S_PID" "$CD/srv.err"; then fail "$WHY"
  else echo "4 connections to a silent door all cut after $ms ms" >"$CD/result.txt"; pass; fi
else fail "the fileserver did not start: $(last_words "$CD/srv.err")" "$CD/srv.err"; fi
stop_case_procs

case_begin daemon/sane
kill -TERM "$D_PID" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$D_PID" 2>/dev/null || break; sleep 0.1; done
wait "$D_PID" 2>/dev/null; rc=$?
if (( rc != 0 )); then fail "exit $rc after SIGTERM" "$D_ERR"
elif sanitizer_report "$D_ERR"; then fail "$SAN_WHY" "$D_ERR"
elif grep -qE 'AddressSanitizer|runtime error' "$D_ERR"; then fail "sanitizer output" "$D_ERR"
else pass; fi
rm -rf "$DDIR"

finish
