// Finite-difference gradient checking, header-only, for op-level and whole-model checks.
//
// Usage:
//   std::vector<double> x = ...;                      // the point (all inputs of interest, flat)
//   auto loss = [&](const std::vector<double>& xs) { return ...; };   // scalar function of x
//   std::vector<double> g = ...;                      // analytic d loss / d x at x
//   double err = sl::test::gradcheck(loss, x, g);     // max relative error, want < 1e-6 in fp64
//
// The error is  max_i |g_i - n_i| / max(max_i |n_i|, 1e-8)  with n the central-difference
// gradient n_i = (f(x + h e_i) - f(x - h e_i)) / (2h): normalised by the largest numerical
// gradient entry, so tiny entries are not judged on their own relative scale (their absolute
// roundoff ~ eps*|f|/h would dominate). In double with h = 1e-6 the truncation error is
// O(h^2 f''') ~ 1e-12 and the roundoff ~ 1e-16 |f| / h, so ~1e-8 is a typical result.
//
// For large inputs (whole models) pass `indices` to check only a subset of coordinates (the
// error is then over that subset); gradcheck_sample picks a reproducible random subset.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <vector>

namespace sl::test {

using ScalarFn = std::function<double(const std::vector<double>&)>;

struct GradCheckResult {
  double rel_err = 0;       // max |analytic - numeric| / max(max |numeric|, 1e-8)
  double max_abs_diff = 0;  // max |analytic - numeric|
  double max_ref = 0;       // max |numeric|
  int64_t worst = -1;       // index into x of the largest |analytic - numeric|
  int64_t checked = 0;      // number of coordinates checked
};

// Central-difference derivative of f along coordinate i of x (x is restored before returning).
inline double numeric_partial(const ScalarFn& f, std::vector<double>& x, size_t i, double h) {
  const double xi = x[i];
  x[i] = xi + h;
  const double fp = f(x);
  x[i] = xi - h;
  const double fm = f(x);
  x[i] = xi;
  return (fp - fm) / (2 * h);
}

// Compares `analytic` (same size as x) with central differences of f at x over `indices` (all
// coordinates when empty). f must be deterministic; it sees x perturbed one coordinate at a time.
inline GradCheckResult gradcheck_detail(const ScalarFn& f, const std::vector<double>& x,
                                        const std::vector<double>& analytic, double h = 1e-6,
                                        const std::vector<int64_t>& indices = {}) {
  if (analytic.size() != x.size()) throw std::invalid_argument("gradcheck: size mismatch");
  std::vector<double> xs = x;
  GradCheckResult r;
  auto visit = [&](size_t i) {
    const double n = numeric_partial(f, xs, i, h);
    const double diff = std::abs(analytic[i] - n);
    r.max_ref = std::max(r.max_ref, std::abs(n));
    if (diff > r.max_abs_diff || r.worst < 0) {
      r.max_abs_diff = std::max(r.max_abs_diff, diff);
      r.worst = static_cast<int64_t>(i);
    }
    ++r.checked;
  };
  if (indices.empty()) {
    for (size_t i = 0; i < x.size(); ++i) visit(i);
  } else {
    for (int64_t i : indices) visit(static_cast<size_t>(i));
  }
  // The 1e-8 floor: a gradient that is identically zero (e.g. dg at T = 1, where the state
  // entering the only step is 0) is judged by its absolute roundoff, not by 0/0.
  r.rel_err = r.max_abs_diff / std::max(r.max_ref, 1e-8);
  return r;
}

// The max relative error only (see gradcheck_detail).
inline double gradcheck(const ScalarFn& f, const std::vector<double>& x,
                        const std::vector<double>& analytic, double h = 1e-6,
                        const std::vector<int64_t>& indices = {}) {
  return gradcheck_detail(f, x, analytic, h, indices).rel_err;
}

// `count` distinct indices in [0, n), sorted, drawn reproducibly from `seed` (all when count >= n).
inline std::vector<int64_t> gradcheck_sample(int64_t n, int64_t count, uint64_t seed = 1) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
  if (count >= n) return idx;
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(count));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace sl::test
