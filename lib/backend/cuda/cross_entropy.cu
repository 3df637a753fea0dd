// Softmax cross-entropy over the vocabulary, one block per token row, fp32 math:
//   loss_t = logsumexp(logits_t) - logits_t[target_t]
// The row's logsumexp is an online (max, sum) pair per thread, merged across the block, so the
// logits are read twice (lse, then the gradient), never written back except as dlogits.
#include <string>

#include "backend/cuda/ops.h"

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

__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(DPtr losses, DPtr dlogits, DPtr logits, const int32_t* targets, int64_t V,
                         float dscale) {
  __shared__ float shm[kThreads / 32], shs[kThreads / 32], sh_lse;
  const int64_t row = blockIdx.x;
  const int32_t tgt = targets[row];
  if (tgt < 0) {
    if (threadIdx.x == 0) losses.st(row, 0.f);
    return;
  }
  const int64_t off = row * V;
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
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
  if (threadIdx.x % 32 == 0) {
    shm[threadIdx.x / 32] = m;
    shs[threadIdx.x / 32] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float mm = shm[0], ss = shs[0];
    for (int w = 1; w < kThreads / 32; ++w) lse_merge(mm, ss, shm[w], shs[w]);
    sh_lse = mm + logf(ss);
    losses.st(row, sh_lse - logits.ld(off + tgt));
  }
  __syncthreads();
  if (!dlogits) return;
  const float lse = sh_lse;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float p = expf(logits.ld(off + i) - lse);
    dlogits.add(off + i, i == tgt ? dscale * p - dscale : dscale * p);
  }
}

// Sum of the losses of non-ignored rows, in double, one block in a fixed order.
__global__ void loss_sum_kernel(DPtr losses, const int32_t* targets, int64_t BT, double* out) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t t = threadIdx.x; t < BT; t += blockDim.x) {
    if (targets[t] >= 0) s += static_cast<double>(losses.ld(t));
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

double cross_entropy(Ctx& ctx, DPtr losses, DPtr dlogits, DPtr logits, const int32_t* targets,
                     int64_t BT, int64_t V, float dscale) {
  if (BT <= 0) return 0.0;
  for (int64_t t = 0; t < BT; ++t) {
    if (targets[t] >= V)
      fail("cross_entropy: target " + std::to_string(targets[t]) + " out of range for vocab " +
           std::to_string(V));
  }
  const int32_t* dt = upload_index(ctx, targets, BT);
  cross_entropy_kernel<<<static_cast<unsigned>(BT), kThreads, 0, ctx.stream>>>(
      losses, dlogits, logits, dt, V, dscale);
  SL_CUDA_LAUNCHED();
  double* sum = ctx.reduce->get_as<double>(1);
  loss_sum_kernel<<<1, 1024, 0, ctx.stream>>>(losses, dt, BT, sum);
  SL_CUDA_LAUNCHED();
  double out = 0;
  SL_CUDA_CHECK(cudaMemcpyAsync(&out, sum, sizeof(double), cudaMemcpyDeviceToHost, ctx.stream));
  SL_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return out;
}

}  // namespace sl::cuda
