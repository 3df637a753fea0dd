// The Slurm side of the Slurm executor (executor.h launch_slurm, run_task): the sbatch script of
// one job array, the commands that submit and query it, and Slurm's view of a sweep's tasks.
// Each piece that does not need a running Slurm is a function of its inputs, so it is tested
// without one (tests/sweep/test_executor.cc); tests/sweep/test_slurm.cc runs the whole executor
// against a real one.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sweep/executor.h"

namespace sl::sweep {

// One job array of a sweep: tasks 0..tasks-1, task i running the plan index on line i+1 of
// `base`.idx.
struct ArrayJob {
  std::string name;          // the sweep's name (job name sl-<name>)
  std::string base;          // SWEEP/slurm/array-<stamp>-<part>: the script is base.sbatch
  int64_t tasks = 0;         // array size
  int64_t max_parallel = 0;  // tasks at a time (%M)
  std::string exe;           // the scalinglab the tasks run (`sweep run-task`)
};

// The sbatch script of `job` for launch options `o` (o.dir: the sweep directory the tasks get;
// their output goes to o.dir/slurm/%A_%a.out): #SBATCH lines for the array (requeueable, USR1
// 90 s before the time limit to the batch shell, appended output) and each option that is set,
// then the line that execs `sweep run-task`. Paths are shell-quoted (core/process.h).
std::string sbatch_script(const ArrayJob& job, const LaunchOptions& o);

// The command that submits a script: sbatch --parsable SCRIPT (prints "JOBID[;CLUSTER]").
std::vector<std::string> sbatch_command(const std::string& script_path);

// The job id in sbatch --parsable's output: up to the first ';' or newline.
std::string parse_job_id(const std::string& sbatch_output);

// MaxArraySize of the cluster (`scontrol show config`); array indices must stay below it.
// Slurm's default, 1001, where scontrol does not answer.
int64_t max_array_size();

// Slurm's view of a Slurm sweep: plan index -> "JOB_TASK STATE" for every array task that squeue
// still lists (pending, configuring, requeued, ...), from SWEEP/slurm/jobs.tsv and each array's
// .idx file (task i runs plan index = line i+1). Empty without jobs.tsv or without squeue.
std::map<int64_t, std::string> slurm_states(const std::string& dir);

}  // namespace sl::sweep
