// A WSD sweep that gains budgets (docs/DESIGN.md "Sweep file", "Schedules and token budgets"):
// a WSD run's id leaves its budget list out, so a budget added to the sweep file extends the run
// it belongs to (same id, directory and plan index; config.toml gets the new list) and the next
// launch trains what is missing: above the last budget from the trunk checkpoint, below a branch
// point already passed by retraining the trunk from the seed. Each extended run must log what a
// run planned with every budget from the start logs (bitwise on the CPU), every /train step
// once, and collect must have a row per (run, budget). Dropping a budget is refused naming the
// run; cosine sweeps keep one run per budget; a directory made while WSD ids hashed the budgets
// keeps its ids.
#define BOOST_TEST_MODULE sweep_wsd_budgets
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "runlog/checkpoint.h"
#include "runlog/runlog.h"
#include "sweep/sweep.h"

namespace fs = std::filesystem;
using sl::test::slurp;

namespace {

// One 32-wide, 2-layer shape: 128 tokens a step, budgets of 20, 25, 30 and 40 steps.
struct Fixture {
  sl::test::TempDir tmp{"sl_sweep_wsd_"};
  fs::path dir = tmp.path;
  Fixture() {
    std::ofstream(dir / "train.txt") << sl::test::licenses({"GPL-3"});
    std::ofstream(dir / "val.txt") << sl::test::licenses({"GPL-2"});
  }
  // A sweep file of `grid` (patterns, budgets, seeds) with schedule `schedule`.
  std::string write(const std::string& name, const std::string& grid,
                    const std::string& schedule = "wsd") const {
    std::ofstream(dir / name) << "[sweep]\nname = \"w\"\n"
                              << grid << "\n[[sweep.shape]]\nd_model = 32\nn_layers = 2\n"
                              << "n_heads = 2\n[train]\nseq_len = 32\nbatch_size = 4\n"
                              << "schedule = \"" << schedule << "\"\nwarmup_tokens = 512\n"
                              << "eval_every = 20\neval_tokens = 1024\ncheckpoint_every = 5\n"
                              << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
    return (dir / name).string();
  }
  std::string sweep_dir(const std::string& name) const { return (dir / name).string(); }
};

// `sweep launch FILE --dir DIR` on the CPU, one run at a time; its exit code, stdout+stderr.
int launch(const std::string& file, const std::string& dir, std::string* out = nullptr) {
  const std::string o = dir + ".launch.txt";
  const int rc =
      sl::test::exit_code(std::system((std::string(SL_EXE) + " sweep launch " + file + " --dir " +
                                       dir + " --jobs 1 --threads 1 > " + o + " 2>&1")
                                          .c_str()));
  if (out) *out = slurp(o);
  return rc;
}

sl::RunLog log_of(const std::string& dir, const std::string& run_id) {
  return sl::read_runlog(sl::sweep::run_dir(dir, run_id) + "/log.h5");
}

// Every /train step once, 1..n.
void require_each_step_once(const sl::RunLog& l, size_t n) {
  BOOST_REQUIRE_EQUAL(l.train.size(), n);
  for (size_t i = 0; i < n; ++i) BOOST_REQUIRE_EQUAL(l.train[i].step, static_cast<int64_t>(i + 1));
}

std::map<int64_t, double> budget_losses(const sl::RunLog& l) {
  std::map<int64_t, double> m;
  for (size_t i = 0; i < l.budget_tokens.size(); ++i) {
    BOOST_TEST(!m.count(l.budget_tokens[i]), "budget " << l.budget_tokens[i] << " twice");
    m[l.budget_tokens[i]] = l.budget_loss[i];
  }
  return m;
}

// The extended run's log against a run planned with every budget from the start: the same
// trunk and the same budget losses, bit for bit (the CPU, one thread).
void require_same_run(const sl::RunLog& got, const sl::RunLog& want) {
  BOOST_REQUIRE_EQUAL(got.train.size(), want.train.size());
  for (size_t i = 0; i < want.train.size(); ++i) {
    BOOST_REQUIRE_EQUAL(got.train[i].step, want.train[i].step);
    BOOST_REQUIRE_EQUAL(got.train[i].loss, want.train[i].loss);
    BOOST_REQUIRE_EQUAL(got.train[i].lr, want.train[i].lr);
  }
  const auto g = budget_losses(got), w = budget_losses(want);
  BOOST_REQUIRE_EQUAL(g.size(), w.size());
  for (const auto& [t, loss] : w) {
    BOOST_REQUIRE(g.count(t));
    BOOST_TEST(g.at(t) == loss, "budget " << t);
  }
}

// sweep.csv's (run_id, tokens) -> loss column text.
std::map<std::pair<std::string, int64_t>, std::string> collected(const std::string& dir) {
  BOOST_REQUIRE_EQUAL(
      std::system((std::string(SL_EXE) + " sweep collect --dir " + dir + " > /dev/null").c_str()),
      0);
  std::map<std::pair<std::string, int64_t>, std::string> rows;
  std::istringstream csv(slurp(dir + "/sweep.csv"));
  auto fields = [](const std::string& line) {
    std::vector<std::string> c;
    std::istringstream ls(line);
    for (std::string x; std::getline(ls, x, ',');) c.push_back(x);
    return c;
  };
  std::string line;
  std::getline(csv, line);
  // Columns by name (collect adds columns over time: unique_tokens and epochs came later).
  const std::vector<std::string> header = fields(line);
  auto col = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    BOOST_REQUIRE_MESSAGE(it != header.end(), "sweep.csv has no column " << name);
    return static_cast<size_t>(it - header.begin());
  };
  const size_t id = col("run_id"), tokens = col("tokens"), loss = col("loss");
  while (std::getline(csv, line)) {
    const std::vector<std::string> c = fields(line);
    BOOST_REQUIRE_EQUAL(c.size(), header.size());
    BOOST_TEST(!rows.count({c[id], std::stoll(c[tokens])}), line);
    rows[{c[id], std::stoll(c[tokens])}] = c[loss];
  }
  return rows;
}

// How many times train.log says a trainer started.
size_t starts(const std::string& dir, const std::string& run_id) {
  const std::string log = slurp(sl::sweep::run_dir(dir, run_id) + "/train.log");
  size_t n = 0;
  for (size_t at = 0; (at = log.find("train: ", at)) != std::string::npos; ++at)
    if (log.compare(at, 16, "train: completed") != 0) ++n;
  return n;
}

}  // namespace

// A budget above the last: same id and index, config.toml with the new list, status extended;
// the launch goes on from the trunk checkpoint (the state where the old last budget's decay
// began) and logs exactly what a run planned with all three budgets logs.
BOOST_AUTO_TEST_CASE(a_budget_above_the_last_extends_the_run_from_its_trunk) {
  Fixture f;
  const std::string d = f.sweep_dir("sw");
  BOOST_REQUIRE_EQUAL(launch(f.write("a.toml", "patterns = [\"GA\"]\nbudgets = [2560, 3840]"), d),
                      0);
  const auto before = sl::sweep::load_plan(d);
  BOOST_REQUIRE_EQUAL(before.size(), 1u);
  const std::string id = before[0].run_id, rd = sl::sweep::run_dir(d, id);
  BOOST_TEST(sl::sweep::run_status(rd).status == "completed");
  BOOST_TEST(fs::exists(rd + "/ckpt/trunk/state.h5"));

  const std::string b = f.write("b.toml", "patterns = [\"GA\"]\nbudgets = [2560, 3840, 5120]");
  sl::sweep::Sweep s = sl::sweep::load_sweep(b);
  sl::sweep::prepare_dir(s, d);
  const auto plan = sl::sweep::load_plan(d);
  BOOST_REQUIRE_EQUAL(plan.size(), 1u);
  BOOST_TEST(plan[0].run_id == id);
  BOOST_TEST(plan[0].index == 0);
  BOOST_TEST((plan[0].budgets == std::vector<int64_t>{2560, 3840, 5120}));
  BOOST_TEST(slurp(rd + "/config.toml").find("budgets = [2560, 3840, 5120]") != std::string::npos);
  BOOST_TEST(sl::sweep::run_status(rd).status == "extended");
  BOOST_TEST(collected(d).at({id, 5120}) == "nan");  // planned, not reached yet

  std::string out;
  BOOST_REQUIRE_EQUAL(launch(b, d, &out), 0);
  BOOST_TEST(out.find("1 of 1 runs to do") != std::string::npos, out);
  const sl::RunLog l = log_of(d, id);
  BOOST_TEST(l.attrs.status == "completed");
  BOOST_TEST(sl::sweep::run_status(rd).status == "completed");
  require_each_step_once(l, 40);
  BOOST_TEST((l.budget_tokens == std::vector<int64_t>{2560, 3840, 5120}));
  BOOST_TEST(l.attrs.config_changes.find("step 24 (from the trunk checkpoint): ") == 0,
             l.attrs.config_changes);
  BOOST_TEST(l.attrs.config == slurp(rd + "/config.toml"));

  // The same sweep planned with three budgets from the start: the same run id, the same log.
  const std::string ref = f.sweep_dir("ref");
  BOOST_REQUIRE_EQUAL(launch(b, ref), 0);
  BOOST_REQUIRE_EQUAL(sl::sweep::load_plan(ref)[0].run_id, id);
  require_same_run(l, log_of(ref, id));

  const auto rows = collected(d);
  BOOST_REQUIRE_EQUAL(rows.size(), 3u);
  for (int64_t t : {2560, 3840, 5120}) BOOST_TEST(rows.at({id, t}) != "nan", t);
  // Nothing left to do: a launch starts nothing.
  BOOST_REQUIRE_EQUAL(launch(b, d, &out), 0);
  BOOST_TEST(out.find("nothing to do, all 1 runs are done") != std::string::npos, out);
}

// A budget between two others whose branch point the trunk has passed (and is before the trunk
// checkpoint): the trunk is retrained from the seed; the reported budgets keep their rows, the new
// one gets its branch, every step is logged once.
BOOST_AUTO_TEST_CASE(a_budget_below_a_passed_branch_point_retrains_the_trunk) {
  Fixture f;
  const std::string d = f.sweep_dir("sw");
  BOOST_REQUIRE_EQUAL(launch(f.write("a.toml", "patterns = [\"AA\"]\nbudgets = [2560, 3840]"), d),
                      0);
  const std::string id = sl::sweep::load_plan(d)[0].run_id;
  const std::string b = f.write("b.toml", "patterns = [\"AA\"]\nbudgets = [2560, 3200, 3840]");
  BOOST_REQUIRE_EQUAL(launch(b, d), 0);
  BOOST_REQUIRE_EQUAL(sl::sweep::load_plan(d)[0].run_id, id);
  const sl::RunLog l = log_of(d, id);
  BOOST_TEST(l.attrs.status == "completed");
  require_each_step_once(l, 30);
  BOOST_TEST(budget_losses(l).size() == 3u);
  BOOST_TEST(l.attrs.config_changes.find("step 0 (retrained from the seed): ") == 0,
             l.attrs.config_changes);
  const std::string train_log = slurp(sl::sweep::run_dir(d, id) + "/train.log");
  BOOST_TEST(train_log.find("budget 3200 tokens branches at step 20") != std::string::npos,
             train_log);
  BOOST_TEST(train_log.find("retrained from the seed") != std::string::npos, train_log);
  const std::string ref = f.sweep_dir("ref");
  BOOST_REQUIRE_EQUAL(launch(b, ref), 0);
  require_same_run(l, log_of(ref, id));
  const auto rows = collected(d);
  BOOST_REQUIRE_EQUAL(rows.size(), 3u);
  for (int64_t t : {2560, 3200, 3840}) BOOST_TEST(rows.at({id, t}) != "nan", t);
}

// Dropping a budget of a WSD run is refused in one line naming the run and the budget, and the
// directory is left as it was.
BOOST_AUTO_TEST_CASE(dropping_a_wsd_budget_is_refused_naming_the_run) {
  Fixture f;
  const std::string d = f.sweep_dir("sw");
  sl::sweep::Sweep a =
      sl::sweep::load_sweep(f.write("a.toml", "patterns = [\"AA\"]\nbudgets = [2560, 3840]"));
  sl::sweep::prepare_dir(a, d);
  const std::string id = a.runs[0].run_id;
  const std::string plan = slurp(d + "/plan.tsv"), sweep = slurp(d + "/sweep.toml"),
                    cfg = slurp(sl::sweep::run_dir(d, id) + "/config.toml");
  std::string out;
  BOOST_TEST(launch(f.write("b.toml", "patterns = [\"AA\"]\nbudgets = [2560, 5120]"), d, &out) ==
             2);
  BOOST_TEST(std::count(out.begin(), out.end(), '\n') == 1, out);
  BOOST_TEST(out.find("run " + id) != std::string::npos, out);
  BOOST_TEST(out.find("budget 3840 tokens") != std::string::npos, out);
  BOOST_TEST(slurp(d + "/plan.tsv") == plan);
  BOOST_TEST(slurp(d + "/sweep.toml") == sweep);
  BOOST_TEST(slurp(sl::sweep::run_dir(d, id) + "/config.toml") == cfg);
  BOOST_TEST(!fs::exists(sl::sweep::run_dir(d, id) + "/log.h5"));
}

// Cosine: a budget is a run of its own, as before. An added budget is a new run after the old
// ones (which keep their ids and indices and are not trained again); dropping one is refused.
BOOST_AUTO_TEST_CASE(cosine_budgets_stay_one_run_each) {
  Fixture f;
  const std::string d = f.sweep_dir("sw");
  BOOST_REQUIRE_EQUAL(
      launch(f.write("a.toml", "patterns = [\"AA\"]\nbudgets = [2560, 3840]", "cosine"), d), 0);
  const auto old_plan = sl::sweep::load_plan(d);
  BOOST_REQUIRE_EQUAL(old_plan.size(), 2u);
  std::string out;
  BOOST_REQUIRE_EQUAL(
      launch(f.write("b.toml", "patterns = [\"AA\"]\nbudgets = [2560, 3840, 5120]", "cosine"), d,
             &out),
      0);
  BOOST_TEST(out.find("1 of 3 runs to do") != std::string::npos, out);
  const auto plan = sl::sweep::load_plan(d);
  BOOST_REQUIRE_EQUAL(plan.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    BOOST_TEST(plan[i].run_id == old_plan[i].run_id);
    BOOST_TEST(starts(d, plan[i].run_id) == 1u);
  }
  BOOST_TEST(plan[2].config.tokens == 5120);
  require_each_step_once(log_of(d, plan[2].run_id), 40);
  BOOST_TEST(collected(d).size() == 3u);
  BOOST_TEST(launch(f.write("c.toml", "patterns = [\"AA\"]\nbudgets = [3840, 5120]", "cosine"), d,
                    &out) == 2);
  BOOST_TEST(out.find("run " + plan[0].run_id) != std::string::npos, out);
}

namespace {

// A run id as the code before WSD ids left the budgets out made it: FNV-1a 64 of the whole
// resolved config (train/config.cc run_id_of), 12 hex digits.
std::string whole_config_id(const sl::TrainConfig& c) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : sl::to_toml(c)) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
}

}  // namespace

// A sweep directory made before: its WSD run directory is named by the whole-config id, its
// checkpoint counts the reported budgets (no list) and there is no trunk checkpoint. Relaunched
// with the same file nothing is added or retrained; with a budget and a seed more, the old run
// keeps its id and index (retrained from the seed: it has no trunk checkpoint), the new run
// follows under a new-style id.
BOOST_AUTO_TEST_CASE(a_directory_with_whole_config_ids_keeps_them) {
  Fixture f;
  const std::string d = f.sweep_dir("sw");
  const std::string a = f.write("a.toml", "patterns = [\"GA\"]\nbudgets = [2560, 3840]");
  BOOST_REQUIRE_EQUAL(launch(a, d), 0);
  // Made old: rename the run directory, rewrite plan.tsv, and make the checkpoint the old kind.
  const sl::sweep::SweepRun r = sl::sweep::load_plan(d)[0];
  const std::string old_id = whole_config_id(r.config);
  BOOST_REQUIRE(old_id != r.run_id);
  fs::rename(sl::sweep::run_dir(d, r.run_id), sl::sweep::run_dir(d, old_id));
  std::string plan = slurp(d + "/plan.tsv");
  plan.replace(plan.find(r.run_id), r.run_id.size(), old_id);
  std::ofstream(d + "/plan.tsv") << plan;
  const std::string rd = sl::sweep::run_dir(d, old_id);
  fs::remove_all(rd + "/ckpt/trunk");
  sl::Checkpoint c = sl::read_checkpoint(rd + "/ckpt");
  c.strings.erase("budgets_reported");
  c.strings.erase("init");
  sl::write_checkpoint(rd + "/ckpt", c);

  std::string out;
  BOOST_REQUIRE_EQUAL(launch(a, d, &out), 0);
  BOOST_TEST(out.find("nothing to do, all 1 runs are done") != std::string::npos, out);
  BOOST_TEST(slurp(d + "/plan.tsv") == plan);
  BOOST_TEST(std::distance(fs::directory_iterator(d + "/runs"), fs::directory_iterator()) == 1);

  const std::string b =
      f.write("b.toml", "patterns = [\"GA\"]\nbudgets = [2560, 3840, 5120]\nseeds = [0, 1]");
  BOOST_REQUIRE_EQUAL(launch(b, d, &out), 0);
  BOOST_TEST(out.find("2 of 2 runs to do") != std::string::npos, out);
  const auto now = sl::sweep::load_plan(d);
  BOOST_REQUIRE_EQUAL(now.size(), 2u);
  BOOST_TEST(now[0].run_id == old_id);
  BOOST_TEST(now[1].config.seed == 1u);
  BOOST_TEST(now[1].run_id == sl::run_id_of(now[1].config));
  const sl::RunLog l = log_of(d, old_id);
  BOOST_TEST(l.attrs.status == "completed");
  require_each_step_once(l, 40);
  BOOST_TEST(l.attrs.config_changes.find("step 0 (retrained from the seed): ") == 0,
             l.attrs.config_changes);
  const std::string ref = f.sweep_dir("ref");
  BOOST_REQUIRE_EQUAL(
      launch(f.write("r.toml", "patterns = [\"GA\"]\nbudgets = [2560, 3840, 5120]"), ref), 0);
  require_same_run(l, log_of(ref, r.run_id));
  const auto rows = collected(d);
  BOOST_REQUIRE_EQUAL(rows.size(), 6u);
  for (const auto& [key, loss] : rows) BOOST_TEST(loss != "nan", key.first << " " << key.second);
}
