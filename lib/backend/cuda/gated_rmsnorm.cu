// Gated RMSNorm of the GDN output, one row per (token, head), fp32 math:
//   y = w * n * silu(gate),  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
// Row r = t*H + h of x [R, C] reads gate[t, h*C : (h+1)*C] of gate [BT, H*C] (token stride ldg).
// Rows are short (C = v_h: 96 at the ladder, 128 at S4) and many (R = BT H, 196k at S4), so the
// vector kernels give a row a group of G lanes (G = C/8 rounded up to a power of two, one 8-element
// chunk each: 16 lanes, two rows a warp at C 128) and the backward is one pass: dx, dgate and the
// block's share of dw from one read of dy, x and gate (the scalar kernels, kept for C or ldg not a
// multiple of 8, read them three times over, with 2-byte accesses).
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
//   dx (=|+=) rstd * (dn - n * mean_c(dn * n));   dgate (=|+=) dy * w * n * silu'(gate)
__global__ void gated_rmsnorm_backward_kernel(DPtr dx, DPtr dgate, DPtr dy, DPtr x, DPtr gate,
                                              int64_t ldg, DPtr w, DPtr rstd, int64_t R, int64_t H,
                                              int64_t C, bool acc) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const int64_t go = gate_off(r, H, C, ldg);
  const float rs = rstd.ld(r);
  if (dgate) {
    for (int64_t c = lane; c < C; c += 32)
      dgate.put(go + c,
                dy.ld(r * C + c) * w.ld(c) * (x.ld(r * C + c) * rs) * silu_gradf_(gate.ld(go + c)),
                acc);
  }
  if (dx) {
    float dot = 0.f;
    for (int64_t c = lane; c < C; c += 32)
      dot += dy.ld(r * C + c) * w.ld(c) * siluf_(gate.ld(go + c)) * (x.ld(r * C + c) * rs);
    const float mean = warp_sum(dot) / static_cast<float>(C);
    for (int64_t c = lane; c < C; c += 32) {
      const float n = x.ld(r * C + c) * rs;
      dx.put(r * C + c, rs * (dy.ld(r * C + c) * w.ld(c) * siluf_(gate.ld(go + c)) - n * mean),
             acc);
    }
  }
}

// ---- vector kernels: C % 8 == 0, C <= 256, ldg % 8 == 0, 16-byte aligned tensors ------------
// (the gate and dgate possibly only 8- or 4-byte aligned, GA their alignment in bytes: they start
// after the projection's b|a columns, 2H elements; ld8a / st8a<GA>).
// Lane l of a warp works on row `rows_per_warp * (warp index) + l / G` at columns 8 (l % G) ..
// 8 (l % G) + 8; lanes past C (C/8 not a power of two) load nothing but take part in the shuffles.
template <int G, int GA>
__global__ void gated_rmsnorm_forward_vec_kernel(DPtr y, DPtr rstd, DPtr x, DPtr gate, int64_t ldg,
                                                 DPtr w, int64_t R, int64_t H, int64_t C,
                                                 float eps) {
  constexpr int kRows = 32 / G;  // rows a warp
  const int lane = threadIdx.x % 32;
  const int64_t r = (blockIdx.x * int64_t{kWarps} + threadIdx.x / 32) * kRows + lane / G;
  const int64_t c = 8 * (lane % G);
  const bool on = r < R && c < C;
  // x, the gate and w together: after the rstd store the gate's load would wait for it (a
  // second memory round trip a row).
  float v[8] = {}, g[8] = {}, ww[8] = {}, ss = 0.f;
  if (on) {
    ld8(x, r * C + c, v);
    ld8a<GA>(gate, gate_off(r, H, C, ldg) + c, g);
    ld8(w, c, ww);
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) ss += v[e] * v[e];
  ss = group_sum<G>(ss);
  if (r >= R) return;
  const float rs = 1.f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane % G == 0) rstd.st(r, rs);
  if (!on) return;
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = ww[e] * (v[e] * rs) * siluf_(g[e]);
  st8(y, r * C + c, v);
}

// One pass, rows strided over the grid: dx (=|+=) ..., dgate (=|+=) ... (as the scalar kernel) and,
// with `partial`, this block's column sums of dy n silu(gate) in partial[blockIdx.x, 0 .. C)
// (summed over the blocks by colsum in a fixed order: deterministic, no atomics).
template <int G, int GA>
__global__ void gated_rmsnorm_backward_vec_kernel(DPtr dx, DPtr dgate, float* partial, DPtr dy,
                                                  DPtr x, DPtr gate, int64_t ldg, DPtr w, DPtr rstd,
                                                  int64_t R, int64_t H, int64_t C, bool acc) {
  constexpr int kRows = 32 / G;
  __shared__ float sh[kWarps][256];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c = 8 * (lane % G);
  const bool col = c < C;
  float ww[8] = {}, pw[8] = {};
  if (col) ld8(w, c, ww);
  const int64_t step = int64_t{gridDim.x} * kWarps * kRows;
  // r0 is the same for the whole warp, so every lane reaches the shuffles of every iteration.
  for (int64_t r0 = (blockIdx.x * int64_t{kWarps} + warp) * kRows; r0 < R; r0 += step) {
    const int64_t r = r0 + lane / G;
    const bool on = r < R && col;
    const int64_t go = on ? gate_off(r, H, C, ldg) + c : 0;
    // Every load of the row first, the accumulated outputs' too: one memory round trip an
    // iteration, not a second one after the row reduction.
    float d[8] = {}, n[8] = {}, g[8] = {}, odg[8] = {}, odx[8] = {};
    const float rs = r < R ? rstd.ld(r) : 0.f;
    if (on) {
      ld8(dy, r * C + c, d);
      ld8(x, r * C + c, n);
      ld8a<GA>(gate, go, g);
      if (dgate && acc) ld8a<GA>(dgate, go, odg);
      if (dx && acc) ld8(dx, r * C + c, odx);
    }
    float dn[8], dot = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      n[e] *= rs;
      const float sg = siluf_(g[e]);
      dn[e] = d[e] * ww[e] * sg;
      dot += dn[e] * n[e];
      pw[e] += d[e] * n[e] * sg;
    }
    const float mean = group_sum<G>(dot) / static_cast<float>(C);
    if (!on) continue;
    if (dgate) {
#pragma unroll
      for (int e = 0; e < 8; ++e) odg[e] += d[e] * ww[e] * n[e] * silu_gradf_(g[e]);
      st8a<GA>(dgate, go, odg);
    }
    if (dx) {
#pragma unroll
      for (int e = 0; e < 8; ++e) odx[e] += rs * (dn[e] - n[e] * mean);
      st8(dx, r * C + c, odx);
    }
  }
  if (!partial) return;
    // The warp's rows share columns: sum pw over the lanes with the same l % G, then over the
    // warps.
#pragma unroll
  for (int o = G; o < 32; o <<= 1)
#pragma unroll
    for (int e = 0; e < 8; ++e) pw[e] += __shfl_xor_sync(0xffffffffu, pw[e], o);
  if (lane < G && col)
#pragma unroll
    for (int e = 0; e < 8; ++e) sh[warp][c + e] = pw[e];
  store_block_colsum(sh, C, partial);
}

// dw[c] += sum_r dy * n * silu(gate)  (the scalar path's column sums)
struct GatedRmsnormDw {
  DPtr dy, x, gate, rstd;
  int64_t ldg, H, C;
  __device__ float operator()(int64_t r, int64_t c) const {
    return dy.ld(r * C + c) * (x.ld(r * C + c) * rstd.ld(r)) *
           siluf_(gate.ld(gate_off(r, H, C, ldg) + c));
  }
};

// Host: the vector kernels' lanes per row (row_group(C)), or 0 where they do not apply (C or
// ldg not a multiple of 8, C > 256, a tensor of `ps` not 16-byte aligned or a gate tensor not
// 4-byte aligned). `ga`: the gate tensors' common alignment, 16, 8 or 4 bytes.
int vec_group(int64_t C, int64_t ldg, std::initializer_list<DPtr> ps,
              std::initializer_list<DPtr> gates, int& ga) {
  ga = vec_align(gates);
  if (!vec_ok(C, ldg, ps) || ga == 0) return 0;
  return row_group(C);
}
// Runs LAUNCH(G, A) with the row group and the gate's alignment as compile-time constants.
#define SL_FOR_GROUP_ALIGN(G, A, LAUNCH) \
  do {                                   \
    if ((A) == 16) {                     \
      SL_FOR_GROUP(G, LAUNCH##_16);      \
    } else if ((A) == 8) {               \
      SL_FOR_GROUP(G, LAUNCH##_8);       \
    } else {                             \
      SL_FOR_GROUP(G, LAUNCH##_4);       \
    }                                    \
  } while (0)

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
  const cudaStream_t st = cuda_ctx().stream;
  int ga = 0;
  if (const int G = vec_group(C, ldg, {y, x, w}, {gate}, ga)) {
    const int64_t rows_per_block = kWarps * (32 / G);
    const unsigned nb = static_cast<unsigned>((R + rows_per_block - 1) / rows_per_block);
#define SL_FWD(GG, AA)                     \
  gated_rmsnorm_forward_vec_kernel<GG, AA> \
      <<<nb, 32 * kWarps, 0, st>>>(y, rstd, x, gate, ldg, w, R, H, C, eps)
#define SL_FWD_16(GG) SL_FWD(GG, 16)
#define SL_FWD_8(GG) SL_FWD(GG, 8)
#define SL_FWD_4(GG) SL_FWD(GG, 4)
    SL_FOR_GROUP_ALIGN(G, ga, SL_FWD);
#undef SL_FWD_4
#undef SL_FWD_8
#undef SL_FWD_16
#undef SL_FWD
  } else {
    gated_rmsnorm_forward_kernel<<<static_cast<unsigned>((R + kWarps - 1) / kWarps), 32 * kWarps, 0,
                                   st>>>(y, rstd, x, gate, ldg, w, R, H, C, eps);
  }
  SL_CUDA_LAUNCHED();
}

void CudaBackend::gated_rmsnorm_backward(Tensor dx_t, Tensor dgate_t, Tensor dw_t, Tensor dy_t,
                                         Tensor x_t, Tensor gate_t, Tensor w_t, Tensor rstd_t,
                                         const GatedNormShape& shape, bool accumulate) {
  const int64_t R = shape.R, H = shape.H, C = shape.C, ldg = shape.ldg;
  const char* op = "gated_rmsnorm_backward";
  const DPtr dx = dptr(dx_t, op, "dx"), dgate = dptr(dgate_t, op, "dgate"),
             dw = dptr(dw_t, op, "dw"), dy = dptr(dy_t, op, "dy"), x = dptr(x_t, op, "x"),
             gate = dptr(gate_t, op, "gate"), w = dptr(w_t, op, "w"),
             rstd = dptr(rstd_t, op, "rstd");
  Ctx& ctx = cuda_ctx();
  if (R <= 0) return;
  int ga = 0;
  if (const int G = vec_group(C, ldg, {dx, dy, x, w}, {gate, dgate}, ga)) {
    // About eight row groups a warp (fewer partial rows to sum than one a warp; as the rmsnorm
    // backward's rows kernel).
    const int64_t rows_per_block = kWarps * (32 / G) * 8;
    const int64_t blocks = std::max<int64_t>(1, (R + rows_per_block - 1) / rows_per_block);
    float* partial = dw ? ctx.reduce->get_as<float>(
                              static_cast<size_t>(blocks * C + colsum_partial_size(ctx, blocks, C)))
                        : nullptr;
    const unsigned nb = static_cast<unsigned>(blocks);
#define SL_BWD(GG, AA)                                                           \
  gated_rmsnorm_backward_vec_kernel<GG, AA><<<nb, 32 * kWarps, 0, ctx.stream>>>( \
      dx, dgate, partial, dy, x, gate, ldg, w, rstd, R, H, C, accumulate)
#define SL_BWD_16(GG) SL_BWD(GG, 16)
#define SL_BWD_8(GG) SL_BWD(GG, 8)
#define SL_BWD_4(GG) SL_BWD(GG, 4)
    SL_FOR_GROUP_ALIGN(G, ga, SL_BWD);
#undef SL_BWD_4
#undef SL_BWD_8
#undef SL_BWD_16
#undef SL_BWD
    SL_CUDA_LAUNCHED();
    if (dw) colsum(ctx, PartialRows{partial, C}, blocks, C, dw, partial + blocks * C);
    return;
  }
  if (dx || dgate) {
    gated_rmsnorm_backward_kernel<<<static_cast<unsigned>((R + kWarps - 1) / kWarps), 32 * kWarps,
                                    0, ctx.stream>>>(dx, dgate, dy, x, gate, ldg, w, rstd, R, H, C,
                                                     accumulate);
    SL_CUDA_LAUNCHED();
  }
  colsum(ctx, GatedRmsnormDw{dy, x, gate, rstd, ldg, H, C}, R, C, dw);
}

}  // namespace sl
