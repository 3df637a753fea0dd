// End-to-end tests of `scalinglab train` as a process: resume equivalence, SIGTERM preemption,
// kill -9, injected divergence, bad input. They drive the real binary (SL_EXE) and read the real
// log.h5 and checkpoint files.
#define BOOST_TEST_MODULE train_cli
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "runlog/checkpoint.h"
#include "runlog/runlog.h"

namespace fs = std::filesystem;

namespace {

struct Proc {
  pid_t pid = -1;
  std::string err_path;
};

// Starts SL_EXE with args, stdout to /dev/null, stderr to a file.
Proc spawn(const std::vector<std::string>& args, const std::string& err_path) {
  Proc p;
  p.err_path = err_path;
  sl::SpawnOptions so;
  so.out = sl::Redirect::null();
  so.err = sl::Redirect::truncate(err_path);
  p.pid = sl::spawn(sl::test::scalinglab_argv(args), so).pid;
  return p;
}

int wait_exit(const Proc& p) { return sl::wait_child(p.pid).code; }

using sl::test::slurp;

int run(const std::vector<std::string>& args, std::string* err = nullptr) {
  static int counter = 0;
  std::string ep = "/tmp/sl_cli_err_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  int rc = wait_exit(spawn(args, ep));
  if (err) *err = slurp(ep);
  fs::remove(ep);
  return rc;
}

// A fresh scratch directory with byte-level text data (Debian's license texts: real English,
// present on every Debian system) and a tiny config.
struct Fixture {
  fs::path dir;
  Fixture() {
    dir = fs::temp_directory_path() /
          ("sl_train_cli_" + std::to_string(getpid()) + "_" + std::to_string(std::rand()));
    fs::create_directories(dir);
    std::ofstream train(dir / "train.txt"), val(dir / "val.txt");
    train << sl::test::licenses({"GPL-3", "Apache-2.0", "LGPL-2.1"});
    val << sl::test::licenses({"GPL-2"});
    std::ofstream cfg(dir / "tiny.toml");
    cfg << "[model]\narch = \"hybrid\"\nd_model = 32\nn_layers = 4\nn_heads = 2\n"
        << "[train]\nseq_len = 32\nbatch_size = 4\ntokens = 12_800\nlr = 3e-3\n"
        << "warmup_tokens = 1000\neval_every = 20\neval_tokens = 2048\ncheckpoint_every = 10\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  ~Fixture() { fs::remove_all(dir); }
  std::string cfg() const { return (dir / "tiny.toml").string(); }
  std::string run_dir(const std::string& name) const { return (dir / name).string(); }
};

std::vector<std::string> train_args(const Fixture& f, const std::string& out,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"train", "--config", f.cfg(),     "--out",
                                out,     "--quiet",  "--threads", "1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// Waits until the live log has at least `rows` train rows (polling through the SWMR reader).
bool wait_for_rows(const std::string& log, size_t rows, double timeout_s) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s) {
    try {
      if (fs::exists(log) && sl::read_runlog(log).train.size() >= rows) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void check_steps_contiguous(const sl::RunLog& log, int64_t n) {
  BOOST_REQUIRE_EQUAL(static_cast<int64_t>(log.train.size()), n);
  for (int64_t i = 0; i < n; ++i) BOOST_REQUIRE_EQUAL(log.train[i].step, i + 1);
}

}  // namespace

// Preempt with SIGTERM mid-run, resume, and compare with an uninterrupted run: every logged loss
// and every final weight must be bitwise equal (CPU, same thread count).
BOOST_AUTO_TEST_CASE(resume_after_sigterm_is_bitwise_identical) {
  Fixture f;
  const std::string a = f.run_dir("a"), b = f.run_dir("b");
  BOOST_REQUIRE_EQUAL(run(train_args(f, a, {"--set", "train.tokens=51200"})), 0);

  Proc p = spawn(train_args(f, b, {"--set", "train.tokens=51200"}), f.run_dir("b.err"));
  BOOST_REQUIRE(wait_for_rows(b + "/log.h5", 15, 60));
  kill(p.pid, SIGTERM);
  BOOST_REQUIRE_EQUAL(wait_exit(p), 0);  // preemption is a clean exit
  sl::RunLog mid = sl::read_runlog(b + "/log.h5");
  BOOST_TEST(mid.attrs.status == "preempted");
  BOOST_TEST(mid.train.size() < 400u);
  BOOST_TEST(sl::read_checkpoint(b + "/ckpt").int_value("step") ==
             static_cast<int64_t>(mid.train.size()));

  BOOST_REQUIRE_EQUAL(run(train_args(f, b, {"--set", "train.tokens=51200", "--resume"})), 0);
  sl::RunLog la = sl::read_runlog(a + "/log.h5"), lb = sl::read_runlog(b + "/log.h5");
  BOOST_TEST(lb.attrs.status == "completed");
  check_steps_contiguous(la, 400);
  check_steps_contiguous(lb, 400);
  for (size_t i = 0; i < la.train.size(); ++i) {
    BOOST_REQUIRE_EQUAL(la.train[i].loss, lb.train[i].loss);  // bitwise
    BOOST_REQUIRE_EQUAL(la.train[i].grad_norm, lb.train[i].grad_norm);
  }
  BOOST_REQUIRE(la.eval_loss == lb.eval_loss);
  sl::Checkpoint ca = sl::read_checkpoint(a + "/ckpt"), cb = sl::read_checkpoint(b + "/ckpt");
  BOOST_REQUIRE_EQUAL(ca.arrays.size(), cb.arrays.size());
  for (const auto& [name, arr] : ca.arrays) BOOST_REQUIRE(arr == cb.arrays.at(name));
}

// SIGKILL mid-run leaves a readable log and a loadable checkpoint; --resume then completes with
// every step logged exactly once.
BOOST_AUTO_TEST_CASE(kill9_leaves_readable_log_and_checkpoint) {
  Fixture f;
  const std::string r = f.run_dir("k");
  Proc p = spawn(train_args(f, r, {"--set", "train.tokens=51200"}), f.run_dir("k.err"));
  BOOST_REQUIRE(wait_for_rows(r + "/log.h5", 25, 60));
  kill(p.pid, SIGKILL);
  wait_exit(p);
  sl::RunLog log = sl::read_runlog(r + "/log.h5");
  BOOST_TEST(log.attrs.status == "running");
  BOOST_TEST(log.train.size() >= 1u);
  sl::Checkpoint c = sl::read_checkpoint(r + "/ckpt");
  const int64_t ck = c.int_value("step");
  BOOST_TEST(ck >= 10);
  BOOST_TEST(ck % 10 == 0);
  BOOST_REQUIRE_EQUAL(run(train_args(f, r, {"--set", "train.tokens=51200", "--resume"})), 0);
  sl::RunLog done = sl::read_runlog(r + "/log.h5");
  BOOST_TEST(done.attrs.status == "completed");
  check_steps_contiguous(done, 400);
}

// A NaN injected into the weights: status diverged, non-zero exit with a message, and the last
// good checkpoint (step 10) is kept.
BOOST_AUTO_TEST_CASE(injected_nan_gives_diverged_and_keeps_checkpoint) {
  Fixture f;
  const std::string r = f.run_dir("nan");
  std::string err;
  int rc = run(train_args(f, r, {"--set", "train.inject_nan_step=14"}), &err);
  BOOST_TEST(rc == 3);
  BOOST_TEST(err.find("diverged at step 14") != std::string::npos, err);
  sl::RunLog log = sl::read_runlog(r + "/log.h5");
  BOOST_TEST(log.attrs.status == "diverged");
  BOOST_TEST(log.train.size() == 14u);
  BOOST_TEST(sl::read_checkpoint(r + "/ckpt").int_value("step") == 10);
}

// Bad input: non-zero exit, one line naming the key or file, and an existing run untouched.
BOOST_AUTO_TEST_CASE(bad_input_names_key_or_file_and_damages_nothing) {
  Fixture f;
  const std::string r = f.run_dir("good");
  BOOST_REQUIRE_EQUAL(run(train_args(f, r, {"--set", "train.tokens=1280"})), 0);
  const std::string log0 = slurp(r + "/log.h5"), ck0 = slurp(r + "/ckpt/state.h5"),
                    cfg0 = slurp(r + "/config.toml");
  // A truncated llm.c shard and one with a wrong magic.
  {
    std::vector<int32_t> hdr(256, 0);
    hdr[0] = 20240520, hdr[1] = 1, hdr[2] = 1000;
    std::ofstream t(f.dir / "trunc.bin", std::ios::binary);
    t.write(reinterpret_cast<char*>(hdr.data()), 1024);
    std::vector<uint16_t> toks(500, 7);
    t.write(reinterpret_cast<char*>(toks.data()), 1000);
    hdr[0] = 12345;
    std::ofstream m(f.dir / "magic.bin", std::ios::binary);
    m.write(reinterpret_cast<char*>(hdr.data()), 1024);
    std::vector<uint16_t> all(1000, 7);
    m.write(reinterpret_cast<char*>(all.data()), 2000);
  }
  struct Case {
    std::vector<std::string> set;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"--set", "train.learning_rate=1e-3"}, "train.learning_rate"},
      {{"--set", "train.lr=\"fast\""}, "train.lr"},
      {{"--set", "model.n_layers=\"four\""}, "model.n_layers"},
      {{"--set", "data.train=" + (f.dir / "missing.txt").string()}, "missing.txt"},
      {{"--set", "data.train=" + (f.dir / "trunc.bin").string()}, "trunc.bin"},
      {{"--set", "data.train=" + (f.dir / "magic.bin").string()}, "magic.bin"},
  };
  for (const Case& c : cases) {
    for (bool resume : {false, true}) {
      std::vector<std::string> extra = c.set;
      if (resume) extra.push_back("--resume");
      std::string err;
      int rc = run(train_args(f, r, extra), &err);
      BOOST_TEST(rc != 0);
      BOOST_TEST(err.find(c.expect) != std::string::npos, "stderr: " << err);
      BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1, "stderr: " << err);
    }
  }
  // Without --resume an existing run is refused, not overwritten.
  std::string err;
  BOOST_TEST(run(train_args(f, r), &err) != 0);
  BOOST_TEST(err.find("already holds a run") != std::string::npos, err);
  BOOST_TEST(slurp(r + "/log.h5") == log0);
  BOOST_TEST(slurp(r + "/ckpt/state.h5") == ck0);
  BOOST_TEST(slurp(r + "/config.toml") == cfg0);
}
