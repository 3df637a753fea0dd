// Per-head L2 normalisation (GDN q and k), fp32 math:
//   y = scale * x * rnorm,  rnorm = (sum_c x^2 + eps)^(-1/2)
// Rows are (token, head) pairs of C = k_h elements (48 at every ladder size): where C, the token
// stride and the bases allow, a row gets a group of C/8 lanes (rounded up to a power of two,
// row_group in common.cuh) with one 16-byte chunk each, four rows a warp at k_h 48; else one warp
// a row, one element a lane.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

constexpr int kWarps = 8;

// x [BT, H, C] token stride ldx -> y [BT, H, C] contiguous, rnorm [BT, H].
__global__ void l2norm_forward_kernel(DPtr y, DPtr rnorm, DPtr x, int64_t ldx, int64_t BT,
                                      int64_t H, int64_t C, float scale, float eps) {
  const int64_t row = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;  // t*H + h
  const int lane = threadIdx.x % 32;
  if (row >= BT * H) return;
  const int64_t xo = (row / H) * ldx + (row % H) * C;
  float ss = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    const float v = x.ld(xo + c);
    ss += v * v;
  }
  const float rn = 1.f / sqrtf(warp_sum(ss) + eps);
  if (lane == 0) rnorm.st(row, rn);
  for (int64_t c = lane; c < C; c += 32) y.st(row * C + c, scale * (x.ld(xo + c) * rn));
}

// dx (=|+=) scale * rnorm * (dy - x rnorm^2 sum_c dy_c x_c)
__global__ void l2norm_backward_kernel(DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr rnorm,
                                       int64_t BT, int64_t H, int64_t C, float scale, bool acc) {
  const int64_t row = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= BT * H) return;
  const int64_t xo = (row / H) * ldx + (row % H) * C;
  const float rn = rnorm.ld(row);
  float dot = 0.f;
  for (int64_t c = lane; c < C; c += 32) dot += dy.ld(row * C + c) * x.ld(xo + c);
  const float k = warp_sum(dot) * rn * rn;
  for (int64_t c = lane; c < C; c += 32)
    dx.put(xo + c, scale * rn * (dy.ld(row * C + c) - x.ld(xo + c) * k), acc);
}

// The same over row groups of G lanes (C % 8 == 0, C <= 256, ldx % 8 == 0, aligned tensors).
template <int G>
__global__ void l2norm_forward_vec_kernel(DPtr y, DPtr rnorm, DPtr x, int64_t ldx, int64_t BT,
                                          int64_t H, int64_t C, float scale, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = (blockIdx.x * int64_t{kWarps} + threadIdx.x / 32) * (32 / G) + lane / G;
  const int64_t c = 8 * (lane % G);
  const bool on = row < BT * H && c < C;
  const int64_t xo = on ? (row / H) * ldx + (row % H) * C + c : 0;
  float v[8] = {}, ss = 0.f;
  if (on) ld8(x, xo, v);
#pragma unroll
  for (int e = 0; e < 8; ++e) ss += v[e] * v[e];
  const float rn = 1.f / sqrtf(group_sum<G>(ss) + eps);
  if (row >= BT * H) return;
  if (lane % G == 0) rnorm.st(row, rn);
  if (!on) return;
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = scale * (v[e] * rn);
  st8(y, row * C + c, v);
}

template <int G>
__global__ void l2norm_backward_vec_kernel(DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr rnorm,
                                           int64_t BT, int64_t H, int64_t C, float scale,
                                           bool acc) {
  const int lane = threadIdx.x % 32;
  const int64_t row = (blockIdx.x * int64_t{kWarps} + threadIdx.x / 32) * (32 / G) + lane / G;
  const int64_t c = 8 * (lane % G);
  const bool on = row < BT * H && c < C;
  const int64_t xo = on ? (row / H) * ldx + (row % H) * C + c : 0;
  float d[8] = {}, v[8] = {}, dot = 0.f;
  if (on) {
    ld8(dy, row * C + c, d);
    ld8(x, xo, v);
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) dot += d[e] * v[e];
  dot = group_sum<G>(dot);
  if (!on) return;
  const float rn = rnorm.ld(row), k = dot * rn * rn;
  float o[8] = {};
  if (acc) ld8(dx, xo, o);
#pragma unroll
  for (int e = 0; e < 8; ++e) o[e] = o[e] + scale * rn * (d[e] - v[e] * k);
  st8(dx, xo, o);
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::l2norm_forward(Tensor y_t, Tensor rnorm_t, Tensor x_t, const L2NormShape& shape,
                                 float eps) {
  const int64_t BT = shape.BT, H = shape.H, C = shape.C, ldx = shape.ldx;
  const float scale = shape.scale;
  const char* op = "l2norm_forward";
  const DPtr y = dptr(y_t, op, "y"), rnorm = dptr(rnorm_t, op, "rnorm"), x = dptr(x_t, op, "x");
  const int64_t rows = BT * H;
  if (rows <= 0) return;
  const cudaStream_t st = cuda_ctx().stream;
  if (const int G = vec_ok(C, ldx, {y, x}) ? row_group(C) : 0) {
    const int64_t per_block = kWarps * (32 / G);
    const unsigned nb = static_cast<unsigned>((rows + per_block - 1) / per_block);
#define SL_FWD(GG) \
  l2norm_forward_vec_kernel<GG><<<nb, 32 * kWarps, 0, st>>>(y, rnorm, x, ldx, BT, H, C, scale, eps)
    SL_FOR_GROUP(G, SL_FWD);
#undef SL_FWD
  } else {
    l2norm_forward_kernel<<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), 32 * kWarps, 0,
                            st>>>(y, rnorm, x, ldx, BT, H, C, scale, eps);
  }
  SL_CUDA_LAUNCHED();
}

void CudaBackend::l2norm_backward(Tensor dx_t, Tensor dy_t, Tensor x_t, Tensor rnorm_t,
                                  const L2NormShape& shape, bool accumulate) {
  const int64_t BT = shape.BT, H = shape.H, C = shape.C, ldx = shape.ldx;
  const float scale = shape.scale;
  const char* op = "l2norm_backward";
  const DPtr dx = dptr(dx_t, op, "dx"), dy = dptr(dy_t, op, "dy"), x = dptr(x_t, op, "x"),
             rnorm = dptr(rnorm_t, op, "rnorm");
  const int64_t rows = BT * H;
  if (rows <= 0 || !dx) return;
  const cudaStream_t st = cuda_ctx().stream;
  if (const int G = vec_ok(C, ldx, {dx, dy, x}) ? row_group(C) : 0) {
    const int64_t per_block = kWarps * (32 / G);
    const unsigned nb = static_cast<unsigned>((rows + per_block - 1) / per_block);
#define SL_BWD(GG)               \
  l2norm_backward_vec_kernel<GG> \
      <<<nb, 32 * kWarps, 0, st>>>(dx, dy, x, ldx, rnorm, BT, H, C, scale, accumulate)
    SL_FOR_GROUP(G, SL_BWD);
#undef SL_BWD
  } else {
    l2norm_backward_kernel<<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), 32 * kWarps, 0,
                             st>>>(dx, dy, x, ldx, rnorm, BT, H, C, scale, accumulate);
  }
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
