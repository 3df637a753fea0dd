#!/usr/bin/env bash
# Sets up (scripts/setup.sh), builds everything and runs the test suite with ctest.
# Tests labelled `gpu` skip (and say so) on a machine without a GPU; tests labelled `slow` run only
# with --all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
exclude=(-LE slow)
[ "${1:-}" = "--all" ] && exclude=()
# Passive OpenMP waiting: on a loaded machine spinning threads starve the others.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 1200 "${exclude[@]}"
