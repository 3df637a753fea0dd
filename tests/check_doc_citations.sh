#!/usr/bin/env bash
# Every Markdown document that a comment cites must exist, and a section cited with it must be a
# heading of that document.
#
#   bash tests/check_doc_citations.sh [REPO_ROOT]      (ctest: docs_citations)
#
# Scanned: the comments of the sources under lib/ tests/ scripts/ data/ experiments/ sweeps/
# analysis/ and CMakeLists.txt (C/C++/CUDA `//` and `/* */`; shell, Python, CMake and TOML `#`;
# Python docstrings), and the whole text of the Markdown files there, in docs/ and README.md.
# A citation is a path ending in .md; it resolves against the repository root (docs/DESIGN.md,
# README.md, analysis/README.md) or against the citing file's folder (a sibling document). When
# a quoted name follows it, as in  docs/MODEL.md "Counting", that name must appear in a heading
# (a line starting with #) of the cited document. File names the toolkit writes (report.md) are
# outputs, not documents, and are skipped, as are paths outside the repository that are absent
# (../shared/...). Exits 1 listing FILE:LINE of every broken citation.
set -euo pipefail

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root" || exit 2

# Outputs of the toolkit that comments name; not documents of the repository.
generated=" report.md "
self=tests/check_doc_citations.sh

files=()
while IFS= read -r -d '' f; do
  f=${f#./}
  [ "$f" = "$self" ] && continue
  files+=("$f")
done < <(find lib tests scripts data experiments sweeps analysis docs \
           \( -path data/corpus -o -path data/cache \) -prune -o -type f \
           \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' \
              -o -name '*.cu' -o -name '*.cuh' -o -name '*.sh' -o -name '*.py' -o -name '*.toml' \
              -o -name '*.cmake' -o -name 'CMakeLists.txt' -o -name '*.md' \) -print0 2>/dev/null)
for f in CMakeLists.txt README.md; do [ -f "$f" ] && files+=("$f"); done
if [ ${#files[@]} -eq 0 ]; then
  echo "check_doc_citations: no sources under $root" >&2
  exit 2
fi

# One line per citation: FILE <TAB> LINE <TAB> PATH <TAB> SECTION (may be empty).
citations=$(awk '
  function mode_of(f) {
    if (f ~ /\.md$/) return "md"
    if (f ~ /\.(h|hpp|c|cc|cpp|cu|cuh)$/) return "c"
    if (f ~ /\.py$/) return "py"
    return "hash"
  }
  # Text after the first "#" that starts the line or follows a blank.
  function hash_comment(s,   i) {
    if (substr(s, 1, 1) == "#") return substr(s, 2)
    i = match(s, /[ \t]#/)
    return i ? substr(s, i + 2) : ""
  }
  function cite(text,   tok, rest, sec, q) {
    while (match(text, /(\.\.\/)*[A-Za-z0-9_][A-Za-z0-9_.\/-]*\.md/)) {
      tok = substr(text, RSTART, RLENGTH)
      rest = substr(text, RSTART + RLENGTH)
      text = rest
      if (rest ~ /^[A-Za-z0-9_]/) continue            # .mdx, .md5: not a Markdown path
      sec = ""
      sub(/^[),]/, "", rest)
      if (rest ~ /^[ \t]*"[^"]+"/) {
        sub(/^[ \t]*"/, "", rest)
        q = index(rest, "\"")
        sec = substr(rest, 1, q - 1)
      }
      printf "%s\t%d\t%s\t%s\n", FILENAME, FNR, tok, sec
    }
  }
  FNR == 1 { mode = mode_of(FILENAME); inblock = 0; indoc = 0 }
  {
    line = $0; text = ""
    if (mode == "md") {
      text = line
    } else if (mode == "c") {
      if (inblock) {
        e = index(line, "*/")
        if (e) { text = substr(line, 1, e - 1); inblock = 0 } else text = line
      } else {
        s = index(line, "//"); b = index(line, "/*")
        if (s && (!b || s < b)) text = substr(line, s + 2)
        else if (b) {
          rest = substr(line, b + 2); e = index(rest, "*/")
          if (e) text = substr(rest, 1, e - 1); else { text = rest; inblock = 1 }
        }
      }
    } else {
      text = hash_comment(line)
      if (mode == "py") {
        n = gsub(/"""/, "\"\"\"", line)
        if (indoc || n > 0) text = text " " line
        if (n % 2 == 1) indoc = !indoc
      }
    }
    if (text != "") cite(text)
  }
' "${files[@]}")

bad=0
while IFS=$'\t' read -r file line path section; do
  [ -z "$file" ] && continue
  name=${path##*/}
  case "$generated" in *" $name "*) continue ;; esac
  # A path that climbs out of the repository (../shared/...: the external test data beside the
  # checkout) is not a document of the project; the tests that read that data check it is there.
  case "$path" in
    ../*) [ -e "$path" ] || [ -e "$(dirname "$file")/$path" ] || continue ;;
  esac
  dir=$(dirname "$file")
  target=""
  if [ "${path#/}" != "$path" ]; then
    [ -f "$path" ] && target=$path
  elif [ -f "$path" ]; then
    target=$path
  elif [ -f "$dir/$path" ]; then
    target=$dir/$path
  fi
  if [ -z "$target" ]; then
    echo "$file:$line: cites $path, which does not exist (give a path from the repository root, e.g. docs/DESIGN.md)"
    bad=1
    continue
  fi
  if [ -n "$section" ] && ! grep -E '^#+ ' "$target" | grep -qF -- "$section"; then
    echo "$file:$line: cites $path \"$section\", but $target has no heading with that name"
    bad=1
  fi
done <<< "$citations"

if [ "$bad" -ne 0 ]; then
  echo "check_doc_citations: broken citations (fix the comment or the document)" >&2
  exit 1
fi
echo "check_doc_citations: $(grep -c . <<< "$citations") citations in ${#files[@]} files, all resolve"
