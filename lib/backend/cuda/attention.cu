// Fused causal softmax attention, flash style: scores never leave the chip, the forward saves
// lse = logsumexp of each score row, the backward recomputes P from it. For one (b, h), with
// Q, K, V [T, hd] and scale = 1/sqrt(hd):
//   S = scale Q K^T (s <= t),  lse_t = logsumexp_s S_ts,  P = exp(S - lse),  O = P V
//   D_t = dO_t . O_t,  dS = P (dO V^T - D),  dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dO
//
// First version, correctness first: fp32 SIMT math on tiles staged in shared memory (bf16 inputs
// are widened on load), no tensor cores. The backward runs two kernels, one over key blocks
// (dK, dV) and one over query blocks (dQ), each recomputing P: no atomics, so the result is
// deterministic.
//
// Thread layout: a warp owns kRows query rows (forward, dQ) or kRows keys (dK/dV) and walks
// tiles of 32 keys (queries) with one key (query) per lane, so the 32 scores of a tile are one
// register per lane; the P.V-style products then broadcast the lane values with shuffles. Each
// lane holds output columns c = lane + 32 v, v < NV = ceil(hd / 32) (hd <= 128).
#include <string>

#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

constexpr int kRows = 8;   // rows (or keys) per warp
constexpr int kTile = 32;  // keys (or queries) per tile = lanes
constexpr unsigned kFull = 0xffffffffu;

// Dynamic shared memory above the 48 KiB default needs an opt-in per kernel.
template <class K>
void allow_smem(K kernel, size_t bytes, const Ctx& ctx, const char* what) {
  if (bytes > ctx.smem_optin)
    fail(std::string("cuda attention ") + what + ": needs " + std::to_string(bytes) +
         " bytes of shared memory, the device allows " + std::to_string(ctx.smem_optin));
  if (bytes > (48u << 10))
    SL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)));
}

// Loads rows [r0, r0 + n) of one head of a [B*T, *] tensor (token stride ld, head offset col)
// into smem rows of stride ldq, zero past T.
__device__ inline void load_rows(float* dst, int ldq, DPtr src, int64_t base, int64_t ld,
                                 int64_t col, int r0, int n, int T, int hd) {
  for (int i = threadIdx.x; i < n * hd; i += blockDim.x) {
    const int r = i / hd, c = i % hd, t = r0 + r;
    dst[r * ldq + c] = t < T ? src.ld((base + t) * ld + col + c) : 0.f;
  }
}

__device__ inline float dot(const float* a, const float* b, int n) {
  float acc = 0.f;
  for (int c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
}

// Grid (ceil(T / 64), B*H), 256 threads: 8 warps x kRows = 64 query rows per block.
// smem: Qs [64][hd+1], Ks [32][hd+1], Vs [32][hd+1].
template <int NV>
__global__ void __launch_bounds__(256)
    attention_forward_kernel(DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, int64_t ldv, int T, int H,
                             int hd, float scale) {
  constexpr int kBq = 8 * kRows;
  extern __shared__ float sm[];
  const int ldq = hd + 1;  // odd stride: lanes reading different rows hit different banks
  float* Qs = sm;
  float* Ks = Qs + kBq * ldq;
  float* Vs = Ks + kTile * ldq;
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const int r0 = blockIdx.x * kBq, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ld = int64_t{H} * hd, base = int64_t{b} * T;
  load_rows(Qs, ldq, q, base, ld, int64_t{h} * hd, r0, kBq, T, hd);

  float m[kRows], l[kRows], o[kRows][NV];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int x = 0; x < NV; ++x) o[i][x] = 0.f;
  }
  const int t_end = min(T, r0 + kBq);  // this block needs keys [0, t_end)
  for (int s0 = 0; s0 < t_end; s0 += kTile) {
    __syncthreads();  // the previous tile is consumed
    load_rows(Ks, ldq, k, base, ld, int64_t{h} * hd, s0, kTile, T, hd);
    load_rows(Vs, ldq, v, base, ldv, int64_t{h} * hd, s0, kTile, T, hd);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const int row = warp * kRows + i, t = r0 + row;
      if (t >= T || s0 > t) continue;  // warp-uniform
      const int s = s0 + lane;
      const float sc = s <= t ? scale * dot(Qs + row * ldq, Ks + lane * ldq, hd) : -INFINITY;
      const float mnew = fmaxf(m[i], warp_max(sc));  // finite: key s0 <= t is in the tile
      const float p = s <= t ? expf(sc - mnew) : 0.f;
      const float corr = expf(m[i] - mnew);  // 0 on the first tile (m = -inf)
      l[i] = l[i] * corr + warp_sum(p);
      m[i] = mnew;
#pragma unroll
      for (int x = 0; x < NV; ++x) o[i][x] *= corr;
      const int jn = min(kTile, t - s0 + 1);
      for (int j = 0; j < jn; ++j) {
        const float pj = __shfl_sync(kFull, p, j);
#pragma unroll
        for (int x = 0; x < NV; ++x) {
          const int c = lane + 32 * x;
          if (c < hd) o[i][x] += pj * Vs[j * ldq + c];
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int t = r0 + warp * kRows + i;
    if (t >= T) continue;
#pragma unroll
    for (int x = 0; x < NV; ++x) {
      const int c = lane + 32 * x;
      if (c < hd) out.st((base + t) * ld + int64_t{h} * hd + c, o[i][x] / l[i]);
    }
    if (lane == 0) lse.st(int64_t{bh} * T + t, m[i] + logf(l[i]));
  }
}

// D[b, h, t] = sum_c dO[b, t, h, c] O[b, t, h, c]; one warp per (b, t, h).
__global__ void attention_dot_kernel(float* D, DPtr dout, DPtr out, int64_t B, int64_t T, int64_t H,
                                     int64_t hd) {
  const int64_t row = blockIdx.x * int64_t{8} + threadIdx.x / 32;  // (b*T + t)*H + h
  const int lane = threadIdx.x % 32;
  if (row >= B * T * H) return;
  float acc = 0.f;
  for (int64_t c = lane; c < hd; c += 32) acc += dout.ld(row * hd + c) * out.ld(row * hd + c);
  acc = warp_sum(acc);
  const int64_t h = row % H, bt = row / H, b = bt / T, t = bt % T;
  if (lane == 0) D[(b * H + h) * T + t] = acc;
}

// dQ: grid (ceil(T / 64), B*H), 256 threads, warps own kRows query rows.
// smem: Qs, dOs [64][hd+1], Ks, Vs [32][hd+1].
template <int NV>
__global__ void __launch_bounds__(256)
    attention_dq_kernel(DPtr dq, DPtr dout, DPtr q, DPtr k, DPtr v, int64_t ldv, DPtr lse,
                        const float* D, int T, int H, int hd, float scale) {
  constexpr int kBq = 8 * kRows;
  extern __shared__ float sm[];
  const int ldq = hd + 1;
  float* Qs = sm;
  float* dOs = Qs + kBq * ldq;
  float* Ks = dOs + kBq * ldq;
  float* Vs = Ks + kTile * ldq;
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const int r0 = blockIdx.x * kBq, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ld = int64_t{H} * hd, base = int64_t{b} * T;
  load_rows(Qs, ldq, q, base, ld, int64_t{h} * hd, r0, kBq, T, hd);
  load_rows(dOs, ldq, dout, base, ld, int64_t{h} * hd, r0, kBq, T, hd);
  float lse_r[kRows], D_r[kRows], acc[kRows][NV];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int t = r0 + warp * kRows + i;
    lse_r[i] = t < T ? lse.ld(int64_t{bh} * T + t) : 0.f;
    D_r[i] = t < T ? D[int64_t{bh} * T + t] : 0.f;
#pragma unroll
    for (int x = 0; x < NV; ++x) acc[i][x] = 0.f;
  }
  const int t_end = min(T, r0 + kBq);
  for (int s0 = 0; s0 < t_end; s0 += kTile) {
    __syncthreads();
    load_rows(Ks, ldq, k, base, ld, int64_t{h} * hd, s0, kTile, T, hd);
    load_rows(Vs, ldq, v, base, ldv, int64_t{h} * hd, s0, kTile, T, hd);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const int row = warp * kRows + i, t = r0 + row;
      if (t >= T || s0 > t) continue;
      const int s = s0 + lane;
      float ds = 0.f;
      if (s <= t) {
        const float p = expf(scale * dot(Qs + row * ldq, Ks + lane * ldq, hd) - lse_r[i]);
        const float dp = dot(dOs + row * ldq, Vs + lane * ldq, hd);
        ds = p * (dp - D_r[i]);
      }
      const int jn = min(kTile, t - s0 + 1);
      for (int j = 0; j < jn; ++j) {
        const float dsj = __shfl_sync(kFull, ds, j);
#pragma unroll
        for (int x = 0; x < NV; ++x) {
          const int c = lane + 32 * x;
          if (c < hd) acc[i][x] += dsj * Ks[j * ldq + c];
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int t = r0 + warp * kRows + i;
    if (t >= T) continue;
#pragma unroll
    for (int x = 0; x < NV; ++x) {
      const int c = lane + 32 * x;
      if (c < hd) dq.add((base + t) * ld + int64_t{h} * hd + c, scale * acc[i][x]);
    }
  }
}

// dK, dV: grid (ceil(T / 32), B*H), 128 threads, warps own kRows keys of the block's 32 and walk
// query tiles t >= s. smem: Ks, Vs, Qs, dOs [32][hd+1], lse_s, D_s [32].
template <int NV>
__global__ void __launch_bounds__(128)
    attention_dkv_kernel(DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k, DPtr v, int64_t ldv, DPtr lse,
                         const float* D, int T, int H, int hd, float scale) {
  extern __shared__ float sm[];
  const int ldq = hd + 1;
  float* Ks = sm;
  float* Vs = Ks + kTile * ldq;
  float* Qs = Vs + kTile * ldq;
  float* dOs = Qs + kTile * ldq;
  float* lse_s = dOs + kTile * ldq;
  float* D_s = lse_s + kTile;
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const int s_base = blockIdx.x * kTile, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ld = int64_t{H} * hd, base = int64_t{b} * T;
  load_rows(Ks, ldq, k, base, ld, int64_t{h} * hd, s_base, kTile, T, hd);
  load_rows(Vs, ldq, v, base, ldv, int64_t{h} * hd, s_base, kTile, T, hd);
  float adk[kRows][NV], adv[kRows][NV];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int x = 0; x < NV; ++x) adk[i][x] = adv[i][x] = 0.f;
  }
  for (int t0 = s_base; t0 < T; t0 += kTile) {
    __syncthreads();
    load_rows(Qs, ldq, q, base, ld, int64_t{h} * hd, t0, kTile, T, hd);
    load_rows(dOs, ldq, dout, base, ld, int64_t{h} * hd, t0, kTile, T, hd);
    if (threadIdx.x < kTile) {
      const int t = t0 + threadIdx.x;
      lse_s[threadIdx.x] = t < T ? lse.ld(int64_t{bh} * T + t) : 0.f;
      D_s[threadIdx.x] = t < T ? D[int64_t{bh} * T + t] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const int key = warp * kRows + i, s = s_base + key;
      if (s >= T || t0 + kTile - 1 < s) continue;  // no query of this tile sees key s
      const int t = t0 + lane;
      float p = 0.f, ds = 0.f;
      if (t < T && t >= s) {
        p = expf(scale * dot(Qs + lane * ldq, Ks + key * ldq, hd) - lse_s[lane]);
        const float dp = dot(dOs + lane * ldq, Vs + key * ldq, hd);
        ds = p * (dp - D_s[lane]);
      }
      for (int j = 0; j < kTile; ++j) {
        const float pj = __shfl_sync(kFull, p, j), dsj = __shfl_sync(kFull, ds, j);
#pragma unroll
        for (int x = 0; x < NV; ++x) {
          const int c = lane + 32 * x;
          if (c < hd) {
            adv[i][x] += pj * dOs[j * ldq + c];
            adk[i][x] += dsj * Qs[j * ldq + c];
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int s = s_base + warp * kRows + i;
    if (s >= T) continue;
#pragma unroll
    for (int x = 0; x < NV; ++x) {
      const int c = lane + 32 * x;
      if (c >= hd) continue;
      if (dk) dk.add((base + s) * ld + int64_t{h} * hd + c, scale * adk[i][x]);
      if (dv) dv.add((base + s) * ldv + int64_t{h} * hd + c, adv[i][x]);
    }
  }
}

void check_dims(int64_t T, int64_t H, int64_t hd, const char* what) {
  if (hd < 1 || hd > 128)
    fail(std::string("cuda attention ") + what + ": head dim " + std::to_string(hd) +
         " not supported (1..128)");
  if (T > (int64_t{1} << 30) || H > 65535)
    fail(std::string("cuda attention ") + what + ": T or H too large");
}

template <int NV>
void forward_nv(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, int64_t ldv, int64_t B,
                int64_t T, int64_t H, int64_t hd) {
  const size_t smem = static_cast<size_t>((8 * kRows + 2 * kTile) * (hd + 1)) * sizeof(float);
  allow_smem(attention_forward_kernel<NV>, smem, ctx, "forward");
  const dim3 grid(static_cast<unsigned>((T + 8 * kRows - 1) / (8 * kRows)),
                  static_cast<unsigned>(B * H));
  attention_forward_kernel<NV><<<grid, 256, smem, ctx.stream>>>(
      out, lse, q, k, v, ldv, static_cast<int>(T), static_cast<int>(H), static_cast<int>(hd),
      1.f / sqrtf(static_cast<float>(hd)));
  SL_CUDA_LAUNCHED();
}

template <int NV>
void backward_nv(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k, DPtr v,
                 int64_t ldv, DPtr lse, const float* D, int64_t B, int64_t T, int64_t H,
                 int64_t hd) {
  const float scale = 1.f / sqrtf(static_cast<float>(hd));
  if (dq) {
    const size_t smem = static_cast<size_t>((2 * 8 * kRows + 2 * kTile) * (hd + 1)) * sizeof(float);
    allow_smem(attention_dq_kernel<NV>, smem, ctx, "backward (dq)");
    const dim3 grid(static_cast<unsigned>((T + 8 * kRows - 1) / (8 * kRows)),
                    static_cast<unsigned>(B * H));
    attention_dq_kernel<NV>
        <<<grid, 256, smem, ctx.stream>>>(dq, dout, q, k, v, ldv, lse, D, static_cast<int>(T),
                                          static_cast<int>(H), static_cast<int>(hd), scale);
    SL_CUDA_LAUNCHED();
  }
  if (dk || dv) {
    const size_t smem = static_cast<size_t>(4 * kTile * (hd + 1) + 2 * kTile) * sizeof(float);
    allow_smem(attention_dkv_kernel<NV>, smem, ctx, "backward (dk, dv)");
    const dim3 grid(static_cast<unsigned>((T + kTile - 1) / kTile), static_cast<unsigned>(B * H));
    attention_dkv_kernel<NV>
        <<<grid, 128, smem, ctx.stream>>>(dk, dv, dout, q, k, v, ldv, lse, D, static_cast<int>(T),
                                          static_cast<int>(H), static_cast<int>(hd), scale);
    SL_CUDA_LAUNCHED();
  }
}

}  // namespace

void attention_forward(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, int64_t ldv, int64_t B,
                       int64_t T, int64_t H, int64_t hd) {
  if (B * T * H <= 0) return;
  check_dims(T, H, hd, "forward");
  switch ((hd + 31) / 32) {
    case 1:
      forward_nv<1>(ctx, out, lse, q, k, v, ldv, B, T, H, hd);
      break;
    case 2:
      forward_nv<2>(ctx, out, lse, q, k, v, ldv, B, T, H, hd);
      break;
    case 3:
      forward_nv<3>(ctx, out, lse, q, k, v, ldv, B, T, H, hd);
      break;
    default:
      forward_nv<4>(ctx, out, lse, q, k, v, ldv, B, T, H, hd);
      break;
  }
}

void attention_backward(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k, DPtr v,
                        int64_t ldv, DPtr out, DPtr lse, int64_t B, int64_t T, int64_t H,
                        int64_t hd) {
  if (B * T * H <= 0 || (!dq && !dk && !dv)) return;
  check_dims(T, H, hd, "backward");
  float* D = ctx.work->get_as<float>(static_cast<size_t>(B * H * T));
  attention_dot_kernel<<<static_cast<unsigned>((B * T * H + 7) / 8), 256, 0, ctx.stream>>>(
      D, dout, out, B, T, H, hd);
  SL_CUDA_LAUNCHED();
  switch ((hd + 31) / 32) {
    case 1:
      backward_nv<1>(ctx, dq, dk, dv, dout, q, k, v, ldv, lse, D, B, T, H, hd);
      break;
    case 2:
      backward_nv<2>(ctx, dq, dk, dv, dout, q, k, v, ldv, lse, D, B, T, H, hd);
      break;
    case 3:
      backward_nv<3>(ctx, dq, dk, dv, dout, q, k, v, ldv, lse, D, B, T, H, hd);
      break;
    default:
      backward_nv<4>(ctx, dq, dk, dv, dout, q, k, v, ldv, lse, D, B, T, H, hd);
      break;
  }
}

}  // namespace sl::cuda
