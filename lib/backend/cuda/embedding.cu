// Token embedding lookup and its scatter-add gradient.
//
// Backward without atomics: the host (which holds the ids) groups the token positions by id with
// a stable counting sort (core/backend.h embedding_index): order[] lists the positions sorted by
// id, so each distinct id is one segment of consecutive sorted positions. The sorted positions
// are cut into chunks of kChunk; a chunk's block sums the rows of each segment piece it holds. A
// segment wholly inside one chunk is added to dwte[id] by that block (no other block holds the
// id); the pieces of a segment that crosses chunk boundaries go to partial rows and one block of
// a second kernel sums them in chunk order. Race-free and bitwise reproducible, and the work per
// block is bounded whatever the ids: one segment a block took up to 1.2 ms at 32 x 1024 byte
// tokens (a space is ~10% of them: ~3,100 rows summed one after another; docs/PERFORMANCE.md).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

// out [BT, d] = rows ids[t] of wte [V, d].
__global__ void embedding_forward_kernel(DPtr out, const int32_t* ids, DPtr wte, int64_t BT,
                                         int64_t d) {
  SL_GRID_STRIDE(i, BT * d) {
    const int64_t t = i / d, c = i % d;
    out.st(i, wte.ld(int64_t{ids[t]} * d + c));
  }
}

// index = [ids (BT) | order (BT)]: sorted position p holds id key(p) = ids[order[p]],
// nondecreasing in p.
constexpr int kChunk = 64;          // sorted positions a block sums
constexpr int kThreads = 64;        // a pass-1 block's threads, over the columns (V at a time)
constexpr int kMergeThreads = 256;  // a merge block's, one column each: its loads in flight

__device__ inline int32_t key_at(const int32_t* index, int64_t BT, int64_t p) {
  return index[index[BT + p]];
}

// Pass 1, grid ceil(BT / kChunk): chunk c = sorted positions [lo, hi). A piece that began in an
// earlier chunk goes to part[c][0], one that continues into the next chunk (and began here) to
// part[c][1]; every other piece is a whole segment, added to dwte. part: [nchunks][2][d] fp32.
template <int V>
__global__ void __launch_bounds__(kThreads)
    embedding_backward_chunks_kernel(DPtr dwte, const int32_t* index, DPtr dout, float* part,
                                     int64_t BT, int64_t d) {
  __shared__ int32_t row[kChunk], key[kChunk], cut[kChunk + 1];
  __shared__ int npiece, began_before, goes_on;
  const int64_t lo = int64_t{blockIdx.x} * kChunk;
  const int n = static_cast<int>(min(int64_t{kChunk}, BT - lo));
  for (int t = threadIdx.x; t < n; t += kThreads) {
    row[t] = index[BT + lo + t];
    key[t] = index[row[t]];
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // piece boundaries: where the id changes (at most kChunk)
    int np = 0;
    for (int t = 0; t < n; ++t)
      if (t == 0 || key[t] != key[t - 1]) cut[np++] = t;
    cut[np] = n;
    npiece = np;
    began_before = lo > 0 && key_at(index, BT, lo - 1) == key[0];
    goes_on = lo + n < BT && key_at(index, BT, lo + n) == key[n - 1];
  }
  __syncthreads();
  for (int64_t c = int64_t{threadIdx.x} * V; c < d; c += int64_t{kThreads} * V) {
    for (int q = 0; q < npiece; ++q) {
      float acc[V] = {};
#pragma unroll 4
      for (int t = cut[q]; t < cut[q + 1]; ++t) {  // independent loads; the sums in token order
        float v[V];
        ldv_ro<V>(dout, int64_t{row[t]} * d + c, v);
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += v[e];
      }
      const bool first = q == 0 && began_before, last = q == npiece - 1 && goes_on;
      if (first || last) {
        float* to = part + (int64_t{blockIdx.x} * 2 + (first ? 0 : 1)) * d + c;
#pragma unroll
        for (int e = 0; e < V; ++e) to[e] = acc[e];
      } else {
        const int64_t at = int64_t{key[cut[q]]} * d + c;
        float w[V];
        ldv<V>(dwte, at, w);
#pragma unroll
        for (int e = 0; e < V; ++e) w[e] += acc[e];
        stv<V>(dwte, at, w);
      }
    }
  }
}

// Pass 2, grid ceil(BT / kChunk): block c takes the segment that begins in chunk c and goes on
// past it (if any): part[c][1] + part[c + 1][0] + ... over the chunks it reaches, in that order.
__global__ void __launch_bounds__(kMergeThreads)
    embedding_backward_merge_kernel(DPtr dwte, const int32_t* index, const float* part, int64_t BT,
                                    int64_t d) {
  const int64_t nchunks = (BT + kChunk - 1) / kChunk, c0 = blockIdx.x;
  const int64_t lo = c0 * kChunk, hi = min(lo + kChunk, BT);
  if (hi >= BT) return;
  const int32_t id = key_at(index, BT, hi - 1);
  if (key_at(index, BT, hi) != id) return;  // ends in this chunk
  if (key_at(index, BT, lo) == id && lo > 0 && key_at(index, BT, lo - 1) == id)
    return;             // began before
  int64_t c1 = c0 + 1;  // the last chunk the segment reaches
  while (c1 + 1 < nchunks && key_at(index, BT, (c1 + 1) * kChunk) == id) ++c1;
  for (int64_t c = threadIdx.x; c < d; c += kMergeThreads) {
    float acc = part[(c0 * 2 + 1) * d + c];
#pragma unroll 8
    for (int64_t k = c0 + 1; k <= c1; ++k) acc += part[k * 2 * d + c];
    dwte.add(int64_t{id} * d + c, acc);
  }
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

// index: the device copy of core/backend.h's embedding_index layout.
void CudaBackend::embedding_forward(Tensor out_t, Tensor index_t, Tensor wte_t,
                                    const RowsShape& shape) {
  const int64_t BT = shape.R, d = shape.C;
  const char* op = "embedding_forward";
  const DPtr out = dptr(out_t, op, "out"), wte = dptr(wte_t, op, "wte");
  const int32_t* index = i32_ptr(index_t, embedding_index_size(BT), op, "index");
  if (BT * d <= 0) return;
  embedding_forward_kernel<<<grid_for(BT * d, 256), 256, 0, cuda_ctx().stream>>>(out, index, wte,
                                                                                 BT, d);
  SL_CUDA_LAUNCHED();
}

void CudaBackend::embedding_backward(Tensor dwte_t, Tensor index_t, Tensor dout_t,
                                     const RowsShape& shape) {
  const int64_t BT = shape.R, d = shape.C;
  const char* op = "embedding_backward";
  const DPtr dwte = dptr(dwte_t, op, "dwte"), dout = dptr(dout_t, op, "dout");
  const int32_t* index = i32_ptr(index_t, embedding_index_size(BT), op, "index");
  Ctx& ctx = cuda_ctx();
  if (!dwte || BT * d <= 0) return;
  const int64_t nchunks = (BT + kChunk - 1) / kChunk;
  float* part = ctx.work->get_as<float>(static_cast<size_t>(nchunks * 2 * d));
  const auto grid = static_cast<unsigned>(nchunks);
  if (d % 8 == 0 && vec8_ok({dout, dwte}))
    embedding_backward_chunks_kernel<8>
        <<<grid, kThreads, 0, ctx.stream>>>(dwte, index, dout, part, BT, d);
  else
    embedding_backward_chunks_kernel<1>
        <<<grid, kThreads, 0, ctx.stream>>>(dwte, index, dout, part, BT, d);
  SL_CUDA_LAUNCHED();
  embedding_backward_merge_kernel<<<grid, kMergeThreads, 0, ctx.stream>>>(dwte, index, part, BT, d);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
