#!/usr/bin/env bash
# Builds the small real English corpus used by tests and the quickstart, from the Debian package
# `fortunes` (BSD fortune(6) cookie files, BSD licence):
#   data/corpus/english/train.txt   byte-level text (each byte one token, vocab 256)
#   data/corpus/english/val.txt
#   data/corpus/english/MANIFEST    package versions, split rule, sizes, sha256, val entropy
# The cookie files in /usr/share/games/fortunes (not the .dat indexes, not the .u8 symlinks) are
# taken in C-locale name order; file i (0-based) goes to val when i % 10 == 0, else to train, and
# each split is the plain concatenation of its files. Same package version -> same bytes.
# Idempotent (reruns rewrite identical files) and loud: any failure stops with a message.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/data/corpus/english"
src=/usr/share/games/fortunes

die() { echo "make_english_corpus.sh: $*" >&2; exit 1; }

if ! dpkg -s fortunes >/dev/null 2>&1; then
  echo "installing Debian package 'fortunes'..." >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y --no-install-recommends fortunes >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends fortunes >&2; } ||
      die "apt-get install fortunes failed"
  elif command -v sudo >/dev/null; then
    sudo apt-get install -y --no-install-recommends fortunes >&2 ||
      die "sudo apt-get install fortunes failed"
  else
    die "package 'fortunes' is not installed and we are not root: apt-get install fortunes"
  fi
fi
version="$(dpkg-query -W -f='${Version}' fortunes)"
version_min="$(dpkg-query -W -f='${Version}' fortunes-min 2>/dev/null || echo none)"
[ -d "$src" ] || die "$src: no such directory (is 'fortunes' installed correctly?)"

mapfile -t files < <(find "$src" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' \
                       -printf '%f\n' | LC_ALL=C sort)
[ "${#files[@]}" -ge 10 ] || die "$src: only ${#files[@]} cookie files, expected dozens"

mkdir -p "$out"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/train.txt"
: >"$tmp/val.txt"
val_files=()
train_files=()
for i in "${!files[@]}"; do
  f="${files[$i]}"
  if (( i % 10 == 0 )); then
    cat -- "$src/$f" >>"$tmp/val.txt"
    val_files+=("$f")
  else
    cat -- "$src/$f" >>"$tmp/train.txt"
    train_files+=("$f")
  fi
done
[ -s "$tmp/train.txt" ] || die "train.txt came out empty"
[ -s "$tmp/val.txt" ] || die "val.txt came out empty"

# Unigram (byte) entropy of val.txt in nats/byte: the loss of the best context-free model, a
# ceiling any trained model must beat.
entropy="$(python3 - "$tmp/val.txt" <<'PY'
import collections, math, sys
data = open(sys.argv[1], "rb").read()
n = len(data)
print(f"{-sum(c / n * math.log(c / n) for c in collections.Counter(data).values()):.4f}")
PY
)" || die "entropy computation failed (python3 missing?)"

train_bytes=$(stat -c %s "$tmp/train.txt")
val_bytes=$(stat -c %s "$tmp/val.txt")
train_sha=$(sha256sum "$tmp/train.txt" | cut -d' ' -f1)
val_sha=$(sha256sum "$tmp/val.txt" | cut -d' ' -f1)

cat >"$tmp/MANIFEST" <<MAN
# data/corpus/english: built by data/make_english_corpus.sh (see data/README.md)
source_package fortunes $version
source_package fortunes-min $version_min
source_dir $src
license BSD (fortune-mod, University of California, advertising clause removed; see /usr/share/doc/fortunes/copyright)
split sorted cookie files, index % 10 == 0 -> val, else train
val_files ${val_files[*]}
train_files ${train_files[*]}
train.txt bytes $train_bytes sha256 $train_sha
val.txt bytes $val_bytes sha256 $val_sha
val.txt unigram_entropy_nats_per_byte $entropy
MAN

for f in train.txt val.txt MANIFEST; do
  mv -f "$tmp/$f" "$out/$f"
done

echo "fortunes $version (fortunes-min $version_min): ${#files[@]} files"
echo "train.txt $train_bytes bytes sha256 $train_sha"
echo "val.txt   $val_bytes bytes sha256 $val_sha (${#val_files[@]} files: ${val_files[*]})"
echo "val.txt unigram entropy $entropy nats/byte"
echo "wrote $out/{train.txt,val.txt,MANIFEST}"
