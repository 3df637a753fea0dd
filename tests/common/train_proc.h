// Helpers for the tests that drive `scalinglab train` as a child process and kill, limit or
// poke it (tests/cli/test_reliability.cc, test_kill_loop.cc): spawning (core/process.h) with an
// environment, a file-size limit or an inherited descriptor, exit codes, a tiny fixture run, and
// log comparisons.
#pragma once
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "common/files.h"
#include "core/process.h"
#include "runlog/runlog.h"

namespace sl::test {

struct Proc {
  pid_t pid = -1;
  std::string err_path;
};

struct SpawnOpts {
  std::vector<std::pair<std::string, std::string>> env;
  long fsize_limit = -1;  // RLIMIT_FSIZE in bytes (-1: none)
};

inline Proc spawn(const std::vector<std::string>& args, const std::string& err_path,
                  const SpawnOpts& o = {}) {
  Proc p;
  p.err_path = err_path;
  ::sl::SpawnOptions so;
  so.out = ::sl::Redirect::null();
  so.err = ::sl::Redirect::truncate(err_path);
  so.env = o.env;
  so.file_size_limit = o.fsize_limit;
  p.pid = ::sl::spawn(scalinglab_argv(args), so).pid;
  return p;
}

inline int wait_exit(const Proc& p) { return ::sl::wait_child(p.pid).code; }

// Waits at most `timeout_s`; a process still running then is killed and reported as -1.
inline int wait_exit_within(const Proc& p, double timeout_s) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const ::sl::ExitStatus e = ::sl::wait_child(p.pid, false);
    if (e.pid == p.pid) return e.code;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
      ::sl::signal_process(p.pid, SIGKILL);
      ::sl::wait_child(p.pid);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

inline int run(const std::vector<std::string>& args, std::string* err = nullptr,
               const SpawnOpts& o = {}) {
  static int counter = 0;
  std::string ep = "/tmp/sl_rel_err_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  int rc = wait_exit(spawn(args, ep, o));
  if (err) *err = slurp(ep);
  std::filesystem::remove(ep);
  return rc;
}

inline bool one_line(const std::string& err) {
  return std::count(err.begin(), err.end(), '\n') == 1;
}

// Byte-level English text and a tiny hybrid model: 100 steps of 128 tokens by default.
struct Fixture {
  TempDir tmp{"sl_rel_" + std::to_string(std::rand()) + "_"};
  std::filesystem::path dir = tmp.path;
  Fixture() {
    std::ofstream(dir / "train.txt") << licenses({"GPL-3", "Apache-2.0", "LGPL-2.1"});
    std::ofstream(dir / "val.txt") << licenses({"GPL-2"});
    std::ofstream(dir / "tiny.toml")
        << "[model]\narch = \"hybrid\"\nd_model = 32\nn_layers = 4\nn_heads = 2\n"
        << "[train]\nseq_len = 32\nbatch_size = 4\ntokens = 12_800\nlr = 3e-3\n"
        << "warmup_tokens = 1000\neval_every = 100\neval_tokens = 2048\ncheckpoint_every = 10\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  std::string cfg() const { return (dir / "tiny.toml").string(); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

inline std::vector<std::string> train_args(const Fixture& f, const std::string& out,
                                           std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"train", "--config", f.cfg(),     "--out",
                                out,     "--quiet",  "--threads", "1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

inline bool wait_for_rows(const std::string& log, size_t rows, double timeout_s) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < timeout_s) {
    try {
      if (std::filesystem::exists(log) && ::sl::read_runlog(log).train.size() >= rows) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Steps 1..n, each exactly once, and the losses bitwise those of the reference run.
inline void check_same_as(const ::sl::RunLog& got, const ::sl::RunLog& ref) {
  BOOST_REQUIRE_EQUAL(got.train.size(), ref.train.size());
  for (size_t i = 0; i < ref.train.size(); ++i) {
    BOOST_REQUIRE_EQUAL(got.train[i].step, static_cast<int64_t>(i + 1));
    BOOST_REQUIRE_EQUAL(got.train[i].loss, ref.train[i].loss);
  }
  BOOST_TEST(got.eval_loss == ref.eval_loss);
  BOOST_TEST(got.budget_tokens == ref.budget_tokens);
  BOOST_TEST(got.budget_loss == ref.budget_loss);
}

}  // namespace sl::test
