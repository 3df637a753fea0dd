// Bounded fits reach the bounded optimum: on a small 3 x 3 ladder per architecture with OLMo-core's
// bounds (E in [0, min L], A, B in [1e-6, 1e4], alpha, beta in [0.01, 2], weights 6 N D), the full
// fit and bootstrap-style refits match scipy's L-BFGS-B (tests/reference/bounded_lbfgsb.py, values
// in tests/reference/small_ladder_lbfgsb.json) and say converged only where the KKT conditions
// hold.
#define BOOST_TEST_MODULE fit_bounded
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "common/files.h"
#include "fit/law.h"
#include "fit/points.h"
#include "fit/table.h"

using namespace sl::fit;

namespace {

const std::string kReference = std::string(SL_SOURCE_DIR) + "/tests/reference";

Points arch_points(const std::string& arch) {
  DataSpec spec;
  spec.group_col = "arch";
  spec.group = arch;
  spec.flops_weighted = true;
  return extract_points(read_csv(kReference + "/small_ladder.csv"), spec);
}

FitOptions olmo_core_bounds(const Points& p) {
  double min_loss = p.loss[0];
  for (double l : p.loss) min_loss = std::min(min_loss, l);
  FitOptions o;
  o.num_threads = 2;
  o.bounds["E"] = {0.0, min_loss};
  o.bounds["A"] = {1e-6, 1e4};
  o.bounds["B"] = {1e-6, 1e4};
  o.bounds["alpha"] = {0.01, 2.0};
  o.bounds["beta"] = {0.01, 2.0};
  return o;
}

nlohmann::json reference() {
  return nlohmann::json::parse(sl::test::slurp(kReference + "/small_ladder_lbfgsb.json"));
}

}  // namespace

BOOST_AUTO_TEST_CASE(bounded_fit_matches_lbfgsb) {
  const nlohmann::json ref = reference();
  for (const char* arch : {"dense", "hybrid"}) {
    const Points p = arch_points(arch);
    const LawData data = chinchilla_data(p);
    const FitResult fit = fit_law(data, olmo_core_bounds(p));
    const nlohmann::json& r = ref["fits"][arch];
    const double want = r["objective"].get<double>();
    std::printf("%-6s ours f %.10e  L-BFGS-B f %.10e  (%+.2e rel)  converged %d  flags:", arch,
                fit.objective, want, fit.objective / want - 1, fit.converged);
    for (const auto& f : fit.flags) std::printf(" %s", f.c_str());
    std::printf("\n");
    BOOST_TEST(fit.objective <= want * (1 + 1e-8), arch);
    BOOST_TEST(fit.objective >= want * (1 - 1e-6), arch);  // else the reference is wrong
    BOOST_TEST(fit.converged, arch);
    BOOST_TEST(std::abs(fit.value("A") / 1e4 - 1) < 1e-12, arch << ": A held on its upper bound");
    for (const char* name : {"alpha", "B", "beta"}) {
      const double w = r["params"][name].get<double>();
      BOOST_TEST(std::abs(fit.value(name) / w - 1) < 1e-3, arch << " " << name);
    }
  }
}

BOOST_AUTO_TEST_CASE(bootstrap_refits_match_lbfgsb_from_the_same_start) {
  // The bootstrap's refit (bootstrap_refit from the full-data optimum, polish tolerances) of 30
  // fixed resamples per architecture is not worse than L-BFGS-B's refit from the same optimum.
  const nlohmann::json ref = reference();
  for (const char* arch : {"dense", "hybrid"}) {
    const Points p = arch_points(arch);
    const LawData data = chinchilla_data(p);
    const FitOptions opt = olmo_core_bounds(p);
    const FitResult full = fit_law(data, opt);
    int worse = 0, n = 0, below_global = 0;
    for (const auto& rs : ref["fits"][arch]["resamples"]) {
      const auto counts = rs["counts"].get<std::vector<int>>();
      BOOST_TEST_REQUIRE(counts.size() == data.size());
      const LawData rep = reweighted(data, counts);
      const FitResult r = bootstrap_refit(rep, opt, full.theta);
      const double local = rs["local"].get<double>(), best = rs["best"].get<double>();
      ++n;
      if (r.objective > local * (1 + 1e-6) + 1e-15) {
        ++worse;
        std::printf("  %s resample %d: ours %.6e, L-BFGS-B from the same start %.6e\n", arch, n,
                    r.objective, local);
      }
      below_global += r.objective <= best * (1 + 1e-6) + 1e-15;
    }
    std::printf(
        "%-6s %d resamples: worse than L-BFGS-B's local refit on %d; at its multi-start "
        "best on %d\n",
        arch, n, worse, below_global);
    BOOST_TEST(n == 30);
    BOOST_TEST(worse == 0, arch);
  }
}

BOOST_AUTO_TEST_CASE(collapsed_and_underdetermined_resamples_are_counted_apart) {
  // The hybrid ladder's E collapses to 0 under the bounds; its bootstrap labels every replicate,
  // leaves out the underdetermined ones and builds the CIs from the rest.
  const Points p = arch_points("hybrid");
  const LawData data = chinchilla_data(p);
  const FitOptions opt = olmo_core_bounds(p);
  const FitResult full = fit_law(data, opt);
  BOOST_TEST(std::count(full.flags.begin(), full.flags.end(), "E_collapsed") == 1);
  BOOST_TEST(full.value("E") < 1e-9);
  const BootstrapResult b = bootstrap_law(data, full, opt, 200, 0);
  std::printf(
      "bootstrap: used %d, underdetermined %d, collapsed %d, runaway %d, not converged "
      "%d, failed %d\n",
      b.n_used, b.n_underdetermined, b.n_collapsed, b.n_runaway, b.n_not_converged, b.n_failed);
  BOOST_TEST(b.n_underdetermined > 0);
  BOOST_TEST(b.n_collapsed > 0);
  BOOST_TEST(b.n_used == b.n - b.n_underdetermined - b.n_failed);
  int ok = 0;
  for (int k = 0; k < b.n; ++k) {
    ok += b.status[k] == "ok";
    if (b.status[k] == "underdetermined") BOOST_TEST(std::isnan(b.samples[k][0]));
  }
  BOOST_TEST(ok + b.n_underdetermined + b.n_collapsed + b.n_runaway + b.n_not_converged +
                 b.n_failed ==
             b.n);
  for (const std::string& w : bootstrap_warnings(b)) std::printf("  warning: %s\n", w.c_str());
}

BOOST_AUTO_TEST_CASE(a_start_on_an_inactive_bound_ends_inside) {
  // alpha bounded below just under the dense optimum (0.638) and started on that bound: the
  // bound is inactive at the optimum, so the fit must leave it (u-space start off the bound, then
  // the active-set polish releasing alpha if it came back) and reach the same optimum.
  const Points p = arch_points("dense");
  const LawData data = chinchilla_data(p);
  FitOptions opt = olmo_core_bounds(p);
  const FitResult full = fit_law(data, opt);
  opt.bounds["alpha"] = {0.6, 2.0};
  std::vector<double> start = full.theta;
  start[2] = 0.6;
  const FitResult r = fit_law_from(data, opt, start);
  std::printf("start alpha 0.6 on its bound: alpha %.6f (full fit %.6f), f %.9e (%.9e)\n",
              r.value("alpha"), full.value("alpha"), r.objective, full.objective);
  BOOST_TEST(r.converged);
  BOOST_TEST(r.bound_hit.size() == 1u);  // A only
  BOOST_TEST(r.objective <= full.objective * (1 + 1e-8));
  BOOST_TEST(std::abs(r.value("alpha") - full.value("alpha")) < 1e-5);
}

BOOST_AUTO_TEST_CASE(e_bounded_by_the_lowest_loss_of_each_data_set) {
  // Bound::hi_is_min_loss (`--bound E=0:min`) is E <= min L of the data being fitted: the same fit
  // as the explicit per-architecture value.
  for (const char* arch : {"dense", "hybrid"}) {
    const Points p = arch_points(arch);
    const LawData data = chinchilla_data(p);
    const FitOptions explicit_min = olmo_core_bounds(p);
    FitOptions by_rule = explicit_min;
    by_rule.bounds["E"] = Bound{};
    by_rule.bounds["E"].lo = 0;
    by_rule.bounds["E"].hi_is_min_loss = true;
    const FitResult a = fit_law(data, explicit_min), b = fit_law(data, by_rule);
    BOOST_TEST(a.theta == b.theta, arch);
  }
}
