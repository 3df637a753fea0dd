// Where the local executor starts its next run on the GPUs (docs/DESIGN.md "Local executor"):
// each run has a device-memory estimate (train/memory.h), each GPU a capacity, and a GPU takes a
// run only while the estimates of the runs on it, this one included, stay within its capacity and
// it holds fewer than --per-gpu runs. The queue is in start order (largest FLOPs first); when a
// slot frees, the first queued run that fits now starts (greedy: the largest that fits, smaller
// ones packed beside the large), on the GPU with the fewest runs, then the most free memory,
// then the lowest index. A pure class, so the decisions are testable without processes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sl::sweep {

class GpuPacker {
 public:
  // `gpus` GPUs of `capacity` bytes each (0: unknown, only the count limits), at most `per_gpu`
  // runs on each.
  GpuPacker(int gpus, int per_gpu, int64_t capacity);

  int gpus() const { return static_cast<int>(runs_.size()); }
  int64_t capacity() const { return capacity_; }
  // Whether a run of `bytes` fits on an empty GPU (always, when the capacity is unknown).
  bool fits_alone(int64_t bytes) const { return capacity_ <= 0 || bytes <= capacity_; }
  // The GPU a run of `bytes` would start on now, or -1 when no GPU has room for it.
  int place(int64_t bytes) const;

  struct Placement {
    size_t queue_index;  // into the queue given
    int gpu;
  };
  // The first run of `queue` (estimated bytes, in start order) that fits now, and its GPU.
  std::optional<Placement> next(const std::vector<int64_t>& queue) const;

  void start(int gpu, int64_t bytes);   // a run of `bytes` started on `gpu`
  void finish(int gpu, int64_t bytes);  // ... and ended
  int runs_on(int gpu) const { return runs_[static_cast<size_t>(gpu)]; }
  int64_t used_on(int gpu) const { return used_[static_cast<size_t>(gpu)]; }

 private:
  int per_gpu_;
  int64_t capacity_;
  std::vector<int> runs_;
  std::vector<int64_t> used_;
};

// "9.87 GiB": bytes in GiB with two decimals, for the launch's lines and errors.
std::string gib_text(int64_t bytes);

// The memory of one GPU, as the local executor learns it: `--gpu-mem GiB` when given (> 0), else
// the smallest memory.total that `nvidia-smi --query-gpu=memory.total` reports (every GPU of a
// node is taken to be that large). `bytes` 0 when neither is known; `source` says which it was,
// or why it is unknown, for the launch's line.
struct GpuMemory {
  int64_t bytes = 0;
  std::string source;
};
GpuMemory gpu_memory(double gpu_mem_gib);
// Parses nvidia-smi's `--format=csv,noheader,nounits` output (one MiB count per line): the
// smallest, in bytes; 0 when there is no number in it.
int64_t parse_memory_total(const std::string& csv);

}  // namespace sl::sweep
