// WSD budget branches (docs/DESIGN.md "Schedules and token budgets"): one train.budgets run must
// record, for every budget, the held-out loss of a standalone WSD run to that budget (same seed).
// On the CPU with the same thread count the branch replays the standalone run's steps exactly, so
// the losses are compared bitwise; and a run preempted repeatedly (also inside cooldown branches)
// and resumed must log exactly what the uninterrupted run logs.
#define BOOST_TEST_MODULE wsd_budgets
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "runlog/runlog.h"
#include "train/config.h"

namespace fs = std::filesystem;

namespace {

using sl::test::slurp;

// SL_EXE with args, stdout to /dev/null.
pid_t spawn(const std::vector<std::string>& args) {
  sl::SpawnOptions so;
  so.out = sl::Redirect::null();
  return sl::spawn(sl::test::scalinglab_argv(args), so).pid;
}

int wait_exit(pid_t pid) { return sl::wait_child(pid).code; }

struct Fixture {
  fs::path dir;
  Fixture() {
    dir = fs::temp_directory_path() / ("sl_wsd_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream train(dir / "train.txt"), val(dir / "val.txt");
    train << sl::test::licenses({"GPL-3", "Apache-2.0"});
    val << sl::test::licenses({"GPL-2"});
    // 128 tokens per step; budgets of 30, 50 and 80 steps: the cooldowns of 50 (from step 40)
    // and 80 (from step 64) overlap the stable branch past the earlier budgets' ends.
    std::ofstream cfg(dir / "tiny.toml");
    cfg << "[model]\narch = \"hybrid\"\nd_model = 32\nn_layers = 4\nn_heads = 2\n"
        << "[train]\nseq_len = 32\nbatch_size = 4\nlr = 3e-3\nschedule = \"wsd\"\n"
        << "warmup_tokens = 1000\neval_every = 20\neval_tokens = 2048\ncheckpoint_every = 7\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  ~Fixture() { fs::remove_all(dir); }
  std::vector<std::string> args(const std::string& out, const std::string& set) const {
    return {"train",
            "--config",
            (dir / "tiny.toml").string(),
            "--out",
            (dir / out).string(),
            "--quiet",
            "--threads",
            "1",
            "--set",
            set};
  }
  sl::RunLog log(const std::string& out) const {
    return sl::read_runlog((dir / out / "log.h5").string());
  }
};

const char* kBudgets = "train.budgets=[3840, 6400, 10240]";

}  // namespace

BOOST_AUTO_TEST_CASE(budget_losses_equal_standalone_wsd_runs) {
  Fixture f;
  BOOST_REQUIRE_EQUAL(wait_exit(spawn(f.args("multi", kBudgets))), 0);
  sl::RunLog multi = f.log("multi");
  BOOST_TEST(multi.attrs.status == "completed");
  BOOST_REQUIRE_EQUAL(multi.budget_tokens.size(), 3u);
  // The main line is the standalone run to the last budget: steps 1..80, none logged twice.
  BOOST_REQUIRE_EQUAL(multi.train.size(), 80u);
  for (size_t i = 0; i < multi.train.size(); ++i) BOOST_REQUIRE_EQUAL(multi.train[i].step, i + 1);
  const int64_t budgets[] = {3840, 6400, 10240};
  for (int i = 0; i < 3; ++i) {
    const std::string out = "single" + std::to_string(i);
    BOOST_REQUIRE_EQUAL(wait_exit(spawn(f.args(out, "train.tokens=" + std::to_string(budgets[i])))),
                        0);
    sl::RunLog single = f.log(out);
    BOOST_REQUIRE_EQUAL(single.budget_tokens.size(), 1u);
    BOOST_TEST(multi.budget_tokens[i] == budgets[i]);
    BOOST_TEST(single.budget_tokens[0] == budgets[i]);
    BOOST_TEST_MESSAGE("budget " << budgets[i] << ": branch " << multi.budget_loss[i]
                                 << ", standalone " << single.budget_loss[0]);
    BOOST_TEST(multi.budget_loss[i] == single.budget_loss[0]);  // bitwise on the CPU
    BOOST_TEST(single.budget_loss[0] == single.eval_loss.back());
  }
  // The budgets differ from each other (the branches really trained).
  BOOST_TEST(multi.budget_loss[0] > multi.budget_loss[2]);
}

// SIGTERM at staggered times until the run completes: every resume (from a checkpoint on the
// stable branch, from one taken right after a branch, or after a branch was abandoned) must give
// the uninterrupted run's logs exactly.
BOOST_AUTO_TEST_CASE(preempted_budget_run_resumes_exactly) {
  Fixture f;
  BOOST_REQUIRE_EQUAL(wait_exit(spawn(f.args("ref", kBudgets))), 0);
  int preempted = 0;
  for (int attempt = 0; attempt < 60; ++attempt) {
    std::vector<std::string> a = f.args("cut", kBudgets);
    if (attempt > 0) a.push_back("--resume");
    pid_t pid = spawn(a);
    // Signal only once the run is live (its log says running): before that the process may still
    // be loading its libraries on a busy machine, when SIGTERM's default action would kill it.
    int status = 0;
    bool exited = false;
    for (int k = 0; k < 12000 && !exited; ++k) {
      exited = waitpid(pid, &status, WNOHANG) == pid;
      std::error_code ec;
      if (!exited && fs::exists(f.dir / "cut" / "log.h5", ec)) {
        try {
          if (f.log("cut").attrs.status == "running") break;
        } catch (const std::exception&) {  // between the resume's rewrite and its rename
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!exited) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + 37 * (attempt % 7)));
      kill(pid, SIGTERM);
      status = 0;
      waitpid(pid, &status, 0);
    }
    BOOST_REQUIRE(WIFEXITED(status));
    BOOST_REQUIRE_EQUAL(WEXITSTATUS(status), 0);
    sl::RunLog l = f.log("cut");
    if (l.attrs.status == "completed") break;
    BOOST_REQUIRE(l.attrs.status == "preempted");
    ++preempted;
  }
  BOOST_TEST_MESSAGE("preempted " << preempted << " times");
  BOOST_TEST(preempted >= 2);
  sl::RunLog ref = f.log("ref"), cut = f.log("cut");
  BOOST_REQUIRE(cut.attrs.status == "completed");
  BOOST_REQUIRE_EQUAL(cut.train.size(), ref.train.size());
  for (size_t i = 0; i < ref.train.size(); ++i) {
    BOOST_REQUIRE_EQUAL(cut.train[i].step, ref.train[i].step);
    BOOST_REQUIRE_EQUAL(cut.train[i].loss, ref.train[i].loss);
  }
  BOOST_REQUIRE(cut.budget_tokens == ref.budget_tokens);
  BOOST_TEST(cut.budget_loss == ref.budget_loss, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bad_budgets_are_rejected) {
  auto err = [](const std::string& set) {
    try {
      sl::parse_config(
          "[train]\nschedule = \"wsd\"\nwarmup_tokens = 1000\n"
          "[data]\ntrain = \"t\"\nval = \"v\"\n",
          "x.toml", "", {set});
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(err("train.budgets=[5000, 4000]").find("train.budgets[1]") != std::string::npos);
  BOOST_TEST(err("train.budgets=[500, 8000]").find("warmup_tokens") != std::string::npos);
  BOOST_TEST(err("train.budgets=[\"a\"]").find("train.budgets[0]") != std::string::npos);
  BOOST_TEST(err("train.schedule=\"cosine\"").find("no error") != std::string::npos);
  sl::TrainConfig c = sl::parse_config(
      "[train]\nschedule = \"wsd\"\nbudgets = [2e6, 4e6]\n"
      "[data]\ntrain = \"t\"\nval = \"v\"\n",
      "x.toml", "", {});
  BOOST_TEST(c.tokens == 4000000);
  BOOST_TEST(sl::parse_config(sl::to_toml(c), "y", "", {}).budgets == c.budgets,
             boost::test_tools::per_element());
}

namespace {

// SL_EXE with args, stdout to /dev/null, stderr to `err`; the exit code.
int run_capturing(const std::vector<std::string>& args, const fs::path& err,
                  const std::vector<std::pair<std::string, std::string>>& env = {}) {
  sl::SpawnOptions so;
  so.out = sl::Redirect::null();
  so.err = sl::Redirect::truncate(err.string());
  so.env = env;
  return wait_exit(sl::spawn(sl::test::scalinglab_argv(args), so).pid);
}

void require_same_log(const sl::RunLog& got, const sl::RunLog& want) {
  BOOST_REQUIRE_EQUAL(got.train.size(), want.train.size());
  for (size_t i = 0; i < want.train.size(); ++i) {
    BOOST_REQUIRE_EQUAL(got.train[i].step, want.train[i].step);
    BOOST_REQUIRE_EQUAL(got.train[i].loss, want.train[i].loss);
  }
  BOOST_REQUIRE(got.budget_tokens == want.budget_tokens);
  BOOST_TEST(got.budget_loss == want.budget_loss, boost::test_tools::per_element());
}

}  // namespace

// A budget added to a run still on its stable trunk (killed after its step-14 checkpoint, before
// any branch) goes on from that checkpoint: the log is the planned run's, the change recorded.
BOOST_AUTO_TEST_CASE(a_budget_added_on_the_trunk_goes_on_from_the_latest_checkpoint) {
  Fixture f;
  const fs::path err = f.dir / "err.txt";
  BOOST_REQUIRE_EQUAL(run_capturing(f.args("cut", "train.budgets=[3840, 6400]"), err,
                                    {{"SL_TEST_CRASH", "after_checkpoint:14"}}),
                      128 + SIGKILL);
  std::vector<std::string> a = f.args("cut", kBudgets);
  a.push_back("--resume");
  BOOST_REQUIRE_EQUAL(run_capturing(a, err), 0);
  BOOST_TEST(slurp(err).empty(), slurp(err));  // nothing to say: no going back
  BOOST_REQUIRE_EQUAL(wait_exit(spawn(f.args("ref", kBudgets))), 0);
  const sl::RunLog cut = f.log("cut");
  BOOST_TEST(cut.attrs.config_changes.find("step 14: train.tokens 6400 -> 10240") == 0,
             cut.attrs.config_changes);
  require_same_log(cut, f.log("ref"));
}

// A run initialised from an HF directory cannot be retrained from its seed: a budget whose branch
// point it has passed, with no stable checkpoint before it, is refused in one line naming the
// budget, and the run is left as it was.
BOOST_AUTO_TEST_CASE(a_passed_branch_point_of_an_hf_initialised_run_is_refused) {
  Fixture f;
  const fs::path err = f.dir / "err.txt";
  BOOST_REQUIRE_EQUAL(wait_exit(spawn(f.args("base", "train.tokens=1280"))), 0);
  BOOST_REQUIRE_EQUAL(run_capturing({"export", (f.dir / "base").string(), "--format", "hf", "--out",
                                     (f.dir / "hf").string()},
                                    err),
                      0);
  std::vector<std::string> a = f.args("r", "train.budgets=[3840, 6400]");
  a.insert(a.end(), {"--init-from", (f.dir / "hf").string()});
  BOOST_REQUIRE_EQUAL(run_capturing(a, err), 0);
  const std::string log0 = slurp(f.dir / "r" / "log.h5");
  std::vector<std::string> b = f.args("r", "train.budgets=[2560, 3840, 6400]");
  b.push_back("--resume");
  BOOST_TEST(run_capturing(b, err) == 2);
  const std::string e = slurp(err);
  BOOST_TEST(std::count(e.begin(), e.end(), '\n') == 1, e);
  BOOST_TEST(e.find("budget 2560 tokens branches at step") != std::string::npos, e);
  BOOST_TEST(e.find("cannot be retrained from step 0") != std::string::npos, e);
  BOOST_TEST(slurp(f.dir / "r" / "log.h5") == log0);
  BOOST_TEST(f.log("r").attrs.status == "completed");
}
