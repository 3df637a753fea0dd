// The elementwise AdamW update of one contiguous range, in the op's type T with double
// hyperparameters:
//   g' = grad_scale g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd p )      (t >= 1)
// CpuBackend<T>::adamw (adamw.cc) runs it once per item, after deciding clipping and the skip
// from the step scalars; tests check it against hand-computed steps at double precision, which
// the op's float interface cannot carry.
#pragma once
#include <cstdint>

namespace sl::cpu {

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2,
                  double eps, double wd, double grad_scale, int64_t t);

}  // namespace sl::cpu
