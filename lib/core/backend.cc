// The Backend defaults for host staging and graphs (immediate copies, replay = call again) and
// the host side of the embedding index.
#include "core/backend.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace sl {

void* Backend::alloc_host(size_t bytes) {
  void* p = std::malloc(bytes > 0 ? bytes : 1);
  if (!p) fail("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}
void Backend::free_host(void* p) { std::free(p); }
void Backend::copy_to_device(Tensor dst, const void* host) {
  if (dst.n > 0) std::memcpy(dst.data, host, static_cast<size_t>(dst.n) * dtype_size(dst.dtype));
}
void Backend::copy_to_host(void* host, Tensor src) {
  if (src.n > 0) std::memcpy(host, src.data, static_cast<size_t>(src.n) * dtype_size(src.dtype));
}

// A stamp is the host clock in nanoseconds.
uint64_t Backend::stamp() {
  synchronize();
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}
double Backend::stamp_ms(uint64_t a, uint64_t b) {
  return (static_cast<double>(b) - static_cast<double>(a)) * 1e-6;
}

std::unique_ptr<Backend::Graph> Backend::capture(std::function<void()> /*fn*/) { return nullptr; }

// Counting sort by id, stable (positions of one id stay in token order): O(BT + V) on the host,
// done while the device runs the previous step.
void embedding_index(const int32_t* ids, int64_t BT, int64_t V, int32_t* out) {
  int32_t* order = out + BT;
  std::vector<int32_t> count(static_cast<size_t>(V) + 1, 0);
  for (int64_t t = 0; t < BT; ++t) {
    if (ids[t] < 0 || ids[t] >= V)
      fail("embedding: token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
           " out of range for vocab " + std::to_string(V));
    out[t] = ids[t];
    ++count[static_cast<size_t>(ids[t]) + 1];
  }
  for (int64_t v = 0; v < V; ++v)
    count[static_cast<size_t>(v) + 1] += count[static_cast<size_t>(v)];
  for (int64_t t = 0; t < BT; ++t)
    order[count[static_cast<size_t>(ids[t])]++] = static_cast<int32_t>(t);
}

}  // namespace sl
