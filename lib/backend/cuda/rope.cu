// Rotary position embedding (HF "default", rotate_half: element i pairs with i + hd/2), in place.
// The cos/sin tables come from the backend, computed on the host in double exactly as the CPU
// reference does (angles t * theta^(-2i/hd) lose bits in fp32 at large t).
#include "backend/cuda/ops.h"

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

void rope(Ctx& ctx, DPtr x, const float* cs, const float* sn, int64_t B, int64_t T, int64_t H,
          int64_t hd, float sign) {
  const int64_t n = B * T * H * (hd / 2);
  if (n <= 0) return;
  rope_kernel<<<grid_for(n, 256), 256, 0, ctx.stream>>>(x, cs, sn, B, T, H, hd, sign);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl::cuda
