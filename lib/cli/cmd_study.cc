// `scalinglab study STUDY.toml --out DIR [--device cpu|cuda]`: the whole pipeline in one command.
// STUDY.toml is a sweep file (sweeps/README.md); the study plans it into DIR/sweep, runs it with
// the local executor (`sweep launch`, a child process whose output goes to DIR/launch.log),
// collects DIR/sweep/sweep.{h5,csv} and writes the report to DIR/report. Re-running resumes:
// completed runs are skipped and preempted ones continue from their checkpoints.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/process.h"
#include "report/report.h"
#include "sweep/sweep.h"
#include "sweep/tables.h"

namespace sl::cli {
namespace {
namespace fs = std::filesystem;

struct StudyArgs {
  std::string file, out, device = "cpu", mps = "auto";
  int jobs = 1, threads = 0, gpus = 0, per_gpu = 1;
  double gpu_mem = 0;  // GiB per GPU for the packing (0: nvidia-smi's)
  std::string bench;   // bench --json rates for the run order ("": by FLOPs)
  // Seconds between progress lines while no run ends (0: a line only as runs end): a study's
  // last, largest run may train alone for many minutes, its ETA going stale meanwhile.
  double progress_every = 60;
  report::ReportOptions report;
};

std::string clock_text(double s) {
  char buf[32];
  const long t = std::lround(std::max(0.0, s));
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  return buf;
}

// A number as the command line gives it back (17 significant digits: it reads back exactly).
std::string num_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// Runs completed or diverged (a failed run has ended but not completed), of all.
struct Progress {
  int done = 0, total = 0;
};

Progress progress(const std::vector<sweep::SweepRun>& runs, const std::string& dir) {
  Progress p;
  for (const sweep::SweepRun& r : runs) {
    const std::string st = sweep::run_status(sweep::run_dir(dir, r.run_id)).status;
    ++p.total;
    p.done += st == "completed" || st == "diverged";
  }
  return p;
}

// Runs `scalinglab sweep launch` as a child, printing a progress line as runs end.
int launch(const StudyArgs& a, const std::string& dir, const std::vector<sweep::SweepRun>& runs) {
  const std::string exe = self_executable();
  std::vector<std::string> args = {exe, "sweep",    "launch", a.file,   "--dir",
                                   dir, "--device", a.device, "--jobs", std::to_string(a.jobs)};
  if (a.threads > 0) args.insert(args.end(), {"--threads", std::to_string(a.threads)});
  if (a.gpus > 0) args.insert(args.end(), {"--gpus", std::to_string(a.gpus)});
  args.insert(args.end(), {"--per-gpu", std::to_string(a.per_gpu), "--mps", a.mps});
  if (a.gpu_mem > 0) args.insert(args.end(), {"--gpu-mem", num_text(a.gpu_mem)});
  if (!a.bench.empty()) args.insert(args.end(), {"--bench", a.bench});
  // Ctrl-C / SIGTERM reach the launch child's whole process group (the launcher and its train
  // children) as SIGTERM, which stops the runs at a checkpoint; the study then exits and a rerun
  // resumes.
  SignalForwarder stops({SIGINT, SIGTERM}, SIGTERM);
  SpawnOptions so;
  so.out = Redirect::append(a.out + "/launch.log");
  so.err = Redirect::to_stdout();
  so.new_process_group = true;
  const pid_t pid = spawn(args, so).pid;
  stops.add(-pid);
  // One plain line each time runs end, and every progress_every seconds meanwhile (no redraw,
  // so a terminal's scrollback and a log read the same): runs done of all, the aggregate
  // tokens/s and the ETA of the tokens left at that rate.
  using Clock = std::chrono::steady_clock;
  const sweep::ProgressMeter meter(dir, runs);
  int64_t ended = meter.line().ended;
  auto last = Clock::now();
  const double poll = a.progress_every > 0 ? std::min(2.0, a.progress_every) : 2.0;
  ExitStatus e;
  while (true) {
    e = wait_child(pid, false);
    const bool over = e.pid == pid;
    const sweep::ProgressMeter::Line l = meter.line();
    const bool due = a.progress_every > 0 && !over &&
                     std::chrono::duration<double>(Clock::now() - last).count() >= a.progress_every;
    if (l.ended != ended || due) {
      ended = l.ended;
      last = Clock::now();
      std::printf("  %s\n", l.text.c_str());
      std::fflush(stdout);
    }
    if (over) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(poll));
  }
  stops.remove(-pid);
  if (stops.received())
    fail("study: stopped by signal " + std::to_string(stops.received()) +
         " (runs checkpointed); rerun the same command to resume");
  return e.code;
}

}  // namespace

void register_study(CLI::App& app) {
  auto a = std::make_shared<StudyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "study", "Plan, run (local executor), collect, fit and report a sweep file; resumable");
  cmd->add_option("STUDY_TOML", a->file, "Study file (a sweep file, e.g. experiments/*.toml)")
      ->required();
  cmd->add_option("--out", a->out, "Study directory: sweep/, report/, launch.log")->required();
  cmd->add_option("--device", a->device, "cpu | cuda")->capture_default_str();
  cmd->add_option("--jobs", a->jobs, "cpu: runs at a time (small models: one per core)")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads per run (default: cores / jobs)");
  cmd->add_option("--gpus", a->gpus, "cuda: GPUs to use");
  cmd->add_option("--per-gpu", a->per_gpu, "cuda: runs per GPU at most")->capture_default_str();
  cmd->add_option("--gpu-mem", a->gpu_mem,
                  "cuda: GiB of memory per GPU for packing runs by their estimated memory "
                  "(default: nvidia-smi's memory.total)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--mps", a->mps,
                  "cuda: share each GPU through CUDA MPS (auto: when --per-gpu > 1 and "
                  "nvidia-cuda-mps-control is in PATH; on: or fail; off: plain processes)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd->add_option("--progress-every", a->progress_every,
                  "Seconds between progress lines while runs go on (besides one each time runs "
                  "end; 0: only then)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--bench", a->bench,
                  "Order the runs by their estimated time at the measured rates of a "
                  "`scalinglab bench --json` file (default: by FLOPs)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--bootstrap", a->report.bootstrap, "Paired bootstrap replicates of the report")
      ->capture_default_str();
  cmd->add_option("--baseline", a->report.baseline, "Baseline arch (default dense)");
  cmd->add_option("--candidate", a->report.candidate, "Candidate arch (default hybrid)");
  cmd->callback([a]() {
    sweep::Sweep s = sweep::load_sweep(a->file);
    a->out = fs::absolute(a->out).lexically_normal().string();
    if (!a->bench.empty()) a->bench = fs::absolute(a->bench).lexically_normal().string();
    const std::string dir = a->out + "/sweep";
    make_dirs(a->out);
    sweep::prepare_dir(s, dir);
    const auto t0 = std::chrono::steady_clock::now();
    std::printf("study '%s': %zu runs in %s (launch log %s/launch.log)\n", s.name.c_str(),
                s.runs.size(), dir.c_str(), a->out.c_str());
    std::fflush(stdout);
    const int rc = launch(*a, dir, s.runs);
    if (rc != 0) {
      // The launcher's own error (a bad option, --mps on without MPS) ends its log as main prints
      // it; said here, in its one line, rather than as runs that did not complete.
      std::ifstream log(a->out + "/launch.log");
      std::string last;
      for (std::string l; std::getline(log, l);)
        if (!l.empty()) last = l;
      if (last.rfind("scalinglab: ", 0) == 0) fail("study: " + last.substr(12));
    }
    const Progress p = progress(s.runs, dir);
    std::printf(
        "study: %d of %d runs completed in %s\n", p.done, p.total,
        clock_text(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count())
            .c_str());
    if (rc != 0 || p.done < p.total)
      fail("study: " + std::to_string(p.total - p.done) + " runs did not complete (see " + a->out +
           "/launch.log and `scalinglab sweep status --dir " + dir +
           "`); rerun the study to resume");
    const int64_t rows = sweep::collect(sweep::load_plan(dir), dir);
    std::printf("study: collected %lld rows -> %s/sweep.h5\n", static_cast<long long>(rows),
                dir.c_str());
    std::fflush(stdout);
    const report::ReportResult r = report::write_report(dir, a->out + "/report", a->report);
    for (const std::string& w : r.warnings)
      std::fprintf(stderr, "scalinglab study: warning: %s\n", w.c_str());
    std::printf(
        "study: report %s/report/report.md (%zu files), total %s\n", a->out.c_str(), r.files.size(),
        clock_text(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count())
            .c_str());
  });
}

}  // namespace sl::cli
