#!/usr/bin/env bash
# Two builds of scalinglab side by side on one machine, the way docs/PERFORMANCE.md measures a
# change: the new build's GPU tests and `doctor` first (a failure stops the comparison), then
# every benchmark with the two binaries alternated (old, new, old, new), so that clock and
# temperature drift fall on both alike, and one table of the medians' ratio last.
#
#   bash scripts/bench_ab.sh OLD NEW [--device cuda] [--no-gate] [--reps 10]
#        [--ops gdn,conv1d] [--shapes "16x12x64 32x4x64 32x6x48"] [--seq-len 1024]
#        [--models "hybrid:L3:256:32 hybrid:S4:50304:16"] [--steps 10]
#
# OLD, NEW: a build folder (bin/scalinglab, tests/cuda_test_ops, tests/cuda_test_model) or a
# folder holding those three files directly (e.g. stripped copies taken to a GPU node).
# --shapes: BxHxHD per op shape (--batch, --heads, --head-dim of `bench --op`); --models:
# arch:size:vocab:batch per whole-model bench. Run it from the repository root (the doctor reads
# tests/fixtures). Prints, per op pass and per model, both binaries' two runs and new/old of
# their means (ms for ops: < 1 is faster; tokens/s for models: > 1 is faster).
set -euo pipefail

die() { echo "bench_ab.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: bash scripts/bench_ab.sh OLD NEW [options] (see the header)"
find_bin() {  # find_bin DIR NAME
  for p in "$1/bin/$2" "$1/tests/$2" "$1/$2"; do [ -x "$p" ] && { echo "$p"; return; }; done
  echo ""
}
old=$(find_bin "$1" scalinglab)
new=$(find_bin "$2" scalinglab)
[ -n "$old" ] || die "$1: no scalinglab binary (bin/scalinglab or scalinglab)"
[ -n "$new" ] || die "$2: no scalinglab binary (bin/scalinglab or scalinglab)"
newdir=$2
shift 2
device=cuda gate=1 reps=10 ops=gdn seq=1024 steps=10
shapes="16x12x64 32x4x64 32x6x48"
models="hybrid:L3:256:32"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --no-gate) gate=0; shift ;;
    --reps) reps=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --seq-len) seq=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) die "unknown option '$1'" ;;
  esac
done

if [ "$gate" = 1 ]; then
  for t in cuda_test_ops cuda_test_model; do
    b=$(find_bin "$newdir" "$t")
    [ -n "$b" ] || die "$newdir: no $t (or pass --no-gate)"
    # The tests find their fixtures relative to the build folder, as under ctest.
    (cd "$(dirname "$b")" && "./$t" > "/tmp/bench_ab_$t.log" 2>&1) ||
      die "gate: $t failed (log /tmp/bench_ab_$t.log)"
    echo "gate: $t passed"
  done
  "$new" doctor --backend "$device" --fixtures tests/fixtures > /tmp/bench_ab_doctor.log 2>&1 ||
    die "gate: doctor failed (log /tmp/bench_ab_doctor.log)"
  grep -E "worst|median" /tmp/bench_ab_doctor.log || true
fi

declare -A bin=([old]=$old [new]=$new)
rows=()
mean_ratio() {  # mean_ratio O1 O2 N1 N2: (N1 + N2) / (O1 + O2)
  awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.4f", (c + d) / (a + b) }'
}
IFS=',' read -ra oplist <<< "$ops"
for op in "${oplist[@]}"; do
  for s in $shapes; do
    IFS='x' read -r B H HD <<< "$s"
    args=(bench --op "$op" --device "$device" --seq-len "$seq" --batch "$B" --heads "$H"
      --head-dim "$HD" --reps "$reps")
    declare -A ms=()
    for run in 1 2; do
      for v in old new; do
        # `bench --op` prints a line a pass: op, pass, the shape's fields, ms, TFLOP/s, GB/s.
        while read -r pass t; do ms[$v,$pass,$run]=$t; done < <("${bin[$v]}" "${args[@]}" 2>&1 |
          awk -v op="$op" '$1 == op { print $2, $(NF - 2) }')
      done
    done
    for pass in fwd bwd; do
      [ -n "${ms[old,$pass,1]:-}" ] || continue
      rows+=("$(printf '%-10s %-4s B%s H%s hd%s  old %s %s  new %s %s  new/old %s' "$op" "$pass" \
        "$B" "$H" "$HD" "${ms[old,$pass,1]}" "${ms[old,$pass,2]}" "${ms[new,$pass,1]}" \
        "${ms[new,$pass,2]}" "$(mean_ratio "${ms[old,$pass,1]}" "${ms[old,$pass,2]}" \
        "${ms[new,$pass,1]}" "${ms[new,$pass,2]}")")")
    done
    unset ms
  done
done
for m in $models; do
  IFS=':' read -r arch size vocab batch <<< "$m"
  args=(bench --device "$device" --arch "$arch" --sizes "$size" --vocab "$vocab" --batch "$batch"
    --seq-len "$seq" --steps "$steps" --warmup 3)
  declare -A tps=()
  for run in 1 2; do
    for v in old new; do
      # The model bench's table: arch, size, d, L, params, non-emb, tokens/s, ...
      tps[$v,$run]=$("${bin[$v]}" "${args[@]}" 2>&1 | awk -v a="$arch" '$1 == a { print $7 }' |
        tail -1)
    done
  done
  rows+=("$(printf '%-10s %-4s V%s b%s  old %s %s  new %s %s  new/old %s tokens/s' "$arch" \
    "$size" "$vocab" "$batch" "${tps[old,1]}" "${tps[old,2]}" "${tps[new,1]}" "${tps[new,2]}" \
    "$(mean_ratio "${tps[old,1]}" "${tps[old,2]}" "${tps[new,1]}" "${tps[new,2]}")")")
  unset tps
done
echo "old: $old ($("$old" --version 2>/dev/null || true))"
echo "new: $new ($("$new" --version 2>/dev/null || true))"
printf '%s\n' "${rows[@]}"
