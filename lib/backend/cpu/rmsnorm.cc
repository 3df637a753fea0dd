// RMSNorm over the last dimension, computed in the op's type T (fp32 for float, as HF does).
//   y = w * n,  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/ops.h"

namespace sl::cpu {

// x [R, C] ld ldx -> y [R, C], rstd [R].
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, int64_t ldx, const T* w, int64_t R, int64_t C,
                     T eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * ldx;
    T ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T rs = T(1) / std::sqrt(ss / T(C) + eps);
    rstd[r] = rs;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * rs);
  }
}

// With dn = dy * w:  dx = rstd * (dn - n * mean_c(dn * n));  dw = sum_r dy * n.
// dw is a reduction over rows: threads split the columns and each sums its columns over the rows
// in order, so the result does not depend on the thread count.
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w, const T* rstd,
                      int64_t R, int64_t C) {
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + r * ldx;
      const T* dyr = dy + r * C;
      const T rs = rstd[r];
      T dot = 0;  // sum_c dn_c n_c
      for (int64_t c = 0; c < C; ++c) dot += dyr[c] * w[c] * (xr[c] * rs);
      const T mean = dot / T(C);
      T* dxr = dx + r * ldx;
      for (int64_t c = 0; c < C; ++c) dxr[c] += rs * (dyr[c] * w[c] - (xr[c] * rs) * mean);
    }
  }
  if (dw) {
    constexpr int64_t kCols = 64;
    const int64_t nblk = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
      T acc[kCols] = {};
      for (int64_t r = 0; r < R; ++r) {
        const T* xr = x + r * ldx;
        const T* dyr = dy + r * C;
        const T rs = rstd[r];
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dyr[c] * (xr[c] * rs);
      }
      for (int64_t c = c0; c < c1; ++c) dw[c] += acc[c - c0];
    }
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, int64_t, const float*, int64_t,
                                     int64_t, float);
template void rmsnorm_forward<double>(double*, double*, const double*, int64_t, const double*,
                                      int64_t, int64_t, double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, int64_t,
                                      const float*, const float*, int64_t, int64_t);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, int64_t,
                                       const double*, const double*, int64_t, int64_t);

}  // namespace sl::cpu
