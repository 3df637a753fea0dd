// The tables `sweep plan` and `sweep status` print: the plan with its FLOPs and estimated hours,
// and each run's status with totals (live: sweep status --watch).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "sweep/sweep.h"

namespace sl::sweep {

// 1.50M, 2.00G, 31.2k: a count for a table cell.
std::string human(double x);
// The run's token budgets, comma separated, in human().
std::string budgets_text(const SweepRun& r);

// Measured FLOP/s per (arch, size) and per (pattern, size) from `scalinglab bench --json FILE`
// (rows with arch, pattern, size, flops_per_s; docs/DESIGN.md "bench JSON"). Empty for path "".
// Throws sl::Error naming the file when it cannot be read or is not bench JSON.
using Rates = std::map<std::pair<std::string, std::string>, double>;
Rates read_bench_rates(const std::string& path);
// The benchmarked FLOP/s of a run's arch (or pattern) at its size, 0 when not benchmarked.
double rate_for(const SweepRun& r, const Rates& rates);
// Orders the local executor's queue, longest first (ties by plan index): by estimated
// device-seconds, FLOPs over the run's benchmarked rate, where `rates` has them; a run not
// benchmarked counts at the mean of the rates that the queue's benchmarked runs have; with no
// rates at all, by FLOPs (the same order). Measured speed matters where architectures differ in
// FLOP/s: a hybrid run of a dense run's FLOPs takes several times as long.
void order_longest_first(std::vector<const SweepRun*>& queue, const Rates& rates);

// Prints the plan table and a totals line. A run whose arch (or pattern) and size were
// benchmarked (`rates`) is estimated at that rate, every other run at `flops_per_s`; `dir`
// non-empty adds each run's status in that sweep directory.
void print_plan(const std::vector<SweepRun>& runs, double flops_per_s, const std::string& dir,
                const Rates& rates = {});

// "1h02m", "3m10s", "45s"; "-" when unknown (negative or not finite).
std::string fmt_duration(double seconds);

// The status table of every run and a totals line; `active`: runs running or queued in Slurm.
struct StatusTable {
  std::string text;
  int64_t ended = 0, active = 0;
};
StatusTable status_table(const std::string& dir, const std::vector<SweepRun>& runs);

// `sweep status --watch SECONDS`: on a terminal the table is redrawn in place, otherwise each
// poll appends it as plain lines. Ends when every run has ended, or when nothing has been running
// or queued for three polls in a row (a launcher that stopped with runs pending; one idle poll
// can be the moment between two runs of a local launcher).
void watch_status(const std::string& dir, const std::vector<SweepRun>& runs, double seconds);

// The progress line a local launch and a study print each time runs end (plain lines, so a log
// stays readable): runs ended of all (failed ones counted), the aggregate tokens/s since the
// meter was made (tokens trained by every run, running ones up to their last /train row, over the
// wall time), and the ETA of the tokens still planned at that rate.
class ProgressMeter {
 public:
  ProgressMeter(const std::string& dir, const std::vector<SweepRun>& runs);
  struct Line {
    int64_t ended = 0;  // runs that have ended (completed, diverged or failed)
    std::string text;   // "progress: 3/8 runs done, 1.52M tokens/s, 12.0M tokens to go, ETA 8s"
  };
  Line line() const;

 private:
  std::string dir_;
  std::vector<SweepRun> runs_;
  std::vector<int64_t> tokens0_;  // each run's tokens when the meter was made
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace sl::sweep
