#!/usr/bin/env bash
# bench/run.sh [BUILD]  — run by `make bench`: the ktlsx benchmarks, each
# against OpenSSL (libssl) measured in the same run.  Prints one line per
# scenario and writes them to BUILD/bench/results.txt (BUILD default: build).
#
# Environment: BENCH_SECONDS (measured seconds per scenario and library,
# default 2), BENCH_CONNS (connection pairs for the memory figure, default
# 1000), BENCH_CERTS (test PKI directory, default BUILD/bench/certs, made by
# tests/certs/gen.sh), NO_SERVER_BENCH=1 (skip bench/server.sh, the server
# capacity part; FILESERVER and the SERVER_BENCH_* variables are its own).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
BIN=$BUILD/bench
export BENCH_SECONDS=${BENCH_SECONDS:-2}
export BENCH_CERTS=${BENCH_CERTS:-$BIN/certs}

mkdir -p "$BIN"
tests/certs/gen.sh "$BENCH_CERTS"

RESULTS=$BIN/results.txt
{
  echo "# ktlsx $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') vs $(openssl version 2>/dev/null || echo OpenSSL)," \
       "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')), BENCH_SECONDS=$BENCH_SECONDS, $(date -u +%Y-%m-%dT%H:%MZ)"
  for b in bench_handshake bench_record bench_memory; do
    if [[ -x $BIN/$b ]]; then
      "$BIN/$b"
    fi
  done
  bash "$ROOT/bench/daemon.sh" "$BUILD" # ktlsxd's bytes per in-flight handshake and per handed-back connection
} | tee "$RESULTS"
echo "results: $RESULTS"

# Server capacity on one core with ktlsx-load (issue 11): nginx, openssl s_server,
# ktlsx-fileserver ($FILESERVER).  NO_SERVER_BENCH=1 skips it.
if [[ ${NO_SERVER_BENCH:-0} != 1 ]]; then
  bench/server.sh "$BUILD"
fi
