#!/usr/bin/env bash
# tests/fleet/fleet.sh — a fleet resumes like one box (issue 12): three `ktlsx server` instances,
# each in a network namespace of its own created here (veth pairs to a "hub" namespace that holds
# memcached and the clients; every address lives only inside those namespaces), one memcached, and
# clients that round-robin their reconnections over the three (each reconnection offers the session
# the previous connection, on another server, saved).
#
#  setup            the namespaces (or, where they cannot be made, three loopback ports: said so)
#  sid12/ktlsx      TLS 1.2 session IDs (tickets off), shared through memcached: >= 99 % of
#                   the reconnections resumed (ktlsx client --sess-in/--sess-out)
#  sid12/openssl    the same with openssl s_client -tls1_2 -no_ticket -sess_in/-sess_out
#  sid12/no-store   the same fleet without the store: the rate a fleet gets without shared state
#                   (measured; must stay under 50 %, else the test above proves nothing)
#  tickets12        TLS 1.2 tickets under a shared ticket key file: >= 99 %
#  tickets13        TLS 1.3 tickets under a shared ticket key file: >= 99 %
#  tickets13/no-shared-key  random per-server keys: the rate without the shared file (< 50 %)
#  memcached-killed memcached killed halfway through N pairs (a fresh TLS 1.2 session made on
#                   one server, offered on the next, which has it only from memcached): >= 99 %
#                   resumed before the kill, every handshake completes after it, every offered
#                   session a clean full handshake; no memcached operation in any server past the
#                   store timeout (the library warns when one is), no connection longer than twice the
#                   slowest before the kill + the timeout + 1000 ms (a shared machine)
#  memcached-stalled  the same with memcached stopped (SIGSTOP: connects, never answers): every
#                   operation runs into the store timeout, bounded the same way
#  rotation/*       the ticket key rotation procedure across the fleet, one server at a time:
#                   new key added to open only, then to seal, old kept, then dropped; tickets
#                   sealed with the old key resume until it is dropped, then full handshakes
#                   cleanly; skipping the open-only step makes a new ticket miss on the others
#  store/corrupted, store/forged, store/moved  a memcached entry with a byte flipped, replaced
#                   by a well-shaped forgery, or replaced by another session's genuine entry: the
#                   reconnection is a clean full handshake and the entry is deleted
#  fileserver/*    three ktlsx-fileserver instances with --session-cache memcached:... and
#                   --ticket-key-file: TLS 1.2 session IDs (openssl -no_ticket) and TLS 1.3
#                   tickets >= 99 % resumed; the options' refusals
#  ktlsxd/sid12     three ktlsxd daemons (session_cache = memcached:... in their server profile),
#                   under their seccomp filter, each behind a `ktlsx server --daemon`: >= 99 %
#                   resumed; ktlsxctl sessions shows the store's hits, and that each daemon's own
#                   cache fills from memcached (at most 4 lookups for one chained session)
#  ktlsxd/rotation-file  the rotation done by writing key files only (fixed names current/next/
#                   previous.key): each daemon reloads when a file changes (a half-written file:
#                   that reload refused, the running keys kept); ktlsxctl ticket-keys
#                   shows names and ages at each step, never key bytes; old tickets resume until
#                   the old key is dropped, then full handshakes
#  servers-sane     no sanitizer report in any server's or daemon's log
# Every run's rate (and the servers' CPU per connection over it, from schedstat) goes to
# $WORK/rates.txt: the numbers in docs/fleet.md.
# Environment (besides tests/lib.sh's): FLEET_N reconnections per run (default 100; QUICK=1: 30),
#   FLEET_STORE_TIMEOUT_MS (default 300), FLEET_NO_NETNS=1 (loopback ports even where netns work).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

N=${FLEET_N:-100}
(( QUICK )) && N=${FLEET_N:-30}
# 1000 ms, not the 300 ms a deployment would pick: on a loaded 2-core machine (VMs beside the
# test) one memcached set took longer than 300 ms, the store then left that server alone for a
# second (MC_DOWN_MS) and 9 of 50 reconnections before the fault were full handshakes -- correct
# behaviour, but not what the >= 99 % rate check measures.  The bound checks use the same value.
STORE_TMO_MS=${FLEET_STORE_TIMEOUT_MS:-1000}
SPORT=4433
RUN=$WORK/run
mkdir -p "$RUN"
TAG=kxf$(( $$ % 100000 ))
HUB=$TAG-hub
NETNS=0
declare -a SNS=() SADDR=() SPORTS=() SPID=(0 0 0 0)
HUBX=
MC_ADDR= MC_PORT=11211 MC_PID=
STORE_KEY=$RUN/store.key TK_OLD=$RUN/ticket-old.key TK_NEW=$RUN/ticket-new.key

cleanup_ns() {
  local ns p
  for ns in "$HUB" "$TAG-s1" "$TAG-s2" "$TAG-s3"; do
    ip netns pids "$ns" 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  return 0
}
trap 'rc=$?; (( NETNS )) && cleanup_ns; (exit $rc); _lib_exit' EXIT

ms_now() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }

# ---------------------------------------------------------------- network ---

make_netns() {
  (( ${FLEET_NO_NETNS:-0} )) && return 1
  have ip || return 1
  ip netns add "$HUB" 2>/dev/null || return 1
  NETNS=1
  ip -n "$HUB" link set lo up || return 1
  local i
  for i in 1 2 3; do
    ip netns add "$TAG-s$i" || return 1
    ip -n "$TAG-s$i" link set lo up || return 1
    ip link add "${TAG}h$i" netns "$HUB" type veth peer name "${TAG}s$i" netns "$TAG-s$i" || return 1
    ip -n "$HUB" addr add "10.77.$i.1/24" dev "${TAG}h$i" || return 1
    ip -n "$HUB" link set "${TAG}h$i" up || return 1
    ip -n "$TAG-s$i" addr add "10.77.$i.2/24" dev "${TAG}s$i" || return 1
    ip -n "$TAG-s$i" link set "${TAG}s$i" up || return 1
    SNS[$i]="ip netns exec $TAG-s$i"
    SADDR[$i]=10.77.$i.2
    SPORTS[$i]=$SPORT
  done
  HUBX="ip netns exec $HUB"
  MC_ADDR=0.0.0.0
  # a veth link may take a moment to come up (both ends: operationally UP)
  local t
  for t in $(seq 50); do
    ip -n "$HUB" -o link show | grep -c "${TAG}h[123]@.*state UP" | grep -qx 3 && return 0
    sleep 0.1
  done
  return 1
}

use_loopback() {
  (( NETNS )) && cleanup_ns
  NETNS=0
  local i
  for i in 1 2 3; do SNS[$i]=; SADDR[$i]=127.0.0.1; SPORTS[$i]=$(free_port); done
  HUBX=
  MC_ADDR=127.0.0.1 MC_PORT=$(free_port)
}

# memcached address as server i sees it
mc_for() { if (( NETNS )); then echo "10.77.$1.1:$MC_PORT"; else echo "127.0.0.1:$MC_PORT"; fi; }

listening() { # listening NSX PORT
  $1 ss -Htln 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$2\$"
}

start_memcached() {
  local u=(); (( $(id -u) == 0 )) && u=(-u root)
  # not under `timeout`: ip netns exec execs memcached itself, so $! is memcached (killed by id)
  $HUBX memcached -l "$MC_ADDR" -p "$MC_PORT" -U 0 -m 32 -t 2 "${u[@]}" >"$RUN/memcached.log" 2>&1 &
  MC_PID=$!
  ALL_PIDS+=("$MC_PID")
  local t
  for t in $(seq 100); do
    listening "$HUBX" "$MC_PORT" && return 0
    kill -0 "$MC_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

stop_memcached() { # abruptly, as a crash would
  [[ -n $MC_PID ]] || return 0
  kill -KILL "$MC_PID" 2>/dev/null; wait "$MC_PID" 2>/dev/null
  MC_PID=
}

# ---------------------------------------------------------------- servers ---

stop_server() { # stop_server I
  local i=$1
  (( SPID[i] )) || return 0
  kill -TERM "${SPID[i]}" 2>/dev/null
  local t
  for t in $(seq 40); do kill -0 "${SPID[i]}" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "${SPID[i]}" 2>/dev/null; wait "${SPID[i]}" 2>/dev/null
  SPID[i]=0
  for t in $(seq 40); do listening "${SNS[i]}" "${SPORTS[i]}" || break; sleep 0.05; done
}

start_server_i() { # start_server_i I ARGS... (ARGS may hold {MC} = this server's memcached address)
  local i=$1; shift
  stop_server "$i"
  local args=() a
  for a in "$@"; do args+=("${a//\{MC\}/$(mc_for "$i")}"); done
  printf '%q ' "${args[@]}" >"$CD/server$i.cmd"; echo >>"$CD/server$i.cmd"
  local keys=(--cert "$CERTS/server-ecdsa.pem" --key "$CERTS/server-ecdsa.key")
  [[ ${args[0]:-} == --daemon ]] && keys=() # the daemon's profile holds them
  ${SNS[i]} timeout -k 2 900 "$KTLSX" server --listen "${SADDR[i]}:${SPORTS[i]}" \
    "${keys[@]}" --reply fleet "${args[@]}" \
    </dev/null >"$CD/server$i.out" 2>>"$CD/server$i.err" &
  SPID[i]=$!
  ALL_PIDS+=("${SPID[i]}")
  local t
  for t in $(seq 200); do
    listening "${SNS[i]}" "${SPORTS[i]}" && return 0
    kill -0 "${SPID[i]}" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

start_fleet() { # start_fleet ARGS...: all three with the same arguments
  local i
  for i in 1 2 3; do start_server_i "$i" "$@" || return 1; done
}

stop_fleet() { local i; for i in 1 2 3; do stop_server "$i"; done; }

STORE_ARGS=(--session-store "memcached:{MC}" --session-store-key "$STORE_KEY"
            --session-store-timeout "$STORE_TMO_MS")

# ---------------------------------------------------------------- clients ---

# conn I CLIENT VERSION IN OUT: one connection to server I with `ktlsx` or `openssl`; sets
# R_RC, R_RESUMED (1/0), R_MS (wall clock, client start to exit), and logs a line to conns.log.
conn() {
  local i=$1 client=$2 v=$3 in=$4 out=$5 t0 t1
  t0=$(ms_now)
  if [[ $client == ktlsx ]]; then
    printf 'GET / HTTP/1.0\r\n\r\n' | $HUBX timeout -k 2 "$TMO" "$KTLSX" client "${SADDR[i]}:${SPORTS[i]}" \
      --verify-name localhost --ca "$CERTS/ca.pem" --tls-version "$v" ${in:+--sess-in "$in"} \
      --sess-out "$out" >"$CD/c.out" 2>"$CD/c.err"
    R_RC=$?
    t1=$(ms_now)
    R_RESUMED=0
    grep -aq '^ktlsx: handshake ok .*resumed=1' "$CD/c.err" && R_RESUMED=1
    (( R_RC == 0 )) && ! grep -aq '^ktlsx: handshake ok' "$CD/c.err" && R_RC=99
  else
    local o=-no_ticket; [[ $v == 1.3 ]] && o=
    printf 'GET / HTTP/1.0\r\n\r\n' | $HUBX timeout -k 2 "$TMO" openssl s_client \
      -connect "${SADDR[i]}:${SPORTS[i]}" -tls"${v/./_}" $o -CAfile "$CERTS/ca.pem" -verify_return_error \
      -ign_eof ${in:+-sess_in "$in"} -sess_out "$out" >"$CD/c.out" 2>"$CD/c.err"
    R_RC=$?
    t1=$(ms_now)
    R_RESUMED=0
    grep -aq '^Reused,' "$CD/c.out" && R_RESUMED=1
    (( R_RC == 0 )) && ! grep -aqE '^(New|Reused),' "$CD/c.out" && R_RC=99
  fi
  R_MS=$(( t1 - t0 ))
  echo "server=$i rc=$R_RC resumed=$R_RESUMED ms=$R_MS" >>"$CD/conns.log"
  if (( R_RC != 0 )); then
    { echo "--- connection to server $i failed (rc $R_RC)"; cat "$CD/c.err"; tail -5 "$CD/c.out"; } >>"$CD/failed.log"
  fi
}

# chain CLIENT VERSION COUNT [FAULT_AT FAULT...]: a full handshake on server 1, then COUNT
# reconnections round-robin (server 2, 3, 1, ...), each offering the session the previous one
# saved. Sets C_RESUMED, C_FAILED, C_MAX_BEFORE/C_MAX_AFTER (slowest connection before/after
# FAULT_AT, where the command FAULT... runs before reconnection FAULT_AT), C_FULL_AFTER.
chain() {
  local client=$1 v=$2 count=$3 kill_at=${4:-0} k i sess=$CD/sess
  local fault=("${@:5}")
  C_RESUMED=0 C_FAILED=0 C_MAX_BEFORE=0 C_MAX_AFTER=0 C_FULL_AFTER=0
  rm -f "$sess"
  for (( k = 0; k <= count; k++ )); do
    (( kill_at && k == kill_at )) && "${fault[@]}"
    i=$(( k % 3 + 1 ))
    conn "$i" "$client" "$v" "$( (( k )) && [[ -s $sess ]] && echo "$sess")" "$sess.new"
    if (( R_RC != 0 )); then
      C_FAILED=$(( C_FAILED + 1 ))
    else
      (( k && R_RESUMED )) && C_RESUMED=$(( C_RESUMED + 1 ))
      [[ -s $sess.new ]] && mv -f "$sess.new" "$sess"
    fi
    if (( kill_at && k >= kill_at )); then
      (( R_MS > C_MAX_AFTER )) && C_MAX_AFTER=$R_MS
      (( R_RC == 0 && ! R_RESUMED )) && C_FULL_AFTER=$(( C_FULL_AFTER + 1 ))
    elif (( k )); then
      (( R_MS > C_MAX_BEFORE )) && C_MAX_BEFORE=$R_MS
    fi
  done
}

# CPU time (ns) the three servers have used so far: every task of each `ktlsx server`
# (the child of its `timeout` wrapper), from /proc/PID/task/*/schedstat; 0 where unreadable.
servers_cpu_ns() {
  local i c t sum=0 v
  for i in 1 2 3; do
    (( SPID[i] )) || continue
    for c in $(ps -o pid= --ppid "${SPID[i]}" 2>/dev/null); do
      for t in /proc/$c/task/*/schedstat; do
        read -r v _ <"$t" 2>/dev/null && sum=$(( sum + v ))
      done
    done
  done
  echo "$sum"
}

pct() { echo "$(( $1 * 1000 / $2 / 10 )).$(( $1 * 1000 / $2 % 10 ))"; }

RATES=$WORK/rates.txt
: >"$RATES"
rate_line() { echo "$1: $2/$3 reconnections resumed ($(pct "$2" "$3") %)${CPU_NOTE:-}" | tee -a "$RATES" >&2; }

# chain_cpu ARGS...: chain, and CPU_NOTE = the servers' CPU per connection over it
chain_cpu() {
  local c0 c1
  c0=$(servers_cpu_ns)
  chain "$@"
  c1=$(servers_cpu_ns)
  CPU_NOTE=
  (( c0 > 0 && c1 > c0 )) && CPU_NOTE="; server CPU $(( (c1 - c0) / ($3 + 1) / 1000 )) us per connection"
}

# resumed_run NAME CLIENT VERSION: >= 99 % of N reconnections resumed, none failed
resumed_run() {
  chain_cpu "$2" "$3" "$N"
  rate_line "$NAME_PREFIX$1" "$C_RESUMED" "$N"
  if (( C_FAILED )); then fail "$C_FAILED connections failed" "$CD/failed.log" "$CD/server1.err"; return; fi
  if (( C_RESUMED * 100 < N * 99 )); then
    fail "$C_RESUMED/$N reconnections resumed: want >= 99 %" "$CD/conns.log" "$CD/server1.err" "$CD/server2.err"
    return
  fi
  pass
}

# baseline_run NAME CLIENT VERSION: without shared state the rate stays under 50 %
baseline_run() {
  chain_cpu "$2" "$3" "$N"
  rate_line "$NAME_PREFIX$1" "$C_RESUMED" "$N"
  if (( C_FAILED )); then fail "$C_FAILED connections failed" "$CD/failed.log"; return; fi
  if (( C_RESUMED * 2 >= N )); then fail "$C_RESUMED/$N resumed without shared state: the fleet is not three boxes" "$CD/conns.log"; return; fi
  pass
}

# ================================================================== cases ===

need_ktlsx || { log "$SKIP_WHY"; case_begin setup && skip "$SKIP_WHY"; finish; }
gen_certs || exit 1
head -c 48 /dev/urandom >"$STORE_KEY"
head -c 80 /dev/urandom >"$TK_OLD"
head -c 80 /dev/urandom >"$TK_NEW"
chmod 600 "$STORE_KEY" "$TK_OLD" "$TK_NEW"

# The fleet is set up whatever ONLY selects; the setup case reports it.
SETUP_ERR=
if ! have memcached; then
  case_begin setup && skip "memcached is not installed (tools/install-deps.sh installs it)"
  finish
fi
if make_netns; then
  log "three servers in network namespaces $TAG-s1..3 (10.77.{1,2,3}.2), memcached and clients in $HUB"
  echo "network namespaces" >"$WORK/topology.txt"
else
  log "network namespaces cannot be made here: three loopback ports instead"
  echo "loopback ports (no network namespaces here)" >"$WORK/topology.txt"
  use_loopback
fi
start_memcached || SETUP_ERR="memcached did not start"
if case_begin setup; then
  if [[ -n $SETUP_ERR ]]; then fail "$SETUP_ERR" "$RUN/memcached.log"; else pass; fi
fi
[[ -z $SETUP_ERR ]] || finish

if case_begin sid12/ktlsx; then
  if start_fleet --no-tickets "${STORE_ARGS[@]}"; then resumed_run sid12/ktlsx ktlsx 1.2
  else fail "a server did not start"; fi
fi

if case_begin sid12/openssl; then
  if start_fleet --no-tickets "${STORE_ARGS[@]}"; then resumed_run sid12/openssl openssl 1.2
  else fail "a server did not start"; fi
fi

if case_begin sid12/no-store; then
  if start_fleet --no-tickets; then baseline_run sid12/no-store ktlsx 1.2
  else fail "a server did not start"; fi
fi

if case_begin tickets12; then
  if start_fleet --ticket-key-file "$TK_OLD" "${STORE_ARGS[@]}"; then resumed_run tickets12 ktlsx 1.2
  else fail "a server did not start"; fi
fi

if case_begin tickets13; then
  if start_fleet --ticket-key-file "$TK_OLD" "${STORE_ARGS[@]}"; then resumed_run tickets13 ktlsx 1.3
  else fail "a server did not start"; fi
fi

if case_begin tickets13/no-shared-key; then
  if start_fleet; then baseline_run tickets13/no-shared-key ktlsx 1.3
  else fail "a server did not start"; fi
fi

# pairs COUNT FAULT_AT FAULT...: COUNT pairs of connections, each a fresh session made on one
# server (a full handshake) and offered on the next one (server 2 after 1, 3 after 2, 1 after 3),
# which has it only from memcached: each server keeps the sessions it resumed from memcached in
# its own cache, so a chained session would stop needing memcached after one round.  FAULT runs
# before pair FAULT_AT.  Sets C_RESUMED (second connections resumed before the fault),
# C_FULL_AFTER (second connections after it that were clean full handshakes), C_FAILED,
# C_MAX_BEFORE / C_MAX_AFTER (slowest connection of either kind before / after the fault).
pairs() {
  local count=$1 fault_at=$2 p a b
  local fault=("${@:3}")
  C_RESUMED=0 C_FAILED=0 C_MAX_BEFORE=0 C_MAX_AFTER=0 C_FULL_AFTER=0
  for (( p = 0; p < count; p++ )); do
    (( p == fault_at )) && "${fault[@]}"
    a=$(( p % 3 + 1 )) b=$(( (p + 1) % 3 + 1 ))
    rm -f "$CD/pair"
    conn "$a" ktlsx 1.2 "" "$CD/pair"
    if (( R_RC != 0 )); then C_FAILED=$(( C_FAILED + 1 )); fi
    local first_ms=$R_MS
    if (( R_RC == 0 )) && [[ -s $CD/pair ]]; then
      conn "$b" ktlsx 1.2 "$CD/pair" "$CD/pair.new"
      if (( R_RC != 0 )); then C_FAILED=$(( C_FAILED + 1 ))
      elif (( p < fault_at && R_RESUMED )); then C_RESUMED=$(( C_RESUMED + 1 ))
      elif (( p >= fault_at && ! R_RESUMED )); then C_FULL_AFTER=$(( C_FULL_AFTER + 1 ))
      fi
    fi
    (( R_MS < first_ms )) && R_MS=$first_ms
    if (( p >= fault_at )); then (( R_MS > C_MAX_AFTER )) && C_MAX_AFTER=$R_MS
    else (( R_MS > C_MAX_BEFORE )) && C_MAX_BEFORE=$R_MS; fi
  done
}

# fault_run NAME FAULT...: TLS 1.2 session-ID pairs with FAULT done to memcached halfway
fault_run() {
  local name=$1; shift
  # The promise (no memcached operation past the store timeout) is measured inside the servers
  # (their warning fails the case).  The client's wall clock (process start included) is only a
  # gross check, with room for a shared 2-core machine: twice the slowest before the fault, plus
  # the timeout, plus FLEET_SLACK_MS (1000): under a load average of 5, single connections of
  # 1.5 s were seen after a stall with no server warning.
  local half=$(( N / 2 )) slack=${FLEET_SLACK_MS:-1000}
  CPU_NOTE=
  pairs "$N" "$half" "$@"
  echo "$NAME_PREFIX$name: $C_RESUMED/$half resumed before the fault, $C_FULL_AFTER/$(( N - half )) full after;" \
       "slowest connection ${C_MAX_BEFORE} ms before, ${C_MAX_AFTER} ms after (store timeout ${STORE_TMO_MS} ms)" | tee -a "$RATES" >&2
  if (( C_FAILED )); then
    fail "$C_FAILED handshakes did not complete" "$CD/failed.log" "$CD/server1.err"
  elif (( C_RESUMED * 100 < half * 99 )); then
    fail "only $C_RESUMED/$half resumed through memcached before the fault" "$CD/conns.log"
  elif (( C_FULL_AFTER != N - half )); then
    # the session was made on another server: without memcached, nothing can resume it
    fail "$C_FULL_AFTER/$(( N - half )) clean full handshakes after the fault: was memcached out?" "$CD/conns.log"
  elif over=$(grep -ah 'memcached store: a .* over its' "$CD"/server[123].err) && [[ -n $over ]]; then
    # measured inside the servers: a single memcached operation past the store timeout
    fail "${over//$'\n'/; }" "$CD/server1.err" "$CD/server2.err" "$CD/server3.err"
  elif (( C_MAX_AFTER > 2 * C_MAX_BEFORE + STORE_TMO_MS + slack )); then
    fail "a handshake took ${C_MAX_AFTER} ms (before: ${C_MAX_BEFORE} ms, store timeout ${STORE_TMO_MS} ms, slack ${slack} ms)" "$CD/conns.log"
  else
    pass
  fi
}

if case_begin memcached-killed; then
  if start_fleet --no-tickets "${STORE_ARGS[@]}"; then fault_run memcached-killed stop_memcached
  else fail "a server did not start"; fi
  [[ -n $MC_PID ]] || start_memcached || log "memcached did not restart"
fi

if case_begin memcached-stalled; then
  # SIGSTOP: connections still complete (the kernel's backlog), nothing answers: every
  # operation runs into the store timeout, then the server is left alone for a second.
  if start_fleet --no-tickets "${STORE_ARGS[@]}"; then fault_run memcached-stalled kill -STOP "$MC_PID"
  else fail "a server did not start"; fi
  kill -CONT "$MC_PID" 2>/dev/null
fi

# ---- ticket key rotation across the fleet, one server at a time ----
# r_try NAME I SESSION WANT: a TLS 1.3 connection to server I offering SESSION; WANT 1 = resumed,
# 0 = a clean full handshake.  Failures collect in ROT_BAD.
ROT_BAD=
r_try() {
  local name=$1 i=$2 s=$3 want=$4
  conn "$i" ktlsx 1.3 "$s" "$CD/r.out"
  if (( R_RC != 0 )); then ROT_BAD+="$name: server $i: handshake failed (rc $R_RC); "
  elif (( R_RESUMED != want )); then ROT_BAD+="$name: server $i: resumed=$R_RESUMED, want $want; "
  fi
}
# r_ticket I FILE: a fresh TLS 1.3 session (full handshake) from server I into FILE
r_ticket() {
  conn "$1" ktlsx 1.3 "" "$2"
  [[ $R_RC == 0 && -s $2 ]] || ROT_BAD+="ticket from server $1: none (rc $R_RC); "
}

if case_begin rotation/procedure; then
  ROT_BAD=
  if start_fleet --ticket-key-file "$TK_OLD"; then
    r_ticket 1 "$CD/t-old"
    # Step 1: the new key joins to open only (second in the list), one server at a time.
    start_server_i 1 --ticket-key-file "$TK_OLD" --ticket-key-file "$TK_NEW"
    r_ticket 1 "$CD/t-old-2"                     # server 1 still seals with the old key
    for i in 2 3; do r_try step1/old-ticket $i "$CD/t-old-2" 1; done
    start_server_i 2 --ticket-key-file "$TK_OLD" --ticket-key-file "$TK_NEW"
    start_server_i 3 --ticket-key-file "$TK_OLD" --ticket-key-file "$TK_NEW"
    # Step 2: every server opens the new key; now it seals (first), one server at a time.
    start_server_i 1 --ticket-key-file "$TK_NEW" --ticket-key-file "$TK_OLD"
    r_ticket 1 "$CD/t-new"                       # sealed with the new key
    for i in 2 3; do r_try step2/new-ticket-on-old-sealers $i "$CD/t-new" 1; done
    start_server_i 2 --ticket-key-file "$TK_NEW" --ticket-key-file "$TK_OLD"
    start_server_i 3 --ticket-key-file "$TK_NEW" --ticket-key-file "$TK_OLD"
    for i in 1 2 3; do r_try step2/old-ticket $i "$CD/t-old" 1; done
    for i in 1 2 3; do r_try step2/new-ticket $i "$CD/t-new" 1; done
    # Step 3 (after the ticket lifetime): the old key is dropped.
    start_fleet --ticket-key-file "$TK_NEW"
    for i in 1 2 3; do r_try step3/old-ticket $i "$CD/t-old" 0; done
    for i in 1 2 3; do r_try step3/new-ticket $i "$CD/t-new" 1; done
    if [[ -n $ROT_BAD ]]; then fail "$ROT_BAD" "$CD/conns.log"; else pass; fi
  else
    fail "a server did not start"
  fi
fi

if case_begin rotation/skipped-open-step; then
  # Sealing with a new key on one server before the others open it: its tickets miss on them
  # (a clean full handshake, which is what the open-only step prevents).
  ROT_BAD=
  if start_fleet --ticket-key-file "$TK_OLD"; then
    start_server_i 1 --ticket-key-file "$TK_NEW" --ticket-key-file "$TK_OLD"
    r_ticket 1 "$CD/t-new"
    for i in 2 3; do r_try new-ticket-elsewhere $i "$CD/t-new" 0; done
    r_try new-ticket-home 1 "$CD/t-new" 1
    if [[ -n $ROT_BAD ]]; then fail "$ROT_BAD" "$CD/conns.log"; else pass; fi
  else
    fail "a server did not start"
  fi
fi

# ---- store/*: what an attacker with write access to memcached can do ----
# A fresh TLS 1.2 session made on server 1 (so in memcached, sealed); its entry is then
# corrupted (one byte flipped), forged (a well-shaped "KXM1" blob of random bytes) or
# replaced by another genuine entry (moved under this session's key).  The next
# reconnection, on server 2 (which has the session only from memcached), must be a clean
# full handshake, and the entry gone from memcached (the server deletes what fails to open).
MC_TOOL=$ROOT/tests/fleet/mc_tool.py
mc_hub_addr() { if (( NETNS )); then echo "10.77.1.1"; else echo "127.0.0.1"; fi; }
mc() { $HUBX timeout -k 2 20 python3 "$MC_TOOL" "$(mc_hub_addr)" "$MC_PORT" "$@"; }
# store_fresh FILE: a full handshake on server 1 into FILE; FRESH_KEY = the memcached key it added
store_fresh() {
  local before after
  before=$(mc keys | sort)
  conn 1 ktlsx 1.2 "" "$1"
  after=$(mc keys | sort)
  FRESH_KEY=$(comm -13 <(echo "$before") <(echo "$after") | head -1)
}
store_attack() { # store_attack NAME HOW
  local name=$1 how=$2 key other
  if ! have python3; then skip "python3 is not installed"; return; fi
  if ! start_fleet --no-tickets "${STORE_ARGS[@]}"; then fail "a server did not start"; return; fi
  store_fresh "$CD/s-victim"
  key=$FRESH_KEY
  if [[ -z $key || $R_RC != 0 ]]; then fail "no memcached entry appeared for a fresh session" "$CD/conns.log" "$CD/server1.err"; return; fi
  # control: the untouched entry resumes on server 3 (it only has it from memcached)
  conn 3 ktlsx 1.2 "$CD/s-victim" "$CD/s-ctl"
  if (( R_RC != 0 || ! R_RESUMED )); then fail "control: the untouched entry did not resume on server 3" "$CD/conns.log"; return; fi
  case $how in
    corrupt) mc corrupt "$key" ;;
    forge) mc forge "$key" ;;
    moved) store_fresh "$CD/s-other"; other=$FRESH_KEY; [[ -n $other ]] && mc copy "$other" "$key" ;;
  esac
  if (( $? != 0 )); then fail "could not $how the entry $key" "$CD/conns.log"; return; fi
  conn 2 ktlsx 1.2 "$CD/s-victim" "$CD/s-after"
  if (( R_RC != 0 )); then fail "the handshake after the $how failed (rc $R_RC): want a clean full handshake" "$CD/failed.log" "$CD/server2.err"
  elif (( R_RESUMED )); then fail "resumed from a ${how} entry" "$CD/conns.log" "$CD/server2.err"
  elif mc has "$key"; then fail "the ${how} entry is still in memcached" "$CD/server2.err"
  else echo "$NAME_PREFIX$name: entry $how -> full handshake, entry deleted" >>"$RATES"; pass; fi
}
if case_begin store/corrupted; then store_attack store/corrupted corrupt; fi
if case_begin store/forged; then store_attack store/forged forge; fi
if case_begin store/moved; then store_attack store/moved moved; fi

# ---- fileserver: three ktlsx-fileserver instances with the memcached store and a shared
# ticket key file (its --session-cache memcached:... / --ticket-key-file options) ----
FSBIN=${FILESERVER_BIN:-$(dirname "$KTLSX_ORIG")/ktlsx-fileserver}
start_fs_fleet() { # start_fs_fleet ARGS...
  local i t a args
  stop_fleet
  mkdir -p "$RUN/www"; echo fleet >"$RUN/www/index.html"
  for i in 1 2 3; do
    args=()
    for a in "$@"; do args+=("${a//\{MC\}/$(mc_for "$i")}"); done
    ${SNS[i]} timeout -k 2 900 "$FSBIN" --root "$RUN/www" --listen "${SADDR[i]}:${SPORTS[i]}" \
      --cert "$CERTS/server-ecdsa.pem" --key "$CERTS/server-ecdsa.key" "${args[@]}" \
      </dev/null >"$CD/server$i.out" 2>>"$CD/server$i.err" &
    SPID[i]=$!
    ALL_PIDS+=("${SPID[i]}")
    for t in $(seq 200); do listening "${SNS[i]}" "${SPORTS[i]}" && break; kill -0 "${SPID[i]}" 2>/dev/null || return 1; sleep 0.05; done
    listening "${SNS[i]}" "${SPORTS[i]}" || return 1
  done
}
FS_ARGS=(--session-cache "memcached:{MC}" --session-store-key "$STORE_KEY" --session-store-timeout "$STORE_TMO_MS"
         --ticket-key-file "$TK_OLD")
if case_begin fileserver/options; then
  # the options' refusals: exit 2 and a reason, before anything listens
  bad=
  fs_refuses() { # fs_refuses WANT ARGS...
    local want=$1; shift
    timeout 10 "$FSBIN" --root "$RUN" --listen 127.0.0.1:0 --cert "$CERTS/server-ecdsa.pem" \
      --key "$CERTS/server-ecdsa.key" "$@" >"$CD/o.out" 2>"$CD/o.err" </dev/null
    local rc=$?
    (( rc == 2 )) && grep -q -- "$want" "$CD/o.err" || bad+="'$*': rc $rc, $(head -c 200 "$CD/o.err"); "
  }
  if [[ ! -x $FSBIN ]]; then skip "ktlsx-fileserver not built beside $KTLSX"
  else
    fs_refuses "needs --session-store-key" --session-cache memcached:127.0.0.1:1
    fs_refuses "want memcached:HOST:PORT" --session-cache memcached: --session-store-key "$STORE_KEY"
    fs_refuses "go with --session-cache memcached" --session-store-key "$STORE_KEY"
    fs_refuses "not a number" --session-cache lots
    fs_refuses "bad port" --session-cache memcached:h:99999 --session-store-key "$STORE_KEY"
    fs_refuses "cannot open" --ticket-key-file /nonexistent.key
    fs_refuses "at most 3" --ticket-key-file "$TK_OLD" --ticket-key-file "$TK_OLD" --ticket-key-file "$TK_OLD" --ticket-key-file "$TK_OLD"
    if [[ -n $bad ]]; then fail "$bad"; else pass; fi
  fi
fi
if case_begin fileserver/sid12; then
  if [[ ! -x $FSBIN ]]; then skip "ktlsx-fileserver not built beside $KTLSX"
  elif start_fs_fleet "${FS_ARGS[@]}"; then resumed_run fileserver/sid12 openssl 1.2  # -no_ticket: session IDs only
  else fail "a file server did not start" "$CD/server1.err"; fi
fi
if case_begin fileserver/tickets13; then
  if [[ ! -x $FSBIN ]]; then skip "ktlsx-fileserver not built beside $KTLSX"
  elif start_fs_fleet "${FS_ARGS[@]}"; then resumed_run fileserver/tickets13 ktlsx 1.3
  else fail "a file server did not start" "$CD/server1.err"; fi
fi
stop_fleet

# ---- ktlsxd: three daemons, each behind a `ktlsx server --daemon` ----
# Each namespace runs ktlsxd and a `ktlsx server --daemon` in front of it.  The daemons
# run under their seccomp filter (the plain build: the sanitizer builds run without it).
DBIN=${DAEMON_BIN:-$(dirname "$KTLSX_ORIG")}
declare -a DPID=(0 0 0 0)
DDIR=
stop_daemons() { local i; for i in 1 2 3; do (( DPID[i] )) && { kill -TERM "${DPID[i]}" 2>/dev/null; wait "${DPID[i]}" 2>/dev/null; DPID[i]=0; }; done; }
# start_daemons: ktlsxd -c $CD/ktlsxd$i.conf and its front server, for i = 1..3
start_daemons() {
  local i t
  stop_fleet
  for i in 1 2 3; do
    rm -f "$DDIR/d$i.sock"
    ${SNS[i]} timeout -k 2 900 "$DBIN/ktlsxd" -c "$CD/ktlsxd$i.conf" </dev/null >"$CD/ktlsxd$i.out" 2>"$CD/ktlsxd$i.err" &
    DPID[i]=$!
    ALL_PIDS+=("${DPID[i]}")
    for t in $(seq 100); do [[ -S $DDIR/d$i.sock ]] && break; sleep 0.05; done
    [[ -S $DDIR/d$i.sock ]] || return 1
    start_server_i "$i" --daemon "$DDIR/d$i.sock" --profile web || return 1
  done
}
dctl() { timeout 10 "$DBIN/ktlsxctl" -s "$DDIR/d$1.ctl" "${@:2}"; }
# the filter: in force with TCP sockets in the plain build, off in a sanitizer build (said so)
seccomp_ok() {
  local i
  for i in 1 2 3; do
    grep -aq 'seccomp: allow-list .* in force.*TCP sockets allowed for the memcached session store' "$CD/ktlsxd$i.err" ||
      grep -aq 'seccomp: off in a sanitizer build' "$CD/ktlsxd$i.err" || return 1
  done
}
daemon_head() { # daemon_head I: the [daemon] section shared by the cases
  cat <<CONF
[daemon]
socket = $DDIR/d$1.sock
control_socket = $DDIR/d$1.ctl
log_level = info
CONF
}

if [[ ! -x $DBIN/ktlsxd || ! -x $DBIN/ktlsxctl ]]; then
  for c in ktlsxd/sid12 ktlsxd/rotation-file; do case_begin $c && skip "ktlsxd or ktlsxctl not built beside $KTLSX"; done
else
DDIR=$(mktemp -d /tmp/kxfleet.XXXXXX)

# ktlsxd/sid12: session_cache = memcached:... in the server profile, seccomp on: >= 99 %
# resumed; ktlsxctl sessions shows the store's hits; the local cache in front fills from
# memcached (each daemon asks memcached for a session at most once).
if case_begin ktlsxd/sid12; then
  for i in 1 2 3; do
    { daemon_head "$i"; cat <<CONF

[server web]
cert = $CERTS/server-ecdsa.pem
key = $CERTS/server-ecdsa.key
versions = 1.2
tickets = 0
session_cache = memcached:$(mc_for "$i")
session_store_timeout_ms = $STORE_TMO_MS
session_store_key = $STORE_KEY
allow_uids = $(id -u)
export_state = yes
CONF
    } >"$CD/ktlsxd$i.conf"
  done
  if ! start_daemons; then
    fail "a daemon or its front server did not start" "$CD/ktlsxd1.err" "$CD/ktlsxd2.err" "$CD/ktlsxd3.err"
  elif ! seccomp_ok; then
    fail "a daemon does not run under its seccomp filter with TCP sockets for the store" "$CD/ktlsxd1.err"
  else
    CPU_NOTE=
    chain ktlsx 1.2 "$N"
    rate_line "${NAME_PREFIX}ktlsxd/sid12" "$C_RESUMED" "$N"
    hits=0 gets=0
    for i in 1 2 3; do
      dctl "$i" sessions >"$CD/sessions$i.txt" 2>&1
      h=$(grep -o 'memcached store [0-9]* servers, hits [0-9]*' "$CD/sessions$i.txt" | grep -o '[0-9]*$')
      m=$(grep -o 'misses [0-9]*' "$CD/sessions$i.txt" | grep -o '[0-9]*$')
      hits=$(( hits + ${h:-0} )) gets=$(( gets + ${h:-0} + ${m:-0} ))
    done
    # One session chained over the three: daemon 1 made it, daemons 2 and 3 find it in
    # memcached once each, then in their own cache: 2 hits, whatever N.
    echo "${NAME_PREFIX}ktlsxd/sid12: memcached hits over the three daemons: $hits, lookups $gets (seccomp on where built without sanitizers)" >>"$RATES"
    if (( C_FAILED )); then fail "$C_FAILED connections failed" "$CD/failed.log" "$CD/ktlsxd1.err"
    elif (( C_RESUMED * 100 < N * 99 )); then fail "$C_RESUMED/$N reconnections resumed: want >= 99 %" "$CD/conns.log"
    elif (( hits < 2 )); then fail "ktlsxctl sessions: $hits memcached hits over the three daemons" "$CD/sessions1.txt" "$CD/sessions2.txt"
    elif ! { dctl 2 stats >"$CD/stats2.txt" 2>&1 && grep -qE '^session store \(memcached\) web: hits [1-9][0-9]*, misses [0-9]+, errors [0-9]+' "$CD/stats2.txt"; }; then
      fail "ktlsxctl stats: no store counters with a hit for profile web on daemon 2" "$CD/stats2.txt"
    elif ! { dctl 2 stats --prometheus >"$CD/prom2.txt" 2>&1 && grep -qE '^ktlsxd_session_store_hits_total\{profile="web"\} [1-9]' "$CD/prom2.txt" &&
             grep -qE '^ktlsxd_session_store_errors_total\{profile="web"\} [0-9]+$' "$CD/prom2.txt"; }; then
      fail "ktlsxctl stats --prometheus: no ktlsxd_session_store_*_total for profile web on daemon 2" "$CD/prom2.txt"
    elif (( gets > 4 )); then fail "ktlsxctl sessions: memcached asked $gets times for one session: the local cache does not fill from it" "$CD/sessions2.txt" "$CD/sessions3.txt"
    elif grep -aq 'Operation not permitted' "$CD"/ktlsxd[123].err; then fail "EPERM under the seccomp filter" "$CD/ktlsxd1.err"
    else pass; fi
  fi
  stop_fleet
  stop_daemons
fi

# ktlsxd/rotation-file: TLS 1.3 tickets, keys from three files with fixed names
# (current.key seals; next.key and previous.key open), rotated by writing the files only —
# no SIGHUP, no ktlsxctl reload: each daemon reloads when a key file changes.
#   step 1 (open only): next.key <- NEW
#   step 2 (seal):      previous.key <- current (OLD), then current.key <- NEW
#   step 3 (drop):      previous.key <- NEW, after the ticket lifetime
# ktlsxctl ticket-keys shows each step (names in hex, ages from the files), never key bytes.
hexname() { od -An -tx1 -N16 "$1" | tr -d ' \n'; }
# put_key DIR NAME SRC [AGE]: atomically replace DIR/NAME by a copy of SRC (mtime AGE ago)
put_key() {
  cp "$3" "$1/.$2.tmp" && chmod 600 "$1/.$2.tmp"
  [[ -n ${4:-} ]] && touch -d "$4" "$1/.$2.tmp"
  mv -f "$1/.$2.tmp" "$1/$2"
}
# keys_are WANT: every daemon's ticket-keys lists exactly the names WANT (space-separated,
# sealing first) within 10 s
keys_are() {
  local i t got
  for i in 1 2 3; do
    for t in $(seq 100); do
      dctl "$i" ticket-keys >"$CD/tk$i.txt" 2>&1
      got=$(grep -oE '^  [0-9a-f]{32}' "$CD/tk$i.txt" | tr -d ' ' | tr '\n' ' ')
      [[ "${got% }" == "$1" ]] && break
      sleep 0.1
    done
    [[ "${got% }" == "$1" ]] || { ROT_BAD+="daemon $i: ticket-keys lists '${got% }', want '$1'; "; return 1; }
    cat "$CD/tk$i.txt" >>"$CD/ticket-keys.log"
  done
}
if case_begin ktlsxd/rotation-file; then
  ROT_BAD=
  K1=$TK_OLD K2=$TK_NEW
  n1=$(hexname "$K1") n2=$(hexname "$K2")
  for i in 1 2 3; do
    mkdir -p "$DDIR/k$i"
    for f in current next previous; do put_key "$DDIR/k$i" $f.key "$K1" "2 hours ago"; done
    { daemon_head "$i"; cat <<CONF
ticket_key_file = $DDIR/k$i/current.key
ticket_key_file = $DDIR/k$i/next.key
ticket_key_file = $DDIR/k$i/previous.key

[server web]
cert = $CERTS/server-ecdsa.pem
key = $CERTS/server-ecdsa.key
versions = 1.3
tickets = 2
allow_uids = $(id -u)
export_state = yes
CONF
    } >"$CD/ktlsxd$i.conf"
  done
  if ! start_daemons; then
    fail "a daemon or its front server did not start" "$CD/ktlsxd1.err" "$CD/ktlsxd2.err" "$CD/ktlsxd3.err"
  else
    keys_are "$n1 $n1 $n1"
    grep -qE "^  $n1  age (7[0-9]{3}|8[0-9]{3}) s  seals and opens" "$CD/tk1.txt" ||
      ROT_BAD+="ticket-keys: no age of about 7200 s (the files' mtime) for the sealing key; "
    r_ticket 1 "$CD/t-old"
    # a half-written key file (wrong size): that reload is refused, the running keys stay
    head -c 30 "$K2" >"$RUN/half.key"
    put_key "$DDIR/k1" next.key "$RUN/half.key"
    for t in $(seq 100); do grep -aq 'reload refused.*next.key.*48 or 80 bytes' "$CD/ktlsxd1.err" && break; sleep 0.1; done
    grep -aq 'reload refused.*next.key.*48 or 80 bytes' "$CD/ktlsxd1.err" ||
      ROT_BAD+="a half-written key file: no refused reload in daemon 1's log; "
    keys_are "$n1 $n1 $n1"
    r_try half-written/old-ticket 1 "$CD/t-old" 1
    for i in 1 2 3; do put_key "$DDIR/k$i" next.key "$K2" "1 hour ago"; done            # step 1
    keys_are "$n1 $n2 $n1"
    grep -qE "^  $n2  age 3[0-9]{3} s  opens only" "$CD/tk1.txt" ||
      ROT_BAD+="step 1: ticket-keys does not show the new key opening only, about 3600 s old; "
    r_ticket 1 "$CD/t-old-2"                    # still sealed with the old key
    for i in 2 3; do r_try step1/old-ticket $i "$CD/t-old-2" 1; done
    for i in 1 2 3; do put_key "$DDIR/k$i" previous.key "$DDIR/k$i/current.key"; done   # step 2
    for i in 1 2 3; do put_key "$DDIR/k$i" current.key "$DDIR/k$i/next.key"; done
    keys_are "$n2 $n2 $n1"
    r_ticket 1 "$CD/t-new"                      # sealed with the new key
    for i in 1 2 3; do r_try step2/old-ticket $i "$CD/t-old" 1; done
    for i in 2 3; do r_try step2/new-ticket $i "$CD/t-new" 1; done
    for i in 1 2 3; do put_key "$DDIR/k$i" previous.key "$DDIR/k$i/current.key"; done   # step 3
    keys_are "$n2 $n2 $n2"
    for i in 1 2 3; do r_try step3/old-ticket $i "$CD/t-old" 0; done
    for i in 1 2 3; do r_try step3/new-ticket $i "$CD/t-new" 1; done
    # never key bytes: no 8-byte run of either file's key material in any answer
    for k in "$K1" "$K2"; do
      hex=$(od -An -tx1 -j16 "$k" | tr -d ' \n')
      for (( o = 0; o + 16 <= ${#hex}; o += 16 )); do
        grep -qi "${hex:o:16}" "$CD/ticket-keys.log" && { ROT_BAD+="ticket-keys shows key bytes; "; break; }
      done
    done
    reloads=$(grep -ac 'ticket key file .* changed: reloading' "$CD/ktlsxd1.err")
    echo "${NAME_PREFIX}ktlsxd/rotation-file: daemon 1 reloaded $reloads times on key file changes" >>"$RATES"
    (( reloads >= 4 )) || ROT_BAD+="daemon 1 logged $reloads reloads on key file changes, want >= 4 (one a step, one refused); "
    grep -aq 'Operation not permitted' "$CD"/ktlsxd[123].err && ROT_BAD+="EPERM under the seccomp filter; "
    if [[ -n $ROT_BAD ]]; then fail "$ROT_BAD" "$CD/conns.log" "$CD/ticket-keys.log" "$CD/ktlsxd1.err"; else pass; fi
  fi
  stop_fleet
  stop_daemons
fi
rm -rf "$DDIR"
fi

if case_begin servers-sane; then
  # No sanitizer report, no crash in any server's log.
  bad=$(grep -lE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$WORK"/*/server*.err "$WORK"/*/ktlsxd*.err 2>/dev/null | head -3)
  if [[ -n $bad ]]; then fail "sanitizer report in ${bad//$'\n'/ }" $bad; else pass; fi
fi

stop_fleet
stop_memcached
finish
