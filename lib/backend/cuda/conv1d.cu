// Causal depthwise conv1d over time followed by SiLU (the GDN short convolution):
//   z[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]   (x = 0 before t = 0),   y = silu(z)
// Backward, with dz = dy silu'(z):
//   dx[b,s,c] += sum_j w[c,j] dz[b, s+K-1-j, c]   (s+K-1-j < T),
//   dw[c,j]   += sum_{b,t} dz[b,t,c] x[b, t-K+1+j, c].
//
// A block takes a tile of 128 time steps of one sequence x 64 channels and first stages what the
// tile reads into shared memory with cp.async (x with its K - 1 steps of history, and in the
// backward dy and x K - 1 steps further), all of it in flight at once: the previous version, a
// thread sliding along 32 time steps with one memory round trip a step, ran at ~8x its byte
// floor (latency-bound, 165 registers, three blocks a SM; docs/PERFORMANCE.md). A thread then
// owns 8 channels x 8 time steps of the tile and reads its windows from shared memory; the
// backward's dz for the 8 steps and the K - 1 after them (dx of the last steps needs them) sit
// in a ring of K slots indexed at compile time (the loop is unrolled). dw: each thread's share
// over its 8 steps, summed over the block's 16 row groups in order, one row a tile, and the rows
// summed by colsum: deterministic, no atomics. Staging is by 16-byte pieces where the tensor's
// base and row stride allow it and the piece lies inside C, else element by element; zeros
// outside [0, T) x [0, C) (the causal history, and dz = 0 past T).
#include <string>
#include <type_traits>
#include <utility>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/mma_bf16.cuh"

namespace sl::cuda {
namespace {

constexpr int kMaxK = 8;  // largest kernel supported (the model's is 4)
constexpr int kThreads = 128;
// A block's tile: kTileT time steps of one sequence x kTileC channels. Thread (q, g) = (tid % 8,
// tid / 8) owns channels 8 q .. 8 q + 8 of the tile and its time steps kSteps g .. + kSteps.
constexpr int kTileC = 64, kGroups = kThreads / (kTileC / 8), kSteps = 8, kTileT = kGroups * kSteps;
static_assert(kTileT == 128);

struct ConvDims {
  int64_t ldx, B;
  int T, C, K;
  int ctiles, ttiles;  // ceil(C / kTileC), ceil(T / kTileT)
  bool vx, vy, vdy;    // 16-byte paths of x, the output (y or dx) and dy: base aligned, row
                       // stride a multiple of 8
};

// The block's tile: sequence b, time steps from t0, channels from c0; 1-D grid, channel tile
// fastest.
struct TileAt {
  int64_t b;
  int t0, c0;
  __device__ explicit TileAt(const ConvDims& D) {
    const int64_t blk = blockIdx.x;
    c0 = static_cast<int>(blk % D.ctiles) * kTileC;
    const int64_t r = blk / D.ctiles;
    t0 = static_cast<int>(r % D.ttiles) * kTileT;
    b = r / D.ttiles;
  }
};

// Rows t0 + r0 .. + nrows of sequence b, channels c0 .. c0 + kTileC of p (row stride ld) into s
// as raw elements (bf16 or f32, kTileC a row), zero outside [0, T) x [0, C): 16-byte cp.async
// pieces where a piece lies inside the channels and `vec`, else element by element.
__device__ inline void stage(char* s, DPtr p, int64_t ld, const ConvDims& D, const TileAt& at,
                             int r0, int nrows, bool vec) {
  const int es = p.bf ? 2 : 4, per = 16 / es, pieces = kTileC / per;
  for (int i = threadIdx.x; i < nrows * pieces; i += kThreads) {
    const int r = i / pieces, e0 = (i % pieces) * per, t = at.t0 + r0 + r, c = at.c0 + e0;
    char* dst = s + (int64_t{r} * kTileC + e0) * es;
    const bool row = t >= 0 && t < D.T;
    const int64_t src = ((at.b * D.T + t) * ld + c) * es;  // used only where row
    if (vec && (!row || c + per <= D.C)) {
      cp_async16(dst, static_cast<const char*>(p.p) + (row ? src : 0), row);
    } else {
      for (int e = 0; e < per; ++e) {
        const bool ok = row && c + e < D.C;
        if (es == 2)
          reinterpret_cast<unsigned short*>(dst)[e] =
              ok ? reinterpret_cast<const unsigned short*>(static_cast<const char*>(p.p) + src)[e]
                 : 0;
        else
          reinterpret_cast<float*>(dst)[e] =
              ok ? reinterpret_cast<const float*>(static_cast<const char*>(p.p) + src)[e] : 0.f;
      }
    }
  }
}

// Eight channels 8 q .. of staged row r as fp32.
__device__ inline void row8(const char* s, bool bf, int r, int q, float (&v)[8]) {
  if (bf) {
    const uint4 u = *reinterpret_cast<const uint4*>(s + (r * kTileC + 8 * q) * 2);
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      v[2 * e] = __uint_as_float(w[e] << 16);
      v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
  } else {
    const float4* f = reinterpret_cast<const float4*>(s + (r * kTileC + 8 * q) * 4);
    const float4 a = f[0], c = f[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = c.x, v[5] = c.y, v[6] = c.z, v[7] = c.w;
  }
}

// wt[j][v] = w[c + v, j] (0 past C).
template <int K>
__device__ inline void weights(const ConvDims& D, DPtr w, int c, float (&wt)[K][8]) {
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int v = 0; v < 8; ++v) wt[j][v] = c + v < D.C ? w.ld(int64_t{c + v} * K + j) : 0.f;
}

// z at staged x row u (time t0 + u; x row u + j holds time t0 + u - K + 1 + j).
template <int K>
__device__ inline void conv_at(const char* xs, bool bf, int u, int q, const float (&wt)[K][8],
                               float (&z)[8]) {
#pragma unroll
  for (int v = 0; v < 8; ++v) z[v] = 0.f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    float x[8];
    row8(xs, bf, u + j, q, x);
#pragma unroll
    for (int v = 0; v < 8; ++v) z[v] += wt[j][v] * x[v];
  }
}

// Eight channels c .. c + 8 of row `at` of p, where inside C: one 16-byte access when vec and
// the chunk is whole.
__device__ inline void put8(DPtr p, int64_t at, int c, int C, bool vec, const float (&o)[8]) {
  if (vec && c + 8 <= C) {
    st8(p, at, o);
  } else {
#pragma unroll
    for (int v = 0; v < 8; ++v)
      if (c + v < C) p.st(at + v, o[v]);
  }
}
__device__ inline void get8(DPtr p, int64_t at, int c, int C, bool vec, float (&o)[8]) {
  if (vec && c + 8 <= C) {
    ld8(p, at, o);
  } else {
#pragma unroll
    for (int v = 0; v < 8; ++v) o[v] = c + v < C ? p.ld(at + v) : 0.f;
  }
}

// Staged x: rows t0 - K + 1 .. t0 + kTileT (+ K - 1 more in the backward).
__host__ __device__ inline int x_rows(int K, bool bwd) { return kTileT + (bwd ? 2 : 1) * (K - 1); }

template <int K>
__global__ void __launch_bounds__(kThreads)
    conv1d_forward_kernel(DPtr y, DPtr x, DPtr w, ConvDims D) {
  extern __shared__ __align__(16) char smc[];
  const TileAt at(D);
  stage(smc, x, D.ldx, D, at, -(K - 1), x_rows(K, false), D.vx);
  cp_async_commit();
  const int q = threadIdx.x % 8, g = threadIdx.x / 8, c = at.c0 + 8 * q;
  float wt[K][8];
  weights<K>(D, w, c, wt);
  cp_async_wait<0>();
  __syncthreads();
  if (c >= D.C) return;
#pragma unroll
  for (int i = 0; i < kSteps; ++i) {
    const int u = g * kSteps + i, t = at.t0 + u;
    if (t >= D.T) break;
    float z[8];
    conv_at<K>(smc, x.bf, u, q, wt, z);
#pragma unroll
    for (int v = 0; v < 8; ++v) z[v] = siluf_(z[v]);
    put8(y, (at.b * D.T + t) * D.C + c, c, D.C, D.vy, z);
  }
}

// dw_part: [B ttiles, C K], the tile's share of dw in row b ttiles + its time tile, or null.
// dx (=|+=). Each thread computes dz for its kSteps rows and the K - 1 after them (dx of its
// last rows needs them; dz = 0 past T, as dy is staged as 0 there), keeping the last K in a ring
// whose slot (u - first) mod K is a compile-time index (the loop is unrolled).
template <int K>
__global__ void __launch_bounds__(kThreads)
    conv1d_backward_kernel(DPtr dx, float* dw_part, DPtr dy, DPtr x, DPtr w, ConvDims D, bool acc) {
  extern __shared__ __align__(16) char smc[];
  const TileAt at(D);
  const int nx = x_rows(K, true);
  char* xs = smc;
  char* dys = smc + nx * kTileC * (x.bf ? 2 : 4);
  stage(xs, x, D.ldx, D, at, -(K - 1), nx, D.vx);
  stage(dys, dy, D.C, D, at, 0, kTileT + K - 1, D.vdy);
  cp_async_commit();
  const int q = threadIdx.x % 8, g = threadIdx.x / 8, c = at.c0 + 8 * q;
  float wt[K][8], dzr[K][8], dwa[K][8] = {};
  weights<K>(D, w, c, wt);
  cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kSteps + K - 1; ++i) {
    const int u = g * kSteps + i;  // staged dy row, time t0 + u
    float z[8], d[8];
    conv_at<K>(xs, x.bf, u, q, wt, z);
    row8(dys, dy.bf, u, q, d);
#pragma unroll
    for (int v = 0; v < 8; ++v) dzr[i % K][v] = d[v] * silu_gradf_(z[v]);
    if (i < kSteps) {
#pragma unroll
      for (int j = 0; j < K; ++j) {  // dw[c, j] += dz[u] x[u - K + 1 + j] (x row u + j)
        float xv[8];
        row8(xs, x.bf, u + j, q, xv);
#pragma unroll
        for (int v = 0; v < 8; ++v) dwa[j][v] += dzr[i % K][v] * xv[v];
      }
    }
    // dx[s] = sum_j w[c, j] dz[s + K - 1 - j] for s = u - K + 1: dz[u - j] in slot (i - j) mod K.
    const int s = u - (K - 1), ts = at.t0 + s;
    if (dx && i >= K - 1 && ts < D.T && c < D.C) {
      const int64_t o_at = (at.b * D.T + ts) * D.ldx + c;
      float o[8] = {};
      if (acc) get8(dx, o_at, c, D.C, D.vy, o);
#pragma unroll
      for (int j = 0; j < K; ++j)
#pragma unroll
        for (int v = 0; v < 8; ++v) o[v] += wt[j][v] * dzr[(i - j + K) % K][v];
      put8(dx, o_at, c, D.C, D.vy, o);
    }
  }
  if (!dw_part) return;
  // The block's dw: the 16 row groups' sums, in group order, over the spent tiles.
  __syncthreads();
  float* red = reinterpret_cast<float*>(smc);  // [kGroups][kTileC K]
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int v = 0; v < 8; ++v) red[g * kTileC * K + (8 * q + v) * K + j] = dwa[j][v];
  __syncthreads();
  float* row = dw_part + (at.b * D.ttiles + at.t0 / kTileT) * D.C * K + int64_t{at.c0} * K;
  const int ncol = min(kTileC, D.C - at.c0) * K;
  for (int e = threadIdx.x; e < ncol; e += kThreads) {
    float t = 0.f;
    for (int r = 0; r < kGroups; ++r) t += red[r * kTileC * K + e];
    row[e] = t;
  }
}

// out: y (row stride C) in the forward, dx (row stride ldx) in the backward.
ConvDims dims(int64_t B, int64_t T, int64_t C, int64_t K, int64_t ldx, DPtr x, DPtr out,
              int64_t ldo, DPtr dy, const char* what) {
  if (K < 1 || K > kMaxK)
    fail(std::string("cuda conv1d_silu_") + what + ": kernel size " + std::to_string(K) +
         " not supported (1.." + std::to_string(kMaxK) + ")");
  if (T > (int64_t{1} << 30) || C > (int64_t{1} << 30))
    fail(std::string("cuda conv1d_silu_") + what + ": T or C too large");
  const int64_t ctiles = (C + kTileC - 1) / kTileC, ttiles = (T + kTileT - 1) / kTileT;
  if (B * ctiles * ttiles > (int64_t{1} << 31) - 1)
    fail(std::string("cuda conv1d_silu_") + what + ": B * T * C too large");
  return {ldx,
          B,
          static_cast<int>(T),
          static_cast<int>(C),
          static_cast<int>(K),
          static_cast<int>(ctiles),
          static_cast<int>(ttiles),
          ldx % 8 == 0 && vec8_ok({x}),
          ldo % 8 == 0 && vec8_ok({out}),
          C % 8 == 0 && vec8_ok({dy})};
}

unsigned grid_of(const ConvDims& D) { return static_cast<unsigned>(D.B * D.ctiles * D.ttiles); }

// Calls f(std::integral_constant<int, K>{}) for the runtime kernel size K (1..kMaxK, checked by
// dims()), so each K gets its own unrolled kernel.
template <class F, int... Ks>
void with_k(int K, const F& f, std::integer_sequence<int, Ks...>) {
  ((K == Ks + 1 ? f(std::integral_constant<int, Ks + 1>{}) : void()), ...);
}
template <class F>
void with_k(int K, const F& f) {
  with_k(K, f, std::make_integer_sequence<int, kMaxK>{});
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::conv1d_silu_forward(Tensor y_t, Tensor x_t, Tensor w_t, const ConvShape& shape) {
  const int64_t B = shape.B, T = shape.T, C = shape.C, K = shape.K, ldx = shape.ldx;
  const char* op = "conv1d_silu_forward";
  const DPtr y = dptr(y_t, op, "y"), x = dptr(x_t, op, "x"), w = dptr(w_t, op, "w");
  if (B * T * C <= 0) return;
  const ConvDims D = dims(B, T, C, K, ldx, x, y, C, DPtr{}, "forward");
  const cudaStream_t st = cuda_ctx().stream;
  const size_t smem = static_cast<size_t>(x_rows(D.K, false)) * kTileC * (x.bf ? 2 : 4);
  with_k(D.K, [&](auto kk) {
    smem_opt_in(conv1d_forward_kernel<kk>, smem);
    conv1d_forward_kernel<kk><<<grid_of(D), kThreads, smem, st>>>(y, x, w, D);
  });
  SL_CUDA_LAUNCHED();
}

void CudaBackend::conv1d_silu_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t,
                                       Tensor w_t, const ConvShape& shape, bool accumulate) {
  const int64_t B = shape.B, T = shape.T, C = shape.C, K = shape.K, ldx = shape.ldx;
  const char* op = "conv1d_silu_backward";
  const DPtr dx = dptr(dx_t, op, "dx"), dw = dptr(dw_t, op, "dw"), dy = dptr(dy_t, op, "dy"),
             x = dptr(x_t, op, "x"), w = dptr(w_t, op, "w");
  Ctx& ctx = cuda_ctx();
  if (B * T * C <= 0 || (!dx && !dw)) return;
  const ConvDims D = dims(B, T, C, K, ldx, x, dx, ldx, dy, "backward");
  const int64_t nrows = B * D.ttiles, ncols = C * K;
  float* part = dw ? ctx.work->get_as<float>(static_cast<size_t>(nrows * ncols)) : nullptr;
  // The staged x and dy tiles; the dw reduction reuses them ([kGroups][kTileC K] floats).
  const size_t tiles = static_cast<size_t>(x_rows(D.K, true)) * kTileC * (x.bf ? 2 : 4) +
                       static_cast<size_t>(kTileT + D.K - 1) * kTileC * (dy.bf ? 2 : 4);
  const size_t smem = std::max(tiles, sizeof(float) * kGroups * kTileC * D.K);
  with_k(D.K, [&](auto kk) {
    smem_opt_in(conv1d_backward_kernel<kk>, smem);
    conv1d_backward_kernel<kk>
        <<<grid_of(D), kThreads, smem, ctx.stream>>>(dx, part, dy, x, w, D, accumulate);
  });
  SL_CUDA_LAUNCHED();
  // The tiles' partial rows [B ttiles, C K] summed by colsum's two stages (8 row lanes a column,
  // chunks of >= 64 rows, then the chunks in order): deterministic, no atomics.
  if (dw) colsum(ctx, PartialRows{part, ncols}, nrows, ncols, dw);
}

}  // namespace sl
