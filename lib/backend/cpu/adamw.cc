// AdamW with decoupled weight decay over the items of a flat parameter buffer: the step's scalars
// decide clipping and skipping once, then each item is one elementwise update (adamw.h).
#include "backend/cpu/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/common.h"
#include "core/error.h"

namespace sl {
namespace cpu {

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2,
                  double eps, double wd, double grad_scale, int64_t t) {
  SL_ASSERT(t >= 1);
  // Bias corrections in double (1 - b2^t is tiny for small t), then everything in T.
  const T bc1 = T(1.0 - std::pow(b1, double(t)));
  const T bc2 = T(1.0 - std::pow(b2, double(t)));
  const T tlr = T(lr), tb1 = T(b1), tb2 = T(b2), teps = T(eps), twd = T(wd), tgs = T(grad_scale);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] * tgs;
    m[i] = tb1 * m[i] + (T(1) - tb1) * gi;
    v[i] = tb2 * v[i] + (T(1) - tb2) * gi * gi;
    const T mhat = m[i] / bc1;
    const T vhat = v[i] / bc2;
    p[i] -= tlr * (mhat / (std::sqrt(vhat) + teps) + twd * p[i]);
  }
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t, double, double,
                                  double, double, double, double, int64_t);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t, double,
                                   double, double, double, double, double, int64_t);

}  // namespace cpu

// The step's scalars decide clipping and skipping once, in double, as the host used to; each
// item is then one call of the elementwise update (scalars rounded to float, the interface's
// precision, so a step is bitwise what it was with host-side scalars).
template <class T>
void CpuBackend<T>::adamw(Tensor p_t, Tensor g_t, Tensor m_t, Tensor v_t, Tensor p_compute,
                          Tensor items_t, int64_t n_items, Tensor step_t, const AdamWHyper& hyper) {
  hyper.check("adamw");
  const float b1 = hyper.b1, b2 = hyper.b2, eps = hyper.eps, wd = hyper.wd,
              max_norm = hyper.max_norm;
  const double* step = step_t.as<double>();
  const double loss = step[kStepLossSum], gsq = step[kStepGradSq];
  if (!std::isfinite(loss) || !std::isfinite(gsq)) return;
  const double gnorm = std::sqrt(gsq);
  const double clip = max_norm > 0 && gnorm > max_norm ? max_norm / gnorm : 1.0;
  const float lr = static_cast<float>(step[kStepLr]);
  const auto t = static_cast<int64_t>(step[kStepT]);
  const int32_t* items = items_t.as<int32_t>();
  T *p = p_t.as<T>(), *m = m_t.as<T>(), *v = v_t.as<T>();
  const T* g = g_t.as<T>();
  for (int64_t i = 0; i < n_items; ++i) {
    const int64_t b = items[3 * i], n = items[3 * i + 1];
    cpu::adamw_update<T>(p + b, g + b, m + b, v + b, n, lr, b1, b2, eps,
                         items[3 * i + 2] ? wd : 0.f, static_cast<float>(clip), t);
    // A separate compute copy (one dtype here: a plain copy) gets the updated range too.
    if (p_compute && p_compute.data != p_t.data) std::copy_n(p + b, n, p_compute.as<T>() + b);
  }
}

SL_CPU_INSTANTIATE(adamw);

}  // namespace sl
