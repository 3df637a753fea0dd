// The executors that train a prepared sweep directory's runs (sweep.h; docs/DESIGN.md "Sweep
// directory"), behind `scalinglab sweep launch` and `sweep run-task`:
//
//   local  (local.cc)  `train` child processes, --jobs at a time on the CPU or --per-gpu per GPU
//                      (sharing it through CUDA MPS: --mps), largest runs first, each holding its
//                      run's lock (inherited from the launcher, so killing the launcher neither
//                      stops nor unlocks a running child).
//   slurm  (slurm.cc)  sbatch job arrays over the runs still to do, each task `sweep run-task`
//                      (run_task below); the Slurm-facing pieces are in slurm.h.
//
// Both skip completed runs and resume preempted and extended ones (`train --resume`); a trainer
// killed by a signal is not the run's fault (its status reads preempted, a later launch resumes
// it), an error exit marks the run failed (RUN/failed, rerun with retry_failed).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/process.h"
#include "sweep/sweep.h"

namespace sl::sweep {

// What `sweep launch` is asked to do (docs/DESIGN.md "Command line" lists the options).
struct LaunchOptions {
  std::string dir;             // the prepared sweep directory (prepare_dir), absolute
  std::string device = "cpu";  // cpu | cuda (local: each run gets cuda:<its slot's GPU>)
  int threads = 0;  // CPU threads per run; 0: local, cores / runs at a time; slurm, train's
  bool retry_failed = false;  // also rerun runs whose status is failed
  // The scalinglab executable the runs start (`train`, and `sweep run-task` in an sbatch script);
  // "": this process's own, which is scalinglab when the command line launches.
  std::string exe;
  // local
  int jobs = 1;     // cpu: runs at a time
  int gpus = 0;     // cuda: GPUs 0..G-1 (0: every GPU present)
  int per_gpu = 1;  // cuda: runs per GPU at most
  // cuda: memory of each GPU in GiB for the packing (0: nvidia-smi's memory.total; unknown there:
  // runs are placed by per_gpu alone). A run starts on a GPU only while the estimated device
  // memory of the runs on it (train/memory.h), its own included, stays within it.
  double gpu_mem = 0;
  // cuda: CUDA MPS for the runs sharing a GPU. auto: a control daemon of this launch's own when
  // per_gpu > 1 and nvidia-cuda-mps-control is in PATH (a CUDA_MPS_PIPE_DIRECTORY already set
  // is a server in use: the trainers get it, nothing is started); on: also for per_gpu 1, and an
  // error when it cannot start; off: plain processes, time-slicing each GPU.
  std::string mps = "auto";
  // A `scalinglab bench --json` file ("": none): the local executor orders its runs by their
  // estimated time at these measured rates (tables.h order_longest_first), not by FLOPs alone.
  std::string bench;
  // slurm
  std::string partition, time, account;  // #SBATCH --partition, --time, --account ("": none)
  int gpus_per_task = 0;  // #SBATCH --gpus-per-task; above 1 the task trains data parallel
  int cpus_per_task = 0;  // #SBATCH --cpus-per-task
  int max_parallel = 0;   // array tasks at a time (%M; 0: all)
  std::vector<std::string> sbatch_args;  // extra #SBATCH lines, as given
  bool dry_run = false;                  // write the scripts, submit nothing
};

// Whether a run with this status is still to do: pending, preempted or extended (a completed WSD
// run that gained budgets), or failed when retried.
bool to_do(const std::string& status, bool retry_failed);

// The local executor. Runs start longest first (ties by plan index): by their training FLOPs, or
// with LaunchOptions::bench by their estimated time at the benchmarked rates; on GPUs each is
// placed by its estimated device memory (sweep/packing.h: when a slot frees, the first queued run
// that fits on a GPU starts there), and a progress line (ProgressMeter, tables.h) follows each
// run's end. Returns 0 when every trainer it started exited 0 (completed, or stopped at a
// checkpoint by a stop signal), 1 otherwise. SIGTERM or SIGINT reach the running trainers at once
// as SIGTERM (they checkpoint and exit as preempted) and no further run starts; an MPS daemon it
// started is stopped once they have exited. Throws sl::Error, before any run starts, for a CUDA
// device where there is none, for --mps on where MPS cannot start, and for a run whose estimate
// exceeds one GPU's memory (naming the run).
int launch_local(const std::vector<SweepRun>& runs, const LaunchOptions& options);

// The Slurm executor: one job array per MaxArraySize runs still to do (SWEEP/slurm/array-<stamp>-
// <part>.sbatch and .idx), submitted with sbatch unless dry_run; submitted job ids are appended to
// SWEEP/slurm/jobs.tsv. Returns 0, or 1 when an sbatch failed. Throws sl::Error before writing
// anything when gpus_per_task > 1 does not fit (not cuda, or a batch that does not split).
int launch_slurm(const std::string& name, const std::vector<SweepRun>& runs,
                 const LaunchOptions& options);

// One Slurm array task (`sweep run-task SWEEP --index I`).
struct TaskOptions {
  std::string device = "cpu";  // cpu | cuda[:i]
  int threads = 0;             // CPU threads (0: train's default)
  int nproc = 1;               // GPUs of this task to train on, data parallel
  std::string exe;             // as LaunchOptions::exe
};

// Trains the run at plan index `index` of `dir`, resumed from its checkpoint if any, and returns
// the trainer's exit code (writing RUN/failed as the local executor does). On SIGUSR1 (the
// time-limit warning of --signal=B:USR1@90) the trainer checkpoints and the task requeues itself
// (`scontrol requeue $SLURM_JOB_ID`); on SIGTERM (scancel, or Slurm's own requeue or preemption,
// which requeue by themselves) it only checkpoints, so a cancel stays a cancel. A run already
// completed or diverged returns 0 at once; one whose lock stays held for a minute returns 1.
int run_task(const std::string& dir, int64_t index, const TaskOptions& options);

// Shared by the executors.

// Starts `EXE train --config RUN/config.toml --out RUN --resume --device D` for run r with stdout
// and stderr appended to RUN/train.log, the stop signals blocked until train's main() has its
// handlers (core/process.h block_stop_signals). The caller's lock on RUN (sweep.h try_lock) is
// inherited on purpose; `close_fds` are other runs' locks the child must not hold. threads > 0:
// --threads; nproc > 1: --nproc, data parallel over that many GPUs of this node. `env`: set in
// the trainer's environment (the local executor's CUDA MPS directories).
pid_t start_train(const std::string& exe, const std::string& dir, const SweepRun& r,
                  const std::string& device, int threads, const std::vector<int>& close_fds,
                  int nproc = 1, const std::vector<std::pair<std::string, std::string>>& env = {});

// After a trainer of run directory `rd` ended: an error exit (not 0, not 3 = diverged, not killed
// by a signal) is written to RUN/failed ("exit code N"), so status reads failed.
void record_exit(const std::string& rd, const ExitStatus& e);

// options.exe, or this process's own executable when it is empty.
std::string executable(const std::string& exe);

}  // namespace sl::sweep
