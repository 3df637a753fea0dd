// Gated RMSNorm of the GDN output, one row per (token, head), computed in the op's type T:
//   y = w * n * silu(gate),  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
// Row r = t*H + h of x [R, C] reads gate[t, h*C : (h+1)*C] of gate [BT, H*C] (token stride ldg).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/common.h"
#include "backend/cpu/scalar_math.h"

namespace sl {

using cpu::silu;
using cpu::silu_grad;

template <class T>
void CpuBackend<T>::gated_rmsnorm_forward(Tensor y_t, Tensor rstd_t, Tensor x_t, Tensor gate_t,
                                          Tensor w_t, const GatedNormShape& shape, float eps) {
  shape.check("gated_rmsnorm_forward");
  const int64_t R = shape.R, H = shape.H, C = shape.C, ldg = shape.ldg;
  T *y = y_t.as<T>(), *rstd = rstd_t.as<T>();
  const T *x = x_t.as<T>(), *gate = gate_t.as<T>(), *w = w_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    const T* gr = gate + (r / H) * ldg + (r % H) * C;
    T ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T rs = T(1) / std::sqrt(ss / T(C) + eps);
    rstd[r] = rs;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * rs) * silu(gr[c]);
  }
}

// With s = silu(gate) and dn = dy * w * s:
//   dx    += rstd * (dn - n * mean_c(dn * n))
//   dgate += dy * w * n * silu'(gate)      (dgate has gate's layout, token stride ldg)
//   dw    += sum_r dy * n * s              (threads split columns; rows summed in order)
template <class T>
void CpuBackend<T>::gated_rmsnorm_backward(Tensor dx_t, Tensor dgate_t, Tensor dw_t, Tensor dy_t,
                                           Tensor x_t, Tensor gate_t, Tensor w_t, Tensor rstd_t,
                                           const GatedNormShape& shape, bool accumulate) {
  shape.check("gated_rmsnorm_backward");
  const int64_t R = shape.R, H = shape.H, C = shape.C, ldg = shape.ldg;
  T *dx = dx_t.as<T>(), *dgate = dgate_t.as<T>(), *dw = dw_t.as<T>();
  const T *dy = dy_t.as<T>(), *x = x_t.as<T>(), *gate = gate_t.as<T>(), *w = w_t.as<T>(),
          *rstd = rstd_t.as<T>();
  if (dx || dgate) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + r * C;
      const T* gr = gate + (r / H) * ldg + (r % H) * C;
      const T* dyr = dy + r * C;
      const T rs = rstd[r];
      if (dgate) {
        T* dgr = dgate + (r / H) * ldg + (r % H) * C;
        for (int64_t c = 0; c < C; ++c)
          dgr[c] = (accumulate ? dgr[c] : T(0)) + dyr[c] * w[c] * (xr[c] * rs) * silu_grad(gr[c]);
      }
      if (dx) {
        T dot = 0;  // sum_c dn_c n_c
        for (int64_t c = 0; c < C; ++c) dot += dyr[c] * w[c] * silu(gr[c]) * (xr[c] * rs);
        const T mean = dot / T(C);
        T* dxr = dx + r * C;
        for (int64_t c = 0; c < C; ++c) {
          dxr[c] = (accumulate ? dxr[c] : T(0)) +
                   rs * (dyr[c] * w[c] * silu(gr[c]) - (xr[c] * rs) * mean);
        }
      }
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
        const T* xr = x + r * C;
        const T* gr = gate + (r / H) * ldg + (r % H) * C;
        const T* dyr = dy + r * C;
        const T rs = rstd[r];
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dyr[c] * (xr[c] * rs) * silu(gr[c]);
      }
      for (int64_t c = c0; c < c1; ++c) dw[c] += acc[c - c0];
    }
  }
}

SL_CPU_INSTANTIATE(gated_rmsnorm_forward);
SL_CPU_INSTANTIATE(gated_rmsnorm_backward);

}  // namespace sl
