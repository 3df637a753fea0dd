// Elementwise ops and copies (dtype conversion, axpy, strided 2-D copy, scale), the sum of squares
// behind the global gradient norm, and the second stage of the column sums (common.cuh).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {

// Block (32, 8), grid ceil(C / 32): column blockIdx.x * 32 + x, chunks y, y + 8, ... (common.cuh).
__global__ void colsum_finish_kernel(const float* partial, int64_t nchunks, int64_t C, DPtr out) {
  __shared__ float sh[8][33];
  const int64_t c = int64_t{blockIdx.x} * 32 + threadIdx.x;
  float s = 0.f;
  if (c < C)
    for (int64_t k = threadIdx.y; k < nchunks; k += 8) s += partial[k * C + c];
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.f;
    for (int y = 0; y < 8; ++y) t += sh[y][threadIdx.x];
    out.add(c, t);
  }
}

namespace {

// The elementwise kernels over chunks of V elements: V = 8 (16-byte accesses, and one index
// division per chunk in copy2d) where the sizes, strides and bases allow, else V = 1. Each element
// is computed and rounded as in the scalar form, so both give the same bits.
template <int V>
__global__ void convert_kernel(DPtr dst, DPtr src, int64_t n) {
  SL_GRID_STRIDE(k, n / V) {
    float v[V];
    ldv<V>(src, k * V, v);
    stv<V>(dst, k * V, v);
  }
}
template <int V>
__global__ void axpy_kernel(DPtr y, DPtr x, float alpha, int64_t n) {
  SL_GRID_STRIDE(k, n / V) {
    float a[V], b[V];
    ldv<V>(y, k * V, a);
    ldv<V>(x, k * V, b);
#pragma unroll
    for (int e = 0; e < V; ++e) a[e] = a[e] + alpha * b[e];
    stv<V>(y, k * V, a);
  }
}
template <int V>
__global__ void copy2d_kernel(DPtr dst, int64_t ld_dst, DPtr src, int64_t ld_src, int64_t rows,
                              int64_t cols, bool accumulate) {
  const int64_t per_row = cols / V;
  SL_GRID_STRIDE(k, rows * per_row) {
    const int64_t r = k / per_row, c = (k % per_row) * V;
    float v[V];
    ldv<V>(src, r * ld_src + c, v);
    if (accumulate) {
      float o[V];
      ldv<V>(dst, r * ld_dst + c, o);
#pragma unroll
      for (int e = 0; e < V; ++e) v[e] = o[e] + v[e];
    }
    stv<V>(dst, r * ld_dst + c, v);
  }
}
template <int V>
__global__ void scale_kernel(DPtr x, float s, int64_t n) {
  SL_GRID_STRIDE(k, n / V) {
    float v[V];
    ldv<V>(x, k * V, v);
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = v[e] * s;
    stv<V>(x, k * V, v);
  }
}

// Stage 1 of sum_squares: a fixed grid, each block sums its grid-stride share in double.
constexpr int kSumBlocks = 1024, kSumThreads = 256;
__global__ void sum_squares_partial(DPtr x, int64_t n, double* partial) {
  __shared__ double sh[32];
  double s = 0;
  SL_GRID_STRIDE(i, n) {
    const double v = x.ld(i);
    s += v * v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
// Stage 2: one block adds the partials in a fixed order.
__global__ void sum_partials(const double* partial, int64_t n, double* out) {
  __shared__ double sh[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::convert(Tensor dst_t, Tensor src_t) {
  SL_ASSERT(dst_t.n == src_t.n);
  const DPtr dst = dptr(dst_t, "convert", "dst"), src = dptr(src_t, "convert", "src");
  const int64_t n = src_t.n;
  if (n <= 0) return;
  const cudaStream_t st = cuda_ctx().stream;
  if (n % 8 == 0 && vec8_ok({dst, src}))
    convert_kernel<8><<<grid_for(n / 8, 256), 256, 0, st>>>(dst, src, n);
  else
    convert_kernel<1><<<grid_for(n, 256), 256, 0, st>>>(dst, src, n);
  SL_CUDA_LAUNCHED();
}
void CudaBackend::axpy(Tensor y_t, Tensor x_t, float alpha, int64_t n) {
  const DPtr y = dptr(y_t, "axpy", "y"), x = dptr(x_t, "axpy", "x");
  if (n <= 0) return;
  const cudaStream_t st = cuda_ctx().stream;
  if (n % 8 == 0 && vec8_ok({y, x}))
    axpy_kernel<8><<<grid_for(n / 8, 256), 256, 0, st>>>(y, x, alpha, n);
  else
    axpy_kernel<1><<<grid_for(n, 256), 256, 0, st>>>(y, x, alpha, n);
  SL_CUDA_LAUNCHED();
}
void CudaBackend::copy2d(Tensor dst_t, Tensor src_t, const Copy2dShape& shape, bool accumulate) {
  const int64_t rows = shape.R, cols = shape.C, ld_dst = shape.ld_dst, ld_src = shape.ld_src;
  const DPtr dst = dptr(dst_t, "copy2d", "dst"), src = dptr(src_t, "copy2d", "src");
  if (rows * cols <= 0) return;
  const cudaStream_t st = cuda_ctx().stream;
  if (cols % 8 == 0 && ld_dst % 8 == 0 && ld_src % 8 == 0 && vec8_ok({dst, src}))
    copy2d_kernel<8><<<grid_for(rows * cols / 8, 256), 256, 0, st>>>(dst, ld_dst, src, ld_src, rows,
                                                                     cols, accumulate);
  else
    copy2d_kernel<1><<<grid_for(rows * cols, 256), 256, 0, st>>>(dst, ld_dst, src, ld_src, rows,
                                                                 cols, accumulate);
  SL_CUDA_LAUNCHED();
}
void CudaBackend::scale(Tensor x_t, float s, int64_t n) {
  const DPtr x = dptr(x_t, "scale", "x");
  if (n <= 0) return;
  const cudaStream_t st = cuda_ctx().stream;
  if (n % 8 == 0 && vec8_ok({x}))
    scale_kernel<8><<<grid_for(n / 8, 256), 256, 0, st>>>(x, s, n);
  else
    scale_kernel<1><<<grid_for(n, 256), 256, 0, st>>>(x, s, n);
  SL_CUDA_LAUNCHED();
}
// out[0] = sum x^2 (two fixed-order stages: deterministic).
void CudaBackend::sum_squares(Tensor out_t, Tensor x_t, int64_t n) {
  double* out = f64_ptr(out_t, "sum_squares", "out");
  const DPtr x = dptr(x_t, "sum_squares", "x");
  Ctx& ctx = cuda_ctx();
  if (n <= 0) {
    SL_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), ctx.stream));
    return;
  }
  double* buf = ctx.reduce->get_as<double>(kSumBlocks);
  sum_squares_partial<<<kSumBlocks, kSumThreads, 0, ctx.stream>>>(x, n, buf);
  SL_CUDA_LAUNCHED();
  sum_partials<<<1, 1024, 0, ctx.stream>>>(buf, kSumBlocks, out);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
