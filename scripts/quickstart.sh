#!/usr/bin/env bash
# The main job: set up, then run the quickstart study on the CPU: dense vs hybrid (OLMo 3 vs OLMo
# Hybrid) on 3 tiny sizes x 3 WSD budgets on the bundled English corpus, collected, fitted and
# reported (experiments/quickstart.toml). Prints where the report is. Rerunning resumes: completed
# runs are skipped.
#
# It builds only the `scalinglab` binary (the tests are scripts/test.sh's). On a machine with the
# CUDA toolkit but no GPU it skips the CUDA backend (its kernels take most of a build on a small
# machine and could not run here); SL_CUDA=ON builds it anyway, SL_CUDA=OFF skips it everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SL_CUDA:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    export SL_CUDA=ON
  else
    export SL_CUDA=OFF
    echo "quickstart: no GPU here: building without the CUDA backend (SL_CUDA=ON bash scripts/quickstart.sh builds it)"
  fi
fi
SL_TARGETS=${SL_TARGETS:-scalinglab} bash scripts/setup.sh
OUT=${OUT:-runs/quickstart-study}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# Tiny models use one core well: one run per core.
./build/bin/scalinglab study experiments/quickstart.toml --out "$OUT" --jobs "$(nproc)"
echo "report: $OUT/report/report.md  (figures $OUT/report/*.pdf|png, table params.tex; runs $OUT/sweep/runs/)"
