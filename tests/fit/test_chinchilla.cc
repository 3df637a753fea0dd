// Reproduces Epoch AI's Huber-sum fit of the Chinchilla data (Besiroglu et al. 2024) and its
// bootstrap CIs; checks the two Ceres formulations agree.
#define BOOST_TEST_MODULE fit_chinchilla
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <map>

#include "fit/chinchilla.h"
#include "fit/law.h"
#include "fit/points.h"
#include "fit/table.h"

using namespace sl::fit;

namespace {

const char* kData = SL_SOURCE_DIR "/../shared/data/chinchilla_epoch/svg_extracted_data.csv";

// Epoch AI's 240 points: drop the 5 highest losses, D = C / (6 N).
Points epoch_points() {
  DataSpec spec;
  spec.n_col = "Model Size";
  spec.flops_col = "Training FLOP";
  spec.loss_col = "loss";
  spec.drop_highest = 5;
  return extract_points(read_csv(kData), spec);
}

// Published values (../shared/data/chinchilla_epoch/README.md).
const std::map<std::string, double> kPublished = {
    {"A", 477.8}, {"B", 2143.4}, {"E", 1.8172}, {"alpha", 0.3473}, {"beta", 0.3672}};
const std::map<std::string, std::pair<double, double>> kPublishedCi = {{"E", {1.769, 1.871}},
                                                                       {"alpha", {0.317, 0.373}},
                                                                       {"beta", {0.331, 0.415}},
                                                                       {"A", {285, 744}},
                                                                       {"B", {1042, 5810}}};

}  // namespace

BOOST_AUTO_TEST_CASE(reproduces_epoch_fit_and_bootstrap) {
  Points p = epoch_points();
  BOOST_TEST(p.size() == 240u);
  BOOST_TEST(p.n_dropped_highest == 5);
  LawData data = chinchilla_data(p);
  FitOptions opt;
  FitResult fit = fit_law(data, opt);
  std::printf("fit: %d starts, %d at best, %.3f s, objective %.6e, converged %d (%s)\n", fit.starts,
              fit.starts_at_best, fit.seconds, fit.objective, fit.converged,
              fit.termination.c_str());
  for (auto& [name, want] : kPublished) {
    double got = fit.value(name);
    std::printf("  %-5s %10.4f  published %10.4f  (%+.3f%%)\n", name.c_str(), got, want,
                100 * (got / want - 1));
    BOOST_TEST(std::abs(got / want - 1) < 0.005, name << " = " << got << ", published " << want);
  }
  BOOST_TEST(fit.starts == 4500);
  BOOST_TEST(fit.converged);
  BOOST_TEST(fit.bound_hit.empty());
  BOOST_TEST(fit.flags.empty());  // a well-posed optimum: no identifiability flags
  BOOST_TEST(std::abs(fit.objective / 1.0183e-3 - 1) < 1e-3);
  BOOST_TEST(fit.starts_at_best > 45);  // Epoch AI: ~8% of the starts with L-BFGS-B

  BootstrapResult b = bootstrap_law(data, fit, opt, 4000, /*seed=*/0);
  std::printf("bootstrap: %d replicates, %.3f s, %d failed, %d not converged\n", b.n, b.seconds,
              b.n_failed, b.n_not_converged);
  BOOST_TEST(b.n_failed == 0);
  for (size_t k = 0; k < b.names.size(); ++k) {
    auto [lo, hi] = kPublishedCi.at(b.names[k]);
    std::printf(
        "  %-5s se %9.4f  ci95 [%9.4f, %9.4f]  published [%9.4f, %9.4f]  (%+.1f%%, %+.1f%%)\n",
        b.names[k].c_str(), b.se[k], b.ci_lo[k], b.ci_hi[k], lo, hi, 100 * (b.ci_lo[k] / lo - 1),
        100 * (b.ci_hi[k] / hi - 1));
    // Every endpoint within 5%, except B's lower one: over seeds 0..5 it lands 4.6..9.7% above
    // Epoch AI's 1042 (all others within 3%), seed 0 giving 4.6%; the test does not rely on that
    // seed's luck. A likely (unverified) cause: our refits converge tightly from the full-data
    // optimum, while scipy's quasi-Newton refits may stop earlier and leave a wider low-B tail.
    const double tol_lo = b.names[k] == "B" ? 0.10 : 0.05;
    BOOST_TEST(std::abs(b.ci_lo[k] / lo - 1) < tol_lo, b.names[k] << " CI low " << b.ci_lo[k]);
    BOOST_TEST(std::abs(b.ci_hi[k] / hi - 1) < 0.05, b.names[k] << " CI high " << b.ci_hi[k]);
  }
}

BOOST_AUTO_TEST_CASE(formulations_agree) {
  // The textbook formulation (one residual block per point, ceres::HuberLoss, autodiff of the
  // templated residual) and the compressed one reach the same optimum from the same starts.
  LawData data = chinchilla_data(epoch_points());
  FitOptions compressed, per_point;
  per_point.formulation = Formulation::kPerPoint;
  per_point.max_iterations = 2000;
  const std::vector<std::vector<double>> starts = {{0.5, 5, 0.5, 5, 0.5}, {0, 10, 1, 10, 1}};
  for (const auto& s : starts) {
    FitResult a = fit_law_from(data, compressed, s);
    FitResult b = fit_law_from(data, per_point, s);
    std::printf("compressed f %.9e (%d iterations), per-point f %.9e (%d iterations)\n",
                a.objective, a.iterations, b.objective, b.iterations);
    BOOST_TEST(std::abs(a.objective / b.objective - 1) < 1e-6);
    for (size_t k = 0; k < a.values.size(); ++k)
      BOOST_TEST(std::abs(a.values[k] / b.values[k] - 1) < 2e-3, a.names[k]);
  }
  // Both objectives are the same function: evaluate the per-point one at the compressed optimum.
  FitResult a = fit_law_from(data, compressed, starts[0]);
  FitOptions one = per_point;
  one.max_iterations = 1;
  FitResult b = fit_law_from(data, one, a.theta);
  BOOST_TEST(b.objective <= a.objective * (1 + 1e-9));
  BOOST_TEST(b.objective >= a.objective * (1 - 1e-6));
}

BOOST_AUTO_TEST_CASE(results_do_not_depend_on_threads) {
  LawData data = chinchilla_data(epoch_points());
  FitOptions one, two;
  one.num_threads = 1;
  two.num_threads = 2;
  // A 200-start slice of the grid keeps this quick.
  std::vector<std::vector<double>> grid = hoffmann_grid(2);
  for (size_t i = 0; i < grid.size(); i += 22) one.starts.push_back(grid[i]);
  two.starts = one.starts;
  FitResult a = fit_law(data, one), b = fit_law(data, two);
  BOOST_TEST(a.theta == b.theta);
  BOOST_TEST(a.starts_at_best == b.starts_at_best);
  BootstrapResult ba = bootstrap_law(data, a, one, 50, 42),
                  bb = bootstrap_law(data, b, two, 50, 42);
  BOOST_TEST(ba.samples == bb.samples);
  BootstrapResult bc = bootstrap_law(data, a, one, 50, 43);
  BOOST_TEST(ba.samples != bc.samples);
}
