// Sweeps (docs/DESIGN.md "Sweep file"): a SWEEP.toml grid expanded into run configs with stable
// ids, the sweep directory, per-run status, locks, and the collected table.
//
// Sweep directory SWEEP/:
//   sweep.toml          the sweep file's text (a later launch with a different file is refused)
//   plan.tsv            one line per run: index, run_id, arch, pattern, size, ... (run-task reads
//   it) runs/<run_id>/      config.toml (resolved, written before the run starts), log.h5, ckpt/,
//                       train.log (the child's stdout+stderr), lock (flock: held while it runs),
//                       failed (exit code of a run that ended with neither status; see status)
//   slurm/              sbatch scripts, their index lists, jobs.tsv (submitted job ids), %A_%a.out
//   sweep.h5, sweep.csv the collected table (collect)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/config.h"

namespace sl::sweep {

struct SweepRun {
  int64_t index = 0;   // position in the plan (Slurm array task index maps to it)
  std::string run_id;  // run_id_of(config): the run directory's name
  std::string arch;    // model.arch (the pattern as given, for pattern sweeps)
  std::string size;    // ladder preset or "d<d_model>L<n_layers>"
  TrainConfig config;  // fully resolved; with schedule "wsd", train.budgets holds the budgets
  std::vector<int64_t> budgets;  // token budgets this run reports (one unless WSD branches)
  int64_t n_params = 0, n_params_nonembedding = 0;
  double flops = 0;  // training FLOPs of the run (flops/token x tokens trained)
};

struct Sweep {
  std::string name, path, text;
  std::vector<SweepRun> runs;
};

// Reads and expands SWEEP.toml. Throws sl::Error naming the file and key (unknown keys, empty
// grids, a budget not above the warmup, a bad [train]/[data]/[model] key, ...).
Sweep load_sweep(const std::string& path);

// Creates or checks SWEEP/ and writes sweep.toml, plan.tsv and each run's config.toml (an existing
// one must be identical, or a WSD run's with fewer budgets). A sweep file whose text differs from
// the directory's sweep.toml extends the sweep when it still makes every run of the directory's
// plan (comments, added sizes, seeds, architectures, cosine budgets, budgets of WSD runs): the old
// runs keep their run id and plan index (a Slurm array may be running them), the new ones follow,
// and `s.runs` is reordered, reindexed and given the directory's ids to match. Runs are matched
// by identity_toml (train/config.h), so a WSD run that gains budgets keeps its id and directory
// (its config.toml gets the new list; run_status then says "extended"), and so do the ids of a
// directory made when WSD ids still hashed the budgets. A file that drops or changes a run, or
// drops a budget of a WSD run, is refused naming the run. Nothing is written before every check
// passed.
void prepare_dir(Sweep& s, const std::string& dir);
// Opens every distinct data source of the sweep's runs (no full scan): a missing or malformed
// file is one error line naming it, at plan and launch time instead of in every run.
void check_data(const Sweep& s);
// The runs of the plan written by prepare_dir (plan.tsv and each run's config.toml), so status,
// collect and run-task need only SWEEP/. Throws sl::Error naming the file if SWEEP/ has no plan.
std::vector<SweepRun> load_plan(const std::string& dir);

std::string run_dir(const std::string& dir, const std::string& run_id);

// The runs `sweep launch --only SPEC` starts: SPEC is a comma-separated list of selectors, each
// ARCH:SIZE (either side may be *, e.g. "dense:*,hybrid:L0") or a run id; a run is kept when any
// selector matches it, in plan order. The others are left as they are (a later launch without
// --only does them). Throws sl::Error naming the selector that is malformed or matches no run, so
// a typo cannot quietly launch nothing.
std::vector<SweepRun> select_runs(const std::vector<SweepRun>& runs, const std::string& spec);

// pending | running | completed | extended | preempted | diverged | failed | unreadable.
// "running": its lock is held; a log whose status says running without a lock holder was killed:
// "preempted" (resumable); "extended": the log says completed but config.toml plans a budget it
// has no row for (a WSD run that gained budgets: a launch resumes it); "unreadable": log.h5
// exists but cannot be read (`error` says why).
struct RunStatus {
  std::string status;
  int64_t step = 0, steps_planned = 0, budgets_done = 0;
  int64_t tokens = 0, tokens_planned = 0;  // trained so far (last /train row), the run's total
  double last_loss = 0;                    // last held-out loss, NaN if none
  double train_loss = 0;                   // last /train loss, NaN if none
  double tokens_per_s = 0;                 // of the last /train row, 0 if none
  std::string error;                       // why log.h5 is unreadable
  // Whether the run has ended for good: completed, diverged or failed (pending, extended and
  // preempted runs may still be started or resumed).
  bool ended() const { return status == "completed" || status == "diverged" || status == "failed"; }
};
// `locked_by_me`: the caller holds the lock (its own flock would otherwise read as "running").
RunStatus run_status(const std::string& run_dir, bool locked_by_me = false);

// An exclusive lock on RUN/lock (flock; core/fs.h try_lock_file, which writes our pid into it).
// try_lock returns -1 if another process holds it. The fd is inherited by children (no
// O_CLOEXEC) on purpose: a train child keeps the run locked even if its launcher is killed, and
// `train` itself takes this same lock, finding it already held through the inherited fd.
int try_lock(const std::string& run_dir);
void unlock(int fd);

// Writes SWEEP/sweep.h5 and SWEEP/sweep.csv (one row per run and budget reached; runs with no
// budget row yet get one row with loss NaN and their status). Returns the number of rows.
int64_t collect(const std::vector<SweepRun>& runs, const std::string& dir);

// Estimated device-seconds per run: from the FLOPs and `flops_per_s` (a bench MFU number if known).
double estimate_seconds(const SweepRun& r, double flops_per_s);

}  // namespace sl::sweep
