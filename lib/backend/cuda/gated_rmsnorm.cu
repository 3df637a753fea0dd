// Gated RMSNorm of the GDN output, one row per (token, head), fp32 math:
//   y = w * n * silu(gate),  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
// Row r = t*H + h of x [R, C] reads gate[t, h*C : (h+1)*C] of gate [BT, H*C] (token stride ldg).
// One warp per row (C = v_h, a few dozen to a few hundred).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

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

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::gated_rmsnorm_forward(Tensor y_t, Tensor rstd_t, Tensor x_t, Tensor gate_t,
                                        Tensor w_t, const GatedNormShape& shape, float eps) {
  const int64_t R = shape.R, H = shape.H, C = shape.C, ldg = shape.ldg;
  const char* op = "gated_rmsnorm_forward";
  const DPtr y = dptr(y_t, op, "y"), rstd = dptr(rstd_t, op, "rstd"), x = dptr(x_t, op, "x"),
             gate = dptr(gate_t, op, "gate"), w = dptr(w_t, op, "w");
  if (R <= 0) return;
  gated_rmsnorm_forward_kernel<<<static_cast<unsigned>((R + kWarps - 1) / kWarps), 32 * kWarps, 0,
                                 cuda_ctx().stream>>>(y, rstd, x, gate, ldg, w, R, H, C, eps);
  SL_CUDA_LAUNCHED();
}

void CudaBackend::gated_rmsnorm_backward(Tensor dx_t, Tensor dgate_t, Tensor dw_t, Tensor dy_t,
                                         Tensor x_t, Tensor gate_t, Tensor w_t, Tensor rstd_t,
                                         const GatedNormShape& shape) {
  const int64_t R = shape.R, H = shape.H, C = shape.C, ldg = shape.ldg;
  const char* op = "gated_rmsnorm_backward";
  const DPtr dx = dptr(dx_t, op, "dx"), dgate = dptr(dgate_t, op, "dgate"),
             dw = dptr(dw_t, op, "dw"), dy = dptr(dy_t, op, "dy"), x = dptr(x_t, op, "x"),
             gate = dptr(gate_t, op, "gate"), w = dptr(w_t, op, "w"),
             rstd = dptr(rstd_t, op, "rstd");
  Ctx& ctx = cuda_ctx();
  if (R <= 0) return;
  if (dx || dgate) {
    gated_rmsnorm_backward_kernel<<<static_cast<unsigned>((R + kWarps - 1) / kWarps), 32 * kWarps,
                                    0, ctx.stream>>>(dx, dgate, dy, x, gate, ldg, w, rstd, R, H, C);
    SL_CUDA_LAUNCHED();
  }
  colsum(ctx, GatedRmsnormDw{dy, x, gate, rstd, ldg, H, C}, R, C, dw);
}

}  // namespace sl
