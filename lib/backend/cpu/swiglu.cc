// SwiGLU activation: h = silu(gate) * up, gate and up side by side in one row of the fused
// gate|up projection output.
#include <cstdint>

#include "backend/cpu/ops.h"
#include "backend/cpu/scalar_math.h"

namespace sl::cpu {

// gu [R, 2m] = [gate | up] -> h [R, m]
template <class T>
void swiglu_forward(T* h, const T* gu, int64_t R, int64_t m) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* g = gu + r * 2 * m;
    const T* u = g + m;
    T* hr = h + r * m;
    for (int64_t i = 0; i < m; ++i) hr[i] = silu(g[i]) * u[i];
  }
}

// dgate += dh * up * silu'(gate),  dup += dh * silu(gate)
template <class T>
void swiglu_backward(T* dgu, const T* dh, const T* gu, int64_t R, int64_t m) {
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

template void swiglu_forward<float>(float*, const float*, int64_t, int64_t);
template void swiglu_forward<double>(double*, const double*, int64_t, int64_t);
template void swiglu_backward<float>(float*, const float*, const float*, int64_t, int64_t);
template void swiglu_backward<double>(double*, const double*, const double*, int64_t, int64_t);

}  // namespace sl::cpu
