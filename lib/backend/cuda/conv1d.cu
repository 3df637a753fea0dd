// Causal depthwise conv1d over time followed by SiLU (the GDN short convolution):
//   z[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]   (x = 0 before t = 0),   y = silu(z)
// One thread per output element; consecutive threads take consecutive channels, so every load of
// a time step is coalesced.
#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

// z at (b, t, c); x points at the [B, T, C] tensor with token stride ldx.
__device__ inline float conv_pre(DPtr x, int64_t ldx, DPtr w, int64_t b, int64_t t, int64_t c,
                                 int64_t T, int64_t K) {
  float z = 0.f;
  for (int64_t j = K - 1 - t > 0 ? K - 1 - t : 0; j < K; ++j)
    z += w.ld(c * K + j) * x.ld((b * T + t - K + 1 + j) * ldx + c);
  return z;
}

__global__ void conv1d_forward_kernel(DPtr y, DPtr x, int64_t ldx, DPtr w, int64_t B, int64_t T,
                                      int64_t C, int64_t K) {
  SL_GRID_STRIDE(i, B * T * C) {
    const int64_t c = i % C, bt = i / C, b = bt / T, t = bt % T;
    y.st(i, siluf_(conv_pre(x, ldx, w, b, t, c, T, K)));
  }
}

// dz = dy * silu'(z), z recomputed; dz [B, T, C] fp32 in the workspace.
__global__ void conv1d_dz_kernel(float* dz, DPtr dy, DPtr x, int64_t ldx, DPtr w, int64_t B,
                                 int64_t T, int64_t C, int64_t K) {
  SL_GRID_STRIDE(i, B * T * C) {
    const int64_t c = i % C, bt = i / C, b = bt / T, t = bt % T;
    dz[i] = dy.ld(i) * silu_gradf_(conv_pre(x, ldx, w, b, t, c, T, K));
  }
}

// dx[b,s,c] += sum_j w[c,j] dz[b, s+K-1-j, c]  (outputs s feeds, s+K-1-j < T); gathered per
// input element, so no two threads write the same dx.
__global__ void conv1d_dx_kernel(DPtr dx, const float* dz, int64_t ldx, DPtr w, int64_t B,
                                 int64_t T, int64_t C, int64_t K) {
  SL_GRID_STRIDE(i, B * T * C) {
    const int64_t c = i % C, bs = i / C, s = bs % T;
    float acc = 0.f;
    for (int64_t j = 0; j < K; ++j) {
      const int64_t t = s + K - 1 - j;
      if (t < T) acc += w.ld(c * K + j) * dz[(bs + K - 1 - j) * C + c];
    }
    dx.add(bs * ldx + c, acc);
  }
}

// dw[c, j] += sum_{b,t} dz[b,t,c] x[b, t-K+1+j, c]: a column sum over rows (b, t) of the
// [C*K] columns.
struct ConvDw {
  const float* dz;
  DPtr x;
  int64_t ldx, T, C, K;
  __device__ float operator()(int64_t bt, int64_t ck) const {
    const int64_t c = ck / K, j = ck % K, t = bt % T, ts = t - K + 1 + j;
    if (ts < 0) return 0.f;
    return dz[bt * C + c] * x.ld((bt - K + 1 + j) * ldx + c);
  }
};

}  // namespace

void conv1d_silu_forward(Ctx& ctx, DPtr y, DPtr x, int64_t ldx, DPtr w, int64_t B, int64_t T,
                         int64_t C, int64_t K) {
  const int64_t n = B * T * C;
  if (n <= 0) return;
  conv1d_forward_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(y, x, ldx, w, B, T, C, K);
  SL_CUDA_LAUNCHED();
}

void conv1d_silu_backward(Ctx& ctx, DPtr dx, DPtr dw, DPtr dy, DPtr x, int64_t ldx, DPtr w,
                          int64_t B, int64_t T, int64_t C, int64_t K) {
  const int64_t n = B * T * C;
  if (n <= 0 || (!dx && !dw)) return;
  float* dz = ctx.work->get_as<float>(static_cast<size_t>(n));
  conv1d_dz_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(dz, dy, x, ldx, w, B, T, C, K);
  SL_CUDA_LAUNCHED();
  if (dx) {
    conv1d_dx_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(dx, dz, ldx, w, B, T, C, K);
    SL_CUDA_LAUNCHED();
  }
  colsum(ctx, ConvDw{dz, x, ldx, T, C, K}, B * T, C * K, dw);
}

}  // namespace sl::cuda
