#!/usr/bin/env bash
# tests/run.sh [--unit-only] — the ktlsx test runner (`make check`, `make unit`).
#
#  1. unit tests: every executable build/tests/test_* (cmocka; each test case counts)
#  2. the same unit tests from build/asan/tests/ (ASan+UBSan), if that build exists;
#     then static analysis (make lint), the public API and packaging
#     (tests/api/exports.sh) and a fuzz smoke run
#  3. every tests/interop/*.sh with KTLSX=build/bin/ktlsx
#  4. the interop scripts again with KTLSX=build/asan/bin/ktlsx (if built);
#     then tests/examples/echo_server.sh with build/bin and with build/asan/bin;
#     then tests/daemon/daemon.sh (ktlsxd) the same way, then tests/preload/preload.sh (the shim)
#     then tests/fileserver/fileserver.sh (ktlsx-fileserver), then tests/loadgen/loadgen.sh (ktlsx-load)
#     then tests/fileserver/fileserver.sh (ktlsx-fileserver) the same way
#     then tests/fleet/fleet.sh (servers sharing resumption) the same way
#  5. kmod-tests/run.sh, if present (its last line "N passed, N failed, N skipped"
#     is added to the totals)
# --unit-only stops after step 1.  Logs: build/test-logs/ (results.txt lists every case).
# The last line of output is exactly "N passed, N failed, N skipped"; the exit
# status is 0 only if nothing failed.
#
# Environment: UNIT_TMO (per unit binary, default 300 s), INTEROP_TMO (per
# interop script, default 1200 s), KMOD_TMO (default 3600 s), ONLY (regex
# passed to the interop scripts to select cases), NO_ASAN_INTEROP=1,
# ASAN_INTEROP_QUICK=1 (a representative subset under ASan), NO_KMOD=1, NO_API=1, NO_EXAMPLES=1, NO_DAEMON=1, NO_PRELOAD=1,
# NO_FILESERVER=1, NO_LOADGEN=1, NO_FLEET=1,
# BUILD (build tree, default build/), KMOD_RUN (default kmod-tests/run.sh).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-$ROOT/build}   # build tree (override to test the runner itself)

unit_only=0
for a in "$@"; do
  case $a in
    --unit-only) unit_only=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

LOGS=$BUILD/test-logs
rm -rf "$LOGS"
mkdir -p "$LOGS"
export TEST_LOG_DIR=$LOGS
RESULTS=$LOGS/results.txt
: >"$RESULTS"

P=0 F=0 S=0
UNIT_TMO=${UNIT_TMO:-300}
INTEROP_TMO=${INTEROP_TMO:-1200}
KMOD_TMO=${KMOD_TMO:-3600}

record() { # record PASS|FAIL|SKIP NAME [REASON]
  local line="$1 $2"
  [[ -n ${3:-} ]] && line+=": $3"
  echo "$line" >>"$RESULTS"
  case $1 in PASS) P=$((P + 1)) ;; FAIL) F=$((F + 1)); echo "$line" ;; SKIP) S=$((S + 1)) ;; esac
}

section() { echo; echo "=== $*"; }

# ------------------------------------------------------------- unit tests ---

# run_unit_dir DIR PREFIX: run every test binary in DIR, count cmocka cases.
run_unit_dir() {
  local dir=$1 prefix=$2 bin name log rc
  local bins=()
  for bin in "$dir"/test_*; do
    [[ -f $bin && -x $bin ]] && bins+=("$bin")
  done
  if (( ${#bins[@]} == 0 )); then
    echo "(no unit test binaries in ${dir#$ROOT/})"
    return
  fi
  mkdir -p "$LOGS/$prefix"
  for bin in "${bins[@]}"; do
    name=$(basename "$bin")
    log=$LOGS/$prefix/$name.log
    # cmocka writes to stdout and stderr; keep them in order in one log
    # (in a subshell, so bash does not print "Aborted" job notices for crashes)
    rc=$( { timeout -k 5 "$UNIT_TMO" "$bin" >"$log" 2>&1 </dev/null; echo $?; } 2>/dev/null )
    local p0=$P f0=$F s0=$S
    # Per-case accounting: a case passes on "[       OK ] X" right after
    # "[ RUN      ] X", fails on "[  FAILED  ] X" (the repeated listing at the
    # end is ignored), is skipped on "[  SKIPPED ] X"; a RUN without a verdict
    # (crash, abort, sanitizer) is a failure.
    local cur= line tag tname
    while IFS= read -r line; do
      [[ $line =~ ^\[\ *(RUN|OK|FAILED|SKIPPED|ERROR)\ *\]\ (.*)$ ]] || continue
      tag=${BASH_REMATCH[1]} tname=${BASH_REMATCH[2]}
      case $tag in
        RUN) [[ -n $cur ]] && record FAIL "$prefix/$name/$cur" "no verdict (crashed?)"
             cur=$tname ;;
        OK) [[ $tname == "$cur" ]] && { record PASS "$prefix/$name/$cur"; cur=; } ;;
        FAILED) [[ $tname == "$cur" ]] && { record FAIL "$prefix/$name/$cur" "see ${log#$ROOT/}"; cur=; } ;;
        SKIPPED) [[ $tname == "$cur" ]] && { record SKIP "$prefix/$name/$cur" "skipped by the test"; cur=; } ;;
        ERROR) ;;
      esac
    done < <(tr -d '\r' <"$log")
    if [[ -n $cur ]]; then
      record FAIL "$prefix/$name/$cur" "no verdict: $( ((rc == 124)) && echo "timed out after ${UNIT_TMO}s" || echo "exit $rc" ) (crash?), see ${log#$ROOT/}"
    fi
    local ncase=$(( P - p0 + F - f0 + S - s0 ))
    if (( ncase == 0 )); then
      # no cmocka case lines at all: the binary is one case
      if (( rc == 0 )); then record PASS "$prefix/$name"
      else record FAIL "$prefix/$name" "exit $rc without cmocka output, see ${log#$ROOT/}"; fi
    elif (( rc != 0 && F == f0 )); then
      # every case passed but the binary failed (group setup/teardown, leak report at exit, ...)
      record FAIL "$prefix/$name" "exit $rc after all cases passed (setup/teardown error or sanitizer at exit), see ${log#$ROOT/}"
    fi
    if (( F > f0 )); then
      tail -n 15 "$log" | sed 's/^/    | /'
    fi
    printf '%-40s %3d passed, %d failed, %d skipped\n' "$prefix/$name" $((P - p0)) $((F - f0)) $((S - s0))
  done
}

section "unit tests (build/tests)"
run_unit_dir "$BUILD/tests" unit

if (( ! unit_only )); then
  if [[ -d $BUILD/asan/tests ]]; then
    section "unit tests under ASan+UBSan (build/asan/tests)"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
      run_unit_dir "$BUILD/asan/tests" asan-unit
  else
    record SKIP asan-unit "build/asan/tests missing (make asan)"
  fi
fi

# -------------------------------------------------------- static analysis ---
# cppcheck + clang-tidy over the library and the tool (`make lint`); one case.
if (( ! unit_only )) && [[ ${NO_LINT:-0} != 1 ]]; then
  section "static analysis (make lint)"
  if command -v cppcheck >/dev/null && command -v clang-tidy >/dev/null; then
    if make -s -C "$ROOT" lint >"$LOGS/lint.log" 2>&1; then record PASS lint
    else record FAIL lint "$(grep -m3 -E 'warning:|error:' "$LOGS/lint.log" | tr '\n' ' ')"; fi
  else
    record SKIP lint "cppcheck or clang-tidy not installed"
  fi
fi

# ------------------------------------------------------------- public API ---
# libktlsx.so exports only ktlsx_*, has its soname, and installs into a
# DESTDIR that a pkg-config user can build and run against (tests/api/exports.sh).
if (( ! unit_only )) && [[ ${NO_API:-0} != 1 ]]; then
  section "public API and packaging (tests/api/exports.sh)"
  bash "$ROOT/tests/api/exports.sh" "$BUILD" >"$LOGS/api.log" 2>&1
  arc=$?
  while IFS= read -r line; do
    case $line in
      PASS\ *) record PASS "api/${line#PASS }" ;;
      FAIL\ *) name=${line#FAIL }; record FAIL "api/${name%%:*}" "${name#*: }" ;;
    esac
  done < <(grep -E '^(PASS|FAIL) ' "$LOGS/api.log")
  if (( arc != 0 )) && ! grep -q '^FAIL ' "$LOGS/api.log"; then
    record FAIL api "tests/api/exports.sh exited $arc (see build/test-logs/api.log)"
  fi
fi

# ------------------------------------------------------------- fuzz smoke ---
# Every fuzz target built and run briefly on its seed corpus (`make fuzz` runs
# them longer): a parser change that crashes on a known input fails here.
if (( ! unit_only )) && [[ ${NO_FUZZ:-0} != 1 ]]; then
  section "fuzz smoke (make fuzz FUZZ_SECONDS=${FUZZ_SMOKE_SECONDS:-3})"
  if command -v clang >/dev/null; then
    make -s -C "$ROOT" fuzz FUZZ_SECONDS="${FUZZ_SMOKE_SECONDS:-3}" >"$LOGS/fuzz.log" 2>&1
    frc=$?
    while IFS= read -r line; do
      name=${line#* fuzz }; name=${name%% *}
      case $line in PASS\ fuzz\ *) record PASS "fuzz/$name" ;; FAIL\ fuzz\ *) record FAIL "fuzz/$name" "see build/test-logs/fuzz.log" ;; esac
    done < <(grep -E '^(PASS|FAIL) fuzz ' "$LOGS/fuzz.log")
    if (( frc != 0 )) && ! grep -q '^FAIL fuzz ' "$LOGS/fuzz.log"; then
      record FAIL fuzz-build "make fuzz exited $frc (see build/test-logs/fuzz.log)"
    fi
  else
    record SKIP fuzz "clang not installed"
  fi
fi

# ----------------------------------------------------------- interop tests ---

# run_interop PREFIX KTLSX QUICK: run every tests/interop/*.sh
run_interop() {
  local prefix=$1 ktlsx=$2 quick=$3 script name rf log rc
  local scripts=()
  for script in "$ROOT"/tests/interop/*.sh; do [[ -f $script ]] && scripts+=("$script"); done
  if (( ${#scripts[@]} == 0 )); then echo "(no interop scripts)"; return; fi
  for script in "${scripts[@]}"; do
    name=$(basename "$script" .sh)
    rf=$LOGS/interop-results/${prefix//\//-}$name.txt
    log=$LOGS/interop-${prefix//\//-}$name.log
    mkdir -p "$(dirname "$rf")"; : >"$rf"
    echo "--- ${script#$ROOT/} (KTLSX=${ktlsx#$ROOT/}${quick:+, QUICK=1})"
    KTLSX=$ktlsx QUICK=${quick:-0} NAME_PREFIX=$prefix RESULTS_FILE=$rf \
      timeout -k 10 "$INTEROP_TMO" bash "$script" 2>&1 </dev/null | tee "$log"
    rc=${PIPESTATUS[0]}
    local np nf ns
    np=$(grep -c '^PASS ' "$rf"); nf=$(grep -c '^FAIL ' "$rf"); ns=$(grep -c '^SKIP ' "$rf")
    cat "$rf" >>"$RESULTS"
    P=$((P + np)) F=$((F + nf)) S=$((S + ns))
    if (( rc != 0 && nf == 0 )); then
      record FAIL "$prefix$name" "script exited with status $rc ($( ((rc == 124)) && echo "timed out after ${INTEROP_TMO}s" || echo "see ${log#$ROOT/}"))"
    elif (( rc == 0 && np + nf + ns == 0 )) && [[ -z ${ONLY:-} ]]; then
      record FAIL "$prefix$name" "script reported no cases"
    fi
  done
}

if (( ! unit_only )); then
  section "interop tests (build/bin/ktlsx)"
  if [[ ! -x $BUILD/bin/ktlsx ]]; then
    echo "warning: build/bin/ktlsx is not built; the interop cases will be skipped"
  fi
  run_interop "" "$BUILD/bin/ktlsx" ""

  # The issue asks for the interop tests under ASan+UBSan "once": every case,
  # not a sample (ASAN_INTEROP_QUICK=1 keeps the old representative subset).
  if [[ ${NO_ASAN_INTEROP:-0} != 1 ]]; then
    asan_quick=; [[ ${ASAN_INTEROP_QUICK:-0} == 1 ]] && asan_quick=1
    section "interop tests under ASan+UBSan (build/asan/bin/ktlsx${asan_quick:+, quick subset})"
    if [[ -x $BUILD/asan/bin/ktlsx ]]; then
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        run_interop "asan/" "$BUILD/asan/bin/ktlsx" "$asan_quick"
    else
      record SKIP asan-interop "build/asan/bin/ktlsx missing (make asan)"
    fi
  fi

  # ---------------------------------------------------------------- examples ---
  # examples/echo-server under 500 concurrent clients (OpenSSL and ktlsx ones,
  # stallers, garbage) and examples/https-get: tests/examples/echo_server.sh,
  # with the plain build, then again with the ASan+UBSan build of the examples
  # and of the driver (a longer handshake deadline there: the sanitizers slow
  # the well-behaved clients, which must all finish before it).
  if [[ ${NO_EXAMPLES:-0} != 1 ]]; then
    section "examples (tests/examples/echo_server.sh: build/bin, then build/asan/bin)"
    for ex_tree in "$BUILD" "$BUILD/asan"; do
      # The stall deadline is the test's ruler for "nothing waits on anything else": the
      # 400 good clients must all finish before it.  They take 1.5-3 s alone and up to
      # 5.5 s (ASan: 6 s) on a loaded 2-core machine; the deadline keeps 2-4x of margin.
      ex_prefix=; ex_hs=${ECHO_HS_MS:-12000}
      [[ $ex_tree == "$BUILD/asan" ]] && { ex_prefix=asan/; ex_hs=${ECHO_ASAN_HS_MS:-25000}; }
      if [[ ! -x $ex_tree/bin/echo-server || ! -x $ex_tree/tests/echo_load ]]; then
        record SKIP "${ex_prefix}echo_server" "${ex_tree#$ROOT/}/bin/echo-server or tests/echo_load missing (make${ex_prefix:+ asan})"
        continue
      fi
      ex_rf=$LOGS/examples-results/${ex_prefix%/}echo_server.txt ex_log=$LOGS/examples-${ex_prefix%/}echo_server.log
      mkdir -p "$(dirname "$ex_rf")"; : >"$ex_rf"
      echo "--- tests/examples/echo_server.sh (${ex_tree#$ROOT/}, handshake timeout ${ex_hs} ms)"
      EXAMPLES_BIN=$ex_tree/bin ECHO_LOAD=$ex_tree/tests/echo_load ECHO_HS_MS=$ex_hs NAME_PREFIX=$ex_prefix \
      RESULTS_FILE=$ex_rf KTLSX=$ex_tree/bin/ktlsx \
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 300 bash "$ROOT/tests/examples/echo_server.sh" 2>&1 </dev/null | tee "$ex_log"
      ex_rc=${PIPESTATUS[0]}
      ex_p=$(grep -c '^PASS ' "$ex_rf"); ex_f=$(grep -c '^FAIL ' "$ex_rf"); ex_s=$(grep -c '^SKIP ' "$ex_rf")
      cat "$ex_rf" >>"$RESULTS"
      P=$((P + ex_p)) F=$((F + ex_f)) S=$((S + ex_s))
      if (( ex_rc != 0 && ex_f == 0 )); then
        record FAIL "${ex_prefix}echo_server" "script exited with status $ex_rc (see ${ex_log#$ROOT/})"
      elif (( ex_p + ex_f + ex_s == 0 )) && [[ -z ${ONLY:-} ]]; then
        record FAIL "${ex_prefix}echo_server" "script reported no cases"
      fi
    done
  fi

  # ------------------------------------------------------------ ktlsxd (issue 8) ---
  # tests/daemon/daemon.sh: ktlsxd's --check, 200 concurrent handshakes through the
  # door with reloads, resumption across two application processes, statuses, abuse,
  # failed reload, SIGTERM; with the plain build, then the ASan+UBSan build of the
  # daemon and its drivers (a longer handshake deadline there, as for the examples).
  if [[ ${NO_DAEMON:-0} != 1 ]]; then
    section "ktlsxd (tests/daemon/daemon.sh: build/bin, then build/asan/bin)"
    for dm_tree in "$BUILD" "$BUILD/asan"; do
      dm_prefix=; dm_hs=${DOOR_HS_MS:-8000}
      [[ $dm_tree == "$BUILD/asan" ]] && { dm_prefix=asan/; dm_hs=${DOOR_ASAN_HS_MS:-20000}; }
      if [[ ! -x $dm_tree/bin/ktlsxd || ! -x $dm_tree/tests/door_load || ! -x $dm_tree/tests/echo_load ]]; then
        record SKIP "${dm_prefix}daemon" "${dm_tree#$ROOT/}/bin/ktlsxd or its test drivers missing (make${dm_prefix:+ asan})"
        continue
      fi
      dm_rf=$LOGS/daemon-results/${dm_prefix%/}daemon.txt dm_log=$LOGS/daemon-${dm_prefix%/}daemon.log
      mkdir -p "$(dirname "$dm_rf")"; : >"$dm_rf"
      echo "--- tests/daemon/daemon.sh (${dm_tree#$ROOT/}, handshake timeout ${dm_hs} ms)"
      DAEMON_BIN=$dm_tree/bin DOOR_LOAD=$dm_tree/tests/door_load ECHO_LOAD=$dm_tree/tests/echo_load \
      DOOR_HS_MS=$dm_hs NAME_PREFIX=$dm_prefix RESULTS_FILE=$dm_rf KTLSX=$dm_tree/bin/ktlsx \
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 400 bash "$ROOT/tests/daemon/daemon.sh" 2>&1 </dev/null | tee "$dm_log"
      dm_rc=${PIPESTATUS[0]}
      dm_p=$(grep -c '^PASS ' "$dm_rf"); dm_f=$(grep -c '^FAIL ' "$dm_rf"); dm_s=$(grep -c '^SKIP ' "$dm_rf")
      cat "$dm_rf" >>"$RESULTS"
      P=$((P + dm_p)) F=$((F + dm_f)) S=$((S + dm_s))
      if (( dm_rc != 0 && dm_f == 0 )); then
        record FAIL "${dm_prefix}daemon" "script exited with status $dm_rc (see ${dm_log#$ROOT/})"
      elif (( dm_p + dm_f + dm_s == 0 )) && [[ -z ${ONLY:-} ]]; then
        record FAIL "${dm_prefix}daemon" "script reported no cases"
      fi
    done
  fi

  # ---------------------------------------------------- preload shim (issue 10) ---
  # tests/preload/preload.sh: libktlsx-preload.so under python3 http.server, urllib, a fork/dup
  # program, a staller, ktlsxd (key not in the program's memory); plain build, then the ASan
  # build of the .so with the ASan runtime first in LD_PRELOAD.  NO_PRELOAD=1 skips it.
  if [[ ${NO_PRELOAD:-0} != 1 ]]; then
    section "preload shim (tests/preload/preload.sh: build/lib, then build/asan/lib)"
    for pl_tree in "$BUILD" "$BUILD/asan"; do
      pl_prefix=; pl_asan=0
      [[ $pl_tree == "$BUILD/asan" ]] && { pl_prefix=asan/; pl_asan=1; }
      if [[ ! -f $pl_tree/lib/libktlsx-preload.so ]]; then
        record SKIP "${pl_prefix}preload" "${pl_tree#$ROOT/}/lib/libktlsx-preload.so missing (make${pl_prefix:+ asan})"
        continue
      fi
      pl_rf=$LOGS/preload-results/${pl_prefix%/}preload.txt pl_log=$LOGS/preload-${pl_prefix%/}preload.log
      mkdir -p "$(dirname "$pl_rf")"; : >"$pl_rf"
      echo "--- tests/preload/preload.sh (${pl_tree#$ROOT/})"
      PRELOAD_SO=$pl_tree/lib/libktlsx-preload.so PRELOAD_ASAN=$pl_asan DAEMON_BIN=$pl_tree/bin \
      NAME_PREFIX=$pl_prefix RESULTS_FILE=$pl_rf \
        timeout -k 10 600 bash "$ROOT/tests/preload/preload.sh" 2>&1 </dev/null | tee "$pl_log"
      pl_rc=${PIPESTATUS[0]}
      pl_p=$(grep -c '^PASS ' "$pl_rf"); pl_f=$(grep -c '^FAIL ' "$pl_rf"); pl_s=$(grep -c '^SKIP ' "$pl_rf")
      cat "$pl_rf" >>"$RESULTS"
      P=$((P + pl_p)) F=$((F + pl_f)) S=$((S + pl_s))
      if (( pl_rc != 0 && pl_f == 0 )); then
        record FAIL "${pl_prefix}preload" "script exited with status $pl_rc (see ${pl_log#$ROOT/})"
      elif (( pl_p + pl_f + pl_s == 0 )) && [[ -z ${ONLY:-} ]]; then
        record FAIL "${pl_prefix}preload" "script reported no cases"
      fi
    done
  fi

  # ---------------------------------------------------- ktlsx-fileserver (issue 11) ---
  # tests/fileserver/fileserver.sh: downloads byte-exact with curl, wget, openssl s_client and
  # python urllib over TLS 1.2 and 1.3, Range, conditionals, HEAD, pipelining, every error
  # status, the traversal corpus, slowloris, 2000 idle keep-alive connections; with the
  # plain build, then the ASan+UBSan build.
  if [[ ${NO_FILESERVER:-0} != 1 ]]; then
    section "ktlsx-fileserver (tests/fileserver/fileserver.sh: build/bin, then build/asan/bin)"
    for fs_tree in "$BUILD" "$BUILD/asan"; do
      fs_prefix=
      [[ $fs_tree == "$BUILD/asan" ]] && fs_prefix=asan/
      if [[ ! -x $fs_tree/bin/ktlsx-fileserver ]]; then
        record SKIP "${fs_prefix}fileserver" "${fs_tree#$ROOT/}/bin/ktlsx-fileserver missing (make${fs_prefix:+ asan})"
        continue
      fi
      fs_rf=$LOGS/fileserver-results/${fs_prefix%/}fileserver.txt fs_log=$LOGS/fileserver-${fs_prefix%/}fileserver.log
      mkdir -p "$(dirname "$fs_rf")"; : >"$fs_rf"
      echo "--- tests/fileserver/fileserver.sh (${fs_tree#$ROOT/})"
      FS_BIN=$fs_tree/bin/ktlsx-fileserver NAME_PREFIX=$fs_prefix RESULTS_FILE=$fs_rf \
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 900 bash "$ROOT/tests/fileserver/fileserver.sh" 2>&1 </dev/null | tee "$fs_log"
      fs_rc=${PIPESTATUS[0]}
      fs_p=$(grep -c '^PASS ' "$fs_rf"); fs_f=$(grep -c '^FAIL ' "$fs_rf"); fs_s=$(grep -c '^SKIP ' "$fs_rf")
      cat "$fs_rf" >>"$RESULTS"
      P=$((P + fs_p)) F=$((F + fs_f)) S=$((S + fs_s))
      if (( fs_rc != 0 && fs_f == 0 )); then
        record FAIL "${fs_prefix}fileserver" "script exited with status $fs_rc (see ${fs_log#$ROOT/})"
      elif (( fs_p + fs_f + fs_s == 0 )); then
        record FAIL "${fs_prefix}fileserver" "script reported no cases"
      fi
    done
  fi

  # ------------------------------------------------------- ktlsx-load (issue 11) ---
  # tests/loadgen/loadgen.sh: the load generator against nginx, openssl s_server and
  # `ktlsx server` (every mode, resumption checked against nginx's own log, byte-exact
  # downloads, a stalling server, a refused port); with the plain build, then the ASan+UBSan
  # build of ktlsx-load (and of ktlsx as the server).
  if [[ ${NO_LOADGEN:-0} != 1 ]]; then
    section "ktlsx-load (tests/loadgen/loadgen.sh: build/bin, then build/asan/bin)"
    for lg_tree in "$BUILD" "$BUILD/asan"; do
      lg_prefix=; [[ $lg_tree == "$BUILD/asan" ]] && lg_prefix=asan/
      if [[ ! -x $lg_tree/bin/ktlsx-load ]]; then
        record SKIP "${lg_prefix}loadgen" "${lg_tree#$ROOT/}/bin/ktlsx-load missing (make${lg_prefix:+ asan})"
        continue
      fi
      lg_rf=$LOGS/loadgen-results/${lg_prefix%/}loadgen.txt lg_log=$LOGS/loadgen-${lg_prefix%/}loadgen.log
      mkdir -p "$(dirname "$lg_rf")"; : >"$lg_rf"
      echo "--- tests/loadgen/loadgen.sh (${lg_tree#$ROOT/})"
      LOADGEN=$lg_tree/bin/ktlsx-load NAME_PREFIX=$lg_prefix RESULTS_FILE=$lg_rf KTLSX=$lg_tree/bin/ktlsx \
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 300 bash "$ROOT/tests/loadgen/loadgen.sh" 2>&1 </dev/null | tee "$lg_log"
      lg_rc=${PIPESTATUS[0]}
      lg_p=$(grep -c '^PASS ' "$lg_rf"); lg_f=$(grep -c '^FAIL ' "$lg_rf"); lg_s=$(grep -c '^SKIP ' "$lg_rf")
      cat "$lg_rf" >>"$RESULTS"
      P=$((P + lg_p)) F=$((F + lg_f)) S=$((S + lg_s))
      if (( lg_rc != 0 && lg_f == 0 )); then
        record FAIL "${lg_prefix}loadgen" "script exited with status $lg_rc (see ${lg_log#$ROOT/})"
      elif (( lg_p + lg_f + lg_s == 0 )) && [[ -z ${ONLY:-} ]]; then
        record FAIL "${lg_prefix}loadgen" "script reported no cases"
      fi
    done
  fi

  # ---------------------------------------------------------- fleet (issue 12) ---
  # tests/fleet/fleet.sh: three ktlsx servers in network namespaces, one memcached, clients
  # round-robin: >= 99 % resumed (TLS 1.2 session IDs through the memcached store, TLS 1.2
  # and 1.3 tickets under a shared key file), memcached killed/stalled mid-run, the ticket key
  # rotation procedure, forged memcached entries, ktlsx-fileserver and ktlsxd (seccomp on,
  # key files reloaded on change, ktlsxctl ticket-keys); with the plain build, then ASan+UBSan.
  if [[ ${NO_FLEET:-0} != 1 ]]; then
    section "fleet (tests/fleet/fleet.sh: build/bin, then build/asan/bin)"
    for fl_tree in "$BUILD" "$BUILD/asan"; do
      fl_prefix=
      [[ $fl_tree == "$BUILD/asan" ]] && fl_prefix=asan/
      if [[ ! -x $fl_tree/bin/ktlsx ]]; then
        record SKIP "${fl_prefix}fleet" "${fl_tree#$ROOT/}/bin/ktlsx missing (make${fl_prefix:+ asan})"
        continue
      fi
      fl_rf=$LOGS/fleet-results/${fl_prefix%/}fleet.txt fl_log=$LOGS/fleet-${fl_prefix%/}fleet.log
      mkdir -p "$(dirname "$fl_rf")"; : >"$fl_rf"
      echo "--- tests/fleet/fleet.sh (${fl_tree#$ROOT/})"
      KTLSX=$fl_tree/bin/ktlsx NAME_PREFIX=$fl_prefix RESULTS_FILE=$fl_rf \
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 900 bash "$ROOT/tests/fleet/fleet.sh" 2>&1 </dev/null | tee "$fl_log"
      fl_rc=${PIPESTATUS[0]}
      fl_p=$(grep -c '^PASS ' "$fl_rf"); fl_f=$(grep -c '^FAIL ' "$fl_rf"); fl_s=$(grep -c '^SKIP ' "$fl_rf")
      cat "$fl_rf" >>"$RESULTS"
      P=$((P + fl_p)) F=$((F + fl_f)) S=$((S + fl_s))
      if (( fl_rc != 0 && fl_f == 0 )); then
        record FAIL "${fl_prefix}fleet" "script exited with status $fl_rc (see ${fl_log#$ROOT/})"
      elif (( fl_p + fl_f + fl_s == 0 )); then
        record FAIL "${fl_prefix}fleet" "script reported no cases"
      fi
    done
  fi

  # ------------------------------------------------------------- kmod tests ---
  KMOD_RUN=${KMOD_RUN:-$ROOT/kmod-tests/run.sh}
  if [[ ${NO_KMOD:-0} != 1 && -f $KMOD_RUN ]]; then
    section "kernel tests (kmod-tests/run.sh)"
    klog=$LOGS/kmod-tests.log
    timeout -k 10 "$KMOD_TMO" bash "$KMOD_RUN" 2>&1 </dev/null | tee "$klog"
    krc=${PIPESTATUS[0]}
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$klog" | tail -n1)
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
      P=$((P + BASH_REMATCH[1])) F=$((F + BASH_REMATCH[2])) S=$((S + BASH_REMATCH[3]))
      # its case lines, for the record (the totals come from its summary line)
      grep -E '^(PASS|FAIL|SKIP) ' "$klog" | sed 's/^/kmod-tests: /' >>"$RESULTS"
      echo "kmod-tests: $last" >>"$RESULTS"
      if (( krc != 0 && BASH_REMATCH[2] == 0 )); then
        record FAIL kmod-tests "exit status $krc although it reported no failures"
      fi
    else
      record FAIL kmod-tests "no 'N passed, N failed, N skipped' line (exit $krc), see ${klog#$ROOT/}"
    fi
  fi
fi

echo
grep -E '^(kmod-tests: )?FAIL ' "$RESULTS" | sed 's/^/  /' | head -n 100
echo "(all results: ${RESULTS#$ROOT/})"
echo "$P passed, $F failed, $S skipped"
(( F == 0 ))
