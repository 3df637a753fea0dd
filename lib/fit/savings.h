// The token-savings factor of a candidate architecture over a baseline:
//
//   S(N) = D_baseline(N, L*) / D_candidate(N, L*),   D(N, L) = (B / (L - E - A /
//   N^alpha))^(1/beta),
//
// from one Chinchilla fit per architecture, with paired-bootstrap CIs; the compute multiplier at
// equal loss on the compute-optimal frontiers, C_baseline(L*) / C_candidate(L*); N_opt(C), D_opt(C)
// per architecture; and per-size data laws L_N(D) = E_N + B_N / D^beta_N as a model-free check of
// the savings at the sizes actually trained.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fit/law.h"
#include "fit/points.h"
#include "fit/table.h"

namespace sl::fit {

struct SavingsOptions {
  std::string baseline = "dense";    // group value of the baseline architecture
  std::string candidate = "hybrid";  // group value of the candidate architecture
  // L*: "median" (of all observed losses of both architectures, as in OLMo-core's ladder
  // analysis), "min" (the lowest observed loss), or a number.
  std::string target = "median";
  // Model sizes N for S(N). Empty (the default): the trained sizes (per size name shared by both
  // architectures the geometric mean of their N, else each architecture's N) and 10x the largest.
  std::vector<double> at_n;
  // S at an N more than this factor outside the trained sizes gets a warning.
  double max_extrapolation = 10;
  std::vector<double> at_c = {1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24};  // C for N_opt, D_opt
  int bootstrap = 1000;  // paired bootstrap replicates (0: no CIs)
  uint64_t seed = 0;     // bootstrap seed
  bool per_size = true;  // fit the per-size data laws
  // Sensitivity of S to the model (SavingsResult::sensitivity): separate fits with Huber delta
  // 0.1 (least squares for log residuals under 10%), shared E, shared E and alpha, shared E with
  // alpha fixed at sensitivity_alpha (Hoffmann et al.'s 0.34 by default); each row bootstrapped
  // with the headline's `bootstrap` replicates.
  bool sensitivity = false;
  double sensitivity_alpha = 0.34;
  FitOptions fit;  // options of every fit
};

// A ratio baseline / candidate of two quantities that can be unreachable (+inf): tokens or
// compute to reach L*. Status "ok", "unreachable_baseline", "unreachable_candidate" or
// "unreachable_both"; `value` is NaN unless ok.
struct Ratio {
  std::string status;
  double value = std::nan("");
  double baseline = std::nan(""), candidate = std::nan("");
  // Paired-bootstrap 95% percentile CI. A replicate where only the baseline cannot reach L* counts
  // as +inf, only the candidate as 0, neither is left out; so ci_hi can be +inf ("unbounded").
  double ci_lo = std::nan(""), ci_hi = std::nan("");
  int boot_ok = 0, boot_unreachable_baseline = 0, boot_unreachable_candidate = 0,
      boot_unreachable_both = 0;
  // Replicates the CI rests on (ok + either side unreachable); the CI is NaN (none) where the
  // full-data ratio is undefined (status != "ok").
  int boot_n = 0;
};

// Make the ratio of two (possibly +inf) quantities.
Ratio make_ratio(double baseline, double candidate);

struct SavingsPoint {
  double n = 0;
  // How far N lies outside the trained sizes [N_min, N_max] of both architectures:
  // max(N / N_max, N_min / N, 1); 1 inside.
  double extrapolation = 1;
  double floor_baseline = 0, floor_candidate = 0;  // E + A / N^alpha of each fit
  Ratio savings;                                   // tokens: D_baseline / D_candidate
};

struct PerSizeFit {
  std::string key;  // the size (DataSpec::size_cols or N)
  double n = 0;     // N of the size (median over its points)
  int n_points = 0;
  std::string skipped;  // why no fit ("" if fitted)
  FitResult fit;        // E, B, beta
  // No residual degrees of freedom (as many distinct budgets as parameters, e.g. 3): the law
  // passes through the points; it is a solution, not a fit.
  bool exact = false;
  double tokens_at_target = std::nan("");  // D_N(L*), +inf if L* <= E_N
};

struct PerSizeSavings {
  std::string key;
  double n_baseline = 0, n_candidate = 0;
  Ratio savings;  // D_N,baseline(L*) / D_N,candidate(L*) (no CIs)
};

struct ArchFit {
  std::string name;
  Points points;
  FitResult fit;
  BootstrapResult boot;  // n = 0 without bootstrap
  std::vector<PerSizeFit> sizes;
};

// S(N) at the same N as SavingsResult::points under one modelling choice, with paired-bootstrap
// CIs from the headline's resamples (replicate k of each architecture, refitted under the row's
// model from the row's full-data optimum): the rows differ by the model, not by the draws.
struct SensitivityRow {
  std::string model;     // "separate", "separate, delta 0.1", "shared E", ...
  int n_params = 0;      // free parameters over both architectures
  double objective = 0;  // f_baseline + f_candidate (each with the row's Huber delta)
  bool converged = false;
  FitResult baseline, candidate;  // the laws (values, flags)
  // One per SavingsResult::points; ci_lo, ci_hi and boot_n as the headline's (none without
  // bootstrap, or where the full-data ratio is undefined).
  std::vector<Ratio> savings;
  // Replicates with both refits (the most any CI of the row rests on), and those left out: a
  // resample that cannot identify the law (underdetermined) or a refit that failed.
  int boot_used = 0, boot_underdetermined = 0, boot_failed = 0;
};

// Whether S grows with N over the trained sizes: G = S(n_hi) / S(n_lo) between the smallest and
// the largest reported N inside the trained range (SavingsPoint::extrapolation 1) where S is
// defined, with a paired-bootstrap 95% CI from the same replicates as the points' CIs (replicate
// k: S_k(n_hi) / S_k(n_lo); an unreachable side makes it +inf or 0 by IEEE division, inf / inf
// and 0 / 0 leave the replicate out).
struct SavingsGrowth {
  double n_lo = std::nan(""), n_hi = std::nan("");
  double value = std::nan("");
  double ci_lo = std::nan(""), ci_hi = std::nan("");
  int boot_n = 0;  // replicates with a defined G
  // "grows" (ci_lo > 1), "falls" (ci_hi < 1), "not resolved" (the CI holds 1), "no CI" (no
  // bootstrap, or no replicate defines G), or "undefined" (fewer than two trained sizes with S
  // defined).
  std::string verdict = "undefined";
};

struct SavingsResult {
  ArchFit baseline, candidate;
  double target_loss = 0;
  std::string target_rule;  // "median", "min" or "value"
  std::vector<SavingsPoint> points;
  SavingsGrowth growth;
  Ratio compute_multiplier;  // C_baseline(L*) / C_candidate(L*) on the compute-optimal frontiers
  std::vector<double> at_c;
  std::vector<PerSizeSavings> per_size;
  std::vector<SensitivityRow> sensitivity;      // with SavingsOptions::sensitivity
  double n_trained_min = 0, n_trained_max = 0;  // trained N range over both architectures
  std::vector<std::string> warnings;
  int bootstrap = 0;
  uint64_t seed = 0;
  double seconds = 0;
};

// Fits both architectures (rows of `spec.group_col` equal to options.baseline / candidate; the
// rest of `spec` applies to both) and computes everything above. Sizes for the per-size laws are
// named by spec.size_cols, or by the table's "size" column when it has one (a collected sweep
// does: N differs between architectures of the same size). Throws sl::Error on bad input.
SavingsResult savings_analysis(const Table& table, const DataSpec& spec,
                               const SavingsOptions& options);

// The same from points already extracted (used by the tests).
SavingsResult savings_from_points(const Points& baseline, const Points& candidate,
                                  const SavingsOptions& options);

}  // namespace sl::fit
