// Softmax cross-entropy over the vocabulary, fp32 math:
//   loss_t = logsumexp(logits_t) - logits_t[target_t]
// Each row may be overwritten by its own gradient (dlogits = logits: the LM head keeps one
// buffer). Three kernels by the row's size: a warp per row with the row in registers (bf16, V
// <= 2048: the ladder's byte vocabulary), a block per row with the row in shared memory (bf16,
// V up to the shared memory: 50304), and the general block per row that reads the row twice. The
// scalars (dscale in, the loss sum out) live on the device, so the step never waits for the
// host.
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

constexpr int kThreads = 256;

// (m, s) <- the pair for the union: s * e^m + s2 * e^m2 = s' e^m'.
__device__ inline void lse_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both empty
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

// Block reduction of the per-thread (max, sum) pairs: each warp's merged pair into shm/shs
// (call, then __syncthreads), then thread 0 merges the warps in a fixed order into the row's lse.
__device__ inline void block_lse_partials(float m, float s, float* shm, float* shs) {
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
  if (threadIdx.x % 32 == 0) {
    shm[threadIdx.x / 32] = m;
    shs[threadIdx.x / 32] = s;
  }
}
__device__ inline float block_lse_finish(const float* shm, const float* shs) {
  float mm = shm[0], ss = shs[0];
  for (int w = 1; w < kThreads / 32; ++w) lse_merge(mm, ss, shm[w], shs[w]);
  return mm + logf(ss);
}

__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(DPtr losses, DPtr dlogits, DPtr logits, const int32_t* targets, int64_t V,
                         const double* dscale_p) {
  __shared__ float shm[kThreads / 32], shs[kThreads / 32], sh_lse;
  const int64_t row = blockIdx.x;
  const int32_t tgt = targets[row];
  const int64_t off = row * V;
  if (tgt < 0 || tgt >= V) {  // ignored (the host rejects >= V before a batch is staged)
    if (threadIdx.x == 0) losses.st(row, 0.f);
    if (dlogits)
      for (int64_t i = threadIdx.x; i < V; i += kThreads) dlogits.st(off + i, 0.f);
    return;
  }
  float m = -INFINITY, s = 0.f;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = logits.ld(off + i);
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
  block_lse_partials(m, s, shm, shs);
  __syncthreads();
  if (threadIdx.x == 0) {
    sh_lse = block_lse_finish(shm, shs);
    losses.st(row, sh_lse - logits.ld(off + tgt));
  }
  __syncthreads();  // every read of the row's target logit is done: dlogits may overwrite logits
  if (!dlogits) return;
  const float lse = sh_lse, dscale = static_cast<float>(*dscale_p);
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float p = expf(logits.ld(off + i) - lse);
    dlogits.st(off + i, i == tgt ? dscale * p - dscale : dscale * p);
  }
}

// 8 bf16 (16 bytes) -> fp32.
__device__ inline void bf16x8_to_float(const uint4& u, float (&v)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = __bfloat1622float2(h[e]);
    v[2 * e] = f.x;
    v[2 * e + 1] = f.y;
  }
}

// The same function for bf16 logits with V a multiple of 8 and V <= 8 x 32 x NC: a warp per row,
// kWarpRows rows a block, the row in registers (lane l holds 16-byte chunks l, l + 32, ...), so
// no shared memory and no block barrier. The max first, then one exponential per logit for the
// sum and one for the gradient; the target's logit comes from its lane's registers by a shuffle,
// so an in-place gradient never races a read of it. (The block-per-row kernel left 7 of its 8
// warps idle on a 256-logit row: 72 us for the L0 step's 32768 rows, 0.4 TB/s.)
constexpr int kWarpRows = 8;
template <int NC>
__global__ void __launch_bounds__(32 * kWarpRows)
    cross_entropy_warp_row_kernel(DPtr losses, DPtr dlogits, DPtr logits, const int32_t* targets,
                                  int64_t BT, int64_t V, const double* dscale_p) {
  const int64_t row = blockIdx.x * int64_t{kWarpRows} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= BT) return;  // the whole warp
  const int nv = static_cast<int>(V / 8);
  const int64_t off = row * V;
  const int32_t tgt = targets[row];
  if (tgt < 0 || tgt >= V) {
    if (lane == 0) losses.st(row, 0.f);
    if (dlogits) {
      const float z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int j = lane; j < nv; j += 32) st8(dlogits, off + 8 * j, z);
    }
    return;
  }
  const uint4* src =
      reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(logits.p) + off);
  float v[NC][8];
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int j = lane + 32 * c;
    bf16x8_to_float(j < nv ? src[j] : make_uint4(0u, 0u, 0u, 0u), v[c]);
  }
  float mx = -INFINITY;
#pragma unroll
  for (int c = 0; c < NC; ++c)
    if (lane + 32 * c < nv)
#pragma unroll
      for (int e = 0; e < 8; ++e) mx = fmaxf(mx, v[c][e]);
  mx = warp_max(mx);
  float s = 0.f, tv = 0.f;
  const int tj = tgt / 8;
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int j = lane + 32 * c;
    if (j >= nv) continue;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      s += __expf(v[c][e] - mx);
      if (j == tj && e == tgt % 8) tv = v[c][e];
    }
  }
  const float lse = mx + logf(warp_sum(s));
  tv = __shfl_sync(0xffffffffu, tv, tj % 32);
  if (lane == 0) losses.st(row, lse - tv);
  if (!dlogits) return;
  const float dscale = static_cast<float>(*dscale_p);
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int j = lane + 32 * c;
    if (j >= nv) continue;
    float g[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) g[e] = dscale * __expf(v[c][e] - lse);
    if (j == tj) g[tgt % 8] -= dscale;
    st8(dlogits, off + 8 * j, g);
  }
}

// The same function for bf16 logits with V a multiple of 8, one row per block held in shared
// memory. Exponentials by __expf (the hardware's exp2 of x log2(e): relative error ~1e-6 for the
// arguments <= 0 here, far under the bf16 logits' and gradients' rounding), about one per logit
// and pass. The row is read from HBM once (16-byte loads, kept raw in shared memory) and its
// gradient computed from the copy, so a row costs one read and one write instead of two reads and
// a write, and no access is narrower than 16 bytes. (S4: 16k rows of 50304 logits; the two-pass
// kernel with 2-byte accesses ran at ~1.7 TB/s.)
__global__ void __launch_bounds__(kThreads)
    cross_entropy_row_cached_kernel(DPtr losses, DPtr dlogits, DPtr logits, const int32_t* targets,
                                    int64_t V, const double* dscale_p) {
  extern __shared__ uint4 row_smem[];  // V / 8 chunks of 8 bf16
  __shared__ float shm[kThreads / 32], shs[kThreads / 32], sh_lse;
  const int64_t row = blockIdx.x, nv = V / 8;
  const int32_t tgt = targets[row];
  const int64_t off = row * V;
  if (tgt < 0 || tgt >= V) {
    if (threadIdx.x == 0) losses.st(row, 0.f);
    if (dlogits) {
      const float z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t j = threadIdx.x; j < nv; j += kThreads) st8(dlogits, off + 8 * j, z);
    }
    return;
  }
  const uint4* src =
      reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(logits.p) + off);
  // kLoads chunks a thread are loaded before any is used: one 16-byte load in flight a thread
  // (2 blocks of 256 a SM: 8 KB a SM) left the pass latency-bound at ~2.1 TB/s; the loop visits
  // a thread's chunks in the same order as one at a time (j, j + kThreads, ...).
  constexpr int kLoads = 4;
  float m = -INFINITY, s = 0.f;
  for (int64_t j0 = threadIdx.x; j0 < nv; j0 += kLoads * kThreads) {
    uint4 u[kLoads];
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int64_t j = j0 + k * kThreads;
      u[k] = j < nv ? src[j] : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int64_t j = j0 + k * kThreads;
      if (j >= nv) break;
      row_smem[j] = u[k];
      float v[8];
      bf16x8_to_float(u[k], v);
      // The thread's running (max, sum): rescaled only when the max grows (rarely, after the
      // first chunks), so about one exponential per logit in this pass.
      float mx = v[0];
#pragma unroll
      for (int e = 1; e < 8; ++e) mx = fmaxf(mx, v[e]);
      if (mx > m) {
        s = m == -INFINITY ? 0.f : s * __expf(m - mx);
        m = mx;
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) s += __expf(v[e] - m);
    }
  }
  block_lse_partials(m, s, shm, shs);
  __syncthreads();  // also: the whole row is in shared memory
  if (threadIdx.x == 0) {
    sh_lse = block_lse_finish(shm, shs);
    const __nv_bfloat16* cached = reinterpret_cast<const __nv_bfloat16*>(row_smem);
    losses.st(row, sh_lse - __bfloat162float(cached[tgt]));
  }
  __syncthreads();
  if (!dlogits) return;
  const float lse = sh_lse, dscale = static_cast<float>(*dscale_p);
  for (int64_t j = threadIdx.x; j < nv; j += kThreads) {
    float g[8];
    bf16x8_to_float(row_smem[j], g);
#pragma unroll
    for (int e = 0; e < 8; ++e) g[e] = dscale * __expf(g[e] - lse);
    const int64_t t = tgt - 8 * j;
    if (t >= 0 && t < 8) g[t] -= dscale;
    st8(dlogits, off + 8 * j, g);
  }
}

// loss_sum += the losses of non-ignored rows, in double, one block in a fixed order.
__global__ void loss_sum_kernel(DPtr losses, const int32_t* targets, int64_t BT, int64_t V,
                                double* out) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t t = threadIdx.x; t < BT; t += blockDim.x) {
    if (targets[t] >= 0 && targets[t] < V) s += static_cast<double>(losses.ld(t));
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) *out += s;
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::cross_entropy(Tensor loss_sum_t, Tensor losses_t, Tensor dlogits_t,
                                Tensor logits_t, Tensor targets_t, const RowsShape& shape,
                                Tensor dscale_t) {
  const int64_t BT = shape.R, V = shape.C;
  const char* op = "cross_entropy";
  double* loss_sum = f64_ptr(loss_sum_t, op, "loss_sum");
  const DPtr losses = dptr(losses_t, op, "losses"), dlogits = dptr(dlogits_t, op, "dlogits"),
             logits = dptr(logits_t, op, "logits");
  const int32_t* targets = i32_ptr(targets_t, BT, op, "targets");
  const double* dscale = dlogits_t ? f64_ptr(dscale_t, op, "dscale") : nullptr;
  Ctx& ctx = cuda_ctx();
  if (BT <= 0) return;
  const size_t row_bytes = static_cast<size_t>(V) * sizeof(__nv_bfloat16);
  const bool bf8 =
      logits.bf && V % 8 == 0 && (!dlogits || dlogits.bf) && vec8_ok({logits, dlogits});
  const int64_t chunks_per_lane = (V / 8 + 31) / 32;  // the warp kernel's NC
  if (bf8 && chunks_per_lane <= 8) {
    const unsigned blocks = static_cast<unsigned>((BT + kWarpRows - 1) / kWarpRows);
    const auto launch = [&](auto kernel) {
      kernel<<<blocks, 32 * kWarpRows, 0, ctx.stream>>>(losses, dlogits, logits, targets, BT, V,
                                                        dscale);
    };
    if (chunks_per_lane <= 1)
      launch(cross_entropy_warp_row_kernel<1>);
    else if (chunks_per_lane <= 2)
      launch(cross_entropy_warp_row_kernel<2>);
    else if (chunks_per_lane <= 4)
      launch(cross_entropy_warp_row_kernel<4>);
    else
      launch(cross_entropy_warp_row_kernel<8>);
  } else if (bf8 && row_bytes + 1024 <= ctx.smem_optin) {
    smem_opt_in(cross_entropy_row_cached_kernel, row_bytes);
    cross_entropy_row_cached_kernel<<<static_cast<unsigned>(BT), kThreads, row_bytes, ctx.stream>>>(
        losses, dlogits, logits, targets, V, dscale);
  } else {
    cross_entropy_kernel<<<static_cast<unsigned>(BT), kThreads, 0, ctx.stream>>>(
        losses, dlogits, logits, targets, V, dscale);
  }
  SL_CUDA_LAUNCHED();
  loss_sum_kernel<<<1, 1024, 0, ctx.stream>>>(losses, targets, BT, V, loss_sum);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
