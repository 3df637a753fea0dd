// Data parallelism over NCCL, end to end through `scalinglab train --nproc N` (train/dist.h):
//   - one rank through NCCL gives the plain run's losses bit for bit (the collectives and the
//     overlap change nothing);
//   - with two GPUs (skipped, saying so, on a one-GPU machine): 200 steps at the same global
//     batch follow the one-GPU loss curve within bf16 noise (10-step means within 1%), and a run
//     preempted on 2 GPUs resumes on 1 and ends where the 1-GPU run ends.
// NCCL_NVLS_ENABLE=0 is the launcher's default (no NVLink multicast on shared machines).
#define BOOST_TEST_MODULE cuda_dist
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/gpu_test.h"
#include "runlog/runlog.h"

using sl::test::GpuOrSkip;
BOOST_TEST_GLOBAL_FIXTURE(GpuOrSkip);

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Dir {
  fs::path path;
  Dir() {
    path = fs::temp_directory_path() / ("sl_cuda_dist_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
    std::ofstream train(path / "train.txt");
    for (const char* f : {"GPL-3", "Apache-2.0", "GFDL-1.3", "LGPL-3"})
      train << slurp(std::string("/usr/share/common-licenses/") + f);
    std::ofstream(path / "val.txt") << slurp("/usr/share/common-licenses/GPL-2");
    // 200 steps x 16 x 128 tokens of a small hybrid, constant lr after warmup (so a run
    // stopped half way and resumed is the same schedule).
    std::ofstream(path / "small.toml")
        << "[model]\narch = \"hybrid\"\nd_model = 128\nn_layers = 4\nn_heads = 2\n"
        << "[train]\nseq_len = 128\nbatch_size = 16\ntokens = 409600\nlr = 3e-3\n"
        << "schedule = \"constant\"\nwarmup_tokens = 40960\neval_every = 50\n"
        << "eval_tokens = 16384\ncheckpoint_every = 50\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  ~Dir() { fs::remove_all(path); }
  int train(const std::string& out, const std::string& extra) const {
    const std::string cmd = std::string(SL_EXE) + " train --config " +
                            (path / "small.toml").string() + " --out " + (path / out).string() +
                            " --device cuda --quiet " + extra + " 2>&1";
    BOOST_TEST_MESSAGE("$ " << cmd);
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  }
  sl::RunLog log(const std::string& out) const {
    return sl::read_runlog((path / out / "log.h5").string());
  }
};

std::vector<double> means10(const sl::RunLog& l) {
  std::vector<double> m;
  for (size_t i = 0; i + 10 <= l.train.size(); i += 10) {
    double s = 0;
    for (size_t j = i; j < i + 10; ++j) s += l.train[j].loss;
    m.push_back(s / 10);
  }
  return m;
}

int gpus() { return sl::cuda_device_count(); }

}  // namespace

BOOST_AUTO_TEST_CASE(one_rank_through_nccl_equals_the_plain_run) {
  Dir d;
  BOOST_REQUIRE_EQUAL(d.train("plain", "--set train.tokens=102400"), 0);
  BOOST_REQUIRE_EQUAL(d.train("nccl1", "--set train.tokens=102400 --nproc 1"), 0);
  const sl::RunLog a = d.log("plain"), b = d.log("nccl1");
  BOOST_REQUIRE_EQUAL(a.train.size(), 50u);
  BOOST_REQUIRE_EQUAL(b.train.size(), a.train.size());
  for (size_t i = 0; i < a.train.size(); ++i) {
    BOOST_TEST(b.train[i].loss == a.train[i].loss);
    BOOST_TEST(b.train[i].grad_norm == a.train[i].grad_norm);
  }
  BOOST_TEST(b.eval_loss == a.eval_loss, boost::test_tools::per_element());
  BOOST_TEST(b.attrs.status == "completed");
}

BOOST_AUTO_TEST_CASE(two_gpus_follow_the_one_gpu_curve_and_resume_on_one) {
  if (gpus() < 2) {
    std::printf("GPU_SKIP: two_gpus_*: %d CUDA device(s), 2 needed\n", gpus());
    return;
  }
  Dir d;
  BOOST_REQUIRE_EQUAL(d.train("one", ""), 0);
  BOOST_REQUIRE_EQUAL(d.train("two", "--nproc 2"), 0);
  const sl::RunLog one = d.log("one"), two = d.log("two");
  BOOST_REQUIRE_EQUAL(one.train.size(), 200u);
  BOOST_REQUIRE_EQUAL(two.train.size(), 200u);
  const std::vector<double> m1 = means10(one), m2 = means10(two);
  double worst = 0;
  for (size_t i = 0; i < m1.size(); ++i) worst = std::max(worst, std::abs(m2[i] / m1[i] - 1));
  BOOST_TEST_MESSAGE("2 GPUs vs 1: worst 10-step mean rel diff " << worst << ", final val "
                                                               << two.eval_loss.back() << " vs "
                                                               << one.eval_loss.back());
  BOOST_TEST(worst < 1e-2);
  BOOST_TEST(std::abs(two.eval_loss.back() / one.eval_loss.back() - 1) < 1e-2);
  BOOST_TEST(one.train.back().loss < 0.8 * one.train.front().loss);  // it learned

  // Half the run on 2 GPUs, the rest on 1 from its checkpoint.
  BOOST_REQUIRE_EQUAL(d.train("mixed", "--nproc 2 --set train.tokens=204800"), 0);
  BOOST_REQUIRE_EQUAL(d.train("mixed", "--resume"), 0);
  const sl::RunLog mixed = d.log("mixed");
  BOOST_REQUIRE_EQUAL(mixed.train.size(), 200u);
  for (size_t i = 0; i < mixed.train.size(); ++i)
    BOOST_REQUIRE_EQUAL(mixed.train[i].step, static_cast<int64_t>(i + 1));
  BOOST_TEST_MESSAGE("2 then 1 GPU: final val " << mixed.eval_loss.back());
  BOOST_TEST(std::abs(mixed.eval_loss.back() / one.eval_loss.back() - 1) < 1e-2);
}
