#!/usr/bin/env bash
# scripts/bench_ab.sh on the CPU with tiny shapes: both builds the same binary (BUILD_DIR, the
# first argument), one op and one model; the table must have a row per op pass and per model with
# a ratio, and a missing build folder must fail with one line naming it. Second argument: "gate"
# to run the GPU tests' gate too (they skip without a GPU), else --no-gate (no CUDA build).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
build=$1
gate=()
[ "${2:-}" = gate ] || gate=(--no-gate)
cd "$src"
out=$(bash scripts/bench_ab.sh "$build" "$build" --device cpu "${gate[@]}" --reps 1 --seq-len 64 \
  --ops gdn --shapes 1x2x16 --models hybrid:L0:256:1 --steps 1)
echo "$out"
for row in "^gdn +fwd .*new/old [0-9.]+$" "^gdn +bwd .*new/old [0-9.]+$" \
  "^hybrid +L0 .*new/old [0-9.]+ tokens/s$"; do
  grep -Eq "$row" <<< "$out" || { echo "check_bench_ab: no row matching '$row'" >&2; exit 1; }
done
if err=$(bash scripts/bench_ab.sh /nonexistent/build "$build" 2>&1); then
  echo "check_bench_ab: a missing build folder did not fail" >&2
  exit 1
fi
grep -q "^bench_ab.sh: /nonexistent/build: no scalinglab binary" <<< "$err" ||
  { echo "check_bench_ab: unexpected error: $err" >&2; exit 1; }
echo "check_bench_ab: ok"
