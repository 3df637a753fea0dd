// Fit forms (lib/fit/form.h, lib/fit/forms/): the registry, and every form's Jacobian against
// finite differences.
#define BOOST_TEST_MODULE fit_forms
#include <boost/test/unit_test.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "core/error.h"
#include "fit/form.h"
#include "fit/law.h"
#include "synthetic_data.h"

using namespace sl::fit;

namespace {

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
  BOOST_TEST(names == (std::vector<std::string>{"chinchilla", "data_law"}),
             boost::test_tools::per_element());
  BOOST_TEST(form("chinchilla").name_list() == "E, A, alpha, B, beta");
  BOOST_TEST(form("data_law").name_list() == "E, B, beta");
  BOOST_TEST(form("chinchilla").start_grid().size() == 4500u);
  BOOST_TEST(form("data_law").start_grid().size() == 150u);
  const std::string msg = error_of([] { form("broken_power_law"); });
  BOOST_TEST(msg == "no fit form 'broken_power_law' (forms: chinchilla, data_law)");
  for (const Form* f : all_forms()) {
    // Theta maps: natural(internal(v)) = v.
    const std::vector<double> v = f->natural(f->start_grid()[123]);
    const std::vector<double> back = f->natural(f->internal(v));
    for (size_t j = 0; j < v.size(); ++j)
      BOOST_TEST(std::abs(back[j] - v[j]) <= 1e-14 * std::max(1.0, std::abs(v[j])));
    BOOST_TEST(f->e_index() == 0);
  }
}

BOOST_AUTO_TEST_CASE(every_form_jacobian_matches_finite_differences) {
  // The fitter trusts each form's analytic d log L / d theta (the compressed cost, the per-point
  // reference, the condition number): check it by central differences at several thetas.
  const Points p = testing::ladder(testing::baseline_law(), 0.0, 1, 0);
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
