// Rotary position embedding, HF "default" rope with the rotate_half convention: within each head
// of dim hd, element i pairs with i + hd/2 (i < hd/2) and the pair rotates by the angle
// t * inv_freq_i, inv_freq_i = theta^(-2i/hd), at position t = 0..T-1.
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/common.h"
#include "core/error.h"

namespace sl {
namespace {

// cos/sin tables [T, hd/2]; angles in double (large t * small inv_freq loses bits in float),
// then cast to T.
template <class T>
void rope_tables(std::vector<T>& cs, std::vector<T>& sn, int64_t T_, int64_t hd, double theta) {
  const int64_t half = hd / 2;
  cs.resize(static_cast<size_t>(T_ * half));
  sn.resize(cs.size());
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * double(i) / double(hd));
    for (int64_t t = 0; t < T_; ++t) {
      const double ang = double(t) * inv_freq;
      cs[t * half + i] = T(std::cos(ang));
      sn[t * half + i] = T(std::sin(ang));
    }
  }
}

// Rotates every head of x [B, T, H, hd] in place by +angle (sign = 1) or -angle (sign = -1):
//   x1' = x1 cos - sign x2 sin,   x2' = x2 cos + sign x1 sin   (x1 = x[i], x2 = x[i + hd/2]).
template <class T>
void rope_rotate(T* x, int64_t B, int64_t T_, int64_t H, int64_t hd, double theta, T sign) {
  SL_ASSERT(hd % 2 == 0);
  std::vector<T> cs, sn;
  rope_tables(cs, sn, T_, hd, theta);
  const int64_t half = hd / 2;
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * T_; ++bt) {
    const int64_t t = bt % T_;
    const T* c = cs.data() + t * half;
    const T* s = sn.data() + t * half;
    for (int64_t h = 0; h < H; ++h) {
      T* xh = x + (bt * H + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T x1 = xh[i], x2 = xh[i + half];
        xh[i] = x1 * c[i] - sign * x2 * s[i];
        xh[i + half] = x2 * c[i] + sign * x1 * s[i];
      }
    }
  }
}

}  // namespace

template <class T>
void CpuBackend<T>::rope_forward(Tensor x, const RopeShape& shape) {
  shape.check("rope_forward");
  rope_rotate(x.as<T>(), shape.B, shape.T, shape.H, shape.hd, shape.theta, T(1));
}

// The rotation is orthogonal, so its gradient is the rotation by the opposite angle.
template <class T>
void CpuBackend<T>::rope_backward(Tensor dx, const RopeShape& shape) {
  shape.check("rope_backward");
  rope_rotate(dx.as<T>(), shape.B, shape.T, shape.H, shape.hd, shape.theta, T(-1));
}

SL_CPU_INSTANTIATE(rope_forward);
SL_CPU_INSTANTIATE(rope_backward);

}  // namespace sl
