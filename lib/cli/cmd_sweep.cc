// `scalinglab sweep plan|launch|status|collect SWEEP.toml --dir SWEEP` and
// `scalinglab sweep run-task SWEEP --index I` (one Slurm array task). See lib/sweep/sweep.h for
// the sweep directory.
//
// Executors. local: `train` child processes, --jobs at a time (CPU) or --per-gpu per GPU, each
// holding its run's lock (inherited from the launcher, so killing the launcher neither stops nor
// unlocks a running child); completed runs are skipped, preempted ones resumed (`train --resume`).
// slurm: sbatch job arrays over the runs still to do, each task `sweep run-task`.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/commands.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "sweep/sweep.h"

namespace sl::cli {
namespace {
namespace fs = std::filesystem;
using sweep::SweepRun;

std::atomic<int> g_signal{0};
std::atomic<pid_t> g_child{-1};  // run-task's train child, for forwarding signals
extern "C" void on_signal(int sig) {
  g_signal.store(sig);
  const pid_t c = g_child.load();
  // SIGTERM asks the trainer to checkpoint and exit (it treats USR1 and TERM alike).
  if (c > 0) kill(c, SIGTERM);
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::string abs_dir(const std::string& d) { return fs::absolute(d).lexically_normal().string(); }

std::string human(double x) {
  char buf[32];
  if (x >= 1e12)
    std::snprintf(buf, sizeof buf, "%.2fT", x / 1e12);
  else if (x >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", x / 1e9);
  else if (x >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
  else if (x >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

std::string budgets_text(const SweepRun& r) {
  std::string s;
  for (size_t i = 0; i < r.budgets.size(); ++i) s += (i ? "," : "") + human(r.budgets[i]);
  return s;
}

// Starts `scalinglab train` for run r with stdout/stderr appended to RUN/train.log. `keep_fd` is
// the run's lock (inherited on purpose); `close_fds` are other runs' locks the child must not hold.
// nproc > 1: data parallel over that many GPUs of this node (train --nproc).
pid_t spawn_train(const std::string& dir, const SweepRun& r, const std::string& device, int threads,
                  const std::vector<int>& close_fds, int nproc = 1) {
  const std::string rd = sweep::run_dir(dir, r.run_id), exe = self_exe();
  std::vector<std::string> args = {
      exe, "train", "--config", rd + "/config.toml", "--out", rd, "--resume", "--device", device};
  if (threads > 0) args.insert(args.end(), {"--threads", std::to_string(threads)});
  if (nproc > 1) args.insert(args.end(), {"--nproc", std::to_string(nproc)});
  const std::string log = rd + "/train.log";
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) fail("sweep: fork failed");
  if (pid == 0) {
    for (int fd : close_fds) close(fd);
    // A launcher's own handlers must not apply in the child; the trainer installs its own.
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    // Blocked across exec, so a stop sent before the trainer's main() has installed its handlers
    // (while the executable loads) stays pending instead of killing it; train unblocks them.
    sigset_t stops;
    sigemptyset(&stops);
    for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&stops, s);
    sigprocmask(SIG_BLOCK, &stops, nullptr);
    FILE* f = std::fopen(log.c_str(), "a");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void write_failed(const std::string& rd, int rc) {
  atomic_write_file(rd + "/failed", "exit code " + std::to_string(rc) + "\n");
}

// Measured FLOP/s per (arch, size) from `scalinglab bench --json FILE` (rows with arch, pattern,
// size, flops_per_s); a run whose arch (or pattern) and size were benchmarked is estimated at that
// rate, every other run at the default.
using Rates = std::map<std::pair<std::string, std::string>, double>;
Rates read_bench_rates(const std::string& path) {
  Rates rates;
  if (path.empty()) return rates;
  std::ifstream in(path);
  if (!in) fail("sweep plan --bench '" + path + "': cannot open");
  try {
    const nlohmann::json rows = nlohmann::json::parse(in);
    for (const auto& r : rows) {
      const double f = r.at("flops_per_s").get<double>();
      if (!(f > 0)) continue;
      rates[{r.at("arch").get<std::string>(), r.at("size").get<std::string>()}] = f;
      rates[{r.at("pattern").get<std::string>(), r.at("size").get<std::string>()}] = f;
    }
  } catch (const std::exception& e) {
    fail("sweep plan --bench '" + path + "': not a bench --json file (" + e.what() + ")");
  }
  return rates;
}

void print_plan(const std::vector<SweepRun>& runs, double flops_per_s, const std::string& dir,
                const Rates& rates = {}) {
  std::printf("%-5s %-12s %-8s %-7s %10s %-28s %10s %8s%s\n", "index", "run_id", "arch", "size",
              "N", "tokens", "FLOPs", "est_h", dir.empty() ? "" : "  status");
  double total_flops = 0, total_s = 0;
  int measured = 0;
  for (const SweepRun& r : runs) {
    total_flops += r.flops;
    double rate = flops_per_s;
    for (const std::string& a : {r.arch, r.config.model.pattern}) {
      const auto it = rates.find({a, r.size});
      if (it != rates.end()) {
        rate = it->second;
        ++measured;
        break;
      }
    }
    total_s += sweep::estimate_seconds(r, rate);
    std::string st;
    if (!dir.empty()) st = "  " + sweep::run_status(sweep::run_dir(dir, r.run_id)).status;
    std::printf("%-5lld %-12s %-8s %-7s %10s %-28s %10.3g %8.3f%s\n",
                static_cast<long long>(r.index), r.run_id.c_str(), r.arch.c_str(), r.size.c_str(),
                human(static_cast<double>(r.n_params_nonembedding)).c_str(),
                budgets_text(r).c_str(), r.flops, sweep::estimate_seconds(r, rate) / 3600.0,
                st.c_str());
  }
  std::printf(
      "%zu runs, %.3g FLOPs, about %.2f device-hours (%d runs at their benchmarked "
      "FLOP/s, %zu at %.3g FLOP/s)\n",
      runs.size(), total_flops, total_s / 3600.0, measured, runs.size() - measured, flops_per_s);
}

// status/collect read SWEEP/ only; a sweep file given with them must be the one that made it.
void check_same_sweep(const std::string& file, const std::string& dir) {
  sweep::Sweep s = sweep::load_sweep(file);
  std::ifstream f(dir + "/sweep.toml");
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f || ss.str() != s.text)
    fail("sweep directory '" + dir + "' was not created by '" + file + "' (sweep.toml differs)");
}

struct LaunchArgs {
  std::string file, dir, executor = "local", device = "cpu";
  int jobs = 1, gpus = 0, per_gpu = 1, threads = 0;
  bool retry_failed = false, dry_run = false;
  // slurm
  std::string partition, time, account;
  int gpus_per_task = 0, max_parallel = 0, cpus_per_task = 0;
  std::vector<std::string> sbatch_args;
};

bool todo(const std::string& status, bool retry_failed) {
  return status == "pending" || status == "preempted" || (retry_failed && status == "failed");
}

int launch_local(const std::vector<SweepRun>& runs, const LaunchArgs& a) {
  const bool gpu = a.device.rfind("cuda", 0) == 0;
  // --gpus 0 (the default): every GPU present.
  const int gpus = gpu ? (a.gpus > 0 ? a.gpus : cuda_devices()) : 0;
  if (gpu && gpus == 0)
    fail("sweep launch --device " + a.device + ": no CUDA device here (or --gpus G)");
  const int slots = gpu ? gpus * std::max(1, a.per_gpu) : std::max(1, a.jobs);
  int threads = a.threads;
  if (!gpu && threads <= 0)
    threads = std::max<int>(1, static_cast<int>(std::thread::hardware_concurrency()) / slots);
  struct Active {
    const SweepRun* run;
    int lock_fd, slot;
  };
  std::map<pid_t, Active> active;
  std::vector<bool> slot_used(slots, false);
  std::vector<const SweepRun*> queue;
  for (const SweepRun& r : runs) {
    const std::string st = sweep::run_status(sweep::run_dir(a.dir, r.run_id)).status;
    if (todo(st, a.retry_failed)) queue.push_back(&r);
  }
  std::printf("sweep launch (local): %zu of %zu runs to do, %d at a time\n", queue.size(),
              runs.size(), slots);
  std::fflush(stdout);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  size_t next = 0;
  int bad = 0;
  bool stopping = false;
  while (next < queue.size() || !active.empty()) {
    if (g_signal.load() && !stopping) {
      stopping = true;
      std::fprintf(stderr, "sweep launch: signal %d: stopping %zu runs (they checkpoint)\n",
                   g_signal.load(), active.size());
      for (const auto& [pid, x] : active) kill(pid, SIGTERM);
    }
    while (!stopping && next < queue.size() && static_cast<int>(active.size()) < slots) {
      const SweepRun& r = *queue[next++];
      const std::string rd = sweep::run_dir(a.dir, r.run_id);
      const int fd = sweep::try_lock(rd);
      if (fd < 0) {
        std::printf("  %s: running elsewhere, skipped\n", r.run_id.c_str());
        continue;
      }
      // Another launcher may have finished it between the scan and the lock.
      if (!todo(sweep::run_status(rd, true).status, true)) {
        sweep::unlock(fd);
        continue;
      }
      fs::remove(rd + "/failed");
      int slot = 0;
      while (slot_used[slot]) ++slot;
      std::vector<int> others;
      for (const auto& [pid, x] : active) others.push_back(x.lock_fd);
      const std::string dev =
          gpu ? "cuda:" + std::to_string(slot / std::max(1, a.per_gpu)) : a.device;
      const pid_t pid = spawn_train(a.dir, r, dev, threads, others);
      slot_used[slot] = true;
      active[pid] = {&r, fd, slot};
      std::printf("  start %s (%s %s, %s) on %s, log %s/train.log\n", r.run_id.c_str(),
                  r.arch.c_str(), r.size.c_str(), budgets_text(r).c_str(), dev.c_str(), rd.c_str());
      std::fflush(stdout);
    }
    if (active.empty()) break;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) continue;  // EINTR: a signal; handled at the top
    auto it = active.find(pid);
    if (it == active.end()) continue;
    const Active x = it->second;
    active.erase(it);
    slot_used[x.slot] = false;
    const int rc = exit_code(status);
    const std::string rd = sweep::run_dir(a.dir, x.run->run_id);
    // Killed by a signal (OOM killer, kill -9): not the run's fault; its log still says running
    // and nobody holds the lock, so status reads preempted and a re-launch resumes it from its
    // last checkpoint. An error exit is failed (rerun with --retry-failed).
    if (rc != 0 && rc != 3 && !WIFSIGNALED(status)) write_failed(rd, rc);
    if (rc != 0) ++bad;
    sweep::unlock(x.lock_fd);
    std::printf("  end %s: %s (exit %d)\n", x.run->run_id.c_str(),
                sweep::run_status(rd).status.c_str(), rc);
    std::fflush(stdout);
  }
  return bad ? 1 : 0;
}

// MaxArraySize of the cluster (`scontrol show config`); array indices must stay below it.
int64_t max_array_size() {
  FILE* p = popen("scontrol show config 2>/dev/null", "r");
  int64_t v = 1001;  // Slurm's default
  if (!p) return v;
  char line[512];
  while (std::fgets(line, sizeof line, p)) {
    std::string s(line);
    if (s.rfind("MaxArraySize", 0) == 0) {
      auto eq = s.find('=');
      if (eq != std::string::npos) v = std::atoll(s.c_str() + eq + 1);
    }
  }
  pclose(p);
  return v > 0 ? v : 1001;
}

std::string run_capture(const std::string& cmd, int& rc) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) fail("cannot run: " + cmd);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  rc = pclose(p);
  rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int launch_slurm(const std::string& name, const std::vector<SweepRun>& runs, const LaunchArgs& a) {
  // Tasks with several GPUs train data parallel (one rank per GPU): every run's global batch
  // must split evenly, checked before anything is submitted.
  if (a.gpus_per_task > 1) {
    if (a.device.rfind("cuda", 0) != 0)
      fail("sweep launch --gpus-per-task " + std::to_string(a.gpus_per_task) +
           ": needs --device cuda");
    for (const SweepRun& r : runs)
      if (r.config.batch_size % a.gpus_per_task != 0)
        fail("sweep launch --gpus-per-task " + std::to_string(a.gpus_per_task) + ": run " +
             r.run_id + " (index " + std::to_string(r.index) + ") has train.batch_size " +
             std::to_string(r.config.batch_size) + ", not divisible");
  }
  std::vector<int64_t> idx;
  for (const SweepRun& r : runs)
    if (todo(sweep::run_status(sweep::run_dir(a.dir, r.run_id)).status, a.retry_failed))
      idx.push_back(r.index);
  if (idx.empty()) {
    std::printf("sweep launch (slurm): nothing to do, all %zu runs are done or running\n",
                runs.size());
    return 0;
  }
  const int64_t chunk = a.dry_run ? 1001 : max_array_size();
  const std::string sdir = a.dir + "/slurm";
  make_dirs(sdir);
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  const std::string exe = self_exe();
  int rc_all = 0;
  for (size_t off = 0, part = 0; off < idx.size(); off += chunk, ++part) {
    const size_t n = std::min<size_t>(chunk, idx.size() - off);
    const std::string base = sdir + "/array-" + stamp + "-" + std::to_string(part);
    std::ostringstream list;
    for (size_t i = 0; i < n; ++i) list << idx[off + i] << "\n";
    atomic_write_file(base + ".idx", list.str());
    const int64_t m = a.max_parallel > 0 ? a.max_parallel : static_cast<int64_t>(n);
    std::ostringstream sh;
    sh << "#!/bin/bash\n"
       << "# scalinglab sweep '" << name << "': " << n << " runs (plan indices in " << base
       << ".idx).\n# Task i runs plan index = line i+1 of that file; requeued tasks resume from "
          "their checkpoint.\n"
       << "#SBATCH --job-name=sl-" << name << "\n"
       << "#SBATCH --array=0-" << n - 1 << "%" << m << "\n"
       << "#SBATCH --requeue\n"
       << "#SBATCH --signal=B:USR1@90\n"
       << "#SBATCH --output=" << sdir << "/%A_%a.out\n"
       << "#SBATCH --open-mode=append\n";
    if (!a.partition.empty()) sh << "#SBATCH --partition=" << a.partition << "\n";
    if (!a.account.empty()) sh << "#SBATCH --account=" << a.account << "\n";
    if (!a.time.empty()) sh << "#SBATCH --time=" << a.time << "\n";
    if (a.gpus_per_task > 0) sh << "#SBATCH --gpus-per-task=" << a.gpus_per_task << "\n";
    if (a.cpus_per_task > 0) sh << "#SBATCH --cpus-per-task=" << a.cpus_per_task << "\n";
    for (const std::string& x : a.sbatch_args) sh << "#SBATCH " << x << "\n";
    sh << "set -euo pipefail\n"
       << "export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}\n"
       << "IDX=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" " << shell_quote(base + ".idx") << ")\n"
       << "# exec: the batch shell's USR1 (--signal=B:...) must reach run-task itself.\n"
       << "exec " << shell_quote(exe) << " sweep run-task " << shell_quote(a.dir)
       << " --index \"$IDX\" --device " << a.device;
    if (a.threads > 0) sh << " --threads " << a.threads;
    if (a.gpus_per_task > 1) sh << " --nproc " << a.gpus_per_task;
    sh << "\n";
    atomic_write_file(base + ".sbatch", sh.str());
    std::printf("sweep launch (slurm): wrote %s.sbatch (%zu tasks, %lld at a time)\n", base.c_str(),
                n, static_cast<long long>(m));
    if (a.dry_run) continue;
    int rc = 0;
    const std::string out =
        run_capture("sbatch --parsable " + shell_quote(base + ".sbatch") + " 2>&1", rc);
    if (rc != 0) {
      std::fprintf(stderr, "scalinglab: sbatch failed (%s.sbatch): %s", base.c_str(), out.c_str());
      rc_all = 1;
      continue;
    }
    const std::string job = out.substr(0, out.find_first_of(";\n"));
    std::ofstream(sdir + "/jobs.tsv", std::ios::app)
        << job << "\t" << base << ".sbatch\t" << n << "\t" << stamp << "\n";
    std::printf("  submitted job %s\n", job.c_str());
  }
  return rc_all;
}

// Slurm's view of a Slurm sweep: plan index -> "JOB_TASK STATE" for every array task that squeue
// still lists (pending, configuring, requeued, ...), from SWEEP/slurm/jobs.tsv and each array's
// .idx file (task i runs plan index = line i+1). Empty without jobs.tsv or without squeue.
std::map<int64_t, std::string> slurm_states(const std::string& dir) {
  std::map<int64_t, std::string> out;
  const std::string sdir = dir + "/slurm";
  std::ifstream jobs(sdir + "/jobs.tsv");
  if (!jobs) return out;
  std::map<std::string, std::vector<int64_t>> idx_of_job;  // job id -> plan index per task
  std::string line, ids;
  while (std::getline(jobs, line)) {
    std::istringstream ls(line);
    std::string job, sbatch;
    if (!(ls >> job >> sbatch)) continue;
    std::ifstream idx(sbatch.substr(0, sbatch.size() - 7) + ".idx");  // .sbatch -> .idx
    std::vector<int64_t>& v = idx_of_job[job];
    for (int64_t i; idx >> i;) v.push_back(i);
    ids += (ids.empty() ? "" : ",") + job;
  }
  if (ids.empty()) return out;
  int rc = 0;
  const std::string text = run_capture("squeue -h -r -j " + ids + " -o '%i %T' 2>/dev/null", rc);
  if (rc != 0) return out;  // no squeue here, or the jobs are long gone
  std::istringstream in(text);
  std::string task, state;
  while (in >> task >> state) {
    const size_t us = task.find('_');
    if (us == std::string::npos) continue;
    const auto it = idx_of_job.find(task.substr(0, us));
    const std::string n = task.substr(us + 1);
    if (it == idx_of_job.end() || n.empty() || n.find_first_not_of("0123456789") != n.npos)
      continue;
    const size_t t = std::stoul(n);
    if (t < it->second.size()) out[it->second[t]] = task + " " + state;
  }
  return out;
}

// One Slurm array task: the run at plan index `index`, resumed from its checkpoint if any. On
// USR1 (the time-limit warning of --signal=B:USR1@90) the trainer checkpoints and the task
// requeues itself; on TERM (scancel, or Slurm's own requeue/preemption, which requeue by
// themselves) it only checkpoints, so a cancel stays a cancel.
int run_task(const std::string& dir, int64_t index, const std::string& device, int threads,
             int nproc) {
  std::vector<SweepRun> runs = sweep::load_plan(dir);
  if (index < 0 || index >= static_cast<int64_t>(runs.size()))
    fail("sweep run-task: --index " + std::to_string(index) + " is outside the plan (" +
         std::to_string(runs.size()) + " runs in " + dir + "/plan.tsv)");
  const SweepRun& r = runs[index];
  const std::string rd = sweep::run_dir(dir, r.run_id);
  signal(SIGUSR1, on_signal);
  signal(SIGTERM, on_signal);
  // A requeued task can start while its previous incarnation is still shutting down: wait.
  int fd = -1;
  for (int i = 0; i < 120 && fd < 0 && !g_signal.load(); ++i) {
    fd = sweep::try_lock(rd);
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (fd < 0) {
    std::fprintf(stderr, "scalinglab: sweep run-task: run %s is locked by another process\n",
                 r.run_id.c_str());
    return 1;
  }
  const std::string before = sweep::run_status(rd, true).status;
  if (before == "completed" || before == "diverged") {
    std::printf("sweep run-task: run %s is already %s\n", r.run_id.c_str(), before.c_str());
    return 0;
  }
  fs::remove(rd + "/failed");
  const char* restart = std::getenv("SLURM_RESTART_COUNT");
  std::printf("sweep run-task: index %lld, run %s (%s %s), %s, restart count %s\n",
              static_cast<long long>(index), r.run_id.c_str(), r.arch.c_str(), r.size.c_str(),
              before.c_str(), restart ? restart : "0");
  std::fflush(stdout);
  const pid_t pid = spawn_train(dir, r, device, threads, {}, nproc);
  g_child.store(pid);
  if (g_signal.load()) kill(pid, SIGTERM);  // a signal that came before the child existed
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  g_child.store(-1);
  const int rc = exit_code(status);
  const std::string after = sweep::run_status(rd, true).status;
  std::printf("sweep run-task: run %s: train exit %d, status %s\n", r.run_id.c_str(), rc,
              after.c_str());
  if (rc != 0 && rc != 3 && !WIFSIGNALED(status)) write_failed(rd, rc);  // as launch_local
  sweep::unlock(fd);
  if (rc == 0 && g_signal.load() == SIGUSR1 && std::getenv("SLURM_JOB_ID")) {
    const std::string cmd = std::string("scontrol requeue ") + std::getenv("SLURM_JOB_ID");
    std::printf("sweep run-task: %s\n", cmd.c_str());
    std::fflush(stdout);
    return std::system(cmd.c_str()) == 0 ? 0 : 1;
  }
  return rc;
}

// "1h02m", "3m10s", "45s"; "-" when unknown.
std::string fmt_duration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "-";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char b[32];
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60));
  else if (t >= 60)
    std::snprintf(b, sizeof b, "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  else
    std::snprintf(b, sizeof b, "%llds", static_cast<long long>(t));
  return b;
}

// The status table of every run and a totals line; `active`: runs running or queued in Slurm.
struct StatusTable {
  std::string text;
  int64_t ended = 0, active = 0;
};
StatusTable status_table(const std::string& dir, const std::vector<SweepRun>& runs) {
  const std::map<int64_t, std::string> queued = slurm_states(dir);
  std::map<std::string, int> counts;
  StatusTable t;
  std::string& o = t.text;
  char line[512];
  std::snprintf(line, sizeof line, "%-5s %-12s %-8s %-7s %-28s %13s %7s %9s %8s %8s %7s  %s\n",
                "index", "run_id", "arch", "size", "tokens", "step", "budgets", "tok/s", "train",
                "val", "ETA", "status");
  o += line;
  int64_t done_tokens = 0, left_tokens = 0;
  double rate = 0;  // summed tokens/s of the running runs
  for (const SweepRun& r : runs) {
    sweep::RunStatus st = sweep::run_status(sweep::run_dir(dir, r.run_id));
    // A run not training (no lock held) whose array task Slurm holds is queued, not idle.
    const auto q = queued.find(r.index);
    const bool in_slurm = q != queued.end() && st.status != "running" && st.status != "completed";
    if (in_slurm)
      st.status =
          (q->second.find("PENDING") != std::string::npos ? "queued (slurm " : "starting (slurm ") +
          q->second + ")";
    ++counts[st.status.substr(0, st.status.find(' '))];
    const bool running = st.status == "running";
    t.ended += st.ended();
    t.active += running || in_slurm;
    const int64_t planned = st.tokens_planned > 0 ? st.tokens_planned : r.config.tokens;
    done_tokens += st.tokens;
    if (!st.ended()) left_tokens += std::max<int64_t>(0, planned - st.tokens);
    if (running) rate += st.tokens_per_s;
    const double eta = running && st.tokens_per_s > 0
                           ? static_cast<double>(planned - st.tokens) / st.tokens_per_s
                           : -1;
    std::snprintf(line, sizeof line,
                  "%-5lld %-12s %-8s %-7s %-28s %6lld/%-6lld %3lld/%-3zu %9.0f %8.4f %8.4f %7s  "
                  "%s\n",
                  static_cast<long long>(r.index), r.run_id.c_str(), r.arch.c_str(), r.size.c_str(),
                  budgets_text(r).c_str(), static_cast<long long>(st.step),
                  static_cast<long long>(r.config.steps()), static_cast<long long>(st.budgets_done),
                  r.budgets.size(), st.tokens_per_s, st.train_loss, st.last_loss,
                  fmt_duration(eta).c_str(), st.status.c_str());
    o += line;
  }
  std::snprintf(line, sizeof line, "%zu runs:", runs.size());
  o += line;
  for (const auto& [k, n] : counts) {
    std::snprintf(line, sizeof line, " %d %s", n, k.c_str());
    o += line;
  }
  std::snprintf(line, sizeof line, "; %.3g of %.3g tokens, %.0f tok/s running, ETA %s\n",
                static_cast<double>(done_tokens), static_cast<double>(done_tokens + left_tokens),
                rate,
                rate > 0 ? fmt_duration(static_cast<double>(left_tokens) / rate).c_str() : "-");
  o += line;
  return t;
}

// `sweep status --watch SECONDS`: on a terminal the table is redrawn in place, otherwise each
// poll appends it as plain lines. Ends when every run has ended, or when nothing has been running
// or queued for three polls in a row (a launcher that stopped with runs pending; one idle poll
// can be the moment between two runs of a local launcher).
void watch_status(const std::string& dir, const std::vector<SweepRun>& runs, double secs) {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  int idle = 0;
  for (;;) {
    const StatusTable t = status_table(dir, runs);
    char stamp[512];
    const std::time_t now = std::time(nullptr);
    char clock[16];
    std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&now));
    std::snprintf(stamp, sizeof stamp, "sweep %s  (%s, every %gs)\n", dir.c_str(), clock, secs);
    if (tty)
      std::fputs(("\033[H\033[2J" + std::string(stamp) + t.text).c_str(), stdout);
    else
      std::fputs((std::string(stamp) + t.text + "\n").c_str(), stdout);
    std::fflush(stdout);
    if (t.ended == static_cast<int64_t>(runs.size())) {
      std::printf("sweep status: every run has ended\n");
      return;
    }
    idle = t.active > 0 ? 0 : idle + 1;
    if (idle >= 3) {
      std::printf(
          "sweep status: nothing running or queued; %lld of %zu runs have not ended "
          "(start them with sweep launch)\n",
          static_cast<long long>(runs.size() - t.ended), runs.size());
      return;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  }
}

}  // namespace

void register_sweep(CLI::App& app) {
  auto a = std::make_shared<LaunchArgs>();
  auto flops_per_s = std::make_shared<double>(0);
  auto index = std::make_shared<int64_t>(-1);
  CLI::App* cmd = app.add_subcommand("sweep", "Plan, launch, follow and collect a sweep grid");
  cmd->require_subcommand(1);
  auto common = [&](CLI::App* c, bool file_required) {
    auto* f = c->add_option("SWEEP_TOML", a->file, "Sweep file (sweeps/*.toml)");
    if (file_required) f->required();
    c->add_option("--dir", a->dir, "Sweep directory (created)")->required();
  };
  CLI::App* plan = cmd->add_subcommand("plan", "Table of runs: N, tokens, FLOPs, estimated hours");
  plan->add_option("SWEEP_TOML", a->file, "Sweep file")->required();
  plan->add_option("--dir", a->dir, "Sweep directory (optional: adds each run's status)");
  plan->add_option("--flops-per-s", *flops_per_s,
                   "Sustained FLOP/s for the estimate (default 5e10 on cpu, 2e14 on cuda)");
  plan->add_option("--device", a->device, "cpu | cuda (for the default FLOP/s)");
  auto bench = std::make_shared<std::string>();
  plan->add_option("--bench", *bench,
                   "Measured rates: a `scalinglab bench --json` file (per arch and size)");
  plan->callback([a, flops_per_s, bench]() {
    sweep::Sweep s = sweep::load_sweep(a->file);
    sweep::check_data(s);
    double f = *flops_per_s > 0 ? *flops_per_s : a->device.rfind("cuda", 0) == 0 ? 2e14 : 5e10;
    std::string dir = a->dir.empty() || !path_exists(a->dir + "/plan.tsv") ? "" : abs_dir(a->dir);
    std::printf("sweep '%s': %s\n", s.name.c_str(), a->file.c_str());
    print_plan(s.runs, f, dir, read_bench_rates(*bench));
  });

  CLI::App* launch = cmd->add_subcommand("launch", "Run the sweep's pending and preempted runs");
  common(launch, true);
  launch->add_option("--executor", a->executor, "local | slurm")
      ->check(CLI::IsMember({"local", "slurm"}));
  launch->add_option("--device", a->device, "cpu | cuda");
  launch->add_option("--jobs", a->jobs, "local, cpu: runs at a time");
  launch->add_option("--gpus", a->gpus, "local, cuda: GPUs to use (0..G-1; default: all present)");
  launch->add_option("--per-gpu", a->per_gpu, "local, cuda: runs per GPU");
  launch->add_option("--threads", a->threads, "CPU threads per run (default: cores / jobs)");
  launch->add_flag("--retry-failed", a->retry_failed, "Also rerun runs whose status is failed");
  launch->add_option("--partition", a->partition, "slurm: partition");
  launch->add_option("--gpus-per-task", a->gpus_per_task, "slurm: GPUs per task");
  launch->add_option("--cpus-per-task", a->cpus_per_task, "slurm: CPUs per task");
  launch->add_option("--time", a->time, "slurm: time limit per task");
  launch->add_option("--max-parallel", a->max_parallel, "slurm: array tasks at a time (%M)");
  launch->add_option("--account", a->account, "slurm: account");
  launch->add_option("--sbatch-arg", a->sbatch_args, "slurm: extra #SBATCH line (repeatable)");
  launch->add_flag("--dry-run", a->dry_run, "slurm: write the scripts, do not submit");
  launch->callback([a]() {
    sweep::Sweep s = sweep::load_sweep(a->file);
    a->dir = abs_dir(a->dir);
    sweep::prepare_dir(s, a->dir);
    const int rc =
        a->executor == "local" ? launch_local(s.runs, *a) : launch_slurm(s.name, s.runs, *a);
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
    const std::string dir = abs_dir(a->dir);
    if (!a->file.empty()) check_same_sweep(a->file, dir);
    const std::vector<SweepRun> runs = sweep::load_plan(dir);
    if (watch_opt->count() == 0) {
      std::fputs(status_table(dir, runs).text.c_str(), stdout);
      return;
    }
    double secs = 5;
    if (!watch->empty()) {
      char* end = nullptr;
      secs = std::strtod(watch->c_str(), &end);
      if (end == watch->c_str() || *end != '\0' || !(secs > 0) || secs > 86400)
        fail("sweep status --watch '" + *watch + "': not a number of seconds in (0, 86400]");
    }
    watch_status(dir, runs, secs);
  });

  CLI::App* coll = cmd->add_subcommand("collect", "Write SWEEP/sweep.h5 and sweep.csv");
  common(coll, false);
  coll->callback([a]() {
    const std::string dir = abs_dir(a->dir);
    if (!a->file.empty()) check_same_sweep(a->file, dir);
    const int64_t n = sweep::collect(sweep::load_plan(dir), dir);
    std::printf("sweep collect: %lld rows -> %s/sweep.h5, %s/sweep.csv\n",
                static_cast<long long>(n), dir.c_str(), dir.c_str());
  });

  CLI::App* task = cmd->add_subcommand("run-task", "Run one run of a prepared sweep (Slurm task)");
  task->add_option("SWEEP", a->dir, "Sweep directory")->required();
  task->add_option("--index", *index, "Plan index (plan.tsv)")->required();
  task->add_option("--device", a->device, "cpu | cuda[:i]");
  task->add_option("--threads", a->threads, "CPU threads");
  auto nproc = std::make_shared<int>(1);
  task->add_option("--nproc", *nproc, "GPUs of this task to train on, data parallel (cuda)");
  task->callback([a, index, nproc]() {
    const int rc = run_task(abs_dir(a->dir), *index, a->device, a->threads, *nproc);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace sl::cli
