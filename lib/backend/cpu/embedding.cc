// Token embedding lookup and its scatter-add gradient. The index tensor is embedding_index's
// layout (core/backend.h); the CPU reads only its first BT entries, the ids.
#include <algorithm>
#include <cstdint>

#include "backend/cpu/common.h"

namespace sl {

// out [BT, d] = rows ids[t] of wte [V, d].
template <class T>
void CpuBackend<T>::embedding_forward(Tensor out_t, Tensor index_t, Tensor wte_t,
                                      const RowsShape& shape) {
  shape.check("embedding_forward");
  const int64_t BT = shape.R, d = shape.C;
  T* out = out_t.as<T>();
  const int32_t* ids = index_t.as<int32_t>();
  const T* wte = wte_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < BT; ++t) {
    std::copy_n(wte + int64_t{ids[t]} * d, d, out + t * d);
  }
}

// dwte[ids[t], :] += dout[t, :]. Repeated ids make a token-parallel loop racy, so threads split
// the columns instead and each walks the tokens in order: race-free, and the summation order per
// element is fixed whatever the thread count.
template <class T>
void CpuBackend<T>::embedding_backward(Tensor dwte_t, Tensor index_t, Tensor dout_t,
                                       const RowsShape& shape) {
  shape.check("embedding_backward");
  const int64_t BT = shape.R, d = shape.C;
  if (!dwte_t) return;
  T* dwte = dwte_t.as<T>();
  const int32_t* ids = index_t.as<int32_t>();
  const T* dout = dout_t.as<T>();
  constexpr int64_t kCols = 64;
  const int64_t nblk = (d + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t c0 = blk * kCols, c1 = std::min(d, c0 + kCols);
    for (int64_t t = 0; t < BT; ++t) {
      T* dst = dwte + int64_t{ids[t]} * d;
      const T* src = dout + t * d;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

SL_CPU_INSTANTIATE(embedding_forward);
SL_CPU_INSTANTIATE(embedding_backward);

}  // namespace sl
