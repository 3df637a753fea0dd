// Causal depthwise conv1d over time followed by SiLU (the GDN short convolution, HF conv1d with
// groups = C, padding K-1, output truncated to T steps):
//   z[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]   (x = 0 before t = 0),   y = silu(z)
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/common.h"
#include "backend/cpu/scalar_math.h"

namespace sl {

using cpu::silu;
using cpu::silu_grad;

namespace {

// z at one token, all channels: x points at x[b, 0, 0] (token stride ldx), w [C, K].
template <class T>
void conv_pre(T* z, const T* x, int64_t ldx, const T* w, int64_t t, int64_t C, int64_t K) {
  std::fill_n(z, C, T(0));
  for (int64_t j = std::max<int64_t>(0, K - 1 - t); j < K; ++j) {
    const T* xs = x + (t - K + 1 + j) * ldx;
    for (int64_t c = 0; c < C; ++c) z[c] += w[c * K + j] * xs[c];
  }
}

}  // namespace

// x [B, T, C] ld ldx, w [C, K] -> y [B, T, C]
template <class T>
void CpuBackend<T>::conv1d_silu_forward(Tensor y_t, Tensor x_t, Tensor w_t,
                                        const ConvShape& shape) {
  shape.check("conv1d_silu_forward");
  const int64_t B = shape.B, T_ = shape.T, C = shape.C, K = shape.K, ldx = shape.ldx;
  T* y = y_t.as<T>();
  const T *x = x_t.as<T>(), *w = w_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * T_; ++bt) {
    const int64_t b = bt / T_, t = bt % T_;
    T* yr = y + bt * C;
    conv_pre(yr, x + b * T_ * ldx, ldx, w, t, C, K);
    for (int64_t c = 0; c < C; ++c) yr[c] = silu(yr[c]);
  }
}

// With dz = dy * silu'(z) (z recomputed):
//   dx[b,s,c] += sum_j w[c,j] dz[b, s+K-1-j, c]   (gathered over the outputs s feeds, s+K-1-j < T)
//   dw[c,j]   += sum_{b,t} dz[b,t,c] x[b, t-K+1+j, c]
// dx (token stride ldx, =|+=) is gathered per token so tokens run in parallel without races; dw
// sums over all tokens with threads split over channels, each summing its channels in token order.
template <class T>
void CpuBackend<T>::conv1d_silu_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t,
                                         Tensor w_t, const ConvShape& shape, bool accumulate) {
  shape.check("conv1d_silu_backward");
  const int64_t B = shape.B, T_ = shape.T, C = shape.C, K = shape.K, ldx = shape.ldx;
  T *dx = dx_t.as<T>(), *dw = dw_t.as<T>();
  const T *dy = dy_t.as<T>(), *x = x_t.as<T>(), *w = w_t.as<T>();
  if (!dx && !dw) return;
  std::vector<T> dz(static_cast<size_t>(B * T_ * C));  // [B, T, C]
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * T_; ++bt) {
    const int64_t b = bt / T_, t = bt % T_;
    T* dzr = dz.data() + bt * C;
    conv_pre(dzr, x + b * T_ * ldx, ldx, w, t, C, K);
    const T* dyr = dy + bt * C;
    for (int64_t c = 0; c < C; ++c) dzr[c] = dyr[c] * silu_grad(dzr[c]);
  }
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t bs = 0; bs < B * T_; ++bs) {
      const int64_t b = bs / T_, s = bs % T_;
      T* dxr = dx + bs * ldx;
      if (!accumulate) std::fill(dxr, dxr + C, T(0));
      for (int64_t j = 0; j < K; ++j) {
        const int64_t t = s + K - 1 - j;
        if (t >= T_) continue;
        const T* dzr = dz.data() + (b * T_ + t) * C;
        for (int64_t c = 0; c < C; ++c) dxr[c] += w[c * K + j] * dzr[c];
      }
    }
  }
  if (dw) {
    constexpr int64_t kCols = 32;
    const int64_t nblk = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
      std::vector<T> acc(static_cast<size_t>((c1 - c0) * K), T(0));  // [c1-c0, K]
      for (int64_t bt = 0; bt < B * T_; ++bt) {
        const int64_t b = bt / T_, t = bt % T_;
        const T* dzr = dz.data() + bt * C;
        for (int64_t j = std::max<int64_t>(0, K - 1 - t); j < K; ++j) {
          const T* xs = x + (b * T_ + t - K + 1 + j) * ldx;
          for (int64_t c = c0; c < c1; ++c) acc[(c - c0) * K + j] += dzr[c] * xs[c];
        }
      }
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t j = 0; j < K; ++j) dw[c * K + j] += acc[(c - c0) * K + j];
      }
    }
  }
}

SL_CPU_INSTANTIATE(conv1d_silu_forward);
SL_CPU_INSTANTIATE(conv1d_silu_backward);

}  // namespace sl
