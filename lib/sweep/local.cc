// The local executor (executor.h): `train` children on this machine, a fixed number of slots.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/process.h"
#include "sweep/executor.h"
#include "sweep/tables.h"

namespace sl::sweep {

int launch_local(const std::vector<SweepRun>& runs, const LaunchOptions& a) {
  const bool gpu = a.device.rfind("cuda", 0) == 0;
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
    int lock_fd, slot;
  };
  std::map<pid_t, Active> active;
  std::vector<bool> slot_used(slots, false);
  std::vector<const SweepRun*> queue;
  for (const SweepRun& r : runs) {
    const std::string st = run_status(run_dir(a.dir, r.run_id)).status;
    if (to_do(st, a.retry_failed)) queue.push_back(&r);
  }
  // Largest first (longest processing time first): the big runs start while every slot is free
  // and the small ones fill the gaps at the end, so the launch's wall time approaches its total
  // work over the throughput instead of ending on one large run alone. Ties by plan index.
  std::stable_sort(queue.begin(), queue.end(), [](const SweepRun* x, const SweepRun* y) {
    return x->flops != y->flops ? x->flops > y->flops : x->index < y->index;
  });
  std::printf("sweep launch (local): %zu of %zu runs to do, %d at a time, largest first\n",
              queue.size(), runs.size(), slots);
  std::fflush(stdout);
  const ProgressMeter meter(a.dir, runs);
  // A stop reaches every running trainer from the handler itself, as SIGTERM (they checkpoint and
  // exit preempted), even while we wait for a child; the loop then starts no further run.
  SignalForwarder stops({SIGTERM, SIGINT}, SIGTERM);
  size_t next = 0;
  int bad = 0;
  bool stopping = false;
  // Said once, before the first stopped run is reaped, so the count is the runs told to stop.
  auto note_stop = [&]() {
    if (!stops.received() || stopping) return;
    stopping = true;
    std::fprintf(stderr, "sweep launch: signal %d: stopping %zu runs (they checkpoint)\n",
                 stops.received(), active.size());
  };
  while (next < queue.size() || !active.empty()) {
    note_stop();
    while (!stopping && next < queue.size() && static_cast<int>(active.size()) < slots) {
      const SweepRun& r = *queue[next++];
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
      int slot = 0;
      while (slot_used[slot]) ++slot;
      std::vector<int> others;
      for (const auto& [pid, x] : active) others.push_back(x.lock_fd);
      const std::string dev =
          gpu ? "cuda:" + std::to_string(slot / std::max(1, a.per_gpu)) : a.device;
      const pid_t pid = start_train(exe, a.dir, r, dev, threads, others);
      stops.add(pid);
      slot_used[slot] = true;
      active[pid] = {&r, fd, slot};
      std::printf("  start %s (%s %s, %s) on %s, log %s/train.log\n", r.run_id.c_str(),
                  r.arch.c_str(), r.size.c_str(), budgets_text(r).c_str(), dev.c_str(), rd.c_str());
      std::fflush(stdout);
    }
    if (active.empty()) break;
    const ExitStatus e = wait_child(-1);
    note_stop();
    if (e.pid < 0) continue;
    auto it = active.find(e.pid);
    if (it == active.end()) continue;
    stops.remove(e.pid);  // reaped: its pid may be reused
    const Active x = it->second;
    active.erase(it);
    slot_used[x.slot] = false;
    const std::string rd = run_dir(a.dir, x.run->run_id);
    record_exit(rd, e);
    if (e.code != 0) ++bad;
    unlock(x.lock_fd);
    std::printf("  end %s: %s (exit %d)\n", x.run->run_id.c_str(), run_status(rd).status.c_str(),
                e.code);
    std::printf("  %s\n", meter.line().text.c_str());
    std::fflush(stdout);
  }
  return bad ? 1 : 0;
}

}  // namespace sl::sweep
