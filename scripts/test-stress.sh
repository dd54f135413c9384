#!/usr/bin/env bash
# `make test` RUNS times on the machine as it is, then RUNS times while `stress-ng --cpu 2`
# keeps two CPU-bound workers running (issue 11: the suite must pass both ways). Prints each
# run's verdict and duration; the logs go to .test-stress/. Exits 1 if any run failed.
#   usage: scripts/test-stress.sh [RUNS] [both|plain|stress]   (make test-stress RUNS=5 MODE=both)
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
mode="${2:-both}"
case "$mode" in both|plain|stress) ;; *) echo "test-stress: MODE must be both, plain or stress" >&2; exit 2;; esac
case "$runs" in ''|*[!0-9]*|0) echo "test-stress: RUNS must be a positive number" >&2; exit 2;; esac

if ! command -v stress-ng >/dev/null 2>&1; then
  echo "test-stress: installing stress-ng" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "test-stress: run as root or install stress-ng" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends stress-ng >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends stress-ng >/dev/null; } ||
    { echo "test-stress: cannot install stress-ng" >&2; exit 1; }
fi

logs=.test-stress
mkdir -p "$logs"
failed=0
stress_pid=""
child=""
stop_stress() { [ -n "$stress_pid" ] && kill "$stress_pid" 2>/dev/null && wait "$stress_pid" 2>/dev/null; stress_pid=""; }
# Stopped (Ctrl-C, kill): stop the run in progress (its whole process group) and the load, and
# exit; the run is in the background so that the trap runs at once, not after the run.
interrupted() { [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null; stop_stress; exit "$1"; }
trap stop_stress EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM
set -m  # each background job in its own process group

one_run() {  # $1 label, $2 run number
  local log="$logs/$1-$2.log" start end rc verdict
  start=$(date +%s)
  make test >"$log" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  child=""
  end=$(date +%s)
  if [ "$rc" -eq 0 ]; then verdict="passed"; else verdict="FAILED"; failed=$((failed + 1)); fi
  printf 'test-stress: %-9s run %d/%d %s in %d s (load %s; %s; log %s)\n' "$1" "$2" "$runs" \
    "$verdict" "$((end - start))" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1 | tr -d '=' | sed 's/^ *//')" "$log"
}

total=0
if [ "$mode" != stress ]; then
  for i in $(seq 1 "$runs"); do one_run plain "$i"; done
  total=$((total + runs))
fi
if [ "$mode" != plain ]; then
  stress-ng --cpu 2 --timeout 0 --quiet &
  stress_pid=$!
  sleep 1
  for i in $(seq 1 "$runs"); do one_run stress-ng "$i"; done
  stop_stress
  total=$((total + runs))
fi
echo "test-stress: $((total - failed)) of $total runs passed"
[ "$failed" -eq 0 ]
