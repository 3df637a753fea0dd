#!/usr/bin/env bash
# Every C++/CUDA source under lib/ and tests/ is formatted as .clang-format says (Google style,
# 100 columns; Debian 12's clang-format 14). Fails listing the files that differ; `clang-format -i
# FILE` fixes one. Skips (prints FORMAT_SKIP) where clang-format is not installed.
#
#   bash tests/check_format.sh [REPO_ROOT]      (ctest: format)
set -euo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root" || exit 2
if ! command -v clang-format >/dev/null 2>&1; then
  echo "FORMAT_SKIP: clang-format is not installed (apt-get install clang-format)"
  exit 0
fi
mapfile -d '' files < <(find lib tests \( -name '*.h' -o -name '*.cc' -o -name '*.cu' \
                                          -o -name '*.cuh' -o -name '*.inc' \) -type f -print0 | sort -z)
bad=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [ ${#bad[@]} -gt 0 ]; then
  for f in "${bad[@]}"; do echo "$f: not clang-format clean (clang-format -i $f)"; done
  echo "check_format: ${#bad[@]} of ${#files[@]} files differ from .clang-format" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files clean ($(clang-format --version | head -1))"
