// CpuBackend<T>: memory, host copies and the elementwise ops (axpy, copy2d, sum_squares, scale).
// Every other op is defined, and instantiated, in its own file of this folder (common.h).
#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace sl {

template <class T>
Tensor CpuBackend<T>::alloc(int64_t n, DType t) {
  // T for every op's tensors; f64 scalars (step sums) and i32 indices beside them.
  SL_ASSERT(t == kType || t == DType::f64 || t == DType::i32);
  // 64-byte alignment for vectorised loops; calloc-like zero fill.
  size_t bytes = ((static_cast<size_t>(n) * dtype_size(t) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes > 0 ? bytes : 64);
  if (!p) fail("cpu: out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, bytes);
  return Tensor(p, t, n);
}
template <class T>
void CpuBackend<T>::free(Tensor t) {
  std::free(t.data);
}
template <class T>
void CpuBackend<T>::zero(Tensor t) {
  std::memset(t.data, 0, static_cast<size_t>(t.n) * dtype_size(t.dtype));
}
template <class T>
void CpuBackend<T>::upload(Tensor dst, const float* src) {
  T* d = dst.as<T>();
  for (int64_t i = 0; i < dst.n; ++i) d[i] = static_cast<T>(src[i]);
}
template <class T>
void CpuBackend<T>::download(float* dst, Tensor src) {
  const T* s = src.as<T>();
  for (int64_t i = 0; i < src.n; ++i) dst[i] = static_cast<float>(s[i]);
}
template <class T>
void CpuBackend<T>::convert(Tensor dst, Tensor src) {
  SL_ASSERT(dst.n == src.n);
  std::memcpy(dst.as<T>(), src.as<T>(), src.n * sizeof(T));
}

template <class T>
void CpuBackend<T>::axpy(Tensor y, Tensor x, float alpha, int64_t n) {
  T* yp = y.as<T>();
  const T* xp = x.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] += static_cast<T>(alpha) * xp[i];
}
template <class T>
void CpuBackend<T>::copy2d(Tensor dst, Tensor src, const Copy2dShape& shape, bool accumulate) {
  shape.check("copy2d");
  const int64_t rows = shape.R, cols = shape.C, ld_dst = shape.ld_dst, ld_src = shape.ld_src;
  T* d = dst.as<T>();
  const T* s = src.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    T* dr = d + r * ld_dst;
    const T* sr = s + r * ld_src;
    if (accumulate) {
      for (int64_t c = 0; c < cols; ++c) dr[c] += sr[c];
    } else {
      for (int64_t c = 0; c < cols; ++c) dr[c] = sr[c];
    }
  }
}
template <class T>
void CpuBackend<T>::sum_squares(Tensor out, Tensor x, int64_t n) {
  // Fixed-order blocked sum: per-block partials in double, then summed in block order, so the
  // result does not depend on scheduling.
  const T* p = x.as<T>();
  constexpr int64_t kBlock = 1 << 14;
  int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nb, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    double s = 0;
    for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i)
      s += static_cast<double>(p[i]) * p[i];
    part[b] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  out.as<double>()[0] = s;
}
template <class T>
void CpuBackend<T>::scale(Tensor x, float s, int64_t n) {
  T* p = x.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] *= static_cast<T>(s);
}

template class CpuBackend<float>;
template class CpuBackend<double>;

}  // namespace sl
