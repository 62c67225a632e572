#!/usr/bin/env bash
# Coverage-guided fuzzing of the core (fuzz/): each target runs for SECONDS
# (default 20) from the committed seed corpus; inputs it finds go to
# fuzz/target/corpus (git-ignored), crashes to fuzz/artifacts/<target>/,
# which fails the run. Needs the nightly toolchain and cargo-fuzz
# (scripts/deps.sh fuzz installs cargo-fuzz).
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
scripts/deps.sh fuzz >/dev/null
cd fuzz
for target in commands decode; do
  mkdir -p "target/corpus/$target"
  echo "fuzz: $target for ${secs}s"
  cargo +nightly fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$secs" -print_final_stats=1 2>&1 |
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)|panicked|ERROR' || true
  # A crash leaves its input in artifacts/ and a non-zero status above; the
  # pipe hides the status, so look for the artifact.
  found=$(find "artifacts/$target" -type f 2>/dev/null | head -5)
  echo "fuzz-failing-inputs: $(find "artifacts/$target" -type f 2>/dev/null | wc -l)"
  if [ -n "$found" ]; then
    echo "fuzz: $target has failing inputs (fix, then delete them): $found" >&2
    exit 1
  fi
done
