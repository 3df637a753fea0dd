// Gated DeltaNet recurrence on the CPU (backend/cpu/gated_deltanet.cc, through CpuBackend with
// GdnAlgo::chunk or GdnAlgo::recurrent on host vectors): the chunk (WY/UT) form against the naive
// recurrence, both against central finite differences, strong decay without NaN, and float
// against double.
#define BOOST_TEST_MODULE gated_deltanet
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/backend.h"

namespace {

using sl::gdn_num_chunks;

// The op's own shape: B, T, H, key_dim, value_dim (the head dimensions of q, k and of v; dq, dk,
// dv are the gradients).
using Dims = sl::GdnShape;

// Inputs as the model produces them (generated in double, converted to T for float runs):
// q, k L2-normalised per head, q also scaled by 1/sqrt(key_dim); beta = beta_scale * sigmoid(b);
// g = -exp(A_log[h]) * softplus(a + dt_bias[h]).
struct Inputs {
  Dims d;
  std::vector<double> q, k, v, beta, g;
};

double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

// `strong`: A_log near log 16, softplus argument up to 5, beta near 2 (the NaN-pitfall regime).
Inputs make_inputs(Dims d, uint64_t seed, bool strong = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nrm(0.0, 1.0);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  Inputs in{d, {}, {}, {}, {}, {}};
  const int64_t BTH = d.B * d.T * d.H;
  in.q.resize(BTH * d.key_dim);
  in.k.resize(BTH * d.key_dim);
  in.v.resize(BTH * d.value_dim);
  in.beta.resize(BTH);
  in.g.resize(BTH);
  auto l2rows = [&](std::vector<double>& x, double scale) {
    for (int64_t r = 0; r < BTH; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < d.key_dim; ++i) ss += x[r * d.key_dim + i] * x[r * d.key_dim + i];
      const double rn = scale / std::sqrt(ss + 1e-6);
      for (int64_t i = 0; i < d.key_dim; ++i) x[r * d.key_dim + i] *= rn;
    }
  };
  for (auto& x : in.q) x = nrm(rng);
  for (auto& x : in.k) x = nrm(rng);
  for (auto& x : in.v) x = nrm(rng);
  l2rows(in.q, 1.0 / std::sqrt(static_cast<double>(d.key_dim)));
  l2rows(in.k, 1.0);
  std::vector<double> A_log(d.H), dt_bias(d.H);
  for (int64_t h = 0; h < d.H; ++h) {
    // A = exp(A_log) ~ Uniform(0, 16) (strong: in [15, 16]); dt in [1e-3, 0.1] log-uniform,
    // dt_bias = inverse softplus of dt.
    A_log[h] = strong ? std::log(15.0 + uni(rng)) : std::log(16.0 * (0.02 + 0.98 * uni(rng)));
    const double dt = std::exp(std::log(1e-3) + uni(rng) * (std::log(0.1) - std::log(1e-3)));
    dt_bias[h] = dt + std::log(-std::expm1(-dt));
  }
  for (int64_t i = 0; i < BTH; ++i) {
    const int64_t h = i % d.H;
    if (strong) {
      // softplus argument in [-10, 5]: g from ~-7e-4 down to ~-16 * softplus(5) ~ -80.
      in.g[i] = -std::exp(A_log[h]) * softplus(-10.0 + 15.0 * uni(rng));
      in.beta[i] = 2.0 / (1.0 + std::exp(-(4.0 + 6.0 * uni(rng))));  // in (1.96, 2)
    } else {
      in.g[i] = -std::exp(A_log[h]) * softplus(2.0 * nrm(rng) + dt_bias[h]);
      in.beta[i] = 2.0 / (1.0 + std::exp(-2.0 * nrm(rng)));
    }
  }
  return in;
}

template <class T>
std::vector<T> cast(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

// A host vector viewed as a tensor of the CPU backend of its type (they compute in place on host
// memory).
template <class T>
sl::Tensor view(const std::vector<T>& v) {
  return sl::Tensor(const_cast<T*>(v.data()), sizeof(T) == 8 ? sl::DType::f64 : sl::DType::f32,
                    static_cast<int64_t>(v.size()));
}

template <class T>
sl::CpuBackend<T> backend(bool chunk) {
  return sl::CpuBackend<T>(chunk ? sl::GdnAlgo::chunk : sl::GdnAlgo::recurrent);
}

std::vector<double> randn(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nrm(0.0, 1.0);
  std::vector<double> x(n);
  for (auto& e : x) e = nrm(rng);
  return x;
}

template <class T>
struct Result {
  std::vector<T> out, states, dq, dk, dv, dbeta, dg;
};

// Forward then (if dout is non-empty) backward of one form, in precision T.
template <class T>
Result<T> run(bool chunk, const Inputs& in, const std::vector<double>& dout_d) {
  const Dims& d = in.d;
  const auto q = cast<T>(in.q), k = cast<T>(in.k), v = cast<T>(in.v);
  const auto beta = cast<T>(in.beta), g = cast<T>(in.g);
  Result<T> r;
  r.out.assign(d.B * d.T * d.H * d.value_dim, T(0));
  r.states.assign(d.B * d.H * gdn_num_chunks(d.T) * d.key_dim * d.value_dim, T(0));
  auto be = backend<T>(chunk);
  be.gdn_forward(view(r.out), view(r.states), view(q), view(k), view(v), view(beta), view(g), d);
  if (dout_d.empty()) return r;
  const auto dout = cast<T>(dout_d);
  r.dq.assign(q.size(), T(0));
  r.dk.assign(k.size(), T(0));
  r.dv.assign(v.size(), T(0));
  r.dbeta.assign(beta.size(), T(0));
  r.dg.assign(g.size(), T(0));
  be.gdn_backward(view(r.dq), view(r.dk), view(r.dv), view(r.dbeta), view(r.dg), view(dout),
                  view(r.states), view(q), view(k), view(v), view(beta), view(g), d, true);
  return r;
}

// max|a - b| / max(max|b|, floor); b is the reference. Any non-finite value gives infinity. The
// floor judges an identically-zero reference (dg at T = 1, where the state entering the only step
// is 0) by its roundoff relative to the other outputs' scale instead of 0/0.
template <class A, class B>
double rel_err(const std::vector<A>& a, const std::vector<B>& b, double floor = 1e-30) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    if (!std::isfinite(x) || !std::isfinite(y)) return INFINITY;
    num = std::max(num, std::abs(x - y));
    den = std::max(den, std::abs(y));
  }
  return num / std::max(den, floor);
}

template <class T>
bool all_finite(const std::vector<T>& x) {
  return std::all_of(x.begin(), x.end(), [](T e) { return std::isfinite(e); });
}

// Compares every output and gradient of a against reference b; returns the largest error.
template <class TA, class TB>
double compare_all(const Result<TA>& a, const Result<TB>& b, double tol, const std::string& what) {
  double scale = 0;
  for (const auto* x : {&b.out, &b.dq, &b.dk, &b.dv, &b.dbeta})
    for (auto e : *x) scale = std::max(scale, std::abs(static_cast<double>(e)));
  const std::pair<const char*, double> errs[] = {{"out", rel_err(a.out, b.out)},
                                                 {"states", rel_err(a.states, b.states)},
                                                 {"dq", rel_err(a.dq, b.dq)},
                                                 {"dk", rel_err(a.dk, b.dk)},
                                                 {"dv", rel_err(a.dv, b.dv)},
                                                 {"dbeta", rel_err(a.dbeta, b.dbeta)},
                                                 {"dg", rel_err(a.dg, b.dg, 1e-3 * scale)}};
  double worst = 0;
  for (const auto& [name, e] : errs) {
    BOOST_TEST_INFO(what << " " << name << " rel err " << e);
    BOOST_CHECK_LT(e, tol);
    worst = std::max(worst, e);
  }
  return worst;
}

// Central finite differences (step 1e-6) of loss = sum(out * R) for every element of q, k, v,
// beta, g, against the analytic gradients (dout = R) of the chosen form, in double.
void gradcheck(bool chunk, Dims d, uint64_t seed) {
  Inputs in = make_inputs(d, seed);
  const auto R = randn(d.B * d.T * d.H * d.value_dim, seed + 1);
  const Result<double> an = run<double>(chunk, in, R);
  auto loss = [&](const Inputs& x) {
    const auto r = run<double>(chunk, x, {});
    double s = 0;
    for (size_t i = 0; i < R.size(); ++i) s += r.out[i] * R[i];
    return s;
  };
  const double h = 1e-6;
  auto fd = [&](std::vector<double> Inputs::*field) {
    std::vector<double> grad((in.*field).size());
    for (size_t i = 0; i < grad.size(); ++i) {
      const double x0 = (in.*field)[i];
      (in.*field)[i] = x0 + h;
      const double lp = loss(in);
      (in.*field)[i] = x0 - h;
      const double lm = loss(in);
      (in.*field)[i] = x0;
      grad[i] = (lp - lm) / (2 * h);
    }
    return grad;
  };
  const auto fq = fd(&Inputs::q), fk = fd(&Inputs::k), fv = fd(&Inputs::v), fb = fd(&Inputs::beta);
  double scale = 0;  // floor for dg, which is identically 0 at T = 1 (see rel_err)
  for (const auto* x : {&fq, &fk, &fv, &fb})
    for (double e : *x) scale = std::max(scale, std::abs(e));
  const std::pair<const char*, double> errs[] = {
      {"dq", rel_err(an.dq, fq)},
      {"dk", rel_err(an.dk, fk)},
      {"dv", rel_err(an.dv, fv)},
      {"dbeta", rel_err(an.dbeta, fb)},
      {"dg", rel_err(an.dg, fd(&Inputs::g), 1e-3 * scale)}};
  for (const auto& [name, e] : errs) {
    BOOST_TEST_MESSAGE((chunk ? "chunk" : "recurrent")
                       << " gradcheck T=" << d.T << " " << name << " rel err " << e);
    BOOST_TEST_INFO(name << " rel err " << e);
    BOOST_CHECK_LT(e, 1e-6);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(gdn_chunk_matches_recurrence_fp64) {
  std::vector<Dims> cases;
  for (int64_t T : {1, 5, 63, 64, 65, 130, 200}) cases.push_back({2, T, 2, 8, 12});
  cases.push_back({2, 130, 2, 16, 32});
  double worst = 0;
  for (const Dims& d : cases) {
    const Inputs in = make_inputs(d, 1000 + d.T + d.key_dim);
    const auto dout = randn(d.B * d.T * d.H * d.value_dim, 7 + d.T);
    const auto rec = run<double>(false, in, dout);
    const auto chk = run<double>(true, in, dout);
    const std::string what = "T=" + std::to_string(d.T) + " key_dim=" + std::to_string(d.key_dim);
    const double e = compare_all(chk, rec, 1e-10, what);
    BOOST_TEST_MESSAGE("chunk vs recurrent fp64 " << what << ": max rel err " << e);
    worst = std::max(worst, e);
  }
  BOOST_TEST_MESSAGE("chunk vs recurrent fp64: worst rel err " << worst);
}

BOOST_AUTO_TEST_CASE(gdn_recurrent_gradcheck_fp64) {
  // B=2, H=1 checks batch indexing; T=67 crosses a chunk boundary (recompute from states).
  gradcheck(false, {2, 67, 1, 4, 6}, 11);
  gradcheck(false, {1, 1, 2, 4, 6}, 12);  // T = 1
}

BOOST_AUTO_TEST_CASE(gdn_chunk_gradcheck_fp64) {
  // B=1, H=2 checks head indexing; T=67 is a full chunk then a partial one.
  gradcheck(true, {1, 67, 2, 4, 6}, 21);
  gradcheck(true, {1, 1, 2, 4, 6}, 22);  // T = 1
}

BOOST_AUTO_TEST_CASE(gdn_strong_decay_no_nan) {
  const Dims d{2, 130, 2, 8, 12};
  const Inputs in = make_inputs(d, 31, /*strong=*/true);
  double gmin = 0;
  for (double x : in.g) gmin = std::min(gmin, x);
  BOOST_TEST_MESSAGE("strong decay: min g " << gmin);
  BOOST_CHECK_LT(gmin, -60.0);  // the regime is really reached
  const auto dout = randn(d.B * d.T * d.H * d.value_dim, 32);
  const auto rec = run<double>(false, in, dout);
  const auto chk = run<double>(true, in, dout);
  for (const auto* r : {&rec, &chk}) {
    for (const auto* x : {&r->out, &r->states, &r->dq, &r->dk, &r->dv, &r->dbeta, &r->dg}) {
      BOOST_CHECK(all_finite(*x));
    }
  }
  const double e64 = compare_all(chk, rec, 1e-9, "strong decay chunk vs recurrent fp64");
  BOOST_TEST_MESSAGE("strong decay chunk vs recurrent fp64: max rel err " << e64);
  for (bool chunk : {false, true}) {
    const auto f = run<float>(chunk, in, dout);
    for (const auto* x : {&f.out, &f.states, &f.dq, &f.dk, &f.dv, &f.dbeta, &f.dg}) {
      BOOST_CHECK(all_finite(*x));
    }
    const double e32 = compare_all(f, chunk ? chk : rec, 1e-3, "strong decay fp32 vs fp64");
    BOOST_TEST_MESSAGE("strong decay " << (chunk ? "chunk" : "recurrent")
                                       << " fp32 vs fp64: max rel err " << e32);
  }
}

BOOST_AUTO_TEST_CASE(gdn_float_matches_double) {
  for (const Dims& d : {Dims{2, 1, 2, 8, 12}, Dims{2, 200, 2, 16, 32}}) {
    const Inputs in = make_inputs(d, 41 + d.T);
    const auto dout = randn(d.B * d.T * d.H * d.value_dim, 42 + d.T);
    const auto f = run<float>(true, in, dout);
    const auto ref = run<double>(true, in, dout);
    const double e = compare_all(f, ref, 1e-4, "chunk fp32 vs fp64 T=" + std::to_string(d.T));
    BOOST_TEST_MESSAGE("chunk fp32 vs fp64 T=" << d.T << ": max rel err " << e);
  }
}

// A null gradient output is skipped (the Backend convention): each output alone, the others
// null, is bit for bit what the call with all five gives it; nothing is written through null.
BOOST_AUTO_TEST_CASE(gdn_backward_skips_null_outputs) {
  const Dims d{2, 70, 2, 8, 12};
  const Inputs in = make_inputs(d, 61);
  const auto dout = randn(d.B * d.T * d.H * d.value_dim, 62);
  for (bool chunk : {false, true}) {
    const auto full = run<double>(chunk, in, dout);
    auto be = backend<double>(chunk);
    auto q = in.q, k = in.k, v = in.v, beta = in.beta, g = in.g;
    const std::vector<double>* want[5] = {&full.dq, &full.dk, &full.dv, &full.dbeta, &full.dg};
    for (int only = 0; only < 5; ++only) {
      std::vector<double> got(want[only]->size(), 0.0);
      sl::Tensor o[5];  // null Tensors, except the one output asked for
      o[only] = view(got);
      be.gdn_backward(o[0], o[1], o[2], o[3], o[4], view(dout), view(full.states), view(q), view(k),
                      view(v), view(beta), view(g), d, true);
      BOOST_TEST((got == *want[only]), (chunk ? "chunk" : "recurrent") << " output " << only);
    }
  }
}

// Backward accumulates (+=) and is bitwise reproducible run to run.
BOOST_AUTO_TEST_CASE(gdn_backward_accumulates_and_reproducible) {
  const Dims d{2, 100, 3, 8, 12};
  const Inputs in = make_inputs(d, 51);
  const auto dout = randn(d.B * d.T * d.H * d.value_dim, 52);
  for (bool chunk : {false, true}) {
    const auto r1 = run<double>(chunk, in, dout);
    const auto r2 = run<double>(chunk, in, dout);
    BOOST_CHECK(r1.out == r2.out);
    BOOST_CHECK(r1.dq == r2.dq && r1.dk == r2.dk && r1.dv == r2.dv);
    BOOST_CHECK(r1.dbeta == r2.dbeta && r1.dg == r2.dg);
    // A second backward into the same buffers doubles them (x + x is exact in floating point).
    auto q = in.q, k = in.k, v = in.v, beta = in.beta, g = in.g;
    Result<double> acc = r1;
    auto be = backend<double>(chunk);
    be.gdn_backward(view(acc.dq), view(acc.dk), view(acc.dv), view(acc.dbeta), view(acc.dg),
                    view(dout), view(r1.states), view(q), view(k), view(v), view(beta), view(g), d,
                    true);
    auto twice = [](std::vector<double> x) {
      for (auto& e : x) e *= 2;
      return x;
    };
    BOOST_CHECK(acc.dq == twice(r1.dq) && acc.dk == twice(r1.dk) && acc.dv == twice(r1.dv));
    BOOST_CHECK(acc.dbeta == twice(r1.dbeta) && acc.dg == twice(r1.dg));
  }
}
