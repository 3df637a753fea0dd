// Savings on a small ladder: extrapolation is guarded (default sizes, factors, warnings), an
// undefined S gets no CI and every CI its replicate count; per-size laws pair by size name, never
// see the Chinchilla bounds, and say when they are exact.
#define BOOST_TEST_MODULE fit_savings_guard
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>

#include "fit/report.h"
#include "fit/savings.h"
#include "fit/table.h"
#include "synthetic_data.h"

using namespace sl::fit;
namespace syn = sl::fit::testing;

namespace {

const std::string kLadder = std::string(SL_SOURCE_DIR) + "/tests/reference/small_ladder.csv";

bool any_warning(const SavingsResult& r, const std::string& part) {
  return std::any_of(r.warnings.begin(), r.warnings.end(),
                     [&](const std::string& w) { return w.find(part) != std::string::npos; });
}

// 3 sizes x 3 budgets per architecture with the same size names s0..s2 but a 7% larger N for the
// candidate, as in a real sweep.
void small_ladders(Points* b, Points* c) {
  *b = syn::ladder(syn::baseline_law(), 0.005, 5, 0, {2e7, 5e7, 1e8}, {10, 20, 40});
  *c = syn::ladder(syn::candidate_law(), 0.005, 5, 1, {2.14e7, 5.35e7, 1.07e8}, {10, 20, 40});
  for (Points* p : {b, c})
    for (size_t i = 0; i < p->size(); ++i) p->size_key[i] = "s" + std::to_string(i / 3);
}

SavingsOptions quick(int bootstrap) {
  SavingsOptions o;
  o.bootstrap = bootstrap;
  o.fit.num_threads = 2;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(default_sizes_are_the_trained_ones_and_ten_times_the_largest) {
  Points b, c;
  small_ladders(&b, &c);
  const SavingsResult r = savings_from_points(b, c, quick(0));
  BOOST_TEST_REQUIRE(r.points.size() == 4u);
  const double want[3] = {std::sqrt(2e7 * 2.14e7), std::sqrt(5e7 * 5.35e7),
                          std::sqrt(1e8 * 1.07e8)};
  for (int k = 0; k < 3; ++k) {
    BOOST_TEST(std::abs(r.points[k].n / want[k] - 1) < 1e-12);
    BOOST_TEST(r.points[k].extrapolation == 1.0);
  }
  BOOST_TEST(std::abs(r.points[3].n / 1.07e9 - 1) < 1e-12);
  BOOST_TEST(std::abs(r.points[3].extrapolation - 10) < 1e-9);
  BOOST_TEST(!any_warning(r, "extrapolated"));  // 10x is the guard itself, not past it
  const auto j = savings_json(r, 1e-3);
  BOOST_TEST(j["points"][3]["extrapolation"].get<double>() > 9.99);
  BOOST_TEST(j["trained_n"][1].get<double>() == 1.07e8);
}

BOOST_AUTO_TEST_CASE(far_extrapolation_warns_with_its_factor) {
  // The old default --at-n (1e8 ... 7e10) on a ladder trained at 2e7-1.07e8: 7e10 is 654x out.
  Points b, c;
  small_ladders(&b, &c);
  SavingsOptions o = quick(0);
  o.at_n = {1e8, 7e10, 1e6};
  const SavingsResult r = savings_from_points(b, c, o);
  BOOST_TEST(r.points[0].extrapolation == 1.0);
  BOOST_TEST(std::abs(r.points[1].extrapolation - 7e10 / 1.07e8) < 1e-6);
  BOOST_TEST(std::abs(r.points[2].extrapolation - 20) < 1e-9);  // below the smallest: 2e7 / 1e6
  BOOST_TEST(any_warning(r, "S(N = 7e+10) is extrapolated 654.2x"));
  BOOST_TEST(any_warning(r, "S(N = 1e+06) is extrapolated 20x"));
  BOOST_TEST(!any_warning(r, "S(N = 1e+08) is extrapolated"));
}

BOOST_AUTO_TEST_CASE(undefined_savings_get_no_ci_and_every_ci_its_replicates) {
  // L* = 2.6 is below the baseline's loss floor E + A / N^alpha at N = 2e7 (2.69) but not at 1e9.
  Points b, c;
  small_ladders(&b, &c);
  SavingsOptions o = quick(60);
  o.target = "2.6";
  o.at_n = {2e7, 1e9};
  const SavingsResult r = savings_from_points(b, c, o);
  const Ratio& undefined = r.points[0].savings;
  BOOST_TEST(undefined.status != "ok");
  BOOST_TEST(std::isnan(undefined.ci_lo));
  BOOST_TEST(std::isnan(undefined.ci_hi));
  const Ratio& s = r.points[1].savings;
  BOOST_TEST_REQUIRE(s.status == "ok");
  BOOST_TEST(std::isfinite(s.ci_lo));
  BOOST_TEST(s.boot_n == s.boot_ok + s.boot_unreachable_baseline + s.boot_unreachable_candidate);
  BOOST_TEST(s.boot_n > 0);
  BOOST_TEST(s.boot_n <= 60);
  const auto j = savings_json(r, 1e-3);
  BOOST_TEST(j["points"][0]["ci95"].is_null());
  BOOST_TEST(j["points"][0]["ci95_note"].get<std::string>().find("no CI") == 0u);
  BOOST_TEST(j["points"][1]["ci95_replicates"].get<int>() == s.boot_n);
}

BOOST_AUTO_TEST_CASE(per_size_pairs_by_size_name_and_is_marked_exact) {
  // small_ladder.csv: sizes s0..s2 with N 850000.. (dense) and 909500.. (hybrid). Keyed by N
  // nothing would pair; by the sweep's size column all three do, without --size-col.
  const Table t = read_csv(kLadder);
  DataSpec spec;
  spec.group_col = "arch";
  spec.flops_weighted = true;
  const SavingsResult r = savings_analysis(t, spec, quick(0));
  BOOST_TEST_REQUIRE(r.per_size.size() == 3u);
  BOOST_TEST(r.per_size[0].key == "s0");
  BOOST_TEST(r.per_size[0].n_baseline == 850000.0);
  BOOST_TEST(r.per_size[0].n_candidate == 909500.0);
  for (const ArchFit* a : {&r.baseline, &r.candidate})
    for (const PerSizeFit& s : a->sizes) BOOST_TEST(s.exact, a->name << " " << s.key);
  BOOST_TEST(any_warning(r, "6 of 6 are exact"));
  const auto j = savings_json(r, 1e-3);
  BOOST_TEST(j["per_size"]["dense"][0]["exact"].get<bool>());
  // Sizes named by a column whose values differ between architectures: nothing pairs, and says so.
  DataSpec by_n = spec;
  by_n.size_cols = {"n_params_nonembedding"};
  const SavingsResult u = savings_analysis(t, by_n, quick(0));
  BOOST_TEST(u.per_size.empty());
  BOOST_TEST(any_warning(u, "per-size savings: no size of dense"));
}

BOOST_AUTO_TEST_CASE(chinchilla_bounds_do_not_reach_the_per_size_laws) {
  const Table t = read_csv(kLadder);
  DataSpec spec;
  spec.group_col = "arch";
  spec.flops_weighted = true;
  const SavingsResult free = savings_analysis(t, spec, quick(0));
  SavingsOptions o = quick(0);
  // Bounds on A and alpha name no per-size parameter (they used to abort); an E bound under the
  // per-size E_N must not move them.
  o.fit.bounds["A"] = {1e-6, 1e4};
  o.fit.bounds["alpha"] = {0.01, 2};
  o.fit.bounds["E"] = {0, 1.0};
  const SavingsResult bounded = savings_analysis(t, spec, o);
  BOOST_TEST_REQUIRE(bounded.baseline.sizes.size() == free.baseline.sizes.size());
  bool some_e_above = false;
  for (size_t k = 0; k < free.baseline.sizes.size(); ++k) {
    const double e_free = free.baseline.sizes[k].fit.value("E");
    const double e_bounded = bounded.baseline.sizes[k].fit.value("E");
    some_e_above |= e_free > 1.0;
    BOOST_TEST(e_bounded == e_free, "size " << k);
    BOOST_TEST(bounded.baseline.sizes[k].fit.bound_hit.empty());
  }
  BOOST_TEST(some_e_above);                            // the E bound would have bitten
  BOOST_TEST(bounded.baseline.fit.value("E") <= 1.0);  // it does apply to the Chinchilla fit
}
