// SwiGLU activation: h = silu(gate) * up, gate and up side by side in one row of the fused
// gate|up projection output.
#include <cstdint>

#include "backend/cpu/common.h"
#include "backend/cpu/scalar_math.h"

namespace sl {

using cpu::silu;
using cpu::silu_grad;

// gu [R, 2m] = [gate | up] -> h [R, m]
template <class T>
void CpuBackend<T>::swiglu_forward(Tensor h_t, Tensor gu_t, const RowsShape& shape) {
  shape.check("swiglu_forward");
  const int64_t R = shape.R, m = shape.C;
  T* h = h_t.as<T>();
  const T* gu = gu_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* g = gu + r * 2 * m;
    const T* u = g + m;
    T* hr = h + r * m;
    for (int64_t i = 0; i < m; ++i) hr[i] = silu(g[i]) * u[i];
  }
}

// dgate (=|+=) dh * up * silu'(gate),  dup (=|+=) dh * silu(gate)
template <class T>
void CpuBackend<T>::swiglu_backward(Tensor dgu_t, Tensor dh_t, Tensor gu_t, const RowsShape& shape,
                                    bool accumulate) {
  shape.check("swiglu_backward");
  const int64_t R = shape.R, m = shape.C;
  T* dgu = cpu::written<T>(dgu_t, accumulate, R, 2 * m, 2 * m);
  const T *dh = dh_t.as<T>(), *gu = gu_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* g = gu + r * 2 * m;
    const T* u = g + m;
    const T* dhr = dh + r * m;
    T* dg = dgu + r * 2 * m;
    T* du = dg + m;
    for (int64_t i = 0; i < m; ++i) {
      dg[i] += dhr[i] * u[i] * silu_grad(g[i]);
      du[i] += dhr[i] * silu(g[i]);
    }
  }
}

SL_CPU_INSTANTIATE(swiglu_forward);
SL_CPU_INSTANTIATE(swiglu_backward);

}  // namespace sl
