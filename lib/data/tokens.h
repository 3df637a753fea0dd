// Token sources and the deterministic, stateless training sampler.
//
// A TokenSource is one read-only stream of token ids, the concatenation of its files in order:
//   - a byte-level text file: each byte is one token (ids 0..255);
//   - a directory: its regular files (hidden files skipped), sorted by name, as byte-level text;
//   - shards, a file whose name ends in ".bin" or ".raw", or a glob (*, ?, [) matching such files,
//     sorted by name; shards and text files may not be mixed.
//     * llm.c ".bin": a 256 x int32 header (1024 bytes) then the tokens: magic 20240520 version 1
//       -> uint16 ids, magic 20240801 version 7 -> uint32; header[2] = token count, and the file
//       size must equal 1024 + count * width.
//     * raw ".raw": headerless little-endian uint16 or uint32 ids, described by the JSON sidecar
//       "<name>.raw.json" = {"format": "scalinglab.raw/1", "dtype": "uint16"|"uint32",
//       "tokens": count, ...}; the file size must equal count * width. (For tools that want a
//       plain array, e.g. numpy.memmap, without skipping a header.)
//     data/shards.h writes both.
// Files are memory-mapped; open() costs O(number of files), not O(tokens).
//
// Vocabulary check: ids >= vocab_size are detected lazily in read() (the copy loop compares each
// id, a negligible cost next to the copy), with an error naming the shard and token offset.
// validate() scans the whole source up front (a vectorised max per file, several GB/s; files
// whose width cannot hold an id >= vocab_size are skipped); `train` calls it before the run
// directory is touched. Only regular files are data: a FIFO, device or socket is refused when
// opened (it would block or never end).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace sl {

class TokenSource {
 public:
  // Throws sl::Error naming the file at fault: missing file, bad magic/version, truncated or
  // overlong body, empty source.
  static TokenSource open(const std::string& spec, int64_t vocab_size);

  int64_t size() const;                                   // total tokens
  void read(int64_t pos, int64_t n, int32_t* out) const;  // tokens [pos, pos+n), may span files
  void validate() const;                                  // checks every id < vocab_size
  std::string describe() const;  // e.g. "llmc v1 uint16, 3 shards, 1.2M tokens"
  const std::string& spec() const;
  int64_t vocab_size() const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;  // copies share the mappings
};

// Training windows: epochs over a seeded permutation, stateless.
//
// The source is cut into W = floor((size - 1) / seq_len) non-overlapping training windows; window
// w covers inputs src[w*seq_len, (w+1)*seq_len) and targets shifted by one (the last token of the
// source, and the tail after W*seq_len + 1, only serve as targets or go unused).
// Windows are drawn through a global counter: row i (0 <= i < batch) of step s is draw
//   c = s * batch + i,  epoch e = c / W,  window = perm_{seed,e}(c mod W),
// where perm_{seed,e} is a bijection of [0, W) (a keyed Feistel network with cycle walking,
// round keys from core/rng.h's mix64 of (seed, e)), so within an epoch every window is drawn
// exactly once and none repeats; the next epoch draws them all again in a different order. Each
// draw is O(1) and a pure function of (seed, step, batch, i, W): there is no loader state, and a
// resumed run reads exactly the tokens of an uninterrupted one (same batch and seq_len).
// inputs and targets are [batch, seq_len] row-major.
// Throws if the source holds fewer than seq_len + 1 tokens.
void sample_batch(const TokenSource& src, uint64_t seed, int64_t step, int64_t batch,
                  int64_t seq_len, int32_t* inputs, int32_t* targets);

// Data parallelism: `world` ranks each fill `batch_per_rank` rows of step s. Rank r takes draws
// c = s * (batch_per_rank * world) + r * batch_per_rank + j, 0 <= j < batch_per_rank, so the
// concatenation over ranks 0..world-1 equals sample_batch(..., batch_per_rank * world, ...)
// and no two ranks ever read the same draw.
void sample_batch_rank(const TokenSource& src, uint64_t seed, int64_t step, int64_t batch_per_rank,
                       int64_t seq_len, int64_t rank, int64_t world, int32_t* inputs,
                       int32_t* targets);

// Number of training windows W = floor((size - 1) / seq_len) (throws like sample_batch).
int64_t train_windows(const TokenSource& src, int64_t seq_len);
// Epoch (0-based) of the first draw of `step` with `batch` rows (global batch for ranks).
int64_t epoch_of(const TokenSource& src, int64_t step, int64_t batch, int64_t seq_len);
// The permutation itself: perm_{seed,epoch}(i) for 0 <= i < n (n >= 1). Exposed for tests.
uint64_t window_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t i);

// Held-out evaluation: window w covers inputs src[w*seq_len, (w+1)*seq_len) and targets shifted
// by one, so windows never overlap and each target token is scored once. The eval set is the
// first eval_windows(...) = min(ceil(n_tokens / seq_len), (size - 1) / seq_len) windows (at least
// 1; n_tokens <= 0 means the whole source). Batches hold `batch` consecutive windows, the last
// possibly fewer: batch b covers windows [b*batch, min((b+1)*batch, W)). Since every window has
// seq_len targets, the eval loss is the plain mean over all windows' tokens.
int64_t eval_windows(const TokenSource& src, int64_t n_tokens, int64_t seq_len);
// Number of batches: ceil(eval_windows / batch).
int64_t eval_batches(const TokenSource& src, int64_t n_tokens, int64_t batch, int64_t seq_len);
// Fills batch b; returns its number of windows (rows written to inputs/targets [rows, seq_len]).
int64_t eval_batch(const TokenSource& src, int64_t n_tokens, int64_t batch, int64_t seq_len,
                   int64_t b, int32_t* inputs, int32_t* targets);

}  // namespace sl
