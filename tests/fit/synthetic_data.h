// Synthetic scaling-law data for the fit tests: a ladder of model sizes and token budgets with
// losses from a known Chinchilla law times log-normal noise.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "fit/chinchilla.h"
#include "fit/points.h"

namespace sl::fit::testing {

// Baseline: Epoch AI's Chinchilla fit. Candidate: a more data-efficient architecture (smaller B,
// slightly different exponents), so that S(N) > 1 and changes with N.
inline Chinchilla baseline_law() { return {1.8172, 477.8, 0.3473, 2143.4, 0.3672}; }
inline Chinchilla candidate_law() { return {1.80, 470.0, 0.345, 1400.0, 0.355}; }

inline const std::vector<double> kSizes = {2e7, 5e7, 1e8, 2e8, 5e8, 1e9};
inline const std::vector<double> kRatios = {5, 10, 20, 40, 80};

// Every size N times every D/N ratio (default 6 x 5 = 30 points); L = law(N, D) exp(sigma z),
// z ~ N(0, 1) from Rng(seed, stream).
inline Points ladder(const Chinchilla& law, double sigma, uint64_t seed, uint64_t stream,
                     const std::vector<double>& sizes = kSizes,
                     const std::vector<double>& ratios = kRatios) {
  Rng rng(seed, stream);
  Points p;
  for (double n : sizes) {
    for (double r : ratios) {
      double d = r * n;
      p.n.push_back(n);
      p.d.push_back(d);
      p.loss.push_back(law.loss(n, d) * std::exp(sigma * rng.normal()));
      p.weight.push_back(1.0);
      p.where.push_back("synthetic");
      char key[32];
      std::snprintf(key, sizeof key, "%g", n);
      p.size_key.push_back(key);
    }
  }
  p.n_rows_total = static_cast<int>(p.size());
  return p;
}

// The true S(N) at target loss `target` (+inf/0/NaN by the Ratio conventions).
inline double true_savings(double n, double target) {
  return baseline_law().tokens_for_loss(n, target) / candidate_law().tokens_for_loss(n, target);
}

}  // namespace sl::fit::testing
