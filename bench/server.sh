#!/usr/bin/env bash
# bench/server.sh [BUILD] — server capacity on ONE core, measured with ktlsx-load (issue 11).
# Run by `make bench` (after bench/run.sh's library benchmarks) and `make bench-server`.
#
# Each server is pinned to CPU $SERVER_CPU (default 0), ktlsx-load to CPU $CLIENT_CPU (default 1):
#   nginx             1 worker, TLS 1.3 only, X25519, ssl_session_tickets on + shared cache, keep-alive
#   openssl s_server  -WWW -tls1_3 -groups X25519 (one connection at a time; it closes after each
#                     response, so it has no keep-alive requests/s figure)
#   ktlsx-fileserver  $FILESERVER (default BUILD/bin/ktlsx-fileserver), skipped with a line when absent:
#                     --root DIR --listen 127.0.0.1:PORT --cert --key --workers 1
#   ktlsx-fileserver through ktlsxd  (issue 8: the door against the in-process engine, target >= 0.8x)
#                     the same file server with --daemon: ktlsxd (workers = 1, BUILD/bin/ktlsxd) runs
#                     every handshake and holds the key; both processes on the server's core, and
#                     the server CPU figures count both
# each with the ECDSA P-256 and the RSA-2048 certificate of tests/certs (the RSA one is made here if
# missing), and three figures: full TLS 1.3 handshakes/s, resumed (ticket, psk_dhe_ke) handshakes/s,
# small-request keep-alive requests/s; plus the server's and the client's CPU use (a server below
# ~90 % was not the bottleneck: the client was, or something else on the machine took the CPUs
# when neither is near 100 %) and the server's CPU microseconds per operation derived from them
# (the figure that survives a shared machine best), the crypto bound of one server handshake from `openssl speed` on the
# server's core (x25519 keygen + derive, counted as two derive operations since speed measures the
# derive; plus one ECDSA P-256 or RSA-2048 signature; a resumed handshake: the x25519 pair only)
# and each rate as a share of it, and every rate as a ratio to nginx's.
# Output: a table on stdout and in BUILD/bench/server.txt, the raw JSON reports in
# BUILD/bench/server-json/, and BUILD/bench/server.png when gnuplot is installed.
#
# Environment: SERVER_BENCH_SECONDS (measured seconds per run, default 4), SERVER_BENCH_REPEAT (runs
# per figure, the best kept, default 2), SERVER_BENCH_WARMUP
# (default 1), SERVER_BENCH_CONNS (client connections, default 16), SERVER_CPU, CLIENT_CPU,
# FILESERVER, SERVER_BENCH_ONLY (a regex over "server/cert" names, e.g. 'nginx/ecdsa').
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${1:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
OUT=$BUILD/bench
LOADGEN=$BUILD/bin/ktlsx-load
FILESERVER=${FILESERVER:-$BUILD/bin/ktlsx-fileserver}
SECS=${SERVER_BENCH_SECONDS:-4}
WARM=${SERVER_BENCH_WARMUP:-1}
CONNS=${SERVER_BENCH_CONNS:-16}
SCPU=${SERVER_CPU:-0}
CCPU=${CLIENT_CPU:-1}
ONLY=${SERVER_BENCH_ONLY:-}
CERTS=${BENCH_CERTS:-$OUT/certs}
[[ $CERTS == /* ]] || CERTS=$ROOT/$CERTS # bench/run.sh passes it relative to the tree

say() { echo "bench/server.sh: $*" >&2; }
[[ -x $LOADGEN ]] || { say "$LOADGEN not built (make all)"; exit 1; }
command -v python3 >/dev/null || { say "python3 is needed to read ktlsx-load's JSON"; exit 1; }
if (( $(nproc) < 2 )); then
  say "only $(nproc) CPU: server and client share it (numbers are not capacity)"
  SCPU=0 CCPU=0
fi
PIN_S=(taskset -c "$SCPU")
command -v taskset >/dev/null || { say "taskset missing: nothing pinned"; PIN_S=(); }

mkdir -p "$OUT/server-json"
tests/certs/gen.sh "$CERTS" >/dev/null || exit 1
# RSA-2048: tests/certs has server-rsa (2048 bits); a self-signed one otherwise.
if ! openssl x509 -in "$CERTS/server-rsa.pem" -noout -text 2>/dev/null | grep -q 'Public-Key: (2048 bit)'; then
  say "making an RSA-2048 certificate in $OUT/rsa"
  mkdir -p "$OUT/rsa"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$OUT/rsa/server-rsa.key" -out "$OUT/rsa/server-rsa.pem" 2>/dev/null || exit 1
  RSA_CERT=$OUT/rsa/server-rsa.pem RSA_KEY=$OUT/rsa/server-rsa.key RSA_CA=$OUT/rsa/server-rsa.pem
else
  RSA_CERT=$CERTS/server-rsa.pem RSA_KEY=$CERTS/server-rsa.key RSA_CA=$CERTS/ca.pem
fi
ECDSA_CERT=$CERTS/server-ecdsa.pem ECDSA_KEY=$CERTS/server-ecdsa.key ECDSA_CA=$CERTS/ca.pem

RUN=$(mktemp -d /tmp/ktlsx-bench-server.XXXXXX) || exit 1
SRV_PID=
cleanup() { [[ -n $SRV_PID ]] && stop_server; rm -rf "$RUN"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
WWW=$RUN/www
mkdir -p "$WWW"
printf 'a small response for the keep-alive figure\n' >"$WWW/index.html"

free_port() { # below the ephemeral range, where client connections never take a port meanwhile
  local p lo
  lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  (( ${lo:-0} > 12000 )) || lo=32768
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % (lo - 10000)))
    ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}
wait_listen() { # wait_listen PORT PID
  for _ in $(seq 1 200); do
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop_server() {
  if [[ -n ${DMN_PID:-} ]]; then kill -TERM "$DMN_PID" 2>/dev/null; wait "$DMN_PID" 2>/dev/null; DMN_PID=; fi
  kill -TERM "$SRV_PID" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=
}
# cpu_ticks PID: user+system clock ticks of PID and its children (nginx's worker)
cpu_ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" 2>/dev/null) ${DMN_PID:-}; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- servers ---
start_nginx() { # start_nginx CERT KEY
  local d=$RUN/nginx
  mkdir -p "$d/logs" "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
$( (( EUID == 0 )) && echo 'user root;')
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_certificate $1; ssl_certificate_key $2;
    ssl_session_tickets on;
    ssl_session_cache shared:SSL:50m;
    root $WWW;
  }
}
EOF
  "${PIN_S[@]}" nginx -p "$d" -c "$d/nginx.conf" </dev/null >"$d/out" 2>&1 &
  SRV_PID=$!
}
start_s_server() { # start_s_server CERT KEY
  (cd "$WWW" && exec "${PIN_S[@]}" openssl s_server -accept "127.0.0.1:$PORT" -cert "$1" -key "$2" \
     -cert_chain "$CERTS/int.pem" -tls1_3 -groups X25519 -WWW -quiet </dev/null >"$RUN/s_server.out" 2>&1) &
  SRV_PID=$!
}
start_fileserver() { # start_fileserver CERT KEY
  "${PIN_S[@]}" "$FILESERVER" --root "$WWW" --listen "127.0.0.1:$PORT" --cert "$1" --key "$2" --workers 1 \
    </dev/null >"$RUN/fileserver.out" 2>&1 &
  SRV_PID=$!
}
DAEMON=$BUILD/bin/ktlsxd DMN_PID=
start_fsdoor() { # start_fsdoor CERT KEY: ktlsxd holding CERT/KEY, the file server asking it
  cat >"$RUN/ktlsxd.conf" <<CONF
[daemon]
socket = $RUN/door.sock
workers = 1
log_level = warning
max_handshakes_per_uid = 100000
max_clients_per_uid = 100000

[server web]
cert = $1
key = $2
versions = 1.3
groups = x25519
alpn = http/1.1
export_state = yes
allow_uids = $(id -u)
CONF
  "${PIN_S[@]}" "$DAEMON" -c "$RUN/ktlsxd.conf" </dev/null >"$RUN/ktlsxd.out" 2>&1 &
  DMN_PID=$!
  for _ in $(seq 1 100); do [[ -S $RUN/door.sock ]] && break; sleep 0.05; done
  "${PIN_S[@]}" "$FILESERVER" --root "$WWW" --listen "127.0.0.1:$PORT" --daemon "$RUN/door.sock" --profile web \
    --workers 1 </dev/null >"$RUN/fsdoor.out" 2>&1 &
  SRV_PID=$!
}

# ----------------------------------------------------------- crypto bound ---
# openssl speed on the server's core: operations per second (machine-readable lines)
speed() { "${PIN_S[@]}" openssl speed -mr -seconds 2 "$1" 2>/dev/null | grep "^+F$2:" | head -n1; }
say "crypto bound: openssl speed on CPU $SCPU (about 12 s)"
X25519_OPS=$(speed ecdhx25519 5 | cut -d: -f4)
P256_SIGN=$(speed ecdsap256 4 | cut -d: -f4)
RSA_SIGN=$(speed rsa2048 2 | cut -d: -f4)
read -r BOUND_ECDSA BOUND_RSA BOUND_RESUMED < <(awk -v x="$X25519_OPS" -v e="$P256_SIGN" -v r="$RSA_SIGN" 'BEGIN {
  if (x <= 0 || e <= 0 || r <= 0) { print 0, 0, 0; exit }
  printf "%.0f %.0f %.0f\n", 1 / (2 / x + 1 / e), 1 / (2 / x + 1 / r), x / 2 }')

# ------------------------------------------------------------ measurement ---
declare -A RATE CPU NOTE RUNS CCPU_USE
REPEAT=${SERVER_BENCH_REPEAT:-2}
# measure NAME CA MODE ARGS...: the best of $REPEAT ktlsx-load runs (other work on a shared machine
# only ever lowers a figure); RATE[NAME/MODE], CPU[NAME/MODE] (server %), NOTE[NAME/MODE]
measure() {
  local name=$1 ca=$2 mode=$3; shift 3
  local i best_rate=-1 best_cpu= best_ccpu= best_note= all=
  for ((i = 1; i <= REPEAT; i++)); do
    measure_once "$name" "$ca" "$mode" "$i" "$@"
    all+=" ${RATE[$name/$mode]}"
    if awk -v a="${RATE[$name/$mode]}" -v b="$best_rate" 'BEGIN { exit !(a > b) }'; then
      best_rate=${RATE[$name/$mode]} best_cpu=${CPU[$name/$mode]} best_ccpu=${CCPU_USE[$name/$mode]} best_note=${NOTE[$name/$mode]:-}
    fi
  done
  RATE[$name/$mode]=$best_rate CPU[$name/$mode]=$best_cpu CCPU_USE[$name/$mode]=$best_ccpu NOTE[$name/$mode]=$best_note RUNS[$name/$mode]=${all# }
}
measure_once() {
  local name=$1 ca=$2 mode=$3 rep=$4; shift 4
  local json=$OUT/server-json/${name//\//-}-$mode-$rep.json t0 t1 c0 c1
  NOTE[$name/$mode]=
  c0=$(cpu_ticks "$SRV_PID") t0=$EPOCHREALTIME
  "$LOADGEN" "127.0.0.1:$PORT" --json --ca "$ca" --tls 1.3 --groups x25519 --mode "$mode" --connections "$CONNS" \
    --duration "$SECS" --warmup "$WARM" --cpu "$CCPU" "$@" >"$json" 2>"$json.err"
  c1=$(cpu_ticks "$SRV_PID") t1=$EPOCHREALTIME
  local r
  r=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
bad = d["errors"]["total"]
res = d["resumed_pct"]
note = ""
if bad: note = "%d errors: %s" % (bad, "; ".join(d["first_error"].values()))
if sys.argv[2] == "resumed" and res < 99: note += " only %.1f %% resumed" % res
print("%.1f %.0f" % (d["rate"], d.get("client_cpu_pct", 0)), note)' "$json" "$mode" 2>/dev/null) || r="0 0 no report: $(head -c 200 "$json.err")"
  RATE[$name/$mode]=${r%% *} r=${r#* }
  CCPU_USE[$name/$mode]=${r%% *}
  [[ $r == *" "?* ]] && NOTE[$name/$mode]=${r#* }
  CPU[$name/$mode]=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }')
  printf '  %-24s %-11s %10s /s   server CPU %3s %%, client CPU %3s %%  %s\n' "$name" "$mode#$rep" "${RATE[$name/$mode]}" \
    "${CPU[$name/$mode]}" "${CCPU_USE[$name/$mode]}" "${NOTE[$name/$mode]:-}" >&2
}

ROWS=()
run_server() { # run_server KIND CERTKIND
  local kind=$1 ck=$2 name=$1/$2 cert key ca
  [[ -z $ONLY || $name =~ $ONLY ]] || return 0
  if [[ $ck == ecdsa ]]; then cert=$ECDSA_CERT key=$ECDSA_KEY ca=$ECDSA_CA; else cert=$RSA_CERT key=$RSA_KEY ca=$RSA_CA; fi
  case $kind in
    nginx) command -v nginx >/dev/null || { NOTE[$name]="nginx not installed"; ROWS+=("$name"); return 0; } ;;
    fileserver) [[ -x $FILESERVER ]] || { NOTE[$name]="skipped: no ktlsx-fileserver at $FILESERVER (set FILESERVER=path)"; ROWS+=("$name"); say "$name: ${NOTE[$name]}"; return 0; } ;;
    fsdoor) [[ -x $FILESERVER && -x $DAEMON ]] || { NOTE[$name]="skipped: no ktlsx-fileserver or ktlsxd"; ROWS+=("$name"); say "$name: ${NOTE[$name]}"; return 0; } ;;
  esac
  PORT=$(free_port) || return 1
  rm -f "$RUN"/*.out "$RUN/nginx/out" # only this server's start-up messages below
  "start_$kind" "$cert" "$key"
  if ! wait_listen "$PORT" "$SRV_PID"; then
    NOTE[$name]="did not start: $(tail -n 2 "$RUN"/*.out "$RUN"/nginx/out 2>/dev/null | tr '\n' ' ' | cut -c1-200)"
    say "$name: ${NOTE[$name]}"
    [[ -n $SRV_PID ]] && stop_server
    ROWS+=("$name")
    return 0
  fi
  say "$name on CPU $SCPU, ktlsx-load on CPU $CCPU, $CONNS connections, ${WARM}+${SECS} s per figure"
  measure "$name" "$ca" full
  measure "$name" "$ca" resumed
  if [[ $kind == s_server ]]; then
    NOTE[$name/requests]="n/a (s_server -WWW closes after each response)"
  else
    measure "$name" "$ca" requests --path /index.html
  fi
  stop_server
  ROWS+=("$name")
}
for ck in ecdsa rsa; do
  for kind in nginx s_server fileserver fsdoor; do run_server "$kind" "$ck"; done
done

# ------------------------------------------------------------------ table ---
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.0f %%", 100 * a / b; else printf "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "-" }'; }
# us_op CPU% RATE: server CPU microseconds per operation (CPU over the whole run / the window's rate:
# an estimate that holds while the rate is steady; robust to a shared machine, unlike the rate)
us_op() { awk -v c="$1" -v r="$2" 'BEGIN { if (c > 0 && r > 0) printf "%.0f", c / 100 / r * 1e6; else printf "-" }'; }
label() { case ${1%%/*} in nginx) echo nginx ;; s_server) echo "openssl s_server" ;; fileserver) echo ktlsx-fileserver ;; fsdoor) echo "fileserver+ktlsxd" ;; esac; }
{
  echo "# server capacity on one core: ktlsx-load $(git describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "# $(uname -sr), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(openssl version), $(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "# load average before the table: $(cut -d" " -f1-3 /proc/loadavg) (other work on the machine disturbs the figures)"
  echo "# server on CPU $SCPU, ktlsx-load on CPU $CCPU: --connections $CONNS --warmup $WARM --duration $SECS --tls 1.3 --groups x25519, best of $REPEAT runs"
  echo "# crypto bound (openssl speed, CPU $SCPU): x25519 ${X25519_OPS%.*} derive/s, ECDSA P-256 ${P256_SIGN%.*} sign/s, RSA-2048 ${RSA_SIGN%.*} sign/s"
  echo "#   -> full handshake: ECDSA $BOUND_ECDSA/s, RSA $BOUND_RSA/s; resumed (x25519 only): $BOUND_RESUMED/s"
  printf '%-26s %12s %8s %12s %8s %12s %13s %13s %18s\n' "server/cert" "full/s" "bound" "resumed/s" "bound" "requests/s" "server CPU" "client CPU" "server us/op"
  for n in "${ROWS[@]}"; do
    if [[ -n ${NOTE[$n]:-} ]]; then printf '%-26s %s\n' "$(label "$n") ${n#*/}" "${NOTE[$n]}"; continue; fi
    b=$BOUND_ECDSA; [[ $n == */rsa ]] && b=$BOUND_RSA
    printf '%-26s %12s %8s %12s %8s %12s %13s %13s %18s\n' "$(label "$n") ${n#*/}" "${RATE[$n/full]}" "$(pct "${RATE[$n/full]}" "$b")" \
      "${RATE[$n/resumed]}" "$(pct "${RATE[$n/resumed]}" "$BOUND_RESUMED")" "${RATE[$n/requests]:-n/a}" \
      "${CPU[$n/full]}/${CPU[$n/resumed]}/${CPU[$n/requests]:--} %" "${CCPU_USE[$n/full]}/${CCPU_USE[$n/resumed]}/${CCPU_USE[$n/requests]:--} %" \
      "$(us_op "${CPU[$n/full]}" "${RATE[$n/full]}")/$(us_op "${CPU[$n/resumed]}" "${RATE[$n/resumed]}")/$(us_op "${CPU[$n/requests]:-}" "${RATE[$n/requests]:-}")"
    for m in full resumed requests; do
      [[ -n ${NOTE[$n/$m]:-} ]] && echo "    $m: ${NOTE[$n/$m]}"
    done
    echo "    runs: full ${RUNS[$n/full]:-}; resumed ${RUNS[$n/resumed]:-}; requests ${RUNS[$n/requests]:-n/a}"
  done
  for ck in ecdsa rsa; do
    [[ -n ${RATE[fsdoor/$ck/full]:-} && -n ${RATE[fileserver/$ck/full]:-} ]] || continue
    echo "# through ktlsxd / in-process (the same file server, $ck): rate full $(ratio "${RATE[fsdoor/$ck/full]}" "${RATE[fileserver/$ck/full]}"), resumed $(ratio "${RATE[fsdoor/$ck/resumed]}" "${RATE[fileserver/$ck/resumed]}");" \
      "server CPU per handshake (both processes) in-process / through ktlsxd: full $(ratio "$(us_op "${CPU[fileserver/$ck/full]}" "${RATE[fileserver/$ck/full]}")" "$(us_op "${CPU[fsdoor/$ck/full]}" "${RATE[fsdoor/$ck/full]}")"), resumed $(ratio "$(us_op "${CPU[fileserver/$ck/resumed]}" "${RATE[fileserver/$ck/resumed]}")" "$(us_op "${CPU[fsdoor/$ck/resumed]}" "${RATE[fsdoor/$ck/resumed]}")") (target >= 0.8)"
  done
  echo "# ratios to nginx (same certificate): full, resumed, requests"
  for n in "${ROWS[@]}"; do
    [[ $n == nginx/* || -n ${NOTE[$n]:-} ]] && continue
    ng=nginx/${n#*/}
    printf '%-26s %8s %8s %8s\n' "$(label "$n") ${n#*/}" "$(ratio "${RATE[$n/full]:-0}" "${RATE[$ng/full]:-0}")" \
      "$(ratio "${RATE[$n/resumed]:-0}" "${RATE[$ng/resumed]:-0}")" "$(ratio "${RATE[$n/requests]:-0}" "${RATE[$ng/requests]:-0}")"
  done
} | tee "$OUT/server.txt"

# ------------------------------------------------------------------ chart ---
if command -v gnuplot >/dev/null; then
  dat=$RUN/chart.dat
  for n in "${ROWS[@]}"; do
    [[ -n ${NOTE[$n]:-} ]] && continue
    echo "\"$(label "$n") ${n#*/}\" ${RATE[$n/full]:-0} ${RATE[$n/resumed]:-0}"
  done >"$dat"
  gnuplot <<EOF 2>/dev/null && echo "chart: $OUT/server.png"
set terminal png size 900,500 noenhanced
set yrange [0:*]
set output "$OUT/server.png"
set title "TLS 1.3 handshakes/s on one core (x25519)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8
set ylabel "handshakes/s"
set xtics rotate by -20
plot "$dat" using 2:xtic(1) title "full", "" using 3 title "resumed"
EOF
fi
echo "results: $OUT/server.txt"
