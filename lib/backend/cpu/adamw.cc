// AdamW with decoupled weight decay, elementwise in the op's type T:
//   g' = grad_scale g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd p )      (t >= 1)
#include <cmath>
#include <cstdint>

#include "backend/cpu/ops.h"
#include "core/error.h"

namespace sl::cpu {

template <class T>
void adamw(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps,
           double wd, double grad_scale, int64_t t) {
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

template void adamw<float>(float*, const float*, float*, float*, int64_t, double, double, double,
                           double, double, double, int64_t);
template void adamw<double>(double*, const double*, double*, double*, int64_t, double, double,
                            double, double, double, double, int64_t);

}  // namespace sl::cpu
