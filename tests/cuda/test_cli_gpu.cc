// The GPU through the command line: a checkpoint written on the GPU resumes on the CPU and the
// reverse (same parameter names and layout, fp32 masters and AdamW state in both), and the local
// sweep executor spreading runs over the GPUs present (`sweep launch --device cuda --gpus G
// --per-gpu k`).
#define BOOST_TEST_MODULE cuda_cli
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "common/files.h"
#include "cuda/gpu_test.h"
#include "runlog/runlog.h"

using sl::test::GpuOrSkip;
BOOST_TEST_GLOBAL_FIXTURE(GpuOrSkip);

namespace fs = std::filesystem;

namespace {

using sl::test::slurp;

struct Dir {
  sl::test::TempDir tmp{"sl_cuda_cli_"};
  fs::path path = tmp.path;
  Dir() {
    std::ofstream(path / "train.txt") << sl::test::licenses({"GPL-3", "Apache-2.0"});
    std::ofstream(path / "val.txt") << sl::test::licenses({"GPL-2"});
    // 60 steps of 8 x 64 tokens, constant lr after warmup: a run cut at step 30 and continued
    // follows the same schedule as one that never stopped.
    std::ofstream(path / "run.toml")
        << "[model]\narch = \"hybrid\"\nd_model = 64\nn_layers = 4\nn_heads = 2\n"
        << "[train]\nseq_len = 64\nbatch_size = 8\ntokens = 30720\nlr = 2e-3\n"
        << "schedule = \"constant\"\nwarmup_tokens = 5120\neval_every = 30\n"
        << "eval_tokens = 8192\ncheckpoint_every = 10\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  int sh(const std::string& args, const std::string& env = "") const {
    const std::string cmd = env + std::string(SL_EXE) + " " + args + " 2>&1";
    BOOST_TEST_MESSAGE("$ " << cmd);
    const int st = std::system(cmd.c_str());
    return sl::test::exit_code(st);
  }
  int train(const std::string& out, const std::string& extra, const std::string& env = "") const {
    return sh("train --config " + (path / "run.toml").string() + " --out " + (path / out).string() +
                  " --quiet --threads 4 " + extra,
              env);
  }
  sl::RunLog log(const std::string& out) const {
    return sl::read_runlog((path / out / "log.h5").string());
  }
};

void check_continuous(const sl::RunLog& l, size_t n) {
  BOOST_REQUIRE_EQUAL(l.train.size(), n);
  for (size_t i = 0; i < n; ++i) BOOST_REQUIRE_EQUAL(l.train[i].step, static_cast<int64_t>(i + 1));
  BOOST_TEST(l.attrs.status == "completed");
}

}  // namespace

BOOST_AUTO_TEST_CASE(checkpoints_move_between_gpu_and_cpu) {
  Dir d;
  // The first half ends with the process killed right after the checkpoint of step 30 (the
  // trainer's test hook; exit 128 + SIGKILL), so the resume continues the same config on the
  // other device (a changed `train.tokens` would be refused: it drops a reported budget).
  const std::string cut = "SL_TEST_CRASH=after_checkpoint:30 ";
  BOOST_REQUIRE_EQUAL(d.train("gpu", "--device cuda"), 0);
  BOOST_REQUIRE_EQUAL(d.train("cpu", "--device cpu"), 0);
  BOOST_REQUIRE_EQUAL(d.train("gpu_cpu", "--device cuda", cut), 128 + 9);
  BOOST_REQUIRE_EQUAL(d.train("gpu_cpu", "--device cpu --resume"), 0);
  BOOST_REQUIRE_EQUAL(d.train("cpu_gpu", "--device cpu", cut), 128 + 9);
  BOOST_REQUIRE_EQUAL(d.train("cpu_gpu", "--device cuda --resume"), 0);
  const sl::RunLog gpu = d.log("gpu"), cpu = d.log("cpu"), gc = d.log("gpu_cpu"),
                   cg = d.log("cpu_gpu");
  for (const sl::RunLog* l : {&gpu, &cpu, &gc, &cg}) check_continuous(*l, 60);
  // The first halves replay their device's run exactly; the second halves continue from the
  // other device's state, so they stay within the GPU-vs-CPU (bf16) difference of the runs.
  for (size_t i = 0; i < 30; ++i) {
    BOOST_REQUIRE_EQUAL(gc.train[i].loss, gpu.train[i].loss);
    BOOST_REQUIRE_EQUAL(cg.train[i].loss, cpu.train[i].loss);
  }
  auto mean = [](const sl::RunLog& l, size_t a, size_t b) {
    double s = 0;
    for (size_t i = a; i < b; ++i) s += l.train[i].loss;
    return s / static_cast<double>(b - a);
  };
  const double g = mean(gpu, 30, 60), c = mean(cpu, 30, 60);
  const double noise = std::abs(g / c - 1);
  BOOST_TEST_MESSAGE("steps 31-60 mean loss: gpu " << g << ", cpu " << c << ", gpu->cpu "
                                                   << mean(gc, 30, 60) << ", cpu->gpu "
                                                   << mean(cg, 30, 60));
  const double bar = std::max(1e-2, 2 * noise);
  BOOST_TEST(std::abs(mean(gc, 30, 60) / c - 1) < bar);
  BOOST_TEST(std::abs(mean(cg, 30, 60) / g - 1) < bar);
  BOOST_TEST(std::isfinite(gc.eval_loss.back()));
  BOOST_TEST(std::isfinite(cg.eval_loss.back()));
}

BOOST_AUTO_TEST_CASE(local_sweep_spreads_runs_over_the_gpus) {
  Dir d;
  const int G = std::min(2, sl::cuda_device_count());
  std::ofstream(d.path / "sweep.toml")
      << "[sweep]\nname = \"gpu\"\npatterns = [\"AAAA\", \"GGGA\"]\nbudgets = [10240, 20480]\n"
      << "[[sweep.shape]]\nd_model = 32\nn_layers = 4\nn_heads = 2\n"
      << "[[sweep.shape]]\nd_model = 64\nn_layers = 4\nn_heads = 2\n"
      << "[train]\nschedule = \"wsd\"\nlr = 3e-3\nseq_len = 64\nbatch_size = 8\n"
      << "warmup_tokens = 2048\neval_every = 20\neval_tokens = 4096\ncheckpoint_every = 10\n"
      << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  const std::string sw = (d.path / "sw").string();
  // With 2 or more GPUs present, the default (--gpus omitted: all of them) is used on a 2-GPU
  // machine and --gpus 2 elsewhere.
  const std::string gpus_arg = sl::cuda_device_count() == G ? "" : " --gpus " + std::to_string(G);
  BOOST_REQUIRE_EQUAL(d.sh("sweep launch " + (d.path / "sweep.toml").string() + " --dir " + sw +
                           " --device cuda --per-gpu 2" + gpus_arg),
                      0);
  std::set<std::string> devices;
  int completed = 0;
  for (const auto& e : fs::directory_iterator(fs::path(sw) / "runs")) {
    const sl::RunLog l = sl::read_runlog((e.path() / "log.h5").string());
    completed += l.attrs.status == "completed";
    devices.insert(l.attrs.device);
    BOOST_TEST(l.budget_tokens.size() == 2u);
  }
  BOOST_TEST(completed == 4);
  BOOST_TEST_MESSAGE("devices used: " << devices.size() << " (" << G << " GPUs offered)");
  BOOST_TEST(static_cast<int>(devices.size()) == G);
}
