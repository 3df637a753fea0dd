// Device memory of one training run on the CUDA backend, estimated from its config alone (no GPU,
// nothing allocated): what `train` allocates through the backend (the model, AdamW, the WSD branch
// snapshot: exact, model/model.h model_memory), the backend's own workspaces at their final size,
// and a stated per-process overhead. The local executor packs runs onto GPUs by it
// (docs/DESIGN.md "Local executor"); docs/PERFORMANCE.md "Device memory of a run" compares it with
// measured peaks.
#pragma once
#include <cstdint>

#include "train/config.h"

namespace sl {

struct DeviceMemory {
  int64_t model = 0;      // Model: parameters, gradients, compute copy, activations
  int64_t optimizer = 0;  // AdamW: moments m and v, the update's item table
  int64_t snapshot = 0;   // WSD with several budgets: the stable state kept during a cooldown
  int64_t workspace = 0;  // the CUDA backend's per-op workspace at its final size (below)
  int64_t library = 0;    // cuBLASLt workspace, reduction partials, RoPE tables, GEMM plans
  int64_t process = 0;    // per-process overhead: the CUDA context (code, heaps, stacks)
  // What Backend::peak_bytes counts, i.e. `scalinglab bench`'s peakGiB (bench has no snapshot).
  int64_t allocated() const { return model + optimizer + snapshot; }
  // What the run holds on its GPU: the packing's size of the run.
  int64_t total() const { return allocated() + workspace + library + process; }
};

// The CUDA context and allocator overhead of one process, counted once per run: about 0.5 GiB
// on an H100/H200 with CUDA 12 (not measured by this toolkit: `bench` counts its own allocations
// only; see docs/PERFORMANCE.md "Device memory of a run").
inline constexpr int64_t kProcessOverheadBytes = int64_t{512} << 20;

// The estimate for `cfg` trained on one GPU (batch_size sequences of seq_len tokens per step).
DeviceMemory estimate_device_bytes(const TrainConfig& cfg);

}  // namespace sl
