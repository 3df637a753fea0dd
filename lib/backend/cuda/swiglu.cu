// SwiGLU activation: h = silu(gate) * up, gate and up side by side in one row of the fused
// gate|up projection output gu [R, 2m].
#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

__global__ void swiglu_forward_kernel(DPtr h, DPtr gu, int64_t R, int64_t m) {
  SL_GRID_STRIDE(i, R * m) {
    const int64_t r = i / m, c = i % m;
    h.st(i, siluf_(gu.ld(r * 2 * m + c)) * gu.ld(r * 2 * m + m + c));
  }
}

// dgate += dh * up * silu'(gate),  dup += dh * silu(gate)
__global__ void swiglu_backward_kernel(DPtr dgu, DPtr dh, DPtr gu, int64_t R, int64_t m) {
  SL_GRID_STRIDE(i, R * m) {
    const int64_t r = i / m, c = i % m;
    const int64_t og = r * 2 * m + c, ou = og + m;
    const float g = gu.ld(og), u = gu.ld(ou), d = dh.ld(i);
    dgu.add(og, d * u * silu_gradf_(g));
    dgu.add(ou, d * siluf_(g));
  }
}

}  // namespace

void swiglu_forward(Ctx& ctx, DPtr h, DPtr gu, int64_t R, int64_t m) {
  if (R * m <= 0) return;
  swiglu_forward_kernel<<<grid_for(R * m, 256), 256, 0, ctx.stream>>>(h, gu, R, m);
  SL_CUDA_LAUNCHED();
}

void swiglu_backward(Ctx& ctx, DPtr dgu, DPtr dh, DPtr gu, int64_t R, int64_t m) {
  if (R * m <= 0 || !dgu) return;
  swiglu_backward_kernel<<<grid_for(R * m, 256), 256, 0, ctx.stream>>>(dgu, dh, gu, R, m);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl::cuda
