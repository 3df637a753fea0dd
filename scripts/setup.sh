#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for scalinglab and builds it (idempotent):
#   1. installs the Debian packages the build, the tests and the bundled corpus need;
#   2. builds the small English corpus (data/make_english_corpus.sh);
#   3. configures and builds in ./build (CUDA backend on when /usr/local/cuda/bin/nvcc exists),
#      warnings as errors.
# Environment: BUILD_DIR (default build), JOBS (default nproc), SL_CUDA=ON|OFF (default ON: build
# the CUDA backend where nvcc exists), SL_TARGETS (targets to build, default all: e.g. scalinglab).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config python3
  libeigen3-dev libceres-dev libhdf5-dev hdf5-tools libcli11-dev libboost-test-dev
  libtomlplusplus-dev nlohmann-json3-dev gnuplot-nox fortunes clang-format
  slurm-wlm munge)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash data/make_english_corpus.sh >/dev/null

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSL_WERROR=ON -DSL_CUDA="${SL_CUDA:-ON}" >/dev/null
if [ -n "${SL_TARGETS:-}" ]; then
  # shellcheck disable=SC2086 # a list of target names
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target ${SL_TARGETS}
else
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
fi
