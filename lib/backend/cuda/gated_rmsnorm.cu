// Gated RMSNorm of the GDN output, one row per (token, head), fp32 math:
//   y = w * n * silu(gate),  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
// Row r = t*H + h of x [R, C] reads gate[t, h*C : (h+1)*C] of gate [BT, H*C] (token stride ldg).
// One warp per row (C = v_h, a few dozen to a few hundred).
#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

constexpr int kWarps = 8;

__device__ inline int64_t gate_off(int64_t r, int64_t H, int64_t C, int64_t ldg) {
  return (r / H) * ldg + (r % H) * C;
}

__global__ void gated_rmsnorm_forward_kernel(DPtr y, DPtr rstd, DPtr x, DPtr gate, int64_t ldg,
                                             DPtr w, int64_t R, int64_t H, int64_t C, float eps) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  float ss = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    const float v = x.ld(r * C + c);
    ss += v * v;
  }
  const float rs = 1.f / sqrtf(warp_sum(ss) / static_cast<float>(C) + eps);
  if (lane == 0) rstd.st(r, rs);
  const int64_t go = gate_off(r, H, C, ldg);
  for (int64_t c = lane; c < C; c += 32)
    y.st(r * C + c, w.ld(c) * (x.ld(r * C + c) * rs) * siluf_(gate.ld(go + c)));
}

// With s = silu(gate), dn = dy * w * s:
//   dx += rstd * (dn - n * mean_c(dn * n));   dgate += dy * w * n * silu'(gate)
__global__ void gated_rmsnorm_backward_kernel(DPtr dx, DPtr dgate, DPtr dy, DPtr x, DPtr gate,
                                              int64_t ldg, DPtr w, DPtr rstd, int64_t R, int64_t H,
                                              int64_t C) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const int64_t go = gate_off(r, H, C, ldg);
  const float rs = rstd.ld(r);
  if (dgate) {
    for (int64_t c = lane; c < C; c += 32)
      dgate.add(go + c,
                dy.ld(r * C + c) * w.ld(c) * (x.ld(r * C + c) * rs) * silu_gradf_(gate.ld(go + c)));
  }
  if (dx) {
    float dot = 0.f;
    for (int64_t c = lane; c < C; c += 32)
      dot += dy.ld(r * C + c) * w.ld(c) * siluf_(gate.ld(go + c)) * (x.ld(r * C + c) * rs);
    const float mean = warp_sum(dot) / static_cast<float>(C);
    for (int64_t c = lane; c < C; c += 32) {
      const float n = x.ld(r * C + c) * rs;
      dx.add(r * C + c, rs * (dy.ld(r * C + c) * w.ld(c) * siluf_(gate.ld(go + c)) - n * mean));
    }
  }
}

// dw[c] += sum_r dy * n * silu(gate)
struct GatedRmsnormDw {
  DPtr dy, x, gate, rstd;
  int64_t ldg, H, C;
  __device__ float operator()(int64_t r, int64_t c) const {
    return dy.ld(r * C + c) * (x.ld(r * C + c) * rstd.ld(r)) *
           siluf_(gate.ld(gate_off(r, H, C, ldg) + c));
  }
};

}  // namespace

void gated_rmsnorm_forward(Ctx& ctx, DPtr y, DPtr rstd, DPtr x, DPtr gate, int64_t ldg, DPtr w,
                           int64_t R, int64_t H, int64_t C, float eps) {
  if (R <= 0) return;
  gated_rmsnorm_forward_kernel<<<static_cast<unsigned>((R + kWarps - 1) / kWarps), 32 * kWarps, 0,
                                 ctx.stream>>>(y, rstd, x, gate, ldg, w, R, H, C, eps);
  SL_CUDA_LAUNCHED();
}

void gated_rmsnorm_backward(Ctx& ctx, DPtr dx, DPtr dgate, DPtr dw, DPtr dy, DPtr x, DPtr gate,
                            int64_t ldg, DPtr w, DPtr rstd, int64_t R, int64_t H, int64_t C) {
  if (R <= 0) return;
  if (dx || dgate) {
    gated_rmsnorm_backward_kernel<<<static_cast<unsigned>((R + kWarps - 1) / kWarps), 32 * kWarps,
                                    0, ctx.stream>>>(dx, dgate, dy, x, gate, ldg, w, rstd, R, H, C);
    SL_CUDA_LAUNCHED();
  }
  colsum(ctx, GatedRmsnormDw{dy, x, gate, rstd, ldg, H, C}, R, C, dw);
}

}  // namespace sl::cuda
