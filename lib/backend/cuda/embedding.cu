// Token embedding lookup and its scatter-add gradient.
//
// Backward without atomics: the host (which holds the ids) groups the token positions by id with
// a stable sort, so each distinct id is one segment of positions in token order. One block per
// segment sums its rows in that order and adds the sum to dwte[id] once: race-free and bitwise
// reproducible, and repeated ids (the common case) cost no contention.
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

// out [BT, d] = rows ids[t] of wte [V, d].
__global__ void embedding_forward_kernel(DPtr out, const int32_t* ids, DPtr wte, int64_t BT,
                                         int64_t d) {
  SL_GRID_STRIDE(i, BT * d) {
    const int64_t t = i / d, c = i % d;
    out.st(i, wte.ld(int64_t{ids[t]} * d + c));
  }
}

// index = [order (BT) | seg_start (nseg + 1)]: positions order[seg_start[s] .. seg_start[s+1])
// all hold the id ids[order[seg_start[s]]].
__global__ void embedding_backward_kernel(DPtr dwte, const int32_t* ids, const int32_t* order,
                                          const int32_t* seg_start, DPtr dout, int64_t d) {
  const int32_t s0 = seg_start[blockIdx.x], s1 = seg_start[blockIdx.x + 1];
  const int64_t row = ids[order[s0]];
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.f;
    for (int32_t s = s0; s < s1; ++s) acc += dout.ld(int64_t{order[s]} * d + c);
    dwte.add(row * d + c, acc);
  }
}

}  // namespace

void embedding_forward(Ctx& ctx, DPtr out, const int32_t* ids, DPtr wte, int64_t BT, int64_t d) {
  if (BT * d <= 0) return;
  const int32_t* dids = upload_index(ctx, ids, BT);
  embedding_forward_kernel<<<grid_for(BT * d, 256), 256, 0, ctx.stream>>>(out, dids, wte, BT, d);
  SL_CUDA_LAUNCHED();
}

void embedding_backward(Ctx& ctx, DPtr dwte, const int32_t* ids, DPtr dout, int64_t BT, int64_t d) {
  if (!dwte || BT * d <= 0) return;
  // Host: stable sort of positions by id, then the segment boundaries.
  std::vector<int32_t> host(static_cast<size_t>(2 * BT + 1));
  int32_t* order = host.data();
  std::iota(order, order + BT, 0);
  std::stable_sort(order, order + BT, [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  int32_t* seg = order + BT;
  int64_t nseg = 0;
  for (int64_t i = 0; i < BT; ++i) {
    if (i == 0 || ids[order[i]] != ids[order[i - 1]]) seg[nseg++] = static_cast<int32_t>(i);
  }
  seg[nseg] = static_cast<int32_t>(BT);
  // Device index buffer: [ids (BT) | order (BT) | seg (nseg + 1)].
  const int64_t total = 2 * BT + nseg + 1;
  upload_index(ctx, ids, BT, 0, total);
  int32_t* dev = upload_index(ctx, host.data(), BT + nseg + 1, BT, total);
  embedding_backward_kernel<<<static_cast<unsigned>(nseg), 128, 0, ctx.stream>>>(
      dwte, dev, dev + BT, dev + 2 * BT, dout, d);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl::cuda
