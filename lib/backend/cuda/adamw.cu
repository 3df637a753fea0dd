// Fused AdamW with decoupled weight decay, one thread per parameter, fp32 math (the moments and
// master weights are fp32 tensors in the model):
//   g' = grad_scale g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ( (m / bc1) / (sqrt(v / bc2) + eps) + wd p ),   bc = 1 - b^t (from the host, in
//   double)
#include "backend/cuda/ops.h"

namespace sl::cuda {
namespace {

__global__ void adamw_kernel(DPtr p, DPtr g, DPtr m, DPtr v, int64_t n, float lr, float b1,
                             float b2, float eps, float wd, float gs, float bc1, float bc2) {
  SL_GRID_STRIDE(i, n) {
    const float gi = g.ld(i) * gs;
    const float mi = b1 * m.ld(i) + (1.f - b1) * gi;
    const float vi = b2 * v.ld(i) + (1.f - b2) * gi * gi;
    m.st(i, mi);
    v.st(i, vi);
    const float pi = p.ld(i);
    p.st(i, pi - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * pi));
  }
}

}  // namespace

void adamw(Ctx& ctx, DPtr p, DPtr g, DPtr m, DPtr v, int64_t n, float lr, float b1, float b2,
           float eps, float wd, float grad_scale, float bc1, float bc2) {
  if (n <= 0) return;
  adamw_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(p, g, m, v, n, lr, b1, b2, eps, wd,
                                                         grad_scale, bc1, bc2);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl::cuda
