// The sweep executors as a library (sweep/executor.h, sweep/slurm.h), without the command line:
// the local executor on a tiny real CPU sweep (a failing trainer marks its runs failed, a plain
// relaunch leaves them, --retry-failed trains them, a finished sweep has nothing to do); one
// run-task; and everything of the Slurm executor that needs no Slurm: the sbatch script line by
// line, its quoting (run by bash against a stand-in scalinglab), and launch, chunking, job ids
// and squeue states against stand-in sbatch, scontrol and squeue commands on PATH.
// (tests/sweep/test_slurm.cc runs the Slurm executor against a real Slurm.)
#define BOOST_TEST_MODULE sweep_executor
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/files.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/process.h"
#include "runlog/runlog.h"
#include "sweep/executor.h"
#include "sweep/slurm.h"
#include "sweep/sweep.h"
#include "sweep/tables.h"

namespace fs = std::filesystem;
using sl::test::slurp;

namespace {

// A sweep file over byte-level English: one 32-wide, 2-layer shape, 128 tokens a step.
struct Fixture {
  sl::test::TempDir tmp{"sl_sweep_exec_"};
  fs::path dir = tmp.path;
  Fixture() {
    std::ofstream(dir / "train.txt") << sl::test::licenses({"GPL-3"});
    std::ofstream(dir / "val.txt") << sl::test::licenses({"GPL-2"});
  }
  sl::sweep::Sweep prepared(const std::string& grid, const std::string& sweep_dir) const {
    const fs::path p = dir / "s.toml";
    std::ofstream(p) << "[sweep]\nname = \"ex\"\n"
                     << grid << "\n[[sweep.shape]]\nd_model = 32\nn_layers = 2\nn_heads = 2\n"
                     << "[train]\nseq_len = 32\nbatch_size = 4\nschedule = \"cosine\"\n"
                     << "warmup_tokens = 512\neval_every = 20\neval_tokens = 1024\n"
                     << "checkpoint_every = 10\n[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
    sl::sweep::Sweep s = sl::sweep::load_sweep(p.string());
    sl::sweep::prepare_dir(s, sweep_dir);
    return s;
  }
};

std::string status_of(const std::string& dir, const sl::sweep::SweepRun& r) {
  return sl::sweep::run_status(sl::sweep::run_dir(dir, r.run_id)).status;
}

// An executable shell script at `path`.
void write_script(const fs::path& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  fs::permissions(path, fs::perms::owner_all);
}

// Puts `bin` first on PATH for as long as it lives: the executors find their stand-ins there.
struct PathFirst {
  std::string old = std::getenv("PATH") ? std::getenv("PATH") : "";
  explicit PathFirst(const fs::path& bin) { setenv("PATH", (bin.string() + ":" + old).c_str(), 1); }
  ~PathFirst() { setenv("PATH", old.c_str(), 1); }
};

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(to_do_statuses) {
  for (const char* s : {"pending", "preempted", "extended"})
    BOOST_TEST(sl::sweep::to_do(s, false), s);
  for (const char* s : {"running", "completed", "diverged", "failed", "unreadable"})
    BOOST_TEST(!sl::sweep::to_do(s, false), s);
  BOOST_TEST(sl::sweep::to_do("failed", true));
  BOOST_TEST(!sl::sweep::to_do("completed", true));
}

BOOST_AUTO_TEST_CASE(local_executor_fails_retries_and_completes_a_tiny_sweep) {
  Fixture f;
  const std::string d = (f.dir / "sw").string();
  const sl::sweep::Sweep s = f.prepared("patterns = [\"AA\", \"GA\"]\nbudgets = [3840]", d);
  BOOST_REQUIRE_EQUAL(s.runs.size(), 2u);
  sl::sweep::LaunchOptions o;
  o.dir = d;
  o.jobs = 2;
  o.threads = 1;
  // A trainer that exits 1 (an error, not a signal): both runs failed, with their exit code.
  o.exe = "/bin/false";
  BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 1);
  for (const auto& r : s.runs) {
    BOOST_TEST(status_of(d, r) == "failed", r.run_id);
    BOOST_TEST(slurp(sl::sweep::run_dir(d, r.run_id) + "/failed") == "exit code 1\n");
  }
  // Failed runs are not to do again unless asked.
  o.exe = SL_EXE;
  BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 0);
  for (const auto& r : s.runs) BOOST_TEST(status_of(d, r) == "failed", r.run_id);
  o.retry_failed = true;
  BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 0);
  for (const auto& r : s.runs) {
    const std::string rd = sl::sweep::run_dir(d, r.run_id);
    BOOST_TEST(status_of(d, r) == "completed", r.run_id);
    BOOST_TEST(!fs::exists(rd + "/failed"), r.run_id);
    const sl::RunLog log = sl::read_runlog(rd + "/log.h5");
    BOOST_REQUIRE_EQUAL(log.train.size(), 30u);
    BOOST_TEST(log.budget_tokens.size() == 1u);
    // The trainer's output went to RUN/train.log.
    BOOST_TEST(slurp(rd + "/train.log").find("train: completed") != std::string::npos);
    // The lock is free again: nobody holds it.
    const int fd = sl::sweep::try_lock(rd);
    BOOST_TEST(fd >= 0);
    sl::sweep::unlock(fd);
  }
  // Nothing left to do: no trainer starts (a failing one would make it return 1).
  o.exe = "/bin/false";
  BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 0);
  // A finished sweep needs no GPU: with --device cuda there is nothing to do here either, so a
  // study of GPU runs is collected and reported on any machine.
  o.device = "cuda";
  BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 0);
  // Runs to do and no CUDA device in this build (or none here): refused in one line.
  sl::sweep::LaunchOptions fresh = o;
  fresh.dir = (f.dir / "not_started").string();
  if (sl::cuda_devices() == 0) BOOST_CHECK_THROW(sl::sweep::launch_local(s.runs, fresh), sl::Error);
}

BOOST_AUTO_TEST_CASE(run_task_trains_one_run_of_the_plan) {
  Fixture f;
  const std::string d = (f.dir / "sw").string();
  const sl::sweep::Sweep s = f.prepared("archs = [\"dense\"]\nbudgets = [2560, 3840]", d);
  BOOST_REQUIRE_EQUAL(s.runs.size(), 2u);
  sl::sweep::TaskOptions t;
  t.threads = 1;
  t.exe = SL_EXE;
  BOOST_TEST(sl::sweep::run_task(d, 1, t) == 0);
  BOOST_TEST(status_of(d, s.runs[1]) == "completed");
  BOOST_TEST(status_of(d, s.runs[0]) == "pending");
  t.exe = "/bin/false";  // already completed: no trainer starts
  BOOST_TEST(sl::sweep::run_task(d, 1, t) == 0);
  BOOST_TEST(sl::sweep::run_task(d, 0, t) == 1);  // the trainer's exit code, recorded
  BOOST_TEST(status_of(d, s.runs[0]) == "failed");
  BOOST_CHECK_THROW(sl::sweep::run_task(d, 2, t), sl::Error);
}

BOOST_AUTO_TEST_CASE(sbatch_script_line_by_line) {
  sl::sweep::LaunchOptions o;
  o.dir = "/data/sw";
  o.device = "cuda";
  o.threads = 3;
  o.partition = "gpu";
  o.account = "lab";
  o.time = "4:00:00";
  o.gpus_per_task = 2;
  o.cpus_per_task = 8;
  o.sbatch_args = {"--mem=64G", "--constraint=h200"};
  sl::sweep::ArrayJob job;
  job.name = "ladder";
  job.base = "/data/sw/slurm/array-20250101-000000-0";
  job.tasks = 5;
  job.max_parallel = 2;
  job.exe = "/opt/sl/bin/scalinglab";
  const std::string want =
      "#!/bin/bash\n"
      "# scalinglab sweep 'ladder': 5 runs (plan indices in "
      "/data/sw/slurm/array-20250101-000000-0.idx).\n"
      "# Task i runs plan index = line i+1 of that file; requeued tasks resume from their "
      "checkpoint.\n"
      "#SBATCH --job-name=sl-ladder\n"
      "#SBATCH --array=0-4%2\n"
      "#SBATCH --requeue\n"
      "#SBATCH --signal=B:USR1@90\n"
      "#SBATCH --output=/data/sw/slurm/%A_%a.out\n"
      "#SBATCH --open-mode=append\n"
      "#SBATCH --partition=gpu\n"
      "#SBATCH --account=lab\n"
      "#SBATCH --time=4:00:00\n"
      "#SBATCH --gpus-per-task=2\n"
      "#SBATCH --cpus-per-task=8\n"
      "#SBATCH --mem=64G\n"
      "#SBATCH --constraint=h200\n"
      "set -euo pipefail\n"
      "export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}\n"
      "IDX=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" "
      "'/data/sw/slurm/array-20250101-000000-0.idx')\n"
      "# exec: the batch shell's USR1 (--signal=B:...) must reach run-task itself.\n"
      "exec '/opt/sl/bin/scalinglab' sweep run-task '/data/sw' --index \"$IDX\" --device 'cuda' "
      "--threads 3 --nproc 2\n";
  BOOST_TEST(sl::sweep::sbatch_script(job, o) == want);
  // Unset options add no line; max_parallel 0 runs every task at once; one GPU: no --nproc.
  sl::sweep::LaunchOptions plain;
  plain.dir = "/data/sw";
  plain.gpus_per_task = 1;
  job.max_parallel = 0;
  const std::string p = sl::sweep::sbatch_script(job, plain);
  BOOST_TEST(p.find("#SBATCH --array=0-4%5\n") != std::string::npos, p);
  for (const char* absent :
       {"--partition", "--account", "--time", "--cpus-per-task", "--nproc", "--threads"})
    BOOST_TEST(p.find(absent) == std::string::npos, absent);
  BOOST_TEST(p.find("#SBATCH --gpus-per-task=1\n") != std::string::npos, p);
  BOOST_TEST(p.find("--device 'cpu'\n") != std::string::npos, p);
  BOOST_TEST(sl::sweep::sbatch_command("/x/a b.sbatch") ==
                 (std::vector<std::string>{"sbatch", "--parsable", "/x/a b.sbatch"}),
             boost::test_tools::per_element());
  BOOST_TEST(sl::sweep::parse_job_id("4242;cluster\n") == "4242");
  BOOST_TEST(sl::sweep::parse_job_id("4242\n") == "4242");
}

// The script bash runs: paths (and the device) with spaces, quotes and dollars reach run-task as
// they are, and task i reads line i+1 of the index file.
BOOST_AUTO_TEST_CASE(sbatch_script_quoting_survives_bash) {
  Fixture f;
  const fs::path odd = f.dir / "it's a $HOME \"dir\"";
  fs::create_directories(odd / "slurm");
  const fs::path exe = odd / "scalin glab";
  const fs::path got = f.dir / "args.txt";
  write_script(exe, "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '" + got.string() +
                        "'\necho \"OMP=$OMP_WAIT_POLICY\" >> '" + got.string() + "'\n");
  sl::sweep::LaunchOptions o;
  o.dir = odd.string();
  o.threads = 2;
  o.device = "cpu $X 'y'";  // (not a device; it must reach run-task as one word all the same)
  sl::sweep::ArrayJob job;
  job.name = "q";
  job.base = (odd / "slurm" / "array-x-0").string();
  job.tasks = 2;
  job.exe = exe.string();
  std::ofstream(job.base + ".idx") << "7\n9\n";
  const std::string script = job.base + ".sbatch";
  std::ofstream(script) << sl::sweep::sbatch_script(job, o);
  sl::SpawnOptions so;
  so.env = {{"SLURM_ARRAY_TASK_ID", "1"}};
  so.err = sl::Redirect::to_stdout();
  int rc = -1;
  const std::string out = sl::capture_output({"bash", script}, &rc, so);
  BOOST_REQUIRE_MESSAGE(rc == 0, out);
  BOOST_TEST(slurp(got) == "sweep\nrun-task\n" + odd.string() +
                               "\n--index\n9\n--device\ncpu $X 'y'\n--threads\n2\nOMP=PASSIVE\n");
}

// launch_slurm and slurm_states against stand-ins: scontrol says MaxArraySize = 2, so three runs
// make two arrays; sbatch prints job ids; squeue lists their tasks; a failing sbatch is reported.
BOOST_AUTO_TEST_CASE(slurm_executor_against_stand_in_commands) {
  Fixture f;
  const std::string d = (f.dir / "sw").string();
  const sl::sweep::Sweep s = f.prepared("archs = [\"dense\"]\nbudgets = [2560, 3840, 5120]", d);
  BOOST_REQUIRE_EQUAL(s.runs.size(), 3u);
  const fs::path bin = f.dir / "bin", calls = f.dir / "sbatch_calls";
  fs::create_directories(bin);
  write_script(bin / "scontrol",
               "[ \"$1 $2\" = 'show config' ] && echo 'MaxArraySize            = 2'\n");
  write_script(bin / "sbatch", "[ -f " + (f.dir / "sbatch_fails").string() +
                                   " ] && { echo 'sbatch: error: invalid partition'; exit 1; }\n"
                                   "n=$(cat '" +
                                   calls.string() +
                                   "' 2>/dev/null | wc -l)\n"
                                   "echo \"$*\" >> '" +
                                   calls.string() + "'\necho \"$((4242 + n));sllocal\"\n");
  write_script(bin / "squeue",
               "echo '4242_0 PENDING'; echo '4242_1 RUNNING'; echo '4243_0 PENDING'\n");
  const PathFirst path(bin);
  sl::sweep::LaunchOptions o;
  o.dir = d;
  o.exe = SL_EXE;
  o.max_parallel = 1;
  // Several GPUs per task on the CPU, or a batch they cannot split: refused, nothing written.
  o.gpus_per_task = 2;
  BOOST_CHECK_THROW(sl::sweep::launch_slurm(s.name, s.runs, o), sl::Error);
  o.device = "cuda";
  o.gpus_per_task = 3;  // batch_size 4
  BOOST_CHECK_THROW(sl::sweep::launch_slurm(s.name, s.runs, o), sl::Error);
  BOOST_TEST(!fs::exists(d + "/slurm"));
  o.device = "cpu";
  o.gpus_per_task = 0;
  BOOST_REQUIRE_EQUAL(sl::sweep::launch_slurm(s.name, s.runs, o), 0);
  const std::vector<std::string> jobs = lines(slurp(d + "/slurm/jobs.tsv"));
  BOOST_REQUIRE_EQUAL(jobs.size(), 2u);
  std::map<std::string, std::string> idx_of;  // job id -> its .idx file
  for (const std::string& j : jobs) {
    std::istringstream ls(j);
    std::string id, sbatch, n;
    ls >> id >> sbatch >> n;
    const std::string base = sbatch.substr(0, sbatch.size() - 7);
    idx_of[id] = slurp(base + ".idx");
    const std::string script = slurp(sbatch);
    BOOST_TEST(script.find("#SBATCH --array=0-" + std::to_string(std::stoi(n) - 1) + "%1\n") !=
                   std::string::npos,
               script);
  }
  BOOST_TEST(idx_of["4242"] == "0\n1\n");
  BOOST_TEST(idx_of["4243"] == "2\n");
  const std::vector<std::string> submitted = lines(slurp(calls.string()));
  BOOST_REQUIRE_EQUAL(submitted.size(), 2u);
  BOOST_TEST(submitted[0].rfind("--parsable " + d + "/slurm/array-", 0) == 0, submitted[0]);
  // squeue's view, mapped back to plan indices; status shows those runs queued or starting.
  const std::map<int64_t, std::string> states = sl::sweep::slurm_states(d);
  BOOST_TEST(states.size() == 3u);
  BOOST_TEST(states.at(0) == "4242_0 PENDING");
  BOOST_TEST(states.at(1) == "4242_1 RUNNING");
  BOOST_TEST(states.at(2) == "4243_0 PENDING");
  const std::string table = sl::sweep::status_table(d, s.runs).text;
  BOOST_TEST(table.find("queued (slurm 4242_0 PENDING)") != std::string::npos, table);
  BOOST_TEST(table.find("starting (slurm 4242_1 RUNNING)") != std::string::npos, table);
  // A dry run writes scripts and submits nothing; a failing sbatch makes the launch return 1.
  o.dry_run = true;
  BOOST_TEST(sl::sweep::launch_slurm(s.name, s.runs, o) == 0);
  BOOST_TEST(lines(slurp(calls.string())).size() == 2u);
  o.dry_run = false;
  std::ofstream(f.dir / "sbatch_fails") << "";
  BOOST_TEST(sl::sweep::launch_slurm(s.name, s.runs, o) == 1);
  BOOST_TEST(lines(slurp(d + "/slurm/jobs.tsv")).size() == 2u);
}

// GPU packing in the local executor, without a GPU (`--device cuda --gpus 1`, a stand-in trainer
// that records when it begins and ends): a run whose estimate exceeds --gpu-mem is refused in one
// line naming it before anything starts; two runs that do not fit together run one after the
// other, two that do run side by side. (Each tiny run's estimate is ~0.56 GiB: the CUDA context
// and cuBLAS workspace of sweep/packing.h's accounting, train/memory.h.)
BOOST_AUTO_TEST_CASE(gpu_runs_are_packed_by_their_memory_estimates) {
  Fixture f;
  const fs::path rec = f.dir / "runs.log";
  write_script(f.dir / "stand-in-trainer",
               "for a in \"$@\"; do case \"$a\" in */runs/*) out=$a;; esac; done\n"
               "echo \"begin $out\" >> " +
                   rec.string() + "\nsleep 1\necho \"end $out\" >> " + rec.string() + "\n");
  int n = 0;
  auto launch = [&](double gpu_mem) {
    const std::string d = (f.dir / ("sw" + std::to_string(n++))).string();
    const sl::sweep::Sweep s = f.prepared("patterns = [\"AA\", \"GA\"]\nbudgets = [2560]", d);
    fs::remove(rec);
    sl::sweep::LaunchOptions o;
    o.dir = d;
    o.device = "cuda";
    o.gpus = 1;
    o.per_gpu = 2;
    o.mps = "off";
    o.gpu_mem = gpu_mem;
    o.exe = (f.dir / "stand-in-trainer").string();
    std::string err;
    try {
      BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 0);
    } catch (const sl::Error& e) {
      err = e.what();
    }
    std::vector<std::string> events;
    for (const std::string& l : lines(fs::exists(rec) ? slurp(rec.string()) : ""))
      events.push_back(l.substr(0, l.find(' ')));
    return std::make_tuple(s, err, events);
  };
  {
    const auto [s, err, events] = launch(0.25);
    BOOST_TEST(err.find("sweep launch: run ") == 0u, err);
    BOOST_TEST(err.find("GiB of device memory, more than the 0.25 GiB of one GPU (--gpu-mem)") !=
                   std::string::npos,
               err);
    bool named = false;
    for (const auto& r : s.runs) named |= err.find(r.run_id) != std::string::npos;
    BOOST_TEST(named, err);
    BOOST_TEST(events.empty());  // nothing started
  }
  {
    const auto [s, err, events] = launch(1.0);  // one at a time
    BOOST_TEST(err.empty(), err);
    BOOST_TEST(events == (std::vector<std::string>{"begin", "end", "begin", "end"}));
  }
  {
    const auto [s, err, events] = launch(4.0);  // both at once
    BOOST_TEST(err.empty(), err);
    BOOST_TEST(events == (std::vector<std::string>{"begin", "begin", "end", "end"}));
  }
}

// CUDA MPS in the local executor, without a GPU: `--device cuda --gpus 1` needs no CUDA in the
// launcher itself, a stand-in nvidia-cuda-mps-control first on PATH records its arguments, stdin
// and MPS variables, and the trainer is a wrapper that records the MPS variables it was given and
// then trains for real on the CPU (its cuda:<i> device rewritten to cpu).
BOOST_AUTO_TEST_CASE(mps_daemon_for_runs_sharing_a_gpu) {
  Fixture f;
  const fs::path bin = f.dir / "bin", empty = f.dir / "empty", rec = f.dir / "mps.log";
  fs::create_directories(bin);
  fs::create_directories(empty);
  write_script(
      bin / "nvidia-cuda-mps-control",
      "echo \"control: $* pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY\" >> " +
          rec.string() + "\n[ \"$1\" = -d ] && exit 0\n" +
          "while read -r l; do echo \"stdin: $l\" >> " + rec.string() + "; done\n");
  const std::string record =
      "echo \"trainer pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY\" >> " +
      rec.string() + "\n";
  write_script(f.dir / "trainer", record +
                                      "for a in \"$@\"; do shift; case \"$a\" in cuda*) a=cpu;; "
                                      "esac; set -- \"$@\" \"$a\"; done\nexec " SL_EXE " \"$@\"\n");
  write_script(f.dir / "stand-in-trainer", record);  // records, trains nothing
  // A server named by the environment would be used instead: none here unless a case sets it.
  const char* had = std::getenv("CUDA_MPS_PIPE_DIRECTORY");
  const std::string old_pipe = had ? had : "";
  unsetenv("CUDA_MPS_PIPE_DIRECTORY");
  PathFirst path(bin);
  int n = 0;
  auto launch = [&](sl::sweep::LaunchOptions o, const std::string& exe) {
    const std::string d = (f.dir / ("sw" + std::to_string(n++))).string();
    const sl::sweep::Sweep s = f.prepared("patterns = [\"AA\", \"GA\"]\nbudgets = [2560]", d);
    fs::remove(rec);
    o.dir = d;
    o.device = "cuda";
    o.gpus = 1;
    o.threads = 1;
    o.exe = (f.dir / exe).string();
    BOOST_TEST(sl::sweep::launch_local(s.runs, o) == 0);
    return std::make_pair(s, lines(fs::exists(rec) ? slurp(rec.string()) : ""));
  };
  sl::sweep::LaunchOptions o;
  o.per_gpu = 2;
  {
    // auto, two runs on the GPU: one daemon of our own, the trainers on it, `quit` at the end.
    const auto [s, rows] = launch(o, "trainer");
    const std::string pipe = "/tmp/scalinglab-mps-" + std::to_string(::getpid());
    BOOST_REQUIRE_EQUAL(rows.size(), 5u);
    const std::string dirs = "pipe=" + pipe + " log=" + (f.dir / "sw0" / "mps").string();
    BOOST_TEST(rows[0] == "control: -d " + dirs);
    BOOST_TEST(rows[1] == "trainer " + dirs);
    BOOST_TEST(rows[2] == "trainer " + dirs);
    BOOST_TEST(rows[3] == "control:  " + dirs);
    BOOST_TEST(rows[4] == "stdin: quit");
    for (const auto& r : s.runs)
      BOOST_TEST(status_of((f.dir / "sw0").string(), r) == "completed", r.run_id);
    BOOST_TEST(!fs::exists(pipe));  // removed with the daemon
  }
  const std::vector<std::string> plain = {"trainer pipe= log=", "trainer pipe= log="};
  {
    sl::sweep::LaunchOptions one = o;  // one run per GPU: nothing to share, nothing started
    one.per_gpu = 1;
    BOOST_TEST(launch(one, "stand-in-trainer").second == plain);
  }
  {
    sl::sweep::LaunchOptions off = o;  // --mps off: plain processes
    off.mps = "off";
    BOOST_TEST(launch(off, "stand-in-trainer").second == plain);
  }
  {
    // A server already in use: the trainers get its pipe directory, nothing is started.
    setenv("CUDA_MPS_PIPE_DIRECTORY", "/tmp/node-mps", 1);
    const auto rows = launch(o, "stand-in-trainer").second;
    unsetenv("CUDA_MPS_PIPE_DIRECTORY");
    BOOST_TEST(rows == std::vector<std::string>(2, "trainer pipe=/tmp/node-mps log="));
  }
  {
    // --mps on where nvidia-cuda-mps-control is not installed: one line, before any run starts.
    fs::remove(rec);
    PathFirst only(empty);
    setenv("PATH", empty.string().c_str(), 1);
    sl::sweep::LaunchOptions on = o;
    on.mps = "on";
    const std::string d = (f.dir / "sw-on").string();
    const sl::sweep::Sweep s = f.prepared("patterns = [\"AA\", \"GA\"]\nbudgets = [2560]", d);
    on.dir = d;
    on.device = "cuda";
    on.gpus = 1;
    on.exe = (f.dir / "stand-in-trainer").string();
    std::string err;
    try {
      sl::sweep::launch_local(s.runs, on);
    } catch (const sl::Error& e) {
      err = e.what();
    }
    BOOST_TEST(err == "sweep launch --mps on: nvidia-cuda-mps-control not found in PATH");
    for (const auto& r : s.runs)
      BOOST_TEST(!fs::exists(sl::sweep::run_dir(d, r.run_id) + "/train.log"), r.run_id);
    BOOST_TEST(!fs::exists(rec));
    // MPS shares a CUDA GPU: on with the CPU device is refused too.
    on.device = "cpu";
    BOOST_CHECK_THROW(sl::sweep::launch_local(s.runs, on), sl::Error);
  }
  if (!old_pipe.empty()) setenv("CUDA_MPS_PIPE_DIRECTORY", old_pipe.c_str(), 1);
}
