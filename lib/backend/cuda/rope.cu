// Rotary position embedding (HF "default", rotate_half: element i pairs with i + hd/2), in place.
// The cos/sin tables come from the backend, computed on the host in double exactly as the CPU
// reference does (angles t * theta^(-2i/hd) lose bits in fp32 at large t).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

// x [B, T, H, hd]; one thread per pair (b, t, h, i), i < hd/2:
//   x1' = x1 cos - sign x2 sin,   x2' = x2 cos + sign x1 sin
__global__ void rope_kernel(DPtr x, const float* cs, const float* sn, int64_t B, int64_t T,
                            int64_t H, int64_t hd, float sign) {
  const int64_t half = hd / 2;
  SL_GRID_STRIDE(p, B * T * H * half) {
    const int64_t i = p % half, bth = p / half;
    const int64_t t = (bth / H) % T;
    const float c = cs[t * half + i], s = sn[t * half + i];
    const int64_t o = bth * hd + i;
    const float x1 = x.ld(o), x2 = x.ld(o + half);
    x.st(o, x1 * c - sign * x2 * s);
    x.st(o + half, x2 * c + sign * x1 * s);
  }
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernel, common.cuh

void CudaBackend::rope_forward(Tensor x, const RopeShape& shape) { rope(x, shape, 1.f); }
// The rotation is orthogonal: its gradient is the rotation by the opposite angle.
void CudaBackend::rope_backward(Tensor dx, const RopeShape& shape) { rope(dx, shape, -1.f); }

void CudaBackend::rope(Tensor x_t, const RopeShape& shape, float sign) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd;
  const float theta = shape.theta;
  const float* cs = rope_table(T, hd, theta);
  const DPtr x = dptr(x_t, "rope", "x");
  const int64_t n = B * T * H * (hd / 2);
  if (n <= 0) return;
  rope_kernel<<<grid_for(n, 256), 256, 0, cuda_ctx().stream>>>(x, cs, cs + T * (hd / 2), B, T, H,
                                                               hd, sign);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
