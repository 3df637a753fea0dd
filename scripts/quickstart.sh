#!/usr/bin/env bash
# The main job: set up, then run the quickstart study on the CPU: dense vs hybrid (OLMo 3 vs OLMo
# Hybrid) on 3 tiny sizes x 3 WSD budgets on the bundled English corpus, collected, fitted and
# reported (experiments/quickstart.toml). Prints where the report is. Rerunning resumes: completed
# runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-runs/quickstart-study}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# Tiny models use one core well: one run per core.
./build/bin/scalinglab study experiments/quickstart.toml --out "$OUT" --jobs "$(nproc)"
echo "report: $OUT/report/report.md  (figures $OUT/report/*.pdf|png, table params.tex; runs $OUT/sweep/runs/)"
