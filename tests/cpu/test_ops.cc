// CPU reference ops (backend/cpu), through CpuBackend<double> and CpuBackend<float> on host
// vectors: every gradient of every op against central finite differences in double, the
// accumulate (+=) and null-skip conventions, strided layouts, direct references (naive attention,
// the RoPE formula, log-softmax, a hand-computed AdamW step), float against double, and
// thread-count independence of the reductions.
#define BOOST_TEST_MODULE cpu_ops
#include <boost/test/unit_test.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cpu/adamw.h"
#include "backend/cpu/cpu_backend.h"
#include "core/backend.h"
#include "core/error.h"
#include "common/gradcheck.h"

namespace {

namespace cpu = sl::cpu;
using Vec = std::vector<double>;

// The backends under test. They compute on host memory, so an op runs on the test's vectors in
// place, viewed as tensors (view); the interface's scalars are float.
sl::CpuBackend<double> cpu64;
sl::CpuBackend<float> cpu32;

template <class E>
constexpr sl::DType dtype_of() {
  if constexpr (std::is_same_v<E, double>) {
    return sl::DType::f64;
  } else if constexpr (std::is_same_v<E, float>) {
    return sl::DType::f32;
  } else {
    static_assert(std::is_same_v<E, int32_t>);
    return sl::DType::i32;
  }
}
template <class E>
sl::Tensor view(const std::vector<E>& v) {
  return sl::Tensor(const_cast<E*>(v.data()), dtype_of<E>(), static_cast<int64_t>(v.size()));
}

// The embedding ops' index tensor for ids in [0, V) (core/backend.h embedding_index).
std::vector<int32_t> index_of(const std::vector<int32_t>& ids, int64_t V) {
  const auto BT = static_cast<int64_t>(ids.size());
  std::vector<int32_t> index(static_cast<size_t>(sl::embedding_index_size(BT)));
  sl::embedding_index(ids.data(), BT, V, index.data());
  return index;
}

// cross_entropy into a zeroed loss sum, which it returns; dlogits null: no gradient (and dscale
// unread). dscale is the f64 scalar tensor the op reads.
template <class T>
double cross_entropy(sl::CpuBackend<T>& be, std::vector<T>& losses,
                     std::type_identity_t<std::vector<T>>* dlogits, const std::vector<T>& logits,
                     const std::vector<int32_t>& targets, int64_t BT, int64_t V, double dscale) {
  const Vec sum(1, 0.0), ds(1, dscale);
  be.cross_entropy(view(sum), view(losses), dlogits ? view(*dlogits) : sl::Tensor{}, view(logits),
                   view(targets), {.R = BT, .C = V}, view(ds));
  return sum[0];
}

constexpr double kGradTol = 1e-6;

Vec randv(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<float> to_float(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }

// max |a - b| / max |b|
template <class A>
double rel_diff(const A& a, const Vec& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return num / std::max(den, 1e-30);
}

// Asserts rel_diff(a, b) < tol and logs the value (shown with --log_level=message).
template <class A>
void expect_close(const std::string& what, const A& a, const Vec& b, double tol) {
  const double e = rel_diff(a, b);
  BOOST_TEST_MESSAGE(what << ": rel diff " << e);
  BOOST_TEST(e < tol, what << ": rel diff " << e);
}

// One differentiable input x of an op and the buffer its backward writes d loss / d x into.
struct Grad {
  std::string name;
  Vec* x;
  Vec* dx;
};

// Checks every gradient of an op against central differences of `loss` (which runs the forward
// from the current inputs and returns sum(outputs * R)). `backward` runs the forward then the
// backward with upstream gradient R. When `accumulates`, the gradient buffers are pre-filled
// with random values that backward must add to (analytic = after - before); padding of strided
// inputs is included, so it must get zero gradient and stay untouched. Returns the worst error.
double check_grads(const std::string& op, const std::vector<Grad>& grads,
                   const std::function<double()>& loss, const std::function<void()>& backward,
                   bool accumulates = true) {
  std::vector<Vec> before;
  uint64_t seed = 1000;
  for (const Grad& g : grads) {
    *g.dx = accumulates ? randv(g.x->size(), seed++, -3, 3) : Vec(g.x->size(), 0.0);
    before.push_back(*g.dx);
  }
  backward();
  double worst = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Grad& g = grads[i];
    Vec analytic(g.x->size());
    for (size_t j = 0; j < analytic.size(); ++j) analytic[j] = (*g.dx)[j] - before[i][j];
    const Vec x0 = *g.x;
    auto f = [&](const Vec& xs) {
      *g.x = xs;
      return loss();
    };
    const auto r = sl::test::gradcheck_detail(f, x0, analytic);
    *g.x = x0;
    BOOST_TEST_MESSAGE(op << " d" << g.name << ": rel err " << r.rel_err << " (max |grad| "
                          << r.max_ref << ")");
    BOOST_TEST(r.rel_err < kGradTol,
               op << " d" << g.name << " rel err " << r.rel_err << " worst index " << r.worst);
    BOOST_TEST(r.max_ref > 0.0, op << " d" << g.name << " is identically zero");
    worst = std::max(worst, r.rel_err);
  }
  return worst;
}

// Naive O(T^2) causal attention in double: out [B, T, H, hd], lse [B, H, T].
void naive_attention(Vec& out, Vec& lse, const Vec& q, const Vec& k, const Vec& v, int64_t ldv,
                     int64_t B, int64_t T, int64_t H, int64_t hd) {
  const int64_t ld = H * hd;
  out.assign(static_cast<size_t>(B * T * ld), 0.0);
  lse.assign(static_cast<size_t>(B * H * T), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        Vec s(static_cast<size_t>(t + 1));
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= t; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < hd; ++c) {
            acc += q[(b * T + t) * ld + h * hd + c] * k[(b * T + j) * ld + h * hd + c];
          }
          s[j] = acc / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (double x : s) z += std::exp(x - mx);
        lse[(b * H + h) * T + t] = mx + std::log(z);
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(s[j] - mx) / z;
          for (int64_t c = 0; c < hd; ++c) {
            out[(b * T + t) * ld + h * hd + c] += p * v[(b * T + j) * ldv + h * hd + c];
          }
        }
      }
    }
  }
}

}  // namespace

// ---- embedding --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(embedding_gradcheck_fp64) {
  const int64_t V = 7, d = 5, BT = 9;
  const std::vector<int32_t> ids = {3, 0, 6, 3, 3, 1, 6, 2, 0};  // repeats must add up
  Vec wte = randv(V * d, 1), R = randv(BT * d, 2), out(BT * d), dwte;
  const std::vector<int32_t> index = index_of(ids, V);
  auto loss = [&] {
    cpu64.embedding_forward(view(out), view(index), view(wte), {.R = BT, .C = d});
    return dot(out, R);
  };
  auto bwd = [&] { cpu64.embedding_backward(view(dwte), view(index), view(R), {.R = BT, .C = d}); };
  check_grads("embedding", {{"wte", &wte, &dwte}}, loss, bwd);
  loss();
  for (int64_t t = 0; t < BT; ++t) {
    for (int64_t c = 0; c < d; ++c) BOOST_TEST(out[t * d + c] == wte[ids[t] * d + c]);
  }
}

// ---- matmul -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(matmul_gradcheck_strided_fp64) {
  // x and dx at row stride ldx; y and dy contiguous (ldy 0) and at a padded stride ldy 6 (y's
  // padding is never written, so it stays 0 and adds nothing to the loss).
  for (int64_t ldy : {0, 6}) {
    const int64_t M = 5, K = 7, N = 4, ldx = 9, ly = ldy ? ldy : N;
    Vec x = randv(M * ldx, 3), w = randv(N * K, 4), R = randv(M * ly, 5), y(M * ly), dx, dw;
    auto loss = [&] {
      cpu64.matmul_forward(view(y), view(x), view(w),
                           {.M = M, .K = K, .N = N, .ldx = ldx, .ldy = ldy}, false);
      return dot(y, R);
    };
    auto bwd = [&] {
      cpu64.matmul_backward(view(dx), view(dw), view(R), view(x), view(w),
                            {.M = M, .K = K, .N = N, .ldx = ldx, .ldy = ldy}, true);
    };
    check_grads(ldy ? "matmul ldy" : "matmul", {{"x", &x, &dx}, {"w", &w, &dw}}, loss, bwd);
    if (ldy)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = N; j < ldy; ++j) BOOST_TEST(y[i * ldy + j] == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(matmul_forward_matches_naive_and_accumulates_fp64) {
  const int64_t M = 6, K = 5, N = 3, ldx = 8;
  Vec x = randv(M * ldx, 6), w = randv(N * K, 7), y0 = randv(M * N, 8);
  Vec y = y0, yacc = y0;
  cpu64.matmul_forward(view(y), view(x), view(w), {.M = M, .K = K, .N = N, .ldx = ldx}, false);
  cpu64.matmul_forward(view(yacc), view(x), view(w), {.M = M, .K = K, .N = N, .ldx = ldx}, true);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0;
      for (int64_t c = 0; c < K; ++c) ref += x[i * ldx + c] * w[j * K + c];
      BOOST_TEST(std::abs(y[i * N + j] - ref) < 1e-14);
      BOOST_TEST(std::abs(yacc[i * N + j] - (y0[i * N + j] + ref)) < 1e-14);
    }
  }
}

// ---- RMSNorm ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(rmsnorm_gradcheck_strided_fp64) {
  const int64_t R_ = 6, C = 11, ldx = 13;
  Vec x = randv(R_ * ldx, 9), w = randv(C, 10, 0.5, 1.5), R = randv(R_ * C, 11);
  Vec y(R_ * C), rstd(R_), dx, dw;
  auto loss = [&] {
    cpu64.rmsnorm_forward(view(y), view(rstd), view(x), view(w), {.R = R_, .C = C, .ldx = ldx},
                          1e-6, sl::Tensor{}, sl::Tensor{});
    return dot(y, R);
  };
  auto bwd = [&] {
    loss();
    cpu64.rmsnorm_backward(view(dx), view(dw), view(R), view(x), view(w), view(rstd),
                           {.R = R_, .C = C, .ldx = ldx}, true);
  };
  check_grads("rmsnorm", {{"x", &x, &dx}, {"w", &w, &dw}}, loss, bwd);
}

BOOST_AUTO_TEST_CASE(rmsnorm_forward_matches_formula_fp64) {
  const int64_t R_ = 3, C = 5;
  const float eps = 1e-6f;  // a float, as the op gets it: the reference uses the same value
  Vec x = randv(R_ * C, 12), w = randv(C, 13), y(R_ * C), rstd(R_);
  cpu64.rmsnorm_forward(view(y), view(rstd), view(x), view(w), {.R = R_, .C = C, .ldx = C}, eps,
                        sl::Tensor{}, sl::Tensor{});
  for (int64_t r = 0; r < R_; ++r) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += x[r * C + c] * x[r * C + c] / C;
    for (int64_t c = 0; c < C; ++c) {
      BOOST_TEST(std::abs(y[r * C + c] - w[c] * x[r * C + c] / std::sqrt(ms + eps)) < 1e-14);
    }
  }
}

// ---- RoPE -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(rope_gradcheck_fp64) {
  const int64_t B = 2, T = 5, H = 3, hd = 8;
  const double theta = 500000;
  const int64_t n = B * T * H * hd;
  Vec x = randv(n, 14), R = randv(n, 15), y, dx;
  auto loss = [&] {
    y = x;
    cpu64.rope_forward(view(y), {.B = B, .T = T, .H = H, .hd = hd, .theta = float(theta)});
    return dot(y, R);
  };
  // rope_backward transforms dy in place into dx (not an accumulating op).
  auto bwd = [&] {
    dx = R;
    cpu64.rope_backward(view(dx), {.B = B, .T = T, .H = H, .hd = hd, .theta = float(theta)});
  };
  check_grads("rope", {{"x", &x, &dx}}, loss, bwd, false);
}

// QK-norm + RoPE (one op): every gradient by differences, from a strided fused-projection row.
BOOST_AUTO_TEST_CASE(rmsnorm_rope_gradcheck_strided_fp64) {
  const int64_t B = 2, T = 3, H = 2, hd = 6, C = H * hd, ldx = 3 * C, R_ = B * T;
  const double theta = 10000;
  Vec x = randv(R_ * ldx, 61), w = randv(C, 62, 0.5, 1.5), R = randv(R_ * C, 63);
  Vec y(R_ * C), rstd(R_), dx, dw;
  auto loss = [&] {
    cpu64.rmsnorm_rope_forward(
        view(y), view(rstd), view(x), view(w),
        {.B = B, .T = T, .H = H, .hd = hd, .ldx = ldx, .theta = float(theta)}, 1e-6);
    return dot(y, R);
  };
  auto bwd = [&] {
    loss();
    const Vec R0 = R;
    cpu64.rmsnorm_rope_backward(
        view(dx), view(dw), view(R), view(x), view(w), view(rstd),
        {.B = B, .T = T, .H = H, .hd = hd, .ldx = ldx, .theta = float(theta)}, true);
    BOOST_TEST(R == R0);  // dy is not modified
  };
  check_grads("rmsnorm_rope", {{"x", &x, &dx}, {"w", &w, &dw}}, loss, bwd);
}

BOOST_AUTO_TEST_CASE(rope_matches_formula_fp64) {
  const int64_t B = 1, T = 40, H = 2, hd = 6;
  const double theta = 10000;
  Vec x = randv(B * T * H * hd, 16), y = x;
  cpu64.rope_forward(view(y), {.B = B, .T = T, .H = H, .hd = hd, .theta = theta});
  for (int64_t t : {0, 1, 37}) {
    for (int64_t h = 0; h < H; ++h) {
      const double* xh = x.data() + (t * H + h) * hd;
      const double* yh = y.data() + (t * H + h) * hd;
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double ang = double(t) / std::pow(theta, 2.0 * double(i) / double(hd));
        const double e1 = xh[i] * std::cos(ang) - xh[i + hd / 2] * std::sin(ang);
        const double e2 = xh[i + hd / 2] * std::cos(ang) + xh[i] * std::sin(ang);
        BOOST_TEST(std::abs(yh[i] - e1) < 1e-14);
        BOOST_TEST(std::abs(yh[i + hd / 2] - e2) < 1e-14);
      }
    }
  }
  // Position 0 is the identity.
  for (int64_t c = 0; c < H * hd; ++c) BOOST_TEST(y[c] == x[c]);
  // Backward undoes forward (the rotation is orthogonal).
  cpu64.rope_backward(view(y), {.B = B, .T = T, .H = H, .hd = hd, .theta = theta});
  BOOST_TEST(rel_diff(y, x) < 1e-14);
}

// ---- attention --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(attention_matches_naive_fp64) {
  // T > 64 crosses a query-block boundary of the implementation.
  const int64_t B = 2, T = 70, H = 3, hd = 5, ldv = H * hd + 4;
  Vec q = randv(B * T * H * hd, 17, -2, 2), k = randv(B * T * H * hd, 18, -2, 2);
  Vec v = randv(B * T * ldv, 19);
  Vec out(B * T * H * hd), lse(B * H * T), ref_out, ref_lse;
  cpu64.attention_forward(view(out), view(lse), view(q), view(k), view(v),
                          {.B = B, .T = T, .H = H, .hd = hd, .ldv = ldv});
  naive_attention(ref_out, ref_lse, q, k, v, ldv, B, T, H, hd);
  BOOST_TEST(rel_diff(out, ref_out) < 1e-13);
  BOOST_TEST(rel_diff(lse, ref_lse) < 1e-13);
}

BOOST_AUTO_TEST_CASE(attention_gradcheck_strided_fp64) {
  const int64_t B = 2, T = 67, H = 2, hd = 4, ldv = H * hd + 3;
  Vec q = randv(B * T * H * hd, 20, -2, 2), k = randv(B * T * H * hd, 21, -2, 2);
  Vec v = randv(B * T * ldv, 22), R = randv(B * T * H * hd, 23);
  Vec out(B * T * H * hd), lse(B * H * T), dq, dk, dv;
  auto loss = [&] {
    cpu64.attention_forward(view(out), view(lse), view(q), view(k), view(v),
                            {.B = B, .T = T, .H = H, .hd = hd, .ldv = ldv});
    return dot(out, R);
  };
  auto bwd = [&] {
    loss();
    cpu64.attention_backward(view(dq), view(dk), view(dv), view(R), view(q), view(k), view(v),
                             view(out), view(lse), {.B = B, .T = T, .H = H, .hd = hd, .ldv = ldv},
                             true);
  };
  check_grads("attention", {{"q", &q, &dq}, {"k", &k, &dk}, {"v", &v, &dv}}, loss, bwd);
}

// ---- SwiGLU -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(swiglu_gradcheck_fp64) {
  const int64_t R_ = 5, m = 7;
  Vec gu = randv(R_ * 2 * m, 24, -4, 4), R = randv(R_ * m, 25), h(R_ * m), dgu;
  auto loss = [&] {
    cpu64.swiglu_forward(view(h), view(gu), {.R = R_, .C = m});
    return dot(h, R);
  };
  auto bwd = [&] { cpu64.swiglu_backward(view(dgu), view(R), view(gu), {.R = R_, .C = m}, true); };
  check_grads("swiglu", {{"gu", &gu, &dgu}}, loss, bwd);
  loss();
  const double g = gu[2], u = gu[m + 2];
  BOOST_TEST(std::abs(h[2] - g / (1 + std::exp(-g)) * u) < 1e-15);
}

// ---- conv1d + SiLU ----------------------------------------------------------------------------

namespace {

void conv1d_check(int64_t B, int64_t T, int64_t C, int64_t K, int64_t ldx, uint64_t seed) {
  Vec x = randv(B * T * ldx, seed, -2, 2), w = randv(C * K, seed + 1);
  Vec R = randv(B * T * C, seed + 2), y(B * T * C), dx, dw;
  auto loss = [&] {
    cpu64.conv1d_silu_forward(view(y), view(x), view(w),
                              {.B = B, .T = T, .C = C, .K = K, .ldx = ldx});
    return dot(y, R);
  };
  auto bwd = [&] {
    cpu64.conv1d_silu_backward(view(dx), view(dw), view(R), view(x), view(w),
                               {.B = B, .T = T, .C = C, .K = K, .ldx = ldx}, true);
  };
  check_grads("conv1d_silu T=" + std::to_string(T), {{"x", &x, &dx}, {"w", &w, &dw}}, loss, bwd);
  // Direct formula at the last token of the last sequence, channel 1.
  loss();
  const int64_t b = B - 1, t = T - 1, c = 1;
  double z = 0;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t s = t - K + 1 + j;
    if (s >= 0) z += w[c * K + j] * x[(b * T + s) * ldx + c];
  }
  BOOST_TEST(std::abs(y[(b * T + t) * C + c] - z / (1 + std::exp(-z))) < 1e-14);
}

}  // namespace

BOOST_AUTO_TEST_CASE(conv1d_silu_gradcheck_strided_fp64) {
  conv1d_check(2, 9, 5, 4, 8, 26);
  conv1d_check(3, 2, 3, 4, 3, 29);  // T < K: only the zero-padded left edge
}

// ---- L2 norm ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(l2norm_gradcheck_strided_fp64) {
  const int64_t BT = 5, H = 3, C = 4, ldx = H * C + 2;
  const float scale = 0.5f, eps = 1e-6f;  // floats, as the op gets them
  Vec x = randv(BT * ldx, 32), R = randv(BT * H * C, 33), y(BT * H * C), rnorm(BT * H), dx;
  auto loss = [&] {
    cpu64.l2norm_forward(view(y), view(rnorm), view(x),
                         {.BT = BT, .H = H, .C = C, .ldx = ldx, .scale = scale}, eps);
    return dot(y, R);
  };
  auto bwd = [&] {
    loss();
    cpu64.l2norm_backward(view(dx), view(R), view(x), view(rnorm),
                          {.BT = BT, .H = H, .C = C, .ldx = ldx, .scale = scale}, true);
  };
  check_grads("l2norm", {{"x", &x, &dx}}, loss, bwd);
  loss();
  double ss = 0;  // token 2, head 1
  for (int64_t c = 0; c < C; ++c) ss += x[2 * ldx + C + c] * x[2 * ldx + C + c];
  BOOST_TEST(std::abs(y[(2 * H + 1) * C] - scale * x[2 * ldx + C] / std::sqrt(ss + eps)) < 1e-15);
}

// ---- GDN gates --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(gdn_gates_gradcheck_strided_fp64) {
  const int64_t BT = 6, H = 3, ld = 7;
  const double beta_scale = 2;
  Vec b = randv(BT * ld, 34, -3, 3), a = randv(BT * ld, 35, -3, 3);
  Vec A_log = randv(H, 36, -1, 2.7), dt_bias = randv(H, 37, -5, 1);
  Vec R1 = randv(BT * H, 38), R2 = randv(BT * H, 39);
  Vec beta(BT * H), g(BT * H), db, da, dA_log, ddt_bias;
  auto loss = [&] {
    cpu64.gdn_gates_forward(view(beta), view(g), view(b), view(a), view(A_log), view(dt_bias),
                            {.BT = BT, .H = H, .ld = ld, .beta_scale = float(beta_scale)});
    return dot(beta, R1) + dot(g, R2);
  };
  auto bwd = [&] {
    cpu64.gdn_gates_backward(view(db), view(da), view(dA_log), view(ddt_bias), view(R1), view(R2),
                             view(b), view(a), view(A_log), view(dt_bias),
                             {.BT = BT, .H = H, .ld = ld, .beta_scale = float(beta_scale)}, true);
  };
  check_grads("gdn_gates",
              {{"b", &b, &db},
               {"a", &a, &da},
               {"A_log", &A_log, &dA_log},
               {"dt_bias", &dt_bias, &ddt_bias}},
              loss, bwd);
  loss();
  const double z = a[ld + 2] + dt_bias[2];
  BOOST_TEST(std::abs(g[H + 2] + std::exp(A_log[2]) * std::log1p(std::exp(z))) < 1e-14);
  BOOST_TEST(std::abs(beta[H + 2] - beta_scale / (1 + std::exp(-b[ld + 2]))) < 1e-15);
}

// ---- gated RMSNorm ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(gated_rmsnorm_gradcheck_strided_fp64) {
  const int64_t BT = 4, H = 3, C = 5, R_ = BT * H, ldg = H * C + 2;
  Vec x = randv(R_ * C, 40), gate = randv(BT * ldg, 41, -3, 3), w = randv(C, 42, 0.5, 1.5);
  Vec R = randv(R_ * C, 43), y(R_ * C), rstd(R_), dx, dgate, dw;
  auto loss = [&] {
    cpu64.gated_rmsnorm_forward(view(y), view(rstd), view(x), view(gate), view(w),
                                {.R = R_, .H = H, .C = C, .ldg = ldg}, 1e-5);
    return dot(y, R);
  };
  auto bwd = [&] {
    loss();
    cpu64.gated_rmsnorm_backward(view(dx), view(dgate), view(dw), view(R), view(x), view(gate),
                                 view(w), view(rstd), {.R = R_, .H = H, .C = C, .ldg = ldg}, true);
  };
  check_grads("gated_rmsnorm", {{"x", &x, &dx}, {"gate", &gate, &dgate}, {"w", &w, &dw}}, loss,
              bwd);
}

// ---- the GDN block's ops with accumulate = false ---------------------------------------------

namespace {

// An op's activation gradients written (accumulate false) against accumulated into zeros: the
// same values where it writes, and outside its [rows, cols] nothing touched (poisoned NaN stays
// NaN); `written` is how many elements each of `outs` must get. run(acc) runs the op on the
// current contents of outs (parameter gradients go to buffers of its own).
void check_write_mode(const std::string& op, const std::vector<Vec*>& outs,
                      const std::vector<size_t>& written, const std::function<void(bool)>& run) {
  for (Vec* o : outs) std::fill(o->begin(), o->end(), 0.0);
  run(true);
  std::vector<Vec> acc;
  for (Vec* o : outs) acc.push_back(*o);
  for (Vec* o : outs) std::fill(o->begin(), o->end(), std::numeric_limits<double>::quiet_NaN());
  run(false);
  for (size_t k = 0; k < outs.size(); ++k) {
    size_t n = 0, differ = 0;
    for (size_t i = 0; i < outs[k]->size(); ++i) {
      const double w = (*outs[k])[i];
      if (std::isnan(w)) {
        if (acc[k][i] != 0.0) ++differ;  // written by accumulation, not by the write
      } else {
        ++n;
        if (w != acc[k][i]) ++differ;
      }
    }
    BOOST_TEST(n == written[k],
               op << " output " << k << ": " << n << " elements written, not " << written[k]);
    BOOST_TEST(differ == 0u, op << " output " << k << ": " << differ << " elements differ");
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(gdn_block_ops_write_what_they_would_accumulate_fp64) {
  {  // conv1d: dx [B, T, C] ld ldx
    const int64_t B = 2, T = 9, C = 5, K = 4, ldx = 7;
    Vec x = randv(B * T * ldx, 60), w = randv(C * K, 61), dy = randv(B * T * C, 62);
    Vec dx(B * T * ldx), dw(C * K);
    check_write_mode("conv1d_silu_backward", {&dx}, {size_t(B * T * C)}, [&](bool acc) {
      cpu64.conv1d_silu_backward(view(dx), view(dw), view(dy), view(x), view(w),
                                 {.B = B, .T = T, .C = C, .K = K, .ldx = ldx}, acc);
    });
  }
  {  // l2norm: dx [BT, H, C] token stride ldx (the model's q inside the conv output)
    const int64_t BT = 5, H = 3, C = 4, ldx = 2 * H * C + 3;
    Vec x = randv(BT * ldx, 63), dy = randv(BT * H * C, 64), y(BT * H * C), rn(BT * H);
    Vec dx(BT * ldx);
    const sl::L2NormShape sh{.BT = BT, .H = H, .C = C, .ldx = ldx, .scale = 0.5f};
    cpu64.l2norm_forward(view(y), view(rn), view(x), sh, 1e-6f);
    check_write_mode("l2norm_backward", {&dx}, {size_t(BT * H * C)}, [&](bool acc) {
      cpu64.l2norm_backward(view(dx), view(dy), view(x), view(rn), sh, acc);
    });
  }
  {  // gates: db | da, columns [0, H) and [H, 2H) of rows of ld
    const int64_t BT = 6, H = 3, ld = 2 * H + 1;
    Vec ba = randv(BT * ld, 65, -3, 3), A_log = randv(H, 66), dt_bias = randv(H, 67);
    Vec dbeta = randv(BT * H, 68), dg = randv(BT * H, 69), dba(BT * ld), dA(H), ddt(H);
    check_write_mode("gdn_gates_backward", {&dba}, {size_t(BT * 2 * H)}, [&](bool acc) {
      cpu64.gdn_gates_backward(view(dba), view(dba).at(H), view(dA), view(ddt), view(dbeta),
                               view(dg), view(ba), view(ba).at(H), view(A_log), view(dt_bias),
                               {.BT = BT, .H = H, .ld = ld, .beta_scale = 2.f}, acc);
    });
  }
  {  // gated RMSNorm: dx [R, C], dgate inside [BT, H C] ld ldg
    const int64_t BT = 4, H = 3, C = 5, R_ = BT * H, ldg = H * C + 2;
    Vec x = randv(R_ * C, 70), gate = randv(BT * ldg, 71, -3, 3), w = randv(C, 72, 0.5, 1.5);
    Vec dy = randv(R_ * C, 73), y(R_ * C), rstd(R_), dx(R_ * C), dgate(BT * ldg), dw(C);
    const sl::GatedNormShape sh{.R = R_, .H = H, .C = C, .ldg = ldg};
    cpu64.gated_rmsnorm_forward(view(y), view(rstd), view(x), view(gate), view(w), sh, 1e-5f);
    check_write_mode(
        "gated_rmsnorm_backward", {&dx, &dgate}, {size_t(R_ * C), size_t(R_ * C)}, [&](bool acc) {
          cpu64.gated_rmsnorm_backward(view(dx), view(dgate), view(dw), view(dy), view(x),
                                       view(gate), view(w), view(rstd), sh, acc);
        });
  }
  {  // gated delta rule: dq, dk, dv, dbeta, dg contiguous, two chunks
    const int64_t B = 1, T = 70, H = 2, dk = 4, dv = 6, n = B * T * H;
    const sl::GdnShape sh{.B = B, .T = T, .H = H, .key_dim = dk, .value_dim = dv};
    Vec q = randv(n * dk, 74, -0.5, 0.5), k = randv(n * dk, 75, -0.5, 0.5), v = randv(n * dv, 76);
    Vec beta = randv(n, 77, 0, 1), g = randv(n, 78, -0.3, 0), out(n * dv), dout = randv(n * dv, 79);
    Vec states(B * H * sl::gdn_num_chunks(T) * dk * dv);
    Vec dq(n * dk), dkk(n * dk), dvv(n * dv), dbeta(n), dg(n);
    cpu64.gdn_forward(view(out), view(states), view(q), view(k), view(v), view(beta), view(g), sh);
    check_write_mode("gdn_backward", {&dq, &dkk, &dvv, &dbeta, &dg},
                     {dq.size(), dkk.size(), dvv.size(), dbeta.size(), dg.size()}, [&](bool acc) {
                       cpu64.gdn_backward(view(dq), view(dkk), view(dvv), view(dbeta), view(dg),
                                          view(dout), view(states), view(q), view(k), view(v),
                                          view(beta), view(g), sh, acc);
                     });
  }
}

// ---- cross-entropy ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cross_entropy_gradcheck_fp64) {
  const int64_t BT = 7, V = 11;
  const float dscale = 0.7f;  // a float, as the op rounds it: the loss uses the same value
  const std::vector<int32_t> targets = {3, -1, 0, 10, -100, 5, 5};
  Vec logits = randv(BT * V, 44, -3, 3), losses(BT), dlogits;
  auto loss = [&] {
    return dscale * cross_entropy(cpu64, losses, nullptr, logits, targets, BT, V, 1.0);
  };
  auto bwd = [&] { cross_entropy(cpu64, losses, &dlogits, logits, targets, BT, V, dscale); };
  // dlogits is written, not accumulated (so the LM head can compute it in place).
  check_grads("cross_entropy", {{"logits", &logits, &dlogits}}, loss, bwd, /*accumulates=*/false);
}

BOOST_AUTO_TEST_CASE(cross_entropy_ignored_targets_and_stability_fp64) {
  const int64_t BT = 4, V = 6;
  const std::vector<int32_t> targets = {2, -1, 5, -7};
  Vec logits = randv(BT * V, 45, -2, 2);
  for (int64_t i = 0; i < V; ++i) logits[2 * V + i] += 1000;  // would overflow a naive exp
  Vec losses(BT, 123.0), dlogits = randv(BT * V, 46);         // poisoned: the op writes every row
  const double sum = cross_entropy(cpu64, losses, &dlogits, logits, targets, BT, V, 1.0);
  double ref_sum = 0;
  for (int64_t t = 0; t < BT; ++t) {
    if (targets[t] < 0) {
      BOOST_TEST(losses[t] == 0.0);
      for (int64_t i = 0; i < V; ++i) BOOST_TEST(dlogits[t * V + i] == 0.0);  // written, not added
      continue;
    }
    const double mx = *std::max_element(logits.begin() + t * V, logits.begin() + (t + 1) * V);
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += std::exp(logits[t * V + i] - mx);
    const double ref = mx + std::log(z) - logits[t * V + targets[t]];
    BOOST_TEST(std::isfinite(losses[t]));
    BOOST_TEST(std::abs(losses[t] - ref) < 1e-12);
    ref_sum += ref;
    double gsum = 0;  // softmax - onehot sums to zero
    for (int64_t i = 0; i < V; ++i) gsum += dlogits[t * V + i];
    BOOST_TEST(std::abs(gsum) < 1e-12);
  }
  BOOST_TEST(std::abs(sum - ref_sum) < 1e-12);
  // In place (dlogits = logits, as the LM head uses it): the same gradient and sum.
  Vec inplace = logits, losses2(BT);
  const double sum2 = cross_entropy(cpu64, losses2, &inplace, inplace, targets, BT, V, 1.0);
  BOOST_TEST(sum2 == sum);
  for (int64_t i = 0; i < BT * V; ++i) BOOST_TEST(inplace[i] == dlogits[i]);
}

// ---- AdamW ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(adamw_matches_hand_computed_fp64) {
  // Step 1 from zero moments: g' = 2 * 0.5 = 1, m = 0.1, v = 0.001, m^ = v^ = 1, so
  // p = 1 - 0.1 * (1 / (1 + 1e-8) + 0.01 * 1).
  Vec p = {1.0, -2.0}, g = {0.5, 0.0}, m = {0.0, 0.0}, v = {0.0, 0.0};
  cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), 2, 0.1, 0.9, 0.999, 1e-8, 0.01, 2.0, 1);
  BOOST_TEST(std::abs(m[0] - 0.1) < 1e-16);
  BOOST_TEST(std::abs(v[0] - 0.001) < 1e-18);
  BOOST_TEST(std::abs(p[0] - (1.0 - 0.1 * (1.0 / (1.0 + 1e-8) + 0.01))) < 1e-15);
  BOOST_TEST(std::abs(p[1] - (-2.0 + 0.1 * 0.01 * 2.0)) < 1e-15);  // zero grad: decay only
  // Step 2 with g = -0.25 (g' = -0.5): m = 0.09 - 0.05 = 0.04, v = 0.000999 + 0.00025,
  // m^ = 0.04 / 0.19, v^ = 0.001249 / (1 - 0.999^2).
  const double p1 = p[0];
  g = {-0.25, 0.0};
  cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), 2, 0.1, 0.9, 0.999, 1e-8, 0.01, 2.0, 2);
  const double mh = 0.04 / 0.19, vh = 0.001249 / (1 - 0.998001);
  BOOST_TEST(std::abs(m[0] - 0.04) < 1e-15);
  BOOST_TEST(std::abs(v[0] - 0.001249) < 1e-15);
  BOOST_TEST(std::abs(p[0] - (p1 - 0.1 * (mh / (std::sqrt(vh) + 1e-8) + 0.01 * p1))) < 1e-14);
}

BOOST_AUTO_TEST_CASE(adamw_fp32_close_to_fp64) {
  const int64_t n = 1000;
  Vec p = randv(n, 47), g = randv(n, 48), m = randv(n, 49, -0.1, 0.1), v = randv(n, 50, 0, 0.01);
  auto pf = to_float(p), gf = to_float(g), mf = to_float(m), vf = to_float(v);
  cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5, 7);
  cpu::adamw_update(pf.data(), gf.data(), mf.data(), vf.data(), n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5,
                    7);
  BOOST_TEST(rel_diff(pf, p) < 1e-6);
  BOOST_TEST(rel_diff(mf, m) < 1e-6);
  BOOST_TEST(rel_diff(vf, v) < 1e-6);
}

// ---- conventions ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(null_gradients_are_skipped_fp64) {
  // rmsnorm: dx alone, dw alone, both: each result equals the joint one.
  const int64_t R_ = 4, C = 6;
  Vec x = randv(R_ * C, 51), w = randv(C, 52), dy = randv(R_ * C, 53), y(R_ * C), rstd(R_);
  cpu64.rmsnorm_forward(view(y), view(rstd), view(x), view(w), {.R = R_, .C = C, .ldx = C}, 1e-6,
                        sl::Tensor{}, sl::Tensor{});
  Vec dx(R_ * C), dw(C), dx1(R_ * C), dw1(C);
  cpu64.rmsnorm_backward(view(dx), view(dw), view(dy), view(x), view(w), view(rstd),
                         {.R = R_, .C = C, .ldx = C}, true);
  cpu64.rmsnorm_backward(view(dx1), sl::Tensor{}, view(dy), view(x), view(w), view(rstd),
                         {.R = R_, .C = C, .ldx = C}, true);
  cpu64.rmsnorm_backward(sl::Tensor{}, view(dw1), view(dy), view(x), view(w), view(rstd),
                         {.R = R_, .C = C, .ldx = C}, true);
  BOOST_TEST(dx == dx1);
  BOOST_TEST(dw == dw1);
  // matmul: dw only.
  const int64_t M = 3, K = 4, N = 5;
  Vec xm = randv(M * K, 54), wm = randv(N * K, 55), dym = randv(M * N, 56), dwm(N * K), dwm1(N * K);
  Vec dxm(M * K);
  cpu64.matmul_backward(view(dxm), view(dwm), view(dym), view(xm), view(wm),
                        {.M = M, .K = K, .N = N, .ldx = K}, true);
  cpu64.matmul_backward(sl::Tensor{}, view(dwm1), view(dym), view(xm), view(wm),
                        {.M = M, .K = K, .N = N, .ldx = K}, true);
  BOOST_TEST(dwm == dwm1);
  // attention: dv only and dq only.
  const int64_t B = 1, T = 9, H = 2, hd = 3, n = B * T * H * hd;
  Vec q = randv(n, 57), k = randv(n, 58), v = randv(n, 59), o(n), lse(B * H * T), dO = randv(n, 60);
  cpu64.attention_forward(view(o), view(lse), view(q), view(k), view(v),
                          {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd});
  Vec dq(n), dk(n), dv(n), dq1(n), dv1(n);
  cpu64.attention_backward(view(dq), view(dk), view(dv), view(dO), view(q), view(k), view(v),
                           view(o), view(lse), {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd},
                           true);
  cpu64.attention_backward(sl::Tensor{}, sl::Tensor{}, view(dv1), view(dO), view(q), view(k),
                           view(v), view(o), view(lse),
                           {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd}, true);
  cpu64.attention_backward(view(dq1), sl::Tensor{}, sl::Tensor{}, view(dO), view(q), view(k),
                           view(v), view(o), view(lse),
                           {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd}, true);
  BOOST_TEST(dv == dv1);
  BOOST_TEST(dq == dq1);
}

// The post-norm residual add fused into the forward: y = res + rms(x) w, y_copy = y. Its
// gradient is the identity towards res (nothing to check by differences) and rmsnorm's towards
// x and w (rmsnorm_gradcheck_strided_fp64).
BOOST_AUTO_TEST_CASE(rmsnorm_forward_adds_the_residual_and_copies_fp64) {
  const int64_t R_ = 5, C = 7, ldx = 10;
  Vec x = randv(R_ * ldx, 71), w = randv(C, 72), res = randv(R_ * C, 73);
  Vec y0(R_ * C), y(R_ * C), yc(R_ * C, std::nan("")), rstd0(R_), rstd(R_);
  cpu64.rmsnorm_forward(view(y0), view(rstd0), view(x), view(w), {.R = R_, .C = C, .ldx = ldx},
                        1e-6, sl::Tensor{}, sl::Tensor{});
  cpu64.rmsnorm_forward(view(y), view(rstd), view(x), view(w), {.R = R_, .C = C, .ldx = ldx}, 1e-6,
                        view(res), view(yc));
  // (to rounding: the sum may be contracted into a fused multiply-add)
  for (int64_t i = 0; i < R_ * C; ++i) BOOST_TEST(std::abs(y[i] - (res[i] + y0[i])) < 1e-15);
  BOOST_TEST(yc == y);
  BOOST_TEST(rstd == rstd0);
}

// accumulate = false WRITES the activation gradient: through the Backend, each such op on an
// output poisoned with NaN gives what the accumulating op gives on a zeroed one, and the padding
// of a strided output stays untouched (NaN).
BOOST_AUTO_TEST_CASE(write_mode_overwrites_inside_and_keeps_padding_fp64) {
  sl::CpuBackend<double> be;
  std::vector<sl::Tensor> owned;
  auto make = [&](const Vec& h) {
    sl::Tensor t = be.alloc(static_cast<int64_t>(h.size()), sl::DType::f64);
    std::copy(h.begin(), h.end(), t.as<double>());
    owned.push_back(t);
    return t;
  };
  auto read = [](sl::Tensor t) { return Vec(t.as<double>(), t.as<double>() + t.n); };
  // Runs op(out, accumulate) twice - accumulating into zeros, writing over NaN - and compares.
  auto check = [&](const std::string& what, size_t n, const std::vector<size_t>& padding,
                   const std::function<void(sl::Tensor, bool)>& op) {
    Vec zeros(n, 0.0), poison(n, std::nan(""));
    for (size_t i : padding) zeros[i] = std::nan("");
    sl::Tensor acc = make(zeros), wr = make(poison);
    op(acc, true);
    op(wr, false);
    const Vec a = read(acc), b = read(wr);
    bool same = true;
    for (size_t i = 0; i < n; ++i)
      same = same && (std::isnan(a[i]) ? std::isnan(b[i]) : a[i] == b[i] && std::isfinite(b[i]));
    BOOST_TEST(same, what << ": written output differs from the accumulated one");
  };
  const int64_t M = 4, K = 5, N = 3, ldx = 7;  // strided dx: columns K..ldx are padding
  std::vector<size_t> pad;
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = K; c < ldx; ++c) pad.push_back(static_cast<size_t>(r * ldx + c));
  const sl::Tensor x = make(randv(M * ldx, 81)), w = make(randv(N * K, 82)),
                   dy = make(randv(M * N, 83)), dw = make(Vec(N * K, 0.0));
  check("matmul_backward dx", M * ldx, pad, [&](sl::Tensor dx, bool a) {
    be.matmul_backward(dx, dw, dy, x, w, {.M = M, .K = K, .N = N, .ldx = ldx}, a);
  });
  const sl::Tensor wn = make(randv(K, 84, 0.5, 1.5)), rstd = make(Vec(M, 0.0)),
                   yn = make(Vec(M * K, 0.0)), dyn = make(randv(M * K, 85)),
                   dwn = make(Vec(K, 0.0));
  be.rmsnorm_forward(yn, rstd, x, wn, {.R = M, .C = K, .ldx = ldx}, 1e-6f, sl::Tensor{},
                     sl::Tensor{});
  check("rmsnorm_backward dx", M * ldx, pad, [&](sl::Tensor dx, bool a) {
    be.rmsnorm_backward(dx, dwn, dyn, x, wn, rstd, {.R = M, .C = K, .ldx = ldx}, a);
  });
  const int64_t m = 6;
  const sl::Tensor gu = make(randv(M * 2 * m, 86, -3, 3)), dh = make(randv(M * m, 87));
  check("swiglu_backward dgu", M * 2 * m, {},
        [&](sl::Tensor dgu, bool a) { be.swiglu_backward(dgu, dh, gu, {.R = M, .C = m}, a); });
  const int64_t B = 1, T = 6, H = 2, hd = 4, D = H * hd, ldv = 3 * D;
  const sl::Tensor q = make(randv(B * T * D, 88)), k = make(randv(B * T * D, 89)),
                   v = make(randv(B * T * ldv, 90)), o = make(Vec(B * T * D, 0.0)),
                   lse = make(Vec(B * H * T, 0.0)), dO = make(randv(B * T * D, 91));
  be.attention_forward(o, lse, q, k, v.at(2 * D), {.B = B, .T = T, .H = H, .hd = hd, .ldv = ldv});
  std::vector<size_t> vpad;  // dv lives in the last D columns of each 3D-wide row
  for (int64_t t = 0; t < B * T; ++t)
    for (int64_t c = 0; c < 2 * D; ++c) vpad.push_back(static_cast<size_t>(t * ldv + c));
  check("attention_backward dq", B * T * D, {}, [&](sl::Tensor dq, bool a) {
    be.attention_backward(dq, sl::Tensor{}, sl::Tensor{}, dO, q, k, v.at(2 * D), o, lse,
                          {.B = B, .T = T, .H = H, .hd = hd, .ldv = ldv}, a);
  });
  check("attention_backward dv", B * T * ldv, vpad, [&](sl::Tensor dvv, bool a) {
    be.attention_backward(sl::Tensor{}, sl::Tensor{}, dvv.at(2 * D), dO, q, k, v.at(2 * D), o, lse,
                          {.B = B, .T = T, .H = H, .hd = hd, .ldv = ldv}, a);
  });
  for (sl::Tensor t : owned) be.free(t);
}

BOOST_AUTO_TEST_CASE(reductions_independent_of_thread_count_fp32) {
  // Weight-gradient reductions over rows/tokens split columns across threads, so they are
  // bitwise equal for any thread count.
  const int64_t R_ = 301, C = 150, BT = 37, H = 2, Cg = 75, K = 4;
  auto x = to_float(randv(R_ * C, 61)), w = to_float(randv(C, 62));
  auto dy = to_float(randv(R_ * C, 63));
  std::vector<float> y(R_ * C), rstd(R_);
  auto gate = to_float(randv(R_ * C, 64));
  auto wc = to_float(randv(C * K, 65));
  std::vector<int32_t> ids(R_);
  for (int64_t i = 0; i < R_; ++i) ids[i] = int32_t((i * 7) % 13);
  const std::vector<int32_t> index = index_of(ids, 13);
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> dw(C), dwg(Cg), dwc(C * K), dwte(13 * C);
    cpu32.rmsnorm_forward(view(y), view(rstd), view(x), view(w), {.R = R_, .C = C, .ldx = C}, 1e-6f,
                          sl::Tensor{}, sl::Tensor{});
    cpu32.rmsnorm_backward(sl::Tensor{}, view(dw), view(dy), view(x), view(w), view(rstd),
                           {.R = R_, .C = C, .ldx = C}, true);
    // gated_rmsnorm on rows of Cg = C / H: BT*H rows use the first BT*H*Cg elements.
    cpu32.gated_rmsnorm_forward(view(y), view(rstd), view(x), view(gate), view(w),
                                {.R = BT * H, .H = H, .C = Cg, .ldg = H * Cg}, 1e-5f);
    cpu32.gated_rmsnorm_backward(sl::Tensor{}, sl::Tensor{}, view(dwg), view(dy), view(x),
                                 view(gate), view(w), view(rstd),
                                 {.R = BT * H, .H = H, .C = Cg, .ldg = H * Cg}, true);
    cpu32.conv1d_silu_backward(sl::Tensor{}, view(dwc), view(dy), view(x), view(wc),
                               {.B = 1, .T = R_, .C = C, .K = K, .ldx = C}, true);
    cpu32.embedding_backward(view(dwte), view(index), view(dy), {.R = R_, .C = C});
    omp_set_num_threads(saved);
    return std::vector<std::vector<float>>{dw, dwg, dwc, dwte};
  };
  const auto r1 = run(1), r3 = run(3), r3b = run(3);
  BOOST_TEST(r1 == r3);
  BOOST_TEST(r3 == r3b);
}

// ---- float against double ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(fp32_close_to_fp64) {
  const double tol = 1e-4;
  {  // rmsnorm forward + backward
    const int64_t R_ = 9, C = 33, ldx = 35;
    Vec x = randv(R_ * ldx, 70), w = randv(C, 71, 0.5, 1.5), dy = randv(R_ * C, 72);
    Vec y(R_ * C), rstd(R_), dx(R_ * ldx), dw(C);
    cpu64.rmsnorm_forward(view(y), view(rstd), view(x), view(w), {.R = R_, .C = C, .ldx = ldx},
                          1e-6, sl::Tensor{}, sl::Tensor{});
    cpu64.rmsnorm_backward(view(dx), view(dw), view(dy), view(x), view(w), view(rstd),
                           {.R = R_, .C = C, .ldx = ldx}, true);
    auto xf = to_float(x), wf = to_float(w), dyf = to_float(dy);
    std::vector<float> yf(R_ * C), rstdf(R_), dxf(R_ * ldx), dwf(C);
    cpu32.rmsnorm_forward(view(yf), view(rstdf), view(xf), view(wf), {.R = R_, .C = C, .ldx = ldx},
                          1e-6f, sl::Tensor{}, sl::Tensor{});
    cpu32.rmsnorm_backward(view(dxf), view(dwf), view(dyf), view(xf), view(wf), view(rstdf),
                           {.R = R_, .C = C, .ldx = ldx}, true);
    expect_close("fp32 rmsnorm y", yf, y, tol);
    expect_close("fp32 rmsnorm dx", dxf, dx, tol);
    expect_close("fp32 rmsnorm dw", dwf, dw, tol);
  }
  {  // attention forward + backward
    const int64_t B = 1, T = 80, H = 2, hd = 16, n = B * T * H * hd;
    Vec q = randv(n, 73, -2, 2), k = randv(n, 74, -2, 2), v = randv(n, 75), dO = randv(n, 76);
    Vec o(n), lse(B * H * T), dq(n), dk(n), dv(n);
    cpu64.attention_forward(view(o), view(lse), view(q), view(k), view(v),
                            {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd});
    cpu64.attention_backward(view(dq), view(dk), view(dv), view(dO), view(q), view(k), view(v),
                             view(o), view(lse), {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd},
                             true);
    auto qf = to_float(q), kf = to_float(k), vf = to_float(v), dOf = to_float(dO);
    std::vector<float> of(n), lsef(B * H * T), dqf(n), dkf(n), dvf(n);
    cpu32.attention_forward(view(of), view(lsef), view(qf), view(kf), view(vf),
                            {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd});
    cpu32.attention_backward(view(dqf), view(dkf), view(dvf), view(dOf), view(qf), view(kf),
                             view(vf), view(of), view(lsef),
                             {.B = B, .T = T, .H = H, .hd = hd, .ldv = H * hd}, true);
    expect_close("fp32 attention o", of, o, tol);
    expect_close("fp32 attention lse", lsef, lse, tol);
    expect_close("fp32 attention dq", dqf, dq, tol);
    expect_close("fp32 attention dk", dkf, dk, tol);
    expect_close("fp32 attention dv", dvf, dv, tol);
  }
  {  // cross-entropy
    const int64_t BT = 5, V = 300;
    const std::vector<int32_t> targets = {1, 299, -1, 0, 150};
    Vec logits = randv(BT * V, 77, -5, 5), losses(BT), dl(BT * V);
    const double s = cross_entropy(cpu64, losses, &dl, logits, targets, BT, V, 0.25);
    auto lf = to_float(logits);
    std::vector<float> lossesf(BT), dlf(BT * V);
    const double sf = cross_entropy(cpu32, lossesf, &dlf, lf, targets, BT, V, 0.25f);
    BOOST_TEST(std::abs(sf - s) / std::abs(s) < tol);
    expect_close("fp32 cross_entropy dl", dlf, dl, tol);
  }
  {  // conv1d + SiLU backward
    const int64_t B = 2, T = 20, C = 12, K = 4;
    Vec x = randv(B * T * C, 78), w = randv(C * K, 79), dy = randv(B * T * C, 80);
    Vec y(B * T * C), dx(B * T * C), dw(C * K);
    cpu64.conv1d_silu_forward(view(y), view(x), view(w),
                              {.B = B, .T = T, .C = C, .K = K, .ldx = C});
    cpu64.conv1d_silu_backward(view(dx), view(dw), view(dy), view(x), view(w),
                               {.B = B, .T = T, .C = C, .K = K, .ldx = C}, true);
    auto xf = to_float(x), wf = to_float(w), dyf = to_float(dy);
    std::vector<float> yf(B * T * C), dxf(B * T * C), dwf(C * K);
    cpu32.conv1d_silu_forward(view(yf), view(xf), view(wf),
                              {.B = B, .T = T, .C = C, .K = K, .ldx = C});
    cpu32.conv1d_silu_backward(view(dxf), view(dwf), view(dyf), view(xf), view(wf),
                               {.B = B, .T = T, .C = C, .K = K, .ldx = C}, true);
    expect_close("fp32 conv1d_silu y", yf, y, tol);
    expect_close("fp32 conv1d_silu dx", dxf, dx, tol);
    expect_close("fp32 conv1d_silu dw", dwf, dw, tol);
  }
}

// The shapes' check() (core/op_shapes.h): sizes that describe no tensors fail with one line that
// names the op and the sizes, before any tensor is read.
BOOST_AUTO_TEST_CASE(bad_shapes_fail_with_one_line) {
  auto message = [](const std::function<void()>& call) {
    try {
      call();
    } catch (const sl::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  Vec x(64), w(64), y(64);
  // K = 8 columns read at row stride 4 (K and ldx swapped): rows would overlap.
  BOOST_TEST(message([&] {
               cpu64.matmul_forward(view(y), view(x), view(w), {.M = 2, .K = 8, .N = 2, .ldx = 4},
                                    false);
             }) ==
             "matmul_forward: bad sizes M=2 K=8 N=2 ldx=4 ldy=0 (need M, K, N >= 0, ldx >= K, ldy "
             "0 or >= N)");
  // RoPE pairs element i with i + hd/2: an odd head dim has no pairing.
  BOOST_TEST(message([&] {
               cpu64.rope_forward(view(x), {.B = 1, .T = 2, .H = 2, .hd = 3, .theta = 1e4f});
             }) == "rope_forward: bad sizes B=1 T=2 H=2 hd=3 (need B, T, H >= 0, hd even >= 2)");
  // Gated-norm rows are (token, head) pairs: R = 5 rows are no whole tokens of H = 2 heads.
  BOOST_TEST(message([&] {
               cpu64.gated_rmsnorm_forward(view(y), view(x), view(x), view(x), view(w),
                                           {.R = 5, .H = 2, .C = 4, .ldg = 8}, 1e-6f);
             }) ==
             "gated_rmsnorm_forward: bad sizes R=5 H=2 C=4 ldg=8 (need R >= 0 a multiple of H "
             ">= 1, C >= 1, ldg >= H*C)");
  // A consistent shape runs.
  BOOST_TEST(message([&] {
               cpu64.matmul_forward(view(y), view(x), view(w), {.M = 2, .K = 4, .N = 2, .ldx = 8},
                                    false);
             }) == "no error");
}
