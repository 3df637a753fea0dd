// `scalinglab data prepare`: text files, directories and tar archives into byte-level token
// shards with a deterministic, per-document validation split and a JSON manifest.
//
// Documents. Every regular file is one document, named by its document path:
//   - a plain file given on the command line: its base name;
//   - a file under a directory input: its path relative to that directory ("a/b.txt"); the walk
//     is recursive, skips names starting with '.', does not follow symlinks, and is sorted by
//     path (byte order);
//   - a member of a tar archive (".tar", ".tar.xz"/".txz", ".tar.gz"/".tgz", ".tar.zst"): its
//     member path, in archive order (ustar, GNU long names and pax "path" records understood;
//     compressed archives are read through `xz|gzip|zstd -dc`); hidden members (a path component
//     starting with '.') are skipped as in the directory walk.
// --include/--exclude globs (fnmatch, '*' also matches '/') filter on the document path: a
// document is kept when it matches some include (or none are given) and no exclude.
//
// Tokens: byte-level, each byte one token id (vocab 256); documents are concatenated as they
// come, with nothing between them (like data/make_english_corpus.sh), in input order.
//
// Split: document d goes to validation iff u(d) < val_fraction, where
//   u(d) = (mix64(fnv1a64(document path)) >> 11) * 2^-53  in [0, 1),
// so a document's side depends on its own path only: adding or removing other files never moves
// it. (FNV-1a 64: offset 14695981039346656037, prime 1099511628211; mix64 from core/rng.h.)
//
// Output in DIR: train_000000.bin, train_000001.bin, ..., val_000000.bin, ... (".raw" + ".raw.json"
// with --format raw), each holding at most shard_tokens tokens (documents may straddle shards),
// and manifest.json, written last. Shards are written and fsynced under "<name>.tmp" and renamed
// only once every input has been read, so a failed prepare leaves DIR's shards as they were (and
// no partial file under a final name); shards of an earlier prepare in DIR that the new one did
// not write are removed after the manifest is written.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shards.h"

namespace sl {

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  double val_fraction = 0.1;
  int64_t shard_tokens = 100'000'000;  // llm.c's FineWeb shard size
  ShardFormat format = ShardFormat::kLlmc;
  std::vector<std::string> include, exclude;
  bool verbose = false;  // progress lines on stdout (stderr is kept for the one error line)
};

struct PrepareSplit {
  int64_t documents = 0;
  int64_t tokens = 0;
  double unigram_entropy = 0;  // nats/token of the split's byte histogram
  std::vector<ShardInfo> shards;
};

struct PrepareResult {
  PrepareSplit train, val;
  int64_t skipped = 0;  // documents filtered out by --include/--exclude
  std::string manifest_path;
  double seconds = 0;
};

// Throws sl::Error naming the input (and member or offset) on unreadable or malformed input,
// when no document is selected, when the input holds no tokens, and when val_fraction > 0 but
// no document falls into validation.
PrepareResult prepare(const PrepareOptions& opt);

// u(d) < val_fraction (see above).
bool is_val_document(const std::string& doc_path, double val_fraction);

}  // namespace sl
