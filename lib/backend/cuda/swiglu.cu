// SwiGLU activation: h = silu(gate) * up, gate and up side by side in one row of the fused
// gate|up projection output gu [R, 2m]. A vector path (8 columns a thread) where m % 8 == 0 and
// the tensors are 16-byte aligned (every model shape), the scalar kernels otherwise.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

__global__ void swiglu_forward_kernel(DPtr h, DPtr gu, int64_t R, int64_t m) {
  SL_GRID_STRIDE(i, R * m) {
    const int64_t r = i / m, c = i % m;
    h.st(i, siluf_(gu.ld(r * 2 * m + c)) * gu.ld(r * 2 * m + m + c));
  }
}

// dgate (=|+=) dh * up * silu'(gate),  dup (=|+=) dh * silu(gate)
__global__ void swiglu_backward_kernel(DPtr dgu, DPtr dh, DPtr gu, int64_t R, int64_t m, bool acc) {
  SL_GRID_STRIDE(i, R * m) {
    const int64_t r = i / m, c = i % m;
    const int64_t og = r * 2 * m + c, ou = og + m;
    const float g = gu.ld(og), u = gu.ld(ou), d = dh.ld(i);
    dgu.put(og, d * u * silu_gradf_(g), acc);
    dgu.put(ou, d * siluf_(g), acc);
  }
}

// The same with 8 columns per thread (m % 8 == 0, aligned tensors): 16-byte accesses, rows from
// the grid's y (no per-element 64-bit division), and in the backward every old dgu value loaded
// before the first store (interleaved read-modify-writes through one pointer serialize).
__global__ void swiglu_forward_vec_kernel(DPtr h, DPtr gu, int64_t R, int64_t m) {
  const int64_t c = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * 8;
  if (c >= m) return;
  for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
    float g[8], u[8], o[8];
    ld8(gu, r * 2 * m + c, g);
    ld8(gu, r * 2 * m + m + c, u);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = siluf_(g[e]) * u[e];
    st8(h, r * m + c, o);
  }
}

__global__ void swiglu_backward_vec_kernel(DPtr dgu, DPtr dh, DPtr gu, int64_t R, int64_t m,
                                           bool acc) {
  const int64_t c = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * 8;
  if (c >= m) return;
  for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
    const int64_t og = r * 2 * m + c, ou = og + m;
    float g[8], u[8], d[8], dg[8] = {}, du[8] = {};
    ld8(gu, og, g);
    ld8(gu, ou, u);
    ld8(dh, r * m + c, d);
    if (acc) {
      ld8(dgu, og, dg);
      ld8(dgu, ou, du);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      // silu(g) = g s and silu'(g) = s (1 + g (1 - s)) from one sigmoid s: siluf_'s and
      // silu_gradf_'s formulas with half the exponentials and divisions.
      const float sg = sigmoidf_(g[e]);
      dg[e] += d[e] * u[e] * (sg * (1.f + g[e] * (1.f - sg)));
      du[e] += d[e] * (g[e] * sg);
    }
    st8(dgu, og, dg);
    st8(dgu, ou, du);
  }
}

// Grid of the vector kernels: 256 threads x 8 columns across, rows over y.
dim3 vec_grid(int64_t R, int64_t m) {
  return dim3(static_cast<unsigned>((m / 8 + 255) / 256),
              static_cast<unsigned>(std::min<int64_t>(R, 65535)));
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::swiglu_forward(Tensor h_t, Tensor gu_t, const RowsShape& shape) {
  const int64_t R = shape.R, m = shape.C;
  const DPtr h = dptr(h_t, "swiglu_forward", "h"), gu = dptr(gu_t, "swiglu_forward", "gu");
  const Ctx& ctx = cuda_ctx();
  if (R * m <= 0) return;
  if (m % 8 == 0 && vec8_ok({h, gu}))
    swiglu_forward_vec_kernel<<<vec_grid(R, m), 256, 0, ctx.stream>>>(h, gu, R, m);
  else
    swiglu_forward_kernel<<<grid_for(R * m, 256), 256, 0, ctx.stream>>>(h, gu, R, m);
  SL_CUDA_LAUNCHED();
}

void CudaBackend::swiglu_backward(Tensor dgu_t, Tensor dh_t, Tensor gu_t, const RowsShape& shape,
                                  bool accumulate) {
  const int64_t R = shape.R, m = shape.C;
  const char* op = "swiglu_backward";
  const DPtr dgu = dptr(dgu_t, op, "dgu"), dh = dptr(dh_t, op, "dh"), gu = dptr(gu_t, op, "gu");
  const Ctx& ctx = cuda_ctx();
  if (R * m <= 0 || !dgu) return;
  if (m % 8 == 0 && vec8_ok({dgu, dh, gu}))
    swiglu_backward_vec_kernel<<<vec_grid(R, m), 256, 0, ctx.stream>>>(dgu, dh, gu, R, m,
                                                                       accumulate);
  else
    swiglu_backward_kernel<<<grid_for(R * m, 256), 256, 0, ctx.stream>>>(dgu, dh, gu, R, m,
                                                                         accumulate);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
