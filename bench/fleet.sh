#!/usr/bin/env bash
# bench/fleet.sh [BUILD] — full vs resumed handshakes/s across a fleet of three servers, with and
# without the shared state (issue 12).  Run by `make bench` (the fleet block of the Makefile) and
# `make bench-fleet`.
#
# The fleet: three ktlsx-fileserver processes (--workers 1) on ONE port of 127.0.0.1, each with
# SO_REUSEPORT (the file server always sets it): the kernel spreads the connections over the three
# by a hash of the 4-tuple, the way a load balancer without stickiness does, so a reconnection
# lands on any of the three.  All three are pinned to CPU $SERVER_CPU (default 0), memcached too;
# ktlsx-load on CPU $CLIENT_CPU (default 1).  ktlsx-load's resumed mode offers each thread's last
# session on its next connection and reports how many the servers resumed.
#
# Rows (TLS 1.2 by session ID with --no-tickets; TLS 1.3 by ticket), each: handshakes/s, the share
# resumed, and the servers' CPU per connection (the three file servers' threads, from
# /proc/PID/task/*/schedstat, plus memcached's where it runs: the store's own work is counted):
#   full                        every connection a full handshake (what a miss costs)
#   sid12 / no store            per-server session caches only
#   sid12 / memcached store     --session-cache memcached:... (sealed entries, local cache in front)
#   tickets13 / per-server keys random ticket keys, different on each server
#   tickets13 / shared key file --ticket-key-file, the same file on the three
# and the win as a ratio: CPU per connection without / with the shared state.
# Output: a table on stdout and in BUILD/bench/fleet.txt.
# Environment: FLEET_BENCH_SECONDS (default 4), FLEET_BENCH_CONNS (default 16), SERVER_CPU,
# CLIENT_CPU, FLEET_BENCH_REPEAT (runs per row, the best rate kept, default 1).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${1:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
OUT=$BUILD/bench
LOADGEN=$BUILD/bin/ktlsx-load
FS=$BUILD/bin/ktlsx-fileserver
SECS=${FLEET_BENCH_SECONDS:-4}
CONNS=${FLEET_BENCH_CONNS:-16}
REPEAT=${FLEET_BENCH_REPEAT:-1}
SCPU=${SERVER_CPU:-0}
CCPU=${CLIENT_CPU:-1}
CERTS=${BENCH_CERTS:-$OUT/certs}
[[ $CERTS == /* ]] || CERTS=$ROOT/$CERTS

say() { echo "bench/fleet.sh: $*" >&2; }
for b in "$LOADGEN" "$FS"; do [[ -x $b ]] || { say "$b not built (make all)"; exit 1; }; done
command -v python3 >/dev/null || { say "python3 is needed to read ktlsx-load's JSON"; exit 1; }
command -v memcached >/dev/null || { say "memcached is not installed (tools/install-deps.sh): no fleet rows"; exit 0; }
if (( $(nproc) < 2 )); then say "only $(nproc) CPU: servers and client share it"; SCPU=0 CCPU=0; fi
PIN_S=(taskset -c "$SCPU") PIN_C=(--cpu "$CCPU")
command -v taskset >/dev/null || { say "taskset missing: servers not pinned"; PIN_S=(); }

mkdir -p "$OUT"
tests/certs/gen.sh "$CERTS" >/dev/null || exit 1
RUN=$(mktemp -d /tmp/ktlsx-bench-fleet.XXXXXX) || exit 1
declare -a PIDS=()
MC_PID=
stop_all() {
  local p
  for p in "${PIDS[@]}" $MC_PID; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" $MC_PID; do wait "$p" 2>/dev/null; done
  PIDS=() MC_PID=
}
trap 'stop_all; rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$RUN/www"
echo fleet >"$RUN/www/index.html"
head -c 48 /dev/urandom >"$RUN/store.key"
head -c 80 /dev/urandom >"$RUN/ticket.key"
chmod 600 "$RUN/store.key" "$RUN/ticket.key"

free_port() {
  local p lo
  lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  (( ${lo:-0} > 12000 )) || lo=32768
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % (lo - 10000)))
    ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}
listeners() { ss -Hltn "sport = :$1" 2>/dev/null | grep -c .; }
PORT=$(free_port) MC_PORT=$(free_port)

# cpu_ns PID...: the CPU time of every thread of these processes so far (ns)
cpu_ns() {
  local p t v sum=0
  for p in "$@"; do
    for t in /proc/"$p"/task/*/schedstat; do read -r v _ <"$t" 2>/dev/null && sum=$((sum + v)); done
  done
  echo "$sum"
}

start_memcached() {
  local u=(); (( EUID == 0 )) && u=(-u root)
  "${PIN_S[@]}" memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 64 -t 1 "${u[@]}" >"$RUN/memcached.log" 2>&1 &
  MC_PID=$!
  for _ in $(seq 100); do (( $(listeners "$MC_PORT") >= 1 )) && return 0; sleep 0.05; done
  return 1
}
start_fleet() { # start_fleet ARGS...: three file servers on $PORT
  local i
  for i in 1 2 3; do
    "${PIN_S[@]}" "$FS" --root "$RUN/www" --listen "127.0.0.1:$PORT" --cert "$CERTS/server-ecdsa.pem" \
      --key "$CERTS/server-ecdsa.key" --workers 1 "$@" </dev/null >"$RUN/fs$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 200); do (( $(listeners "$PORT") >= 3 )) && return 0; sleep 0.05; done
  say "the three file servers did not all listen on $PORT"; cat "$RUN"/fs*.log >&2
  return 1
}

RESULT=$OUT/fleet.txt
declare -A CPU RATE PCT
# row NAME MODE TLS RESUME SERVER-ARGS...: one row of the table (the best of REPEAT runs)
row() {
  local name=$1 mode=$2 tls=$3 resume=$4; shift 4
  local r best=0 j c0 c1 pids
  for (( r = 0; r < REPEAT; r++ )); do
    stop_all
    if [[ " $* " == *memcached:* ]]; then start_memcached || { say "memcached did not start"; return 1; }; fi
    start_fleet "$@" || return 1
    pids=("${PIDS[@]}" $MC_PID)
    c0=$(cpu_ns "${pids[@]}")
    local extra=(); [[ $mode == resumed && $tls == 1.2 ]] && extra=(--resume "$resume")
    j=$("$LOADGEN" "127.0.0.1:$PORT" --mode "$mode" --tls "$tls" "${extra[@]}" --connections "$CONNS" \
        --duration "$SECS" --warmup 0 --ca "$CERTS/ca.pem" --sni localhost "${PIN_C[@]}" --json 2>"$RUN/load.err")
    c1=$(cpu_ns "${pids[@]}")
    local parsed
    parsed=$(python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["rate"], d["handshakes"], d.get("resumed_pct", 0), d["errors"]["total"])' <<<"$j" 2>/dev/null) ||
      { say "$name: ktlsx-load failed: $(head -c 300 "$RUN/load.err")"; return 1; }
    local rate hs pct errs
    read -r rate hs pct errs <<<"$parsed"
    (( errs > 0 )) && say "$name: $errs errors ($(head -c 200 "$RUN/load.err"))"
    if python3 -c "import sys; sys.exit(0 if $rate > $best else 1)"; then
      best=$rate
      RATE[$name]=$rate PCT[$name]=$pct
      # per connection: the run has no warmup, so every handshake is in the count
      CPU[$name]=$(( hs > 0 ? (c1 - c0) / hs / 1000 : 0 ))
    fi
  done
  printf '%-34s %10.0f %9s %10s\n' "$name" "${RATE[$name]}" "${PCT[$name]} %" "${CPU[$name]} us" | tee -a "$RESULT"
}

{
  echo "# fleet: 3 x ktlsx-fileserver on one port (SO_REUSEPORT), pinned to CPU $SCPU; ktlsx-load on CPU $CCPU," \
       "$CONNS connections, ${SECS}s per row, ECDSA P-256, $(date -u +%Y-%m-%dT%H:%MZ)"
  printf '%-34s %10s %9s %10s\n' "row" "hs/s" "resumed" "CPU/conn"
} | tee "$RESULT"
MCA=memcached:127.0.0.1:$MC_PORT
row "full (TLS 1.3)" full 1.3 ticket
row "full (TLS 1.2)" full 1.2 id --no-tickets
row "sid12, no store" resumed 1.2 id --no-tickets
row "sid12, memcached store" resumed 1.2 id --no-tickets --session-cache "$MCA" --session-store-key "$RUN/store.key"
row "tickets13, per-server keys" resumed 1.3 ticket
row "tickets13, shared key file" resumed 1.3 ticket --ticket-key-file "$RUN/ticket.key"
stop_all
ratio() { python3 -c "print('%.2f' % ($1 / $2))" 2>/dev/null || echo "?"; }
{
  a=${CPU["sid12, no store"]:-0} b=${CPU["sid12, memcached store"]:-0}
  (( a > 0 && b > 0 )) && echo "win, TLS 1.2 session IDs: CPU per connection ${a} -> ${b} us with the memcached store: $(ratio "$a" "$b")x"
  a=${CPU["tickets13, per-server keys"]:-0} b=${CPU["tickets13, shared key file"]:-0}
  (( a > 0 && b > 0 )) && echo "win, TLS 1.3 tickets: CPU per connection ${a} -> ${b} us with a shared key file: $(ratio "$a" "$b")x"
  a=${RATE["sid12, no store"]:-0} b=${RATE["sid12, memcached store"]:-0}
  [[ $a != 0 && $b != 0 ]] && echo "handshakes/s, TLS 1.2 session IDs: $(ratio "$b" "$a")x with the store"
  a=${RATE["tickets13, per-server keys"]:-0} b=${RATE["tickets13, shared key file"]:-0}
  [[ $a != 0 && $b != 0 ]] && echo "handshakes/s, TLS 1.3 tickets: $(ratio "$b" "$a")x with the shared key file"
} | tee -a "$RESULT"
echo "results: $RESULT"
