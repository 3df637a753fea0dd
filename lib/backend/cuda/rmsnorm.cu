// RMSNorm over the last dimension, in fp32 whatever the tensors' dtype (as HF does):
//   y = w * n,  n = x * rstd,  rstd = (mean_c x^2 + eps)^(-1/2)
// One warp per row; rows are d_model wide (a few hundred), so a warp loop is enough. Vector
// kernels (8 elements a lane) where C and the row stride are multiples of 8, scalar ones
// otherwise. Also here: the forward's fused residual add and copy, QK-norm + RoPE in one pass
// (rmsnorm_rope_*), and the one-pass backward that reduces dw beside dx.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

constexpr int kWarps = 8;  // rows per 256-thread block
constexpr unsigned kFull = 0xffffffffu;

// x [R, C] ld ldx -> y [R, C] (= res + w n where res is given), y_copy [R, C], rstd [R].
__global__ void rmsnorm_forward_kernel(DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w, int64_t R,
                                       int64_t C, float eps, DPtr res, DPtr y_copy) {
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
  for (int64_t c = lane; c < C; c += 32) {
    float v = w.ld(c) * (x.ld(r * ldx + c) * rs);
    if (res) v += res.ld(r * C + c);
    y.st(r * C + c, v);
    if (y_copy) y_copy.st(r * C + c, v);
  }
}

// With dn = dy * w:  dx (=|+=) rstd * (dn - n * mean_c(dn * n)).
__global__ void rmsnorm_backward_dx_kernel(DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr w, DPtr rstd,
                                           int64_t R, int64_t C, bool acc) {
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
    dx.put(r * ldx + c, rs * (dy.ld(r * C + c) * w.ld(c) - n * mean), acc);
  }
}

// The same two kernels over 8-element chunks (C and ldx multiples of 8, aligned tensors): 16-byte
// accesses, and a chunk's old dx loaded with its inputs before its store. The forward keeps the
// row's first kRowSlabs slabs of 256 columns (C <= 1024: every model width) in registers between
// the sum of squares and the output, so x is read from memory once; wider rows reread the rest.
constexpr int kRowSlabs = 4;

__global__ void rmsnorm_forward_vec_kernel(DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w,
                                           int64_t R, int64_t C, float eps, DPtr res, DPtr y_copy) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  float ss = 0.f, v[kRowSlabs][8] = {};
#pragma unroll
  for (int s = 0; s < kRowSlabs; ++s) {
    if (256 * s + 8 * lane < C) ld8(x, r * ldx + 256 * s + 8 * lane, v[s]);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += v[s][e] * v[s][e];
  }
  for (int64_t c = 256 * kRowSlabs + 8 * lane; c < C; c += 256) {
    float u[8];
    ld8(x, r * ldx + c, u);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += u[e] * u[e];
  }
  ss = warp_sum(ss);
  const float rs = 1.f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd.st(r, rs);
  auto out = [&](int64_t c, float(&u)[8]) {
    float g[8];
    ld8(w, c, g);
#pragma unroll
    for (int e = 0; e < 8; ++e) u[e] = g[e] * (u[e] * rs);
    if (res) {
      float a[8];
      ld8(res, r * C + c, a);
#pragma unroll
      for (int e = 0; e < 8; ++e) u[e] += a[e];
    }
    st8(y, r * C + c, u);
    if (y_copy) st8(y_copy, r * C + c, u);
  };
#pragma unroll
  for (int s = 0; s < kRowSlabs; ++s)
    if (256 * s + 8 * lane < C) out(256 * s + 8 * lane, v[s]);
  for (int64_t c = 256 * kRowSlabs + 8 * lane; c < C; c += 256) {
    float u[8];
    ld8(x, r * ldx + c, u);
    out(c, u);
  }
}

// ---- QK-norm + RoPE: y = rope(rms(x; w)) over rows of C = H hd -------------------------------
// One warp per row (token t = row % T), 8 elements a lane: lane l holds columns 256 j + 8 l of
// slab j. With hd a power of two in [16, 256] heads tile the slabs, and the RoPE partner of a
// chunk (hd/2 further on in the first half of a head, back in the second) sits in lane
// l ^ (hd/16) of the same slab: one shuffle per element instead of a second pass.

__device__ inline void partner8(float (&p)[8], const float (&v)[8], int mask) {
#pragma unroll
  for (int e = 0; e < 8; ++e) p[e] = __shfl_xor_sync(kFull, v[e], mask);
}

struct RopeRows {
  const float *cs, *sn;  // [T, hd/2]
  int64_t T;
  int hd;
};

// A lane's rotation at token t: y = v cos + sg p sin for its 8 columns at index i0 = 8 lane mod
// hd within their head, p the partner chunk; sg = -sign in the first half of the head, +sign in
// the second (sign = +1: the forward rotation, -1: its transpose). The same for every slab of
// the row (256 is a multiple of hd), so the table is read once a row, not once a slab.
struct Rot8 {
  float c[8], s[8], sg;
  __device__ Rot8(const RopeRows& rr, int64_t t, int lane, float sign) {
    const int half = rr.hd / 2, i0 = (8 * lane) % rr.hd;
    const bool first = i0 < half;
    const int64_t j = t * half + (first ? i0 : i0 - half);
    sg = first ? -sign : sign;
    const float4 c0 = *reinterpret_cast<const float4*>(rr.cs + j),
                 c1 = *reinterpret_cast<const float4*>(rr.cs + j + 4);
    const float4 s0 = *reinterpret_cast<const float4*>(rr.sn + j),
                 s1 = *reinterpret_cast<const float4*>(rr.sn + j + 4);
    const float cc[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
    const float ss[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
#pragma unroll
    for (int e = 0; e < 8; ++e) c[e] = cc[e], s[e] = ss[e];
  }
  __device__ void apply(float (&y)[8], const float (&v)[8], const float (&p)[8]) const {
#pragma unroll
    for (int e = 0; e < 8; ++e) y[e] = v[e] * c[e] + sg * p[e] * s[e];
  }
};

// The row's first kRowSlabs slabs stay in registers from the sum of squares to the output (as in
// rmsnorm_forward_vec_kernel); slabs past them are reread.
__global__ void rmsnorm_rope_forward_kernel(DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w,
                                            int64_t R, int64_t C, float eps, RopeRows rr) {
  const int64_t r = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;  // the whole warp: r is per warp
  // The rotation table's loads first, in flight with x's (after the rstd store below they would
  // wait for it: a second memory round trip a row).
  const Rot8 rot(rr, r % rr.T, lane, 1.f);
  float ss = 0.f, v[kRowSlabs][8] = {};
#pragma unroll
  for (int s = 0; s < kRowSlabs; ++s) {
    if (256 * s + 8 * lane < C) ld8(x, r * ldx + 256 * s + 8 * lane, v[s]);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += v[s][e] * v[s][e];
  }
  for (int64_t c = 256 * kRowSlabs + 8 * lane; c < C; c += 256) {
    float u[8];
    ld8(x, r * ldx + c, u);
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += u[e] * u[e];
  }
  const float rs = 1.f / sqrtf(warp_sum(ss) / static_cast<float>(C) + eps);
  if (lane == 0) rstd.st(r, rs);
  // Slab `base` from u (the cached or reread x): normalise, scale, rotate, store. Called with
  // uniform bounds: every lane shuffles.
  auto out = [&](int64_t base, float(&u)[8]) {
    const int64_t c = base + 8 * lane;
    const bool ok = c < C;
    float p[8], o[8];
    if (ok) {
      float g[8];
      ld8(w, c, g);
#pragma unroll
      for (int e = 0; e < 8; ++e) u[e] = g[e] * (u[e] * rs);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) u[e] = 0.f;
    }
    partner8(p, u, rr.hd / 16);
    if (!ok) return;
    rot.apply(o, u, p);
    st8(y, r * C + c, o);
  };
#pragma unroll
  for (int s = 0; s < kRowSlabs; ++s)
    if (256 * s < C) out(256 * s, v[s]);
  for (int64_t base = 256 * kRowSlabs; base < C; base += 256) {
    float u[8] = {};
    if (base + 8 * lane < C) ld8(x, r * ldx + base + 8 * lane, u);
    out(base, u);
  }
}

// ---- backward, one pass: dx and the dw partial sums together -----------------------------
// Warp w of block b takes rows b*kWarps + w, then every gridDim.x * kWarps further. A row's
// NS <= 4 slabs stay in registers (C <= 1024: every model width), so dy and x are read once:
//   g = dy (or rope^T(dy) with ROPE),  n = x rstd,  dn = g w,
//   dx (=|+=) rstd (dn - n mean_c(dn n)),   dw partial += g n   (per lane, over its rows).
// The block then sums its warps' partials in warp order into partial[b][C] and colsum adds the
// blocks in a fixed order to dw: deterministic, and no second pass over dy and x (the two-pass
// kernel's colsum re-read both).
//
// Registers: g, n and the dw partials are 24 floats per slab; holding w too took 148 registers at
// NS 3 with ROPE (C 768, the QK-norm), one 256-thread block a SM and two waves at S4. w is read
// where it is used instead (8 KB at most, from L1) and the kernel held to two blocks a SM.
template <int NS, bool ROPE>
__global__ void __launch_bounds__(32 * kWarps, 2)
    rmsnorm_backward_rows_kernel(DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr w, DPtr rstd,
                                 int64_t R, int64_t C, bool acc, RopeRows rr, float* partial) {
  __shared__ float sh[kWarps][NS * 256];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float pw[NS][8] = {};
  for (int64_t r = blockIdx.x * int64_t{kWarps} + warp; r < R; r += gridDim.x * int64_t{kWarps}) {
    const float rs = rstd.ld(r);
    float rc[8] = {}, rsn[8] = {}, rsg = 0.f;  // the row's rotation (Rot8), with ROPE
    if constexpr (ROPE) {
      const Rot8 rot(rr, r % rr.T, lane, -1.f);
#pragma unroll
      for (int e = 0; e < 8; ++e) rc[e] = rot.c[e], rsn[e] = rot.s[e];
      rsg = rot.sg;
    }
    float g[NS][8], n[NS][8], dot = 0.f;
#pragma unroll
    for (int s = 0; s < NS; ++s) {
      const int64_t c = 256 * s + 8 * lane;
      const bool ok = c < C;
      float d[8] = {}, ww[8] = {};
      if (ok) {
        ld8(dy, r * C + c, d);
        ld8(x, r * ldx + c, n[s]);
        ld8(w, c, ww);
      } else {
        for (float& e : n[s]) e = 0.f;
      }
      if constexpr (ROPE) {  // every lane shuffles (the slab loop is uniform); only `ok` lanes
                             // rotate
        float p[8];
        partner8(p, d, rr.hd / 16);
#pragma unroll
        for (int e = 0; e < 8; ++e) g[s][e] = ok ? d[e] * rc[e] + rsg * p[e] * rsn[e] : 0.f;
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) g[s][e] = d[e];
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        n[s][e] *= rs;
        dot += g[s][e] * ww[e] * n[s][e];
        pw[s][e] += g[s][e] * n[s][e];
      }
    }
    const float mean = warp_sum(dot) / static_cast<float>(C);
    if (!dx) continue;
#pragma unroll
    for (int s = 0; s < NS; ++s) {
      const int64_t c = 256 * s + 8 * lane;
      if (c >= C) continue;
      float o[8] = {}, ww[8];
      ld8(w, c, ww);
      if (acc) ld8(dx, r * ldx + c, o);
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] += rs * (g[s][e] * ww[e] - n[s][e] * mean);
      st8(dx, r * ldx + c, o);
    }
  }
  if (!partial) return;
#pragma unroll
  for (int s = 0; s < NS; ++s)
#pragma unroll
    for (int e = 0; e < 8; ++e) sh[warp][256 * s + 8 * lane + e] = pw[s][e];
  store_block_colsum(sh, C, partial);
}

// dw[c] += sum_r dy[r, c] * n[r, c]
struct RmsnormDw {
  DPtr dy, x, rstd;
  int64_t ldx, C;
  __device__ float operator()(int64_t r, int64_t c) const {
    return dy.ld(r * C + c) * (x.ld(r * ldx + c) * rstd.ld(r));
  }
};

// The one-pass backward (rmsnorm_backward_rows_kernel) for C <= 1024 in multiples of 8 and
// aligned tensors; false otherwise.
bool backward_rows(Ctx& ctx, DPtr dx, DPtr dw, DPtr dy, DPtr x, int64_t ldx, DPtr w, DPtr rstd,
                   int64_t R, int64_t C, bool acc, const RopeRows* rope) {
  const int ns = static_cast<int>((C + 255) / 256);
  if (ns > 4 || !vec_ok(C, ldx, {dx, dy, x, w})) return false;
  // Eight rows a warp: measured at S4 (R 16384, C 768) 0.045 / 0.040 / 0.036 / 0.034 ms for
  // 1 / 2 / 4 / 8 rows (fewer partial rows to reduce; the two-pass kernel + colsum: 0.066).
  constexpr int64_t kRowsPerWarp = 8;
  const int64_t blocks =
      std::max<int64_t>(1, (R + kWarps * kRowsPerWarp - 1) / (kWarps * kRowsPerWarp));
  // The blocks' dw partials [blocks, C], then colsum's own over them, in one reduce workspace
  // (the unfused rmsnorm_rope_backward holds ctx.work while it calls this).
  float* partial = dw ? ctx.reduce->get_as<float>(
                            static_cast<size_t>(blocks * C + colsum_partial_size(ctx, blocks, C)))
                      : nullptr;
  const RopeRows rr = rope ? *rope : RopeRows{nullptr, nullptr, 1, 16};
  const unsigned nb = static_cast<unsigned>(blocks);
  const int th = 32 * kWarps;
#define SL_ROWS(NS)                                                                 \
  (rope ? rmsnorm_backward_rows_kernel<NS, true>                                    \
       <<<nb, th, 0, ctx.stream>>>(dx, dy, x, ldx, w, rstd, R, C, acc, rr, partial) \
        : rmsnorm_backward_rows_kernel<NS, false>                                   \
       <<<nb, th, 0, ctx.stream>>>(dx, dy, x, ldx, w, rstd, R, C, acc, rr, partial))
  switch (ns) {
    case 1:
      SL_ROWS(1);
      break;
    case 2:
      SL_ROWS(2);
      break;
    case 3:
      SL_ROWS(3);
      break;
    default:
      SL_ROWS(4);
      break;
  }
#undef SL_ROWS
  SL_CUDA_LAUNCHED();
  if (dw) colsum(ctx, PartialRows{partial, C}, blocks, C, dw, partial + blocks * C);
  return true;
}

bool rope_fusable(int64_t C, int64_t ldx, int64_t hd, std::initializer_list<DPtr> ps) {
  return hd >= 16 && hd <= 256 && (hd & (hd - 1)) == 0 && C % hd == 0 && vec_ok(C, ldx, ps);
}

}  // namespace
}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::rmsnorm_forward(Tensor y_t, Tensor rstd_t, Tensor x_t, Tensor w_t,
                                  const RmsNormShape& shape, float eps, Tensor res_t,
                                  Tensor y_copy_t) {
  const int64_t R = shape.R, C = shape.C, ldx = shape.ldx;
  const char* op = "rmsnorm_forward";
  const DPtr y = dptr(y_t, op, "y"), rstd = dptr(rstd_t, op, "rstd"), x = dptr(x_t, op, "x"),
             w = dptr(w_t, op, "w"), res = dptr(res_t, op, "res"),
             y_copy = dptr(y_copy_t, op, "y_copy");
  const Ctx& ctx = cuda_ctx();
  if (R <= 0) return;
  const unsigned blocks = static_cast<unsigned>((R + kWarps - 1) / kWarps);
  if (vec_ok(C, ldx, {y, x, w, res, y_copy}))
    rmsnorm_forward_vec_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(y, rstd, x, ldx, w, R, C,
                                                                       eps, res, y_copy);
  else
    rmsnorm_forward_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(y, rstd, x, ldx, w, R, C, eps,
                                                                   res, y_copy);
  SL_CUDA_LAUNCHED();
}

void CudaBackend::rmsnorm_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t, Tensor w_t,
                                   Tensor rstd_t, const RmsNormShape& shape, bool accumulate) {
  const int64_t R = shape.R, C = shape.C, ldx = shape.ldx;
  const char* op = "rmsnorm_backward";
  const DPtr dx = dptr(dx_t, op, "dx"), dw = dptr(dw_t, op, "dw"), dy = dptr(dy_t, op, "dy"),
             x = dptr(x_t, op, "x"), w = dptr(w_t, op, "w"), rstd = dptr(rstd_t, op, "rstd");
  Ctx& ctx = cuda_ctx();
  if (R <= 0 || (!dx && !dw)) return;
  if (backward_rows(ctx, dx, dw, dy, x, ldx, w, rstd, R, C, accumulate, nullptr)) return;
  if (dx) {
    const unsigned blocks = static_cast<unsigned>((R + kWarps - 1) / kWarps);
    rmsnorm_backward_dx_kernel<<<blocks, 32 * kWarps, 0, ctx.stream>>>(dx, dy, x, ldx, w, rstd, R,
                                                                       C, accumulate);
    SL_CUDA_LAUNCHED();
  }
  colsum(ctx, RmsnormDw{dy, x, rstd, ldx, C}, R, C, dw);
}

// In one pass where the shape fits the fused kernels (hd a power of two in [16, 256], aligned
// tensors, strides multiples of 8; the backward also C <= 1024), else as the unfused ops.
void CudaBackend::rmsnorm_rope_forward(Tensor y_t, Tensor rstd_t, Tensor x_t, Tensor w_t,
                                       const RmsNormRopeShape& shape, float eps) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd, ldx = shape.ldx;
  const float theta = shape.theta;
  const char* op = "rmsnorm_rope_forward";
  const float* cs = rope_table(T, hd, theta);
  const DPtr y = dptr(y_t, op, "y"), rstd = dptr(rstd_t, op, "rstd"), x = dptr(x_t, op, "x"),
             w = dptr(w_t, op, "w");
  const int64_t R = B * T, C = H * hd;
  if (!rope_fusable(C, ldx, hd, {y, x, w})) {
    rmsnorm_forward(y_t, rstd_t, x_t, w_t, {.R = R, .C = C, .ldx = ldx}, eps, Tensor{}, Tensor{});
    rope_forward(y_t, {.B = B, .T = T, .H = H, .hd = hd, .theta = theta});
    return;
  }
  if (R <= 0) return;
  const unsigned blocks = static_cast<unsigned>((R + kWarps - 1) / kWarps);
  rmsnorm_rope_forward_kernel<<<blocks, 32 * kWarps, 0, cuda_ctx().stream>>>(
      y, rstd, x, ldx, w, R, C, eps, RopeRows{cs, cs + T * (hd / 2), T, static_cast<int>(hd)});
  SL_CUDA_LAUNCHED();
}

void CudaBackend::rmsnorm_rope_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t,
                                        Tensor w_t, Tensor rstd_t, const RmsNormRopeShape& shape,
                                        bool accumulate) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd, ldx = shape.ldx;
  const float theta = shape.theta;
  const char* op = "rmsnorm_rope_backward";
  const float* cs = rope_table(T, hd, theta);
  const DPtr dx = dptr(dx_t, op, "dx"), dw = dptr(dw_t, op, "dw"), dy = dptr(dy_t, op, "dy"),
             x = dptr(x_t, op, "x"), w = dptr(w_t, op, "w"), rstd = dptr(rstd_t, op, "rstd");
  Ctx& ctx = cuda_ctx();
  const int64_t R = B * T, C = H * hd;
  if (rope_fusable(C, ldx, hd, {dx, dy, x, w})) {
    if (R <= 0 || (!dx && !dw)) return;
    const RopeRows rr{cs, cs + T * (hd / 2), T, static_cast<int>(hd)};
    if (backward_rows(ctx, dx, dw, dy, x, ldx, w, rstd, R, C, accumulate, &rr)) return;
  }
  // Unfused: rope^T(dy) into an fp32 workspace copy (dy itself stays as it was), then RMSNorm.
  const Tensor g(ctx.work->get_as<float>(static_cast<size_t>(R * C)), DType::f32, R * C);
  copy2d(g, dy_t, {.R = R, .C = C, .ld_dst = C, .ld_src = C}, false);
  rope(g, {.B = B, .T = T, .H = H, .hd = hd, .theta = theta}, -1.f);
  rmsnorm_backward(dx_t, dw_t, g, x_t, w_t, rstd_t, {.R = R, .C = C, .ldx = ldx}, accumulate);
}

}  // namespace sl
