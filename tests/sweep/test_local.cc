// The sweep front end and the local executor: grid expansion and stable ids, bad sweep files
// (one line naming the file and key, nothing written), and two launchers on one sweep directory
// (each run trained exactly once, no step logged twice), then collect.
#define BOOST_TEST_MODULE sweep_local
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "runlog/runlog.h"
#include "sweep/sweep.h"

namespace fs = std::filesystem;

namespace {

using sl::test::slurp;

struct Fixture {
  fs::path dir;
  Fixture() {
    dir = fs::temp_directory_path() / ("sl_sweep_local_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream train(dir / "train.txt"), val(dir / "val.txt");
    train << sl::test::licenses({"GPL-3"});
    val << sl::test::licenses({"GPL-2"});
  }
  ~Fixture() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& grid,
                    const std::string& train = "") const {
    std::ofstream s(dir / name);
    s << "[sweep]\nname = \"t\"\n"
      << grid << "\n[[sweep.shape]]\nd_model = 32\nn_layers = 2\n"
      << "n_heads = 2\n[train]\nseq_len = 32\nbatch_size = 4\n"
      << (train.find("schedule") == std::string::npos ? "schedule = \"wsd\"\n" : "")
      << "warmup_tokens = 512\neval_every = 20\neval_tokens = 1024\ncheckpoint_every = 5\n"
      << train << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
    return (dir / name).string();
  }
};

std::string error_of(const std::string& path) {
  try {
    sl::sweep::load_sweep(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

BOOST_AUTO_TEST_CASE(expansion_and_stable_ids) {
  Fixture f;
  const std::string p = f.write("a.toml",
                                "archs = [\"dense\", \"hybrid\"]\nbudgets_per_param = "
                                "[5, 10]\nseeds = [0, 1]\nlrs = [1e-3, 3e-3]");
  sl::sweep::Sweep s = sl::sweep::load_sweep(p);
  BOOST_REQUIRE_EQUAL(s.runs.size(), 8u);  // 2 archs x 1 shape x 2 seeds x 2 lrs, WSD budgets
  for (const auto& r : s.runs) {
    BOOST_REQUIRE_EQUAL(r.budgets.size(), 2u);
    BOOST_TEST(r.budgets[0] % 128 == 0);
    BOOST_TEST(r.config.budgets == r.budgets, boost::test_tools::per_element());
    BOOST_TEST(r.run_id == sl::run_id_of(r.config));
  }
  BOOST_TEST(sl::sweep::load_sweep(p).runs[5].run_id == s.runs[5].run_id);  // stable
  // Cosine: one run per budget.
  const std::string c = f.write("c.toml", "archs = [\"dense\"]\nbudgets = [2560, 5120, 7680]",
                                "schedule = \"cosine\"\n");
  sl::sweep::Sweep cs = sl::sweep::load_sweep(c);
  BOOST_REQUIRE_EQUAL(cs.runs.size(), 3u);
  BOOST_TEST(cs.runs[2].config.tokens == 7680);
  BOOST_TEST(cs.runs[2].config.budgets.empty());
}

BOOST_AUTO_TEST_CASE(bad_sweep_files) {
  Fixture f;
  BOOST_TEST(error_of(f.write("u.toml", "archs = [\"dense\"]\nbudgets = [2560]\nfoo = 1"))
                 .find("'sweep.foo'") != std::string::npos);
  BOOST_TEST(error_of(f.write("e.toml", "archs = []\nbudgets = [2560]")).find("'sweep.archs'") !=
             std::string::npos);
  BOOST_TEST(error_of(f.write("w.toml", "archs = [\"dense\"]\nbudgets = [256, 2560]"))
                 .find("warmup_tokens") != std::string::npos);
  BOOST_TEST(error_of(f.write("k.toml", "archs = [\"dense\"]\nbudgets = [2560]", "bogus = 1\n"))
                 .find("'train.bogus'") != std::string::npos);
  // A sweep directory made by another sweep file is refused, and left as it was.
  sl::sweep::Sweep a = sl::sweep::load_sweep(f.write("a.toml",
                                                     "archs = [\"dense\"]\n"
                                                     "budgets = [2560]"));
  sl::sweep::Sweep b = sl::sweep::load_sweep(f.write("b.toml",
                                                     "archs = [\"hybrid\"]\n"
                                                     "budgets = [2560]"));
  const std::string d = (f.dir / "sw").string();
  sl::sweep::prepare_dir(a, d);
  const std::string before = slurp(d + "/plan.tsv");
  BOOST_CHECK_THROW(sl::sweep::prepare_dir(b, d), std::exception);
  BOOST_TEST(slurp(d + "/plan.tsv") == before);
}

// A sweep file may gain a comment and runs: the directory's runs keep their ids and plan indices,
// the new ones follow; a file that drops a run is refused naming it, and nothing is rewritten.
BOOST_AUTO_TEST_CASE(a_sweep_file_may_gain_comments_and_runs) {
  Fixture f;
  sl::sweep::Sweep a =
      sl::sweep::load_sweep(f.write("a.toml", "patterns = [\"AA\", \"GA\"]\nbudgets = [2560]"));
  const std::string d = (f.dir / "sw").string();
  sl::sweep::prepare_dir(a, d);
  const auto old_plan = sl::sweep::load_plan(d);
  // Same grid, a comment, and a pattern and a seed more.
  sl::sweep::Sweep b = sl::sweep::load_sweep(
      f.write("a2.toml",
              "# now with AG\npatterns = [\"AG\", \"AA\", \"GA\"]\nbudgets = [2560]\n"
              "seeds = [0, 1]"));
  sl::sweep::prepare_dir(b, d);
  const auto plan = sl::sweep::load_plan(d);
  BOOST_REQUIRE_EQUAL(plan.size(), 6u);
  for (size_t i = 0; i < old_plan.size(); ++i) {
    BOOST_TEST(plan[i].run_id == old_plan[i].run_id);
    BOOST_TEST(plan[i].index == static_cast<int64_t>(i));
  }
  BOOST_REQUIRE_EQUAL(b.runs.size(), 6u);
  for (size_t i = 0; i < plan.size(); ++i) BOOST_TEST(b.runs[i].run_id == plan[i].run_id);
  BOOST_TEST(slurp(d + "/sweep.toml") == b.text);
  // Dropping a run (GA) is refused, naming it; the directory stays as it was.
  const std::string before = slurp(d + "/plan.tsv");
  sl::sweep::Sweep c = sl::sweep::load_sweep(
      f.write("a3.toml", "patterns = [\"AG\", \"AA\"]\nbudgets = [2560]\nseeds = [0, 1]"));
  std::string err;
  try {
    sl::sweep::prepare_dir(c, d);
  } catch (const std::exception& e) {
    err = e.what();
  }
  std::string ga;
  for (const auto& r : old_plan)
    if (r.config.model.pattern == "GA") ga = r.run_id;
  BOOST_TEST(err.find(ga) != std::string::npos, err);
  BOOST_TEST(slurp(d + "/plan.tsv") == before);
  BOOST_TEST(slurp(d + "/sweep.toml") == b.text);
}

BOOST_AUTO_TEST_CASE(two_launchers_run_each_run_once) {
  Fixture f;
  const std::string p = f.write("s.toml",
                                "patterns = [\"AA\", \"GA\"]\nbudgets = [3840, 7680]\n"
                                "seeds = [0, 1]");
  const std::string d = (f.dir / "sw").string();
  const std::string cmd = std::string(SL_EXE) + " sweep launch " + p + " --dir " + d +
                          " --jobs 1 --threads 1 > /dev/null";
  // Two launchers at once: every run is trained by exactly one of them.
  const int rc = std::system(("(" + cmd + ") & (" + cmd + "); wait").c_str());
  BOOST_REQUIRE_EQUAL(rc, 0);
  std::system(
      (std::string(SL_EXE) + " sweep launch " + p + " --dir " + d + " > /dev/null").c_str());
  for (const auto& r : sl::sweep::load_plan(d)) {
    const std::string rd = sl::sweep::run_dir(d, r.run_id);
    sl::RunLog l = sl::read_runlog(rd + "/log.h5");
    BOOST_TEST(l.attrs.status == "completed");
    BOOST_REQUIRE_EQUAL(l.train.size(), 60u);
    for (size_t i = 0; i < l.train.size(); ++i) BOOST_REQUIRE_EQUAL(l.train[i].step, i + 1);
    // One start line per run in its log: nobody trained it twice.
    const std::string log = slurp(rd + "/train.log");
    size_t starts = 0;
    for (size_t at = 0; (at = log.find("train: ", at)) != std::string::npos; ++at)
      if (log.compare(at, 16, "train: completed") != 0) ++starts;
    BOOST_TEST(starts == 1u, r.run_id << ":\n" << log);
  }
  BOOST_REQUIRE_EQUAL(
      std::system((std::string(SL_EXE) + " sweep collect --dir " + d + " > /dev/null").c_str()), 0);
  BOOST_TEST(slurp(d + "/sweep.csv").find("nan") == std::string::npos);
  std::istringstream csv(slurp(d + "/sweep.csv"));
  int rows = -1;
  for (std::string l; std::getline(csv, l);) ++rows;
  BOOST_TEST(rows == 8);  // 4 runs x 2 budgets
}

// `sweep launch --only`: the selected runs only, the rest left pending for a later launch; a
// selector that matches nothing is one error line and writes no sweep directory.
BOOST_AUTO_TEST_CASE(only_launches_the_selected_runs) {
  Fixture f;
  const std::string p = f.write("o.toml", "patterns = [\"AA\", \"GA\"]\nbudgets = [3840]");
  const std::string d = (f.dir / "sw").string(), exe = std::string(SL_EXE);
  const std::string launch = exe + " sweep launch " + p + " --dir " + d + " --jobs 1 --threads 1";
  const std::string bad = (f.dir / "bad.txt").string();
  BOOST_TEST(sl::test::exit_code(
                 std::system((launch + " --only 'GA:*,XX:*' > " + bad + " 2>&1").c_str())) != 0);
  BOOST_TEST(slurp(bad).find("selector 'XX:*' matches no run") != std::string::npos, slurp(bad));
  BOOST_TEST(!fs::exists(d));
  BOOST_REQUIRE_EQUAL(std::system((launch + " --only 'GA:*' > /dev/null 2>&1").c_str()), 0);
  for (const auto& r : sl::sweep::load_plan(d))
    BOOST_TEST(sl::sweep::run_status(sl::sweep::run_dir(d, r.run_id)).status ==
                   (r.arch == "GA" ? "completed" : "pending"),
               r.arch);
  BOOST_REQUIRE_EQUAL(std::system((launch + " > /dev/null 2>&1").c_str()), 0);
  for (const auto& r : sl::sweep::load_plan(d))
    BOOST_TEST(sl::sweep::run_status(sl::sweep::run_dir(d, r.run_id)).status == "completed",
               r.arch);
}

// `sweep status --watch`: follows a local launch to its end and exits by itself (plain lines when
// stdout is a file), its last table showing every run completed with ETA totals; on a sweep that
// nobody launches it stops after three idle polls; a bad interval is one error line.
BOOST_AUTO_TEST_CASE(status_watch_ends_with_the_sweep) {
  Fixture f;
  // 600 steps a run: long enough for the watch to see them train.
  const std::string p = f.write("w.toml", "patterns = [\"AA\", \"GA\"]\nbudgets = [76800]");
  const std::string d = (f.dir / "sw").string(), out = (f.dir / "watch.txt").string();
  const std::string exe = std::string(SL_EXE);
  // Launch in the background; watch in the foreground (timeout guards against a watch that
  // never ends: exit code 124).
  const std::string cmd = "(" + exe + " sweep launch " + p + " --dir " + d +
                          " --jobs 1 --threads 1 > /dev/null 2>&1 &) ; sleep 0.3; timeout 300 " +
                          exe + " sweep status --dir " + d + " --watch 0.5 > " + out + " 2>&1";
  const int rc = sl::test::exit_code(std::system(cmd.c_str()));
  const std::string text = slurp(out);
  BOOST_TEST_MESSAGE(text);
  BOOST_REQUIRE_EQUAL(rc, 0);
  BOOST_TEST(text.find("sweep status: every run has ended") != std::string::npos);
  BOOST_TEST(text.find("  running") != std::string::npos, "no poll saw a run training");
  const size_t last = text.rfind("index ");
  BOOST_REQUIRE(last != std::string::npos);
  const std::string final_table = text.substr(last);
  BOOST_TEST(final_table.find("2 runs: 2 completed") != std::string::npos, final_table);
  BOOST_TEST(final_table.find("\033[") == std::string::npos);  // no terminal codes in a file
  for (const auto& r : sl::sweep::load_plan(d))
    BOOST_TEST(sl::read_runlog(sl::sweep::run_dir(d, r.run_id) + "/log.h5").attrs.status ==
               "completed");
  // Nothing launched: three idle polls, then a line saying so.
  const std::string p2 = f.write("w2.toml", "patterns = [\"AA\"]\nbudgets = [3840]");
  const std::string d2 = (f.dir / "sw2").string();
  sl::sweep::Sweep s2 = sl::sweep::load_sweep(p2);
  sl::sweep::prepare_dir(s2, d2);
  const int rc2 = sl::test::exit_code(std::system(
      ("timeout 60 " + exe + " sweep status --dir " + d2 + " --watch 0.2 > " + out + " 2>&1")
          .c_str()));
  BOOST_TEST(rc2 == 0);
  BOOST_TEST(
      slurp(out).find("nothing running or queued; 1 of 1 runs have not ended") != std::string::npos,
      slurp(out));
  const int rc3 = sl::test::exit_code(
      std::system((exe + " sweep status --dir " + d2 + " --watch 0 > " + out + " 2>&1").c_str()));
  BOOST_TEST(rc3 != 0);
  BOOST_TEST(slurp(out).find("--watch '0'") != std::string::npos, slurp(out));
}

// A trainer killed by a signal under a live launcher (here: the trainer's test hook SIGKILLs it
// right after its step-10 checkpoint) is not marked failed: its status reads preempted and a
// re-launch resumes it, every step logged once.
BOOST_AUTO_TEST_CASE(killed_runs_resume_on_relaunch) {
  Fixture f;
  const std::string p = f.write("k.toml", "patterns = [\"AA\", \"GA\"]\nbudgets = [3840]");
  const std::string d = (f.dir / "sw").string(), exe = std::string(SL_EXE);
  const std::string launch = exe + " sweep launch " + p + " --dir " + d + " --jobs 1 --threads 1";
  const int rc = sl::test::exit_code(
      std::system(("SL_TEST_CRASH=after_checkpoint:10 " + launch + " > /dev/null 2>&1").c_str()));
  BOOST_TEST(rc != 0);  // the launcher reports runs that did not complete
  for (const auto& r : sl::sweep::load_plan(d)) {
    const std::string rd = sl::sweep::run_dir(d, r.run_id);
    BOOST_TEST(sl::sweep::run_status(rd).status == "preempted", r.run_id);
    BOOST_TEST(!fs::exists(rd + "/failed"), r.run_id);
  }
  BOOST_REQUIRE_EQUAL(std::system((launch + " > /dev/null 2>&1").c_str()), 0);
  for (const auto& r : sl::sweep::load_plan(d)) {
    sl::RunLog l = sl::read_runlog(sl::sweep::run_dir(d, r.run_id) + "/log.h5");
    BOOST_TEST(l.attrs.status == "completed");
    BOOST_REQUIRE_EQUAL(l.train.size(), 30u);
    for (size_t i = 0; i < l.train.size(); ++i) BOOST_REQUIRE_EQUAL(l.train[i].step, i + 1);
  }
}

// A missing data file is refused at plan and launch time, in one line naming it, before the sweep
// directory exists; collect names a run whose log cannot be read instead of writing a silent row.
BOOST_AUTO_TEST_CASE(missing_data_and_unreadable_logs_are_named) {
  Fixture f;
  const std::string exe = std::string(SL_EXE);
  const fs::path bad = f.dir / "bad.toml";
  std::ofstream(bad) << "[sweep]\nname = \"b\"\narchs = [\"dense\"]\nbudgets = [3840]\n"
                     << "[[sweep.shape]]\nd_model = 32\nn_layers = 2\nn_heads = 2\n"
                     << "[train]\nseq_len = 32\nbatch_size = 4\nschedule = \"wsd\"\n"
                     << "warmup_tokens = 512\neval_every = 20\neval_tokens = 1024\n"
                     << "[data]\ntrain = \"no_such_train.txt\"\nval = \"val.txt\"\n";
  const std::string out = (f.dir / "err.txt").string(), d = (f.dir / "sb").string();
  for (const std::string& cmd : {exe + " sweep plan " + bad.string(),
                                 exe + " sweep launch " + bad.string() + " --dir " + d}) {
    BOOST_TEST(sl::test::exit_code(std::system((cmd + " > /dev/null 2> " + out).c_str())) != 0);
    const std::string err = slurp(out);
    BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1, err);
    BOOST_TEST(err.find("no_such_train.txt") != std::string::npos, err);
  }
  BOOST_TEST(!fs::exists(d));
  // An unreadable log: collect warns naming the run and marks its rows.
  const std::string p = f.write("u.toml", "patterns = [\"AA\", \"GA\"]\nbudgets = [3840]");
  const std::string du = (f.dir / "su").string();
  BOOST_REQUIRE_EQUAL(std::system((exe + " sweep launch " + p + " --dir " + du +
                                   " --jobs 1 --threads 1 > /dev/null 2>&1")
                                      .c_str()),
                      0);
  const auto runs = sl::sweep::load_plan(du);
  const std::string victim = runs[0].run_id;
  fs::resize_file(sl::sweep::run_dir(du, victim) + "/log.h5", 100);
  BOOST_REQUIRE_EQUAL(
      std::system((exe + " sweep collect --dir " + du + " > /dev/null 2> " + out).c_str()), 0);
  const std::string err = slurp(out);
  BOOST_TEST(err.find("run " + victim) != std::string::npos, err);
  BOOST_TEST(err.find("unreadable") != std::string::npos, err);
  BOOST_TEST(slurp(du + "/sweep.csv").find(victim) != std::string::npos);
  std::istringstream csv(slurp(du + "/sweep.csv"));
  for (std::string l; std::getline(csv, l);)
    if (l.rfind(victim, 0) == 0) BOOST_TEST(l.find(",nan,unreadable") != std::string::npos, l);
}

// `sweep plan --bench FILE`: runs whose arch and size were benchmarked are estimated at the
// measured FLOP/s, the others at the default; a file that is not bench JSON is one error line.
BOOST_AUTO_TEST_CASE(plan_estimates_from_bench_numbers) {
  Fixture f;
  const std::string p = f.write("b.toml", "archs = [\"dense\", \"hybrid\"]\nbudgets = [2560]");
  const sl::sweep::Sweep s = sl::sweep::load_sweep(p);
  BOOST_REQUIRE_EQUAL(s.runs.size(), 2u);
  const std::string size = s.runs[0].size;
  const fs::path bench = f.dir / "bench.json", out = f.dir / "plan.txt";
  // dense measured at 1e6 FLOP/s; hybrid not measured (default 5e10 on the CPU).
  std::ofstream(bench) << "[{\"arch\": \"dense\", \"pattern\": \"AA\", \"size\": \"" << size
                       << "\", \"flops_per_s\": 1e6}]\n";
  const std::string cmd = std::string(SL_EXE) + " sweep plan " + p + " --bench " + bench.string() +
                          " > " + out.string() + " 2>&1";
  BOOST_REQUIRE_EQUAL(std::system(cmd.c_str()), 0);
  const std::string text = slurp(out.string());
  BOOST_TEST_MESSAGE(text);
  const double want_h = (s.runs[0].flops / 1e6 + s.runs[1].flops / 5e10) / 3600.0;
  char expect[64];
  std::snprintf(expect, sizeof expect, "about %.2f device-hours (1 runs", want_h);
  BOOST_TEST(text.find(expect) != std::string::npos, text);
  std::ofstream(bench) << "{\"not\": \"bench\"}\n";
  const std::string bad = std::string(SL_EXE) + " sweep plan " + p + " --bench " + bench.string() +
                          " > " + out.string() + " 2>&1";
  BOOST_TEST(std::system(bad.c_str()) != 0);
  const std::string err = slurp(out.string());
  BOOST_TEST(err.find("not a bench --json file") != std::string::npos, err);
}

// Slurm tasks with several GPUs train data parallel: the sbatch script asks for the GPUs and
// hands run-task `--nproc G` (run-task passes it to train); a batch that does not split over G
// GPUs, or G GPUs on the CPU, is refused before anything is written or submitted.
BOOST_AUTO_TEST_CASE(multi_gpu_slurm_tasks_run_data_parallel) {
  Fixture f;
  const std::string p = f.write("g.toml", "archs = [\"dense\"]\nbudgets = [2560]");
  const std::string d = (f.dir / "sw").string(), out = (f.dir / "out.txt").string();
  auto launch = [&](const std::string& extra) {
    const std::string cmd = std::string(SL_EXE) + " sweep launch " + p + " --dir " + d +
                            " --executor slurm --dry-run " + extra + " > " + out + " 2>&1";
    return std::system(cmd.c_str());
  };
  BOOST_TEST(launch("--device cuda --gpus-per-task 3") != 0);  // batch_size 4
  BOOST_TEST(slurp(out).find("not divisible") != std::string::npos, slurp(out));
  BOOST_TEST(launch("--device cpu --gpus-per-task 2") != 0);
  BOOST_TEST(slurp(out).find("needs --device cuda") != std::string::npos, slurp(out));
  BOOST_TEST(!fs::exists(d + "/slurm"));
  BOOST_REQUIRE_EQUAL(launch("--device cuda --gpus-per-task 2"), 0);
  std::string script;
  for (const auto& e : fs::directory_iterator(d + "/slurm"))
    if (e.path().extension() == ".sbatch") script = slurp(e.path().string());
  BOOST_TEST_MESSAGE(script);
  BOOST_TEST(script.find("#SBATCH --gpus-per-task=2\n") != std::string::npos, script);
  BOOST_TEST(script.find("--device 'cuda' --nproc 2\n") != std::string::npos, script);
}

// The local executor starts the costliest runs first (training FLOPs, ties by plan index: longest
// processing time first) and prints a progress line after each run ends, with runs done / total.
BOOST_AUTO_TEST_CASE(largest_runs_start_first_with_progress_lines) {
  Fixture f;
  const fs::path p = f.dir / "sizes.toml";
  // Plan order: the small shape first; budgets make two costs per shape.
  std::ofstream(p) << "[sweep]\nname = \"lpt\"\narchs = [\"dense\"]\nbudgets = [2560, 3840]\n"
                   << "[[sweep.shape]]\nd_model = 16\nn_layers = 2\nn_heads = 2\n"
                   << "[[sweep.shape]]\nd_model = 48\nn_layers = 2\nn_heads = 2\n"
                   << "[train]\nseq_len = 32\nbatch_size = 4\nschedule = \"cosine\"\n"
                   << "warmup_tokens = 512\neval_every = 40\neval_tokens = 512\n"
                   << "checkpoint_every = 40\n[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  const std::string d = (f.dir / "sw").string(), out = (f.dir / "launch.txt").string();
  BOOST_REQUIRE_EQUAL(std::system((std::string(SL_EXE) + " sweep launch " + p.string() + " --dir " +
                                   d + " --jobs 1 --threads 1 > " + out + " 2>&1")
                                      .c_str()),
                      0);
  const std::string log = slurp(out);
  std::vector<sl::sweep::SweepRun> runs = sl::sweep::load_sweep(p.string()).runs;
  BOOST_REQUIRE_EQUAL(runs.size(), 4u);
  BOOST_TEST(runs[0].size == "d16L2");  // so the order below is not the plan's
  std::stable_sort(runs.begin(), runs.end(), [](const auto& x, const auto& y) {
    return x.flops != y.flops ? x.flops > y.flops : x.index < y.index;
  });
  BOOST_TEST(runs[0].size == "d48L2");
  std::vector<std::string> started, progress;
  std::istringstream in(log);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("  start ", 0) == 0) started.push_back(l.substr(8, l.find(' ', 8) - 8));
    if (l.rfind("  progress: ", 0) == 0) progress.push_back(l);
  }
  BOOST_REQUIRE_EQUAL(started.size(), 4u);
  for (size_t i = 0; i < runs.size(); ++i) BOOST_TEST(started[i] == runs[i].run_id, log);
  // One line per run ended, counting up to every run, with a rate and an ETA.
  BOOST_REQUIRE_EQUAL(progress.size(), 4u);
  for (size_t i = 0; i < progress.size(); ++i) {
    BOOST_TEST(progress[i].find("progress: " + std::to_string(i + 1) + "/4 runs done, ") !=
                   std::string::npos,
               progress[i]);
    BOOST_TEST(progress[i].find(" tokens/s, ") != std::string::npos, progress[i]);
  }
  BOOST_TEST(progress.back().find("0 tokens to go, ETA 0s") != std::string::npos, progress.back());
}
