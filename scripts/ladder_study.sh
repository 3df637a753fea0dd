#!/usr/bin/env bash
# Runs the L0-L3 ladder study (experiments/ladder_l0_l3.toml: dense vs hybrid, 4 sizes, D/N = 5,
# 10, 20, 40) on a GPU machine and copies its report into docs/results/ladder-l0-l3/ (what goes
# there: docs/results/ladder-l0-l3/README.md). Run from anywhere, on the GPU machine, after
# building with CUDA:
#   bash scripts/ladder_study.sh [-- STUDY_OPTION ...]      e.g.  -- --per-gpu 4
# Environment: SCALINGLAB (the binary; default build/bin/scalinglab), OUT (the study directory;
# default studies/ladder-l0-l3). The study resumes: after an interruption rerun the same command
# (each invocation's wall time is kept in OUT/study.log). Once every run is done the script needs
# no GPU: run it where gnuplot is to render the figures (copy OUT there; checkpoints not needed).
# Then:
#   1. checks the linux-c corpus against the sha256 digests in data/README.md (unpacking
#      data/corpus/linux-c.tar.xz first when only the archive is there);
#   2. `scalinglab study experiments/ladder_l0_l3.toml --out OUT --device cuda [options]`;
#   3. copies report.md, the figures, params.tex, the fit and savings JSON, sweep.csv and
#      plan.tsv, and writes provenance.txt (the exact command, binary version, commit, GPU, date,
#      wall time);
#   4. runs `scalinglab fit savings` with the arguments savings.json records (its "reproduce"
#      field) on the copied sweep.csv alone in a scratch directory and checks that it reproduces
#      savings.json (timings aside), recording the command and the result in provenance.txt.
# It commits nothing: review docs/results/ladder-l0-l3/ and commit it yourself.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exe="${SCALINGLAB:-$root/build/bin/scalinglab}"
# A relative path is the caller's: make it absolute, as step 4 runs it from a scratch directory.
case "$exe" in /*) ;; */*) exe="$PWD/$exe" ;; esac
out="${OUT:-$root/studies/ladder-l0-l3}"
study=experiments/ladder_l0_l3.toml
dest="$root/docs/results/ladder-l0-l3"
corpus="$root/data/corpus/linux-c"

die() { echo "ladder_study.sh: $*" >&2; exit 1; }

extra=()
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || die "usage: bash scripts/ladder_study.sh [-- STUDY_OPTION ...] (got '$1')"
  shift
  extra=("$@")
fi
# Options this script sets itself.
for ((i = 0; i < ${#extra[@]}; ++i)); do
  case "${extra[$i]}" in
    --device | --out) die "${extra[$i]} is set by this script" ;;
  esac
done

[ -x "$exe" ] || die "$exe: no scalinglab binary (build with CUDA first, or set SCALINGLAB=path)"
command -v python3 >/dev/null || die "python3 is needed for the reproduction check"
version="$("$exe" --version)"

# 1. The corpus, checked against data/README.md's digests ("linux-c/NAME sha256 HEX" lines).
if [ ! -f "$corpus/manifest.json" ]; then
  [ -f "$corpus.tar.xz" ] ||
    die "$corpus: missing; build it with data/make_linux_corpus.sh or copy data/corpus/linux-c.tar.xz here (data/README.md)"
  echo "unpacking $corpus.tar.xz" >&2
  tar -C "$root/data/corpus" -xJf "$corpus.tar.xz"
fi
digests="$(grep -E '^linux-c/[A-Za-z0-9_.]+ +sha256 [0-9a-f]{64}$' "$root/data/README.md" || true)"
[ -n "$digests" ] || die "data/README.md lists no linux-c digests"
while read -r name _ want; do
  got="$(sha256sum "$root/data/corpus/$name" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || die "data/corpus/$name: sha256 $got, data/README.md says $want"
done <<<"$digests"
echo "corpus: $(wc -l <<<"$digests") files match data/README.md" >&2

# 2. The study (resumable), with its wall time.
cmd=("$exe" study "$study" --out "$out" --device cuda ${extra[@]+"${extra[@]}"})
mkdir -p "$out"
cd "$root"
echo "== $(date -u +%FT%TZ) ${cmd[*]}" | tee -a "$out/study.log"
t0=$(date +%s.%N)
set +e
"${cmd[@]}" 2>&1 | tee -a "$out/study.log"
rc=${PIPESTATUS[0]}
set -e
t1=$(date +%s.%N)
wall=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
echo "== exit $rc after $wall s" | tee -a "$out/study.log"
[ "$rc" -eq 0 ] || die "the study did not finish (exit $rc); rerun this script to resume"

# 3. The artefacts.
rep="$out/report"
mkdir -p "$dest"
cp "$rep/report.md" "$rep/params.tex" "$rep/savings.json" "$dest/"
cp "$rep"/fit_*.json "$dest/"
for f in loss_vs_tokens loss_vs_n savings isoflop residuals; do
  for e in gp dat png pdf; do
    [ -f "$rep/$f.$e" ] && cp "$rep/$f.$e" "$dest/"
  done
done
cp "$out/sweep/sweep.csv" "$out/sweep/plan.tsv" "$dest/"
cp "$out/study.log" "$dest/study.log"
rendered=0
for f in "$dest"/*.png; do [ -f "$f" ] && rendered=$((rendered + 1)); done

# 4. Reproduction: `scalinglab fit savings` with the arguments savings.json records (its
#    "reproduce" field, written by the report), run in a directory holding only the copied
#    sweep.csv, must give the same savings.json (wall times and the data file's path aside).
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$dest/sweep.csv" "$scratch/sweep.csv"
mapfile -t fit_args < <(python3 -c 'import json, sys
print("\n".join(json.load(open(sys.argv[1]))["reproduce"]["args"]))' "$dest/savings.json") ||
  die "$dest/savings.json: no reproduce arguments"
repro_cmd=("$exe" "${fit_args[@]}")
(cd "$scratch" && "${repro_cmd[@]}" --quiet) >"$scratch/fit.log" 2>&1 ||
  die "fit savings on the copied sweep.csv failed: $(tail -1 "$scratch/fit.log")"
repro=$(python3 - "$dest/savings.json" "$scratch/savings.json" <<'PY'
import json, sys
def strip(x):  # wall times and the data file's path differ between runs; nothing else may
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in ("seconds", "data", "reproduce")}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
print("reproduced" if a == b else "DIFFERS")
PY
)

gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)"
commit="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
# Uncommitted changes outside this script's own output (which it has just replaced).
dirty="$(git -C "$root" status --porcelain --untracked-files=no -- . ":(exclude)docs/results/ladder-l0-l3" 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)"
{
  echo "command:   ${cmd[*]}   (from the repository root)"
  echo "binary:    $version, commit $commit$dirty"
  echo "gpu:       ${gpu:-none here (this invocation only collected and reported; the devices of the runs are in study.log)}"
  echo "date:      $(date -u +%FT%TZ)"
  echo "wall time: $wall s (this invocation; earlier ones, if the study was resumed, in study.log)"
  echo "corpus:    data/corpus/linux-c, every file matching data/README.md's sha256"
  echo "figures:   $rendered rendered (.png); without gnuplot only the .gp and .dat files"
  echo "savings:   (in a directory holding only sweep.csv) scalinglab ${fit_args[*]} -> $repro savings.json"
} >"$dest/provenance.txt"
# Paths relative to the repository root in everything committed (the report, the fits and the
# logs name the sweep and the runs by where this checkout happens to be).
sed -i "s|$root/||g" "$dest/provenance.txt" "$dest/study.log" "$dest/report.md" "$dest/params.tex" \
  "$dest/savings.json" "$dest"/fit_*.json
cat "$dest/provenance.txt"
[ "$repro" = reproduced ] || echo "ladder_study.sh: warning: fit savings on sweep.csv differs from savings.json" >&2
echo "copied to $dest; review it, then commit it"
