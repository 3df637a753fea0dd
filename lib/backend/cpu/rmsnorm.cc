// RMSNorm over the last dimension, computed in the op's type T (fp32 for float, as HF does).
//   y = w * n,  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/ops.h"

namespace sl::cpu {

// x [R, C] ld ldx -> y [R, C] (= res + w * n where res is given), y_copy [R, C], rstd [R].
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, int64_t ldx, const T* w, int64_t R, int64_t C,
                     T eps, const T* res, T* y_copy) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * ldx;
    T ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T rs = T(1) / std::sqrt(ss / T(C) + eps);
    rstd[r] = rs;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = (res ? res[r * C + c] : T(0)) + w[c] * (xr[c] * rs);
    if (y_copy) std::copy(yr, yr + C, y_copy + r * C);
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

// QK-norm then RoPE (OLMo 3's q and k): y = rope(rms(x; w)), the norm over the whole row of
// H heads. The composition of the two references, so it is exactly what the unfused ops give.
template <class T>
void rmsnorm_rope_forward(T* y, T* rstd, const T* x, int64_t ldx, const T* w, int64_t B, int64_t T_,
                          int64_t H, int64_t hd, T eps, double theta) {
  rmsnorm_forward(y, rstd, x, ldx, w, B * T_, H * hd, eps);
  rope_forward(y, B, T_, H, hd, theta);
}
// dx += rmsnorm'(rope^T dy), dw += ...; dy [BT, H hd] is left as it was.
template <class T>
void rmsnorm_rope_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w,
                           const T* rstd, int64_t B, int64_t T_, int64_t H, int64_t hd,
                           double theta) {
  std::vector<T> g(dy, dy + B * T_ * H * hd);
  rope_backward(g.data(), B, T_, H, hd, theta);
  rmsnorm_backward(dx, dw, g.data(), x, ldx, w, rstd, B * T_, H * hd);
}

template void rmsnorm_forward<float>(float*, float*, const float*, int64_t, const float*, int64_t,
                                     int64_t, float, const float*, float*);
template void rmsnorm_forward<double>(double*, double*, const double*, int64_t, const double*,
                                      int64_t, int64_t, double, const double*, double*);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, int64_t,
                                      const float*, const float*, int64_t, int64_t);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, int64_t,
                                       const double*, const double*, int64_t, int64_t);

template void rmsnorm_rope_forward<float>(float*, float*, const float*, int64_t, const float*,
                                          int64_t, int64_t, int64_t, int64_t, float, double);
template void rmsnorm_rope_forward<double>(double*, double*, const double*, int64_t, const double*,
                                           int64_t, int64_t, int64_t, int64_t, double, double);
template void rmsnorm_rope_backward<float>(float*, float*, const float*, const float*, int64_t,
                                           const float*, const float*, int64_t, int64_t, int64_t,
                                           int64_t, double);
template void rmsnorm_rope_backward<double>(double*, double*, const double*, const double*, int64_t,
                                            const double*, const double*, int64_t, int64_t, int64_t,
                                            int64_t, double);

}  // namespace sl::cpu
