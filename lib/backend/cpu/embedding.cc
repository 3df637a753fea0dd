// Token embedding lookup and its scatter-add gradient.
#include <algorithm>
#include <cstdint>

#include "backend/cpu/ops.h"

namespace sl::cpu {

// out [BT, d] = rows ids[t] of wte [V, d].
template <class T>
void embedding_forward(T* out, const int32_t* ids, const T* wte, int64_t BT, int64_t d) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < BT; ++t) {
    std::copy_n(wte + int64_t{ids[t]} * d, d, out + t * d);
  }
}

// dwte[ids[t], :] += dout[t, :]. Repeated ids make a token-parallel loop racy, so threads split
// the columns instead and each walks the tokens in order: race-free, and the summation order per
// element is fixed whatever the thread count.
template <class T>
void embedding_backward(T* dwte, const int32_t* ids, const T* dout, int64_t BT, int64_t d) {
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

template void embedding_forward<float>(float*, const int32_t*, const float*, int64_t, int64_t);
template void embedding_forward<double>(double*, const int32_t*, const double*, int64_t, int64_t);
template void embedding_backward<float>(float*, const int32_t*, const float*, int64_t, int64_t);
template void embedding_backward<double>(double*, const int32_t*, const double*, int64_t, int64_t);

}  // namespace sl::cpu
