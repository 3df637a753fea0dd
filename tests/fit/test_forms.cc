// Fit forms (lib/fit/form.h, lib/fit/forms/): the registry, every form's Jacobian against finite
// differences, and the data-constrained law of Muennighoff et al. (2023) recovered from synthetic
// ladders with repeated epochs, where a Chinchilla fit of the same points is biased.
#define BOOST_TEST_MODULE fit_forms
#include <boost/test/unit_test.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>

#include "core/error.h"
#include "core/rng.h"
#include "fit/form.h"
#include "fit/law.h"
#include "fit/report.h"

using namespace sl::fit;

namespace {

// A law with Muennighoff et al.'s fitted values (E, A, alpha, B, beta, R*_D), written out here
// independently of the form's code:
//   L = E + A / N^alpha + B / D'^beta,  D' = U + U R* (1 - exp(-(D / U - 1) / R*)).
struct Truth {
  double E = 1.87, A = 521, alpha = 0.35, B = 1488, beta = 0.353, r_star = 15.4;
  double effective(double d, double u) const {
    const double r = std::max(0.0, d / u - 1);
    return u + u * r_star * (1 - std::exp(-r / r_star));
  }
  double loss(double n, double d, double u) const {
    return E + A / std::pow(n, alpha) + B / std::pow(effective(d, u), beta);
  }
  std::vector<double> values() const { return {E, A, alpha, B, beta, r_star}; }
};

// Every size times every D/N ratio times every epoch count (U = D / epochs), losses times
// exp(sigma z).
Points repeated_ladder(const Truth& t, double sigma, uint64_t seed,
                       const std::vector<double>& epochs = {1, 4, 16}) {
  sl::Rng rng(seed, 0);
  Points p;
  for (double n : {2e7, 5e7, 1e8, 3e8})
    for (double ratio : {10.0, 20.0, 40.0})
      for (double ep : epochs) {
        const double d = ratio * n, u = d / ep;
        p.n.push_back(n);
        p.d.push_back(d);
        p.unique.push_back(u);
        p.loss.push_back(t.loss(n, d, u) * std::exp(sigma * rng.normal()));
        p.weight.push_back(1.0);
        p.where.push_back("synthetic");
        p.size_key.push_back(std::to_string(n));
      }
  p.n_rows_total = static_cast<int>(p.size());
  return p;
}

FitOptions quick() {
  FitOptions o;
  o.num_threads = 2;
  return o;
}

void print(const char* what, const FitResult& r) {
  std::printf("%-26s f %.4e  converged %d  cond %.3g  starts at best %d of %d, %.2f s:\n    ", what,
              r.objective, r.converged, r.condition_number, r.starts_at_best, r.starts, r.seconds);
  for (size_t k = 0; k < r.names.size(); ++k)
    std::printf(" %s %.5g", r.names[k].c_str(), r.values[k]);
  std::printf("  flags:");
  for (const auto& f : r.flags) std::printf(" %s", f.c_str());
  std::printf("\n");
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const sl::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_registry_holds_each_form_once) {
  std::vector<std::string> names;
  for (const Form* f : all_forms()) names.push_back(f->name());
  BOOST_TEST(names == (std::vector<std::string>{"chinchilla", "data_constrained", "data_law"}),
             boost::test_tools::per_element());
  BOOST_TEST(form("chinchilla").name_list() == "E, A, alpha, B, beta");
  BOOST_TEST(form("data_law").name_list() == "E, B, beta");
  BOOST_TEST(form("data_constrained").name_list() == "E, A, alpha, B, beta, R_D_star");
  BOOST_TEST(form("chinchilla").start_grid().size() == 4500u);
  BOOST_TEST(form("data_law").start_grid().size() == 150u);
  BOOST_TEST(form("data_constrained").start_grid().size() == 13500u);
  const std::string msg = error_of([] { form("broken_power_law"); });
  BOOST_TEST(msg ==
             "no fit form 'broken_power_law' (forms: chinchilla, data_constrained, "
             "data_law)");
  for (const Form* f : all_forms()) {
    // Theta maps: natural(internal(v)) = v.
    const std::vector<double> v = f->name() == "data_law" ? std::vector<double>{1.8, 900, 0.3}
                                                          : f->natural(f->start_grid()[1234]);
    const std::vector<double> back = f->natural(f->internal(v));
    for (size_t j = 0; j < v.size(); ++j)
      BOOST_TEST(std::abs(back[j] - v[j]) <= 1e-14 * std::max(1.0, std::abs(v[j])));
    BOOST_TEST(f->e_index() == 0);
  }
}

BOOST_AUTO_TEST_CASE(every_form_jacobian_matches_finite_differences) {
  // The fitter trusts each form's analytic d log L / d theta (the compressed cost, the per-point
  // reference, the condition number): check it by central differences at points with and
  // without repetition, and at several thetas.
  const Points p = repeated_ladder(Truth{}, 0.0, 1, {1, 2, 8});
  for (const Form* f : all_forms()) {
    const LawData d = f->data(p);
    const auto grid = f->start_grid();
    for (size_t s : {size_t{7}, grid.size() / 3, grid.size() - 11}) {
      std::vector<double> theta = grid[s];
      // Move off the grid's round values (e.g. exponent 0).
      for (size_t j = 0; j < theta.size(); ++j) theta[j] += 0.037 * (j + 1);
      Eigen::ArrayXd lp, lp_plus, lp_minus;
      Eigen::MatrixXd jac, unused;
      FormScratch scratch;
      BOOST_TEST_REQUIRE(f->evaluate(theta.data(), d, lp, jac, scratch));
      BOOST_TEST_REQUIRE(jac.rows() == static_cast<Eigen::Index>(d.size()));
      BOOST_TEST_REQUIRE(jac.cols() == f->num_params());
      double worst = 0;
      for (int j = 0; j < f->num_params(); ++j) {
        const double h = 1e-6 * std::max(1.0, std::abs(theta[j]));
        std::vector<double> tp = theta, tm = theta;
        tp[j] += h;
        tm[j] -= h;
        BOOST_TEST_REQUIRE(f->evaluate(tp.data(), d, lp_plus, unused, scratch));
        BOOST_TEST_REQUIRE(f->evaluate(tm.data(), d, lp_minus, unused, scratch));
        const Eigen::ArrayXd fd = (lp_plus - lp_minus) / (2 * h);
        worst = std::max(worst, (fd - jac.col(j).array()).abs().maxCoeff() /
                                    std::max(1e-3, jac.col(j).array().abs().maxCoeff()));
      }
      std::printf("%-16s start %5zu: max |analytic - finite difference| %.2e (relative)\n",
                  f->name().c_str(), s, worst);
      BOOST_TEST(worst < 1e-6, f->name() << " start " << s);
    }
  }
}

BOOST_AUTO_TEST_CASE(data_constrained_law_recovers_repeated_epochs) {
  // 4 sizes x 3 budgets x 3 epoch counts (1, 4, 16) from the law above, 0.1% noise. The
  // data-constrained fit recovers every parameter, R*_D included. Chinchilla, fitted to the same
  // points with D for D', cannot tell 16 epochs of U tokens from 16 U fresh ones: its objective is
  // far worse, and it overpredicts the loss of fresh-data runs (the repeated runs' higher losses
  // pull its data term up).
  const Truth t;
  const Points p = repeated_ladder(t, 0.001, 3);
  const LawData dc = form("data_constrained").data(p);
  const FitResult r = fit_law(dc, quick());
  print("data_constrained", r);
  BOOST_TEST(r.converged);
  BOOST_TEST(r.flags.empty());
  const std::vector<double> want = t.values();
  // Largest errors over seeds 1..10 of this design: E 1.0%, A 20%, alpha 3.5%, B 13%, beta 2.0%,
  // R*_D 1.8% (A, B trade off with the exponents over 1.2 decades of N); tolerances with margin.
  const std::map<std::string, double> tol = {{"E", 0.02}, {"A", 0.3},     {"alpha", 0.06},
                                             {"B", 0.25}, {"beta", 0.04}, {"R_D_star", 0.05}};
  for (size_t k = 0; k < r.names.size(); ++k) {
    std::printf("    %-8s %10.5g  truth %10.5g  (%+.2f%%)\n", r.names[k].c_str(), r.values[k],
                want[k], 100 * (r.values[k] / want[k] - 1));
    BOOST_TEST(std::abs(r.values[k] / want[k] - 1) < tol.at(r.names[k]), r.names[k]);
  }
  const FitResult c = fit_law(chinchilla_data(p), quick());
  print("chinchilla, same points", c);
  BOOST_TEST(c.objective > 15 * r.objective);  // seeds 1..10: 27x to 49x
  // Mean relative error of the predicted loss of fresh-data runs (U = D) over 5 sizes x 4
  // budgets, up to 3x beyond the largest size; seeds 1..10: Chinchilla +0.46% to +0.60%, the
  // data-constrained law within +-0.06%.
  double bias_r = 0, bias_c = 0;
  int m = 0;
  for (double n : {2e7, 5e7, 1e8, 3e8, 1e9})
    for (double ratio : {10.0, 20.0, 40.0, 80.0}) {
      const double d = ratio * n, truth = t.loss(n, d, d);
      auto predict = [&](const FitResult& f) {
        const std::vector<double>& v = f.values;  // E, A, alpha, B, beta first in both forms
        return v[0] + v[1] / std::pow(n, v[2]) + v[3] / std::pow(d, v[4]);
      };
      bias_r += predict(r) / truth - 1;
      bias_c += predict(c) / truth - 1;
      ++m;
    }
  bias_r /= m;
  bias_c /= m;
  std::printf("fresh-data loss bias: data_constrained %+.3f%%, chinchilla %+.3f%%\n", 100 * bias_r,
              100 * bias_c);
  BOOST_TEST(std::abs(bias_r) < 1e-3);
  BOOST_TEST(bias_c > 3e-3);

  // fit.json: the form, R*_D among the parameters, what repetition is worth.
  const auto j = fit_json(r, nullptr, 1e-3);
  BOOST_TEST(j["form"] == "data_constrained");
  BOOST_TEST(j["params"]["R_D_star"].get<double>() == r.value("R_D_star"));
  BOOST_TEST(j["repetition"]["max_effective_epochs"].get<double>() == 1 + r.value("R_D_star"));
  const double rs = r.value("R_D_star");
  BOOST_TEST(std::abs(j["repetition"]["effective_epochs"][1]["effective"].get<double>() -
                      (1 + rs * (1 - std::exp(-3 / rs)))) < 1e-12);  // 4 epochs
  BOOST_TEST(j["compute_optimal"]["a"].get<double>() ==
             r.value("beta") / (r.value("alpha") + r.value("beta")));
}

BOOST_AUTO_TEST_CASE(data_constrained_bootstrap_brackets_r_star) {
  // The bootstrap of the generic fitter works for the new form: every replicate accounted for,
  // and the 95% CI of R*_D (0.3% noise) brackets the truth.
  const Truth t;
  const Points p = repeated_ladder(t, 0.003, 4);
  const LawData d = form("data_constrained").data(p);
  const FitResult full = fit_law(d, quick());
  const BootstrapResult b = bootstrap_law(d, full, quick(), 200, 7);
  const int j = form("data_constrained").index("R_D_star");
  std::printf("R_D_star %.4g, 95%% CI [%.4g, %.4g] from %d of %d replicates\n", full.values[j],
              b.ci_lo[j], b.ci_hi[j], b.n_used, b.n);
  BOOST_TEST(b.n_failed == 0);
  BOOST_TEST(b.n_used == b.n - b.n_underdetermined);
  BOOST_TEST(b.ci_lo[j] < t.r_star);
  BOOST_TEST(t.r_star < b.ci_hi[j]);
  BOOST_TEST(b.ci_hi[j] / b.ci_lo[j] < 3);  // measured, not a free direction
}

BOOST_AUTO_TEST_CASE(without_repetition_the_law_is_chinchilla_and_r_star_unidentified) {
  // One epoch everywhere: D' = D whatever R*_D, so the fit is Chinchilla's (same objective and
  // law) and says that it cannot measure R*_D.
  const Points p = repeated_ladder(Truth{}, 0.003, 5, {1});
  const LawData d = form("data_constrained").data(p);
  BOOST_TEST(underdetermined(d) ==
             "0 distinct points repeat their data (D > U; need 2 to measure R_D_star)");
  FitOptions o = quick();
  // Chinchilla's grid with R*_D = 15 (the grid's R* values all reach the same optimum here).
  for (const auto& s : hoffmann_grid(2)) {
    o.starts.push_back(s);
    o.starts.back().push_back(std::log(15.0));
  }
  const FitResult r = fit_law(d, o);
  const FitResult c = fit_law(chinchilla_data(p), quick());
  print("data_constrained, 1 epoch", r);
  print("chinchilla, 1 epoch", c);
  BOOST_TEST(std::abs(r.objective / c.objective - 1) < 1e-6);
  for (const char* name : {"E", "A", "alpha", "B", "beta"})
    BOOST_TEST(std::abs(r.value(name) / c.value(name) - 1) < 1e-3, name);
  BOOST_TEST(std::count(r.flags.begin(), r.flags.end(), "underdetermined") == 1);
  BOOST_TEST(std::count(r.flags.begin(), r.flags.end(), "ill_conditioned") == 1);
}

BOOST_AUTO_TEST_CASE(data_constrained_needs_unique_tokens) {
  Points p = repeated_ladder(Truth{}, 0.0, 6);
  p.unique.clear();
  BOOST_TEST(error_of([&] { form("data_constrained").data(p); }) ==
             "data_constrained fit: no unique-token counts U (give --unique-col; a collected "
             "sweep has unique_tokens)");
}
