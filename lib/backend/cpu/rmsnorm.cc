// RMSNorm over the last dimension, computed in the op's type T (fp32 for float, as HF does).
//   y = w * n,  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/common.h"

namespace sl {

// x [R, C] ld ldx -> y [R, C] (= res + w * n where res is given), y_copy [R, C], rstd [R].
template <class T>
void CpuBackend<T>::rmsnorm_forward(Tensor y_t, Tensor rstd_t, Tensor x_t, Tensor w_t,
                                    const RmsNormShape& shape, float eps, Tensor res_t,
                                    Tensor y_copy_t) {
  shape.check("rmsnorm_forward");
  const int64_t R = shape.R, C = shape.C, ldx = shape.ldx;
  T *y = y_t.as<T>(), *rstd = rstd_t.as<T>(), *y_copy = y_copy_t.as<T>();
  const T *x = x_t.as<T>(), *w = w_t.as<T>(), *res = res_t.as<T>();
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

// With dn = dy * w:  dx (=|+=) rstd * (dn - n * mean_c(dn * n));  dw += sum_r dy * n.
// dw is a reduction over rows: threads split the columns and each sums its columns over the rows
// in order, so the result does not depend on the thread count.
template <class T>
void CpuBackend<T>::rmsnorm_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t, Tensor w_t,
                                     Tensor rstd_t, const RmsNormShape& shape, bool accumulate) {
  shape.check("rmsnorm_backward");
  const int64_t R = shape.R, C = shape.C, ldx = shape.ldx;
  T *dx = cpu::written<T>(dx_t, accumulate, R, C, ldx), *dw = dw_t.as<T>();
  const T *dy = dy_t.as<T>(), *x = x_t.as<T>(), *w = w_t.as<T>(), *rstd = rstd_t.as<T>();
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
void CpuBackend<T>::rmsnorm_rope_forward(Tensor y, Tensor rstd, Tensor x, Tensor w,
                                         const RmsNormRopeShape& shape, float eps) {
  shape.check("rmsnorm_rope_forward");
  const int64_t B = shape.B, T_ = shape.T, H = shape.H, hd = shape.hd, ldx = shape.ldx;
  rmsnorm_forward(y, rstd, x, w, {.R = B * T_, .C = H * hd, .ldx = ldx}, eps, Tensor{}, Tensor{});
  rope_forward(y, {.B = B, .T = T_, .H = H, .hd = hd, .theta = shape.theta});
}
// dx (=|+=) rmsnorm'(rope^T dy), dw += ...; dy [BT, H hd] is left as it was.
template <class T>
void CpuBackend<T>::rmsnorm_rope_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w,
                                          Tensor rstd, const RmsNormRopeShape& shape,
                                          bool accumulate) {
  shape.check("rmsnorm_rope_backward");
  const int64_t B = shape.B, T_ = shape.T, H = shape.H, hd = shape.hd, ldx = shape.ldx;
  const int64_t n = B * T_ * H * hd;
  std::vector<T> g(dy.as<T>(), dy.as<T>() + n);
  const Tensor gt(g.data(), kType, n);
  rope_backward(gt, {.B = B, .T = T_, .H = H, .hd = hd, .theta = shape.theta});
  rmsnorm_backward(dx, dw, gt, x, w, rstd, {.R = B * T_, .C = H * hd, .ldx = ldx}, accumulate);
}

SL_CPU_INSTANTIATE(rmsnorm_forward);
SL_CPU_INSTANTIATE(rmsnorm_backward);
SL_CPU_INSTANTIATE(rmsnorm_rope_forward);
SL_CPU_INSTANTIATE(rmsnorm_rope_backward);

}  // namespace sl
