// Per-op benchmark behind `scalinglab bench --op` (bench_ops.cc).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sl::cli {

struct OpBenchArgs {
  std::string device = "cuda", json;
  std::string data;  // ids of the embedding op from this dataset (its first windows), not random
  int64_t batch = 16, seq_len = 1024, heads = 12, head_dim = 64, vocab = 50304;
  int64_t reps = 20, warmup = 3;
};

// The ids and targets of a batch of `batch` x `seq_len` positions, copy `stream`'s: random, or
// with `data` (a text file or token shards, as train.train_data) step `stream`'s training windows
// at seed 0, so that ops whose cost depends on the ids (the embedding gradient groups positions by
// id; a space is ~10% of byte-level text) take the time they take in training.
void bench_batch(const std::string& data, int64_t batch, int64_t seq_len, int64_t vocab,
                 uint64_t stream, std::vector<int32_t>& in, std::vector<int32_t>& tgt);

// Times forward and backward of each op in `ops` (names as `bench --op` takes them) and prints
// one row per pass; also writes them as JSON to args.json when set.
void run_op_bench(const OpBenchArgs& args, const std::vector<std::string>& ops);

}  // namespace sl::cli
