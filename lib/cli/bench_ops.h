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

// Times forward and backward of each op in `ops` (names as `bench --op` takes them) and prints
// one row per pass; also writes them as JSON to args.json when set.
void run_op_bench(const OpBenchArgs& args, const std::vector<std::string>& ops);

}  // namespace sl::cli
