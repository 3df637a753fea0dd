#!/usr/bin/env bash
# The layering of lib/ (docs/DESIGN.md "Components"): every `#include "X/..."` of a source in a
# component folder names a library that the folder's CMake target links directly (not one that
# arrives only through another library), and the links between scalinglab's libraries have no
# cycle.
#
#   bash tests/check_layering.sh REPO_ROOT BUILD/layering.tsv      (ctest: layering)
#
# layering.tsv is written by tests/CMakeLists.txt at generate time: one line per target, its name,
# a tab, and its LINK_LIBRARIES. Folders map to targets as lib/CMakeLists.txt makes them:
# lib/backend/cpu -> sl_cpu, lib/backend/cuda -> sl_cuda, lib/backend -> sl_backend (the factory),
# lib/cli -> scalinglab, lib/fit/forms -> sl_fit (the forms' archive is linked whole into sl_fit),
# lib/model/blocks -> sl_model (the block kinds are model's sources), lib/<name> -> sl_<name>.
# A target this build does not make (sl_cuda without nvcc) is skipped, and so are includes of it
# (they are compiled out here).
set -euo pipefail
root=${1:?usage: check_layering.sh REPO_ROOT LAYERING_TSV}
tsv=${2:?usage: check_layering.sh REPO_ROOT LAYERING_TSV}
declare -A links
while IFS=$'\t' read -r target deps || [ -n "$target" ]; do
  [ -n "$target" ] && links[$target]=" ${deps//;/ } "
done <"$tsv"
cd "$root" || exit 2

target_of_folder() {
  case $1 in
    lib/backend/cpu) echo sl_cpu ;;
    lib/backend/cuda) echo sl_cuda ;;
    lib/backend) echo sl_backend ;;
    lib/cli) echo scalinglab ;;
    lib/fit/forms) echo sl_fit ;;
    lib/model/blocks) echo sl_model ;;
    lib/*) echo "sl_${1#lib/}" ;;
  esac
}
target_of_include() {
  case $1 in
    backend/cpu/*) echo sl_cpu ;;
    backend/cuda/*) echo sl_cuda ;;
    backend/*) echo sl_backend ;;
    cli/*) echo scalinglab ;;
    */*) echo "sl_${1%%/*}" ;;
  esac
}

bad=0
checked=0
while IFS= read -r -d '' f; do
  t=$(target_of_folder "$(dirname "$f")")
  [ -n "${links[$t]+x}" ] || continue
  checked=$((checked + 1))
  while IFS=: read -r line inc; do
    it=$(target_of_include "$inc")
    [ -z "$it" ] || [ "$it" = "$t" ] && continue
    [ -n "${links[$it]+x}" ] || continue
    if [[ "${links[$t]}" != *" $it "* ]]; then
      echo "$f:$line: includes $inc, but $t does not link $it (lib/CMakeLists.txt)"
      bad=1
    fi
  done < <(grep -noE '^#include "[a-z_]+/[a-z_/]+\.(h|cuh)"' "$f" | sed -E 's/:#include "/:/; s/"$//')
done < <(find lib -type f \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) \
           -print0 | sort -z)

# tsort fails on a loop: one pair per link between our own libraries.
pairs=""
for t in "${!links[@]}"; do
  for d in ${links[$t]}; do
    [ -n "${links[$d]+x}" ] && pairs+="$t $d"$'\n'
  done
done
if ! loop=$(tsort <<<"$pairs" 2>&1 >/dev/null); then
  echo "$loop"
  echo "check_layering: the links of lib/ have a cycle" >&2
  bad=1
fi

if [ "$bad" -ne 0 ]; then
  echo "check_layering: an include without its link, or a cycle (fix lib/CMakeLists.txt)" >&2
  exit 1
fi
echo "check_layering: $checked sources of ${#links[@]} targets include only what they link; no cycle"
