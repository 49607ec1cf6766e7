# tests/lib.sh — helpers for the interop scripts in tests/interop/ (source it).
#
# Environment (all optional):
#   KTLSX         ktlsx binary under test (default build/bin/ktlsx)
#   QUICK=1       run only a small representative subset of each script
#   RESULTS_FILE  every case appends one line: "PASS name" / "FAIL name: why" / "SKIP name: why"
#   NAME_PREFIX   prefix for case names (run.sh uses "asan/" for the sanitizer pass)
#   TEST_LOG_DIR  log root (default build/test-logs); this script logs to
#                 $TEST_LOG_DIR/interop/${NAME_PREFIX}<script>/<case>/
#   TMO           per-command timeout in seconds (default 20)
#   CERTS         test PKI directory (default build/test-certs, made by tests/certs/gen.sh)
#
# Case protocol:
#   case_begin NAME        # sets $CASE, $CD (fresh per-case log dir); returns 1 if filtered
#   ... start_server / run_cmd / checks ...
#   pass | fail "REASON" [LOG...] | skip "REASON"   # exactly one per case; also stops the
#                                                   # case's background processes
# Every command runs under `timeout`; every background process is killed on exit.

set -uo pipefail

LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$LIB_ROOT
KTLSX=${KTLSX:-$ROOT/build/bin/ktlsx}
[[ $KTLSX == /* ]] || KTLSX=$ROOT/$KTLSX
QUICK=${QUICK:-0}
TMO=${TMO:-20}
SRV_TMO=${SRV_TMO:-$((TMO * 3))}
NAME_PREFIX=${NAME_PREFIX:-}
SCRIPT_NAME=$(basename "$0" .sh)
TEST_LOG_DIR=${TEST_LOG_DIR:-$ROOT/build/test-logs}
WORK=$TEST_LOG_DIR/interop/${NAME_PREFIX//\//-}$SCRIPT_NAME
CERTS=${CERTS:-$ROOT/build/test-certs}
RESULTS_FILE=${RESULTS_FILE:-$WORK/results.txt}
DATA_SIZE=${DATA_SIZE:-1048576}

N_PASS=0 N_FAIL=0 N_SKIP=0
CASE= CD=
BG_PIDS=()       # background processes of the current case
ALL_PIDS=()      # every background process ever started (killed on exit)
PORT=
SERVER_PID=

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$RESULTS_FILE")"
touch "$RESULTS_FILE"

# Test a private copy of the binary: a relink in the (shared) build tree while
# the script runs must not change or remove the binary under test.
KTLSX_ORIG=$KTLSX
if [[ -x $KTLSX && ${KTLSX_SNAPSHOT:-1} == 1 ]]; then
  mkdir -p "$WORK/bin"
  if cp "$KTLSX" "$WORK/bin/ktlsx" 2>/dev/null; then KTLSX=$WORK/bin/ktlsx; fi
fi

log() { echo "[$SCRIPT_NAME] $*" >&2; }

# ---------------------------------------------------------------- cleanup ---

_kill_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  # give them a moment, then KILL whatever is left
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.05
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null; done
  for p in "$@"; do wait "$p" 2>/dev/null; done
  return 0
}

stop_case_procs() {
  (( ${#BG_PIDS[@]} )) && _kill_pids "${BG_PIDS[@]}"
  BG_PIDS=()
  SERVER_PID=
}

_lib_exit() {
  local rc=$?
  (( ${#ALL_PIDS[@]} )) && _kill_pids "${ALL_PIDS[@]}"
  [[ -n ${HOLD_FD:-} ]] && exec {HOLD_FD}>&-
  exit "$rc"
}
trap _lib_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

# A FIFO opened read-write by this shell: a process given `<&$HOLD_FD` as stdin
# never sees EOF (openssl s_server closes the connection on stdin EOF).
HOLD_FIFO=$WORK/.hold
mkfifo -m 600 "$HOLD_FIFO"
exec {HOLD_FD}<>"$HOLD_FIFO"

# ---------------------------------------------------------------- results ---

_record() { # _record LINE
  echo "$1"
  echo "$1" >>"$RESULTS_FILE"
}

case_begin() { # case_begin NAME  -> 0, or 1 when filtered out by ONLY=regex
  CASE=$NAME_PREFIX$SCRIPT_NAME/$1
  if [[ -n ${ONLY:-} && ! $CASE =~ $ONLY ]]; then CASE=; return 1; fi
  CD=$WORK/${1//\//_}
  rm -rf "$CD"; mkdir -p "$CD"
  BG_PIDS=()
  return 0
}

_case_end() {
  stop_case_procs
  CASE=
}

pass() {
  _record "PASS $CASE"
  N_PASS=$((N_PASS + 1))
  # drop the big data files of passing cases; keep the logs
  find "$CD" -maxdepth 1 -type f \( -name '*.data' -o -name '*.fifo' \) -delete 2>/dev/null
  _case_end
}

# last_words FILE: the last non-empty line of a log (a server's reason for not starting), for a
# FAIL line that says why on its own (CI shows the summary, not the logs).
last_words() { local w; w=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n1 | cut -c1-200); echo "${w:-no output}"; }

fail() { # fail REASON [LOGFILE...]   (default logs: every *.err/*.log/*.txt of the case)
  local reason=$1; shift
  _record "FAIL $CASE: $reason"
  N_FAIL=$((N_FAIL + 1))
  local logs=("$@") f
  if (( ${#logs[@]} == 0 )); then
    mapfile -t logs < <(find "$CD" -maxdepth 1 -type f \( -name '*.err' -o -name '*.log' -o -name '*.cmd' \) | sort)
  fi
  {
    for f in "${logs[@]}"; do
      [[ -s $f ]] || continue
      echo "    --- ${f#$ROOT/} (last lines)"
      tail -n "${FAIL_TAIL:-12}" "$f" | cut -c1-300 | sed 's/^/    | /'
    done
  } >&2
  _case_end
}

skip() { # skip REASON
  _record "SKIP $CASE: $1"
  N_SKIP=$((N_SKIP + 1))
  _case_end
}

finish() { # end of script: summary line on stderr, exit status 1 if anything failed
  log "$N_PASS passed, $N_FAIL failed, $N_SKIP skipped (logs: ${WORK#$ROOT/})"
  (( N_FAIL == 0 ))
  exit $?
}

# ------------------------------------------------------------ environment ---

have() { command -v "$1" >/dev/null 2>&1; }

# need_ktlsx: 0 if $KTLSX is an executable; otherwise sets SKIP_WHY
need_ktlsx() {
  if [[ ! -x $KTLSX ]]; then SKIP_WHY="ktlsx binary not built (${KTLSX_ORIG#$ROOT/})"; return 1; fi
  return 0
}
need_tool() { # need_tool NAME...
  local t
  for t in "$@"; do
    have "$t" || { SKIP_WHY="$t not installed"; return 1; }
  done
  return 0
}

gen_certs() {
  if ! timeout 120 "$ROOT/tests/certs/gen.sh" "$CERTS" >"$WORK/gen-certs.log" 2>&1; then
    log "tests/certs/gen.sh failed:"; cat "$WORK/gen-certs.log" >&2
    return 1
  fi
}

# make_data NAME [SIZE]: random binary file $WORK/NAME.bin (once per script)
make_data() {
  local f=$WORK/$1.bin
  [[ -f $f ]] || head -c "${2:-$DATA_SIZE}" /dev/urandom >"$f"
  echo "$f"
}
# make_text NAME [SIZE]: random printable text (base64 lines) of exactly SIZE bytes,
# for peers whose echo mode is not binary-safe (gnutls-serv --echo)
make_text() {
  local f=$WORK/$1.txt size=${2:-$DATA_SIZE}
  if [[ ! -f $f ]]; then
    head -c $((size * 3 / 4 + 1024)) /dev/urandom | base64 -w 76 | head -c $((size - 1)) >"$f"
    echo >>"$f"
  fi
  echo "$f"
}

sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }

# same_data EXPECTED ACTUAL -> 0 if identical (sha256); sets DATA_WHY otherwise
same_data() {
  if [[ ! -f $2 ]]; then DATA_WHY="no output file ${2##*/}"; return 1; fi
  [[ $(sha "$1") == "$(sha "$2")" ]] && return 0
  DATA_WHY="data mismatch: ${2##*/} has $(fsize "$2") bytes (sha256 $(sha "$2" | cut -c1-12)), expected $(fsize "$1") (sha256 $(sha "$1" | cut -c1-12))"
  return 1
}

# ------------------------------------------------------------------ ports ---

port_in_use() { ss -Htan 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"; }

# free_port: prints a currently unused TCP port from below the ephemeral range
# (ip_local_port_range; 10000..32767 by default).  Not from inside it: there every
# client connection of the other tests takes local ports, and one taken between
# our check and the server's bind fails the start ("Address already in use"),
# three tries in a row when 10,000 idle connections are open.
free_port() {
  local p i lo
  lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  (( ${lo:-0} > 12000 )) || lo=61000 # an unusual range: then above the usual one
  for i in $(seq 1 200); do
    if (( lo == 61000 )); then p=$((61000 + RANDOM % 4000)); else p=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000))); fi
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}

# listening_by PORT PID: PID (or one of its children: PID is usually `timeout`)
# listens on 127.0.0.1:PORT or on every IPv4 address.  Without ss -p process
# information (not root), any IPv4 listener on PORT counts.
listening_by() {
  local port=$1 pid=$2 lines k
  lines=$(ss -Hltnp "sport = :$port" 2>/dev/null | awk '{print $4, $6}' | grep -E '^(127\.0\.0\.1|0\.0\.0\.0|\*):')
  [[ -n $lines ]] || return 1
  [[ $lines == *pid=* ]] || return 0
  for k in "$pid" $(pgrep -P "$pid" 2>/dev/null); do
    [[ $lines == *"pid=$k,"* ]] && return 0
  done
  return 1
}

# wait_listen PORT PID [SECONDS]: poll until PID listens on PORT (with ss, which
# does not consume an accept, unlike a test connection) or PID died.
wait_listen() {
  local port=$1 pid=$2 deadline=$((SECONDS + ${3:-10}))
  while (( SECONDS < deadline )); do
    listening_by "$port" "$pid" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- feeders ---

# wait_sizes FILE SIZE [FILE SIZE...]: wait (bounded by $TMO) until every FILE has
# at least SIZE bytes.
wait_sizes() {
  local deadline=$((SECONDS + TMO)) ok f n i args=("$@")
  while (( SECONDS < deadline )); do
    ok=1
    for ((i = 0; i < ${#args[@]}; i += 2)); do
      f=${args[i]} n=${args[i+1]}
      (( $(fsize "$f") >= n )) || { ok=0; break; }
    done
    (( ok )) && return 0
    sleep 0.05
  done
  return 1
}

# feed FILE [FILE SIZE...]: write FILE to stdout, then keep stdout open until the
# listed output files are complete (so a peer that closes on stdin EOF does not
# cut the connection before the other direction has arrived).  Bounded by $TMO.
feed() {
  local f=$1; shift
  cat "$f"
  (( $# )) && wait_sizes "$@"
  return 0
}

# ---------------------------------------------------------------- servers ---

# start_server NAME [--feed FILE WAITSPEC...] [--stdin FILE] -- CMD ARGS...
#   Picks a free port, substitutes "{PORT}" in the arguments, starts
#   `timeout $SRV_TMO CMD...` in the background with stdout in $CD/NAME.out and
#   stderr in $CD/NAME.err, and waits until it listens (retrying on another
#   port if it died, e.g. lost a port race).  stdin: a never-ending FIFO by
#   default; --stdin FILE; or --feed FILE FILE SIZE... (see feed()).
#   Sets PORT and SERVER_PID.  Returns 1 if the server did not come up.
start_server() {
  local name=$1; shift
  local stdin_mode=hold stdin_file= feed_args=()
  while [[ $# -gt 0 && $1 != -- ]]; do
    case $1 in
      --stdin) stdin_mode=file stdin_file=$2; shift 2 ;;
      --feed)  stdin_mode=feed; shift
               while [[ $# -gt 0 && $1 != -- && $1 != --* ]]; do feed_args+=("$1"); shift; done ;;
      *) log "start_server: bad option $1"; return 1 ;;
    esac
  done
  shift # --
  local attempt args a pid
  for attempt in 1 2 3; do
    PORT=$(free_port) || return 1
    args=()
    for a in "$@"; do args+=("${a//\{PORT\}/$PORT}"); done
    printf '%q ' "${args[@]}" >"$CD/$name.cmd"; echo >>"$CD/$name.cmd"
    case $stdin_mode in
      hold) timeout -k 2 "$SRV_TMO" "${args[@]}" <&"$HOLD_FD" >"$CD/$name.out" 2>"$CD/$name.err" & pid=$! ;;
      file) timeout -k 2 "$SRV_TMO" "${args[@]}" <"$stdin_file" >"$CD/$name.out" 2>"$CD/$name.err" & pid=$! ;;
      feed) local fifo=$CD/$name.fifo
            rm -f "$fifo"; mkfifo -m 600 "$fifo"
            timeout -k 2 "$SRV_TMO" "${args[@]}" <"$fifo" >"$CD/$name.out" 2>"$CD/$name.err" & pid=$!
            # the feeder is a subshell; SIGPIPE ends it if the server goes away
            ( feed "${feed_args[@]}" >"$fifo" ) 2>/dev/null &
            BG_PIDS+=($!); ALL_PIDS+=($!) ;;
    esac
    BG_PIDS+=("$pid"); ALL_PIDS+=("$pid")
    SERVER_PID=$pid
    if wait_listen "$PORT" "$pid" 10; then return 0; fi
    if kill -0 "$pid" 2>/dev/null; then
      # alive but not listening on IPv4 (e.g. gnutls-serv got only [::]:PORT
      # because someone took 127.0.0.1:PORT): try another port
      _kill_pids "$pid"
      echo "start_server: $name did not listen on 127.0.0.1:$PORT within 10 s (attempt $attempt)" >>"$CD/$name.err"
      continue
    fi
    # died: port race, or a real start-up error (then retrying changes nothing)
    if ! grep -qiE 'address already in use|bind|listen' "$CD/$name.err"; then return 1; fi
  done
  return 1
}

# server_wait [SECONDS]: wait for the current server to exit by itself (e.g.
# --once / -naccept 1); sets SERVER_RC (124 = had to be killed).
server_wait() {
  local deadline=$((SECONDS + ${1:-$TMO}))
  SERVER_RC=
  [[ -n $SERVER_PID ]] || return 0
  while (( SECONDS < deadline )) && kill -0 "$SERVER_PID" 2>/dev/null; do sleep 0.05; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    _kill_pids "$SERVER_PID"; SERVER_RC=124; return 1
  fi
  wait "$SERVER_PID" 2>/dev/null; SERVER_RC=$?
  return 0
}

# ---------------------------------------------------------------- clients ---

# run_cmd NAME STDIN CMD ARGS...: run `timeout $TMO CMD...` in the foreground,
# stdin from STDIN (a file, or "-" to inherit, e.g. from a pipe), stdout
# $CD/NAME.out, stderr $CD/NAME.err.  Sets RC (124 = timed out).
run_cmd() {
  local name=$1 in=$2; shift 2
  printf '%q ' "$@" >"$CD/$name.cmd"; echo >>"$CD/$name.cmd"
  if [[ $in == - ]]; then
    timeout -k 2 "$TMO" "$@" >"$CD/$name.out" 2>"$CD/$name.err"
  else
    timeout -k 2 "$TMO" "$@" <"$in" >"$CD/$name.out" 2>"$CD/$name.err"
  fi
  RC=$?
  return 0
}

# describe_rc RC -> "timed out (hang)" / "crashed (signal N)" / "exit N"
describe_rc() {
  case $1 in
    124|137) echo "timed out after ${TMO}s (hang)" ;;
    *) if (( $1 >= 128 )); then echo "crashed (signal $(( $1 - 128 )))"; else echo "exit $1"; fi ;;
  esac
}
rc_crashed() { (( $1 == 124 || $1 == 137 || $1 >= 128 )); }

# sanitizer_report FILE...: 0 (and SAN_WHY) if any file holds an ASan/UBSan/LSan report
sanitizer_report() {
  local f
  for f in "$@"; do
    [[ -f $f ]] || continue
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$f"; then
      SAN_WHY="sanitizer report in ${f##*/}: $(grep -m1 -E 'ERROR: |runtime error:' "$f" | cut -c1-160)"
      return 0
    fi
  done
  return 1
}

# ------------------------------------------------------- ktlsx summary line ---

# summary_line FILE: the first "ktlsx: handshake ok ..." line of FILE
summary_line() { grep -m1 -a '^ktlsx: handshake ok' "$1" 2>/dev/null; }
failure_line() { grep -m1 -a '^ktlsx: handshake failed' "$1" 2>/dev/null; }

# group_re NAME: regex of accepted spellings of a group in the summary line
group_re() {
  case ${1,,} in
    x25519) echo 'x25519|X25519' ;;
    p-256|secp256r1|prime256v1) echo 'secp256r1|P-256|prime256v1' ;;
    p-384|secp384r1) echo 'secp384r1|P-384' ;;
    x448) echo 'x448|X448' ;;
    *) echo "$1" ;;
  esac
}

# check_summary FILE key=value...: the summary line in FILE must contain each
# key=value (value is an extended regex, anchored at the field).  Sets SUM_WHY.
check_summary() {
  local f=$1 line kv k v; shift
  line=$(summary_line "$f")
  if [[ -z $line ]]; then
    SUM_WHY="no 'ktlsx: handshake ok' line in ${f##*/}"
    local fl; fl=$(failure_line "$f"); [[ -n $fl ]] && SUM_WHY+=" (got: $fl)"
    return 1
  fi
  for kv in "$@"; do
    k=${kv%%=*} v=${kv#*=}
    if ! [[ " $line " =~ \ $k=($v)(\ |$) ]]; then
      SUM_WHY="summary line lacks $k=$v: $line"
      return 1
    fi
  done
  return 0
}

# check_alert FILE ALERT: ktlsx's stderr in FILE reports alert ALERT.  Sets ALERT_WHY.
check_alert() {
  local f=$1 alert=$2
  if grep -qa "(alert $alert)" "$f" 2>/dev/null; then return 0; fi
  local fl; fl=$(failure_line "$f")
  if [[ -n $fl ]]; then ALERT_WHY="expected (alert $alert), got: $fl"
  else ALERT_WHY="expected 'ktlsx: handshake failed: ... (alert $alert)', got: $(grep -a -m1 '^ktlsx:' "$f" 2>/dev/null || tail -n1 "$f" 2>/dev/null)"
  fi
  return 1
}

# openssl_alert_text ALERT: how openssl s_client/s_server print a received alert
openssl_alert_text() { echo "alert ${1//_/ }"; }

# --------------------------------------------------------------- matrices ---

CIPHERS=(TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256)
GROUPS_=(x25519 P-256)
CERT_TYPES=(rsa ecdsa ed25519)

# quick_pick I: in QUICK mode keep only a representative subset of a loop over
# the 18-combo matrix (indices 0, 7, 14: one per cert type, each cipher, both groups)
quick_keep() { (( ! QUICK )) || [[ " ${QUICK_SET:-0 7 14} " == *" $1 "* ]]; }

# gnutls priority-string pieces
gnutls_cipher() {
  case $1 in
    TLS_AES_128_GCM_SHA256) echo AES-128-GCM ;;
    TLS_AES_256_GCM_SHA384) echo AES-256-GCM ;;
    TLS_CHACHA20_POLY1305_SHA256) echo CHACHA20-POLY1305 ;;
  esac
}
gnutls_group() { case ${1,,} in x25519) echo GROUP-X25519 ;; p-256) echo GROUP-SECP256R1 ;; esac; }
gnutls_prio() { # gnutls_prio CIPHER GROUP
  echo "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+$(gnutls_cipher "$1"):-GROUP-ALL:+$(gnutls_group "$2")"
}
openssl_group() { case ${1,,} in x25519) echo X25519 ;; p-256) echo P-256 ;; esac; }
# how `openssl s_client -brief` prints the key exchange ("Server Temp Key: ...")
openssl_tempkey_re() { case ${1,,} in x25519) echo 'X25519' ;; p-256) echo 'ECDH, prime256v1' ;; esac; }
# the description gnutls-cli logs: (TLS1.3-X.509)-(ECDHE-X25519)-(ECDSA-SECP256R1-SHA256)-(AES-128-GCM)
gnutls_kx_desc() { case ${1,,} in x25519) echo 'ECDHE-X25519' ;; p-256) echo 'ECDHE-SECP256R1' ;; esac; }

# run_fed NAME FILE [WAITFILE SIZE...] -- CMD ARGS...: like run_cmd, with stdin
# produced by `feed FILE WAITFILE SIZE...` (the feeder is killed when CMD exits,
# so a failing client does not wait for $TMO).
run_fed() {
  local name=$1; shift
  local fargs=()
  while [[ $# -gt 0 && $1 != -- ]]; do fargs+=("$1"); shift; done
  shift
  local fifo=$CD/$name.fifo fpid
  rm -f "$fifo"; mkfifo -m 600 "$fifo"
  ( feed "${fargs[@]}" >"$fifo" ) 2>/dev/null &
  fpid=$!; ALL_PIDS+=("$fpid")
  run_cmd "$name" "$fifo" "$@"
  _kill_pids "$fpid"
  rm -f "$fifo"
}

# ------------------------------------------------------------ ktlsx helpers ---

crt() { echo "$CERTS/$1.pem"; }
key() { echo "$CERTS/$1.key"; }

# ktlsx_verdict NAME [CHECK...]: common checks on a ktlsx run whose output is
# $CD/NAME.{out,err} and exit status $RC: no hang, no crash, no sanitizer
# report.  Sets WHY and returns 1 on a problem.
ktlsx_sane() {
  local name=$1
  if rc_crashed "$RC"; then WHY="ktlsx $name $(describe_rc "$RC")"; return 1; fi
  if sanitizer_report "$CD/$name.err"; then WHY="ktlsx $name: $SAN_WHY"; return 1; fi
  return 0
}

# ktlsx_server_sane: after the case, the ktlsx server (if it was one) did not
# crash and printed no sanitizer report.  Kills it if still running.
ktlsx_server_sane() {
  local name=${1:-srv} grace=${2:-3}
  server_wait "$grace"
  if [[ -n ${SERVER_RC:-} && $SERVER_RC != 124 ]] && (( SERVER_RC >= 128 )); then
    WHY="ktlsx server $(describe_rc "$SERVER_RC")"; return 1
  fi
  if sanitizer_report "$CD/$name.err"; then WHY="ktlsx server: $SAN_WHY"; return 1; fi
  return 0
}

# check_trace FILE LINE-REGEX...: every regex matches some line of FILE (the
# --trace output).  Sets TRACE_WHY.
check_trace() {
  local f=$1 re; shift
  for re in "$@"; do
    if ! grep -qaE "(^|[ :])$re" "$f"; then
      TRACE_WHY="--trace output lacks a line matching '$re'"
      return 1
    fi
  done
  return 0
}

# openssl s_server arguments for a server certificate of TYPE (leaf + chain)
# (the .pem files of intermediate-issued leaves hold leaf + intermediate; s_server
# and s_client -cert load only the first certificate, hence -cert_chain)
ossl_cert_args() {
  local args=(-cert "$(crt "$1")" -key "$(key "$1")")
  (( $(grep -c 'BEGIN CERTIFICATE' "$(crt "$1")") > 1 )) && args+=(-cert_chain "$CERTS/int.pem")
  echo "${args[@]}"
}
