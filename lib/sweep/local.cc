// The local executor (executor.h): `train` children on this machine, a fixed number of slots.
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/process.h"
#include "sweep/executor.h"
#include "sweep/packing.h"
#include "sweep/tables.h"
#include "train/memory.h"

namespace sl::sweep {
namespace {

const char* kMpsControl = "nvidia-cuda-mps-control";

// A CUDA MPS control daemon for the length of one launch (docs/DESIGN.md "Local executor"): the
// runs sharing a GPU then run their kernels side by side instead of time-slicing it (measured on
// one H200: 4 L0 runs 1.16x one run's tokens/s under MPS, 0.89x as plain processes). Started with
// its own pipe and log directories, so it never meets another launch's daemon or the node's; the
// destructor stops it (`quit` on its standard input), so every way out of launch_local - the
// end, a stop signal once the trainers have exited, an exception - leaves no daemon behind.
class Mps {
 public:
  // The mode line printed and, when a daemon runs for us or the environment names one, the
  // variables every trainer gets. Throws sl::Error in one line for --mps on where MPS cannot be.
  // Constructed only when there are runs to do (launch_local returns before otherwise).
  Mps(const LaunchOptions& a, bool gpu) {
    const std::string& mode = a.mps;
    if (mode != "auto" && mode != "on" && mode != "off")
      fail("sweep launch --mps " + mode + ": expected auto, on or off");
    const int k = std::max(1, a.per_gpu);
    const std::string per = std::to_string(k) + " runs per GPU";
    if (!gpu) {
      if (mode == "on")
        fail("sweep launch --mps on: MPS shares a CUDA GPU; --device is " + a.device);
      return;  // nothing to say: a CPU launch never uses MPS
    }
    if (mode == "off") {
      line_ = "MPS: off (--mps off): " + per + " as plain processes";
      return;
    }
    if (k == 1 && mode == "auto") {
      line_ = "MPS: not used (one run per GPU; --per-gpu K > 1 shares a GPU through it)";
      return;
    }
    if (const char* pipe = std::getenv("CUDA_MPS_PIPE_DIRECTORY"); pipe && *pipe) {
      // A server already in use (the node's, or a job's): the trainers inherit the variable.
      line_ = std::string("MPS: using the server of CUDA_MPS_PIPE_DIRECTORY=") + pipe;
      return;
    }
    program_ = find_program(kMpsControl);
    if (program_.empty()) {
      if (mode == "on")
        fail(std::string("sweep launch --mps on: ") + kMpsControl + " not found in PATH");
      line_ = std::string("MPS: ") + kMpsControl + " not found in PATH: " + per +
              " as plain processes (time-sliced)";
      return;
    }
    // The pipe directory holds a Unix socket, whose path is limited to ~108 bytes: short, in
    // /tmp, and ours by pid; the logs stay with the sweep.
    pipe_ = "/tmp/scalinglab-mps-" + std::to_string(::getpid());
    log_ = a.dir + "/mps";
    make_dirs(pipe_);
    make_dirs(log_);
    env_ = {{"CUDA_MPS_PIPE_DIRECTORY", pipe_}, {"CUDA_MPS_LOG_DIRECTORY", log_}};
    SpawnOptions so;
    so.env = env_;
    so.out = Redirect::append(log_ + "/control.out");
    so.err = Redirect::to_stdout();
    // Its own process group: a Ctrl-C at the terminal reaches the launcher's group, and the
    // daemon must outlive the trainers that are still checkpointing on it.
    so.new_process_group = true;
    const int rc = run_process({program_, "-d"}, so);
    if (rc != 0) {
      const std::string why = std::string(kMpsControl) + " -d exited " + std::to_string(rc) +
                              " (see " + log_ + "/control.out)";
      std::error_code ec;
      std::filesystem::remove_all(pipe_, ec);
      program_.clear();
      env_.clear();
      if (mode == "on") fail("sweep launch --mps on: " + why);
      line_ = "MPS: " + why + ": " + per + " as plain processes";
      return;
    }
    line_ = "MPS: started " + program_ + " for " + per + " (pipe " + pipe_ + ", log " + log_ + ")";
  }
  Mps(const Mps&) = delete;
  Mps& operator=(const Mps&) = delete;
  ~Mps() { stop(); }

  const std::string& line() const { return line_; }
  const std::vector<std::pair<std::string, std::string>>& env() const { return env_; }

  // `quit` (the control program's own shutdown): the daemon waits for its clients, then ends its
  // servers and itself. Called once every trainer has exited.
  void stop() {
    if (program_.empty()) return;
    SpawnOptions so;
    so.env = env_;
    so.input = "quit\n";
    so.out = Redirect::append(log_ + "/control.out");
    so.err = Redirect::to_stdout();
    so.new_process_group = true;
    const int rc = run_process({program_}, so);
    if (rc != 0)
      std::fprintf(stderr,
                   "sweep launch: warning: `echo quit | %s` exited %d (see %s/control.out)\n",
                   program_.c_str(), rc, log_.c_str());
    std::error_code ec;
    std::filesystem::remove_all(pipe_, ec);
    program_.clear();
  }

 private:
  std::string program_, pipe_, log_, line_;
  std::vector<std::pair<std::string, std::string>> env_;
};

// The GPU side of a launch: the GPUs' memory, each queued run's estimate, the packer, and the
// line that says how runs are placed. Throws sl::Error naming the first run that cannot fit on
// an empty GPU, before anything starts.
GpuMemory checked_gpu_memory(double gib) {
  if (gib < 0 || !std::isfinite(gib))
    fail("sweep launch --gpu-mem " + std::to_string(gib) + ": expected GiB > 0");
  return gpu_memory(gib);
}

struct Placement {
  GpuMemory mem;
  GpuPacker packer;
  std::vector<int64_t> bytes;  // per queued run, in queue order
  std::string line;

  Placement(const LaunchOptions& a, int gpus, const std::vector<const SweepRun*>& queue)
      : mem(checked_gpu_memory(a.gpu_mem)), packer(gpus, a.per_gpu, mem.bytes) {
    int64_t largest = 0, sum = 0;
    for (const SweepRun* r : queue) {
      const int64_t b = estimate_device_bytes(r->config).total();
      if (!packer.fits_alone(b))
        fail("sweep launch: run " + r->run_id + " (" + r->arch + " " + r->size + ", batch " +
             std::to_string(r->config.batch_size) + " x " + std::to_string(r->config.seq_len) +
             ") needs an estimated " + gib_text(b) + " of device memory, more than the " +
             gib_text(mem.bytes) + " of one GPU (" + mem.source +
             "): lower its train.batch_size or seq_len, or set --gpu-mem");
      bytes.push_back(b);
      largest = std::max(largest, b);
      sum += b;
    }
    const std::string k = std::to_string(std::max(1, a.per_gpu));
    if (mem.bytes > 0)
      line = "GPU memory: " + gib_text(mem.bytes) + " per GPU (" + mem.source +
             "); runs packed by their estimates (largest " + gib_text(largest) + ", all " +
             gib_text(sum) + "), at most " + k + " per GPU";
    else
      line = "GPU memory: unknown (" + mem.source + "): at most " + k +
             " runs per GPU, not checked against memory (--gpu-mem GiB sets it)";
  }
};

}  // namespace

int launch_local(const std::vector<SweepRun>& runs, const LaunchOptions& a) {
  const bool gpu = a.device.rfind("cuda", 0) == 0;
  std::vector<const SweepRun*> queue;
  for (const SweepRun& r : runs) {
    const std::string st = run_status(run_dir(a.dir, r.run_id)).status;
    if (to_do(st, a.retry_failed)) queue.push_back(&r);
  }
  // Before looking for GPUs: a finished GPU sweep can be collected and reported (`study`) on a
  // machine without one, e.g. where gnuplot is.
  if (queue.empty()) {
    std::printf("sweep launch (local): nothing to do, all %zu runs are done or running\n",
                runs.size());
    return 0;
  }
  // --gpus 0 (the default): every GPU present.
  const int gpus = gpu ? (a.gpus > 0 ? a.gpus : cuda_devices()) : 0;
  if (gpu && gpus == 0)
    fail("sweep launch --device " + a.device + ": no CUDA device here (or --gpus G)");
  const int slots = gpu ? gpus * std::max(1, a.per_gpu) : std::max(1, a.jobs);
  int threads = a.threads;
  if (!gpu && threads <= 0)
    threads = std::max<int>(1, static_cast<int>(std::thread::hardware_concurrency()) / slots);
  const std::string exe = executable(a.exe);
  struct Active {
    const SweepRun* run;
    int lock_fd, gpu;  // gpu -1 on the CPU
    int64_t bytes;     // its estimate (GPU)
  };
  std::map<pid_t, Active> active;
  // Longest first (longest processing time first): the long runs start while every slot is free
  // and the short ones fill the gaps at the end, so the launch's wall time approaches its total
  // work over the throughput instead of ending on one long run alone. Ties by plan index.
  const Rates rates = read_bench_rates(a.bench);
  order_longest_first(queue, rates);
  // Before any run starts, so a run too large for a GPU and --mps on fail with nothing started.
  std::optional<Placement> place;
  if (gpu) place.emplace(a, gpus, queue);
  Mps mps(a, gpu);
  std::printf("sweep launch (local): %zu of %zu runs to do, %d at a time, longest first (%s)\n",
              queue.size(), runs.size(), slots,
              rates.empty() ? "by FLOPs" : ("by time at the rates of " + a.bench).c_str());
  if (place) std::printf("  %s\n", place->line.c_str());
  if (!mps.line().empty()) std::printf("  %s\n", mps.line().c_str());
  std::fflush(stdout);
  const ProgressMeter meter(a.dir, runs);
  // A stop reaches every running trainer from the handler itself, as SIGTERM (they checkpoint and
  // exit preempted), even while we wait for a child; the loop then starts no further run.
  SignalForwarder stops({SIGTERM, SIGINT}, SIGTERM);
  int bad = 0;
  bool stopping = false;
  // Said once, before the first stopped run is reaped, so the count is the runs told to stop.
  auto note_stop = [&]() {
    if (!stops.received() || stopping) return;
    stopping = true;
    std::fprintf(stderr, "sweep launch: signal %d: stopping %zu runs (they checkpoint)\n",
                 stops.received(), active.size());
  };
  while (!queue.empty() || !active.empty()) {
    note_stop();
    while (!stopping && !queue.empty() && static_cast<int>(active.size()) < slots) {
      // The CPU: the next in order. GPUs: the first queued run that fits beside the running ones.
      size_t k = 0;
      int g = -1;
      if (place) {
        const auto p = place->packer.next(place->bytes);
        if (!p) break;  // nothing fits until a run ends
        k = p->queue_index;
        g = p->gpu;
      }
      const SweepRun& r = *queue[k];
      const int64_t bytes = place ? place->bytes[k] : 0;
      queue.erase(queue.begin() + static_cast<std::ptrdiff_t>(k));
      if (place) place->bytes.erase(place->bytes.begin() + static_cast<std::ptrdiff_t>(k));
      const std::string rd = run_dir(a.dir, r.run_id);
      const int fd = try_lock(rd);
      if (fd < 0) {
        std::printf("  %s: running elsewhere, skipped\n", r.run_id.c_str());
        continue;
      }
      // Another launcher may have finished it between the scan and the lock.
      if (!to_do(run_status(rd, true).status, true)) {
        unlock(fd);
        continue;
      }
      std::filesystem::remove(rd + "/failed");
      std::vector<int> others;
      for (const auto& [pid, x] : active) others.push_back(x.lock_fd);
      const std::string dev = gpu ? "cuda:" + std::to_string(g) : a.device;
      const pid_t pid = start_train(exe, a.dir, r, dev, threads, others, 1, mps.env());
      stops.add(pid);
      if (place) place->packer.start(g, bytes);
      active[pid] = {&r, fd, g, bytes};
      // Its estimate, and the estimates of every run on that GPU now over the GPU's memory.
      std::string est;
      if (const double f = rate_for(r, rates); f > 0)
        est = " (~" + fmt_duration(r.flops / f) + (place ? "," : ")");
      if (place) {
        est += (est.empty() ? " (" : " ") + gib_text(bytes) + " est.";
        if (place->packer.capacity() > 0)
          est += "; " + gib_text(place->packer.used_on(g)) + " of " +
                 gib_text(place->packer.capacity()) + " there";
        est += ")";
      }
      std::printf("  start %s (%s %s, %s) on %s%s, log %s/train.log\n", r.run_id.c_str(),
                  r.arch.c_str(), r.size.c_str(), budgets_text(r).c_str(), dev.c_str(), est.c_str(),
                  rd.c_str());
      std::fflush(stdout);
    }
    if (active.empty()) {
      // Every queued run fits on an empty GPU (checked above), so only a stop leaves any.
      SL_ASSERT(stopping || queue.empty());
      break;
    }
    const ExitStatus e = wait_child(-1);
    note_stop();
    if (e.pid < 0) continue;
    auto it = active.find(e.pid);
    if (it == active.end()) continue;
    stops.remove(e.pid);  // reaped: its pid may be reused
    const Active x = it->second;
    active.erase(it);
    if (place) place->packer.finish(x.gpu, x.bytes);
    const std::string rd = run_dir(a.dir, x.run->run_id);
    record_exit(rd, e);
    if (e.code != 0) ++bad;
    unlock(x.lock_fd);
    std::printf("  end %s: %s (exit %d)\n", x.run->run_id.c_str(), run_status(rd).status.c_str(),
                e.code);
    std::printf("  %s\n", meter.line().text.c_str());
    std::fflush(stdout);
  }
  mps.stop();  // every trainer has exited (the destructor covers the exceptions)
  return bad ? 1 : 0;
}

}  // namespace sl::sweep
