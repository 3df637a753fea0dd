// Causal depthwise conv1d over time followed by SiLU (the GDN short convolution):
//   z[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]   (x = 0 before t = 0),   y = silu(z)
// Backward, with dz = dy silu'(z):
//   dx[b,s,c] += sum_j w[c,j] dz[b, s+K-1-j, c]   (s+K-1-j < T),
//   dw[c,j]   += sum_{b,t} dz[b,t,c] x[b, t-K+1+j, c].
//
// Both directions stage a tile of one sequence x 64 channels into shared memory with cp.async
// (x with its K - 1 steps of history, and in the backward dy and x K - 1 steps further), all of it
// in flight at once (a thread sliding along time steps with one memory round trip a step ran at
// ~8x its byte floor; docs/PERFORMANCE.md). Forward: 128 steps a tile, a thread 8 channels x 8
// steps, its windows read from shared memory. Backward, in two passes over a 64-step tile (4
// channels x 8 steps a thread: ~80 registers and 35 KB a block, six blocks a SM, where the
// one-pass version's 159 registers left three): (1) dz = dy silu'(z) once a row into a shared
// fp32 tile, the x window sliding in registers (each staged x row read once a thread) and the
// thread's dw share summed from the same window; the last row group also takes the K - 1 rows
// after the tile, which the dx of its last steps needs; (2) dx from the dz tile, again a sliding
// window. dw: the block's 8 row groups summed in order into one row a tile, the rows summed by
// colsum: deterministic, no atomics. Staging is by 16-byte pieces where the tensor's base and
// row stride allow it and the piece lies inside C, else element by element; zeros outside [0, T)
// x [0, C) (the causal history, and dz = 0 past T).
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
constexpr int kTileC = 64;  // channels a tile, both directions
// Forward tile: kTileT steps; thread (q, g) = (tid % 8, tid / 8) owns channels 8 q .. 8 q + 8 and
// steps kSteps g .. + kSteps. Backward tile: kBTileT steps; thread (q, g) = (tid % 16, tid / 16)
// owns channels 4 q .. 4 q + 4 and steps kSteps g .. + kSteps.
constexpr int kSteps = 8;
constexpr int kV = 8, kGroups = kThreads / (kTileC / kV), kTileT = kGroups * kSteps;
constexpr int kBV = 4, kBGroups = kThreads / (kTileC / kBV), kBTileT = kBGroups * kSteps;
static_assert(kTileT == 128 && kBTileT == 64);
// The backward's blocks a SM: at K <= 4 its 35 KB of shared memory (bf16) allow six, and 80
// registers a thread (six blocks of 128 in 64K) keep them resident; the longer windows of larger
// K (not the model's) would spill at 80: four blocks, up to 128 registers.
constexpr int bwd_blocks_per_sm(int K) { return K <= 4 ? 6 : 4; }

struct ConvDims {
  int64_t ldx, B;
  int T, C, K;
  int tile_t;          // time steps a tile (kTileT forward, kBTileT backward)
  int ctiles, ttiles;  // ceil(C / kTileC), ceil(T / tile_t)
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
    t0 = static_cast<int>(r % D.ttiles) * D.tile_t;
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

// V consecutive elements at `at` (bf16 if bf, else fp32) as fp32, in one access of 2V bytes
// (bf16) or 4V bytes in 16-byte pieces (fp32): V = 8 or 4, `at` aligned to that.
template <int V>
__device__ inline void load_v(const void* at, bool bf, float (&v)[V]) {
  if (bf) {
    unsigned w[V / 2];
    ld_words<2 * V, false>(at, w);
#pragma unroll
    for (int e = 0; e < V / 2; ++e) {
      v[2 * e] = __uint_as_float(w[e] << 16);
      v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
  } else {
    unsigned w[V];
    ld_words<16, false>(at, w);
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = __uint_as_float(w[e]);
  }
}

// V channels V q .. V q + V of staged row r as fp32.
template <int V>
__device__ inline void rowv(const char* s, bool bf, int r, int q, float (&v)[V]) {
  const int e0 = r * kTileC + V * q;
  if (bf)
    load_v(s + 2 * e0, true, v);
  else
    load_v(s + 4 * e0, false, v);
}

// wt[j][v] = w[c + v, j] (0 past C).
template <int K, int V>
__device__ inline void weights(const ConvDims& D, DPtr w, int c, float (&wt)[K][V]) {
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int v = 0; v < V; ++v) wt[j][v] = c + v < D.C ? w.ld(int64_t{c + v} * K + j) : 0.f;
}

// SiLU and its derivative from the SFU's sigmoid: 1 / (1 + e^-z) by __expf (ex2.approx of -z
// log2 e) and __fdividef (rcp.approx), 4 instructions against ~16 for sigmoidf_'s expf and IEEE
// division (common.cuh). These kernels are bound by instruction issue, and at K = 4 the sigmoid
// was about half of each element's instructions. Relative error ~2^-21 (1 + |z|), far below the
// bf16 activations' 2^-9 and the fp32 tests' 1e-4; the same limits (e^-z = inf gives 0, so
// silu' = 0 far left, 1 far right; NaN stays NaN).
__device__ inline float fast_sigmoidf(float z) { return __fdividef(1.f, 1.f + __expf(-z)); }
__device__ inline float fast_siluf(float z) { return z * fast_sigmoidf(z); }
__device__ inline float fast_silu_gradf(float z) {
  const float s = fast_sigmoidf(z);
  return s * (1.f + z * (1.f - s));
}

// z at staged x row u (time t0 + u; x row u + j holds time t0 + u - K + 1 + j).
template <int K>
__device__ inline void conv_at(const char* xs, bool bf, int u, int q, const float (&wt)[K][kV],
                               float (&z)[kV]) {
#pragma unroll
  for (int v = 0; v < kV; ++v) z[v] = 0.f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    float x[kV];
    rowv(xs, bf, u + j, q, x);
#pragma unroll
    for (int v = 0; v < kV; ++v) z[v] += wt[j][v] * x[v];
  }
}

// V channels c .. c + V of row `at` of p, where inside C: one access of V elements when vec and
// the chunk is whole (16 bytes, or 8 for four bf16), else element by element.
template <int V>
__device__ inline void putv(DPtr p, int64_t at, int c, int C, bool vec, const float (&o)[V]) {
  if (vec && c + V <= C) {
    if (p.bf) {
      unsigned w[V / 2];
#pragma unroll
      for (int e = 0; e < V / 2; ++e) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(o[2 * e], o[2 * e + 1]);
        w[e] = *reinterpret_cast<const unsigned*>(&h);
      }
      st_words<2 * V>(static_cast<__nv_bfloat16*>(p.p) + at, w);
    } else {
      unsigned w[V];
#pragma unroll
      for (int e = 0; e < V; ++e) w[e] = __float_as_uint(o[e]);
      st_words<16>(static_cast<float*>(p.p) + at, w);
    }
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v)
      if (c + v < C) p.st(at + v, o[v]);
  }
}
template <int V>
__device__ inline void getv(DPtr p, int64_t at, int c, int C, bool vec, float (&o)[V]) {
  if (vec && c + V <= C) {
    if (p.bf)
      load_v(static_cast<const __nv_bfloat16*>(p.p) + at, true, o);
    else
      load_v(static_cast<const float*>(p.p) + at, false, o);
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v) o[v] = c + v < C ? p.ld(at + v) : 0.f;
  }
}

// Staged x: rows t0 - K + 1 .. t0 + tile_t (+ K - 1 more in the backward).
__host__ __device__ constexpr int x_rows(int K, bool bwd) {
  return (bwd ? kBTileT : kTileT) + (bwd ? 2 : 1) * (K - 1);
}
// The backward's shared memory: the staged x and dy tiles (whose space the dw reduction reuses,
// [kBGroups][K][kTileC] floats), then the dz tile [kBTileT + K - 1][kTileC] fp32.
__host__ __device__ constexpr int bwd_staged_bytes(int K, int xb, int yb) {
  const int tiles = (x_rows(K, true) * xb + (kBTileT + K - 1) * yb) * kTileC,
            red = kBGroups * K * kTileC * 4;
  return ((tiles > red ? tiles : red) + 15) / 16 * 16;
}
__host__ __device__ constexpr int bwd_smem_bytes(int K, int xb, int yb) {
  return bwd_staged_bytes(K, xb, yb) + (kBTileT + K - 1) * kTileC * 4;
}

template <int K>
__global__ void __launch_bounds__(kThreads)
    conv1d_forward_kernel(DPtr y, DPtr x, DPtr w, ConvDims D) {
  extern __shared__ __align__(16) char smc[];
  const TileAt at(D);
  stage(smc, x, D.ldx, D, at, -(K - 1), x_rows(K, false), D.vx);
  cp_async_commit();
  const int q = threadIdx.x % (kTileC / kV), g = threadIdx.x / (kTileC / kV), c = at.c0 + kV * q;
  float wt[K][kV];
  weights(D, w, c, wt);
  cp_async_wait<0>();
  __syncthreads();
  if (c >= D.C) return;
#pragma unroll
  for (int i = 0; i < kSteps; ++i) {
    const int u = g * kSteps + i, t = at.t0 + u;
    if (t >= D.T) break;
    float z[kV];
    conv_at<K>(smc, x.bf, u, q, wt, z);
#pragma unroll
    for (int v = 0; v < kV; ++v) z[v] = fast_siluf(z[v]);
    putv(y, (at.b * D.T + t) * D.C + c, c, D.C, D.vy, z);
  }
}

// dw_part: [B ttiles, C K], the tile's share of dw in row b ttiles + its time tile, or null.
// dx (=|+=). The two passes of the header, with the windows as rings of K slots whose index is
// known at compile time (the loops are unrolled): slot (i + m) mod K holds row u0 + i + m.
template <int K>
__global__ void __launch_bounds__(kThreads, bwd_blocks_per_sm(K))
    conv1d_backward_kernel(DPtr dx, float* dw_part, DPtr dy, DPtr x, DPtr w, ConvDims D, bool acc) {
  extern __shared__ __align__(16) char smc[];
  const TileAt at(D);
  constexpr int nd = kBTileT + K - 1;  // dz rows: times t0 .. t0 + nd
  char* xs = smc;
  char* dys = smc + x_rows(K, true) * kTileC * (x.bf ? 2 : 4);
  float* dzs = reinterpret_cast<float*>(smc + bwd_staged_bytes(K, x.bf ? 2 : 4, dy.bf ? 2 : 4));
  stage(xs, x, D.ldx, D, at, -(K - 1), x_rows(K, true), D.vx);
  stage(dys, dy, D.C, D, at, 0, nd, D.vdy);
  cp_async_commit();
  const int q = threadIdx.x % (kTileC / kBV), g = threadIdx.x / (kTileC / kBV), c = at.c0 + kBV * q,
            u0 = g * kSteps;
  float wt[K][kBV], dwa[K][kBV] = {};
  weights(D, w, c, wt);
  cp_async_wait<0>();
  __syncthreads();

  // (1) dz[u] = dy[u] silu'(z[u]), z[u] = sum_j w[j] x row u + j; dw[j] += dz[u] x row u + j for
  // the tile's own rows. Channels past C have x, w and dy staged as 0: dz 0 there.
  {
    float xw[K][kBV];
#pragma unroll
    for (int m = 0; m < K - 1; ++m) rowv(xs, x.bf, u0 + m, q, xw[m]);
#pragma unroll
    for (int i = 0; i < kSteps + K - 1; ++i) {
      if (i >= kSteps && g != kBGroups - 1) break;
      const int u = u0 + i;
      rowv(xs, x.bf, u + K - 1, q, xw[(i + K - 1) % K]);
      float z[kBV] = {}, d[kBV], dz[kBV];
#pragma unroll
      for (int j = 0; j < K; ++j)
#pragma unroll
        for (int v = 0; v < kBV; ++v) z[v] += wt[j][v] * xw[(i + j) % K][v];
      rowv(dys, dy.bf, u, q, d);
#pragma unroll
      for (int v = 0; v < kBV; ++v) dz[v] = d[v] * fast_silu_gradf(z[v]);
      if (i < kSteps) {
#pragma unroll
        for (int j = 0; j < K; ++j)
#pragma unroll
          for (int v = 0; v < kBV; ++v) dwa[j][v] += dz[v] * xw[(i + j) % K][v];
      }
      *reinterpret_cast<float4*>(dzs + u * kTileC + kBV * q) =
          make_float4(dz[0], dz[1], dz[2], dz[3]);
    }
  }
  __syncthreads();

  // (2) dx[s] = sum_j w[j] dz[s + K - 1 - j], dz rows s .. s + K - 1 in the ring.
  if (dx && c < D.C) {
    float zw[K][kBV];
    auto dz_row = [&](int r, float(&v)[kBV]) {
      const float4 f = *reinterpret_cast<const float4*>(dzs + r * kTileC + kBV * q);
      v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    };
#pragma unroll
    for (int m = 0; m < K - 1; ++m) dz_row(u0 + m, zw[m]);
#pragma unroll
    for (int i = 0; i < kSteps; ++i) {
      const int s = u0 + i, ts = at.t0 + s;
      if (ts >= D.T) break;
      dz_row(s + K - 1, zw[(i + K - 1) % K]);
      const int64_t o_at = (at.b * D.T + ts) * D.ldx + c;
      float o[kBV] = {};
      if (acc) getv(dx, o_at, c, D.C, D.vy, o);
#pragma unroll
      for (int j = 0; j < K; ++j)
#pragma unroll
        for (int v = 0; v < kBV; ++v) o[v] += wt[j][v] * zw[(i + K - 1 - j) % K][v];
      putv(dx, o_at, c, D.C, D.vy, o);
    }
  }
  if (!dw_part) return;

  // The block's dw: the row groups' sums, in group order. red [kBGroups][K][kTileC] over the
  // staged x and dy, which pass (1) was the last to read (the barrier above).
  float* red = reinterpret_cast<float*>(smc);
#pragma unroll
  for (int j = 0; j < K; ++j)
    *reinterpret_cast<float4*>(red + (g * K + j) * kTileC + kBV * q) =
        make_float4(dwa[j][0], dwa[j][1], dwa[j][2], dwa[j][3]);
  __syncthreads();
  float* row = dw_part + (at.b * D.ttiles + at.t0 / kBTileT) * D.C * K + int64_t{at.c0} * K;
  const int ncl = min(kTileC, D.C - at.c0);
  for (int e = threadIdx.x; e < ncl * K; e += kThreads) {
    const int j = e / ncl, cl = e % ncl;  // dw_part column (c0 + cl) K + j
    float t = 0.f;
    for (int r = 0; r < kBGroups; ++r) t += red[(r * K + j) * kTileC + cl];
    row[cl * K + j] = t;
  }
}

// out: y (row stride C) in the forward, dx (row stride ldx) in the backward.
ConvDims dims(int64_t B, int64_t T, int64_t C, int64_t K, int64_t ldx, DPtr x, DPtr out,
              int64_t ldo, DPtr dy, bool bwd) {
  const char* what = bwd ? "backward" : "forward";
  const int tile_t = bwd ? kBTileT : kTileT;
  if (K < 1 || K > kMaxK)
    fail(std::string("cuda conv1d_silu_") + what + ": kernel size " + std::to_string(K) +
         " not supported (1.." + std::to_string(kMaxK) + ")");
  if (T > (int64_t{1} << 30) || C > (int64_t{1} << 30))
    fail(std::string("cuda conv1d_silu_") + what + ": T or C too large");
  const int64_t ctiles = (C + kTileC - 1) / kTileC, ttiles = (T + tile_t - 1) / tile_t;
  if (B * ctiles * ttiles > (int64_t{1} << 31) - 1)
    fail(std::string("cuda conv1d_silu_") + what + ": B * T * C too large");
  return {ldx,
          B,
          static_cast<int>(T),
          static_cast<int>(C),
          static_cast<int>(K),
          tile_t,
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
  const ConvDims D = dims(B, T, C, K, ldx, x, y, C, DPtr{}, false);
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
  const ConvDims D = dims(B, T, C, K, ldx, x, dx, ldx, dy, true);
  const int64_t nrows = B * D.ttiles, ncols = C * K;
  float* part = dw ? ctx.work->get_as<float>(static_cast<size_t>(nrows * ncols)) : nullptr;
  const size_t smem = static_cast<size_t>(bwd_smem_bytes(D.K, x.bf ? 2 : 4, dy.bf ? 2 : 4));
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
