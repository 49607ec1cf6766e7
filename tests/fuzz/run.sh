#!/usr/bin/env bash
# tests/fuzz/run.sh DIR SECONDS — run every libFuzzer target built into DIR
# (by `make fuzz-build`) for SECONDS seconds each.
#
#   corpus:    build/fuzz-corpus/<name>   (grows across runs; seeded from
#              tests/fuzz/corpus/<name> when that exists)
#   artifacts: build/fuzz-artifacts/<name>-crash-*, -leak-*, -timeout-*, ...
#              plus build/fuzz-artifacts/<name>.log (the whole libFuzzer output)
#
# UBSan is made fatal (halt_on_error), LeakSanitizer is on (ASan default).
# Prints "PASS fuzz <name>" or "FAIL fuzz <name>" per target and exits 1 if any
# target crashed, leaked, hit UB, timed out or ran out of memory.
set -uo pipefail

dir=${1:?usage: run.sh DIR SECONDS}
secs=${2:?usage: run.sh DIR SECONDS}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
corpus_root=$root/build/fuzz-corpus
artifacts=$root/build/fuzz-artifacts
seeds=$root/tests/fuzz/corpus
mkdir -p "$corpus_root" "$artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

shopt -s nullglob
targets=("$dir"/fuzz_*)
if ((${#targets[@]} == 0)); then
  echo "run.sh: no fuzz targets in $dir (run make fuzz-build)" >&2
  exit 1
fi

failed=0
for bin in "${targets[@]}"; do
  [[ -x $bin && -f $bin ]] || continue
  name=$(basename "$bin")
  corpus=$corpus_root/$name
  mkdir -p "$corpus"
  if [[ -d $seeds/$name ]]; then
    cp -n "$seeds/$name"/* "$corpus"/ 2>/dev/null || true
  fi
  log=$artifacts/$name.log
  # Generous wall-clock guard: libFuzzer stops itself at -max_total_time.
  timeout --signal=KILL $((secs + 120)) "$bin" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -len_control=100 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+/runs: \1 /')
  [[ -n $stats ]] || stats=$(grep -E '^#[0-9]+' "$log" | tail -1)
  if ((rc == 0)) && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
    echo "PASS fuzz $name ($stats)"
  else
    echo "FAIL fuzz $name (exit $rc; log $log)"
    grep -E 'ERROR:|runtime error:|SUMMARY:|Test unit written' "$log" | head -8 | sed 's/^/    /'
    failed=1
  fi
done
exit $failed
