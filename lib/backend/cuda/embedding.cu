// Token embedding lookup and its scatter-add gradient.
//
// Backward without atomics: the host (which holds the ids) groups the token positions by id with
// a stable counting sort (core/backend.h embedding_index), so each distinct id is one segment of
// positions in token order. A fixed grid of blocks takes the segments in turn (their number,
// nseg, is read from the index on the device, so a captured step replays with any batch); each
// sums its rows in that order and adds the sum to dwte[id] once: race-free and bitwise
// reproducible, and repeated ids (the common case at small vocabularies) cost no contention.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

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

// index = [ids (BT) | order (BT) | seg_start (BT + 1) | nseg]: positions
// order[seg_start[s] .. seg_start[s+1]) all hold the id ids[order[seg_start[s]]].
__global__ void embedding_backward_kernel(DPtr dwte, const int32_t* index, DPtr dout, int64_t BT,
                                          int64_t d) {
  const int32_t *ids = index, *order = index + BT, *seg_start = index + 2 * BT;
  const int32_t nseg = index[3 * BT + 1];
  for (int32_t sg = blockIdx.x; sg < nseg; sg += gridDim.x) {
    const int32_t s0 = seg_start[sg], s1 = seg_start[sg + 1];
    const int64_t row = ids[order[s0]];
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      float acc = 0.f;
      for (int32_t s = s0; s < s1; ++s) acc += dout.ld(int64_t{order[s]} * d + c);
      dwte.add(row * d + c, acc);
    }
  }
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

// index: the device copy of core/backend.h's embedding_index layout.
void CudaBackend::embedding_forward(Tensor out_t, Tensor index_t, Tensor wte_t,
                                    const RowsShape& shape) {
  const int64_t BT = shape.R, d = shape.C;
  const char* op = "embedding_forward";
  const DPtr out = dptr(out_t, op, "out"), wte = dptr(wte_t, op, "wte");
  const int32_t* index = i32_ptr(index_t, embedding_index_size(BT), op, "index");
  if (BT * d <= 0) return;
  embedding_forward_kernel<<<grid_for(BT * d, 256), 256, 0, cuda_ctx().stream>>>(out, index, wte,
                                                                                 BT, d);
  SL_CUDA_LAUNCHED();
}

void CudaBackend::embedding_backward(Tensor dwte_t, Tensor index_t, Tensor dout_t,
                                     const RowsShape& shape) {
  const int64_t BT = shape.R, d = shape.C;
  const char* op = "embedding_backward";
  const DPtr dwte = dptr(dwte_t, op, "dwte"), dout = dptr(dout_t, op, "dout");
  const int32_t* index = i32_ptr(index_t, embedding_index_size(BT), op, "index");
  Ctx& ctx = cuda_ctx();
  if (!dwte || BT * d <= 0) return;
  const int64_t blocks = std::min<int64_t>(BT, 8 * int64_t{ctx.num_sms});
  embedding_backward_kernel<<<static_cast<unsigned>(blocks), 128, 0, ctx.stream>>>(dwte, index,
                                                                                   dout, BT, d);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
