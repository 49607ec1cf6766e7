#!/usr/bin/env bash
# bench/daemon.sh [BUILD] — ktlsxd's memory figures (issue 8), run by `make bench`:
#   bytes per in-flight handshake   1000 TLS 1.3 clients each send a ClientHello, read the daemon's
#                                   whole first flight and stop (the daemon holds them mid-handshake,
#                                   keys derived, waiting for Finished): daemon RSS growth / 1000
#                                   (target <= 32 KB)
#   bytes per handed-back conn      1000 completed handshakes whose connections the application keeps
#                                   open: daemon RSS growth / 1000 after a warm-up round, and the
#                                   daemon's own count of what it holds (target 0)
# The door throughput against the in-process engine and nginx is bench/server.sh's (ktlsx-load).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
N=${BENCH_DAEMON_CONNS:-1000}
for b in bin/ktlsxd bin/ktlsxctl tests/door_load; do
  [[ -x $BUILD/$b ]] || { echo "daemon: skipped ($BUILD/$b not built)"; exit 0; }
done
command -v python3 >/dev/null || { echo "daemon: skipped (no python3)"; exit 0; }
CERTS=$BUILD/bench/certs
"$ROOT/tests/certs/gen.sh" "$CERTS" >/dev/null
T=$(mktemp -d /tmp/ktlsx-bench-daemon.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null
cat >"$T/d.conf" <<CONF
[daemon]
socket = $T/door.sock
workers = 1
max_clients = $((4 * N + 100))
max_clients_per_uid = $((4 * N + 100))
max_handshakes_per_uid = $((2 * N))
handshake_timeout_ms = 120000
log_level = warning

[server web]
cert = $CERTS/server-ecdsa.pem
key = $CERTS/server-ecdsa.key
allow_uids = $(id -u)
export_state = yes
CONF
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
"$BUILD/bin/ktlsxd" -c "$T/d.conf" 2>"$T/d.err" &
D=$!; PIDS+=("$D")
for ((i = 0; i < 100; i++)); do [[ -S $T/door.sock ]] && break; sleep 0.05; done
"$BUILD/tests/door_load" --door "$T/door.sock" --profile web --timeout-ms 120000 >"$T/app.out" 2>"$T/app.err" &
A=$!; PIDS+=("$A")
for ((i = 0; i < 100; i++)); do PORT=$(sed -n 's/^door_load: listening on 127.0.0.1://p' "$T/app.out"); [[ -n $PORT ]] && break; sleep 0.05; done
[[ -n ${PORT:-} ]] || { echo "daemon: door_load did not start"; exit 1; }

hold() { # hold MODE: N connections held by tls_hold.py; sets H (its pid), waits for "holding"
  mkfifo "$T/in.$1" 2>/dev/null
  python3 "$ROOT/bench/tls_hold.py" "$PORT" "$N" "$1" <"$T/in.$1" >"$T/hold.$1" 2>&1 &
  H=$!; PIDS+=("$H")
  exec 7>"$T/in.$1"
  for ((i = 0; i < 1200; i++)); do grep -q '^holding' "$T/hold.$1" && return 0; sleep 0.1; done
  return 1
}
release() { exec 7>&-; wait "$H" 2>/dev/null; rm -f "$T/in.$1"; }
inflight() { "$BUILD/bin/ktlsxctl" -s "$T/door.ctl" ping | sed -n 's/.*, \([0-9]*\) in flight$/\1/p'; }

# warm-up: allocator arenas, the verified-chain and session caches, OpenSSL's lazily built tables
hold done && release done
sleep 0.5
r0=$(rss "$D")
hold mid || { echo "daemon: mid-handshake clients did not all get the server's flight"; exit 1; }
sleep 0.5
r1=$(rss "$D"); f1=$(inflight)
release mid
for ((i = 0; i < 100; i++)); do [[ $(inflight) == 0 ]] && break; sleep 0.1; done
sleep 0.5
r2=$(rss "$D")
hold done || { echo "daemon: completed handshakes not all held"; exit 1; }
sleep 0.5
r3=$(rss "$D"); f3=$(inflight)
"$BUILD/bin/ktlsxctl" -s "$T/door.ctl" stats >"$T/stats"
open_conns=$(sed -n 's/^in flight [0-9]*, door connections \([0-9]*\)$/\1/p' "$T/stats")
release done
per_inflight=$(( (r1 - r0) * 1024 / N ))
per_done=$(( (r3 - r2) * 1024 / N ))
printf 'daemon: in-flight handshakes   %5d held (ktlsxctl: %s in flight)  RSS %6d -> %6d kB  = %6d bytes each  (target <= 32768)\n' \
  "$N" "${f1:-?}" "$r0" "$r1" "$per_inflight"
printf 'daemon: handed-back conns      %5d open in the app (daemon: %s in flight, %s door connections)  RSS %6d -> %6d kB  = %6d bytes each  (target 0)\n' \
  "$N" "${f3:-?}" "${open_conns:-?}" "$r2" "$r3" "$per_done"
