// Causal depthwise conv1d over time followed by SiLU (the GDN short convolution):
//   z[b,t,c] = sum_{j<K} w[c,j] x[b, t-K+1+j, c]   (x = 0 before t = 0),   y = silu(z)
// Backward, with dz = dy silu'(z):
//   dx[b,s,c] += sum_j w[c,j] dz[b, s+K-1-j, c]   (s+K-1-j < T),
//   dw[c,j]   += sum_{b,t} dz[b,t,c] x[b, t-K+1+j, c].
//
// A thread owns one channel c and a run of kRun consecutive time steps of one sequence, and
// slides along time with the last K inputs (and, backward, the last K of dz) in registers, so each
// element of x and dy is loaded once and no index is divided per element; consecutive threads take
// consecutive channels, so every load of a time step is coalesced. Windows are register arrays
// of kMaxK slots indexed from the newest end (slot kMaxK-1-i holds time u-i), which keeps every
// index a compile-time constant for any K <= kMaxK. The backward is one kernel: dz for the run
// plus the K-1 steps after it (dx of the run's last steps needs them), dx for the run, and this
// run's share of dw, written to a workspace row and summed over runs in a fixed order
// (colsum_finish_kernel): deterministic, no atomics.
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

constexpr int kMaxK = 8;  // largest kernel supported (the model's is 4)
constexpr int kRun = 32;  // time steps per thread
constexpr int kThreads = 128;

struct ConvDims {
  int64_t ldx;
  int T, C, K, runs;  // runs = ceil(T / kRun) per sequence
};

// Shifts a window by one step: slot i <- slot i+1, the newest slot <- v.
__device__ inline void push(float (&win)[kMaxK], float v) {
#pragma unroll
  for (int i = 0; i + 1 < kMaxK; ++i) win[i] = win[i + 1];
  win[kMaxK - 1] = v;
}

// Thread coordinates: channel c, sequence b, run [t0, t1). False if the thread has no channel.
// Grid (B * runs, ceil(C / kThreads)).
__device__ inline bool coords(const ConvDims& D, int& c, int64_t& b, int& t0, int& t1) {
  c = blockIdx.y * blockDim.x + threadIdx.x;
  b = blockIdx.x / D.runs;
  t0 = static_cast<int>(blockIdx.x % D.runs) * kRun;
  t1 = min(D.T, t0 + kRun);
  return c < D.C;
}

// wf[i] = w[c, i] and wr[i] = w[c, K-1-i] (0 for i >= K), so that with the windows' newest slot
// at time u: z[u] = sum_i wr[i] x[u-i] and dx[u-K+1] = sum_i wf[i] dz[u-i].
// xw <- x[t0-K+1 .. t0-1] (zero before t = 0).
__device__ inline void start(const ConvDims& D, DPtr x, DPtr w, int c, int64_t b, int t0,
                             float (&wf)[kMaxK], float (&wr)[kMaxK], float (&xw)[kMaxK]) {
#pragma unroll
  for (int i = 0; i < kMaxK; ++i) {
    wf[i] = i < D.K ? w.ld(int64_t{c} * D.K + i) : 0.f;
    wr[i] = i < D.K ? w.ld(int64_t{c} * D.K + D.K - 1 - i) : 0.f;
    xw[i] = 0.f;
  }
  for (int u = max(0, t0 - D.K + 1); u < t0; ++u) push(xw, x.ld((b * D.T + u) * D.ldx + c));
}

// sum_i a[i] win[newest - i]
__device__ inline float dot_window(const float (&a)[kMaxK], const float (&win)[kMaxK]) {
  float z = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxK; ++i) z += a[i] * win[kMaxK - 1 - i];
  return z;
}

__global__ void __launch_bounds__(kThreads)
    conv1d_forward_kernel(DPtr y, DPtr x, DPtr w, ConvDims D) {
  int c, t0, t1;
  int64_t b;
  if (!coords(D, c, b, t0, t1)) return;
  float wf[kMaxK], wr[kMaxK], xw[kMaxK];
  start(D, x, w, c, b, t0, wf, wr, xw);
  for (int u = t0; u < t1; ++u) {
    push(xw, x.ld((b * D.T + u) * D.ldx + c));
    y.st((b * D.T + u) * D.C + c, siluf_(dot_window(wr, xw)));
  }
}

// dw_part: [B * runs, C * K], this run's share of dw in row blockIdx.x, or null.
__global__ void __launch_bounds__(kThreads)
    conv1d_backward_kernel(DPtr dx, float* dw_part, DPtr dy, DPtr x, DPtr w, ConvDims D) {
  int c, t0, t1;
  int64_t b;
  if (!coords(D, c, b, t0, t1)) return;
  float wf[kMaxK], wr[kMaxK], xw[kMaxK], dzw[kMaxK], dwr[kMaxK];
  start(D, x, w, c, b, t0, wf, wr, xw);
#pragma unroll
  for (int i = 0; i < kMaxK; ++i) dzw[i] = dwr[i] = 0.f;
  // u walks the run and the K-1 steps after it: dx[s] for s = u - (K-1) needs dz[s .. u].
  for (int u = t0; u < t1 + D.K - 1; ++u) {
    float dz = 0.f;  // zero past the end of the sequence
    if (u < D.T) {
      const int64_t row = b * D.T + u;
      push(xw, x.ld(row * D.ldx + c));
      dz = dy.ld(row * D.C + c) * silu_gradf_(dot_window(wr, xw));
      if (u < t1) {
#pragma unroll
        for (int i = 0; i < kMaxK; ++i) dwr[i] += dz * xw[kMaxK - 1 - i];  // dw[c, K-1-i]
      }
    }
    push(dzw, dz);
    const int s = u - (D.K - 1);
    if (dx && s >= t0) dx.add((b * D.T + s) * D.ldx + c, dot_window(wf, dzw));
  }
  if (dw_part) {
    float* row = dw_part + int64_t{blockIdx.x} * D.C * D.K + int64_t{c} * D.K;
#pragma unroll
    for (int i = 0; i < kMaxK; ++i)
      if (i < D.K) row[D.K - 1 - i] = dwr[i];
  }
}

ConvDims dims(int64_t B, int64_t T, int64_t C, int64_t K, int64_t ldx, const char* what) {
  if (K < 1 || K > kMaxK)
    fail(std::string("cuda conv1d_silu_") + what + ": kernel size " + std::to_string(K) +
         " not supported (1.." + std::to_string(kMaxK) + ")");
  if (T > (int64_t{1} << 30) || C > (int64_t{1} << 30) || C > 65535 * int64_t{kThreads})
    fail(std::string("cuda conv1d_silu_") + what + ": T or C too large");
  const int64_t runs = (T + kRun - 1) / kRun;
  if (B * runs > (int64_t{1} << 31) - 1)
    fail(std::string("cuda conv1d_silu_") + what + ": B * T too large");
  return {ldx, static_cast<int>(T), static_cast<int>(C), static_cast<int>(K),
          static_cast<int>(runs)};
}

dim3 grid_of(int64_t B, const ConvDims& D) {
  return {static_cast<unsigned>(B * D.runs),
          static_cast<unsigned>((D.C + kThreads - 1) / kThreads)};
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
  const ConvDims D = dims(B, T, C, K, ldx, "forward");
  conv1d_forward_kernel<<<grid_of(B, D), kThreads, 0, cuda_ctx().stream>>>(y, x, w, D);
  SL_CUDA_LAUNCHED();
}

void CudaBackend::conv1d_silu_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t,
                                       Tensor w_t, const ConvShape& shape) {
  const int64_t B = shape.B, T = shape.T, C = shape.C, K = shape.K, ldx = shape.ldx;
  const char* op = "conv1d_silu_backward";
  const DPtr dx = dptr(dx_t, op, "dx"), dw = dptr(dw_t, op, "dw"), dy = dptr(dy_t, op, "dy"),
             x = dptr(x_t, op, "x"), w = dptr(w_t, op, "w");
  Ctx& ctx = cuda_ctx();
  if (B * T * C <= 0 || (!dx && !dw)) return;
  const ConvDims D = dims(B, T, C, K, ldx, "backward");
  const int64_t nrows = B * D.runs, ncols = C * K;
  float* part = dw ? ctx.work->get_as<float>(static_cast<size_t>(nrows * ncols)) : nullptr;
  conv1d_backward_kernel<<<grid_of(B, D), kThreads, 0, ctx.stream>>>(dx, part, dy, x, w, D);
  SL_CUDA_LAUNCHED();
  if (dw) {
    colsum_finish_kernel<<<grid_for(ncols, 256), 256, 0, ctx.stream>>>(part, nrows, ncols, dw);
    SL_CUDA_LAUNCHED();
  }
}

}  // namespace sl
