// The Slurm executor (executor.h launch_slurm, run_task) and its Slurm-facing pieces (slurm.h).
#include "sweep/slurm.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/process.h"

namespace sl::sweep {

std::string sbatch_script(const ArrayJob& job, const LaunchOptions& a) {
  const std::string sdir = a.dir + "/slurm";
  const int64_t m = job.max_parallel > 0 ? job.max_parallel : job.tasks;
  std::ostringstream sh;
  sh << "#!/bin/bash\n"
     << "# scalinglab sweep '" << job.name << "': " << job.tasks << " runs (plan indices in "
     << job.base
     << ".idx).\n# Task i runs plan index = line i+1 of that file; requeued tasks resume from "
        "their checkpoint.\n"
     << "#SBATCH --job-name=sl-" << job.name << "\n"
     << "#SBATCH --array=0-" << job.tasks - 1 << "%" << m << "\n"
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
     << "IDX=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" " << shell_quote(job.base + ".idx") << ")\n"
     << "# exec: the batch shell's USR1 (--signal=B:...) must reach run-task itself.\n"
     << "exec " << shell_quote(job.exe) << " sweep run-task " << shell_quote(a.dir)
     << " --index \"$IDX\" --device " << shell_quote(a.device);
  if (a.threads > 0) sh << " --threads " << a.threads;
  if (a.gpus_per_task > 1) sh << " --nproc " << a.gpus_per_task;
  sh << "\n";
  return sh.str();
}

std::vector<std::string> sbatch_command(const std::string& script_path) {
  return {"sbatch", "--parsable", script_path};
}

std::string parse_job_id(const std::string& out) { return out.substr(0, out.find_first_of(";\n")); }

int64_t max_array_size() {
  int rc = 0;
  SpawnOptions so;
  so.err = Redirect::null();
  const std::string text = capture_output({"scontrol", "show", "config"}, &rc, so);
  int64_t v = 1001;  // Slurm's default
  std::istringstream in(text);
  for (std::string s; std::getline(in, s);) {
    if (s.rfind("MaxArraySize", 0) == 0) {
      auto eq = s.find('=');
      if (eq != std::string::npos) v = std::atoll(s.c_str() + eq + 1);
    }
  }
  return v > 0 ? v : 1001;
}

int launch_slurm(const std::string& name, const std::vector<SweepRun>& runs,
                 const LaunchOptions& a) {
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
    if (to_do(run_status(run_dir(a.dir, r.run_id)).status, a.retry_failed)) idx.push_back(r.index);
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
  const std::string exe = executable(a.exe);
  int rc_all = 0;
  for (size_t off = 0, part = 0; off < idx.size(); off += chunk, ++part) {
    const size_t n = std::min<size_t>(chunk, idx.size() - off);
    ArrayJob job;
    job.name = name;
    job.base = sdir + "/array-" + stamp + "-" + std::to_string(part);
    job.tasks = static_cast<int64_t>(n);
    job.max_parallel = a.max_parallel;
    job.exe = exe;
    std::ostringstream list;
    for (size_t i = 0; i < n; ++i) list << idx[off + i] << "\n";
    atomic_write_file(job.base + ".idx", list.str());
    atomic_write_file(job.base + ".sbatch", sbatch_script(job, a));
    std::printf("sweep launch (slurm): wrote %s.sbatch (%zu tasks, %lld at a time)\n",
                job.base.c_str(), n,
                static_cast<long long>(a.max_parallel > 0 ? a.max_parallel : job.tasks));
    if (a.dry_run) continue;
    int rc = 0;
    SpawnOptions so;
    so.err = Redirect::to_stdout();
    const std::string out = capture_output(sbatch_command(job.base + ".sbatch"), &rc, so);
    if (rc != 0) {
      std::fprintf(stderr, "scalinglab: sbatch failed (%s.sbatch): %s", job.base.c_str(),
                   out.c_str());
      rc_all = 1;
      continue;
    }
    const std::string id = parse_job_id(out);
    std::ofstream(sdir + "/jobs.tsv", std::ios::app)
        << id << "\t" << job.base << ".sbatch\t" << n << "\t" << stamp << "\n";
    std::printf("  submitted job %s\n", id.c_str());
  }
  return rc_all;
}

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
  SpawnOptions so;
  so.err = Redirect::null();
  const std::string text =
      capture_output({"squeue", "-h", "-r", "-j", ids, "-o", "%i %T"}, &rc, so);
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

int run_task(const std::string& dir, int64_t index, const TaskOptions& o) {
  std::vector<SweepRun> runs = load_plan(dir);
  if (index < 0 || index >= static_cast<int64_t>(runs.size()))
    fail("sweep run-task: --index " + std::to_string(index) + " is outside the plan (" +
         std::to_string(runs.size()) + " runs in " + dir + "/plan.tsv)");
  const SweepRun& r = runs[index];
  const std::string rd = run_dir(dir, r.run_id);
  // Both reach the trainer as SIGTERM (it checkpoints and exits; it treats USR1 and TERM alike);
  // which one came decides below whether the task requeues itself.
  SignalForwarder stops({SIGUSR1, SIGTERM}, SIGTERM);
  // A requeued task can start while its previous incarnation is still shutting down: wait.
  int fd = -1;
  for (int i = 0; i < 120 && fd < 0 && !stops.received(); ++i) {
    fd = try_lock(rd);
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (fd < 0) {
    std::fprintf(stderr, "scalinglab: sweep run-task: run %s is locked by another process\n",
                 r.run_id.c_str());
    return 1;
  }
  const std::string before = run_status(rd, true).status;
  if (before == "completed" || before == "diverged") {
    std::printf("sweep run-task: run %s is already %s\n", r.run_id.c_str(), before.c_str());
    return 0;
  }
  std::filesystem::remove(rd + "/failed");
  const char* restart = std::getenv("SLURM_RESTART_COUNT");
  std::printf("sweep run-task: index %lld, run %s (%s %s), %s, restart count %s\n",
              static_cast<long long>(index), r.run_id.c_str(), r.arch.c_str(), r.size.c_str(),
              before.c_str(), restart ? restart : "0");
  std::fflush(stdout);
  const pid_t pid = start_train(executable(o.exe), dir, r, o.device, o.threads, {}, o.nproc);
  stops.add(pid);  // also sends a signal that came before the child existed
  const ExitStatus e = wait_child(pid);
  stops.remove(pid);
  const std::string after = run_status(rd, true).status;
  std::printf("sweep run-task: run %s: train exit %d, status %s\n", r.run_id.c_str(), e.code,
              after.c_str());
  record_exit(rd, e);  // as the local executor
  unlock(fd);
  const char* job = std::getenv("SLURM_JOB_ID");
  if (e.code == 0 && stops.received() == SIGUSR1 && job) {
    std::printf("sweep run-task: scontrol requeue %s\n", job);
    std::fflush(stdout);
    return run_process({"scontrol", "requeue", job}) == 0 ? 0 : 1;
  }
  return e.code;
}

}  // namespace sl::sweep
