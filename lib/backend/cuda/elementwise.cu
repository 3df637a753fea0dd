// Elementwise ops and copies (dtype conversion, axpy, strided 2-D copy, scale), the sum of squares
// behind the global gradient norm, and the second stage of the column sums (common.cuh).
#include "backend/cuda/ops.h"

namespace sl::cuda {

__global__ void colsum_finish_kernel(const float* partial, int64_t nchunks, int64_t C, DPtr out) {
  SL_GRID_STRIDE(c, C) {
    float s = 0.f;
    for (int64_t k = 0; k < nchunks; ++k) s += partial[k * C + c];
    out.add(c, s);
  }
}

namespace {

__global__ void convert_kernel(DPtr dst, DPtr src, int64_t n) {
  SL_GRID_STRIDE(i, n) dst.st(i, src.ld(i));
}
__global__ void axpy_kernel(DPtr y, DPtr x, float alpha, int64_t n) {
  SL_GRID_STRIDE(i, n) y.st(i, y.ld(i) + alpha * x.ld(i));
}
__global__ void copy2d_kernel(DPtr dst, int64_t ld_dst, DPtr src, int64_t ld_src, int64_t rows,
                              int64_t cols, bool accumulate) {
  SL_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    const float v = src.ld(r * ld_src + c);
    if (accumulate)
      dst.add(r * ld_dst + c, v);
    else
      dst.st(r * ld_dst + c, v);
  }
}
__global__ void scale_kernel(DPtr x, float s, int64_t n) {
  SL_GRID_STRIDE(i, n) x.st(i, x.ld(i) * s);
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

void convert(Ctx& ctx, DPtr dst, DPtr src, int64_t n) {
  if (n <= 0) return;
  convert_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(dst, src, n);
  SL_CUDA_LAUNCHED();
}
void axpy(Ctx& ctx, DPtr y, DPtr x, float alpha, int64_t n) {
  if (n <= 0) return;
  axpy_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(y, x, alpha, n);
  SL_CUDA_LAUNCHED();
}
void copy2d(Ctx& ctx, DPtr dst, int64_t ld_dst, DPtr src, int64_t ld_src, int64_t rows,
            int64_t cols, bool accumulate) {
  if (rows * cols <= 0) return;
  copy2d_kernel<<<grid_for(rows * cols, 256), 256, 0, ctx.stream>>>(dst, ld_dst, src, ld_src, rows,
                                                                    cols, accumulate);
  SL_CUDA_LAUNCHED();
}
void scale(Ctx& ctx, DPtr x, float s, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(x, s, n);
  SL_CUDA_LAUNCHED();
}
void sum_squares(Ctx& ctx, double* out, DPtr x, int64_t n) {
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

}  // namespace sl::cuda
