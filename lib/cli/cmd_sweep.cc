// `scalinglab sweep plan|launch|status|collect SWEEP.toml --dir SWEEP` and
// `scalinglab sweep run-task SWEEP --index I` (one Slurm array task): the options, checked and
// handed to lib/sweep (the sweep directory: sweep.h; the executors: executor.h; the tables:
// tables.h).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "sweep/executor.h"
#include "sweep/sweep.h"
#include "sweep/tables.h"

namespace sl::cli {
namespace {
namespace fs = std::filesystem;
using sweep::SweepRun;

std::string abs_dir(const std::string& d) { return fs::absolute(d).lexically_normal().string(); }

// status/collect read SWEEP/ only; a sweep file given with them must be the one that made it.
void check_same_sweep(const std::string& file, const std::string& dir) {
  sweep::Sweep s = sweep::load_sweep(file);
  std::ifstream f(dir + "/sweep.toml");
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f || ss.str() != s.text)
    fail("sweep directory '" + dir + "' was not created by '" + file + "' (sweep.toml differs)");
}

// What the sweep subcommands parse into: the launch options, and the sweep file beside them.
struct Args {
  std::string file, executor = "local";
  sweep::LaunchOptions launch;
};

}  // namespace

void register_sweep(CLI::App& app) {
  auto a = std::make_shared<Args>();
  sweep::LaunchOptions& o = a->launch;  // the options write into it (a lives as long as app)
  auto flops_per_s = std::make_shared<double>(0);
  auto index = std::make_shared<int64_t>(-1);
  CLI::App* cmd = app.add_subcommand("sweep", "Plan, launch, follow and collect a sweep grid");
  cmd->require_subcommand(1);
  auto common = [&](CLI::App* c, bool file_required) {
    auto* f = c->add_option("SWEEP_TOML", a->file, "Sweep file (sweeps/*.toml)");
    if (file_required) f->required();
    c->add_option("--dir", o.dir, "Sweep directory (created)")->required();
  };
  CLI::App* plan = cmd->add_subcommand("plan", "Table of runs: N, tokens, FLOPs, estimated hours");
  plan->add_option("SWEEP_TOML", a->file, "Sweep file")->required();
  plan->add_option("--dir", o.dir, "Sweep directory (optional: adds each run's status)");
  plan->add_option("--flops-per-s", *flops_per_s,
                   "Sustained FLOP/s for the estimate (default 5e10 on cpu, 2e14 on cuda)");
  plan->add_option("--device", o.device, "cpu | cuda (for the default FLOP/s)");
  auto bench = std::make_shared<std::string>();
  plan->add_option("--bench", *bench,
                   "Measured rates: a `scalinglab bench --json` file (per arch and size)");
  plan->callback([a, flops_per_s, bench]() {
    sweep::Sweep s = sweep::load_sweep(a->file);
    sweep::check_data(s);
    double f = *flops_per_s > 0                         ? *flops_per_s
               : a->launch.device.rfind("cuda", 0) == 0 ? 2e14
                                                        : 5e10;
    std::string dir = a->launch.dir.empty() || !path_exists(a->launch.dir + "/plan.tsv")
                          ? ""
                          : abs_dir(a->launch.dir);
    std::printf("sweep '%s': %s\n", s.name.c_str(), a->file.c_str());
    sweep::print_plan(s.runs, f, dir, sweep::read_bench_rates(*bench));
  });

  CLI::App* launch = cmd->add_subcommand("launch", "Run the sweep's pending and preempted runs");
  common(launch, true);
  launch->add_option("--executor", a->executor, "local | slurm")
      ->check(CLI::IsMember({"local", "slurm"}));
  launch->add_option("--device", o.device, "cpu | cuda");
  launch->add_option("--jobs", o.jobs, "local, cpu: runs at a time");
  launch->add_option("--gpus", o.gpus, "local, cuda: GPUs to use (0..G-1; default: all present)");
  launch->add_option("--per-gpu", o.per_gpu, "local, cuda: runs per GPU at most");
  launch
      ->add_option("--gpu-mem", o.gpu_mem,
                   "local, cuda: GiB of memory per GPU for packing runs by their estimated memory "
                   "(default: nvidia-smi's memory.total)")
      ->check(CLI::PositiveNumber);
  launch
      ->add_option("--mps", o.mps,
                   "local, cuda: share each GPU through CUDA MPS (auto: when --per-gpu > 1 and "
                   "nvidia-cuda-mps-control is in PATH; on: or fail; off: plain processes)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  launch->add_option("--bench", o.bench,
                     "local: order the runs by their estimated time at the measured rates of a "
                     "`scalinglab bench --json` file (per arch and size; default: by FLOPs)");
  launch->add_option("--threads", o.threads, "CPU threads per run (default: cores / jobs)");
  launch->add_flag("--retry-failed", o.retry_failed, "Also rerun runs whose status is failed");
  auto only = std::make_shared<std::string>();
  launch->add_option("--only", *only,
                     "Launch only these runs: ARCH:SIZE selectors (either may be *) or run ids, "
                     "comma-separated, e.g. dense:*,hybrid:L0 (the others are left for a later "
                     "launch)");
  launch->add_option("--partition", o.partition, "slurm: partition");
  launch->add_option("--gpus-per-task", o.gpus_per_task, "slurm: GPUs per task");
  launch->add_option("--cpus-per-task", o.cpus_per_task, "slurm: CPUs per task");
  launch->add_option("--time", o.time, "slurm: time limit per task");
  launch->add_option("--max-parallel", o.max_parallel, "slurm: array tasks at a time (%M)");
  launch->add_option("--account", o.account, "slurm: account");
  launch->add_option("--sbatch-arg", o.sbatch_args, "slurm: extra #SBATCH line (repeatable)");
  launch->add_flag("--dry-run", o.dry_run, "slurm: write the scripts, do not submit");
  launch->callback([a, only]() {
    sweep::Sweep s = sweep::load_sweep(a->file);
    a->launch.dir = abs_dir(a->launch.dir);
    // Checked before anything is written, so a bad --only leaves the directory as it was; chosen
    // after prepare_dir, which may reindex the runs to match an existing directory.
    if (!only->empty()) sweep::select_runs(s.runs, *only);
    sweep::prepare_dir(s, a->launch.dir);
    const std::vector<SweepRun> runs = only->empty() ? s.runs : sweep::select_runs(s.runs, *only);
    const int rc = a->executor == "local" ? sweep::launch_local(runs, a->launch)
                                          : sweep::launch_slurm(s.name, runs, a->launch);
    if (rc != 0) std::exit(rc);
  });

  CLI::App* status = cmd->add_subcommand(
      "status", "Per-run status from log.h5, the locks and (Slurm sweeps) squeue");
  common(status, false);
  auto watch = std::make_shared<std::string>();
  CLI::Option* watch_opt =
      status
          ->add_option("--watch", *watch,
                       "Redraw the table every SECONDS (default 5) until every run has ended "
                       "(or nothing is running or queued for three redraws)")
          ->expected(0, 1);
  status->callback([a, watch, watch_opt]() {
    const std::string dir = abs_dir(a->launch.dir);
    if (!a->file.empty()) check_same_sweep(a->file, dir);
    const std::vector<SweepRun> runs = sweep::load_plan(dir);
    if (watch_opt->count() == 0) {
      std::fputs(sweep::status_table(dir, runs).text.c_str(), stdout);
      return;
    }
    double secs = 5;
    if (!watch->empty()) {
      char* end = nullptr;
      secs = std::strtod(watch->c_str(), &end);
      if (end == watch->c_str() || *end != '\0' || !(secs > 0) || secs > 86400)
        fail("sweep status --watch '" + *watch + "': not a number of seconds in (0, 86400]");
    }
    sweep::watch_status(dir, runs, secs);
  });

  CLI::App* coll = cmd->add_subcommand("collect", "Write SWEEP/sweep.h5 and sweep.csv");
  common(coll, false);
  coll->callback([a]() {
    const std::string dir = abs_dir(a->launch.dir);
    if (!a->file.empty()) check_same_sweep(a->file, dir);
    const int64_t n = sweep::collect(sweep::load_plan(dir), dir);
    std::printf("sweep collect: %lld rows -> %s/sweep.h5, %s/sweep.csv\n",
                static_cast<long long>(n), dir.c_str(), dir.c_str());
  });

  CLI::App* task = cmd->add_subcommand("run-task", "Run one run of a prepared sweep (Slurm task)");
  auto t = std::make_shared<sweep::TaskOptions>();
  task->add_option("SWEEP", o.dir, "Sweep directory")->required();
  task->add_option("--index", *index, "Plan index (plan.tsv)")->required();
  task->add_option("--device", t->device, "cpu | cuda[:i]");
  task->add_option("--threads", t->threads, "CPU threads");
  task->add_option("--nproc", t->nproc, "GPUs of this task to train on, data parallel (cuda)");
  task->callback([a, index, t]() {
    const int rc = sweep::run_task(abs_dir(a->launch.dir), *index, *t);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace sl::cli
