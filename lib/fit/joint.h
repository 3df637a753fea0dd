// Joint Chinchilla fits of two architectures, for ladders too small to identify five parameters
// per architecture (3 sizes x 3 budgets): the irreducible loss E shared (it is a property of the
// data, not of the architecture), optionally the size exponent alpha shared too, or alpha fixed.
//
//   L_a(N, D) = E + A_a / N^alpha_a + B_a / D^beta_a,   a in {baseline, candidate}
//   f = f_baseline + f_candidate   (each the weighted Huber sum of law.h on its own points)
//
// minimised by Ceres over theta = (e | alpha shared?) + per-architecture (a_a, [alpha_a], b_a,
// beta_a), from starts built from the two separate fits (E from either, c min L for c in
// {0.05, 0.2, 0.4, 0.6, 0.8, 0.95}; alpha each its own, or both from either or their mean) and
// from JointOptions::starts. Bounds (by
// natural name, FitOptions::bounds) apply to both architectures through the smooth box map of
// cost.h (no active-set polish: an active bound is approached, not landed on); E has the floor
// 1e-12 min L of law.h.
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "fit/law.h"

namespace sl::fit {

struct JointOptions {
  bool share_e = true;                // one E for both architectures
  bool share_alpha = false;           // one alpha for both
  double fixed_alpha = std::nan("");  // alpha held at this value for both (NaN: free)
  FitOptions fit;                     // Huber delta, bounds, tolerances, threads
  // Extra starts: per-architecture theta pairs (baseline, candidate), e.g. the optimum of a more
  // constrained joint model, so that a looser model can only end lower (nested models).
  std::vector<std::pair<std::vector<double>, std::vector<double>>> starts;
  // Only `starts`, none from the separate fits (a bootstrap refit from the full-data optimum).
  bool given_starts_only = false;
};

struct JointResult {
  std::string model;              // e.g. "shared E", "shared E and alpha", "alpha = 0.34"
  FitResult baseline, candidate;  // each architecture's law and own objective and flags
  double objective = 0;           // f_baseline + f_candidate
  int n_params = 0;               // free parameters of the joint model
  int dof = 0;                    // points of both minus n_params
  int starts = 0;
  bool converged = false;  // the best start's solve met a convergence criterion
  std::string termination;
};

// `sep_b`, `sep_c`: the separate fits of the two data sets (starts). An alpha in
// options.fit.fixed acts as fixed_alpha (other fixed parameters are refused). Throws sl::Error if
// no start gives a finite objective.
JointResult fit_joint(const LawData& baseline, const LawData& candidate, const FitResult& sep_b,
                      const FitResult& sep_c, const JointOptions& options);

}  // namespace sl::fit
