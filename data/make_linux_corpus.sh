#!/usr/bin/env bash
# Builds two large byte-level corpora for GPU ladders from Debian's linux-source-6.1 package
# (Linux kernel 6.1 sources, GPL-2.0), with `scalinglab data prepare` (lib/data/prepare.h):
#   data/corpus/linux-c/      C sources (*.c, *.h) of the core kernel: kernel/ mm/ fs/ net/
#                             include/ lib/ block/ crypto/ security/ ipc/ init/ io_uring/ virt/
#                             arch/x86/, and of drivers/{net,usb,md,block,pci} (the rest of
#                             drivers/ - gpu/ alone is 468 MB, mostly register tables - the other
#                             arches, sound/ and tools/ are left out)
#   data/corpus/linux-docs/   Documentation/ (reStructuredText and plain text; images and SVG
#                             skipped)
# Each holds llm.c v1 shards (train_*.bin, val_*.bin; vocab 256) and manifest.json (counts,
# per-shard sha256, unigram entropy), and is packed to data/corpus/linux-{c,docs}.tar.xz (under
# 60 MiB each, checked) with a record data/corpus/linux-{c,docs}.tar.xz.json: package version,
# source tarball sha256, the prepare command and its time, archive size and sha256.
# Unpack on a GPU node with `tar -C data/corpus -xJf linux-c.tar.xz`; train on
# data/corpus/linux-c/train_*.bin with vocab_size = 256.
#
# The package version is pinned (LINUX_SOURCE_VERSION, default below): the same version gives
# the same shards, byte for byte. Needs the scalinglab binary (SCALINGLAB, default build/bin).
# Takes several minutes on 2 cores. Not run by CI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg=linux-source-6.1
pin="${LINUX_SOURCE_VERSION:-6.1.192-2}"
tarball=/usr/src/linux-source-6.1.tar.xz
top=linux-source-6.1
exe="${SCALINGLAB:-$root/build/bin/scalinglab}"
corpus="$root/data/corpus"

die() { echo "make_linux_corpus.sh: $*" >&2; exit 1; }

[ -x "$exe" ] || die "$exe: no scalinglab binary (build first, or set SCALINGLAB=path)"
command -v xz >/dev/null || die "xz is not installed (apt-get install xz-utils)"

installed="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
if [ -z "$installed" ]; then
  echo "installing Debian package $pkg=$pin..." >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo=sudo; } ||
    die "package $pkg is not installed and we are not root: apt-get install $pkg=$pin"
  $sudo apt-get install -y --no-install-recommends "$pkg=$pin" >&2 ||
    { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "$pkg=$pin" >&2; } ||
    die "apt-get install $pkg=$pin failed (is that version still in the archive? set LINUX_SOURCE_VERSION)"
  installed="$(dpkg-query -W -f='${Version}' "$pkg")"
fi
[ "$installed" = "$pin" ] ||
  die "$pkg $installed is installed, the recipe pins $pin: the numbers in data/README.md are for $pin (set LINUX_SOURCE_VERSION=$installed to build anyway)"
[ -f "$tarball" ] || die "$tarball: missing (is $pkg installed correctly?)"
tar_sha="$(sha256sum "$tarball" | cut -d' ' -f1)"

c_dirs=(kernel mm fs net include lib block crypto security ipc init io_uring virt arch/x86
  drivers/net drivers/usb drivers/md drivers/block drivers/pci)
c_args=()
for d in "${c_dirs[@]}"; do c_args+=(--include "$top/$d/*.c" --include "$top/$d/*.h"); done
docs_args=(--include "$top/Documentation/*")
for e in png jpg jpeg gif svg pdf ico; do docs_args+=(--exclude "*.$e"); done

mkdir -p "$corpus"
build_one() {  # name, prepare arguments...
  local name="$1"; shift
  local out="$corpus/$name" t0 t1 secs
  echo "== $name: prepare" >&2
  t0=$(date +%s.%N)
  "$exe" data prepare "$tarball" --out "$out" --val-fraction 0.02 --format llmc "$@"
  t1=$(date +%s.%N)
  secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  "$exe" data inspect "$out" >/dev/null || die "$name: inspect found a bad shard"
  echo "== $name: xz" >&2
  local archive="$corpus/$name.tar.xz"
  tar -C "$corpus" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "$name" |
    xz -T2 -6 >"$archive.tmp"
  mv -f "$archive.tmp" "$archive"
  local bytes sha
  bytes=$(stat -c %s "$archive")
  sha=$(sha256sum "$archive" | cut -d' ' -f1)
  [ "$bytes" -lt $((60 * 1024 * 1024)) ] || die "$archive: $bytes bytes, over the 60 MiB budget"
  python3 - "$out/manifest.json" "$archive.json" "$installed" "$tar_sha" "$secs" "$bytes" "$sha" \
      "$name" "$*" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rec = {
    "corpus": sys.argv[8],
    "source_package": "linux-source-6.1 " + sys.argv[3],
    "source_tarball": "/usr/src/linux-source-6.1.tar.xz",
    "source_tarball_sha256": sys.argv[4],
    "license": "GPL-2.0 (Linux kernel; see /usr/share/doc/linux-source-6.1/copyright)",
    "prepare_args": sys.argv[9],
    "prepare_seconds": float(sys.argv[5]),
    "archive": sys.argv[8] + ".tar.xz",
    "archive_bytes": int(sys.argv[6]),
    "archive_sha256": sys.argv[7],
    "documents": m["documents"],
    "tokens": m["tokens"],
    "unigram_entropy_nats": m["unigram_entropy_nats"],
    "shards": m["shards"],
}
json.dump(rec, open(sys.argv[2], "w"), indent=2)
print(f"{sys.argv[8]}: {m['tokens']['train']} train + {m['tokens']['val']} val tokens, "
      f"entropy {m['unigram_entropy_nats']['val']:.4f} nats/byte (val), prepare {sys.argv[5]} s, "
      f"{sys.argv[8]}.tar.xz {int(sys.argv[6]) / 2**20:.1f} MiB sha256 {sys.argv[7]}")
PY
}

build_one linux-c "${c_args[@]}"
build_one linux-docs "${docs_args[@]}"
echo "wrote $corpus/linux-{c,docs}/ and $corpus/linux-{c,docs}.tar.xz{,.json}"
