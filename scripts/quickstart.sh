#!/usr/bin/env bash
# The main job for now: set up, then train a small hybrid (OLMo Hybrid pattern GGGA, d=128) on the
# bundled English corpus on the CPU, and print where its log is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-runs/quickstart-hybrid}
rm -rf "$OUT"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
./build/bin/scalinglab train --config experiments/quickstart_hybrid.toml --out "$OUT"
echo "log: $OUT/log.h5  (h5dump -g /eval $OUT/log.h5; config $OUT/config.toml; checkpoint $OUT/ckpt/)"
