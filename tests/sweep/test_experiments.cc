// The sweep files of the repository (experiments/, sweeps/) parse and expand, and
// experiments/ladder_l0_l3.toml is the study its header describes: 2 architectures x 4 sizes as
// 8 WSD runs, each with its D/N = 5, 10, 20, 40 budgets as branches, on the linux-c corpus, the
// tokens its header states, and memory estimates that fit one GPU many times over.
#define BOOST_TEST_MODULE sweep_experiments
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "core/error.h"
#include "model/spec.h"
#include "sweep/sweep.h"
#include "train/memory.h"

namespace fs = std::filesystem;

BOOST_AUTO_TEST_CASE(every_sweep_file_of_the_repository_expands) {
  int n = 0;
  for (const char* folder : {"experiments", "sweeps"})
    for (const auto& e : fs::directory_iterator(fs::path(SL_SOURCE_DIR) / folder)) {
      if (e.path().extension() != ".toml") continue;
      std::ifstream f(e.path());
      std::stringstream text;
      text << f.rdbuf();
      if (text.str().find("[sweep]") == std::string::npos) continue;  // a run config
      const sl::sweep::Sweep s = sl::sweep::load_sweep(e.path().string());
      BOOST_TEST(!s.runs.empty(), e.path());
      ++n;
    }
  BOOST_TEST(n >= 4);
}

BOOST_AUTO_TEST_CASE(ladder_l0_l3_is_the_study_its_header_states) {
  const sl::sweep::Sweep s =
      sl::sweep::load_sweep(std::string(SL_SOURCE_DIR) + "/experiments/ladder_l0_l3.toml");
  BOOST_REQUIRE_EQUAL(s.runs.size(), 8u);
  const std::map<std::string, std::string> hybrid = {
      {"L0", "GGGA"}, {"L1", "GGGAGA"}, {"L2", "GGGAGGGA"}, {"L3", "GGGAGGGA"}};
  std::map<std::string, double> trained;  // per arch
  int64_t i = 0;
  for (const char* arch : {"dense", "hybrid"})
    for (const char* size : {"L0", "L1", "L2", "L3"}) {
      const sl::sweep::SweepRun& r = s.runs[static_cast<size_t>(i++)];
      const std::string what = std::string(arch) + " " + size;
      BOOST_TEST(r.arch == arch, what);
      BOOST_TEST(r.size == size, what);
      const sl::TrainConfig& c = r.config;
      BOOST_TEST(c.model.pattern == (r.arch == "dense" ? std::string(c.model.pattern.size(), 'A')
                                                       : hybrid.at(size)),
                 what);
      BOOST_TEST(c.model.vocab_size == 256);
      BOOST_TEST(c.schedule == "wsd");
      BOOST_TEST(c.tokens_per_step() == 32 * 1024);
      BOOST_TEST(c.train_data.find("data/corpus/linux-c/train_*.bin") != std::string::npos);
      BOOST_TEST(c.val_data.find("data/corpus/linux-c/val_*.bin") != std::string::npos);
      // The budgets: D/N = 5, 10, 20, 40 in whole steps, all of them branches of one run.
      BOOST_REQUIRE_EQUAL(r.budgets.size(), 4u);
      BOOST_TEST(c.budgets == r.budgets, boost::test_tools::per_element());
      const double N = static_cast<double>(r.n_params_nonembedding);
      const int64_t ratios[] = {5, 10, 20, 40};
      for (size_t k = 0; k < 4; ++k)
        BOOST_TEST(r.budgets[k] == std::llround(ratios[k] * N / 32768) * 32768, what);
      trained[arch] += static_cast<double>(r.budgets[3]) +
                       0.2 * static_cast<double>(r.budgets[0] + r.budgets[1] + r.budgets[2]);
      // Memory: 1.4 to 7.4 GiB each (header), far below one H200.
      const double gib = static_cast<double>(sl::estimate_device_bytes(c).total()) / (1 << 30);
      BOOST_TEST(gib > 1.0, what);
      BOOST_TEST(gib < 8.0, what);
    }
  // The header's N, as docs/MODEL.md "Ladder" gives them, and its totals: dense 1.15G, hybrid
  // 1.29G tokens trained.
  BOOST_TEST(s.runs[3].n_params_nonembedding == 14'168'448);
  BOOST_TEST(s.runs[7].n_params_nonembedding == 15'989'256);
  BOOST_TEST(std::abs(trained["dense"] / 1e9 - 1.15) < 0.005);
  BOOST_TEST(std::abs(trained["hybrid"] / 1e9 - 1.29) < 0.005);
}

// `sweep launch --only`: the selected runs in plan order; a selector that is malformed or matches
// nothing is an error naming it (a typo must not launch nothing, or everything).
BOOST_AUTO_TEST_CASE(only_selects_runs_by_arch_size_or_run_id) {
  const sl::sweep::Sweep s =
      sl::sweep::load_sweep(std::string(SL_SOURCE_DIR) + "/experiments/ladder_l0_l3.toml");
  auto names = [](const std::vector<sl::sweep::SweepRun>& runs) {
    std::string t;
    for (const auto& r : runs) t += r.arch + ":" + r.size + " ";
    return t;
  };
  BOOST_TEST(names(sl::sweep::select_runs(s.runs, "dense:*,hybrid:L0,hybrid:L2")) ==
             "dense:L0 dense:L1 dense:L2 dense:L3 hybrid:L0 hybrid:L2 ");
  BOOST_TEST(names(sl::sweep::select_runs(s.runs, "*:L3")) == "dense:L3 hybrid:L3 ");
  BOOST_TEST(names(sl::sweep::select_runs(s.runs, "hybrid:L1," + s.runs[0].run_id)) ==
             "dense:L0 hybrid:L1 ");
  BOOST_TEST(sl::sweep::select_runs(s.runs, "*:*").size() == s.runs.size());
  auto error_of = [&](const std::string& spec) {
    try {
      sl::sweep::select_runs(s.runs, spec);
    } catch (const sl::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(error_of("dense:*,hybrid:L9").find("selector 'hybrid:L9' matches no run") !=
             std::string::npos);
  BOOST_TEST(error_of("dense").find("selector 'dense' matches no run") != std::string::npos);
  for (const char* bad : {":L0", "dense:", "dense:L0:x", "dense:L0,,hybrid:L0"})
    BOOST_TEST(error_of(bad).find("is not ARCH:SIZE") != std::string::npos, bad);
  BOOST_TEST(error_of("").find("no selector") != std::string::npos);
}
