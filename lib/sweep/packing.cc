#include "sweep/packing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"
#include "core/process.h"

namespace sl::sweep {

GpuPacker::GpuPacker(int gpus, int per_gpu, int64_t capacity)
    : per_gpu_(std::max(1, per_gpu)),
      capacity_(std::max<int64_t>(0, capacity)),
      runs_(static_cast<size_t>(std::max(0, gpus)), 0),
      used_(static_cast<size_t>(std::max(0, gpus)), 0) {}

int GpuPacker::place(int64_t bytes) const {
  int best = -1;
  for (int g = 0; g < gpus(); ++g) {
    const size_t i = static_cast<size_t>(g);
    if (runs_[i] >= per_gpu_) continue;
    if (capacity_ > 0 && used_[i] + bytes > capacity_) continue;
    if (best < 0) {
      best = g;
      continue;
    }
    const size_t b = static_cast<size_t>(best);
    // Fewest runs (they share its time), then the most free memory, then the lower index.
    if (runs_[i] < runs_[b] || (runs_[i] == runs_[b] && used_[i] < used_[b])) best = g;
  }
  return best;
}

std::optional<GpuPacker::Placement> GpuPacker::next(const std::vector<int64_t>& queue) const {
  for (size_t k = 0; k < queue.size(); ++k)
    if (const int g = place(queue[k]); g >= 0) return Placement{k, g};
  return std::nullopt;
}

void GpuPacker::start(int gpu, int64_t bytes) {
  const size_t i = static_cast<size_t>(gpu);
  SL_ASSERT(gpu >= 0 && gpu < gpus() && runs_[i] < per_gpu_);
  ++runs_[i];
  used_[i] += bytes;
}

void GpuPacker::finish(int gpu, int64_t bytes) {
  const size_t i = static_cast<size_t>(gpu);
  SL_ASSERT(gpu >= 0 && gpu < gpus() && runs_[i] > 0 && used_[i] >= bytes);
  --runs_[i];
  used_[i] -= bytes;
}

std::string gib_text(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
  return buf;
}

int64_t parse_memory_total(const std::string& csv) {
  std::istringstream in(csv);
  int64_t best = 0;
  for (std::string line; std::getline(in, line);) {
    char* end = nullptr;
    const double mib = std::strtod(line.c_str(), &end);
    if (end == line.c_str() || !(mib > 0) || !std::isfinite(mib)) continue;
    const int64_t b = static_cast<int64_t>(mib * 1024 * 1024);
    best = best == 0 ? b : std::min(best, b);
  }
  return best;
}

GpuMemory gpu_memory(double gpu_mem_gib) {
  if (gpu_mem_gib > 0) return {static_cast<int64_t>(gpu_mem_gib * 1024 * 1024 * 1024), "--gpu-mem"};
  const std::string smi = find_program("nvidia-smi");
  if (smi.empty()) return {0, "nvidia-smi not found"};
  int code = 0;
  std::string out;
  try {
    out = capture_output({smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"}, &code);
  } catch (const Error& e) {
    return {0, std::string("nvidia-smi failed: ") + e.what()};
  }
  const int64_t bytes = code == 0 ? parse_memory_total(out) : 0;
  if (bytes == 0) return {0, "nvidia-smi --query-gpu=memory.total gave no size"};
  return {bytes, "nvidia-smi memory.total"};
}

}  // namespace sl::sweep
