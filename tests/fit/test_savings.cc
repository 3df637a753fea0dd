// Token savings S(N), the compute multiplier, compute-optimal allocation and per-size data laws
// on synthetic data drawn from two known laws.
#define BOOST_TEST_MODULE fit_savings
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "fit/chinchilla.h"
#include "fit/report.h"
#include "fit/savings.h"
#include "synthetic_data.h"

using namespace sl::fit;
namespace syn = sl::fit::testing;

BOOST_AUTO_TEST_CASE(recovers_savings_from_noisy_ladders) {
  // 8 sizes x 7 budgets per architecture, 0.5% log-normal noise.
  const std::vector<double> sizes = {1e7, 2e7, 5e7, 1e8, 2e8, 5e8, 1e9, 2e9};
  const std::vector<double> ratios = {2.5, 5, 10, 20, 40, 80, 160};
  Points b = syn::ladder(syn::baseline_law(), 0.005, 7, 0, sizes, ratios);
  Points c = syn::ladder(syn::candidate_law(), 0.005, 7, 1, sizes, ratios);
  SavingsOptions o;
  o.target = "3.2";
  o.at_n = {1e8, 1e9, 7e9};
  o.bootstrap = 200;
  o.seed = 1;
  SavingsResult r = savings_from_points(b, c, o);
  BOOST_TEST(r.target_loss == 3.2);
  BOOST_TEST(r.target_rule == "value");
  BOOST_TEST(r.baseline.fit.converged);
  BOOST_TEST(r.candidate.fit.converged);
  // Over 30 seeds of this design the largest errors were 6% (1e8), 7% (1e9) and 12% (7e9, an
  // extrapolation 3.5x beyond the largest size).
  for (const SavingsPoint& p : r.points) {
    double truth = syn::true_savings(p.n, 3.2);
    double tol = p.n > 2e9 ? 0.15 : 0.10;
    std::printf("N %8.3g  S %.4f  truth %.4f  (%+.2f%%)  CI [%.4f, %.4f]\n", p.n, p.savings.value,
                truth, 100 * (p.savings.value / truth - 1), p.savings.ci_lo, p.savings.ci_hi);
    BOOST_TEST(p.savings.status == "ok");
    BOOST_TEST(std::abs(p.savings.value / truth - 1) < tol,
               "S(" << p.n << ") = " << p.savings.value);
    BOOST_TEST(p.savings.ci_lo <= truth);
    BOOST_TEST(truth <= p.savings.ci_hi);
    BOOST_TEST(p.savings.boot_ok == 200);
  }
  // Compute multiplier at equal loss on the compute-optimal frontiers.
  double cm =
      syn::baseline_law().compute_for_loss(3.2) / syn::candidate_law().compute_for_loss(3.2);
  std::printf("compute multiplier %.4f truth %.4f CI [%.4f, %.4f]\n", r.compute_multiplier.value,
              cm, r.compute_multiplier.ci_lo, r.compute_multiplier.ci_hi);
  BOOST_TEST(r.compute_multiplier.status == "ok");
  BOOST_TEST(std::abs(r.compute_multiplier.value / cm - 1) < 0.1);
  BOOST_TEST(r.compute_multiplier.ci_lo <= cm);
  BOOST_TEST(cm <= r.compute_multiplier.ci_hi);

  // The JSON has the savings.json shape of docs/DESIGN.md "Fit outputs".
  auto j = savings_json(r, 1e-3);
  BOOST_TEST(j["baseline"] == "dense");
  BOOST_TEST(j["candidate"] == "hybrid");
  BOOST_TEST(j["target_loss"] == 3.2);
  BOOST_TEST(j["points"].size() == 3u);
  BOOST_TEST(j["points"][0]["n"] == 1e8);
  BOOST_TEST(j["points"][0]["savings"].is_number());
  BOOST_TEST(j["points"][0]["ci95"].size() == 2u);
  BOOST_TEST(j["fits"]["dense"]["form"] == "chinchilla");
  BOOST_TEST(j["fits"]["hybrid"]["bootstrap"]["n"] == 200);
  BOOST_TEST(j["compute_optimal"]["dense"]["points"].size() == o.at_c.size());
}

BOOST_AUTO_TEST_CASE(unreachable_target_is_reported_not_computed) {
  // Noiseless data: the fits are the laws. At N = 1e9 the loss floors E + A/N^alpha are 2.1749
  // (baseline) and 2.1691 (candidate): L* = 2.172 is out of the baseline's reach only.
  Points b = syn::ladder(syn::baseline_law(), 0.0, 0, 0);
  Points c = syn::ladder(syn::candidate_law(), 0.0, 0, 1);
  SavingsOptions o;
  o.target = "2.172";
  o.at_n = {1e8, 1e9, 7e10};
  o.bootstrap = 20;
  o.per_size = false;
  o.fit.starts = {{0.5, 6, 0.35, 7.5, 0.35}};  // noiseless: one start finds the truth
  SavingsResult r = savings_from_points(b, c, o);
  BOOST_TEST(r.points[0].savings.status == "unreachable_both");  // floors ~2.61 at 1e8
  BOOST_TEST(r.points[1].savings.status == "unreachable_baseline");
  BOOST_TEST(std::isnan(r.points[1].savings.value));
  BOOST_TEST(std::isinf(r.points[1].savings.baseline));
  BOOST_TEST(std::isfinite(r.points[1].savings.candidate));
  BOOST_TEST(r.points[1].savings.boot_unreachable_baseline == 20);
  BOOST_TEST(r.points[2].savings.status == "ok");
  BOOST_TEST(std::abs(r.points[2].savings.value / syn::true_savings(7e10, 2.172) - 1) < 1e-3);
  BOOST_TEST(r.warnings.size() >= 2u);
  auto j = savings_json(r, 1e-3);
  BOOST_TEST(j["points"][1]["savings"].is_null());
  BOOST_TEST(j["points"][1]["status"] == "unreachable_baseline");
  BOOST_TEST(j["points"][1]["tokens_baseline"].is_null());
  BOOST_TEST(j["points"][1]["ci95"][1].is_null());  // +inf: unbounded
  BOOST_TEST(j["points"][2]["savings"].is_number());
}

BOOST_AUTO_TEST_CASE(compute_optimal_closed_forms) {
  Chinchilla law = syn::baseline_law();
  for (double c : {1e18, 1e21, 1e24}) {
    // Minimise L(N, C / 6N) over log N by golden-section search.
    double lo = std::log(1e3), hi = std::log(1e15);
    const double g = (std::sqrt(5.0) - 1) / 2;
    auto f = [&](double ln) { return law.loss(std::exp(ln), c / (6 * std::exp(ln))); };
    for (int it = 0; it < 200; ++it) {
      double m1 = hi - g * (hi - lo), m2 = lo + g * (hi - lo);
      (f(m1) < f(m2) ? hi : lo) = f(m1) < f(m2) ? m2 : m1;
    }
    double n = std::exp(0.5 * (lo + hi));
    BOOST_TEST(std::abs(law.n_opt(c) / n - 1) < 1e-6);
    BOOST_TEST(std::abs(law.d_opt(c) * law.n_opt(c) * 6 / c - 1) < 1e-12);
    BOOST_TEST(std::abs(law.loss_opt(c) - law.loss(law.n_opt(c), law.d_opt(c))) < 1e-12);
    BOOST_TEST(std::abs(law.compute_for_loss(law.loss_opt(c)) / c - 1) < 1e-9);
  }
  BOOST_TEST(std::isinf(law.compute_for_loss(law.E)));
  BOOST_TEST(std::isinf(law.tokens_for_loss(1e9, law.floor(1e9))));
  // D(N, L) inverts L(N, D).
  BOOST_TEST(std::abs(law.tokens_for_loss(1e9, law.loss(1e9, 2e10)) / 2e10 - 1) < 1e-9);
}

BOOST_AUTO_TEST_CASE(per_size_data_laws_recover_the_truth) {
  // On noiseless Chinchilla data, L_N(D) = (E + A/N^alpha) + B/D^beta exactly.
  Points b = syn::ladder(syn::baseline_law(), 0.0, 0, 0);
  Points c = syn::ladder(syn::candidate_law(), 0.0, 0, 1);
  SavingsOptions o;
  o.target = "3.4";
  o.bootstrap = 0;
  o.fit.starts = {{0.5, 6, 0.35, 7.5, 0.35}};  // the Chinchilla fits are not the point here
  SavingsResult r = savings_from_points(b, c, o);
  BOOST_TEST(r.baseline.sizes.size() == syn::kSizes.size());
  for (const PerSizeFit& s : r.baseline.sizes) {
    BOOST_TEST(s.skipped.empty());
    BOOST_TEST(s.n_points == 5);
    BOOST_TEST(std::abs(s.fit.value("E") / syn::baseline_law().floor(s.n) - 1) < 1e-4);
    BOOST_TEST(std::abs(s.fit.value("B") / syn::baseline_law().B - 1) < 1e-3);
    BOOST_TEST(std::abs(s.fit.value("beta") / syn::baseline_law().beta - 1) < 1e-4);
  }
  // Both ladders share their sizes, so every size pairs; the model-free savings equal S(N) where
  // L* is reachable.
  BOOST_TEST(r.per_size.size() == syn::kSizes.size());
  int ok = 0;
  for (const PerSizeSavings& p : r.per_size) {
    BOOST_TEST(p.n_baseline == p.n_candidate);
    if (p.savings.status != "ok") continue;
    ++ok;
    BOOST_TEST(std::abs(p.savings.value / syn::true_savings(p.n_baseline, 3.4) - 1) < 1e-3);
  }
  BOOST_TEST(ok >= 4);
  // A size with fewer than 3 budgets is skipped, with the reason.
  Points few = b;
  for (size_t i = 0; i < few.size(); ++i)
    if (few.n[i] == 2e7 && few.d[i] > 20 * 2e7) few.size_key[i] = "small";  // D/N = 40, 80
  SavingsResult r2 = savings_from_points(few, c, o);
  bool found = false;
  for (const PerSizeFit& s : r2.baseline.sizes)
    if (s.key == "small") {
      found = true;
      BOOST_TEST(!s.skipped.empty());
    }
  BOOST_TEST(found);
}

BOOST_AUTO_TEST_CASE(target_rules) {
  Points b = syn::ladder(syn::baseline_law(), 0.0, 0, 0);
  Points c = syn::ladder(syn::candidate_law(), 0.0, 0, 1);
  SavingsOptions o;
  o.bootstrap = 0;
  o.per_size = false;
  o.fit.starts = {{0.5, 6, 0.35, 7.5, 0.35}};
  std::vector<double> all = b.loss;
  all.insert(all.end(), c.loss.begin(), c.loss.end());
  std::sort(all.begin(), all.end());
  SavingsResult med = savings_from_points(b, c, o);
  BOOST_TEST(med.target_rule == "median");
  BOOST_TEST(med.target_loss == 0.5 * (all[29] + all[30]));
  o.target = "min";
  BOOST_TEST(savings_from_points(b, c, o).target_loss == all.front());
  o.target = "abc";
  BOOST_CHECK_THROW(savings_from_points(b, c, o), sl::Error);
}

BOOST_AUTO_TEST_CASE(growth_of_savings_over_the_trained_range) {
  // Three candidates against the baseline law, 5 sizes x 5 budgets each, 0.2% noise, L* = 3.2:
  // S rising 1.39 -> 1.65 over N = 5e7 .. 1e9 (syn::candidate_law), S falling 6.8 -> 1.4 (a
  // smaller A: the candidate's floor lower, most at small N), S flat at 2.64 (a smaller B alone:
  // S = (B_b / B_c)^(1/beta) at every N).
  const std::vector<double> sizes = {5e7, 1e8, 2e8, 5e8, 1e9};
  const Chinchilla base = syn::baseline_law();
  struct Case {
    Chinchilla cand;
    std::string verdict;
  };
  const std::vector<Case> cases = {
      {syn::candidate_law(), "grows"},
      {{base.E, 300.0, base.alpha, base.B, base.beta}, "falls"},
      {{base.E, base.A, base.alpha, 1500.0, base.beta}, "not resolved"}};
  for (const Case& k : cases) {
    Points b = syn::ladder(base, 0.002, 11, 0, sizes, syn::kRatios);
    Points c = syn::ladder(k.cand, 0.002, 11, 1, sizes, syn::kRatios);
    SavingsOptions o;
    o.target = "3.2";
    o.bootstrap = 200;
    o.per_size = false;
    const SavingsResult r = savings_from_points(b, c, o);
    const SavingsGrowth& g = r.growth;
    const double truth = (base.tokens_for_loss(1e9, 3.2) / k.cand.tokens_for_loss(1e9, 3.2)) /
                         (base.tokens_for_loss(5e7, 3.2) / k.cand.tokens_for_loss(5e7, 3.2));
    std::printf("growth %-12s G %.4f truth %.4f CI [%.4f, %.4f] (%d)\n", g.verdict.c_str(), g.value,
                truth, g.ci_lo, g.ci_hi, g.boot_n);
    // Between the smallest and largest trained N (the default points add 10x the largest, an
    // extrapolation, which G leaves out), and G is the ratio of those two points' S.
    BOOST_TEST(g.n_lo == 5e7);
    BOOST_TEST(g.n_hi == 1e9);
    BOOST_REQUIRE(r.points.size() == sizes.size() + 1);
    BOOST_TEST(g.value == r.points[4].savings.value / r.points[0].savings.value);
    BOOST_TEST(g.verdict == k.verdict);
    BOOST_TEST(g.ci_lo <= truth * 1.0001);
    BOOST_TEST(truth <= g.ci_hi * 1.0001);
    BOOST_TEST(g.boot_n == 200);
    const auto j = savings_json(r, 1e-3);
    BOOST_TEST(j["growth"]["verdict"] == k.verdict);
    BOOST_TEST(j["growth"]["ci95"].size() == 2u);
  }
  // Without the bootstrap: the value, no CI; with one trained size: undefined.
  Points b = syn::ladder(base, 0.002, 11, 0, sizes, syn::kRatios);
  Points c = syn::ladder(syn::candidate_law(), 0.002, 11, 1, sizes, syn::kRatios);
  SavingsOptions o;
  o.target = "3.2";
  o.bootstrap = 0;
  o.per_size = false;
  BOOST_TEST(savings_from_points(b, c, o).growth.verdict == "no CI");
  o.at_n = {2e8};
  BOOST_TEST(savings_from_points(b, c, o).growth.verdict == "undefined");
}
