// Real-Slurm integration test of the sweep executor (issue 7): a 6-run CPU sweep launched as a
// job array through sbatch; one running task is requeued with `scontrol requeue` mid-run. Checks:
// all 6 runs complete, the requeued run resumed from its checkpoint (its step counter did not
// restart, no step is logged twice, its task restarted with SLURM_RESTART_COUNT=1), and collect
// has every (run, budget) row, readable by the fitter's table reader.
// Needs a running Slurm (scripts/slurm_local.sh start; .ci/run does it); without one it prints
// SLURM_SKIP and ctest reports the test as skipped. Slurm 22.05 makes a requeued task eligible
// about 2 minutes after the requeue, so this test takes 3-4 minutes.
#define BOOST_TEST_MODULE sweep_slurm
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "core/process.h"
#include "fit/table.h"
#include "runlog/runlog.h"

namespace fs = std::filesystem;

namespace {

using sl::test::slurp;

// A shell command line's stdout and stderr; *rc: its exit code.
std::string sh(const std::string& cmd, int* rc = nullptr) {
  sl::SpawnOptions so;
  so.err = sl::Redirect::to_stdout();
  return sl::capture_output({"/bin/sh", "-c", cmd}, rc, so);
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

BOOST_AUTO_TEST_CASE(slurm_array_with_requeue) {
  int rc = 0;
  const std::string info = sh("sinfo -h -o %T", &rc);
  const bool up = info.find("idle") != std::string::npos || info.find("mix") != std::string::npos;
  if (rc != 0 || !up) {
    std::printf("SLURM_SKIP: no idle Slurm node (bash scripts/slurm_local.sh start): %s\n",
                info.c_str());
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("sl_slurm_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream train(dir / "train.txt"), val(dir / "val.txt");
    train << sl::test::licenses({"GPL-3", "Apache-2.0", "LGPL-2.1"});
    val << sl::test::licenses({"GPL-2"});
    // 6 runs (2 patterns x 3 shapes), each one WSD run of 200 steps carrying 2 budgets.
    std::ofstream s(dir / "sweep.toml");
    s << "[sweep]\nname = \"slurmtest\"\npatterns = [\"AAAA\", \"GGGA\"]\n"
      << "budgets = [25_600, 51_200]\n"
      << "[[sweep.shape]]\nd_model = 32\nn_layers = 4\nn_heads = 2\n"
      << "[[sweep.shape]]\nd_model = 48\nn_layers = 4\nn_heads = 2\n"
      << "[[sweep.shape]]\nd_model = 64\nn_layers = 4\nn_heads = 2\n"
      << "[train]\nschedule = \"wsd\"\nlr = 3e-3\nseq_len = 32\nbatch_size = 8\n"
      << "warmup_tokens = 2560\neval_every = 50\neval_tokens = 4096\ncheckpoint_every = 5\n"
      << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  const std::string exe = SL_EXE, sd = (dir / "sw").string();
  const std::string launch =
      sh(exe + " sweep launch " + (dir / "sweep.toml").string() + " --dir " + sd +
             " --executor slurm --max-parallel 2 --cpus-per-task 1" + " --threads 1",
         &rc);
  BOOST_TEST_MESSAGE(launch);
  BOOST_REQUIRE_EQUAL(rc, 0);
  const std::vector<std::string> jobs = lines(slurp(sd + "/slurm/jobs.tsv"));
  BOOST_REQUIRE_EQUAL(jobs.size(), 1u);
  const std::string job = jobs[0].substr(0, jobs[0].find('\t'));
  std::string script;
  for (const auto& e : fs::directory_iterator(sd + "/slurm"))
    if (e.path().extension() == ".sbatch") script = slurp(e.path().string());
  BOOST_TEST_MESSAGE("sbatch script:\n" << script);
  BOOST_TEST(script.find("#SBATCH --array=0-5%2") != std::string::npos);
  BOOST_TEST(script.find("#SBATCH --requeue") != std::string::npos);
  BOOST_TEST(script.find("#SBATCH --signal=B:USR1@90") != std::string::npos);
  // Right after submission at most 2 tasks run (%2): status shows the others queued in Slurm.
  const std::string early = sh(exe + " sweep status --dir " + sd, &rc);
  BOOST_TEST_MESSAGE("sweep status right after launch:\n" << early);
  BOOST_REQUIRE_EQUAL(rc, 0);
  BOOST_TEST(early.find("queued (slurm " + job + "_") != std::string::npos, early);

  // Plan index i is array task i (all 6 runs were to do); run ids from plan.tsv.
  std::vector<std::string> ids;
  for (const std::string& l : lines(slurp(sd + "/plan.tsv"))) {
    if (l.rfind("index", 0) == 0) continue;
    std::istringstream ls(l);
    std::string idx, id;
    ls >> idx >> id;
    ids.push_back(id);
  }
  BOOST_REQUIRE_EQUAL(ids.size(), 6u);

  // Requeue the first task seen running with at least 30 steps logged and not near its end.
  const auto t0 = std::chrono::steady_clock::now();
  int victim = -1;
  int64_t seen_step = 0;
  while (victim < 0 && since(t0) < 300) {
    for (int i = 0; i < 6 && victim < 0; ++i) {
      const std::string log = sd + "/runs/" + ids[i] + "/log.h5";
      try {
        if (!fs::exists(log)) continue;
        sl::RunLog l = sl::read_runlog(log);
        if (l.attrs.status == "running" && l.train.size() >= 30 && l.train.size() < 150) {
          victim = i;
          seen_step = l.train.back().step;
        }
      } catch (const std::exception&) {
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  BOOST_REQUIRE_MESSAGE(victim >= 0, "no task was seen running mid-run");
  const std::string task = job + "_" + std::to_string(victim);
  const std::string rq = sh("scontrol requeue " + task, &rc);
  BOOST_TEST_MESSAGE("requeued " << task << " (run " << ids[victim] << ") at step " << seen_step
                                 << ": " << rq);
  BOOST_REQUIRE_EQUAL(rc, 0);

  // Wait for the whole array to leave the queue (the requeued task waits ~2 min to be eligible).
  bool done = false;
  while (since(t0) < 900) {
    const std::string q = sh("squeue -h -j " + job + " -o %i");
    if (q.find(job) == std::string::npos) {
      done = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  BOOST_REQUIRE_MESSAGE(done, "the array was still queued after 15 minutes");
  const std::string status = sh(exe + " sweep status --dir " + sd);
  BOOST_TEST_MESSAGE("sweep status:\n" << status);
  for (const std::string& id : ids) {
    sl::RunLog l = sl::read_runlog(sd + "/runs/" + id + "/log.h5");
    BOOST_TEST(l.attrs.status == "completed", id << ": " << l.attrs.status);
    BOOST_REQUIRE_EQUAL(l.train.size(), 200u);
    for (size_t i = 0; i < l.train.size(); ++i) BOOST_REQUIRE_EQUAL(l.train[i].step, i + 1);
    BOOST_TEST(l.budget_tokens.size() == 2u);
  }
  // The requeued run: preempted once, resumed from a checkpoint at or after the step we saw
  // (within one checkpoint interval), by a task that knew it was restarted.
  const std::string tlog = slurp(sd + "/runs/" + ids[victim] + "/train.log");
  const auto at = tlog.find("resumed at step ");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, "train.log:\n" << tlog);
  const int64_t resumed = std::atoll(tlog.c_str() + at + 16);
  BOOST_TEST(resumed >= seen_step - 5);
  BOOST_TEST(tlog.find("status preempted") != std::string::npos);
  const std::string out = slurp(sd + "/slurm/" + task + ".out");
  BOOST_TEST_MESSAGE(task << ".out:\n" << out);
  BOOST_TEST(out.find("restart count 1") != std::string::npos);
  BOOST_TEST(sh("grep -c 'restart count' " + sd + "/slurm/" + task + ".out") == "2\n");

  const std::string coll = sh(exe + " sweep collect --dir " + sd, &rc);
  BOOST_REQUIRE_EQUAL(rc, 0);
  for (const std::string f : {"sweep.h5", "sweep.csv"}) {
    sl::fit::Table t = sl::fit::read_table(sd + "/" + f);
    BOOST_REQUIRE_EQUAL(t.num_rows(), 12u);
    for (size_t r = 0; r < t.num_rows(); ++r) {
      BOOST_TEST(std::isfinite(t.number(r, "loss")));
      BOOST_TEST(t.column("status").text[r] == "completed");
    }
    for (const char* c : {"run_id", "arch", "pattern", "d_model", "n_layers", "n_params",
                          "n_params_nonembedding", "tokens"})
      BOOST_TEST(t.has(c), c);
  }
  fs::remove_all(dir);
}
