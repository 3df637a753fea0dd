// RMSNorm over the last dimension, in fp32 whatever the tensors' dtype (as HF does):
//   y = w * n,  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
// One warp per row; rows are d_model wide (a few hundred), so a warp loop is enough. Vector
// kernels (8 elements a lane) where C and the row stride are multiples of 8.
#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

constexpr int kWarps = 8;  // rows per 256-thread block

// x [R, C] ld ldx -> y [R, C], rstd [R].
__global__ void rmsnorm_forward_kernel(DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w, int64_t R,
                                       int64_t C, float eps) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  float ss = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    const float v = x.ld(r * ldx + c);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float rs = 1.f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd.st(r, rs);
  for (int64_t c = lane; c < C; c += 32) y.st(r * C + c, w.ld(c) * (x.ld(r * ldx + c) * rs));
}

// With dn = dy * w:  dx += rstd * (dn - n * mean_c(dn * n)).
__global__ void rmsnorm_backward_dx_kernel(DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr w, DPtr rstd,
                                           int64_t R, int64_t C) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const float rs = rstd.ld(r);
  float dot = 0.f;
  for (int64_t c = lane; c < C; c += 32)
    dot += dy.ld(r * C + c) * w.ld(c) * (x.ld(r * ldx + c) * rs);
  const float mean = warp_sum(dot) / static_cast<float>(C);
  for (int64_t c = lane; c < C; c += 32) {
    const float n = x.ld(r * ldx + c) * rs;
    dx.add(r * ldx + c, rs * (dy.ld(r * C + c) * w.ld(c) - n * mean));
  }
}

// The same two kernels over 8-element chunks (C and ldx multiples of 8, aligned tensors): 16-byte
// accesses, and a chunk's old dx loaded with its inputs before its store.
__global__ void rmsnorm_forward_vec_kernel(DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w,
                                           int64_t R, int64_t C, float eps) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  float ss = 0.f;
  for (int64_t c = 8 * lane; c < C; c += 8 * 32) {
    float v[8];
    ld8(x, r * ldx + c, v);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += v[e] * v[e];
  }
  ss = warp_sum(ss);
  const float rs = 1.f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd.st(r, rs);
  for (int64_t c = 8 * lane; c < C; c += 8 * 32) {
    float v[8], g[8];
    ld8(x, r * ldx + c, v);
    ld8(w, c, g);
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = g[e] * (v[e] * rs);
    st8(y, r * C + c, v);
  }
}

__global__ void rmsnorm_backward_dx_vec_kernel(DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr w,
                                               DPtr rstd, int64_t R, int64_t C) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const float rs = rstd.ld(r);
  float dot = 0.f;
  for (int64_t c = 8 * lane; c < C; c += 8 * 32) {
    float d[8], g[8], v[8];
    ld8(dy, r * C + c, d);
    ld8(w, c, g);
    ld8(x, r * ldx + c, v);
#pragma unroll
    for (int e = 0; e < 8; ++e) dot += d[e] * g[e] * (v[e] * rs);
  }
  const float mean = warp_sum(dot) / static_cast<float>(C);
  for (int64_t c = 8 * lane; c < C; c += 8 * 32) {
    float d[8], g[8], v[8], o[8];
    ld8(dy, r * C + c, d);
    ld8(w, c, g);
    ld8(x, r * ldx + c, v);
    ld8(dx, r * ldx + c, o);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] += rs * (d[e] * g[e] - v[e] * rs * mean);
    st8(dx, r * ldx + c, o);
  }
}

bool vec_ok(int64_t C, int64_t ldx, std::initializer_list<DPtr> ps) {
  return C % 8 == 0 && ldx % 8 == 0 && vec8_ok(ps);
}

// dw[c] += sum_r dy[r, c] * n[r, c]
struct RmsnormDw {
  DPtr dy, x, rstd;
  int64_t ldx, C;
  __device__ float operator()(int64_t r, int64_t c) const {
    return dy.ld(r * C + c) * (x.ld(r * ldx + c) * rstd.ld(r));
  }
};

}  // namespace

void rmsnorm_forward(Ctx& ctx, DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w, int64_t R, int64_t C,
                     float eps) {
  if (R <= 0) return;
  const unsigned blocks = static_cast<unsigned>((R + kWarps - 1) / kWarps);
  if (vec_ok(C, ldx, {y, x, w}))
    rmsnorm_forward_vec_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(y, rstd, x, ldx, w, R, C,
                                                                       eps);
  else
    rmsnorm_forward_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(y, rstd, x, ldx, w, R, C, eps);
  SL_CUDA_LAUNCHED();
}

void rmsnorm_backward(Ctx& ctx, DPtr dx, DPtr dw, DPtr dy, DPtr x, int64_t ldx, DPtr w, DPtr rstd,
                      int64_t R, int64_t C) {
  if (R <= 0) return;
  if (dx) {
    const unsigned blocks = static_cast<unsigned>((R + kWarps - 1) / kWarps);
    if (vec_ok(C, ldx, {dx, dy, x, w}))
      rmsnorm_backward_dx_vec_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(dx, dy, x, ldx, w,
                                                                             rstd, R, C);
    else
      rmsnorm_backward_dx_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(dx, dy, x, ldx, w, rstd, R,
                                                                         C);
    SL_CUDA_LAUNCHED();
  }
  colsum(ctx, RmsnormDw{dy, x, rstd, ldx, C}, R, C, dw);
}

}  // namespace sl::cuda
