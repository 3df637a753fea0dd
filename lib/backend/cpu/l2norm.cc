// Per-head L2 normalisation (GDN q and k):  y = scale * x * rnorm,  rnorm = (sum_c x^2 + eps)^-1/2
#include <cmath>
#include <cstdint>

#include "backend/cpu/common.h"

namespace sl {

// x [BT, H, C] token stride ldx -> y [BT, H, C] contiguous, rnorm [BT, H].
template <class T>
void CpuBackend<T>::l2norm_forward(Tensor y_t, Tensor rnorm_t, Tensor x_t, const L2NormShape& shape,
                                   float eps) {
  shape.check("l2norm_forward");
  const int64_t BT = shape.BT, H = shape.H, C = shape.C, ldx = shape.ldx;
  const float scale = shape.scale;
  T *y = y_t.as<T>(), *rnorm = rnorm_t.as<T>();
  const T* x = x_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < BT; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const T* xr = x + t * ldx + h * C;
      T ss = 0;
      for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
      const T rn = T(1) / std::sqrt(ss + eps);
      rnorm[t * H + h] = rn;
      T* yr = y + (t * H + h) * C;
      for (int64_t c = 0; c < C; ++c) yr[c] = scale * (xr[c] * rn);
    }
  }
}

// dx (token stride ldx) (=|+=) scale * rnorm * (dy - x rnorm^2 sum_c dy_c x_c)
template <class T>
void CpuBackend<T>::l2norm_backward(Tensor dx_t, Tensor dy_t, Tensor x_t, Tensor rnorm_t,
                                    const L2NormShape& shape, bool accumulate) {
  shape.check("l2norm_backward");
  const int64_t BT = shape.BT, H = shape.H, C = shape.C, ldx = shape.ldx;
  const float scale = shape.scale;
  T* dx = dx_t.as<T>();
  const T *dy = dy_t.as<T>(), *x = x_t.as<T>(), *rnorm = rnorm_t.as<T>();
  if (!dx) return;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < BT; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const T* xr = x + t * ldx + h * C;
      const T* dyr = dy + (t * H + h) * C;
      const T rn = rnorm[t * H + h];
      T dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += dyr[c] * xr[c];
      const T k = dot * rn * rn;
      T* dxr = dx + t * ldx + h * C;
      for (int64_t c = 0; c < C; ++c)
        dxr[c] = (accumulate ? dxr[c] : T(0)) + scale * rn * (dyr[c] - xr[c] * k);
    }
  }
}

SL_CPU_INSTANTIATE(l2norm_forward);
SL_CPU_INSTANTIATE(l2norm_backward);

}  // namespace sl
