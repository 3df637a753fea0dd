#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/gated_deltanet.h"
#include "backend/cpu/ops.h"

namespace sl {
namespace {
// Typed pointer of a possibly-null tensor (a null gradient output means "skip").
template <class T>
T* P(Tensor t) {
  return t.data ? t.as<T>() : nullptr;
}
}  // namespace

template <class T>
Tensor CpuBackend<T>::alloc(int64_t n, DType t) {
  // T for every op's tensors; f64 scalars (step sums) and i32 indices beside them.
  SL_ASSERT(t == kType || t == DType::f64 || t == DType::i32);
  // 64-byte alignment for vectorised loops; calloc-like zero fill.
  size_t bytes = ((static_cast<size_t>(n) * dtype_size(t) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes > 0 ? bytes : 64);
  if (!p) fail("cpu: out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, bytes);
  return Tensor(p, t, n);
}
template <class T>
void CpuBackend<T>::free(Tensor t) {
  std::free(t.data);
}
template <class T>
void CpuBackend<T>::zero(Tensor t) {
  std::memset(t.data, 0, static_cast<size_t>(t.n) * dtype_size(t.dtype));
}
template <class T>
void CpuBackend<T>::upload(Tensor dst, const float* src) {
  T* d = dst.as<T>();
  for (int64_t i = 0; i < dst.n; ++i) d[i] = static_cast<T>(src[i]);
}
template <class T>
void CpuBackend<T>::download(float* dst, Tensor src) {
  const T* s = src.as<T>();
  for (int64_t i = 0; i < src.n; ++i) dst[i] = static_cast<float>(s[i]);
}
template <class T>
void CpuBackend<T>::convert(Tensor dst, Tensor src) {
  SL_ASSERT(dst.n == src.n);
  std::memcpy(dst.as<T>(), src.as<T>(), src.n * sizeof(T));
}

template <class T>
void CpuBackend<T>::axpy(Tensor y, Tensor x, float alpha, int64_t n) {
  T* yp = y.as<T>();
  const T* xp = x.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] += static_cast<T>(alpha) * xp[i];
}
template <class T>
void CpuBackend<T>::copy2d(Tensor dst, int64_t ld_dst, Tensor src, int64_t ld_src, int64_t rows,
                           int64_t cols, bool accumulate) {
  T* d = dst.as<T>();
  const T* s = src.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    T* dr = d + r * ld_dst;
    const T* sr = s + r * ld_src;
    if (accumulate) {
      for (int64_t c = 0; c < cols; ++c) dr[c] += sr[c];
    } else {
      for (int64_t c = 0; c < cols; ++c) dr[c] = sr[c];
    }
  }
}
template <class T>
void CpuBackend<T>::sum_squares(Tensor out, Tensor x, int64_t n) {
  // Fixed-order blocked sum: per-block partials in double, then summed in block order, so the
  // result does not depend on scheduling.
  const T* p = x.as<T>();
  constexpr int64_t kBlock = 1 << 14;
  int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nb, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    double s = 0;
    for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i)
      s += static_cast<double>(p[i]) * p[i];
    part[b] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  out.as<double>()[0] = s;
}
template <class T>
void CpuBackend<T>::scale(Tensor x, float s, int64_t n) {
  T* p = x.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] *= static_cast<T>(s);
}

template <class T>
void CpuBackend<T>::embedding_forward(Tensor out, Tensor index, Tensor wte, int64_t BT, int64_t d) {
  cpu::embedding_forward<T>(out.as<T>(), index.as<int32_t>(), wte.as<T>(), BT, d);
}
template <class T>
void CpuBackend<T>::embedding_backward(Tensor dwte, Tensor index, Tensor dout, int64_t BT,
                                       int64_t d) {
  if (dwte) cpu::embedding_backward<T>(dwte.as<T>(), index.as<int32_t>(), dout.as<T>(), BT, d);
}
template <class T>
void CpuBackend<T>::matmul_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t M, int64_t K,
                                   int64_t N, bool accumulate) {
  cpu::matmul_forward<T>(y.as<T>(), x.as<T>(), ldx, w.as<T>(), M, K, N, accumulate);
}
template <class T>
void CpuBackend<T>::matmul_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx,
                                    Tensor w, int64_t M, int64_t K, int64_t N) {
  cpu::matmul_backward<T>(P<T>(dx), P<T>(dw), dy.as<T>(), x.as<T>(), ldx, w.as<T>(), M, K, N);
}
template <class T>
void CpuBackend<T>::rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, int64_t ldx, Tensor w,
                                    int64_t R, int64_t C, float eps) {
  cpu::rmsnorm_forward<T>(y.as<T>(), rstd.as<T>(), x.as<T>(), ldx, w.as<T>(), R, C,
                          static_cast<T>(eps));
}
template <class T>
void CpuBackend<T>::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx,
                                     Tensor w, Tensor rstd, int64_t R, int64_t C) {
  cpu::rmsnorm_backward<T>(P<T>(dx), P<T>(dw), dy.as<T>(), x.as<T>(), ldx, w.as<T>(), rstd.as<T>(),
                           R, C);
}
template <class T>
void CpuBackend<T>::rope_forward(Tensor x, int64_t B, int64_t T_, int64_t H, int64_t hd,
                                 float theta) {
  cpu::rope_forward<T>(x.as<T>(), B, T_, H, hd, theta);
}
template <class T>
void CpuBackend<T>::rope_backward(Tensor dx, int64_t B, int64_t T_, int64_t H, int64_t hd,
                                  float theta) {
  cpu::rope_backward<T>(dx.as<T>(), B, T_, H, hd, theta);
}
template <class T>
void CpuBackend<T>::attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v,
                                      int64_t ldv, int64_t B, int64_t T_, int64_t H, int64_t hd) {
  cpu::attention_forward<T>(out.as<T>(), lse.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), ldv, B, T_,
                            H, hd);
}
template <class T>
void CpuBackend<T>::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q,
                                       Tensor k, Tensor v, int64_t ldv, Tensor out, Tensor lse,
                                       int64_t B, int64_t T_, int64_t H, int64_t hd) {
  cpu::attention_backward<T>(P<T>(dq), P<T>(dk), P<T>(dv), dout.as<T>(), q.as<T>(), k.as<T>(),
                             v.as<T>(), ldv, out.as<T>(), lse.as<T>(), B, T_, H, hd);
}
template <class T>
void CpuBackend<T>::swiglu_forward(Tensor h, Tensor gu, int64_t R, int64_t m) {
  cpu::swiglu_forward<T>(h.as<T>(), gu.as<T>(), R, m);
}
template <class T>
void CpuBackend<T>::swiglu_backward(Tensor dgu, Tensor dh, Tensor gu, int64_t R, int64_t m) {
  cpu::swiglu_backward<T>(dgu.as<T>(), dh.as<T>(), gu.as<T>(), R, m);
}
template <class T>
void CpuBackend<T>::conv1d_silu_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t B,
                                        int64_t T_, int64_t C, int64_t K) {
  cpu::conv1d_silu_forward<T>(y.as<T>(), x.as<T>(), ldx, w.as<T>(), B, T_, C, K);
}
template <class T>
void CpuBackend<T>::conv1d_silu_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx,
                                         Tensor w, int64_t B, int64_t T_, int64_t C, int64_t K) {
  cpu::conv1d_silu_backward<T>(P<T>(dx), P<T>(dw), dy.as<T>(), x.as<T>(), ldx, w.as<T>(), B, T_, C,
                               K);
}
template <class T>
void CpuBackend<T>::l2norm_forward(Tensor y, Tensor rnorm, Tensor x, int64_t ldx, int64_t BT,
                                   int64_t H, int64_t C, float scale, float eps) {
  cpu::l2norm_forward<T>(y.as<T>(), rnorm.as<T>(), x.as<T>(), ldx, BT, H, C, static_cast<T>(scale),
                         static_cast<T>(eps));
}
template <class T>
void CpuBackend<T>::l2norm_backward(Tensor dx, Tensor dy, Tensor x, int64_t ldx, Tensor rnorm,
                                    int64_t BT, int64_t H, int64_t C, float scale) {
  cpu::l2norm_backward<T>(dx.as<T>(), dy.as<T>(), x.as<T>(), ldx, rnorm.as<T>(), BT, H, C,
                          static_cast<T>(scale));
}
template <class T>
void CpuBackend<T>::gdn_gates_forward(Tensor beta, Tensor g, Tensor b, Tensor a, int64_t ld,
                                      Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
                                      float beta_scale) {
  cpu::gdn_gates_forward<T>(beta.as<T>(), g.as<T>(), b.as<T>(), a.as<T>(), ld, A_log.as<T>(),
                            dt_bias.as<T>(), BT, H, static_cast<T>(beta_scale));
}
template <class T>
void CpuBackend<T>::gdn_gates_backward(Tensor db, Tensor da, Tensor dA_log, Tensor ddt_bias,
                                       Tensor dbeta, Tensor dg, Tensor b, Tensor a, int64_t ld,
                                       Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
                                       float beta_scale) {
  cpu::gdn_gates_backward<T>(P<T>(db), P<T>(da), P<T>(dA_log), P<T>(ddt_bias), dbeta.as<T>(),
                             dg.as<T>(), b.as<T>(), a.as<T>(), ld, A_log.as<T>(), dt_bias.as<T>(),
                             BT, H, static_cast<T>(beta_scale));
}
template <class T>
void CpuBackend<T>::gdn_forward(Tensor out, Tensor states, Tensor q, Tensor k, Tensor v,
                                Tensor beta, Tensor g, int64_t B, int64_t T_, int64_t H, int64_t dk,
                                int64_t dv) {
  auto f = gdn_ == GdnAlgo::chunk ? cpu::gdn_chunk_forward<T> : cpu::gdn_recurrent_forward<T>;
  f(out.as<T>(), states.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), beta.as<T>(), g.as<T>(), B, T_, H,
    dk, dv);
}
template <class T>
void CpuBackend<T>::gdn_backward(Tensor dq, Tensor dk_, Tensor dv_, Tensor dbeta, Tensor dg,
                                 Tensor dout, Tensor states, Tensor q, Tensor k, Tensor v,
                                 Tensor beta, Tensor g, int64_t B, int64_t T_, int64_t H,
                                 int64_t dk, int64_t dv) {
  auto f = gdn_ == GdnAlgo::chunk ? cpu::gdn_chunk_backward<T> : cpu::gdn_recurrent_backward<T>;
  f(dq.as<T>(), dk_.as<T>(), dv_.as<T>(), dbeta.as<T>(), dg.as<T>(), dout.as<T>(), states.as<T>(),
    q.as<T>(), k.as<T>(), v.as<T>(), beta.as<T>(), g.as<T>(), B, T_, H, dk, dv);
}
template <class T>
void CpuBackend<T>::gated_rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor gate, int64_t ldg,
                                          Tensor w, int64_t R, int64_t H, int64_t C, float eps) {
  cpu::gated_rmsnorm_forward<T>(y.as<T>(), rstd.as<T>(), x.as<T>(), gate.as<T>(), ldg, w.as<T>(), R,
                                H, C, static_cast<T>(eps));
}
template <class T>
void CpuBackend<T>::gated_rmsnorm_backward(Tensor dx, Tensor dgate, Tensor dw, Tensor dy, Tensor x,
                                           Tensor gate, int64_t ldg, Tensor w, Tensor rstd,
                                           int64_t R, int64_t H, int64_t C) {
  cpu::gated_rmsnorm_backward<T>(P<T>(dx), P<T>(dgate), P<T>(dw), dy.as<T>(), x.as<T>(),
                                 gate.as<T>(), ldg, w.as<T>(), rstd.as<T>(), R, H, C);
}
template <class T>
void CpuBackend<T>::cross_entropy(Tensor loss_sum, Tensor losses, Tensor dlogits, Tensor logits,
                                  Tensor targets, int64_t BT, int64_t V, Tensor dscale) {
  const T ds = dlogits ? static_cast<T>(static_cast<float>(dscale.as<double>()[0])) : T(0);
  loss_sum.as<double>()[0] += cpu::cross_entropy<T>(losses.as<T>(), P<T>(dlogits), logits.as<T>(),
                                                    targets.as<int32_t>(), BT, V, ds);
}
// The step's scalars decide clipping and skipping once, in double, as the host used to; each
// item is then one call of the elementwise reference (scalars rounded to float, the interface's
// precision, so a step is bitwise what it was with host-side scalars).
template <class T>
void CpuBackend<T>::adamw(Tensor p, Tensor g, Tensor m, Tensor v, Tensor p_compute, Tensor items,
                          int64_t n_items, Tensor step, float b1, float b2, float eps, float wd,
                          float max_norm) {
  const double* st = step.as<double>();
  const double loss = st[kStepLossSum], gsq = st[kStepGradSq];
  if (!std::isfinite(loss) || !std::isfinite(gsq)) return;
  const double gnorm = std::sqrt(gsq);
  const double clip = max_norm > 0 && gnorm > max_norm ? max_norm / gnorm : 1.0;
  const float lr = static_cast<float>(st[kStepLr]);
  const auto t = static_cast<int64_t>(st[kStepT]);
  const int32_t* it = items.as<int32_t>();
  T *pp = p.as<T>(), *mp = m.as<T>(), *vp = v.as<T>();
  const T* gp = g.as<T>();
  for (int64_t i = 0; i < n_items; ++i) {
    const int64_t b = it[3 * i], n = it[3 * i + 1];
    cpu::adamw<T>(pp + b, gp + b, mp + b, vp + b, n, lr, b1, b2, eps, it[3 * i + 2] ? wd : 0.f,
                  static_cast<float>(clip), t);
    // A separate compute copy (one dtype here: a plain copy) gets the updated range too.
    if (p_compute && p_compute.data != p.data) std::copy_n(pp + b, n, p_compute.as<T>() + b);
  }
}

template class CpuBackend<float>;
template class CpuBackend<double>;

}  // namespace sl
