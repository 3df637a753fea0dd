// Fixed parameters (FitOptions::fixed, `--fix alpha=0.34`): held exactly, left out of the degrees
// of freedom and of the Jacobian, never reported as a bound, the same optimum as the joint fit's
// fixed alpha; bad values name the parameter.
#define BOOST_TEST_MODULE fit_fixed
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "fit/joint.h"
#include "fit/law.h"
#include "synthetic_data.h"

using namespace sl::fit;
namespace syn = sl::fit::testing;

namespace {

template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const sl::Error& e) {
    return e.what();
  }
  return "";
}

FitOptions quick() {
  FitOptions o;
  o.num_threads = 2;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fixed_alpha_is_held_and_matches_the_joint_fit) {
  const LawData db = chinchilla_data(
      syn::ladder(syn::baseline_law(), 0.005, 6, 0, {0.85e6, 1.6e6, 3e6}, {10, 20, 40}));
  const LawData dc = chinchilla_data(
      syn::ladder(syn::candidate_law(), 0.005, 6, 1, {0.85e6, 1.6e6, 3e6}, {10, 20, 40}));
  FitOptions o = quick();
  const FitResult free_b = fit_law(db, o), free_c = fit_law(dc, o);
  o.fixed["alpha"] = 0.34;
  const FitResult fb = fit_law(db, o);
  std::printf("fixed alpha: f %.9e (free %.9e), alpha %.6f, dof %d, cond %.3g\n", fb.objective,
              free_b.objective, fb.value("alpha"), fb.dof, fb.condition_number);
  BOOST_TEST(fb.value("alpha") == 0.34);
  BOOST_TEST(fb.converged);
  BOOST_TEST(fb.bound_hit.empty());
  BOOST_TEST(fb.dof == 9 - 4);
  BOOST_TEST(fb.objective >= free_b.objective * (1 - 1e-9));
  // The joint model without sharing, alpha fixed: two independent 4-parameter fits by another
  // code path (JointCost, no active set). Same optimum for the baseline.
  JointOptions jo;
  jo.fit = quick();
  jo.share_e = false;
  jo.fixed_alpha = 0.34;
  const JointResult j = fit_joint(db, dc, free_b, free_c, jo);
  std::printf("joint fixed alpha: baseline f %.9e\n", j.baseline.objective);
  BOOST_TEST(std::abs(j.baseline.objective / fb.objective - 1) < 1e-6);
  BOOST_TEST(std::abs(j.baseline.value("beta") / fb.value("beta") - 1) < 1e-3);
  // The bootstrap keeps it fixed in every refit.
  const BootstrapResult b = bootstrap_law(db, fb, o, 20, 3);
  for (int k = 0; k < b.n; ++k)
    if (std::isfinite(b.samples[k][2])) BOOST_TEST(b.samples[k][2] == 0.34);
}

BOOST_AUTO_TEST_CASE(bad_fixed_values_name_the_parameter) {
  const LawData d = chinchilla_data(syn::ladder(syn::baseline_law(), 0.005, 1, 0));
  FitOptions o = quick();
  o.fixed["gamma"] = 1;
  BOOST_TEST(error_of([&] { fit_law(d, o); }).find("unknown parameter 'gamma'") !=
             std::string::npos);
  o.fixed.clear();
  o.fixed["E"] = -1;
  BOOST_TEST(error_of([&] { fit_law(d, o); }) == "fixed value of E must be finite and > 0");
  o.fixed.clear();
  o.fixed["alpha"] = 0.3;
  o.bounds["alpha"] = {0.1, 1};
  BOOST_TEST(error_of([&] { fit_law(d, o); }) == "parameter alpha is both fixed and bounded");
}
