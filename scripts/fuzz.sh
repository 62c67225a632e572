#!/usr/bin/env bash
# Coverage-guided fuzzing of the core (fuzz/): each target runs for SECONDS
# (default 20) from the committed seed corpus; inputs it finds go to
# fuzz/target/corpus (git-ignored), crashes to fuzz/artifacts/<target>/.
# The run fails when a target fails to build or to start, exits non-zero,
# leaves a failing input, or stops before its time; for each target it
# prints `fuzz-ran: <target> <runs> runs in <seconds> s`, read from
# libFuzzer's own closing line. Needs the nightly toolchain and cargo-fuzz
# (scripts/deps.sh fuzz installs cargo-fuzz).
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
scripts/deps.sh fuzz >/dev/null
cd fuzz
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() {
  echo "fuzz: $target: $*" >&2
  tail -20 "$log" >&2
  exit 1
}
for target in commands decode; do
  mkdir -p "target/corpus/$target"
  echo "fuzz: $target for ${secs}s"
  status=0
  cargo +nightly fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)|panicked|ERROR' "$log" || true
  # No artifacts directory when the target did not even build: the status
  # check below reports that, with the build's output.
  found=$(find "artifacts/$target" -type f 2>/dev/null | head -5 || true)
  echo "fuzz-failing-inputs: $(find "artifacts/$target" -type f 2>/dev/null | wc -l || true)"
  if [ -n "$found" ]; then
    fail "failing inputs (fix, then delete them): $found"
  fi
  [ "$status" -eq 0 ] || fail "exited with status $status"
  # libFuzzer closes a run that lasted its time with "Done N runs in S second(s)".
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
  [ -n "$done_line" ] || fail "no 'Done N runs in S second(s)' line: it did not run"
  runs=$(echo "$done_line" | awk '{print $2}')
  ran=$(echo "$done_line" | awk '{print $5}')
  echo "fuzz-ran: $target $runs runs in $ran s"
  [ "$ran" -ge "$secs" ] || fail "ran ${ran}s of ${secs}s"
  [ "$runs" -gt 0 ] || fail "executed no input"
done
