// Causal depthwise conv1d over time followed by SiLU (the GDN short convolution):
//   z[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]   (x = 0 before t = 0),   y = silu(z)
// Backward, with dz = dy silu'(z):
//   dx[b,s,c] += sum_j w[c,j] dz[b, s+K-1-j, c]   (s+K-1-j < T),
//   dw[c,j]   += sum_{b,t} dz[b,t,c] x[b, t-K+1+j, c].
//
// A thread owns V consecutive channels (V = 8 with 16-byte accesses where C and the row stride
// are multiples of 8 and the tensors aligned: every model shape; else V = 1) and a run of
// consecutive time steps of one sequence (kRunForward / kRunBackward), and slides along time with
// the last K inputs (and, backward, the last K of dz) in registers, so each element of x and dy is
// loaded once and no index is divided per element; consecutive threads take consecutive channels,
// so every load of a time step is coalesced. K is a template parameter (1..kMaxK) and the windows
// are rings of K slots: the time loop is unrolled K steps at a time, so time u sits in slot (u -
// t0) mod K, a compile-time index, and nothing is shifted. (The first version shifted kMaxK = 8
// slots a step and multiplied by zero weights past K: ncu put its forward at 61% issue-slot use and
// 24% of the DRAM bandwidth, bound by instructions.) The backward is one kernel: dz for the run
// plus the K-1 steps after it (dx of the run's last steps needs them), dx for the run, and this
// run's share of dw, written to a workspace row and summed over runs in a fixed order (colsum):
// deterministic, no atomics.
// Threads are numbered channel chunk fastest, then run, then sequence, over a 1-D grid: with a
// block per (run, 128 chunks) instead, a width that is not a multiple of 128 chunks idled most
// of its last block (L3's 1152 channels are 144 chunks: two blocks, 112 of 256 threads busy).
// x and dy are read through the read-only path (ldv_ro): the compiler may then issue a step's
// loads ahead of the previous steps' stores to y / dx, instead of one round trip per step.
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

constexpr int kMaxK = 8;  // largest kernel supported (the model's is 4)
// Time steps per thread. Shorter runs give more threads to hide latency with but reread K-1
// steps of x each (3/16 more at K 4); the backward's runs are also its dw partial rows (B T / run
// rows of C K floats through colsum), hence longer.
constexpr int kRunForward = 16, kRunBackward = 32;
constexpr int kThreads = 128;

struct ConvDims {
  int64_t ldx, B;
  int T, C, K, run, runs;  // runs = ceil(T / run) per sequence
  int chunks;              // ceil(C / V)
};

// Thread coordinates: first channel c, sequence b, run [t0, t1) and the run's global index
// (b runs + its index in the sequence). False if the thread is past the last (b, run, chunk).
__device__ inline bool coords(const ConvDims& D, int V, int& c, int64_t& b, int& t0, int& t1,
                              int64_t& run) {
  const int64_t g = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  run = g / D.chunks;
  if (run >= D.B * D.runs) return false;
  c = static_cast<int>(g - run * D.chunks) * V;
  b = run / D.runs;
  t0 = static_cast<int>(run - b * D.runs) * D.run;
  t1 = min(D.T, t0 + D.run);
  return true;
}

// wt[j][v] = w[c + v, j]; xr <- the ring holding x[t0-K+1 .. t0-1] (zero before t = 0): time
// t0 - m in slot K - m.
template <int K, int V>
__device__ inline void start(const ConvDims& D, DPtr x, DPtr w, int c, int64_t b, int t0,
                             float (&wt)[K][V], float (&xr)[K][V]) {
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int v = 0; v < V; ++v) {
      wt[j][v] = w.ld(int64_t{c + v} * K + j);
      xr[j][v] = 0.f;
    }
#pragma unroll
  for (int m = 1; m < K; ++m)
    if (t0 - m >= 0) ldv_ro<V>(x, (b * D.T + t0 - m) * D.ldx + c, xr[K - m]);
}

// z[v] = sum_j w[c+v, j] x[u-K+1+j] with time u in slot i: time u-K+1+j is in slot (i+1+j) mod K.
template <int K, int V>
__device__ inline void conv_at(int i, const float (&wt)[K][V], const float (&xr)[K][V],
                               float (&z)[V]) {
#pragma unroll
  for (int v = 0; v < V; ++v) z[v] = 0.f;
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int v = 0; v < V; ++v) z[v] += wt[j][v] * xr[(i + 1 + j) % K][v];
}

template <int K, int V>
__global__ void __launch_bounds__(kThreads)
    conv1d_forward_kernel(DPtr y, DPtr x, DPtr w, ConvDims D) {
  int c, t0, t1;
  int64_t b, run;
  if (!coords(D, V, c, b, t0, t1, run)) return;
  float wt[K][V], xr[K][V];
  start<K, V>(D, x, w, c, b, t0, wt, xr);
  for (int u0 = t0; u0 < t1; u0 += K) {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int u = u0 + i;
      if (u >= t1) break;
      const int64_t row = b * D.T + u;
      ldv_ro<V>(x, row * D.ldx + c, xr[i]);
      float z[V];
      conv_at<K, V>(i, wt, xr, z);
#pragma unroll
      for (int v = 0; v < V; ++v) z[v] = siluf_(z[v]);
      stv<V>(y, row * D.C + c, z);
    }
  }
}

// dw_part: [B * runs, C * K], this run's share of dw in row b runs + run, or null. dx (=|+=).
template <int K, int V>
__global__ void __launch_bounds__(kThreads)
    conv1d_backward_kernel(DPtr dx, float* dw_part, DPtr dy, DPtr x, DPtr w, ConvDims D, bool acc) {
  int c, t0, t1;
  int64_t b, run;
  if (!coords(D, V, c, b, t0, t1, run)) return;
  float wt[K][V], xr[K][V], dzr[K][V] = {}, dwa[K][V] = {};
  start<K, V>(D, x, w, c, b, t0, wt, xr);
  // u walks the run and the K-1 steps after it: dx[s] for s = u - (K-1) needs dz[s .. u].
  const int u_end = t1 + K - 1;
  for (int u0 = t0; u0 < u_end; u0 += K) {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int u = u0 + i;
      if (u >= u_end) break;
      // dz[u] into slot i (zero past the end of the sequence)
      if (u < D.T) {
        const int64_t row = b * D.T + u;
        ldv_ro<V>(x, row * D.ldx + c, xr[i]);
        float z[V], g[V];
        conv_at<K, V>(i, wt, xr, z);
        ldv_ro<V>(dy, row * D.C + c, g);
#pragma unroll
        for (int v = 0; v < V; ++v) dzr[i][v] = g[v] * silu_gradf_(z[v]);
        if (u < t1) {
#pragma unroll
          for (int j = 0; j < K; ++j)  // dw[c, j] += dz[u] x[u-K+1+j]
#pragma unroll
            for (int v = 0; v < V; ++v) dwa[j][v] += dzr[i][v] * xr[(i + 1 + j) % K][v];
        }
      } else {
#pragma unroll
        for (int v = 0; v < V; ++v) dzr[i][v] = 0.f;
      }
      // dx[s] += sum_j w[c, j] dz[s+K-1-j], s = u-K+1: dz[u-j] sits in slot (i - j) mod K.
      const int s = u - (K - 1);
      if (dx && s >= t0) {
        const int64_t at = (b * D.T + s) * D.ldx + c;
        float o[V] = {};
        if (acc) ldv<V>(dx, at, o);
#pragma unroll
        for (int j = 0; j < K; ++j)
#pragma unroll
          for (int v = 0; v < V; ++v) o[v] += wt[j][v] * dzr[(i - j + K) % K][v];
        stv<V>(dx, at, o);
      }
    }
  }
  if (dw_part) {
    float* row = dw_part + run * D.C * K + int64_t{c} * K;
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int j = 0; j < K; ++j) row[v * K + j] = dwa[j][v];
  }
}

ConvDims dims(int64_t B, int64_t T, int64_t C, int64_t K, int64_t ldx, int run, int V,
              const char* what) {
  if (K < 1 || K > kMaxK)
    fail(std::string("cuda conv1d_silu_") + what + ": kernel size " + std::to_string(K) +
         " not supported (1.." + std::to_string(kMaxK) + ")");
  if (T > (int64_t{1} << 30) || C > (int64_t{1} << 30))
    fail(std::string("cuda conv1d_silu_") + what + ": T or C too large");
  const int64_t runs = (T + run - 1) / run, chunks = (C + V - 1) / V;
  if (B * runs * chunks > (int64_t{1} << 31) * kThreads - 1)
    fail(std::string("cuda conv1d_silu_") + what + ": B * T * C too large");
  return {ldx,
          B,
          static_cast<int>(T),
          static_cast<int>(C),
          static_cast<int>(K),
          run,
          static_cast<int>(runs),
          static_cast<int>(chunks)};
}

unsigned grid_of(const ConvDims& D) {
  return static_cast<unsigned>((D.B * D.runs * D.chunks + kThreads - 1) / kThreads);
}

// Runs LAUNCH(K, V) with the kernel size and the channels per thread as compile-time constants.
// V = 8 only up to K = 4 (the model's): its windows take 4 K V registers (157 in all at K 4;
// K 8 spilled).
#define SL_CONV_DISPATCH(K, V, LAUNCH)        \
  do {                                        \
    switch (K) {                              \
      case 1:                                 \
        V == 8 ? LAUNCH(1, 8) : LAUNCH(1, 1); \
        break;                                \
      case 2:                                 \
        V == 8 ? LAUNCH(2, 8) : LAUNCH(2, 1); \
        break;                                \
      case 3:                                 \
        V == 8 ? LAUNCH(3, 8) : LAUNCH(3, 1); \
        break;                                \
      case 4:                                 \
        V == 8 ? LAUNCH(4, 8) : LAUNCH(4, 1); \
        break;                                \
      case 5:                                 \
        LAUNCH(5, 1);                         \
        break;                                \
      case 6:                                 \
        LAUNCH(6, 1);                         \
        break;                                \
      case 7:                                 \
        LAUNCH(7, 1);                         \
        break;                                \
      default:                                \
        LAUNCH(8, 1);                         \
        break;                                \
    }                                         \
  } while (0)

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::conv1d_silu_forward(Tensor y_t, Tensor x_t, Tensor w_t, const ConvShape& shape) {
  const int64_t B = shape.B, T = shape.T, C = shape.C, K = shape.K, ldx = shape.ldx;
  const char* op = "conv1d_silu_forward";
  const DPtr y = dptr(y_t, op, "y"), x = dptr(x_t, op, "x"), w = dptr(w_t, op, "w");
  if (B * T * C <= 0) return;
  const int V = K <= 4 && vec_ok(C, ldx, {y, x}) ? 8 : 1;
  const ConvDims D = dims(B, T, C, K, ldx, kRunForward, V, "forward");
  const cudaStream_t st = cuda_ctx().stream;
#define SL_FWD(KK, VV) conv1d_forward_kernel<KK, VV><<<grid_of(D), kThreads, 0, st>>>(y, x, w, D)
  SL_CONV_DISPATCH(K, V, SL_FWD);
#undef SL_FWD
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
  const int V = K <= 4 && vec_ok(C, ldx, {dx, dy, x}) ? 8 : 1;
  const ConvDims D = dims(B, T, C, K, ldx, kRunBackward, V, "backward");
  const int64_t nrows = B * D.runs, ncols = C * K;
  float* part = dw ? ctx.work->get_as<float>(static_cast<size_t>(nrows * ncols)) : nullptr;
#define SL_BWD(KK, VV)           \
  conv1d_backward_kernel<KK, VV> \
      <<<grid_of(D), kThreads, 0, ctx.stream>>>(dx, part, dy, x, w, D, accumulate)
  SL_CONV_DISPATCH(K, V, SL_BWD);
#undef SL_BWD
  SL_CUDA_LAUNCHED();
  // The runs' partial rows [B * runs, C K] summed by colsum's two stages (8 row lanes a column,
  // chunks of >= 64 rows, then the chunks in order). Summed by one thread a column instead (the
  // first version), L3's 1024 rows were 1024 dependent steps for 4,608 threads: latency, not
  // bandwidth, about as long as the conv itself.
  if (dw) colsum(ctx, PartialRows{part, ncols}, nrows, ncols, dw);
}

}  // namespace sl
